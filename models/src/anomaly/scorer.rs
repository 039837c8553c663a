//! [`FleetScorer`]: features + every detector + calibration, one row at a time.
//!
//! Per row (asset resolved to a dense index by the caller, once):
//! 1. the feature kernel updates the asset's state and yields each value's
//!    innovations against the state *before* the row;
//! 2. per sensor: the spike statistic `min(|resid_z| / spike_z, |robust_z| /
//!    spike_baseline_z)`, a two-sided CUSUM
//!    on the clipped robust z (level shifts), the drift statistic
//!    `|middle-horizon mean - slow median| / robust sigma / drift_z`, and the
//!    slow-trend statistic: the difference of a fast and a slow average of
//!    the robust median, against its own learned mean and spread (a ramp the
//!    median follows too closely for the drift statistic);
//! 3. per asset: the Mahalanobis distance of the robust-z vector under a shrunk
//!    covariance (broken correlations), each sensor's share `u_j (P u)_j`, and
//!    per sensor a CUSUM of its squared conditional residual `(P u)_j^2 / P_jj`
//!    (the sensor against its regression on the others) for one sensor that
//!    persistently stops following the rest;
//! 4. the raw score is the largest normalised statistic (1.0 = nominal alarm
//!    level) and the top sensor the one with the largest share;
//! 5. calibration: a Gumbel law fitted by moments to the asset's recent raw
//!    scores (winsorised at the nominal level so anomalies do not teach it that
//!    anomalies are normal) turns the raw score into `score = P(raw' <= raw)`,
//!    in [0, 1]. The max of several near-Gaussian statistics is what the Gumbel
//!    law describes, and a moment fit needs two numbers of state. Where the
//!    raw scores' tail is heavier (a tail model: an anchor at the 1 %
//!    exceedance level and a generalised Pareto fit above it) or alarms come
//!    too often (alarm-rate feedback), the Gumbel scale is widened.
//!
//! Everything a row's score uses is state from rows before it plus the row
//! itself: there is no look-ahead (a test scores a series and its truncations).
//!
//! Cost control: state is flat, cache-line aligned arrays (features f64,
//! covariance/precision f32), no allocation or map lookup per row, lane loops
//! the compiler vectorises (compiled for AVX-512, AVX2 and the baseline, the
//! widest the CPU supports chosen once), the O(S^3) precision refresh
//! amortised over `mv_refresh` rows, the decay `exp` cached by the feature
//! kernel, and the calibration's `exp(-exp(z))` computed for a block of rows at
//! once with an inline, vectorisable `exp` (the `gumbel` module).
//!
//! Checkpoints: [`FleetScorer::asset_state`] / [`FleetScorer::restore_asset_state`]
//! serialise and restore everything one asset's future scores depend on
//! (format and contents in [`snapshot`]); they copy the asset's blocks, off
//! the row loop.
//!
//! Periodic signals: the spike residual is taken against the short-horizon
//! level, which follows cycles sampled densely; cycles sampled sparsely end up
//! in the residual and robust scales instead, so their peaks stay near 1-2
//! sigma, below `cusum_k` + noise and far below `spike_z`. (Seasonal profiles by
//! hour of day would regain that sensitivity; they are not built.)

pub mod snapshot;

use fieldpulse_features::spec::LANE_CHUNK;
use fieldpulse_features::state::MAD_TO_SIGMA;
use fieldpulse_features::{AlignedVec, FeatureSpec, FleetFeatures, RowScratch, RowStatus};

use super::gumbel::{gumbel_score, gumbel_scores, gumbel_surprise};
use super::mv::{chi2_quantile, refresh_precision};
use super::params::{AnomalyError, DetectorValidParams};

/// A fixed chunk of lanes (straight-line code, one vector register per op).
macro_rules! chunk {
    (mut $s:expr, $c:expr) => {
        <&mut [_; LANE_CHUNK]>::try_from(&mut $s[$c * LANE_CHUNK..($c + 1) * LANE_CHUNK])
            .expect("lane chunk")
    };
    ($s:expr, $c:expr) => {
        <&[_; LANE_CHUNK]>::try_from(&$s[$c * LANE_CHUNK..($c + 1) * LANE_CHUNK])
            .expect("lane chunk")
    };
}

/// Copies of a method compiled with wider vector instructions, chosen at run
/// time by [`Simd`] (AVX2: 4 f64 / 8 f32 lanes per instruction; AVX-512: 8 /
/// 16). Rust never contracts `a * b + c` into an FMA on its own, so every copy
/// computes bit-identical results (a test compares them).
macro_rules! simd_copies {
    ($($name:ident = $features:literal
        => $inner:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*) => {
        $(
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $features)]
            unsafe fn $name(&mut self, $($arg: $ty),*) -> $ret {
                self.$inner($($arg),*)
            }
        )*
    };
}

/// f32 lanes per chunk of the multivariate part.
const MV_CHUNK: usize = 8;

/// A fixed chunk of f32 lanes of the multivariate part.
macro_rules! mv_chunk {
    (mut $s:expr, $c:expr) => {
        <&mut [f32; MV_CHUNK]>::try_from(&mut $s[$c * MV_CHUNK..($c + 1) * MV_CHUNK])
            .expect("mv chunk")
    };
    ($s:expr, $c:expr) => {
        <&[f32; MV_CHUNK]>::try_from(&$s[$c * MV_CHUNK..($c + 1) * MV_CHUNK]).expect("mv chunk")
    };
}

const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
const SQRT6_OVER_PI: f64 = 0.779_696_801_233_676_2;

// Detector header slots per asset (f64).
const D_CAL_W: usize = 0;
const D_CAL_M1: usize = 1;
const D_CAL_M2: usize = 2;
const D_MV_W: usize = 3;
const D_MV_N: usize = 4;
const D_MV_SINCE: usize = 5;
/// The calibration's width multiplier from alarm-rate feedback (0 = 1).
const D_CAL_WIDEN: usize = 6;
/// Learned rows in a row that alarmed at the default threshold (alarm onsets
/// are counted; a long enough run re-anchors the baseline).
const D_ALARM_RUN: usize = 7;
/// The tail anchor: the raw score whose exceedance onsets come at
/// `calib_tail_p` per row (0 until the asset's first scored row).
const D_TAIL_Q: usize = 8;
/// 1 when the previous learned row exceeded the tail anchor.
const D_TAIL_PREV: usize = 9;
/// Weight of the tail-index estimate, in onsets (the prior's included).
const D_TAIL_W: usize = 10;
/// The tail index: the mean log ratio of an exceedance onset's raw score
/// to the anchor (Hill's estimator, capped per onset at [`TAIL_LN_CAP`]).
const D_TAIL_H: usize = 11;
/// The alarm level over the anchor, from the tail's shape.
const D_TAIL_M: usize = 12;
/// The mean squared log ratio of exceedance onsets to the anchor.
const D_TAIL_H2: usize = 13;
/// The largest slow-trend statistic of the asset's sensors as of its last
/// update (the row loop reads this slot, not the trend's lanes).
const D_TREND_MAX: usize = 14;
/// The sensor holding it.
const D_TREND_TOP: usize = 15;
/// Largest width multiplier the alarm-rate feedback reaches.
const MAX_WIDEN: f64 = 16.0;
/// Largest width multiplier the tail model's alarm level reaches. Above the
/// feedback's: a sensor whose normal readings span decades (a disk idle
/// between writes of 10^4-10^8 bytes) has a tail model level that needs
/// 31-109× the Gumbel fit's width, which it learns from exceedances a
/// hundred times more frequent than alarms; capped at 16 like the feedback, such a disk kept
/// alarming at its largest writes (4 onsets per 1,000 rows on one seed of
/// the shape corpus, session 17).
const MAX_TAIL_WIDEN: f64 = 64.0;
/// Largest log ratio one exceedance onset adds to the tail index (a raw
/// score 7.4× the anchor): an anomaly teaches the tail little more than a
/// large normal excursion.
const TAIL_LN_CAP: f64 = 2.0;
/// Weight, in onsets, of the tail index's prior (`calib_tail_prior`).
const TAIL_PRIOR_W: f64 = 8.0;
// Two cache lines of header, so the lanes after it stay aligned.
const D_HDR: usize = 16;
/// Lane groups of the detector block after the header: positive and
/// negative CUSUM, current run, longest recent run.
const D_LANE_GROUPS: usize = 4;
/// Lane groups of one slow-trend set (its own array, out of the row loop's
/// cache lines): the fast and slow averages of its input, the learned mean
/// and variance of their difference (robust sigma), its inverse standard
/// deviation, the learning weight, the input at the last update and whether
/// the input was catching up with a step then (0 / 1).
const TREND_GROUPS: usize = 8;
/// Slow-trend sets per asset, by input: the robust median, then the
/// trend-horizon mean (the features' level). The median resists outliers,
/// so it sees a drift of a heavy-tailed or bursty signal and a period that
/// breaks while its mean stays; the mean is defined where the median is not
/// (a square wave's median wanders anywhere between its two levels) and
/// follows a ramp without the median's speed limit, so it sees a square
/// wave's broken period and a slow ramp's drift sooner. The statistic is
/// the larger of the two.
const TREND_SETS: usize = 2;
/// The input of each slow-trend set, in block order (for messages).
const TREND_INPUTS: [&str; TREND_SETS] = ["median", "mean"];
/// Learned rows per update of the slow trend: its horizons are hundreds of
/// rows, so a median sampled every 16th row changes its averages by a
/// rounding error, and the row loop only reads the detector header's
/// largest statistic.
const TREND_EVERY: u64 = 16;
/// [`TREND_EVERY`] as a float, for the per-update weights.
const TREND_EVERY_F: f64 = TREND_EVERY as f64;
/// Robust z of a reading beyond which the median, walking fast, is taken
/// to be catching up with a step (the CUSUM's reference `cusum_k`).
const TREND_STEP_Z: f64 = 3.0;

/// The score of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowScore {
    /// Calibrated score in [0, 1] (0 during the asset's warm-up).
    pub score: f64,
    /// `-log10(1 - score)` computed without rounding through the score: 4 at
    /// the default threshold, unbounded above, so rows whose scores round to
    /// 1 keep their order (0 during warm-up).
    pub surprise: f64,
    /// The largest normalised detector statistic (1.0 = nominal alarm level).
    pub raw: f64,
    /// Index of the sensor contributing most, if any contributed.
    pub top_sensor: Option<usize>,
    /// How the row was treated (learned, duplicate, out of order).
    pub status: RowStatus,
    /// Whether the asset was still warming up (score forced to 0).
    pub in_warmup: bool,
}

