//! The in-house booster against `forust-ml` and `perpetual` on the same
//! data and splits, for the booster choice in `docs/models.md`.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p fieldpulse-models \
//!     --features compare --example booster_compare -- [cmapss dir] [sim assets] [sim days] [budgets]
//! ```
//!
//! 1. NASA C-MAPSS FD001 RUL (regression, target capped at 125 cycles):
//!    5-fold cross-validation grouped by engine (RMSE over every cycle of the
//!    held-out engines), then a fit on all training engines scored on the
//!    last cycle of each test engine against the RUL file as given.
//! 2. A simulated fleet's "any failure within 7 days" (classification): the
//!    training split of `fieldpulse train` (fit rows, held-out test assets),
//!    average precision on the test rows.
//!
//! Each library gets the same rows, missing values as NaN (all three route
//! them natively), one thread, and settings matched where they have them
//! (trees, learning rate, depth, leaf size, L2, row and column subsampling);
//! `perpetual` has no such settings, only a `budget`. Prints one JSON object.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fieldpulse_models::cmapss::{
    conditions::ConditionNormalizer, features::WindowFeatures, load_subset, Engine, Subset,
};
use fieldpulse_models::failure::dataset::{classifier_labels, Observation, Telemetry};
use fieldpulse_models::failure::train::{train_with_rows, TrainConfig};
use fieldpulse_models::failure::FleetHistory;
use fieldpulse_models::gbdt::{GbdtParams, Objective};
use fieldpulse_models::metrics::{average_precision, pr_curve, rmse};
use fieldpulse_simulator::{product::PRODUCTS, telemetry, Fleet, FleetConfig};
use serde_json::json;

const RUL_CAP: f64 = 125.0;

/// A learner under test: fits row-major `x` and predicts raw scores.
#[derive(Clone, Copy, Debug)]
enum Learner {
    InHouse,
    Forust,
    Perpetual(f32),
}

impl Learner {
    fn name(self) -> String {
        match self {
            Self::InHouse => "fieldpulse gbdt".into(),
            Self::Forust => "forust-ml 0.8".into(),
            Self::Perpetual(b) => format!("perpetual 3.0.0-rc.2 (budget {b})"),
        }
    }
}

/// Row-major to column-major.
fn columns(x: &[f64], nf: usize) -> Vec<f64> {
    let n = x.len() / nf;
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for j in 0..nf {
            out[j * n + i] = x[i * nf + j];
        }
    }
    out
}

/// Fits on (x, y) and predicts `x_test`: probabilities for `logistic`,
/// values otherwise. Returns the predictions and the fit time.
fn fit_predict(
    learner: Learner,
    params: &GbdtParams,
    x: &[f64],
    nf: usize,
    y: &[f64],
    w: Option<&[f64]>,
    x_test: &[f64],
) -> (Vec<f64>, Duration) {
    let logistic = params.objective == Objective::Logistic;
    let n_test = x_test.len() / nf;
    let t = Instant::now();
    match learner {
        Learner::InHouse => {
            let model = params.fit(x, nf, y, w).expect("in-house fit");
            let fit = t.elapsed();
            let p = x_test
                .chunks_exact(nf)
                .map(|r| model.predict_row(r))
                .collect();
            (p, fit)
        }
        Learner::Forust => {
            use forust_ml::data::Matrix;
            use forust_ml::gradientbooster::GradientBooster;
            use forust_ml::objective::ObjectiveType;
            let cols = columns(x, nf);
            let m = Matrix::new(&cols, y.len(), nf);
            let ones = vec![1.0; y.len()];
            let mut b = GradientBooster::default()
                .set_objective_type(if logistic {
                    ObjectiveType::LogLoss
                } else {
                    ObjectiveType::SquaredLoss
                })
                .set_iterations(params.n_trees)
                .set_learning_rate(params.learning_rate as f32)
                .set_max_depth(params.max_depth)
                .set_min_leaf_weight(if logistic {
                    params.min_hessian_leaf.max(1.0) as f32
                } else {
                    params.min_samples_leaf as f32
                })
                .set_l2(params.l2 as f32)
                .set_subsample(params.subsample as f32)
                .set_colsample_bytree(params.colsample)
                .set_seed(params.seed)
                .set_parallel(false);
            b.fit(&m, y, w.unwrap_or(&ones), None).expect("forust fit");
            let fit = t.elapsed();
            let tc = columns(x_test, nf);
            let raw = b.predict(&Matrix::new(&tc, n_test, nf), false);
            let p = if logistic {
                raw.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()
            } else {
                raw
            };
            (p, fit)
        }
        Learner::Perpetual(budget) => {
            use perpetual::objective::Objective as PObjective;
            use perpetual::{Matrix, PerpetualBooster};
            let cols = columns(x, nf);
            let m = Matrix::new(&cols, y.len(), nf);
            let mut b = PerpetualBooster::default()
                .set_objective(if logistic {
                    PObjective::LogLoss
                } else {
                    PObjective::SquaredLoss
                })
                .set_budget(budget)
                .set_num_threads(Some(1))
                .set_seed(params.seed);
            b.fit(&m, y, w, None).expect("perpetual fit");
            let fit = t.elapsed();
            let tc = columns(x_test, nf);
            let tm = Matrix::new(&tc, n_test, nf);
            let p = if logistic {
                b.predict_proba(&tm, false, false)
            } else {
                b.predict(&tm, false)
            };
            (p, fit)
        }
    }
}

