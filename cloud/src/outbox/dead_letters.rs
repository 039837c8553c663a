//! [`DeadLetters`]: the operator's view of the outbox dead letters (`fieldpulse
//! cloud dead-letters list|replay`), on a connection of its own, so it works
//! whether the cloud is running or not.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::store::{self, DeadLetter, Replay};
use super::OutboxError;

/// How long a statement waits for the running cloud's writers.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The dead letters of one cloud database.
pub struct DeadLetters {
    conn: Connection,
}

impl DeadLetters {
    /// Opens an existing cloud database (never creates one) and applies
    /// [`super::SCHEMA`] (a database the outbox never used has no dead letters).
    ///
    /// # Errors
    /// The file is missing or is not a database that can be opened.
    pub fn open(db_path: &Path) -> Result<Self, OutboxError> {
        let open_err = |source| OutboxError::Open {
            path: db_path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.execute_batch(super::SCHEMA).map_err(open_err)?;
        Ok(DeadLetters { conn })
    }

    /// Every dead letter, oldest first.
    ///
    /// # Errors
    /// The database could not be read.
    pub fn list(&self) -> Result<Vec<DeadLetter>, OutboxError> {
        store::dead_letters(&self.conn)
    }

    /// Puts the chosen dead actions back in the outbox, due now, and removes
    /// their dead letters; returns what was replayed. A running sender picks
    /// them up on its next pass, a stopped one at start. Replaying is safe
    /// to repeat: the sender upserts on `FieldPulse_Key__c`, and an action
    /// that fails again for good is dead-lettered again.
    ///
    /// # Errors
    /// [`OutboxError::NoDeadLetter`] when `Replay::One` names an action that
    /// is not dead; [`OutboxError::Sqlite`] when the database fails.
    pub fn replay(&mut self, which: Replay) -> Result<Vec<DeadLetter>, OutboxError> {
        store::replay_dead(&mut self.conn, which)
    }
}
