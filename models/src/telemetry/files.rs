//! Which files an input path means, which day partitions the window skips,
//! and how the files are cut into chunks.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use super::{parquet, ReadReport, TelemetryError, TelemetryOptions};
use crate::failure::labels::DAY_MS;
use crate::wide_csv::parse_iso8601;

/// CSV or Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Csv,
    Parquet,
}

/// One file of the input.
#[derive(Debug, Clone)]
pub(crate) struct InputFile {
    pub path: PathBuf,
    pub kind: FileKind,
    /// The day partition's `[start, end)` in epoch ms.
    pub day: Option<(i64, i64)>,
}

/// The files of an input.
#[derive(Debug)]
pub(crate) struct Discovered {
    pub files: Vec<InputFile>,
    /// A `day=YYYY-MM-DD` tree.
    pub archive: bool,
}

/// How finely the input is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granularity {
    /// One day partition (archive).
    Day,
    /// One Parquet row group.
    RowGroup,
    /// One file.
    File,
    /// Everything at once.
    All,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::RowGroup => "row_group",
            Self::File => "file",
            Self::All => "all",
        }
    }

    /// The next coarser cut, `None` when chunks cannot go back in time.
    pub fn coarser(self, n_files: usize) -> Option<Self> {
        match self {
            Self::RowGroup if n_files > 1 => Some(Self::File),
            Self::RowGroup | Self::File => Some(Self::All),
            Self::Day | Self::All => None,
        }
    }
}

/// Parts of files read into one chunk.
#[derive(Debug, Clone)]
pub(crate) struct ChunkPlan {
    pub parts: Vec<Part>,
}

/// A file, or one row group of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    pub file: usize,
    pub row_group: Option<usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TelemetryError + '_ {
    move |source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn kind_of(path: &Path) -> Result<FileKind, TelemetryError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("parquet" | "pq" | "parq") => Ok(FileKind::Parquet),
        Some("csv" | "txt" | "tsv") => Ok(FileKind::Csv),
        _ => {
            let mut magic = [0u8; 4];
            let mut file = std::fs::File::open(path).map_err(io(path))?;
            let n = std::io::Read::read(&mut file, &mut magic).map_err(io(path))?;
            Ok(if n == 4 && &magic == b"PAR1" {
                FileKind::Parquet
            } else {
                FileKind::Csv
            })
        }
    }
}

/// `day=YYYY-MM-DD` → the day's `[start, end)` in epoch ms.
pub(crate) fn parse_day_dir(name: &str) -> Option<(i64, i64)> {
    let date = name.strip_prefix("day=")?;
    if date.len() != 10 {
        return None;
    }
    let start = parse_iso8601(date)?;
    Some((start, start + DAY_MS))
}

fn visible(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_')
}

/// Parquet files directly in `dir`, in natural name order.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, TelemetryError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let is_file = entry.file_type().map_err(io(dir))?.is_file();
        if is_file && visible(&name) && name.to_ascii_lowercase().ends_with(".parquet") {
            out.push(entry.path());
        }
    }
    out.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(out)
}

/// The files `path` means: a file, a directory of Parquet files, or a
/// `day=YYYY-MM-DD` archive whose days outside the window are skipped
/// without being opened.
pub(crate) fn discover(
    path: &Path,
    opts: &TelemetryOptions,
    report: &mut ReadReport,
) -> Result<Discovered, TelemetryError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_dir() {
        return Ok(Discovered {
            files: vec![InputFile {
                path: path.to_path_buf(),
                kind: kind_of(path)?,
                day: None,
            }],
            archive: false,
        });
    }
    let mut days = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let entry = entry.map_err(io(path))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(bounds) = parse_day_dir(&name) {
            if entry.file_type().map_err(io(path))?.is_dir() {
                days.push((bounds, entry.path()));
            }
        }
    }
    if days.is_empty() {
        let files: Vec<InputFile> = parquet_files(path)?
            .into_iter()
            .map(|p| InputFile {
                path: p,
                kind: FileKind::Parquet,
                day: None,
            })
            .collect();
        if files.is_empty() {
            return Err(TelemetryError::NoFiles {
                path: path.to_path_buf(),
            });
        }
        return Ok(Discovered {
            files,
            archive: false,
        });
    }
    days.sort();
    let mut files = Vec::new();
    for ((start, end), dir) in days {
        let parts = parquet_files(&dir)?;
        let outside =
            opts.from_ms.is_some_and(|f| end <= f) || opts.to_ms.is_some_and(|t| start >= t);
        if outside {
            report.partitions_skipped += 1;
            report.files_skipped += parts.len();
            continue;
        }
        report.partitions_read += 1;
        files.extend(parts.into_iter().map(|p| InputFile {
            path: p,
            kind: FileKind::Parquet,
            day: Some((start, end)),
        }));
    }
    Ok(Discovered {
        files,
        archive: true,
    })
}

/// Cuts the files into chunks.
pub(crate) fn plan(
    files: &[InputFile],
    granularity: Granularity,
    report: &mut ReadReport,
) -> Result<Vec<ChunkPlan>, TelemetryError> {
    let whole = |file| Part {
        file,
        row_group: None,
    };
    Ok(match granularity {
        Granularity::Day => {
            let mut chunks: Vec<ChunkPlan> = Vec::new();
            let mut day = None;
            for (k, f) in files.iter().enumerate() {
                if f.day != day || chunks.is_empty() {
                    chunks.push(ChunkPlan { parts: Vec::new() });
                    day = f.day;
                }
                if let Some(last) = chunks.last_mut() {
                    last.parts.push(whole(k));
                }
            }
            chunks
        }
        Granularity::RowGroup => {
            let mut chunks = Vec::new();
            for (k, f) in files.iter().enumerate() {
                if f.kind != FileKind::Parquet {
                    chunks.push(ChunkPlan {
                        parts: vec![whole(k)],
                    });
                    continue;
                }
                for rg in 0..parquet::row_groups(&f.path, report)? {
                    chunks.push(ChunkPlan {
                        parts: vec![Part {
                            file: k,
                            row_group: Some(rg),
                        }],
                    });
                }
            }
            chunks
        }
        Granularity::File => (0..files.len())
            .map(|k| ChunkPlan {
                parts: vec![whole(k)],
            })
            .collect(),
        Granularity::All => vec![ChunkPlan {
            parts: (0..files.len()).map(whole).collect(),
        }],
    })
}

/// Compares names with digit runs as numbers (`part-9` < `part-10`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let na = trim_zeros(&a[..da]);
                let nb = trim_zeros(&b[..db]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                // Equal numbers: fewer leading zeros first, then go on.
                if da != db {
                    return da.cmp(&db);
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let k = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[k..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_files_sort_by_number_and_day_dirs_parse() {
        let mut names = vec![
            "part-10.parquet",
            "part-9.parquet",
            "part-0002.parquet",
            "part-1.parquet",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            vec![
                "part-1.parquet",
                "part-0002.parquet",
                "part-9.parquet",
                "part-10.parquet"
            ]
        );
        assert_eq!(
            parse_day_dir("day=2026-01-02"),
            Some((1_767_312_000_000, 1_767_312_000_000 + DAY_MS))
        );
        assert_eq!(parse_day_dir("day=2026-1-2"), None);
        assert_eq!(parse_day_dir("month=2026-01"), None);
    }
}
