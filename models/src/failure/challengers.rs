//! Challengers (feature `train`): the trained booster side by side with
//! simpler and competing models on the same held-out assets, so a
//! reliability engineer sees what the booster buys.
//!
//! For each "failure within H" target (`any` and each failure mode, at every
//! horizon the model has, or only the first with
//! [`ChallengerConfig::all_horizons`] off), on the rows of the train/calibration/test split
//! ([`super::train`]):
//! - `booster`: this run's model;
//! - `champion`: the promoted model, when one is given and reads the same
//!   features (otherwise reported as not comparable);
//! - `age_only`: the asset's age alone (`hist.age_days`), the classic
//!   age-based replacement rule;
//! - `logistic_regression`: smartcore's L2 logistic regression on
//!   standardised features (missing values imputed with the fit median);
//! - `random_forest`: bagged smartcore decision trees (CART, Gini), each on a
//!   bootstrap sample of rows and a random subset of √F features (smartcore's
//!   own forest returns votes, not probabilities, and cannot rank).
//!
//! Every challenger is fitted on the fit rows, calibrated on the calibration
//! slice with the same isotonic regression as the booster, and scored on
//! the test rows. Metrics: average precision (AP) and Brier score with
//! 95 % bootstrap intervals that resample *assets* (rows of one asset are
//! not independent), the AP difference to the booster on the same
//! resamples, label counts, and AP per product. RUL: the booster's regressor
//! against smartcore ridge regression and the fit rows' mean, RMSE in days
//! with the same asset bootstrap.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use super::dataset::{classifier_labels, rul_targets, FeatureRows, Observation};
use super::model::{FailureModel, ANY_MODE};
use super::train::Split;
use crate::calibration::Isotonic;
use crate::metrics::{average_precision, brier, pr_curve};
use crate::rng::SplitMix64 as Rng;

/// How the challengers are fitted and compared.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengerConfig {
    /// Bootstrap resamples of the test assets.
    pub bootstrap: usize,
    /// Trees of the random forest.
    pub forest_trees: usize,
    /// Depth limit of each tree.
    pub forest_max_depth: u16,
    /// At most this many fit rows (strided) for the challengers' fits.
    pub max_fit_rows: usize,
    /// L2 penalty of the logistic and ridge regressions.
    pub l2: f64,
    /// Seed of the forest and the bootstrap.
    pub seed: u64,
    /// Compare at every horizon of the model (`true`) or at its first only
    /// (each horizon costs one more set of fits).
    pub all_horizons: bool,
}

impl Default for ChallengerConfig {
    fn default() -> Self {
        Self {
            bootstrap: 200,
            forest_trees: 50,
            forest_max_depth: 8,
            max_fit_rows: 5_000,
            l2: 1.0,
            seed: 7,
            all_horizons: true,
        }
    }
}

/// A value with its 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Interval {
    /// On all test assets.
    pub value: f64,
    /// 2.5th percentile over the resamples.
    pub lo: f64,
    /// 97.5th percentile over the resamples.
    pub hi: f64,
}

/// One product's slice of the test rows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProductResult {
    /// Product name.
    pub product: String,
    /// Labelled test rows of the product.
    pub n_rows: usize,
    /// Positive ones.
    pub n_positive: usize,
    /// Average precision on them (`None` without a positive).
    pub average_precision: Option<f64>,
}

/// One challenger on one target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChallengerResult {
    /// `booster`, `champion`, `age_only`, `logistic_regression`, `random_forest`.
    pub name: String,
    /// Average precision with its interval (`None` when not comparable).
    pub average_precision: Option<Interval>,
    /// Brier score of the calibrated probabilities.
    pub brier: Option<Interval>,
    /// This challenger's AP minus the booster's, on the same resamples: an
    /// interval that excludes 0 is a difference the test assets support.
    pub ap_minus_booster: Option<Interval>,
    /// Per product.
    pub by_product: Vec<ProductResult>,
    /// Seconds to fit and calibrate (0 for models trained elsewhere).
    pub fit_seconds: f64,
    /// Why a challenger is missing, or what it is.
    pub note: Option<String>,
}

