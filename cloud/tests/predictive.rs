//! Predictive Cases end to end: a simulated history fleet trains a failure
//! model; a separate simulated live fleet seeds the Salesforce emulator
//! (Accounts, Products, Assets, its Work Orders from before the live window)
//! and posts its readings as edge batches (protobuf, gateway token, zstd) to
//! the cloud scoring with that model; the Cases, alerts, audit records and
//! PM campaign drafts in the emulator are checked against the live fleet's
//! ground truth.
//!
//! The guarantees (one open Case per (asset, mode), every Case explained by
//! an `AI_Insight__c` with its trace id, valid picklist values, no dead
//! letters, rollout modes, campaign drafts) are asserted exactly; the model's
//! quality is asserted with bars set below the measured numbers (see
//! [`QUALITY_BARS`]).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use fieldpulse_cloud::config::{CloudConfig, RawCloudConfig, Rollout};
use fieldpulse_cloud::service::{Cloud, DB_FILE};
use fieldpulse_models::failure::dataset::Telemetry;
use fieldpulse_models::failure::train::{train, TrainConfig};
use fieldpulse_models::failure::FleetHistory;
use fieldpulse_models::gbdt::GbdtParams;
use fieldpulse_proto::v1::{Batch, Series};
use fieldpulse_simulator::product::PRODUCTS;
use fieldpulse_simulator::{telemetry, Fleet, FleetConfig, Reading, SENSORS};
use serde_json::Value;
use support::{post, start_org, wait_idle, Org};

const DAY_MS: i64 = 86_400_000;
/// Readings every 4 h: the model's streaming features count readings, so the
/// live fleet must report at the training interval.
const INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// Wear runs this much faster than the product's median life, for enough failures.
const SPEEDUP: f64 = 1.5;
const HISTORY_ASSETS: usize = 48;
const HISTORY_DAYS: u64 = 365;
const LIVE_ASSETS: usize = 36;
/// Live fleet: telemetry before the window is backfilled (`historical`), so
/// the scorers are warm when the window starts.
const WARMUP_DAYS: u64 = 60;
const WINDOW_DAYS: u64 = 60;
/// A Case counts for a failure when its episode opened at most this long before it.
const LOOKBACK_MS: i64 = 14 * DAY_MS;

/// Quality bars, set below what was measured (deterministic: same seeds, same
/// numbers) with
/// `cargo test -p fieldpulse-cloud --test predictive -- --nocapture`
/// (debug build, 2 cores, ~14 s for both tests):
///
/// ```text
/// 29 failures in the window, 26 caught by a Case on the asset, 23 with the right mode;
/// recall 0.79, precision 0.39 (28 true, 44 false alarms), median lead 184.0 h;
/// 0.61 false alarms per asset-month; 5 of 8 healthy assets got a Case
/// per mode [failures, caught, false alarms]:
///   bearing [12, 10, 12], electrical [7, 6, 1], fouling [10, 7, 31]
/// ```
///
/// A Case counts for a failure when its episode opened within `LOOKBACK_MS`
/// before it; an opening followed by no failure of its asset and mode within
/// `LOOKBACK_MS` (the fleet is simulated that far past the window) is a
/// false alarm. Most false alarms are fouling Cases opening in the evening
/// load peak: a model matter (small trees, 7-day classifier), not the cloud's.
struct QualityBars {
    /// Failures with a right-mode Case opened before them (measured 0.79).
    recall: f64,
    /// Openings followed by their failure (measured 0.39).
    precision: f64,
    /// Median hours from the first opening to the failure (measured 184).
    median_lead_hours: f64,
    /// Healthy assets that got a Case (measured 5 of 8).
    max_healthy_with_case_fraction: f64,
}

const QUALITY_BARS: QualityBars = QualityBars {
    recall: 0.65,
    precision: 0.3,
    median_lead_hours: 72.0,
    max_healthy_with_case_fraction: 0.8,
};

/// A trained model and the live fleet, shared by the tests of this file.
struct Prepared {
    _model_dir: tempfile::TempDir,
    model_path: PathBuf,
    live: Live,
}

