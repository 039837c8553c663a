//! The Salesforce outbox: actions the processor decided, stored in SQLite in
//! the same transaction as its checkpoint ([`enqueue`]), and delivered by
//! [`OutboxSender`] as Collections upserts on `FieldPulse_Key__c`.
//!
//! # Tables ([`SCHEMA`])
//! `outbox_actions` holds one row per [`Action`]: `pending` until Salesforce
//! confirms it (`sent`, with the record's Salesforce Id) or rejects it for
//! good (`dead`, with the error in `outbox_dead_letters`). `attempts`,
//! `next_attempt_ms` and `last_error` drive retries. `outbox_asset_ids`
//! caches Asset Ids looked up by serial number. Rows are never deleted by
//! the sender.
//!
//! # A send pass ([`OutboxSender::send_pending`])
//! 1. Load every pending row of the keys that have a row due, and coalesce
//!    rows of one (sObject, key) into one record (later fields win, the
//!    earliest `source_ms` is kept): an evolving episode costs one call.
//! 2. Send in dependency order — Case and MaintenancePlan, then
//!    Asset_Alert__c, MaintenanceAsset and Asset, then AI_Insight__c —
//!    grouped by sObject into Collections calls of at most `batch_size`,
//!    most urgent first. A record whose parent key (`{"Case__r":
//!    {"FieldPulse_Key__c": k}}`, or `{"$sf_id": k}` for a field that takes
//!    the parent's Salesforce Id) is still pending waits; one whose parent is
//!    dead dies with `PARENT_DEAD`.
//! 3. Per record: confirmed → `sent`; retriable (`UNABLE_TO_LOCK_ROW`, ...,
//!    after the client's own retries) → one more `attempts`, capped
//!    exponential backoff, and pending again however many attempts it takes
//!    (logged at WARN every `warn_every_attempts`); permanent (the client's
//!    [`ApiError::is_retriable`](fieldpulse_salesforce::ApiError::is_retriable)
//!    is false) → dead letter with code, message and fields.
//!
//! A whole call that fails (transport, 5xx after the client's retries, auth)
//! changes no row: the sender pauses with backoff. A daily
//! `REQUEST_LIMIT_EXCEEDED` or the client's budget guard pauses it for
//! `budget_probe_interval`, then a `/limits` probe decides. While the
//! remaining daily budget is below `budget_reserve_fraction`, deferrable
//! records wait and everything else (Cases first) keeps flowing; a Case the
//! outbox never created is never deferred. Nothing is dropped.
//!
//! # Assets
//! fieldpulse never creates Assets, so an `Asset` action is an update by Id
//! (Collections update), not an upsert: its `ext_key` is the Asset's
//! Salesforce Id (`02i…`) or its `SerialNumber`, looked up once by SOQL and
//! cached. No match → dead letter `ASSET_NOT_FOUND`; several →
//! `ASSET_AMBIGUOUS`.
//!
//! # Dead letters
//! [`DeadLetters`] (`fieldpulse cloud dead-letters list|replay`) lists them
//! and puts chosen ones back to `pending` once the org is fixed; the upsert
//! on the key makes a replay safe to repeat.
//!
//! **Invariant:** a row is marked `sent` only after Salesforce confirmed it;
//! a crash in between re-sends it, and the upsert on its key updates instead
//! of duplicating.

mod dead_letters;
mod plan;
mod sender;
mod store;

pub use dead_letters::DeadLetters;
pub use plan::tier;
pub use sender::{OutboxSender, SendReport, SenderConfig, SenderStats};
pub use store::{enqueue, DeadLetter, Replay, SCHEMA};

use serde_json::{Map, Value as Json};

/// The external-ID field every record fieldpulse writes carries.
pub const KEY_FIELD: &str = "FieldPulse_Key__c";
/// The sObject addressed by Id or serial number instead of `FieldPulse_Key__c`.
pub const ASSET: &str = "Asset";
/// Marker for a field that takes another outbox record's Salesforce Id:
/// `{"Target_Record_Id__c": {"$sf_id": "fp:case:..."}}`.
pub const SF_ID_OF: &str = "$sf_id";

/// One thing to write to Salesforce.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `Case`, `Asset_Alert__c`, `AI_Insight__c`, `MaintenancePlan`, `MaintenanceAsset` or `Asset`.
    pub sobject: String,
    /// The `FieldPulse_Key__c` value; for `Asset`, the Asset's Salesforce Id or `SerialNumber`.
    pub ext_key: String,
    /// Fields to write (not the key). Parents by external ID:
    /// `{"Case__r": {"FieldPulse_Key__c": "..."}}`; a parent's Salesforce Id: `{"$sf_id": "<key>"}`.
    pub fields: Map<String, Json>,
    /// 0 = most urgent (Critical Case) .. 3; decides order and what may wait.
    pub priority: u8,
    /// A low-priority update that may wait while the API budget is short.
    pub deferrable: bool,
    /// When the triggering batch was appended to the ingest log (epoch ms).
    pub source_ms: i64,
}

/// Everything the outbox can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Opening or preparing the database failed.
    #[error("opening outbox database {path}")]
    Open {
        /// Database file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("outbox sqlite: {context}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The action cannot be sent as given.
    #[error("invalid outbox action {sobject} {ext_key:?}: {reason}")]
    InvalidAction {
        /// Its sObject.
        sobject: String,
        /// Its key.
        ext_key: String,
        /// What is wrong.
        reason: String,
    },
    /// The sender configuration is not usable.
    #[error("outbox sender config: {0}")]
    Config(String),
    /// [`DeadLetters::replay`] was asked for an action that is not dead.
    #[error("action {action_id} is not a dead letter")]
    NoDeadLetter {
        /// The action id asked for.
        action_id: i64,
    },
}
