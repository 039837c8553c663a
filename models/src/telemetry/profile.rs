//! What training needs to know about the whole telemetry besides its feature
//! rows: sensors, assets, row counts, each asset's first and last reading
//! and cadence. Built by pass 1 without holding the rows.

use std::collections::HashMap;

use serde::Serialize;

use super::chunk::RowBatch;
use crate::failure::cadence::{asset_intervals_s, MIN_STEPS};
use crate::failure::dataset::Telemetry;

/// Summary of a telemetry set (pass 1 of [`super::TelemetryInput`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TelemetryProfile {
    /// Sensor names, in the order rows carry them.
    pub sensors: Vec<String>,
    /// Asset names; rows index into this.
    pub assets: Vec<String>,
    /// Wide rows.
    pub n_rows: usize,
    /// First reading per asset (epoch ms).
    pub first_reading_ms: Vec<i64>,
    /// Last reading per asset (epoch ms).
    pub last_reading_ms: Vec<i64>,
    /// Rows per asset.
    pub n_readings: Vec<u64>,
    /// Median positive step between readings per asset, seconds (`None` with
    /// fewer than [`MIN_STEPS`] steps): [`crate::failure::cadence`].
    pub intervals_s: Vec<Option<f64>>,
}

impl TelemetryProfile {
    /// The profile of telemetry in memory (same values the in-memory
    /// training path always computed).
    pub fn of(t: &Telemetry) -> Self {
        let n = t.assets.len();
        let mut first = vec![i64::MAX; n];
        let mut counts = vec![0u64; n];
        for (&a, &ts) in t.asset_idx.iter().zip(&t.ts_ms) {
            first[a as usize] = first[a as usize].min(ts);
            counts[a as usize] += 1;
        }
        Self {
            sensors: t.sensors.clone(),
            assets: t.assets.clone(),
            n_rows: t.n_rows(),
            first_reading_ms: first,
            last_reading_ms: t.last_reading_ms(),
            n_readings: counts,
            intervals_s: asset_intervals_s(&t.asset_idx, &t.ts_ms, n),
        }
    }

    /// First and last reading over all assets.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let idx = (0..self.assets.len()).filter(|&a| self.n_readings[a] > 0);
        let min = idx.clone().map(|a| self.first_reading_ms[a]).min()?;
        let max = idx.map(|a| self.last_reading_ms[a]).max()?;
        Some((min, max))
    }
}

/// Per-asset accumulation of pass 1 (rows arrive per asset in time order).
#[derive(Debug, Default)]
pub(crate) struct ProfileBuilder {
    assets: Vec<AssetAcc>,
}

#[derive(Debug, Default)]
struct AssetAcc {
    n: u64,
    first: i64,
    last: i64,
    /// Positive steps (ms) → how often.
    steps: HashMap<i64, u64>,
    run_step: i64,
    run_len: u64,
}

impl AssetAcc {
    fn flush_run(&mut self) {
        if self.run_len > 0 {
            *self.steps.entry(self.run_step).or_default() += self.run_len;
            self.run_len = 0;
        }
    }
}

impl ProfileBuilder {
    /// Adds a chunk's rows (provisional asset ids).
    pub fn add(&mut self, batch: &RowBatch<'_>) {
        for (&a, &t) in batch.asset.iter().zip(batch.ts_ms) {
            let a = a as usize;
            if a >= self.assets.len() {
                self.assets.resize_with(a + 1, AssetAcc::default);
            }
            let acc = &mut self.assets[a];
            if acc.n == 0 {
                acc.first = t;
                acc.last = t;
            } else if t > acc.last {
                let step = t - acc.last;
                if step != acc.run_step {
                    acc.flush_run();
                    acc.run_step = step;
                }
                acc.run_len += 1;
                acc.last = t;
            }
            acc.n += 1;
        }
    }

    /// The profile, assets ordered by first reading then name, and the map
    /// provisional id → profile index.
    pub fn finish(
        mut self,
        sensors: Vec<String>,
        names: &[String],
    ) -> (TelemetryProfile, Vec<u32>) {
        self.assets.resize_with(names.len(), AssetAcc::default);
        let mut ids: Vec<usize> = (0..names.len()).filter(|&a| self.assets[a].n > 0).collect();
        ids.sort_by(|&a, &b| {
            (self.assets[a].first, &names[a]).cmp(&(self.assets[b].first, &names[b]))
        });
        let mut canonical = vec![u32::MAX; names.len()];
        let mut profile = TelemetryProfile {
            sensors,
            ..TelemetryProfile::default()
        };
        for (k, &a) in ids.iter().enumerate() {
            canonical[a] = k as u32;
            let acc = &mut self.assets[a];
            acc.flush_run();
            profile.assets.push(names[a].clone());
            profile.first_reading_ms.push(acc.first);
            profile.last_reading_ms.push(acc.last);
            profile.n_readings.push(acc.n);
            profile.n_rows += acc.n as usize;
            profile.intervals_s.push(median_step_s(&acc.steps));
        }
        (profile, canonical)
    }
}

/// The median of the steps (seconds), computed exactly as
/// [`asset_intervals_s`] does from the list of steps.
fn median_step_s(steps: &HashMap<i64, u64>) -> Option<f64> {
    let n: u64 = steps.values().sum();
    if (n as usize) < MIN_STEPS {
        return None;
    }
    let mut sorted: Vec<(i64, u64)> = steps.iter().map(|(&s, &c)| (s, c)).collect();
    sorted.sort_unstable();
    let nth = |idx: u64| {
        let mut seen = 0;
        for &(step, count) in &sorted {
            seen += count;
            if idx < seen {
                return step as f64 / 1000.0;
            }
        }
        f64::NAN
    };
    Some(if n % 2 == 1 {
        nth(n / 2)
    } else {
        0.5 * (nth(n / 2 - 1) + nth(n / 2))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_histogram_medians_equal_the_list_medians() {
        let h = 3_600_000;
        for ts in [
            vec![0, h, 2 * h, 7 * h, 8 * h],
            vec![0, h, 3 * h, 4 * h],
            vec![
                0, 600_000, 600_000, 1_200_000, 1_800_000, 2_400_000, 9_000_000,
            ],
            vec![0, 1],
        ] {
            let asset = vec![0u32; ts.len()];
            let want = asset_intervals_s(&asset, &ts, 1)[0];
            let mut b = ProfileBuilder::default();
            b.add(&RowBatch {
                asset: &asset,
                ts_ms: &ts,
                values: &[],
                n_values: 0,
            });
            let (p, _) = b.finish(vec![], &["a".into()]);
            assert_eq!(p.intervals_s[0], want, "{ts:?}");
        }
    }
}
