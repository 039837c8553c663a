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

use crate::spec::LANE_CHUNK;
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
    /// `1 / buckets`, the re-centring's weight.
    inv_buckets: f64,
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
            inv_buckets: 1.0 / seasonality.buckets() as f64,
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
    #[inline(always)]
    pub(crate) fn adjust(
        &self,
        region: &[f64],
        ts_ms: i64,
        values: &[f64],
        sc: &mut SeasonScratch,
    ) {
        // Buckets are hours in both periods. The time within the period
        // with the period a constant of each branch: a multiply and shift
        // instead of a 64-bit division, which sits on the path to the
        // bucket loads and so to every feature of the row.
        let in_period = match self.buckets {
            24 => ts_ms.rem_euclid(24 * HOUR_MS),
            168 => ts_ms.rem_euclid(168 * HOUR_MS),
            _ => ts_ms.rem_euclid(self.period_ms),
        };
        // Position in the period in buckets, relative to bucket centres.
        let pos = in_period as f64 / HOUR_MS as f64 - 0.5;
        let fl = pos.floor();
        let f = pos - fl;
        // `pos` lies in [-0.5, buckets - 0.5): the floor's wrap-around
        // without a division.
        let (i, n) = (fl as i64, self.buckets as i64);
        let b0 = if i < 0 {
            i + n
        } else if i >= n {
            i - n
        } else {
            i
        } as usize;
        let b1 = if b0 + 1 == self.buckets { 0 } else { b0 + 1 };
        (sc.b0, sc.b1, sc.f) = (b0, b1, f);
        let inv_b = self.inv_buckets;
        let np = self.np;
        let (sum, active) = (self.sum(), self.active());
        // Lane chunks, like the feature kernel's (one vector op per line);
        // lanes past the sensors read NaN, so their adjusted value stays NaN
        // (missing) and their profile 0.
        for c in 0..np / LANE_CHUNK {
            let lo = c * LANE_CHUNK;
            let x = padded_chunk(values, lo);
            let (p0, p1) = (lanes(region, b0 * np + lo), lanes(region, b1 * np + lo));
            let (sm, on) = (lanes(region, sum + lo), lanes(region, active + lo));
            let (mut prof, mut adj) = ([0.0; LANE_CHUNK], [0.0; LANE_CHUNK]);
            for l in 0..LANE_CHUNK {
                let p = (1.0 - f) * p0[l] + f * p1[l] - sm[l] * inv_b;
                prof[l] = p;
                adj[l] = if on[l] > 0.0 { x[l] - p } else { x[l] };
            }
            sc.profile[lo..lo + LANE_CHUNK].copy_from_slice(&prof);
            sc.adjusted[lo..lo + LANE_CHUNK].copy_from_slice(&adj);
        }
    }

    /// Learns from a row the kernel has learned: `valid` and `inv_scale` are
    /// the kernel's (per lane), `n_valid` its counts after the row, `dt_nom`
    /// the asset's nominal interval (ms) and `span_ms` the time since its
    /// first row. Overwrites `repeat` with repeats of the raw values.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
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
        let (i0, i1) = (b0 * np, b1 * np);
        let (sum, v_with, v_without) = (self.sum(), self.v_with(), self.v_without());
        let (active, last_raw, level, level_w) =
            (self.active(), self.last_raw(), self.level(), self.level_w());
        // Lane chunks with masks instead of a branch per sensor (each lane
        // computes what the scalar rule would and keeps it only where the
        // rule applies), so it vectorises like the feature kernel. Lanes past
        // the sensors read NaN: never valid, their state untouched.
        for c in 0..np / LANE_CHUNK {
            let lo = c * LANE_CHUNK;
            let x = padded_chunk(values, lo);
            let (valid, isc, nv) = (lanes(valid, lo), lanes(inv_scale, lo), lanes(n_valid, lo));
            let (mut p0, mut p1, mut sm) = (
                lanes(region, i0 + lo),
                lanes(region, i1 + lo),
                lanes(region, sum + lo),
            );
            let (mut vw, mut vo, mut on) = (
                lanes(region, v_with + lo),
                lanes(region, v_without + lo),
                lanes(region, active + lo),
            );
            let (mut last, mut lvl, mut lw) = (
                lanes(region, last_raw + lo),
                lanes(region, level + lo),
                lanes(region, level_w + lo),
            );
            let prof = lanes(&sc.profile, lo);
            let mut rep = [0.0; LANE_CHUNK];
            for l in 0..LANE_CHUNK {
                // Finite and in range (NaN and infinities fail the comparison).
                let raw_ok = x[l].abs() <= MAX_ABS_VALUE;
                // Repeats of the raw value (the kernel compared adjusted ones).
                let same = raw_ok
                    && nv[l] > 1.0
                    && (x[l] - last[l]).abs() <= 1e-9 * x[l].abs().max(last[l].abs()).max(1e-300);
                rep[l] = if same { 1.0 } else { 0.0 };
                let learns = raw_ok && valid[l] != 0.0;
                let p = prof[l];
                // The de-seasonalised value's slow level: a debiased EWMA over
                // about one period, which a cycle within the period cannot move
                // (the robust median can: it tracks a slow cycle in part).
                let w = (1.0 - alpha) * lw[l] + 1.0;
                let before = lvl[l];
                let next_level = before + (x[l] - p - before) / w;
                // The profile learns from a sensor's second valid value on.
                let fits = learns && nv[l] > 1.0;
                // Residuals from the level without and with the profile.
                let without = x[l] - before;
                let with = without - p;
                let scale = if isc[l] > 0.0 { 1.0 / isc[l] } else { 0.0 };
                let clip = LEARN_CLIP * scale;
                // Each bucket is a weighted mean of the residuals near its
                // centre (its own error, so a step never overshoots).
                let d0 = a0 * clamp(without - p0[l], clip);
                let d1 = a1 * clamp(without - p1[l], clip);
                let next_vw = vw[l] + alpha * (with * with - vw[l]);
                let next_vo = vo[l] + alpha * (without * without - vo[l]);
                let applies = mature
                    && if on[l] > 0.0 {
                        next_vo >= OFF_RATIO * next_vw
                    } else {
                        next_vo >= ON_RATIO * next_vw
                    };
                last[l] = if learns { x[l] } else { last[l] };
                lw[l] = if learns { w } else { lw[l] };
                lvl[l] = if learns { next_level } else { before };
                p0[l] = if fits { p0[l] + d0 } else { p0[l] };
                p1[l] = if fits { p1[l] + d1 } else { p1[l] };
                sm[l] = if fits { sm[l] + (d0 + d1) } else { sm[l] };
                vw[l] = if fits { next_vw } else { vw[l] };
                vo[l] = if fits { next_vo } else { vo[l] };
                let applied = if applies { 1.0 } else { 0.0 };
                on[l] = if fits { applied } else { on[l] };
            }
            repeat[lo..lo + LANE_CHUNK].copy_from_slice(&rep);
            for (off, v) in [
                (i0, p0),
                (i1, p1),
                (sum, sm),
                (v_with, vw),
                (v_without, vo),
                (active, on),
                (last_raw, last),
                (level, lvl),
                (level_w, lw),
            ] {
                region[off + lo..off + lo + LANE_CHUNK].copy_from_slice(&v);
            }
        }
    }
}

/// `LANE_CHUNK` lanes of `v` from `lo`.
#[inline(always)]
fn lanes(v: &[f64], lo: usize) -> [f64; LANE_CHUNK] {
    <[f64; LANE_CHUNK]>::try_from(&v[lo..lo + LANE_CHUNK]).expect("lane chunk")
}

/// The row's values from lane `lo`, NaN (missing) past its sensors.
#[inline(always)]
fn padded_chunk(values: &[f64], lo: usize) -> [f64; LANE_CHUNK] {
    let mut x = [f64::NAN; LANE_CHUNK];
    if values.len() >= lo + LANE_CHUNK {
        x.copy_from_slice(&values[lo..lo + LANE_CHUNK]);
    } else if values.len() > lo {
        x[..values.len() - lo].copy_from_slice(&values[lo..]);
    }
    x
}

/// `v.clamp(-clip, clip)` as a select (the same result, signed zeros
/// included; `clip` is never NaN), so a lane loop vectorises.
#[inline(always)]
fn clamp(v: f64, clip: f64) -> f64 {
    let low = if v < -clip { -clip } else { v };
    if low > clip {
        clip
    } else {
        low
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
