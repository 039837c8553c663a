//! The edge configuration: one TOML file, loaded in two steps.
//!
//! [`RawEdgeConfig`] is the file as serde sees it (`deny_unknown_fields`, named defaults, humantime
//! durations such as `"30s"`). [`RawEdgeConfig::validate`] turns it into [`EdgeConfig`], whose
//! values are checked and resolved (topic patterns compiled, secrets read from the environment or a
//! file). Code past the loader only sees [`EdgeConfig`]. Every error names the file and the key:
//! `edge.toml: spool.max_bytes: must be at least 262144 (256 KiB), got 1000`.
//!
//! Secrets never sit in the file itself: `forward.token_env` names an environment variable and
//! `forward.token_file` a file holding the gateway token (likewise `mqtt.password_env` /
//! `mqtt.password_file`). A secret is taken as written, without its trailing line break. They end
//! up in a [`Secret`], whose `Debug` prints `***`.
//!
//! `[mqtt.tls]` and `[forward.tls]` name PEM files; they are read and checked here (see
//! [`crate::tls`]), and errors name the config file, the key and the PEM file.
//!
//! In-process callers (the `fieldpulse demo`, tests) start from [`EdgeConfig::from_toml_str`] (or
//! [`RawEdgeConfig::default`]) and adjust the public fields of the validated struct.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spool::{FullPolicy, SpoolConfig, MIN_MAX_BYTES, MIN_SEGMENT_BYTES};
use crate::tls::{CaBundle, ClientIdentity, ForwardTls, MqttTls, TlsError};
use crate::topic::{TopicError, TopicPattern};

/// Longest accepted `gateway_id`.
pub const MAX_GATEWAY_ID_LEN: usize = 128;

/// True when `id` is a usable gateway id: 1 to [`MAX_GATEWAY_ID_LEN`] characters of
/// `A-Z a-z 0-9 . _ : -`. The id is the first half of every batch's
/// `Idempotency-Key: <gateway_id>/<seq>` header (so no `/`, nothing outside visible ASCII), and
/// appears in the MQTT client id, logs and file names.
pub fn is_valid_gateway_id(id: &str) -> bool {
    (1..=MAX_GATEWAY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The annotated example configuration shipped with the binary (`print-config` prints it).
pub const EXAMPLE_TOML: &str = include_str!("../fieldpulse-edge.example.toml");

/// Why a configuration cannot be used. The message names the file (origin) and the key.
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
    /// A value is out of its allowed range or inconsistent with another.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The config file (or another origin name).
        origin: String,
        /// The dotted key, e.g. `spool.max_bytes`.
        key: String,
        /// What is wrong, lowercase.
        message: String,
    },
}

/// A secret string (gateway token). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent (the `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration file as written (before validation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdgeConfig {
    /// Gateway identifier, unique per customer; sent in every batch.
    pub gateway_id: String,
    /// Connection to the local MQTT broker.
    #[serde(default)]
    pub mqtt: RawMqttConfig,
    /// Topic subscriptions (at least one).
    #[serde(default = "default_subscriptions")]
    pub subscriptions: Vec<RawSubscription>,
    /// Validation rules applied to every reading.
    #[serde(default)]
    pub validation: RawValidationConfig,
    /// The disk spool.
    #[serde(default)]
    pub spool: RawSpoolConfig,
    /// The uplink to `fieldpulse cloud`.
    #[serde(default)]
    pub forward: RawForwardConfig,
    /// The `/metrics` and `/healthz` endpoint.
    #[serde(default)]
    pub http: RawHttpConfig,
    /// Health rules.
    #[serde(default)]
    pub health: RawHealthConfig,
    /// Shutdown behaviour.
    #[serde(default)]
    pub shutdown: RawShutdownConfig,
}

/// `[mqtt]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttConfig {
    /// Broker host name or address.
    #[serde(default = "default_mqtt_host")]
    pub host: String,
    /// Broker port.
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// MQTT client id; the broker keeps the persistent session under this id. Default:
    /// `fieldpulse-edge-<gateway_id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Optional user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the MQTT password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the MQTT password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// MQTT keep-alive interval.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Largest MQTT packet accepted from the broker. Set the broker's `message_size_limit`
    /// below this: a bigger packet drops the connection and the broker would redeliver it forever.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// Largest payload decoded; bigger payloads are rejected (`too_large`) and acknowledged.
    #[serde(default = "default_max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Messages buffered between the MQTT task and the spool writer.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Delay before reconnecting after the broker connection fails.
    #[serde(default = "default_reconnect_delay", with = "humantime_serde")]
    pub reconnect_delay: Duration,
    /// TLS to the broker; present (even empty) means the connection uses TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawMqttTlsConfig>,
}

/// `[mqtt.tls]` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttTlsConfig {
    /// PEM file of the CA certificate(s) the broker's certificate must chain to. Default: the
    /// built-in Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the agent's client certificate chain (mTLS), leaf first.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Name the broker's certificate must carry, when it differs from `mqtt.host`.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// One `[[subscriptions]]` entry as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscription {
    /// Topic pattern with named segments, e.g. `plant/{site}/{asset}/{sensor}`.
    pub pattern: String,
    /// Payload format: `auto`, `number`, `json` or `protobuf`.
    #[serde(default)]
    pub format: PayloadFormat,
    /// Sensor name for single-value payloads when the pattern has no `{sensor}` segment.
    #[serde(default)]
    pub sensor: Option<String>,
}

