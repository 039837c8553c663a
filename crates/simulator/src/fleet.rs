//! The fleet: configuration, per-asset physics and the time-ordered stream of
//! readings.
//!
//! Each asset carries one wear level per failure mode in `[0, 1]`; it fails
//! when one reaches 1. Bearing and fouling wear grow like a P-F curve
//! (`dw/dt = rate · load · (0.3 + w)`, slow then accelerating) at a per-asset
//! rate drawn around the product's median life; electrical faults start at a
//! random (exponential) onset and ramp to failure over 5–15 days. Sensor
//! values are the product's operating point under a daily load cycle and
//! ambient temperature, plus each mode's signature scaled by its wear, plus
//! noise. A failure raises a corrective Work Order and a repair downtime; a
//! preventive visit resets fouling and halves bearing wear. Sensor faults
//! (stuck, dropout) change the readings but not the equipment.
//!
//! Determinism: every asset has its own generator seeded from
//! `(seed, asset index)`, so a given seed always yields the same readings and
//! history, whatever the consumer does between readings.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::history::{
    prefix, record_id, AssetInfo, FailureEvent, History, SensorFault, SensorFaultKind, WorkKind,
    WorkOrder,
};
use crate::product::{channel, spec, FailureMode, ProductKind, ProductSpec, N_SENSORS, SENSORS};
use crate::time::{days_from_civil, format_datetime, DAY_MS, HOUR_MS};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of assets (products assigned round-robin: pump, compressor, HVAC).
    pub n_assets: usize,
    /// First reading time (epoch ms).
    pub start_ms: i64,
    /// Simulated span.
    pub duration: Duration,
    /// Time between two readings of one asset.
    pub interval: Duration,
    /// Multiplies every wear rate (2.0 = failures twice as often).
    pub wear_speedup: f64,
    /// Mean days between sensor faults per asset (0 disables them).
    pub sensor_fault_mean_days: f64,
    /// Probability that a corrective Work Order has no failure code.
    pub missing_code_probability: f64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            n_assets: 30,
            start_ms: days_from_civil(2026, 1, 1) * DAY_MS,
            duration: Duration::from_secs(180 * 86_400),
            interval: Duration::from_secs(3_600),
            wear_speedup: 1.0,
            sensor_fault_mean_days: 60.0,
            missing_code_probability: 0.08,
        }
    }
}

/// Why a fleet could not be built.
#[derive(Debug, Error, PartialEq)]
pub enum SimError {
    /// A configuration value is out of range.
    #[error("invalid simulator setting `{name}`: {reason}")]
    InvalidConfig {
        /// Setting name.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl FleetConfig {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] naming the bad setting.
    pub fn check(&self) -> Result<(), SimError> {
        let bad = |name, reason| Err(SimError::InvalidConfig { name, reason });
        if self.n_assets == 0 || self.n_assets > 1_000_000 {
            return bad("n_assets", "must be in 1..=1000000");
        }
        if self.interval < Duration::from_secs(1) {
            return bad("interval", "must be at least 1s");
        }
        if self.duration < self.interval {
            return bad("duration", "must be at least one interval");
        }
        if !(self.wear_speedup > 0.0 && self.wear_speedup <= 1000.0) {
            return bad("wear_speedup", "must be in (0, 1000]");
        }
        if !(self.sensor_fault_mean_days >= 0.0 && self.sensor_fault_mean_days.is_finite()) {
            return bad("sensor_fault_mean_days", "must be finite and >= 0");
        }
        if !(0.0..=1.0).contains(&self.missing_code_probability) {
            return bad("missing_code_probability", "must be in [0, 1]");
        }
        Ok(())
    }
}

/// One reading of one asset: every channel, `None` where the sensor dropped out.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Index into [`Fleet::assets`].
    pub asset_idx: usize,
    /// Timestamp (epoch ms).
    pub ts_ms: i64,
    /// Values in [`SENSORS`] order.
    pub values: [Option<f64>; N_SENSORS],
}

