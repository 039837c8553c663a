//! Opening a spool directory: scan every segment, replay the ledger, repair what
//! a crash can leave behind, and rebuild the in-memory state.
//!
//! Recovery never fails because of bad data, only on IO errors: damaged bytes are
//! skipped and counted in the [`RecoveryReport`], torn tails are truncated, and a
//! fresh ledger snapshot and a fresh active segment are written before the spool
//! is handed out.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    ops::Range,
    path::Path,
    sync::Arc,
};

use tracing::{info, warn};

use super::{
    epoch::{self, EpochFile, EPOCH_FILE, EPOCH_TMP_FILE},
    fs::{FileLayer, LOCK_FILE},
    ledger::{CutEntry, Ledger, LedgerState, LEDGER_FILE, LEDGER_TMP_FILE},
    ranges::RangeSet,
    segment::{self, HeaderState, Segment, SegmentHeader, Totals, SEGMENT_HEADER_LEN},
    store::{PendingBatch, Spool},
    NewEpochReason, RecoveryReport, SpoolConfig, SpoolError,
};

/// Records of one pending batch found on disk.
#[derive(Debug, Default)]
struct Survivors {
    ranges: Vec<Range<u64>>,
    per_segment: Vec<(u64, Totals)>,
}

/// Extends ascending `ranges` by `id`.
fn push_id(ranges: &mut Vec<Range<u64>>, id: u64) {
    match ranges.last_mut() {
        Some(last) if last.end == id => last.end = id + 1,
        _ => ranges.push(id..id + 1),
    }
}

fn add_to_segment(per_segment: &mut Vec<(u64, Totals)>, seg_id: u64, one: Totals) {
    match per_segment.last_mut() {
        Some((id, totals)) if *id == seg_id => totals.add(one),
        _ => per_segment.push((seg_id, one)),
    }
}

