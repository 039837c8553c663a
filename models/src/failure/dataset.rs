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
use super::train::TrainError;
use crate::telemetry::{RowBatch, TelemetryInput, TelemetryProfile};
use crate::wide_csv::{
    RejectCounts, WideCsvError, WideCsvLayout, WideCsvOptions, WideCsvReader, WideRecord,
};

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
        Self::read_csv_counted(input, &WideCsvOptions::default()).map(|(t, _, _)| t)
    }

    /// [`Self::read_csv`] with column options, also returning the reader's
    /// rejection counts and the detected layout.
    ///
    /// # Errors
    /// IO errors or an unreadable header.
    pub fn read_csv_counted(
        input: impl BufRead,
        opts: &WideCsvOptions,
    ) -> Result<(Self, RejectCounts, WideCsvLayout), WideCsvError> {
        let mut reader = WideCsvReader::new(input, opts)?;
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
        Ok((out, counts, layout))
    }

    /// Keeps the rows whose time `keep` accepts (and the assets that still
    /// have rows, in the same order); returns how many rows were dropped.
    pub fn retain_window(&mut self, keep: impl Fn(i64) -> bool) -> usize {
        let n_in = self.sensors.len();
        let before = self.n_rows();
        let mut new_idx = vec![u32::MAX; self.assets.len()];
        let mut assets = Vec::new();
        let mut w = 0;
        for i in 0..before {
            if !keep(self.ts_ms[i]) {
                continue;
            }
            let a = self.asset_idx[i] as usize;
            if new_idx[a] == u32::MAX {
                new_idx[a] = assets.len() as u32;
                assets.push(self.assets[a].clone());
            }
            self.asset_idx[w] = new_idx[a];
            self.ts_ms[w] = self.ts_ms[i];
            self.values.copy_within(i * n_in..(i + 1) * n_in, w * n_in);
            w += 1;
        }
        self.asset_idx.truncate(w);
        self.ts_ms.truncate(w);
        self.values.truncate(w * n_in);
        self.assets = assets;
        before - w
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
        Self::with_last_readings(
            &telemetry.assets,
            &telemetry.last_reading_ms(),
            history,
            observed_until_ms,
        )
    }

    /// Ends of observation of a profiled telemetry set's assets.
    pub fn from_profile(
        profile: &'a TelemetryProfile,
        history: &'a FleetHistory,
        observed_until_ms: Option<i64>,
    ) -> Self {
        Self::with_last_readings(
            &profile.assets,
            &profile.last_reading_ms,
            history,
            observed_until_ms,
        )
    }

    /// Ends of observation of `assets` whose last readings are
    /// `last_reading_ms`.
    pub fn with_last_readings(
        assets: &'a [String],
        last_reading_ms: &[i64],
        history: &'a FleetHistory,
        observed_until_ms: Option<i64>,
    ) -> Self {
        let end_ms = last_reading_ms
            .iter()
            .copied()
            .zip(assets)
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
            assets,
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

    /// Orders rows `start..` by time, then `rank` of their asset (stable).
    fn sort_tail(&mut self, start: usize, rank: &[u32]) {
        let key = |i: usize| (self.ts_ms[i], rank[self.asset_idx[i] as usize]);
        if (start + 1..self.len()).all(|i| key(i - 1) <= key(i)) {
            return;
        }
        let mut order: Vec<usize> = (start..self.len()).collect();
        order.sort_by_key(|&i| key(i));
        let nf = self.n_features;
        let mut x = Vec::with_capacity(order.len() * nf);
        for &i in &order {
            x.extend_from_slice(self.row(i));
        }
        let asset_idx: Vec<u32> = order.iter().map(|&i| self.asset_idx[i]).collect();
        let ts_ms: Vec<i64> = order.iter().map(|&i| self.ts_ms[i]).collect();
        self.x.truncate(start * nf);
        self.x.extend_from_slice(&x);
        self.asset_idx.truncate(start);
        self.asset_idx.extend_from_slice(&asset_idx);
        self.ts_ms.truncate(start);
        self.ts_ms.extend_from_slice(&ts_ms);
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
    let mut extractor = FeatureExtractor::new(schema, history, &telemetry.assets, stride)?;
    let positions = schema.sensor_positions(&telemetry.sensors)?;
    let n_in = telemetry.sensors.len();
    let mut values = vec![0.0; positions.len()];
    for i in 0..telemetry.n_rows() {
        let input = &telemetry.values[i * n_in..(i + 1) * n_in];
        for (v, &p) in values.iter_mut().zip(&positions) {
            *v = input[p];
        }
        extractor.push(telemetry.asset_idx[i] as usize, telemetry.ts_ms[i], &values)?;
    }
    Ok(extractor.rows)
}

/// Feature rows of any telemetry input: a wide CSV exactly as
/// [`feature_rows`]; chunked inputs by pass 2 of [`TelemetryInput`], rows
/// ordered by time then asset name (so they equal those of the same readings
/// as a wide CSV sorted that way). Memory: the kept rows and one chunk.
///
/// # Errors
/// A sensor of the schema missing from the input, or reading errors.
pub fn feature_rows_from(
    input: &mut TelemetryInput,
    profile: &TelemetryProfile,
    schema: &FeatureSchema,
    history: &FleetHistory,
    stride: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<FeatureRows, TrainError> {
    if let Some(telemetry) = input.as_wide_csv() {
        return Ok(feature_rows(telemetry, schema, history, stride)?);
    }
    schema.sensor_positions(&profile.sensors)?;
    let mut extractor = FeatureExtractor::new(schema, history, &profile.assets, stride)?;
    let mut rank = vec![0u32; profile.assets.len()];
    let mut by_name: Vec<usize> = (0..profile.assets.len()).collect();
    by_name.sort_by(|&a, &b| profile.assets[a].cmp(&profile.assets[b]));
    for (r, &a) in by_name.iter().enumerate() {
        rank[a] = r as u32;
    }
    let mut failed: Option<ArtifactError> = None;
    input
        .scan(
            profile,
            &schema.sensors,
            &mut |batch: &RowBatch<'_>| {
                let start = extractor.rows.len();
                for i in 0..batch.len() {
                    if let Err(e) =
                        extractor.push(batch.asset[i] as usize, batch.ts_ms[i], batch.row(i))
                    {
                        failed = Some(e);
                        return Err(crate::telemetry::TelemetryError::Stopped);
                    }
                }
                extractor.rows.sort_tail(start, &rank);
                Ok(())
            },
            progress,
        )
        .map_err(|e| match failed.take() {
            Some(f) => TrainError::Artifact(f),
            None => TrainError::Telemetry(e),
        })?;
    let mut rows = extractor.rows;
    rows.sort_tail(0, &rank);
    Ok(rows)
}

/// The streaming feature state over readings that arrive per asset in time
/// order, keeping every `stride`-th reading of each asset.
struct FeatureExtractor<'a> {
    schema: &'a FeatureSchema,
    history: &'a FleetHistory,
    assets: &'a [String],
    state: FleetFeatures,
    scratch: RowScratch,
    seen: Vec<usize>,
    row: Vec<f64>,
    stride: usize,
    n_stream: usize,
    rows: FeatureRows,
}

