//! A wiped or replaced spool (re-imaged gateway, new SD card, deleted directory) against the
//! real cloud ingest and its durable log: the new spool's seqs start at 1 again under the same
//! gateway id, and none of its readings may be taken for a duplicate of the old spool's batches.

use std::path::Path;
use std::time::Duration;

use fieldpulse_edge::Agent;
use tempfile::tempdir;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::cloud::{ReadingCounts, RealCloud};
use crate::support::publisher::Publisher;
use crate::support::{start_agent, wait_until, EdgeOptions, Running};

/// Runs the agent on `dir`'s spool, publishes readings `range` (one per message), waits until
/// the agent has forwarded all of them, and stops it.
async fn run_agent(
    dir: &Path,
    options: &EdgeOptions,
    broker: &Broker,
    range: std::ops::Range<usize>,
    base_ts: i64,
    expected: &mut ReadingCounts,
) {
    let config = options.config(dir);
    let agent = Agent::start(config).await.expect("agent starts");
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));
    let publisher = Publisher::connect(broker.port(), "publisher-wiped-spool");
    let n = range.len();
    for i in range {
        let asset = format!("asset-{}", i % 7);
        let ts = base_ts + i as i64;
        let payload = format!("{{\"ts\":{ts},\"value\":{i}}}");
        publisher
            .publish(&format!("plant/s1/{asset}/temp"), payload.into_bytes())
            .await;
        expected.insert((asset, "temp".into(), ts, (i as f64).to_bits()), 1);
    }
    publisher.wait_acked(n, Duration::from_secs(30)).await;
    wait_until(
        "the agent forwarded every reading",
        Duration::from_secs(30),
        || metrics.snapshot().readings_forwarded >= n as u64,
    )
    .await;
    shutdown.cancel();
    let summary = run.await.unwrap().unwrap();
    assert!(summary.finished_in_grace);
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_spool_starts_a_new_epoch_and_the_cloud_keeps_every_reading_of_both() {
    const N: usize = 300;
    const M: usize = 200;
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);

    let mut cloud = RealCloud::start(dir.path()).await;

    let mut options = EdgeOptions::new(broker.port(), &cloud.url);
    // Small batches: each run sends several, so the second run's seqs overlap the first's.
    options.batch_max_records = 20;
    broker
        .prepare_session(
            &options.config(dir.path()).mqtt.client_id,
            &["plant/+/+/+", "sensors/+"],
        )
        .await;
    let base_ts = fieldpulse_edge::clock::now_ms() - 3_600_000;
    let mut expected = ReadingCounts::new();

    run_agent(dir.path(), &options, &broker, 0..N, base_ts, &mut expected).await;
    assert_eq!(cloud.ingest.stats().readings_ingested, N as u64);

    // The gateway is re-imaged: its spool is gone, the gateway id stays.
    std::fs::remove_dir_all(dir.path().join("spool")).unwrap();
    run_agent(
        dir.path(),
        &options,
        &broker,
        N..N + M,
        base_ts,
        &mut expected,
    )
    .await;

    let got = cloud.readings();
    let missing = expected.keys().filter(|k| !got.contains_key(*k)).count();
    let twice = got.values().filter(|&&n| n > 1).count();
    let stats = cloud.ingest.stats();
    assert_eq!(
        (missing, twice),
        (0, 0),
        "the ingest log must hold each of the {} readings once: {missing} missing, {twice} \
         duplicated ({} readings ingested, {} batches acknowledged as duplicates)",
        N + M,
        stats.readings_ingested,
        stats.duplicate_batches
    );
    assert_eq!(got.len(), N + M);
    cloud.stop().await;
}

/// An agent forwarding to the mock receiver, for the ack checks.
async fn ack_setup() -> Running {
    start_agent("publisher-acks", |_| {}).await
}

async fn publish(publisher: &Publisher, range: std::ops::Range<usize>) {
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    for i in range {
        let payload = format!("{{\"ts\":{},\"value\":{i}}}", ts + i as i64);
        publisher
            .publish("plant/s1/asset-1/temp", payload.into_bytes())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_for_another_spool_epoch_does_not_free_the_batch_and_is_retried() {
    let s = ack_setup().await;
    s.receiver.set_ack_epoch_offset(1);
    publish(&s.publisher, 0..10).await;
    s.publisher.wait_acked(10, Duration::from_secs(30)).await;
    wait_until(
        "a few acks refused for naming another epoch",
        Duration::from_secs(30),
        || s.metrics.snapshot().acks_refused >= 3,
    )
    .await;
    let during = s.metrics.snapshot();
    assert_eq!(
        (during.readings_forwarded, during.batches_acked),
        (0, 0),
        "an ack of another epoch acknowledges nothing: {during:?}"
    );
    assert!(during.spool_batches_pending >= 1, "{during:?}");
    assert!(during.send_failures >= during.acks_refused);

    // Acks that echo the epoch: the retried batch is delivered, once.
    s.receiver.set_ack_epoch_offset(0);
    wait_until("the batch delivered", Duration::from_secs(30), || {
        s.metrics.snapshot().readings_forwarded == 10
    })
    .await;
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
    s.receiver.with(|got| {
        assert_eq!(got.readings.len(), 10);
        assert_eq!(got.duplicate_mismatches, 0);
    });
    assert_eq!(s.metrics.snapshot().acks_contiguous_ahead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contiguous_seq_beyond_what_this_epoch_sent_is_counted_and_the_ack_accepted() {
    let s = ack_setup().await;
    publish(&s.publisher, 0..5).await;
    wait_until("first readings delivered", Duration::from_secs(30), || {
        s.metrics.snapshot().readings_forwarded == 5
    })
    .await;
    assert_eq!(
        s.metrics.snapshot().acks_contiguous_ahead,
        0,
        "a true contiguous seq is never questioned"
    );
    s.receiver.set_ack_contiguous_seq(1_000_000);
    publish(&s.publisher, 5..10).await;
    wait_until("the rest delivered", Duration::from_secs(30), || {
        s.metrics.snapshot().readings_forwarded == 10
    })
    .await;
    let after = s.metrics.snapshot();
    assert!(after.acks_contiguous_ahead >= 1, "{after:?}");
    assert_eq!(after.acks_refused, 0);
    assert!(s
        .metrics
        .render_prometheus()
        .contains("fieldpulse_edge_acks_contiguous_seq_ahead_total "));
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
}
