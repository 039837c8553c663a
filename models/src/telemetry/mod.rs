//! Training telemetry in the layouts a reliability engineer has (feature
//! `train`): wide or long, CSV or Parquet, one file, a directory of Parquet
//! files, or the cloud's day-partitioned archive. [`TelemetryInput::open`]
//! detects which; training and evaluation read it through
//! [`TelemetryInput::profile`] (pass 1) and [`TelemetryInput::scan`] (pass 2).
//!
//! # Layouts
//! - **wide**: a time column, an optional asset column, one numeric column
//!   per sensor (the `fieldpulse detect` conventions of [`crate::wide_csv`]);
//! - **long** (a historian export): one reading per row, `ts, asset, tag,
//!   value`. Rows of one (asset, time) are pivoted into one wide row; a
//!   repeated (asset, time, tag) keeps the last non-null value and is counted
//!   (`duplicate_readings`); a null or non-numeric value is a missing reading.
//!   Sensors are the tags found, in name order, minus `--exclude`d ones.
//!
//! The layout is detected from the columns: long when a tag column (`tag`,
//! `tag_name`, `tagname`, `sensor`, `signal`, `point`) and a value column
//! (`value`, `val`) exist; `--format`, `--tag-col` and `--value-col`
//! override. Time and asset columns are found as in [`crate::wide_csv`].
//! Parquet time columns may be `Datetime` of any unit (with or without a
//! time zone: the stored instant is UTC), integers or floats (epoch
//! milliseconds, or seconds below 1e11, decided by the first value) or ISO
//! 8601 strings.
//!
//! # The archive
//! `<root>/day=YYYY-MM-DD/part-*.parquet`, long, columns `ts` (`Datetime`
//! ms, UTC), `asset` (String), `tag` (String), `value` (Float64); other
//! columns are ignored (never read). A day directory holds the readings whose
//! time falls on that UTC day; late data adds part files to an older day, and
//! within a day later part files (natural name order: `part-9` before
//! `part-10`) win duplicate readings. A row outside its day is rejected
//! (`wrong_day`). Files whose name starts with `.` or `_` are ignored (a
//! writer's temporaries).
//!
//! # Bounded memory: chunks, two passes
//! Files are read in **chunks** in time order: a day partition, a Parquet
//! row group, or (when rows are out of time order across row groups or
//! files) a whole file or the whole input. Only the needed columns are read
//! (time, asset, and the sensors' columns or tag and value), and day
//! partitions outside the time window are never opened. A chunk is sorted by
//! (asset, time) and handed on as wide rows; each asset's rows at its newest
//! instant are held back to the next chunk, so a reading split across a
//! chunk boundary still pivots into one row.
//!
//! Pass 1 ([`TelemetryInput::profile`]) reads time, asset (and tag) only:
//! sensors, assets, row counts, each asset's first and last reading and
//! cadence, rejections. Pass 2 ([`TelemetryInput::scan`]) reads the values
//! and hands chunks of wide rows to the caller (feature extraction keeps only
//! strided rows). Memory is one chunk plus per-asset summaries.
//!
//! A wide CSV is read into memory as before ([`Telemetry`]), so its results
//! do not change. Assets of the chunked path are indexed by first reading
//! (then name), and rows are ordered by time then asset name: the same
//! readings as a wide CSV sorted by time and asset give the same rows.
//!
//! Bad input is data: rows with an unreadable time (`bad_time`), no asset
//! (`no_asset`), no tag (`no_tag`), the wrong field count (`field_count`,
//! CSV) or outside their day partition (`wrong_day`) are rejected and
//! counted in [`ReadReport`], never a panic. Whole files that cannot be read
//! are errors naming the file.

mod chunk;
mod chunked;
mod columns;
mod files;
mod fingerprint;
mod long_csv;
mod parquet;
mod profile;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failure::dataset::Telemetry;
use crate::wide_csv::{WideCsvError, WideCsvOptions};
pub use chunk::RowBatch;
use chunked::Chunked;
use files::FileKind;
pub use fingerprint::Fingerprint;
pub use profile::TelemetryProfile;

/// Wide (a column per sensor) or long (`ts, asset, tag, value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One row per (asset, time), one column per sensor.
    Wide,
    /// One row per reading: time, asset, tag, value.
    Long,
}

/// How to read telemetry files (all optional: detected when absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryOptions {
    /// Force the layout instead of detecting it.
    pub layout: Option<Layout>,
    /// Asset column.
    pub asset_col: Option<String>,
    /// Time column.
    pub time_col: Option<String>,
    /// Tag column (long).
    pub tag_col: Option<String>,
    /// Value column (long).
    pub value_col: Option<String>,
    /// Columns (wide) or tags (long) that are not sensors.
    pub exclude: Vec<String>,
    /// Keep readings at or after this time (epoch ms).
    pub from_ms: Option<i64>,
    /// Keep readings before this time (epoch ms).
    pub to_ms: Option<i64>,
}

impl TelemetryOptions {
    fn in_window(&self, ts: i64) -> bool {
        self.from_ms.is_none_or(|f| ts >= f) && self.to_ms.is_none_or(|t| ts < t)
    }
}

