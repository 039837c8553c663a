//! The optional quarantine file: rejected payloads kept for later inspection.
//!
//! One JSON object per line: `{"recv_ms", "topic", "reason", "payload"}` where `payload` is the
//! text when it is UTF-8 and `payload_hex` otherwise, cut at [`MAX_KEPT_PAYLOAD`] bytes. The file
//! stops growing at `validation.quarantine_max_bytes`; later rejections are only counted. Writes
//! are not fsynced: the quarantine is a diagnostic aid, not data the agent promised to keep.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::reject::RejectReason;

/// Longest payload prefix written per entry.
pub const MAX_KEPT_PAYLOAD: usize = 4096;

/// Why the quarantine file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("quarantine file {path}")]
pub struct QuarantineError {
    /// The file.
    pub path: PathBuf,
    /// The IO error.
    #[source]
    pub source: std::io::Error,
}

/// An append-only JSON-lines file of rejected payloads.
#[derive(Debug)]
pub struct Quarantine {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
}

impl Quarantine {
    /// Opens (creating if needed) the file for appending.
    ///
    /// # Errors
    /// [`QuarantineError`] naming the path.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, QuarantineError> {
        let wrap = |source| QuarantineError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(wrap)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(wrap)?;
        let len = file.metadata().map_err(wrap)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
            max_bytes,
        })
    }

    /// Appends one entry; returns `Ok(false)` when the size cap kept it out.
    ///
    /// # Errors
    /// [`QuarantineError`] when the write fails.
    pub fn record(
        &mut self,
        recv_ms: i64,
        topic: &str,
        reason: RejectReason,
        payload: &[u8],
    ) -> Result<bool, QuarantineError> {
        let kept = &payload[..payload.len().min(MAX_KEPT_PAYLOAD)];
        let mut entry = serde_json::json!({
            "recv_ms": recv_ms,
            "topic": topic,
            "reason": reason.as_str(),
            "payload_len": payload.len(),
        });
        match std::str::from_utf8(kept) {
            Ok(text) => entry["payload"] = serde_json::Value::String(text.to_string()),
            Err(_) => {
                let hex: String = kept.iter().map(|b| format!("{b:02x}")).collect();
                entry["payload_hex"] = serde_json::Value::String(hex);
            }
        }
        let mut line = entry.to_string();
        line.push('\n');
        if self.len + line.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| QuarantineError {
                path: self.path.clone(),
                source,
            })?;
        self.len += line.len() as u64;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_payloads_are_written_as_json_lines_until_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q/quarantine.jsonl");
        let mut quarantine = Quarantine::open(&path, 300).unwrap();
        assert!(quarantine
            .record(1, "a/b", RejectReason::BadJson, b"{oops")
            .unwrap());
        assert!(quarantine
            .record(2, "a/b", RejectReason::BadProtobuf, &[0xff, 0x00])
            .unwrap());
        assert!(!quarantine
            .record(3, "a/b", RejectReason::TooLarge, &[b'x'; 1000])
            .unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["payload"], "{oops");
        assert_eq!(lines[0]["reason"], "bad_json");
        assert_eq!(lines[1]["payload_hex"], "ff00");
    }
}
