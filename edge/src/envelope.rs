//! The agent's spool record payload: one MQTT message's validated readings.
//!
//! The spool treats record payloads as opaque bytes; this module owns their layout. All integers
//! are little-endian.
//!
//! ```text
//! version   u8      = 1
//! pkid      u16     MQTT packet id the message arrived with (redelivery filter)
//! msg_hash  u64     FNV-1a of topic and raw payload (redelivery filter)
//! recv_ms   i64     gateway receive time
//! n         u32     number of readings
//! n times:
//!   asset_len u16, asset (UTF-8), sensor_len u16, sensor (UTF-8),
//!   ts_ms i64, value f64 (bits),
//!   flags u8 (bit 0: clock_suspect, bit 1: receive_stamped, bit 2: held_back; others 0)
//! ```
//!
//! The spool's CRC protects the bytes; [`EnvelopeView::parse`] still checks every length, so a
//! record from an incompatible version or a bug is an error, never a panic.

use crate::validate::ValidReading;

/// Current layout version.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 2 + 8 + 8 + 4;

/// Why a record payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Unknown version byte.
    #[error("record layout version {0} is not supported")]
    Version(u8),
    /// The payload ends early or has trailing bytes.
    #[error("record payload is truncated or has trailing bytes")]
    Length,
    /// A name is not UTF-8.
    #[error("record payload holds a name that is not UTF-8")]
    Utf8,
}

/// Header fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// MQTT packet id.
    pub pkid: u16,
    /// FNV-1a of topic and payload.
    pub msg_hash: u64,
    /// Gateway receive time.
    pub recv_ms: i64,
    /// Number of readings.
    pub n_readings: u32,
}

/// One reading borrowed from a record payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordReading<'a> {
    /// Asset identifier.
    pub asset: &'a str,
    /// Sensor name.
    pub sensor: &'a str,
    /// Timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
    /// Clock-suspect flag.
    pub clock_suspect: bool,
    /// Stamped by the edge at receive time (see [`ValidReading::receive_stamped`]).
    pub receive_stamped: bool,
    /// Received while the agent held messages back (see [`ValidReading::held_back`]).
    pub held_back: bool,
}

/// A parsed record payload: its header and its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeView<'a> {
    /// Header fields.
    pub header: EnvelopeHeader,
    /// The readings, in receive order.
    pub readings: Vec<RecordReading<'a>>,
}

/// Hashes an MQTT message's topic and payload (FNV-1a, 64 bit; stable across builds).
pub fn message_hash(topic: &str, payload: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.as_bytes().iter().chain([0u8].iter()).chain(payload) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Encodes a record payload into `out` (cleared first).
pub fn encode(
    header_pkid: u16,
    msg_hash: u64,
    recv_ms: i64,
    readings: &[ValidReading],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.reserve(HEADER_LEN + readings.len() * 40);
    out.push(VERSION);
    out.extend_from_slice(&header_pkid.to_le_bytes());
    out.extend_from_slice(&msg_hash.to_le_bytes());
    out.extend_from_slice(&recv_ms.to_le_bytes());
    out.extend_from_slice(&(readings.len() as u32).to_le_bytes());
    for reading in readings {
        push_name(out, &reading.asset);
        push_name(out, &reading.sensor);
        out.extend_from_slice(&reading.ts_ms.to_le_bytes());
        out.extend_from_slice(&reading.value.to_bits().to_le_bytes());
        out.push(
            u8::from(reading.clock_suspect)
                | u8::from(reading.receive_stamped) << 1
                | u8::from(reading.held_back) << 2,
        );
    }
}

/// Names longer than `u16::MAX` bytes are cut at a character boundary (MQTT topics and our
/// payload limits keep real names far below that).
fn push_name(out: &mut Vec<u8>, name: &str) {
    let mut end = name.len().min(usize::from(u16::MAX));
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&name.as_bytes()[..end]);
}

/// Reads only the header of a record payload.
///
/// # Errors
/// [`EnvelopeError`] when the payload is not a record of this layout.
pub fn parse_header(payload: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    let mut cursor = Cursor {
        bytes: payload,
        pos: 0,
    };
    let version = cursor.u8()?;
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    Ok(EnvelopeHeader {
        pkid: u16::from_le_bytes(cursor.array()?),
        msg_hash: u64::from_le_bytes(cursor.array()?),
        recv_ms: i64::from_le_bytes(cursor.array()?),
        n_readings: u32::from_le_bytes(cursor.array()?),
    })
}

