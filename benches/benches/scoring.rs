//! Criterion benches of the scoring loop's inner update: the feature kernel
//! alone, the full scorer (features + every detector + calibration) row by
//! row and as one batch, and a bare EWMA mean/variance/z update as the floor
//! to compare against.
//!
//! Input: a seeded synthetic fleet of 1,000 assets × 400 readings × 8
//! sensors. State is warmed on the first 300 readings outside the timed
//! region (each sample starts from a clone of it), and the last 100 readings
//! per asset — 100,000 rows in arrival order — are timed, so the numbers are
//! the steady state the cloud runs in. Throughput is in rows.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use fieldpulse_features::{FeatureSpec, FleetFeatures, RowScratch};
use fieldpulse_models::anomaly::{generate, DetectorParams, FleetScorer, ParamGuard, SynthParams};

const ASSETS: usize = 1000;
const WARM: usize = 300;
const TIMED: usize = 100;

fn bench_scoring(c: &mut Criterion) {
    let f = generate(&SynthParams {
        assets: ASSETS,
        readings: WARM + TIMED,
        ..SynthParams::default()
    });
    let n = f.sensor_names.len();
    let split = WARM * ASSETS; // rows are time-major: the first WARM readings of every asset
    let rows = f.n_rows() - split;
    let row = |i: usize| {
        (
            f.asset_idx[i] as usize,
            f.ts_ms[i],
            &f.values[i * n..(i + 1) * n],
        )
    };
    let id = format!("{ASSETS}_assets_x_{n}_sensors");
    let mut g = c.benchmark_group("scoring");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));

    g.bench_function(BenchmarkId::new("ewma_floor", &id), |b| {
        // m += a d; v = (1 - a)(v + a d^2); z = |d| / sqrt(v): the numpy peer's recurrence.
        let mut mean = vec![0.0f64; ASSETS * n];
        let mut var = vec![1.0f64; ASSETS * n];
        let a = 0.05;
        b.iter(|| {
            let mut acc = 0.0;
            for i in split..f.n_rows() {
                let (asset, _, x) = row(i);
                let base = asset * n;
                let (m, v) = (&mut mean[base..base + n], &mut var[base..base + n]);
                let mut zmax = 0.0f64;
                for s in 0..n {
                    let d = x[s] - m[s];
                    zmax = zmax.max(d.abs() / v[s].sqrt());
                    m[s] += a * d;
                    v[s] = (1.0 - a) * (v[s] + a * d * d);
                }
                acc += zmax;
            }
            black_box(acc)
        })
    });

    let spec = FeatureSpec::new(Default::default(), f.sensor_names.clone()).expect("valid sensors");
    let mut warm_features = FleetFeatures::new(spec.clone(), ASSETS);
    let mut scratch = RowScratch::new(&spec);
    for i in 0..split {
        let (asset, ts, x) = row(i);
        warm_features.update(asset, ts, x, &mut scratch);
    }
    g.bench_function(BenchmarkId::new("features", &id), |b| {
        b.iter_batched_ref(
            || warm_features.clone(),
            |fleet| {
                for i in split..f.n_rows() {
                    let (asset, ts, x) = row(i);
                    fleet.update(asset, ts, x, &mut scratch);
                }
            },
            BatchSize::LargeInput,
        )
    });

    let params = DetectorParams::default()
        .check()
        .expect("default params are valid");
    let mut warm_scorer =
        FleetScorer::new(params, f.sensor_names.clone(), ASSETS).expect("valid sensors");
    for i in 0..split {
        let (asset, ts, x) = row(i);
        warm_scorer.score_row(asset, ts, x);
    }
    g.bench_function(BenchmarkId::new("all_detectors", &id), |b| {
        b.iter_batched_ref(
            || warm_scorer.clone(),
            |scorer| {
                let mut acc = 0.0;
                for i in split..f.n_rows() {
                    let (asset, ts, x) = row(i);
                    acc += scorer.score_row(asset, ts, x).score;
                }
                black_box(acc)
            },
            BatchSize::LargeInput,
        )
    });
    // The same rows through `score_batch`, the path the cloud takes for a
    // received batch (the calibration's exp runs vectorised per block).
    let batch_assets: Vec<u32> = f.asset_idx[split..].to_vec();
    let batch_ts: Vec<i64> = f.ts_ms[split..].to_vec();
    let batch_values: Vec<f64> = f.values[split * n..].to_vec();
    let (mut scores, mut top) = (vec![0.0; rows], vec![0u16; rows]);
    g.bench_function(BenchmarkId::new("all_detectors_batch", &id), |b| {
        b.iter_batched_ref(
            || warm_scorer.clone(),
            |scorer| {
                scorer
                    .score_batch(
                        &batch_assets,
                        &batch_ts,
                        &batch_values,
                        &mut scores,
                        &mut top,
                    )
                    .expect("shapes match");
                black_box(scores[rows - 1])
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_scoring);
criterion_main!(benches);
