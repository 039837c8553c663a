//! `ArchiveWriter`: the synchronous core (read, buffer, flush, commit) and
//! the loop the archive thread runs around it.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::buffer::RowBuffer;
use super::layout::{self, Pending, Recovery};
use super::{ArchiveError, ArchiveMetrics, ArchiveSettings, ABORT, DRAIN};
use crate::log::BatchSource;

/// Records asked for per read: small, so a flush starts close to `flush_rows`.
const READ_MAX: usize = 16;
/// Longest a read waits for new records (how soon a stop is noticed).
const READ_WAIT: Duration = Duration::from_millis(100);
/// Version of `_pending.json`.
const PENDING_VERSION: u32 = 1;

/// What one flush wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// First and last offset of the flushed records.
    pub first: u64,
    /// Last offset.
    pub last: u64,
    /// The offset committed (or to commit).
    pub next: u64,
    /// Readings written.
    pub rows: u64,
    /// Part files written (one per UTC day).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Reads log records into a [`RowBuffer`] and flushes it as part files,
/// committing the consumer offset after they are durable. Single-threaded;
/// [`super::Archiver`] runs it on a thread, tests drive it step by step.
pub struct ArchiveWriter<S: BatchSource> {
    settings: ArchiveSettings,
    source: S,
    buffer: RowBuffer,
    /// The next offset to read.
    next: u64,
    /// Every record below this is archived and committed.
    committed: u64,
    metrics: Arc<ArchiveMetrics>,
}

impl<S: BatchSource> std::fmt::Debug for ArchiveWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("dir", &self.settings.dir)
            .field("next", &self.next)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

impl<S: BatchSource> ArchiveWriter<S> {
    /// Opens the archive directory for `source`, whose committed offset is
    /// `committed`: repairs what a crash left (see the module doc) and
    /// resumes there, or after part files an earlier registration of the
    /// consumer wrote.
    ///
    /// # Errors
    /// IO errors; [`ArchiveError::State`] for an unreadable `_pending.json`;
    /// [`ArchiveError::AheadOfLog`]; a failed commit.
    pub fn open(
        settings: ArchiveSettings,
        mut source: S,
        committed: u64,
        metrics: Arc<ArchiveMetrics>,
    ) -> Result<(Self, Recovery), ArchiveError> {
        let (resume, recovery) = prepare(&settings, &mut source, committed)?;
        Ok((Self::resume_at(settings, source, resume, metrics), recovery))
    }

    /// A writer reading from `resume` (what [`prepare`] returned).
    pub(super) fn resume_at(
        settings: ArchiveSettings,
        source: S,
        resume: u64,
        metrics: Arc<ArchiveMetrics>,
    ) -> Self {
        metrics.committed.store(resume, Ordering::Release);
        Self {
            settings,
            source,
            buffer: RowBuffer::default(),
            next: resume,
            committed: resume,
            metrics,
        }
    }

    /// The committed offset.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The buffered records and readings.
    pub fn buffer(&self) -> &RowBuffer {
        &self.buffer
    }

    /// The source (e.g. its end offset).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Reads up to `max` records (waiting up to `wait` for the first) into
    /// the buffer; returns how many.
    ///
    /// # Errors
    /// Log read errors.
    pub fn fill(&mut self, max: usize, wait: Duration) -> Result<usize, ArchiveError> {
        let records = self.source.read(self.next, max, wait)?;
        for record in &records {
            self.buffer.push(record.offset, &record.batch);
            self.next = record.offset + 1;
        }
        Ok(records.len())
    }

    /// Writes the buffered readings as part files, durably, without
    /// committing: the first half of [`ArchiveWriter::flush`] (a crash
    /// between the two is what the recovery tests simulate). `None` when
    /// nothing is buffered.
    ///
    /// # Errors
    /// Encoding or IO errors; a partly written flush is repaired by the next
    /// attempt (same names) or by the next open.
    pub fn write_files(&mut self) -> Result<Option<FlushReport>, ArchiveError> {
        let Some((first, last)) = self.buffer.range() else {
            return Ok(None);
        };
        let root = self.settings.dir.clone();
        let compression = self.settings.compression;
        let name = layout::part_file_name(first, last);
        let days = self.buffer.by_day();
        let mut report = FlushReport {
            first,
            last,
            next: last + 1,
            ..FlushReport::default()
        };
        if days.is_empty() {
            // Records without readings: only the offset moves.
            return Ok(Some(report));
        }
        layout::ensure_dir(&root)?;
        let files = days
            .iter()
            .map(|d| format!("{}/{name}", layout::day_dir_name(d.day)))
            .collect();
        layout::write_pending(
            &root,
            &Pending {
                version: PENDING_VERSION,
                first,
                last,
                next: last + 1,
                files,
            },
        )?;
        for day in &days {
            let bytes = super::encode(day, compression, first, last)?;
            let dir = root.join(layout::day_dir_name(day.day));
            layout::ensure_dir(&dir)?;
            layout::write_atomic(&dir, &name, &bytes)?;
            report.rows += day.rows.len() as u64;
            report.files += 1;
            report.bytes += bytes.len() as u64;
        }
        Ok(Some(report))
    }

