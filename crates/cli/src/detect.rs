//! `fieldpulse detect`: score every row of a wide telemetry CSV and write the
//! scores next to the input's time (and asset) column, in input order.
//! Streaming: memory is O(assets), not O(rows).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::anomaly::{FleetScorer, RowStatus, Seasonality};
use fieldpulse_models::wide_csv::{
    RejectReason, TimeFormat, WideCsvLayout, WideCsvOptions, WideCsvReader, WideRecord,
};
use serde::Serialize;

use crate::anomaly_runs::{alarms, default_params, surprise_of_score, AssetIds};
use crate::detect_labels::{parse_label, LabelReport, LabelScore};
use crate::read_ahead::{ReadAhead, ReadTotals};
use crate::wide_csv_args::WideCsvArgs;

/// Arguments of `fieldpulse detect`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse detect --input pumps.csv --output scores.csv --asset-col pump_id --exclude site --json"
)]
pub struct DetectArgs {
    /// Wide CSV: header row, `,` or `;` (then decimal commas are read), a time column, numeric sensor columns.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the scores ([date,] time, [asset], score, surprise, is_anomaly, top_sensor).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub columns: WideCsvArgs,
    /// Score at or above which `is_anomaly` is 1 (default 0.9999, the same as
    /// `--min-surprise 4`).
    #[arg(long, conflicts_with = "min_surprise")]
    pub threshold: Option<f64>,
    /// Surprise (-log10 of the tail probability) at or above which
    /// `is_anomaly` is 1: 4 is one row in 10,000 of the asset's own, 6 one in
    /// a million; unbounded, so it ranks rows whose scores round to 1.
    #[arg(long)]
    pub min_surprise: Option<f64>,
    /// Seasonal profile learned per sensor (off, daily or weekly, UTC): the
    /// learned hour-of-week (or hour-of-day) profile is subtracted once it
    /// has three periods of data and explains the signal, so cycles neither
    /// alarm at their turning points nor hide anomalies at their peaks.
    /// Weekly also learns weekday/weekend patterns; daily applies after
    /// three days instead of three weeks but takes a weekend for an anomaly.
    #[arg(long, default_value = "weekly", value_parser = crate::anomaly_runs::parse_seasonality)]
    pub seasonal: Seasonality,
    /// Column of ground-truth labels (0 normal, any other number anomalous;
    /// empty means unlabelled): not scored as a sensor; the summary compares
    /// the alarms with it row by row (precision, recall, F1, false- and
    /// missed-alarm rates) and by event (labelled runs found; false
    /// episodes, alarm runs touching no anomalous row, per 1,000 normal rows).
    #[arg(long)]
    pub label_col: Option<String>,
    /// Fail on the first rejected row or missing value instead of counting it.
    #[arg(long)]
    pub strict: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The run summary (`--json`).
#[derive(Debug, Serialize)]
struct DetectSummary {
    input: String,
    output: String,
    rows: u64,
    scored_rows: u64,
    rejected_rows: u64,
    rejected: Rejected,
    rows_with_missing: u64,
    missing_values: u64,
    duplicate_rows: u64,
    out_of_order_rows: u64,
    warmup_rows: u64,
    /// Times an asset's baseline was re-anchored after alarming for
    /// `relearn_after` readings in a row (a persistent new normal).
    reanchors: u64,
    anomalies: u64,
    /// The alarms against `--label-col`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<LabelReport>,
    assets: usize,
    sensors: Vec<String>,
    time_col: String,
    /// The column of dates the time column's times of day belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    date_col: Option<String>,
    /// How the date column writes its dates (`iso8601`, `m/d/y`, `d/m/y`).
    #[serde(skip_serializing_if = "Option::is_none")]
    date_format: Option<&'static str>,
    asset_col: Option<String>,
    delimiter: String,
    time_format: Option<&'static str>,
    threshold: f64,
    min_surprise: f64,
    /// The seasonal profile learned (off, daily, weekly).
    seasonal: &'static str,
    seconds: f64,
    rows_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Rejected {
    field_count: u64,
    bad_time: u64,
}

/// Runs `fieldpulse detect`: scores, writes the output and prints the summary.
pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let summary = detect(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

/// Scores the input and writes the output; returns the run's summary.
fn detect(args: &DetectArgs) -> anyhow::Result<DetectSummary> {
    let started = Instant::now();
    let params = default_params(args.seasonal)?;
    let min_surprise = match (args.threshold, args.min_surprise) {
        (_, Some(s)) if s.is_nan() || s < 0.0 => {
            bail!("--min-surprise {s}: expected a number >= 0")
        }
        (_, Some(s)) => s,
        (Some(t), None) if !(t > 0.0 && t <= 1.0) => {
            bail!("--threshold {t}: expected a score in (0, 1]")
        }
        (t, None) => surprise_of_score(t.unwrap_or(params.threshold())),
    };
    let threshold = 1.0 - 10f64.powf(-min_surprise);
    let file =
        File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let opts = WideCsvOptions {
        label_col: args.label_col.clone(),
        ..args.columns.options()
    };
    let reader = WideCsvReader::new(BufReader::with_capacity(1 << 20, file), &opts)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let layout = reader.layout().clone();
    let sensors = layout.sensor_names();
    if layout.label_col.is_none() {
        for name in sensors.iter().filter(|s| looks_like_labels(s)) {
            eprintln!(
                "detect: warning: column {name:?} is scored as a sensor; if it holds ground truth, \
                 pass --label-col {name:?} (the alarms are then compared with it)"
            );
        }
    }
    let scorer =
        FleetScorer::new(params, sensors.clone(), 0).context("setting up the detectors")?;
    let out = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let d = layout.delimiter as char;
    let mut header = String::new();
    if let Some(c) = layout.date_col {
        header.push_str(&quote(&layout.columns[c], d));
        header.push(d);
    }
    header.push_str(&quote(layout.time_name(), d));
    if let Some(a) = layout.asset_name() {
        header.push(d);
        header.push_str(&quote(a, d));
    }
    writeln!(out, "{header}{d}score{d}surprise{d}is_anomaly{d}top_sensor")
        .context("writing the output header")?;
    let mut run = Run {
        args,
        layout: &layout,
        // Quoted once, not per row.
        quoted_sensors: sensors.iter().map(|s| quote(s, d)).collect(),
        min_surprise,
        scorer,
        assets: AssetIds::default(),
        label_score: LabelScore::default(),
        out,
        rows: 0,
        scored: 0,
        anomalies: 0,
        first_reject: None,
    };
    let mut last_progress = Instant::now();
    // Reading and parsing on a second thread, scoring and writing here.
    let totals = std::thread::scope(|scope| -> anyhow::Result<ReadTotals> {
        let mut ahead = ReadAhead::spawn(scope, reader);
        while let Some(batch) = ahead.next_batch() {
            let batch = batch.with_context(|| format!("reading {}", args.input.display()))?;
            for rec in &batch {
                run.record(rec)?;
            }
            ahead.recycle(batch);
            if last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                let rate = run.rows as f64 / started.elapsed().as_secs_f64();
                eprintln!(
                    "detect: {} rows, {} anomalies ({:.2} M rows/s)",
                    run.rows,
                    run.anomalies,
                    rate / 1e6
                );
            }
        }
        Ok(ahead.finish())
    })?;
    let Run {
        scorer,
        assets,
        label_score,
        mut out,
        rows,
        scored,
        anomalies,
        first_reject,
        ..
    } = run;
    out.flush()
        .with_context(|| format!("writing {}", args.output.display()))?;
    if let (0, Some((reason, what))) = (scored, first_reject) {
        // Every row was rejected, most likely all for the same reason: a
        // time format this reader does not know (`31-Jan-2024`, say), or
        // another delimiter inside the values.
        let why = match reason {
            RejectReason::BadTime => format!(
                "the times in column {:?} cannot be read; times are epoch seconds or \
                 milliseconds, or ISO 8601 such as 2024-01-31T12:00:00Z or 2024-01-31 12:00 \
                 (pass --time-col if this is not the time column)",
                layout.time_name()
            ),
            RejectReason::FieldCount => format!(
                "the rows do not have the header's {} fields (values holding the delimiter \
                 {:?} unquoted?)",
                layout.columns.len(),
                layout.delimiter as char
            ),
        };
        bail!(
            "{}: no row was scored: {why} (the first rejected row: {what})",
            args.input.display()
        );
    }
    let counts = totals.counts;
    let sc = scorer.counters();
    let seconds = started.elapsed().as_secs_f64();
    let summary = DetectSummary {
        input: args.input.display().to_string(),
        output: args.output.display().to_string(),
        rows,
        scored_rows: scored,
        rejected_rows: counts.rejected_rows(),
        rejected: Rejected {
            field_count: counts.field_count,
            bad_time: counts.bad_time,
        },
        rows_with_missing: counts.rows_with_missing,
        missing_values: counts.missing_values,
        duplicate_rows: sc.duplicate_rows,
        out_of_order_rows: sc.out_of_order_rows,
        warmup_rows: sc.warmup_rows,
        reanchors: sc.reanchors,
        anomalies,
        labels: args
            .label_col
            .as_deref()
            .map(|name| label_score.report(name)),
        assets: assets.count(),
        sensors,
        time_col: layout.time_name().to_string(),
        date_col: layout.date_col.map(|c| layout.columns[c].clone()),
        date_format: layout.date_format.map(TimeFormat::name),
        asset_col: layout.asset_name().map(str::to_string),
        delimiter: (layout.delimiter as char).to_string(),
        time_format: totals.time_format.map(TimeFormat::name),
        threshold,
        min_surprise,
        seasonal: args.seasonal.name(),
        seconds,
        rows_per_s: if seconds > 0.0 {
            rows as f64 / seconds
        } else {
            0.0
        },
    };
    Ok(summary)
}

/// One run's scorer and output: each record in, one output row out.
struct Run<'a> {
    args: &'a DetectArgs,
    layout: &'a WideCsvLayout,
    quoted_sensors: Vec<String>,
    min_surprise: f64,
    scorer: FleetScorer,
    assets: AssetIds,
    label_score: LabelScore,
    out: BufWriter<File>,
    rows: u64,
    scored: u64,
    anomalies: u64,
    /// The first rejected row (why, and its line and offending part), to
    /// name when no row is scored.
    first_reject: Option<(RejectReason, String)>,
}

impl Run<'_> {
    /// Scores a record and writes its row: a rejected record gets empty
    /// scores, or ends the run under `--strict` (as does a missing value or
    /// a timestamp out of order).
    fn record(&mut self, rec: &WideRecord) -> anyhow::Result<()> {
        let (args, layout) = (self.args, self.layout);
        self.rows += 1;
        let db = layout.delimiter;
        let ts = match (rec.reject, rec.ts_ms) {
            (None, Some(ts)) => ts,
            (reason, _) => {
                let why = reason.map_or("bad_time", |r| r.name());
                if self.first_reject.is_none() {
                    self.first_reject = Some(describe_reject(reason, layout, rec));
                }
                if args.strict {
                    bail!(
                        "{}: line {}: rejected ({why}) and --strict is set",
                        args.input.display(),
                        rec.line_no
                    );
                }
                let out = &mut self.out;
                return write_key(out, layout, rec)
                    .and_then(|()| out.write_all(&[db, db, db, db, b'\n']))
                    .context("writing scores");
            }
        };
        if args.strict && rec.n_missing > 0 {
            let col = layout.sensor_cols[rec.values.iter().position(|v| v.is_nan()).unwrap_or(0)];
            bail!(
                "{}: line {}: column {:?} is empty or not a number and --strict is set",
                args.input.display(),
                rec.line_no,
                layout.columns[col]
            );
        }
        let asset_name = layout.asset_col.map_or("", |c| rec.field(c));
        let asset = self.assets.get(asset_name, &mut self.scorer);
        let r = self.scorer.score_row(asset, ts, &rec.values);
        self.scored += 1;
        let is_anomaly = alarms(&r, self.min_surprise);
        self.anomalies += u64::from(is_anomaly);
        if let Some(c) = layout.label_col {
            self.label_score
                .add(asset, parse_label(rec.field(c)), is_anomaly);
        }
        if args.strict && r.status != RowStatus::InOrder && r.status != RowStatus::First {
            bail!(
                "{}: line {}: {:?} timestamp for this asset and --strict is set",
                args.input.display(),
                rec.line_no,
                r.status
            );
        }
        let top = match (r.in_warmup, r.top_sensor) {
            (false, Some(t)) => self.quoted_sensors[t].as_bytes(),
            _ => b"",
        };
        let out = &mut self.out;
        write_key(out, layout, rec)
            .and_then(|()| out.write_all(&[db]))
            .and_then(|()| write!(out, "{}", r.score))
            .and_then(|()| out.write_all(&[db]))
            .and_then(|()| write_fixed4(out, r.surprise))
            .and_then(|()| out.write_all(&[db, b'0' + u8::from(is_anomaly), db]))
            .and_then(|()| out.write_all(top))
            .and_then(|()| out.write_all(b"\n"))
            .context("writing scores")
    }
}

