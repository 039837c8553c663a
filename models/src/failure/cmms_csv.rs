//! Work Order history from another CMMS's CSV export (feature `train`).
//!
//! A small TOML map names the CSV columns and sorts the CMMS's work types
//! into our kinds; the result is the same [`FleetHistory`] the Salesforce
//! reader builds (failures merged within [`MERGE_GAP_MS`](super::labels::MERGE_GAP_MS)).
//!
//! ```toml
//! delimiter = ","              # optional: "," (default), ";", "\t" or "|"
//!
//! [columns]                    # CSV header names
//! asset = "Equipment"          # required: must equal the telemetry asset names
//! created = "Reported"         # required
//! type = "WO Type"             # required
//! started = "Actual Start"     # optional
//! completed = "Finished"       # optional
//! failure_code = "Failure Code"  # optional
//! status = "Status"            # optional
//! product = "Model"            # optional
//!
//! [types]                      # CMMS type values (case-insensitive) → kind
//! corrective = ["CM", "Breakdown"]   # failures; required, non-empty
//! preventive = ["PM"]
//! other = ["INSP"]
//!
//! [status]                     # optional
//! canceled = ["CANC"]          # rows with these statuses are ignored
//! ```
//!
//! Rows are classified like Salesforce Work Orders: a corrective row is a
//! failure whose mode comes from its failure code (none: unknown mode); it
//! happened at the earliest of created and started; planned work at started,
//! else created; it ended at completed, else at its start. Dates are
//! ISO 8601 / RFC 3339 or `YYYY-MM-DD[ HH:MM[:SS]]` (UTC without an offset).
//!
//! Bad configuration is an error naming the file and the key (unknown key,
//! a mapped column missing from the CSV header). Bad rows are data: they are
//! counted in [`FleetHistory::rejected`] by reason — `field_count`,
//! `missing_asset`, `unknown_type` (a type value in no `[types]` list),
//! `bad_date` (created missing or unparseable, or a started / completed value
//! that does not parse).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::labels::{mode_from_code, Event, EventKind, FleetHistory};
use crate::wide_csv::parse_iso8601;

