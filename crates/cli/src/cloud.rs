//! `fieldpulse cloud`: the cloud processor as one process, and `validate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fieldpulse_cloud::config::{CloudConfig, RawCloudConfig};
use fieldpulse_cloud::service::Cloud;

/// Run the cloud processor: ingest API, scoring, alert episodes, Salesforce outbox.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  fieldpulse cloud --config cloud/fieldpulse-cloud.example.toml\n  fieldpulse cloud validate --config cloud.toml\n  fieldpulse cloud print-config"
)]
pub struct CloudArgs {
    #[command(subcommand)]
    command: Option<CloudCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum CloudCommand {
    /// Check a config file: exits non-zero naming the key and the file.
    Validate {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the annotated example configuration.
    PrintConfig,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The config file (see `fieldpulse cloud print-config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding `server.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// State directory, overriding `server.state_dir`.
    #[arg(long)]
    state: Option<PathBuf>,
}

fn load(path: &Path, run: Option<&RunArgs>) -> anyhow::Result<CloudConfig> {
    let mut raw = RawCloudConfig::load(path)?;
    if let Some(run) = run {
        if let Some(listen) = run.listen {
            raw.server.listen = listen.to_string();
        }
        if let Some(state) = &run.state {
            raw.server.state_dir = state.clone();
        }
    }
    Ok(raw.validate(&path.display().to_string())?)
}

/// Runs the subcommand.
pub fn run(args: CloudArgs) -> anyhow::Result<()> {
    match args.command {
        Some(CloudCommand::Validate { config }) => {
            let cfg = load(&config, None)?;
            eprintln!(
                "{}: ok ({} gateways, {} shards, model {})",
                config.display(),
                cfg.gateways.len(),
                cfg.raw.scoring.shards,
                cfg.raw
                    .scoring
                    .model
                    .as_ref()
                    .map_or("none".into(), |m| m.display().to_string())
            );
            Ok(())
        }
        Some(CloudCommand::PrintConfig) => {
            print!("{}", fieldpulse_cloud::config::EXAMPLE_TOML);
            Ok(())
        }
        None => {
            let path = args
                .run
                .config
                .clone()
                .context("--config FILE is required (see `fieldpulse cloud print-config`)")?;
            let cfg = load(&path, Some(&args.run))?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async move {
                let cloud = Cloud::start(cfg, None).await?;
                eprintln!(
                    "fieldpulse cloud: serving on http://{} (Ctrl-C or SIGTERM drains and stops)",
                    cloud.addr
                );
                wait_for_signal().await;
                eprintln!("fieldpulse cloud: draining");
                cloud.shutdown().await?;
                anyhow::Ok(())
            })
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