/// Writes a row's time (and asset) as read, quoted where needed.
/// A rejected record's reason, its line and the part that is wrong.
fn describe_reject(
    reason: Option<RejectReason>,
    layout: &WideCsvLayout,
    rec: &WideRecord,
) -> (RejectReason, String) {
    match reason {
        Some(RejectReason::FieldCount) => (
            RejectReason::FieldCount,
            format!("line {}, {} fields", rec.line_no, rec.n_fields()),
        ),
        Some(RejectReason::BadTime) | None => (
            RejectReason::BadTime,
            format!(
                "line {}, time {:?}",
                rec.line_no,
                rec.field(layout.time_col).trim()
            ),
        ),
    }
}

fn write_key(
    out: &mut impl Write,
    layout: &WideCsvLayout,
    rec: &WideRecord,
) -> std::io::Result<()> {
    if let Some(c) = layout.date_col {
        write_field(out, rec.field(c), layout.delimiter)?;
        out.write_all(&[layout.delimiter])?;
    }
    write_field(out, rec.field(layout.time_col), layout.delimiter)?;
    if let Some(c) = layout.asset_col {
        out.write_all(&[layout.delimiter])?;
        write_field(out, rec.field(c), layout.delimiter)?;
    }
    Ok(())
}

/// Whether a column's name says it holds ground-truth labels rather than a
/// reading (`label`, `is_anomaly`, …; case and separators ignored).
fn looks_like_labels(name: &str) -> bool {
    let key: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(
        key.as_str(),
        "label" | "labels" | "isanomaly" | "anomaly" | "anomalylabel" | "groundtruth"
    )
}

