//! Which HTTP methods each known REST resource accepts. A known resource
//! called with another method answers `405 METHOD_NOT_ALLOWED` with an
//! `Allow` header (reference §3.2, §3.3), before any record is looked up;
//! an unknown resource stays `404 NOT_FOUND`.

use axum::http::Method;

use super::{Call, Reply};
use crate::error::ApiErr;
use crate::schema::Schema;

const GET: &[&str] = &["GET", "HEAD"];
const GET_POST: &[&str] = &["GET", "HEAD", "POST"];
const POST: &[&str] = &["POST"];
const PATCH: &[&str] = &["PATCH"];
const ROW: &[&str] = &["GET", "HEAD", "PATCH", "DELETE"];
const ROW_OR_CREATE: &[&str] = &["GET", "HEAD", "POST", "PATCH", "DELETE"];
const COLLECTION: &[&str] = &["POST", "PATCH", "DELETE"];
const JOBS: &[&str] = &["GET", "POST"];
const JOB: &[&str] = &["GET", "PATCH", "DELETE"];
const JOB_RESULTS: &[&str] = &["GET"];

/// The methods a resource (path segments after the version) accepts, in
/// the order Salesforce lists them; `None` when the resource is unknown.
pub(crate) fn allowed(schema: &Schema, segments: &[&str]) -> Option<&'static [&'static str]> {
    Some(match segments {
        [] | ["sobjects"] | ["limits"] => GET,
        ["query" | "queryAll"] | ["query" | "queryAll", _] => GET,
        ["composite"] | ["composite", "graph"] => POST,
        ["composite", "sobjects"] => COLLECTION,
        ["composite", "sobjects", _] => GET_POST,
        ["composite", "sobjects", _, _] => PATCH,
        ["jobs", "query"] => JOBS,
        ["jobs", "query", _] => JOB,
        ["jobs", "query", _, "results"] => JOB_RESULTS,
        ["sobjects", object, rest @ ..] => {
            let obj = &schema.objects[schema.object_idx(object)?];
            match rest {
                [] if obj.is_event() => POST,
                [] => GET_POST,
                ["describe"] => GET,
                _ if obj.is_event() => return None,
                ["Id"] => ROW_OR_CREATE,
                [_] | [_, _] => ROW,
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// `405` for a known resource called with a method it does not accept.
pub(crate) fn check(schema: &Schema, call: &Call) -> Option<Reply> {
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let allowed = allowed(schema, &segments)?;
    let method = &call.method;
    // HEAD is served as GET (the server drops the body).
    let effective = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    if allowed.contains(&effective) || allowed.contains(&method.as_str()) {
        return None;
    }
    Some(
        Reply::error(
            405,
            ApiErr::new(
                "METHOD_NOT_ALLOWED",
                format!(
                    "HTTP Method '{method}' not allowed. Allowed are {}",
                    allowed.join(",")
                ),
            ),
        )
        .header("Allow", allowed.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_list_their_methods_and_unknown_ones_have_none() {
        let schema = Schema::with_embedded_metadata().expect("schema");
        assert_eq!(allowed(&schema, &["query"]), Some(GET));
        assert_eq!(allowed(&schema, &["sobjects", "Case", "500xx"]), Some(ROW));
        assert_eq!(
            allowed(&schema, &["sobjects", "Case", "FieldPulse_Key__c", "k"]),
            Some(ROW)
        );
        assert_eq!(allowed(&schema, &["sobjects", "Nope__c", "500xx"]), None);
        assert_eq!(allowed(&schema, &["sobjects", "Case", "a", "b", "c"]), None);
        assert_eq!(
            allowed(&schema, &["sobjects", "FieldPulse_Alert__e"]),
            Some(POST)
        );
        assert_eq!(allowed(&schema, &["nothing"]), None);
    }
}
