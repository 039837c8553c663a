//! Unit tests of the spool over the real file system: the API contract, framing
//! and recovery from damaged files. The model-based property test and the
//! power-cut simulation live in `model_tests.rs` and `power_cut_tests.rs`.

use std::{fs, path::Path};

use super::FileLayer as _;

use super::{
    record, segment, FullPolicy, Lane, Spool, SpoolConfig, SpoolError, DEFAULT_SEGMENT_BYTES,
};

/// A 1 MiB cap: 128 KiB segments of about 127 records of 1000 bytes.
const CAP: u64 = 1024 * 1024;

fn small_config(policy: FullPolicy) -> SpoolConfig {
    SpoolConfig {
        max_bytes: CAP,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
        policy,
    }
}

fn open(dir: &Path) -> Spool {
    Spool::open(dir, SpoolConfig::default())
        .expect("open spool")
        .0
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

/// Appends `n` records of 20 bytes, syncs, and closes the spool; returns the one
/// segment file holding them and the offsets where each frame starts.
fn write_one_segment(dir: &Path, n: u64) -> (String, Vec<usize>) {
    let mut spool = open(dir);
    for i in 0..n {
        spool.append(&payload(i, 20), 1).expect("append");
    }
    spool.sync().expect("sync");
    drop(spool);
    let name = segment_files(dir).pop().expect("a segment");
    let offsets = (0..n as usize)
        .map(|i| segment::SEGMENT_HEADER_LEN + i * record::frame_len(20))
        .collect();
    (name, offsets)
}

fn cut_all(spool: &mut Spool) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(batch) = spool.cut(Lane::Backfill, 1000, usize::MAX).expect("cut") {
        ids.extend(batch.records.iter().map(|r| r.id));
    }
    ids
}

#[test]
fn spool_round_trips_records_through_sync_cut_and_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    let first = spool.append(b"alpha", 1).expect("append");
    let second = spool.append(b"beta", 3).expect("append");
    assert_eq!((first.id, second.id), (1, 2));
    assert!(first.dropped.is_empty());
    assert_eq!(
        spool.cut(Lane::Live, 10, 1024).expect("cut"),
        None,
        "unsynced records are not cut"
    );
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Backfill, 10, 1024)
        .expect("cut")
        .expect("a batch");
    assert_eq!(batch.seq, 1);
    assert_eq!(batch.records.len(), 2);
    assert_eq!(batch.records[0].payload, b"alpha");
    assert_eq!(batch.records[1].n_readings, 3);
    assert_eq!(batch.n_readings(), 4);
    assert_eq!(spool.stats().pending_batches, 1);
    let ack = spool.ack(1).expect("ack");
    assert!(ack.known);
    assert_eq!((ack.records, ack.readings), (2, 4));
    assert!(
        !spool.ack(1).expect("second ack").known,
        "a repeated ack is a no-op"
    );
    assert!(!spool.ack(99).expect("unknown ack").known);
    let stats = spool.stats();
    assert_eq!((stats.pending_batches, stats.uncut_records), (0, 0));
}

#[test]
fn spool_replays_unacked_batches_with_the_same_seq_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..10 {
        spool.append(&payload(i, 16), 2).expect("append");
    }
    spool.sync().expect("sync");
    let first = spool
        .cut(Lane::Backfill, 4, usize::MAX)
        .expect("cut")
        .expect("batch");
    let second = spool
        .cut(Lane::Backfill, 4, usize::MAX)
        .expect("cut")
        .expect("batch");
    spool.ack(first.seq).expect("ack");
    drop(spool);

    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("reopen");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.batches_pending, 1);
    let pending = spool.pending().expect("pending");
    assert_eq!(pending, vec![second.clone()]);
    assert_eq!(cut_all(&mut spool), vec![9, 10]);
    let stats = spool.stats();
    assert_eq!(stats.next_seq, 4);
}

#[test]
fn seq_is_never_reused_after_everything_was_acked_and_the_spool_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seqs = Vec::new();
    for round in 0..3 {
        let mut spool = open(dir.path());
        spool.append(&payload(round, 8), 1).expect("append");
        spool.sync().expect("sync");
        let batch = spool
            .cut(Lane::Live, 10, 1024)
            .expect("cut")
            .expect("batch");
        spool.ack(batch.seq).expect("ack");
        seqs.push(batch.seq);
        seqs.push(batch.records[0].id);
    }
    assert_eq!(
        seqs,
        vec![1, 1, 2, 2, 3, 3],
        "seqs and record ids keep counting"
    );
}

