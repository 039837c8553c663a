//! Conformance checklist items (reference §8), each through the client.

use fieldpulse_salesforce::{
    root_cause, ErrorClass, QueryOptions, RecordOutcome, SfError, Subrequest,
};
use futures_util::TryStreamExt;
use serde_json::json;

use crate::support::{
    account_and_asset, codes, emulator_config, fast_client, jwt_auth, map, start, CLIENT_SECRET,
};

#[tokio::test]
async fn jwt_and_client_credentials_flows_issue_tokens_and_bad_assertions_are_refused() {
    let h = start().await;
    h.client
        .authenticate()
        .await
        .expect("jwt bearer flow works");
    let cc = fast_client(fieldpulse_salesforce::AuthConfig::ClientCredentials {
        token_url: h.base.clone(),
        client_id: h.config.consumer_key.clone(),
        client_secret: CLIENT_SECRET.to_string().into(),
    });
    cc.limits().await.expect("client credentials flow works");
    let wrong_secret = fast_client(fieldpulse_salesforce::AuthConfig::ClientCredentials {
        token_url: h.base.clone(),
        client_id: h.config.consumer_key.clone(),
        client_secret: "nope".to_string().into(),
    });
    match wrong_secret.authenticate().await {
        Err(SfError::Auth {
            status: 400, error, ..
        }) => assert_eq!(error, "invalid_client"),
        other => panic!("expected invalid_client, got {other:?}"),
    }
    let mut wrong_user = emulator_config();
    wrong_user.username = "someone-else@example.com".into();
    match fast_client(jwt_auth(&h.base, &wrong_user))
        .authenticate()
        .await
    {
        Err(SfError::Auth {
            error, description, ..
        }) => assert_eq!(
            (error.as_str(), description.as_str()),
            ("invalid_grant", "user hasn't approved this consumer")
        ),
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/services/oauth2/token", h.base))
        .form(&[
            ("grant_type", "password"),
            ("username", "u"),
            ("password", "p"),
        ])
        .send()
        .await
        .expect("token call");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value =
        serde_json::from_slice(&res.bytes().await.expect("body")).expect("json");
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn missing_or_expired_sessions_get_the_real_401_body_and_versions_need_no_auth() {
    let h = start().await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{}/services/data/v66.0/limits", h.base))
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 401);
    let body: serde_json::Value =
        serde_json::from_slice(&res.bytes().await.expect("body")).expect("json");
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}])
    );
    let versions = http
        .get(format!("{}/services/data/", h.base))
        .send()
        .await
        .expect("versions");
    assert_eq!(versions.status().as_u16(), 200);
    assert!(versions.headers().get("sforce-limit-info").is_none());
    let list: serde_json::Value =
        serde_json::from_slice(&versions.bytes().await.expect("body")).expect("json");
    assert!(list
        .as_array()
        .expect("array")
        .iter()
        .any(|v| v["version"] == "66.0" && v["label"] == "Spring '26"));
    let old = http
        .get(format!("{}/services/data/v30.0/", h.base))
        .send()
        .await
        .expect("old version");
    assert_eq!(old.status().as_u16(), 404);
    h.client.check_version().await.expect("v66.0 is offered");
    let mut config = fieldpulse_salesforce::ClientConfig::new(jwt_auth(&h.base, &h.config));
    config.api_version = "30.0".into();
    let retired = fieldpulse_salesforce::SalesforceClient::new(config).expect("client");
    assert!(matches!(
        retired.check_version().await,
        Err(SfError::Config(_))
    ));
}

#[tokio::test]
async fn an_expired_session_is_reauthenticated_once_and_the_request_replayed() {
    let h = start().await;
    let (account, _) = account_and_asset(&h).await;
    let before = h.client.stats();
    h.emulator.expire_sessions();
    let record = h
        .client
        .get("Account", &account, Some(&["Name"]))
        .await
        .expect("replayed after re-auth");
    assert_eq!(record["Name"], "Acme Water");
    let after = h.client.stats();
    assert_eq!(after.reauths - before.reauths, 1);
    assert_eq!(after.token_requests - before.token_requests, 1);
    // Sessions also expire by age (default 2 h). Client credentials carry no
    // JWT `exp`, so moving the emulator's clock only ages the session.
    let cc = fast_client(fieldpulse_salesforce::AuthConfig::ClientCredentials {
        token_url: h.base.clone(),
        client_id: h.config.consumer_key.clone(),
        client_secret: CLIENT_SECRET.to_string().into(),
    });
    cc.get("Account", &account, None)
        .await
        .expect("fresh session");
    h.emulator.clock().advance(2 * 3600 * 1000 + 1);
    cc.get("Account", &account, None)
        .await
        .expect("replayed after the session aged out");
    assert_eq!(cc.stats().reauths, 1);
}