/// All challengers on one target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetComparison {
    /// Failure mode or `any`.
    pub mode: String,
    /// Horizon, days.
    pub horizon_days: f64,
    /// Labelled fit rows the challengers were fitted on / positive ones.
    pub n_fit_rows: usize,
    /// Positive fit rows.
    pub n_fit_positive: usize,
    /// Labelled test rows / positive ones / assets they come from.
    pub n_test_rows: usize,
    /// Positive test rows.
    pub n_test_positive: usize,
    /// Test assets.
    pub n_test_assets: usize,
    /// One per challenger, the booster first.
    pub results: Vec<ChallengerResult>,
}

/// One RUL regressor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RulResult {
    /// `booster`, `champion`, `ridge`, `mean`.
    pub name: String,
    /// RMSE in days on the test rows with a complete window.
    pub rmse_days: Option<Interval>,
    /// Why it is missing.
    pub note: Option<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChallengerReport {
    /// Asset resamples behind each interval (resamples without a positive
    /// are skipped for AP).
    pub bootstrap: usize,
    /// Per target, `any` first.
    pub targets: Vec<TargetComparison>,
    /// RUL rows scored on the test assets.
    pub n_rul_rows: usize,
    /// RUL regressors.
    pub rul: Vec<RulResult>,
}

/// Why the comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum ChallengerError {
    /// A smartcore fit or prediction failed.
    #[error("challenger {name}: {message}")]
    Fit {
        /// Which challenger.
        name: &'static str,
        /// smartcore's message.
        message: String,
    },
}

fn fit_err(name: &'static str) -> impl Fn(smartcore::error::Failed) -> ChallengerError {
    move |e| ChallengerError::Fit {
        name,
        message: e.to_string(),
    }
}

/// Standardised values are clipped to ±this many fit-row standard
/// deviations: test rows come later in time than fit rows, and a linear
/// model extrapolating a trending or near-constant feature (age, a counter)
/// far outside its fit range would be judged on that, not on what it learned.
const Z_CLIP: f64 = 5.0;

/// Standardises features with the fit rows' medians (for missing values),
/// means and standard deviations, clipped at [`Z_CLIP`].
struct Standardiser {
    median: Vec<f64>,
    mean: Vec<f64>,
    inv_sd: Vec<f64>,
}

impl Standardiser {
    fn fit(rows: &FeatureRows, idx: &[usize]) -> Self {
        let nf = rows.n_features;
        let (mut median, mut mean, mut inv_sd) = (vec![0.0; nf], vec![0.0; nf], vec![0.0; nf]);
        let mut col = Vec::with_capacity(idx.len());
        for j in 0..nf {
            col.clear();
            col.extend(
                idx.iter()
                    .map(|&i| rows.row(i)[j])
                    .filter(|v| v.is_finite()),
            );
            if col.is_empty() {
                continue;
            }
            col.sort_by(f64::total_cmp);
            median[j] = col[col.len() / 2];
            let m = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / col.len() as f64;
            mean[j] = m;
            inv_sd[j] = if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 };
        }
        Self {
            median,
            mean,
            inv_sd,
        }
    }

    fn matrix(
        &self,
        rows: &FeatureRows,
        idx: &[usize],
    ) -> Result<DenseMatrix<f64>, ChallengerError> {
        let data: Vec<Vec<f64>> = idx
            .iter()
            .map(|&i| {
                rows.row(i)
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let v = if v.is_finite() { v } else { self.median[j] };
                        ((v - self.mean[j]) * self.inv_sd[j]).clamp(-Z_CLIP, Z_CLIP)
                    })
                    .collect()
            })
            .collect();
        DenseMatrix::from_2d_vec(&data).map_err(fit_err("features"))
    }
}

/// Labelled rows of one target in one part of the split.
struct Labelled {
    idx: Vec<usize>,
    y: Vec<bool>,
}

