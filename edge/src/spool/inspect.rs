//! `fieldpulse-edge spool inspect <dir>`: a read-only report of a spool directory
//! (segments, records, bytes, damage, ledger state). It never modifies the
//! directory, so it is safe to run next to a live agent or on a copy.

use std::{fmt, io, path::Path};

use serde::Serialize;

use super::{
    epoch::{self, EpochFile, EPOCH_FILE, EPOCH_TMP_FILE},
    fs::{FileLayer, StdFileLayer, LOCK_FILE},
    ledger::{self, LEDGER_FILE, LEDGER_TMP_FILE},
    segment::{self, HeaderState},
    Lane, SpoolError,
};

/// Everything `inspect` found in a spool directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InspectReport {
    /// The directory inspected.
    pub dir: String,
    /// The spool epoch, when `spool.epoch` is readable.
    pub epoch: Option<u64>,
    /// The epoch file: `ok`, `missing` (a new spool, or one written before epochs:
    /// the next open creates it), `damaged` or `unsupported version N` (the next open
    /// replaces it with a new epoch).
    pub epoch_file: String,
    /// Segment files in id order.
    pub segments: Vec<SegmentInspect>,
    /// The ledger.
    pub ledger: LedgerInspect,
    /// Files that are not the spool's.
    pub foreign_files: Vec<String>,
    /// Valid records over all segments.
    pub records: u64,
    /// Records not yet acked (uncut or pending).
    pub records_unacked: u64,
    /// Bytes of all segment files and the ledger.
    pub bytes_on_disk: u64,
    /// True if any damage was found.
    pub damaged: bool,
}

/// One segment file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SegmentInspect {
    /// File name.
    pub file: String,
    /// Segment id from the file name.
    pub segment_id: u64,
    /// File length.
    pub bytes: u64,
    /// `ok`, `damaged` or `unsupported version N`.
    pub header: String,
    /// First valid record id.
    pub first_record_id: Option<u64>,
    /// Last valid record id.
    pub last_record_id: Option<u64>,
    /// Valid records.
    pub records: u64,
    /// Their readings.
    pub readings: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Records acked (waiting for the segment to be deleted).
    pub acked_records: u64,
    /// Records in pending batches.
    pub pending_records: u64,
    /// Damaged regions between valid records.
    pub corrupt_regions: u64,
    /// Bytes in those regions.
    pub corrupt_bytes: u64,
    /// Records lost in those regions.
    pub records_lost: u64,
    /// Bytes of a torn tail.
    pub torn_tail_bytes: u64,
}

/// The ledger file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerInspect {
    /// The file exists.
    pub present: bool,
    /// File length.
    pub bytes: u64,
    /// Valid entries.
    pub entries: u64,
    /// Damaged regions or undecodable entries.
    pub corrupt_regions: u64,
    /// Bytes of a torn tail.
    pub torn_bytes: u64,
    /// The seq the next cut would get (before any recovery adjustment).
    pub next_seq: u64,
    /// Pending batches.
    pub pending: Vec<PendingInspect>,
}

/// One pending batch in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingInspect {
    /// Its seq.
    pub seq: u64,
    /// Its lane.
    pub lane: Lane,
    /// Record ids it references (some may be gone).
    pub records: u64,
}

/// Inspects the spool in `dir` without modifying anything.
///
/// # Errors
///
/// IO errors (missing directory, permission denied), naming the path.
pub fn inspect(dir: &Path) -> Result<InspectReport, SpoolError> {
    inspect_with(&StdFileLayer, dir)
}

