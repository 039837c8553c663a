//! What `fieldpulse detect` and the anomaly benchmarks (`eval shapes`, `eval
//! nab`, `eval skab`) share: the detector's defaults with a seasonal
//! profile, `--seasonal`, the alarm rule, one CSV scored as `detect` scores
//! it, and `--json` output.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use clap::Args;
use fieldpulse_models::anomaly::{
    DetectorParams, DetectorValidParams, FeatureParams, FleetScorer, ParamGuard, RowScore,
    Seasonality,
};
use fieldpulse_models::wide_csv::{WideCsvOptions, WideCsvReader, WideRecord};
use serde::Serialize;

use crate::detect_labels::parse_label;

/// The detector's defaults with `seasonal` profiles.
pub fn default_params(seasonal: Seasonality) -> anyhow::Result<DetectorValidParams> {
    DetectorParams::default()
        .features(FeatureParams::default().seasonality(seasonal))
        .context("feature parameters")?
        .check()
        .context("default detector parameters")
}

/// Parses `--seasonal`.
pub fn parse_seasonality(s: &str) -> Result<Seasonality, String> {
    Seasonality::parse(s).ok_or_else(|| format!("{s:?}: expected off, daily or weekly"))
}

/// The surprise a score threshold stands for: `-log10(1 - t)` (infinite for
/// 1), to 9 decimals. `1 - t` keeps only the binary rounding of `t`'s last
/// digits (for 0.9999, a surprise of 4.000000000000048), so unrounded,
/// `--threshold 0.9999` would be a hair stricter than `--min-surprise 4`,
/// which the documentation says it is.
pub fn surprise_of_score(t: f64) -> f64 {
    let s = -(1.0 - t).log10();
    if s.is_finite() {
        (s * 1e9).round() / 1e9
    } else {
        s
    }
}

/// Whether a scored row alarms: past its asset's warm-up, at or above
/// `min_surprise` (the rule `detect` writes as `is_anomaly`).
pub fn alarms(r: &RowScore, min_surprise: f64) -> bool {
    !r.in_warmup && r.surprise >= min_surprise
}

/// Prints `report` as one JSON object on stdout.
pub fn print_json(report: &impl Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string(report).context("rendering JSON")?
    );
    Ok(())
}

/// The options every public-benchmark run takes.
#[derive(Debug, Args)]
pub struct BenchmarkArgs {
    /// Seasonal profile the detector learns: off, daily or weekly (as
    /// `fieldpulse detect`).
    #[arg(long, default_value = "weekly", value_parser = parse_seasonality)]
    pub seasonal: Seasonality,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A file's asset names, numbered in order of appearance as the scorer's
/// assets (each new name adds one to the scorer). Looked up once a row, so
/// hashed with foldhash's fast hasher rather than SipHash (names come from the
/// user's own file: no one to mount a collision attack).
#[derive(Debug, Default)]
pub struct AssetIds(HashMap<String, usize, foldhash::fast::RandomState>);

impl AssetIds {
    /// The scorer's asset for `name`, added on its first row.
    pub fn get(&mut self, name: &str, scorer: &mut FleetScorer) -> usize {
        if let Some(a) = self.0.get(name) {
            return *a;
        }
        let a = scorer.add_asset();
        self.0.insert(name.to_string(), a);
        a
    }

    /// Assets seen.
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

/// One scored row, as [`score_csv`] hands it on.
#[derive(Debug, Clone, Copy)]
pub struct ScoredRow {
    /// The asset (numbered from 0 in order of appearance; 0 without an asset column).
    pub asset: usize,
    /// Epoch milliseconds.
    pub ts_ms: i64,
    /// The row's label (`opts.label_col`): `None` without one, or when empty
    /// or not a number.
    pub label: Option<bool>,
    /// Whether it alarms at the default threshold.
    pub alarm: bool,
}

/// What [`score_csv`] counted.
#[derive(Debug, Clone, Copy)]
pub struct ScoredFile {
    /// Assets seen.
    pub assets: usize,
    /// Rows left out: a wrong field count or an unreadable time.
    pub rejected_rows: u64,
}

/// Scores the CSV at `path` as `fieldpulse detect` does (a fresh detector,
/// each asset its own, rejected rows left out and counted), handing every
/// scored row to `row`.
///
/// # Errors
/// An unreadable file or header (as [`WideCsvReader::new`]) and read errors.
pub fn score_csv(
    path: &Path,
    opts: &WideCsvOptions,
    params: DetectorValidParams,
    mut row: impl FnMut(ScoredRow),
) -> anyhow::Result<ScoredFile> {
    let input = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut reader = WideCsvReader::new(input, opts)?;
    let layout = reader.layout().clone();
    let min_surprise = surprise_of_score(params.threshold());
    let mut scorer = FleetScorer::new(params, layout.sensor_names(), 0)?;
    let mut assets = AssetIds::default();
    let mut rec = WideRecord::default();
    while reader.next_record(&mut rec)? {
        let (None, Some(ts_ms)) = (rec.reject, rec.ts_ms) else {
            continue;
        };
        let asset = assets.get(layout.asset_col.map_or("", |c| rec.field(c)), &mut scorer);
        let r = scorer.score_row(asset, ts_ms, &rec.values);
        row(ScoredRow {
            asset,
            ts_ms,
            label: layout.label_col.and_then(|c| parse_label(rec.field(c))),
            alarm: alarms(&r, min_surprise),
        });
    }
    Ok(ScoredFile {
        assets: assets.count(),
        rejected_rows: reader.counts().rejected_rows(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_threshold_is_the_surprise_its_digits_say() {
        assert_eq!(surprise_of_score(0.9999), 4.0);
        assert_eq!(surprise_of_score(0.99), 2.0);
        assert_eq!(surprise_of_score(0.0), 0.0);
        assert_eq!(surprise_of_score(1.0), f64::INFINITY);
        assert!((surprise_of_score(0.99995) - 4.301_029_996).abs() < 1e-12);
    }
}
