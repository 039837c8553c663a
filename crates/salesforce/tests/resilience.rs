//! Faults: 1,000 Case upserts under 20 % injected failures and a forced
//! session expiry end with exactly 1,000 Cases, every failure retried or reported.

use std::collections::HashSet;
use std::sync::Arc;

use fieldpulse_salesforce::{RecordOutcome, SfError};
use fieldpulse_sf_emulator::FaultConfig;
use futures_util::{stream, StreamExt};
use serde_json::json;

use crate::support::{map, start};

fn twenty_percent_faults() -> FaultConfig {
    FaultConfig {
        seed: 7,
        rate_500: 0.05,
        rate_503: 0.05,
        rate_lock: 0.05,
        rate_limit: 0.05,
        ..FaultConfig::default()
    }
}

#[tokio::test]
async fn a_thousand_case_upserts_survive_twenty_percent_faults_and_a_session_expiry() {
    let h = Arc::new(start().await);
    h.client.authenticate().await.expect("token");
    h.emulator.set_faults(twenty_percent_faults());
    let results: Vec<(usize, Result<fieldpulse_salesforce::UpsertResult, SfError>)> = stream::iter(0..1000usize)
        .map(|i| {
            let h = h.clone();
            async move {
                if i == 500 {
                    h.emulator.expire_sessions();
                }
                let body = map(json!({"Subject": format!("Predicted bearing failure {i}"), "Priority": "High", "Origin": "Web"}));
                (i, h.client.upsert("Case", "FieldPulse_Key__c", &format!("fp:case:asset{i}:bearing:1"), &body).await)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failures: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    let successes = results.len() - failures.len();
    assert_eq!(
        successes + failures.len(),
        1000,
        "every upsert either succeeded or was reported"
    );
    assert!(
        failures.is_empty(),
        "with 8 attempts every fault should be retried to success: {failures:?}"
    );
    assert_eq!(h.emulator.live_count("Case"), 1000, "exactly 1,000 Cases");
    let keys: HashSet<String> = h
        .emulator
        .records("Case")
        .iter()
        .filter_map(|r| r["FieldPulse_Key__c"].as_str().map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 1000, "no duplicates");
    let stats = h.client.stats();
    assert_eq!(
        stats.token_requests, 2,
        "one initial token and one single-flight refresh for 8 concurrent callers: {stats:?}"
    );
    assert!(
        stats.retries > 100,
        "faults were injected and retried: {stats:?}"
    );
    assert!(
        stats.reauths >= 1,
        "the forced expiry was handled by re-authentication: {stats:?}"
    );
    let log = h.emulator.request_log();
    for code in [
        "UNKNOWN_EXCEPTION",
        "SERVER_UNAVAILABLE",
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "INVALID_SESSION_ID",
    ] {
        assert!(
            log.iter().any(|e| e.error_code.as_deref() == Some(code)),
            "{code} was injected"
        );
    }
}

#[tokio::test]
async fn collections_upserts_retry_locked_records_and_report_permanent_failures() {
    let h = start().await;
    h.client.authenticate().await.expect("token");
    h.emulator.set_faults(FaultConfig {
        seed: 11,
        rate_lock: 0.2,
        fail_next_503: 2,
        ..FaultConfig::default()
    });
    let mut records: Vec<_> = (0..1000).map(|i| map(json!({"FieldPulse_Key__c": format!("fp:case:{i}"), "Subject": format!("Case {i}")}))).collect();
    records[3] = map(json!({"FieldPulse_Key__c": "fp:case:3", "Subject": "x".repeat(300)}));
    let outcomes = h
        .client
        .upsert_collection("Case", "FieldPulse_Key__c", &records)
        .await
        .expect("collections");
    let failed: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, RecordOutcome::Failed(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, [3], "only the invalid record fails");
    match &outcomes[3] {
        RecordOutcome::Failed(errors) => assert_eq!(errors[0].code, "STRING_TOO_LONG"),
        _ => unreachable!(),
    }
    assert_eq!(h.emulator.live_count("Case"), 999);
    assert!(h
        .emulator
        .request_log()
        .iter()
        .any(|e| e.error_code.as_deref() == Some("SERVER_UNAVAILABLE")));
}

#[tokio::test]
async fn calls_beyond_the_concurrent_long_running_cap_get_request_limit_exceeded() {
    let h = start().await;
    let http = reqwest::Client::new();
    let token_body = http
        .post(format!("{}/services/oauth2/token", h.base))
        .basic_auth(&h.config.consumer_key, Some(crate::support::CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token call")
        .bytes()
        .await
        .expect("token body");
    let token: serde_json::Value = serde_json::from_slice(&token_body).expect("token json");
    let bearer = token["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    h.emulator.set_faults(FaultConfig {
        latency_ms: 400,
        max_long_running: 1,
        long_running_ms: 0,
        ..FaultConfig::default()
    });
    let limits_url = format!("{}/services/data/v66.0/limits", h.base);
    let slow = http.get(&limits_url).bearer_auth(&bearer).send();
    let second = async {
        // Wait for the event "the slow call is in flight", bounded.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while h.emulator.in_flight() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the slow call reached the emulator");
        http.get(&limits_url)
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("second call")
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!(slow.expect("slow call").status().as_u16(), 200);
    assert_eq!(second.status().as_u16(), 403);
    let errors =
        fieldpulse_salesforce::ApiError::list_from_body(&second.bytes().await.expect("body"));
    assert_eq!(errors[0].code, "REQUEST_LIMIT_EXCEEDED");
    assert!(
        errors[0].is_retriable() && !errors[0].is_daily_limit(),
        "a concurrency limit is retriable, not a budget stop"
    );
    assert_eq!(
        h.emulator.in_flight(),
        0,
        "finished calls leave the in-flight table"
    );
}