impl RowScore {
    /// Whether the row is an anomaly at `threshold`.
    pub fn is_anomaly(&self, threshold: f64) -> bool {
        self.score >= threshold
    }
}

/// Counts of rows by treatment, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreCounters {
    /// Rows scored.
    pub rows: u64,
    /// Rows scored 0 because their asset was still warming up.
    pub warmup_rows: u64,
    /// Rows without a single valid value.
    pub rows_without_values: u64,
    /// Rows with the same timestamp as the asset's previous row (scored, not learned).
    pub duplicate_rows: u64,
    /// Rows earlier than the asset's previous row (scored, not learned).
    pub out_of_order_rows: u64,
    /// Missing (NaN, infinite, out of range) values.
    pub missing_values: u64,
    /// Times an asset's baseline was re-anchored after alarming for
    /// `relearn_after` rows in a row.
    pub reanchors: u64,
}

/// Streaming anomaly scorer for a fleet of assets sharing one sensor layout.
#[derive(Debug, Clone)]
pub struct FleetScorer {
    p: DetectorValidParams,
    features: FleetFeatures,
    scratch: RowScratch,
    n: usize,
    np: usize,
    gate: f64,
    warmup: f64,
    det: AlignedVec<f64>,
    det_stride: usize,
    /// Slow-trend lanes per asset (`TREND_SETS` sets of `TREND_GROUPS` lane groups).
    trend_lanes: AlignedVec<f64>,
    trend_stride: usize,
    mv_on: bool,
    mv: AlignedVec<f32>,
    mv_stride: usize,
    mvp: usize,
    mv_decay: f64,
    mv_inv_q: f64,
    mv_min: f64,
    mv_cusum_k: f64,
    mv_cusum_clip: f64,
    mv_cusum_cap: f64,
    mv_cusum_min: f64,
    inv_mv_h: f64,
    cal_decay: f64,
    /// Alarm-rate feedback: width factor up at an alarm onset, down otherwise.
    rate_up: f64,
    rate_down: f64,
    /// Tail anchor (`calib_tail_p > 0`): its factor up at an exceedance
    /// onset and down on every other row, the tail index's decay per onset,
    /// `ln(calib_tail_p / nominal)`, and the anchor's first value as a
    /// standardised Gumbel quantile.
    tail_on: bool,
    tail_up: f64,
    tail_down: f64,
    tail_decay: f64,
    tail_span: f64,
    tail_init_z: f64,
    /// The Gumbel fit's alarm level above `m1`, in scales: `-ln(-ln(threshold)) - gamma`.
    alarm_span: f64,
    /// [`neg_z`] at the default threshold: `ln(-ln(threshold))` (a row
    /// alarms when its `neg_z` is at or below it).
    alarm_neg_z: f32,
    /// `cusum_cap * cusum_h`.
    cusum_cap_abs: f64,
    /// Per-reading decay of the longest recent run (`stuck_memory` half-life).
    stuck_decay: f64,
    /// Alarming rows in a row that re-anchor the baseline (`f64::INFINITY` = never).
    relearn_after: f64,
    /// `1 / spike_z`, `1 / cusum_h`, `1 / drift_z`, `1 / spike_baseline_z`.
    inv_levels: [f64; 4],
    /// The slow trend: its averages' weights per reading, `1 / trend_z`
    /// (0 = off), the learning weight's decay and floor, the floor of its
    /// variance, and the prior's variance, inverse sd and weight.
    trend: TrendConsts,
    /// Sensors fit one lane chunk (the const-shape detector copy applies).
    one_chunk: bool,
    /// Per asset, the last stuck statistic and its [`stuck_neg_z`]: a memo,
    /// not state (see [`stuck_nz_memo`]).
    stuck_memo: Vec<[f64; 2]>,
    evidence: Vec<f64>,
    uc: Vec<f32>,
    pu: Vec<f32>,
    work: Vec<f64>,
    warmup_rows: u64,
    rows_without_values: u64,
    reanchors: u64,
    simd: Simd,
}

/// Which compiled copy of the row loop runs (chosen once, from the CPU),
/// ordered from narrowest to widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Simd {
    /// Portable code (SSE2 on x86-64).
    Baseline,
    /// AVX2 + FMA: 4 f64 lanes per instruction.
    Avx2,
    /// AVX-512 (F, VL, DQ): 8 f64 lanes per instruction.
    Avx512,
}

/// Rows whose final `exp(-exp(z))` is computed together.
const SCORE_BLOCK: usize = 64;

impl FleetScorer {
    /// A scorer for `n_assets` assets with the given sensors.
    ///
    /// # Errors
    /// [`AnomalyError::Features`] when the sensor list is invalid.
    pub fn new(
        params: DetectorValidParams,
        sensors: Vec<String>,
        n_assets: usize,
    ) -> Result<Self, AnomalyError> {
        let spec = FeatureSpec::new(params.features.clone(), sensors)?;
        let n = spec.n_sensors();
        let mv_on = params.mv_enabled && n >= 2 && n <= params.mv_max_sensors;
        let np = spec.n_lanes();
        // f32 lanes of the multivariate part, padded to 8 (one AVX2 register).
        let mvp = n.div_ceil(MV_CHUNK) * MV_CHUNK;
        let mv_stride = if mv_on { 2 * mvp * mvp + 2 * mvp } else { 0 };
        let det_stride = D_HDR + D_LANE_GROUPS * np;
        let mv_min = (8 * n).max(64) as f64;
        let mv_cusum_k = chi2_quantile(1, params.mv_cusum_z);
        let mut res = Self {
            gate: f64::from(params.features.warmup_readings()),
            warmup: f64::from(params.warmup_readings),
            scratch: RowScratch::new(&spec),
            // Scores read no feature-only lanes (see `detector_only`).
            features: FleetFeatures::new(spec, 0).detector_only(),
            n,
            det: AlignedVec::new(),
            det_stride,
            trend_lanes: AlignedVec::new(),
            trend_stride: TREND_SETS * TREND_GROUPS * np,
            mv_on,
            mv: AlignedVec::new(),
            mv_stride,
            mv_decay: (-std::f64::consts::LN_2 / params.mv_half_life).exp(),
            mv_inv_q: 1.0 / chi2_quantile(n, params.mv_tail_z),
            mv_min,
            inv_mv_h: 1.0 / params.mv_cusum_h,
            mv_cusum_k,
            // Each reading adds at most k above the reference (see the params doc).
            mv_cusum_clip: 2.0 * mv_cusum_k,
            mv_cusum_cap: params.cusum_cap * params.mv_cusum_h,
            // Residuals are only as good as the precision behind them: the
            // CUSUMs start once the covariance has a half-life of history.
            mv_cusum_min: mv_min.max(params.mv_half_life),
            cal_decay: (-std::f64::consts::LN_2 / params.calib_half_life).exp(),
            rate_up: params.calib_rate_step,
            rate_down: 1.0 - params.calib_rate_step * (1.0 - params.threshold) / params.threshold,
            alarm_neg_z: (-params.threshold.ln()).ln() as f32,
            // The anchor must be more frequent than the alarms it extrapolates to.
            tail_on: params.calib_tail_p > 1.0 - params.threshold,
            tail_up: (params.calib_tail_step * (1.0 - params.calib_tail_p)).exp(),
            tail_down: (-params.calib_tail_step * params.calib_tail_p).exp(),
            tail_decay: (-std::f64::consts::LN_2 / params.calib_tail_memory).exp(),
            tail_span: (params.calib_tail_p / (1.0 - params.threshold)).ln(),
            tail_init_z: -(-(1.0 - params.calib_tail_p).ln()).ln() - EULER_GAMMA,
            alarm_span: -(-params.threshold.ln()).ln() - EULER_GAMMA,
            cusum_cap_abs: params.cusum_cap * params.cusum_h,
            stuck_decay: (-std::f64::consts::LN_2 / params.stuck_memory).exp(),
            relearn_after: if params.relearn_after == 0 {
                f64::INFINITY
            } else {
                f64::from(params.relearn_after)
            },
            inv_levels: [
                1.0 / params.spike_z,
                1.0 / params.cusum_h,
                1.0 / params.drift_z,
                1.0 / params.spike_baseline_z,
            ],
            trend: TrendConsts::new(&params),
            // (`mvp == np`: the multivariate lanes share the feature padding.)
            one_chunk: np == LANE_CHUNK,
            stuck_memo: Vec::new(),
            np,
            evidence: vec![0.0; np],
            mvp,
            uc: vec![0.0; np],
            pu: vec![0.0; mvp],
            work: vec![0.0; 2 * n * n],
            warmup_rows: 0,
            rows_without_values: 0,
            reanchors: 0,
            simd: simd_level(),
            p: params,
        };
        for _ in 0..n_assets {
            res.add_asset();
        }
        Ok(res)
    }

    /// Adds an asset with empty state; returns its index.
    pub fn add_asset(&mut self) -> usize {
        let idx = self.features.add_asset();
        self.det.grow(self.det_stride);
        self.trend_lanes.grow(self.trend_stride);
        let (n, t) = (self.n, self.trend);
        for set in 0..TREND_SETS {
            let [_, _, _, t_var, t_isd, t_w, _, _] =
                trend_groups(&mut self.trend_lanes, idx, set, self.np);
            // The trend's spread starts at its prior (padding lanes stay 0: inert).
            t_var[..n].fill(t.prior_var);
            t_isd[..n].fill(t.prior_isd);
            t_w[..n].fill(t.prior_w);
        }
        self.mv.grow(self.mv_stride);
        self.stuck_memo.push([0.0, f64::INFINITY]);
        idx
    }

    /// Number of assets.
    pub fn n_assets(&self) -> usize {
        self.features.n_assets()
    }

    /// The vector width this scorer runs at, and a way to force a narrower
    /// one (tests compare the compiled copies).
    #[cfg(test)]
    pub(crate) fn with_simd(mut self, simd: Simd) -> Option<Self> {
        (simd <= simd_supported(&simd_env())).then(|| {
            self.simd = simd;
            self
        })
    }

    /// Which compiled copy of the row loop runs: `"avx512"`, `"avx2"` or
    /// `"baseline"` (see [`simd_level`]).
    pub fn vector_code(&self) -> &'static str {
        match self.simd {
            Simd::Baseline => "baseline",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }

