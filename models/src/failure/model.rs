//! The failure/RUL model, its artifact directory and online scoring.
//!
//! # Artifact layout (a directory)
//! - `model.json`: [`FailureModel`]: format version, the feature schema
//!   (sensors, streaming-feature parameters, every column name in order,
//!   products, failure modes), one calibrated classifier per (mode, horizon)
//!   with its alarm threshold, and the RUL regressor.
//! - `model_card.json`: human/audit metadata (written by training).
//! - `report.html`: plots (written by training).
//!
//! Invariant checked at load: rebuilding the streaming spec from the stored
//! sensors and parameters with *this* build's `fieldpulse-features` yields
//! exactly the stored stream column names, the history columns match, and
//! every booster expects the schema's column count. Anything else is a
//! [`ArtifactError::Schema`]: a model trained on other features must never
//! score silently.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use fieldpulse_features::{
    FeatureParams, FeatureSpec, FleetFeatures, ParamGuard, RowScratch, StateError,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::labels::{AssetHistory, FleetHistory, DAY_MS};
use crate::calibration::Isotonic;
use crate::gbdt::Gbdt;

/// Newest format version of `model.json` this build reads and writes:
/// boosters whose splits may send missing values right
/// ([`crate::gbdt::Node::missing_right`]).
pub const ARTIFACT_VERSION: u32 = 2;
/// The format before learned missing-value directions (every `NaN` goes
/// left). Training writes it whenever no split sends `NaN` right, so such
/// artifacts stay loadable, and score alike, in builds that predate
/// version 2; those builds refuse a version 2 artifact rather than send its
/// `NaN`s the wrong way.
pub const ARTIFACT_VERSION_NAN_LEFT: u32 = 1;
/// Mode name of the "any failure" classifiers.
pub const ANY_MODE: &str = "any";
/// File holding the model inside an artifact directory.
pub const MODEL_FILE: &str = "model.json";

/// Which features a model reads, in column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// Telemetry sensors, in the order the streaming state takes them.
    pub sensors: Vec<String>,
    /// Streaming EWMA half-lives (readings).
    pub half_lives: Vec<f64>,
    /// Index of the half-life used for the rolling slope.
    pub trend_horizon: usize,
    /// Streaming feature names, as `fieldpulse-features` names them.
    pub stream_columns: Vec<String>,
    /// History feature names.
    pub history_columns: Vec<String>,
    /// Known products (the `hist.product` feature is an index into this).
    pub products: Vec<String>,
    /// Known failure modes.
    pub modes: Vec<String>,
}

/// A calibrated "failure within horizon" classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    /// Failure mode, or [`ANY_MODE`].
    pub mode: String,
    /// Horizon in days.
    pub horizon_days: f64,
    /// The boosted classifier (raw probability).
    pub booster: Gbdt,
    /// Raw → calibrated probability.
    pub calibration: Isotonic,
    /// Alarm when the calibrated probability is at least this.
    pub threshold: f64,
}

/// A trained failure/RUL model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureModel {
    /// Format version: [`ARTIFACT_VERSION_NAN_LEFT`] or [`ARTIFACT_VERSION`]
    /// ([`FailureModel::format_version`]).
    pub version: u32,
    /// Model version label (e.g. `fp-failure-20260301-ab12cd34`).
    pub model_version: String,
    /// The features it reads.
    pub schema: FeatureSchema,
    /// One per (mode, horizon).
    pub classifiers: Vec<Classifier>,
    /// RUL regressor (days, capped at `rul_cap_days`).
    pub rul: Gbdt,
    /// Cap of the RUL target, days.
    pub rul_cap_days: f64,
}

/// Model output for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Calibrated probability per classifier (same order as the model's).
    pub probabilities: Vec<f64>,
    /// Whether each classifier alarms.
    pub alarms: Vec<bool>,
    /// Predicted remaining useful life, days.
    pub rul_days: f64,
}

