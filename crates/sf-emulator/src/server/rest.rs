//! REST resources: versions, resource directory, describe, sObject rows
//! (create, retrieve, update, delete, upsert by external ID), SOQL query and
//! queryAll with locators, and `/limits`.

use axum::http::Method;
use serde_json::{json, Map, Value as Json};

use super::{
    bulk, collections, composite, methods, Call, Cursor, Emulator, Org, Reply, MAX_VERSION,
    MIN_VERSION,
};
use crate::error::ApiErr;
use crate::id;
use crate::schema::FieldType;
use crate::soql;
use crate::value::Value;
use crate::write::{self, WriteCtx};

/// `GET /services/data/`: the versions, oldest first.
pub(crate) fn versions() -> Reply {
    let list: Vec<Json> = (MIN_VERSION..=MAX_VERSION)
        .map(|v| {
            let season = ["Spring", "Summer", "Winter"][((v - 30) % 3) as usize];
            let year = 14 + (v - 30) / 3 + u32::from(season == "Winter");
            json!({"label": format!("{season} '{year:02}"), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")})
        })
        .collect();
    Reply::json(200, &Json::Array(list))
}

pub(crate) fn ctx(emu: &Emulator) -> WriteCtx<'_> {
    WriteCtx {
        now_ms: emu.shared.clock.now_ms(),
        user_id: &emu.shared.user_id,
        trusted: false,
    }
}

/// Routes one authenticated call (top level or composite subrequest).
pub(crate) fn dispatch(emu: &Emulator, call: &Call, lock_rate: f64) -> Reply {
    if let Some(not_allowed) = methods::check(&emu.shared.schema, call) {
        return not_allowed;
    }
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let m = &call.method;
    match seg.as_slice() {
        [] if m == Method::GET => directory(&call.version),
        ["sobjects"] if m == Method::GET => describe_global(emu, &call.version),
        ["limits"] if m == Method::GET => limits(emu),
        ["jobs", "query", ..] => bulk::handle(emu, call, &seg[2..]),
        ["composite"] if m == Method::POST => composite::composite(emu, call),
        ["composite", "graph"] if m == Method::POST => composite::graph(emu, call),
        _ => {
            let mut org = emu.org();
            dispatch_locked(emu, &mut org, call, lock_rate)
        }
    }
}

/// Resources that run inside one org lock (and so inside a composite transaction).
pub(crate) fn dispatch_locked(emu: &Emulator, org: &mut Org, call: &Call, lock_rate: f64) -> Reply {
    if let Some(not_allowed) = methods::check(&emu.shared.schema, call) {
        return not_allowed;
    }
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let m = &call.method;
    match seg.as_slice() {
        ["query"] | ["queryAll"] if m == Method::GET => query(emu, org, call, seg[0] == "queryAll"),
        ["query", locator] | ["queryAll", locator] if m == Method::GET => {
            query_more(emu, org, call, locator)
        }
        ["composite", "sobjects", rest @ ..] => {
            collections::collections(emu, org, call, rest, lock_rate)
        }
        ["sobjects", object, rest @ ..] => sobjects(emu, org, call, object, rest),
        _ => Reply::not_found(),
    }
}

fn directory(version: &str) -> Reply {
    let base = format!("/services/data/v{version}");
    Reply::json(
        200,
        &json!({
            "sobjects": format!("{base}/sobjects"),
            "query": format!("{base}/query"),
            "queryAll": format!("{base}/queryAll"),
            "composite": format!("{base}/composite"),
            "limits": format!("{base}/limits"),
            "jobs": format!("{base}/jobs"),
        }),
    )
}

fn describe_global(emu: &Emulator, version: &str) -> Reply {
    let objects: Vec<Json> = emu
        .shared
        .schema
        .objects
        .iter()
        .map(|o| {
            json!({"name": o.name, "label": o.label, "keyPrefix": o.key_prefix, "custom": o.custom, "createable": o.name != "User",
                   "updateable": true, "deletable": o.deletable, "queryable": true,
                   "urls": {"sobject": format!("/services/data/v{version}/sobjects/{}", o.name), "describe": format!("/services/data/v{version}/sobjects/{}/describe", o.name)}})
        })
        .collect();
    Reply::json(
        200,
        &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects}),
    )
}

