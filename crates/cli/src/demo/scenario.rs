//! The demo's world: a simulated history fleet that trains the failure model,
//! and a separate simulated live fleet whose readings are replayed over MQTT,
//! whose Salesforce records seed the emulator, and whose failures are the
//! ground truth the Cases are judged against.
//!
//! The replayed window ends at a fixed date ([`REPLAY_END_MS`]): the
//! simulator's physics follow the season and the time of day, so a fixed
//! calendar is what makes the same seed give the same fleet on any day.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use fieldpulse_models::failure::dataset::Telemetry;
use fieldpulse_models::failure::train::{train, TrainConfig};
use fieldpulse_models::failure::FleetHistory;
use fieldpulse_models::gbdt::GbdtParams;
use fieldpulse_simulator::product::PRODUCTS;
use fieldpulse_simulator::{telemetry, Fleet, FleetConfig, Reading};
use serde_json::Value;

/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;
/// The replay's (and the judged window's) end: 2026-11-30T00:00Z.
pub const REPLAY_END_MS: i64 = 20_787 * DAY_MS;
/// Readings every 4 h: the model's streaming features count readings, so the
/// live fleet reports at the interval the history was simulated with.
pub const INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// Wear runs this much faster than the products' median lives, so a short
/// window holds enough failures to judge the Cases.
const WEAR_SPEEDUP: f64 = 1.5;
/// Days of history the model is trained on.
const HISTORY_DAYS: u64 = 365;
/// A Case counts for a failure when its episode opened at most this long
/// before it; the live fleet is simulated (not replayed) this far past the
/// window so a late alarm can be judged.
pub const LOOKBACK_MS: i64 = 14 * DAY_MS;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Assets of the live (replayed) fleet.
    pub assets: usize,
    /// Assets of the history fleet the model is trained on.
    pub history_assets: usize,
    /// Days replayed before the judged window (the scorers warm up on them).
    pub warmup_days: u64,
    /// Days of the judged window.
    pub days: u64,
    /// Seed of both fleets.
    pub seed: u64,
}

/// A failure in the ground truth.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Asset name.
    pub asset: String,
    /// Failure mode (`bearing`, `fouling`, `electrical`).
    pub mode: String,
    /// When it failed, epoch ms.
    pub ts_ms: i64,
}

/// The prepared demo world.
#[derive(Debug)]
pub struct Scenario {
    /// Live fleet asset names, by asset index.
    pub names: Vec<String>,
    /// Live fleet readings to replay, in time order (warm-up and window).
    pub readings: Vec<Reading>,
    /// First replayed reading time.
    pub start_ms: i64,
    /// Start of the judged window.
    pub window_start_ms: i64,
    /// End of the judged window (and of the replay).
    pub end_ms: i64,
    /// The emulator seed: Accounts, Products, Assets and the Work Orders
    /// finished before the window.
    pub fixture: Value,
    /// Failures from the window start to `LOOKBACK_MS` after its end.
    pub failures: Vec<Failure>,
    /// History-fleet size the model was trained on: (assets, Work Orders).
    pub trained_on: (usize, usize),
}

fn fleet_config(seed: u64, n_assets: usize, start_ms: i64, days: u64) -> FleetConfig {
    FleetConfig {
        seed,
        n_assets,
        start_ms,
        duration: Duration::from_secs(days * 86_400),
        interval: INTERVAL,
        wear_speedup: WEAR_SPEEDUP,
        ..FleetConfig::default()
    }
}

/// The live fleet alone (for `--edge-only`): asset names, readings in time
/// order, and the replayed span (warm-up and window).
///
/// # Errors
/// An invalid fleet size.
pub fn live_fleet(cfg: &ScenarioConfig) -> anyhow::Result<(Vec<String>, Vec<Reading>, i64, i64)> {
    let end_ms = REPLAY_END_MS;
    let start_ms = end_ms - (cfg.days + cfg.warmup_days) as i64 * DAY_MS;
    let mut fleet = Fleet::new(fleet_config(
        cfg.seed,
        cfg.assets,
        start_ms,
        cfg.warmup_days + cfg.days,
    ))
    .context("live fleet")?;
    let mut readings = Vec::new();
    while let Some(r) = fleet.next_reading() {
        if r.ts_ms < end_ms {
            readings.push(r);
        }
    }
    let names = fleet.assets().iter().map(|a| a.name.clone()).collect();
    Ok((names, readings, start_ms, end_ms))
}

