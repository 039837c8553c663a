//! Bulk API 2.0 query jobs (reference §2.12): create, poll, CSV results
//! paged by `maxRecords` with base64 `Sforce-Locator`s (the literal string
//! `null` on the last page), abort, delete, list, and `409` when results are
//! read with another API version than the job was created with.

use axum::http::Method;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value as Json};

use super::{Call, Emulator, Org, Reply, ReplyBody};
use crate::error::ApiErr;
use crate::id;
use crate::soql;
use crate::time;
use crate::value::Value;

/// One Bulk query job.
pub struct Job {
    id: String,
    operation: String,
    object_name: String,
    query: soql::Query,
    created_ms: i64,
    modstamp_ms: i64,
    version: String,
    state: String,
    polls: u32,
    ids: Option<Vec<Box<str>>>,
    delimiter: String,
    column_delimiter: char,
    line_ending: String,
    error_message: Option<String>,
}

impl Job {
    fn info(&self, emu: &Emulator) -> Json {
        let mut info = json!({
            "id": self.id, "operation": self.operation, "object": self.object_name,
            "createdById": emu.shared.user_id, "createdDate": time::format_datetime(self.created_ms),
            "systemModstamp": time::format_datetime(self.modstamp_ms), "state": self.state,
            "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": self.version.parse::<f64>().unwrap_or(0.0), "jobType": "V2Query",
            "lineEnding": self.line_ending, "columnDelimiter": self.delimiter,
            "numberRecordsProcessed": self.ids.as_ref().map_or(0, Vec::len), "retries": 0,
            "totalProcessingTime": 0, "isPkChunkingSupported": true,
        });
        if let Some(message) = &self.error_message {
            info["errorMessage"] = json!(message);
        }
        info
    }
}

fn invalid_job(message: &str) -> Reply {
    Reply::error(400, ApiErr::new("INVALIDJOB", message))
}

/// Routes `/jobs/query/...`.
pub(crate) fn handle(emu: &Emulator, call: &Call, rest: &[&str]) -> Reply {
    let mut org = emu.org();
    let m = &call.method;
    match rest {
        [] if m == Method::POST => create(emu, &mut org, call),
        [] if m == Method::GET => {
            let mut jobs: Vec<&Job> = org.jobs.values().collect();
            jobs.sort_by(|a, b| a.id.cmp(&b.id));
            Reply::json(
                200,
                &json!({"done": true, "records": jobs.iter().map(|j| j.info(emu)).collect::<Vec<_>>(), "nextRecordsUrl": Json::Null}),
            )
        }
        [job_id] => {
            let Some(job) = org.jobs.get_mut(*job_id) else {
                return Reply::not_found();
            };
            if m == Method::GET {
                poll(emu, &mut org, job_id)
            } else if m == Method::PATCH {
                if call
                    .body
                    .as_ref()
                    .and_then(|b| b.get("state"))
                    .and_then(Json::as_str)
                    != Some("Aborted")
                {
                    return invalid_job("Only state Aborted can be set on a query job");
                }
                if job.state == "JobComplete" || job.state == "Failed" {
                    return invalid_job(&format!("Job {job_id} is already {}", job.state));
                }
                job.state = "Aborted".into();
                job.modstamp_ms = emu.shared.clock.now_ms();
                Reply::json(200, &job.info(emu))
            } else if m == Method::DELETE {
                org.jobs.remove(*job_id);
                Reply::empty(204)
            } else {
                Reply::error(
                    405,
                    ApiErr::new(
                        "METHOD_NOT_ALLOWED",
                        format!("HTTP Method '{m}' not allowed. Allowed are GET,PATCH,DELETE"),
                    ),
                )
            }
        }
        [job_id, "results"] if m == Method::GET => results(&org, call, job_id),
        _ => Reply::not_found(),
    }
}

fn create(emu: &Emulator, org: &mut Org, call: &Call) -> Reply {
    let Some(body) = call.body.as_ref().and_then(Json::as_object) else {
        return invalid_job("A JSON job definition is required");
    };
    let operation = body
        .get("operation")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if operation != "query" && operation != "queryAll" {
        return invalid_job(&format!("Invalid operation: {operation}"));
    }
    let Some(text) = body.get("query").and_then(Json::as_str) else {
        return invalid_job("query is required");
    };
    if let Some(ct) = body.get("contentType").and_then(Json::as_str) {
        if ct != "CSV" {
            return invalid_job(&format!("Invalid contentType: {ct}"));
        }
    }
    let delimiter = body
        .get("columnDelimiter")
        .and_then(Json::as_str)
        .unwrap_or("COMMA")
        .to_string();
    let column_delimiter = match delimiter.as_str() {
        "COMMA" => ',',
        "BACKQUOTE" => '`',
        "CARET" => '^',
        "PIPE" => '|',
        "SEMICOLON" => ';',
        "TAB" => '\t',
        other => return invalid_job(&format!("Invalid columnDelimiter: {other}")),
    };
    let line_ending = body
        .get("lineEnding")
        .and_then(Json::as_str)
        .unwrap_or("LF")
        .to_string();
    if line_ending != "LF" && line_ending != "CRLF" {
        return invalid_job(&format!("Invalid lineEnding: {line_ending}"));
    }
    let query = match soql::compile(&emu.shared.schema, text, emu.shared.clock.today()) {
        Ok(q) => q,
        Err(err) => return Reply::error(400, err),
    };
    if query.count || query.has_offset {
        let construct = if query.count { "COUNT()" } else { "OFFSET" };
        return Reply::error(
            400,
            ApiErr::new(
                "MALFORMED_QUERY",
                format!("{construct} is not supported in a Bulk API 2.0 query"),
            ),
        );
    }
    let id = id::make_id("750", org.locator_seq);
    org.locator_seq += 1;
    let now = emu.shared.clock.now_ms();
    let job = Job {
        id: id.clone(),
        operation,
        object_name: emu.shared.schema.objects[query.object].name.clone(),
        query,
        created_ms: now,
        modstamp_ms: now,
        version: call.version.clone(),
        state: "UploadComplete".into(),
        polls: 0,
        ids: None,
        delimiter,
        column_delimiter,
        line_ending,
        error_message: None,
    };
    let info = job.info(emu);
    org.jobs.insert(id, job);
    Reply::json(200, &info)
}

