//! Dead letters: batches the cloud rejects permanently are made durable in the dead-letter
//! directory before the spool frees them (a failed write keeps them in the spool), the directory
//! counts against the spool's byte cap, a 413 splits the batch instead of dead-lettering it, and
//! `fieldpulse-edge dead-letters list|replay` shows and re-sends them (against the real cloud
//! ingest).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fieldpulse_edge::metrics::DropReason;
use tokio_util::sync::CancellationToken;

use crate::support::cloud::{count_batch, ReadingCounts, RealCloud};
use crate::support::publisher::Publisher;
use crate::support::{start_agent, wait_until, EdgeOptions, Running};

/// Every reading in the dead-letter bodies (`*.pb.zst`) in `dir`, counted.
fn dead_letter_readings(dir: &Path) -> ReadingCounts {
    let mut counts = ReadingCounts::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return counts;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".pb.zst") {
            continue;
        }
        let raw = zstd::bulk::decompress(&std::fs::read(&path).unwrap(), 64 << 20).unwrap();
        let batch =
            <fieldpulse_proto::v1::Batch as prost::Message>::decode(raw.as_slice()).unwrap();
        count_batch(&batch, &mut counts);
    }
    counts
}

/// Publishes `n` five-reading messages (values `i`) on `sensors/<prefix>-<i % 7>`.
async fn publish_block(
    publisher: &Publisher,
    prefix: &str,
    n: usize,
    ts: i64,
    expected: &mut ReadingCounts,
) {
    for i in 0..n {
        let asset = format!("{prefix}-{}", i % 7);
        let ts = ts + i as i64;
        let payload = format!("{{\"ts\":{ts},\"a\":{i},\"b\":{i},\"c\":{i},\"d\":{i},\"e\":{i}}}");
        publisher
            .publish(&format!("sensors/{asset}"), payload.into_bytes())
            .await;
        for sensor in ["a", "b", "c", "d", "e"] {
            expected.insert((asset.clone(), sensor.into(), ts, (i as f64).to_bits()), 1);
        }
    }
}

/// Publishes one message of `n` readings (sensors `s0`..), too many for a cloud batch limit.
async fn publish_wide(publisher: &Publisher, n: usize, ts: i64, expected: &mut ReadingCounts) {
    let fields: Vec<String> = (0..n).map(|k| format!("\"s{k}\":{k}")).collect();
    let payload = format!("{{\"ts\":{ts},{}}}", fields.join(","));
    publisher
        .publish("sensors/wide", payload.into_bytes())
        .await;
    for k in 0..n {
        expected.insert(
            ("wide".into(), format!("s{k}"), ts, (k as f64).to_bits()),
            1,
        );
    }
}

