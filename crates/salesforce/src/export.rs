//! Incremental, resumable export of one object into a JSON Lines file, by
//! `SystemModstamp` watermark (reference §5.14), through paged SOQL or a
//! Bulk 2.0 query job for large pulls.
//!
//! # On-disk layout (`dir/`)
//! - `<file>.jsonl`: one flattened record per line (`attributes` dropped,
//!   parent fields as dotted keys such as `"WorkType.Name"`). Appended page by
//!   page during a run and compacted at its end to the last line per `Id`.
//! - `sync-state.json`: per object, the watermark (UTC second) and the ids
//!   already written at that second. Written atomically (tmp + fsync +
//!   rename) after every appended page, so an interrupted run resumes where
//!   it stopped; rows appended after the last state write are pulled again
//!   and removed as duplicates by compaction.
//!
//! The next run asks for `SystemModstamp >= watermark` and skips the ids
//! recorded at that second, so equal timestamps never lose or double a row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::bulk::BulkOptions;
use crate::client::SalesforceClient;
use crate::error::SfError;
use crate::query::QueryOptions;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// Object API name, e.g. `WorkOrder`.
    pub object: String,
    /// SELECT list; `Id` and `SystemModstamp` are added if missing.
    pub fields: Vec<String>,
    /// File stem under the export directory, e.g. `work_orders`.
    pub file_stem: String,
    /// Read through `queryAll` so deletions arrive as rows with `IsDeleted = true`
    /// (while they sit in the recycle bin); `IsDeleted` is then selected too.
    pub include_deleted: bool,
}

/// How to pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportMode {
    /// Bulk 2.0 above `bulk_threshold` rows, SOQL paging below.
    Auto,
    /// Paged REST query.
    Soql,
    /// Bulk API 2.0 query job.
    Bulk,
}

/// Per-object sync state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ObjectState {
    /// Highest `SystemModstamp` written, truncated to the second (`2026-11-23T00:00:00Z`).
    pub watermark: Option<String>,
    /// Ids written whose stamp falls in the watermark second.
    pub ids_at_watermark: Vec<String>,
    /// Rows written by all runs (before compaction).
    pub rows_written: u64,
}

/// The whole state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportState {
    /// State by object name.
    pub objects: BTreeMap<String, ObjectState>,
}

/// What one export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Object.
    pub object: String,
    /// Mode actually used.
    pub mode: ExportMode,
    /// New or changed rows written this run.
    pub rows: u64,
    /// Rows in the file after compaction.
    pub rows_in_store: u64,
    /// Watermark after the run.
    pub watermark: Option<String>,
    /// The output file.
    pub file: PathBuf,
}

