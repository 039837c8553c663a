//! Record writes with Salesforce's validation, in the reference's order
//! (§8): unknown field → not createable/updateable → required → restricted
//! picklist → length → number range → reference ids → object rules → unique.
//! All errors of a record are reported together.

use serde_json::{Map, Value as Json};

use crate::error::ApiErr;
use crate::id::{self, IdError};
use crate::schema::{standard::CLOSED_WO_STATUSES, FieldDef, FieldType, ObjectSchema};
use crate::store::{Record, Store};
use crate::time;
use crate::value::Value;

/// Who writes and when.
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx<'a> {
    /// Current time, epoch ms.
    pub now_ms: i64,
    /// The calling user's id.
    pub user_id: &'a str,
    /// Fixtures may set read-only and system fields (history seeding).
    pub trusted: bool,
}

/// Create or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
}

/// Creates a record; returns its id or every validation error.
///
/// # Errors
/// The record's validation errors, in Salesforce's order.
pub fn create(
    store: &mut Store,
    ctx: WriteCtx<'_>,
    object: usize,
    body: &Map<String, Json>,
) -> Result<String, Vec<ApiErr>> {
    let changes = prepare(store, ctx, object, body, Op::Create, None)?;
    let id = store.next_id(object);
    let schema = store.schema.clone();
    let obj = &schema.objects[object];
    let mut record = Record {
        id: id.clone().into(),
        values: Vec::new(),
    };
    record.set(0, Value::Str(id.clone().into()));
    for (idx, field) in obj.fields.iter().enumerate() {
        if let FieldType::AutoNumber(_) = field.ty {
            let n = store.next_autonumber(object, idx);
            record.set(idx, Value::Str(n.into()));
        } else if let FieldType::Picklist(p) = &field.ty {
            if let Some(default) = &p.default {
                record.set(idx, Value::Str(default.as_str().into()));
            }
        } else if let Some(b) = field.default_bool {
            record.set(idx, Value::Bool(b));
        }
    }
    set_system(obj, &mut record, "IsDeleted", Value::Bool(false));
    for name in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
        set_system(obj, &mut record, name, Value::DateTime(ctx.now_ms));
    }
    for name in ["CreatedById", "LastModifiedById", "OwnerId"] {
        set_system(obj, &mut record, name, Value::Str(ctx.user_id.into()));
    }
    for (idx, value) in changes {
        record.set(idx, value);
    }
    derive(store, object, &mut record, None);
    number_line_item(store, object, &mut record);
    store.put(object, record);
    Ok(id)
}

/// `LineItemNumber` counts per Work Order from 1, and the parent's
/// `LineItemCount` follows (reference §5.5).
fn number_line_item(store: &mut Store, object: usize, record: &mut Record) {
    let schema = store.schema.clone();
    if schema.objects[object].name != "WorkOrderLineItem" {
        return;
    }
    let obj = &schema.objects[object];
    let Some(parent_id) = obj
        .field_idx("WorkOrderId")
        .and_then(|i| record.get(i))
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let Some(wo) = schema.object_idx("WorkOrder") else {
        return;
    };
    let Some(count_idx) = schema.objects[wo].field_idx("LineItemCount") else {
        return;
    };
    let Some(mut parent) = store.get(wo, &parent_id).cloned() else {
        return;
    };
    let n = match parent.get(count_idx) {
        Some(Value::Int(n)) => n + 1,
        _ => 1,
    };
    parent.set(count_idx, Value::Int(n));
    store.put(wo, parent);
    if let Some(number_idx) = obj.field_idx("LineItemNumber") {
        record.set(number_idx, Value::Str(format!("{n:05}").into()));
    }
}

/// Updates a live record (the caller resolved `id` and checked it exists).
///
/// # Errors
/// The record's validation errors, in Salesforce's order.
pub fn update(
    store: &mut Store,
    ctx: WriteCtx<'_>,
    object: usize,
    id: &str,
    body: &Map<String, Json>,
) -> Result<(), Vec<ApiErr>> {
    let existing = store
        .get(object, id)
        .cloned()
        .ok_or_else(|| vec![ApiErr::not_found()])?;
    let changes = prepare(store, ctx, object, body, Op::Update, Some(&existing))?;
    let schema = store.schema.clone();
    let obj = &schema.objects[object];
    let mut record = existing.clone();
    for (idx, value) in changes {
        record.set(idx, value);
    }
    if !(ctx.trusted
        && body
            .keys()
            .any(|k| k.eq_ignore_ascii_case("LastModifiedDate")))
    {
        set_system(
            obj,
            &mut record,
            "LastModifiedDate",
            Value::DateTime(ctx.now_ms),
        );
    }
    if !(ctx.trusted
        && body
            .keys()
            .any(|k| k.eq_ignore_ascii_case("SystemModstamp")))
    {
        set_system(
            obj,
            &mut record,
            "SystemModstamp",
            Value::DateTime(ctx.now_ms),
        );
    }
    set_system(
        obj,
        &mut record,
        "LastModifiedById",
        Value::Str(ctx.user_id.into()),
    );
    derive(store, object, &mut record, Some(&existing));
    store.put(object, record);
    Ok(())
}

