//! `fieldpulse edge --config F`: the gateway agent from this binary, exactly as
//! `fieldpulse-edge run` runs it (the demo starts it as a child process so it can
//! kill -9 it). Gateways install the small `fieldpulse-edge` binary instead.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use fieldpulse_edge::EdgeConfig;

/// Run the edge agent until SIGTERM/SIGINT (same as `fieldpulse-edge run`).
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// The edge config file (TOML; see `fieldpulse-edge print-config --example`).
    #[arg(long)]
    pub config: PathBuf,
}

/// Runs the agent on its own runtime until a signal, then drains.
pub fn run(args: EdgeArgs) -> anyhow::Result<()> {
    let config = EdgeConfig::load(&args.config)?;
    let origin = config.origin.clone();
    let runtime =
        fieldpulse_edge::signals::service_runtime().context("starting the tokio runtime")?;
    runtime
        .block_on(fieldpulse_edge::signals::run_until_signal(
            config,
            Some(args.config.clone()),
        ))
        .with_context(|| format!("running the agent ({origin})"))?;
    Ok(())
}
