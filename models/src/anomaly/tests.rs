//! Detector tests: no look-ahead, each injected kind detected within a stated
//! delay at a stated false-alarm rate, periodic signals, and the defined
//! behaviour for NaN / inf / duplicate / out-of-order input.

use fieldpulse_features::ParamGuard;

use super::*;

fn scorer(sensors: &[String], n_assets: usize) -> FleetScorer {
    FleetScorer::new(
        DetectorParams::default().check().unwrap(),
        sensors.to_vec(),
        n_assets,
    )
    .unwrap()
}

fn score_fleet(f: &SynthFleet) -> Vec<RowScore> {
    let mut sc = scorer(&f.sensor_names, f.asset_names.len());
    let n = f.sensor_names.len();
    (0..f.n_rows())
        .map(|i| {
            sc.score_row(
                f.asset_idx[i] as usize,
                f.ts_ms[i],
                &f.values[i * n..(i + 1) * n],
            )
        })
        .collect()
}

fn small(kind: AnomalyKind) -> SynthFleet {
    // Correlation breaks get more assets (with 6 events one miss moves the
    // recall by 0.17) and the bench's length.
    let (assets, readings) = if kind == AnomalyKind::CorrelationBreak {
        (60, 1000)
    } else {
        (30, 800)
    };
    generate(&SynthParams {
        assets,
        readings,
        seed: 11 + kind as u64,
        ..SynthParams::only(kind, 0.2)
    })
}

#[test]
fn scores_of_a_prefix_equal_the_prefix_of_the_scores() {
    let f = generate(&SynthParams {
        assets: 12,
        readings: 300,
        ..SynthParams::default()
    });
    let full = score_fleet(&f);
    let n = f.sensor_names.len();
    for cut in [1, 97, 1200, 2999, f.n_rows() - 1] {
        let mut sc = scorer(&f.sensor_names, f.asset_names.len());
        for (i, want) in full.iter().enumerate().take(cut) {
            let got = sc.score_row(
                f.asset_idx[i] as usize,
                f.ts_ms[i],
                &f.values[i * n..(i + 1) * n],
            );
            assert_eq!(
                got, *want,
                "row {i} differs when scoring only the first {cut} rows"
            );
        }
    }
}

/// Each kind, on a 30-asset × 800-reading fleet with 20 % of assets affected
/// (6 events; 18 for spikes; 60 assets × 1,000 readings and 12 events for
/// correlation breaks): recall at least the stated bar within the stated
/// delay — spikes 0.8 on the spike reading itself, level shifts 0.8 within 10
/// readings, drifts 0.8 within 150, correlation breaks 0.5 within 150 (a sign
/// flip of one sensor's load response leaves every marginal unchanged; this
/// fleet measures 0.75, the 200-asset probe fleets 0.70–0.85) — while false
/// alarms stay at or under 3 per 1,000 normal rows at the default threshold.
#[test]
fn every_injected_kind_is_detected_within_its_delay_at_a_low_false_alarm_rate() {
    let budgets = [
        (AnomalyKind::Spike, 0, 0.8),
        (AnomalyKind::LevelShift, 10, 0.8),
        (AnomalyKind::Drift, 150, 0.8),
        (AnomalyKind::CorrelationBreak, 150, 0.5),
    ];
    let threshold = DetectorValidParams::default().threshold();
    for (kind, delay, bar) in budgets {
        let f = small(kind);
        let scores = score_fleet(&f);
        let alarms: Vec<bool> = scores.iter().map(|s| s.is_anomaly(threshold)).collect();
        let q = evaluate(&f.asset_idx, &f.labels, &alarms, delay);
        let k = q
            .kinds
            .iter()
            .find(|k| k.kind == kind)
            .expect("kind injected");
        eprintln!(
            "{kind:?}: {k:?} fa/1k {:.2} episodes {} false {}",
            q.false_alarms_per_1k, q.episodes, q.false_episodes
        );
        assert!(
            k.recall >= bar,
            "{kind:?} recall {} within {delay} readings",
            k.recall
        );
        assert!(
            q.false_alarms_per_1k <= 3.0,
            "{kind:?} fleet: {} false alarms per 1k",
            q.false_alarms_per_1k
        );
    }
}

