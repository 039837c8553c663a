//! `IngestLog`: the durable, segmented log every acknowledged batch is
//! written to, and the consumer offsets the processor reads it by.
//!
//! # Layout
//!
//! A directory holding:
//!
//! | file | what |
//! |---|---|
//! | `<base>.seg` | a segment: frames of consecutive offsets; `<base>` is the first offset it holds, 20 zero-padded digits |
//! | `dedupe.json` | snapshot of the per-`(gateway, spool_epoch)` [`SeqSet`]s for every record below its `next_offset` |
//! | `consumers.json` | the committed offset of every registered consumer |
//! | `*.corrupt-*` | damaged bytes found by open, kept aside for inspection |
//!
//! Offsets are a global record index: the first record ever appended is 0 and
//! each record gets the next one. Only the last segment (the active one) is
//! written; when a frame would push it past `segment_bytes` the log rolls.
//!
//! # Frame
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `len`: little-endian u32, length of `payload` |
//! | 4 | `crc`: little-endian CRC-32 (IEEE) of `len`, `offset`, `appended_ms` and `payload` |
//! | 8 | `offset`: little-endian u64, the record's offset |
//! | 8 | `appended_ms`: little-endian i64, wall-clock ms when it was appended |
//! | len | `payload`: the `fieldpulse.v1.Batch` protobuf bytes as received (decompressed) |
//!
//! The offset is stored in the frame, not derived from the frame's position,
//! so a damaged frame skipped in the middle of a segment leaves a gap in the
//! offsets instead of renumbering every record after it (consumers' committed
//! offsets stay meaningful).
//!
//! # Durability
//!
//! One writer thread owns the active segment (group commit): commits queued
//! while it is busy are written together and share one `fdatasync`, and each
//! commit's future completes only after that sync. Readers see a record only
//! once it is durable. A failed write or sync (ENOSPC, EIO) truncates the
//! segment back to its last durable length, so nothing half-written stays
//! between good frames, and every commit of that group gets an error (the
//! ingest answers 503, the gateway retries). Frames are written at explicit
//! positions; if the truncation itself fails, the next append retries it
//! first and fails until it succeeds.
//!
//! # Recovery
//!
//! Open never loads the history into memory. It scans only the segments that
//! hold records after the dedupe snapshot (and always the tail segment),
//! frame by frame. A frame that fails its length or CRC check starts a
//! resync: the scan looks for the next position where a whole frame validates
//! with a higher offset, and an offset the segment can hold at that position
//! (at most `base + position / 24`, so a frame-like pattern inside a payload
//! cannot claim an offset that would hide the real frames after it). The
//! bytes in between are copied to
//! `<segment>.corrupt-<position>-<unix_ms>`, counted in [`Recovered`] and
//! logged at ERROR; later (acknowledged) frames are kept. Damage that reaches
//! the end of the tail segment is a torn write of batches that were never
//! acknowledged: it is kept aside the same way and truncated. If that damage
//! is one whole frame by its length field (damaged after it was durable),
//! its offset stays used, so no reader ever sees two records under one
//! offset; the end offset is also never below a consumer's committed offset. Readers resync
//! the same way over damage in segments open did not scan.
//!
//! # Retention
//!
//! [`IngestLog::apply_retention`] deletes the oldest closed segments while
//! every registered consumer has committed past their last record and their
//! newest record is older than [`LogConfig::retention`] (for a segment open
//! did not scan, the file's mtime stands for its newest record). The active
//! segment is never deleted; with no registered consumer nothing is. A read
//! below the oldest retained offset is [`LogError::OffsetDeleted`].
//!
//! # Consumers
//!
//! [`IngestLog::consumer`] registers a named [`LogConsumer`], the file-backed
//! [`BatchSource`]: `read(from, max, wait)` returns durable records by
//! offset (a sparse per-segment index and a cursor avoid rescans),
//! `commit(next_offset)` persists the consumer's position in
//! `consumers.json`, which only retention uses. The dedupe snapshot written at every roll
//! covers every deleted segment, so deduplication survives retention.

