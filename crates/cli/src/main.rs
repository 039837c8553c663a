//! The `fieldpulse` command line: argument parsing, tracing setup, exit codes.
//! Business logic lives in the library crates; each subcommand is one module
//! holding its clap `Args` and a `run` function.

use clap::{Parser, Subcommand};

mod anomaly_runs;
mod bench;
mod bench_cloud;
mod bench_edge;
mod bench_scoring;
mod cloud;
mod cpu_info;
mod demo;
mod detect;
mod detect_labels;
mod edge;
mod eval;
mod eval_nab;
mod eval_shapes;
mod eval_skab;
mod feedback;
mod logging;
mod models_cmd;
mod mosquitto;
mod read_ahead;
mod score;
mod sf_emulator;
mod simulate;
mod sync;
mod telemetry_args;
mod train;
mod wide_csv_args;

/// fieldpulse: sensor readings in, prioritized Salesforce Field Service work out.
#[derive(Debug, Parser)]
#[command(name = "fieldpulse", version, about, long_about = None)]
struct Cli {
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `fieldpulse_edge=debug`.
    /// Default: `warn` (`info` for `cloud`; `error` for `demo`, whose outage warnings are staged).
    #[arg(long, global = true, env = "FIELDPULSE_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure fieldpulse's hot paths end to end.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the cloud processor (ingest, scoring, episodes, Salesforce outbox), or check its config.
    ///
    /// Example: `fieldpulse cloud --config cloud/fieldpulse-cloud.example.toml`
    Cloud(cloud::CloudArgs),
    /// Run the whole product locally (simulated fleet, edge, cloud, emulated Salesforce) and print the Cases.
    Demo(demo::DemoArgs),
    /// Run the edge agent from this binary (as `fieldpulse-edge run`; the demo uses it).
    #[command(hide = true)]
    Edge(edge::EdgeArgs),
    /// Evaluate models: the NASA C-MAPSS benchmark, or a trained artifact.
    Eval(eval::EvalArgs),
    /// Labels the cloud learned from Salesforce (confirmed failures, false alarms).
    ///
    /// Example: `fieldpulse feedback export --state cloud-state --format csv`
    #[command(subcommand)]
    Feedback(feedback::FeedbackCommand),
    /// The model registry: versioned artifacts, the promoted champion, promotion history, rollback.
    ///
    /// Example: `fieldpulse models promote --registry models-reg v3 --note "Q3 retrain"`
    #[command(subcommand)]
    Models(models_cmd::ModelsCommand),
    /// Score every row of a wide telemetry CSV for anomalies (no look-ahead).
    Detect(detect::DetectArgs),
    /// Simulate a fleet: telemetry CSV, Work Order history fixture, ground truth.
    Simulate(simulate::SimulateArgs),
    /// Train failure/RUL models on telemetry + Work Order history (artifact directory).
    Train(train::TrainArgs),
    /// Score a telemetry CSV with a trained failure model (batch form of cloud scoring).
    Score(score::ScoreArgs),
    /// Run a strict local Salesforce emulator (OAuth2, REST, SOQL, Bulk 2.0).
    ///
    /// Example: `fieldpulse sf-emulator --port 8484 --state ./sf-state --jwt-cert fieldpulse.crt`
    SfEmulator(sf_emulator::SfEmulatorArgs),
    /// Pull data from Salesforce into local files (Work Order history for training).
    ///
    /// Example: `fieldpulse sync work-orders --token-url https://login.salesforce.com
    /// --client-id 3MVG9... --username fieldpulse@acme.com --key-file fieldpulse.key --json`
    #[command(subcommand)]
    Sync(sync::SyncCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Demo(_) => "error,rumqttd=off",
        Command::Cloud(_) | Command::Edge(_) => "info",
        _ => "warn",
    };
    logging::init(cli.log.as_deref().unwrap_or(default_log));
    if !matches!(
        cli.command,
        Command::Cloud(_) | Command::Edge(_) | Command::Demo(_) | Command::SfEmulator(_)
    ) {
        quiet_on_closed_pipe();
    }
    let res: anyhow::Result<()> = match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
        Command::Cloud(args) => cloud::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Edge(args) => edge::run(args),
        Command::Feedback(cmd) => feedback::run(cmd),
        Command::Models(cmd) => models_cmd::run(cmd),
        Command::Simulate(args) => simulate::run(args),
        Command::Train(args) => train::run(args),
        Command::Score(args) => score::run(args),
        Command::SfEmulator(args) => sf_emulator::run(args),
        Command::Sync(cmd) => sync::run(cmd),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One-shot commands end quietly when their reader goes away
/// (`fieldpulse eval shapes --json | head`), as Unix tools do, instead of
/// panicking in `println!`: SIGPIPE goes back to its default action, which
/// Rust sets to ignore. Services keep ignoring it (their sockets report
/// `EPIPE` as an error they handle).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start, before any other thread exists; restores
    // the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
