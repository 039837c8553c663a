//! Values the spool hands back: records and batches, and reports of what an
//! append, an ack or a recovery did.

use std::fmt;

use serde::Serialize;

use super::Lane;

/// One record as stored: its id, the opaque payload and its reading count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Record id (assigned by `append`, strictly increasing).
    pub id: u64,
    /// The payload exactly as appended.
    pub payload: Vec<u8>,
    /// The reading count given to `append`.
    pub n_readings: u32,
}

/// A batch cut from the spool: sent with `seq`, freed by `ack(seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutBatch {
    /// Batch seq: assigned once, kept across retries and restarts.
    pub seq: u64,
    /// The lane it was cut for.
    pub lane: Lane,
    /// Its records in id order.
    pub records: Vec<SpoolRecord>,
}

impl CutBatch {
    /// Sum of the records' reading counts.
    pub fn n_readings(&self) -> u64 {
        self.records.iter().map(|r| u64::from(r.n_readings)).sum()
    }
}

/// What [`Spool::begin_send`](super::Spool::begin_send) found.
#[derive(Debug, Clone)]
pub enum SendCheck {
    /// The batch is as the sender built it.
    Unchanged,
    /// Eviction trimmed the batch: send this instead, remembering `trims`.
    Changed {
        /// What is left of the batch.
        batch: CutBatch,
        /// Its trim count, for the next check.
        trims: u64,
    },
    /// Eviction took the whole batch (or it is not pending): nothing to send.
    Gone,
}

/// What [`Spool::split`](super::Spool::split) did.
#[derive(Debug, Clone)]
pub enum SplitOutcome {
    /// The older half moved to this new batch; the rest stays under the split seq.
    Split(CutBatch),
    /// The batch holds a single record: it cannot be split.
    Single,
    /// Eviction took the whole batch (or it is not pending).
    Gone,
}

/// What an append dropped to make room (policy `DropOldest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// Unacked records deleted.
    pub records: u64,
    /// Their readings.
    pub readings: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Segment files deleted.
    pub segments: u64,
    /// Every record with an id below this one is gone (0 if nothing was evicted).
    pub below_id: u64,
}

impl Dropped {
    /// True if nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The new record's id.
    pub id: u64,
    /// What was evicted to make room.
    pub dropped: Dropped,
}

/// Result of an ack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AckReport {
    /// The seq acked.
    pub seq: u64,
    /// False if `seq` was not pending (unknown, already acked, or evicted): a no-op.
    pub known: bool,
    /// Records freed.
    pub records: u64,
    /// Readings freed.
    pub readings: u64,
    /// Segment files deleted because all their records are done.
    pub segments_deleted: u64,
    /// Bytes those files held.
    pub bytes_freed: u64,
}

/// A snapshot of the spool's counters, for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpoolStats {
    /// Bytes on disk: segment files (including bytes buffered for them) and the ledger.
    pub bytes_on_disk: u64,
    /// Bytes kept outside the spool that count against the cap (the dead-letter directory).
    pub external_bytes: u64,
    /// The cap.
    pub max_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Records appended but not yet synced.
    pub unsynced_records: u64,
    /// Records not yet cut into a batch (synced or not).
    pub uncut_records: u64,
    /// Their readings.
    pub uncut_readings: u64,
    /// Their payload bytes.
    pub uncut_bytes: u64,
    /// Batches cut and not acked.
    pub pending_batches: u64,
    /// Records in those batches.
    pub pending_records: u64,
    /// Readings in those batches.
    pub pending_readings: u64,
    /// Records dropped by the `DropOldest` policy since open.
    pub dropped_records_total: u64,
    /// Readings dropped since open.
    pub dropped_readings_total: u64,
    /// Payload bytes dropped since open.
    pub dropped_bytes_total: u64,
    /// The seq the next cut will get.
    pub next_seq: u64,
}

impl SpoolStats {
    /// Fill level as a fraction of the cap, external bytes included (0.0 ..= 1.0, more if over
    /// the cap).
    pub fn fill_ratio(&self) -> f64 {
        (self.bytes_on_disk + self.external_bytes) as f64 / self.max_bytes.max(1) as f64
    }
}

