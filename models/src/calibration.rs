//! Probability calibration by isotonic regression (pool-adjacent-violators).
//!
//! A boosted classifier's raw probabilities rank well but are not honest
//! frequencies; fitting a monotone step function from raw score to observed
//! rate on a held-out time slice fixes that without assuming a shape (Platt
//! scaling assumes a sigmoid). The fitted map is stored in the artifact and
//! applied at scoring time by linear interpolation between block centres.

use serde::{Deserialize, Serialize};

/// A monotone map from raw score to calibrated probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    /// Raw-score centre of each block, increasing.
    pub x: Vec<f64>,
    /// Calibrated probability of each block, non-decreasing.
    pub y: Vec<f64>,
}

impl Isotonic {
    /// The identity map (used when a calibration slice has a single class).
    pub fn identity() -> Self {
        Self {
            x: vec![0.0, 1.0],
            y: vec![0.0, 1.0],
        }
    }

    /// Fits on raw scores and 0/1 outcomes (pool-adjacent-violators on the
    /// outcomes sorted by score; ties pooled first).
    pub fn fit(scores: &[f64], labels: &[bool]) -> Self {
        let n = scores.len().min(labels.len());
        let n_pos = labels[..n].iter().filter(|&&l| l).count();
        if n == 0 || n_pos == 0 || n_pos == n {
            return Self::identity();
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        // Blocks: (sum of x, sum of y, weight).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let s = scores[order[i]];
            let (mut sx, mut sy, mut w) = (0.0, 0.0, 0.0);
            while i < n && scores[order[i]] == s {
                sx += s;
                sy += f64::from(u8::from(labels[order[i]]));
                w += 1.0;
                i += 1;
            }
            blocks.push((sx, sy, w));
            while blocks.len() >= 2 {
                let (_, y1, w1) = blocks[blocks.len() - 2];
                let (_, y2, w2) = blocks[blocks.len() - 1];
                if y1 / w1 <= y2 / w2 {
                    break;
                }
                let last = blocks.pop().unwrap_or_default();
                let prev = blocks.last_mut().expect("two blocks checked above");
                prev.0 += last.0;
                prev.1 += last.1;
                prev.2 += last.2;
            }
        }
        Self {
            x: blocks.iter().map(|b| b.0 / b.2).collect(),
            y: blocks.iter().map(|b| b.1 / b.2).collect(),
        }
    }

    /// Calibrated probability of a raw score.
    pub fn apply(&self, score: f64) -> f64 {
        if self.x.is_empty() || score.is_nan() {
            return score;
        }
        let k = self.x.partition_point(|&x| x < score);
        if k == 0 {
            return self.y[0];
        }
        if k == self.x.len() {
            return self.y[k - 1];
        }
        let (x0, x1, y0, y1) = (self.x[k - 1], self.x[k], self.y[k - 1], self.y[k]);
        if x1 <= x0 {
            return y1;
        }
        y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_fit_is_monotone_and_matches_block_rates() {
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let labels = [false, true, false, false, true, true];
        let iso = Isotonic::fit(&scores, &labels);
        assert!(iso.y.windows(2).all(|w| w[0] <= w[1]));
        assert!(iso.x.windows(2).all(|w| w[0] < w[1]));
        // 0.2..0.4 (one hit in three) pool into one block at 1/3.
        assert_eq!(iso.apply(0.0), 0.0);
        assert!((iso.apply(0.3) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iso.apply(0.9), 1.0);
    }

    #[test]
    fn single_class_slices_fall_back_to_the_identity() {
        let iso = Isotonic::fit(&[0.2, 0.4], &[false, false]);
        assert_eq!(iso, Isotonic::identity());
        assert!((iso.apply(0.3) - 0.3).abs() < 1e-12);
    }
}
