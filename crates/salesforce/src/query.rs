//! SOQL query as an async `Stream` of records that follows `nextRecordsUrl`
//! (reference §2.11).

use std::collections::VecDeque;

use futures_util::stream::{self, Stream};
use reqwest::Method;
use serde_json::Value as Json;

use crate::client::{SalesforceClient, Spec};
use crate::error::SfError;

/// Query options.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// `queryAll` (includes deleted records).
    pub include_deleted: bool,
    /// `Sforce-Query-Options: batchSize=N` (200–2000).
    pub batch_size: Option<u32>,
}

enum Cursor {
    Start,
    Next(String),
    Done,
}

struct State<'a> {
    client: &'a SalesforceClient,
    soql: String,
    options: QueryOptions,
    cursor: Cursor,
    buffer: VecDeque<Json>,
    total: Option<u64>,
}

impl SalesforceClient {
    /// Streams every record of a SOQL query, page by page. An error ends the
    /// stream; after `INVALID_QUERY_LOCATOR` (an idle cursor expired) restart
    /// the query — [`crate::export`] resumes from its watermark instead.
    pub fn query<'a>(
        &'a self,
        soql: &str,
        options: QueryOptions,
    ) -> impl Stream<Item = Result<Json, SfError>> + 'a {
        let state = State {
            client: self,
            soql: soql.to_string(),
            options,
            cursor: Cursor::Start,
            buffer: VecDeque::new(),
            total: None,
        };
        stream::unfold(state, |mut state| async move {
            loop {
                if let Some(record) = state.buffer.pop_front() {
                    return Some((Ok(record), state));
                }
                let spec = match std::mem::replace(&mut state.cursor, Cursor::Done) {
                    Cursor::Done => return None,
                    Cursor::Start => {
                        let resource = if state.options.include_deleted {
                            "queryAll"
                        } else {
                            "query"
                        };
                        Spec::new(Method::GET, format!("{}/{resource}", state.client.base()))
                            .query("q", state.soql.clone())
                    }
                    // nextRecordsUrl is followed verbatim (a path on the instance).
                    Cursor::Next(path) => Spec::new(Method::GET, path),
                };
                let spec = match state.options.batch_size {
                    Some(n) => spec.header("Sforce-Query-Options", format!("batchSize={n}")),
                    None => spec,
                };
                match state
                    .client
                    .execute(spec)
                    .await
                    .and_then(|r| r.json("query page"))
                {
                    Err(err) => return Some((Err(err), state)),
                    Ok(page) => {
                        state.total = page.get("totalSize").and_then(Json::as_u64);
                        if let Some(next) = page.get("nextRecordsUrl").and_then(Json::as_str) {
                            state.cursor = Cursor::Next(next.to_string());
                        }
                        if let Some(Json::Array(records)) = page.get("records").cloned() {
                            state.buffer.extend(records);
                        }
                    }
                }
            }
        })
    }

    /// `SELECT COUNT() ...`: the `totalSize`.
    ///
    /// # Errors
    /// Query errors as `Api` (`MALFORMED_QUERY`, `INVALID_FIELD`, ...).
    pub async fn count(&self, soql: &str) -> Result<u64, SfError> {
        let spec = Spec::new(Method::GET, format!("{}/query", self.base())).query("q", soql);
        let page = self.execute(spec).await?.json("query")?;
        page.get("totalSize")
            .and_then(Json::as_u64)
            .ok_or_else(|| SfError::Decode {
                context: "query".into(),
                detail: "missing totalSize".into(),
            })
    }
}
