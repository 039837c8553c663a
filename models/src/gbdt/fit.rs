//! Fitting the histogram booster (feature `train`).
//!
//! Per tree: gradients and hessians of the loss at the current predictions,
//! an optional row subsample and feature subsample, then depth-wise growth
//! (`grow.rs`: histograms, missing-value directions, monotone constraints).
//!
//! **Early stopping.** [`GbdtValidParams::fit_with_validation`] scores a
//! validation set after every tree with the training loss (weighted log-loss
//! or squared error); with [`GbdtParams::early_stopping_rounds`] = `k` it
//! stops once `k` trees in a row have not lowered the best loss, and keeps
//! the trees up to the best one (gain importance too). Nothing random is
//! drawn for it, so a given seed still gives one model.

use thiserror::Error;

use super::grow::{binned_predict, leaf, BinnedMatrix, Grower};
use super::{Gbdt, Objective, Tree};
use crate::rng::SplitMix64;

/// Hyper-parameters of the booster, unchecked (see [`GbdtParams::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtParams {
    /// Loss to minimise.
    pub objective: Objective,
    /// Number of boosting rounds.
    pub n_trees: usize,
    /// Shrinkage applied to every leaf, in `(0, 1]`.
    pub learning_rate: f64,
    /// Maximum depth of a tree (root = depth 0), 1..=16.
    pub max_depth: usize,
    /// Minimum rows in a leaf.
    pub min_samples_leaf: usize,
    /// Minimum hessian sum in a leaf (matters for the logistic loss).
    pub min_hessian_leaf: f64,
    /// L2 regularisation of leaf values.
    pub l2: f64,
    /// Fraction of rows used per tree, in `(0, 1]`.
    pub subsample: f64,
    /// Fraction of features used per tree, in `(0, 1]`.
    pub colsample: f64,
    /// Bins per feature (at most 255, at least 2).
    pub max_bins: usize,
    /// Seed of the subsampling generator.
    pub seed: u64,
    /// Stop when this many trees in a row did not improve the validation
    /// loss, keeping the best iteration; needs a validation set
    /// ([`GbdtValidParams::fit_with_validation`]). `None`: all `n_trees`.
    pub early_stopping_rounds: Option<usize>,
    /// Monotone constraint per feature: `+1` predictions non-decreasing in
    /// it, `-1` non-increasing, `0` free. Empty: no constraint; otherwise
    /// one entry per feature.
    pub monotone: Vec<i8>,
    /// Learn each split's missing-value direction (try `NaN` on both
    /// sides); `false` sends every `NaN` left, as boosters from before
    /// directions were learned did.
    pub learn_missing_direction: bool,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            objective: Objective::SquaredError,
            n_trees: 200,
            learning_rate: 0.05,
            max_depth: 5,
            min_samples_leaf: 20,
            min_hessian_leaf: 1e-3,
            l2: 1.0,
            subsample: 0.8,
            colsample: 0.8,
            max_bins: 255,
            seed: 42,
            early_stopping_rounds: None,
            monotone: Vec::new(),
            learn_missing_direction: true,
        }
    }
}

/// Parameters that passed [`GbdtParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtValidParams(GbdtParams);

/// Why fitting could not start.
#[derive(Debug, Error, PartialEq)]
pub enum GbdtError {
    /// A hyper-parameter is outside its range.
    #[error("invalid booster parameter `{name}`: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The training matrix does not match the targets or is empty.
    #[error("bad training data: {0}")]
    BadData(String),
}

impl GbdtParams {
    /// Validates every parameter.
    ///
    /// # Errors
    /// [`GbdtError::InvalidParam`] naming the first bad parameter.
    pub fn check(&self) -> Result<GbdtValidParams, GbdtError> {
        let bad = |name: &'static str, reason: &str| {
            Err(GbdtError::InvalidParam {
                name,
                reason: reason.to_string(),
            })
        };
        if self.n_trees == 0 {
            return bad("n_trees", "must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if !(1..=16).contains(&self.max_depth) {
            return bad("max_depth", "must be in 1..=16");
        }
        if self.min_samples_leaf == 0 {
            return bad("min_samples_leaf", "must be at least 1");
        }
        if !(self.min_hessian_leaf >= 0.0 && self.min_hessian_leaf.is_finite()) {
            return bad("min_hessian_leaf", "must be finite and >= 0");
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return bad("l2", "must be finite and >= 0");
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample", "must be in (0, 1]");
        }
        if !(self.colsample > 0.0 && self.colsample <= 1.0) {
            return bad("colsample", "must be in (0, 1]");
        }
        if !(2..=255).contains(&self.max_bins) {
            return bad("max_bins", "must be in 2..=255");
        }
        if self.early_stopping_rounds == Some(0) {
            return bad(
                "early_stopping_rounds",
                "must be at least 1 (None turns early stopping off)",
            );
        }
        if self.monotone.iter().any(|m| !(-1..=1).contains(m)) {
            return bad("monotone", "entries must be -1, 0 or +1");
        }
        Ok(GbdtValidParams(self.clone()))
    }

