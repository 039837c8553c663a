//! Unit tests of the ingest log: recovery, append errors, retention,
//! reopening, group commit, and a property test of read-after-reopen.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fieldpulse_proto::v1::{Batch, Series};
use proptest::prelude::*;
use prost::Message;

use super::writer::{FileLayer, SegmentFile, StdFileLayer};
use super::*;

fn batch(gateway: &str, spool_epoch: u64, seq: u64) -> Batch {
    let mut series = Series {
        asset_id: format!("asset-{}", seq % 3),
        sensor: "temp".into(),
        ..Default::default()
    };
    for i in 0..4 {
        series.push(1_700_000_000_000 + i * 1_000, seq as f64 + i as f64);
    }
    Batch {
        gateway_id: gateway.into(),
        seq,
        spool_epoch,
        series: vec![series],
        ..Default::default()
    }
}

fn encoded_len(b: &Batch) -> u64 {
    frame::HEADER_BYTES + b.encoded_len() as u64
}

async fn append(log: &IngestLog, b: &Batch) -> Result<u64, LogError> {
    log.append(
        &b.gateway_id,
        b.spool_epoch,
        b.seq,
        Bytes::from(b.encode_to_vec()),
    )
    .await
}

fn read_all(log: &IngestLog, from: u64) -> Result<Vec<LogRecord>, LogError> {
    let mut consumer = log.consumer("reader")?;
    consumer.read(from, usize::MAX, Duration::ZERO)
}

fn seqs(records: &[LogRecord]) -> Vec<(u64, u64)> {
    records.iter().map(|r| (r.offset, r.batch.seq)).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn corrupt_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".corrupt-")
        })
        .count()
}

fn small_segments() -> LogConfig {
    LogConfig {
        // Every frame of these tests is larger: one record per segment.
        segment_bytes: 1,
        retention: Duration::ZERO,
        ..LogConfig::default()
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    for seq in 1..=3 {
        assert_eq!(append(&log, &batch("gw", 7, seq)).await.unwrap(), seq - 1);
    }
    drop(log);
    let seg = dir.path().join(segment::file_name(0));
    let full_len = std::fs::metadata(&seg).unwrap().len();
    // A fourth frame whose header promises more than was written.
    let mut torn = Vec::new();
    frame::encode(&mut torn, 3, 1, &batch("gw", 7, 4).encode_to_vec());
    torn.truncate(torn.len() - 5);
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&torn)
        .unwrap();

    let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(recovered.truncated_bytes, torn.len() as u64);
    assert_eq!((recovered.skipped_bytes, recovered.skipped_frames), (0, 0));
    assert_eq!(recovered.end_offset, 3);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), full_len);
    assert_eq!(corrupt_files(dir.path()), 1);
    assert_eq!(recovered.dedupe[&("gw".to_string(), 7)].contiguous(), 3);
    // The re-sent fourth batch gets the offset the torn one never had.
    assert_eq!(append(&log, &batch("gw", 7, 4)).await.unwrap(), 3);
    let records = read_all(&log, 0).unwrap();
    assert_eq!(seqs(&records), vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
    assert_eq!(records[3].batch, batch("gw", 7, 4));
}

#[tokio::test]
async fn a_flipped_bit_mid_log_is_skipped_and_later_batches_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    for seq in 1..=4 {
        append(&log, &batch("gw", 7, seq)).await.unwrap();
    }
    drop(log);
    let seg = dir.path().join(segment::file_name(0));
    let frame_len = encoded_len(&batch("gw", 7, 1));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let at = frame_len + frame::HEADER_BYTES + 3;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop(file);

    let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(recovered.skipped_frames, 1);
    assert_eq!(recovered.skipped_bytes, frame_len);
    assert_eq!(recovered.truncated_bytes, 0);
    assert_eq!(recovered.end_offset, 4);
    assert_eq!(corrupt_files(dir.path()), 1);
    let set = &recovered.dedupe[&("gw".to_string(), 7)];
    assert!(set.contains(1) && !set.contains(2) && set.contains(3) && set.contains(4));
    // Readers skip the damaged frame too; offsets keep their meaning.
    assert_eq!(append(&log, &batch("gw", 7, 2)).await.unwrap(), 4);
    let records = read_all(&log, 0).unwrap();
    assert_eq!(seqs(&records), vec![(0, 1), (2, 3), (3, 4), (4, 2)]);
    assert_eq!(log.stats().read_skipped_bytes, frame_len);
}