#[tokio::test]
async fn a_replay_that_is_still_unauthorized_fails_instead_of_looping() {
    let mut config = emulator_config();
    config.session_lifetime = std::time::Duration::ZERO;
    let h = crate::support::start_with(config).await;
    let err = h
        .client
        .limits()
        .await
        .expect_err("every session is born expired");
    assert!(matches!(err, SfError::SessionInvalid), "{err:?}");
    assert_eq!(
        h.client.stats().token_requests,
        2,
        "one login, one re-auth, no loop"
    );
}

#[tokio::test]
async fn records_are_created_read_updated_and_deleted_with_real_status_codes() {
    let h = start().await;
    let (account, asset) = account_and_asset(&h).await;
    assert_eq!(account.len(), 18);
    assert!(account.starts_with("001") && asset.starts_with("02i"));
    let case_id = h
        .client
        .create(
            "Case",
            &map(
                json!({"Subject": "Bearing temperature rising", "AssetId": asset, "Origin": "IoT"}),
            ),
        )
        .await
        .expect("unrestricted picklist accepts IoT");
    let case = h.client.get("Case", &case_id, None).await.expect("get");
    assert_eq!(case["attributes"]["type"], "Case");
    assert_eq!(case["Status"], "New", "Status defaults to New");
    assert_eq!(case["Priority"], "Medium");
    assert_eq!(case["CaseNumber"].as_str().map(str::len), Some(8));
    assert_eq!(case["IsClosed"], false);
    h.client
        .update("Case", &case_id, &map(json!({"Status": "Closed"})))
        .await
        .expect("update");
    let closed = h
        .client
        .get("Case", &case_id[..15], Some(&["IsClosed", "ClosedDate"]))
        .await
        .expect("15-char id accepted");
    assert_eq!(closed["IsClosed"], true);
    assert!(closed["ClosedDate"]
        .as_str()
        .is_some_and(|d| d.ends_with("+0000")));
    h.client.delete("Case", &case_id).await.expect("delete");
    let deleted: Vec<serde_json::Value> = h
        .client
        .query(
            "SELECT Id, IsDeleted FROM Case",
            QueryOptions {
                include_deleted: true,
                ..QueryOptions::default()
            },
        )
        .try_collect()
        .await
        .expect("queryAll");
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        deleted[0]["IsDeleted"], true,
        "queryAll shows recycle-bin rows"
    );
    assert_eq!(
        h.client
            .count("SELECT COUNT() FROM Case")
            .await
            .expect("count"),
        0
    );
    let err = h
        .client
        .get("Case", &case_id, None)
        .await
        .expect_err("deleted");
    assert_eq!(codes(&err), ["ENTITY_IS_DELETED"]);
    let err = h
        .client
        .get("Case", "500xx0000000000AAB", None)
        .await
        .expect_err("bad checksum in url");
    assert_eq!(codes(&err), ["NOT_FOUND"]);
    assert!(err.api_errors()[0]
        .message
        .contains("Provided external ID field does not exist"));
    let err = h
        .client
        .get("Nope__c", &case_id, None)
        .await
        .expect_err("unknown object");
    assert!(matches!(err, SfError::Api { status: 404, .. }));
}