fn describe(emu: &Emulator, object: usize) -> Reply {
    let obj = &emu.shared.schema.objects[object];
    let fields: Vec<Json> = obj
        .fields
        .iter()
        .map(|f| {
            let (length, precision, scale) = match &f.ty {
                FieldType::String(n) | FieldType::TextArea(n) => (*n, 0, 0),
                FieldType::Id => (18, 0, 0),
                FieldType::Reference(_) => (18, 0, 0),
                FieldType::Email | FieldType::Phone | FieldType::Url | FieldType::Picklist(_) => (255, 0, 0),
                FieldType::AutoNumber(_) => (30, 0, 0),
                FieldType::Double(p, s) | FieldType::Currency(p, s) | FieldType::Percent(p, s) => (0, *p, *s),
                _ => (0, 0, 0),
            };
            let (picklist_values, restricted) = match &f.ty {
                FieldType::Picklist(p) => (
                    p.values.iter().map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": p.default.as_deref() == Some(v.as_str())})).collect(),
                    p.restricted,
                ),
                _ => (Vec::new(), false),
            };
            json!({
                "name": f.name, "label": f.label, "type": f.describe_type(), "length": length, "precision": precision, "scale": scale,
                "nillable": f.nillable, "createable": f.createable, "updateable": f.updateable, "defaultedOnCreate": f.defaulted,
                "externalId": f.external_id, "unique": f.unique, "caseSensitive": f.case_sensitive, "custom": f.name.ends_with("__c"),
                "autoNumber": matches!(f.ty, FieldType::AutoNumber(_)), "idLookup": f.name == "Id" || f.external_id,
                "referenceTo": f.reference_to(), "relationshipName": f.relationship_name,
                "restrictedPicklist": restricted, "picklistValues": picklist_values,
            })
        })
        .collect();
    Reply::json(
        200,
        &json!({"name": obj.name, "label": obj.label, "keyPrefix": obj.key_prefix, "custom": obj.custom, "createable": obj.name != "User",
                "updateable": true, "deletable": obj.deletable, "queryable": true, "fields": fields}),
    )
}

