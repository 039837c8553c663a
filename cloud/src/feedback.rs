//! Feedback from Salesforce: Work Orders and Cases changed since the last poll.
//!
//! Polled by `SystemModstamp` with an overlap (clock skew and late commits),
//! paged through the client's SOQL stream:
//! - a Work Order opened on an asset inhibits its episodes (an open Work Order
//!   is someone already on it);
//! - a Work Order completed closes them and records the outcome — a repair
//!   with a failure code is a `failure` label for the next training run;
//! - a fieldpulse Case closed as not a problem is a `false_alarm` label.
//!
//! Events are applied idempotently (the overlap re-reads some records), so the
//! poll position is saved only after the events were handed to the shards.

use std::collections::BTreeSet;

use fieldpulse_models::failure::labels::{classify, parse_sf_datetime, EventKind};
use fieldpulse_salesforce::{flatten_record, QueryOptions, SalesforceClient, SfError};
use futures_util::TryStreamExt;
use serde_json::{Map, Value};

use crate::actions::key_part_decode;
use crate::directory::{Directory, WORK_ORDER_FIELDS};
use crate::processor::FeedbackEvent;
use crate::store::{self, FeedbackLabel, Store, StoreError};

/// Work Order statuses that mean the work is done.
const DONE: &[&str] = &["Completed", "Closed"];
/// Work Order statuses that mean it will not happen.
const CANCELLED: &[&str] = &["Canceled", "Cancelled", "Cannot Complete"];

/// Case statuses a dispatcher uses to say "not a problem" (case-insensitive substrings).
pub const FALSE_ALARM_MARKERS: &[&str] = &["not a problem", "no fault", "false alarm"];

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// Salesforce failed.
    #[error("polling Salesforce: {0}")]
    Salesforce(#[from] SfError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one poll found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Work Orders read.
    pub work_orders: usize,
    /// Cases read.
    pub cases: usize,
    /// Events handed to the shards.
    pub events: usize,
    /// New labels stored.
    pub labels: usize,
}

fn text<'a>(rec: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    rec.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `2026-05-01T17:50:19.000+0000` minus `overlap_ms`, as a SOQL datetime literal.
fn since_literal(stamp: Option<&str>, overlap_ms: i64) -> Option<String> {
    let ms = parse_sf_datetime(stamp?)? - overlap_ms;
    let text = fieldpulse_models::failure::labels::format_ms(ms);
    // format_ms gives `YYYY-MM-DDTHH:MM:SS.mmmZ`; SOQL takes it as is.
    Some(text)
}

/// Turns one Work Order into an event (and maybe a label).
pub fn work_order_event(
    wo: &Map<String, Value>,
    directory: &Directory,
) -> Option<(FeedbackEvent, Option<FeedbackLabel>)> {
    let asset = directory.names_by_id.get(text(wo, "AssetId")?)?.clone();
    let id = text(wo, "Id")?.to_string();
    let status = text(wo, "Status").unwrap_or("New");
    let kind = classify(text(wo, "WorkType.Name"), text(wo, "Subject"), false);
    let mode = match &kind {
        EventKind::Failure(Some(m)) => Some(m.clone()),
        _ => None,
    };
    let at_ms = text(wo, "EndDate")
        .or_else(|| text(wo, "StartDate"))
        .or_else(|| text(wo, "CreatedDate"))
        .and_then(parse_sf_datetime)
        .unwrap_or_else(store::now_ms);
    if CANCELLED.contains(&status) {
        return Some((
            FeedbackEvent::WorkOrderCancelled {
                asset,
                work_order: id,
                at_ms,
            },
            None,
        ));
    }
    if DONE.contains(&status) {
        let label = matches!(kind, EventKind::Failure(_)).then(|| FeedbackLabel {
            asset: asset.clone(),
            mode: mode.clone(),
            label: "failure".into(),
            at_ms: text(wo, "StartDate")
                .or_else(|| text(wo, "CreatedDate"))
                .and_then(parse_sf_datetime)
                .unwrap_or(at_ms),
            source_object: "WorkOrder".into(),
            source_id: id.clone(),
            failure_code: mode.clone(),
            detail: text(wo, "Subject").map(str::to_string),
        });
        return Some((
            FeedbackEvent::WorkOrderCompleted {
                asset,
                mode: mode.clone(),
                work_order: id,
                failure_code: mode,
                at_ms,
            },
            label,
        ));
    }
    Some((
        FeedbackEvent::WorkOrderOpened {
            asset,
            mode,
            work_order: id,
            at_ms: text(wo, "CreatedDate")
                .and_then(parse_sf_datetime)
                .unwrap_or(at_ms),
        },
        None,
    ))
}

