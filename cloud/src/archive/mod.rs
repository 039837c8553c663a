//! The telemetry archive: every reading of the ingest log, as Parquet files
//! partitioned by UTC day, written by a log consumer of its own.
//!
//! ```text
//!  IngestLog ──LogConsumer "archive"──▶ RowBuffer ──flush (rows or age)──▶ <dir>/day=YYYY-MM-DD/part-<first>-<last>.parquet
//!                   ▲                                                        │ durable
//!                   └───────────── commit(last + 1) ◀───────────────────────┘
//! ```
//!
//! # Layout
//!
//! | path (under `archive.dir`, default `<state_dir>/archive`) | what |
//! |---|---|
//! | `day=YYYY-MM-DD/` | one directory per UTC day of the readings' timestamps |
//! | `day=YYYY-MM-DD/part-<first>-<last>.parquet` | the readings of that day from log records `first..=last` (offsets, decimal, not padded) |
//! | `_pending.json` | the flush under way, present only between its first write and its commit |
//! | `day=.../.part-*.parquet.tmp` | a part file being written (hidden; removed on open) |
//!
//! One flush covers consecutive log records; it writes one part file per
//! UTC day its readings fall on, all with the same name, so late readings
//! for an old day land in that day's directory as a new part file. Readers
//! take every `day=*/part-*.parquet` (hive-style partitioning: pyarrow,
//! DuckDB and polars read `day` as a column); names starting with `_` or
//! `.` are not data.
//!
//! # Schema (long format)
//!
//! | column | Parquet type | Arrow (`ARROW:schema`) | polars |
//! |---|---|---|---|
//! | `ts` | INT64, `TIMESTAMP(isAdjustedToUTC = true, MILLIS)` | `timestamp[ms, tz=UTC]` | `Datetime(ms, "UTC")` |
//! | `asset` | BYTE_ARRAY, `STRING` | `utf8` | String |
//! | `tag` | BYTE_ARRAY, `STRING` (the sensor name) | `utf8` | String |
//! | `value` | DOUBLE | `float64` | Float64 |
//! | `gateway` | BYTE_ARRAY, `STRING` | `utf8` | String |
//!
//! No value is null (the columns are declared optional, as polars writes
//! them). The stored Arrow schema uses plain `utf8`, not polars' own
//! `Utf8View`, so Arrow readers before version 16 read the files too. Rows
//! are sorted by (`asset`, `ts`, `tag`) within a file; readings equal in
//! all three keep their log order. The file's key-value metadata also holds
//! `fieldpulse.first_offset` and `fieldpulse.last_offset`. Compression is
//! `archive.compression` (zstd by default); row groups hold at most 262,144
//! rows.
//!
//! # Durability: no loss, no duplicates
//!
//! A flush (1) writes `_pending.json` naming its offsets and files (temp
//! file, fsync, rename, directory fsync), (2) writes each part file the same
//! way (a new day directory is fsynced into the root first), and only then
//! (3) commits `last + 1` as the consumer's offset in the log's
//! `consumers.json` and removes `_pending.json`. The committed offset holds
//! the log's retention back like the scoring consumer's does, so a record is
//! deleted from the log only after it is durably archived.
//!
//! Opening the archive repairs what a crash left: when `_pending.json`
//! names a flush whose `next` is above the committed offset (a crash between
//! rename and commit, or midway through the files), its part files are
//! deleted and its records read from the log again, perhaps flushed in
//! another range; a committed one is only removed. Temporary files are
//! deleted. A name is a function of the flush's offset range, so rewriting
//! the same range replaces the same files. Part files reaching past the
//! committed offset that no pending flush names come from an earlier
//! registration of the consumer (the archive was disabled, which removes the
//! consumer, then enabled again): their records are archived, so the writer
//! resumes after them; if they reach past the end of the log, the log was
//! replaced and [`ArchiveError::AheadOfLog`] refuses to start rather than
//! overwrite archived files with other data under the same names.
//!
//! # Failures
//!
//! A failed write or commit (full disk, read-only directory, EIO) is counted
//! (`fieldpulse_cloud_archive_write_failures_total`), logged and retried
//! with capped exponential backoff (`retry_min` doubling to `retry_max`)
//! with the same buffer; meanwhile the writer reads no further and its
//! offset stays where it was, so the log keeps the records. A directory
//! that cannot even be opened at start (a read-only or broken mount) is
//! retried the same way on the archive thread; the cloud starts regardless.
//! Ingest and scoring never wait for the archive: it runs on its own thread
//! with its own consumer.
//!
//! Deliberately absent: compaction and retention of old part files (a
//! follow-up), and time zone names other than UTC (polars' `timezones`
//! feature is not built).

