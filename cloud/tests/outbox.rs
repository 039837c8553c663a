//! The outbox against the real emulator (in-process, port 0), the real
//! client and real SQLite in a temp dir: ordering and references, faults,
//! budget, dead letters, restarts, coalescing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldpulse_cloud::outbox::{
    enqueue, Action, DeadLetters, OutboxError, OutboxSender, Replay, SendReport, SenderConfig,
    SCHEMA,
};
use fieldpulse_salesforce::{AuthConfig, ClientConfig, RetryPolicy, SalesforceClient, Secret};
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, FaultConfig, Fixture};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-only-consumer-secret";

struct Harness {
    emulator: Emulator,
    base: String,
    config: EmulatorConfig,
    dir: tempfile::TempDir,
    /// Asset Ids by serial number (seeded).
    assets: Vec<(String, String)>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    async fn start() -> Harness {
        let config = EmulatorConfig {
            consumer_secret: Some(SECRET.into()),
            ..EmulatorConfig::default()
        };
        let emulator = Emulator::new(config.clone(), None).expect("emulator");
        let fixture: Fixture = serde_json::from_value(json!({"objects": [
            {"type": "Account", "records": [{"@ref": "acme", "Name": "Acme Water"}]},
            {"type": "Asset", "records": [
                {"Name": "Pump P-104", "AccountId": "@acme", "SerialNumber": "CP200-0104"},
                {"Name": "Pump P-105", "AccountId": "@acme", "SerialNumber": "CP200-0105"},
                {"Name": "Compressor C-7", "AccountId": "@acme", "SerialNumber": "SC75-0007"}
            ]}
        ]}))
        .expect("fixture");
        emulator.seed(&fixture).expect("seed");
        let assets = emulator
            .records("Asset")
            .iter()
            .map(|a| {
                (
                    a["SerialNumber"].as_str().expect("serial").to_string(),
                    a["Id"].as_str().expect("id").to_string(),
                )
            })
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
        Harness {
            emulator,
            base,
            config,
            dir: tempfile::tempdir().expect("tempdir"),
            assets,
            shutdown,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("cloud.sqlite")
    }

    fn asset(&self, serial: &str) -> String {
        self.assets
            .iter()
            .find(|(s, _)| s == serial)
            .map(|(_, id)| id.clone())
            .expect("seeded asset")
    }

    fn client(&self) -> SalesforceClient {
        let mut config = ClientConfig::new(AuthConfig::ClientCredentials {
            token_url: self.base.clone(),
            client_id: self.config.consumer_key.clone(),
            client_secret: Secret::new(SECRET),
        });
        config.retry = RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(20),
        };
        // The outbox defers first (reserve 20 %); the client's own guard only at the very end.
        config.budget_threshold = 0.999;
        SalesforceClient::new(config).expect("client")
    }

    fn sender(&self, batch_size: usize) -> OutboxSender {
        let config = SenderConfig {
            batch_size,
            retry_base: Duration::ZERO,
            budget_probe_interval: Duration::ZERO,
            ..SenderConfig::default()
        };
        OutboxSender::open(&self.db(), self.client(), config).expect("sender opens")
    }

    /// The processor's side: its own connection, one transaction.
    fn enqueue(&self, actions: &[Action]) -> Vec<i64> {
        enqueue_into(&self.db(), actions)
    }

    async fn count(&self, soql: &str) -> u64 {
        self.client().count(soql).await.expect("count")
    }

    /// Collections calls to `object` in the request log.
    fn collection_calls(&self, object: &str) -> usize {
        let path = format!("/composite/sobjects/{object}/");
        self.emulator
            .request_log()
            .iter()
            .filter(|e| e.path.contains(&path))
            .count()
    }
}

