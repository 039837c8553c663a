//! The seasonal profile (`fieldpulse_features::seasonal`): a daily cycle is
//! learned and taken out of the residuals; signals without one are scored
//! exactly as with the profile off; the profile survives a snapshot.

use fieldpulse_features::{
    FeatureParams, FeatureSpec, FleetFeatures, ParamGuard, RowScratch, Seasonality,
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_006_400_000 - 1_700_006_400_000 % DAY;

/// A small deterministic PRNG (SplitMix64) with a Box–Muller normal.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn fleet(seasonality: Seasonality) -> (FleetFeatures, RowScratch, FeatureSpec) {
    let params = FeatureParams::default()
        .seasonality(seasonality)
        .check()
        .unwrap();
    let spec = FeatureSpec::new(params, vec!["temp".into(), "load".into()]).unwrap();
    (
        FleetFeatures::new(spec.clone(), 1),
        RowScratch::new(&spec),
        spec,
    )
}

/// A daily sine of amplitude `amp` (noise 1) on `temp`; `load` is white noise.
fn daily(i: i64, amp: f64, rng: &mut Rng) -> (i64, [f64; 2]) {
    let ts = T0 + i * MINUTE;
    let phase = (ts % DAY) as f64 / DAY as f64;
    let temp = 50.0 + amp * (std::f64::consts::TAU * phase).sin() + rng.gauss();
    (ts, [temp, 5.0 + rng.gauss()])
}

/// RMS of `robust_z` of `temp` over the rows of days `from..to`.
fn rms_robust_z(seasonality: Seasonality, days: i64, from: i64) -> f64 {
    let (mut f, mut sc, _) = fleet(seasonality);
    let mut rng = Rng(7);
    let (mut sum, mut n) = (0.0, 0.0);
    for i in 0..days * 1440 {
        let (ts, v) = daily(i, 10.0, &mut rng);
        f.update(0, ts, &v, &mut sc);
        if i >= from * 1440 {
            sum += sc.robust_z()[0] * sc.robust_z()[0];
            n += 1.0;
        }
    }
    (sum / n).sqrt()
}

#[test]
fn a_daily_cycle_is_taken_out_of_the_residuals() {
    let off = rms_robust_z(Seasonality::Off, 6, 4);
    let with = rms_robust_z(Seasonality::Daily, 6, 4);
    // Off: the cycle (sd 7) is in the residual, measured against a MAD that
    // takes it as spread; on: the residual is the noise (sd 1) against its
    // own scale.
    assert!(with < 1.3, "daily profile: rms robust z {with}");
    assert!(with > 0.7, "daily profile: rms robust z {with}");
    assert!(off > 0.0, "{off}");
    // The turning points do not stand out: the largest |z| stays ordinary.
    let (mut f, mut sc, _) = fleet(Seasonality::Daily);
    let mut rng = Rng(7);
    let mut max_z: f64 = 0.0;
    for i in 0..6 * 1440 {
        let (ts, v) = daily(i, 10.0, &mut rng);
        f.update(0, ts, &v, &mut sc);
        if i >= 4 * 1440 {
            max_z = max_z.max(sc.robust_z()[0].abs());
        }
    }
    assert!(max_z < 6.0, "largest |robust z| with the profile: {max_z}");
}

#[test]
fn a_shift_at_the_peak_stands_out_only_with_the_profile() {
    // +4 at 06:00 (the sine's peak) for an hour on day 5.
    let z_at_peak = |seasonality| {
        let (mut f, mut sc, _) = fleet(seasonality);
        let mut rng = Rng(11);
        let mut z: f64 = 0.0;
        for i in 0..6 * 1440 {
            let (ts, mut v) = daily(i, 10.0, &mut rng);
            let anomalous = (5 * 1440 + 330..5 * 1440 + 390).contains(&i);
            if anomalous {
                v[0] += 4.0;
            }
            f.update(0, ts, &v, &mut sc);
            if anomalous {
                z += sc.robust_z()[0];
            }
        }
        z / 60.0
    };
    let (z_off, z_daily) = (z_at_peak(Seasonality::Off), z_at_peak(Seasonality::Daily));
    assert!(
        z_daily > 3.0,
        "mean robust z of the shift with the profile: {z_daily}"
    );
    assert!(
        z_off < 2.0,
        "without the profile the peak hides it: {z_off}"
    );
}

/// Signals without a daily cycle never have the profile applied: every
/// feature equals the one computed with the profile off, bit for bit.
#[test]
fn signals_without_a_cycle_are_scored_as_with_the_profile_off() {
    let (mut a, mut sa, spec) = fleet(Seasonality::Off);
    let (mut b, mut sb, _) = fleet(Seasonality::Daily);
    let (mut ra, mut rb) = (vec![0.0; spec.n_features()], vec![0.0; spec.n_features()]);
    let mut rng = Rng(3);
    let mut walk = 100.0;
    for i in 0..20 * 1440 {
        walk += 0.2 * rng.gauss();
        // A random walk and a quantised counter with rare steps and repeats.
        let counter = if rng.next() < 0.01 { 3.0 } else { 2.0 };
        let v = [walk + 0.1 * rng.gauss(), counter];
        let ts = T0 + i * MINUTE;
        a.update_features(0, ts, &v, &mut sa, &mut ra).unwrap();
        b.update_features(0, ts, &v, &mut sb, &mut rb).unwrap();
        assert_eq!(ra, rb, "row {i}");
        assert_eq!(sa.repeat(), sb.repeat(), "row {i}");
    }
}

