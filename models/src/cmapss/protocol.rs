//! The published C-MAPSS protocol, scored two ways.
//!
//! [`RulModel::fit`] learns conditions, sensor selection and a boosted RUL
//! regressor from training engines only (every cycle is a sample, target
//! `min(RUL, cap)`, or the plain RUL when the grid point has no cap).
//! [`evaluate_subset`] predicts at each test engine's last cycle and scores
//! the predictions under both protocols the literature uses, each tagged
//! ([`TruthProtocol`]): the true RUL **as given** in `RUL_FD00x` (NASA's
//! protocol) and the true RUL **capped** at the model's training cap (what
//! many papers report). [`run`] is the whole benchmark: choose the grid point
//! by [`super::cv::cross_validate`] on the training engines (it is never
//! handed the test engines or their RUL), then fit on all training engines
//! and score the test set once.

use std::time::Instant;

use fieldpulse_features::FeatureError;
use serde::Serialize;
use thiserror::Error;

use super::conditions::ConditionNormalizer;
use super::cv::{cross_validate, CvConfig, CvReport, Grid, GridPoint};
use super::features::WindowFeatures;
use super::{Engine, SubsetData};
use crate::gbdt::{Gbdt, GbdtError, GbdtParams};
use crate::metrics::{phm08_score, rmse};

/// Why the protocol could not run.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// Invalid booster parameters or data.
    #[error(transparent)]
    Booster(#[from] GbdtError),
    /// The feature code rejected its input.
    #[error("feature computation failed: {0}")]
    Features(#[from] FeatureError),
    /// The grid or the cross-validation settings cannot be searched.
    #[error("invalid cross-validation setup: {0}")]
    InvalidSetup(String),
}

/// The piece-wise linear target cap of Heimes (2008), the one most papers
/// use; ours is chosen by cross-validation among several (see
/// [`super::cv::Grid`]).
pub const HEIMES_RUL_CAP: f64 = 125.0;

/// A fitted C-MAPSS RUL model.
#[derive(Debug, Clone)]
pub struct RulModel {
    /// Operating conditions and sensor statistics.
    pub normalizer: ConditionNormalizer,
    /// Sensors and windows.
    pub spec: WindowFeatures,
    /// The boosted regressor.
    pub booster: Gbdt,
    /// Training target cap in cycles (`None`: the plain RUL).
    pub cap: Option<f64>,
}

impl RulModel {
    /// Fits on run-to-failure engines with target `min(RUL, cap)`.
    ///
    /// # Errors
    /// Invalid booster parameters.
    pub fn fit(
        train: &[Engine],
        params: &GbdtParams,
        cap: Option<f64>,
    ) -> Result<Self, ProtocolError> {
        let normalizer = ConditionNormalizer::fit(train);
        let spec = WindowFeatures::fit(train, &normalizer)?;
        let (x, rul) = training_matrix(train, &normalizer, &spec)?;
        let y = capped(&rul, cap);
        let booster = params.fit(&x, spec.n_features(), &y, None)?;
        Ok(Self {
            normalizer,
            spec,
            booster,
            cap,
        })
    }

    /// RUL predicted at the last cycle of `engine`, clamped to `[0, cap]`.
    ///
    /// # Errors
    /// The feature code rejected the engine (a bug, reported).
    pub fn predict_last(&self, engine: &Engine) -> Result<f64, ProtocolError> {
        let nf = self.spec.n_features();
        let x = self.spec.engine_features(engine, &self.normalizer)?;
        if x.len() < nf {
            // An engine with no cycle: nothing is known beyond the mean target.
            return Ok(clamp_rul(self.booster.base_score, self.cap));
        }
        let last = &x[x.len() - nf..];
        Ok(clamp_rul(self.booster.predict_row(last), self.cap))
    }
}

/// A raw prediction clamped to `[0, cap]` (`[0, ∞)` without a cap).
pub fn clamp_rul(raw: f64, cap: Option<f64>) -> f64 {
    raw.max(0.0).min(cap.unwrap_or(f64::INFINITY))
}

/// `min(rul, cap)` element-wise; the values themselves without a cap.
pub fn capped(rul: &[f64], cap: Option<f64>) -> Vec<f64> {
    match cap {
        Some(c) => rul.iter().map(|r| r.min(c)).collect(),
        None => rul.to_vec(),
    }
}

/// Features and the uncapped RUL for every cycle of every engine.
pub(crate) fn training_matrix(
    engines: &[Engine],
    norm: &ConditionNormalizer,
    spec: &WindowFeatures,
) -> Result<(Vec<f64>, Vec<f64>), FeatureError> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for engine in engines {
        x.extend(spec.engine_features(engine, norm)?);
        let life = engine.len();
        y.extend((1..=life).map(|t| (life - t) as f64));
    }
    Ok((x, y))
}

