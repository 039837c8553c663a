//! Bulk API 2.0 query jobs (reference §2.12): create, poll with backoff,
//! download CSV pages following `Sforce-Locator` until the literal `null`.

use std::time::Duration;

use futures_util::stream::{self, Stream};
use reqwest::Method;
use serde_json::{json, Value as Json};

use crate::client::{SalesforceClient, Spec};
use crate::error::SfError;

/// One page of Bulk results.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvPage {
    /// Column names (every page repeats the header).
    pub header: Vec<String>,
    /// Rows; `None` is an empty (null) cell.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Bulk query options.
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// `queryAll` instead of `query`.
    pub include_deleted: bool,
    /// Rows per results page.
    pub max_records: u32,
    /// Give up polling after this long.
    pub timeout: Duration,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            include_deleted: false,
            max_records: 50_000,
            timeout: Duration::from_secs(600),
        }
    }
}

struct Pages<'a> {
    client: &'a SalesforceClient,
    job_id: String,
    max_records: u32,
    locator: Option<String>,
    done: bool,
}

impl SalesforceClient {
    /// Creates a query job and waits until it is `JobComplete`; returns the job id.
    ///
    /// # Errors
    /// `Api` for invalid SOQL, `Bulk` for a failed/aborted/timed-out job.
    pub async fn bulk_query_job(
        &self,
        soql: &str,
        options: &BulkOptions,
    ) -> Result<String, SfError> {
        self.check_budget()?;
        let operation = if options.include_deleted {
            "queryAll"
        } else {
            "query"
        };
        let spec = Spec::new(Method::POST, format!("{}/jobs/query", self.base()))
            .body(json!({"operation": operation, "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}));
        let job = self.execute(spec).await?.json("bulk job")?;
        let job_id = job
            .get("id")
            .and_then(Json::as_str)
            .ok_or_else(|| SfError::Decode {
                context: "bulk job".into(),
                detail: "missing id".into(),
            })?
            .to_string();
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let info = self
                .execute(Spec::new(
                    Method::GET,
                    format!("{}/jobs/query/{job_id}", self.base()),
                ))
                .await?
                .json("bulk job")?;
            match info.get("state").and_then(Json::as_str).unwrap_or_default() {
                "JobComplete" => return Ok(job_id),
                "Failed" | "Aborted" => {
                    let reason = info
                        .get("errorMessage")
                        .and_then(Json::as_str)
                        .unwrap_or(info["state"].as_str().unwrap_or_default())
                        .to_string();
                    return Err(SfError::Bulk { job_id, reason });
                }
                _ if started.elapsed() > options.timeout => {
                    return Err(SfError::Bulk {
                        job_id,
                        reason: "timed out waiting for JobComplete".into(),
                    })
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Streams the CSV result pages of a completed job.
    pub fn bulk_results(
        &self,
        job_id: &str,
        max_records: u32,
    ) -> impl Stream<Item = Result<CsvPage, SfError>> + '_ {
        let state = Pages {
            client: self,
            job_id: job_id.to_string(),
            max_records,
            locator: None,
            done: false,
        };
        stream::unfold(state, |mut state| async move {
            if state.done {
                return None;
            }
            let mut spec = Spec::new(
                Method::GET,
                format!(
                    "{}/jobs/query/{}/results",
                    state.client.base(),
                    state.job_id
                ),
            )
            .query("maxRecords", state.max_records.to_string())
            .header("Accept", "text/csv");
            if let Some(locator) = &state.locator {
                spec = spec.query("locator", locator.clone());
            }
            let reply = match state.client.execute(spec).await {
                Ok(r) => r,
                Err(err) => {
                    state.done = true;
                    return Some((Err(err), state));
                }
            };
            match reply
                .headers
                .get("sforce-locator")
                .and_then(|v| v.to_str().ok())
            {
                // The last page says the literal string `null`.
                Some("null") | None => state.done = true,
                Some(next) => state.locator = Some(next.to_string()),
            }
            let page = parse_csv(&String::from_utf8_lossy(&reply.body));
            Some((Ok(page), state))
        })
    }

    /// Deletes a job (204).
    ///
    /// # Errors
    /// `Api` for an unknown job.
    pub async fn bulk_delete(&self, job_id: &str) -> Result<(), SfError> {
        self.execute(Spec::new(
            Method::DELETE,
            format!("{}/jobs/query/{job_id}", self.base()),
        ))
        .await
        .map(|_| ())
    }
}

/// Parses RFC 4180 CSV as Bulk writes it: quoted cells, `""` escapes, empty
/// unquoted cells are null, LF or CRLF line ends.
pub fn parse_csv(text: &str) -> CsvPage {
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cell.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                cell.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                quoted = true;
            }
            ',' => {
                row.push(if quoted || !cell.is_empty() {
                    Some(std::mem::take(&mut cell))
                } else {
                    None
                });
                quoted = false;
            }
            '\r' => {}
            '\n' => {
                row.push(if quoted || !cell.is_empty() {
                    Some(std::mem::take(&mut cell))
                } else {
                    None
                });
                quoted = false;
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            c => cell.push(c),
        }
    }
    if any {
        row.push(if quoted || !cell.is_empty() {
            Some(cell)
        } else {
            None
        });
        rows.push(row);
    }
    let header = if rows.is_empty() {
        Vec::new()
    } else {
        rows.remove(0)
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
    };
    CsvPage { header, rows }
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn csv_keeps_quotes_commas_newlines_and_nulls() {
        let page = parse_csv("\"Id\",\"Subject\",\"EndDate\"\n\"0WO1\",\"a, \"\"b\"\"\nc\",\n\"0WO2\",\"\",\"2026-01-01T00:00:00.000Z\"\n");
        assert_eq!(page.header, ["Id", "Subject", "EndDate"]);
        assert_eq!(
            page.rows[0],
            [Some("0WO1".into()), Some("a, \"b\"\nc".into()), None]
        );
        assert_eq!(
            page.rows[1],
            [
                Some("0WO2".into()),
                Some(String::new()),
                Some("2026-01-01T00:00:00.000Z".into())
            ]
        );
    }
}