    /// The sensor names, in lane order.
    pub fn sensors(&self) -> &[String] {
        self.features.spec().sensors()
    }

    /// The checked parameters.
    pub fn params(&self) -> &DetectorValidParams {
        &self.p
    }

    /// Whether the multivariate detector runs (2..=`mv_max_sensors` sensors).
    pub fn multivariate_enabled(&self) -> bool {
        self.mv_on
    }

    /// Bytes of state per asset: features, detector lanes, covariance and precision.
    pub fn state_bytes_per_asset(&self) -> usize {
        self.features.state_bytes_per_asset()
            + (self.det_stride + self.trend_stride) * 8
            + self.mv_stride * 4
    }

    /// Counters of special rows and values so far (O(assets × sensors), see
    /// `FleetFeatures::counters`: for reports, not for every row).
    pub fn counters(&self) -> ScoreCounters {
        let f = self.features.counters();
        ScoreCounters {
            rows: f.rows,
            warmup_rows: self.warmup_rows,
            rows_without_values: self.rows_without_values,
            duplicate_rows: f.duplicate_rows,
            out_of_order_rows: f.out_of_order_rows,
            missing_values: f.missing_values,
            reanchors: self.reanchors,
        }
    }

    /// Scores one row of `asset` and learns from it (unless it is a duplicate
    /// or out of order). `values` has one entry per sensor; NaN means missing.
    ///
    /// # Panics
    /// If `asset >= n_assets()` or `values.len()` differs from the number of
    /// sensors (caller bugs; data problems never panic).
    #[inline]
    pub fn score_row(&mut self, asset: usize, ts_ms: i64, values: &[f64]) -> RowScore {
        #[cfg(target_arch = "x86_64")]
        match self.simd {
            // SAFETY: `simd` names a level only when the running CPU reports its features.
            Simd::Avx512 => return unsafe { self.score_row_avx512(asset, ts_ms, values) },
            // SAFETY: as above.
            Simd::Avx2 => return unsafe { self.score_row_avx2(asset, ts_ms, values) },
            Simd::Baseline => {}
        }
        self.score_row_impl(asset, ts_ms, values)
    }

    simd_copies! {
        score_row_avx2 = "avx2,fma"
            => score_row_impl(asset: usize, ts_ms: i64, values: &[f64]) -> RowScore;
        score_row_avx512 = "avx512f,avx512vl,avx512dq,avx2,fma"
            => score_row_impl(asset: usize, ts_ms: i64, values: &[f64]) -> RowScore;
        score_rows_avx2 = "avx2,fma"
            => score_rows(
                asset_idx: &[u32],
                ts_ms: &[i64],
                values: &[f64],
                scores: &mut [f64],
                top: &mut [u16]
            ) -> ();
        score_rows_avx512 = "avx512f,avx512vl,avx512dq,avx2,fma"
            => score_rows(
                asset_idx: &[u32],
                ts_ms: &[i64],
                values: &[f64],
                scores: &mut [f64],
                top: &mut [u16]
            ) -> ();
    }

    /// Rows in blocks: detectors and calibration state row by row, writing each
    /// row's standardised score; then the block's `exp(-exp(z))` in one
    /// vectorised pass (see [`gumbel`](super::gumbel)).
    #[inline(always)]
    fn score_rows(
        &mut self,
        asset_idx: &[u32],
        ts_ms: &[i64],
        values: &[f64],
        scores: &mut [f64],
        top: &mut [u16],
    ) {
        let n = self.n;
        let min_beta = self.p.calib_min_beta;
        let (mut raw, mut m1, mut m2, mut warm, mut widen, mut stuck) = (
            [0.0f64; SCORE_BLOCK],
            [0.0f64; SCORE_BLOCK],
            [0.0f64; SCORE_BLOCK],
            [0.0f64; SCORE_BLOCK],
            [1.0f64; SCORE_BLOCK],
            [0.0f64; SCORE_BLOCK],
        );
        let mut nz = [0.0f32; SCORE_BLOCK];
        // Blocks and rows as zipped iterators (the caller checked the
        // lengths): no index, so no bounds check per row and slice.
        let blocks = asset_idx
            .chunks(SCORE_BLOCK)
            .zip(ts_ms.chunks(SCORE_BLOCK))
            .zip(values.chunks(SCORE_BLOCK * n))
            .zip(scores.chunks_mut(SCORE_BLOCK))
            .zip(top.chunks_mut(SCORE_BLOCK));
        for ((((ids, ts), xs), out), tops) in blocks {
            let rows = ids.iter().zip(ts).zip(xs.chunks_exact(n)).zip(tops);
            // `0..SCORE_BLOCK` bounds `k` for the block arrays.
            for ((((&asset, &t_ms), x), tp), k) in rows.zip(0..SCORE_BLOCK) {
                let (m, t, _) = self.score_row_moments(asset as usize, t_ms, x);
                (raw[k], m1[k], m2[k], widen[k], stuck[k]) =
                    (m.raw, m.m1, m.m2, m.widen, m.stuck_nz);
                warm[k] = f64::from(u8::from(m.in_warmup));
                *tp = t.map_or(u16::MAX, |t| t.min(u16::MAX as usize - 1) as u16);
            }
            for k in 0..SCORE_BLOCK {
                nz[k] = neg_z(raw[k], m1[k], m2[k], warm[k], min_beta, widen[k], stuck[k]);
            }
            gumbel_scores(&nz[..out.len()], out);
        }
    }

    #[inline(always)]
    fn score_row_impl(&mut self, asset: usize, ts_ms: i64, values: &[f64]) -> RowScore {
        let (m, top, status) = self.score_row_moments(asset, ts_ms, values);
        let nz = standardised(m, self.p.calib_min_beta);
        RowScore {
            score: gumbel_score(nz),
            surprise: gumbel_surprise(nz),
            raw: m.raw,
            top_sensor: top,
            status,
            in_warmup: m.in_warmup,
        }
    }

    /// Features, detectors and the calibration update for one row; returns
    /// the row's raw score with the moments that score it, its top sensor and
    /// its status.
    #[inline(always)]
    fn score_row_moments(
        &mut self,
        asset: usize,
        ts_ms: i64,
        values: &[f64],
    ) -> (Moments, Option<usize>, RowStatus) {
        let status = self
            .features
            .update(asset, ts_ms, values, &mut self.scratch);
        let (raw, stuck, top) = if status.learned() {
            if self.one_chunk {
                // Up to 8 sensors: lane counts known at compile time.
                self.detect::<true, 1>(asset)
            } else {
                self.detect::<true, 0>(asset)
            }
        } else {
            self.detect_no_learn(asset)
        };
        (
            self.calibrate(asset, raw, stuck, status.learned()),
            top,
            status,
        )
    }

    /// Scores a batch of rows in order, writing one score and one top-sensor
    /// index (`u16::MAX` for none) per row. Row `i` has `values[i * S..(i + 1) * S]`.
    ///
    /// # Errors
    /// [`AnomalyError::ShapeMismatch`] when the slices disagree in length or an
    /// asset index is out of range.
    pub fn score_batch(
        &mut self,
        asset_idx: &[u32],
        ts_ms: &[i64],
        values: &[f64],
        scores: &mut [f64],
        top: &mut [u16],
    ) -> Result<(), AnomalyError> {
        let n = self.n;
        let rows = asset_idx.len();
        for (what, len, want) in [
            ("timestamps", ts_ms.len(), rows),
            ("values", values.len(), rows * n),
            ("scores", scores.len(), rows),
            ("top sensors", top.len(), rows),
        ] {
            if len != want {
                return Err(AnomalyError::ShapeMismatch {
                    what,
                    expected: want,
                    actual: len,
                });
            }
        }
        let n_assets = self.n_assets();
        // The largest index first (a vectorised reduction, not a search with
        // an exit branch per row); the offending one only when it fails.
        let max_idx = asset_idx.iter().copied().max().unwrap_or(0) as usize;
        if max_idx >= n_assets {
            let bad = asset_idx.iter().find(|a| **a as usize >= n_assets);
            return Err(AnomalyError::ShapeMismatch {
                what: "asset index",
                expected: n_assets,
                actual: bad.map_or(max_idx, |b| *b as usize),
            });
        }
        #[cfg(target_arch = "x86_64")]
        match self.simd {
            Simd::Avx512 => {
                // SAFETY: `simd` names a level only when the running CPU reports its features.
                unsafe { self.score_rows_avx512(asset_idx, ts_ms, values, scores, top) };
                return Ok(());
            }
            Simd::Avx2 => {
                // SAFETY: as above.
                unsafe { self.score_rows_avx2(asset_idx, ts_ms, values, scores, top) };
                return Ok(());
            }
            Simd::Baseline => {}
        }
        self.score_rows(asset_idx, ts_ms, values, scores, top);
        Ok(())
    }

