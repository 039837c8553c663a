//! The processor: the ingest log → scoring shards → episodes → outbox.
//!
//! ```text
//!  BatchSource ──reader thread──▶ shard 0 ─┐  (each: anomaly + failure scorers,
//!  (log with offsets)          ├─▶ shard 1 ─┤   episodes, actions → outbox)
//!                              └─▶ shard N ─┘──▶ cloud.sqlite
//! ```
//!
//! The reader sends every log record (shared, not copied) to every shard;
//! a shard keeps the series of the assets that hash to it. The consumer
//! offset committed back to the log is the lowest offset every shard has
//! checkpointed, so retention never deletes a record a shard still needs.
//! Nothing here assumes one process: the log is reached only through
//! [`BatchSource`], and each shard's state is keyed by asset in the store.

mod metrics;
pub mod rows;
mod shard;

use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use fieldpulse_models::anomaly::DetectorValidParams;
use fieldpulse_models::failure::FailureModel;

pub use metrics::{Agreement, ProcessorMetrics, RiskCounts, RiskHistogram, RISK_BUCKETS};
pub use rows::SensorLayout;
pub use shard::{FeedbackEvent, ANOMALY_MODE};

use crate::config::{RawCampaigns, RawPriority, RawRollout};
use crate::directory::Directory;
use crate::episodes::EpisodeConfig;
use crate::log::{BatchSource, LogError, LogRecord};
use crate::store::{Store, StoreError};

/// Why the processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the log failed.
    #[error("reading the ingest log: {0}")]
    Log(#[from] LogError),
    /// A model could not be built or refused the input.
    #[error("model: {0}")]
    Model(String),
    /// The outbox refused an action.
    #[error("outbox: {0}")]
    Outbox(String),
    /// The store's checkpoints point past the end of the log: the log was
    /// replaced or emptied under a database that had scored more of it.
    #[error(
        "the scoring state (cloud.sqlite) was checkpointed at log offset {checkpoint}, but the \
         ingest log ends at offset {log_end}: the log directory was replaced or emptied. Restore \
         the log that belongs to this database, or move cloud.sqlite aside to start over from the \
         log's beginning"
    )]
    StateAheadOfLog {
        /// Where the shards would resume.
        checkpoint: u64,
        /// Where the log ends.
        log_end: u64,
    },
}

impl From<crate::outbox::OutboxError> for ProcessError {
    fn from(e: crate::outbox::OutboxError) -> Self {
        ProcessError::Outbox(e.to_string())
    }
}

impl From<rusqlite::Error> for ProcessError {
    fn from(e: rusqlite::Error) -> Self {
        ProcessError::Store(StoreError::Sqlite(e))
    }
}

/// A failure model as the shards serve it: the validated artifact and the
/// name operators know it by.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// The registry version (`v3`), or the artifact's `model_version` when it
    /// was loaded from `scoring.model`: the `version` label of the model metrics.
    pub version: Arc<str>,
    /// The validated model ([`FailureModel::validate`]).
    pub model: Arc<FailureModel>,
}

impl ServedModel {
    /// A model served under `version`.
    pub fn new(version: &str, model: Arc<FailureModel>) -> Self {
        Self {
            version: Arc::from(version),
            model,
        }
    }

    /// A model served under its own `model_version` (no registry).
    pub fn from_artifact(model: Arc<FailureModel>) -> Self {
        Self {
            version: Arc::from(model.model_version.as_str()),
            model,
        }
    }
}

/// One row a shard scored, as a [`ScoreTap`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct ScoredRow<'a> {
    /// The shard that scored it.
    pub shard: usize,
    /// The asset.
    pub asset: &'a str,
    /// The row's instant (ms).
    pub ts_ms: i64,
    /// [`ServedModel::version`] of the failure model that scored it, if any.
    pub champion: Option<&'a str>,
    /// [`ServedModel::version`] of the shadow model that also scored it, if any.
    pub shadow: Option<&'a str>,
}

/// Called by the shard thread with every row it scores, in scoring order:
/// how tests observe which model version scored which reading. It runs on
/// the per-reading path, so it must be cheap and must not block.
#[derive(Clone)]
pub struct ScoreTap(pub Arc<dyn Fn(&ScoredRow<'_>) + Send + Sync>);

impl std::fmt::Debug for ScoreTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScoreTap")
    }
}

