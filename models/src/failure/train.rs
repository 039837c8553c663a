//! Training a failure/RUL model from telemetry and Work Order history
//! (feature `train`).
//!
//! # Splits (time-ordered, grouped by asset)
//! With the telemetry spanning `[t0, t1]`, `T_cal = t0 + 0.6 (t1 − t0)` and
//! `T_test = t0 + 0.8 (t1 − t0)`:
//! - **fit**: training assets, readings before `T_cal`, labels censored at
//!   `T_cal` (no failure at or after `T_cal` can label a row);
//! - **calibration**: training assets, readings in `[T_cal, T_test)`, labels
//!   censored at `T_test`: isotonic calibration and thresholds come from here;
//! - **test**: held-out assets (≈ 20 % of each product, chosen by a hash of
//!   their name),
//!   readings from `T_cal` on: assets the model never saw, at times after
//!   every fit label.
//!
//! Labels of every part also stop at each asset's own end of observation
//! ([`Observation`]; rules in the `labels` module docs).
//!
//! # Early stopping (validation assets)
//! With [`GbdtParams::early_stopping_rounds`] set, a seeded
//! [`TrainConfig::validation_asset_fraction`] of the fit assets (per product,
//! whole assets, never a test asset) is held out: their fit-window rows
//! are the validation set every booster stops on, fitted on the other fit
//! assets. With [`TrainConfig::refit_after_early_stopping`] (the default)
//! each booster is then fitted again on every fit asset with the number of
//! trees its validation set chose; without it, no booster ever trains on a
//! validation asset. Their calibration-window rows stay in the calibration
//! slice. A classifier whose validation rows hold no failure keeps all its
//! trees (said in [`BoosterFit::note`]). The trees each booster kept are in
//! [`TrainOutcome::boosters`] and the model card.
//!
//! # Monotone constraints
//! [`TrainConfig::monotone`] rules ([`super::monotone`]) are in risk terms:
//! classifiers get them as written, the RUL regressor reversed.
//!
//! # Assets without Work Order history
//! A telemetry asset that the Work Order history does not name at all (no
//! Asset record, no Work Order) is reported in [`LabelSummary`] and, unless
//! [`TrainConfig::include_assets_without_history`] is set, left out of every
//! part: an asset missing from the export would otherwise count as one that
//! never failed. An asset with an Asset record and no Work Orders is kept.
//!
//! Thresholds: on the calibration slice's precision/recall curve, the lowest
//! threshold whose precision reaches `target_precision` (most recall at that
//! precision); if no threshold reaches it, the one with the best F1.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use super::cadence::{fleet_cadence, Cadence, CADENCE_TOLERANCE};
use super::dataset::{
    classifier_labels, feature_rows, rul_targets, FeatureRows, Observation, Telemetry,
};
use super::evaluate::{evaluate, EvalReport};
use super::labels::FleetHistory;
use super::model::{
    ArtifactError, Classifier, FailureModel, FeatureSchema, ANY_MODE, ARTIFACT_VERSION,
};
use super::monotone::{default_rules, resolve, MonotoneError, MonotoneRule};
use crate::calibration::Isotonic;
use crate::gbdt::{Gbdt, GbdtError, GbdtParams, Objective, Validation};
use crate::metrics::pr_curve;
use crate::telemetry::{TelemetryError, TelemetryProfile};

