//! The published C-MAPSS protocol and grouped cross-validation.
//!
//! [`RulModel::fit`] learns conditions, sensor selection and a boosted RUL
//! regressor from training engines only (every cycle is a sample, target
//! `min(RUL, cap)`); [`evaluate_subset`] predicts at each test engine's last
//! cycle and scores against the given true RUL. [`tune`] picks
//! hyper-parameters by K-fold cross-validation grouped by engine, on training
//! engines only.

use std::time::Instant;

use serde::Serialize;

use super::conditions::ConditionNormalizer;
use super::features::WindowFeatures;
use super::{Engine, SubsetData};
use fieldpulse_features::FeatureError;
use thiserror::Error;

use crate::gbdt::{Gbdt, GbdtError, GbdtParams};
use crate::metrics::{phm08_score, rmse};
use crate::rng::SplitMix64;

/// Why the protocol could not run.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// Invalid booster parameters or data.
    #[error(transparent)]
    Booster(#[from] GbdtError),
    /// The feature code rejected its input.
    #[error("feature computation failed: {0}")]
    Features(#[from] FeatureError),
}

/// The piece-wise linear target cap of Heimes (2008).
pub const RUL_CAP: f64 = 125.0;

/// A fitted C-MAPSS RUL model.
#[derive(Debug, Clone)]
pub struct RulModel {
    /// Operating conditions and sensor statistics.
    pub normalizer: ConditionNormalizer,
    /// Sensors and windows.
    pub spec: WindowFeatures,
    /// The boosted regressor.
    pub booster: Gbdt,
}

impl RulModel {
    /// Fits on run-to-failure engines.
    ///
    /// # Errors
    /// Invalid booster parameters.
    pub fn fit(train: &[Engine], params: &GbdtParams) -> Result<Self, ProtocolError> {
        let normalizer = ConditionNormalizer::fit(train);
        let spec = WindowFeatures::fit(train, &normalizer)?;
        let (x, y) = training_matrix(train, &normalizer, &spec)?;
        let booster = params.fit(&x, spec.n_features(), &y, None)?;
        Ok(Self {
            normalizer,
            spec,
            booster,
        })
    }

    /// RUL predicted at the last cycle of `engine` (clamped to `[0, cap]`).
    ///
    /// # Errors
    /// The feature code rejected the engine (a bug, reported).
    pub fn predict_last(&self, engine: &Engine) -> Result<f64, ProtocolError> {
        let nf = self.spec.n_features();
        let x = self.spec.engine_features(engine, &self.normalizer)?;
        if x.len() < nf {
            return Ok(RUL_CAP);
        }
        let last = &x[x.len() - nf..];
        Ok(self.booster.predict_row(last).clamp(0.0, RUL_CAP))
    }
}

/// Features and capped RUL targets for every cycle of every engine.
fn training_matrix(
    engines: &[Engine],
    norm: &ConditionNormalizer,
    spec: &WindowFeatures,
) -> Result<(Vec<f64>, Vec<f64>), FeatureError> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for engine in engines {
        x.extend(spec.engine_features(engine, norm)?);
        let life = engine.len();
        y.extend((1..=life).map(|t| ((life - t) as f64).min(RUL_CAP)));
    }
    Ok((x, y))
}

/// Outcome of the protocol on one subset.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetResult {
    /// `FD001`..`FD004`.
    pub subset: String,
    /// RMSE at the last test cycle.
    pub rmse: f64,
    /// PHM08 score (sum over test engines).
    pub score: f64,
    /// RMSE against the true RUL capped at 125 (what many papers report;
    /// not the official number, shown for comparability).
    pub rmse_capped_truth: f64,
    /// Test engines scored.
    pub n_test_engines: usize,
    /// Training engines.
    pub n_train_engines: usize,
    /// Training rows (cycles).
    pub n_train_rows: usize,
    /// Operating conditions found in training.
    pub n_conditions: usize,
    /// Sensors kept.
    pub sensors: Vec<usize>,
    /// Features per row.
    pub n_features: usize,
    /// Wall-clock seconds to fit (one thread).
    pub train_seconds: f64,
    /// Wall-clock seconds to featurise and predict the test engines.
    pub predict_seconds: f64,
    /// Predicted RUL per test engine.
    pub predicted: Vec<f64>,
    /// True RUL per test engine.
    pub truth: Vec<f64>,
}