/// Moves a record to the recycle bin (`IsDeleted = true`).
pub fn soft_delete(store: &mut Store, ctx: WriteCtx<'_>, object: usize, id: &str) {
    let schema = store.schema.clone();
    let obj = &schema.objects[object];
    if let Some(mut record) = store.get(object, id).cloned() {
        set_system(obj, &mut record, "IsDeleted", Value::Bool(true));
        set_system(
            obj,
            &mut record,
            "SystemModstamp",
            Value::DateTime(ctx.now_ms),
        );
        store.put(object, record);
    }
}

fn set_system(obj: &ObjectSchema, record: &mut Record, name: &str, value: Value) {
    if let Some(idx) = obj.field_idx(name) {
        record.set(idx, value);
    }
}

/// Fields the emulator computes from others.
fn derive(store: &Store, object: usize, record: &mut Record, previous: Option<&Record>) {
    let obj = &store.schema.objects[object];
    let status = obj
        .field_idx("Status")
        .and_then(|i| record.get(i))
        .and_then(Value::as_str)
        .map(str::to_string);
    match obj.name.as_str() {
        "Case" => {
            // The status's `closed` flag from the CaseStatus value set decides.
            let closed = status.as_deref().is_some_and(|status| {
                obj.field_idx("Status")
                    .and_then(|i| match &obj.fields[i].ty {
                        FieldType::Picklist(p) => Some(p.closed.iter().any(|c| c == status)),
                        _ => None,
                    })
                    .unwrap_or(false)
            });
            set_system(obj, record, "IsClosed", Value::Bool(closed));
            let was_closed = previous
                .and_then(|p| obj.field_idx("IsClosed").and_then(|i| p.get(i)))
                == Some(&Value::Bool(true));
            if closed && !was_closed {
                let now = obj
                    .field_idx("LastModifiedDate")
                    .and_then(|i| record.get(i))
                    .cloned()
                    .unwrap_or(Value::Null);
                set_system(obj, record, "ClosedDate", now);
            } else if !closed {
                set_system(obj, record, "ClosedDate", Value::Null);
            }
        }
        "WorkOrder" | "WorkOrderLineItem" => {
            if let Some(status) = status {
                let category = match status.as_str() {
                    "New" | "In Progress" | "On Hold" | "Completed" | "Cannot Complete"
                    | "Closed" | "Canceled" => status.replace(' ', ""),
                    _ => "None".to_string(),
                };
                set_system(obj, record, "StatusCategory", Value::Str(category.into()));
                set_system(
                    obj,
                    record,
                    "IsClosed",
                    Value::Bool(CLOSED_WO_STATUSES.contains(&status.as_str())),
                );
            }
            if obj.name == "WorkOrder" {
                let flag = obj.field_idx("IsGeneratedFromMaintenancePlan");
                if flag.and_then(|i| record.get(i)).is_none() {
                    set_system(
                        obj,
                        record,
                        "IsGeneratedFromMaintenancePlan",
                        Value::Bool(false),
                    );
                }
            }
        }
        "Asset" => {
            let parent = obj
                .field_idx("ParentId")
                .and_then(|i| record.get(i))
                .cloned();
            let root = parent.unwrap_or_else(|| Value::Str(record.id.as_ref().into()));
            set_system(obj, record, "RootAssetId", root);
            if obj
                .field_idx("AssetLevel")
                .and_then(|i| record.get(i))
                .is_none()
            {
                set_system(obj, record, "AssetLevel", Value::Int(1));
            }
        }
        "MaintenancePlan" => set_system(
            obj,
            record,
            "WorkOrderGenerationStatus",
            Value::Str("NotStarted".into()),
        ),
        "ServiceAppointment" => {
            let parent = obj
                .field_idx("ParentRecordId")
                .and_then(|i| record.get(i))
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(parent_obj) = parent.and_then(|p| store.object_of_id(&p)) {
                let name = store.schema.objects[parent_obj].name.clone();
                set_system(obj, record, "ParentRecordType", Value::Str(name.into()));
            }
        }
        _ => {}
    }
}