#[tokio::test]
async fn validation_rejects_what_salesforce_rejects_with_the_real_codes() {
    let h = start().await;
    let (account, asset) = account_and_asset(&h).await;
    let err = h
        .client
        .create(
            "Asset_Alert__c",
            &map(json!({"Asset__c": asset, "Priority__c": "Urgent"})),
        )
        .await
        .expect_err("restricted picklist");
    assert_eq!(codes(&err), ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]);
    assert_eq!(err.api_errors()[0].fields, ["Priority__c"]);
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = h
        .client
        .create("Asset_Alert__c", &map(json!({"Score__c": 0.5})))
        .await
        .expect_err("missing required lookup");
    assert_eq!(codes(&err), ["REQUIRED_FIELD_MISSING"]);
    assert_eq!(err.api_errors()[0].fields, ["Asset__c"]);
    let missing_asset = "02ixx0000009999AAA";
    let err = h
        .client
        .create(
            "Asset_Alert__c",
            &map(json!({"Asset__c": fix_checksum(missing_asset)})),
        )
        .await
        .expect_err("lookup to a missing record");
    assert_eq!(codes(&err), ["INVALID_CROSS_REFERENCE_KEY"]);
    let err = h
        .client
        .create("Asset_Alert__c", &map(json!({"Asset__c": account})))
        .await
        .expect_err("lookup to the wrong object");
    assert_eq!(codes(&err), ["FIELD_INTEGRITY_EXCEPTION"]);
    let err = h
        .client
        .create(
            "Asset_Alert__c",
            &map(json!({"Asset__c": "02ixx000000BAD"})),
        )
        .await
        .expect_err("malformed id");
    assert_eq!(codes(&err), ["MALFORMED_ID"]);
    let err = h.client.create("Asset_Alert__c", &map(json!({"Asset__c": asset, "Score__c": 12.5, "Priority__c": "Urgent", "Bogus__c": 1}))).await.expect_err("several problems");
    assert_eq!(
        codes(&err),
        [
            "INVALID_FIELD",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "NUMBER_OUTSIDE_VALID_RANGE"
        ],
        "all errors of a record, in order"
    );
    let err = h
        .client
        .create("Asset", &map(json!({"Name": "Orphan"})))
        .await
        .expect_err("asset needs account or contact");
    assert_eq!(codes(&err), ["FIELD_INTEGRITY_EXCEPTION"]);
    let err = h
        .client
        .create("Case", &map(json!({"CaseNumber": "1"})))
        .await
        .expect_err("auto-number is read-only");
    assert_eq!(codes(&err), ["INVALID_FIELD_FOR_INSERT_UPDATE"]);
    h.client
        .create(
            "Case",
            &map(json!({"Subject": "a", "FieldPulse_Key__c": "fp:case:dup"})),
        )
        .await
        .expect("first key");
    let err = h
        .client
        .create(
            "Case",
            &map(json!({"Subject": "b", "FieldPulse_Key__c": "fp:case:dup"})),
        )
        .await
        .expect_err("duplicate unique key");
    assert_eq!(codes(&err), ["DUPLICATE_VALUE"]);
    let err = h
        .client
        .create("Case", &map(json!({"Subject": 42})))
        .await
        .expect_err("wrong json type");
    assert_eq!(codes(&err), ["JSON_PARSER_ERROR"]);
    let err = h
        .client
        .count("SELECT COUNT() FORM Case")
        .await
        .expect_err("malformed soql");
    assert_eq!(codes(&err), ["MALFORMED_QUERY"]);
    let err = h
        .client
        .count("SELECT COUNT() FROM Case WHERE Nope__c = 1")
        .await
        .expect_err("unknown field");
    assert_eq!(codes(&err), ["INVALID_FIELD"]);
    let err = h
        .client
        .count("SELECT COUNT() FROM Nope__c")
        .await
        .expect_err("unknown object");
    assert_eq!(codes(&err), ["INVALID_TYPE"]);
}

/// Recomputes the checksum so the id is well-formed but unused.
fn fix_checksum(id: &str) -> String {
    fieldpulse_sf_emulator::id::to_id18(&id[..15])
}

#[tokio::test]
async fn upsert_by_external_id_creates_updates_and_refuses_non_external_fields() {
    let h = start().await;
    let (_, asset) = account_and_asset(&h).await;
    let key = "fp:alert:02i:bearing:7";
    let first = h
        .client
        .upsert(
            "Asset_Alert__c",
            "FieldPulse_Key__c",
            key,
            &map(json!({"Asset__c": asset, "Score__c": 0.82, "Priority__c": "High"})),
        )
        .await
        .expect("created");
    assert!(first.created);
    assert!(first.id.starts_with("a01"));
    let second = h
        .client
        .upsert(
            "Asset_Alert__c",
            "FieldPulse_Key__c",
            key,
            &map(json!({"Score__c": 0.91})),
        )
        .await
        .expect("updated");
    assert_eq!(
        (second.id.as_str(), second.created),
        (first.id.as_str(), false)
    );
    let alert = h
        .client
        .get_by_external_id("Asset_Alert__c", "FieldPulse_Key__c", key)
        .await
        .expect("by external id");
    assert_eq!(alert["Score__c"], 0.91);
    assert_eq!(alert["Status__c"], "Open", "picklist default from metadata");
    assert!(alert["Name"].as_str().is_some_and(|n| n.starts_with("AA-")));
    let err = h
        .client
        .upsert("Asset_Alert__c", "Failure_Mode__c", "x", &map(json!({})))
        .await
        .expect_err("not an external id field");
    assert!(matches!(err, SfError::Api { status: 404, .. }));
    let err = h
        .client
        .upsert(
            "Asset_Alert__c",
            "FieldPulse_Key__c",
            "fp:x",
            &map(json!({"FieldPulse_Key__c": "fp:x", "Asset__c": asset})),
        )
        .await
        .expect_err("key in body");
    assert_eq!(codes(&err), ["INVALID_FIELD"]);
    h.client
        .check_external_id("Case", "FieldPulse_Key__c")
        .await
        .expect("deployed key field");
    assert!(matches!(
        h.client
            .check_external_id("Account", "FieldPulse_Key__c")
            .await,
        Err(SfError::Config(_))
    ));
}

