//! `fieldpulse score`: batch form of the cloud's failure scoring: every row
//! of a telemetry CSV through a trained artifact, one reading at a time with
//! the same streaming state the cloud keeps (no look-ahead).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use fieldpulse_models::failure::{FailureModel, FailureScorer, FleetHistory};

/// Arguments of `fieldpulse score`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse score --model models/v1 --input sim-out/telemetry.csv --work-orders sim-out/history.json --output scores.csv"
)]
pub struct ScoreArgs {
    /// Artifact directory written by `fieldpulse train`.
    #[arg(long)]
    model: PathBuf,
    /// Wide telemetry CSV (`asset, ts, sensor...`).
    #[arg(long)]
    input: PathBuf,
    /// Work Order history for the history features (without it they are missing).
    #[arg(long)]
    work_orders: Option<PathBuf>,
    /// Output CSV: asset, ts, one probability and alarm column per classifier, rul_days.
    #[arg(long, default_value = "scores.csv")]
    output: PathBuf,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `fieldpulse score`.
pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let model = std::sync::Arc::new(FailureModel::load(&args.model)?);
    let history = match &args.work_orders {
        Some(path) => crate::train::read_history(path, None)?,
        None => FleetHistory::default(),
    };
    let telemetry = crate::train::read_telemetry(&args.input)?;
    let positions = model.schema.sensor_positions(&telemetry.sensors)?;
    let mut scorer = FailureScorer::new(model.clone(), history)?;
    let file = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = BufWriter::new(file);
    write!(out, "asset,ts")?;
    for c in &model.classifiers {
        write!(out, ",p_{}_{}d", c.mode, c.horizon_days)?;
    }
    for c in &model.classifiers {
        write!(out, ",alarm_{}_{}d", c.mode, c.horizon_days)?;
    }
    writeln!(out, ",rul_days")?;
    let n_in = telemetry.sensors.len();
    let mut values = vec![0.0; positions.len()];
    let mut alarms = vec![0u64; model.classifiers.len()];
    let started = std::time::Instant::now();
    for i in 0..telemetry.n_rows() {
        let row = &telemetry.values[i * n_in..(i + 1) * n_in];
        for (v, &p) in values.iter_mut().zip(&positions) {
            *v = row[p];
        }
        let asset = &telemetry.assets[telemetry.asset_idx[i] as usize];
        let pred = scorer.score(asset, telemetry.ts_ms[i], &values)?;
        write!(out, "{asset},{}", telemetry.ts_ms[i])?;
        for p in &pred.probabilities {
            write!(out, ",{p:.5}")?;
        }
        for (k, a) in pred.alarms.iter().enumerate() {
            alarms[k] += u64::from(*a);
            write!(out, ",{}", u8::from(*a))?;
        }
        writeln!(out, ",{:.2}", pred.rul_days)?;
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "model_version": model.model_version,
        "rows": telemetry.n_rows(),
        "rejected_rows": telemetry.rejected_rows,
        "seconds": seconds,
        "ns_per_row": seconds * 1e9 / telemetry.n_rows().max(1) as f64,
        "alarm_rows": model.classifiers.iter().zip(&alarms)
            .map(|(c, n)| (format!("{}_{}d", c.mode, c.horizon_days), *n))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "output": args.output,
    });
    if args.json {
        println!("{summary}");
    } else {
        eprintln!(
            "score: {} rows → {} ({:.2}s)",
            telemetry.n_rows(),
            args.output.display(),
            seconds
        );
    }
    Ok(())
}
