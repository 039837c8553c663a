//! The outbox tables and every SQL statement on them: [`SCHEMA`],
//! [`enqueue`] (inside the processor's transaction), and the sender's reads
//! and state changes. Synchronous; the sender calls it between network calls.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value as Json};

use super::plan::{tier, PendingRow};
use super::{Action, OutboxError, ASSET};

/// DDL for the outbox tables; the store runs it at open (idempotent: `CREATE TABLE IF NOT EXISTS`).
///
/// - `outbox_actions`: one row per enqueued [`Action`]. `state` is
///   `pending` → `sent` (Salesforce confirmed; `sf_id` recorded) or `dead`
///   (a permanent error; see `outbox_dead_letters`). Rows are never deleted
///   by the sender.
/// - `outbox_dead_letters`: the error that killed an action (code, message,
///   fields, JSON array), one row per action; removed when an operator
///   replays the action (`dead` → `pending` again).
/// - `outbox_asset_ids`: Asset `SerialNumber` → Salesforce Id, resolved once by SOQL.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox_actions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sobject         TEXT    NOT NULL,
    ext_key         TEXT    NOT NULL,
    fields          TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    may_defer       INTEGER NOT NULL,
    source_ms       INTEGER NOT NULL,
    enqueued_ms     INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    sf_id           TEXT,
    sent_ms         INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_actions_due ON outbox_actions (state, next_attempt_ms);
CREATE INDEX IF NOT EXISTS outbox_actions_key ON outbox_actions (ext_key, state);
CREATE TABLE IF NOT EXISTS outbox_dead_letters (
    action_id   INTEGER PRIMARY KEY REFERENCES outbox_actions (id),
    sobject     TEXT    NOT NULL,
    ext_key     TEXT    NOT NULL,
    error_code  TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    fields      TEXT    NOT NULL,
    dead_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_asset_ids (
    serial_number TEXT    PRIMARY KEY,
    sf_id         TEXT    NOT NULL,
    resolved_ms   INTEGER NOT NULL
);
";

/// Inserts one action inside the caller's transaction; returns its row id.
///
/// # Errors
/// [`OutboxError::InvalidAction`] for an unknown sObject, an empty or
/// ill-formed key, a priority above 3 or fields holding the key field;
/// [`OutboxError::Sqlite`] when the insert fails (e.g. [`SCHEMA`] not applied).
pub fn enqueue(tx: &Transaction<'_>, action: &Action, now_ms: i64) -> Result<i64, OutboxError> {
    validate(action)?;
    tx.execute(
        "INSERT INTO outbox_actions (sobject, ext_key, fields, priority, may_defer, source_ms, enqueued_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            action.sobject,
            action.ext_key,
            Json::Object(action.fields.clone()).to_string(),
            action.priority,
            action.deferrable,
            action.source_ms,
            now_ms
        ],
    )
    .map_err(|source| OutboxError::Sqlite {
        context: "enqueueing an action",
        source,
    })?;
    Ok(tx.last_insert_rowid())
}

fn validate(action: &Action) -> Result<(), OutboxError> {
    let invalid = |reason: String| OutboxError::InvalidAction {
        sobject: action.sobject.clone(),
        ext_key: action.ext_key.clone(),
        reason,
    };
    if tier(&action.sobject).is_none() {
        return Err(invalid("not an object the outbox writes".into()));
    }
    if action.priority > 3 {
        return Err(invalid(format!("priority {} is above 3", action.priority)));
    }
    if action.ext_key.is_empty() || action.ext_key.len() > 255 {
        return Err(invalid("key must be 1 to 255 characters".into()));
    }
    // Keys go into URLs and SOQL-free upserts: the reference (§2.7) allows
    // only these characters. Asset keys are Ids or serial numbers instead.
    if action.sobject != ASSET
        && !action
            .ext_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    {
        return Err(invalid("key may only use [A-Za-z0-9_:-]".into()));
    }
    if action
        .fields
        .keys()
        .any(|k| k.eq_ignore_ascii_case(super::KEY_FIELD) || k.eq_ignore_ascii_case("Id"))
    {
        return Err(invalid(format!(
            "fields must not hold {} or Id (the key is ext_key)",
            super::KEY_FIELD
        )));
    }
    Ok(())
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Sqlite { context, source }
}