/// Simulates both fleets and trains the failure model into `model_dir`.
/// `progress` receives one line per step.
///
/// # Errors
/// An invalid fleet size, or training or saving the model failed.
pub fn prepare(
    cfg: &ScenarioConfig,
    model_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Scenario> {
    anyhow::ensure!(cfg.days >= 1, "--days must be at least 1");
    let end_ms = REPLAY_END_MS;
    let window_start_ms = end_ms - cfg.days as i64 * DAY_MS;
    let start_ms = window_start_ms - cfg.warmup_days as i64 * DAY_MS;

    // History fleet (the year before the replay, another seed) → telemetry
    // and Work Orders → artifact, as `fieldpulse train` does.
    progress(&format!(
        "simulating the training history: {} assets x {HISTORY_DAYS} days",
        cfg.history_assets
    ));
    let history_start = start_ms - HISTORY_DAYS as i64 * DAY_MS;
    let mut fleet = Fleet::new(fleet_config(
        cfg.seed.wrapping_add(1),
        cfg.history_assets,
        history_start,
        HISTORY_DAYS,
    ))
    .context("history fleet")?;
    let mut csv = Vec::new();
    telemetry::write_header(&mut csv)?;
    while let Some(reading) = fleet.next_reading() {
        let name = &fleet.assets()[reading.asset_idx].name;
        telemetry::write_row(&mut csv, name, &reading)?;
    }
    let history = fleet.into_history();
    let trained_on = (history.assets.len(), history.work_orders.len());
    progress(&format!(
        "training failure model on {} assets / {} Work Orders ...",
        trained_on.0, trained_on.1
    ));
    let telemetry = Telemetry::read_csv(csv.as_slice()).context("history telemetry")?;
    drop(csv);
    let fleet_history = FleetHistory::from_json(&history.to_fixture_json(&PRODUCTS).to_string())
        .context("history Work Orders")?;
    let train_cfg = TrainConfig {
        booster: GbdtParams {
            n_trees: 30,
            learning_rate: 0.15,
            max_depth: 4,
            min_samples_leaf: 20,
            ..TrainConfig::default().booster
        },
        max_rows: 40_000,
        ..TrainConfig::default()
    };
    let mut last_step = String::new();
    let outcome = train(
        &telemetry,
        &fleet_history,
        &train_cfg,
        &mut |step, done, total| {
            if step != last_step {
                progress(&format!("  training: {step} ({done}/{total})"));
                last_step = step.to_string();
            }
        },
    )
    .context("training the failure model")?;
    let held_out: Vec<String> = outcome
        .test
        .classifiers
        .iter()
        .filter(|c| (c.horizon_days - 14.0).abs() < 0.5)
        .map(|c| format!("{} P {:.2} R {:.2}", c.mode, c.precision, c.recall))
        .collect();
    progress(&format!(
        "  held-out test, failure within 14 days: {}",
        held_out.join(", ")
    ));
    outcome
        .model
        .save(model_dir)
        .with_context(|| format!("saving the model to {}", model_dir.display()))?;

    // Live fleet: warm-up + window + look-ahead for the truth.
    progress(&format!(
        "simulating the live fleet: {} assets, {} + {} days",
        cfg.assets, cfg.warmup_days, cfg.days
    ));
    let mut fleet = Fleet::new(fleet_config(
        cfg.seed,
        cfg.assets,
        start_ms,
        cfg.warmup_days + cfg.days + (LOOKBACK_MS / DAY_MS) as u64,
    ))
    .context("live fleet")?;
    let mut readings = Vec::new();
    while let Some(r) = fleet.next_reading() {
        if r.ts_ms < end_ms {
            readings.push(r);
        }
    }
    let history = fleet.into_history();
    // Salesforce knows the Work Orders finished before the window, nothing later.
    let mut known = history.clone();
    known.work_orders.retain(|w| w.end_ms < window_start_ms);
    let fixture = known.to_fixture_json(&PRODUCTS);
    let failures = history
        .failures
        .iter()
        .filter(|f| f.ts_ms >= window_start_ms && f.ts_ms < end_ms + LOOKBACK_MS)
        .map(|f| {
            let mode = serde_json::to_value(f.mode)?;
            Ok(Failure {
                asset: f.asset.clone(),
                mode: mode.as_str().unwrap_or_default().to_string(),
                ts_ms: f.ts_ms,
            })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    Ok(Scenario {
        names: history.assets.iter().map(|a| a.name.clone()).collect(),
        readings,
        start_ms,
        window_start_ms,
        end_ms,
        fixture,
        failures,
        trained_on,
    })
}
