//! `fieldpulse eval skab`: the anomaly detector on a checkout of the
//! Skoltech Anomaly Benchmark (a water pump test bench: 8 channels of
//! vibration, current, pressure, temperature, voltage and flow; valve and
//! other faults), each file scored as `fieldpulse detect --exclude
//! changepoint --label-col anomaly` scores it, `is_anomaly` against the
//! `anomaly` column row by row (as the benchmark's leaderboard scores
//! outlier detection). The benchmark is not shipped: point `--dir` at a
//! clone of `github.com/waico/SKAB`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::anomaly::Seasonality;
use fieldpulse_models::wide_csv::WideCsvOptions;
use serde::Serialize;

use crate::anomaly_runs::{default_params, print_json, score_csv, BenchmarkArgs};
use crate::detect_labels::{LabelReport, LabelScore};

/// The benchmark's folders of labelled files (`anomaly-free` has no labels).
const FOLDERS: [&str; 3] = ["valve1", "valve2", "other"];
/// Its label column, and the column marking change points (not a sensor).
const LABEL: &str = "anomaly";
const CHANGEPOINT: &str = "changepoint";

/// Arguments of `fieldpulse eval skab`.
#[derive(Debug, Args)]
pub struct SkabArgs {
    /// Root of a SKAB checkout: `data/{valve1,valve2,other}/<n>.csv`
    /// (`;`-separated, a `datetime` column, 8 channels, `anomaly`, `changepoint`).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub run: BenchmarkArgs,
}

/// One file's comparison.
#[derive(Debug, Serialize)]
pub struct SkabFile {
    /// `folder/file.csv`.
    pub file: String,
    /// Rows left out: a wrong field count or an unreadable time.
    pub rejected_rows: u64,
    /// The alarms against the file's labels.
    pub labels: LabelReport,
}

/// The whole run: per file, and over every row of every file.
#[derive(Debug, Serialize)]
pub struct SkabReport {
    /// The detector's default threshold (score).
    pub threshold: f64,
    /// The seasonal profile learned.
    pub seasonal: &'static str,
    /// Per file, folder by folder, in numeric order.
    pub files: Vec<SkabFile>,
    /// Rows left out, over every file.
    pub rejected_rows: u64,
    /// Every row of every file (false episodes counted per file).
    pub total: LabelReport,
}

/// Runs `fieldpulse eval skab`.
pub fn run(args: SkabArgs) -> anyhow::Result<()> {
    let report = evaluate(&args.dir, args.run.seasonal)?;
    if args.run.json {
        return print_json(&report);
    }
    println!(
        "SKAB: {} files, threshold {}, seasonal {}; rows alarmed against the `anomaly` column",
        report.files.len(),
        report.threshold,
        report.seasonal
    );
    println!(
        "{:<16} {:>6} {:>9} {:>6} {:>7} {:>7} {:>7}",
        "file", "rows", "anomalous", "F1", "FAR", "MAR", "events"
    );
    let line = |name: &str, l: &LabelReport| {
        println!(
            "{:<16} {:>6} {:>9} {:>6.3} {:>6.2}% {:>6.2}% {:>3} / {:<3}",
            name,
            l.anomalous_rows + l.normal_rows + l.unlabelled_rows,
            l.anomalous_rows,
            l.f1,
            100.0 * l.far,
            100.0 * l.mar,
            l.events_found,
            l.events
        );
    };
    for f in &report.files {
        line(&f.file, &f.labels);
    }
    line("total", &report.total);
    if report.rejected_rows > 0 {
        println!(
            "{} rows left out (a wrong field count or an unreadable time)",
            report.rejected_rows
        );
    }
    Ok(())
}