/// The live fleet: readings, its Salesforce seed and its ground truth.
struct Live {
    names: Vec<String>,
    /// Product name of each asset.
    products: Vec<String>,
    readings: Vec<Reading>,
    window_start_ms: i64,
    end_ms: i64,
    fixture: Value,
    /// (asset, mode, failure time) of each failure from the window start to
    /// `LOOKBACK_MS` after its end (the fleet is simulated that far, unposted,
    /// so an alarm late in the window can be judged).
    failures: Vec<(String, String, i64)>,
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
        wear_speedup: SPEEDUP,
        ..FleetConfig::default()
    }
}

fn prepare() -> Prepared {
    // History fleet → telemetry CSV + Work Order history → artifact, as `fieldpulse train` does.
    let mut fleet = Fleet::new(fleet_config(7, HISTORY_ASSETS, HISTORY_DAYS)).expect("fleet");
    let mut csv = Vec::new();
    telemetry::write_header(&mut csv).expect("header");
    while let Some(reading) = fleet.next_reading() {
        let name = fleet.assets()[reading.asset_idx].name.clone();
        telemetry::write_row(&mut csv, &name, &reading).expect("row");
    }
    let fixture = fleet.history().to_fixture_json(&PRODUCTS).to_string();
    let telemetry = Telemetry::read_csv(csv.as_slice()).expect("telemetry");
    let history = FleetHistory::from_json(&fixture).expect("history");
    let cfg = TrainConfig {
        booster: GbdtParams {
            n_trees: 30,
            learning_rate: 0.15,
            max_depth: 4,
            min_samples_leaf: 20,
            ..TrainConfig::default().booster
        },
        max_rows: 40_000,
        ..TrainConfig::default()
    };
    let outcome = train(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    for c in &outcome.test.classifiers {
        eprintln!(
            "offline test: {:<10} {:>4}d P {:.2} R {:.2} AP {:.2} threshold {:.3}",
            c.mode, c.horizon_days, c.precision, c.recall, c.average_precision, c.threshold
        );
    }
    let model_dir = tempfile::tempdir().expect("tempdir");
    outcome.model.save(model_dir.path()).expect("save model");

    // Live fleet (another seed): warm-up + window.
    let cfg = fleet_config(
        2027,
        LIVE_ASSETS,
        WARMUP_DAYS + WINDOW_DAYS + (LOOKBACK_MS / DAY_MS) as u64,
    );
    let start = cfg.start_ms;
    let mut fleet = Fleet::new(cfg).expect("live fleet");
    let mut readings = Vec::new();
    while let Some(r) = fleet.next_reading() {
        readings.push(r);
    }
    let history = fleet.into_history();
    let window_start_ms = start + WARMUP_DAYS as i64 * DAY_MS;
    let end_ms = window_start_ms + WINDOW_DAYS as i64 * DAY_MS;
    // Salesforce knows the Work Orders finished before the window, nothing later.
    let mut known = history.clone();
    known.work_orders.retain(|w| w.end_ms < window_start_ms);
    let fixture = known.to_fixture_json(&PRODUCTS);
    let failures = history
        .failures
        .iter()
        .filter(|f| f.ts_ms >= window_start_ms && f.ts_ms < end_ms + LOOKBACK_MS)
        .map(|f| {
            let mode = serde_json::to_value(f.mode).expect("mode");
            (
                f.asset.clone(),
                mode.as_str().expect("mode name").to_string(),
                f.ts_ms,
            )
        })
        .collect();
    let product_name = |kind| {
        PRODUCTS
            .iter()
            .find(|p| p.kind == kind)
            .map(|p| p.name.to_string())
            .expect("product spec")
    };
    Prepared {
        model_path: model_dir.path().to_path_buf(),
        _model_dir: model_dir,
        live: Live {
            names: history.assets.iter().map(|a| a.name.clone()).collect(),
            products: history
                .assets
                .iter()
                .map(|a| product_name(a.product))
                .collect(),
            readings,
            window_start_ms,
            end_ms,
            fixture,
            failures,
        },
    }
}

/// One edge batch per simulated day (all assets, all sensors), in time
/// order; days before the window are marked `historical` (a backfill).
fn batches(live: &Live, days: Option<u64>) -> Vec<Batch> {
    let last = days.map_or(live.end_ms, |d| live.window_start_ms + d as i64 * DAY_MS);
    let mut by_day: BTreeMap<i64, BTreeMap<(usize, usize), Series>> = BTreeMap::new();
    for r in live.readings.iter().filter(|r| r.ts_ms < last) {
        let day = r.ts_ms.div_euclid(DAY_MS);
        let series = by_day.entry(day).or_default();
        for (s, v) in r.values.iter().enumerate() {
            let Some(v) = v else { continue };
            series
                .entry((r.asset_idx, s))
                .or_insert_with(|| Series {
                    asset_id: live.names[r.asset_idx].clone(),
                    sensor: SENSORS[s].to_string(),
                    ..Default::default()
                })
                .push(r.ts_ms, *v);
        }
    }
    by_day
        .into_iter()
        .enumerate()
        .map(|(i, (day, series))| Batch {
            gateway_id: "gw-1".into(),
            seq: i as u64 + 1,
            spool_epoch: 1,
            created_ms: (day + 1) * DAY_MS,
            historical: (day + 1) * DAY_MS <= live.window_start_ms,
            series: series.into_values().collect(),
            ..Default::default()
        })
        .collect()
}

fn cloud_config(org: &Org, state: &Path, tweak: impl FnOnce(&mut RawCloudConfig)) -> CloudConfig {
    support::cloud_config(org, state, |raw| {
        // The model's sensors are used.
        raw.scoring.sensors = Vec::new();
        raw.scoring.model = Some(prepared().model_path.clone());
        // Predictive Cases only: anomaly episodes would blur the model's figures.
        raw.scoring.anomaly_episodes = false;
        raw.scoring.failure_every = INTERVAL;
        raw.campaigns.min_assets = 2;
        raw.feedback.poll_every = Duration::from_millis(500);
        tweak(raw);
    })
}

/// Runs the cloud over the live fleet's batches and returns its state dir.
async fn run(
    org: &Org,
    days: Option<u64>,
    tweak: impl FnOnce(&mut RawCloudConfig),
) -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(cloud_config(org, state.path(), tweak), None)
        .await
        .expect("cloud starts");
    let http = reqwest::Client::new();
    for b in batches(&prepared().live, days) {
        let ack = post(&http, cloud.addr, &b).await;
        assert_eq!(ack.seq, b.seq);
    }
    wait_idle(&cloud).await;
    cloud.shutdown().await.expect("clean shutdown");
    state
}

