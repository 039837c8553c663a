//! A full filesystem under the spool (not the spool's own cap): the agent must degrade, not exit
//! (and so crash-loop under systemd). It forwards what is spooled, leaves new messages with the
//! broker (no PUBACK), says so on `/healthz` and in its metrics, and takes messages again by
//! itself when space returns. The full disk is injected through a file layer that answers
//! `ENOSPC`, switched at run time.
//!
//! See: issue #12 item 7.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_edge::spool::full_fs::FullFs;
use fieldpulse_edge::{Agent, MetricsHandle};
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

/// (asset, ts_ms, value) of every reading the receiver committed, counted.
fn received(receiver: &Receiver) -> BTreeMap<(String, i64, u64), u32> {
    receiver.with(|inner| {
        let mut counts = BTreeMap::new();
        for got in &inner.readings {
            *counts
                .entry((got.asset.clone(), got.ts_ms, got.value.to_bits()))
                .or_default() += 1;
        }
        counts
    })
}

/// A timestamp base for this run's readings (recent: old readings are rejected as too old).
fn base_ts() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(fieldpulse_edge::clock::now_ms)
}

/// Publishes readings `range` (one QoS 1 message each) and notes them in `expected`.
async fn publish(
    publisher: &Publisher,
    range: std::ops::Range<usize>,
    expected: &mut BTreeMap<(String, i64, u64), u32>,
) {
    for i in range {
        let asset = format!("asset-{}", i % 5);
        let ts = base_ts() + i as i64;
        let payload = format!("{{\"ts\":{ts},\"value\":{i}}}");
        publisher
            .publish(&format!("plant/s1/{asset}/temp"), payload.into_bytes())
            .await;
        expected.insert((asset, ts, (i as f64).to_bits()), 1);
    }
}

/// `GET /healthz`: (status, body).
async fn healthz(addr: std::net::SocketAddr) -> (u16, String) {
    let res = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("GET /healthz");
    let status = res.status().as_u16();
    (status, res.text().await.expect("healthz body"))
}

struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    receiver: Receiver,
    options: EdgeOptions,
    disk: FullFs,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    options.full_policy = "backpressure";
    options.http_listen = Some("127.0.0.1:0".into());
    let config = options.config(dir.path());
    broker
        .prepare_session(&config.mqtt.client_id, &["plant/+/+/+", "sensors/+"])
        .await;
    Setup {
        dir,
        broker,
        receiver,
        options,
        disk: FullFs::default(),
    }
}

fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool")
}

