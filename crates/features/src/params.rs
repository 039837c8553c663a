//! Feature hyperparameters: the unchecked [`FeatureParams`] a caller fills in, the
//! [`ParamGuard`] check that turns them into [`FeatureValidParams`], and the
//! reasoning behind every default.
//!
//! Horizons are expressed in *readings at the asset's nominal cadence*, not in
//! seconds, so the same defaults work for a 1 Hz vibration feed, a per-minute
//! SCADA export and C-MAPSS cycles. See [`crate::state`] for how irregular
//! sampling turns a gap into decay.

use std::fmt;

use crate::seasonal::Seasonality;

/// Hyperparameters whose validity has not been checked yet (linfa's
/// params → checked params pattern).
pub trait ParamGuard {
    /// The checked hyperparameters.
    type Checked;
    /// The error a failed check returns.
    type Error: std::error::Error;
    /// Checks the parameters, returning a reference to the checked form.
    ///
    /// # Errors
    /// When a parameter is out of its documented range.
    fn check_ref(&self) -> Result<&Self::Checked, Self::Error>;
    /// Checks the parameters, returning the checked form by value.
    ///
    /// # Errors
    /// When a parameter is out of its documented range.
    fn check(self) -> Result<Self::Checked, Self::Error>;
}

/// Why a feature parameter or input was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureError {
    /// A hyperparameter is outside its valid range.
    InvalidParam {
        /// Parameter name, as spelled in [`FeatureParams`].
        name: &'static str,
        /// The offending value, rendered.
        value: String,
        /// What the valid range is.
        expected: &'static str,
    },
    /// The sensor list is empty or has duplicate names.
    InvalidSensors(String),
    /// An input slice does not have the length the spec requires.
    ShapeMismatch {
        /// What was being checked.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        actual: usize,
    },
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidParam {
                name,
                value,
                expected,
            } => {
                write!(f, "feature parameter {name} = {value}: expected {expected}")
            }
            Self::InvalidSensors(why) => write!(f, "invalid sensor list: {why}"),
            Self::ShapeMismatch {
                what,
                expected,
                actual,
            } => {
                write!(f, "{what}: expected length {expected}, got {actual}")
            }
        }
    }
}

impl std::error::Error for FeatureError {}

/// Most EWMA horizons (`half_lives`) a feature set may have.
pub(crate) const MAX_HORIZONS: usize = 8;

/// The checked feature hyperparameters. Only [`ParamGuard::check`] on
/// [`FeatureParams`] produces one, so code holding it never re-validates.
/// `Default` gives the documented defaults (which are valid by construction and
/// covered by a test).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureValidParams {
    pub(crate) half_lives: Vec<f64>,
    pub(crate) trend_horizon: usize,
    pub(crate) median_step: f64,
    pub(crate) mad_step: f64,
    pub(crate) warmup_readings: u32,
    pub(crate) resid_clip: f64,
    pub(crate) max_gap_ratio: f64,
    pub(crate) interval_step: f64,
    pub(crate) scale_floor_rel: f64,
    pub(crate) scale_floor_abs: f64,
    pub(crate) scale_floor_quantum: f64,
    pub(crate) scale_floor_spread: f64,
    pub(crate) seasonality: Seasonality,
    pub(crate) seasonal_periods: f64,
}

/// The default `scale_floor_spread` (see the defaults below).
pub(crate) const DEFAULT_SCALE_FLOOR_SPREAD: f64 = 0.1;

impl Default for FeatureValidParams {
    fn default() -> Self {
        Self {
            half_lives: vec![4.0, 32.0, 256.0],
            trend_horizon: 1,
            median_step: 0.01,
            mad_step: 0.005,
            warmup_readings: 32,
            resid_clip: 4.0,
            max_gap_ratio: 8.0,
            interval_step: 0.01,
            scale_floor_rel: 1e-4,
            scale_floor_abs: 1e-9,
            scale_floor_quantum: 0.5,
            scale_floor_spread: DEFAULT_SCALE_FLOOR_SPREAD,
            seasonality: Seasonality::Off,
            seasonal_periods: 7.0,
        }
    }
}