/// Every pending row of the (sobject, key) pairs that have a row due at
/// `now_ms`, oldest first, for at most `max_keys` pairs (most urgent first).
pub(crate) fn load_due(
    conn: &Connection,
    now_ms: i64,
    max_keys: usize,
) -> Result<Vec<PendingRow>, OutboxError> {
    let mut stmt = conn
        .prepare(
            "WITH due AS (
                 SELECT sobject, ext_key, MIN(priority) AS p, MIN(id) AS first
                 FROM outbox_actions
                 WHERE state = 'pending' AND next_attempt_ms <= ?1
                 GROUP BY sobject, ext_key
                 ORDER BY p, first
                 LIMIT ?2)
             SELECT a.id, a.sobject, a.ext_key, a.fields, a.priority, a.may_defer,
                    a.source_ms, a.attempts
             FROM outbox_actions a JOIN due d ON a.sobject = d.sobject AND a.ext_key = d.ext_key
             WHERE a.state = 'pending'
             ORDER BY a.id",
        )
        .map_err(sql("preparing the due query"))?;
    let rows = stmt
        .query_map(params![now_ms, max_keys as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, u8>(4)?,
                row.get::<_, bool>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, u32>(7)?,
            ))
        })
        .map_err(sql("reading due actions"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, sobject, ext_key, fields, priority, deferrable, source_ms, attempts) =
            row.map_err(sql("reading a due action"))?;
        // A row whose JSON does not parse cannot be sent; it is handed back
        // with empty fields and `corrupt` set, and the sender dead-letters it.
        let parsed = serde_json::from_str::<Map<String, Json>>(&fields);
        out.push(PendingRow {
            id,
            sobject,
            ext_key,
            corrupt: parsed.is_err(),
            fields: parsed.unwrap_or_default(),
            priority,
            deferrable,
            source_ms,
            attempts,
        });
    }
    Ok(out)
}

/// What the outbox knows about a key it may reference as a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Confirmed by Salesforce at least once; the latest Salesforce Id.
    Sent(String),
    /// Not confirmed yet and still pending.
    Pending,
    /// Never confirmed and dead: the dead letter's code.
    Dead(String),
    /// The outbox has no row for it (written before, or never).
    Unknown,
}

/// The state of `ext_key` across every sObject.
pub(crate) fn key_state(conn: &Connection, ext_key: &str) -> Result<KeyState, OutboxError> {
    let sent: Option<String> = conn
        .query_row(
            "SELECT sf_id FROM outbox_actions WHERE ext_key = ?1 AND state = 'sent'
             ORDER BY id DESC LIMIT 1",
            params![ext_key],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql("reading a parent key"))?;
    if let Some(id) = sent {
        return Ok(KeyState::Sent(id));
    }
    let pending: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox_actions WHERE ext_key = ?1 AND state = 'pending')",
            params![ext_key],
            |row| row.get(0),
        )
        .map_err(sql("reading a parent key"))?;
    if pending {
        return Ok(KeyState::Pending);
    }
    let dead: Option<String> = conn
        .query_row(
            "SELECT d.error_code FROM outbox_dead_letters d
             WHERE d.ext_key = ?1 ORDER BY d.action_id DESC LIMIT 1",
            params![ext_key],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql("reading a parent key"))?;
    Ok(dead.map_or(KeyState::Unknown, KeyState::Dead))
}

/// Whether Salesforce ever confirmed a row of (sobject, key).
pub(crate) fn ever_sent(
    conn: &Connection,
    sobject: &str,
    ext_key: &str,
) -> Result<bool, OutboxError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM outbox_actions
                        WHERE sobject = ?1 AND ext_key = ?2 AND state = 'sent')",
        params![sobject, ext_key],
        |row| row.get(0),
    )
    .map_err(sql("reading sent state"))
}

/// Marks rows confirmed by Salesforce.
pub(crate) fn mark_sent(
    conn: &mut Connection,
    sent: &[(Vec<i64>, String)],
    now_ms: i64,
) -> Result<(), OutboxError> {
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    {
        let mut stmt = tx
            .prepare(
                "UPDATE outbox_actions SET state = 'sent', sf_id = ?2, sent_ms = ?3, last_error = NULL
                 WHERE id = ?1 AND state = 'pending'",
            )
            .map_err(sql("preparing mark sent"))?;
        for (ids, sf_id) in sent {
            for id in ids {
                stmt.execute(params![id, sf_id, now_ms])
                    .map_err(sql("marking an action sent"))?;
            }
        }
    }
    tx.commit().map_err(sql("committing sent actions"))
}

/// One row set to retry later.
pub(crate) struct Retry {
    pub ids: Vec<i64>,
    pub next_attempt_ms: i64,
    pub error: String,
}

