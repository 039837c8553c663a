//! Criterion bench of the failure model's per-reading cost in the cloud's
//! scoring loop: `FailureScorer::score` (streaming features + history
//! features + every calibrated classifier + the RUL regressor) on a trained
//! artifact.
//!
//! Setup (outside the timed region): a seeded simulated fleet of 24 assets ×
//! 120 days at 2-hour readings, a model trained on it with the default
//! settings (13 boosters of 120 trees), and a scorer warmed on the first
//! 100 days. The last 20 days (in arrival order) are timed; each sample
//! starts from a clone of the warmed history. Throughput is in readings.
//!
//! `explain_row` times what the cloud adds when it builds a Case from an
//! evaluation: one classifier's exact TreeSHAP contributions for one row plus
//! the top-4 phrases (`Classifier::explain`), on rows of the timed days;
//! `tree_shap_only` the contributions alone (`Gbdt::contributions`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fieldpulse_models::failure::dataset::Telemetry;
use fieldpulse_models::failure::train::{train, TrainConfig};
use fieldpulse_models::failure::{FailureScorer, FleetHistory};
use fieldpulse_simulator::{product::PRODUCTS, telemetry, Fleet, FleetConfig};

const ASSETS: usize = 24;
const DAYS: u64 = 120;
const TIMED_DAYS: u64 = 20;

fn bench_failure_scoring(c: &mut Criterion) {
    let cfg = FleetConfig {
        seed: 5,
        n_assets: ASSETS,
        duration: Duration::from_secs(DAYS * 86_400),
        interval: Duration::from_secs(2 * 3600),
        wear_speedup: 2.0,
        ..FleetConfig::default()
    };
    let start_ms = cfg.start_ms;
    let mut fleet = Fleet::new(cfg).expect("fleet");
    let mut csv = Vec::new();
    telemetry::write_header(&mut csv).expect("header");
    while let Some(reading) = fleet.next_reading() {
        let name = fleet.assets()[reading.asset_idx].name.clone();
        telemetry::write_row(&mut csv, &name, &reading).expect("row");
    }
    let fixture = fleet.history().to_fixture_json(&PRODUCTS).to_string();
    let data = Telemetry::read_csv(&csv[..]).expect("telemetry");
    let history = FleetHistory::from_json(&fixture).expect("history");
    let outcome =
        train(&data, &history, &TrainConfig::default(), &mut |_, _, _| {}).expect("train");
    let model = std::sync::Arc::new(outcome.model);
    let n = data.sensors.len();
    let cut = start_ms + ((DAYS - TIMED_DAYS) * 86_400_000) as i64;
    let split = data
        .ts_ms
        .iter()
        .position(|&t| t >= cut)
        .unwrap_or(data.n_rows());
    let rows = data.n_rows() - split;
    let score_range = |scorer: &mut FailureScorer, from: usize, to: usize| {
        let mut acc = 0.0;
        for i in from..to {
            let asset = &data.assets[data.asset_idx[i] as usize];
            let p = scorer
                .score(asset, data.ts_ms[i], &data.values[i * n..(i + 1) * n])
                .expect("score");
            acc += p.rul_days;
        }
        acc
    };
    let mut g = c.benchmark_group("failure_scoring");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    let id = format!("{ASSETS}_assets_x_{}_classifiers", model.classifiers.len());
    g.bench_function(BenchmarkId::new("score_reading", &id), |b| {
        b.iter_batched(
            || {
                let mut scorer =
                    FailureScorer::new(model.clone(), history.clone()).expect("scorer");
                score_range(&mut scorer, 0, split);
                scorer
            },
            |mut scorer| black_box(score_range(&mut scorer, split, data.n_rows())),
            criterion::BatchSize::LargeInput,
        );
    });
    g.finish();

    // Rows to explain: the full feature rows of the timed days.
    let mut scorer = FailureScorer::new(model.clone(), history.clone()).expect("scorer");
    score_range(&mut scorer, 0, split);
    let mut explained_rows = Vec::new();
    for i in split..data.n_rows() {
        let asset = &data.assets[data.asset_idx[i] as usize];
        scorer
            .score(asset, data.ts_ms[i], &data.values[i * n..(i + 1) * n])
            .expect("score");
        if i % 16 == 0 {
            explained_rows.push(scorer.last_row().to_vec());
        }
    }
    let classifier = &model.classifiers[0];
    let mut g = c.benchmark_group("failure_explain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(explained_rows.len() as u64));
    let id = format!(
        "{}_trees_x_{}_rows",
        classifier.booster.trees.len(),
        explained_rows.len()
    );
    g.bench_function(BenchmarkId::new("explain_row", &id), |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for row in &explained_rows {
                let e = classifier
                    .explain(&model.schema, row, 4)
                    .expect("explainable");
                acc += e.top.first().map_or(0.0, |c| c.log_odds);
            }
            black_box(acc)
        });
    });
    g.bench_function(BenchmarkId::new("tree_shap_only", &id), |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for row in &explained_rows {
                let c = classifier.booster.contributions(row).expect("explainable");
                acc += c.base;
            }
            black_box(acc)
        });
    });
    g.finish();
}

criterion_group!(benches, bench_failure_scoring);
criterion_main!(benches);