impl FeatureValidParams {
    /// EWMA half-lives in readings at the nominal cadence.
    pub fn half_lives(&self) -> &[f64] {
        &self.half_lives
    }
    /// Index into `half_lives` of the trend (rolling slope) horizon.
    pub fn trend_horizon(&self) -> usize {
        self.trend_horizon
    }
    /// The robust median's step per reading, in robust scales.
    pub fn median_step(&self) -> f64 {
        self.median_step
    }
    /// Valid readings per sensor before robust statistics leave warm-up.
    pub fn warmup_readings(&self) -> u32 {
        self.warmup_readings
    }
    /// Relative scale floor (fraction of |location|).
    pub fn scale_floor_rel(&self) -> f64 {
        self.scale_floor_rel
    }
    /// Absolute scale floor.
    pub fn scale_floor_abs(&self) -> f64 {
        self.scale_floor_abs
    }
    /// Scale floor as a fraction of the sensor's quantum.
    pub fn scale_floor_quantum(&self) -> f64 {
        self.scale_floor_quantum
    }
    /// Scale floor as a fraction of the sensor's spread over the trend horizon.
    pub fn scale_floor_spread(&self) -> f64 {
        self.scale_floor_spread
    }
    /// The seasonal profile learned per sensor (see [`crate::seasonal`]).
    pub fn seasonality(&self) -> Seasonality {
        self.seasonality
    }
    /// Periods an old seasonal profile remembers.
    pub fn seasonal_periods(&self) -> f64 {
        self.seasonal_periods
    }
}

/// Unchecked feature hyperparameters, set with builder methods and turned into
/// [`FeatureValidParams`] by [`ParamGuard::check`]. Defaults, and why:
///
/// - `half_lives` `[4, 32, 256]` readings: the short horizon is the *local level*
///   spike residuals are measured against (it follows a daily cycle sampled more
///   than ~50 times per cycle with negligible lag); the middle one is the level
///   drifts are judged by and the trend horizon; the long one is the baseline.
/// - `trend_horizon` 1 (the middle half-life).
/// - `median_step` 0.01: the stochastic-approximation median walks at most one
///   MAD per 100 readings, so a level shift stays visible against it for
///   hundreds of readings while a genuine re-baselining still completes.
/// - `mad_step` 0.005: half the median's, so the scale does not balloon when a
///   shift happens (doubling takes ~140 readings).
/// - `warmup_readings` 32: before that a sensor's robust location/scale are
///   seeded from its running mean/std (a median of three readings is not one).
/// - `resid_clip` 4: residuals beyond 4 residual scales are clipped before they
///   update that scale, so one spike cannot inflate it.
/// - `max_gap_ratio` 8: a gap decays state as if at most 8 readings were
///   missed; a machine back from a week offline is still compared with its
///   old baseline instead of being treated as new.
/// - `interval_step` 0.01: step of the median of the sampling interval
///   (regular sampling never moves it).
/// - `scale_floor_rel` 1e-4 and `scale_floor_abs` 1e-9: floors of every scale,
///   so a stuck sensor gives finite z-scores while a 1 % change of a stuck
///   value still scores about 100.
/// - `scale_floor_quantum` 0.5: no scale falls below half the sensor's
///   quantum (the smallest change seen between consecutive values), so a
///   quantised sensor stepping by one unit moves 2 sigma, not thousands.
/// - `scale_floor_spread` 0.1: no reading is measured in less than a tenth
///   of the sensor's standard deviation over the trend horizon (half-life
///   32 readings). A signal at zero most of the time (a disk idle between
///   writes of 10^7 bytes, a load balancer's error count) has a median
///   absolute deviation of zero, so a burst scored far past any threshold
///   (surprises of 10^2 to 10^15) and the zero readings after it kept
///   alarming for hundreds of readings: on the NAB corpus's
///   `ec2_disk_write_bytes_1ef3de` 67 % of rows flagged,
///   `art_load_balancer_spikes` 41 %, `ec2_network_in_5abac7` 51 %; with
///   the floor 2.2 %, 1.5 %, 2.1 % (all 58 files: 3.9 % → 1.6 % of rows
///   flagged, the same 68 of 116 labelled windows found). A
///   Gaussian sensor's robust scale is about its standard deviation, so the
///   floor binds only where the two disagree tenfold: the shape corpus,
///   the generated fleet and the peers' fleet raise the same alarms as
///   without it (it bound on 3 of the peers' million rows, one asset's
///   alarmed spike, whose surprise fell from 9.56-9.59 to 9.45-9.55). 0.2
///   found 5 windows fewer; 0.05 left 1.8 % flagged. The z-scores use it,
///   not the robust level and scale, which learn as before. (A floor on the
///   long-run spread, a state lane of its own, was tried in session 6 and
///   removed: it changed nothing on the corpus of that time and raised the
///   8-sensor fleets' false alarms. The trend horizon's variance is kept
///   anyway, so this one costs no state, and state saved before it
///   restores: the default is left out of the spec's state hash.)
/// - `seasonality` off: a profile costs state (2 KiB per asset for a daily
///   one at 8 sensors) and work per row; turn it on for signals with a daily
///   or weekly cycle (see [`crate::seasonal`], which applies a learned profile
///   only where it explains the signal). `seasonal_periods` 7: an old
///   profile remembers about a week of days (or seven weeks).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureParams(FeatureValidParams);

