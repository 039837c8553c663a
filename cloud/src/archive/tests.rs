use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_proto::v1::{Batch, Series};

use super::layout::{self, civil_from_days, day_dir_name, parse_part_file_name, part_file_name};
use super::writer::ArchiveWriter;
use super::*;
use crate::log::{BatchSource, LogError, LogRecord};

/// An in-memory [`BatchSource`]: records at consecutive offsets from 0.
#[derive(Debug, Default)]
struct MemSource {
    records: Vec<LogRecord>,
    committed: u64,
}

impl MemSource {
    fn new(batches: Vec<Batch>) -> Self {
        let records = batches
            .into_iter()
            .enumerate()
            .map(|(i, batch)| LogRecord {
                offset: i as u64,
                appended_ms: 0,
                batch,
            })
            .collect();
        Self {
            records,
            committed: 0,
        }
    }
}

impl BatchSource for MemSource {
    fn read(&mut self, from: u64, max: usize, _wait: Duration) -> Result<Vec<LogRecord>, LogError> {
        Ok(self
            .records
            .iter()
            .filter(|r| r.offset >= from)
            .take(max)
            .cloned()
            .collect())
    }

    fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        if next_offset < self.committed || next_offset > self.end_offset() {
            return Err(LogError::CommitOutOfRange {
                consumer: "archive".into(),
                next_offset,
                committed: self.committed,
                end_offset: self.end_offset(),
            });
        }
        self.committed = next_offset;
        Ok(())
    }

    fn end_offset(&self) -> u64 {
        self.records.len() as u64
    }
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MIN: i64 = 60_000;

/// One batch per record: `assets` x `sensors`, readings at `t0 + k * step`.
fn batch(seq: u64, assets: &[&str], sensors: &[&str], t0: i64, n: usize, step: i64) -> Batch {
    let mut b = Batch {
        gateway_id: "gw-1".into(),
        seq,
        spool_epoch: 1,
        ..Default::default()
    };
    for asset in assets {
        for (s, sensor) in sensors.iter().enumerate() {
            let mut series = Series {
                asset_id: (*asset).into(),
                sensor: (*sensor).into(),
                ..Default::default()
            };
            for k in 0..n {
                series.push(
                    t0 + k as i64 * step,
                    seq as f64 * 1000.0 + k as f64 + s as f64 / 10.0,
                );
            }
            b.series.push(series);
        }
    }
    b
}

fn settings(dir: &Path) -> ArchiveSettings {
    ArchiveSettings {
        retry_min: Duration::from_millis(1),
        retry_max: Duration::from_millis(4),
        ..ArchiveSettings::new(dir.to_path_buf())
    }
}

fn open(dir: &Path, source: MemSource) -> (ArchiveWriter<MemSource>, Recovery) {
    let committed = source.committed;
    ArchiveWriter::open(
        settings(dir),
        source,
        committed,
        Arc::new(ArchiveMetrics::default()),
    )
    .expect("archive opens")
}