#[test]
fn live_lane_cuts_the_newest_records_and_backfill_the_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..10 {
        spool.append(&payload(i, 10), 1).expect("append");
    }
    spool.sync().expect("sync");
    let live = spool
        .cut(Lane::Live, 3, usize::MAX)
        .expect("cut")
        .expect("batch");
    assert_eq!(
        live.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    let backfill = spool
        .cut(Lane::Backfill, 3, usize::MAX)
        .expect("cut")
        .expect("batch");
    assert_eq!(
        backfill.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Byte limit: 25 bytes fit two 10-byte payloads; at least one record is always cut.
    let live = spool.cut(Lane::Live, 10, 25).expect("cut").expect("batch");
    assert_eq!(
        live.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![6, 7]
    );
    let backfill = spool
        .cut(Lane::Backfill, 10, 1)
        .expect("cut")
        .expect("batch");
    assert_eq!(
        backfill.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(spool.stats().uncut_records, 1);
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_record_loses_only_that_record() {
    let source = tempfile::tempdir().expect("tempdir");
    let (name, offsets) = write_one_segment(source.path(), 4);
    let bytes = fs::read(source.path().join(&name)).expect("read segment");
    let ledger = fs::read(source.path().join("ledger.log")).expect("read ledger");
    let last = *offsets.last().expect("offsets");
    for cut_at in last..bytes.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(&name), &bytes[..cut_at]).expect("write segment");
        fs::write(dir.path().join("ledger.log"), &ledger).expect("write ledger");
        let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
        assert_eq!(report.records, 3, "cut at {cut_at}");
        assert_eq!(
            report.torn_tails,
            u64::from(cut_at > last),
            "cut at {cut_at}"
        );
        assert_eq!(report.torn_tail_bytes, (cut_at - last) as u64);
        assert_eq!(cut_all(&mut spool), vec![1, 2, 3]);
        let truncated = fs::metadata(dir.path().join(&name)).expect("stat").len();
        assert_eq!(truncated, last as u64, "the torn tail is truncated away");
    }
}

#[test]
fn a_flipped_bit_in_a_middle_record_loses_only_that_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, offsets) = write_one_segment(dir.path(), 5);
    let path = dir.path().join(&name);
    let mut bytes = fs::read(&path).expect("read");
    // One bit in the payload of record 3, and one in the length field of record 4
    // would both be caught; flip the payload one.
    bytes[offsets[2] + record::FRAME_HEADER_LEN + 7] ^= 0x10;
    fs::write(&path, &bytes).expect("write");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(report.corrupt_regions, 1);
    assert_eq!(report.records_lost, 1);
    assert_eq!(report.corrupt_bytes, record::frame_len(20) as u64);
    assert_eq!(report.torn_tails, 0);
    assert_eq!(cut_all(&mut spool), vec![1, 2, 4, 5]);
}

#[test]
fn a_corrupt_length_field_is_skipped_by_resynchronising_on_the_next_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, offsets) = write_one_segment(dir.path(), 5);
    let path = dir.path().join(&name);
    let mut bytes = fs::read(&path).expect("read");
    bytes[offsets[1] + 5] = 0x7F; // length becomes ~32 KiB, past the end of the file
    fs::write(&path, &bytes).expect("write");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!((report.corrupt_regions, report.records_lost), (1, 1));
    assert_eq!(cut_all(&mut spool), vec![1, 3, 4, 5]);
}

#[test]
fn a_zero_filled_tail_is_treated_as_torn_and_every_record_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, _) = write_one_segment(dir.path(), 3);
    let path = dir.path().join(&name);
    let mut bytes = fs::read(&path).expect("read");
    let len = bytes.len();
    bytes.resize(len + 4096, 0);
    fs::write(&path, &bytes).expect("write");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!((report.torn_tails, report.torn_tail_bytes), (1, 4096));
    assert_eq!(cut_all(&mut spool), vec![1, 2, 3]);
}

#[test]
fn an_empty_segment_file_and_a_stray_file_do_not_stop_the_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_one_segment(dir.path(), 2);
    let empty = segment::file_name(7);
    fs::write(dir.path().join(&empty), b"").expect("write empty segment");
    fs::write(dir.path().join("notes.txt"), b"operator notes").expect("write stray file");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(report.foreign_files, vec!["notes.txt".to_owned()]);
    assert_eq!(report.segments_removed, 1, "the empty segment");
    assert!(!dir.path().join(&empty).exists());
    assert_eq!(
        fs::read(dir.path().join("notes.txt")).expect("stray file kept"),
        b"operator notes"
    );
    assert_eq!(cut_all(&mut spool), vec![1, 2]);
    // New records continue after the highest segment id seen.
    spool.append(b"x", 1).expect("append");
    spool.sync().expect("sync");
    assert!(segment_files(dir.path()).contains(&segment::file_name(8)));
}

#[test]
fn a_garbage_file_named_like_a_segment_is_scanned_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = segment::file_name(3);
    fs::write(dir.path().join(&name), vec![0xAB; 1000]).expect("write garbage");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(report.damaged_headers, 1);
    assert_eq!(report.records, 0);
    assert!(!dir.path().join(&name).exists());
    assert!(cut_all(&mut spool).is_empty());
}