fn labelled(
    rows: &FeatureRows,
    part: &[usize],
    obs: &Observation<'_>,
    mode: Option<&str>,
    horizon: f64,
    censor_ms: i64,
) -> Labelled {
    let (y, w) = classifier_labels(rows, part, obs, mode, horizon, censor_ms);
    let mut out = Labelled {
        idx: Vec::new(),
        y: Vec::new(),
    };
    for (j, &i) in part.iter().enumerate() {
        if w[j] > 0.0 {
            out.idx.push(i);
            out.y.push(y[j] > 0.5);
        }
    }
    out
}

/// Every `step`-th element, at most `max` of them.
fn strided(idx: &[usize], y: &[bool], max: usize) -> (Vec<usize>, Vec<bool>) {
    let step = idx.len().div_ceil(max.max(1)).max(1);
    (
        idx.iter().step_by(step).copied().collect(),
        y.iter().step_by(step).copied().collect(),
    )
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A challenger's raw scores on the calibration and test rows.
type Scores = (Vec<f64>, Vec<f64>);

fn logistic(
    std: &Standardiser,
    x_fit: &DenseMatrix<f64>,
    y_fit: &[i32],
    parts: [(&FeatureRows, &[usize]); 2],
    l2: f64,
) -> Result<Scores, ChallengerError> {
    let lr = LogisticRegression::fit(
        x_fit,
        &y_fit.to_vec(),
        LogisticRegressionParameters::default().with_alpha(l2),
    )
    .map_err(fit_err("logistic_regression"))?;
    let (coef, intercept) = (lr.coefficients(), *lr.intercept().get((0, 0)));
    let nf = coef.shape().1;
    let w: Vec<f64> = (0..nf).map(|j| *coef.get((0, j))).collect();
    let score = |rows: &FeatureRows, idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .map(|&i| {
                let z: f64 = rows
                    .row(i)
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let v = if v.is_finite() { v } else { std.median[j] };
                        (v - std.mean[j]) * std.inv_sd[j] * w[j]
                    })
                    .sum();
                sigmoid(z + intercept)
            })
            .collect()
    };
    Ok((score(parts[0].0, parts[0].1), score(parts[1].0, parts[1].1)))
}

fn forest(
    std: &Standardiser,
    rows: &FeatureRows,
    fit: (&[usize], &[bool]),
    parts: [&[usize]; 2],
    cfg: &ChallengerConfig,
) -> Result<Scores, ChallengerError> {
    let nf = rows.n_features;
    let m = ((nf as f64).sqrt().ceil() as usize).clamp(1, nf);
    let mut rng = Rng::new(cfg.seed ^ 0x5eed_f0e5);
    let mats = [std.matrix(rows, parts[0])?, std.matrix(rows, parts[1])?];
    let mut sums = [vec![0.0; parts[0].len()], vec![0.0; parts[1].len()]];
    let n = fit.0.len();
    for _ in 0..cfg.forest_trees {
        let sample: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
        let mut features: Vec<usize> = (0..nf).collect();
        rng.shuffle(&mut features);
        features.truncate(m);
        features.sort_unstable();
        let project = |rows_x: Vec<Vec<f64>>| -> Result<DenseMatrix<f64>, ChallengerError> {
            DenseMatrix::from_2d_vec(
                &rows_x
                    .into_iter()
                    .map(|r| features.iter().map(|&j| r[j]).collect())
                    .collect(),
            )
            .map_err(fit_err("random_forest"))
        };
        let x_rows: Vec<Vec<f64>> = sample
            .iter()
            .map(|&s| {
                rows.row(fit.0[s])
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let v = if v.is_finite() { v } else { std.median[j] };
                        (v - std.mean[j]) * std.inv_sd[j]
                    })
                    .collect()
            })
            .collect();
        let y: Vec<i32> = sample.iter().map(|&s| i32::from(fit.1[s])).collect();
        let has_both = y.contains(&0) && y.contains(&1);
        if !has_both {
            // A sample of one class votes that class everywhere.
            let p = f64::from(y.first().copied().unwrap_or(0));
            for s in &mut sums {
                s.iter_mut().for_each(|v| *v += p);
            }
            continue;
        }
        let tree = DecisionTreeClassifier::fit(
            &project(x_rows)?,
            &y,
            DecisionTreeClassifierParameters::default()
                .with_max_depth(cfg.forest_max_depth)
                .with_min_samples_leaf(5),
        )
        .map_err(fit_err("random_forest"))?;
        for (mat, sum) in mats.iter().zip(&mut sums) {
            let (r, _) = mat.shape();
            let rows_x: Vec<Vec<f64>> = (0..r)
                .map(|i| (0..nf).map(|j| *mat.get((i, j))).collect())
                .collect();
            let proba = tree
                .predict_proba(&project(rows_x)?)
                .map_err(fit_err("random_forest"))?;
            for (i, v) in sum.iter_mut().enumerate() {
                *v += *proba.get((i, 1));
            }
        }
    }
    let k = cfg.forest_trees.max(1) as f64;
    let [a, b] = sums;
    Ok((
        a.into_iter().map(|v| v / k).collect(),
        b.into_iter().map(|v| v / k).collect(),
    ))
}

