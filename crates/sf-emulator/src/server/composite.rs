//! `/composite` (ordered subrequests with `@{ref.path}` references and
//! `allOrNone`) and `/composite/graph` (per-graph atomicity), reference
//! §2.8 and §2.10. Collections live in `collections.rs`.

use std::collections::{HashMap, HashSet};

use axum::http::Method;
use serde_json::{json, Map, Value as Json};

use super::rest;
use super::{parse_query, split_data_path, version_ok, Call, Emulator, Org, Reply};
use crate::error::ApiErr;

const ROLLED_BACK: &str =
    "The transaction was rolled back since another operation in the same transaction failed.";

fn bad_request(message: &str) -> Reply {
    Reply::error(400, ApiErr::new("INVALID_API_INPUT", message))
}

fn valid_reference_id(r: &str) -> bool {
    r.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Looks up `refId.path[0].Field` in earlier results.
fn lookup(results: &HashMap<String, Json>, expr: &str) -> Option<Json> {
    let (ref_id, path) = expr.split_once('.')?;
    let mut current = results.get(ref_id)?;
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(pos) => (&part[..pos], &part[pos..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            current = current.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    (!current.is_null()).then(|| current.clone())
}

/// Replaces `@{...}` in a string; a whole-string reference keeps the JSON type.
fn substitute_str(text: &str, results: &HashMap<String, Json>) -> Result<Json, String> {
    if let Some(inner) = text.strip_prefix("@{").and_then(|t| t.strip_suffix('}')) {
        if !inner.contains('}') {
            return lookup(results, inner).ok_or_else(|| inner.to_string());
        }
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let expr = &after[..end];
        let value = lookup(results, expr).ok_or_else(|| expr.to_string())?;
        match value {
            Json::String(s) => out.push_str(&s),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Json::String(out))
}

fn substitute(value: &Json, results: &HashMap<String, Json>) -> Result<Json, String> {
    Ok(match value {
        Json::String(s) => substitute_str(s, results)?,
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| substitute(v, results))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, results)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

fn halted(message: &str) -> Json {
    json!([{"errorCode": "PROCESSING_HALTED", "message": message}])
}

/// Runs subrequests in order inside one org lock; returns (subresponses, any failed).
fn run_subrequests(
    emu: &Emulator,
    org: &mut Org,
    requests: &[Json],
    all_or_none: bool,
) -> (Vec<Json>, bool) {
    let savepoint = org.store.begin();
    let mut results: HashMap<String, Json> = HashMap::new();
    let mut responses = Vec::new();
    let mut failed = false;
    for sub in requests {
        let reference_id = sub
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let method = sub.get("method").and_then(Json::as_str).unwrap_or_default();
        let url = sub.get("url").and_then(Json::as_str).unwrap_or_default();
        let resolved_url = substitute_str(url, &results);
        let resolved_body = sub.get("body").map(|b| substitute(b, &results)).transpose();
        let (url, body) = match (resolved_url, resolved_body) {
            (Ok(Json::String(u)), Ok(b)) => (u, b),
            (Err(expr), _) | (_, Err(expr)) => {
                let ref_name = expr.split('.').next().unwrap_or_default().to_string();
                failed = true;
                responses.push(json!({"body": halted(&format!("Invalid reference specified. No value for {expr} found in {ref_name}. Provided referenceId ({ref_name}) must start with a letter or a number, and it can contain only letters, numbers and underscores (_).")),
                                      "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference_id}));
                continue;
            }
            _ => continue,
        };
        let (path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
        let reply = match (Method::from_bytes(method.as_bytes()), split_data_path(path)) {
            (Ok(m), Some((version, segments)))
                if version_ok(&version)
                    && ["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method) =>
            {
                let call = Call {
                    method: m,
                    version,
                    segments,
                    query: parse_query(raw_query),
                    body,
                    batch_size: None,
                };
                rest::dispatch_locked(emu, org, &call, 0.0)
            }
            _ => Reply::not_found(),
        };
        let status = reply.status;
        let body_json = reply.body_json();
        let mut headers = Map::new();
        for (name, value) in &reply.headers {
            headers.insert(name.clone(), Json::String(value.clone()));
        }
        if status >= 400 {
            failed = true;
        } else {
            results.insert(reference_id.clone(), body_json.clone());
        }
        responses.push(json!({"body": body_json, "httpHeaders": headers, "httpStatusCode": status, "referenceId": reference_id}));
    }
    if failed && all_or_none {
        org.store.rollback_to(savepoint);
        // Every subrequest but the root causes reports the rollback.
        for response in &mut responses {
            let is_root_cause = response["httpStatusCode"].as_u64().unwrap_or(0) >= 400
                && !response["body"]
                    .as_array()
                    .is_some_and(|errs| errs.iter().all(|e| e["errorCode"] == "PROCESSING_HALTED"));
            if !is_root_cause {
                response["body"] = halted(ROLLED_BACK);
                response["httpStatusCode"] = json!(400);
                response["httpHeaders"] = json!({});
            }
        }
    }
    org.store.commit();
    (responses, failed)
}

fn validate_composite(requests: &[Json]) -> Result<(), Reply> {
    if requests.len() > 25 {
        return Err(bad_request(
            "Maximum 25 subrequests are allowed in a composite request",
        ));
    }
    let heavy = requests
        .iter()
        .filter(|r| {
            let url = r.get("url").and_then(Json::as_str).unwrap_or_default();
            url.contains("/query")
                || url.contains("/queryAll")
                || url.contains("/composite/sobjects")
        })
        .count();
    if heavy > 5 {
        return Err(bad_request(
            "Maximum 5 query or sObject Collections subrequests are allowed in a composite request",
        ));
    }
    let mut seen = HashSet::new();
    for r in requests {
        let reference_id = r
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or_default();
        if !valid_reference_id(reference_id) || !seen.insert(reference_id.to_string()) {
            return Err(bad_request(&format!(
                "Invalid or duplicate referenceId: {reference_id}"
            )));
        }
        if r.get("method").and_then(Json::as_str).is_none()
            || r.get("url").and_then(Json::as_str).is_none()
        {
            return Err(bad_request("Each subrequest needs method and url"));
        }
        if let Some(headers) = r.get("httpHeaders").and_then(Json::as_object) {
            if headers.keys().any(|k| {
                ["accept", "authorization", "content-type"]
                    .contains(&k.to_ascii_lowercase().as_str())
            }) {
                return Err(bad_request(
                    "httpHeaders may not set Accept, Authorization or Content-Type",
                ));
            }
        }
    }
    Ok(())
}

/// `POST /composite`.
pub(crate) fn composite(emu: &Emulator, call: &Call) -> Reply {
    let Some(body) = call.body.as_ref().and_then(Json::as_object) else {
        return bad_request("A composite request body is required");
    };
    let Some(requests) = body.get("compositeRequest").and_then(Json::as_array) else {
        return bad_request("compositeRequest is required");
    };
    if let Err(reply) = validate_composite(requests) {
        return reply;
    }
    let all_or_none = body
        .get("allOrNone")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let mut org = emu.org();
    let (responses, _) = run_subrequests(emu, &mut org, requests, all_or_none);
    Reply::json(200, &json!({"compositeResponse": responses}))
}

/// `POST /composite/graph`: each graph succeeds or fails as a unit.
pub(crate) fn graph(emu: &Emulator, call: &Call) -> Reply {
    let Some(graphs) = call
        .body
        .as_ref()
        .and_then(|b| b.get("graphs"))
        .and_then(Json::as_array)
    else {
        return bad_request("graphs is required");
    };
    if graphs.len() > 75 {
        return bad_request("Maximum 75 graphs are allowed");
    }
    let total_nodes: usize = graphs
        .iter()
        .map(|g| {
            g.get("compositeRequest")
                .and_then(Json::as_array)
                .map_or(0, Vec::len)
        })
        .sum();
    if total_nodes > 500 {
        return bad_request("Maximum 500 nodes are allowed across graphs");
    }
    let mut org = emu.org();
    let mut out = Vec::new();
    let mut failures = 0;
    for g in graphs {
        let graph_id = g.get("graphId").cloned().unwrap_or(Json::Null);
        let requests = g
            .get("compositeRequest")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if failures >= 14 {
            let halted_all: Vec<Json> = requests
                .iter()
                .map(|r| json!({"body": halted("The transaction was rolled back since another operation in the same transaction failed."), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": r.get("referenceId")}))
                .collect();
            out.push(json!({"graphId": graph_id, "graphResponse": {"compositeResponse": halted_all}, "isSuccessful": false}));
            continue;
        }
        if let Err(reply) = validate_composite(&requests) {
            out.push(json!({"graphId": graph_id, "graphResponse": {"compositeResponse": [{"body": reply.body_json(), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": Json::Null}]}, "isSuccessful": false}));
            failures += 1;
            continue;
        }
        let (responses, failed) = run_subrequests(emu, &mut org, &requests, true);
        failures += usize::from(failed);
        out.push(json!({"graphId": graph_id, "graphResponse": {"compositeResponse": responses}, "isSuccessful": !failed}));
    }
    Reply::json(200, &json!({"graphs": out}))
}
