//! TLS to a remote broker and to the cloud, with a private PKI made at test time (rcgen): the agent
//! reaches a mosquitto TLS listener (private CA; mTLS with a server name override) and an HTTPS
//! receiver (private CA; mTLS). With the wrong CA, or without the client certificate an mTLS
//! broker requires, it does not connect, counts why (`reason="tls"`) and keeps retrying; without
//! `forward.tls.ca_file` the private CA is not trusted and every send is retried and counted.
//!
//! Publishers use the broker's plain loopback listener; only the agent speaks TLS.
//!
//! See: issue #12 ("What an operator needs": TLS).

use std::path::Path;
use std::time::Duration;

use fieldpulse_edge::{Agent, AgentError, MetricsHandle, RunSummary};
use tempfile::{tempdir, TempDir};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::broker::{Broker, TlsListener};
use crate::support::certs::{CertFiles, TestCa};
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

const N: usize = 300;

/// A started agent.
struct Started {
    metrics: MetricsHandle,
    shutdown: CancellationToken,
    run: JoinHandle<Result<RunSummary, AgentError>>,
}

impl Started {
    async fn stop(self) -> RunSummary {
        self.shutdown.cancel();
        self.run
            .await
            .expect("agent task")
            .expect("agent stops cleanly")
    }
}

/// Starts the agent on `options` (validated from TOML, as `fieldpulse-edge run` does), with its
/// persistent session prepared on the broker's plain listener.
async fn start(dir: &Path, broker: &Broker, options: &EdgeOptions) -> Started {
    start_config(broker, options.config(dir)).await
}

async fn start_config(broker: &Broker, config: fieldpulse_edge::EdgeConfig) -> Started {
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    let agent = Agent::start(config).await.expect("agent starts");
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    Started {
        metrics,
        shutdown,
        run,
    }
}

/// Publishes `N` readings on the broker's plain listener and waits until the broker took them.
async fn publish_readings(broker: &Broker, publisher_id: &str) -> Publisher {
    let publisher = Publisher::connect(broker.port(), publisher_id);
    let base_ts = fieldpulse_edge::clock::now_ms() - 60_000;
    for value in 0..N {
        let payload = format!("{{\"ts\":{},\"value\":{value}}}", base_ts + value as i64);
        publisher
            .publish("plant/s1/pump-1/temp", payload.into_bytes())
            .await;
    }
    publisher.wait_acked(N, Duration::from_secs(30)).await;
    publisher
}

/// Waits until the receiver has every reading once.
async fn expect_every_reading(receiver: &Receiver, metrics: &MetricsHandle) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.n_readings() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {N} readings at the receiver; edge {:?}",
            receiver.n_readings(),
            metrics.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    receiver.with(|got| {
        let mut values: Vec<f64> = got.readings.iter().map(|r| r.value).collect();
        values.sort_by(f64::total_cmp);
        let expected: Vec<f64> = (0..N).map(|v| v as f64).collect();
        assert_eq!(values, expected, "every reading exactly once");
        assert!(got.bad_requests.is_empty(), "{:?}", got.bad_requests);
    });
}