/// Test rows grouped by asset, for resampling assets.
fn by_asset(rows: &FeatureRows, idx: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (k, &i) in idx.iter().enumerate() {
        groups.entry(rows.asset_idx[i]).or_default().push(k);
    }
    groups.into_values().collect()
}

fn ap(scores: &[f64], labels: &[bool]) -> Option<f64> {
    labels
        .iter()
        .any(|l| *l)
        .then(|| average_precision(&pr_curve(scores, labels)))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(value: f64, mut samples: Vec<f64>) -> Interval {
    samples.retain(|v| v.is_finite());
    samples.sort_by(f64::total_cmp);
    Interval {
        value,
        lo: percentile(&samples, 0.025),
        hi: percentile(&samples, 0.975),
    }
}

/// Asset resamples: each a list of positions into the test rows.
fn resamples(groups: &[Vec<usize>], n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            (0..groups.len())
                .flat_map(|_| groups[rng.below(groups.len())].iter().copied())
                .collect()
        })
        .collect()
}

fn pick<T: Copy>(v: &[T], at: &[usize]) -> Vec<T> {
    at.iter().map(|&k| v[k]).collect()
}

/// Metrics of one challenger's calibrated test probabilities.
fn result(
    name: &str,
    probs: &[f64],
    labels: &[bool],
    booster: Option<&[f64]>,
    samples: &[Vec<usize>],
    products: &[(String, Vec<usize>)],
    fit_seconds: f64,
) -> ChallengerResult {
    let (mut aps, mut briers, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        let (p, l) = (pick(probs, s), pick(labels, s));
        briers.push(brier(&p, &l));
        if let Some(a) = ap(&p, &l) {
            aps.push(a);
            if let Some(b) = booster {
                deltas.push(a - ap(&pick(b, s), &l).unwrap_or(f64::NAN));
            }
        }
    }
    let ap_all = ap(probs, labels);
    ChallengerResult {
        name: name.to_string(),
        average_precision: ap_all.map(|v| interval(v, aps)),
        brier: Some(interval(brier(probs, labels), briers)),
        ap_minus_booster: booster.and_then(|b| {
            let (a, bb) = (ap_all?, ap(b, labels)?);
            Some(interval(a - bb, deltas))
        }),
        by_product: products
            .iter()
            .map(|(product, at)| {
                let l = pick(labels, at);
                ProductResult {
                    product: product.clone(),
                    n_rows: at.len(),
                    n_positive: l.iter().filter(|v| **v).count(),
                    average_precision: ap(&pick(probs, at), &l),
                }
            })
            .collect(),
        fit_seconds,
        note: None,
    }
}

