//! Telemetry loading, feature rows and labels for training and evaluation
//! (feature `train`).
//!
//! Features come from `fieldpulse-features`' [`FleetFeatures`] driven row by
//! row over the whole history (exactly what the online scorer does), plus the
//! history features of [`FeatureSchema::history_features`]; only every
//! `stride`-th reading of an asset is kept as a sample, so memory stays
//! bounded on long histories while the state still sees every reading.

use std::collections::HashMap;
use std::io::BufRead;

use fieldpulse_features::{FleetFeatures, RowScratch};

use super::labels::{failure_within, rul_days, FleetHistory, Label, DAY_MS};
use super::model::{ArtifactError, FeatureSchema};
use crate::wide_csv::{RejectCounts, WideCsvError, WideCsvOptions, WideCsvReader, WideRecord};

/// Telemetry in memory: rows in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    /// Sensor names, in column order of `values`.
    pub sensors: Vec<String>,
    /// Asset names; `asset_idx` indexes into this.
    pub assets: Vec<String>,
    /// Asset of each row.
    pub asset_idx: Vec<u32>,
    /// Time of each row (epoch ms).
    pub ts_ms: Vec<i64>,
    /// Row-major values (`NaN` = missing).
    pub values: Vec<f64>,
    /// Rows rejected by the CSV reader (bad time, wrong field count).
    pub rejected_rows: u64,
}

impl Telemetry {
    /// Reads a wide CSV (`asset, ts, sensors...`); rows without an asset
    /// column belong to one asset named `asset`.
    ///
    /// # Errors
    /// IO errors or an unreadable header.
    pub fn read_csv(input: impl BufRead) -> Result<Self, WideCsvError> {
        let mut reader = WideCsvReader::new(input, &WideCsvOptions::default())?;
        let layout = reader.layout().clone();
        let mut out = Telemetry {
            sensors: layout.sensor_names(),
            ..Telemetry::default()
        };
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut rec = WideRecord::default();
        while reader.next_record(&mut rec)? {
            let (None, Some(ts)) = (rec.reject, rec.ts_ms) else {
                continue;
            };
            let name = layout.asset_col.map_or("asset", |c| rec.field(c));
            let idx = match index.get(name) {
                Some(&i) => i,
                None => {
                    let i = out.assets.len() as u32;
                    out.assets.push(name.to_string());
                    index.insert(name.to_string(), i);
                    i
                }
            };
            out.asset_idx.push(idx);
            out.ts_ms.push(ts);
            out.values.extend_from_slice(&rec.values);
        }
        let counts: RejectCounts = reader.counts();
        out.rejected_rows = counts.rejected_rows();
        Ok(out)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.ts_ms.len()
    }

    /// First and last timestamp.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self.ts_ms.iter().min()?;
        let max = self.ts_ms.iter().max()?;
        Some((*min, *max))
    }
}

/// Feature rows of sampled readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureRows {
    /// Columns per row.
    pub n_features: usize,
    /// Row-major features.
    pub x: Vec<f64>,
    /// Asset index (into [`Telemetry::assets`]) per row.
    pub asset_idx: Vec<u32>,
    /// Time per row.
    pub ts_ms: Vec<i64>,
}

impl FeatureRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    /// Features of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// Computes features for every reading and keeps every `stride`-th reading
/// of each asset (counted per asset, starting with its first).
///
/// # Errors
/// [`ArtifactError::Schema`] when the telemetry lacks a schema sensor.
pub fn feature_rows(
    telemetry: &Telemetry,
    schema: &FeatureSchema,
    history: &FleetHistory,
    stride: usize,
) -> Result<FeatureRows, ArtifactError> {
    let spec = schema.stream_spec()?;
    let positions = schema.sensor_positions(&telemetry.sensors)?;
    let n_in = telemetry.sensors.len();
    let n_stream = schema.stream_columns.len();
    let nf = schema.n_features();
    let mut state = FleetFeatures::new(spec.clone(), telemetry.assets.len());
    let mut scratch = RowScratch::new(&spec);
    let mut seen = vec![0usize; telemetry.assets.len()];
    let mut values = vec![0.0; positions.len()];
    let mut row = vec![0.0; nf];
    let stride = stride.max(1);
    let mut out = FeatureRows {
        n_features: nf,
        ..FeatureRows::default()
    };
    for i in 0..telemetry.n_rows() {
        let asset = telemetry.asset_idx[i] as usize;
        let input = &telemetry.values[i * n_in..(i + 1) * n_in];
        for (v, &p) in values.iter_mut().zip(&positions) {
            *v = input[p];
        }
        let ts = telemetry.ts_ms[i];
        state
            .update_features(asset, ts, &values, &mut scratch, &mut row[..n_stream])
            .map_err(|e| ArtifactError::Schema(e.to_string()))?;
        let keep = seen[asset].is_multiple_of(stride);
        seen[asset] += 1;
        if !keep {
            continue;
        }
        let hist = history.assets.get(&telemetry.assets[asset]);
        schema.history_features(hist, ts, &mut row[n_stream..]);
        out.x.extend_from_slice(&row);
        out.asset_idx.push(asset as u32);
        out.ts_ms.push(ts);
    }
    Ok(out)
}

/// Labels of one classifier for the given rows: `(target, weight)`, weight 0
/// for excluded rows. `mode` `None` = any failure.
pub fn classifier_labels(
    rows: &FeatureRows,
    rows_idx: &[usize],
    assets: &[String],
    history: &FleetHistory,
    mode: Option<&str>,
    horizon_days: f64,
    censor_ms: i64,
) -> (Vec<f64>, Vec<f64>) {
    let horizon_ms = (horizon_days * DAY_MS as f64) as i64;
    let empty = Default::default();
    rows_idx
        .iter()
        .map(|&i| {
            let hist = history
                .assets
                .get(&assets[rows.asset_idx[i] as usize])
                .unwrap_or(&empty);
            match failure_within(hist, rows.ts_ms[i], horizon_ms, mode, censor_ms) {
                Label::Positive => (1.0, 1.0),
                Label::Negative => (0.0, 1.0),
                Label::Excluded => (0.0, 0.0),
            }
        })
        .unzip()
}

/// RUL targets (days, capped) for the given rows; `None` when censored.
pub fn rul_targets(
    rows: &FeatureRows,
    rows_idx: &[usize],
    assets: &[String],
    history: &FleetHistory,
    cap_days: f64,
    censor_ms: i64,
) -> Vec<Option<f64>> {
    let empty = Default::default();
    rows_idx
        .iter()
        .map(|&i| {
            let hist = history
                .assets
                .get(&assets[rows.asset_idx[i] as usize])
                .unwrap_or(&empty);
            rul_days(hist, rows.ts_ms[i], cap_days, censor_ms)
        })
        .collect()
}
