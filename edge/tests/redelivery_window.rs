//! Issue #12 item 3: a `DUP` delivery is acknowledged without spooling only when it certainly
//! repeats a spooled message. A scripted broker controls packet ids, `DUP` flags, connection drops
//! and session presence; the payloads carry no timestamps (`1`), so identical payloads are
//! different readings and only the redelivery window can tell them apart.

use std::time::Duration;

use crate::support::receiver::Receiver;
use crate::support::script_broker::{ScriptBroker, Sent};
use crate::support::{wait_until, EdgeOptions};

const TOPIC: &str = "plant/s1/pump-1/state";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dup_deliveries_count_as_redeliveries_only_within_the_session_window() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ScriptBroker::start().await;
    let receiver = Receiver::start().await;
    let options = EdgeOptions::new(broker.port(), &receiver.url());
    // A 1 s keep-alive: PINGRESPs confirm PUBACKs quickly.
    let toml = options
        .to_toml(dir.path())
        .replace("keep_alive = \"10s\"", "keep_alive = \"1s\"");
    let config = fieldpulse_edge::EdgeConfig::from_toml_str(&toml, "test.toml").unwrap();
    let agent = fieldpulse_edge::Agent::start(config).await.unwrap();
    let metrics = agent.metrics();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    broker.wait_subscribed(1).await;

    // 1. A message, acknowledged, and the PUBACK confirmed by a PINGRESP.
    broker.publish(TOPIC, b"1", 7, false).await;
    broker.wait_puback(7, 1).await;
    broker.wait_pings_after_puback(7, 2).await;
    // 2. The broker reuses packet id 7 for a new message with the same payload, flagged DUP (a
    //    re-send of a first attempt that never reached the edge). It is new: spool it.
    broker.publish(TOPIC, b"1", 7, true).await;
    broker.wait_puback(7, 2).await;

    // 3. A genuine redelivery: the PUBACK left, but the connection dropped before any ping could
    //    confirm it; the broker resumes the session and re-sends with DUP. Spooled once only.
    broker.publish(TOPIC, b"2", 9, false).await;
    broker.wait_puback(9, 1).await;
    broker.set_session_present(true);
    broker.drop_connection().await;
    broker.wait_subscribed(2).await;
    broker.publish(TOPIC, b"2", 9, true).await;
    broker.wait_puback(9, 2).await;

    // 4. That ack is confirmed on connection 2; then, after another reconnect, packet id 9
    //    returns with DUP and the same payload: a new message (the old one cannot come back).
    broker.wait_pings_after_puback(9, 2).await;
    broker.drop_connection().await;
    broker.wait_subscribed(3).await;
    broker.publish(TOPIC, b"2", 9, true).await;
    broker.wait_puback(9, 3).await;

    // 5. An unconfirmed message, then a reconnect where the broker lost the session: nothing can
    //    be a redelivery, so a DUP copy is a new message.
    broker.publish(TOPIC, b"3", 11, false).await;
    broker.wait_puback(11, 1).await;
    broker.set_session_present(false);
    broker.drop_connection().await;
    broker.wait_subscribed(4).await;
    broker.publish(TOPIC, b"3", 11, true).await;
    broker.wait_puback(11, 2).await;

    wait_until("every reading forwarded", Duration::from_secs(20), || {
        receiver.n_readings() >= 6
    })
    .await;
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.messages_duplicate, 1,
        "only step 3's re-send is a redelivery: {snapshot:?}"
    );
    assert_eq!(snapshot.mqtt_sessions_lost, 1);
    receiver.with(|got| {
        let mut values: Vec<u64> = got.readings.iter().map(|r| r.value as u64).collect();
        values.sort_unstable();
        assert_eq!(values, vec![1, 1, 2, 2, 3, 3], "{:?}", got.readings);
    });
    assert!(broker
        .log()
        .iter()
        .any(|(conn, sent)| *conn == 4 && *sent == Sent::Connect));
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
