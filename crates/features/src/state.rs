//! [`FleetFeatures`]: the streaming state of every feature for a fleet, and the
//! one update kernel that defines the features.
//!
//! # Layout
//! One flat `Vec<f64>`; asset `i` owns the block `[i * stride, (i + 1) * stride)`.
//! A block is a small header (timestamps, decay cache, weight sums, trend time
//! moments) followed by one lane array per field (`mean_h0[0..S]`, `mean_h1[..]`,
//! …, `median[..]`, `mad[..]`, …). Readings arrive one row (one asset) at a
//! time, so the row's whole working set is one contiguous block — a handful of
//! cache lines the prefetcher streams in — and within it every field is a
//! struct-of-arrays over sensors, padded to a multiple of [`LANE_CHUNK`] lanes
//! and processed in fixed chunks (copied to locals, computed, stored back) so
//! the per-sensor loops compile to one AVX2 instruction per operation. (A
//! struct-of-arrays *over assets* would only pay off if every asset were
//! updated at every step, as the numpy peer does; a stream is row at a time.)
//!
//! # Time-aware decay (irregular sampling)
//! Half-lives are in readings at the asset's *nominal interval*, a
//! stochastic-approximation median of its sampling intervals (regular sampling
//! never moves it). A row `dt` after the previous one decays state by
//! `2^(-min(dt / nominal, max_gap_ratio) / half_life)`, so a missed reading
//! counts as a reading's worth of forgetting, and an outage longer than
//! `max_gap_ratio` intervals forgets no more than that (the machine is compared
//! with its old baseline when it comes back). The decay factors are cached per
//! asset and recomputed only when `dt / nominal` changes: regular streams pay
//! no `exp` per row.
//!
//! EWMAs are *debiased*: each horizon keeps the weight sum `W = decay * W + 1`
//! and updates with `a = 1 / W`, so early values are exact weighted means (the
//! first reading is the mean, not a blend with zero) and converge to the
//! classical `a = 1 - decay` once `W` saturates. Variance uses the exact
//! weighted recursion `v = (1 - a) (v + a d^2)`.
//!
//! # Invalid input (defined behaviour, counted)
//! - A value that is NaN, ±inf or beyond ±1e100 is *missing*: its sensor's
//!   state is left untouched (the update weight is masked to zero, no branch),
//!   its z-features are 0, and [`FeatureCounters::missing_values`] counts it.
//! - A row whose timestamp equals the asset's last one is a *duplicate*, an
//!   earlier one is *out of order*: the row's z-features are computed against
//!   the current state but the state does not learn from it (no decay with a
//!   negative `dt`, no double weight), and the row is counted.
//!
//! # Warm-up
//! While a sensor has at most `warmup_readings` valid values its robust
//! location/scale are its running mean and `0.6745 * std` (Gaussian
//! equivalence), its residual scale is not winsorised, and its EWMAs use
//! `max(a, 1 / n_valid)` so a sensor that joins late starts from its own
//! values. Afterwards the median moves by `eta * MAD * sign(x - med)` and the
//! MAD by `eta' * MAD * sign(|x - med| - MAD)` (stochastic approximation of the
//! 0.5 quantiles; equal up and down steps make them converge to the medians),
//! with Robbins–Monro steps `eta = max(median_step, 1 / n_rows)` and
//! `eta' = max(mad_step, 1 / n_rows)`: fast while the asset is young, then
//! the slow floors.

mod restore;

use crate::aligned::AlignedVec;
use crate::params::{FeatureError, MAX_HORIZONS};
use crate::seasonal::SeasonScratch;
use crate::spec::{
    field, n_sensor_fields, FeatureSpec, H_DT_NOM, H_FIRST_TS, H_LAST_TS, H_MT, H_N_ROWS, H_N_WARM,
    H_RATIO, H_VTT, H_W, LANE_CHUNK,
};

/// Gaussian consistency factor: `sigma = MAD * 1.4826`.
pub const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;
/// Gaussian consistency factor: `sigma = mean(|r|) * 1.2533`.
pub const MEAN_ABS_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
/// Chunks the const-shape kernel keeps in registers between its passes (it
/// is instantiated for one chunk).
const MAX_KEPT: usize = 1;
/// Milliseconds to seconds, as a multiplication (cheaper than dividing by 1000).
const MS_TO_S: f64 = 1e-3;
/// Values with a larger magnitude are treated as missing (they overflow squares).
pub const MAX_ABS_VALUE: f64 = 1e100;

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    /// The asset's first row: state initialised from it.
    First,
    /// A row later than the asset's previous one: state learned from it.
    InOrder,
    /// Same timestamp as the asset's previous row: scored, not learned.
    Duplicate,
    /// Earlier than the asset's previous row: scored, not learned.
    OutOfOrder,
}

impl RowStatus {
    /// Whether the state learned from the row.
    pub fn learned(self) -> bool {
        matches!(self, Self::First | Self::InOrder)
    }
}

/// Counts of rows and values the state treated specially.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureCounters {
    /// Rows seen.
    pub rows: u64,
    /// Rows with the same timestamp as the asset's previous row.
    pub duplicate_rows: u64,
    /// Rows earlier than the asset's previous row.
    pub out_of_order_rows: u64,
    /// Values that were NaN, infinite or out of range.
    pub missing_values: u64,
}

/// Per-row scratch the kernel writes and detectors read: the row's normalised
/// innovations, computed against the state *before* the row (no look-ahead,
/// and an anomaly does not dampen its own score). Allocate once, reuse.
///
/// Every lane field is [`FeatureSpec::n_lanes`] long (lanes past the last
/// sensor are padding) and all of them live in one buffer, field after
/// field, so the kernel slices it once per row and, for one lane chunk,
/// detectors read them as fixed-size arrays ([`Self::lanes`]): no bounds
/// check per field.
#[derive(Debug, Clone)]
pub struct RowScratch {
    /// Rows the asset has learned, this one included.
    pub n_rows: f64,
    /// Seconds since the asset's previous row (0 for its first row; negative when out of order).
    pub dt_s: f64,
    /// Sensors still in warm-up after this row (read with [`Self::n_warm`]).
    n_warm: f64,
    /// Padded lanes per field.
    np: usize,
    /// The lane fields, `SC_FIELDS` of `np` each, in the `SC_*` order.
    buf: Vec<f64>,
    /// The row's EWMA weight per horizon (fixed size: no bounds checks).
    a: [f64; MAX_HORIZONS],
}

