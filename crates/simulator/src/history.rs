//! Maintenance history and ground truth produced by a simulation, and their
//! file formats.
//!
//! [`History::to_fixture_json`] writes the Salesforce side (Product2, Asset,
//! WorkType, WorkOrder) with standard field names, as a seed fixture in the
//! emulator's format (records linked by `@ref`). [`WorkOrder::id`] and
//! [`AssetInfo::id`] are 18-character IDs for callers that need stable IDs
//! without an org. There is no failure-code field on
//! a standard WorkOrder (and no `ClosedDate`), so the failure code travels the
//! way orgs usually record it: the Work Type (`Corrective - Bearing`) and a
//! `[BRG]` prefix on the Subject; `StartDate`/`EndDate` hold the repair window.
//! [`History::to_ground_truth_json`] writes what really happened (failure
//! times and modes, sensor faults), which Salesforce never sees.

use serde::Serialize;
use serde_json::{json, Value};

use crate::product::{FailureMode, ProductKind, ProductSpec, SENSORS};
use crate::time::{format_date, format_datetime};

/// What a Work Order was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "mode", rename_all = "snake_case")]
pub enum WorkKind {
    /// Repair after a failure; `None` when the technician left no failure code.
    Corrective(Option<FailureMode>),
    /// Corrective visit that found nothing wrong (not a failure).
    NoFaultFound,
    /// Planned preventive maintenance (resets fouling, halves bearing wear).
    Preventive,
    /// Routine inspection (no effect on wear).
    Inspection,
    /// Commissioning at install time (before telemetry starts).
    Installation,
}

/// One simulated Work Order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkOrder {
    /// 18-character Salesforce ID (`0WO…`).
    pub id: String,
    /// Eight-digit WorkOrderNumber.
    pub number: String,
    /// Index of the asset in [`History::assets`].
    pub asset_idx: usize,
    /// What it was for.
    pub kind: WorkKind,
    /// Salesforce Status (`Completed`, `Closed`, `Canceled`).
    pub status: &'static str,
    /// Salesforce Priority.
    pub priority: &'static str,
    /// Subject line.
    pub subject: String,
    /// When it was created (epoch ms).
    pub created_ms: i64,
    /// Work started (epoch ms).
    pub start_ms: i64,
    /// Work finished (epoch ms).
    pub end_ms: i64,
}

/// One simulated asset (static part).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetInfo {
    /// 18-character Salesforce ID (`02i…`).
    pub id: String,
    /// Asset.Name, also the telemetry `asset` column.
    pub name: String,
    /// Asset.SerialNumber.
    pub serial: String,
    /// Product line.
    pub product: ProductKind,
    /// Install time (epoch ms, midnight UTC).
    pub install_ms: i64,
}

/// A real failure (ground truth).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureEvent {
    /// Asset name.
    pub asset: String,
    /// When it failed (epoch ms).
    pub ts_ms: i64,
    /// Failure time as text.
    pub ts: String,
    /// The mode.
    pub mode: FailureMode,
    /// Number of the corrective Work Order raised for it.
    pub work_order_number: String,
}

/// A sensor fault: the equipment is fine, the measurement is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorFaultKind {
    /// The value freezes at its last reading.
    Stuck,
    /// The value is missing (empty CSV cell).
    Dropout,
}

/// One sensor fault window (ground truth).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensorFault {
    /// Asset name.
    pub asset: String,
    /// Channel name.
    pub sensor: &'static str,
    /// Stuck or dropout.
    pub kind: SensorFaultKind,
    /// Start (epoch ms, inclusive).
    pub start_ms: i64,
    /// End (epoch ms, exclusive).
    pub end_ms: i64,
}

/// Everything that happened besides the readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// The assets.
    pub assets: Vec<AssetInfo>,
    /// All Work Orders, in creation order.
    pub work_orders: Vec<WorkOrder>,
    /// Real failures, in time order.
    pub failures: Vec<FailureEvent>,
    /// Sensor faults, in start order.
    pub sensor_faults: Vec<SensorFault>,
}

/// Key prefixes of the objects we create.
pub(crate) mod prefix {
    pub const ASSET: &str = "02i";
    pub const WORK_ORDER: &str = "0WO";
}

/// An 18-character Salesforce record ID for `prefix` and a sequence number:
/// 3-character key prefix, `xx` pod filler, base-62 number, then the
/// case-insensitivity checksum.
pub fn record_id(prefix: &str, seq: u64) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut digits = [b'0'; 10];
    let mut n = seq;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id15 = String::with_capacity(18);
    id15.push_str(prefix);
    id15.push_str("xx");
    id15.push_str(std::str::from_utf8(&digits).unwrap_or("0000000000"));
    let id15 = &id15[..15];
    let bytes = id15.as_bytes();
    let mut out = id15.to_string();
    for chunk in 0..3 {
        let mut bits = 0usize;
        for i in 0..5 {
            if bytes[chunk * 5 + i].is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits] as char);
    }
    out
}