fn dead_letters(state: &Path) -> i64 {
    let conn = rusqlite::Connection::open(state.join(DB_FILE)).unwrap();
    conn.query_row("SELECT COUNT(*) FROM outbox_dead_letters", [], |r| r.get(0))
        .unwrap()
}

/// Asset Name by Salesforce Id, as the emulator holds them.
fn asset_names_by_id(org: &Org) -> BTreeMap<String, String> {
    org.emulator
        .records("Asset")
        .iter()
        .map(|a| {
            (
                str_field(a, "Id").to_string(),
                str_field(a, "Name").to_string(),
            )
        })
        .collect()
}

fn str_field<'a>(rec: &'a Value, field: &str) -> &'a str {
    rec.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// An episode opening, from its `AI_Insight__c`.
#[derive(Debug, Clone)]
struct Opening {
    asset: String,
    mode: String,
    opened_ms: i64,
}

fn parse_ms(s: &str) -> i64 {
    fieldpulse_models::failure::labels::parse_sf_datetime(s)
        .unwrap_or_else(|| panic!("bad datetime {s:?}"))
}

/// Episode openings recorded by the audit trail, by opening time.
fn openings(org: &Org) -> Vec<Opening> {
    let mut out: Vec<Opening> = org
        .emulator
        .records("AI_Insight__c")
        .iter()
        .filter(|r| {
            // "<rollout>: opened", "observe: opened (no record visible to dispatchers)".
            str_field(r, "Outcome__c")
                .split_once(':')
                .is_some_and(|(_, what)| what.trim_start().starts_with("opened"))
        })
        .map(|r| {
            let src: Value =
                serde_json::from_str(str_field(r, "Source_Record_Ids__c")).expect("source ids");
            let key = src["case_key"].as_str().expect("case key");
            let mut parts = key.split(':');
            assert_eq!(parts.next(), Some("fp-case"));
            Opening {
                asset: parts.next().expect("asset").to_string(),
                mode: parts.next().expect("mode").to_string(),
                opened_ms: parse_ms(str_field(r, "Window_Start__c")),
            }
        })
        .collect();
    out.sort_by_key(|o| o.opened_ms);
    out
}

