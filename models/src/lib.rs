//! `fieldpulse-models`: streaming anomaly detectors, failure and RUL models and
//! the model artifact format. Training code sits behind the `train` feature so
//! that scoring never compiles it.

#[cfg(feature = "train")]
pub mod cmapss;
pub mod calibration;
pub mod failure;
pub mod gbdt;
pub mod metrics;
pub mod rng;
pub mod anomaly;
pub mod wide_csv;
