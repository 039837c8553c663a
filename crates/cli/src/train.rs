//! `fieldpulse train`: fit the failure/RUL model on telemetry plus Work
//! Order history and write the artifact directory (model.json,
//! model_card.json, report.html). Also holds `fieldpulse eval --model`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::failure::dataset::{feature_rows, Telemetry};
use fieldpulse_models::failure::evaluate::evaluate;
use fieldpulse_models::failure::train::{fingerprint, model_card, summary, train, TrainConfig};
use fieldpulse_models::failure::{report, FailureModel, FleetHistory};

/// Arguments of `fieldpulse train`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse simulate --assets 60 --days 365 --out sim-out\n  fieldpulse train --telemetry sim-out/telemetry.csv --work-orders sim-out/history.json --out models/v1"
)]
pub struct TrainArgs {
    /// Wide telemetry CSV (`asset, ts, sensor...`).
    #[arg(long)]
    telemetry: PathBuf,
    /// Work Order history: the simulator's / emulator's fixture JSON, or a
    /// `fieldpulse sync work-orders` directory.
    #[arg(long)]
    work_orders: PathBuf,
    /// Artifact directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Horizons of the "failure within" classifiers, days.
    #[arg(long, value_delimiter = ',', default_value = "7,14,30")]
    horizons: Vec<f64>,
    /// Precision the alarm thresholds aim for on the calibration slice.
    #[arg(long, default_value_t = 0.5)]
    target_precision: f64,
    /// Boosting rounds per model.
    #[arg(long, default_value_t = 120)]
    trees: usize,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

/// Arguments of `fieldpulse eval --model`.
#[derive(Debug, Args)]
pub struct EvalModelArgs {
    /// Artifact directory written by `fieldpulse train`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Wide telemetry CSV of held-out history.
    #[arg(long)]
    pub telemetry: Option<PathBuf>,
    /// Work Order history (fixture JSON or sync directory).
    #[arg(long)]
    pub work_orders: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Reads Work Order history from a fixture file or a sync directory.
pub fn read_history(path: &Path) -> anyhow::Result<FleetHistory> {
    if path.is_dir() {
        return FleetHistory::from_sync_dir(path)
            .with_context(|| format!("reading {}", path.display()));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    FleetHistory::from_json(&text).with_context(|| format!("reading {}", path.display()))
}

/// Reads a wide telemetry CSV.
pub fn read_telemetry(path: &Path) -> anyhow::Result<Telemetry> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let telemetry = Telemetry::read_csv(BufReader::new(file))
        .with_context(|| format!("reading {}", path.display()))?;
    if telemetry.n_rows() == 0 {
        bail!("{} has no readable rows", path.display());
    }
    Ok(telemetry)
}

/// Runs `fieldpulse train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    eprintln!("train: reading {}", args.telemetry.display());
    let telemetry = read_telemetry(&args.telemetry)?;
    let history = read_history(&args.work_orders)?;
    eprintln!(
        "train: {} readings of {} assets ({} rejected rows); {} work orders, {} merged, {} ignored, {} failures without a code",
        telemetry.n_rows(),
        telemetry.assets.len(),
        telemetry.rejected_rows,
        history.n_work_orders,
        history.n_merged,
        history.n_ignored,
        history.n_unknown_mode
    );
    let mut cfg = TrainConfig {
        horizons_days: args.horizons.clone(),
        target_precision: args.target_precision,
        ..TrainConfig::default()
    };
    cfg.booster.n_trees = args.trees;
    let mut last_step = String::new();
    let outcome = train(&telemetry, &history, &cfg, &mut |step, done, total| {
        if step != last_step {
            eprintln!("train: [{done:>2}/{total}] {step}");
            last_step = step.to_string();
        }
    })?;
    let telemetry_bytes = std::fs::read(&args.telemetry)?;
    let history_bytes = if args.work_orders.is_dir() {
        Vec::new()
    } else {
        std::fs::read(&args.work_orders)?
    };
    let data_fp = fingerprint(&[&telemetry_bytes, &history_bytes]);
    let created_by = format!(
        "fieldpulse train {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::var("USER").unwrap_or_else(|_| "unknown user".into())
    );
    let card = model_card(&outcome, &cfg, &data_fp, &created_by);
    outcome.model.save(&args.out)?;
    std::fs::write(
        args.out.join("model_card.json"),
        serde_json::to_string_pretty(&card)?,
    )?;
    std::fs::write(
        args.out.join("report.html"),
        report::render(&outcome, &card),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "artifact": args.out,
                "model_version": outcome.model.model_version,
                "train_seconds": seconds,
                "test": summary(&outcome.test),
            })
        );
    } else {
        eprintln!("train: wrote {} in {seconds:.1}s", args.out.display());
        for c in &outcome.test.classifiers {
            eprintln!(
                "  {:<11} {:>4}d  P {:.2} R {:.2} F1 {:.2} AP {:.2}  lead {}  false alarms/asset-month {:.2}",
                c.mode,
                c.horizon_days,
                c.precision,
                c.recall,
                c.f1,
                c.average_precision,
                c.median_lead_days.map_or("–".into(), |d| format!("{d:.1}d")),
                c.false_alarms_per_asset_month
            );
        }
        eprintln!("  RUL RMSE {:.2} days", outcome.test.rul_rmse_days);
    }
    Ok(())
}

/// Runs `fieldpulse eval --model DIR --telemetry F --work-orders H`.
pub fn run_eval_model(args: EvalModelArgs) -> anyhow::Result<()> {
    let (Some(model_dir), Some(telemetry_path), Some(history_path)) =
        (args.model, args.telemetry, args.work_orders)
    else {
        bail!("use `fieldpulse eval cmapss --data DIR` or `fieldpulse eval --model DIR --telemetry F.csv --work-orders H.json`");
    };
    let model = FailureModel::load(&model_dir)?;
    let telemetry = read_telemetry(&telemetry_path)?;
    let history = read_history(&history_path)?;
    let stride = telemetry.n_rows().div_ceil(200_000).max(1);
    let rows = feature_rows(&telemetry, &model.schema, &history, stride)?;
    let (_, t1) = telemetry.time_range().context("no rows")?;
    let all: Vec<usize> = (0..rows.len()).collect();
    let report = evaluate(&model, &rows, &all, &telemetry.assets, &history, t1);
    let out = serde_json::json!({
        "model_version": model.model_version,
        "metrics": summary(&report),
    });
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
