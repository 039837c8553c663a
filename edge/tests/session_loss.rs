//! The broker loses the edge's session (restarted without persistence) while acknowledgements of
//! the old connection are queued: none of them goes out on the new connection (where the broker
//! numbers its messages afresh, so a stale PUBACK could acknowledge a message the edge never
//! spooled), the loss is counted, and every reading the edge spooled still arrives.

use std::collections::HashMap;
use std::time::Duration;

use fieldpulse_edge::{Agent, MetricsHandle};
use tempfile::tempdir;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::proxy::MqttProxy;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

/// Waits until `n` readings are at the receiver.
async fn wait_readings(receiver: &Receiver, metrics: &MetricsHandle, n: usize) {
    let timeout = Duration::from_secs(30);
    let deadline = std::time::Instant::now() + timeout;
    while receiver.n_readings() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "after {timeout:?}: {} of {n} readings at the receiver; edge {:?}",
            receiver.n_readings(),
            metrics.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_broker_lost_the_session_no_ack_of_the_old_connection_goes_out_and_nothing_is_lost(
) {
    const BEFORE: usize = 200;
    const BURST: usize = 2000;
    const CUT_AFTER: usize = 500;
    const AFTER: usize = 300;
    let dir = tempdir().unwrap();
    // No persistence: a restart forgets every session.
    let mut broker = Broker::start(dir.path(), false);
    let proxy = MqttProxy::start(broker.port()).await;
    let receiver = Receiver::start().await;
    let config = EdgeOptions::new(proxy.port(), &receiver.url()).config(dir.path());
    let agent = Agent::start(config).await.unwrap();
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    wait_until("the edge subscribed", Duration::from_secs(10), || {
        metrics.snapshot().mqtt_connected
    })
    .await;

    let publisher = Publisher::connect(broker.port(), "publisher-session-loss");
    let topic = "plant/s1/pump-1/temp";
    let base_ts = fieldpulse_edge::clock::now_ms() - 60_000;
    let payload = |value: usize| {
        format!("{{\"ts\":{},\"value\":{value}}}", base_ts + value as i64).into_bytes()
    };
    // 1. Normal flow.
    for value in 0..BEFORE {
        publisher.publish(topic, payload(value)).await;
    }
    wait_readings(&receiver, &metrics, BEFORE).await;

    // 2. The connection drops right after the 500th message of a burst reached the edge: the
    // edge spools those 500, and their acks have no connection to go out on.
    proxy.cut_after_publishes(CUT_AFTER as u64);
    for value in BEFORE..BEFORE + BURST {
        publisher.publish(topic, payload(value)).await;
    }
    publisher
        .wait_acked(BEFORE + BURST, Duration::from_secs(30))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = metrics.snapshot();
        if proxy.cuts() == 1 && !s.mqtt_connected && s.mqtt_acks_waiting == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edge did not notice the cut after {CUT_AFTER} PUBLISHes: {} cuts, edge {s:?}",
            proxy.cuts(),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 3. The broker restarts without persistence; the edge reconnects to a broker that does not
    // know its session.
    broker.restart();
    proxy.pass();
    wait_until(
        "the edge reconnected and subscribed",
        Duration::from_secs(20),
        || {
            let s = metrics.snapshot();
            s.mqtt_connects >= 2 && s.mqtt_connected
        },
    )
    .await;

    // 4. New messages on the new session.
    for value in 10_000..10_000 + AFTER {
        publisher.publish(topic, payload(value)).await;
    }
    wait_readings(&receiver, &metrics, BEFORE + CUT_AFTER + AFTER).await;
    wait_until(
        "the PUBACK gate holds nothing back",
        Duration::from_secs(10),
        || metrics.snapshot().gate_held_records == 0,
    )
    .await;

    let connections = proxy.connections();
    let last = connections.last().expect("connections seen");
    assert!(connections.len() >= 2, "{connections:?}");
    assert_eq!(
        last.session_present,
        Some(false),
        "the restarted broker lost the session: {connections:?}"
    );
    for (idx, conn) in connections.iter().enumerate() {
        assert!(
            conn.stray_acks.is_empty(),
            "connection {idx} carried {} PUBACKs for packet ids it never delivered \
             (stale acks of an earlier connection), first {:?}; {} PUBLISHes, {} PUBACKs",
            conn.stray_acks.len(),
            &conn.stray_acks[..conn.stray_acks.len().min(10)],
            conn.publishes,
            conn.pubacks
        );
    }
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.mqtt_sessions_lost, 1, "{snapshot:?}");

    // Every spooled reading once: the first 500 of the burst (the broker delivers in order) and
    // everything after the reconnect; the rest of the burst went with the lost session.
    let values: HashMap<u64, usize> = receiver.with(|got| {
        let mut counts = HashMap::new();
        for r in &got.readings {
            *counts.entry(r.value as u64).or_insert(0) += 1;
        }
        counts
    });
    let expected: HashMap<u64, usize> = (0..BEFORE + CUT_AFTER)
        .chain(10_000..10_000 + AFTER)
        .map(|v| (v as u64, 1))
        .collect();
    assert_eq!(values, expected, "every spooled reading once");
    shutdown.cancel();
    run.await.unwrap().unwrap();
    publisher.close().await;
}