impl<'a> EnvelopeView<'a> {
    /// Parses a whole record payload.
    ///
    /// # Errors
    /// [`EnvelopeError`] when a length or name is malformed.
    pub fn parse(payload: &'a [u8]) -> Result<Self, EnvelopeError> {
        let header = parse_header(payload)?;
        let mut cursor = Cursor {
            bytes: payload,
            pos: HEADER_LEN,
        };
        let n = header.n_readings as usize;
        // Each reading takes at least 21 bytes: refuse absurd counts before allocating.
        if n > payload.len() / 21 + 1 {
            return Err(EnvelopeError::Length);
        }
        let mut readings = Vec::with_capacity(n);
        for _ in 0..n {
            let asset = cursor.name()?;
            let sensor = cursor.name()?;
            let ts_ms = i64::from_le_bytes(cursor.array()?);
            let value = f64::from_bits(u64::from_le_bytes(cursor.array()?));
            let flags = cursor.u8()?;
            readings.push(RecordReading {
                asset,
                sensor,
                ts_ms,
                value,
                clock_suspect: flags & 1 != 0,
                receive_stamped: flags & 2 != 0,
                held_back: flags & 4 != 0,
            });
        }
        if cursor.pos != payload.len() {
            return Err(EnvelopeError::Length);
        }
        Ok(Self { header, readings })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.pos.checked_add(n).ok_or(EnvelopeError::Length)?;
        let slice = self.bytes.get(self.pos..end).ok_or(EnvelopeError::Length)?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn name(&mut self) -> Result<&'a str, EnvelopeError> {
        let len = u16::from_le_bytes(self.array()?);
        std::str::from_utf8(self.take(usize::from(len))?).map_err(|_| EnvelopeError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(
        asset: &str,
        sensor: &str,
        ts_ms: i64,
        value: f64,
        clock_suspect: bool,
    ) -> ValidReading {
        ValidReading {
            asset: asset.into(),
            sensor: sensor.into(),
            ts_ms,
            value,
            clock_suspect,
            receive_stamped: asset.ends_with("-rs"),
            held_back: sensor.ends_with("-held"),
        }
    }

    #[test]
    fn a_record_round_trips_with_its_header() {
        let readings = vec![
            valid("pump-7", "temp", -5, 71.25, false),
            valid("pump-7", "vib", 9, -0.0, true),
            valid("pump-8-rs", "vib-held", 9, 1.0, false),
        ];
        let mut bytes = Vec::new();
        encode(42, 0xdead_beef, 1234, &readings, &mut bytes);
        let view = EnvelopeView::parse(&bytes).unwrap();
        assert_eq!(
            view.header,
            EnvelopeHeader {
                pkid: 42,
                msg_hash: 0xdead_beef,
                recv_ms: 1234,
                n_readings: 3
            }
        );
        assert_eq!(
            view.readings[0],
            RecordReading {
                asset: "pump-7",
                sensor: "temp",
                ts_ms: -5,
                value: 71.25,
                clock_suspect: false,
                receive_stamped: false,
                held_back: false,
            }
        );
        assert!(view.readings[1].clock_suspect);
        let flags = &view.readings[2];
        assert!(flags.receive_stamped && flags.held_back && !flags.clock_suspect);
        assert_eq!(parse_header(&bytes).unwrap(), view.header);
    }

    #[test]
    fn every_truncation_of_a_record_is_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        encode(1, 2, 3, &[valid("a", "b", 1, 2.0, false)], &mut bytes);
        for len in 0..bytes.len() {
            assert!(EnvelopeView::parse(&bytes[..len]).is_err(), "len {len}");
        }
        bytes.push(0);
        assert_eq!(EnvelopeView::parse(&bytes), Err(EnvelopeError::Length));
        bytes[0] = 9;
        assert_eq!(parse_header(&bytes), Err(EnvelopeError::Version(9)));
    }

    #[test]
    fn the_message_hash_depends_on_topic_and_payload() {
        assert_ne!(message_hash("a", b"1"), message_hash("a", b"2"));
        assert_ne!(message_hash("a", b"1"), message_hash("b", b"1"));
        assert_ne!(message_hash("ab", b""), message_hash("a", b"b"));
        assert_eq!(message_hash("a", b"1"), message_hash("a", b"1"));
    }
}
