//! Promotion to the cloud (issue #14): the cloud serves a real model registry
//! (`scoring.registry`) holding real trained artifacts, follows promotions and
//! rollbacks while a gateway keeps posting batches over HTTP, refuses a
//! corrupt promoted artifact, and scores the candidate in shadow without
//! ever acting on it.
//!
//! Which model version scored each row is observed through the processor's
//! [`ScoreTap`], called by the shard threads in scoring order. Nothing here
//! waits on wall-clock time or asserts a duration: every wait is for an event
//! (a metric, a tap record), with a generous timeout. The reload latency
//! (promote → first row scored by the new version) is printed, not asserted.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fieldpulse_cloud::config::{CloudConfig, RawCloudConfig};
use fieldpulse_cloud::processor::{ScoreTap, ScoredRow};
use fieldpulse_cloud::reload::{REPORT_FILE, SERVED_FILE};
use fieldpulse_cloud::service::Cloud;
use fieldpulse_models::failure::dataset::Telemetry;
use fieldpulse_models::failure::train::{model_card, train, TrainConfig};
use fieldpulse_models::failure::{FailureModel, FleetHistory};
use fieldpulse_models::gbdt::GbdtParams;
use fieldpulse_models::registry::{Action, Actor, HistoryEntry, Registry};
use fieldpulse_proto::v1::{Batch, Series};
use fieldpulse_simulator::product::PRODUCTS;
use fieldpulse_simulator::{telemetry, Fleet, FleetConfig, SENSORS};
use serde_json::Value;
use support::{post, start_org, wait_idle, Org};

/// Readings every 4 h, in training and live.
const INTERVAL: Duration = Duration::from_secs(4 * 3600);
const LIVE_ASSETS: usize = 12;
/// Ticks (one reading per asset each) per posted batch.
const TICKS_PER_BATCH: usize = 2;
/// Generous: a wait that times out is a failure, never a slow pass.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Trained artifacts, shared by the tests of this file.
struct Prepared {
    _dir: tempfile::TempDir,
    /// Two models trained on the same history with different boosters.
    a: PathBuf,
    b: PathBuf,
    /// Model `a` with thresholds no risk reaches: it never alarms.
    never: PathBuf,
    /// Model `a` with thresholds of 0: it alarms at every evaluation.
    always: PathBuf,
    /// The live fleet's Salesforce seed.
    fixture: Value,
}

fn prepared() -> &'static Prepared {
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    PREPARED.get_or_init(prepare)
}

fn fleet_config(seed: u64, n_assets: usize, days: u64) -> FleetConfig {
    FleetConfig {
        seed,
        n_assets,
        duration: Duration::from_secs(days * 86_400),
        interval: INTERVAL,
        wear_speedup: 1.5,
        ..FleetConfig::default()
    }
}

