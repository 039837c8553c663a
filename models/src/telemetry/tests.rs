//! The same simulated readings written as a wide CSV, wide Parquet, long
//! Parquet, long CSV and a day-partitioned archive (with a late part file
//! and an extra column) give the same feature rows and the same model;
//! partitions outside the window are never opened; bad rows are counted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldpulse_simulator::product::{N_SENSORS, PRODUCTS, SENSORS};
use fieldpulse_simulator::{Fleet, FleetConfig};
use polars::prelude::*;

use super::write::{write_archive_part, write_parquet, LongRows};
use super::*;
use crate::failure::dataset::{feature_rows, feature_rows_from, FeatureRows};
use crate::failure::labels::{format_ms, FleetHistory, DAY_MS};
use crate::failure::model::FeatureSchema;
use crate::failure::train::{train_from, train_with_rows, TrainConfig};
use crate::gbdt::GbdtParams;

/// Simulated readings: asset names, `(asset, ts, values)` in time order, the
/// Work Order fixture.
struct Readings {
    names: Vec<String>,
    rows: Vec<(usize, i64, [Option<f64>; N_SENSORS])>,
    fixture: String,
}

fn simulate(n_assets: usize, days: u64, seed: u64) -> Readings {
    let cfg = FleetConfig {
        seed,
        n_assets,
        duration: Duration::from_secs(days * 86_400),
        interval: Duration::from_secs(4 * 3600),
        wear_speedup: 1.5,
        ..FleetConfig::default()
    };
    let mut fleet = Fleet::new(cfg).expect("fleet");
    let names = fleet.assets().iter().map(|a| a.name.clone()).collect();
    let mut rows = Vec::new();
    while let Some(r) = fleet.next_reading() {
        rows.push((r.asset_idx, r.ts_ms, r.values));
    }
    let fixture = fleet.history().to_fixture_json(&PRODUCTS).to_string();
    Readings {
        names,
        rows,
        fixture,
    }
}

/// Sensor indexes in name order (the long layout's sensor order).
fn sorted_sensors() -> Vec<usize> {
    let mut idx: Vec<usize> = (0..N_SENSORS).collect();
    idx.sort_by_key(|&i| SENSORS[i]);
    idx
}

/// A wide CSV with the sensors in name order and exact (round-trip) values.
fn wide_csv(r: &Readings) -> String {
    let order = sorted_sensors();
    let mut out = String::from("asset,ts");
    for &i in &order {
        out.push(',');
        out.push_str(SENSORS[i]);
    }
    out.push('\n');
    for (a, ts, values) in &r.rows {
        out.push_str(&format!("{},{ts}", r.names[*a]));
        for &i in &order {
            match values[i] {
                Some(v) => out.push_str(&format!(",{v}")),
                None => out.push(','),
            }
        }
        out.push('\n');
    }
    out
}

/// Wide Parquet: `ts` as nanoseconds in a non-UTC zone, sensors in header
/// order reversed (columns are matched by name).
fn wide_frame(r: &Readings) -> DataFrame {
    let ts: Vec<i64> = r.rows.iter().map(|(_, t, _)| t * 1_000_000).collect();
    let ts = Int64Chunked::from_vec("timestamp".into(), ts).into_datetime(
        TimeUnit::Nanoseconds,
        // SAFETY: a valid IANA zone; the stored instants are UTC regardless.
        Some(unsafe { TimeZone::new_unchecked("Europe/Berlin") }),
    );
    let asset = StringChunked::from_iter_values(
        "asset".into(),
        r.rows.iter().map(|(a, _, _)| r.names[*a].as_str()),
    );
    let mut cols = vec![asset.into_column(), ts.into_column()];
    for &i in sorted_sensors().iter() {
        let v = Float64Chunked::from_iter_options(
            SENSORS[i].into(),
            r.rows.iter().map(|(_, _, v)| v[i]),
        );
        cols.push(v.into_column());
    }
    DataFrame::new(r.rows.len(), cols).expect("frame")
}

/// Long readings in (asset, tag, time) order: a historian's export.
fn long_rows(r: &Readings) -> LongRows {
    let mut out = LongRows {
        asset_names: r.names.clone(),
        tag_names: SENSORS.iter().map(|s| s.to_string()).collect(),
        ..LongRows::default()
    };
    let mut rows: Vec<(usize, usize, i64, Option<f64>)> = Vec::new();
    for (a, ts, values) in &r.rows {
        for (i, v) in values.iter().enumerate() {
            rows.push((*a, i, *ts, *v));
        }
    }
    rows.sort_by_key(|&(a, i, ts, _)| (a, i, ts));
    for (a, i, ts, v) in rows {
        out.push(ts, a as u32, i as u32, v);
    }
    out
}

