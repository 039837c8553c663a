//! Crash recovery of the real `fieldpulse cloud` binary: it is killed with
//! SIGKILL at points a seeded RNG picks (right after an ack, while a post is
//! in flight, while actions wait in the outbox, in the middle of a slow
//! Salesforce call) and restarted on the same state directory, while a
//! gateway re-sends what was not acknowledged (and a few duplicates).
//!
//! The end state must equal a run that was never interrupted, fed the same
//! delivery order: every batch in the log once, byte-identical scorer and
//! episode state, the same outbox actions, one Case and one `Asset_Alert__c`
//! per faulty asset and none for healthy ones, the same `AI_Insight__c`
//! count, no dead letters.
//!
//! `FIELDPULSE_KILLTEST_SEED=N` replays another kill schedule.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fieldpulse_cloud::log::{BatchSource, IngestLog, LogConfig};
use fieldpulse_cloud::service::{DB_FILE, LOG_DIR};
use fieldpulse_cloud::synth::SynthFleet;
use fieldpulse_proto::v1::{Batch, BatchAck};
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, FaultConfig, Fixture};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "gw-1-crash-test-token";
const SECRET: &str = "crash-test-consumer-secret";
const SENSORS: [&str; 4] = ["temp_c", "vib_rms", "pressure_bar", "current_a"];
const N_ASSETS: usize = 10;
const FAULTY: [usize; 3] = [2, 5, 8];
const ROWS: usize = 1_600;
const ROWS_PER_BATCH: usize = 40;
const FAULT_AT: usize = 900;
const T0: i64 = 1_767_225_600_000; // 2026-01-01
const SHARDS: i64 = 2;
const DEFAULT_SEED: u64 = 20_261_203;
/// Upper bound for anything the test waits for (a hung binary fails, not hangs).
const PATIENCE: Duration = Duration::from_secs(60);

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

/// The delivery order of both runs: in order, a stretch out of order (the
/// edge's live and backfill lanes), a duplicate, then the rest.
fn schedule() -> Vec<Batch> {
    let all = fleet().batches("gw-1", 42);
    let quarter = all.len() / 4;
    let mut out: Vec<Batch> = all[..quarter].to_vec();
    out.extend(all[quarter..2 * quarter].iter().rev().cloned());
    out.push(all[0].clone());
    out.extend(all[2 * quarter..].iter().cloned());
    out
}

/// Index in [`schedule`] of the first batch holding faulty rows.
fn fault_index(plan: &[Batch]) -> usize {
    let seq = (FAULT_AT / ROWS_PER_BATCH) as u64 + 1;
    plan.iter()
        .position(|b| b.seq == seq)
        .expect("the fault's batch is in the plan")
}

