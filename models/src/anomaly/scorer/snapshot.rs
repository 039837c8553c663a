//! Per-asset snapshots of a [`FleetScorer`]: everything that asset's future
//! scores depend on, as versioned, checksummed little-endian bytes, so the
//! cloud processor can checkpoint them with the log offset they reflect and,
//! after a crash, restore them and replay with bit-identical scores.
//!
//! # What is in it
//! The asset's feature block (robust location and scale, EWMAs, warm-up
//! counts, last timestamps: the `fieldpulse-features` snapshot, embedded as
//! is), its detector block (calibration weight and moments, covariance
//! weight, rows and rows since the last precision refresh, the alarm-rate
//! width and the run of alarming rows, the tail model's anchor, exceedance
//! flag and moments, the two CUSUMs, the current run of
//! repeated values, the longest recent run and the slow trend's eight values per sensor, its largest statistic and the sensor holding it) and, when the multivariate detector runs, its multivariate block
//! (covariance, precision, inverse conditional sigmas, per-sensor CUSUMs).
//! Nothing else is kept per asset. Not in it: the scorer-global report
//! counters of [`ScoreCounters`](super::ScoreCounters) (rows, warm-up rows,
//! rows without values, duplicates, out-of-order rows), which are totals over
//! the fleet and do not affect any score, and the per-row scratch buffers,
//! which every row overwrites before reading.
//!
//! # Byte format (magic `FPAS`, version 6; 5 had one slow-trend set (the
//! median's), 4 no slow-trend lanes, 3 no tail model and an 8-slot header;
//! all are refused)
//! The envelope of [`fieldpulse_features::snapshot`] (magic, version, three
//! zero bytes, total length; an FNV-1a 64 checksum last), then, all
//! little-endian:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 12 | 4 | sensors (u32) |
//! | 16 | 4 | feature lanes: sensors padded to 8 (u32) |
//! | 20 | 4 | multivariate lanes (u32) |
//! | 24 | 4 | detector block values, f64 (u32) |
//! | 28 | 4 | multivariate block values, f32; 0 when it is off (u32) |
//! | 32 | 8 | hash of the detector parameters and the feature spec (u64) |
//! | 40 | 4 | `F`: bytes of the embedded feature snapshot (u32) |
//! | 44 | F | the feature snapshot (`FPFS`, with its own header and checksum) |
//! | 44 + F | 8 × det | the detector block: 16 header slots (calibration weight, m1, m2, covariance weight, covariance rows, rows since refresh, width multiplier, alarming rows in a row, tail anchor, tail exceedance flag, tail weight, mean log ratio, tail alarm ratio, mean squared log ratio, largest slow-trend statistic, its sensor), then the positive and negative CUSUM, current run and longest recent run lanes, and the slow trend's two sets (on the median, then on the trend-horizon mean), each with the fast and slow averages of its input, learned mean, variance and inverse sd of their difference, learning weight, input at the last update and catching-up flag lanes (f64) |
//! | … | 4 × mv | the multivariate block: covariance and precision (lanes × lanes each), inverse conditional sigmas, CUSUM lanes (f32) |
//! | … | 8 | checksum |
//!
//! The parameter hash covers every detector parameter that changes state or
//! scores (all of them; `threshold` too unless the alarm-rate feedback, which targets it, is off), so state
//! is never restored into a scorer that would evolve it differently.

use fieldpulse_features::snapshot::{Fnv64, StateError, StateReader, StateWriter};

use super::{
    FleetScorer, D_ALARM_RUN, D_CAL_WIDEN, D_HDR, D_MV_N, D_MV_SINCE, D_TAIL_H, D_TAIL_H2,
    D_TAIL_M, D_TAIL_PREV, D_TAIL_Q, D_TAIL_W, D_TREND_MAX, D_TREND_TOP, MAX_WIDEN, TREND_GROUPS,
    TREND_INPUTS,
};
use crate::anomaly::params::{AnomalyError, DetectorValidParams};