    /// Commits `next` as the consumer's offset and forgets the buffer: the
    /// second half of [`ArchiveWriter::flush`].
    ///
    /// # Errors
    /// The commit failed (the files stay; the next attempt rewrites them).
    pub fn commit(&mut self, next: u64) -> Result<(), ArchiveError> {
        self.source.commit(next)?;
        self.committed = next;
        self.metrics.committed.store(next, Ordering::Release);
        self.buffer.clear();
        if let Err(e) = layout::remove_pending(&self.settings.dir) {
            // Harmless: opening recognises a committed pending file.
            tracing::warn!(error = %e, "Could not remove the archive's pending file.");
        }
        Ok(())
    }

    /// Writes the buffered readings as part files and commits their offsets.
    /// `None` when nothing is buffered. On error the buffer is kept for the
    /// next attempt and the failure is counted.
    ///
    /// # Errors
    /// Encoding, IO or commit errors.
    pub fn flush(&mut self) -> Result<Option<FlushReport>, ArchiveError> {
        let res = self.write_files().and_then(|report| {
            if let Some(r) = &report {
                self.commit(r.next)?;
            }
            Ok(report)
        });
        let m = &self.metrics;
        match &res {
            Ok(Some(r)) => {
                m.rows.fetch_add(r.rows, Ordering::Relaxed);
                m.files.fetch_add(r.files, Ordering::Relaxed);
                m.bytes.fetch_add(r.bytes, Ordering::Relaxed);
                m.failing.store(false, Ordering::Relaxed);
                tracing::debug!(
                    first = r.first,
                    last = r.last,
                    rows = r.rows,
                    files = r.files,
                    bytes = r.bytes,
                    "Archived records."
                );
            }
            Ok(None) => {}
            Err(_) => {
                m.write_failures.fetch_add(1, Ordering::Relaxed);
                m.failing.store(true, Ordering::Relaxed);
            }
        }
        res
    }

    /// True when the buffer should be flushed now: `flush_rows` readings,
    /// or records buffered since `since` for `flush_every`.
    fn due(&self, since: Option<Instant>, now: Instant) -> bool {
        !self.buffer.is_empty()
            && (self.buffer.n_rows() >= self.settings.flush_rows
                || since.is_some_and(|t| now.duration_since(t) >= self.settings.flush_every))
    }
}

/// The repair step of [`ArchiveWriter::open`], keeping the source so that a
/// caller can retry: returns the offset to resume from and what was repaired.
pub(super) fn prepare<S: BatchSource>(
    settings: &ArchiveSettings,
    source: &mut S,
    committed: u64,
) -> Result<(u64, Recovery), ArchiveError> {
    let recovery = layout::recover(&settings.dir, committed)?;
    let mut resume = committed;
    if let Some(last) = recovery.max_last_offset.filter(|&l| l >= committed) {
        let log_end = source.end_offset();
        if last >= log_end {
            return Err(ArchiveError::AheadOfLog {
                dir: settings.dir.clone(),
                archived_last: last,
                log_end,
            });
        }
        source.commit(last + 1)?;
        resume = last + 1;
        tracing::info!(
            committed,
            resume,
            "The archive already holds records past its consumer offset; resuming after them."
        );
    }
    if recovery.uncommitted_files_deleted > 0 || recovery.tmp_files_deleted > 0 {
        tracing::warn!(
            dir = %settings.dir.display(),
            uncommitted_files_deleted = recovery.uncommitted_files_deleted,
            tmp_files_deleted = recovery.tmp_files_deleted,
            "Removed the files of an archive flush that was not committed; its records are archived again."
        );
    }
    Ok((resume, recovery))
}