/// Which test truth a score was computed against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum TruthProtocol {
    /// The true RUL as given in `RUL_FD00x` (NASA's protocol).
    AsGiven,
    /// The true RUL capped at the model's training cap, `min(RUL, cap)`
    /// (what many papers report). `cap: null` when the chosen model has no
    /// cap, and then it equals [`TruthProtocol::AsGiven`].
    Capped {
        /// The cap applied to the truth, in cycles.
        cap: Option<f64>,
    },
}

/// Test-set scores under one protocol.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolScore {
    /// The truth the scores are against (serialised as `protocol` and, for
    /// `capped`, `cap`).
    #[serde(flatten)]
    pub protocol: TruthProtocol,
    /// RMSE over test engines at their last cycle.
    pub rmse: f64,
    /// PHM08 score (sum over test engines).
    pub score: f64,
    /// Test engines scored.
    pub n_test_engines: usize,
}

/// One test engine's prediction and both truths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnginePrediction {
    /// Unit number in the test file.
    pub unit: u32,
    /// Cycles observed (the test trajectory's length).
    pub cycles_seen: usize,
    /// Predicted RUL at the last observed cycle.
    pub predicted_rul: f64,
    /// True RUL as given in `RUL_FD00x`.
    pub true_rul: f64,
    /// True RUL capped at the training cap (equal to `true_rul` without one).
    pub true_rul_capped: f64,
}

/// Outcome of the protocol on one subset with one grid point.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetResult {
    /// `FD001`..`FD004`.
    pub subset: String,
    /// The hyper-parameters used (from cross-validation in [`run`]).
    pub chosen: GridPoint,
    /// RMSE against the truth as given (NASA's protocol; same as
    /// `protocols[0]`).
    pub rmse: f64,
    /// PHM08 score against the truth as given (same as `protocols[0]`).
    pub score: f64,
    /// Both protocols, tagged: `as_given` first, then `capped`.
    pub protocols: Vec<ProtocolScore>,
    /// Test engines scored.
    pub n_test_engines: usize,
    /// Training engines.
    pub n_train_engines: usize,
    /// Training rows (cycles).
    pub n_train_rows: usize,
    /// Operating conditions found in training.
    pub n_conditions: usize,
    /// Sensors kept (1-based, as in the NASA readme).
    pub sensors: Vec<usize>,
    /// Features per row.
    pub n_features: usize,
    /// Wall-clock seconds to fit the final model (one thread).
    pub train_seconds: f64,
    /// Wall-clock seconds to featurise and predict the test engines.
    pub predict_seconds: f64,
    /// Per test engine, in file order.
    pub engines: Vec<EnginePrediction>,
}

impl SubsetResult {
    /// The score under `as_given`.
    pub fn as_given(&self) -> &ProtocolScore {
        &self.protocols[0]
    }

    /// The score under `capped`.
    pub fn capped(&self) -> &ProtocolScore {
        &self.protocols[1]
    }
}

