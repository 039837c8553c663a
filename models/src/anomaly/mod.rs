//! Streaming anomaly detection on top of `fieldpulse-features`: univariate
//! robust z (spikes), two-sided CUSUM (level shifts), level-vs-baseline (slow
//! drift), Mahalanobis distance with a shrunk covariance and a per-sensor
//! CUSUM of the conditional residual (broken correlations), one calibrated
//! score per reading plus the sensor that
//! contributed most. No labels, no look-ahead, O(1) state per asset.
//!
//! - [`params`]: `DetectorParams` → `check()` → `DetectorValidParams`, defaults reasoned there.
//! - [`scorer`]: `FleetScorer`, the hot loop, and the defined behaviour for bad input.
//! - [`synth`]: a seeded fleet with labelled spikes, drifts, level shifts and correlation breaks.
//! - [`quality`]: precision / recall / F1 / delay per anomaly kind.

mod gumbel;
mod mv;
pub mod params;
pub mod quality;
pub mod scorer;
pub mod synth;

#[cfg(test)]
mod tests;

pub use fieldpulse_features::{FeatureParams, ParamGuard, RowStatus, Seasonality};
pub use params::{AnomalyError, DetectorParams, DetectorValidParams};
pub use quality::{evaluate, fleet_alarms, quality_by_kind, KindQuality, QualityReport};
pub use scorer::{FleetScorer, RowScore, ScoreCounters};
pub use synth::{generate, AnomalyKind, SynthFleet, SynthParams};
