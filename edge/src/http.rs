//! The operations endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`.
//!
//! `/healthz` answers 200 or 503 with a JSON body naming the failing rules:
//! `{"status":"ok","failing":[]}` or
//! `{"status":"degraded","failing":[{"rule":"forward_stalled","detail":"..."}]}`. The rules:
//! - `no_data`: connected to the broker, data is expected (`health.expect_data_within` > 0) and
//!   no message arrived for that long (since the last message, or since the agent started);
//! - `spool_near_cap`: the spool and the dead-letter directory (which counts against the spool's
//!   cap) hold more than `health.spool_high_watermark` of the cap;
//! - `spool_write_blocked`: the spool cannot be written (detail: the reason, `no_space` for a
//!   full filesystem); intake refuses MQTT messages, which the broker keeps;
//! - `forward_stalled`: records wait in the spool (the oldest for longer than
//!   `health.forward_stall_after`) and the cloud acknowledged nothing for as long (since the
//!   last acknowledged batch, or since the agent started). A long backlog that drains is not a
//!   stall; an uplink or cloud that takes nothing is, long before the spool fills.
//!
//! [`serve`] takes a bound listener and a shutdown token, so tests bind port 0.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::metrics::{age_seconds, MetricsHandle, MetricsSnapshot, WriteBlockReason};

/// One failing health rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// The rule (`no_data`, `spool_near_cap`, `spool_write_blocked`, `forward_stalled`).
    pub rule: &'static str,
    /// What the operator needs to know, in a few words.
    pub detail: String,
}

/// Result of the health rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The failing rules (empty when healthy).
    pub failing: Vec<Failing>,
}

impl Health {
    /// True when no rule fails.
    pub fn is_healthy(&self) -> bool {
        self.failing.is_empty()
    }

    /// The names of the failing rules.
    pub fn rules(&self) -> Vec<&'static str> {
        self.failing.iter().map(|failing| failing.rule).collect()
    }

    /// The JSON body of `/healthz`.
    pub fn to_json(&self) -> String {
        let failing: Vec<serde_json::Value> = self
            .failing
            .iter()
            .map(|failing| serde_json::json!({"rule": failing.rule, "detail": failing.detail}))
            .collect();
        let status = if self.is_healthy() { "ok" } else { "degraded" };
        serde_json::json!({"status": status, "failing": failing}).to_string()
    }
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Evaluates the health rules at `now_ms`; `started_ms` is when the agent started.
pub fn evaluate(
    snapshot: &MetricsSnapshot,
    cfg: &HealthConfig,
    started_ms: i64,
    now_ms: i64,
) -> Health {
    let mut failing = Vec::new();
    if let Some(expect) = cfg.expect_data_within {
        let last = snapshot.last_message_ms.max(started_ms);
        let silent_ms = now_ms.saturating_sub(last);
        if snapshot.mqtt_connected && silent_ms > millis(expect) {
            failing.push(Failing {
                rule: "no_data",
                detail: format!("no MQTT message for {}s", silent_ms / 1000),
            });
        }
    }
    if snapshot.spool_max_bytes > 0
        && (snapshot.spool_bytes + snapshot.dead_letter_bytes) as f64
            > cfg.spool_high_watermark * snapshot.spool_max_bytes as f64
    {
        failing.push(Failing {
            rule: "spool_near_cap",
            detail: format!(
                "spool holds {} of {} bytes",
                snapshot.spool_bytes, snapshot.spool_max_bytes
            ),
        });
    }
    if snapshot.spool_write_blocked {
        let free = snapshot
            .spool_fs_free_bytes
            .map_or_else(|| "unknown".to_string(), |free| free.to_string());
        failing.push(Failing {
            rule: "spool_write_blocked",
            detail: format!(
                "{}: the spool's filesystem is full ({free} bytes free); MQTT messages are left \
                 with the broker until space returns",
                WriteBlockReason::NoSpace.as_str()
            ),
        });
    }
    if let Some(stall) = cfg.forward_stall_after {
        let waiting_ms = if snapshot.oldest_unforwarded_ms > 0 {
            now_ms.saturating_sub(snapshot.oldest_unforwarded_ms)
        } else {
            0
        };
        let idle_ms = now_ms.saturating_sub(snapshot.last_forward_ms.max(started_ms));
        if waiting_ms > millis(stall) && idle_ms > millis(stall) {
            let since = if snapshot.last_forward_ms > 0 {
                format!(
                    "{}s since the last acknowledged batch",
                    age_seconds(snapshot.last_forward_ms, now_ms)
                )
            } else {
                "no batch acknowledged since start".to_string()
            };
            failing.push(Failing {
                rule: "forward_stalled",
                detail: format!(
                    "oldest unforwarded reading waits {}s; {since}; {} send failures",
                    waiting_ms / 1000,
                    snapshot.send_failures
                ),
            });
        }
    }
    Health { failing }
}