async fn stop(s: Running) {
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_written_keeps_its_readings_in_the_spool_until_it_can() {
    const MSGS: usize = 40;
    let s = start_agent("publisher-dead-letter-fails", |_| {}).await;
    let dead_dir = s._dir.path().join("dead-letter");
    // A file where the directory should be: every write fails (as on a full or read-only disk).
    std::fs::write(&dead_dir, b"in the way").unwrap();
    s.receiver.set_reject_status(422);
    let mut expected = ReadingCounts::new();
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    publish_block(&s.publisher, "dl", MSGS, ts, &mut expected).await;
    wait_until(
        "the agent failed to write the dead letter twice",
        Duration::from_secs(30),
        || s.metrics.snapshot().dead_letter_write_failures >= 2,
    )
    .await;
    let during = s.metrics.snapshot();
    assert_eq!(
        (during.batches_dead_letter, during.dropped_total()),
        (0, 0),
        "nothing counted as dead-lettered or dropped: {during:?}"
    );
    assert!(
        during.spool_batches_pending >= 1,
        "the rejected batch stays in the spool: {during:?}"
    );

    // The disk is writable again: every rejected reading must end up in a dead letter.
    std::fs::remove_file(&dead_dir).unwrap();
    wait_until(
        "the dead letters hold every rejected reading",
        Duration::from_secs(30),
        || dead_letter_readings(&dead_dir) == expected,
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
    let after = s.metrics.snapshot();
    assert_eq!(
        after.dropped(DropReason::DeadLetter),
        (MSGS * 5) as u64,
        "{after:?}"
    );
    assert_eq!(after.dead_letter_files, after.batches_dead_letter);
    let on_disk: u64 = std::fs::read_dir(&dead_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(after.dead_letter_bytes, on_disk);
    assert!(s
        .metrics
        .render_prometheus()
        .contains(&format!("\nfieldpulse_edge_dead_letter_bytes {on_disk}\n")));
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_bytes_count_against_the_spool_cap() {
    const MSGS: usize = 2000;
    const DEAD_BYTES: usize = 900 * 1024;
    let s = start_agent("publisher-dead-letter-cap", |o| {
        o.spool_max_bytes = 1 << 20;
        o.full_policy = "backpressure";
    })
    .await;
    // Stop the agent, leave a dead letter of 900 KiB of the 1 MiB cap, start it again.
    let options = {
        let mut o = EdgeOptions::new(s.broker.port(), &s.receiver.url());
        o.spool_max_bytes = 1 << 20;
        o.full_policy = "backpressure";
        o
    };
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    let dead_dir = s._dir.path().join("dead-letter");
    std::fs::create_dir_all(&dead_dir).unwrap();
    std::fs::write(
        dead_dir.join("batch-0000000000000001-00000000000000000001.pb.zst"),
        vec![7u8; DEAD_BYTES],
    )
    .unwrap();
    let agent = fieldpulse_edge::Agent::start(options.config(s._dir.path()))
        .await
        .unwrap();
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(agent.run(shutdown.clone()));

    s.receiver.set_unavailable(true);
    let mut expected = ReadingCounts::new();
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    publish_block(&s.publisher, "cap", MSGS, ts, &mut expected).await;
    wait_until(
        "the spool is full (its bytes plus the dead letters reach the cap)",
        Duration::from_secs(30),
        || metrics.snapshot().backpressure_waits > 0,
    )
    .await;
    let full = metrics.snapshot();
    assert_eq!(
        (full.dead_letter_bytes, full.dead_letter_files),
        (DEAD_BYTES as u64, 1)
    );
    assert!(
        full.spool_bytes + DEAD_BYTES as u64 <= 1 << 20,
        "spool and dead letters stay under the cap: {full:?}"
    );

    // Dead letters removed while the agent runs (replayed, or deleted by an operator) give
    // their room back: intake resumes while the cloud is still down.
    std::fs::remove_dir_all(&dead_dir).unwrap();
    wait_until(
        "every reading spooled once the dead letters are gone",
        Duration::from_secs(30),
        || metrics.snapshot().readings_spooled == (MSGS * 5) as u64,
    )
    .await;
    assert_eq!(s.receiver.n_readings(), 0);
    assert_eq!(metrics.snapshot().dead_letter_bytes, 0);

    // Backpressure loses nothing: once the cloud is back, every reading arrives.
    s.receiver.set_unavailable(false);
    wait_until("every reading delivered", Duration::from_secs(60), || {
        s.receiver.n_readings() == MSGS * 5
    })
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    s.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_for_the_cloud_is_split_and_only_a_single_oversized_record_is_dead_lettered(
) {
    const MSGS: usize = 60;
    const WIDE: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    // The cloud takes at most 20 readings per batch: four five-reading messages.
    let mut cloud = RealCloud::start_in(&dir.path().join("ingest-log"), |c| {
        c.max_readings_per_batch = 20
    })
    .await;
    let url = cloud.url.clone();
    let s = start_agent("publisher-dead-letter-413", |o| o.cloud_url = url).await;
    let mut expected = ReadingCounts::new();
    let mut wide = ReadingCounts::new();
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    publish_block(&s.publisher, "split", MSGS / 2, ts, &mut expected).await;
    publish_wide(&s.publisher, WIDE, ts, &mut wide).await;
    publish_block(&s.publisher, "split2", MSGS / 2, ts, &mut expected).await;
    wait_until(
        "every reading in the cloud or a dead letter",
        Duration::from_secs(60),
        || {
            let m = s.metrics.snapshot();
            m.readings_forwarded + m.dropped(DropReason::DeadLetter) >= (MSGS * 5 + WIDE) as u64
        },
    )
    .await;
    let dead_dir = s._dir.path().join("dead-letter");
    let got = cloud.readings();
    let missing = expected.keys().filter(|k| !got.contains_key(*k)).count();
    let twice = got.values().filter(|&&n| n > 1).count();
    assert_eq!(
        (missing, twice, got.len()),
        (0, 0, expected.len()),
        "the cloud holds every reading of the small messages, once"
    );
    let m = s.metrics.snapshot();
    assert!(m.batches_split >= 1, "{m:?}");
    assert_eq!(
        (m.dropped(DropReason::DeadLetter), m.batches_dead_letter),
        (WIDE as u64, 1),
        "{m:?}"
    );
    assert_eq!(
        dead_letter_readings(&dead_dir),
        wide,
        "only the message too large on its own is dead-lettered"
    );
    stop(s).await;
    cloud.stop().await;
}

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fieldpulse-edge"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_shows_them_and_replay_sends_them_to_the_cloud() {
    const WIDE: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let strict = RealCloud::start_in(&dir.path().join("strict-log"), |c| {
        c.max_readings_per_batch = 20
    })
    .await;
    let url = strict.url.clone();
    let s = start_agent("publisher-dead-letter-cli", |o| o.cloud_url = url).await;
    let mut wide = ReadingCounts::new();
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    publish_wide(&s.publisher, WIDE, ts, &mut wide).await;
    wait_until(
        "the wide message dead-lettered",
        Duration::from_secs(30),
        || s.metrics.snapshot().dropped(DropReason::DeadLetter) == WIDE as u64,
    )
    .await;
    let dead_dir = s._dir.path().join("dead-letter");
    let config = s._dir.path().join("edge.toml");
    let write_config = |url: &str| {
        let options = EdgeOptions::new(s.broker.port(), url);
        std::fs::write(&config, options.to_toml(s._dir.path())).unwrap();
    };
    write_config(&strict.url);

    // list: one JSON object with --json, one line per dead letter without.
    let out = edge()
        .args(["dead-letters", "list", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let lines = listed["dead_letters"].as_array().expect("an array");
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(listed["bytes"].as_u64().unwrap() > lines[0]["bytes"].as_u64().unwrap());
    assert_eq!(lines[0]["http_status"], 413, "{stdout}");
    assert_eq!(lines[0]["readings"], WIDE, "{stdout}");
    let out = edge()
        .args(["dead-letters", "list", "--dir"])
        .arg(&dead_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("413"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // replay to a cloud that still refuses it: non-zero exit, the dead letter is kept.
    let out = edge()
        .args(["dead-letters", "replay", "--all", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "replay of a refused batch must fail");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("failed (") && stdout.contains("HTTP 413"),
        "{stdout}"
    );
    assert_eq!(dead_letter_readings(&dead_dir), wide);

    // --dry-run sends nothing.
    let mut cloud = RealCloud::start_in(&dir.path().join("ingest-log"), |c| {
        c.max_readings_per_batch = 1000
    })
    .await;
    write_config(&cloud.url);
    let out = edge()
        .args(["dead-letters", "replay", "--all", "--dry-run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(cloud.readings().is_empty());
    assert_eq!(dead_letter_readings(&dead_dir), wide);

    // replay to a cloud that takes it: the readings are in the log, the dead letter is gone.
    let seq = lines[0]["seq"].as_u64().unwrap().to_string();
    let out = edge()
        .args(["dead-letters", "replay", "--seq", &seq, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("sent and removed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(cloud.readings(), wide);
    assert!(dead_letter_readings(&dead_dir).is_empty());
    assert_eq!(
        std::fs::read_dir(&dead_dir).unwrap().count(),
        0,
        "no file left behind"
    );
    stop(s).await;
    strict.stop().await;
    cloud.stop().await;
}
