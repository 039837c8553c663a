//! Seeding: a JSON fixture of records (accounts, products, assets with
//! install dates, years of Work Order history) and synthetic Work Orders for
//! load tests.
//!
//! Fixture format:
//! ```json
//! {"objects": [
//!   {"type": "Account", "records": [{"@ref": "acme", "Name": "Acme"}]},
//!   {"type": "Asset", "records": [{"@ref": "p104", "Name": "Pump P-104", "AccountId": "@acme", "InstallDate": "2021-03-01"}]},
//!   {"type": "WorkOrder", "records": [{"AssetId": "@p104", "Status": "Completed", "CreatedDate": "2024-01-05T08:00:00Z"}]}
//! ]}
//! ```
//! `@ref` names a record; a string value `@name` is replaced by that record's
//! id. Fixtures go through full validation but may set system and read-only
//! fields (`CreatedDate`, `LastModifiedDate`, `SystemModstamp`,
//! `IsGeneratedFromMaintenancePlan`, ...), as history imports do.

use std::collections::HashMap;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use crate::server::{Emulator, EmulatorError};
use crate::time;
use crate::write::{self, WriteCtx};

/// A fixture file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Objects in insertion order.
    pub objects: Vec<FixtureObject>,
}

/// Records of one object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureObject {
    /// Object API name.
    #[serde(rename = "type")]
    pub object: String,
    /// Field maps, optionally with `@ref`.
    pub records: Vec<Map<String, Json>>,
}

/// What a seed created.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeedReport {
    /// Records created per object.
    pub created: HashMap<String, usize>,
}

