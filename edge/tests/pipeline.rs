//! The happy path at volume: every reading exactly once, in order per stream.

use std::collections::HashMap;
use std::time::Duration;

use fieldpulse_edge::Agent;
use tempfile::tempdir;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_readings_across_a_thousand_topics_arrive_exactly_once_in_order() {
    const N: usize = 100_000;
    const TOPICS: usize = 1000;
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let receiver = Receiver::start().await;
    let config = EdgeOptions::new(broker.port(), &receiver.url()).config(dir.path());
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    let agent = Agent::start(config).await.unwrap();
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));

    let publisher = Publisher::connect(broker.port(), "publisher-pipeline");
    let base_ts = fieldpulse_edge::clock::now_ms() - 3_600_000;
    for i in 0..N {
        let (topic_idx, k) = (i % TOPICS, i / TOPICS);
        let topic = format!("plant/s1/asset-{}/s{}", topic_idx / 10, topic_idx % 10);
        let payload = format!("{{\"ts\":{},\"value\":{k}}}", base_ts + k as i64);
        publisher.publish(&topic, payload.into_bytes()).await;
    }
    publisher.wait_acked(N, Duration::from_secs(60)).await;
    wait_until(
        "all readings at the receiver",
        Duration::from_secs(60),
        || receiver.n_readings() >= N,
    )
    .await;
    shutdown.cancel();
    let summary = run.await.unwrap().unwrap();
    publisher.close().await;

    receiver.with(|got| {
        assert_eq!(got.readings.len(), N, "exactly once: no reading twice");
        assert_eq!(got.duplicate_mismatches, 0);
        assert!(got.bad_requests.is_empty(), "{:?}", got.bad_requests);
        let mut streams: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
        for reading in &got.readings {
            streams
                .entry((&reading.asset, &reading.sensor))
                .or_default()
                .push(reading.value);
            assert!(!reading.historical, "no outage, so nothing is backfill");
        }
        assert_eq!(streams.len(), TOPICS);
        let expected: Vec<f64> = (0..N / TOPICS).map(|k| k as f64).collect();
        for (stream, values) in streams {
            assert_eq!(values, expected, "stream {stream:?} in order, complete");
        }
    });
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.readings_spooled, N as u64);
    assert_eq!(snapshot.readings_forwarded, N as u64);
    assert_eq!(snapshot.rejected.total(), 0);
    assert_eq!(snapshot.dropped_total(), 0);
    assert_eq!(summary.metrics.readings_forwarded, N as u64);
    assert!(summary.finished_in_grace);
}