// Lane fields of the scratch buffer, in order. The first `SC_PUBLIC` are
// what detectors read.
const SC_VALID: usize = 0;
const SC_RESID_Z: usize = 1;
const SC_ROBUST_Z: usize = 2;
const SC_ROBUST_INV: usize = 3;
const SC_REPEAT: usize = 4;
const SC_N_VALID: usize = 5;
const SC_LEVEL: usize = 6;
const SC_MEDIAN: usize = 7;
const SC_PUBLIC: usize = 8;
const SC_XIN: usize = 8;
const SC_FIELDS: usize = 11;

/// A row's detector inputs for a fixed lane count `NP`, as fixed-size arrays
/// (see the field docs of the accessors on [`RowScratch`]).
#[derive(Debug, Clone, Copy)]
pub struct RowLanes<'a, const NP: usize> {
    /// See [`RowScratch::valid`].
    pub valid: &'a [f64; NP],
    /// See [`RowScratch::resid_z`].
    pub resid_z: &'a [f64; NP],
    /// See [`RowScratch::robust_z`].
    pub robust_z: &'a [f64; NP],
    /// See [`RowScratch::robust_inv_scale`].
    pub robust_inv_scale: &'a [f64; NP],
    /// See [`RowScratch::repeat`].
    pub repeat: &'a [f64; NP],
    /// See [`RowScratch::n_valid`].
    pub n_valid: &'a [f64; NP],
    /// See [`RowScratch::level`].
    pub level: &'a [f64; NP],
    /// See [`RowScratch::median`].
    pub median: &'a [f64; NP],
}

/// The scratch's lane fields as separate mutable slices (the kernel's view).
struct LanesMut<'a> {
    valid: &'a mut [f64],
    resid_z: &'a mut [f64],
    robust_z: &'a mut [f64],
    robust_inv_scale: &'a mut [f64],
    repeat: &'a mut [f64],
    n_valid: &'a mut [f64],
    level: &'a mut [f64],
    median: &'a mut [f64],
    xin: &'a mut [f64],
    xv: &'a mut [f64],
    resid: &'a mut [f64],
}

/// Splits the scratch buffer into its fields of `np` lanes: one length
/// check, and none at all past it when `np` is a constant.
#[inline(always)]
fn split_lanes(buf: &mut [f64], np: usize) -> LanesMut<'_> {
    let buf = &mut buf[..SC_FIELDS * np];
    let (valid, rest) = buf.split_at_mut(np);
    let (resid_z, rest) = rest.split_at_mut(np);
    let (robust_z, rest) = rest.split_at_mut(np);
    let (robust_inv_scale, rest) = rest.split_at_mut(np);
    let (repeat, rest) = rest.split_at_mut(np);
    let (n_valid, rest) = rest.split_at_mut(np);
    let (level, rest) = rest.split_at_mut(np);
    let (median, rest) = rest.split_at_mut(np);
    let (xin, rest) = rest.split_at_mut(np);
    let (xv, resid) = rest.split_at_mut(np);
    LanesMut {
        valid,
        resid_z,
        robust_z,
        robust_inv_scale,
        repeat,
        n_valid,
        level,
        median,
        xin,
        xv,
        resid,
    }
}

impl RowScratch {
    /// Number of sensors still in warm-up after this row.
    pub fn n_warm(&self) -> usize {
        self.n_warm as usize
    }

    /// Scratch sized for `spec`.
    pub fn new(spec: &FeatureSpec) -> Self {
        let (n, np) = (spec.n_sensors(), spec.n_lanes());
        let mut buf = vec![0.0; SC_FIELDS * np];
        // Padding lanes of the copied row hold NaN, i.e. missing.
        buf[SC_XIN * np..(SC_XIN + 1) * np].fill(f64::NAN);
        Self {
            n_rows: 0.0,
            dt_s: 0.0,
            n_warm: n as f64,
            np,
            buf,
            a: [0.0; MAX_HORIZONS],
        }
    }

    #[inline]
    fn field(&self, f: usize) -> &[f64] {
        &self.buf[f * self.np..(f + 1) * self.np]
    }

    /// 1.0 where the value was valid, 0.0 where missing.
    #[inline]
    pub fn valid(&self) -> &[f64] {
        self.field(SC_VALID)
    }

    /// `(x - local level) / residual scale` (0 for missing values and a sensor's first value).
    #[inline]
    pub fn resid_z(&self) -> &[f64] {
        self.field(SC_RESID_Z)
    }

    /// `(x - robust median) / (1.4826 * MAD)` (0 for missing values and a sensor's first value).
    #[inline]
    pub fn robust_z(&self) -> &[f64] {
        self.field(SC_ROBUST_Z)
    }

    /// `1 / max(1.4826 * MAD, floor)` before the row: the robust scale
    /// detectors divide by, shared so the division is done once.
    #[inline]
    pub fn robust_inv_scale(&self) -> &[f64] {
        self.field(SC_ROBUST_INV)
    }

    /// 1.0 where the row's valid value repeats the sensor's previous valid
    /// value (within 1e-9 relative), 0.0 otherwise (always 0.0 for a row the
    /// state did not learn from). Stuck-sensor detectors count these.
    #[inline]
    pub fn repeat(&self) -> &[f64] {
        self.field(SC_REPEAT)
    }

    /// Valid values per sensor after the row (the state's counts, copied
    /// here so detectors read them without indexing the state again).
    #[inline]
    pub fn n_valid(&self) -> &[f64] {
        self.field(SC_N_VALID)
    }

    /// The trend-horizon EWMA mean per sensor after the row.
    #[inline]
    pub fn level(&self) -> &[f64] {
        self.field(SC_LEVEL)
    }

    /// The robust median per sensor after the row.
    #[inline]
    pub fn median(&self) -> &[f64] {
        self.field(SC_MEDIAN)
    }

    /// The detector inputs as fixed-size arrays when the spec has exactly
    /// `NP` lanes (`None` otherwise): two checks instead of one per field.
    #[inline]
    pub fn lanes<const NP: usize>(&self) -> Option<RowLanes<'_, NP>> {
        if self.np != NP {
            return None;
        }
        let buf = self.buf.get(..SC_PUBLIC * NP)?;
        let f = |i: usize| <&[f64; NP]>::try_from(&buf[i * NP..(i + 1) * NP]).ok();
        Some(RowLanes {
            valid: f(SC_VALID)?,
            resid_z: f(SC_RESID_Z)?,
            robust_z: f(SC_ROBUST_Z)?,
            robust_inv_scale: f(SC_ROBUST_INV)?,
            repeat: f(SC_REPEAT)?,
            n_valid: f(SC_N_VALID)?,
            level: f(SC_LEVEL)?,
            median: f(SC_MEDIAN)?,
        })
    }
}