    /// Checks the parameters and fits (see [`GbdtValidParams::fit`]).
    ///
    /// # Errors
    /// Invalid parameters or data.
    pub fn fit(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
    ) -> Result<Gbdt, GbdtError> {
        self.check()?.fit(x, n_features, y, weights, &mut |_, _| {})
    }

    /// Checks the parameters and fits with a validation set (see
    /// [`GbdtValidParams::fit_with_validation`]).
    ///
    /// # Errors
    /// Invalid parameters or data.
    pub fn fit_with_validation(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
        validation: &Validation<'_>,
    ) -> Result<(Gbdt, ValidationReport), GbdtError> {
        self.check()?
            .fit_with_validation(x, n_features, y, weights, validation, &mut |_, _| {})
    }
}

/// Rows scored after every tree to stop boosting early: a row-major matrix
/// with the training matrix's columns, targets and optional non-negative
/// weights (rows of weight 0 do not count).
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// Row-major features, `y.len()` rows.
    pub x: &'a [f64],
    /// Targets (0/1 for the logistic loss).
    pub y: &'a [f64],
    /// Sample weights; `None`: all 1.
    pub weights: Option<&'a [f64]>,
}

/// What the validation set saw during a fit.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// Validation loss after each tree grown (weighted mean log-loss or
    /// squared error), in boosting order.
    pub losses: Vec<f64>,
    /// Trees kept: the 1-based iteration with the lowest loss when early
    /// stopping is on, else every tree grown.
    pub n_trees: usize,
    /// The loss of the kept model.
    pub loss: f64,
    /// Whether boosting stopped before `n_trees`.
    pub stopped_early: bool,
}

impl GbdtValidParams {
    /// The validated parameters.
    pub fn params(&self) -> &GbdtParams {
        &self.0
    }

    /// Fits on a row-major matrix `x` (`y.len()` rows × `n_features`), with
    /// optional non-negative sample weights. `on_tree(done, total)` is called
    /// after every tree (for progress bars).
    ///
    /// # Errors
    /// [`GbdtError::BadData`] when shapes disagree, targets are not finite,
    /// logistic targets are not 0/1, or weights are negative;
    /// [`GbdtError::InvalidParam`] when `monotone` does not have one entry
    /// per feature or early stopping is asked for without a validation set.
    pub fn fit(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
        on_tree: &mut dyn FnMut(usize, usize),
    ) -> Result<Gbdt, GbdtError> {
        if self.0.early_stopping_rounds.is_some() {
            return Err(GbdtError::InvalidParam {
                name: "early_stopping_rounds",
                reason: "needs a validation set (fit_with_validation)".into(),
            });
        }
        self.boost(x, n_features, y, weights, None, on_tree)
            .map(|(model, _)| model)
    }

    /// [`GbdtValidParams::fit`], scoring `validation` after every tree and,
    /// with [`GbdtParams::early_stopping_rounds`], stopping early and keeping
    /// the best iteration (module docs).
    ///
    /// # Errors
    /// As [`GbdtValidParams::fit`], plus [`GbdtError::BadData`] when the
    /// validation set is malformed or has no positive weight.
    pub fn fit_with_validation(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
        validation: &Validation<'_>,
        on_tree: &mut dyn FnMut(usize, usize),
    ) -> Result<(Gbdt, ValidationReport), GbdtError> {
        let v = validation;
        validate_data(self.0.objective, v.x, n_features, v.y, v.weights)
            .map_err(|e| GbdtError::BadData(format!("validation set: {e}")))?;
        if v.weights.is_some_and(|w| w.iter().all(|w| *w == 0.0)) {
            return Err(GbdtError::BadData(
                "validation set: all sample weights are zero".into(),
            ));
        }
        let (model, report) = self.boost(x, n_features, y, weights, Some(v), on_tree)?;
        Ok((model, report.expect("a validation set gives a report")))
    }

