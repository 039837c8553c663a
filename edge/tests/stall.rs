//! The operator's view of a stall: a cloud that takes nothing must turn `/healthz` red (with the
//! reason, as JSON) after `health.forward_stall_after`, long before the spool fills, and the
//! gauges must show how old the waiting data is and how long ago anything was forwarded.
//!
//! See: issue #12 ("What an operator needs").

use std::time::Duration;

use fieldpulse_edge::Agent;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

/// The value of the unlabelled series `name` in a Prometheus text.
fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        .parse()
        .unwrap_or_else(|err| panic!("{name}: {err}"))
}

async fn get(url: String) -> (u16, String) {
    let res = reqwest::get(url).await.expect("GET");
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_that_takes_nothing_turns_healthz_red_after_the_stall_time() {
    // See: issue #12
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let receiver = Receiver::start().await;
    receiver.set_unavailable(true);
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    options.http_listen = Some("127.0.0.1:0".into());
    options.extra = "[health]\nforward_stall_after = \"1s\"\n".into();
    let config = options.config(dir.path());
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    let agent = Agent::start(config).await.expect("agent starts");
    let metrics = agent.metrics();
    let addr = agent.http_addr().expect("http enabled");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    let healthz = format!("http://{addr}/healthz");
    let metrics_url = format!("http://{addr}/metrics");

    let (status, body) = get(healthz.clone()).await;
    assert_eq!(status, 200, "nothing waits yet: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["status"], "ok");

    let publisher = Publisher::connect(broker.port(), "publisher-stall");
    let now = fieldpulse_edge::clock::now_ms();
    for i in 0..5 {
        let payload = format!("{{\"ts\":{},\"value\":{i}}}", now + i);
        publisher
            .publish("plant/s1/pump-1/temp", payload.into_bytes())
            .await;
    }
    wait_until("5 readings spooled", Duration::from_secs(20), || {
        metrics.snapshot().readings_spooled == 5
    })
    .await;

    // The cloud refuses every batch: after the stall time, /healthz says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get(healthz.clone()).await;
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stall reported: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["status"], "degraded", "{body}");
    assert_eq!(json["failing"][0]["rule"], "forward_stalled", "{body}");
    assert!(
        json["failing"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no batch acknowledged since start"),
        "{body}"
    );
    let (_, text) = get(metrics_url.clone()).await;
    assert!(gauge(&text, "fieldpulse_edge_oldest_unforwarded_age_seconds") >= 1);
    assert_eq!(
        gauge(&text, "fieldpulse_edge_seconds_since_last_forward"),
        -1
    );
    assert_eq!(gauge(&text, "fieldpulse_edge_last_forward_timestamp_ms"), 0);
    assert!(gauge(&text, "fieldpulse_edge_spool_fs_free_bytes") > 0);
    assert!(text.contains("fieldpulse_edge_spool_write_blocked{reason=\"no_space\"} 0\n"));
    assert!(metrics.snapshot().send_failures > 0);

    // The cloud takes batches again: forwarding resumes and the stall clears.
    receiver.set_unavailable(false);
    wait_until("5 readings forwarded", Duration::from_secs(20), || {
        receiver.n_readings() >= 5
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(healthz.clone()).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stall not cleared: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The watch refreshes every few seconds: wait for it to see the empty spool.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = get(metrics_url.clone()).await;
        if gauge(&text, "fieldpulse_edge_oldest_unforwarded_age_seconds") == 0 {
            assert!(gauge(&text, "fieldpulse_edge_seconds_since_last_forward") >= 0);
            assert!(gauge(&text, "fieldpulse_edge_last_forward_timestamp_ms") >= now);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "oldest unforwarded age never went back to 0:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    run.await.unwrap().expect("clean run");
    publisher.close().await;
}