/// Magic of a [`FleetScorer`] asset snapshot.
pub const SCORER_STATE_MAGIC: [u8; 4] = *b"FPAS";
/// Format version of a [`FleetScorer`] asset snapshot.
pub const SCORER_STATE_VERSION: u8 = 6;

/// Counts are f64 in the block: whole numbers up to 2^53 are exact.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// A stable hash of the detector parameters that shape state or scores, and
/// of the feature spec underneath.
fn detector_hash(p: &DetectorValidParams, feature_hash: u64) -> u64 {
    let mut h = Fnv64::default();
    h.write_u64(feature_hash);
    h.write_u64(u64::from(p.warmup_readings));
    for v in [
        p.spike_z,
        p.spike_baseline_z,
        p.cusum_k,
        p.cusum_h,
        p.cusum_clip,
        p.cusum_cap,
        p.drift_z,
        p.trend_z,
        p.trend_fast_half_life,
        p.trend_slow_half_life,
        p.trend_memory,
        p.trend_prior_rows,
        p.trend_prior_sd,
        p.trend_floor_sd,
        p.stuck_factor,
        p.stuck_min_run,
        p.stuck_memory,
    ] {
        h.write_f64(v);
    }
    h.write_u64(u64::from(p.relearn_after));
    h.write_u64(u64::from(p.mv_enabled));
    h.write_u64(p.mv_max_sensors as u64);
    h.write_f64(p.mv_half_life);
    h.write_u64(u64::from(p.mv_refresh));
    for v in [
        p.mv_shrinkage,
        p.mv_tail_z,
        p.mv_cusum_z,
        p.mv_cusum_h,
        p.calib_half_life,
        p.calib_winsor,
        p.calib_min_beta,
        p.calib_rate_step,
        p.calib_tail_p,
        p.calib_tail_step,
        p.calib_tail_memory,
        p.calib_tail_prior,
    ] {
        h.write_f64(v);
    }
    // The alarm-rate feedback steers towards the threshold's rate, and
    // re-anchoring counts alarms at it.
    if p.calib_rate_step > 0.0 || p.relearn_after > 0 || p.calib_tail_p > 0.0 {
        h.write_f64(p.threshold);
    }
    h.finish()
}

/// A snapshot's detector and multivariate blocks, checked, and its feature
/// snapshot (checked by the feature state itself).
struct Decoded<'a> {
    features: &'a [u8],
    det: Vec<f64>,
    mv: Vec<f32>,
}

impl FleetScorer {
    /// The serialised state of one asset: features, detectors, multivariate
    /// detector and calibration (format in [`self`](crate::anomaly::scorer::snapshot)).
    /// Scorer-global counters ([`Self::counters`]) are not in it: they are
    /// fleet totals for reports and affect no score.
    ///
    /// # Panics
    /// If `asset >= n_assets()`.
    pub fn asset_state(&self, asset: usize) -> Vec<u8> {
        let features = self.features.asset_state(asset);
        let det = &self.det.as_slice()[asset * self.det_stride..(asset + 1) * self.det_stride];
        let ts = self.trend_stride;
        let trend = &self.trend_lanes.as_slice()[asset * ts..(asset + 1) * ts];
        let mv = &self.mv.as_slice()[asset * self.mv_stride..(asset + 1) * self.mv_stride];
        let mut w = StateWriter::new(
            SCORER_STATE_MAGIC,
            SCORER_STATE_VERSION,
            32 + features.len() + 8 * (det.len() + trend.len()) + 4 * mv.len(),
        );
        w.put_len(self.n);
        w.put_len(self.np);
        w.put_len(self.mvp);
        w.put_len(self.det_stride + ts);
        w.put_len(self.mv_stride);
        w.put_u64(self.state_hash());
        w.put_len(features.len());
        w.put_bytes(&features);
        w.put_f64s(det);
        w.put_f64s(trend);
        w.put_f32s(mv);
        w.finish()
    }