const SYSTEM_WRITABLE_WHEN_TRUSTED: &[&str] = &[
    "CreatedDate",
    "LastModifiedDate",
    "SystemModstamp",
    "CreatedById",
    "LastModifiedById",
];

/// Converts and validates a JSON body into field changes.
fn prepare(
    store: &Store,
    ctx: WriteCtx<'_>,
    object: usize,
    body: &Map<String, Json>,
    op: Op,
    existing: Option<&Record>,
) -> Result<Vec<(usize, Value)>, Vec<ApiErr>> {
    let schema = store.schema.clone();
    let obj = &schema.objects[object];
    let mut unknown = Vec::new();
    let mut not_writable = Vec::new();
    let mut parse_errors = Vec::new();
    let mut changes: Vec<(usize, Value)> = Vec::new();
    let mut relationship_lookups = Vec::new();
    for (key, json) in body {
        if key == "attributes" {
            continue;
        }
        let Some(idx) = obj.field_idx(key) else {
            if let (Some(rel_idx), Json::Object(map)) = (obj.relationship_idx(key), json) {
                relationship_lookups.push((rel_idx, map));
                continue;
            }
            unknown.push(ApiErr::new(
                "INVALID_FIELD",
                format!("No such column '{key}' on sobject of type {}", obj.name),
            ));
            continue;
        };
        let field = &obj.fields[idx];
        let writable = match op {
            Op::Create => field.createable,
            Op::Update => field.updateable,
        } || (ctx.trusted
            && (SYSTEM_WRITABLE_WHEN_TRUSTED.contains(&field.name.as_str())
                || (field.defaulted && field.name != "Id")));
        if !writable {
            not_writable.push(field.name.clone());
            continue;
        }
        match convert(field, json) {
            Ok(value) => changes.push((idx, value)),
            Err(err) => parse_errors.push(err),
        }
    }
    if !parse_errors.is_empty() {
        // A wrong JSON type fails deserialization before any field rule runs.
        return Err(parse_errors);
    }
    let mut errors = unknown;
    if !not_writable.is_empty() {
        errors.push(ApiErr::with_fields(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                not_writable.join(", ")
            ),
            not_writable,
        ));
    }
    // Relationship by external ID: {"Asset__r": {"FieldPulse_Key__c": "..."}}.
    for (rel_idx, map) in relationship_lookups {
        match resolve_relationship(store, &obj.fields[rel_idx], map) {
            Ok(id) => changes.push((rel_idx, Value::Str(id.into()))),
            Err(err) => errors.push(err),
        }
    }
    // Normalise references to their 18-character form.
    for (idx, value) in changes.iter_mut() {
        if let (FieldType::Reference(_), Value::Str(raw)) = (&obj.fields[*idx].ty, &*value) {
            if let Ok(id18) = id::normalize(raw) {
                *value = Value::Str(id18.into());
            }
        }
    }
    let value_of = |idx: usize| -> Option<&Value> {
        match changes.iter().rev().find(|(i, _)| *i == idx) {
            Some((_, Value::Null)) => None,
            Some((_, v)) => Some(v),
            None => existing.and_then(|r| r.get(idx)),
        }
    };
    let mut missing = Vec::new();
    for (idx, field) in obj.fields.iter().enumerate() {
        let is_required = match op {
            Op::Create => field.required_on_create(),
            Op::Update => {
                !field.nillable && changes.iter().any(|(i, v)| *i == idx && *v == Value::Null)
            }
        };
        if is_required && value_of(idx).is_none() && field.name != "OwnerId" {
            missing.push(field.name.clone());
        }
    }
    if !missing.is_empty() {
        errors.push(ApiErr::with_fields(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
            missing,
        ));
    }
    let mut picklist_errors = Vec::new();
    let mut length_errors = Vec::new();
    let mut range_errors = Vec::new();
    let mut reference_errors = Vec::new();
    for (idx, value) in &changes {
        let field = &obj.fields[*idx];
        match (&field.ty, value) {
            (FieldType::Picklist(p), Value::Str(s))
                if p.restricted && !p.values.iter().any(|v| v == s.as_ref()) =>
            {
                picklist_errors.push(ApiErr::with_fields(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {s}",
                        field.label
                    ),
                    vec![field.name.clone()],
                ));
            }
            (FieldType::String(max) | FieldType::TextArea(max), Value::Str(s))
                if s.chars().count() > *max =>
            {
                length_errors.push(ApiErr::with_fields(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {} (max length={max})",
                        field.label,
                        s.chars().take(100).collect::<String>()
                    ),
                    vec![field.name.clone()],
                ));
            }
            (FieldType::Email, Value::Str(s)) if !valid_email(s) => {
                length_errors.push(ApiErr::with_fields(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {s}", field.label),
                    vec![field.name.clone()],
                ));
            }
            (
                FieldType::Double(p, s) | FieldType::Currency(p, s) | FieldType::Percent(p, s),
                Value::Num(n),
            ) if n.abs() >= 10f64.powi((*p as i32) - (*s as i32)) => {
                range_errors.push(out_of_range(field, &n.to_string()));
            }
            (FieldType::Int, Value::Int(n))
                if n.unsigned_abs() >= 1 << 31 || (field.name == "Frequency" && *n < 1) =>
            {
                range_errors.push(out_of_range(field, &n.to_string()));
            }
            (FieldType::Reference(_), Value::Str(raw)) => {
                if let Err(err) = check_reference(store, field, raw) {
                    reference_errors.push(err);
                }
            }
            _ => {}
        }
    }
    errors.extend(picklist_errors);
    errors.extend(length_errors);
    errors.extend(range_errors);
    errors.extend(reference_errors);
    if obj.name == "Asset" {
        let account = obj.field_idx("AccountId").and_then(value_of);
        let contact = obj.field_idx("ContactId").and_then(value_of);
        if account.is_none() && contact.is_none() {
            errors.push(ApiErr::with_fields(
                "FIELD_INTEGRITY_EXCEPTION",
                "Every asset needs an account, a contact, or both.",
                vec!["AccountId".into(), "ContactId".into()],
            ));
        }
    }
    for (idx, value) in &changes {
        let field = &obj.fields[*idx];
        if !field.unique || *value == Value::Null {
            continue;
        }
        let own_id = existing.map(|r| r.id.clone());
        if let Some(other) = store
            .find_by_index(object, *idx, value)
            .into_iter()
            .find(|id| Some(id) != own_id.as_ref())
        {
            errors.push(ApiErr::new(
                "DUPLICATE_VALUE",
                format!(
                    "duplicate value found: {} duplicates value on record with id: {}",
                    field.name,
                    &other[..15]
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

fn out_of_range(field: &FieldDef, value: &str) -> ApiErr {
    ApiErr::with_fields(
        "NUMBER_OUTSIDE_VALID_RANGE",
        format!(
            "{}: value outside of valid range on numeric field: {value}",
            field.label
        ),
        vec![field.name.clone()],
    )
}

fn valid_email(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(' ')
        && !domain.contains('@')
}

/// Converts a JSON value to the field's type, or a `JSON_PARSER_ERROR`.
pub fn convert(field: &FieldDef, json: &Json) -> Result<Value, ApiErr> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = |kind: &str| {
        ApiErr::new(
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize instance of {kind} from {} value {json} or request may be missing a required field", json_token(json)),
        )
    };
    Ok(match &field.ty {
        FieldType::Boolean => Value::Bool(json.as_bool().ok_or_else(|| mismatch("boolean"))?),
        FieldType::Int => {
            let n = json.as_f64().ok_or_else(|| mismatch("int"))?;
            if n.fract() != 0.0 {
                return Err(mismatch("int"));
            }
            Value::Int(n as i64)
        }
        FieldType::Double(_, scale)
        | FieldType::Currency(_, scale)
        | FieldType::Percent(_, scale) => {
            let n = json.as_f64().ok_or_else(|| mismatch("double"))?;
            let factor = 10f64.powi(*scale as i32);
            Value::Num((n * factor).round() / factor)
        }
        FieldType::Date => {
            let s = json.as_str().ok_or_else(|| mismatch("date"))?;
            // Salesforce also accepts a datetime for a date field and keeps the date part.
            let days = time::parse_date(s)
                .or_else(|| time::parse_datetime(s).map(|ms| ms.div_euclid(time::DAY_MS) as i32));
            Value::Date(days.ok_or_else(|| ApiErr::new("JSON_PARSER_ERROR", format!("Cannot deserialize value of type `date` from String \"{s}\": expected format \"yyyy-MM-dd\"")))?)
        }
        FieldType::DateTime => {
            let s = json.as_str().ok_or_else(|| mismatch("datetime"))?;
            Value::DateTime(time::parse_datetime(s).ok_or_else(|| {
                ApiErr::new("JSON_PARSER_ERROR", format!("Cannot deserialize value of type `datetime` from String \"{s}\": expected format \"yyyy-MM-dd'T'HH:mm:ss.SSSZ\""))
            })?)
        }
        _ => Value::Str(json.as_str().ok_or_else(|| mismatch("string"))?.into()),
    })
}

fn json_token(json: &Json) -> &'static str {
    match json {
        Json::Bool(_) => "VALUE_TRUE",
        Json::Number(_) => "VALUE_NUMBER_INT",
        Json::String(_) => "VALUE_STRING",
        Json::Array(_) => "START_ARRAY",
        Json::Object(_) => "START_OBJECT",
        Json::Null => "VALUE_NULL",
    }
}

/// Checks a lookup id in a body: malformed → `MALFORMED_ID`; wrong object →
/// `FIELD_INTEGRITY_EXCEPTION`; missing or deleted → `INVALID_CROSS_REFERENCE_KEY`.
fn check_reference(store: &Store, field: &FieldDef, raw: &str) -> Result<(), ApiErr> {
    let label = field.label.trim_end_matches(" ID");
    let id18 = match id::normalize(raw) {
        Ok(id) => id,
        Err(IdError::Length | IdError::Charset | IdError::Checksum) => {
            return Err(ApiErr::with_fields(
                "MALFORMED_ID",
                format!("{label} ID: id value of incorrect type: {raw}"),
                vec![field.name.clone()],
            ));
        }
    };
    let target = store.object_of_id(&id18).filter(|&o| {
        field
            .reference_to()
            .iter()
            .any(|t| *t == store.schema.objects[o].name)
    });
    let Some(target) = target else {
        return Err(ApiErr::with_fields(
            "FIELD_INTEGRITY_EXCEPTION",
            format!("{label} ID: id value of incorrect type: {raw}"),
            vec![field.name.clone()],
        ));
    };
    let deleted_idx = store.schema.objects[target]
        .field_idx("IsDeleted")
        .unwrap_or(usize::MAX);
    match store.get(target, &id18) {
        Some(record) if !record.is_deleted(deleted_idx) => Ok(()),
        _ => Err(ApiErr::new(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
        )),
    }
}

fn resolve_relationship(
    store: &Store,
    field: &FieldDef,
    map: &Map<String, Json>,
) -> Result<String, ApiErr> {
    let target_name = field.reference_to().first().cloned().unwrap_or_default();
    let target = store
        .schema
        .object_idx(&target_name)
        .ok_or_else(ApiErr::not_found)?;
    let target_obj = &store.schema.objects[target];
    let Some((key, json)) = map.iter().find(|(k, _)| k.as_str() != "attributes") else {
        return Err(ApiErr::new(
            "INVALID_FIELD",
            format!(
                "No external ID given for relationship {}",
                field.relationship_name.clone().unwrap_or_default()
            ),
        ));
    };
    let Some(ext_idx) = target_obj
        .field_idx(key)
        .filter(|&i| target_obj.fields[i].external_id || target_obj.fields[i].name == "Id")
    else {
        return Err(ApiErr::new(
            "INVALID_FIELD",
            format!(
                "Field name provided, {key} is not an External ID or indexed field for {}",
                target_obj.name
            ),
        ));
    };
    if ext_idx == 0 {
        let raw = json.as_str().unwrap_or_default();
        check_reference(store, field, raw)?;
        return id::normalize(raw).map_err(|_| {
            ApiErr::new("MALFORMED_ID", format!("id value of incorrect type: {raw}"))
        });
    }
    let value = convert(&target_obj.fields[ext_idx], json)?;
    let matches = store.find_by_index(target, ext_idx, &value);
    match matches.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(ApiErr::new("INVALID_FIELD", format!("Foreign key external ID: {} not found for field {key} in entity {}", json.as_str().unwrap_or_default(), target_obj.name))),
        _ => Err(ApiErr::new("INVALID_FIELD", format!("Foreign key external ID: {} matched more than one record for field {key} in entity {}", json.as_str().unwrap_or_default(), target_obj.name))),
    }
}
