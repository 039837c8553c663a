//! Products, their sensors' nominal values and the failure modes they suffer.
//!
//! Every product reports the same six channels ([`SENSORS`]) so the wide CSV
//! has one layout; what differs is the operating point, the daily load shape
//! and which failure modes (with which signatures) apply.

use serde::Serialize;

/// Channel names, in CSV column order.
pub const SENSORS: [&str; 6] = [
    "temp_c",
    "vib_rms",
    "vib_peak",
    "pressure_bar",
    "current_a",
    "rpm",
];
/// Number of channels.
pub const N_SENSORS: usize = SENSORS.len();

/// Index of each channel in [`SENSORS`].
pub mod channel {
    /// Bearing / casing / discharge temperature, °C.
    pub const TEMP: usize = 0;
    /// Vibration velocity RMS, mm/s.
    pub const VIB_RMS: usize = 1;
    /// Vibration velocity peak, mm/s.
    pub const VIB_PEAK: usize = 2;
    /// Discharge pressure, bar.
    pub const PRESSURE: usize = 3;
    /// Motor current, A.
    pub const CURRENT: usize = 4;
    /// Shaft speed, rpm.
    pub const RPM: usize = 5;
}

/// The kinds of equipment in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// Centrifugal pump, fixed speed.
    Pump,
    /// Screw air compressor on a variable-speed drive.
    Compressor,
    /// Rooftop HVAC unit (compressor + condenser fan).
    Hvac,
}

/// How an asset fails; each mode has its own sensor signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Rolling-element bearing wear: vibration RMS and crest factor rise, then heat.
    Bearing,
    /// Fouling (impeller, valves, coils): temperature rises, pressure drifts.
    Fouling,
    /// Winding / insulation fault: current rises and gets noisy, slight slip.
    Electrical,
}

impl FailureMode {
    /// All modes, in a fixed order (index = wear slot).
    pub const ALL: [FailureMode; 3] = [
        FailureMode::Bearing,
        FailureMode::Fouling,
        FailureMode::Electrical,
    ];

    /// Short failure code written on corrective Work Orders.
    pub fn code(self) -> &'static str {
        match self {
            FailureMode::Bearing => "BRG",
            FailureMode::Fouling => "FOUL",
            FailureMode::Electrical => "ELEC",
        }
    }

    /// Human name used in Work Type names and subjects.
    pub fn label(self) -> &'static str {
        match self {
            FailureMode::Bearing => "Bearing",
            FailureMode::Fouling => "Fouling",
            FailureMode::Electrical => "Electrical",
        }
    }

    /// Index in [`FailureMode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Static description of a product line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProductSpec {
    /// Which kind.
    pub kind: ProductKind,
    /// Product2.Name.
    pub name: &'static str,
    /// Product2.ProductCode, also the asset-name prefix.
    pub code: &'static str,
    /// Temperature rise over ambient at full load, °C.
    pub temp_rise_c: f64,
    /// Vibration RMS at full load when healthy, mm/s.
    pub vib_rms: f64,
    /// Healthy crest factor (peak / RMS).
    pub crest: f64,
    /// Discharge pressure at full load, bar.
    pub pressure_bar: f64,
    /// Motor current at full load, A.
    pub current_a: f64,
    /// Shaft speed at full load, rpm.
    pub rpm: f64,
    /// True when speed follows load (variable-speed drive).
    pub variable_speed: bool,
    /// Sign of the fouling effect on pressure (pump: −1, clogged impeller;
    /// compressor and HVAC: +1, restricted flow / dirty condenser).
    pub fouling_pressure_sign: f64,
    /// Median days to failure per mode from new (index = [`FailureMode::index`]).
    pub median_life_days: [f64; 3],
    /// Days between preventive maintenance visits.
    pub pm_interval_days: f64,
}

/// The three product lines of the simulated fleet.
pub const PRODUCTS: [ProductSpec; 3] = [
    ProductSpec {
        kind: ProductKind::Pump,
        name: "AquaFlow CP-300 Centrifugal Pump",
        code: "PUMP",
        temp_rise_c: 28.0,
        vib_rms: 2.2,
        crest: 3.0,
        pressure_bar: 6.5,
        current_a: 32.0,
        rpm: 2950.0,
        variable_speed: false,
        fouling_pressure_sign: -1.0,
        median_life_days: [150.0, 120.0, 400.0],
        pm_interval_days: 90.0,
    },
    ProductSpec {
        kind: ProductKind::Compressor,
        name: "AirCore S-75 Screw Compressor",
        code: "COMP",
        temp_rise_c: 62.0,
        vib_rms: 3.1,
        crest: 3.3,
        pressure_bar: 8.0,
        current_a: 118.0,
        rpm: 2400.0,
        variable_speed: true,
        fouling_pressure_sign: 1.0,
        median_life_days: [130.0, 160.0, 350.0],
        pm_interval_days: 75.0,
    },
    ProductSpec {
        kind: ProductKind::Hvac,
        name: "ClimaRoof RT-20 Rooftop Unit",
        code: "HVAC",
        temp_rise_c: 35.0,
        vib_rms: 1.3,
        crest: 2.8,
        pressure_bar: 17.5,
        current_a: 24.0,
        rpm: 1100.0,
        variable_speed: true,
        fouling_pressure_sign: 1.0,
        median_life_days: [220.0, 110.0, 380.0],
        pm_interval_days: 120.0,
    },
];

/// Spec of a product kind.
pub fn spec(kind: ProductKind) -> &'static ProductSpec {
    match kind {
        ProductKind::Pump => &PRODUCTS[0],
        ProductKind::Compressor => &PRODUCTS[1],
        ProductKind::Hvac => &PRODUCTS[2],
    }
}
