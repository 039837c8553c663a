//! sObject Collections upsert and update (≤ 200 per call, `allOrNone: false`,
//! per-record results inspected even on HTTP 200) and Composite requests
//! (reference §2.8–2.9).

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Map, Value as Json};

use crate::client::{SalesforceClient, Spec};
use crate::error::{ApiError, SfError};
use crate::sobjects::segment;

/// Records per Collections call.
pub const MAX_COLLECTION: usize = 200;

/// The fate of one record of a Collections upsert.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Created with this id.
    Created(String),
    /// Updated this id.
    Updated(String),
    /// Failed permanently (or still retriable after the last attempt).
    Failed(Vec<ApiError>),
}

impl RecordOutcome {
    /// The record id on success.
    pub fn id(&self) -> Option<&str> {
        match self {
            RecordOutcome::Created(id) | RecordOutcome::Updated(id) => Some(id),
            RecordOutcome::Failed(_) => None,
        }
    }
}

/// One Composite subrequest.
#[derive(Debug, Clone)]
pub struct Subrequest {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// Full path, `/services/data/vXX.X/...`, may contain `@{ref.field}`.
    pub url: String,
    /// Letters, digits and `_`.
    pub reference_id: String,
    /// JSON body.
    pub body: Option<Json>,
}

/// One Composite subresponse.
#[derive(Debug, Clone)]
pub struct Subresponse {
    /// The subrequest's reference id.
    pub reference_id: String,
    /// Its HTTP status.
    pub status: u16,
    /// Its body (an error array when status ≥ 400).
    pub body: Json,
}

impl Subresponse {
    /// Errors of a failed subrequest.
    pub fn errors(&self) -> Vec<ApiError> {
        if self.status < 400 {
            return Vec::new();
        }
        self.body
            .as_array()
            .map(|a| a.iter().map(ApiError::from_json).collect())
            .unwrap_or_default()
    }
}

/// The first failed subresponse whose errors are not all `PROCESSING_HALTED`.
pub fn root_cause(responses: &[Subresponse]) -> Option<&Subresponse> {
    responses
        .iter()
        .find(|r| r.status >= 400 && !r.errors().iter().all(|e| e.code == "PROCESSING_HALTED"))
}

impl SalesforceClient {
    /// Upserts records by external ID through Collections: chunks of ≤ 200
    /// with each key at most once per chunk (a later duplicate goes to a
    /// later chunk, so the last write wins), retries records whose errors are
    /// all retriable, and returns one outcome per input record, in order.
    ///
    /// # Errors
    /// Only whole-call failures that exhausted retries (auth, budget, transport);
    /// record-level failures are `RecordOutcome::Failed`. On `Err` some chunks
    /// may already be written; calling again with the same records is safe
    /// because upserts by external ID are idempotent.
    pub async fn upsert_collection(
        &self,
        object: &str,
        ext_field: &str,
        records: &[Map<String, Json>],
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let typed: Vec<Map<String, Json>> = records
            .iter()
            .map(|record| {
                let mut record = record.clone();
                record.insert("attributes".into(), json!({"type": object}));
                record
            })
            .collect();
        let path = format!(
            "{}/composite/sobjects/{}/{}",
            self.base(),
            segment(object),
            segment(ext_field)
        );
        self.write_collection(path, &typed, ext_field).await
    }

    /// Updates records by Salesforce Id through Collections (`PATCH
    /// /composite/sobjects`): chunks of ≤ 200 with each id at most once per
    /// chunk, retriable records retried, one outcome per input `(id, fields)`,
    /// in order (`Updated` on success). Never creates a record.
    ///
    /// # Errors
    /// Only whole-call failures that exhausted retries (auth, budget,
    /// transport); record-level failures are `RecordOutcome::Failed`.
    /// Updates by id are idempotent, so calling again is safe.
    pub async fn update_collection(
        &self,
        object: &str,
        records: &[(String, Map<String, Json>)],
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let typed: Vec<Map<String, Json>> = records
            .iter()
            .map(|(id, fields)| {
                let mut record = fields.clone();
                record.insert("attributes".into(), json!({"type": object}));
                record.insert("id".into(), Json::String(id.clone()));
                record
            })
            .collect();
        let path = format!("{}/composite/sobjects", self.base());
        self.write_collection(path, &typed, "id").await
    }

