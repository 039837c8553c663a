use super::*;
use crate::gbdt::grow::{quantile_cuts, BinnedMatrix};
use crate::gbdt::LEAF;

fn toy_regression(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed);
    let mut x = Vec::with_capacity(n * 3);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let a = rng.next_f64() * 4.0 - 2.0;
        let b = rng.next_f64() * 4.0 - 2.0;
        let noise = rng.next_f64() * 4.0 - 2.0;
        x.extend([a, b, noise]);
        y.push(if a > 0.5 { 3.0 } else { -1.0 } + b * b);
    }
    (x, y)
}

fn rmse(model: &Gbdt, x: &[f64], y: &[f64]) -> f64 {
    let pred = model.predict(x);
    (pred
        .iter()
        .zip(y)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / y.len() as f64)
        .sqrt()
}

#[test]
fn booster_learns_a_nonlinear_function_and_ignores_noise() {
    let (x, y) = toy_regression(3000, 1);
    let (xt, yt) = toy_regression(1000, 2);
    let params = GbdtParams {
        n_trees: 150,
        learning_rate: 0.1,
        max_depth: 4,
        min_samples_leaf: 5,
        ..GbdtParams::default()
    };
    let model = params.fit(&x, 3, &y, None).expect("fit");
    let err = rmse(&model, &xt, &yt);
    assert!(err < 0.25, "held-out rmse {err}");
    let imp = model.normalized_importance();
    assert!(imp[2] < 0.05, "noise feature importance {imp:?}");
}

#[test]
fn binned_training_predictions_match_real_valued_prediction() {
    let (mut x, mut y) = toy_regression(500, 3);
    // Missing values in feature 0 that behave like large values, so some
    // splits learn to send them right.
    let mut rng = SplitMix64::new(31);
    for r in 0..500 {
        if rng.next_f64() < 0.2 {
            x[r * 3] = f64::NAN;
            y[r] = 3.0 + x[r * 3 + 1] * x[r * 3 + 1];
        }
    }
    let params = GbdtParams {
        n_trees: 20,
        max_bins: 16,
        ..GbdtParams::default()
    };
    let valid = params.check().expect("valid");
    let model = valid.fit(&x, 3, &y, None, &mut |_, _| {}).expect("fit");
    assert!(model
        .trees
        .iter()
        .flat_map(|t| &t.nodes)
        .any(|n| n.missing_right));
    let binned = BinnedMatrix::new(&x, 3, 500, 16);
    // Real-valued routing must agree with bin routing on training rows.
    for r in 0..500 {
        let row = &x[r * 3..r * 3 + 3];
        for tree in &model.trees {
            let real = tree.predict_row(row);
            let mut idx = 0usize;
            let by_bins = loop {
                let node = &tree.nodes[idx];
                if node.feature == LEAF {
                    break node.value;
                }
                let b = binned.row(r)[node.feature as usize];
                let bin_of_threshold = if node.threshold == f64::MIN {
                    0
                } else {
                    1 + binned.cuts[node.feature as usize].partition_point(|&c| c < node.threshold)
                };
                let left = if b == 0 {
                    !node.missing_right
                } else {
                    (b as usize) <= bin_of_threshold
                };
                idx = if left {
                    node.left as usize
                } else {
                    node.right as usize
                };
            };
            assert_eq!(real, by_bins);
        }
    }
}

/// One feature in `[0, 1)` with `P(label) = x`, missing in a fifth of the
/// rows, whose label is then 1 with probability `p_missing`.
fn missing_informative(n: usize, p_missing: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed);
    let (mut x, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let value = rng.next_f64();
        let missing = rng.next_f64() < 0.2;
        let p = if missing { p_missing } else { value };
        y.push(if rng.next_f64() < p { 1.0 } else { 0.0 });
        x.push(if missing { f64::NAN } else { value });
    }
    (x, y)
}

