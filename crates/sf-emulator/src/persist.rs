//! The state file `state.jsonl` under `--state DIR`.
//!
//! Format: JSON Lines. Line 1 is a header
//! `{"format":"fieldpulse-sf-emulator-state","version":1,"id_seq":N,"autonumbers":[[object,field,n],...]}`;
//! every further line is one record `{"type":"Case","fields":{"Id":"500...",...}}`
//! in REST value formats. Writes go to `state.jsonl.tmp`, are fsynced, then
//! renamed over the old file (and the directory fsynced), so a crash leaves
//! either the old or the new state, never a torn one.

use std::io::{BufRead, Write};
use std::path::Path;

use serde_json::{json, Map, Value as Json};

use crate::server::EmulatorError;
use crate::store::{Record, Store};
use crate::value::Value;
use crate::write;

/// The state file name inside the state directory.
pub const STATE_FILE: &str = "state.jsonl";
const FORMAT: &str = "fieldpulse-sf-emulator-state";

/// Serialises every record (deleted ones included) and the counters.
pub fn snapshot(store: &Store) -> String {
    let autonumbers: Vec<Json> = store
        .autonumbers
        .iter()
        .map(|((o, f), n)| {
            json!([
                store.schema.objects[*o].name,
                store.schema.objects[*o].fields[*f].name,
                n
            ])
        })
        .collect();
    let mut out =
        json!({"format": FORMAT, "version": 1, "id_seq": store.id_seq, "autonumbers": autonumbers})
            .to_string();
    out.push('\n');
    for (object, table) in store.tables.iter().enumerate() {
        let obj = &store.schema.objects[object];
        for record in table.records.values() {
            out.push_str(&format!("{{\"type\":\"{}\",\"fields\":{{", obj.name));
            for (i, (idx, value)) in record.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("\"{}\":", obj.fields[*idx as usize].name));
                value.write_json(&mut out);
            }
            out.push_str("}}\n");
        }
    }
    out
}

/// Writes the snapshot atomically into `dir`.
///
/// # Errors
/// Any IO failure, with the path.
pub fn write_atomically(dir: &Path, text: &str) -> Result<(), EmulatorError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| EmulatorError::State { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let dest = dir.join(STATE_FILE);
    let mut file = std::fs::File::create(&tmp).map_err(err(&tmp))?;
    file.write_all(text.as_bytes()).map_err(err(&tmp))?;
    file.sync_all().map_err(err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &dest).map_err(err(&dest))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Directory fsync makes the rename durable; not supported everywhere.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads a state file if it exists.
///
/// # Errors
/// The file cannot be read or a line is not valid state.
pub fn load(store: &mut Store, path: &Path) -> Result<(), EmulatorError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(EmulatorError::State {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let invalid = |line: usize, reason: String| EmulatorError::Invalid {
        path: format!("{}:{line}", path.display()),
        reason,
    };
    let schema = store.schema.clone();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| EmulatorError::State {
            path: path.display().to_string(),
            source,
        })?;
        let value: Json = serde_json::from_str(&line).map_err(|e| invalid(n + 1, e.to_string()))?;
        if n == 0 {
            if value["format"] != FORMAT {
                return Err(invalid(1, "not an emulator state file".into()));
            }
            store.id_seq = value["id_seq"].as_u64().unwrap_or(1);
            for entry in value["autonumbers"].as_array().into_iter().flatten() {
                let (Some(o), Some(f), Some(count)) =
                    (entry[0].as_str(), entry[1].as_str(), entry[2].as_u64())
                else {
                    continue;
                };
                if let Some(oi) = schema.object_idx(o) {
                    if let Some(fi) = schema.objects[oi].field_idx(f) {
                        store.autonumbers.insert((oi, fi), count);
                    }
                }
            }
            continue;
        }
        let type_name = value["type"].as_str().unwrap_or_default();
        let object = schema
            .object_idx(type_name)
            .ok_or_else(|| invalid(n + 1, format!("unknown object {type_name}")))?;
        let obj = &schema.objects[object];
        let fields = value["fields"]
            .as_object()
            .ok_or_else(|| invalid(n + 1, "record without fields".into()))?;
        let id = fields
            .get("Id")
            .and_then(Json::as_str)
            .ok_or_else(|| invalid(n + 1, "record without Id".into()))?;
        let mut record = Record {
            id: id.into(),
            values: Vec::new(),
        };
        for (name, json) in fields {
            // A field removed from the metadata since the state was written is dropped.
            let Some(idx) = obj.field_idx(name) else {
                continue;
            };
            let v =
                write::convert(&obj.fields[idx], json).map_err(|e| invalid(n + 1, e.message))?;
            record.set(idx, v);
        }
        store.put(object, record);
    }
    Ok(())
}

/// Every live record of an object as JSON objects.
pub fn records_json(store: &Store, object: usize) -> Vec<Json> {
    let obj = &store.schema.objects[object];
    let deleted = obj.field_idx("IsDeleted").unwrap_or(usize::MAX);
    store.tables[object]
        .records
        .values()
        .filter(|r| !r.is_deleted(deleted))
        .map(|r| {
            let mut map = Map::new();
            for (idx, value) in &r.values {
                map.insert(obj.fields[*idx as usize].name.clone(), value.to_json());
            }
            Json::Object(map)
        })
        .collect()
}

/// Inserts the integration user record.
pub fn insert_user(store: &mut Store, user_obj: usize, id: &str, username: &str, now_ms: i64) {
    let obj = store.schema.objects[user_obj].clone();
    let mut record = Record {
        id: id.into(),
        values: Vec::new(),
    };
    let mut set = |name: &str, v: Value| {
        if let Some(i) = obj.field_idx(name) {
            record.set(i, v);
        }
    };
    set("Id", Value::Str(id.into()));
    set("Username", Value::Str(username.into()));
    set("LastName", Value::Str("Integration".into()));
    set("IsActive", Value::Bool(true));
    set("IsDeleted", Value::Bool(false));
    set("CreatedDate", Value::DateTime(now_ms));
    set("LastModifiedDate", Value::DateTime(now_ms));
    set("SystemModstamp", Value::DateTime(now_ms));
    store.put(user_obj, record);
}
