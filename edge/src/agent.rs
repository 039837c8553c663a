//! The agent: opens the spool, wires the tasks, and runs the shutdown sequence.
//!
//! ```text
//! mqtt task ──mpsc (mqtt.channel_capacity)──▶ writer ──watch(commits)──▶ forwarder (live + backfill)
//!     ▲                                         │   ▲                        │
//!     └────────── try_ack (after fsync) ────────┘   └──── Notify(space) ─────┘
//! http (/metrics, /healthz) reads the shared atomics.
//! ```
//!
//! Every task is spawned on a [`TaskTracker`] inside [`Agent::run`] and awaited before it returns:
//! the library leaves nothing running behind. Shutdown (the caller cancels the token; the binary
//! does so on SIGTERM/SIGINT), all within `shutdown.grace`:
//! 1. stop taking MQTT messages (unacknowledged ones stay with the broker);
//! 2. the writer drains the channel into the spool, fsyncs, acknowledges, sends DISCONNECT;
//! 3. the live lane forwards what is left; the backfill lane stops (the backlog stays on disk);
//! 4. at the deadline anything still running is stopped: a batch in flight stays pending and is
//!    re-sent with the same seq next start.
//!
//! A full filesystem (`ENOSPC`/`EDQUOT`, not the spool's own cap) never stops the agent (under
//! systemd that would restart it forever with nothing freeing space):
//! - at start, when the spool cannot be opened for lack of space, [`Agent::start`] succeeds
//!   anyway and [`Agent::run`] serves `/metrics` and `/healthz`, stays away from the broker (which
//!   keeps the session's messages) and retries opening with backoff (1 s to 30 s);
//! - while running, the writer degrades (see [`crate::intake`]): no PUBACK, forwarding goes on.
//!
//! Other spool write errors still stop the agent (phase 1: writer error → hard stop): after an
//! `EIO` memory and disk may disagree, and only reopening (recovery) makes them agree again. A
//! ledger write (cut or ack) refused for lack of space stops the forwarder and so the agent too;
//! the restart then starts degraded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::EdgeConfig;
use crate::dup_window::DupWindow;
use crate::forwarder::{Forwarder, ForwarderError, ForwarderLinks};
use crate::intake::{self, AckGate, IntakeError, MqttTask, RecentMessages, Writer, WriterCore};
use crate::metrics::{DropReason, MetricsHandle, MetricsSnapshot, WriteBlockReason};
use crate::quarantine::{Quarantine, QuarantineError};
use crate::redelivery::RedeliveryRing;
use crate::reload::LiveSettings;
use crate::spool::{FileLayer, RecoveryReport, Spool, SpoolError, StdFileLayer};

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The spool could not be opened (IO, permissions).
    #[error("opening the spool in {dir}")]
    SpoolOpen {
        /// The spool directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: SpoolError,
    },
    /// The metrics endpoint could not bind.
    #[error("binding the metrics endpoint on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The quarantine file could not be opened.
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    /// Intake stopped on a spool error.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    /// The forwarder stopped on an error.
    #[error(transparent)]
    Forwarder(#[from] ForwarderError),
    /// A task panicked.
    #[error("agent task {task} stopped unexpectedly")]
    Task {
        /// Which task.
        task: &'static str,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The metrics at exit.
    pub metrics: MetricsSnapshot,
    /// What opening the spool found.
    pub recovery: RecoveryReport,
    /// True when every task finished within the grace period (nothing was cut short).
    pub finished_in_grace: bool,
}

/// A started agent: spool open, endpoint bound, ready to [`Agent::run`].
pub struct Agent {
    config: Arc<EdgeConfig>,
    /// `None` when the filesystem was full at start: `run` opens the spool when space returns.
    opened: Option<OpenedSpool>,
    fs: Arc<dyn FileLayer>,
    /// Messages of batches sent before (from the redelivery ring), for the redelivery filter.
    sent: Vec<(u16, u64)>,
    live: Arc<LiveSettings>,
    ring: Option<RedeliveryRing>,
    quarantine: Option<Quarantine>,
    metrics: MetricsHandle,
    http_listener: Option<TcpListener>,
    started_ms: i64,
}

impl Agent {
    /// Opens (and recovers) the spool, opens the quarantine file and binds `/metrics`. When the
    /// spool's filesystem is full the agent starts degraded instead (see the module docs).
    ///
    /// # Errors
    /// [`AgentError`] naming the directory, file or address that failed.
    pub async fn start(config: EdgeConfig) -> Result<Self, AgentError> {
        Self::start_on(config, Arc::new(StdFileLayer)).await
    }

    /// [`Agent::start`] with the spool on the file layer `fs`: for tests that inject file-system
    /// faults (a full disk); the product always runs on [`StdFileLayer`].
    ///
    /// # Errors
    /// As [`Agent::start`].
    #[doc(hidden)]
    pub async fn start_on(config: EdgeConfig, fs: Arc<dyn FileLayer>) -> Result<Self, AgentError> {
        let config = Arc::new(config);
        let dir = config.spool.dir.clone();
        let ring_path = PathBuf::from(format!("{}.redelivery", dir.display()));
        if let Some(parent) = ring_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The spool creates its own directory; the ring lives beside it.
            let _ = std::fs::create_dir_all(parent);
        }
        let (ring, sent) = match RedeliveryRing::open(&ring_path) {
            Ok((ring, sent)) => (Some(ring), sent),
            Err(err) => {
                warn!(path = %ring_path.display(), error = %err, "Cannot open the redelivery ring; a crash may duplicate readings.");
                (None, Vec::new())
            }
        };
        let metrics = MetricsHandle::default();
        let opened = match open_spool(&config, &fs, &sent, &metrics).await {
            Ok(opened) => Some(opened),
            Err(AgentError::SpoolOpen { dir, source }) if source.is_no_space() => {
                // Opening must write (a new segment, a ledger snapshot). Exiting would crash-loop
                // under systemd with nothing freeing space: start degraded and retry in `run`.
                error!(dir = %dir.display(), error = %source, "Spool filesystem full; starting degraded, refusing MQTT messages until the spool can be opened.");
                let m = metrics.inner();
                m.spool_write_errors.fetch_add(1, Ordering::Relaxed);
                m.set_write_blocked(Some(WriteBlockReason::NoSpace));
                None
            }
            Err(err) => return Err(err),
        };
        crate::spool_watch::refresh_free_bytes(&dir, &metrics);

        let quarantine = match &config.validation.quarantine_file {
            Some(path) => Some(Quarantine::open(
                path,
                config.validation.quarantine_max_bytes,
            )?),
            None => None,
        };
        let http_listener = match config.http_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| AgentError::Bind { addr, source })?,
            ),
            None => None,
        };
        let live = LiveSettings::new(&config);
        Ok(Self {
            config,
            opened,
            fs,
            sent,
            live,
            ring,
            quarantine,
            metrics,
            http_listener,
            started_ms: crate::clock::now_ms(),
        })
    }

    /// A handle on the live metrics (cheap to clone, usable while the agent runs).
    pub fn metrics(&self) -> MetricsHandle {
        self.metrics.clone()
    }

    /// The bound address of `/metrics` and `/healthz`, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The reloadable settings: [`LiveSettings::apply`] takes over a new configuration's token
    /// and topic mappings while the agent runs (what SIGHUP does).
    pub fn live_settings(&self) -> Arc<LiveSettings> {
        Arc::clone(&self.live)
    }

    /// What opening the spool found; `None` when the agent started degraded on a full
    /// filesystem (the spool is opened in [`Agent::run`] once space returns).
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.opened.as_ref().map(|opened| &opened.recovery)
    }

    /// Runs until `shutdown` is cancelled (or a task fails), then shuts down in order.
    ///
    /// # Errors
    /// The first task error ([`AgentError`]); the shutdown sequence still runs.
    pub async fn run(self, shutdown: CancellationToken) -> Result<RunSummary, AgentError> {
        let Agent {
            config,
            opened,
            fs,
            sent,
            live,
            ring,
            quarantine,
            metrics,
            http_listener,
            started_ms,
        } = self;
        let tracker = TaskTracker::new();
        let stop_intake = CancellationToken::new();
        let drain = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let http_stop = CancellationToken::new();
        // Served first: `/healthz` must tell a degraded start (full filesystem) too.
        let http_handle = http_listener.map(|listener| {
            tracker.spawn(crate::http::serve(
                listener,
                metrics.clone(),
                config.health.clone(),
                started_ms,
                http_stop.clone(),
            ))
        });
        let opened = match opened {
            Some(opened) => Some(opened),
            None => wait_for_spool(&config, &fs, &sent, &metrics, &shutdown).await,
        };
        let Some(OpenedSpool {
            spool,
            recovery,
            recent,
            window,
        }) = opened
        else {
            // Asked to stop before the spool could be opened: nothing was taken from the broker.
            tracker.close();
            http_stop.cancel();
            stop_http(http_handle).await;
            tracker.wait().await;
            info!("Agent stopped (the spool was never opened).");
            return Ok(RunSummary {
                metrics: metrics.snapshot(),
                recovery: RecoveryReport::default(),
                finished_in_grace: true,
            });
        };
        let spool = Arc::new(Mutex::new(spool));
        let window = Arc::new(window);

        let (client, eventloop) = intake::mqtt_connection(&config);
        let (tx, rx) = mpsc::channel(config.mqtt.channel_capacity);
        let (committed_tx, committed_rx) = watch::channel(0u64);
        let space_freed = Arc::new(Notify::new());
        let gate = Arc::new(AckGate::default());
        metrics.attach_gate(Arc::clone(&gate));

        let forwarder = Forwarder::new(
            Arc::clone(&spool),
            config.forward.clone(),
            config.gateway_id.clone(),
            metrics.clone(),
            ForwarderLinks {
                committed: committed_rx,
                space_freed: Arc::clone(&space_freed),
                gate: Arc::clone(&gate),
                ring,
                live: Arc::clone(&live),
            },
        )?;
        let mqtt_task = MqttTask {
            eventloop,
            client: client.clone(),
            filters: live.filters(),
            tx,
            metrics: metrics.clone(),
            reconnect_delay: config.mqtt.reconnect_delay,
            gate: Arc::clone(&gate),
            window: Arc::clone(&window),
        };
        let writer = Writer {
            core: WriterCore::new(
                Arc::clone(&spool),
                Arc::clone(&config),
                quarantine,
                (recent, window),
                Arc::clone(&live),
                metrics.clone(),
                Arc::clone(&gate),
            ),
            rx,
            client,
            committed: committed_tx,
            space_freed,
            commit_interval: config.spool.commit_interval,
            commit_max_messages: config.spool.commit_max_messages,
            gate,
        };
        info!(
            gateway_id = %config.gateway_id,
            broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
            cloud = %config.forward.batches_url,
            "Agent running."
        );

        let mqtt_stop = (stop_intake.clone(), hard_stop.clone());
        let mut mqtt_handle = tracker.spawn(async move {
            mqtt_task.run(mqtt_stop.0, mqtt_stop.1).await;
            Ok::<(), std::convert::Infallible>(())
        });
        let mut writer_handle = Some(tracker.spawn(writer.run(hard_stop.clone())));
        let mut forwarder_handle =
            Some(tracker.spawn(forwarder.run(drain.clone(), hard_stop.clone())));
        let watch_handle = tracker.spawn(crate::spool_watch::run(
            Arc::clone(&spool),
            metrics.clone(),
            http_stop.clone(),
        ));
        tracker.close();

        let mut first_error: Option<AgentError> = None;
        // Phase 1: run until asked to stop or until a task ends (which only happens on error).
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => info!("Shutting down: stopping intake."),
            res = writer_handle.as_mut().expect("writer handle is set") => {
                writer_handle = None;
                record(&mut first_error, flatten(res, "writer"));
                // The spool failed: acknowledge nothing more, stop at once.
                hard_stop.cancel();
            }
            res = forwarder_handle.as_mut().expect("forwarder handle is set") => {
                forwarder_handle = None;
                record(&mut first_error, flatten(res, "forwarder"));
            }
        }
        let deadline = Instant::now() + config.shutdown_grace;
        let mut finished_in_grace = true;
        stop_intake.cancel();

        // Phase 2: the writer drains, fsyncs, acks and disconnects; the mqtt task flushes.
        if let Some(handle) = writer_handle.as_mut() {
            finished_in_grace &=
                await_until(handle, deadline, "writer", &hard_stop, &mut first_error).await;
        }
        finished_in_grace &= await_until(
            &mut mqtt_handle,
            deadline,
            "mqtt",
            &hard_stop,
            &mut first_error,
        )
        .await;

        // Phase 3: forward what is left within the grace period.
        drain.cancel();
        if let Some(handle) = forwarder_handle.as_mut() {
            finished_in_grace &=
                await_until(handle, deadline, "forwarder", &hard_stop, &mut first_error).await;
        }
        hard_stop.cancel();
        http_stop.cancel();
        stop_http(http_handle).await;
        if let Err(err) = watch_handle.await {
            warn!(error = %err, "Spool watch task failed.");
        }
        tracker.wait().await;
        {
            let spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
            intake::publish_spool_gauges(&spool, &metrics);
        }
        let summary = RunSummary {
            metrics: metrics.snapshot(),
            recovery,
            finished_in_grace,
        };
        info!(
            spooled = summary.metrics.readings_spooled,
            forwarded = summary.metrics.readings_forwarded,
            finished_in_grace,
            "Agent stopped."
        );
        match first_error {
            Some(err) => {
                error!(error = %err, "Agent stopped on an error.");
                Err(err)
            }
            None => Ok(summary),
        }
    }
}