/// The summary as lines for a person (on stderr; stdout stays for `--json`).
fn print_summary(summary: &DetectSummary) {
    eprintln!(
        "detect: {} rows, {} scored, {} rejected (field count {}, bad time {}), {} missing values, {} duplicate and {} out-of-order timestamps, {} anomalies at surprise >= {} ({} baselines re-anchored) over {} assets × {} sensors; wrote {} in {:.1}s",
        summary.rows,
        summary.scored_rows,
        summary.rejected_rows,
        summary.rejected.field_count,
        summary.rejected.bad_time,
        summary.missing_values,
        summary.duplicate_rows,
        summary.out_of_order_rows,
        summary.anomalies,
        summary.min_surprise,
        summary.reanchors,
        summary.assets,
        summary.sensors.len(),
        summary.output,
        summary.seconds
    );
    if let Some(l) = &summary.labels {
        eprintln!(
            "detect: against {:?}: precision {:.3}, recall {:.3}, F1 {:.3}, false alarm rate {:.2} %, missed alarm rate {:.2} % ({} anomalous, {} normal, {} unlabelled rows); {} of {} labelled events alarmed, {} false alarm episodes ({:.3} per 1,000 normal rows)",
            l.column,
            l.precision,
            l.recall,
            l.f1,
            100.0 * l.far,
            100.0 * l.mar,
            l.anomalous_rows,
            l.normal_rows,
            l.unlabelled_rows,
            l.events_found,
            l.events,
            l.false_episodes,
            l.false_onsets_per_1k
        );
    }
}

