//! Operating conditions and per-condition sensor normalisation.
//!
//! FD002 and FD004 mix six flight conditions (altitude, Mach, throttle) whose
//! effect on the sensors dwarfs degradation. The usual treatment, used here:
//! cluster the three operational settings, then z-score each sensor with the
//! mean and standard deviation of its own condition, both learned from the
//! training file only.
//!
//! Clustering is leader clustering with per-setting tolerances (a new cluster
//! whenever a row is farther than the tolerance from every centre) followed by
//! Lloyd refinement; it finds 1 cluster in FD001/FD003 and 6 in FD002/FD004
//! without being told how many.

use super::{Engine, N_SENSORS, N_SETTINGS};

/// Tolerance per setting (altitude-like kft, Mach, throttle resolver angle):
/// far larger than the in-condition noise (~0.003, ~0.0003, 0) and far
/// smaller than the gaps between conditions (≥ 5, ≥ 0.08, 40).
const TOLERANCE: [f64; N_SETTINGS] = [1.0, 0.05, 5.0];

/// Upper bound on clusters; more means the settings are not discrete.
const MAX_CONDITIONS: usize = 16;

/// Per-condition centres and per-sensor statistics learned from training.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionNormalizer {
    /// Settings centre of each condition.
    pub centres: Vec<[f64; N_SETTINGS]>,
    /// Sensor mean per condition.
    pub mean: Vec<[f64; N_SENSORS]>,
    /// Sensor standard deviation per condition (1 where constant).
    pub std: Vec<[f64; N_SENSORS]>,
    /// Sensors constant within every condition (carry no information).
    pub constant: [bool; N_SENSORS],
}

impl ConditionNormalizer {
    /// Learns conditions and statistics from training engines.
    pub fn fit(train: &[Engine]) -> Self {
        let settings: Vec<[f64; N_SETTINGS]> = train
            .iter()
            .flat_map(|e| e.settings.iter().copied())
            .collect();
        let centres = cluster_settings(&settings);
        let k = centres.len();
        let mut sum = vec![[0.0; N_SENSORS]; k];
        let mut sum_sq = vec![[0.0; N_SENSORS]; k];
        let mut count = vec![0.0; k];
        for engine in train {
            for (s, x) in engine.settings.iter().zip(&engine.sensors) {
                let c = nearest(&centres, s);
                count[c] += 1.0;
                for j in 0..N_SENSORS {
                    sum[c][j] += x[j];
                    sum_sq[c][j] += x[j] * x[j];
                }
            }
        }
        let mut mean = vec![[0.0; N_SENSORS]; k];
        let mut std = vec![[1.0; N_SENSORS]; k];
        let mut constant = [true; N_SENSORS];
        for c in 0..k {
            let n = f64::max(count[c], 1.0);
            for j in 0..N_SENSORS {
                let m = sum[c][j] / n;
                let var = (sum_sq[c][j] / n - m * m).max(0.0);
                mean[c][j] = m;
                // Relative floor: values printed with 2-4 decimals have
                // quantisation noise around 1e-6 of their magnitude.
                if var.sqrt() > 1e-6 * m.abs().max(1.0) {
                    std[c][j] = var.sqrt();
                    constant[j] = false;
                }
            }
        }
        Self {
            centres,
            mean,
            std,
            constant,
        }
    }

    /// Number of operating conditions found.
    pub fn n_conditions(&self) -> usize {
        self.centres.len()
    }

    /// Condition index of one row's settings.
    pub fn condition_of(&self, settings: &[f64; N_SETTINGS]) -> usize {
        nearest(&self.centres, settings)
    }

    /// Z-scored sensors of one row, using its condition's statistics.
    pub fn normalize(
        &self,
        settings: &[f64; N_SETTINGS],
        sensors: &[f64; N_SENSORS],
    ) -> [f64; N_SENSORS] {
        let c = self.condition_of(settings);
        let mut out = [0.0; N_SENSORS];
        for j in 0..N_SENSORS {
            out[j] = (sensors[j] - self.mean[c][j]) / self.std[c][j];
        }
        out
    }
}

