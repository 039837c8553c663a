//! The dead-letter directory: batches the cloud rejected permanently, kept durably for an
//! operator to inspect and replay (`fieldpulse-edge dead-letters list|replay`).
//!
//! Each dead letter is two files, named by spool epoch and seq:
//!
//! | file | what |
//! |---|---|
//! | `batch-<epoch, 16 hex>-<seq, 20 digits>.pb.zst` | the request body exactly as sent (zstd-compressed protobuf `Batch`) |
//! | `batch-<epoch, 16 hex>-<seq, 20 digits>.json` | [`DeadLetterMeta`]: seq, epoch, HTTP status, the cloud's error (truncated), time, readings |
//! | `*.tmp` | a write in progress; a crash can leave one (or a `.json` without its body), removed when the agent starts ([`DeadLetterDir::remove_leftovers`]) |
//!
//! A write is durable before it returns: the metadata and the body are written to `.tmp` files
//! and fsynced, the metadata is renamed into place and the directory fsynced, then the body, and
//! the directory fsynced again. The body file is the commit point: a dead letter exists once its
//! body does, so a crash never leaves a body without its metadata. The forwarder acks (frees) a
//! batch in the spool only after [`DeadLetterDir::write`] returned `Ok`; every file in the
//! directory counts against `spool.max_bytes` (see [`DeadLetterDir::usage`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ForwardConfig;
use crate::forwarder::{post_batch, ForwardError, Outbound};
use crate::metrics::MetricsHandle;
use crate::spool::fs::{FileLayer, StdFileLayer};
use crate::spool::Spool;

/// Version of the metadata format.
pub const META_FORMAT: u32 = 1;
/// The cloud's error body is kept up to this many bytes.
pub const MAX_ERROR_BYTES: usize = 1024;
const BODY_SUFFIX: &str = ".pb.zst";
const META_SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".tmp";

/// Why a dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl DeadLetterError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What is known about a dead-lettered batch (its `.json` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterMeta {
    /// [`META_FORMAT`].
    pub format: u32,
    /// The gateway id the batch was sent under (its `Idempotency-Key` is `<gateway_id>/<seq>`).
    pub gateway_id: String,
    /// Batch seq.
    pub seq: u64,
    /// Spool epoch of the seq.
    pub spool_epoch: u64,
    /// The cloud's HTTP status.
    pub http_status: u16,
    /// The cloud's error body, truncated to [`MAX_ERROR_BYTES`].
    pub error: String,
    /// When the batch was dead-lettered (ms since the Unix epoch).
    pub dead_lettered_ms: i64,
    /// Readings in the batch.
    pub readings: u64,
    /// Whether the batch was a backfill batch.
    pub historical: bool,
}

/// One dead letter found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The body file.
    pub body_path: PathBuf,
    /// Size of the body file.
    pub body_bytes: u64,
    /// Its metadata; when the `.json` file is missing or unreadable, seq and epoch come from the
    /// file name, the status is 0 and `error` says what was wrong.
    pub meta: DeadLetterMeta,
}

/// Bytes and dead letters in the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of every file in the directory (bodies, metadata, leftovers).
    pub bytes: u64,
    /// Dead letters (body files).
    pub files: u64,
}

/// The dead-letter directory (created by the first write).
#[derive(Debug, Clone)]
pub struct DeadLetterDir {
    fs: Arc<dyn FileLayer>,
    dir: PathBuf,
}

