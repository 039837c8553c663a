//! `POST /v1/batches`: where gateways deliver readings.
//!
//! The contract (see the `fieldpulse.v1` proto): the body is a protobuf
//! `Batch`, usually `Content-Encoding: zstd`; `Authorization: Bearer <token>`
//! names the gateway (tokens are configured as SHA-256 hashes and compared
//! in constant time); `Idempotency-Key: <gateway_id>/<seq>` must match the
//! body. A batch is acknowledged with a protobuf `BatchAck` only after the
//! [`BatchSink`] (in production the [`crate::log::IngestLog`]) has committed
//! it durably, and a batch already committed is acknowledged again without a
//! second commit.
//!
//! Deduplication is by exact `(gateway, spool_epoch, seq)` membership
//! ([`SeqSet`] per `(gateway, spool_epoch)`), never by a high-water mark: the
//! edge's live and backfill lanes and its retries deliver seqs out of order,
//! and a delayed batch below the highest seq seen must still be accepted. A
//! new spool epoch starts a new set, so a wiped spool's seqs are new data.
//!
//! Robustness: the commit runs in its own task, so a client that hangs up
//! cannot leave it half done or its in-flight slot taken; a retry racing the
//! original waits for the original's outcome. Bodies are bounded before
//! decoding (body size, zstd window, decompressed size) and the series and
//! readings are counted on the wire before prost allocates them (`wire.rs`);
//! decoding runs on the blocking pool behind a semaphore. Every rejection is
//! counted by reason.

mod dedupe;
mod service;
mod wire;

pub use dedupe::SeqSet;
pub use service::{
    BatchSink, GatewayToken, Ingest, IngestConfig, IngestError, IngestStats, SinkError,
};
