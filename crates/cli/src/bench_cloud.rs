//! `fieldpulse bench cloud`: the cloud end to end in one process.
//!
//! A synthetic fleet's batches (protobuf + zstd, encoded before the clock
//! starts) are posted over real HTTP with several connections to a real
//! `fieldpulse cloud` (ingest log with fsync, scoring shards, SQLite), whose
//! outbox sends to an in-process Salesforce emulator. Measured:
//! - `readings_per_s`: readings from the first post until every record is
//!   scored (HTTP + zstd + decode + log + score);
//! - `latency_ms_p50/p99`: batch arrival in the log → action in the outbox;
//! - `bytes_per_asset`: resident memory growth over the run per asset;
//! - `outbox_records_per_s`: outbox rows delivered per second of draining;
//! - `archive_rows_per_s`, `archive_bytes_per_reading`: the Parquet archive
//!   writer alone over the run's log afterwards (read + decode + sort +
//!   encode + fsync, default `[archive]` settings, zstd); `archive_write_rows_per_s`
//!   counts the flushes only (sort, encode, fsync, rename).
//!
//! The end-to-end run archives too, as `fieldpulse cloud` does by default
//! (`--no-archive` turns it off for comparison).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fieldpulse_cloud::config::{RawCloudConfig, RawGateway};
use fieldpulse_cloud::service::Cloud;
use fieldpulse_cloud::synth::SynthFleet;
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, Fixture};
use prost::Message as _;
use serde::Serialize;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

