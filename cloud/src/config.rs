//! The cloud configuration: one TOML file, loaded in two steps.
//!
//! [`RawCloudConfig`] is the file as serde sees it (`deny_unknown_fields`,
//! named defaults, humantime durations such as `"30s"`);
//! [`RawCloudConfig::validate`] turns it into [`CloudConfig`], whose values are
//! checked and whose secrets are resolved from the environment or files. Every
//! error names the file and the key:
//! `cloud.toml: scoring.shards: must be between 1 and 256`.
//!
//! Secrets never sit in the file: gateway tokens are stored as SHA-256 hashes
//! (`token_sha256`), and the Salesforce consumer secret or JWT key is read from
//! `*_env` / `*_file`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldpulse_models::anomaly::Seasonality;
use fieldpulse_salesforce::{AuthConfig, Secret};
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveCompression, ArchiveSettings};
use crate::episodes::{EpisodeConfig, PriorityBands};
use crate::ingest::GatewayToken;
use crate::processor::ScoreTap;

/// The annotated example configuration (runs as it is against `fieldpulse sf-emulator`).
pub const EXAMPLE_TOML: &str = include_str!("../fieldpulse-cloud.example.toml");

/// Why a configuration cannot be used; the message names the origin and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("{origin}: {source}")]
    Parse {
        /// The config file (or another origin name).
        origin: String,
        /// The toml error (carries line, column and key).
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The config file (or another origin name).
        origin: String,
        /// The dotted key.
        key: String,
        /// What is wrong, lowercase.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloudConfig {
    /// Listener and state directory.
    #[serde(default)]
    pub server: RawServer,
    /// Gateways allowed to post batches.
    #[serde(default)]
    pub gateways: Vec<RawGateway>,
    /// The ingest log.
    #[serde(default)]
    pub log: RawLog,
    /// Scoring shards and models.
    #[serde(default)]
    pub scoring: RawScoring,
    /// Alert episodes (see [`EpisodeConfig`]).
    #[serde(default)]
    pub episodes: EpisodeConfig,
    /// Priority inputs and bands.
    #[serde(default)]
    pub priority: RawPriority,
    /// What fieldpulse may do in Salesforce.
    #[serde(default)]
    pub rollout: RawRollout,
    /// PM campaign drafts.
    #[serde(default)]
    pub campaigns: RawCampaigns,
    /// The Salesforce org.
    #[serde(default)]
    pub salesforce: RawSalesforce,
    /// Polling Work Orders and Cases back.
    #[serde(default)]
    pub feedback: RawFeedback,
    /// The Parquet telemetry archive.
    #[serde(default)]
    pub archive: RawArchive,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address of `POST /v1/batches`, `/metrics`, `/healthz`.
    pub listen: String,
    /// Directory for the ingest log and `cloud.sqlite`.
    pub state_dir: PathBuf,
    /// Accept batches without a token (loopback listeners only).
    pub insecure_dev_no_auth: bool,
    /// Health turns `degraded` when this many actions wait in the outbox.
    pub degraded_outbox_depth: u64,
    /// Health turns `degraded` when the scoring lag exceeds this many log records.
    pub degraded_log_lag: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            state_dir: PathBuf::from("cloud-state"),
            insecure_dev_no_auth: false,
            degraded_outbox_depth: 10_000,
            degraded_log_lag: 100_000,
        }
    }
}