/// Fits on all training engines with `point` and scores the test engines
/// under both protocols.
///
/// # Errors
/// Invalid booster parameters.
pub fn evaluate_subset(
    data: &SubsetData,
    point: &GridPoint,
    base: &GbdtParams,
) -> Result<SubsetResult, ProtocolError> {
    let started = Instant::now();
    let model = RulModel::fit(&data.train, &point.params(base), point.cap)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let predicted = data
        .test
        .iter()
        .map(|e| model.predict_last(e))
        .collect::<Result<Vec<f64>, _>>()?;
    let predict_seconds = started.elapsed().as_secs_f64();
    let truth_capped = capped(&data.test_rul, point.cap);
    let protocols = vec![
        ProtocolScore {
            protocol: TruthProtocol::AsGiven,
            rmse: rmse(&predicted, &data.test_rul),
            score: phm08_score(&predicted, &data.test_rul),
            n_test_engines: data.test.len(),
        },
        ProtocolScore {
            protocol: TruthProtocol::Capped { cap: point.cap },
            rmse: rmse(&predicted, &truth_capped),
            score: phm08_score(&predicted, &truth_capped),
            n_test_engines: data.test.len(),
        },
    ];
    let engines = data
        .test
        .iter()
        .zip(&predicted)
        .zip(data.test_rul.iter().zip(&truth_capped))
        .map(
            |((engine, &predicted_rul), (&true_rul, &true_rul_capped))| EnginePrediction {
                unit: engine.unit,
                cycles_seen: engine.len(),
                predicted_rul,
                true_rul,
                true_rul_capped,
            },
        )
        .collect();
    Ok(SubsetResult {
        subset: data.subset.name().to_string(),
        chosen: point.clone(),
        rmse: protocols[0].rmse,
        score: protocols[0].score,
        protocols,
        n_test_engines: data.test.len(),
        n_train_engines: data.train.len(),
        n_train_rows: data.train.iter().map(Engine::len).sum(),
        n_conditions: model.normalizer.n_conditions(),
        sensors: model.spec.sensors.iter().map(|j| j + 1).collect(),
        n_features: model.spec.n_features(),
        train_seconds,
        predict_seconds,
        engines,
    })
}

/// The benchmark on one subset: the cross-validation that chose the point,
/// and the test result with it.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetReport {
    /// Every grid point's CV scores and the chosen one.
    pub cv: CvReport,
    /// The test set scored once with the chosen point.
    pub result: SubsetResult,
}