async fn start(
    setup: &Setup,
) -> (
    MetricsHandle,
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<fieldpulse_edge::RunSummary, fieldpulse_edge::AgentError>>,
) {
    let config = setup.options.config(setup.dir.path());
    let agent = Agent::start_on(config, Arc::new(setup.disk.clone()))
        .await
        .expect("the agent starts (degraded if the disk is full)");
    let metrics = agent.metrics();
    let addr = agent.http_addr().expect("http enabled");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    (metrics, addr, shutdown, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_running_degrades_and_recovers_without_losing_a_reading() {
    // See: issue #12 item 7
    let setup = setup().await;
    let (metrics, addr, shutdown, run) = start(&setup).await;
    let publisher = Publisher::connect(setup.broker.port(), "publisher-disk-full");
    let mut expected = BTreeMap::new();

    // Readings spooled while the cloud is away: they wait in the spool.
    setup.receiver.set_unavailable(true);
    publish(&publisher, 0..40, &mut expected).await;
    wait_until("40 readings spooled", Duration::from_secs(20), || {
        metrics.snapshot().readings_spooled == 40
    })
    .await;

    // The disk fills up. New messages cannot be made durable: none is acknowledged.
    setup.disk.set_full(true);
    publish(&publisher, 40..70, &mut expected).await;
    wait_until(
        "the agent reports spool writes blocked",
        Duration::from_secs(20),
        || {
            assert!(!run.is_finished(), "the agent must not stop on a full disk");
            metrics.snapshot().spool_write_blocked
        },
    )
    .await;
    let (status, body) = healthz(addr).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"spool_write_blocked\"") && body.contains("no_space"),
        "{body}"
    );
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("fieldpulse_edge_spool_write_blocked{reason=\"no_space\"} 1\n"),
        "{text}"
    );

    // What is spooled is still forwarded (its acks free space).
    setup.receiver.set_unavailable(false);
    wait_until(
        "the spooled readings are forwarded while the disk is full",
        Duration::from_secs(20),
        || setup.receiver.n_readings() >= 40,
    )
    .await;
    let snapshot = metrics.snapshot();
    assert!(snapshot.spool_write_blocked, "still no space");
    assert_eq!(
        snapshot.readings_spooled, 40,
        "nothing was spooled while full"
    );
    // Every acknowledged message is settled (and counted) first: none of the 30 was.
    assert_eq!(
        snapshot.messages_received, 40,
        "nothing acknowledged while full"
    );
    assert!(snapshot.spool_write_errors >= 1);
    assert!(!run.is_finished(), "the agent keeps running");

    // Space returns: the agent takes messages again by itself; nothing is lost or doubled.
    setup.disk.set_full(false);
    publish(&publisher, 70..80, &mut expected).await;
    wait_until("every reading arrives", Duration::from_secs(60), || {
        setup.receiver.n_readings() >= 80
    })
    .await;
    wait_until("spool writes unblocked", Duration::from_secs(10), || {
        !metrics.snapshot().spool_write_blocked
    })
    .await;
    let (status, body) = healthz(addr).await;
    assert_eq!(status, 200, "{body}");
    shutdown.cancel();
    run.await.unwrap().expect("clean run");
    assert_eq!(
        received(&setup.receiver),
        expected,
        "every reading exactly once"
    );
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_on_a_full_disk_runs_degraded_until_space_returns() {
    // See: issue #12 item 7
    let setup = setup().await;
    let publisher = Publisher::connect(setup.broker.port(), "publisher-disk-full-start");
    let mut expected = BTreeMap::new();

    // A first run leaves readings in the spool (the cloud was away).
    setup.receiver.set_unavailable(true);
    {
        let (metrics, _addr, shutdown, run) = start(&setup).await;
        publish(&publisher, 0..20, &mut expected).await;
        wait_until("20 readings spooled", Duration::from_secs(20), || {
            metrics.snapshot().readings_spooled == 20
        })
        .await;
        shutdown.cancel();
        run.await.unwrap().expect("clean first run");
    }
    assert!(spool_dir(setup.dir.path()).exists());

    // Restarted on a full disk: opening the spool needs new files. The agent starts anyway.
    setup.disk.set_full(true);
    setup.receiver.set_unavailable(false);
    let (metrics, addr, shutdown, run) = start(&setup).await;
    publish(&publisher, 20..35, &mut expected).await;
    wait_until(
        "the agent reports spool writes blocked",
        Duration::from_secs(20),
        || metrics.snapshot().spool_write_blocked,
    )
    .await;
    let (status, body) = healthz(addr).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_space"), "{body}");
    assert!(!run.is_finished(), "the agent must not exit on a full disk");
    assert_eq!(
        metrics.snapshot().readings_spooled,
        0,
        "nothing acknowledged"
    );

    // Space returns: the spool opens, the backlog and the broker's held messages arrive.
    setup.disk.set_full(false);
    wait_until("every reading arrives", Duration::from_secs(60), || {
        setup.receiver.n_readings() >= 35
    })
    .await;
    let (status, body) = healthz(addr).await;
    assert_eq!(status, 200, "{body}");
    shutdown.cancel();
    run.await.unwrap().expect("clean run");
    assert_eq!(
        received(&setup.receiver),
        expected,
        "every reading exactly once"
    );
    publisher.close().await;
}