    /// The slow trend of every sensor of `asset` (every [`TREND_EVERY`]
    /// learned rows), one set per input ([`TREND_SETS`]: the robust median
    /// and the trend-horizon mean): a fast and a slow average of the input
    /// (both held at it until the sensor's warm-up ends); their difference in
    /// robust sigma, against its learned mean, over its learned sd (`ti`
    /// tracks 1 / sd by a Newton step per update: no division or square
    /// root). Mean and spread are learned, and the statistic counts, once
    /// the slow average has settled (two slow half-lives); each update is
    /// winsorised at the alarm level, so a drift teaches them little. The
    /// largest statistic of both sets and its sensor go to the header.
    #[inline(always)]
    fn update_trend(&mut self, asset: usize, np: usize) {
        let (tc, gate) = (self.trend, self.gate);
        let sc = &self.scratch;
        let (mut best, mut top) = (0.0, 0.0);
        let (valid, nvalid, inv, uzs) = (
            &sc.valid()[..np],
            &sc.n_valid()[..np],
            &sc.robust_inv_scale()[..np],
            &sc.robust_z()[..np],
        );
        let inputs: [&[f64]; TREND_SETS] = [&sc.median()[..np], &sc.level()[..np]];
        for (set, input) in inputs.into_iter().enumerate() {
            let [t_fast, t_slow, t_mean, t_var, t_isd, t_w, t_last, t_snap] =
                trend_groups(&mut self.trend_lanes, asset, set, np);
            for c in 0..np / LANE_CHUNK {
                let (g, nv, x, inv, uz) = (
                    *chunk!(valid, c),
                    *chunk!(nvalid, c),
                    *chunk!(input, c),
                    *chunk!(inv, c),
                    *chunk!(uzs, c),
                );
                let (mut tf, mut ts) = (*chunk!(t_fast, c), *chunk!(t_slow, c));
                let (mut tm, mut tv) = (*chunk!(t_mean, c), *chunk!(t_var, c));
                let (mut ti, mut tw) = (*chunk!(t_isd, c), *chunk!(t_w, c));
                let (mut last, mut snap) = (*chunk!(t_last, c), *chunk!(t_snap, c));
                let mut st = [0.0f64; LANE_CHUNK];
                for l in 0..LANE_CHUNK {
                    let warm = nv[l] > gate;
                    // The input catching up with a step: a reading far off
                    // the median (robust z over TREND_STEP_Z) while the input
                    // walks at more than half the median's largest speed, and
                    // for as long as it keeps walking so. Both averages then
                    // move with it, their difference kept; otherwise they
                    // average it. (Averaged, the median's walk after a large
                    // step looked like a ramp and alarmed again, hundreds of
                    // readings after the step.)
                    let moved = x[l] - last[l];
                    let walking = moved.abs() * inv[l] > tc.walk;
                    let catching_up = walking && (uz[l].abs() > TREND_STEP_Z || snap[l] > 0.0);
                    let (f, s) = if catching_up {
                        (tf[l] + moved, ts[l] + moved)
                    } else {
                        (
                            tf[l] + tc.fast * g[l] * (x[l] - tf[l]),
                            ts[l] + tc.slow * g[l] * (x[l] - ts[l]),
                        )
                    };
                    snap[l] = if catching_up { 1.0 } else { 0.0 };
                    tf[l] = if warm { f } else { x[l] };
                    ts[l] = if warm { s } else { x[l] };
                    last[l] = x[l];
                    let gt = if nv[l] > tc.settle { g[l] } else { 0.0 };
                    let dev = (tf[l] - ts[l]) * inv[l] - tm[l];
                    st[l] = dev.abs() * ti[l] * gt * tc.inv_z;
                    let var = fmax(tv[l], tc.floor_var);
                    let lim = tc.z * var * ti[l];
                    let dw = fmin(fmax(dev, -lim), lim);
                    let w = tw[l] * gt;
                    // The mean learns at twice the variance's weight, so its
                    // own convergence (a steady slope learned as normal)
                    // inflates the variance less.
                    tm[l] += fmin(2.0 * w, 1.0) * dw;
                    tv[l] += w * (dw * dw - tv[l]);
                    let var = fmax(tv[l], tc.floor_var);
                    ti[l] *= 1.5 - 0.5 * var * ti[l] * ti[l];
                    tw[l] = fmax(tw[l] * (1.0 - gt * tc.w_decay), tc.w_min * gt);
                }
                *chunk!(mut t_fast, c) = tf;
                *chunk!(mut t_slow, c) = ts;
                *chunk!(mut t_mean, c) = tm;
                *chunk!(mut t_var, c) = tv;
                *chunk!(mut t_isd, c) = ti;
                *chunk!(mut t_w, c) = tw;
                *chunk!(mut t_last, c) = last;
                *chunk!(mut t_snap, c) = snap;
                let m = lane_max(st);
                if m > best {
                    best = m;
                    top = (c * LANE_CHUNK + st.iter().position(|v| *v == m).unwrap_or(0)) as f64;
                }
            }
        }
        let hdr = &mut self.det.as_mut_slice()[asset * self.det_stride..][..D_HDR];
        hdr[D_TREND_MAX] = best;
        hdr[D_TREND_TOP] = top;
    }

    /// Detectors for duplicate / out-of-order rows (rare): out of line so the
    /// hot row function holds one copy of the detector code.
    #[cold]
    #[inline(never)]
    fn detect_no_learn(&mut self, asset: usize) -> (f64, f64, Option<usize>) {
        self.detect::<false, 0>(asset)
    }

