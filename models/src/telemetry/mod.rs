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
mod files;
mod long_csv;
mod parquet;
mod profile;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failure::dataset::Telemetry;
use crate::wide_csv::{TimeFormat, WideCsvError, WideCsvOptions};
pub use chunk::RowBatch;
use chunk::{Pipeline, RawRows, Regression};
use files::{FileKind, Granularity, InputFile};
use profile::ProfileBuilder;
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
        sniff_rows: 0,
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

/// Files read in chunks (everything but a wide CSV).
#[derive(Debug)]
struct Chunked {
    root: PathBuf,
    files: Vec<InputFile>,
    granularity: Granularity,
    columns: Columns,
    opts: TelemetryOptions,
    assets: Interner,
    tags: Interner,
    time_format: Option<TimeFormat>,
    /// Provisional asset id → index in the profile (after pass 1).
    canonical: Vec<u32>,
}

/// The columns a layout reads.
#[derive(Debug, Clone)]
struct Columns {
    layout: Layout,
    time: String,
    asset: Option<String>,
    tag: Option<String>,
    value: Option<String>,
    /// Wide: the sensor columns.
    sensors: Vec<String>,
}

/// Names to dense ids, in order of first sight.
#[derive(Debug, Default)]
struct Interner {
    ids: std::collections::HashMap<String, u32>,
    names: Vec<String>,
    /// The last id returned: consecutive rows mostly repeat a name.
    last: Option<u32>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(last) = self.last {
            if self.names[last as usize] == name {
                return last;
            }
        }
        let found = if self.names.len() <= 16 {
            self.names.iter().position(|n| n == name).map(|p| p as u32)
        } else {
            self.ids.get(name).copied()
        };
        let id = found.unwrap_or_else(|| {
            let id = self.names.len() as u32;
            self.ids.insert(name.to_string(), id);
            self.names.push(name.to_string());
            id
        });
        self.last = Some(id);
        id
    }
}

/// Where readers put the rows they accept.
struct Accept<'a> {
    rows: &'a mut RawRows,
    report: &'a mut ReadReport,
    assets: &'a mut Interner,
    tags: &'a mut Interner,
    time_format: &'a mut Option<TimeFormat>,
    opts: &'a TelemetryOptions,
    columns: &'a Columns,
    /// Wide: value columns to read, in output order (pass 2; empty in pass 1).
    value_cols: &'a [String],
    /// Whether values are read (pass 2).
    with_values: bool,
    /// Day partition bounds `[start, end)`, if the file is in one.
    day: Option<(i64, i64)>,
}

impl Accept<'_> {
    /// Checks shared by every layout; the time when the row is kept.
    fn check_time(&mut self, ts: Option<i64>) -> Option<i64> {
        self.report.rows_read += 1;
        let Some(ts) = ts else {
            self.report.reject("bad_time");
            return None;
        };
        if let Some((start, end)) = self.day {
            if ts < start || ts >= end {
                self.report.reject("wrong_day");
                return None;
            }
        }
        if !self.opts.in_window(ts) {
            self.report.outside_window += 1;
            return None;
        }
        Some(ts)
    }

    /// The asset name of a row (one asset named `asset` without an asset
    /// column), `None` (rejected) when empty.
    fn asset_name<'s>(&mut self, asset: Option<&'s str>) -> Option<&'s str> {
        if self.columns.asset.is_none() {
            return Some("asset");
        }
        match asset.map(str::trim) {
            Some(a) if !a.is_empty() => Some(a),
            _ => {
                self.report.reject("no_asset");
                None
            }
        }
    }

    /// One long reading.
    fn long_row(
        &mut self,
        ts: Option<i64>,
        asset: Option<&str>,
        tag: Option<&str>,
        value: Option<f64>,
    ) {
        let Some(ts) = self.check_time(ts) else {
            return;
        };
        let Some(asset) = self.asset_name(asset) else {
            return;
        };
        let tag = match tag.map(str::trim) {
            Some(t) if !t.is_empty() => t,
            _ => {
                self.report.reject("no_tag");
                return;
            }
        };
        if self.opts.exclude.iter().any(|e| e == tag) {
            self.report.excluded_tag_rows += 1;
            return;
        }
        let a = self.assets.id(asset);
        let t = self.tags.id(tag);
        self.rows.asset.push(a);
        self.rows.ts.push(ts);
        self.rows.tag.push(t);
        if self.with_values {
            let v = value.filter(|v| !v.is_nan()).unwrap_or(f64::NAN);
            self.report.missing_values += u64::from(v.is_nan());
            self.rows.value.push(v);
        }
    }

    /// One wide row (`values` in `value_cols` order, pass 2).
    fn wide_row(&mut self, ts: Option<i64>, asset: Option<&str>, values: &[f64]) {
        let Some(ts) = self.check_time(ts) else {
            return;
        };
        let Some(asset) = self.asset_name(asset) else {
            return;
        };
        let a = self.assets.id(asset);
        self.rows.asset.push(a);
        self.rows.ts.push(ts);
        if self.with_values {
            self.report.missing_values += values.iter().filter(|v| v.is_nan()).count() as u64;
            self.rows.value.extend_from_slice(values);
        }
    }
}

