//! `POST /v1/batches`: where gateways deliver readings.
//!
//! The contract (see the `fieldpulse.v1` proto): the body is a protobuf
//! `Batch`, usually `Content-Encoding: zstd`; `Authorization: Bearer <token>`
//! names the gateway; `Idempotency-Key: <gateway_id>/<seq>` must match the
//! body. A batch is acknowledged with a protobuf `BatchAck` only after the
//! [`BatchSink`] has committed it durably, and a batch already committed is
//! acknowledged again without a second commit.
//!
//! Deduplication is by exact `(gateway, seq)` membership ([`SeqSet`]), never by
//! a high-water mark: the edge's live and backfill lanes and its retries
//! deliver seqs out of order, and a delayed batch below the highest seq seen
//! must still be accepted.

mod dedupe;
mod log;
mod service;

pub use dedupe::SeqSet;
pub use log::{BatchLog, LogError, Recovered};
pub use service::{BatchSink, GatewayToken, Ingest, IngestConfig, IngestStats, SinkError};