#[tokio::test]
async fn collections_report_per_record_results_even_on_http_200() {
    let h = start().await;
    let (_, asset) = account_and_asset(&h).await;
    let mut records: Vec<_> = (0..250).map(|i| map(json!({"FieldPulse_Key__c": format!("fp:alert:{i}"), "Asset__c": asset, "Score__c": 0.5}))).collect();
    records[10] = map(
        json!({"FieldPulse_Key__c": "fp:alert:10", "Asset__c": asset, "Priority__c": "Urgent"}),
    );
    records.push(map(
        json!({"FieldPulse_Key__c": "fp:alert:0", "Asset__c": asset, "Score__c": 0.9}),
    ));
    let outcomes = h
        .client
        .upsert_collection("Asset_Alert__c", "FieldPulse_Key__c", &records)
        .await
        .expect("collections");
    assert_eq!(outcomes.len(), 251);
    match &outcomes[10] {
        RecordOutcome::Failed(errors) => {
            assert_eq!(errors[0].code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
        }
        other => panic!("record 10 should fail, got {other:?}"),
    }
    assert!(matches!(outcomes[0], RecordOutcome::Created(_)));
    assert_eq!(
        outcomes[250],
        RecordOutcome::Updated(outcomes[0].id().expect("id").to_string()),
        "the later duplicate updates the first"
    );
    assert_eq!(h.emulator.live_count("Asset_Alert__c"), 249);
    let alert0 = h
        .client
        .get_by_external_id("Asset_Alert__c", "FieldPulse_Key__c", "fp:alert:0")
        .await
        .expect("alert");
    assert_eq!(alert0["Score__c"], 0.9);
    // allOrNone: good records are rolled back and say so; statusCode, not errorCode.
    let body = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Asset_Alert__c"}, "FieldPulse_Key__c": "fp:aon:1", "Asset__c": asset},
        {"attributes": {"type": "Asset_Alert__c"}, "FieldPulse_Key__c": "fp:aon:2", "Priority__c": "Nope", "Asset__c": asset}
    ]});
    let (status, results) = h
        .client
        .raw_json(
            reqwest::Method::PATCH,
            "/services/data/v66.0/composite/sobjects/Asset_Alert__c/FieldPulse_Key__c",
            Some(body),
        )
        .await
        .expect("collections call");
    assert_eq!(status, 200);
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(
        h.emulator.live_count("Asset_Alert__c"),
        249,
        "nothing from the allOrNone call was kept"
    );
    let too_many: Vec<_> = (0..201)
        .map(|i| json!({"attributes": {"type": "Case"}, "FieldPulse_Key__c": format!("k{i}")}))
        .collect();
    let err = h
        .client
        .raw_json(
            reqwest::Method::PATCH,
            "/services/data/v66.0/composite/sobjects/Case/FieldPulse_Key__c",
            Some(json!({"records": too_many})),
        )
        .await
        .expect_err("over 200");
    assert_eq!(codes(&err), ["EXCEEDED_ID_LIMIT"]);
    let dup = json!({"records": [{"attributes": {"type": "Case"}, "FieldPulse_Key__c": "same"}, {"attributes": {"type": "Case"}, "FieldPulse_Key__c": "same"}]});
    let (_, results) = h
        .client
        .raw_json(
            reqwest::Method::PATCH,
            "/services/data/v66.0/composite/sobjects/Case/FieldPulse_Key__c",
            Some(dup),
        )
        .await
        .expect("dup call");
    assert_eq!(results[0]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(results[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
}

#[tokio::test]
async fn collections_update_by_id_changes_existing_records_and_never_creates() {
    let h = start().await;
    let (account, asset) = account_and_asset(&h).await;
    let other = h
        .client
        .create(
            "Asset",
            &map(json!({"Name": "Pump P-105", "AccountId": account})),
        )
        .await
        .expect("second asset");
    let outcomes = h
        .client
        .update_collection(
            "Asset",
            &[
                (asset.clone(), map(json!({"FieldPulse_Health__c": 71.5}))),
                (other.clone(), map(json!({"FieldPulse_Risk__c": 12.5}))),
                (
                    fix_checksum("02ixx0000009999AAA"),
                    map(json!({"FieldPulse_Health__c": 1})),
                ),
            ],
        )
        .await
        .expect("collections update");
    assert_eq!(outcomes[0], RecordOutcome::Updated(asset.clone()));
    match &outcomes[1] {
        RecordOutcome::Failed(errors) => assert_eq!(errors[0].code, "NUMBER_OUTSIDE_VALID_RANGE"),
        other => panic!("out-of-range risk should fail, got {other:?}"),
    }
    match &outcomes[2] {
        RecordOutcome::Failed(errors) => assert_eq!(errors[0].code, "INVALID_CROSS_REFERENCE_KEY"),
        other => panic!("a missing id should fail, got {other:?}"),
    }
    assert_eq!(h.emulator.live_count("Asset"), 2, "an update never creates");
    let read = h.client.get("Asset", &asset, None).await.expect("asset");
    assert_eq!(read["FieldPulse_Health__c"], 71.5);
}

#[tokio::test]
async fn composite_resolves_references_and_rolls_back_with_processing_halted() {
    let h = start().await;
    let (_, asset) = account_and_asset(&h).await;
    let ok = h
        .client
        .composite(true, &[
            Subrequest { method: "PATCH".into(), url: "/services/data/v66.0/sobjects/Case/FieldPulse_Key__c/fp:case:1".into(), reference_id: "refCase".into(), body: Some(json!({"Subject": "Bearing failure predicted", "AssetId": asset})) },
            Subrequest { method: "PATCH".into(), url: "/services/data/v66.0/sobjects/Asset_Alert__c/FieldPulse_Key__c/fp:alert:1".into(), reference_id: "refAlert".into(), body: Some(json!({"Case__c": "@{refCase.id}", "Asset__c": asset, "Priority__c": "High"})) },
            Subrequest { method: "GET".into(), url: "/services/data/v66.0/sobjects/Asset_Alert__c/@{refAlert.id}?fields=Case__c".into(), reference_id: "readBack".into(), body: None },
        ])
        .await
        .expect("composite");
    assert_eq!(
        ok.iter().map(|r| r.status).collect::<Vec<_>>(),
        [201, 201, 200]
    );
    assert_eq!(ok[2].body["Case__c"], ok[0].body["id"]);
    let failed = h
        .client
        .composite(
            true,
            &[
                Subrequest {
                    method: "PATCH".into(),
                    url: "/services/data/v66.0/sobjects/Case/FieldPulse_Key__c/fp:case:2".into(),
                    reference_id: "refCase".into(),
                    body: Some(json!({"Subject": "x"})),
                },
                Subrequest {
                    method: "PATCH".into(),
                    url:
                        "/services/data/v66.0/sobjects/Asset_Alert__c/FieldPulse_Key__c/fp:alert:2"
                            .into(),
                    reference_id: "refAlert".into(),
                    body: Some(
                        json!({"Case__c": "@{refCase.id}", "Asset__c": asset, "Score__c": 12.5}),
                    ),
                },
            ],
        )
        .await
        .expect("composite call succeeds at HTTP level");
    let cause = root_cause(&failed).expect("a root cause");
    assert_eq!(cause.reference_id, "refAlert");
    assert_eq!(cause.errors()[0].code, "NUMBER_OUTSIDE_VALID_RANGE");
    assert_eq!(failed[0].status, 400);
    assert_eq!(failed[0].errors()[0].code, "PROCESSING_HALTED");
    let err = h
        .client
        .get_by_external_id("Case", "FieldPulse_Key__c", "fp:case:2")
        .await
        .expect_err("rolled back");
    assert_eq!(codes(&err), ["NOT_FOUND"]);
}

#[tokio::test]
async fn limit_header_is_tracked_and_the_daily_allocation_is_enforced() {
    let h = start().await;
    h.client.limits().await.expect("limits");
    let usage = h.client.api_usage().expect("Sforce-Limit-Info seen");
    assert_eq!(usage.max, 100_000);
    assert!(usage.used >= 1);
    h.emulator.set_api_usage(89_999, 100_000);
    h.client.limits().await.expect("the call that reaches 90 %");
    assert!(
        matches!(
            h.client.check_budget(),
            Err(SfError::BudgetExhausted { .. })
        ),
        "budget guard trips at 90 %"
    );
    assert!(
        h.client
            .upsert("Case", "FieldPulse_Key__c", "fp:budget", &map(json!({})))
            .await
            .is_err(),
        "writes are refused by the guard"
    );
    h.emulator.set_api_usage(100_000, 100_000);
    let err = h
        .client
        .count("SELECT COUNT() FROM Case")
        .await
        .expect_err("daily limit");
    assert_eq!(codes(&err), ["REQUEST_LIMIT_EXCEEDED"]);
    assert_eq!(err.class(), ErrorClass::Budget);
}

#[tokio::test]
async fn soql_returns_parent_fields_filters_and_orders() {
    let h = start().await;
    let (_, asset) = account_and_asset(&h).await;
    for (i, status) in ["New", "Completed", "Completed"].iter().enumerate() {
        h.client
            .create(
                "WorkOrder",
                &map(
                    json!({"AssetId": asset, "Status": status, "Subject": format!("Pump job {i}")}),
                ),
            )
            .await
            .expect("work order");
    }
    h.client
        .create("WorkOrder", &map(json!({"Subject": "No asset"})))
        .await
        .expect("work order without asset");
    let rows: Vec<serde_json::Value> = h
        .client
        .query("SELECT Id, Subject, Asset.Name, Asset.Account.Name, StatusCategory FROM WorkOrder WHERE (Status = 'completed' OR Subject LIKE '%asset') AND CreatedDate = LAST_N_DAYS:1 ORDER BY Subject DESC", QueryOptions::default())
        .try_collect()
        .await
        .expect("query");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["Subject"], "Pump job 2");
    assert_eq!(rows[0]["Asset"]["Name"], "Pump P-104");
    assert_eq!(rows[0]["Asset"]["Account"]["Name"], "Acme Water");
    assert_eq!(rows[0]["Asset"]["attributes"]["type"], "Asset");
    assert_eq!(rows[0]["StatusCategory"], "Completed");
    assert_eq!(rows[2]["Subject"], "No asset");
    assert!(
        rows[2]["Asset"].is_null(),
        "an empty lookup renders as null"
    );
    assert_eq!(
        h.client
            .count("SELECT COUNT() FROM WorkOrder WHERE AssetId != null AND Status NOT IN ('New')")
            .await
            .expect("count"),
        2
    );
}

#[tokio::test]
async fn collections_create_update_retrieve_delete_and_graph_follow_the_reference() {
    let h = start().await;
    let (account, asset) = account_and_asset(&h).await;
    let post = reqwest::Method::POST;
    let created = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Case"}, "Subject": "one", "AssetId": asset},
        {"attributes": {"type": "Asset_Alert__c"}, "Asset__c": asset, "Score__c": 0.4},
        {"attributes": {"type": "Case"}, "Subject": "bad", "ContactId": account}
    ]});
    let (status, results) = h
        .client
        .raw_json(
            post.clone(),
            "/services/data/v66.0/composite/sobjects",
            Some(created),
        )
        .await
        .expect("create");
    assert_eq!(status, 200);
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[1]["success"], true);
    assert_eq!(
        results[2]["errors"][0]["statusCode"],
        "FIELD_INTEGRITY_EXCEPTION"
    );
    let case_id = results[0]["id"].as_str().expect("id").to_string();
    let alert_id = results[1]["id"].as_str().expect("id").to_string();
    let update = json!({"records": [{"attributes": {"type": "Case"}, "id": case_id, "Priority": "High"}, {"attributes": {"type": "Case"}, "id": "500xx0000000BA", "Priority": "Low"}]});
    let (_, results) = h
        .client
        .raw_json(
            reqwest::Method::PATCH,
            "/services/data/v66.0/composite/sobjects",
            Some(update),
        )
        .await
        .expect("update");
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[1]["errors"][0]["statusCode"], "MALFORMED_ID");
    let (_, rows) = h
        .client
        .raw_json(
            reqwest::Method::GET,
            &format!(
                "/services/data/v66.0/composite/sobjects/Case?ids={case_id},{}&fields=Id,Priority",
                &account
            ),
            None,
        )
        .await
        .expect("retrieve");
    assert_eq!(rows[0]["Priority"], "High");
    assert!(
        rows[1].is_null(),
        "an id of another object retrieves as null"
    );
    let (_, deleted) = h
        .client
        .raw_json(
            reqwest::Method::DELETE,
            &format!(
                "/services/data/v66.0/composite/sobjects?ids={case_id},{alert_id}&allOrNone=false"
            ),
            None,
        )
        .await
        .expect("delete");
    assert_eq!(deleted[0]["success"], true);
    assert_eq!(deleted[1]["success"], true);
    assert_eq!(h.emulator.live_count("Case"), 0);
    // Relationship by external ID in a body.
    h.client
        .upsert(
            "Case",
            "FieldPulse_Key__c",
            "fp:case:rel",
            &map(json!({"Subject": "parent"})),
        )
        .await
        .expect("case");
    let by_key = h
        .client
        .create(
            "Asset_Alert__c",
            &map(json!({"Asset__c": asset, "Case__r": {"FieldPulse_Key__c": "fp:case:rel"}})),
        )
        .await
        .expect("relationship by external id");
    let alert = h
        .client
        .get("Asset_Alert__c", &by_key, Some(&["Case__c"]))
        .await
        .expect("alert");
    assert!(alert["Case__c"]
        .as_str()
        .is_some_and(|id| id.starts_with("500")));
    let err = h
        .client
        .create(
            "Asset_Alert__c",
            &map(json!({"Asset__c": asset, "Case__r": {"Subject": "parent"}})),
        )
        .await
        .expect_err("not an external id");
    assert_eq!(codes(&err), ["INVALID_FIELD"]);
    // Composite graph: a failing graph rolls back alone.
    let graph = json!({"graphs": [
        {"graphId": "ok", "compositeRequest": [
            {"method": "POST", "url": "/services/data/v66.0/sobjects/MaintenancePlan/", "referenceId": "plan", "body": {"MaintenancePlanTitle": "PM campaign", "StartDate": "2026-11-24", "NextSuggestedMaintenanceDate": "2026-12-01", "GenerationTimeframe": 3, "GenerationTimeframeType": "Months", "DoesAutoGenerateWorkOrders": false}},
            {"method": "POST", "url": "/services/data/v66.0/sobjects/MaintenanceAsset/", "referenceId": "ma1", "body": {"MaintenancePlanId": "@{plan.id}", "AssetId": asset}}
        ]},
        {"graphId": "bad", "compositeRequest": [
            {"method": "POST", "url": "/services/data/v66.0/sobjects/MaintenancePlan/", "referenceId": "plan", "body": {"MaintenancePlanTitle": "Broken", "StartDate": "2026-11-24", "NextSuggestedMaintenanceDate": "2026-12-01", "GenerationTimeframeType": "Fortnights"}},
            {"method": "POST", "url": "/services/data/v66.0/sobjects/MaintenanceAsset/", "referenceId": "ma1", "body": {"MaintenancePlanId": "@{plan.id}", "AssetId": asset}}
        ]}
    ]});
    let (_, result) = h
        .client
        .raw_json(post, "/services/data/v66.0/composite/graph", Some(graph))
        .await
        .expect("graph");
    assert_eq!(result["graphs"][0]["isSuccessful"], true);
    assert_eq!(result["graphs"][1]["isSuccessful"], false);
    let plan_errors: Vec<&str> = result["graphs"][1]["graphResponse"]["compositeResponse"][0]
        ["body"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["errorCode"].as_str())
        .collect();
    assert_eq!(
        plan_errors,
        [
            "REQUIRED_FIELD_MISSING",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        ]
    );
    assert_eq!(h.emulator.live_count("MaintenancePlan"), 1);
    assert_eq!(h.emulator.live_count("MaintenanceAsset"), 1);
    let plan = &h.emulator.records("MaintenancePlan")[0];
    assert_eq!(plan["WorkOrderGenerationStatus"], "NotStarted");
}

