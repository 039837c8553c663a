//! Segment files: naming, the per-segment sparse index, and the frame walk
//! shared by recovery and readers.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::frame::{self, Bounds, FrameHeader};

/// One index entry per this many bytes of segment.
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 256 << 10;

/// The file name of the segment whose first offset is `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// The base offset named by a segment file name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// A segment of the log.
#[derive(Debug)]
pub(crate) struct Segment {
    /// First offset the segment may hold.
    pub base: u64,
    pub path: PathBuf,
    /// Bytes readers may read: durable frames only.
    pub durable_len: AtomicU64,
    /// Wall-clock ms of the newest record (or the file's mtime when unknown).
    pub newest_ms: AtomicI64,
    /// Sparse `(offset, position)` index, ascending in both.
    index: Mutex<Vec<(u64, u64)>>,
}

impl Segment {
    pub fn new(base: u64, path: PathBuf, durable_len: u64, newest_ms: i64) -> Self {
        Self {
            base,
            path,
            durable_len: AtomicU64::new(durable_len),
            newest_ms: AtomicI64::new(newest_ms),
            index: Mutex::new(Vec::new()),
        }
    }

    pub fn durable_len(&self) -> u64 {
        self.durable_len.load(Ordering::Acquire)
    }

    /// Records that the frame of `offset` starts at `pos`, if it is far
    /// enough past the last entry.
    pub fn note_position(&self, offset: u64, pos: u64) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let due = match index.last() {
            None => pos >= INDEX_INTERVAL_BYTES,
            Some(&(last_offset, last_pos)) => {
                offset > last_offset && pos >= last_pos + INDEX_INTERVAL_BYTES
            }
        };
        if due {
            index.push((offset, pos));
        }
    }

    /// The position of the last indexed frame at or below `offset`, with
    /// the offset before it (0 and `None` for the segment start).
    pub fn seek_hint(&self, offset: u64) -> (u64, Option<u64>) {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let idx = index.partition_point(|&(o, _)| o <= offset);
        match idx.checked_sub(1).map(|i| index[i]) {
            Some((indexed_offset, pos)) => (pos, indexed_offset.checked_sub(1)),
            None => (0, None),
        }
    }
}

/// What one step of a walk over a segment found.
#[derive(Debug)]
pub(crate) enum Step {
    /// A valid frame at `pos`; the payload is in the walker's buffer.
    Frame { pos: u64, frame: FrameHeader },
    /// Damaged bytes `from..to`, followed by a valid frame at `to`.
    Damaged { from: u64, to: u64 },
    /// Damaged bytes from `from` to the limit, with no valid frame after.
    DamagedTail { from: u64 },
    /// The limit was reached cleanly.
    End,
}

/// Walks the frames of one segment file from a position, resyncing past
/// damage.
pub(crate) struct Walker {
    pub file: File,
    /// The segment's base offset.
    pub base: u64,
    pub pos: u64,
    pub limit: u64,
    /// Offset of the last valid frame returned (frames must increase).
    pub last_offset: Option<u64>,
    pub payload: Vec<u8>,
    pending: Option<FrameHeader>,
}

impl Walker {
    pub fn open(segment: &Segment, pos: u64, last_offset: Option<u64>) -> io::Result<Self> {
        Ok(Self {
            file: File::open(&segment.path)?,
            base: segment.base,
            pos,
            limit: segment.durable_len(),
            last_offset,
            payload: Vec::new(),
            pending: None,
        })
    }

    /// The next step; after `Frame` the walker has moved past that frame.
    pub fn step(&mut self) -> io::Result<Step> {
        if let Some(frame) = self.pending.take() {
            // Found by the previous resync; the payload is already loaded.
            let pos = self.pos;
            self.advance(frame);
            return Ok(Step::Frame { pos, frame });
        }
        if self.pos >= self.limit {
            return Ok(Step::End);
        }
        let pos = self.pos;
        let bounds = Bounds {
            base: self.base,
            limit: self.limit,
            after: self.last_offset,
        };
        if let Some(frame) = frame::read_at(&self.file, pos, bounds, &mut self.payload)? {
            self.advance(frame);
            return Ok(Step::Frame { pos, frame });
        }
        match frame::resync(&self.file, pos, bounds, &mut self.payload)? {
            Some((to, frame)) => {
                self.pos = to;
                self.pending = Some(frame);
                Ok(Step::Damaged { from: pos, to })
            }
            None => {
                self.pos = self.limit;
                Ok(Step::DamagedTail { from: pos })
            }
        }
    }

    fn advance(&mut self, frame: FrameHeader) {
        self.pos += frame.frame_len();
        self.last_offset = Some(frame.offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_other_files_are_not_segments() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(
            parse_file_name("00000000000000000042.seg.corrupt-1-2"),
            None
        );
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("dedupe.json"), None);
    }
}
