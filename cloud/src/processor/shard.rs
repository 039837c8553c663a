//! One scoring shard: the assets that hash to it, their scorers and episodes.
//!
//! A shard thread owns everything it touches per reading (no lock on that
//! path): the anomaly [`FleetScorer`], the [`FailureScorer`], and each asset's
//! episodes. It reads every log record, keeps the series of its own assets,
//! and after each record writes the actions of any episode change to the
//! outbox, in one transaction with the `emitted` keys that make a replay emit
//! nothing twice. Every `checkpoint_every` it saves the state of the assets
//! it changed with the log offset that state reflects.
//!
//! Replay after a crash restores an asset's state lazily, when the asset is
//! first seen again, and skips records below that asset's saved offset, so
//! the result equals an uninterrupted run.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use fieldpulse_models::anomaly::FleetScorer;
use fieldpulse_models::failure::model::ANY_MODE;
use fieldpulse_models::failure::{FailureModel, FailureScorer};
use serde::{Deserialize, Serialize};

use super::metrics::Agreement;
use super::rows::{split_rows, AssetRows};
use super::{
    shard_of, ModelUpdate, ProcessError, ScoredRow, ServedModel, ShardMsg, ShardProgress, Shared,
};
use crate::actions::{
    key_part, ChangeKind, EpisodeChange, RiskExplanation, SensorEvidence, SourceRange,
    EXPLANATION_TOP,
};
use crate::config::{RawPriority, Rollout};
use crate::directory::{AssetInfo, Directory};
use crate::episodes::{
    prioritize, CloseReason, Episode, Evaluation, PriorityDecision, PriorityInputs, Transition,
};
use crate::log::LogRecord;
use crate::outbox;
use crate::store::{self, AssetRecord, EpisodeRow, Store};

/// Mode name of anomaly episodes.
pub const ANOMALY_MODE: &str = "anomaly";

/// A feedback event routed to the shard that owns the asset.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackEvent {
    /// A Work Order opened on the asset (for `mode`, or any problem when `None`).
    WorkOrderOpened {
        /// Asset name.
        asset: String,
        /// Failure mode when the Work Order names one.
        mode: Option<String>,
        /// Work Order Id.
        work_order: String,
        /// When (ms).
        at_ms: i64,
    },
    /// A Work Order completed.
    WorkOrderCompleted {
        /// Asset name.
        asset: String,
        /// Failure mode when the Work Order names one.
        mode: Option<String>,
        /// Work Order Id.
        work_order: String,
        /// Failure code.
        failure_code: Option<String>,
        /// When (ms).
        at_ms: i64,
    },
    /// A Work Order was cancelled.
    WorkOrderCancelled {
        /// Asset name.
        asset: String,
        /// Work Order Id.
        work_order: String,
        /// When (ms).
        at_ms: i64,
    },
    /// A Case fieldpulse created was closed by a person.
    CaseClosed {
        /// Asset name.
        asset: String,
        /// Mode from the Case key.
        mode: String,
        /// Case generation from the Case key.
        generation: u64,
        /// True when closed as "not a problem".
        not_a_problem: bool,
        /// When (ms).
        at_ms: i64,
    },
}

impl FeedbackEvent {
    /// The asset the event is about.
    pub fn asset(&self) -> &str {
        match self {
            Self::WorkOrderOpened { asset, .. }
            | Self::WorkOrderCompleted { asset, .. }
            | Self::WorkOrderCancelled { asset, .. }
            | Self::CaseClosed { asset, .. } => asset,
        }
    }
}

/// Per (asset, mode): the episode plus what keys the records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct EpisodeSlot {
    episode: Episode,
    /// Case generation: a new Case only after the previous one was closed in Salesforce.
    case_gen: u64,
    case_open: bool,
    /// Asset time the current Case's first episode opened: a Work Order that
    /// completed before it is not this Case's repair.
    #[serde(default)]
    case_opened_ms: Option<i64>,
    /// Changes emitted so far (numbers the audit records).
    changes: u64,
    /// Log offset and seq of the record that opened the current episode.
    first_offset: u64,
    first_seq: u64,
}

/// Per asset: everything checkpointed besides the scorer blobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct AssetEpisodes {
    last_failure_eval_ms: Option<i64>,
    modes: BTreeMap<String, EpisodeSlot>,
    /// The asset's newest row, not scored yet: readings of the same instant may
    /// still arrive in a later batch (a scan split across batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<HeldRow>,
}

/// A row waiting for the rest of its scan (see `scoring.scan_hold`), with the
/// record it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HeldRow {
    ts_ms: i64,
    /// Per sensor in scoring order; `None` = no reading yet.
    values: Vec<Option<f64>>,
    offset: u64,
    appended_ms: i64,
    gateway: String,
    epoch: u64,
    seq: u64,
    historical: bool,
}

impl HeldRow {
    fn new(ts_ms: i64, values: &[f64], ctx: RecordCtx<'_>) -> Self {
        Self {
            ts_ms,
            values: values.iter().map(|v| v.is_finite().then_some(*v)).collect(),
            offset: ctx.offset,
            appended_ms: ctx.appended_ms,
            gateway: ctx.gateway.to_string(),
            epoch: ctx.epoch,
            seq: ctx.seq,
            historical: ctx.historical,
        }
    }

    /// Adds readings of the same instant (a later reading of a sensor wins).
    fn merge(&mut self, values: &[f64]) {
        for (dst, v) in self.values.iter_mut().zip(values) {
            if v.is_finite() {
                *dst = Some(*v);
            }
        }
    }

    fn row(&self) -> Vec<f64> {
        self.values.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
    }

    fn origin(&self) -> Origin {
        Origin {
            historical: self.historical,
            appended_ms: self.appended_ms,
        }
    }

    fn ctx(&self) -> RecordCtx<'_> {
        RecordCtx {
            offset: self.offset,
            appended_ms: self.appended_ms,
            gateway: &self.gateway,
            epoch: self.epoch,
            seq: self.seq,
            historical: self.historical,
        }
    }
}

struct AssetSlot {
    idx: usize,
    next_offset: u64,
    dirty: bool,
    state: AssetEpisodes,
}

/// A classifier an episode follows: per mode, the shortest horizon.
#[derive(Debug, Clone)]
struct Followed {
    classifier: usize,
    mode: String,
    horizon_days: f64,
    threshold: f64,
}

