//! `FailureScorer` snapshots: assets restored into a fresh scorer predict the
//! rest of the stream bit-identically to the uninterrupted scorer; refused
//! bytes change nothing and create no asset slot.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fieldpulse_features::{FeatureParams, FeatureSpec, FleetFeatures, ParamGuard};
use fieldpulse_simulator::{product::PRODUCTS, telemetry, Fleet, FleetConfig};
use proptest::prelude::*;

use super::{ArtifactError, FailureModel, FailureScorer, Prediction};
use crate::failure::dataset::Telemetry;
use crate::failure::labels::FleetHistory;
use crate::failure::train::{train, TrainConfig};
use crate::gbdt::GbdtParams;

/// A small simulated fleet, its history, a model trained on it (once per
/// test binary: training takes seconds) and the uninterrupted predictions.
struct Fixture {
    telemetry: Telemetry,
    history: FleetHistory,
    model: Arc<FailureModel>,
    want: Vec<(Prediction, Vec<f64>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cfg = FleetConfig {
            seed: 12,
            n_assets: 4,
            duration: Duration::from_secs(90 * 86_400),
            interval: Duration::from_secs(4 * 3600),
            wear_speedup: 1.5,
            ..FleetConfig::default()
        };
        let mut fleet = Fleet::new(cfg).expect("fleet");
        let mut csv = Vec::new();
        telemetry::write_header(&mut csv).expect("header");
        while let Some(reading) = fleet.next_reading() {
            let name = fleet.assets()[reading.asset_idx].name.clone();
            telemetry::write_row(&mut csv, &name, &reading).expect("row");
        }
        let fixture = fleet.history().to_fixture_json(&PRODUCTS).to_string();
        let telemetry = Telemetry::read_csv(csv.as_slice()).expect("telemetry");
        let history = FleetHistory::from_json(&fixture).expect("history");
        let cfg = TrainConfig {
            booster: GbdtParams {
                n_trees: 20,
                learning_rate: 0.2,
                max_depth: 3,
                min_samples_leaf: 20,
                ..TrainConfig::default().booster
            },
            ..TrainConfig::default()
        };
        let outcome = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
        let model = Arc::new(outcome.model);
        let mut scorer = FailureScorer::new(model.clone(), history.clone()).expect("scorer");
        let want = (0..telemetry.n_rows())
            .map(|i| {
                let p = score(&mut scorer, &telemetry, i);
                (p, scorer.last_row().to_vec())
            })
            .collect();
        Fixture {
            telemetry,
            history,
            model,
            want,
        }
    })
}

fn score(scorer: &mut FailureScorer, t: &Telemetry, i: usize) -> Prediction {
    let n = t.sensors.len();
    scorer
        .score(
            &t.assets[t.asset_idx[i] as usize],
            t.ts_ms[i],
            &t.values[i * n..(i + 1) * n],
        )
        .expect("score")
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn restored_assets_predict_bit_identically(split_frac in 0.0f64..=1.0) {
        let fx = fixture();
        let t = &fx.telemetry;
        let split = ((t.n_rows() as f64 * split_frac) as usize).min(t.n_rows());
        let mut before = FailureScorer::new(fx.model.clone(), fx.history.clone()).unwrap();
        let n = t.sensors.len();
        for i in 0..split {
            // Serving feeds every reading and predicts on a schedule.
            before
                .observe(
                    &t.assets[t.asset_idx[i] as usize],
                    t.ts_ms[i],
                    &t.values[i * n..(i + 1) * n],
                    i % 3 == 0,
                )
                .unwrap();
        }
        let mut with_state: Vec<&str> = before.assets().collect();
        with_state.sort_unstable();
        let mut after = FailureScorer::new(fx.model.clone(), fx.history.clone()).unwrap();
        for asset in &t.assets {
            let scored = t.asset_idx[..split].iter().any(|a| &t.assets[*a as usize] == asset);
            match before.asset_state(asset) {
                Some(snap) => {
                    prop_assert!(scored);
                    after.restore_asset_state(asset, &snap).unwrap();
                    prop_assert_eq!(after.asset_state(asset), Some(snap));
                }
                None => prop_assert!(!scored, "{} was scored", asset),
            }
        }
        let mut restored: Vec<&str> = after.assets().collect();
        restored.sort_unstable();
        prop_assert_eq!(restored, with_state);
        for i in split..t.n_rows() {
            let got = score(&mut after, t, i);
            let (want, want_row) = &fx.want[i];
            prop_assert_eq!(bits(&got.probabilities), bits(&want.probabilities), "row {}", i);
            prop_assert_eq!(&got.alarms, &want.alarms);
            prop_assert_eq!(got.rul_days.to_bits(), want.rul_days.to_bits());
            prop_assert_eq!(bits(after.last_row()), bits(want_row), "row {}", i);
        }
    }

    #[test]
    fn truncated_or_random_bytes_are_refused_and_create_no_asset(
        cut in 0usize..100_000,
        random in proptest::collection::vec(any::<u8>(), 0..2_000),
    ) {
        let fx = fixture();
        let t = &fx.telemetry;
        let mut scorer = FailureScorer::new(fx.model.clone(), fx.history.clone()).unwrap();
        for i in 0..200 {
            score(&mut scorer, t, i);
        }
        let name = &t.assets[t.asset_idx[0] as usize];
        let snap = scorer.asset_state(name).unwrap();
        let cut = cut % snap.len();
        let err = scorer.restore_asset_state("new-asset", &snap[..cut]).unwrap_err();
        let named = matches!(&err, ArtifactError::State { asset, .. } if asset == "new-asset");
        prop_assert!(named, "{}", err);
        prop_assert!(scorer.restore_asset_state("new-asset", &random).is_err());
        prop_assert!(scorer.asset_state("new-asset").is_none());
        prop_assert!(scorer.restore_asset_state(name, &random).is_err());
        prop_assert_eq!(scorer.asset_state(name), Some(snap));
    }
}

#[test]
fn state_of_other_streaming_features_is_refused_and_unknown_assets_have_none() {
    let fx = fixture();
    let mut scorer = FailureScorer::new(fx.model.clone(), fx.history.clone()).unwrap();
    assert!(scorer.asset_state("never-seen").is_none());
    let mut sensors = fx.model.schema.sensors.clone();
    sensors.push("extra".into());
    let params = FeatureParams::default()
        .half_lives(fx.model.schema.half_lives.clone())
        .trend_horizon(fx.model.schema.trend_horizon)
        .check()
        .unwrap();
    let other = FleetFeatures::new(FeatureSpec::new(params, sensors).unwrap(), 1);
    let err = scorer
        .restore_asset_state("a", &other.asset_state(0))
        .unwrap_err();
    assert!(err.to_string().contains("sensors"), "{err}");
    assert!(scorer.asset_state("a").is_none());
    // A fresh state of the right spec restores (and creates the slot).
    let spec = fx.model.validate().unwrap();
    let same = FleetFeatures::new(spec, 1);
    scorer
        .restore_asset_state("a", &same.asset_state(0))
        .unwrap();
    assert_eq!(scorer.asset_state("a"), Some(same.asset_state(0)));
}
