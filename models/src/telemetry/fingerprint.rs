//! The model card's data fingerprint over telemetry files, streamed.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::TelemetryError;

/// Streaming FNV-1a 64 over files (the model card's data fingerprint), the
/// same digest [`crate::failure::train::fingerprint`] gives for whole parts.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    h: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self {
            h: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Fingerprint {
    /// Adds bytes to the current part.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.h ^= u64::from(b);
            self.h = self.h.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Ends the current part.
    pub fn end_part(&mut self) {
        self.h ^= 0xff;
        self.h = self.h.wrapping_mul(0x0100_0000_01b3);
    }

    /// Adds a whole file as one part, reading it in blocks.
    ///
    /// # Errors
    /// IO errors, with the path.
    pub fn add_file(&mut self, path: &Path) -> Result<(), TelemetryError> {
        let io = |source| TelemetryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            self.update(&buf[..n]);
        }
        self.end_part();
        Ok(())
    }

    /// `fnv1a64:<hex>`.
    pub fn finish(&self) -> String {
        format!("fnv1a64:{:016x}", self.h)
    }
}
