//! `fieldpulse cloud`: the cloud processor as one process, `validate`,
//! `print-config` and `dead-letters list|replay`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fieldpulse_cloud::config::{CloudConfig, RawCloudConfig};
use fieldpulse_cloud::outbox::{DeadLetter, DeadLetters, Replay};
use fieldpulse_cloud::service::{Cloud, DB_FILE};

/// Run the cloud processor: ingest API, scoring, alert episodes, Salesforce outbox.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  fieldpulse cloud --config cloud/fieldpulse-cloud.example.toml\n  fieldpulse cloud validate --config cloud.toml\n  fieldpulse cloud print-config\n  fieldpulse cloud dead-letters list --state cloud-state"
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
    /// List or re-send the outbox actions Salesforce rejected for good.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// One line per dead letter: action id, sObject, key, error code, message, fields (read-only).
    ///
    /// Example: `fieldpulse cloud dead-letters list --state cloud-state --json`
    List {
        /// The cloud's state directory (holds `cloud.sqlite`).
        #[arg(long)]
        state: PathBuf,
        /// One JSON object on stdout (`dead_letters`: an array, oldest first).
        #[arg(long)]
        json: bool,
    },
    /// Put dead actions back in the outbox after fixing the org (a validation
    /// rule, a missing record). A running cloud sends them within a second, a
    /// stopped one at start; an action that fails again is dead-lettered again.
    /// Sending is an upsert on `FieldPulse_Key__c`: replaying never duplicates.
    ///
    /// Example: `fieldpulse cloud dead-letters replay --state cloud-state --all`
    Replay {
        /// The cloud's state directory (holds `cloud.sqlite`).
        #[arg(long)]
        state: PathBuf,
        /// Replay the dead letter of this action id (see `list`).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<i64>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// What `dead-letters list --json` prints: one JSON object.
#[derive(Debug, serde::Serialize)]
struct ListedDeadLetters<'a> {
    db: String,
    dead_letters: Vec<ListedDeadLetter<'a>>,
}

/// One dead letter in `dead-letters list --json`.
#[derive(Debug, serde::Serialize)]
struct ListedDeadLetter<'a> {
    action_id: i64,
    sobject: &'a str,
    ext_key: &'a str,
    error_code: &'a str,
    message: &'a str,
    fields: &'a [String],
    dead_ms: i64,
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
                match (&cfg.raw.scoring.model, &cfg.raw.scoring.registry) {
                    (Some(m), _) => m.display().to_string(),
                    (None, Some(r)) => format!(
                        "registry {}{}",
                        r.display(),
                        if cfg.raw.scoring.shadow {
                            ", candidate in shadow"
                        } else {
                            ""
                        }
                    ),
                    (None, None) => "none".into(),
                }
            );
            Ok(())
        }
        Some(CloudCommand::PrintConfig) => {
            print!("{}", fieldpulse_cloud::config::EXAMPLE_TOML);
            Ok(())
        }
        Some(CloudCommand::DeadLetters { command }) => dead_letters(command),
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

/// Opens the dead letters of a state directory's database.
fn open_dead_letters(state: &Path) -> anyhow::Result<(PathBuf, DeadLetters)> {
    let db = state.join(DB_FILE);
    anyhow::ensure!(
        db.is_file(),
        "{}: no cloud database here (--state DIR)",
        db.display()
    );
    let dead_letters =
        DeadLetters::open(&db).with_context(|| format!("opening {}", db.display()))?;
    Ok((db, dead_letters))
}

/// One line: action id, sObject, key, code, message, fields.
fn describe(d: &DeadLetter) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        d.action_id,
        d.sobject,
        d.ext_key,
        d.error_code,
        d.message.replace(['\t', '\n'], " "),
        d.fields.join(",")
    )
}

fn dead_letters(command: DeadLetterCommand) -> anyhow::Result<()> {
    match command {
        DeadLetterCommand::List { state, json } => {
            let (db, dead_letters) = open_dead_letters(&state)?;
            let letters = dead_letters
                .list()
                .with_context(|| format!("listing dead letters in {}", db.display()))?;
            if json {
                let listed = ListedDeadLetters {
                    db: db.display().to_string(),
                    dead_letters: letters
                        .iter()
                        .map(|d| ListedDeadLetter {
                            action_id: d.action_id,
                            sobject: &d.sobject,
                            ext_key: &d.ext_key,
                            error_code: &d.error_code,
                            message: &d.message,
                            fields: &d.fields,
                            dead_ms: d.dead_ms,
                        })
                        .collect(),
                };
                println!(
                    "{}",
                    serde_json::to_string(&listed).context("rendering JSON")?
                );
            } else {
                for d in &letters {
                    println!("{}", describe(d));
                }
                eprintln!("{} dead letters", letters.len());
            }
            Ok(())
        }
        DeadLetterCommand::Replay { state, id, all } => {
            let (db, mut dead_letters) = open_dead_letters(&state)?;
            let which = match (id, all) {
                (Some(id), false) => Replay::One(id),
                _ => Replay::All,
            };
            let replayed = dead_letters
                .replay(which)
                .with_context(|| format!("replaying dead letters in {}", db.display()))?;
            for d in &replayed {
                println!("replayed: {}", describe(d));
            }
            eprintln!(
                "{} dead letters back in the outbox; the cloud sends them on its next pass",
                replayed.len()
            );
            Ok(())
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
