//! Running the agent as a service: until SIGTERM or SIGINT, then drain; SIGHUP reloads the
//! gateway token and the topic mappings from the configuration file (see [`crate::reload`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::metrics::MetricsHandle;
use crate::reload::LiveSettings;
use crate::{Agent, AgentError, EdgeConfig, RunSummary};

/// Starts the agent on `config` and runs it until SIGTERM or SIGINT, then drains it (flush,
/// fsync, last sends) and returns its summary. Signal handlers are registered before the agent
/// starts, so a signal during startup still ends in a clean shutdown. With `reload_from` (the
/// file `config` was loaded from), SIGHUP re-reads it and takes over its token and topic
/// mappings; a file that no longer validates is reported and the running settings stay.
///
/// # Errors
///
/// Startup failures (spool, metrics listener) and fatal run errors, as [`AgentError`].
pub async fn run_until_signal(
    config: EdgeConfig,
    reload_from: Option<PathBuf>,
) -> Result<RunSummary, AgentError> {
    let signal_wait = wait_for_signal();
    let mut hangups = hangups();
    let agent = Agent::start(config).await?;
    if let Some(addr) = agent.http_addr() {
        info!(%addr, "Serving /metrics and /healthz.");
    }
    let live = agent.live_settings();
    let metrics = agent.metrics();
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    let agent_run = agent.run(shutdown);
    let signal_wait = async move {
        signal_wait.await;
        info!("Signal received.");
        signals.cancel();
    };
    tokio::pin!(agent_run);
    tokio::pin!(signal_wait);
    let summary = loop {
        tokio::select! {
            res = &mut agent_run => break res,
            () = &mut signal_wait => break agent_run.await,
            Some(()) = next_hangup(&mut hangups) => match &reload_from {
                Some(path) => reload(path, &live, &metrics),
                None => warn!("SIGHUP ignored: the agent was not started from a file."),
            },
        }
    }?;
    info!(
        received = summary.metrics.readings_received,
        spooled = summary.metrics.readings_spooled,
        forwarded = summary.metrics.readings_forwarded,
        "Exiting."
    );
    Ok(summary)
}

/// Re-reads `path` and applies its token and topic mappings; logs what happened.
pub fn reload(path: &Path, live: &LiveSettings, metrics: &MetricsHandle) {
    match EdgeConfig::load(path) {
        Err(err) => {
            metrics
                .inner()
                .config_reload_errors
                .fetch_add(1, Ordering::Relaxed);
            error!(error = %err, "Configuration reload failed; the running settings stay.");
        }
        Ok(new) => {
            let report = live.apply(&new);
            metrics
                .inner()
                .config_reloads
                .fetch_add(1, Ordering::Relaxed);
            info!(
                file = %path.display(),
                token_changed = report.token_changed,
                subscriptions_changed = report.subscriptions_changed,
                "Configuration reloaded."
            );
            if !report.needs_restart.is_empty() {
                warn!(
                    sections = ?report.needs_restart,
                    "These settings changed in the file but take effect only after a restart."
                );
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {
    None
}

/// The next SIGHUP; pending forever without a handler.
#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}

/// The agent's runtime: two workers, and few blocking threads (spool IO, batch
/// encoding): each one grows its own allocator arena, and the agent never needs
/// more than a handful at once.
///
/// # Errors
///
/// The runtime could not start (threads, epoll).
pub fn service_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
}

/// Registers SIGTERM and SIGINT handlers now; the returned future completes on either.
#[cfg(unix)]
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