fn write_csv(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write csv");
    path
}

/// The archive: one part per day in time order, plus a late part for each
/// day holding asset 0's readings with an extra `quality` column.
fn write_archive(r: &Readings, root: &Path) {
    let mut day_rows: std::collections::BTreeMap<i64, (LongRows, LongRows)> = Default::default();
    let empty = LongRows {
        asset_names: r.names.clone(),
        tag_names: SENSORS.iter().map(|s| s.to_string()).collect(),
        ..LongRows::default()
    };
    for (a, ts, values) in &r.rows {
        let day = ts.div_euclid(DAY_MS);
        let (main, late) = day_rows
            .entry(day)
            .or_insert_with(|| (empty.clone(), empty.clone()));
        for (i, v) in values.iter().enumerate() {
            // Missing sensors are absent rows (as the cloud writes them).
            if v.is_some() {
                let target = if *a == 0 { &mut *late } else { &mut *main };
                target.push(*ts, *a as u32, i as u32, *v);
            }
        }
    }
    for (main, late) in day_rows.values() {
        if !main.is_empty() {
            write_archive_part(root, "part-0", main).expect("part");
        }
        if !late.is_empty() {
            let mut frame = late.to_frame().expect("frame");
            let quality =
                StringChunked::from_iter_values("quality".into(), (0..late.len()).map(|_| "good"));
            frame.with_column(quality.into_column()).expect("column");
            let day = super::write::day_dir_name(late.ts_ms[0]);
            write_parquet(&root.join(day).join("part-10.parquet"), &mut frame).expect("late part");
        }
    }
}

fn schema_for(profile: &TelemetryProfile, history: &FleetHistory) -> FeatureSchema {
    let cfg = TrainConfig::default();
    FeatureSchema::new(
        profile.sensors.clone(),
        cfg.half_lives.clone(),
        cfg.trend_horizon,
        history.products(),
        history.modes(),
    )
    .expect("schema")
}

fn read_rows(
    path: &Path,
    opts: &TelemetryOptions,
    history: &FleetHistory,
) -> (TelemetryProfile, FeatureRows, ReadReport) {
    let mut input = TelemetryInput::open(path, opts).expect("open");
    let profile = input.profile(&mut |_, _, _| {}).expect("profile");
    let schema = schema_for(&profile, history);
    let rows = feature_rows_from(&mut input, &profile, &schema, history, 3, &mut |_, _, _| {})
        .expect("rows");
    (profile, rows, input.report().clone())
}

