//! The wide telemetry CSV layout shared by `fieldpulse detect`, `score`,
//! `simulate` and `bench scoring`: a header row, `,` or `;` separated, one time
//! column (epoch milliseconds, epoch seconds or ISO 8601), an optional asset
//! column, and one numeric column per sensor.
//!
//! Detection rules (all overridable):
//! - delimiter: whichever of `;` and `,` occurs more often in the header;
//! - time column: `--time-col`, else the first header named `timestamp`,
//!   `datetime`, `ts`, `time` or `date` (case-insensitive), else the first
//!   column whose first value is a date (`Time (UTC)`, `Datum`);
//!   a time column of times of day (`13:05:00`) is joined with the first
//!   column of dates (`Date;Time;…`, as data loggers export);
//! - asset column: `--asset-col`, else a header named `asset` or `asset_id`;
//! - sensors: every other column not excluded whose non-empty values in the
//!   first `sniff_rows` rows mostly (≥ 50 %) parse as numbers;
//! - time format, from the first non-empty time value: a number ≥ 1e11 is
//!   epoch milliseconds, a smaller number epoch seconds (fractions allowed),
//!   `A/B/YYYY` or `A.B.YYYY` a spreadsheet date (day or month first as the
//!   column shows, [`TimeFormat::MonthDayYear`]), anything else ISO 8601 (`YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH[:MM]]`, no
//!   offset means UTC);
//! - numbers: Rust's float syntax; in a `;`-separated file a value with one
//!   decimal comma (`21,5`, as spreadsheets write them in many locales)
//!   reads as `21.5`.
//!
//! Bad input is data: a row with the wrong number of fields or an unreadable
//! time is *rejected* (counted by reason, never scored); an empty or
//! non-numeric sensor value is *missing* (NaN, counted). Quoted fields
//! (`"a;b"`, `""` escapes) are understood; quoted newlines are not.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;

/// Why a wide CSV could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum WideCsvError {
    /// Reading failed.
    #[error("reading the CSV")]
    Io(#[from] std::io::Error),
    /// The input has no header row.
    #[error("the CSV is empty (no header row)")]
    Empty,
    /// No time column was given or found.
    #[error("no time column: none of timestamp, datetime, ts, time, date in the header ({available}) and no column of dates; pass --time-col")]
    NoTimeColumn {
        /// The header, comma-joined.
        available: String,
    },
    /// A column named on the command line is not in the header.
    #[error("no column {name:?} for {role} in the header ({available})")]
    UnknownColumn {
        /// The requested name.
        name: String,
        /// What it was requested for (`--time-col`, `--asset-col`, `--exclude`, `--label-col`).
        role: &'static str,
        /// The header, comma-joined.
        available: String,
    },
    /// The header is followed by no data rows.
    #[error("the CSV has a header ({available}) but no data rows")]
    NoRows {
        /// The header, comma-joined.
        available: String,
    },
    /// No numeric column is left to use as a sensor.
    #[error("no numeric sensor columns besides time/asset/excluded ones ({available})")]
    NoSensorColumns {
        /// The header, comma-joined.
        available: String,
    },
}

/// How to read a wide CSV.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WideCsvOptions {
    /// Asset column name (default: `asset` or `asset_id` if present).
    pub asset_col: Option<String>,
    /// Time column name (default: detected).
    pub time_col: Option<String>,
    /// Columns never used as sensors.
    pub exclude: Vec<String>,
    /// A column of ground-truth labels: never a sensor, located in the layout.
    pub label_col: Option<String>,
    /// Rows inspected to decide which columns are numeric (0 means 1,000).
    pub sniff_rows: usize,
    /// The time format, when detection is not wanted: `m/d/y` or `d/m/y`
    /// settle the order of spreadsheet dates (in the date column, when the
    /// times are times of day), the others set the time column's format.
    pub time_format: Option<TimeFormat>,
}

/// How time values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Integer or fractional epoch milliseconds.
    EpochMillis,
    /// Integer or fractional epoch seconds.
    EpochSeconds,
    /// ISO 8601 date-time.
    Iso8601,
    /// `M/D/YYYY[ H:MM[:SS[.fff]][ AM|PM]]`, as US spreadsheets export.
    MonthDayYear,
    /// `D/M/YYYY` or `D.M.YYYY`, with the same optional clock time.
    DayMonthYear,
}

impl TimeFormat {
    /// Every format, in the order of [`TimeFormat::name`]'s list.
    pub const ALL: [TimeFormat; 5] = [
        Self::EpochMillis,
        Self::EpochSeconds,
        Self::Iso8601,
        Self::MonthDayYear,
        Self::DayMonthYear,
    ];

    /// The format of a name (`epoch_ms`, `epoch_s`, `iso8601`, `m/d/y`,
    /// `d/m/y`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Its name in reports (`epoch_ms`, `iso8601`, `m/d/y`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::EpochMillis => "epoch_ms",
            Self::EpochSeconds => "epoch_s",
            Self::Iso8601 => "iso8601",
            Self::MonthDayYear => "m/d/y",
            Self::DayMonthYear => "d/m/y",
        }
    }
}

/// The detected layout of a wide CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct WideCsvLayout {
    /// Field separator.
    pub delimiter: u8,
    /// Header names.
    pub columns: Vec<String>,
    /// Index of the time column.
    pub time_col: usize,
    /// Index of the asset column, if any.
    pub asset_col: Option<usize>,
    /// Index of the label column, if one was asked for.
    pub label_col: Option<usize>,
    /// Indexes of the sensor columns, in header order.
    pub sensor_cols: Vec<usize>,
    /// Time format, detected from the first time value (None if no rows).
    pub time_format: Option<TimeFormat>,
    /// The column of dates a time column of times of day belongs to.
    pub date_col: Option<usize>,
    /// How the date column writes its dates.
    pub date_format: Option<TimeFormat>,
}

