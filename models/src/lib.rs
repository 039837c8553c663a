//! `fieldpulse-models`: streaming anomaly detectors, failure and RUL models and
//! the model artifact format. Training code sits behind the `train` feature so
//! that scoring never compiles it.
//!
//! Failure side: [`gbdt`] (our histogram gradient-boosted trees; fitting
//! behind `train`), [`failure`] (Work Order labels, the artifact
//! [`failure::FailureModel`] and the online [`failure::FailureScorer`];
//! training, evaluation and the HTML report behind `train`),
//! [`calibration`] (isotonic), [`metrics`] (RMSE, PHM08, PR, calibration
//! bins), `cmapss` (NASA C-MAPSS protocol, behind `train`).
//!
//! ```no_run
//! use fieldpulse_models::failure::{FailureModel, FailureScorer, FleetHistory};
//! let model = std::sync::Arc::new(FailureModel::load(std::path::Path::new("models/v1"))?);
//! let mut scorer = FailureScorer::new(model.clone(), FleetHistory::default())?;
//! let values = vec![f64::NAN; model.schema.sensors.len()];
//! let prediction = scorer.score("pump-0001", 1_767_225_600_000, &values)?;
//! println!("{:?} {} days", prediction.probabilities, prediction.rul_days);
//! # Ok::<(), fieldpulse_models::failure::ArtifactError>(())
//! ```
//!
//! Deliberately absent: IO beyond reading/writing artifact files and the
//! CSV reader, async, dataframe libraries.

pub mod anomaly;
pub mod calibration;
#[cfg(feature = "train")]
pub mod cmapss;
pub mod failure;
pub mod gbdt;
pub mod metrics;
pub mod registry;
pub mod rng;
#[cfg(feature = "train")]
pub mod telemetry;
pub mod wide_csv;
