//! The cloud end to end: real HTTP ingest (protobuf + zstd), the segmented
//! log, scoring shards, SQLite, the outbox sender and the strict Salesforce
//! emulator.

mod support;

use std::path::Path;
use std::time::Duration;

use fieldpulse_cloud::config::CloudConfig;
use fieldpulse_cloud::service::{Cloud, DB_FILE};
use fieldpulse_cloud::synth::SynthFleet;
use fieldpulse_proto::v1::{Batch, Series};
use fieldpulse_sf_emulator::FaultConfig;
use support::{post, sf_client, wait_idle, Org};

const SENSORS: [&str; 4] = ["temp_c", "vib_rms", "pressure_bar", "current_a"];
const N_ASSETS: usize = 10;
const FAULTY: [usize; 3] = [2, 5, 8];
const ROWS: usize = 1_600;
const ROWS_PER_BATCH: usize = 40;
const FAULT_AT: usize = 900;
const T0: i64 = 1_767_225_600_000; // 2026-01-01

fn asset_name(i: usize) -> String {
    SynthFleet::asset_name(i)
}

fn fleet() -> SynthFleet {
    SynthFleet {
        assets: N_ASSETS,
        sensors: SENSORS.iter().map(|s| s.to_string()).collect(),
        rows: ROWS,
        rows_per_batch: ROWS_PER_BATCH,
        assets_per_batch: N_ASSETS,
        faulty: FAULTY.to_vec(),
        fault_at: FAULT_AT,
        t0_ms: T0,
    }
}

async fn start_org() -> Org {
    support::start_org(&fleet().fixture_json()).await
}

fn cloud_config(org: &Org, state: &Path, checkpoint_every: Duration) -> CloudConfig {
    support::cloud_config(org, state, |raw| {
        raw.scoring.sensors = SENSORS.iter().map(|s| s.to_string()).collect();
        raw.scoring.checkpoint_every = checkpoint_every;
    })
}

/// Starts the cloud on `state` against `org`.
async fn start_cloud(org: &Org, state: &Path, checkpoint_every: Duration) -> Cloud {
    Cloud::start(cloud_config(org, state, checkpoint_every), None)
        .await
        .expect("cloud starts")
}

fn batches() -> Vec<Batch> {
    fleet().batches("gw-1", 42)
}

fn count(org: &Org, object: &str) -> usize {
    org.emulator.live_count(object)
}