/// A simulated fleet; iterate it for readings in time order, then read its
/// [`History`].
#[derive(Debug)]
pub struct Fleet {
    cfg: FleetConfig,
    interval_ms: i64,
    n_ticks: u64,
    tick: u64,
    cursor: usize,
    sims: Vec<AssetSim>,
    history: History,
}

#[derive(Debug)]
struct ActiveFault {
    sensor: usize,
    kind: SensorFaultKind,
    end_ms: i64,
    stuck_value: Option<f64>,
}

#[derive(Debug)]
struct AssetSim {
    spec: &'static ProductSpec,
    rng: StdRng,
    /// Manufacturing variation of the operating point, per channel.
    variation: [f64; N_SENSORS],
    ambient_offset: f64,
    wear: [f64; 3],
    /// Bearing and fouling growth rates per hour (index 2 unused).
    rate: [f64; 3],
    elec_onset_ms: i64,
    elec_ramp_hours: f64,
    last_ms: i64,
    down_until_ms: i64,
    next_pm_ms: i64,
    next_misc_ms: i64,
    next_fault_ms: i64,
    faults: Vec<ActiveFault>,
    last_values: [f64; N_SENSORS],
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller; `1 - u` keeps the logarithm finite.
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

fn asset_seed(seed: u64, idx: usize) -> u64 {
    let mut z = seed ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `ln(1.3 / 0.3)`: time constant of the P-F curve from new to failure.
const PF_LOG_SPAN: f64 = 1.466_337_068_793_427;
/// Mean load over a day, used to turn median life into a rate.
const MEAN_LOAD: f64 = 0.7;

impl Fleet {
    /// Builds the fleet and its pre-telemetry history (installations, the
    /// last preventive visit before the start).
    ///
    /// # Errors
    /// Invalid configuration.
    pub fn new(cfg: FleetConfig) -> Result<Self, SimError> {
        cfg.check()?;
        let interval_ms = cfg.interval.as_millis() as i64;
        let n_ticks = (cfg.duration.as_millis() as i64 / interval_ms) as u64;
        let kinds = [
            ProductKind::Pump,
            ProductKind::Compressor,
            ProductKind::Hvac,
        ];
        let mut fleet = Self {
            interval_ms,
            n_ticks,
            tick: 0,
            cursor: 0,
            sims: Vec::with_capacity(cfg.n_assets),
            history: History::default(),
            cfg,
        };
        for idx in 0..fleet.cfg.n_assets {
            let kind = kinds[idx % kinds.len()];
            let spec = spec(kind);
            let mut rng = StdRng::seed_from_u64(asset_seed(fleet.cfg.seed, idx));
            let start = fleet.cfg.start_ms;
            let age_days = rng.gen_range(60.0..1500.0f64);
            let install_ms =
                (start - (age_days * DAY_MS as f64) as i64).div_euclid(DAY_MS) * DAY_MS;
            let mut variation = [1.0; N_SENSORS];
            for v in &mut variation {
                *v = 1.0 + 0.04 * normal(&mut rng);
            }
            let mut rate = [0.0; 3];
            for mode in [FailureMode::Bearing, FailureMode::Fouling] {
                let life_days =
                    spec.median_life_days[mode.index()] * (0.35 * normal(&mut rng)).exp();
                rate[mode.index()] =
                    PF_LOG_SPAN / (life_days * 24.0 * MEAN_LOAD) * fleet.cfg.wear_speedup;
            }
            let wear = [rng.gen_range(0.0..0.5), rng.gen_range(0.0..0.5), 0.0];
            let elec_mean_days =
                spec.median_life_days[FailureMode::Electrical.index()] / fleet.cfg.wear_speedup;
            let elec_onset_ms =
                start + (exponential(&mut rng, elec_mean_days) * DAY_MS as f64) as i64;
            let pm_ms = spec.pm_interval_days * DAY_MS as f64;
            let next_pm_ms = start + (rng.gen_range(0.05..1.0) * pm_ms) as i64;
            let next_misc_ms = start + (exponential(&mut rng, 75.0) * DAY_MS as f64) as i64;
            let next_fault_ms = if fleet.cfg.sensor_fault_mean_days > 0.0 {
                start
                    + (exponential(&mut rng, fleet.cfg.sensor_fault_mean_days) * DAY_MS as f64)
                        as i64
            } else {
                i64::MAX
            };
            let name = format!("{}-{:04}", spec.code.to_ascii_lowercase(), idx + 1);
            let serial = format!(
                "{}{:02}-{:06}",
                spec.code,
                (idx * 7) % 100,
                100_000 + idx * 37
            );
            fleet.history.assets.push(AssetInfo {
                id: record_id(prefix::ASSET, idx as u64 + 1),
                name,
                serial,
                product: kind,
                install_ms,
            });
            let mut sim = AssetSim {
                spec,
                variation,
                ambient_offset: 2.0 * normal(&mut rng),
                wear,
                rate,
                elec_onset_ms,
                elec_ramp_hours: rng.gen_range(120.0..360.0),
                last_ms: start,
                down_until_ms: i64::MIN,
                next_pm_ms,
                next_misc_ms,
                next_fault_ms,
                faults: Vec::new(),
                last_values: [0.0; N_SENSORS],
                rng,
            };
            // History from before telemetry: commissioning, and the last
            // preventive visit (which explains the current wear levels).
            let install_end = install_ms + 8 * HOUR_MS;
            fleet.push_work_order(
                idx,
                WorkKind::Installation,
                install_ms - 14 * DAY_MS,
                install_ms,
                install_end,
            );
            let last_pm = next_pm_ms - pm_ms as i64;
            if last_pm > install_end {
                let end = last_pm + 3 * HOUR_MS;
                fleet.push_work_order(
                    idx,
                    WorkKind::Preventive,
                    last_pm - 10 * DAY_MS,
                    last_pm,
                    end,
                );
            }
            sim.last_ms = start;
            fleet.sims.push(sim);
        }
        Ok(fleet)
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.cfg
    }

    /// Static asset data.
    pub fn assets(&self) -> &[AssetInfo] {
        &self.history.assets
    }

    /// History so far (complete once the iterator is exhausted).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Consumes the fleet, returning its history.
    pub fn into_history(self) -> History {
        self.history
    }

    /// Number of reading slots (ticks × assets), an upper bound on readings.
    pub fn max_readings(&self) -> u64 {
        self.n_ticks * self.sims.len() as u64
    }

    /// Timestamp of asset `idx` at tick `tick`: assets are staggered within
    /// the interval so the stream stays in time order.
    fn slot_ms(&self, tick: u64, idx: usize) -> i64 {
        self.cfg.start_ms
            + tick as i64 * self.interval_ms
            + idx as i64 * self.interval_ms / self.sims.len() as i64
    }

    /// The next reading in time order, or `None` at the end.
    pub fn next_reading(&mut self) -> Option<Reading> {
        while self.tick < self.n_ticks {
            let idx = self.cursor;
            let ts_ms = self.slot_ms(self.tick, idx);
            self.cursor += 1;
            if self.cursor == self.sims.len() {
                self.cursor = 0;
                self.tick += 1;
            }
            if let Some(reading) = self.step_asset(idx, ts_ms) {
                return Some(reading);
            }
        }
        None
    }

    fn push_work_order(
        &mut self,
        asset_idx: usize,
        kind: WorkKind,
        created_ms: i64,
        start_ms: i64,
        end_ms: i64,
    ) -> String {
        let seq = self.history.work_orders.len() as u64 + 1;
        let number = format!("{:08}", 1000 + seq);
        let asset = &self.history.assets[asset_idx].name;
        let (subject, priority, status) = match kind {
            WorkKind::Corrective(Some(mode)) => (
                format!("[{}] {} failure on {asset}", mode.code(), mode.label()),
                if mode == FailureMode::Electrical {
                    "Critical"
                } else {
                    "High"
                },
                "Completed",
            ),
            WorkKind::Corrective(None) => {
                (format!("Breakdown repair on {asset}"), "High", "Completed")
            }
            WorkKind::NoFaultFound => (
                format!("Noise complaint on {asset} - no fault found"),
                "Medium",
                "Closed",
            ),
            WorkKind::Preventive => (
                format!("Preventive maintenance {asset}"),
                "Low",
                "Completed",
            ),
            WorkKind::Inspection => (format!("Routine inspection {asset}"), "Low", "Completed"),
            WorkKind::Installation => (format!("Commissioning {asset}"), "Medium", "Completed"),
        };
        self.history.work_orders.push(WorkOrder {
            id: record_id(prefix::WORK_ORDER, seq),
            number: number.clone(),
            asset_idx,
            kind,
            status,
            priority,
            subject,
            created_ms,
            start_ms,
            end_ms,
        });
        number
    }

    /// Advances asset `idx` to `ts_ms`; returns its reading unless it is down.
    fn step_asset(&mut self, idx: usize, ts_ms: i64) -> Option<Reading> {
        let missing_code_p = self.cfg.missing_code_probability;
        let fault_mean_days = self.cfg.sensor_fault_mean_days;
        let sim = &mut self.sims[idx];
        let dt_hours = (ts_ms - sim.last_ms).max(0) as f64 / HOUR_MS as f64;
        sim.last_ms = ts_ms;
        if ts_ms < sim.down_until_ms {
            return None;
        }
        let load = sim.load(ts_ms);
        for mode in [FailureMode::Bearing, FailureMode::Fouling] {
            let i = mode.index();
            sim.wear[i] += sim.rate[i] * load * (0.3 + sim.wear[i]) * dt_hours;
        }
        sim.wear[2] = if ts_ms >= sim.elec_onset_ms {
            ((ts_ms - sim.elec_onset_ms) as f64 / HOUR_MS as f64 / sim.elec_ramp_hours).min(1.0)
        } else {
            0.0
        };
        // Failure: the most worn mode at or past 1.
        let failed = FailureMode::ALL
            .into_iter()
            .filter(|m| sim.wear[m.index()] >= 1.0)
            .max_by(|a, b| sim.wear[a.index()].total_cmp(&sim.wear[b.index()]));
        if let Some(mode) = failed {
            let created = ts_ms + (sim.rng.gen_range(0.5..4.0) * HOUR_MS as f64) as i64;
            let start = created + (sim.rng.gen_range(0.0..3.0) * HOUR_MS as f64) as i64;
            let end = start + (sim.rng.gen_range(6.0..60.0) * HOUR_MS as f64) as i64;
            let coded = sim.rng.gen::<f64>() >= missing_code_p;
            let duplicate = sim.rng.gen::<f64>() < 0.1;
            sim.down_until_ms = end;
            sim.wear[mode.index()] = sim.rng.gen_range(0.0..0.05);
            if mode == FailureMode::Electrical {
                let mean = sim.spec.median_life_days[2] / self.cfg.wear_speedup;
                sim.elec_onset_ms = end + (exponential(&mut sim.rng, mean) * DAY_MS as f64) as i64;
                sim.wear[2] = 0.0;
            }
            let dup_created = created + (sim.rng.gen_range(1.0..6.0) * HOUR_MS as f64) as i64;
            let kind = WorkKind::Corrective(coded.then_some(mode));
            let number = self.push_work_order(idx, kind, created, start, end);
            if duplicate {
                // A second, overlapping Work Order for the same breakdown
                // (another dispatcher, a parts visit): one failure, two WOs.
                self.push_work_order(idx, kind, dup_created, dup_created, end);
            }
            let asset = self.history.assets[idx].name.clone();
            self.history.failures.push(FailureEvent {
                asset,
                ts_ms,
                ts: format_datetime(ts_ms),
                mode,
                work_order_number: number,
            });
            return None;
        }
        // Preventive maintenance (10 % of visits are skipped).
        if ts_ms >= sim.next_pm_ms {
            let pm_ms = sim.spec.pm_interval_days * DAY_MS as f64;
            sim.next_pm_ms = ts_ms + (pm_ms * sim.rng.gen_range(0.85..1.15)) as i64;
            if sim.rng.gen::<f64>() >= 0.1 {
                let end = ts_ms + (sim.rng.gen_range(2.0..6.0) * HOUR_MS as f64) as i64;
                sim.down_until_ms = end;
                sim.wear[FailureMode::Fouling.index()] = sim.rng.gen_range(0.0..0.05);
                sim.wear[FailureMode::Bearing.index()] *= 0.5;
                self.push_work_order(idx, WorkKind::Preventive, ts_ms - 10 * DAY_MS, ts_ms, end);
                return None;
            }
        }
        // Work Orders that are not failures.
        if ts_ms >= sim.next_misc_ms {
            sim.next_misc_ms = ts_ms + (exponential(&mut sim.rng, 75.0) * DAY_MS as f64) as i64;
            let kind = if sim.rng.gen::<f64>() < 0.35 {
                WorkKind::NoFaultFound
            } else {
                WorkKind::Inspection
            };
            let end = ts_ms + (sim.rng.gen_range(0.5..2.0) * HOUR_MS as f64) as i64;
            self.push_work_order(idx, kind, ts_ms - HOUR_MS, ts_ms, end);
        }
        let sim = &mut self.sims[idx];
        // Sensor faults.
        if ts_ms >= sim.next_fault_ms {
            sim.next_fault_ms =
                ts_ms + (exponential(&mut sim.rng, fault_mean_days) * DAY_MS as f64) as i64;
            let sensor = sim.rng.gen_range(0..N_SENSORS);
            let (kind, hours) = if sim.rng.gen::<f64>() < 0.5 {
                (SensorFaultKind::Stuck, sim.rng.gen_range(6.0..72.0))
            } else {
                (SensorFaultKind::Dropout, sim.rng.gen_range(1.0..48.0))
            };
            let end_ms = ts_ms + (hours * HOUR_MS as f64) as i64;
            let stuck_value =
                Some(sim.last_values[sensor]).filter(|_| kind == SensorFaultKind::Stuck);
            sim.faults.push(ActiveFault {
                sensor,
                kind,
                end_ms,
                stuck_value,
            });
            let asset = self.history.assets[idx].name.clone();
            self.history.sensor_faults.push(SensorFault {
                asset,
                sensor: SENSORS[sensor],
                kind,
                start_ms: ts_ms,
                end_ms,
            });
        }
        let sim = &mut self.sims[idx];
        let truth = sim.physics(ts_ms, load);
        sim.faults.retain(|f| f.end_ms > ts_ms);
        let mut values = truth.map(Some);
        for fault in &sim.faults {
            values[fault.sensor] = match fault.kind {
                SensorFaultKind::Dropout => None,
                SensorFaultKind::Stuck => fault.stuck_value,
            };
        }
        sim.last_values = truth;
        Some(Reading {
            asset_idx: idx,
            ts_ms,
            values,
        })
    }
}

impl Iterator for Fleet {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        self.next_reading()
    }
}

impl AssetSim {
    fn hour_of_day(ts_ms: i64) -> f64 {
        ts_ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64
    }