#[test]
fn backpressure_refuses_appends_at_the_cap_and_drops_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) =
        Spool::open(dir.path(), small_config(FullPolicy::Backpressure)).expect("open");
    let mut appended = 0u64;
    let err = loop {
        match spool.append(&payload(appended, 1000), 4) {
            Ok(res) => {
                assert!(res.dropped.is_empty());
                appended += 1;
            }
            Err(err) => break err,
        }
        assert!(appended < 10_000, "the cap must stop appends");
    };
    assert!(err.is_full(), "{err}");
    spool.sync().expect("sync");
    let stats = spool.stats();
    assert!(stats.bytes_on_disk <= CAP, "{stats:?}");
    assert_eq!(
        (stats.uncut_records, stats.dropped_records_total),
        (appended, 0)
    );
    // Acking the oldest segments' worth of records frees room again.
    while let Some(batch) = spool.cut(Lane::Backfill, 200, usize::MAX).expect("cut") {
        spool.ack(batch.seq).expect("ack");
        if spool.append(b"after ack", 1).is_ok() {
            return;
        }
    }
    panic!("acking everything must make room");
}

#[test]
fn drop_oldest_evicts_whole_segments_and_counts_exactly_what_was_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) =
        Spool::open(dir.path(), small_config(FullPolicy::DropOldest)).expect("open");
    let mut next = 0u64;
    let mut append = |spool: &mut Spool| {
        next += 1;
        spool
            .append(&payload(next, 1000), (next % 5) as u32 + 1)
            .expect("append")
    };
    // Fill a few segments, cut a batch from the oldest and ack part of it.
    for _ in 0..300 {
        append(&mut spool);
    }
    spool.sync().expect("sync");
    let acked = spool
        .cut(Lane::Backfill, 10, usize::MAX)
        .expect("cut")
        .expect("batch");
    spool.ack(acked.seq).expect("ack");
    let pending = spool
        .cut(Lane::Backfill, 10, usize::MAX)
        .expect("cut")
        .expect("batch");
    let mut dropped = super::Dropped::default();
    while dropped.is_empty() {
        dropped = append(&mut spool).dropped;
    }
    // The first segment held records 1..below_id; 1..=10 were acked, 11..=20 pending.
    let lost_ids = 21..dropped.below_id;
    let expected_readings: u64 = (1..dropped.below_id)
        .filter(|id| *id > 10)
        .map(|id| (id % 5) + 1)
        .sum();
    assert_eq!(dropped.segments, 1);
    assert_eq!(dropped.records, lost_ids.end - 11);
    assert_eq!(dropped.readings, expected_readings);
    assert_eq!(dropped.bytes, dropped.records * 1000);
    let stats = spool.stats();
    assert_eq!(stats.dropped_records_total, dropped.records);
    assert!(stats.bytes_on_disk <= CAP);
    // The pending batch lived in the evicted segment: it is gone, and acking it is a no-op.
    assert!(spool.pending_seqs().is_empty());
    assert!(!spool.ack(pending.seq).expect("ack").known);
    spool.sync().expect("sync");
    let remaining = cut_all(&mut spool);
    assert_eq!(remaining.first(), Some(&dropped.below_id));
}

/// Fills a drop_oldest spool, cuts `n` records from the oldest, and returns the batch.
fn full_spool_with_a_batch(dir: &Path, n: usize) -> (Spool, super::CutBatch) {
    let (mut spool, _) = Spool::open(dir, small_config(FullPolicy::DropOldest)).expect("open");
    for i in 0..300 {
        spool.append(&payload(i, 1000), 2).expect("append");
    }
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Backfill, n, usize::MAX)
        .expect("cut")
        .expect("batch");
    (spool, batch)
}

/// Appends until one segment is evicted; returns what the append reported dropped.
fn append_until_evicted(spool: &mut Spool) -> super::Dropped {
    loop {
        let appended = spool.append(&payload(7, 1000), 2).expect("append");
        if !appended.dropped.is_empty() {
            return appended.dropped;
        }
    }
}

#[test]
fn a_batch_trimmed_before_its_send_is_handed_back_as_it_is_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, batch) = full_spool_with_a_batch(dir.path(), 200);
    assert!(matches!(
        spool.begin_send(batch.seq, 0).expect("begin"),
        super::SendCheck::Unchanged
    ));
    // Not in flight any more: an eviction now drops the batch's records at once.
    assert_eq!(spool.end_send(batch.seq), super::Dropped::default());
    let dropped = append_until_evicted(&mut spool);
    let evicted_from_batch = batch
        .records
        .iter()
        .filter(|r| r.id < dropped.below_id)
        .count() as u64;
    assert!(evicted_from_batch > 0);
    assert_eq!(
        dropped.records, evicted_from_batch,
        "only the batch was unacked there"
    );
    let super::SendCheck::Changed { batch: now, trims } =
        spool.begin_send(batch.seq, 0).expect("begin")
    else {
        panic!("the eviction trimmed the batch");
    };
    assert_eq!(trims, 1);
    assert_eq!(now.records.len() as u64, 200 - evicted_from_batch);
    assert!(now.records.iter().all(|r| r.id >= dropped.below_id));
    assert!(matches!(
        spool.begin_send(batch.seq, trims).expect("begin"),
        super::SendCheck::Unchanged
    ));
}

