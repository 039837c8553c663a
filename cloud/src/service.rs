//! `fieldpulse cloud` as one process: ingest API, ingest log, scoring
//! processor, outbox sender and feedback poller, with `/metrics` and
//! `/healthz`.
//!
//! Start-up order: state directory → ingest log (recovery) →
//! model artifact (validated: a schema mismatch refuses to start; with
//! `scoring.registry` the promoted version, or the last served one, see
//! [`crate::reload`]) → Salesforce (asset directory and Work Order history;
//! retried in the background when the org is unreachable) → processor
//! (resumes from its checkpoints) → archive (repairs an interrupted flush,
//! then its own thread and log consumer) → sender → poller → registry
//! watcher → HTTP. Shutdown (SIGTERM) runs it backwards: stop accepting, let
//! the shards finish (held rows scored) and checkpoint, write the shadow
//! report, then let the sender drain, so the actions the shards' drain
//! produced go out too, while the archive reads the log to its end and
//! flushes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fieldpulse_models::anomaly::{
    DetectorParams, DetectorValidParams, FeatureParams, ParamGuard, Seasonality,
};
use fieldpulse_models::failure::FailureModel;
use fieldpulse_salesforce::{ClientConfig, SalesforceClient};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::archive::{self, Archiver, ARCHIVE_CONSUMER};
use crate::config::CloudConfig;
use crate::directory::Directory;
use crate::feedback;
use crate::ingest::{Ingest, IngestConfig};
use crate::log::{IngestLog, LogConfig};
use crate::outbox::{OutboxSender, SenderConfig, SenderStats};
use crate::processor::{Processor, ProcessorSettings, SensorLayout, ServedModel};
use crate::reload::{load_at_start, ReloadMetrics, ShadowReporter, WatchState, Watcher};
use crate::store::Store;

/// Name of the database file in the state directory.
pub const DB_FILE: &str = "cloud.sqlite";
/// Name of the ingest log directory in the state directory.
pub const LOG_DIR: &str = "log";
/// How often the asset directory and Work Order history are re-read.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(15 * 60);
/// Consumer name of the scoring processor in the ingest log.
pub const SCORING_CONSUMER: &str = "scoring";

/// Why the cloud could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// A file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, already phrased.
    #[error("{0}")]
    Start(String),
}

fn start_err(context: &str) -> impl Fn(&dyn std::fmt::Display) -> CloudError + '_ {
    move |e| CloudError::Start(format!("{context}: {e}"))
}

/// Loads and validates the model artifact named in the config.
///
/// # Errors
/// The artifact cannot be read or its schema does not match this build.
pub fn load_model(dir: &Path) -> Result<Arc<FailureModel>, CloudError> {
    let model = FailureModel::load(dir)
        .map_err(|e| CloudError::Start(format!("model {}: {e}", dir.display())))?;
    model
        .validate()
        .map_err(|e| CloudError::Start(format!("model {} refused: {e}", dir.display())))?;
    Ok(Arc::new(model))
}

/// The anomaly detector's parameters: the defaults with the configured
/// seasonal profile (validated with the config, so the fallback to the
/// defaults is never taken).
fn detector_params(s: &crate::config::RawScoring) -> DetectorValidParams {
    let seasonality = Seasonality::parse(&s.seasonal).unwrap_or_default();
    DetectorParams::default()
        .features(FeatureParams::default().seasonality(seasonality))
        .and_then(ParamGuard::check)
        .unwrap_or_default()
}

/// Builds the processor settings from the config and the model.
pub fn settings(cfg: &CloudConfig, model: Option<&FailureModel>) -> ProcessorSettings {
    let s = &cfg.raw.scoring;
    let sensors = if s.sensors.is_empty() {
        model.map(|m| m.schema.sensors.clone()).unwrap_or_default()
    } else {
        s.sensors.clone()
    };
    ProcessorSettings {
        shards: s.shards,
        layout: SensorLayout::new(sensors),
        anomaly: detector_params(s),
        anomaly_threshold: s.anomaly_threshold,
        anomaly_episodes: s.anomaly_episodes,
        anomaly_probability: s.anomaly_probability,
        failure_every_ms: s.failure_every.as_millis() as i64,
        scan_hold: s.scan_hold,
        checkpoint_every: s.checkpoint_every,
        episodes: cfg.raw.episodes.clone(),
        priority: cfg.raw.priority.clone(),
        rollout: cfg.raw.rollout.clone(),
        campaigns: cfg.raw.campaigns.clone(),
        tap: cfg.score_tap.clone(),
    }
}

