//! Open-time recovery, the small state files (`dedupe.json`,
//! `consumers.json`, written atomically) and retention.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::frame;
use super::segment::{self, Segment, Step, Walker};
use super::{EpochKey, LogError, Recovered, RetentionReport, Shared};
use crate::ingest::SeqSet;

const DEDUPE_FILE: &str = "dedupe.json";
const CONSUMERS_FILE: &str = "consumers.json";
const STATE_VERSION: u32 = 1;

/// The dedupe key fields of a `Batch`; prost skips the series unread.
#[derive(Clone, PartialEq, prost::Message)]
struct BatchKey {
    #[prost(string, tag = "1")]
    gateway_id: String,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(uint64, tag = "7")]
    spool_epoch: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupeSnapshot {
    version: u32,
    /// The snapshot holds every record below this offset.
    next_offset: u64,
    sets: Vec<SnapshotSet>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotSet {
    gateway_id: String,
    spool_epoch: u64,
    contiguous: u64,
    ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumersFile {
    version: u32,
    consumers: BTreeMap<String, u64>,
}

/// Everything open recovered from the directory.
pub(crate) struct Opened {
    pub segments: BTreeMap<u64, Arc<Segment>>,
    pub consumers: BTreeMap<String, u64>,
    pub recovered: Recovered,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    Shared::io_err(path)
}

/// Writes `bytes` to `dir/name` atomically: tmp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LogError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Persists the dedupe sets as covering every record below `next_offset`.
pub(crate) fn write_dedupe_snapshot(
    dir: &Path,
    next_offset: u64,
    dedupe: &HashMap<EpochKey, SeqSet>,
) -> Result<(), LogError> {
    let mut sets: Vec<SnapshotSet> = dedupe
        .iter()
        .map(|((gateway_id, spool_epoch), set)| SnapshotSet {
            gateway_id: gateway_id.clone(),
            spool_epoch: *spool_epoch,
            contiguous: set.contiguous(),
            ranges: set.ranges().collect(),
        })
        .collect();
    sets.sort_by(|a, b| (&a.gateway_id, a.spool_epoch).cmp(&(&b.gateway_id, b.spool_epoch)));
    let snapshot = DedupeSnapshot {
        version: STATE_VERSION,
        next_offset,
        sets,
    };
    let bytes = serde_json::to_vec(&snapshot).expect("the snapshot serialises");
    write_atomic(dir, DEDUPE_FILE, &bytes)
}

/// Reads `dedupe.json`: `Ok(None)` when absent, `Err(why)` when unreadable.
/// Per-`(gateway, epoch)` committed seqs.
type DedupeSets = HashMap<EpochKey, SeqSet>;

fn read_dedupe_snapshot(dir: &Path) -> Result<Option<(u64, DedupeSets)>, String> {
    let path = dir.join(DEDUPE_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let snapshot: DedupeSnapshot = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if snapshot.version != STATE_VERSION {
        return Err(format!("unknown version {}", snapshot.version));
    }
    let mut sets = HashMap::with_capacity(snapshot.sets.len());
    for set in snapshot.sets {
        let seqs = SeqSet::from_parts(set.contiguous, &set.ranges).ok_or_else(|| {
            format!(
                "invalid seq ranges for gateway {:?} epoch {}",
                set.gateway_id, set.spool_epoch
            )
        })?;
        sets.insert((set.gateway_id, set.spool_epoch), seqs);
    }
    Ok(Some((snapshot.next_offset, sets)))
}

/// Persists the consumer offsets.
pub(crate) fn write_consumers(
    dir: &Path,
    consumers: &BTreeMap<String, u64>,
) -> Result<(), LogError> {
    let file = ConsumersFile {
        version: STATE_VERSION,
        consumers: consumers.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("the consumer file serialises");
    write_atomic(dir, CONSUMERS_FILE, &bytes)
}

fn read_consumers(dir: &Path) -> Result<BTreeMap<String, u64>, LogError> {
    let path = dir.join(CONSUMERS_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(io_err(&path)(err)),
    };
    let file: ConsumersFile = serde_json::from_slice(&bytes).map_err(|err| LogError::State {
        path: path.clone(),
        detail: err.to_string(),
    })?;
    if file.version != STATE_VERSION {
        return Err(LogError::State {
            path,
            detail: format!("unknown version {}", file.version),
        });
    }
    Ok(file.consumers)
}

fn mtime_ms(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Copies `from..to` of `file` to `<path>.corrupt-<from>-<unix_ms>`.
fn copy_aside(file: &File, path: &Path, from: u64, to: u64) -> io::Result<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{from}-{}", now_ms()));
    let kept = PathBuf::from(name);
    let mut out = File::create(&kept)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        out.write_all(&buf[..n])?;
        pos += n as u64;
    }
    out.sync_all()?;
    Ok(kept)
}

/// Opens the directory: lists segments, loads the state files, scans the
/// tail segment and every segment after the dedupe snapshot.
pub(crate) fn recover(dir: &Path) -> Result<Opened, LogError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = segment::parse_file_name(&name) {
            bases.push(base);
        } else if name.ends_with(".tmp") {
            // An interrupted atomic write; the previous file is intact.
            let _ = fs::remove_file(entry.path());
        }
    }
    bases.sort_unstable();
    let consumers = read_consumers(dir)?;
    let mut recovered = Recovered::default();
    let (scan_from, dedupe) = match read_dedupe_snapshot(dir) {
        Ok(Some((next_offset, sets))) => (next_offset, sets),
        Ok(None) => (0, HashMap::new()),
        Err(why) => {
            tracing::error!(
                path = %dir.join(DEDUPE_FILE).display(),
                error = %why,
                "Dedupe snapshot unreadable; rebuilding it from every retained segment."
            );
            recovered.snapshot_unreadable = true;
            (0, HashMap::new())
        }
    };
    recovered.dedupe = dedupe;
    if bases.is_empty() {
        let path = dir.join(segment::file_name(scan_from));
        File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        bases.push(scan_from);
    }
    let mut segments = BTreeMap::new();
    for (idx, &base) in bases.iter().enumerate() {
        let next_base = bases.get(idx + 1).copied();
        let path = dir.join(segment::file_name(base));
        let meta = fs::metadata(&path).map_err(io_err(&path))?;
        let is_tail = next_base.is_none();
        let seg = Segment::new(base, path.clone(), meta.len(), mtime_ms(&meta));
        if is_tail || next_base.is_some_and(|next| next > scan_from) {
            let end = scan_segment(&seg, is_tail, scan_from, &mut recovered)?;
            if is_tail {
                // Never below what the snapshot covers or a consumer has
                // committed, even if the tail lost records: an offset once
                // seen is never given to another record.
                let committed = consumers.values().copied().max().unwrap_or(0);
                recovered.end_offset = end.max(scan_from).max(committed);
            }
        }
        segments.insert(base, Arc::new(seg));
    }
    recovered.segments = segments.len();
    recovered.start_offset = bases[0];
    if recovered.skipped_bytes + recovered.truncated_bytes > 0 {
        sync_dir(dir)?;
    }
    Ok(Opened {
        segments,
        consumers,
        recovered,
    })
}

/// Scans one segment, adding the dedupe keys of records at or after
/// `scan_from`; returns the offset after its last valid record.
fn scan_segment(
    seg: &Segment,
    is_tail: bool,
    scan_from: u64,
    recovered: &mut Recovered,
) -> Result<u64, LogError> {
    let path = &seg.path;
    let len = seg.durable_len();
    let mut walker = Walker::open(seg, 0, seg.base.checked_sub(1)).map_err(io_err(path))?;
    let mut end = seg.base;
    loop {
        match walker.step().map_err(io_err(path))? {
            Step::Frame { pos, frame } => {
                seg.note_position(frame.offset, pos);
                seg.newest_ms.store(frame.appended_ms, Ordering::Relaxed);
                recovered.skipped_frames += frame.offset - end;
                end = frame.offset + 1;
                if frame.offset < scan_from {
                    continue;
                }
                recovered.records_scanned += 1;
                match BatchKey::decode(walker.payload.as_slice()) {
                    Ok(key) => {
                        recovered
                            .dedupe
                            .entry((key.gateway_id, key.spool_epoch))
                            .or_default()
                            .insert(key.seq);
                    }
                    Err(err) => tracing::error!(
                        path = %path.display(),
                        offset = frame.offset,
                        error = %err,
                        "A log record passed its CRC but is not a Batch."
                    ),
                }
            }
            Step::Damaged { from, to } => {
                let kept = copy_aside(&walker.file, path, from, to).map_err(io_err(path))?;
                recovered.skipped_bytes += to - from;
                tracing::error!(
                    path = %path.display(),
                    position = from,
                    skipped_bytes = to - from,
                    kept = %kept.display(),
                    "Skipped damaged bytes in the ingest log; later records are kept."
                );
                recovered.corrupt_files.push(kept);
            }
            Step::DamagedTail { from } => {
                let kept = copy_aside(&walker.file, path, from, len).map_err(io_err(path))?;
                if is_tail {
                    // A last frame that is whole but fails its CRC was
                    // damaged after it became durable (and a reader may have
                    // seen it): its offset stays used, a gap, rather than
                    // being given to the next record. A torn write is never
                    // whole, so its offset is reused.
                    if whole_frame_at(&walker.file, from, len).map_err(io_err(path))? {
                        end += 1;
                        recovered.skipped_frames += 1;
                    }
                    recovered.truncated_bytes += len - from;
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err(path))?;
                    file.set_len(from).map_err(io_err(path))?;
                    file.sync_all().map_err(io_err(path))?;
                    seg.durable_len.store(from, Ordering::Release);
                    tracing::warn!(
                        path = %path.display(),
                        truncated_bytes = len - from,
                        kept = %kept.display(),
                        "Cut a torn tail off the ingest log; the bytes were kept aside."
                    );
                } else {
                    recovered.skipped_bytes += len - from;
                    tracing::error!(
                        path = %path.display(),
                        position = from,
                        kept = %kept.display(),
                        "Damaged bytes at the end of a closed ingest log segment."
                    );
                }
                recovered.corrupt_files.push(kept);
            }
            Step::End => return Ok(end),
        }
    }
}

