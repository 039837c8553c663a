//! A seeded synthetic fleet as edge batches, for the cloud's benchmark and
//! tests: every asset reports every sensor once a minute around its own
//! operating point; faulty assets develop a fault (the first two sensors step
//! up by many standard deviations and stay there) at a given row.

use fieldpulse_proto::v1::{Batch, Series};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthFleet {
    /// Number of assets (`PUMP-000`, `PUMP-001`, ...).
    pub assets: usize,
    /// Sensor names.
    pub sensors: Vec<String>,
    /// Rows (minutes) per asset.
    pub rows: usize,
    /// Rows per batch.
    pub rows_per_batch: usize,
    /// Assets per batch (a gateway serves a group of assets).
    pub assets_per_batch: usize,
    /// Indices of assets that develop a fault.
    pub faulty: Vec<usize>,
    /// Row at which the fault starts.
    pub fault_at: usize,
    /// First timestamp (ms).
    pub t0_ms: i64,
}

/// Deterministic noise in [-1, 1) from a seed.
pub fn noise(seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

impl SynthFleet {
    /// Name of asset `i`.
    pub fn asset_name(i: usize) -> String {
        format!("PUMP-{i:03}")
    }

    /// Value of `sensor` of `asset` at `row`.
    pub fn value(&self, asset: usize, sensor: usize, row: usize) -> f64 {
        let base = 10.0 * (sensor as f64 + 1.0) + (asset % 7) as f64;
        let sd = 0.05 * base;
        let mut v = base + sd * 1.7 * noise((asset * 1_000_003 + row * 7 + sensor) as u64);
        if self.faulty.contains(&asset) && row >= self.fault_at && sensor < 2 {
            v += sd * 25.0;
        }
        v
    }

    /// Readings in all batches.
    pub fn n_readings(&self) -> u64 {
        (self.assets * self.sensors.len() * self.rows) as u64
    }

    /// The batches of gateway `gateway` (spool epoch `epoch`), seq from 1,
    /// in time order (all asset groups of one time slice, then the next).
    pub fn batches(&self, gateway: &str, epoch: u64) -> Vec<Batch> {
        let mut out = Vec::new();
        let group = self.assets_per_batch.max(1);
        for start in (0..self.rows).step_by(self.rows_per_batch.max(1)) {
            let end = (start + self.rows_per_batch).min(self.rows);
            for first in (0..self.assets).step_by(group) {
                let mut batch = Batch {
                    gateway_id: gateway.into(),
                    seq: out.len() as u64 + 1,
                    spool_epoch: epoch,
                    created_ms: self.t0_ms + end as i64 * 60_000,
                    ..Default::default()
                };
                for a in first..(first + group).min(self.assets) {
                    for (s, sensor) in self.sensors.iter().enumerate() {
                        let mut series = Series {
                            asset_id: Self::asset_name(a),
                            sensor: sensor.clone(),
                            ..Default::default()
                        };
                        for r in start..end {
                            series.push(self.t0_ms + r as i64 * 60_000, self.value(a, s, r));
                        }
                        batch.series.push(series);
                    }
                }
                out.push(batch);
            }
        }
        out
    }

    /// An emulator seed fixture (Account, Product2, one Asset per asset) in
    /// the format of `fieldpulse sf-emulator --seed`.
    pub fn fixture_json(&self) -> serde_json::Value {
        let assets: Vec<serde_json::Value> = (0..self.assets)
            .map(|i| {
                serde_json::json!({
                    "@ref": Self::asset_name(i), "Name": Self::asset_name(i),
                    "SerialNumber": format!("SN-{i:05}"), "AccountId": "@acme",
                    "Product2Id": "@pump", "Status": "Installed", "InstallDate": "2023-01-01"
                })
            })
            .collect();
        serde_json::json!({
            "objects": [
                {"type": "Account", "records": [{"@ref": "acme", "Name": "Acme Water"}]},
                {"type": "Product2", "records": [{"@ref": "pump", "Name": "Centrifugal Pump CP-200", "ProductCode": "CP200", "IsActive": true}]},
                {"type": "Asset", "records": assets},
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_reading_once_in_seq_order() {
        let fleet = SynthFleet {
            assets: 5,
            sensors: vec!["a".into(), "b".into()],
            rows: 10,
            rows_per_batch: 4,
            assets_per_batch: 2,
            faulty: vec![1],
            fault_at: 5,
            t0_ms: 0,
        };
        let batches = fleet.batches("gw", 7);
        let n: usize = batches.iter().map(|b| b.n_readings()).sum();
        assert_eq!(n as u64, fleet.n_readings());
        assert!(batches
            .iter()
            .enumerate()
            .all(|(i, b)| b.seq == i as u64 + 1 && b.spool_epoch == 7));
        assert!(fleet.value(1, 0, 6) > fleet.value(1, 0, 4) + 1.0);
        assert_eq!(fleet.value(0, 0, 3), fleet.value(0, 0, 3));
    }
}