impl WideCsvLayout {
    /// Sensor names in lane order.
    pub fn sensor_names(&self) -> Vec<String> {
        self.sensor_cols
            .iter()
            .map(|&c| self.columns[c].clone())
            .collect()
    }
    /// Name of the time column.
    pub fn time_name(&self) -> &str {
        &self.columns[self.time_col]
    }
    /// Name of the asset column, if any.
    pub fn asset_name(&self) -> Option<&str> {
        self.asset_col.map(|c| self.columns[c].as_str())
    }
}

/// Why a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// More or fewer fields than the header.
    FieldCount,
    /// The time value is empty or unreadable.
    BadTime,
}

impl RejectReason {
    /// Snake-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::FieldCount => "field_count",
            Self::BadTime => "bad_time",
        }
    }
}

/// Counts of rejected rows and missing values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// Rows with the wrong number of fields.
    pub field_count: u64,
    /// Rows with an unreadable time.
    pub bad_time: u64,
    /// Sensor values that were empty or not numbers (kept as NaN).
    pub missing_values: u64,
    /// Rows with at least one missing value.
    pub rows_with_missing: u64,
}

impl RejectCounts {
    /// Total rejected rows.
    pub fn rejected_rows(&self) -> u64 {
        self.field_count + self.bad_time
    }
}

/// One data row: the raw line, field spans, and the parsed time and values.
#[derive(Debug, Clone, Default)]
pub struct WideRecord {
    /// 1-based line number (the header is line 1).
    pub line_no: u64,
    /// The raw line without its line ending.
    pub line: String,
    spans: Vec<(usize, usize)>,
    unquoted: Vec<Option<String>>,
    /// Parsed time in epoch milliseconds (None when rejected for time).
    pub ts_ms: Option<i64>,
    /// Sensor values in lane order (NaN when missing).
    pub values: Vec<f64>,
    /// Why the row was rejected, if it was.
    pub reject: Option<RejectReason>,
    /// Number of missing sensor values in the row.
    pub n_missing: usize,
}

impl WideRecord {
    /// The text of field `idx` (quotes removed), or "" if the row is short.
    pub fn field(&self, idx: usize) -> &str {
        match (self.unquoted.get(idx), self.spans.get(idx)) {
            (Some(Some(s)), _) => s,
            (_, Some(&(a, b))) => &self.line[a..b],
            _ => "",
        }
    }
    /// Number of fields found.
    pub fn n_fields(&self) -> usize {
        self.spans.len()
    }
}

/// Streaming reader of a wide CSV: the header and up to `sniff_rows` rows are
/// read ahead to detect the layout, then rows are handed out one at a time.
pub struct WideCsvReader<R> {
    input: R,
    layout: WideCsvLayout,
    ahead: VecDeque<(u64, String)>,
    line_no: u64,
    counts: RejectCounts,
}

