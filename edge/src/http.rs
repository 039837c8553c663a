//! The operations endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`.
//!
//! `/healthz` answers 200 `ok` or 503 with the failing rules, one per line:
//! - `no_data`: connected to the broker, data is expected (`health.expect_data_within` > 0) and
//!   no message arrived for that long (since the last message, or since the agent started);
//! - `spool_near_cap`: the spool and the dead-letter directory (which counts against the spool's
//!   cap) hold more than `health.spool_high_watermark` of the cap.
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
use crate::metrics::{MetricsHandle, MetricsSnapshot};

/// Result of the health rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The failing rules (empty when healthy).
    pub failing: Vec<&'static str>,
}

impl Health {
    /// True when no rule fails.
    pub fn is_healthy(&self) -> bool {
        self.failing.is_empty()
    }
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
        if snapshot.mqtt_connected
            && silent_ms > i64::try_from(expect.as_millis()).unwrap_or(i64::MAX)
        {
            failing.push("no_data");
        }
    }
    if snapshot.spool_max_bytes > 0
        && (snapshot.spool_bytes + snapshot.dead_letter_bytes) as f64
            > cfg.spool_high_watermark * snapshot.spool_max_bytes as f64
    {
        failing.push("spool_near_cap");
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
    if health.is_healthy() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", health.failing.join("\n")),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            expect_data_within: Some(Duration::from_secs(60)),
            spool_high_watermark: 0.9,
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
            evaluate(&snapshot, &cfg(), 0, 61_001).failing,
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
            evaluate(&snapshot, &cfg(), 0, 0).failing,
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
            evaluate(&snapshot, &cfg(), 0, 0).failing,
            vec!["spool_near_cap"]
        );
    }
}
