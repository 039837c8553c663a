//! Training-path tests on simulated fleets: artifact round trip, schema
//! rejection, no leakage across the split, online/offline feature parity.

use std::time::Duration;

use fieldpulse_simulator::{product::PRODUCTS, telemetry, Fleet, FleetConfig};

use super::challengers::{compare, ChallengerConfig};
use super::dataset::{classifier_labels, feature_rows, rul_targets, Observation, Telemetry};
use super::labels::{format_ms, FleetHistory};
use super::model::{ArtifactError, FailureModel, FailureScorer, FeatureSchema};
use super::train::{split_rows, train, train_with_rows, TrainConfig};
use crate::gbdt::GbdtParams;

/// Telemetry CSV text and fixture JSON of a small, fast-wearing fleet.
fn simulate(n_assets: usize, days: u64, seed: u64) -> (String, String) {
    let cfg = FleetConfig {
        seed,
        n_assets,
        duration: Duration::from_secs(days * 86_400),
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
    (String::from_utf8(csv).expect("utf8"), fixture)
}

fn load(csv: &str, fixture: &str) -> (Telemetry, FleetHistory) {
    let telemetry = Telemetry::read_csv(csv.as_bytes()).expect("telemetry");
    let history = FleetHistory::from_json(fixture).expect("history");
    (telemetry, history)
}

fn fast_config() -> TrainConfig {
    TrainConfig {
        booster: GbdtParams {
            n_trees: 30,
            learning_rate: 0.15,
            max_depth: 4,
            min_samples_leaf: 20,
            ..TrainConfig::default().booster
        },
        ..TrainConfig::default()
    }
}

#[test]
fn training_on_simulated_history_ranks_failures_and_round_trips_through_the_artifact() {
    let (csv, fixture) = simulate(15, 240, 3);
    let (telemetry, history) = load(&csv, &fixture);
    assert_eq!(telemetry.sensors.len(), 6);
    let cfg = fast_config();
    let outcome = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    let model = &outcome.model;
    assert!(model.classifiers.iter().any(|c| c.mode == "any"));
    assert!(model
        .classifiers
        .iter()
        .all(|c| (0.0..=1.0).contains(&c.threshold)));
    // The "any failure within 7 days" classifier must rank far better than
    // the base rate on held-out assets.
    let any7 = outcome
        .test
        .classifiers
        .iter()
        .find(|c| c.mode == "any" && c.horizon_days == 7.0)
        .expect("any/7d metrics");
    let base_rate = any7.n_positive as f64 / any7.n_rows.max(1) as f64;
    assert!(any7.n_positive > 0, "test slice has no failure");
    assert!(
        any7.average_precision > base_rate * 1.5,
        "AP {} vs base rate {base_rate}",
        any7.average_precision
    );
    assert!(any7.n_failures_detected > 0 && any7.median_lead_days.is_some());
    let dir = tempfile::tempdir().expect("tempdir");
    model.save(dir.path()).expect("save");
    let loaded = FailureModel::load(dir.path()).expect("load");
    assert_eq!(&loaded, model);
    let row = vec![0.5; model.schema.n_features()];
    assert_eq!(loaded.predict(&row), model.predict(&row));
}

#[test]
fn a_trained_model_explains_each_risk_exactly_and_an_artifact_without_covers_still_scores() {
    let (csv, fixture) = simulate(6, 120, 8);
    let (telemetry, history) = load(&csv, &fixture);
    let outcome = train(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).expect("train");
    let model = std::sync::Arc::new(outcome.model);
    let mut scorer = FailureScorer::new(model.clone(), history.clone()).expect("scorer");
    let n = telemetry.sensors.len();
    let mut rows = Vec::new();
    for i in 0..telemetry.n_rows() {
        let asset = &telemetry.assets[telemetry.asset_idx[i] as usize];
        let values = &telemetry.values[i * n..(i + 1) * n];
        scorer
            .score(asset, telemetry.ts_ms[i], values)
            .expect("score");
        if i % 97 == 0 {
            rows.push(scorer.last_row().to_vec());
        }
    }
    assert!(rows.len() > 20);
    for row in &rows {
        let prediction = model.predict(row);
        for (k, c) in model.classifiers.iter().enumerate() {
            let e = c
                .explain(&model.schema, row, usize::MAX)
                .expect("explainable");
            // Local accuracy in log-odds, and the probability shares add up
            // to the change from the baseline risk.
            let sum_log_odds: f64 = e.top.iter().map(|t| t.log_odds).sum();
            let sum_probability: f64 = e.top.iter().map(|t| t.probability).sum();
            assert!((e.base_log_odds + sum_log_odds - e.log_odds).abs() < 1e-9);
            assert!((sum_probability - (e.probability - e.base_probability)).abs() < 1e-9);
            assert_eq!(e.probability, prediction.probabilities[k]);
            assert_eq!(e.top.len(), e.n_contributing);
            assert!(e
                .top
                .windows(2)
                .all(|w| w[0].log_odds.abs() >= w[1].log_odds.abs()));
            for t in &e.top {
                assert!(t.log_odds * t.probability >= 0.0, "sign kept: {t:?}");
                assert!(!t.phrase.is_empty());
            }
        }
    }
    // The same model saved without covers (the layout before covers existed)
    // loads, scores identically and writes back byte for byte; it explains
    // nothing, and says why.
    let mut old = (*model).clone();
    for booster in old
        .classifiers
        .iter_mut()
        .map(|c| &mut c.booster)
        .chain([&mut old.rul])
    {
        for node in booster.trees.iter_mut().flat_map(|t| t.nodes.iter_mut()) {
            node.cover = None;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    old.save(dir.path()).expect("save");
    let bytes = std::fs::read(dir.path().join(super::model::MODEL_FILE)).expect("read");
    assert!(!String::from_utf8_lossy(&bytes).contains("cover"));
    let loaded = FailureModel::load(dir.path()).expect("old layout loads");
    let again = tempfile::tempdir().expect("tempdir");
    loaded.save(again.path()).expect("save");
    assert_eq!(
        std::fs::read(again.path().join(super::model::MODEL_FILE)).expect("read"),
        bytes
    );
    for row in &rows {
        assert_eq!(loaded.predict(row), model.predict(row));
        let err = loaded.classifiers[0]
            .explain(&loaded.schema, row, 4)
            .unwrap_err();
        assert!(err.to_string().contains("no node covers"), "{err}");
    }
}

#[test]
fn an_artifact_with_a_wrong_feature_schema_is_rejected() {
    let (csv, fixture) = simulate(6, 120, 4);
    let (telemetry, history) = load(&csv, &fixture);
    let outcome = train(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).expect("train");
    let dir = tempfile::tempdir().expect("tempdir");

    let mut renamed = outcome.model.clone();
    renamed.schema.stream_columns[3] = "temp_c.something_else".into();
    renamed.save(dir.path()).expect("save");
    let err = FailureModel::load(dir.path()).unwrap_err();
    assert!(matches!(err, ArtifactError::Schema(_)), "{err}");
    assert!(err.to_string().contains("temp_c.something_else"), "{err}");

    let mut narrower = outcome.model.clone();
    narrower.schema.history_columns.pop();
    narrower.schema.modes.pop();
    narrower.save(dir.path()).expect("save");
    assert!(matches!(
        FailureModel::load(dir.path()),
        Err(ArtifactError::Schema(_))
    ));

    let mut future = outcome.model.clone();
    future.version = super::model::ARTIFACT_VERSION + 1;
    future.save(dir.path()).expect("save");
    assert!(matches!(
        FailureModel::load(dir.path()),
        Err(ArtifactError::Version { .. })
    ));

    let err = outcome
        .model
        .schema
        .sensor_positions(&["temp_c".to_string(), "rpm".to_string()])
        .unwrap_err();
    assert!(err.to_string().contains("vib_rms"), "{err}");
}

#[test]
fn no_label_or_feature_of_a_fit_row_changes_when_everything_after_the_cutoff_is_deleted() {
    let (csv, fixture) = simulate(8, 150, 5);
    let (telemetry, history) = load(&csv, &fixture);
    let cfg = fast_config();
    let schema = FeatureSchema::new(
        telemetry.sensors.clone(),
        cfg.half_lives.clone(),
        cfg.trend_horizon,
        history.products(),
        history.modes(),
    )
    .expect("schema");
    let (t0, t1) = telemetry.time_range().expect("rows");
    let rows = feature_rows(&telemetry, &schema, &history, 3).expect("rows");
    let split = split_rows(&rows, &telemetry.assets, &history, t0, t1, &cfg);
    let cutoff = split.t_cal_ms;
    for product in history.products() {
        let of_product: Vec<&String> = telemetry
            .assets
            .iter()
            .filter(|a| history.assets[*a].product.as_deref() == Some(product.as_str()))
            .collect();
        let held = of_product
            .iter()
            .filter(|a| split.test_assets.contains(a))
            .count();
        assert!(
            held >= 1 && held < of_product.len(),
            "{product}: {held} of {} held out",
            of_product.len()
        );
    }

    // Delete every reading and every Work Order from the cutoff on.
    let keep: Vec<usize> = (0..telemetry.n_rows())
        .filter(|&i| telemetry.ts_ms[i] < cutoff)
        .collect();
    let n = telemetry.sensors.len();
    let truncated = Telemetry {
        asset_idx: keep.iter().map(|&i| telemetry.asset_idx[i]).collect(),
        ts_ms: keep.iter().map(|&i| telemetry.ts_ms[i]).collect(),
        values: keep
            .iter()
            .flat_map(|&i| telemetry.values[i * n..(i + 1) * n].to_vec())
            .collect(),
        ..telemetry.clone()
    };
    let mut past = history.clone();
    for asset in past.assets.values_mut() {
        asset.failures.retain(|f| f.start_ms < cutoff);
        asset.preventive.retain(|p| p.start_ms < cutoff);
    }
    let rows_past = feature_rows(&truncated, &schema, &past, 3).expect("rows");
    let fit: Vec<usize> = split.fit_rows.clone();
    assert!(!fit.is_empty());
    let bits = |row: &[f64]| row.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    for &i in &fit {
        assert_eq!(
            bits(rows.row(i)),
            bits(rows_past.row(i)),
            "features of fit row {i}"
        );
    }
    // An asset's end of observation (its last reading) is a fact about its
    // whole telemetry, not about the rows kept: both sides use the full one.
    let obs = Observation::new(&telemetry, &history, None);
    let mut obs_past = Observation::new(&truncated, &past, None);
    obs_past.end_ms.clone_from(&obs.end_ms);
    for horizon in &cfg.horizons_days {
        for mode in [None, Some("bearing"), Some("fouling")] {
            let full = classifier_labels(&rows, &fit, &obs, mode, *horizon, cutoff);
            let cut = classifier_labels(&rows_past, &fit, &obs_past, mode, *horizon, cutoff);
            assert_eq!(full, cut, "labels {mode:?}/{horizon}d");
        }
    }
    let full = rul_targets(&rows, &fit, &obs, cfg.rul_cap_days, cutoff);
    let cut = rul_targets(&rows_past, &fit, &obs_past, cfg.rul_cap_days, cutoff);
    assert_eq!(full, cut);
}

#[test]
fn online_scoring_computes_the_same_features_as_offline_training() {
    let (csv, fixture) = simulate(5, 90, 6);
    let (telemetry, history) = load(&csv, &fixture);
    let outcome = train(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).expect("train");
    let model = &outcome.model;
    let offline = feature_rows(&telemetry, &model.schema, &history, 1).expect("rows");
    let mut scorer =
        FailureScorer::new(std::sync::Arc::new(model.clone()), history.clone()).expect("scorer");
    let n = telemetry.sensors.len();
    for i in 0..telemetry.n_rows() {
        let asset = &telemetry.assets[telemetry.asset_idx[i] as usize];
        let values = &telemetry.values[i * n..(i + 1) * n];
        let online = scorer
            .score(asset, telemetry.ts_ms[i], values)
            .expect("score");
        let expected = offline.row(i);
        for (k, (a, b)) in scorer.last_row().iter().zip(expected).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "row {i} feature {k}: online {a} offline {b}"
            );
        }
        assert_eq!(online, model.predict(expected));
    }
}

#[test]
fn training_without_matching_asset_names_fails_with_a_clear_error() {
    let (csv, fixture) = simulate(4, 90, 7);
    let renamed = csv
        .replace("pump-", "p-")
        .replace("comp-", "c-")
        .replace("hvac-", "h-");
    let (telemetry, history) = load(&renamed, &fixture);
    let err = train(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("0 of 4 telemetry assets"), "{err}");
}

/// Fixture JSON of one asset with the given Work Orders `(work type, subject,
/// created = start, end)`.
fn one_asset_fixture(work_orders: &[(&str, &str, &str, &str)]) -> String {
    let wos: Vec<serde_json::Value> = work_orders
        .iter()
        .map(|(wt, subject, start, end)| {
            serde_json::json!({"AssetId": "02i1", "WorkType.Name": wt, "Subject": subject,
                "Status": "Completed", "CreatedDate": start, "StartDate": start, "EndDate": end})
        })
        .collect();
    serde_json::json!({"records": {
        "Asset": [{"Id": "02i1", "Name": "pump-1", "InstallDate": "2025-01-01"}],
        "WorkOrder": wos,
    }})
    .to_string()
}

/// No history feature at `t` may depend on a Work Order that starts at or
/// after `t`: moving a later Work Order, changing its code, or adding a later
/// Work Order that merges into an earlier failure and gives it its code must
/// leave every earlier feature row bit-identical.
#[test]
fn history_features_never_read_a_later_work_order() {
    let schema = FeatureSchema::new(
        vec!["temp_c".into()],
        vec![4.0],
        0,
        vec![],
        vec!["bearing".into(), "fouling".into()],
    )
    .expect("schema");
    let base: &[(&str, &str, &str, &str)] = &[
        (
            "Preventive Maintenance",
            "PM",
            "2026-01-10T08:00:00Z",
            "2026-01-10T12:00:00Z",
        ),
        (
            "Corrective",
            "Breakdown",
            "2026-02-01T10:00:00Z",
            "2026-02-01T20:00:00Z",
        ),
        (
            "Corrective",
            "[FOUL] clogged",
            "2026-03-01T10:00:00Z",
            "2026-03-02T10:00:00Z",
        ),
    ];
    // The later Work Orders all start on or after this.
    let later = |t: &str| {
        FleetHistory::from_json(&one_asset_fixture(
            &[
                base,
                &[("Corrective", "[BRG] parts", t, "2026-04-03T00:00:00Z")],
            ]
            .concat(),
        ))
        .expect("history")
    };
    let variants: Vec<(i64, FleetHistory, FleetHistory)> = vec![
        // A future failure moved a week later, and recoded.
        (
            parse("2026-04-01T00:00:00Z"),
            later("2026-04-01T00:00:00Z"),
            FleetHistory::from_json(&one_asset_fixture(
                &[
                    base,
                    &[(
                        "Corrective",
                        "[FOUL] other",
                        "2026-04-08T00:00:00Z",
                        "2026-04-09T00:00:00Z",
                    )],
                ]
                .concat(),
            ))
            .expect("history"),
        ),
        // A second dispatch 14 h after the uncoded breakdown brings the code
        // (merged into it): before that dispatch the breakdown is uncoded.
        (
            parse("2026-02-02T00:00:00Z"),
            FleetHistory::from_json(&one_asset_fixture(base)).expect("history"),
            FleetHistory::from_json(&one_asset_fixture(
                &[
                    base,
                    &[(
                        "Corrective",
                        "[BRG] parts",
                        "2026-02-02T00:00:00Z",
                        "2026-02-02T06:00:00Z",
                    )],
                ]
                .concat(),
            ))
            .expect("history"),
        ),
    ];
    let n = schema.history_columns.len();
    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
    for (cut, one, other) in &variants {
        let mut t = parse("2026-01-01T00:00:00Z");
        while t <= *cut {
            schema.history_features(one.assets.get("pump-1"), t, &mut a);
            schema.history_features(other.assets.get("pump-1"), t, &mut b);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "features at {}", format_ms(t));
            t += 3_600_000;
        }
    }
}