/// Training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Horizons of the "failure within" classifiers, days.
    pub horizons_days: Vec<f64>,
    /// Cap of the RUL target, days.
    pub rul_cap_days: f64,
    /// Precision the alarm threshold aims for.
    pub target_precision: f64,
    /// Fraction of assets held out for test.
    pub test_asset_fraction: f64,
    /// Keep at most this many training samples (readings are strided).
    pub max_rows: usize,
    /// Streaming EWMA half-lives, readings.
    pub half_lives: Vec<f64>,
    /// Index of the slope half-life.
    pub trend_horizon: usize,
    /// Booster settings (objective set per model).
    pub booster: GbdtParams,
    /// Seed for the asset split.
    pub seed: u64,
    /// Global end of observation of the Work Order export (epoch ms), if
    /// known: no label looks past it.
    pub observed_until_ms: Option<i64>,
    /// Train on telemetry assets the Work Order history does not name too
    /// (as assets that never failed). Off by default (module docs).
    pub include_assets_without_history: bool,
    /// Fraction of the fit assets of each product held out as the
    /// early-stopping validation set, when
    /// [`GbdtParams::early_stopping_rounds`] is set (module docs).
    pub validation_asset_fraction: f64,
    /// With early stopping: fit each booster again on every fit asset
    /// (validation assets included) with the number of trees the
    /// validation assets chose, instead of keeping the booster that never
    /// saw them (module docs).
    pub refit_after_early_stopping: bool,
    /// Monotone constraints applied where their columns exist, before
    /// [`TrainConfig::monotone`]: physics ([`super::monotone::DEFAULT_RULES`]).
    pub default_monotone: Vec<MonotoneRule>,
    /// Monotone constraints by feature-name pattern, in risk terms
    /// ([`super::monotone`]); a pattern matching no column is an error.
    pub monotone: Vec<MonotoneRule>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            horizons_days: vec![7.0, 14.0, 30.0],
            rul_cap_days: 45.0,
            target_precision: 0.5,
            test_asset_fraction: 0.2,
            max_rows: 120_000,
            half_lives: vec![4.0, 32.0, 256.0],
            trend_horizon: 1,
            booster: GbdtParams {
                n_trees: 120,
                learning_rate: 0.08,
                max_depth: 5,
                min_samples_leaf: 40,
                subsample: 0.7,
                colsample: 0.7,
                // Measured on simulated fleets (docs/models.md, "The
                // learner"): learned directions split on the left-censored
                // `hist.days_since_failure*` and cost test AP.
                learn_missing_direction: false,
                ..GbdtParams::default()
            },
            seed: 17,
            observed_until_ms: None,
            include_assets_without_history: false,
            validation_asset_fraction: 0.2,
            refit_after_early_stopping: true,
            default_monotone: default_rules(),
            monotone: Vec::new(),
        }
    }
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Schema / feature problems.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// Booster problems.
    #[error(transparent)]
    Booster(#[from] GbdtError),
    /// Telemetry files could not be read.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// Not enough data to train.
    #[error("cannot train: {0}")]
    Data(String),
    /// A monotone rule is unusable.
    #[error(transparent)]
    Monotone(#[from] MonotoneError),
}

/// The row partition of one training run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Split {
    /// Start of telemetry.
    pub t0_ms: i64,
    /// Start of the calibration slice = censor time of fit labels.
    pub t_cal_ms: i64,
    /// End of the calibration slice = censor time of calibration labels.
    pub t_test_ms: i64,
    /// End of telemetry (censor time of test labels).
    pub t1_ms: i64,
    /// Held-out asset names.
    pub test_assets: Vec<String>,
    /// Fit assets held out as the early-stopping validation set (empty
    /// without early stopping).
    pub validation_assets: Vec<String>,
    /// Rows (indexes into the feature rows) of each part; fit rows exclude
    /// the validation assets' rows.
    #[serde(skip)]
    pub fit_rows: Vec<usize>,
    /// Validation rows: the validation assets' fit-window rows.
    #[serde(skip)]
    pub val_rows: Vec<usize>,
    /// Calibration rows.
    #[serde(skip)]
    pub cal_rows: Vec<usize>,
    /// Test rows.
    #[serde(skip)]
    pub test_rows: Vec<usize>,
}

/// Mixed into the seed for the validation-asset draw ("validate").
const VALIDATION_SALT: u64 = 0x7661_6c69_6461_7465;

