//! A seeded synthetic fleet with labelled anomalies, for quality tests and the
//! default input of `fieldpulse bench scoring`.
//!
//! The normal signal follows `make_fleet.py`, the benchmark fleet generator
//! the Python peers score (same sensors, levels, per-asset spread, daily
//! cycle with a per-asset phase, AR(1) noise with coefficient 0.7, a shared
//! AR(0.95) load factor), with one deliberate
//! difference: the load couples the four load-following sensors (temp,
//! vib_rms, current, oil_temp) with gain `load_gain` (default 2) instead of 1,
//! so that they are correlated the way real machines are and a *broken*
//! correlation is a meaningful thing to inject. Injected anomalies, by label:
//! 1 spike (single readings of 18–30 sigma, after the first fifth so they
//! fall after the detectors' warm-up), 2 drift (linear ramp to 24–45 sigma
//! on 1–3 sensors over the last 10–40 %), 3 level shift (15–24 sigma on one
//! sensor), 4 correlation break (one load-following sensor starts responding to
//! load with the opposite sign, its marginal distribution unchanged).
//! Rows are emitted time-major (every asset at t0, then t1, …), as a stream
//! would deliver them. The generator is deterministic for a seed.

/// Label of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AnomalyKind {
    /// A single-reading outlier.
    Spike = 1,
    /// A slow ramp away from normal.
    Drift = 2,
    /// A step change that persists.
    LevelShift = 3,
    /// Sensors that used to move together no longer do.
    CorrelationBreak = 4,
}

impl AnomalyKind {
    /// Every kind, in label order.
    pub const ALL: [AnomalyKind; 4] = [
        Self::Spike,
        Self::Drift,
        Self::LevelShift,
        Self::CorrelationBreak,
    ];

    /// The kind for a nonzero label.
    pub fn from_label(label: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == label)
    }

    /// Snake-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Spike => "spike",
            Self::Drift => "drift",
            Self::LevelShift => "level_shift",
            Self::CorrelationBreak => "correlation_break",
        }
    }
}

/// Sensor table: name, level, per-asset spread, noise sigma, daily amplitude
/// (as in make_fleet.py).
const SENSORS: [(&str, f64, f64, f64, f64); 8] = [
    ("temp", 70.0, 6.0, 0.8, 3.0),
    ("vib_rms", 0.30, 0.05, 0.02, 0.01),
    ("vib_peak", 1.10, 0.15, 0.07, 0.03),
    ("pressure", 101.3, 2.0, 0.4, 0.5),
    ("current", 12.0, 1.5, 0.25, 0.8),
    ("rpm", 1480.0, 20.0, 4.0, 10.0),
    ("oil_temp", 55.0, 4.0, 0.6, 2.0),
    ("humidity", 45.0, 8.0, 1.5, 6.0),
];
const LOAD_FOLLOWING: [usize; 4] = [0, 1, 4, 6];

/// What to generate. `Default` is the benchmark fleet: 1,000 assets × 1,000
/// readings × 8 sensors at 60 s, with every anomaly kind injected.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthParams {
    /// Number of assets.
    pub assets: usize,
    /// Readings per asset.
    pub readings: usize,
    /// Sensors per reading (beyond 8 the table repeats with suffixes).
    pub sensors: usize,
    /// Seconds between readings.
    pub interval_s: i64,
    /// RNG seed.
    pub seed: u64,
    /// Fraction of assets with 3 spikes.
    pub spike_frac: f64,
    /// Fraction of assets with a drift.
    pub drift_frac: f64,
    /// Fraction of assets with a level shift.
    pub level_frac: f64,
    /// Fraction of assets with a correlation break.
    pub corr_frac: f64,
    /// Load gain of the load-following sensors.
    pub load_gain: f64,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            assets: 1000,
            readings: 1000,
            sensors: 8,
            interval_s: 60,
            seed: 20_261_124,
            spike_frac: 0.05,
            drift_frac: 0.02,
            level_frac: 0.01,
            corr_frac: 0.02,
            load_gain: 2.0,
        }
    }
}