/// How a subscription's payloads are decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// JSON when it starts with `{`, a bare number when it parses as one, protobuf otherwise.
    #[default]
    Auto,
    /// A bare number (UTF-8 text).
    Number,
    /// JSON `{"ts", "value"}` or a multi-sensor object.
    Json,
    /// Protobuf `fieldpulse.v1.ReadingBatch`.
    Protobuf,
}

/// `[validation]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidationConfig {
    /// Readings older than this (relative to the gateway clock) are rejected.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Readings further than this in the future are rejected.
    #[serde(default = "default_max_future", with = "humantime_serde")]
    pub max_future: Duration,
    /// When non-empty, only these assets are accepted.
    #[serde(default)]
    pub allowed_assets: Vec<String>,
    /// Allowed value range per sensor name.
    #[serde(default)]
    pub ranges: BTreeMap<String, RawRange>,
    /// Deepest JSON nesting accepted.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Most readings accepted from one MQTT message.
    #[serde(default = "default_max_readings_per_message")]
    pub max_readings_per_message: usize,
    /// Optional file receiving rejected payloads (JSON lines).
    #[serde(default)]
    pub quarantine_file: Option<PathBuf>,
    /// Size cap of the quarantine file; further rejections are only counted.
    #[serde(default = "default_quarantine_max_bytes")]
    pub quarantine_max_bytes: u64,
}

/// An inclusive value range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
}

/// `[spool]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpoolConfig {
    /// Spool directory (created if missing).
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Hard cap of the spool on disk.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// Size of one segment file.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// What happens at the cap: `drop_oldest` or `backpressure`.
    #[serde(default = "default_full_policy")]
    pub full_policy: FullPolicy,
    /// Longest a received message waits for its group commit (fsync).
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Most messages per group commit.
    #[serde(default = "default_commit_max_messages")]
    pub commit_max_messages: usize,
}

/// `[forward]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardConfig {
    /// Base URL of the cloud; batches go to `<url>/v1/batches`. `http://` only on loopback.
    #[serde(default = "default_forward_url")]
    pub url: String,
    /// Environment variable holding the gateway token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the gateway token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Most spool records (MQTT messages) per batch.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Most record bytes per batch (before compression).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Record bytes of the first batches, before the uplink rate is measured (see
    /// [`crate::uplink`]). Default: 32 KiB, or `batch_max_bytes` when smaller.
    #[serde(default)]
    pub batch_initial_bytes: Option<usize>,
    /// A live batch is cut at the latest this long after its oldest record was committed.
    #[serde(default = "default_batch_max_age", with = "humantime_serde")]
    pub batch_max_age: Duration,
    /// Shortest timeout of one POST (the timeout grows with the body size over the measured rate).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest timeout of one POST.
    #[serde(default = "default_request_timeout_max", with = "humantime_serde")]
    pub request_timeout_max: Duration,
    /// TCP/TLS connect timeout.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First retry delay (doubles per attempt, with jitter).
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Readings per second sent by the backfill lane after an outage.
    #[serde(default = "default_backfill_rate")]
    pub backfill_rate: u32,
    /// zstd compression level.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Directory receiving batches the cloud rejected permanently. Default: `<spool.dir>/../dead-letter`.
    #[serde(default)]
    pub dead_letter_dir: Option<PathBuf>,
    /// TLS settings for an `https://` url (custom CA, client certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawForwardTlsConfig>,
}

/// `[forward.tls]` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardTlsConfig {
    /// PEM file of CA certificate(s) trusted in addition to the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the built-in roots.
    #[serde(default)]
    pub only_ca: bool,
    /// PEM file of the agent's client certificate chain (mTLS), leaf first.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// `[http]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpConfig {
    /// Address of `/metrics` and `/healthz`; omit or set `enabled = false` to disable.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Whether the endpoint runs.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// `[health]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthConfig {
    /// Unhealthy when connected to the broker and no message arrived for this long (`"0s"`
    /// disables the rule: no data expected).
    #[serde(default = "default_expect_data_within", with = "humantime_serde")]
    pub expect_data_within: Duration,
    /// Unhealthy when the spool holds more than this fraction of `spool.max_bytes`.
    #[serde(default = "default_spool_high_watermark")]
    pub spool_high_watermark: f64,
    /// Unhealthy when records wait in the spool and the cloud acknowledged nothing for this
    /// long (`"0s"` disables the rule).
    #[serde(default = "default_forward_stall_after", with = "humantime_serde")]
    pub forward_stall_after: Duration,
}

/// `[shutdown]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdownConfig {
    /// After SIGTERM: time allowed to flush, acknowledge and forward before exiting.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

/// The validated configuration. Built by [`RawEdgeConfig::validate`].
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Where the configuration came from (file path or a name), for messages.
    pub origin: String,
    /// Gateway identifier.
    pub gateway_id: String,
    /// Broker connection.
    pub mqtt: MqttConfig,
    /// Compiled subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// Validation rules.
    pub validation: ValidationConfig,
    /// Spool settings.
    pub spool: SpoolSettings,
    /// Uplink settings.
    pub forward: ForwardConfig,
    /// Metrics endpoint address, if enabled.
    pub http_listen: Option<SocketAddr>,
    /// Health rules.
    pub health: HealthConfig,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
}

