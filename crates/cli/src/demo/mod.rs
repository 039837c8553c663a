//! `fieldpulse demo`: the whole product on embedded defaults.
//!
//! A simulated history fleet trains a failure model; a separate simulated
//! live fleet seeds an in-process Salesforce emulator (Accounts, Products,
//! Assets, Work Order history) and is replayed at a speed-up over MQTT
//! (`rumqttd` in-process, or `--broker` for your own), in every timestamped
//! payload shape plus malformed payloads; the real edge agent, in its own
//! process (`fieldpulse edge`, see [`edge_process`]), spools and forwards it
//! to the real cloud (`fieldpulse_cloud::service::Cloud`: ingest log, scoring
//! shards with the model, episodes, outbox) through a relay standing for the
//! network. A third of the way in the uplink is cut and the cloud process is
//! killed (`Cloud::abort`, no drain) and restarted on its state directory: the
//! edge spools, then backfills. Later the edge agent is killed with SIGKILL
//! and restarted on its spool. The summary accounts for every reading, lists
//! the Cases the dispatcher sees and judges them against the simulator's
//! ground truth; `report.html` shows them with plots (`html/`).

mod broker;
mod edge_only;
mod edge_process;
mod html;
mod org;
mod outcome;
mod publisher;
mod report;
mod scenario;
mod uplink;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fieldpulse_cloud::processor::Processor;
use fieldpulse_cloud::service::Cloud;
use fieldpulse_edge::EdgeConfig;
use tokio_util::sync::CancellationToken;

use self::edge_process::{EdgeProcess, EdgeWatch};
use self::publisher::{FleetPlan, PublishStats};
use self::scenario::{ScenarioConfig, DAY_MS};

/// Run the whole product locally and print what happened.
///
/// Example: `fieldpulse demo --json`
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse demo --json          # summary as JSON (also in demo-out/summary.json)\n  fieldpulse demo --broker 127.0.0.1:1883 --assets 60 --days 14 --duration 30s"
)]
pub struct DemoArgs {
    /// Directory for the model, the spool, the cloud state and `summary.json` (emptied first).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Number of simulated assets replayed.
    #[arg(long, default_value_t = 120)]
    pub assets: usize,
    /// Days of fleet time judged against the ground truth (replayed after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub days: u64,
    /// Days of fleet time replayed first so the scorers are warm.
    #[arg(long, default_value_t = 30)]
    pub warmup_days: u64,
    /// Assets in the simulated year of history the model is trained on.
    #[arg(long, default_value_t = 48)]
    pub history_assets: usize,
    /// Seed of the simulated fleets, their failures and Work Order history. With
    /// `--no-faults` the same seed gives the same Cases; the injected faults
    /// make some readings arrive late (backlog after live data), and which ones
    /// depends on timing.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Wall time the replay should take (longer if the machine cannot keep up);
    /// default 60s, 15s with `--edge-only`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Use this MQTT broker (`host:port`, e.g. a local mosquitto) instead of
    /// the embedded one.
    #[arg(long)]
    pub broker: Option<std::net::SocketAddr>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the injected faults (uplink cut, cloud kill, edge kill -9).
    #[arg(long)]
    pub no_faults: bool,
    /// Only the gateway half: fleet → MQTT → edge agent → the cloud's ingest
    /// log (no model, no scoring, no Salesforce), with the uplink cut and the
    /// edge kill -9; the summary accounts for every reading.
    #[arg(long)]
    pub edge_only: bool,
}

impl DemoArgs {
    /// The replay's wall time.
    fn duration(&self) -> Duration {
        self.duration.unwrap_or(if self.edge_only {
            Duration::from_secs(15)
        } else {
            Duration::from_secs(60)
        })
    }
}

/// Empties (or creates) the output directory and returns its absolute path.
fn prepare_out(out: &std::path::Path) -> anyhow::Result<PathBuf> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::canonicalize(out).with_context(|| format!("resolving {}", out.display()))
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=5_000).contains(&args.assets),
        "--assets must be in 1..=5000"
    );
    anyhow::ensure!(
        (1..=3_650).contains(&args.days),
        "--days must be in 1..=3650"
    );
    anyhow::ensure!(
        args.warmup_days <= 3_650,
        "--warmup-days must be at most 3650"
    );
    anyhow::ensure!(
        (6..=5_000).contains(&args.history_assets),
        "--history-assets must be in 6..=5000"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.edge_only {
        let out = prepare_out(&args.out)?;
        let summary = runtime.block_on(edge_only::run(&args, &out))?;
        std::fs::write(
            out.join("summary.json"),
            serde_json::to_string_pretty(&summary)? + "\n",
        )
        .with_context(|| format!("writing {}", out.join("summary.json").display()))?;
        if args.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            eprint!("{}", summary.to_text());
        }
        anyhow::ensure!(
            summary.readings_lost == 0,
            "{} acknowledged readings were lost",
            summary.readings_lost
        );
        return Ok(());
    }
    let summary = runtime.block_on(run_pipeline(&args))?;
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("writing {}", args.out.join("summary.json").display()))?;
    let report_html = args.out.join("report.html");
    html::write(&report_html, &summary)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprint!("{}", summary.to_text());
        eprintln!("  report     {}", report_html.display());
    }
    if summary.readings_lost > 0 {
        anyhow::bail!("{} acknowledged readings were lost", summary.readings_lost);
    }
    Ok(())
}

