//! `fieldpulse score`: batch form of the cloud's failure scoring: every row
//! of a telemetry CSV through a trained artifact, one reading at a time with
//! the same streaming state the cloud keeps (no look-ahead).
//!
//! It refuses what it cannot score faithfully unless told otherwise: a model
//! that reads Work Order history features without `--work-orders`
//! (`--allow-missing-history`), telemetry whose reading cadence differs from
//! the model card's training cadence by more than 2x
//! (`--allow-cadence-mismatch`); every override warns on stderr, is listed in
//! the summary's `warnings` and marks the rows it affects. Rows scored before
//! an asset's streaming state is warmed up are flagged (`warmup`); `--state
//! FILE` carries that state from one run to the next.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::failure::cadence::{
    asset_intervals_s, cadence_matches, fleet_cadence, CADENCE_TOLERANCE,
};
use fieldpulse_models::failure::{state_file, FailureModel, FailureScorer, FleetHistory};

/// Arguments of `fieldpulse score`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse score --model models/v1 --input sim-out/telemetry.csv --work-orders sim-out/history.json --output scores.csv\n  fieldpulse score --model models/v1 --input today.csv --work-orders wo.json --state score-state.bin  # continue yesterday's state"
)]
pub struct ScoreArgs {
    /// Artifact directory written by `fieldpulse train`.
    #[arg(long)]
    model: PathBuf,
    /// Wide telemetry CSV (`asset, ts, sensor...`).
    #[arg(long)]
    input: PathBuf,
    /// Work Order history for the history features. Required when the model
    /// reads them, unless --allow-missing-history.
    #[arg(long)]
    work_orders: Option<PathBuf>,
    /// Score a model that reads Work Order history features without a
    /// history: warns, and marks every row `no_history=1`.
    #[arg(long)]
    allow_missing_history: bool,
    /// Score telemetry whose cadence differs from the training cadence by
    /// more than 2x: warns, and marks those assets' rows `cadence_mismatch=1`.
    #[arg(long)]
    allow_cadence_mismatch: bool,
    /// Streaming state file: restored before scoring when it exists, written
    /// after (atomically), so the next run continues without a cold start.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Output CSV: asset, ts, one probability and alarm column per
    /// classifier, rul_days, then warmup, no_history, cadence_mismatch (0/1).
    #[arg(long, default_value = "scores.csv")]
    output: PathBuf,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

fn warn(warnings: &mut Vec<String>, text: String) {
    eprintln!("WARNING: {text}");
    warnings.push(text);
}

fn preview(items: &[String]) -> String {
    const SHOWN: usize = 6;
    let head = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        format!("{head}, … {} more", items.len() - SHOWN)
    } else {
        head
    }
}

