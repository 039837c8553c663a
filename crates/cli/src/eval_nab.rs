//! `fieldpulse eval nab`: the anomaly detector on a checkout of the Numenta
//! Anomaly Benchmark (server metrics, traffic, machine temperatures,
//! artificial shapes), scored as `fieldpulse detect` scores a file, against
//! the benchmark's own labelled windows. The benchmark is not shipped: point
//! `--dir` at a clone of `github.com/numenta/NAB` (its `data/` and
//! `labels/combined_windows.json`).
//!
//! A window counts as found when any row inside it alarms; false alarms are
//! counted outside every window, as onsets (a flagged row after an unflagged
//! one) and as flagged rows, per 1,000 rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::anomaly::{DetectorValidParams, Seasonality};
use fieldpulse_models::wide_csv::{parse_iso8601, WideCsvOptions};
use serde::Serialize;

use crate::anomaly_runs::{default_params, print_json, score_csv, BenchmarkArgs};

/// Arguments of `fieldpulse eval nab`.
#[derive(Debug, Args)]
pub struct NabArgs {
    /// Root of a NAB checkout: `data/<category>/<file>.csv` (`timestamp,value`)
    /// and `labels/combined_windows.json`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub run: BenchmarkArgs,
}

/// One file's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NabFile {
    /// `category/file.csv`, as the labels name it.
    pub file: String,
    /// Rows scored.
    pub rows: u64,
    /// Rows left out: a wrong field count or an unreadable time.
    pub rejected_rows: u64,
    /// Rows outside every labelled window.
    pub outside_rows: u64,
    /// Labelled windows.
    pub windows: usize,
    /// Windows with an alarm inside.
    pub windows_found: usize,
    /// Flagged rows, anywhere.
    pub flagged_rows: u64,
    /// Alarm onsets (a flagged row after an unflagged one) outside every window.
    pub false_onsets: u64,
    /// Flagged rows outside every window.
    pub false_flagged_rows: u64,
}

/// The whole run: per file, and summed.
#[derive(Debug, Clone, Serialize)]
pub struct NabReport {
    /// The detector's default threshold (score).
    pub threshold: f64,
    /// The seasonal profile learned.
    pub seasonal: &'static str,
    /// Per labelled file, in the labels' (sorted) order.
    pub files: Vec<NabFile>,
    /// Rows scored, over every file.
    pub rows: u64,
    /// Rows left out, over every file.
    pub rejected_rows: u64,
    /// Labelled windows, over every file.
    pub windows: usize,
    /// Windows with an alarm inside.
    pub windows_found: usize,
    /// Flagged rows over all rows.
    pub flagged_fraction: f64,
    /// Alarm onsets outside the windows, per 1,000 rows outside them.
    pub false_onsets_per_1000: f64,
    /// Flagged rows outside the windows, per 1,000 rows outside them.
    pub false_flagged_per_1000: f64,
}

/// Runs `fieldpulse eval nab`.
pub fn run(args: NabArgs) -> anyhow::Result<()> {
    let report = evaluate(&args.dir, args.run.seasonal)?;
    if args.run.json {
        return print_json(&report);
    }
    println!(
        "NAB: {} files, threshold {}, seasonal {}; false alarms outside the labelled windows",
        report.files.len(),
        report.threshold,
        report.seasonal
    );
    println!(
        "{:<58} {:>7} {:>8} {:>9} {:>12}",
        "file", "rows", "flagged", "windows", "false onsets"
    );
    for f in &report.files {
        println!(
            "{:<58} {:>7} {:>7.2}% {:>5} / {:<2} {:>12}",
            f.file,
            f.rows,
            100.0 * f.flagged_rows as f64 / f.rows.max(1) as f64,
            f.windows_found,
            f.windows,
            f.false_onsets
        );
    }
    println!(
        "total: {} rows, {:.2} % flagged, windows found {} / {}, false onsets {:.2} and false flagged rows {:.1} per 1,000 rows outside the windows",
        report.rows,
        100.0 * report.flagged_fraction,
        report.windows_found,
        report.windows,
        report.false_onsets_per_1000,
        report.false_flagged_per_1000
    );
    if report.rejected_rows > 0 {
        println!(
            "{} rows left out (a wrong field count or an unreadable time)",
            report.rejected_rows
        );
    }
    Ok(())
}