#[test]
fn a_clean_fleet_raises_few_false_alarms() {
    let f = generate(&SynthParams {
        assets: 30,
        readings: 800,
        seed: 99,
        ..SynthParams::only(AnomalyKind::Spike, 0.0)
    });
    let scores = score_fleet(&f);
    let th = DetectorValidParams::default().threshold();
    let alarms = scores.iter().filter(|s| s.is_anomaly(th)).count();
    let rate = 1000.0 * alarms as f64 / scores.len() as f64;
    eprintln!(
        "clean fleet: {alarms} alarms in {} rows ({rate:.2}/1k)",
        scores.len()
    );
    assert!(rate <= 3.0, "{rate} false alarms per 1k rows");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(&s.score)));
}

/// A daily cycle 8× the noise, sampled every minute (1,440 a cycle) and every
/// hour (24 a cycle): peaks must not alarm.
#[test]
fn daily_cycles_do_not_alarm_at_every_peak() {
    for (interval_s, readings) in [(60i64, 4320usize), (3600, 24 * 60)] {
        let mut rng = synth::Rng::new(5);
        let sensors = vec!["temp".to_string(), "load".to_string()];
        let mut sc = scorer(&sensors, 1);
        let day = 86_400.0 / interval_s as f64;
        let mut alarms = 0;
        let mut noise = 0.0;
        for t in 0..readings {
            noise = 0.7 * noise + 0.714 * rng.normal();
            let cyc = (std::f64::consts::TAU * t as f64 / day).sin();
            let row = [
                50.0 + 8.0 * cyc + noise,
                10.0 + 4.0 * cyc + 0.5 * rng.normal(),
            ];
            let r = sc.score_row(0, 1_767_225_600_000 + t as i64 * interval_s * 1000, &row);
            alarms += usize::from(r.is_anomaly(0.999));
        }
        let days = readings as f64 / day;
        let per_1k = 1000.0 * alarms as f64 / readings as f64;
        eprintln!("interval {interval_s}s: {alarms} alarms over {days} days");
        // Alarming at peaks would mean hundreds of alarms (a peak lasts many readings).
        assert!(
            per_1k <= 2.0,
            "interval {interval_s}s: {alarms} alarms in {days} days of cycles"
        );
    }
}

#[test]
fn bad_values_and_timestamps_have_defined_counted_scores() {
    let sensors: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let mut sc = scorer(&sensors, 1);
    let mut rng = synth::Rng::new(3);
    let t0 = 1_767_225_600_000i64;
    for t in 0..200 {
        sc.score_row(
            0,
            t0 + t * 1000,
            &[rng.normal(), 5.0 + rng.normal(), 10.0 + rng.normal()],
        );
    }
    let nan = sc.score_row(0, t0 + 200_000, &[f64::NAN, 5.0, 10.0]);
    let inf = sc.score_row(0, t0 + 201_000, &[f64::INFINITY, f64::NEG_INFINITY, 10.0]);
    let none = sc.score_row(0, t0 + 202_000, &[f64::NAN, f64::NAN, f64::NAN]);
    let dup = sc.score_row(0, t0 + 202_000, &[0.0, 5.0, 10.0]);
    let old = sc.score_row(0, t0, &[0.0, 5.0, 10.0]);
    for r in [nan, inf, none, dup, old] {
        assert!(
            r.score.is_finite() && (0.0..=1.0).contains(&r.score),
            "{r:?}"
        );
        assert!(r.raw.is_finite(), "{r:?}");
    }
    assert_ne!(
        nan.top_sensor,
        Some(0),
        "a missing value never is the top sensor"
    );
    assert_eq!(dup.status, fieldpulse_features::RowStatus::Duplicate);
    assert_eq!(old.status, fieldpulse_features::RowStatus::OutOfOrder);
    let c = sc.counters();
    assert_eq!(
        (
            c.missing_values,
            c.rows_without_values,
            c.duplicate_rows,
            c.out_of_order_rows
        ),
        (6, 1, 1, 1)
    );
    // The spike after the bad rows is still caught and attributed.
    let spike = sc.score_row(0, t0 + 203_000, &[0.0, 5.0 + 40.0, 10.0]);
    assert!(spike.is_anomaly(0.999), "{spike:?}");
    assert_eq!(spike.top_sensor, Some(1));
}

#[test]
fn warm_up_rows_score_zero_and_are_counted() {
    let sensors = vec!["x".to_string()];
    let mut sc = scorer(&sensors, 1);
    for t in 0..64 {
        let r = sc.score_row(0, t * 1000, &[if t == 40 { 1e6 } else { 1.0 }]);
        assert_eq!(r.score, 0.0);
    }
    assert_eq!(sc.counters().warmup_rows, 64);
}