/// Why an artifact could not be loaded, saved or used.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `model.json` is not valid.
    #[error("{path}: invalid model file: {source}")]
    Json {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Wrong format version.
    #[error("model format version {found}, this build reads {expected}")]
    Version {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// The feature schema does not match this build or the input.
    #[error("feature schema mismatch: {0}")]
    Schema(String),
    /// Asset state bytes were refused (another feature spec, shape or
    /// version, truncated or corrupt); the asset's state was left unchanged.
    #[error("asset {asset}: state refused: {source}")]
    State {
        /// The asset named in the restore.
        asset: String,
        /// Why.
        source: StateError,
    },
}

/// Names of the history features for the given modes.
pub fn history_columns(modes: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "hist.days_since_pm",
        "hist.days_since_failure",
        "hist.failures_90d",
        "hist.age_days",
        "hist.product",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(modes.iter().map(|m| format!("hist.days_since_failure_{m}")));
    names
}

impl FeatureSchema {
    /// Builds a schema for the given sensors, streaming parameters, products
    /// and modes.
    ///
    /// # Errors
    /// [`ArtifactError::Schema`] when the feature code rejects them.
    pub fn new(
        sensors: Vec<String>,
        half_lives: Vec<f64>,
        trend_horizon: usize,
        products: Vec<String>,
        modes: Vec<String>,
    ) -> Result<Self, ArtifactError> {
        let mut schema = Self {
            sensors,
            half_lives,
            trend_horizon,
            stream_columns: Vec::new(),
            history_columns: history_columns(&modes),
            products,
            modes,
        };
        schema.stream_columns = schema.build_stream_spec()?.names().to_vec();
        Ok(schema)
    }

    fn build_stream_spec(&self) -> Result<FeatureSpec, ArtifactError> {
        let params = FeatureParams::default()
            .half_lives(self.half_lives.clone())
            .trend_horizon(self.trend_horizon)
            .check()
            .map_err(|e| ArtifactError::Schema(e.to_string()))?;
        FeatureSpec::new(params, self.sensors.clone())
            .map_err(|e| ArtifactError::Schema(e.to_string()))
    }

    /// The streaming spec, verified against the stored column names.
    ///
    /// # Errors
    /// [`ArtifactError::Schema`] when this build names features differently.
    pub fn stream_spec(&self) -> Result<FeatureSpec, ArtifactError> {
        let spec = self.build_stream_spec()?;
        if spec.names() != self.stream_columns.as_slice() {
            let first = spec
                .names()
                .iter()
                .zip(&self.stream_columns)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("`{b}` in the artifact, `{a}` in this build"))
                .unwrap_or_else(|| {
                    format!(
                        "{} stream columns in the artifact, {} in this build",
                        self.stream_columns.len(),
                        spec.names().len()
                    )
                });
            return Err(ArtifactError::Schema(format!(
                "stream features differ: {first}"
            )));
        }
        if history_columns(&self.modes) != self.history_columns {
            return Err(ArtifactError::Schema(
                "history feature columns differ".into(),
            ));
        }
        Ok(spec)
    }

    /// Every column name, stream then history.
    pub fn names(&self) -> Vec<String> {
        self.stream_columns
            .iter()
            .chain(&self.history_columns)
            .cloned()
            .collect()
    }

    /// Number of columns.
    pub fn n_features(&self) -> usize {
        self.stream_columns.len() + self.history_columns.len()
    }

    /// Maps input sensor names onto the schema's sensor order.
    ///
    /// # Errors
    /// [`ArtifactError::Schema`] naming the sensors the input lacks.
    pub fn sensor_positions(&self, input: &[String]) -> Result<Vec<usize>, ArtifactError> {
        let missing: Vec<&str> = self
            .sensors
            .iter()
            .filter(|s| !input.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ArtifactError::Schema(format!(
                "input lacks sensor(s) {} the model was trained on",
                missing.join(", ")
            )));
        }
        Ok(self
            .sensors
            .iter()
            .filter_map(|s| input.iter().position(|i| i == s))
            .collect())
    }

    /// Writes the history features of an asset at `t_ms` into `out`
    /// (`history_columns.len()` long). Only events started at or before
    /// `t_ms` are used; unknown values are `NaN`.
    pub fn history_features(&self, hist: Option<&AssetHistory>, t_ms: i64, out: &mut [f64]) {
        out.fill(f64::NAN);
        let Some(hist) = hist else {
            return;
        };
        let days = |ms: i64| (t_ms - ms) as f64 / DAY_MS as f64;
        // No look-ahead: only events that started strictly before `t` count,
        // an end time only once it has passed (a visit still running at `t`
        // reads 0 days), and a failure's mode only once the Work Order that
        // carried its code had started (`Event::mode_at`).
        let past = |e: &&super::labels::Event| e.start_ms < t_ms;
        if let Some(pm) = hist.preventive.iter().rev().find(past) {
            out[0] = days(pm.end_ms.min(t_ms));
        }
        if let Some(f) = hist.failures.iter().rev().find(past) {
            out[1] = days(f.start_ms);
        }
        out[2] = hist
            .failures
            .iter()
            .filter(|f| f.start_ms < t_ms && f.start_ms > t_ms - 90 * DAY_MS)
            .count() as f64;
        if let Some(install) = hist.install_ms {
            out[3] = days(install);
        }
        if let Some(product) = &hist.product {
            if let Some(idx) = self.products.iter().position(|p| p == product) {
                out[4] = idx as f64;
            }
        }
        for (k, mode) in self.modes.iter().enumerate() {
            let last = hist
                .failures
                .iter()
                .rev()
                .filter(past)
                .find(|f| f.mode_at(t_ms) == Some(mode.as_str()));
            if let Some(f) = last {
                out[5 + k] = days(f.start_ms);
            }
        }
    }
}