/// Export failures.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Salesforce refused or was unreachable.
    #[error("exporting {object}")]
    Salesforce {
        /// Object.
        object: String,
        /// Cause.
        #[source]
        source: SfError,
    },
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file is corrupt.
    #[error("{path}: {reason}")]
    State {
        /// Path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

const STATE_FILE: &str = "sync-state.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads `dir/sync-state.json` (empty state if absent).
///
/// # Errors
/// Unreadable or corrupt state file.
pub fn load_state(dir: &Path) -> Result<ExportState, ExportError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| ExportError::State {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportState::default()),
        Err(source) => Err(ExportError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn save_state(dir: &Path, state: &ExportState) -> Result<(), ExportError> {
    let text = serde_json::to_vec_pretty(state).map_err(|e| ExportError::State {
        path: STATE_FILE.into(),
        reason: e.to_string(),
    })?;
    write_atomically(&dir.join(STATE_FILE), &text)
}

/// `2026-05-01T17:50:19.000+0000` / `...Z` → `2026-05-01T17:50:19Z` (UTC second).
fn stamp_second(stamp: &str) -> Option<String> {
    (stamp.len() >= 19 && stamp.as_bytes()[10] == b'T').then(|| format!("{}Z", &stamp[..19]))
}

/// A query record with nested relationship objects flattened to dotted keys
/// (`{"WorkType": {"Name": "x"}}` → `"WorkType.Name": "x"`), `attributes` dropped.
pub fn flatten_record(record: &Json) -> Map<String, Json> {
    let mut out = Map::new();
    flatten("", record, &mut out);
    out
}

fn flatten(prefix: &str, value: &Json, out: &mut Map<String, Json>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                if k == "attributes" {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    Json::Object(_) => flatten(&key, v, out),
                    other => {
                        out.insert(key, other.clone());
                    }
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

struct Writer<'a> {
    dir: &'a Path,
    file: PathBuf,
    state: ExportState,
    object: String,
    skip: HashSet<String>,
    old_watermark: Option<String>,
    rows: u64,
    pending: Vec<Map<String, Json>>,
}

impl Writer<'_> {
    fn accept(&mut self, record: Map<String, Json>) {
        let id = record.get("Id").and_then(Json::as_str).unwrap_or_default();
        let second = record
            .get("SystemModstamp")
            .and_then(Json::as_str)
            .and_then(stamp_second);
        if second.is_some() && second == self.old_watermark && self.skip.contains(id) {
            return;
        }
        self.pending.push(record);
    }

    /// Appends pending rows, fsyncs, then advances the watermark atomically.
    fn flush(&mut self) -> Result<(), ExportError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for record in &self.pending {
            text.push_str(&Json::Object(record.clone()).to_string());
            text.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(io_err(&self.file))?;
        file.write_all(text.as_bytes())
            .map_err(io_err(&self.file))?;
        file.sync_all().map_err(io_err(&self.file))?;
        let entry = self.state.objects.entry(self.object.clone()).or_default();
        for record in self.pending.drain(..) {
            let id = record
                .get("Id")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(second) = record
                .get("SystemModstamp")
                .and_then(Json::as_str)
                .and_then(stamp_second)
            {
                match entry.watermark.as_deref().map(|w| second.as_str().cmp(w)) {
                    None | Some(std::cmp::Ordering::Greater) => {
                        entry.watermark = Some(second);
                        entry.ids_at_watermark = vec![id];
                    }
                    Some(std::cmp::Ordering::Equal) => entry.ids_at_watermark.push(id),
                    Some(std::cmp::Ordering::Less) => {}
                }
            }
            entry.rows_written += 1;
            self.rows += 1;
        }
        save_state(self.dir, &self.state)
    }
}

/// Rewrites the file keeping the last line per `Id`; returns the row count.
fn compact(file: &Path) -> Result<u64, ExportError> {
    let Ok(handle) = std::fs::File::open(file) else {
        return Ok(0);
    };
    let mut order: Vec<String> = Vec::new();
    let mut latest: HashMap<String, String> = HashMap::new();
    for line in std::io::BufReader::new(handle).lines() {
        let line = line.map_err(io_err(file))?;
        let id = serde_json::from_str::<Json>(&line)
            .ok()
            .and_then(|v| v.get("Id").and_then(Json::as_str).map(str::to_string))
            .unwrap_or_default();
        if latest.insert(id.clone(), line).is_none() {
            order.push(id);
        }
    }
    let mut text = String::new();
    for id in &order {
        text.push_str(&latest[id]);
        text.push('\n');
    }
    write_atomically(file, text.as_bytes())?;
    Ok(order.len() as u64)
}

impl SalesforceClient {
    /// Exports rows of `spec.object` changed since the stored watermark (or
    /// `since`, an RFC 3339 UTC time, when given) into `dir`. `progress` is
    /// called with the running row count after each page.
    ///
    /// # Errors
    /// Salesforce, IO or state-file failures; everything written before the
    /// failure stays committed and the next run resumes after it.
    pub async fn export_incremental(
        &self,
        dir: &Path,
        spec: &ExportSpec,
        mode: ExportMode,
        bulk_threshold: u64,
        since: Option<&str>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<ExportReport, ExportError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let sf = |source| ExportError::Salesforce {
            object: spec.object.clone(),
            source,
        };
        let state = load_state(dir)?;
        let previous = state.objects.get(&spec.object).cloned().unwrap_or_default();
        let watermark = match since {
            Some(s) => stamp_second(s),
            None => previous.watermark.clone(),
        };
        let mut fields = spec.fields.clone();
        let required: &[&str] = if spec.include_deleted {
            &["IsDeleted", "SystemModstamp", "Id"]
        } else {
            &["SystemModstamp", "Id"]
        };
        for required in required {
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(required)) {
                fields.insert(0, required.to_string());
            }
        }
        let filter = watermark
            .as_ref()
            .map(|w| format!(" WHERE SystemModstamp >= {w}"))
            .unwrap_or_default();
        let mode = match mode {
            ExportMode::Auto => {
                let n = self
                    .count(&format!("SELECT COUNT() FROM {}{filter}", spec.object))
                    .await
                    .map_err(sf)?;
                if n > bulk_threshold {
                    ExportMode::Bulk
                } else {
                    ExportMode::Soql
                }
            }
            other => other,
        };
        let file = dir.join(format!("{}.jsonl", spec.file_stem));
        let mut writer = Writer {
            dir,
            file: file.clone(),
            state,
            object: spec.object.clone(),
            skip: if since.is_none() {
                previous.ids_at_watermark.iter().cloned().collect()
            } else {
                HashSet::new()
            },
            old_watermark: watermark.clone(),
            rows: 0,
            pending: Vec::new(),
        };
        let select = fields.join(", ");
        match mode {
            ExportMode::Soql | ExportMode::Auto => {
                let soql = format!(
                    "SELECT {select} FROM {}{filter} ORDER BY SystemModstamp, Id",
                    spec.object
                );
                let mut stream = std::pin::pin!(self.query(
                    &soql,
                    QueryOptions {
                        include_deleted: spec.include_deleted,
                        batch_size: Some(2000)
                    }
                ));
                while let Some(record) = stream.next().await {
                    let record = record.map_err(sf)?;
                    let mut flat = Map::new();
                    flatten("", &record, &mut flat);
                    for f in &fields {
                        flat.entry(f.clone()).or_insert(Json::Null);
                    }
                    writer.accept(flat);
                    if writer.pending.len() >= 2000 {
                        writer.flush()?;
                        progress(writer.rows);
                    }
                }
            }
            ExportMode::Bulk => {
                let types = self.field_types(&spec.object).await.map_err(sf)?;
                let soql = format!("SELECT {select} FROM {}{filter}", spec.object);
                let job = self
                    .bulk_query_job(
                        &soql,
                        &BulkOptions {
                            include_deleted: spec.include_deleted,
                            ..BulkOptions::default()
                        },
                    )
                    .await
                    .map_err(sf)?;
                let mut pages = std::pin::pin!(self.bulk_results(&job, 50_000));
                while let Some(page) = pages.next().await {
                    let page = page.map_err(sf)?;
                    for row in page.rows {
                        let mut flat = Map::new();
                        for (name, cell) in page.header.iter().zip(row) {
                            flat.insert(
                                name.clone(),
                                typed(types.get(name).map(String::as_str), cell),
                            );
                        }
                        writer.accept(flat);
                    }
                    writer.flush()?;
                    progress(writer.rows);
                }
                // Results are kept for days; delete the job once its rows are safe on disk.
                if let Err(err) = self.bulk_delete(&job).await {
                    tracing::warn!(%job, error = %err, "Deleting the finished bulk job failed.");
                }
            }
        }
        writer.flush()?;
        progress(writer.rows);
        let rows_in_store = compact(&file)?;
        Ok(ExportReport {
            object: spec.object.clone(),
            mode,
            rows: writer.rows,
            rows_in_store,
            watermark: writer
                .state
                .objects
                .get(&spec.object)
                .and_then(|s| s.watermark.clone()),
            file,
        })
    }

    /// Field name → describe `type` of an object.
    async fn field_types(&self, object: &str) -> Result<HashMap<String, String>, SfError> {
        let describe = self.describe(object).await?;
        Ok(describe
            .get("fields")
            .and_then(Json::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| {
                        Some((
                            f.get("name")?.as_str()?.to_string(),
                            f.get("type")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Converts a Bulk CSV cell to the JSON type REST would return.
fn typed(kind: Option<&str>, cell: Option<String>) -> Json {
    let Some(text) = cell else { return Json::Null };
    match kind {
        Some("boolean") => Json::Bool(text == "true"),
        Some("int") => text
            .parse::<i64>()
            .map(Json::from)
            .unwrap_or(Json::String(text)),
        Some("double" | "currency" | "percent") => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .unwrap_or(Json::String(text)),
        // REST datetimes end in +0000; Bulk's in Z. Store the REST form so both modes agree.
        Some("datetime") => Json::String(
            text.strip_suffix('Z')
                .map(|t| format!("{t}+0000"))
                .unwrap_or(text),
        ),
        _ => Json::String(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_truncate_to_the_utc_second_in_both_formats() {
        assert_eq!(
            stamp_second("2026-05-01T17:50:19.000+0000").as_deref(),
            Some("2026-05-01T17:50:19Z")
        );
        assert_eq!(
            stamp_second("2026-05-01T17:50:19.123Z").as_deref(),
            Some("2026-05-01T17:50:19Z")
        );
        assert_eq!(stamp_second("garbage"), None);
    }

    #[test]
    fn nested_parent_fields_flatten_to_dotted_keys() {
        let record = serde_json::json!({"attributes": {"type": "WorkOrder"}, "Id": "0WO", "WorkType": {"attributes": {}, "Name": "Inspection"}, "Asset": null});
        let mut out = Map::new();
        flatten("", &record, &mut out);
        assert_eq!(
            Json::Object(out),
            serde_json::json!({"Id": "0WO", "WorkType.Name": "Inspection", "Asset": null})
        );
    }
}
