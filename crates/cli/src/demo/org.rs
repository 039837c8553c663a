//! The demo's cloud side: the in-process Salesforce emulator seeded from the
//! simulator, and the configuration of the real cloud processor pointed at it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fieldpulse_cloud::config::{CloudConfig, RawCloudConfig, RawGateway};
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, Fixture};
use serde_json::Value;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use super::scenario::{DAY_MS, INTERVAL};

/// A running emulator.
pub struct Org {
    /// The emulator (records are read from it directly for the summary).
    pub emulator: Emulator,
    /// Its base URL (token endpoint and REST API).
    pub base: String,
    secret_file: PathBuf,
}

impl std::fmt::Debug for Org {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Org").field("base", &self.base).finish()
    }
}

/// Starts the emulator on a free loopback port, seeded with `fixture`; its
/// client secret is written to `dir` for the cloud to read.
///
/// # Errors
/// The fixture does not load or the port cannot be bound.
pub async fn start(
    fixture: &Value,
    dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<Org> {
    let secret = super::random_token();
    let config = EmulatorConfig {
        consumer_secret: Some(secret.clone()),
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::new(config, None).context("starting the Salesforce emulator")?;
    let fixture: Fixture =
        serde_json::from_value(fixture.clone()).context("the simulator's Salesforce seed")?;
    emulator
        .seed(&fixture)
        .context("seeding the Salesforce emulator")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(emulator.clone().run(listener, shutdown));
    let secret_file = dir.join("sf-client-secret");
    std::fs::write(&secret_file, secret)
        .with_context(|| format!("writing {}", secret_file.display()))?;
    Ok(Org {
        emulator,
        base,
        secret_file,
    })
}

/// The cloud's configuration: state in `state_dir`, the demo gateway's
/// token, the trained model, the emulator as the org.
///
/// # Errors
/// The configuration does not validate (a bug in the demo).
pub fn cloud_config(
    org: &Org,
    state_dir: &Path,
    gateway: &str,
    token: &str,
    model_dir: &Path,
    max_alert_age_days: u64,
) -> anyhow::Result<CloudConfig> {
    let mut raw = RawCloudConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.state_dir = state_dir.to_path_buf();
    raw.gateways = vec![RawGateway {
        id: gateway.into(),
        token_sha256: sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }];
    raw.scoring.shards = 2;
    // The model's sensors.
    raw.scoring.sensors = Vec::new();
    raw.scoring.model = Some(model_dir.to_path_buf());
    // Predictive Cases only: anomaly episodes would blur the model's figures.
    raw.scoring.anomaly_episodes = false;
    raw.scoring.failure_every = INTERVAL;
    raw.campaigns.min_assets = 2;
    // The replay compresses days into minutes and happened in the past: data
    // the edge backfills after the outage is old by the wall clock but
    // minutes old in the story, so it may still open Cases.
    raw.episodes.max_alert_age_ms = max_alert_age_days.saturating_mul(DAY_MS as u64);
    raw.salesforce.token_url = org.base.clone();
    raw.salesforce.client_id = EmulatorConfig::default().consumer_key;
    raw.salesforce.client_secret_env = None;
    raw.salesforce.client_secret_file = Some(org.secret_file.clone());
    raw.feedback.poll_every = Duration::from_secs(1);
    raw.validate("demo cloud config")
        .context("building the demo cloud config")
}