#[test]
fn a_stuck_value_repeats_even_while_the_profile_moves() {
    let (mut f, mut sc, _) = fleet(Seasonality::Daily);
    let mut rng = Rng(5);
    for i in 0..4 * 1440 {
        let (ts, v) = daily(i, 10.0, &mut rng);
        f.update(0, ts, &v, &mut sc);
    }
    let mut repeats = 0.0;
    for i in 4 * 1440..4 * 1440 + 100 {
        f.update(0, T0 + i * MINUTE, &[42.0, 5.0], &mut sc);
        repeats += sc.repeat()[0];
    }
    assert_eq!(repeats, 99.0);
}

#[test]
fn the_profile_survives_a_snapshot() {
    let (mut a, mut sa, spec) = fleet(Seasonality::Daily);
    let mut rng = Rng(9);
    for i in 0..3 * 1440 {
        let (ts, v) = daily(i, 10.0, &mut rng);
        a.update(0, ts, &v, &mut sa);
    }
    let mut b = FleetFeatures::new(spec.clone(), 1);
    b.restore_asset_state(0, &a.asset_state(0)).unwrap();
    let mut sb = RowScratch::new(&spec);
    let (mut ra, mut rb) = (vec![0.0; spec.n_features()], vec![0.0; spec.n_features()]);
    for i in 3 * 1440..4 * 1440 {
        let (ts, v) = daily(i, 10.0, &mut rng);
        a.update_features(0, ts, &v, &mut sa, &mut ra).unwrap();
        b.update_features(0, ts, &v, &mut sb, &mut rb).unwrap();
        assert_eq!(ra, rb);
    }
    // A state saved with another seasonality is refused, not misread.
    let (off, _, _) = fleet(Seasonality::Off);
    let mut off = off;
    assert!(off.restore_asset_state(0, &a.asset_state(0)).is_err());
}

/// Hour of week: a weekday/weekend pattern on top of the daily cycle is
/// learned once three weeks have been seen, and not before.
#[test]
fn a_weekly_profile_learns_the_weekend_after_three_weeks() {
    let (mut f, mut sc, _) = fleet(Seasonality::Weekly);
    let mut rng = Rng(11);
    // The epoch's day 0 was a Thursday: Saturday and Sunday are days 2 and 3.
    let weekend = |ts: i64| matches!((ts / DAY) % 7, 2 | 3);
    let mut active_at = None;
    for i in 0..28 * 1440 {
        let (ts, mut v) = daily(i, 10.0, &mut rng);
        if weekend(ts) {
            v[0] -= 8.0;
        }
        f.update(0, ts, &v, &mut sc);
        if active_at.is_none() && f.seasonal_active(0, 0) {
            active_at = Some(i);
        }
    }
    let at = active_at.expect("the weekly profile is applied");
    assert!(at >= 21 * 1440, "applied after {} days", at / 1440);
    assert!(
        !f.seasonal_active(0, 1),
        "white noise has no profile applied"
    );
    // Saturday 18:00 against Wednesday 18:00: 8 lower (the weekend).
    let p = f.seasonal_profile(0, 0);
    assert_eq!(p.len(), 168);
    let hour_of_week = |day_from_thursday: usize, h: usize| day_from_thursday * 24 + h;
    let gap = p[hour_of_week(2, 18)] - p[hour_of_week(6, 18)];
    assert!((gap + 8.0).abs() < 1.0, "weekend gap {gap}");
}

/// The profile is learned lane by lane: a sensor beside nine others (two
/// lane chunks, the second partly padding; some of the others missing now
/// and then) learns the same profile, bit for bit, as it does alone, and has
/// it applied on the same rows.
#[test]
fn each_sensor_learns_its_own_profile_whatever_sits_beside_it() {
    let spec_of = |names: Vec<String>| {
        let params = FeatureParams::default()
            .seasonality(Seasonality::Daily)
            .check()
            .unwrap();
        FeatureSpec::new(params, names).unwrap()
    };
    let alone = spec_of(vec!["temp".into()]);
    let crowd = spec_of((0..10).map(|s| format!("s{s}")).collect());
    let (mut a, mut sa) = (
        FleetFeatures::new(alone.clone(), 1),
        RowScratch::new(&alone),
    );
    let (mut b, mut sb) = (
        FleetFeatures::new(crowd.clone(), 1),
        RowScratch::new(&crowd),
    );
    let (mut rng, mut other) = (Rng(21), Rng(5));
    let mut row = [0.0; 10];
    for i in 0..5 * 1440 {
        let (ts, v) = daily(i, 10.0, &mut rng);
        row[0] = v[0];
        for (s, x) in row.iter_mut().enumerate().skip(1) {
            *x = if other.next() < 0.03 {
                f64::NAN
            } else {
                100.0 * s as f64 + 20.0 * other.gauss()
            };
        }
        a.update(0, ts, &v[..1], &mut sa);
        b.update(0, ts, &row, &mut sb);
        assert_eq!(a.seasonal_active(0, 0), b.seasonal_active(0, 0), "row {i}");
        assert_eq!(
            sa.robust_z()[0].to_bits(),
            sb.robust_z()[0].to_bits(),
            "row {i}"
        );
    }
    assert!(a.seasonal_active(0, 0), "a 10-sigma daily cycle is applied");
    let bits = |p: Vec<f64>| p.into_iter().map(f64::to_bits).collect::<Vec<_>>();
    assert_eq!(
        bits(a.seasonal_profile(0, 0)),
        bits(b.seasonal_profile(0, 0))
    );
}