/// (asset, mode) of a Case from its key `fp-case:<asset>:<mode>:<gen>`.
fn case_asset_mode(case: &Value) -> (String, String) {
    let key = str_field(case, "FieldPulse_Key__c");
    let parts: Vec<&str> = key.split(':').collect();
    assert_eq!(parts.len(), 4, "case key {key}");
    assert_eq!(parts[0], "fp-case");
    (parts[1].to_string(), parts[2].to_string())
}

fn picklist(org: &Org, object: &str, field: &str) -> Vec<String> {
    use fieldpulse_sf_emulator::schema::FieldType;
    let schema = org.emulator.schema();
    let obj = &schema.objects[schema.object_idx(object).expect("object")];
    match &obj.fields[obj.field_idx(field).expect("field")].ty {
        FieldType::Picklist(p) => p.values.clone(),
        other => panic!("{object}.{field} is not a picklist: {other:?}"),
    }
}

/// The guarantees that hold whatever the model's quality.
fn assert_guarantees(org: &Org, state: &Path) {
    let cases = org.emulator.records("Case");
    let closed: BTreeSet<&str> = ["Closed"].into();
    let mut open_per_pair: BTreeMap<(String, String), usize> = BTreeMap::new();
    for case in &cases {
        let pair = case_asset_mode(case);
        if !closed.contains(str_field(case, "Status")) {
            *open_per_pair.entry(pair).or_default() += 1;
        }
    }
    for (pair, n) in &open_per_pair {
        assert_eq!(*n, 1, "{n} open Cases for {pair:?}");
    }
    let traces: BTreeSet<String> = org
        .emulator
        .records("AI_Insight__c")
        .iter()
        .map(|r| str_field(r, "FieldPulse_Trace_Id__c").to_string())
        .collect();
    let priorities = picklist(org, "Case", "Priority");
    for case in &cases {
        let trace = str_field(case, "FieldPulse_Trace_Id__c");
        assert!(
            !trace.is_empty() && traces.contains(trace),
            "Case {} has no AI_Insight__c with trace {trace:?}",
            str_field(case, "FieldPulse_Key__c")
        );
        let p = str_field(case, "Priority");
        assert!(priorities.iter().any(|v| v == p), "priority {p:?}");
        assert_eq!(case["AI_Generated__c"], Value::Bool(true));
        assert_case_explained(case);
    }
    for insight in org.emulator.records("AI_Insight__c") {
        let scores: Value =
            serde_json::from_str(str_field(&insight, "Scores__c")).expect("scores JSON");
        let e = &scores["explanation"];
        if !e.is_null() {
            assert_eq!(e["method"], "tree_shap_path_dependent", "{e}");
            assert!(
                !e["contributions"].as_array().expect("list").is_empty(),
                "{e}"
            );
        }
    }
    assert_eq!(dead_letters(state), 0, "dead letters");
}

