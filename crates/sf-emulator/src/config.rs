//! Emulator configuration: org identity, the connected app, session and
//! limit policy, and fault injection. Loaded from JSON by the CLI
//! (`deny_unknown_fields`, every key optional with a named default).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the emulator behaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorConfig {
    /// 15-character org id (prefix `00D`).
    pub org_id: String,
    /// The integration user's username (JWT `sub`).
    pub username: String,
    /// The connected app's consumer key (JWT `iss`, client-credentials `client_id`).
    pub consumer_key: String,
    /// The connected app's consumer secret (client credentials); `None` disables that flow.
    pub consumer_secret: Option<String>,
    /// PEM public key (`BEGIN PUBLIC KEY` / `BEGIN RSA PUBLIC KEY`) or X.509
    /// certificate the JWT assertions must be signed for; `None` disables the JWT flow.
    pub jwt_certificate_pem: Option<String>,
    /// Accepted JWT audiences.
    pub audiences: Vec<String>,
    /// How far in the future a JWT `exp` may be (3 minutes plus skew).
    #[serde(with = "humantime_serde_compat")]
    pub max_jwt_lifetime: Duration,
    /// Session lifetime after which calls get `401 INVALID_SESSION_ID`.
    #[serde(with = "humantime_serde_compat")]
    pub session_lifetime: Duration,
    /// Daily API request allocation (`DailyApiRequests.Max`).
    pub daily_api_limit: u64,
    /// Query locators expire after this much inactivity.
    #[serde(with = "humantime_serde_compat")]
    pub locator_idle_timeout: Duration,
    /// Polls of a Bulk query job before it reports `JobComplete`.
    pub bulk_polls_before_complete: u32,
    /// Largest accepted request body (emulator policy, not a Salesforce fact).
    pub max_body_bytes: usize,
    /// Serve `/__emulator/...` even when bound to a non-loopback address.
    pub admin_on_non_loopback: bool,
    /// Fault injection (all off by default).
    pub faults: FaultConfig,
}

/// Rates and knobs for injected failures; each rate is a probability per
/// authenticated REST call, drawn from an RNG seeded with `seed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// RNG seed (reproducible fault sequences).
    pub seed: u64,
    /// `500 UNKNOWN_EXCEPTION` rate.
    pub rate_500: f64,
    /// `503 SERVER_UNAVAILABLE` rate.
    pub rate_503: f64,
    /// `UNABLE_TO_LOCK_ROW` rate on writes (per record inside Collections).
    pub rate_lock: f64,
    /// `403 REQUEST_LIMIT_EXCEEDED` (`ConcurrentPerOrgLongTxn`) rate.
    pub rate_limit: f64,
    /// Rate of calls whose session is revoked first (`401 INVALID_SESSION_ID`).
    pub rate_session_expiry: f64,
    /// Fail this many next calls with `503`.
    pub fail_next_503: u32,
    /// Fail this many next calls with `500`.
    pub fail_next_500: u32,
    /// Added latency per REST call, in milliseconds.
    pub latency_ms: u64,
    /// Cap on concurrent long-running calls (0 = no cap): a call arriving while
    /// this many calls have run for at least `long_running_ms` gets
    /// `403 REQUEST_LIMIT_EXCEEDED` (`ConcurrentPerOrgLongTxn`).
    pub max_long_running: u32,
    /// Age in milliseconds from which an in-flight call counts as long-running
    /// (Salesforce: 20 s).
    pub long_running_ms: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            org_id: "00Dxx0000001gPL".into(),
            username: "fieldpulse@example.com".into(),
            consumer_key: "fieldpulse-emulator-consumer-key".into(),
            consumer_secret: None,
            jwt_certificate_pem: None,
            audiences: vec![
                "https://login.salesforce.com".into(),
                "https://test.salesforce.com".into(),
            ],
            max_jwt_lifetime: Duration::from_secs(210),
            session_lifetime: Duration::from_secs(2 * 3600),
            daily_api_limit: 100_000,
            locator_idle_timeout: Duration::from_secs(15 * 60),
            bulk_polls_before_complete: 1,
            max_body_bytes: 50 * 1024 * 1024,
            admin_on_non_loopback: false,
            faults: FaultConfig::default(),
        }
    }
}

/// Durations as humantime strings (`"2h"`, `"15m"`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs_f64()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "bad duration {text:?}: use e.g. \"90s\", \"15m\", \"2h\""
            ))
        })
    }

    fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, unit) = text.split_at(split);
        let n: f64 = num.parse().ok()?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            _ => return None,
        };
        Some(Duration::from_secs_f64(secs))
    }
}