/// A change of the models the shards score with, applied by every shard
/// between two records.
#[derive(Debug, Clone, Default)]
pub struct ModelUpdate {
    /// A new champion (the model whose evaluations drive episodes); `None` keeps the current one.
    pub champion: Option<ServedModel>,
    /// A new shadow model (`Some(None)` stops shadow scoring); `None` keeps the current one.
    pub shadow: Option<Option<ServedModel>>,
}

/// Everything the shards need to know, fixed at start.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// Number of shards (threads).
    pub shards: usize,
    /// Sensors in scoring order.
    pub layout: SensorLayout,
    /// Anomaly detector parameters.
    pub anomaly: DetectorValidParams,
    /// Anomaly score that counts as an alarm.
    pub anomaly_threshold: f64,
    /// Open episodes from the anomaly detector.
    pub anomaly_episodes: bool,
    /// Failure probability assumed for an anomaly episode's priority (an
    /// anomaly says something is unusual, not how likely a failure is).
    pub anomaly_probability: f64,
    /// Failure model evaluated at least this often per asset (asset time).
    pub failure_every_ms: i64,
    /// An asset's newest row waits this long (wall time) for readings of the same
    /// instant in later batches before it is scored; zero scores at once.
    pub scan_hold: Duration,
    /// Checkpoint cadence (wall time).
    pub checkpoint_every: Duration,
    /// Episode state machine.
    pub episodes: EpisodeConfig,
    /// Priority inputs and bands.
    pub priority: RawPriority,
    /// Rollout per product.
    pub rollout: RawRollout,
    /// PM campaign drafting.
    pub campaigns: RawCampaigns,
    /// Sees every scored row (tests); `None` in service.
    pub tap: Option<ScoreTap>,
}

/// State shared by the shards (read-mostly).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: ProcessorSettings,
    /// The models handed to the shards last (each shard applies a change
    /// between two records, so for a moment a shard may still score with the
    /// previous one).
    models: RwLock<(Option<ServedModel>, Option<ServedModel>)>,
    directory: RwLock<Arc<Directory>>,
    pub(crate) metrics: Arc<ProcessorMetrics>,
}