    /// Univariate detectors and the multivariate one; returns (raw, the
    /// largest stuck-run statistic, top sensor).
    /// Lane loops run over fixed chunks of [`LANE_CHUNK`] (padding lanes are
    /// inert: never valid, so no evidence and no covariance).
    #[inline(always)]
    fn detect<const LEARN: bool, const NC: usize>(
        &mut self,
        asset: usize,
    ) -> (f64, f64, Option<usize>) {
        // With NC > 0 the lane counts are constants (the caller checked they
        // match), so every slice below has a known length and the chunk
        // accesses need no bounds checks.
        let n = self.n;
        let np = if NC > 0 { NC * LANE_CHUNK } else { self.np };
        let nc = np / LANE_CHUNK;
        let det_stride = if NC > 0 {
            D_HDR + D_LANE_GROUPS * np
        } else {
            self.det_stride
        };
        if LEARN && every_nth_row(self.scratch.n_rows) {
            self.update_trend(asset, np);
        }
        let p = &self.p;
        let sc = &self.scratch;
        let det = self.det.block_mut(asset, det_stride);
        let (hdr, lanes) = det.split_at_mut(D_HDR);
        let (cpos, rest) = lanes.split_at_mut(np);
        let (cneg, rest) = rest.split_at_mut(np);
        let (runs, rest) = rest.split_at_mut(np);
        let rmaxs = &mut rest[..np];
        // The row's inputs: with one chunk, fixed-size arrays from one view
        // of the scratch (two checks); otherwise a slice per field.
        #[allow(clippy::type_complexity)]
        let ((s_valid, s_rz, s_uz, s_inv, s_rep), (nvalid, mean_t, med)): (
            (&[f64], &[f64], &[f64], &[f64], &[f64]),
            (&[f64], &[f64], &[f64]),
        ) = if NC == 1 {
            let l = sc.lanes::<LANE_CHUNK>().expect("one lane chunk");
            (
                (
                    &l.valid[..],
                    &l.resid_z[..],
                    &l.robust_z[..],
                    &l.robust_inv_scale[..],
                    &l.repeat[..],
                ),
                (&l.n_valid[..], &l.level[..], &l.median[..]),
            )
        } else {
            (
                (
                    &sc.valid()[..np],
                    &sc.resid_z()[..np],
                    &sc.robust_z()[..np],
                    &sc.robust_inv_scale()[..np],
                    &sc.repeat()[..np],
                ),
                (&sc.n_valid()[..np], &sc.level()[..np], &sc.median()[..np]),
            )
        };
        // One chunk: the row's evidence, clipped z and `P u` live in
        // fixed-size locals (no bounds checks); more: in the scorer's buffers.
        let (mut ev_one, mut uc_one, mut pu_one) = (
            [0.0f64; LANE_CHUNK],
            [0.0f32; LANE_CHUNK],
            [0.0f32; MV_CHUNK],
        );
        let (evidence, uc_all): (&mut [f64], &mut [f32]) = if NC == 1 {
            (&mut ev_one, &mut uc_one)
        } else {
            (&mut self.evidence[..np], &mut self.uc[..np])
        };
        let [inv_spike, inv_h, inv_drift, inv_spike_base] = self.inv_levels;
        let (k, clip, cap) = (p.cusum_k, p.cusum_clip, self.cusum_cap_abs);
        let (stuck_factor, stuck_min, stuck_decay) =
            (p.stuck_factor, p.stuck_min_run, self.stuck_decay);
        let mut any_valid = 0.0;
        let mut stuck_max = 0.0;
        // Chunks are copied in, computed on locals and stored back (see the
        // feature kernel: grouped loads are what vectorise).
        for c in 0..nc {
            let (valid, rz, uz, inv, rep) = (
                *chunk!(s_valid, c),
                *chunk!(s_rz, c),
                *chunk!(s_uz, c),
                *chunk!(s_inv, c),
                *chunk!(s_rep, c),
            );
            let (nv, mt, md) = (*chunk!(nvalid, c), *chunk!(mean_t, c), *chunk!(med, c));
            let (mut cp, mut cn) = (*chunk!(cpos, c), *chunk!(cneg, c));
            let (mut run, mut rmax) = (*chunk!(runs, c), *chunk!(rmaxs, c));
            let mut ev = [0.0f64; LANE_CHUNK];
            let mut st = [0.0f64; LANE_CHUNK];
            let mut uc = [0.0f32; LANE_CHUNK];
            for l in 0..LANE_CHUNK {
                let g = if nv[l] > self.gate { valid[l] } else { 0.0 };
                let u = fmin(fmax(uz[l], -clip), clip) * g;
                if LEARN {
                    cp[l] = fmin(fmax(cp[l] + u - k, 0.0), cap);
                    cn[l] = fmin(fmax(cn[l] - u - k, 0.0), cap);
                }
                if LEARN {
                    // Runs of repeated values (`run` counts the repeats of
                    // the current value): a new value completes the current
                    // run of `run + 1` readings (the longest recent one
                    // decays), a repeat extends it, a missing value leaves
                    // both as they are.
                    // (A sensor's first value starts a run, completing none.)
                    let changed = valid[l] - rep[l];
                    let completes = if nv[l] > 1.0 { changed } else { 0.0 };
                    rmax[l] = fmax(rmax[l] * stuck_decay, completes * (run[l] + 1.0));
                    run[l] = if changed > 0.0 { 0.0 } else { run[l] + rep[l] };
                }
                // Stuck: the run against the longest recent one; 0 until a
                // run has completed (a channel that never changed is normal).
                let seen_change = if rmax[l] > 0.0 { g } else { 0.0 };
                let stuck = run[l] * seen_change / (stuck_factor * rmax[l] + stuck_min);
                let cus = fmax(cp[l], cn[l]);
                // Drift against the robust scale from before the row (no extra division).
                let drift = (mt[l] - md[l]).abs() * inv[l] * g;
                st[l] = stuck;
                ev[l] = fmax(
                    fmax(
                        fmin(rz[l].abs() * inv_spike, uz[l].abs() * inv_spike_base) * g,
                        cus * inv_h,
                    ),
                    fmax(drift * inv_drift, stuck),
                );
                uc[l] = u as f32;
            }
            any_valid += valid.iter().sum::<f64>();
            stuck_max = fmax(stuck_max, lane_max(st));
            *chunk!(mut cneg, c) = cn;
            *chunk!(mut cpos, c) = cp;
            *chunk!(mut runs, c) = run;
            *chunk!(mut rmaxs, c) = rmax;
            *chunk!(mut evidence, c) = ev;
            *chunk!(mut uc_all, c) = uc;
        }
        if any_valid == 0.0 {
            self.rows_without_values += 1;
        }
        // The slow trend (updated every `TREND_EVERY` rows by
        // `update_trend`), like the stuck run a self-calibrated statistic
        // (its rate is set by its own definition), scored past the
        // calibration. It joins the evidence (the top sensor, what the
        // calibration learns) only at its alarm level: a slow statistic
        // below it would move the calibration with it.
        let trend = hdr[D_TREND_MAX] * f64::from(u8::from(any_valid > 0.0));
        stuck_max = fmax(stuck_max, trend);
        if trend >= 1.0 {
            let s = hdr[D_TREND_TOP] as usize;
            if s < np {
                evidence[s] = fmax(evidence[s], trend);
            }
        }
        let mut mv_raw = 0.0;
        if self.mv_on {
            let mvp = if NC > 0 { NC * MV_CHUNK } else { self.mvp };
            let mv_stride = if NC > 0 {
                2 * mvp * mvp + 2 * mvp
            } else {
                self.mv_stride
            };
            let blk = self.mv.block_mut(asset, mv_stride);
            let mc = mvp / MV_CHUNK;
            let (cov, rest) = blk.split_at_mut(mvp * mvp);
            let (prec, rest) = rest.split_at_mut(mvp * mvp);
            let (inv_sd, cus) = rest.split_at_mut(mvp);
            let (uc, pu): (&[f32], &mut [f32]) = if NC == 1 {
                (uc_all, &mut pu_one)
            } else {
                (&uc_all[..mvp], &mut self.pu[..mvp])
            };
            // P u as a sum of columns (P is symmetric): elementwise, vectorises.
            if mc == 1 {
                #[cfg(target_arch = "x86_64")]
                if self.simd != Simd::Baseline {
                    // SAFETY: any level above the baseline means the CPU has AVX2.
                    unsafe { pu_one_chunk_avx(prec, uc, pu) };
                } else {
                    pu_one_chunk(prec, uc, pu);
                }
                #[cfg(not(target_arch = "x86_64"))]
                pu_one_chunk(prec, uc, pu);
            } else {
                for c in 0..mc {
                    let (mut acc0, mut acc1) = ([0.0f32; MV_CHUNK], [0.0f32; MV_CHUNK]);
                    let mut j = 0;
                    while j + 1 < n {
                        let (c0, c1) = (
                            *mv_chunk!(prec[j * mvp..], c),
                            *mv_chunk!(prec[(j + 1) * mvp..], c),
                        );
                        let (u0, u1) = (uc[j], uc[j + 1]);
                        for l in 0..MV_CHUNK {
                            acc0[l] += c0[l] * u0;
                            acc1[l] += c1[l] * u1;
                        }
                        j += 2;
                    }
                    if j < n {
                        let (c0, u0) = (*mv_chunk!(prec[j * mvp..], c), uc[j]);
                        for l in 0..MV_CHUNK {
                            acc0[l] += c0[l] * u0;
                        }
                    }
                    let mut sum = [0.0f32; MV_CHUNK];
                    for l in 0..MV_CHUNK {
                        sum[l] = acc0[l] + acc1[l];
                    }
                    *mv_chunk!(mut pu, c) = sum;
                }
            }
            // Each sensor's share u_j (P u)_j of d^2 (padding lanes are 0), and
            // its conditional residual: (P u)_j / sqrt(P_jj) is u_j minus its
            // regression on every other sensor, in units of that regression's
            // residual sigma (N(0, 1) while the covariance model holds). A
            // CUSUM on its square per sensor catches one sensor leaving the
            // joint pattern (a flipped or lost load response) even when d^2,
            // which averages over all sensors, barely moves; each reading adds
            // at most k, so a spike alone cannot trip it.
            let mut d2 = 0.0f32;
            let learn_cus = LEARN && hdr[D_MV_N] >= self.mv_cusum_min;
            let (k, clip, cap) = (
                self.mv_cusum_k as f32,
                self.mv_cusum_clip as f32,
                self.mv_cusum_cap as f32,
            );
            let (inv_q, inv_h) = (self.mv_inv_q as f32, self.inv_mv_h as f32);
            for c in 0..mc {
                let (u, q, isd) = (*mv_chunk!(uc, c), *mv_chunk!(pu, c), *mv_chunk!(inv_sd, c));
                let mut cs = *mv_chunk!(cus, c);
                let (mut share, mut next, mut ev32) =
                    ([0.0f32; MV_CHUNK], [0.0f32; MV_CHUNK], [0.0f32; MV_CHUNK]);
                // `fmin32` / `fmax32`: a NaN can only be the first operand
                // here (the CUSUMs are clamped), where they return the second
                // like `f32::min` / `max`, without the NaN fix-up.
                for l in 0..MV_CHUNK {
                    share[l] = u[l] * q[l];
                    let z = q[l] * isd[l];
                    next[l] = fmin32(fmax32(cs[l] + fmin32(z * z, clip) - k, 0.0), cap);
                }
                // One branch per chunk, not a blend per lane.
                if learn_cus {
                    cs = next;
                }
                for l in 0..MV_CHUNK {
                    ev32[l] = fmax32(share[l] * inv_q, cs[l] * inv_h);
                }
                d2 += lane_sum32(share);
                *mv_chunk!(mut cus, c) = cs;
                let ev = <&mut [f64; MV_CHUNK]>::try_from(
                    &mut evidence[c * MV_CHUNK..(c + 1) * MV_CHUNK],
                )
                .expect("mv chunk");
                #[cfg(target_arch = "x86_64")]
                if self.simd != Simd::Baseline {
                    // SAFETY: any level above the baseline means the CPU has AVX2.
                    unsafe { max_into_avx(ev, &ev32) };
                } else {
                    max_into(ev, &ev32);
                }
                #[cfg(not(target_arch = "x86_64"))]
                max_into(ev, &ev32);
            }
            let d2 = f64::from(d2.max(0.0));
            mv_raw = d2 * self.mv_inv_q;
            if LEARN && any_valid > 0.0 && sc.n_rows > self.gate {
                let w = self.mv_decay * hdr[D_MV_W] + 1.0;
                hdr[D_MV_W] = w;
                hdr[D_MV_N] += 1.0;
                hdr[D_MV_SINCE] += 1.0;
                let a = (1.0 / w) as f32;
                if mc == 1 {
                    cov_update_one_chunk(cov, uc, a);
                } else {
                    let b = 1.0 - a;
                    for i in 0..n {
                        let ci = a * uc[i];
                        let row = &mut cov[i * mvp..(i + 1) * mvp];
                        for c in 0..mc {
                            let (mut r, u) = (*mv_chunk!(row, c), *mv_chunk!(uc, c));
                            for l in 0..MV_CHUNK {
                                r[l] = b * r[l] + ci * u[l];
                            }
                            *mv_chunk!(mut row, c) = r;
                        }
                    }
                }
                if hdr[D_MV_N] >= self.mv_min && hdr[D_MV_SINCE] >= f64::from(p.mv_refresh) {
                    hdr[D_MV_SINCE] = 0.0;
                    // Any level above the baseline means the CPU has AVX2 and FMA.
                    let avx2 = self.simd != Simd::Baseline;
                    if refresh_precision(cov, prec, n, mvp, p.mv_shrinkage, &mut self.work, avx2) {
                        for (j, v) in inv_sd[..n].iter_mut().enumerate() {
                            let pjj = prec[j * mvp + j];
                            *v = if pjj > 0.0 { 1.0 / pjj.sqrt() } else { 0.0 };
                        }
                    }
                }
            }
        }
        // The largest evidence (padding lanes hold 0) and the first sensor holding it.
        let mut top_ev = 0.0;
        for c in 0..nc {
            top_ev = fmax(top_ev, lane_max(*chunk!(evidence, c)));
        }
        let best = fmax(mv_raw, top_ev);
        // Which sensor holds it, without a data-dependent branch (the position
        // is random row to row, so a search loop mispredicts its exit).
        let mut top = usize::MAX;
        if top_ev > 0.0 {
            for c in 0..nc {
                let ev = chunk!(evidence, c);
                #[cfg(target_arch = "x86_64")]
                let mask = if self.simd != Simd::Baseline {
                    // SAFETY: any level above the baseline means the CPU has AVX2.
                    unsafe { lanes_equal_mask_avx(ev, top_ev) }
                } else {
                    lanes_equal_mask(ev, top_ev)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let mask = lanes_equal_mask(ev, top_ev);
                if mask != 0 {
                    top = c * LANE_CHUNK + mask.trailing_zeros() as usize;
                    break;
                }
            }
        }
        (best, stuck_max, (top != usize::MAX).then_some(top))
    }

    /// The asset's calibration moments before this row (`m1`, `m2` of its
    /// winsorised raw scores) and whether it is in warm-up; then, when
    /// learning, the moments' update from `raw`. Turning moments and raw
    /// score into a score ([`standardised`], `gumbel_score`) is left to the caller, so a batch
    /// does it for many rows at once, vectorised.
    #[inline(always)]
    fn calibrate(&mut self, asset: usize, raw: f64, stuck: f64, learn: bool) -> Moments {
        let rows = self.scratch.n_rows;
        let hdr = &mut self.det.block_mut(asset, self.det_stride)[..D_HDR];
        let in_warmup = rows <= self.warmup;
        self.warmup_rows += u64::from(in_warmup);
        let (m1, m2) = (hdr[D_CAL_M1], hdr[D_CAL_M2]);
        let min_beta = self.p.calib_min_beta;
        let beta0 = gumbel_scale(m1, m2, min_beta);
        let feedback = fmax(hdr[D_CAL_WIDEN], 1.0);
        let mut widen = feedback;
        if self.tail_on {
            // The tail model's alarm level (the anchor times the tail's
            // extrapolation to the nominal rate) as a width: the Gumbel
            // fit alarms at `m1 + alarm_span * beta0 * widen`. The fit
            // alone where it is the higher level.
            let level = hdr[D_TAIL_Q] * hdr[D_TAIL_M];
            widen = fmax(
                widen,
                fmin((level - m1) / (self.alarm_span * beta0), MAX_TAIL_WIDEN),
            );
        }
        let before = Moments {
            raw,
            m1,
            m2,
            widen,
            stuck_nz: stuck_nz_memo(&mut self.stuck_memo, asset, stuck, self.alarm_neg_z),
            in_warmup,
        };
        let mut relearn = false;
        if learn && !in_warmup && (self.rate_up > 0.0 || self.relearn_after.is_finite()) {
            // The row alarms at the default threshold when its score does:
            // `neg_z <= alarm_neg_z` is `raw` at or above the fit's level
            // `mu - alarm_neg_z beta` (up to the last bit's rounding), or a
            // stuck score at or below it. The level comes from the state
            // alone, so the comparison waits for no division after `raw`.
            let beta = beta0 * widen;
            let level = gumbel_location(m1, beta) - f64::from(self.alarm_neg_z) * beta;
            let alarm = raw >= level || before.stuck_nz <= f64::from(self.alarm_neg_z);
            let run = if alarm { hdr[D_ALARM_RUN] + 1.0 } else { 0.0 };
            relearn = run >= self.relearn_after;
            // An alarm run ends at its first quiet row, or when it re-anchors.
            let ended = (!alarm && hdr[D_ALARM_RUN] > 0.0) || relearn;
            hdr[D_ALARM_RUN] = run;
            if self.rate_up > 0.0 {
                // Alarm-rate feedback: each alarm run widens the calibration by
                // `rate_up`, every other row narrows it so that at the nominal
                // onset rate the two balance. Runs, not alarm rows, so one long
                // anomaly counts once; slow (thousands of rows), so it corrects a
                // tail heavier than the Gumbel fit without learning anomalies.
                // The step comes when the run ends: widened at its onset, a
                // rising statistic (a burst's CUSUM) crossed the new level
                // again a few rows later, one excursion counted as several.
                let next = feedback
                    * if ended {
                        1.0 + self.rate_up
                    } else {
                        self.rate_down
                    };
                hdr[D_CAL_WIDEN] = fmin(fmax(next, 1.0), MAX_WIDEN);
            }
        }
        if learn && rows > self.gate {
            let w = self.cal_decay * hdr[D_CAL_W] + 1.0;
            hdr[D_CAL_W] = w;
            let a = 1.0 / w;
            let r = raw.min(self.p.calib_winsor);
            hdr[D_CAL_M1] += a * (r - hdr[D_CAL_M1]);
            hdr[D_CAL_M2] += a * (r * r - hdr[D_CAL_M2]);
        }
        if learn && !in_warmup && self.tail_on {
            self.learn_tail(asset, raw, m1 + self.tail_init_z * beta0);
        }
        if relearn {
            self.reanchor(asset);
        }
        before
    }

    /// The tail model learns from a scored row: the anchor moves up by
    /// `tail_up` at an exceedance onset (a raw score above it after a row
    /// that was not) and down by `tail_down` on every other row, so its
    /// onsets settle at `calib_tail_p` per row; each onset adds its log ratio
    /// to the anchor to the tail index (Hill's estimator; onsets, so one
    /// long excursion counts once). The first scored row sets the anchor at
    /// the Gumbel fit's `1 - calib_tail_p` point (`gumbel_anchor`) and the
    /// index at its prior.
    #[inline(always)]
    fn learn_tail(&mut self, asset: usize, raw: f64, gumbel_anchor: f64) {
        let min_beta = self.p.calib_min_beta;
        let hdr = &mut self.det.block_mut(asset, self.det_stride)[..D_HDR];
        let q = hdr[D_TAIL_Q];
        if q == 0.0 {
            let prior = self.p.calib_tail_prior;
            hdr[D_TAIL_Q] = fmax(gumbel_anchor, min_beta);
            hdr[D_TAIL_W] = TAIL_PRIOR_W;
            hdr[D_TAIL_H] = prior;
            hdr[D_TAIL_H2] = 2.0 * prior * prior;
            hdr[D_TAIL_M] = tail_ratio(prior, 2.0 * prior * prior, TAIL_PRIOR_W, self.tail_span);
            return;
        }
        let exceeds = raw > q;
        if exceeds && hdr[D_TAIL_PREV] == 0.0 {
            let w = self.tail_decay * hdr[D_TAIL_W] + 1.0;
            let ln_ratio = fmin((raw / q).ln(), TAIL_LN_CAP);
            hdr[D_TAIL_W] = w;
            hdr[D_TAIL_H] += (ln_ratio - hdr[D_TAIL_H]) / w;
            hdr[D_TAIL_H2] += (ln_ratio * ln_ratio - hdr[D_TAIL_H2]) / w;
            hdr[D_TAIL_M] = tail_ratio(hdr[D_TAIL_H], hdr[D_TAIL_H2], w, self.tail_span);
            hdr[D_TAIL_Q] = q * self.tail_up;
        } else {
            hdr[D_TAIL_Q] = fmax(q * self.tail_down, min_beta);
        }
        hdr[D_TAIL_PREV] = if exceeds { 1.0 } else { 0.0 };
    }

    /// The asset's recent behaviour becomes its baseline (it alarmed for
    /// `relearn_after` rows in a row): robust levels and scales re-anchored
    /// by the feature state, CUSUMs restarted, current runs of repeated
    /// values counted as seen, the alarm run reset.
    #[cold]
    #[inline(never)]
    fn reanchor(&mut self, asset: usize) {
        self.features.reanchor(asset);
        let np = self.np;
        let det =
            &mut self.det.as_mut_slice()[asset * self.det_stride..(asset + 1) * self.det_stride];
        det[D_ALARM_RUN] = 0.0;
        det[D_TREND_MAX] = 0.0;
        det[D_TREND_TOP] = 0.0;
        let lanes = &mut det[D_HDR..];
        lanes[..2 * np].fill(0.0);
        let (runs, rmaxs) = lanes[2 * np..].split_at_mut(np);
        for (run, rmax) in runs.iter().zip(rmaxs.iter_mut()) {
            *rmax = fmax(*rmax, *run);
        }
        // The trend's averages restart where they would sit behind the
        // re-anchored median on the slope their learned mean difference
        // stands for, so a steady slope stays normal (restarted at the
        // median itself, a series sloping 10 sd per 2,000 readings alarmed
        // again 7 readings after a re-anchor).
        let view = self.features.view(asset);
        let mad = view.mad();
        let inputs = [view.median(), view.mean(self.p.features.trend_horizon())];
        let t = self.trend;
        for (set, input) in inputs.into_iter().enumerate() {
            let [t_fast, t_slow, t_mean, t_var, t_isd, t_w, t_last, t_snap] =
                trend_groups(&mut self.trend_lanes, asset, set, np);
            for s in 0..self.n {
                let slope = t_mean[s] * MAD_TO_SIGMA * mad[s] / (t.lag_slow - t.lag_fast);
                t_fast[s] = input[s] - slope * t.lag_fast;
                t_slow[s] = input[s] - slope * t.lag_slow;
                t_last[s] = input[s];
                t_snap[s] = 0.0;
                // Its spread is learned again from the prior: the median and
                // the scales settle after a re-anchor.
                t_var[s] = t.prior_var;
                t_isd[s] = t.prior_isd;
                t_w[s] = t.prior_w;
            }
        }
        if self.mv_on {
            let (mvp, ms) = (self.mvp, self.mv_stride);
            let blk = &mut self.mv.as_mut_slice()[asset * ms..(asset + 1) * ms];
            blk[2 * mvp * mvp + mvp..].fill(0.0);
        }
        self.reanchors += 1;
    }
}

/// One asset's lane groups of slow-trend set `set` (`TREND_GROUPS` of `np`
/// lanes), in block order: fast and slow averages, mean, variance, inverse
/// sd, learning weight, last input, catching-up flag.
fn trend_groups(
    lanes: &mut AlignedVec<f64>,
    asset: usize,
    set: usize,
    np: usize,
) -> [&mut [f64]; TREND_GROUPS] {
    let stride = TREND_GROUPS * np;
    let start = (asset * TREND_SETS + set) * stride;
    let mut groups = lanes.as_mut_slice()[start..start + stride].chunks_exact_mut(np);
    std::array::from_fn(|_| groups.next().expect("a trend lane group"))
}

/// Per-update constants of the slow-trend statistic.
#[derive(Debug, Clone, Copy)]
struct TrendConsts {
    /// EWMA weights of the fast and slow averages of the median (per update).
    fast: f64,
    slow: f64,
    /// `1 / trend_z`, 0 when it is off.
    inv_z: f64,
    /// Valid readings after which the slow average has settled (the
    /// warm-up gate plus two slow half-lives).
    settle: f64,
    /// `trend_z`.
    z: f64,
    /// Robust scales the median moves per update beyond which it walks at
    /// more than half its largest speed.
    walk: f64,
    /// Per-update decay of the learning weight, and its floor (`trend_memory`).
    w_decay: f64,
    w_min: f64,
    /// Floor of the learned variance (`trend_floor_sd^2`).
    floor_var: f64,
    /// Lags, in readings per unit of slope, of the fast and slow averages
    /// behind a ramp (`TREND_EVERY (1 - w) / w` for an update weight `w`).
    lag_fast: f64,
    lag_slow: f64,
    /// The prior's variance, inverse sd and learning weight.
    prior_var: f64,
    prior_isd: f64,
    prior_w: f64,
}

impl TrendConsts {
    fn new(p: &DetectorValidParams) -> Self {
        // Weights per update, one every `TREND_EVERY` rows.
        let ewma =
            |half_life: f64| 1.0 - (-std::f64::consts::LN_2 * TREND_EVERY_F / half_life).exp();
        let (fast, slow) = (ewma(p.trend_fast_half_life), ewma(p.trend_slow_half_life));
        let lag = |w: f64| TREND_EVERY_F * (1.0 - w) / w;
        Self {
            fast,
            slow,
            lag_fast: lag(fast),
            lag_slow: lag(slow),
            inv_z: if p.trend_z > 0.0 {
                1.0 / p.trend_z
            } else {
                0.0
            },
            z: p.trend_z,
            walk: 0.5 * p.features.median_step() * TREND_EVERY_F,
            settle: p.settle_readings(),
            // The weight starts at 1 / prior rows (per row) and decays by e
            // every 4 × prior rows (about a running mean's 1 / (prior + n)).
            w_decay: (TREND_EVERY_F / (4.0 * p.trend_prior_rows)).min(1.0),
            w_min: ewma(p.trend_memory),
            floor_var: p.trend_floor_sd * p.trend_floor_sd,
            prior_var: p.trend_prior_sd * p.trend_prior_sd,
            prior_isd: 1.0 / p.trend_prior_sd,
            prior_w: (TREND_EVERY_F / p.trend_prior_rows).min(1.0),
        }
    }
}

/// A row's raw score and its asset's calibration moments before the row.
#[derive(Debug, Clone, Copy)]
struct Moments {
    raw: f64,
    m1: f64,
    m2: f64,
    /// Width multiplier of the Gumbel scale (alarm-rate feedback, >= 1).
    widen: f64,
    /// The stuck-run statistic as a negated standardised score: a run at
    /// the stuck detector's alarm level scores the default threshold, past
    /// the calibration (its rate is set by its own definition).
    stuck_nz: f64,
    in_warmup: bool,
}

/// The Gumbel law's scale fitted by moments to raw scores of mean `m1` and
/// mean square `m2`, before widening: `sd sqrt(6) / pi`, at least `min_beta`.
#[inline(always)]
fn gumbel_scale(m1: f64, m2: f64, min_beta: f64) -> f64 {
    fmax(fmax(m2 - m1 * m1, 0.0).sqrt() * SQRT6_OVER_PI, min_beta)
}

/// The Gumbel law's location for mean `m1` and (widened) scale `beta`:
/// `m1 - gamma beta`.
#[inline(always)]
fn gumbel_location(m1: f64, beta: f64) -> f64 {
    m1 - EULER_GAMMA * beta
}

/// The negated standardised score `(mu - raw) / beta` under the Gumbel law
/// fitted by moments (`beta = widen × sd sqrt(6) / pi`, `mu = m1 - gamma beta`),
/// or the stuck-run score `stuck_nz` when that is lower (more surprising), or
/// `+inf` (score 0) in warm-up. Branch-free so a batch of rows vectorises.
#[inline(always)]
fn neg_z(raw: f64, m1: f64, m2: f64, warm: f64, min_beta: f64, widen: f64, stuck_nz: f64) -> f32 {
    let beta = gumbel_scale(m1, m2, min_beta) * widen;
    let z = fmin((gumbel_location(m1, beta) - raw) / beta, stuck_nz) as f32;
    if warm > 0.0 {
        f32::INFINITY
    } else {
        z
    }
}

/// The alarm level over the tail anchor, as a ratio: the `exp(span)`-fold
/// rarer quantile of a generalised Pareto law fitted by moments to the log
/// ratios of exceedance onsets to the anchor (mean `h1`, mean square `h2`,
/// weight `w` in onsets). Its shape `xi = (1 - h1^2 / var) / 2` is held at
/// or below 0: at 0 the log ratios are exponential, a power-law tail, and
/// the ratio is about Hill's `exp(h1 span)`; below 0 the tail is bounded (a point
/// mass, such as a sawtooth's resets, gives about `exp(h1)`). Above 0 (log
/// ratios more spread than exponential) the estimate was too noisy on
/// 8-sensor fleets. A bounded shape must show itself beyond the estimate's
/// sampling error (`1 / sqrt(w)` for exponential data): without that
/// margin, exponential log ratios read as bounded about half the time, and
/// the clamp at 0 kept the other half, so the level was biased low (a
/// Student-t(3) sensor alarmed at readings of 18 scales, not 28).
#[inline]
fn tail_ratio(h1: f64, h2: f64, w: f64, span: f64) -> f64 {
    let var = fmax(h2 - h1 * h1, 1e-12);
    let r = h1 * h1 / var;
    let xi = fmin(fmax(0.5 * (1.0 - r) + 1.0 / w.sqrt(), -1e6), 0.0);
    let sigma = 0.5 * h1 * (r + 1.0);
    let ln_ratio = if xi > -1e-9 {
        sigma * span
    } else {
        sigma / xi * ((xi * span).exp() - 1.0)
    };
    fmin(ln_ratio, 50.0).exp()
}

/// The stuck-run statistic `s` (1.0 = its alarm level) as a negated
/// standardised score: a tail of `p^s`, `p` the default threshold's tail, so
/// `s = 1` scores the threshold, `s = 2` its square; `+inf` (no say) at 0.
#[inline(always)]
fn stuck_neg_z(s: f64, alarm_neg_z: f32) -> f64 {
    if s > 0.0 {
        // -ln(score) = -ln(1 - tail), through ln_1p for small tails.
        // The threshold's tail is `exp(alarm_neg_z)`.
        let tail = (f64::from(alarm_neg_z) * s).exp();
        (-(-tail).ln_1p()).ln()
    } else {
        f64::INFINITY
    }
}

/// [`stuck_neg_z`] of `asset`'s stuck statistic `s`, from a one-entry memo
/// per asset. Usually `s` is the slow trend's statistic, which changes every
/// [`TREND_EVERY`] rows (the stuck runs are 0 between repeated values), and
/// the `exp`, `ln_1p` and `ln` cost about 50 instructions a row. A pure
/// function of `s`: equal inputs give the same bits, so the memo needs no
/// invalidation (restored asset states included).
#[inline(always)]
fn stuck_nz_memo(memo: &mut [[f64; 2]], asset: usize, s: f64, alarm_neg_z: f32) -> f64 {
    // No statistic (warm-up, a settling trend) needs no memo.
    if s > 0.0 {
        match memo.get_mut(asset) {
            Some(m) if m[0] == s => m[1],
            Some(m) => {
                let nz = stuck_neg_z(s, alarm_neg_z);
                *m = [s, nz];
                nz
            }
            None => stuck_neg_z(s, alarm_neg_z),
        }
    } else {
        f64::INFINITY
    }
}

/// The negated standardised score of one row ([`neg_z`]).
#[inline(always)]
fn standardised(m: Moments, min_beta: f64) -> f32 {
    neg_z(
        m.raw,
        m.m1,
        m.m2,
        f64::from(u8::from(m.in_warmup)),
        min_beta,
        m.widen,
        m.stuck_nz,
    )
}

/// `pu = P u` for up to [`MV_CHUNK`] sensors (`P` is `MV_CHUNK × MV_CHUNK`,
/// zero outside the sensors, and symmetric, so `P u` is a sum of columns
/// scaled by `u_j`), the eight products summed as a tree: three dependent
/// additions, where a running sum made the row's score wait for eight (4 %
/// of the row loop's time). The portable form, run by the baseline copy; the AVX
/// copies call [`pu_one_chunk_avx`], because the compiler splits this loop
/// into 2- and 4-lane operations however it is written.
#[inline(always)]
fn pu_one_chunk(prec: &[f32], uc: &[f32], pu: &mut [f32]) {
    // The tree below is written out for eight columns.
    const _: () = assert!(MV_CHUNK == 8);
    let mut t = [[0.0f32; MV_CHUNK]; MV_CHUNK];
    for ((col, &uj), tj) in prec[..MV_CHUNK * MV_CHUNK]
        .chunks_exact(MV_CHUNK)
        .zip(&uc[..MV_CHUNK])
        .zip(&mut t)
    {
        let col = <&[f32; MV_CHUNK]>::try_from(col).expect("mv column");
        for l in 0..MV_CHUNK {
            tj[l] = col[l] * uj;
        }
    }
    let mut acc = [0.0f32; MV_CHUNK];
    for l in 0..MV_CHUNK {
        acc[l] = ((t[0][l] + t[1][l]) + (t[2][l] + t[3][l]))
            + ((t[4][l] + t[5][l]) + (t[6][l] + t[7][l]));
    }
    *<&mut [f32; MV_CHUNK]>::try_from(&mut pu[..MV_CHUNK]).expect("mv chunk") = acc;
}

/// Bit `l` set where lane `l` equals `v`.
#[inline(always)]
fn lanes_equal_mask(lanes: &[f64; LANE_CHUNK], v: f64) -> u32 {
    let mut mask = 0u32;
    for (l, e) in lanes.iter().enumerate() {
        mask |= u32::from(*e == v) << l;
    }
    mask
}

/// [`lanes_equal_mask`] as two 4-lane compares and sign-bit masks (the
/// compiler builds the mask one lane at a time).
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn lanes_equal_mask_avx(lanes: &[f64; LANE_CHUNK], v: f64) -> u32 {
    use std::arch::x86_64::{
        _mm256_cmp_pd, _mm256_loadu_pd, _mm256_movemask_pd, _mm256_set1_pd, _CMP_EQ_OQ,
    };
    const _: () = assert!(LANE_CHUNK == 8);
    let vv = _mm256_set1_pd(v);
    // SAFETY: `lanes` holds 8 values: the loads read lanes 0..4 and 4..8.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_pd(lanes.as_ptr()),
            _mm256_loadu_pd(lanes.as_ptr().add(4)),
        )
    };
    let lo = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_EQ_OQ>(lo, vv)) as u32;
    let hi = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_EQ_OQ>(hi, vv)) as u32;
    lo | (hi << 4)
}