fn missing(name: &str, why: String) -> ChallengerResult {
    ChallengerResult {
        name: name.to_string(),
        average_precision: None,
        brier: None,
        ap_minus_booster: None,
        by_product: Vec::new(),
        fit_seconds: 0.0,
        note: Some(why),
    }
}

/// Calibrates raw challenger scores on the calibration slice and applies
/// the calibration to the test scores.
fn calibrated(raw: Scores, cal_y: &[bool]) -> Vec<f64> {
    let iso = Isotonic::fit(&raw.0, cal_y);
    raw.1.iter().map(|&s| iso.apply(s)).collect()
}

/// Runs every challenger against `model` (and `champion`, if any) on the
/// split the model was trained with.
///
/// # Errors
/// A smartcore fit failed.
pub fn compare(
    model: &FailureModel,
    champion: Option<&FailureModel>,
    rows: &FeatureRows,
    split: &Split,
    obs: &Observation<'_>,
    cfg: &ChallengerConfig,
) -> Result<ChallengerReport, ChallengerError> {
    let names = model.schema.names();
    let age_col = names.iter().position(|n| n == "hist.age_days");
    let product_col = names.iter().position(|n| n == "hist.product");
    let champion_ok = champion.map(|c| {
        if c.schema.names() == names {
            Ok(c)
        } else {
            Err(format!(
                "{} reads other features than this model (schema differs)",
                c.model_version
            ))
        }
    });
    let Some(first_horizon) = model.classifiers.first().map(|c| c.horizon_days) else {
        return Ok(ChallengerReport {
            bootstrap: cfg.bootstrap,
            targets: Vec::new(),
            n_rul_rows: 0,
            rul: Vec::new(),
        });
    };
    let std = Standardiser::fit(rows, &split.fit_rows);
    let mut targets = Vec::new();
    for (k, c) in model.classifiers.iter().enumerate() {
        if !cfg.all_horizons && c.horizon_days != first_horizon {
            continue;
        }
        let horizon = c.horizon_days;
        let mode = (c.mode != ANY_MODE).then_some(c.mode.as_str());
        let fit = labelled(rows, &split.fit_rows, obs, mode, horizon, split.t_cal_ms);
        let cal = labelled(rows, &split.cal_rows, obs, mode, horizon, split.t_test_ms);
        let test = labelled(rows, &split.test_rows, obs, mode, horizon, split.t1_ms);
        let groups = by_asset(rows, &test.idx);
        let samples = resamples(&groups, cfg.bootstrap, cfg.seed ^ k as u64);
        let products: Vec<(String, Vec<usize>)> = product_col
            .map(|pc| {
                let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
                for (pos, &i) in test.idx.iter().enumerate() {
                    let v = rows.row(i)[pc];
                    let name = (v.is_finite() && v >= 0.0)
                        .then(|| model.schema.products.get(v as usize))
                        .flatten()
                        .cloned()
                        .unwrap_or_else(|| "unknown".into());
                    by.entry(name).or_default().push(pos);
                }
                by.into_iter().collect()
            })
            .unwrap_or_default();
        let booster: Vec<f64> = test
            .idx
            .iter()
            .map(|&i| c.calibration.apply(c.booster.predict_row(rows.row(i))))
            .collect();
        let mut results = vec![result(
            "booster", &booster, &test.y, None, &samples, &products, 0.0,
        )];
        let with = |name: &str, probs: &[f64], secs: f64| {
            result(
                name,
                probs,
                &test.y,
                Some(&booster),
                &samples,
                &products,
                secs,
            )
        };
        match &champion_ok {
            None => results.push(missing("champion", "no promoted model given".into())),
            Some(Err(why)) => results.push(missing("champion", why.clone())),
            Some(Ok(ch)) => {
                match ch
                    .classifiers
                    .iter()
                    .find(|cc| cc.mode == c.mode && cc.horizon_days == horizon)
                {
                    Some(cc) => {
                        let p: Vec<f64> = test
                            .idx
                            .iter()
                            .map(|&i| cc.calibration.apply(cc.booster.predict_row(rows.row(i))))
                            .collect();
                        let mut r = with("champion", &p, 0.0);
                        r.note = Some(ch.model_version.clone());
                        results.push(r);
                    }
                    None => results.push(missing(
                        "champion",
                        format!(
                            "{} has no {} {horizon} d classifier",
                            ch.model_version, c.mode
                        ),
                    )),
                }
            }
        }
        match age_col {
            Some(a) => {
                let t = Instant::now();
                let col = |idx: &[usize]| -> Vec<f64> {
                    idx.iter()
                        .map(|&i| {
                            let v = rows.row(i)[a];
                            if v.is_finite() {
                                v
                            } else {
                                std.median[a]
                            }
                        })
                        .collect()
                };
                let p = calibrated((col(&cal.idx), col(&test.idx)), &cal.y);
                results.push(with("age_only", &p, t.elapsed().as_secs_f64()));
            }
            None => results.push(missing("age_only", "no hist.age_days feature".into())),
        }
        let (fit_idx, fit_y) = strided(&fit.idx, &fit.y, cfg.max_fit_rows);
        let both = fit_y.iter().any(|v| *v) && fit_y.iter().any(|v| !*v);
        if both {
            // A challenger that fails to fit is reported as such; it never
            // fails the training run.
            let t = Instant::now();
            let y_fit: Vec<i32> = fit_y.iter().map(|&v| i32::from(v)).collect();
            let raw = std.matrix(rows, &fit_idx).and_then(|x_fit| {
                logistic(
                    &std,
                    &x_fit,
                    &y_fit,
                    [(rows, &cal.idx), (rows, &test.idx)],
                    cfg.l2,
                )
            });
            results.push(match raw {
                Ok(raw) => with(
                    "logistic_regression",
                    &calibrated(raw, &cal.y),
                    t.elapsed().as_secs_f64(),
                ),
                Err(e) => missing("logistic_regression", e.to_string()),
            });
            let t = Instant::now();
            let raw = forest(&std, rows, (&fit_idx, &fit_y), [&cal.idx, &test.idx], cfg);
            results.push(match raw {
                Ok(raw) => with(
                    "random_forest",
                    &calibrated(raw, &cal.y),
                    t.elapsed().as_secs_f64(),
                ),
                Err(e) => missing("random_forest", e.to_string()),
            });
        } else {
            for name in ["logistic_regression", "random_forest"] {
                results.push(missing(name, "fit rows hold one class only".into()));
            }
        }
        targets.push(TargetComparison {
            mode: c.mode.clone(),
            horizon_days: horizon,
            n_fit_rows: fit.idx.len(),
            n_fit_positive: fit.y.iter().filter(|v| **v).count(),
            n_test_rows: test.idx.len(),
            n_test_positive: test.y.iter().filter(|v| **v).count(),
            n_test_assets: groups.len(),
            results,
        });
    }
    let (n_rul_rows, rul) = compare_rul(model, champion_ok.as_ref(), rows, split, obs, &std, cfg)?;
    Ok(ChallengerReport {
        bootstrap: cfg.bootstrap,
        targets,
        n_rul_rows,
        rul,
    })
}