mod buffer;
pub mod layout;
#[cfg(feature = "archive")]
mod parquet;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use buffer::RowBuffer;
pub use layout::Recovery;
pub use writer::{ArchiveWriter, FlushReport};

use crate::log::{BatchSource, LogError};

/// The archive's consumer name in the ingest log.
pub const ARCHIVE_CONSUMER: &str = "archive";

/// Parquet page compression of the part files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveCompression {
    /// zstd at its default level: the smallest files.
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// LZ4 (raw).
    Lz4,
    /// None.
    Uncompressed,
}

/// How the archive writes (validated; see `[archive]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// The archive root.
    pub dir: PathBuf,
    /// A flush starts once this many readings are buffered.
    pub flush_rows: usize,
    /// ... or once the oldest buffered record was read this long ago.
    pub flush_every: Duration,
    /// Page compression.
    pub compression: ArchiveCompression,
    /// First retry after a failed flush or read.
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl ArchiveSettings {
    /// The defaults for an archive in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            flush_rows: 500_000,
            flush_every: Duration::from_secs(600),
            compression: ArchiveCompression::Zstd,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file or directory of the archive could not be read or written.
    #[error("archive {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `_pending.json` exists but cannot be parsed.
    #[error("archive state file {path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// polars could not encode a part file.
    #[error("encoding a parquet part file: {0}")]
    Encode(String),
    /// Reading the log or committing the consumer offset failed.
    #[error("archive consumer: {0}")]
    Log(#[from] LogError),
    /// The archive holds offsets the log has not reached: the log was replaced.
    #[error(
        "the archive {dir} holds log offsets up to {archived_last}, but the ingest log ends at \
         offset {log_end}: the log directory was replaced or emptied. Move the archive's day=* \
         directories aside (or set archive.dir to a new directory) so new part files cannot \
         replace archived ones"
    )]
    AheadOfLog {
        /// The archive root.
        dir: PathBuf,
        /// The highest offset in a part file name.
        archived_last: u64,
        /// The log's end offset.
        log_end: u64,
    },
    /// This build has no Parquet writer (the `archive` feature is off).
    #[error(
        "archive.enabled: this build of fieldpulse-cloud has no Parquet writer (feature `archive`)"
    )]
    NotBuilt,
}

impl ArchiveError {
    /// True for failures a retry can cure (IO, the log); false for a state
    /// an operator must fix.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Log(_) | Self::Encode(_))
    }
}

/// The archive's counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct ArchiveMetrics {
    rows: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    write_failures: AtomicU64,
    committed: AtomicU64,
    failing: AtomicBool,
}

/// A snapshot of [`ArchiveMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Readings written to part files since start (a flush rewritten after a
    /// crash counts again).
    pub rows: u64,
    /// Part files written since start.
    pub files: u64,
    /// Bytes of those part files.
    pub bytes: u64,
    /// Failed flushes (and failed log reads) since start.
    pub write_failures: u64,
    /// The committed offset: every record below it is archived.
    pub committed: u64,
    /// True from a failed flush until the next one succeeds.
    pub failing: bool,
}

