//! Offline feature computation over a whole history: the same kernel as the
//! online path run over a slice, so training and serving agree by construction
//! (and a property test checks it).

use crate::params::FeatureError;
use crate::spec::FeatureSpec;
use crate::state::{FleetFeatures, RowScratch, RowStatus};

/// A dense row-major matrix of features: `n_rows` rows of `n_features` columns,
/// column names in [`FeatureSpec::names`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    /// Number of rows.
    pub n_rows: usize,
    /// Number of columns.
    pub n_features: usize,
    /// Row-major values, `n_rows * n_features` long.
    pub data: Vec<f64>,
    /// Status of every input row, in input order.
    pub status: Vec<RowStatus>,
}

impl FeatureMatrix {
    /// The features of row `i`.
    ///
    /// # Panics
    /// If `i >= n_rows`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// Computes the features of one asset's history: `ts_ms[i]` is the time of row
/// `i`, `values[i * n_sensors..(i + 1) * n_sensors]` its values (row-major).
///
/// # Errors
/// [`FeatureError::ShapeMismatch`] when `values.len() != ts_ms.len() * n_sensors`.
pub fn compute_offline(
    spec: &FeatureSpec,
    ts_ms: &[i64],
    values: &[f64],
) -> Result<FeatureMatrix, FeatureError> {
    let asset_idx = vec![0u32; ts_ms.len()];
    compute_offline_fleet(spec, &asset_idx, ts_ms, values)
}

/// Computes the features of a multi-asset history in input order: row `i`
/// belongs to asset `asset_idx[i]` (dense indexes from 0).
///
/// # Errors
/// [`FeatureError::ShapeMismatch`] when the slices disagree in length.
pub fn compute_offline_fleet(
    spec: &FeatureSpec,
    asset_idx: &[u32],
    ts_ms: &[i64],
    values: &[f64],
) -> Result<FeatureMatrix, FeatureError> {
    let n = spec.n_sensors();
    if asset_idx.len() != ts_ms.len() {
        return Err(FeatureError::ShapeMismatch {
            what: "asset indexes",
            expected: ts_ms.len(),
            actual: asset_idx.len(),
        });
    }
    if values.len() != ts_ms.len() * n {
        return Err(FeatureError::ShapeMismatch {
            what: "values",
            expected: ts_ms.len() * n,
            actual: values.len(),
        });
    }
    let n_assets = asset_idx.iter().map(|a| *a as usize + 1).max().unwrap_or(0);
    let mut state = FleetFeatures::new(spec.clone(), n_assets);
    let mut scratch = RowScratch::new(spec);
    let nf = spec.n_features();
    let mut data = vec![0.0; ts_ms.len() * nf];
    let mut status = Vec::with_capacity(ts_ms.len());
    for (i, (&asset, &ts)) in asset_idx.iter().zip(ts_ms).enumerate() {
        let row = &values[i * n..(i + 1) * n];
        let st = state.update_features(
            asset as usize,
            ts,
            row,
            &mut scratch,
            &mut data[i * nf..(i + 1) * nf],
        )?;
        status.push(st);
    }
    Ok(FeatureMatrix {
        n_rows: ts_ms.len(),
        n_features: nf,
        data,
        status,
    })
}