#[tokio::test]
async fn readers_resync_past_damage_in_a_segment_open_did_not_scan() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 3 * encoded_len(&batch("gw", 1, 1)),
        ..LogConfig::default()
    };
    let (log, _) = IngestLog::open(dir.path(), config.clone()).unwrap();
    for seq in 1..=7 {
        append(&log, &batch("gw", 1, seq)).await.unwrap();
    }
    drop(log);
    assert_eq!(segment_files(dir.path()).len(), 3);
    // Damage the middle frame of the first segment (covered by the snapshot).
    let seg = dir.path().join(segment::file_name(0));
    let frame_len = encoded_len(&batch("gw", 1, 1));
    let file = OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&[0xff; 4], frame_len + 30).unwrap();
    drop(file);
    let (log, recovered) = IngestLog::open(dir.path(), config).unwrap();
    assert_eq!(
        recovered.skipped_bytes, 0,
        "open scans only after the snapshot"
    );
    assert!(recovered.dedupe[&("gw".to_string(), 1)].contains(2));
    let records = read_all(&log, 0).unwrap();
    assert_eq!(
        seqs(&records),
        vec![(0, 1), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]
    );
    assert_eq!(log.stats().read_skipped_bytes, frame_len);
}

/// A layer whose writes can be made to fail halfway (ENOSPC after writing
/// half the buffer, as a full disk does) and whose syncs can be held.
#[derive(Clone, Default)]
struct FaultLayer {
    fail_writes: Arc<AtomicBool>,
    fail_set_len: Arc<AtomicBool>,
    hold_syncs: Arc<(Mutex<bool>, Condvar)>,
    syncs: Arc<AtomicU64>,
}

impl FaultLayer {
    fn hold(&self, held: bool) {
        let (lock, cv) = &*self.hold_syncs;
        *lock.lock().unwrap() = held;
        cv.notify_all();
    }
}

struct FaultFile {
    file: File,
    layer: FaultLayer,
}

impl FileLayer for FaultLayer {
    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(FaultFile {
            file: OpenOptions::new().write(true).open(path)?,
            layer: self.clone(),
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(FaultFile {
            file,
            layer: self.clone(),
        }))
    }
}

impl SegmentFile for FaultFile {
    fn write_all_at(&mut self, buf: &[u8], pos: u64) -> io::Result<()> {
        if self.layer.fail_writes.load(Ordering::SeqCst) {
            // Half the frames reach the disk, then it is full.
            FileExt::write_all_at(&self.file, &buf[..buf.len() / 2], pos)?;
            return Err(io::Error::from_raw_os_error(28));
        }
        FileExt::write_all_at(&self.file, buf, pos)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let (lock, cv) = &*self.layer.hold_syncs;
        let _held = cv.wait_while(lock.lock().unwrap(), |held| *held).unwrap();
        self.layer.syncs.fetch_add(1, Ordering::SeqCst);
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if self.layer.fail_set_len.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.set_len(len)
    }
}

#[tokio::test]
async fn a_failed_append_is_rolled_back_and_later_appends_stay_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let layer = FaultLayer::default();
    let (log, _) =
        IngestLog::open_with_layer(dir.path(), LogConfig::default(), Arc::new(layer.clone()))
            .unwrap();
    append(&log, &batch("gw", 1, 1)).await.unwrap();
    let seg = dir.path().join(segment::file_name(0));
    let good_len = std::fs::metadata(&seg).unwrap().len();

    layer.fail_writes.store(true, Ordering::SeqCst);
    let err = append(&log, &batch("gw", 1, 2)).await.unwrap_err();
    assert!(err.to_string().contains(".seg"), "{err}");
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    assert_eq!(log.stats().append_errors, 1);
    assert_eq!(log.end_offset(), 1);

    layer.fail_writes.store(false, Ordering::SeqCst);
    assert_eq!(append(&log, &batch("gw", 1, 3)).await.unwrap(), 1);
    assert_eq!(append(&log, &batch("gw", 1, 2)).await.unwrap(), 2);
    drop(log);

    let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((recovered.truncated_bytes, recovered.skipped_bytes), (0, 0));
    assert_eq!(recovered.dedupe[&("gw".to_string(), 1)].contiguous(), 3);
    assert_eq!(
        seqs(&read_all(&log, 0).unwrap()),
        vec![(0, 1), (1, 3), (2, 2)]
    );
}