/// Writes `x` with 4 decimals, as `{:.4}` would (ties aside): integer
/// formatting of `x × 10^4`, several times faster than float formatting with
/// a precision, which is most of a scored row's output cost otherwise.
fn write_fixed4(out: &mut impl Write, x: f64) -> std::io::Result<()> {
    if !(0.0..1e14).contains(&x) {
        return write!(out, "{x:.4}");
    }
    let v = (x * 1e4).round() as u64;
    let f = (v % 10_000) as u16;
    let digit = |d: u16| b'0' + (d % 10) as u8;
    out.write_all(itoa::Buffer::new().format(v / 10_000).as_bytes())?;
    out.write_all(&[
        b'.',
        digit(f / 1000),
        digit(f / 100),
        digit(f / 10),
        digit(f),
    ])
}

/// Writes a field as it was read, quoted (see [`quote`]) only where needed.
fn write_field(out: &mut impl Write, field: &str, delim: u8) -> std::io::Result<()> {
    if field.bytes().any(|b| needs_quotes(b, delim)) {
        out.write_all(quote(field, delim as char).as_bytes())
    } else {
        out.write_all(field.as_bytes())
    }
}

/// Whether a field holding byte `b` must be quoted in CSV output.
fn needs_quotes(b: u8, delim: u8) -> bool {
    b == delim || matches!(b, b'"' | b'\n' | b'\r')
}

