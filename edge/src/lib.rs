//! `fieldpulse-edge`: the gateway agent.
//!
//! Takes sensor readings from the gateway's MQTT broker, validates them, makes them durable in a
//! crash-safe disk spool before acknowledging them to the broker, and forwards them to
//! `fieldpulse cloud` as protobuf + zstd batches.
//!
//! # Layout
//! - [`config`]: the TOML file, raw → validated ([`EdgeConfig`]), secrets; [`tls`] reads its
//!   PEM files and builds the TLS settings of the broker and cloud connections.
//! - [`topic`], [`payload`], [`validate`], [`reject`]: from an MQTT message to validated
//!   readings, with rejections counted by reason; [`quarantine`] keeps rejected payloads.
//! - [`envelope`]: the agent's record layout inside the [`spool`] (which owns durability);
//!   [`redelivery`] remembers sent messages so broker redeliveries are recognised.
//! - [`intake`]: the MQTT task and the spool writer (group commit, acks after fsync).
//! - [`batch`], [`forwarder`]: batches cut from the spool, POSTed, freed on `BatchAck`.
//! - [`metrics`], [`http`]: counters, `/metrics`, `/healthz`.
//! - [`agent`]: wires the tasks together ([`Agent`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fieldpulse_edge::{Agent, EdgeConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = EdgeConfig::load(std::path::Path::new("/etc/fieldpulse-edge.toml"))?;
//! let agent = Agent::start(config).await?;
//! let metrics = agent.metrics();
//! let shutdown = CancellationToken::new();
//! let summary = agent.run(shutdown).await?;
//! println!("{summary:?} {:?}", metrics.snapshot());
//! # Ok(()) }
//! ```
//!
//! Deliberately absent: polars, linfa, smartcore, ndarray, and any scoring code (the agent must
//! stay small); no detached tasks (everything runs inside [`Agent::run`]).

pub mod agent;
pub mod batch;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod forwarder;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod payload;
pub mod quarantine;
pub mod redelivery;
pub mod reject;
pub mod signals;
pub mod spool;
pub mod tls;
pub mod topic;
pub mod validate;

pub use agent::{Agent, AgentError, RunSummary};
pub use config::EdgeConfig;
pub use metrics::{MetricsHandle, MetricsSnapshot};
