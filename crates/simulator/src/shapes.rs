//! A seeded, labelled corpus of single-value series in the shapes industrial telemetry takes
//! (issue #13): quantised flat signals with rare steps, square waves with a jittered period,
//! sawtooth, Poisson counts with bursts, heavy-tailed spikes, random walks, slow ramps, daily and
//! weekly seasonality, gaps and irregular sampling, and a signal idle between large bursts (a disk
//! between writes) — each clean or with one injected anomaly
//! (spike, level shift, variance change, stuck-at value, drift, broken periodicity).
//!
//! A series and its label are a pure function of `(shape, anomaly, rows, seed)`; the anomaly is
//! injected into the very series the clean variant of the same seed produces, so a test can
//! compare the two. Rows are a minute apart (irregular for [`Shape::Gappy`]).
//!
//! ```
//! use fieldpulse_simulator::shapes::{generate, AnomalyKind, Shape};
//! let s = generate(Shape::SquareWave, Some(AnomalyKind::StuckAt), 5_000, 7);
//! assert_eq!(s.values.len(), 5_000);
//! assert!(s.labels.iter().any(|&l| l));
//! ```

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The normal behaviour of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A setpoint read by a quantised sensor (0.5 steps), stepping to a new level rarely.
    FlatQuantised,
    /// On/off duty cycle between two levels, period jittered ±10 %.
    SquareWave,
    /// A slow linear rise and a sudden reset (fill and empty).
    Sawtooth,
    /// Event counts per minute: Poisson(0.3), with bursts of Poisson(8) now and then.
    PoissonBursts,
    /// Gaussian noise with Student-t (3 degrees of freedom) tails.
    HeavyTailed,
    /// A random walk (e.g. a slowly wandering level).
    RandomWalk,
    /// A slow ramp with noise.
    SlowRamp,
    /// A daily cycle and a weekday/weekend difference, with noise.
    Seasonal,
    /// Noise around a level, sampled irregularly (30–90 s) with gaps of hours.
    Gappy,
    /// A disk between writes: 0 about nine readings in ten, otherwise bursts of a few readings of
    /// 10^4 to 10^8 bytes (log-uniform, whole bytes). Its median absolute deviation is 0.
    IdleBursts,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 10] = [
        Shape::FlatQuantised,
        Shape::SquareWave,
        Shape::Sawtooth,
        Shape::PoissonBursts,
        Shape::HeavyTailed,
        Shape::RandomWalk,
        Shape::SlowRamp,
        Shape::Seasonal,
        Shape::Gappy,
        Shape::IdleBursts,
    ];

    /// A short lowercase name (`flat_quantised`, …) for reports.
    pub fn name(self) -> &'static str {
        match self {
            Shape::FlatQuantised => "flat_quantised",
            Shape::SquareWave => "square_wave",
            Shape::Sawtooth => "sawtooth",
            Shape::PoissonBursts => "poisson_bursts",
            Shape::HeavyTailed => "heavy_tailed",
            Shape::RandomWalk => "random_walk",
            Shape::SlowRamp => "slow_ramp",
            Shape::Seasonal => "seasonal",
            Shape::Gappy => "gappy",
            Shape::IdleBursts => "idle_bursts",
        }
    }

    /// True when the shape repeats with a period (a broken period is an anomaly of it).
    pub fn is_periodic(self) -> bool {
        matches!(self, Shape::SquareWave | Shape::Sawtooth | Shape::Seasonal)
    }
}

/// What is injected into a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// A few isolated rows far outside the normal range.
    Spike,
    /// The level moves by several normal spreads and stays (to the end of the series).
    LevelShift,
    /// The noise becomes four times as wide for a stretch.
    VarianceChange,
    /// The sensor repeats one value for a stretch (a frozen reading).
    StuckAt,
    /// A slow departure growing to several spreads over a stretch.
    Drift,
    /// A periodic shape stops cycling for a stretch (held at its mean).
    BrokenPeriod,
}

impl AnomalyKind {
    /// Every kind.
    pub const ALL: [AnomalyKind; 6] = [
        AnomalyKind::Spike,
        AnomalyKind::LevelShift,
        AnomalyKind::VarianceChange,
        AnomalyKind::StuckAt,
        AnomalyKind::Drift,
        AnomalyKind::BrokenPeriod,
    ];

