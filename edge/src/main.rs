//! The `fieldpulse-edge` binary: `run`, `validate`, `spool inspect`, `print-config`.
//!
//! All logic lives in the library; this file parses flags, sets up logging and signals, and maps
//! errors to exit codes (`anyhow` ends here).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldpulse_edge::config::{RawEdgeConfig, EXAMPLE_TOML};
use fieldpulse_edge::EdgeConfig;

/// fieldpulse-edge: the gateway agent (MQTT in, crash-safe spool, batches to fieldpulse cloud).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `fieldpulse_edge=debug`.
    #[arg(
        long,
        global = true,
        env = "FIELDPULSE_EDGE_LOG",
        default_value = "info"
    )]
    log: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or SIGINT; SIGHUP reloads the token and topic mappings.
    ///
    /// Example: `fieldpulse-edge run --config /etc/fieldpulse/edge.toml`
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration file; exits non-zero naming the file and key on error.
    ///
    /// Example: `fieldpulse-edge validate --config edge.toml`
    Validate {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Inspect the spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Print the effective configuration: the defaults, or a file with defaults filled in.
    ///
    /// Example: `fieldpulse-edge print-config > edge.toml`
    PrintConfig {
        /// A configuration file to complete with defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the annotated example file instead.
        #[arg(long, conflicts_with = "config")]
        example: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// Print segments, records, bytes and corruption found (read-only).
    ///
    /// Example: `fieldpulse-edge spool inspect /var/lib/fieldpulse-edge/spool --json`
    Inspect {
        /// The spool directory.
        dir: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let path = config;
            let config = EdgeConfig::load(&path)?;
            let runtime = fieldpulse_edge::signals::service_runtime()
                .context("starting the tokio runtime")?;
            runtime.block_on(run_agent(config, path))
        }
        Command::Validate { config } => {
            let cfg = EdgeConfig::load(&config)?;
            println!(
                "{}: ok (gateway {}, {} subscriptions, spool {} bytes in {}, cloud {})",
                config.display(),
                cfg.gateway_id,
                cfg.subscriptions.len(),
                cfg.spool.spool.max_bytes,
                cfg.spool.dir.display(),
                cfg.forward.batches_url
            );
            Ok(())
        }
        Command::Spool {
            command: SpoolCommand::Inspect { dir, json },
        } => {
            let report = fieldpulse_edge::spool::inspect(&dir)
                .with_context(|| format!("inspecting spool {}", dir.display()))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("rendering JSON")?
                );
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::PrintConfig { config, example } => {
            if example {
                print!("{EXAMPLE_TOML}");
                return Ok(());
            }
            let raw = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    toml::from_str::<RawEdgeConfig>(&text)
                        .with_context(|| format!("parsing {}", path.display()))?
                }
                None => RawEdgeConfig::default(),
            };
            print!("{}", raw.to_toml_string().context("rendering TOML")?);
            Ok(())
        }
    }
}

async fn run_agent(config: EdgeConfig, path: PathBuf) -> anyhow::Result<()> {
    let origin = config.origin.clone();
    fieldpulse_edge::signals::run_until_signal(config, Some(path))
        .await
        .with_context(|| format!("running the agent ({origin})"))?;
    Ok(())
}

/// Keeps the resident set small on glibc: few malloc arenas (one per thread by default, each
/// keeping its freed memory), and a fixed mmap threshold so batch-sized buffers (hundreds of KiB)
/// are mapped and unmapped instead of staying in a heap after use. glibc otherwise raises the
/// threshold dynamically up to 32 MiB after the first large free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called once before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 * 1024);
    }
}

/// Other allocators need no tuning.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
