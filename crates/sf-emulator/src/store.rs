//! The org's records: one table per object, sparse records, unique and
//! external-ID indexes, auto-number counters, and an undo log that gives
//! `allOrNone` and composite requests real rollback.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::id;
use crate::schema::{FieldType, Schema};
use crate::value::Value;

/// One stored record: its 18-character id and its non-null values.
#[derive(Debug, Clone)]
pub struct Record {
    /// 18-character id.
    pub id: Box<str>,
    /// Non-null values sorted by field index.
    pub values: Vec<(u16, Value)>,
}

impl Record {
    /// The value of a field, `None` when null.
    pub fn get(&self, field_idx: usize) -> Option<&Value> {
        self.values
            .binary_search_by_key(&(field_idx as u16), |(i, _)| *i)
            .ok()
            .map(|pos| &self.values[pos].1)
    }

    /// Sets (or, with `Value::Null`, clears) a field.
    pub fn set(&mut self, field_idx: usize, value: Value) {
        let key = field_idx as u16;
        match self.values.binary_search_by_key(&key, |(i, _)| *i) {
            Ok(pos) if value == Value::Null => {
                self.values.remove(pos);
            }
            Ok(pos) => self.values[pos].1 = value,
            Err(_) if value == Value::Null => {}
            Err(pos) => self.values.insert(pos, (key, value)),
        }
    }

    /// Whether the record is in the recycle bin (`IsDeleted`).
    pub fn is_deleted(&self, is_deleted_idx: usize) -> bool {
        matches!(self.get(is_deleted_idx), Some(Value::Bool(true)))
    }
}

/// One object's records and indexes.
#[derive(Debug, Default)]
pub struct Table {
    /// Records by id; id order is creation order.
    pub records: BTreeMap<Box<str>, Record>,
    /// External-ID and unique field indexes: field → key → ids.
    indexes: HashMap<u16, HashMap<Box<str>, Vec<Box<str>>>>,
}

struct Undo {
    object: usize,
    id: Box<str>,
    previous: Option<Record>,
}

/// All records of the org.
pub struct Store {
    /// The schema the tables follow.
    pub schema: Arc<Schema>,
    /// One table per object, indexed like `schema.objects`.
    pub tables: Vec<Table>,
    /// Next id sequence number (shared by all objects).
    pub id_seq: u64,
    /// Auto-number counters by (object, field).
    pub autonumbers: HashMap<(usize, usize), u64>,
    undo: Option<Vec<Undo>>,
    txn_depth: usize,
    /// Shared copies of repeated strings (picklist values, lookup ids).
    interned: HashSet<Arc<str>>,
    /// Set whenever records change; the persister clears it.
    pub dirty: bool,
}

impl Store {
    /// An empty store for `schema`.
    pub fn new(schema: Arc<Schema>) -> Self {
        let tables = schema.objects.iter().map(|_| Table::default()).collect();
        Store {
            schema,
            tables,
            id_seq: 1,
            autonumbers: HashMap::new(),
            undo: None,
            txn_depth: 0,
            interned: HashSet::new(),
            dirty: false,
        }
    }

    /// A fresh id for an object.
    pub fn next_id(&mut self, object: usize) -> String {
        let seq = self.id_seq;
        self.id_seq += 1;
        id::make_id(&self.schema.objects[object].key_prefix, seq)
    }

    /// The next auto-number value of a field, formatted like `{00000000}` / `SA-{0000}`.
    pub fn next_autonumber(&mut self, object: usize, field: usize) -> String {
        let counter = self.autonumbers.entry((object, field)).or_insert(0);
        *counter += 1;
        let n = *counter;
        let FieldType::AutoNumber(format) = &self.schema.objects[object].fields[field].ty else {
            return n.to_string();
        };
        match (format.find('{'), format.find('}')) {
            (Some(open), Some(close)) if close > open => {
                let width = close - open - 1;
                format!("{}{:0width$}{}", &format[..open], n, &format[close + 1..])
            }
            _ => format!("{format}{n}"),
        }
    }

    /// A record by object and canonical id (deleted records included).
    pub fn get(&self, object: usize, id: &str) -> Option<&Record> {
        self.tables[object].records.get(id)
    }

    /// Number of live (not deleted) records of an object.
    pub fn live_count(&self, object: usize) -> usize {
        let deleted = self.schema.objects[object]
            .field_idx("IsDeleted")
            .unwrap_or(usize::MAX);
        self.tables[object]
            .records
            .values()
            .filter(|r| !r.is_deleted(deleted))
            .count()
    }

    fn index_key(&self, object: usize, field: usize, value: &Value) -> Option<Box<str>> {
        let def = &self.schema.objects[object].fields[field];
        let text = match value {
            Value::Str(s) => s.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Num(n) => n.to_string(),
            _ => return None,
        };
        Some(if def.case_sensitive {
            text.into()
        } else {
            text.to_lowercase().into()
        })
    }

