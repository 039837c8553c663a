//! The redelivery ring: (packet id, message hash) of messages whose records were sent to the
//! cloud, kept in a small file next to the spool.
//!
//! After a kill -9 the broker redelivers every message whose PUBACK it did not receive — even one
//! the edge had written to its socket (a killed process's socket can be reset with the PUBACK
//! still unsent). The restarted agent recognises such a redelivery from the spool tail, but the
//! record may already be gone: sent, acknowledged by the cloud, its segment deleted. So before a
//! batch is sent, the forwarder writes its messages' (pkid, hash) here.
//!
//! Layout: [`RING_ENTRIES`] slots of 10 bytes (`pkid u16 LE`, `hash u64 LE`), written in turn with
//! positioned writes; an all-zero slot is empty. Writes are not fsynced: the file survives a
//! killed process (page cache); after a power cut it may miss entries, which costs duplicates,
//! never data. A missing or damaged file only weakens the filter.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Entries kept.
pub const RING_ENTRIES: u64 = 16_384;
const ENTRY_BYTES: u64 = 10;

/// The open ring file.
#[derive(Debug)]
pub struct RedeliveryRing {
    file: File,
    path: PathBuf,
    next: u64,
}

impl RedeliveryRing {
    /// Opens (creating) the ring and returns the entries it holds.
    ///
    /// # Errors
    /// The IO error of opening or reading the file.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<(u16, u64)>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len().min(RING_ENTRIES * ENTRY_BYTES);
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let entries: Vec<(u16, u64)> = bytes
            .chunks_exact(ENTRY_BYTES as usize)
            .map(|chunk| {
                let pkid = u16::from_le_bytes([chunk[0], chunk[1]]);
                let mut hash = [0u8; 8];
                hash.copy_from_slice(&chunk[2..10]);
                (pkid, u64::from_le_bytes(hash))
            })
            .filter(|&(pkid, hash)| pkid != 0 || hash != 0)
            .collect();
        // Continue after the last slot written before (unknown after a restart): start at the
        // end of the file, or wrap.
        let next = (len / ENTRY_BYTES) % RING_ENTRIES;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
                next,
            },
            entries,
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes entries (one positioned write per contiguous run).
    ///
    /// # Errors
    /// The IO error of the write.
    pub fn record(&mut self, entries: &[(u16, u64)]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(entries.len() * ENTRY_BYTES as usize);
        let mut start = self.next;
        for &(pkid, hash) in entries {
            buf.extend_from_slice(&pkid.to_le_bytes());
            buf.extend_from_slice(&hash.to_le_bytes());
            self.next += 1;
            if self.next == RING_ENTRIES {
                self.file.write_all_at(&buf, start * ENTRY_BYTES)?;
                buf.clear();
                self.next = 0;
                start = 0;
            }
        }
        if !buf.is_empty() {
            self.file.write_all_at(&buf, start * ENTRY_BYTES)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_the_ring_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let (mut ring, entries) = RedeliveryRing::open(&path).unwrap();
        assert!(entries.is_empty());
        ring.record(&[(1, 11), (2, 22)]).unwrap();
        drop(ring);
        let (mut ring, entries) = RedeliveryRing::open(&path).unwrap();
        assert_eq!(entries, vec![(1, 11), (2, 22)]);
        let many: Vec<(u16, u64)> = (0..RING_ENTRIES + 5).map(|i| (7, 1000 + i)).collect();
        ring.record(&many).unwrap();
        let (_, entries) = RedeliveryRing::open(&path).unwrap();
        assert_eq!(entries.len() as u64, RING_ENTRIES);
        assert!(entries.contains(&(7, 1000 + RING_ENTRIES + 4)));
        assert!(!entries.contains(&(1, 11)));
    }
}
