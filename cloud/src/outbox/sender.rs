//! [`OutboxSender`]: the async loop that delivers pending actions. The SQL is
//! in `store.rs`, the grouping and ordering in `plan.rs`; this file does the
//! network calls and turns their results into row state.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldpulse_salesforce::{ErrorClass, QueryOptions, RecordOutcome, SalesforceClient, SfError};
use futures_util::TryStreamExt;
use rusqlite::Connection;
use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use super::plan::{
    coalesce, is_asset_id, parent_keys, resolve_ids, soql_literal, tier, Group, TIERS,
};
use super::store::{self, Dead, DeadLetter, KeyState, Retry};
use super::{OutboxError, ASSET, KEY_FIELD};

/// Records per Collections call Salesforce accepts.
const MAX_BATCH: usize = 200;
/// Serial numbers per SOQL lookup (keeps the query URI short, reference §2.1).
const SERIALS_PER_QUERY: usize = 50;

/// How the sender paces, retries and saves budget.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Records per Collections call (1..=200).
    pub batch_size: usize,
    /// Time between passes when nobody calls [`OutboxSender::wake`].
    pub poll_interval: Duration,
    /// A record still failing with a retriable error is logged at WARN every
    /// this many attempts. Retriable failures never dead-letter an action:
    /// only permanent ones do.
    pub warn_every_attempts: u32,
    /// First backoff after a failure (doubles per failure).
    pub retry_base: Duration,
    /// Largest backoff.
    pub retry_cap: Duration,
    /// Below this share of the daily API allocation left, deferrable actions wait.
    /// Keep it above the client's own guard margin (`1 - budget_threshold`),
    /// or the client refuses Cases before the outbox starts deferring.
    pub budget_reserve_fraction: f64,
    /// After the daily allocation ran out, how long to wait before probing `/limits`.
    pub budget_probe_interval: Duration,
    /// Keys (records) loaded per pass.
    pub max_keys_per_pass: usize,
    /// How long [`OutboxSender::run`] keeps sending after cancellation.
    pub drain_timeout: Duration,
    /// SQLite busy timeout (the processor writes the same file).
    pub busy_timeout: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            batch_size: MAX_BATCH,
            poll_interval: Duration::from_secs(1),
            warn_every_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            budget_reserve_fraction: 0.2,
            budget_probe_interval: Duration::from_secs(15 * 60),
            max_keys_per_pass: 5_000,
            drain_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SenderConfig {
    fn validate(&self) -> Result<(), OutboxError> {
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(OutboxError::Config(format!(
                "batch_size {} must be 1..=200",
                self.batch_size
            )));
        }
        if self.warn_every_attempts == 0 {
            return Err(OutboxError::Config(
                "warn_every_attempts must be at least 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.budget_reserve_fraction) {
            return Err(OutboxError::Config(format!(
                "budget_reserve_fraction {} must be in [0, 1)",
                self.budget_reserve_fraction
            )));
        }
        if self.max_keys_per_pass == 0 {
            return Err(OutboxError::Config(
                "max_keys_per_pass must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.retry_base.saturating_mul(factor).min(self.retry_cap)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    /// Records Salesforce confirmed (each may stand for several coalesced actions).
    pub sent: usize,
    /// Of which created.
    pub created: usize,
    /// Of which updated.
    pub updated: usize,
    /// Records dead-lettered.
    pub dead: usize,
    /// Records scheduled for another attempt.
    pub retried: usize,
    /// Deferrable records held back because the budget is short.
    pub deferred: usize,
    /// Records waiting for a pending parent.
    pub held: usize,
    /// The pass stopped (or did not start) because the daily budget is used up.
    pub budget_paused: bool,
    /// A whole call failed; the sender backs off.
    pub call_error: Option<String>,
    /// Per confirmed record: milliseconds from its earliest `source_ms` to confirmation.
    pub latencies_ms: Vec<i64>,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStats {
    /// Records by (object, outcome): `created`, `updated`, `rejected` (dead
    /// letters), `retried`, `deferred` (once per pass that held it back).
    pub sent: BTreeMap<(String, String), u64>,
    /// Actions in the dead letters.
    pub dead_letters: u64,
    /// Actions pending.
    pub depth: u64,
    /// Pending actions that failed at least once with a retriable error.
    pub retrying: u64,
    /// The most attempts any pending action has had.
    pub max_attempts: u64,
    /// REST calls the client made.
    pub api_calls: u64,
    /// Daily calls left, from the last `Sforce-Limit-Info`.
    pub remaining_daily_budget: Option<u64>,
    /// Paused until the daily budget recovers.
    pub budget_paused: bool,
}

#[derive(Debug, Default)]
struct SenderState {
    /// No pass sends before this (epoch ms).
    paused_until_ms: i64,
    /// The pause is a budget pause (probe `/limits` before resuming).
    budget_paused: bool,
    /// Whole-call failures in a row (backoff exponent).
    call_failures: u32,
    counters: BTreeMap<(String, String), u64>,
    /// Depth, dead letters and retries as last read.
    last_counts: store::Counts,
}

/// Delivers the outbox to Salesforce. Share it behind an `Arc`; all methods take `&self`.
pub struct OutboxSender {
    conn: Mutex<Connection>,
    client: SalesforceClient,
    config: SenderConfig,
    state: Mutex<SenderState>,
    wake: tokio::sync::Notify,
}

/// A screened record: its group and the fields to send (`$sf_id` resolved).
type Ready = (Group, Map<String, Json>);

/// How one Collections call ended.
enum CallFailure {
    Budget,
    Other(SfError),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every SQLite change is one transaction, so a panic elsewhere cannot
    // leave the connection mid-write; counters are plain numbers.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OutboxSender {
    /// Opens (or creates) the database at `db_path` with its own connection
    /// (WAL, `synchronous=FULL`, busy timeout) and applies [`super::SCHEMA`].
    ///
    /// # Errors
    /// A bad config, or a database that cannot be opened or migrated.
    pub fn open(
        db_path: &Path,
        client: SalesforceClient,
        config: SenderConfig,
    ) -> Result<Self, OutboxError> {
        config.validate()?;
        let open_err = |source| OutboxError::Open {
            path: db_path.to_path_buf(),
            source,
        };
        let conn = Connection::open(db_path).map_err(open_err)?;
        conn.busy_timeout(config.busy_timeout).map_err(open_err)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(open_err)?;
        conn.execute_batch(super::SCHEMA).map_err(open_err)?;
        Ok(OutboxSender {
            conn: Mutex::new(conn),
            client,
            config,
            state: Mutex::new(SenderState::default()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Runs a closure on the connection. SQLite work is a few small
    /// transactions per Collections call (one fsync per ≤ 200 records, far
    /// below the call's own round trip), so it runs inline rather than on a
    /// blocking thread; the lock is never held across an `.await`.
    fn db<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        f(&mut lock(&self.conn))
    }

    fn count(&self, object: &str, outcome: &str, n: u64) {
        if n > 0 {
            *lock(&self.state)
                .counters
                .entry((object.to_string(), outcome.to_string()))
                .or_default() += n;
        }
    }

    /// Asks [`run`](Self::run) to start a pass now (call after committing new actions).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Counters, depth, dead letters and budget. Depth and dead letters are
    /// read from SQLite; if that fails, the last values read are returned
    /// (and the failure logged), so `/metrics` never breaks.
    pub fn stats(&self) -> SenderStats {
        let counts = self.db(|c| store::counts(c));
        let mut state = lock(&self.state);
        let counts = match counts {
            Ok(counts) => {
                state.last_counts = counts;
                counts
            }
            Err(err) => {
                tracing::warn!(error = %err, "Reading outbox depth failed; reporting the last values.");
                state.last_counts
            }
        };
        SenderStats {
            sent: state.counters.clone(),
            dead_letters: counts.dead,
            depth: counts.pending,
            retrying: counts.retrying,
            max_attempts: counts.max_attempts,
            api_calls: self.client.stats().requests,
            remaining_daily_budget: self.client.remaining_daily_calls(),
            budget_paused: state.budget_paused,
        }
    }

    /// Every dead letter, oldest first.
    ///
    /// # Errors
    /// The database could not be read.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, OutboxError> {
        self.db(|c| store::dead_letters(c))
    }

    /// Sends until `cancel` fires (a pass per wake-up or `poll_interval`),
    /// then drains for at most `drain_timeout`. Errors are logged, never fatal.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // Cancel-safe: a dropped `notified`/`sleep` loses nothing.
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // Cancel-safe: rows change only after Salesforce answered, in
                // one transaction; an abandoned pass re-sends by upsert.
                res = self.send_pending() => {
                    if let Err(err) = res {
                        tracing::error!(error = %err, "Outbox pass failed.");
                    }
                }
            }
        }
        let drain = async {
            loop {
                match self.send_pending().await {
                    Ok(report) if report.sent + report.dead + report.retried > 0 => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::error!(error = %err, "Outbox drain failed.");
                        break;
                    }
                }
            }
        };
        if tokio::time::timeout(self.config.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!("Outbox drain timed out; pending actions stay queued.");
        }
    }

    /// Whether the remaining daily budget is below the reserve.
    fn budget_short(&self) -> bool {
        self.client.api_usage().is_some_and(|usage| {
            (usage.remaining() as f64) < self.config.budget_reserve_fraction * usage.max as f64
        })
    }

    /// One pass over the due actions.
    ///
    /// # Errors
    /// Only SQLite failures; Salesforce failures are row states and report fields.
    pub async fn send_pending(&self) -> Result<SendReport, OutboxError> {
        let mut report = SendReport::default();
        let now = now_ms();
        let (paused_until, budget_paused) = {
            let state = lock(&self.state);
            (state.paused_until_ms, state.budget_paused)
        };
        if now < paused_until {
            report.budget_paused = budget_paused;
            return Ok(report);
        }
        if budget_paused && !self.probe_budget().await {
            report.budget_paused = true;
            return Ok(report);
        }
        let rows = self.db(|c| store::load_due(c, now, self.config.max_keys_per_pass))?;
        let mut groups = coalesce(rows);
        groups.sort_by_key(|g| (tier(&g.sobject), g.priority, g.source_ms));
        for t in 0..TIERS {
            let tier_groups: Vec<Group> = groups
                .iter()
                .filter(|g| tier(&g.sobject) == Some(t))
                .cloned()
                .collect();
            let ready = self.screen(tier_groups, &mut report)?;
            // Urgent records first; whether deferrable ones may follow is
            // decided on the usage those calls just reported.
            let mut urgent = Vec::new();
            let mut deferrable = Vec::new();
            for (group, fields) in ready {
                // A Case the outbox never created is a create: never deferred.
                let may_wait = group.deferrable
                    && (group.sobject != "Case"
                        || self.db(|c| store::ever_sent(c, &group.sobject, &group.ext_key))?);
                if may_wait {
                    deferrable.push((group, fields));
                } else {
                    urgent.push((group, fields));
                }
            }
            if let Err(failure) = self.send_ready(&urgent, &mut report).await? {
                self.pause_after(failure, &mut report);
                return Ok(report);
            }
            if self.budget_short() {
                for (group, _) in &deferrable {
                    self.count(&group.sobject, "deferred", 1);
                }
                report.deferred += deferrable.len();
                continue;
            }
            if let Err(failure) = self.send_ready(&deferrable, &mut report).await? {
                self.pause_after(failure, &mut report);
                return Ok(report);
            }
        }
        lock(&self.state).call_failures = 0;
        Ok(report)
    }

    /// Sends screened records grouped by sObject, in chunks of `batch_size`;
    /// stops at the first whole-call failure.
    async fn send_ready(
        &self,
        ready: &[Ready],
        report: &mut SendReport,
    ) -> Result<Result<(), CallFailure>, OutboxError> {
        let mut objects: Vec<&str> = Vec::new();
        for (group, _) in ready {
            if !objects.contains(&group.sobject.as_str()) {
                objects.push(&group.sobject);
            }
        }
        for object in objects {
            let of_object: Vec<&Ready> =
                ready.iter().filter(|(g, _)| g.sobject == object).collect();
            for chunk in of_object.chunks(self.config.batch_size) {
                let res = if object == ASSET {
                    self.send_assets(chunk, report).await?
                } else {
                    self.send_upserts(object, chunk, report).await?
                };
                if res.is_err() {
                    return Ok(res);
                }
            }
        }
        Ok(Ok(()))
    }

    /// After a budget pause: asks `/limits` whether calls are allowed again.
    async fn probe_budget(&self) -> bool {
        let res = self.client.limits().await;
        let ok = match res {
            Ok(_) => self.client.check_budget().is_ok(),
            Err(err) => err.class() != ErrorClass::Budget,
        };
        let mut state = lock(&self.state);
        if ok {
            tracing::info!("Salesforce API budget available again; outbox resumes.");
            state.budget_paused = false;
            state.paused_until_ms = 0;
        } else {
            state.paused_until_ms = now_ms() + self.config.budget_probe_interval.as_millis() as i64;
        }
        ok
    }

    fn pause_after(&self, failure: CallFailure, report: &mut SendReport) {
        let mut state = lock(&self.state);
        match failure {
            CallFailure::Budget => {
                tracing::warn!("Salesforce daily API budget exhausted; outbox paused.");
                state.budget_paused = true;
                state.paused_until_ms =
                    now_ms() + self.config.budget_probe_interval.as_millis() as i64;
                report.budget_paused = true;
            }
            CallFailure::Other(err) => {
                state.call_failures += 1;
                let delay = self.config.backoff(state.call_failures);
                if err.class() == ErrorClass::Permanent {
                    tracing::error!(error = %err, delay_ms = delay.as_millis() as u64, "Salesforce refused an outbox call; check credentials and metadata.");
                } else {
                    tracing::warn!(error = %err, delay_ms = delay.as_millis() as u64, "Outbox call failed; backing off.");
                }
                state.paused_until_ms = now_ms() + delay.as_millis() as i64;
                report.call_error = Some(err.to_string());
            }
        }
    }

    /// Decides which groups of one tier may go out: holds children of
    /// pending parents, dead-letters children of dead ones and corrupt rows,
    /// and resolves `$sf_id` references.
    fn screen(
        &self,
        groups: Vec<Group>,
        report: &mut SendReport,
    ) -> Result<Vec<Ready>, OutboxError> {
        let mut ready = Vec::new();
        let mut dead = Vec::new();
        for group in groups {
            if group.corrupt {
                dead.push(dead_of(
                    &group,
                    "CORRUPT_ACTION",
                    "stored fields are not a JSON object".into(),
                    Vec::new(),
                ));
                continue;
            }
            let mut states = HashMap::new();
            for key in parent_keys(&group.fields) {
                let state = self.db(|c| store::key_state(c, &key))?;
                states.insert(key, state);
            }
            if let Some((key, code)) = states.iter().find_map(|(k, s)| match s {
                KeyState::Dead(code) => Some((k.clone(), code.clone())),
                _ => None,
            }) {
                dead.push(dead_of(
                    &group,
                    "PARENT_DEAD",
                    format!("parent {key} is dead ({code})"),
                    Vec::new(),
                ));
                continue;
            }
            if states.values().any(|s| *s == KeyState::Pending) {
                report.held += 1;
                continue;
            }
            let Some(fields) = resolve_ids(&group.fields, |key| match states.get(key) {
                Some(KeyState::Sent(id)) => Some(id.clone()),
                _ => None,
            }) else {
                dead.push(dead_of(
                    &group,
                    "UNKNOWN_PARENT",
                    "a $sf_id reference names a key the outbox never delivered".into(),
                    Vec::new(),
                ));
                continue;
            };
            ready.push((group, fields));
        }
        self.bury(dead, report)?;
        Ok(ready)
    }

    fn bury(&self, dead: Vec<Dead>, report: &mut SendReport) -> Result<(), OutboxError> {
        if dead.is_empty() {
            return Ok(());
        }
        for d in &dead {
            tracing::warn!(object = %d.sobject, key = %d.ext_key, code = %d.code, message = %d.message, "Outbox action dead-lettered.");
            self.count(&d.sobject, "rejected", 1);
        }
        report.dead += dead.len();
        self.db(|c| store::mark_dead(c, &dead, now_ms()))
    }

    /// One Collections upsert on `FieldPulse_Key__c`.
    async fn send_upserts(
        &self,
        object: &str,
        chunk: &[&Ready],
        report: &mut SendReport,
    ) -> Result<Result<(), CallFailure>, OutboxError> {
        let records: Vec<Map<String, Json>> = chunk
            .iter()
            .map(|(group, fields)| {
                let mut record = fields.clone();
                record.insert(KEY_FIELD.into(), Json::String(group.ext_key.clone()));
                record
            })
            .collect();
        match self
            .client
            .upsert_collection(object, KEY_FIELD, &records)
            .await
        {
            Ok(outcomes) => {
                let groups: Vec<&Group> = chunk.iter().map(|(g, _)| g).collect();
                self.apply(&groups, outcomes, report)?;
                Ok(Ok(()))
            }
            Err(err) => Ok(Err(failure_of(err))),
        }
    }

    /// Asset health: resolve Ids (cache, then SOQL by serial), then one Collections update.
    async fn send_assets(
        &self,
        chunk: &[&Ready],
        report: &mut SendReport,
    ) -> Result<Result<(), CallFailure>, OutboxError> {
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut unresolved = Vec::new();
        for (group, _) in chunk {
            if is_asset_id(&group.ext_key) {
                ids.insert(group.ext_key.clone(), group.ext_key.clone());
            } else if let Some(id) = self.db(|c| store::cached_asset_id(c, &group.ext_key))? {
                ids.insert(group.ext_key.clone(), id);
            } else {
                unresolved.push(group.ext_key.clone());
            }
        }
        let mut matches: HashMap<String, Vec<String>> = HashMap::new();
        for serials in unresolved.chunks(SERIALS_PER_QUERY) {
            let list: Vec<String> = serials.iter().map(|s| soql_literal(s)).collect();
            let soql = format!(
                "SELECT Id, SerialNumber FROM Asset WHERE SerialNumber IN ({})",
                list.join(", ")
            );
            let rows: Vec<Json> = match self
                .client
                .query(&soql, QueryOptions::default())
                .try_collect()
                .await
            {
                Ok(rows) => rows,
                Err(err) => return Ok(Err(failure_of(err))),
            };
            for row in rows {
                if let (Some(id), Some(serial)) = (
                    row.get("Id").and_then(Json::as_str),
                    row.get("SerialNumber").and_then(Json::as_str),
                ) {
                    matches
                        .entry(serial.to_string())
                        .or_default()
                        .push(id.to_string());
                }
            }
        }
        let mut dead = Vec::new();
        let now = now_ms();
        for serial in &unresolved {
            let group = chunk
                .iter()
                .map(|(g, _)| g)
                .find(|g| &g.ext_key == serial)
                .expect("unresolved serials come from this chunk");
            // SOQL `=`/`IN` on text is case-insensitive: keep exact matches only.
            match matches.get(serial).map(Vec::as_slice).unwrap_or_default() {
                [id] => {
                    self.db(|c| store::cache_asset_id(c, serial, id, now))?;
                    ids.insert(serial.clone(), id.clone());
                }
                [] => dead.push(dead_of(
                    group,
                    "ASSET_NOT_FOUND",
                    format!("no Asset has SerialNumber {serial}"),
                    vec!["SerialNumber".into()],
                )),
                many => dead.push(dead_of(
                    group,
                    "ASSET_AMBIGUOUS",
                    format!(
                        "{} Assets have SerialNumber {serial}: {}",
                        many.len(),
                        many.join(", ")
                    ),
                    vec!["SerialNumber".into()],
                )),
            }
        }
        self.bury(dead, report)?;
        let targets: Vec<(&Group, String, Map<String, Json>)> = chunk
            .iter()
            .filter_map(|(g, fields)| {
                ids.get(&g.ext_key)
                    .map(|id| (g, id.clone(), fields.clone()))
            })
            .collect();
        if targets.is_empty() {
            return Ok(Ok(()));
        }
        let records: Vec<(String, Map<String, Json>)> = targets
            .iter()
            .map(|(_, id, fields)| (id.clone(), fields.clone()))
            .collect();
        match self.client.update_collection(ASSET, &records).await {
            Ok(outcomes) => {
                for ((group, _, _), outcome) in targets.iter().zip(outcomes.iter()) {
                    let stale = matches!(outcome, RecordOutcome::Failed(errors)
                        if errors.iter().any(|e| matches!(e.code.as_str(), "INVALID_CROSS_REFERENCE_KEY" | "ENTITY_IS_DELETED")));
                    if stale && !is_asset_id(&group.ext_key) {
                        // The cached Id went away (deleted or merged): look it up again next time.
                        self.db(|c| store::forget_asset_id(c, &group.ext_key))?;
                    }
                }
                let groups: Vec<&Group> = targets.iter().map(|(g, _, _)| *g).collect();
                self.apply(&groups, outcomes, report)?;
                Ok(Ok(()))
            }
            Err(err) => Ok(Err(failure_of(err))),
        }
    }

    /// Turns per-record outcomes into row states.
    fn apply(
        &self,
        groups: &[&Group],
        outcomes: Vec<RecordOutcome>,
        report: &mut SendReport,
    ) -> Result<(), OutboxError> {
        let now = now_ms();
        let mut sent = Vec::new();
        let mut retries = Vec::new();
        let mut dead = Vec::new();
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome {
                RecordOutcome::Created(id) | RecordOutcome::Updated(id) if id.is_empty() => {
                    retries.push(self.retry_of(group, "confirmation without an id", now));
                }
                RecordOutcome::Created(id) => {
                    report.created += 1;
                    self.count(&group.sobject, "created", 1);
                    sent.push((group, id));
                }
                RecordOutcome::Updated(id) => {
                    report.updated += 1;
                    self.count(&group.sobject, "updated", 1);
                    sent.push((group, id));
                }
                RecordOutcome::Failed(errors) => {
                    // Only a permanent error kills an action. Retriable ones
                    // (and a per-record daily limit, which passes) keep it
                    // pending with capped backoff however long they last:
                    // a Case is never lost to lock contention or an outage.
                    let permanent = errors
                        .iter()
                        .find(|e| !e.is_retriable() && !e.is_daily_limit())
                        .cloned();
                    if let Some(cause) = permanent {
                        dead.push(dead_of(group, &cause.code, cause.message, cause.fields));
                        continue;
                    }
                    let error = errors.first().map_or_else(
                        || "UNKNOWN: failed without an error".to_string(),
                        |e| format!("{}: {}", e.code, e.message),
                    );
                    let attempts = group.attempts + 1;
                    if attempts % self.config.warn_every_attempts == 0 {
                        tracing::warn!(object = %group.sobject, key = %group.ext_key, attempts, %error, "Outbox record keeps failing with a retriable error; still retrying.");
                    }
                    self.count(&group.sobject, "retried", 1);
                    retries.push(self.retry_of(group, &error, now));
                }
            }
        }
        report.sent += sent.len();
        report
            .latencies_ms
            .extend(sent.iter().map(|(g, _)| (now - g.source_ms).max(0)));
        let sent_rows: Vec<(Vec<i64>, String)> = sent
            .into_iter()
            .map(|(g, id)| (g.row_ids.clone(), id))
            .collect();
        self.db(|c| store::mark_sent(c, &sent_rows, now))?;
        report.retried += retries.len();
        for retry in &retries {
            tracing::debug!(error = %retry.error, "Outbox record will be retried.");
        }
        self.db(|c| store::mark_retry(c, &retries))?;
        self.bury(dead, report)
    }

    fn retry_of(&self, group: &Group, error: &str, now: i64) -> Retry {
        Retry {
            ids: group.row_ids.clone(),
            next_attempt_ms: now + self.config.backoff(group.attempts + 1).as_millis() as i64,
            error: error.to_string(),
        }
    }
}

fn dead_of(group: &Group, code: &str, message: String, fields: Vec<String>) -> Dead {
    Dead {
        ids: group.row_ids.clone(),
        sobject: group.sobject.clone(),
        ext_key: group.ext_key.clone(),
        code: code.to_string(),
        message,
        fields,
    }
}

fn failure_of(err: SfError) -> CallFailure {
    if err.class() == ErrorClass::Budget {
        CallFailure::Budget
    } else {
        CallFailure::Other(err)
    }
}
