//! Detector hyperparameters: unchecked [`DetectorParams`] (builder), checked
//! [`DetectorValidParams`], and the reasoning behind every default. Every
//! detector statistic is normalised so that 1.0 is its *nominal alarm level*;
//! the combined raw score is the largest of them, and calibration turns it
//! into a probability-like score in [0, 1].

use fieldpulse_features::{
    FeatureError, FeatureParams, FeatureValidParams, ParamGuard, StateError,
};

/// Why anomaly detection could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    /// A detector hyperparameter is out of range.
    #[error("detector parameter {name} = {value}: expected {expected}")]
    InvalidParam {
        /// Parameter name, as spelled in [`DetectorParams`].
        name: &'static str,
        /// The offending value, rendered.
        value: String,
        /// The valid range.
        expected: &'static str,
    },
    /// The feature parameters or sensor list were rejected.
    #[error("features")]
    Features(#[from] FeatureError),
    /// Asset state bytes were refused (another spec, shape or version,
    /// truncated or corrupt); the asset's state was left unchanged.
    #[error("asset state refused: {0}")]
    State(StateError),
    /// An input slice had the wrong length.
    #[error("{what}: expected length {expected}, got {actual}")]
    ShapeMismatch {
        /// What was checked.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
}

impl From<StateError> for AnomalyError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

/// Checked detector hyperparameters; only [`ParamGuard::check`] on
/// [`DetectorParams`] builds one. `Default` holds the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorValidParams {
    pub(crate) features: FeatureValidParams,
    pub(crate) warmup_readings: u32,
    pub(crate) spike_z: f64,
    pub(crate) spike_baseline_z: f64,
    pub(crate) cusum_k: f64,
    pub(crate) cusum_h: f64,
    pub(crate) cusum_clip: f64,
    pub(crate) cusum_cap: f64,
    pub(crate) drift_z: f64,
    pub(crate) trend_z: f64,
    pub(crate) trend_fast_half_life: f64,
    pub(crate) trend_slow_half_life: f64,
    pub(crate) trend_memory: f64,
    pub(crate) trend_prior_rows: f64,
    pub(crate) trend_prior_sd: f64,
    pub(crate) trend_floor_sd: f64,
    pub(crate) stuck_factor: f64,
    pub(crate) stuck_min_run: f64,
    pub(crate) stuck_memory: f64,
    pub(crate) relearn_after: u32,
    pub(crate) mv_enabled: bool,
    pub(crate) mv_max_sensors: usize,
    pub(crate) mv_half_life: f64,
    pub(crate) mv_refresh: u32,
    pub(crate) mv_shrinkage: f64,
    pub(crate) mv_tail_z: f64,
    pub(crate) mv_cusum_z: f64,
    pub(crate) mv_cusum_h: f64,
    pub(crate) calib_half_life: f64,
    pub(crate) calib_winsor: f64,
    pub(crate) calib_min_beta: f64,
    pub(crate) calib_rate_step: f64,
    pub(crate) calib_tail_p: f64,
    pub(crate) calib_tail_step: f64,
    pub(crate) calib_tail_memory: f64,
    pub(crate) calib_tail_prior: f64,
    pub(crate) threshold: f64,
}

impl Default for DetectorValidParams {
    fn default() -> Self {
        Self {
            features: FeatureValidParams::default(),
            warmup_readings: 128,
            spike_z: 6.0,
            spike_baseline_z: 3.0,
            cusum_k: 3.0,
            cusum_h: 12.0,
            cusum_clip: 8.0,
            cusum_cap: 4.0,
            drift_z: 3.0,
            trend_z: 5.0,
            trend_fast_half_life: 256.0,
            trend_slow_half_life: 1024.0,
            trend_memory: 8192.0,
            trend_prior_rows: 512.0,
            trend_prior_sd: 0.5,
            trend_floor_sd: 0.02,
            stuck_factor: 4.0,
            stuck_min_run: 16.0,
            stuck_memory: 10_000.0,
            relearn_after: 720,
            mv_enabled: true,
            mv_max_sensors: 64,
            mv_half_life: 256.0,
            mv_refresh: 64,
            mv_shrinkage: 0.1,
            mv_tail_z: 3.719,
            mv_cusum_z: 1.5,
            mv_cusum_h: 30.0,
            calib_half_life: 512.0,
            calib_winsor: 1.0,
            calib_min_beta: 0.05,
            calib_rate_step: 0.25,
            calib_tail_p: 0.01,
            calib_tail_step: 0.05,
            calib_tail_memory: 64.0,
            calib_tail_prior: 0.15,
            threshold: 0.9999,
        }
    }
}