/// Chooses a grid point by cross-validation on `data.train` alone, then fits
/// on all training engines and scores the test engines once.
///
/// The test engines and their RUL reach only [`evaluate_subset`], after the
/// choice is made: [`cross_validate`] takes the training engines and nothing
/// else.
///
/// # Errors
/// An empty grid, too few engines for the folds, or invalid booster
/// parameters.
pub fn run(
    data: &SubsetData,
    grid: &Grid,
    config: &CvConfig,
) -> Result<SubsetReport, ProtocolError> {
    let cv = cross_validate(&data.train, grid, config)?;
    let result = evaluate_subset(data, &cv.chosen().point, &grid.base)?;
    Ok(SubsetReport { cv, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capping_the_truth_never_moves_it_away_from_a_prediction_below_the_cap() {
        // |p − min(t, c)| ≤ |p − t| whenever p ≤ c: the capped protocol can
        // only lower the error of a model whose outputs stop at the cap.
        let cap = Some(125.0);
        let truth = [7.0, 60.0, 124.0, 125.0, 126.0, 190.0];
        let preds = [10.0, 80.0, 125.0, 125.0, 100.0, 0.0];
        let capped_truth = capped(&truth, cap);
        assert_eq!(capped_truth, vec![7.0, 60.0, 124.0, 125.0, 125.0, 125.0]);
        for (p, (t, ct)) in preds.iter().zip(truth.iter().zip(&capped_truth)) {
            assert!((p - ct).abs() <= (p - t).abs());
        }
        assert!(rmse(&preds, &capped_truth) < rmse(&preds, &truth));
        assert_eq!(capped(&truth, None), truth.to_vec());
    }

    #[test]
    fn predictions_are_clamped_to_zero_and_the_cap() {
        assert_eq!(clamp_rul(-3.0, Some(125.0)), 0.0);
        assert_eq!(clamp_rul(140.0, Some(125.0)), 125.0);
        assert_eq!(clamp_rul(140.0, None), 140.0);
        assert_eq!(clamp_rul(60.5, Some(125.0)), 60.5);
    }
}

/// The whole benchmark on real data.
#[cfg(test)]
mod real_data_tests {
    use super::*;
    use crate::cmapss::{load_subset, real_data_dir, Subset};

    fn small_cv() -> CvConfig {
        CvConfig {
            n_folds: 3,
            cuts_per_engine: 2,
            ..CvConfig::default()
        }
    }

    /// Reads the repository's `data/cmapss`. The choice is made from the
    /// training engines alone: scrambling the test engines and their RUL
    /// changes the test scores but not one number of the cross-validation.
    /// Running twice with the same seed gives the same grid scores.
    #[test]
    fn the_choice_ignores_the_test_files_and_both_protocols_are_reported() {
        let data = load_subset(&real_data_dir(), Subset::Fd001).expect("load");
        let grid = Grid::quick();
        let report = run(&data, &grid, &small_cv()).expect("run");

        let mut scrambled = data.clone();
        scrambled.test_rul.reverse();
        scrambled
            .test
            .iter_mut()
            .for_each(|e| *e = e.truncated(e.len() / 2 + 1));
        let other = run(&scrambled, &grid, &small_cv()).expect("run");
        assert_eq!(other.cv.chosen_index, report.cv.chosen_index);
        let rmses = |r: &SubsetReport| -> Vec<Vec<f64>> {
            r.cv.points.iter().map(|p| p.fold_rmse.clone()).collect()
        };
        assert_eq!(rmses(&other), rmses(&report), "same seed, same CV");
        assert_ne!(
            other.result.rmse, report.result.rmse,
            "the test truth is used"
        );

        let cv = &report.cv;
        assert_eq!(cv.points.len(), grid.points().len());
        assert_eq!(cv.n_cuts, 100 * 2);
        assert!(cv.points.iter().all(|p| p.fold_rmse.len() == 3));
        let best = cv.chosen().rmse;
        assert!(cv.points.iter().all(|p| p.rmse >= best));
        assert!(
            cv.points.iter().map(|p| p.rmse).any(|r| r != best),
            "grid points must be distinguishable"
        );

        let res = &report.result;
        let cap = res.chosen.cap;
        assert_eq!(res.chosen, cv.chosen().point);
        assert_eq!(res.engines.len(), 100);
        assert_eq!(res.engines.len(), res.n_test_engines);
        for (i, (engine, test)) in res.engines.iter().zip(&data.test).enumerate() {
            assert_eq!(engine.unit, test.unit);
            assert_eq!(engine.cycles_seen, test.len());
            assert_eq!(engine.true_rul, data.test_rul[i]);
            assert_eq!(
                engine.true_rul_capped,
                engine.true_rul.min(cap.unwrap_or(f64::INFINITY))
            );
            assert!(engine.predicted_rul >= 0.0);
            assert!(engine.predicted_rul <= cap.unwrap_or(f64::INFINITY));
        }
        assert_eq!(res.as_given().protocol, TruthProtocol::AsGiven);
        assert_eq!(res.capped().protocol, TruthProtocol::Capped { cap });
        assert_eq!(res.rmse, res.as_given().rmse);
        // Predictions never exceed the cap, so capping the truth can only help.
        assert!(res.capped().rmse <= res.as_given().rmse);
        assert!(res.rmse < 20.0, "FD001 RMSE {}", res.rmse);

        let json = serde_json::to_value(res).expect("json");
        assert_eq!(json["protocols"][0]["protocol"], "as_given");
        assert_eq!(json["protocols"][1]["protocol"], "capped");
        assert!(json["protocols"][1].get("cap").is_some(), "{json}");
        assert_eq!(json["engines"].as_array().map(Vec::len), Some(100));
        assert!(json["engines"][0]["true_rul_capped"].is_number());
    }
}