async fn run_pipeline(args: &DemoArgs) -> anyhow::Result<report::DemoSummary> {
    let wall = std::time::Instant::now();
    let out = prepare_out(&args.out)?;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();

    // The world: a trained model, the live fleet and its truth.
    let model_dir = out.join("model");
    let scenario_cfg = ScenarioConfig {
        assets: args.assets,
        history_assets: args.history_assets,
        warmup_days: args.warmup_days,
        days: args.days,
        seed: args.seed,
    };
    let quiet = args.json;
    let scenario = {
        let model_dir = model_dir.clone();
        tokio::task::spawn_blocking(move || {
            scenario::prepare(&scenario_cfg, &model_dir, &mut |line| {
                if !quiet {
                    eprintln!("demo: {line}");
                }
            })
        })
        .await
        .context("scenario task")??
    };

    // Salesforce (emulated) and the cloud processor with the model.
    let org = org::start(&scenario.fixture, &out, shutdown.child_token()).await?;
    progress(
        args,
        &format!(
            "Salesforce emulator at {} seeded with {} assets and their Work Order history",
            org.base,
            scenario.names.len()
        ),
    );
    let token = random_token();
    let token_file = out.join("gateway.token");
    std::fs::write(&token_file, &token)
        .with_context(|| format!("writing {}", token_file.display()))?;
    let replay_days = args.warmup_days + args.days;
    // How old the replayed readings are by the wall clock, in days: the edge
    // must accept them and the cloud may open Cases on them.
    let age_days = (fieldpulse_edge::clock::now_ms() - scenario.start_ms).max(0) / DAY_MS + 2;
    let cloud_cfg = org::cloud_config(
        &org,
        &out.join("cloud-state"),
        GATEWAY_ID,
        &token,
        &model_dir,
        age_days as u64,
    )?;
    let archive_dir = cloud_cfg.archive.as_ref().map(|a| a.dir.clone());
    let cloud = Cloud::start(cloud_cfg.clone(), None)
        .await
        .context("starting the cloud")?;
    progress(
        args,
        &format!(
            "cloud processor serving on {} with the model loaded",
            cloud.addr
        ),
    );
    let uplink = uplink::Uplink::start(cloud.addr).await?;

    let (broker, broker_kind) = match args.broker {
        Some(addr) => (addr, format!("external {addr}")),
        None => {
            progress(args, "starting the embedded MQTT broker");
            (broker::start()?, "rumqttd (embedded)".to_string())
        }
    };
    let mut edge = start_edge(broker, uplink.addr, &out, age_days as u64).await?;
    let edge_watch = edge.watch();

    // The fleet, with an uplink cut and a cloud crash a third of the way in, and a
    // kill -9 of the edge agent later.
    let stats = Arc::new(PublishStats::default());
    let plan = FleetPlan {
        names: scenario.names.clone(),
        readings: scenario.readings.clone(),
        start_ms: scenario.start_ms,
        end_ms: scenario.end_ms,
        duration: args.duration(),
    };
    progress(
        args,
        &format!(
            "replaying {} assets x {replay_days} days of fleet time ({} scans) over MQTT in about {:?}",
            args.assets,
            plan.readings.len(),
            args.duration()
        ),
    );
    let fleet = tokio::spawn(publisher::run(
        broker,
        plan,
        Arc::clone(&stats),
        shutdown.child_token(),
    ));
    let live_processor = Arc::new(Mutex::new(Arc::clone(&cloud.processor)));
    let replay_started = tokio::time::Instant::now();
    let ticker = (!args.json).then(|| {
        tokio::spawn(live_progress(
            Arc::clone(&stats),
            edge_watch.clone(),
            Arc::clone(&live_processor),
            org.emulator.clone(),
            scenario.start_ms,
        ))
    });
    let mut lives = Vec::new();
    let (cloud, peak_spool) = if args.no_faults {
        (cloud, 0)
    } else {
        tokio::time::sleep(args.duration() / 3).await;
        progress(
            args,
            "uplink cut: the edge keeps accepting readings into its spool; killing the cloud process",
        );
        uplink.cut();
        // Let a commit that was already under way finish before the kill is
        // counted (its batch is then a duplicate the edge re-sends).
        tokio::time::sleep(Duration::from_secs(1)).await;
        lives.push(cloud.ingest.stats());
        cloud.abort().await;
        let outage = (args.duration() / 6).max(Duration::from_secs(2));
        let peak_spool = watch_peak_spool(&edge_watch, outage).await;
        let cloud = Cloud::start(cloud_cfg, None)
            .await
            .context("restarting the cloud")?;
        uplink.restore(cloud.addr);
        *live_processor.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&cloud.processor);
        progress(
            args,
            "cloud restarted on its state directory, uplink back: live data first, backlog drains as historical",
        );
        (cloud, peak_spool)
    };
    // Later, the gateway loses power: SIGKILL, no drain. The broker keeps the
    // edge's persistent session (and redelivers what it never PUBACKed); the
    // restarted agent recovers its spool and carries on.
    tokio::time::sleep_until(replay_started + args.duration() * 5 / 8).await;
    if !args.no_faults && !fleet.is_finished() {
        kill_and_restart_edge(args, &mut edge).await?;
    }
    fleet.await.context("publisher task")??;

    // Everything the broker acknowledged must reach the cloud, be scored and
    // its actions reach Salesforce.
    let expected = stats.valid_readings.load(Ordering::Relaxed);
    let before: u64 = lives.iter().map(|s| s.readings_ingested).sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while before + cloud.ingest.stats().readings_ingested < expected
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress(
        args,
        "fleet replayed; waiting for scoring and the outbox to drain",
    );
    let end = cloud.log.end_offset();
    let processor = Arc::clone(&cloud.processor);
    let caught_up =
        tokio::task::spawn_blocking(move || processor.wait_idle(end, Duration::from_secs(300)))
            .await
            .context("waiting for the processor")?;
    anyhow::ensure!(
        caught_up,
        "the cloud processor did not catch up with its log within 300 s"
    );
    let drained_by = tokio::time::Instant::now() + Duration::from_secs(120);
    while cloud.sender.stats().depth > 0 && tokio::time::Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let depth = cloud.sender.stats().depth;
    if depth > 0 {
        progress(
            args,
            &format!("the outbox still holds {depth} actions after 120 s; the summary shows what reached Salesforce"),
        );
    }
    if let Some(t) = ticker {
        t.abort();
    }
    progress(
        args,
        "stopping the edge (flush, fsync, exit) and the cloud (drain, checkpoint)",
    );
    let edge_kills = edge.kills;
    let (edge_counters, edge_clean_exit) = edge.stop(Duration::from_secs(30)).await?;
    lives.push(cloud.ingest.stats());
    let recovery = {
        let m = cloud.processor.metrics();
        report::Recovery {
            assets_restored: m.assets_restored.load(Ordering::Relaxed),
            readings_skipped: m.replayed_skipped.load(Ordering::Relaxed),
            changes_not_reemitted: m.replayed_changes.load(Ordering::Relaxed),
            episodes_open: cloud.processor.status().episodes_open,
            rows_out_of_order: cloud.processor.status().rows_out_of_order,
            rows_same_instant: cloud.processor.status().rows_duplicate,
        }
    };
    cloud.shutdown().await.context("cloud shutdown")?;
    // The shutdown drained the log into the archive: what it holds now.
    let archive = match archive_dir {
        Some(dir) => {
            let inventory = fieldpulse_cloud::archive::inventory(&dir)
                .with_context(|| format!("reading the archive in {}", dir.display()))?;
            Some((dir.display().to_string(), inventory))
        }
        None => None,
    };
    let outcome = outcome::collect(&org.emulator, &scenario, &stats, &org.base);
    Ok(report::DemoSummary::collect(report::Collected {
        broker: broker_kind,
        scenario: &scenario,
        seed: args.seed,
        warmup_days: args.warmup_days,
        published: &stats,
        edge: &edge_counters,
        edge_clean_exit,
        edge_kills,
        faults_injected: !args.no_faults,
        cloud: &lives,
        outcome,
        peak_spool,
        recovery,
        archive,
        wall_seconds: wall.elapsed().as_secs_f64(),
    }))
}

