//! The Parquet telemetry archive end to end: real HTTP ingest into the log,
//! the archive consumer writing `day=YYYY-MM-DD/part-<first>-<last>.parquet`,
//! read back with polars; crashes between the files and the commit; a
//! failing disk that must not stop ingest or scoring.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_cloud::archive::layout::{self, DAY_MS};
use fieldpulse_cloud::archive::{ArchiveMetrics, ArchiveWriter, ARCHIVE_CONSUMER};
use fieldpulse_cloud::config::CloudConfig;
use fieldpulse_cloud::log::{IngestLog, LogConfig};
use fieldpulse_cloud::service::{Cloud, LOG_DIR};
use fieldpulse_cloud::synth::SynthFleet;
use fieldpulse_proto::v1::Batch;
use polars::prelude::*;
use support::{post, Org};

const SENSORS: [&str; 3] = ["temp_c", "vib_rms", "pressure_bar"];
const N_ASSETS: usize = 6;
/// 2025-12-31T22:00:00Z: four hours of minutes cross midnight UTC.
const T0: i64 = 1_767_225_600_000 - 2 * 3_600_000;
const ROWS: usize = 240;

fn fleet() -> SynthFleet {
    SynthFleet {
        assets: N_ASSETS,
        sensors: SENSORS.iter().map(|s| s.to_string()).collect(),
        rows: ROWS,
        rows_per_batch: 20,
        assets_per_batch: 3,
        faulty: Vec::new(),
        fault_at: 0,
        t0_ms: T0,
    }
}

fn batches() -> Vec<Batch> {
    fleet().batches("gw-1", 7)
}

/// Every reading once: (asset, ts, tag, value bits, gateway), sorted.
type Reading = (String, i64, String, u64, String);

fn expected(batches: &[Batch]) -> Vec<Reading> {
    let mut out: Vec<Reading> = batches
        .iter()
        .flat_map(|b| {
            b.series.iter().flat_map(move |s| {
                s.points().map(move |(ts, v)| {
                    (
                        s.asset_id.clone(),
                        ts,
                        s.sensor.clone(),
                        v.to_bits(),
                        b.gateway_id.clone(),
                    )
                })
            })
        })
        .collect();
    out.sort();
    out
}

/// Reads every part file back with polars, checking each file's schema,
/// day and sort order on the way.
fn read_archive(root: &Path) -> (Vec<Reading>, BTreeMap<String, usize>) {
    let mut out = Vec::new();
    let mut files_per_day = BTreeMap::new();
    for part in layout::part_files(root).unwrap() {
        let day_dir = part.path.parent().unwrap().file_name().unwrap();
        let day_dir = day_dir.to_string_lossy().into_owned();
        *files_per_day.entry(day_dir.clone()).or_insert(0) += 1;
        let df = ParquetReader::new(std::fs::File::open(&part.path).unwrap())
            .finish()
            .unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["ts", "asset", "tag", "value", "gateway"]);
        assert_eq!(
            df.column("ts").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        );
        let ts = df.column("ts").unwrap().cast(&DataType::Int64).unwrap();
        let ts = ts.i64().unwrap();
        let asset = df.column("asset").unwrap().str().unwrap();
        let tag = df.column("tag").unwrap().str().unwrap();
        let value = df.column("value").unwrap().f64().unwrap();
        let gateway = df.column("gateway").unwrap().str().unwrap();
        let mut previous: Option<(String, i64, String)> = None;
        for i in 0..df.height() {
            let row: Reading = (
                asset.get(i).unwrap().to_string(),
                ts.get(i).unwrap(),
                tag.get(i).unwrap().to_string(),
                value.get(i).unwrap().to_bits(),
                gateway.get(i).unwrap().to_string(),
            );
            assert_eq!(
                layout::day_dir_name(row.1.div_euclid(DAY_MS)),
                day_dir,
                "{}: a reading of another day",
                part.path.display()
            );
            let key = (row.0.clone(), row.1, row.2.clone());
            assert!(
                previous.as_ref().is_none_or(|p| *p <= key),
                "{}: not sorted by (asset, ts, tag)",
                part.path.display()
            );
            previous = Some(key);
            out.push(row);
        }
    }
    out.sort();
    (out, files_per_day)
}

fn archive_dir(state: &Path) -> PathBuf {
    state.join("archive")
}

fn config(org: &Org, state: &Path, flush_rows: usize) -> CloudConfig {
    let mut cfg = support::cloud_config(org, state, |raw| {
        raw.scoring.sensors = SENSORS.iter().map(|s| s.to_string()).collect();
        raw.scoring.checkpoint_every = Duration::from_millis(200);
        raw.archive.flush_rows = flush_rows;
        // Short, so the tail of a test's readings is flushed without a
        // shutdown; when exactly a flush happens does not matter.
        raw.archive.flush_every = Duration::from_millis(200);
    });
    let archive = cfg.archive.as_mut().expect("the archive is on by default");
    archive.retry_min = Duration::from_millis(20);
    archive.retry_max = Duration::from_millis(100);
    cfg
}

