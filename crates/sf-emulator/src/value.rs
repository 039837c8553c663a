//! The compact in-memory field value. Records store only non-null values as
//! `(field index, Value)` pairs, which keeps a million Work Orders in a few
//! hundred megabytes.

use crate::time;

/// One stored field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (never stored; used while rendering and comparing).
    Null,
    /// `boolean`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `double`, `currency`, `percent`.
    Num(f64),
    /// Every text-like type, picklists and ids; repeated values (picklists,
    /// lookups) share one allocation through the store's interner.
    Str(std::sync::Arc<str>),
    /// `date`, days since the epoch.
    Date(i32),
    /// `datetime`, epoch milliseconds.
    DateTime(i64),
}

impl Value {
    /// Renders the value as JSON text (REST record format).
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Num(n) => out.push_str(
                &serde_json::Number::from_f64(*n)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "null".into()),
            ),
            Value::Str(s) => {
                out.push_str(&serde_json::to_string(s.as_ref()).expect("strings serialize"))
            }
            Value::Date(d) => {
                out.push('"');
                out.push_str(&time::format_date(*d));
                out.push('"');
            }
            Value::DateTime(ms) => {
                out.push('"');
                out.push_str(&time::format_datetime(*ms));
                out.push('"');
            }
        }
    }

    /// Renders the value as an unquoted CSV cell (Bulk results); `None` for null.
    pub fn to_csv_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => b.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Num(n) => n.to_string(),
            Value::Str(s) => s.to_string(),
            Value::Date(d) => time::format_date(*d),
            Value::DateTime(ms) => time::format_datetime_z(*ms),
        })
    }

    /// Converts to a `serde_json::Value` (admin endpoints, snapshots).
    pub fn to_json(&self) -> serde_json::Value {
        let mut s = String::new();
        self.write_json(&mut s);
        serde_json::from_str(&s).unwrap_or(serde_json::Value::Null)
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}