/// Validated `[mqtt]`.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id of the persistent session.
    pub client_id: String,
    /// User name and password, if configured.
    pub credentials: Option<(String, Secret)>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Largest packet accepted from the broker.
    pub max_packet_bytes: usize,
    /// Largest payload decoded.
    pub max_payload_bytes: usize,
    /// Intake channel capacity (messages).
    pub channel_capacity: usize,
    /// Reconnect delay.
    pub reconnect_delay: Duration,
    /// TLS to the broker (`None`: plain TCP).
    pub tls: Option<MqttTls>,
}

/// A validated subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The compiled topic pattern.
    pub pattern: TopicPattern,
    /// Payload format.
    pub format: PayloadFormat,
    /// Sensor name for single values when the pattern has no `{sensor}`.
    pub sensor: Option<String>,
}

/// Validated `[validation]`.
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// Oldest accepted reading age.
    pub max_age: Duration,
    /// Furthest accepted future offset.
    pub max_future: Duration,
    /// Allow-list of assets (empty = all).
    pub allowed_assets: Vec<String>,
    /// Inclusive range per sensor.
    pub ranges: BTreeMap<String, RawRange>,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Most readings from one message.
    pub max_readings_per_message: usize,
    /// Quarantine file, if any.
    pub quarantine_file: Option<PathBuf>,
    /// Quarantine size cap.
    pub quarantine_max_bytes: u64,
}

/// Validated `[spool]`.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// Spool directory.
    pub dir: PathBuf,
    /// Byte cap, segment size and full policy, as the spool takes them.
    pub spool: SpoolConfig,
    /// Group commit interval.
    pub commit_interval: Duration,
    /// Most messages per group commit.
    pub commit_max_messages: usize,
}

/// Validated `[forward]`.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Full URL of the batch endpoint (`<url>/v1/batches`).
    pub batches_url: String,
    /// Gateway token, if configured (required unless the URL is loopback `http://`).
    pub token: Option<Secret>,
    /// Most records per batch.
    pub batch_max_records: usize,
    /// Most record bytes per batch.
    pub batch_max_bytes: usize,
    /// Record bytes of the first batches (at most `batch_max_bytes`).
    pub batch_initial_bytes: usize,
    /// Latest cut of a live batch.
    pub batch_max_age: Duration,
    /// Shortest POST timeout (and the timeout while the uplink rate is unknown).
    pub request_timeout: Duration,
    /// Longest POST timeout.
    pub request_timeout_max: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Backfill readings per second.
    pub backfill_rate: u32,
    /// zstd level.
    pub zstd_level: i32,
    /// Dead-letter directory.
    pub dead_letter_dir: PathBuf,
    /// Custom CA and client certificate for an `https://` url (`None`: built-in roots only).
    pub tls: Option<ForwardTls>,
}

/// Validated `[health]`.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Data expected at least this often while connected (`None`: no expectation).
    pub expect_data_within: Option<Duration>,
    /// Spool fill fraction that makes the agent unhealthy.
    pub spool_high_watermark: f64,
    /// Forwarding counts as stalled when records waited this long and nothing was forwarded
    /// for as long (`None`: rule disabled).
    pub forward_stall_after: Option<Duration>,
}

impl Default for RawEdgeConfig {
    fn default() -> Self {
        Self {
            gateway_id: "gw-1".into(),
            mqtt: RawMqttConfig::default(),
            subscriptions: default_subscriptions(),
            validation: RawValidationConfig::default(),
            spool: RawSpoolConfig::default(),
            forward: RawForwardConfig::default(),
            http: RawHttpConfig::default(),
            health: RawHealthConfig::default(),
            shutdown: RawShutdownConfig::default(),
        }
    }
}

impl Default for RawMqttConfig {
    fn default() -> Self {
        Self {
            host: default_mqtt_host(),
            port: default_mqtt_port(),
            client_id: None,
            username: None,
            password_env: None,
            password_file: None,
            keep_alive: default_keep_alive(),
            max_packet_bytes: default_max_packet_bytes(),
            max_payload_bytes: default_max_payload_bytes(),
            channel_capacity: default_channel_capacity(),
            reconnect_delay: default_reconnect_delay(),
            tls: None,
        }
    }
}

impl Default for RawValidationConfig {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_future: default_max_future(),
            allowed_assets: Vec::new(),
            ranges: BTreeMap::new(),
            max_json_depth: default_max_json_depth(),
            max_readings_per_message: default_max_readings_per_message(),
            quarantine_file: None,
            quarantine_max_bytes: default_quarantine_max_bytes(),
        }
    }
}

impl Default for RawSpoolConfig {
    fn default() -> Self {
        Self {
            dir: default_spool_dir(),
            max_bytes: default_spool_max_bytes(),
            segment_bytes: default_segment_bytes(),
            full_policy: default_full_policy(),
            commit_interval: default_commit_interval(),
            commit_max_messages: default_commit_max_messages(),
        }
    }
}

impl Default for RawForwardConfig {
    fn default() -> Self {
        Self {
            url: default_forward_url(),
            token_env: None,
            token_file: None,
            batch_max_records: default_batch_max_records(),
            batch_max_bytes: default_batch_max_bytes(),
            batch_initial_bytes: None,
            batch_max_age: default_batch_max_age(),
            request_timeout: default_request_timeout(),
            request_timeout_max: default_request_timeout_max(),
            connect_timeout: default_connect_timeout(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            backfill_rate: default_backfill_rate(),
            zstd_level: default_zstd_level(),
            dead_letter_dir: None,
            tls: None,
        }
    }
}

impl Default for RawHttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            enabled: true,
        }
    }
}