struct FailurePart {
    scorer: FailureScorer,
    model: Arc<FailureModel>,
    /// [`ServedModel::version`].
    version: Arc<str>,
    /// For each model sensor, its position in the scoring layout.
    perm: Vec<Option<usize>>,
    /// Position of `<sensor>.robust_z` in the model row, per model sensor.
    robust_z: Vec<Option<usize>>,
    followed: Vec<Followed>,
    buf: Vec<f64>,
}

impl FailurePart {
    fn new(served: ServedModel, shared: &Shared, dir: &Directory) -> Result<Self, ProcessError> {
        let ServedModel { version, model } = served;
        let scorer = FailureScorer::new(Arc::clone(&model), dir.history.clone())
            .map_err(|e| ProcessError::Model(e.to_string()))?;
        let schema = &model.schema;
        let perm = schema
            .sensors
            .iter()
            .map(|s| shared.settings.layout.position(s))
            .collect();
        let robust_z = schema
            .sensors
            .iter()
            .map(|s| {
                let name = format!("{s}.robust_z");
                schema.stream_columns.iter().position(|c| *c == name)
            })
            .collect();
        let has_modes = model.classifiers.iter().any(|c| c.mode != ANY_MODE);
        let mut followed: Vec<Followed> = Vec::new();
        for (i, c) in model.classifiers.iter().enumerate() {
            if has_modes && c.mode == ANY_MODE {
                continue;
            }
            match followed.iter_mut().find(|f| f.mode == c.mode) {
                Some(f) if f.horizon_days <= c.horizon_days => {}
                Some(f) => {
                    *f = Followed {
                        classifier: i,
                        mode: c.mode.clone(),
                        horizon_days: c.horizon_days,
                        threshold: c.threshold,
                    }
                }
                None => followed.push(Followed {
                    classifier: i,
                    mode: c.mode.clone(),
                    horizon_days: c.horizon_days,
                    threshold: c.threshold,
                }),
            }
        }
        let n = schema.sensors.len();
        Ok(Self {
            scorer,
            model,
            version,
            perm,
            robust_z,
            followed,
            buf: vec![f64::NAN; n],
        })
    }
}

/// A model scored beside the champion, never acted on.
struct ShadowPart {
    part: FailurePart,
    /// Per failure mode either model follows: the index of its classifier in
    /// the champion's `followed`, and in the shadow's.
    pairs: Vec<(Option<usize>, Option<usize>)>,
}

impl ShadowPart {
    fn new(part: FailurePart, champion: Option<&FailurePart>) -> Self {
        let mut s = Self {
            part,
            pairs: Vec::new(),
        };
        s.pair_with(champion);
        s
    }

    /// Matches the two models' followed classifiers by failure mode.
    fn pair_with(&mut self, champion: Option<&FailurePart>) {
        let followed = |f: Option<&FailurePart>| -> Vec<String> {
            f.map(|f| f.followed.iter().map(|x| x.mode.clone()).collect())
                .unwrap_or_default()
        };
        let (c, s) = (followed(champion), followed(Some(&self.part)));
        let mut modes: Vec<&String> = c.iter().chain(&s).collect();
        modes.sort();
        modes.dedup();
        self.pairs = modes
            .into_iter()
            .map(|m| (c.iter().position(|x| x == m), s.iter().position(|x| x == m)))
            .collect();
    }
}

/// Where a change came from, for the audit record.
#[derive(Debug, Clone, Copy)]
struct RecordCtx<'a> {
    offset: u64,
    appended_ms: i64,
    gateway: &'a str,
    epoch: u64,
    seq: u64,
    historical: bool,
}