/// Turns one fieldpulse Case (`FieldPulse_Key__c = fp-case:<asset>:<mode>:<n>`,
/// name parts as `key_part` encodes them) into an event; `resolve` maps a
/// key whose asset part is hashed (very long names) to (asset, mode).
pub fn case_event(
    case: &Map<String, Value>,
    resolve: impl Fn(&str) -> Option<(String, String)>,
) -> Option<(FeedbackEvent, Option<FeedbackLabel>)> {
    let closed = case
        .get("IsClosed")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || text(case, "Status").is_some_and(|s| s.starts_with("Closed"));
    if !closed {
        return None;
    }
    let key = text(case, "FieldPulse_Key__c")?;
    let mut parts = key.strip_prefix("fp-case:")?.rsplitn(3, ':');
    let generation = parts.next()?.parse().ok()?;
    let (mode_part, asset_part) = (parts.next()?, parts.next()?);
    let (asset, mode) = match (key_part_decode(asset_part), key_part_decode(mode_part)) {
        (Some(asset), Some(mode)) => (asset, mode),
        _ => resolve(key)?,
    };
    let status = text(case, "Status").unwrap_or("").to_ascii_lowercase();
    let not_a_problem = FALSE_ALARM_MARKERS.iter().any(|m| status.contains(m));
    let at_ms = text(case, "ClosedDate")
        .or_else(|| text(case, "SystemModstamp"))
        .and_then(parse_sf_datetime)
        .unwrap_or_else(store::now_ms);
    let label = not_a_problem.then(|| FeedbackLabel {
        asset: asset.clone(),
        mode: Some(mode.clone()),
        label: "false_alarm".into(),
        at_ms,
        source_object: "Case".into(),
        source_id: text(case, "Id").unwrap_or_default().to_string(),
        failure_code: None,
        detail: text(case, "Status").map(str::to_string),
    });
    Some((
        FeedbackEvent::CaseClosed {
            asset,
            mode,
            generation,
            not_a_problem,
            at_ms,
        },
        label,
    ))
}

