//! `fieldpulse demo`: the whole pipeline on embedded defaults.
//!
//! An in-process MQTT broker (`rumqttd`, or `--broker` for your own), a
//! simulated fleet publishing in
//! every supported payload shape plus malformed payloads, the real edge agent
//! (`fieldpulse_edge::Agent`) with its disk spool, and the real cloud ingest
//! endpoint (`fieldpulse_cloud::ingest`, authenticated by a per-run gateway
//! token) over the durable, segmented `fieldpulse_cloud::log::IngestLog`. Midway
//! the ingest goes down for a few seconds (it answers 503, as a cloud that
//! cannot commit does): the spool grows, then live data resumes first while
//! the backlog drains as `historical`. The summary accounts for every reading.

mod broker;
mod publisher;
mod report;
mod sink;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fieldpulse_cloud::ingest::{GatewayToken, Ingest, IngestConfig};
use fieldpulse_cloud::log::{IngestLog, LogConfig};
use fieldpulse_edge::{Agent, EdgeConfig};
use tokio_util::sync::CancellationToken;

use self::publisher::{FleetPlan, PublishStats};
use self::sink::DemoSink;

/// Run the whole pipeline locally and print what happened.
///
/// Example: `fieldpulse demo --json`
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse demo --json          # summary as JSON (also in demo-out/summary.json)\n  fieldpulse demo --broker 127.0.0.1:1883 --assets 100 --duration 30s"
)]
pub struct DemoArgs {
    /// Directory for the spool, the ingest log and `summary.json` (emptied first).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Number of simulated assets.
    #[arg(long, default_value_t = 40)]
    pub assets: usize,
    /// How long the fleet publishes.
    #[arg(long, default_value = "12s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Use this MQTT broker (`host:port`, e.g. a local mosquitto) instead of
    /// the embedded one.
    #[arg(long)]
    pub broker: Option<std::net::SocketAddr>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(run_pipeline(&args))?;
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("writing {}", args.out.join("summary.json").display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprint!("{}", summary.to_text());
    }
    if summary.readings_lost > 0 {
        anyhow::bail!("{} acknowledged readings were lost", summary.readings_lost);
    }
    Ok(())
}