/// Features and capped targets of some engines.
fn matrix(
    engines: &[&Engine],
    norm: &ConditionNormalizer,
    spec: &WindowFeatures,
) -> (Vec<f64>, Vec<f64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for e in engines {
        x.extend(spec.engine_features(e, norm).expect("features"));
        let life = e.len();
        y.extend((1..=life).map(|t| ((life - t) as f64).min(RUL_CAP)));
    }
    (x, y)
}

fn cmapss(dir: &std::path::Path, learners: &[Learner], params: &GbdtParams) -> serde_json::Value {
    let data = load_subset(dir, Subset::Fd001).expect("FD001");
    let mut out = Vec::new();
    for &l in learners {
        let mut fold_rmse = Vec::new();
        let mut fit_s = 0.0;
        for fold in 0..5 {
            let (mut tr, mut va): (Vec<&Engine>, Vec<&Engine>) = (Vec::new(), Vec::new());
            for (i, e) in data.train.iter().enumerate() {
                if i % 5 == fold {
                    va.push(e);
                } else {
                    tr.push(e);
                }
            }
            let owned: Vec<Engine> = tr.iter().map(|e| (*e).clone()).collect();
            let norm = ConditionNormalizer::fit(&owned);
            let spec = WindowFeatures::fit(&owned, &norm).expect("spec");
            let (x, y) = matrix(&tr, &norm, &spec);
            let (xv, yv) = matrix(&va, &norm, &spec);
            let nf = spec.n_features();
            let (p, t) = fit_predict(l, params, &x, nf, &y, None, &xv);
            eprintln!(
                "C-MAPSS {} fold {fold}: {} rows x {nf} fitted in {:.1}s",
                l.name(),
                y.len(),
                t.as_secs_f64()
            );
            fit_s += t.as_secs_f64();
            let p: Vec<f64> = p.iter().map(|v| v.clamp(0.0, RUL_CAP)).collect();
            fold_rmse.push(rmse(&p, &yv));
        }
        let norm = ConditionNormalizer::fit(&data.train);
        let spec = WindowFeatures::fit(&data.train, &norm).expect("spec");
        let all: Vec<&Engine> = data.train.iter().collect();
        let (x, y) = matrix(&all, &norm, &spec);
        let nf = spec.n_features();
        let mut last = Vec::new();
        for e in &data.test {
            let f = spec.engine_features(e, &norm).expect("features");
            last.extend_from_slice(&f[f.len() - nf..]);
        }
        let (p, t) = fit_predict(l, params, &x, nf, &y, None, &last);
        let p: Vec<f64> = p.iter().map(|v| v.clamp(0.0, RUL_CAP)).collect();
        let capped: Vec<f64> = data.test_rul.iter().map(|v| v.min(RUL_CAP)).collect();
        let mean = fold_rmse.iter().sum::<f64>() / 5.0;
        let sd = (fold_rmse.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        out.push(json!({
            "learner": l.name(),
            "cv_rmse_mean": mean,
            "cv_rmse_sd": sd,
            "cv_fit_seconds": fit_s,
            "test_rmse_as_given": rmse(&p, &data.test_rul),
            "test_rmse_capped": rmse(&p, &capped),
            "full_fit_seconds": t.as_secs_f64(),
        }));
    }
    json!({"dataset": "C-MAPSS FD001", "rows": data.train.iter().map(Engine::len).sum::<usize>(), "results": out})
}

fn simulated(assets: usize, days: u64, learners: &[Learner]) -> serde_json::Value {
    let cfg = FleetConfig {
        seed: 5,
        n_assets: assets,
        duration: Duration::from_secs(days * 86_400),
        interval: Duration::from_secs(3600),
        ..FleetConfig::default()
    };
    let mut fleet = Fleet::new(cfg).expect("fleet");
    let mut csv = Vec::new();
    telemetry::write_header(&mut csv).expect("header");
    while let Some(r) = fleet.next_reading() {
        let name = fleet.assets()[r.asset_idx].name.clone();
        telemetry::write_row(&mut csv, &name, &r).expect("row");
    }
    let fixture = fleet.history().to_fixture_json(&PRODUCTS).to_string();
    let tel = Telemetry::read_csv(csv.as_slice()).expect("telemetry");
    let history = FleetHistory::from_json(&fixture).expect("history");
    let cfg = TrainConfig::default();
    let (outcome, rows) = train_with_rows(&tel, &history, &cfg, &mut |_, _, _| {}).expect("train");
    let obs = Observation::new(&tel, &history, None);
    let split = &outcome.split;
    let horizon = 7.0;
    let (y, w) = classifier_labels(&rows, &split.fit_rows, &obs, None, horizon, split.t_cal_ms);
    let (yt, wt) = classifier_labels(&rows, &split.test_rows, &obs, None, horizon, split.t1_ms);
    let nf = rows.n_features;
    let pick = |idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| rows.row(i).iter().copied())
            .collect()
    };
    let x = pick(&split.fit_rows);
    let xt = pick(&split.test_rows);
    let labels: Vec<bool> = yt.iter().map(|v| *v > 0.5).collect();
    let keep: Vec<usize> = (0..labels.len()).filter(|&k| wt[k] > 0.0).collect();
    let params = GbdtParams {
        objective: Objective::Logistic,
        ..cfg.booster.clone()
    };
    // 5-fold CV grouped by asset over the fit rows (labels censored at the
    // calibration cut, as training does), then the held-out test assets.
    let fold_of = |i: usize| rows.asset_idx[split.fit_rows[i]] as usize % 5;
    let mut out = Vec::new();
    for &l in learners {
        let mut fold_ap = Vec::new();
        let mut cv_s = 0.0;
        for fold in 0..5 {
            let (tr, va): (Vec<usize>, Vec<usize>) =
                (0..split.fit_rows.len()).partition(|&i| fold_of(i) != fold);
            let sub = |idx: &[usize]| -> Vec<f64> {
                idx.iter()
                    .flat_map(|&i| x[i * nf..(i + 1) * nf].iter().copied())
                    .collect()
            };
            let (xtr, xva) = (sub(&tr), sub(&va));
            let ytr: Vec<f64> = tr.iter().map(|&i| y[i]).collect();
            let wtr: Vec<f64> = tr.iter().map(|&i| w[i]).collect();
            let (p, t) = fit_predict(l, &params, &xtr, nf, &ytr, Some(&wtr), &xva);
            cv_s += t.as_secs_f64();
            let (s, lab): (Vec<f64>, Vec<bool>) = va
                .iter()
                .enumerate()
                .filter(|(_, &i)| w[i] > 0.0)
                .map(|(k, &i)| (p[k], y[i] > 0.5))
                .unzip();
            fold_ap.push(average_precision(&pr_curve(&s, &lab)));
            eprintln!(
                "fleet {} fold {fold}: fitted in {:.1}s",
                l.name(),
                t.as_secs_f64()
            );
        }
        let mean = fold_ap.iter().sum::<f64>() / 5.0;
        let sd = (fold_ap.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let (p, t) = fit_predict(l, &params, &x, nf, &y, Some(&w), &xt);
        eprintln!(
            "fleet {}: {} rows x {nf} fitted in {:.1}s",
            l.name(),
            y.len(),
            t.as_secs_f64()
        );
        let (s, lab): (Vec<f64>, Vec<bool>) = keep.iter().map(|&k| (p[k], labels[k])).unzip();
        out.push(json!({
            "learner": l.name(),
            "cv_average_precision_mean": mean,
            "cv_average_precision_sd": sd,
            "cv_fit_seconds": cv_s,
            "test_average_precision": average_precision(&pr_curve(&s, &lab)),
            "fit_seconds": t.as_secs_f64(),
        }));
    }
    json!({
        "dataset": format!("simulated fleet, {assets} assets x {days} days, any failure within 7 d"),
        "fit_rows": y.len(),
        "fit_positive": y.iter().zip(&w).filter(|(y, w)| **y > 0.5 && **w > 0.0).count(),
        "test_rows": keep.len(),
        "test_positive": keep.iter().filter(|&&k| labels[k]).count(),
        "features": nf,
        "settings": params_note(&params),
        "results": out,
    })
}

fn params_note(p: &GbdtParams) -> String {
    format!(
        "{} trees, learning rate {}, depth {}, leaf >= {}, l2 {}, subsample {}, colsample {}",
        p.n_trees, p.learning_rate, p.max_depth, p.min_samples_leaf, p.l2, p.subsample, p.colsample
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "data/cmapss".into()));
    let assets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let days: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(365);
    // Optional fourth argument: perpetual budgets to try (comma-separated).
    let budgets: Vec<f32> = args
        .next()
        .map(|a| a.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0.5, 1.0]);
    let mut learners = vec![Learner::InHouse, Learner::Forust];
    learners.extend(budgets.into_iter().map(Learner::Perpetual));
    let reg = GbdtParams::default();
    let c = cmapss(&dir, &learners, &reg);
    eprintln!("{c}");
    let s = simulated(assets, days, &learners);
    println!(
        "{}",
        json!({
            "settings": params_note(&reg),
            "cmapss": c,
            "simulated": s,
        })
    );
}