    /// A short lowercase name for reports.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Spike => "spike",
            AnomalyKind::LevelShift => "level_shift",
            AnomalyKind::VarianceChange => "variance_change",
            AnomalyKind::StuckAt => "stuck_at",
            AnomalyKind::Drift => "drift",
            AnomalyKind::BrokenPeriod => "broken_period",
        }
    }

    /// True when the kind makes sense for `shape` (a broken period needs a periodic shape).
    pub fn applies_to(self, shape: Shape) -> bool {
        self != AnomalyKind::BrokenPeriod || shape.is_periodic()
    }
}

/// One injected anomaly: rows `start..end` are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    /// What was injected.
    pub kind: AnomalyKind,
    /// First anomalous row.
    pub start: usize,
    /// One past the last anomalous row.
    pub end: usize,
}

/// A generated series with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeSeries {
    /// The normal behaviour.
    pub shape: Shape,
    /// The anomaly, if one was injected.
    pub injected: Option<Injected>,
    /// Row times, ms since the epoch, increasing.
    pub ts_ms: Vec<i64>,
    /// Row values.
    pub values: Vec<f64>,
    /// Per row: true inside the injected anomaly.
    pub labels: Vec<bool>,
}

/// Spreads an injected drift has ramped to by its last row (from 0 at its first).
pub const DRIFT_SPREADS: f64 = 5.0;

/// 2024-01-01T00:00:00Z, a Monday: the first row's time.
pub const START_MS: i64 = 1_704_067_200_000;
const MINUTE_MS: i64 = 60_000;

/// Generates `rows` rows of `shape` (at least 2,000), with `anomaly` injected when given (and
/// applicable to the shape, else the series is clean). Deterministic in all arguments.
pub fn generate(shape: Shape, anomaly: Option<AnomalyKind>, rows: usize, seed: u64) -> ShapeSeries {
    let rows = rows.max(2_000);
    let mut rng = StdRng::seed_from_u64(seed ^ (shape as u64) << 56);
    let ts_ms = timestamps(shape, rows, &mut rng);
    let (mut values, spread) = normal_values(shape, &ts_ms, &mut rng);
    let mut labels = vec![false; rows];
    let injected = anomaly.filter(|kind| kind.applies_to(shape)).map(|kind| {
        // Injected after the first half (detectors warm up) and away from the end.
        let mut arng =
            StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ kind as u64);
        let start = arng.gen_range(rows / 2..rows * 3 / 4);
        let len = match kind {
            AnomalyKind::Spike => 3,
            AnomalyKind::LevelShift => rows - start,
            _ => (rows / 10).max(120),
        }
        .min(rows - start);
        let end = start + len;
        inject(kind, shape, &mut values[start..end], spread, &mut arng);
        labels[start..end].fill(true);
        Injected { kind, start, end }
    });
    ShapeSeries {
        shape,
        injected,
        ts_ms,
        values,
        labels,
    }
}

/// Every shape, clean and with each applicable anomaly kind, from `seed`.
pub fn corpus(rows: usize, seed: u64) -> Vec<ShapeSeries> {
    let mut out = Vec::new();
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        let seed = seed.wrapping_add(i as u64);
        out.push(generate(shape, None, rows, seed));
        for kind in AnomalyKind::ALL {
            if kind.applies_to(shape) {
                out.push(generate(shape, Some(kind), rows, seed));
            }
        }
    }
    out
}

fn timestamps(shape: Shape, rows: usize, rng: &mut StdRng) -> Vec<i64> {
    let mut ts = Vec::with_capacity(rows);
    let mut t = START_MS;
    for _ in 0..rows {
        ts.push(t);
        t += if shape == Shape::Gappy {
            if rng.gen_bool(0.002) {
                rng.gen_range(2..8) * 3_600_000
            } else {
                rng.gen_range(30_000..90_000)
            }
        } else {
            MINUTE_MS
        };
    }
    ts
}

