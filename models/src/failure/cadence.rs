//! Reading cadence: the nominal interval between an asset's readings.
//!
//! The streaming features' half-lives are counted in readings, so a model
//! trained on hourly telemetry reads 10-minute telemetry as six times faster
//! dynamics. Training records the cadence in the model card
//! (`training_cadence`) and `fieldpulse score` compares each input asset's
//! against it ([`CADENCE_TOLERANCE`]).
//!
//! An asset's interval is the median of its positive time steps between
//! consecutive readings (in input order); the fleet's is the median over
//! assets, with the 10th and 90th percentiles showing the spread.

use serde::{Deserialize, Serialize};

/// An input asset's interval may differ from the training cadence by at most
/// this factor either way.
pub const CADENCE_TOLERANCE: f64 = 2.0;
/// An asset needs at least this many positive time steps for an interval.
pub const MIN_STEPS: usize = 3;

/// The cadence of a telemetry set (model card `training_cadence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cadence {
    /// Median over assets of each asset's median interval, seconds.
    pub median_interval_s: f64,
    /// 10th percentile over assets, seconds.
    pub p10_interval_s: f64,
    /// 90th percentile over assets, seconds.
    pub p90_interval_s: f64,
    /// Assets with an interval (at least [`MIN_STEPS`] steps).
    pub n_assets: usize,
    /// How it was measured.
    pub method: String,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Each asset's median interval in seconds (`None` with fewer than
/// [`MIN_STEPS`] positive steps); rows are `(asset index, ts ms)` in input order.
pub fn asset_intervals_s(asset_idx: &[u32], ts_ms: &[i64], n_assets: usize) -> Vec<Option<f64>> {
    let mut last: Vec<Option<i64>> = vec![None; n_assets];
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); n_assets];
    for (&a, &t) in asset_idx.iter().zip(ts_ms) {
        let a = a as usize;
        if let Some(prev) = last[a] {
            if t > prev {
                steps[a].push((t - prev) as f64 / 1000.0);
            }
        }
        last[a] = Some(last[a].map_or(t, |p| p.max(t)));
    }
    steps
        .into_iter()
        .map(|mut s| {
            if s.len() < MIN_STEPS {
                return None;
            }
            s.sort_by(f64::total_cmp);
            Some(median(&s))
        })
        .collect()
}

/// The fleet cadence from per-asset intervals, `None` when no asset has one.
pub fn fleet_cadence(intervals: &[Option<f64>]) -> Option<Cadence> {
    let mut v: Vec<f64> = intervals.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Cadence {
        median_interval_s: median(&v),
        p10_interval_s: quantile(&v, 0.1),
        p90_interval_s: quantile(&v, 0.9),
        n_assets: v.len(),
        method: "median over assets of each asset's median positive step between readings".into(),
    })
}

/// Whether `interval_s` is within [`CADENCE_TOLERANCE`] of `trained_s`.
pub fn cadence_matches(interval_s: f64, trained_s: f64) -> bool {
    let ratio = interval_s / trained_s;
    ratio.is_finite() && (1.0 / CADENCE_TOLERANCE..=CADENCE_TOLERANCE).contains(&ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_medians_of_positive_steps_per_asset() {
        // Asset 0 hourly with one 5 h gap and a duplicate; asset 1 every 10 min;
        // asset 2 too short to say.
        let h = 3_600_000;
        let rows = [
            (0, 0),
            (1, 0),
            (0, h),
            (1, 600_000),
            (0, 2 * h),
            (0, 2 * h),
            (1, 1_200_000),
            (0, 7 * h),
            (2, 0),
            (1, 1_800_000),
            (0, 8 * h),
        ];
        let (a, t): (Vec<u32>, Vec<i64>) = rows.iter().copied().unzip();
        let iv = asset_intervals_s(&a, &t, 3);
        assert_eq!(iv, vec![Some(3600.0), Some(600.0), None]);
        let c = fleet_cadence(&iv).expect("cadence");
        assert_eq!((c.n_assets, c.median_interval_s), (2, 2100.0));
        assert!(cadence_matches(3600.0, 3600.0 * 1.9));
        assert!(!cadence_matches(600.0, 3600.0));
        assert!(!cadence_matches(3600.0 * 2.5, 3600.0));
        assert!(fleet_cadence(&[None]).is_none());
    }
}