/// A running cloud process.
pub struct Cloud {
    /// The bound HTTP address.
    pub addr: std::net::SocketAddr,
    /// The processor (progress, feedback, checkpoints).
    pub processor: Arc<Processor>,
    /// The ingest service.
    pub ingest: Arc<Ingest<IngestLog>>,
    /// The outbox sender.
    pub sender: Arc<OutboxSender>,
    /// The ingest log.
    pub log: IngestLog,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Model reload counters (all zero without `scoring.registry`).
    pub reload_metrics: Arc<ReloadMetrics>,
    /// Writes `shadow_report.json` (with `scoring.registry`).
    reporter: Option<Arc<ShadowReporter>>,
    /// The Parquet archive writer, when `[archive] enabled`.
    pub archive: Option<Arc<Archiver>>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The sender stops last, after the processor's final actions are in the outbox.
    sender_cancel: CancellationToken,
    sender_task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct HttpState {
    ingest: Arc<Ingest<IngestLog>>,
    processor: Arc<Processor>,
    sender: Arc<OutboxSender>,
    archive: Option<Arc<Archiver>>,
    degraded_outbox_depth: u64,
    degraded_log_lag: u64,
    reload_metrics: Arc<ReloadMetrics>,
}

impl Cloud {
    /// Starts everything; `listener` overrides `server.listen` (tests bind port 0).
    ///
    /// # Errors
    /// Any start-up failure, phrased for an operator.
    pub async fn start(
        cfg: CloudConfig,
        listener: Option<TcpListener>,
    ) -> Result<Self, CloudError> {
        let state_dir = cfg.state_dir.clone();
        std::fs::create_dir_all(&state_dir).map_err(|source| CloudError::Io {
            path: state_dir.clone(),
            source,
        })?;
        let (log, recovered) = IngestLog::open(
            &state_dir.join(LOG_DIR),
            LogConfig {
                segment_bytes: cfg.raw.log.segment_bytes,
                retention: cfg.raw.log.retention,
                ..LogConfig::default()
            },
        )
        .map_err(|e| start_err("ingest log")(&e))?;
        let reload_metrics = Arc::new(ReloadMetrics::default());
        let scoring = &cfg.raw.scoring;
        let (model, shadow, startup) = match (&scoring.model, &scoring.registry) {
            (Some(dir), _) => (
                Some(ServedModel::from_artifact(load_model(dir)?)),
                None,
                None,
            ),
            (None, Some(dir)) => {
                let registry = fieldpulse_models::registry::Registry::new(dir);
                let startup = load_at_start(
                    &registry,
                    &state_dir,
                    &scoring.sensors,
                    scoring.shadow,
                    &reload_metrics,
                )
                .map_err(|e| CloudError::Start(format!("{}: {e}", cfg.origin)))?;
                tracing::info!(
                    registry = %dir.display(),
                    version = %startup.champion.served.version,
                    model_version = %startup.champion.served.model.model_version,
                    shadow = ?startup.shadow.as_ref().map(|s| s.served.version.to_string()),
                    "Serving the model registry."
                );
                (
                    Some(startup.champion.served.clone()),
                    startup.shadow.as_ref().map(|s| s.served.clone()),
                    Some(startup),
                )
            }
            (None, None) => (None, None, None),
        };
        let settings = settings(&cfg, model.as_ref().map(|m| &*m.model));
        if settings.layout.is_empty() {
            return Err(CloudError::Start(format!(
                "{}: scoring.sensors: no sensors to score",
                cfg.origin
            )));
        }
        let new_client = || {
            let mut client_cfg = ClientConfig::new(cfg.sf_auth.clone());
            client_cfg.api_version = cfg.raw.salesforce.api_version.clone();
            // The hard stop keeps `budget_reserve` of the daily allocation for others.
            client_cfg.budget_threshold = 1.0 - cfg.raw.salesforce.budget_reserve;
            SalesforceClient::new(client_cfg).map_err(|e| start_err("salesforce client")(&e))
        };
        // One client reads (assets, feedback), one writes (the outbox): their
        // token caches are separate, the org's API budget is seen by both.
        let client = Arc::new(new_client()?);
        let criticality_field = cfg.raw.priority.criticality_field.clone();
        let directory = match tokio::time::timeout(
            Duration::from_secs(30),
            Directory::load(&client, &criticality_field),
        )
        .await
        {
            Ok(Ok(d)) => {
                tracing::info!(
                    assets = d.assets.len(),
                    work_orders = d.history.n_work_orders,
                    "Read assets and Work Order history from Salesforce."
                );
                d
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not read assets from Salesforce; scoring starts without them and retries.");
                Directory::default()
            }
            Err(_) => {
                tracing::warn!("Salesforce did not answer within 30 s; scoring starts without asset data and retries.");
                Directory::default()
            }
        };
        let db = state_dir.join(DB_FILE);
        let consumer = log
            .consumer(SCORING_CONSUMER)
            .map_err(|e| start_err("ingest log consumer")(&e))?;
        let layout = settings.layout.clone();
        let processor = {
            let db = db.clone();
            Arc::new(
                Processor::start(
                    settings,
                    model.clone(),
                    shadow.clone(),
                    directory,
                    move || Store::open(&db),
                    consumer,
                )
                .map_err(|e| start_err("processor")(&e))?,
            )
        };
        // After the processor: a log that was replaced under cloud.sqlite is
        // reported as such first (the archive would refuse it too).
        let archive = match start_archive(&cfg, &log) {
            Ok(archive) => archive,
            Err(e) => {
                let processor = Arc::clone(&processor);
                let _ = tokio::task::spawn_blocking(move || processor.abort()).await;
                return Err(e);
            }
        };
        let sender = Arc::new(
            OutboxSender::open(
                &db,
                new_client()?,
                SenderConfig {
                    // Low-priority updates start waiting well before the hard stop.
                    budget_reserve_fraction: (cfg.raw.salesforce.budget_reserve + 0.1).min(0.95),
                    budget_probe_interval: cfg.raw.salesforce.budget_probe_interval,
                    ..SenderConfig::default()
                },
            )
            .map_err(|e| start_err("outbox")(&e))?,
        );
        let ingest = Ingest::new(
            IngestConfig {
                tokens: cfg.gateways.clone(),
                insecure_dev_no_auth: cfg.raw.server.insecure_dev_no_auth,
                ..IngestConfig::default()
            },
            log.clone(),
            &recovered,
        )
        .map_err(|e| start_err("ingest")(&e))?;
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| start_err(&format!("binding {}", cfg.listen))(&e))?,
        };
        let addr = listener
            .local_addr()
            .map_err(|e| start_err("listener")(&e))?;
        if cfg.gateways.is_empty() && !addr.ip().is_loopback() {
            return Err(CloudError::Start(format!(
                "{}: server.insecure_dev_no_auth: refusing to serve without tokens on {addr}",
                cfg.origin
            )));
        }
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let sender_cancel = CancellationToken::new();
        let sender_task = {
            let sender = Arc::clone(&sender);
            let cancel = sender_cancel.clone();
            tokio::spawn(async move { sender.run(cancel).await })
        };
        {
            let processor = Arc::clone(&processor);
            let cancel = cancel.clone();
            let db = db.clone();
            let poll_every = cfg.raw.feedback.poll_every;
            let overlap_ms = cfg.raw.feedback.overlap.as_millis() as i64;
            tasks.push(tokio::spawn(async move {
                poll_loop(
                    client,
                    db,
                    processor,
                    poll_every,
                    overlap_ms,
                    criticality_field,
                    cancel,
                )
                .await;
            }));
        }
        {
            // Wake the sender as soon as the shards enqueue actions (it also polls on its own).
            let sender = Arc::clone(&sender);
            let metrics = Arc::clone(processor.metrics());
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = 0;
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let now = metrics
                        .actions_enqueued
                        .load(std::sync::atomic::Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        sender.wake();
                    }
                }
            }));
        }
        {
            let log = log.clone();
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => {
                            let log = log.clone();
                            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || log.apply_retention()).await {
                                tracing::warn!(error = %e, "Ingest log retention failed.");
                            }
                        }
                    }
                }
            }));
        }
        let mut reporter = None;
        if let (Some(dir), Some(startup)) = (&cfg.raw.scoring.registry, startup) {
            let shadow_report = Arc::new(ShadowReporter::new(
                &state_dir,
                Arc::clone(processor.metrics()),
                model,
                shadow,
            ));
            let watcher = Watcher::new(
                fieldpulse_models::registry::Registry::new(dir),
                &state_dir,
                Arc::clone(&processor),
                layout,
                Arc::clone(&reload_metrics),
                Arc::clone(&shadow_report),
                WatchState::new(&startup, cfg.raw.scoring.shadow),
                cfg.raw.scoring.registry_poll,
            );
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(watcher.run(cancel)));
            reporter = Some(shadow_report);
        }
        let state = Arc::new(HttpState {
            ingest: Arc::clone(&ingest),
            processor: Arc::clone(&processor),
            sender: Arc::clone(&sender),
            archive: archive.clone(),
            degraded_outbox_depth: cfg.raw.server.degraded_outbox_depth,
            degraded_log_lag: cfg.raw.server.degraded_log_lag,
            reload_metrics: Arc::clone(&reload_metrics),
        });
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .with_state(state)
            .merge(ingest.batches_router());
        {
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let res = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
                if let Err(e) = res {
                    tracing::error!(error = %e, "HTTP server stopped.");
                }
            }));
        }
        tracing::info!(%addr, "fieldpulse cloud is serving.");
        Ok(Self {
            addr,
            processor,
            ingest,
            sender,
            log,
            state_dir,
            reload_metrics,
            reporter,
            archive,
            cancel,
            tasks,
            sender_cancel,
            sender_task,
        })
    }

    /// Stops everything without draining or checkpointing, leaving the state
    /// directory as a crash would (tests of recovery).
    pub async fn abort(self) {
        self.cancel.cancel();
        self.sender_cancel.cancel();
        self.sender_task.abort();
        for t in self.tasks {
            t.abort();
        }
        let processor = self.processor;
        let archive = self.archive;
        let _ = tokio::task::spawn_blocking(move || {
            processor.abort();
            if let Some(a) = archive {
                a.abort();
            }
        })
        .await;
    }

    /// Stops accepting, drains the shards (held rows scored, checkpoint),
    /// then lets the sender send what is pending, including the actions the
    /// drain produced, for at most its `drain_timeout`; meanwhile the archive
    /// reads the log to its end and flushes it (one attempt).
    ///
    /// # Errors
    /// A shard or the reader had stopped with an error (the sender still drains).
    pub async fn shutdown(self) -> Result<(), CloudError> {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let processor = self.processor;
        let stopped = tokio::task::spawn_blocking(move || {
            processor
                .shutdown()
                .map_err(|e| CloudError::Start(format!("processor: {e}")))
        })
        .await
        .map_err(|e| CloudError::Start(format!("processor shutdown: {e}")))
        .and_then(|res| res);
        // After the drain, so the report counts every evaluation.
        if let Some(reporter) = &self.reporter {
            if let Err(e) = reporter.write() {
                tracing::warn!(error = %e, "Could not write the shadow report.");
            }
        }
        // Only now: releasing held rows and the final flush enqueue actions
        // that would otherwise wait for the next start.
        self.sender_cancel.cancel();
        let archived = self
            .archive
            .map(|a| tokio::task::spawn_blocking(move || a.shutdown()));
        let _ = self.sender_task.await;
        if let Some(a) = archived {
            let _ = a.await;
        }
        stopped
    }
}