/// Trains on a small simulated history (as `fieldpulse train` does: telemetry
/// CSV and Work Order history in, `model.json` and `model_card.json` out).
fn prepare() -> Prepared {
    let started = Instant::now();
    let mut fleet = Fleet::new(fleet_config(7, 24, 240)).expect("fleet");
    let mut csv = Vec::new();
    telemetry::write_header(&mut csv).expect("header");
    while let Some(reading) = fleet.next_reading() {
        let name = fleet.assets()[reading.asset_idx].name.clone();
        telemetry::write_row(&mut csv, &name, &reading).expect("row");
    }
    let history_json = fleet.history().to_fixture_json(&PRODUCTS).to_string();
    let telemetry = Telemetry::read_csv(csv.as_slice()).expect("telemetry");
    let history = FleetHistory::from_json(&history_json).expect("history");
    let dir = tempfile::tempdir().expect("tempdir");
    let fit = |n_trees: usize, out: &Path| -> FailureModel {
        let cfg = TrainConfig {
            // Short half-lives: assets warm up within a few days of readings.
            half_lives: vec![4.0, 16.0],
            booster: GbdtParams {
                n_trees,
                learning_rate: 0.2,
                max_depth: 3,
                min_samples_leaf: 20,
                ..TrainConfig::default().booster
            },
            max_rows: 12_000,
            ..TrainConfig::default()
        };
        let outcome = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
        outcome.model.save(out).expect("save model");
        let card = model_card(&outcome, &cfg, "fnv1a64:reload-test", "reload test");
        std::fs::write(out.join("model_card.json"), card.to_string()).expect("card");
        outcome.model
    };
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let model = fit(8, &a);
    fit(12, &b);
    let variant = |name: &str, threshold: f64| -> PathBuf {
        let out = dir.path().join(name);
        let mut m = model.clone();
        m.model_version = format!("{}-{name}", m.model_version);
        for c in &mut m.classifiers {
            c.threshold = threshold;
        }
        m.save(&out).expect("save variant");
        std::fs::copy(a.join("model_card.json"), out.join("model_card.json")).expect("card");
        out
    };
    let never = variant("never", 2.0);
    let always = variant("always", 0.0);
    let live = Fleet::new(fleet_config(2027, LIVE_ASSETS, 3 * 365)).expect("live fleet");
    let fixture = live.history().to_fixture_json(&PRODUCTS);
    eprintln!("prepared 2 trained models in {:.1?}", started.elapsed());
    Prepared {
        _dir: dir,
        a,
        b,
        never,
        always,
        fixture,
    }
}

fn actor() -> Actor {
    Actor {
        by: "reload-test".into(),
        note: None,
    }
}

/// One scored row as the tap saw it.
#[derive(Debug, Clone)]
struct Scored {
    shard: usize,
    asset: String,
    ts_ms: i64,
    champion: Option<String>,
    shadow: Option<String>,
    at: Instant,
}

#[derive(Default)]
struct Tap {
    rows: Mutex<Vec<Scored>>,
}

impl Tap {
    fn score_tap(self: &Arc<Self>) -> ScoreTap {
        let me = Arc::clone(self);
        ScoreTap(Arc::new(move |row: &ScoredRow<'_>| {
            let scored = Scored {
                shard: row.shard,
                asset: row.asset.to_string(),
                ts_ms: row.ts_ms,
                champion: row.champion.map(str::to_string),
                shadow: row.shadow.map(str::to_string),
                at: Instant::now(),
            };
            me.rows.lock().unwrap().push(scored);
        }))
    }

    fn rows(&self) -> Vec<Scored> {
        self.rows.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.rows.lock().unwrap().len()
    }
}

fn cloud_config(
    org: &Org,
    state: &Path,
    registry: &Path,
    tap: &Arc<Tap>,
    tweak: impl FnOnce(&mut RawCloudConfig),
) -> CloudConfig {
    let mut cfg = support::cloud_config(org, state, |raw| {
        raw.scoring.sensors = Vec::new();
        raw.scoring.registry = Some(registry.to_path_buf());
        raw.scoring.registry_poll = Duration::from_millis(20);
        raw.scoring.failure_every = INTERVAL;
        raw.scoring.scan_hold = Duration::from_millis(50);
        raw.scoring.anomaly_episodes = false;
        tweak(raw);
    });
    cfg.score_tap = Some(tap.score_tap());
    cfg
}

/// Posts the live fleet as a gateway would, batch after batch (seqs `first..=last`
/// of the same deterministic stream), until told to stop; returns every
/// (asset, ts) row it posted and the number of readings.
struct Poster {
    stop: Arc<AtomicBool>,
    posted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(BTreeSet<(String, i64)>, u64)>,
}