impl SynthParams {
    /// A fleet with only `kind` injected, at `frac` of the assets.
    pub fn only(kind: AnomalyKind, frac: f64) -> Self {
        let mut p = Self {
            spike_frac: 0.0,
            drift_frac: 0.0,
            level_frac: 0.0,
            corr_frac: 0.0,
            ..Self::default()
        };
        match kind {
            AnomalyKind::Spike => p.spike_frac = frac,
            AnomalyKind::Drift => p.drift_frac = frac,
            AnomalyKind::LevelShift => p.level_frac = frac,
            AnomalyKind::CorrelationBreak => p.corr_frac = frac,
        }
        p
    }
}

/// A generated fleet in arrival order.
#[derive(Debug, Clone)]
pub struct SynthFleet {
    /// Sensor names (lane order).
    pub sensor_names: Vec<String>,
    /// Asset names (`a00000`, …), indexed by `asset_idx`.
    pub asset_names: Vec<String>,
    /// Dense asset index per row.
    pub asset_idx: Vec<u32>,
    /// Epoch milliseconds per row.
    pub ts_ms: Vec<i64>,
    /// Row-major values, `sensors` per row.
    pub values: Vec<f64>,
    /// Label per row: 0 normal, else an [`AnomalyKind`] as u8.
    pub labels: Vec<u8>,
}

impl SynthFleet {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.ts_ms.len()
    }
}

/// SplitMix64 with Box–Muller normals: tiny, seedable, stable across versions.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
    pub(crate) fn sign(&mut self) -> f64 {
        if self.uniform() < 0.5 {
            -1.0
        } else {
            1.0
        }
    }
    /// `k` distinct indexes from `0..n`.
    pub(crate) fn choose(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k.min(n));
        idx
    }
}

/// Generates the fleet described by `p`.
pub fn generate(p: &SynthParams) -> SynthFleet {
    let (a_n, t_n, s_n) = (p.assets, p.readings, p.sensors.max(1));
    let mut rng = Rng::new(p.seed);
    let spec: Vec<(f64, f64, f64, f64)> = (0..s_n)
        .map(|i| SENSORS[i % 8])
        .map(|(_, l, sp, sg, am)| (l, sp, sg, am))
        .collect();
    let sensor_names: Vec<String> = (0..s_n)
        .map(|i| {
            if i < 8 {
                SENSORS[i].0.to_string()
            } else {
                format!("{}_{}", SENSORS[i % 8].0, i / 8)
            }
        })
        .collect();
    let day = 86_400.0 / p.interval_s.max(1) as f64;
    let mut x = vec![0.0; a_n * t_n * s_n];
    let mut labels = vec![0u8; a_n * t_n];
    let mut loads = vec![0.0; t_n];
    let mut noise = vec![0.0; s_n];
    for a in 0..a_n {
        let base: Vec<f64> = spec
            .iter()
            .map(|(l, sp, _, _)| l + rng.normal() * sp)
            .collect();
        let phase = rng.range(0.0, std::f64::consts::TAU);
        let mut load = 0.0;
        noise.fill(0.0);
        for (t, lt) in loads.iter_mut().enumerate() {
            load = 0.95 * load + (1.0f64 - 0.95 * 0.95).sqrt() * rng.normal();
            *lt = load;
            let cyc = (std::f64::consts::TAU * t as f64 / day + phase).sin();
            for s in 0..s_n {
                let (_, _, sigma, amp) = spec[s];
                noise[s] = 0.7 * noise[s] + (1.0f64 - 0.49).sqrt() * rng.normal();
                let gain = if LOAD_FOLLOWING.contains(&(s % 8)) {
                    p.load_gain
                } else {
                    0.2
                };
                x[(a * t_n + t) * s_n + s] =
                    base[s] + cyc * amp + noise[s] * sigma + load * sigma * gain;
            }
        }
        // Correlation break: reverse the sign of one load-following sensor's load response.
        corr_slot(&mut x, &mut labels, &loads, a, p, &spec, &mut rng);
    }
    inject(&mut x, &mut labels, p, &spec, &mut rng);
    // Emit time-major.
    let mut asset_idx = Vec::with_capacity(a_n * t_n);
    let mut ts_ms = Vec::with_capacity(a_n * t_n);
    let mut values = Vec::with_capacity(a_n * t_n * s_n);
    let mut out_labels = Vec::with_capacity(a_n * t_n);
    let t0 = 1_767_225_600_000i64;
    for t in 0..t_n {
        for a in 0..a_n {
            asset_idx.push(a as u32);
            ts_ms.push(t0 + t as i64 * p.interval_s * 1000);
            values.extend_from_slice(&x[(a * t_n + t) * s_n..(a * t_n + t + 1) * s_n]);
            out_labels.push(labels[a * t_n + t]);
        }
    }
    SynthFleet {
        sensor_names,
        asset_names: (0..a_n).map(|i| format!("a{i:05}")).collect(),
        asset_idx,
        ts_ms,
        values,
        labels: out_labels,
    }
}