impl Default for RawHealthConfig {
    fn default() -> Self {
        Self {
            expect_data_within: default_expect_data_within(),
            spool_high_watermark: default_spool_high_watermark(),
            forward_stall_after: default_forward_stall_after(),
        }
    }
}

impl Default for RawShutdownConfig {
    fn default() -> Self {
        Self {
            grace: default_grace(),
        }
    }
}

impl RawEdgeConfig {
    /// Renders this configuration as TOML (the `print-config` output).
    ///
    /// # Errors
    /// Only if a value cannot be represented in TOML (not the case for values built by serde).
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Checks every value and resolves secrets; `origin` names the file in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key.
    pub fn validate(self, origin: &str) -> Result<EdgeConfig, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let gateway_id = self.gateway_id.trim().to_string();
        if !is_valid_gateway_id(&gateway_id) {
            return Err(invalid(
                "gateway_id",
                format!(
                    "must be 1 to {MAX_GATEWAY_ID_LEN} characters of A-Z a-z 0-9 . _ : - \
                     (it travels in the Idempotency-Key header), got {gateway_id:?}"
                ),
            ));
        }

        let mqtt = self.mqtt;
        if mqtt.host.trim().is_empty() {
            return Err(invalid("mqtt.host", "must not be empty".into()));
        }
        if mqtt.port == 0 {
            return Err(invalid("mqtt.port", "must not be 0".into()));
        }
        if mqtt.keep_alive < Duration::from_secs(1) || mqtt.keep_alive > Duration::from_secs(65535)
        {
            return Err(invalid(
                "mqtt.keep_alive",
                format!("must be between 1s and 65535s, got {:?}", mqtt.keep_alive),
            ));
        }
        if mqtt.max_payload_bytes < 64 {
            return Err(invalid(
                "mqtt.max_payload_bytes",
                format!("must be at least 64, got {}", mqtt.max_payload_bytes),
            ));
        }
        if mqtt.max_packet_bytes < mqtt.max_payload_bytes {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                format!(
                    "must be at least mqtt.max_payload_bytes ({}), got {}",
                    mqtt.max_payload_bytes, mqtt.max_packet_bytes
                ),
            ));
        }
        if mqtt.max_packet_bytes > 256 << 20 {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                format!(
                    "must be at most 268435456 (the MQTT limit), got {}",
                    mqtt.max_packet_bytes
                ),
            ));
        }
        if mqtt.channel_capacity == 0 {
            return Err(invalid(
                "mqtt.channel_capacity",
                "must be at least 1".into(),
            ));
        }
        let client_id = mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("fieldpulse-edge-{gateway_id}"));
        if client_id.is_empty() || client_id.len() > 128 {
            let message = if mqtt.client_id.is_none() {
                format!(
                    "must be 1 to 128 characters; the default fieldpulse-edge-<gateway_id> has {}: \
                     set mqtt.client_id or shorten gateway_id",
                    client_id.len()
                )
            } else {
                "must be 1 to 128 characters".into()
            };
            return Err(invalid("mqtt.client_id", message));
        }
        let password = resolve_secret(
            origin,
            "mqtt.password_env",
            mqtt.password_env.as_deref(),
            "mqtt.password_file",
            mqtt.password_file.as_deref(),
        )?;
        let credentials = match (mqtt.username.clone(), password) {
            (Some(user), Some(pass)) => Some((user, pass)),
            (Some(user), None) => Some((user, Secret::new(""))),
            (None, Some(_)) => {
                return Err(invalid(
                    "mqtt.username",
                    "must be set when a password is configured".into(),
                ))
            }
            (None, None) => None,
        };
        if mqtt.tls.is_some() && !crate::tls::is_valid_server_name(&mqtt.host) {
            return Err(invalid(
                "mqtt.host",
                format!(
                    "must be a DNS name or an IP address with [mqtt.tls], got {:?}",
                    mqtt.host
                ),
            ));
        }
        let mqtt_tls = mqtt
            .tls
            .as_ref()
            .map(|tls| validate_mqtt_tls(origin, tls))
            .transpose()?;

        if self.subscriptions.is_empty() {
            return Err(invalid("subscriptions", "needs at least one entry".into()));
        }
        let mut subscriptions = Vec::with_capacity(self.subscriptions.len());
        for (idx, sub) in self.subscriptions.into_iter().enumerate() {
            let key = format!("subscriptions[{idx}].pattern");
            let pattern = TopicPattern::parse(&sub.pattern)
                .map_err(|err: TopicError| invalid(&key, err.to_string()))?;
            if let Some(sensor) = &sub.sensor {
                if sensor.is_empty() {
                    return Err(invalid(
                        &format!("subscriptions[{idx}].sensor"),
                        "must not be empty".into(),
                    ));
                }
            }
            subscriptions.push(Subscription {
                pattern,
                format: sub.format,
                sensor: sub.sensor,
            });
        }

        let validation = self.validation;
        for (sensor, range) in &validation.ranges {
            if !(range.min.is_finite() && range.max.is_finite() && range.min <= range.max) {
                return Err(invalid(
                    &format!("validation.ranges.{sensor}"),
                    format!(
                        "needs finite min <= max, got min {} max {}",
                        range.min, range.max
                    ),
                ));
            }
        }
        if validation.max_json_depth == 0 || validation.max_json_depth > 64 {
            return Err(invalid(
                "validation.max_json_depth",
                format!(
                    "must be between 1 and 64, got {}",
                    validation.max_json_depth
                ),
            ));
        }
        if validation.max_readings_per_message == 0 {
            return Err(invalid(
                "validation.max_readings_per_message",
                "must be at least 1".into(),
            ));
        }

        let spool = self.spool;
        if spool.max_bytes < MIN_MAX_BYTES {
            return Err(invalid(
                "spool.max_bytes",
                format!(
                    "must be at least {MIN_MAX_BYTES} ({} KiB), got {}",
                    MIN_MAX_BYTES / 1024,
                    spool.max_bytes
                ),
            ));
        }
        if spool.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(invalid(
                "spool.segment_bytes",
                format!(
                    "must be at least {MIN_SEGMENT_BYTES} (64 KiB), got {}",
                    spool.segment_bytes
                ),
            ));
        }
        if spool.commit_max_messages == 0 {
            return Err(invalid(
                "spool.commit_max_messages",
                "must be at least 1".into(),
            ));
        }
        if spool.commit_interval > Duration::from_secs(1) {
            return Err(invalid(
                "spool.commit_interval",
                format!("must be at most 1s, got {:?}", spool.commit_interval),
            ));
        }
        if spool.dir.as_os_str().is_empty() {
            return Err(invalid("spool.dir", "must not be empty".into()));
        }

        let forward = self.forward;
        let base = forward.url.trim_end_matches('/');
        let is_loopback_http = match base.strip_prefix("http://") {
            Some(rest) => is_loopback_authority(rest),
            None if base.starts_with("https://") => false,
            None => {
                return Err(invalid(
                    "forward.url",
                    format!("must start with https:// (or http:// on loopback), got {base:?}"),
                ))
            }
        };
        if base.starts_with("http://") && !is_loopback_http {
            return Err(invalid(
                "forward.url",
                format!("plain http is only allowed on loopback, use https:// (got {base:?})"),
            ));
        }
        let token = resolve_secret(
            origin,
            "forward.token_env",
            forward.token_env.as_deref(),
            "forward.token_file",
            forward.token_file.as_deref(),
        )?;
        if token.is_none() && !is_loopback_http {
            return Err(invalid(
                "forward.token_env",
                "a gateway token (forward.token_env or forward.token_file) is required for a non-loopback url".into(),
            ));
        }
        if forward.batch_max_records == 0 {
            return Err(invalid(
                "forward.batch_max_records",
                "must be at least 1".into(),
            ));
        }
        if forward.batch_max_bytes < 1024 {
            return Err(invalid(
                "forward.batch_max_bytes",
                format!("must be at least 1024, got {}", forward.batch_max_bytes),
            ));
        }
        let batch_initial_bytes = match forward.batch_initial_bytes {
            None => default_batch_initial_bytes().min(forward.batch_max_bytes),
            Some(bytes) if (1024..=forward.batch_max_bytes).contains(&bytes) => bytes,
            Some(bytes) => {
                return Err(invalid(
                    "forward.batch_initial_bytes",
                    format!(
                        "must be between 1024 and forward.batch_max_bytes ({}), got {bytes}",
                        forward.batch_max_bytes
                    ),
                ))
            }
        };
        if forward.request_timeout.is_zero() {
            return Err(invalid(
                "forward.request_timeout",
                "must be positive".into(),
            ));
        }
        if forward.request_timeout_max < forward.request_timeout {
            return Err(invalid(
                "forward.request_timeout_max",
                format!(
                    "must be at least forward.request_timeout ({:?}), got {:?}",
                    forward.request_timeout, forward.request_timeout_max
                ),
            ));
        }
        if forward.connect_timeout.is_zero() {
            return Err(invalid(
                "forward.connect_timeout",
                "must be positive".into(),
            ));
        }
        if forward.retry_initial.is_zero() || forward.retry_initial > forward.retry_max {
            return Err(invalid(
                "forward.retry_initial",
                "must be positive and at most forward.retry_max".into(),
            ));
        }
        if forward.backfill_rate == 0 {
            return Err(invalid(
                "forward.backfill_rate",
                "must be at least 1 reading/s".into(),
            ));
        }
        if !(1..=19).contains(&forward.zstd_level) {
            return Err(invalid(
                "forward.zstd_level",
                format!("must be between 1 and 19, got {}", forward.zstd_level),
            ));
        }
        let dead_letter_dir = forward.dead_letter_dir.clone().unwrap_or_else(|| {
            spool
                .dir
                .parent()
                .map(|p| p.join("dead-letter"))
                .unwrap_or_else(|| PathBuf::from("dead-letter"))
        });
        let forward_tls = match &forward.tls {
            Some(_) if is_loopback_http => {
                return Err(invalid(
                    "forward.tls",
                    format!("applies to an https:// url only, forward.url is {base:?}"),
                ))
            }
            Some(tls) => Some(validate_forward_tls(origin, tls)?),
            None => None,
        };

        let health = self.health;
        if !(health.spool_high_watermark > 0.0 && health.spool_high_watermark <= 1.0) {
            return Err(invalid(
                "health.spool_high_watermark",
                format!("must be in (0, 1], got {}", health.spool_high_watermark),
            ));
        }

        Ok(EdgeConfig {
            origin: origin.to_string(),
            gateway_id,
            mqtt: MqttConfig {
                host: mqtt.host,
                port: mqtt.port,
                client_id,
                credentials,
                keep_alive: mqtt.keep_alive,
                max_packet_bytes: mqtt.max_packet_bytes,
                max_payload_bytes: mqtt.max_payload_bytes,
                channel_capacity: mqtt.channel_capacity,
                reconnect_delay: mqtt.reconnect_delay,
                tls: mqtt_tls,
            },
            subscriptions,
            validation: ValidationConfig {
                max_age: validation.max_age,
                max_future: validation.max_future,
                allowed_assets: validation.allowed_assets,
                ranges: validation.ranges,
                max_json_depth: validation.max_json_depth,
                max_readings_per_message: validation.max_readings_per_message,
                quarantine_file: validation.quarantine_file,
                quarantine_max_bytes: validation.quarantine_max_bytes,
            },
            spool: SpoolSettings {
                dir: spool.dir,
                spool: SpoolConfig {
                    max_bytes: spool.max_bytes,
                    segment_bytes: spool.segment_bytes,
                    policy: spool.full_policy,
                },
                commit_interval: spool.commit_interval,
                commit_max_messages: spool.commit_max_messages,
            },
            forward: ForwardConfig {
                batches_url: format!("{base}/v1/batches"),
                token,
                batch_max_records: forward.batch_max_records,
                batch_max_bytes: forward.batch_max_bytes,
                batch_initial_bytes,
                batch_max_age: forward.batch_max_age,
                request_timeout: forward.request_timeout,
                request_timeout_max: forward.request_timeout_max,
                connect_timeout: forward.connect_timeout,
                retry_initial: forward.retry_initial,
                retry_max: forward.retry_max,
                backfill_rate: forward.backfill_rate,
                zstd_level: forward.zstd_level,
                dead_letter_dir,
                tls: forward_tls,
            },
            http_listen: self.http.enabled.then_some(self.http.listen),
            health: HealthConfig {
                expect_data_within: (!health.expect_data_within.is_zero())
                    .then_some(health.expect_data_within),
                spool_high_watermark: health.spool_high_watermark,
                forward_stall_after: (!health.forward_stall_after.is_zero())
                    .then_some(health.forward_stall_after),
            },
            shutdown_grace: self.shutdown.grace,
        })
    }
}