fn limits(emu: &Emulator) -> Reply {
    let (used, max) = emu.api_usage();
    let jobs = emu.org().jobs.len() as u64;
    Reply::json(
        200,
        &json!({
            "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000u64.saturating_sub(jobs)},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "HourlyPublishedPlatformEvents": {"Max": 50000, "Remaining": 50000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        }),
    )
}

fn ext_field_missing(segment: &str) -> Reply {
    Reply::error(
        404,
        ApiErr::new(
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {segment}"),
        ),
    )
}

/// Resolves a URL id segment of `object`: `None` when it is not an id of that object.
fn url_id(emu: &Emulator, object: usize, segment: &str) -> Option<String> {
    let id18 = id::normalize(segment).ok()?;
    (id::key_prefix(&id18) == emu.shared.schema.objects[object].key_prefix).then_some(id18)
}

fn body_map(call: &Call) -> Result<&Map<String, Json>, Reply> {
    match &call.body {
        Some(Json::Object(map)) => Ok(map),
        Some(_) => Err(Reply::error(
            400,
            ApiErr::new(
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of SObject from START_ARRAY value",
            ),
        )),
        None => Err(Reply::error(
            400,
            ApiErr::new("JSON_PARSER_ERROR", "No content to map due to end-of-input"),
        )),
    }
}

fn location(version: &str, object: &str, id: &str) -> String {
    format!("/services/data/v{version}/sobjects/{object}/{id}")
}

/// `/sobjects/{object}/...` with the org already locked (composite reuses it).
pub(crate) fn sobjects(
    emu: &Emulator,
    org: &mut Org,
    call: &Call,
    object_name: &str,
    rest: &[&str],
) -> Reply {
    let Some(object) = emu.shared.schema.object_idx(object_name) else {
        return Reply::not_found();
    };
    let obj = &emu.shared.schema.objects[object];
    let m = &call.method;
    let deleted_idx = obj.field_idx("IsDeleted").unwrap_or(usize::MAX);
    if obj.is_event() {
        return match rest {
            [] if m == Method::POST => publish(emu, org, call, object),
            ["describe"] if m == Method::GET => describe(emu, object),
            _ => Reply::not_found(),
        };
    }
    match rest {
        [] if m == Method::POST => create(emu, org, call, object),
        [] if m == Method::GET => Reply::json(
            200,
            &json!({"objectDescribe": {"name": obj.name, "keyPrefix": obj.key_prefix, "label": obj.label}, "recentItems": []}),
        ),
        ["describe"] if m == Method::GET => describe(emu, object),
        ["Id"] if m == Method::POST => create(emu, org, call, object),
        [segment] => {
            let Some(id18) = url_id(emu, object, segment) else {
                return ext_field_missing(segment);
            };
            let Some(record) = org.store.get(object, &id18) else {
                return Reply::not_found();
            };
            if record.is_deleted(deleted_idx) {
                return Reply::error(404, ApiErr::new("ENTITY_IS_DELETED", "entity is deleted"));
            }
            if m == Method::GET {
                retrieve(emu, org, call, object, &id18)
            } else if m == Method::PATCH {
                let body = match body_map(call) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
                    return Reply::error(400, ApiErr::new("INVALID_FIELD", "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set."));
                }
                match write::update(&mut org.store, ctx(emu), object, &id18, body) {
                    Ok(()) => Reply::empty(204),
                    Err(errors) => Reply::errors(400, &errors),
                }
            } else if m == Method::DELETE {
                if !obj.deletable {
                    return Reply::error(
                        400,
                        ApiErr::new(
                            "INVALID_TYPE_FOR_OPERATION",
                            "entity type cannot be deleted",
                        ),
                    );
                }
                write::soft_delete(&mut org.store, ctx(emu), object, &id18);
                Reply::empty(204)
            } else {
                Reply::error(
                    405,
                    ApiErr::new(
                        "METHOD_NOT_ALLOWED",
                        format!("HTTP Method '{m}' not allowed. Allowed are GET,HEAD,PATCH,DELETE"),
                    ),
                )
            }
        }
        [field, value] => by_external_id(emu, org, call, object, field, value),
        _ => Reply::not_found(),
    }
}

fn create(emu: &Emulator, org: &mut Org, call: &Call, object: usize) -> Reply {
    let body = match body_map(call) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
        return Reply::error(400, ApiErr::new("INVALID_FIELD", "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set."));
    }
    let name = emu.shared.schema.objects[object].name.clone();
    match write::create(&mut org.store, ctx(emu), object, body) {
        Ok(id) => Reply::json(201, &json!({"id": id, "success": true, "errors": []}))
            .header("Location", location(&call.version, &name, &id)),
        Err(errors) => Reply::errors(400, &errors),
    }
}

/// Publishes a platform event: validated like a record, appended to the
/// event stream, never stored; `success: true` carries `OPERATION_ENQUEUED`.
pub(crate) fn publish(emu: &Emulator, org: &mut Org, call: &Call, object: usize) -> Reply {
    let body = match body_map(call) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match publish_one(emu, org, object, body) {
        Ok((id, uuid)) => Reply::json(
            201,
            &json!({"id": id, "success": true, "errors": [{"statusCode": "OPERATION_ENQUEUED", "message": uuid, "fields": []}]}),
        ),
        Err(errors) => Reply::errors(400, &errors),
    }
}

/// Validates and records one event; returns (publish id, event uuid).
pub(crate) fn publish_one(
    emu: &Emulator,
    org: &mut Org,
    object: usize,
    body: &Map<String, Json>,
) -> Result<(String, String), Vec<ApiErr>> {
    // Validate exactly like a create, then undo it: events are not records.
    let savepoint = org.store.begin();
    let created = write::create(&mut org.store, ctx(emu), object, body);
    org.store.rollback_to(savepoint);
    org.store.commit();
    created?;
    let mut rng = rand::thread_rng();
    let bytes: [u8; 16] = rand::Rng::gen(&mut rng);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    let id = id::make_id("e01", org.locator_seq);
    org.locator_seq += 1;
    let name = emu.shared.schema.objects[object].name.clone();
    // Keep the stream bounded like the request log (tests read recent events).
    if org.events.len() >= super::REQUEST_LOG_CAPACITY {
        org.events.remove(0);
    }
    org.events
        .push(json!({"type": name, "uuid": uuid, "fields": body}));
    Ok((id, uuid))
}

