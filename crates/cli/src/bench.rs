//! `fieldpulse bench ...`: end-to-end measurements. Each benchmark is its own
//! module; this one only dispatches.

use clap::Subcommand;

/// The benchmarks `fieldpulse bench` can run.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {}

/// Runs the chosen benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