/// After one large spike the short level and the covariance are disturbed
/// for a while; the readings after it must not alarm as echoes.
#[test]
fn a_single_spike_does_not_echo_into_the_following_readings() {
    let sensors = vec!["temp".to_string(), "vib".to_string()];
    let mut sc = scorer(&sensors, 1);
    let mut rng = synth::Rng::new(1);
    let th = DetectorValidParams::default().threshold();
    for i in 0..340i64 {
        let temp = if i == 300 {
            95.0
        } else {
            70.0 + rng.uniform() - 0.5
        };
        let r = sc.score_row(0, i * 60_000, &[temp, 0.3 + 0.01 * (rng.uniform() - 0.5)]);
        if i == 300 {
            assert!(r.is_anomaly(th) && r.top_sensor == Some(0), "{r:?}");
        } else if i > 300 {
            assert!(!r.is_anomaly(th), "row {i} echoes the spike: {r:?}");
        }
    }
}

/// The baseline, AVX2 and AVX-512 copies of the row loop (those this CPU can
/// run) give bit-identical scores, row by row and in batches.
#[test]
fn every_compiled_vector_width_scores_bit_identically() {
    use super::scorer::Simd;
    let f = generate(&SynthParams {
        assets: 12,
        readings: 600,
        seed: 3,
        ..SynthParams::default()
    });
    let n = f.sensor_names.len();
    let rows = f.n_rows();
    // The defaults, and short slow-trend horizons so that the trend (which
    // settles after ~2,080 readings by default) scores here too.
    let short_trend = DetectorParams::default()
        .trend_fast_half_life(16.0)
        .trend_slow_half_life(64.0);
    for params in [DetectorParams::default(), short_trend] {
        let build = |simd| {
            FleetScorer::new(params.clone().check().unwrap(), f.sensor_names.clone(), 12)
                .unwrap()
                .with_simd(simd)
        };
        let mut runs = Vec::new();
        for simd in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
            let Some(mut sc) = build(simd) else {
                continue;
            };
            let (mut scores, mut top) = (vec![0.0; rows], vec![0u16; rows]);
            sc.score_batch(&f.asset_idx, &f.ts_ms, &f.values, &mut scores, &mut top)
                .unwrap();
            let mut single = build(simd).unwrap();
            for (i, want) in scores.iter().enumerate() {
                let r = single.score_row(
                    f.asset_idx[i] as usize,
                    f.ts_ms[i],
                    &f.values[i * n..(i + 1) * n],
                );
                assert_eq!(r.score.to_bits(), want.to_bits(), "{simd:?} row {i}");
            }
            runs.push((simd, scores, top));
        }
        for (simd, scores, top) in &runs[1..] {
            let base = &runs[0];
            assert!(
                scores
                    .iter()
                    .zip(&base.1)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{simd:?} scores differ from {:?}",
                base.0
            );
            assert_eq!(top, &base.2, "{simd:?} top sensors");
        }
        eprintln!("compared {} vector widths", runs.len());
    }
}

/// More sensors than one lane chunk (12) take the generic detector copy: it
/// finds the same spikes, and a batch scores exactly like row by row.
#[test]
fn assets_wider_than_one_lane_chunk_score_with_the_generic_copy() {
    let f = generate(&SynthParams {
        assets: 20,
        readings: 600,
        sensors: 12,
        seed: 4,
        ..SynthParams::only(AnomalyKind::Spike, 0.3)
    });
    let rows = f.n_rows();
    let singles = score_fleet(&f);
    let mut sc = scorer(&f.sensor_names, f.asset_names.len());
    let (mut scores, mut top) = (vec![0.0; rows], vec![0u16; rows]);
    sc.score_batch(&f.asset_idx, &f.ts_ms, &f.values, &mut scores, &mut top)
        .unwrap();
    for (i, (r, s)) in singles.iter().zip(&scores).enumerate() {
        assert_eq!(r.score.to_bits(), s.to_bits(), "row {i}");
    }
    let threshold = DetectorValidParams::default().threshold();
    let alarms: Vec<bool> = scores.iter().map(|s| *s >= threshold).collect();
    let q = evaluate(&f.asset_idx, &f.labels, &alarms, 0);
    let spikes = q
        .kinds
        .iter()
        .find(|k| k.kind == AnomalyKind::Spike)
        .expect("spikes injected");
    assert!(spikes.recall >= 0.8, "{spikes:?}");
    assert!(top.iter().any(|t| *t as usize >= 8 && *t != u16::MAX));
}