/// Truncates `text` to at most `max` bytes on a char boundary.
pub fn truncate_error(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl DeadLetterDir {
    /// The directory `dir` on the real file system.
    pub fn new(dir: &Path) -> Self {
        Self::with_fs(Arc::new(StdFileLayer), dir)
    }

    /// The directory `dir` over an injectable file layer.
    pub fn with_fs(fs: Arc<dyn FileLayer>, dir: &Path) -> Self {
        Self {
            fs,
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn stem(spool_epoch: u64, seq: u64) -> String {
        format!("batch-{spool_epoch:016x}-{seq:020}")
    }

    /// Writes a dead letter durably (see the module docs) and returns its body file. A dead
    /// letter of the same epoch and seq is replaced.
    ///
    /// # Errors
    /// [`DeadLetterError::Io`] naming the file; temporary files are removed (best effort).
    pub fn write(&self, meta: &DeadLetterMeta, body: &[u8]) -> Result<PathBuf, DeadLetterError> {
        let stem = Self::stem(meta.spool_epoch, meta.seq);
        let meta_path = self.dir.join(format!("{stem}{META_SUFFIX}"));
        let body_path = self.dir.join(format!("{stem}{BODY_SUFFIX}"));
        let meta_tmp = self.dir.join(format!("{stem}{META_SUFFIX}{TMP_SUFFIX}"));
        let body_tmp = self.dir.join(format!("{stem}{BODY_SUFFIX}{TMP_SUFFIX}"));
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|err| DeadLetterError::io("encoding", &meta_path, io::Error::other(err)))?;
        let res = self
            .fs
            .create_dir_all(&self.dir)
            .map_err(|err| DeadLetterError::io("creating directory", &self.dir, err))
            .and_then(|()| self.write_synced(&meta_tmp, &json))
            .and_then(|()| self.write_synced(&body_tmp, body))
            .and_then(|()| self.rename_synced(&meta_tmp, &meta_path))
            .and_then(|()| self.rename_synced(&body_tmp, &body_path));
        if res.is_err() {
            for tmp in [&meta_tmp, &body_tmp] {
                let _ = self.fs.remove_file(tmp);
            }
        }
        res.map(|()| body_path)
    }

    fn write_synced(&self, path: &Path, data: &[u8]) -> Result<(), DeadLetterError> {
        let mut file = self
            .fs
            .create_truncate(path)
            .map_err(|err| DeadLetterError::io("creating", path, err))?;
        file.write_all(data)
            .and_then(|()| file.sync_data())
            .map_err(|err| DeadLetterError::io("writing", path, err))
    }

    fn rename_synced(&self, from: &Path, to: &Path) -> Result<(), DeadLetterError> {
        self.fs
            .rename(from, to)
            .map_err(|err| DeadLetterError::io("renaming", from, err))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|err| DeadLetterError::io("syncing directory", &self.dir, err))
    }

    /// Every dead letter, oldest first (by time, then epoch and seq). A missing directory
    /// holds none.
    ///
    /// # Errors
    /// [`DeadLetterError::Io`] when the directory cannot be listed.
    pub fn list(&self) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let entries = match self.fs.list_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(DeadLetterError::io("listing", &self.dir, err)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let Some(stem) = entry.name.strip_suffix(BODY_SUFFIX) else {
                continue;
            };
            let Some((spool_epoch, seq)) = parse_stem(stem) else {
                continue;
            };
            let meta_path = self.dir.join(format!("{stem}{META_SUFFIX}"));
            let meta = match self.fs.read(&meta_path) {
                Ok(bytes) => serde_json::from_slice::<DeadLetterMeta>(&bytes)
                    .map_err(|err| format!("metadata unreadable: {err}")),
                Err(err) => Err(format!("metadata unreadable: {err}")),
            };
            let meta = meta.unwrap_or_else(|error| DeadLetterMeta {
                format: META_FORMAT,
                gateway_id: String::new(),
                seq,
                spool_epoch,
                http_status: 0,
                error,
                dead_lettered_ms: 0,
                readings: 0,
                historical: false,
            });
            out.push(DeadLetter {
                body_path: self.dir.join(&entry.name),
                body_bytes: entry.len,
                meta,
            });
        }
        out.sort_by_key(|l| (l.meta.dead_lettered_ms, l.meta.spool_epoch, l.meta.seq));
        Ok(out)
    }

    /// The body of a dead letter, as it was sent.
    ///
    /// # Errors
    /// [`DeadLetterError::Io`] naming the file.
    pub fn read_body(&self, letter: &DeadLetter) -> Result<Vec<u8>, DeadLetterError> {
        self.fs
            .read(&letter.body_path)
            .map_err(|err| DeadLetterError::io("reading", &letter.body_path, err))
    }

    /// Removes a dead letter (body first, so a crash never leaves a body without metadata)
    /// and makes the removal durable.
    ///
    /// # Errors
    /// [`DeadLetterError::Io`] naming the file.
    pub fn remove(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let stem = Self::stem(letter.meta.spool_epoch, letter.meta.seq);
        self.fs
            .remove_file(&letter.body_path)
            .map_err(|err| DeadLetterError::io("removing", &letter.body_path, err))?;
        let meta_path = self.dir.join(format!("{stem}{META_SUFFIX}"));
        match self.fs.remove_file(&meta_path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(DeadLetterError::io("removing", &meta_path, err)),
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|err| DeadLetterError::io("syncing directory", &self.dir, err))
    }

    /// Removes what a crash in the middle of a write can leave behind: `.tmp` files, and
    /// metadata whose body never made it. Returns how many files were removed. Only the agent
    /// writes to the directory; call this before it writes (at start).
    ///
    /// # Errors
    /// [`DeadLetterError::Io`] naming the file or directory (a missing directory is empty).
    pub fn remove_leftovers(&self) -> Result<u64, DeadLetterError> {
        let entries = match self.fs.list_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(DeadLetterError::io("listing", &self.dir, err)),
        };
        let bodies: std::collections::HashSet<&str> = entries
            .iter()
            .filter_map(|e| e.name.strip_suffix(BODY_SUFFIX))
            .collect();
        let mut removed = 0;
        for entry in &entries {
            let orphan_meta = entry
                .name
                .strip_suffix(META_SUFFIX)
                .is_some_and(|stem| parse_stem(stem).is_some() && !bodies.contains(stem));
            let ours_tmp = entry.name.starts_with("batch-") && entry.name.ends_with(TMP_SUFFIX);
            if orphan_meta || ours_tmp {
                let path = self.dir.join(&entry.name);
                self.fs
                    .remove_file(&path)
                    .map_err(|err| DeadLetterError::io("removing", &path, err))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|err| DeadLetterError::io("syncing directory", &self.dir, err))?;
        }
        Ok(removed)
    }

    /// Bytes of every file in the directory and the number of dead letters.
    ///
    /// # Errors
    /// [`DeadLetterError::Io`] when the directory cannot be listed (a missing one is empty).
    pub fn usage(&self) -> Result<Usage, DeadLetterError> {
        let entries = match self.fs.list_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Usage::default()),
            Err(err) => return Err(DeadLetterError::io("listing", &self.dir, err)),
        };
        Ok(Usage {
            bytes: entries.iter().map(|e| e.len).sum(),
            files: entries
                .iter()
                .filter(|e| e.name.ends_with(BODY_SUFFIX))
                .count() as u64,
        })
    }
}

