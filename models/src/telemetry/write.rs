//! Writing the archive layout (module docs of [`super`]): one part file of
//! long readings in `<root>/day=YYYY-MM-DD/`. `fieldpulse simulate
//! --archive` and the tests use it; the cloud writes the same layout.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::TelemetryError;
use crate::failure::labels::{format_ms, DAY_MS};

/// Long readings of one day, assets and tags as ids into name tables.
#[derive(Debug, Clone, Default)]
pub struct LongRows {
    /// Asset names.
    pub asset_names: Vec<String>,
    /// Tag names.
    pub tag_names: Vec<String>,
    /// Time per reading, epoch ms.
    pub ts_ms: Vec<i64>,
    /// Asset id per reading.
    pub asset: Vec<u32>,
    /// Tag id per reading.
    pub tag: Vec<u32>,
    /// Value per reading (`None` is written as null).
    pub value: Vec<Option<f64>>,
}

impl LongRows {
    /// Appends one reading.
    pub fn push(&mut self, ts_ms: i64, asset: u32, tag: u32, value: Option<f64>) {
        self.ts_ms.push(ts_ms);
        self.asset.push(asset);
        self.tag.push(tag);
        self.value.push(value);
    }

    /// Number of readings.
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    /// True without readings.
    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    /// Drops the readings, keeps the name tables.
    pub fn clear(&mut self) {
        self.ts_ms.clear();
        self.asset.clear();
        self.tag.clear();
        self.value.clear();
    }

    /// The archive's columns: `ts` (Datetime ms, UTC), `asset`, `tag`,
    /// `value`.
    ///
    /// # Errors
    /// polars errors (mismatched lengths).
    pub fn to_frame(&self) -> PolarsResult<DataFrame> {
        let ts = Int64Chunked::from_vec("ts".into(), self.ts_ms.clone())
            .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
        let asset = StringChunked::from_iter_values(
            "asset".into(),
            self.asset
                .iter()
                .map(|&a| self.asset_names[a as usize].as_str()),
        );
        let tag = StringChunked::from_iter_values(
            "tag".into(),
            self.tag
                .iter()
                .map(|&t| self.tag_names[t as usize].as_str()),
        );
        let value = Float64Chunked::from_iter_options("value".into(), self.value.iter().copied());
        DataFrame::new(
            self.len(),
            vec![
                ts.into_column(),
                asset.into_column(),
                tag.into_column(),
                value.into_column(),
            ],
        )
    }
}

/// `day=YYYY-MM-DD` of the UTC day holding `ts_ms`.
pub fn day_dir_name(ts_ms: i64) -> String {
    let day_start = ts_ms.div_euclid(DAY_MS) * DAY_MS;
    format!("day={}", &format_ms(day_start)[..10])
}

/// Writes `frame` as a Parquet file at `path` (temporary file, then rename,
/// so a reader never sees half a file).
///
/// # Errors
/// IO and polars errors, with the path.
pub fn write_parquet(path: &Path, frame: &mut DataFrame) -> Result<(), TelemetryError> {
    let io = |source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let file = std::fs::File::create(&tmp).map_err(io)?;
    ParquetWriter::new(file)
        .finish(frame)
        .map_err(|e| TelemetryError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `rows` (all on the UTC day of their first reading) as
/// `<root>/day=YYYY-MM-DD/<part>.parquet` and returns the path.
///
/// # Errors
/// IO and polars errors, with the path.
pub fn write_archive_part(
    root: &Path,
    part: &str,
    rows: &LongRows,
) -> Result<PathBuf, TelemetryError> {
    let first = rows.ts_ms.first().copied().unwrap_or(0);
    let path = root
        .join(day_dir_name(first))
        .join(format!("{part}.parquet"));
    let mut frame = rows.to_frame().map_err(|e| TelemetryError::Parquet {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_parquet(&path, &mut frame)?;
    Ok(path)
}