/// A spool opened and recovered, with the redelivery filter rebuilt from its tail.
struct OpenedSpool {
    spool: Spool,
    recovery: RecoveryReport,
    recent: RecentMessages,
    window: DupWindow,
}

/// Opens (and recovers) the spool on `fs`, rebuilds the redelivery filter and publishes the
/// spool gauges.
async fn open_spool(
    config: &EdgeConfig,
    fs: &Arc<dyn FileLayer>,
    sent: &[(u16, u64)],
    metrics: &MetricsHandle,
) -> Result<OpenedSpool, AgentError> {
    let dir = config.spool.dir.clone();
    let spool_cfg = config.spool.spool;
    let open_dir = dir.clone();
    let fs = Arc::clone(fs);
    let sent = sent.to_vec();
    let opened = tokio::task::spawn_blocking(move || {
        let (spool, recovery) = Spool::open_with(fs, &open_dir, spool_cfg)?;
        let filters = RecentMessages::rebuild(&spool, &sent)?;
        Ok::<_, SpoolError>((spool, recovery, filters))
    })
    .await
    .map_err(|source| AgentError::Task {
        task: "spool open",
        source,
    })?;
    let (spool, recovery, (recent, window)) = opened.map_err(|source| AgentError::SpoolOpen {
        dir: dir.clone(),
        source,
    })?;
    if recovery.is_clean() {
        info!(dir = %dir.display(), %recovery, "Spool opened.");
    } else {
        warn!(dir = %dir.display(), %recovery, "Spool opened after repairing damage.");
    }
    if recovery.records_lost > 0 {
        // The spool cannot know how many readings a lost record held: count records.
        metrics
            .inner()
            .add_dropped(DropReason::SpoolCorrupt, recovery.records_lost);
        metrics
            .inner()
            .records_dropped
            .fetch_add(recovery.records_lost, Ordering::Relaxed);
    }
    intake::publish_spool_gauges(&spool, metrics);
    Ok(OpenedSpool {
        spool,
        recovery,
        recent,
        window,
    })
}