/// How often [`DeadLetterSink::watch`] measures the directory while the agent runs, so that
/// dead letters an operator replayed or removed give their share of the spool's cap back.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// An error and its sources on one line, for logs.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The forwarder's side of the directory: durable writes on a blocking thread, and the
/// directory's size applied to the spool's cap ([`Spool::set_external_bytes`]) and to the
/// `dead_letter_bytes` / `dead_letter_files` gauges.
#[derive(Debug)]
pub(crate) struct DeadLetterSink {
    dir: DeadLetterDir,
    spool: Arc<Mutex<Spool>>,
    metrics: MetricsHandle,
    /// Leftovers of a write cut short have been looked for (once, before the first write).
    cleaned: AtomicBool,
}

impl DeadLetterSink {
    pub(crate) fn new(dir: &Path, spool: Arc<Mutex<Spool>>, metrics: MetricsHandle) -> Self {
        Self {
            dir: DeadLetterDir::new(dir),
            spool,
            metrics,
            cleaned: AtomicBool::new(false),
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a dead letter durably on a blocking thread, then measures the directory.
    pub(crate) async fn write(
        self: Arc<Self>,
        meta: DeadLetterMeta,
        body: Vec<u8>,
    ) -> Result<Result<(), DeadLetterError>, tokio::task::JoinError> {
        tokio::task::spawn_blocking(move || {
            let res = self.dir.write(&meta, &body).map(|_| ());
            self.refresh();
            res
        })
        .await
    }

    /// Measures the directory (blocking) and applies its size; returns its bytes, or `None`
    /// (logged) when it cannot be listed. The first call also removes leftovers of a write cut
    /// short (see [`DeadLetterDir::remove_leftovers`]).
    pub(crate) fn refresh(&self) -> Option<u64> {
        if !self.cleaned.swap(true, Ordering::Relaxed) {
            match self.dir.remove_leftovers() {
                Ok(0) => {}
                Ok(removed) => info!(
                    files = removed,
                    "Removed dead-letter files of a write cut short."
                ),
                Err(err) => {
                    warn!(error = %error_chain(&err), "Cannot clean up the dead-letter directory.")
                }
            }
        }
        match self.dir.usage() {
            Ok(usage) => {
                self.spool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set_external_bytes(usage.bytes);
                let metrics = self.metrics.inner();
                metrics
                    .dead_letter_bytes
                    .store(usage.bytes, Ordering::Relaxed);
                metrics
                    .dead_letter_files
                    .store(usage.files, Ordering::Relaxed);
                Some(usage.bytes)
            }
            Err(err) => {
                warn!(error = %error_chain(&err), "Cannot measure the dead-letter directory; its size is not counted in the spool cap.");
                None
            }
        }
    }

    /// Measures the directory every [`REFRESH_INTERVAL`] until `done`, waking the writer
    /// (`space_freed`) when it shrank.
    pub(crate) async fn watch(self: Arc<Self>, space_freed: Arc<Notify>, done: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = done.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
            let before = self
                .metrics
                .inner()
                .dead_letter_bytes
                .load(Ordering::Relaxed);
            let sink = Arc::clone(&self);
            if let Ok(Some(bytes)) = tokio::task::spawn_blocking(move || sink.refresh()).await {
                if bytes < before {
                    space_freed.notify_one();
                }
            }
        }
    }
}

/// Why replaying a dead letter failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Its body could not be read, or it could not be removed after the cloud's ack.
    #[error(transparent)]
    File(#[from] DeadLetterError),
    /// The cloud did not acknowledge it.
    #[error(transparent)]
    Send(#[from] ForwardError),
}

/// Sends a dead letter's body to the configured cloud with the forwarder's headers (its
/// `Idempotency-Key` is `<gateway id>/<seq>`, the gateway id from its metadata, else
/// `gateway_id`) and removes it once a `BatchAck` echoing its seq and spool epoch arrived.
/// Returns the ack's `contiguous_seq`.
///
/// # Errors
/// [`ReplayError`]; the dead letter is kept unless the cloud acknowledged it.
pub async fn replay(
    dir: &DeadLetterDir,
    letter: &DeadLetter,
    http: &reqwest::Client,
    cfg: &ForwardConfig,
    gateway_id: &str,
) -> Result<u64, ReplayError> {
    let body = dir.read_body(letter)?;
    let gateway_id = if letter.meta.gateway_id.is_empty() {
        gateway_id
    } else {
        &letter.meta.gateway_id
    };
    let outbound = Outbound {
        gateway_id,
        seq: letter.meta.seq,
        spool_epoch: letter.meta.spool_epoch,
        body: &body,
    };
    // No measured uplink rate here: allow the longest request the forwarder would.
    let ack = post_batch(
        http,
        &cfg.batches_url,
        cfg.token.as_ref(),
        outbound,
        cfg.request_timeout_max,
    )
    .await?;
    dir.remove(letter)?;
    Ok(ack.contiguous_seq)
}

/// `batch-<epoch hex>-<seq>` -> (epoch, seq).
fn parse_stem(stem: &str) -> Option<(u64, u64)> {
    let rest = stem.strip_prefix("batch-")?;
    let (epoch, seq) = rest.split_once('-')?;
    Some((u64::from_str_radix(epoch, 16).ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;
    use crate::spool::sim_fs::SimFs;

    fn meta(seq: u64) -> DeadLetterMeta {
        DeadLetterMeta {
            format: META_FORMAT,
            gateway_id: "gw-1".into(),
            seq,
            spool_epoch: 0xabc,
            http_status: 422,
            error: "bad batch".into(),
            dead_lettered_ms: 1_700_000_000_000 + seq as i64,
            readings: 5,
            historical: false,
        }
    }

    #[test]
    fn a_dead_letter_round_trips_through_write_list_read_and_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DeadLetterDir::new(&tmp.path().join("dead"));
        assert!(dir.list().unwrap().is_empty());
        assert_eq!(dir.usage().unwrap(), Usage::default());
        dir.write(&meta(2), b"body-2").unwrap();
        dir.write(&meta(1), b"body-1").unwrap();
        let letters = dir.list().unwrap();
        assert_eq!(
            letters.iter().map(|l| l.meta.clone()).collect::<Vec<_>>(),
            vec![meta(1), meta(2)]
        );
        assert_eq!(dir.read_body(&letters[1]).unwrap(), b"body-2");
        let usage = dir.usage().unwrap();
        assert_eq!(usage.files, 2);
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(usage.bytes, on_disk);
        dir.remove(&letters[0]).unwrap();
        assert_eq!(dir.list().unwrap().len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_dead_letter_survives_a_power_cut_right_after_write_returns() {
        let dead = Path::new("/dead");
        for seed in 0..50 {
            let fs = SimFs::new();
            let dir = DeadLetterDir::with_fs(fs.clone(), dead);
            dir.write(&meta(7), b"the batch body").unwrap();
            fs.crash(&mut SmallRng::seed_from_u64(seed));
            let letters = dir.list().unwrap();
            assert_eq!(letters.len(), 1, "seed {seed}");
            assert_eq!(letters[0].meta, meta(7));
            assert_eq!(dir.read_body(&letters[0]).unwrap(), b"the batch body");
        }
    }

    #[test]
    fn a_power_cut_during_a_write_leaves_no_dead_letter_or_a_whole_one() {
        let dead = Path::new("/dead");
        for ops in 0..12 {
            for seed in 0..8 {
                let fs = SimFs::new();
                let dir = DeadLetterDir::with_fs(fs.clone(), dead);
                fs.cut_power_after(ops);
                let res = dir.write(&meta(3), b"body");
                fs.crash(&mut SmallRng::seed_from_u64(seed));
                let letters = dir.list().unwrap();
                if res.is_ok() {
                    assert_eq!(letters.len(), 1, "ops {ops}");
                }
                for letter in letters {
                    assert_eq!(letter.meta, meta(3), "ops {ops} seed {seed}");
                    assert_eq!(dir.read_body(&letter).unwrap(), b"body");
                }
            }
        }
    }

    #[test]
    fn leftovers_of_a_write_cut_short_are_removed_and_dead_letters_kept() {
        let dead = Path::new("/dead");
        let mut removed_some = false;
        for ops in 0..12 {
            let fs = SimFs::new();
            let dir = DeadLetterDir::with_fs(fs.clone(), dead);
            dir.write(&meta(1), b"kept").unwrap();
            fs.cut_power_after(ops);
            let _ = dir.write(&meta(2), b"cut short");
            fs.crash(&mut SmallRng::seed_from_u64(ops));
            let before = dir.list().unwrap();
            removed_some |= dir.remove_leftovers().unwrap() > 0;
            assert_eq!(dir.list().unwrap(), before, "ops {ops}");
            let names: Vec<_> = fs.file_names();
            assert_eq!(
                names.len(),
                2 * before.len(),
                "ops {ops}: only whole dead letters left: {names:?}"
            );
        }
        assert!(removed_some);
    }

    #[test]
    fn a_failed_write_reports_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let dir = DeadLetterDir::new(&blocker.join("dead"));
        let err = dir.write(&meta(1), b"body").unwrap_err();
        assert!(err.to_string().contains("dead"), "{err}");
    }

    #[test]
    fn errors_are_truncated_on_a_char_boundary() {
        assert_eq!(truncate_error("héllo", 2), "h");
        assert_eq!(truncate_error("abc", 10), "abc");
    }
}
