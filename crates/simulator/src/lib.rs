//! `fieldpulse-simulator`: a fleet of pumps, compressors and rooftop HVAC
//! units with physically plausible sensors, wear, failures, maintenance and
//! the Work Order history Salesforce would hold.
//!
//! # Layout
//! - [`fleet`]: [`FleetConfig`], [`Fleet`] (an iterator of [`Reading`]s in
//!   time order) and the per-asset physics.
//! - [`product`]: the product lines, their channels and [`FailureMode`]s.
//! - [`history`]: Work Orders, assets, ground truth, and the Salesforce seed
//!   fixture / ground-truth JSON.
//! - [`telemetry`]: the wide CSV layout.
//! - [`shapes`]: a seeded, labelled corpus of single-value series in the shapes industrial
//!   telemetry takes (flat, square, counts, seasonal, gaps, …), clean or with one anomaly.
//! - [`time`]: UTC calendar helpers.
//!
//! # Example
//! ```
//! use fieldpulse_simulator::{Fleet, FleetConfig};
//! use std::time::Duration;
//! let cfg = FleetConfig { n_assets: 3, duration: Duration::from_secs(2 * 86_400), ..FleetConfig::default() };
//! let mut fleet = Fleet::new(cfg).unwrap();
//! let n = fleet.by_ref().count();
//! assert!(n > 0 && fleet.history().assets.len() == 3);
//! ```
//!
//! The simulator knows nothing about features or models: it produces data
//! and the truth about it, never scores.

pub mod fleet;
pub mod history;
pub mod product;
pub mod shapes;
pub mod telemetry;
pub mod time;

pub use fleet::{Fleet, FleetConfig, Reading, SimError};
pub use history::{History, WorkKind, WorkOrder};
pub use product::{FailureMode, ProductKind, N_SENSORS, SENSORS};