impl Chunked {
    fn new(
        root: &Path,
        files: Vec<InputFile>,
        archive: bool,
        opts: &TelemetryOptions,
        report: &mut ReadReport,
    ) -> Result<Self, TelemetryError> {
        let first = files.first().ok_or_else(|| TelemetryError::NoFiles {
            path: root.to_path_buf(),
        })?;
        let columns = match first.kind {
            FileKind::Csv => long_csv::columns(&first.path, opts, report)?,
            FileKind::Parquet => parquet::columns(&first.path, opts, report)?,
        };
        report.kind = match (first.kind, archive, root.is_dir()) {
            (FileKind::Csv, _, _) => "long_csv",
            (_, true, _) => "archive",
            (_, false, true) => "parquet_dir",
            (_, false, false) => "parquet",
        };
        report.layout = Some(columns.layout);
        report.time_col = columns.time.clone();
        report.asset_col = columns.asset.clone();
        report.tag_col = columns.tag.clone();
        report.value_col = columns.value.clone();
        report.files = files.len();
        if columns.layout == Layout::Wide {
            report.sensors = columns.sensors.clone();
        }
        let granularity = if archive {
            Granularity::Day
        } else if first.kind == FileKind::Csv {
            Granularity::All
        } else {
            Granularity::RowGroup
        };
        Ok(Self {
            root: root.to_path_buf(),
            files,
            granularity,
            columns,
            opts: opts.clone(),
            assets: Interner::default(),
            tags: Interner::default(),
            time_format: None,
            canonical: Vec::new(),
        })
    }

    fn profile(
        &mut self,
        report: &mut ReadReport,
        progress: Progress<'_>,
    ) -> Result<TelemetryProfile, TelemetryError> {
        loop {
            let mut builder = ProfileBuilder::default();
            let mut pass_report = report.clone();
            let res = self.run_pass(&mut pass_report, &[], false, progress, &mut |batch| {
                builder.add(batch);
                Ok(())
            });
            match res {
                Ok(()) => {
                    *report = pass_report;
                    if self.columns.layout == Layout::Long {
                        let mut tags: Vec<String> = self.tags.names.clone();
                        tags.sort();
                        report.sensors = tags;
                    }
                    let (profile, canonical) =
                        builder.finish(report.sensors.clone(), &self.assets.names);
                    self.canonical = canonical;
                    report.rows = profile.n_rows as u64;
                    return Ok(profile);
                }
                Err(PassError::Regression(r)) => {
                    let Some(coarser) = self.granularity.coarser(self.files.len()) else {
                        // A single chunk is sorted: it cannot go back in time.
                        return Err(TelemetryError::Changed {
                            path: self.root.clone(),
                            asset: self.assets.names[r.asset as usize].clone(),
                        });
                    };
                    report.opened = pass_report.opened;
                    report.file_opens = pass_report.file_opens;
                    report.warnings.push(format!(
                        "asset {} has readings out of time order across {}s: reading {} instead \
                         (memory grows with the chunk; sort the files by time to avoid this)",
                        self.assets.names[r.asset as usize],
                        self.granularity.name(),
                        match coarser {
                            Granularity::File => "file by file",
                            _ => "the whole input as one chunk",
                        }
                    ));
                    self.granularity = coarser;
                }
                Err(PassError::Telemetry(e)) => return Err(e),
            }
        }
    }