impl ArchiveMetrics {
    /// The counters now.
    pub fn stats(&self) -> ArchiveStats {
        ArchiveStats {
            rows: self.rows.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            write_failures: self.write_failures.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Acquire),
            failing: self.failing.load(Ordering::Relaxed),
        }
    }
}

/// Appends the archive's series; `log_end` is the log's end offset (lag).
pub fn render_metrics(out: &mut String, stats: &ArchiveStats, log_end: u64) {
    use std::fmt::Write;
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "fieldpulse_cloud_archive_rows_total",
        "counter",
        "Readings written to Parquet part files of the archive.",
        stats.rows,
    );
    metric(
        "fieldpulse_cloud_archive_files_total",
        "counter",
        "Parquet part files written to the archive.",
        stats.files,
    );
    metric(
        "fieldpulse_cloud_archive_bytes_total",
        "counter",
        "Bytes of Parquet part files written to the archive.",
        stats.bytes,
    );
    metric(
        "fieldpulse_cloud_archive_lag",
        "gauge",
        "Ingest log records (offsets) not yet durably archived.",
        log_end.saturating_sub(stats.committed),
    );
    metric(
        "fieldpulse_cloud_archive_write_failures_total",
        "counter",
        "Archive flushes (or log reads) that failed and are retried with backoff.",
        stats.write_failures,
    );
    metric(
        "fieldpulse_cloud_archive_failing",
        "gauge",
        "1 from a failed archive flush until one succeeds (the log keeps the records).",
        u64::from(stats.failing),
    );
}

/// Encodes a day's rows as Parquet (the `archive` feature's polars writer).
fn encode(
    day: &buffer::DayRows<'_>,
    compression: ArchiveCompression,
    first: u64,
    last: u64,
) -> Result<Vec<u8>, ArchiveError> {
    #[cfg(feature = "archive")]
    {
        parquet::encode(day, compression, first, last)
    }
    #[cfg(not(feature = "archive"))]
    {
        let _ = (day, compression, first, last);
        Err(ArchiveError::NotBuilt)
    }
}

/// What an archive directory holds (read from its part files' footers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Day partitions with at least one part file.
    pub days: u64,
    /// Part files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Readings in them.
    pub rows: u64,
}

/// Counts the days, part files, bytes and readings of the archive at `root`.
///
/// # Errors
/// IO errors; an unreadable footer ([`ArchiveError::Encode`]);
/// [`ArchiveError::NotBuilt`] without the `archive` feature.
pub fn inventory(root: &std::path::Path) -> Result<Inventory, ArchiveError> {
    #[cfg(not(feature = "archive"))]
    {
        let _ = root;
        Err(ArchiveError::NotBuilt)
    }
    #[cfg(feature = "archive")]
    {
        let mut inv = Inventory::default();
        let mut last_day = None;
        for part in layout::part_files(root)? {
            let meta = std::fs::metadata(&part.path).map_err(|source| ArchiveError::Io {
                path: part.path.clone(),
                source,
            })?;
            let day = part.path.parent().map(std::path::Path::to_path_buf);
            if day != last_day {
                inv.days += 1;
                last_day = day;
            }
            inv.files += 1;
            inv.bytes += meta.len();
            inv.rows += parquet::count_rows(&part.path)?;
        }
        Ok(inv)
    }
}

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const ABORT: u8 = 2;

/// The archive writer on its own thread.
pub struct Archiver {
    settings: ArchiveSettings,
    metrics: Arc<ArchiveMetrics>,
    recovery: Arc<Mutex<Option<Recovery>>>,
    mode: Arc<AtomicU8>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver")
            .field("dir", &self.settings.dir)
            .finish_non_exhaustive()
    }
}