#[test]
fn a_split_sends_missing_values_to_the_side_whose_label_they_share() {
    let stump = GbdtParams {
        objective: Objective::Logistic,
        n_trees: 1,
        learning_rate: 1.0,
        max_depth: 1,
        subsample: 1.0,
        colsample: 1.0,
        ..GbdtParams::default()
    };
    // Missing rows fail like the highest readings: NaN must go right.
    let (x, y) = missing_informative(4000, 0.95, 1);
    let model = stump.fit(&x, 1, &y, None).expect("fit");
    let root = model.trees[0].nodes[0];
    assert_eq!(root.feature, 0);
    assert!(root.missing_right, "{root:?}");
    assert!((0.3..0.7).contains(&root.threshold), "{root:?}");
    assert_eq!(
        model.predict_row(&[f64::NAN]),
        model.predict_row(&[0.99]),
        "NaN shares the high leaf"
    );
    // Missing rows never fail, like the lowest readings: NaN goes left.
    let (x, y) = missing_informative(4000, 0.02, 2);
    let model = stump.fit(&x, 1, &y, None).expect("fit");
    let root = model.trees[0].nodes[0];
    assert!(!root.missing_right, "{root:?}");
    assert_eq!(model.predict_row(&[f64::NAN]), model.predict_row(&[0.01]));
    // Switched off, NaN goes left even where right would fit better.
    let (x, y) = missing_informative(4000, 0.95, 1);
    let left_only = GbdtParams {
        learn_missing_direction: false,
        ..stump.clone()
    };
    let model = left_only.fit(&x, 1, &y, None).expect("fit");
    assert!(!model.trees[0].nodes[0].missing_right);
    // A full booster learns the same, and its explanations of rows with
    // NaNs still add up to the prediction.
    let (x, y) = missing_informative(4000, 0.95, 3);
    let booster = GbdtParams {
        objective: Objective::Logistic,
        n_trees: 60,
        learning_rate: 0.1,
        max_depth: 3,
        ..GbdtParams::default()
    };
    let model = booster.fit(&x, 1, &y, None).expect("fit");
    let missing = model.predict_row(&[f64::NAN]);
    assert!(missing > 0.8, "P(fail | missing) {missing}");
    assert!(model.predict_row(&[0.1]) < 0.3);
    for value in [f64::NAN, 0.05, 0.5, 0.95] {
        let c = model.contributions(&[value]).expect("explainable");
        assert!((c.total() - model.predict_raw(&[value])).abs() < 1e-9);
    }
}

#[test]
fn without_missing_values_every_split_keeps_the_left_default() {
    let (x, y) = toy_regression(600, 12);
    let model = GbdtParams {
        n_trees: 30,
        ..GbdtParams::default()
    }
    .fit(&x, 3, &y, None)
    .expect("fit");
    let text = serde_json::to_string(&model).expect("serialize");
    assert!(!text.contains("missing_right"));
}

#[test]
fn flat_forest_predicts_exactly_like_the_trees() {
    let (x, y) = toy_regression(800, 8);
    let params = GbdtParams {
        n_trees: 40,
        max_depth: 6,
        ..GbdtParams::default()
    };
    let model = params.fit(&x, 3, &y, None).expect("fit");
    for row in x.chunks_exact(3).chain([[f64::NAN, 0.5, 0.0].as_slice()]) {
        let by_trees =
            model.base_score + model.trees.iter().map(|t| t.predict_row(row)).sum::<f64>();
        assert_eq!(model.predict_raw(row), by_trees);
    }
}

#[test]
fn same_seed_gives_identical_models() {
    let (x, y) = toy_regression(400, 4);
    let params = GbdtParams {
        n_trees: 10,
        subsample: 0.5,
        colsample: 0.5,
        ..GbdtParams::default()
    };
    let a = params.fit(&x, 3, &y, None).expect("fit");
    let b = params.fit(&x, 3, &y, None).expect("fit");
    assert_eq!(a, b);
    let c = GbdtParams { seed: 9, ..params }
        .fit(&x, 3, &y, None)
        .expect("fit");
    assert_ne!(a, c);
}

