//! Per-asset state snapshots: the byte format of
//! [`FleetFeatures::asset_state`](crate::FleetFeatures::asset_state), the
//! [`StateError`] a refused restore returns, and the small codec
//! ([`StateWriter`], [`StateReader`], [`Fnv64`]) that `fieldpulse-models`
//! reuses for its own scorer snapshots.
//!
//! A snapshot lets a stream processor checkpoint an asset's state next to the
//! log offset it reflects and, after a crash, restore it and replay from that
//! offset with bit-identical results. It is taken off the hot path (a copy of
//! one asset's block); restoring checks everything before it writes anything,
//! so a refused restore leaves the asset as it was.
//!
//! # Envelope (every snapshot kind)
//! All integers and floats are little-endian; floats are their IEEE-754 bits
//! (`to_bits`), so NaN payloads and signed zeros survive.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic: the snapshot kind (`FPFS` for feature state) |
//! | 4 | 1 | format version (the kind's current one) |
//! | 5 | 3 | reserved, zero |
//! | 8 | 4 | total length in bytes, checksum included (u32) |
//! | 12 | … | the kind's header and payload |
//! | len − 8 | 8 | FNV-1a 64 checksum of bytes `[0, len − 8)` (u64) |
//!
//! # Feature state (`FPFS`, version 3)
//! | offset | bytes | field |
//! |---|---|---|
//! | 12 | 4 | sensors (u32) |
//! | 16 | 4 | lanes per field, sensors padded to a multiple of 8 (u32) |
//! | 20 | 4 | EWMA horizons (u32) |
//! | 24 | 4 | header slots before the lanes (u32) |
//! | 28 | 4 | `stride`: f64 values in the block (u32) |
//! | 32 | 8 | [`FeatureSpec::state_hash`](crate::FeatureSpec::state_hash) (u64) |
//! | 40 | 8 × stride | the asset's block as the kernel keeps it: header (first and last timestamp, rows learned, nominal interval, cached decay ratio, trend time moments, sensors in warm-up, weight sums and cached decays per horizon, zero padding to a cache line), then one lane array per field (means and variances per horizon, median, MAD, residual scale, trend cross-moment, valid count, last valid timestamp, last valid value, quantum), padding lanes included (f64 each) |
//! | 40 + 8 × stride | 8 | checksum |
//!
//! A restore refuses, with a [`StateError`] naming why: another magic,
//! version or length, a checksum mismatch, another shape (sensors, lanes,
//! horizons, header, stride), another spec hash (other sensor names or
//! parameters), and blocks whose counts are not whole numbers in range or
//! whose padding is not inert. Everything else in the block is the state
//! itself and is taken as is.
//!
//! Not in a snapshot: the fleet-wide [`FeatureCounters`](crate::FeatureCounters)
//! of duplicate and out-of-order rows (scorer-global report counters; they do
//! not affect any feature). The missing-value count of learned rows is derived
//! from the valid counts, so it follows the restored state.

use std::fmt;

/// Bytes of the envelope before a kind's own header.
pub const ENVELOPE_HEADER_BYTES: usize = 12;
/// Bytes of the trailing checksum.
pub const CHECKSUM_BYTES: usize = 8;
/// Magic of a [`FleetFeatures`](crate::FleetFeatures) asset snapshot.
pub const FEATURE_STATE_MAGIC: [u8; 4] = *b"FPFS";
/// Format version of a [`FleetFeatures`](crate::FleetFeatures) asset snapshot.
/// 1: the first format; 2 added the last valid value, the quantum and the
/// long-run spread; 3 dropped the spread. Older versions are refused (the
/// asset starts afresh).
pub const FEATURE_STATE_VERSION: u8 = 3;

/// Why snapshot bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Fewer bytes than the format needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// More bytes than the stored length.
    TrailingBytes {
        /// The stored length.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The bytes are not this kind of snapshot.
    WrongKind {
        /// The magic this restore reads.
        expected: [u8; 4],
        /// The magic found.
        found: [u8; 4],
    },
    /// A format version this build does not read.
    Version {
        /// The version this build reads.
        expected: u8,
        /// The version found.
        found: u8,
    },
    /// The checksum does not match the bytes (corrupt or altered).
    Checksum {
        /// The stored checksum.
        stored: u64,
        /// The checksum of the bytes.
        computed: u64,
    },
    /// The snapshot was taken with another state shape.
    Shape {
        /// Which dimension differs.
        what: &'static str,
        /// This state's value.
        expected: u64,
        /// The snapshot's value.
        found: u64,
    },
    /// The snapshot was taken with other sensor names or parameters.
    SpecMismatch {
        /// Which hash differs (feature spec, detector parameters).
        what: &'static str,
        /// This state's hash.
        expected: u64,
        /// The snapshot's hash.
        found: u64,
    },
    /// A value in the snapshot breaks an invariant of the state.
    Corrupt(String),
    /// The asset index is not in the fleet.
    NoAsset {
        /// The index given.
        asset: usize,
        /// Assets in the fleet.
        n_assets: usize,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, got } => {
                write!(f, "state snapshot truncated: {got} bytes, needs {needed}")
            }
            Self::TrailingBytes { expected, got } => write!(
                f,
                "state snapshot has {got} bytes, its header says {expected}"
            ),
            Self::WrongKind { expected, found } => write!(
                f,
                "not a {} state snapshot (magic {:?})",
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(found)
            ),
            Self::Version { expected, found } => write!(
                f,
                "state snapshot format version {found}, this build reads {expected}"
            ),
            Self::Checksum { stored, computed } => write!(
                f,
                "state snapshot checksum {stored:#018x} does not match its bytes ({computed:#018x}): corrupt"
            ),
            Self::Shape {
                what,
                expected,
                found,
            } => write!(
                f,
                "state snapshot has {found} {what}, this state has {expected}"
            ),
            Self::SpecMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "state snapshot was taken with other {what} (hash {found:#018x}, this state {expected:#018x})"
            ),
            Self::Corrupt(why) => write!(f, "state snapshot is corrupt: {why}"),
            Self::NoAsset { asset, n_assets } => {
                write!(f, "asset index {asset} is not in the fleet of {n_assets}")
            }
        }
    }
}

