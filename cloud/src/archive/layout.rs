//! The archive directory on disk: day partitions, part file names, the
//! pending-flush file, atomic writes and what opening the directory repairs.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ArchiveError;

/// Milliseconds per UTC day.
pub const DAY_MS: i64 = 86_400_000;
/// The pending-flush file in the archive root (see the module doc).
pub const PENDING_FILE: &str = "_pending.json";
/// Prefix of a day partition directory.
const DAY_PREFIX: &str = "day=";
/// Prefix and suffix of a part file.
const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".parquet";
/// Temporary files are hidden (readers skip names starting with `.`) and do
/// not end in `.parquet` (globs skip them too).
const TMP_PREFIX: &str = ".";
const TMP_SUFFIX: &str = ".tmp";

/// The UTC day (days since 1970-01-01) of a timestamp in ms.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// `(year, month, day)` of a day number (proleptic Gregorian, UTC).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The partition directory name of a day: `day=YYYY-MM-DD`.
pub fn day_dir_name(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{DAY_PREFIX}{y:04}-{m:02}-{d:02}")
}

/// The part file name of a flush of offsets `first..=last`.
pub fn part_file_name(first: u64, last: u64) -> String {
    format!("{PART_PREFIX}{first}-{last}{PART_SUFFIX}")
}

/// `(first, last)` of a part file name, or `None` for any other name.
pub fn parse_part_file_name(name: &str) -> Option<(u64, u64)> {
    let range = name.strip_prefix(PART_PREFIX)?.strip_suffix(PART_SUFFIX)?;
    let (first, last) = range.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(last) {
        return None;
    }
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((first, last))
}

/// The temporary name a part file is written under before its rename.
pub fn tmp_file_name(final_name: &str) -> String {
    format!("{TMP_PREFIX}{final_name}{TMP_SUFFIX}")
}

fn is_tmp_file_name(name: &str) -> bool {
    name.starts_with(TMP_PREFIX) && name.ends_with(TMP_SUFFIX)
}

/// The flush under way: written before its first part file, removed after
/// the consumer offset is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Format version.
    pub version: u32,
    /// First offset of the flush.
    pub first: u64,
    /// Last offset of the flush.
    pub last: u64,
    /// The offset committed once the flush is durable.
    pub next: u64,
    /// Its part files, relative to the archive root (`day=.../part-....parquet`).
    pub files: Vec<String>,
}

/// What opening the archive directory found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Part files of a flush that had not been committed, deleted (its
    /// records are read from the log again).
    pub uncommitted_files_deleted: usize,
    /// Temporary files left by an interrupted write, deleted.
    pub tmp_files_deleted: usize,
    /// Part files in the archive.
    pub part_files: usize,
    /// The highest last offset of any part file, if there is one.
    pub max_last_offset: Option<u64>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// fsyncs a directory, so the names created or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates `dir` (and its parents) when missing; when it was created, fsyncs
/// its parent so the new name is durable. Returns whether it was created.
pub fn ensure_dir(dir: &Path) -> Result<bool, ArchiveError> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(true)
}

/// Writes `bytes` to `dir/name` atomically and durably: a temporary file is
/// written and fsynced, renamed over `name`, and the directory fsynced.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    let tmp = dir.join(tmp_file_name(name));
    let path = dir.join(name);
    let res = (|| {
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        // A full disk leaves a partial temporary file: give its space back.
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Records the flush under way (atomically, durably).
pub fn write_pending(root: &Path, pending: &Pending) -> Result<(), ArchiveError> {
    let bytes = serde_json::to_vec_pretty(pending).expect("the pending file serialises");
    write_atomic(root, PENDING_FILE, &bytes)
}

/// Removes the pending-flush file after its flush was committed. Not
/// fsynced: a pending file that survives a crash names a committed flush,
/// which opening recognises and removes.
pub fn remove_pending(root: &Path) -> Result<(), ArchiveError> {
    let path = root.join(PENDING_FILE);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
        _ => Ok(()),
    }
}

fn read_pending(root: &Path) -> Result<Option<Pending>, ArchiveError> {
    let path = root.join(PENDING_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ArchiveError::State {
            path,
            detail: e.to_string(),
        })
}

/// The day partition directories of the archive, sorted by name.
pub fn day_dirs(root: &Path) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(DAY_PREFIX) && entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// A part file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFile {
    /// Its path.
    pub path: PathBuf,
    /// First offset of its flush.
    pub first: u64,
    /// Last offset of its flush.
    pub last: u64,
}

/// Every part file, by day directory then name.
pub fn part_files(root: &Path) -> Result<Vec<PartFile>, ArchiveError> {
    let mut parts = Vec::new();
    for dir in day_dirs(root)? {
        let mut in_dir = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            if let Some((first, last)) = parse_part_file_name(&name.to_string_lossy()) {
                in_dir.push(PartFile {
                    path: entry.path(),
                    first,
                    last,
                });
            }
        }
        in_dir.sort_by_key(|p| (p.first, p.last));
        parts.extend(in_dir);
    }
    Ok(parts)
}

/// Opens the archive at `root` for a consumer that committed `committed`:
/// deletes the part files of a flush that was not committed (named in the
/// pending file) and temporary files, and reports the part files left.
pub fn recover(root: &Path, committed: u64) -> Result<Recovery, ArchiveError> {
    ensure_dir(root)?;
    let mut report = Recovery::default();
    if let Some(pending) = read_pending(root)? {
        if pending.next > committed {
            // Written (maybe partly) but never committed: these records are
            // read again from the log, and may be flushed in another range.
            let mut dirs = Vec::new();
            for file in &pending.files {
                let path = root.join(file);
                match fs::remove_file(&path) {
                    Ok(()) => report.uncommitted_files_deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
                if let Some(dir) = path.parent() {
                    dirs.push(dir.to_path_buf());
                }
            }
            dirs.sort();
            dirs.dedup();
            for dir in dirs.iter().filter(|d| d.is_dir()) {
                sync_dir(dir)?;
            }
        }
        let path = root.join(PENDING_FILE);
        fs::remove_file(&path).map_err(io_err(&path))?;
        sync_dir(root)?;
    }
    for dir in day_dirs(root)? {
        let mut removed = false;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if is_tmp_file_name(&entry.file_name().to_string_lossy()) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path))?;
                report.tmp_files_deleted += 1;
                removed = true;
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
    }
    let stray = root.join(tmp_file_name(PENDING_FILE));
    if stray.exists() {
        fs::remove_file(&stray).map_err(io_err(&stray))?;
        report.tmp_files_deleted += 1;
    }
    let parts = part_files(root)?;
    report.part_files = parts.len();
    report.max_last_offset = parts.iter().map(|p| p.last).max();
    Ok(report)
}