/// Scores every labelled file under `dir`.
///
/// # Errors
/// No labelled file under `dir/data`, or a file that is unreadable or lacks
/// the `anomaly` column.
pub fn evaluate(dir: &Path, seasonal: Seasonality) -> anyhow::Result<SkabReport> {
    let params = default_params(seasonal)?;
    let threshold = params.threshold();
    let mut paths = Vec::new();
    for folder in FOLDERS {
        let d = dir.join("data").join(folder);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut csvs: Vec<(u64, String, PathBuf)> = Vec::new();
        for e in entries {
            let path = e
                .with_context(|| format!("listing {}", d.display()))?
                .path();
            if path.extension().is_some_and(|x| x == "csv") {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                let stem = stem.unwrap_or_default();
                // Numeric names in numeric order (2 before 10), others after.
                csvs.push((stem.parse().unwrap_or(u64::MAX), stem, path));
            }
        }
        csvs.sort();
        paths.extend(
            csvs.into_iter()
                .map(|(_, stem, p)| (format!("{folder}/{stem}.csv"), p)),
        );
    }
    if paths.is_empty() {
        bail!(
            "{}: no labelled file in data/{{{}}} (--dir should be a SKAB checkout)",
            dir.display(),
            FOLDERS.join(",")
        );
    }
    let opts = WideCsvOptions {
        exclude: vec![CHANGEPOINT.to_string()],
        label_col: Some(LABEL.to_string()),
        ..WideCsvOptions::default()
    };
    let mut total = LabelScore::default();
    let mut files = Vec::with_capacity(paths.len());
    let (mut rejected_rows, mut assets_before) = (0, 0);
    for (name, path) in paths {
        let mut own = LabelScore::default();
        let scored = score_csv(&path, &opts, params.clone(), |row| {
            own.add(row.asset, row.label, row.alarm);
            // Each file's series its own: episodes never run from one file into the next.
            total.add(assets_before + row.asset, row.label, row.alarm);
        })
        .with_context(|| {
            format!(
                "scoring {} (a SKAB file: a time column, channels, `{LABEL}` and `{CHANGEPOINT}`)",
                path.display()
            )
        })?;
        assets_before += scored.assets;
        rejected_rows += scored.rejected_rows;
        files.push(SkabFile {
            file: name,
            rejected_rows: scored.rejected_rows,
            labels: own.report(LABEL),
        });
    }
    Ok(SkabReport {
        threshold,
        seasonal: seasonal.name(),
        files,
        rejected_rows,
        total: total.report(LABEL),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SKAB-layout file: two steady channels, one of which steps far off
    /// its level for rows `fault` (labelled 1 there).
    fn write_file(dir: &Path, folder: &str, name: &str, fault: std::ops::Range<usize>) {
        let d = dir.join("data").join(folder);
        std::fs::create_dir_all(&d).expect("mkdir");
        let mut text = String::from("datetime;Current;Pressure;anomaly;changepoint\n");
        for i in 0..1_200usize {
            let noise = ((i * 7_919) % 101) as f64 / 1_000.0;
            let bad = fault.contains(&i);
            let pressure = if bad { 5.0 } else { 1.0 + noise };
            text += &format!(
                "2020-03-09 {:02}:{:02}:{:02};{};{pressure};{};{}\n",
                10 + i / 3_600,
                i / 60 % 60,
                i % 60,
                2.0 + noise,
                u8::from(bad),
                u8::from(i == fault.start)
            );
        }
        std::fs::write(d.join(name), text).expect("write");
    }

    #[test]
    fn a_labelled_fault_is_found_and_the_totals_sum_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_file(dir.path(), "valve1", "0.csv", 800..900);
        write_file(dir.path(), "other", "10.csv", 900..1_000);
        write_file(dir.path(), "other", "2.csv", 700..750);
        let r = evaluate(dir.path(), Seasonality::Weekly).expect("evaluates");
        let names: Vec<&str> = r.files.iter().map(|f| f.file.as_str()).collect();
        // Folders in the benchmark's order, files numerically.
        assert_eq!(names, ["valve1/0.csv", "other/2.csv", "other/10.csv"]);
        for f in &r.files {
            assert_eq!(f.labels.events_found, 1, "{f:?}");
            // The return to the old level alarms briefly too.
            assert!(f.labels.recall > 0.9 && f.labels.far < 0.05, "{f:?}");
        }
        assert_eq!(r.total.anomalous_rows, 250);
        assert_eq!(r.total.normal_rows, 3 * 1_200 - 250);
        assert_eq!(r.total.events, 3);
        assert_eq!(r.rejected_rows, 0);
    }

    #[test]
    fn a_directory_without_labelled_files_says_what_it_expected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = format!(
            "{:#}",
            evaluate(dir.path(), Seasonality::Weekly).unwrap_err()
        );
        assert!(
            err.contains("SKAB checkout") && err.contains("valve1"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_the_label_column_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("data").join("valve2");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(
            d.join("1.csv"),
            "datetime;Current\n2020-03-09 10:00:00;1.0\n",
        )
        .expect("write");
        let err = format!(
            "{:#}",
            evaluate(dir.path(), Seasonality::Weekly).unwrap_err()
        );
        assert!(
            err.contains("valve2/1.csv") && err.contains("anomaly"),
            "{err}"
        );
    }
}