mod consumer;
mod frame;
mod segment;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use fieldpulse_proto::v1::Batch;

pub use consumer::LogConsumer;

use self::segment::Segment;
use self::writer::{FileLayer, StdFileLayer};
use crate::ingest::{BatchSink, SeqSet, SinkError};

/// Dedupe state key: `(gateway_id, spool_epoch)`.
pub type EpochKey = (String, u64);

/// Log settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is rolled once the next frame would make it larger than this.
    pub segment_bytes: u64,
    /// A segment is deleted only when its newest record is at least this old
    /// (and every consumer has committed past it).
    pub retention: Duration,
    /// Most bytes one group commit writes before it syncs.
    pub max_group_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            retention: Duration::from_secs(24 * 3600),
            max_group_bytes: 16 << 20,
        }
    }
}

/// Errors of the ingest log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file of the log could not be opened, read, written or synced.
    #[error("ingest log {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A state file (`consumers.json`) exists but cannot be parsed.
    #[error("ingest log state file {path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A read asked for an offset that retention already deleted.
    #[error("offset {offset} was deleted by retention (oldest retained offset is {oldest})")]
    OffsetDeleted {
        /// The requested offset.
        offset: u64,
        /// The oldest offset still in the log.
        oldest: u64,
    },
    /// A frame passed its CRC but its payload is not a `Batch`.
    #[error("record {offset} in {path} is not a Batch")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
    },
    /// A consumer committed an offset outside `committed..=end_offset`.
    #[error("consumer {consumer}: commit {next_offset} is outside {committed}..={end_offset}")]
    CommitOutOfRange {
        /// The consumer name.
        consumer: String,
        /// The offset it tried to commit.
        next_offset: u64,
        /// Its committed offset so far.
        committed: u64,
        /// The log's end offset.
        end_offset: u64,
    },
    /// A consumer name that is empty, too long, or not `[A-Za-z0-9_.-]`.
    #[error("invalid consumer name {name:?}")]
    ConsumerName {
        /// The name.
        name: String,
    },
    /// The batch is larger than a frame may be.
    #[error("batch of {len} bytes is larger than a log frame may be")]
    TooLarge {
        /// Its encoded length.
        len: usize,
    },
    /// The writer thread is gone (a previous IO error on roll, or shutdown).
    #[error("ingest log writer stopped")]
    Closed,
}

/// What [`IngestLog::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Committed seqs per `(gateway, spool_epoch)`: seeds the ingest's dedupe.
    pub dedupe: HashMap<EpochKey, SeqSet>,
    /// The offset the next appended record gets.
    pub end_offset: u64,
    /// The oldest offset still in the log.
    pub start_offset: u64,
    /// Segments in the directory.
    pub segments: usize,
    /// Records scanned (those after the dedupe snapshot).
    pub records_scanned: u64,
    /// Damaged bytes skipped between valid frames (kept aside).
    pub skipped_bytes: u64,
    /// Offsets missing because their frames were damaged.
    pub skipped_frames: u64,
    /// Bytes cut off the end of the tail segment (a torn write; kept aside).
    pub truncated_bytes: u64,
    /// Files the damaged bytes were copied to.
    pub corrupt_files: Vec<PathBuf>,
    /// True when `dedupe.json` was unreadable and every retained segment was
    /// scanned instead.
    pub snapshot_unreadable: bool,
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The record's offset.
    pub offset: u64,
    /// Wall-clock ms when it was appended.
    pub appended_ms: i64,
    /// The committed batch.
    pub batch: Batch,
}

