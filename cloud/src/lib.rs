//! `fieldpulse-cloud`: the cloud side of fieldpulse.
//!
//! Gateways post batches to the ingest API ([`ingest`]): bearer
//! authentication, zstd + protobuf decoding with size limits, exact
//! `(gateway, epoch, seq)` deduplication and a durable commit to the segmented
//! ingest [`log`] before the `BatchAck`. The [`processor`] consumes that log
//! from committed offsets: per-asset anomaly and failure scoring in shards,
//! alert [`episodes`], and [`actions`] for Salesforce written to the
//! [`outbox`] in [`store`] (`cloud.sqlite`), with [`feedback`] from Work
//! Orders and Cases coming back. [`reload`] follows the model registry: hot
//! reload of the promoted version and shadow scoring of the candidate.
//! [`service`] wires it into one process.
//!
//! Deliberately absent: training dependencies (polars, linfa, smartcore).

pub mod actions;
pub mod archive;
pub mod campaign;
pub mod config;
pub mod directory;
pub mod episodes;
pub mod feedback;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod outbox;
pub mod processor;
pub mod reload;
pub mod service;
pub mod store;
pub mod synth;