/// Schedules rows for a later attempt, counting one more attempt.
pub(crate) fn mark_retry(conn: &mut Connection, retries: &[Retry]) -> Result<(), OutboxError> {
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    {
        let mut stmt = tx
            .prepare(
                "UPDATE outbox_actions
                 SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3
                 WHERE id = ?1 AND state = 'pending'",
            )
            .map_err(sql("preparing mark retry"))?;
        for retry in retries {
            for id in &retry.ids {
                stmt.execute(params![id, retry.next_attempt_ms, retry.error])
                    .map_err(sql("scheduling a retry"))?;
            }
        }
    }
    tx.commit().map_err(sql("committing retries"))
}

/// One row set that failed for good.
pub(crate) struct Dead {
    pub ids: Vec<i64>,
    pub sobject: String,
    pub ext_key: String,
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

/// Moves rows to the dead letters, keeping the error.
pub(crate) fn mark_dead(
    conn: &mut Connection,
    dead: &[Dead],
    now_ms: i64,
) -> Result<(), OutboxError> {
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    {
        let mut update = tx
            .prepare(
                "UPDATE outbox_actions SET state = 'dead', last_error = ?2
                 WHERE id = ?1 AND state = 'pending'",
            )
            .map_err(sql("preparing mark dead"))?;
        let mut insert = tx
            .prepare(
                "INSERT OR REPLACE INTO outbox_dead_letters
                 (action_id, sobject, ext_key, error_code, message, fields, dead_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql("preparing dead letter insert"))?;
        for d in dead {
            let fields = Json::from(d.fields.clone()).to_string();
            let summary = format!("{}: {}", d.code, d.message);
            for id in &d.ids {
                if update
                    .execute(params![id, summary])
                    .map_err(sql("marking an action dead"))?
                    == 1
                {
                    insert
                        .execute(params![
                            id, d.sobject, d.ext_key, d.code, d.message, fields, now_ms
                        ])
                        .map_err(sql("writing a dead letter"))?;
                }
            }
        }
    }
    tx.commit().map_err(sql("committing dead letters"))
}

/// A cached Asset Id for a serial number.
pub(crate) fn cached_asset_id(
    conn: &Connection,
    serial: &str,
) -> Result<Option<String>, OutboxError> {
    conn.query_row(
        "SELECT sf_id FROM outbox_asset_ids WHERE serial_number = ?1",
        params![serial],
        |row| row.get(0),
    )
    .optional()
    .map_err(sql("reading the asset id cache"))
}

/// Remembers an Asset Id for a serial number.
pub(crate) fn cache_asset_id(
    conn: &Connection,
    serial: &str,
    sf_id: &str,
    now_ms: i64,
) -> Result<(), OutboxError> {
    conn.execute(
        "INSERT OR REPLACE INTO outbox_asset_ids (serial_number, sf_id, resolved_ms) VALUES (?1, ?2, ?3)",
        params![serial, sf_id, now_ms],
    )
    .map(|_| ())
    .map_err(sql("writing the asset id cache"))
}

/// Forgets a cached Asset Id (the record was deleted or merged in Salesforce).
pub(crate) fn forget_asset_id(conn: &Connection, serial: &str) -> Result<(), OutboxError> {
    conn.execute(
        "DELETE FROM outbox_asset_ids WHERE serial_number = ?1",
        params![serial],
    )
    .map(|_| ())
    .map_err(sql("clearing the asset id cache"))
}

/// Row counts for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Pending rows.
    pub pending: u64,
    /// Dead rows.
    pub dead: u64,
    /// Pending rows that failed at least once.
    pub retrying: u64,
    /// The most attempts of any pending row.
    pub max_attempts: u64,
}

/// Pending, dead and retrying rows.
pub(crate) fn counts(conn: &Connection) -> Result<Counts, OutboxError> {
    conn.query_row(
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'dead'), 0),
                COALESCE(SUM(state = 'pending' AND attempts > 0), 0),
                COALESCE(MAX(CASE WHEN state = 'pending' THEN attempts END), 0)
         FROM outbox_actions",
        [],
        |row| {
            Ok(Counts {
                pending: row.get::<_, i64>(0)? as u64,
                dead: row.get::<_, i64>(1)? as u64,
                retrying: row.get::<_, i64>(2)? as u64,
                max_attempts: row.get::<_, i64>(3)? as u64,
            })
        },
    )
    .map_err(sql("counting actions"))
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The action's row id.
    pub action_id: i64,
    /// Its sObject.
    pub sobject: String,
    /// Its key.
    pub ext_key: String,
    /// Salesforce's error code, or `PARENT_DEAD` / `ASSET_NOT_FOUND` / ... for the outbox's own verdicts.
    pub error_code: String,
    /// The error message.
    pub message: String,
    /// Field API names the error is about.
    pub fields: Vec<String>,
    /// When it was dead-lettered (epoch ms).
    pub dead_ms: i64,
}