/// A validated column and type map.
#[derive(Debug, Clone, PartialEq)]
pub struct CmmsMap {
    /// The file it was read from (for error messages).
    pub path: PathBuf,
    delimiter: u8,
    columns: Vec<(&'static str, String)>,
    kinds: BTreeMap<String, Kind>,
    canceled: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Corrective,
    Preventive,
    Other,
}

/// Why a CMMS map or CSV could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CmmsError {
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The map is not valid TOML for this schema (unknown or missing key).
    #[error("{}: {message}", path.display())]
    Toml {
        /// The map file.
        path: PathBuf,
        /// The parser's message (with the line), naming the key.
        message: String,
    },
    /// A key has a bad value.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The map file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A mapped column is not in the CSV header.
    #[error("{}: no column `{column}` in the header (columns.{key} in {})", csv.display(), map.display())]
    MissingColumn {
        /// The CSV file.
        csv: PathBuf,
        /// The map file.
        map: PathBuf,
        /// The map key.
        key: &'static str,
        /// The column name it gives.
        column: String,
    },
    /// The CSV has no header row.
    #[error("{}: empty file, no header row", path.display())]
    Empty {
        /// The CSV file.
        path: PathBuf,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    delimiter: Option<String>,
    columns: RawColumns,
    types: RawTypes,
    #[serde(default)]
    status: RawStatus,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumns {
    asset: String,
    created: String,
    #[serde(rename = "type")]
    work_type: String,
    started: Option<String>,
    completed: Option<String>,
    failure_code: Option<String>,
    status: Option<String>,
    product: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypes {
    #[serde(default)]
    corrective: Vec<String>,
    #[serde(default)]
    preventive: Vec<String>,
    #[serde(default)]
    other: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    #[serde(default)]
    canceled: Vec<String>,
}

fn norm(value: &str) -> String {
    value.trim().to_lowercase()
}

impl CmmsMap {
    /// Reads and validates a map file.
    ///
    /// # Errors
    /// Unreadable file, TOML or schema errors, bad values (each naming the
    /// file and the key).
    pub fn load(path: &Path) -> Result<Self, CmmsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CmmsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates map text read from `path`.
    ///
    /// # Errors
    /// As [`CmmsMap::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, CmmsError> {
        let raw: RawMap = toml::from_str(text).map_err(|e| CmmsError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &str, message: String| CmmsError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let delimiter = match raw.delimiter.as_deref() {
            None | Some(",") => b',',
            Some(";") => b';',
            Some("\t") => b'\t',
            Some("|") => b'|',
            Some(other) => {
                return Err(invalid(
                    "delimiter",
                    format!("`{other}` is not one of \",\", \";\", \"\\t\", \"|\""),
                ))
            }
        };
        let c = raw.columns;
        let mut columns = vec![
            ("asset", c.asset),
            ("created", c.created),
            ("type", c.work_type),
        ];
        for (key, col) in [
            ("started", c.started),
            ("completed", c.completed),
            ("failure_code", c.failure_code),
            ("status", c.status),
            ("product", c.product),
        ] {
            if let Some(col) = col {
                columns.push((key, col));
            }
        }
        for (key, col) in &columns {
            if col.trim().is_empty() {
                return Err(invalid(&format!("columns.{key}"), "is empty".into()));
            }
        }
        if raw.types.corrective.is_empty() {
            return Err(invalid(
                "types.corrective",
                "must list at least one type value (the failures)".into(),
            ));
        }
        let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
        for (key, values, kind) in [
            ("corrective", &raw.types.corrective, Kind::Corrective),
            ("preventive", &raw.types.preventive, Kind::Preventive),
            ("other", &raw.types.other, Kind::Other),
        ] {
            for value in values {
                if let Some(prev) = kinds.insert(norm(value), kind) {
                    if prev != kind {
                        return Err(invalid(
                            &format!("types.{key}"),
                            format!("`{value}` is listed under two kinds"),
                        ));
                    }
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            delimiter,
            columns,
            kinds,
            canceled: raw.status.canceled.iter().map(|s| norm(s)).collect(),
        })
    }
}

impl FleetHistory {
    /// Reads a CMMS CSV export with `map` (module docs).
    ///
    /// # Errors
    /// Unreadable file, no header, or a mapped column missing from the
    /// header. Bad rows are counted in [`FleetHistory::rejected`].
    pub fn from_cmms_csv(path: &Path, map: &CmmsMap) -> Result<Self, CmmsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CmmsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_cmms_text(&text, path, map)
    }

    /// As [`FleetHistory::from_cmms_csv`] on text already read from `path`.
    ///
    /// # Errors
    /// As [`FleetHistory::from_cmms_csv`].
    pub fn from_cmms_text(text: &str, path: &Path, map: &CmmsMap) -> Result<Self, CmmsError> {
        let mut records = parse_csv(text, map.delimiter).into_iter();
        let header = records.next().ok_or_else(|| CmmsError::Empty {
            path: path.to_path_buf(),
        })?;
        let mut index: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (key, column) in &map.columns {
            let pos = header
                .iter()
                .position(|h| h.trim() == column.trim())
                .ok_or_else(|| CmmsError::MissingColumn {
                    csv: path.to_path_buf(),
                    map: map.path.clone(),
                    key,
                    column: column.clone(),
                })?;
            index.insert(*key, pos);
        }
        let mut out = FleetHistory::default();
        let mut raw: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        let reject = |out: &mut FleetHistory, reason: &str| {
            *out.rejected.entry(reason.to_string()).or_default() += 1;
        };
        for rec in records {
            out.n_work_orders += 1;
            if rec.len() != header.len() {
                reject(&mut out, "field_count");
                continue;
            }
            let cell = |key: &str| {
                index
                    .get(key)
                    .map(|&i| rec[i].trim())
                    .filter(|v| !v.is_empty())
            };
            let Some(asset) = cell("asset") else {
                reject(&mut out, "missing_asset");
                continue;
            };
            let Some(kind) = cell("type").and_then(|t| map.kinds.get(&norm(t)).copied()) else {
                reject(&mut out, "unknown_type");
                continue;
            };
            // An optional date column: absent or empty is fine, garbage is not.
            let optional = |key: &str| match cell(key) {
                None => Ok(None),
                Some(v) => parse_iso8601(v).map(Some).ok_or(()),
            };
            let (Some(created), Ok(started), Ok(completed)) = (
                cell("created").and_then(parse_iso8601),
                optional("started"),
                optional("completed"),
            ) else {
                reject(&mut out, "bad_date");
                continue;
            };
            let entry = out.assets.entry(asset.to_string()).or_default();
            if entry.product.is_none() {
                entry.product = cell("product").map(str::to_string);
            }
            if cell("status").is_some_and(|s| map.canceled.contains(&norm(s))) {
                out.n_ignored += 1;
                continue;
            }
            let kind = match kind {
                Kind::Corrective => EventKind::Failure(cell("failure_code").map(mode_from_code)),
                Kind::Preventive => EventKind::Preventive,
                Kind::Other => EventKind::Other,
            };
            // A breakdown is known from the moment it is reported; planned
            // work happens when it starts (it is often created weeks ahead).
            let start_ms = match (&kind, started) {
                (EventKind::Failure(_), Some(s)) => created.min(s),
                (_, s) => s.unwrap_or(created),
            };
            let end_ms = completed.unwrap_or(start_ms);
            raw.entry(asset.to_string())
                .or_default()
                .push(Event::new(start_ms, end_ms, kind));
        }
        out.add_events(raw);
        Ok(out)
    }
}

/// Splits CSV text into records: `"` quotes (with `""` inside), quoted
/// fields may hold the delimiter and line breaks, `\r\n` or `\n` ends a
/// record, blank lines are skipped, a leading UTF-8 BOM is dropped.
pub(crate) fn parse_csv(text: &str, delimiter: u8) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let delimiter = char::from(delimiter);
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut end_record = |record: &mut Vec<String>, field: &mut String| {
        record.push(std::mem::take(field));
        let rec = std::mem::take(record);
        if !(rec.len() == 1 && rec[0].trim().is_empty()) {
            records.push(rec);
        }
    };
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c == delimiter {
            record.push(std::mem::take(&mut field));
        } else if c == '\n' {
            end_record(&mut record, &mut field);
        } else if c == '\r' {
            if chars.peek() != Some(&'\n') {
                field.push(c);
            }
        } else {
            field.push(c);
        }
    }
    if !field.is_empty() || !record.is_empty() {
        end_record(&mut record, &mut field);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::labels::{parse_sf_datetime, DAY_MS};

    const MAP: &str = r#"
[columns]
asset = "Equipment"
created = "Reported"
type = "WO Type"
started = "Actual Start"
completed = "Finished"
failure_code = "Failure Code"
status = "Status"
product = "Model"

[types]
corrective = ["CM", "Breakdown"]
preventive = ["PM"]
other = ["INSP"]

[status]
canceled = ["CANC"]
"#;

    fn map() -> CmmsMap {
        CmmsMap::parse(MAP, Path::new("map.toml")).expect("map")
    }

    fn read(csv: &str) -> FleetHistory {
        FleetHistory::from_cmms_text(csv, Path::new("wo.csv"), &map()).expect("history")
    }

    #[test]
    fn a_cmms_export_reads_into_failures_and_preventive_visits() {
        let csv = "Equipment,Reported,Actual Start,Finished,WO Type,Failure Code,Status,Model\n\
            pump-1,2026-02-01 10:00,2026-02-01 12:00,2026-02-02 09:00,CM,BRG,Done,P-200\n\
            pump-1,2026-02-01T20:00:00Z,,2026-02-02T10:00:00Z,breakdown,,Done,P-200\n\
            pump-1,2026-01-01,2026-01-15 08:00:00,2026-01-15 10:00,PM,,Done,P-200\n\
            pump-1,2026-03-01,,,INSP,,Done,P-200\n\
            pump-1,2026-03-05,,,CM,ELEC,CANC,P-200\n\
            \"pump-2\",\"2026-04-01T08:00:00+02:00\",,,CM,\"FOUL\",Done,\"P-300, rev B\"\n";
        let h = read(csv);
        let p1 = &h.assets["pump-1"];
        assert_eq!(p1.product.as_deref(), Some("P-200"));
        assert_eq!(p1.failures.len(), 1, "the second dispatch merges");
        assert_eq!(h.n_merged, 1);
        assert_eq!(
            p1.failures[0].kind,
            EventKind::Failure(Some("bearing".into()))
        );
        assert_eq!(
            p1.failures[0].start_ms,
            parse_sf_datetime("2026-02-01T10:00:00Z").expect("date")
        );
        assert_eq!(
            p1.preventive[0].start_ms,
            parse_sf_datetime("2026-01-15T08:00:00Z").expect("date"),
            "planned work counts from its start"
        );
        assert_eq!(h.n_ignored, 1, "canceled");
        let p2 = &h.assets["pump-2"];
        assert_eq!(
            p2.failures[0].start_ms,
            parse_sf_datetime("2026-04-01T06:00:00Z").expect("date")
        );
        assert_eq!(p2.product.as_deref(), Some("P-300, rev B"));
        assert_eq!(h.n_work_orders, 6);
        assert!(h.rejected.is_empty(), "{:?}", h.rejected);
    }

    #[test]
    fn bad_rows_are_counted_by_reason_and_the_rest_is_read() {
        let csv = "Equipment,Reported,Actual Start,Finished,WO Type,Failure Code,Status,Model\n\
            pump-1,yesterday,,,CM,BRG,Done,\n\
            pump-1,2026-02-01,31/02/2026,,CM,BRG,Done,\n\
            pump-1,2026-02-01,,,Emergency,BRG,Done,\n\
            ,2026-02-01,,,CM,BRG,Done,\n\
            pump-1,2026-02-01,,,CM\n\
            pump-1,2026-02-10,,,CM,,Done,\n";
        let h = read(csv);
        let counts: Vec<(&str, usize)> = h.rejected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counts,
            vec![
                ("bad_date", 2),
                ("field_count", 1),
                ("missing_asset", 1),
                ("unknown_type", 1)
            ]
        );
        assert_eq!(h.assets["pump-1"].failures.len(), 1);
        assert_eq!(
            h.assets["pump-1"].failures[0].kind,
            EventKind::Failure(None)
        );
        assert_eq!(h.n_unknown_mode, 1);
        let day = parse_sf_datetime("2026-02-10").expect("date");
        assert_eq!(
            h.assets["pump-1"].failures[0].start_ms / DAY_MS,
            day / DAY_MS
        );
    }

    #[test]
    fn a_mapped_column_missing_from_the_header_names_the_key_and_both_files() {
        let err = FleetHistory::from_cmms_text(
            "Equipment,Reported,WO Type\npump-1,2026-01-01,CM\n",
            Path::new("wo.csv"),
            &map(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("wo.csv"), "{err}");
        assert!(err.contains("Actual Start"), "{err}");
        assert!(err.contains("columns.started in map.toml"), "{err}");
    }

    #[test]
    fn bad_maps_name_the_file_and_the_key() {
        let unknown = MAP.replace("product = \"Model\"", "prodcut = \"Model\"");
        let err = CmmsMap::parse(&unknown, Path::new("map.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("map.toml: "), "{err}");
        assert!(err.contains("prodcut"), "{err}");
        let missing = MAP.replace("created = \"Reported\"\n", "");
        let err = CmmsMap::parse(&missing, Path::new("map.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("created"), "{err}");
        let twice = MAP.replace("other = [\"INSP\"]", "other = [\"pm\"]");
        let err = CmmsMap::parse(&twice, Path::new("map.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "map.toml: types.other: `pm` is listed under two kinds");
        let no_failures = MAP.replace("corrective = [\"CM\", \"Breakdown\"]", "");
        let err = CmmsMap::parse(&no_failures, Path::new("map.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("map.toml: types.corrective: "), "{err}");
    }

    #[test]
    fn csv_records_keep_quoted_delimiters_and_line_breaks() {
        let recs = parse_csv("a;b\r\n\"x;1\";\"two\nlines \"\"q\"\"\"\r\n\r\nz;\n", b';');
        assert_eq!(
            recs,
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["x;1".into(), "two\nlines \"q\"".into()],
                vec!["z".into(), String::new()],
            ]
        );
    }
}