    fn boost(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
        validation: Option<&Validation<'_>>,
        on_tree: &mut dyn FnMut(usize, usize),
    ) -> Result<(Gbdt, Option<ValidationReport>), GbdtError> {
        let p = &self.0;
        let n_rows = y.len();
        validate_data(p.objective, x, n_features, y, weights)?;
        if !(p.monotone.is_empty() || p.monotone.len() == n_features) {
            return Err(GbdtError::InvalidParam {
                name: "monotone",
                reason: format!(
                    "{} entries for {n_features} features (give one per feature, or none)",
                    p.monotone.len()
                ),
            });
        }
        let binned = BinnedMatrix::new(x, n_features, n_rows, p.max_bins);
        let weight = |r: usize| weights.map_or(1.0, |w| w[r]);
        let total_w: f64 = (0..n_rows).map(weight).sum();
        if total_w <= 0.0 {
            return Err(GbdtError::BadData("all sample weights are zero".into()));
        }
        let base_score = match p.objective {
            Objective::SquaredError => (0..n_rows).map(|r| weight(r) * y[r]).sum::<f64>() / total_w,
            Objective::Logistic => {
                let pos = (0..n_rows).map(|r| weight(r) * y[r]).sum::<f64>() / total_w;
                let pos = pos.clamp(1e-6, 1.0 - 1e-6);
                (pos / (1.0 - pos)).ln()
            }
        };
        let mut raw = vec![base_score; n_rows];
        let mut grad = vec![0.0; n_rows];
        let mut hess = vec![0.0; n_rows];
        let mut rng = SplitMix64::new(p.seed);
        let mut trees = Vec::with_capacity(p.n_trees);
        let mut importance = vec![0.0; n_features];
        let n_cols = ((n_features as f64 * p.colsample).ceil() as usize).clamp(1, n_features);
        let mut all_features: Vec<usize> = (0..n_features).collect();
        let mut rows: Vec<u32> = Vec::with_capacity(n_rows);
        let constrained = p.monotone.iter().any(|&m| m != 0);
        let mut tracker = validation.map(|v| ValidationTracker::new(v, n_features, base_score));
        for tree_idx in 0..p.n_trees {
            for r in 0..n_rows {
                let w = weight(r);
                let (g, h) = match p.objective {
                    Objective::SquaredError => (raw[r] - y[r], 1.0),
                    Objective::Logistic => {
                        let prob = super::sigmoid(raw[r]);
                        (prob - y[r], (prob * (1.0 - prob)).max(1e-12))
                    }
                };
                grad[r] = g * w;
                hess[r] = h * w;
            }
            rows.clear();
            if p.subsample < 1.0 {
                rows.extend((0..n_rows as u32).filter(|_| rng.next_f64() < p.subsample));
                if rows.is_empty() {
                    rows.push(rng.below(n_rows) as u32);
                }
            } else {
                rows.extend(0..n_rows as u32);
            }
            rows.retain(|&r| weights.is_none_or(|w| w[r as usize] > 0.0));
            rng.shuffle(&mut all_features);
            let mut features: Vec<usize> = all_features[..n_cols].to_vec();
            features.sort_unstable();
            let mut grower = Grower {
                params: p,
                binned: &binned,
                grad: &grad,
                hess: &hess,
                features: &features,
                weights,
                constrained,
                nodes: Vec::new(),
                split_bins: Vec::new(),
                importance: &mut importance,
            };
            if !rows.is_empty() {
                grower.grow_root(&mut rows);
            } else {
                grower.nodes.push(leaf(0.0, 0.0));
                grower.split_bins.push(0);
            }
            let split_bins = std::mem::take(&mut grower.split_bins);
            let tree = Tree {
                nodes: std::mem::take(&mut grower.nodes),
            };
            for (r, value) in raw.iter_mut().enumerate() {
                *value += binned_predict(&tree.nodes, &split_bins, binned.row(r));
            }
            trees.push(tree);
            on_tree(tree_idx + 1, p.n_trees);
            if let Some(tracker) = tracker.as_mut() {
                let tree = trees.last().expect("just pushed");
                let stop =
                    tracker.add_tree(tree, p.objective, &importance, p.early_stopping_rounds);
                if stop {
                    break;
                }
            }
        }
        let report = tracker.map(|t| {
            let grown = trees.len();
            let report = t.finish(p.early_stopping_rounds.is_some(), grown, p.n_trees);
            if report.n_trees < grown {
                trees.truncate(report.n_trees);
                importance = t.best_importance.clone();
            }
            report
        });
        let model = Gbdt {
            objective: p.objective,
            base_score,
            n_features,
            trees,
            gain_importance: importance,
            flat: super::FlatCache::default(),
        };
        Ok((model, report))
    }
}