/// Starts the archive writer on its log consumer when enabled; when disabled,
/// unregisters a consumer an earlier run left, so retention does not wait for it.
fn start_archive(cfg: &CloudConfig, log: &IngestLog) -> Result<Option<Arc<Archiver>>, CloudError> {
    let Some(settings) = cfg.archive.clone() else {
        if log
            .remove_consumer(ARCHIVE_CONSUMER)
            .map_err(|e| start_err("ingest log consumer")(&e))?
        {
            tracing::info!("The archive is disabled: its ingest log consumer is removed, so retention no longer waits for it.");
        }
        return Ok(None);
    };
    let consumer = log
        .consumer(ARCHIVE_CONSUMER)
        .map_err(|e| start_err("archive consumer")(&e))?;
    let committed = consumer.committed();
    let dir = settings.dir.clone();
    let archiver = Archiver::start(settings, consumer, committed)
        .map_err(|e| start_err(&format!("{}: archive {}", cfg.origin, dir.display()))(&e))?;
    tracing::info!(
        dir = %dir.display(),
        committed,
        part_files = archiver.recovery().map(|r| r.part_files),
        "Archiving the ingest log as Parquet."
    );
    Ok(Some(Arc::new(archiver)))
}

#[allow(clippy::too_many_arguments)]
async fn poll_loop(
    client: Arc<SalesforceClient>,
    db: PathBuf,
    processor: Arc<Processor>,
    every: Duration,
    overlap_ms: i64,
    criticality_field: String,
    cancel: CancellationToken,
) {
    let mut store = match Store::open(&db) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Feedback poller cannot open the store; no feedback will be read.");
            return;
        }
    };
    let mut tick = tokio::time::interval(every);
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Assets and Work Order history are re-read when missing and every
        // DIRECTORY_REFRESH (new assets, new repairs for the history features).
        if processor.directory().assets.is_empty() || last_refresh.elapsed() >= DIRECTORY_REFRESH {
            match Directory::load(&client, &criticality_field).await {
                Ok(d) if !d.assets.is_empty() => {
                    processor.set_directory(d);
                    last_refresh = tokio::time::Instant::now();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Reading assets from Salesforce failed; retrying.")
                }
            }
        }
        let dir = processor.directory();
        let res = feedback::poll_once(&client, &mut store, &dir, overlap_ms, |ev| {
            processor.feedback(ev)
        })
        .await;
        match res {
            Ok(r) if r.events > 0 => tracing::info!(
                work_orders = r.work_orders,
                cases = r.cases,
                events = r.events,
                labels = r.labels,
                "Feedback from Salesforce."
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Feedback poll failed; retrying next interval."),
        }
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let mut text = s.ingest.metrics().render();
    crate::metrics::render_log(&mut text, &s.ingest.sink().stats());
    s.processor.metrics().render(&mut text);
    let st = s.processor.status();
    let gauge = |text: &mut String, name: &str, help: &str, v: u64| {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}"
        );
    };
    gauge(
        &mut text,
        "fieldpulse_cloud_log_lag_records",
        "Ingest log records not yet scored.",
        st.lag(),
    );
    gauge(
        &mut text,
        "fieldpulse_cloud_alerts_open",
        "Open alert episodes (suppressed included).",
        st.episodes_open,
    );
    gauge(
        &mut text,
        "fieldpulse_cloud_alerts_suppressed",
        "Episodes inhibited by an open Work Order.",
        st.episodes_suppressed,
    );
    gauge(
        &mut text,
        "fieldpulse_cloud_assets_tracked",
        "Assets with scoring state in memory.",
        st.assets,
    );
    gauge(
        &mut text,
        "fieldpulse_cloud_rows_held",
        "Rows waiting for the rest of their scan before they are scored (scoring.scan_hold).",
        st.rows_held,
    );
    render_sender(&s.sender.stats(), &mut text);
    if let Some(a) = &s.archive {
        archive::render_metrics(&mut text, &a.stats(), s.ingest.sink().end_offset());
    }
    {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "# HELP fieldpulse_cloud_rows_not_learned_total Rows scored but not learned since start (as of the last checkpoint), by reason.\n# TYPE fieldpulse_cloud_rows_not_learned_total counter\nfieldpulse_cloud_rows_not_learned_total{{reason=\"out_of_order\"}} {}\nfieldpulse_cloud_rows_not_learned_total{{reason=\"same_instant\"}} {}",
            st.rows_out_of_order, st.rows_duplicate
        );
    }
    {
        use std::fmt::Write;
        let model_version = s
            .processor
            .models()
            .0
            .map_or_else(|| "none".to_string(), |m| m.model.model_version.clone());
        let _ = writeln!(
            text,
            "# HELP fieldpulse_cloud_model_info The failure model in use (its model_version).\n# TYPE fieldpulse_cloud_model_info gauge\nfieldpulse_cloud_model_info{{version=\"{}\"}} 1",
            model_version.replace('"', "'")
        );
    }
    s.reload_metrics.render(&mut text);
    s.processor.render_models(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn healthz(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let st = s.processor.status();
    let depth = s.sender.stats().depth;
    if !s.processor.is_healthy() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "failed: a scoring thread stopped (see logs)\n".to_string(),
        );
    }
    let mut problems = Vec::new();
    if depth > s.degraded_outbox_depth {
        problems.push(format!(
            "outbox depth {depth} > {}",
            s.degraded_outbox_depth
        ));
    }
    if st.lag() > s.degraded_log_lag {
        problems.push(format!("log lag {} > {}", st.lag(), s.degraded_log_lag));
    }
    if let Some(a) = &s.archive {
        let stats = a.stats();
        if stats.failing {
            problems.push(format!(
                "archive writes failing ({} failures; the log keeps the records)",
                stats.write_failures
            ));
        } else if !a.is_running() {
            problems.push("archive writer stopped".into());
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::OK,
            format!("degraded: {}\n", problems.join("; ")),
        )
    }
}