fn gauss(rng: &mut StdRng) -> f64 {
    // Box–Muller; `1 - u` keeps the log argument in (0, 1].
    let u: f64 = rng.gen();
    let v: f64 = rng.gen();
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn poisson(rng: &mut StdRng, lambda: f64) -> f64 {
    // Knuth's method: small lambdas only.
    let limit = (-lambda).exp();
    let mut k = 0.0;
    let mut p = 1.0;
    loop {
        p *= rng.gen::<f64>();
        if p <= limit {
            return k;
        }
        k += 1.0;
    }
}

/// The clean series and its normal spread (what "several spreads" of an anomaly is measured in).
fn normal_values(shape: Shape, ts_ms: &[i64], rng: &mut StdRng) -> (Vec<f64>, f64) {
    let n = ts_ms.len();
    let mut values = Vec::with_capacity(n);
    match shape {
        Shape::FlatQuantised => {
            let mut level: f64 = 50.0;
            for _ in 0..n {
                if rng.gen_bool(0.001) {
                    level += if rng.gen_bool(0.5) { 0.5 } else { -0.5 };
                }
                let noisy = level + if rng.gen_bool(0.05) { 0.5 } else { 0.0 };
                values.push((noisy * 2.0).round() / 2.0);
            }
            (values, 0.5)
        }
        Shape::SquareWave => {
            let (mut on, mut left) = (true, 30usize);
            for _ in 0..n {
                values.push(if on { 80.0 } else { 20.0 } + 0.3 * gauss(rng));
                left -= 1;
                if left == 0 {
                    on = !on;
                    left = rng.gen_range(27..=33);
                }
            }
            (values, 30.0)
        }
        Shape::Sawtooth => {
            let mut level = 0.0;
            for _ in 0..n {
                level += 1.0;
                if level >= 120.0 {
                    level = 0.0;
                }
                values.push(level + 0.5 * gauss(rng));
            }
            (values, 35.0)
        }
        Shape::PoissonBursts => {
            let mut burst = 0;
            for _ in 0..n {
                if burst == 0 && rng.gen_bool(0.003) {
                    burst = rng.gen_range(3..10);
                }
                let lambda = if burst > 0 {
                    burst -= 1;
                    8.0
                } else {
                    0.3
                };
                values.push(poisson(rng, lambda));
            }
            (values, 1.0)
        }
        Shape::HeavyTailed => {
            for _ in 0..n {
                // Student t with 3 degrees of freedom: a normal over the root of a chi-square / 3.
                let chi: f64 = (0..3).map(|_| gauss(rng).powi(2)).sum::<f64>() / 3.0;
                values.push(10.0 + gauss(rng) / chi.sqrt().max(1e-3));
            }
            (values, 1.7)
        }
        Shape::RandomWalk => {
            let mut level = 100.0;
            for _ in 0..n {
                level += 0.2 * gauss(rng);
                values.push(level + 0.1 * gauss(rng));
            }
            (values, 2.0)
        }
        Shape::SlowRamp => {
            for i in 0..n {
                values.push(20.0 + 10.0 * i as f64 / n as f64 + 0.5 * gauss(rng));
            }
            (values, 0.5)
        }
        Shape::Seasonal => {
            for &t in ts_ms {
                let minutes = (t - START_MS) / MINUTE_MS;
                let day_phase = (minutes % 1_440) as f64 / 1_440.0;
                let weekend = (minutes / 1_440) % 7 >= 5;
                let daily = 10.0 * (std::f64::consts::TAU * (day_phase - 0.25)).sin();
                values.push(50.0 + daily - if weekend { 8.0 } else { 0.0 } + gauss(rng));
            }
            (values, 7.0)
        }
        Shape::Gappy => {
            for _ in 0..n {
                values.push(30.0 + 0.8 * gauss(rng));
            }
            (values, 0.8)
        }
        Shape::IdleBursts => {
            let mut burst = 0;
            for _ in 0..n {
                if burst == 0 && rng.gen_bool(0.025) {
                    burst = rng.gen_range(2..=6);
                }
                values.push(if burst > 0 {
                    burst -= 1;
                    10f64.powf(rng.gen_range(4.0..8.0)).round()
                } else {
                    0.0
                });
            }
            // A typical write (the median of the log-uniform sizes).
            (values, 1e6)
        }
    }
}

fn inject(kind: AnomalyKind, shape: Shape, window: &mut [f64], spread: f64, rng: &mut StdRng) {
    let n = window.len();
    match kind {
        AnomalyKind::Spike => {
            for v in window.iter_mut() {
                *v += 8.0 * spread.max(1.0) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            }
        }
        AnomalyKind::LevelShift => {
            for v in window.iter_mut() {
                *v += 4.0 * spread;
            }
        }
        AnomalyKind::VarianceChange => {
            let mean = window.iter().sum::<f64>() / n as f64;
            for v in window.iter_mut() {
                *v = mean + 4.0 * (*v - mean) + spread * gauss(rng);
            }
        }
        AnomalyKind::StuckAt => {
            let held = window[0];
            window.fill(held);
        }
        AnomalyKind::Drift => {
            for (i, v) in window.iter_mut().enumerate() {
                *v += DRIFT_SPREADS * spread * i as f64 / n as f64;
            }
        }
        AnomalyKind::BrokenPeriod => {
            debug_assert!(shape.is_periodic());
            let mean = window.iter().sum::<f64>() / n as f64;
            for v in window.iter_mut() {
                *v = mean + 0.05 * spread * gauss(rng);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_a_pure_function_of_its_arguments() {
        for shape in Shape::ALL {
            let a = generate(shape, Some(AnomalyKind::Drift), 3_000, 11);
            assert_eq!(a, generate(shape, Some(AnomalyKind::Drift), 3_000, 11));
            assert_ne!(
                a.values,
                generate(shape, Some(AnomalyKind::Drift), 3_000, 12).values
            );
            assert!(a.ts_ms.windows(2).all(|w| w[0] < w[1]), "{shape:?}");
            assert!(a.values.iter().all(|v| v.is_finite()), "{shape:?}");
        }
    }

    #[test]
    fn labels_cover_exactly_the_rows_the_injection_changed_and_clean_series_have_none() {
        for series in corpus(4_000, 3) {
            let clean = generate(series.shape, None, 4_000, {
                // `corpus` offsets the seed per shape.
                3 + Shape::ALL.iter().position(|s| *s == series.shape).unwrap() as u64
            });
            match series.injected {
                None => {
                    assert!(series.labels.iter().all(|l| !l));
                    assert_eq!(series.values, clean.values);
                }
                Some(injected) => {
                    let labelled: Vec<usize> = (0..series.labels.len())
                        .filter(|&i| series.labels[i])
                        .collect();
                    assert_eq!(labelled.first(), Some(&injected.start));
                    assert_eq!(labelled.last(), Some(&(injected.end - 1)));
                    assert!(injected.start >= 2_000, "after the warm-up half");
                    for i in 0..series.values.len() {
                        if !series.labels[i] {
                            assert_eq!(series.values[i], clean.values[i], "{series:?} row {i}");
                        }
                    }
                    let window = &series.values[injected.start..injected.end];
                    if injected.kind == AnomalyKind::StuckAt {
                        assert!(window.iter().all(|v| *v == window[0]));
                    } else {
                        let changed = (injected.start..injected.end)
                            .filter(|&i| series.values[i] != clean.values[i])
                            .count();
                        assert!(changed + 1 >= window.len(), "{:?}", injected.kind);
                    }
                }
            }
        }
    }

    #[test]
    fn the_shapes_have_the_properties_they_are_named_for() {
        let flat = generate(Shape::FlatQuantised, None, 10_000, 1);
        assert!(
            flat.values.iter().all(|v| (v * 2.0).fract() == 0.0),
            "quantised to 0.5"
        );
        let square = generate(Shape::SquareWave, None, 10_000, 1);
        assert!(square
            .values
            .iter()
            .all(|v| (v - 80.0).abs() < 3.0 || (v - 20.0).abs() < 3.0));
        let counts = generate(Shape::PoissonBursts, None, 10_000, 1);
        assert!(counts.values.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
        let zeros = counts.values.iter().filter(|v| **v == 0.0).count();
        assert!(zeros > 5_000, "zero most of the time: {zeros}");
        let gappy = generate(Shape::Gappy, None, 10_000, 1);
        let gaps = gappy
            .ts_ms
            .windows(2)
            .filter(|w| w[1] - w[0] >= 7_200_000)
            .count();
        assert!(gaps >= 5, "hours-long gaps: {gaps}");
        let seasonal = generate(Shape::Seasonal, None, 20_160, 1);
        let day = 1_440;
        let lagged: f64 = (day..seasonal.values.len())
            .map(|i| (seasonal.values[i] - seasonal.values[i - day]).abs())
            .sum::<f64>()
            / (seasonal.values.len() - day) as f64;
        let half: f64 = (day / 2..seasonal.values.len())
            .map(|i| (seasonal.values[i] - seasonal.values[i - day / 2]).abs())
            .sum::<f64>()
            / (seasonal.values.len() - day / 2) as f64;
        assert!(lagged * 3.0 < half, "a daily cycle: {lagged} vs {half}");
    }

    #[test]
    fn the_corpus_has_every_shape_clean_and_every_applicable_anomaly() {
        let corpus = corpus(2_000, 5);
        let periodic = Shape::ALL.iter().filter(|s| s.is_periodic()).count();
        assert_eq!(corpus.len(), Shape::ALL.len() * 6 + periodic);
        assert!(corpus
            .iter()
            .all(|s| s.injected.is_none_or(|i| i.kind.applies_to(s.shape))));
    }
}
