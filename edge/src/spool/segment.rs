//! Segment files: naming, the 40-byte header, scanning a whole segment, the
//! in-memory state of one segment, and reading records back by id.

use std::{ops::Range, path::Path};

use super::{
    fs::FileLayer,
    record::{self, Frame, ScanDamage, FRAME_HEADER_LEN},
    SpoolError, SpoolRecord,
};

/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 48;
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FPSPOOL\0";
/// Current segment format version.
pub const SEGMENT_VERSION: u32 = 1;
/// File name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// A sparse index entry is kept at least every this many bytes of a segment.
const INDEX_STRIDE: u64 = 64 * 1024;
/// Bytes read from a segment at a time when records are read back (see `read_records`).
const READ_SPAN: u64 = 128 * 1024;

/// Decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment id (also in the file name).
    pub segment_id: u64,
    /// Id of the first record written to this segment.
    pub first_record_id: u64,
    /// The spool's next batch seq when this segment was created: a lower bound
    /// for seq recovery if the ledger is lost.
    pub seq_hint: u64,
}

/// What the first [`SEGMENT_HEADER_LEN`] bytes of a segment file hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// A valid header of the current version.
    Valid(SegmentHeader),
    /// Magic and checksum are valid but the version is not one we read.
    UnsupportedVersion(u32),
    /// Too short, wrong magic or bad checksum: the records are still scanned.
    Damaged,
}

impl HeaderState {
    /// The header, if it is valid.
    pub fn valid(&self) -> Option<SegmentHeader> {
        match self {
            Self::Valid(header) => Some(*header),
            _ => None,
        }
    }
}