/// Measure the cloud end to end: HTTP ingest, log, scoring, outbox to an emulator.
///
/// Example: `fieldpulse bench cloud --assets 2000 --rows 600 --json`
#[derive(Debug, Args)]
pub struct CloudBenchArgs {
    /// Assets in the synthetic fleet.
    #[arg(long, default_value_t = 2_000)]
    assets: usize,
    /// Rows (minutes) per asset.
    #[arg(long, default_value_t = 600)]
    rows: usize,
    /// Sensors per asset.
    #[arg(long, default_value_t = 6)]
    sensors: usize,
    /// Scoring shards (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Concurrent HTTP connections posting batches.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Every Nth asset develops a fault (so actions and latency are measured).
    #[arg(long, default_value_t = 50)]
    fault_every: usize,
    /// Run the end-to-end part without the Parquet archive writer.
    #[arg(long)]
    no_archive: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// What `bench cloud` reports.
#[derive(Debug, Serialize)]
struct CloudBenchReport {
    readings: u64,
    batches: usize,
    assets: usize,
    threads: usize,
    cores: usize,
    seconds: f64,
    readings_per_s: f64,
    readings_per_s_per_core: f64,
    latency_ms_p50: Option<u64>,
    latency_ms_p99: Option<u64>,
    bytes_per_asset: u64,
    state_bytes_per_asset: usize,
    outbox_records: u64,
    outbox_seconds: f64,
    outbox_records_per_s: f64,
    cases_created: usize,
    wire_bytes_per_reading: f64,
    archive_in_end_to_end: bool,
    archive_rows: u64,
    archive_files: u64,
    archive_bytes: u64,
    archive_seconds: f64,
    archive_rows_per_s: f64,
    archive_write_rows_per_s: f64,
    archive_bytes_per_reading: f64,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs the benchmark.
pub fn run(args: CloudBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(bench(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!(
            "cloud: {:.0} readings/s ({:.0} per core, {} shards), arrival->outbox p50 {:?} ms p99 {:?} ms, {} B/asset, outbox {:.0} records/s, {} Cases; archive alone {:.0} rows/s ({:.0} rows/s writing), {:.2} bytes/reading",
            report.readings_per_s,
            report.readings_per_s_per_core,
            report.threads,
            report.latency_ms_p50,
            report.latency_ms_p99,
            report.bytes_per_asset,
            report.outbox_records_per_s,
            report.cases_created,
            report.archive_rows_per_s,
            report.archive_write_rows_per_s,
            report.archive_bytes_per_reading
        );
    }
    Ok(())
}

async fn bench(args: &CloudBenchArgs) -> anyhow::Result<CloudBenchReport> {
    anyhow::ensure!(
        args.assets > 0 && args.rows > 0 && args.sensors > 0,
        "--assets, --rows and --sensors must be positive"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).max(1);
    let fleet = SynthFleet {
        assets: args.assets,
        sensors: (0..args.sensors).map(|i| format!("s{i}")).collect(),
        rows: args.rows,
        rows_per_batch: 20,
        assets_per_batch: 50,
        faulty: (0..args.assets).step_by(args.fault_every.max(1)).collect(),
        fault_at: args.rows / 2,
        t0_ms: 1_767_225_600_000,
    };
    // The org.
    let secret = "bench-consumer-secret";
    let emulator = Emulator::new(
        EmulatorConfig {
            consumer_secret: Some(secret.into()),
            daily_api_limit: 10_000_000,
            ..EmulatorConfig::default()
        },
        None,
    )?;
    let fixture: Fixture = serde_json::from_value(fleet.fixture_json())?;
    emulator.seed(&fixture)?;
    let sf_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sf_base = format!("http://{}", sf_listener.local_addr()?);
    let sf_base_for_cloud = sf_base.clone();
    let stop_sf = CancellationToken::new();
    tokio::spawn(emulator.clone().run(sf_listener, stop_sf.clone()));

    // The cloud.
    let dir = tempfile::tempdir()?;
    let secret_file = dir.path().join("sf-secret");
    std::fs::write(&secret_file, secret)?;
    let token = "bench-gateway-token";
    let mut raw = RawCloudConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.state_dir = dir.path().join("state");
    raw.gateways = vec![RawGateway {
        id: "gw-bench".into(),
        token_sha256: sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }];
    raw.scoring.shards = threads;
    raw.scoring.sensors = fleet.sensors.clone();
    raw.salesforce.token_url = sf_base_for_cloud;
    raw.salesforce.client_id = EmulatorConfig::default().consumer_key;
    raw.salesforce.client_secret_env = None;
    raw.salesforce.client_secret_file = Some(secret_file);
    raw.archive.enabled = !args.no_archive;
    let cfg = raw.validate("bench config")?;

    let batches = fleet.batches("gw-bench", 1);
    let bodies: Vec<(u64, Vec<u8>)> = batches
        .iter()
        .map(|b| Ok((b.seq, zstd::encode_all(b.encode_to_vec().as_slice(), 3)?)))
        .collect::<std::io::Result<_>>()?;
    let wire: usize = bodies.iter().map(|b| b.1.len()).sum();
    drop(batches);
    let rss_before = rss_bytes();
    let cloud = Cloud::start(cfg, None).await?;
    let addr = cloud.addr;
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut posters = Vec::new();
    for _ in 0..args.connections.max(1) {
        let bodies = Arc::clone(&bodies);
        let next = Arc::clone(&next);
        posters.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((seq, body)) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                loop {
                    let res = http
                        .post(format!("http://{addr}/v1/batches"))
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-encoding", "zstd")
                        .header("idempotency-key", format!("gw-bench/{seq}"))
                        .body(body.clone())
                        .send()
                        .await?;
                    if res.status().is_success() {
                        break;
                    }
                    anyhow::ensure!(res.status() == 503, "batch {seq}: {}", res.status());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for p in posters {
        p.await??;
    }
    let end = cloud.log.end_offset();
    let processor = Arc::clone(&cloud.processor);
    let done = tokio::task::spawn_blocking(move || {
        processor.wait_processed(end, Duration::from_secs(600))
    })
    .await?;
    anyhow::ensure!(done, "scoring did not catch up within 10 minutes");
    let seconds = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    // Everything the run enqueued reaches the org.
    let deadline = Instant::now() + Duration::from_secs(600);
    while cloud.sender.stats().depth > 0 {
        anyhow::ensure!(Instant::now() < deadline, "outbox did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = cloud.processor.metrics();
    let latency_ms_p50 = m.latency_quantile_ms(0.5);
    let latency_ms_p99 = m.latency_quantile_ms(0.99);
    cloud.shutdown().await?;
    let cases = emulator.live_count("Case");
    // The sender alone: a backlog of audit records and Cases, timed to empty.
    let (outbox_records, outbox_seconds) = outbox_throughput(
        &dir.path().join("outbox-bench.sqlite"),
        &sf_base,
        secret,
        &fleet,
    )
    .await?;
    stop_sf.cancel();
    let archive = archive_throughput(&dir.path().join("state"), &dir.path().join("archive-bench"))?;
    let state_bytes_per_asset = fieldpulse_models::anomaly::FleetScorer::new(
        fieldpulse_models::anomaly::DetectorValidParams::default(),
        fleet.sensors.clone(),
        1,
    )?
    .state_bytes_per_asset();
    let readings = fleet.n_readings();
    Ok(CloudBenchReport {
        readings,
        batches: bodies.len(),
        assets: args.assets,
        threads,
        cores,
        seconds,
        readings_per_s: readings as f64 / seconds,
        readings_per_s_per_core: readings as f64 / seconds / cores as f64,
        latency_ms_p50,
        latency_ms_p99,
        bytes_per_asset: rss_after.saturating_sub(rss_before) / args.assets as u64,
        state_bytes_per_asset,
        outbox_records,
        outbox_seconds,
        outbox_records_per_s: outbox_records as f64 / outbox_seconds,
        cases_created: cases,
        wire_bytes_per_reading: wire as f64 / readings as f64,
        archive_in_end_to_end: !args.no_archive,
        archive_rows: archive.rows,
        archive_files: archive.files,
        archive_bytes: archive.bytes,
        archive_seconds: archive.seconds,
        archive_rows_per_s: archive.rows as f64 / archive.seconds,
        archive_write_rows_per_s: archive.rows as f64 / archive.write_seconds,
        archive_bytes_per_reading: archive.bytes as f64 / archive.rows.max(1) as f64,
    })
}

/// What the archive writer did alone over the run's log.
struct ArchiveRun {
    rows: u64,
    files: u64,
    bytes: u64,
    seconds: f64,
    write_seconds: f64,
}

/// Archives the whole log of `state` into `out` with a fresh consumer and the
/// default `[archive]` settings, timing all of it and the flushes alone.
fn archive_throughput(
    state: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<ArchiveRun> {
    use fieldpulse_cloud::archive::{ArchiveMetrics, ArchiveSettings, ArchiveWriter};
    use fieldpulse_cloud::log::{IngestLog, LogConfig};
    let (log, _) = IngestLog::open(
        &state.join(fieldpulse_cloud::service::LOG_DIR),
        LogConfig::default(),
    )?;
    let consumer = log.consumer("archive-bench")?;
    let committed = consumer.committed();
    let settings = ArchiveSettings::new(out.to_path_buf());
    let flush_rows = settings.flush_rows;
    let (mut writer, _) = ArchiveWriter::open(
        settings,
        consumer,
        committed,
        Arc::new(ArchiveMetrics::default()),
    )?;
    let mut run = ArchiveRun {
        rows: 0,
        files: 0,
        bytes: 0,
        seconds: 0.0,
        write_seconds: 0.0,
    };
    let started = Instant::now();
    loop {
        let n = writer.fill(64, Duration::ZERO)?;
        if n == 0 || writer.buffer().n_rows() >= flush_rows {
            let flushing = Instant::now();
            if let Some(r) = writer.flush()? {
                run.rows += r.rows;
                run.files += r.files;
                run.bytes += r.bytes;
            }
            run.write_seconds += flushing.elapsed().as_secs_f64();
        }
        if n == 0 {
            break;
        }
    }
    run.seconds = started.elapsed().as_secs_f64();
    Ok(run)
}

/// Enqueues a backlog (one Case and two audit records per asset) into a fresh
/// outbox and times one sender emptying it against the emulator.
async fn outbox_throughput(
    db: &std::path::Path,
    sf_base: &str,
    secret: &str,
    fleet: &SynthFleet,
) -> anyhow::Result<(u64, f64)> {
    use fieldpulse_cloud::outbox::{enqueue, Action, OutboxSender, SenderConfig};
    let mut store = fieldpulse_cloud::store::Store::open(db)?;
    let tx = store.write()?;
    let mut n = 0u64;
    for i in 0..fleet.assets {
        let asset = SynthFleet::asset_name(i);
        let mut case = serde_json::Map::new();
        case.insert(
            "Subject".into(),
            serde_json::json!(format!("bench {asset}")),
        );
        case.insert("AI_Generated__c".into(), serde_json::json!(true));
        enqueue(
            &tx,
            &Action {
                sobject: "Case".into(),
                ext_key: format!("fp-bench-case:{asset}"),
                fields: case,
                priority: 1,
                deferrable: false,
                source_ms: 0,
            },
            0,
        )?;
        n += 1;
        for k in 0..2 {
            let mut insight = serde_json::Map::new();
            insight.insert("Model_Name__c".into(), serde_json::json!("bench"));
            insight.insert("Outcome__c".into(), serde_json::json!("bench"));
            enqueue(
                &tx,
                &Action {
                    sobject: "AI_Insight__c".into(),
                    ext_key: format!("fp-bench-insight:{asset}:{k}"),
                    fields: insight,
                    priority: 3,
                    deferrable: false,
                    source_ms: 0,
                },
                0,
            )?;
            n += 1;
        }
    }
    tx.commit()?;
    let client =
        fieldpulse_salesforce::SalesforceClient::new(fieldpulse_salesforce::ClientConfig::new(
            fieldpulse_salesforce::AuthConfig::ClientCredentials {
                token_url: sf_base.to_string(),
                client_id: EmulatorConfig::default().consumer_key,
                client_secret: secret.to_string().into(),
            },
        ))?;
    let sender = OutboxSender::open(db, client, SenderConfig::default())?;
    let started = Instant::now();
    while sender.stats().depth > 0 {
        sender.send_pending().await?;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "outbox bench did not drain"
        );
    }
    Ok((n, started.elapsed().as_secs_f64()))
}