fn name_hash(name: &str, seed: u64) -> u64 {
    // FNV-1a, then the SplitMix64 finaliser: FNV alone orders names that
    // share a prefix together (every `hvac-00xx` first), which would make a
    // one-product test set.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Partitions feature rows into fit / validation / calibration / test (see
/// module docs). Test assets, then validation assets among the rest, are
/// drawn per product (stratified), so every product line is represented on
/// every side.
pub fn split_rows(
    rows: &FeatureRows,
    assets: &[String],
    history: &FleetHistory,
    t0: i64,
    t1: i64,
    cfg: &TrainConfig,
) -> Split {
    let span = (t1 - t0) as f64;
    let t_cal = t0 + (0.6 * span) as i64;
    let t_test = t0 + (0.8 * span) as i64;
    let mut by_product: std::collections::BTreeMap<Option<String>, Vec<(u64, &String)>> =
        Default::default();
    let skipped =
        |a: &String| !cfg.include_assets_without_history && !history.assets.contains_key(a);
    for a in assets.iter().filter(|a| !skipped(a)) {
        let product = history.assets.get(a).and_then(|h| h.product.clone());
        by_product
            .entry(product)
            .or_default()
            .push((name_hash(a, cfg.seed), a));
    }
    // At least one and never all of a group's assets (none of a group of
    // one; for validation, none at fraction 0).
    let n_held = |n: usize, fraction: f64| {
        if n >= 2 {
            ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
        } else {
            0
        }
    };
    let early_stopping = cfg.booster.early_stopping_rounds.is_some();
    let mut test_assets: Vec<String> = Vec::new();
    let mut validation_assets: Vec<String> = Vec::new();
    for group in by_product.values_mut() {
        group.sort();
        let n_test = n_held(group.len(), cfg.test_asset_fraction);
        test_assets.extend(group[..n_test].iter().map(|(_, a)| (*a).clone()));
        if early_stopping {
            // A second, independent hash orders the fit assets, so the
            // validation draw does not just take the next test candidates.
            let mut fit: Vec<(u64, &String)> = group[n_test..]
                .iter()
                .map(|(_, a)| (name_hash(a, cfg.seed ^ VALIDATION_SALT), *a))
                .collect();
            fit.sort();
            let n_val = if cfg.validation_asset_fraction > 0.0 {
                n_held(fit.len(), cfg.validation_asset_fraction)
            } else {
                0
            };
            validation_assets.extend(fit[..n_val].iter().map(|(_, a)| (*a).clone()));
        }
    }
    test_assets.sort();
    validation_assets.sort();
    let is_test: Vec<bool> = assets.iter().map(|a| test_assets.contains(a)).collect();
    let is_val: Vec<bool> = assets
        .iter()
        .map(|a| validation_assets.contains(a))
        .collect();
    let is_skipped: Vec<bool> = assets.iter().map(skipped).collect();
    let mut split = Split {
        t0_ms: t0,
        t_cal_ms: t_cal,
        t_test_ms: t_test,
        t1_ms: t1,
        test_assets,
        validation_assets,
        fit_rows: Vec::new(),
        val_rows: Vec::new(),
        cal_rows: Vec::new(),
        test_rows: Vec::new(),
    };
    for i in 0..rows.len() {
        let t = rows.ts_ms[i];
        if is_skipped[rows.asset_idx[i] as usize] {
            continue;
        }
        if is_test[rows.asset_idx[i] as usize] {
            if t >= t_cal {
                split.test_rows.push(i);
            }
        } else if t < t_cal {
            if is_val[rows.asset_idx[i] as usize] {
                split.val_rows.push(i);
            } else {
                split.fit_rows.push(i);
            }
        } else if t < t_test {
            split.cal_rows.push(i);
        }
    }
    split
}

/// Picks the alarm threshold on calibrated probabilities (module docs).
pub fn choose_threshold(probs: &[f64], labels: &[bool], target_precision: f64) -> f64 {
    let curve = pr_curve(probs, labels);
    if curve.is_empty() {
        return 1.0;
    }
    if let Some(p) = curve.iter().rev().find(|p| p.precision >= target_precision) {
        return p.threshold;
    }
    curve
        .iter()
        .max_by(|a, b| {
            let f = |p: &crate::metrics::PrPoint| {
                if p.precision + p.recall > 0.0 {
                    2.0 * p.precision * p.recall / (p.precision + p.recall)
                } else {
                    0.0
                }
            };
            f(a).total_cmp(&f(b))
        })
        .map_or(1.0, |p| p.threshold)
}

fn subset(rows: &FeatureRows, idx: &[usize]) -> Vec<f64> {
    let mut x = Vec::with_capacity(idx.len() * rows.n_features);
    for &i in idx {
        x.extend_from_slice(rows.row(i));
    }
    x
}

/// Where the labels came from and what was left out (summary and model card).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LabelSummary {
    /// How many telemetry assets the Work Order history does not name.
    pub n_assets_without_history: usize,
    /// Their names.
    pub assets_without_history: Vec<String>,
    /// Whether those assets were left out of training and evaluation.
    pub assets_without_history_excluded: bool,
    /// The global end of observation, if one was given (ISO 8601).
    pub observed_until: Option<String>,
    /// Telemetry assets whose end of observation is their decommission date.
    pub n_assets_ended_by_decommission: usize,
    /// Fit rows left unlabelled because a window ran past the end of
    /// observation (or an uncoded failure made the mode ambiguous), summed
    /// over classifiers.
    pub n_fit_labels_excluded: usize,
    /// Fit rows labelled, summed over classifiers.
    pub n_fit_labels: usize,
    /// Fit rows weighted as hard negatives (before a false alarm), summed
    /// over classifiers.
    pub n_fit_hard_negatives: usize,
    /// Fit rows with a RUL target / without (window not complete).
    pub n_fit_rul_rows: usize,
    /// Fit rows dropped from RUL because the capped window is incomplete.
    pub n_fit_rul_excluded: usize,
}

