//! Detection quality per anomaly kind on generated fleets, for tuning the
//! detector defaults: each kind injected alone on 10 % of `assets` assets,
//! plus a clean fleet for the false-alarm rate.
//!
//! ```text
//! cargo run --release -p fieldpulse-models --example quality_probe -- [assets] [readings] [seed]
//! ```

use fieldpulse_models::anomaly::{
    evaluate, generate, AnomalyKind, DetectorParams, FleetScorer, ParamGuard, SynthFleet,
    SynthParams,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (assets, readings, seed) = (arg(200) as usize, arg(1000) as usize, arg(7));
    let threshold = DetectorParams::default()
        .check()
        .expect("defaults")
        .threshold();
    for kind in AnomalyKind::ALL {
        let f = generate(&SynthParams {
            assets,
            readings,
            seed: seed + kind as u64,
            ..SynthParams::only(kind, 0.1)
        });
        let alarms = alarms(&f, threshold);
        let q = evaluate(&f.asset_idx, &f.labels, &alarms, 150);
        let k = q.kinds.iter().find(|k| k.kind == kind).expect("kind");
        println!(
            "{:<18} events {:>3} recall {:.2} precision {:.2} delay p50 {:>5.1} p90 {:>5.1} | false alarms/1k {:.2}, false episodes {}",
            kind.name(),
            k.events,
            k.recall,
            k.precision,
            k.delay_median,
            k.delay_p90,
            q.false_alarms_per_1k,
            q.false_episodes
        );
    }
    let clean = generate(&SynthParams {
        assets,
        readings,
        seed,
        ..SynthParams::only(AnomalyKind::Spike, 0.0)
    });
    let a = alarms(&clean, threshold);
    println!(
        "clean fleet: {:.2} alarms per 1k rows",
        1000.0 * a.iter().filter(|x| **x).count() as f64 / a.len() as f64
    );
}

fn alarms(f: &SynthFleet, threshold: f64) -> Vec<bool> {
    let params = DetectorParams::default().check().expect("defaults");
    let mut s =
        FleetScorer::new(params, f.sensor_names.clone(), f.asset_names.len()).expect("sensors");
    let rows = f.n_rows();
    let (mut scores, mut top) = (vec![0.0; rows], vec![0u16; rows]);
    s.score_batch(&f.asset_idx, &f.ts_ms, &f.values, &mut scores, &mut top)
        .expect("shapes");
    scores.iter().map(|s| *s >= threshold).collect()
}