/// `[[gateways]]`: one gateway and the SHA-256 of its bearer token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Gateway id (as the edge sends it).
    pub id: String,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: String,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// Segment size before rolling to a new file.
    pub segment_bytes: u64,
    /// Segments every consumer is past are deleted once older than this.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[scoring]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScoring {
    /// Worker threads, each owning the assets that hash to it.
    pub shards: usize,
    /// Sensor channels in scoring order. Empty: the failure model's sensors.
    pub sensors: Vec<String>,
    /// Failure/RUL model artifact directory (`fieldpulse train --out`); none = anomaly only.
    pub model: Option<PathBuf>,
    /// Model registry directory (`fieldpulse models`): serve its promoted
    /// version and follow promotions and rollbacks (an alternative to `model`).
    pub registry: Option<PathBuf>,
    /// How often the registry is read for a new promoted version or candidate.
    #[serde(with = "humantime_serde")]
    pub registry_poll: Duration,
    /// Also score the registry's candidate in shadow: scored and metered, never acted on.
    pub shadow: bool,
    /// Anomaly score at which an asset's failure model is evaluated at once
    /// and the anomaly episode counts the reading as evidence.
    pub anomaly_threshold: f64,
    /// Seasonal profile the anomaly detector learns per asset and sensor:
    /// "off", "daily" or "weekly" (see docs/anomaly.md; 12.5 KiB per asset).
    pub seasonal: String,
    /// Failure model evaluated per asset at least this often (asset time).
    #[serde(with = "humantime_serde")]
    pub failure_every: Duration,
    /// Scorer and episode state checkpointed at least this often (wall time).
    #[serde(with = "humantime_serde")]
    pub checkpoint_every: Duration,
    /// An asset's newest row is scored once a later reading of the asset arrives, or
    /// after this long (wall time): a scan whose readings are split across batches
    /// is scored whole. "0s" scores every batch's rows at once.
    #[serde(with = "humantime_serde")]
    pub scan_hold: Duration,
    /// Open anomaly episodes from the anomaly detector (not only the failure model).
    pub anomaly_episodes: bool,
    /// Failure probability an anomaly episode's priority assumes (an anomaly
    /// says something is unusual, not how likely a failure is).
    pub anomaly_probability: f64,
}

impl Default for RawScoring {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 8),
            sensors: Vec::new(),
            model: None,
            registry: None,
            registry_poll: Duration::from_secs(5),
            shadow: false,
            anomaly_threshold: 0.9999,
            seasonal: "off".into(),
            failure_every: Duration::from_secs(3600),
            checkpoint_every: Duration::from_secs(5),
            scan_hold: Duration::from_secs(2),
            anomaly_episodes: true,
            anomaly_probability: 0.3,
        }
    }
}

/// `[priority]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPriority {
    /// Criticality when the Asset has none (1 = normal).
    pub default_criticality: f64,
    /// Asset field read as criticality (numeric); empty = none.
    pub criticality_field: String,
    /// SLA factor when no Entitlement says otherwise (1 = standard).
    pub default_sla_factor: f64,
    /// SLA factor per Account name (e.g. a hospital with a 4 h contract = 2.0).
    pub sla_by_account: BTreeMap<String, f64>,
    /// Score bands for the Case Priority.
    pub bands: PriorityBands,
}

impl Default for RawPriority {
    fn default() -> Self {
        Self {
            default_criticality: 1.0,
            criticality_field: String::new(),
            default_sla_factor: 1.0,
            sla_by_account: BTreeMap::new(),
            bands: PriorityBands::default(),
        }
    }
}

/// How far fieldpulse acts in the org.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rollout {
    /// Only `AI_Insight__c` records: nothing a dispatcher sees.
    Observe,
    /// Cases needing a person's acceptance, plus `Asset_Alert__c`.
    Review,
    /// Cases ready for dispatch.
    #[default]
    Act,
}

impl Rollout {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rollout::Observe => "observe",
            Rollout::Review => "review",
            Rollout::Act => "act",
        }
    }
}

/// `[rollout]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRollout {
    /// Mode for products not listed.
    pub default: Rollout,
    /// Mode per product name.
    pub products: BTreeMap<String, Rollout>,
}

impl RawRollout {
    /// The mode for a product.
    pub fn for_product(&self, product: Option<&str>) -> Rollout {
        product
            .and_then(|p| self.products.get(p))
            .copied()
            .unwrap_or(self.default)
    }
}

