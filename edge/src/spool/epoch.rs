//! The spool epoch: a random non-zero 64-bit id created with the spool and kept
//! in `spool.epoch`.
//!
//! Batch seqs are unique only within one spool: a wiped or replaced spool
//! directory starts again at seq 1 under the same gateway id. Every batch
//! carries the epoch, and the cloud deduplicates by `(gateway, epoch, seq)`, so
//! a new spool's batches are never taken for duplicates of an old one's.
//!
//! File layout (32 bytes, little endian): magic `FPEPOCH\0` `[8]` | version
//! `u32` (1) | reserved `u32` (0) | epoch `u64` (never 0) | CRC-32 of bytes
//! 0..24 `u32` | reserved `u32` (0).
//!
//! The file is written once, as `spool.epoch.tmp`, fsynced, renamed over
//! `spool.epoch`, and the directory fsynced, before any seq is handed out
//! under the epoch; recovery never rewrites a readable epoch file of a spool
//! whose ledger is intact.

use std::{io, path::Path};

use rand::Rng;

use super::{fs::FileLayer, SpoolError};

/// File name of the epoch file.
pub const EPOCH_FILE: &str = "spool.epoch";
/// File name the epoch is written to before it is renamed over [`EPOCH_FILE`].
pub const EPOCH_TMP_FILE: &str = "spool.epoch.tmp";
/// Bytes of the epoch file.
pub const EPOCH_FILE_LEN: usize = 32;
const EPOCH_MAGIC: [u8; 8] = *b"FPEPOCH\0";
const EPOCH_VERSION: u32 = 1;

/// What the epoch file of a spool directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochFile {
    /// A valid epoch.
    Valid(u64),
    /// No epoch file: a new directory, or a spool written before epochs (format v1).
    Missing,
    /// Magic and checksum are valid but the version is not one this build reads.
    UnsupportedVersion(u32),
    /// Too short or too long, wrong magic, bad checksum, or a zero epoch.
    Damaged,
}

impl EpochFile {
    /// The epoch, if the file is valid.
    pub fn valid(self) -> Option<u64> {
        match self {
            Self::Valid(epoch) => Some(epoch),
            _ => None,
        }
    }

    /// `ok`, `missing`, `damaged` or `unsupported version N` (for `spool inspect`).
    pub fn describe(self) -> String {
        match self {
            Self::Valid(_) => "ok".to_owned(),
            Self::Missing => "missing".to_owned(),
            Self::Damaged => "damaged".to_owned(),
            Self::UnsupportedVersion(version) => format!("unsupported version {version}"),
        }
    }
}

/// A fresh random epoch (never 0, which the wire contract reserves for senders
/// that predate epochs).
pub fn random_epoch() -> u64 {
    rand::thread_rng().gen_range(1..=u64::MAX)
}

/// The file's bytes for `epoch`.
pub fn encode(epoch: u64) -> [u8; EPOCH_FILE_LEN] {
    let mut out = [0u8; EPOCH_FILE_LEN];
    out[0..8].copy_from_slice(&EPOCH_MAGIC);
    out[8..12].copy_from_slice(&EPOCH_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&out[0..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes an epoch file's bytes.
pub fn decode(bytes: &[u8]) -> EpochFile {
    if bytes.len() != EPOCH_FILE_LEN || bytes[0..8] != EPOCH_MAGIC {
        return EpochFile::Damaged;
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[0..24]) != u32_at(24) {
        return EpochFile::Damaged;
    }
    let version = u32_at(8);
    if version != EPOCH_VERSION {
        return EpochFile::UnsupportedVersion(version);
    }
    match u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) {
        0 => EpochFile::Damaged,
        epoch => EpochFile::Valid(epoch),
    }
}

/// Reads the epoch file of `dir`.
///
/// # Errors
///
/// IO errors other than the file not existing.
pub fn load(fs: &dyn FileLayer, dir: &Path) -> Result<EpochFile, SpoolError> {
    let path = dir.join(EPOCH_FILE);
    match fs.read(&path) {
        Ok(bytes) => Ok(decode(&bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(EpochFile::Missing),
        Err(source) => Err(SpoolError::io("reading spool epoch", &path, source)),
    }
}

/// Makes `epoch` the epoch of `dir`, durably: temporary file, fsync, rename,
/// directory fsync.
///
/// # Errors
///
/// IO errors, naming the file.
pub fn store(fs: &dyn FileLayer, dir: &Path, epoch: u64) -> Result<(), SpoolError> {
    let tmp = dir.join(EPOCH_TMP_FILE);
    let mut file = fs
        .create_truncate(&tmp)
        .map_err(|source| SpoolError::io("creating spool epoch", &tmp, source))?;
    file.write_all(&encode(epoch))
        .and_then(|()| file.sync_data())
        .map_err(|source| SpoolError::io("writing spool epoch", &tmp, source))?;
    drop(file);
    fs.rename(&tmp, &dir.join(EPOCH_FILE))
        .map_err(|source| SpoolError::io("renaming spool epoch", &tmp, source))?;
    fs.sync_dir(dir)
        .map_err(|source| SpoolError::io("syncing directory", dir, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_round_trips_and_any_damage_is_detected() {
        let epoch = 0x0123_4567_89ab_cdef;
        let bytes = encode(epoch);
        assert_eq!(decode(&bytes), EpochFile::Valid(epoch));
        for at in 0..EPOCH_FILE_LEN {
            let mut damaged = bytes;
            damaged[at] ^= 0x10;
            let decoded = decode(&damaged);
            if (28..32).contains(&at) {
                // The trailing reserved bytes are not covered by the checksum.
                assert_eq!(decoded, EpochFile::Valid(epoch));
            } else {
                assert_eq!(decoded, EpochFile::Damaged, "byte {at}");
            }
        }
        assert_eq!(decode(&bytes[..31]), EpochFile::Damaged);
        assert_eq!(decode(&[]), EpochFile::Damaged);
        assert_eq!(
            decode(&encode(0)),
            EpochFile::Damaged,
            "0 is never an epoch"
        );
        let mut newer = bytes;
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&newer[0..24]);
        newer[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&newer), EpochFile::UnsupportedVersion(2));
    }

    #[test]
    fn random_epochs_are_non_zero_and_differ() {
        let epochs: std::collections::HashSet<u64> = (0..1000).map(|_| random_epoch()).collect();
        assert_eq!(epochs.len(), 1000);
        assert!(!epochs.contains(&0));
    }
}
