//! Record framing: a sync marker, the payload length, the record id, the reading
//! count and a CRC-32 over all of it, followed by the payload.
//!
//! The same framing (with its own marker) is used by the ledger, so both files
//! share one scanner that skips and counts damaged regions and resynchronises on
//! the next valid frame.

/// Bytes of a record frame before its payload.
pub const FRAME_HEADER_LEN: usize = 24;

/// Largest payload the scanner accepts; a larger length field is treated as damage.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Marks the start of every record frame. Chosen to be unlikely in text and in
/// small protobuf messages (0xFA and 0xC0 are never the first byte of a UTF-8
/// character), so that resynchronisation rarely tries false starts.
pub const RECORD_MARKER: [u8; 4] = [0xFA, 0x5E, 0xC0, 0xDE];

/// One decoded record frame, borrowed from the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Byte offset of the frame (its marker) in the scanned buffer.
    pub offset: usize,
    /// Record id.
    pub id: u64,
    /// Number of readings the producer said the payload holds.
    pub n_readings: u32,
    /// The payload.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Offset just past this frame.
    pub fn end(&self) -> usize {
        self.offset + FRAME_HEADER_LEN + self.payload.len()
    }
}

/// Bytes a record with a `payload_len`-byte payload takes on disk.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// Appends the frame of one record to `out` (no allocation when `out` has room).
///
/// Layout (little endian): marker `[4]` | payload_len `u32` | id `u64` |
/// n_readings `u32` | crc32 `u32` over bytes 4..20 and the payload | payload.
pub fn encode(out: &mut Vec<u8>, id: u64, n_readings: u32, payload: &[u8]) {
    let payload_len = u32::try_from(payload.len())
        .expect("callers check payload length against the segment size");
    let start = out.len();
    out.extend_from_slice(&RECORD_MARKER);
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&n_readings.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start + 4..start + 20]);
    hasher.update(payload);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the frame starting at `offset`, or `None` if the bytes there are not a
/// complete, checksum-valid frame.
pub fn decode(buf: &[u8], offset: usize) -> Option<Frame<'_>> {
    let header = buf.get(offset..offset.checked_add(FRAME_HEADER_LEN)?)?;
    if header[0..4] != RECORD_MARKER {
        return None;
    }
    let payload_len = u32_at(header, 4) as usize;
    if payload_len > MAX_PAYLOAD {
        return None;
    }
    let payload_start = offset + FRAME_HEADER_LEN;
    let payload = buf.get(payload_start..payload_start.checked_add(payload_len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..20]);
    hasher.update(payload);
    if hasher.finalize() != u32_at(header, 20) {
        return None;
    }
    Some(Frame {
        offset,
        id: u64_at(header, 8),
        n_readings: u32_at(header, 16),
        payload,
    })
}

/// What a scan found besides the valid frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanDamage {
    /// Damaged regions followed by a valid frame (corruption in the middle).
    pub corrupt_regions: u64,
    /// Bytes in those regions.
    pub corrupt_bytes: u64,
    /// Record ids missing between valid frames (ids are consecutive in a segment),
    /// i.e. records lost to corruption in the middle.
    pub records_lost: u64,
    /// Bytes after the last valid frame that are not a valid frame (torn tail).
    pub tail_bytes: u64,
    /// Offset just past the last valid frame (where a torn tail starts).
    pub valid_end: usize,
}

/// Scans `buf[start..]` for record frames, calling `on_frame` for each valid one in
/// order. Damaged bytes are skipped by searching for the next marker that starts a
/// valid frame with a larger id than the previous one; a damaged region that runs
/// to the end is reported as a torn tail.
pub fn scan(buf: &[u8], start: usize, on_frame: &mut dyn FnMut(Frame<'_>)) -> ScanDamage {
    let mut damage = ScanDamage {
        valid_end: start,
        ..ScanDamage::default()
    };
    let mut last_id: Option<u64> = None;
    let mut pos = start;
    while pos < buf.len() {
        if let Some(frame) = decode(buf, pos).filter(|f| is_after(last_id, f.id)) {
            pos = frame.end();
            last_id = Some(frame.id);
            damage.valid_end = pos;
            on_frame(frame);
            continue;
        }
        match resync(buf, pos + 1, last_id) {
            Some(frame) => {
                damage.corrupt_regions += 1;
                damage.corrupt_bytes += (frame.offset - pos) as u64;
                if let Some(last) = last_id {
                    damage.records_lost += frame.id - last - 1;
                }
                pos = frame.offset;
            }
            None => {
                damage.tail_bytes = (buf.len() - pos) as u64;
                break;
            }
        }
    }
    damage
}

fn is_after(last_id: Option<u64>, id: u64) -> bool {
    last_id.is_none_or(|last| id > last)
}

/// Finds the next valid frame at or after `from`.
fn resync(buf: &[u8], from: usize, last_id: Option<u64>) -> Option<Frame<'_>> {
    let mut pos = from;
    while pos + FRAME_HEADER_LEN <= buf.len() {
        let rel = buf[pos..].iter().position(|&b| b == RECORD_MARKER[0])?;
        pos += rel;
        if let Some(frame) = decode(buf, pos).filter(|f| is_after(last_id, f.id)) {
            return Some(frame);
        }
        pos += 1;
    }
    None
}

pub(crate) fn u32_at(buf: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(buf[offset..offset + 4].try_into().expect("4-byte slice"))
}

pub(crate) fn u64_at(buf: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(buf[offset..offset + 8].try_into().expect("8-byte slice"))
}