/// What the processor reads batches from: this log, or (later) a partition
/// of a NATS JetStream stream.
pub trait BatchSource: Send {
    /// Up to `max` records with offset >= from, in offset order; waits up to `wait` for the first one; empty on timeout.
    ///
    /// # Errors
    /// [`LogError::OffsetDeleted`] when `from` was removed by retention; IO errors.
    fn read(&mut self, from: u64, max: usize, wait: Duration) -> Result<Vec<LogRecord>, LogError>;
    /// This consumer has durably processed every record below `next_offset` (enables retention).
    ///
    /// # Errors
    /// An offset below the committed one or past the end; IO errors persisting it.
    fn commit(&mut self, next_offset: u64) -> Result<(), LogError>;
    /// Offset the next appended record will get (for lag).
    fn end_offset(&self) -> u64;
}

/// What one [`IngestLog::apply_retention`] pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// The oldest offset still in the log afterwards.
    pub start_offset: u64,
}

/// Counters of the log (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// `fdatasync` calls on segments.
    pub fsyncs: u64,
    /// Batches made durable by those syncs.
    pub batches_synced: u64,
    /// Appends that failed (their commits got an error).
    pub append_errors: u64,
    /// Damaged bytes readers skipped since open.
    pub read_skipped_bytes: u64,
    /// The offset the next appended record gets.
    pub end_offset: u64,
    /// The oldest retained offset.
    pub start_offset: u64,
}

/// The segmented ingest log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct IngestLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IngestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLog")
            .field("dir", &self.inner.shared.dir)
            .field("end_offset", &self.end_offset())
            .finish()
    }
}

struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<writer::Handle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(handle) = self.writer.get_mut().ok().and_then(Option::take) {
            handle.stop();
        }
    }
}

/// State shared by the writer thread, consumers and the handle.
struct Shared {
    dir: PathBuf,
    config: LogConfig,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// The durable end offset, mirrored in `end_lock` for waiting readers.
    end_offset: AtomicU64,
    end_lock: Mutex<u64>,
    end_changed: Condvar,
    consumers: Mutex<BTreeMap<String, u64>>,
    fsyncs: AtomicU64,
    batches_synced: AtomicU64,
    append_errors: AtomicU64,
    read_skipped_bytes: AtomicU64,
    /// Commits handed to the writer (tests wait on it to build a group).
    submitted: AtomicU64,
}