#[test]
fn logistic_booster_separates_classes_and_handles_missing_values() {
    let mut rng = SplitMix64::new(5);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..2000 {
        let a = rng.next_f64();
        let label = if rng.next_f64() < a { 1.0 } else { 0.0 };
        x.push(if rng.next_f64() < 0.1 { f64::NAN } else { a });
        y.push(label);
    }
    let params = GbdtParams {
        objective: Objective::Logistic,
        n_trees: 50,
        learning_rate: 0.1,
        max_depth: 3,
        ..GbdtParams::default()
    };
    let model = params.fit(&x, 1, &y, None).expect("fit");
    let low = model.predict_row(&[0.1]);
    let high = model.predict_row(&[0.9]);
    let missing = model.predict_row(&[f64::NAN]);
    assert!(low < 0.3 && high > 0.7, "low {low} high {high}");
    assert!((0.0..=1.0).contains(&missing));
}

#[test]
fn bad_parameters_and_data_are_rejected_with_their_name() {
    let err = GbdtParams {
        learning_rate: 0.0,
        ..GbdtParams::default()
    }
    .check()
    .unwrap_err();
    assert!(matches!(
        err,
        GbdtError::InvalidParam {
            name: "learning_rate",
            ..
        }
    ));
    let p = GbdtParams::default();
    assert!(matches!(
        p.fit(&[1.0, 2.0], 2, &[1.0, 2.0], None),
        Err(GbdtError::BadData(_))
    ));
    assert!(matches!(
        p.fit(&[1.0], 1, &[f64::NAN], None),
        Err(GbdtError::BadData(_))
    ));
    let logistic = GbdtParams {
        objective: Objective::Logistic,
        ..GbdtParams::default()
    };
    assert!(matches!(
        logistic.fit(&[1.0], 1, &[0.5], None),
        Err(GbdtError::BadData(_))
    ));
}

#[test]
fn quantile_cuts_use_exact_values_when_few_and_stay_sorted() {
    assert_eq!(quantile_cuts(&[1.0, 1.0, 2.0, 3.0], 10), vec![1.0, 2.0]);
    let many: Vec<f64> = (0..1000).map(f64::from).collect();
    let cuts = quantile_cuts(&many, 10);
    assert_eq!(cuts.len(), 9);
    assert!(cuts.windows(2).all(|w| w[0] < w[1]));
}

/// Rows whose target rises with feature 0 until 1.0, then falls: a booster
/// overfits it once the noise dominates.
fn noisy_hump(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed);
    let (mut x, mut y) = (Vec::with_capacity(n * 4), Vec::with_capacity(n));
    for _ in 0..n {
        let row = [
            rng.next_f64() * 2.0,
            rng.next_f64(),
            rng.next_f64(),
            rng.next_f64(),
        ];
        let signal = 1.0 - (row[0] - 1.0).abs() + 0.5 * row[1];
        y.push(signal + 0.8 * (rng.next_f64() - 0.5) * 2.0);
        x.extend(row);
    }
    (x, y)
}

#[test]
fn early_stopping_keeps_the_best_iteration_exactly_as_a_shorter_fit() {
    let (x, y) = noisy_hump(600, 1);
    let (xv, yv) = noisy_hump(400, 2);
    let params = GbdtParams {
        n_trees: 400,
        learning_rate: 0.3,
        max_depth: 6,
        min_samples_leaf: 3,
        early_stopping_rounds: Some(15),
        ..GbdtParams::default()
    };
    let validation = Validation {
        x: &xv,
        y: &yv,
        weights: None,
    };
    let (model, report) = params
        .fit_with_validation(&x, 4, &y, None, &validation)
        .expect("fit");
    assert!(report.stopped_early, "{report:?}");
    assert!(report.n_trees < 100, "{report:?}");
    assert_eq!(model.trees.len(), report.n_trees);
    assert_eq!(report.losses.len(), report.n_trees + 15);
    let min = report.losses.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(report.loss, min);
    assert_eq!(report.loss, report.losses[report.n_trees - 1]);
    // Validation loss of the kept model, recomputed from its predictions.
    let pred = model.predict(&xv);
    let mse = pred
        .iter()
        .zip(&yv)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / yv.len() as f64;
    assert!((mse - report.loss).abs() < 1e-9 * mse.max(1.0));
    // The truncated model (trees and importance) is the model a fit with
    // exactly that many trees grows: stopping draws nothing random.
    let shorter = GbdtParams {
        n_trees: report.n_trees,
        early_stopping_rounds: None,
        ..params.clone()
    }
    .fit(&x, 4, &y, None)
    .expect("fit");
    assert_eq!(model, shorter);
    // Deterministic from the seed.
    let (again, again_report) = params
        .fit_with_validation(&x, 4, &y, None, &validation)
        .expect("fit");
    assert_eq!((again, again_report), (model, report));
}

