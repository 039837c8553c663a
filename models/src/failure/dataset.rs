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

use super::labels::{
    before_false_alarm, failure_within, rul_days, AssetHistory, FleetHistory, Label, DAY_MS,
    FALSE_ALARM_WEIGHT,
};
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

    /// Last reading time of each asset (indexed like [`Telemetry::assets`]).
    pub fn last_reading_ms(&self) -> Vec<i64> {
        let mut last = vec![i64::MIN; self.assets.len()];
        for (&a, &ts) in self.asset_idx.iter().zip(&self.ts_ms) {
            let slot = &mut last[a as usize];
            *slot = (*slot).max(ts);
        }
        last
    }
}

/// What labels may use: the history and each telemetry asset's end of
/// observation (`labels` module docs).
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Telemetry asset names.
    pub assets: &'a [String],
    /// Work Order history (plus feedback).
    pub history: &'a FleetHistory,
    /// End of observation per telemetry asset (epoch ms): the earliest of its
    /// decommission date, its last reading and `observed_until`.
    pub end_ms: Vec<i64>,
}

impl<'a> Observation<'a> {
    /// Ends of observation of `telemetry`'s assets.
    pub fn new(
        telemetry: &'a Telemetry,
        history: &'a FleetHistory,
        observed_until_ms: Option<i64>,
    ) -> Self {
        let end_ms = telemetry
            .last_reading_ms()
            .into_iter()
            .zip(&telemetry.assets)
            .map(|(last, name)| {
                let decommissioned = history.assets.get(name).and_then(|h| h.decommissioned_ms);
                [Some(last), decommissioned, observed_until_ms]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(last)
            })
            .collect();
        Self {
            assets: &telemetry.assets,
            history,
            end_ms,
        }
    }

    /// History of telemetry asset `asset_idx` (empty when it has none).
    pub fn asset(&self, asset_idx: u32) -> &'a AssetHistory {
        static EMPTY: std::sync::OnceLock<AssetHistory> = std::sync::OnceLock::new();
        self.history
            .assets
            .get(&self.assets[asset_idx as usize])
            .unwrap_or_else(|| EMPTY.get_or_init(AssetHistory::default))
    }

    /// End of observation of `asset_idx`, no later than `censor_ms`.
    pub fn end(&self, asset_idx: u32, censor_ms: i64) -> i64 {
        self.end_ms[asset_idx as usize].min(censor_ms)
    }

    /// Telemetry assets the Work Order history does not name at all.
    pub fn assets_without_history(&self) -> Vec<String> {
        self.assets
            .iter()
            .filter(|a| !self.history.assets.contains_key(*a))
            .cloned()
            .collect()
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
/// for excluded rows and [`FALSE_ALARM_WEIGHT`] for negatives in the horizon
/// before a false alarm. `mode` `None` = any failure; labels use nothing
/// after `censor_ms` nor after each asset's end of observation.
pub fn classifier_labels(
    rows: &FeatureRows,
    rows_idx: &[usize],
    obs: &Observation<'_>,
    mode: Option<&str>,
    horizon_days: f64,
    censor_ms: i64,
) -> (Vec<f64>, Vec<f64>) {
    let horizon_ms = (horizon_days * DAY_MS as f64) as i64;
    rows_idx
        .iter()
        .map(|&i| {
            let asset = rows.asset_idx[i];
            let hist = obs.asset(asset);
            let t = rows.ts_ms[i];
            let end = obs.end(asset, censor_ms);
            match failure_within(hist, t, horizon_ms, mode, end) {
                Label::Positive => (1.0, 1.0),
                Label::Negative if before_false_alarm(hist, t, horizon_ms, mode, end) => {
                    (0.0, FALSE_ALARM_WEIGHT)
                }
                Label::Negative => (0.0, 1.0),
                Label::Excluded => (0.0, 0.0),
            }
        })
        .unzip()
}

/// RUL targets (days, capped) for the given rows; `None` when the capped
/// window is not complete by `censor_ms` and the asset's end of observation.
pub fn rul_targets(
    rows: &FeatureRows,
    rows_idx: &[usize],
    obs: &Observation<'_>,
    cap_days: f64,
    censor_ms: i64,
) -> Vec<Option<f64>> {
    rows_idx
        .iter()
        .map(|&i| {
            let asset = rows.asset_idx[i];
            rul_days(
                obs.asset(asset),
                rows.ts_ms[i],
                cap_days,
                obs.end(asset, censor_ms),
            )
        })
        .collect()
}