/// Every dead letter, oldest first.
pub(crate) fn dead_letters(conn: &Connection) -> Result<Vec<DeadLetter>, OutboxError> {
    let mut stmt = conn
        .prepare(
            "SELECT action_id, sobject, ext_key, error_code, message, fields, dead_ms
             FROM outbox_dead_letters ORDER BY action_id",
        )
        .map_err(sql("preparing the dead letter query"))?;
    let rows = stmt
        .query_map([], |row| {
            let fields: String = row.get(5)?;
            Ok(DeadLetter {
                action_id: row.get(0)?,
                sobject: row.get(1)?,
                ext_key: row.get(2)?,
                error_code: row.get(3)?,
                message: row.get(4)?,
                fields: serde_json::from_str(&fields).unwrap_or_default(),
                dead_ms: row.get(6)?,
            })
        })
        .map_err(sql("reading dead letters"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading a dead letter"))
}

/// Which dead letters [`DeadLetters::replay`](super::DeadLetters::replay) puts back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The dead letter of this action id.
    One(i64),
    /// Every dead letter.
    All,
}

/// Puts dead actions back to `pending` (attempts reset, due now) and removes
/// their dead letters, in one transaction; returns the dead letters replayed.
/// Fields a later, already sent row of the same record wrote are laid over
/// the replayed row, so a replay never rolls Salesforce back to older values.
/// The sender upserts on the key, so replaying never duplicates a record.
pub(crate) fn replay_dead(
    conn: &mut Connection,
    which: Replay,
) -> Result<Vec<DeadLetter>, OutboxError> {
    let letters: Vec<DeadLetter> = dead_letters(conn)?
        .into_iter()
        .filter(|d| which == Replay::All || which == Replay::One(d.action_id))
        .collect();
    if let (Replay::One(action_id), true) = (which, letters.is_empty()) {
        return Err(OutboxError::NoDeadLetter { action_id });
    }
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    {
        let mut later_sent = tx
            .prepare(
                "SELECT fields FROM outbox_actions
                 WHERE sobject = ?1 AND ext_key = ?2 AND id > ?3 AND state = 'sent'
                 ORDER BY id",
            )
            .map_err(sql("preparing the later rows query"))?;
        let mut revive = tx
            .prepare(
                "UPDATE outbox_actions
                 SET state = 'pending', attempts = 0, next_attempt_ms = 0,
                     last_error = ?2, fields = COALESCE(?3, fields)
                 WHERE id = ?1 AND state = 'dead'",
            )
            .map_err(sql("preparing the replay"))?;
        let mut forget = tx
            .prepare("DELETE FROM outbox_dead_letters WHERE action_id = ?1")
            .map_err(sql("preparing the dead letter delete"))?;
        for d in &letters {
            let own: Option<String> = tx
                .query_row(
                    "SELECT fields FROM outbox_actions WHERE id = ?1",
                    params![d.action_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql("reading a dead action"))?;
            let later: Vec<String> = later_sent
                .query_map(params![d.sobject, d.ext_key, d.action_id], |row| row.get(0))
                .map_err(sql("reading later rows"))?
                .collect::<Result<_, _>>()
                .map_err(sql("reading a later row"))?;
            // A row whose JSON does not parse stays as it is (and dies again
            // as CORRUPT_ACTION); otherwise later sent fields win.
            let merged = own
                .as_deref()
                .and_then(|f| serde_json::from_str::<Map<String, Json>>(f).ok())
                .filter(|_| !later.is_empty())
                .map(|mut fields| {
                    for text in &later {
                        if let Ok(Json::Object(newer)) = serde_json::from_str(text) {
                            fields.extend(newer);
                        }
                    }
                    Json::Object(fields).to_string()
                });
            let note = format!("replayed after {}: {}", d.error_code, d.message);
            revive
                .execute(params![d.action_id, note, merged])
                .map_err(sql("replaying a dead action"))?;
            forget
                .execute(params![d.action_id])
                .map_err(sql("removing a dead letter"))?;
        }
    }
    tx.commit().map_err(sql("committing the replay"))?;
    Ok(letters)
}
