//! CSV telemetry: which layout a header means, and long CSVs read row by
//! row (one chunk: a CSV has no row groups to cut at). Wide CSVs go through
//! [`crate::wide_csv`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chunked::Accept;
use super::columns::{resolve_columns, Columns};
use super::{Layout, ReadReport, TelemetryError, TelemetryOptions};
use crate::wide_csv::{detect_time_format, parse_time, parse_value, split_fields};

fn open(path: &Path, report: &mut ReadReport) -> Result<BufReader<File>, TelemetryError> {
    let file = File::open(path).map_err(|source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    report.opened.insert(path.to_path_buf());
    report.file_opens += 1;
    Ok(BufReader::with_capacity(1 << 20, file))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TelemetryError + '_ {
    move |source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The header: delimiter (`;` or `,`, whichever is more frequent) and names.
fn header(path: &Path, input: &mut BufReader<File>) -> Result<(u8, Vec<String>), TelemetryError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(io(path))?;
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n'])
        .to_string();
    let delimiter = if line.matches(';').count() > line.matches(',').count() {
        b';'
    } else {
        b','
    };
    let (mut spans, mut unq) = (Vec::new(), Vec::new());
    split_fields(&line, delimiter, &mut spans, &mut unq);
    let names = spans
        .iter()
        .zip(&unq)
        .map(|(&(a, b), u)| {
            u.clone()
                .unwrap_or_else(|| line[a..b].to_string())
                .trim()
                .to_string()
        })
        .collect();
    Ok((delimiter, names))
}

/// Wide or long, from the header (long needs a tag and a value column).
pub(crate) fn detect(
    path: &Path,
    opts: &TelemetryOptions,
    report: &mut ReadReport,
) -> Result<Layout, TelemetryError> {
    if let Some(layout) = opts.layout {
        return Ok(layout);
    }
    let mut input = open(path, report)?;
    let (_, names) = header(path, &mut input)?;
    // Wide CSV sensors are found by sniffing values, later; here any column
    // may be one.
    let numeric = vec![true; names.len()];
    match resolve_columns(path, &names, &numeric, opts) {
        Ok(c) => Ok(c.layout),
        // Let the wide reader report a missing time column its own way.
        Err(_) => Ok(Layout::Wide),
    }
}

/// The columns of a long CSV.
pub(crate) fn columns(
    path: &Path,
    opts: &TelemetryOptions,
    report: &mut ReadReport,
) -> Result<Columns, TelemetryError> {
    let mut input = open(path, report)?;
    let (_, names) = header(path, &mut input)?;
    let opts = TelemetryOptions {
        layout: Some(Layout::Long),
        ..opts.clone()
    };
    resolve_columns(path, &names, &vec![false; names.len()], &opts)
}

/// Reads every row of a long CSV into `accept`.
pub(crate) fn read(path: &Path, accept: &mut Accept<'_>) -> Result<(), TelemetryError> {
    let mut input = open(path, accept.report)?;
    let (delimiter, names) = header(path, &mut input)?;
    let find = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| names.iter().position(|c| c.eq_ignore_ascii_case(n)))
    };
    let cols = accept.columns;
    let missing = |role: &str| TelemetryError::Columns {
        path: path.to_path_buf(),
        message: format!("no {role} column ({})", names.join(",")),
    };
    let time = find(&Some(cols.time.clone())).ok_or_else(|| missing("time"))?;
    let asset = find(&cols.asset);
    let tag = find(&cols.tag).ok_or_else(|| missing("tag"))?;
    let value = find(&cols.value).ok_or_else(|| missing("value"))?;
    let (mut spans, mut unq) = (Vec::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(io(path))? == 0 {
            break;
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            continue;
        }
        split_fields(text, delimiter, &mut spans, &mut unq);
        let field = |i: usize| -> &str {
            match (unq.get(i), spans.get(i)) {
                (Some(Some(s)), _) => s.as_str(),
                (_, Some(&(a, b))) => &text[a..b],
                _ => "",
            }
        };
        if spans.len() != names.len() {
            accept.report.rows_read += 1;
            accept.report.reject("field_count");
            continue;
        }
        let t = field(time).trim();
        let ts = if t.is_empty() {
            None
        } else {
            let fmt = *accept
                .time_format
                .get_or_insert_with(|| detect_time_format(t));
            parse_time(t, fmt)
        };
        let v = parse_value(field(value).trim(), delimiter);
        accept.long_row(ts, asset.map(field), Some(field(tag)), v);
    }
    Ok(())
}
