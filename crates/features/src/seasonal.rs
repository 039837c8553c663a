//! Seasonal profiles (hour of day, hour of week), learned online per asset and
//! sensor, so a daily cycle neither alarms at its turning points nor hides an
//! anomaly at its peak.
//!
//! # Model
//! A sensor's value is `level + profile(phase) + noise`, where `phase` is the
//! reading's position in the period (UTC). The profile is kept at `B` bucket
//! centres (24 per day, or 168 per week) and read with linear interpolation
//! between the two nearest centres, so a smooth cycle sampled every minute is
//! not turned into a staircase. Each bucket is a weighted mean (triangular
//! kernel: weights `1 - f` and `f` for the two nearest centres) of the
//! readings' residuals from the de-seasonalised signal's slow level — a
//! debiased EWMA over about one period, which the cycle cannot move, unlike
//! the robust median, which partly tracks a slow cycle. Steps are
//! Robbins–Monro `weight / visits` while a bucket is young, then a floor that
//! remembers about `seasonal_periods` periods; each bucket moves by its own
//! error, so no step overshoots. The error is clipped at [`LEARN_CLIP`]
//! robust scales, so an anomaly teaches the profile little. The profile is
//! read re-centred (minus its mean over the buckets), so it and the level
//! cannot trade a constant.
//!
//! # When the profile is applied (per sensor)
//! Learning always runs; the *adjustment* — the kernel sees `x - profile`
//! instead of `x` — is switched on only when the profile explains the
//! signal: after at least [`MIN_PERIODS`] periods of data (fewer let a
//! random walk's recent days, which the profile has just averaged, pass for
//! a cycle), and while the variance of the residual *without* the profile is
//! at least three times the variance *with* it (both exponentially weighted
//! over about one period). It switches off again below 2× (hysteresis). A
//! random walk, a bursty counter or a flat quantised signal learns a small,
//! noisy profile that never passes the test, so their features stay
//! bit-identical to those with the profile off (a test checks it).
//!
//! While the adjustment is on, every feature of the sensor (levels, scales,
//! `resid_z`, `robust_z`, quantum) describes the de-seasonalised signal;
//! `RowScratch::repeat` still compares the raw values, so a sensor stuck
//! at one value is seen as stuck whatever the profile does.
//!
//! # State
//! Appended to the asset's block (and therefore to its snapshot): per bucket
//! and lane the profile, per lane its sum over buckets, the two residual
//! variances, the on/off flag, the last raw valid value and the slow level
//! with its weight, then per bucket its visit weight. Daily profiles of 8
//! sensors add 2.1 KiB per asset, weekly ones 12.5 KiB.

use crate::state::MAX_ABS_VALUE;

/// Residuals are clipped at this many robust scales before the profile
/// learns from them.
pub const LEARN_CLIP: f64 = 3.0;
/// Periods of data before a profile may be applied.
pub const MIN_PERIODS: f64 = 3.0;
/// Variance ratio (without / with the profile) that switches it on.
const ON_RATIO: f64 = 3.0;
/// Variance ratio below which an applied profile is switched off.
const OFF_RATIO: f64 = 2.0;
const HOUR_MS: i64 = 3_600_000;

/// Which cycle the profile learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seasonality {
    /// No profile (no state, no cost).
    #[default]
    Off,
    /// Hour of day: 24 buckets over 24 h (UTC).
    Daily,
    /// Hour of week: 168 buckets over 7 days (UTC, weeks start Thursday
    /// 00:00 like the Unix epoch; the phase is what matters, not the name).
    Weekly,
}

impl Seasonality {
    /// Buckets per period (0 when off).
    pub fn buckets(self) -> usize {
        match self {
            Self::Off => 0,
            Self::Daily => 24,
            Self::Weekly => 168,
        }
    }

    /// The period in milliseconds (0 when off).
    pub fn period_ms(self) -> i64 {
        self.buckets() as i64 * HOUR_MS
    }

    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    /// Parses `off`, `daily` or `weekly`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Some(Self::Off),
            "daily" | "day" => Some(Self::Daily),
            "weekly" | "week" => Some(Self::Weekly),
            _ => None,
        }
    }
}

impl std::fmt::Display for Seasonality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the profile lives in an asset block and how it is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeasonLayout {
    /// Offset of the region in the asset block.
    pub(crate) offset: usize,
    buckets: usize,
    period_ms: i64,
    np: usize,
    /// Periods the profile remembers once its buckets are old.
    memory_periods: f64,
}

