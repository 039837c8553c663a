//! The pure part of a send pass: which tier an sObject belongs to,
//! coalescing pending rows of one key into one record, and the parent keys a
//! record references. No IO; unit-tested without a runtime.

use serde_json::{Map, Value as Json};

use super::{ASSET, KEY_FIELD, SF_ID_OF};

/// Parents before children: 0 = Case, MaintenancePlan; 1 = Asset_Alert__c,
/// MaintenanceAsset, Asset; 2 = AI_Insight__c. `None` for other objects.
pub fn tier(sobject: &str) -> Option<u8> {
    match sobject {
        "Case" | "MaintenancePlan" => Some(0),
        "Asset_Alert__c" | "MaintenanceAsset" | ASSET => Some(1),
        "AI_Insight__c" => Some(2),
        _ => None,
    }
}

/// Number of tiers.
pub const TIERS: u8 = 3;

/// One pending row as read from SQLite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingRow {
    pub id: i64,
    pub sobject: String,
    pub ext_key: String,
    pub fields: Map<String, Json>,
    /// The stored fields were not a JSON object.
    pub corrupt: bool,
    pub priority: u8,
    pub deferrable: bool,
    pub source_ms: i64,
    pub attempts: u32,
}

/// Every pending row of one (sobject, key), merged into one record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub sobject: String,
    pub ext_key: String,
    /// The rows it stands for (all are marked together).
    pub row_ids: Vec<i64>,
    /// Fields in row order, later rows winning.
    pub fields: Map<String, Json>,
    /// Most urgent of the rows.
    pub priority: u8,
    /// Only if every row may wait.
    pub deferrable: bool,
    /// Earliest of the rows (latency is measured from it).
    pub source_ms: i64,
    /// Most attempts any row has had.
    pub attempts: u32,
    /// Some row's stored fields were unreadable.
    pub corrupt: bool,
}

/// Coalesces rows (in id order) by (sobject, key); groups come out in the
/// order of their first row.
pub(crate) fn coalesce(rows: Vec<PendingRow>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for row in rows {
        let key = (row.sobject.clone(), row.ext_key.clone());
        match index.get(&key) {
            Some(&i) => {
                let group = &mut groups[i];
                group.row_ids.push(row.id);
                group.fields.extend(row.fields);
                group.priority = group.priority.min(row.priority);
                group.deferrable &= row.deferrable;
                group.source_ms = group.source_ms.min(row.source_ms);
                group.attempts = group.attempts.max(row.attempts);
                group.corrupt |= row.corrupt;
            }
            None => {
                index.insert(key, groups.len());
                groups.push(Group {
                    sobject: row.sobject,
                    ext_key: row.ext_key,
                    row_ids: vec![row.id],
                    fields: row.fields,
                    priority: row.priority,
                    deferrable: row.deferrable,
                    source_ms: row.source_ms,
                    attempts: row.attempts,
                    corrupt: row.corrupt,
                });
            }
        }
    }
    groups
}

/// Keys of records this one references: relationships by external ID
/// (`{"Case__r": {"FieldPulse_Key__c": "fp:case:..."}}`) and Id references
/// (`{"$sf_id": "fp:case:..."}`, replaced by the Salesforce Id at send time).
pub(crate) fn parent_keys(fields: &Map<String, Json>) -> Vec<String> {
    let mut keys = Vec::new();
    for value in fields.values() {
        if let Json::Object(inner) = value {
            for (name, key) in inner {
                if name == KEY_FIELD || name == SF_ID_OF {
                    if let Some(key) = key.as_str() {
                        if !keys.iter().any(|k| k == key) {
                            keys.push(key.to_string());
                        }
                    }
                }
            }
        }
    }
    keys
}