    /// Replaces one asset's state with an [`Self::asset_state`] snapshot, so
    /// its scores continue exactly where the snapshot was taken. Everything is
    /// checked before anything is written: a refused restore leaves the asset
    /// as it was. Never panics, whatever `bytes` hold.
    ///
    /// # Errors
    /// [`AnomalyError::ShapeMismatch`] when `asset >= n_assets()`;
    /// [`AnomalyError::State`] naming why the bytes were refused: another
    /// kind, version, length or checksum, another shape (sensor count,
    /// lanes, block sizes), other detector parameters or feature spec, or
    /// values that break the state's invariants.
    pub fn restore_asset_state(&mut self, asset: usize, bytes: &[u8]) -> Result<(), AnomalyError> {
        if asset >= self.n_assets() {
            return Err(AnomalyError::ShapeMismatch {
                what: "asset index",
                expected: self.n_assets(),
                actual: asset,
            });
        }
        let d = self.decode_asset_state(bytes)?;
        // Checks the feature snapshot before it writes; the blocks below
        // were checked by the decode, so nothing can fail after it.
        self.features.restore_asset_state(asset, d.features)?;
        let (ds, ts, ms) = (self.det_stride, self.trend_stride, self.mv_stride);
        self.det.as_mut_slice()[asset * ds..(asset + 1) * ds].copy_from_slice(&d.det[..ds]);
        self.trend_lanes.as_mut_slice()[asset * ts..(asset + 1) * ts].copy_from_slice(&d.det[ds..]);
        self.mv.as_mut_slice()[asset * ms..(asset + 1) * ms].copy_from_slice(&d.mv);
        Ok(())
    }

    fn state_hash(&self) -> u64 {
        detector_hash(&self.p, self.features.spec().state_hash())
    }