impl<R: BufRead> WideCsvReader<R> {
    /// Reads the header (and a sample of rows) and detects the layout.
    ///
    /// # Errors
    /// IO errors, an empty input, or a header without a time column, a named
    /// column, or any numeric sensor column.
    pub fn new(mut input: R, opts: &WideCsvOptions) -> Result<Self, WideCsvError> {
        let mut header = String::new();
        if input.read_line(&mut header)? == 0 {
            return Err(WideCsvError::Empty);
        }
        let header = header
            .trim_start_matches('\u{feff}')
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let delimiter = if header.matches(';').count() > header.matches(',').count() {
            b';'
        } else {
            b','
        };
        let mut spans = Vec::new();
        let mut unq = Vec::new();
        split_fields(&header, delimiter, &mut spans, &mut unq);
        let columns: Vec<String> = (0..spans.len())
            .map(|i| {
                unq[i]
                    .clone()
                    .unwrap_or_else(|| header[spans[i].0..spans[i].1].to_string())
                    .trim()
                    .to_string()
            })
            .collect();
        let available = columns.join(",");
        let find = |name: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(name));
        let named = |name: &String, role: &'static str| {
            find(name).ok_or_else(|| WideCsvError::UnknownColumn {
                name: name.clone(),
                role,
                available: available.clone(),
            })
        };
        // By name here; without one of the usual names, after the sniff
        // below, the first column whose first value is an ISO 8601 time.
        let named_time_col = match &opts.time_col {
            Some(name) => Some(named(name, "--time-col")?),
            None => TIME_NAMES.iter().find_map(|n| find(n)),
        };
        let asset_named = match &opts.asset_col {
            Some(name) => Some(named(name, "--asset-col")?),
            None => None,
        };
        let mut excluded = vec![false; columns.len()];
        for name in &opts.exclude {
            excluded[named(name, "--exclude")?] = true;
        }
        let label_col = opts
            .label_col
            .as_ref()
            .map(|name| named(name, "--label-col"))
            .transpose()?;
        if let Some(c) = label_col {
            excluded[c] = true;
        }
        // Read ahead to decide which columns are numeric.
        let sniff = if opts.sniff_rows == 0 {
            1000
        } else {
            opts.sniff_rows
        };
        let mut ahead = VecDeque::new();
        let mut line_no = 1;
        let (mut numeric, mut non_empty) =
            (vec![0usize; columns.len()], vec![0usize; columns.len()]);
        let mut first_value: Vec<Option<String>> = vec![None; columns.len()];
        while ahead.len() < sniff {
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 {
                break;
            }
            line_no += 1;
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line.trim().is_empty() {
                continue;
            }
            split_fields(&line, delimiter, &mut spans, &mut unq);
            for i in 0..spans.len().min(columns.len()) {
                let text = unq[i]
                    .as_deref()
                    .unwrap_or(&line[spans[i].0..spans[i].1])
                    .trim();
                if text.is_empty() {
                    continue;
                }
                non_empty[i] += 1;
                numeric[i] += usize::from(parse_value(text, delimiter).is_some());
                if first_value[i].is_none() {
                    first_value[i] = Some(text.to_string());
                }
            }
            ahead.push_back((line_no, line));
        }
        if ahead.is_empty() {
            return Err(WideCsvError::NoRows { available });
        }
        let mut time_col = match named_time_col {
            Some(c) => c,
            None => (0..columns.len())
                .find(|&c| {
                    !excluded[c]
                        && Some(c) != asset_named
                        && first_value[c].as_deref().is_some_and(|v| {
                            parse_iso8601(v).is_some() || numeric_date_fields(v).is_some()
                        })
                })
                .ok_or_else(|| WideCsvError::NoTimeColumn {
                    available: available.clone(),
                })?,
        };
        // Dates and times of day in two columns (`Date;Time;…`, as data
        // loggers export): the times of day are the time column, the dates
        // are joined to them. Either may be the one found above.
        let first = |c: usize| first_value[c].as_deref().unwrap_or("");
        let other = |c: usize, pred: fn(&str) -> bool| {
            (0..columns.len())
                .find(|&o| o != c && !excluded[o] && Some(o) != asset_named && pred(first(o)))
        };
        let mut date_col = None;
        if is_clock(first(time_col)) {
            date_col = other(time_col, is_date);
        } else if is_date(first(time_col)) {
            if let Some(clock) = other(time_col, is_clock) {
                (date_col, time_col) = (Some(time_col), clock);
            }
        }
        let format_of = |c: usize| {
            if numeric_date_fields(first(c)).is_some() {
                numeric_date_order(ahead.iter().map(|(_, line)| nth_field(line, delimiter, c)))
            } else {
                detect_time_format(first(c))
            }
        };
        let mut time_format = first_value[time_col].as_ref().map(|_| format_of(time_col));
        let mut date_format = date_col.map(format_of);
        match (opts.time_format, date_col) {
            (Some(f @ (TimeFormat::MonthDayYear | TimeFormat::DayMonthYear)), Some(_)) => {
                date_format = Some(f);
            }
            (Some(f), None) => time_format = Some(f),
            _ => {}
        }
        let asset_col = asset_named.or_else(|| {
            ["asset", "asset_id"]
                .iter()
                .find_map(|n| find(n))
                .filter(|c| *c != time_col)
        });
        let sensor_cols: Vec<usize> = (0..columns.len())
            .filter(|&c| c != time_col && Some(c) != asset_col && !excluded[c])
            .filter(|&c| numeric[c] > 0 && numeric[c] * 2 >= non_empty[c])
            .collect();
        if sensor_cols.is_empty() {
            return Err(WideCsvError::NoSensorColumns { available });
        }
        let layout = WideCsvLayout {
            delimiter,
            columns,
            time_col,
            asset_col,
            label_col,
            sensor_cols,
            time_format,
            date_col,
            date_format,
        };
        Ok(Self {
            input,
            layout,
            ahead,
            line_no,
            counts: RejectCounts::default(),
        })
    }

    /// The detected layout.
    pub fn layout(&self) -> &WideCsvLayout {
        &self.layout
    }

    /// Counts of rejected rows and missing values so far.
    pub fn counts(&self) -> RejectCounts {
        self.counts
    }

    /// Reads the next non-blank row into `rec`; `false` at the end of input.
    /// Rejected rows are returned too (with `rec.reject` set) so callers can
    /// keep the input's row order.
    ///
    /// # Errors
    /// IO errors only; bad rows are data.
    pub fn next_record(&mut self, rec: &mut WideRecord) -> Result<bool, WideCsvError> {
        loop {
            if let Some((no, line)) = self.ahead.pop_front() {
                rec.line_no = no;
                rec.line = line;
            } else {
                rec.line.clear();
                if self.input.read_line(&mut rec.line)? == 0 {
                    return Ok(false);
                }
                self.line_no += 1;
                rec.line_no = self.line_no;
                let len = rec.line.trim_end_matches(['\r', '\n']).len();
                rec.line.truncate(len);
            }
            if !rec.line.trim().is_empty() {
                break;
            }
        }
        self.parse(rec);
        Ok(true)
    }

    fn parse(&mut self, rec: &mut WideRecord) {
        split_fields(
            &rec.line,
            self.layout.delimiter,
            &mut rec.spans,
            &mut rec.unquoted,
        );
        rec.values.clear();
        rec.reject = None;
        rec.ts_ms = None;
        rec.n_missing = 0;
        if rec.spans.len() != self.layout.columns.len() {
            rec.reject = Some(RejectReason::FieldCount);
            self.counts.field_count += 1;
            return;
        }
        let time_col = self.layout.time_col;
        let fmt = *self
            .layout
            .time_format
            .get_or_insert_with(|| detect_time_format(trim(rec.field(time_col))));
        let l = &self.layout;
        let time = trim(rec.field(l.time_col));
        rec.ts_ms = match l.date_col {
            Some(d) => parse_time(
                trim(rec.field(d)),
                l.date_format.unwrap_or(TimeFormat::Iso8601),
            )
            .zip(parse_clock(time))
            .map(|(day, t)| day + t),
            None => parse_time(time, fmt),
        };
        if rec.ts_ms.is_none() {
            rec.reject = Some(RejectReason::BadTime);
            self.counts.bad_time += 1;
            return;
        }
        for &c in &l.sensor_cols {
            let v = parse_value(trim(rec.field(c)), l.delimiter).unwrap_or(f64::NAN);
            rec.n_missing += usize::from(v.is_nan());
            rec.values.push(v);
        }
        self.counts.missing_values += rec.n_missing as u64;
        self.counts.rows_with_missing += u64::from(rec.n_missing > 0);
    }
}

