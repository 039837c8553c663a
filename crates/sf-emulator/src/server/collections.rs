//! sObject Collections (`/composite/sobjects`): create, update, upsert,
//! delete and retrieve of ≤ 200 records, per-record results with
//! `statusCode` errors, `allOrNone` rollback, injected row locks
//! (reference §2.9).

use std::collections::HashMap;

use axum::http::Method;
use serde_json::{json, Map, Value as Json};

use super::faults::roll_lock;
use super::rest::{self, ctx, UpsertOutcome};
use super::{Call, Emulator, Org, Reply};
use crate::error::{record_array, ApiErr};
use crate::id;
use crate::write;

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