/// Buffers the adjustment hands to the learning step (one row's worth).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeasonScratch {
    /// The values the kernel sees (`x - profile` where applied).
    pub(crate) adjusted: Vec<f64>,
    /// The re-centred, interpolated profile at this row's phase.
    profile: Vec<f64>,
    b0: usize,
    b1: usize,
    f: f64,
}

impl SeasonScratch {
    pub(crate) fn new(np: usize) -> Self {
        Self {
            adjusted: vec![f64::NAN; np],
            profile: vec![0.0; np],
            ..Self::default()
        }
    }
}

impl SeasonLayout {
    pub(crate) fn new(
        offset: usize,
        seasonality: Seasonality,
        np: usize,
        memory_periods: f64,
    ) -> Option<Self> {
        (seasonality != Seasonality::Off).then(|| Self {
            offset,
            buckets: seasonality.buckets(),
            period_ms: seasonality.period_ms(),
            np,
            memory_periods,
        })
    }

    /// Buckets per period.
    pub(crate) fn buckets(&self) -> usize {
        self.buckets
    }

    /// f64 values of the region.
    pub(crate) fn len(buckets: usize, np: usize) -> usize {
        (buckets + 7) * np + buckets
    }

    fn sum(&self) -> usize {
        self.buckets * self.np
    }
    fn v_with(&self) -> usize {
        self.sum() + self.np
    }
    fn v_without(&self) -> usize {
        self.sum() + 2 * self.np
    }
    fn active(&self) -> usize {
        self.sum() + 3 * self.np
    }
    fn last_raw(&self) -> usize {
        self.sum() + 4 * self.np
    }
    fn level(&self) -> usize {
        self.sum() + 5 * self.np
    }
    fn level_w(&self) -> usize {
        self.sum() + 6 * self.np
    }
    fn weights(&self) -> usize {
        self.sum() + 7 * self.np
    }

    /// Whether sensor `s` of the region currently has its profile applied.
    pub(crate) fn is_active(&self, region: &[f64], s: usize) -> bool {
        region[self.active() + s] > 0.0
    }

    /// The profile (re-centred) of sensor `s` at bucket `b`.
    pub(crate) fn bucket_value(&self, region: &[f64], b: usize, s: usize) -> f64 {
        region[b * self.np + s] - region[self.sum() + s] / self.buckets as f64
    }

    /// Fills `sc.adjusted` (what the kernel sees) and `sc.profile` for the
    /// row at `ts_ms`.
    #[inline]
    pub(crate) fn adjust(
        &self,
        region: &[f64],
        ts_ms: i64,
        values: &[f64],
        sc: &mut SeasonScratch,
    ) {
        let bucket_ms = (self.period_ms / self.buckets as i64) as f64;
        // Position in the period in buckets, relative to bucket centres.
        let pos = ts_ms.rem_euclid(self.period_ms) as f64 / bucket_ms - 0.5;
        let fl = pos.floor();
        let f = pos - fl;
        let b0 = (fl as i64).rem_euclid(self.buckets as i64) as usize;
        let b1 = if b0 + 1 == self.buckets { 0 } else { b0 + 1 };
        (sc.b0, sc.b1, sc.f) = (b0, b1, f);
        let inv_b = 1.0 / self.buckets as f64;
        let (p0, p1) = (&region[b0 * self.np..], &region[b1 * self.np..]);
        let sum = &region[self.sum()..];
        let active = &region[self.active()..];
        for (s, &x) in values.iter().enumerate() {
            let p = (1.0 - f) * p0[s] + f * p1[s] - sum[s] * inv_b;
            sc.profile[s] = p;
            sc.adjusted[s] = if active[s] > 0.0 { x - p } else { x };
        }
    }