fn enqueue_into(db: &Path, actions: &[Action]) -> Vec<i64> {
    let mut conn = rusqlite::Connection::open(db).expect("processor connection");
    conn.execute_batch(SCHEMA).expect("schema");
    let tx = conn.transaction().expect("transaction");
    let ids = actions
        .iter()
        .map(|a| enqueue(&tx, a, 1_000).expect("enqueue"))
        .collect();
    tx.commit().expect("commit");
    ids
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("expected an object, got {other}"),
    }
}

fn action(sobject: &str, key: &str, value: Value) -> Action {
    Action {
        sobject: sobject.into(),
        ext_key: key.into(),
        fields: fields(value),
        priority: 1,
        deferrable: false,
        source_ms: 500,
    }
}

fn case(key: &str, asset: &str) -> Action {
    action(
        "Case",
        key,
        json!({"Subject": format!("Bearing failure predicted ({key})"), "AssetId": asset, "Priority": "High",
               "Origin": "Web", "AI_Generated__c": true, "FieldPulse_Trace_Id__c": format!("trace-{key}")}),
    )
}

fn alert(key: &str, case_key: &str, asset: &str) -> Action {
    action(
        "Asset_Alert__c",
        key,
        json!({"Asset__c": asset, "Case__r": {"FieldPulse_Key__c": case_key}, "Score__c": 0.91,
               "Priority__c": "High", "Status__c": "Open", "Priority_Score__c": 1234.5678,
               "AI_Generated__c": true, "FieldPulse_Trace_Id__c": format!("trace-{case_key}")}),
    )
}

/// Passes until nothing is pending (bounded).
async fn drain(sender: &OutboxSender) -> Vec<SendReport> {
    let mut reports = Vec::new();
    for _ in 0..200 {
        let report = sender.send_pending().await.expect("pass");
        reports.push(report);
        if sender.stats().depth == 0 {
            return reports;
        }
    }
    panic!("outbox did not drain: {:?}", reports.last());
}

