//! `fieldpulse bench edge`: the edge agent under load, next to the broker's own
//! ceiling measured in the same run.
//!
//! A private `mosquitto` on a free port; the real cloud ingest in this process
//! (durable log in a temp dir); the edge agent in a child process (so its RSS
//! is its own); a publisher stepping up the rate across 1,000 topics. A step
//! passes when every reading published in it reached the ingest within the
//! step plus a short drain window. The broker's QoS 1 ceiling (publisher →
//! plain subscriber, 100-byte payloads) is measured first, so results read as
//! a ratio on whatever machine runs them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use fieldpulse_cloud::ingest::{Ingest, IngestConfig};
use fieldpulse_cloud::log::{IngestLog, LogConfig};
use fieldpulse_edge::clock::now_ms;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::mosquitto::Mosquitto;

/// Measure the edge agent's sustained rate, RSS and wire size against a real broker.
///
/// Example: `fieldpulse bench edge --json --readings-per-msg 8`
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fieldpulse bench edge --json\n  fieldpulse bench edge --json --readings-per-msg 8 --msgs-per-s 37500 --step 10s"
)]
pub struct EdgeBenchArgs {
    /// Readings per MQTT message: 1 = `{"ts","value"}` per sensor topic, more =
    /// one JSON object with that many sensors.
    #[arg(long, default_value_t = 1)]
    pub readings_per_msg: usize,
    /// Number of distinct topics (1 reading/msg) or assets (several).
    #[arg(long, default_value_t = 1000)]
    pub topics: usize,
    /// Duration of one rate step.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Run one step at exactly this message rate instead of the ladder (e.g.
    /// to read peak RSS at a given load: 37500 with 8 readings/msg = 300 k readings/s).
    #[arg(long)]
    pub msgs_per_s: Option<f64>,
    /// Messages used to measure the broker's own QoS 1 ceiling.
    #[arg(long, default_value_t = 150_000)]
    pub broker_messages: u64,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Result of `fieldpulse bench edge`.
#[derive(Debug, Serialize)]
pub struct EdgeBenchReport {
    /// What ran the agent: the `fieldpulse-edge` binary (when built beside
    /// this one) or this binary's internal `bench edge-agent`.
    pub edge_process: String,
    /// Readings per MQTT message.
    pub readings_per_msg: usize,
    /// Highest message rate at which every reading was forwarded in time.
    pub msgs_per_s: f64,
    /// The same in readings.
    pub readings_per_s: f64,
    /// The broker's QoS 1 ceiling, publisher → plain subscriber, this run.
    pub broker_qos1_msgs_per_s: f64,
    /// `msgs_per_s / broker_qos1_msgs_per_s`.
    pub ratio_to_broker: f64,
    /// Peak resident memory of the edge process (VmHWM).
    pub peak_rss_bytes: u64,
    /// Resident memory of the idle edge process after start.
    pub idle_rss_bytes: u64,
    /// Compressed body bytes per forwarded reading.
    pub bytes_per_reading_on_wire: f64,
    /// Readings PUBACKed by the broker that never reached the ingest.
    pub lost: u64,
    /// Every step: target and achieved rates, and whether it kept up.
    pub steps: Vec<StepReport>,
}

/// One rate step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Target message rate.
    pub target_msgs_per_s: f64,
    /// Rate the publisher achieved.
    pub published_msgs_per_s: f64,
    /// Readings published in the step.
    pub readings: u64,
    /// Milliseconds after the step's last publish until the ingest had them all
    /// (`None`: not within the drain window).
    pub drain_ms: Option<u64>,
    /// Whether the step passed.
    pub kept_up: bool,
}

/// Runs the benchmark.
pub fn run(args: EdgeBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=64).contains(&args.readings_per_msg),
        "--readings-per-msg must be 1..=64"
    );
    anyhow::ensure!(args.topics >= 1, "--topics must be at least 1");
    if let Some(rate) = args.msgs_per_s {
        anyhow::ensure!(
            rate.is_finite() && rate >= 1.0,
            "--msgs-per-s must be at least 1, got {rate}"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run_async(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Runs the edge agent from a config file until SIGTERM/SIGINT (the child
/// process of this benchmark).
pub fn run_agent(config: &Path) -> anyhow::Result<()> {
    let config = fieldpulse_edge::EdgeConfig::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let agent = fieldpulse_edge::Agent::start(config).await?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            signal.cancel();
            std::io::Result::Ok(())
        });
        agent.run(shutdown).await?;
        anyhow::Ok(())
    })
}

