//! Shared by the cloud's end-to-end tests: a seeded emulator org, a cloud
//! config pointing at it, posting batches as the edge does, waiting for the
//! pipeline to go idle.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldpulse_cloud::config::{CloudConfig, RawCloudConfig, RawGateway};
use fieldpulse_cloud::service::Cloud;
use fieldpulse_proto::v1::{Batch, BatchAck};
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, Fixture};
use prost::Message;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

/// The test gateway's bearer token.
pub const TOKEN: &str = "gw-1-test-token";
/// The emulator's client-credentials secret.
pub const SECRET: &str = "test-only-consumer-secret";

/// An in-process emulator org, stopped on drop.
pub struct Org {
    pub emulator: Emulator,
    pub base: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    pub secret_file: PathBuf,
}

impl Drop for Org {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts an emulator seeded with `fixture` (the emulator's fixture JSON).
pub async fn start_org(fixture: &serde_json::Value) -> Org {
    // Errors of the cloud's threads show in the test output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let config = EmulatorConfig {
        consumer_secret: Some(SECRET.into()),
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::new(config, None).expect("emulator");
    let fixture: Fixture = serde_json::from_value(fixture.clone()).expect("fixture");
    emulator.seed(&fixture).expect("seed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("sf-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    Org {
        emulator,
        base,
        shutdown,
        _dir: dir,
        secret_file,
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cloud config for `org` with its state in `state`, adjusted by `tweak`.
pub fn cloud_config(
    org: &Org,
    state: &Path,
    tweak: impl FnOnce(&mut RawCloudConfig),
) -> CloudConfig {
    let mut raw = RawCloudConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.state_dir = state.to_path_buf();
    raw.gateways = vec![RawGateway {
        id: "gw-1".into(),
        token_sha256: hex(&sha2::Sha256::digest(TOKEN.as_bytes())),
    }];
    raw.scoring.shards = 2;
    raw.salesforce.token_url = org.base.clone();
    raw.salesforce.client_id = EmulatorConfig::default().consumer_key;
    raw.salesforce.client_secret_env = None;
    raw.salesforce.client_secret_file = Some(org.secret_file.clone());
    raw.feedback.poll_every = Duration::from_millis(300);
    tweak(&mut raw);
    raw.validate("test config").expect("valid test config")
}

/// A Salesforce client for `org` (client credentials).
pub fn sf_client(org: &Org) -> fieldpulse_salesforce::SalesforceClient {
    fieldpulse_salesforce::SalesforceClient::new(fieldpulse_salesforce::ClientConfig::new(
        fieldpulse_salesforce::AuthConfig::ClientCredentials {
            token_url: org.base.clone(),
            client_id: EmulatorConfig::default().consumer_key,
            client_secret: SECRET.to_string().into(),
        },
    ))
    .expect("client")
}

/// Posts a batch as the edge does (protobuf + zstd, bearer token,
/// Idempotency-Key), retrying on 503 until the cloud acknowledges it.
pub async fn post(http: &reqwest::Client, addr: std::net::SocketAddr, batch: &Batch) -> BatchAck {
    let body = zstd::encode_all(batch.encode_to_vec().as_slice(), 3).unwrap();
    for _ in 0..200 {
        let res = http
            .post(format!("http://{addr}/v1/batches"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-encoding", "zstd")
            .header("content-type", "application/x-protobuf")
            .header("idempotency-key", batch.idempotency_key())
            .body(body.clone())
            .send()
            .await
            .expect("post");
        if res.status() == 200 {
            return BatchAck::decode(res.bytes().await.unwrap()).expect("ack");
        }
        assert_eq!(
            res.status(),
            503,
            "{}",
            res.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("batch {} never acknowledged", batch.seq);
}

/// Waits until every logged record is scored (held rows included) and the outbox is empty.
pub async fn wait_idle(cloud: &Cloud) {
    let end = cloud.log.end_offset();
    let processor = std::sync::Arc::clone(&cloud.processor);
    let ok =
        tokio::task::spawn_blocking(move || processor.wait_idle(end, Duration::from_secs(300)))
            .await
            .unwrap();
    assert!(ok, "processor did not catch up with the log");
    for _ in 0..2400 {
        if cloud.sender.stats().depth == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outbox did not drain: depth {}", cloud.sender.stats().depth);
}