/// Scores every labelled file under `dir` and sums the results.
///
/// # Errors
/// A missing or malformed labels file, a labelled file that is missing or
/// unreadable, a window whose time does not parse.
pub fn evaluate(dir: &Path, seasonal: Seasonality) -> anyhow::Result<NabReport> {
    let labels_path = dir.join("labels").join("combined_windows.json");
    let text = std::fs::read_to_string(&labels_path).with_context(|| {
        format!(
            "reading {} (--dir should be a NAB checkout)",
            labels_path.display()
        )
    })?;
    let labels: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected {{\"file\": [[start, end], ...]}}",
                labels_path.display()
            )
        })?;
    if labels.is_empty() {
        bail!("{}: no labelled files", labels_path.display());
    }
    let params = default_params(seasonal)?;
    let threshold = params.threshold();
    let mut files = Vec::with_capacity(labels.len());
    for (file, windows) in &labels {
        let mut spans = Vec::with_capacity(windows.len());
        for [start, end] in windows {
            let parse = |t: &str| {
                parse_iso8601(t).with_context(|| {
                    format!("{}: {file}: window time {t:?}", labels_path.display())
                })
            };
            spans.push((parse(start)?, parse(end)?));
        }
        let path = dir.join("data").join(file);
        files.push(
            score_file(file.clone(), &path, &spans, params.clone())
                .with_context(|| format!("scoring {}", path.display()))?,
        );
    }
    let sum = |f: fn(&NabFile) -> u64| files.iter().map(f).sum::<u64>();
    let (rows, outside) = (sum(|f| f.rows), sum(|f| f.outside_rows));
    let per_1000 = |n: u64| 1_000.0 * n as f64 / outside.max(1) as f64;
    Ok(NabReport {
        threshold,
        seasonal: seasonal.name(),
        rows,
        rejected_rows: sum(|f| f.rejected_rows),
        windows: files.iter().map(|f| f.windows).sum(),
        windows_found: files.iter().map(|f| f.windows_found).sum(),
        flagged_fraction: sum(|f| f.flagged_rows) as f64 / rows.max(1) as f64,
        false_onsets_per_1000: per_1000(sum(|f| f.false_onsets)),
        false_flagged_per_1000: per_1000(sum(|f| f.false_flagged_rows)),
        files,
    })
}

