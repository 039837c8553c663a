//! `BatchLog`: the durable commit log behind the ingest API.
//!
//! # Format
//!
//! One append-only file. Each entry is a frame:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `len`: little-endian u32, length of `payload` |
//! | 4 | `crc`: little-endian CRC-32 (IEEE) of `payload` |
//! | len | `payload`: the protobuf-encoded `fieldpulse.v1.Batch` as received |
//!
//! # Invariants and recovery
//!
//! A batch is acknowledged only after its frame is written and `fdatasync`ed,
//! so every acknowledged batch is in the file. On open, frames are read until
//! the first one that is short (torn write) or fails its CRC; the file is
//! truncated there. A torn tail can only hold a batch that was never
//! acknowledged, so the gateway still has it and will re-send it with the same
//! seq. A damaged frame in the middle (media corruption) also ends the scan;
//! the bytes from there on are first copied to `<log>.corrupt-<unix_ms>` so
//! that nothing is destroyed silently, and the event is logged at ERROR.
//! Open rebuilds the per-gateway dedupe sets from the surviving frames.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fieldpulse_proto::v1::Batch;
use prost::Message;

use super::service::{BatchSink, SinkError};

/// Upper bound for one frame; larger lengths mean corruption.
const MAX_FRAME_BYTES: u32 = 256 * 1024 * 1024;

/// Errors opening or writing the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be opened, read or truncated.
    #[error("batch log {path}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What [`BatchLog::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// `(gateway_id, seq, n_readings)` of every committed batch, in log order.
    pub batches: Vec<(String, u64, usize)>,
    /// Bytes cut off the end of the file (a torn or corrupt tail).
    pub truncated_bytes: u64,
}

/// The durable, append-only log of committed batches.
#[derive(Debug, Clone)]
pub struct BatchLog {
    inner: Arc<Mutex<File>>,
    path: PathBuf,
}

impl BatchLog {
    /// Opens (or creates) the log at `path`, truncating a torn tail.
    ///
    /// # Errors
    /// [`LogError::Io`] naming the path when the file cannot be read or written.
    pub fn open(path: &Path) -> Result<(Self, Recovered), LogError> {
        let io_err = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut recovered = Recovered::default();
        let mut valid_len = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let mut header = [0u8; 8];
            let mut payload = Vec::new();
            loop {
                if reader.read_exact(&mut header).is_err() {
                    break;
                }
                let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
                let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
                if len > MAX_FRAME_BYTES {
                    break;
                }
                payload.resize(len as usize, 0);
                if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
                    break;
                }
                let Ok(batch) = Batch::decode(payload.as_slice()) else {
                    break;
                };
                recovered
                    .batches
                    .push((batch.gateway_id.clone(), batch.seq, batch.n_readings()));
                valid_len += 8 + u64::from(len);
            }
        }
        if valid_len < file_len {
            recovered.truncated_bytes = file_len - valid_len;
            let kept = preserve_tail(&mut file, path, valid_len).map_err(io_err)?;
            tracing::error!(
                path = %path.display(),
                truncated_bytes = recovered.truncated_bytes,
                kept = %kept.display(),
                "Cut a torn or damaged tail off the batch log; the bytes were kept aside."
            );
            file.set_len(valid_len).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        let log = Self {
            inner: Arc::new(Mutex::new(file)),
            path: path.to_path_buf(),
        };
        Ok((log, recovered))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append_blocking(&self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        // A poisoned lock means a writer panicked mid-append; the frame CRC
        // still protects readers, so keep going with the inner file.
        let mut file = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        file.write_all(&frame)?;
        file.sync_data()
    }
}

/// Copies the bytes after `from` to a sibling `.corrupt-<unix_ms>` file.
fn preserve_tail(file: &mut File, path: &Path, from: u64) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    let kept = PathBuf::from(name);
    file.seek(SeekFrom::Start(from))?;
    let mut out = File::create(&kept)?;
    std::io::copy(file, &mut out)?;
    out.sync_all()?;
    Ok(kept)
}

impl BatchSink for BatchLog {
    async fn commit(&self, _batch: &Batch, encoded: Bytes) -> Result<(), SinkError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.append_blocking(&encoded))
            .await
            .map_err(|join| SinkError::new(format!("batch log writer stopped: {join}")))?
            .map_err(|io| SinkError::new(format!("writing {}: {io}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use fieldpulse_proto::v1::Series;

    use super::*;

    fn batch(seq: u64) -> Batch {
        let mut series = Series {
            asset_id: "a".into(),
            sensor: "s".into(),
            ..Default::default()
        };
        series.push(1_000, 1.0);
        series.push(2_000, 2.0);
        Batch {
            gateway_id: "gw".into(),
            seq,
            series: vec![series],
            ..Default::default()
        }
    }

    async fn commit(log: &BatchLog, seq: u64) {
        let batch = batch(seq);
        let encoded = Bytes::from(batch.encode_to_vec());
        log.commit(&batch, encoded).await.unwrap();
    }

    #[tokio::test]
    async fn reopen_recovers_committed_batches_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.log");
        let (log, recovered) = BatchLog::open(&path).unwrap();
        assert!(recovered.batches.is_empty());
        commit(&log, 1).await;
        commit(&log, 2).await;
        drop(log);
        let full_len = std::fs::metadata(&path).unwrap().len();
        // A torn third frame: header promises more than was written.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(file);

        let (_log, recovered) = BatchLog::open(&path).unwrap();
        let seqs: Vec<u64> = recovered.batches.iter().map(|b| b.1).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(recovered.batches[0].2, 2);
        assert_eq!(recovered.truncated_bytes, 10);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full_len);
    }

    #[tokio::test]
    async fn a_flipped_bit_ends_recovery_at_the_damaged_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.log");
        let (log, _) = BatchLog::open(&path).unwrap();
        for seq in 1..=3 {
            commit(&log, seq).await;
        }
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let frame_len = bytes.len() / 3;
        bytes[frame_len + 12] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (_log, recovered) = BatchLog::open(&path).unwrap();
        assert_eq!(recovered.batches.len(), 1);
        assert_eq!(recovered.truncated_bytes, 2 * frame_len as u64);
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].metadata().unwrap().len(), 2 * frame_len as u64);
    }
}