#[test]
fn records_evicted_while_in_flight_are_dropped_only_if_the_send_fails() {
    for delivered in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, batch) = full_spool_with_a_batch(dir.path(), 50);
        assert!(matches!(
            spool.begin_send(batch.seq, 0).expect("begin"),
            super::SendCheck::Unchanged
        ));
        // The whole batch sits in the oldest segment, now evicted while its request is out.
        let dropped = append_until_evicted(&mut spool);
        assert!(batch.records.iter().all(|r| r.id < dropped.below_id));
        // Record ids start at 1: the segment's other records were uncut, and are dropped.
        let uncut_lost = dropped.below_id - 1 - 50;
        assert_eq!(
            dropped.records, uncut_lost,
            "the sender still holds the batch's records"
        );
        assert_eq!(spool.stats().dropped_records_total, uncut_lost);
        if delivered {
            assert!(spool.ack(batch.seq).expect("ack").known);
            assert_eq!(spool.stats().dropped_records_total, uncut_lost);
        } else {
            let lost = spool.end_send(batch.seq);
            assert_eq!((lost.records, lost.readings, lost.bytes), (50, 100, 50_000));
            assert_eq!(spool.stats().dropped_records_total, uncut_lost + 50);
            assert!(matches!(
                spool.begin_send(batch.seq, 0).expect("begin"),
                super::SendCheck::Gone
            ));
            assert!(spool.pending_seqs().is_empty());
        }
    }
}

#[test]
fn segments_whose_records_are_all_acked_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SpoolConfig {
        max_bytes: 64 * CAP,
        segment_bytes: 64 * 1024,
        policy: FullPolicy::Backpressure,
    };
    let (mut spool, _) = Spool::open(dir.path(), cfg).expect("open");
    for i in 0..400 {
        spool.append(&payload(i, 1000), 1).expect("append");
    }
    spool.sync().expect("sync");
    let before = spool.stats();
    assert!(before.segments >= 6, "{before:?}");
    let mut deleted = 0;
    while let Some(batch) = spool.cut(Lane::Backfill, 50, usize::MAX).expect("cut") {
        deleted += spool.ack(batch.seq).expect("ack").segments_deleted;
    }
    let after = spool.stats();
    assert_eq!(after.segments, 1, "only the active segment is left");
    assert_eq!(deleted, before.segments - 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(after.bytes_on_disk < 64 * 1024);
}

#[test]
fn a_missing_ledger_makes_seq_jump_past_every_seq_that_can_have_been_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..5 {
        spool.append(&payload(i, 8), 1).expect("append");
    }
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Live, 2, usize::MAX)
        .expect("cut")
        .expect("batch");
    drop(spool);
    fs::remove_file(dir.path().join("ledger.log")).expect("remove ledger");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert!(report.ledger_missing && report.seq_jumped, "{report}");
    let again = spool
        .cut(Lane::Live, 100, usize::MAX)
        .expect("cut")
        .expect("batch");
    assert!(again.seq > batch.seq);
    assert_eq!(
        again.records.len(),
        5,
        "unknown cuts are re-sent (duplicates, never loss)"
    );
}

#[test]
fn a_record_larger_than_a_segment_is_refused_and_a_tiny_cap_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) =
        Spool::open(dir.path(), small_config(FullPolicy::DropOldest)).expect("open");
    let max = spool.config().max_payload_bytes();
    assert!(matches!(
        spool.append(&vec![0; max + 1], 1),
        Err(SpoolError::RecordTooLarge { .. })
    ));
    spool
        .append(&vec![0; max], 1)
        .expect("the largest record fits");
    let bad = SpoolConfig {
        max_bytes: 1000,
        ..SpoolConfig::default()
    };
    let err = Spool::open(dir.path(), bad).expect_err("tiny cap");
    assert!(err.to_string().starts_with("spool.max_bytes:"), "{err}");
    let huge_segments = SpoolConfig {
        max_bytes: 1 << 40,
        segment_bytes: 1 << 30,
        ..SpoolConfig::default()
    };
    let err = Spool::open(dir.path(), huge_segments).expect_err("huge segments");
    assert!(err.to_string().starts_with("spool.segment_bytes:"), "{err}");
    let largest = SpoolConfig {
        max_bytes: 1 << 40,
        segment_bytes: super::MAX_SEGMENT_BYTES,
        ..SpoolConfig::default()
    };
    assert!(
        largest.max_payload_bytes() <= record::MAX_PAYLOAD,
        "records stay scannable"
    );
}