#[test]
fn a_validation_set_without_early_stopping_keeps_every_tree_and_reports_the_curve() {
    let (x, y) = missing_informative(1500, 0.9, 4);
    let (xv, yv) = missing_informative(800, 0.9, 5);
    let wv: Vec<f64> = (0..yv.len()).map(|i| (i % 3) as f64).collect();
    let params = GbdtParams {
        objective: Objective::Logistic,
        n_trees: 25,
        ..GbdtParams::default()
    };
    let validation = Validation {
        x: &xv,
        y: &yv,
        weights: Some(&wv),
    };
    let (model, report) = params
        .fit_with_validation(&x, 1, &y, None, &validation)
        .expect("fit");
    assert_eq!(model, params.fit(&x, 1, &y, None).expect("fit"));
    assert_eq!((report.n_trees, report.losses.len()), (25, 25));
    assert!(!report.stopped_early);
    // Weighted mean log-loss of the final model.
    let (mut total, mut total_w) = (0.0, 0.0);
    for (i, &w) in wv.iter().enumerate() {
        let p = model.predict_row(&xv[i..=i]);
        total += w * -(yv[i] * p.ln() + (1.0 - yv[i]) * (1.0 - p).ln());
        total_w += w;
    }
    assert!((total / total_w - report.loss).abs() < 1e-9);
    assert!(report.losses[24] < report.losses[0]);
}

#[test]
fn early_stopping_needs_a_validation_set_and_sane_settings() {
    let (x, y) = toy_regression(100, 1);
    let params = GbdtParams {
        early_stopping_rounds: Some(5),
        ..GbdtParams::default()
    };
    assert!(matches!(
        params.fit(&x, 3, &y, None),
        Err(GbdtError::InvalidParam {
            name: "early_stopping_rounds",
            ..
        })
    ));
    let zero = GbdtParams {
        early_stopping_rounds: Some(0),
        ..GbdtParams::default()
    };
    assert!(zero.check().is_err());
    let empty = Validation {
        x: &[],
        y: &[],
        weights: None,
    };
    assert!(matches!(
        params.fit_with_validation(&x, 3, &y, None, &empty),
        Err(GbdtError::BadData(_))
    ));
    let weightless = Validation {
        x: &x[..3],
        y: &y[..1],
        weights: Some(&[0.0]),
    };
    assert!(matches!(
        params.fit_with_validation(&x, 3, &y, None, &weightless),
        Err(GbdtError::BadData(_))
    ));
}

#[test]
fn monotone_settings_are_checked() {
    let (x, y) = toy_regression(100, 1);
    let bad_value = GbdtParams {
        monotone: vec![2, 0, 0],
        ..GbdtParams::default()
    };
    assert!(matches!(
        bad_value.check(),
        Err(GbdtError::InvalidParam {
            name: "monotone",
            ..
        })
    ));
    let bad_len = GbdtParams {
        monotone: vec![1],
        ..GbdtParams::default()
    };
    assert!(matches!(
        bad_len.fit(&x, 3, &y, None),
        Err(GbdtError::InvalidParam {
            name: "monotone",
            ..
        })
    ));
    // All zeros constrain nothing: the same model as no constraint.
    let free = GbdtParams {
        n_trees: 20,
        ..GbdtParams::default()
    };
    let zeros = GbdtParams {
        monotone: vec![0; 3],
        ..free.clone()
    };
    assert_eq!(
        free.fit(&x, 3, &y, None).expect("fit"),
        zeros.fit(&x, 3, &y, None).expect("fit")
    );
}