impl Shared {
    pub(crate) fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn models(&self) -> (Option<ServedModel>, Option<ServedModel>) {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Progress of one shard, read by the reader and the metrics.
#[derive(Debug, Default)]
pub(crate) struct ShardProgress {
    /// Every record below this offset is processed.
    pub(crate) processed: AtomicU64,
    /// Every record below this offset is checkpointed.
    pub(crate) checkpointed: AtomicU64,
    pub(crate) episodes_open: AtomicU64,
    pub(crate) episodes_suppressed: AtomicU64,
    pub(crate) assets: AtomicU64,
    /// Rows scored but not learned since start (as of the last checkpoint):
    /// earlier than the asset's last row, or at the same instant.
    pub(crate) rows_out_of_order: AtomicU64,
    /// Rows held for the rest of their scan (`scan_hold`).
    pub(crate) rows_held: AtomicU64,
    pub(crate) rows_duplicate: AtomicU64,
    /// The champion version this shard scores with (set at start and at a swap,
    /// read by `/metrics`; never touched per reading).
    pub(crate) model: Mutex<Option<Arc<str>>>,
}

/// A message to a shard.
pub(crate) enum ShardMsg {
    Record(Arc<LogRecord>),
    Feedback(FeedbackEvent),
    Checkpoint(std::sync::mpsc::Sender<()>),
    DirectoryChanged,
    /// Stop now without a final checkpoint (what a crash leaves behind; tests).
    Abort,
    /// Score with these models from the next record on.
    Models(ModelUpdate),
}

/// The shard an asset belongs to (FNV-1a, stable across runs and builds).
pub fn shard_of(asset: &str, n_shards: usize) -> usize {
    let mut h = Fnv1a::default();
    h.write(asset.as_bytes());
    (h.finish() % n_shards.max(1) as u64) as usize
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A running processor.
pub struct Processor {
    shared: Arc<Shared>,
    senders: RwLock<Vec<SyncSender<ShardMsg>>>,
    n_shards: usize,
    progress: Vec<Arc<ShardProgress>>,
    threads: Mutex<Threads>,
    stop: Arc<AtomicBool>,
    end_offset: Arc<AtomicU64>,
}

#[derive(Default)]
struct Threads {
    shards: Vec<JoinHandle<Result<(), ProcessError>>>,
    reader: Option<JoinHandle<Result<(), ProcessError>>>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("shards", &self.n_shards)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the processor's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessorStatus {
    /// Lowest offset below which every shard has processed every record.
    pub processed: u64,
    /// Lowest checkpointed offset.
    pub checkpointed: u64,
    /// The log's end offset when last read.
    pub end_offset: u64,
    /// Open episodes (suppressed included).
    pub episodes_open: u64,
    /// Suppressed episodes.
    pub episodes_suppressed: u64,
    /// Assets with state in memory.
    pub assets: u64,
    /// Rows earlier than their asset's last row (scored, not learned), since start.
    pub rows_out_of_order: u64,
    /// Rows at the same instant as their asset's last row (scored, not learned), since start.
    pub rows_duplicate: u64,
    /// Rows waiting for the rest of their scan before they are scored.
    pub rows_held: u64,
}

impl ProcessorStatus {
    /// Records not yet processed.
    pub fn lag(&self) -> u64 {
        self.end_offset.saturating_sub(self.processed)
    }
}

impl Processor {
    /// Starts the shards and the reader. `open_store` opens one store
    /// connection per shard. The reader resumes at the lowest shard checkpoint.
    ///
    /// # Errors
    /// Store or model errors at start.
    pub fn start<S: BatchSource + 'static>(
        settings: ProcessorSettings,
        model: Option<ServedModel>,
        shadow: Option<ServedModel>,
        directory: Directory,
        open_store: impl Fn() -> Result<Store, StoreError>,
        mut source: S,
    ) -> Result<Self, ProcessError> {
        let metrics = Arc::new(ProcessorMetrics::default());
        let shared = Arc::new(Shared {
            settings,
            models: RwLock::new((model, shadow)),
            directory: RwLock::new(Arc::new(directory)),
            metrics,
        });
        let n = shared.settings.shards;
        // Resume where the least advanced shard (of any earlier shard count)
        // stopped; every shard of this run gets a checkpoint row there, so an
        // asset that moved to another shard never has records skipped.
        let resume = {
            let mut store = open_store()?;
            let tx = store.write()?;
            crate::store::tx::prepare_shards(&tx, n)?;
            tx.commit().map_err(StoreError::from)?;
            store.resume_offset()?
        };
        let log_end = source.end_offset();
        if resume > log_end {
            // Reading from `resume` would wait forever for records that will
            // carry other data: refuse instead of scoring nothing.
            return Err(ProcessError::StateAheadOfLog {
                checkpoint: resume,
                log_end,
            });
        }
        let mut senders = Vec::new();
        let mut progress = Vec::new();
        let mut shards = Vec::new();
        for id in 0..n {
            let p = Arc::new(ShardProgress::default());
            p.processed.store(resume, Ordering::Relaxed);
            p.checkpointed.store(resume, Ordering::Relaxed);
            let shard = shard::Shard::new(
                id,
                Arc::clone(&shared),
                open_store()?,
                Arc::clone(&p),
                resume,
            )?;
            // A few records in flight per shard: enough to overlap reading and scoring,
            // few enough that decoded batches do not pile up in memory.
            let (tx, rx) = sync_channel(16);
            let handle = std::thread::Builder::new()
                .name(format!("fp-shard-{id}"))
                .spawn(move || {
                    let res = shard.run(rx);
                    if let Err(e) = &res {
                        tracing::error!(shard = id, error = %e, "Scoring shard stopped.");
                    }
                    res
                })
                .map_err(|e| ProcessError::Model(format!("spawning shard thread: {e}")))?;
            senders.push(tx);
            progress.push(p);
            shards.push(handle);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let end_offset = Arc::new(AtomicU64::new(source.end_offset()));
        let reader = {
            let senders = senders.clone();
            let progress = progress.clone();
            let stop = Arc::clone(&stop);
            let end = Arc::clone(&end_offset);
            let metrics = Arc::clone(&shared.metrics);
            std::thread::Builder::new()
                .name("fp-log-reader".into())
                .spawn(move || {
                    let res = read_loop(
                        &mut source,
                        resume,
                        &senders,
                        &progress,
                        &stop,
                        &end,
                        &metrics,
                    );
                    if let Err(e) = &res {
                        tracing::error!(error = %e, "Ingest log reader stopped.");
                    }
                    res
                })
                .map_err(|e| ProcessError::Model(format!("spawning reader thread: {e}")))?
        };
        Ok(Self {
            shared,
            senders: RwLock::new(senders),
            n_shards: n,
            progress,
            threads: Mutex::new(Threads {
                shards,
                reader: Some(reader),
            }),
            stop,
            end_offset,
        })
    }

    /// The processor's metrics.
    pub fn metrics(&self) -> &Arc<ProcessorMetrics> {
        &self.shared.metrics
    }

    /// Progress now.
    pub fn status(&self) -> ProcessorStatus {
        let min = |f: fn(&ShardProgress) -> &AtomicU64| {
            self.progress
                .iter()
                .map(|p| f(p).load(Ordering::Acquire))
                .min()
                .unwrap_or(0)
        };
        let sum = |f: fn(&ShardProgress) -> &AtomicU64| {
            self.progress
                .iter()
                .map(|p| f(p).load(Ordering::Relaxed))
                .sum()
        };
        ProcessorStatus {
            processed: min(|p| &p.processed),
            checkpointed: min(|p| &p.checkpointed),
            end_offset: self.end_offset.load(Ordering::Relaxed),
            episodes_open: sum(|p| &p.episodes_open),
            episodes_suppressed: sum(|p| &p.episodes_suppressed),
            assets: sum(|p| &p.assets),
            rows_out_of_order: sum(|p| &p.rows_out_of_order),
            rows_held: sum(|p| &p.rows_held),
            rows_duplicate: sum(|p| &p.rows_duplicate),
        }
    }

    /// True while every thread runs.
    pub fn is_healthy(&self) -> bool {
        let t = self.lock_threads();
        t.reader.as_ref().is_some_and(|r| !r.is_finished())
            && t.shards.iter().all(|s| !s.is_finished())
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Threads> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn senders(&self) -> std::sync::RwLockReadGuard<'_, Vec<SyncSender<ShardMsg>>> {
        self.senders.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Routes a feedback event to the shard owning its asset.
    pub fn feedback(&self, event: FeedbackEvent) {
        let shard = shard_of(event.asset(), self.n_shards);
        if let Some(s) = self.senders().get(shard) {
            let _ = s.send(ShardMsg::Feedback(event));
        }
    }

    /// Replaces the asset directory (after a refresh from Salesforce).
    pub fn set_directory(&self, directory: Directory) {
        *self
            .shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
        for s in self.senders().iter() {
            let _ = s.send(ShardMsg::DirectoryChanged);
        }
    }

    /// Hot-swaps the failure model: every shard switches between two records,
    /// carrying each asset's streaming state over when the new model reads the
    /// same features (otherwise those assets warm up again). No reading is
    /// dropped or scored twice and the shards never stop: each reading is
    /// scored by the old model before its shard's swap point or by the new one
    /// after it. The new model must already be validated
    /// ([`FailureModel::validate`]); a shard that still cannot build a scorer
    /// for it keeps its model and counts `model_swaps_refused_total`.
    ///
    /// Blocks while a shard's queue is full (a few records).
    pub fn swap_model(&self, model: ServedModel) {
        self.update_models(ModelUpdate {
            champion: Some(model),
            shadow: None,
        });
    }

    /// Starts (`Some`) or stops (`None`) scoring a shadow model beside the
    /// champion: scored and metered, never acted on.
    pub fn set_shadow(&self, shadow: Option<ServedModel>) {
        self.update_models(ModelUpdate {
            champion: None,
            shadow: Some(shadow),
        });
    }

    /// Applies a change of champion and shadow in one step: every shard applies
    /// both between the same two records.
    pub fn update_models(&self, update: ModelUpdate) {
        {
            let mut models = self
                .shared
                .models
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(c) = &update.champion {
                models.0 = Some(c.clone());
            }
            if let Some(s) = &update.shadow {
                models.1 = s.clone();
            }
        }
        for s in self.senders().iter() {
            let _ = s.send(ShardMsg::Models(update.clone()));
        }
    }

    /// The champion and shadow models last handed to the shards.
    pub fn models(&self) -> (Option<ServedModel>, Option<ServedModel>) {
        self.shared.models()
    }

    /// The champion version each shard scores with now, by shard.
    pub fn shard_models(&self) -> Vec<Option<Arc<str>>> {
        self.progress
            .iter()
            .map(|p| p.model.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// Renders `fieldpulse_cloud_shard_model_info{shard,version}` and
    /// `fieldpulse_cloud_shadow_model_info{version}` (gauges of 1).
    pub fn render_models(&self, out: &mut String) {
        use std::fmt::Write;
        let clean = |v: &str| v.replace(['"', '\\', '\n'], "_");
        let name = "fieldpulse_cloud_shard_model_info";
        let _ = writeln!(out, "# HELP {name} The failure model version each scoring shard scores with.\n# TYPE {name} gauge");
        for (shard, version) in self.shard_models().iter().enumerate() {
            if let Some(v) = version {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{shard}\",version=\"{}\"}} 1",
                    clean(v)
                );
            }
        }
        let name = "fieldpulse_cloud_shadow_model_info";
        let _ = writeln!(out, "# HELP {name} The model scored in shadow (metered, never acted on).\n# TYPE {name} gauge");
        if let (_, Some(shadow)) = self.models() {
            let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", clean(&shadow.version));
        }
    }

    /// The current asset directory.
    pub fn directory(&self) -> Arc<Directory> {
        self.shared.directory()
    }

    /// Asks every shard to checkpoint now and waits for them.
    pub fn checkpoint(&self) {
        let waits: Vec<_> = self
            .senders()
            .iter()
            .filter_map(|s| {
                let (tx, rx) = std::sync::mpsc::channel();
                s.send(ShardMsg::Checkpoint(tx)).ok().map(|_| rx)
            })
            .collect();
        for w in waits {
            let _ = w.recv();
        }
    }

    /// Waits until every record below `offset` is processed (or `timeout`).
    pub fn wait_processed(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.status().processed >= offset {
                return true;
            }
            if !self.is_healthy() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.status().processed >= offset
    }

    /// Like [`Processor::wait_processed`], and also until no row waits for the rest
    /// of its scan (at most `scan_hold` after the last record): every reading below
    /// `offset` has been scored and its changes written to the outbox.
    pub fn wait_idle(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        if !self.wait_processed(offset, timeout) {
            return false;
        }
        while std::time::Instant::now() < deadline {
            if self.status().rows_held == 0 {
                return true;
            }
            if !self.is_healthy() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.status().rows_held == 0
    }

    /// Stops at once without a final checkpoint, as a crash would (state on
    /// disk is whatever the last checkpoint and outbox writes left). For
    /// recovery tests.
    pub fn abort(&self) {
        self.stop.store(true, Ordering::Release);
        for s in self.senders().iter() {
            let _ = s.send(ShardMsg::Abort);
        }
        let mut t = self.lock_threads();
        if let Some(r) = t.reader.take() {
            let _ = r.join();
        }
        self.senders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for h in t.shards.drain(..) {
            let _ = h.join();
        }
    }

    /// Stops reading, lets the shards finish what they have, checkpoints and joins.
    ///
    /// # Errors
    /// The first error a thread stopped with.
    pub fn shutdown(&self) -> Result<(), ProcessError> {
        self.stop.store(true, Ordering::Release);
        let mut first = Ok(());
        let mut t = self.lock_threads();
        if let Some(r) = t.reader.take() {
            if let Ok(Err(e)) = r.join() {
                first = Err(e);
            }
        }
        self.senders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for h in t.shards.drain(..) {
            match h.join() {
                Ok(Err(e)) if first.is_ok() => first = Err(e),
                _ => {}
            }
        }
        first
    }
}

fn read_loop<S: BatchSource>(
    source: &mut S,
    resume: u64,
    senders: &[SyncSender<ShardMsg>],
    progress: &[Arc<ShardProgress>],
    stop: &AtomicBool,
    end: &AtomicU64,
    metrics: &ProcessorMetrics,
) -> Result<(), ProcessError> {
    let mut next = resume;
    let mut committed = resume;
    while !stop.load(Ordering::Acquire) {
        let records = source.read(next, 32, Duration::from_millis(100))?;
        for rec in records {
            next = rec.offset + 1;
            metrics.records_read.fetch_add(1, Ordering::Relaxed);
            let rec = Arc::new(rec);
            for s in senders {
                if s.send(ShardMsg::Record(Arc::clone(&rec))).is_err() {
                    return Ok(());
                }
            }
        }
        end.store(source.end_offset(), Ordering::Relaxed);
        let safe = progress
            .iter()
            .map(|p| p.checkpointed.load(Ordering::Acquire))
            .min()
            .unwrap_or(committed);
        if safe > committed {
            source.commit(safe)?;
            committed = safe;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_assignment_is_stable_and_spread() {
        assert_eq!(shard_of("P-0001", 4), shard_of("P-0001", 4));
        let mut counts = [0usize; 4];
        for i in 0..1000 {
            counts[shard_of(&format!("P-{i:04}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
        assert_eq!(shard_of("x", 1), 0);
    }
}