/// Retries [`prepare`] with backoff until it succeeds (`Some(resume)`), fails
/// for good (logged; `None`) or the archiver stops (`None`).
pub(super) fn prepare_with_retry<S: BatchSource>(
    settings: &ArchiveSettings,
    source: &mut S,
    committed: u64,
    metrics: &ArchiveMetrics,
    recovery: &std::sync::Mutex<Option<Recovery>>,
    mode: &AtomicU8,
) -> Option<u64> {
    let mut failures: u32 = 1;
    loop {
        sleep_until(Instant::now() + backoff(settings, failures), mode);
        if mode.load(Ordering::Acquire) != super::RUN {
            return None;
        }
        match prepare(settings, source, committed) {
            Ok((resume, repaired)) => {
                *recovery.lock().unwrap_or_else(|p| p.into_inner()) = Some(repaired);
                metrics.failing.store(false, Ordering::Relaxed);
                tracing::info!(dir = %settings.dir.display(), failures, "The archive directory opened; archiving.");
                return Some(resume);
            }
            Err(e) if !e.is_retriable() => {
                tracing::error!(dir = %settings.dir.display(), error = %error_chain(&e), "The archive cannot start; the ingest log keeps the records.");
                return None;
            }
            Err(e) => {
                metrics.write_failures.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                let delay = backoff(settings, failures);
                log_failure(
                    &settings.dir,
                    &e,
                    failures,
                    delay,
                    "Archive could not open its directory",
                );
            }
        }
    }
}

/// Capped exponential backoff: `min`, doubling per failure, at most `max`.
pub(super) fn backoff(settings: &ArchiveSettings, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    settings
        .retry_min
        .saturating_mul(factor)
        .min(settings.retry_max)
}

/// Sleeps until `until` or a stop other than `RUN`, in short steps.
fn sleep_until(until: Instant, mode: &AtomicU8) {
    loop {
        let now = Instant::now();
        if now >= until || mode.load(Ordering::Acquire) != super::RUN {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// The archive thread: read, flush when due, retry failures with backoff;
/// on `DRAIN` read to the end of the log and flush everything, on `ABORT`
/// stop at once.
pub(super) fn run<S: BatchSource>(mut writer: ArchiveWriter<S>, mode: &AtomicU8) {
    let dir = writer.settings.dir.clone();
    let mut since: Option<Instant> = None;
    let mut failures: u32 = 0;
    loop {
        let stop = mode.load(Ordering::Acquire);
        if stop == ABORT {
            return;
        }
        let draining = stop == DRAIN;
        let now = Instant::now();
        if failures > 0 || writer.due(since, now) || (draining && !writer.buffer.is_empty()) {
            match writer.flush() {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(dir = %dir.display(), failures, "Archive writes succeed again.");
                    }
                    failures = 0;
                    since = None;
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(&writer.settings, failures);
                    log_failure(&dir, &e, failures, delay, "Archive flush failed");
                    if draining {
                        // One attempt at shutdown: the log keeps the records.
                        return;
                    }
                    sleep_until(Instant::now() + delay, mode);
                }
            }
            continue;
        }
        if draining && writer.next >= writer.source.end_offset() {
            return;
        }
        let wait = if draining {
            Duration::ZERO
        } else {
            since.map_or(READ_WAIT, |t| {
                (t + writer.settings.flush_every)
                    .saturating_duration_since(now)
                    .min(READ_WAIT)
            })
        };
        match writer.fill(READ_MAX, wait) {
            Ok(0) if draining => return,
            Ok(n) => {
                if n > 0 && since.is_none() {
                    since = Some(Instant::now());
                }
            }
            Err(e) => {
                writer
                    .metrics
                    .write_failures
                    .fetch_add(1, Ordering::Relaxed);
                let delay = backoff(&writer.settings, 1);
                log_failure(&dir, &e, 1, delay, "Archive could not read the ingest log");
                if draining {
                    return;
                }
                sleep_until(Instant::now() + delay, mode);
            }
        }
    }
}

pub(super) fn log_failure(
    dir: &Path,
    err: &ArchiveError,
    failures: u32,
    retry_in: Duration,
    what: &str,
) {
    let chain = error_chain(err);
    tracing::warn!(
        dir = %dir.display(),
        error = %chain,
        failures,
        retry_in = ?retry_in,
        "{what}; retrying (the ingest log keeps the records)."
    );
}

/// `err: cause: cause` in one line.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