#[derive(Clone)]
struct AppState {
    metrics: MetricsHandle,
    health: HealthConfig,
    started_ms: i64,
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// The IO error of the server loop.
pub async fn serve(
    listener: TcpListener,
    metrics: MetricsHandle,
    health: HealthConfig,
    started_ms: i64,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .with_state(AppState {
            metrics,
            health,
            started_ms,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render_prometheus(),
    )
}

async fn health_handler(State(state): State<AppState>) -> impl IntoResponse {
    let health = evaluate(
        &state.metrics.snapshot(),
        &state.health,
        state.started_ms,
        crate::clock::now_ms(),
    );
    let status = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{}\n", health.to_json()),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            expect_data_within: Some(Duration::from_secs(60)),
            spool_high_watermark: 0.9,
            forward_stall_after: Some(Duration::from_secs(120)),
        }
    }

    #[test]
    fn silence_while_connected_is_unhealthy_only_after_the_expectation() {
        let mut snapshot = MetricsSnapshot {
            mqtt_connected: true,
            last_message_ms: 1_000,
            ..Default::default()
        };
        assert!(evaluate(&snapshot, &cfg(), 0, 61_000).is_healthy());
        assert_eq!(
            evaluate(&snapshot, &cfg(), 0, 61_001).rules(),
            vec!["no_data"]
        );
        snapshot.mqtt_connected = false;
        assert!(evaluate(&snapshot, &cfg(), 0, 100_000).is_healthy());
        let relaxed = HealthConfig {
            expect_data_within: None,
            ..cfg()
        };
        snapshot.mqtt_connected = true;
        assert!(evaluate(&snapshot, &relaxed, 0, 100_000).is_healthy());
    }

    #[test]
    fn a_spool_near_its_cap_is_unhealthy() {
        let snapshot = MetricsSnapshot {
            spool_bytes: 91,
            spool_max_bytes: 100,
            ..Default::default()
        };
        assert_eq!(
            evaluate(&snapshot, &cfg(), 0, 0).rules(),
            vec!["spool_near_cap"]
        );
        let snapshot = MetricsSnapshot {
            spool_bytes: 90,
            spool_max_bytes: 100,
            ..Default::default()
        };
        assert!(evaluate(&snapshot, &cfg(), 0, 0).is_healthy());
        // Dead letters count against the cap.
        let snapshot = MetricsSnapshot {
            dead_letter_bytes: 1,
            ..snapshot
        };
        assert_eq!(
            evaluate(&snapshot, &cfg(), 0, 0).rules(),
            vec!["spool_near_cap"]
        );
    }

    #[test]
    fn waiting_records_with_no_forward_for_the_stall_time_are_a_stall() {
        let minute = 60_000;
        let mut snapshot = MetricsSnapshot {
            oldest_unforwarded_ms: 10 * minute,
            last_forward_ms: 9 * minute,
            ..Default::default()
        };
        // Two minutes: the oldest record waited 2 min, the last forward 3 min ago.
        assert!(evaluate(&snapshot, &cfg(), 0, 12 * minute).is_healthy());
        let health = evaluate(&snapshot, &cfg(), 0, 12 * minute + 1);
        assert_eq!(health.rules(), vec!["forward_stalled"]);
        assert!(health.to_json().contains("\"status\":\"degraded\""));
        // A backlog that drains (recent forwards) is not a stall, however old its records.
        snapshot.last_forward_ms = 12 * minute;
        assert!(evaluate(&snapshot, &cfg(), 0, 12 * minute + 1).is_healthy());
        // Nothing waiting: no stall, however long ago the last forward was.
        snapshot.oldest_unforwarded_ms = 0;
        assert!(evaluate(&snapshot, &cfg(), 0, 60 * minute).is_healthy());
        // Never forwarded: counted from the start.
        snapshot.oldest_unforwarded_ms = minute;
        snapshot.last_forward_ms = 0;
        assert!(evaluate(&snapshot, &cfg(), 2 * minute, 4 * minute).is_healthy());
        assert_eq!(
            evaluate(&snapshot, &cfg(), 2 * minute, 4 * minute + 1).rules(),
            vec!["forward_stalled"]
        );
        let off = HealthConfig {
            forward_stall_after: None,
            ..cfg()
        };
        assert!(evaluate(&snapshot, &off, 0, 60 * minute).is_healthy());
    }

    #[test]
    fn blocked_spool_writes_are_unhealthy_with_the_reason() {
        let snapshot = MetricsSnapshot {
            spool_write_blocked: true,
            spool_fs_free_bytes: Some(0),
            ..Default::default()
        };
        let health = evaluate(&snapshot, &cfg(), 0, 0);
        assert_eq!(health.rules(), vec!["spool_write_blocked"]);
        let json: serde_json::Value = serde_json::from_str(&health.to_json()).unwrap();
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["failing"][0]["rule"], "spool_write_blocked");
        assert!(json["failing"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("no_space"));
    }
}