/// A whole wide CSV in columns, asset names resolved to dense indexes once.
#[derive(Debug, Clone)]
pub struct WideTable {
    /// The detected layout.
    pub layout: WideCsvLayout,
    /// Asset names by index (one unnamed asset `""` without an asset column).
    pub asset_names: Vec<String>,
    /// Asset index per accepted row.
    pub asset_idx: Vec<u32>,
    /// Epoch milliseconds per accepted row.
    pub ts_ms: Vec<i64>,
    /// Row-major sensor values, NaN where missing.
    pub values: Vec<f64>,
    /// Rejections and missing values.
    pub counts: RejectCounts,
}

impl WideTable {
    /// Reads every row of `input`; rejected rows are counted and left out.
    ///
    /// # Errors
    /// As [`WideCsvReader::new`] and IO errors.
    pub fn read(input: impl BufRead, opts: &WideCsvOptions) -> Result<Self, WideCsvError> {
        let mut reader = WideCsvReader::new(input, opts)?;
        let layout = reader.layout().clone();
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut asset_names = Vec::new();
        let (mut asset_idx, mut ts_ms, mut values) = (Vec::new(), Vec::new(), Vec::new());
        let mut rec = WideRecord::default();
        while reader.next_record(&mut rec)? {
            let Some(ts) = rec.ts_ms else { continue };
            if rec.reject.is_some() {
                continue;
            }
            let name = layout.asset_col.map_or("", |c| rec.field(c));
            let idx = match names.get(name) {
                Some(i) => *i,
                None => {
                    let i = asset_names.len() as u32;
                    names.insert(name.to_string(), i);
                    asset_names.push(name.to_string());
                    i
                }
            };
            asset_idx.push(idx);
            ts_ms.push(ts);
            values.extend_from_slice(&rec.values);
        }
        let counts = reader.counts();
        let layout = WideCsvLayout {
            time_format: reader.layout().time_format,
            ..layout
        };
        Ok(Self {
            layout,
            asset_names,
            asset_idx,
            ts_ms,
            values,
            counts,
        })
    }

    /// Number of accepted rows.
    pub fn n_rows(&self) -> usize {
        self.ts_ms.len()
    }
}

/// Splits `line` at `delim` outside double quotes. `unquoted[i]` holds the
/// unescaped text of quoted fields (None for plain ones, read via the span).
pub(crate) fn split_fields(
    line: &str,
    delim: u8,
    spans: &mut Vec<(usize, usize)>,
    unquoted: &mut Vec<Option<String>>,
) {
    spans.clear();
    unquoted.clear();
    let b = line.as_bytes();
    if memchr::memchr(b'"', b).is_none() {
        // No quotes, the usual row: the delimiters found by one vectorised
        // scan, not a comparison per byte.
        let mut start = 0;
        for end in memchr::memchr_iter(delim, b) {
            spans.push((start, end));
            start = end + 1;
        }
        spans.push((start, b.len()));
        unquoted.resize(spans.len(), None);
        return;
    }
    let mut i = 0;
    loop {
        let start = i;
        if i < b.len() && b[i] == b'"' {
            let mut text = String::new();
            let mut j = i + 1;
            let mut seg = j;
            while j < b.len() {
                if b[j] == b'"' {
                    text.push_str(&line[seg..j]);
                    if j + 1 < b.len() && b[j + 1] == b'"' {
                        text.push('"');
                        j += 2;
                        seg = j;
                        continue;
                    }
                    j += 1;
                    seg = j;
                    break;
                }
                j += 1;
            }
            if seg < j {
                text.push_str(&line[seg..j]); // unterminated quote: keep the rest
            }
            while j < b.len() && b[j] != delim {
                j += 1;
            }
            spans.push((start, j));
            unquoted.push(Some(text));
            i = j;
        } else {
            while i < b.len() && b[i] != delim {
                i += 1;
            }
            spans.push((start, i));
            unquoted.push(None);
        }
        if i >= b.len() {
            break;
        }
        i += 1; // skip the delimiter
    }
}

/// `s.trim()`, without its scan for Unicode white space when both ends are
/// visible ASCII characters (a UTF-8 white space character never starts or
/// ends with one), as they are in almost every field.
#[inline]
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Time column names found without `--time-col`, in order of preference
/// (case-insensitive).
pub(crate) const TIME_NAMES: [&str; 5] = ["timestamp", "datetime", "ts", "time", "date"];

/// A sensor value: Rust's float syntax, or in a `;`-separated file
/// (`delimiter`) a number with one decimal comma instead of a point.
#[inline]
pub(crate) fn parse_value(text: &str, delimiter: u8) -> Option<f64> {
    match text.parse::<f64>() {
        Ok(v) => Some(v),
        Err(_) if delimiter == b';' => parse_decimal_comma(text),
        Err(_) => None,
    }
}

