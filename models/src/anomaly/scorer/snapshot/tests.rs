//! Scorer snapshots: a fleet restored from per-asset snapshots into a fresh
//! scorer scores the rest of the stream bit-identically to the uninterrupted
//! one (const-shape path with 8 sensors, generic path with 12, multivariate
//! on), and foreign, truncated, altered or random bytes are refused.

use fieldpulse_features::snapshot::{StateError, FEATURE_STATE_MAGIC};
use fieldpulse_features::{FeatureSpec, FleetFeatures};
use proptest::prelude::*;

use super::{SCORER_STATE_MAGIC, SCORER_STATE_VERSION};
use crate::anomaly::{
    generate, AnomalyError, DetectorParams, FleetScorer, ParamGuard, RowScore, SynthFleet,
    SynthParams,
};

const ASSETS: usize = 4;
const READINGS: usize = 500;

/// A labelled synthetic fleet (every anomaly kind), plus missing values,
/// duplicate and out-of-order rows.
fn fleet(sensors: usize) -> SynthFleet {
    let mut f = generate(&SynthParams {
        assets: ASSETS,
        readings: READINGS,
        sensors,
        seed: 31 + sensors as u64,
        spike_frac: 0.5,
        drift_frac: 0.25,
        level_frac: 0.25,
        corr_frac: 0.25,
        ..SynthParams::default()
    });
    for (k, v) in f.values.iter_mut().enumerate() {
        if k % 97 == 0 {
            *v = f64::NAN;
        }
    }
    // Rows are time-major: row i - ASSETS is the same asset's previous row.
    for i in (ASSETS..f.n_rows()).step_by(211) {
        f.ts_ms[i] = f.ts_ms[i - ASSETS];
    }
    for i in (ASSETS + 5..f.n_rows()).step_by(307) {
        f.ts_ms[i] = f.ts_ms[i - ASSETS] - 1_000;
    }
    f
}

/// The defaults, with the slow trend's horizons shortened so that it is
/// learning and scoring well before the restore point (it settles after
/// the warm-up plus two slow half-lives: 160 readings here, ~2,080 by default).
fn params() -> DetectorParams {
    DetectorParams::default()
        .trend_fast_half_life(16.0)
        .trend_slow_half_life(64.0)
}

fn scorer(f: &SynthFleet, params: DetectorParams) -> FleetScorer {
    FleetScorer::new(params.check().unwrap(), f.sensor_names.clone(), ASSETS).unwrap()
}

fn row(f: &SynthFleet, sc: &mut FleetScorer, i: usize) -> RowScore {
    let n = f.sensor_names.len();
    sc.score_row(
        f.asset_idx[i] as usize,
        f.ts_ms[i],
        &f.values[i * n..(i + 1) * n],
    )
}

fn bits(r: &RowScore) -> (u64, u64, Option<usize>, bool) {
    (
        r.score.to_bits(),
        r.raw.to_bits(),
        r.top_sensor,
        r.in_warmup,
    )
}