    fn ambient_c(&self, ts_ms: i64) -> f64 {
        let day_of_year = ts_ms.div_euclid(DAY_MS).rem_euclid(365) as f64;
        let hour = Self::hour_of_day(ts_ms);
        let seasonal = 8.0 * (std::f64::consts::TAU * (day_of_year - 110.0) / 365.0).sin();
        let daily = 5.0 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
        15.0 + seasonal + daily + self.ambient_offset
    }

    /// Fraction of full load now: a daily shape per product plus noise.
    fn load(&mut self, ts_ms: i64) -> f64 {
        let hour = Self::hour_of_day(ts_ms);
        let shape = match self.spec.kind {
            ProductKind::Pump => 0.65 + 0.25 * (std::f64::consts::TAU * (hour - 8.0) / 24.0).sin(),
            ProductKind::Compressor => {
                // Two-shift operation with soft ramps at 06:00 and 22:00.
                let on = 1.0 / (1.0 + (-(hour - 6.0) * 2.0).exp())
                    - 1.0 / (1.0 + (-(hour - 22.0) * 2.0).exp());
                0.4 + 0.5 * on
            }
            ProductKind::Hvac => 0.35 + 0.035 * (self.ambient_c(ts_ms) - 12.0),
        };
        (shape + 0.03 * normal(&mut self.rng)).clamp(0.15, 1.0)
    }