/// Parameters precomputed for the kernel.
#[derive(Debug, Clone)]
struct Kernel {
    n_h: usize,
    header_len: usize,
    trend: usize,
    /// `ln 2 / half_life` per horizon.
    ln2_over_hl: Vec<f64>,
    median_step: f64,
    mad_step: f64,
    warmup: f64,
    resid_clip: f64,
    max_gap_ratio: f64,
    interval_step: f64,
    floor_rel: f64,
    floor_abs: f64,
    floor_quantum: f64,
    /// The square of `scale_floor_spread` (it multiplies a variance).
    floor_spread_sq: f64,
    /// Bit `h` set: horizon `h`'s variance is not kept (see
    /// [`FleetFeatures::detector_only`]).
    skip_var: u32,
    /// The trend cross-moments (`ctx`, the time moments) are not kept.
    skip_ctx: bool,
    /// The longest horizon's mean and variance are not kept once no sensor
    /// of the asset is in warm-up (the steady-state kernel).
    skip_long_steady: bool,
}

impl Kernel {
    /// The smallest scale of a sensor: the absolute floor, a fraction of its
    /// level and of its quantum (so a quantised signal is measured in its own
    /// resolution, not in 1e-4 of its level).
    #[inline(always)]
    fn floor(&self, med: f64, quantum: f64) -> f64 {
        fmax(
            fmax(self.floor_abs, self.floor_rel * med.abs()),
            self.floor_quantum * quantum,
        )
    }

    /// The smallest scale a reading is measured in: [`Self::floor`], and a
    /// fraction of the sensor's standard deviation over the trend horizon
    /// (`var_t`), so a signal that is constant most of the time (a counter
    /// at zero between bursts, a disk idle between writes) is measured
    /// against the bursts it shows, not against a median absolute deviation
    /// of zero. Only the z-scores use it; the robust level and scale learn
    /// with [`Self::floor`].
    #[inline(always)]
    fn z_floor(&self, med: f64, quantum: f64, var_t: f64) -> f64 {
        fmax(
            self.floor(med, quantum),
            (self.floor_spread_sq * var_t).sqrt(),
        )
    }
}

/// Changes smaller than this, relative to the value, do not count as the
/// sensor's quantum (decimal rounding of one reading).
const QUANTUM_TOL: f64 = 1e-9;

/// Streaming feature state for a fleet of assets that share one [`FeatureSpec`].
#[derive(Debug, Clone)]
pub struct FleetFeatures {
    spec: FeatureSpec,
    kernel: Kernel,
    data: AlignedVec<f64>,
    n_assets: usize,
    counters: FeatureCounters,
    /// 3 horizons and one lane chunk: the kernel copy with constant counts applies.
    default_shape: bool,
    /// The CPU runs AVX2 + FMA: warm-up rows take the kernel copy compiled
    /// for it (see [`update_block_warm_avx2`]).
    warm_avx2: bool,
    /// The seasonal adjustment's row buffers (empty when seasonality is off).
    season_sc: SeasonScratch,
}

impl FleetFeatures {
    /// State for `n_assets` assets (indexes `0..n_assets`); more can be added.
    pub fn new(spec: FeatureSpec, n_assets: usize) -> Self {
        let p = spec.params();
        let kernel = Kernel {
            n_h: p.half_lives.len(),
            header_len: spec.header_len,
            trend: p.trend_horizon,
            ln2_over_hl: p
                .half_lives
                .iter()
                .map(|hl| std::f64::consts::LN_2 / hl)
                .collect(),
            median_step: p.median_step,
            mad_step: p.mad_step,
            warmup: f64::from(p.warmup_readings),
            resid_clip: p.resid_clip,
            max_gap_ratio: p.max_gap_ratio,
            interval_step: p.interval_step,
            floor_rel: p.scale_floor_rel,
            floor_abs: p.scale_floor_abs,
            floor_quantum: p.scale_floor_quantum,
            floor_spread_sq: p.scale_floor_spread * p.scale_floor_spread,
            skip_var: 0,
            skip_ctx: false,
            skip_long_steady: false,
        };
        let default_shape = kernel.n_h == 3 && spec.lanes == LANE_CHUNK;
        let mut res = Self {
            spec,
            kernel,
            data: AlignedVec::new(),
            n_assets: 0,
            counters: FeatureCounters::default(),
            default_shape,
            warm_avx2: warm_avx2(),
            season_sc: SeasonScratch::default(),
        };
        if res.spec.season.is_some() {
            res.season_sc = SeasonScratch::new(res.spec.lanes);
        }
        for _ in 0..n_assets {
            res.add_asset();
        }
        res
    }

    /// State for the anomaly detectors only: the learning pass stops
    /// keeping what only [`Self::write_features`] reads (the trend
    /// cross-moment and time moments behind `slope_per_s`, the variance of
    /// every horizon but the trend's and the longest, and the longest
    /// horizon once the asset's sensors are past warm-up). Innovations, levels, robust scales, warm-up
    /// and [`Self::reanchor`] are unchanged, bit for bit; those lanes stay
    /// at their initial values, so this state's feature rows (and its
    /// snapshots' copies of those lanes) are not meaningful.
    pub fn detector_only(mut self) -> Self {
        let k = &mut self.kernel;
        let long = k.n_h - 1;
        k.skip_var = (0..k.n_h.min(32))
            .filter(|&h| h != k.trend && h != long)
            .fold(0, |m, h| m | 1 << h);
        k.skip_ctx = true;
        // Warm-up reads the longest horizon only for sensors in warm-up, and
        // while any is the asset runs the warm-up kernel, which keeps it (a
        // sensor's valid count never falls; one that has not joined yet
        // counts as warming up).
        k.skip_long_steady = long != k.trend;
        self
    }

    /// Adds one asset with empty state and returns its index.
    pub fn add_asset(&mut self) -> usize {
        let stride = self.spec.stride;
        let start = self.data.len();
        self.data.grow(stride);
        let n = self.spec.n_sensors();
        let blk = &mut self.data.as_mut_slice()[start..];
        blk[H_RATIO] = f64::NAN; // forces the first decay computation
        blk[H_N_WARM] = n as f64;
        // Padding lanes count as long past warm-up, so they never hold the asset in it.
        let (np, off) = (
            self.spec.lanes,
            self.spec.header_len + field::n_valid(self.kernel.n_h) * self.spec.lanes,
        );
        blk[off + n..off + np].fill(f64::INFINITY);
        self.n_assets += 1;
        self.n_assets - 1
    }

    /// The spec this state was built for.
    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Number of assets.
    pub fn n_assets(&self) -> usize {
        self.n_assets
    }