/// `ev = max(ev, new)` lane by lane ([`fmax`]: `new` unless `ev` is larger).
#[inline(always)]
fn max_into(ev: &mut [f64; MV_CHUNK], new: &[f32; MV_CHUNK]) {
    for l in 0..MV_CHUNK {
        ev[l] = fmax(ev[l], f64::from(new[l]));
    }
}

/// [`max_into`] as two 4-lane maxima and whole stores. Written as lane
/// selects, the compiler turns it into masked stores (a lane keeps its old
/// value), and the evidence's next load, right after, cannot take its value
/// from a masked store in flight: it waits until the store reaches the
/// cache. `vmaxpd` returns its second operand unless the first is larger,
/// as [`fmax`] does, so the result is bit-identical.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn max_into_avx(ev: &mut [f64; MV_CHUNK], new: &[f32; MV_CHUNK]) {
    use std::arch::x86_64::{
        _mm256_cvtps_pd, _mm256_loadu_pd, _mm256_max_pd, _mm256_storeu_pd, _mm_loadu_ps,
    };
    const _: () = assert!(MV_CHUNK == 8);
    // SAFETY: both arrays hold 8 lanes: the loads and stores touch lanes
    // 0..4 and 4..8; unaligned access is allowed.
    unsafe {
        let p = ev.as_mut_ptr();
        let lo = _mm256_cvtps_pd(_mm_loadu_ps(new.as_ptr()));
        let hi = _mm256_cvtps_pd(_mm_loadu_ps(new.as_ptr().add(4)));
        _mm256_storeu_pd(p, _mm256_max_pd(_mm256_loadu_pd(p), lo));
        _mm256_storeu_pd(p.add(4), _mm256_max_pd(_mm256_loadu_pd(p.add(4)), hi));
    }
}