#[tokio::test]
async fn oversized_uris_and_describe_follow_the_reference() {
    let h = start().await;
    h.client.authenticate().await.expect("token");
    let long = "a".repeat(17_000);
    let res = reqwest::Client::new()
        .get(format!("{}/services/data/v66.0/query?q={long}", h.base))
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 414);
    let describe = h.client.describe("Asset_Alert__c").await.expect("describe");
    assert_eq!(describe["keyPrefix"], "a01");
    let priority = describe["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "Priority__c")
        .expect("Priority__c");
    assert_eq!(priority["restrictedPicklist"], true);
    assert_eq!(priority["picklistValues"].as_array().map(Vec::len), Some(4));
    let wo = h.client.describe("WorkOrder").await.expect("describe");
    let number = wo["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "WorkOrderNumber")
        .expect("WorkOrderNumber");
    assert_eq!(
        (
            number["createable"].as_bool(),
            number["autoNumber"].as_bool()
        ),
        (Some(false), Some(true))
    );
}

#[tokio::test]
async fn platform_events_publish_with_operation_enqueued_and_are_never_stored() {
    let h = start().await;
    let uuid = h
        .client
        .publish_event("FieldPulse_Alert__e", &map(json!({"Asset_Id__c": "02ixx0000004C92AAE", "Score__c": 0.91, "Failure_Mode__c": "bearing", "Key__c": "fp:alert:02ixx0000004C92AAE:bearing:7"})))
        .await
        .expect("published");
    assert_eq!(
        uuid.len(),
        36,
        "the OPERATION_ENQUEUED message is the event uuid"
    );
    let events = h.emulator.published_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["fields"]["Failure_Mode__c"], "bearing");
    let err = h
        .client
        .publish_event("FieldPulse_Alert__e", &map(json!({"Nope__c": 1})))
        .await
        .expect_err("unknown field");
    assert_eq!(codes(&err), ["INVALID_FIELD"]);
    let err = h
        .client
        .count("SELECT COUNT() FROM FieldPulse_Alert__e")
        .await
        .expect_err("events are not queryable");
    assert_eq!(codes(&err), ["INVALID_TYPE"]);
    assert_eq!(h.emulator.published_events().len(), 1);
}