/// An in-process Salesforce emulator seeded with the fleet's assets.
struct Org {
    emulator: Emulator,
    base: String,
    shutdown: CancellationToken,
    secret_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Org {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_org() -> Org {
    let config = EmulatorConfig {
        consumer_secret: Some(SECRET.into()),
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::new(config, None).expect("emulator");
    let fixture: Fixture = serde_json::from_value(fleet().fixture_json()).expect("fixture");
    emulator.seed(&fixture).expect("seed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("sf-secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    Org {
        emulator,
        base,
        shutdown,
        secret_file,
        _dir: dir,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the config file the binary reads (listen and state come from flags).
fn write_config(org: &Org, dir: &Path) -> PathBuf {
    let path = dir.join("cloud.toml");
    let sensors: Vec<String> = SENSORS.iter().map(|s| format!("{s:?}")).collect();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"

[[gateways]]
id = "gw-1"
token_sha256 = "{token}"

[scoring]
shards = {SHARDS}
sensors = [{sensors}]
checkpoint_every = "100ms"

[episodes]
# Hourly Case refreshes (the default is daily) keep actions flowing through
# the whole run, so there is always an outbox to kill the process in.
min_update_interval_ms = 3600000

[salesforce]
token_url = "{base}"
client_id = "{client_id}"
client_secret_file = "{secret}"

[feedback]
poll_every = "1s"
"#,
        token = hex(&sha2::Sha256::digest(TOKEN.as_bytes())),
        sensors = sensors.join(", "),
        base = org.base,
        client_id = EmulatorConfig::default().consumer_key,
        secret = org.secret_file.display(),
    );
    std::fs::write(&path, toml).expect("config");
    path
}

/// One life of the binary. Dropping it kills it.
struct CloudProc {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for CloudProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CloudProc {
    fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL: no drain, no checkpoint, no flush.
    fn kill9(mut self) {
        // `Child::kill` sends SIGKILL on unix.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits for a clean exit.
    async fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "fieldpulse cloud exited with {status} after SIGTERM:\n{}",
                    self.output()
                );
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "fieldpulse cloud did not stop after SIGTERM:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `fieldpulse cloud` on `state` and waits for `/healthz`.
async fn start_cloud(
    http: &reqwest::Client,
    config: &Path,
    state: &Path,
    logs: &Path,
    life: usize,
) -> CloudProc {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let log = logs.join(format!("life-{life}.log"));
    let out = File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(["cloud", "--config"])
        .arg(config)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--state")
        .arg(state)
        .env("FIELDPULSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("start fieldpulse cloud");
    let mut proc = CloudProc { child, addr, log };
    let start = Instant::now();
    loop {
        if let Some(status) = proc.child.try_wait().expect("try_wait") {
            panic!(
                "fieldpulse cloud (life {life}) exited with {status}:\n{}",
                proc.output()
            );
        }
        if let Ok(res) = http.get(format!("http://{addr}/healthz")).send().await {
            if res.status() == 200 {
                return proc;
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "fieldpulse cloud (life {life}) never became healthy:\n{}",
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts a batch as the edge does: retries on 503 and connection errors until
/// a `BatchAck` echoes its seq.
async fn post(http: &reqwest::Client, addr: SocketAddr, batch: &Batch) -> BatchAck {
    let body = zstd::encode_all(batch.encode_to_vec().as_slice(), 3).expect("zstd");
    let start = Instant::now();
    loop {
        let res = http
            .post(format!("http://{addr}/v1/batches"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-encoding", "zstd")
            .header("content-type", "application/x-protobuf")
            .header("idempotency-key", batch.idempotency_key())
            .body(body.clone())
            .send()
            .await;
        match res {
            Ok(res) if res.status() == 200 => {
                let ack = BatchAck::decode(res.bytes().await.expect("ack body")).expect("ack");
                assert_eq!(ack.seq, batch.seq, "the ack echoes the seq");
                assert_eq!(
                    ack.spool_epoch, batch.spool_epoch,
                    "the ack echoes the epoch"
                );
                return ack;
            }
            Ok(res) if res.status() == 503 => {}
            Ok(res) => panic!(
                "batch {} refused: {} {}",
                batch.seq,
                res.status(),
                res.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        assert!(
            start.elapsed() < PATIENCE,
            "batch {} never acknowledged",
            batch.seq
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Unlabelled series of `/metrics`.
async fn metrics(http: &reqwest::Client, addr: SocketAddr) -> HashMap<String, f64> {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(res) => res.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn open_db(state: &Path) -> Option<rusqlite::Connection> {
    let path = state.join(DB_FILE);
    if !path.exists() {
        return None;
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    Some(conn)
}

/// Outbox rows waiting to be sent (0 before the database exists).
fn pending_actions(state: &Path) -> i64 {
    open_db(state)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM outbox_actions WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .ok()
        })
        .unwrap_or(0)
}

/// (lowest, count) of the shard checkpoints' offsets.
fn checkpoint(state: &Path) -> Option<(i64, i64)> {
    open_db(state)?
        .query_row(
            "SELECT COALESCE(MIN(next_offset), 0), COUNT(*) FROM shard_checkpoint",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

/// Waits until every shard has checkpointed past `offset`.
async fn wait_checkpoint_past(cloud: &CloudProc, state: &Path, offset: i64) {
    let start = Instant::now();
    loop {
        match checkpoint(state) {
            Some((min, n)) if n == SHARDS && min > offset => return,
            _ => {}
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no checkpoint past offset {offset} (now {:?}):\n{}",
            checkpoint(state),
            cloud.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where a life ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Right after a batch was acknowledged (logged, probably not yet scored).
    AfterAck,
    /// While a post is in flight (the batch may or may not be in the log).
    DuringPost,
    /// While actions wait in the outbox (Salesforce answers 503, so they stay there).
    Pending,
    /// While the outbox sender waits on a slow Salesforce call.
    MidSend,
    /// As soon as a restarted process answers `/healthz` (replay and resend
    /// of the previous life's outbox under way).
    Recovering,
}

/// A kill: from plan index `from` on, the life ends at the first `kind` point
/// (`Recovering` ignores `from`).
#[derive(Debug, Clone, Copy)]
struct KillAt {
    from: usize,
    kind: Kill,
}

/// A seeded kill schedule over `plan`, in posting order: two kills before and
/// around the fault, the outbox ones after the fault opened episodes.
fn kill_schedule(rng: &mut StdRng, plan: &[Batch]) -> Vec<KillAt> {
    let fault = fault_index(plan);
    let n = plan.len();
    vec![
        KillAt {
            from: rng.gen_range(2..fault - 4),
            kind: Kill::AfterAck,
        },
        KillAt {
            from: rng.gen_range(fault - 3..fault + 2),
            kind: Kill::DuringPost,
        },
        KillAt {
            from: rng.gen_range(fault + 2..fault + 6),
            kind: Kill::Pending,
        },
        KillAt {
            from: 0,
            kind: Kill::Recovering,
        },
        KillAt {
            from: rng.gen_range(fault + 7..n - 8),
            kind: Kill::MidSend,
        },
        KillAt {
            from: rng.gen_range(n - 6..n - 1),
            kind: Kill::AfterAck,
        },
    ]
}

/// What happened at one kill.
#[derive(Debug)]
struct KillReport {
    kind: Kill,
    /// The log offset the next life resumes from (lowest shard checkpoint).
    resume: i64,
    /// Log records the life had read (its `/metrics`, before the last step).
    read: u64,
    /// Plan index of the last batch posted before the kill.
    at: usize,
    /// Outbox rows left pending by the kill.
    pending: i64,
    /// Salesforce calls in flight at the kill.
    in_flight: usize,
}

/// Feeds `plan` to the binary on `state`, killing it per `kills`.
async fn run(
    org: &Org,
    state: &Path,
    work: &Path,
    plan: &[Batch],
    kills: &[KillAt],
    rng: &mut StdRng,
) -> Vec<KillReport> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let config = write_config(org, work);
    let mut life = 0;
    let mut cloud = start_cloud(&http, &config, state, work, life).await;
    let mut resumed_at = 0;
    let mut next = 0;
    let mut reports = Vec::new();
    for kill in kills {
        while next < kill.from {
            post(&http, cloud.addr, &plan[next]).await;
            next += 1;
            // Gateways post as data arrives, not all at once: scoring and
            // checkpoints interleave with ingest.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
        }
        if kill.kind == Kill::AfterAck {
            // This life checkpointed some progress, so the next one restores
            // state and replays only part of the log.
            wait_checkpoint_past(&cloud, state, resumed_at).await;
        }
        let read = metrics(&http, cloud.addr)
            .await
            .get("fieldpulse_cloud_log_records_read_total")
            .copied()
            .unwrap_or(0.0) as u64;
        match (kill.kind, plan.get(next)) {
            (Kill::Recovering, _) | (Kill::AfterAck | Kill::DuringPost, None) => {}
            (Kill::AfterAck, Some(batch)) => {
                post(&http, cloud.addr, batch).await;
                next += 1;
            }
            (Kill::DuringPost, Some(batch)) => {
                let addr = cloud.addr;
                let batch = batch.clone();
                let client = http.clone();
                let task = tokio::spawn(async move { post(&client, addr, &batch).await });
                tokio::time::sleep(Duration::from_micros(rng.gen_range(0..5_000))).await;
                task.abort();
                // Not known to be acknowledged: re-sent after the restart.
            }
            (Kill::Pending | Kill::MidSend, _) => {
                org.emulator.set_faults(if kill.kind == Kill::Pending {
                    FaultConfig {
                        fail_next_503: 1_000_000,
                        ..FaultConfig::default()
                    }
                } else {
                    FaultConfig {
                        latency_ms: 200,
                        ..FaultConfig::default()
                    }
                });
                let mut hit = false;
                while !hit && next < plan.len() {
                    post(&http, cloud.addr, &plan[next]).await;
                    next += 1;
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_millis(1_500) {
                        let busy = kill.kind == Kill::Pending || org.emulator.in_flight() > 0;
                        if busy && pending_actions(state) > 0 {
                            hit = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                assert!(hit, "{kill:?}: no outbox action was ever pending");
            }
        }
        let in_flight = org.emulator.in_flight();
        cloud.kill9();
        org.emulator.set_faults(FaultConfig::default());
        resumed_at = checkpoint(state).map_or(0, |c| c.0);
        reports.push(KillReport {
            kind: kill.kind,
            resume: resumed_at,
            read,
            at: next.saturating_sub(1),
            pending: pending_actions(state),
            in_flight,
        });
        life += 1;
        cloud = start_cloud(&http, &config, state, work, life).await;
        // The gateway re-sends the last batches it saw acknowledged too:
        // duplicates, acknowledged again and not logged twice.
        let resent = &plan[next.saturating_sub(2)..next];
        for b in resent {
            post(&http, cloud.addr, b).await;
        }
        let dups = metrics(&http, cloud.addr).await;
        assert_eq!(
            dups.get("fieldpulse_cloud_duplicate_batches_total")
                .copied(),
            Some(resent.len() as f64),
            "re-sent batches are recognised as duplicates after the restart"
        );
    }
    for b in &plan[next..] {
        post(&http, cloud.addr, b).await;
    }
    wait_idle(&http, &cloud, state).await;
    cloud.terminate().await;
    assert_eq!(pending_actions(state), 0, "the drain left actions pending");
    reports
}

/// Waits until `/metrics` shows the log scored and the outbox empty, and the
/// database agrees, three times in a row.
async fn wait_idle(http: &reqwest::Client, cloud: &CloudProc, state: &Path) {
    let start = Instant::now();
    let mut calm = 0;
    while calm < 3 {
        let m = metrics(http, cloud.addr).await;
        let lag = m.get("fieldpulse_cloud_log_lag_records").copied();
        let depth = m.get("fieldpulse_cloud_outbox_depth").copied();
        let pending = pending_actions(state);
        let idle = lag == Some(0.0) && depth == Some(0.0) && pending == 0;
        calm = if idle { calm + 1 } else { 0 };
        assert!(
            start.elapsed() < PATIENCE,
            "the cloud never went idle (lag {lag:?}, outbox depth {depth:?}, pending rows {pending}):\n{}",
            cloud.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (gateway, epoch, seq) of every log record, in offset order.
fn logged_batches(state: &Path) -> Vec<(String, u64, u64)> {
    let (log, _) = IngestLog::open(&state.join(LOG_DIR), LogConfig::default()).expect("open log");
    let mut consumer = log.consumer("crash-test-audit").expect("consumer");
    let end = log.end_offset();
    let mut out = Vec::new();
    let mut from = 0;
    while from < end {
        let records = consumer
            .read(from, 256, Duration::from_millis(100))
            .expect("read log");
        assert!(!records.is_empty(), "log ends at {from}, below {end}");
        for r in records {
            assert_eq!(r.offset, from, "offsets are dense");
            out.push((r.batch.gateway_id.clone(), r.batch.spool_epoch, r.batch.seq));
            from = r.offset + 1;
        }
    }
    out
}

type AssetRow = (String, i64, Option<Vec<u8>>, Option<Vec<u8>>, String);

/// The checkpointed state of every asset (`updated_ms` left out: wall time).
fn asset_state(state: &Path) -> Vec<AssetRow> {
    let conn = open_db(state).expect("database");
    let mut stmt = conn
        .prepare(
            "SELECT asset, next_offset, anomaly, failure, episodes FROM asset_state ORDER BY asset",
        )
        .expect("query");
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("asset_state")
}

/// Every outbox action as (sObject, key, state), sorted.
fn outbox(state: &Path) -> Vec<(String, String, String)> {
    let conn = open_db(state).expect("database");
    let mut stmt = conn
        .prepare("SELECT sobject, ext_key, state FROM outbox_actions ORDER BY sobject, ext_key, id")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("outbox_actions")
}

/// Rows of `outbox_dead_letters`.
fn dead_letters(state: &Path) -> i64 {
    open_db(state)
        .expect("database")
        .query_row("SELECT COUNT(*) FROM outbox_dead_letters", [], |r| r.get(0))
        .expect("outbox_dead_letters")
}

/// Asset names the org's live records of `object` point at (by `AssetId`), with counts.
fn assets_of(org: &Org, object: &str, field: &str) -> BTreeMap<String, usize> {
    let names: HashMap<String, String> = org
        .emulator
        .records("Asset")
        .iter()
        .filter_map(|a| {
            Some((
                a["Id"].as_str()?.to_string(),
                a["Name"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut out = BTreeMap::new();
    for r in org.emulator.records(object) {
        let id = r[field].as_str().unwrap_or_default();
        let name = names.get(id).cloned().unwrap_or_else(|| format!("?{id}"));
        *out.entry(name).or_default() += 1;
    }
    out
}

/// `FieldPulse_Key__c` of the org's live records of `object`.
fn keys_of(org: &Org, object: &str) -> BTreeSet<String> {
    org.emulator
        .records(object)
        .iter()
        .filter_map(|r| r["FieldPulse_Key__c"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_ends_exactly_as_an_uninterrupted_run() {
    let seed = std::env::var("FIELDPULSE_KILLTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = StdRng::seed_from_u64(seed);
    let plan = schedule();
    let kills = kill_schedule(&mut rng, &plan);
    eprintln!("seed {seed}: kills {kills:?}");

    // The reference: the same delivery order, never interrupted.
    let org_ref = start_org().await;
    let work_ref = tempfile::tempdir().expect("tempdir");
    let state_ref = work_ref.path().join("state");
    run(&org_ref, &state_ref, work_ref.path(), &plan, &[], &mut rng).await;

    let org = start_org().await;
    let work = tempfile::tempdir().expect("tempdir");
    let state = work.path().join("state");
    let reports = run(&org, &state, work.path(), &plan, &kills, &mut rng).await;
    assert_eq!(reports.len(), kills.len());
    for r in &reports {
        eprintln!(
            "killed ({:?}) after plan index {}: {} log records read, {} actions pending, {} Salesforce calls in flight; the next life resumes at offset {}",
            r.kind, r.at, r.read, r.pending, r.in_flight, r.resume
        );
        match r.kind {
            Kill::Pending => assert!(r.pending > 0, "{r:?}: nothing was pending"),
            Kill::MidSend => assert!(
                r.pending > 0 && r.in_flight > 0,
                "{r:?}: not killed mid-send"
            ),
            Kill::AfterAck | Kill::DuringPost | Kill::Recovering => {}
        }
    }

    // Every batch of the plan is in the log once, in the same order.
    let logged = logged_batches(&state);
    let expected = logged_batches(&state_ref);
    let distinct: BTreeSet<_> = plan
        .iter()
        .map(|b| (b.gateway_id.clone(), b.spool_epoch, b.seq))
        .collect();
    assert_eq!(
        expected.len(),
        distinct.len(),
        "the reference logged each batch once"
    );
    assert_eq!(
        expected.iter().cloned().collect::<BTreeSet<_>>(),
        distinct,
        "the reference logged every batch"
    );
    assert_eq!(
        logged, expected,
        "the crashed run's log differs from the reference"
    );

    // Scorer and episode state byte for byte.
    let a = asset_state(&state_ref);
    let b = asset_state(&state);
    assert_eq!(a.len(), N_ASSETS, "every asset checkpointed");
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(&b) {
        assert_eq!(ra.0, rb.0);
        assert_eq!(
            ra.1, rb.1,
            "next offset of {} differs after the crashes",
            ra.0
        );
        assert!(
            ra.2 == rb.2,
            "anomaly state of {} differs after the crashes",
            ra.0
        );
        assert!(
            ra.3 == rb.3,
            "failure state of {} differs after the crashes",
            ra.0
        );
        assert_eq!(ra.4, rb.4, "episodes of {} differ after the crashes", ra.0);
    }

    // The same actions were written, each once, and all were sent.
    let out_ref = outbox(&state_ref);
    let out = outbox(&state);
    assert!(
        out.iter().all(|(_, _, s)| s == "sent"),
        "unsent actions: {out:?}"
    );
    assert_eq!(out, out_ref, "the outbox differs from the reference");
    assert_eq!(dead_letters(&state), 0, "dead letters");
    assert_eq!(dead_letters(&state_ref), 0, "dead letters in the reference");

    // Salesforce: one Case and one alert per faulty asset, none for healthy ones.
    let faulty: BTreeMap<String, usize> = FAULTY
        .iter()
        .map(|&i| (SynthFleet::asset_name(i), 1))
        .collect();
    assert_eq!(org.emulator.live_count("Case"), FAULTY.len());
    assert_eq!(org.emulator.live_count("Asset_Alert__c"), FAULTY.len());
    assert_eq!(assets_of(&org, "Case", "AssetId"), faulty, "Cases by asset");
    assert_eq!(
        assets_of(&org, "Asset_Alert__c", "Asset__c"),
        faulty,
        "alerts by asset"
    );
    assert_eq!(
        assets_of(&org_ref, "Case", "AssetId"),
        faulty,
        "reference Cases"
    );
    let insights = org.emulator.live_count("AI_Insight__c");
    assert!(insights >= FAULTY.len(), "an audit record per action");
    assert_eq!(insights, org_ref.emulator.live_count("AI_Insight__c"));
    for object in [
        "Case",
        "Asset_Alert__c",
        "AI_Insight__c",
        "MaintenancePlan",
        "MaintenanceAsset",
    ] {
        assert_eq!(
            keys_of(&org, object),
            keys_of(&org_ref, object),
            "{object} keys differ from the reference"
        );
    }
}