fn row_states(db: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn
        .prepare("SELECT ext_key, state, sf_id FROM outbox_actions ORDER BY id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn actions_go_out_parents_first_with_references_resolved_in_one_pass() {
    let h = Harness::start().await;
    let p104 = h.asset("CP200-0104");
    let p105 = h.asset("CP200-0105");
    // Enqueued children first: the sender must still send parents first.
    h.enqueue(&[
        action(
            "AI_Insight__c",
            "fp:ins:1",
            json!({"Model_Name__c": "bearing-gbdt", "Action__c": "Case", "Target_Object__c": "Case",
                   "Target_Record_Id__c": {"$sf_id": "fp:case:1"}, "Rollout_Mode__c": "act",
                   "Outcome__c": "created", "Source_Range__c": "gw-1 epoch 3 seq 10..42",
                   "Priority_Inputs__c": "{\"probability\":0.8}", "AI_Generated__c": true,
                   "FieldPulse_Trace_Id__c": "trace-fp:case:1"}),
        ),
        alert("fp:alert:1", "fp:case:1", &p104),
        action(
            "MaintenanceAsset",
            "fp:pma:1:p105",
            json!({"MaintenancePlan": {"FieldPulse_Key__c": "fp:pm:1"}, "AssetId": p105}),
        ),
        action(
            "Asset",
            "CP200-0104",
            json!({"FieldPulse_Health__c": 41.5, "FieldPulse_Risk__c": 0.8, "FieldPulse_Last_Scored__c": "2026-12-01T10:00:00Z"}),
        ),
        action("Asset", &p105, json!({"FieldPulse_Health__c": 97.0})),
        case("fp:case:1", &p104),
        action(
            "MaintenancePlan",
            "fp:pm:1",
            json!({"MaintenancePlanTitle": "PM campaign pump bearings", "StartDate": "2026-12-07",
                   "NextSuggestedMaintenanceDate": "2026-12-14", "GenerationTimeframe": 3,
                   "GenerationTimeframeType": "Months", "DoesAutoGenerateWorkOrders": false,
                   "AI_Generated__c": true}),
        ),
    ]);
    let sender = h.sender(200);
    let report = sender.send_pending().await.expect("pass");
    assert_eq!(report.sent, 7, "{report:?}");
    assert_eq!(
        (report.dead, report.held, report.retried),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.latencies_ms.len(), 7);
    let client = h.client();
    let case = client
        .get_by_external_id("Case", "FieldPulse_Key__c", "fp:case:1")
        .await
        .expect("case");
    let alert = client
        .get_by_external_id("Asset_Alert__c", "FieldPulse_Key__c", "fp:alert:1")
        .await
        .expect("alert");
    assert_eq!(
        alert["Case__c"], case["Id"],
        "the child points at its parent"
    );
    assert_eq!(alert["Asset__c"], p104.as_str());
    let insight = client
        .get_by_external_id("AI_Insight__c", "FieldPulse_Key__c", "fp:ins:1")
        .await
        .expect("insight");
    assert_eq!(
        insight["Target_Record_Id__c"], case["Id"],
        "$sf_id resolved"
    );
    assert_eq!(insight["Rollout_Mode__c"], "act");
    let plan = client
        .get_by_external_id("MaintenancePlan", "FieldPulse_Key__c", "fp:pm:1")
        .await
        .expect("plan");
    let member = client
        .get_by_external_id("MaintenanceAsset", "FieldPulse_Key__c", "fp:pma:1:p105")
        .await
        .expect("maintenance asset");
    assert_eq!(member["MaintenancePlanId"], plan["Id"]);
    let asset = client.get("Asset", &p104, None).await.expect("asset");
    assert_eq!(asset["FieldPulse_Health__c"], 41.5);
    assert_eq!(
        client.get("Asset", &p105, None).await.expect("asset")["FieldPulse_Health__c"],
        97.0
    );
    assert_eq!(
        h.count("SELECT COUNT() FROM Asset").await,
        3,
        "assets are never created"
    );
    // Parents were written before children, in the request log too.
    let log = h.emulator.request_log();
    let first = |needle: &str| {
        log.iter()
            .position(|e| e.path.contains(needle))
            .unwrap_or_else(|| panic!("no call to {needle}"))
    };
    assert!(first("/composite/sobjects/Case/") < first("/composite/sobjects/Asset_Alert__c/"));
    assert!(
        first("/composite/sobjects/MaintenancePlan/")
            < first("/composite/sobjects/MaintenanceAsset/")
    );
    assert!(
        first("/composite/sobjects/Asset_Alert__c/") < first("/composite/sobjects/AI_Insight__c/")
    );
    // Every row records its Salesforce Id.
    let rows = row_states(&h.db());
    assert!(
        rows.iter()
            .all(|(_, state, id)| state == "sent" && id.is_some()),
        "{rows:?}"
    );
    let case_row = rows.iter().find(|(k, _, _)| k == "fp:case:1").expect("row");
    assert_eq!(case_row.2.as_deref(), case["Id"].as_str());
    // A second health update by serial number uses the cached Id: no new SOQL.
    let queries = |log: &[fieldpulse_sf_emulator::LogEntry]| {
        log.iter().filter(|e| e.path.ends_with("/query")).count()
    };
    let before = queries(&h.emulator.request_log());
    h.enqueue(&[action(
        "Asset",
        "CP200-0104",
        json!({"FieldPulse_Health__c": 39.0}),
    )]);
    let report = sender.send_pending().await.expect("pass");
    assert_eq!((report.sent, report.updated), (1, 1));
    assert_eq!(queries(&h.emulator.request_log()), before);
    let stats = sender.stats();
    assert_eq!(stats.depth, 0);
    assert_eq!(stats.sent[&("Case".to_string(), "created".to_string())], 1);
    assert_eq!(stats.sent[&("Asset".to_string(), "updated".to_string())], 3);
    assert!(stats.api_calls > 0);
    assert!(stats.remaining_daily_budget.is_some());
}

#[tokio::test]
async fn every_action_is_delivered_exactly_once_under_faults_and_session_expiry() {
    let h = Harness::start().await;
    let asset = h.asset("SC75-0007");
    let mut actions = Vec::new();
    for i in 0..300 {
        actions.push(case(&format!("fp:case:{i}"), &asset));
        actions.push(alert(
            &format!("fp:alert:{i}"),
            &format!("fp:case:{i}"),
            &asset,
        ));
    }
    h.enqueue(&actions);
    // About 20 % of calls fail with 5xx or an expired session, and a fifth of
    // Collections records hit UNABLE_TO_LOCK_ROW.
    h.emulator.set_faults(FaultConfig {
        seed: 7,
        rate_503: 0.1,
        rate_500: 0.05,
        rate_session_expiry: 0.05,
        rate_lock: 0.2,
        ..FaultConfig::default()
    });
    let sender = h.sender(50);
    let first = sender.send_pending().await.expect("pass");
    h.emulator.expire_sessions();
    let reports = drain(&sender).await;
    h.emulator.set_faults(FaultConfig::default());
    assert_eq!(h.count("SELECT COUNT() FROM Case").await, 300);
    assert_eq!(h.count("SELECT COUNT() FROM Asset_Alert__c").await, 300);
    assert_eq!(
        h.count("SELECT COUNT() FROM Asset_Alert__c WHERE Case__c = null")
            .await,
        0,
        "every alert found its Case"
    );
    let stats = sender.stats();
    assert_eq!(stats.dead_letters, 0, "{:?}", sender.dead_letters());
    assert_eq!(stats.depth, 0);
    let sent: usize = std::iter::once(&first)
        .chain(&reports)
        .map(|r| r.sent)
        .sum();
    assert_eq!(sent, 600, "each record confirmed once");
    // 600 records need 12 calls of 50; faults forced more (retried by the
    // client, or by the outbox on a later pass).
    assert!(h.collection_calls("Case") + h.collection_calls("Asset_Alert__c") > 12);
    assert!(h.emulator.request_log().iter().any(|e| e.status == 401));
    assert!(h.emulator.request_log().iter().any(|e| e.status >= 500));
}

#[tokio::test]
async fn a_short_budget_defers_low_priority_updates_and_an_exhausted_one_pauses_without_losing_anything(
) {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0104");
    h.enqueue(&[case("fp:case:1", &asset), case("fp:case:2", &asset)]);
    let sender = h.sender(200);
    assert_eq!(sender.send_pending().await.expect("pass").sent, 2);
    // 15 % left, below the 20 % reserve.
    h.emulator.set_api_usage(850, 1000);
    let deferrable = |mut a: Action| {
        a.deferrable = true;
        a.priority = 3;
        a
    };
    h.enqueue(&[
        deferrable(alert("fp:alert:1", "fp:case:1", &asset)),
        deferrable(alert("fp:alert:2", "fp:case:2", &asset)),
        // A deferrable update of an existing Case waits ...
        deferrable(action(
            "Case",
            "fp:case:2",
            json!({"Description": "still rising"}),
        )),
        // ... but a Case the outbox never created is a create and goes out.
        deferrable(case("fp:case:3", &asset)),
        case("fp:case:4", &asset),
    ]);
    let report = sender.send_pending().await.expect("pass");
    assert_eq!(report.sent, 2, "{report:?}");
    assert!(report.deferred >= 3, "{report:?}");
    assert_eq!(h.count("SELECT COUNT() FROM Case").await, 4);
    assert_eq!(h.count("SELECT COUNT() FROM Asset_Alert__c").await, 0);
    // The allocation runs out: 403 REQUEST_LIMIT_EXCEEDED, nothing is dropped.
    h.emulator.set_api_usage(1000, 1000);
    h.enqueue(&[case("fp:case:5", &asset)]);
    let report = sender.send_pending().await.expect("pass");
    assert!(report.budget_paused, "{report:?}");
    assert_eq!(report.sent, 0);
    let report = sender.send_pending().await.expect("pass");
    assert!(
        report.budget_paused,
        "the probe still sees no budget: {report:?}"
    );
    let stats = sender.stats();
    assert!(stats.budget_paused);
    assert_eq!(stats.dead_letters, 0);
    assert_eq!(stats.depth, 4, "1 Case create + 3 deferred updates wait");
    assert!(h
        .emulator
        .request_log()
        .iter()
        .any(|e| e.error_code.as_deref() == Some("REQUEST_LIMIT_EXCEEDED")));
    // The window rolls over: everything goes out.
    h.emulator.set_api_usage(0, 1000);
    drain(&sender).await;
    assert_eq!(h.count("SELECT COUNT() FROM Case").await, 5);
    assert_eq!(h.count("SELECT COUNT() FROM Asset_Alert__c").await, 2);
    let case2 = h
        .client()
        .get_by_external_id("Case", "FieldPulse_Key__c", "fp:case:2")
        .await
        .expect("case 2");
    assert_eq!(case2["Description"], "still rising");
    assert!(!sender.stats().budget_paused);
}

#[tokio::test]
async fn a_permanent_error_dead_letters_the_action_and_its_children_and_nothing_else() {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0105");
    let mut bad_case = case("fp:case:bad", &asset);
    bad_case
        .fields
        .insert("Subject".into(), json!("x".repeat(300)));
    let mut bad_alert = alert("fp:alert:range", "fp:case:ok", &asset);
    bad_alert.fields.insert("Score__c".into(), json!(12.5));
    h.enqueue(&[
        case("fp:case:ok", &asset),
        bad_case,
        alert("fp:alert:ok", "fp:case:ok", &asset),
        alert("fp:alert:orphan", "fp:case:bad", &asset),
        bad_alert,
        action(
            "Asset",
            "NO-SUCH-SERIAL",
            json!({"FieldPulse_Health__c": 50.0}),
        ),
    ]);
    let sender = h.sender(200);
    drain(&sender).await;
    assert_eq!(h.count("SELECT COUNT() FROM Case").await, 1);
    assert_eq!(h.count("SELECT COUNT() FROM Asset_Alert__c").await, 1);
    let dead = sender.dead_letters().expect("dead letters");
    let code_of = |key: &str| {
        dead.iter()
            .find(|d| d.ext_key == key)
            .map(|d| (d.error_code.clone(), d.fields.clone()))
            .unwrap_or_else(|| panic!("{key} is not dead: {dead:?}"))
    };
    assert_eq!(
        code_of("fp:case:bad"),
        ("STRING_TOO_LONG".into(), vec!["Subject".into()])
    );
    assert_eq!(code_of("fp:alert:orphan").0, "PARENT_DEAD");
    assert!(dead
        .iter()
        .any(|d| d.ext_key == "fp:alert:orphan" && d.message.contains("fp:case:bad")));
    assert_eq!(
        code_of("fp:alert:range"),
        ("NUMBER_OUTSIDE_VALID_RANGE".into(), vec!["Score__c".into()])
    );
    assert_eq!(code_of("NO-SUCH-SERIAL").0, "ASSET_NOT_FOUND");
    assert_eq!(dead.len(), 4);
    let stats = sender.stats();
    assert_eq!(stats.dead_letters, 4);
    assert_eq!(stats.sent[&("Case".to_string(), "rejected".to_string())], 1);
    assert_eq!(
        stats.sent[&("Asset_Alert__c".to_string(), "rejected".to_string())],
        2
    );
    let states = row_states(&h.db());
    assert_eq!(states.iter().filter(|(_, s, _)| s == "sent").count(), 2);
}

#[tokio::test]
async fn a_sender_dropped_mid_pass_and_reopened_sends_the_rest_without_duplicates() {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0104");
    let actions: Vec<Action> = (0..400)
        .map(|i| case(&format!("fp:case:{i}"), &asset))
        .collect();
    h.enqueue(&actions);
    h.emulator.set_faults(FaultConfig {
        latency_ms: 20,
        ..FaultConfig::default()
    });
    {
        let sender = h.sender(25);
        let pass = sender.send_pending();
        tokio::pin!(pass);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // Drop the pass once Salesforce holds some records but not all.
        loop {
            tokio::select! {
                res = &mut pass => panic!("the pass should not finish first: {res:?}"),
                _ = tokio::time::sleep(Duration::from_millis(2)) => {
                    if h.emulator.live_count("Case") > 0 {
                        break;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "no record ever arrived");
                }
            }
        }
        // Dropping the future here is the crash: some confirmed records may be unmarked.
    }
    let in_salesforce = h.emulator.live_count("Case");
    assert!(in_salesforce > 0 && in_salesforce < 400, "{in_salesforce}");
    let marked = row_states(&h.db())
        .iter()
        .filter(|(_, s, _)| s == "sent")
        .count();
    assert!(
        marked <= in_salesforce,
        "a row is marked sent only after Salesforce confirmed it"
    );
    h.emulator.set_faults(FaultConfig::default());
    let sender = h.sender(25);
    let reports = drain(&sender).await;
    assert_eq!(
        h.count("SELECT COUNT() FROM Case").await,
        400,
        "no duplicates, none missing"
    );
    let rows = row_states(&h.db());
    assert!(rows.iter().all(|(_, s, id)| s == "sent" && id.is_some()));
    let created: usize = reports.iter().map(|r| r.created).sum();
    let updated: usize = reports.iter().map(|r| r.updated).sum();
    assert_eq!(
        created + updated,
        400 - marked,
        "each unmarked row is sent once more"
    );
    assert!(
        updated >= in_salesforce - marked,
        "records confirmed but unmarked at the crash come back as updates, not duplicates"
    );
}

#[tokio::test]
async fn pending_rows_of_one_key_coalesce_into_one_record_with_the_latest_fields() {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0104");
    let mut rows = vec![case("fp:case:1", &asset)];
    rows[0].source_ms = 100;
    for (i, subject) in ["score 0.7", "score 0.8", "score 0.9"].iter().enumerate() {
        let mut update = action("Case", "fp:case:1", json!({"Subject": subject}));
        update.source_ms = 200 + i as i64;
        rows.push(update);
    }
    rows.push(case("fp:case:2", &asset));
    let ids = h.enqueue(&rows);
    assert_eq!(ids.len(), 5);
    let sender = h.sender(200);
    let report = sender.send_pending().await.expect("pass");
    assert_eq!((report.sent, report.created), (2, 2), "{report:?}");
    assert_eq!(
        h.collection_calls("Case"),
        1,
        "one call for the whole episode"
    );
    let case = h
        .client()
        .get_by_external_id("Case", "FieldPulse_Key__c", "fp:case:1")
        .await
        .expect("case");
    assert_eq!(case["Subject"], "score 0.9", "the latest fields win");
    assert_eq!(
        case["Origin"], "Web",
        "fields only the first row set are kept"
    );
    assert_eq!(case["AI_Generated__c"], true);
    let states = row_states(&h.db());
    let ids_of_case1: Vec<_> = states
        .iter()
        .filter(|(k, _, _)| k == "fp:case:1")
        .map(|(_, s, id)| (s.clone(), id.clone()))
        .collect();
    assert_eq!(ids_of_case1.len(), 4);
    assert!(ids_of_case1
        .iter()
        .all(|(s, id)| s == "sent" && id.as_deref() == case["Id"].as_str()));
}

#[test]
fn enqueue_refuses_actions_the_sender_could_never_deliver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = rusqlite::Connection::open(dir.path().join("x.sqlite")).expect("open");
    conn.execute_batch(SCHEMA).expect("schema");
    conn.execute_batch(SCHEMA)
        .expect("the schema is idempotent");
    let tx = conn.transaction().expect("tx");
    let mut bad = vec![
        action("WorkOrder", "fp:wo:1", json!({})),
        action("Case", "fp:case:1 bad", json!({})),
        action("Case", "", json!({})),
        action(
            "Case",
            "fp:case:1",
            json!({"FieldPulse_Key__c": "fp:case:1"}),
        ),
    ];
    let mut urgent = action("Case", "fp:case:1", json!({}));
    urgent.priority = 4;
    bad.push(urgent);
    for a in &bad {
        let err = enqueue(&tx, a, 0).expect_err("invalid action");
        assert!(
            err.to_string().contains(&a.sobject),
            "the error names the action: {err}"
        );
    }
    let ok = enqueue(&tx, &action("Asset", "CP200 0104/β", json!({})), 0)
        .expect("asset serials may use any characters");
    assert!(ok > 0);
}