/// True when the bytes from `pos` to `len` are exactly one frame by its
/// length field.
fn whole_frame_at(file: &File, pos: u64, len: u64) -> io::Result<bool> {
    if pos + frame::HEADER_BYTES > len {
        return Ok(false);
    }
    let mut payload_len = [0u8; 4];
    file.read_exact_at(&mut payload_len, pos)?;
    let payload_len = u64::from(u32::from_le_bytes(payload_len));
    Ok(pos + frame::HEADER_BYTES + payload_len == len)
}

/// Deletes the oldest closed segments that every consumer committed past
/// and that are older than the retention.
pub(crate) fn apply_retention(shared: &Shared) -> Result<RetentionReport, LogError> {
    let mut report = RetentionReport::default();
    let min_committed = {
        let consumers = shared.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.values().copied().min()
    };
    let retention_ms = i64::try_from(shared.config.retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff_ms = now_ms().saturating_sub(retention_ms);
    if let Some(min_committed) = min_committed {
        loop {
            let oldest = {
                let segments = shared.segments.read().unwrap_or_else(|p| p.into_inner());
                let mut iter = segments.values();
                match (iter.next(), iter.next()) {
                    // The active (last) segment is never deleted.
                    (Some(first), Some(second)) => {
                        let past = min_committed >= second.base;
                        let old = first.newest_ms.load(Ordering::Relaxed) <= cutoff_ms;
                        (past && old).then(|| Arc::clone(first))
                    }
                    _ => None,
                }
            };
            let Some(seg) = oldest else { break };
            let bytes = fs::metadata(&seg.path).map_or(0, |m| m.len());
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_err(&seg.path)(err)),
            }
            shared
                .segments
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&seg.base);
            report.segments_deleted += 1;
            report.bytes_deleted += bytes;
            tracing::info!(path = %seg.path.display(), bytes, "Retention deleted an ingest log segment.");
        }
    }
    if report.segments_deleted > 0 {
        sync_dir(&shared.dir)?;
    }
    report.start_offset = shared.start_offset();
    Ok(report)
}