/// [`pu_one_chunk`] with explicit 8-lane AVX operations, in the same order
/// (the same tree of sums, no fused multiply-add), so the result is
/// bit-identical. The compiler's own vectoriser splits this product
/// into 2- and 4-lane pieces whatever shape it is written in.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn pu_one_chunk_avx(prec: &[f32], uc: &[f32], pu: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let prec = &prec[..MV_CHUNK * MV_CHUNK];
    let u = &uc[..MV_CHUNK];
    let out = &mut pu[..MV_CHUNK];
    let mut t = [_mm256_setzero_ps(); MV_CHUNK];
    for (j, &uj) in u.iter().enumerate() {
        // SAFETY: `prec` holds MV_CHUNK × MV_CHUNK values, so column j's 8
        // lanes are in bounds; unaligned loads are allowed.
        let col = unsafe { _mm256_loadu_ps(prec.as_ptr().add(j * MV_CHUNK)) };
        t[j] = _mm256_mul_ps(col, _mm256_set1_ps(uj));
    }
    let acc = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3])),
        _mm256_add_ps(_mm256_add_ps(t[4], t[5]), _mm256_add_ps(t[6], t[7])),
    );
    // SAFETY: `out` holds MV_CHUNK values.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
}

/// `cov += a (u u^T - cov)` for up to [`MV_CHUNK`] sensors, two rows per
/// 16-lane step (padding rows stay 0: their `u` is 0). The four steps are
/// written out: as a loop over row pairs, the compiler vectorised across the
/// pairs with gathers of `u`, which are slow.
#[inline(always)]
fn cov_update_one_chunk(cov: &mut [f32], uc: &[f32], a: f32) {
    let u = *<&[f32; MV_CHUNK]>::try_from(&uc[..MV_CHUNK]).expect("mv chunk");
    let mut uu = [0.0f32; 2 * MV_CHUNK];
    uu[..MV_CHUNK].copy_from_slice(&u);
    uu[MV_CHUNK..].copy_from_slice(&u);
    let c = <&mut [f32; MV_CHUNK * MV_CHUNK]>::try_from(&mut cov[..MV_CHUNK * MV_CHUNK])
        .expect("mv matrix");
    cov_pair(c, &uu, 0, u[0], u[1], a);
    cov_pair(c, &uu, 1, u[2], u[3], a);
    cov_pair(c, &uu, 2, u[4], u[5], a);
    cov_pair(c, &uu, 3, u[6], u[7], a);
}

