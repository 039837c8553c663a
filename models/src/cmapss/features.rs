//! Window features per engine cycle for the C-MAPSS protocol.
//!
//! For every informative sensor (z-scored per operating condition): the last
//! value, exponentially weighted means at two spans, and the least-squares
//! slope over the last `slope_window` cycles; plus a one-dimensional health
//! index (informative sensors, sign-aligned with wear, averaged) with the same
//! statistics, and the cycle count. Every value at cycle `t` depends only on
//! cycles `≤ t`, which is what lets training use every cycle as a sample and
//! test use the last one.

use super::conditions::ConditionNormalizer;
use super::{Engine, N_SENSORS};

/// Which sensors and windows to use; learned from training engines only.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// Indexes (0-based) of the sensors kept.
    pub sensors: Vec<usize>,
    /// +1 when a sensor rises with wear, −1 when it falls (health index).
    pub signs: Vec<f64>,
    /// EWMA spans in cycles (`alpha = 2 / (span + 1)`).
    pub ewma_spans: [f64; 2],
    /// Window of the rolling slope, in cycles.
    pub slope_window: usize,
}

/// Minimum |correlation| with life fraction for a sensor to be kept.
const MIN_ABS_CORRELATION: f64 = 0.1;

impl FeatureSpec {
    /// Chooses informative sensors: not constant in training, and correlated
    /// with the fraction of life consumed (`cycle / last cycle`) by at least
    /// [`MIN_ABS_CORRELATION`] in absolute value.
    pub fn fit(train: &[Engine], norm: &ConditionNormalizer) -> Self {
        let mut sx = [0.0; N_SENSORS];
        let mut sxx = [0.0; N_SENSORS];
        let mut sxy = [0.0; N_SENSORS];
        let (mut sy, mut syy, mut n) = (0.0, 0.0, 0.0);
        for engine in train {
            let life = engine.len() as f64;
            for (t, (s, x)) in engine.settings.iter().zip(&engine.sensors).enumerate() {
                let z = norm.normalize(s, x);
                let frac = (t + 1) as f64 / life;
                sy += frac;
                syy += frac * frac;
                n += 1.0;
                for j in 0..N_SENSORS {
                    sx[j] += z[j];
                    sxx[j] += z[j] * z[j];
                    sxy[j] += z[j] * frac;
                }
            }
        }
        let mut sensors = Vec::new();
        let mut signs = Vec::new();
        let var_y = syy / n - (sy / n).powi(2);
        for j in 0..N_SENSORS {
            if norm.constant[j] {
                continue;
            }
            let var_x = sxx[j] / n - (sx[j] / n).powi(2);
            let cov = sxy[j] / n - (sx[j] / n) * (sy / n);
            let corr = cov / (var_x * var_y).sqrt().max(1e-300);
            if corr.abs() >= MIN_ABS_CORRELATION {
                sensors.push(j);
                signs.push(corr.signum());
            }
        }
        Self {
            sensors,
            signs,
            ewma_spans: [10.0, 30.0],
            slope_window: 20,
        }
    }

    /// Number of features per cycle.
    pub fn n_features(&self) -> usize {
        (self.sensors.len() + 1) * 4 + 1
    }

    /// Feature names, in column order.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.n_features());
        let channels = self
            .sensors
            .iter()
            .map(|j| format!("s{}", j + 1))
            .chain(std::iter::once("health".to_string()));
        for ch in channels {
            names.push(format!("{ch}_last"));
            names.push(format!("{ch}_ewma{}", self.ewma_spans[0]));
            names.push(format!("{ch}_ewma{}", self.ewma_spans[1]));
            names.push(format!("{ch}_slope{}", self.slope_window));
        }
        names.push("cycle".to_string());
        names
    }

    /// Row-major features for every cycle of `engine`.
    pub fn engine_features(&self, engine: &Engine, norm: &ConditionNormalizer) -> Vec<f64> {
        let n_ch = self.sensors.len() + 1;
        let nf = self.n_features();
        let mut out = Vec::with_capacity(engine.len() * nf);
        let alphas = self.ewma_spans.map(|s| 2.0 / (s + 1.0));
        let mut ewma = vec![[0.0f64; 2]; n_ch];
        // Ring of the last `slope_window` channel values for the slope.
        let w = self.slope_window.max(2);
        let mut ring = vec![0.0f64; w * n_ch];
        let mut values = vec![0.0; n_ch];
        for (t, (s, x)) in engine.settings.iter().zip(&engine.sensors).enumerate() {
            let z = norm.normalize(s, x);
            let mut health = 0.0;
            for (k, (&j, &sign)) in self.sensors.iter().zip(&self.signs).enumerate() {
                values[k] = z[j];
                health += sign * z[j];
            }
            values[n_ch - 1] = health / self.sensors.len().max(1) as f64;
            let slot = t % w;
            let filled = (t + 1).min(w);
            for (ch, &v) in values.iter().enumerate() {
                for (e, a) in ewma[ch].iter_mut().zip(alphas) {
                    *e = if t == 0 { v } else { *e + a * (v - *e) };
                }
                ring[ch * w + slot] = v;
                let slope = window_slope(&ring[ch * w..(ch + 1) * w], slot, filled);
                out.extend([v, ewma[ch][0], ewma[ch][1], slope]);
            }
            out.push((t + 1) as f64);
        }
        out
    }
}

/// Least-squares slope per cycle of the last `filled` values of a ring whose
/// newest value sits at `newest`.
fn window_slope(ring: &[f64], newest: usize, filled: usize) -> f64 {
    if filled < 2 {
        return 0.0;
    }
    let w = ring.len();
    let n = filled as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mut mean_y = 0.0;
    for i in 0..filled {
        mean_y += ring[(newest + w - i) % w];
    }
    mean_y /= n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for i in 0..filled {
        // x runs 0..filled-1 from oldest to newest.
        let x = (filled - 1 - i) as f64 - mean_x;
        sxy += x * (ring[(newest + w - i) % w] - mean_y);
        sxx += x * x;
    }
    sxy / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_its_gradient_even_when_the_window_wraps() {
        let mut ring = [0.0; 4];
        for t in 0..10 {
            ring[t % 4] = 3.0 * t as f64 + 1.0;
            if t >= 1 {
                let s = window_slope(&ring, t % 4, (t + 1).min(4));
                assert!((s - 3.0).abs() < 1e-12, "t={t} slope={s}");
            }
        }
    }

    #[test]
    fn features_at_a_cycle_do_not_depend_on_later_cycles() {
        let engine = Engine {
            unit: 1,
            settings: vec![[0.0, 0.0, 100.0]; 50],
            sensors: (0..50)
                .map(|t| {
                    let mut row = [0.0; N_SENSORS];
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = 100.0
                            + j as f64
                            + (t as f64 * 0.1) * if j % 2 == 0 { 1.0 } else { -1.0 };
                    }
                    row
                })
                .collect(),
        };
        let norm = ConditionNormalizer::fit(std::slice::from_ref(&engine));
        let spec = FeatureSpec::fit(std::slice::from_ref(&engine), &norm);
        assert_eq!(spec.sensors.len(), N_SENSORS);
        let full = spec.engine_features(&engine, &norm);
        let part = spec.engine_features(&engine.truncated(20), &norm);
        assert_eq!(&full[..part.len()], &part[..]);
        assert_eq!(spec.names().len(), spec.n_features());
        assert_eq!(full.len(), 50 * spec.n_features());
    }
}
