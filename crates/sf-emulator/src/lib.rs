//! `fieldpulse-sf-emulator`: a strict local emulator of the Salesforce REST
//! API subset fieldpulse uses, written from `reference/salesforce-api.md`
//! (its EMU: rules and conformance checklist), not from our client — this
//! crate must never depend on `fieldpulse-salesforce`, so the two cannot share
//! a mistake.
//!
//! # Layout
//! - [`schema`]: standard objects (Rust table) + custom objects and fields
//!   loaded from the SFDX metadata in `salesforce/` (embedded at build time,
//!   or read from a directory).
//! - [`id`]: 15/18-character ids, key prefixes, checksums.
//! - [`store`], [`write`](mod@write): records, indexes, transactions; validation in
//!   Salesforce's order with its error codes.
//! - [`limits`]: the rolling 24-hour API allocation.
//! - [`soql`]: the SOQL subset, evaluation, JSON/CSV rendering.
//! - [`server`]: OAuth2 token endpoint, REST resources, Composite,
//!   Collections, Bulk 2.0 query jobs, limits, fault injection, admin hooks.
//! - [`persist`], [`fixture`]: the state file and seeding.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fieldpulse_sf_emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::new(EmulatorConfig::default(), None)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
//! # Ok(()) }
//! ```
//!
//! Not implemented: platform events, CDC / Pub/Sub, Bulk ingest, SOQL
//! aggregates beyond `COUNT()`, child subqueries, sharing and field-level
//! security (the permission set is deployed, not enforced).

pub mod config;
pub mod error;
pub mod fixture;
pub mod id;
pub mod limits;
pub mod persist;
pub mod schema;
pub mod server;
pub mod soql;
pub mod store;
pub mod time;
pub mod value;
pub mod write;

pub use config::{EmulatorConfig, FaultConfig};
pub use fixture::{Fixture, FixtureObject, SeedReport};
pub use server::{Emulator, EmulatorError, LogEntry, TlsIdentity};
