//! Spool configuration: the byte cap, the segment size and the policy when full.

use serde::{Deserialize, Serialize};

use super::SpoolError;

/// Default hard cap on the spool's bytes on disk (256 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default target size of one segment file (4 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Smallest accepted cap (256 KiB; tests use it, gateways should use several MiB).
pub const MIN_MAX_BYTES: u64 = 256 * 1024;
/// Smallest accepted segment size (16 KiB).
pub const MIN_SEGMENT_BYTES: u64 = 16 * 1024;
/// Largest accepted segment size (64 MiB): recovery reads one whole segment at a
/// time, and a record (at most one segment) must stay below the frame scanner's
/// payload limit.
pub const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// How the spool is sized and what it does when the cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Hard cap on bytes on disk: segment files plus the ledger.
    pub max_bytes: u64,
    /// Target segment file size; the spool uses `min(segment_bytes, max_bytes / 8)`
    /// so that eviction frees space in steps of at most an eighth of the cap.
    pub segment_bytes: u64,
    /// What `append` does when the cap is reached.
    pub policy: FullPolicy,
}

/// What the spool does when an append would exceed the byte cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Delete the oldest whole segment(s), counting every unacked record dropped.
    #[default]
    DropOldest,
    /// Refuse the append with [`SpoolError::Full`]; nothing is dropped.
    Backpressure,
}

/// Which end of the uncut records a batch is cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// The newest records: fresh data goes first after an outage.
    Live,
    /// The oldest records: the backlog, drained at a limited rate and marked historical.
    Backfill,
}

/// Which end of the uncut records a cut takes (see [`super::Spool::cut_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutEnd {
    /// The oldest uncut records.
    Oldest,
    /// The newest uncut records.
    Newest,
}

impl CutEnd {
    /// The end a lane cuts from by default: newest for `Live`, oldest for `Backfill`.
    pub fn of_lane(lane: Lane) -> Self {
        match lane {
            Lane::Live => Self::Newest,
            Lane::Backfill => Self::Oldest,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            policy: FullPolicy::default(),
        }
    }
}

impl SpoolConfig {
    /// Checks the limits.
    ///
    /// # Errors
    ///
    /// [`SpoolError::InvalidConfig`] naming the key when `max_bytes` is below
    /// [`MIN_MAX_BYTES`] or `segment_bytes` is outside
    /// [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`].
    pub fn validate(&self) -> Result<(), SpoolError> {
        if self.max_bytes < MIN_MAX_BYTES {
            return Err(SpoolError::InvalidConfig {
                key: "max_bytes",
                reason: format!("{} is below the minimum of {MIN_MAX_BYTES}", self.max_bytes),
            });
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(SpoolError::InvalidConfig {
                key: "segment_bytes",
                reason: format!(
                    "{} is below the minimum of {MIN_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            });
        }
        if self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(SpoolError::InvalidConfig {
                key: "segment_bytes",
                reason: format!(
                    "{} is above the maximum of {MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            });
        }
        Ok(())
    }

    /// The segment size actually used: `min(segment_bytes, max_bytes / 8)`, at
    /// least [`MIN_SEGMENT_BYTES`].
    pub fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes
            .min(self.max_bytes / 8)
            .max(MIN_SEGMENT_BYTES)
    }

    /// Largest payload one record may have with this configuration.
    pub fn max_payload_bytes(&self) -> usize {
        super::segment::max_payload(self.effective_segment_bytes())
    }
}
