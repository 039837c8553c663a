//! The forwarder: cuts batches from the spool, POSTs them to the cloud, frees them on `BatchAck`.
//!
//! Two lanes run side by side, each with at most one batch in flight:
//! - **live** cuts the newest committed records (`Lane::Live`) when a full batch is ready or the
//!   oldest waiting record is `batch_max_age` old;
//! - **backfill** drains the backlog, oldest first (`Lane::Backfill`), at `backfill_rate`
//!   readings per second, and its batches are marked `historical`.
//!
//! The backlog is a count of the oldest uncut records that live must leave alone. It is set when
//! the uplink recovers from an outage (every record that piled up meanwhile) and at startup (the
//! uncut records found on disk, when more than one batch's worth). Batches already cut before a
//! crash are re-sent first, with their seq and lane ([`Spool::pending`]).
//!
//! Every batch carries the spool's epoch ([`Spool::epoch`]); the cloud deduplicates by
//! `(gateway, epoch, seq)`, so a wiped or replaced spool, whose seqs start at 1 again, is never
//! taken for the old one. A reply counts as the batch's ack only if it is a `BatchAck` echoing both
//! the seq and the epoch; anything else is counted (`acks_refused`), logged and retried. An ack
//! whose `contiguous_seq` is beyond every seq this epoch has handed out (something else sends under
//! this gateway id and epoch, such as a copied spool directory) is accepted, since it echoes the
//! batch, but counted (`acks_contiguous_ahead`) and logged.
//!
//! Batch sizes and request timeouts follow the measured uplink rate ([`crate::uplink`]): both lanes
//! cut batches of at most [`Uplink::target_bytes`] record bytes, and every POST gets its own
//! timeout from [`Uplink::timeout_for`] (the client has no global one), growing for a batch that
//! keeps timing out, since a batch already cut keeps its content.
//!
//! Every POST has a timeout. Failures are classified like vector's `RetryLogic`: transport
//! errors, timeouts, 408, 429, 5xx and the configuration errors 401/403/404 (an operator fixes
//! them; dropping data would not) are retried with capped exponential backoff and jitter; other
//! 4xx are permanent. A 413 (too large) splits the batch in halves ([`Spool::split`], recursively)
//! and sends the parts; only a single record too large on its own is dead-lettered. Other permanent
//! rejections go to the dead-letter directory ([`crate::dead_letter`]): the body is written and
//! fsynced there before the spool acks (frees) the batch, its readings are counted as dropped
//! (`dead_letter`), and the directory's bytes count against the spool's cap. When the write fails
//! (full disk, permissions) the batch stays pending, the failure is counted
//! (`dead_letter_write_failures`) and the write is retried with backoff.
//! A 429 or 503 with a `Retry-After` header waits what the cloud asked for (at least
//! `retry_initial`, at most `retry_max`) instead of the backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fieldpulse_proto::v1::BatchAck;
use prost::Message;
use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

use crate::batch::{BatchBuilder, EncodedBatch};
use crate::config::{ForwardConfig, Secret};
use crate::dead_letter::{
    error_chain, truncate_error, DeadLetterError, DeadLetterMeta, DeadLetterSink, MAX_ERROR_BYTES,
    META_FORMAT,
};
use crate::envelope;
use crate::intake::{publish_spool_gauges, AckGate};
use crate::metrics::{DropReason, MetricsHandle};
use crate::redelivery::RedeliveryRing;
use crate::reload::LiveSettings;
use crate::spool::{CutBatch, CutEnd, Lane, SendCheck, SplitOutcome, Spool, SpoolError};
use crate::uplink::{self, Uplink, UplinkParams};

/// Why a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The request did not complete (connect, TLS, timeout, reset). The message ends with the
    /// innermost cause (e.g. `invalid peer certificate: UnknownIssuer`): reqwest's own says only
    /// "error sending request".
    #[error("sending batch {seq}: {}", root_cause(.source))]
    Transport {
        /// The batch.
        seq: u64,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The cloud answered with an error status.
    #[error("cloud answered batch {seq} with HTTP {status}")]
    Status {
        /// The batch.
        seq: u64,
        /// HTTP status.
        status: u16,
        /// The start of the cloud's error body (at most [`MAX_ERROR_BYTES`]).
        body: String,
    },
    /// A 429 or 503 with a usable `Retry-After` header.
    #[error("cloud answered batch {seq} with HTTP {status}, retry after {retry_after:?}")]
    Throttled {
        /// The batch.
        seq: u64,
        /// HTTP status (429 or 503).
        status: u16,
        /// The wait the cloud asked for.
        retry_after: Duration,
    },
    /// A 2xx whose body is not a `BatchAck` for this seq.
    #[error("cloud acknowledged batch {seq} with an unusable reply ({detail})")]
    BadAck {
        /// The batch.
        seq: u64,
        /// What was wrong.
        detail: String,
    },
    /// A `BatchAck` for this seq but another spool epoch: it does not acknowledge this batch.
    #[error(
        "cloud acknowledged batch {seq} for spool epoch {got}, but the batch is of epoch \
         {expected}; is the cloud older than this edge (no spool epochs)?"
    )]
    WrongEpoch {
        /// The batch.
        seq: u64,
        /// The spool's epoch, sent in the batch.
        expected: u64,
        /// The epoch the ack names.
        got: u64,
    },
}

