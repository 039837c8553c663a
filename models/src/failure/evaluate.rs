//! Metrics of a failure model on labelled rows: row-level precision, recall
//! and F1 at the model's thresholds, event-level lead time and false alarms
//! per asset-month, calibration and RUL error (feature `train`).

use serde::Serialize;

use super::dataset::{classifier_labels, rul_targets, FeatureRows, Observation};
use super::labels::{EventKind, DAY_MS};
use super::model::{FailureModel, ANY_MODE};
use crate::metrics::{
    average_precision, brier, calibration_bins, mae, pr_curve, rmse, CalibrationBin, PrPoint,
};

/// Metrics of one classifier.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierMetrics {
    /// Failure mode or `any`.
    pub mode: String,
    /// Horizon, days.
    pub horizon_days: f64,
    /// Alarm threshold used.
    pub threshold: f64,
    /// Labelled rows (excluded rows not counted).
    pub n_rows: usize,
    /// Positive rows.
    pub n_positive: usize,
    /// Row-level precision at the threshold.
    pub precision: f64,
    /// Row-level recall at the threshold.
    pub recall: f64,
    /// Row-level F1 at the threshold.
    pub f1: f64,
    /// Average precision (area under the PR curve).
    pub average_precision: f64,
    /// Brier score of calibrated probabilities.
    pub brier: f64,
    /// Failures (of this mode) with readings in the horizon before them.
    pub n_failures: usize,
    /// Failures alarmed within the horizon before they happened.
    pub n_failures_detected: usize,
    /// Median days between the first alarm and the failure (detected ones).
    pub median_lead_days: Option<f64>,
    /// Alarm episodes not followed by a failure within the horizon, per
    /// asset-month of telemetry.
    pub false_alarms_per_asset_month: f64,
    /// PR curve (thinned to ≤ 200 points).
    pub pr_curve: Vec<PrPoint>,
    /// Reliability diagram (10 bins).
    pub calibration: Vec<CalibrationBin>,
}

/// All metrics of a model on one set of rows.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Rows scored.
    pub n_rows: usize,
    /// Assets scored.
    pub n_assets: usize,
    /// Asset-months of telemetry covered.
    pub asset_months: f64,
    /// Per classifier.
    pub classifiers: Vec<ClassifierMetrics>,
    /// RUL RMSE in days over uncensored rows.
    pub rul_rmse_days: f64,
    /// RUL mean absolute error in days over the same rows.
    pub rul_mae_days: f64,
    /// Uncensored RUL rows.
    pub rul_rows: usize,
    /// Sample of (true, predicted) RUL pairs for plots (≤ 2,000).
    pub rul_pairs: Vec<(f64, f64)>,
}

fn thin<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max {
        return items.to_vec();
    }
    let step = items.len() as f64 / max as f64;
    (0..max)
        .map(|i| items[(i as f64 * step) as usize].clone())
        .collect()
}