/// The edge agent, configured as a gateway operator would, in its own process,
/// once it is subscribed (a broker drops QoS 1 messages for which no
/// subscription exists yet, so the fleet starts only after this).
async fn start_edge(
    broker: std::net::SocketAddr,
    cloud: std::net::SocketAddr,
    out: &std::path::Path,
    age_days: u64,
) -> anyhow::Result<EdgeProcess> {
    let http = free_port().context("finding a port for the edge's /metrics")?;
    let toml_path = out.join("edge.toml");
    std::fs::write(&toml_path, edge_config(broker, cloud, http, out, age_days))
        .with_context(|| format!("writing {}", toml_path.display()))?;
    EdgeConfig::load(&toml_path).context("checking the demo edge config")?;
    let mut edge = EdgeProcess::start(&toml_path, &out.join("edge.log"), http).await?;
    edge.wait_connected(Duration::from_secs(20)).await?;
    Ok(edge)
}

/// The gateway loses power: SIGKILL, no drain. The broker keeps the edge's
/// persistent session (and redelivers what it never PUBACKed); the restarted
/// agent recovers its spool and carries on.
async fn kill_and_restart_edge(args: &DemoArgs, edge: &mut EdgeProcess) -> anyhow::Result<()> {
    let spooled = edge.watch().counters().readings_spooled;
    edge.kill9().await?;
    progress(
        args,
        &format!("edge agent killed with SIGKILL ({spooled} readings spooled so far); restarting it on its spool"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    edge.restart()?;
    edge.wait_connected(Duration::from_secs(20)).await?;
    progress(
        args,
        "edge agent back: spool recovered, broker session resumed",
    );
    Ok(())
}

/// One line every 5 s: fleet time, readings/s, spool backlog, open
/// episodes, Cases.
async fn live_progress(
    stats: Arc<PublishStats>,
    edge: EdgeWatch,
    processor: Arc<Mutex<Arc<Processor>>>,
    emulator: fieldpulse_sf_emulator::Emulator,
    start_ms: i64,
) {
    let every = Duration::from_secs(5);
    let mut last = 0;
    loop {
        tokio::time::sleep(every).await;
        let now = stats.valid_readings.load(Ordering::Relaxed);
        let fleet_ms = stats.fleet_ms.load(Ordering::Relaxed);
        let m = edge.counters();
        let open = processor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status()
            .episodes_open;
        eprintln!(
            "demo: fleet day {:>5.1}: {:>6.0} readings/s, spool backlog {} records, {open} open episodes, {} Cases in Salesforce",
            (fleet_ms - start_ms).max(0) as f64 / DAY_MS as f64,
            (now - last) as f64 / every.as_secs_f64(),
            m.spool_records_uncut,
            emulator.live_count("Case"),
        );
        last = now;
    }
}

/// The demo gateway's id (in the edge config and the ingest's token list).
const GATEWAY_ID: &str = "demo-gateway";

/// A random secret for this run (never printed; read from files).
fn random_token() -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::from_entropy();
    format!("{:032x}", rng.gen::<u128>())
}

async fn watch_peak_spool(edge: &EdgeWatch, window: Duration) -> u64 {
    let end = tokio::time::Instant::now() + window;
    let mut peak = 0;
    while tokio::time::Instant::now() < end {
        peak = peak.max(edge.counters().spool_records_uncut);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}

/// A free loopback port (bound, then released for the edge process to bind).
fn free_port() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The demo edge's config file, as a gateway operator would write it.
fn edge_config(
    broker: std::net::SocketAddr,
    cloud: std::net::SocketAddr,
    http: std::net::SocketAddr,
    out: &std::path::Path,
    max_age_days: u64,
) -> String {
    let patterns = publisher::TOPIC_PATTERNS;
    format!(
        r#"# Written by `fieldpulse demo`; run by `fieldpulse edge --config` (as `fieldpulse-edge run`).
gateway_id = "{gateway}"

[mqtt]
host = "{host}"
port = {port}

[[subscriptions]]
pattern = "{p0}"

[[subscriptions]]
pattern = "{p1}"

[validation]
quarantine_file = "{quarantine}"
# The replay publishes the fleet's own (past) timestamps.
max_age = "{max_age_days}d"

# Physical limits, far outside anything the simulated fleet produces.
[validation.ranges]
temp_c = {{ min = -60.0, max = 400.0 }}
pressure_bar = {{ min = -10.0, max = 1000.0 }}

[spool]
dir = "{spool}"
max_bytes = 67108864

[forward]
url = "http://{cloud}"
token_file = "{token_file}"
batch_max_age = "100ms"
retry_initial = "100ms"
retry_max = "1s"
backfill_rate = 20000

[http]
enabled = true
listen = "{http}"
"#,
        host = broker.ip(),
        port = broker.port(),
        p0 = patterns[0],
        p1 = patterns[1],
        quarantine = out.join("quarantine.jsonl").display(),
        spool = out.join("spool").display(),
        gateway = GATEWAY_ID,
        token_file = out.join("gateway.token").display(),
    )
}

fn progress(args: &DemoArgs, message: &str) {
    if !args.json {
        eprintln!("demo: {message}");
    }
}
