//! [`FeatureSpec`]: which sensors, which checked parameters, and therefore which
//! features, in a stable order, and where each piece of state lives in an
//! asset's state block.

use crate::params::{FeatureError, FeatureValidParams, DEFAULT_SCALE_FLOOR_SPREAD};
use crate::seasonal::{SeasonLayout, Seasonality};
use crate::snapshot::Fnv64;

/// Features computed once per row for the asset (not per sensor), in output order.
pub const ASSET_FEATURES: [&str; 1] = ["dt_s"];

/// Per-sensor features after the `ewma_mean_hl*` / `ewma_std_hl*` pairs, in output order.
pub const SENSOR_TAIL_FEATURES: [&str; 7] = [
    "median",
    "robust_scale",
    "resid_scale",
    "slope_per_s",
    "resid_z",
    "robust_z",
    "age_s",
];

// Header slots of an asset block (f64 each). Changing this layout changes
// the snapshot format: bump `snapshot::FEATURE_STATE_VERSION`. Timestamps are epoch milliseconds
// stored as f64, exact up to 2^53 ms (year 287,396).
pub(crate) const H_FIRST_TS: usize = 0;
pub(crate) const H_LAST_TS: usize = 1;
pub(crate) const H_N_ROWS: usize = 2;
pub(crate) const H_DT_NOM: usize = 3;
pub(crate) const H_RATIO: usize = 4;
pub(crate) const H_MT: usize = 5;
pub(crate) const H_VTT: usize = 6;
pub(crate) const H_N_WARM: usize = 7;
/// First of `n_horizons` weight sums, followed by `n_horizons` cached decays.
pub(crate) const H_W: usize = 8;

/// Header slots of an asset block with `n_h` horizons, rounded up to a cache
/// line (8 f64) so sensor lanes start aligned.
pub(crate) const fn header_len(n_h: usize) -> usize {
    (H_W + 2 * n_h).div_ceil(8) * 8
}

/// The checked, immutable description of a feature set: sensors, parameters,
/// feature names and the state layout. Cheap to clone; share it between the
/// online scorer and training so both compute the same features.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    params: FeatureValidParams,
    sensors: Vec<String>,
    names: Vec<String>,
    pub(crate) header_len: usize,
    pub(crate) stride: usize,
    /// Sensor lanes per field, padded to a multiple of [`LANE_CHUNK`].
    pub(crate) lanes: usize,
    /// The seasonal profile's region in the block, when one is learned.
    pub(crate) season: Option<SeasonLayout>,
}

/// Lanes are processed in fixed chunks of this many f64 (one AVX2 register),
/// so every lane loop compiles to straight-line vector code; padding lanes
/// beyond the last sensor are inert (never valid, never warm).
pub const LANE_CHUNK: usize = 8;

impl FeatureSpec {
    /// Builds the spec for the given sensors (one state lane each, in this order).
    ///
    /// # Errors
    /// [`FeatureError::InvalidSensors`] when `sensors` is empty, longer than
    /// 4,096 or has duplicates.
    pub fn new(params: FeatureValidParams, sensors: Vec<String>) -> Result<Self, FeatureError> {
        if sensors.is_empty() {
            return Err(FeatureError::InvalidSensors("no sensors".into()));
        }
        if sensors.len() > 4096 {
            return Err(FeatureError::InvalidSensors(format!(
                "{} sensors, at most 4096",
                sensors.len()
            )));
        }
        let mut sorted: Vec<&String> = sensors.iter().collect();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(FeatureError::InvalidSensors(format!(
                "duplicate sensor {:?}",
                w[0]
            )));
        }
        let h = params.half_lives.len();
        let mut names =
            Vec::with_capacity(1 + sensors.len() * (2 * h + SENSOR_TAIL_FEATURES.len()));
        names.extend(ASSET_FEATURES.iter().map(|s| s.to_string()));
        for s in &sensors {
            for hl in &params.half_lives {
                names.push(format!("{s}.ewma_mean_hl{hl}"));
                names.push(format!("{s}.ewma_std_hl{hl}"));
            }
            for f in SENSOR_TAIL_FEATURES {
                names.push(format!("{s}.{f}"));
            }
        }
        let header_len = header_len(h);
        let lanes = sensors.len().div_ceil(LANE_CHUNK) * LANE_CHUNK;
        let core = header_len + n_sensor_fields(h) * lanes;
        let season = SeasonLayout::new(core, params.seasonality, lanes, params.seasonal_periods);
        let stride = core
            + SeasonLayout::len(params.seasonality.buckets(), lanes)
                * usize::from(season.is_some());
        Ok(Self {
            params,
            sensors,
            names,
            header_len,
            stride,
            lanes,
            season,
        })
    }

    /// The checked parameters.
    pub fn params(&self) -> &FeatureValidParams {
        &self.params
    }

    /// Sensor names, in lane order.
    pub fn sensors(&self) -> &[String] {
        &self.sensors
    }

    /// Number of sensors (lanes).
    pub fn n_sensors(&self) -> usize {
        self.sensors.len()
    }

    /// Feature names in the stable output order: `dt_s`, then per sensor
    /// `{sensor}.ewma_mean_hl{h}`, `{sensor}.ewma_std_hl{h}` for every half-life,
    /// then `{sensor}.{median, robust_scale, resid_scale, slope_per_s, resid_z,
    /// robust_z, age_s}`.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// Number of features per sensor.
    pub fn n_features_per_sensor(&self) -> usize {
        2 * self.params.half_lives.len() + SENSOR_TAIL_FEATURES.len()
    }

    /// Bytes of feature state one asset occupies.
    pub fn state_bytes_per_asset(&self) -> usize {
        self.stride * std::mem::size_of::<f64>()
    }

    /// Lanes per state field: the sensor count padded to a multiple of [`LANE_CHUNK`].
    pub fn n_lanes(&self) -> usize {
        self.lanes
    }

    /// Number of EWMA horizons.
    pub fn n_horizons(&self) -> usize {
        self.params.half_lives.len()
    }

    /// A stable hash (FNV-1a 64) of everything that shapes the state and its
    /// evolution: the sensor names in lane order and every parameter.
    /// State snapshots carry it, so state is only restored into the spec that
    /// produced it (see [`crate::snapshot`]).
    pub fn state_hash(&self) -> u64 {
        let p = &self.params;
        let mut h = Fnv64::default();
        h.write_u64(self.sensors.len() as u64);
        for s in &self.sensors {
            h.write_str(s);
        }
        h.write_u64(p.half_lives.len() as u64);
        for hl in &p.half_lives {
            h.write_f64(*hl);
        }
        h.write_u64(p.trend_horizon as u64);
        for v in [p.median_step, p.mad_step] {
            h.write_f64(v);
        }
        h.write_u64(u64::from(p.warmup_readings));
        for v in [
            p.resid_clip,
            p.max_gap_ratio,
            p.interval_step,
            p.scale_floor_rel,
            p.scale_floor_abs,
            p.scale_floor_quantum,
        ] {
            h.write_f64(v);
        }
        // The default spread floor (session 14) leaves the hash of earlier
        // versions unchanged: the state is laid out as before, so saved
        // state restores (and is scored with the floor from then on)
        // instead of every asset warming up again after an upgrade.
        if p.scale_floor_spread != DEFAULT_SCALE_FLOOR_SPREAD {
            h.write_f64(p.scale_floor_spread);
        }
        // Off (the default) leaves the hash of earlier versions unchanged.
        if p.seasonality != Seasonality::Off {
            h.write_str(p.seasonality.name());
            h.write_f64(p.seasonal_periods);
        }
        h.finish()
    }
}