/// One shard.
pub(crate) struct Shard {
    id: usize,
    shared: Arc<Shared>,
    store: Store,
    anomaly: FleetScorer,
    failure: Option<FailurePart>,
    /// The candidate scored in shadow: its evaluations are metered, never acted on.
    shadow: Option<ShadowPart>,
    assets: HashMap<String, AssetSlot>,
    next_offset: u64,
    progress: Arc<ShardProgress>,
    pending: Vec<EpisodeChange>,
    /// Held rows in the order they were held: (when, asset, row time).
    held_queue: VecDeque<(Instant, String, i64)>,
    /// Assets with a held row.
    n_held: u64,
    last_checkpoint: Instant,
    directory: Arc<Directory>,
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        store: Store,
        progress: Arc<ShardProgress>,
        start_offset: u64,
    ) -> Result<Self, ProcessError> {
        let settings = &shared.settings;
        let anomaly = FleetScorer::new(
            settings.anomaly.clone(),
            settings.layout.names().to_vec(),
            0,
        )
        .map_err(|e| ProcessError::Model(e.to_string()))?;
        let directory = shared.directory();
        let (champion, shadow) = shared.models();
        let failure = match champion {
            Some(m) => Some(FailurePart::new(m, &shared, &directory)?),
            None => None,
        };
        let shadow = match shadow {
            Some(m) => Some(ShadowPart::new(
                FailurePart::new(m, &shared, &directory)?,
                failure.as_ref(),
            )),
            None => None,
        };
        *progress.model.lock().unwrap_or_else(|p| p.into_inner()) =
            failure.as_ref().map(|f| Arc::clone(&f.version));
        Ok(Self {
            id,
            store,
            anomaly,
            failure,
            shadow,
            assets: HashMap::new(),
            next_offset: start_offset,
            progress,
            pending: Vec::new(),
            held_queue: VecDeque::new(),
            n_held: 0,
            last_checkpoint: Instant::now(),
            directory,
            shared,
        })
    }

    /// Runs until the channel closes; checkpoints on the way out.
    pub(crate) fn run(mut self, rx: Receiver<ShardMsg>) -> Result<(), ProcessError> {
        let every = self.shared.settings.checkpoint_every;
        let hold = self.shared.settings.scan_hold;
        loop {
            let mut wait = every.saturating_sub(self.last_checkpoint.elapsed());
            if let Some((since, _, _)) = self.held_queue.front() {
                wait = wait.min(hold.saturating_sub(since.elapsed()));
            }
            match rx.recv_timeout(wait) {
                Ok(ShardMsg::Record(rec)) => self.process(&rec)?,
                Ok(ShardMsg::Feedback(ev)) => {
                    self.feedback(&ev)?;
                    self.checkpoint()?;
                }
                Ok(ShardMsg::Checkpoint(done)) => {
                    self.checkpoint()?;
                    let _ = done.send(());
                }
                Ok(ShardMsg::Abort) => return Ok(()),
                Ok(ShardMsg::Models(update)) => self.update_models(update)?,
                Ok(ShardMsg::DirectoryChanged) => {
                    self.directory = self.shared.directory();
                    if let Some(f) = &mut self.failure {
                        f.scorer.set_history(self.directory.history.clone());
                    }
                    if let Some(s) = &mut self.shadow {
                        s.part.scorer.set_history(self.directory.history.clone());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Draining: nothing more will arrive to complete a held scan.
                    self.release_held(true)?;
                    self.checkpoint()?;
                    return Ok(());
                }
            }
            self.release_held(false)?;
            self.progress
                .rows_held
                .store(self.n_held, Ordering::Relaxed);
            if self.last_checkpoint.elapsed() >= every {
                self.checkpoint()?;
            }
        }
    }

    /// Applies a change of champion and shadow between two records. A model
    /// this shard cannot build a scorer for is refused: the shard keeps what
    /// it has and counts the refusal.
    ///
    /// A change of champion first checkpoints, so the swap point is durable:
    /// a crash later replays only records after it, which the version served
    /// at restart (the new one) scored before the crash too. Without it the
    /// replay from an earlier checkpoint would re-score records the old
    /// version had scored with the new one.
    fn update_models(&mut self, update: ModelUpdate) -> Result<(), ProcessError> {
        if let Some(served) = update.champion {
            self.checkpoint()?;
            self.swap_champion(served);
        }
        if let Some(shadow) = update.shadow {
            self.set_shadow(shadow);
        }
        Ok(())
    }

    /// This shard's scorer for a handed-over model (`role`: champion or
    /// shadow), or `None` when it cannot build one: the refusal is counted
    /// and logged, and the shard keeps what it has.
    fn build_part(&self, served: ServedModel, role: &str) -> Option<FailurePart> {
        let version = Arc::clone(&served.version);
        match FailurePart::new(served, &self.shared, &self.directory) {
            Ok(part) => Some(part),
            Err(e) => {
                self.shared
                    .metrics
                    .swaps_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(shard = self.id, %version, role, error = %e, "Refused a failure model; scoring continues with the current ones.");
                None
            }
        }
    }

    /// Replaces the champion, carrying per-asset streaming state over where
    /// the feature spec allows (from the old champion, else from the shadow
    /// when the new champion is the model that was in shadow).
    fn swap_champion(&mut self, served: ServedModel) {
        let version = Arc::clone(&served.version);
        let Some(mut next) = self.build_part(served, "champion") else {
            return;
        };
        let (mut kept, mut fresh) = (0u64, 0u64);
        let shadow = self
            .shadow
            .as_ref()
            .filter(|s| s.part.version == next.version)
            .map(|s| &s.part.scorer);
        if let Some(old) = &self.failure {
            for asset in old.scorer.assets() {
                let mut carried = old
                    .scorer
                    .asset_state(asset)
                    .is_some_and(|bytes| next.scorer.restore_asset_state(asset, &bytes).is_ok());
                if !carried {
                    carried = shadow
                        .and_then(|s| s.asset_state(asset))
                        .is_some_and(|bytes| {
                            next.scorer.restore_asset_state(asset, &bytes).is_ok()
                        });
                }
                if carried {
                    kept += 1;
                } else {
                    fresh += 1;
                }
            }
        }
        for slot in self.assets.values_mut() {
            slot.dirty = true;
        }
        tracing::info!(
            shard = self.id,
            %version,
            model_version = %next.model.model_version,
            kept,
            fresh,
            "Failure model swapped."
        );
        next.buf.fill(f64::NAN);
        *self
            .progress
            .model
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(version);
        self.failure = Some(next);
        if let Some(s) = &mut self.shadow {
            s.pair_with(self.failure.as_ref());
        }
    }

    /// Starts or stops shadow scoring. A new shadow model starts from the
    /// champion's per-asset streaming state where the feature spec allows, so
    /// it is comparable at once; otherwise those assets warm up first (and
    /// are not compared meanwhile).
    fn set_shadow(&mut self, served: Option<ServedModel>) {
        let Some(served) = served else {
            if let Some(old) = self.shadow.take() {
                tracing::info!(shard = self.id, version = %old.part.version, "Shadow scoring stopped.");
            }
            return;
        };
        let version = Arc::clone(&served.version);
        let Some(mut part) = self.build_part(served, "shadow") else {
            return;
        };
        let mut seeded = 0u64;
        if let Some(champion) = &self.failure {
            for asset in champion.scorer.assets() {
                if champion
                    .scorer
                    .asset_state(asset)
                    .is_some_and(|bytes| part.scorer.restore_asset_state(asset, &bytes).is_ok())
                {
                    seeded += 1;
                }
            }
        }
        tracing::info!(shard = self.id, %version, seeded, "Shadow scoring started.");
        self.shadow = Some(ShadowPart::new(part, self.failure.as_ref()));
    }

    fn process(&mut self, rec: &LogRecord) -> Result<(), ProcessError> {
        if rec.offset < self.next_offset {
            return Ok(());
        }
        let n_shards = self.shared.settings.shards;
        let id = self.id;
        let (rows, counts) = split_rows(&rec.batch, &self.shared.settings.layout, |a| {
            shard_of(a, n_shards) == id
        });
        let m = &self.shared.metrics;
        m.unknown_sensor_readings
            .fetch_add(counts.unknown_sensor_readings, Ordering::Relaxed);
        let ctx = RecordCtx {
            offset: rec.offset,
            appended_ms: rec.appended_ms,
            gateway: &rec.batch.gateway_id,
            epoch: rec.batch.spool_epoch,
            seq: rec.batch.seq,
            historical: rec.batch.historical,
        };
        for asset_rows in &rows {
            self.process_asset(ctx, asset_rows)?;
        }
        self.next_offset = rec.offset + 1;
        self.flush(Some(rec.appended_ms))?;
        self.progress
            .processed
            .store(self.next_offset, Ordering::Release);
        Ok(())
    }

    /// The slot of an asset, restoring saved state on first sight.
    fn slot_index(&mut self, asset: &str) -> Result<usize, ProcessError> {
        if let Some(slot) = self.assets.get(asset) {
            return Ok(slot.idx);
        }
        let idx = self.anomaly.add_asset();
        let mut slot = AssetSlot {
            idx,
            next_offset: 0,
            dirty: false,
            state: AssetEpisodes::default(),
        };
        if let Some(rec) = self.store.asset(asset)? {
            slot.next_offset = rec.next_offset;
            if let Some(bytes) = &rec.anomaly {
                if let Err(e) = self.anomaly.restore_asset_state(idx, bytes) {
                    tracing::warn!(asset, error = %e, "Saved anomaly state does not fit this configuration; starting fresh.");
                }
            }
            if let (Some(bytes), Some(f)) = (&rec.failure, &mut self.failure) {
                if let Err(e) = f.scorer.restore_asset_state(asset, bytes) {
                    tracing::warn!(asset, error = %e, "Saved failure-model state does not fit this model; starting fresh.");
                }
            }
            if let (Some(bytes), Some(s)) = (&rec.failure, &mut self.shadow) {
                // The champion's saved state, when the shadow reads the same
                // features; otherwise the shadow warms up on its own.
                let _ = s.part.scorer.restore_asset_state(asset, bytes);
            }
            match serde_json::from_str::<AssetEpisodes>(&rec.episodes) {
                Ok(state) => {
                    if let Some(held) = &state.held {
                        // Saved while waiting for the rest of its scan: it waits again.
                        self.held_queue
                            .push_back((Instant::now(), asset.to_string(), held.ts_ms));
                        self.n_held += 1;
                    }
                    slot.state = state;
                }
                Err(e) => {
                    return Err(ProcessError::Store(store::StoreError::Corrupt(format!(
                        "episodes of asset {asset}: {e}"
                    ))))
                }
            }
            self.shared
                .metrics
                .assets_restored
                .fetch_add(1, Ordering::Relaxed);
        }
        self.assets.insert(asset.to_string(), slot);
        Ok(idx)
    }

    fn process_asset(&mut self, ctx: RecordCtx<'_>, rows: &AssetRows) -> Result<(), ProcessError> {
        let idx = self.slot_index(&rows.asset)?;
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let n = settings.layout.len();
        let hold = !settings.scan_hold.is_zero();
        let directory = Arc::clone(&self.directory);
        let slot = self
            .assets
            .get_mut(&rows.asset)
            .ok_or_else(|| ProcessError::Model("asset slot vanished".into()))?;
        if ctx.offset < slot.next_offset {
            self.shared
                .metrics
                .replayed_skipped
                .fetch_add(rows.n_readings, Ordering::Relaxed);
            return Ok(());
        }
        let info = directory.asset(&rows.asset);
        let mut parts = ScoreParts::new(
            self.id,
            &mut self.anomaly,
            &mut self.failure,
            &mut self.shadow,
            &shared,
            info,
        );
        let mut changes: Vec<PendingChange> = Vec::new();
        let origin = Origin {
            historical: ctx.historical,
            appended_ms: ctx.appended_ms,
        };
        let last = rows.len().saturating_sub(1);
        for i in 0..rows.len() {
            let ts = rows.ts_ms[i];
            let values = rows.row(i, n);
            if let Some(held) = &mut slot.state.held {
                if ts == held.ts_ms {
                    held.merge(values);
                    continue;
                }
                if ts > held.ts_ms {
                    // A later instant: the held scan is complete.
                    let held = slot.state.held.take().expect("checked above");
                    self.n_held -= 1;
                    parts.score_row(
                        slot,
                        idx,
                        &rows.asset,
                        held.ts_ms,
                        &held.row(),
                        held.origin(),
                        &mut changes,
                    )?;
                }
                // Older than the held row: scored now, before it (it is still newer).
            }
            if hold && i == last && slot.state.held.is_none() {
                slot.state.held = Some(HeldRow::new(ts, values, ctx));
                self.n_held += 1;
                self.held_queue
                    .push_back((Instant::now(), rows.asset.clone(), ts));
            } else {
                parts.score_row(slot, idx, &rows.asset, ts, values, origin, &mut changes)?;
            }
        }
        let base = parts.base.clone();
        drop(parts);
        slot.next_offset = ctx.offset + 1;
        slot.dirty = true;
        self.shared
            .metrics
            .readings_scored
            .fetch_add(rows.n_readings, Ordering::Relaxed);
        self.shared
            .metrics
            .rows_scored
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        // Changes are attributed to the record that triggered them (a released
        // scan's changes to the record that completed it).
        self.emit_changes(&rows.asset, changes, &base, ctx);
        Ok(())
    }

    /// Scores the held rows that waited `scoring.scan_hold` without the rest of
    /// their scan arriving (or all of them, at shutdown).
    fn release_held(&mut self, all: bool) -> Result<(), ProcessError> {
        let hold = self.shared.settings.scan_hold;
        while let Some((since, _, _)) = self.held_queue.front() {
            if !all && since.elapsed() < hold {
                break;
            }
            let (_, asset, ts) = self.held_queue.pop_front().expect("front exists");
            let Some(slot) = self.assets.get_mut(&asset) else {
                continue;
            };
            // Already released by a later row, or replaced by a newer held row.
            if slot.state.held.as_ref().is_none_or(|h| h.ts_ms != ts) {
                continue;
            }
            let held = slot.state.held.take().expect("checked above");
            self.n_held -= 1;
            slot.dirty = true;
            let idx = slot.idx;
            let shared = Arc::clone(&self.shared);
            let directory = Arc::clone(&self.directory);
            let mut parts = ScoreParts::new(
                self.id,
                &mut self.anomaly,
                &mut self.failure,
                &mut self.shadow,
                &shared,
                directory.asset(&asset),
            );
            let mut changes = Vec::new();
            parts.score_row(
                slot,
                idx,
                &asset,
                held.ts_ms,
                &held.row(),
                held.origin(),
                &mut changes,
            )?;
            let base = parts.base.clone();
            drop(parts);
            self.emit_changes(&asset, changes, &base, held.ctx());
        }
        self.flush(None)
    }

    /// Turns the row loop's transitions into changes waiting for the next flush.
    fn emit_changes(
        &mut self,
        asset: &str,
        changes: Vec<PendingChange>,
        base: &PriorityInputs,
        ctx: RecordCtx<'_>,
    ) {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let bands = &settings.priority.bands;
        let product = self.directory.asset(asset).and_then(|i| i.product.clone());
        let rollout = settings.rollout.for_product(product.as_deref());
        for (mode, t, eval, horizon, evidence, explanation) in changes {
            let probability = if mode == ANOMALY_MODE {
                settings.anomaly_probability
            } else {
                eval.risk
            };
            let priority = prioritize(
                PriorityInputs {
                    probability,
                    ..base.clone()
                },
                bands,
            );
            let change = self.change(
                asset,
                &mode,
                &t,
                priority,
                Some(ctx),
                ChangeInputs {
                    threshold: eval.threshold,
                    horizon_days: horizon,
                    evidence,
                    explanation,
                    rollout,
                },
            );
            if let Some(change) = change {
                self.pending.push(change);
            }
        }
    }

    /// Turns a transition into an [`EpisodeChange`] and advances the slot's
    /// Case and change counters.
    fn change(
        &mut self,
        asset: &str,
        mode: &str,
        t: &Transition,
        priority: PriorityDecision,
        ctx: Option<RecordCtx<'_>>,
        inputs: ChangeInputs,
    ) -> Option<EpisodeChange> {
        self.shared.metrics.count_transition(t.kind());
        let info = self.directory.asset(asset).cloned();
        let similar = info
            .as_ref()
            .and_then(|i| i.product.as_deref())
            .map(|p| self.directory.similar(p, mode).to_vec())
            .unwrap_or_default();
        let model = match (&self.failure, mode == ANOMALY_MODE) {
            (Some(f), false) => (
                "fieldpulse-failure".to_string(),
                f.model.model_version.clone(),
            ),
            _ => (
                "fieldpulse-anomaly".to_string(),
                format!("detectors-{}", env!("CARGO_PKG_VERSION")),
            ),
        };
        let slot = self.assets.get_mut(asset)?;
        slot.dirty = true;
        let ep = slot.state.modes.get_mut(mode)?;
        let summary = t.episode().clone();
        let (kind, reason) = match t {
            Transition::Opened { .. } => {
                if !ep.case_open {
                    ep.case_gen += 1;
                    ep.case_open = true;
                    ep.case_opened_ms = Some(summary.opened_at_ms);
                }
                if let Some(c) = ctx {
                    ep.first_offset = c.offset;
                    ep.first_seq = c.seq;
                }
                (ChangeKind::Opened, None)
            }
            Transition::Escalated { from, .. } => (
                ChangeKind::Escalated,
                Some(format!("escalated from {from}")),
            ),
            Transition::Updated { .. } => (ChangeKind::Updated, None),
            Transition::Flapping { .. } => (
                ChangeKind::Updated,
                Some("keeps coming back; kept open as one Case".into()),
            ),
            Transition::Resumed { work_order, .. } => (
                ChangeKind::Updated,
                Some(format!(
                    "Work Order {work_order} was cancelled; alerting again"
                )),
            ),
            Transition::Suppressed { work_order, .. } => (
                ChangeKind::Suppressed,
                Some(format!("Work Order {work_order} is open for it")),
            ),
            Transition::Closed { reason, .. } => (
                ChangeKind::Closed,
                Some(match reason {
                    CloseReason::Recovered => "readings back to normal".to_string(),
                    CloseReason::WorkOrderCompleted {
                        work_order,
                        failure_code,
                    } => format!(
                        "Work Order {work_order} completed{}",
                        failure_code
                            .as_ref()
                            .map(|c| format!(" (failure code {c})"))
                            .unwrap_or_default()
                    ),
                    CloseReason::DismissedAsFalseAlarm => {
                        "dismissed by a dispatcher as not a problem".to_string()
                    }
                }),
            ),
        };
        ep.changes += 1;
        let (asset_part, mode_part) = (key_part(asset), key_part(mode));
        let case_key = format!("fp-case:{asset_part}:{mode_part}:{}", ep.case_gen.max(1));
        let alert_key = format!("fp-alert:{asset_part}:{mode_part}:{}", ep.case_gen.max(1));
        let (offset, seq, gateway, epoch, appended_ms) = match ctx {
            Some(c) => (
                c.offset,
                c.seq,
                c.gateway.to_string(),
                c.epoch,
                c.appended_ms,
            ),
            None => (
                ep.first_offset,
                ep.first_seq,
                String::new(),
                0,
                store::now_ms(),
            ),
        };
        Some(EpisodeChange {
            asset: asset.to_string(),
            info,
            mode: mode.to_string(),
            predictive: mode != ANOMALY_MODE,
            kind,
            reason,
            number: summary.seq,
            change_no: ep.changes,
            case_key,
            alert_key,
            risk: summary.last_risk,
            threshold: inputs.threshold,
            horizon_days: inputs.horizon_days,
            rul_days: summary.last_rul_days,
            ts_ms: summary.at_ms,
            opened_ms: summary.opened_at_ms,
            priority,
            evidence: inputs.evidence,
            explanation: inputs.explanation,
            similar,
            model,
            source: SourceRange {
                gateway,
                epoch,
                seqs: (ep.first_seq.min(seq), seq),
                offsets: (ep.first_offset.min(offset), offset),
            },
            rollout: inputs.rollout,
            appended_ms,
            flapping: summary.flapping,
        })
    }

    fn feedback(&mut self, ev: &FeedbackEvent) -> Result<(), ProcessError> {
        let asset = ev.asset().to_string();
        self.slot_index(&asset)?;
        let Some(slot) = self.assets.get_mut(&asset) else {
            return Ok(());
        };
        // Existing episodes, plus the ones a Work Order names, so a Work
        // Order opened before any alert still inhibits the one that follows.
        let mut modes: Vec<String> = slot.state.modes.keys().cloned().collect();
        let named = match ev {
            FeedbackEvent::WorkOrderOpened { mode, .. } => mode.clone(),
            _ => None,
        };
        if matches!(ev, FeedbackEvent::WorkOrderOpened { .. }) {
            for m in named.into_iter().chain(
                self.shared
                    .settings
                    .anomaly_episodes
                    .then(|| ANOMALY_MODE.to_string()),
            ) {
                if !modes.contains(&m) {
                    slot.state.modes.entry(m.clone()).or_default();
                    modes.push(m);
                }
            }
        }
        let mut transitions = Vec::new();
        for mode in modes {
            let Some(ep) = slot.state.modes.get_mut(&mode) else {
                continue;
            };
            let t = match ev {
                FeedbackEvent::WorkOrderOpened {
                    mode: m,
                    work_order,
                    at_ms,
                    ..
                } if applies(m.as_deref(), &mode) => {
                    ep.episode.work_order_opened(work_order, *at_ms)
                }
                FeedbackEvent::WorkOrderCompleted {
                    mode: m,
                    work_order,
                    failure_code,
                    at_ms,
                    ..
                } if applies(m.as_deref(), &mode) => {
                    // A Work Order that finished before the open episode (or the
                    // open Case) began is history or a re-read, not its repair.
                    let began = ep
                        .episode
                        .summary(*at_ms)
                        .map(|s| s.opened_at_ms)
                        .or(ep.case_opened_ms.filter(|_| ep.case_open));
                    if began.is_some_and(|b| *at_ms < b) {
                        None
                    } else {
                        // The repair closes the Case's problem: the next episode gets a new Case.
                        ep.case_open = false;
                        ep.episode
                            .work_order_completed(work_order, *at_ms, failure_code.as_deref())
                    }
                }
                FeedbackEvent::WorkOrderCancelled {
                    work_order, at_ms, ..
                } => ep.episode.work_order_cancelled(work_order, *at_ms),
                // Only the current Case: a re-read of an older, closed one says nothing now.
                FeedbackEvent::CaseClosed {
                    mode: m,
                    generation,
                    not_a_problem,
                    at_ms,
                    ..
                } if *m == mode && *generation == ep.case_gen => {
                    ep.case_open = false;
                    if *not_a_problem {
                        ep.episode.case_closed_as_not_a_problem(*at_ms)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            slot.dirty = true;
            if let Some(t) = t {
                transitions.push((mode, t));
            }
        }
        let settings = Arc::clone(&self.shared);
        let settings = &settings.settings;
        for (mode, t) in transitions {
            let summary = t.episode().clone();
            let probability = if mode == ANOMALY_MODE {
                settings.anomaly_probability
            } else {
                summary.last_risk
            };
            let info = self.directory.asset(&asset);
            let priority = prioritize(
                priority_inputs(&settings.priority, info, probability),
                &settings.priority.bands,
            );
            let product = info.and_then(|i| i.product.clone());
            let rollout = settings.rollout.for_product(product.as_deref());
            let threshold = self.threshold_of(&mode);
            if let Some(change) = self.change(
                &asset,
                &mode,
                &t,
                priority,
                None,
                ChangeInputs {
                    threshold,
                    horizon_days: None,
                    evidence: Vec::new(),
                    explanation: None,
                    rollout,
                },
            ) {
                self.pending.push(change);
            }
        }
        self.flush(None)
    }

    fn threshold_of(&self, mode: &str) -> f64 {
        if mode == ANOMALY_MODE {
            return self.shared.settings.anomaly_threshold;
        }
        self.failure
            .as_ref()
            .and_then(|f| f.followed.iter().find(|x| x.mode == mode))
            .map_or(0.5, |x| x.threshold)
    }

    /// Writes pending changes' actions to the outbox (once per change key);
    /// `appended_ms` (when the triggering batch reached the log) feeds the
    /// arrival-to-outbox latency.
    fn flush(&mut self, appended_ms: Option<i64>) -> Result<(), ProcessError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let campaigns = self.shared.settings.campaigns.clone();
        let window_ms = campaigns.window.as_millis() as i64;
        let directory = Arc::clone(&self.directory);
        let now = store::now_ms();
        let tx = self.store.write()?;
        let mut n_actions = 0u64;
        for change in &pending {
            let slot = self.assets.get(&change.asset);
            let state = slot
                .and_then(|s| s.state.modes.get(&change.mode))
                .map(|ep| {
                    if ep.episode.is_suppressed() {
                        "suppressed"
                    } else if ep.episode.is_open() {
                        "open"
                    } else {
                        "closed"
                    }
                })
                .unwrap_or("closed");
            store::tx::put_episode(
                &tx,
                &EpisodeRow {
                    asset: change.asset.clone(),
                    mode: change.mode.clone(),
                    state: state.into(),
                    number: change.number,
                    risk: Some(change.risk),
                    priority: Some(change.priority.priority.to_string()),
                    case_key: (change.rollout != Rollout::Observe).then(|| change.case_key.clone()),
                    opened_ms: Some(change.opened_ms),
                },
            )?;
            if !store::tx::first_emit(&tx, &change.insight_key())? {
                self.shared
                    .metrics
                    .replayed_changes
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            for action in change.actions() {
                n_actions += enqueue_or_refuse(&tx, &action, now)?;
            }
            if change.kind == ChangeKind::Opened
                && change.predictive
                && change.rollout != Rollout::Observe
            {
                n_actions += campaign_actions(
                    &tx,
                    change,
                    &directory,
                    campaigns.min_assets,
                    window_ms,
                    now,
                )?;
            }
        }
        tx.commit().map_err(store::StoreError::from)?;
        let m = &self.shared.metrics;
        m.actions_enqueued.fetch_add(n_actions, Ordering::Relaxed);
        if let Some(appended) = appended_ms.filter(|_| n_actions > 0) {
            m.record_latency_ms((now - appended).max(0) as u64);
        }
        Ok(())
    }

    /// Saves every changed asset and this shard's offset.
    fn checkpoint(&mut self) -> Result<(), ProcessError> {
        self.last_checkpoint = Instant::now();
        let tx = self.store.write()?;
        let mut saved = 0u64;
        for (name, slot) in self.assets.iter_mut().filter(|(_, s)| s.dirty) {
            let rec = AssetRecord {
                next_offset: slot.next_offset,
                anomaly: Some(self.anomaly.asset_state(slot.idx)),
                failure: self
                    .failure
                    .as_ref()
                    .and_then(|f| f.scorer.asset_state(name)),
                episodes: serde_json::to_string(&slot.state)
                    .map_err(|e| store::StoreError::Corrupt(e.to_string()))?,
            };
            store::tx::put_asset(&tx, name, &rec)?;
            slot.dirty = false;
            saved += 1;
        }
        store::tx::put_shard(&tx, self.id, self.shared.settings.shards, self.next_offset)?;
        tx.commit().map_err(store::StoreError::from)?;
        self.progress
            .checkpointed
            .store(self.next_offset, Ordering::Release);
        let (open, suppressed) = self.assets.values().fold((0u64, 0u64), |acc, s| {
            s.state.modes.values().fold(acc, |(o, su), ep| {
                (
                    o + u64::from(ep.episode.is_open()),
                    su + u64::from(ep.episode.is_suppressed()),
                )
            })
        });
        self.progress.episodes_open.store(open, Ordering::Relaxed);
        self.progress
            .episodes_suppressed
            .store(suppressed, Ordering::Relaxed);
        self.progress
            .assets
            .store(self.assets.len() as u64, Ordering::Relaxed);
        // O(assets × sensors): once per checkpoint, never per row.
        let counters = self.anomaly.counters();
        self.progress
            .rows_out_of_order
            .store(counters.out_of_order_rows, Ordering::Relaxed);
        self.progress
            .rows_duplicate
            .store(counters.duplicate_rows, Ordering::Relaxed);
        self.shared
            .metrics
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            shard = self.id,
            saved,
            offset = self.next_offset,
            "Checkpoint."
        );
        Ok(())
    }
}

/// When and how a row arrived, for its evaluations.
#[derive(Debug, Clone, Copy)]
struct Origin {
    historical: bool,
    appended_ms: i64,
}

/// What scoring one row of an asset touches: the shard's scorers and the
/// asset's priority inputs.
struct ScoreParts<'a> {
    shard: usize,
    anomaly: &'a mut FleetScorer,
    failure: &'a mut Option<FailurePart>,
    shadow: &'a mut Option<ShadowPart>,
    shared: &'a Shared,
    base: PriorityInputs,
}

impl<'a> ScoreParts<'a> {
    fn new(
        shard: usize,
        anomaly: &'a mut FleetScorer,
        failure: &'a mut Option<FailurePart>,
        shadow: &'a mut Option<ShadowPart>,
        shared: &'a Shared,
        info: Option<&AssetInfo>,
    ) -> Self {
        Self {
            shard,
            anomaly,
            failure,
            shadow,
            base: priority_inputs(&shared.settings.priority, info, 0.0),
            shared,
        }
    }

    /// Scores one row (anomaly, and the failure model when due) and feeds the
    /// asset's episodes; transitions go to `changes`.
    #[allow(clippy::too_many_arguments)]
    fn score_row(
        &mut self,
        slot: &mut AssetSlot,
        idx: usize,
        asset: &str,
        ts: i64,
        values: &[f64],
        origin: Origin,
        changes: &mut Vec<PendingChange>,
    ) -> Result<(), ProcessError> {
        let parts = self;
        let settings = &parts.shared.settings;
        let thr = settings.anomaly_threshold;
        let every = settings.failure_every_ms;
        let bands = &settings.priority.bands;
        let (crit, sla) = (parts.base.criticality, parts.base.sla_factor);
        let score = parts.anomaly.score_row(idx, ts, values);
        let crossing = !score.in_warmup && score.score >= thr;
        if let Some(f) = parts.failure {
            for (dst, pos) in f.buf.iter_mut().zip(&f.perm) {
                *dst = pos.map_or(f64::NAN, |p| values[p]);
            }
            let due = crossing
                || slot
                    .state
                    .last_failure_eval_ms
                    .is_none_or(|t| ts - t >= every || ts < t);
            let pred = f
                .scorer
                .observe(asset, ts, &f.buf, due)
                .map_err(|e| ProcessError::Model(e.to_string()))?;
            if let Some(shadow) = parts.shadow.as_mut() {
                // Never acted on: the shadow's prediction only feeds the metrics.
                let warm = pred.is_some() && !f.scorer.last_warming_up();
                if let Err(e) = shadow.score(
                    &parts.shared.metrics,
                    f,
                    pred.as_ref().filter(|_| warm),
                    asset,
                    ts,
                    values,
                    due,
                ) {
                    tracing::error!(version = %shadow.part.version, error = %e, "Shadow model failed; shadow scoring stopped.");
                    *parts.shadow = None;
                }
            }
            if let Some(pred) = pred {
                slot.state.last_failure_eval_ms = Some(ts);
                parts
                    .shared
                    .metrics
                    .failure_evaluations
                    .fetch_add(1, Ordering::Relaxed);
                for fol in &f.followed {
                    let risk = pred.probabilities[fol.classifier];
                    parts.shared.metrics.champion_risk.observe(risk);
                    let eval = Evaluation {
                        ts_ms: ts,
                        risk,
                        threshold: fol.threshold,
                        rul_days: Some(pred.rul_days),
                        priority: bands.classify(risk * crit * sla),
                        historical: origin.historical,
                        now_ms: origin.appended_ms,
                    };
                    let ep = slot.state.modes.entry(fol.mode.clone()).or_default();
                    if let Some(t) = ep.episode.observe(&settings.episodes, &eval) {
                        let row = f.scorer.last_row();
                        let mut evidence: Vec<SensorEvidence> = f
                            .model
                            .schema
                            .sensors
                            .iter()
                            .zip(&f.robust_z)
                            .zip(&f.buf)
                            .filter_map(|((s, z), v)| {
                                let z = row.get((*z)?).copied()?;
                                z.is_finite().then(|| SensorEvidence {
                                    sensor: s.clone(),
                                    z,
                                    value: *v,
                                })
                            })
                            .collect();
                        evidence.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
                        evidence.truncate(4);
                        // Explained here, where an action will be built from
                        // the row, never per reading; changes that write no
                        // Case text skip it.
                        let explanation = (!matches!(
                            t,
                            Transition::Suppressed { .. } | Transition::Closed { .. }
                        ))
                        .then(|| {
                            match f.model.classifiers[fol.classifier].explain(
                                &f.model.schema,
                                row,
                                EXPLANATION_TOP,
                            ) {
                                Ok(e) => RiskExplanation::Computed(e),
                                Err(e) => RiskExplanation::Unavailable(e.to_string()),
                            }
                        });
                        changes.push((
                            fol.mode.clone(),
                            t,
                            eval,
                            Some(fol.horizon_days),
                            evidence,
                            explanation,
                        ));
                    }
                }
            }
        }
        if let Some(tap) = &settings.tap {
            (tap.0)(&ScoredRow {
                shard: parts.shard,
                asset,
                ts_ms: ts,
                champion: parts.failure.as_ref().map(|f| &*f.version),
                shadow: parts.shadow.as_ref().map(|s| &*s.part.version),
            });
        }
        if settings.anomaly_episodes && !score.in_warmup && score.score.is_finite() {
            let prob = settings.anomaly_probability;
            let eval = Evaluation {
                ts_ms: ts,
                risk: score.score,
                threshold: thr,
                rul_days: None,
                priority: bands.classify(prob * crit * sla),
                historical: origin.historical,
                now_ms: origin.appended_ms,
            };
            // No allocation per row: the key is created once per asset.
            if !slot.state.modes.contains_key(ANOMALY_MODE) {
                slot.state
                    .modes
                    .insert(ANOMALY_MODE.to_string(), EpisodeSlot::default());
            }
            let Some(ep) = slot.state.modes.get_mut(ANOMALY_MODE) else {
                return Ok(());
            };
            if let Some(t) = ep.episode.observe(&settings.episodes, &eval) {
                let evidence = score
                    .top_sensor
                    .map(|s| SensorEvidence {
                        sensor: settings.layout.names()[s].clone(),
                        z: f64::NAN,
                        value: values[s],
                    })
                    .into_iter()
                    .collect();
                changes.push((ANOMALY_MODE.to_string(), t, eval, None, evidence, None));
            }
        }
        Ok(())
    }
}

impl ShadowPart {
    /// Feeds one row to the shadow model (evaluated when the champion is due)
    /// and, when the champion's `pred` is given (past warm-up) and the shadow
    /// is past its own, compares their alarms per failure mode.
    #[allow(clippy::too_many_arguments)]
    fn score(
        &mut self,
        metrics: &super::ProcessorMetrics,
        champion: &FailurePart,
        pred: Option<&fieldpulse_models::failure::Prediction>,
        asset: &str,
        ts: i64,
        values: &[f64],
        due: bool,
    ) -> Result<(), ProcessError> {
        let s = &mut self.part;
        for (dst, pos) in s.buf.iter_mut().zip(&s.perm) {
            *dst = pos.map_or(f64::NAN, |p| values[p]);
        }
        let shadow_pred = s
            .scorer
            .observe(asset, ts, &s.buf, due)
            .map_err(|e| ProcessError::Model(e.to_string()))?;
        let (Some(sp), Some(cp)) = (shadow_pred, pred) else {
            return Ok(());
        };
        if s.scorer.last_warming_up() {
            return Ok(());
        }
        metrics.shadow_evaluations.fetch_add(1, Ordering::Relaxed);
        for fol in &s.followed {
            metrics
                .shadow_risk
                .observe(sp.probabilities[fol.classifier]);
        }
        for (c, sh) in &self.pairs {
            let alarms = |f: &FailurePart, i: &Option<usize>, probs: &[f64]| {
                i.and_then(|i| f.followed.get(i))
                    .is_some_and(|fol| probs[fol.classifier] >= fol.threshold)
            };
            metrics.count_agreement(Agreement::of(
                alarms(champion, c, &cp.probabilities),
                alarms(s, sh, &sp.probabilities),
            ));
        }
        Ok(())
    }
}

/// A transition seen in the row loop, turned into an [`EpisodeChange`] after it:
/// (mode, transition, the evaluation, horizon days, evidence, the failure
/// model's explanation).
type PendingChange = (
    String,
    Transition,
    Evaluation,
    Option<f64>,
    Vec<SensorEvidence>,
    Option<RiskExplanation>,
);

/// The priority inputs of an asset: its criticality (the configured Asset
/// field, else the default) and SLA factor (by account, else the default),
/// each with where it came from. One place, so scoring and feedback agree.
fn priority_inputs(
    priority: &RawPriority,
    info: Option<&AssetInfo>,
    probability: f64,
) -> PriorityInputs {
    let (criticality, criticality_source) = match info.and_then(|i| i.criticality) {
        Some(c) => (c, format!("Asset.{}", priority.criticality_field)),
        None => (priority.default_criticality, "default".to_string()),
    };
    let account = info.and_then(|i| i.account.as_deref());
    let (sla_factor, sla_source) = match account.and_then(|a| priority.sla_by_account.get(a)) {
        Some(f) => (*f, format!("sla_by_account[{}]", account.unwrap_or(""))),
        None => (priority.default_sla_factor, "default".to_string()),
    };
    PriorityInputs {
        probability,
        criticality,
        criticality_source,
        sla_factor,
        sla_source,
    }
}

/// What a change needs beyond the transition.
struct ChangeInputs {
    threshold: f64,
    horizon_days: Option<f64>,
    evidence: Vec<SensorEvidence>,
    explanation: Option<RiskExplanation>,
    rollout: Rollout,
}

/// A Work Order for `wo_mode` (None: unknown problem) concerns episodes of `mode`.
fn applies(wo_mode: Option<&str>, mode: &str) -> bool {
    match wo_mode {
        None => true,
        Some(m) => m == mode || mode == ANOMALY_MODE,
    }
}

/// Enqueues an action; one the outbox refuses as malformed (which would be a
/// bug here, never the data's fault) is logged and skipped rather than
/// stopping the shard. Returns how many were enqueued (0 or 1).
fn enqueue_or_refuse(
    tx: &rusqlite::Transaction<'_>,
    action: &outbox::Action,
    now: i64,
) -> Result<u64, ProcessError> {
    match outbox::enqueue(tx, action, now) {
        Ok(_) => Ok(1),
        Err(e @ outbox::OutboxError::InvalidAction { .. }) => {
            tracing::error!(error = %e, "Refused an action the outbox cannot send.");
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// Records a campaign signal and, when enough assets of the product show the
/// same mode within the window, drafts (or extends) a PM campaign.
fn campaign_actions(
    tx: &rusqlite::Transaction<'_>,
    change: &EpisodeChange,
    directory: &Directory,
    min_assets: usize,
    window_ms: i64,
    now: i64,
) -> Result<u64, ProcessError> {
    let Some(info) = &change.info else {
        return Ok(0);
    };
    let Some(product) = info.product.as_deref() else {
        return Ok(0);
    };
    let (start, members) = store::tx::campaign_signal(
        tx,
        product,
        &change.mode,
        &change.asset,
        change.ts_ms,
        window_ms,
    )?;
    if members.len() < min_assets {
        return Ok(0);
    }
    let mut n = 0;
    let key = match store::tx::campaign_for(tx, product, &change.mode, change.ts_ms, window_ms)? {
        Some(k) => k,
        None => {
            let key = format!(
                "fp-pm:{}:{}:{}",
                key_part(product),
                key_part(&change.mode),
                start / 86_400_000
            );
            store::tx::put_campaign(tx, &key, product, &change.mode, start)?;
            n += enqueue_or_refuse(
                tx,
                &crate::campaign::plan_action(&key, product, change, members.len()),
                now,
            )?;
            key
        }
    };
    for asset in &members {
        let Some(member) = directory.asset(asset) else {
            continue;
        };
        if store::tx::join_campaign(tx, &key, asset)? {
            n += enqueue_or_refuse(
                tx,
                &crate::campaign::member_action(&key, member, change),
                now,
            )?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_inputs_name_where_criticality_and_sla_came_from() {
        let mut priority = RawPriority {
            criticality_field: "Criticality__c".into(),
            ..RawPriority::default()
        };
        priority.sla_by_account.insert("Hospital".into(), 2.0);
        let info = AssetInfo {
            account: Some("Hospital".into()),
            criticality: Some(0.5),
            ..AssetInfo::default()
        };
        let p = priority_inputs(&priority, Some(&info), 0.8);
        assert_eq!(
            (p.criticality, p.sla_factor, p.probability),
            (0.5, 2.0, 0.8)
        );
        assert_eq!(p.criticality_source, "Asset.Criticality__c");
        assert_eq!(p.sla_source, "sla_by_account[Hospital]");
        let unknown = priority_inputs(&priority, None, 0.8);
        assert_eq!((unknown.criticality, unknown.sla_factor), (1.0, 1.0));
        assert_eq!(
            (
                unknown.criticality_source.as_str(),
                unknown.sla_source.as_str()
            ),
            ("default", "default")
        );
    }
}