#[tokio::test]
async fn a_rollback_that_fails_is_retried_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let layer = FaultLayer::default();
    let (log, _) =
        IngestLog::open_with_layer(dir.path(), LogConfig::default(), Arc::new(layer.clone()))
            .unwrap();
    append(&log, &batch("gw", 1, 1)).await.unwrap();
    let seg = dir.path().join(segment::file_name(0));
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // The write fails halfway and so does the truncation (EIO): half a
    // frame stays on disk for now.
    layer.fail_writes.store(true, Ordering::SeqCst);
    layer.fail_set_len.store(true, Ordering::SeqCst);
    append(&log, &batch("gw", 1, 2)).await.unwrap_err();
    assert!(std::fs::metadata(&seg).unwrap().len() > good_len);
    // While truncation keeps failing, appends fail rather than land behind it.
    layer.fail_writes.store(false, Ordering::SeqCst);
    append(&log, &batch("gw", 1, 3)).await.unwrap_err();
    layer.fail_set_len.store(false, Ordering::SeqCst);
    assert_eq!(append(&log, &batch("gw", 1, 4)).await.unwrap(), 1);
    drop(log);
    let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((recovered.truncated_bytes, recovered.skipped_bytes), (0, 0));
    assert_eq!(seqs(&read_all(&log, 0).unwrap()), vec![(0, 1), (1, 4)]);
}

#[tokio::test]
async fn retention_needs_every_consumer_past_a_segment_and_its_age() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = IngestLog::open(dir.path(), small_segments()).unwrap();
    // No consumer registered: nothing is deleted.
    for seq in 1..=5 {
        append(&log, &batch("gw", 1, seq)).await.unwrap();
    }
    assert_eq!(segment_files(dir.path()).len(), 5);
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 0);

    let mut scorer = log.consumer("scorer").unwrap();
    let mut archiver = log.consumer("archiver").unwrap();
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 0);
    scorer.commit(4).unwrap();
    archiver.commit(2).unwrap();
    // The slower consumer holds segments 2 and 3.
    let report = log.apply_retention().unwrap();
    assert_eq!((report.segments_deleted, report.start_offset), (2, 2));
    archiver.commit(5).unwrap();
    // The active segment (offset 4) is never deleted.
    let report = log.apply_retention().unwrap();
    assert_eq!((report.segments_deleted, report.start_offset), (2, 4));
    assert_eq!(segment_files(dir.path()), vec![segment::file_name(4)]);

    let err = scorer.read(1, 10, Duration::ZERO).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetDeleted {
                offset: 1,
                oldest: 4
            }
        ),
        "{err}"
    );
    assert_eq!(
        seqs(&scorer.read(4, 10, Duration::ZERO).unwrap()),
        vec![(4, 5)]
    );
    assert!(matches!(
        scorer.commit(3),
        Err(LogError::CommitOutOfRange { .. })
    ));
    assert!(matches!(
        scorer.commit(6),
        Err(LogError::CommitOutOfRange { .. })
    ));
}

#[tokio::test]
async fn retention_keeps_segments_younger_than_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention: Duration::from_secs(3600),
        ..small_segments()
    };
    let (log, _) = IngestLog::open(dir.path(), config).unwrap();
    for seq in 1..=3 {
        append(&log, &batch("gw", 1, seq)).await.unwrap();
    }
    let mut consumer = log.consumer("scorer").unwrap();
    consumer.commit(3).unwrap();
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 0);
    assert_eq!(segment_files(dir.path()).len(), 3);
}

#[tokio::test]
async fn reopening_keeps_offsets_consumers_and_dedupe_across_retention() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = IngestLog::open(dir.path(), small_segments()).unwrap();
        for seq in [1, 2, 5] {
            append(&log, &batch("gw-a", 1, seq)).await.unwrap();
        }
        append(&log, &batch("gw-b", 9, 1)).await.unwrap();
        append(&log, &batch("gw-a", 2, 1)).await.unwrap();
        let mut consumer = log.consumer("scorer").unwrap();
        consumer.commit(5).unwrap();
        assert_eq!(log.apply_retention().unwrap().segments_deleted, 4);
    }
    let (log, recovered) = IngestLog::open(dir.path(), small_segments()).unwrap();
    assert_eq!((recovered.start_offset, recovered.end_offset), (4, 5));
    assert_eq!(recovered.records_scanned, 1);
    let old_epoch = &recovered.dedupe[&("gw-a".to_string(), 1)];
    assert_eq!(old_epoch.contiguous(), 2);
    assert!(old_epoch.contains(5) && !old_epoch.contains(3));
    assert!(recovered.dedupe[&("gw-b".to_string(), 9)].contains(1));
    assert!(recovered.dedupe[&("gw-a".to_string(), 2)].contains(1));
    assert_eq!(log.consumer("scorer").unwrap().committed(), 5);
    assert_eq!(append(&log, &batch("gw-a", 1, 3)).await.unwrap(), 5);
    assert_eq!(
        seqs(
            &log.consumer("scorer")
                .unwrap()
                .read(5, 10, Duration::ZERO)
                .unwrap()
        ),
        vec![(5, 3)]
    );
}