/// Quotes a field for CSV output when it holds the delimiter, a quote or a
/// line break.
fn quote(field: &str, delim: char) -> String {
    if field.bytes().any(|b| needs_quotes(b, delim as u8)) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_columns_are_told_from_readings_by_name() {
        for name in [
            "label",
            "Label",
            "is_anomaly",
            "IS-ANOMALY",
            "anomaly",
            "ground_truth",
        ] {
            assert!(looks_like_labels(name), "{name}");
        }
        for name in ["value", "temp", "labelled_temp", "anomaly_score", "vib_rms"] {
            assert!(!looks_like_labels(name), "{name}");
        }
    }

    fn args(input: PathBuf, output: PathBuf) -> DetectArgs {
        DetectArgs {
            input,
            output,
            columns: WideCsvArgs {
                exclude: vec!["site_id".into()],
                ..WideCsvArgs::default()
            },
            threshold: None,
            min_surprise: None,
            seasonal: Seasonality::Weekly,
            label_col: None,
            strict: false,
            json: false,
        }
    }

    #[test]
    fn fixed_four_decimals_match_float_formatting() {
        for x in [
            0.0,
            0.00004,
            0.00005001,
            1.0,
            3.99995,
            4.0,
            12.345_678,
            99_999.999_99,
            1e15,
            f64::INFINITY,
        ] {
            let mut got = Vec::new();
            write_fixed4(&mut got, x).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), format!("{x:.4}"), "{x}");
        }
    }

    /// A `;` file with ISO times, an excluded numeric column, a bad row and a
    /// spike after the warm-up: every input row comes back in order, the bad
    /// one with empty scores, the spike flagged and attributed.
    #[test]
    fn detect_keeps_row_order_flags_the_spike_and_blanks_rejected_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.csv");
        let output = dir.path().join("out.csv");
        let mut text = String::from("datetime;site_id;temp;vib\n");
        let mut seed = 1u64;
        let mut noise = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for i in 0..400u32 {
            let (h, m) = (i / 60, i % 60);
            let temp = if i == 300 { 95.0 } else { 70.0 + noise() };
            text.push_str(&format!(
                "2026-01-0{}T{:02}:{:02}:00Z;7;{temp:.3};{:.4}\n",
                1 + h / 24,
                h % 24,
                m,
                0.3 + 0.01 * noise()
            ));
            if i == 200 {
                text.push_str("not a time;7;70;0.3\n");
            }
        }
        std::fs::write(&input, text).expect("write input");
        run(args(input, output.clone())).expect("detect runs");
        let out = std::fs::read_to_string(&output).expect("read output");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "datetime;score;surprise;is_anomaly;top_sensor");
        assert_eq!(lines.len(), 1 + 401);
        assert_eq!(lines[202], "not a time;;;;");
        let spike: Vec<&str> = lines[302].split(';').collect();
        assert!(spike[0].starts_with("2026-01-01T05:00"), "{}", lines[302]);
        assert_eq!((spike[3], spike[4]), ("1", "temp"), "{}", lines[302]);
        let surprise: f64 = spike[2].parse().expect("surprise is a number");
        assert!(surprise >= 4.0, "{}", lines[302]);
        let alarms = lines[1..]
            .iter()
            .filter(|l| l.split(';').nth(3) == Some("1"))
            .count();
        assert!(
            alarms <= 3,
            "{alarms} alarms on a quiet file with one spike"
        );
    }

    /// A label column is compared with the alarms, not scored: two labelled
    /// spikes after the warm-up, one labelled normal stretch.
    #[test]
    fn a_label_column_is_compared_with_the_alarms_and_not_scored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.csv");
        let mut text = String::from("ts,x,anomaly\n");
        for i in 0..600u32 {
            let spike = i == 300 || i == 450;
            let x = if spike {
                60.0
            } else {
                20.0 + 0.37 * f64::from(i % 7)
            };
            let label = if i == 500 {
                String::new()
            } else {
                u8::from(spike).to_string()
            };
            text.push_str(&format!("{},{x},{label}\n", 1_767_225_600 + 60 * i));
        }
        std::fs::write(&input, text).expect("write input");
        let mut a = args(input.clone(), dir.path().join("out.csv"));
        a.columns.exclude.clear();
        a.label_col = Some("anomaly".into());
        let summary = detect(&a).expect("detect runs");
        assert_eq!(summary.sensors, vec!["x".to_string()]);
        let l = summary.labels.expect("a label report");
        assert_eq!((l.anomalous_rows, l.unlabelled_rows), (2, 1));
        assert_eq!(l.normal_rows, 600 - 3);
        assert_eq!((l.events, l.events_found), (2, 2), "{l:?}");
        assert_eq!(l.recall, 1.0);
        assert_eq!(l.false_positives, summary.anomalies - 2);
        assert!(l.false_episodes <= l.false_positives, "{l:?}");
        // A missing label column is named with the file's columns.
        a.label_col = Some("label".into());
        let err = format!("{:#}", detect(&a).expect_err("no such column"));
        assert!(err.contains("\"label\" for --label-col"), "{err}");
    }

    #[test]
    fn strict_mode_fails_on_the_first_bad_row_with_its_line_number() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.csv");
        std::fs::write(
            &input,
            "ts,site_id,x\n1767225600,1,1.0\n1767225660,1,oops\n",
        )
        .expect("write input");
        let mut a = args(input, dir.path().join("out.csv"));
        a.strict = true;
        let err = run(a)
            .expect_err("strict rejects the bad value")
            .to_string();
        assert!(err.contains("line 3") && err.contains("\"x\""), "{err}");
    }

    #[test]
    fn a_file_whose_times_all_fail_to_parse_is_an_error_naming_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.csv");
        std::fs::write(
            &input,
            "time,site_id,x\n31-Jan-2024 13:00,1,1.0\n31-Jan-2024 13:01,1,2.0\n",
        )
        .expect("write input");
        let err = run(args(input.clone(), dir.path().join("out.csv")))
            .expect_err("nothing could be scored");
        let err = format!("{err:#}");
        assert!(
            err.contains("no row was scored")
                && err.contains("line 2, time \"31-Jan-2024 13:00\"")
                && err.contains("ISO 8601"),
            "{err}"
        );
        // Rows of another shape than the header's, the same.
        std::fs::write(&input, "time,site_id,x\n1767225600,1,2.0,7\n").expect("write input");
        let err = run(args(input.clone(), dir.path().join("out.csv")))
            .expect_err("nothing could be scored");
        let err = format!("{err:#}");
        assert!(
            err.contains("header's 3 fields") && err.contains("line 2, 4 fields"),
            "{err}"
        );
        // One readable time is enough to score the file, the rest counted.
        std::fs::write(
            &input,
            "time,site_id,x\n2024-01-31 13:00,1,1.0\n31-Jan-2024 13:01,1,2.0\n",
        )
        .expect("write input");
        let summary = detect(&args(input, dir.path().join("out.csv"))).expect("scored");
        assert_eq!((summary.scored_rows, summary.rejected.bad_time), (1, 1));
    }

    /// A logger's `Date;Time;…` export: the output keeps both columns.
    #[test]
    fn separate_date_and_time_columns_are_scored_and_written_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.csv");
        let output = dir.path().join("out.csv");
        std::fs::write(
            &input,
            "Date;Time;site_id;x\n2024-01-31;23:59;1;1,0\n2024-02-01;00:00;1;2,0\n",
        )
        .expect("write input");
        let summary = detect(&args(input, output.clone())).expect("scored");
        assert_eq!(summary.scored_rows, 2);
        assert_eq!(
            (summary.time_col.as_str(), summary.date_col.as_deref()),
            ("Time", Some("Date"))
        );
        let out = std::fs::read_to_string(output).expect("output");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("Date;Time;score;"), "{out}");
        assert!(lines[2].starts_with("2024-02-01;00:00;"), "{out}");
    }
}
