//! `fieldpulse bench scoring`: the cloud's scoring loop (features + every
//! detector + calibration) on a wide CSV or a generated fleet, single-threaded
//! and sharded by asset over N threads. Parsing is timed separately; the
//! timed region is scoring only, inputs already in columns with asset names
//! resolved to indexes (as the cloud holds them after ingest).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use fieldpulse_models::anomaly::{
    self, evaluate, generate, AnomalyKind, DetectorValidParams, FleetScorer, Seasonality,
    SynthParams,
};
use fieldpulse_models::wide_csv::WideTable;
use serde::Serialize;

use crate::anomaly_runs::default_params;
use crate::bench_edge::proc_status_bytes;
use crate::cpu_info;
use crate::wide_csv_args::WideCsvArgs;

/// Arguments of `fieldpulse bench scoring`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fieldpulse bench scoring --json\n  fieldpulse bench scoring --csv /tmp/fleet.csv --asset-col asset --time-col ts --threads 2 --json"
)]
pub struct ScoringBenchArgs {
    /// Wide CSV (`asset, ts, sensor1..sensorN`); default: a generated fleet.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[command(flatten)]
    pub columns: WideCsvArgs,
    /// Per-row labels (a `label` column: 0 normal, 1 spike, 2 drift, 3 level
    /// shift, 4 correlation break); default `<csv>.labels.csv` if it exists.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Threads for the sharded run (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed runs per configuration; the median is reported (with the
    /// fastest and every run's rate for the single-threaded one).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Generated fleet: assets.
    #[arg(long, default_value_t = 1000)]
    pub assets: usize,
    /// Generated fleet: readings per asset.
    #[arg(long, default_value_t = 1000)]
    pub readings: usize,
    /// Generated fleet: sensors per reading.
    #[arg(long, default_value_t = 8)]
    pub sensors: usize,
    /// Detection delay budget (readings) for the quality report.
    #[arg(long, default_value_t = 150)]
    pub max_delay: usize,
    /// Seasonal profile the detectors learn (off, daily, weekly): off is the
    /// cloud's scoring (`[scoring] seasonal`), weekly is `detect`'s default.
    #[arg(long, default_value = "off", value_parser = crate::anomaly_runs::parse_seasonality)]
    pub seasonal: Seasonality,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct KindReport {
    kind: &'static str,
    events: usize,
    detected: usize,
    recall: f64,
    precision: f64,
    f1: f64,
    delay_median: f64,
    delay_p90: f64,
}

#[derive(Debug, Serialize)]
struct QualitySummary {
    threshold: f64,
    max_delay: usize,
    kinds: Vec<KindReport>,
    normal_rows: usize,
    /// Flagged normal rows per 1,000: false episodes' rows and the rows of
    /// detected anomalies' alarms that outlast their labels.
    false_alarms_per_1k: f64,
    /// Rows of false episodes.
    false_episode_rows: usize,
    episodes: usize,
    false_episodes: usize,
    /// False episodes (alarm onsets on normal data) per 1,000 normal rows.
    false_onsets_per_1k: f64,
}

#[derive(Debug, Serialize)]
struct ScoringReport {
    input: String,
    rows: usize,
    assets: usize,
    sensors: usize,
    threads: usize,
    repeat: usize,
    rows_per_s: f64,
    values_per_s: f64,
    rows_per_s_per_core: f64,
    ns_per_value: f64,
    ns_per_row: f64,
    /// The median run's rate, one thread.
    single_thread_rows_per_s: f64,
    /// The fastest run's rate: on a shared machine other tenants only ever
    /// slow a run down, so this is the steadier figure to compare builds by.
    single_thread_best_rows_per_s: f64,
    /// Every single-threaded run's rate, in run order (the spread).
    single_thread_runs_rows_per_s: Vec<f64>,
    single_thread_seconds: f64,
    threaded_seconds: f64,
    parse_s: f64,
    shard_s: f64,
    peak_rss_bytes: u64,
    state_bytes_per_asset: usize,
    /// The compiled copy of the row loop that ran (`avx512`, `avx2`, `baseline`).
    vector_code: &'static str,
    /// The seasonal profile learned (`--seasonal`).
    seasonal: &'static str,
    /// The CPU the runs ran on (model name, family and model numbers).
    cpu: String,
    rejected_rows: u64,
    missing_values: u64,
    anomalies: usize,
    quality: Option<QualitySummary>,
    /// Generated input only: one fleet per kind (that kind alone on 10 % of
    /// assets), so each kind's precision is exact rather than conservative.
    quality_by_kind: Vec<KindReport>,
}

/// Columnar input of the timed loop.
struct Columns {
    n_sensors: usize,
    sensor_names: Vec<String>,
    n_assets: usize,
    asset_idx: Vec<u32>,
    ts_ms: Vec<i64>,
    values: Vec<f64>,
}

/// Runs `fieldpulse bench scoring`.
pub fn run(args: ScoringBenchArgs) -> anyhow::Result<()> {
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let params = default_params(args.seasonal)?;
    let t0 = Instant::now();
    let (cols, labels, input, rejected_rows, missing_values) = match &args.csv {
        Some(path) => load_csv(&args, path)?,
        None => {
            let f = generate(&SynthParams {
                assets: args.assets,
                readings: args.readings,
                sensors: args.sensors,
                ..SynthParams::default()
            });
            let name = format!(
                "generated {} assets x {} readings x {} sensors",
                args.assets, args.readings, args.sensors
            );
            let cols = Columns {
                n_sensors: f.sensor_names.len(),
                sensor_names: f.sensor_names,
                n_assets: f.asset_names.len(),
                asset_idx: f.asset_idx,
                ts_ms: f.ts_ms,
                values: f.values,
            };
            (cols, Some(f.labels), name, 0, 0)
        }
    };
    let parse_s = t0.elapsed().as_secs_f64();
    let rows = cols.ts_ms.len();
    if rows == 0 {
        bail!("no rows to score");
    }
    eprintln!(
        "bench scoring: {input}: {rows} rows, {} assets, {} sensors (loaded in {parse_s:.2}s)",
        cols.n_assets, cols.n_sensors
    );

    // Single-threaded. The outputs start as "not scored" (NaN, no top
    // sensor): written, so no run pays for faulting their pages in.
    let mut scores = vec![f64::NAN; rows];
    let mut top = vec![u16::MAX; rows];
    let mut single = Vec::new();
    let mut state_bytes = 0;
    let mut vector_code = "";
    for _ in 0..args.repeat {
        let start = Instant::now();
        let mut scorer =
            FleetScorer::new(params.clone(), cols.sensor_names.clone(), cols.n_assets)?;
        scorer.score_batch(
            &cols.asset_idx,
            &cols.ts_ms,
            &cols.values,
            &mut scores,
            &mut top,
        )?;
        single.push(start.elapsed().as_secs_f64());
        state_bytes = scorer.state_bytes_per_asset();
        vector_code = scorer.vector_code();
    }
    let single_runs: Vec<f64> = single.iter().map(|s| rows as f64 / s).collect();
    let best_s = single.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest_s = single.iter().copied().fold(0.0, f64::max);
    let single_s = median(&mut single);
    let cpu = cpu_info::describe();
    eprintln!(
        "bench scoring: 1 thread: {:.2} M rows/s, median of {} (fastest {:.2}, slowest {:.2}); \
         {vector_code} code on {cpu}; seasonal profile {}",
        rows as f64 / single_s / 1e6,
        args.repeat,
        rows as f64 / best_s / 1e6,
        rows as f64 / slowest_s / 1e6,
        args.seasonal,
    );

    // Sharded by asset.
    let t1 = Instant::now();
    let mut shards = shard(&cols, threads);
    let shard_s = t1.elapsed().as_secs_f64();
    let mut multi = Vec::new();
    for _ in 0..args.repeat {
        multi.push(run_sharded(&params, &cols, &mut shards)?);
    }
    let multi_s = median(&mut multi);
    eprintln!(
        "bench scoring: {threads} threads: {:.2} M rows/s",
        rows as f64 / multi_s / 1e6
    );

    let threshold = params.threshold();
    let alarms: Vec<bool> = scores.iter().map(|s| *s >= threshold).collect();
    let quality = labels.map(|labels| {
        let q = evaluate(&cols.asset_idx, &labels, &alarms, args.max_delay);
        QualitySummary {
            threshold,
            max_delay: args.max_delay,
            kinds: q
                .kinds
                .iter()
                .map(|k| KindReport {
                    kind: k.kind.name(),
                    events: k.events,
                    detected: k.detected,
                    recall: k.recall,
                    precision: k.precision,
                    f1: k.f1,
                    delay_median: k.delay_median,
                    delay_p90: k.delay_p90,
                })
                .collect(),
            normal_rows: q.normal_rows,
            false_alarms_per_1k: q.false_alarms_per_1k,
            false_episode_rows: q.false_episode_rows,
            episodes: q.episodes,
            false_episodes: q.false_episodes,
            false_onsets_per_1k: q.false_onsets_per_1k,
        }
    });
    let quality_by_kind = if args.csv.is_none() {
        quality_by_kind(&params, &args)?
    } else {
        Vec::new()
    };
    let values = (rows * cols.n_sensors) as f64;
    let report = ScoringReport {
        input,
        rows,
        assets: cols.n_assets,
        sensors: cols.n_sensors,
        threads,
        repeat: args.repeat,
        rows_per_s: rows as f64 / multi_s,
        values_per_s: values / multi_s,
        rows_per_s_per_core: rows as f64 / single_s,
        ns_per_value: single_s * 1e9 / values,
        ns_per_row: single_s * 1e9 / rows as f64,
        single_thread_rows_per_s: rows as f64 / single_s,
        single_thread_best_rows_per_s: rows as f64 / best_s,
        single_thread_runs_rows_per_s: single_runs,
        single_thread_seconds: single_s,
        threaded_seconds: multi_s,
        parse_s,
        shard_s,
        peak_rss_bytes: peak_rss_bytes(),
        state_bytes_per_asset: state_bytes,
        vector_code,
        seasonal: args.seasonal.name(),
        cpu,
        rejected_rows,
        missing_values,
        anomalies: alarms.iter().filter(|a| **a).count(),
        quality,
        quality_by_kind,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if let Some(q) = &report.quality {
            eprintln!(
                "bench scoring: {:.3} false alarm onsets per 1,000 normal rows (nominal {:.3}); \
                 {:.3} flagged normal rows per 1,000, {} of them in {} false episodes, \
                 the rest alarms of labelled anomalies outlasting their labels",
                q.false_onsets_per_1k,
                1_000.0 * (1.0 - q.threshold),
                q.false_alarms_per_1k,
                q.false_episode_rows,
                q.false_episodes,
            );
        }
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Scores one generated fleet per anomaly kind (200 assets × the requested
/// readings, the kind on 10 % of assets) and reports that kind's quality.
fn quality_by_kind(
    params: &DetectorValidParams,
    args: &ScoringBenchArgs,
) -> anyhow::Result<Vec<KindReport>> {
    let base = SynthParams {
        assets: 200,
        readings: args.readings,
        sensors: args.sensors,
        seed: 7,
        ..SynthParams::default()
    };
    Ok(anomaly::quality_by_kind(params, &base, args.max_delay)?
        .into_iter()
        .map(|(k, _)| KindReport {
            kind: k.kind.name(),
            events: k.events,
            detected: k.detected,
            recall: k.recall,
            precision: k.precision,
            f1: k.f1,
            delay_median: k.delay_median,
            delay_p90: k.delay_p90,
        })
        .collect())
}

type Loaded = (Columns, Option<Vec<u8>>, String, u64, u64);

fn load_csv(args: &ScoringBenchArgs, path: &PathBuf) -> anyhow::Result<Loaded> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let opts = args.columns.options();
    let table = WideTable::read(BufReader::with_capacity(1 << 20, file), &opts)
        .with_context(|| format!("reading {}", path.display()))?;
    let label_path = args.labels.clone().or_else(|| {
        let p = PathBuf::from(format!("{}.labels.csv", path.display()));
        p.exists().then_some(p)
    });
    let labels = match label_path {
        Some(p) => {
            let l = read_labels(&p)?;
            if l.len() == table.n_rows() && table.counts.rejected_rows() == 0 {
                Some(l)
            } else {
                eprintln!(
                    "bench scoring: {}: {} labels for {} rows; skipping quality",
                    p.display(),
                    l.len(),
                    table.n_rows()
                );
                None
            }
        }
        None => None,
    };
    let cols = Columns {
        n_sensors: table.layout.sensor_cols.len(),
        sensor_names: table.layout.sensor_names(),
        n_assets: table.asset_names.len(),
        asset_idx: table.asset_idx,
        ts_ms: table.ts_ms,
        values: table.values,
    };
    Ok((
        cols,
        labels,
        path.display().to_string(),
        table.counts.rejected_rows(),
        table.counts.missing_values,
    ))
}

fn read_labels(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if i == 0 && line.trim() == "label" {
            continue;
        }
        let v: u8 = line
            .trim()
            .parse()
            .with_context(|| format!("{}: line {}: not a label", path.display(), i + 1))?;
        if AnomalyKind::from_label(v).is_none() && v != 0 {
            bail!("{}: line {}: unknown label {v}", path.display(), i + 1);
        }
        out.push(v);
    }
    Ok(out)
}

/// One thread's rows: local asset indexes (global / threads), in arrival
/// order, and its output buffers (allocated and touched once, outside the
/// timed runs, as the single-threaded runs' are).
struct Shard {
    n_assets: usize,
    asset_idx: Vec<u32>,
    ts_ms: Vec<i64>,
    values: Vec<f64>,
    scores: Vec<f64>,
    top: Vec<u16>,
}

fn shard(cols: &Columns, threads: usize) -> Vec<Shard> {
    let n = cols.n_sensors;
    let mut shards: Vec<Shard> = (0..threads)
        .map(|t| Shard {
            n_assets: (cols.n_assets + threads - 1 - t) / threads,
            asset_idx: Vec::new(),
            ts_ms: Vec::new(),
            values: Vec::new(),
            scores: Vec::new(),
            top: Vec::new(),
        })
        .collect();
    for (i, &a) in cols.asset_idx.iter().enumerate() {
        let s = &mut shards[a as usize % threads];
        s.asset_idx.push(a / threads as u32);
        s.ts_ms.push(cols.ts_ms[i]);
        s.values.extend_from_slice(&cols.values[i * n..(i + 1) * n]);
    }
    for s in &mut shards {
        // Written, not just allocated: a zeroed allocation's pages are
        // faulted in by their first write, which would be timed.
        s.scores = vec![f64::NAN; s.ts_ms.len()];
        s.top = vec![u16::MAX; s.ts_ms.len()];
    }
    shards
}

fn run_sharded(
    params: &DetectorValidParams,
    cols: &Columns,
    shards: &mut [Shard],
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter_mut()
            .map(|s| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut scorer =
                        FleetScorer::new(params.clone(), cols.sensor_names.clone(), s.n_assets)?;
                    scorer.score_batch(
                        &s.asset_idx,
                        &s.ts_ms,
                        &s.values,
                        &mut s.scores,
                        &mut s.top,
                    )?;
                    std::hint::black_box(&s.scores);
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a scoring thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Peak resident set size (VmHWM) of this process, 0 if unavailable.
fn peak_rss_bytes() -> u64 {
    proc_status_bytes(std::process::id(), "VmHWM:").unwrap_or(0)
}
