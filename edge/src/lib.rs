//! `fieldpulse-edge`: the gateway agent.
//!
//! Takes sensor readings from the gateway's MQTT broker, validates them, makes
//! them durable in a crash-safe disk spool before acknowledging them to the
//! broker, and forwards them to `fieldpulse cloud` as protobuf + zstd batches.
//!
//! Deliberately absent: polars, linfa, smartcore, ndarray, and any scoring
//! code. The agent must stay small.

pub mod spool;