/// How one booster of the artifact was fitted (model card `boosters`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BoosterFit {
    /// `any 7d`, `bearing 30d`, … or `rul`.
    pub model: String,
    /// Trees kept.
    pub n_trees: usize,
    /// Most trees it could have had ([`GbdtParams::n_trees`]).
    pub max_trees: usize,
    /// Validation loss at the chosen number of trees (log-loss, or squared
    /// error in days² for RUL); `None` without a validation set.
    pub validation_loss: Option<f64>,
    /// Whether early stopping ended boosting before `max_trees`.
    pub stopped_early: bool,
    /// Whether the kept booster was refitted on every fit asset, the
    /// validation assets included, with the chosen number of trees.
    pub refit: bool,
    /// Why early stopping did not apply, when it was on.
    pub note: Option<String>,
}

/// Training rows of one booster: the fit rows, then the validation rows.
struct TrainSet<'a> {
    x: &'a [f64],
    n_features: usize,
    y: &'a [f64],
    weights: Option<&'a [f64]>,
    /// How many leading rows are fit rows.
    n_fit: usize,
}

/// Fits one booster. Without early stopping, on the fit rows (there are
/// no validation rows then). With it, on the fit rows, stopping on the
/// validation rows when they can judge it (for the logistic loss: they hold
/// a positive row); with `refit`, the kept model is then fitted again on
/// fit and validation rows with the chosen number of trees.
fn fit_booster(
    name: String,
    params: &GbdtParams,
    rounds: Option<usize>,
    refit: bool,
    set: &TrainSet<'_>,
) -> Result<(Gbdt, BoosterFit), TrainError> {
    let nf = set.n_features;
    let (x_fit, x_val) = set.x.split_at(set.n_fit * nf);
    let (y_fit, y_val) = set.y.split_at(set.n_fit);
    let (w_fit, w_val) = match set.weights {
        Some(w) => {
            let (a, b) = w.split_at(set.n_fit);
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let plain = GbdtParams {
        early_stopping_rounds: None,
        ..params.clone()
    };
    let mut fit = BoosterFit {
        model: name,
        n_trees: 0,
        max_trees: params.n_trees,
        validation_loss: None,
        stopped_early: false,
        refit: false,
        note: None,
    };
    let weight = |i: usize| w_val.map_or(1.0, |w| w[i]);
    let judged = match params.objective {
        Objective::Logistic => (0..y_val.len()).any(|i| y_val[i] > 0.5 && weight(i) > 0.0),
        Objective::SquaredError => (0..y_val.len()).any(|i| weight(i) > 0.0),
    };
    let booster = match rounds {
        Some(rounds) if judged => {
            let validation = Validation {
                x: x_val,
                y: y_val,
                weights: w_val,
            };
            let (booster, report) = GbdtParams {
                early_stopping_rounds: Some(rounds),
                ..plain.clone()
            }
            .fit_with_validation(x_fit, nf, y_fit, w_fit, &validation)?;
            fit.validation_loss = Some(report.loss);
            fit.stopped_early = report.stopped_early;
            if refit {
                fit.refit = true;
                GbdtParams {
                    n_trees: report.n_trees,
                    ..plain
                }
                .fit(set.x, nf, set.y, set.weights)?
            } else {
                booster
            }
        }
        Some(_) => {
            fit.note = Some(if y_val.is_empty() {
                "no validation rows: all trees kept".into()
            } else {
                "no failure in the validation rows: all trees kept".into()
            });
            fit.refit = refit;
            if refit {
                plain.fit(set.x, nf, set.y, set.weights)?
            } else {
                plain.fit(x_fit, nf, y_fit, w_fit)?
            }
        }
        None => plain.fit(x_fit, nf, y_fit, w_fit)?,
    };
    fit.n_trees = booster.trees.len();
    Ok((booster, fit))
}

/// Everything a training run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The model.
    pub model: FailureModel,
    /// The split used.
    pub split: Split,
    /// Metrics on the held-out test rows.
    pub test: EvalReport,
    /// Metrics on the calibration slice.
    pub calibration: EvalReport,
    /// Sampled rows (fit + calibration + test + unused).
    pub n_rows: usize,
    /// Reading stride used for sampling.
    pub stride: usize,
    /// Label sources and exclusions.
    pub labels: LabelSummary,
    /// Reading cadence of the training telemetry (`None` when no asset has
    /// enough readings to tell).
    pub cadence: Option<Cadence>,
    /// How each booster was fitted, classifiers in artifact order then RUL.
    pub boosters: Vec<BoosterFit>,
}

/// Trains per-mode, per-horizon calibrated classifiers and a RUL regressor.
/// `progress(step, done, total)` reports long steps.
///
/// # Errors
/// Missing sensors, no data, or booster errors.
pub fn train(
    telemetry: &Telemetry,
    history: &FleetHistory,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<TrainOutcome, TrainError> {
    train_with_rows(telemetry, history, cfg, progress).map(|(outcome, _)| outcome)
}

/// [`train`], also returning the feature rows the split indexes (for
/// [`challengers`](super::challengers)).
///
/// # Errors
/// As [`train`].
pub fn train_with_rows(
    telemetry: &Telemetry,
    history: &FleetHistory,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(TrainOutcome, FeatureRows), TrainError> {
    let profile = TelemetryProfile::of(telemetry);
    train_from(
        &profile,
        history,
        cfg,
        &mut |schema, stride, progress| {
            progress("features", 0, 1);
            let rows = feature_rows(telemetry, schema, history, stride)?;
            progress("features", 1, 1);
            Ok(rows)
        },
        progress,
    )
}

/// Produces the feature rows of a schema at a stride (reporting progress).
pub type RowSource<'a> = dyn FnMut(
        &FeatureSchema,
        usize,
        &mut dyn FnMut(&str, usize, usize),
    ) -> Result<FeatureRows, TrainError>
    + 'a;

/// [`train_with_rows`] on telemetry known by its profile, whose feature rows
/// `rows` computes (e.g. [`super::dataset::feature_rows_from`] over files
/// read in chunks): the telemetry never needs to be in memory.
///
/// # Errors
/// As [`train`], plus the row source's errors.
pub fn train_from(
    telemetry: &TelemetryProfile,
    history: &FleetHistory,
    cfg: &TrainConfig,
    rows: &mut RowSource<'_>,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(TrainOutcome, FeatureRows), TrainError> {
    let (t0, t1) = telemetry
        .time_range()
        .ok_or_else(|| TrainError::Data("telemetry has no rows".into()))?;
    let modes = history.modes();
    let schema = FeatureSchema::new(
        telemetry.sensors.clone(),
        cfg.half_lives.clone(),
        cfg.trend_horizon,
        history.products(),
        modes.clone(),
    )?;
    let stride = telemetry.n_rows.div_ceil(cfg.max_rows.max(1)).max(1);
    let rows = rows(&schema, stride, progress)?;
    let obs = Observation::from_profile(telemetry, history, cfg.observed_until_ms);
    let absent = obs.assets_without_history();
    let mut labels = LabelSummary {
        n_assets_without_history: absent.len(),
        assets_without_history: absent,
        assets_without_history_excluded: !cfg.include_assets_without_history,
        observed_until: cfg.observed_until_ms.map(super::labels::format_ms),
        n_assets_ended_by_decommission: telemetry
            .assets
            .iter()
            .zip(&obs.end_ms)
            .filter(|(a, end)| {
                history
                    .assets
                    .get(*a)
                    .and_then(|h| h.decommissioned_ms)
                    .is_some_and(|d| d == **end)
            })
            .count(),
        ..LabelSummary::default()
    };
    if labels.assets_without_history_excluded
        && labels.assets_without_history.len() == telemetry.assets.len()
    {
        return Err(TrainError::Data(format!(
            "0 of {} telemetry assets are named in the Work Order history (Asset.Name must \
             match the asset column; --include-assets-without-history trains on them anyway)",
            telemetry.assets.len()
        )));
    }
    let split = split_rows(&rows, &telemetry.assets, history, t0, t1, cfg);
    if split.fit_rows.is_empty() || split.cal_rows.is_empty() {
        return Err(TrainError::Data(format!(
            "{} fit rows and {} calibration rows: need a longer history",
            split.fit_rows.len(),
            split.cal_rows.len()
        )));
    }
    // Fit rows, then validation rows: one matrix, the fit part a prefix.
    let train_rows: Vec<usize> = split
        .fit_rows
        .iter()
        .chain(&split.val_rows)
        .copied()
        .collect();
    let x_train = subset(&rows, &train_rows);
    let x_cal = subset(&rows, &split.cal_rows);
    let nf = rows.n_features;
    let risk_monotone = resolve(&schema.names(), &cfg.default_monotone, &cfg.monotone)?;
    let constrain = |direction: i8| -> Vec<i8> {
        if risk_monotone.iter().all(|&d| d == 0) {
            Vec::new()
        } else {
            risk_monotone.iter().map(|&d| d * direction).collect()
        }
    };
    let rounds = cfg.booster.early_stopping_rounds;
    let mut boosters = Vec::new();
    let targets: Vec<(Option<String>, f64)> = std::iter::once(None)
        .chain(modes.iter().cloned().map(Some))
        .flat_map(|m| cfg.horizons_days.iter().map(move |h| (m.clone(), *h)))
        .collect();
    let total = targets.len() + 1;
    let mut classifiers = Vec::new();
    for (k, (mode, horizon)) in targets.iter().enumerate() {
        let name = mode.clone().unwrap_or_else(|| ANY_MODE.to_string());
        progress(&format!("classifier {name} {horizon}d"), k, total);
        let (y, w) = classifier_labels(
            &rows,
            &split.fit_rows,
            &obs,
            mode.as_deref(),
            *horizon,
            split.t_cal_ms,
        );
        labels.n_fit_labels += w.iter().filter(|w| **w > 0.0).count();
        labels.n_fit_labels_excluded += w.iter().filter(|w| **w == 0.0).count();
        labels.n_fit_hard_negatives += w.iter().filter(|w| **w > 1.0).count();
        let n_pos = y
            .iter()
            .zip(&w)
            .filter(|(y, w)| **y > 0.5 && **w > 0.0)
            .count();
        if n_pos == 0 {
            // No failure of this mode in the fit window: nothing to learn.
            continue;
        }
        let params = GbdtParams {
            objective: Objective::Logistic,
            monotone: constrain(1),
            ..cfg.booster.clone()
        };
        let (yv, wv) = classifier_labels(
            &rows,
            &split.val_rows,
            &obs,
            mode.as_deref(),
            *horizon,
            split.t_cal_ms,
        );
        let set = TrainSet {
            x: &x_train,
            n_features: nf,
            y: &[y, yv].concat(),
            weights: Some(&[w, wv].concat()),
            n_fit: split.fit_rows.len(),
        };
        let (booster, fit) = fit_booster(
            format!("{name} {horizon}d"),
            &params,
            rounds,
            cfg.refit_after_early_stopping,
            &set,
        )?;
        boosters.push(fit);
        let (yc, wc) = classifier_labels(
            &rows,
            &split.cal_rows,
            &obs,
            mode.as_deref(),
            *horizon,
            split.t_test_ms,
        );
        let mut raw = Vec::new();
        let mut labels = Vec::new();
        for (j, row) in x_cal.chunks_exact(nf).enumerate() {
            if wc[j] > 0.0 {
                raw.push(booster.predict_row(row));
                labels.push(yc[j] > 0.5);
            }
        }
        let calibration = Isotonic::fit(&raw, &labels);
        let calibrated: Vec<f64> = raw.iter().map(|&p| calibration.apply(p)).collect();
        let threshold = choose_threshold(&calibrated, &labels, cfg.target_precision);
        classifiers.push(Classifier {
            mode: name,
            horizon_days: *horizon,
            booster,
            calibration,
            threshold,
        });
    }
    if classifiers.is_empty() {
        let known = telemetry
            .assets
            .iter()
            .filter(|a| history.assets.contains_key(*a))
            .count();
        return Err(TrainError::Data(format!(
            "no failure falls in the fit window of any telemetry asset ({known} of {} telemetry \
             assets are named in the Work Order history; Asset.Name must match the asset column)",
            telemetry.assets.len()
        )));
    }
    progress("rul", targets.len(), total);
    let rul_t = rul_targets(
        &rows,
        &split.fit_rows,
        &obs,
        cfg.rul_cap_days,
        split.t_cal_ms,
    );
    labels.n_fit_rul_rows = rul_t.iter().filter(|t| t.is_some()).count();
    labels.n_fit_rul_excluded = rul_t.len() - labels.n_fit_rul_rows;
    let n_fit_rul = labels.n_fit_rul_rows;
    if n_fit_rul == 0 {
        return Err(TrainError::Data(
            "no uncensored RUL row in the fit window".into(),
        ));
    }
    // Targets of the fit rows, then of the validation rows (as `x_train`).
    let rul_val = rul_targets(
        &rows,
        &split.val_rows,
        &obs,
        cfg.rul_cap_days,
        split.t_cal_ms,
    );
    let (mut xr, mut yr) = (Vec::new(), Vec::new());
    for (j, t) in rul_t.iter().chain(&rul_val).enumerate() {
        if let Some(t) = t {
            xr.extend_from_slice(&x_train[j * nf..(j + 1) * nf]);
            yr.push(*t);
        }
    }
    let rul_params = GbdtParams {
        objective: Objective::SquaredError,
        monotone: constrain(-1),
        ..cfg.booster.clone()
    };
    let set = TrainSet {
        x: &xr,
        n_features: nf,
        y: &yr,
        weights: None,
        n_fit: n_fit_rul,
    };
    let (rul, fit) = fit_booster(
        "rul".into(),
        &rul_params,
        rounds,
        cfg.refit_after_early_stopping,
        &set,
    )?;
    boosters.push(fit);
    progress("rul", total, total);
    let fingerprint = format!(
        "{:08x}",
        (name_hash(&format!("{t0}-{t1}-{}", rows.len()), cfg.seed) >> 32) as u32
    );
    let mut model = FailureModel {
        version: ARTIFACT_VERSION,
        model_version: format!("fp-failure-{}-{fingerprint}", t1 / 86_400_000),
        schema,
        classifiers,
        rul,
        rul_cap_days: cfg.rul_cap_days,
    };
    model.version = model.format_version();
    let test = evaluate(&model, &rows, &split.test_rows, &obs, t1);
    let calibration = evaluate(&model, &rows, &split.cal_rows, &obs, split.t_test_ms);
    let outcome = TrainOutcome {
        model,
        n_rows: rows.len(),
        split,
        test,
        calibration,
        stride,
        labels,
        cadence: fleet_cadence(&telemetry.intervals_s),
        boosters,
    };
    Ok((outcome, rows))
}

/// FNV-1a 64-bit fingerprint of some byte strings (data fingerprint of the
/// model card).
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// The model card (`model_card.json`).
pub fn model_card(
    outcome: &TrainOutcome,
    cfg: &TrainConfig,
    data_fingerprint: &str,
    created_by: &str,
) -> serde_json::Value {
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let m = &outcome.model;
    let ms_to_text = |ms: i64| super::labels::format_ms(ms);
    json!({
        "name": "fieldpulse-failure",
        "version": m.model_version,
        "format_version": m.version,
        "created_at": super::labels::format_ms(created_at as i64 * 1000),
        "created_at_unix": created_at,
        "created_by": created_by,
        "data_fingerprint": data_fingerprint,
        "features": {
            "sensors": m.schema.sensors,
            "half_lives_readings": m.schema.half_lives,
            "trend_horizon": m.schema.trend_horizon,
            "columns": m.schema.names(),
            "products": m.schema.products,
            "failure_modes": m.schema.modes,
        },
        "training_window": {
            "start": ms_to_text(outcome.split.t0_ms),
            "fit_until": ms_to_text(outcome.split.t_cal_ms),
            "calibration_until": ms_to_text(outcome.split.t_test_ms),
            "end": ms_to_text(outcome.split.t1_ms),
            "test_assets": outcome.split.test_assets,
            "validation_assets": outcome.split.validation_assets,
            "rows": {
                "sampled": outcome.n_rows,
                "stride": outcome.stride,
                "fit": outcome.split.fit_rows.len(),
                "validation": outcome.split.val_rows.len(),
                "calibration": outcome.split.cal_rows.len(),
                "test": outcome.split.test_rows.len(),
            },
        },
        "labels": outcome.labels,
        "training_cadence": outcome.cadence,
        "boosters": outcome.boosters,
        "limitations": limitations(outcome),
        "thresholds": m.classifiers.iter().map(|c| json!({
            "mode": c.mode, "horizon_days": c.horizon_days, "threshold": c.threshold,
            "rule": format!("lowest calibrated probability with precision >= {} on the calibration slice, else best F1", cfg.target_precision),
        })).collect::<Vec<_>>(),
        "metrics": {
            "test": summary(&outcome.test),
            "calibration": summary(&outcome.calibration),
        },
        "params": {
            "horizons_days": cfg.horizons_days,
            "rul_cap_days": cfg.rul_cap_days,
            "target_precision": cfg.target_precision,
            "booster": {
                "n_trees": cfg.booster.n_trees,
                "learning_rate": cfg.booster.learning_rate,
                "max_depth": cfg.booster.max_depth,
                "min_samples_leaf": cfg.booster.min_samples_leaf,
                "subsample": cfg.booster.subsample,
                "colsample": cfg.booster.colsample,
                "learn_missing_direction": cfg.booster.learn_missing_direction,
                "early_stopping_rounds": cfg.booster.early_stopping_rounds,
                "validation_asset_fraction": cfg.booster.early_stopping_rounds.map(|_| cfg.validation_asset_fraction),
                "refit_after_early_stopping": cfg.booster.early_stopping_rounds.map(|_| cfg.refit_after_early_stopping),
            },
            "monotone": {
                "default_rules": cfg.default_monotone.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "rules": cfg.monotone.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "risk_direction": monotone_columns(&m.schema.names(), &cfg.default_monotone, &cfg.monotone),
            },
        },
    })
}

/// The constrained columns and their risk direction (`+1`/`-1`), by name.
fn monotone_columns(
    names: &[String],
    defaults: &[MonotoneRule],
    rules: &[MonotoneRule],
) -> serde_json::Map<String, serde_json::Value> {
    let directions = resolve(names, defaults, rules).unwrap_or_default();
    names
        .iter()
        .zip(directions)
        .filter(|(_, d)| *d != 0)
        .map(|(n, d)| (n.clone(), json!(d)))
        .collect()
}

/// What the model cannot do, from this run and in general (model card
/// `limitations`).
pub fn limitations(outcome: &TrainOutcome) -> Vec<String> {
    let m = &outcome.model;
    let mut out = Vec::new();
    for mode in &m.schema.modes {
        if !m.classifiers.iter().any(|c| &c.mode == mode) {
            out.push(format!(
                "no classifier for failure mode `{mode}`: no failure of it in the fit window"
            ));
        }
    }
    match &outcome.cadence {
        Some(c) => out.push(format!(
            "trained on readings every {:.0} s (median over assets); streaming half-lives count \
             readings, so telemetry more than {CADENCE_TOLERANCE}x faster or slower is refused by \
             `fieldpulse score`",
            c.median_interval_s
        )),
        None => out.push("training cadence unknown (too few readings per asset)".into()),
    }
    let l = &outcome.labels;
    if l.n_assets_without_history > 0 {
        out.push(format!(
            "{} telemetry assets had no Work Order history and were {}",
            l.n_assets_without_history,
            if l.assets_without_history_excluded {
                "left out"
            } else {
                "trained on as never failing"
            }
        ));
    }
    out.push(format!(
        "test metrics come from {} held-out assets ({} rows): small test sets give wide error bars",
        outcome.split.test_assets.len(),
        outcome.split.test_rows.len()
    ));
    if m.uses_history() {
        out.push(
            "reads Work Order history features: scoring needs the same kind of history export"
                .into(),
        );
    }
    out.push(format!(
        "an asset's first {} readings are warm-up (streaming state not settled); \
         `fieldpulse score` flags them",
        m.warmup_rows()
    ));
    out.push(
        "thresholds target row-level precision, not alarms per asset-month; a failure mode \
         first seen after training needs a retrain; a failure code counts as known from its \
         Work Order's start"
            .into(),
    );
    out
}

/// The headline numbers of an [`EvalReport`] (no curves).
pub fn summary(report: &EvalReport) -> serde_json::Value {
    json!({
        "n_rows": report.n_rows,
        "n_assets": report.n_assets,
        "asset_months": report.asset_months,
        "rul_rmse_days": report.rul_rmse_days,
        "rul_mae_days": report.rul_mae_days,
        "rul_rows": report.rul_rows,
        "classifiers": report.classifiers.iter().map(|c| json!({
            "mode": c.mode, "horizon_days": c.horizon_days, "threshold": c.threshold,
            "precision": c.precision, "recall": c.recall, "f1": c.f1,
            "average_precision": c.average_precision, "brier": c.brier,
            "n_rows": c.n_rows, "n_positive": c.n_positive,
            "n_failures": c.n_failures, "n_failures_detected": c.n_failures_detected,
            "median_lead_days": c.median_lead_days,
            "false_alarms_per_asset_month": c.false_alarms_per_asset_month,
        })).collect::<Vec<_>>(),
    })
}