#[tokio::test]
async fn run_sends_when_woken_and_drains_when_cancelled() {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0104");
    let config = SenderConfig {
        // Only a wake-up or the drain can trigger a pass in this test.
        poll_interval: Duration::from_secs(3600),
        ..SenderConfig::default()
    };
    let sender =
        std::sync::Arc::new(OutboxSender::open(&h.db(), h.client(), config).expect("sender opens"));
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let sender = sender.clone();
        let cancel = cancel.clone();
        async move { sender.run(cancel).await }
    });
    h.enqueue(&[case("fp:case:woken", &asset)]);
    sender.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.emulator.live_count("Case") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wake-up was lost"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.enqueue(&[
        case("fp:case:drained", &asset),
        case("fp:case:drained2", &asset),
    ]);
    cancel.cancel();
    task.await.expect("run ends after cancellation");
    assert_eq!(
        h.count("SELECT COUNT() FROM Case").await,
        3,
        "the drain sent the rest"
    );
    assert_eq!(sender.stats().depth, 0);
}

/// Attempts recorded on the pending rows of `key`.
fn attempts_of(db: &Path, key: &str) -> Vec<u32> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn
        .prepare("SELECT attempts FROM outbox_actions WHERE ext_key = ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([key], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn a_case_under_lock_contention_is_retried_past_any_attempt_count_and_never_dead_lettered() {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0104");
    h.enqueue(&[case("fp:case:locked", &asset)]);
    // Every record write hits UNABLE_TO_LOCK_ROW, through the client's own
    // retries, for more passes than the old ten-attempt limit.
    h.emulator.set_faults(FaultConfig {
        seed: 3,
        rate_lock: 1.0,
        ..FaultConfig::default()
    });
    let sender = h.sender(200);
    for pass in 0..15 {
        let report = sender.send_pending().await.expect("pass");
        assert_eq!(report.dead, 0, "pass {pass}: {report:?}");
        assert_eq!(report.retried, 1, "pass {pass}: {report:?}");
    }
    let stats = sender.stats();
    assert_eq!(stats.dead_letters, 0, "{:?}", sender.dead_letters());
    assert_eq!(stats.depth, 1, "the Case is still pending");
    assert_eq!(attempts_of(&h.db(), "fp:case:locked"), vec![15]);
    assert_eq!(stats.sent[&("Case".to_string(), "retried".to_string())], 15);
    assert_eq!((stats.retrying, stats.max_attempts), (1, 15));
    assert_eq!(h.emulator.live_count("Case"), 0);
    // The contention ends: the Case goes out once.
    h.emulator.set_faults(FaultConfig::default());
    drain(&sender).await;
    assert_eq!(h.count("SELECT COUNT() FROM Case").await, 1);
    assert_eq!(sender.stats().dead_letters, 0);
    let states = row_states(&h.db());
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].1, "sent");
}