impl Emulator {
    /// Inserts a fixture, validating every record.
    ///
    /// # Errors
    /// The first invalid record, named by object and index.
    pub fn seed(&self, fixture: &Fixture) -> Result<SeedReport, EmulatorError> {
        let mut org = self.org();
        let ctx = WriteCtx {
            now_ms: self.clock().now_ms(),
            user_id: &self.shared.user_id,
            trusted: true,
        };
        let mut refs: HashMap<String, String> = HashMap::new();
        let mut report = SeedReport::default();
        for group in &fixture.objects {
            let object =
                self.schema()
                    .object_idx(&group.object)
                    .ok_or_else(|| EmulatorError::Invalid {
                        path: "fixture".into(),
                        reason: format!("unknown object {}", group.object),
                    })?;
            for (i, record) in group.records.iter().enumerate() {
                let mut body = Map::new();
                let mut name = None;
                for (key, value) in record {
                    if key == "@ref" {
                        name = value.as_str().map(str::to_string);
                        continue;
                    }
                    let resolved = match value.as_str().and_then(|s| s.strip_prefix('@')) {
                        Some(r) => Json::String(refs.get(r).cloned().ok_or_else(|| {
                            EmulatorError::Invalid {
                                path: "fixture".into(),
                                reason: format!(
                                    "{}[{i}].{key}: unknown reference @{r}",
                                    group.object
                                ),
                            }
                        })?),
                        None => value.clone(),
                    };
                    body.insert(key.clone(), resolved);
                }
                let id = write::create(&mut org.store, ctx, object, &body).map_err(|errors| {
                    EmulatorError::Invalid {
                        path: "fixture".into(),
                        reason: format!(
                            "{}[{i}]: {}",
                            group.object,
                            errors
                                .iter()
                                .map(|e| format!("{}: {}", e.code, e.message))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    }
                })?;
                if let Some(name) = name {
                    refs.insert(name, id);
                }
                *report
                    .created
                    .entry(self.schema().objects[object].name.clone())
                    .or_default() += 1;
            }
        }
        Ok(report)
    }

    /// Inserts `count` synthetic Work Orders (plus a small catalogue of
    /// accounts, products, work types and assets) spread over three years,
    /// directly into the store. For load tests and memory measurements.
    ///
    /// # Errors
    /// Only if the built-in records fail validation (a bug).
    pub fn seed_synthetic_work_orders(
        &self,
        count: usize,
        seed: u64,
    ) -> Result<SeedReport, EmulatorError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = self.clock().now_ms();
        let mut fixture = Fixture {
            objects: Vec::new(),
        };
        let n_assets = (count / 200).clamp(1, 2000);
        fixture.objects.push(FixtureObject {
            object: "Account".into(),
            records: vec![obj(json!({"@ref": "acct", "Name": "Synthetic Utilities"}))],
        });
        fixture.objects.push(FixtureObject {
            object: "Product2".into(),
            records: (0..5).map(|p| obj(json!({"@ref": format!("prod{p}"), "Name": format!("Pump model {p}"), "ProductCode": format!("PMP-{p}"), "IsActive": true}))).collect(),
        });
        fixture.objects.push(FixtureObject {
            object: "WorkType".into(),
            records: ["Inspection", "Bearing replacement", "Seal replacement"]
                .iter()
                .enumerate()
                .map(|(w, name)| {
                    obj(json!({"@ref": format!("wt{w}"), "Name": name, "EstimatedDuration": 2.0}))
                })
                .collect(),
        });
        fixture.objects.push(FixtureObject {
            object: "Asset".into(),
            records: (0..n_assets)
                .map(|a| {
                    let install = time::format_date((now / time::DAY_MS) as i32 - 365 * 5 + (a % 700) as i32);
                    obj(json!({"@ref": format!("asset{a}"), "Name": format!("Pump P-{a:05}"), "AccountId": "@acct", "Product2Id": format!("@prod{}", a % 5),
                               "SerialNumber": format!("SN-{a:07}"), "InstallDate": install, "Status": "Installed"}))
                })
                .collect(),
        });
        let mut report = self.seed(&fixture)?;
        // Resolve the catalogue ids, then insert Work Orders without building a fixture per row.
        let records = |object: &str| {
            self.records(object)
                .into_iter()
                .filter_map(|r| r["Id"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        };
        let assets = records("Asset");
        let work_types = records("WorkType");
        let account = records("Account").into_iter().next().unwrap_or_default();
        let mut org = self.org();
        let schema = self.schema();
        let object = schema
            .object_idx("WorkOrder")
            .expect("WorkOrder is a standard object");
        const STATUSES: &[&str] = &[
            "Completed",
            "Completed",
            "Completed",
            "Closed",
            "New",
            "In Progress",
            "Canceled",
        ];
        const PRIORITIES: &[&str] = &["Low", "Medium", "High", "Critical"];
        let three_years = 3 * 365 * time::DAY_MS;
        for i in 0..count {
            let created = now - rng.gen_range(0..three_years);
            let modified = (created + rng.gen_range(0..30 * time::DAY_MS)).min(now);
            let start = created + rng.gen_range(0..5 * time::DAY_MS);
            let mut body = Map::new();
            body.insert(
                "AssetId".into(),
                json!(assets[rng.gen_range(0..assets.len())]),
            );
            body.insert("AccountId".into(), json!(account));
            body.insert("WorkTypeId".into(), json!(work_types[i % work_types.len()]));
            body.insert(
                "Status".into(),
                json!(STATUSES[rng.gen_range(0..STATUSES.len())]),
            );
            body.insert(
                "Priority".into(),
                json!(PRIORITIES[rng.gen_range(0..PRIORITIES.len())]),
            );
            body.insert("Subject".into(), json!(format!("Synthetic work order {i}")));
            body.insert("StartDate".into(), json!(time::format_datetime(start)));
            body.insert(
                "EndDate".into(),
                json!(time::format_datetime(
                    start + rng.gen_range(1..8) * 3_600_000
                )),
            );
            body.insert(
                "IsGeneratedFromMaintenancePlan".into(),
                json!(rng.gen_bool(0.4)),
            );
            body.insert("CreatedDate".into(), json!(time::format_datetime(created)));
            body.insert(
                "LastModifiedDate".into(),
                json!(time::format_datetime(modified)),
            );
            body.insert(
                "SystemModstamp".into(),
                json!(time::format_datetime(modified)),
            );
            let ctx = WriteCtx {
                now_ms: now,
                user_id: &self.shared.user_id,
                trusted: true,
            };
            write::create(&mut org.store, ctx, object, &body).map_err(|errors| {
                EmulatorError::Invalid {
                    path: "synthetic work orders".into(),
                    reason: errors
                        .iter()
                        .map(|e| e.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            })?;
        }
        report.created.insert("WorkOrder".into(), count);
        Ok(report)
    }
}

fn obj(value: Json) -> Map<String, Json> {
    match value {
        Json::Object(map) => map,
        _ => Map::new(),
    }
}
