//! A corpus of malformed payloads through the real broker: every one is a counted rejection (by
//! reason, in the quarantine file, on `/metrics`), nothing panics, and valid data keeps flowing.

use std::time::Duration;

use fieldpulse_edge::reject::RejectReason;
use fieldpulse_edge::Agent;
use fieldpulse_proto::v1::{Reading, ReadingBatch};
use prost::Message;
use tempfile::tempdir;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::EdgeOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_counted_rejections_and_valid_data_keeps_flowing() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    options.http_listen = Some("127.0.0.1:0".into());
    let quarantine = dir.path().join("quarantine.jsonl");
    options.extra = format!(
        "[validation]\nquarantine_file = \"{}\"\nmax_json_depth = 8\n\n[validation.ranges]\ntemp = {{ min = -50.0, max = 250.0 }}\n",
        quarantine.display()
    );
    let config = options.config(dir.path());
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    let agent = Agent::start(config).await.unwrap();
    let http_addr = agent.http_addr().expect("metrics endpoint bound");
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));

    let now = fieldpulse_edge::clock::now_ms();
    let protobuf = ReadingBatch {
        readings: vec![Reading {
            asset_id: "pump-1".into(),
            sensor: "temp".into(),
            ts_ms: now,
            value: 1.0,
        }],
    }
    .encode_to_vec();
    let temp = "plant/s1/pump-1/temp";
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        (temp, protobuf[..protobuf.len() - 3].to_vec()),
        (temp, b"{\"value\": \"\xff\xfe\"}".to_vec()),
        (temp, vec![0xff, 0xfe, 0xfd]),
        (temp, b"1e400".to_vec()),
        (temp, b"NaN".to_vec()),
        (temp, b"{\"value\": 1e300}".to_vec()),
        (temp, "[".repeat(100_000).into_bytes()),
        (temp, vec![b'x'; 10_000_000]),
        (temp, b"{\"value\": \"hot\"}".to_vec()),
        (
            temp,
            format!("{{\"ts\": {}, \"value\": 1}}", now - 2 * 86_400_000).into_bytes(),
        ),
        (
            temp,
            format!("{{\"ts\": {}, \"value\": 1}}", now + 3_600_000).into_bytes(),
        ),
        (temp, Vec::new()),
        (
            "sensors/pump-1",
            b"{\"temp\": 20, \"mode\": \"auto\"}".to_vec(),
        ),
        ("sensors/pump-1", b"17.5".to_vec()),
        (temp, b"42.5".to_vec()),
    ];
    let n_messages = corpus.len() as u64;
    let publisher = Publisher::connect(broker.port(), "publisher-malformed");
    for (topic, payload) in corpus {
        publisher.publish(topic, payload).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !receiver.with(|got| got.readings.iter().any(|r| r.value == 42.5)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the valid reading after the corpus never arrived; metrics:\n{}",
            metrics.render_prometheus()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let snapshot = metrics.snapshot();
    let expected = [
        (RejectReason::BadProtobuf, 2),
        (RejectReason::BadUtf8, 1),
        (RejectReason::NonFinite, 2),
        (RejectReason::OutOfRange, 1),
        (RejectReason::TooDeep, 1),
        (RejectReason::TooLarge, 1),
        (RejectReason::WrongType, 2),
        (RejectReason::TooOld, 1),
        (RejectReason::TooFuture, 1),
        (RejectReason::Empty, 1),
        (RejectReason::NoSensor, 1),
    ];
    for (reason, n) in expected {
        assert_eq!(snapshot.rejected.get(reason), n, "{}", reason.as_str());
    }
    assert_eq!(snapshot.rejected.total(), 14);
    assert_eq!(snapshot.messages_received, n_messages);
    assert_eq!(snapshot.readings_spooled, 2, "pump-1 temp 20 and 42.5");
    receiver.with(|got| {
        let mut values: Vec<f64> = got.readings.iter().map(|r| r.value).collect();
        values.sort_by(f64::total_cmp);
        assert_eq!(values, vec![20.0, 42.5]);
    });

    let lines = std::fs::read_to_string(&quarantine).unwrap();
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        entries.len(),
        14,
        "one quarantine entry per message with a rejection"
    );
    let big = entries.iter().find(|e| e["reason"] == "too_large").unwrap();
    assert_eq!(big["payload_len"], 10_000_000);
    assert!(big["payload"].as_str().unwrap().len() <= 4096);

    // The receiver records a batch before it answers; the edge counts it forwarded on the answer.
    crate::support::wait_until("the batch acknowledged", Duration::from_secs(10), || {
        metrics.snapshot().readings_forwarded == 2
    })
    .await;
    let http = reqwest::Client::new();
    let text = http
        .get(format!("http://{http_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("fieldpulse_edge_readings_rejected_total{reason=\"too_deep\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("fieldpulse_edge_readings_spooled_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("fieldpulse_edge_readings_forwarded_total 2\n"),
        "{text}"
    );
    let health = http
        .get(format!("http://{http_addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    shutdown.cancel();
    let summary = run.await.unwrap().expect("the agent survived the corpus");
    assert!(summary.finished_in_grace);
    publisher.close().await;
}
