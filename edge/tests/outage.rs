//! Uplink outages and the spool's byte cap: growth, draining, live-before-backlog, and the two
//! full policies with exact counters.

use std::collections::HashSet;
use std::time::Duration;

use fieldpulse_edge::metrics::DropReason;

use crate::support::publisher::Publisher;
use crate::support::{start_agent, wait_until, EdgeOptions, Running};

async fn setup(adjust: impl FnOnce(&mut EdgeOptions)) -> Running {
    let s = start_agent("publisher-outage", adjust).await;
    s.receiver.set_unavailable(true);
    s
}

/// Publishes `n` five-sensor messages on assets `<prefix>-<i % 20>`; reading values are `i`.
async fn publish_block(publisher: &Publisher, prefix: &str, n: usize) {
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    for i in 0..n {
        let payload = format!("{{\"ts\":{ts},\"a\":{i},\"b\":{i},\"c\":{i},\"d\":{i},\"e\":{i}}}");
        publisher
            .publish(
                &format!("sensors/{prefix}-{}", i % 20),
                payload.into_bytes(),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_the_spool_grows_then_drains_live_first_with_the_backlog_marked_historical(
) {
    const A_MSGS: usize = 3000;
    const B_MSGS: usize = 100;
    let s = setup(|o| {
        o.backfill_rate = 10_000;
        o.batch_max_records = 200;
    })
    .await;
    publish_block(&s.publisher, "a", A_MSGS).await;
    wait_until("phase A spooled", Duration::from_secs(30), || {
        s.metrics.snapshot().readings_spooled == (A_MSGS * 5) as u64
    })
    .await;
    wait_until(
        "the cloud refused at least one batch",
        Duration::from_secs(10),
        || s.receiver.with(|got| got.refused_503 > 0),
    )
    .await;
    let during = s.metrics.snapshot();
    assert!(
        during.spool_bytes > 100_000,
        "the spool holds the outage's data: {during:?}"
    );
    assert_eq!(s.receiver.n_readings(), 0);

    s.receiver.set_unavailable(false);
    wait_until(
        "the uplink recovered and a backlog was set aside",
        Duration::from_secs(10),
        || s.metrics.snapshot().backlog_records > 0,
    )
    .await;
    publish_block(&s.publisher, "b", B_MSGS).await;
    let total = (A_MSGS + B_MSGS) * 5;
    wait_until("everything delivered", Duration::from_secs(30), || {
        s.receiver.n_readings() >= total
    })
    .await;
    wait_until("the spool drained", Duration::from_secs(10), || {
        let m = s.metrics.snapshot();
        m.spool_records_uncut == 0 && m.spool_batches_pending == 0
    })
    .await;
    let after = s.metrics.snapshot();
    assert!(
        after.spool_bytes < during.spool_bytes,
        "{} < {}",
        after.spool_bytes,
        during.spool_bytes
    );
    assert!(after.batches_historical > 0);

    s.receiver.with(|got| {
        assert_eq!(got.readings.len(), total, "exactly once");
        let last_live = got
            .readings
            .iter()
            .rposition(|r| r.asset.starts_with("b-"))
            .unwrap();
        let last_backlog = got
            .readings
            .iter()
            .rposition(|r| r.asset.starts_with("a-"))
            .unwrap();
        assert!(
            last_live < last_backlog,
            "live data ({last_live}) arrives before the backlog is done ({last_backlog})"
        );
        assert!(got
            .readings
            .iter()
            .filter(|r| r.asset.starts_with("b-"))
            .all(|r| !r.historical));
        let a_historical = got
            .readings
            .iter()
            .filter(|r| r.asset.starts_with("a-") && r.historical)
            .count();
        // Only the live batch in flight when the outage began (at most batch_max_records
        // messages of 5 readings) may arrive as live data; the rest is backlog.
        assert!(
            a_historical >= A_MSGS * 5 - 200 * 5,
            "{a_historical} of the outage's readings were backfill"
        );
    });
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
    drop(s.broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_at_the_byte_cap_drops_only_the_oldest_readings_and_counts_them_exactly() {
    const MSGS: usize = 12_000;
    let s = setup(|o| o.spool_max_bytes = 1 << 20).await;
    publish_block(&s.publisher, "x", MSGS).await;
    wait_until("every message processed", Duration::from_secs(40), || {
        s.metrics.snapshot().readings_spooled == (MSGS * 5) as u64
    })
    .await;
    let full = s.metrics.snapshot();
    assert!(
        full.dropped(DropReason::SpoolFull) > 0,
        "the cap was reached: {full:?}"
    );
    assert!(
        full.spool_bytes <= 1 << 20,
        "{} bytes on disk",
        full.spool_bytes
    );
    assert_eq!(full.readings_spooled, (MSGS * 5) as u64, "{full:?}");

    s.receiver.set_unavailable(false);
    // Records evicted while a request was in flight count as dropped only once that send
    // has failed, which may be after `full` was read: the count is read as it is now.
    let kept = || {
        let m = s.metrics.snapshot();
        m.readings_spooled - m.dropped(DropReason::SpoolFull)
    };
    wait_until(
        "the kept readings delivered",
        Duration::from_secs(30),
        || s.receiver.n_readings() as u64 >= kept(),
    )
    .await;
    wait_until("the spool drained", Duration::from_secs(10), || {
        let m = s.metrics.snapshot();
        m.spool_records_uncut == 0 && m.spool_batches_pending == 0
    })
    .await;
    let end = s.metrics.snapshot();
    assert_eq!(
        end.readings_spooled, full.readings_spooled,
        "nothing new was spooled"
    );
    assert!(
        end.dropped(DropReason::SpoolFull) >= full.dropped(DropReason::SpoolFull),
        "drop counts only grow"
    );
    let kept = kept();
    s.receiver.with(|got| {
        assert_eq!(
            got.readings.len() as u64,
            kept,
            "received == spooled - dropped, exactly"
        );
        let received: HashSet<u64> = got.readings.iter().map(|r| r.value as u64).collect();
        let oldest_kept = *received.iter().min().unwrap();
        assert!(
            (oldest_kept..MSGS as u64).all(|i| received.contains(&i)),
            "everything newer than the oldest kept message arrived: only the oldest were dropped"
        );
    });
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_at_the_byte_cap_stops_acknowledging_and_loses_nothing() {
    const MSGS: usize = 12_000;
    let s = setup(|o| {
        o.spool_max_bytes = 1 << 20;
        o.full_policy = "backpressure";
    })
    .await;
    publish_block(&s.publisher, "y", MSGS).await;
    s.publisher.wait_acked(MSGS, Duration::from_secs(30)).await;
    wait_until(
        "the spool refused an append",
        Duration::from_secs(30),
        || s.metrics.snapshot().backpressure_waits > 0,
    )
    .await;
    let full = s.metrics.snapshot();
    assert!(
        full.messages_received < MSGS as u64,
        "the broker holds the rest: {full:?}"
    );
    assert_eq!(full.dropped_total(), 0);
    assert!(full.spool_bytes <= 1 << 20);

    s.receiver.set_unavailable(false);
    wait_until("every reading delivered", Duration::from_secs(40), || {
        s.receiver.n_readings() >= MSGS * 5
    })
    .await;
    let end = s.metrics.snapshot();
    assert_eq!(end.dropped_total(), 0);
    assert_eq!(end.readings_spooled, (MSGS * 5) as u64);
    s.receiver.with(|got| {
        assert_eq!(got.readings.len(), MSGS * 5, "exactly once");
        let values: HashSet<u64> = got.readings.iter().map(|r| r.value as u64).collect();
        assert_eq!(values.len(), MSGS);
    });
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_cloud_rejects_permanently_goes_to_the_dead_letter_directory_and_is_counted() {
    const MSGS: usize = 50;
    let s = setup(|_| {}).await;
    s.receiver.set_reject_status(422);
    s.receiver.set_unavailable(false);
    publish_block(&s.publisher, "z", MSGS).await;
    wait_until(
        "the rejected readings counted as dead letters",
        Duration::from_secs(20),
        || s.metrics.snapshot().dropped(DropReason::DeadLetter) == (MSGS * 5) as u64,
    )
    .await;
    wait_until(
        "the spool freed the dead-lettered batches",
        Duration::from_secs(10),
        || {
            let m = s.metrics.snapshot();
            m.spool_records_uncut == 0 && m.spool_batches_pending == 0
        },
    )
    .await;
    let snapshot = s.metrics.snapshot();
    assert!(snapshot.batches_dead_letter >= 1);
    assert_eq!(snapshot.readings_forwarded, 0);
    // Each dead letter is its body as sent (`.pb.zst`) plus its metadata (`.json`).
    let files: Vec<_> = std::fs::read_dir(s._dir.path().join("dead-letter"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.zst"))
        .collect();
    assert_eq!(files.len() as u64, snapshot.batches_dead_letter);
    assert_eq!(snapshot.dead_letter_files, snapshot.batches_dead_letter);
    let mut n_readings = 0;
    for file in &files {
        let meta = file.to_string_lossy().replace(".pb.zst", ".json");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        assert_eq!(meta["http_status"], 422, "{}", file.display());
        let raw = zstd::bulk::decompress(&std::fs::read(file).unwrap(), 64 << 20).unwrap();
        let batch =
            <fieldpulse_proto::v1::Batch as prost::Message>::decode(raw.as_slice()).unwrap();
        n_readings += batch
            .series
            .iter()
            .map(|series| series.len())
            .sum::<usize>();
    }
    assert_eq!(
        n_readings,
        MSGS * 5,
        "the dead letters hold every rejected reading"
    );
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
}