fn retrieve(emu: &Emulator, org: &Org, call: &Call, object: usize, id18: &str) -> Reply {
    let obj = &emu.shared.schema.objects[object];
    let Some(record) = org.store.get(object, id18) else {
        return Reply::not_found();
    };
    let wanted: Vec<usize> = match call.query.get("fields") {
        Some(list) => {
            let mut idxs = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
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
            idxs
        }
        None => (0..obj.fields.len()).collect(),
    };
    let mut out = format!(
        "{{\"attributes\":{{\"type\":\"{}\",\"url\":\"{}\"}}",
        obj.name,
        location(&call.version, &obj.name, id18)
    );
    for idx in wanted {
        out.push_str(&format!(",\"{}\":", obj.fields[idx].name));
        record.get(idx).unwrap_or(&Value::Null).write_json(&mut out);
    }
    out.push('}');
    Reply::raw_json(200, out)
}

fn by_external_id(
    emu: &Emulator,
    org: &mut Org,
    call: &Call,
    object: usize,
    field_name: &str,
    value: &str,
) -> Reply {
    let obj = &emu.shared.schema.objects[object];
    let Some(field) = obj
        .field_idx(field_name)
        .filter(|&i| obj.fields[i].external_id || i == 0)
    else {
        return ext_field_missing(field_name);
    };
    let m = &call.method;
    if field == 0 {
        // `/sobjects/Case/Id/<id>` behaves like the id URL.
        return sobjects(emu, org, call, &obj.name.clone(), &[value]);
    }
    let key = match write::convert(&obj.fields[field], &Json::String(value.to_string())) {
        Ok(v) => v,
        Err(err) => return Reply::error(400, err),
    };
    let matches = org.store.find_by_index(object, field, &key);
    if m == Method::GET || m == Method::DELETE {
        return match matches.as_slice() {
            [] => Reply::not_found(),
            [one] => {
                let id = one.to_string();
                if m == Method::GET {
                    retrieve(emu, org, call, object, &id)
                } else {
                    write::soft_delete(&mut org.store, ctx(emu), object, &id);
                    Reply::empty(204)
                }
            }
            many => multiple_choices(call, &obj.name, many),
        };
    }
    if m != Method::PATCH {
        return Reply::error(
            405,
            ApiErr::new(
                "METHOD_NOT_ALLOWED",
                format!("HTTP Method '{m}' not allowed. Allowed are GET,HEAD,PATCH,DELETE"),
            ),
        );
    }
    let body = match body_map(call) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(bad) = body
        .keys()
        .find(|k| k.eq_ignore_ascii_case("Id") || k.eq_ignore_ascii_case(&obj.fields[field].name))
    {
        return Reply::error(
            400,
            ApiErr::new(
                "INVALID_FIELD",
                format!("Do not specify Id or an external ID field in the request body: {bad}"),
            ),
        );
    }
    match upsert_one(
        emu,
        org,
        object,
        field,
        &key,
        body,
        call.query.get("updateOnly").is_some_and(|v| v == "true"),
    ) {
        UpsertOutcome::Created(id) => Reply::json(
            201,
            &json!({"id": id, "success": true, "errors": [], "created": true}),
        )
        .header("Location", location(&call.version, &obj.name, &id)),
        UpsertOutcome::Updated(id) => Reply::json(
            200,
            &json!({"id": id, "success": true, "errors": [], "created": false}),
        ),
        UpsertOutcome::Multiple(ids) => multiple_choices(call, &obj.name, &ids),
        UpsertOutcome::NotFound => Reply::not_found(),
        UpsertOutcome::Failed(errors) => Reply::errors(400, &errors),
    }
}

fn multiple_choices(call: &Call, object: &str, ids: &[Box<str>]) -> Reply {
    let urls: Vec<Json> = ids
        .iter()
        .map(|id| Json::String(location(&call.version, object, id)))
        .collect();
    Reply::json(300, &Json::Array(urls))
}

/// The result of one upsert.
pub(crate) enum UpsertOutcome {
    Created(String),
    Updated(String),
    Multiple(Vec<Box<str>>),
    NotFound,
    Failed(Vec<ApiErr>),
}