/// RUL regressors on the test rows whose capped window is complete.
fn compare_rul(
    model: &FailureModel,
    champion: Option<&Result<&FailureModel, String>>,
    rows: &FeatureRows,
    split: &Split,
    obs: &Observation<'_>,
    std: &Standardiser,
    cfg: &ChallengerConfig,
) -> Result<(usize, Vec<RulResult>), ChallengerError> {
    let cap = model.rul_cap_days;
    let targets = |part: &[usize], censor: i64| -> (Vec<usize>, Vec<f64>) {
        let t = rul_targets(rows, part, obs, cap, censor);
        part.iter()
            .zip(t)
            .filter_map(|(&i, t)| t.map(|t| (i, t)))
            .unzip()
    };
    let (fit_idx, fit_y) = targets(&split.fit_rows, split.t_cal_ms);
    let (test_idx, test_y) = targets(&split.test_rows, split.t1_ms);
    let groups = by_asset(rows, &test_idx);
    let samples = resamples(&groups, cfg.bootstrap, cfg.seed ^ 0x0072_756c);
    let rmse = |pred: &[f64]| -> Interval {
        let f = |at: &[usize]| -> f64 {
            let n = at.len().max(1) as f64;
            (at.iter()
                .map(|&k| (pred[k] - test_y[k]).powi(2))
                .sum::<f64>()
                / n)
                .sqrt()
        };
        let all: Vec<usize> = (0..test_y.len()).collect();
        interval(f(&all), samples.iter().map(|s| f(s)).collect())
    };
    let ok = |name: &str, pred: &[f64]| RulResult {
        name: name.into(),
        rmse_days: Some(rmse(pred)),
        note: None,
    };
    let none = |name: &str, why: String| RulResult {
        name: name.into(),
        rmse_days: None,
        note: Some(why),
    };
    if test_idx.is_empty() || fit_idx.is_empty() {
        let why = "no test or fit row with a complete RUL window".to_string();
        return Ok((
            0,
            ["booster", "ridge", "mean"]
                .into_iter()
                .map(|n| none(n, why.clone()))
                .collect(),
        ));
    }
    let predict = |m: &FailureModel| -> Vec<f64> {
        test_idx
            .iter()
            .map(|&i| m.rul.predict_row(rows.row(i)).clamp(0.0, m.rul_cap_days))
            .collect()
    };
    let mut out = vec![ok("booster", &predict(model))];
    match champion {
        None => {}
        Some(Err(why)) => out.push(none("champion", why.clone())),
        Some(Ok(ch)) => out.push(ok("champion", &predict(ch))),
    }
    let step = fit_idx.len().div_ceil(cfg.max_fit_rows.max(1)).max(1);
    let fit_s: Vec<usize> = fit_idx.iter().step_by(step).copied().collect();
    let y_s: Vec<f64> = fit_y.iter().step_by(step).copied().collect();
    // A failed fit is reported, never fatal.
    let pred = ridge(std, rows, (&fit_s, &y_s), &test_idx, cfg.l2);
    out.push(match pred {
        Ok(pred) => {
            let pred: Vec<f64> = pred.into_iter().map(|v| v.clamp(0.0, cap)).collect();
            ok("ridge", &pred)
        }
        Err(e) => none("ridge", e.to_string()),
    });
    let mean = fit_y.iter().sum::<f64>() / fit_y.len() as f64;
    out.push(ok("mean", &vec![mean; test_idx.len()]));
    Ok((test_idx.len(), out))
}