impl Shared {
    fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
        move |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn start_offset(&self) -> u64 {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.end_offset.load(Ordering::Acquire))
    }

    fn publish_end(&self, end: u64) {
        self.end_offset.store(end, Ordering::Release);
        let mut guard = self.end_lock.lock().unwrap_or_else(|p| p.into_inner());
        *guard = end;
        self.end_changed.notify_all();
    }

    /// Blocks until the end offset is above `offset` or `wait` passes;
    /// returns the end offset.
    fn wait_past(&self, offset: u64, wait: Duration) -> u64 {
        let guard = self.end_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .end_changed
            .wait_timeout_while(guard, wait, |end| *end <= offset)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

impl IngestLog {
    /// Opens (or creates) the log in `dir`, recovering from torn or damaged
    /// frames, and starts its writer thread.
    ///
    /// # Errors
    /// [`LogError::Io`] naming the file that cannot be read or written;
    /// [`LogError::State`] for an unparsable `consumers.json`.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(IngestLog, Recovered), LogError> {
        Self::open_with_layer(dir, config, Arc::new(StdFileLayer))
    }

    /// [`IngestLog::open`] over another [`FileLayer`] (fault injection in tests).
    pub(crate) fn open_with_layer(
        dir: &Path,
        config: LogConfig,
        layer: Arc<dyn FileLayer>,
    ) -> Result<(IngestLog, Recovered), LogError> {
        let opened = state::recover(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            segments: RwLock::new(opened.segments),
            end_offset: AtomicU64::new(opened.recovered.end_offset),
            end_lock: Mutex::new(opened.recovered.end_offset),
            end_changed: Condvar::new(),
            consumers: Mutex::new(opened.consumers),
            fsyncs: AtomicU64::new(0),
            batches_synced: AtomicU64::new(0),
            append_errors: AtomicU64::new(0),
            read_skipped_bytes: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
        });
        let handle =
            writer::Handle::start(Arc::clone(&shared), layer, opened.recovered.dedupe.clone())?;
        let log = IngestLog {
            inner: Arc::new(Inner {
                shared,
                writer: Mutex::new(Some(handle)),
            }),
        };
        Ok((log, opened.recovered))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Offset the next appended record will get.
    pub fn end_offset(&self) -> u64 {
        self.inner.shared.end_offset.load(Ordering::Acquire)
    }

    /// The oldest offset still in the log.
    pub fn start_offset(&self) -> u64 {
        self.inner.shared.start_offset()
    }

    /// The log's counters.
    pub fn stats(&self) -> LogStats {
        let shared = &self.inner.shared;
        LogStats {
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            batches_synced: shared.batches_synced.load(Ordering::Relaxed),
            append_errors: shared.append_errors.load(Ordering::Relaxed),
            read_skipped_bytes: shared.read_skipped_bytes.load(Ordering::Relaxed),
            end_offset: self.end_offset(),
            start_offset: self.start_offset(),
        }
    }

    /// Appends one batch's protobuf bytes (with its dedupe key) and waits
    /// until it is durable; returns its offset.
    ///
    /// # Errors
    /// IO errors of the group it was written with; [`LogError::Closed`].
    pub async fn append(
        &self,
        gateway_id: &str,
        spool_epoch: u64,
        seq: u64,
        encoded: Bytes,
    ) -> Result<u64, LogError> {
        let rx = {
            let writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let handle = writer.as_ref().ok_or(LogError::Closed)?;
            let rx = handle.submit((gateway_id.to_string(), spool_epoch), seq, encoded)?;
            self.inner.shared.submitted.fetch_add(1, Ordering::Relaxed);
            rx
        };
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// Registers (or reopens) the consumer `name`. A new consumer starts at
    /// the oldest retained offset, which holds retention there until it
    /// commits.
    ///
    /// # Errors
    /// [`LogError::ConsumerName`]; IO errors persisting the registration.
    pub fn consumer(&self, name: &str) -> Result<LogConsumer, LogError> {
        LogConsumer::register(Arc::clone(&self.inner.shared), name)
    }

    /// The committed offsets of every registered consumer.
    pub fn consumer_offsets(&self) -> BTreeMap<String, u64> {
        self.inner
            .shared
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Unregisters the consumer `name` (e.g. the archive after it was
    /// disabled), so retention no longer waits for it; returns whether it was
    /// registered. Registering the name again starts at the oldest retained
    /// offset; a commit by a [`LogConsumer`] of that name still open
    /// registers it again at the committed offset.
    ///
    /// # Errors
    /// IO errors persisting `consumers.json`.
    pub fn remove_consumer(&self, name: &str) -> Result<bool, LogError> {
        let shared = &self.inner.shared;
        let mut consumers = shared.consumers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(offset) = consumers.remove(name) else {
            return Ok(false);
        };
        if let Err(err) = state::write_consumers(&shared.dir, &consumers) {
            consumers.insert(name.to_string(), offset);
            return Err(err);
        }
        Ok(true)
    }

    /// Deletes the oldest segments that every consumer has committed past
    /// and that are older than the retention.
    ///
    /// # Errors
    /// IO errors deleting a segment or syncing the directory.
    pub fn apply_retention(&self) -> Result<RetentionReport, LogError> {
        state::apply_retention(&self.inner.shared)
    }
}

impl BatchSink for IngestLog {
    async fn commit(&self, batch: &Batch, encoded: Bytes) -> Result<(), SinkError> {
        self.append(&batch.gateway_id, batch.spool_epoch, batch.seq, encoded)
            .await
            .map(|_| ())
            .map_err(|err| SinkError::new(writer::error_chain(&err)))
    }

    fn log_stats(&self) -> Option<LogStats> {
        Some(self.stats())
    }
}