impl DetectorValidParams {
    /// The feature parameters the detectors run on.
    pub fn features(&self) -> &FeatureValidParams {
        &self.features
    }
    /// Readings per asset (and per sensor) before scores leave 0.
    pub fn warmup_readings(&self) -> u32 {
        self.warmup_readings
    }
    /// Default `is_anomaly` threshold on the calibrated score.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
    /// Valid readings of a sensor after which every detector is learning
    /// and scoring: the feature warm-up plus two slow-trend half-lives, by
    /// when the slow trend has settled (2,080 readings by default).
    /// Before it, the calibration is still learning the sensor's tail.
    pub fn settle_readings(&self) -> f64 {
        f64::from(self.features.warmup_readings()) + 2.0 * self.trend_slow_half_life
    }
}

/// Unchecked detector hyperparameters (builder). Defaults, and why:
///
/// - `warmup_readings` 128: scores are 0 until an asset has 128 readings —
///   four times the feature warm-up, so the robust scale has had ~100
///   Robbins–Monro steps to catch slow excursions a 32-reading seed misses,
///   and the calibration has seen ~100 raw scores (measured: half that
///   doubles the false alarms of the first few hundred readings).
/// - `spike_z` 6 and `spike_baseline_z` 3: a spike is a residual of 6 sigma
///   against the local level *and* 3 robust sigma against the slow baseline
///   (the smaller of the two ratios is the statistic). The local level alone
///   would echo: after a spike the short EWMA is pulled up, and the next normal
///   readings look like negative spikes until it decays; against the baseline
///   they are normal. (Gaussian two-sided tail of 6 sigma: 2e-9; real
///   residuals are heavier-tailed, hence the calibration.)
/// - `cusum_k` 3, `cusum_h` 12: two-sided CUSUM on the robust z of each value
///   against its slow median. k = 3 robust sigma is above what a periodic
///   cycle or the slow load wander of a working machine reaches (a sinusoid's
///   peak is ~1 robust sigma of itself), so they do not accumulate; an 8-sigma
///   level shift crosses h in 3 readings, a 5-sigma one in 6.
/// - `cusum_clip` 8: each value adds at most 8 - k to the sum, so one spike
///   cannot push the CUSUM over h on its own (spikes are the spike detector's).
/// - `cusum_cap` 4: the sums stop at 4 h so the alarm clears within
///   ~3 h / k readings after the signal returns.
/// - `drift_z` 3: the middle-horizon level more than 3 robust sigma away from
///   the slow median is a drift, whatever its speed.
/// - `trend_*`: the slow trend, for ramps too slow for `drift_z` (the median
///   walks up to 0.01 robust sigma per reading, so it follows a ramp of 5
///   sigma over 2,000 readings within a fraction of a sigma). A fast
///   (`trend_fast_half_life` 256) and a slow (`trend_slow_half_life` 1,024)
///   EWMA of the robust median; their difference, in robust sigma, is about
///   the slope times the horizons' 1,100-reading lag gap on a ramp, and
///   the median's smoothed wander on a stationary signal. Its variance is
///   learned (half-life `trend_memory` 8,192 readings, from a prior spread
///   of `trend_prior_sd` 0.5 sigma weighted as `trend_prior_rows` 512
///   readings, never below `trend_floor_sd` 0.02 sigma) and its mean at
///   twice that weight, each update winsorised at the alarm level, once the
///   slow average has settled (two slow half-lives after the feature
///   warm-up, ~2,080 readings); it alarms at `trend_z` 5 learned standard
///   deviations from the mean. A steady slope (a machine that wears) is
///   learned as normal; a change of slope is not. Like the stuck run it is
///   scored past the calibration (its rate is its own definition's), and
///   below its alarm level it does not feed the calibration, which would
///   otherwise rise with a slow statistic and never alarm on it. Updated
///   every 16th learned reading; where the median catches up with a step
///   (walking at over half its largest speed while a reading stands over 3
///   robust sigma off it) the averages move with it instead of averaging
///   its walk. Measured with `fieldpulse eval shapes` (seeds 13, 3, 1, 21):
///   drifts found on sawtooth, Poisson, heavy-tailed and gappy series on
///   every seed, slow ramps on three, seasonal on two; broken periods on
///   sawtooths (three) and square waves (two); onset rates unchanged but
///   random walks seed 13 (0.07 -> 0.09). Not kept: a
///   prior of 0.2-0.35 sigma or `trend_z` 4 (random walks 0.07 -> 0.15-0.32
///   onsets per 1,000), horizons 128 / 512 (random walks 0.00 -> 0.21 on
///   seed 21), the mean at 4 times the variance's weight (random walks
///   0.07 / 0.00 -> 0.16 / 0.07 on seeds 13 / 21), learning after one
///   slow half-life instead of two (the trend speaks after ~1,060
///   readings: slow ramps' and seasonal drifts lost on two seeds, random
///   walks seed 21 0.00 -> 0.07; after half a half-life also square waves
///   seed 13 0.02 -> 0.09). The same statistic runs a second time on the
///   trend-horizon mean (session 13; the larger of the two counts): a
///   square wave's median wanders anywhere between its two levels and the
///   median walks at a bounded speed, while the mean is defined and follows
///   a ramp. With it, broken periods on square waves on all four seeds
///   (253 / 290 / 304 / 242 rows; 461 / - / - / 386 before), slow ramps'
///   drifts on all four (949-1,100), sawtooth drifts 144-240 rows and
///   gappy ones 32-96 rows sooner; no onset rate of the corpus changed.
///   On the mean alone heavy-tailed, bursty and seasonal drifts and
///   sawtooth broken periods were lost (the mean carries their outliers,
///   or keeps its value when the period breaks), so both run. 0 turns it
///   off.
/// - `stuck_factor` 4, `stuck_min_run` 16, `stuck_memory` 10,000: a stuck
///   sensor. A *run* is a value and its exact repeats (within 1e-9
///   relative); the statistic is the current run's length over
///   `4 × (longest recent completed run) + 16`, the longest run decaying with
///   a half-life of 10,000 readings. So a sensor that changes every reading
///   alarms after 20 repeats, a quantised one whose value sits for up to 70
///   readings after ~300, a machine that is off (constant) for 8 hours a
///   night learns that from its first night; a sensor that has never changed
///   never alarms (it has no completed run: a constant channel is normal).
///   Run lengths, not a repeat probability: repeats come in runs (a machine
///   off for hours), and a per-reading probability would call every long
///   off period impossible.
/// - `relearn_after` 720: a persistent new normal stops alarming. When an
///   asset has alarmed (at the default threshold) for 720 learned readings
///   in a row (12 hours at one a minute), its recent behaviour becomes its
///   baseline: each sensor's robust level jumps to its middle-horizon mean,
///   its robust and residual scales widen to that horizon's spread if it is
///   wider, the CUSUMs restart and the current runs count as seen. The slow
///   robust estimates alone move a fraction of a sigma per reading, so a
///   setpoint change of 40 sigma would otherwise alarm for thousands of
///   readings; the 720 alarming readings before it are what the episode
///   logic downstream uses to tell a sustained shift from a spike. 0 turns it
///   off.
/// - `mv_*`: Mahalanobis distance of the robust z vector with a covariance
///   shrunk 10 % towards its diagonal (half-life 256 readings, precision
///   refreshed every 64 readings — the expensive part is amortised; with a
///   256-reading half-life the covariance moves little in 64), nominal
///   level the chi-square quantile at z = 3.719 (one-sided 1e-4) via
///   Wilson–Hilferty; disabled above 64 sensors (quadratic cost). Per
///   sensor, the conditional residual `(P u)_j / sqrt(P_jj)` — the sensor
///   against its regression on all the others, N(0, 1) while the model
///   holds — feeds a CUSUM of its square with reference `k` = the chi-square
///   (1 dof) point at `mv_cusum_z` 1.5 (k ≈ 3.3, about 2.1 sigma), each
///   reading clipped at 2 k, and decision level `mv_cusum_h` 30, accumulating
///   once the covariance has `mv_half_life` readings behind it. One sensor
///   leaving the joint pattern (a flipped load response raises its mean
///   square to ~5–10) crosses it in tens of readings; d^2, which averages
///   the change over every sensor, barely moves. Measured with
///   `examples/quality_probe.rs` (200 assets × 1,000 readings, seeds 7 and
///   21): correlation-break recall 0.85 within 150 readings against 0.35–0.55
///   for a CUSUM on d^2 / S; h = 40 gives 0.65–0.75 with a third fewer false
///   alarms, h = 20 doubles them. The clip is low because noise is
///   autocorrelated: runs of moderately large residuals, not single big
///   ones, are what false alarms are made of.
/// - `calib_half_life` 512: the calibration tracks the asset's recent raw-score
///   distribution over ~a thousand readings; `calib_winsor` 1 caps what one
///   reading contributes at the nominal alarm level, so anomalies do not teach
///   the calibration that anomalies are normal; `calib_min_beta` 0.05 bounds
///   the Gumbel scale from below, so on a near-constant asset an alarm at
///   0.9999 still needs the raw score ~0.5 nominal units above its typical level.
/// - `calib_rate_step` 0.25: alarm-rate feedback. Each alarm run (alarming
///   rows after a quiet one) widens the asset's Gumbel scale by 25 % when it
///   ends, every other row narrows it by `0.25 × (1 - threshold) /
///   threshold`, so the width settles where onsets come at the nominal rate,
///   within `[1, 16]` times the fitted scale. It corrects, over thousands of
///   rows, what the fit and the tail model below miss, without learning any
///   single anomaly: a long one counts once. The step comes at the run's
///   end, not its onset: a statistic still rising (a burst's CUSUM) crossed
///   the just-widened level again a few rows later, so one excursion counted
///   as a staircase of onsets (random walks 0.25 -> 0.16 per 1,000 on seed
///   1, square waves 0.24 -> 0.05 on seed 3, with the tail model). Measured
///   against 0.1 (session 7): clean-fleet false alarms 0.78 -> 0.32 per
///   1,000 (`bench scoring`), the peers' fleet 0.35 -> 0.19, the shape
///   corpus's heavy-tailed and bursty shapes 0.66-0.85 -> 0.37-0.58, for
///   one correlation break fewer in 20 on two of four fleets. 0 turns it off.
/// - `calib_tail_p` 0.01, `calib_tail_step` 0.05, `calib_tail_memory` 64,
///   `calib_tail_prior` 0.15: the tail model, for raw scores whose tail is
///   heavier than the Gumbel fit (Student-t noise, bursty counters). An
///   anchor tracks the raw score exceeded at 1 % of rows (counting onsets of
///   exceedance, multiplicative steps of `calib_tail_step`); each exceedance
///   onset's log ratio to the anchor (capped at 2) feeds a generalised Pareto
///   fit by moments (half-life 64 onsets, a prior of 8 onsets at 0.15, an
///   exponential log ratio: a power law of index 0.15), whose shape is held
///   at or below 0 (a power law; bounded tails such as a sawtooth's resets
///   fit below it). The anchor times the fit's extrapolation from 1 % to
///   the threshold's rate is the tail model's alarm level; where it is above
///   the Gumbel fit's, the Gumbel scale is widened to meet it. Heavy-tailed
///   noise (seeds 13, 3, 1, 21): 0.37/0.44/0.58/0.46 -> 0.15/0.21/0.42/0.28
///   onsets per 1,000; the peers' fleet 0.22 -> 0.09 with the same
///   detections. Measured and not kept: a prior of 0.1 left the fleet at
///   0.18; a prior weight of 2 or 4 onsets lost 11-45 of its 150 spikes;
///   Hill's estimate alone (no bounded shapes) read a sawtooth's resets as
///   a tail and missed its spikes and variance changes; an anchor at 0.3 %
///   learned too slowly (heavy-tailed 0.22-0.58); shapes above 0 (log
///   ratios more spread than exponential, as bursts make them) cut the
///   bursty counters' false alarms by up to half but lost 15-38 of the
///   fleet's spikes; a second anchor at 0.1 % lost variance changes on
///   quantised, sawtooth and square shapes (and, with larger steps, level
///   shifts and 19 of the fleet's 20 drifts). 0 turns it off; it is off when
///   `calib_tail_p` is at or below `1 - threshold`.
/// - `threshold` 0.9999: `is_anomaly` when the reading is above the 99.99 %
///   point of the asset's recent score distribution as the Gumbel fit sees
///   it (and every detector statistic feeds that distribution, so it is one
///   threshold for all). Measured on generated fleets the realised rate was
///   0.5–1.4 alarms per 1,000 normal rows before the alarm-rate feedback and
///   the tail model, not 0.1: the two-moment fit under-estimates the tail.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetectorParams(DetectorValidParams);

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {
        $(#[$doc] pub fn $name(mut self, v: $ty) -> Self { self.0.$name = v; self })*
    };
}