    /// Counters of rows and values handled specially so far. Reads every
    /// asset's valid counts (O(assets × sensors)): meant for reports, not for
    /// every row.
    pub fn counters(&self) -> FeatureCounters {
        // Every learned row adds 1 to its asset's row count and 1 per valid
        // value to its sensors' valid counts; the rest of its values were missing.
        let n = self.spec.n_sensors();
        let learned_missing: u64 = (0..self.n_assets)
            .map(|a| {
                let valid: u64 = (0..n).map(|s| self.valid_count(a, s)).sum();
                self.rows_learned(a) * n as u64 - valid
            })
            .sum();
        FeatureCounters {
            missing_values: self.counters.missing_values + learned_missing,
            ..self.counters
        }
    }

    /// Bytes of state per asset.
    pub fn state_bytes_per_asset(&self) -> usize {
        self.spec.state_bytes_per_asset()
    }

    /// Number of rows the asset has learned from.
    ///
    /// # Panics
    /// If `asset` is not an index returned by [`Self::add_asset`] or below `n_assets`.
    pub fn rows_learned(&self, asset: usize) -> u64 {
        self.block(asset)[H_N_ROWS] as u64
    }

    /// Number of valid values the asset's sensor has learned from.
    ///
    /// # Panics
    /// If `asset` or `sensor` is out of range.
    pub fn valid_count(&self, asset: usize, sensor: usize) -> u64 {
        self.lane(asset, field::n_valid(self.kernel.n_h))[sensor] as u64
    }

    /// Updates `asset` with the row `(ts_ms, values)` and writes the row's
    /// normalised innovations into `scratch`. `values.len()` must equal the
    /// number of sensors and `asset < n_assets()`.
    ///
    /// # Panics
    /// If `asset` is out of range or `values`/`scratch` do not match the spec
    /// (caller bugs, not input data: data problems are counted, never panic).
    #[inline(always)]
    pub fn update(
        &mut self,
        asset: usize,
        ts_ms: i64,
        values: &[f64],
        scratch: &mut RowScratch,
    ) -> RowStatus {
        let n = self.spec.n_sensors();
        assert_eq!(
            values.len(),
            n,
            "values per row must match the number of sensors"
        );
        let raw = values;
        let stride = self.spec.stride;
        let blk = self.data.block_mut(asset, stride);
        let (blk, season) = match &self.spec.season {
            Some(layout) => {
                let (core, region) = blk.split_at_mut(layout.offset);
                (core, Some((layout, region)))
            }
            None => (blk, None),
        };
        let ts = ts_ms as f64;
        // The header's first slots as one fixed-size array: one length check.
        let head = <&[f64; H_W]>::try_from(&blk[..H_W]).expect("block header");
        let (n_rows, last_ts) = (head[H_N_ROWS], head[H_LAST_TS]);
        let status = if n_rows == 0.0 {
            RowStatus::First
        } else if ts > last_ts {
            RowStatus::InOrder
        } else if ts == last_ts {
            RowStatus::Duplicate
        } else {
            RowStatus::OutOfOrder
        };
        let k = &self.kernel;
        let warm = head[H_N_WARM] > 0.0;
        let ssc = &mut self.season_sc;
        let values = match &season {
            Some((layout, region)) => {
                layout.adjust(region, ts_ms, values, ssc);
                &ssc.adjusted[..n]
            }
            None => values,
        };
        match (status.learned(), warm, n) {
            // The default shape (3 horizons, up to one chunk of sensors) gets
            // its own copy with both counts constant: every loop unrolls and
            // every offset is known, which removes most scalar overhead.
            (true, false, _) if self.default_shape => {
                update_block::<true, false, 3, 1>(k, blk, self.spec.lanes, ts, values, scratch)
            }
            (true, false, _) => {
                update_block::<true, false, 0, 0>(k, blk, self.spec.lanes, ts, values, scratch)
            }
            (true, true, _) if self.default_shape => {
                warm_kernel::<3, 1>(self.warm_avx2, k, blk, self.spec.lanes, ts, values, scratch)
            }
            (true, true, _) => {
                warm_kernel::<0, 0>(self.warm_avx2, k, blk, self.spec.lanes, ts, values, scratch)
            }
            (false, _, _) => update_block_no_learn(k, blk, self.spec.lanes, ts, values, scratch),
        }
        if let (Some((layout, region)), true) = (season, status.learned()) {
            let l = split_lanes(&mut scratch.buf, self.spec.lanes);
            layout.learn(
                region,
                raw,
                ssc,
                l.valid,
                l.robust_inv_scale,
                l.n_valid,
                l.repeat,
                blk[H_DT_NOM],
                ts - blk[H_FIRST_TS],
            );
        }
        let c = &mut self.counters;
        c.rows += 1;
        if !status.learned() {
            // Learned rows' missing values are derived from the state's valid
            // counts when asked for (see `counters`), not summed per row.
            c.duplicate_rows += u64::from(status == RowStatus::Duplicate);
            c.out_of_order_rows += u64::from(status == RowStatus::OutOfOrder);
            let n_valid: f64 = scratch.valid()[..n].iter().sum();
            c.missing_values += (n as f64 - n_valid) as u64;
        }
        status
    }

    /// Writes the asset's features (in [`FeatureSpec::names`] order) after the
    /// row whose innovations are in `scratch`.
    ///
    /// # Errors
    /// [`FeatureError::ShapeMismatch`] when `out` is not `n_features()` long.
    ///
    /// # Panics
    /// If `asset` is out of range.
    pub fn write_features(
        &self,
        asset: usize,
        scratch: &RowScratch,
        out: &mut [f64],
    ) -> Result<(), FeatureError> {
        let nf = self.spec.n_features();
        if out.len() != nf {
            return Err(FeatureError::ShapeMismatch {
                what: "feature row",
                expected: nf,
                actual: out.len(),
            });
        }
        let n = self.spec.n_sensors();
        let n_h = self.kernel.n_h;
        let blk = self.block(asset);
        let lanes = &blk[self.kernel.header_len..];
        let np = self.spec.lanes;
        let lane = |f: usize, s: usize| lanes[f * np + s];
        let vtt = blk[H_VTT];
        let last_ts = blk[H_LAST_TS];
        out[0] = scratch.dt_s;
        let per = self.spec.n_features_per_sensor();
        for s in 0..n {
            let o = &mut out[1 + s * per..1 + (s + 1) * per];
            for h in 0..n_h {
                o[2 * h] = lane(field::mean(h), s);
                o[2 * h + 1] = lane(field::var(n_h, h), s).max(0.0).sqrt();
            }
            let t = &mut o[2 * n_h..];
            t[0] = lane(field::med(n_h), s);
            t[1] = MAD_TO_SIGMA * lane(field::mad(n_h), s);
            t[2] = MEAN_ABS_TO_SIGMA * lane(field::rs(n_h), s);
            t[3] = if vtt > 0.0 {
                lane(field::ctx(n_h), s) / vtt
            } else {
                0.0
            };
            t[4] = scratch.resid_z()[s];
            t[5] = scratch.robust_z()[s];
            let seen_at = if lane(field::n_valid(n_h), s) > 0.0 {
                lane(field::last_valid(n_h), s)
            } else {
                blk[H_FIRST_TS]
            };
            t[6] = (last_ts - seen_at) * MS_TO_S;
        }
        Ok(())
    }