/// Replaces every `{"$sf_id": key}` value with the Id `resolve` returns.
pub(crate) fn resolve_ids(
    fields: &Map<String, Json>,
    mut resolve: impl FnMut(&str) -> Option<String>,
) -> Option<Map<String, Json>> {
    let mut out = Map::new();
    for (name, value) in fields {
        let key = match value {
            Json::Object(inner) if inner.len() == 1 => inner.get(SF_ID_OF).and_then(Json::as_str),
            _ => None,
        };
        let resolved = match key {
            Some(key) => Json::String(resolve(key)?),
            None => value.clone(),
        };
        out.insert(name.clone(), resolved);
    }
    Some(out)
}

/// Whether `ext_key` is a Salesforce Asset Id (prefix `02i`, 15 or 18
/// alphanumeric characters) rather than a serial number.
pub(crate) fn is_asset_id(ext_key: &str) -> bool {
    matches!(ext_key.len(), 15 | 18)
        && ext_key.starts_with("02i")
        && ext_key.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A SOQL string literal: quotes and backslashes escaped.
pub(crate) fn soql_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(
        id: i64,
        sobject: &str,
        key: &str,
        fields: Json,
        priority: u8,
        deferrable: bool,
    ) -> PendingRow {
        PendingRow {
            id,
            sobject: sobject.into(),
            ext_key: key.into(),
            fields: fields.as_object().cloned().expect("object"),
            corrupt: false,
            priority,
            deferrable,
            source_ms: 1000 - id,
            attempts: id as u32,
        }
    }

    #[test]
    fn rows_of_one_key_coalesce_with_later_fields_winning_and_the_earliest_source_kept() {
        let groups = coalesce(vec![
            row(
                1,
                "Case",
                "fp:case:a",
                json!({"Subject": "first", "Priority": "Low"}),
                2,
                true,
            ),
            row(
                2,
                "Asset_Alert__c",
                "fp:case:a",
                json!({"Score__c": 0.5}),
                1,
                true,
            ),
            row(
                3,
                "Case",
                "fp:case:a",
                json!({"Subject": "second"}),
                0,
                false,
            ),
        ]);
        assert_eq!(
            groups.len(),
            2,
            "the same key on another object is another record"
        );
        let case = &groups[0];
        assert_eq!(case.row_ids, [1, 3]);
        assert_eq!(case.fields["Subject"], "second");
        assert_eq!(case.fields["Priority"], "Low");
        assert_eq!(case.priority, 0);
        assert!(!case.deferrable, "one urgent row makes the record urgent");
        assert_eq!(case.source_ms, 997, "row 3 came from the earlier batch");
        assert_eq!(case.attempts, 3);
    }

    #[test]
    fn parents_are_found_in_relationships_and_id_references() {
        let fields = json!({
            "Case__r": {"FieldPulse_Key__c": "fp:case:1"},
            "Asset__c": "02i000000000001AAA",
            "Target_Record_Id__c": {"$sf_id": "fp:alert:1"},
            "Other__r": {"FieldPulse_Key__c": "fp:case:1"},
        });
        let fields = fields.as_object().expect("object");
        assert_eq!(parent_keys(fields), ["fp:case:1", "fp:alert:1"]);
        let resolved = resolve_ids(fields, |k| (k == "fp:alert:1").then(|| "a01X".into()))
            .expect("resolvable");
        assert_eq!(resolved["Target_Record_Id__c"], "a01X");
        assert_eq!(
            resolved["Case__r"],
            json!({"FieldPulse_Key__c": "fp:case:1"})
        );
        assert!(resolve_ids(fields, |_| None).is_none());
    }

    #[test]
    fn tiers_put_parents_first_and_asset_ids_are_told_from_serials() {
        assert!(tier("Case") < tier("Asset_Alert__c"));
        assert!(tier("MaintenancePlan") < tier("MaintenanceAsset"));
        assert!(tier("Asset_Alert__c") < tier("AI_Insight__c"));
        assert_eq!(tier("WorkOrder"), None);
        assert!(is_asset_id("02i000000000001AAA"));
        assert!(!is_asset_id("CP200-0104"));
        assert_eq!(soql_literal("O'Brien\\x"), "'O\\'Brien\\\\x'");
    }
}