/// Rows `2k`, `2k+1` of `cov += a (u u^T - cov)`.
#[inline(always)]
fn cov_pair(
    c: &mut [f32; MV_CHUNK * MV_CHUNK],
    uu: &[f32; 2 * MV_CHUNK],
    k: usize,
    u0: f32,
    u1: f32,
    a: f32,
) {
    let rows =
        <&mut [f32; 2 * MV_CHUNK]>::try_from(&mut c[2 * k * MV_CHUNK..2 * (k + 1) * MV_CHUNK])
            .expect("two mv rows");
    let mut r = *rows;
    // r + a (ui u - r) as (1 - a) r + (a ui) u: one multiplication fewer.
    let (b, c0, c1) = (1.0 - a, a * u0, a * u1);
    for l in 0..2 * MV_CHUNK {
        let ci = if l < MV_CHUNK { c0 } else { c1 };
        r[l] = b * r[l] + ci * uu[l];
    }
    *rows = r;
}

/// `FIELDPULSE_SIMD`, empty when unset.
fn simd_env() -> String {
    std::env::var("FIELDPULSE_SIMD").unwrap_or_default()
}

/// The widest compiled copy of the row loop this CPU can run.
/// `cap` (`FIELDPULSE_SIMD`) `avx2` or `baseline` caps it (to compare or to rule it out).
fn simd_supported(cap: &str) -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if cap != "baseline" && has!("avx2") && has!("fma") {
            if cap != "avx2" && has!("avx512f") && has!("avx512vl") && has!("avx512dq") {
                return Simd::Avx512;
            }
            return Simd::Avx2;
        }
    }
    let _ = cap;
    Simd::Baseline
}

/// The copy of the row loop that runs ([`preferred_simd`] for this CPU and
/// `FIELDPULSE_SIMD`).
fn simd_level() -> Simd {
    let cap = simd_env();
    preferred_simd(simd_supported(&cap), cpu_is_intel(), cap == "avx512")
}

/// The widest supported copy, but AVX2 rather than AVX-512 on Intel CPUs
/// unless AVX-512 is asked for (`FIELDPULSE_SIMD=avx512`). Many Intel cores
/// run 512-bit vector code on fewer execution ports and at a lower clock;
/// on a Xeon with AVX-512 the AVX2 copy scored about 4 % more rows per
/// second (medians of six alternated rounds, docs/anomaly.md, "Speed").
/// The copies score bit-identically.
fn preferred_simd(supported: Simd, intel: bool, avx512_asked: bool) -> Simd {
    if supported == Simd::Avx512 && intel && !avx512_asked {
        Simd::Avx2
    } else {
        supported
    }
}

/// Whether the CPU's vendor string is Intel's.
fn cpu_is_intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        // "GenuineIntel" is spread over EBX, EDX, ECX.
        r.ebx == u32::from_le_bytes(*b"Genu")
            && r.edx == u32::from_le_bytes(*b"ineI")
            && r.ecx == u32::from_le_bytes(*b"ntel")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the row count `n` (a whole number of rows, below 2^52) is a
/// multiple of [`TREND_EVERY`]: adding 2^52 puts `n` in the low bits of the
/// sum's mantissa, exactly. The same answer as `(n as u64) % TREND_EVERY ==
/// 0` without the saturating float-to-integer conversion (about 14
/// instructions a row).
#[inline(always)]
fn every_nth_row(n: f64) -> bool {
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    const _: () = assert!(TREND_EVERY.is_power_of_two());
    (n + TWO_52).to_bits() & (TREND_EVERY - 1) == 0
}

/// The largest of a chunk's lanes, as a reduction tree (halves, quarters,
/// pairs): shuffles and vector maxima instead of a chain of eight scalar ones.
#[inline(always)]
fn lane_max(mut m: [f64; LANE_CHUNK]) -> f64 {
    let mut width = LANE_CHUNK / 2;
    while width > 0 {
        for l in 0..width {
            m[l] = fmax(m[l], m[l + width]);
        }
        width /= 2;
    }
    m[0]
}

/// The sum of a chunk's lanes as a tree (halves added lane by lane): three
/// dependent additions, where a running sum takes seven.
#[inline(always)]
fn lane_sum32(mut m: [f32; MV_CHUNK]) -> f32 {
    let mut width = MV_CHUNK / 2;
    while width > 0 {
        for l in 0..width {
            m[l] += m[l + width];
        }
        width /= 2;
    }
    m[0]
}

/// `max` without NaN handling (one instruction); inputs here are finite.
#[inline(always)]
fn fmax(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

/// `min` without NaN handling (one instruction); inputs here are finite.
#[inline(always)]
fn fmin(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// [`fmax`] for f32 lanes: `b` when `a` is NaN (as `f32::max`).
#[inline(always)]
fn fmax32(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// [`fmin`] for f32 lanes: `b` when `a` is NaN (as `f32::min`).
#[inline(always)]
fn fmin32(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod simd_tests {
    use super::*;
    use fieldpulse_features::ParamGuard;

    #[test]
    fn avx2_runs_on_intel_unless_avx512_is_asked_for_and_the_widest_copy_elsewhere() {
        use Simd::{Avx2, Avx512, Baseline};
        // (supported, Intel, AVX-512 asked) -> the copy that runs.
        for (supported, intel, asked, want) in [
            (Avx512, true, false, Avx2),
            (Avx512, true, true, Avx512),
            (Avx512, false, false, Avx512),
            (Avx512, false, true, Avx512),
            (Avx2, true, false, Avx2),
            (Avx2, true, true, Avx2),
            (Baseline, true, false, Baseline),
            (Baseline, false, true, Baseline),
        ] {
            assert_eq!(
                preferred_simd(supported, intel, asked),
                want,
                "{supported:?}, Intel {intel}, asked {asked}"
            );
        }
    }

    #[test]
    fn the_scorer_reports_the_copy_it_runs() {
        let scorer = FleetScorer::new(
            crate::anomaly::DetectorParams::default().check().unwrap(),
            vec!["x".to_string()],
            1,
        )
        .unwrap();
        let level = simd_level();
        assert!(level <= simd_supported(&simd_env()));
        assert_eq!(scorer.vector_code() == "avx512", level == Simd::Avx512);
        assert_eq!(scorer.vector_code() == "baseline", level == Simd::Baseline);
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    const SPAN: f64 = 4.605_170_185_988_091; // ln(0.01 / 0.0001)

    #[test]
    fn exponential_log_ratios_a_little_less_spread_than_their_mean_read_as_a_power_law() {
        // 64 onsets of a Student-t(3) tail: mean log ratio 1/3; a sample
        // variance 20 % under the mean squared is within sampling error.
        let (h1, r): (f64, f64) = (1.0 / 3.0, 1.2);
        let h2 = h1 * h1 + h1 * h1 / r;
        let power_law = (0.5 * h1 * (r + 1.0) * SPAN).exp();
        assert!((tail_ratio(h1, h2, 64.0, SPAN) / power_law - 1.0).abs() < 1e-12);
        // With thousands of onsets the same moments do show a bounded tail.
        assert!(tail_ratio(h1, h2, 1e6, SPAN) < 0.8 * power_law);
    }

    #[test]
    fn a_point_mass_of_log_ratios_stays_a_bounded_tail() {
        // A sawtooth's resets: every onset at the same ratio to the anchor.
        let h1: f64 = 0.5;
        let ratio = tail_ratio(h1, h1 * h1 + 1e-6, 64.0, SPAN);
        assert!(ratio < (h1 * 1.01).exp(), "{ratio}");
        assert!(ratio > (h1 * 0.99).exp(), "{ratio}");
    }
}

#[cfg(test)]
mod row_count_tests {
    use super::*;

    #[test]
    fn every_nth_row_agrees_with_the_integer_remainder() {
        let big = [1u64 << 40, (1 << 51) - 1, (1 << 51) + 16, (1 << 52) - 64];
        for n in (0..100_000u64).chain(big.iter().flat_map(|&b| b..b + 64)) {
            assert_eq!(
                every_nth_row(n as f64),
                n.is_multiple_of(TREND_EVERY),
                "{n}"
            );
        }
    }
}