async fn run_async(args: &EdgeBenchArgs) -> anyhow::Result<EdgeBenchReport> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let broker = Mosquitto::start(dir.path())?;
    eprintln!(
        "bench edge: measuring the broker's QoS 1 ceiling ({} messages)",
        args.broker_messages
    );
    let broker_rate = broker_ceiling(broker.addr(), args.broker_messages).await?;
    eprintln!("bench edge: broker ceiling {broker_rate:.0} msg/s");

    let (log, recovered) = IngestLog::open(&dir.path().join("ingest-log"), LogConfig::default())?;
    // Loopback only, as in the edge config below: no gateway token.
    let ingest_config = IngestConfig {
        insecure_dev_no_auth: true,
        ..IngestConfig::default()
    };
    let ingest = Ingest::new(ingest_config, log, &recovered)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cloud_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(Arc::clone(&ingest).serve(listener, shutdown.clone()));

    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config_path = dir.path().join("edge.toml");
    std::fs::write(
        &config_path,
        edge_config(broker.addr(), cloud_addr, metrics_port, dir.path()),
    )?;
    let (mut command, edge_process) = edge_command(&config_path)?;
    eprintln!("bench edge: edge process is {edge_process}");
    let mut edge = command
        .kill_on_drop(true)
        .spawn()
        .context("starting the edge agent process")?;
    let edge_pid = edge.id().context("edge process id")?;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    wait_connected(&metrics_url).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = proc_status_bytes(edge_pid, "VmRSS:").unwrap_or(0);

    let publisher = Publisher::connect(broker.addr()).await?;
    let mut steps = Vec::new();
    let mut best: Option<StepReport> = None;
    let mut published_readings = 0u64;
    // Steps as fractions of the broker's own ceiling, so the ladder fits any machine.
    let ladder: Vec<f64> = match args.msgs_per_s {
        Some(rate) => vec![rate],
        None => [0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.1, 1.25]
            .iter()
            .map(|fraction| (broker_rate * fraction).max(1_000.0))
            .collect(),
    };
    for msg_rate in ladder {
        let step = publisher.publish_step(args, msg_rate).await?;
        published_readings += step.readings;
        let drain = wait_ingested(&ingest, published_readings, Duration::from_millis(1500)).await;
        let kept_up = drain.is_some() && step.published_msgs_per_s >= 0.95 * msg_rate;
        let report = StepReport {
            drain_ms: drain.map(|d| d.as_millis() as u64),
            kept_up,
            ..step
        };
        eprintln!(
            "bench edge: target {:>7.0} msg/s, published {:>7.0} msg/s, drained in {:?} -> {}",
            msg_rate,
            report.published_msgs_per_s,
            report.drain_ms,
            if kept_up { "kept up" } else { "fell behind" }
        );
        steps.push(report.clone());
        if !kept_up {
            break;
        }
        best = Some(report);
    }
    // Whatever fell behind must still arrive: count what never did.
    let _ = wait_ingested(&ingest, published_readings, Duration::from_secs(60)).await;
    let lost = published_readings.saturating_sub(ingest.stats().readings_ingested);
    let peak_rss = proc_status_bytes(edge_pid, "VmHWM:").unwrap_or(0);
    let metrics = reqwest::get(&metrics_url).await?.text().await?;
    let wire_bytes = prometheus_value(&metrics, "fieldpulse_edge_wire_bytes_total");
    let forwarded = prometheus_value(&metrics, "fieldpulse_edge_readings_forwarded_total");
    publisher.disconnect().await;
    // SIGTERM: the agent flushes and exits 0.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(edge_pid.to_string())
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(20), edge.wait()).await;
    shutdown.cancel();

    let msgs_per_s = best.as_ref().map_or(0.0, |s| s.published_msgs_per_s);
    Ok(EdgeBenchReport {
        edge_process,
        readings_per_msg: args.readings_per_msg,
        msgs_per_s,
        readings_per_s: msgs_per_s * args.readings_per_msg as f64,
        broker_qos1_msgs_per_s: broker_rate,
        ratio_to_broker: if broker_rate > 0.0 {
            msgs_per_s / broker_rate
        } else {
            0.0
        },
        peak_rss_bytes: peak_rss,
        idle_rss_bytes: idle_rss,
        bytes_per_reading_on_wire: wire_bytes / forwarded.max(1.0),
        lost,
        steps,
    })
}

/// The `fieldpulse-edge` binary next to this executable when it exists (what
/// gateways run, and what RSS should be measured on), else this binary's
/// internal `bench edge-agent` (same library, larger binary).
fn edge_command(config: &Path) -> anyhow::Result<(tokio::process::Command, String)> {
    let me = std::env::current_exe().context("locating this executable")?;
    let sibling = me.with_file_name("fieldpulse-edge");
    if sibling.is_file() {
        let mut command = tokio::process::Command::new(&sibling);
        command
            .args(["--log", "error", "run", "--config"])
            .arg(config);
        return Ok((command, sibling.display().to_string()));
    }
    let mut command = tokio::process::Command::new(&me);
    command
        .args(["--log", "error", "bench", "edge-agent", "--config"])
        .arg(config);
    Ok((command, format!("{} bench edge-agent", me.display())))
}