/// Ridge regression of `fit.1` on the standardised features of the `fit.0`
/// rows, predicting the `test` rows. The features come standardised
/// (smartcore's own normalisation refuses the all-zero column of a constant
/// feature), and without it smartcore fits no intercept, so the target is
/// centred here and its mean added back.
fn ridge(
    std: &Standardiser,
    rows: &FeatureRows,
    fit: (&[usize], &[f64]),
    test: &[usize],
    l2: f64,
) -> Result<Vec<f64>, ChallengerError> {
    let (fit_idx, y) = fit;
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let centred: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let x = std.matrix(rows, fit_idx)?;
    let model = RidgeRegression::fit(
        &x,
        &centred,
        RidgeRegressionParameters::default()
            .with_alpha(l2)
            .with_normalize(false),
    )
    .map_err(fit_err("ridge"))?;
    let pred = model
        .predict(&std.matrix(rows, test)?)
        .map_err(fit_err("ridge"))?;
    Ok(pred.into_iter().map(|v| v + mean).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where the label is `x0 > 0.3` (with a noise column and missing
    /// values in the noise), for the smartcore wiring.
    fn separable(n: usize, seed: u64) -> (FeatureRows, Vec<bool>) {
        let mut rng = Rng::new(seed);
        let mut x = Vec::with_capacity(n * 2);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let x0 = rng.next_f64() * 2.0 - 1.0;
            let noise = if i % 7 == 0 { f64::NAN } else { rng.next_f64() };
            x.extend([x0, noise]);
            y.push(x0 > 0.3);
        }
        let rows = FeatureRows {
            n_features: 2,
            x,
            asset_idx: (0..n as u32).map(|i| i % 10).collect(),
            ts_ms: (0..n as i64).collect(),
        };
        (rows, y)
    }

    #[test]
    fn the_logistic_regression_and_the_forest_rank_a_separable_target() {
        let (rows, y) = separable(600, 1);
        let fit: Vec<usize> = (0..400).collect();
        let test: Vec<usize> = (400..600).collect();
        let std = Standardiser::fit(&rows, &fit);
        let x_fit = std.matrix(&rows, &fit).expect("matrix");
        let y_fit: Vec<i32> = fit.iter().map(|&i| i32::from(y[i])).collect();
        let labels: Vec<bool> = test.iter().map(|&i| y[i]).collect();
        let (_, lr) = logistic(&std, &x_fit, &y_fit, [(&rows, &test), (&rows, &test)], 1e-3)
            .expect("logistic");
        // Probabilities, oriented to the positive class.
        assert!(lr.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(ap(&lr, &labels).expect("positives") > 0.95);
        let flipped: Vec<f64> = lr.iter().map(|p| 1.0 - p).collect();
        assert!(ap(&flipped, &labels).expect("positives") < 0.5);
        let cfg = ChallengerConfig {
            forest_trees: 10,
            ..ChallengerConfig::default()
        };
        let fit_y: Vec<bool> = fit.iter().map(|&i| y[i]).collect();
        let (_, rf) = forest(&std, &rows, (&fit, &fit_y), [&test, &test], &cfg).expect("forest");
        assert!(ap(&rf, &labels).expect("positives") > 0.9);
        let (_, again) = forest(&std, &rows, (&fit, &fit_y), [&test, &test], &cfg).expect("forest");
        assert_eq!(rf, again, "the forest is seeded");
    }

    #[test]
    fn ridge_fits_the_intercept_of_a_target_far_from_zero() {
        let (rows, _) = separable(400, 5);
        let fit: Vec<usize> = (0..300).collect();
        let test: Vec<usize> = (300..400).collect();
        // RUL-like: 60 days plus 20 per unit of the first feature.
        let target = |i: usize| 60.0 + 20.0 * rows.row(i)[0];
        let y: Vec<f64> = fit.iter().map(|&i| target(i)).collect();
        let std = Standardiser::fit(&rows, &fit);
        let pred = ridge(&std, &rows, (&fit, &y), &test, 1e-3).expect("ridge");
        for (&i, p) in test.iter().zip(&pred) {
            assert!((p - target(i)).abs() < 0.5, "row {i}: {p} vs {}", target(i));
        }
    }

    #[test]
    fn asset_bootstrap_intervals_bracket_the_estimate_and_resample_whole_assets() {
        let (rows, y) = separable(500, 2);
        let idx: Vec<usize> = (0..500).collect();
        let groups = by_asset(&rows, &idx);
        assert_eq!(groups.len(), 10);
        let samples = resamples(&groups, 100, 3);
        for s in &samples {
            // Whole assets: the sample's size is a sum of group sizes.
            assert_eq!(s.len() % 50, 0);
        }
        let scores: Vec<f64> = idx.iter().map(|&i| rows.row(i)[0]).collect();
        let r = result("x", &scores, &y, Some(&scores), &samples, &[], 0.0);
        let a = r.average_precision.expect("ap");
        assert!(a.lo <= a.value && a.value <= a.hi, "{a:?}");
        let d = r.ap_minus_booster.expect("paired");
        assert_eq!((d.value, d.lo, d.hi), (0.0, 0.0, 0.0));
    }
}
