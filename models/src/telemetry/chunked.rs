//! The two passes over files read in chunks (everything but a wide CSV):
//! the chunk plan, the readers' row checks, the pipeline, the profile.

use std::path::{Path, PathBuf};

use super::chunk::{Pipeline, RawRows, Regression, RowBatch};
use super::columns::Columns;
use super::files::{self, FileKind, Granularity, InputFile};
use super::profile::{ProfileBuilder, TelemetryProfile};
use super::{long_csv, parquet, Layout, Progress, ReadReport, TelemetryError, TelemetryOptions};
use crate::wide_csv::TimeFormat;

/// Files read in chunks (everything but a wide CSV).
#[derive(Debug)]
pub(crate) struct Chunked {
    root: PathBuf,
    pub(crate) files: Vec<InputFile>,
    granularity: Granularity,
    columns: Columns,
    opts: TelemetryOptions,
    assets: Interner,
    tags: Interner,
    time_format: Option<TimeFormat>,
    /// Provisional asset id → index in the profile (after pass 1).
    canonical: Vec<u32>,
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
pub(crate) struct Accept<'a> {
    rows: &'a mut RawRows,
    pub(crate) report: &'a mut ReadReport,
    assets: &'a mut Interner,
    tags: &'a mut Interner,
    pub(crate) time_format: &'a mut Option<TimeFormat>,
    pub(crate) opts: &'a TelemetryOptions,
    pub(crate) columns: &'a Columns,
    /// Wide: value columns to read, in output order (pass 2; empty in pass 1).
    pub(crate) value_cols: &'a [String],
    /// Whether values are read (pass 2).
    pub(crate) with_values: bool,
    /// Day partition bounds `[start, end)`, if the file is in one.
    pub(crate) day: Option<(i64, i64)>,
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
    pub(crate) fn long_row(
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

    /// Room for `rows` more rows (`values_per_row` values each), exactly.
    pub(crate) fn reserve_exact(&mut self, rows: usize, values_per_row: usize) {
        let long = self.columns.layout == Layout::Long;
        self.rows.reserve_exact(rows, long, values_per_row);
    }

    /// One wide row (`values` in `value_cols` order, pass 2).
    pub(crate) fn wide_row(&mut self, ts: Option<i64>, asset: Option<&str>, values: &[f64]) {
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
    pub(crate) fn new(
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

    pub(crate) fn profile(
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

    pub(crate) fn scan(
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

enum PassError {
    Regression(Regression),
    Telemetry(TelemetryError),
}

impl From<TelemetryError> for PassError {
    fn from(e: TelemetryError) -> Self {
        Self::Telemetry(e)
    }
}