/// Decides (deterministically from the asset index and seed) whether asset `a`
/// gets a correlation break, and applies it while its load series is at hand.
fn corr_slot(
    x: &mut [f64],
    labels: &mut [u8],
    loads: &[f64],
    a: usize,
    p: &SynthParams,
    spec: &[(f64, f64, f64, f64)],
    rng: &mut Rng,
) {
    let (t_n, s_n) = (p.readings, spec.len());
    if p.corr_frac <= 0.0 || s_n < 2 || t_n < 10 {
        return;
    }
    // Every 1/frac-th asset (offset by the seed), so the count is exact.
    let every = (1.0 / p.corr_frac).round().max(1.0) as usize;
    if (a + (p.seed as usize % every)) % every != every / 2 {
        return;
    }
    let candidates: Vec<usize> = (0..s_n)
        .filter(|s| LOAD_FOLLOWING.contains(&(s % 8)))
        .collect();
    let s = candidates[rng.below(candidates.len())];
    let start = (t_n as f64 * rng.range(0.4, 0.8)) as usize;
    let sigma = spec[s].2;
    for (t, load) in loads.iter().enumerate().skip(start) {
        x[(a * t_n + t) * s_n + s] -= 2.0 * load * sigma * p.load_gain;
        labels[a * t_n + t] = labels[a * t_n + t].max(AnomalyKind::CorrelationBreak as u8);
    }
}

fn inject(
    x: &mut [f64],
    labels: &mut [u8],
    p: &SynthParams,
    spec: &[(f64, f64, f64, f64)],
    rng: &mut Rng,
) {
    let (a_n, t_n, s_n) = (p.assets, p.readings, spec.len());
    if a_n == 0 || t_n < 10 {
        return;
    }
    let count = |frac: f64| {
        if frac > 0.0 {
            ((a_n as f64 * frac).round() as usize).max(1)
        } else {
            0
        }
    };
    let at = |a: usize, t: usize, s: usize| (a * t_n + t) * s_n + s;
    for a in rng.choose(a_n, count(p.spike_frac)) {
        for _ in 0..3 {
            let t = t_n / 5 + rng.below(t_n - t_n / 5);
            let s = rng.below(s_n);
            x[at(a, t, s)] += rng.sign() * rng.range(6.0, 10.0) * spec[s].2 * 3.0;
            labels[a * t_n + t] = labels[a * t_n + t].max(AnomalyKind::Spike as u8);
        }
    }
    for a in rng.choose(a_n, count(p.drift_frac)) {
        let start = (t_n as f64 * rng.range(0.6, 0.9)) as usize;
        let k = 1 + rng.below(s_n.min(3));
        for s in rng.choose(s_n, k) {
            let size = rng.range(8.0, 15.0) * spec[s].2 * 3.0;
            let len = (t_n - start).max(2) - 1;
            for t in start..t_n {
                x[at(a, t, s)] += (t - start) as f64 / len as f64 * size;
            }
        }
        for l in &mut labels[a * t_n + start..(a + 1) * t_n] {
            *l = (*l).max(AnomalyKind::Drift as u8);
        }
    }
    for a in rng.choose(a_n, count(p.level_frac)) {
        let start = (t_n as f64 * rng.range(0.3, 0.8)) as usize;
        let s = rng.below(s_n);
        let size = rng.sign() * rng.range(5.0, 8.0) * spec[s].2 * 3.0;
        for t in start..t_n {
            x[at(a, t, s)] += size;
        }
        for l in &mut labels[a * t_n + start..(a + 1) * t_n] {
            *l = (*l).max(AnomalyKind::LevelShift as u8);
        }
    }
}