/// Upserts one record by an external-ID value (shared with Collections).
pub(crate) fn upsert_one(
    emu: &Emulator,
    org: &mut Org,
    object: usize,
    field: usize,
    key: &Value,
    body: &Map<String, Json>,
    update_only: bool,
) -> UpsertOutcome {
    let matches = org.store.find_by_index(object, field, key);
    match matches.as_slice() {
        [] if update_only => UpsertOutcome::NotFound,
        [] => {
            let mut with_key = body.clone();
            with_key.insert(
                emu.shared.schema.objects[object].fields[field].name.clone(),
                key.to_json(),
            );
            match write::create(&mut org.store, ctx(emu), object, &with_key) {
                Ok(id) => UpsertOutcome::Created(id),
                Err(errors) => UpsertOutcome::Failed(errors),
            }
        }
        [one] => {
            let id = one.to_string();
            match write::update(&mut org.store, ctx(emu), object, &id, body) {
                Ok(()) => UpsertOutcome::Updated(id),
                Err(errors) => UpsertOutcome::Failed(errors),
            }
        }
        many => UpsertOutcome::Multiple(many.to_vec()),
    }
}

fn query(emu: &Emulator, org: &mut Org, call: &Call, all_rows: bool) -> Reply {
    let Some(q) = call.query.get("q") else {
        return Reply::error(
            400,
            ApiErr::new("MALFORMED_QUERY", "A query string has to be specified"),
        );
    };
    let compiled = match soql::compile(&emu.shared.schema, q, emu.shared.clock.today()) {
        Ok(c) => c,
        Err(err) => return Reply::error(400, err),
    };
    let ids = soql::execute(&org.store, &compiled, all_rows);
    if compiled.count {
        return Reply::json(
            200,
            &json!({"totalSize": ids.len(), "done": true, "records": []}),
        );
    }
    let batch_size = call.batch_size.unwrap_or(2000).clamp(200, 2000);
    let cursor = Cursor {
        query: compiled,
        ids,
        last_used_ms: emu.shared.clock.now_ms(),
        batch_size,
    };
    page(
        emu.shared.config.locator_idle_timeout.as_millis() as i64,
        org,
        &call.version,
        cursor,
        0,
        if all_rows { "queryAll" } else { "query" },
    )
}

fn page(
    cursor_idle_ms: i64,
    org: &mut Org,
    version: &str,
    cursor: Cursor,
    offset: usize,
    resource: &str,
) -> Reply {
    let total = cursor.ids.len();
    let end = (offset + cursor.batch_size).min(total);
    let mut out = format!("{{\"totalSize\":{total},\"done\":{}", end >= total);
    let locator = if end < total {
        let locator = id::make_id("01g", org.locator_seq);
        org.locator_seq += 1;
        out.push_str(&format!(
            ",\"nextRecordsUrl\":\"/services/data/v{version}/{resource}/{locator}-{end}\""
        ));
        Some(locator)
    } else {
        None
    };
    out.push_str(",\"records\":[");
    for (i, id) in cursor.ids[offset.min(total)..end].iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(record) = org.store.get(cursor.query.object, id) {
            soql::render_json(
                &org.store,
                version,
                cursor.query.object,
                record,
                &cursor.query.fields,
                &mut out,
            );
        } else {
            out.push_str("null");
        }
    }
    out.push_str("]}");
    if let Some(locator) = locator {
        // Abandoned cursors expire like Salesforce's (idle timeout); drop them here.
        let idle = cursor_idle_ms;
        org.cursors
            .retain(|_, c| cursor.last_used_ms - c.last_used_ms <= idle);
        org.cursors.insert(locator, cursor);
    }
    Reply::raw_json(200, out)
}

fn query_more(emu: &Emulator, org: &mut Org, call: &Call, locator: &str) -> Reply {
    let invalid = || {
        Reply::error(
            400,
            ApiErr::new("INVALID_QUERY_LOCATOR", "invalid query locator"),
        )
    };
    let Some((cursor_id, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let now = emu.shared.clock.now_ms();
    let idle = emu.shared.config.locator_idle_timeout.as_millis() as i64;
    let Some(mut cursor) = org.cursors.remove(cursor_id) else {
        return invalid();
    };
    if now - cursor.last_used_ms > idle {
        return invalid();
    }
    cursor.last_used_ms = now;
    let resource = call.segments[0].clone();
    page(
        emu.shared.config.locator_idle_timeout.as_millis() as i64,
        org,
        &call.version,
        cursor,
        offset,
        &resource,
    )
}