/// One file (`timestamp` the time column), scored as `fieldpulse detect`
/// scores it, against its windows (inclusive epoch-ms spans).
fn score_file(
    file: String,
    path: &Path,
    windows: &[(i64, i64)],
    params: DetectorValidParams,
) -> anyhow::Result<NabFile> {
    let opts = WideCsvOptions {
        time_col: Some("timestamp".to_string()),
        ..WideCsvOptions::default()
    };
    let mut found = vec![false; windows.len()];
    let mut r = NabFile {
        file,
        rows: 0,
        rejected_rows: 0,
        outside_rows: 0,
        windows: windows.len(),
        windows_found: 0,
        flagged_rows: 0,
        false_onsets: 0,
        false_flagged_rows: 0,
    };
    // Per asset (a benchmark file holds one series).
    let mut was_flagged: Vec<bool> = Vec::new();
    let scored = score_csv(path, &opts, params, |row| {
        if was_flagged.len() <= row.asset {
            was_flagged.resize(row.asset + 1, false);
        }
        let flagged = row.alarm;
        r.rows += 1;
        r.flagged_rows += u64::from(flagged);
        let ts = row.ts_ms;
        match windows.iter().position(|&(a, b)| (a..=b).contains(&ts)) {
            Some(w) => found[w] |= flagged,
            None => {
                r.outside_rows += 1;
                r.false_flagged_rows += u64::from(flagged);
                r.false_onsets += u64::from(flagged && !was_flagged[row.asset]);
            }
        }
        was_flagged[row.asset] = flagged;
    })?;
    r.rejected_rows = scored.rejected_rows;
    r.windows_found = found.iter().filter(|f| **f).count();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NAB-layout directory: a quiet series with one spike inside its
    /// window and a second file without windows.
    fn nab_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data").join("realKnownCause");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("labels")).expect("mkdir");
        let write = |name: &str, spike_at: Option<usize>| {
            let mut text = String::from("timestamp,value\n");
            for i in 0..3_000usize {
                // 5-minute readings from 2014-04-01, a deterministic wiggle.
                let (d, rem) = (1 + i / 288, (i % 288) * 5);
                let noise = ((i * 7_919) % 101) as f64 / 100.0;
                let v = if spike_at == Some(i) {
                    80.0
                } else {
                    20.0 + noise
                };
                text += &format!("2014-04-{d:02} {:02}:{:02}:00,{v}\n", rem / 60, rem % 60);
            }
            std::fs::write(data.join(name), text).expect("write");
        };
        // Row 2,000: day 7, minute 5 * (2000 - 1728) = 1360, 22:40.
        write("spike.csv", Some(2_000));
        write("quiet.csv", None);
        std::fs::write(
            dir.path().join("labels").join("combined_windows.json"),
            r#"{
                "realKnownCause/spike.csv": [
                    ["2014-04-07 22:00:00.000000", "2014-04-07 23:30:00.000000"]
                ],
                "realKnownCause/quiet.csv": []
            }"#,
        )
        .expect("write");
        dir
    }

    #[test]
    fn a_spike_inside_its_window_is_found_and_a_quiet_file_raises_no_false_alarm() {
        let dir = nab_dir();
        let r = evaluate(dir.path(), Seasonality::Weekly).expect("evaluates");
        assert_eq!(r.files.len(), 2);
        let spike = r
            .files
            .iter()
            .find(|f| f.file.ends_with("spike.csv"))
            .expect("spike");
        let quiet = r
            .files
            .iter()
            .find(|f| f.file.ends_with("quiet.csv"))
            .expect("quiet");
        assert_eq!((spike.windows, spike.windows_found), (1, 1));
        // 5-minute rows, window 22:00-23:30 inclusive: 19 rows inside.
        assert_eq!(spike.outside_rows, 3_000 - 19);
        assert_eq!((quiet.windows, quiet.outside_rows), (0, 3_000));
        assert_eq!(r.rejected_rows, 0);
        assert_eq!(quiet.false_onsets, 0, "{quiet:?}");
        assert_eq!((r.rows, r.windows, r.windows_found), (6_000, 1, 1));
        assert!(
            r.flagged_fraction > 0.0 && r.flagged_fraction < 0.01,
            "{r:?}"
        );
    }

    #[test]
    fn a_row_with_an_unreadable_time_is_counted_not_scored() {
        let dir = nab_dir();
        let path = dir.path().join("data/realKnownCause/quiet.csv");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text += "yesterday,20.5\n";
        std::fs::write(&path, text).expect("write");
        let r = evaluate(dir.path(), Seasonality::Weekly).expect("evaluates");
        let quiet = r
            .files
            .iter()
            .find(|f| f.file.ends_with("quiet.csv"))
            .expect("quiet");
        assert_eq!((quiet.rows, quiet.rejected_rows), (3_000, 1));
        assert_eq!(r.rejected_rows, 1);
    }

    #[test]
    fn a_labelled_file_that_is_missing_is_named() {
        let dir = nab_dir();
        std::fs::remove_file(dir.path().join("data/realKnownCause/quiet.csv")).expect("rm");
        let err = format!(
            "{:#}",
            evaluate(dir.path(), Seasonality::Weekly).unwrap_err()
        );
        assert!(err.contains("quiet.csv"), "{err}");
    }

    #[test]
    fn a_directory_without_labels_says_what_it_expected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = format!(
            "{:#}",
            evaluate(dir.path(), Seasonality::Weekly).unwrap_err()
        );
        assert!(
            err.contains("combined_windows.json") && err.contains("NAB checkout"),
            "{err}"
        );
    }
}