/// `[campaigns]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCampaigns {
    /// Draft a campaign when this many assets of one product show the same mode.
    pub min_assets: usize,
    /// ... within this window (asset time).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RawCampaigns {
    fn default() -> Self {
        Self {
            min_assets: 3,
            window: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// `[salesforce]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSalesforce {
    /// Token endpoint host (My Domain, `https://login.salesforce.com`, or the emulator's URL).
    pub token_url: String,
    /// `client_credentials` or `jwt`.
    pub auth: String,
    /// Connected app consumer key.
    pub client_id: String,
    /// Environment variable holding the consumer secret (client credentials).
    pub client_secret_env: Option<String>,
    /// File holding the consumer secret (client credentials).
    pub client_secret_file: Option<PathBuf>,
    /// Integration user (JWT `sub`).
    pub username: Option<String>,
    /// PEM private key file (JWT).
    pub private_key_file: Option<PathBuf>,
    /// JWT audience.
    pub audience: String,
    /// REST API version, e.g. `66.0`.
    pub api_version: String,
    /// Fraction of the daily API allocation kept free for other integrations.
    pub budget_reserve: f64,
    /// After the daily allocation ran out (`REQUEST_LIMIT_EXCEEDED`), how
    /// often the outbox asks `/limits` whether it may send again.
    #[serde(with = "humantime_serde")]
    pub budget_probe_interval: Duration,
}

impl Default for RawSalesforce {
    fn default() -> Self {
        Self {
            token_url: "http://127.0.0.1:8484".into(),
            auth: "client_credentials".into(),
            client_id: "fieldpulse-emulator-consumer-key".into(),
            client_secret_env: Some("FIELDPULSE_SF_CLIENT_SECRET".into()),
            client_secret_file: None,
            username: None,
            private_key_file: None,
            audience: "https://login.salesforce.com".into(),
            api_version: "66.0".into(),
            budget_reserve: 0.1,
            budget_probe_interval: Duration::from_secs(15 * 60),
        }
    }
}

/// `[feedback]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFeedback {
    /// Poll WorkOrder and Case changes this often.
    #[serde(with = "humantime_serde")]
    pub poll_every: Duration,
    /// Re-read this much before the last `SystemModstamp` seen (clock skew, commit lag).
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
}

impl Default for RawFeedback {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(60),
            overlap: Duration::from_secs(300),
        }
    }
}

/// `[archive]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawArchive {
    /// Write every reading of the ingest log to day-partitioned Parquet files.
    pub enabled: bool,
    /// The archive root; default `<server.state_dir>/archive`.
    pub dir: Option<PathBuf>,
    /// A flush writes its part files once this many readings are buffered ...
    pub flush_rows: usize,
    /// ... or once the oldest buffered record is this old.
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
    /// Parquet compression: `zstd`, `snappy`, `lz4` or `uncompressed`.
    pub compression: ArchiveCompression,
}

impl Default for RawArchive {
    fn default() -> Self {
        let defaults = ArchiveSettings::new(PathBuf::new());
        Self {
            enabled: true,
            dir: None,
            flush_rows: defaults.flush_rows,
            flush_every: defaults.flush_every,
            compression: defaults.compression,
        }
    }
}

/// Most readings a flush may buffer (memory: about 100 bytes each while it is written).
const MAX_FLUSH_ROWS: usize = 10_000_000;

/// A checked configuration with secrets resolved.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Where the config came from (file name), for messages.
    pub origin: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// State directory.
    pub state_dir: PathBuf,
    /// Gateway tokens (hashed).
    pub gateways: Vec<GatewayToken>,
    /// Everything else, as validated.
    pub raw: RawCloudConfig,
    /// Salesforce authentication (secret resolved).
    pub sf_auth: AuthConfig,
    /// Not from the file: called with every row the shards score (tests and
    /// benches observe which model version scored what). `None` from [`RawCloudConfig::validate`].
    pub score_tap: Option<ScoreTap>,
    /// The archive's settings (directory resolved); `None` when disabled.
    pub archive: Option<ArchiveSettings>,
}