/// [`inspect`] over an injectable file layer.
pub(crate) fn inspect_with(fs: &dyn FileLayer, dir: &Path) -> Result<InspectReport, SpoolError> {
    let listing = fs
        .list_dir(dir)
        .map_err(|source| SpoolError::io("listing spool directory", dir, source))?;
    let mut report = InspectReport {
        dir: dir.display().to_string(),
        ..InspectReport::default()
    };
    let epoch_file = epoch::load(fs, dir)?;
    report.epoch = epoch_file.valid();
    report.epoch_file = epoch_file.describe();
    report.damaged |= matches!(
        epoch_file,
        EpochFile::Damaged | EpochFile::UnsupportedVersion(_)
    );
    let ledger_path = dir.join(LEDGER_FILE);
    let loaded = match fs.read(&ledger_path) {
        Ok(bytes) => {
            let loaded = ledger::replay(&bytes);
            report.ledger = LedgerInspect {
                present: true,
                bytes: bytes.len() as u64,
                entries: loaded.entries,
                corrupt_regions: loaded.damage.corrupt_regions + loaded.bad_entries,
                torn_bytes: loaded.damage.tail_bytes,
                next_seq: loaded.state.next_seq.max(loaded.max_seq_seen + 1),
                pending: loaded
                    .state
                    .pending
                    .values()
                    .map(|cut| PendingInspect {
                        seq: cut.seq,
                        lane: cut.lane,
                        records: cut.ranges.iter().map(|r| r.end - r.start).sum(),
                    })
                    .collect(),
            };
            report.bytes_on_disk += bytes.len() as u64;
            Some(loaded)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(SpoolError::io("reading ledger", &ledger_path, source)),
    };
    let mut files: Vec<(u64, String)> = Vec::new();
    for entry in listing {
        match segment::parse_file_name(&entry.name) {
            Some(segment_id) => files.push((segment_id, entry.name)),
            // A leftover compaction file is the spool's own; the next open deletes it.
            None if [
                LEDGER_FILE,
                LEDGER_TMP_FILE,
                LOCK_FILE,
                EPOCH_FILE,
                EPOCH_TMP_FILE,
            ]
            .contains(&entry.name.as_str()) => {}
            None => report.foreign_files.push(entry.name),
        }
    }
    files.sort();
    report.foreign_files.sort();
    for (segment_id, name) in files {
        let path = dir.join(&name);
        let bytes = fs
            .read(&path)
            .map_err(|source| SpoolError::io("reading segment", &path, source))?;
        let mut seg = SegmentInspect {
            file: name,
            segment_id,
            bytes: bytes.len() as u64,
            ..SegmentInspect::default()
        };
        let scan = segment::scan_segment(&bytes, &mut |frame| {
            seg.first_record_id.get_or_insert(frame.id);
            seg.last_record_id = Some(frame.id);
            seg.records += 1;
            seg.readings += u64::from(frame.n_readings);
            seg.payload_bytes += frame.payload.len() as u64;
            if let Some(loaded) = &loaded {
                if loaded.state.acked.contains(frame.id) {
                    seg.acked_records += 1;
                } else if loaded
                    .state
                    .pending
                    .values()
                    .any(|cut| cut.ranges.iter().any(|r| r.contains(&frame.id)))
                {
                    seg.pending_records += 1;
                }
            }
        });
        seg.header = match scan.header {
            HeaderState::Valid(_) => "ok".to_owned(),
            HeaderState::Damaged => "damaged".to_owned(),
            HeaderState::UnsupportedVersion(v) => format!("unsupported version {v}"),
        };
        seg.corrupt_regions = scan.damage.corrupt_regions;
        seg.corrupt_bytes = scan.damage.corrupt_bytes;
        seg.records_lost = scan.damage.records_lost;
        seg.torn_tail_bytes = scan.damage.tail_bytes;
        report.records += seg.records;
        report.records_unacked += seg.records - seg.acked_records;
        report.bytes_on_disk += seg.bytes;
        report.damaged |= seg.header != "ok" || seg.corrupt_regions > 0 || seg.torn_tail_bytes > 0;
        report.segments.push(seg);
    }
    report.damaged |= report.ledger.corrupt_regions > 0 || report.ledger.torn_bytes > 0;
    Ok(report)
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "spool {}", self.dir)?;
        writeln!(
            f,
            "{} segments, {} records ({} unacked), {} bytes on disk{}",
            self.segments.len(),
            self.records,
            self.records_unacked,
            self.bytes_on_disk,
            if self.damaged { ", DAMAGE FOUND" } else { "" }
        )?;
        match self.epoch {
            Some(epoch) => writeln!(f, "epoch {epoch}")?,
            None => writeln!(f, "epoch: {} file", self.epoch_file)?,
        }
        writeln!(
            f,
            "{:<26} {:>10} {:<8} {:>21} {:>8} {:>9} {:>7} {:>7} {:>7} {:>5} {:>9}",
            "segment",
            "bytes",
            "header",
            "record ids",
            "records",
            "readings",
            "acked",
            "pending",
            "corrupt",
            "lost",
            "torn_tail"
        )?;
        for seg in &self.segments {
            let ids = match (seg.first_record_id, seg.last_record_id) {
                (Some(first), Some(last)) => format!("{first}..={last}"),
                _ => "-".to_owned(),
            };
            writeln!(
                f,
                "{:<26} {:>10} {:<8} {:>21} {:>8} {:>9} {:>7} {:>7} {:>7} {:>5} {:>9}",
                seg.file,
                seg.bytes,
                seg.header,
                ids,
                seg.records,
                seg.readings,
                seg.acked_records,
                seg.pending_records,
                seg.corrupt_regions,
                seg.records_lost,
                seg.torn_tail_bytes
            )?;
        }
        let ledger = &self.ledger;
        if ledger.present {
            writeln!(
                f,
                "ledger: {} bytes, {} entries, next seq {}, {} corrupt regions, {} torn bytes",
                ledger.bytes,
                ledger.entries,
                ledger.next_seq,
                ledger.corrupt_regions,
                ledger.torn_bytes
            )?;
            for batch in &ledger.pending {
                writeln!(
                    f,
                    "  pending seq {} ({:?}): {} records",
                    batch.seq, batch.lane, batch.records
                )?;
            }
        } else {
            writeln!(f, "ledger: missing")?;
        }
        if !self.foreign_files.is_empty() {
            writeln!(
                f,
                "foreign files (ignored): {}",
                self.foreign_files.join(", ")
            )?;
        }
        Ok(())
    }
}
