//! Real parts for the integration tests: a `mosquitto` broker on a free port, an HTTP receiver
//! that speaks the cloud's batch protocol, an MQTT publisher that knows which publishes the
//! broker acknowledged, a bandwidth-limited TCP proxy (a slow uplink), and helpers to build edge
//! configs.

pub mod broker;
pub mod certs;
pub mod cloud;
pub mod process;
pub mod proxy;
pub mod publisher;
pub mod receiver;
pub mod script_broker;
pub mod slow_link;

use std::path::Path;
use std::time::{Duration, Instant};

use fieldpulse_edge::EdgeConfig;

/// Waits until `done()` holds, checking every few ms, failing after `timeout` with `what`.
pub async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Options of a test edge config.
pub struct EdgeOptions {
    pub gateway_id: String,
    pub broker_port: u16,
    pub cloud_url: String,
    pub spool_max_bytes: u64,
    pub full_policy: &'static str,
    pub backfill_rate: u32,
    pub batch_max_records: usize,
    pub http_listen: Option<String>,
    pub extra: String,
}

impl EdgeOptions {
    pub fn new(broker_port: u16, cloud_url: &str) -> Self {
        Self {
            gateway_id: "gw-test".into(),
            broker_port,
            cloud_url: cloud_url.to_string(),
            spool_max_bytes: 64 << 20,
            full_policy: "drop_oldest",
            backfill_rate: 1_000_000,
            batch_max_records: 5000,
            http_listen: None,
            extra: String::new(),
        }
    }

    /// The TOML text of this config with the spool (and token) under `dir`.
    pub fn to_toml(&self, dir: &Path) -> String {
        let token = dir.join("token");
        std::fs::write(&token, "test-token\n").expect("write token file");
        let http = match &self.http_listen {
            Some(addr) => format!("[http]\nlisten = \"{addr}\"\n"),
            None => "[http]\nenabled = false\n".to_string(),
        };
        format!(
            r#"gateway_id = "{gateway}"

[mqtt]
host = "127.0.0.1"
port = {port}
keep_alive = "10s"
reconnect_delay = "100ms"

[[subscriptions]]
pattern = "plant/{{site}}/{{asset}}/{{sensor}}"

[[subscriptions]]
pattern = "sensors/{{asset}}"

[spool]
dir = "{spool}"
max_bytes = {max_bytes}
segment_bytes = 65536
full_policy = "{policy}"
commit_interval = "2ms"

[forward]
url = "{url}"
token_file = "{token}"
batch_max_records = {batch_max_records}
batch_max_age = "50ms"
request_timeout = "5s"
retry_initial = "20ms"
retry_max = "200ms"
backfill_rate = {rate}
dead_letter_dir = "{dead}"

[shutdown]
grace = "10s"

{http}
{extra}
"#,
            gateway = self.gateway_id,
            port = self.broker_port,
            spool = dir.join("spool").display(),
            max_bytes = self.spool_max_bytes,
            policy = self.full_policy,
            url = self.cloud_url,
            token = token.display(),
            batch_max_records = self.batch_max_records,
            rate = self.backfill_rate,
            dead = dir.join("dead-letter").display(),
            http = http,
            extra = self.extra,
        )
    }

    /// The validated config.
    pub fn config(&self, dir: &Path) -> EdgeConfig {
        EdgeConfig::from_toml_str(&self.to_toml(dir), "test.toml").expect("test config validates")
    }
}

/// A running agent with a private mosquitto, a mock receiver and a publisher.
pub struct Running {
    /// Holds the spool, the broker's files and the config.
    pub _dir: tempfile::TempDir,
    /// The broker (stops when dropped).
    pub broker: broker::Broker,
    /// The cloud stand-in.
    pub receiver: receiver::Receiver,
    /// The agent's metrics.
    pub metrics: fieldpulse_edge::MetricsHandle,
    /// Cancels the agent's run (it drains).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The agent's run.
    pub run:
        tokio::task::JoinHandle<Result<fieldpulse_edge::RunSummary, fieldpulse_edge::AgentError>>,
    /// Publishes to the broker as `publisher_id`.
    pub publisher: publisher::Publisher,
}

/// Starts a broker, a receiver and the agent (options adjusted by `adjust`), with the agent's
/// persistent session subscribed before anything is published.
pub async fn start_agent(publisher_id: &str, adjust: impl FnOnce(&mut EdgeOptions)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker::Broker::start(dir.path(), false);
    let receiver = receiver::Receiver::start().await;
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    adjust(&mut options);
    let config = options.config(dir.path());
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    let agent = fieldpulse_edge::Agent::start(config).await.unwrap();
    let metrics = agent.metrics();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    let publisher = publisher::Publisher::connect(broker.port(), publisher_id);
    Running {
        _dir: dir,
        broker,
        receiver,
        metrics,
        shutdown,
        run,
        publisher,
    }
}
