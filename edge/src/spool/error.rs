//! The spool's error type.

use std::{
    io,
    path::{Path, PathBuf},
};

/// Everything that can go wrong in the spool. Bad data on disk is never an error:
/// it is skipped and counted in [`super::RecoveryReport`].
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What the spool was doing, e.g. "writing segment".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The byte cap is reached and the policy is backpressure (or nothing can be evicted).
    #[error("spool is full: {bytes_on_disk} of {max_bytes} bytes used, record needs {needed}")]
    Full {
        /// Bytes the append needed.
        needed: u64,
        /// Bytes on disk now.
        bytes_on_disk: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// The payload cannot fit in one segment.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Payload length.
        len: usize,
        /// Largest accepted payload.
        max: usize,
    },
    /// A configuration value is out of range.
    #[error("spool.{key}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Another open spool (usually another agent process) holds the directory.
    #[error("spool in {} is in use by another process", dir.display())]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// An earlier write failed, so memory and disk may disagree; reopen the spool.
    #[error("spool in {} stopped after an earlier write error; reopen it", dir.display())]
    Poisoned {
        /// The spool directory.
        dir: PathBuf,
    },
}

impl SpoolError {
    /// An [`SpoolError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True if waiting (for acks to free space) can make the operation succeed.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }

    /// True if the filesystem holding the spool is full (`ENOSPC`, or `EDQUOT` for a quota):
    /// not the spool's own cap ([`SpoolError::is_full`]). Space may come back (acks free
    /// segments, an operator cleans up), so the agent degrades and retries rather than stops.
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::Io { source, .. } => is_no_space_io(source),
            _ => false,
        }
    }
}

/// True for the IO errors of a full filesystem or an exhausted quota.
pub fn is_no_space_io(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
        || matches!(
            err.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}