impl FeatureParams {
    /// Sets the EWMA half-lives (readings, strictly increasing, 1 to 8 of them).
    pub fn half_lives(mut self, half_lives: Vec<f64>) -> Self {
        self.0.half_lives = half_lives;
        self
    }
    /// Sets the trend horizon (an index into the half-lives).
    pub fn trend_horizon(mut self, idx: usize) -> Self {
        self.0.trend_horizon = idx;
        self
    }
    /// Sets the median step (fraction of the MAD per reading, in (0, 0.5]).
    pub fn median_step(mut self, step: f64) -> Self {
        self.0.median_step = step;
        self
    }
    /// Sets the MAD step (relative, per reading, in (0, 0.5]).
    pub fn mad_step(mut self, step: f64) -> Self {
        self.0.mad_step = step;
        self
    }
    /// Sets the warm-up length in valid readings (>= 2).
    pub fn warmup_readings(mut self, n: u32) -> Self {
        self.0.warmup_readings = n;
        self
    }
    /// Sets the residual clip in residual scales (> 1).
    pub fn resid_clip(mut self, clip: f64) -> Self {
        self.0.resid_clip = clip;
        self
    }
    /// Sets the largest gap (in nominal intervals) that counts for decay (>= 1).
    pub fn max_gap_ratio(mut self, ratio: f64) -> Self {
        self.0.max_gap_ratio = ratio;
        self
    }
    /// Sets the step of the sampling-interval median (in (0, 0.5]).
    pub fn interval_step(mut self, step: f64) -> Self {
        self.0.interval_step = step;
        self
    }
    /// Sets the scale floor as a fraction of the sensor's quantum (in [0, 10];
    /// 0 turns it off).
    pub fn scale_floor_quantum(mut self, fraction: f64) -> Self {
        self.0.scale_floor_quantum = fraction;
        self
    }
    /// Sets the scale floor as a fraction of the sensor's standard deviation
    /// over the trend horizon (in [0, 1]; 0 turns it off).
    pub fn scale_floor_spread(mut self, fraction: f64) -> Self {
        self.0.scale_floor_spread = fraction;
        self
    }
    /// Sets the seasonal profile (off, daily or weekly).
    pub fn seasonality(mut self, seasonality: Seasonality) -> Self {
        self.0.seasonality = seasonality;
        self
    }
    /// Sets how many periods an old seasonal profile remembers (in [1, 1000]).
    pub fn seasonal_periods(mut self, periods: f64) -> Self {
        self.0.seasonal_periods = periods;
        self
    }
    /// Sets the scale floors (relative in [0, 1], absolute > 0).
    pub fn scale_floors(mut self, rel: f64, abs: f64) -> Self {
        self.0.scale_floor_rel = rel;
        self.0.scale_floor_abs = abs;
        self
    }