fn asset_blobs(state: &Path) -> Vec<(String, Vec<u8>, String)> {
    let conn = rusqlite::Connection::open(state.join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare("SELECT asset, anomaly, episodes FROM asset_state ORDER BY asset")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn run_uninterrupted(org: &Org, state: &Path) {
    let cloud = start_cloud(org, state, Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    for b in batches() {
        post(&http, cloud.addr, &b).await;
    }
    wait_idle(&cloud).await;
    cloud.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_becomes_exactly_one_case_alert_and_audit_trail() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    run_uninterrupted(&org, state.path()).await;

    assert_eq!(
        count(&org, "Case"),
        FAULTY.len(),
        "one Case per faulty asset"
    );
    assert_eq!(
        count(&org, "Asset_Alert__c"),
        FAULTY.len(),
        "one alert per Case"
    );
    assert!(
        count(&org, "AI_Insight__c") >= FAULTY.len(),
        "an audit record per action"
    );
    let conn = rusqlite::Connection::open(state.path().join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare("SELECT asset FROM episodes WHERE mode = 'anomaly' ORDER BY asset")
        .unwrap();
    let assets: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<String> = FAULTY.iter().map(|&i| asset_name(i)).collect();
    assert_eq!(assets, expected, "episodes only on the faulty assets");
    let dead: i64 = conn
        .query_row("SELECT COUNT(*) FROM outbox_dead_letters", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(dead, 0);

    // The audit trail leads from every Case to its AI_Insight__c and back.
    let sf = sf_client(&org);
    let rows = |soql: &str| {
        let soql = soql.to_string();
        let sf = &sf;
        async move {
            use futures_util::TryStreamExt;
            sf.query(&soql, Default::default())
                .try_collect::<Vec<_>>()
                .await
                .expect("soql")
        }
    };
    let cases =
        rows("SELECT Id, Priority, AI_Generated__c, FieldPulse_Trace_Id__c, AssetId FROM Case")
            .await;
    for case in &cases {
        assert_eq!(case["AI_Generated__c"], true);
        assert!(case["AssetId"].is_string(), "the Case names its asset");
        assert!(["High", "Medium", "Low"].contains(&case["Priority"].as_str().unwrap()));
        let trace = case["FieldPulse_Trace_Id__c"].as_str().expect("trace id");
        let insights = rows(&format!(
            "SELECT Target_Record_Id__c, Target_Object__c FROM AI_Insight__c WHERE FieldPulse_Trace_Id__c = '{trace}'"
        ))
        .await;
        assert_eq!(insights.len(), 1, "one audit record per action");
        assert_eq!(insights[0]["Target_Object__c"], "Case");
        assert_eq!(
            insights[0]["Target_Record_Id__c"], case["Id"],
            "the audit record points at its Case"
        );
    }
}

/// The delivery order both runs see: in order, then a stretch out of order
/// (the edge's live and backfill lanes), a duplicate, then the rest.
fn schedule() -> Vec<Batch> {
    let all = batches();
    let quarter = all.len() / 4;
    let mut out: Vec<Batch> = all[..quarter].to_vec();
    out.extend(all[quarter..2 * quarter].iter().rev().cloned());
    out.push(all[0].clone());
    out.extend(all[2 * quarter..].iter().cloned());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_replay_with_duplicates_ends_exactly_as_an_uninterrupted_run() {
    let http = reqwest::Client::new();
    let plan = schedule();
    let crash_at = plan.len() / 2;

    let org_a = start_org().await;
    let clean = tempfile::tempdir().unwrap();
    let cloud = start_cloud(&org_a, clean.path(), Duration::from_millis(200)).await;
    for b in &plan {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&cloud).await;
    cloud.processor.checkpoint();
    // The reversed stretch arrives older than what the shards already
    // learned: scored, not learned, and visible as such.
    assert!(cloud.processor.status().rows_out_of_order > 0);
    let metrics = reqwest::get(format!("http://{}/metrics", cloud.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("fieldpulse_cloud_rows_not_learned_total{reason=\"out_of_order\"}"));
    // The ingest log's own series are served by the cloud's /metrics too.
    let log_end = cloud.log.end_offset();
    assert!(
        metrics.contains(&format!("fieldpulse_cloud_log_end_offset {log_end}\n")),
        "{metrics}"
    );
    assert!(metrics.contains("fieldpulse_cloud_log_fsyncs_total "));
    assert!(metrics.contains("fieldpulse_cloud_rows_held 0\n"));
    cloud.shutdown().await.expect("clean shutdown");

    let org_b = start_org().await;
    let state = tempfile::tempdir().unwrap();
    // First life: a checkpoint a quarter of the way in, then more data, then a crash.
    let cloud = start_cloud(&org_b, state.path(), Duration::from_secs(3600)).await;
    for b in &plan[..crash_at / 2] {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&cloud).await;
    cloud.processor.checkpoint();
    for b in &plan[crash_at / 2..crash_at] {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&cloud).await;
    cloud.abort().await;

    // Second life: the gateway re-sends the last batches it may not have seen
    // acknowledged (duplicates now), then the rest.
    let cloud = start_cloud(&org_b, state.path(), Duration::from_millis(200)).await;
    for b in &plan[crash_at - 3..] {
        let ack = post(&http, cloud.addr, b).await;
        assert_eq!(ack.seq, b.seq);
    }
    wait_idle(&cloud).await;
    let m = cloud.processor.metrics();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        m.assets_restored.load(Relaxed),
        N_ASSETS as u64,
        "state came from the checkpoint"
    );
    let replayed = m.records_read.load(Relaxed) as usize;
    assert!(
        replayed > plan.len() - crash_at,
        "the log was replayed from the checkpoint ({replayed} records read)"
    );
    cloud.shutdown().await.expect("clean shutdown");

    assert_eq!(count(&org_b, "Case"), FAULTY.len());
    assert_eq!(count(&org_b, "Case"), count(&org_a, "Case"));
    assert_eq!(
        count(&org_b, "Asset_Alert__c"),
        count(&org_a, "Asset_Alert__c")
    );
    assert_eq!(
        count(&org_b, "AI_Insight__c"),
        count(&org_a, "AI_Insight__c")
    );
    let a = asset_blobs(clean.path());
    let b = asset_blobs(state.path());
    assert_eq!(a.len(), N_ASSETS);
    assert_eq!(a.len(), b.len());
    for ((name_a, blob_a, ep_a), (name_b, blob_b, ep_b)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        assert!(
            blob_a == blob_b,
            "scorer state of {name_a} differs after the crash"
        );
        assert_eq!(ep_a, ep_b, "episodes of {name_a} differ after the crash");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_faults_lose_and_duplicate_nothing() {
    let org = start_org().await;
    org.emulator.set_faults(FaultConfig {
        seed: 11,
        rate_500: 0.1,
        rate_503: 0.1,
        rate_lock: 0.2,
        rate_session_expiry: 0.05,
        ..FaultConfig::default()
    });
    let state = tempfile::tempdir().unwrap();
    run_uninterrupted(&org, state.path()).await;
    org.emulator.set_faults(FaultConfig::default());
    assert_eq!(count(&org, "Case"), FAULTY.len());
    assert_eq!(count(&org, "Asset_Alert__c"), FAULTY.len());
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().expect("object")
}

/// Closes a fieldpulse Case the way a dispatcher does; returns its Id.
async fn dismiss_case(
    sf: &fieldpulse_salesforce::SalesforceClient,
    key: &str,
    status: &str,
) -> serde_json::Value {
    let case = sf
        .get_by_external_id("Case", "FieldPulse_Key__c", key)
        .await
        .expect("the Case exists under its key");
    let case_id = case["Id"].as_str().expect("id").to_string();
    sf.update(
        "Case",
        &case_id,
        &obj(serde_json::json!({"Status": status})),
    )
    .await
    .expect("dismiss");
    case
}

/// Polls `cloud.sqlite` until `sql` (one text column, `?1` = `param`) returns rows.
async fn wait_rows(state: &Path, sql: &str, param: &str) -> Vec<String> {
    for _ in 0..100 {
        let conn = rusqlite::Connection::open(state.join(DB_FILE)).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let rows: Vec<String> = stmt
            .query_map([param], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if !rows.is_empty() {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

async fn episode_state(state: &Path, asset: &str, label_count: bool) -> (String, i64) {
    let conn = rusqlite::Connection::open(state.join(DB_FILE)).unwrap();
    let s: String = conn
        .query_row(
            "SELECT state FROM episodes WHERE asset = ?1 AND mode = 'anomaly'",
            [asset],
            |r| r.get(0),
        )
        .unwrap_or_default();
    let n: i64 = if label_count {
        conn.query_row("SELECT COUNT(*) FROM feedback_labels", [], |r| r.get(0))
            .unwrap()
    } else {
        0
    };
    (s, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_suppress_then_close_and_dismissed_cases_become_false_alarm_labels() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let cloud = start_cloud(&org, state.path(), Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    // Feed up to just after the fault so the episodes are open.
    let all = batches();
    for b in &all[..(FAULT_AT + 2 * ROWS_PER_BATCH) / ROWS_PER_BATCH] {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&cloud).await;
    let faulty = asset_name(FAULTY[0]);
    assert_eq!(episode_state(state.path(), &faulty, false).await.0, "open");

    let sf = sf_client(&org);
    let dir = cloud.processor.directory();
    let asset_id = dir.asset(&faulty).expect("asset known").id.clone();
    let wo = sf
        .create(
            "WorkOrder",
            &obj(serde_json::json!({"AssetId": asset_id, "Subject": "[BRG] vibration high", "Status": "In Progress"})),
        )
        .await
        .expect("work order");
    let mut suppressed = false;
    for _ in 0..100 {
        if episode_state(state.path(), &faulty, false).await.0 == "suppressed" {
            suppressed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(suppressed, "an open Work Order suppresses the episode");
    sf.update(
        "WorkOrder",
        &wo,
        &obj(serde_json::json!({"Status": "Completed"})),
    )
    .await
    .expect("complete");
    let mut closed = (String::new(), 0);
    for _ in 0..100 {
        closed = episode_state(state.path(), &faulty, true).await;
        if closed.0 == "closed" && closed.1 >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        closed.0, "closed",
        "the completed Work Order closes the episode"
    );
    assert!(closed.1 >= 1, "the repair is a failure label");

    // A dispatcher dismisses another asset's Case as not a problem.
    let other = asset_name(FAULTY[1]);
    let case_key = format!("fp-case:{other}:anomaly:1");
    dismiss_case(&sf, &case_key, "Closed - Not a Problem").await;
    let labels = wait_rows(
        state.path(),
        "SELECT label FROM feedback_labels WHERE asset = ?1",
        &other,
    )
    .await;
    assert_eq!(labels, vec!["false_alarm".to_string()]);
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_ids_with_any_characters_get_valid_keys_and_their_feedback_finds_them() {
    const ODD: &str = "Süd plant 1/pump.7:a_b";
    let org = start_org().await;
    // Rename one faulty asset in Salesforce and in the telemetry.
    let sf = sf_client(&org);
    let dir_asset = asset_name(FAULTY[0]);
    let asset = sf.query(
        &format!("SELECT Id FROM Asset WHERE Name = '{dir_asset}'"),
        Default::default(),
    );
    let rows: Vec<serde_json::Value> = {
        use futures_util::TryStreamExt;
        asset.try_collect().await.expect("soql")
    };
    let id = rows[0]["Id"].as_str().unwrap().to_string();
    sf.update("Asset", &id, &obj(serde_json::json!({"Name": ODD})))
        .await
        .expect("rename");
    let state = tempfile::tempdir().unwrap();
    let cloud = start_cloud(&org, state.path(), Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    for mut b in batches() {
        for s in &mut b.series {
            if s.asset_id == dir_asset {
                s.asset_id = ODD.into();
            }
        }
        post(&http, cloud.addr, &b).await;
    }
    wait_idle(&cloud).await;
    assert_eq!(
        count(&org, "Case"),
        FAULTY.len(),
        "the odd name opened its Case too"
    );
    let key = format!(
        "fp-case:{}:anomaly:1",
        fieldpulse_cloud::actions::key_part(ODD)
    );
    let case = dismiss_case(&sf, &key, "Closed - No Fault Found").await;
    assert_eq!(
        case["AssetId"], id,
        "the Case has the encoded key and names the asset"
    );
    let assets = wait_rows(
        state.path(),
        "SELECT asset FROM feedback_labels WHERE label = ?1",
        "false_alarm",
    )
    .await;
    assert_eq!(assets, vec![ODD.to_string()]);
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_backfill_is_scored_but_opens_no_alert() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let cloud = start_cloud(&org, state.path(), Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    // The same faults, delivered by the edge's backfill lane long after they happened.
    for mut b in batches() {
        b.historical = true;
        post(&http, cloud.addr, &b).await;
    }
    wait_idle(&cloud).await;
    let scored = cloud
        .processor
        .metrics()
        .readings_scored
        .load(std::sync::atomic::Ordering::Relaxed);
    cloud.shutdown().await.expect("shutdown");
    assert_eq!(
        scored,
        fleet().n_readings(),
        "backfill updates state and is scored"
    );
    assert_eq!(count(&org, "Case"), 0, "but old data opens no alert");
    assert_eq!(count(&org, "Asset_Alert__c"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_artifact_that_does_not_validate_is_refused_at_start() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let model = tempfile::tempdir().unwrap();
    std::fs::write(model.path().join("model.json"), "{\"version\": 1}").unwrap();
    let cfg = support::cloud_config(&org, state.path(), |raw| {
        raw.scoring.model = Some(model.path().to_path_buf());
    });
    let err = Cloud::start(cfg, None)
        .await
        .expect_err("a broken model must not score");
    let msg = err.to_string();
    assert!(
        msg.contains("model") && msg.contains(&model.path().display().to_string()),
        "{msg}"
    );
}

/// The fleet's batches with every scan split across two batches: the last
/// reading of half the sensors of each asset moves to the next batch, as a
/// gateway's batch boundary falls between the readings of one scan.
fn split_scan_batches() -> Vec<Batch> {
    let mut all = batches();
    for k in 0..all.len() - 1 {
        let (head, tail) = all.split_at_mut(k + 1);
        let (this, next) = (&mut head[k], &mut tail[0]);
        for (i, series) in this.series.iter_mut().enumerate() {
            if SENSORS.iter().position(|s| *s == series.sensor).unwrap() < SENSORS.len() / 2 {
                continue;
            }
            let mut points: Vec<(i64, f64)> = series.points().collect();
            let moved = points.pop().unwrap();
            let mut kept = Series {
                asset_id: series.asset_id.clone(),
                sensor: series.sensor.clone(),
                ..Default::default()
            };
            for (ts, v) in points {
                kept.push(ts, v);
            }
            *series = kept;
            let later = &mut next.series[i];
            let mut joined = Series {
                asset_id: later.asset_id.clone(),
                sensor: later.sensor.clone(),
                ..Default::default()
            };
            joined.push(moved.0, moved.1);
            for (ts, v) in later.points() {
                joined.push(ts, v);
            }
            *later = joined;
        }
    }
    all
}

async fn run_split_scans(scan_hold: Duration) -> (u64, usize) {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = cloud_config(&org, state.path(), Duration::from_millis(200));
    cfg.raw.scoring.scan_hold = scan_hold;
    let cloud = Cloud::start(cfg, None).await.expect("cloud starts");
    let http = reqwest::Client::new();
    for b in split_scan_batches() {
        post(&http, cloud.addr, &b).await;
    }
    wait_idle(&cloud).await;
    cloud.processor.checkpoint();
    let status = cloud.processor.status();
    assert_eq!(status.rows_held, 0, "every held row was scored");
    cloud.shutdown().await.expect("clean shutdown");
    (status.rows_duplicate, count(&org, "Case"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_split_across_batches_is_scored_as_one_row() {
    // Held until the next instant arrives, each split scan is one whole row:
    // nothing is scored twice at the same instant, and each fault is one Case.
    let (same_instant, cases) = run_split_scans(Duration::from_secs(2)).await;
    assert_eq!(same_instant, 0, "no partial row was scored");
    assert_eq!(cases, FAULTY.len());
    // Without the hold, the second half of every split scan arrives at an
    // instant the scorer already learned (the condition the hold removes).
    let (same_instant, _) = run_split_scans(Duration::ZERO).await;
    assert!(same_instant > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_ahead_of_its_log_is_refused_at_start() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let cloud = start_cloud(&org, state.path(), Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    for b in batches().iter().take(5) {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&cloud).await;
    cloud.shutdown().await.expect("clean shutdown");
    // The log goes, the database stays: its checkpoints point past the new log's end.
    std::fs::remove_dir_all(state.path().join(fieldpulse_cloud::service::LOG_DIR)).unwrap();
    let err = match Cloud::start(
        cloud_config(&org, state.path(), Duration::from_millis(200)),
        None,
    )
    .await
    {
        Ok(_) => panic!("a cloud whose database is ahead of its log must not start"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("checkpointed at log offset 5"), "{err}");
    assert!(err.contains("ingest log ends at offset 0"), "{err}");
}

/// The row (index) at which `asset`'s anomaly episode opened, from `cloud.sqlite`.
fn opening_row(state: &Path, asset: &str) -> usize {
    let conn = rusqlite::Connection::open(state.join(DB_FILE)).unwrap();
    let opened_ms: i64 = conn
        .query_row(
            "SELECT opened_ms FROM episodes WHERE asset = ?1 AND mode = 'anomaly'",
            [asset],
            |r| r.get(0),
        )
        .expect("the episode opened");
    ((opened_ms - T0) / 60_000) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_produced_while_draining_are_sent_before_shutdown_returns() {
    let faulty = asset_name(FAULTY[0]);
    // Where the first faulty asset's episode opens (the data is seeded).
    let opens_at = {
        let org = start_org().await;
        let state = tempfile::tempdir().unwrap();
        let cloud = start_cloud(&org, state.path(), Duration::from_millis(200)).await;
        let http = reqwest::Client::new();
        let fleet = SynthFleet {
            rows: FAULT_AT + 2 * ROWS_PER_BATCH,
            ..fleet()
        };
        for b in fleet.batches("gw-1", 42) {
            post(&http, cloud.addr, &b).await;
        }
        wait_idle(&cloud).await;
        cloud.shutdown().await.expect("clean shutdown");
        opening_row(state.path(), &faulty)
    };
    // The telemetry ends with the row that opens the episode, and a scan is
    // held for an hour: that row is scored only by the drain at shutdown.
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = cloud_config(&org, state.path(), Duration::from_millis(200));
    cfg.raw.scoring.scan_hold = Duration::from_secs(3600);
    let cloud = Cloud::start(cfg, None).await.expect("cloud starts");
    let http = reqwest::Client::new();
    let fleet = SynthFleet {
        rows: opens_at + 1,
        ..fleet()
    };
    for b in fleet.batches("gw-1", 42) {
        post(&http, cloud.addr, &b).await;
    }
    let end = cloud.log.end_offset();
    let processor = std::sync::Arc::clone(&cloud.processor);
    let processed = tokio::task::spawn_blocking(move || {
        processor.wait_processed(end, Duration::from_secs(300))
    })
    .await
    .unwrap();
    assert!(processed);
    assert!(
        cloud.processor.status().rows_held > 0,
        "the last scan is held"
    );
    let case_key = format!("fp-case:{faulty}:anomaly:1");
    let sf = sf_client(&org);
    assert!(
        sf.get_by_external_id("Case", "FieldPulse_Key__c", &case_key)
            .await
            .is_err(),
        "no Case before the held row is scored"
    );
    cloud.shutdown().await.expect("clean shutdown");
    let case = sf
        .get_by_external_id("Case", "FieldPulse_Key__c", &case_key)
        .await
        .expect("the Case the drain produced was sent before shutdown returned");
    assert_eq!(case["AI_Generated__c"], true);
    let conn = rusqlite::Connection::open(state.path().join(DB_FILE)).unwrap();
    let pending: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox_actions WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0, "nothing waits for the next start");
}

/// A cloud whose org's daily API allocation is used up once it has started
/// (it probes `/limits` every 200 ms), fed the whole fleet and scored: its
/// actions wait in the outbox.
async fn cloud_with_the_budget_used_up(
    org: &Org,
    state: &Path,
    degraded_outbox_depth: u64,
) -> Cloud {
    let mut cfg = cloud_config(org, state, Duration::from_millis(200));
    cfg.raw.salesforce.budget_probe_interval = Duration::from_millis(200);
    cfg.raw.server.degraded_outbox_depth = degraded_outbox_depth;
    let cloud = Cloud::start(cfg, None).await.expect("cloud starts");
    org.emulator.set_api_usage(1000, 1000);
    let http = reqwest::Client::new();
    for b in batches() {
        post(&http, cloud.addr, &b).await;
    }
    let end = cloud.log.end_offset();
    let processor = std::sync::Arc::clone(&cloud.processor);
    let idle =
        tokio::task::spawn_blocking(move || processor.wait_idle(end, Duration::from_secs(300)))
            .await
            .unwrap();
    assert!(idle, "the processor caught up");
    cloud
}

async fn healthz(addr: std::net::SocketAddr) -> (u16, String) {
    let res = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz");
    (res.status().as_u16(), res.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_exceeded_pauses_the_outbox_and_once_it_clears_every_case_goes_out_once() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let cloud = cloud_with_the_budget_used_up(&org, state.path(), 10_000).await;
    // Salesforce answered 403 REQUEST_LIMIT_EXCEEDED: everything waits, nothing is dropped.
    let mut paused = false;
    for _ in 0..200 {
        if cloud.sender.stats().budget_paused {
            paused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(paused, "the outbox pauses on the daily limit");
    assert!(org
        .emulator
        .request_log()
        .iter()
        .any(|e| e.error_code.as_deref() == Some("REQUEST_LIMIT_EXCEEDED")));
    let stats = cloud.sender.stats();
    assert!(stats.depth >= 2 * FAULTY.len() as u64, "{stats:?}");
    assert_eq!(stats.dead_letters, 0);
    assert_eq!(count(&org, "Case"), 0);
    // Still paused a few probes later.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(cloud.sender.stats().budget_paused);
    assert_eq!(count(&org, "Case"), 0);
    // The 24-hour window rolls over: the next probe resumes sending.
    org.emulator.set_api_usage(0, 1000);
    wait_idle(&cloud).await;
    let stats = cloud.sender.stats();
    assert!(!stats.budget_paused);
    assert_eq!(stats.dead_letters, 0);
    assert_eq!(count(&org, "Case"), FAULTY.len(), "each Case once");
    assert_eq!(count(&org, "Asset_Alert__c"), FAULTY.len());
    let sf = sf_client(&org);
    for &i in &FAULTY {
        let key = format!("fp-case:{}:anomaly:1", asset_name(i));
        sf.get_by_external_id("Case", "FieldPulse_Key__c", &key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    cloud.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_degraded_while_the_outbox_is_deeper_than_configured() {
    let org = start_org().await;
    let state = tempfile::tempdir().unwrap();
    let cloud = cloud_with_the_budget_used_up(&org, state.path(), 2).await;
    let depth = cloud.sender.stats().depth;
    assert!(depth > 2, "{depth}");
    let (status, body) = healthz(cloud.addr).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("degraded: outbox depth ") && body.ends_with(" > 2\n"),
        "{body:?}"
    );
    org.emulator.set_api_usage(0, 1000);
    wait_idle(&cloud).await;
    assert_eq!(healthz(cloud.addr).await, (200, "ok\n".to_string()));
    cloud.shutdown().await.expect("clean shutdown");
}