/// `21,5` as `21.5`: exactly one comma and no point (`1.234,5`, with a
/// thousands separator, stays unreadable rather than being guessed at).
#[cold]
fn parse_decimal_comma(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let comma = memchr::memchr(b',', b)?;
    if b.len() > 64 || b[comma + 1..].contains(&b',') || b.contains(&b'.') {
        return None;
    }
    let mut buf = [0u8; 64];
    buf[..b.len()].copy_from_slice(b);
    buf[comma] = b'.';
    std::str::from_utf8(&buf[..b.len()]).ok()?.parse().ok()
}

/// The time format a first time value implies (module docs).
pub(crate) fn detect_time_format(text: &str) -> TimeFormat {
    match text.parse::<f64>() {
        Ok(v) if v.abs() >= 1e11 => TimeFormat::EpochMillis,
        Ok(_) => TimeFormat::EpochSeconds,
        Err(_) => TimeFormat::Iso8601,
    }
}

/// Parses a time value in `fmt` to epoch milliseconds.
pub fn parse_time(text: &str, fmt: TimeFormat) -> Option<i64> {
    match fmt {
        TimeFormat::EpochMillis => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && v.abs() < 9e15)
            .map(|v| v.round() as i64),
        TimeFormat::EpochSeconds => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && v.abs() < 9e12)
            .map(|v| (v * 1000.0).round() as i64),
        TimeFormat::Iso8601 => parse_iso8601(text),
        TimeFormat::MonthDayYear => parse_numeric_date(text, true),
        TimeFormat::DayMonthYear => parse_numeric_date(text, false),
    }
}

/// The `i`-th field of a line, unquoted and trimmed (empty if absent).
fn nth_field(line: &str, delimiter: u8, i: usize) -> String {
    let (mut spans, mut unq) = (Vec::new(), Vec::new());
    split_fields(line, delimiter, &mut spans, &mut unq);
    match (unq.get(i), spans.get(i)) {
        (Some(Some(u)), _) => u.trim().to_string(),
        (_, Some(&(a, b))) => line[a..b].trim().to_string(),
        _ => String::new(),
    }
}

/// A date written `A/B/YYYY` or `A.B.YYYY` (then a clock time, or nothing),
/// the order of day and month not yet known.
struct NumericDate {
    a: i64,
    b: i64,
    year: i64,
    sep: u8,
    /// Bytes up to the year's end (a clock time may follow).
    len: usize,
}

/// The fields of `A/B/YYYY` or `A.B.YYYY` at the start of `text`.
fn numeric_date_fields(text: &str) -> Option<NumericDate> {
    let b = text.as_bytes();
    let digits = |s: &[u8], at: usize| s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n1 = digits(b, 0);
    let sep = *b.get(n1)?;
    if !(1..=2).contains(&n1) || !matches!(sep, b'/' | b'.') {
        return None;
    }
    let n2 = digits(b, n1 + 1);
    let at_year = n1 + 1 + n2 + 1;
    if !(1..=2).contains(&n2) || b.get(n1 + 1 + n2) != Some(&sep) || digits(b, at_year) != 4 {
        return None;
    }
    if !matches!(b.get(at_year + 4), None | Some(b' ') | Some(b'T')) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).ok()?.parse::<i64>().ok();
    Some(NumericDate {
        a: num(0..n1)?,
        b: num(n1 + 1..n1 + 1 + n2)?,
        year: num(at_year..at_year + 4)?,
        sep,
        len: at_year + 4,
    })
}

/// Which of day and month comes first in a column of `A/B/YYYY` dates: the
/// field above 12 is the day; without one, the order under which the times
/// step back least often (a wrong order jumps between months); a tie reads
/// month first, as US spreadsheets write. Dotted dates are day first.
fn numeric_date_order(values: impl Iterator<Item = String>) -> TimeFormat {
    let (mut day_first, mut month_first) = (false, false);
    let mut kept = Vec::new();
    for v in values {
        if let Some(d) = numeric_date_fields(&v) {
            day_first |= d.a > 12 || d.sep == b'.';
            month_first |= d.b > 12;
            kept.push(v);
        }
    }
    if day_first != month_first {
        return if day_first {
            TimeFormat::DayMonthYear
        } else {
            TimeFormat::MonthDayYear
        };
    }
    let back_steps = |month_first: bool| {
        let ts: Vec<i64> = kept
            .iter()
            .filter_map(|v| parse_numeric_date(v, month_first))
            .collect();
        ts.windows(2).filter(|w| w[1] < w[0]).count()
    };
    if back_steps(false) < back_steps(true) {
        TimeFormat::DayMonthYear
    } else {
        TimeFormat::MonthDayYear
    }
}