/// A univariate series scored alone: per row, alarmed at the default threshold.
fn alarms_of(values: &[f64], params: DetectorParams) -> (Vec<bool>, ScoreCounters) {
    let p = params.check().unwrap();
    let threshold = p.threshold();
    let mut sc = FleetScorer::new(p, vec!["v".into()], 1).unwrap();
    let alarms = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            sc.score_row(0, 1_700_000_000_000 + 60_000 * i as i64, &[*v])
                .is_anomaly(threshold)
        })
        .collect();
    (alarms, sc.counters())
}

/// Deterministic noise in [-1, 1): the SplitMix64 hash of `i` (no
/// dependency on a generator's stream).
fn noise(i: usize) -> f64 {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

#[test]
fn a_stuck_sensor_alarms_and_a_constant_channel_or_a_learned_off_period_does_not() {
    // A sensor that changes every reading, stuck at its last value from row
    // 3,000: an alarm within 4 x 1 + 16 repeats (and a few rows of margin).
    let mut stuck: Vec<f64> = (0..6_000).map(|i| 20.0 + noise(i)).collect();
    let held = stuck[2_999];
    stuck[3_000..].fill(held);
    let (alarms, _) = alarms_of(&stuck, DetectorParams::default());
    let first = (3_000..6_000).find(|&i| alarms[i]);
    assert!(
        first.is_some_and(|i| i - 3_000 <= 25),
        "stuck sensor first alarm at {first:?}"
    );
    assert!(
        !alarms[..3_000].iter().any(|a| *a),
        "alarm before the fault"
    );
    // A channel that never changed is not stuck.
    let (alarms, _) = alarms_of(&[4.0; 3_000], DetectorParams::default());
    assert!(!alarms.iter().any(|a| *a), "a constant channel alarmed");
    // A gateway that repeats a machine's last reading while it sleeps, 8
    // hours of every 24: the run lengths are learned from the first night
    // (which alarms), so later nights are quiet, and the held readings do
    // not shrink the scales the morning's readings are judged by.
    let mut held = 0.0;
    let nightly: Vec<f64> = (0..14_400)
        .map(|i| {
            if i % 1_440 < 960 {
                held = 50.0 + noise(i);
            }
            held
        })
        .collect();
    let (alarms, _) = alarms_of(&nightly, DetectorParams::default());
    assert!(alarms[960..1_440].iter().any(|a| *a), "the first night");
    let later: Vec<usize> = (1_440..nightly.len()).filter(|&i| alarms[i]).collect();
    assert!(later.is_empty(), "later nights alarm: {later:?}");
}

#[test]
fn a_signal_idle_between_bursts_does_not_alarm_after_every_burst() {
    // A disk idle between writes (NAB's `ec2_disk_write_bytes` kind): 0 nine
    // readings in ten, otherwise 10^4 to 10^8 bytes. Its median absolute
    // deviation is 0: without the spread floor a write scored far past any
    // threshold and the zeros after it kept alarming for hundreds of
    // readings (67 % of that NAB file's rows flagged).
    let xs: Vec<f64> = (0..8_000)
        .map(|i| {
            let u = (noise(i) + 1.0) / 2.0;
            if u < 0.9 {
                0.0
            } else {
                10f64.powf(4.0 + 40.0 * (u - 0.9)).round()
            }
        })
        .collect();
    let flagged = |p: DetectorParams| {
        let (alarms, _) = alarms_of(&xs, p);
        alarms.iter().filter(|a| **a).count() as f64 / xs.len() as f64
    };
    let with = flagged(DetectorParams::default());
    let without = flagged(
        DetectorParams::default()
            .features(FeatureParams::default().scale_floor_spread(0.0))
            .unwrap(),
    );
    // Measured: 0.25 % with the spread floor, 9 % without it. This draw (the
    // features test's) is one where the robust scale collapses to the
    // smallest changes; on others it stays near the writes' size and the
    // floor changes little (the corpus's `idle_bursts`: seed 3 18.2 -> 4.8
    // onsets per 1,000, seeds 13 and 21 0.16 / 0.14 -> 0.14).
    assert!(with < 0.01, "{:.1} % of rows flagged", 100.0 * with);
    assert!(without > 0.05, "without the floor {:.1} %", 100.0 * without);
}

#[test]
fn a_persistent_new_level_stops_alarming_within_the_relearn_horizon() {
    // A setpoint step of 40 noise sigma: the slow robust level alone would
    // take thousands of readings to follow it.
    let series: Vec<f64> = (0..8_000)
        .map(|i| if i < 3_000 { 50.0 } else { 90.0 } + 0.5 * noise(i))
        .collect();
    let last_alarm = |alarms: &[bool]| (3_000..alarms.len()).rev().find(|&i| alarms[i]);
    let (alarms, counters) = alarms_of(&series, DetectorParams::default().relearn_after(120));
    assert!(alarms[3_000..3_010].iter().any(|a| *a), "the step alarms");
    let last = last_alarm(&alarms).unwrap();
    assert!(last < 3_000 + 120 + 60, "still alarming at row {last}");
    assert!(counters.reanchors >= 1);
    // Without re-anchoring the alarm lasts far longer (what it fixes).
    let (alarms, counters) = alarms_of(&series, DetectorParams::default().relearn_after(0));
    assert!(last_alarm(&alarms).unwrap() > 3_000 + 300);
    assert_eq!(counters.reanchors, 0);
}

#[test]
fn a_slow_ramp_alarms_before_three_spreads_and_a_steady_slope_does_not() {
    // Uniform noise of sd 1/sqrt(3); from row 10,000 a ramp of 5 sd over
    // 2,000 rows, which the robust median follows within a fraction of a
    // sd: the drift statistic misses it, the slow trend must see it before
    // it has ramped to 3 sd (row 11,200), with no alarm before it starts.
    let sd = 1.0 / 3f64.sqrt();
    let ramp = |i: usize| 5.0 * sd * (i.saturating_sub(10_000) as f64 / 2_000.0).min(1.0);
    let series: Vec<f64> = (0..12_000).map(|i| 20.0 + noise(i) + ramp(i)).collect();
    let (alarms, _) = alarms_of(&series, DetectorParams::default());
    let early: Vec<usize> = (0..10_000).filter(|&i| alarms[i]).collect();
    assert!(early.is_empty(), "alarms before the ramp: {early:?}");
    let first = (10_000..12_000).find(|&i| alarms[i]);
    assert!(
        first.is_some_and(|i| i < 11_200),
        "ramp first alarm at {first:?}"
    );
    // Without the slow trend (what it adds): not seen by 3 sd.
    let (alarms, _) = alarms_of(&series, DetectorParams::default().trend_z(0.0));
    assert!(!alarms[10_000..11_200].iter().any(|a| *a));
    // A series that has always had that slope (a wearing part): quiet
    // once the trend has learned it.
    let steady: Vec<f64> = (0..12_000)
        .map(|i| 20.0 + noise(i) + 5.0 * sd * i as f64 / 2_000.0)
        .collect();
    let (alarms, _) = alarms_of(&steady, DetectorParams::default());
    let late: Vec<usize> = (4_000..12_000).filter(|&i| alarms[i]).collect();
    assert!(late.is_empty(), "a steady slope alarms: {late:?}");
    // The same slope with a setpoint step of 40 sd at row 8,000: one alarm
    // run, within the re-learning horizon. The robust median walks to the
    // new level for ~700 readings after it; the slow trend's averages move
    // with that walk instead of averaging it (averaged, it looked like a
    // ramp: a second alarm run, 8,879-9,598, ended only by a re-anchor).
    let stepped: Vec<f64> = steady
        .iter()
        .enumerate()
        .map(|(i, v)| v + if i >= 8_000 { 40.0 * sd } else { 0.0 })
        .collect();
    let (alarms, _) = alarms_of(&stepped, DetectorParams::default());
    assert!(alarms[8_000..8_010].iter().any(|a| *a), "the step alarms");
    let onsets: Vec<usize> = (8_001..12_000)
        .filter(|&i| alarms[i] && !alarms[i - 1])
        .collect();
    assert!(onsets.is_empty(), "alarm runs after the step's: {onsets:?}");
    let last = (8_000..12_000).rev().find(|&i| alarms[i]);
    assert!(last.is_some_and(|i| i < 8_000 + 720), "last alarm {last:?}");
    // A steeper slope (10 sd per 2,000 readings) with the step re-anchored
    // after 120 alarming rows: the trend's averages restart behind the new
    // median on the learned slope, so no second alarm follows (restarted at
    // the median itself, one came 7 readings after the re-anchor).
    let steep: Vec<f64> = (0..12_000)
        .map(|i| {
            20.0 + noise(i)
                + 10.0 * sd * i as f64 / 2_000.0
                + if i >= 8_000 { 40.0 * sd } else { 0.0 }
        })
        .collect();
    let (alarms, counters) = alarms_of(&steep, DetectorParams::default().relearn_after(120));
    assert_eq!(counters.reanchors, 1);
    let onsets: Vec<usize> = (8_001..12_000)
        .filter(|&i| alarms[i] && !alarms[i - 1])
        .collect();
    assert!(
        onsets.is_empty(),
        "alarm runs after the re-anchor: {onsets:?}"
    );
}
