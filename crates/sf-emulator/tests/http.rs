//! Raw HTTP checks of shapes the client crate cannot observe (status codes
//! of every write path, headers such as `Allow`), with a plain `reqwest`
//! client and a client-credentials token.

use fieldpulse_sf_emulator::{Emulator, EmulatorConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-only-secret";

struct Org {
    http: reqwest::Client,
    base: String,
    token: String,
    shutdown: CancellationToken,
}

impl Drop for Org {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Org {
    async fn start() -> Org {
        let config = EmulatorConfig {
            consumer_secret: Some(SECRET.into()),
            ..EmulatorConfig::default()
        };
        let emulator = Emulator::new(config.clone(), None).expect("emulator");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        tokio::spawn(emulator.run(listener, shutdown.clone()));
        let http = reqwest::Client::new();
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={SECRET}",
            config.consumer_key
        );
        let token = http
            .post(format!("{base}/services/oauth2/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("token call")
            .text()
            .await
            .expect("token body");
        let token: Value = serde_json::from_str(&token).expect("token json");
        let token = token["access_token"]
            .as_str()
            .expect("access token")
            .to_string();
        Org {
            http,
            base,
            token,
            shutdown,
        }
    }

    /// Sends a call under `/services/data/v66.0`; returns status, `Allow` header and JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/services/data/v66.0{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let res = request.send().await.expect("call");
        let status = res.status();
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = res.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json body")
        };
        (status, allow, json)
    }

    async fn asset(&self) -> String {
        let (_, _, account) = self
            .call(
                Method::POST,
                "/sobjects/Account",
                Some(json!({"Name": "Acme"})),
            )
            .await;
        let (status, _, asset) = self
            .call(
                Method::POST,
                "/sobjects/Asset",
                Some(json!({"Name": "Pump P-104", "AccountId": account["id"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        asset["id"].as_str().expect("asset id").to_string()
    }
}

/// Asserts a REST error array with one `NUMBER_OUTSIDE_VALID_RANGE` on `field`.
fn assert_rest_range_error(body: &Value, field: &str) {
    assert_eq!(body[0]["errorCode"], "NUMBER_OUTSIDE_VALID_RANGE", "{body}");
    assert_eq!(body[0]["fields"], json!([field]), "{body}");
    assert!(body[0]["message"].is_string(), "{body}");
    assert!(body[0].get("statusCode").is_none(), "{body}");
}

/// Asserts a Collections per-record failure with `statusCode` on `field`.
fn assert_record_range_error(result: &Value, field: &str) {
    assert_eq!(result["success"], false, "{result}");
    let error = &result["errors"][0];
    assert_eq!(
        error["statusCode"], "NUMBER_OUTSIDE_VALID_RANGE",
        "{result}"
    );
    assert_eq!(error["fields"], json!([field]), "{result}");
    assert!(error.get("errorCode").is_none(), "{result}");
}

#[tokio::test]
async fn numbers_beyond_precision_minus_scale_integer_digits_are_rejected_on_every_write_path() {
    let org = Org::start().await;
    let asset = org.asset().await;
    // Score__c is Number(4,3): one integer digit.
    let (status, _, body) = org
        .call(
            Method::POST,
            "/sobjects/Asset_Alert__c",
            Some(json!({"Asset__c": asset, "Score__c": 12.5})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "insert: {body}");
    assert_rest_range_error(&body, "Score__c");
    let (status, _, created) = org
        .call(
            Method::POST,
            "/sobjects/Asset_Alert__c",
            Some(json!({"Asset__c": asset, "Score__c": 9.999})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the largest value fits: {created}"
    );
    let id = created["id"].as_str().expect("id");
    let (status, _, body) = org
        .call(
            Method::PATCH,
            &format!("/sobjects/Asset_Alert__c/{id}"),
            Some(json!({"Score__c": -10})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "update: {body}");
    assert_rest_range_error(&body, "Score__c");
    // Upsert, both the create and the update branch.
    let (status, _, body) = org
        .call(
            Method::PATCH,
            "/sobjects/Asset_Alert__c/FieldPulse_Key__c/fp:alert:range",
            Some(json!({"Asset__c": asset, "Score__c": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "upsert create: {body}");
    assert_rest_range_error(&body, "Score__c");
    let (status, _, _) = org
        .call(
            Method::PATCH,
            "/sobjects/Asset_Alert__c/FieldPulse_Key__c/fp:alert:range",
            Some(json!({"Asset__c": asset, "Score__c": 0.5})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = org
        .call(
            Method::PATCH,
            "/sobjects/Asset_Alert__c/FieldPulse_Key__c/fp:alert:range",
            Some(json!({"Score__c": 10.0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "upsert update: {body}");
    assert_rest_range_error(&body, "Score__c");
    // Collections upsert: HTTP 200, the bad record fails alone with statusCode.
    let (status, _, body) = org
        .call(
            Method::PATCH,
            "/composite/sobjects/Asset_Alert__c/FieldPulse_Key__c",
            Some(json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Asset_Alert__c"}, "FieldPulse_Key__c": "fp:alert:c1", "Asset__c": asset, "Score__c": 0.25},
                {"attributes": {"type": "Asset_Alert__c"}, "FieldPulse_Key__c": "fp:alert:c2", "Asset__c": asset, "Score__c": 25},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["success"], true, "{body}");
    assert_record_range_error(&body[1], "Score__c");
    // Collections create and update report it the same way.
    let (status, _, body) = org
        .call(
            Method::POST,
            "/composite/sobjects",
            Some(json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Asset"}, "Name": "P-2", "AccountId": null, "ContactId": null, "FieldPulse_Health__c": 1000},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body[0]["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter(|e| e["statusCode"] == "NUMBER_OUTSIDE_VALID_RANGE")
            .count(),
        1,
        "{body}"
    );
    let (status, _, body) = org
        .call(
            Method::PATCH,
            "/composite/sobjects",
            Some(json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Asset"}, "id": asset, "FieldPulse_Health__c": 999.99},
                {"attributes": {"type": "Asset_Alert__c"}, "id": id, "Score__c": 10},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["success"], true, "Number(5,2) holds 999.99: {body}");
    assert_record_range_error(&body[1], "Score__c");
    // Composite: the subresponse carries the REST array.
    let (status, _, body) = org
        .call(
            Method::POST,
            "/composite",
            Some(json!({"allOrNone": false, "compositeRequest": [
                {"method": "PATCH", "url": "/services/data/v66.0/sobjects/Asset_Alert__c/FieldPulse_Key__c/fp:alert:k1",
                 "referenceId": "alert", "body": {"Asset__c": asset, "Score__c": 12.5}},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sub = &body["compositeResponse"][0];
    assert_eq!(sub["httpStatusCode"], 400, "{body}");
    assert_rest_range_error(&sub["body"], "Score__c");
}

#[tokio::test]
async fn a_known_resource_called_with_a_wrong_method_is_405_with_allow_and_unknown_ones_404() {
    let org = Org::start().await;
    let (_, _, case) = org
        .call(
            Method::POST,
            "/sobjects/Case",
            Some(json!({"Subject": "x"})),
        )
        .await;
    let case_id = case["id"].as_str().expect("case id");
    let checks: Vec<(Method, String, &str)> = vec![
        (
            Method::DELETE,
            "/query?q=SELECT+Id+FROM+Case".into(),
            "GET,HEAD",
        ),
        (
            Method::PUT,
            format!("/sobjects/Case/{case_id}"),
            "GET,HEAD,PATCH,DELETE",
        ),
        // The method is checked before the record is looked up.
        (
            Method::PUT,
            "/sobjects/Case/500xx0000000001AAA".into(),
            "GET,HEAD,PATCH,DELETE",
        ),
        (
            Method::PUT,
            "/sobjects/Case/FieldPulse_Key__c/fp:case:1".into(),
            "GET,HEAD,PATCH,DELETE",
        ),
        (Method::DELETE, "/sobjects/Case".into(), "GET,HEAD,POST"),
        (Method::POST, "/sobjects/Case/describe".into(), "GET,HEAD"),
        (Method::GET, "/composite".into(), "POST"),
        (
            Method::PUT,
            "/composite/sobjects/Case/FieldPulse_Key__c".into(),
            "PATCH",
        ),
        (Method::POST, "/limits".into(), "GET,HEAD"),
    ];
    for (method, path, allowed) in checks {
        let (status, allow, body) = org.call(method.clone(), &path, None).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(
            body[0]["errorCode"], "METHOD_NOT_ALLOWED",
            "{method} {path}"
        );
        // The message is [M] in the reference: check only its start.
        assert!(
            body[0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("HTTP Method '{method}' not allowed"))),
            "{method} {path}: {body}"
        );
        assert_eq!(
            allow.as_deref(),
            Some(allowed.replace(',', ", ").as_str()),
            "{method} {path}"
        );
    }
    for (method, path) in [
        (Method::PUT, "/sobjects/Nope__c/500xx0000000001AAA"),
        (Method::GET, "/nothing"),
        (Method::DELETE, "/sobjects/Case/a/b/c"),
    ] {
        let (status, _, body) = org.call(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body[0]["errorCode"], "NOT_FOUND");
    }
    // A composite subrequest with a wrong method gets the same answer.
    let (_, _, body) = org
        .call(
            Method::POST,
            "/composite",
            Some(json!({"compositeRequest": [
                {"method": "PUT", "url": format!("/services/data/v66.0/sobjects/Case/{case_id}"), "referenceId": "c", "body": {"Subject": "y"}},
            ]})),
        )
        .await;
    let sub = &body["compositeResponse"][0];
    assert_eq!(sub["httpStatusCode"], 405, "{body}");
    assert_eq!(sub["body"][0]["errorCode"], "METHOD_NOT_ALLOWED", "{body}");
    // HEAD works where GET does.
    let (status, _, _) = org.call(Method::HEAD, "/limits", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// `IsClosed` and `ClosedDate` of a Case, read back over REST.
async fn closed_state(org: &Org, id: &str) -> (Value, Value) {
    let (status, _, case) = org
        .call(Method::GET, &format!("/sobjects/Case/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{case}");
    (case["IsClosed"].clone(), case["ClosedDate"].clone())
}

#[tokio::test]
async fn a_case_closed_as_not_a_problem_is_closed_as_the_deployed_case_status_says() {
    let org = Org::start().await;
    let (status, _, created) = org
        .call(
            Method::POST,
            "/sobjects/Case",
            Some(json!({"Subject": "Bearing wear predicted"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("case id").to_string();
    assert_eq!(closed_state(&org, &id).await, (json!(false), Value::Null));
    // A dispatcher dismisses the Case: a closed status from salesforce/.
    let (status, _, body) = org
        .call(
            Method::PATCH,
            &format!("/sobjects/Case/{id}"),
            Some(json!({"Status": "Closed - Not a Problem"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (is_closed, closed_date) = closed_state(&org, &id).await;
    assert_eq!(is_closed, json!(true));
    assert!(closed_date.is_string(), "{closed_date}");
    let (_, _, found) = org
        .call(
            Method::GET,
            "/query?q=SELECT+Id,+Status+FROM+Case+WHERE+IsClosed+=+true",
            None,
        )
        .await;
    assert_eq!(found["totalSize"], 1, "{found}");
    assert_eq!(found["records"][0]["Status"], "Closed - Not a Problem");
    // Reopened, it is open again.
    org.call(
        Method::PATCH,
        &format!("/sobjects/Case/{id}"),
        Some(json!({"Status": "Working"})),
    )
    .await;
    assert_eq!(closed_state(&org, &id).await, (json!(false), Value::Null));
}