impl DetectorParams {
    /// Sets the feature parameters (checked together with the detector ones).
    pub fn features(mut self, features: FeatureParams) -> Result<Self, AnomalyError> {
        self.0.features = features.check()?;
        Ok(self)
    }

    setter! {
        /// Sets the warm-up length in readings (>= the feature warm-up).
        warmup_readings: u32,
        /// Sets the nominal spike level in residual sigma (> 0).
        spike_z: f64,
        /// Sets how far (robust sigma) a spike must also stand from the baseline (> 0).
        spike_baseline_z: f64,
        /// Sets the CUSUM reference value in robust sigma (>= 0).
        cusum_k: f64,
        /// Sets the CUSUM decision level (> 0).
        cusum_h: f64,
        /// Sets the per-value CUSUM clip in robust sigma (> cusum_k).
        cusum_clip: f64,
        /// Sets the CUSUM cap as a multiple of the decision level (>= 1).
        cusum_cap: f64,
        /// Sets the nominal drift level in robust sigma (> 0).
        drift_z: f64,
        /// Sets the slow-trend alarm level in learned standard deviations (>= 0; 0 = off).
        trend_z: f64,
        /// Sets the half-life (readings) of the slow trend's fast average of its input (>= 8).
        trend_fast_half_life: f64,
        /// Sets the half-life (readings) of its slow average (> `trend_fast_half_life`).
        trend_slow_half_life: f64,
        /// Sets the half-life (readings) of the slow trend's learned mean and spread (>= 8).
        trend_memory: f64,
        /// Sets the weight, in readings, of the slow trend's prior spread (>= 1).
        trend_prior_rows: f64,
        /// Sets the slow trend's prior spread in robust sigma (> 0).
        trend_prior_sd: f64,
        /// Sets the slow trend's smallest spread in robust sigma (> 0, <= `trend_prior_sd`).
        trend_floor_sd: f64,
        /// Sets how many times the longest recent run a stuck run must reach (>= 1).
        stuck_factor: f64,
        /// Sets the readings a stuck run needs beyond `stuck_factor` runs (>= 1).
        stuck_min_run: f64,
        /// Sets the half-life (readings) of the longest recent run (>= 8).
        stuck_memory: f64,
        /// Sets the alarming readings in a row after which the baseline re-anchors (0 = never).
        relearn_after: u32,
        /// Turns the multivariate detector on or off.
        mv_enabled: bool,
        /// Sets the most sensors the multivariate detector handles (2..=256).
        mv_max_sensors: usize,
        /// Sets the covariance half-life in readings (>= 8).
        mv_half_life: f64,
        /// Sets how often (readings) the precision matrix is refreshed (>= 1).
        mv_refresh: u32,
        /// Sets the covariance shrinkage towards its diagonal (in [0, 1]).
        mv_shrinkage: f64,
        /// Sets the multivariate nominal level as a one-sided normal z (> 0).
        mv_tail_z: f64,
        /// Sets the per-sensor multivariate CUSUM reference as a normal z of the 1-dof chi-square (> 0).
        mv_cusum_z: f64,
        /// Sets the multivariate CUSUM decision level (> 0).
        mv_cusum_h: f64,
        /// Sets the calibration half-life in readings (>= 8).
        calib_half_life: f64,
        /// Sets the largest raw score one reading feeds the calibration (> 0).
        calib_winsor: f64,
        /// Sets the smallest Gumbel scale of the calibration (> 0).
        calib_min_beta: f64,
        /// Sets the alarm-rate feedback step (in [0, 0.5]; 0 = off).
        calib_rate_step: f64,
        /// Sets the tail anchor's exceedance rate per row (in [0, 0.5]; no tail model at 0 or at or below `1 - threshold`).
        calib_tail_p: f64,
        /// Sets the tail anchor's log step per exceedance onset (in (0, 1]).
        calib_tail_step: f64,
        /// Sets the half-life of the tail index, in exceedance onsets (>= 8).
        calib_tail_memory: f64,
        /// Sets the tail index's prior (in [0, 2]).
        calib_tail_prior: f64,
        /// Sets the default `is_anomaly` threshold (in (0, 1)).
        threshold: f64,
    }