#[tokio::test]
async fn update_only_upserts_composite_limits_and_bulk_abort_follow_the_reference() {
    let h = start().await;
    let patch = reqwest::Method::PATCH;
    let err = h
        .client
        .raw_json(
            patch.clone(),
            "/services/data/v66.0/sobjects/Case/FieldPulse_Key__c/fp:none?updateOnly=true",
            Some(json!({"Subject": "x"})),
        )
        .await
        .expect_err("updateOnly without a match");
    assert_eq!(codes(&err), ["NOT_FOUND"]);
    assert_eq!(h.emulator.live_count("Case"), 0);
    let too_many: Vec<_> = (0..26)
        .map(|i| json!({"method": "GET", "url": "/services/data/v66.0/limits", "referenceId": format!("r{i}")}))
        .collect();
    let err = h
        .client
        .raw_json(
            reqwest::Method::POST,
            "/services/data/v66.0/composite",
            Some(json!({"compositeRequest": too_many})),
        )
        .await
        .expect_err("26 subrequests");
    assert!(matches!(err, SfError::Api { status: 400, .. }));
    let (_, job) = h
        .client
        .raw_json(
            reqwest::Method::POST,
            "/services/data/v66.0/jobs/query",
            Some(json!({"operation": "query", "query": "SELECT Id FROM Case"})),
        )
        .await
        .expect("job without contentType still answers JSON");
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(job["apiVersion"], 66.0);
    let id = job["id"].as_str().expect("job id");
    let (_, aborted) = h
        .client
        .raw_json(
            patch,
            &format!("/services/data/v66.0/jobs/query/{id}"),
            Some(json!({"state": "Aborted"})),
        )
        .await
        .expect("abort");
    assert_eq!(aborted["state"], "Aborted");
}

