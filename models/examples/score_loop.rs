//! The scoring loop alone, for profilers (`perf record`) and quick A/B runs:
//! a generated fleet (8 sensors), scored from a fresh scorer `repeat` times;
//! prints each run and the best.
//!
//! ```text
//! cargo run --release -p fieldpulse-models --example score_loop -- [readings] [repeat] [assets]
//! ```
//!
//! `NO_MV=1` disables the multivariate detector, `FEATURES_ONLY=1` times the
//! feature kernel alone (baseline ISA: no runtime dispatch there), `FIELDPULSE_SIMD=avx2|baseline` caps the vector width.
//! `SEASONAL=daily|weekly` adds the seasonal profile (`detect`'s default is weekly).
//! `HASH=1` prints an FNV-1a hash of the last run's scores (their bits) and
//! top sensors, to check that a change keeps the output bit-identical.
//! `SENSORS=n` sets the sensor count (default 8); `DIRTY=1` makes the data
//! exercise the rare paths: about 3 % of values missing, sensor 0 of every
//! third asset joining after 50 readings, and every 97th row a duplicate
//! timestamp.

use std::time::Instant;

use fieldpulse_features::{FeatureParams, FeatureSpec, FleetFeatures, RowScratch, Seasonality};
use fieldpulse_models::anomaly::{
    generate, DetectorParams, FleetScorer, ParamGuard, SynthFleet, SynthParams,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (readings, repeat, assets) = (arg(1000), arg(5), arg(1000));
    let sensors = std::env::var("SENSORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut f = generate(&SynthParams {
        assets,
        readings,
        sensors,
        ..SynthParams::default()
    });
    if std::env::var_os("DIRTY").is_some() {
        dirty(&mut f);
    }
    if std::env::var_os("FEATURES_ONLY").is_some() {
        features_only(&f, assets, repeat);
        return;
    }
    let n = f.sensor_names.len();
    let seasonality = std::env::var("SEASONAL")
        .ok()
        .map(|s| Seasonality::parse(&s).expect("SEASONAL: off, daily or weekly"))
        .unwrap_or_default();
    let params = DetectorParams::default()
        .mv_enabled(std::env::var_os("NO_MV").is_none())
        .features(FeatureParams::default().seasonality(seasonality))
        .expect("feature params")
        .check()
        .expect("default params");
    let base = FleetScorer::new(params, f.sensor_names.clone(), assets).expect("sensors");
    let rows = f.n_rows();
    let (mut scores, mut top) = (vec![0.0; rows], vec![0u16; rows]);
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let mut s = base.clone();
        let t = Instant::now();
        s.score_batch(&f.asset_idx, &f.ts_ms, &f.values, &mut scores, &mut top)
            .expect("shapes");
        let dt = t.elapsed().as_secs_f64();
        best = best.min(dt);
        let anomalies = scores.iter().filter(|s| **s >= 0.9999).count();
        println!(
            "{rows} rows x {n} sensors: {:.2} M rows/s ({:.1} ns/row), {anomalies} anomalies",
            rows as f64 / dt / 1e6,
            dt * 1e9 / rows as f64
        );
    }
    println!("best: {:.1} ns/row", best * 1e9 / rows as f64);
    if std::env::var_os("HASH").is_some() {
        println!("hash: {:016x}", output_hash(&scores, &top));
    }
}

/// Missing values, late sensors and duplicate rows, deterministically.
fn dirty(f: &mut SynthFleet) {
    let n = f.sensor_names.len();
    let mut seen = vec![0usize; f.asset_names.len()];
    for i in 0..f.n_rows() {
        let a = f.asset_idx[i] as usize;
        let row = &mut f.values[i * n..(i + 1) * n];
        for (s, v) in row.iter_mut().enumerate() {
            let h = (i * n + s).wrapping_mul(0x9E37_79B9) >> 7;
            if h.is_multiple_of(33) || (s == 0 && a.is_multiple_of(3) && seen[a] < 50) {
                *v = f64::NAN;
            }
        }
        seen[a] += 1;
        if i % 97 == 96 && seen[a] > 1 {
            f.ts_ms[i] -= 60_000;
        }
    }
}

/// FNV-1a over every score's bits and every top sensor, in row order.
fn output_hash(scores: &[f64], top: &[u16]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (s, t) in scores.iter().zip(top) {
        eat(&s.to_bits().to_le_bytes());
        eat(&t.to_le_bytes());
    }
    h
}

fn features_only(f: &SynthFleet, assets: usize, repeat: usize) {
    let spec = FeatureSpec::new(Default::default(), f.sensor_names.clone()).expect("spec");
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let mut fleet = FleetFeatures::new(spec.clone(), assets);
        let mut sc = RowScratch::new(&spec);
        let t = Instant::now();
        std::hint::black_box(feature_loop(f, &mut fleet, &mut sc));
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "features only, best: {:.1} ns/row",
        best * 1e9 / f.n_rows() as f64
    );
}

fn feature_loop(f: &SynthFleet, fleet: &mut FleetFeatures, sc: &mut RowScratch) -> f64 {
    let n = f.sensor_names.len();
    let mut acc = 0.0;
    for i in 0..f.n_rows() {
        let x = &f.values[i * n..(i + 1) * n];
        fleet.update(f.asset_idx[i] as usize, f.ts_ms[i], x, sc);
        acc += sc.resid_z()[0];
    }
    acc
}