    fn indexed_fields(&self, object: usize) -> impl Iterator<Item = usize> + '_ {
        self.schema.objects[object]
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.external_id || f.unique)
            .map(|(i, _)| i)
    }

    /// Ids of live records whose indexed field equals `value` (external IDs, unique fields).
    pub fn find_by_index(&self, object: usize, field: usize, value: &Value) -> Vec<Box<str>> {
        let Some(key) = self.index_key(object, field, value) else {
            return Vec::new();
        };
        self.tables[object]
            .indexes
            .get(&(field as u16))
            .and_then(|m| m.get(&key))
            .cloned()
            .unwrap_or_default()
    }

    fn unindex(&mut self, object: usize, record: &Record) {
        let fields: Vec<usize> = self.indexed_fields(object).collect();
        for field in fields {
            if let Some(key) = record
                .get(field)
                .and_then(|v| self.index_key(object, field, v))
            {
                if let Some(map) = self.tables[object].indexes.get_mut(&(field as u16)) {
                    if let Some(ids) = map.get_mut(&key) {
                        ids.retain(|id| *id != record.id);
                        if ids.is_empty() {
                            map.remove(&key);
                        }
                    }
                }
            }
        }
    }

    fn index(&mut self, object: usize, record: &Record) {
        let deleted_idx = self.schema.objects[object]
            .field_idx("IsDeleted")
            .unwrap_or(usize::MAX);
        if record.is_deleted(deleted_idx) {
            return;
        }
        let fields: Vec<usize> = self.indexed_fields(object).collect();
        for field in fields {
            if let Some(key) = record
                .get(field)
                .and_then(|v| self.index_key(object, field, v))
            {
                self.tables[object]
                    .indexes
                    .entry(field as u16)
                    .or_default()
                    .entry(key)
                    .or_default()
                    .push(record.id.clone());
            }
        }
    }

    /// Inserts or replaces a record, keeping indexes and the undo log.
    pub fn put(&mut self, object: usize, mut record: Record) {
        // Records are written once and read many times: drop spare capacity.
        record.values.shrink_to_fit();
        self.intern(object, &mut record);
        let previous = self.tables[object].records.remove(&record.id);
        if let Some(prev) = &previous {
            self.unindex(object, prev);
        }
        if let Some(log) = &mut self.undo {
            log.push(Undo {
                object,
                id: record.id.clone(),
                previous,
            });
        }
        self.index(object, &record);
        self.tables[object]
            .records
            .insert(record.id.clone(), record);
        self.dirty = true;
    }

    /// Replaces picklist and reference strings by shared copies: a million
    /// Work Orders then hold a handful of status strings, not a million.
    fn intern(&mut self, object: usize, record: &mut Record) {
        let schema = self.schema.clone();
        let fields = &schema.objects[object].fields;
        for (idx, value) in record.values.iter_mut() {
            let Value::Str(text) = value else { continue };
            if !matches!(
                fields[*idx as usize].ty,
                FieldType::Picklist(_) | FieldType::Reference(_)
            ) {
                continue;
            }
            match self.interned.get(&**text) {
                Some(shared) => *text = shared.clone(),
                None => {
                    self.interned.insert(text.clone());
                }
            }
        }
    }

    fn restore(&mut self, undo: Undo) {
        if let Some(current) = self.tables[undo.object].records.remove(&undo.id) {
            self.unindex(undo.object, &current);
        }
        if let Some(prev) = undo.previous {
            self.index(undo.object, &prev);
            self.tables[undo.object]
                .records
                .insert(prev.id.clone(), prev);
        }
    }

    /// Starts recording changes so they can be rolled back; returns a savepoint.
    pub fn begin(&mut self) -> usize {
        self.txn_depth += 1;
        self.undo.get_or_insert_with(Vec::new).len()
    }

    /// Undoes every change made after `savepoint`.
    pub fn rollback_to(&mut self, savepoint: usize) {
        while let Some(log) = &mut self.undo {
            if log.len() <= savepoint {
                break;
            }
            let Some(undo) = log.pop() else { break };
            self.restore(undo);
        }
    }

    /// Ends a transaction started with [`Store::begin`]; the outermost one
    /// stops recording changes.
    pub fn commit(&mut self) {
        self.txn_depth = self.txn_depth.saturating_sub(1);
        if self.txn_depth == 0 {
            self.undo = None;
        }
    }

    /// Finds the object of a canonical id by its key prefix.
    pub fn object_of_id(&self, id: &str) -> Option<usize> {
        self.schema.object_by_prefix(id::key_prefix(id))
    }
}