async fn start(cfg: CloudConfig) -> Cloud {
    Cloud::start(cfg, None).await.expect("cloud starts")
}

/// Waits until the archive has committed every record of the log.
async fn wait_archived(cloud: &Cloud) {
    let end = cloud.log.end_offset();
    let archive = Arc::clone(cloud.archive.as_ref().expect("archive running"));
    let ok =
        tokio::task::spawn_blocking(move || archive.wait_committed(end, Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(ok, "the archive did not reach offset {end}");
}

async fn metrics(cloud: &Cloud) -> String {
    reqwest::get(format!("http://{}/metrics", cloud.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_readings_are_archived_once_by_utc_day_across_a_crash() {
    let org = support::start_org(&fleet().fixture_json()).await;
    let state = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let plan = batches();
    let half = plan.len() / 2;

    // First life: some flushes commit, then the process dies (no drain).
    let cloud = start(config(&org, state.path(), 1_000)).await;
    for b in &plan[..half] {
        post(&http, cloud.addr, b).await;
    }
    wait_archived(&cloud).await;
    let text = metrics(&cloud).await;
    let first_life_rows = metric(&text, "fieldpulse_cloud_archive_rows_total");
    assert!(first_life_rows > 0);
    assert!(metric(&text, "fieldpulse_cloud_archive_files_total") > 0);
    assert!(metric(&text, "fieldpulse_cloud_archive_bytes_total") > 0);
    assert_eq!(metric(&text, "fieldpulse_cloud_archive_lag"), 0);
    assert_eq!(
        metric(&text, "fieldpulse_cloud_archive_write_failures_total"),
        0
    );
    // More batches, and the process dies before they are flushed (no drain).
    for b in &plan[half..half + 3] {
        post(&http, cloud.addr, b).await;
    }
    cloud.abort().await;

    // Second life: the rest, then a clean shutdown (drain and final flush).
    let cloud = start(config(&org, state.path(), 1_000)).await;
    for b in &plan[half + 3..] {
        post(&http, cloud.addr, b).await;
    }
    // A re-delivered batch is acknowledged, not logged, not archived twice.
    post(&http, cloud.addr, &plan[0]).await;
    support::wait_idle(&cloud).await;
    let log = cloud.log.clone();
    cloud.shutdown().await.expect("clean shutdown");
    assert_eq!(
        log.consumer_offsets().get(ARCHIVE_CONSUMER),
        Some(&log.end_offset()),
        "the drain archived the whole log"
    );

    let root = archive_dir(state.path());
    let (archived, files_per_day) = read_archive(&root);
    assert_eq!(archived.len() as u64, fleet().n_readings());
    assert_eq!(archived, expected(&plan), "every reading exactly once");
    assert_eq!(
        files_per_day.keys().collect::<Vec<_>>(),
        ["day=2025-12-31", "day=2026-01-01"]
    );
    assert!(!root.join(layout::PENDING_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_renames_and_the_commit_archives_no_duplicates() {
    let org = support::start_org(&fleet().fixture_json()).await;
    let state = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let plan = batches();

    // The log fills with the archive off.
    let cloud = start(support::cloud_config(&org, state.path(), |raw| {
        raw.scoring.sensors = SENSORS.iter().map(|s| s.to_string()).collect();
        raw.archive.enabled = false;
    }))
    .await;
    for b in &plan {
        post(&http, cloud.addr, b).await;
    }
    cloud.shutdown().await.expect("clean shutdown");

    // An archive flush renames its files into place, then the process dies
    // before the consumer offset is committed.
    let root = archive_dir(state.path());
    {
        let (log, _) = IngestLog::open(&state.path().join(LOG_DIR), LogConfig::default()).unwrap();
        let consumer = log.consumer(ARCHIVE_CONSUMER).unwrap();
        let committed = consumer.committed();
        let settings = config(&org, state.path(), 1_000).archive.unwrap();
        let (mut writer, _) = ArchiveWriter::open(
            settings,
            consumer,
            committed,
            Arc::new(ArchiveMetrics::default()),
        )
        .unwrap();
        while writer.fill(1_000, Duration::ZERO).unwrap() > 0 {}
        let report = writer.write_files().unwrap().expect("something to write");
        assert_eq!(report.rows, fleet().n_readings());
        assert_eq!(report.files, 2);
        assert_eq!(log.consumer_offsets().get(ARCHIVE_CONSUMER), Some(&0));
    }
    assert_eq!(layout::part_files(&root).unwrap().len(), 2);

    // The restart flushes in smaller ranges than the interrupted flush:
    // other file names, so the old files must go, not be kept beside them.
    let cloud = start(config(&org, state.path(), 500)).await;
    assert_eq!(
        cloud
            .archive
            .as_ref()
            .unwrap()
            .recovery()
            .expect("the directory opened")
            .uncommitted_files_deleted,
        2
    );
    wait_archived(&cloud).await;
    cloud.shutdown().await.expect("clean shutdown");
    let (archived, files_per_day) = read_archive(&root);
    assert_eq!(archived, expected(&plan), "every reading exactly once");
    assert!(files_per_day.values().sum::<usize>() > 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_archive_disk_holds_its_offset_while_ingest_and_scoring_go_on() {
    let org = support::start_org(&fleet().fixture_json()).await;
    let state = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let plan = batches();
    // A file where the first day's directory must go: every flush fails,
    // as on a read-only or broken disk (also for root, whom a read-only
    // mode would not stop).
    let root = archive_dir(state.path());
    std::fs::create_dir_all(&root).unwrap();
    let blocker = root.join("day=2025-12-31");
    std::fs::write(&blocker, b"not a directory").unwrap();

    let cloud = start(config(&org, state.path(), 1_000)).await;
    for b in &plan {
        post(&http, cloud.addr, b).await;
    }
    // Ingest acknowledged everything; scoring goes on regardless.
    support::wait_idle(&cloud).await;
    let end = cloud.log.end_offset();
    let archive = Arc::clone(cloud.archive.as_ref().unwrap());
    for _ in 0..2_400 {
        if archive.stats().write_failures >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = archive.stats();
    assert!(stats.write_failures >= 2, "{stats:?}");
    assert!(stats.failing);
    assert_eq!(stats.committed, 0, "the offset is held");
    assert_eq!(
        cloud.log.consumer_offsets().get(ARCHIVE_CONSUMER),
        Some(&0),
        "retention keeps the records for the archive"
    );
    let text = metrics(&cloud).await;
    assert!(metric(&text, "fieldpulse_cloud_archive_write_failures_total") >= 2);
    assert_eq!(metric(&text, "fieldpulse_cloud_archive_lag"), end);
    assert_eq!(metric(&text, "fieldpulse_cloud_archive_failing"), 1);
    let health = reqwest::get(format!("http://{}/healthz", cloud.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains("archive writes failing"), "{health}");

    // The disk recovers: the retry writes everything, once.
    std::fs::remove_file(&blocker).unwrap();
    wait_archived(&cloud).await;
    assert!(!archive.stats().failing);
    cloud.shutdown().await.expect("clean shutdown");
    let (archived, _) = read_archive(&root);
    assert_eq!(archived, expected(&plan), "every reading exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_starts_on_an_unusable_archive_directory_and_archives_once_it_is_usable() {
    let org = support::start_org(&fleet().fixture_json()).await;
    let state = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let plan = batches();
    // A file where the archive directory must go (as a read-only or broken
    // mount would): the directory cannot even be opened.
    let root = archive_dir(state.path());
    std::fs::create_dir_all(state.path()).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();

    let cloud = start(config(&org, state.path(), 1_000)).await;
    let archive = Arc::clone(cloud.archive.as_ref().unwrap());
    assert!(archive.recovery().is_none());
    for b in &plan {
        post(&http, cloud.addr, b).await;
    }
    support::wait_idle(&cloud).await;
    for _ in 0..2_400 {
        if archive.stats().write_failures >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = archive.stats();
    assert!(stats.write_failures >= 2 && stats.failing, "{stats:?}");
    assert_eq!(cloud.log.consumer_offsets().get(ARCHIVE_CONSUMER), Some(&0));

    std::fs::remove_file(&root).unwrap();
    wait_archived(&cloud).await;
    assert!(archive.recovery().is_some());
    cloud.shutdown().await.expect("clean shutdown");
    let (archived, _) = read_archive(&root);
    assert_eq!(archived, expected(&plan), "every reading exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_the_archive_unregisters_its_consumer() {
    let org = support::start_org(&fleet().fixture_json()).await;
    let state = tempfile::tempdir().unwrap();
    let cloud = start(config(&org, state.path(), 1_000)).await;
    assert!(cloud.log.consumer_offsets().contains_key(ARCHIVE_CONSUMER));
    cloud.shutdown().await.expect("clean shutdown");
    let cloud = start(support::cloud_config(&org, state.path(), |raw| {
        raw.scoring.sensors = SENSORS.iter().map(|s| s.to_string()).collect();
        raw.archive.enabled = false;
    }))
    .await;
    assert!(cloud.archive.is_none());
    assert!(!cloud.log.consumer_offsets().contains_key(ARCHIVE_CONSUMER));
    cloud.shutdown().await.expect("clean shutdown");
}
