//! Parquet files through polars' eager reader: only the needed columns,
//! one row group at a time.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::chunked::Accept;
use super::columns::{resolve_columns, Columns};
use super::{Layout, ReadReport, TelemetryError, TelemetryOptions};
use crate::wide_csv::{detect_time_format, parse_time, TimeFormat};

fn perr(path: &Path) -> impl Fn(PolarsError) -> TelemetryError + '_ {
    move |e| TelemetryError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn open(path: &Path, report: &mut ReadReport) -> Result<File, TelemetryError> {
    let file = File::open(path).map_err(|source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    report.opened.insert(path.to_path_buf());
    report.file_opens += 1;
    Ok(file)
}

/// Whether an Arrow column can be a sensor (integers and floats).
fn is_number(dtype: &ArrowDataType) -> bool {
    use ArrowDataType as D;
    matches!(
        dtype,
        D::Int8
            | D::Int16
            | D::Int32
            | D::Int64
            | D::UInt8
            | D::UInt16
            | D::UInt32
            | D::UInt64
            | D::Float16
            | D::Float32
            | D::Float64
    )
}

/// The layout and columns of a Parquet file (from its footer).
pub(crate) fn columns(
    path: &Path,
    opts: &TelemetryOptions,
    report: &mut ReadReport,
) -> Result<Columns, TelemetryError> {
    let file = open(path, report)?;
    let schema = ParquetReader::new(file).schema().map_err(perr(path))?;
    let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    let numeric: Vec<bool> = schema.iter_values().map(|f| is_number(&f.dtype)).collect();
    resolve_columns(path, &names, &numeric, opts)
}

/// Number of row groups of a file.
pub(crate) fn row_groups(path: &Path, report: &mut ReadReport) -> Result<usize, TelemetryError> {
    let file = open(path, report)?;
    let mut reader = ParquetReader::new(file);
    Ok(reader.get_metadata().map_err(perr(path))?.row_groups.len())
}

/// Reads one row group (or all, one after the other) into `accept`.
pub(crate) fn read(
    path: &Path,
    row_group: Option<usize>,
    accept: &mut Accept<'_>,
) -> Result<(), TelemetryError> {
    let file = open(path, accept.report)?;
    let mut reader = ParquetReader::new(file.try_clone().map_err(|source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    })?);
    let metadata = reader.get_metadata().map_err(perr(path))?.clone();
    let schema = reader.schema().map_err(perr(path))?;
    let find = |name: &str| -> Option<String> {
        schema
            .iter_names()
            .find(|n| n.as_str() == name)
            .or_else(|| schema.iter_names().find(|n| n.eq_ignore_ascii_case(name)))
            .map(|n| n.to_string())
    };
    let required = |name: &str| {
        find(name).ok_or_else(|| TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!(
                "no column {name:?} (columns: {})",
                schema
                    .iter_names()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
    };
    let cols = accept.columns;
    let time = required(&cols.time)?;
    let asset = match &cols.asset {
        Some(a) => Some(required(a)?),
        None => None,
    };
    let (tag, value) = match cols.layout {
        Layout::Long => (
            Some(required(cols.tag.as_deref().unwrap_or("tag"))?),
            if accept.with_values {
                Some(required(cols.value.as_deref().unwrap_or("value"))?)
            } else {
                None
            },
        ),
        Layout::Wide => (None, None),
    };
    // Wide sensors this file lacks read as missing.
    let sensor_cols: Vec<Option<String>> = accept.value_cols.iter().map(|s| find(s)).collect();
    let mut projection: Vec<String> = vec![time.clone()];
    projection.extend(asset.iter().cloned());
    projection.extend(tag.iter().cloned());
    projection.extend(value.iter().cloned());
    for s in sensor_cols.iter().flatten() {
        if !projection.contains(s) {
            projection.push(s.clone());
        }
    }
    let mut offset = 0usize;
    let mut slices = Vec::new();
    for (k, rg) in metadata.row_groups.iter().enumerate() {
        let n = rg.num_rows();
        if row_group.is_none_or(|g| g == k) && n > 0 {
            slices.push((offset, n));
        }
        offset += n;
    }
    let n_values = match (cols.layout, accept.with_values) {
        (_, false) => 0,
        (Layout::Long, true) => 1,
        (Layout::Wide, true) => sensor_cols.len(),
    };
    accept.reserve_exact(slices.iter().map(|s| s.1).sum(), n_values);
    for (start, len) in slices {
        let handle = file.try_clone().map_err(|source| TelemetryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // One row group at a time: decode its columns in parallel (polars'
        // default would parallelise over row groups, i.e. not at all here).
        let mut reader = ParquetReader::new(handle)
            .with_columns(Some(projection.clone()))
            .with_slice(Some((start, len)))
            .read_parallel(ParallelStrategy::Columns);
        reader.set_metadata(metadata.clone());
        let df = reader.finish().map_err(perr(path))?;
        let frame = Frame {
            path,
            df: &df,
            time: &time,
            asset: asset.as_deref(),
        };
        match cols.layout {
            Layout::Long => {
                frame.long(tag.as_deref().unwrap_or("tag"), value.as_deref(), accept)?
            }
            Layout::Wide => frame.wide(&sensor_cols, accept)?,
        }
    }
    Ok(())
}

/// One slice of a file, read.
struct Frame<'a> {
    path: &'a Path,
    df: &'a DataFrame,
    time: &'a str,
    asset: Option<&'a str>,
}

impl Frame<'_> {
    fn column(&self, name: &str) -> Result<&Column, TelemetryError> {
        self.df.column(name).map_err(perr(self.path))
    }

    fn strings(&self, name: &str) -> Result<StringChunked, TelemetryError> {
        let col = self.column(name)?;
        let col = match col.dtype() {
            DataType::String => col.clone(),
            dt if dt.is_integer() => col.cast(&DataType::String).map_err(perr(self.path))?,
            dt => {
                return Err(TelemetryError::Columns {
                    path: self.path.to_path_buf(),
                    message: format!("column {name:?} has type {dt}; expected text"),
                })
            }
        };
        Ok(col.str().map_err(perr(self.path))?.clone())
    }

    fn floats(&self, name: &str) -> Result<Float64Chunked, TelemetryError> {
        let col = self.column(name)?;
        if !(col.dtype().is_primitive_numeric()) {
            return Err(TelemetryError::Columns {
                path: self.path.to_path_buf(),
                message: format!("column {name:?} has type {}; expected numbers", col.dtype()),
            });
        }
        let col = col.cast(&DataType::Float64).map_err(perr(self.path))?;
        Ok(col.f64().map_err(perr(self.path))?.clone())
    }

    fn assets(&self) -> Result<Option<StringChunked>, TelemetryError> {
        self.asset.map(|a| self.strings(a)).transpose()
    }

    fn long(
        &self,
        tag: &str,
        value: Option<&str>,
        accept: &mut Accept<'_>,
    ) -> Result<(), TelemetryError> {
        let ts = times(self.path, self.column(self.time)?, accept.time_format)?;
        let assets = self.assets()?;
        let tags = self.strings(tag)?;
        let values = value.map(|v| self.floats(v)).transpose()?;
        let mut asset_it = assets.as_ref().map(|a| a.iter());
        let mut value_it = values.as_ref().map(|v| v.iter());
        for (t, tag) in ts.into_iter().zip(tags.iter()) {
            let asset = asset_it.as_mut().and_then(|it| it.next().flatten());
            let value = value_it.as_mut().and_then(|it| it.next().flatten());
            accept.long_row(t, asset, tag, value);
        }
        Ok(())
    }

    fn wide(
        &self,
        sensors: &[Option<String>],
        accept: &mut Accept<'_>,
    ) -> Result<(), TelemetryError> {
        let ts = times(self.path, self.column(self.time)?, accept.time_format)?;
        let assets = self.assets()?;
        let n = ts.len();
        let nv = sensors.len();
        let mut block = vec![f64::NAN; n * nv];
        for (j, name) in sensors.iter().enumerate() {
            let Some(name) = name else { continue };
            for (i, v) in self.floats(name)?.iter().enumerate() {
                if let Some(v) = v {
                    block[i * nv + j] = v;
                }
            }
        }
        let mut asset_it = assets.as_ref().map(|a| a.iter());
        for (i, t) in ts.into_iter().enumerate() {
            let asset = asset_it.as_mut().and_then(|it| it.next().flatten());
            accept.wide_row(t, asset, &block[i * nv..(i + 1) * nv]);
        }
        Ok(())
    }
}

/// A time column as epoch ms per row (`None` = unreadable): `Datetime` of
/// any unit (time zone ignored: the stored instant is UTC), integers and
/// floats as epoch ms or s (the first value decides, as in
/// [`crate::wide_csv`]), strings as ISO 8601 or epoch numbers.
fn times(
    path: &Path,
    col: &Column,
    format: &mut Option<TimeFormat>,
) -> Result<Vec<Option<i64>>, TelemetryError> {
    let bad_type = |dt: &DataType| TelemetryError::Columns {
        path: path.to_path_buf(),
        message: format!(
            "time column {:?} has type {dt}; expected a Datetime, epoch numbers or ISO 8601 text",
            col.name().as_str()
        ),
    };
    match col.dtype() {
        DataType::Datetime(unit, _) => {
            let per_ms = match unit {
                TimeUnit::Milliseconds => 1,
                TimeUnit::Microseconds => 1_000,
                TimeUnit::Nanoseconds => 1_000_000,
            };
            let ca = col.datetime().map_err(perr(path))?;
            Ok(ca
                .physical()
                .iter()
                .map(|v| v.map(|v| v.div_euclid(per_ms)))
                .collect())
        }
        DataType::String => {
            let ca = col.str().map_err(perr(path))?;
            Ok(ca
                .iter()
                .map(|v| {
                    let text = v?.trim();
                    if text.is_empty() {
                        return None;
                    }
                    let fmt = *format.get_or_insert_with(|| detect_time_format(text));
                    parse_time(text, fmt)
                })
                .collect())
        }
        dt if dt.is_primitive_numeric() => {
            let cast = col.cast(&DataType::Float64).map_err(perr(path))?;
            let ca = cast.f64().map_err(perr(path))?;
            Ok(ca
                .iter()
                .map(|v| {
                    let v = v?;
                    let fmt = *format.get_or_insert(if v.abs() >= 1e11 {
                        TimeFormat::EpochMillis
                    } else {
                        TimeFormat::EpochSeconds
                    });
                    numeric_time(v, fmt)
                })
                .collect())
        }
        dt => Err(bad_type(dt)),
    }
}

/// Epoch milliseconds of a number in `fmt` (the bounds of
/// [`crate::wide_csv::parse_time`]).
fn numeric_time(v: f64, fmt: TimeFormat) -> Option<i64> {
    match fmt {
        TimeFormat::EpochMillis => (v.is_finite() && v.abs() < 9e15).then(|| v.round() as i64),
        TimeFormat::EpochSeconds => {
            (v.is_finite() && v.abs() < 9e12).then(|| (v * 1000.0).round() as i64)
        }
        TimeFormat::Iso8601 | TimeFormat::MonthDayYear | TimeFormat::DayMonthYear => None,
    }
}