    fn scan(
        &mut self,
        report: &mut ReadReport,
        profile: &TelemetryProfile,
        sensors: &[String],
        sink: &mut dyn FnMut(&RowBatch<'_>) -> Result<(), TelemetryError>,
        progress: Progress<'_>,
    ) -> Result<(), TelemetryError> {
        let mut pass_report = report.clone();
        // Counters of pass 2 that pass 1 cannot know (values); the rest
        // repeat pass 1's.
        pass_report.duplicate_readings = 0;
        pass_report.missing_values = 0;
        let mut n_rows = 0u64;
        let res = self.run_pass(&mut pass_report, sensors, true, progress, &mut |batch| {
            n_rows += batch.ts_ms.len() as u64;
            sink(batch)
        });
        let res = match res {
            Ok(()) if n_rows != profile.n_rows as u64 => Err(TelemetryError::Changed {
                path: self.root.clone(),
                asset: "(row count)".into(),
            }),
            Ok(()) => Ok(()),
            Err(PassError::Regression(r)) => Err(TelemetryError::Changed {
                path: self.root.clone(),
                asset: self.assets.names[r.asset as usize].clone(),
            }),
            Err(PassError::Telemetry(e)) => Err(e),
        };
        report.opened = pass_report.opened.clone();
        report.file_opens = pass_report.file_opens;
        report.duplicate_readings = pass_report.duplicate_readings;
        report.missing_values = pass_report.missing_values;
        res
    }

    /// One pass over every chunk. Pass 1 (`with_values` false) counts
    /// rejections into `report`; pass 2 reads the values of `sensors` and
    /// maps assets onto the profile's order.
    fn run_pass(
        &mut self,
        report: &mut ReadReport,
        sensors: &[String],
        with_values: bool,
        progress: Progress<'_>,
        sink: &mut dyn FnMut(&RowBatch<'_>) -> Result<(), TelemetryError>,
    ) -> Result<(), PassError> {
        if !with_values {
            report.rejected.clear();
            report.rows_read = 0;
            report.outside_window = 0;
            report.excluded_tag_rows = 0;
            report.duplicate_readings = 0;
            report.missing_values = 0;
        }
        let pass = if with_values { "values" } else { "profile" };
        let plan = files::plan(&self.files, self.granularity, report)?;
        report.chunking = self.granularity.name();
        report.chunks = plan.len();
        let n_values = match self.columns.layout {
            Layout::Wide if with_values => sensors.len(),
            Layout::Long if with_values => 1,
            _ => 0,
        };
        let mut pipeline = Pipeline::new(self.columns.layout, n_values);
        if self.columns.layout == Layout::Long && with_values {
            pipeline.set_wanted_tags(&self.tags.names, sensors);
        }
        let value_cols: Vec<String> = if self.columns.layout == Layout::Wide && with_values {
            sensors.to_vec()
        } else {
            Vec::new()
        };
        // Pass 1 counts rejections; pass 2 reads the same rows and must not
        // count them twice.
        let mut scratch_report = ReadReport::default();
        let n_chunks = plan.len();
        progress(pass, 0, n_chunks);
        for (k, chunk) in plan.iter().enumerate() {
            for part in &chunk.parts {
                let file = &self.files[part.file];
                let counting: &mut ReadReport = if with_values {
                    &mut scratch_report
                } else {
                    report
                };
                let mut accept = Accept {
                    rows: pipeline.pending(),
                    report: counting,
                    assets: &mut self.assets,
                    tags: &mut self.tags,
                    time_format: &mut self.time_format,
                    opts: &self.opts,
                    columns: &self.columns,
                    value_cols: &value_cols,
                    with_values,
                    day: file.day,
                };
                match file.kind {
                    FileKind::Csv => long_csv::read(&file.path, &mut accept)?,
                    FileKind::Parquet => parquet::read(&file.path, part.row_group, &mut accept)?,
                }
                let opened = std::mem::take(&mut scratch_report.opened);
                report.opened.extend(opened);
                report.file_opens += std::mem::take(&mut scratch_report.file_opens);
                report.duplicate_readings += std::mem::take(&mut scratch_report.duplicate_readings);
                report.missing_values += std::mem::take(&mut scratch_report.missing_values);
            }
            let last = k + 1 == n_chunks;
            self.emit(&mut pipeline, last, with_values, report, sink)?;
            progress(pass, k + 1, n_chunks);
        }
        if n_chunks == 0 {
            self.emit(&mut pipeline, true, with_values, report, sink)?;
        }
        Ok(())
    }

    fn emit(
        &self,
        pipeline: &mut Pipeline,
        flush: bool,
        with_values: bool,
        report: &mut ReadReport,
        sink: &mut dyn FnMut(&RowBatch<'_>) -> Result<(), TelemetryError>,
    ) -> Result<(), PassError> {
        let n_assets = self.assets.names.len();
        let dups = pipeline
            .finish_chunk(flush, n_assets)
            .map_err(PassError::Regression)?;
        if with_values {
            report.duplicate_readings += dups;
            pipeline
                .map_assets(&self.canonical)
                .map_err(PassError::Regression)?;
        }
        sink(&pipeline.batch()).map_err(PassError::Telemetry)
    }
}

const TIME_NAMES: [&str; 4] = ["timestamp", "datetime", "ts", "time"];
const ASSET_NAMES: [&str; 2] = ["asset", "asset_id"];
const TAG_NAMES: [&str; 6] = ["tag", "tag_name", "tagname", "sensor", "signal", "point"];
const VALUE_NAMES: [&str; 2] = ["value", "val"];

/// Picks the time, asset, tag, value and sensor columns from a header
/// (`numeric[i]`: column `i` can be a sensor), as the module docs say.
fn resolve_columns(
    path: &Path,
    names: &[String],
    numeric: &[bool],
    opts: &TelemetryOptions,
) -> Result<Columns, TelemetryError> {
    let available = names.join(",");
    let find = |name: &str| names.iter().position(|c| c.eq_ignore_ascii_case(name));
    let named = |name: &String, role: &str| {
        find(name).ok_or_else(|| TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!("no column {name:?} for {role} ({available})"),
        })
    };
    let first_of = |candidates: &[&str]| candidates.iter().find_map(|n| find(n));
    let time = match &opts.time_col {
        Some(name) => named(name, "--time-col")?,
        None => first_of(&TIME_NAMES).ok_or_else(|| TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!(
                "no time column: none of timestamp, datetime, ts, time ({available}); pass --time-col"
            ),
        })?,
    };
    let asset = match &opts.asset_col {
        Some(name) => Some(named(name, "--asset-col")?),
        None => first_of(&ASSET_NAMES).filter(|&c| c != time),
    };
    let tag = match &opts.tag_col {
        Some(name) => Some(named(name, "--tag-col")?),
        None => first_of(&TAG_NAMES).filter(|&c| c != time && Some(c) != asset),
    };
    let value = match &opts.value_col {
        Some(name) => Some(named(name, "--value-col")?),
        None => first_of(&VALUE_NAMES).filter(|&c| c != time && Some(c) != asset && Some(c) != tag),
    };
    let layout = opts.layout.unwrap_or(if tag.is_some() && value.is_some() {
        Layout::Long
    } else {
        Layout::Wide
    });
    let name = |i: usize| names[i].clone();
    if layout == Layout::Long {
        let (Some(tag), Some(value)) = (tag, value) else {
            return Err(TelemetryError::Columns {
                path: path.to_path_buf(),
                message: format!(
                    "long layout needs a tag column (tag, tag_name, tagname, sensor, signal, point; \
                     --tag-col) and a value column (value, val; --value-col): found {available}"
                ),
            });
        };
        return Ok(Columns {
            layout,
            time: name(time),
            asset: asset.map(name),
            tag: Some(name(tag)),
            value: Some(name(value)),
            sensors: Vec::new(),
        });
    }
    let mut excluded = vec![false; names.len()];
    for e in &opts.exclude {
        excluded[named(e, "--exclude")?] = true;
    }
    let sensors: Vec<String> = (0..names.len())
        .filter(|&c| c != time && Some(c) != asset && !excluded[c] && numeric[c])
        .map(name)
        .collect();
    if sensors.is_empty() {
        return Err(TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!(
                "no numeric sensor columns besides time/asset/excluded ones ({available})"
            ),
        });
    }
    Ok(Columns {
        layout,
        time: name(time),
        asset: asset.map(name),
        tag: None,
        value: None,
        sensors,
    })
}

enum PassError {
    Regression(Regression),
    Telemetry(TelemetryError),
}

impl From<TelemetryError> for PassError {
    fn from(e: TelemetryError) -> Self {
        Self::Telemetry(e)
    }
}

/// Streaming FNV-1a 64 over files (the model card's data fingerprint), the
/// same digest [`crate::failure::train::fingerprint`] gives for whole parts.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    h: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self {
            h: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Fingerprint {
    /// Adds bytes to the current part.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.h ^= u64::from(b);
            self.h = self.h.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Ends the current part.
    pub fn end_part(&mut self) {
        self.h ^= 0xff;
        self.h = self.h.wrapping_mul(0x0100_0000_01b3);
    }

    /// Adds a whole file as one part, reading it in blocks.
    ///
    /// # Errors
    /// IO errors, with the path.
    pub fn add_file(&mut self, path: &Path) -> Result<(), TelemetryError> {
        let io = |source| TelemetryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            self.update(&buf[..n]);
        }
        self.end_part();
        Ok(())
    }

    /// `fnv1a64:<hex>`.
    pub fn finish(&self) -> String {
        format!("fnv1a64:{:016x}", self.h)
    }
}

#[cfg(test)]
mod tests;