/// Validation predictions kept up to date tree by tree, and the best
/// iteration so far.
struct ValidationTracker<'a> {
    validation: &'a Validation<'a>,
    n_features: usize,
    raw: Vec<f64>,
    losses: Vec<f64>,
    best: usize,
    best_loss: f64,
    best_importance: Vec<f64>,
}

impl<'a> ValidationTracker<'a> {
    fn new(validation: &'a Validation<'a>, n_features: usize, base_score: f64) -> Self {
        Self {
            validation,
            n_features,
            raw: vec![base_score; validation.y.len()],
            losses: Vec::new(),
            best: 0,
            best_loss: f64::INFINITY,
            best_importance: Vec::new(),
        }
    }

    /// Adds `tree` to the validation predictions and records the loss;
    /// returns whether to stop.
    fn add_tree(
        &mut self,
        tree: &Tree,
        objective: Objective,
        importance: &[f64],
        patience: Option<usize>,
    ) -> bool {
        let v = self.validation;
        let (mut total, mut total_w) = (0.0, 0.0);
        for (r, raw) in self.raw.iter_mut().enumerate() {
            *raw += tree.predict_row(&v.x[r * self.n_features..(r + 1) * self.n_features]);
            let w = v.weights.map_or(1.0, |w| w[r]);
            if w > 0.0 {
                total += w * loss(objective, *raw, v.y[r]);
                total_w += w;
            }
        }
        let mean = total / total_w;
        self.losses.push(mean);
        if mean < self.best_loss {
            self.best_loss = mean;
            self.best = self.losses.len();
            if patience.is_some() {
                self.best_importance.clear();
                self.best_importance.extend_from_slice(importance);
            }
        }
        patience.is_some_and(|k| self.losses.len() - self.best >= k)
    }

    fn finish(&self, early_stopping: bool, grown: usize, n_trees: usize) -> ValidationReport {
        // A loss that is never finite (impossible with finite targets) keeps
        // every tree rather than none.
        let n_trees_kept = if early_stopping && self.best > 0 {
            self.best
        } else {
            grown
        };
        ValidationReport {
            loss: self.losses[n_trees_kept - 1],
            losses: self.losses.clone(),
            n_trees: n_trees_kept,
            stopped_early: grown < n_trees,
        }
    }
}

/// The loss of one row at raw score `raw`: log-loss `ln(1 + e^raw) − y·raw`
/// (computed stably) or squared error.
fn loss(objective: Objective, raw: f64, y: f64) -> f64 {
    match objective {
        Objective::SquaredError => (raw - y) * (raw - y),
        Objective::Logistic => raw.max(0.0) + (-raw.abs()).exp().ln_1p() - y * raw,
    }
}

fn validate_data(
    objective: Objective,
    x: &[f64],
    n_features: usize,
    y: &[f64],
    weights: Option<&[f64]>,
) -> Result<(), GbdtError> {
    let bad = |msg: String| Err(GbdtError::BadData(msg));
    if y.is_empty() || n_features == 0 {
        return bad("no rows or no features".into());
    }
    if x.len() != y.len() * n_features {
        return bad(format!(
            "matrix has {} values, expected {} rows x {} features",
            x.len(),
            y.len(),
            n_features
        ));
    }
    if let Some(pos) = y.iter().position(|v| !v.is_finite()) {
        return bad(format!("target of row {pos} is not finite"));
    }
    if objective == Objective::Logistic {
        if let Some(pos) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
            return bad(format!("logistic target of row {pos} is not 0 or 1"));
        }
    }
    if let Some(w) = weights {
        if w.len() != y.len() {
            return bad(format!("{} weights for {} rows", w.len(), y.len()));
        }
        if let Some(pos) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return bad(format!("weight of row {pos} is negative or not finite"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