/// Why telemetry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A file or directory could not be read.
    #[error("reading {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be read.
    #[error("reading {path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What polars said.
        message: String,
    },
    /// A wide CSV could not be read.
    #[error("reading {path}")]
    WideCsv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: WideCsvError,
    },
    /// A column the layout needs is missing or of an unusable type.
    #[error("{path}: {message}")]
    Columns {
        /// The file.
        path: PathBuf,
        /// Which column, and the columns there are.
        message: String,
    },
    /// A directory holds no telemetry file.
    #[error("{path}: no Parquet files (expected *.parquet or day=YYYY-MM-DD/part-*.parquet)")]
    NoFiles {
        /// The directory.
        path: PathBuf,
    },
    /// The input changed between the two passes.
    #[error("{path}: the telemetry changed while it was read (asset {asset} went back in time); read it again")]
    Changed {
        /// The input.
        path: PathBuf,
        /// The asset whose readings moved.
        asset: String,
    },
    /// The consumer of [`TelemetryInput::scan`] stopped (its own error
    /// says why).
    #[error("reading stopped by its consumer")]
    Stopped,
    /// No row survived reading.
    #[error("{path}: no readable rows{detail}")]
    Empty {
        /// The input.
        path: PathBuf,
        /// Rejections and window, when there were any.
        detail: String,
    },
}

/// What reading the telemetry found (training summary and model card).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReadReport {
    /// The input path.
    pub input: String,
    /// `wide_csv`, `long_csv`, `parquet`, `parquet_dir` or `archive`.
    pub kind: &'static str,
    /// Wide or long.
    pub layout: Option<Layout>,
    /// The columns used.
    pub time_col: String,
    /// The asset column, if any (otherwise one asset named `asset`).
    pub asset_col: Option<String>,
    /// Tag column (long).
    pub tag_col: Option<String>,
    /// Value column (long).
    pub value_col: Option<String>,
    /// Sensors found (wide: columns; long: tags).
    pub sensors: Vec<String>,
    /// Files in the input (after window pruning).
    pub files: usize,
    /// Files left out because their day partition is outside the window.
    pub files_skipped: usize,
    /// Day partitions read / skipped (archive).
    pub partitions_read: usize,
    /// Day partitions outside the window, never opened.
    pub partitions_skipped: usize,
    /// How the input was cut into chunks: `day`, `row_group`, `file`, `all`.
    pub chunking: &'static str,
    /// Chunks per pass.
    pub chunks: usize,
    /// Input rows read (long: readings; wide: rows).
    pub rows_read: u64,
    /// Wide rows produced (after pivoting long rows).
    pub rows: u64,
    /// Rejected input rows by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Rows outside `--from`/`--to` (dropped, not rejected).
    pub outside_window: u64,
    /// Long rows whose tag was excluded.
    pub excluded_tag_rows: u64,
    /// Repeated (asset, time, tag) readings; the last one was kept.
    pub duplicate_readings: u64,
    /// Missing sensor values (empty, null or not a number).
    pub missing_values: u64,
    /// Things the reader had to work around.
    pub warnings: Vec<String>,
    /// Every file opened (both passes), to check partition pruning.
    #[serde(skip)]
    pub opened: BTreeSet<PathBuf>,
    /// File opens, both passes together.
    pub file_opens: u64,
}

impl ReadReport {
    /// Total rejected input rows.
    pub fn rejected_rows(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// ` (bad_time 2, no_asset 1)`, or nothing without rejections.
    pub fn rejected_text(&self) -> String {
        if self.rejected.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .rejected
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(" ({})", parts.join(", "))
    }
}

/// Telemetry ready to be read: a wide CSV in memory, or files read in chunks.
#[derive(Debug)]
pub struct TelemetryInput {
    path: PathBuf,
    report: ReadReport,
    source: Source,
}

#[derive(Debug)]
enum Source {
    WideCsv(Telemetry),
    Chunked(Box<Chunked>),
}

/// Called with (pass, chunks done, chunks in all).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

impl TelemetryInput {
    /// Finds out what `path` holds (file extension, directory layout,
    /// columns) and prunes day partitions outside the window. A wide CSV is
    /// read here; everything else is read by [`Self::profile`] and
    /// [`Self::scan`].
    ///
    /// # Errors
    /// Unreadable paths, files without the needed columns.
    pub fn open(path: &Path, opts: &TelemetryOptions) -> Result<Self, TelemetryError> {
        let mut report = ReadReport {
            input: path.display().to_string(),
            ..ReadReport::default()
        };
        let discovered = files::discover(path, opts, &mut report)?;
        let source = if discovered.files.len() == 1
            && discovered.files[0].kind == FileKind::Csv
            && long_csv::detect(&discovered.files[0].path, opts, &mut report)? == Layout::Wide
        {
            let telemetry = read_wide_csv(path, opts, &mut report)?;
            Source::WideCsv(telemetry)
        } else {
            Source::Chunked(Box::new(Chunked::new(
                path,
                discovered.files,
                discovered.archive,
                opts,
                &mut report,
            )?))
        };
        Ok(Self {
            path: path.to_path_buf(),
            report,
            source,
        })
    }

