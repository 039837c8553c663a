//! `cloud.sqlite`: the processor's embedded store.
//!
//! One SQLite database in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives power loss. Each shard thread, the outbox sender and
//! the feedback poller open their own [`Store`] connection; SQLite serialises
//! the writers. Operators can read it with `sqlite3 cloud.sqlite`:
//!
//! | table | holds |
//! |---|---|
//! | `asset_state` | per asset: scorer state blobs, episodes (JSON), the log offset they reflect |
//! | `shard_checkpoint` | per shard: the log offset every record below which is reflected |
//! | `episodes` | one readable row per (asset, mode) episode: state, risk, priority, Case key |
//! | `emitted` | keys of transitions already turned into actions (replays emit nothing twice) |
//! | `campaign_openings`, `campaigns`, `campaign_members` | PM campaign drafting |
//! | `feedback_labels`, `feedback_cursor` | labels from Work Orders / Cases, and the poll position |
//! | `outbox_actions`, `outbox_dead_letters`, `outbox_asset_ids` | Salesforce actions (see [`crate::outbox`]) |

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::outbox;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("cloud store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value could not be decoded.
    #[error("cloud store: {0}")]
    Corrupt(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS asset_state (
    asset       TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    anomaly     BLOB,
    failure     BLOB,
    episodes    TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shard_checkpoint (
    shard       INTEGER PRIMARY KEY,
    n_shards    INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS episodes (
    asset       TEXT NOT NULL,
    mode        TEXT NOT NULL,
    state       TEXT NOT NULL,
    number      INTEGER NOT NULL,
    risk        REAL,
    priority    TEXT,
    case_key    TEXT,
    opened_ms   INTEGER,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (asset, mode)
);
CREATE TABLE IF NOT EXISTS emitted (
    key         TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_openings (
    product     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    asset       TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    PRIMARY KEY (product, mode, asset, ts_ms)
);
CREATE TABLE IF NOT EXISTS campaigns (
    key         TEXT PRIMARY KEY,
    product     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign    TEXT NOT NULL,
    asset       TEXT NOT NULL,
    PRIMARY KEY (campaign, asset)
);
CREATE TABLE IF NOT EXISTS feedback_labels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    asset       TEXT NOT NULL,
    mode        TEXT,
    label       TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    source_object TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    failure_code TEXT,
    detail      TEXT,
    created_ms  INTEGER NOT NULL,
    UNIQUE (source_object, source_id, label)
);
CREATE TABLE IF NOT EXISTS feedback_cursor (
    object      TEXT PRIMARY KEY,
    modstamp    TEXT NOT NULL
);
";

/// A connection to `cloud.sqlite`.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// One asset's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRecord {
    /// Every log record below this offset is reflected in the state.
    pub next_offset: u64,
    /// Anomaly scorer state ([`fieldpulse_models::anomaly::FleetScorer::asset_state`]).
    pub anomaly: Option<Vec<u8>>,
    /// Failure scorer state.
    pub failure: Option<Vec<u8>>,
    /// Episodes as JSON.
    pub episodes: String,
}

/// A readable episode row (the `episodes` table).
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRow {
    /// Asset.
    pub asset: String,
    /// Failure mode or anomaly kind.
    pub mode: String,
    /// `open`, `suppressed`, `closed`, ...
    pub state: String,
    /// Episode number for this (asset, mode).
    pub number: u64,
    /// Last risk.
    pub risk: Option<f64>,
    /// Case priority when open.
    pub priority: Option<String>,
    /// The Case's `FieldPulse_Key__c`.
    pub case_key: Option<String>,
    /// When it opened (asset time).
    pub opened_ms: Option<i64>,
}

/// A feedback label (from a completed Work Order or a dismissed Case).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedbackLabel {
    /// Asset name.
    pub asset: String,
    /// Failure mode when known.
    pub mode: Option<String>,
    /// `failure` or `false_alarm`.
    pub label: String,
    /// When (epoch ms).
    pub at_ms: i64,
    /// `WorkOrder` or `Case`.
    pub source_object: String,
    /// The record's Id.
    pub source_id: String,
    /// Failure code, when the Work Order gave one.
    pub failure_code: Option<String>,
    /// Free text (subject).
    pub detail: Option<String>,
}

/// Wall-clock ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (creating) the database and its tables.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(outbox::SCHEMA)?;
        Ok(Self { conn })
    }

    /// The raw connection (for modules that own their own tables).
    pub fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Starts an immediate (write-locking) transaction.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn write(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    /// One asset's saved state.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn asset(&self, asset: &str) -> Result<Option<AssetRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT next_offset, anomaly, failure, episodes FROM asset_state WHERE asset = ?1",
                params![asset],
                |r| {
                    Ok(AssetRecord {
                        next_offset: r.get::<_, i64>(0)? as u64,
                        anomaly: r.get(1)?,
                        failure: r.get(2)?,
                        episodes: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// The lowest shard checkpoint: the log offset to resume reading at, so
    /// no shard misses a record (assets skip what their state already holds).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn resume_offset(&self) -> Result<u64, StoreError> {
        let min: Option<i64> =
            self.conn
                .query_row("SELECT MIN(next_offset) FROM shard_checkpoint", [], |r| {
                    r.get(0)
                })?;
        Ok(min.unwrap_or(0).max(0) as u64)
    }

    /// Every readable episode row.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn episodes(&self) -> Result<Vec<EpisodeRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT asset, mode, state, number, risk, priority, case_key, opened_ms
             FROM episodes ORDER BY asset, mode",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(EpisodeRow {
                asset: r.get(0)?,
                mode: r.get(1)?,
                state: r.get(2)?,
                number: r.get::<_, i64>(3)? as u64,
                risk: r.get(4)?,
                priority: r.get(5)?,
                case_key: r.get(6)?,
                opened_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The (asset, mode) whose episode row carries this Case key.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn episode_of_case(&self, case_key: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT asset, mode FROM episodes WHERE case_key = ?1 LIMIT 1",
                params![case_key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Feedback labels, oldest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn feedback_labels(&self) -> Result<Vec<FeedbackLabel>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT asset, mode, label, at_ms, source_object, source_id, failure_code, detail
             FROM feedback_labels ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FeedbackLabel {
                asset: r.get(0)?,
                mode: r.get(1)?,
                label: r.get(2)?,
                at_ms: r.get(3)?,
                source_object: r.get(4)?,
                source_id: r.get(5)?,
                failure_code: r.get(6)?,
                detail: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The feedback poll position of an object (`SystemModstamp` text).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn feedback_cursor(&self, object: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT modstamp FROM feedback_cursor WHERE object = ?1",
                params![object],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// Writes done inside a shard's or poller's transaction.
pub mod tx {
    use super::*;

    /// Saves one asset's state.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_asset(
        tx: &Transaction<'_>,
        asset: &str,
        rec: &AssetRecord,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO asset_state (asset, next_offset, anomaly, failure, episodes, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(asset) DO UPDATE SET next_offset = excluded.next_offset,
               anomaly = excluded.anomaly, failure = excluded.failure,
               episodes = excluded.episodes, updated_ms = excluded.updated_ms",
            params![
                asset,
                rec.next_offset as i64,
                rec.anomaly,
                rec.failure,
                rec.episodes,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Records a shard's checkpoint offset.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_shard(
        tx: &Transaction<'_>,
        shard: usize,
        n_shards: usize,
        next_offset: u64,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO shard_checkpoint (shard, n_shards, next_offset, updated_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(shard) DO UPDATE SET n_shards = excluded.n_shards,
               next_offset = excluded.next_offset, updated_ms = excluded.updated_ms",
            params![shard as i64, n_shards as i64, next_offset as i64, now_ms()],
        )?;
        Ok(())
    }

    /// Fits the shard checkpoints to `n_shards` shards at start, before any
    /// shard runs: drops shards that no longer exist (the shard count
    /// shrank), and gives every shard a row at the offset the processor
    /// resumes from. A shard that has not checkpointed yet has reflected
    /// nothing beyond that offset, so a crash before its first checkpoint
    /// must not let the other shards' rows move the resume point past it;
    /// a dropped shard's assets move to the others, so its offset bounds
    /// theirs.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn prepare_shards(tx: &Transaction<'_>, n_shards: usize) -> Result<(), StoreError> {
        let resume: i64 = tx.query_row(
            "SELECT COALESCE(MIN(next_offset), 0) FROM shard_checkpoint",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "DELETE FROM shard_checkpoint WHERE shard >= ?1",
            params![n_shards as i64],
        )?;
        tx.execute(
            "UPDATE shard_checkpoint SET next_offset = ?1 WHERE next_offset > ?1",
            params![resume],
        )?;
        for shard in 0..n_shards {
            tx.execute(
                "INSERT OR IGNORE INTO shard_checkpoint (shard, n_shards, next_offset, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![shard as i64, n_shards as i64, resume, now_ms()],
            )?;
        }
        Ok(())
    }

    /// Marks a transition key as emitted; false when it already was (a replay).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn first_emit(tx: &Transaction<'_>, key: &str) -> Result<bool, StoreError> {
        let n = tx.execute(
            "INSERT OR IGNORE INTO emitted (key, created_ms) VALUES (?1, ?2)",
            params![key, now_ms()],
        )?;
        Ok(n == 1)
    }

    /// Upserts the readable row of an episode.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_episode(tx: &Transaction<'_>, row: &EpisodeRow) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO episodes (asset, mode, state, number, risk, priority, case_key, opened_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(asset, mode) DO UPDATE SET state = excluded.state, number = excluded.number,
               risk = excluded.risk, priority = excluded.priority, case_key = excluded.case_key,
               opened_ms = excluded.opened_ms, updated_ms = excluded.updated_ms",
            params![
                row.asset,
                row.mode,
                row.state,
                row.number as i64,
                row.risk,
                row.priority,
                row.case_key,
                row.opened_ms,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Records that `asset` opened a `mode` episode at `ts_ms`, and returns
    /// the window of `window_ms` containing `ts_ms` with the most distinct
    /// assets of that product and mode (the earliest of equals): its start
    /// and its assets, sorted. Every opening is kept and the window may lie
    /// on either side of `ts_ms`, so the result does not depend on the order
    /// in which shards record openings (they run at different speeds, and
    /// backfills arrive late).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn campaign_signal(
        tx: &Transaction<'_>,
        product: &str,
        mode: &str,
        asset: &str,
        ts_ms: i64,
        window_ms: i64,
    ) -> Result<(i64, Vec<String>), StoreError> {
        tx.execute(
            "INSERT OR IGNORE INTO campaign_openings (product, mode, asset, ts_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![product, mode, asset, ts_ms],
        )?;
        let mut stmt = tx.prepare(
            "SELECT asset, ts_ms FROM campaign_openings
             WHERE product = ?1 AND mode = ?2 AND ts_ms >= ?3 AND ts_ms <= ?4 ORDER BY ts_ms, asset",
        )?;
        let rows: Vec<(String, i64)> = stmt
            .query_map(
                params![
                    product,
                    mode,
                    ts_ms.saturating_sub(window_ms),
                    ts_ms.saturating_add(window_ms)
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        let mut best: (i64, BTreeSet<&str>) = (ts_ms, BTreeSet::from([asset]));
        for (_, start) in rows.iter().filter(|(_, t)| *t <= ts_ms) {
            let end = start.saturating_add(window_ms);
            let assets: BTreeSet<&str> = rows
                .iter()
                .filter(|(_, t)| t >= start && *t <= end)
                .map(|(a, _)| a.as_str())
                .collect();
            if assets.len() > best.1.len() {
                best = (*start, assets);
            }
        }
        Ok((best.0, best.1.into_iter().map(str::to_string).collect()))
    }

    /// The open campaign for (product, mode) whose window contains `ts_ms`, if any.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn campaign_for(
        tx: &Transaction<'_>,
        product: &str,
        mode: &str,
        ts_ms: i64,
        window_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(tx
            .query_row(
                "SELECT key FROM campaigns WHERE product = ?1 AND mode = ?2
                 AND window_start_ms <= ?3 AND window_start_ms + ?4 >= ?3
                 ORDER BY window_start_ms DESC LIMIT 1",
                params![product, mode, ts_ms, window_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Creates a campaign row.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_campaign(
        tx: &Transaction<'_>,
        key: &str,
        product: &str,
        mode: &str,
        window_start_ms: i64,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT OR IGNORE INTO campaigns (key, product, mode, window_start_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, product, mode, window_start_ms, now_ms()],
        )?;
        Ok(())
    }

    /// Adds an asset to a campaign; false when it was already a member.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn join_campaign(
        tx: &Transaction<'_>,
        campaign: &str,
        asset: &str,
    ) -> Result<bool, StoreError> {
        let n = tx.execute(
            "INSERT OR IGNORE INTO campaign_members (campaign, asset) VALUES (?1, ?2)",
            params![campaign, asset],
        )?;
        Ok(n == 1)
    }

    /// Stores a feedback label; false when it was already stored.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_label(tx: &Transaction<'_>, label: &FeedbackLabel) -> Result<bool, StoreError> {
        let n = tx.execute(
            "INSERT OR IGNORE INTO feedback_labels
             (asset, mode, label, at_ms, source_object, source_id, failure_code, detail, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                label.asset,
                label.mode,
                label.label,
                label.at_ms,
                label.source_object,
                label.source_id,
                label.failure_code,
                label.detail,
                now_ms()
            ],
        )?;
        Ok(n == 1)
    }

    /// Moves the feedback poll position of an object.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn put_cursor(
        tx: &Transaction<'_>,
        object: &str,
        modstamp: &str,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO feedback_cursor (object, modstamp) VALUES (?1, ?2)
             ON CONFLICT(object) DO UPDATE SET modstamp = excluded.modstamp",
            params![object, modstamp],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// Openings of one product and mode recorded in `order`; returns each call's result.
    fn record(order: &[(&str, i64)]) -> Vec<(i64, Vec<String>)> {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.sqlite")).unwrap();
        let tx = store.write().unwrap();
        let out = order
            .iter()
            .map(|(asset, ts)| tx::campaign_signal(&tx, "Pump", "bearing", asset, *ts, 14 * DAY))
            .collect::<Result<_, _>>()
            .unwrap();
        tx.commit().unwrap();
        out
    }

    #[test]
    fn campaign_groups_do_not_depend_on_the_order_openings_are_recorded() {
        // a and b open 10 days apart; b's shard records first, and b opens again later.
        let in_time = record(&[("a", 0), ("b", 10 * DAY), ("b", 40 * DAY)]);
        let shards_skewed = record(&[("b", 10 * DAY), ("b", 40 * DAY), ("a", 0)]);
        let pair = (0, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(in_time[1], pair);
        assert_eq!(shards_skewed[2], pair);
        assert_eq!(in_time[2], (40 * DAY, vec!["b".to_string()]));
        // Three openings 20 days apart never make a 14-day group.
        let spread = record(&[("a", 0), ("c", 40 * DAY), ("b", 20 * DAY)]);
        assert!(spread.iter().all(|(_, m)| m.len() == 1), "{spread:?}");
    }

    fn start(store: &mut Store, n_shards: usize) -> u64 {
        let t = store.write().unwrap();
        tx::prepare_shards(&t, n_shards).unwrap();
        t.commit().unwrap();
        store.resume_offset().unwrap()
    }

    fn checkpoint(store: &mut Store, shard: usize, n_shards: usize, offset: u64) {
        let t = store.write().unwrap();
        tx::put_shard(&t, shard, n_shards, offset).unwrap();
        t.commit().unwrap();
    }

    #[test]
    fn a_shard_that_never_checkpointed_holds_the_resume_offset_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("cloud.sqlite")).unwrap();
        assert_eq!(start(&mut store, 2), 0);
        // Shard 0 checkpoints, the process dies before shard 1 does.
        checkpoint(&mut store, 0, 2, 10);
        assert_eq!(start(&mut store, 2), 0, "shard 1 has reflected nothing");
        checkpoint(&mut store, 0, 2, 12);
        checkpoint(&mut store, 1, 2, 8);
        assert_eq!(start(&mut store, 2), 8);
        // More shards: the new ones start where the old ones resume.
        assert_eq!(start(&mut store, 4), 8);
        checkpoint(&mut store, 0, 4, 20);
        checkpoint(&mut store, 1, 4, 20);
        assert_eq!(start(&mut store, 4), 8, "shards 2 and 3 never checkpointed");
        for shard in 0..4 {
            checkpoint(&mut store, shard, 4, 35 - shard as u64);
        }
        // Fewer shards: a dropped shard's assets move, its offset bounds the rest.
        assert_eq!(start(&mut store, 2), 32);
        checkpoint(&mut store, 0, 2, 40);
        checkpoint(&mut store, 1, 2, 40);
        assert_eq!(start(&mut store, 2), 40);
    }
}
