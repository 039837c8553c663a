//! From a log record's columnar `Batch` to per-asset scoring rows.
//!
//! A `Batch` holds one `Series` per (asset, sensor). Scoring wants rows: one
//! timestamp, one value per configured sensor (`NaN` where that sensor has no
//! reading at that instant). Readings of one asset are merged by timestamp,
//! in time order; readings of sensors outside the scoring layout are counted,
//! not scored.

use std::collections::HashMap;

use fieldpulse_proto::v1::Batch;

/// The rows of one asset from one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRows {
    /// Asset id as the gateway sent it (the Salesforce Asset Name).
    pub asset: String,
    /// Row timestamps (ms), non-decreasing.
    pub ts_ms: Vec<i64>,
    /// `ts_ms.len() * n_sensors` values, row-major; `NaN` = no reading.
    pub values: Vec<f64>,
    /// Readings merged into these rows.
    pub n_readings: u64,
}

impl AssetRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    /// Row `i`'s values.
    pub fn row(&self, i: usize, n_sensors: usize) -> &[f64] {
        &self.values[i * n_sensors..(i + 1) * n_sensors]
    }
}

/// Maps sensor names to their scoring position.
#[derive(Debug, Clone)]
pub struct SensorLayout {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl SensorLayout {
    /// A layout in the given order.
    pub fn new(names: Vec<String>) -> Self {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Self { names, index }
    }

    /// Sensor names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of sensors.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no sensors are configured.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Position of a sensor.
    pub fn position(&self, sensor: &str) -> Option<usize> {
        self.index.get(sensor).copied()
    }
}

/// What [`split_rows`] produced besides rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitCounts {
    /// Readings of sensors outside the layout (not scored).
    pub unknown_sensor_readings: u64,
}

/// Splits a batch into per-asset rows, keeping only assets `keep` accepts
/// (a shard's own assets). Assets come out in first-appearance order.
pub fn split_rows(
    batch: &Batch,
    layout: &SensorLayout,
    mut keep: impl FnMut(&str) -> bool,
) -> (Vec<AssetRows>, SplitCounts) {
    let n = layout.len();
    let mut counts = SplitCounts::default();
    let mut order: Vec<&str> = Vec::new();
    let mut points: HashMap<&str, Vec<(i64, usize, f64)>> = HashMap::new();
    for series in &batch.series {
        if !keep(&series.asset_id) {
            continue;
        }
        let Some(pos) = layout.position(&series.sensor) else {
            counts.unknown_sensor_readings += series.len() as u64;
            continue;
        };
        let entry = points.entry(series.asset_id.as_str()).or_insert_with(|| {
            order.push(series.asset_id.as_str());
            Vec::new()
        });
        entry.extend(series.points().map(|(ts, v)| (ts, pos, v)));
    }
    let rows = order
        .into_iter()
        .map(|asset| {
            let mut pts = points.remove(asset).unwrap_or_default();
            // Stable: two readings of one sensor at one instant keep their order (last wins).
            pts.sort_by_key(|p| p.0);
            let mut out = AssetRows {
                asset: asset.to_string(),
                ts_ms: Vec::new(),
                values: Vec::new(),
                n_readings: pts.len() as u64,
            };
            for (ts, pos, v) in pts {
                if out.ts_ms.last() != Some(&ts) {
                    out.ts_ms.push(ts);
                    out.values.resize(out.values.len() + n, f64::NAN);
                }
                let base = out.values.len() - n;
                out.values[base + pos] = v;
            }
            out
        })
        .collect();
    (rows, counts)
}

#[cfg(test)]
mod tests {
    use fieldpulse_proto::v1::Series;

    use super::*;

    fn series(asset: &str, sensor: &str, pts: &[(i64, f64)]) -> Series {
        let mut s = Series {
            asset_id: asset.into(),
            sensor: sensor.into(),
            ..Default::default()
        };
        for &(t, v) in pts {
            s.push(t, v);
        }
        s
    }

    #[test]
    fn sensors_of_one_instant_share_a_row_and_gaps_are_nan() {
        let batch = Batch {
            series: vec![
                series("a1", "temp", &[(1_000, 20.0), (2_000, 21.0)]),
                series("a1", "vib", &[(2_000, 0.5), (3_000, 0.6)]),
                series("a2", "temp", &[(1_500, 30.0)]),
                series("a1", "other", &[(1_000, 9.0)]),
            ],
            ..Default::default()
        };
        let layout = SensorLayout::new(vec!["temp".into(), "vib".into()]);
        let (rows, counts) = split_rows(&batch, &layout, |_| true);
        assert_eq!(counts.unknown_sensor_readings, 1);
        assert_eq!(rows.len(), 2);
        let a1 = &rows[0];
        assert_eq!(a1.asset, "a1");
        assert_eq!(a1.ts_ms, vec![1_000, 2_000, 3_000]);
        assert_eq!(a1.row(0, 2)[0], 20.0);
        assert!(a1.row(0, 2)[1].is_nan());
        assert_eq!(a1.row(1, 2), &[21.0, 0.5]);
        assert!(a1.row(2, 2)[0].is_nan());
        assert_eq!(a1.n_readings, 4);
        let (only_a2, _) = split_rows(&batch, &layout, |a| a == "a2");
        assert_eq!(only_a2.len(), 1);
        assert_eq!(only_a2[0].ts_ms, vec![1_500]);
    }
}