impl EdgeConfig {
    /// Parses and validates TOML text; `origin` names it in errors (usually the file path).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`], both naming `origin`.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let raw: RawEdgeConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        raw.validate(origin)
    }

    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }
}

fn resolve_secret(
    origin: &str,
    env_key: &str,
    env_name: Option<&str>,
    file_key: &str,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        key: key.to_string(),
        message,
    };
    match (env_name, file) {
        (Some(_), Some(_)) => Err(invalid(
            env_key,
            format!("set either {env_key} or {file_key}, not both"),
        )),
        (Some(name), None) => match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => {
                Ok(Some(Secret::new(without_line_break(&value))))
            }
            Ok(_) => Err(invalid(
                env_key,
                format!("environment variable {name} is empty"),
            )),
            Err(_) => Err(invalid(
                env_key,
                format!("environment variable {name} is not set"),
            )),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) if !value.trim().is_empty() => {
                Ok(Some(Secret::new(without_line_break(&value))))
            }
            Ok(_) => Err(invalid(file_key, format!("{} is empty", path.display()))),
            Err(err) => Err(invalid(
                file_key,
                format!("cannot read {}: {err}", path.display()),
            )),
        },
        (None, None) => Ok(None),
    }
}

/// A secret as written in its file or variable: only the trailing line break (`\n`, `\r\n`, as
/// editors and `echo` add) is removed; spaces are part of the secret.
fn without_line_break(value: &str) -> &str {
    value.trim_end_matches(['\n', '\r'])
}