fn scaled_distance(a: &[f64; N_SETTINGS], b: &[f64; N_SETTINGS]) -> f64 {
    (0..N_SETTINGS)
        .map(|i| ((a[i] - b[i]) / TOLERANCE[i]).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn nearest(centres: &[[f64; N_SETTINGS]], s: &[f64; N_SETTINGS]) -> usize {
    let mut best = 0;
    let mut best_d = f64::INFINITY;
    for (i, c) in centres.iter().enumerate() {
        let d = scaled_distance(c, s);
        if d < best_d {
            best_d = d;
            best = i;
        }
    }
    best
}

/// Leader clustering then five Lloyd iterations; centres sorted for a
/// deterministic order. Falls back to one cluster when the settings are not
/// discrete (more than `MAX_CONDITIONS` leaders).
pub fn cluster_settings(settings: &[[f64; N_SETTINGS]]) -> Vec<[f64; N_SETTINGS]> {
    let mut centres: Vec<[f64; N_SETTINGS]> = Vec::new();
    for s in settings {
        if centres.iter().all(|c| scaled_distance(c, s) > 1.0) {
            centres.push(*s);
            if centres.len() > MAX_CONDITIONS {
                centres.clear();
                break;
            }
        }
    }
    if centres.is_empty() {
        let n = settings.len().max(1) as f64;
        let mut mean = [0.0; N_SETTINGS];
        for s in settings {
            for i in 0..N_SETTINGS {
                mean[i] += s[i] / n;
            }
        }
        return vec![mean];
    }
    for _ in 0..5 {
        let mut sums = vec![[0.0; N_SETTINGS]; centres.len()];
        let mut counts = vec![0usize; centres.len()];
        for s in settings {
            let c = nearest(&centres, s);
            counts[c] += 1;
            for i in 0..N_SETTINGS {
                sums[c][i] += s[i];
            }
        }
        for (c, centre) in centres.iter_mut().enumerate() {
            if counts[c] > 0 {
                for i in 0..N_SETTINGS {
                    centre[i] = sums[c][i] / counts[c] as f64;
                }
            }
        }
    }
    centres.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_discrete_conditions_are_found_and_noise_is_one_condition() {
        let conditions = [
            [0.0, 0.0, 100.0],
            [10.0, 0.25, 100.0],
            [20.0, 0.7, 100.0],
            [25.0, 0.62, 60.0],
            [35.0, 0.84, 100.0],
            [42.0, 0.84, 100.0],
        ];
        let mut settings = Vec::new();
        for i in 0..600 {
            let mut s = conditions[i % 6];
            s[0] += (i % 7) as f64 * 0.001;
            s[1] += (i % 5) as f64 * 0.0001;
            settings.push(s);
        }
        assert_eq!(cluster_settings(&settings).len(), 6);
        let sea_level: Vec<_> = settings.iter().filter(|s| s[2] == 60.0).copied().collect();
        assert_eq!(cluster_settings(&sea_level).len(), 1);
    }

    #[test]
    fn normalisation_uses_each_conditions_own_statistics() {
        let mk = |setting: f64, value: f64| Engine {
            unit: 1,
            settings: vec![[setting, 0.0, 100.0]; 2],
            sensors: vec![[value; N_SENSORS], [value + 2.0; N_SENSORS]],
        };
        let train = vec![mk(0.0, 10.0), mk(20.0, 100.0)];
        let norm = ConditionNormalizer::fit(&train);
        assert_eq!(norm.n_conditions(), 2);
        let z = norm.normalize(&[20.0, 0.0, 100.0], &[102.0; N_SENSORS]);
        assert!((z[0] - 1.0).abs() < 1e-12);
        let z = norm.normalize(&[0.0, 0.0, 100.0], &[10.0; N_SENSORS]);
        assert!((z[3] + 1.0).abs() < 1e-12);
    }
}