impl ForwardError {
    /// True when retrying can succeed (see the module docs for the classification).
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::Throttled { .. }
            | Self::BadAck { .. }
            | Self::WrongEpoch { .. } => true,
            Self::Status { status, .. } => {
                matches!(status, 401 | 403 | 404 | 408 | 429) || *status >= 500
            }
        }
    }

    /// True when the request ran out of its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Transport { source, .. } if source.is_timeout())
    }
}

/// Why the forwarder stopped.
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    /// The spool failed.
    #[error("spool operation failed in the forwarder")]
    Spool(#[source] SpoolError),
    /// A blocking spool call panicked.
    #[error("spool thread stopped unexpectedly")]
    Thread(#[source] tokio::task::JoinError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The HTTP client the forwarder (and `dead-letters replay`) sends batches with: `forward.tls`
/// applied, no client-wide timeout (each request gets its own, see `Uplink::timeout_for`).
///
/// # Errors
/// [`ForwarderError::Client`] when it cannot be built (TLS setup).
pub fn http_client(cfg: &ForwardConfig) -> Result<reqwest::Client, ForwarderError> {
    let mut http = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(tls) = &cfg.tls {
        http = tls.apply(http);
    }
    http.build().map_err(ForwarderError::Client)
}

/// The innermost error of `err`'s source chain, as text.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Capped exponential backoff with full jitter: attempt 0 waits up to `initial`.
pub fn backoff(initial: Duration, max: Duration, attempt: u32, rng: &mut impl Rng) -> Duration {
    let factor = 1u64 << attempt.min(20);
    let ceiling = initial.saturating_mul(factor as u32).min(max);
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    // Half fixed, half random: never a zero wait, never a synchronized retry storm.
    Duration::from_millis(millis / 2 + rng.gen_range(0..=millis / 2))
}

/// The wait before retrying after the retriable `err`: what a 429/503 asked for in `Retry-After`
/// (at least `retry_initial`, at most `retry_max`), otherwise [`backoff`].
pub fn retry_wait(
    cfg: &ForwardConfig,
    err: &ForwardError,
    attempt: u32,
    rng: &mut impl Rng,
) -> Duration {
    match err {
        ForwardError::Throttled { retry_after, .. } => {
            (*retry_after).max(cfg.retry_initial).min(cfg.retry_max)
        }
        _ => backoff(cfg.retry_initial, cfg.retry_max, attempt, rng),
    }
}

/// State shared by both lanes.
struct Shared {
    spool: Arc<Mutex<Spool>>,
    cfg: ForwardConfig,
    gateway_id: String,
    /// The spool's epoch, sent in every batch and expected back in every ack.
    spool_epoch: u64,
    http: reqwest::Client,
    /// Uplink rate, batch target and request timeouts (see `crate::uplink`).
    uplink: Mutex<Uplink>,
    metrics: MetricsHandle,
    /// Oldest uncut records reserved for the backfill lane.
    backlog: AtomicU64,
    /// A send failed retriably since the last success.
    outage: AtomicBool,
    /// Wakes the backfill lane.
    backlog_changed: Notify,
    /// Wakes the writer when space was freed.
    space_freed: Arc<Notify>,
    /// Which committed records have had their PUBACK sent.
    gate: Arc<AckGate>,
    /// Messages of sent batches, for redelivery detection after a restart.
    ring: Option<Mutex<RedeliveryRing>>,
    /// The gateway token (reloadable).
    live: Arc<LiveSettings>,
    /// Where permanently rejected batches go.
    dead_letters: Arc<DeadLetterSink>,
}

/// How a batch's life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Acked,
    DeadLettered,
    /// Every record of the batch was evicted by `drop_oldest` before it could be sent.
    Evicted,
    Stopped,
}

/// The forwarder task.
pub struct Forwarder {
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
}

/// How the forwarder is connected to the rest of the agent.
pub struct ForwarderLinks {
    /// Commit counter of the writer (wakes the live lane).
    pub committed: watch::Receiver<u64>,
    /// Wakes the writer when acks freed spool space.
    pub space_freed: Arc<Notify>,
    /// Which committed records have had their PUBACK sent.
    pub gate: Arc<AckGate>,
    /// The redelivery ring, if it could be opened.
    pub ring: Option<RedeliveryRing>,
    /// Reloadable settings (the gateway token).
    pub live: Arc<LiveSettings>,
}

impl Forwarder {
    /// Builds the forwarder.
    ///
    /// # Errors
    /// [`ForwarderError::Client`] when the HTTP client cannot be built (TLS setup).
    pub fn new(
        spool: Arc<Mutex<Spool>>,
        cfg: ForwardConfig,
        gateway_id: String,
        metrics: MetricsHandle,
        links: ForwarderLinks,
    ) -> Result<Self, ForwarderError> {
        let ForwarderLinks {
            committed,
            space_freed,
            gate,
            ring,
            live,
        } = links;
        // No client-wide timeout: each request gets its own from `Uplink::timeout_for`.
        let http = http_client(&cfg)?;
        let dead_letters = Arc::new(DeadLetterSink::new(
            &cfg.dead_letter_dir,
            Arc::clone(&spool),
            metrics.clone(),
        ));
        let spool_epoch = spool.lock().unwrap_or_else(PoisonError::into_inner).epoch();
        let uplink = Uplink::new(UplinkParams {
            initial_bytes: cfg.batch_initial_bytes,
            max_bytes: cfg.batch_max_bytes,
            timeout_floor: cfg.request_timeout,
            timeout_ceiling: cfg.request_timeout_max,
        });
        publish_uplink_gauges(&uplink, &metrics);
        Ok(Self {
            shared: Arc::new(Shared {
                spool,
                cfg,
                gateway_id,
                spool_epoch,
                http,
                uplink: Mutex::new(uplink),
                metrics,
                backlog: AtomicU64::new(0),
                outage: AtomicBool::new(false),
                backlog_changed: Notify::new(),
                space_freed,
                gate,
                ring: ring.map(Mutex::new),
                live,
                dead_letters,
            }),
            committed,
        })
    }

    /// Runs both lanes. After `drain` is cancelled, the live lane sends what is left and returns
    /// when nothing remains; the backfill lane stops. `hard_stop` ends everything at once (the
    /// in-flight batch stays pending and is re-sent next start).
    ///
    /// # Errors
    /// [`ForwarderError`] when the spool fails.
    pub async fn run(
        self,
        drain: CancellationToken,
        hard_stop: CancellationToken,
    ) -> Result<(), ForwarderError> {
        let shared = self.shared;
        // The dead-letter directory counts against the spool's cap from the start.
        let dead_letters = Arc::clone(&shared.dead_letters);
        tokio::task::spawn_blocking(move || dead_letters.refresh())
            .await
            .map_err(ForwarderError::Thread)?;
        // Startup: pending batches first, then reserve an on-disk backlog for the backfill lane.
        let pending = blocking(&shared, |spool| spool.pending()).await?;
        let (live_pending, backfill_pending): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|batch| batch.lane == Lane::Live);
        let backlog = blocking(&shared, |spool| Ok(spool.stats().uncut_records)).await?;
        if backlog > shared.cfg.batch_max_records as u64 {
            info!(
                records = backlog,
                "Found a backlog on disk; it drains in the backfill lane."
            );
            shared.backlog.store(backlog, Ordering::Relaxed);
            shared
                .metrics
                .inner()
                .backlog_records
                .store(backlog, Ordering::Relaxed);
        }
        let live = live_lane(
            Arc::clone(&shared),
            live_pending,
            self.committed,
            drain.clone(),
            hard_stop.clone(),
        );
        let backfill = backfill_lane(Arc::clone(&shared), backfill_pending, drain, hard_stop);
        let lanes_done = CancellationToken::new();
        let lanes = async {
            let res = tokio::join!(live, backfill);
            lanes_done.cancel();
            res
        };
        let watch = Arc::clone(&shared.dead_letters)
            .watch(Arc::clone(&shared.space_freed), lanes_done.clone());
        let ((live_res, backfill_res), ()) = tokio::join!(lanes, watch);
        live_res.and(backfill_res)
    }
}