fn parse(text: &str) -> i64 {
    super::labels::parse_sf_datetime(text).expect("date")
}

#[test]
fn telemetry_assets_without_work_order_history_are_reported_and_left_out() {
    let (csv, fixture) = simulate(8, 150, 5);
    let (telemetry, mut history) = load(&csv, &fixture);
    let dropped = telemetry.assets[0].clone();
    history.assets.remove(&dropped);
    let outcome = train(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).expect("train");
    assert_eq!(outcome.labels.assets_without_history, vec![dropped.clone()]);
    assert!(outcome.labels.assets_without_history_excluded);
    assert!(!outcome.split.test_assets.contains(&dropped));
    let rows =
        feature_rows(&telemetry, &outcome.model.schema, &history, outcome.stride).expect("rows");
    let of_dropped = |idx: &[usize]| idx.iter().filter(|&&i| rows.asset_idx[i] == 0).count();
    let split = &outcome.split;
    assert_eq!(
        of_dropped(&split.fit_rows) + of_dropped(&split.cal_rows) + of_dropped(&split.test_rows),
        0
    );

    let cfg = TrainConfig {
        include_assets_without_history: true,
        ..fast_config()
    };
    let kept = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    assert_eq!(kept.labels.assets_without_history, vec![dropped]);
    assert!(!kept.labels.assets_without_history_excluded);
    let split = &kept.split;
    assert!(
        of_dropped(&split.fit_rows) + of_dropped(&split.cal_rows) + of_dropped(&split.test_rows)
            > 0
    );
}