/// Runs `fieldpulse score`.
pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let model = std::sync::Arc::new(FailureModel::load(&args.model)?);
    let mut warnings: Vec<String> = Vec::new();
    let card_path = args.model.join("model_card.json");
    let card: Option<serde_json::Value> = match std::fs::read_to_string(&card_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("reading {}", card_path.display()))?,
        ),
        Err(_) => None,
    };

    // Work Order history.
    let uses_history = model.uses_history();
    let history = match &args.work_orders {
        Some(path) => crate::train::read_history(path, None)?,
        None if uses_history && !args.allow_missing_history => bail!(
            "model {} reads Work Order history features (hist.*) and no history was given: \
             pass --work-orders FILE (the export it was trained with, or a newer one), or \
             --allow-missing-history to score without them (rows marked no_history=1)",
            model.model_version
        ),
        None => {
            if uses_history {
                warn(
                    &mut warnings,
                    format!(
                        "--allow-missing-history: model {} reads Work Order history features; \
                         scoring without them (every row marked no_history=1): probabilities \
                         are not those the model was validated with",
                        model.model_version
                    ),
                );
            }
            FleetHistory::default()
        }
    };
    let telemetry = crate::train::read_telemetry(&args.input)?;
    let positions = model.schema.sensor_positions(&telemetry.sensors)?;
    let no_history: Vec<bool> = telemetry
        .assets
        .iter()
        .map(|a| uses_history && !history.assets.contains_key(a))
        .collect();
    if args.work_orders.is_some() && uses_history {
        let absent: Vec<String> = telemetry
            .assets
            .iter()
            .zip(&no_history)
            .filter(|(_, n)| **n)
            .map(|(a, _)| a.clone())
            .collect();
        if !absent.is_empty() {
            warn(
                &mut warnings,
                format!(
                    "{} of {} assets are not in the Work Order history (rows marked no_history=1): {}",
                    absent.len(),
                    telemetry.assets.len(),
                    preview(&absent)
                ),
            );
        }
    }

    // Reading cadence against the training cadence.
    let intervals = asset_intervals_s(
        &telemetry.asset_idx,
        &telemetry.ts_ms,
        telemetry.assets.len(),
    );
    let input_cadence = fleet_cadence(&intervals).map(|c| c.median_interval_s);
    let cadence_unchecked = intervals.iter().filter(|i| i.is_none()).count();
    let trained = card
        .as_ref()
        .and_then(|c| c["training_cadence"]["median_interval_s"].as_f64());
    let mut mismatch = vec![false; telemetry.assets.len()];
    match trained {
        Some(trained_s) => {
            let mut bad = Vec::new();
            for (k, iv) in intervals.iter().enumerate() {
                if let Some(iv) = iv {
                    if !cadence_matches(*iv, trained_s) {
                        mismatch[k] = true;
                        bad.push(format!("{} every {:.0} s", telemetry.assets[k], iv));
                    }
                }
            }
            if !bad.is_empty() {
                let text = format!(
                    "{} of {} assets read at a cadence more than {CADENCE_TOLERANCE}x off the \
                     model's training cadence ({trained_s:.0} s between readings): {}",
                    bad.len(),
                    telemetry.assets.len(),
                    preview(&bad)
                );
                if !args.allow_cadence_mismatch {
                    bail!(
                        "{text}; the streaming features count readings, so their windows would \
                         not mean what they meant in training: resample the telemetry, retrain \
                         at this cadence, or pass --allow-cadence-mismatch (rows marked \
                         cadence_mismatch=1)"
                    );
                }
                warn(
                    &mut warnings,
                    format!("--allow-cadence-mismatch: {text} (rows marked cadence_mismatch=1)"),
                );
            }
        }
        None => warn(
            &mut warnings,
            format!(
                "{} records no training_cadence (an artifact from an older build, or no card): \
                 the reading cadence was not checked",
                card_path.display()
            ),
        ),
    }

    let mut scorer = FailureScorer::new(model.clone(), history)?;
    let mut restored = 0usize;
    if let Some(path) = args.state.as_ref().filter(|p| p.exists()) {
        let r = state_file::load(path, &mut scorer)
            .with_context(|| format!("restoring streaming state from {}", path.display()))?;
        if r.model_version != model.model_version {
            eprintln!(
                "score: state {} was written with model {}, continuing it with {}",
                path.display(),
                r.model_version,
                model.model_version
            );
        }
        restored = r.assets.len();
    }
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
    writeln!(out, ",rul_days,warmup,no_history,cadence_mismatch")?;
    let n_in = telemetry.sensors.len();
    let mut values = vec![0.0; positions.len()];
    let mut alarms = vec![0u64; model.classifiers.len()];
    let (mut warmup_rows, mut no_history_rows, mut mismatch_rows) = (0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    for i in 0..telemetry.n_rows() {
        let row = &telemetry.values[i * n_in..(i + 1) * n_in];
        for (v, &p) in values.iter_mut().zip(&positions) {
            *v = row[p];
        }
        let a = telemetry.asset_idx[i] as usize;
        let asset = &telemetry.assets[a];
        let pred = scorer.score(asset, telemetry.ts_ms[i], &values)?;
        write!(out, "{asset},{}", telemetry.ts_ms[i])?;
        for p in &pred.probabilities {
            write!(out, ",{p:.5}")?;
        }
        for (k, a) in pred.alarms.iter().enumerate() {
            alarms[k] += u64::from(*a);
            write!(out, ",{}", u8::from(*a))?;
        }
        let warm = scorer.last_warming_up();
        warmup_rows += u64::from(warm);
        no_history_rows += u64::from(no_history[a]);
        mismatch_rows += u64::from(mismatch[a]);
        writeln!(
            out,
            ",{:.2},{},{},{}",
            pred.rul_days,
            u8::from(warm),
            u8::from(no_history[a]),
            u8::from(mismatch[a])
        )?;
    }
    out.flush()?;
    let saved = match &args.state {
        Some(path) => Some(
            state_file::save(path, &scorer)
                .with_context(|| format!("saving streaming state to {}", path.display()))?,
        ),
        None => None,
    };
    if warmup_rows > 0 && args.state.is_none() {
        eprintln!(
            "score: {warmup_rows} rows scored before their asset's streaming state was warmed up \
             ({} readings; marked warmup=1); --state FILE keeps the state for the next run",
            model.warmup_rows()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "model_version": model.model_version,
        "rows": telemetry.n_rows(),
        "rejected_rows": telemetry.rejected_rows,
        "seconds": seconds,
        "ns_per_row": seconds * 1e9 / telemetry.n_rows().max(1) as f64,
        "alarm_rows": model.classifiers.iter().zip(&alarms)
            .map(|(c, n)| (format!("{}_{}d", c.mode, c.horizon_days), *n))
            .collect::<BTreeMap<_, _>>(),
        "warmup_rows": warmup_rows,
        "warmup_readings": model.warmup_rows(),
        "no_history_rows": no_history_rows,
        "cadence_mismatch_rows": mismatch_rows,
        "training_cadence_s": trained,
        "input_cadence_s": input_cadence,
        "cadence_unchecked_assets": cadence_unchecked,
        "state_assets_restored": restored,
        "state_assets_saved": saved,
        "warnings": warnings,
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