/// Name of the Work Type record for a kind.
pub fn work_type_name(kind: WorkKind) -> &'static str {
    match kind {
        WorkKind::Corrective(Some(FailureMode::Bearing)) => "Corrective - Bearing",
        WorkKind::Corrective(Some(FailureMode::Fouling)) => "Corrective - Fouling",
        WorkKind::Corrective(Some(FailureMode::Electrical)) => "Corrective - Electrical",
        WorkKind::Corrective(None) | WorkKind::NoFaultFound => "Corrective",
        WorkKind::Preventive => "Preventive Maintenance",
        WorkKind::Inspection => "Inspection",
        WorkKind::Installation => "Installation",
    }
}

const WORK_TYPES: [(&str, f64); 7] = [
    ("Corrective - Bearing", 8.0),
    ("Corrective - Fouling", 6.0),
    ("Corrective - Electrical", 6.0),
    ("Corrective", 4.0),
    ("Preventive Maintenance", 4.0),
    ("Inspection", 1.0),
    ("Installation", 8.0),
];

impl History {
    /// The Salesforce seed fixture in the emulator's format
    /// (`crates/sf-emulator/src/fixture.rs`): `{"objects": [{"type",
    /// "records"}]}` in insertion order Account (one customer), Product2,
    /// WorkType, Asset, WorkOrder;
    /// records name themselves with `@ref` and point at each other with
    /// `"@name"` values (the emulator assigns the real IDs). Asset refs are
    /// the asset names; Work Orders carry their system dates (`CreatedDate`)
    /// as history imports may.
    pub fn to_fixture_json(&self, products: &[ProductSpec]) -> Value {
        let product_ref = |kind: ProductKind| {
            let code = products
                .iter()
                .find(|p| p.kind == kind)
                .map_or("PRODUCT", |p| p.code);
            format!("product-{}", code.to_ascii_lowercase())
        };
        let product2: Vec<Value> = products
            .iter()
            .map(|p| {
                json!({
                    "@ref": product_ref(p.kind),
                    "Name": p.name,
                    "ProductCode": p.code,
                    "IsActive": true,
                })
            })
            .collect();
        let work_type_ref = |name: &str| {
            let pos = WORK_TYPES.iter().position(|(n, _)| *n == name).unwrap_or(0);
            format!("worktype-{}", pos + 1)
        };
        let work_types: Vec<Value> = WORK_TYPES
            .iter()
            .map(|(name, hours)| {
                json!({
                    "@ref": work_type_ref(name),
                    "Name": name,
                    "EstimatedDuration": hours,
                    "DurationType": "Hours",
                })
            })
            .collect();
        let assets: Vec<Value> = self
            .assets
            .iter()
            .map(|a| {
                json!({
                    "@ref": a.name,
                    "Name": a.name,
                    "AccountId": "@customer",
                    "SerialNumber": a.serial,
                    "Product2Id": format!("@{}", product_ref(a.product)),
                    "InstallDate": format_date(a.install_ms),
                    "Status": "Installed",
                })
            })
            .collect();
        let work_orders: Vec<Value> = self
            .work_orders
            .iter()
            .map(|w| {
                json!({
                    "@ref": format!("wo-{}", w.number),
                    "AssetId": format!("@{}", self.assets[w.asset_idx].name),
                    "AccountId": "@customer",
                    "WorkTypeId": format!("@{}", work_type_ref(work_type_name(w.kind))),
                    "Subject": w.subject,
                    "Status": w.status,
                    "Priority": w.priority,
                    "CreatedDate": format_datetime(w.created_ms),
                    "StartDate": format_datetime(w.start_ms),
                    "EndDate": format_datetime(w.end_ms),
                    "Duration": ((w.end_ms - w.start_ms) as f64 / 3.6e6 * 100.0).round() / 100.0,
                    "DurationType": "Hours",
                })
            })
            .collect();
        json!({
            "objects": [
                {"type": "Account", "records": [{"@ref": "customer", "Name": "Northwind Facilities"}]},
                {"type": "Product2", "records": product2},
                {"type": "WorkType", "records": work_types},
                {"type": "Asset", "records": assets},
                {"type": "WorkOrder", "records": work_orders},
            ]
        })
    }

    /// Ground truth: failures, sensor faults and preventive visits.
    pub fn to_ground_truth_json(&self) -> Value {
        let preventive: Vec<Value> = self
            .work_orders
            .iter()
            .filter(|w| w.kind == WorkKind::Preventive)
            .map(|w| json!({"asset": self.assets[w.asset_idx].name, "ts_ms": w.start_ms}))
            .collect();
        json!({
            "sensors": SENSORS,
            "failures": self.failures,
            "sensor_faults": self.sensor_faults,
            "preventive_maintenance": preventive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_have_eighteen_characters_and_a_valid_checksum() {
        let id = record_id(prefix::ASSET, 7);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("02ixx"));
        // No uppercase letters in the first 15 characters → checksum "AAA".
        assert_eq!(&id[15..], "AAA");
        let id = record_id(prefix::WORK_ORDER, 61 * 62 + 36);
        // `0WO` has uppercase W and O in chunk 0 (bits 1 and 2) → 'G'.
        assert_eq!(id.chars().nth(15), Some('G'));
    }
}