/// Polls once: reads changes, hands events to `apply`, stores labels and the new position.
///
/// # Errors
/// Salesforce or store errors; the position is not moved then.
pub async fn poll_once(
    client: &SalesforceClient,
    store: &mut Store,
    directory: &Directory,
    overlap_ms: i64,
    mut apply: impl FnMut(FeedbackEvent),
) -> Result<PollReport, FeedbackError> {
    let mut report = PollReport::default();
    let mut labels = Vec::new();
    let mut cursors = Vec::new();
    for (object, select, filter) in [
        ("WorkOrder", WORK_ORDER_FIELDS, ""),
        (
            "Case",
            "Id, Status, IsClosed, ClosedDate, FieldPulse_Key__c, SystemModstamp",
            "FieldPulse_Key__c != null",
        ),
    ] {
        let since = since_literal(store.feedback_cursor(object)?.as_deref(), overlap_ms);
        let mut clauses: Vec<String> = Vec::new();
        if !filter.is_empty() {
            clauses.push(filter.to_string());
        }
        if let Some(s) = &since {
            clauses.push(format!("SystemModstamp >= {s}"));
        }
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let soql = format!("SELECT {select} FROM {object}{where_} ORDER BY SystemModstamp, Id");
        let records: Vec<Map<String, Value>> = client
            .query(&soql, QueryOptions::default())
            .map_ok(|r| flatten_record(&r))
            .try_collect()
            .await?;
        let mut newest: Option<String> = None;
        let mut seen = BTreeSet::new();
        for rec in &records {
            if let Some(stamp) = text(rec, "SystemModstamp") {
                if newest.as_deref().is_none_or(|n| {
                    parse_sf_datetime(stamp).unwrap_or(0) > parse_sf_datetime(n).unwrap_or(0)
                }) {
                    newest = Some(stamp.to_string());
                }
            }
            let Some(id) = text(rec, "Id") else { continue };
            if !seen.insert(id.to_string()) {
                continue;
            }
            let event = if object == "WorkOrder" {
                report.work_orders += 1;
                work_order_event(rec, directory)
            } else {
                report.cases += 1;
                case_event(rec, |key| store.episode_of_case(key).ok().flatten())
            };
            if let Some((event, label)) = event {
                apply(event);
                report.events += 1;
                labels.extend(label);
            }
        }
        if let Some(n) = newest {
            cursors.push((object, n));
        }
    }
    let tx = store.write()?;
    for label in &labels {
        if store::tx::put_label(&tx, label)? {
            report.labels += 1;
        }
    }
    for (object, stamp) in &cursors {
        store::tx::put_cursor(&tx, object, stamp)?;
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fieldpulse_case_keys_decode_and_no_fault_is_a_false_alarm() {
        let case = flatten_record(&json!({
            "Id": "500000000000001AAA", "Status": "Closed - Not a Problem", "IsClosed": true,
            "FieldPulse_Key__c": "fp-case:P-001:bearing:2",
            "SystemModstamp": "2026-01-02T03:04:05.000+0000"
        }));
        let (event, label) = case_event(&case, |_| None).unwrap();
        assert_eq!(
            event,
            FeedbackEvent::CaseClosed {
                asset: "P-001".into(),
                mode: "bearing".into(),
                generation: 2,
                not_a_problem: true,
                at_ms: parse_sf_datetime("2026-01-02T03:04:05.000+0000").unwrap(),
            }
        );
        assert_eq!(label.unwrap().label, "false_alarm");
        let open = flatten_record(&json!({"Status": "New", "IsClosed": false,
            "FieldPulse_Key__c": "fp-case:P-001:bearing:2"}));
        assert!(case_event(&open, |_| None).is_none());
    }

    #[test]
    fn work_orders_open_complete_or_cancel() {
        let mut dir = Directory::default();
        dir.names_by_id.insert("02iA".into(), "P-001".into());
        let wo = |status: &str| {
            flatten_record(&json!({"Id": "0WOA", "AssetId": "02iA", "Status": status,
                "Subject": "[BRG] noisy bearing", "WorkType": {"Name": "Corrective - Bearing"},
                "CreatedDate": "2026-01-01T00:00:00.000+0000", "StartDate": "2026-01-01T02:00:00.000+0000"}))
        };
        let (e, l) = work_order_event(&wo("In Progress"), &dir).unwrap();
        assert!(
            matches!(e, FeedbackEvent::WorkOrderOpened { ref mode, .. } if mode.as_deref() == Some("bearing"))
        );
        assert!(l.is_none());
        let (e, l) = work_order_event(&wo("Completed"), &dir).unwrap();
        assert!(matches!(e, FeedbackEvent::WorkOrderCompleted { .. }));
        assert_eq!(l.unwrap().label, "failure");
        let (e, _) = work_order_event(&wo("Canceled"), &dir).unwrap();
        assert!(matches!(e, FeedbackEvent::WorkOrderCancelled { .. }));
        let mut other = wo("New");
        other.insert("AssetId".into(), json!("02iUNKNOWN"));
        assert!(work_order_event(&other, &dir).is_none());
    }
}