impl Shared {
    fn uplink(&self) -> MutexGuard<'_, Uplink> {
        self.uplink.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record bytes the next batch may hold.
    fn batch_target_bytes(&self) -> usize {
        self.uplink().target_bytes()
    }

    fn update_uplink(&self, update: impl FnOnce(&mut Uplink)) {
        let mut uplink = self.uplink();
        update(&mut uplink);
        publish_uplink_gauges(&uplink, &self.metrics);
    }
}

fn publish_uplink_gauges(uplink: &Uplink, metrics: &MetricsHandle) {
    let metrics = metrics.inner();
    // `as` saturates; a rate is never negative.
    let rate = uplink.bytes_per_second().map_or(0, |rate| rate as u64);
    metrics
        .uplink_bytes_per_second
        .store(rate, Ordering::Relaxed);
    metrics
        .batch_target_bytes
        .store(uplink.target_bytes() as u64, Ordering::Relaxed);
}

/// Record bytes of a cut (what the spool's byte limit counts).
fn record_bytes(batch: &CutBatch) -> usize {
    batch
        .records
        .iter()
        .map(|record| record.payload.len())
        .sum()
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    op: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, ForwarderError> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let mut spool = shared.spool.lock().unwrap_or_else(PoisonError::into_inner);
        let res = op(&mut spool);
        publish_spool_gauges(&spool, &shared.metrics);
        res
    })
    .await
    .map_err(ForwarderError::Thread)?
    .map_err(ForwarderError::Spool)
}