/// Evaluates `model` on the rows `rows_idx` of `rows` with labels censored at
/// `censor_ms` and at each asset's end of observation.
pub fn evaluate(
    model: &FailureModel,
    rows: &FeatureRows,
    rows_idx: &[usize],
    obs: &Observation<'_>,
    censor_ms: i64,
) -> EvalReport {
    let preds: Vec<_> = rows_idx
        .iter()
        .map(|&i| model.predict(rows.row(i)))
        .collect();
    // Asset-months: span of the sampled rows of each asset.
    let mut spans: std::collections::BTreeMap<u32, (i64, i64)> = Default::default();
    for &i in rows_idx {
        let e = spans
            .entry(rows.asset_idx[i])
            .or_insert((i64::MAX, i64::MIN));
        e.0 = e.0.min(rows.ts_ms[i]);
        e.1 = e.1.max(rows.ts_ms[i]);
    }
    let asset_months: f64 = spans
        .values()
        .map(|(a, b)| (b - a) as f64 / (30.0 * DAY_MS as f64))
        .sum();
    let mut classifiers = Vec::new();
    for (k, c) in model.classifiers.iter().enumerate() {
        let mode = (c.mode != ANY_MODE).then_some(c.mode.as_str());
        let (y, w) = classifier_labels(rows, rows_idx, obs, mode, c.horizon_days, censor_ms);
        let mut probs = Vec::new();
        let mut labels = Vec::new();
        for (j, p) in preds.iter().enumerate() {
            if w[j] > 0.0 {
                probs.push(p.probabilities[k]);
                labels.push(y[j] > 0.5);
            }
        }
        let tp = probs
            .iter()
            .zip(&labels)
            .filter(|(p, l)| **p >= c.threshold && **l)
            .count();
        let n_alarm = probs.iter().filter(|p| **p >= c.threshold).count();
        let n_pos = labels.iter().filter(|l| **l).count();
        let precision = if n_alarm > 0 {
            tp as f64 / n_alarm as f64
        } else {
            0.0
        };
        let recall = if n_pos > 0 {
            tp as f64 / n_pos as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        let curve = pr_curve(&probs, &labels);
        // Event level, per asset in time order.
        let horizon_ms = (c.horizon_days * DAY_MS as f64) as i64;
        let mut leads = Vec::new();
        let mut n_failures = 0;
        let mut false_episodes = 0usize;
        for (&asset, _) in spans.iter() {
            let end = obs.end(asset, censor_ms);
            let times: Vec<(i64, bool)> = rows_idx
                .iter()
                .zip(&preds)
                .filter(|(&i, _)| rows.asset_idx[i] == asset)
                .map(|(&i, p)| (rows.ts_ms[i], p.alarms[k]))
                .collect();
            let failures: Vec<i64> = obs
                .asset(asset)
                .failures
                .iter()
                .filter(|f| match (&f.kind, mode) {
                    (_, None) => true,
                    (EventKind::Failure(Some(m)), Some(want)) => m == want,
                    _ => false,
                })
                .map(|f| f.start_ms)
                .filter(|&t| t <= end)
                .collect();
            let (Some(first), Some(last)) = (times.first(), times.last()) else {
                continue;
            };
            for &f in &failures {
                if f <= first.0 || f > last.0 + horizon_ms {
                    continue;
                }
                n_failures += 1;
                if let Some((t, _)) = times
                    .iter()
                    .find(|(t, a)| *a && *t >= f - horizon_ms && *t < f)
                {
                    leads.push((f - t) as f64 / DAY_MS as f64);
                }
            }
            let mut prev = false;
            for &(t, alarm) in &times {
                if alarm && !prev {
                    let followed = failures.iter().any(|&f| f > t && f <= t + horizon_ms);
                    let unobserved = t + horizon_ms > end;
                    if !followed && !unobserved {
                        false_episodes += 1;
                    }
                }
                prev = alarm;
            }
        }
        leads.sort_by(f64::total_cmp);
        classifiers.push(ClassifierMetrics {
            mode: c.mode.clone(),
            horizon_days: c.horizon_days,
            threshold: c.threshold,
            n_rows: probs.len(),
            n_positive: n_pos,
            precision,
            recall,
            f1,
            average_precision: average_precision(&curve),
            brier: brier(&probs, &labels),
            n_failures,
            n_failures_detected: leads.len(),
            median_lead_days: (!leads.is_empty()).then(|| leads[leads.len() / 2]),
            false_alarms_per_asset_month: false_episodes as f64 / asset_months.max(1e-9),
            pr_curve: thin(&curve, 200),
            calibration: calibration_bins(&probs, &labels, 10),
        });
    }
    let targets = rul_targets(rows, rows_idx, obs, model.rul_cap_days, censor_ms);
    let pairs: Vec<(f64, f64)> = targets
        .iter()
        .zip(&preds)
        .filter_map(|(t, p)| t.map(|t| (t, p.rul_days)))
        .collect();
    let (truth, pred): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    EvalReport {
        n_rows: rows_idx.len(),
        n_assets: spans.len(),
        asset_months,
        classifiers,
        rul_rmse_days: rmse(&pred, &truth),
        rul_mae_days: mae(&pred, &truth),
        rul_rows: pairs.len(),
        rul_pairs: thin(&pairs, 2000),
    }
}
