//! The frame codec and the scanner that validates frames and resyncs past
//! damage (see the module doc of `log` for the layout).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes before the payload: len, crc, offset, appended_ms.
pub(crate) const HEADER_BYTES: u64 = 24;
/// Upper bound for one payload; larger lengths mean corruption.
pub(crate) const MAX_PAYLOAD_BYTES: u32 = 256 << 20;
/// How much a resync reads at a time.
const RESYNC_WINDOW: u64 = 1 << 20;

/// The fields of a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub offset: u64,
    pub appended_ms: i64,
    pub payload_len: u32,
}

impl FrameHeader {
    /// Header plus payload bytes.
    pub fn frame_len(&self) -> u64 {
        HEADER_BYTES + u64::from(self.payload_len)
    }
}

/// Appends one frame to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, offset: u64, appended_ms: i64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("caller checked the payload size");
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&offset.to_le_bytes());
    hasher.update(&appended_ms.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&appended_ms.to_le_bytes());
    out.extend_from_slice(payload);
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Where a frame may be: a segment's base offset, the readable length, and
/// the offset the frame must be above.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub base: u64,
    pub limit: u64,
    pub after: Option<u64>,
}

/// A header that could start a frame at `pos`: sane length, fits before the
/// limit, offset above `after` and no higher than the segment could hold by
/// then (every frame takes at least a header), so a frame-like pattern inside
/// a payload cannot claim an offset that would hide the real frames after it.
fn plausible(header: &[u8], pos: u64, bounds: Bounds) -> Option<FrameHeader> {
    let Bounds { base, limit, after } = bounds;
    let payload_len = u32_at(header, 0);
    let offset = u64_at(header, 8);
    let appended_ms = u64_at(header, 16) as i64;
    let fits =
        payload_len <= MAX_PAYLOAD_BYTES && pos + HEADER_BYTES + u64::from(payload_len) <= limit;
    let ordered = after.is_none_or(|prev| offset > prev)
        && offset >= base
        && offset <= base.saturating_add(pos / HEADER_BYTES);
    (fits && ordered).then_some(FrameHeader {
        offset,
        appended_ms,
        payload_len,
    })
}

fn crc_matches(header: &[u8], payload: &[u8]) -> bool {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..4]);
    hasher.update(&header[8..24]);
    hasher.update(payload);
    hasher.finalize() == u32_at(header, 4)
}

/// Reads the frame at `pos` if a whole valid one is there (within
/// `bounds`); its payload is left in `payload`.
///
/// # Errors
/// Only real IO errors; a damaged or short frame is `Ok(None)`.
pub(crate) fn read_at(
    file: &File,
    pos: u64,
    bounds: Bounds,
    payload: &mut Vec<u8>,
) -> io::Result<Option<FrameHeader>> {
    if pos + HEADER_BYTES > bounds.limit {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut header, pos)?;
    let Some(frame) = plausible(&header, pos, bounds) else {
        return Ok(None);
    };
    payload.resize(frame.payload_len as usize, 0);
    file.read_exact_at(payload, pos + HEADER_BYTES)?;
    Ok(crc_matches(&header, payload).then_some(frame))
}

/// Finds the first position after `damaged_at` where a whole valid frame
/// within `bounds` starts, reading `RESYNC_WINDOW` bytes at a time (never
/// the whole segment).
///
/// # Errors
/// Only real IO errors.
pub(crate) fn resync(
    file: &File,
    damaged_at: u64,
    bounds: Bounds,
    payload: &mut Vec<u8>,
) -> io::Result<Option<(u64, FrameHeader)>> {
    let limit = bounds.limit;
    let mut window_start = damaged_at + 1;
    let mut window = Vec::new();
    while window_start + HEADER_BYTES <= limit {
        let n = (RESYNC_WINDOW + HEADER_BYTES).min(limit - window_start);
        window.resize(n as usize, 0);
        file.read_exact_at(&mut window, window_start)?;
        let candidates = n - HEADER_BYTES + 1;
        for i in 0..candidates {
            let pos = window_start + i;
            let at = i as usize;
            let header = &window[at..at + HEADER_BYTES as usize];
            if plausible(header, pos, bounds).is_none() {
                continue;
            }
            if let Some(frame) = read_at(file, pos, bounds, payload)? {
                return Ok(Some((pos, frame)));
            }
        }
        window_start += candidates;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_frame_reads_back_and_a_flipped_bit_is_refused() {
        let mut bytes = Vec::new();
        encode(&mut bytes, 7, 1_700, b"hello");
        encode(&mut bytes, 8, 1_701, b"world");
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let limit = bytes.len() as u64;
        let bounds = |after| Bounds {
            base: 7,
            limit,
            after,
        };
        let mut payload = Vec::new();
        let first = read_at(&file, 0, bounds(None), &mut payload)
            .unwrap()
            .unwrap();
        assert_eq!((first.offset, first.appended_ms), (7, 1_700));
        assert_eq!(payload, b"hello");
        assert!(
            read_at(&file, first.frame_len(), bounds(Some(8)), &mut payload)
                .unwrap()
                .is_none()
        );

        bytes[HEADER_BYTES as usize + 1] ^= 0x01;
        let mut damaged = tempfile::tempfile().unwrap();
        damaged.write_all(&bytes).unwrap();
        assert!(read_at(&damaged, 0, bounds(None), &mut payload)
            .unwrap()
            .is_none());
        let (pos, frame) = resync(&damaged, 0, bounds(None), &mut payload)
            .unwrap()
            .unwrap();
        assert_eq!((pos, frame.offset), (first.frame_len(), 8));
        assert_eq!(payload, b"world");
    }

    #[test]
    fn resync_ignores_a_frame_hidden_in_a_payload_with_an_impossible_offset() {
        let mut hidden = Vec::new();
        encode(&mut hidden, 1_000_000, 1, b"fake");
        let mut bytes = Vec::new();
        encode(&mut bytes, 0, 1, &hidden);
        encode(&mut bytes, 1, 1, b"real");
        bytes[0] ^= 0x01;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let bounds = Bounds {
            base: 0,
            limit: bytes.len() as u64,
            after: None,
        };
        let mut payload = Vec::new();
        let (_, frame) = resync(&file, 0, bounds, &mut payload).unwrap().unwrap();
        assert_eq!(frame.offset, 1);
        assert_eq!(payload, b"real");
    }
}