impl Poster {
    fn start(addr: std::net::SocketAddr, first: u64, last: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let posted = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&posted));
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut fleet = Fleet::new(fleet_config(2027, LIVE_ASSETS, 3 * 365)).expect("live");
            let names: Vec<String> = fleet.assets().iter().map(|a| a.name.clone()).collect();
            let mut rows = BTreeSet::new();
            let mut n_readings = 0u64;
            let mut seq = 0u64;
            while !s.load(Ordering::Acquire) && seq < last {
                seq += 1;
                let mut series: BTreeMap<(usize, usize), Series> = BTreeMap::new();
                for _ in 0..TICKS_PER_BATCH * LIVE_ASSETS {
                    let Some(r) = fleet.next_reading() else { break };
                    if seq < first {
                        continue;
                    }
                    for (sensor, v) in r.values.iter().enumerate() {
                        let Some(v) = v else { continue };
                        rows.insert((names[r.asset_idx].clone(), r.ts_ms));
                        n_readings += 1;
                        series
                            .entry((r.asset_idx, sensor))
                            .or_insert_with(|| Series {
                                asset_id: names[r.asset_idx].clone(),
                                sensor: SENSORS[sensor].to_string(),
                                ..Default::default()
                            })
                            .push(r.ts_ms, *v);
                    }
                }
                if seq < first {
                    continue;
                }
                let batch = Batch {
                    gateway_id: "gw-1".into(),
                    seq,
                    spool_epoch: 1,
                    created_ms: 0,
                    series: series.into_values().collect(),
                    ..Default::default()
                };
                let ack = post(&http, addr, &batch).await;
                assert_eq!(ack.seq, seq);
                p.store(seq, Ordering::Release);
            }
            (rows, n_readings)
        });
        Self { stop, posted, task }
    }

    fn posted(&self) -> u64 {
        self.posted.load(Ordering::Acquire)
    }

    /// Waits until batch `last` is acknowledged, then finishes.
    async fn finish_after(self, last: u64) -> (BTreeSet<(String, i64)>, u64) {
        let deadline = Instant::now() + TIMEOUT;
        while self.posted() < last {
            assert!(Instant::now() < deadline, "timed out posting up to {last}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.finish().await
    }

    async fn finish(self) -> (BTreeSet<(String, i64)>, u64) {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("poster")
    }
}

async fn metrics_text(cloud: &Cloud) -> String {
    reqwest::get(format!("http://{}/metrics", cloud.addr))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of one series (`name{labels}`, exactly as rendered), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Version per shard from `fieldpulse_cloud_shard_model_info`.
fn shard_models(text: &str) -> BTreeMap<usize, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("fieldpulse_cloud_shard_model_info{shard=\""))
        .filter_map(|rest| {
            let (shard, rest) = rest.split_once("\",version=\"")?;
            let (version, _) = rest.split_once("\"}")?;
            Some((shard.parse().ok()?, version.to_string()))
        })
        .collect()
}

