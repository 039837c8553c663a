//! `fieldpulse-cloud`: the cloud side of fieldpulse.
//!
//! Today it owns the ingest API that gateways post to ([`ingest`]): bearer
//! authentication, zstd + protobuf decoding with size limits, exact
//! `(gateway, seq)` deduplication and a durable commit before the `BatchAck`.
//! Scoring, alert episodes and the Salesforce outbox build on it.
//!
//! ```no_run
//! use fieldpulse_cloud::ingest::{BatchLog, Ingest, IngestConfig};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (log, recovered) = BatchLog::open("ingest.log".as_ref())?;
//! let ingest = Ingest::new(IngestConfig::default(), log, &recovered);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! ingest.serve(listener, tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! Deliberately absent: training dependencies (polars, linfa, smartcore).

pub mod ingest;
pub mod metrics;
