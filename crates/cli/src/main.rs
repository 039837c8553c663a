//! The `fieldpulse` command line: argument parsing, tracing setup, exit codes.
//! Business logic lives in the library crates; each subcommand is one module
//! holding its clap `Args` and a `run` function.

use clap::{Parser, Subcommand};

mod bench;
mod logging;

/// fieldpulse: sensor readings in, prioritized Salesforce Field Service work out.
#[derive(Debug, Parser)]
#[command(name = "fieldpulse", version, about, long_about = None)]
struct Cli {
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `fieldpulse_edge=debug`.
    #[arg(long, global = true, env = "FIELDPULSE_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure fieldpulse's hot paths end to end.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log);
    let res: anyhow::Result<()> = match cli.command {
        Command::Bench(cmd) => bench::run(cmd),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
