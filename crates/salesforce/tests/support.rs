//! Spins up the emulator on an ephemeral port and a client for it.

use std::time::Duration;

use fieldpulse_salesforce::{AuthConfig, ClientConfig, RetryPolicy, SalesforceClient, Secret};
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig};
use tokio_util::sync::CancellationToken;

/// TEST-ONLY key pair (see tests/data/README.md).
pub const TEST_KEY: &str = include_str!("data/test-only-jwt-key.pem");
pub const TEST_CERT: &str = include_str!("data/test-only-jwt-cert.pem");
pub const CLIENT_SECRET: &str = "test-only-consumer-secret";

pub struct Harness {
    pub emulator: Emulator,
    pub client: SalesforceClient,
    pub base: String,
    pub config: EmulatorConfig,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        jwt_certificate_pem: Some(TEST_CERT.into()),
        consumer_secret: Some(CLIENT_SECRET.into()),
        ..EmulatorConfig::default()
    }
}

pub fn jwt_auth(base: &str, config: &EmulatorConfig) -> AuthConfig {
    AuthConfig::JwtBearer {
        token_url: base.to_string(),
        audience: "https://login.salesforce.com".into(),
        client_id: config.consumer_key.clone(),
        username: config.username.clone(),
        private_key_pem: Secret::new(TEST_KEY),
    }
}

pub fn fast_client(auth: AuthConfig) -> SalesforceClient {
    let mut config = ClientConfig::new(auth);
    config.retry = RetryPolicy {
        max_attempts: 8,
        base: Duration::from_millis(2),
        cap: Duration::from_millis(40),
    };
    config.timeout = Duration::from_secs(30);
    SalesforceClient::new(config).expect("client builds")
}

pub async fn start_with(config: EmulatorConfig) -> Harness {
    let emulator = Emulator::new(config.clone(), None).expect("emulator starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let shutdown = CancellationToken::new();
    tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
    let client = fast_client(jwt_auth(&base, &config));
    Harness {
        emulator,
        client,
        base,
        config,
        shutdown,
    }
}

pub async fn start() -> Harness {
    start_with(emulator_config()).await
}

pub fn map(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(m) => m,
        other => panic!("expected a JSON object, got {other}"),
    }
}

/// Creates an Account and an Asset; returns (account id, asset id).
pub async fn account_and_asset(h: &Harness) -> (String, String) {
    let account = h
        .client
        .create("Account", &map(serde_json::json!({"Name": "Acme Water"})))
        .await
        .expect("account");
    let asset = h.client.create("Asset", &map(serde_json::json!({"Name": "Pump P-104", "AccountId": account, "InstallDate": "2021-03-01"}))).await.expect("asset");
    (account, asset)
}

pub fn codes(err: &fieldpulse_salesforce::SfError) -> Vec<String> {
    err.api_errors().iter().map(|e| e.code.clone()).collect()
}