fn names(dir: &Path) -> Vec<String> {
    layout::part_files(dir)
        .unwrap()
        .iter()
        .map(|p| {
            p.path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn days_format_as_utc_calendar_dates() {
    assert_eq!(day_dir_name(0), "day=1970-01-01");
    assert_eq!(day_dir_name(20_454), "day=2026-01-01");
    assert_eq!(day_dir_name(layout::day_of(T0 - 1)), "day=2025-12-31");
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(day_dir_name(-1), "day=1969-12-31");
    assert_eq!(layout::day_of(-1), -1);
}

#[test]
fn part_names_round_trip_and_reject_others() {
    assert_eq!(part_file_name(0, 41), "part-0-41.parquet");
    assert_eq!(parse_part_file_name("part-0-41.parquet"), Some((0, 41)));
    assert_eq!(parse_part_file_name("part-7-7.parquet"), Some((7, 7)));
    for bad in [
        "part-9-3.parquet",
        "part--3.parquet",
        "part-1-2.parquet.tmp",
        ".part-1-2.parquet.tmp",
        "part-1-2-3.parquet",
        "part-+1-2.parquet",
        "_pending.json",
    ] {
        assert_eq!(parse_part_file_name(bad), None, "{bad}");
    }
}

#[test]
fn buffer_splits_at_utc_midnight_and_sorts_by_asset_ts_tag() {
    let mut buffer = RowBuffer::default();
    // Ten minutes either side of midnight, two assets pushed in reverse order.
    buffer.push(
        3,
        &batch(1, &["B", "A"], &["vib", "temp"], T0 - 10 * MIN, 20, MIN),
    );
    assert_eq!(buffer.range(), Some((3, 3)));
    assert_eq!(buffer.n_rows(), 80);
    let days = buffer.by_day();
    assert_eq!(days.len(), 2);
    assert_eq!(day_dir_name(days[0].day), "day=2025-12-31");
    assert_eq!(day_dir_name(days[1].day), "day=2026-01-01");
    assert_eq!(days[0].rows.len(), 40);
    assert!(days[0].rows.iter().all(|r| r.ts_ms < T0));
    assert!(days[1].rows.iter().all(|r| r.ts_ms >= T0));
    for day in &days {
        let keys: Vec<(&str, i64, &str)> = day
            .rows
            .iter()
            .map(|r| (day.strings.get(r.asset), r.ts_ms, day.strings.get(r.tag)))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0].0, "A");
        assert_eq!(keys[0].2, "temp");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let s = ArchiveSettings {
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        ..ArchiveSettings::new("x".into())
    };
    let delays: Vec<u64> = (1..=9)
        .map(|f| super::writer::backoff(&s, f).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(super::writer::backoff(&s, u32::MAX).as_secs(), 60);
}

#[test]
fn metrics_render_the_five_series_and_the_lag() {
    let stats = ArchiveStats {
        rows: 10,
        files: 2,
        bytes: 300,
        write_failures: 1,
        committed: 5,
        failing: false,
    };
    let mut text = String::new();
    render_metrics(&mut text, &stats, 9);
    for line in [
        "fieldpulse_cloud_archive_rows_total 10",
        "fieldpulse_cloud_archive_files_total 2",
        "fieldpulse_cloud_archive_bytes_total 300",
        "fieldpulse_cloud_archive_lag 4",
        "fieldpulse_cloud_archive_write_failures_total 1",
        "fieldpulse_cloud_archive_failing 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
}

#[cfg(feature = "archive")]
mod with_parquet {
    use polars::prelude::*;

    use super::*;

    fn read(path: &Path) -> DataFrame {
        ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap()
    }

    /// Every (asset, ts, tag, value) in the archive, sorted.
    fn archived(dir: &Path) -> Vec<(String, i64, String, u64)> {
        let mut out = Vec::new();
        for part in layout::part_files(dir).unwrap() {
            let df = read(&part.path);
            let ts = df.column("ts").unwrap().cast(&DataType::Int64).unwrap();
            let ts = ts.i64().unwrap();
            let asset = df.column("asset").unwrap().str().unwrap().clone();
            let tag = df.column("tag").unwrap().str().unwrap().clone();
            let value = df.column("value").unwrap().f64().unwrap().clone();
            for i in 0..df.height() {
                out.push((
                    asset.get(i).unwrap().to_string(),
                    ts.get(i).unwrap(),
                    tag.get(i).unwrap().to_string(),
                    value.get(i).unwrap().to_bits(),
                ));
            }
        }
        out.sort();
        out
    }

    fn expected(batches: &[Batch]) -> Vec<(String, i64, String, u64)> {
        let mut out: Vec<_> = batches
            .iter()
            .flat_map(|b| b.series.iter())
            .flat_map(|s| {
                s.points()
                    .map(|(ts, v)| (s.asset_id.clone(), ts, s.sensor.clone(), v.to_bits()))
            })
            .collect();
        out.sort();
        out
    }

    fn fleet() -> Vec<Batch> {
        (0..6)
            .map(|i| {
                batch(
                    i + 1,
                    &["P-2", "P-1"],
                    &["temp", "vib"],
                    T0 - 30 * MIN + i as i64 * 10 * MIN,
                    10,
                    MIN,
                )
            })
            .collect()
    }

    #[test]
    fn a_flush_writes_one_sorted_file_per_day_with_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let batches = fleet();
        let (mut w, recovery) = open(dir.path(), MemSource::new(batches.clone()));
        assert_eq!(recovery, Recovery::default());
        assert_eq!(w.fill(100, Duration::ZERO).unwrap(), 6);
        let report = w.flush().unwrap().unwrap();
        assert_eq!((report.first, report.last, report.next), (0, 5, 6));
        assert_eq!(report.files, 2);
        assert_eq!(report.rows, 240);
        assert_eq!(w.committed(), 6);
        assert_eq!(
            names(dir.path()),
            [
                "day=2025-12-31/part-0-5.parquet",
                "day=2026-01-01/part-0-5.parquet"
            ]
        );
        assert!(!dir.path().join(layout::PENDING_FILE).exists());
        let df = read(&dir.path().join("day=2026-01-01/part-0-5.parquet"));
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["ts", "asset", "tag", "value", "gateway"]);
        assert_eq!(
            df.column("ts").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        );
        assert_eq!(df.column("asset").unwrap().dtype(), &DataType::String);
        assert_eq!(df.column("value").unwrap().dtype(), &DataType::Float64);
        assert_eq!(
            df.column("gateway").unwrap().str().unwrap().get(0),
            Some("gw-1")
        );
        assert_eq!(archived(dir.path()), expected(&batches));
    }

    #[test]
    fn a_crash_between_rename_and_commit_leaves_no_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let batches = fleet();
        let (mut w, _) = open(dir.path(), MemSource::new(batches.clone()));
        w.fill(100, Duration::ZERO).unwrap();
        // Files of offsets 0..=5 renamed into place, the commit never happens.
        let report = w.write_files().unwrap().unwrap();
        assert_eq!(report.files, 2);
        drop(w);
        // The restart reads a shorter range first (another flush boundary).
        let (mut w, recovery) = open(dir.path(), MemSource::new(batches.clone()));
        assert_eq!(recovery.uncommitted_files_deleted, 2);
        assert_eq!(recovery.part_files, 0);
        w.fill(2, Duration::ZERO).unwrap();
        w.flush().unwrap();
        w.fill(100, Duration::ZERO).unwrap();
        w.flush().unwrap();
        assert_eq!(w.committed(), 6);
        assert_eq!(
            names(dir.path()),
            [
                "day=2025-12-31/part-0-1.parquet",
                "day=2025-12-31/part-2-5.parquet",
                "day=2026-01-01/part-2-5.parquet",
            ]
        );
        assert_eq!(archived(dir.path()), expected(&batches));
    }

    #[test]
    fn a_rewrite_of_the_same_range_replaces_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let batches = fleet();
        let (mut w, _) = open(dir.path(), MemSource::new(batches.clone()));
        w.fill(100, Duration::ZERO).unwrap();
        w.write_files().unwrap();
        // A retry after a failed commit writes the same names again.
        w.flush().unwrap();
        assert_eq!(names(dir.path()).len(), 2);
        assert_eq!(archived(dir.path()), expected(&batches));
        // A pending file left by a committed flush is only removed.
        layout::write_pending(
            dir.path(),
            &layout::Pending {
                version: 1,
                first: 0,
                last: 5,
                next: 6,
                files: names(dir.path()),
            },
        )
        .unwrap();
        let mut source = MemSource::new(batches.clone());
        source.committed = 6;
        let (_, recovery) = open(dir.path(), source);
        assert_eq!(recovery.uncommitted_files_deleted, 0);
        assert_eq!(recovery.part_files, 2);
        assert!(!dir.path().join(layout::PENDING_FILE).exists());
        assert_eq!(archived(dir.path()), expected(&batches));
    }

    #[test]
    fn a_new_consumer_resumes_after_archived_records_and_refuses_a_replaced_log() {
        let dir = tempfile::tempdir().unwrap();
        let batches = fleet();
        let (mut w, _) = open(dir.path(), MemSource::new(batches.clone()));
        w.fill(4, Duration::ZERO).unwrap();
        w.flush().unwrap();
        assert_eq!(w.committed(), 4);
        drop(w);
        // Disabled and enabled again: the consumer starts over at 0.
        let (mut w, recovery) = open(dir.path(), MemSource::new(batches.clone()));
        assert_eq!(recovery.max_last_offset, Some(3));
        assert_eq!(w.committed(), 4);
        w.fill(100, Duration::ZERO).unwrap();
        w.flush().unwrap();
        assert_eq!(archived(dir.path()), expected(&batches));
        // A log with fewer records than the archive has seen: refused.
        let err = ArchiveWriter::open(
            settings(dir.path()),
            MemSource::new(batches[..3].to_vec()),
            0,
            Arc::new(ArchiveMetrics::default()),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::AheadOfLog {
                    archived_last: 5,
                    log_end: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_failed_write_keeps_the_buffer_and_the_offset_until_it_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let batches = fleet();
        let metrics = Arc::new(ArchiveMetrics::default());
        let (mut w, _) = ArchiveWriter::open(
            settings(&root),
            MemSource::new(batches.clone()),
            0,
            Arc::clone(&metrics),
        )
        .unwrap();
        w.fill(100, Duration::ZERO).unwrap();
        // A file where a day directory must go: the write fails (also as
        // root, whom a read-only mode would not stop).
        let blocker = root.join("day=2026-01-01");
        std::fs::write(&blocker, b"in the way").unwrap();
        let res = w.flush();
        assert!(matches!(res, Err(ArchiveError::Io { .. })), "{res:?}");
        assert_eq!(w.committed(), 0);
        assert_eq!(w.buffer().n_rows(), 240);
        let stats = metrics.stats();
        assert_eq!((stats.write_failures, stats.failing), (1, true));
        // The other day's file was written: the pending file names it.
        assert!(root.join(layout::PENDING_FILE).exists());
        std::fs::remove_file(&blocker).unwrap();
        w.flush().unwrap();
        assert_eq!(w.committed(), 6);
        let stats = metrics.stats();
        assert_eq!((stats.rows, stats.files, stats.failing), (240, 2, false));
        assert_eq!(archived(&root), expected(&batches));
    }
}

#[test]
fn the_packed_sort_orders_like_the_tuple_sort_and_keeps_ties_in_order() {
    use super::buffer::{sort_rows, Row};
    // Pseudo-random rows over three days, few names, many ties.
    let rank: Vec<u32> = vec![3, 0, 2, 1, 4];
    let rows: Vec<Row> = (0..5_000u64)
        .map(|i| {
            let n = crate::synth::noise(i);
            let m = crate::synth::noise(i + 1_000_000);
            Row {
                ts_ms: T0 - layout::DAY_MS
                    + ((n + 1.0) * 1.5 * layout::DAY_MS as f64) as i64 / 1000 * 1000,
                value: i as f64,
                asset: ((m + 1.0) * 2.5) as u32 % 5,
                tag: (i % 5) as u32,
                gateway: 0,
            }
        })
        .collect();
    let mut expected = rows.clone();
    expected.sort_by_key(|r| {
        (
            layout::day_of(r.ts_ms),
            rank[r.asset as usize],
            r.ts_ms,
            rank[r.tag as usize],
        )
    });
    let mut packed = rows;
    sort_rows(&mut packed, &rank);
    // Values are positions: equal keys must keep their order too.
    assert_eq!(packed, expected);
    // Days far apart take the comparison sort, with the same result.
    let mut far = vec![expected[10], expected[0]];
    far[0].ts_ms += 3_000 * 365 * layout::DAY_MS;
    let mut want = far.clone();
    want.sort_by_key(|r| (layout::day_of(r.ts_ms), rank[r.asset as usize], r.ts_ms));
    sort_rows(&mut far, &rank);
    assert_eq!(far, want);
}
