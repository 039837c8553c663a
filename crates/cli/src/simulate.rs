//! `fieldpulse simulate`: run the fleet simulator and write its telemetry
//! (wide CSV, or with `--archive` the cloud's day-partitioned Parquet
//! archive), the Salesforce seed fixture (Product2, Asset, WorkType,
//! WorkOrder) and the ground truth (failure times and modes, sensor faults).
//! With `--broker`, every reading is also published live over MQTT (QoS 1,
//! topic `sensors/{asset}`, JSON `{"ts": ..., "temp_c": ...}`), paced by
//! `--speedup` (simulated time per wall time) and capped by `--rate`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use fieldpulse_models::failure::labels::DAY_MS;
use fieldpulse_models::telemetry::write::{write_archive_part, LongRows};
use fieldpulse_simulator::product::{PRODUCTS, SENSORS};
use fieldpulse_simulator::{telemetry, Fleet, FleetConfig, Reading};
use rumqttc::{Client, Event, MqttOptions, Outgoing, QoS};

/// Arguments of `fieldpulse simulate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse simulate --assets 60 --days 365 --seed 7 --out sim-out --json\n\nA year of one-minute readings as the cloud's Parquet archive (day=YYYY-MM-DD/part-0.parquet):\n  fieldpulse simulate --assets 100 --days 365 --interval 1m --archive archive --out sim-out"
)]
pub struct SimulateArgs {
    /// Output directory (telemetry.csv, history.json, ground_truth.json).
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Write the telemetry as the cloud's archive under this directory
    /// instead of telemetry.csv: `day=YYYY-MM-DD/part-0.parquet`, long
    /// (`ts` Datetime ms UTC, `asset`, `tag`, `value`), a dropped-out sensor
    /// has no row.
    #[arg(long)]
    archive: Option<PathBuf>,
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
    /// Also publish every reading to this MQTT broker (`host:port`).
    #[arg(long)]
    broker: Option<String>,
    /// Simulated seconds per wall-clock second when publishing (0 = as fast as possible).
    #[arg(long, default_value_t = 3600.0)]
    speedup: f64,
    /// Maximum messages per second when publishing (0 = no cap).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

/// Live MQTT publishing: a rumqttc client whose event loop runs on its own
/// thread (owned by this binary, joined at the end).
struct Publisher {
    client: Client,
    driver: std::thread::JoinHandle<()>,
    acks: std::sync::mpsc::Receiver<()>,
    started: Instant,
    sim_start_ms: i64,
    speedup: f64,
    rate: f64,
    sent: u64,
}

impl Publisher {
    fn connect(
        broker: &str,
        seed: u64,
        sim_start_ms: i64,
        speedup: f64,
        rate: f64,
    ) -> anyhow::Result<Self> {
        let (host, port) = broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .with_context(|| format!("--broker {broker}: expected host:port"))?;
        let mut opts = MqttOptions::new(format!("fieldpulse-simulate-{seed}"), host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(opts, 1024);
        let (ack_tx, acks) = std::sync::mpsc::channel();
        let driver = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        if ack_tx.send(()).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(err) => {
                        // rumqttc reconnects on the next poll; keep the
                        // operator informed without flooding the terminal.
                        eprintln!("simulate: MQTT connection error: {err}; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        });
        Ok(Self {
            client,
            driver,
            acks,
            started: Instant::now(),
            sim_start_ms,
            speedup,
            rate,
            sent: 0,
        })
    }

    fn publish(&mut self, topic: String, payload: String, ts_ms: i64) -> anyhow::Result<()> {
        // Pacing, not synchronisation: hold each reading until its simulated
        // time (divided by the speedup) or the rate cap allows it.
        let mut due = Duration::ZERO;
        if self.speedup > 0.0 {
            due = Duration::from_secs_f64(
                (ts_ms - self.sim_start_ms).max(0) as f64 / 1000.0 / self.speedup,
            );
        }
        if self.rate > 0.0 {
            due = due.max(Duration::from_secs_f64(self.sent as f64 / self.rate));
        }
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
            .context("publishing a reading")?;
        self.sent += 1;
        Ok(())
    }

    /// Waits (up to 30 s) for the broker to acknowledge every message, then
    /// disconnects.
    fn finish(self) -> anyhow::Result<(u64, u64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut acked = 0u64;
        while acked < self.sent {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(()) => acked += 1,
                Err(_) => break,
            }
        }
        self.client
            .disconnect()
            .context("disconnecting from the broker")?;
        drop(self.acks);
        self.driver
            .join()
            .map_err(|_| anyhow::anyhow!("the MQTT event loop thread panicked"))?;
        Ok((self.sent, acked))
    }
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
    let sim_start_ms = cfg.start_ms;
    let mut fleet = Fleet::new(cfg)?;
    let mut publisher = match &args.broker {
        Some(broker) => Some(Publisher::connect(
            broker,
            args.seed,
            sim_start_ms,
            args.speedup,
            args.rate,
        )?),
        None => None,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let names: Vec<String> = fleet.assets().iter().map(|a| a.name.clone()).collect();
    let mut sink = match &args.archive {
        Some(root) => TelemetrySink::Archive(ArchiveWriter::new(root.clone(), names.clone())),
        None => {
            let csv_path = args.out.join("telemetry.csv");
            let file = File::create(&csv_path)
                .with_context(|| format!("creating {}", csv_path.display()))?;
            let mut out = BufWriter::new(file);
            telemetry::write_header(&mut out)?;
            TelemetrySink::Csv(csv_path, out)
        }
    };
    let total = fleet.max_readings().max(1);
    let mut n_readings = 0u64;
    let mut slot = 0u64;
    while let Some(reading) = fleet.next_reading() {
        match &mut sink {
            TelemetrySink::Csv(_, out) => {
                telemetry::write_row(out, &names[reading.asset_idx], &reading)?
            }
            TelemetrySink::Archive(w) => w.push(&reading)?,
        }
        if let Some(p) = publisher.as_mut() {
            let asset = &names[reading.asset_idx];
            p.publish(
                telemetry::topic(asset),
                telemetry::json_payload(&reading),
                reading.ts_ms,
            )?;
        }
        n_readings += 1;
        let pct = n_readings * 100 / total;
        if pct >= slot + 10 {
            slot = pct - pct % 10;
            eprintln!("simulate: {slot}% ({n_readings} readings)");
        }
    }
    let telemetry_path = match sink {
        TelemetrySink::Csv(path, mut out) => {
            out.flush()?;
            path
        }
        TelemetrySink::Archive(mut w) => {
            w.flush()?;
            eprintln!(
                "simulate: archive {}: {} day partitions, {} long rows",
                w.root.display(),
                w.n_days,
                w.n_rows
            );
            w.root
        }
    };
    let mqtt = match publisher {
        Some(p) => {
            let (sent, acked) = p.finish()?;
            Some(serde_json::json!({"published": sent, "acked": acked}))
        }
        None => None,
    };
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
        "telemetry": telemetry_path,
        "history": fixture_path,
        "ground_truth": truth_path,
        "mqtt": mqtt,
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

/// Where the simulated readings go.
enum TelemetrySink {
    Csv(PathBuf, BufWriter<File>),
    Archive(ArchiveWriter),
}

/// The cloud's archive layout: a day's long readings buffered, then written
/// as `day=YYYY-MM-DD/part-0.parquet` (readings arrive in time order).
struct ArchiveWriter {
    root: PathBuf,
    rows: LongRows,
    day: Option<i64>,
    n_days: u64,
    n_rows: u64,
}

impl ArchiveWriter {
    fn new(root: PathBuf, assets: Vec<String>) -> Self {
        Self {
            root,
            rows: LongRows {
                asset_names: assets,
                tag_names: SENSORS.iter().map(|s| s.to_string()).collect(),
                ..LongRows::default()
            },
            day: None,
            n_days: 0,
            n_rows: 0,
        }
    }

    fn push(&mut self, reading: &Reading) -> anyhow::Result<()> {
        let day = reading.ts_ms.div_euclid(DAY_MS);
        if self.day != Some(day) {
            self.flush()?;
            self.day = Some(day);
        }
        for (tag, value) in reading.values.iter().enumerate() {
            if value.is_some() {
                self.rows
                    .push(reading.ts_ms, reading.asset_idx as u32, tag as u32, *value);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        write_archive_part(&self.root, "part-0", &self.rows)?;
        self.n_days += 1;
        self.n_rows += self.rows.len() as u64;
        self.rows.clear();
        Ok(())
    }
}