#[test]
fn each_asset_is_observed_until_its_decommission_last_reading_or_the_export() {
    let day = super::labels::DAY_MS;
    let telemetry = Telemetry {
        sensors: vec!["temp_c".into()],
        assets: vec!["a".into(), "b".into(), "c".into()],
        asset_idx: vec![0, 1, 2, 0, 1, 2],
        ts_ms: vec![0, 0, 0, 50 * day, 40 * day, 50 * day],
        values: vec![1.0; 6],
        rejected_rows: 0,
    };
    let mut history = FleetHistory::default();
    for name in ["a", "b", "c"] {
        history.assets.insert(name.into(), Default::default());
    }
    history.assets.get_mut("c").expect("c").decommissioned_ms = Some(30 * day);
    let obs = Observation::new(&telemetry, &history, Some(45 * day));
    assert_eq!(obs.end_ms, vec![45 * day, 40 * day, 30 * day]);
    assert_eq!(
        obs.end(0, 20 * day),
        20 * day,
        "a split censor is earlier still"
    );
    let obs = Observation::new(&telemetry, &history, None);
    assert_eq!(obs.end_ms, vec![50 * day, 40 * day, 30 * day]);
}

/// A false alarm makes the negative rows in the horizon before it hard
/// negatives; it never turns a positive or an excluded row.
#[test]
fn negatives_before_a_false_alarm_weigh_more_and_nothing_flips() {
    let day = super::labels::DAY_MS;
    let mut history = FleetHistory::from_json(&one_asset_fixture(&[(
        "Corrective",
        "[BRG] x",
        "1970-03-02T00:00:00Z",
        "1970-03-02T06:00:00Z",
    )]))
    .expect("history");
    history
        .assets
        .get_mut("pump-1")
        .expect("asset")
        .false_alarms
        .push(super::labels::FalseAlarm {
            at_ms: 30 * day,
            mode: Some("bearing".into()),
        });
    let telemetry = Telemetry {
        sensors: vec!["temp_c".into()],
        assets: vec!["pump-1".into()],
        asset_idx: vec![0; 4],
        ts_ms: vec![0, 25 * day, 35 * day, 100 * day],
        values: vec![1.0; 4],
        rejected_rows: 0,
    };
    let rows = super::dataset::FeatureRows {
        n_features: 0,
        x: vec![],
        asset_idx: vec![0; 3],
        ts_ms: vec![10 * day, 25 * day, 55 * day],
    };
    let obs = Observation::new(&telemetry, &history, None);
    let (y, w) = classifier_labels(&rows, &[0, 1, 2], &obs, Some("bearing"), 7.0, i64::MAX);
    assert_eq!(y, vec![0.0, 0.0, 1.0]);
    assert_eq!(w, vec![1.0, super::labels::FALSE_ALARM_WEIGHT, 1.0]);
    // Another mode's classifier is not concerned; the "any" one is.
    let (_, w) = classifier_labels(&rows, &[1], &obs, Some("fouling"), 7.0, i64::MAX);
    assert_eq!(w, vec![1.0]);
    let (_, w) = classifier_labels(&rows, &[1], &obs, None, 7.0, i64::MAX);
    assert_eq!(w, vec![super::labels::FALSE_ALARM_WEIGHT]);
}