impl RawCloudConfig {
    /// Parses TOML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for malformed TOML, unknown or mistyped keys.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks every value and resolves secrets.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the origin and the key.
    pub fn validate(self, origin: &str) -> Result<CloudConfig, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let listen: SocketAddr = self
            .server
            .listen
            .parse()
            .map_err(|e| bad("server.listen", format!("not an address:port ({e})")))?;
        if self.gateways.is_empty() && !self.server.insecure_dev_no_auth {
            return Err(bad(
                "gateways",
                "no gateway tokens: add [[gateways]] or set server.insecure_dev_no_auth (loopback only)".into(),
            ));
        }
        if self.server.insecure_dev_no_auth && !listen.ip().is_loopback() {
            return Err(bad(
                "server.insecure_dev_no_auth",
                format!("only allowed on a loopback listener, not {listen}"),
            ));
        }
        let mut gateways = Vec::new();
        for (i, g) in self.gateways.iter().enumerate() {
            if g.id.trim().is_empty() {
                return Err(bad(
                    &format!("gateways[{i}].id"),
                    "must not be empty".into(),
                ));
            }
            let token = GatewayToken::from_sha256_hex(&g.id, &g.token_sha256)
                .map_err(|e| bad(&format!("gateways[{i}].token_sha256"), e.to_string()))?;
            gateways.push(token);
        }
        let s = &self.scoring;
        if !(1..=256).contains(&s.shards) {
            return Err(bad("scoring.shards", "must be between 1 and 256".into()));
        }
        if !(s.anomaly_threshold > 0.0 && s.anomaly_threshold < 1.0) {
            return Err(bad(
                "scoring.anomaly_threshold",
                "must be strictly between 0 and 1".into(),
            ));
        }
        if Seasonality::parse(&s.seasonal).is_none() {
            return Err(bad(
                "scoring.seasonal",
                format!(
                    "{:?}: expected \"off\", \"daily\" or \"weekly\"",
                    s.seasonal
                ),
            ));
        }
        if !(0.0..=1.0).contains(&s.anomaly_probability) {
            return Err(bad(
                "scoring.anomaly_probability",
                "must be between 0 and 1".into(),
            ));
        }
        if s.failure_every.is_zero() {
            return Err(bad("scoring.failure_every", "must be positive".into()));
        }
        if s.checkpoint_every.is_zero() {
            return Err(bad("scoring.checkpoint_every", "must be positive".into()));
        }
        if s.model.is_some() && s.registry.is_some() {
            return Err(bad(
                "scoring.registry",
                "set scoring.model or scoring.registry, not both".into(),
            ));
        }
        if s.model.is_none() && s.registry.is_none() && s.sensors.is_empty() {
            return Err(bad(
                "scoring.sensors",
                "list the sensors to score, or set scoring.model or scoring.registry (the model's sensors are used)".into(),
            ));
        }
        if let Some(model) = &s.model {
            if !model.is_dir() {
                return Err(bad(
                    "scoring.model",
                    format!("{} is not a model directory", model.display()),
                ));
            }
        }
        if let Some(registry) = &s.registry {
            if !registry.is_dir() {
                return Err(bad(
                    "scoring.registry",
                    format!(
                        "{} is not a directory (create it with `fieldpulse models add --registry`)",
                        registry.display()
                    ),
                ));
            }
        }
        if s.registry_poll.is_zero() {
            return Err(bad("scoring.registry_poll", "must be positive".into()));
        }
        if s.shadow && s.registry.is_none() {
            return Err(bad(
                "scoring.shadow",
                "shadow scoring needs scoring.registry (the candidate comes from it)".into(),
            ));
        }
        self.episodes
            .validate()
            .map_err(|e| bad(&format!("episodes.{}", e.key), e.problem))?;
        let p = &self.priority;
        if !(p.default_criticality > 0.0 && p.default_criticality.is_finite()) {
            return Err(bad(
                "priority.default_criticality",
                "must be positive".into(),
            ));
        }
        if !(p.default_sla_factor > 0.0 && p.default_sla_factor.is_finite()) {
            return Err(bad(
                "priority.default_sla_factor",
                "must be positive".into(),
            ));
        }
        for (account, f) in &p.sla_by_account {
            if !(*f > 0.0 && f.is_finite()) {
                return Err(bad(
                    &format!("priority.sla_by_account.{account}"),
                    "must be positive".into(),
                ));
            }
        }
        p.bands
            .validate()
            .map_err(|e| bad(&format!("priority.bands.{}", e.key), e.problem))?;
        if self.campaigns.min_assets < 2 {
            return Err(bad("campaigns.min_assets", "must be at least 2".into()));
        }
        if self.log.segment_bytes < 1 << 16 {
            return Err(bad("log.segment_bytes", "must be at least 65536".into()));
        }
        let sf = &self.salesforce;
        if !(0.0..1.0).contains(&sf.budget_reserve) {
            return Err(bad("salesforce.budget_reserve", "must be in [0, 1)".into()));
        }
        if sf.api_version.parse::<f64>().is_err() {
            return Err(bad("salesforce.api_version", "must look like 66.0".into()));
        }
        let sf_auth = match sf.auth.as_str() {
            "client_credentials" => AuthConfig::ClientCredentials {
                token_url: sf.token_url.clone(),
                client_id: sf.client_id.clone(),
                client_secret: read_secret(
                    origin,
                    "salesforce.client_secret",
                    sf.client_secret_env.as_deref(),
                    sf.client_secret_file.as_deref(),
                )?,
            },
            "jwt" => AuthConfig::JwtBearer {
                token_url: sf.token_url.clone(),
                audience: sf.audience.clone(),
                client_id: sf.client_id.clone(),
                username: sf.username.clone().ok_or_else(|| {
                    bad("salesforce.username", "required for auth = \"jwt\"".into())
                })?,
                private_key_pem: read_secret(
                    origin,
                    "salesforce.private_key",
                    None,
                    sf.private_key_file.as_deref(),
                )?,
            },
            other => {
                return Err(bad(
                    "salesforce.auth",
                    format!("{other:?}: expected \"client_credentials\" or \"jwt\""),
                ))
            }
        };
        if self.salesforce.budget_probe_interval.is_zero() {
            return Err(bad(
                "salesforce.budget_probe_interval",
                "must be positive".into(),
            ));
        }
        if self.feedback.poll_every.is_zero() {
            return Err(bad("feedback.poll_every", "must be positive".into()));
        }
        let a = &self.archive;
        if !(1..=MAX_FLUSH_ROWS).contains(&a.flush_rows) {
            return Err(bad(
                "archive.flush_rows",
                format!("must be between 1 and {MAX_FLUSH_ROWS}"),
            ));
        }
        if a.flush_every.is_zero() {
            return Err(bad("archive.flush_every", "must be positive".into()));
        }
        if a.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(bad(
                "archive.dir",
                "must not be empty (leave it out for <server.state_dir>/archive)".into(),
            ));
        }
        let archive = a.enabled.then(|| ArchiveSettings {
            dir: a
                .dir
                .clone()
                .unwrap_or_else(|| self.server.state_dir.join("archive")),
            flush_rows: a.flush_rows,
            flush_every: a.flush_every,
            compression: a.compression,
            ..ArchiveSettings::new(PathBuf::new())
        });
        Ok(CloudConfig {
            origin: origin.to_string(),
            listen,
            state_dir: self.server.state_dir.clone(),
            gateways,
            raw: self,
            sf_auth,
            score_tap: None,
            archive,
        })
    }
}