impl<'a> FeatureExtractor<'a> {
    fn new(
        schema: &'a FeatureSchema,
        history: &'a FleetHistory,
        assets: &'a [String],
        stride: usize,
    ) -> Result<Self, ArtifactError> {
        let spec = schema.stream_spec()?;
        let nf = schema.n_features();
        Ok(Self {
            schema,
            history,
            assets,
            state: FleetFeatures::new(spec.clone(), assets.len()),
            scratch: RowScratch::new(&spec),
            seen: vec![0usize; assets.len()],
            row: vec![0.0; nf],
            stride: stride.max(1),
            n_stream: schema.stream_columns.len(),
            rows: FeatureRows {
                n_features: nf,
                ..FeatureRows::default()
            },
        })
    }

    /// One reading (`values` in schema sensor order).
    fn push(&mut self, asset: usize, ts: i64, values: &[f64]) -> Result<(), ArtifactError> {
        self.state
            .update_features(
                asset,
                ts,
                values,
                &mut self.scratch,
                &mut self.row[..self.n_stream],
            )
            .map_err(|e| ArtifactError::Schema(e.to_string()))?;
        let keep = self.seen[asset].is_multiple_of(self.stride);
        self.seen[asset] += 1;
        if !keep {
            return Ok(());
        }
        let hist = self.history.assets.get(&self.assets[asset]);
        self.schema
            .history_features(hist, ts, &mut self.row[self.n_stream..]);
        self.rows.x.extend_from_slice(&self.row);
        self.rows.asset_idx.push(asset as u32);
        self.rows.ts_ms.push(ts);
        Ok(())
    }
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