    fn decode_asset_state<'a>(&self, bytes: &'a [u8]) -> Result<Decoded<'a>, StateError> {
        let mut r = StateReader::open(bytes, SCORER_STATE_MAGIC, SCORER_STATE_VERSION)?;
        r.expect_len("sensors", self.n)?;
        r.expect_len("feature lanes", self.np)?;
        r.expect_len("multivariate lanes", self.mvp)?;
        r.expect_len("detector block values", self.det_stride + self.trend_stride)?;
        r.expect_len("multivariate block values", self.mv_stride)?;
        r.expect_hash("detector parameters or feature spec", self.state_hash())?;
        let n_features = r.u32()? as usize;
        let features = r.bytes(n_features)?;
        let mut det = vec![0.0; self.det_stride + self.trend_stride];
        r.f64s(&mut det)?;
        let mut mv = vec![0.0f32; self.mv_stride];
        r.f32s(&mut mv)?;
        r.finish()?;
        self.check_detector_block(&det)?;
        self.check_mv_block(&mv)?;
        Ok(Decoded { features, det, mv })
    }

    /// Counts are whole numbers, CUSUMs within their caps, padding inert.
    fn check_detector_block(&self, det: &[f64]) -> Result<(), StateError> {
        let corrupt = |why: String| Err(StateError::Corrupt(why));
        for (slot, what) in [
            (D_MV_N, "covariance rows"),
            (D_MV_SINCE, "rows since refresh"),
            (D_ALARM_RUN, "alarming rows in a row"),
        ] {
            let v = det[slot];
            if !((0.0..=MAX_COUNT).contains(&v) && v.fract() == 0.0) {
                return corrupt(format!("{what} {v}"));
            }
        }
        let widen = det[D_CAL_WIDEN];
        if !(widen == 0.0 || (1.0..=MAX_WIDEN).contains(&widen)) {
            return corrupt(format!("calibration width {widen}"));
        }
        for (slot, what) in [
            (D_TAIL_Q, "tail anchor"),
            (D_TAIL_W, "tail index weight"),
            (D_TAIL_H, "tail index"),
            (D_TAIL_M, "tail ratio"),
            (D_TAIL_H2, "tail index mean square"),
        ] {
            let v = det[slot];
            if !(v.is_finite() && v >= 0.0) {
                return corrupt(format!("{what} {v}"));
            }
        }
        if !(det[D_TAIL_PREV] == 0.0 || det[D_TAIL_PREV] == 1.0) {
            return corrupt(format!("tail exceedance flag {}", det[D_TAIL_PREV]));
        }
        let trend = det[D_TREND_MAX];
        if !(trend.is_finite() && trend >= 0.0) {
            return corrupt(format!("largest slow trend {trend}"));
        }
        let top = det[D_TREND_TOP];
        if !((0.0..self.n as f64).contains(&top) && top.fract() == 0.0) {
            return corrupt(format!("slow trend sensor {top}"));
        }
        let (n, np, cap) = (self.n, self.np, self.cusum_cap_abs);
        for (side, lanes) in ["positive", "negative"]
            .into_iter()
            .zip(det[D_HDR..].chunks_exact(np))
        {
            if let Some(s) = (0..n).find(|s| !(0.0..=cap).contains(&lanes[*s])) {
                return corrupt(format!(
                    "sensor {s} {side} CUSUM {} outside [0, {cap}]",
                    lanes[s]
                ));
            }
            if lanes[n..].iter().any(|v| *v != 0.0) {
                return corrupt(format!("padding lanes of the {side} CUSUM are set"));
            }
        }
        let runs = &det[D_HDR + 2 * np..];
        for (what, lanes) in ["current run", "longest recent run"]
            .into_iter()
            .zip(runs.chunks_exact(np))
        {
            if let Some(s) = (0..n).find(|s| !((0.0..=MAX_COUNT).contains(&lanes[*s]))) {
                return corrupt(format!("sensor {s} {what} {}", lanes[s]));
            }
            if lanes[n..].iter().any(|v| *v != 0.0) {
                return corrupt(format!("padding lanes of the {what} are set"));
            }
        }
        let trend = &det[self.det_stride..];
        let names = [
            "fast average",
            "slow average",
            "mean",
            "variance",
            "inverse sd",
            "weight",
            "last input",
            "catching-up flag",
        ];
        for (g, lanes) in trend.chunks_exact(np).enumerate() {
            let (input, i) = (TREND_INPUTS[g / TREND_GROUPS], g % TREND_GROUPS);
            let what = format!("trend ({input}) {}", names[i]);
            // Averages, the mean and the last input: any finite value; the
            // variance, the inverse sd and the weight are not negative; the
            // weight at most 1, the flag 0 or 1.
            let ok = |v: f64| match i {
                0..=2 | 6 => v.is_finite(),
                5 => (0.0..=1.0).contains(&v),
                7 => v == 0.0 || v == 1.0,
                _ => v.is_finite() && v >= 0.0,
            };
            if let Some(s) = (0..n).find(|s| !ok(lanes[*s])) {
                return corrupt(format!("sensor {s} {what} {}", lanes[s]));
            }
            if lanes[n..].iter().any(|v| *v != 0.0) {
                return corrupt(format!("padding lanes of the {what} are set"));
            }
        }
        Ok(())
    }

    /// The per-sensor multivariate CUSUMs within their cap, padding inert.
    fn check_mv_block(&self, mv: &[f32]) -> Result<(), StateError> {
        if !self.mv_on {
            return Ok(());
        }
        let (n, mvp) = (self.n, self.mvp);
        let cus = &mv[2 * mvp * mvp + mvp..];
        let cap = self.mv_cusum_cap as f32;
        if let Some(s) = (0..n).find(|s| !(0.0..=cap).contains(&cus[*s])) {
            return Err(StateError::Corrupt(format!(
                "sensor {s} multivariate CUSUM {} outside [0, {cap}]",
                cus[s]
            )));
        }
        let padded = |m: &[f32]| {
            (0..mvp).any(|i| (0..mvp).any(|j| (i >= n || j >= n) && m[i * mvp + j] != 0.0))
        };
        if padded(&mv[..mvp * mvp])
            || padded(&mv[mvp * mvp..2 * mvp * mvp])
            || mv[2 * mvp * mvp + n..2 * mvp * mvp + mvp]
                .iter()
                .any(|v| *v != 0.0)
            || cus[n..].iter().any(|v| *v != 0.0)
        {
            return Err(StateError::Corrupt(
                "padding of the multivariate block is set".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
