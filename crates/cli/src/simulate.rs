//! `fieldpulse simulate`: run the fleet simulator and write its telemetry
//! (wide CSV), the Salesforce seed fixture (Product2, Asset, WorkType,
//! WorkOrder) and the ground truth (failure times and modes, sensor faults).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fieldpulse_simulator::{product::PRODUCTS, telemetry, Fleet, FleetConfig};

/// Arguments of `fieldpulse simulate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse simulate --assets 60 --days 365 --seed 7 --out sim-out --json"
)]
pub struct SimulateArgs {
    /// Output directory (telemetry.csv, history.json, ground_truth.json).
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Number of assets (pumps, compressors and HVAC units in turn).
    #[arg(long, default_value_t = 30)]
    assets: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 180)]
    days: u64,
    /// Time between readings of one asset (humantime, e.g. `1h`, `15m`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Seed: the same seed always gives the same fleet, readings and history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Multiplies every wear rate (2 = failures twice as often).
    #[arg(long, default_value_t = 1.0)]
    wear_speedup: f64,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `fieldpulse simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let cfg = FleetConfig {
        seed: args.seed,
        n_assets: args.assets,
        duration: Duration::from_secs(args.days * 86_400),
        interval: args.interval,
        wear_speedup: args.wear_speedup,
        ..FleetConfig::default()
    };
    let mut fleet = Fleet::new(cfg)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let csv_path = args.out.join("telemetry.csv");
    let file =
        File::create(&csv_path).with_context(|| format!("creating {}", csv_path.display()))?;
    let mut out = BufWriter::new(file);
    telemetry::write_header(&mut out)?;
    let total = fleet.max_readings().max(1);
    let mut n_readings = 0u64;
    let mut slot = 0u64;
    let names: Vec<String> = fleet.assets().iter().map(|a| a.name.clone()).collect();
    while let Some(reading) = fleet.next_reading() {
        telemetry::write_row(&mut out, &names[reading.asset_idx], &reading)?;
        n_readings += 1;
        let pct = n_readings * 100 / total;
        if pct >= slot + 10 {
            slot = pct - pct % 10;
            eprintln!("simulate: {slot}% ({n_readings} readings)");
        }
    }
    out.flush()?;
    let history = fleet.into_history();
    let fixture_path = args.out.join("history.json");
    std::fs::write(
        &fixture_path,
        serde_json::to_string_pretty(&history.to_fixture_json(&PRODUCTS))?,
    )
    .with_context(|| format!("writing {}", fixture_path.display()))?;
    let truth_path = args.out.join("ground_truth.json");
    std::fs::write(
        &truth_path,
        serde_json::to_string_pretty(&history.to_ground_truth_json())?,
    )
    .with_context(|| format!("writing {}", truth_path.display()))?;
    let summary = serde_json::json!({
        "assets": args.assets,
        "readings": n_readings,
        "failures": history.failures.len(),
        "work_orders": history.work_orders.len(),
        "sensor_faults": history.sensor_faults.len(),
        "telemetry": csv_path,
        "history": fixture_path,
        "ground_truth": truth_path,
    });
    if args.json {
        println!("{summary}");
    } else {
        eprintln!(
            "simulate: {} readings of {} assets, {} failures, {} work orders, {} sensor faults → {}",
            n_readings,
            args.assets,
            history.failures.len(),
            history.work_orders.len(),
            history.sensor_faults.len(),
            args.out.display()
        );
    }
    Ok(())
}
