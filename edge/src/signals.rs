//! Running the agent as a service: until SIGTERM or SIGINT, then drain.

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{Agent, AgentError, EdgeConfig, RunSummary};

/// Starts the agent on `config` and runs it until SIGTERM or SIGINT, then drains it (flush,
/// fsync, last sends) and returns its summary. Signal handlers are registered before the agent
/// starts, so a signal during startup still ends in a clean shutdown.
///
/// # Errors
///
/// Startup failures (spool, metrics listener) and fatal run errors, as [`AgentError`].
pub async fn run_until_signal(config: EdgeConfig) -> Result<RunSummary, AgentError> {
    let signal_wait = wait_for_signal();
    let agent = Agent::start(config).await?;
    if let Some(addr) = agent.http_addr() {
        info!(%addr, "Serving /metrics and /healthz.");
    }
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    let agent_run = agent.run(shutdown);
    let signal_wait = async move {
        signal_wait.await;
        info!("Signal received.");
        signals.cancel();
    };
    tokio::pin!(agent_run);
    let summary = tokio::select! {
        res = &mut agent_run => res,
        () = signal_wait => agent_run.await,
    }?;
    info!(
        received = summary.metrics.readings_received,
        spooled = summary.metrics.readings_spooled,
        forwarded = summary.metrics.readings_forwarded,
        "Exiting."
    );
    Ok(summary)
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