    /// Learns from a row the kernel has learned: `valid` and `inv_scale` are
    /// the kernel's (per lane), `n_valid` its counts after the row, `dt_nom`
    /// the asset's nominal interval (ms) and `span_ms` the time since its
    /// first row. Overwrites `repeat` with repeats of the raw values.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn learn(
        &self,
        region: &mut [f64],
        values: &[f64],
        sc: &SeasonScratch,
        valid: &[f64],
        inv_scale: &[f64],
        n_valid: &[f64],
        repeat: &mut [f64],
        dt_nom: f64,
        span_ms: f64,
    ) {
        let np = self.np;
        let period = self.period_ms as f64;
        // Visits a bucket gets per period, and the step floor that remembers
        // `memory_periods` periods of them.
        let visits = if dt_nom > 0.0 {
            (period / (self.buckets as f64 * dt_nom)).max(1.0)
        } else {
            1.0
        };
        let step_floor = 1.0 / (self.memory_periods * visits);
        // The residual variances average over about one period of readings.
        let alpha = if dt_nom > 0.0 {
            (dt_nom / period).clamp(1e-6, 1.0)
        } else {
            1.0
        };
        let (b0, b1, f) = (sc.b0, sc.b1, sc.f);
        let (w0, w1) = (1.0 - f, f);
        let wi = self.weights();
        region[wi + b0] += w0;
        region[wi + b1] += w1;
        let a0 = w0 * (1.0 / region[wi + b0].max(1e-12)).max(step_floor);
        let a1 = w1 * (1.0 / region[wi + b1].max(1e-12)).max(step_floor);
        let mature = span_ms >= MIN_PERIODS * period;
        for (s, &x) in values.iter().enumerate() {
            let raw_ok = x.is_finite() && x.abs() <= MAX_ABS_VALUE;
            // Repeats of the raw value (the kernel compared adjusted ones).
            let last = region[self.last_raw() + s];
            let same = raw_ok
                && n_valid[s] > 1.0
                && (x - last).abs() <= 1e-9 * x.abs().max(last.abs()).max(1e-300);
            repeat[s] = if same { 1.0 } else { 0.0 };
            if !raw_ok || valid[s] == 0.0 {
                continue;
            }
            region[self.last_raw() + s] = x;
            let on = region[self.active() + s] > 0.0;
            let p = sc.profile[s];
            // The de-seasonalised value's slow level: a debiased EWMA over
            // about one period, which a cycle within the period cannot move
            // (the robust median can: it tracks a slow cycle in part).
            let lw = &mut region[self.level_w() + s];
            *lw = (1.0 - alpha) * *lw + 1.0;
            let lw = *lw;
            let level = &mut region[self.level() + s];
            let before = *level;
            *level += (x - p - *level) / lw;
            if n_valid[s] <= 1.0 {
                continue;
            }
            // Residuals from the level without and with the profile.
            let without = x - before;
            let with = without - p;
            let scale = if inv_scale[s] > 0.0 {
                1.0 / inv_scale[s]
            } else {
                0.0
            };
            let clip = LEARN_CLIP * scale;
            // Each bucket is a weighted mean of the residuals near its
            // centre (its own error, so a step never overshoots).
            let i0 = b0 * np + s;
            let d0 = a0 * (without - region[i0]).clamp(-clip, clip);
            region[i0] += d0;
            let i1 = b1 * np + s;
            let d1 = a1 * (without - region[i1]).clamp(-clip, clip);
            region[i1] += d1;
            region[self.sum() + s] += d0 + d1;
            let vw = &mut region[self.v_with() + s];
            *vw += alpha * (with * with - *vw);
            let vw = *vw;
            let vo = &mut region[self.v_without() + s];
            *vo += alpha * (without * without - *vo);
            let vo = *vo;
            let next = if !mature {
                false
            } else if on {
                vo >= OFF_RATIO * vw
            } else {
                vo >= ON_RATIO * vw
            };
            region[self.active() + s] = if next { 1.0 } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for s in [Seasonality::Off, Seasonality::Daily, Seasonality::Weekly] {
            assert_eq!(Seasonality::parse(s.name()), Some(s));
        }
        assert_eq!(Seasonality::parse("hourly"), None);
        assert_eq!(Seasonality::Daily.period_ms(), 86_400_000);
        assert_eq!(Seasonality::Weekly.buckets(), 168);
    }

    #[test]
    fn the_phase_interpolates_between_bucket_centres() {
        let l = SeasonLayout::new(0, Seasonality::Daily, 8, 7.0).unwrap();
        let mut region = vec![0.0; SeasonLayout::len(24, 8)];
        // Profile +1 at bucket 3 (03:30 centre), 0 elsewhere; sum = 1.
        region[3 * 8] = 1.0;
        region[l.sum()] = 1.0;
        let mut sc = SeasonScratch::new(8);
        let at = |h: f64| (h * 3_600_000.0) as i64;
        l.adjust(&region, at(3.5), &[0.0], &mut sc);
        assert!((sc.profile[0] - (1.0 - 1.0 / 24.0)).abs() < 1e-12);
        l.adjust(&region, at(4.0), &[0.0], &mut sc);
        assert!((sc.profile[0] - (0.5 - 1.0 / 24.0)).abs() < 1e-12);
        // Wraps around midnight, and before the epoch.
        l.adjust(&region, at(23.75) - 86_400_000, &[0.0], &mut sc);
        assert_eq!((sc.b0, sc.b1), (23, 0));
        assert!((sc.f - 0.25).abs() < 1e-9);
    }
}
