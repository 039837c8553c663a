//! sObject rows: create, get, update, delete, upsert by external ID, describe
//! (reference §2.3–2.7, §2.13).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{Map, Value as Json};

use crate::client::{SalesforceClient, Spec};
use crate::error::SfError;

/// Characters escaped in path segments (external-ID values).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Percent-encodes one path segment.
pub(crate) fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The result of an upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertResult {
    /// 18-character id.
    pub id: String,
    /// `true` when the record was created (201), `false` when updated (200).
    pub created: bool,
}

fn id_of(json: &Json, context: &str) -> Result<String, SfError> {
    json.get("id")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| SfError::Decode {
            context: context.into(),
            detail: "missing id".into(),
        })
}

impl SalesforceClient {
    /// Creates a record; returns its id. Never retried automatically (a
    /// replayed POST could duplicate): use [`SalesforceClient::upsert`] for writes that must be safe.
    ///
    /// # Errors
    /// Validation errors as `Api`, or transport/auth errors.
    pub async fn create(
        &self,
        object: &str,
        fields: &Map<String, Json>,
    ) -> Result<String, SfError> {
        self.check_budget()?;
        let spec = Spec::new(
            Method::POST,
            format!("{}/sobjects/{}/", self.base(), segment(object)),
        )
        .body(Json::Object(fields.clone()));
        let reply = self.execute(spec).await?;
        id_of(&reply.json("create response")?, "create response")
    }

    /// Publishes a platform event (`POST /sobjects/<Name>__e/`) and returns
    /// its event UUID. The `OPERATION_ENQUEUED` entry Salesforce puts in
    /// `errors` on success is not an error. Not retried automatically (a
    /// replay would publish twice); give events a key subscribers can dedupe on.
    ///
    /// # Errors
    /// Validation errors as `Api`, or transport/auth errors.
    pub async fn publish_event(
        &self,
        event: &str,
        fields: &Map<String, Json>,
    ) -> Result<String, SfError> {
        self.check_budget()?;
        let spec = Spec::new(
            Method::POST,
            format!("{}/sobjects/{}/", self.base(), segment(event)),
        )
        .body(Json::Object(fields.clone()));
        let reply = self.execute(spec).await?.json("publish response")?;
        let errors = reply
            .get("errors")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let enqueued = errors
            .iter()
            .find(|e| e.get("statusCode").and_then(Json::as_str) == Some("OPERATION_ENQUEUED"));
        match (reply.get("success").and_then(Json::as_bool), enqueued) {
            (Some(true), Some(marker)) => Ok(marker
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()),
            (Some(true), None) => id_of(&reply, "publish response"),
            _ => Err(SfError::Api {
                method: "POST".into(),
                path: format!("{}/sobjects/{event}/", self.base()),
                status: 201,
                errors: errors
                    .iter()
                    .map(crate::error::ApiError::from_json)
                    .collect(),
                retry_after: None,
            }),
        }
    }

    /// Retrieves a record (optionally only `fields`).
    ///
    /// # Errors
    /// `Api` with `NOT_FOUND` / `ENTITY_IS_DELETED`, or transport/auth errors.
    pub async fn get(
        &self,
        object: &str,
        id: &str,
        fields: Option<&[&str]>,
    ) -> Result<Json, SfError> {
        let mut spec = Spec::new(
            Method::GET,
            format!(
                "{}/sobjects/{}/{}",
                self.base(),
                segment(object),
                segment(id)
            ),
        );
        if let Some(fields) = fields {
            spec = spec.query("fields", fields.join(","));
        }
        self.execute(spec).await?.json("record")
    }

    /// Retrieves a record by external ID.
    ///
    /// # Errors
    /// As [`SalesforceClient::get`].
    pub async fn get_by_external_id(
        &self,
        object: &str,
        field: &str,
        value: &str,
    ) -> Result<Json, SfError> {
        let spec = Spec::new(
            Method::GET,
            format!(
                "{}/sobjects/{}/{}/{}",
                self.base(),
                segment(object),
                segment(field),
                segment(value)
            ),
        );
        self.execute(spec).await?.json("record")
    }

    /// Updates a record (204).
    ///
    /// # Errors
    /// Validation errors as `Api`, or transport/auth errors.
    pub async fn update(
        &self,
        object: &str,
        id: &str,
        fields: &Map<String, Json>,
    ) -> Result<(), SfError> {
        self.check_budget()?;
        let spec = Spec::new(
            Method::PATCH,
            format!(
                "{}/sobjects/{}/{}",
                self.base(),
                segment(object),
                segment(id)
            ),
        )
        .body(Json::Object(fields.clone()));
        self.execute(spec).await.map(|_| ())
    }

