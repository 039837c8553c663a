//! The `fieldpulse-edge` binary: `run`, `validate`, `spool inspect`, `dead-letters list|replay`,
//! `print-config`.
//!
//! All logic lives in the library; this file parses flags, sets up logging and signals, and maps
//! errors to exit codes (`anyhow` ends here).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldpulse_edge::config::{RawEdgeConfig, EXAMPLE_TOML};
use fieldpulse_edge::dead_letter::{DeadLetter, DeadLetterDir};
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
    /// List or re-send the batches the cloud rejected permanently.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
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

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// One line per dead letter: seq, epoch, status, readings, bytes, time, error (read-only).
    ///
    /// Example: `fieldpulse-edge dead-letters list --config edge.toml --json`
    List {
        /// The dead-letter directory.
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        dir: Option<PathBuf>,
        /// A configuration file naming the directory (`forward.dead_letter_dir`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object on stdout (`dead_letters`: an array, oldest first).
        #[arg(long)]
        json: bool,
    },
    /// POST dead letters to the configured cloud again; each is removed once the cloud
    /// acknowledged it. Exits non-zero if any failed.
    ///
    /// Example: `fieldpulse-edge dead-letters replay --config edge.toml --all`
    Replay {
        /// The configuration file (cloud URL, token, dead-letter directory).
        #[arg(long)]
        config: PathBuf,
        /// Replay the dead letters of this seq.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        seq: Option<u64>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
        /// Print what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What `dead-letters list --json` prints: one JSON object.
#[derive(Debug, serde::Serialize)]
struct ListedDeadLetters<'a> {
    dir: String,
    /// Bytes of every file in the directory (counted against `spool.max_bytes`).
    bytes: u64,
    dead_letters: Vec<ListedDeadLetter<'a>>,
}

/// One dead letter in `dead-letters list --json`.
#[derive(Debug, serde::Serialize)]
struct ListedDeadLetter<'a> {
    seq: u64,
    spool_epoch: u64,
    http_status: u16,
    readings: u64,
    bytes: u64,
    dead_lettered_ms: i64,
    historical: bool,
    error: &'a str,
    path: String,
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
        Command::DeadLetters {
            command: DeadLetterCommand::List { dir, config, json },
        } => {
            let dir = match (dir, config) {
                (Some(dir), _) => dir,
                (None, Some(config)) => EdgeConfig::load(&config)?.forward.dead_letter_dir,
                (None, None) => anyhow::bail!("give --dir or --config"),
            };
            list_dead_letters(&dir, json)
        }
        Command::DeadLetters {
            command:
                DeadLetterCommand::Replay {
                    config,
                    seq,
                    all: _,
                    dry_run,
                },
        } => {
            let config = EdgeConfig::load(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(replay_dead_letters(&config, seq, dry_run))
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

fn describe(letter: &DeadLetter) -> String {
    let meta = &letter.meta;
    let time = u64::try_from(meta.dead_lettered_ms).map_or_else(
        |_| "-".to_string(),
        |ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
    );
    format!(
        "seq {} epoch {:016x} status {} readings {} bytes {} time {} error {:?}",
        meta.seq,
        meta.spool_epoch,
        meta.http_status,
        meta.readings,
        letter.body_bytes,
        time,
        meta.error
    )
}

fn list_dead_letters(dir: &Path, json: bool) -> anyhow::Result<()> {
    let dead_letters = DeadLetterDir::new(dir);
    let context = || format!("listing dead letters in {}", dir.display());
    let letters = dead_letters.list().with_context(context)?;
    if !json {
        for letter in &letters {
            println!("{}", describe(letter));
        }
        return Ok(());
    }
    let listed = ListedDeadLetters {
        dir: dir.display().to_string(),
        bytes: dead_letters.usage().with_context(context)?.bytes,
        dead_letters: letters
            .iter()
            .map(|letter| {
                let meta = &letter.meta;
                ListedDeadLetter {
                    seq: meta.seq,
                    spool_epoch: meta.spool_epoch,
                    http_status: meta.http_status,
                    readings: meta.readings,
                    bytes: letter.body_bytes,
                    dead_lettered_ms: meta.dead_lettered_ms,
                    historical: meta.historical,
                    error: &meta.error,
                    path: letter.body_path.display().to_string(),
                }
            })
            .collect(),
    };
    println!(
        "{}",
        serde_json::to_string(&listed).context("rendering JSON")?
    );
    Ok(())
}

async fn replay_dead_letters(
    config: &EdgeConfig,
    seq: Option<u64>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let dir = DeadLetterDir::new(&config.forward.dead_letter_dir);
    let letters: Vec<DeadLetter> = dir
        .list()
        .with_context(|| format!("listing dead letters in {}", dir.path().display()))?
        .into_iter()
        .filter(|letter| seq.is_none_or(|seq| letter.meta.seq == seq))
        .collect();
    if letters.is_empty() {
        anyhow::bail!(
            "no dead letter{} in {}",
            seq.map(|seq| format!(" with seq {seq}"))
                .unwrap_or_default(),
            dir.path().display()
        );
    }
    let http = fieldpulse_edge::forwarder::http_client(&config.forward)?;
    let mut failed = 0;
    for letter in &letters {
        if dry_run {
            println!("would send: {}", describe(letter));
            continue;
        }
        match fieldpulse_edge::dead_letter::replay(
            &dir,
            letter,
            &http,
            &config.forward,
            &config.gateway_id,
        )
        .await
        {
            Ok(contiguous_seq) => println!(
                "sent and removed (cloud contiguous seq {contiguous_seq}): {}",
                describe(letter)
            ),
            Err(err) => {
                failed += 1;
                println!(
                    "failed ({:#}): {}",
                    anyhow::Error::new(err),
                    describe(letter)
                );
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} dead letters not replayed", letters.len());
    }
    Ok(())
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