/// What the live lane found when it looked at the spool.
enum LiveCut {
    Batch(CutBatch),
    /// Records are waiting but fewer than a batch and not yet old enough.
    NotYet,
    /// Nothing to send now. `held` is true when synced records wait only for
    /// their PUBACK to leave (see `AckGate`): they become eligible without a
    /// new commit, so the lane must look again on a timer. (Deciding that from a second look at the gate after the
    /// cut raced with the PUBACK flush: a flush in between left the lane
    /// waiting for a commit that might never come.)
    Empty {
        held: bool,
    },
}

async fn live_lane(
    shared: Arc<Shared>,
    pending: Vec<CutBatch>,
    mut committed: watch::Receiver<u64>,
    drain: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<(), ForwarderError> {
    for batch in pending {
        if send_cut(&shared, batch, false, &hard_stop).await? == Sent::Stopped {
            return Ok(());
        }
    }
    let max_age = shared.cfg.batch_max_age;
    let mut waiting_since: Option<Instant> = None;
    loop {
        let draining = drain.is_cancelled();
        let force = draining || waiting_since.is_some_and(|since| since.elapsed() >= max_age);
        let max_records = shared.cfg.batch_max_records;
        let max_bytes = shared.batch_target_bytes();
        let shared_for_cut = Arc::clone(&shared);
        let cut = blocking(&shared, move |spool| {
            let stats = spool.stats();
            let uncut = stats.uncut_records.saturating_sub(stats.unsynced_records);
            let backlog = shared_for_cut.backlog.load(Ordering::Relaxed).min(uncut);
            let mut eligible = uncut - backlog;
            let mut gated = 0;
            if backlog == 0 && !draining {
                // Leave the newest records whose PUBACK has not left yet (see `AckGate`).
                gated = eligible.min(shared_for_cut.gate.unflushed_records());
                eligible -= gated;
            }
            if eligible == 0 {
                return Ok(LiveCut::Empty { held: gated > 0 });
            }
            if !force && eligible < max_records as u64 {
                return Ok(LiveCut::NotYet);
            }
            let n = (eligible as usize).min(max_records);
            // After an outage live takes the newest records, so fresh data goes first. Without
            // a backlog a live lane that fell behind must keep receive order: oldest first.
            let end = if backlog == 0 {
                CutEnd::Oldest
            } else {
                CutEnd::Newest
            };
            Ok(match spool.cut_from(Lane::Live, end, n, max_bytes)? {
                Some(batch) => LiveCut::Batch(batch),
                None => LiveCut::Empty { held: false },
            })
        })
        .await?;
        match cut {
            LiveCut::Batch(batch) => {
                if send_cut(&shared, batch, false, &hard_stop).await? == Sent::Stopped {
                    return Ok(());
                }
                // Whatever is left has waited at least as long as this batch: keep forcing.
                continue;
            }
            LiveCut::NotYet => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                tokio::select! {
                    biased;
                    _ = hard_stop.cancelled() => return Ok(()),
                    _ = drain.cancelled(), if !draining => {}
                    _ = tokio::time::sleep_until(since + max_age) => {}
                    res = committed.changed() => {
                        if res.is_err() && writer_gone(&drain, &hard_stop).await {
                            return Ok(());
                        }
                    }
                }
            }
            LiveCut::Empty { held } => {
                waiting_since = None;
                if draining {
                    return Ok(());
                }
                tokio::select! {
                    biased;
                    _ = hard_stop.cancelled() => return Ok(()),
                    _ = drain.cancelled() => {}
                    // Records held back for their PUBACK become eligible without a new commit.
                    _ = tokio::time::sleep(max_age), if held => {
                        waiting_since = Some(Instant::now().checked_sub(max_age).unwrap_or_else(Instant::now));
                    }
                    res = committed.changed() => {
                        if res.is_err() && writer_gone(&drain, &hard_stop).await {
                            return Ok(());
                        }
                        waiting_since = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// The writer dropped its commit counter: nothing new will arrive. Waits for the drain (then
/// flushes) or the hard stop (true: stop now).
async fn writer_gone(drain: &CancellationToken, hard_stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = hard_stop.cancelled() => true,
        _ = drain.cancelled() => false,
    }
}

async fn backfill_lane(
    shared: Arc<Shared>,
    pending: Vec<CutBatch>,
    drain: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<(), ForwarderError> {
    let rate = f64::from(shared.cfg.backfill_rate);
    for batch in pending {
        if drain.is_cancelled() {
            return Ok(());
        }
        let n_readings = batch.n_readings();
        if send_cut(&shared, batch, true, &hard_stop).await? == Sent::Stopped {
            return Ok(());
        }
        if pause(n_readings, rate, &drain, &hard_stop).await {
            return Ok(());
        }
    }
    loop {
        if drain.is_cancelled() {
            return Ok(());
        }
        let max_records = shared
            .cfg
            .batch_max_records
            .min(shared.cfg.backfill_rate as usize)
            .max(1);
        let max_bytes = shared.batch_target_bytes();
        let shared_for_cut = Arc::clone(&shared);
        let cut = blocking(&shared, move |spool| {
            let stats = spool.stats();
            let uncut = stats.uncut_records.saturating_sub(stats.unsynced_records);
            let backlog = shared_for_cut.backlog.load(Ordering::Relaxed).min(uncut);
            if backlog == 0 {
                shared_for_cut.backlog.store(0, Ordering::Relaxed);
                return Ok(None);
            }
            let n = (backlog as usize).min(max_records);
            let cut = spool.cut(Lane::Backfill, n, max_bytes)?;
            let taken = cut
                .as_ref()
                .map_or(backlog, |batch| batch.records.len() as u64);
            shared_for_cut
                .backlog
                .store(backlog - taken.min(backlog), Ordering::Relaxed);
            Ok(cut)
        })
        .await?;
        shared
            .metrics
            .inner()
            .backlog_records
            .store(shared.backlog.load(Ordering::Relaxed), Ordering::Relaxed);
        match cut {
            Some(batch) => {
                let n_readings = batch.n_readings();
                if send_cut(&shared, batch, true, &hard_stop).await? == Sent::Stopped {
                    return Ok(());
                }
                if pause(n_readings, rate, &drain, &hard_stop).await {
                    return Ok(());
                }
            }
            None => {
                tokio::select! {
                    biased;
                    _ = hard_stop.cancelled() => return Ok(()),
                    _ = drain.cancelled() => return Ok(()),
                    _ = shared.backlog_changed.notified() => {}
                    // Backstop against a missed notification.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Waits `n_readings / rate` seconds; true when the lane should stop.
async fn pause(
    n_readings: u64,
    rate: f64,
    drain: &CancellationToken,
    hard_stop: &CancellationToken,
) -> bool {
    let wait = Duration::from_secs_f64(n_readings as f64 / rate);
    tokio::select! {
        biased;
        _ = hard_stop.cancelled() => true,
        _ = drain.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// Builds and compresses the batch of a cut on a blocking thread, counting unreadable records.
async fn encode_cut(
    shared: &Arc<Shared>,
    batch: CutBatch,
    historical: bool,
) -> Result<EncodedBatch, ForwarderError> {
    let gateway_id = shared.gateway_id.clone();
    let spool_epoch = shared.spool_epoch;
    let level = shared.cfg.zstd_level;
    let seq = batch.seq;
    let shared_for_ring = Arc::clone(shared);
    let encoded = tokio::task::spawn_blocking(move || {
        if let Some(ring) = &shared_for_ring.ring {
            // Before the batch can be acknowledged (and its records deleted): remember its
            // messages, so a broker redelivery after a kill -9 is still recognised.
            let entries: Vec<(u16, u64)> = batch
                .records
                .iter()
                .filter_map(|record| envelope::parse_header(&record.payload).ok())
                .map(|header| (header.pkid, header.msg_hash))
                .collect();
            let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(err) = ring.record(&entries) {
                warn!(path = %ring.path().display(), error = %err, "Cannot write the redelivery ring; a crash may duplicate readings.");
            }
        }
        let mut builder = BatchBuilder::new(
            &gateway_id,
            spool_epoch,
            batch.seq,
            historical,
            crate::clock::now_ms(),
        );
        for record in &batch.records {
            if let Err(err) = builder.add_record(&record.payload) {
                error!(record = record.id, error = %err, "Unreadable spool record; its readings are lost.");
            }
        }
        builder.encode(level)
    })
    .await
    .map_err(ForwarderError::Thread)?
    .map_err(|source| {
        // zstd fails only on allocation failure or a bad level (validated): fatal.
        ForwarderError::Spool(SpoolError::Io {
            op: "compressing batch",
            path: std::path::PathBuf::from(format!("seq {seq}")),
            source,
        })
    })?;
    if encoded.n_corrupt_records > 0 {
        let metrics = shared.metrics.inner();
        metrics
            .records_dropped
            .fetch_add(encoded.n_corrupt_records, Ordering::Relaxed);
        metrics.add_dropped(DropReason::RecordCorrupt, encoded.n_corrupt_records);
    }
    Ok(encoded)
}

/// Encodes, sends until acknowledged (or dead-lettered), then acks the spool.
#[instrument(skip_all, fields(seq = batch.seq, historical))]
async fn send_cut(
    shared: &Arc<Shared>,
    batch: CutBatch,
    historical: bool,
    hard_stop: &CancellationToken,
) -> Result<Sent, ForwarderError> {
    let seq = batch.seq;
    let metrics = shared.metrics.inner();
    let mut n_record_bytes = record_bytes(&batch);
    let mut encoded = encode_cut(shared, batch, historical).await?;
    // Timeouts of this batch so far: each doubles its next timeout.
    let mut n_timeouts = 0u32;
    // Eviction under `drop_oldest` may trim the batch at any time; the spool counts how often.
    let mut trims_seen = 0;
    let mut attempt = 0u32;
    // The cloud's contiguous seq from the ack, once acknowledged.
    let mut cloud_contiguous = None;
    // A permanent rejection whose dead letter is still to be written (not sent again).
    let mut held: Option<ForwardError> = None;
    let mut dead_letter_attempt = 0u32;
    let outcome = loop {
        let check = blocking(shared, move |spool| spool.begin_send(seq, trims_seen)).await?;
        match check {
            SendCheck::Unchanged => {}
            SendCheck::Changed { batch, trims } => {
                // Send what is left: the evicted readings are counted as dropped. (A split
                // also lands here.) The cloud has not judged this body yet.
                trims_seen = trims;
                n_record_bytes = record_bytes(&batch);
                held = None;
                encoded = encode_cut(shared, batch, historical).await?;
            }
            SendCheck::Gone => {
                debug!("Batch evicted by drop_oldest while waiting to be sent.");
                break Sent::Evicted;
            }
        }
        let timeout = shared.uplink().timeout_for(encoded.body.len(), n_timeouts);
        let started = Instant::now();
        let from_held = held.is_some();
        let res = match held.take() {
            Some(err) => Err(err),
            None => tokio::select! {
                biased;
                _ = hard_stop.cancelled() => {
                    end_send(shared, seq).await?;
                    return Ok(Sent::Stopped);
                }
                res = post(shared, &encoded, timeout) => res,
            },
        };
        let elapsed = started.elapsed();
        if res.as_ref().is_err_and(ForwardError::is_retriable) {
            // Records evicted during the request were not delivered after all.
            end_send(shared, seq).await?;
        }
        match res {
            Ok(ack) => {
                shared.update_uplink(|uplink| {
                    uplink.on_delivered(n_record_bytes, encoded.body.len(), elapsed);
                });
                cloud_contiguous = Some(ack.contiguous_seq);
                break Sent::Acked;
            }
            Err(err) if err.is_retriable() => {
                metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    err,
                    ForwardError::BadAck { .. } | ForwardError::WrongEpoch { .. }
                ) {
                    metrics.acks_refused.fetch_add(1, Ordering::Relaxed);
                }
                if err.is_timeout() {
                    metrics.send_timeouts.fetch_add(1, Ordering::Relaxed);
                    n_timeouts = n_timeouts.saturating_add(1);
                    shared.update_uplink(Uplink::on_timeout);
                }
                shared.outage.store(true, Ordering::Relaxed);
                let wait = retry_wait(&shared.cfg, &err, attempt, &mut rand::thread_rng());
                if matches!(
                    err,
                    ForwardError::Status {
                        status: 401 | 403 | 404,
                        ..
                    }
                ) {
                    error!(error = %err, "The cloud refuses this gateway's requests; check forward.url and the token.");
                } else if matches!(err, ForwardError::WrongEpoch { .. }) {
                    error!(error = %err, attempt, ?wait, "Ack not accepted; retrying.");
                } else {
                    warn!(error = %err, attempt, ?wait, ?timeout, "Batch not delivered; retrying.");
                }
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    biased;
                    _ = hard_stop.cancelled() => return Ok(Sent::Stopped),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(err) => {
                if !from_held && matches!(err, ForwardError::Status { status: 413, .. }) {
                    // Too large for the cloud: send it in halves, down to single records.
                    end_send(shared, seq).await?;
                    match blocking(shared, move |spool| spool.split(seq)).await? {
                        SplitOutcome::Split(older) => {
                            metrics.batches_split.fetch_add(1, Ordering::Relaxed);
                            info!(
                                older_seq = older.seq,
                                older_records = older.records.len(),
                                "The cloud refused the batch as too large (413); sending it in halves."
                            );
                            if send_cut_boxed(shared, older, historical, hard_stop).await?
                                == Sent::Stopped
                            {
                                return Ok(Sent::Stopped);
                            }
                            // `begin_send` returns the rest of this batch.
                            continue;
                        }
                        SplitOutcome::Single => {
                            held = Some(err);
                            continue;
                        }
                        SplitOutcome::Gone => break Sent::Evicted,
                    }
                }
                match write_dead_letter(shared, &encoded, &err).await? {
                    Ok(()) => {
                        error!(error = %err, readings = encoded.n_readings, path = %shared.dead_letters.path().display(), "Cloud rejected the batch permanently; moved it to the dead-letter directory.");
                        metrics.batches_dead_letter.fetch_add(1, Ordering::Relaxed);
                        metrics.add_dropped(DropReason::DeadLetter, encoded.n_readings);
                        break Sent::DeadLettered;
                    }
                    Err(write_err) => {
                        // Nothing is freed that was not made durable elsewhere: the batch stays
                        // pending and the write is retried.
                        metrics
                            .dead_letter_write_failures
                            .fetch_add(1, Ordering::Relaxed);
                        end_send(shared, seq).await?;
                        let wait = backoff(
                            shared.cfg.retry_initial,
                            shared.cfg.retry_max,
                            dead_letter_attempt,
                            &mut rand::thread_rng(),
                        );
                        error!(error = %err, write_error = %error_chain(&write_err), attempt = dead_letter_attempt, ?wait, "Cloud rejected the batch permanently, and it cannot be written to the dead-letter directory; it stays in the spool, retrying.");
                        dead_letter_attempt = dead_letter_attempt.saturating_add(1);
                        held = Some(err);
                        tokio::select! {
                            biased;
                            _ = hard_stop.cancelled() => return Ok(Sent::Stopped),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    };
    // An evicted batch was never delivered: the outage (if any) goes on.
    let was_outage = outcome != Sent::Evicted && shared.outage.swap(false, Ordering::Relaxed);
    let shared_for_ack = Arc::clone(shared);
    let (report, next_seq) = blocking(shared, move |spool| {
        let report = spool.ack(seq)?;
        let stats = spool.stats();
        if was_outage {
            // Everything that piled up during the outage is backlog; live takes newer data only.
            let uncut = stats.uncut_records.saturating_sub(stats.unsynced_records);
            shared_for_ack.backlog.fetch_max(uncut, Ordering::Relaxed);
        }
        Ok((report, stats.next_seq))
    })
    .await?;
    if let Some(contiguous) = cloud_contiguous.filter(|&c| c >= next_seq) {
        // Read after the ack: every seq this epoch handed out is below `next_seq`.
        metrics
            .acks_contiguous_ahead
            .fetch_add(1, Ordering::Relaxed);
        warn!(
            contiguous_seq = contiguous,
            highest_seq_sent = next_seq - 1,
            spool_epoch = shared.spool_epoch,
            "The cloud holds batches of this gateway id and spool epoch that this spool never \
             sent; is another gateway running with this gateway id and a copy of this spool?"
        );
    }
    if was_outage {
        let backlog = shared.backlog.load(Ordering::Relaxed);
        metrics.backlog_records.store(backlog, Ordering::Relaxed);
        info!(
            backlog_records = backlog,
            "Uplink recovered; draining the backlog in the backfill lane."
        );
        shared.backlog_changed.notify_one();
    }
    if !report.known {
        debug!("Acked a batch the spool no longer had pending.");
    }
    if outcome == Sent::Acked {
        metrics.batches_acked.fetch_add(1, Ordering::Relaxed);
        metrics
            .last_forward_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
        metrics
            .readings_forwarded
            .fetch_add(encoded.n_readings, Ordering::Relaxed);
        metrics
            .wire_bytes
            .fetch_add(encoded.body.len() as u64, Ordering::Relaxed);
        if encoded.historical {
            metrics.batches_historical.fetch_add(1, Ordering::Relaxed);
        }
    }
    shared.space_freed.notify_one();
    Ok(outcome)
}

/// [`send_cut`] for the parts of a split batch (a boxed future: the call is recursive).
fn send_cut_boxed<'a>(
    shared: &'a Arc<Shared>,
    batch: CutBatch,
    historical: bool,
    hard_stop: &'a CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Sent, ForwarderError>> + Send + 'a>>
{
    Box::pin(send_cut(shared, batch, historical, hard_stop))
}

/// Ends an unsuccessful send of `seq`, counting what eviction took from it meanwhile.
async fn end_send(shared: &Arc<Shared>, seq: u64) -> Result<(), ForwarderError> {
    let dropped = blocking(shared, move |spool| Ok(spool.end_send(seq))).await?;
    if dropped.records > 0 {
        let metrics = shared.metrics.inner();
        metrics.add_dropped(DropReason::SpoolFull, dropped.readings);
        metrics
            .records_dropped
            .fetch_add(dropped.records, Ordering::Relaxed);
    }
    Ok(())
}

/// POSTs the batch within `timeout`; `Ok` only with a `BatchAck` of this batch (its seq and spool
/// epoch).
async fn post(
    shared: &Shared,
    batch: &EncodedBatch,
    timeout: Duration,
) -> Result<BatchAck, ForwardError> {
    let outbound = Outbound {
        gateway_id: &shared.gateway_id,
        seq: batch.seq,
        spool_epoch: batch.spool_epoch,
        body: &batch.body,
    };
    post_batch(
        &shared.http,
        &shared.cfg.batches_url,
        shared.live.token().as_ref(),
        outbound,
        timeout,
    )
    .await
}

/// One batch as it travels: whose it is and its compressed protobuf body.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    /// The gateway id (the `Idempotency-Key`'s first half).
    pub gateway_id: &'a str,
    /// The batch seq.
    pub seq: u64,
    /// The spool epoch the seq belongs to.
    pub spool_epoch: u64,
    /// The zstd-compressed `Batch`.
    pub body: &'a [u8],
}

/// POSTs `batch` to `url` with the forwarder's headers (and `token`), within `timeout`; `Ok` only
/// with a `BatchAck` echoing the seq and epoch.
///
/// # Errors
/// [`ForwardError`]; see [`ForwardError::is_retriable`].
pub async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    token: Option<&Secret>,
    batch: Outbound<'_>,
    timeout: Duration,
) -> Result<BatchAck, ForwardError> {
    let Outbound {
        gateway_id,
        seq,
        spool_epoch,
        body,
    } = batch;
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header(CONTENT_ENCODING, "zstd")
        .header("Idempotency-Key", format!("{gateway_id}/{seq}"))
        .body(body.to_vec());
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let response = request
        .send()
        .await
        .map_err(|source| ForwardError::Transport { seq, source })?;
    let status = response.status();
    if matches!(status.as_u16(), 429 | 503) {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| uplink::retry_after(value, SystemTime::now()));
        if let Some(retry_after) = retry_after {
            return Err(ForwardError::Throttled {
                seq,
                status: status.as_u16(),
                retry_after,
            });
        }
    }
    if !status.is_success() {
        return Err(ForwardError::Status {
            seq,
            status: status.as_u16(),
            body: error_text(response).await,
        });
    }
    let body = response
        .bytes()
        .await
        .map_err(|source| ForwardError::Transport { seq, source })?;
    let ack = BatchAck::decode(body.as_ref()).map_err(|err| ForwardError::BadAck {
        seq,
        detail: err.to_string(),
    })?;
    if ack.seq != seq {
        return Err(ForwardError::BadAck {
            seq,
            detail: format!("it echoes seq {}", ack.seq),
        });
    }
    if ack.spool_epoch != spool_epoch {
        return Err(ForwardError::WrongEpoch {
            seq,
            expected: spool_epoch,
            got: ack.spool_epoch,
        });
    }
    Ok(ack)
}

/// The start of an error response's body (at most [`MAX_ERROR_BYTES`], lossy UTF-8).
async fn error_text(mut response: reqwest::Response) -> String {
    let mut text = Vec::new();
    while text.len() < MAX_ERROR_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => text.extend_from_slice(&chunk),
            _ => break,
        }
    }
    text.truncate(MAX_ERROR_BYTES);
    String::from_utf8_lossy(&text).into_owned()
}

/// Writes a permanently rejected batch to the dead-letter directory, durably (see
/// [`crate::dead_letter::DeadLetterDir::write`]). The outer error is fatal (a panicked thread);
/// the inner one is a failed write, to be retried.
async fn write_dead_letter(
    shared: &Arc<Shared>,
    batch: &EncodedBatch,
    err: &ForwardError,
) -> Result<Result<(), DeadLetterError>, ForwarderError> {
    let (http_status, error) = match err {
        ForwardError::Status { status, body, .. } => (*status, body.clone()),
        other => (0, other.to_string()),
    };
    let meta = DeadLetterMeta {
        format: META_FORMAT,
        gateway_id: shared.gateway_id.clone(),
        seq: batch.seq,
        spool_epoch: batch.spool_epoch,
        http_status,
        error: truncate_error(&error, MAX_ERROR_BYTES),
        dead_lettered_ms: crate::clock::now_ms(),
        readings: batch.n_readings,
        historical: batch.historical,
    };
    Arc::clone(&shared.dead_letters)
        .write(meta, batch.body.clone())
        .await
        .map_err(ForwarderError::Thread)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_jitter() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 0..30 {
            let ceiling = (initial * 2u32.pow(attempt.min(20))).min(max);
            let wait = backoff(initial, max, attempt, &mut rng);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn a_retry_after_replaces_the_backoff_within_the_retry_limits() {
        let cfg = crate::EdgeConfig::from_toml_str("gateway_id = \"gw\"\n", "edge.toml")
            .unwrap()
            .forward;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let throttled = |secs| ForwardError::Throttled {
            seq: 1,
            status: 429,
            retry_after: Duration::from_secs(secs),
        };
        assert!(throttled(5).is_retriable());
        assert_eq!(
            retry_wait(&cfg, &throttled(7), 0, &mut rng),
            Duration::from_secs(7)
        );
        // Capped by retry_max (30 s), and never a zero wait.
        assert_eq!(
            retry_wait(&cfg, &throttled(3600), 0, &mut rng),
            cfg.retry_max
        );
        assert_eq!(
            retry_wait(&cfg, &throttled(0), 0, &mut rng),
            cfg.retry_initial
        );
        let status = ForwardError::Status {
            seq: 1,
            status: 503,
            body: String::new(),
        };
        assert!(retry_wait(&cfg, &status, 0, &mut rng) <= cfg.retry_initial);
    }

    #[test]
    fn server_errors_retry_and_client_errors_are_permanent() {
        let status = |status| ForwardError::Status {
            seq: 1,
            status,
            body: String::new(),
        };
        for retriable in [500, 502, 503, 504, 408, 429, 401, 403, 404] {
            assert!(status(retriable).is_retriable(), "{retriable}");
        }
        for permanent in [400, 409, 413, 415, 422] {
            assert!(!status(permanent).is_retriable(), "{permanent}");
        }
        assert!(ForwardError::BadAck {
            seq: 1,
            detail: String::new()
        }
        .is_retriable());
        assert!(ForwardError::WrongEpoch {
            seq: 1,
            expected: 2,
            got: 0
        }
        .is_retriable());
    }
}
