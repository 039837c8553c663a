//! Errors built from Salesforce's real error shapes, each classified as
//! retriable, re-authenticate, budget, or permanent (reference §3.4).

/// One Salesforce error: `errorCode` (REST) or `statusCode` (Collections).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiError {
    /// The code, e.g. `REQUIRED_FIELD_MISSING`; unknown codes are kept as-is.
    pub code: String,
    /// Salesforce's message (localised; never branch on it).
    pub message: String,
    /// Field API names.
    pub fields: Vec<String>,
}

impl ApiError {
    /// Parses one element of either error shape.
    pub fn from_json(value: &serde_json::Value) -> Self {
        let text = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
        ApiError {
            code: text("errorCode")
                .or_else(|| text("statusCode"))
                .unwrap_or_else(|| "UNKNOWN".into()),
            message: text("message").unwrap_or_default(),
            fields: value
                .get("fields")
                .and_then(|f| f.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Parses an error array (or returns a synthetic error for a non-JSON body).
    pub fn list_from_body(body: &[u8]) -> Vec<ApiError> {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Array(items)) => items.iter().map(ApiError::from_json).collect(),
            Ok(obj @ serde_json::Value::Object(_)) => vec![ApiError::from_json(&obj)],
            _ => vec![ApiError {
                code: "NON_JSON_RESPONSE".into(),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                fields: Vec::new(),
            }],
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.code.as_str(),
            "UNABLE_TO_LOCK_ROW"
                | "SERVER_UNAVAILABLE"
                | "UNKNOWN_EXCEPTION"
                | "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        ) || (self.code == "REQUEST_LIMIT_EXCEEDED" && !self.is_daily_limit())
    }

    /// Daily allocation exhausted. The reference distinguishes daily from
    /// concurrent `REQUEST_LIMIT_EXCEEDED` only by message (`TotalRequests`),
    /// so this is the one place we read message text.
    pub fn is_daily_limit(&self) -> bool {
        self.code == "REQUEST_LIMIT_EXCEEDED" && self.message.contains("TotalRequests")
    }
}

/// How a caller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with backoff.
    Retriable,
    /// Pause until the daily budget recovers.
    Budget,
    /// Do not retry; fix data or configuration.
    Permanent,
}

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SfError {
    /// The token endpoint refused (`{"error","error_description"}`).
    #[error("salesforce token endpoint refused: HTTP {status} {error}: {description}")]
    Auth {
        /// HTTP status.
        status: u16,
        /// OAuth `error`.
        error: String,
        /// OAuth `error_description`.
        description: String,
    },
    /// Still `401 INVALID_SESSION_ID` after re-authenticating once.
    #[error("salesforce session invalid after re-authentication")]
    SessionInvalid,
    /// A REST error array with its HTTP status.
    #[error("salesforce {method} {path}: HTTP {status} {}", summary(.errors))]
    Api {
        /// Method.
        method: String,
        /// Path (no query string, no secrets).
        path: String,
        /// HTTP status.
        status: u16,
        /// The errors.
        errors: Vec<ApiError>,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// Upsert matched several records (`300 Multiple Choices`).
    #[error("external id matched {} records", .urls.len())]
    MultipleMatches {
        /// Record URLs.
        urls: Vec<String>,
    },
    /// Network failure or timeout.
    #[error("salesforce {context}")]
    Transport {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The response did not have the documented shape.
    #[error("decoding salesforce {context}: {detail}")]
    Decode {
        /// What was decoded.
        context: String,
        /// What was wrong.
        detail: String,
    },
    /// The configured share of the daily allocation is used up.
    #[error("salesforce daily api budget exhausted: {used}/{max} used, threshold {threshold:.0}%")]
    BudgetExhausted {
        /// Calls used.
        used: u64,
        /// Allocation.
        max: u64,
        /// Threshold percent.
        threshold: f64,
    },
    /// Bad client configuration (key, URL).
    #[error("salesforce client configuration: {0}")]
    Config(String),
    /// A Bulk job failed, was aborted or did not finish in time.
    #[error("bulk query job {job_id}: {reason}")]
    Bulk {
        /// Job id.
        job_id: String,
        /// State or reason.
        reason: String,
    },
}

fn summary(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl SfError {
    /// Retry class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            SfError::Transport { .. } => ErrorClass::Retriable,
            SfError::Api { status, errors, .. } => {
                if errors.iter().any(ApiError::is_daily_limit) {
                    ErrorClass::Budget
                } else if matches!(status, 500 | 502 | 503 | 504)
                    || (!errors.is_empty() && errors.iter().all(ApiError::is_retriable))
                {
                    ErrorClass::Retriable
                } else {
                    ErrorClass::Permanent
                }
            }
            SfError::Auth { status, .. } if *status >= 500 => ErrorClass::Retriable,
            SfError::BudgetExhausted { .. } => ErrorClass::Budget,
            _ => ErrorClass::Permanent,
        }
    }

    /// Shorthand for `class() == Retriable`.
    pub fn is_retriable(&self) -> bool {
        self.class() == ErrorClass::Retriable
    }

    /// The API errors carried, if any.
    pub fn api_errors(&self) -> &[ApiError] {
        match self {
            SfError::Api { errors, .. } => errors,
            _ => &[],
        }
    }
}