#[tokio::test]
async fn replayed_dead_letters_go_out_once_the_org_is_fixed_and_die_again_otherwise() {
    let h = Harness::start().await;
    let asset = h.asset("CP200-0104");
    let mut bad_case = case("fp:case:bad", &asset);
    bad_case
        .fields
        .insert("Subject".into(), json!("x".repeat(300)));
    h.enqueue(&[
        // The alert's Case was meant to be created by hand in Salesforce.
        alert("fp:alert:lost", "fp:case:manual", &asset),
        bad_case,
        alert("fp:alert:orphan", "fp:case:bad", &asset),
        // An Asset the org does not have yet.
        action("Asset", "CP200-0999", json!({"FieldPulse_Health__c": 50.0})),
    ]);
    let sender = h.sender(200);
    drain(&sender).await;
    let mut dead_letters = DeadLetters::open(&h.db()).expect("dead letters open");
    let listed = dead_letters.list().expect("list");
    let codes: Vec<(&str, &str)> = listed
        .iter()
        .map(|d| (d.ext_key.as_str(), d.error_code.as_str()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("fp:alert:lost", "INVALID_FIELD"),
            ("fp:case:bad", "STRING_TOO_LONG"),
            ("fp:alert:orphan", "PARENT_DEAD"),
            ("CP200-0999", "ASSET_NOT_FOUND"),
        ]
    );
    assert!(listed.iter().all(|d| d.dead_ms > 0));

    // The operator fixes the org: the Case the alert names, and the Asset.
    let client = h.client();
    let account = h.emulator.records("Account")[0]["Id"]
        .as_str()
        .expect("account id")
        .to_string();
    client
        .create(
            "Case",
            &fields(json!({"Subject": "opened by hand", "FieldPulse_Key__c": "fp:case:manual"})),
        )
        .await
        .expect("case created by hand");
    client
        .create(
            "Asset",
            &fields(
                json!({"Name": "Pump P-999", "AccountId": account, "SerialNumber": "CP200-0999"}),
            ),
        )
        .await
        .expect("asset created");
    // Meanwhile a newer health value for that Asset goes out.
    h.enqueue(&[action(
        "Asset",
        "CP200-0999",
        json!({"FieldPulse_Health__c": 40.0}),
    )]);
    drain(&sender).await;

    let lost = listed[0].action_id;
    let replayed = dead_letters.replay(Replay::One(lost)).expect("replay one");
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].ext_key, "fp:alert:lost");
    assert!(matches!(
        dead_letters.replay(Replay::One(lost)),
        Err(OutboxError::NoDeadLetter { action_id }) if action_id == lost
    ));
    drain(&sender).await;
    let manual = client
        .get_by_external_id("Case", "FieldPulse_Key__c", "fp:case:manual")
        .await
        .expect("manual case");
    let alert = client
        .get_by_external_id("Asset_Alert__c", "FieldPulse_Key__c", "fp:alert:lost")
        .await
        .expect("the replayed alert arrived");
    assert_eq!(alert["Case__c"], manual["Id"]);

    // Everything else: the Asset goes out without rolling its health back,
    // the unfixed Case and its child die again; nothing is duplicated.
    assert_eq!(
        dead_letters.replay(Replay::All).expect("replay all").len(),
        3
    );
    assert_eq!(sender.stats().dead_letters, 0);
    drain(&sender).await;
    let health: Vec<Value> = h
        .emulator
        .records("Asset")
        .into_iter()
        .filter(|a| a["SerialNumber"] == "CP200-0999")
        .map(|a| a["FieldPulse_Health__c"].clone())
        .collect();
    assert_eq!(health, vec![json!(40.0)]);
    let again: Vec<(String, String)> = dead_letters
        .list()
        .expect("list")
        .into_iter()
        .map(|d| (d.ext_key, d.error_code))
        .collect();
    assert_eq!(
        again,
        vec![
            ("fp:case:bad".to_string(), "STRING_TOO_LONG".to_string()),
            ("fp:alert:orphan".to_string(), "PARENT_DEAD".to_string()),
        ]
    );
    assert_eq!(h.count("SELECT COUNT() FROM Case").await, 1);
    assert_eq!(h.count("SELECT COUNT() FROM Asset_Alert__c").await, 1);
    assert!(DeadLetters::open(&h.dir.path().join("missing.sqlite")).is_err());
}