/// Scores rows `..split`, snapshots every asset, restores them into a fresh
/// scorer (assets added in the same order), scores the rest there one row at
/// a time and as a batch: every output equals the uninterrupted run's.
fn check_restore_continues_identically(sensors: usize, split: usize) {
    let f = fleet(sensors);
    let n = sensors;
    let mut whole = scorer(&f, params());
    assert!(whole.multivariate_enabled());
    let want: Vec<RowScore> = (0..f.n_rows()).map(|i| row(&f, &mut whole, i)).collect();
    // The slow trend has been scoring (its lanes and header slots are live).
    let trend_max = |a: usize| whole.det.as_slice()[a * whole.det_stride + super::D_TREND_MAX];
    assert!((0..ASSETS).any(|a| trend_max(a) > 0.0));

    let mut before = scorer(&f, params());
    for i in 0..split {
        row(&f, &mut before, i);
    }
    let snaps: Vec<Vec<u8>> = (0..ASSETS).map(|a| before.asset_state(a)).collect();
    let fresh = || {
        let mut sc =
            FleetScorer::new(params().check().unwrap(), f.sensor_names.clone(), 0).unwrap();
        for (a, snap) in snaps.iter().enumerate() {
            assert_eq!(sc.add_asset(), a);
            sc.restore_asset_state(a, snap).unwrap();
            assert_eq!(&sc.asset_state(a), snap, "asset {a} round trip");
        }
        sc
    };

    let mut after = fresh();
    for (i, w) in want.iter().enumerate().skip(split) {
        let got = row(&f, &mut after, i);
        assert_eq!(got.status, w.status, "row {i}, restored at {split}");
        assert_eq!(bits(&got), bits(w), "row {i}, restored at {split}");
    }

    let rest = f.n_rows() - split;
    let (mut scores, mut top) = (vec![0.0; rest], vec![0u16; rest]);
    fresh()
        .score_batch(
            &f.asset_idx[split..],
            &f.ts_ms[split..],
            &f.values[split * n..],
            &mut scores,
            &mut top,
        )
        .unwrap();
    for (k, (s, w)) in scores.iter().zip(&want[split..]).enumerate() {
        assert_eq!(s.to_bits(), w.score.to_bits(), "batch row {}", split + k);
        assert_eq!(
            top[k],
            w.top_sensor.map_or(u16::MAX, |t| t as u16),
            "batch row {}",
            split + k
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Up to 8 sensors: the const-shape feature kernel and detector copy.
    #[test]
    fn a_restored_eight_sensor_fleet_scores_bit_identically(split in 0..=ASSETS * READINGS) {
        check_restore_continues_identically(8, split);
    }

    /// More than 8 sensors: the generic (runtime lane count) paths.
    #[test]
    fn a_restored_twelve_sensor_fleet_scores_bit_identically(split in 0..=ASSETS * READINGS) {
        check_restore_continues_identically(12, split);
    }

    #[test]
    fn truncated_altered_and_random_bytes_are_refused_and_change_nothing(
        cut in 0usize..100_000,
        flip_at in 0usize..100_000,
        flip in 1u8..=255,
        random in proptest::collection::vec(any::<u8>(), 0..4_000),
    ) {
        let (mut sc, snap) = trained(12);
        let before = sc.asset_state(1);
        let cut = cut % snap.len();
        prop_assert!(matches!(
            sc.restore_asset_state(1, &snap[..cut]),
            Err(AnomalyError::State(_))
        ));
        let mut altered = snap.clone();
        altered[flip_at % snap.len()] ^= flip;
        prop_assert!(matches!(
            sc.restore_asset_state(1, &altered),
            Err(AnomalyError::State(_))
        ));
        let mut random = random;
        prop_assert!(sc.restore_asset_state(1, &random).is_err());
        if random.len() >= 5 {
            random[..4].copy_from_slice(&SCORER_STATE_MAGIC);
            random[4] = SCORER_STATE_VERSION;
            prop_assert!(sc.restore_asset_state(1, &random).is_err());
        }
        prop_assert_eq!(sc.asset_state(1), before);
    }
}

/// A 12-sensor scorer past every warm-up, and a snapshot of its asset 2.
fn trained(sensors: usize) -> (FleetScorer, Vec<u8>) {
    let f = fleet(sensors);
    let mut sc = scorer(&f, DetectorParams::default());
    for i in 0..f.n_rows() {
        row(&f, &mut sc, i);
    }
    let snap = sc.asset_state(2);
    (sc, snap)
}

#[test]
fn snapshots_from_another_sensor_layout_or_parameters_are_refused_naming_why() {
    let (_, snap12) = trained(12);
    let (mut sc8, snap8) = trained(8);
    let refused = |sc: &mut FleetScorer, bytes: &[u8]| match sc.restore_asset_state(0, bytes) {
        Err(AnomalyError::State(e)) => e,
        other => panic!("expected a refused state, got {other:?}"),
    };

    let e = refused(&mut sc8, &snap12);
    assert!(
        matches!(
            e,
            StateError::Shape {
                what: "sensors",
                expected: 8,
                found: 12
            }
        ),
        "{e}"
    );
    let f8 = fleet(8);
    let mut other_params = scorer(&f8, DetectorParams::default().cusum_h(10.0));
    let e = refused(&mut other_params, &snap8);
    assert!(matches!(e, StateError::SpecMismatch { .. }), "{e}");
    assert!(e.to_string().contains("detector parameters"), "{e}");
    // The alarm-rate feedback steers towards the threshold, re-anchoring
    // counts alarms at it and the tail model extrapolates to it: another
    // threshold evolves state differently. Without all three the threshold
    // only selects alarms and may differ.
    let mut other_threshold = scorer(&f8, DetectorParams::default().threshold(0.99));
    assert!(matches!(
        refused(&mut other_threshold, &snap8),
        StateError::SpecMismatch { .. }
    ));
    let no_feedback = |t: f64| {
        DetectorParams::default()
            .calib_rate_step(0.0)
            .relearn_after(0)
            .calib_tail_p(0.0)
            .threshold(t)
    };
    let mut fixed = scorer(&f8, no_feedback(0.9999));
    let snap_fixed = {
        for i in 0..f8.asset_idx.len().min(400) {
            if f8.asset_idx[i] == 0 {
                let n = f8.sensor_names.len();
                fixed.score_row(0, f8.ts_ms[i], &f8.values[i * n..(i + 1) * n]);
            }
        }
        fixed.asset_state(0)
    };
    scorer(&f8, no_feedback(0.99))
        .restore_asset_state(0, &snap_fixed)
        .unwrap();
    let mut renamed_sensors = f8.sensor_names.clone();
    renamed_sensors[3] = "other".into();
    let mut renamed = FleetScorer::new(
        DetectorParams::default().check().unwrap(),
        renamed_sensors,
        1,
    )
    .unwrap();
    assert!(matches!(
        refused(&mut renamed, &snap8),
        StateError::SpecMismatch { .. }
    ));
    let mut no_mv = scorer(&f8, DetectorParams::default().mv_enabled(false));
    assert!(matches!(
        refused(&mut no_mv, &snap8),
        StateError::Shape { .. } | StateError::SpecMismatch { .. }
    ));

    // A feature snapshot is not a scorer snapshot, and vice versa.
    let spec = FeatureSpec::new(
        DetectorParams::default()
            .check()
            .unwrap()
            .features()
            .clone(),
        f8.sensor_names.clone(),
    )
    .unwrap();
    let features = FleetFeatures::new(spec, 1);
    let feature_snap = features.asset_state(0);
    assert_eq!(&feature_snap[..4], &FEATURE_STATE_MAGIC);
    assert!(matches!(
        refused(&mut sc8, &feature_snap),
        StateError::WrongKind { .. }
    ));
    assert!(features.check_asset_state(&snap8).is_err());

    assert!(matches!(
        sc8.restore_asset_state(ASSETS, &snap8),
        Err(AnomalyError::ShapeMismatch {
            what: "asset index",
            ..
        })
    ));
    sc8.restore_asset_state(0, &snap8).unwrap();
    assert_eq!(sc8.asset_state(0), snap8);
}