/// Waits (polling `/metrics`) until `done` holds.
async fn wait_metrics(cloud: &Cloud, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = metrics_text(cloud).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the tap has seen `n` more rows.
async fn wait_rows(tap: &Tap, n: usize) {
    let want = tap.len() + n;
    let deadline = Instant::now() + TIMEOUT;
    while tap.len() < want {
        assert!(Instant::now() < deadline, "timed out waiting for {n} rows");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Versions each shard scored with, in scoring order, consecutive repeats merged.
fn version_runs(rows: &[Scored]) -> BTreeMap<usize, Vec<String>> {
    let mut runs: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for r in rows {
        let v = r.champion.clone().unwrap_or_default();
        let run = runs.entry(r.shard).or_default();
        if run.last() != Some(&v) {
            run.push(v);
        }
    }
    runs
}

/// Every posted row scored exactly once, nothing else scored.
fn assert_scored_once(rows: &[Scored], posted: &BTreeSet<(String, i64)>) {
    let mut seen: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for r in rows {
        *seen.entry((r.asset.clone(), r.ts_ms)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows scored more than once: {twice:?}");
    let scored: BTreeSet<(String, i64)> = seen.into_keys().collect();
    let missing: Vec<_> = posted.difference(&scored).take(5).collect();
    assert!(missing.is_empty(), "posted rows never scored: {missing:?}");
    assert_eq!(
        scored.len(),
        posted.len(),
        "rows scored that were never posted"
    );
}

/// A registry with model `a` promoted as v1 and model `b` added as v2, in a
/// fresh temporary directory, and the emulated org the live fleet lives in.
async fn champion_v1_candidate_v2() -> (Org, tempfile::TempDir, Registry) {
    let p = prepared();
    let org = start_org(&p.fixture).await;
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::new(tmp.path().join("reg"));
    reg.add(&p.a, Some("v1"), &actor()).expect("add v1");
    reg.promote("v1", &actor()).expect("promote v1");
    reg.add(&p.b, Some("v2"), &actor()).expect("add v2");
    (org, tmp, reg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_rollback_under_load_swap_every_shard_once_and_score_each_reading_once() {
    let (org, tmp, reg) = champion_v1_candidate_v2().await;
    let state = tmp.path().join("state");
    let tap = Arc::new(Tap::default());
    let cloud = Cloud::start(cloud_config(&org, &state, reg.dir(), &tap, |_| {}), None)
        .await
        .expect("cloud starts");
    let poster = Poster::start(cloud.addr, 1, u64::MAX);
    wait_rows(&tap, 200).await;

    let promoted_at = Instant::now();
    reg.promote("v2", &actor()).expect("promote v2");
    let text = wait_metrics(&cloud, "every shard on v2", |t| {
        let m = shard_models(t);
        m.len() == 2 && m.values().all(|v| v == "v2")
    })
    .await;
    assert_eq!(
        metric(&text, "fieldpulse_cloud_model_reloads_total"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "fieldpulse_cloud_model_info{{version=\"{}\"}}",
                model_version(&reg, "v2")
            )
        ),
        1.0,
        "model_info follows the reload"
    );
    wait_rows(&tap, 200).await;
    let latency = tap
        .rows()
        .iter()
        .find(|r| r.champion.as_deref() == Some("v2"))
        .map(|r| r.at - promoted_at)
        .expect("a row scored by v2");

    let rolled_back_at = Instant::now();
    reg.rollback(&actor()).expect("rollback to v1");
    wait_metrics(&cloud, "every shard back on v1", |t| {
        let m = shard_models(t);
        m.len() == 2 && m.values().all(|v| v == "v1")
    })
    .await;
    wait_rows(&tap, 200).await;
    let n_batches = poster.posted();
    let (posted, n_readings) = poster.finish().await;
    wait_idle(&cloud).await;
    let text = metrics_text(&cloud).await;
    let scored = cloud
        .processor
        .metrics()
        .readings_scored
        .load(Ordering::Relaxed);
    cloud.shutdown().await.expect("clean shutdown");

    let rows = tap.rows();
    assert_scored_once(&rows, &posted);
    assert_eq!(scored, n_readings, "every reading scored");
    // Each shard switched exactly at one point per change, in order: v1, then
    // v2, then v1 again, never back and forth.
    let runs = version_runs(&rows);
    assert_eq!(runs.len(), 2, "both shards scored");
    for (shard, run) in &runs {
        assert_eq!(run, &["v1", "v2", "v1"], "shard {shard}");
    }
    // And no shard switched before the registry said so.
    for shard in runs.keys() {
        let of_shard: Vec<&Scored> = rows.iter().filter(|r| r.shard == *shard).collect();
        let first_v2 = of_shard
            .iter()
            .position(|r| r.champion.as_deref() == Some("v2"))
            .expect("v2 rows");
        assert!(
            of_shard[first_v2].at >= promoted_at,
            "shard {shard} took v2 early"
        );
        let back = first_v2
            + of_shard[first_v2..]
                .iter()
                .position(|r| r.champion.as_deref() == Some("v1"))
                .expect("v1 rows after v2");
        assert!(
            of_shard[back].at >= rolled_back_at,
            "shard {shard} rolled back early"
        );
    }
    assert_eq!(metric(&text, "fieldpulse_cloud_model_reloads_total"), 2.0);
    assert_eq!(
        metric(&text, "fieldpulse_cloud_model_swaps_refused_total"),
        0.0
    );
    for reason in [
        "registry",
        "missing",
        "corrupt",
        "invalid",
        "incompatible",
        "sensors",
        "cadence",
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("fieldpulse_cloud_model_reload_failures_total{{reason=\"{reason}\"}}")
            ),
            0.0,
            "{reason}"
        );
    }
    assert_eq!(served_version(&state), "v1");
    let per_version = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.champion.clone().unwrap_or_default())
            .or_insert(0usize) += 1;
        m
    });
    eprintln!(
        "reload: {} rows ({n_readings} readings) in {n_batches} batches, by version {per_version:?}; \
         reload latency (promote → first row scored by v2, registry_poll 20 ms): {latency:.1?}",
        rows.len(),
    );
}

fn model_version(reg: &Registry, version: &str) -> String {
    reg.load()
        .expect("index")
        .versions
        .into_iter()
        .find(|v| v.version == version)
        .expect("registered")
        .model_version
}

fn served_version(state: &Path) -> String {
    let text = std::fs::read_to_string(state.join(SERVED_FILE)).expect("served_model.json");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["version"].as_str().expect("version").to_string()
}

/// Promotes `version` by writing the index directly, as a registry whose
/// artifact went bad after `fieldpulse models promote` checked it would be.
fn force_promote(reg: &Registry, version: &str) {
    let mut index = reg.load().expect("index");
    index.history.push(HistoryEntry {
        action: Action::Promote,
        version: version.into(),
        from: index.champion.clone(),
        at: "2026-01-01T00:00:00Z".into(),
        by: "disk".into(),
        note: None,
    });
    index.champion = Some(version.into());
    if index.candidate.as_deref() == Some(version) {
        index.candidate = None;
    }
    let text = serde_json::to_string_pretty(&index).expect("index JSON");
    fieldpulse_models::registry::atomic_write(&reg.dir().join("registry.json"), text.as_bytes())
        .expect("write index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_promoted_artifact_is_refused_once_and_scoring_stays_on_the_served_model() {
    let (org, tmp, reg) = champion_v1_candidate_v2().await;
    let state = tmp.path().join("state");
    let tap = Arc::new(Tap::default());
    let cloud = Cloud::start(cloud_config(&org, &state, reg.dir(), &tap, |_| {}), None)
        .await
        .expect("cloud starts");
    let poster = Poster::start(cloud.addr, 1, u64::MAX);
    wait_rows(&tap, 100).await;

    // The artifact is damaged on disk after it was registered.
    let model_json = reg.version_dir("v2").join("model.json");
    let bytes = std::fs::read(&model_json).unwrap();
    std::fs::write(&model_json, &bytes[..bytes.len() / 2]).unwrap();
    force_promote(&reg, "v2");
    let failed = "fieldpulse_cloud_model_reload_failures_total{reason=\"corrupt\"}";
    wait_metrics(&cloud, "the corrupt artifact refused", |t| {
        metric(t, failed) >= 1.0
    })
    .await;
    // Many more polls and batches: still refused once, still served by v1.
    let batches_then = poster.posted();
    let deadline = Instant::now() + TIMEOUT;
    while poster.posted() < batches_then + 20 {
        assert!(Instant::now() < deadline, "poster stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (posted, n_readings) = poster.finish().await;
    wait_idle(&cloud).await;
    let text = metrics_text(&cloud).await;
    cloud.shutdown().await.expect("clean shutdown");
    assert_eq!(
        metric(&text, failed),
        1.0,
        "logged and counted once, not per poll"
    );
    assert_eq!(metric(&text, "fieldpulse_cloud_model_reloads_total"), 0.0);
    assert_eq!(
        shard_models(&text).values().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"v1".to_string()])
    );
    let rows = tap.rows();
    assert_scored_once(&rows, &posted);
    assert!(rows.iter().all(|r| r.champion.as_deref() == Some("v1")));
    assert!(n_readings > 0);
    assert_eq!(served_version(&state), "v1");

    // A restart keeps serving the last served version and says why.
    let tap = Arc::new(Tap::default());
    let cloud = Cloud::start(cloud_config(&org, &state, reg.dir(), &tap, |_| {}), None)
        .await
        .expect("restart falls back to the served version");
    let text = metrics_text(&cloud).await;
    assert_eq!(metric(&text, failed), 1.0);
    assert_eq!(
        shard_models(&text).values().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"v1".to_string()])
    );
    cloud.shutdown().await.expect("clean shutdown");
    // A state directory that never served a model has nothing to fall back on.
    let fresh = tmp.path().join("fresh-state");
    let err = Cloud::start(cloud_config(&org, &fresh, reg.dir(), &tap, |_| {}), None)
        .await
        .expect_err("no model to serve");
    let msg = err.to_string();
    assert!(
        msg.contains("no model to serve")
            && msg.contains("version v2")
            && msg.contains("(corrupt)"),
        "{msg}"
    );
    assert!(msg.contains(SERVED_FILE), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_candidate_is_compared_with_the_champion_and_never_acted_on() {
    let p = prepared();
    let org = start_org(&p.fixture).await;
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::new(tmp.path().join("reg"));
    reg.add(&p.never, Some("v1"), &actor()).expect("add v1");
    reg.promote("v1", &actor()).expect("promote v1");
    reg.add(&p.always, Some("v2"), &actor()).expect("add v2");
    let state = tmp.path().join("state");
    let tap = Arc::new(Tap::default());
    let cloud = Cloud::start(
        cloud_config(&org, &state, reg.dir(), &tap, |raw| {
            raw.scoring.shadow = true
        }),
        None,
    )
    .await
    .expect("cloud starts");
    // About 40 days of readings.
    let poster = Poster::start(cloud.addr, 1, 120);
    let deadline = Instant::now() + TIMEOUT;
    while !poster.task.is_finished() {
        assert!(Instant::now() < deadline, "poster stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (posted, _) = poster.finish().await;
    wait_idle(&cloud).await;
    let text = metrics_text(&cloud).await;
    assert_eq!(
        metric(&text, "fieldpulse_cloud_shadow_model_info{version=\"v2\"}"),
        1.0,
        "{text}"
    );
    let evaluations = metric(&text, "fieldpulse_cloud_shadow_evaluations_total");
    let agreement = |o: &str| {
        metric(
            &text,
            &format!("fieldpulse_cloud_shadow_agreement_total{{outcome=\"{o}\"}}"),
        )
    };
    let (agree, champion_only, shadow_only) = (
        agreement("agree"),
        agreement("champion_only"),
        agreement("shadow_only"),
    );
    eprintln!(
        "shadow: {evaluations} evaluations; agree {agree}, champion_only {champion_only}, shadow_only {shadow_only}"
    );
    assert!(evaluations > 0.0, "{text}");
    // The champion never alarms, the candidate always does.
    assert_eq!((agree, champion_only), (0.0, 0.0));
    assert!(shadow_only >= evaluations);
    assert!(metric(&text, "fieldpulse_cloud_shadow_risk_count") > 0.0);
    assert!(metric(&text, "fieldpulse_cloud_champion_risk_count") > 0.0);
    // ... and nothing was acted on.
    assert_eq!(
        metric(
            &text,
            "fieldpulse_cloud_episode_transitions_total{kind=\"opened\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(&text, "fieldpulse_cloud_actions_enqueued_total"),
        0.0
    );
    for object in ["Case", "Asset_Alert__c", "AI_Insight__c"] {
        assert_eq!(org.emulator.live_count(object), 0, "{object}");
    }
    let rows = tap.rows();
    assert_scored_once(&rows, &posted);
    assert!(rows
        .iter()
        .all(|r| r.champion.as_deref() == Some("v1") && r.shadow.as_deref() == Some("v2")));

    // Promoted, the same model acts: the silence above was the shadow's rule,
    // not the model's. Its shadow report stays.
    reg.promote("v2", &actor()).expect("promote v2");
    wait_metrics(&cloud, "v2 served, nothing in shadow", |t| {
        let m = shard_models(t);
        m.len() == 2
            && m.values().all(|v| v == "v2")
            && !t.contains("fieldpulse_cloud_shadow_model_info{")
    })
    .await;
    let poster = Poster::start(cloud.addr, 121, 150);
    let deadline = Instant::now() + TIMEOUT;
    while !poster.task.is_finished() {
        assert!(Instant::now() < deadline, "poster stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    poster.finish().await;
    wait_idle(&cloud).await;
    let after = metrics_text(&cloud).await;
    assert_eq!(
        metric(&after, "fieldpulse_cloud_shadow_evaluations_total"),
        evaluations,
        "no shadow after the promotion"
    );
    cloud.shutdown().await.expect("clean shutdown");
    let insights = org.emulator.records("AI_Insight__c");
    assert!(!insights.is_empty(), "the promoted model acts");
    assert!(org.emulator.live_count("Case") > 0);

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join(REPORT_FILE)).expect("shadow report"),
    )
    .expect("report JSON");
    eprintln!("{report:#}");
    assert_eq!(report["champion"]["version"], "v1");
    assert_eq!(report["candidate"]["version"], "v2");
    assert_eq!(report["evaluations"].as_f64(), Some(evaluations));
    assert_eq!(
        report["agreement"]["shadow_only"].as_f64(),
        Some(shadow_only)
    );
    assert_eq!(report["agreement_rate"].as_f64(), Some(0.0));
    for model in ["champion", "candidate"] {
        let r = &report["risk"][model];
        assert!(r["n"].as_u64().unwrap_or(0) > 0, "{model}: {r}");
        let (p50, p99) = (r["p50"].as_f64().unwrap(), r["p99"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&p50) && p50 <= p99, "{model}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_no_reading_is_rescored_by_a_version_other_than_the_one_that_scored_it() {
    let (org, tmp, reg) = champion_v1_candidate_v2().await;
    let state = tmp.path().join("state");
    // No periodic checkpoint in the first life, and no Salesforce feedback
    // (each batch of it checkpoints): only the swap's own.
    let rare = |raw: &mut RawCloudConfig| {
        raw.scoring.checkpoint_every = Duration::from_secs(3600);
        raw.feedback.poll_every = Duration::from_secs(3600);
    };

    let first = Arc::new(Tap::default());
    let cloud = Cloud::start(cloud_config(&org, &state, reg.dir(), &first, rare), None)
        .await
        .expect("cloud starts");
    let (before, _) = Poster::start(cloud.addr, 1, 20).finish_after(20).await;
    wait_idle(&cloud).await;
    reg.promote("v2", &actor()).expect("promote v2");
    wait_metrics(&cloud, "every shard on v2", |t| {
        let m = shard_models(t);
        m.len() == 2 && m.values().all(|v| v == "v2")
    })
    .await;
    let (after, _) = Poster::start(cloud.addr, 21, 40).finish_after(40).await;
    wait_idle(&cloud).await;
    cloud.abort().await;
    let first = first.rows();
    assert_scored_once(&first, &before.union(&after).cloned().collect());
    let by_first: BTreeMap<(String, i64), Option<String>> = first
        .iter()
        .map(|r| ((r.asset.clone(), r.ts_ms), r.champion.clone()))
        .collect();

    // Second life: the shards replay the log from their last checkpoint,
    // which is the swap point.
    let second = Arc::new(Tap::default());
    let cloud = Cloud::start(cloud_config(&org, &state, reg.dir(), &second, |_| {}), None)
        .await
        .expect("cloud restarts");
    wait_idle(&cloud).await;
    cloud.shutdown().await.expect("clean shutdown");
    let replayed = second.rows();
    assert!(
        !replayed.is_empty(),
        "records after the swap are replayed ({} rows scored after it)",
        after.len()
    );
    for r in &replayed {
        let key = (r.asset.clone(), r.ts_ms);
        assert!(
            after.contains(&key),
            "{key:?} was scored before the swap and replayed after the crash"
        );
        assert_eq!(r.champion.as_deref(), Some("v2"));
        assert_eq!(by_first[&key], r.champion, "{key:?} changed version");
    }
}