    /// Convenience: [`Self::update`] then [`Self::write_features`].
    ///
    /// # Errors
    /// [`FeatureError::ShapeMismatch`] when `values` or `out` have the wrong length.
    pub fn update_features(
        &mut self,
        asset: usize,
        ts_ms: i64,
        values: &[f64],
        scratch: &mut RowScratch,
        out: &mut [f64],
    ) -> Result<RowStatus, FeatureError> {
        let n = self.spec.n_sensors();
        if values.len() != n {
            return Err(FeatureError::ShapeMismatch {
                what: "values per row",
                expected: n,
                actual: values.len(),
            });
        }
        let status = self.update(asset, ts_ms, values, scratch);
        self.write_features(asset, scratch, out)?;
        Ok(status)
    }

    /// Whether the asset's sensor has its seasonal profile applied (it
    /// explains the signal; see [`crate::seasonal`]). Always false when the
    /// spec learns no profile.
    ///
    /// # Panics
    /// If `asset` or `sensor` is out of range.
    pub fn seasonal_active(&self, asset: usize, sensor: usize) -> bool {
        assert!(sensor < self.spec.n_sensors(), "sensor index out of range");
        self.spec.season.as_ref().is_some_and(|l| {
            let blk = self.block(asset);
            l.is_active(&blk[l.offset..], sensor)
        })
    }

    /// The seasonal profile of the asset's sensor at each bucket (hour of
    /// day or of week, UTC), re-centred; empty when the spec learns none.
    ///
    /// # Panics
    /// If `asset` or `sensor` is out of range.
    pub fn seasonal_profile(&self, asset: usize, sensor: usize) -> Vec<f64> {
        assert!(sensor < self.spec.n_sensors(), "sensor index out of range");
        let Some(l) = self.spec.season.as_ref() else {
            return Vec::new();
        };
        let region = &self.block(asset)[l.offset..];
        (0..l.buckets())
            .map(|b| l.bucket_value(region, b, sensor))
            .collect()
    }

    /// Read access to one field's lanes for an asset (used by detectors).
    pub fn view(&self, asset: usize) -> AssetView<'_> {
        AssetView {
            blk: self.block(asset),
            n: self.spec.lanes,
            n_h: self.kernel.n_h,
            header_len: self.kernel.header_len,
        }
    }

    /// Takes the asset's recent behaviour as its new normal: every sensor
    /// with values has its robust level moved to its trend-horizon mean and
    /// its robust and residual scales widened to that horizon's spread where
    /// it is wider. For a detector that has alarmed long enough to call a
    /// change persistent (a setpoint step the slow robust estimates would
    /// take thousands of readings to reach, a new duty cycle).
    ///
    /// # Panics
    /// If `asset >= n_assets()`.
    pub fn reanchor(&mut self, asset: usize) {
        assert!(asset < self.n_assets, "asset index out of range");
        let (n, np, n_h, t) = (
            self.spec.n_sensors(),
            self.spec.lanes,
            self.kernel.n_h,
            self.kernel.trend,
        );
        let stride = self.spec.stride;
        let lanes = &mut self.data.as_mut_slice()[asset * stride..(asset + 1) * stride]
            [self.kernel.header_len..];
        for s in 0..n {
            if lanes[field::n_valid(n_h) * np + s] == 0.0 {
                continue;
            }
            let (mean, var) = (
                lanes[field::mean(t) * np + s],
                lanes[field::var(n_h, t) * np + s],
            );
            let sd = fmax(var, 0.0).sqrt();
            lanes[field::med(n_h) * np + s] = mean;
            let mad = &mut lanes[field::mad(n_h) * np + s];
            *mad = fmax(*mad, sd / MAD_TO_SIGMA);
            let rs = &mut lanes[field::rs(n_h) * np + s];
            *rs = fmax(*rs, sd / MEAN_ABS_TO_SIGMA);
        }
    }

    fn block(&self, asset: usize) -> &[f64] {
        let stride = self.spec.stride;
        &self.data.as_slice()[asset * stride..(asset + 1) * stride]
    }

    fn lane(&self, asset: usize, f: usize) -> &[f64] {
        let np = self.spec.lanes;
        let off = self.kernel.header_len + f * np;
        &self.block(asset)[off..off + np]
    }
}

/// Read-only view of one asset's state lanes, for detectors built on the
/// features. Every slice is [`FeatureSpec::n_lanes`] long (padded).
#[derive(Debug, Clone, Copy)]
pub struct AssetView<'a> {
    blk: &'a [f64],
    n: usize,
    n_h: usize,
    header_len: usize,
}

impl<'a> AssetView<'a> {
    fn lane(&self, f: usize) -> &'a [f64] {
        let off = self.header_len + f * self.n;
        &self.blk[off..off + self.n]
    }
    /// EWMA means at horizon `h`.
    pub fn mean(&self, h: usize) -> &'a [f64] {
        self.lane(field::mean(h))
    }
    /// EWMA variances at horizon `h`.
    pub fn var(&self, h: usize) -> &'a [f64] {
        self.lane(field::var(self.n_h, h))
    }
    /// Robust medians.
    pub fn median(&self) -> &'a [f64] {
        self.lane(field::med(self.n_h))
    }
    /// Robust MADs (multiply by [`MAD_TO_SIGMA`] for a sigma).
    pub fn mad(&self) -> &'a [f64] {
        self.lane(field::mad(self.n_h))
    }
    /// Valid-value counts.
    pub fn n_valid(&self) -> &'a [f64] {
        self.lane(field::n_valid(self.n_h))
    }
    /// Rows learned by the asset.
    pub fn n_rows(&self) -> f64 {
        self.blk[H_N_ROWS]
    }
}