#[test]
fn opening_a_path_that_is_a_file_fails_with_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").expect("write");
    let err = Spool::open(&file, SpoolConfig::default()).expect_err("a file is not a spool dir");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn inspect_reports_damage_without_modifying_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, offsets) = write_one_segment(dir.path(), 4);
    let path = dir.path().join(&name);
    let mut bytes = fs::read(&path).expect("read");
    bytes[offsets[1] + record::FRAME_HEADER_LEN] ^= 1;
    bytes.extend_from_slice(&[0; 10]);
    fs::write(&path, &bytes).expect("write");
    fs::write(dir.path().join("stray.bin"), b"?").expect("write");
    let listing = |dir: &Path| {
        let mut all: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .expect("list")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).expect("read"),
                )
            })
            .collect();
        all.sort();
        all
    };
    let before = listing(dir.path());
    let report = super::inspect(dir.path()).expect("inspect");
    assert_eq!(listing(dir.path()), before, "inspect is read-only");
    assert!(report.damaged);
    let seg = report
        .segments
        .iter()
        .find(|s| s.file == name)
        .expect("segment listed");
    assert_eq!(
        (
            seg.records,
            seg.corrupt_regions,
            seg.records_lost,
            seg.torn_tail_bytes
        ),
        (3, 1, 1, 10)
    );
    assert_eq!(report.foreign_files, vec!["stray.bin".to_owned()]);
    let text = report.to_string();
    assert!(
        text.contains(&name) && text.contains("DAMAGE FOUND"),
        "{text}"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["segments"][0]["header"], "ok");
    assert!(super::inspect(&dir.path().join("missing")).is_err());
}

#[test]
fn tail_returns_the_newest_synced_records_in_any_state_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SpoolConfig {
        max_bytes: CAP,
        segment_bytes: 16 * 1024,
        policy: FullPolicy::Backpressure,
    };
    let (mut spool, _) = Spool::open(dir.path(), cfg).expect("open");
    for i in 0..40 {
        spool.append(&payload(i, 1000), 1).expect("append");
    }
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Live, 5, usize::MAX)
        .expect("cut")
        .expect("batch");
    spool.ack(batch.seq).expect("ack");
    spool.append(b"not synced", 1).expect("append");
    let ids = |records: Vec<super::SpoolRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    // Spans several 16 KiB segments; acked records still on disk are included.
    assert_eq!(
        ids(spool.tail(20).expect("tail")),
        (21..=40).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(spool.tail(100).expect("tail")),
        (1..=40).collect::<Vec<_>>()
    );
    assert!(spool.tail(0).expect("tail").is_empty());
    let tail = spool.tail(1).expect("tail");
    assert_eq!(tail[0].payload, payload(39, 1000));
}

#[test]
fn cut_from_records_the_lane_but_takes_the_requested_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..10 {
        spool.append(&payload(i, 10), 1).expect("append");
    }
    spool.sync().expect("sync");
    let live_oldest = spool
        .cut_from(Lane::Live, super::CutEnd::Oldest, 3, 25)
        .expect("cut")
        .expect("batch");
    assert_eq!(live_oldest.lane, Lane::Live);
    assert_eq!(
        live_oldest.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let backfill_newest = spool
        .cut_from(Lane::Backfill, super::CutEnd::Newest, 2, usize::MAX)
        .expect("cut")
        .expect("batch");
    assert_eq!(
        backfill_newest
            .records
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![9, 10]
    );
    drop(spool);
    let pending = open(dir.path()).pending().expect("pending");
    assert_eq!(
        pending.iter().map(|b| (b.seq, b.lane)).collect::<Vec<_>>(),
        vec![(1, Lane::Live), (2, Lane::Backfill)]
    );
}

#[test]
fn a_spool_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Spool>();
    assert_send::<std::sync::Mutex<Spool>>();
}

#[test]
fn a_segment_deleted_by_hand_shrinks_pending_batches_and_never_reuses_their_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SpoolConfig {
        max_bytes: CAP,
        segment_bytes: 16 * 1024,
        policy: FullPolicy::Backpressure,
    };
    let (mut spool, _) = Spool::open(dir.path(), cfg).expect("open");
    for i in 0..40 {
        spool.append(&payload(i, 1000), 1).expect("append");
    }
    spool.sync().expect("sync");
    // Batch 1 lies wholly in the first segment, batch 2 spans the first two.
    let first = spool
        .cut(Lane::Backfill, 3, usize::MAX)
        .expect("cut")
        .expect("batch");
    let second = spool
        .cut(Lane::Backfill, 20, usize::MAX)
        .expect("cut")
        .expect("batch");
    drop(spool);
    let files = segment_files(dir.path());
    fs::remove_file(dir.path().join(&files[0])).expect("remove the oldest segment");
    let (mut spool, report) = Spool::open(dir.path(), cfg).expect("open");
    assert_eq!(report.batches_emptied, 1, "{report}");
    let pending = spool.pending().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].seq, second.seq);
    let kept: Vec<u64> = pending[0].records.iter().map(|r| r.id).collect();
    assert!(
        !kept.is_empty() && kept.len() < second.records.len(),
        "{kept:?}"
    );
    assert_eq!(
        *kept.last().expect("kept"),
        second.records.last().expect("records").id
    );
    assert!(!spool.ack(first.seq).expect("ack").known);
    let next = spool
        .cut(Lane::Backfill, 1, usize::MAX)
        .expect("cut")
        .expect("batch");
    assert!(next.seq > second.seq);
}

