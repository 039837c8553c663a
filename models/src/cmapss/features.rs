//! Window features per engine cycle for the C-MAPSS protocol, computed by
//! `fieldpulse-features` (the same streaming code the cloud runs).
//!
//! An engine is one asset and a cycle one reading (timestamps one second
//! apart, so `slope_per_s` is a slope per cycle). The channels fed to the
//! streaming state are the informative sensors z-scored per operating
//! condition, plus a health index (those sensors sign-aligned with wear and
//! averaged). From the stream's output we keep, per channel, the EWMA means at
//! every half-life, the robust median and the rolling slope; we add the
//! channel's current value and the cycle count. Every value at cycle `t`
//! depends only on cycles `≤ t` (the streaming state cannot look ahead),
//! which is what lets training use every cycle as a sample and test use the
//! last one.

use fieldpulse_features::{compute_offline, FeatureError, FeatureParams, FeatureSpec, ParamGuard};

use super::conditions::ConditionNormalizer;
use super::{Engine, N_SENSORS};

/// Which sensors and windows to use; learned from training engines only.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFeatures {
    /// Indexes (0-based) of the sensors kept.
    pub sensors: Vec<usize>,
    /// +1 when a sensor rises with wear, −1 when it falls (health index).
    pub signs: Vec<f64>,
    stream: FeatureSpec,
    columns: Vec<usize>,
    names: Vec<String>,
}

/// Minimum |correlation| with life fraction for a sensor to be kept.
const MIN_ABS_CORRELATION: f64 = 0.1;

/// EWMA half-lives in cycles: ~ a week of flights, a month, a season.
pub const HALF_LIVES: [f64; 3] = [4.0, 16.0, 48.0];
/// Index of the half-life the rolling slope uses.
pub const TREND_HORIZON: usize = 2;

impl WindowFeatures {
    /// Chooses informative sensors: not constant in training, and correlated
    /// with the fraction of life consumed (`cycle / last cycle`) by at least
    /// `MIN_ABS_CORRELATION` in absolute value.
    ///
    /// # Errors
    /// Never with the built-in half-lives; kept for parameter changes.
    pub fn fit(train: &[Engine], norm: &ConditionNormalizer) -> Result<Self, FeatureError> {
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
        let n = f64::max(n, 1.0);
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
        Self::new(sensors, signs)
    }

    /// Builds the feature set for the given sensors and wear signs.
    ///
    /// # Errors
    /// [`FeatureError`] when the stream spec rejects the channels.
    pub fn new(sensors: Vec<usize>, signs: Vec<f64>) -> Result<Self, FeatureError> {
        let channels: Vec<String> = sensors
            .iter()
            .map(|j| format!("s{}", j + 1))
            .chain(std::iter::once("health".to_string()))
            .collect();
        let params = FeatureParams::default()
            .half_lives(HALF_LIVES.to_vec())
            .trend_horizon(TREND_HORIZON)
            .check()?;
        let stream = FeatureSpec::new(params, channels.clone())?;
        let mut wanted: Vec<String> = Vec::new();
        for ch in &channels {
            for hl in HALF_LIVES {
                wanted.push(format!("{ch}.ewma_mean_hl{hl}"));
            }
            wanted.push(format!("{ch}.median"));
            wanted.push(format!("{ch}.slope_per_s"));
        }
        let columns: Vec<usize> = wanted
            .iter()
            .filter_map(|w| stream.names().iter().position(|n| n == w))
            .collect();
        let mut names: Vec<String> = channels.iter().map(|c| format!("{c}.value")).collect();
        names.extend(columns.iter().map(|&c| stream.names()[c].clone()));
        names.push("cycle".to_string());
        Ok(Self {
            sensors,
            signs,
            stream,
            columns,
            names,
        })
    }

    /// Number of features per cycle.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// Feature names, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The channel values fed to the stream for one cycle.
    fn channels(&self, z: &[f64; N_SENSORS], out: &mut Vec<f64>) {
        let mut health = 0.0;
        for (&j, &sign) in self.sensors.iter().zip(&self.signs) {
            out.push(z[j]);
            health += sign * z[j];
        }
        out.push(health / self.sensors.len().max(1) as f64);
    }

    /// Row-major features for every cycle of `engine`.
    ///
    /// # Errors
    /// [`FeatureError`] on a shape mismatch (a bug, reported rather than
    /// panicking).
    pub fn engine_features(
        &self,
        engine: &Engine,
        norm: &ConditionNormalizer,
    ) -> Result<Vec<f64>, FeatureError> {
        let n_ch = self.sensors.len() + 1;
        let mut values = Vec::with_capacity(engine.len() * n_ch);
        for (s, x) in engine.settings.iter().zip(&engine.sensors) {
            self.channels(&norm.normalize(s, x), &mut values);
        }
        let ts: Vec<i64> = (1..=engine.len() as i64).map(|c| c * 1000).collect();
        let stream = compute_offline(&self.stream, &ts, &values)?;
        let nf = self.n_features();
        let mut out = Vec::with_capacity(engine.len() * nf);
        for t in 0..engine.len() {
            out.extend_from_slice(&values[t * n_ch..(t + 1) * n_ch]);
            let row = stream.row(t);
            out.extend(self.columns.iter().map(|&c| row[c]));
            out.push((t + 1) as f64);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_engine(n: usize) -> Engine {
        Engine {
            unit: 1,
            settings: vec![[0.0, 0.0, 100.0]; n],
            sensors: (0..n)
                .map(|t| {
                    let mut row = [0.0; N_SENSORS];
                    for (j, v) in row.iter_mut().enumerate() {
                        let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
                        *v = 100.0
                            + j as f64
                            + (t as f64 * 0.1) * sign
                            + ((t * 7 + j) % 5) as f64 * 0.01;
                    }
                    row
                })
                .collect(),
        }
    }

    #[test]
    fn features_at_a_cycle_do_not_depend_on_later_cycles() {
        let engine = synthetic_engine(50);
        let norm = ConditionNormalizer::fit(std::slice::from_ref(&engine));
        let spec = WindowFeatures::fit(std::slice::from_ref(&engine), &norm).expect("spec");
        assert_eq!(spec.sensors.len(), N_SENSORS);
        let full = spec.engine_features(&engine, &norm).expect("features");
        let part = spec
            .engine_features(&engine.truncated(20), &norm)
            .expect("features");
        assert_eq!(&full[..part.len()], &part[..]);
        assert_eq!(full.len(), 50 * spec.n_features());
        // value, 3 EWMAs, median and slope per channel, plus the cycle.
        assert_eq!(spec.n_features(), (N_SENSORS + 1) * 6 + 1);
    }

    #[test]
    fn slope_feature_tracks_a_linear_trend_per_cycle() {
        let engine = synthetic_engine(200);
        let norm = ConditionNormalizer::fit(std::slice::from_ref(&engine));
        let spec = WindowFeatures::fit(std::slice::from_ref(&engine), &norm).expect("spec");
        let x = spec.engine_features(&engine, &norm).expect("features");
        let nf = spec.n_features();
        let col = spec
            .names()
            .iter()
            .position(|n| n == "s1.slope_per_s")
            .expect("slope column");
        let slope = x[199 * nf + col];
        // Sensor 1 rises 0.1 per cycle; z-scored by its std over 200 cycles.
        let std = norm.std[0][0];
        assert!((slope * std - 0.1).abs() < 0.01, "slope {slope} std {std}");
    }
}
