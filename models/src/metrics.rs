//! Evaluation metrics shared by the C-MAPSS protocol and the failure models:
//! RMSE, MAE, the PHM08 score, precision/recall curves and calibration bins.

/// Root mean squared error; `NaN` for empty input.
pub fn rmse(pred: &[f64], truth: &[f64]) -> f64 {
    let n = pred.len().min(truth.len());
    if n == 0 {
        return f64::NAN;
    }
    let sse: f64 = pred.iter().zip(truth).map(|(p, t)| (p - t).powi(2)).sum();
    (sse / n as f64).sqrt()
}

/// Mean absolute error; `NaN` for empty input.
pub fn mae(pred: &[f64], truth: &[f64]) -> f64 {
    let n = pred.len().min(truth.len());
    if n == 0 {
        return f64::NAN;
    }
    pred.iter()
        .zip(truth)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / n as f64
}

/// PHM08 challenge score (Saxena et al. 2008): with `d = predicted − true`,
/// each engine adds `exp(−d/13) − 1` when early (`d < 0`) and
/// `exp(d/10) − 1` when late. A sum, so it grows with the number of engines.
pub fn phm08_score(pred: &[f64], truth: &[f64]) -> f64 {
    pred.iter()
        .zip(truth)
        .map(|(p, t)| {
            let d = p - t;
            if d < 0.0 {
                (-d / 13.0).exp() - 1.0
            } else {
                (d / 10.0).exp() - 1.0
            }
        })
        .sum()
}

/// One point of a precision/recall curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrPoint {
    /// Alarm when the probability is at least this.
    pub threshold: f64,
    /// Fraction of alarms that were positives.
    pub precision: f64,
    /// Fraction of positives alarmed.
    pub recall: f64,
}

/// Precision/recall at every distinct score, highest threshold first.
/// Labels are `true` for positives. Empty when there is no positive.
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Vec<PrPoint> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push(PrPoint {
            threshold,
            precision: tp as f64 / (tp + fp) as f64,
            recall: tp as f64 / n_pos as f64,
        });
    }
    out
}

/// Average precision (area under the step PR curve).
pub fn average_precision(curve: &[PrPoint]) -> f64 {
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for p in curve {
        ap += (p.recall - prev_recall) * p.precision;
        prev_recall = p.recall;
    }
    ap
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationBin {
    /// Mean predicted probability in the bin.
    pub mean_predicted: f64,
    /// Observed positive rate in the bin.
    pub observed_rate: f64,
    /// Samples in the bin.
    pub count: usize,
}

/// Reliability diagram over `n_bins` equal-width probability bins (empty
/// bins omitted).
pub fn calibration_bins(probs: &[f64], labels: &[bool], n_bins: usize) -> Vec<CalibrationBin> {
    let n_bins = n_bins.max(1);
    let mut sum_p = vec![0.0; n_bins];
    let mut pos = vec![0usize; n_bins];
    let mut count = vec![0usize; n_bins];
    for (&p, &l) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * n_bins as f64) as usize).min(n_bins - 1);
        sum_p[b] += p;
        count[b] += 1;
        pos[b] += usize::from(l);
    }
    (0..n_bins)
        .filter(|&b| count[b] > 0)
        .map(|b| CalibrationBin {
            mean_predicted: sum_p[b] / count[b] as f64,
            observed_rate: pos[b] as f64 / count[b] as f64,
            count: count[b],
        })
        .collect()
}

/// Brier score: mean squared error of probabilities against 0/1 outcomes.
pub fn brier(probs: &[f64], labels: &[bool]) -> f64 {
    let n = probs.len().min(labels.len());
    if n == 0 {
        return f64::NAN;
    }
    probs
        .iter()
        .zip(labels)
        .map(|(p, &l)| (p - f64::from(u8::from(l))).powi(2))
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmse_and_phm08_match_hand_computed_values() {
        assert_eq!(rmse(&[1.0, 3.0], &[1.0, 1.0]), 2f64.sqrt());
        // Early by 13 costs e - 1, late by 10 costs e - 1.
        let e1 = std::f64::consts::E - 1.0;
        assert!((phm08_score(&[87.0], &[100.0]) - e1).abs() < 1e-12);
        assert!((phm08_score(&[110.0], &[100.0]) - e1).abs() < 1e-12);
        assert_eq!(phm08_score(&[5.0], &[5.0]), 0.0);
        assert!(rmse(&[], &[]).is_nan());
        assert_eq!(mae(&[1.0, 4.0], &[2.0, 1.0]), 2.0);
        assert!(mae(&[], &[]).is_nan());
    }

    #[test]
    fn pr_curve_walks_thresholds_from_high_to_low() {
        let curve = pr_curve(&[0.9, 0.8, 0.3, 0.1], &[true, false, true, false]);
        assert_eq!(curve.len(), 4);
        assert_eq!((curve[0].precision, curve[0].recall), (1.0, 0.5));
        assert_eq!((curve[2].precision, curve[2].recall), (2.0 / 3.0, 1.0));
        let ap = average_precision(&curve);
        assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
        assert!(pr_curve(&[0.5], &[false]).is_empty());
    }

    #[test]
    fn calibration_bins_report_observed_rates() {
        let bins = calibration_bins(&[0.05, 0.05, 0.95, 0.95], &[false, true, true, true], 10);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].observed_rate, 0.5);
        assert_eq!(bins[1].count, 2);
        assert!((brier(&[1.0, 0.0], &[true, true]) - 0.5).abs() < 1e-12);
    }
}
