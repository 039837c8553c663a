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
//!   [`redelivery`] remembers sent messages so broker redeliveries are recognised, and
//!   [`dup_window`] decides which `DUP` deliveries certainly repeat a spooled message.
//! - [`intake`]: the MQTT task and the spool writer (group commit, acks after fsync).
//! - [`batch`], [`forwarder`]: batches cut from the spool, POSTed, freed on `BatchAck`;
//!   [`uplink`] sizes batches and request timeouts from the measured uplink rate;
//!   [`dead_letter`] keeps the batches the cloud rejected permanently.
//! - [`metrics`], [`http`], [`spool_watch`]: counters, `/metrics`, `/healthz`, the free-space and
//!   oldest-unforwarded gauges.
//! - [`agent`]: wires the tasks together ([`Agent`]); [`reload`] takes over a new token and
//!   topic mappings while it runs (SIGHUP), [`signals`] runs it as a service.
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
pub mod dead_letter;
pub mod dup_window;
pub mod envelope;
pub mod forwarder;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod payload;
pub mod quarantine;
pub mod redelivery;
pub mod reject;
pub mod reload;
pub mod signals;
pub mod spool;
pub mod spool_watch;
pub mod tls;
pub mod topic;
pub mod uplink;
pub mod validate;

pub use agent::{Agent, AgentError, RunSummary};
pub use config::EdgeConfig;
pub use metrics::{MetricsHandle, MetricsSnapshot};