/// File name of segment `segment_id` (zero-padded so names sort by id).
pub fn file_name(segment_id: u64) -> String {
    format!("{segment_id:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its id.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Appends the header of a new segment to `out`.
///
/// Layout (little endian): magic `[8]` | version `u32` | reserved `u32` (0) |
/// segment_id `u64` | first_record_id `u64` | seq_hint `u64` | crc32 `u32` of bytes
/// 0..40 | reserved `u32`.
pub fn encode_header(out: &mut Vec<u8>, header: SegmentHeader) {
    let start = out.len();
    out.extend_from_slice(&SEGMENT_MAGIC);
    out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header.segment_id.to_le_bytes());
    out.extend_from_slice(&header.first_record_id.to_le_bytes());
    out.extend_from_slice(&header.seq_hint.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + 40]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Decodes a segment header from the start of `buf`.
pub fn decode_header(buf: &[u8]) -> HeaderState {
    let Some(bytes) = buf.get(..SEGMENT_HEADER_LEN) else {
        return HeaderState::Damaged;
    };
    if bytes[..8] != SEGMENT_MAGIC || crc32fast::hash(&bytes[..40]) != record::u32_at(bytes, 40) {
        return HeaderState::Damaged;
    }
    let version = record::u32_at(bytes, 8);
    if version != SEGMENT_VERSION {
        return HeaderState::UnsupportedVersion(version);
    }
    HeaderState::Valid(SegmentHeader {
        segment_id: record::u64_at(bytes, 16),
        first_record_id: record::u64_at(bytes, 24),
        seq_hint: record::u64_at(bytes, 32),
    })
}

/// The result of scanning one whole segment file.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// The header.
    pub header: HeaderState,
    /// Damage found among the records.
    pub damage: ScanDamage,
}

/// Scans a whole segment file held in `buf`, calling `on_frame` for each valid record.
///
/// A damaged header does not stop the scan: frames carry their own ids and
/// checksums. Files with an unsupported version are not scanned.
pub fn scan_segment(buf: &[u8], on_frame: &mut dyn FnMut(Frame<'_>)) -> SegmentScan {
    let header = decode_header(buf);
    let start = match header {
        HeaderState::UnsupportedVersion(_) => {
            return SegmentScan {
                header,
                damage: ScanDamage {
                    valid_end: buf.len(),
                    ..ScanDamage::default()
                },
            }
        }
        HeaderState::Valid(_) => SEGMENT_HEADER_LEN,
        // Scan from the start: a frame marker cannot hide in a damaged header's
        // place without its checksum matching, and the header bytes are then
        // counted as a damaged region or tail.
        HeaderState::Damaged => 0,
    };
    let damage = record::scan(buf, start.min(buf.len()), on_frame);
    SegmentScan { header, damage }
}

/// Record counts of some set of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Number of records.
    pub records: u64,
    /// Sum of their reading counts.
    pub readings: u64,
    /// Sum of their payload sizes in bytes.
    pub bytes: u64,
}

impl Totals {
    /// Totals of one record.
    pub fn one(n_readings: u32, payload_len: usize) -> Self {
        Self {
            records: 1,
            readings: u64::from(n_readings),
            bytes: payload_len as u64,
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: Totals) {
        self.records += other.records;
        self.readings += other.readings;
        self.bytes += other.bytes;
    }

    /// Subtracts `other` from `self` (saturating: counters never wrap).
    pub fn sub(&mut self, other: Totals) {
        self.records = self.records.saturating_sub(other.records);
        self.readings = self.readings.saturating_sub(other.readings);
        self.bytes = self.bytes.saturating_sub(other.bytes);
    }
}

/// In-memory state of one segment file.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Segment id.
    pub id: u64,
    /// Smallest record id this segment can hold (from the header, or the first
    /// valid record if the header was damaged).
    pub first_id: u64,
    /// One past the largest record id in this segment.
    pub end_id: u64,
    /// Bytes in the file plus bytes buffered for it.
    pub len: u64,
    /// Records not yet cut.
    pub uncut: Totals,
    /// Records cut into a batch that is not acked yet.
    pub pending: Totals,
    /// Sparse index: (record id, byte offset) at least every [`INDEX_STRIDE`] bytes,
    /// ascending. Lets reads start near a record instead of at the segment start.
    index: Vec<(u64, u64)>,
}

impl Segment {
    /// A segment with no records yet.
    pub fn new(id: u64, first_id: u64, len: u64) -> Self {
        Self {
            id,
            first_id,
            end_id: first_id,
            len,
            uncut: Totals::default(),
            pending: Totals::default(),
            index: Vec::new(),
        }
    }

    /// Records a frame of `frame_len` bytes for record `record_id` at `offset`.
    pub fn note_record(&mut self, record_id: u64, offset: u64) {
        let needs_entry = self
            .index
            .last()
            .is_none_or(|&(_, last_offset)| offset - last_offset >= INDEX_STRIDE);
        if needs_entry {
            self.index.push((record_id, offset));
        }
        self.end_id = record_id + 1;
    }

    /// Forgets the records from `end_id` on (a roll-back of unsynced appends); the caller
    /// restores `len` and the totals.
    pub fn forget_records_from(&mut self, end_id: u64) {
        self.end_id = end_id.max(self.first_id);
        self.index.retain(|&(id, _)| id < end_id);
    }

    /// True if no record in this segment still needs to be sent or acked.
    pub fn is_done(&self) -> bool {
        self.uncut.records == 0 && self.pending.records == 0
    }

    /// True if this segment may hold record `id`.
    pub fn holds(&self, id: u64) -> bool {
        (self.first_id..self.end_id).contains(&id)
    }

    /// Reads the records with ids in `ids` (which must lie in this segment) from
    /// the file at `path`, in id order. Records that no longer decode (damaged
    /// after the spool was opened) are skipped.
    pub fn read_records(
        &self,
        fs: &dyn FileLayer,
        path: &Path,
        ids: Range<u64>,
        out: &mut Vec<SpoolRecord>,
    ) -> Result<(), SpoolError> {
        let file = fs
            .open_read(path)
            .map_err(|source| SpoolError::io("opening segment", path, source))?;
        let file_len = file
            .size()
            .map_err(|source| SpoolError::io("reading segment length", path, source))?;
        let start_idx = self.index.partition_point(|&(id, _)| id <= ids.start);
        let start = match start_idx {
            0 => SEGMENT_HEADER_LEN as u64,
            n => self.index[n - 1].1,
        };
        let end = self
            .index
            .iter()
            .find(|&&(id, _)| id >= ids.end)
            .map_or(file_len, |&(_, offset)| offset)
            .min(file_len);
        if start >= end {
            return Ok(());
        }
        // Read in spans of about READ_SPAN bytes that start and end at indexed offsets (record
        // boundaries), so a batch is never held twice in memory (file bytes and records).
        let mut buf = Vec::new();
        let mut span_start = start;
        let boundaries = self
            .index
            .iter()
            .map(|&(_, offset)| offset)
            .filter(|&offset| offset > start && offset < end)
            .chain(std::iter::once(end));
        for boundary in boundaries {
            if boundary < end && boundary - span_start < READ_SPAN {
                continue;
            }
            buf.resize((boundary - span_start) as usize, 0);
            file.read_exact_at(&mut buf, span_start)
                .map_err(|source| SpoolError::io("reading segment", path, source))?;
            record::scan(&buf, 0, &mut |frame| {
                if ids.contains(&frame.id) {
                    out.push(SpoolRecord {
                        id: frame.id,
                        payload: frame.payload.to_vec(),
                        n_readings: frame.n_readings,
                    });
                }
            });
            span_start = boundary;
        }
        Ok(())
    }
}

/// Largest payload a segment of `segment_bytes` can hold.
pub fn max_payload(segment_bytes: u64) -> usize {
    let fits = usize::try_from(segment_bytes)
        .unwrap_or(usize::MAX)
        .saturating_sub(SEGMENT_HEADER_LEN + FRAME_HEADER_LEN);
    fits.min(record::MAX_PAYLOAD)
}
