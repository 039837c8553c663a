//! `fieldpulse-features`: the one definition of every sensor feature, as
//! streaming state that can also run over a slice.
//!
//! The cloud scores each reading as it arrives with [`FleetFeatures::update`]
//! (O(1) state per asset × sensor, no allocation per reading); training calls
//! [`compute_offline`] / [`compute_offline_fleet`] over a whole history, which
//! runs the very same kernel, so online and offline values agree (a property
//! test checks it against closed-form weighted sums to 1e-9 relative).
//!
//! Per sensor: debiased EWMA mean and standard deviation at several half-lives,
//! a streaming median and MAD (stochastic approximation), a winsorised residual
//! scale, a rolling slope (exponentially weighted least squares), the row's
//! normalised innovations (`resid_z`, `robust_z`, per-asset normalisation) and
//! the time since the sensor's last valid value; per asset the time since the
//! previous row. Decay is time-aware (see [`state`] for the choice).
//!
//! ```
//! use fieldpulse_features::{FeatureParams, FeatureSpec, FleetFeatures, ParamGuard, RowScratch};
//!
//! let params = FeatureParams::default().half_lives(vec![4.0, 32.0, 256.0]).check()?;
//! let spec = FeatureSpec::new(params, vec!["temp".into(), "vib_rms".into()])?;
//! let mut fleet = FleetFeatures::new(spec.clone(), 1);
//! let mut scratch = RowScratch::new(&spec);
//! let mut row = vec![0.0; spec.n_features()];
//! for i in 0..100 {
//!     fleet.update_features(0, 1_700_000_000_000 + i * 60_000, &[70.0, 0.3], &mut scratch, &mut row)?;
//! }
//! assert_eq!(spec.names()[1], "temp.ewma_mean_hl4");
//! assert!((row[1] - 70.0).abs() < 1e-9);
//! # Ok::<(), fieldpulse_features::FeatureError>(())
//! ```
//!
//! [`FleetFeatures::asset_state`] / [`FleetFeatures::restore_asset_state`]
//! checkpoint one asset's state as versioned, checksummed bytes (format in
//! [`snapshot`]), so a stream processor can restore it after a crash and
//! replay with bit-identical results.
//!
//! Deliberately absent: IO, async, dataframes, any dependency beyond `std`.
//! Detectors live in `fieldpulse-models` and read this state through
//! [`AssetView`] and the per-row [`RowScratch`].

pub mod aligned;
pub mod offline;
pub mod params;
pub mod seasonal;
pub mod snapshot;
pub mod spec;
pub mod state;

pub use aligned::AlignedVec;
pub use offline::{compute_offline, compute_offline_fleet, FeatureMatrix};
pub use params::{FeatureError, FeatureParams, FeatureValidParams, ParamGuard};
pub use seasonal::Seasonality;
pub use snapshot::StateError;
pub use spec::FeatureSpec;
pub use state::{
    AssetView, FeatureCounters, FleetFeatures, RowLanes, RowScratch, RowStatus, MAD_TO_SIGMA,
    MAX_ABS_VALUE, MEAN_ABS_TO_SIGMA,
};