async fn run_pipeline(args: &DemoArgs) -> anyhow::Result<report::DemoSummary> {
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("emptying {}", args.out.display()))?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let shutdown = CancellationToken::new();
    let (broker, broker_kind) = match args.broker {
        Some(addr) => (addr, format!("external {addr}")),
        None => {
            progress(args, "starting the embedded MQTT broker");
            (broker::start()?, "rumqttd (embedded)".to_string())
        }
    };

    // The cloud side: the real ingest API over the durable log, with a
    // gateway token made for this run (the edge reads it from a file).
    let token = demo_token();
    let token_file = args.out.join("gateway.token");
    std::fs::write(&token_file, &token)
        .with_context(|| format!("writing {}", token_file.display()))?;
    let log_dir = args.out.join("ingest-log");
    let (log, recovered) = IngestLog::open(&log_dir, LogConfig::default())
        .with_context(|| format!("opening the ingest log in {}", log_dir.display()))?;
    let sink = DemoSink::new(log);
    let ingest_config = IngestConfig {
        tokens: vec![GatewayToken::from_plaintext(GATEWAY_ID, &token)],
        ..IngestConfig::default()
    };
    let ingest = Ingest::new(ingest_config, sink.clone(), &recovered)
        .context("building the ingest service")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cloud_addr = listener.local_addr()?;
    let cloud = tokio::spawn(Arc::clone(&ingest).serve(listener, shutdown.child_token()));

    // The edge agent, configured as a gateway operator would.
    let config = edge_config(broker, cloud_addr, &args.out)?;
    let agent = Agent::start(config)
        .await
        .context("starting the edge agent")?;
    let edge_metrics = agent.metrics();
    let edge_shutdown = CancellationToken::new();
    let edge = tokio::spawn(agent.run(edge_shutdown.clone()));
    // A broker drops QoS 1 messages for which no subscription exists yet: the
    // fleet starts only once the edge's persistent session is subscribed.
    let subscribed_by = tokio::time::Instant::now() + Duration::from_secs(20);
    while !edge_metrics.snapshot().mqtt_connected {
        anyhow::ensure!(
            tokio::time::Instant::now() < subscribed_by,
            "the edge did not subscribe to the demo broker within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The fleet, with an uplink outage in the middle of the run.
    let stats = Arc::new(PublishStats::default());
    let plan = FleetPlan {
        n_assets: args.assets,
        tick: Duration::from_millis(50),
        duration: args.duration,
        seed: 7,
    };
    progress(
        args,
        &format!("publishing {} assets for {:?}", args.assets, args.duration),
    );
    let fleet = tokio::spawn(publisher::run(
        broker,
        plan,
        Arc::clone(&stats),
        shutdown.child_token(),
    ));
    let outage = outage_window(args.duration);
    tokio::time::sleep(outage.0).await;
    progress(
        args,
        "uplink outage: the cloud answers 503, the edge spools",
    );
    sink.set_outage(true);
    let peak_spool = watch_peak_spool(&edge_metrics, outage.1).await;
    sink.set_outage(false);
    progress(
        args,
        "uplink back: live data first, backlog drains as historical",
    );
    fleet.await.context("publisher task")??;

    // Everything the broker acknowledged must reach the cloud.
    let expected = stats
        .valid_readings
        .load(std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ingest.stats().readings_ingested < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress(args, "stopping the edge (flush, fsync, exit)");
    edge_shutdown.cancel();
    let edge_summary = edge.await.context("edge task")?.context("edge agent")?;
    shutdown.cancel();
    cloud
        .await
        .context("ingest task")?
        .context("ingest server")?;
    let mut summary = report::DemoSummary::collect(
        &stats,
        &edge_metrics.snapshot(),
        &edge_summary,
        &ingest.stats(),
        sink.take_latencies(),
        peak_spool,
    );
    summary.broker = broker_kind;
    Ok(summary)
}

/// The demo gateway's id (in the edge config and the ingest's token list).
const GATEWAY_ID: &str = "demo-gateway";

/// A random token for this run (never printed; the edge reads it from a file).
fn demo_token() -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::from_entropy();
    format!("{:032x}", rng.gen::<u128>())
}

/// The outage starts after a third of the run and lasts a third of it.
fn outage_window(duration: Duration) -> (Duration, Duration) {
    (duration / 3, duration / 3)
}

async fn watch_peak_spool(metrics: &fieldpulse_edge::MetricsHandle, window: Duration) -> u64 {
    let end = tokio::time::Instant::now() + window;
    let mut peak = 0;
    while tokio::time::Instant::now() < end {
        peak = peak.max(metrics.snapshot().spool_records_uncut);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}

fn edge_config(
    broker: std::net::SocketAddr,
    cloud: std::net::SocketAddr,
    out: &std::path::Path,
) -> anyhow::Result<EdgeConfig> {
    let patterns = publisher::TOPIC_PATTERNS;
    let toml = format!(
        r#"
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

[validation.ranges]
temp = {{ min = -40.0, max = 200.0 }}
vib_rms = {{ min = 0.0, max = 50.0 }}
pressure = {{ min = 0.0, max = 100.0 }}
current = {{ min = 0.0, max = 500.0 }}

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
enabled = false
"#,
        host = broker.ip(),
        port = broker.port(),
        p0 = patterns[0],
        p1 = patterns[1],
        quarantine = out.join("quarantine.jsonl").display(),
        spool = out.join("spool").display(),
        gateway = GATEWAY_ID,
        token_file = out.join("gateway.token").display(),
    );
    EdgeConfig::from_toml_str(&toml, "demo edge config").context("building the demo edge config")
}

fn progress(args: &DemoArgs, message: &str) {
    if !args.json {
        eprintln!("demo: {message}");
    }
}