#[test]
fn challengers_run_on_the_training_split_and_the_model_as_its_own_champion_ties() {
    let (csv, fixture) = simulate(15, 240, 3);
    let (telemetry, history) = load(&csv, &fixture);
    let (outcome, rows) =
        train_with_rows(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).expect("train");
    let obs = Observation::new(&telemetry, &history, None);
    let cfg = ChallengerConfig {
        bootstrap: 40,
        forest_trees: 10,
        max_fit_rows: 2_000,
        ..ChallengerConfig::default()
    };
    let model = &outcome.model;
    let report = compare(model, Some(model), &rows, &outcome.split, &obs, &cfg).expect("compare");
    let any = &report.targets[0];
    assert_eq!(any.mode, "any");
    assert!(any.n_test_positive > 0 && any.n_test_assets > 0);
    let names: Vec<&str> = any.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "booster",
            "champion",
            "age_only",
            "logistic_regression",
            "random_forest"
        ]
    );
    let booster = &any.results[0];
    // The booster's AP is the one `evaluate` reports for the same classifier.
    let metrics = outcome
        .test
        .classifiers
        .iter()
        .find(|c| c.mode == "any" && c.horizon_days == any.horizon_days)
        .expect("metrics");
    let ap = booster.average_precision.expect("ap");
    assert!((ap.value - metrics.average_precision).abs() < 1e-12);
    assert!(booster.ap_minus_booster.is_none());
    // The same model as champion ties exactly, resample by resample.
    let champion = any.results[1].ap_minus_booster.expect("paired");
    assert_eq!((champion.value, champion.lo, champion.hi), (0.0, 0.0, 0.0));
    for r in &any.results[2..] {
        let a = r.average_precision.expect("fitted");
        assert!(
            (0.0..=1.0).contains(&a.value) && a.lo <= a.hi,
            "{}: {a:?}",
            r.name
        );
        assert!(!r.by_product.is_empty());
        assert_eq!(
            r.by_product.iter().map(|p| p.n_rows).sum::<usize>(),
            any.n_test_rows
        );
    }
    let rul: Vec<&str> = report.rul.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rul, ["booster", "champion", "ridge", "mean"]);
    assert!(report.rul.iter().all(|r| r.rmse_days.is_some()));
    // Seeded: the same inputs give the same report (fit times aside).
    let again = compare(model, Some(model), &rows, &outcome.split, &obs, &cfg).expect("compare");
    let untimed = |mut r: super::challengers::ChallengerReport| {
        for t in &mut r.targets {
            t.results.iter_mut().for_each(|c| c.fit_seconds = 0.0);
        }
        r
    };
    // Every classifier of the model is compared, at each of its horizons;
    // `all_horizons: false` keeps the first horizon only.
    let targets = |r: &super::challengers::ChallengerReport| -> Vec<(String, f64)> {
        r.targets
            .iter()
            .map(|t| (t.mode.clone(), t.horizon_days))
            .collect()
    };
    let classifiers: Vec<(String, f64)> = model
        .classifiers
        .iter()
        .map(|c| (c.mode.clone(), c.horizon_days))
        .collect();
    assert_eq!(targets(&report), classifiers);
    let first = model.classifiers[0].horizon_days;
    assert!(
        classifiers.iter().any(|(_, h)| *h != first),
        "several horizons"
    );
    let first_only = ChallengerConfig {
        all_horizons: false,
        ..cfg.clone()
    };
    let short =
        compare(model, Some(model), &rows, &outcome.split, &obs, &first_only).expect("compare");
    let expected: Vec<(String, f64)> = classifiers
        .into_iter()
        .filter(|(_, h)| *h == first)
        .collect();
    assert_eq!(targets(&short), expected);
    assert_eq!(untimed(report), untimed(again));
}