#[test]
fn concurrent_commits_share_one_fsync() {
    const N: u64 = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layer = FaultLayer::default();
    let (log, _) =
        IngestLog::open_with_layer(dir.path(), LogConfig::default(), Arc::new(layer.clone()))
            .unwrap();
    // Hold the first sync until every other commit is queued behind it.
    layer.hold(true);
    let tasks: Vec<_> = (1..=N)
        .map(|seq| {
            let log = log.clone();
            runtime.spawn(async move { append(&log, &batch("gw", 1, seq)).await })
        })
        .collect();
    while log.inner.shared.submitted.load(Ordering::SeqCst) < N {
        std::thread::sleep(Duration::from_millis(1));
    }
    layer.hold(false);
    let mut offsets: Vec<u64> = runtime.block_on(async {
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await.unwrap().unwrap());
        }
        offsets
    });
    offsets.sort_unstable();
    assert_eq!(offsets, (0..N).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(stats.batches_synced, N);
    // The first commit's group is 1 to N (it may have drained some of the
    // queue before its held sync); whatever queued behind it is one more group.
    assert!(stats.fsyncs <= 2, "{stats:?}");
    assert_eq!(layer.syncs.load(Ordering::SeqCst), stats.fsyncs);
}

#[test]
fn concurrent_commits_on_a_real_disk_group_up() {
    const N: u64 = 200;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (log, _) =
        IngestLog::open_with_layer(dir.path(), LogConfig::default(), Arc::new(StdFileLayer))
            .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (1..=N)
            .map(|seq| {
                let log = log.clone();
                tokio::spawn(async move { append(&log, &batch("gw", 1, seq)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    });
    let stats = log.stats();
    // Printed for the record (`--nocapture`); timing is not asserted.
    eprintln!(
        "group commit: {N} concurrent commits -> {} fsyncs",
        stats.fsyncs
    );
    assert_eq!(stats.batches_synced, N);
    assert!(stats.fsyncs >= 1 && stats.fsyncs <= N);
}

#[tokio::test]
async fn a_reader_waits_for_new_records_and_follows_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2 * encoded_len(&batch("gw", 1, 1)),
        ..LogConfig::default()
    };
    let (log, _) = IngestLog::open(dir.path(), config).unwrap();
    let mut consumer = log.consumer("scorer").unwrap();
    assert!(consumer
        .read(0, 10, Duration::from_millis(20))
        .unwrap()
        .is_empty());
    let reader = {
        let mut consumer = log.consumer("follower").unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut next = 0;
            while seen.len() < 5 {
                for record in consumer.read(next, 2, Duration::from_secs(30)).unwrap() {
                    next = record.offset + 1;
                    seen.push(record.batch.seq);
                }
            }
            seen
        })
    };
    for seq in 1..=5 {
        append(&log, &batch("gw", 1, seq)).await.unwrap();
    }
    assert_eq!(reader.join().unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(segment_files(dir.path()).len(), 3);
    assert_eq!(consumer.end_offset(), 5);
}

