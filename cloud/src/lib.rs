//! `fieldpulse-cloud`: the cloud side of fieldpulse.
//!
//! It owns the ingest API that gateways post to ([`ingest`]): bearer
//! authentication, zstd + protobuf decoding with size limits, exact
//! `(gateway, epoch, seq)` deduplication and a durable commit to the segmented
//! ingest log ([`log`]) before the `BatchAck`. The processor consumes that log
//! from committed offsets: per-asset scoring, alert [`episodes`], and the
//! Salesforce [`outbox`].
//!
//! Deliberately absent: training dependencies (polars, linfa, smartcore).

pub mod episodes;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod outbox;
