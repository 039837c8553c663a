//! Sensors that publish at QoS 0 (delivered at QoS 0 despite the edge's QoS 1 subscription): their
//! messages are spooled and forwarded like the rest, and never hold QoS 1 readings back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_edge::MetricsHandle;

use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{start_agent, wait_until, Running};

/// Readings at the receiver as a multiset of (asset, sensor, value).
fn received_counts(receiver: &Receiver) -> HashMap<(String, String, u64), usize> {
    receiver.with(|got| {
        let mut counts = HashMap::new();
        for r in &got.readings {
            *counts
                .entry((r.asset.clone(), r.sensor.clone(), r.value.to_bits()))
                .or_insert(0) += 1;
        }
        counts
    })
}

/// Waits until `n` readings are at the receiver; on timeout says how many are and how many
/// the PUBACK gate holds back.
async fn wait_readings(receiver: &Receiver, metrics: &MetricsHandle, n: usize, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while receiver.n_readings() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "after {timeout:?}: {} of {n} readings at the receiver, {} records held back by the PUBACK gate",
            receiver.n_readings(),
            metrics.snapshot().gate_held_records
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_connected(metrics: &MetricsHandle) {
    wait_until(
        "the edge subscribed to the broker",
        Duration::from_secs(10),
        || metrics.snapshot().mqtt_connected,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_qos0_message_does_not_hold_back_the_qos1_readings_after_it() {
    const N: usize = 2000;
    let Running {
        _dir,
        broker: _broker,
        receiver,
        metrics,
        shutdown,
        run,
        publisher,
    } = start_agent("publisher-qos0-then-qos1", |_| {}).await;
    // QoS 0 messages are not queued for an offline session: publish once the edge subscribed.
    wait_connected(&metrics).await;

    let topic = "plant/s1/pump-q/temp";
    let base_ts = fieldpulse_edge::clock::now_ms() - 60_000;
    publisher
        .publish_qos0(
            topic,
            format!("{{\"ts\":{base_ts},\"value\":-1}}").into_bytes(),
        )
        .await;
    for i in 0..N {
        let payload = format!("{{\"ts\":{},\"value\":{i}}}", base_ts + 1 + i as i64);
        publisher.publish(topic, payload.into_bytes()).await;
    }
    publisher.wait_acked(N, Duration::from_secs(30)).await;
    // Without QoS 0 in the mix every reading arrives within a second; the deadline is generous.
    wait_readings(&receiver, &metrics, N + 1, Duration::from_secs(20)).await;
    wait_until(
        "the PUBACK gate holding nothing back",
        Duration::from_secs(10),
        || metrics.snapshot().gate_held_records == 0,
    )
    .await;

    let mut expected = HashMap::new();
    for value in std::iter::once(-1.0f64).chain((0..N).map(|i| i as f64)) {
        expected.insert(
            ("pump-q".to_string(), "temp".to_string(), value.to_bits()),
            1,
        );
    }
    assert_eq!(received_counts(&receiver), expected, "every reading once");
    shutdown.cancel();
    run.await.unwrap().unwrap();
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_and_qos1_publishers_with_repeated_payloads_deliver_every_reading_once() {
    // Per publisher: PER readings over TOPICS topics, as bare numbers (receive-time stamped:
    // both publishers send the very same payloads on the same topics, and each copy is a new
    // reading) and JSON with a device timestamp of its own (the same topic, timestamp and value
    // would be the same reading, delivered once: see `duplicates.rs`).
    const PER: usize = 1500;
    const TOPICS: usize = 6;
    let Running {
        _dir,
        broker,
        receiver,
        metrics,
        shutdown,
        run,
        publisher: qos1,
    } = start_agent("publisher-mixed-qos1", |_| {}).await;
    // QoS 0 messages are not queued for an offline session: publish once the edge subscribed.
    wait_connected(&metrics).await;

    let base_ts = fieldpulse_edge::clock::now_ms() - 60_000;
    // The i-th message of publisher `p`: topic, payload and the reading it carries.
    let message = move |p: usize, i: usize| {
        let asset = format!("pump-{}", i % TOPICS);
        let topic = format!("plant/s1/{asset}/temp");
        // Values repeat every 7 messages: identical payloads on a topic, within and across
        // publishers.
        let value = (i % 7) as f64;
        let payload = if i.is_multiple_of(2) {
            format!("{value}")
        } else {
            format!(
                "{{\"ts\":{},\"value\":{value}}}",
                base_ts + (2 * i + p) as i64
            )
        };
        (
            topic,
            payload.into_bytes(),
            (asset, "temp".to_string(), value.to_bits()),
        )
    };
    let qos0 = Arc::new(Publisher::connect(broker.port(), "publisher-mixed-qos0"));
    let qos1 = Arc::new(qos1);
    let sending0 = {
        let qos0 = Arc::clone(&qos0);
        tokio::spawn(async move {
            for i in 0..PER {
                let (topic, payload, _) = message(0, i);
                qos0.publish_qos0(&topic, payload).await;
            }
        })
    };
    let sending1 = {
        let qos1 = Arc::clone(&qos1);
        tokio::spawn(async move {
            for i in 0..PER {
                let (topic, payload, _) = message(1, i);
                qos1.publish(&topic, payload).await;
            }
        })
    };
    sending0.await.unwrap();
    sending1.await.unwrap();
    qos1.wait_acked(PER, Duration::from_secs(30)).await;

    let mut expected: HashMap<(String, String, u64), usize> = HashMap::new();
    for i in 0..PER {
        for p in 0..2 {
            *expected.entry(message(p, i).2).or_insert(0) += 1;
        }
    }
    wait_readings(&receiver, &metrics, 2 * PER, Duration::from_secs(20)).await;
    wait_until(
        "the PUBACK gate holding nothing back",
        Duration::from_secs(10),
        || metrics.snapshot().gate_held_records == 0,
    )
    .await;
    assert_eq!(received_counts(&receiver), expected, "every reading once");
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.messages_duplicate, 0,
        "a repeated payload is not a redelivery: {snapshot:?}"
    );
    // The forwarder counts a batch after the receiver answered it.
    wait_until(
        "the edge counted every reading forwarded",
        Duration::from_secs(10),
        || metrics.snapshot().readings_forwarded == 2 * PER as u64,
    )
    .await;
    receiver.with(|got| assert_eq!(got.duplicate_mismatches, 0));
    shutdown.cancel();
    run.await.unwrap().unwrap();
    for publisher in [qos0, qos1] {
        if let Ok(publisher) = Arc::try_unwrap(publisher) {
            publisher.close().await;
        }
    }
}