impl FailureModel {
    /// Checks the schema against this build and every booster's width.
    ///
    /// # Errors
    /// [`ArtifactError::Version`] or [`ArtifactError::Schema`].
    pub fn validate(&self) -> Result<FeatureSpec, ArtifactError> {
        if !(ARTIFACT_VERSION_NAN_LEFT..=ARTIFACT_VERSION).contains(&self.version) {
            return Err(ArtifactError::Version {
                found: self.version,
                expected: ARTIFACT_VERSION,
            });
        }
        if self.version < self.format_version() {
            return Err(ArtifactError::Schema(format!(
                "format version {} cannot hold splits that send missing values right \
                 (version {ARTIFACT_VERSION} can)",
                self.version
            )));
        }
        let spec = self.schema.stream_spec()?;
        let n = self.schema.n_features();
        for c in &self.classifiers {
            if c.booster.n_features != n {
                return Err(ArtifactError::Schema(format!(
                    "classifier {}/{}d reads {} features, schema has {n}",
                    c.mode, c.horizon_days, c.booster.n_features
                )));
            }
        }
        if self.rul.n_features != n {
            return Err(ArtifactError::Schema(format!(
                "RUL model reads {} features, schema has {n}",
                self.rul.n_features
            )));
        }
        Ok(spec)
    }