    fn validate(&self) -> Result<(), AnomalyError> {
        let p = &self.0;
        let bad = |name: &'static str, value: String, expected: &'static str| {
            Err(AnomalyError::InvalidParam {
                name,
                value,
                expected,
            })
        };
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if p.warmup_readings < p.features.warmup_readings() {
            return bad(
                "warmup_readings",
                p.warmup_readings.to_string(),
                ">= the feature warm-up",
            );
        }
        for (name, v) in [
            ("spike_z", p.spike_z),
            ("spike_baseline_z", p.spike_baseline_z),
            ("cusum_h", p.cusum_h),
            ("drift_z", p.drift_z),
            ("mv_tail_z", p.mv_tail_z),
            ("mv_cusum_z", p.mv_cusum_z),
            ("mv_cusum_h", p.mv_cusum_h),
            ("calib_winsor", p.calib_winsor),
            ("calib_min_beta", p.calib_min_beta),
        ] {
            if !pos(v) {
                return bad(name, v.to_string(), "finite and > 0");
            }
        }
        if !(p.cusum_k.is_finite() && p.cusum_k >= 0.0) {
            return bad("cusum_k", p.cusum_k.to_string(), "finite and >= 0");
        }
        if !(p.cusum_clip.is_finite() && p.cusum_clip > p.cusum_k) {
            return bad(
                "cusum_clip",
                p.cusum_clip.to_string(),
                "finite and > cusum_k",
            );
        }
        if !(p.cusum_cap.is_finite() && p.cusum_cap >= 1.0) {
            return bad("cusum_cap", p.cusum_cap.to_string(), "finite and >= 1");
        }
        if !(2..=256).contains(&p.mv_max_sensors) {
            return bad("mv_max_sensors", p.mv_max_sensors.to_string(), "in 2..=256");
        }
        for (name, v) in [
            ("stuck_factor", p.stuck_factor),
            ("stuck_min_run", p.stuck_min_run),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return bad(name, v.to_string(), "finite and >= 1");
            }
        }
        for (name, v) in [
            ("mv_half_life", p.mv_half_life),
            ("trend_fast_half_life", p.trend_fast_half_life),
            ("trend_memory", p.trend_memory),
            ("calib_half_life", p.calib_half_life),
            ("stuck_memory", p.stuck_memory),
            ("calib_tail_memory", p.calib_tail_memory),
        ] {
            if !(v.is_finite() && v >= 8.0) {
                return bad(name, v.to_string(), "finite and >= 8 readings");
            }
        }
        if !(p.trend_z.is_finite() && p.trend_z >= 0.0) {
            return bad("trend_z", p.trend_z.to_string(), "finite and >= 0");
        }
        if !(p.trend_slow_half_life.is_finite() && p.trend_slow_half_life > p.trend_fast_half_life)
        {
            return bad(
                "trend_slow_half_life",
                p.trend_slow_half_life.to_string(),
                "finite and > trend_fast_half_life",
            );
        }
        if !(p.trend_prior_rows.is_finite() && p.trend_prior_rows >= 1.0) {
            return bad(
                "trend_prior_rows",
                p.trend_prior_rows.to_string(),
                "finite and >= 1",
            );
        }
        if !pos(p.trend_prior_sd) {
            return bad(
                "trend_prior_sd",
                p.trend_prior_sd.to_string(),
                "finite and > 0",
            );
        }
        if !(pos(p.trend_floor_sd) && p.trend_floor_sd <= p.trend_prior_sd) {
            return bad(
                "trend_floor_sd",
                p.trend_floor_sd.to_string(),
                "finite, > 0 and <= trend_prior_sd",
            );
        }
        if p.mv_refresh == 0 {
            return bad("mv_refresh", "0".into(), ">= 1");
        }
        if !(0.0..=1.0).contains(&p.mv_shrinkage) {
            return bad("mv_shrinkage", p.mv_shrinkage.to_string(), "in [0, 1]");
        }
        if !(0.0..=0.5).contains(&p.calib_rate_step) {
            return bad(
                "calib_rate_step",
                p.calib_rate_step.to_string(),
                "in [0, 0.5]",
            );
        }
        if !(0.0..=0.5).contains(&p.calib_tail_p) {
            return bad("calib_tail_p", p.calib_tail_p.to_string(), "in [0, 0.5]");
        }
        if !(p.calib_tail_step > 0.0 && p.calib_tail_step <= 1.0) {
            return bad(
                "calib_tail_step",
                p.calib_tail_step.to_string(),
                "in (0, 1]",
            );
        }
        if !(p.calib_tail_prior >= 0.0 && p.calib_tail_prior <= 2.0) {
            return bad(
                "calib_tail_prior",
                p.calib_tail_prior.to_string(),
                "in [0, 2]",
            );
        }
        if !(p.threshold > 0.0 && p.threshold < 1.0) {
            return bad("threshold", p.threshold.to_string(), "in (0, 1)");
        }
        Ok(())
    }
}