#[test]
fn the_ledger_is_compacted_and_its_state_survives_a_restart() {
    // On the in-memory file layer: thousands of fsyncs would be slow on a real disk.
    let sim = super::sim_fs::SimFs::new();
    let dir = Path::new("/spool");
    let open_sim = || {
        let fs: std::sync::Arc<dyn super::FileLayer> = sim.clone();
        Spool::open_with(fs, dir, SpoolConfig::default()).expect("open")
    };
    let (mut spool, _) = open_sim();
    let mut last_unacked = None;
    for i in 0..3000u64 {
        spool.append(&payload(i, 4), 1).expect("append");
        spool.sync().expect("sync");
        let batch = spool
            .cut(Lane::Live, 1, usize::MAX)
            .expect("cut")
            .expect("batch");
        if i % 100 == 0 {
            last_unacked = Some(batch.seq);
        } else {
            spool.ack(batch.seq).expect("ack");
        }
    }
    let ledger_len = sim.read(&dir.join("ledger.log")).expect("ledger").len();
    assert!(
        ledger_len < 64 * 1024 + 4096,
        "ledger not compacted: {ledger_len} bytes"
    );
    drop(spool);
    let (spool, report) = open_sim();
    assert!(report.is_clean(), "{report}");
    assert_eq!(spool.pending_seqs().len(), 30);
    assert_eq!(spool.pending_seqs().last().copied(), last_unacked);
    assert_eq!(spool.stats().next_seq, 3001);
    assert_eq!(
        spool.stats().uncut_records,
        0,
        "acked records do not come back"
    );
}

#[test]
fn a_stale_compaction_file_is_removed_and_the_old_ledger_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    spool.append(b"kept", 1).expect("append");
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Live, 1, usize::MAX)
        .expect("cut")
        .expect("batch");
    drop(spool);
    fs::write(dir.path().join("ledger.log.tmp"), b"half a snapshot").expect("write tmp");
    let (spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert!(report.foreign_files.is_empty());
    assert!(!dir.path().join("ledger.log.tmp").exists());
    assert_eq!(spool.pending_seqs(), vec![batch.seq]);
}

#[test]
fn a_corrupt_ledger_entry_in_the_middle_keeps_the_entries_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..4 {
        spool.append(&payload(i, 8), 1).expect("append");
    }
    spool.sync().expect("sync");
    let first = spool
        .cut(Lane::Backfill, 1, usize::MAX)
        .expect("cut")
        .expect("batch");
    let second = spool
        .cut(Lane::Backfill, 1, usize::MAX)
        .expect("cut")
        .expect("batch");
    spool.ack(second.seq).expect("ack");
    drop(spool);
    let path = dir.path().join("ledger.log");
    let mut bytes = fs::read(&path).expect("read");
    // The ledger is: snapshot, cut 1, cut 2, ack 2. Damage cut 1's body.
    let mut offsets = Vec::new();
    record::scan(&bytes, 0, &mut |frame| offsets.push(frame.offset));
    assert_eq!(offsets.len(), 4);
    bytes[offsets[1] + record::FRAME_HEADER_LEN] ^= 0xFF;
    fs::write(&path, &bytes).expect("write");
    let (mut spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(report.ledger_corrupt_regions, 1, "{report}");
    assert!(!report.seq_jumped);
    // The lost cut's record is sent again under a new seq; the later ack still holds.
    assert!(spool.pending_seqs().is_empty());
    let ids = cut_all(&mut spool);
    assert_eq!(ids, vec![first.records[0].id, 3, 4]);
    assert_eq!(spool.stats().next_seq, 4, "seqs 1 and 2 stay used");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path());
    let err = Spool::open(dir.path(), SpoolConfig::default()).expect_err("the directory is in use");
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    drop(first);
    let (_spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("reopen");
    assert!(
        report.foreign_files.is_empty(),
        "the lock file is the spool's own"
    );
    assert!(super::inspect(dir.path())
        .expect("inspect")
        .foreign_files
        .is_empty());
}