/// Predictions along feature `f` of `row` over a grid, `row` left unchanged
/// otherwise.
fn sweep(model: &Gbdt, row: &[f64], f: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut probe = row.to_vec();
    (0..=64)
        .map(|k| {
            probe[f] = lo + (hi - lo) * k as f64 / 64.0;
            model.predict_raw(&probe)
        })
        .collect()
}

#[test]
fn a_monotone_constraint_holds_where_the_data_disagrees() {
    // The target falls with feature 0 over half its range.
    let (x, y) = noisy_hump(1500, 7);
    let free = GbdtParams {
        n_trees: 80,
        learning_rate: 0.1,
        max_depth: 4,
        min_samples_leaf: 5,
        ..GbdtParams::default()
    };
    let rising = GbdtParams {
        monotone: vec![1, 0, 0, 0],
        ..free.clone()
    };
    let unconstrained = free.fit(&x, 4, &y, None).expect("fit");
    let model = rising.fit(&x, 4, &y, None).expect("fit");
    let row = [1.0, 0.5, 0.5, 0.5];
    let free_sweep = sweep(&unconstrained, &row, 0, 0.0, 2.0);
    assert!(free_sweep.windows(2).any(|w| w[1] < w[0] - 0.05));
    let sweep = sweep(&model, &row, 0, 0.0, 2.0);
    assert!(sweep.windows(2).all(|w| w[1] >= w[0]), "{sweep:?}");
    // It still learns the rising half and the free feature.
    assert!(sweep[32] > sweep[0] + 0.3, "{sweep:?}");
    assert!(model.predict_raw(&[1.0, 0.9, 0.5, 0.5]) > model.predict_raw(&[1.0, 0.1, 0.5, 0.5]));
}

mod monotone_property {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn predictions_follow_the_constraint_along_the_constrained_feature(
            seed in any::<u64>(),
            direction in prop::sample::select(vec![1i8, -1]),
            feature in 0usize..3,
            missing in prop::bool::ANY,
        ) {
            // Random targets from random features: nothing about them is
            // monotone, so only the constraint can make the model so.
            let mut rng = SplitMix64::new(seed);
            let n = 700;
            let mut x = Vec::with_capacity(n * 3);
            let mut y = Vec::with_capacity(n);
            for _ in 0..n {
                let row: Vec<f64> = (0..3)
                    .map(|_| {
                        if missing && rng.next_f64() < 0.1 {
                            f64::NAN
                        } else {
                            rng.next_f64() * 4.0 - 2.0
                        }
                    })
                    .collect();
                let a = if row[0].is_nan() { 0.3 } else { row[0] };
                let b = if row[1].is_nan() { -0.7 } else { row[1] };
                y.push((3.0 * a).sin() + a * b + rng.next_f64() - 0.5);
                x.extend(row);
            }
            let logistic = seed % 2 == 0;
            if logistic {
                for t in &mut y {
                    *t = if *t > 0.0 { 1.0 } else { 0.0 };
                }
            }
            let mut monotone = vec![0i8; 3];
            monotone[feature] = direction;
            let params = GbdtParams {
                objective: if logistic { Objective::Logistic } else { Objective::SquaredError },
                n_trees: 30,
                learning_rate: 0.2,
                max_depth: 5,
                min_samples_leaf: 5,
                seed,
                monotone,
                ..GbdtParams::default()
            };
            let model = params.fit(&x, 3, &y, None).expect("fit");
            for _ in 0..40 {
                let row: Vec<f64> = (0..3)
                    .map(|_| {
                        if rng.next_f64() < 0.15 {
                            f64::NAN
                        } else {
                            rng.next_f64() * 5.0 - 2.5
                        }
                    })
                    .collect();
                let values = sweep(&model, &row, feature, -2.5, 2.5);
                for w in values.windows(2) {
                    let step = (w[1] - w[0]) * f64::from(direction);
                    prop_assert!(step >= 0.0, "{values:?}");
                }
            }
        }
    }
}