#[derive(Debug, Clone)]
enum Op {
    Append { gateway: u8, epoch: u8, seq: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..2, 0u8..2, 1u8..20).prop_map(|(gateway, epoch, seq)| Op::Append { gateway, epoch, seq }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn records_read_back_after_reopen_as_appended(
        ops in proptest::collection::vec(op(), 1..40),
        frames_per_segment in 1u64..5,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: frames_per_segment * encoded_len(&batch("gw-0", 0, 10)),
            ..LogConfig::default()
        };
        let (mut log, _) = IngestLog::open(dir.path(), config.clone()).unwrap();
        let mut model: Vec<Batch> = Vec::new();
        let mut model_sets: BTreeSet<(String, u64, u64)> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Append { gateway, epoch, seq } => {
                    let b = batch(&format!("gw-{gateway}"), u64::from(epoch), u64::from(seq));
                    let offset = runtime.block_on(append(&log, &b)).unwrap();
                    prop_assert_eq!(offset, model.len() as u64);
                    model_sets.insert((b.gateway_id.clone(), b.spool_epoch, b.seq));
                    model.push(b);
                }
                Op::Reopen => {
                    drop(log);
                    let (reopened, recovered) = IngestLog::open(dir.path(), config.clone()).unwrap();
                    log = reopened;
                    prop_assert_eq!(recovered.end_offset, model.len() as u64);
                    let mut sets = BTreeSet::new();
                    for ((gateway, epoch), set) in &recovered.dedupe {
                        for seq in 1..20 {
                            if set.contains(seq) {
                                sets.insert((gateway.clone(), *epoch, seq));
                            }
                        }
                    }
                    prop_assert_eq!(&sets, &model_sets);
                }
            }
        }
        let records = read_all(&log, 0).unwrap();
        let batches: Vec<Batch> = records.iter().map(|r| r.batch.clone()).collect();
        prop_assert_eq!(batches, model.clone());
        // A read from any offset sees exactly the suffix.
        if !model.is_empty() {
            let from = model.len() as u64 / 2;
            let mut consumer = log.consumer("reader").unwrap();
            let suffix = consumer.read(from, usize::MAX, Duration::ZERO).unwrap();
            prop_assert_eq!(suffix.len() as u64, model.len() as u64 - from);
            prop_assert_eq!(suffix[0].offset, from);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// One flipped bit anywhere costs at most the record whose frame holds
    /// it; every other acknowledged record reads back unchanged, at its offset.
    #[test]
    fn a_flipped_bit_anywhere_costs_at_most_its_own_record(
        n_records in 1u64..30,
        frames_per_segment in 1u64..6,
        flip_at in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: frames_per_segment * encoded_len(&batch("gw", 3, 10)),
            ..LogConfig::default()
        };
        let (log, _) = IngestLog::open(dir.path(), config.clone()).unwrap();
        let model: Vec<Batch> = (1..=n_records).map(|seq| batch("gw", 3, seq)).collect();
        for b in &model {
            runtime.block_on(append(&log, b)).unwrap();
        }
        drop(log);
        // Pick a byte over all segments, in offset order.
        let mut files: Vec<(std::path::PathBuf, u64)> = segment_files(dir.path())
            .into_iter()
            .map(|name| {
                let path = dir.path().join(name);
                let len = std::fs::metadata(&path).unwrap().len();
                (path, len)
            })
            .collect();
        files.retain(|(_, len)| *len > 0);
        let total: u64 = files.iter().map(|(_, len)| len).sum();
        let mut at = flip_at.index(total as usize) as u64;
        let (path, _) = files
            .iter()
            .find(|(_, len)| {
                if at < *len {
                    true
                } else {
                    at -= len;
                    false
                }
            })
            .unwrap();
        let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ (1 << bit)], at).unwrap();
        drop(file);

        let (log, recovered) = IngestLog::open(dir.path(), config).unwrap();
        let records = read_all(&log, 0).unwrap();
        prop_assert!(records.len() as u64 >= n_records - 1, "{} of {}", records.len(), n_records);
        for record in &records {
            prop_assert_eq!(&record.batch, &model[record.offset as usize]);
        }
        let lost = n_records - records.len() as u64;
        prop_assert!(lost <= 1);
        prop_assert!(lost == 0 || corrupt_files(dir.path()) == 1 || log.stats().read_skipped_bytes > 0);
        // Appends continue after the surviving records, and an offset a
        // reader may have seen is not given to another record; only a flip
        // in the last frame's length field looks like a torn write.
        let next = runtime.block_on(append(&log, &batch("gw", 3, 99))).unwrap();
        prop_assert_eq!(next, recovered.end_offset);
        let (last_path, last_len) = files.last().unwrap();
        let frame_start = last_len - encoded_len(&model[0]);
        let in_last_length_field = path == last_path && at >= frame_start && at < frame_start + 4;
        if !in_last_length_field {
            prop_assert_eq!(next, n_records);
        }
    }
}