/// `max` without NaN handling (one instruction); inputs here are finite.
#[inline(always)]
pub(crate) fn fmax(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

/// `min` without NaN handling (one instruction); inputs here are finite.
#[inline(always)]
pub(crate) fn fmin(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// -1, 0 or 1 as two selects (masked moves in vector code; converting the
/// comparisons to numbers costs several instructions each).
#[inline(always)]
fn sign(x: f64) -> f64 {
    let s = if x > 0.0 { 1.0 } else { 0.0 };
    if x < 0.0 {
        -1.0
    } else {
        s
    }
}

/// Warm-up rows (an asset's first readings, or a late sensor joining; a
/// fifth of the rows of a short benchmark): out of line, so the hot caller
/// holds one copy of the kernel (instruction cache). Instantiated for the
/// default shape (constant counts) and the general one.
#[inline(never)]
fn update_block_warm<const NH: usize, const NC: usize>(
    k: &Kernel,
    blk: &mut [f64],
    np: usize,
    ts: f64,
    x: &[f64],
    sc: &mut RowScratch,
) {
    update_block::<true, true, NH, NC>(k, blk, np, ts, x, sc);
}

/// [`update_block_warm`] compiled for AVX2: an out-of-line function does not
/// inherit the scorer's target features, so warm-up rows otherwise run
/// baseline (SSE2) code, about 1,500 instructions per row (callgrind). Rust
/// never contracts `a * b + c` into an FMA, so the results are bit-identical.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn update_block_warm_avx2<const NH: usize, const NC: usize>(
    k: &Kernel,
    blk: &mut [f64],
    np: usize,
    ts: f64,
    x: &[f64],
    sc: &mut RowScratch,
) {
    update_block::<true, true, NH, NC>(k, blk, np, ts, x, sc);
}

/// The warm-up kernel: the AVX2 copy when `avx2` (from [`warm_avx2`]), else
/// the portable one.
#[inline(always)]
fn warm_kernel<const NH: usize, const NC: usize>(
    avx2: bool,
    k: &Kernel,
    blk: &mut [f64],
    np: usize,
    ts: f64,
    x: &[f64],
    sc: &mut RowScratch,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` comes from `warm_avx2`, true only when the running
        // CPU reports AVX2 and FMA.
        unsafe { update_block_warm_avx2::<NH, NC>(k, blk, np, ts, x, sc) };
        return;
    }
    let _ = avx2;
    update_block_warm::<NH, NC>(k, blk, np, ts, x, sc);
}

/// Whether warm-up rows can run the AVX2 kernel copy: the CPU has AVX2 and
/// FMA and `FIELDPULSE_SIMD` does not cap the width at `baseline`.
fn warm_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        std::env::var("FIELDPULSE_SIMD").as_deref() != Ok("baseline") && has!("avx2") && has!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Duplicate and out-of-order rows (rare): out of line, see [`update_block_warm`].
#[cold]
#[inline(never)]
fn update_block_no_learn(
    k: &Kernel,
    blk: &mut [f64],
    np: usize,
    ts: f64,
    x: &[f64],
    sc: &mut RowScratch,
) {
    update_block::<false, true, 0, 0>(k, blk, np, ts, x, sc);
}

/// A fixed chunk of lanes of a field slice (straight-line code the compiler
/// turns into one vector register per operation).
macro_rules! chunk {
    (mut $s:expr, $c:expr) => {
        <&mut [f64; LANE_CHUNK]>::try_from(&mut $s[$c * LANE_CHUNK..($c + 1) * LANE_CHUNK])
            .expect("lane chunk")
    };
    ($s:expr, $c:expr) => {
        <&[f64; LANE_CHUNK]>::try_from(&$s[$c * LANE_CHUNK..($c + 1) * LANE_CHUNK])
            .expect("lane chunk")
    };
}

/// The one definition of every streaming feature. `LEARN = false` only computes
/// the row's innovations; `WARM = false` is the steady-state fast path, valid
/// when no sensor of the asset is in warm-up. `np` is the padded lane count.
/// `NH` / `NC`, when nonzero, are the horizon and lane-chunk counts fixed at
/// compile time (they must equal the runtime ones); 0 reads them at runtime.
#[inline(always)]
fn update_block<const LEARN: bool, const WARM: bool, const NH: usize, const NC: usize>(
    k: &Kernel,
    blk: &mut [f64],
    np: usize,
    ts: f64,
    x: &[f64],
    sc: &mut RowScratch,
) {
    let n_h = if NH > 0 { NH } else { k.n_h };
    let nc = if NC > 0 { NC } else { np / LANE_CHUNK };
    let np = if NC > 0 { NC * LANE_CHUNK } else { np };
    let header_len = if NH > 0 {
        crate::spec::header_len(NH)
    } else {
        k.header_len
    };
    // With constant counts the block's length is a constant too: one check
    // here, and every offset below is known to be in range.
    let blk = &mut blk[..header_len + n_sensor_fields(n_h) * np];
    let (hdr, lanes) = blk.split_at_mut(header_len);
    // The scratch's fields, sliced once (constant offsets with `NC > 0`).
    let scl = split_lanes(&mut sc.buf, np);
    // Values are read in lane chunks straight from the caller's row when it
    // fills whole chunks; otherwise they are first copied, element by element,
    // into the padded scratch (whose padding lanes hold NaN, i.e. missing).
    let direct = x.len() == np;
    if !direct {
        for (d, v) in scl.xin.iter_mut().zip(x) {
            *d = *v;
        }
    }
    let first = hdr[H_N_ROWS] == 0.0;
    let dt_ms = if first { 0.0 } else { ts - hdr[H_LAST_TS] };
    sc.dt_s = dt_ms * MS_TO_S;
    sc.n_warm = hdr[H_N_WARM];

    // Per chunk (valid, value used, residual) carried from the innovations to
    // the learning pass when the chunk count is known (`NC > 0`).
    let mut kept = [([0.0; LANE_CHUNK], [0.0; LANE_CHUNK], [0.0; LANE_CHUNK]); MAX_KEPT];
    // Innovations against the state before this row.
    {
        let (means, rest) = lanes.split_at(n_h * np);
        let rest = &rest[n_h * np..];
        let var_t = &lanes[field::var(n_h, k.trend) * np..][..np];
        let (med, mad, rs, nvalid, quantum) = (
            &rest[..np],
            &rest[np..2 * np],
            &rest[2 * np..3 * np],
            &rest[4 * np..5 * np],
            &rest[7 * np..8 * np],
        );
        // Chunks are copied in, computed on locals and stored back: the
        // compiler cannot prove the slices do not overlap, and loads grouped
        // ahead of stores are what lets it use one vector op per line.
        for c in 0..nc {
            let (xin, m0, med, mad, rs, nvalid, qu) = (
                if direct {
                    *chunk!(x, c)
                } else {
                    *chunk!(scl.xin, c)
                },
                *chunk!(means, c),
                *chunk!(med, c),
                *chunk!(mad, c),
                *chunk!(rs, c),
                *chunk!(nvalid, c),
                *chunk!(quantum, c),
            );
            let vt = *chunk!(var_t, c);
            let (mut valid, mut xv, mut resid) =
                ([0.0; LANE_CHUNK], [0.0; LANE_CHUNK], [0.0; LANE_CHUNK]);
            let (mut rz, mut uz, mut inv) =
                ([0.0; LANE_CHUNK], [0.0; LANE_CHUNK], [0.0; LANE_CHUNK]);
            for l in 0..LANE_CHUNK {
                let ok = xin[l].abs() <= MAX_ABS_VALUE;
                let vf = if ok { 1.0 } else { 0.0 };
                let seen = if nvalid[l] > 0.0 { 1.0 } else { 0.0 };
                let xs = if ok { xin[l] } else { m0[l] };
                let floor = k.z_floor(med[l], qu[l], vt[l]);
                let r = (xs - m0[l]) * seen;
                valid[l] = vf;
                xv[l] = xs;
                resid[l] = r;
                // One division for both scales (divisions dominate this loop).
                let resid_scale = fmax(MEAN_ABS_TO_SIGMA * rs[l], floor);
                let robust_scale = fmax(MAD_TO_SIGMA * mad[l], floor);
                let inv_both = 1.0 / (resid_scale * robust_scale);
                rz[l] = r * robust_scale * inv_both;
                inv[l] = resid_scale * inv_both;
                uz[l] = (xs - med[l]) * (seen * vf) * inv[l];
            }
            *chunk!(mut scl.valid, c) = valid;
            if NC > 0 {
                // Known chunk count: the learning pass below takes these from
                // locals instead of storing and reloading them.
                kept[c] = (valid, xv, resid);
            } else {
                *chunk!(mut scl.xv, c) = xv;
                *chunk!(mut scl.resid, c) = resid;
            }
            *chunk!(mut scl.resid_z, c) = rz;
            *chunk!(mut scl.robust_z, c) = uz;
            *chunk!(mut scl.robust_inv_scale, c) = inv;
        }
    }
    if !LEARN {
        scl.repeat.fill(0.0);
        let t = k.trend;
        scl.n_valid[..np].copy_from_slice(&lanes[field::n_valid(n_h) * np..][..np]);
        scl.level[..np].copy_from_slice(&lanes[field::mean(t) * np..][..np]);
        scl.median[..np].copy_from_slice(&lanes[field::med(n_h) * np..][..np]);
        sc.n_rows = hdr[H_N_ROWS];
        return;
    }

    // Time: nominal interval, cached decay, debiased weights, trend time moments.
    if first {
        hdr[H_FIRST_TS] = ts;
    } else {
        let nom = hdr[H_DT_NOM];
        if nom > 0.0 {
            hdr[H_DT_NOM] = nom + k.interval_step * nom * sign(dt_ms - nom);
        } else {
            hdr[H_DT_NOM] = dt_ms;
        }
    }
    let nom = hdr[H_DT_NOM];
    let ratio = if first {
        0.0
    } else {
        fmin(dt_ms / nom, k.max_gap_ratio)
    };
    if ratio != hdr[H_RATIO] {
        hdr[H_RATIO] = ratio;
        for h in 0..n_h {
            hdr[H_W + n_h + h] = (-ratio * k.ln2_over_hl[h]).exp();
        }
    }
    if NH > 0 && NH <= 4 {
        // Known horizon count: the reciprocals as one 4-wide division
        // instead of three scalar ones.
        let mut ws = [1.0; 4];
        for h in 0..NH {
            ws[h] = hdr[H_W + NH + h] * hdr[H_W + h] + 1.0;
            hdr[H_W + h] = ws[h];
        }
        let mut inv = [0.0; 4];
        for l in 0..4 {
            inv[l] = 1.0 / ws[l];
        }
        sc.a[..NH].copy_from_slice(&inv[..NH]);
    } else {
        for h in 0..n_h {
            let w = hdr[H_W + n_h + h] * hdr[H_W + h] + 1.0;
            hdr[H_W + h] = w;
            sc.a[h] = 1.0 / w;
        }
    }
    hdr[H_LAST_TS] = ts;
    hdr[H_N_ROWS] += 1.0;
    sc.n_rows = hdr[H_N_ROWS];
    let a_t = sc.a[k.trend];
    let mut dtm = 0.0;
    if !k.skip_ctx {
        let t = (ts - hdr[H_FIRST_TS]) * MS_TO_S;
        dtm = t - hdr[H_MT];
        hdr[H_MT] += a_t * dtm;
        hdr[H_VTT] = (1.0 - a_t) * (hdr[H_VTT] + a_t * dtm * dtm);
    }

    let (means, rest) = lanes.split_at_mut(n_h * np);
    let (vars, rest) = rest.split_at_mut(n_h * np);
    let (med, rest) = rest.split_at_mut(np);
    let (mad, rest) = rest.split_at_mut(np);
    let (rs, rest) = rest.split_at_mut(np);
    let (ctx, rest) = rest.split_at_mut(np);
    let (nvalid, rest) = rest.split_at_mut(np);
    let (last_valid, rest) = rest.split_at_mut(np);
    let (last_x, rest) = rest.split_at_mut(np);
    let quantum = &mut rest[..np];

    // Valid counts first: warm-up weights use the count including this row.
    // With them the last value and the quantum: the smallest change between
    // two consecutive valid values (0 until one is seen), ignoring changes
    // below 1e-9 relative (decimal rounding of the same reading).
    for c in 0..nc {
        let (mut nv, mut lv, mut lx, mut qu, (valid, xv)) = (
            *chunk!(nvalid, c),
            *chunk!(last_valid, c),
            *chunk!(last_x, c),
            *chunk!(quantum, c),
            if NC > 0 {
                (kept[c].0, kept[c].1)
            } else {
                (*chunk!(scl.valid, c), *chunk!(scl.xv, c))
            },
        );
        let mut rep = [0.0; LANE_CHUNK];
        for l in 0..LANE_CHUNK {
            // Masks as 0/1 values and blends, like the rest of the kernel:
            // no branch per lane, so the loop stays vectorised.
            let step = (xv[l] - lx[l]).abs();
            let seen = if nv[l] > 0.0 { valid[l] } else { 0.0 };
            let real = if step > QUANTUM_TOL * xv[l].abs() {
                seen
            } else {
                0.0
            };
            rep[l] = seen - real;
            // An unset quantum (0) takes the step as it is.
            let smaller = fmin(if qu[l] > 0.0 { qu[l] } else { f64::MAX }, step);
            qu[l] += real * (smaller - qu[l]);
            lx[l] += valid[l] * (xv[l] - lx[l]);
            nv[l] += valid[l];
            lv[l] = if valid[l] > 0.0 { ts } else { lv[l] };
        }
        *chunk!(mut nvalid, c) = nv;
        *chunk!(mut last_valid, c) = lv;
        *chunk!(mut last_x, c) = lx;
        *chunk!(mut quantum, c) = qu;
        *chunk!(mut scl.repeat, c) = rep;
        *chunk!(mut scl.n_valid, c) = nv;
    }
    // Per-lane weights: the asset's debiased weight, or 1/n_valid while the
    // sensor warms up (a late-joining sensor starts from its own values),
    // masked to 0 for missing values. `floor` is that 1/n_valid for lanes in
    // warm-up and -inf for the others (`fmax(a, -inf) = a`), computed once
    // per chunk for all five weights.
    let weights =
        |a: f64, floor: &[f64; LANE_CHUNK], valid: &[f64; LANE_CHUNK]| -> [f64; LANE_CHUNK] {
            let mut w = [0.0; LANE_CHUNK];
            for l in 0..LANE_CHUNK {
                let a = if WARM { fmax(a, floor[l]) } else { a };
                w[l] = a * valid[l];
            }
            w
        };
    let warm_floor = |nv: &[f64; LANE_CHUNK]| -> [f64; LANE_CHUNK] {
        let mut f = [f64::NEG_INFINITY; LANE_CHUNK];
        if WARM {
            for l in 0..LANE_CHUNK {
                // Every lane divides (no branch per lane): one vector division.
                let inv = 1.0 / fmax(nv[l], 1.0);
                f[l] = if nv[l] <= k.warmup {
                    inv
                } else {
                    f64::NEG_INFINITY
                };
            }
        }
        f
    };

    let long = n_h - 1;
    let a_long = sc.a[long];
    // Robbins–Monro burn-in: the steps start at 1/n and decay to their floors,
    // so a scale seeded from a short warm-up (which misses slow excursions)
    // catches up in tens of readings, not hundreds.
    let burn_in = if hdr[H_N_ROWS] * fmin(k.mad_step, k.median_step) < 1.0 {
        1.0 / hdr[H_N_ROWS]
    } else {
        0.0
    };
    let median_step = fmax(k.median_step, burn_in);
    let mad_step = fmax(k.mad_step, burn_in);
    let mut n_warm = 0.0;
    for c in 0..nc {
        let (valid, xv, resid) = if NC > 0 {
            kept[c]
        } else {
            (
                *chunk!(scl.valid, c),
                *chunk!(scl.xv, c),
                *chunk!(scl.resid, c),
            )
        };
        let nv = *chunk!(nvalid, c);
        let floor = warm_floor(&nv);
        let rep = *chunk!(scl.repeat, c);
        // Trend cross-moment uses the trend mean before this row.
        if !k.skip_ctx {
            let w = weights(a_t, &floor, &valid);
            let m_t = *chunk!(means[k.trend * np..], c);
            let mut cx = *chunk!(ctx, c);
            for l in 0..LANE_CHUNK {
                cx[l] = (1.0 - w[l]) * (cx[l] + w[l] * dtm * (xv[l] - m_t[l]));
            }
            *chunk!(mut ctx, c) = cx;
        }
        for h in 0..n_h {
            if !WARM && h == long && k.skip_long_steady {
                continue;
            }
            let w = weights(sc.a[h], &floor, &valid);
            let mut m = *chunk!(means[h * np..], c);
            if h >= 32 || k.skip_var >> h & 1 == 0 {
                let mut v = *chunk!(vars[h * np..], c);
                for l in 0..LANE_CHUNK {
                    let d = xv[l] - m[l];
                    m[l] += w[l] * d;
                    v[l] = (1.0 - w[l]) * (v[l] + w[l] * d * d);
                }
                *chunk!(mut vars[h * np..], c) = v;
            } else {
                for l in 0..LANE_CHUNK {
                    m[l] += w[l] * (xv[l] - m[l]);
                }
            }
            *chunk!(mut means[h * np..], c) = m;
            if h == k.trend {
                *chunk!(mut scl.level, c) = m;
            }
        }
        // Robust location/scale and the winsorised residual scale.
        let (m_long, v_long) = (
            *chunk!(means[long * np..], c),
            *chunk!(vars[long * np..], c),
        );
        let (mut md, mut ma, mut r_s) = (*chunk!(med, c), *chunk!(mad, c), *chunk!(rs, c));
        let qu = *chunk!(quantum, c);
        let w_long = weights(a_long, &floor, &valid);
        let mut warm_count = [0.0; LANE_CHUNK];
        for l in 0..LANE_CHUNK {
            let warm = WARM && nv[l] <= k.warmup;
            let floor = k.floor(md[l], qu[l]) * (1.0 / MAD_TO_SIGMA);
            let madf = fmax(ma[l], floor);
            let d = xv[l] - md[l];
            let (new_med, new_mad) = if warm {
                (m_long[l], fmax(v_long[l], 0.0).sqrt() / MAD_TO_SIGMA)
            } else {
                (
                    md[l] + median_step * madf * sign(d),
                    ma[l] + mad_step * madf * sign(d.abs() - ma[l]),
                )
            };
            let ok = valid[l] > 0.0;
            // A repeated value says where the level is, not how wide the
            // spread is: a held reading (a gateway repeating the last value,
            // a stuck sensor) must not shrink the scales it is judged by.
            let fresh = valid[l] - rep[l];
            md[l] = if ok { new_med } else { md[l] };
            ma[l] = if fresh > 0.0 { new_mad } else { ma[l] };
            let clip = if warm {
                f64::INFINITY
            } else {
                k.resid_clip * r_s[l]
            };
            r_s[l] += w_long[l] * fresh * (fmin(resid[l].abs(), clip) - r_s[l]);
            warm_count[l] = if warm { 1.0 } else { 0.0 };
        }
        *chunk!(mut med, c) = md;
        *chunk!(mut scl.median, c) = md;
        *chunk!(mut mad, c) = ma;
        *chunk!(mut rs, c) = r_s;
        n_warm += warm_count.iter().sum::<f64>();
    }
    hdr[H_N_WARM] = n_warm;
    sc.n_warm = n_warm;
}