/// A predictive Case's description lists the model's top feature
/// contributions (the model is trained with node covers, so it can always
/// explain): "…, +0.21 to the risk (+1.35 log-odds)" lines under the "why"
/// header, as the emulator stored them.
fn assert_case_explained(case: &Value) {
    let d = str_field(case, "Description");
    if d.contains("was cancelled; alerting again") {
        // A Work Order event, not a model evaluation, wrote this update:
        // it has no row to explain (FIXME: keep the episode's last one).
        return;
    }
    let header = "Why the model rates it so (exact TreeSHAP feature contributions;";
    let at = d.find(header).unwrap_or_else(|| {
        panic!(
            "Case {} has no explanation:\n{d}",
            str_field(case, "FieldPulse_Key__c")
        )
    });
    let lines: Vec<&str> = d[at..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  - "))
        .collect();
    assert!(
        (1..=4).contains(&lines.len()),
        "{} contribution lines:\n{d}",
        lines.len()
    );
    for line in lines {
        assert!(
            line.contains(" to the risk (") && line.ends_with(" log-odds)"),
            "{line}"
        );
    }
}

/// What the Cases were worth against the ground truth.
#[derive(Debug)]
struct Quality {
    failures: usize,
    caught: usize,
    caught_mode: usize,
    lead_hours: Vec<f64>,
    true_alarms: usize,
    false_alarms: usize,
    healthy: usize,
    healthy_with_case: usize,
    /// Per mode: failures in the window, caught with the mode, false alarms.
    by_mode: BTreeMap<String, [usize; 3]>,
}

impl Quality {
    fn recall(&self) -> f64 {
        self.caught_mode as f64 / self.failures.max(1) as f64
    }
    fn precision(&self) -> f64 {
        self.true_alarms as f64 / (self.true_alarms + self.false_alarms).max(1) as f64
    }
    fn median_lead_hours(&self) -> f64 {
        let mut l = self.lead_hours.clone();
        l.sort_by(f64::total_cmp);
        l.get(l.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

fn quality(live: &Live, opened: &[Opening]) -> Quality {
    let window = live.window_start_ms..live.end_ms;
    let opened: Vec<&Opening> = opened
        .iter()
        .filter(|o| window.contains(&o.opened_ms))
        .collect();
    let in_window = |t: &i64| window.contains(t);
    let mut q = Quality {
        failures: live.failures.iter().filter(|f| in_window(&f.2)).count(),
        caught: 0,
        caught_mode: 0,
        lead_hours: Vec::new(),
        true_alarms: 0,
        false_alarms: 0,
        healthy: 0,
        healthy_with_case: 0,
        by_mode: BTreeMap::new(),
    };
    for (asset, mode, t) in live.failures.iter().filter(|f| in_window(&f.2)) {
        q.by_mode.entry(mode.clone()).or_default()[0] += 1;
        let before =
            |o: &&&Opening| &o.asset == asset && o.opened_ms < *t && o.opened_ms >= t - LOOKBACK_MS;
        if opened.iter().any(|o| before(&o)) {
            q.caught += 1;
        }
        if let Some(first) = opened
            .iter()
            .filter(|o| before(o) && &o.mode == mode)
            .map(|o| o.opened_ms)
            .min()
        {
            q.caught_mode += 1;
            q.by_mode.entry(mode.clone()).or_default()[1] += 1;
            q.lead_hours.push((t - first) as f64 / 3.6e6);
        }
    }
    for o in &opened {
        let hit = live.failures.iter().any(|(a, m, t)| {
            a == &o.asset && m == &o.mode && *t > o.opened_ms && *t - o.opened_ms <= LOOKBACK_MS
        });
        if hit {
            q.true_alarms += 1;
        } else {
            q.false_alarms += 1;
            q.by_mode.entry(o.mode.clone()).or_default()[2] += 1;
        }
    }
    let failed: BTreeSet<&str> = live.failures.iter().map(|f| f.0.as_str()).collect();
    let alarmed: BTreeSet<&str> = opened.iter().map(|o| o.asset.as_str()).collect();
    for name in &live.names {
        if !failed.contains(name.as_str()) {
            q.healthy += 1;
            q.healthy_with_case += usize::from(alarmed.contains(name.as_str()));
        }
    }
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictive_cases_precede_failures_and_keep_their_guarantees() {
    let live = &prepared().live;
    let org = start_org(&live.fixture).await;
    let state = run(&org, None, |_| {}).await;
    assert_guarantees(&org, state.path());
    if let Some(case) = org.emulator.records("Case").first() {
        eprintln!("a Case as stored:\n{}", str_field(case, "Description"));
    }

    let opened = openings(&org);
    let q = quality(live, &opened);
    eprintln!(
        "predictive quality: {} failures in the window, {} caught by a Case on the asset, {} with the right mode; \
         recall {:.2}, precision {:.2} ({} true, {} false alarms), median lead {:.1} h; \
         {:.2} false alarms per asset-month; {} of {} healthy assets (no failure in the window or {} days after) got a Case; {} Cases, {} alerts, {} insights",
        q.failures,
        q.caught,
        q.caught_mode,
        q.recall(),
        q.precision(),
        q.true_alarms,
        q.false_alarms,
        q.median_lead_hours(),
        q.false_alarms as f64 / (LIVE_ASSETS as f64 * WINDOW_DAYS as f64 / 30.0),
        q.healthy_with_case,
        q.healthy,
        LOOKBACK_MS / DAY_MS,
        org.emulator.live_count("Case"),
        org.emulator.live_count("Asset_Alert__c"),
        org.emulator.live_count("AI_Insight__c"),
    );
    eprintln!("per mode [failures, caught, false alarms]: {:?}", q.by_mode);
    assert!(
        q.failures >= 5,
        "too few failures in the window to judge: {q:?}"
    );
    assert!(q.recall() >= QUALITY_BARS.recall, "{q:?}");
    assert!(q.precision() >= QUALITY_BARS.precision, "{q:?}");
    assert!(
        q.median_lead_hours() >= QUALITY_BARS.median_lead_hours,
        "{q:?}"
    );
    assert!(
        q.healthy_with_case as f64
            <= QUALITY_BARS.max_healthy_with_case_fraction * q.healthy as f64,
        "{q:?}"
    );
    // Every Case is a predictive one and belongs to an asset the org knows.
    let known: BTreeSet<&str> = live.names.iter().map(String::as_str).collect();
    for case in org.emulator.records("Case") {
        let (asset, mode) = case_asset_mode(&case);
        assert!(known.contains(asset.as_str()), "{asset}");
        assert_ne!(mode, "anomaly");
        assert_eq!(str_field(&case, "Status"), "New", "act rollout");
        assert!(
            !str_field(&case, "AssetId").is_empty(),
            "Case linked to its Asset"
        );
    }

    // PM campaign drafts: where ≥ 2 assets of a product opened one mode within
    // the campaign window, a MaintenancePlan lists them.
    let plans = org.emulator.records("MaintenancePlan");
    let members = org.emulator.records("MaintenanceAsset");
    let product_of: BTreeMap<&str, &str> = live
        .names
        .iter()
        .map(String::as_str)
        .zip(live.products.iter().map(String::as_str))
        .collect();
    let window_ms = 14 * DAY_MS;
    let mut expect_campaign: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, a) in opened.iter().enumerate() {
        for b in &opened[..i] {
            if a.mode == b.mode
                && a.asset != b.asset
                && product_of[a.asset.as_str()] == product_of[b.asset.as_str()]
                && a.opened_ms - b.opened_ms <= window_ms
            {
                expect_campaign.insert((product_of[a.asset.as_str()].to_string(), a.mode.clone()));
            }
        }
    }
    eprintln!(
        "campaigns: {} plans, {} members; expected (product, mode) groups: {expect_campaign:?}",
        plans.len(),
        members.len()
    );
    assert!(
        !expect_campaign.is_empty(),
        "no campaign situation in the data"
    );
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let asset_ids: BTreeMap<String, String> = asset_names_by_id(&org);
    for plan in &plans {
        assert_eq!(plan["DoesAutoGenerateWorkOrders"], Value::Bool(false));
        assert_eq!(plan["AI_Generated__c"], Value::Bool(true));
        let key = str_field(plan, "FieldPulse_Key__c");
        let parts: Vec<&str> = key.split(':').collect();
        assert_eq!(parts.len(), 4, "{key}");
        assert_eq!(parts[0], "fp-pm", "{key}");
        let mode = parts[2].to_string();
        let plan_id = str_field(plan, "Id");
        let of_plan: Vec<&str> = members
            .iter()
            .filter(|m| str_field(m, "MaintenancePlanId") == plan_id)
            .map(|m| asset_ids[str_field(m, "AssetId")].as_str())
            .collect();
        assert!(
            of_plan.len() >= 2,
            "plan {key} has {} assets",
            of_plan.len()
        );
        let product = product_of[of_plan[0]].to_string();
        for asset in &of_plan {
            assert_eq!(product_of[asset], product, "{asset} in {key}");
            assert!(
                opened.iter().any(|o| &o.asset == asset && o.mode == mode),
                "{asset} in {key} never opened {mode}"
            );
        }
        seen.insert((product, mode));
    }
    assert_eq!(
        seen,
        expect_campaign,
        "a draft for each (product, mode) group; plans {:?}",
        plans
            .iter()
            .map(|p| str_field(p, "FieldPulse_Key__c"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_writes_only_insights_and_review_cases_await_acceptance() {
    let live = &prepared().live;
    let org = start_org(&live.fixture).await;
    let observe = PRODUCTS[0].name.to_string();
    let review = PRODUCTS[1].name.to_string();
    let (o, r) = (observe.clone(), review.clone());
    let state = run(&org, Some(WINDOW_DAYS / 2), move |raw| {
        raw.rollout.products.insert(o, Rollout::Observe);
        raw.rollout.products.insert(r, Rollout::Review);
    })
    .await;
    assert_guarantees(&org, state.path());
    let product_of: BTreeMap<&str, &str> = live
        .names
        .iter()
        .map(String::as_str)
        .zip(live.products.iter().map(String::as_str))
        .collect();
    let opened = openings(&org);
    let opened_in = |p: &str| {
        opened
            .iter()
            .filter(|o| product_of[o.asset.as_str()] == p)
            .count()
    };
    eprintln!(
        "rollout: {} openings on the observe product, {} on the review product, {} Cases",
        opened_in(&observe),
        opened_in(&review),
        org.emulator.live_count("Case")
    );
    assert!(opened_in(&observe) > 0, "observe product never alarmed");
    assert!(opened_in(&review) > 0, "review product never alarmed");
    let cases = org.emulator.records("Case");
    let mut review_cases = 0;
    for case in &cases {
        let (asset, _) = case_asset_mode(case);
        let product = product_of[asset.as_str()];
        assert_ne!(product, observe, "observe rollout wrote a Case for {asset}");
        if product == review {
            assert_eq!(str_field(case, "Status"), "Pending Review");
            review_cases += 1;
        } else {
            assert_eq!(str_field(case, "Status"), "New");
        }
    }
    assert!(review_cases > 0);
    let asset_names: BTreeMap<String, String> = asset_names_by_id(&org);
    for alert in org.emulator.records("Asset_Alert__c") {
        let asset = &asset_names[str_field(&alert, "Asset__c")];
        assert_ne!(
            product_of[asset.as_str()],
            observe,
            "observe rollout wrote an alert"
        );
    }
    for insight in org.emulator.records("AI_Insight__c") {
        let src: Value =
            serde_json::from_str(str_field(&insight, "Source_Record_Ids__c")).expect("ids");
        let key = src["case_key"].as_str().expect("case key");
        let asset = key.split(':').nth(1).expect("asset");
        if product_of[asset] == observe {
            assert_eq!(str_field(&insight, "Rollout_Mode__c"), "observe");
            assert_eq!(str_field(&insight, "Target_Object__c"), "none");
        }
    }
    // Observe never drafts campaigns either.
    for member in org.emulator.records("MaintenanceAsset") {
        let asset = &asset_names[str_field(&member, "AssetId")];
        assert_ne!(
            product_of[asset.as_str()],
            observe,
            "observe rollout joined a campaign"
        );
    }
}

/// Failure-model state of every asset, as checkpointed.
fn failure_blobs(state: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let conn = rusqlite::Connection::open(state.join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare("SELECT asset, failure FROM asset_state ORDER BY asset")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_swapped_mid_stream_keeps_every_asset_state_and_drops_nothing() {
    let days = Some(20);
    let org_a = start_org(&prepared().live.fixture).await;
    let reference = run(&org_a, days, |_| {}).await;

    let org_b = start_org(&prepared().live.fixture).await;
    let state = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(cloud_config(&org_b, state.path(), |_| {}), None)
        .await
        .expect("cloud starts");
    let http = reqwest::Client::new();
    let all = batches(&prepared().live, days);
    let half = all.len() / 2;
    for b in &all[..half] {
        post(&http, cloud.addr, b).await;
    }
    // A re-promoted model (same features): the shards switch between two
    // records without stopping, carrying each asset's streaming state over.
    let model = fieldpulse_cloud::service::load_model(&prepared().model_path).expect("model");
    cloud
        .processor
        .swap_model(fieldpulse_cloud::processor::ServedModel::from_artifact(
            model,
        ));
    for b in &all[half..] {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&cloud).await;
    let scored = cloud
        .processor
        .metrics()
        .readings_scored
        .load(std::sync::atomic::Ordering::Relaxed);
    cloud.shutdown().await.expect("clean shutdown");

    let expected: u64 = all.iter().map(|b| b.n_readings() as u64).sum();
    assert_eq!(scored, expected, "every reading scored across the swap");
    let a = failure_blobs(reference.path());
    let b = failure_blobs(state.path());
    assert!(!a.is_empty());
    assert_eq!(a, b, "the swap changed no asset's failure-model state");
    // Case counts are not compared: feedback polls interleave with scoring by
    // wall time, so episode timing (not scorer state) can differ between runs.
    drop((org_a, org_b));
}
