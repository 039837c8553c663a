//! `/composite` (ordered subrequests with `@{ref.path}` references and
//! `allOrNone`), `/composite/graph` (per-graph atomicity) and sObject
//! Collections (`/composite/sobjects`, ≤ 200 records, per-record results with
//! `statusCode` errors), reference §2.8–2.10.

use std::collections::{HashMap, HashSet};

use axum::http::Method;
use serde_json::{json, Map, Value as Json};

use super::rest::{self, ctx, UpsertOutcome};
use super::{parse_query, roll_lock, split_data_path, version_ok, Call, Emulator, Org, Reply};
use crate::error::{record_array, ApiErr};
use crate::id;
use crate::write;

const ROLLED_BACK: &str =
    "The transaction was rolled back since another operation in the same transaction failed.";

fn bad_request(message: &str) -> Reply {
    Reply::error(400, ApiErr::new("INVALID_API_INPUT", message))
}

fn valid_reference_id(r: &str) -> bool {
    r.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Looks up `refId.path[0].Field` in earlier results.
fn lookup(results: &HashMap<String, Json>, expr: &str) -> Option<Json> {
    let (ref_id, path) = expr.split_once('.')?;
    let mut current = results.get(ref_id)?;
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(pos) => (&part[..pos], &part[pos..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            current = current.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    (!current.is_null()).then(|| current.clone())
}

/// Replaces `@{...}` in a string; a whole-string reference keeps the JSON type.
fn substitute_str(text: &str, results: &HashMap<String, Json>) -> Result<Json, String> {
    if let Some(inner) = text.strip_prefix("@{").and_then(|t| t.strip_suffix('}')) {
        if !inner.contains('}') {
            return lookup(results, inner).ok_or_else(|| inner.to_string());
        }
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let expr = &after[..end];
        let value = lookup(results, expr).ok_or_else(|| expr.to_string())?;
        match value {
            Json::String(s) => out.push_str(&s),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Json::String(out))
}

fn substitute(value: &Json, results: &HashMap<String, Json>) -> Result<Json, String> {
    Ok(match value {
        Json::String(s) => substitute_str(s, results)?,
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| substitute(v, results))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, results)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

fn halted(message: &str) -> Json {
    json!([{"errorCode": "PROCESSING_HALTED", "message": message}])
}

/// Runs subrequests in order inside one org lock; returns (subresponses, any failed).
fn run_subrequests(
    emu: &Emulator,
    org: &mut Org,
    requests: &[Json],
    all_or_none: bool,
) -> (Vec<Json>, bool) {
    let savepoint = org.store.begin();
    let mut results: HashMap<String, Json> = HashMap::new();
    let mut responses = Vec::new();
    let mut failed = false;
    for sub in requests {
        let reference_id = sub
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let method = sub.get("method").and_then(Json::as_str).unwrap_or_default();
        let url = sub.get("url").and_then(Json::as_str).unwrap_or_default();
        let resolved_url = substitute_str(url, &results);
        let resolved_body = sub.get("body").map(|b| substitute(b, &results)).transpose();
        let (url, body) = match (resolved_url, resolved_body) {
            (Ok(Json::String(u)), Ok(b)) => (u, b),
            (Err(expr), _) | (_, Err(expr)) => {
                let ref_name = expr.split('.').next().unwrap_or_default().to_string();
                failed = true;
                responses.push(json!({"body": halted(&format!("Invalid reference specified. No value for {expr} found in {ref_name}. Provided referenceId ({ref_name}) must start with a letter or a number, and it can contain only letters, numbers and underscores (_).")),
                                      "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference_id}));
                continue;
            }
            _ => continue,
        };
        let (path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
        let reply = match (Method::from_bytes(method.as_bytes()), split_data_path(path)) {
            (Ok(m), Some((version, segments)))
                if version_ok(&version)
                    && ["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method) =>
            {
                let call = Call {
                    method: m,
                    version,
                    segments,
                    query: parse_query(raw_query),
                    body,
                    batch_size: None,
                };
                rest::dispatch_locked(emu, org, &call, 0.0)
            }
            _ => Reply::not_found(),
        };
        let status = reply.status;
        let body_json = reply.body_json();
        let mut headers = Map::new();
        for (name, value) in &reply.headers {
            headers.insert(name.clone(), Json::String(value.clone()));
        }
        if status >= 400 {
            failed = true;
        } else {
            results.insert(reference_id.clone(), body_json.clone());
        }
        responses.push(json!({"body": body_json, "httpHeaders": headers, "httpStatusCode": status, "referenceId": reference_id}));
    }
    if failed && all_or_none {
        org.store.rollback_to(savepoint);
        // Every subrequest but the root causes reports the rollback.
        for response in &mut responses {
            let is_root_cause = response["httpStatusCode"].as_u64().unwrap_or(0) >= 400
                && !response["body"]
                    .as_array()
                    .is_some_and(|errs| errs.iter().all(|e| e["errorCode"] == "PROCESSING_HALTED"));
            if !is_root_cause {
                response["body"] = halted(ROLLED_BACK);
                response["httpStatusCode"] = json!(400);
                response["httpHeaders"] = json!({});
            }
        }
    }
    org.store.commit();
    (responses, failed)
}

fn validate_composite(requests: &[Json]) -> Result<(), Reply> {
    if requests.len() > 25 {
        return Err(bad_request(
            "Maximum 25 subrequests are allowed in a composite request",
        ));
    }
    let heavy = requests
        .iter()
        .filter(|r| {
            let url = r.get("url").and_then(Json::as_str).unwrap_or_default();
            url.contains("/query")
                || url.contains("/queryAll")
                || url.contains("/composite/sobjects")
        })
        .count();
    if heavy > 5 {
        return Err(bad_request(
            "Maximum 5 query or sObject Collections subrequests are allowed in a composite request",
        ));
    }
    let mut seen = HashSet::new();
    for r in requests {
        let reference_id = r
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or_default();
        if !valid_reference_id(reference_id) || !seen.insert(reference_id.to_string()) {
            return Err(bad_request(&format!(
                "Invalid or duplicate referenceId: {reference_id}"
            )));
        }
        if r.get("method").and_then(Json::as_str).is_none()
            || r.get("url").and_then(Json::as_str).is_none()
        {
            return Err(bad_request("Each subrequest needs method and url"));
        }
        if let Some(headers) = r.get("httpHeaders").and_then(Json::as_object) {
            if headers.keys().any(|k| {
                ["accept", "authorization", "content-type"]
                    .contains(&k.to_ascii_lowercase().as_str())
            }) {
                return Err(bad_request(
                    "httpHeaders may not set Accept, Authorization or Content-Type",
                ));
            }
        }
    }
    Ok(())
}

/// `POST /composite`.
pub(crate) fn composite(emu: &Emulator, call: &Call) -> Reply {
    let Some(body) = call.body.as_ref().and_then(Json::as_object) else {
        return bad_request("A composite request body is required");
    };
    let Some(requests) = body.get("compositeRequest").and_then(Json::as_array) else {
        return bad_request("compositeRequest is required");
    };
    if let Err(reply) = validate_composite(requests) {
        return reply;
    }
    let all_or_none = body
        .get("allOrNone")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let mut org = emu.org();
    let (responses, _) = run_subrequests(emu, &mut org, requests, all_or_none);
    Reply::json(200, &json!({"compositeResponse": responses}))
}

/// `POST /composite/graph`: each graph succeeds or fails as a unit.
pub(crate) fn graph(emu: &Emulator, call: &Call) -> Reply {
    let Some(graphs) = call
        .body
        .as_ref()
        .and_then(|b| b.get("graphs"))
        .and_then(Json::as_array)
    else {
        return bad_request("graphs is required");
    };
    if graphs.len() > 75 {
        return bad_request("Maximum 75 graphs are allowed");
    }
    let total_nodes: usize = graphs
        .iter()
        .map(|g| {
            g.get("compositeRequest")
                .and_then(Json::as_array)
                .map_or(0, Vec::len)
        })
        .sum();
    if total_nodes > 500 {
        return bad_request("Maximum 500 nodes are allowed across graphs");
    }
    let mut org = emu.org();
    let mut out = Vec::new();
    let mut failures = 0;
    for g in graphs {
        let graph_id = g.get("graphId").cloned().unwrap_or(Json::Null);
        let requests = g
            .get("compositeRequest")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if failures >= 14 {
            let halted_all: Vec<Json> = requests
                .iter()
                .map(|r| json!({"body": halted("The transaction was rolled back since another operation in the same transaction failed."), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": r.get("referenceId")}))
                .collect();
            out.push(json!({"graphId": graph_id, "graphResponse": {"compositeResponse": halted_all}, "isSuccessful": false}));
            continue;
        }
        if let Err(reply) = validate_composite(&requests) {
            out.push(json!({"graphId": graph_id, "graphResponse": {"compositeResponse": [{"body": reply.body_json(), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": Json::Null}]}, "isSuccessful": false}));
            failures += 1;
            continue;
        }
        let (responses, failed) = run_subrequests(emu, &mut org, &requests, true);
        failures += usize::from(failed);
        out.push(json!({"graphId": graph_id, "graphResponse": {"compositeResponse": responses}, "isSuccessful": !failed}));
    }
    Reply::json(200, &json!({"graphs": out}))
}

struct RecordResult {
    id: Option<String>,
    created: Option<bool>,
    errors: Vec<ApiErr>,
    /// Event uuid of a published platform event (`OPERATION_ENQUEUED`).
    enqueued: Option<String>,
}

impl RecordResult {
    fn ok(id: String, created: Option<bool>) -> Self {
        RecordResult {
            id: Some(id),
            created,
            errors: Vec::new(),
            enqueued: None,
        }
    }
    fn failed(errors: Vec<ApiErr>) -> Self {
        RecordResult {
            id: None,
            created: None,
            errors,
            enqueued: None,
        }
    }
    fn to_json(&self) -> Json {
        let mut v = Map::new();
        if let Some(id) = &self.id {
            v.insert("id".into(), json!(id));
        }
        v.insert("success".into(), json!(self.errors.is_empty()));
        match &self.enqueued {
            Some(uuid) if self.errors.is_empty() => {
                v.insert(
                    "errors".into(),
                    json!([{"statusCode": "OPERATION_ENQUEUED", "message": uuid, "fields": []}]),
                );
            }
            _ => {
                v.insert("errors".into(), record_array(&self.errors));
            }
        }
        if let Some(created) = self.created {
            v.insert("created".into(), json!(created));
        }
        Json::Object(v)
    }
}

fn lock_error(id: Option<&str>) -> ApiErr {
    ApiErr::new(
        "UNABLE_TO_LOCK_ROW",
        format!(
            "unable to obtain exclusive access to this record or 1 records: {}",
            id.unwrap_or("500xx000000bZqL")
        ),
    )
}

/// `/composite/sobjects[...]`.
pub(crate) fn collections(
    emu: &Emulator,
    org: &mut Org,
    call: &Call,
    rest: &[&str],
    lock_rate: f64,
) -> Reply {
    let m = &call.method;
    match rest {
        [] if m == Method::DELETE => {
            let ids: Vec<String> = call
                .query
                .get("ids")
                .map(|s| {
                    s.split(',')
                        .map(str::to_string)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let all_or_none = call.query.get("allOrNone").is_some_and(|v| v == "true");
            if ids.len() > 200 {
                return Reply::error(
                    400,
                    ApiErr::new(
                        "EXCEEDED_ID_LIMIT",
                        "record limit reached. cannot submit more than 200 records into this call",
                    ),
                );
            }
            let records: Vec<Json> = ids.iter().map(|id| json!({"id": id})).collect();
            write_records(
                emu,
                org,
                &records,
                all_or_none,
                lock_rate,
                |emu, org, record| {
                    let raw = record["id"].as_str().unwrap_or_default();
                    let Ok(id18) = id::normalize(raw) else {
                        return RecordResult::failed(vec![ApiErr::with_fields(
                            "MALFORMED_ID",
                            format!("invalid record id: {raw}"),
                            vec!["Id".into()],
                        )]);
                    };
                    let Some(object) = org.store.object_of_id(&id18) else {
                        return RecordResult::failed(vec![ApiErr::new(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                        )]);
                    };
                    let deleted_idx = emu.shared.schema.objects[object]
                        .field_idx("IsDeleted")
                        .unwrap_or(usize::MAX);
                    match org.store.get(object, &id18) {
                        None => RecordResult::failed(vec![ApiErr::new(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                        )]),
                        Some(r) if r.is_deleted(deleted_idx) => {
                            RecordResult::failed(vec![ApiErr::new(
                                "ENTITY_IS_DELETED",
                                "entity is deleted",
                            )])
                        }
                        Some(_) if !emu.shared.schema.objects[object].deletable => {
                            RecordResult::failed(vec![ApiErr::new(
                                "INVALID_TYPE_FOR_OPERATION",
                                "entity type cannot be deleted",
                            )])
                        }
                        Some(_) => {
                            write::soft_delete(&mut org.store, ctx(emu), object, &id18);
                            RecordResult::ok(id18, None)
                        }
                    }
                },
            )
        }
        [] if m == Method::POST || m == Method::PATCH => {
            let (records, all_or_none) = match records_of(call) {
                Ok(v) => v,
                Err(reply) => return reply,
            };
            if let Err(reply) = check_chunks(&records) {
                return reply;
            }
            let creating = m == Method::POST;
            write_records(
                emu,
                org,
                &records,
                all_or_none,
                lock_rate,
                |emu, org, record| {
                    let Some(type_name) = record
                        .get("attributes")
                        .and_then(|a| a.get("type"))
                        .and_then(Json::as_str)
                    else {
                        return RecordResult::failed(vec![ApiErr::new(
                            "INVALID_TYPE",
                            "Must specify a type in the attributes field of each record",
                        )]);
                    };
                    let Some(object) = emu.shared.schema.object_idx(type_name) else {
                        return RecordResult::failed(vec![ApiErr::new(
                            "INVALID_TYPE",
                            format!("sObject type '{type_name}' is not supported."),
                        )]);
                    };
                    let mut body = record.as_object().cloned().unwrap_or_default();
                    let id_key = body.keys().find(|k| k.eq_ignore_ascii_case("id")).cloned();
                    if creating {
                        if id_key.is_some() {
                            return RecordResult::failed(vec![ApiErr::with_fields(
                                "INVALID_FIELD",
                                "cannot specify Id in an insert call",
                                vec!["Id".into()],
                            )]);
                        }
                        if emu.shared.schema.objects[object].is_event() {
                            body.remove("attributes");
                            return match rest::publish_one(emu, org, object, &body) {
                                Ok((id, uuid)) => RecordResult {
                                    enqueued: Some(uuid),
                                    ..RecordResult::ok(id, None)
                                },
                                Err(errors) => RecordResult::failed(errors),
                            };
                        }
                        match write::create(&mut org.store, ctx(emu), object, &body) {
                            Ok(id) => RecordResult::ok(id, None),
                            Err(errors) => RecordResult::failed(errors),
                        }
                    } else {
                        let raw = id_key
                            .as_ref()
                            .and_then(|k| body.remove(k))
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        let obj = &emu.shared.schema.objects[object];
                        let id18 = match id::normalize(&raw) {
                            Ok(id18) if id::key_prefix(&id18) == obj.key_prefix => id18,
                            _ => {
                                return RecordResult::failed(vec![ApiErr::with_fields(
                                    "MALFORMED_ID",
                                    format!("{} ID: id value of incorrect type: {raw}", obj.label),
                                    vec!["Id".into()],
                                )])
                            }
                        };
                        let deleted_idx = obj.field_idx("IsDeleted").unwrap_or(usize::MAX);
                        match org.store.get(object, &id18) {
                            None => {
                                return RecordResult::failed(vec![ApiErr::new(
                                    "INVALID_CROSS_REFERENCE_KEY",
                                    "invalid cross reference id",
                                )])
                            }
                            Some(r) if r.is_deleted(deleted_idx) => {
                                return RecordResult::failed(vec![ApiErr::new(
                                    "ENTITY_IS_DELETED",
                                    "entity is deleted",
                                )])
                            }
                            Some(_) => {}
                        }
                        match write::update(&mut org.store, ctx(emu), object, &id18, &body) {
                            Ok(()) => RecordResult::ok(id18, None),
                            Err(errors) => RecordResult::failed(errors),
                        }
                    }
                },
            )
        }
        [object_name, field_name] if m == Method::PATCH => {
            upsert(emu, org, call, object_name, field_name, lock_rate)
        }
        [object_name] if m == Method::GET || m == Method::POST => {
            retrieve(emu, org, call, object_name)
        }
        _ => Reply::not_found(),
    }
}

fn records_of(call: &Call) -> Result<(Vec<Json>, bool), Reply> {
    let Some(body) = call.body.as_ref().and_then(Json::as_object) else {
        return Err(Reply::error(
            400,
            ApiErr::new("JSON_PARSER_ERROR", "No content to map due to end-of-input"),
        ));
    };
    let Some(records) = body.get("records").and_then(Json::as_array) else {
        return Err(Reply::error(
            400,
            ApiErr::new("INVALID_FIELD", "records is required"),
        ));
    };
    if records.len() > 200 {
        return Err(Reply::error(
            400,
            ApiErr::new(
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            ),
        ));
    }
    Ok((
        records.clone(),
        body.get("allOrNone")
            .and_then(Json::as_bool)
            .unwrap_or(false),
    ))
}

fn check_chunks(records: &[Json]) -> Result<(), Reply> {
    let types: Vec<Option<&str>> = records
        .iter()
        .map(|r| {
            r.get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Json::as_str)
        })
        .collect();
    let chunks = types.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!types.is_empty());
    if chunks > 10 {
        return Err(Reply::error(
            400,
            ApiErr::new(
                "INVALID_BATCH_REQUEST",
                "Too many chunks: records of different types may form at most 10 chunks",
            ),
        ));
    }
    Ok(())
}

/// Runs `one` per record with `allOrNone` semantics and injected row locks.
fn write_records(
    emu: &Emulator,
    org: &mut Org,
    records: &[Json],
    all_or_none: bool,
    lock_rate: f64,
    mut one: impl FnMut(&Emulator, &mut Org, &Json) -> RecordResult,
) -> Reply {
    let savepoint = org.store.begin();
    let mut results: Vec<RecordResult> = records
        .iter()
        .map(|record| {
            if roll_lock(emu, lock_rate) {
                RecordResult::failed(vec![lock_error(None)])
            } else {
                one(emu, org, record)
            }
        })
        .collect();
    if all_or_none && results.iter().any(|r| !r.errors.is_empty()) {
        org.store.rollback_to(savepoint);
        for r in &mut results {
            if r.errors.is_empty() {
                r.errors.push(ApiErr::new(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header",
                ));
                r.created = None;
            }
        }
    }
    org.store.commit();
    Reply::json(
        200,
        &Json::Array(results.iter().map(RecordResult::to_json).collect()),
    )
}

fn upsert(
    emu: &Emulator,
    org: &mut Org,
    call: &Call,
    object_name: &str,
    field_name: &str,
    lock_rate: f64,
) -> Reply {
    let Some(object) = emu.shared.schema.object_idx(object_name) else {
        return Reply::not_found();
    };
    let obj = &emu.shared.schema.objects[object];
    let Some(field) = obj
        .field_idx(field_name)
        .filter(|&i| obj.fields[i].external_id)
    else {
        return Reply::error(
            404,
            ApiErr::new(
                "NOT_FOUND",
                format!(
                    "Provided external ID field does not exist or is not accessible: {field_name}"
                ),
            ),
        );
    };
    let field_api = obj.fields[field].name.clone();
    let (records, all_or_none) = match records_of(call) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    // The same external-ID value twice in one request fails each occurrence.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &records {
        if let Some(v) = r
            .as_object()
            .and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&field_api))
                    .map(|(_, v)| v)
            })
            .and_then(Json::as_str)
        {
            *counts.entry(v.to_string()).or_default() += 1;
        }
    }
    let label = obj.fields[field].label.clone();
    let obj_name = obj.name.clone();
    write_records(
        emu,
        org,
        &records,
        all_or_none,
        lock_rate,
        |emu, org, record| {
            let mut body = record.as_object().cloned().unwrap_or_default();
            match body
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Json::as_str)
            {
                Some(t) if t.eq_ignore_ascii_case(&obj_name) => {}
                _ => {
                    return RecordResult::failed(vec![ApiErr::new(
                        "INVALID_TYPE",
                        format!("Each record must have attributes.type {obj_name}"),
                    )])
                }
            }
            if body.keys().any(|k| k.eq_ignore_ascii_case("id")) {
                return RecordResult::failed(vec![ApiErr::with_fields(
                    "INVALID_FIELD",
                    "Id is not allowed in an upsert by external ID",
                    vec!["Id".into()],
                )]);
            }
            let Some(key_name) = body
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&field_api))
                .cloned()
            else {
                return RecordResult::failed(vec![ApiErr::with_fields(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{field_api}]"),
                    vec![field_api.clone()],
                )]);
            };
            let raw = body.remove(&key_name).unwrap_or(Json::Null);
            let Some(text) = raw.as_str().map(str::to_string) else {
                return RecordResult::failed(vec![ApiErr::with_fields(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{field_api}]"),
                    vec![field_api.clone()],
                )]);
            };
            if counts.get(&text).copied().unwrap_or(0) > 1 {
                return RecordResult::failed(vec![ApiErr::new(
                    "DUPLICATE_VALUE",
                    format!("Duplicate external id specified: {text}"),
                )]);
            }
            let key = crate::value::Value::Str(text.into());
            match rest::upsert_one(emu, org, object, field, &key, &body, false) {
                UpsertOutcome::Created(id) => RecordResult::ok(id, Some(true)),
                UpsertOutcome::Updated(id) => RecordResult::ok(id, Some(false)),
                UpsertOutcome::Multiple(ids) => RecordResult::failed(vec![ApiErr::with_fields(
                    "DUPLICATE_EXTERNAL_ID",
                    format!(
                        "{label}: more than one record found for external id field: [{}]",
                        ids.join(", ")
                    ),
                    vec![field_api.clone()],
                )]),
                UpsertOutcome::NotFound => RecordResult::failed(vec![ApiErr::not_found()]),
                UpsertOutcome::Failed(errors) => RecordResult::failed(errors),
            }
        },
    )
}

fn retrieve(emu: &Emulator, org: &mut Org, call: &Call, object_name: &str) -> Reply {
    let Some(object) = emu.shared.schema.object_idx(object_name) else {
        return Reply::not_found();
    };
    let obj = &emu.shared.schema.objects[object];
    let (ids, fields): (Vec<String>, Vec<String>) = if call.method == Method::GET {
        let split = |s: Option<&String>| {
            s.map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        (
            split(call.query.get("ids")),
            split(call.query.get("fields")),
        )
    } else {
        let list = |name: &str| -> Vec<String> {
            call.body
                .as_ref()
                .and_then(|b| b.get(name))
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        (list("ids"), list("fields"))
    };
    if ids.len() > 2000 {
        return Reply::error(
            400,
            ApiErr::new(
                "EXCEEDED_ID_LIMIT",
                "cannot retrieve more than 2000 records",
            ),
        );
    }
    let mut idxs = Vec::new();
    for name in &fields {
        match obj.field_idx(name) {
            Some(i) => idxs.push(i),
            None => {
                return Reply::error(
                    400,
                    ApiErr::new(
                        "INVALID_FIELD",
                        format!("No such column '{name}' on sobject of type {}", obj.name),
                    ),
                )
            }
        }
    }
    let deleted_idx = obj.field_idx("IsDeleted").unwrap_or(usize::MAX);
    let mut out = String::from("[");
    for (n, raw) in ids.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let record = id::normalize(raw)
            .ok()
            .and_then(|id18| org.store.get(object, &id18))
            .filter(|r| !r.is_deleted(deleted_idx));
        match record {
            None => out.push_str("null"),
            Some(record) => {
                out.push_str(&format!("{{\"attributes\":{{\"type\":\"{}\",\"url\":\"/services/data/v{}/sobjects/{}/{}\"}}", obj.name, call.version, obj.name, record.id));
                for &idx in &idxs {
                    out.push_str(&format!(",\"{}\":", obj.fields[idx].name));
                    record
                        .get(idx)
                        .unwrap_or(&crate::value::Value::Null)
                        .write_json(&mut out);
                }
                out.push('}');
            }
        }
    }
    out.push(']');
    Reply::raw_json(200, out)
}