/// Rows as (asset name, time, feature bits), NaN-safe.
fn keyed(rows: &FeatureRows, assets: &[String]) -> Vec<(String, i64, Vec<u64>)> {
    (0..rows.len())
        .map(|i| {
            (
                assets[rows.asset_idx[i] as usize].clone(),
                rows.ts_ms[i],
                rows.row(i).iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

fn fast_config() -> TrainConfig {
    TrainConfig {
        booster: GbdtParams {
            n_trees: 20,
            learning_rate: 0.15,
            max_depth: 4,
            min_samples_leaf: 20,
            ..TrainConfig::default().booster
        },
        ..TrainConfig::default()
    }
}

#[test]
fn every_format_of_the_same_readings_gives_the_wide_csv_feature_rows_and_model() {
    let r = simulate(10, 200, 3);
    let history = FleetHistory::from_json(&r.fixture).expect("history");
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = write_csv(dir.path(), "wide.csv", &wide_csv(&r));
    let opts = TelemetryOptions::default();

    // The wide CSV: read in memory, exactly the old path.
    let (csv_profile, csv_rows, csv_report) = read_rows(&csv, &opts, &history);
    assert_eq!(csv_report.kind, "wide_csv");
    let telemetry = {
        let mut input = TelemetryInput::open(&csv, &opts).expect("open");
        input.profile(&mut |_, _, _| {}).expect("profile");
        input.as_wide_csv().expect("in memory").clone()
    };
    let direct =
        feature_rows(&telemetry, &schema_for(&csv_profile, &history), &history, 3).expect("rows");
    assert_eq!(
        keyed(&direct, &telemetry.assets),
        keyed(&csv_rows, &csv_profile.assets)
    );
    let want = keyed(&csv_rows, &csv_profile.assets);
    assert!(want.len() > 1000, "{} rows", want.len());

    let wide_pq = dir.path().join("wide.parquet");
    write_parquet(&wide_pq, &mut wide_frame(&r)).expect("wide parquet");

    let long_pq = dir.path().join("long.parquet");
    let mut long = long_rows(&r).to_frame().expect("frame");
    // Integer epoch ms instead of a Datetime, and small row groups in
    // (asset, tag, time) order: rows go back in time across row groups.
    let ts_ms = long
        .column("ts")
        .expect("ts")
        .cast(&DataType::Int64)
        .expect("cast");
    long.with_column(ts_ms).expect("ts column");
    let file = std::fs::File::create(&long_pq).expect("create");
    ParquetWriter::new(file)
        .with_row_group_size(Some(5_000))
        .finish(&mut long)
        .expect("long parquet");

    let long_csv = {
        let mut text = String::from("time;asset;tag;value\n");
        let lr = long_rows(&r);
        for i in 0..lr.len() {
            let v = lr.value[i].map_or(String::new(), |v| v.to_string());
            text.push_str(&format!(
                "{};{};{};{v}\n",
                format_ms(lr.ts_ms[i]),
                lr.asset_names[lr.asset[i] as usize],
                lr.tag_names[lr.tag[i] as usize]
            ));
        }
        write_csv(dir.path(), "long.csv", &text)
    };

    let archive = dir.path().join("archive");
    write_archive(&r, &archive);

    for (path, kind) in [
        (&wide_pq, "parquet"),
        (&long_pq, "parquet"),
        (&long_csv, "long_csv"),
        (&archive, "archive"),
    ] {
        let (profile, rows, report) = read_rows(path, &opts, &history);
        assert_eq!(report.kind, kind, "{}", path.display());
        assert_eq!(profile.sensors, csv_profile.sensors, "{}", path.display());
        assert_eq!(profile.assets, csv_profile.assets, "{}", path.display());
        assert_eq!(profile.n_rows, csv_profile.n_rows, "{}", path.display());
        assert_eq!(profile.last_reading_ms, csv_profile.last_reading_ms);
        assert_eq!(profile.intervals_s, csv_profile.intervals_s);
        assert_eq!(keyed(&rows, &profile.assets), want, "{}", path.display());
        assert_eq!(
            report.rejected_rows(),
            0,
            "{}: {:?}",
            path.display(),
            report.rejected
        );
    }
    let (_, _, long_report) = read_rows(&long_pq, &opts, &history);
    assert_eq!(
        long_report.chunking, "all",
        "rows out of time order: one chunk"
    );
    assert_eq!(long_report.warnings.len(), 1, "{:?}", long_report.warnings);
    let (_, _, archive_report) = read_rows(&archive, &opts, &history);
    assert_eq!(archive_report.chunking, "day");
    assert_eq!(archive_report.chunks, archive_report.partitions_read);

    // The same model from the CSV and from the archive.
    let cfg = fast_config();
    let (from_csv, _) =
        train_with_rows(&telemetry, &history, &cfg, &mut |_, _, _| {}).expect("train");
    let mut input = TelemetryInput::open(&archive, &opts).expect("open");
    let profile = input.profile(&mut |_, _, _| {}).expect("profile");
    let (from_archive, _) = train_from(
        &profile,
        &history,
        &cfg,
        &mut |schema, stride, progress| {
            feature_rows_from(&mut input, &profile, schema, &history, stride, progress)
        },
        &mut |_, _, _| {},
    )
    .expect("train");
    assert_eq!(
        serde_json::to_string(&from_csv.model).expect("json"),
        serde_json::to_string(&from_archive.model).expect("json")
    );
    assert_eq!(from_csv.split, from_archive.split);
    assert_eq!(from_csv.cadence, from_archive.cadence);
}

/// A small archive: `n_days` days, two assets, hourly, tags `a` and `b`.
fn small_archive(root: &Path, day0_ms: i64, n_days: i64) {
    for d in 0..n_days {
        let mut rows = LongRows {
            asset_names: vec!["p1".into(), "p2".into()],
            tag_names: vec!["a".into(), "b".into()],
            ..LongRows::default()
        };
        for h in 0..24 {
            let ts = day0_ms + d * DAY_MS + h * 3_600_000;
            for a in 0..2 {
                for t in 0..2 {
                    rows.push(ts, a, t, Some((d * 100 + h) as f64 + f64::from(t)));
                }
            }
        }
        write_archive_part(root, "part-0", &rows).expect("part");
    }
}

#[test]
fn a_time_window_never_opens_the_day_partitions_outside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let day0 = 1_767_225_600_000; // 2026-01-01
    small_archive(&root, day0, 5);
    let opts = TelemetryOptions {
        from_ms: Some(day0 + DAY_MS + 12 * 3_600_000),
        to_ms: Some(day0 + 3 * DAY_MS),
        ..TelemetryOptions::default()
    };
    let mut input = TelemetryInput::open(&root, &opts).expect("open");
    let profile = input.profile(&mut |_, _, _| {}).expect("profile");
    let report = input.report().clone();
    let opened: Vec<String> = report
        .opened
        .iter()
        .map(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .expect("day")
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(opened, vec!["day=2026-01-02", "day=2026-01-03"]);
    assert_eq!((report.partitions_read, report.partitions_skipped), (2, 3));
    assert_eq!(report.files_skipped, 3);
    // Day 2 from noon and all of day 3, per asset.
    assert_eq!(profile.n_rows, 2 * (12 + 24));
    assert_eq!(report.outside_window, 2 * 2 * 12);
    assert_eq!(
        profile.time_range(),
        Some((
            day0 + DAY_MS + 12 * 3_600_000,
            day0 + 3 * DAY_MS - 3_600_000
        ))
    );
}

#[test]
fn bad_rows_are_counted_by_reason_and_duplicates_keep_the_last_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Long CSV: a wrong field count, an unreadable time, no asset, no tag, a
    // duplicate reading (last wins), a non-numeric value (missing) and an
    // excluded tag.
    let text = "ts,asset,tag,value\n\
                2026-01-01T00:00:00Z,p1,a,1\n\
                2026-01-01T00:00:00Z,p1,b,2\n\
                2026-01-01T00:00:00Z,p1,a,3\n\
                2026-01-01T01:00:00Z,p1,a,oops\n\
                2026-01-01T01:00:00Z,p1,b,4\n\
                2026-01-01T01:00:00Z,p1,noise,9\n\
                2026-01-01T02:00:00Z,p1,a\n\
                yesterday,p1,a,5\n\
                2026-01-01T02:00:00Z,,a,6\n\
                2026-01-01T02:00:00Z,p1,,7\n";
    let path = write_csv(dir.path(), "long.csv", text);
    let opts = TelemetryOptions {
        exclude: vec!["noise".into()],
        ..TelemetryOptions::default()
    };
    let mut input = TelemetryInput::open(&path, &opts).expect("open");
    let profile = input.profile(&mut |_, _, _| {}).expect("profile");
    assert_eq!(profile.sensors, vec!["a", "b"]);
    assert_eq!(profile.n_rows, 2);
    let mut seen = Vec::new();
    input
        .scan(
            &profile,
            &profile.sensors,
            &mut |b| {
                for i in 0..b.len() {
                    seen.push((b.ts_ms[i], b.row(i).to_vec()));
                }
                Ok(())
            },
            &mut |_, _, _| {},
        )
        .expect("scan");
    assert_eq!(seen[0].1, vec![3.0, 2.0]);
    assert!(seen[1].1[0].is_nan() && seen[1].1[1] == 4.0);
    let report = input.report();
    let rejected: Vec<(&str, u64)> = report.rejected.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        rejected,
        vec![
            ("bad_time", 1),
            ("field_count", 1),
            ("no_asset", 1),
            ("no_tag", 1)
        ]
    );
    assert_eq!(
        (
            report.duplicate_readings,
            report.missing_values,
            report.excluded_tag_rows
        ),
        (1, 1, 1)
    );

    // Archive: a row on the wrong day, a null asset and a null time.
    let root = dir.path().join("archive");
    let day0 = 1_767_225_600_000;
    small_archive(&root, day0, 1);
    let ts = Int64Chunked::from_iter_options(
        "ts".into(),
        [Some(day0 + 2 * DAY_MS), Some(day0 + 5), None].into_iter(),
    )
    .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    let asset = StringChunked::from_iter_options(
        "asset".into(),
        [Some("p1"), None, Some("p1")].into_iter(),
    );
    let tag = StringChunked::from_iter_values("tag".into(), ["a", "a", "a"].into_iter());
    let value = Float64Chunked::from_vec("value".into(), vec![1.0, 2.0, 3.0]);
    let mut bad = DataFrame::new(
        3,
        vec![
            ts.into_column(),
            asset.into_column(),
            tag.into_column(),
            value.into_column(),
        ],
    )
    .expect("frame");
    write_parquet(
        &root.join("day=2026-01-01").join("part-1.parquet"),
        &mut bad,
    )
    .expect("bad part");
    let mut input = TelemetryInput::open(&root, &TelemetryOptions::default()).expect("open");
    let profile = input.profile(&mut |_, _, _| {}).expect("profile");
    assert_eq!(profile.n_rows, 48);
    let rejected: Vec<(&str, u64)> = input
        .report()
        .rejected
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    assert_eq!(
        rejected,
        vec![("bad_time", 1), ("no_asset", 1), ("wrong_day", 1)]
    );
}

#[test]
fn a_directory_without_parquet_files_and_a_long_file_without_a_value_column_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = TelemetryInput::open(dir.path(), &TelemetryOptions::default()).unwrap_err();
    assert!(matches!(err, TelemetryError::NoFiles { .. }), "{err}");
    let path = write_csv(
        dir.path(),
        "t.csv",
        "ts,asset,tag,reading\n2026-01-01,p1,a,1\n",
    );
    let opts = TelemetryOptions {
        layout: Some(Layout::Long),
        ..TelemetryOptions::default()
    };
    let err = TelemetryInput::open(&path, &opts).unwrap_err();
    assert!(err.to_string().contains("value column"), "{err}");
    let opts = TelemetryOptions {
        value_col: Some("reading".into()),
        ..TelemetryOptions::default()
    };
    let mut input = TelemetryInput::open(&path, &opts).expect("open");
    assert_eq!(input.profile(&mut |_, _, _| {}).expect("profile").n_rows, 1);
}

/// (asset, time, (feature name, bits) sorted by name).
type NamedRow = (String, i64, Vec<(String, u64)>);

#[test]
fn a_directory_of_per_asset_wide_files_gives_the_wide_csv_rows() {
    let r = simulate(4, 60, 5);
    let history = FleetHistory::from_json(&r.fixture).expect("history");
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = write_csv(dir.path(), "wide.csv", &wide_csv(&r));
    let opts = TelemetryOptions::default();
    let (csv_profile, csv_rows, _) = read_rows(&csv, &opts, &history);
    // One file per asset (each spans the whole time range): even assets with
    // `ts` as microseconds without a time zone, odd ones as ISO 8601 text.
    let pq_dir = dir.path().join("export");
    for (a, name) in r.names.iter().enumerate() {
        let rows: Vec<_> = r.rows.iter().filter(|(x, _, _)| *x == a).collect();
        let ts = if a % 2 == 0 {
            Int64Chunked::from_vec(
                "time".into(),
                rows.iter().map(|(_, t, _)| t * 1000).collect(),
            )
            .into_datetime(TimeUnit::Microseconds, None)
            .into_column()
        } else {
            StringChunked::from_iter_values(
                "time".into(),
                rows.iter().map(|(_, t, _)| format_ms(*t)),
            )
            .into_column()
        };
        let asset =
            StringChunked::from_iter_values("asset_id".into(), rows.iter().map(|_| name.as_str()));
        let mut cols = vec![ts, asset.into_column()];
        for (i, sensor) in SENSORS.iter().enumerate() {
            cols.push(
                Float64Chunked::from_iter_options(
                    (*sensor).into(),
                    rows.iter().map(|(_, _, v)| v[i]),
                )
                .into_column(),
            );
        }
        let mut frame = DataFrame::new(rows.len(), cols).expect("frame");
        write_parquet(&pq_dir.join(format!("{name}.parquet")), &mut frame).expect("write");
    }
    let (profile, rows, report) = read_rows(&pq_dir, &opts, &history);
    assert_eq!(report.kind, "parquet_dir");
    assert_eq!(report.files, 4);
    assert_eq!(
        report.chunking, "row_group",
        "per-asset files never go back in time"
    );
    // Wide Parquet keeps the file's column order (the simulator's), the CSV
    // here has them sorted: compare by name.
    let by_name = |p: &TelemetryProfile, rows: &FeatureRows| {
        let schema = schema_for(p, &history);
        let names = schema.names();
        let mut out: Vec<NamedRow> = (0..rows.len())
            .map(|i| {
                let mut f: Vec<(String, u64)> = names
                    .iter()
                    .cloned()
                    .zip(rows.row(i).iter().map(|v| v.to_bits()))
                    .collect();
                f.sort();
                (
                    p.assets[rows.asset_idx[i] as usize].clone(),
                    rows.ts_ms[i],
                    f,
                )
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    };
    assert_eq!(profile.n_rows, csv_profile.n_rows);
    assert_eq!(by_name(&profile, &rows), by_name(&csv_profile, &csv_rows));
    // Rows come out in time order across the files.
    assert!(rows.ts_ms.windows(2).all(|w| w[0] <= w[1]));
}
