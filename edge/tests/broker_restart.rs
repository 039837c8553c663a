//! A broker restart mid-stream: the edge reconnects, resubscribes and continues; the broker
//! resumes the session and redelivers, and no PUBACK of the old connection reaches the new one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_edge::Agent;
use tempfile::tempdir;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::proxy::MqttProxy;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_edge_resubscribes_and_every_acknowledged_publish_arrives() {
    const N: usize = 20_000;
    let dir = tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), true);
    let receiver = Receiver::start().await;
    // The edge connects through a proxy that checks every PUBACK against the PUBLISHes of its
    // own connection.
    let proxy = MqttProxy::start(broker.port()).await;
    let config = EdgeOptions::new(proxy.port(), &receiver.url()).config(dir.path());
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    let agent = Agent::start(config).await.unwrap();
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));

    let publisher = Arc::new(Publisher::connect(broker.port(), "publisher-restart"));
    let publishing = {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            for i in 0..N {
                publisher
                    .publish(
                        &format!("plant/s1/asset-{}/temp", i % 50),
                        i.to_string().into_bytes(),
                    )
                    .await;
            }
        })
    };
    publisher.wait_acked(N / 4, Duration::from_secs(30)).await;
    broker.restart();
    publishing.await.unwrap();
    // Publishes queued in the publisher's client or in flight when the broker went down (at most
    // its request channel of 1000 plus its in-flight window of 500) may be dropped without a
    // PUBACK when the broker does not resume its session; everything acknowledged must arrive.
    wait_until("the publisher settled", Duration::from_secs(40), || {
        publisher.settled() && publisher.n_acked() >= N - 1500
    })
    .await;
    let acked: HashSet<u64> = publisher
        .acked()
        .iter()
        .enumerate()
        .filter(|(_, acked)| **acked)
        .map(|(i, _)| i as u64)
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let missing: Vec<u64> = receiver.with(|got| {
            let values: HashSet<u64> = got.readings.iter().map(|r| r.value as u64).collect();
            let mut missing: Vec<u64> = acked.difference(&values).copied().collect();
            missing.sort_unstable();
            missing
        });
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} acknowledged publishes never arrived (first {:?}); edge {:?}; broker dir {:?}",
            missing.len(),
            &missing[..missing.len().min(10)],
            metrics.snapshot(),
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = metrics.snapshot();
    assert!(
        snapshot.mqtt_connects >= 2,
        "reconnected after the restart: {snapshot:?}"
    );
    assert!(snapshot.mqtt_connected, "subscribed again");
    assert_eq!(
        snapshot.mqtt_sessions_lost, 0,
        "the broker kept the session"
    );
    let connections = proxy.connections();
    assert!(connections.len() >= 2, "{connections:?}");
    for (idx, conn) in connections.iter().enumerate() {
        assert!(
            conn.stray_acks.is_empty(),
            "connection {idx} carried {} PUBACKs for packet ids it did not deliver (or acked \
             twice), first {:?}; {} PUBLISHes, {} PUBACKs",
            conn.stray_acks.len(),
            &conn.stray_acks[..conn.stray_acks.len().min(10)],
            conn.publishes,
            conn.pubacks
        );
    }
    receiver.with(|got| {
        let values: HashSet<u64> = got.readings.iter().map(|r| r.value as u64).collect();
        assert!(acked.is_subset(&values), "no acknowledged publish lost");
        assert_eq!(got.duplicate_mismatches, 0);
    });
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