/// Retries opening the spool after a start on a full filesystem, with backoff (1 s doubling up
/// to 30 s), until it opens or `shutdown` is cancelled (`None`). Nothing is taken from the
/// broker meanwhile: the MQTT connection starts only once the spool is open. Errors other than
/// a full filesystem are logged and retried too: the agent already runs, and only a human can
/// fix them, which `/healthz` makes visible.
async fn wait_for_spool(
    config: &EdgeConfig,
    fs: &Arc<dyn FileLayer>,
    sent: &[(u16, u64)],
    metrics: &MetricsHandle,
    shutdown: &CancellationToken,
) -> Option<OpenedSpool> {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        crate::spool_watch::refresh_free_bytes(&config.spool.dir, metrics);
        match open_spool(config, fs, sent, metrics).await {
            Ok(opened) => {
                metrics.inner().set_write_blocked(None);
                info!("Spool filesystem has space again; spool opened.");
                return Some(opened);
            }
            Err(err) => {
                metrics
                    .inner()
                    .spool_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, retry_in = ?delay, "Spool still cannot be opened.");
            }
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

async fn stop_http(handle: Option<JoinHandle<std::io::Result<()>>>) {
    if let Some(handle) = handle {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(error = %err, "Metrics endpoint stopped with an error."),
            Err(err) => warn!(error = %err, "Metrics endpoint task failed."),
        }
    }
}