/// A counter of the `/metrics` text, e.g.
/// `fieldpulse_edge_mqtt_connection_failures_total{reason="tls"}` (0 when absent).
fn counter(metrics: &MetricsHandle, series: &str) -> u64 {
    metrics
        .render_prometheus()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

const TLS_FAILURES: &str = "fieldpulse_edge_mqtt_connection_failures_total{reason=\"tls\"}";

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// `[mqtt.tls]` trusting `ca`, with an optional client certificate and server name.
fn mqtt_tls(ca: &Path, client: Option<&CertFiles>, server_name: Option<&str>) -> String {
    let mut section = format!("[mqtt.tls]\nca_file = {}\n", toml_path(ca));
    if let Some(client) = client {
        section.push_str(&format!(
            "client_cert_file = {}\nclient_key_file = {}\n",
            toml_path(&client.cert_file),
            toml_path(&client.key_file)
        ));
    }
    if let Some(name) = server_name {
        section.push_str(&format!("server_name = {name:?}\n"));
    }
    section
}

/// A private CA, a broker certificate for `names` and a broker with a TLS listener using them.
fn tls_broker(dir: &TempDir, names: &[&str], require_certificate: bool) -> (TestCa, Broker) {
    let ca = TestCa::new(dir.path(), "broker");
    let server = ca.server(dir.path(), "broker-server", names);
    let broker = Broker::start_tls(
        dir.path(),
        &TlsListener {
            cafile: &ca.ca_file,
            certfile: &server.cert_file,
            keyfile: &server.key_file,
            require_certificate,
            password_file: None,
        },
    );
    (ca, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_private_ca_the_agent_takes_every_reading_from_the_broker() {
    let dir = tempdir().unwrap();
    let (ca, broker) = tls_broker(&dir, &["localhost", "127.0.0.1"], false);
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.tls_port(), &receiver.url());
    options.extra = mqtt_tls(&ca.ca_file, None, None);
    let agent = start(dir.path(), &broker, &options).await;

    let publisher = publish_readings(&broker, "publisher-tls").await;
    expect_every_reading(&receiver, &agent.metrics).await;
    publisher.close().await;
    assert_eq!(counter(&agent.metrics, TLS_FAILURES), 0);
    let summary = agent.stop().await;
    assert!(summary.metrics.mqtt_connects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_and_a_server_name_override_the_agent_takes_every_reading_from_the_broker() {
    let dir = tempdir().unwrap();
    // The certificate names the broker's DNS name only; the agent connects by address.
    let (ca, broker) = tls_broker(&dir, &["broker.fieldpulse.test"], true);
    let client = ca.client(dir.path(), "agent-client");
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.tls_port(), &receiver.url());
    options.extra = mqtt_tls(&ca.ca_file, Some(&client), Some("broker.fieldpulse.test"));
    let agent = start(dir.path(), &broker, &options).await;

    let publisher = publish_readings(&broker, "publisher-mtls").await;
    expect_every_reading(&receiver, &agent.metrics).await;
    publisher.close().await;
    assert_eq!(counter(&agent.metrics, TLS_FAILURES), 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_agent_logs_in_from_a_password_file_and_a_wrong_password_is_counted_refused() {
    let dir = tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "broker");
    let server = ca.server(dir.path(), "broker-server", &["localhost", "127.0.0.1"]);
    let passwords = dir.path().join("mosquitto.passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["fieldpulse-edge", "s3cret pass"])
        .status()
        .expect("mosquitto_passwd (package mosquitto) is installed");
    assert!(status.success());
    let broker = Broker::start_tls(
        dir.path(),
        &TlsListener {
            cafile: &ca.ca_file,
            certfile: &server.cert_file,
            keyfile: &server.key_file,
            require_certificate: false,
            password_file: Some(&passwords),
        },
    );
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.tls_port(), &receiver.url());
    options.extra = mqtt_tls(&ca.ca_file, None, None);
    // The password file as an editor leaves it: with a trailing line break.
    let password_file = dir.path().join("mqtt-password");
    let config_with = |password: &str| {
        std::fs::write(&password_file, password).unwrap();
        let text = options.to_toml(dir.path()).replacen(
            "[mqtt]\n",
            &format!(
                "[mqtt]\nusername = \"fieldpulse-edge\"\npassword_file = {}\n",
                toml_path(&password_file)
            ),
            1,
        );
        fieldpulse_edge::EdgeConfig::from_toml_str(&text, "test.toml").expect("config validates")
    };

    let refused = "fieldpulse_edge_mqtt_connection_failures_total{reason=\"refused\"}";
    let agent = start_config(&broker, config_with("wrong\n")).await;
    wait_until("two refused logins", Duration::from_secs(20), || {
        counter(&agent.metrics, refused) >= 2
    })
    .await;
    assert_eq!(agent.metrics.snapshot().mqtt_connects, 0);
    assert_eq!(counter(&agent.metrics, TLS_FAILURES), 0, "TLS itself works");
    agent.stop().await;

    let agent = start_config(&broker, config_with("s3cret pass\n")).await;
    let publisher = publish_readings(&broker, "publisher-login").await;
    expect_every_reading(&receiver, &agent.metrics).await;
    publisher.close().await;
    assert_eq!(counter(&agent.metrics, refused), 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_wrong_ca_the_agent_does_not_connect_counts_tls_failures_and_keeps_retrying() {
    let dir = tempdir().unwrap();
    let (_ca, broker) = tls_broker(&dir, &["localhost", "127.0.0.1"], false);
    let other_ca = TestCa::new(dir.path(), "other");
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.tls_port(), &receiver.url());
    options.extra = mqtt_tls(&other_ca.ca_file, None, None);
    let agent = start(dir.path(), &broker, &options).await;

    // Every reconnect (100 ms apart) fails the handshake and is counted.
    wait_until(
        "three failed TLS handshakes",
        Duration::from_secs(20),
        || counter(&agent.metrics, TLS_FAILURES) >= 3,
    )
    .await;
    let snapshot = agent.metrics.snapshot();
    assert_eq!(snapshot.mqtt_connects, 0, "never connected");
    assert!(!snapshot.mqtt_connected);
    assert!(!agent.run.is_finished(), "the agent keeps running");
    assert_eq!(
        counter(
            &agent.metrics,
            "fieldpulse_edge_mqtt_connection_failures_total{reason=\"network\"}"
        ),
        0,
        "the failures are told apart from network errors"
    );
    let summary = agent.stop().await;
    assert_eq!(summary.metrics.readings_spooled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_broker_refuses_an_agent_without_its_client_certificate_and_the_agent_counts_it() {
    let dir = tempdir().unwrap();
    let (ca, broker) = tls_broker(&dir, &["localhost", "127.0.0.1"], true);
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.tls_port(), &receiver.url());
    options.extra = mqtt_tls(&ca.ca_file, None, None);
    let agent = start(dir.path(), &broker, &options).await;

    wait_until("three refused handshakes", Duration::from_secs(20), || {
        counter(&agent.metrics, TLS_FAILURES) >= 3
    })
    .await;
    assert_eq!(agent.metrics.snapshot().mqtt_connects, 0);
    agent.stop().await;
}

/// A broker on plain loopback and an HTTPS receiver with its own private CA.
async fn https_receiver(dir: &TempDir, require_client_cert: bool) -> (TestCa, Receiver) {
    let ca = TestCa::new(dir.path(), "cloud");
    let server = ca.server(dir.path(), "cloud-server", &["localhost", "127.0.0.1"]);
    let receiver = Receiver::start_tls(ca.server_config(&server, require_client_cert)).await;
    (ca, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarder_delivers_over_https_when_forward_tls_trusts_the_private_ca() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let (ca, receiver) = https_receiver(&dir, false).await;
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    options.extra = format!(
        "[forward.tls]\nca_file = {}\nonly_ca = true\n",
        toml_path(&ca.ca_file)
    );
    let agent = start(dir.path(), &broker, &options).await;

    let publisher = publish_readings(&broker, "publisher-https").await;
    expect_every_reading(&receiver, &agent.metrics).await;
    publisher.close().await;
    assert_eq!(receiver.tls_handshake_failures(), 0);
    let summary = agent.stop().await;
    assert_eq!(summary.metrics.send_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_forward_tls_the_private_ca_is_refused_and_every_send_is_retried_and_counted() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let (_ca, receiver) = https_receiver(&dir, false).await;
    let options = EdgeOptions::new(broker.port(), &receiver.url());
    let agent = start(dir.path(), &broker, &options).await;

    let publisher = publish_readings(&broker, "publisher-https-no-ca").await;
    // The receiver counts a refused handshake a moment after the agent gave up on it.
    wait_until(
        "every reading spooled, three failed sends and handshakes",
        Duration::from_secs(20),
        || {
            let snapshot = agent.metrics.snapshot();
            snapshot.readings_spooled == N as u64
                && snapshot.send_failures >= 3
                && receiver.tls_handshake_failures() >= 3
        },
    )
    .await;
    publisher.close().await;
    assert_eq!(receiver.n_readings(), 0);
    let summary = agent.stop().await;
    // Nothing is lost: the readings stay spooled for the next start.
    assert_eq!(summary.metrics.readings_spooled, N as u64);
    assert_eq!(summary.metrics.readings_forwarded, 0);
    assert_eq!(summary.metrics.dropped_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_the_forwarder_presents_its_client_certificate_and_delivers() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let (ca, receiver) = https_receiver(&dir, true).await;
    let client = ca.client(dir.path(), "gateway-client");
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    options.extra = format!(
        "[forward.tls]\nca_file = {}\nclient_cert_file = {}\nclient_key_file = {}\n",
        toml_path(&ca.ca_file),
        toml_path(&client.cert_file),
        toml_path(&client.key_file)
    );
    let agent = start(dir.path(), &broker, &options).await;

    let publisher = publish_readings(&broker, "publisher-https-mtls").await;
    expect_every_reading(&receiver, &agent.metrics).await;
    publisher.close().await;
    assert_eq!(receiver.tls_handshake_failures(), 0);
    agent.stop().await;
}

/// Validates `text` as `edge.toml`; the error message, or "ok".
fn validate(text: &str) -> String {
    match fieldpulse_edge::EdgeConfig::from_toml_str(text, "edge.toml") {
        Ok(_) => "ok".into(),
        Err(err) => err.to_string(),
    }
}

#[test]
fn tls_config_errors_name_the_config_file_the_key_and_the_pem_file() {
    let dir = tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cfg");
    let client = ca.client(dir.path(), "cfg-client");
    let other = ca.client(dir.path(), "cfg-other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let head = "gateway_id = \"gw-1\"\n";
    let https = "[forward]\nurl = \"https://cloud.example.com\"\ntoken_env = \"PATH\"\n";

    // Valid sections pass, with and without a CA file.
    let ok = format!(
        "{head}{}",
        mqtt_tls(&ca.ca_file, Some(&client), Some("broker.test"))
    );
    assert_eq!(validate(&ok), "ok");
    assert_eq!(validate(&format!("{head}[mqtt.tls]\n")), "ok");
    let ok = format!(
        "{head}{https}[forward.tls]\nca_file = {}\n",
        toml_path(&ca.ca_file)
    );
    assert_eq!(validate(&ok), "ok");
    // Certificate and key in one file.
    let combined = dir.path().join("combined.pem");
    let mut pem = std::fs::read(&client.cert_file).unwrap();
    pem.extend(std::fs::read(&client.key_file).unwrap());
    std::fs::write(&combined, pem).unwrap();
    let both = format!(
        "client_cert_file = {0}\nclient_key_file = {0}\n",
        toml_path(&combined)
    );
    let ok = format!("{head}[mqtt.tls]\n{both}{https}[forward.tls]\n{both}");
    assert_eq!(validate(&ok), "ok");

    let cases: Vec<(String, &str, String)> = vec![
        (
            format!("{head}[mqtt.tls]\nca_file = {}\n", toml_path(&missing)),
            "mqtt.tls.ca_file",
            format!("cannot read {}", missing.display()),
        ),
        (
            format!("{head}[mqtt.tls]\nca_file = {}\n", toml_path(&garbage)),
            "mqtt.tls.ca_file",
            format!("{}: no certificate", garbage.display()),
        ),
        (
            format!(
                "{head}[mqtt.tls]\nclient_cert_file = {}\n",
                toml_path(&client.cert_file)
            ),
            "mqtt.tls.client_key_file",
            "must be set together with mqtt.tls.client_cert_file".into(),
        ),
        (
            format!(
                "{head}[mqtt.tls]\nclient_cert_file = {}\nclient_key_file = {}\n",
                toml_path(&client.cert_file),
                toml_path(&client.cert_file)
            ),
            "mqtt.tls.client_key_file",
            format!("{}: no private key", client.cert_file.display()),
        ),
        (
            format!(
                "{head}[mqtt.tls]\nclient_cert_file = {}\nclient_key_file = {}\n",
                toml_path(&client.cert_file),
                toml_path(&other.key_file)
            ),
            "mqtt.tls.client_key_file",
            format!(
                "{}: the key does not fit the certificate in {}",
                other.key_file.display(),
                client.cert_file.display()
            ),
        ),
        (
            format!("{head}[mqtt]\nhost = \"broker host\"\n[mqtt.tls]\n"),
            "mqtt.host",
            "must be a DNS name or an IP address with [mqtt.tls]".into(),
        ),
        (
            format!("{head}[mqtt.tls]\nserver_name = \"bad name\"\n"),
            "mqtt.tls.server_name",
            "\"bad name\" is not a DNS name or an IP address".into(),
        ),
        (
            format!(
                "{head}{https}[forward.tls]\nclient_key_file = {}\n",
                toml_path(&client.key_file)
            ),
            "forward.tls.client_cert_file",
            "must be set together with forward.tls.client_key_file".into(),
        ),
        (
            format!(
                "{head}{https}[forward.tls]\nclient_cert_file = {}\nclient_key_file = {}\n",
                toml_path(&garbage),
                toml_path(&client.key_file)
            ),
            "forward.tls.client_cert_file",
            format!("{}: no certificate", garbage.display()),
        ),
        (
            format!("{head}{https}[forward.tls]\nonly_ca = true\n"),
            "forward.tls.only_ca",
            "needs forward.tls.ca_file".into(),
        ),
        (
            format!(
                "{head}[forward.tls]\nca_file = {}\n",
                toml_path(&ca.ca_file)
            ),
            "forward.tls",
            "applies to an https:// url only".into(),
        ),
    ];
    for (text, key, detail) in cases {
        let err = validate(&text);
        assert!(
            err.starts_with(&format!("edge.toml: {key}: ")),
            "expected key {key}: {err}"
        );
        assert!(err.contains(&detail), "expected {detail:?}: {err}");
    }
}

#[test]
fn an_mqtt_password_file_loses_only_its_trailing_line_break_and_is_never_printed() {
    let dir = tempdir().unwrap();
    let password = dir.path().join("mqtt-password");
    std::fs::write(&password, " pass word \n").unwrap();
    let text = format!(
        "gateway_id = \"gw-1\"\n[mqtt]\nusername = \"edge\"\npassword_file = {}\n",
        toml_path(&password)
    );
    let config = fieldpulse_edge::EdgeConfig::from_toml_str(&text, "edge.toml").unwrap();
    let (user, secret) = config.mqtt.credentials.as_ref().expect("credentials");
    assert_eq!(user, "edge");
    assert_eq!(
        secret.expose(),
        " pass word ",
        "spaces are part of a password"
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("pass word"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_says_what_failed_underneath_the_request() {
    let dir = tempdir().unwrap();
    let (_ca, receiver) = https_receiver(&dir, false).await;
    let client = reqwest::Client::new();
    let source = client
        .post(format!("{}/v1/batches", receiver.url()))
        .send()
        .await
        .expect_err("the private CA is not trusted");
    let err = fieldpulse_edge::forwarder::ForwardError::Transport { seq: 7, source };
    // What the forwarder logs for a retried send: the certificate problem, not only "sending".
    let message = err.to_string();
    assert!(message.starts_with("sending batch 7: "), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
}
