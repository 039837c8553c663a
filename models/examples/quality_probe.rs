//! Detection quality per anomaly kind on generated fleets, for tuning the
//! detector defaults: each kind injected alone on 10 % of `assets` assets,
//! plus a clean fleet for the false-alarm rate. `DIAG=1` instead lists each
//! correlation-break asset: which sensor flipped and how the raw score moved;
//! `CYCLE=1` lists the alarms on a clean daily cycle (2 sensors, 1-minute
//! sampling, 3 days) at threshold 0.999. `RELEARN=n` sets `relearn_after`, `MV_REFRESH=n`
//! `mv_refresh`.
//!
//! ```text
//! cargo run --release -p fieldpulse-models --example quality_probe -- [assets] [readings] [seed]
//! ```

use fieldpulse_models::anomaly::{
    evaluate, fleet_alarms, generate, quality_by_kind, AnomalyKind, DetectorParams, FleetScorer,
    ParamGuard, SynthParams,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (assets, readings, seed) = (arg(200) as usize, arg(1000) as usize, arg(7));
    if std::env::var_os("CYCLE").is_some() {
        cycle_alarms();
        return;
    }
    if std::env::var_os("DIAG").is_some() {
        diag(seed);
        return;
    }
    // Tuning knobs: RELEARN=n sets relearn_after (0 = off), MV_REFRESH=n mv_refresh.
    let mut params = DetectorParams::default();
    if let Some(n) = std::env::var("RELEARN").ok().and_then(|v| v.parse().ok()) {
        params = params.relearn_after(n);
    }
    if let Some(n) = std::env::var("MV_REFRESH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        params = params.mv_refresh(n);
    }
    let params = params.check().expect("defaults");
    let base = SynthParams {
        assets,
        readings,
        seed,
        ..SynthParams::default()
    };
    for (k, q) in quality_by_kind(&params, &base, 150).expect("sensors") {
        println!(
            "{:<18} events {:>3} recall {:.2} precision {:.2} delay p50 {:>5.1} p90 {:>5.1} | flagged normal rows/1k {:.2}, false episodes {} ({:.3}/1k)",
            k.kind.name(),
            k.events,
            k.recall,
            k.precision,
            k.delay_median,
            k.delay_p90,
            q.false_alarms_per_1k,
            q.false_episodes,
            q.false_onsets_per_1k
        );
    }
    let clean = generate(&SynthParams {
        assets,
        readings,
        seed,
        ..SynthParams::only(AnomalyKind::Spike, 0.0)
    });
    let a = fleet_alarms(&params, &clean).expect("sensors");
    let q = evaluate(&clean.asset_idx, &clean.labels, &a, 150);
    println!(
        "clean fleet: {:.3} alarm onsets, {:.2} flagged rows per 1k rows",
        q.false_onsets_per_1k, q.false_alarms_per_1k
    );
}

/// `DIAG=1`: per correlation-break asset, which sensor flipped and how the raw score moved.
fn diag(seed: u64) {
    let f = generate(&SynthParams {
        assets: 200,
        readings: 1000,
        seed: seed + 4,
        ..SynthParams::only(AnomalyKind::CorrelationBreak, 0.1)
    });
    let params = DetectorParams::default().check().expect("defaults");
    let mut s = FleetScorer::new(params, f.sensor_names.clone(), 200).expect("sensors");
    let n = f.sensor_names.len();
    let mut raw = vec![Vec::new(); 200];
    let mut vals = vec![Vec::new(); 200];
    let mut labels = vec![Vec::new(); 200];
    for i in 0..f.n_rows() {
        let a = f.asset_idx[i] as usize;
        let x = &f.values[i * n..(i + 1) * n];
        let r = s.score_row(a, f.ts_ms[i], x);
        raw[a].push(r.raw);
        vals[a].push(x.to_vec());
        labels[a].push(f.labels[i]);
    }
    let followers = [0usize, 1, 4, 6];
    let corr = |rows: &[Vec<f64>], i: usize, j: usize| {
        let m = rows.len() as f64;
        let (mi, mj) = (
            rows.iter().map(|r| r[i]).sum::<f64>() / m,
            rows.iter().map(|r| r[j]).sum::<f64>() / m,
        );
        let (mut c, mut vi, mut vj) = (0.0, 0.0, 0.0);
        for r in rows {
            c += (r[i] - mi) * (r[j] - mj);
            vi += (r[i] - mi).powi(2);
            vj += (r[j] - mj).powi(2);
        }
        c / (vi * vj).sqrt()
    };
    for a in 0..200 {
        let Some(start) = labels[a].iter().position(|l| *l == 4) else {
            continue;
        };
        let end = (start + 150).min(1000);
        let flipped = followers
            .iter()
            .copied()
            .min_by(|&p, &q| {
                let c = |s: usize| {
                    followers
                        .iter()
                        .filter(|&&o| o != s)
                        .map(|&o| corr(&vals[a][start..end], s, o))
                        .sum::<f64>()
                };
                c(p).total_cmp(&c(q))
            })
            .unwrap_or(0);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let pre = &raw[a][200..start];
        let post = &raw[a][start..end];
        println!(
            "asset {a:>3} {:<9} start {start} raw pre {:.2} post {:.2} post>1 {:>3} corr(temp,current) pre {:.2} post {:.2}",
            f.sensor_names[flipped],
            mean(pre),
            mean(post),
            post.iter().filter(|r| **r > 1.0).count(),
            corr(&vals[a][200..start], 0, 4),
            corr(&vals[a][start..end], 0, 4),
        );
    }
}

/// `CYCLE=1`: the daily-cycle scenario of the unit tests, listing each alarm.
fn cycle_alarms() {
    let params = DetectorParams::default()
        .mv_enabled(std::env::var_os("NO_MV").is_none())
        .check()
        .expect("defaults");
    let mut sc = FleetScorer::new(params, vec!["temp".into(), "load".into()], 1).expect("sensors");
    // A small xorshift + Box–Muller normal source (the synth module's is private).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut normal = move || {
        let (u, v) = (uniform(), uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let day = 1440.0;
    let mut noise = 0.0;
    for t in 0..4320usize {
        noise = 0.7 * noise + 0.714 * normal();
        let cyc = (std::f64::consts::TAU * t as f64 / day).sin();
        let row = [50.0 + 8.0 * cyc + noise, 10.0 + 4.0 * cyc + 0.5 * normal()];
        let r = sc.score_row(0, 1_767_225_600_000 + t as i64 * 60_000, &row);
        if r.is_anomaly(0.999) {
            println!(
                "t {t} phase {:.2} raw {:.2} score {:.5} top {:?}",
                (t as f64 % day) / day,
                r.raw,
                r.score,
                r.top_sensor
            );
        }
    }
}