/// Opens and recovers the spool in `dir` (config already validated).
pub(super) fn recover(
    fs: Arc<dyn FileLayer>,
    dir: &Path,
    cfg: SpoolConfig,
) -> Result<(Spool, RecoveryReport), SpoolError> {
    fs.create_dir_all(dir)
        .map_err(|source| SpoolError::io("creating spool directory", dir, source))?;
    let lock = fs.lock_dir(dir).map_err(|source| {
        if source.kind() == io::ErrorKind::WouldBlock {
            SpoolError::Locked {
                dir: dir.to_path_buf(),
            }
        } else {
            SpoolError::io("locking spool directory", &dir.join(LOCK_FILE), source)
        }
    })?;
    let listing = fs
        .list_dir(dir)
        .map_err(|source| SpoolError::io("listing spool directory", dir, source))?;
    let mut report = RecoveryReport::default();
    let mut segment_files: Vec<(u64, String)> = Vec::new();
    for entry in listing {
        if let Some(segment_id) = segment::parse_file_name(&entry.name) {
            segment_files.push((segment_id, entry.name));
        } else if entry.name == LEDGER_TMP_FILE {
            // A compaction that crashed before its rename: the old ledger is intact.
            let path = dir.join(LEDGER_TMP_FILE);
            fs.remove_file(&path)
                .map_err(|source| SpoolError::io("removing stale ledger", &path, source))?;
        } else if entry.name == EPOCH_TMP_FILE {
            // An epoch write that crashed before its rename: nothing used that epoch.
            let path = dir.join(EPOCH_TMP_FILE);
            fs.remove_file(&path)
                .map_err(|source| SpoolError::io("removing stale spool epoch", &path, source))?;
        } else if ![LEDGER_FILE, LOCK_FILE, EPOCH_FILE].contains(&entry.name.as_str()) {
            report.foreign_files.push(entry.name);
        }
    }
    segment_files.sort();
    report.foreign_files.sort();

    let loaded = Ledger::load(fs.as_ref(), dir)?;
    report.ledger_missing = loaded.missing;
    report.ledger_entries = loaded.entries;
    report.ledger_corrupt_regions = loaded.damage.corrupt_regions + loaded.bad_entries;
    report.ledger_torn_bytes = loaded.damage.tail_bytes;
    let state = &loaded.state;

    // The epoch. A new one whenever the old one cannot be trusted to cover the seqs
    // this spool will hand out: a new or upgraded spool, an unreadable epoch file,
    // or a lost ledger (its seq counter may restart below seqs already sent). A new
    // epoch is durable before any seq is handed out under it; it costs at most
    // duplicates of batches re-sent under it, never loss.
    let found = epoch::load(fs.as_ref(), dir)?;
    let new_epoch = match found {
        EpochFile::Valid(_) if loaded.snapshot_missing => Some(NewEpochReason::LedgerLost),
        EpochFile::Valid(_) => None,
        EpochFile::Missing if loaded.missing && segment_files.is_empty() => {
            Some(NewEpochReason::NewSpool)
        }
        EpochFile::Missing => Some(NewEpochReason::EpochFileMissing),
        EpochFile::Damaged | EpochFile::UnsupportedVersion(_) => {
            Some(NewEpochReason::EpochFileUnreadable)
        }
    };
    let spool_epoch = match (found.valid(), new_epoch) {
        (Some(epoch), None) => epoch,
        _ => {
            let mut fresh = epoch::random_epoch();
            while Some(fresh) == found.valid() {
                fresh = epoch::random_epoch();
            }
            epoch::store(fs.as_ref(), dir, fresh)?;
            fresh
        }
    };
    report.epoch = spool_epoch;
    report.new_epoch = new_epoch;

    // Which pending batch owns a record id: start -> (end, seq).
    let mut owner: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for cut in state.pending.values() {
        for range in &cut.ranges {
            owner.insert(range.start, (range.end, cut.seq));
        }
    }
    let owner_of = |id: u64| {
        owner
            .range(..=id)
            .next_back()
            .filter(|(_, &(end, _))| id < end)
            .map(|(_, &(_, seq))| seq)
    };

    let mut survivors: BTreeMap<u64, Survivors> = BTreeMap::new();
    let mut uncut = RangeSet::default();
    let mut uncut_run: Vec<Range<u64>> = Vec::new();
    let mut segments: VecDeque<Segment> = VecDeque::new();
    let mut finished: Vec<(u64, u64)> = Vec::new();
    let mut max_segment_id = 0u64;
    let mut last_id = 0u64;
    let mut max_seq_hint = 0u64;
    let mut record_id_floor = 1u64;

    for (segment_id, name) in &segment_files {
        max_segment_id = max_segment_id.max(*segment_id);
        let path = dir.join(name);
        let bytes = fs
            .read(&path)
            .map_err(|source| SpoolError::io("reading segment", &path, source))?;
        let mut seg = Segment::new(*segment_id, 0, 0);
        let mut first_frame_id: Option<u64> = None;
        let scan = segment::scan_segment(&bytes, &mut |frame| {
            // Ids grow across segments; an older id here can only be a stale copy.
            if frame.id <= last_id {
                return;
            }
            last_id = frame.id;
            first_frame_id.get_or_insert(frame.id);
            report.records += 1;
            seg.note_record(frame.id, frame.offset as u64);
            let one = Totals::one(frame.n_readings, frame.payload.len());
            if state.acked.contains(frame.id) {
                return;
            }
            report.records_unacked += 1;
            if let Some(seq) = owner_of(frame.id) {
                let batch = survivors.entry(seq).or_default();
                push_id(&mut batch.ranges, frame.id);
                add_to_segment(&mut batch.per_segment, *segment_id, one);
                seg.pending.add(one);
            } else {
                push_id(&mut uncut_run, frame.id);
                seg.uncut.add(one);
            }
        });
        report.segments += 1;
        match scan.header {
            HeaderState::UnsupportedVersion(version) => {
                warn!(file = %name, version, "Spool segment has an unsupported version; leaving it alone.");
                report.unsupported_segments.push(name.clone());
                continue;
            }
            HeaderState::Damaged => report.damaged_headers += 1,
            HeaderState::Valid(_) => {}
        }
        let header: Option<SegmentHeader> = scan.header.valid();
        if let Some(header) = header {
            max_seq_hint = max_seq_hint.max(header.seq_hint);
            record_id_floor = record_id_floor.max(header.first_record_id);
        }
        seg.first_id = match (header, first_frame_id) {
            (Some(h), Some(first)) => h.first_record_id.min(first),
            (Some(h), None) => h.first_record_id,
            (None, Some(first)) => first,
            (None, None) => last_id + 1,
        };
        if first_frame_id.is_none() {
            seg.end_id = seg.first_id;
        }
        let damage = scan.damage;
        report.corrupt_regions += damage.corrupt_regions;
        report.corrupt_bytes += damage.corrupt_bytes;
        report.records_lost += damage.records_lost;
        seg.len = bytes.len() as u64;
        if damage.tail_bytes > 0 {
            report.torn_tails += 1;
            report.torn_tail_bytes += damage.tail_bytes;
            fs.truncate(&path, damage.valid_end as u64)
                .map_err(|source| SpoolError::io("truncating torn segment tail", &path, source))?;
            seg.len = damage.valid_end as u64;
        }
        if seg.is_done() {
            finished.push((seg.id, seg.first_id));
        } else {
            segments.push_back(seg);
        }
    }
    for range in uncut_run {
        uncut.insert(range);
    }

    let next_record_id = (last_id + 1)
        .max(loaded.max_record_id_seen + 1)
        .max(state.next_record_id)
        .max(record_id_floor);
    let mut next_seq = state
        .next_seq
        .max(loaded.max_seq_seen + 1)
        .max(max_seq_hint)
        .max(1);
    if loaded.snapshot_missing && report.segments > 0 {
        // The seq counter is lost. Every cut since the newest segment was created
        // (whose header holds the counter then) took at least one record never cut
        // before, so at most `next_record_id` seqs can have been handed out since.
        next_seq += next_record_id;
        report.seq_jumped = true;
    }

    let mut pending = BTreeMap::new();
    for cut in state.pending.values() {
        match survivors.remove(&cut.seq) {
            Some(found) => {
                pending.insert(
                    cut.seq,
                    PendingBatch::new(cut.lane, found.ranges, found.per_segment),
                );
            }
            None => report.batches_emptied += 1,
        }
    }
    // Keep acked ids of finished segments in the first snapshot too: if their
    // deletion below does not become durable before a crash, they must not come
    // back as unsent records.
    let oldest_first_id = segments
        .iter()
        .map(|s| s.first_id)
        .chain(finished.iter().map(|&(_, first)| first))
        .min()
        .unwrap_or(next_record_id);
    let mut acked = state.acked.clone();
    acked.remove_below(oldest_first_id);

    // A fresh active segment: recovery never appends after data it did not write.
    let active_id = max_segment_id + 1;
    let active_path = dir.join(segment::file_name(active_id));
    let mut active_file = fs
        .create_new(&active_path)
        .map_err(|source| SpoolError::io("creating segment", &active_path, source))?;
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
    segment::encode_header(
        &mut header,
        SegmentHeader {
            segment_id: active_id,
            first_record_id: next_record_id,
            seq_hint: next_seq,
        },
    );
    active_file
        .write_all(&header)
        .and_then(|()| active_file.sync_data())
        .map_err(|source| SpoolError::io("writing segment", &active_path, source))?;
    segments.push_back(Segment::new(
        active_id,
        next_record_id,
        SEGMENT_HEADER_LEN as u64,
    ));

    // The new ledger snapshot also makes the active segment's directory entry durable.
    let ledger_state = LedgerState {
        next_seq,
        next_record_id,
        acked: acked.clone(),
        pending: pending
            .iter()
            .map(|(&seq, batch)| {
                (
                    seq,
                    CutEntry {
                        seq,
                        lane: batch.lane,
                        ranges: batch.ranges.clone(),
                    },
                )
            })
            .collect(),
    };
    let ledger = Ledger::create(fs.as_ref(), dir, &ledger_state, cfg.max_bytes)?;

    for &(segment_id, _) in &finished {
        let path = dir.join(segment::file_name(segment_id));
        fs.remove_file(&path)
            .map_err(|source| SpoolError::io("removing segment", &path, source))?;
        report.segments_removed += 1;
    }
    if !finished.is_empty() {
        fs.sync_dir(dir)
            .map_err(|source| SpoolError::io("syncing directory", dir, source))?;
    }

    report.batches_pending = pending.len() as u64;
    report.next_seq = next_seq;
    if report.is_clean() {
        info!(dir = %dir.display(), %report, "Spool opened.");
    } else {
        warn!(dir = %dir.display(), %report, "Spool opened after skipping damaged data.");
    }
    let spool = Spool::from_recovered(
        lock,
        fs,
        dir,
        cfg,
        segments,
        active_file,
        next_record_id,
        next_seq,
        uncut,
        acked,
        pending,
        ledger,
        spool_epoch,
    );
    Ok((spool, report))
}