    /// Deletes a record (204).
    ///
    /// # Errors
    /// `Api` for a missing or undeletable record.
    pub async fn delete(&self, object: &str, id: &str) -> Result<(), SfError> {
        let spec = Spec::new(
            Method::DELETE,
            format!(
                "{}/sobjects/{}/{}",
                self.base(),
                segment(object),
                segment(id)
            ),
        );
        self.execute(spec).await.map(|_| ())
    }

    /// Upserts by external ID: 201 created / 200 updated; 300 → `MultipleMatches`; 404 → `Api`.
    /// Idempotent, so retried on retriable errors.
    ///
    /// # Errors
    /// `MultipleMatches`, validation errors as `Api`, or transport/auth errors.
    pub async fn upsert(
        &self,
        object: &str,
        ext_field: &str,
        ext_value: &str,
        fields: &Map<String, Json>,
    ) -> Result<UpsertResult, SfError> {
        self.check_budget()?;
        let path = format!(
            "{}/sobjects/{}/{}/{}",
            self.base(),
            segment(object),
            segment(ext_field),
            segment(ext_value)
        );
        let spec = Spec::new(Method::PATCH, path).body(Json::Object(fields.clone()));
        let reply = self.execute(spec).await?;
        let json = reply.json("upsert response")?;
        if reply.status == 300 {
            let urls = json
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            return Err(SfError::MultipleMatches { urls });
        }
        Ok(UpsertResult {
            id: id_of(&json, "upsert response")?,
            created: json
                .get("created")
                .and_then(Json::as_bool)
                .unwrap_or(reply.status == 201),
        })
    }

    /// Describes an object.
    ///
    /// # Errors
    /// `Api` with `NOT_FOUND` for an unknown object.
    pub async fn describe(&self, object: &str) -> Result<Json, SfError> {
        self.execute(Spec::new(
            Method::GET,
            format!("{}/sobjects/{}/describe", self.base(), segment(object)),
        ))
        .await?
        .json("describe")
    }

    /// Start-up schema check: `field` exists on `object` and is External ID and Unique.
    ///
    /// # Errors
    /// `Config` naming what is missing, or the describe error.
    pub async fn check_external_id(&self, object: &str, field: &str) -> Result<(), SfError> {
        let describe = self.describe(object).await?;
        let found = describe
            .get("fields")
            .and_then(Json::as_array)
            .and_then(|fields| {
                fields
                    .iter()
                    .find(|f| f.get("name").and_then(Json::as_str) == Some(field))
            });
        match found {
            None => Err(SfError::Config(format!(
                "{object}.{field} does not exist: deploy the salesforce/ metadata"
            ))),
            Some(f) if f["externalId"] != true || f["unique"] != true => Err(SfError::Config(
                format!("{object}.{field} must be External ID and Unique"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Checks that the configured API version is offered by the org
    /// (`GET /services/data/`, which needs no session and costs no API call).
    ///
    /// # Errors
    /// `Config` naming the offered versions when ours is missing.
    pub async fn check_version(&self) -> Result<(), SfError> {
        let token = self.current_token().await?;
        let url = format!("{}/services/data/", token.instance_url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| SfError::Transport {
                context: "GET /services/data/".into(),
                source,
            })?;
        let body = response
            .bytes()
            .await
            .map_err(|source| SfError::Transport {
                context: "GET /services/data/".into(),
                source,
            })?;
        let versions: Json = serde_json::from_slice(&body).map_err(|e| SfError::Decode {
            context: "versions".into(),
            detail: e.to_string(),
        })?;
        let offered: Vec<&str> = versions
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.get("version").and_then(Json::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if offered.contains(&self.config.api_version.as_str()) {
            Ok(())
        } else {
            Err(SfError::Config(format!(
                "api version {} is not offered by the org (offered: {})",
                self.config.api_version,
                offered.join(", ")
            )))
        }
    }

    /// Reads `/limits` (also refreshes the usage from its header).
    ///
    /// # Errors
    /// Transport/auth errors.
    pub async fn limits(&self) -> Result<Json, SfError> {
        self.execute(Spec::new(Method::GET, format!("{}/limits/", self.base())))
            .await?
            .json("limits")
    }
}