impl std::error::Error for StateError {}

/// FNV-1a, 64-bit: the spec hashes and the snapshot checksum. Stable across
/// builds and platforms (unlike `std`'s `DefaultHasher`).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// Feeds a `u64` (little-endian).
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }
    /// Feeds an `f64` by its bits.
    pub fn write_f64(&mut self, v: f64) {
        self.write_u64(v.to_bits());
    }
    /// Feeds a string, length first (so `["ab", "c"]` and `["a", "bc"]` differ).
    pub fn write_str(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write(s.as_bytes());
    }
    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds a snapshot: the envelope, then the caller's fields, then (on
/// [`Self::finish`]) the length and checksum.
#[derive(Debug)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    /// Starts a snapshot of kind `magic`, format `version`; `capacity` is a
    /// hint of the payload size in bytes.
    pub fn new(magic: [u8; 4], version: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(ENVELOPE_HEADER_BYTES + capacity + CHECKSUM_BYTES);
        buf.extend_from_slice(&magic);
        buf.push(version);
        buf.extend_from_slice(&[0; 3]);
        buf.extend_from_slice(&[0; 4]); // total length, set by `finish`
        Self { buf }
    }
    /// Appends a `u32`.
    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a `usize` as a `u32`.
    ///
    /// # Panics
    /// If `v` does not fit in a `u32` (state dimensions are far smaller).
    pub fn put_len(&mut self, v: usize) {
        self.put_u32(u32::try_from(v).expect("state dimensions fit in u32"));
    }
    /// Appends a `u64`.
    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends raw bytes (length not recorded).
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Appends `f64` values by their bits.
    pub fn put_f64s(&mut self, v: &[f64]) {
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Appends `f32` values by their bits.
    pub fn put_f32s(&mut self, v: &[f32]) {
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Sets the length, appends the checksum and returns the bytes.
    ///
    /// # Panics
    /// If the snapshot exceeds 4 GiB (one asset's state is kilobytes).
    pub fn finish(mut self) -> Vec<u8> {
        let total = u32::try_from(self.buf.len() + CHECKSUM_BYTES)
            .expect("one asset's snapshot is far below 4 GiB");
        self.buf[8..12].copy_from_slice(&total.to_le_bytes());
        let mut h = Fnv64::default();
        h.write(&self.buf);
        let sum = h.finish();
        self.buf.extend_from_slice(&sum.to_le_bytes());
        self.buf
    }
}

/// Reads a snapshot whose envelope (kind, version, length, checksum) was
/// checked by [`Self::open`]; every read is bounds-checked.
#[derive(Debug)]
pub struct StateReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> StateReader<'a> {
    /// Checks the envelope of `bytes` against kind `magic` and `version`.
    ///
    /// # Errors
    /// [`StateError::Truncated`], [`StateError::WrongKind`],
    /// [`StateError::Version`], [`StateError::TrailingBytes`],
    /// [`StateError::Checksum`] or [`StateError::Corrupt`] (reserved bytes set).
    pub fn open(bytes: &'a [u8], magic: [u8; 4], version: u8) -> Result<Self, StateError> {
        let min = ENVELOPE_HEADER_BYTES + CHECKSUM_BYTES;
        if bytes.len() < 4 {
            return Err(StateError::Truncated {
                needed: min,
                got: bytes.len(),
            });
        }
        let found: [u8; 4] = bytes[..4].try_into().expect("four bytes");
        if found != magic {
            return Err(StateError::WrongKind {
                expected: magic,
                found,
            });
        }
        if bytes.len() < min {
            return Err(StateError::Truncated {
                needed: min,
                got: bytes.len(),
            });
        }
        if bytes[4] != version {
            return Err(StateError::Version {
                expected: version,
                found: bytes[4],
            });
        }
        if bytes[5..8] != [0; 3] {
            return Err(StateError::Corrupt("reserved header bytes are set".into()));
        }
        let total = u32::from_le_bytes(bytes[8..12].try_into().expect("four bytes")) as usize;
        if total < min {
            return Err(StateError::Corrupt(format!(
                "stored length {total} is below the envelope's {min}"
            )));
        }
        if bytes.len() < total {
            return Err(StateError::Truncated {
                needed: total,
                got: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(StateError::TrailingBytes {
                expected: total,
                got: bytes.len(),
            });
        }
        let body = total - CHECKSUM_BYTES;
        let stored = u64::from_le_bytes(bytes[body..].try_into().expect("eight bytes"));
        let mut h = Fnv64::default();
        h.write(&bytes[..body]);
        let computed = h.finish();
        if stored != computed {
            return Err(StateError::Checksum { stored, computed });
        }
        Ok(Self {
            bytes: &bytes[..body],
            pos: ENVELOPE_HEADER_BYTES,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(StateError::Truncated {
                needed: self.pos.saturating_add(n).saturating_add(CHECKSUM_BYTES),
                got: self.bytes.len() + CHECKSUM_BYTES,
            });
        };
        let res = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(res)
    }

    /// Reads a `u32`.
    ///
    /// # Errors
    /// [`StateError::Truncated`] past the end of the payload.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("four bytes"),
        ))
    }

    /// Reads a `u64`.
    ///
    /// # Errors
    /// [`StateError::Truncated`] past the end of the payload.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("eight bytes"),
        ))
    }

    /// Reads a `u32` dimension and checks it equals `expected`.
    ///
    /// # Errors
    /// [`StateError::Shape`] naming `what` when it differs; truncation.
    pub fn expect_len(&mut self, what: &'static str, expected: usize) -> Result<(), StateError> {
        let found = self.u32()?;
        if found as usize != expected {
            return Err(StateError::Shape {
                what,
                expected: expected as u64,
                found: u64::from(found),
            });
        }
        Ok(())
    }

    /// Reads a `u64` hash and checks it equals `expected`.
    ///
    /// # Errors
    /// [`StateError::SpecMismatch`] naming `what` when it differs; truncation.
    pub fn expect_hash(&mut self, what: &'static str, expected: u64) -> Result<(), StateError> {
        let found = self.u64()?;
        if found != expected {
            return Err(StateError::SpecMismatch {
                what,
                expected,
                found,
            });
        }
        Ok(())
    }

    /// Reads `n` raw bytes.
    ///
    /// # Errors
    /// [`StateError::Truncated`] past the end of the payload.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        self.take(n)
    }

    /// Fills `out` with `f64` values.
    ///
    /// # Errors
    /// [`StateError::Truncated`] past the end of the payload.
    pub fn f64s(&mut self, out: &mut [f64]) -> Result<(), StateError> {
        let raw = self.take(out.len().saturating_mul(8))?;
        for (o, b) in out.iter_mut().zip(raw.chunks_exact(8)) {
            *o = f64::from_le_bytes(b.try_into().expect("eight bytes"));
        }
        Ok(())
    }

    /// Fills `out` with `f32` values.
    ///
    /// # Errors
    /// [`StateError::Truncated`] past the end of the payload.
    pub fn f32s(&mut self, out: &mut [f32]) -> Result<(), StateError> {
        let raw = self.take(out.len().saturating_mul(4))?;
        for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
            *o = f32::from_le_bytes(b.try_into().expect("four bytes"));
        }
        Ok(())
    }

    /// Checks the whole payload was read.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when bytes are left over (a field list longer
    /// than this build's, under the same version).
    pub fn finish(self) -> Result<(), StateError> {
        if self.pos != self.bytes.len() {
            return Err(StateError::Corrupt(format!(
                "{} payload bytes left after the last field",
                self.bytes.len() - self.pos
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_published_test_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv64::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_written_snapshot_reads_back_and_any_flipped_bit_is_refused() {
        let mut w = StateWriter::new(*b"TEST", 3, 64);
        w.put_u32(7);
        w.put_u64(u64::MAX - 1);
        w.put_f64s(&[1.5, f64::NAN, -0.0]);
        w.put_f32s(&[2.25]);
        let bytes = w.finish();
        let mut r = StateReader::open(&bytes, *b"TEST", 3).unwrap();
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        let mut f = [0.0; 3];
        r.f64s(&mut f).unwrap();
        assert_eq!(f[0], 1.5);
        assert!(f[1].is_nan());
        assert_eq!(f[2].to_bits(), (-0.0f64).to_bits());
        let mut g = [0.0f32; 1];
        r.f32s(&mut g).unwrap();
        assert_eq!(g[0], 2.25);
        assert!(r.u32().is_err(), "reading past the payload is an error");
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(StateReader::open(&bad, *b"TEST", 3).is_err(), "bit {bit}");
        }
        assert!(matches!(
            StateReader::open(&bytes, *b"TEST", 4),
            Err(StateError::Version { found: 3, .. })
        ));
        assert!(matches!(
            StateReader::open(&bytes, *b"OTHR", 3),
            Err(StateError::WrongKind { .. })
        ));
    }
}
