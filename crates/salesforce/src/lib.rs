//! `fieldpulse-salesforce`: fieldpulse's thin Salesforce REST client on
//! `reqwest` + rustls, written from `reference/salesforce-api.md`.
//!
//! # Layout
//! - [`auth`]: JWT bearer (RS256 via RustCrypto `rsa`) and client-credentials flows.
//! - [`client`]: [`SalesforceClient`]: token cache (single-flight), one
//!   re-auth + replay on `401 INVALID_SESSION_ID`, retries with capped
//!   exponential backoff and full jitter, `Sforce-Limit-Info` + budget guard.
//! - [`sobjects`]: create/get/update/delete, upsert by external ID, describe, limits.
//! - [`collections`]: Collections upsert (≤ 200 per call, per-record results
//!   inspected, retriable records retried), Composite.
//! - [`query`]: SOQL as an async `Stream` following `nextRecordsUrl`.
//! - [`bulk`]: Bulk API 2.0 query jobs with `Sforce-Locator` paging.
//! - [`export`]: incremental, resumable JSON Lines export by `SystemModstamp` (Work Order history sync).
//! - [`ids`]: 15 → 18-character ids.
//! - [`error`]: [`SfError`] / [`ApiError`] from both error shapes, with retry classes.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), fieldpulse_salesforce::SfError> {
//! use fieldpulse_salesforce::{AuthConfig, ClientConfig, SalesforceClient, Secret};
//! let auth = AuthConfig::ClientCredentials {
//!     token_url: "https://acme.my.salesforce.com".into(),
//!     client_id: "3MVG9...".into(),
//!     client_secret: Secret::new("..."),
//! };
//! let client = SalesforceClient::new(ClientConfig::new(auth))?;
//! let mut body = serde_json::Map::new();
//! body.insert("Subject".into(), "Bearing failure predicted".into());
//! let res = client.upsert("Case", "FieldPulse_Key__c", "fp:case:02i:bearing:1", &body).await?;
//! println!("{} created={}", res.id, res.created);
//! # Ok(()) }
//! ```
//!
//! It knows nothing about alerts or Case policy, never logs tokens or keys
//! ([`Secret`]), and does not implement Bulk ingest, Pub/Sub or platform events.

pub mod auth;
pub mod bulk;
pub mod client;
pub mod collections;
pub mod error;
pub mod export;
pub mod ids;
pub mod limits;
pub mod query;
pub mod secret;
pub mod sobjects;

pub use auth::{AuthConfig, Token};
pub use bulk::{BulkOptions, CsvPage};
pub use client::{ClientConfig, ClientStats, RetryPolicy, SalesforceClient};
pub use collections::{root_cause, RecordOutcome, Subrequest, Subresponse};
pub use error::{ApiError, ErrorClass, SfError};
pub use export::{flatten_record, ExportError, ExportMode, ExportReport, ExportSpec, ExportState};
pub use limits::ApiUsage;
pub use query::QueryOptions;
pub use secret::Secret;
pub use sobjects::UpsertResult;