fn poll(emu: &Emulator, org: &mut Org, job_id: &str) -> Reply {
    let now = emu.shared.clock.now_ms();
    let needed = emu.shared.config.bulk_polls_before_complete;
    let (query, all_rows, run) = {
        let Some(job) = org.jobs.get_mut(job_id) else {
            return Reply::not_found();
        };
        job.polls += 1;
        let run =
            (job.state == "UploadComplete" || job.state == "InProgress") && job.polls >= needed;
        if !run && job.state == "UploadComplete" {
            job.state = "InProgress".into();
            job.modstamp_ms = now;
        }
        (job.query.clone(), job.operation == "queryAll", run)
    };
    if run {
        let ids = soql::execute(&org.store, &query, all_rows);
        if let Some(job) = org.jobs.get_mut(job_id) {
            job.ids = Some(ids);
            job.state = "JobComplete".into();
            job.modstamp_ms = now;
        }
    }
    match org.jobs.get(job_id) {
        Some(job) => Reply::json(200, &job.info(emu)),
        None => Reply::not_found(),
    }
}

/// Forces a job into `Failed` (test hook).
pub(crate) fn fail(org: &mut Org, job_id: &str, now: i64) -> bool {
    match org.jobs.get_mut(job_id) {
        Some(job) => {
            job.state = "Failed".into();
            job.error_message =
                Some("InternalServerError : the emulator was told to fail this job".into());
            job.modstamp_ms = now;
            true
        }
        None => false,
    }
}

fn csv_cell(out: &mut String, value: Option<&Value>) {
    if let Some(text) = value.and_then(Value::to_csv_text) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    }
}

fn results(org: &Org, call: &Call, job_id: &str) -> Reply {
    let Some(job) = org.jobs.get(job_id) else {
        return Reply::not_found();
    };
    if job.version != call.version {
        return Reply::error(409, ApiErr::new("INVALIDJOB", format!("Job {job_id} was created with API version {}; read its results with the same version", job.version)));
    }
    let Some(ids) = job.ids.as_ref().filter(|_| job.state == "JobComplete") else {
        return Reply::error(
            409,
            ApiErr::new(
                "INVALIDJOB",
                format!("Job {job_id} is not complete: state {}", job.state),
            ),
        );
    };
    let max_records = match call.query.get("maxRecords").map(|v| v.parse::<usize>()) {
        None => 50_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            return Reply::error(
                400,
                ApiErr::new("INVALIDJOB", "maxRecords must be a positive integer"),
            )
        }
    };
    let offset = match call.query.get("locator") {
        None => 0,
        Some(locator) => match STANDARD_NO_PAD
            .decode(locator.trim_end_matches('='))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
        {
            Some(n) if n <= ids.len() => n,
            _ => {
                return Reply::error(
                    400,
                    ApiErr::new("INVALID_LOCATOR", format!("Invalid locator: {locator}")),
                )
            }
        },
    };
    let end = (offset + max_records).min(ids.len());
    let sep = job.column_delimiter;
    let eol = if job.line_ending == "CRLF" {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::new();
    for (i, path) in job.query.fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(&format!("\"{}\"", path.display));
    }
    out.push_str(eol);
    for id in &ids[offset..end] {
        let Some(record) = org.store.get(job.query.object, id) else {
            continue;
        };
        for (i, path) in job.query.fields.iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            csv_cell(&mut out, soql::resolve(&org.store, record, path));
        }
        out.push_str(eol);
    }
    let locator = if end < ids.len() {
        STANDARD_NO_PAD.encode(end.to_string())
    } else {
        "null".to_string()
    };
    Reply {
        status: 200,
        body: ReplyBody::Text(out, "text/csv"),
        headers: Vec::new(),
    }
    .header("Sforce-Locator", locator)
    .header("Sforce-NumberOfRecords", (end - offset).to_string())
}
