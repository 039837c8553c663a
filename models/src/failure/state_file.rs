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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::failure::model::{FailureModel, FeatureSchema, ARTIFACT_VERSION};
    use crate::failure::FleetHistory;
    use crate::gbdt::{Gbdt, Objective};

    fn scorer(sensors: &[&str]) -> FailureScorer {
        let schema = FeatureSchema::new(
            sensors.iter().map(|s| s.to_string()).collect(),
            vec![4.0, 32.0],
            1,
            Vec::new(),
            Vec::new(),
        )
        .expect("schema");
        let n = schema.n_features();
        let model = FailureModel {
            version: ARTIFACT_VERSION,
            model_version: "tiny".into(),
            schema,
            classifiers: Vec::new(),
            rul: Gbdt {
                objective: Objective::SquaredError,
                base_score: 1.0,
                n_features: n,
                trees: Vec::new(),
                gain_importance: vec![0.0; n],
                flat: Default::default(),
            },
            rul_cap_days: 45.0,
        };
        FailureScorer::new(Arc::new(model), FleetHistory::default()).expect("scorer")
    }

    #[test]
    fn states_round_trip_and_damage_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("state.bin");
        let mut a = scorer(&["t", "v"]);
        for i in 0..100 {
            for asset in ["p1", "p2"] {
                a.score(asset, i * 60_000, &[20.0 + (i % 7) as f64, 0.3])
                    .expect("score");
            }
        }
        assert_eq!(a.model().warmup_rows(), 64, "2 x the longest half-life");
        assert!(!a.last_warming_up(), "100 rows > 64");
        assert_eq!(save(&path, &a).expect("save"), 2);
        let mut b = scorer(&["t", "v"]);
        let r = load(&path, &mut b).expect("load");
        assert_eq!((r.model_version.as_str(), r.assets.len()), ("tiny", 2));
        for asset in ["p1", "p2"] {
            assert_eq!(a.asset_state(asset), b.asset_state(asset));
        }
        b.score("p1", 100 * 60_000, &[21.0, 0.3]).expect("score");
        assert!(!b.last_warming_up(), "a restored asset is not cold");
        b.score("p3", 100 * 60_000, &[21.0, 0.3]).expect("score");
        assert!(b.last_warming_up(), "a new asset is");
        // Other sensors: the snapshot is refused, naming the asset.
        let err = load(&path, &mut scorer(&["t"])).expect_err("other spec");
        assert!(err.to_string().contains("p1"), "{err}");
        // Any flipped byte fails the checksum; a truncated file too.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(matches!(
            load(&path, &mut scorer(&["t", "v"])),
            Err(StateFileError::Invalid { .. })
        ));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
        assert!(matches!(
            load(&path, &mut scorer(&["t", "v"])),
            Err(StateFileError::Invalid { .. })
        ));
    }
}