impl Archiver {
    /// Opens the archive (repairing what a crash left, see the module doc)
    /// and starts the writer thread, reading `source` from `committed`, the
    /// consumer's committed offset. When the directory cannot be opened for
    /// an IO reason (a read-only or full disk), it still starts: the thread
    /// retries with backoff, counting failures, and the log keeps the records.
    ///
    /// # Errors
    /// [`ArchiveError::NotBuilt`] without the `archive` feature;
    /// [`ArchiveError::AheadOfLog`] and [`ArchiveError::State`], which an
    /// operator must resolve.
    pub fn start<S: BatchSource + 'static>(
        settings: ArchiveSettings,
        mut source: S,
        committed: u64,
    ) -> Result<Self, ArchiveError> {
        if !cfg!(feature = "archive") {
            return Err(ArchiveError::NotBuilt);
        }
        let metrics = Arc::new(ArchiveMetrics::default());
        metrics.committed.store(committed, Ordering::Release);
        let recovery = Arc::new(Mutex::new(None));
        let opened = match writer::prepare(&settings, &mut source, committed) {
            Ok((resume, repaired)) => {
                *recovery.lock().unwrap_or_else(|p| p.into_inner()) = Some(repaired);
                Some(resume)
            }
            Err(e) if !e.is_retriable() => return Err(e),
            Err(e) => {
                metrics.write_failures.fetch_add(1, Ordering::Relaxed);
                metrics.failing.store(true, Ordering::Relaxed);
                writer::log_failure(
                    &settings.dir,
                    &e,
                    1,
                    settings.retry_min,
                    "Archive could not open its directory",
                );
                None
            }
        };
        let mode = Arc::new(AtomicU8::new(RUN));
        let thread = {
            let mode = Arc::clone(&mode);
            let metrics = Arc::clone(&metrics);
            let recovery = Arc::clone(&recovery);
            let thread_settings = settings.clone();
            std::thread::Builder::new()
                .name("fp-archive".into())
                .spawn(move || {
                    let settings = thread_settings;
                    let resume = match opened {
                        Some(resume) => resume,
                        None => match writer::prepare_with_retry(
                            &settings,
                            &mut source,
                            committed,
                            &metrics,
                            &recovery,
                            &mode,
                        ) {
                            Some(resume) => resume,
                            None => return,
                        },
                    };
                    let writer = ArchiveWriter::resume_at(settings, source, resume, metrics);
                    writer::run(writer, &mode);
                })
                .map_err(|source| ArchiveError::Io {
                    path: settings.dir.clone(),
                    source,
                })?
        };
        Ok(Self {
            settings,
            metrics,
            recovery,
            mode,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ArchiveSettings {
        &self.settings
    }

    /// What opening the directory found and repaired (`None` while it
    /// cannot be opened).
    pub fn recovery(&self) -> Option<Recovery> {
        self.recovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters now.
    pub fn stats(&self) -> ArchiveStats {
        self.metrics.stats()
    }

    /// True while the writer thread runs.
    pub fn is_running(&self) -> bool {
        self.lock_thread()
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    fn lock_thread(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.thread.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every record below `offset` is archived and committed (or
    /// `timeout`). Blocking.
    pub fn wait_committed(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stats().committed >= offset {
                return true;
            }
            if Instant::now() >= deadline || !self.is_running() {
                return self.stats().committed >= offset;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads the log to its end, flushes everything and stops (one attempt
    /// per flush: a failing disk leaves the rest in the log). Blocking.
    pub fn shutdown(&self) {
        self.stop(DRAIN);
    }

    /// Stops at once without flushing, as a crash would (tests).
    pub fn abort(&self) {
        self.stop(ABORT);
    }

    fn stop(&self, mode: u8) {
        self.mode.store(mode, Ordering::Release);
        if let Some(t) = self.lock_thread().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        // Not joined: an archiver dropped without shutdown (a failed start)
        // stops within one read wait, leaving what a crash leaves.
        if self.mode.load(Ordering::Acquire) == RUN {
            self.mode.store(ABORT, Ordering::Release);
        }
    }
}