#[test]
fn a_spool_keeps_its_random_epoch_across_reopens_and_a_wiped_directory_gets_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool_dir = dir.path().join("spool");
    let (mut spool, report) = Spool::open(&spool_dir, SpoolConfig::default()).expect("open");
    let epoch = spool.epoch();
    assert_ne!(epoch, 0);
    assert_eq!(
        (report.epoch, report.new_epoch),
        (epoch, Some(super::NewEpochReason::NewSpool))
    );
    assert!(report.is_clean(), "{report}");
    spool.append(b"one", 1).expect("append");
    spool.sync().expect("sync");
    let first = spool
        .cut(Lane::Live, 10, usize::MAX)
        .expect("cut")
        .expect("batch");
    spool.ack(first.seq).expect("ack");
    drop(spool);

    let (spool, report) = Spool::open(&spool_dir, SpoolConfig::default()).expect("reopen");
    assert_eq!((spool.epoch(), report.new_epoch), (epoch, None));
    assert!(
        report.to_string().contains(&format!("epoch {epoch}")),
        "{report}"
    );
    let inspected = super::inspect(&spool_dir).expect("inspect");
    assert_eq!(
        (
            inspected.epoch,
            inspected.epoch_file.as_str(),
            inspected.damaged
        ),
        (Some(epoch), "ok", false)
    );
    assert!(inspected.to_string().contains(&format!("epoch {epoch}")));
    drop(spool);

    // Re-imaged: the directory is gone, seqs start at 1 again, under a new epoch.
    fs::remove_dir_all(&spool_dir).expect("wipe");
    let (mut spool, report) = Spool::open(&spool_dir, SpoolConfig::default()).expect("open");
    assert_ne!(spool.epoch(), 0);
    assert_ne!(
        spool.epoch(),
        epoch,
        "a wiped spool must not reuse the epoch"
    );
    assert_eq!(report.new_epoch, Some(super::NewEpochReason::NewSpool));
    spool.append(b"two", 1).expect("append");
    spool.sync().expect("sync");
    let again = spool
        .cut(Lane::Live, 10, usize::MAX)
        .expect("cut")
        .expect("batch");
    assert_eq!(
        (first.seq, again.seq),
        (1, 1),
        "same seq, told apart by the epoch"
    );
}

#[test]
fn a_spool_without_an_epoch_file_gets_one_on_open_and_keeps_its_pending_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..3 {
        spool.append(&payload(i, 8), 1).expect("append");
    }
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Live, 2, usize::MAX)
        .expect("cut")
        .expect("batch");
    let old_epoch = spool.epoch();
    drop(spool);
    // A spool written before epochs (format v1) has no epoch file.
    fs::remove_file(dir.path().join("spool.epoch")).expect("remove epoch");
    let inspected = super::inspect(dir.path()).expect("inspect");
    assert_eq!(
        (
            inspected.epoch,
            inspected.epoch_file.as_str(),
            inspected.damaged
        ),
        (None, "missing", false)
    );
    let (spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(
        report.new_epoch,
        Some(super::NewEpochReason::EpochFileMissing)
    );
    assert!(report.is_clean(), "an upgrade is not damage: {report}");
    assert!(spool.epoch() != 0 && spool.epoch() != old_epoch);
    assert_eq!(spool.pending_seqs(), vec![batch.seq], "seqs carry on");
    let epoch = spool.epoch();
    drop(spool);
    assert_eq!(open(dir.path()).epoch(), epoch, "created once, then kept");
}

#[test]
fn a_damaged_epoch_file_or_a_lost_ledger_gets_a_new_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    spool.append(b"x", 1).expect("append");
    spool.sync().expect("sync");
    let epoch = spool.epoch();
    drop(spool);

    let path = dir.path().join("spool.epoch");
    let mut bytes = fs::read(&path).expect("read epoch");
    bytes[17] ^= 1;
    fs::write(&path, &bytes).expect("write epoch");
    let inspected = super::inspect(dir.path()).expect("inspect");
    assert_eq!(
        (inspected.epoch_file.as_str(), inspected.damaged),
        ("damaged", true)
    );
    let (spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(
        report.new_epoch,
        Some(super::NewEpochReason::EpochFileUnreadable)
    );
    assert!(!report.is_clean());
    let second = spool.epoch();
    assert!(second != 0 && second != epoch);
    drop(spool);

    // Ledger and segments deleted by hand, the epoch file left behind: seqs restart
    // at 1, so the old epoch must not be used again.
    for entry in fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n != "spool.epoch") {
            fs::remove_file(path).expect("remove");
        }
    }
    let (spool, report) = Spool::open(dir.path(), SpoolConfig::default()).expect("open");
    assert_eq!(report.new_epoch, Some(super::NewEpochReason::LedgerLost));
    assert_eq!(spool.stats().next_seq, 1);
    assert!(spool.epoch() != 0 && spool.epoch() != second);
}

#[test]
fn external_bytes_count_against_the_cap_under_either_policy() {
    let external = CAP - 300 * 1024;
    // Backpressure refuses appends once the spool and the external bytes reach the cap.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) =
        Spool::open(dir.path(), small_config(FullPolicy::Backpressure)).expect("open");
    spool.set_external_bytes(external);
    let mut appended = 0u64;
    let err = loop {
        match spool.append(&payload(appended, 1000), 1) {
            Ok(_) => appended += 1,
            Err(err) => break err,
        }
        assert!(appended < 10_000, "the cap must stop appends");
    };
    assert!(err.is_full(), "{err}");
    let stats = spool.stats();
    assert_eq!(stats.external_bytes, external);
    assert!(stats.bytes_on_disk + external <= CAP, "{stats:?}");
    assert!(stats.fill_ratio() > 0.9, "{stats:?}");
    assert!(appended < 300, "{appended} records of 1000 bytes");
    spool.set_external_bytes(0);
    spool
        .append(b"room again", 1)
        .expect("bytes freed outside the spool make room");

    // DropOldest evicts to keep the sum under the cap.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) =
        Spool::open(dir.path(), small_config(FullPolicy::DropOldest)).expect("open");
    spool.set_external_bytes(external);
    for i in 0..2000 {
        spool.append(&payload(i, 1000), 1).expect("append");
        assert!(spool.stats().bytes_on_disk + external <= CAP);
    }
    assert!(spool.stats().dropped_records_total > 1500);
    // External bytes that leave no room at all: full under either policy.
    spool.set_external_bytes(CAP);
    assert!(spool.append(b"no room", 1).expect_err("full").is_full());
}