impl ParamGuard for DetectorParams {
    type Checked = DetectorValidParams;
    type Error = AnomalyError;

    fn check_ref(&self) -> Result<&DetectorValidParams, AnomalyError> {
        self.validate()?;
        Ok(&self.0)
    }

    fn check(self) -> Result<DetectorValidParams, AnomalyError> {
        self.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_detector_params_pass_the_check() {
        assert!(DetectorParams::default().check().is_ok());
    }

    #[test]
    fn invalid_detector_params_are_rejected_with_their_name() {
        let cases = [
            (DetectorParams::default().spike_z(0.0), "spike_z"),
            (DetectorParams::default().cusum_clip(1.0), "cusum_clip"),
            (DetectorParams::default().threshold(1.0), "threshold"),
            (
                DetectorParams::default().warmup_readings(4),
                "warmup_readings",
            ),
            (DetectorParams::default().mv_shrinkage(1.5), "mv_shrinkage"),
            (DetectorParams::default().mv_refresh(0), "mv_refresh"),
            (
                DetectorParams::default().trend_slow_half_life(100.0),
                "trend_slow_half_life",
            ),
            (
                DetectorParams::default().trend_floor_sd(1.0),
                "trend_floor_sd",
            ),
            (DetectorParams::default().stuck_factor(0.5), "stuck_factor"),
            (
                DetectorParams::default().stuck_memory(f64::INFINITY),
                "stuck_memory",
            ),
            (
                DetectorParams::default().calib_half_life(f64::NAN),
                "calib_half_life",
            ),
        ];
        for (p, name) in cases {
            let err = p.check().unwrap_err().to_string();
            assert!(err.contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn bad_feature_params_surface_through_the_detector_builder() {
        let res = DetectorParams::default().features(FeatureParams::default().median_step(2.0));
        assert!(matches!(res, Err(AnomalyError::Features(_))));
    }
}