    fn validate(&self) -> Result<(), FeatureError> {
        let p = &self.0;
        let hl = &p.half_lives;
        if hl.is_empty() || hl.len() > MAX_HORIZONS {
            return Err(invalid("half_lives", hl, "1 to 8 horizons"));
        }
        if hl
            .iter()
            .any(|h| !(h.is_finite() && *h >= 0.5 && *h <= 1e9))
        {
            return Err(invalid("half_lives", hl, "each in [0.5, 1e9] readings"));
        }
        if hl.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("half_lives", hl, "strictly increasing"));
        }
        if p.trend_horizon >= hl.len() {
            return Err(invalid(
                "trend_horizon",
                p.trend_horizon,
                "an index into half_lives",
            ));
        }
        check_range("median_step", p.median_step, 0.0, 0.5, "in (0, 0.5]")?;
        check_range("mad_step", p.mad_step, 0.0, 0.5, "in (0, 0.5]")?;
        if p.warmup_readings < 2 {
            return Err(invalid("warmup_readings", p.warmup_readings, ">= 2"));
        }
        check_range("resid_clip", p.resid_clip, 1.0, 1e6, "in (1, 1e6]")?;
        if !(p.max_gap_ratio.is_finite() && p.max_gap_ratio >= 1.0) {
            return Err(invalid("max_gap_ratio", p.max_gap_ratio, ">= 1"));
        }
        check_range("interval_step", p.interval_step, 0.0, 0.5, "in (0, 0.5]")?;
        if !(p.scale_floor_rel.is_finite() && (0.0..=1.0).contains(&p.scale_floor_rel)) {
            return Err(invalid("scale_floor_rel", p.scale_floor_rel, "in [0, 1]"));
        }
        check_range("scale_floor_abs", p.scale_floor_abs, 0.0, 1e300, "> 0")?;
        if !(p.scale_floor_quantum.is_finite() && (0.0..=10.0).contains(&p.scale_floor_quantum)) {
            return Err(invalid(
                "scale_floor_quantum",
                p.scale_floor_quantum,
                "in [0, 10]",
            ));
        }
        if !(p.scale_floor_spread.is_finite() && (0.0..=1.0).contains(&p.scale_floor_spread)) {
            return Err(invalid(
                "scale_floor_spread",
                p.scale_floor_spread,
                "in [0, 1]",
            ));
        }
        if !(p.seasonal_periods.is_finite() && (1.0..=1000.0).contains(&p.seasonal_periods)) {
            return Err(invalid(
                "seasonal_periods",
                p.seasonal_periods,
                "in [1, 1000]",
            ));
        }
        Ok(())
    }
}

fn invalid(name: &'static str, value: impl fmt::Debug, expected: &'static str) -> FeatureError {
    FeatureError::InvalidParam {
        name,
        value: format!("{value:?}"),
        expected,
    }
}

fn check_range(
    name: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<(), FeatureError> {
    if v.is_finite() && v > lo && v <= hi {
        Ok(())
    } else {
        Err(invalid(name, v, expected))
    }
}

impl ParamGuard for FeatureParams {
    type Checked = FeatureValidParams;
    type Error = FeatureError;

    fn check_ref(&self) -> Result<&FeatureValidParams, FeatureError> {
        self.validate()?;
        Ok(&self.0)
    }

    fn check(self) -> Result<FeatureValidParams, FeatureError> {
        self.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_params_pass_the_check() {
        assert!(FeatureParams::default().check().is_ok());
    }

    #[test]
    fn decreasing_half_lives_are_rejected_with_the_parameter_name() {
        let p = FeatureParams::default().half_lives(vec![32.0, 4.0]);
        let err = p.check().unwrap_err();
        assert!(err.to_string().contains("half_lives"), "{err}");
    }

    #[test]
    fn out_of_range_steps_and_indexes_are_rejected() {
        for p in [
            FeatureParams::default().median_step(0.0),
            FeatureParams::default().mad_step(f64::NAN),
            FeatureParams::default().trend_horizon(3),
            FeatureParams::default().warmup_readings(1),
            FeatureParams::default().resid_clip(0.5),
            FeatureParams::default().max_gap_ratio(0.5),
            FeatureParams::default().half_lives(vec![]),
        ] {
            assert!(p.check_ref().is_err(), "{p:?} should be rejected");
        }
    }
}