/// Runs the published protocol on one subset with the given parameters.
///
/// # Errors
/// Invalid booster parameters.
pub fn evaluate_subset(
    data: &SubsetData,
    params: &GbdtParams,
) -> Result<SubsetResult, ProtocolError> {
    let started = Instant::now();
    let model = RulModel::fit(&data.train, params)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let predicted = data
        .test
        .iter()
        .map(|e| model.predict_last(e))
        .collect::<Result<Vec<f64>, _>>()?;
    let predict_seconds = started.elapsed().as_secs_f64();
    Ok(SubsetResult {
        subset: data.subset.name().to_string(),
        rmse: rmse(&predicted, &data.test_rul),
        score: phm08_score(&predicted, &data.test_rul),
        rmse_capped_truth: rmse(
            &predicted,
            &data
                .test_rul
                .iter()
                .map(|t| t.min(RUL_CAP))
                .collect::<Vec<_>>(),
        ),
        n_test_engines: data.test.len(),
        n_train_engines: data.train.len(),
        n_train_rows: data.train.iter().map(Engine::len).sum(),
        n_conditions: model.normalizer.n_conditions(),
        sensors: model.spec.sensors.iter().map(|j| j + 1).collect(),
        n_features: model.spec.n_features(),
        train_seconds,
        predict_seconds,
        predicted,
        truth: data.test_rul.clone(),
    })
}

/// Cross-validated quality of one parameter set.
#[derive(Debug, Clone, Serialize)]
pub struct CvResult {
    /// Max depth tried.
    pub max_depth: usize,
    /// Min samples per leaf tried.
    pub min_samples_leaf: usize,
    /// Number of trees (staged: every checkpoint is a candidate).
    pub n_trees: usize,
    /// RMSE over all cycles of held-out engines against the capped target.
    pub rmse: f64,
}

/// [`tune`] over the grid `fieldpulse eval cmapss --tune` searches: depth 4
/// or 6, leaf size 20 or 80, 150 / 300 / 500 trees, 5 folds, seed 7.
///
/// # Errors
/// Invalid booster parameters.
pub fn tune_default(train: &[Engine], base: &GbdtParams) -> Result<Vec<CvResult>, ProtocolError> {
    tune(train, base, &[4, 6], &[20, 80], &[150, 300, 500], 5, 7)
}

/// Grouped K-fold cross-validation over training engines for each
/// (depth, leaf size) in the grid; every `n_trees` checkpoint is scored from
/// the same fits by summing trees in order. Returns all results, best first.
///
/// # Errors
/// Invalid booster parameters.
pub fn tune(
    train: &[Engine],
    base: &GbdtParams,
    depths: &[usize],
    leaf_sizes: &[usize],
    tree_checkpoints: &[usize],
    n_folds: usize,
    seed: u64,
) -> Result<Vec<CvResult>, ProtocolError> {
    let n_folds = n_folds.clamp(2, train.len().max(2));
    let mut order: Vec<usize> = (0..train.len()).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let max_trees = tree_checkpoints
        .iter()
        .copied()
        .max()
        .unwrap_or(base.n_trees);
    // Per fold: the held-out matrix, fitted once per fold.
    let mut folds = Vec::with_capacity(n_folds);
    for fold in 0..n_folds {
        let mut kept = Vec::new();
        let mut held = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            if pos % n_folds == fold {
                held.push(train[i].clone());
            } else {
                kept.push(train[i].clone());
            }
        }
        let norm = ConditionNormalizer::fit(&kept);
        let spec = WindowFeatures::fit(&kept, &norm)?;
        let (x, y) = training_matrix(&kept, &norm, &spec)?;
        let (xv, yv) = training_matrix(&held, &norm, &spec)?;
        folds.push((spec.n_features(), x, y, xv, yv));
    }
    let mut results = Vec::new();
    for &max_depth in depths {
        for &min_samples_leaf in leaf_sizes {
            let params = GbdtParams {
                max_depth,
                min_samples_leaf,
                n_trees: max_trees,
                ..base.clone()
            };
            let mut sse = vec![0.0; tree_checkpoints.len()];
            let mut n = 0usize;
            for (nf, x, y, xv, yv) in &folds {
                let model = params.fit(x, *nf, y, None)?;
                n += yv.len();
                for (r, row) in xv.chunks_exact(*nf).enumerate() {
                    let mut raw = model.base_score;
                    let mut next = 0;
                    let mut sorted: Vec<(usize, usize)> = tree_checkpoints
                        .iter()
                        .copied()
                        .enumerate()
                        .map(|(i, c)| (c, i))
                        .collect();
                    sorted.sort_unstable();
                    for (t, tree) in model.trees.iter().enumerate() {
                        raw += tree.predict_row(row);
                        while next < sorted.len() && sorted[next].0 == t + 1 {
                            let pred = raw.clamp(0.0, RUL_CAP);
                            sse[sorted[next].1] += (pred - yv[r]).powi(2);
                            next += 1;
                        }
                    }
                }
            }
            for (i, &n_trees) in tree_checkpoints.iter().enumerate() {
                results.push(CvResult {
                    max_depth,
                    min_samples_leaf,
                    n_trees,
                    rmse: (sse[i] / n.max(1) as f64).sqrt(),
                });
            }
        }
    }
    results.sort_by(|a, b| a.rmse.total_cmp(&b.rmse));
    Ok(results)
}
