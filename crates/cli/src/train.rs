//! `fieldpulse train`: fit the failure/RUL model on telemetry plus Work
//! Order history and write the artifact directory (model.json,
//! model_card.json, report.html). Also holds `fieldpulse eval --model`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::failure::challengers::{compare, ChallengerConfig, ChallengerReport};
use fieldpulse_models::failure::cmms_csv::CmmsMap;
use fieldpulse_models::failure::dataset::{feature_rows_from, Observation, Telemetry};
use fieldpulse_models::failure::evaluate::evaluate;
use fieldpulse_models::failure::feedback::FeedbackFile;
use fieldpulse_models::failure::labels::parse_sf_datetime;
use fieldpulse_models::failure::monotone::MonotoneRule;
use fieldpulse_models::failure::train::{model_card, summary, train_from, TrainConfig};
use fieldpulse_models::failure::{report, FailureModel, FleetHistory};
use fieldpulse_models::telemetry::{
    Fingerprint, ReadReport, TelemetryInput, TelemetryOptions, TelemetryProfile,
};

use crate::telemetry_args::TelemetryArgs;

/// Arguments of `fieldpulse train`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse simulate --assets 60 --days 365 --out sim-out\n  fieldpulse train --telemetry sim-out/telemetry.csv --work-orders sim-out/history.json --out models/v1\n\nThe cloud's Parquet archive (day=YYYY-MM-DD/part-*.parquet), one quarter of it:\n  fieldpulse train --telemetry /srv/fieldpulse/archive --from 2026-01-01 --to 2026-04-01 \\\n    --work-orders wo.json --out models/v2\n\nA historian's long export (ts, asset, tag, value), Parquet or CSV:\n  fieldpulse train --telemetry pi-export.parquet --asset-col equipment --tag-col point --work-orders wo.json --out models/v2\n\nAnother CMMS's export, plus dispatcher feedback:\n  fieldpulse train --telemetry t.csv --work-orders wo.csv --work-order-map map.toml \\\n    --feedback labels.csv --observed-until 2026-06-30 --out models/v2"
)]
pub struct TrainArgs {
    /// Telemetry: a wide CSV (`asset, ts, sensor...`), a long CSV or Parquet
    /// file (`ts, asset, tag, value`), a wide Parquet file, a directory of
    /// Parquet files, or the cloud's archive (`day=YYYY-MM-DD/part-*.parquet`).
    #[arg(long)]
    telemetry: PathBuf,
    #[command(flatten)]
    columns: TelemetryArgs,
    /// Work Order history: the simulator's / emulator's fixture JSON, a
    /// `fieldpulse sync work-orders` directory, or (with --work-order-map)
    /// another CMMS's CSV export.
    #[arg(long)]
    work_orders: PathBuf,
    /// TOML map of a CMMS CSV's columns and work types (docs/models.md).
    #[arg(long)]
    work_order_map: Option<PathBuf>,
    /// Dispatcher feedback from `fieldpulse feedback export` (CSV or JSON):
    /// confirmed failures and false alarms as extra labels.
    #[arg(long)]
    feedback: Option<PathBuf>,
    /// End of the Work Order export (`YYYY-MM-DD` or ISO 8601): no label
    /// looks past it. Each asset's observation also ends at its last reading
    /// and its decommission date.
    #[arg(long, value_parser = parse_date)]
    observed_until: Option<i64>,
    /// Train on telemetry assets the Work Order history does not name, as
    /// assets that never failed (default: report and leave them out).
    #[arg(long)]
    include_assets_without_history: bool,
    /// Artifact directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Horizons of the "failure within" classifiers, days.
    #[arg(long, value_delimiter = ',', default_value = "7,14,30")]
    horizons: Vec<f64>,
    /// Precision the alarm thresholds aim for on the calibration slice.
    #[arg(long, default_value_t = 0.5)]
    target_precision: f64,
    /// Boosting rounds per model (the most each booster may grow with
    /// early stopping).
    #[arg(long, default_value_t = 120)]
    trees: usize,
    /// Stop each booster once this many trees in a row did not lower its
    /// loss on validation assets (a seeded share of the fit assets, held
    /// out whole), keeping the best iteration; 0 turns it off. Default:
    /// off (it cost AP on simulated fleets; docs/models.md, "The learner").
    #[arg(long, value_name = "N")]
    early_stopping_rounds: Option<usize>,
    /// Share of each product's fit assets held out as the early-stopping
    /// validation set.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    validation_fraction: f64,
    /// With early stopping, keep each booster as fitted without the
    /// validation assets (default: fit it again on every fit asset with the
    /// number of trees the validation assets chose).
    #[arg(long)]
    no_refit: bool,
    /// Monotone constraint in risk terms, `PATTERN=+1` (risk never falls as
    /// the feature rises), `=-1` or `=0` (lift a constraint); `*` in PATTERN
    /// matches any run of characters of a feature name
    /// (`vib_rms.robust_z`, `vib_*.ewma_mean_hl*`). Repeatable, later rules
    /// win; added after the defaults. RUL gets the reverse direction.
    #[arg(long = "monotone", value_name = "PATTERN=DIR")]
    monotone: Vec<MonotoneRule>,
    /// Drop the default monotone constraints (risk non-decreasing in
    /// `vib_*.ewma_mean_hl*` and `vib_*.robust_z`; docs/models.md).
    #[arg(long)]
    no_default_monotone: bool,
    /// Learn each split's missing-value direction (default: every missing
    /// value goes left, which measured better on simulated fleets;
    /// docs/models.md).
    #[arg(long)]
    learn_missing_direction: bool,
    /// Also add the artifact to this model registry as a candidate (see
    /// `fieldpulse models`).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Registry version name for `--registry` (default `v<N+1>`).
    #[arg(long, requires = "registry")]
    version: Option<String>,
    /// The model the challengers table compares against (an artifact
    /// directory); default: the registry's promoted model with `--registry`.
    #[arg(long)]
    champion: Option<PathBuf>,
    /// Skip the challengers (logistic regression, random forest, age-only,
    /// ridge RUL, champion) in the report and summary.
    #[arg(long)]
    no_challengers: bool,
    /// Asset bootstrap resamples behind the challengers' intervals.
    #[arg(long, default_value_t = 200)]
    bootstrap: usize,
    /// Horizons the challengers are compared at: `all` (every horizon of
    /// `--horizons`) or `first` (the first of them: one set of fits per mode).
    #[arg(long, default_value = "all", value_parser = ["all", "first"])]
    challenger_horizons: String,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

/// The code version recorded in model cards: crate version and, when the
/// build knew it, the git commit.
pub fn code_version() -> serde_json::Value {
    serde_json::json!({
        "crate_version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("FIELDPULSE_GIT_SHA"),
    })
}

/// Arguments of `fieldpulse eval --model`.
#[derive(Debug, Args)]
pub struct EvalModelArgs {
    /// Artifact directory written by `fieldpulse train`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Telemetry of held-out history (any layout `fieldpulse train` reads).
    #[arg(long)]
    pub telemetry: Option<PathBuf>,
    #[command(flatten)]
    pub columns: TelemetryArgs,
    /// Work Order history (fixture JSON, sync directory, or CMMS CSV).
    #[arg(long)]
    pub work_orders: Option<PathBuf>,
    /// TOML map of a CMMS CSV's columns and work types.
    #[arg(long)]
    pub work_order_map: Option<PathBuf>,
    /// End of the Work Order export (`YYYY-MM-DD` or ISO 8601).
    #[arg(long, value_parser = parse_date)]
    pub observed_until: Option<i64>,
    /// Score assets the Work Order history does not name too (as never
    /// failing); by default they are reported and left out.
    #[arg(long)]
    pub include_assets_without_history: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses `YYYY-MM-DD` or ISO 8601 into epoch ms (clap value parser).
pub fn parse_date(text: &str) -> Result<i64, String> {
    parse_sf_datetime(text)
        .ok_or_else(|| format!("`{text}` is not a date (YYYY-MM-DD or ISO 8601)"))
}

/// Reads Work Order history from a fixture file, a sync directory, or a
/// CMMS CSV with its column map.
pub fn read_history(path: &Path, map: Option<&Path>) -> anyhow::Result<FleetHistory> {
    if let Some(map_path) = map {
        let map = CmmsMap::load(map_path)?;
        return Ok(FleetHistory::from_cmms_csv(path, &map)?);
    }
    if path.is_dir() {
        return FleetHistory::from_sync_dir(path)
            .with_context(|| format!("reading {}", path.display()));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    FleetHistory::from_json(&text).with_context(|| format!("reading {}", path.display()))
}

/// Opens telemetry in any layout and runs pass 1 (the profile), with
/// progress on stderr.
fn open_telemetry(
    path: &Path,
    opts: &TelemetryOptions,
    cmd: &str,
) -> anyhow::Result<(TelemetryInput, TelemetryProfile)> {
    let mut input = TelemetryInput::open(path, opts)
        .with_context(|| format!("--telemetry {}", path.display()))?;
    let r = input.report();
    eprintln!(
        "{cmd}: reading {} ({}, {} layout, {} files{})",
        path.display(),
        r.kind,
        match r.layout {
            Some(fieldpulse_models::telemetry::Layout::Long) => "long",
            _ => "wide",
        },
        r.files,
        if r.partitions_skipped > 0 {
            format!(
                "; {} of {} day partitions outside --from/--to skipped",
                r.partitions_skipped,
                r.partitions_skipped + r.partitions_read
            )
        } else {
            String::new()
        }
    );
    let mut progress = chunk_progress(cmd);
    let profile = input
        .profile(&mut progress)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((input, profile))
}

/// Prints pass progress every 10 % of the chunks.
pub fn chunk_progress(cmd: &str) -> impl FnMut(&str, usize, usize) + '_ {
    let mut last = (String::new(), usize::MAX);
    let mut started = std::time::Instant::now();
    move |pass: &str, done: usize, total: usize| {
        let tenth = (done * 10).checked_div(total).unwrap_or(10);
        if pass != last.0 {
            started = std::time::Instant::now();
        }
        if total > 1 && (pass != last.0 || tenth != last.1) {
            eprintln!(
                "{cmd}: telemetry {pass} pass {done}/{total} chunks ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
            last = (pass.to_string(), tenth);
        }
    }
}

/// What reading found, for stderr: rejections, duplicates, warnings.
fn print_read_report(cmd: &str, r: &ReadReport) {
    eprintln!(
        "{cmd}: telemetry {} rows read, {} wide rows; {} rejected{}; {} outside the window; {} duplicate readings (last kept); {} missing values{}",
        r.rows_read,
        r.rows,
        r.rejected_rows(),
        r.rejected_text(),
        r.outside_window,
        r.duplicate_readings,
        r.missing_values,
        if r.excluded_tag_rows > 0 {
            format!("; {} rows of excluded tags", r.excluded_tag_rows)
        } else {
            String::new()
        }
    );
    for w in &r.warnings {
        eprintln!("{cmd}: warning: {w}");
    }
}

/// FNV-1a 64 of the telemetry files read and the other inputs (the model
/// card's data fingerprint; for a single telemetry file the same value as
/// before directories were accepted).
fn data_fingerprint(input: &TelemetryInput, others: &[&Path]) -> anyhow::Result<String> {
    let mut fp = Fingerprint::default();
    for file in input.files() {
        fp.add_file(&file)?;
    }
    for path in others {
        if !path.is_dir() {
            fp.add_file(path)?;
        }
    }
    Ok(fp.finish())
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
    let opts = args.columns.options(args.observed_until);
    let (mut input, profile) = open_telemetry(&args.telemetry, &opts, "train")?;
    let mut history = read_history(&args.work_orders, args.work_order_map.as_deref())?;
    eprintln!(
        "train: {} readings of {} assets, {} sensors ({} rejected rows{}); {} work orders, {} merged, {} ignored, {} failures without a code, {} rejected{}",
        profile.n_rows,
        profile.assets.len(),
        profile.sensors.len(),
        input.report().rejected_rows(),
        input.report().rejected_text(),
        history.n_work_orders,
        history.n_merged,
        history.n_ignored,
        history.n_unknown_mode,
        history.rejected.values().sum::<usize>(),
        reasons(&history.rejected),
    );
    let work_orders = serde_json::json!({
        "n_work_orders": history.n_work_orders,
        "n_merged": history.n_merged,
        "n_ignored": history.n_ignored,
        "n_unknown_mode": history.n_unknown_mode,
        "rejected": history.rejected,
    });
    let feedback = match &args.feedback {
        Some(path) => {
            let file = FeedbackFile::read(path)?;
            let s = history.apply_feedback(&file);
            eprintln!(
                "train: feedback {}: {} labels; {} failures added, {} already known ({} got a code), {} false alarms, {} on unknown assets, {} rejected{}",
                path.display(),
                s.n_labels,
                s.failures_added,
                s.failures_already_known,
                s.failures_coded,
                s.false_alarms_applied,
                s.unknown_asset,
                s.rejected.values().sum::<usize>(),
                reasons(&s.rejected),
            );
            Some(s)
        }
        None => None,
    };
    let mut cfg = TrainConfig {
        horizons_days: args.horizons.clone(),
        target_precision: args.target_precision,
        observed_until_ms: args.observed_until,
        include_assets_without_history: args.include_assets_without_history,
        ..TrainConfig::default()
    };
    cfg.booster.n_trees = args.trees;
    if let Some(rounds) = args.early_stopping_rounds {
        cfg.booster.early_stopping_rounds = (rounds > 0).then_some(rounds);
    }
    if !(0.0..1.0).contains(&args.validation_fraction) {
        bail!(
            "--validation-fraction {} must be in [0, 1)",
            args.validation_fraction
        );
    }
    cfg.validation_asset_fraction = args.validation_fraction;
    cfg.refit_after_early_stopping = !args.no_refit;
    if args.learn_missing_direction {
        cfg.booster.learn_missing_direction = true;
    }
    if args.no_default_monotone {
        cfg.default_monotone.clear();
    }
    cfg.monotone.extend(args.monotone.iter().cloned());
    let mut last_step = String::new();
    let mut reading = chunk_progress("train");
    let (outcome, rows) = train_from(
        &profile,
        &history,
        &cfg,
        &mut |schema, stride, _| {
            feature_rows_from(&mut input, &profile, schema, &history, stride, &mut reading)
        },
        &mut |step, done, total| {
            if step != last_step {
                eprintln!("train: [{done:>2}/{total}] {step}");
                last_step = step.to_string();
            }
        },
    )?;
    print_read_report("train", input.report());
    let challengers = if args.no_challengers {
        None
    } else {
        Some(run_challengers(&args, &outcome, &rows, &profile, &history)?)
    };
    drop(rows);
    let absent = &outcome.labels.assets_without_history;
    if !absent.is_empty() {
        eprintln!(
            "train: {} telemetry assets have no Work Order history ({}): {}",
            absent.len(),
            if outcome.labels.assets_without_history_excluded {
                "left out; --include-assets-without-history keeps them"
            } else {
                "trained on as never failing"
            },
            preview(absent)
        );
    }
    let mut labels = serde_json::to_value(&outcome.labels)?;
    labels["work_orders"] = work_orders;
    labels["feedback"] = serde_json::to_value(&feedback)?;
    let others: Vec<&Path> = [
        Some(&args.work_orders),
        args.work_order_map.as_ref(),
        args.feedback.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(PathBuf::as_path)
    .collect();
    let data_fp = data_fingerprint(&input, &others)?;
    let telemetry_report = serde_json::to_value(input.report())?;
    let created_by = format!(
        "fieldpulse train {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::var("USER").unwrap_or_else(|_| "unknown user".into())
    );
    let mut card = model_card(&outcome, &cfg, &data_fp, &created_by);
    card["labels"] = labels.clone();
    card["code_version"] = code_version();
    card["telemetry"] = telemetry_report.clone();
    outcome.model.save(&args.out)?;
    std::fs::write(
        args.out.join("model_card.json"),
        serde_json::to_string_pretty(&card)?,
    )?;
    std::fs::write(
        args.out.join("report.html"),
        report::render_with(&outcome, &card, challengers.as_ref()),
    )?;
    let registered = match &args.registry {
        Some(dir) => {
            let entry = fieldpulse_models::registry::Registry::new(dir).add(
                &args.out,
                args.version.as_deref(),
                &crate::models_cmd::actor(None),
            )?;
            eprintln!(
                "train: added to {} as {} (candidate; `fieldpulse models promote --registry {} {}`)",
                dir.display(),
                entry.version,
                dir.display(),
                entry.version
            );
            Some(entry.version)
        }
        None => None,
    };
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "artifact": args.out,
                "registry_version": registered,
                "model_version": outcome.model.model_version,
                "train_seconds": seconds,
                "labels": labels,
                "telemetry": telemetry_report,
                "test": summary(&outcome.test),
                "boosters": outcome.boosters,
                "validation_assets": outcome.split.validation_assets,
                "challengers": challengers,
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
        eprintln!(
            "  RUL RMSE {:.2} days, MAE {:.2} days",
            outcome.test.rul_rmse_days, outcome.test.rul_mae_days
        );
        let kept: Vec<String> = outcome
            .boosters
            .iter()
            .map(|b| format!("{} {}", b.model, b.n_trees))
            .collect();
        eprintln!(
            "  trees kept{}: {}",
            if outcome.split.validation_assets.is_empty() {
                String::new()
            } else {
                format!(
                    " (early stopping on {} validation assets)",
                    outcome.split.validation_assets.len()
                )
            },
            kept.join(", ")
        );
        if let Some(ch) = &challengers {
            print_challengers(ch);
        }
    }
    Ok(())
}

/// The challengers against this run's model, the champion being `--champion`
/// or the registry's promoted model.
fn run_challengers(
    args: &TrainArgs,
    outcome: &fieldpulse_models::failure::train::TrainOutcome,
    rows: &fieldpulse_models::failure::dataset::FeatureRows,
    telemetry: &TelemetryProfile,
    history: &FleetHistory,
) -> anyhow::Result<ChallengerReport> {
    let champion_dir = match (&args.champion, &args.registry) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(reg)) => fieldpulse_models::registry::Registry::new(reg).champion_dir()?,
        (None, None) => None,
    };
    let champion = champion_dir
        .map(|dir| {
            FailureModel::load(&dir)
                .with_context(|| format!("--champion {}: cannot load the model", dir.display()))
        })
        .transpose()?;
    let obs = Observation::from_profile(telemetry, history, args.observed_until);
    let started = std::time::Instant::now();
    eprintln!("train: challengers (booster, champion, age-only, logistic regression, random forest; ridge RUL)");
    let cfg = ChallengerConfig {
        bootstrap: args.bootstrap,
        all_horizons: args.challenger_horizons == "all",
        ..ChallengerConfig::default()
    };
    let report = compare(
        &outcome.model,
        champion.as_ref(),
        rows,
        &outcome.split,
        &obs,
        &cfg,
    )?;
    eprintln!(
        "train: challengers done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

fn print_challengers(ch: &ChallengerReport) {
    let fmt = |i: Option<fieldpulse_models::failure::challengers::Interval>| {
        i.map_or("–".to_string(), |i| {
            format!("{:.3} [{:.3}, {:.3}]", i.value, i.lo, i.hi)
        })
    };
    for t in &ch.targets {
        eprintln!(
            "  challengers, {} {}d ({} test rows, {} positive, {} assets; 95% asset-bootstrap intervals):",
            t.mode, t.horizon_days, t.n_test_rows, t.n_test_positive, t.n_test_assets
        );
        for r in &t.results {
            match &r.average_precision {
                Some(_) => eprintln!(
                    "    {:<20} AP {}  Brier {}  AP - booster {}",
                    r.name,
                    fmt(r.average_precision),
                    fmt(r.brier),
                    fmt(r.ap_minus_booster)
                ),
                None => eprintln!("    {:<20} {}", r.name, r.note.as_deref().unwrap_or("–")),
            }
        }
    }
    for r in &ch.rul {
        eprintln!(
            "    RUL {:<16} RMSE {} days{}",
            r.name,
            fmt(r.rmse_days),
            r.note
                .as_deref()
                .map_or(String::new(), |n| format!(" ({n})"))
        );
    }
}

/// Runs `fieldpulse eval --model DIR --telemetry F --work-orders H`.
pub fn run_eval_model(args: EvalModelArgs) -> anyhow::Result<()> {
    let (Some(model_dir), Some(telemetry_path), Some(history_path)) =
        (args.model, args.telemetry, args.work_orders)
    else {
        bail!("use `fieldpulse eval cmapss --data DIR` or `fieldpulse eval --model DIR --telemetry F.csv --work-orders H.json`");
    };
    let model = FailureModel::load(&model_dir)?;
    let opts = args.columns.options(args.observed_until);
    let (mut input, telemetry) = open_telemetry(&telemetry_path, &opts, "eval")?;
    let history = read_history(&history_path, args.work_order_map.as_deref())?;
    let stride = telemetry.n_rows.div_ceil(200_000).max(1);
    let rows = feature_rows_from(
        &mut input,
        &telemetry,
        &model.schema,
        &history,
        stride,
        &mut chunk_progress("eval"),
    )?;
    print_read_report("eval", input.report());
    let (_, t1) = telemetry.time_range().context("no rows")?;
    let obs = Observation::from_profile(&telemetry, &history, args.observed_until);
    let absent = obs.assets_without_history();
    let all: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            args.include_assets_without_history
                || history
                    .assets
                    .contains_key(&telemetry.assets[rows.asset_idx[i] as usize])
        })
        .collect();
    let report = evaluate(&model, &rows, &all, &obs, t1);
    let out = serde_json::json!({
        "model_version": model.model_version,
        "assets_without_history": absent,
        "assets_without_history_excluded": !args.include_assets_without_history,
        "telemetry": input.report(),
        "metrics": summary(&report),
    });
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// ` (bad_date 2, unknown_type 1)`, or nothing when there is no rejection.
fn reasons(rejected: &std::collections::BTreeMap<String, usize>) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(" ({})", parts.join(", "))
}

/// The first few names, and how many more.
fn preview(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let head = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        format!("{head}, … {} more", names.len() - SHOWN)
    } else {
        head
    }
}