    /// Writes `model.json` into `dir` (created if needed).
    ///
    /// # Errors
    /// [`ArtifactError::Io`].
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let io = |source| ArtifactError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(MODEL_FILE);
        let text = serde_json::to_string(self).map_err(|source| ArtifactError::Json {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| ArtifactError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Loads and validates `dir/model.json`.
    ///
    /// # Errors
    /// Missing or invalid file, wrong version or feature schema.
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(MODEL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ArtifactError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let model: FailureModel =
            serde_json::from_str(&text).map_err(|source| ArtifactError::Json {
                path: path.display().to_string(),
                source,
            })?;
        model.validate()?;
        Ok(model)
    }

    /// The oldest format version that holds this model: [`ARTIFACT_VERSION`]
    /// if any split sends missing values right, else
    /// [`ARTIFACT_VERSION_NAN_LEFT`].
    pub fn format_version(&self) -> u32 {
        let nan_right = |g: &Gbdt| {
            g.trees
                .iter()
                .any(|t| t.nodes.iter().any(|n| n.missing_right))
        };
        if self.classifiers.iter().any(|c| nan_right(&c.booster)) || nan_right(&self.rul) {
            ARTIFACT_VERSION
        } else {
            ARTIFACT_VERSION_NAN_LEFT
        }
    }

    /// Whether any tree splits on a Work Order history feature (`hist.*`):
    /// such a model scores differently without the history, so scoring
    /// without one must be explicit.
    pub fn uses_history(&self) -> bool {
        let first_hist = self.schema.stream_columns.len() as u32;
        let reads = |g: &Gbdt| {
            g.trees.iter().any(|t| {
                t.nodes
                    .iter()
                    .any(|n| n.feature != crate::gbdt::LEAF && n.feature >= first_hist)
            })
        };
        self.classifiers.iter().any(|c| reads(&c.booster)) || reads(&self.rul)
    }

    /// Rows an asset's streaming state must have learned before its features
    /// are treated as warmed up: twice the longest EWMA half-life (a
    /// continuously running state then puts at most a quarter of that
    /// average's weight on readings a cold one never saw), and at least the
    /// features' own per-sensor warm-up.
    pub fn warmup_rows(&self) -> u64 {
        let longest = self.schema.half_lives.iter().copied().fold(0.0, f64::max);
        let feature_warmup = u64::from(
            FeatureParams::default()
                .check()
                .map_or(32, |p| p.warmup_readings()),
        );
        ((2.0 * longest).ceil() as u64).max(feature_warmup)
    }

    /// Predicts from one full feature row (schema order).
    pub fn predict(&self, row: &[f64]) -> Prediction {
        let probabilities: Vec<f64> = self
            .classifiers
            .iter()
            .map(|c| c.calibration.apply(c.booster.predict_row(row)))
            .collect();
        let alarms = probabilities
            .iter()
            .zip(&self.classifiers)
            .map(|(p, c)| *p >= c.threshold)
            .collect();
        Prediction {
            probabilities,
            alarms,
            rul_days: self.rul.predict_row(row).clamp(0.0, self.rul_cap_days),
        }
    }
}

/// Online scorer: one reading at a time, per-asset streaming state, the same
/// feature code as training. Holds the model by `Arc` so a service can swap
/// in a new scorer on model reload while readings keep flowing.
#[derive(Debug)]
pub struct FailureScorer {
    model: Arc<FailureModel>,
    stream: FleetFeatures,
    scratch: RowScratch,
    assets: HashMap<String, usize>,
    history: FleetHistory,
    row: Vec<f64>,
    /// [`FailureModel::warmup_rows`], computed once.
    warmup_rows: f64,
}

impl FailureScorer {
    /// A scorer for `model`, with the Work Order history used for history
    /// features (empty history: those features are missing).
    ///
    /// # Errors
    /// [`ArtifactError`] when the model's schema does not validate.
    pub fn new(model: Arc<FailureModel>, history: FleetHistory) -> Result<Self, ArtifactError> {
        let spec = model.validate()?;
        Ok(Self {
            scratch: RowScratch::new(&spec),
            stream: FleetFeatures::new(spec, 0),
            assets: HashMap::new(),
            history,
            row: vec![0.0; model.schema.n_features()],
            warmup_rows: model.warmup_rows() as f64,
            model,
        })
    }

    /// Scores one reading; `values` in the schema's sensor order (`NaN` =
    /// missing).
    ///
    /// # Errors
    /// [`ArtifactError::Schema`] when `values` has the wrong length.
    pub fn score(
        &mut self,
        asset: &str,
        ts_ms: i64,
        values: &[f64],
    ) -> Result<Prediction, ArtifactError> {
        self.update(asset, ts_ms, values)?;
        Ok(self.predict_current(asset, ts_ms))
    }

    /// Feeds one reading into the asset's streaming state and, when
    /// `predict` is true, evaluates the model on it. Serving evaluates on a
    /// schedule, not on every reading; the state must still see every reading.
    ///
    /// # Errors
    /// [`ArtifactError::Schema`] when `values` has the wrong length.
    pub fn observe(
        &mut self,
        asset: &str,
        ts_ms: i64,
        values: &[f64],
        predict: bool,
    ) -> Result<Option<Prediction>, ArtifactError> {
        self.update(asset, ts_ms, values)?;
        Ok(predict.then(|| self.predict_current(asset, ts_ms)))
    }

    fn update(&mut self, asset: &str, ts_ms: i64, values: &[f64]) -> Result<(), ArtifactError> {
        let idx = match self.assets.get(asset) {
            Some(&i) => i,
            None => {
                let i = self.stream.add_asset();
                self.assets.insert(asset.to_string(), i);
                i
            }
        };
        let n_stream = self.model.schema.stream_columns.len();
        self.stream
            .update_features(
                idx,
                ts_ms,
                values,
                &mut self.scratch,
                &mut self.row[..n_stream],
            )
            .map_err(|e| ArtifactError::Schema(e.to_string()))?;
        Ok(())
    }

    /// The model on the stream features just written by `update` for `asset`.
    fn predict_current(&mut self, asset: &str, ts_ms: i64) -> Prediction {
        let n_stream = self.model.schema.stream_columns.len();
        self.model.schema.history_features(
            self.history.assets.get(asset),
            ts_ms,
            &mut self.row[n_stream..],
        );
        self.model.predict(&self.row)
    }

    /// Whether the asset of the last scored (or observed) reading was still
    /// warming up: it was among the asset's first
    /// [`FailureModel::warmup_rows`] learned rows. (A sensor that never
    /// reports does not hold the asset in warm-up.) Restored states keep their
    /// row counts, so an asset continued from a snapshot is not warming up
    /// again.
    pub fn last_warming_up(&self) -> bool {
        self.scratch.n_rows <= self.warmup_rows
    }

    /// The model this scorer uses.
    pub fn model(&self) -> &Arc<FailureModel> {
        &self.model
    }

    /// Replaces the Work Order history used for history features (e.g. after
    /// a sync), keeping the streaming state.
    pub fn set_history(&mut self, history: FleetHistory) {
        self.history = history;
    }

    /// The feature row of the last scored reading.
    pub fn last_row(&self) -> &[f64] {
        &self.row
    }

    /// The assets that have streaming state (scored or restored), in no
    /// particular order: what a checkpoint walks with [`Self::asset_state`].
    pub fn assets(&self) -> impl Iterator<Item = &str> {
        self.assets.keys().map(String::as_str)
    }

    /// The serialised streaming state of `asset`, or `None` when it was never
    /// scored nor restored: the `fieldpulse-features` snapshot of its block
    /// (format in `fieldpulse_features::snapshot`), which is all the per-asset
    /// state a prediction depends on (the model and the Work Order history are
    /// shared and reloaded on their own). It restores into any scorer whose
    /// model has the same sensors and streaming parameters.
    pub fn asset_state(&self, asset: &str) -> Option<Vec<u8>> {
        self.assets
            .get(asset)
            .map(|&idx| self.stream.asset_state(idx))
    }

    /// Replaces the streaming state of `asset` with an [`Self::asset_state`]
    /// snapshot, creating the asset's slot if it has none, so its predictions
    /// continue exactly where the snapshot was taken. The bytes are checked
    /// first: a refused restore changes nothing and creates no slot.
    ///
    /// # Errors
    /// [`ArtifactError::State`] naming why the bytes were refused (another
    /// feature spec, shape or version, truncated or corrupt).
    pub fn restore_asset_state(&mut self, asset: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        let refused = |source| ArtifactError::State {
            asset: asset.to_string(),
            source,
        };
        self.stream.check_asset_state(bytes).map_err(refused)?;
        let idx = match self.assets.get(asset) {
            Some(&i) => i,
            None => {
                let i = self.stream.add_asset();
                self.assets.insert(asset.to_string(), i);
                i
            }
        };
        self.stream.restore_asset_state(idx, bytes).map_err(refused)
    }
}

#[cfg(all(test, feature = "train"))]
mod snapshot_tests;