fn read_secret(
    origin: &str,
    key: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Secret, ConfigError> {
    let bad = |k: String, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        key: k,
        message,
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("{key}_file"), format!("{}: {e}", path.display())))?;
        return Ok(Secret::new(text.trim_end().to_string()));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(bad(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )),
        };
    }
    Err(bad(key.to_string(), format!("set {key}_env or {key}_file")))
}

impl CloudConfig {
    /// Loads and validates a file.
    ///
    /// # Errors
    /// Any [`ConfigError`], naming the file and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        RawCloudConfig::load(path)?.validate(&path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret<T>(f: impl FnOnce() -> T) -> T {
        // The example reads the consumer secret from this variable.
        std::env::set_var("FIELDPULSE_SF_CLIENT_SECRET", "test-secret");
        f()
    }

    #[test]
    fn the_example_validates() {
        with_secret(|| {
            let raw = RawCloudConfig::from_toml_str(EXAMPLE_TOML, "example.toml").unwrap();
            let cfg = raw.validate("example.toml").unwrap();
            assert_eq!(cfg.listen.port(), 8080);
        });
    }

    #[test]
    fn unknown_keys_name_the_key_and_file() {
        let err = RawCloudConfig::from_toml_str("[scoring]\nshardz = 3\n", "c.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("c.toml") && msg.contains("shardz"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_key_and_file() {
        with_secret(|| {
            let text =
                "[server]\ninsecure_dev_no_auth = true\n[scoring]\nshards = 0\nsensors = [\"t\"]\n";
            let err = RawCloudConfig::from_toml_str(text, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "c.toml: scoring.shards: must be between 1 and 256"
            );
        });
    }

    #[test]
    fn an_unknown_seasonality_names_the_key_and_file() {
        with_secret(|| {
            let text = "[server]\ninsecure_dev_no_auth = true\n[scoring]\nsensors = [\"t\"]\nseasonal = \"hourly\"\n";
            let err = RawCloudConfig::from_toml_str(text, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "c.toml: scoring.seasonal: \"hourly\": expected \"off\", \"daily\" or \"weekly\""
            );
            let ok = text.replace("hourly", "weekly");
            let cfg = RawCloudConfig::from_toml_str(&ok, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap();
            let params = crate::service::settings(&cfg, None).anomaly;
            assert_eq!(
                params.features().seasonality(),
                fieldpulse_models::anomaly::Seasonality::Weekly
            );
        });
    }

    #[test]
    fn registry_excludes_model_and_shadow_needs_registry() {
        with_secret(|| {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            let check = |scoring: &str| {
                let text = format!("[server]\ninsecure_dev_no_auth = true\n[scoring]\n{scoring}\n");
                RawCloudConfig::from_toml_str(&text, "c.toml")
                    .unwrap()
                    .validate("c.toml")
                    .map(|c| c.raw.scoring)
                    .map_err(|e| e.to_string())
            };
            let ok = check(&format!(
                "registry = \"{d}\"\nregistry_poll = \"250ms\"\nshadow = true"
            ))
            .unwrap();
            assert_eq!(ok.registry_poll, Duration::from_millis(250));
            assert!(ok.shadow);
            assert_eq!(
                check(&format!("registry = \"{d}\"\nmodel = \"{d}\"")).unwrap_err(),
                "c.toml: scoring.registry: set scoring.model or scoring.registry, not both"
            );
            assert_eq!(
                check("sensors = [\"t\"]\nshadow = true").unwrap_err(),
                "c.toml: scoring.shadow: shadow scoring needs scoring.registry (the candidate comes from it)"
            );
            let err = check(&format!("registry = \"{d}/missing\"")).unwrap_err();
            assert!(err.starts_with("c.toml: scoring.registry: "), "{err}");
            let err = check(&format!("registry = \"{d}\"\nregistry_poll = \"0s\"")).unwrap_err();
            assert_eq!(err, "c.toml: scoring.registry_poll: must be positive");
        });
    }

    #[test]
    fn archive_defaults_to_the_state_dir_and_checks_its_keys() {
        with_secret(|| {
            let base = "[server]\ninsecure_dev_no_auth = true\nstate_dir = \"st\"\n[scoring]\nsensors = [\"t\"]\n";
            let cfg = RawCloudConfig::from_toml_str(base, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap();
            let archive = cfg.archive.expect("enabled by default");
            assert_eq!(archive.dir, PathBuf::from("st").join("archive"));
            assert_eq!(archive.compression, ArchiveCompression::Zstd);
            let off = format!("{base}[archive]\nenabled = false\n");
            let cfg = RawCloudConfig::from_toml_str(&off, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap();
            assert!(cfg.archive.is_none());
            let zero = format!("{base}[archive]\nflush_rows = 0\n");
            let err = RawCloudConfig::from_toml_str(&zero, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "c.toml: archive.flush_rows: must be between 1 and 10000000"
            );
            let every = format!("{base}[archive]\nflush_every = \"0s\"\n");
            let err = RawCloudConfig::from_toml_str(&every, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "c.toml: archive.flush_every: must be positive"
            );
            let codec = format!("{base}[archive]\ncompression = \"brotli\"\n");
            let err = RawCloudConfig::from_toml_str(&codec, "c.toml").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("c.toml") && msg.contains("compression"),
                "{msg}"
            );
        });
    }

    #[test]
    fn no_auth_needs_loopback_and_tokens_need_hex() {
        with_secret(|| {
            let text = "[server]\nlisten = \"0.0.0.0:8080\"\ninsecure_dev_no_auth = true\n[scoring]\nsensors = [\"t\"]\n";
            let err = RawCloudConfig::from_toml_str(text, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap_err();
            assert!(
                err.to_string().contains("server.insecure_dev_no_auth"),
                "{err}"
            );
            let text =
                "[[gateways]]\nid = \"gw\"\ntoken_sha256 = \"abc\"\n[scoring]\nsensors = [\"t\"]\n";
            let err = RawCloudConfig::from_toml_str(text, "c.toml")
                .unwrap()
                .validate("c.toml")
                .unwrap_err();
            assert!(
                err.to_string().contains("gateways[0].token_sha256"),
                "{err}"
            );
        });
    }
}