#[test]
fn a_split_moves_the_older_half_to_a_new_seq_durably_and_the_rest_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = open(dir.path());
    for i in 0..10 {
        spool.append(&payload(i, 20), 2).expect("append");
    }
    spool.sync().expect("sync");
    let batch = spool
        .cut(Lane::Live, 100, usize::MAX)
        .expect("cut")
        .expect("a batch");
    assert_eq!((batch.seq, batch.records.len()), (1, 10));
    let super::SplitOutcome::Split(older) = spool.split(1).expect("split") else {
        panic!("ten records split");
    };
    assert_eq!(older.seq, 2);
    assert_eq!(older.lane, Lane::Live);
    assert_eq!(
        older.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // The sender of seq 1 is handed what is left of it.
    let super::SendCheck::Changed { batch: rest, .. } = spool.begin_send(1, 0).expect("begin")
    else {
        panic!("the split batch changed");
    };
    assert_eq!(
        rest.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![6, 7, 8, 9, 10]
    );
    spool.end_send(1);
    let stats = spool.stats();
    assert_eq!(
        (
            stats.pending_batches,
            stats.pending_records,
            stats.pending_readings
        ),
        (2, 10, 20)
    );
    assert_eq!(stats.next_seq, 3);

    // Both halves survive a restart under their seqs.
    drop(spool);
    let mut spool = open(dir.path());
    let pending = spool.pending().expect("pending");
    let ids = |seq: u64| -> Vec<u64> {
        pending
            .iter()
            .find(|b| b.seq == seq)
            .expect("pending seq")
            .records
            .iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(pending.len(), 2);
    assert_eq!(ids(1), vec![6, 7, 8, 9, 10]);
    assert_eq!(ids(2), vec![1, 2, 3, 4, 5]);

    // Split down to single records; a single record cannot be split.
    let mut seqs = vec![1, 2];
    while let Some(seq) = seqs.pop() {
        match spool.split(seq).expect("split") {
            super::SplitOutcome::Split(part) => {
                seqs.push(seq);
                seqs.push(part.seq);
            }
            super::SplitOutcome::Single => {
                let report = spool.ack(seq).expect("ack");
                assert_eq!((report.records, report.readings), (1, 2));
            }
            super::SplitOutcome::Gone => panic!("seq {seq} is pending"),
        }
    }
    assert!(matches!(
        spool.split(1).expect("split"),
        super::SplitOutcome::Gone
    ));
    let stats = spool.stats();
    assert_eq!((stats.pending_batches, stats.uncut_records), (0, 0));
    assert_eq!(stats.next_seq, 11, "one new seq per split");
    drop(spool);
    let spool = open(dir.path());
    assert!(spool.pending().expect("pending").is_empty());
}

#[test]
fn eviction_after_a_split_trims_the_halves_and_counts_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 200 records of 1000 bytes span two segments of about 127 records.
    let (mut spool, batch) = full_spool_with_a_batch(dir.path(), 200);
    let super::SplitOutcome::Split(older) = spool.split(batch.seq).expect("split") else {
        panic!("200 records split");
    };
    assert_eq!(older.records.len(), 100);
    let before = spool.stats();
    assert_eq!(before.pending_records, 200);
    let dropped = append_until_evicted(&mut spool);
    // The oldest segment held the whole older half and the start of the rest.
    assert!(older.records.iter().all(|r| r.id < dropped.below_id));
    let lost_from_rest = batch.records[100..]
        .iter()
        .filter(|r| r.id < dropped.below_id)
        .count() as u64;
    assert!(lost_from_rest > 0);
    assert_eq!(dropped.records, 100 + lost_from_rest);
    assert!(matches!(
        spool.begin_send(older.seq, 0).expect("begin"),
        super::SendCheck::Gone
    ));
    // The rest was trimmed twice (split, eviction): its sender gets what is left.
    let super::SendCheck::Changed { batch: rest, trims } =
        spool.begin_send(batch.seq, 0).expect("begin")
    else {
        panic!("the rest changed");
    };
    assert_eq!(trims, 2);
    assert_eq!(rest.records.len() as u64, 100 - lost_from_rest);
    assert_eq!(spool.stats().pending_records, 100 - lost_from_rest);
    assert!(spool.ack(batch.seq).expect("ack").known);
    let stats = spool.stats();
    assert_eq!((stats.pending_batches, stats.pending_records), (0, 0));
    assert_eq!(stats.dropped_records_total, dropped.records);
}