/// Checks `[mqtt.tls]`: reads its PEM files and builds the rustls configuration.
fn validate_mqtt_tls(origin: &str, tls: &RawMqttTlsConfig) -> Result<MqttTls, ConfigError> {
    let ca = read_ca(origin, "mqtt.tls.ca_file", tls.ca_file.as_deref())?;
    let identity = read_identity(
        origin,
        "mqtt.tls",
        tls.client_cert_file.as_deref(),
        tls.client_key_file.as_deref(),
    )?;
    let key = if tls.server_name.is_some() {
        "mqtt.tls.server_name"
    } else {
        "mqtt.tls"
    };
    MqttTls::new(ca.as_ref(), identity.as_ref(), tls.server_name.as_deref())
        .map_err(|err| tls_invalid(origin, key, err))
}

/// Checks `[forward.tls]`: reads its PEM files into the HTTP client's settings.
fn validate_forward_tls(
    origin: &str,
    tls: &RawForwardTlsConfig,
) -> Result<ForwardTls, ConfigError> {
    if tls.only_ca && tls.ca_file.is_none() {
        return Err(ConfigError::Invalid {
            origin: origin.to_string(),
            key: "forward.tls.only_ca".into(),
            message: "needs forward.tls.ca_file (the only CA to trust)".into(),
        });
    }
    let ca = read_ca(origin, "forward.tls.ca_file", tls.ca_file.as_deref())?;
    let identity = read_identity(
        origin,
        "forward.tls",
        tls.client_cert_file.as_deref(),
        tls.client_key_file.as_deref(),
    )?;
    ForwardTls::new(ca.as_ref(), tls.only_ca, identity.as_ref())
        .map_err(|err| tls_invalid(origin, "forward.tls", err))
}