/// Per-sensor state fields: mean and variance per horizon, then median, MAD,
/// residual scale, trend cross-moment, valid count, last valid timestamp,
/// last valid value, quantum.
pub(crate) fn n_sensor_fields(n_horizons: usize) -> usize {
    2 * n_horizons + 8
}

/// Offsets (in lanes of `n_sensors`) of the per-sensor fields after the header.
pub(crate) mod field {
    pub(crate) fn mean(h: usize) -> usize {
        h
    }
    pub(crate) fn var(n_h: usize, h: usize) -> usize {
        n_h + h
    }
    pub(crate) fn med(n_h: usize) -> usize {
        2 * n_h
    }
    pub(crate) fn mad(n_h: usize) -> usize {
        2 * n_h + 1
    }
    pub(crate) fn rs(n_h: usize) -> usize {
        2 * n_h + 2
    }
    pub(crate) fn ctx(n_h: usize) -> usize {
        2 * n_h + 3
    }
    pub(crate) fn n_valid(n_h: usize) -> usize {
        2 * n_h + 4
    }
    pub(crate) fn last_valid(n_h: usize) -> usize {
        2 * n_h + 5
    }
    pub(crate) fn quantum(n_h: usize) -> usize {
        2 * n_h + 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sensors: &[&str]) -> Result<FeatureSpec, FeatureError> {
        FeatureSpec::new(
            FeatureValidParams::default(),
            sensors.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn a_spread_floor_other_than_the_default_changes_the_state_hash() {
        let hash = |spread: f64| {
            let p = FeatureValidParams {
                scale_floor_spread: spread,
                ..FeatureValidParams::default()
            };
            FeatureSpec::new(p, vec!["a".into()]).unwrap().state_hash()
        };
        // The default is not hashed (state saved before it restores); any
        // other value is.
        let default = hash(DEFAULT_SCALE_FLOOR_SPREAD);
        assert_ne!(default, hash(0.0));
        assert_ne!(default, hash(0.2));
        assert_ne!(hash(0.0), hash(0.2));
    }

    #[test]
    fn eight_sensors_fit_in_two_kibibytes_of_state() {
        let s = spec(&["a", "b", "c", "d", "e", "f", "g", "h"]).unwrap();
        assert!(
            s.state_bytes_per_asset() <= 2048,
            "{}",
            s.state_bytes_per_asset()
        );
    }

    #[test]
    fn feature_names_are_in_the_documented_order() {
        let s = spec(&["temp", "rpm"]).unwrap();
        assert_eq!(s.names()[0], "dt_s");
        assert_eq!(s.names()[1], "temp.ewma_mean_hl4");
        assert_eq!(s.names()[2], "temp.ewma_std_hl4");
        assert_eq!(s.names()[7], "temp.median");
        assert_eq!(s.names()[13], "temp.age_s");
        assert_eq!(s.names()[14], "rpm.ewma_mean_hl4");
        assert_eq!(s.n_features(), 1 + 2 * s.n_features_per_sensor());
    }

    #[test]
    fn empty_and_duplicate_sensor_lists_are_rejected() {
        assert!(spec(&[]).is_err());
        assert!(spec(&["a", "b", "a"])
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }
}