/// The broker's QoS 1 throughput: one publisher, one plain subscriber,
/// 100-byte payloads across 1,000 topics.
async fn broker_ceiling(addr: SocketAddr, n_messages: u64) -> anyhow::Result<f64> {
    let mut sub_opts = MqttOptions::new("bench-ceiling-sub", addr.ip().to_string(), addr.port());
    sub_opts
        .set_inflight(1000)
        .set_keep_alive(Duration::from_secs(30));
    let (sub, mut sub_loop) = AsyncClient::new(sub_opts, 1024);
    sub.subscribe("ceiling/#", QoS::AtLeastOnce).await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut received = 0u64;
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    received += 1;
                    if received == n_messages {
                        return Ok(Instant::now());
                    }
                }
                Ok(_) => {}
                Err(err) => return Err(anyhow::anyhow!("ceiling subscriber: {err}")),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await??;
    let mut pub_opts = MqttOptions::new("bench-ceiling-pub", addr.ip().to_string(), addr.port());
    pub_opts
        .set_inflight(1000)
        .set_keep_alive(Duration::from_secs(30));
    let (publisher, mut pub_loop) = AsyncClient::new(pub_opts, 4096);
    let pub_poller = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let payload = vec![b'x'; 100];
    let started = Instant::now();
    for i in 0..n_messages {
        publisher
            .publish(
                format!("ceiling/{}", i % 1000),
                QoS::AtLeastOnce,
                false,
                payload.clone(),
            )
            .await?;
    }
    let finished = tokio::time::timeout(Duration::from_secs(120), receiver).await???;
    pub_poller.abort();
    Ok(n_messages as f64 / finished.duration_since(started).as_secs_f64())
}

/// The load generator: one MQTT client publishing at a target rate.
struct Publisher {
    client: AsyncClient,
    pubacks: Arc<AtomicU64>,
    published: AtomicU64,
    poller: tokio::task::JoinHandle<()>,
}

impl Publisher {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut opts = MqttOptions::new("bench-edge-pub", addr.ip().to_string(), addr.port());
        opts.set_inflight(1000)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        let pubacks = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pubacks);
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Self {
            client,
            pubacks,
            published: AtomicU64::new(0),
            poller,
        })
    }

    /// Publishes at `msg_rate` for `args.step`, in 1 ms slices.
    async fn publish_step(
        &self,
        args: &EdgeBenchArgs,
        msg_rate: f64,
    ) -> anyhow::Result<StepReport> {
        let started = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while started.elapsed() < args.step {
            ticker.tick().await;
            let due = (started.elapsed().as_secs_f64() * msg_rate) as u64;
            while sent < due {
                let (topic, body) = message(args, self.published.load(Ordering::Relaxed));
                self.client
                    .publish(topic, QoS::AtLeastOnce, false, body)
                    .await?;
                self.published.fetch_add(1, Ordering::Relaxed);
                sent += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Wait for the broker's PUBACKs so that "published" means "acknowledged".
        let target = self.published.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.pubacks.load(Ordering::Relaxed) < target
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(StepReport {
            target_msgs_per_s: msg_rate,
            published_msgs_per_s: sent as f64 / elapsed,
            readings: sent * args.readings_per_msg as u64,
            drain_ms: None,
            kept_up: false,
        })
    }

    async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        self.poller.abort();
    }
}

/// Message number `idx`: realistic ~80-byte JSON, topics round-robin.
fn message(args: &EdgeBenchArgs, idx: u64) -> (String, Vec<u8>) {
    let ts = now_ms();
    let key = idx % args.topics as u64;
    let value = 50.0 + (idx % 997) as f64 * 0.01;
    if args.readings_per_msg == 1 {
        let topic = format!("plant/bench/asset-{:04}/s{}", key / 8, key % 8);
        (
            topic,
            format!("{{\"ts\":{ts},\"value\":{value:.3},\"unit\":\"degC\",\"quality\":\"good\"}}")
                .into_bytes(),
        )
    } else {
        let fields: Vec<String> = (0..args.readings_per_msg)
            .map(|s| format!("\"s{s}\":{:.3}", value + s as f64))
            .collect();
        (
            format!("sensors/asset-{key:04}"),
            format!("{{\"ts\":{ts},{}}}", fields.join(",")).into_bytes(),
        )
    }
}

async fn wait_ingested(
    ingest: &Ingest<IngestLog>,
    expected: u64,
    within: Duration,
) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    while started.elapsed() < within {
        if ingest.stats().readings_ingested >= expected {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn wait_connected(metrics_url: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if let Ok(res) = reqwest::get(metrics_url).await {
            if let Ok(text) = res.text().await {
                if prometheus_value(&text, "fieldpulse_edge_mqtt_connected") >= 1.0 {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the edge agent did not connect to the broker within 20 s")
}

fn edge_config(broker: SocketAddr, cloud: SocketAddr, metrics_port: u16, dir: &Path) -> String {
    format!(
        r#"gateway_id = "bench-gateway"

[mqtt]
host = "{host}"
port = {port}

[[subscriptions]]
pattern = "plant/{{site}}/{{asset}}/{{sensor}}"

[[subscriptions]]
pattern = "sensors/{{asset}}"

[spool]
dir = "{spool}"

[forward]
url = "http://{cloud}"

[http]
listen = "127.0.0.1:{metrics_port}"
"#,
        host = broker.ip(),
        port = broker.port(),
        spool = dir.join("spool").display(),
    )
}

/// Reads a `Vm*:` line (kB) of `/proc/<pid>/status` as bytes.
pub(crate) fn proc_status_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The value of an unlabelled sample in Prometheus text.
fn prometheus_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