/// Parses `M/D/YYYY` (`month_first`) or `D/M/YYYY` (`/` or `.`), then
/// optionally a space and `H:MM[:SS[.fff]]` with an optional `AM`/`PM`.
fn parse_numeric_date(text: &str, month_first: bool) -> Option<i64> {
    let date = numeric_date_fields(text)?;
    let (m, d) = if month_first {
        (date.a, date.b)
    } else {
        (date.b, date.a)
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(date.year, m, d) * 86_400_000;
    // A `T` or spaces, then the clock time.
    let clock = text[date.len..].trim_start_matches('T').trim();
    if clock.is_empty() {
        return Some(day);
    }
    Some(day + parse_clock(clock)?)
}

/// `H:MM[:SS[.fff]]` with an optional ` AM`/` PM` (12-hour clock), as
/// milliseconds from midnight. No allocation: it runs once a row.
fn parse_clock(text: &str) -> Option<i64> {
    let strip = |suffix: &str| {
        let n = text.len().checked_sub(suffix.len())?;
        (text.is_char_boundary(n) && text[n..].eq_ignore_ascii_case(suffix))
            .then(|| text[..n].trim_end())
    };
    let (clock, pm) = match strip("AM").or_else(|| strip("A.M.")) {
        Some(c) => (c, Some(false)),
        None => match strip("PM").or_else(|| strip("P.M.")) {
            Some(c) => (c, Some(true)),
            None => (text, None),
        },
    };
    let ms = parse_time_of_day(clock)?;
    let hour = ms / 3_600_000;
    match pm {
        None => Some(ms),
        Some(_) if !(1..=12).contains(&hour) => None,
        Some(pm) => {
            let h12 = if hour == 12 { 0 } else { hour };
            Some(ms + (h12 - hour + if pm { 12 } else { 0 }) * 3_600_000)
        }
    }
}

/// A date alone (`2024-01-31`, `2024/01/31`, `1/31/2024`, `31.01.2024`).
fn is_date(text: &str) -> bool {
    (text.len() == 10 && parse_iso8601(text).is_some())
        || numeric_date_fields(text).is_some_and(|d| d.len == text.len())
}

/// A time of day alone (`13:05`, `1:05:30 PM`): not a number, not a date.
fn is_clock(text: &str) -> bool {
    text.parse::<f64>().is_err() && parse_iso8601(text).is_none() && parse_clock(text).is_some()
}

/// A time of day, `HH:MM[:SS[.fff]][Z|±HH[:MM]]`, as milliseconds from
/// midnight (negative or past a day with an offset).
pub(crate) fn parse_time_of_day(text: &str) -> Option<i64> {
    const EPOCH_DAY: &[u8] = b"1970-01-01T";
    let b = text.as_bytes();
    // A one-digit hour (`9:05`) gets its leading zero; the rest is ISO's.
    let pad = usize::from(b.get(1) == Some(&b':'));
    let mut buf = [b'0'; 64];
    let n = EPOCH_DAY.len() + pad + b.len();
    if n > buf.len() {
        return None;
    }
    buf[..EPOCH_DAY.len()].copy_from_slice(EPOCH_DAY);
    buf[EPOCH_DAY.len() + pad..n].copy_from_slice(b);
    parse_iso8601(std::str::from_utf8(&buf[..n]).ok()?)
}

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH[:MM]]` to epoch milliseconds.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    // `2024-01-31`, or `2024/01/31` as some exporters write it.
    if b.len() < 10 || !matches!(b[4], b'-' | b'/') || b[7] != b[4] {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let mut rest = &b[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    if rest[0] != b'T' && rest[0] != b't' && rest[0] != b' ' {
        return None;
    }
    rest = &rest[1..];
    if rest.len() < 5 || rest[2] != b':' {
        return None;
    }
    let (h, mi) = (num(&rest[0..2])?, num(&rest[3..5])?);
    if h > 23 || mi > 59 {
        return None;
    }
    ms += (h * 3600 + mi * 60) * 1000;
    rest = &rest[5..];
    if rest.first() == Some(&b':') {
        if rest.len() < 3 {
            return None;
        }
        let s = num(&rest[1..3])?;
        if s > 60 {
            return None;
        }
        ms += s * 1000;
        rest = &rest[3..];
        if matches!(rest.first(), Some(b'.') | Some(b',')) {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let frac = &rest[1..1 + digits];
            let mut v = 0i64;
            for (i, c) in frac.iter().take(3).enumerate() {
                v += i64::from(c - b'0') * 10i64.pow(2 - i as u32);
            }
            ms += v;
            rest = &rest[1 + digits..];
        }
    }
    match rest {
        [] | [b'Z'] | [b'z'] => Some(ms),
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (oh, om) = match tz.len() {
                2 => (num(tz)?, 0),
                4 => (num(&tz[0..2])?, num(&tz[2..4])?),
                5 if tz[2] == b':' => (num(&tz[0..2])?, num(&tz[3..5])?),
                _ => return None,
            };
            let off = (oh * 60 + om) * 60_000;
            Some(if *sign == b'+' { ms - off } else { ms + off })
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, opts: &WideCsvOptions) -> Result<WideTable, WideCsvError> {
        WideTable::read(text.as_bytes(), opts)
    }

    #[test]
    fn iso_8601_variants_parse_to_the_same_instant() {
        let want = 1_767_225_600_000 + 3_723_000; // 2026-01-01T01:02:03Z
        for s in [
            "2026-01-01T01:02:03Z",
            "2026-01-01 01:02:03",
            "2026-01-01T02:02:03+01:00",
            "2026-01-01T00:02:03-0100",
        ] {
            assert_eq!(parse_iso8601(s), Some(want), "{s}");
        }
        assert_eq!(parse_iso8601("2026-01-01T01:02:03.250Z"), Some(want + 250));
        assert_eq!(parse_iso8601("2026-01-01"), Some(1_767_225_600_000));
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-01-01T25:00",
            "2026-01-01T01:02:03+1",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn semicolon_files_with_epoch_seconds_and_an_asset_column_are_detected() {
        let t = read(
            "asset;ts;temp;note\na1;1767225600;70.5;x\na2;1767225660;71,0;y\n",
            &WideCsvOptions::default(),
        )
        .unwrap();
        assert_eq!(t.layout.delimiter, b';');
        assert_eq!(t.layout.time_format, Some(TimeFormat::EpochSeconds));
        assert_eq!(t.layout.sensor_names(), vec!["temp"]);
        assert_eq!(t.asset_names, vec!["a1", "a2"]);
        assert_eq!(t.ts_ms, vec![1_767_225_600_000, 1_767_225_660_000]);
        assert_eq!(
            t.values,
            vec![70.5, 71.0],
            "a decimal comma reads as a point"
        );
        assert_eq!(t.counts.missing_values, 0);
    }

    #[test]
    fn spreadsheet_exports_with_decimal_commas_are_numbers_but_thousands_separators_are_not_guessed(
    ) {
        let t = read(
            "\u{feff}timestamp;value;flow\r\n\
             2024-01-01T00:00:00Z;1,5;-0,25\r\n\
             2024-01-01T00:01:00Z;2;1.234,5\r\n\
             2024-01-01T00:02:00Z;1,2,3;3e-1\r\n",
            &WideCsvOptions::default(),
        )
        .unwrap();
        assert_eq!(t.layout.sensor_names(), vec!["value", "flow"]);
        let v = &t.values;
        assert_eq!((v[0], v[1], v[2], v[5]), (1.5, -0.25, 2.0, 0.3));
        assert!(v[3].is_nan() && v[4].is_nan(), "ambiguous: {v:?}");
        assert_eq!(t.counts.missing_values, 2);
        // With `,` separating fields a comma never reaches a value.
        assert_eq!(parse_value("1,5", b','), None);
    }

    #[test]
    fn time_columns_are_found_by_name_or_by_their_iso_8601_values() {
        let opts = WideCsvOptions::default();
        let t = read("Date,temp\n2024-01-31,1\n2024-02-01,2\n", &opts).unwrap();
        assert_eq!(t.layout.time_name(), "Date");
        assert_eq!(t.ts_ms[1] - t.ts_ms[0], 86_400_000);
        let t = read(
            "site,Time (UTC),temp,runtime\nA,2024/01/31 12:00:00,1,5\nA,2024/01/31 12:01:00,2,6\n",
            &opts,
        )
        .unwrap();
        assert_eq!(t.layout.time_name(), "Time (UTC)");
        assert_eq!(t.layout.sensor_names(), vec!["temp", "runtime"]);
        assert_eq!(t.ts_ms[0], parse_iso8601("2024-01-31T12:00:00Z").unwrap());
        assert_eq!(t.ts_ms[1] - t.ts_ms[0], 60_000);
        // Numbers alone do not say which column is the time.
        let err = read("t,temp\n1700000000,1\n", &opts).unwrap_err();
        assert!(matches!(err, WideCsvError::NoTimeColumn { .. }), "{err}");
        assert!(parse_iso8601("2024/01-31").is_none(), "mixed separators");
    }

    #[test]
    fn a_column_of_times_of_day_takes_its_dates_from_the_date_column() {
        let t = read(
            "Date;Time;Temp\n2024-01-31;23:59:30;1,5\n2024-02-01;00:00:30;2\n2024-02-01;x;3\n",
            &WideCsvOptions::default(),
        )
        .unwrap();
        assert_eq!(t.layout.time_name(), "Time");
        assert_eq!(t.layout.date_col, Some(0));
        assert_eq!(t.layout.sensor_names(), vec!["Temp"]);
        let midnight = parse_iso8601("2024-02-01").unwrap();
        assert_eq!(t.ts_ms, vec![midnight - 30_000, midnight + 30_000]);
        assert_eq!(
            t.counts.bad_time, 1,
            "an unreadable time of day is rejected"
        );
        assert_eq!(parse_time_of_day("01:30+01:00"), Some(30 * 60_000));
        assert_eq!(parse_time_of_day("2024-01-31"), None);
        // A time column of full date-times needs no date column.
        let t = read(
            "day,time,v\n2024-01-31,2024-01-31T10:00:00Z,1\n",
            &WideCsvOptions::default(),
        )
        .unwrap();
        assert_eq!(t.layout.date_col, None);
    }

    #[test]
    fn spreadsheet_dates_are_read_day_or_month_first_as_the_column_shows() {
        let opts = WideCsvOptions::default();
        let at = |t: &str| parse_iso8601(t).unwrap();
        // US: the second field passes 12, a 12-hour clock.
        let t = read("time,v\n1/31/2024 1:05 PM,1\n2/1/2024 12:00 AM,2\n", &opts).unwrap();
        assert_eq!(t.layout.time_format, Some(TimeFormat::MonthDayYear));
        assert_eq!(
            t.ts_ms,
            vec![at("2024-01-31T13:05"), at("2024-02-01T00:00")]
        );
        // Day first: the first field passes 12.
        let t = read("time,v\n31/01/2024 13:05,1\n01/02/2024 00:00:30,2\n", &opts).unwrap();
        assert_eq!(t.layout.time_format, Some(TimeFormat::DayMonthYear));
        assert_eq!(
            t.ts_ms,
            vec![at("2024-01-31T13:05"), at("2024-02-01T00:00:30")]
        );
        // Nothing tells them apart: month first, as US spreadsheets write.
        let t = read("time,v\n01/02/2024,1\n01/03/2024,2\n", &opts).unwrap();
        assert_eq!(t.layout.time_format, Some(TimeFormat::MonthDayYear));
        // Unless the user says otherwise.
        let day_first = WideCsvOptions {
            time_format: TimeFormat::parse("d/m/y"),
            ..WideCsvOptions::default()
        };
        let t = read("time,v\n01/02/2024,1\n01/03/2024,2\n", &day_first).unwrap();
        assert_eq!(t.ts_ms[0], at("2024-02-01"));
        let t = read("Date,Time,v\n01/02/2024,10:00,1\n", &day_first).unwrap();
        assert_eq!(t.ts_ms[0], at("2024-02-01T10:00"));
        for f in TimeFormat::ALL {
            assert_eq!(TimeFormat::parse(f.name()), Some(f));
        }
        // German exports: dotted dates and times of day in two columns,
        // decimal commas, no usual column names.
        let t = read(
            "Datum;Zeit;Wert\n31.01.2024;23:59;1,5\n01.02.2024;00:01;2\n",
            &opts,
        )
        .unwrap();
        assert_eq!((t.layout.time_name(), t.layout.date_col), ("Zeit", Some(0)));
        assert_eq!(t.layout.sensor_names(), vec!["Wert"]);
        assert_eq!(
            t.ts_ms,
            vec![at("2024-01-31T23:59"), at("2024-02-01T00:01")]
        );
        // US dates beside a 12-hour clock column.
        let t = read(
            "Date,Time,v\n1/31/2024,11:59 PM,1\n2/1/2024,12:01 AM,2\n",
            &opts,
        )
        .unwrap();
        assert_eq!(t.layout.date_format, Some(TimeFormat::MonthDayYear));
        assert_eq!(
            t.ts_ms,
            vec![at("2024-01-31T23:59"), at("2024-02-01T00:01")]
        );
        assert_eq!(
            parse_clock("13:05 PM"),
            None,
            "no 13 o'clock on a 12-hour clock"
        );
        assert_eq!(parse_clock("9:05"), Some(9 * 3_600_000 + 5 * 60_000));
        assert_eq!(parse_clock("12:00:30 am"), Some(30_000));
        assert_eq!(
            parse_numeric_date("12.05.2024", false),
            Some(at("2024-05-12"))
        );
        assert_eq!(parse_numeric_date("13/13/2024", true), None);
    }

    #[test]
    fn a_header_without_rows_is_named_as_such() {
        let err = read("ts,temp\n", &WideCsvOptions::default()).unwrap_err();
        assert!(matches!(err, WideCsvError::NoRows { .. }), "{err}");
        let err = read("Zeit,temp\n\n", &WideCsvOptions::default()).unwrap_err();
        assert!(matches!(err, WideCsvError::NoRows { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the CSV has a header (Zeit,temp) but no data rows"
        );
    }

    #[test]
    fn bad_rows_are_counted_not_fatal() {
        let text =
            "timestamp,a,b\n1767225600000,1,2\n1767225660000,1\nnot-a-time,1,2\n1767225720000,,3\n";
        let t = read(text, &WideCsvOptions::default()).unwrap();
        assert_eq!(t.n_rows(), 2);
        assert_eq!(
            (
                t.counts.field_count,
                t.counts.bad_time,
                t.counts.missing_values
            ),
            (1, 1, 1)
        );
    }

    /// Fields as text, split the way every reader here splits them.
    fn fields(line: &str, delim: u8) -> Vec<String> {
        let (mut spans, mut unq) = (Vec::new(), Vec::new());
        split_fields(line, delim, &mut spans, &mut unq);
        assert_eq!(spans.len(), unq.len());
        spans
            .iter()
            .zip(&unq)
            .map(|(&(a, b), u)| u.clone().unwrap_or_else(|| line[a..b].to_string()))
            .collect()
    }

    #[test]
    fn rows_with_and_without_quotes_split_alike() {
        // Unquoted rows take the vectorised scan; empty fields and a
        // trailing delimiter count as fields on both paths.
        for (line, want) in [
            ("", vec![""]),
            ("a", vec!["a"]),
            ("a,,b,", vec!["a", "", "b", ""]),
            (",x", vec!["", "x"]),
            ("\"a\",,b,", vec!["a", "", "b", ""]),
            ("1, 2 ,\"3,4\"", vec!["1", " 2 ", "3,4"]),
        ] {
            assert_eq!(fields(line, b','), want, "{line:?}");
        }
        assert_eq!(fields("t;1,5;x", b';'), vec!["t", "1,5", "x"]);
        // Values are trimmed of white space, Unicode included, before parsing.
        for (raw, want) in [
            ("2.5", "2.5"),
            (" 2.5\t", "2.5"),
            ("\u{a0}2.5\u{2003}", "2.5"),
            ("", ""),
            ("-", "-"),
        ] {
            assert_eq!(trim(raw), want, "{raw:?}");
            assert_eq!(trim(raw), raw.trim(), "{raw:?}");
        }
    }

    #[test]
    fn named_and_excluded_columns_must_exist_and_quoted_fields_are_unescaped() {
        let text = "\"time\",\"site, name\",x,y\n2026-01-01T00:00:00Z,\"A, \"\"north\"\"\",1,2\n";
        let opts = WideCsvOptions {
            exclude: vec!["y".into()],
            ..Default::default()
        };
        let t = read(text, &opts).unwrap();
        assert_eq!(t.layout.sensor_names(), vec!["x"]);
        let mut r = WideCsvReader::new(text.as_bytes(), &WideCsvOptions::default()).unwrap();
        let mut rec = WideRecord::default();
        assert!(r.next_record(&mut rec).unwrap());
        assert_eq!(rec.field(1), "A, \"north\"");
        let err = read(
            text,
            &WideCsvOptions {
                asset_col: Some("unit".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"unit\""), "{err}");
        assert!(matches!(
            read("a,b\n1,2\n", &WideCsvOptions::default()),
            Err(WideCsvError::NoTimeColumn { .. })
        ));
    }
}