/// Awaits a task until `deadline`; past it, cancels `hard_stop` and awaits the (now quick) end.
/// Returns false when the deadline cut the task short.
async fn await_until<E: Into<AgentError>>(
    handle: &mut JoinHandle<Result<(), E>>,
    deadline: Instant,
    task: &'static str,
    hard_stop: &CancellationToken,
    first_error: &mut Option<AgentError>,
) -> bool {
    match tokio::time::timeout_at(deadline, &mut *handle).await {
        Ok(res) => {
            record(first_error, flatten(res, task));
            true
        }
        Err(_) => {
            warn!(task, "Shutdown grace period elapsed; stopping the task.");
            hard_stop.cancel();
            record(first_error, flatten(handle.await, task));
            false
        }
    }
}

fn flatten<E: Into<AgentError>>(
    res: Result<Result<(), E>, tokio::task::JoinError>,
    task: &'static str,
) -> Result<(), AgentError> {
    match res {
        Ok(inner) => inner.map_err(Into::into),
        Err(source) => Err(AgentError::Task { task, source }),
    }
}

fn record(first_error: &mut Option<AgentError>, res: Result<(), AgentError>) {
    if let Err(err) = res {
        if first_error.is_none() {
            *first_error = Some(err);
        } else {
            error!(error = %err, "Further agent error during shutdown.");
        }
    }
}

impl From<std::convert::Infallible> for AgentError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