    /// True sensor values at `ts_ms` for the current wear.
    fn physics(&mut self, ts_ms: i64, load: f64) -> [f64; N_SENSORS] {
        let s = self.spec;
        let [b, f, e] = self.wear.map(|w| w.clamp(0.0, 1.0));
        let v = self.variation;
        let ambient = self.ambient_c(ts_ms);
        let rng = &mut self.rng;
        let mut out = [0.0; N_SENSORS];
        out[channel::TEMP] = ambient
            + s.temp_rise_c * v[0] * (0.4 + 0.6 * load)
            + 10.0 * b.powi(3)
            + 14.0 * f * f
            + 6.0 * e * e
            + 0.4 * normal(rng);
        let vib = s.vib_rms * v[1] * (0.8 + 0.2 * load) * (1.0 + 2.5 * b * b);
        out[channel::VIB_RMS] = (vib * (1.0 + 0.04 * normal(rng))).max(0.0);
        let crest = s.crest * v[2] * (1.0 + 0.8 * b.powf(1.5));
        out[channel::VIB_PEAK] =
            (out[channel::VIB_RMS] * crest * (1.0 + 0.06 * normal(rng))).max(0.0);
        out[channel::PRESSURE] = s.pressure_bar
            * v[3]
            * (0.6 + 0.4 * load)
            * (1.0 + s.fouling_pressure_sign * 0.2 * f * f)
            + 0.05 * normal(rng);
        let current = s.current_a
            * v[4]
            * (0.45 + 0.55 * load)
            * (1.0 + 0.06 * f * f + 0.03 * b * b + 0.25 * e * e);
        out[channel::CURRENT] = current * (1.0 + 0.01 * (1.0 + 4.0 * e) * normal(rng));
        let speed = if s.variable_speed {
            0.55 + 0.45 * load
        } else {
            1.0 - 0.01 * load
        };
        out[channel::RPM] = s.rpm * v[5] * speed * (1.0 - 0.03 * e * e) + 2.0 * normal(rng);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FleetConfig {
        FleetConfig {
            seed: 11,
            n_assets: 6,
            duration: Duration::from_secs(120 * 86_400),
            wear_speedup: 3.0,
            ..FleetConfig::default()
        }
    }

    #[test]
    fn same_seed_gives_identical_readings_and_history() {
        let mut a = Fleet::new(small()).expect("fleet");
        let mut b = Fleet::new(small()).expect("fleet");
        let ra: Vec<Reading> = a.by_ref().collect();
        let rb: Vec<Reading> = b.by_ref().collect();
        assert_eq!(ra, rb);
        assert_eq!(a.history(), b.history());
        let mut c = Fleet::new(FleetConfig {
            seed: 12,
            ..small()
        })
        .expect("fleet");
        let rc: Vec<Reading> = c.by_ref().collect();
        assert_ne!(ra, rc);
    }

    #[test]
    fn readings_come_in_time_order_and_pause_while_an_asset_is_down() {
        let mut fleet = Fleet::new(small()).expect("fleet");
        let readings: Vec<Reading> = fleet.by_ref().collect();
        assert!(readings.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        let history = fleet.history();
        assert!(
            !history.failures.is_empty(),
            "a sped-up fleet must fail within 120 days"
        );
        for failure in &history.failures {
            let idx = history
                .assets
                .iter()
                .position(|a| a.name == failure.asset)
                .expect("asset");
            let wo = history
                .work_orders
                .iter()
                .find(|w| w.number == failure.work_order_number)
                .expect("corrective WO");
            assert!(matches!(wo.kind, WorkKind::Corrective(_)));
            assert!(wo.created_ms > failure.ts_ms);
            let during = readings
                .iter()
                .filter(|r| r.asset_idx == idx && r.ts_ms >= failure.ts_ms && r.ts_ms < wo.end_ms)
                .count();
            assert_eq!(
                during, 0,
                "no readings while {} is being repaired",
                failure.asset
            );
        }
        assert!(history
            .work_orders
            .iter()
            .any(|w| w.kind == WorkKind::Preventive));
        assert!(history
            .work_orders
            .iter()
            .any(|w| w.kind == WorkKind::Installation && w.start_ms < small().start_ms));
    }

    #[test]
    fn bearing_failures_are_preceded_by_rising_vibration() {
        let cfg = FleetConfig {
            n_assets: 12,
            duration: Duration::from_secs(200 * 86_400),
            sensor_fault_mean_days: 0.0,
            ..small()
        };
        let mut fleet = Fleet::new(cfg).expect("fleet");
        let readings: Vec<Reading> = fleet.by_ref().collect();
        let history = fleet.history();
        let mut checked = 0;
        for failure in history
            .failures
            .iter()
            .filter(|f| f.mode == FailureMode::Bearing)
        {
            let idx = history
                .assets
                .iter()
                .position(|a| a.name == failure.asset)
                .expect("asset");
            let vib = |from: i64, to: i64| {
                let v: Vec<f64> = readings
                    .iter()
                    .filter(|r| r.asset_idx == idx && r.ts_ms >= from && r.ts_ms < to)
                    .filter_map(|r| r.values[channel::VIB_RMS])
                    .collect();
                (v.iter().sum::<f64>() / v.len().max(1) as f64, v.len())
            };
            let (late, n_late) = vib(failure.ts_ms - 2 * DAY_MS, failure.ts_ms);
            let (early, n_early) = vib(failure.ts_ms - 40 * DAY_MS, failure.ts_ms - 30 * DAY_MS);
            if n_late > 10 && n_early > 10 {
                let nominal = spec(history.assets[idx].product).vib_rms;
                assert!(
                    late > 1.15 * early,
                    "{}: vib {early:.2} → {late:.2}",
                    failure.asset
                );
                assert!(
                    late > 2.0 * nominal,
                    "{}: vib {late:.2} vs nominal {nominal}",
                    failure.asset
                );
                checked += 1;
            }
        }
        assert!(
            checked > 0,
            "no bearing failure with 40 days of history to check"
        );
    }

    #[test]
    fn the_salesforce_emulator_accepts_the_seed_fixture_as_written() {
        use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, Fixture};
        let mut fleet = Fleet::new(small()).expect("fleet");
        fleet.by_ref().for_each(drop);
        let history = fleet.history();
        let json = history.to_fixture_json(&crate::product::PRODUCTS);
        let fixture: Fixture = serde_json::from_value(json).expect("fixture parses");
        let emulator = Emulator::new(EmulatorConfig::default(), None).expect("emulator");
        let report = emulator.seed(&fixture).expect("fixture seeds");
        assert_eq!(report.created["Asset"], history.assets.len());
        assert_eq!(report.created["WorkOrder"], history.work_orders.len());
    }

    #[test]
    fn invalid_settings_are_rejected_by_name() {
        let err = Fleet::new(FleetConfig {
            n_assets: 0,
            ..FleetConfig::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            SimError::InvalidConfig {
                name: "n_assets",
                reason: "must be in 1..=1000000"
            }
        );
    }
}