    /// Sends `records` (each with `attributes`) as Collections `PATCH` calls
    /// to `path`, in chunks with unique `key_field` values, retrying records
    /// whose errors are all retriable.
    async fn write_collection(
        &self,
        path: String,
        records: &[Map<String, Json>],
        key_field: &str,
    ) -> Result<Vec<RecordOutcome>, SfError> {
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut attempt = 1;
        loop {
            let mut retry = Vec::new();
            for chunk in chunk_unique(&pending, records, key_field) {
                self.check_budget()?;
                let body_records: Vec<Json> = chunk
                    .iter()
                    .map(|&i| Json::Object(records[i].clone()))
                    .collect();
                let spec = Spec::new(Method::PATCH, path.clone())
                    .body(json!({"allOrNone": false, "records": body_records}));
                let reply = self.execute(spec).await?;
                let results = reply.json("collections response")?;
                let results = results.as_array().ok_or_else(|| SfError::Decode {
                    context: "collections response".into(),
                    detail: "expected an array".into(),
                })?;
                if results.len() != chunk.len() {
                    return Err(SfError::Decode {
                        context: "collections response".into(),
                        detail: format!("{} results for {} records", results.len(), chunk.len()),
                    });
                }
                for (&i, result) in chunk.iter().zip(results) {
                    if result.get("success").and_then(Json::as_bool) == Some(true) {
                        let id = result
                            .get("id")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string();
                        outcomes[i] = Some(
                            if result.get("created").and_then(Json::as_bool) == Some(true) {
                                RecordOutcome::Created(id)
                            } else {
                                RecordOutcome::Updated(id)
                            },
                        );
                    } else {
                        let errors: Vec<ApiError> = result
                            .get("errors")
                            .and_then(Json::as_array)
                            .map(|a| a.iter().map(ApiError::from_json).collect())
                            .unwrap_or_default();
                        if !errors.is_empty() && errors.iter().all(ApiError::is_retriable) {
                            retry.push(i);
                        }
                        outcomes[i] = Some(RecordOutcome::Failed(errors));
                    }
                }
            }
            if retry.is_empty() || attempt >= self.config.retry.max_attempts {
                break;
            }
            tokio::time::sleep(self.config.retry.delay(attempt)).await;
            attempt += 1;
            pending = retry;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| RecordOutcome::Failed(Vec::new())))
            .collect())
    }

    /// Runs a Composite request (`collateSubrequests: false`, in order).
    ///
    /// # Errors
    /// Whole-request failures; subrequest failures are in the subresponses
    /// (see [`root_cause`]).
    pub async fn composite(
        &self,
        all_or_none: bool,
        subrequests: &[Subrequest],
    ) -> Result<Vec<Subresponse>, SfError> {
        self.check_budget()?;
        let requests: Vec<Json> = subrequests
            .iter()
            .map(|s| {
                let mut r =
                    json!({"method": s.method, "url": s.url, "referenceId": s.reference_id});
                if let Some(body) = &s.body {
                    r["body"] = body.clone();
                }
                r
            })
            .collect();
        let spec = Spec::new(Method::POST, format!("{}/composite", self.base()))
            .body(json!({"allOrNone": all_or_none, "collateSubrequests": false, "compositeRequest": requests}))
            // Our composite writes are upserts by external ID, so replay is safe.
            .idempotent(subrequests.iter().all(|s| s.method != "POST"));
        let reply = self.execute(spec).await?.json("composite response")?;
        let list = reply
            .get("compositeResponse")
            .and_then(Json::as_array)
            .ok_or_else(|| SfError::Decode {
                context: "composite response".into(),
                detail: "missing compositeResponse".into(),
            })?;
        Ok(list
            .iter()
            .map(|r| Subresponse {
                reference_id: r
                    .get("referenceId")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                status: r.get("httpStatusCode").and_then(Json::as_u64).unwrap_or(0) as u16,
                body: r.get("body").cloned().unwrap_or(Json::Null),
            })
            .collect())
    }
}

/// Splits pending record indexes into chunks of ≤ 200 with unique keys.
fn chunk_unique(
    pending: &[usize],
    records: &[Map<String, Json>],
    ext_field: &str,
) -> Vec<Vec<usize>> {
    let mut chunks: Vec<(Vec<usize>, HashSet<String>)> = Vec::new();
    for &i in pending {
        let key = records[i]
            .get(ext_field)
            .map(|v| v.to_string())
            .unwrap_or_default();
        // A duplicate key goes to a chunk after the last one holding it, so the later write wins.
        let earliest = chunks
            .iter()
            .rposition(|(_, keys)| keys.contains(&key))
            .map_or(0, |p| p + 1);
        let slot = (earliest..chunks.len()).find(|&s| chunks[s].0.len() < MAX_COLLECTION);
        match slot {
            Some(s) => {
                chunks[s].0.push(i);
                chunks[s].1.insert(key);
            }
            None => chunks.push((vec![i], HashSet::from([key]))),
        }
    }
    chunks.into_iter().map(|(c, _)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_200_records_with_unique_keys_in_order() {
        let records: Vec<Map<String, Json>> = (0..450)
            .map(|i| {
                json!({"K": format!("k{}", i % 300)})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect();
        let pending: Vec<usize> = (0..records.len()).collect();
        let chunks = chunk_unique(&pending, &records, "K");
        let mut seen_chunk_of_key = std::collections::HashMap::new();
        for (c, chunk) in chunks.iter().enumerate() {
            assert!(chunk.len() <= MAX_COLLECTION);
            let keys: HashSet<_> = chunk.iter().map(|&i| records[i]["K"].to_string()).collect();
            assert_eq!(keys.len(), chunk.len(), "duplicate key inside a chunk");
            for &i in chunk {
                let key = records[i]["K"].to_string();
                if let Some(prev) = seen_chunk_of_key.insert(key, c) {
                    assert!(prev < c, "a later duplicate must go to a later chunk");
                }
            }
        }
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 450);
    }
}
