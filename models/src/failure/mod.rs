//! Failure and RUL models learned from Work Order history.
//!
//! - [`labels`]: Work Orders → failures / preventive visits per asset, and
//!   the labels they imply (failure within H, RUL; censoring).
//! - [`model`]: the artifact ([`FailureModel`]), its feature schema, loading
//!   with schema validation, and the online [`FailureScorer`].
//! - [`explain`]: a classifier's top TreeSHAP feature contributions for one
//!   row, in log-odds and probability, with phrases against the asset's normal.
//! - [`cadence`]: the reading cadence of a telemetry set (model card,
//!   `score`'s cadence check); [`state_file`]: every asset's scorer state in
//!   one file (`score --state`).
//! - `dataset`, `train`, `evaluate`, `report` (feature `train`): feature rows
//!   from telemetry, each asset's end of observation, time-ordered
//!   asset-grouped splits, calibrated per-mode classifiers, metrics and the
//!   HTML report; `monotone`: monotone constraints by feature-name
//!   pattern.
//! - `challengers` (feature `train`): the booster against the promoted
//!   champion, an age-only rule, logistic regression, a random forest and
//!   ridge RUL, with asset-bootstrap intervals.
//! - `cmms_csv`, `feedback` (feature `train`): Work Order history from
//!   another CMMS's CSV export (columns mapped by a TOML file), and
//!   dispatcher feedback (`fieldpulse feedback export`) as extra labels.
//!
//! Scoring ([`model`]) depends only on the booster's inference code,
//! `fieldpulse-features` and serde: the cloud never compiles training.

pub mod cadence;
pub mod explain;
pub mod labels;
pub mod model;
pub mod state_file;

#[cfg(feature = "train")]
pub mod challengers;
#[cfg(feature = "train")]
pub mod cmms_csv;
#[cfg(feature = "train")]
pub mod dataset;
#[cfg(feature = "train")]
pub mod evaluate;
#[cfg(feature = "train")]
pub mod feedback;
#[cfg(feature = "train")]
pub mod monotone;
#[cfg(feature = "train")]
pub mod report;
#[cfg(feature = "train")]
pub mod train;

#[cfg(all(test, feature = "train"))]
mod tests;

pub use explain::{Explanation, FeatureContribution};
pub use labels::FleetHistory;
pub use model::{ArtifactError, FailureModel, FailureScorer, FeatureSchema, Prediction};
