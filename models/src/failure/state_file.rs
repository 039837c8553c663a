//! A file of per-asset streaming states ([`FailureScorer::asset_state`]
//! snapshots), so batch scoring can continue where the last run stopped
//! (`fieldpulse score --state FILE`).
//!
//! Format (little-endian): magic `FPSTATE1`, the model version it was
//! written with (u32 length + UTF-8), an asset count (u32), then per asset
//! its name (u32 length + UTF-8) and its snapshot (u32 length + bytes), then
//! an FNV-1a 64 of everything before it. Written atomically (temporary file,
//! fsync, rename). Each snapshot carries its own checks, so a state written
//! for other sensors or feature parameters is refused at restore.

use std::path::Path;

use super::model::{ArtifactError, FailureScorer};
use crate::registry::{atomic_write, RegistryError};

const MAGIC: &[u8; 8] = b"FPSTATE1";

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a state file, truncated or corrupt.
    #[error("{path}: not a fieldpulse state file or damaged ({msg})")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] RegistryError),
    /// A snapshot was refused.
    #[error(transparent)]
    Restore(#[from] ArtifactError),
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Writes every asset state of `scorer` to `path` (atomically), sorted by asset.
///
/// # Errors
/// [`StateFileError::Write`].
pub fn save(path: &Path, scorer: &FailureScorer) -> Result<usize, StateFileError> {
    let mut assets: Vec<&str> = scorer.assets().collect();
    assets.sort_unstable();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put(&mut out, scorer.model().model_version.as_bytes());
    out.extend_from_slice(&(assets.len() as u32).to_le_bytes());
    for a in &assets {
        put(&mut out, a.as_bytes());
        put(&mut out, &scorer.asset_state(a).unwrap_or_default());
    }
    let sum = fnv(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    atomic_write(path, &out)?;
    Ok(assets.len())
}

/// What [`load`] restored.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// Model version the file was written with.
    pub model_version: String,
    /// Assets restored.
    pub assets: Vec<String>,
}

/// Restores every asset state in `path` into `scorer`, one by one: a
/// refused snapshot stops the load with its asset named (earlier assets stay
/// restored; the caller stops).
///
/// # Errors
/// Unreadable, damaged or refused state.
pub fn load(path: &Path, scorer: &mut FailureScorer) -> Result<Restored, StateFileError> {
    let bytes = std::fs::read(path).map_err(|source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let invalid = |msg: &str| StateFileError::Invalid {
        path: path.display().to_string(),
        msg: msg.into(),
    };
    if bytes.len() < MAGIC.len() + 8 || &bytes[..8] != MAGIC {
        return Err(invalid("bad magic"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if fnv(body).to_le_bytes() != sum {
        return Err(invalid("checksum"));
    }
    let mut r = Reader { body, pos: 8 };
    let truncated = || invalid("truncated");
    let n = r.u32().ok_or_else(truncated)?;
    let model_version = String::from_utf8_lossy(r.take(n).ok_or_else(truncated)?).into_owned();
    let count = r.u32().ok_or_else(truncated)?;
    let mut states = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let n = r.u32().ok_or_else(truncated)?;
        let name = String::from_utf8_lossy(r.take(n).ok_or_else(truncated)?).into_owned();
        let n = r.u32().ok_or_else(truncated)?;
        states.push((name, r.take(n).ok_or_else(truncated)?.to_vec()));
    }
    let mut assets = Vec::with_capacity(states.len());
    for (name, state) in states {
        scorer.restore_asset_state(&name, &state)?;
        assets.push(name);
    }
    Ok(Restored {
        model_version,
        assets,
    })
}

struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.body.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<usize> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}
