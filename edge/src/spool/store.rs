//! [`Spool`]: the single-owner state machine over segment files and the ledger.

use std::{
    collections::{BTreeMap, VecDeque},
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use tracing::warn;

use super::{
    fs::{AppendFile, DirLock, FileLayer, StdFileLayer},
    ledger::{self, CutEntry, Entry, Ledger, LedgerState},
    ranges::{ids_to_ranges, RangeSet},
    record,
    segment::{self, Segment, SegmentHeader, Totals, SEGMENT_HEADER_LEN},
    AckReport, Appended, CutBatch, CutEnd, Dropped, FullPolicy, Lane, RecoveryReport, SendCheck,
    SplitOutcome, SpoolConfig, SpoolError, SpoolRecord, SpoolStats,
};

/// Buffered frames are written out (without fsync) once they reach this size, so
/// appends without a sync keep memory bounded.
const FLUSH_BYTES: usize = 256 * 1024;

/// The crash-safe disk spool. See the [module docs](super) for the format and the
/// guarantees.
#[derive(Debug)]
pub struct Spool {
    /// Held for the spool's lifetime: one open spool per directory.
    _lock: DirLock,
    fs: Arc<dyn FileLayer>,
    dir: PathBuf,
    cfg: SpoolConfig,
    segment_bytes: u64,
    /// Ascending by id (and so by record id); the last one is the active segment.
    segments: VecDeque<Segment>,
    /// Sum of `Segment::len`.
    segments_len: u64,
    active_file: Box<dyn AppendFile>,
    active_path: PathBuf,
    /// Segments sealed since the last sync whose data is written but not fsynced.
    sealed_unsynced: Vec<(u64, PathBuf, Box<dyn AppendFile>)>,
    /// Frames appended to the active segment and not yet written to its file.
    write_buf: Vec<u8>,
    /// Bytes written to the active file since its last fsync.
    active_dirty: bool,
    /// A file was created or removed since the last directory fsync.
    dir_dirty: bool,
    /// First record id not yet fsynced; `next_record_id` when everything is synced.
    unsynced_from: u64,
    next_record_id: u64,
    next_seq: u64,
    /// Synced records not cut into a batch.
    uncut: RangeSet,
    /// Acked records whose segment file may still exist.
    acked: RangeSet,
    pending: BTreeMap<u64, PendingBatch>,
    ledger: Ledger,
    dropped_total: Totals,
    poisoned: bool,
    /// The spool epoch (never 0).
    epoch: u64,
    /// Bytes kept outside the spool that count against its cap (see
    /// [`Spool::set_external_bytes`]).
    external_bytes: u64,
    /// Where the last successful sync left the files, to roll back to when the filesystem is
    /// full (see [`Spool::append`] and [`Spool::sync`]).
    synced: SyncPoint,
}

/// The active segment as the last successful sync (or the open) left it.
#[derive(Debug, Clone, Copy, Default)]
struct SyncPoint {
    /// Id of the segment that was active.
    active_id: u64,
    /// Its length on disk (nothing was buffered).
    active_len: u64,
    /// One past its last record id.
    active_end_id: u64,
    /// Records appended to it since (they count in its `uncut` totals).
    appended: Totals,
}

/// A batch cut and not yet acked.
#[derive(Debug, Clone)]
pub(super) struct PendingBatch {
    /// The lane it was cut for.
    pub(super) lane: Lane,
    /// Its record ids, ascending (shrunk when segments are evicted).
    pub(super) ranges: Vec<Range<u64>>,
    /// Its totals per segment id.
    pub(super) per_segment: Vec<(u64, Totals)>,
    /// How many times eviction took records from it.
    pub(super) trims: u64,
    /// Between [`Spool::begin_send`] and [`Spool::end_send`] / [`Spool::ack`]: its
    /// records are in the sender's request body.
    pub(super) in_flight: bool,
    /// Records evicted while in flight: delivered if the send succeeds, dropped if not.
    pub(super) evicted_in_flight: Totals,
}

impl PendingBatch {
    /// A batch as cut (or recovered): untouched by eviction, not in flight.
    pub(super) fn new(
        lane: Lane,
        ranges: Vec<Range<u64>>,
        per_segment: Vec<(u64, Totals)>,
    ) -> Self {
        Self {
            lane,
            ranges,
            per_segment,
            trims: 0,
            in_flight: false,
            evicted_in_flight: Totals::default(),
        }
    }
}

impl PendingBatch {
    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for (_, part) in &self.per_segment {
            totals.add(*part);
        }
        totals
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers it.
    ///
    /// # Errors
    ///
    /// Only IO errors (naming the path) and an invalid config; damaged data on
    /// disk is skipped and counted in the [`RecoveryReport`].
    pub fn open(dir: &Path, cfg: SpoolConfig) -> Result<(Spool, RecoveryReport), SpoolError> {
        Self::open_with(Arc::new(StdFileLayer), dir, cfg)
    }

    /// Same as [`Spool::open`] over an injectable file layer.
    ///
    /// # Errors
    ///
    /// As [`Spool::open`].
    pub fn open_with(
        fs: Arc<dyn FileLayer>,
        dir: &Path,
        cfg: SpoolConfig,
    ) -> Result<(Spool, RecoveryReport), SpoolError> {
        cfg.validate()?;
        super::recovery::recover(fs, dir, cfg)
    }

    /// Assembles a spool from recovered parts (used by recovery).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_recovered(
        lock: DirLock,
        fs: Arc<dyn FileLayer>,
        dir: &Path,
        cfg: SpoolConfig,
        segments: VecDeque<Segment>,
        active_file: Box<dyn AppendFile>,
        next_record_id: u64,
        next_seq: u64,
        uncut: RangeSet,
        acked: RangeSet,
        pending: BTreeMap<u64, PendingBatch>,
        ledger: Ledger,
        epoch: u64,
    ) -> Spool {
        let active_id = segments
            .back()
            .expect("recovery always creates an active segment")
            .id;
        let segments_len = segments.iter().map(|s| s.len).sum();
        let active = segments.back().expect("checked above");
        let synced = SyncPoint {
            active_id,
            active_len: active.len,
            active_end_id: active.end_id,
            appended: Totals::default(),
        };
        Spool {
            synced,
            _lock: lock,
            active_path: dir.join(segment::file_name(active_id)),
            fs,
            dir: dir.to_path_buf(),
            segment_bytes: cfg.effective_segment_bytes(),
            cfg,
            segments,
            segments_len,
            active_file,
            sealed_unsynced: Vec::new(),
            write_buf: Vec::with_capacity(FLUSH_BYTES),
            active_dirty: false,
            dir_dirty: false,
            unsynced_from: next_record_id,
            next_record_id,
            next_seq,
            uncut,
            acked,
            pending,
            ledger,
            dropped_total: Totals::default(),
            poisoned: false,
            epoch,
            external_bytes: 0,
        }
    }

    /// The spool epoch: a random non-zero id created with the spool directory and
    /// kept in it. Seqs are unique within one epoch; a wiped or replaced spool has
    /// a new one. Every batch carries it (`Batch.spool_epoch`) and the cloud
    /// deduplicates by `(gateway, epoch, seq)`.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in use.
    pub fn config(&self) -> SpoolConfig {
        self.cfg
    }

    /// Sets the bytes kept outside the spool directory that count against its cap (the
    /// agent's dead-letter directory). The full policy applies to the sum: `append` evicts
    /// (`DropOldest`) or refuses (`Backpressure`) as if they were spool bytes; when they alone
    /// leave no room, `append` returns [`SpoolError::Full`] under either policy.
    pub fn set_external_bytes(&mut self, bytes: u64) {
        self.external_bytes = bytes;
    }

    /// Buffers one record (not durable until [`Spool::sync`]; dropping the spool
    /// before that loses it, as a crash would).
    ///
    /// With `DropOldest`, evicts the oldest segment(s) when the cap would be
    /// exceeded and reports exactly what was dropped.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Full`] under `Backpressure` when the cap is reached (nothing
    /// was changed; retry after acks), [`SpoolError::RecordTooLarge`], IO errors
    /// (after which the spool is poisoned), except that a full filesystem (see
    /// [`SpoolError::is_no_space`]) rolls the spool back to its last sync instead: every record
    /// appended since is gone (it was never acknowledged), and the spool stays usable.
    pub fn append(&mut self, payload: &[u8], n_readings: u32) -> Result<Appended, SpoolError> {
        let res = self.append_unchecked(payload, n_readings);
        self.roll_back_if_no_space(res)
    }

    fn append_unchecked(
        &mut self,
        payload: &[u8],
        n_readings: u32,
    ) -> Result<Appended, SpoolError> {
        self.check_poisoned()?;
        let max = self.cfg.max_payload_bytes();
        if payload.len() > max {
            return Err(SpoolError::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let frame_len = record::frame_len(payload.len()) as u64;
        let active = self
            .segments
            .back()
            .expect("an active segment always exists");
        let roll = active.end_id > active.first_id && active.len + frame_len > self.segment_bytes;
        let needed = frame_len + if roll { SEGMENT_HEADER_LEN as u64 } else { 0 };
        let mut dropped = Dropped::default();
        while self.bytes_reserved() + needed > self.cfg.max_bytes {
            if self.cfg.policy == FullPolicy::Backpressure || self.segments.len() < 2 {
                return Err(SpoolError::Full {
                    needed,
                    bytes_on_disk: self.bytes_on_disk() + self.external_bytes,
                    max_bytes: self.cfg.max_bytes,
                });
            }
            self.evict_oldest(&mut dropped)?;
        }
        if roll {
            self.roll()?;
        }
        let id = self.next_record_id;
        let active = self
            .segments
            .back_mut()
            .expect("an active segment always exists");
        active.note_record(id, active.len);
        active.len += frame_len;
        let one = Totals::one(n_readings, payload.len());
        active.uncut.add(one);
        if active.id == self.synced.active_id {
            self.synced.appended.add(one);
        }
        self.segments_len += frame_len;
        // The record that crosses FLUSH_BYTES is flushed with the rest right after: grow the
        // buffer by that record only, not by doubling it.
        self.write_buf.reserve_exact(frame_len as usize);
        record::encode(&mut self.write_buf, id, n_readings, payload);
        self.next_record_id += 1;
        if self.write_buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(Appended { id, dropped })
    }

    /// Group commit: writes and fsyncs everything appended so far. After `Ok`,
    /// every appended record survives power loss.
    ///
    /// # Errors
    ///
    /// IO errors, after which the spool is poisoned and must be reopened; a full filesystem
    /// instead rolls back every record appended since the last sync (as [`Spool::append`]).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        let res = self.sync_unchecked();
        self.roll_back_if_no_space(res)
    }

    fn sync_unchecked(&mut self) -> Result<(), SpoolError> {
        self.check_poisoned()?;
        self.flush()?;
        for (_, path, mut file) in std::mem::take(&mut self.sealed_unsynced) {
            let res = file.sync_data();
            self.poison_on_err(res, "syncing segment", path)?;
        }
        if self.active_dirty {
            let res = self.active_file.sync_data();
            self.poison_on_err(res, "syncing segment", self.active_path.clone())?;
            self.active_dirty = false;
        }
        if self.dir_dirty {
            let res = self.fs.sync_dir(&self.dir);
            self.poison_on_err(res, "syncing directory", self.dir.clone())?;
            self.dir_dirty = false;
        }
        self.uncut
            .insert(self.committed_from()..self.next_record_id);
        self.unsynced_from = self.next_record_id;
        let active = self
            .segments
            .back()
            .expect("an active segment always exists");
        self.synced = SyncPoint {
            active_id: active.id,
            active_len: active.len,
            active_end_id: active.end_id,
            appended: Totals::default(),
        };
        Ok(())
    }

    /// After a failed append or sync: if the filesystem is full, undoes every append since the
    /// last sync (files truncated or removed, memory restored) and clears the poison, so the
    /// spool stays usable (forwarding goes on and frees space) and the caller may retry the
    /// same records later. Records appended since the last sync were never acknowledged.
    /// Any other error, or a roll-back that fails, leaves the spool poisoned.
    fn roll_back_if_no_space<T>(&mut self, res: Result<T, SpoolError>) -> Result<T, SpoolError> {
        let Err(err) = res else {
            return res;
        };
        if !(err.is_no_space() && self.poisoned) {
            return Err(err);
        }
        match self.roll_back_unsynced() {
            Ok(()) => {
                self.poisoned = false;
                warn!(dir = %self.dir.display(), error = %err, "Filesystem full; rolled the spool back to its last sync.");
            }
            Err(rollback) => {
                warn!(dir = %self.dir.display(), error = %rollback, "Rolling the spool back after a full filesystem failed; it must be reopened.");
            }
        }
        Err(err)
    }

    fn roll_back_unsynced(&mut self) -> Result<(), SpoolError> {
        let synced = self.synced;
        self.write_buf.clear();
        // Segments rolled since the sync hold only unsynced records: remove them, and the file
        // of a roll that failed after creating it.
        let newest_id = self.segments.back().map_or(synced.active_id, |seg| seg.id);
        let half_rolled = self.dir.join(segment::file_name(newest_id + 1));
        match self.fs.remove_file(&half_rolled) {
            Ok(()) => self.dir_dirty = true,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SpoolError::io("removing segment", &half_rolled, source)),
        }
        while self
            .segments
            .back()
            .is_some_and(|seg| seg.id > synced.active_id)
        {
            let seg = self.segments.pop_back().expect("checked above");
            self.segments_len -= seg.len;
            let path = self.dir.join(segment::file_name(seg.id));
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SpoolError::io("removing segment", &path, source)),
            }
            self.dir_dirty = true;
        }
        self.sealed_unsynced.clear();
        let path = self.dir.join(segment::file_name(synced.active_id));
        let active = match self.segments.back_mut() {
            Some(active) if active.id == synced.active_id => active,
            // Evicted meanwhile (drop_oldest with two segments): nothing safe to return to.
            _ => {
                return Err(SpoolError::io(
                    "rolling back segment",
                    &path,
                    std::io::ErrorKind::NotFound.into(),
                ))
            }
        };
        self.segments_len -= active.len - synced.active_len;
        active.len = synced.active_len;
        active.uncut.sub(synced.appended);
        active.forget_records_from(synced.active_end_id);
        // Durable (the truncate fsyncs): no record of the failed group survives a crash.
        self.fs
            .truncate(&path, synced.active_len)
            .map_err(|source| SpoolError::io("truncating segment", &path, source))?;
        if self.active_path != path {
            self.active_file = self
                .fs
                .open_append(&path)
                .map_err(|source| SpoolError::io("opening segment", &path, source))?;
            self.active_path = path;
        }
        if self.dir_dirty {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|source| SpoolError::io("syncing directory", &self.dir, source))?;
            self.dir_dirty = false;
        }
        self.active_dirty = false;
        self.next_record_id = self.unsynced_from;
        self.synced.appended = Totals::default();
        Ok(())
    }

    /// First record id not yet fsynced and not evicted.
    fn committed_from(&self) -> u64 {
        let oldest = self.segments.front().map_or(0, |s| s.first_id);
        self.unsynced_from.max(oldest)
    }

    /// Cuts the next batch of at most `max_records` records and `max_bytes` payload
    /// bytes (at least one record) from synced, uncut records, and persists the cut
    /// (fsync) before returning. `Live` takes the newest records, `Backfill` the oldest.
    ///
    /// # Errors
    ///
    /// IO errors reading segments (nothing changed) or writing the ledger (poisoned).
    pub fn cut(
        &mut self,
        lane: Lane,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<CutBatch>, SpoolError> {
        self.cut_from(lane, CutEnd::of_lane(lane), max_records, max_bytes)
    }

    /// Like [`Spool::cut`], but takes the records from `end` of the uncut records
    /// while recording `lane` for the batch (a live lane that keeps up cuts the
    /// oldest records so that streams stay in order).
    ///
    /// # Errors
    ///
    /// As [`Spool::cut`].
    pub fn cut_from(
        &mut self,
        lane: Lane,
        end: CutEnd,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<CutBatch>, SpoolError> {
        self.check_poisoned()?;
        if self.uncut.is_empty() || max_records == 0 {
            return Ok(None);
        }
        let wanted = match end {
            CutEnd::Newest => self.uncut.highest(max_records as u64),
            CutEnd::Oldest => self.uncut.lowest(max_records as u64),
        };
        let mut records = self.read_ranges(&wanted)?;
        self.forget_unreadable(&wanted, &records);
        trim_to_bytes(&mut records, end, max_bytes);
        if records.is_empty() {
            return Ok(None);
        }
        let ranges = ids_to_ranges(records.iter().map(|r| r.id));
        let (seq, per_segment) = self.log_cut(lane, &ranges, &records)?;
        for (seg_id, totals) in &per_segment {
            let seg = self
                .segments
                .iter_mut()
                .find(|seg| seg.id == *seg_id)
                .expect("cut records come from live segments");
            seg.uncut.sub(*totals);
            seg.pending.add(*totals);
        }
        for range in &ranges {
            self.uncut.remove(range.clone());
        }
        self.pending
            .insert(seq, PendingBatch::new(lane, ranges, per_segment));
        self.maybe_compact()?;
        Ok(Some(CutBatch { seq, lane, records }))
    }

    /// The oldest synced record not yet acked (uncut or in a pending batch), re-read from
    /// disk; `None` when every synced record is acked. For the operator's "oldest unforwarded"
    /// gauge: one record read, however large the backlog.
    ///
    /// # Errors
    ///
    /// IO errors reading the segment; [`SpoolError::Poisoned`].
    pub fn oldest_unacked(&self) -> Result<Option<SpoolRecord>, SpoolError> {
        self.check_poisoned()?;
        let oldest_uncut = self.uncut.iter().next().map(|range| range.start);
        let oldest_pending = self
            .pending
            .values()
            .filter_map(|batch| batch.ranges.first().map(|range| range.start))
            .min();
        let Some(id) = oldest_uncut.into_iter().chain(oldest_pending).min() else {
            return Ok(None);
        };
        let wanted = id..id + 1;
        Ok(self
            .read_ranges(std::slice::from_ref(&wanted))?
            .into_iter()
            .next())
    }

    /// Batches cut but not yet acked, oldest seq first, with payloads re-read from disk.
    ///
    /// # Errors
    ///
    /// IO errors reading segments.
    pub fn pending(&self) -> Result<Vec<CutBatch>, SpoolError> {
        self.check_poisoned()?;
        let mut out = Vec::with_capacity(self.pending.len());
        for (&seq, batch) in &self.pending {
            out.push(CutBatch {
                seq,
                lane: batch.lane,
                records: self.read_ranges(&batch.ranges)?,
            });
        }
        Ok(out)
    }

    /// The newest up to `max_records` synced records still on disk, whatever their
    /// state (uncut, pending, or acked but not yet deleted), oldest first. Read-only.
    ///
    /// # Errors
    ///
    /// IO errors reading segments.
    pub fn tail(&self, max_records: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        self.check_poisoned()?;
        let mut parts: Vec<Vec<SpoolRecord>> = Vec::new();
        let mut left = max_records as u64;
        for seg in self.segments.iter().rev() {
            if left == 0 {
                break;
            }
            // Unsynced records may still be in the write buffer, not in the file.
            let end = seg.end_id.min(self.unsynced_from);
            let start = seg.first_id.max(end.saturating_sub(left));
            if start >= end {
                continue;
            }
            let mut part = Vec::new();
            let path = self.dir.join(segment::file_name(seg.id));
            seg.read_records(self.fs.as_ref(), &path, start..end, &mut part)?;
            left = left.saturating_sub(part.len() as u64);
            parts.push(part);
        }
        Ok(parts.into_iter().rev().flatten().collect())
    }

    /// Seqs of the batches cut but not yet acked, ascending.
    pub fn pending_seqs(&self) -> Vec<u64> {
        self.pending.keys().copied().collect()
    }

    /// A sender is about to send batch `seq`, whose body it built when the batch had been
    /// trimmed `trims_seen` times. Marks the batch in flight: records evicted from now on
    /// are settled by [`Spool::ack`] (delivered) or [`Spool::end_send`] (dropped).
    ///
    /// Returns [`SendCheck::Changed`] with the batch as it is now when eviction trimmed it
    /// since (the sender must rebuild its body), and [`SendCheck::Gone`] when eviction took
    /// all of it or `seq` is not pending.
    ///
    /// # Errors
    ///
    /// IO errors re-reading the trimmed batch.
    pub fn begin_send(&mut self, seq: u64, trims_seen: u64) -> Result<SendCheck, SpoolError> {
        self.check_poisoned()?;
        let Some(batch) = self.pending.get(&seq) else {
            return Ok(SendCheck::Gone);
        };
        if batch.ranges.is_empty() {
            return Ok(SendCheck::Gone);
        }
        let check = if batch.trims == trims_seen {
            SendCheck::Unchanged
        } else {
            SendCheck::Changed {
                batch: CutBatch {
                    seq,
                    lane: batch.lane,
                    records: self.read_ranges(&batch.ranges)?,
                },
                trims: batch.trims,
            }
        };
        if let Some(batch) = self.pending.get_mut(&seq) {
            batch.in_flight = true;
        }
        Ok(check)
    }

    /// Splits pending batch `seq` in two, for a cloud that refused it as too large: the older
    /// half of its records moves to a new batch under the next seq, the rest stays under `seq`.
    /// One fsynced ledger cut entry makes the move durable and atomic (recovery replays a cut of
    /// records that another pending batch holds as taking them over), so after a crash both
    /// halves are pending, or the whole batch still is. `seq`'s trim count is bumped, so the
    /// sender's next [`Spool::begin_send`] returns what is left of it.
    ///
    /// Call it while the batch is not in flight ([`Spool::end_send`] first).
    ///
    /// # Errors
    ///
    /// IO errors reading segments (nothing changed) or writing the ledger (poisoned).
    pub fn split(&mut self, seq: u64) -> Result<SplitOutcome, SpoolError> {
        self.check_poisoned()?;
        let Some(batch) = self.pending.get(&seq) else {
            return Ok(SplitOutcome::Gone);
        };
        let n: u64 = batch.ranges.iter().map(|r| r.end - r.start).sum();
        if n == 0 {
            return Ok(SplitOutcome::Gone);
        }
        let lane = batch.lane;
        let mut left = n / 2;
        let mut older = Vec::new();
        for range in &batch.ranges {
            if left == 0 {
                break;
            }
            let take = (range.end - range.start).min(left);
            older.push(range.start..range.start + take);
            left -= take;
        }
        let records = self.read_ranges(&older)?;
        if records.is_empty() {
            return Ok(SplitOutcome::Single);
        }
        let moved = ids_to_ranges(records.iter().map(|r| r.id));
        let (new_seq, per_segment) = self.log_cut(lane, &moved, &records)?;
        let batch = self.pending.get_mut(&seq).expect("checked above");
        for range in &moved {
            batch.ranges = ledger::subtract(&batch.ranges, range);
        }
        for (seg_id, part) in &per_segment {
            if let Some((_, totals)) = batch.per_segment.iter_mut().find(|(id, _)| id == seg_id) {
                totals.sub(*part);
            }
        }
        batch.per_segment.retain(|(_, totals)| totals.records > 0);
        batch.trims += 1;
        self.pending
            .insert(new_seq, PendingBatch::new(lane, moved, per_segment));
        self.maybe_compact()?;
        Ok(SplitOutcome::Split(CutBatch {
            seq: new_seq,
            lane,
            records,
        }))
    }

    /// The send of `seq` failed (it will be retried, or the process is stopping): what
    /// eviction took from it while it was in flight is now dropped, and is returned so
    /// the caller can count it. A batch left empty is forgotten.
    pub fn end_send(&mut self, seq: u64) -> Dropped {
        let Some(batch) = self.pending.get_mut(&seq) else {
            return Dropped::default();
        };
        batch.in_flight = false;
        let lost = std::mem::take(&mut batch.evicted_in_flight);
        if batch.ranges.is_empty() {
            self.pending.remove(&seq);
        }
        self.dropped_total.add(lost);
        Dropped {
            records: lost.records,
            readings: lost.readings,
            bytes: lost.bytes,
            ..Dropped::default()
        }
    }

    /// The cloud acknowledged `seq`: persists the ack (fsync) and deletes segment
    /// files none of whose records is still needed. Unknown or repeated seqs are
    /// a no-op with `known: false`.
    ///
    /// # Errors
    ///
    /// IO errors, after which the spool is poisoned.
    pub fn ack(&mut self, seq: u64) -> Result<AckReport, SpoolError> {
        self.check_poisoned()?;
        if !self.pending.contains_key(&seq) {
            return Ok(AckReport {
                seq,
                ..AckReport::default()
            });
        }
        let res = self.ledger.append(&Entry::Ack(seq));
        self.poison_on_err_spool(res)?;
        let batch = self.pending.remove(&seq).expect("checked above");
        let totals = batch.totals();
        for range in &batch.ranges {
            self.acked.insert(range.clone());
        }
        for (seg_id, part) in &batch.per_segment {
            if let Some(seg) = self.segments.iter_mut().find(|s| s.id == *seg_id) {
                seg.pending.sub(*part);
            }
        }
        let (segments_deleted, bytes_freed) = self.delete_done_segments()?;
        self.maybe_compact()?;
        Ok(AckReport {
            seq,
            known: true,
            records: totals.records,
            readings: totals.readings,
            segments_deleted,
            bytes_freed,
        })
    }

    /// Every synced, uncut record (for tests that compare the spool with a model).
    #[cfg(test)]
    pub(super) fn read_uncut(&self) -> Result<Vec<SpoolRecord>, SpoolError> {
        let ranges: Vec<Range<u64>> = self.uncut.iter().collect();
        self.read_ranges(&ranges)
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        let mut uncut = Totals::default();
        let mut pending = Totals::default();
        for seg in &self.segments {
            uncut.add(seg.uncut);
            pending.add(seg.pending);
        }
        SpoolStats {
            bytes_on_disk: self.bytes_on_disk(),
            external_bytes: self.external_bytes,
            max_bytes: self.cfg.max_bytes,
            segments: self.segments.len() as u64,
            unsynced_records: self.next_record_id - self.committed_from(),
            uncut_records: uncut.records,
            uncut_readings: uncut.readings,
            uncut_bytes: uncut.bytes,
            pending_batches: self.pending.len() as u64,
            pending_records: pending.records,
            pending_readings: pending.readings,
            dropped_records_total: self.dropped_total.records,
            dropped_readings_total: self.dropped_total.readings,
            dropped_bytes_total: self.dropped_total.bytes,
            next_seq: self.next_seq,
        }
    }

    fn bytes_on_disk(&self) -> u64 {
        self.segments_len + self.ledger.len()
    }

    /// Bytes on disk with the ledger counted at the size it may grow to, so that
    /// cuts and acks between appends cannot push the spool over its cap.
    fn bytes_reserved(&self) -> u64 {
        self.segments_len + self.ledger.reserved() + self.external_bytes
    }

    fn check_poisoned(&self) -> Result<(), SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Marks the spool poisoned if `res` is an error: after a failed write the
    /// files may hold a partial write that memory does not know about, and the
    /// only safe way on is recovery (reopen).
    fn poison_on_err<T>(
        &mut self,
        res: std::io::Result<T>,
        op: &'static str,
        path: PathBuf,
    ) -> Result<T, SpoolError> {
        res.map_err(|source| {
            self.poisoned = true;
            SpoolError::Io { op, path, source }
        })
    }

    fn poison_on_err_spool<T>(&mut self, res: Result<T, SpoolError>) -> Result<T, SpoolError> {
        if res.is_err() {
            self.poisoned = true;
        }
        res
    }

    /// Writes buffered frames to the active file (no fsync).
    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let res = self.active_file.write_all(&self.write_buf);
        self.poison_on_err(res, "writing segment", self.active_path.clone())?;
        self.write_buf.clear();
        self.active_dirty = true;
        Ok(())
    }

    /// Seals the active segment (its buffer written out; the next `sync` fsyncs it)
    /// and starts a new one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let sealed_id = self.segments.back().expect("active segment").id;
        let segment_id = self.segments.back().expect("active segment").id + 1;
        let path = self.dir.join(segment::file_name(segment_id));
        let res = self.fs.create_new(&path);
        let mut file = self.poison_on_err(res, "creating segment", path.clone())?;
        // The header goes to the file at once (not via the buffer) so that even a
        // segment whose records never reached the file records its first id.
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        segment::encode_header(
            &mut header,
            SegmentHeader {
                segment_id,
                first_record_id: self.next_record_id,
                seq_hint: self.next_seq,
            },
        );
        let res = file.write_all(&header);
        self.poison_on_err(res, "writing segment", path.clone())?;
        let sealed_file = std::mem::replace(&mut self.active_file, file);
        let sealed_path = std::mem::replace(&mut self.active_path, path);
        if self.active_dirty {
            self.sealed_unsynced
                .push((sealed_id, sealed_path, sealed_file));
        }
        self.active_dirty = true;
        self.dir_dirty = true;
        self.segments.push_back(Segment::new(
            segment_id,
            self.next_record_id,
            SEGMENT_HEADER_LEN as u64,
        ));
        self.segments_len += SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// Deletes the oldest (sealed) segment, counting its unacked records as
    /// dropped and removing them from uncut records and pending batches.
    fn evict_oldest(&mut self, dropped: &mut Dropped) -> Result<(), SpoolError> {
        let seg = self
            .segments
            .pop_front()
            .expect("caller checked there are two segments");
        let ids = seg.first_id..seg.end_id;
        let mut lost = seg.uncut;
        lost.add(seg.pending);
        for batch in self.pending.values_mut() {
            let Some(part) = batch
                .per_segment
                .iter()
                .find(|(id, _)| *id == seg.id)
                .map(|(_, part)| *part)
            else {
                continue;
            };
            batch.trims += 1;
            batch.per_segment.retain(|(id, _)| *id != seg.id);
            batch.ranges = batch
                .ranges
                .iter()
                .filter_map(|r| {
                    let start = r.start.max(ids.end);
                    (start < r.end).then_some(start..r.end)
                })
                .collect();
            if batch.in_flight {
                // The sender holds these records in its request: whether they are lost is
                // decided when the send ends (`ack` or `end_send`).
                batch.evicted_in_flight.add(part);
                lost.sub(part);
            }
        }
        // A batch in flight stays known even when empty, so its outcome can still be settled.
        self.pending
            .retain(|_, batch| batch.in_flight || !batch.ranges.is_empty());
        dropped.records += lost.records;
        dropped.readings += lost.readings;
        dropped.bytes += lost.bytes;
        dropped.segments += 1;
        dropped.below_id = dropped.below_id.max(seg.end_id);
        self.dropped_total.add(lost);
        self.uncut.remove(ids.clone());
        self.acked.remove(ids.clone());
        // Its unsynced data no longer matters: the file is being deleted.
        self.sealed_unsynced.retain(|(id, _, _)| *id != seg.id);
        self.segments_len -= seg.len;
        warn!(
            segment = seg.id,
            records = lost.records,
            readings = lost.readings,
            "Spool full; dropped the oldest segment."
        );
        let path = self.dir.join(segment::file_name(seg.id));
        let res = self.fs.remove_file(&path);
        self.poison_on_err(res, "removing segment", path)?;
        // Make the removal durable now: a segment that came back after a crash
        // would resurrect acked records whose ack state was just forgotten.
        let res = self.fs.sync_dir(&self.dir);
        self.poison_on_err(res, "syncing directory", self.dir.clone())?;
        Ok(())
    }

    /// Deletes sealed segments with no uncut or pending record; returns how many
    /// and their bytes.
    fn delete_done_segments(&mut self) -> Result<(u64, u64), SpoolError> {
        let n_sealed = self.segments.len() - 1;
        let done: Vec<u64> = self
            .segments
            .iter()
            .take(n_sealed)
            .filter(|s| s.is_done())
            .map(|s| s.id)
            .collect();
        if done.is_empty() {
            return Ok((0, 0));
        }
        let mut bytes = 0;
        for seg_id in &done {
            let path = self.dir.join(segment::file_name(*seg_id));
            let res = self.fs.remove_file(&path);
            self.poison_on_err(res, "removing segment", path)?;
            let idx = self
                .segments
                .iter()
                .position(|s| s.id == *seg_id)
                .expect("collected above");
            let seg = self.segments.remove(idx).expect("index from position");
            self.segments_len -= seg.len;
            bytes += seg.len;
        }
        let res = self.fs.sync_dir(&self.dir);
        self.poison_on_err(res, "syncing directory", self.dir.clone())?;
        let oldest = self
            .segments
            .front()
            .expect("the active segment remains")
            .first_id;
        self.acked.remove_below(oldest);
        Ok((done.len() as u64, bytes))
    }

    /// Rewrites the ledger as one snapshot when it has grown.
    fn maybe_compact(&mut self) -> Result<(), SpoolError> {
        if !self.ledger.wants_compaction() {
            return Ok(());
        }
        let res = Ledger::create(
            self.fs.as_ref(),
            &self.dir,
            &self.ledger_state(),
            self.cfg.max_bytes,
        );
        match res {
            // The new snapshot could not be written (before its rename): the current ledger
            // is intact and stays in use; compaction is retried on the next cut or ack.
            Err(err) if err.is_no_space() => {
                let _ = self
                    .fs
                    .remove_file(&self.dir.join(super::ledger::LEDGER_TMP_FILE));
                warn!(error = %err, "Filesystem full; ledger compaction postponed.");
                Ok(())
            }
            res => {
                self.ledger = self.poison_on_err_spool(res)?;
                Ok(())
            }
        }
    }

    /// The state a ledger snapshot records.
    fn ledger_state(&self) -> LedgerState {
        LedgerState {
            next_seq: self.next_seq,
            next_record_id: self.next_record_id,
            acked: self.acked.clone(),
            pending: self
                .pending
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
        }
    }

    /// Writes a cut of `records` (whose ids are `ranges`) to the ledger under a new seq (the
    /// spool is poisoned if that fails); returns the seq and the records' totals per segment,
    /// in segment order.
    fn log_cut(
        &mut self,
        lane: Lane,
        ranges: &[Range<u64>],
        records: &[SpoolRecord],
    ) -> Result<(u64, Vec<(u64, Totals)>), SpoolError> {
        let seq = self.next_seq;
        let res = self.ledger.append(&Entry::Cut(CutEntry {
            seq,
            lane,
            ranges: ranges.to_vec(),
        }));
        self.poison_on_err_spool(res)?;
        self.next_seq += 1;
        let mut per_segment: Vec<(u64, Totals)> = Vec::new();
        for rec in records {
            let one = Totals::one(rec.n_readings, rec.payload.len());
            let seg_id = self
                .segment_of_mut(rec.id)
                .expect("cut records are in live segments")
                .id;
            match per_segment.last_mut() {
                Some((id, totals)) if *id == seg_id => totals.add(one),
                _ => per_segment.push((seg_id, one)),
            }
        }
        Ok((seq, per_segment))
    }

    fn segment_of_mut(&mut self, id: u64) -> Option<&mut Segment> {
        let idx = self.segments.partition_point(|s| s.first_id <= id);
        let seg = self.segments.get_mut(idx.checked_sub(1)?)?;
        seg.holds(id).then_some(seg)
    }

    /// Reads the records of `ranges` (ascending) from their segments.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<SpoolRecord>, SpoolError> {
        let mut out = Vec::new();
        for range in ranges {
            for seg in &self.segments {
                let start = range.start.max(seg.first_id);
                let end = range.end.min(seg.end_id);
                if start >= end {
                    continue;
                }
                let path = self.dir.join(segment::file_name(seg.id));
                seg.read_records(self.fs.as_ref(), &path, start..end, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Drops uncut ids that could not be read back (a file damaged after open):
    /// they would otherwise block their segment's deletion forever.
    fn forget_unreadable(&mut self, wanted: &[Range<u64>], got: &[SpoolRecord]) {
        let wanted_n: u64 = wanted.iter().map(|r| r.end - r.start).sum();
        if wanted_n == got.len() as u64 {
            return;
        }
        let mut got_ids = got.iter().map(|r| r.id).peekable();
        let mut missing = Vec::new();
        for id in wanted.iter().flat_map(|r| r.clone()) {
            if got_ids.peek() == Some(&id) {
                got_ids.next();
            } else {
                missing.push(id);
            }
        }
        warn!(
            records = missing.len(),
            "Spool records became unreadable after open; skipping them."
        );
        for id in missing {
            self.uncut.remove(id..id + 1);
            if let Some(seg) = self.segment_of_mut(id) {
                // Their sizes are unknown now; the record count stays exact.
                seg.uncut.records = seg.uncut.records.saturating_sub(1);
            }
        }
    }
}

/// Keeps at most `max_bytes` of payload (but at least one record), at `end`.
fn trim_to_bytes(records: &mut Vec<SpoolRecord>, end: CutEnd, max_bytes: usize) {
    let mut total = 0usize;
    let mut keep = 0usize;
    let sizes: Box<dyn Iterator<Item = usize> + '_> = match end {
        CutEnd::Oldest => Box::new(records.iter().map(|r| r.payload.len())),
        CutEnd::Newest => Box::new(records.iter().rev().map(|r| r.payload.len())),
    };
    for size in sizes {
        if keep > 0 && total + size > max_bytes {
            break;
        }
        total += size;
        keep += 1;
    }
    match end {
        CutEnd::Oldest => records.truncate(keep),
        CutEnd::Newest => {
            let skip = records.len() - keep;
            records.drain(..skip);
        }
    }
}
