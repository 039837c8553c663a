//! Salesforce error values and their two wire shapes: the REST error array
//! (`errorCode`) and the per-record Collections shape (`statusCode`).

use serde_json::json;

/// One Salesforce error.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiErr {
    /// `errorCode` / `statusCode`, e.g. `REQUIRED_FIELD_MISSING`.
    pub code: String,
    /// Human-readable message in Salesforce's format.
    pub message: String,
    /// Field API names the error is about.
    pub fields: Vec<String>,
}

impl ApiErr {
    /// An error with no fields.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ApiErr {
            code: code.to_string(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// An error about some fields.
    pub fn with_fields(code: &str, message: impl Into<String>, fields: Vec<String>) -> Self {
        ApiErr {
            code: code.to_string(),
            message: message.into(),
            fields,
        }
    }

    /// `NOT_FOUND` with the generic message.
    pub fn not_found() -> Self {
        ApiErr::new("NOT_FOUND", "The requested resource does not exist")
    }

    /// The REST shape `{"message","errorCode","fields"}`.
    pub fn to_rest_json(&self) -> serde_json::Value {
        json!({"message": self.message, "errorCode": self.code, "fields": self.fields})
    }

    /// The Collections per-record shape `{"statusCode","message","fields"}`.
    pub fn to_record_json(&self) -> serde_json::Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
}

/// The REST error array for a list of errors.
pub fn rest_array(errors: &[ApiErr]) -> serde_json::Value {
    serde_json::Value::Array(errors.iter().map(ApiErr::to_rest_json).collect())
}

/// The Collections per-record error list.
pub fn record_array(errors: &[ApiErr]) -> serde_json::Value {
    serde_json::Value::Array(errors.iter().map(ApiErr::to_record_json).collect())
}