#[test]
fn early_stopping_holds_out_whole_fit_assets_and_records_the_trees_kept() {
    let (csv, fixture) = simulate(15, 240, 3);
    let (telemetry, history) = load(&csv, &fixture);
    let mut cfg = fast_config();
    cfg.booster.n_trees = 80;
    cfg.booster.early_stopping_rounds = Some(5);
    let (outcome, rows) =
        train_with_rows(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    let split = &outcome.split;
    assert!(!split.validation_assets.is_empty());
    assert!(split
        .validation_assets
        .iter()
        .all(|a| !split.test_assets.contains(a)));
    let name = |i: usize| &telemetry.assets[rows.asset_idx[i] as usize];
    // Whole assets: every validation row is a validation asset's fit-window
    // row, and no booster trains on any row of those assets.
    assert!(!split.val_rows.is_empty());
    for &i in &split.val_rows {
        assert!(split.validation_assets.contains(name(i)));
        assert!(rows.ts_ms[i] < split.t_cal_ms);
    }
    assert!(split
        .fit_rows
        .iter()
        .all(|&i| !split.validation_assets.contains(name(i))));
    // One record per booster, classifiers in artifact order then RUL.
    let model = &outcome.model;
    assert_eq!(outcome.boosters.len(), model.classifiers.len() + 1);
    let trees = model
        .classifiers
        .iter()
        .map(|c| c.booster.trees.len())
        .chain([model.rul.trees.len()]);
    for (fit, n_trees) in outcome.boosters.iter().zip(trees) {
        assert_eq!(fit.n_trees, n_trees, "{fit:?}");
        assert!(fit.n_trees <= 80);
        assert_eq!(fit.validation_loss.is_some(), fit.note.is_none(), "{fit:?}");
        assert!(fit.refit, "refit on every fit asset by default: {fit:?}");
    }
    assert_eq!(outcome.boosters.last().expect("rul").model, "rul");
    assert!(outcome.boosters.iter().any(|b| b.stopped_early));
    let card = super::train::model_card(&outcome, &cfg, "fp", "test");
    assert_eq!(
        card["boosters"].as_array().expect("boosters").len(),
        outcome.boosters.len()
    );
    assert_eq!(
        card["training_window"]["validation_assets"],
        serde_json::json!(split.validation_assets)
    );
    assert_eq!(card["params"]["booster"]["early_stopping_rounds"], 5);
    // Deterministic from the seed; another seed draws other assets.
    let again = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    assert_eq!(
        serde_json::to_string(&again.model).expect("json"),
        serde_json::to_string(model).expect("json")
    );
    let other = split_rows(
        &rows,
        &telemetry.assets,
        &history,
        split.t0_ms,
        split.t1_ms,
        &TrainConfig {
            seed: 99,
            ..cfg.clone()
        },
    );
    assert_ne!(
        (other.test_assets, other.validation_assets),
        (split.test_assets.clone(), split.validation_assets.clone())
    );
    // Off: no validation assets, every booster keeps every tree.
    cfg.booster.early_stopping_rounds = None;
    let off = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    assert!(off.split.validation_assets.is_empty() && off.split.val_rows.is_empty());
    assert!(off
        .boosters
        .iter()
        .all(|b| b.n_trees == 80 && b.validation_loss.is_none() && b.note.is_none() && !b.refit));
}

#[test]
fn monotone_rules_hold_for_every_classifier_and_reverse_for_rul() {
    use super::monotone::MonotoneRule;
    let (csv, fixture) = simulate(10, 200, 6);
    let (telemetry, history) = load(&csv, &fixture);
    let mut cfg = fast_config();
    cfg.monotone = vec![MonotoneRule::new("vib_rms.robust_z", 1)];
    let (outcome, rows) =
        train_with_rows(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    let model = &outcome.model;
    let f = model
        .schema
        .names()
        .iter()
        .position(|n| n == "vib_rms.robust_z")
        .expect("column");
    let mut checked = 0;
    for i in (0..rows.len()).step_by(53) {
        let mut row = rows.row(i).to_vec();
        let mut last: Option<(Vec<f64>, f64)> = None;
        for k in 0..=40 {
            row[f] = -4.0 + 0.5 * f64::from(k);
            let risks: Vec<f64> = model
                .classifiers
                .iter()
                .map(|c| c.booster.predict_raw(&row))
                .collect();
            let rul = model.rul.predict_raw(&row);
            if let Some((prev_risks, prev_rul)) = &last {
                for (a, b) in prev_risks.iter().zip(&risks) {
                    assert!(b >= a, "risk fell from {a} to {b} at robust_z {}", row[f]);
                }
                assert!(rul <= *prev_rul, "RUL rose at robust_z {}", row[f]);
            }
            last = Some((risks, rul));
        }
        checked += 1;
    }
    assert!(checked > 20);
    let card = super::train::model_card(&outcome, &cfg, "fp", "test");
    assert_eq!(
        card["params"]["monotone"]["risk_direction"]["vib_rms.robust_z"],
        1
    );
    // A pattern naming no column is refused, not ignored.
    cfg.monotone = vec![MonotoneRule::new("vib_rsm.*", 1)];
    let err = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("vib_rsm.*"), "{err}");
}

#[test]
fn artifacts_with_learned_missing_directions_are_format_2_and_others_stay_format_1() {
    use super::model::{ARTIFACT_VERSION, ARTIFACT_VERSION_NAN_LEFT, MODEL_FILE};
    let (csv, fixture) = simulate(8, 150, 5);
    let (telemetry, history) = load(&csv, &fixture);
    let dir = tempfile::tempdir().expect("tempdir");
    // The default (every NaN left) keeps the format older builds read.
    let plain = train(&telemetry, &history, &fast_config(), &mut |_, _, _| {}).expect("train");
    assert_eq!(plain.model.version, ARTIFACT_VERSION_NAN_LEFT);
    plain.model.save(dir.path()).expect("save");
    let text = std::fs::read_to_string(dir.path().join(MODEL_FILE)).expect("read");
    assert!(text.contains("\"version\":1,") && !text.contains("missing_right"));
    // Learned directions need format 2, which loads here and is refused by
    // a build that would send those NaNs left.
    let mut cfg = fast_config();
    cfg.booster.learn_missing_direction = true;
    let learned = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    let model = &learned.model;
    assert!(model
        .rul
        .trees
        .iter()
        .chain(model.classifiers.iter().flat_map(|c| &c.booster.trees))
        .any(|t| t.nodes.iter().any(|n| n.missing_right)));
    assert_eq!(model.version, ARTIFACT_VERSION);
    model.save(dir.path()).expect("save");
    assert_eq!(&FailureModel::load(dir.path()).expect("load"), model);
    let mut mislabelled = model.clone();
    mislabelled.version = ARTIFACT_VERSION_NAN_LEFT;
    mislabelled.save(dir.path()).expect("save");
    let err = FailureModel::load(dir.path()).unwrap_err();
    assert!(matches!(err, ArtifactError::Schema(_)), "{err}");
    assert!(err.to_string().contains("missing values right"), "{err}");
}