fn read_ca(origin: &str, key: &str, path: Option<&Path>) -> Result<Option<CaBundle>, ConfigError> {
    path.map(|path| CaBundle::read(path).map_err(|err| tls_invalid(origin, key, err)))
        .transpose()
}

/// Reads `<section>.client_cert_file` and `<section>.client_key_file`: both or neither.
fn read_identity(
    origin: &str,
    section: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientIdentity>, ConfigError> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                key: format!("{section}.client_key_file"),
                message: format!("must be set together with {section}.client_cert_file"),
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                key: format!("{section}.client_cert_file"),
                message: format!("must be set together with {section}.client_key_file"),
            })
        }
    };
    ClientIdentity::read(cert, key).map(Some).map_err(|err| {
        // Name the key whose file is at fault.
        let which = match &err {
            TlsError::Read { path, .. } | TlsError::Pem { path, .. } if path == key => {
                "client_key_file"
            }
            TlsError::NoKey { .. } | TlsError::KeyMismatch { .. } => "client_key_file",
            _ => "client_cert_file",
        };
        tls_invalid(origin, &format!("{section}.{which}"), err)
    })
}

fn tls_invalid(origin: &str, key: &str, err: TlsError) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        key: key.to_string(),
        message: err.to_string(),
    }
}

/// True for `localhost`, `127.x.y.z` and `[::1]`, with an optional port and path.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn default_subscriptions() -> Vec<RawSubscription> {
    vec![
        RawSubscription {
            pattern: "plant/{site}/{asset}/{sensor}".into(),
            format: PayloadFormat::Auto,
            sensor: None,
        },
        RawSubscription {
            pattern: "sensors/{asset}".into(),
            format: PayloadFormat::Auto,
            sensor: None,
        },
    ]
}
fn default_mqtt_host() -> String {
    "127.0.0.1".into()
}
fn default_mqtt_port() -> u16 {
    1883
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_packet_bytes() -> usize {
    16 << 20
}
fn default_max_payload_bytes() -> usize {
    256 << 10
}
fn default_channel_capacity() -> usize {
    1024
}
fn default_reconnect_delay() -> Duration {
    Duration::from_millis(500)
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_future() -> Duration {
    Duration::from_secs(300)
}
fn default_max_json_depth() -> usize {
    8
}
fn default_max_readings_per_message() -> usize {
    10_000
}
fn default_quarantine_max_bytes() -> u64 {
    16 << 20
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/fieldpulse-edge/spool")
}
fn default_spool_max_bytes() -> u64 {
    256 << 20
}
fn default_segment_bytes() -> u64 {
    8 << 20
}
fn default_full_policy() -> FullPolicy {
    FullPolicy::DropOldest
}
fn default_commit_interval() -> Duration {
    Duration::from_millis(5)
}
fn default_commit_max_messages() -> usize {
    1024
}
fn default_forward_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_batch_max_records() -> usize {
    5_000
}
fn default_batch_max_bytes() -> usize {
    1 << 20
}
fn default_batch_max_age() -> Duration {
    Duration::from_millis(200)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout_max() -> Duration {
    Duration::from_secs(300)
}
fn default_batch_initial_bytes() -> usize {
    32 << 10
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_backfill_rate() -> u32 {
    20_000
}
fn default_zstd_level() -> i32 {
    3
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_true() -> bool {
    true
}
fn default_expect_data_within() -> Duration {
    Duration::from_secs(300)
}
fn default_forward_stall_after() -> Duration {
    Duration::from_secs(120)
}

fn default_spool_high_watermark() -> f64 {
    0.9
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        "gateway_id = \"gw-7\"\n".to_string()
    }

    #[test]
    fn the_shipped_example_validates() {
        let cfg = EdgeConfig::from_toml_str(EXAMPLE_TOML, "fieldpulse-edge.example.toml")
            .expect("example config must validate");
        assert_eq!(cfg.gateway_id, "gw-1");
        assert!(!cfg.subscriptions.is_empty());
    }

    #[test]
    fn the_default_config_validates_and_round_trips_through_toml() {
        let text = RawEdgeConfig::default().to_toml_string().unwrap();
        let cfg = EdgeConfig::from_toml_str(&text, "default").unwrap();
        assert_eq!(cfg.spool.spool.max_bytes, 256 << 20);
        assert_eq!(cfg.validation.max_age, Duration::from_secs(86_400));
        assert_eq!(cfg.validation.max_future, Duration::from_secs(300));
        assert_eq!(cfg.forward.batches_url, "http://127.0.0.1:8080/v1/batches");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_file_and_the_key() {
        let text = format!("{}[spool]\nmax_byte = 5\n", minimal());
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("edge.toml: "), "{err}");
        assert!(err.contains("max_byte"), "{err}");
    }

    #[test]
    fn a_too_small_spool_names_the_key_and_the_minimum_accepted() {
        let text = format!("{}[spool]\nmax_bytes = 1000\n", minimal());
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "edge.toml: spool.max_bytes: must be at least 262144 (256 KiB), got 1000"
        );
        // The minimum the message names is accepted.
        let text = format!("{}[spool]\nmax_bytes = 262144\n", minimal());
        let cfg = EdgeConfig::from_toml_str(&text, "edge.toml").unwrap();
        assert_eq!(cfg.spool.spool.max_bytes, MIN_MAX_BYTES);
    }

    #[test]
    fn gateway_ids_are_limited_to_a_header_safe_charset() {
        for ok in ["gw-7", "plant.north:gw_01", "A"] {
            let text = format!("gateway_id = {ok:?}\n");
            let cfg = EdgeConfig::from_toml_str(&text, "edge.toml").unwrap();
            assert_eq!(cfg.gateway_id, ok);
        }
        // The longest id fits when the MQTT client id is set; the default client id
        // (`fieldpulse-edge-<gateway_id>`) would be too long, and the error says so.
        let longest = "g".repeat(128);
        let text = format!("gateway_id = {longest:?}\n[mqtt]\nclient_id = \"edge-1\"\n");
        assert_eq!(
            EdgeConfig::from_toml_str(&text, "edge.toml")
                .unwrap()
                .gateway_id,
            longest
        );
        let text = format!("gateway_id = {longest:?}\n");
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("edge.toml: mqtt.client_id: ") && err.contains("gateway_id"),
            "{err}"
        );
        for bad in [
            "",
            "gw-ü",
            "Gateway–7",
            "gw 7",
            "gw/7",
            "gw\t7",
            "gw\"7",
            "gw,7",
            &"g".repeat(129),
        ] {
            let text = format!("gateway_id = {bad:?}\n");
            let err = EdgeConfig::from_toml_str(&text, "edge.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("edge.toml: gateway_id: must be 1 to 128 characters of "),
                "{bad:?}: {err}"
            );
            assert!(err.contains("A-Z a-z 0-9"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn durations_are_humantime_strings() {
        let text = format!(
            "{}[validation]\nmax_age = \"2h\"\nmax_future = \"30s\"\n",
            minimal()
        );
        let cfg = EdgeConfig::from_toml_str(&text, "edge.toml").unwrap();
        assert_eq!(cfg.validation.max_age, Duration::from_secs(7200));
        assert_eq!(cfg.validation.max_future, Duration::from_secs(30));
    }

    #[test]
    fn the_uplink_sizing_keys_are_checked_against_the_batch_limits() {
        let cfg = EdgeConfig::from_toml_str(&minimal(), "edge.toml").unwrap();
        assert_eq!(
            (
                cfg.forward.batch_initial_bytes,
                cfg.forward.request_timeout_max
            ),
            (32 << 10, Duration::from_secs(300))
        );
        let small = format!("{}[forward]\nbatch_max_bytes = 4096\n", minimal());
        let cfg = EdgeConfig::from_toml_str(&small, "edge.toml").unwrap();
        assert_eq!(cfg.forward.batch_initial_bytes, 4096);
        for (keys, named) in [
            (
                "batch_initial_bytes = 2000000",
                "forward.batch_initial_bytes",
            ),
            ("batch_initial_bytes = 100", "forward.batch_initial_bytes"),
            (
                "request_timeout = \"10s\"\nrequest_timeout_max = \"5s\"",
                "forward.request_timeout_max",
            ),
        ] {
            let text = format!("{}[forward]\n{keys}\n", minimal());
            let err = EdgeConfig::from_toml_str(&text, "edge.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("edge.toml") && err.contains(named), "{err}");
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let text = format!(
            "{}[forward]\nurl = \"http://cloud.example.com\"\n",
            minimal()
        );
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("forward.url"), "{err}");
        for ok in [
            "http://localhost:1",
            "http://127.0.0.1:9/x",
            "http://[::1]:80",
        ] {
            let text = format!("{}[forward]\nurl = \"{ok}\"\n", minimal());
            EdgeConfig::from_toml_str(&text, "edge.toml").unwrap();
        }
    }

    #[test]
    fn https_needs_a_token_and_reads_it_from_a_file_without_printing_it() {
        let text = format!(
            "{}[forward]\nurl = \"https://cloud.example.com\"\n",
            minimal()
        );
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("forward.token_env"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "s3cret-token\n").unwrap();
        let text = format!(
            "{}[forward]\nurl = \"https://cloud.example.com\"\ntoken_file = {:?}\n",
            minimal(),
            token_path.display().to_string()
        );
        let cfg = EdgeConfig::from_toml_str(&text, "edge.toml").unwrap();
        assert_eq!(cfg.forward.token.as_ref().unwrap().expose(), "s3cret-token");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn a_missing_token_env_var_is_named() {
        let text = format!(
            "{}[forward]\nurl = \"https://c.example.com\"\ntoken_env = \"FIELDPULSE_TEST_SURELY_UNSET_VAR\"\n",
            minimal()
        );
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("forward.token_env"), "{err}");
        assert!(err.contains("FIELDPULSE_TEST_SURELY_UNSET_VAR"), "{err}");
    }

    #[test]
    fn a_bad_topic_pattern_names_its_index() {
        let text = format!("{}[[subscriptions]]\npattern = \"a/{{asset\"\n", minimal());
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("subscriptions[0].pattern"), "{err}");
    }

    #[test]
    fn an_inverted_range_is_refused() {
        let text = format!(
            "{}[validation.ranges]\ntemp = {{ min = 5.0, max = 1.0 }}\n",
            minimal()
        );
        let err = EdgeConfig::from_toml_str(&text, "edge.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("validation.ranges.temp"), "{err}");
    }
}