/// What opening the spool found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Segment files scanned.
    pub segments: u64,
    /// Valid records found.
    pub records: u64,
    /// Records of those that still need sending (uncut or pending).
    pub records_unacked: u64,
    /// Damaged regions between valid records (skipped).
    pub corrupt_regions: u64,
    /// Bytes in those regions.
    pub corrupt_bytes: u64,
    /// Records known lost in those regions (gaps in the consecutive ids).
    pub records_lost: u64,
    /// Segments whose end was torn (a write cut short by a crash); truncated.
    pub torn_tails: u64,
    /// Bytes removed from torn tails.
    pub torn_tail_bytes: u64,
    /// Segments whose header was damaged (records still scanned).
    pub damaged_headers: u64,
    /// Segment files of a format version this build cannot read (left untouched).
    pub unsupported_segments: Vec<String>,
    /// Files that are not the spool's (left untouched).
    pub foreign_files: Vec<String>,
    /// Segment files deleted because they held no record still needed.
    pub segments_removed: u64,
    /// The ledger file did not exist.
    pub ledger_missing: bool,
    /// Ledger entries replayed.
    pub ledger_entries: u64,
    /// Damaged ledger regions skipped (entries lost).
    pub ledger_corrupt_regions: u64,
    /// Bytes of a torn ledger tail (an unfinished, never-returned entry).
    pub ledger_torn_bytes: u64,
    /// Batches still pending after recovery.
    pub batches_pending: u64,
    /// Pending batches whose records are all gone (dropped from pending).
    pub batches_emptied: u64,
    /// The ledger's snapshot was lost, so seq jumped past every seq that can have been used.
    pub seq_jumped: bool,
    /// The seq the next cut will get.
    pub next_seq: u64,
    /// The spool epoch (see [`super::Spool::epoch`]).
    pub epoch: u64,
    /// Why this open created a new epoch, if it did.
    pub new_epoch: Option<NewEpochReason>,
}

/// Why opening a spool created a new epoch (see the module docs, "Spool epoch").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NewEpochReason {
    /// A new spool: no epoch file, no ledger, no segment.
    NewSpool,
    /// An existing spool without an epoch file: written before epochs (format v1),
    /// or the file was deleted.
    EpochFileMissing,
    /// The epoch file is damaged or of an unsupported version.
    EpochFileUnreadable,
    /// The ledger or its snapshot is gone, so the seq counter may restart below seqs
    /// already used under the old epoch.
    LedgerLost,
}

impl NewEpochReason {
    /// A short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewSpool => "new spool",
            Self::EpochFileMissing => "the spool had no epoch file (format v1)",
            Self::EpochFileUnreadable => "the epoch file was unreadable",
            Self::LedgerLost => "the ledger was lost",
        }
    }
}

impl RecoveryReport {
    /// True if nothing was damaged, torn or foreign.
    pub fn is_clean(&self) -> bool {
        self.corrupt_regions == 0
            && self.torn_tails == 0
            && self.damaged_headers == 0
            && self.unsupported_segments.is_empty()
            && self.foreign_files.is_empty()
            && self.ledger_corrupt_regions == 0
            && self.ledger_torn_bytes == 0
            && !self.seq_jumped
            && !matches!(
                self.new_epoch,
                Some(NewEpochReason::EpochFileUnreadable | NewEpochReason::LedgerLost)
            )
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segments, {} records ({} unacked), {} batches pending, next seq {}, epoch {}",
            self.segments,
            self.records,
            self.records_unacked,
            self.batches_pending,
            self.next_seq,
            self.epoch
        )?;
        if let Some(reason) = self.new_epoch {
            write!(f, " (new: {})", reason.as_str())?;
        }
        if self.corrupt_regions > 0 {
            write!(
                f,
                "; skipped {} corrupt regions ({} bytes, {} records lost)",
                self.corrupt_regions, self.corrupt_bytes, self.records_lost
            )?;
        }
        if self.torn_tails > 0 {
            write!(
                f,
                "; truncated {} torn tails ({} bytes)",
                self.torn_tails, self.torn_tail_bytes
            )?;
        }
        if self.damaged_headers > 0 {
            write!(f, "; {} damaged segment headers", self.damaged_headers)?;
        }
        if self.segments_removed > 0 {
            write!(f, "; removed {} finished segments", self.segments_removed)?;
        }
        if self.batches_emptied > 0 {
            write!(
                f,
                "; {} pending batches had no records left",
                self.batches_emptied
            )?;
        }
        if self.ledger_missing && self.segments == 0 {
            write!(f, "; new spool")?;
        } else if self.ledger_missing {
            write!(f, "; ledger missing")?;
        }
        if self.ledger_corrupt_regions > 0 || self.ledger_torn_bytes > 0 {
            write!(
                f,
                "; ledger: {} corrupt regions, {} torn bytes",
                self.ledger_corrupt_regions, self.ledger_torn_bytes
            )?;
        }
        if self.seq_jumped {
            write!(f, "; seq jumped (ledger snapshot lost)")?;
        }
        if !self.unsupported_segments.is_empty() {
            write!(
                f,
                "; unsupported segments: {}",
                self.unsupported_segments.join(", ")
            )?;
        }
        if !self.foreign_files.is_empty() {
            write!(
                f,
                "; foreign files ignored: {}",
                self.foreign_files.join(", ")
            )?;
        }
        Ok(())
    }
}