fn render_sender(st: &SenderStats, text: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(text, "# HELP fieldpulse_cloud_actions_sent_total Salesforce records by object and outcome.\n# TYPE fieldpulse_cloud_actions_sent_total counter");
    for ((object, outcome), n) in &st.sent {
        let _ = writeln!(
            text,
            "fieldpulse_cloud_actions_sent_total{{object=\"{object}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let gauge = |text: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}"
        );
    };
    gauge(
        text,
        "fieldpulse_cloud_outbox_depth",
        "Actions waiting to be sent.",
        st.depth,
    );
    gauge(
        text,
        "fieldpulse_cloud_outbox_retrying",
        "Pending actions that failed at least once with a retriable error (they retry until sent).",
        st.retrying,
    );
    gauge(
        text,
        "fieldpulse_cloud_outbox_max_attempts",
        "The most attempts any pending action has had.",
        st.max_attempts,
    );
    gauge(
        text,
        "fieldpulse_cloud_dead_letters",
        "Actions Salesforce rejected with a permanent error (see `fieldpulse cloud dead-letters list`).",
        st.dead_letters,
    );
    gauge(
        text,
        "fieldpulse_cloud_salesforce_budget_paused",
        "1 while sending waits for the daily API budget.",
        u64::from(st.budget_paused),
    );
    let _ = writeln!(text, "# HELP fieldpulse_cloud_salesforce_api_calls_total REST calls to Salesforce by the outbox.\n# TYPE fieldpulse_cloud_salesforce_api_calls_total counter\nfieldpulse_cloud_salesforce_api_calls_total {}", st.api_calls);
    if let Some(left) = st.remaining_daily_budget {
        gauge(
            text,
            "fieldpulse_cloud_salesforce_api_remaining",
            "Daily API calls left in the org.",
            left,
        );
    }
}
