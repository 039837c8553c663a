//! Tracing setup shared by every subcommand: human-readable logs on stderr so
//! that stdout stays free for `--json` output.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with the given `RUST_LOG`-style filter.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