#[tokio::test]
async fn malformed_bodies_get_json_parser_error_and_wrong_media_types_415() {
    let h = start().await;
    let http = reqwest::Client::new();
    let token_body = http
        .post(format!("{}/services/oauth2/token", h.base))
        .basic_auth(&h.config.consumer_key, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token call")
        .bytes()
        .await
        .expect("token body");
    let token: serde_json::Value = serde_json::from_slice(&token_body).expect("token json");
    let bearer = token["access_token"].as_str().expect("access token");
    let url = format!("{}/services/data/v66.0/sobjects/Case/", h.base);
    let res = http
        .post(&url)
        .bearer_auth(bearer)
        .header("Content-Type", "application/json")
        .body("{\"Subject\": ")
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 400);
    assert!(res
        .headers()
        .get("sforce-limit-info")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("api-usage=")));
    let errors = fieldpulse_salesforce::ApiError::list_from_body(&res.bytes().await.expect("body"));
    assert_eq!(errors[0].code, "JSON_PARSER_ERROR");
    let res = http
        .post(&url)
        .bearer_auth(bearer)
        .header("Content-Type", "text/plain")
        .body("Subject=x")
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 415);
    let errors = fieldpulse_salesforce::ApiError::list_from_body(&res.bytes().await.expect("body"));
    assert_eq!(errors[0].code, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(h.emulator.live_count("Case"), 0);
}