    /// What was read so far.
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// The files of the input, in reading order (for a data fingerprint).
    pub fn files(&self) -> Vec<PathBuf> {
        match &self.source {
            Source::WideCsv(_) => vec![self.path.clone()],
            Source::Chunked(c) => c.files.iter().map(|f| f.path.clone()).collect(),
        }
    }

    /// The whole telemetry, when it is a wide CSV read into memory.
    pub fn as_wide_csv(&self) -> Option<&Telemetry> {
        match &self.source {
            Source::WideCsv(t) => Some(t),
            Source::Chunked(_) => None,
        }
    }

    /// Pass 1: sensors, assets, counts, first and last reading and cadence
    /// per asset. Reads time, asset (and tag) columns only.
    ///
    /// # Errors
    /// Unreadable files, or no row at all.
    pub fn profile(&mut self, progress: Progress<'_>) -> Result<TelemetryProfile, TelemetryError> {
        let profile = match &mut self.source {
            Source::WideCsv(t) => TelemetryProfile::of(t),
            Source::Chunked(c) => c.profile(&mut self.report, progress)?,
        };
        if profile.n_rows == 0 {
            let mut detail = self.report.rejected_text();
            if self.report.outside_window > 0 {
                detail.push_str(&format!(
                    " ({} rows outside --from/--to)",
                    self.report.outside_window
                ));
            }
            return Err(TelemetryError::Empty {
                path: self.path.clone(),
                detail,
            });
        }
        Ok(profile)
    }

    /// Pass 2: hands every wide row to `sink` in chunks (each sorted by
    /// asset, then time; assets indexed as in `profile`), with the values of
    /// `sensors` (a subset of the profile's) in that order.
    ///
    /// # Errors
    /// Unreadable files, the input changing since [`Self::profile`], or the
    /// sink's error.
    pub fn scan(
        &mut self,
        profile: &TelemetryProfile,
        sensors: &[String],
        sink: &mut dyn FnMut(&RowBatch<'_>) -> Result<(), TelemetryError>,
        progress: Progress<'_>,
    ) -> Result<(), TelemetryError> {
        match &mut self.source {
            Source::WideCsv(t) => {
                let positions: Vec<usize> = sensors
                    .iter()
                    .map(|s| t.sensors.iter().position(|c| c == s).unwrap_or(usize::MAX))
                    .collect();
                let n_in = t.sensors.len();
                let mut values = Vec::with_capacity(t.n_rows() * sensors.len());
                for i in 0..t.n_rows() {
                    let row = &t.values[i * n_in..(i + 1) * n_in];
                    values.extend(
                        positions
                            .iter()
                            .map(|&p| row.get(p).copied().unwrap_or(f64::NAN)),
                    );
                }
                progress("values", 0, 1);
                sink(&RowBatch {
                    asset: &t.asset_idx,
                    ts_ms: &t.ts_ms,
                    values: &values,
                    n_values: sensors.len(),
                })?;
                progress("values", 1, 1);
                Ok(())
            }
            Source::Chunked(c) => c.scan(&mut self.report, profile, sensors, sink, progress),
        }
    }
}

fn read_wide_csv(
    path: &Path,
    opts: &TelemetryOptions,
    report: &mut ReadReport,
) -> Result<Telemetry, TelemetryError> {
    let file = File::open(path).map_err(|source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    report.opened.insert(path.to_path_buf());
    report.file_opens += 1;
    let csv_opts = WideCsvOptions {
        asset_col: opts.asset_col.clone(),
        time_col: opts.time_col.clone(),
        exclude: opts.exclude.clone(),
        label_col: None,
        sniff_rows: 0,
        time_format: None,
    };
    let (mut telemetry, counts, layout) =
        Telemetry::read_csv_counted(BufReader::with_capacity(1 << 20, file), &csv_opts).map_err(
            |source| TelemetryError::WideCsv {
                path: path.to_path_buf(),
                source,
            },
        )?;
    report.kind = "wide_csv";
    report.layout = Some(Layout::Wide);
    report.time_col = layout.time_name().to_string();
    report.asset_col = layout.asset_name().map(str::to_string);
    report.sensors = telemetry.sensors.clone();
    report.files = 1;
    report.chunking = "all";
    report.chunks = 1;
    report.rows_read = telemetry.n_rows() as u64 + counts.rejected_rows();
    for (reason, n) in [
        ("field_count", counts.field_count),
        ("bad_time", counts.bad_time),
    ] {
        if n > 0 {
            report.rejected.insert(reason, n);
        }
    }
    report.missing_values = counts.missing_values;
    if opts.from_ms.is_some() || opts.to_ms.is_some() {
        report.outside_window = telemetry.retain_window(|ts| opts.in_window(ts)) as u64;
    }
    report.rows = telemetry.n_rows() as u64;
    Ok(telemetry)
}

#[cfg(test)]
mod tests;
