//! `fieldpulse bench ...`: end-to-end measurements. Each benchmark is its own
//! module; this one only dispatches.

use std::path::PathBuf;

use clap::Subcommand;

use crate::bench_cloud;
use crate::bench_edge;
use crate::bench_scoring;

/// The benchmarks `fieldpulse bench` can run.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The cloud end to end: HTTP ingest, log, scoring shards, outbox to an emulator.
    Cloud(bench_cloud::CloudBenchArgs),
    /// The edge agent against a real mosquitto: sustained rate, RSS, wire size.
    Edge(bench_edge::EdgeBenchArgs),
    /// The scoring loop (features + every detector + calibration), 1 and N threads.
    Scoring(bench_scoring::ScoringBenchArgs),
    /// (internal) The edge agent process that `bench edge` measures.
    #[command(hide = true)]
    EdgeAgent {
        /// Edge configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs the chosen benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Cloud(args) => bench_cloud::run(args),
        BenchCommand::Edge(args) => bench_edge::run(args),
        BenchCommand::Scoring(args) => bench_scoring::run(args),
        BenchCommand::EdgeAgent { config } => bench_edge::run_agent(&config),
    }
}
