//! What the processor knows about assets from Salesforce: Ids, product,
//! account, criticality, and the Work Order history behind the failure
//! model's history features and the Case's "similar past Work Orders".
//!
//! Read once at start (paged SOQL) and refreshed by the feedback poller;
//! shards read it only when an episode changes, never per reading.

use std::collections::{BTreeMap, HashMap};

use fieldpulse_models::failure::labels::{classify, parse_sf_datetime, EventKind};
use fieldpulse_models::failure::FleetHistory;
use fieldpulse_salesforce::{flatten_record, QueryOptions, SalesforceClient, SfError};
use futures_util::TryStreamExt;
use serde_json::{Map, Value};

/// One asset as Salesforce knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetInfo {
    /// Salesforce Id.
    pub id: String,
    /// Asset.Name (the telemetry key).
    pub name: String,
    /// Product2.Name.
    pub product: Option<String>,
    /// Product2Id.
    pub product_id: Option<String>,
    /// AccountId.
    pub account_id: Option<String>,
    /// Account.Name.
    pub account: Option<String>,
    /// Asset.SerialNumber.
    pub serial: Option<String>,
    /// Criticality read from the configured Asset field, when set.
    pub criticality: Option<f64>,
}

/// A past corrective Work Order, for "what fixed it last time".
#[derive(Debug, Clone, PartialEq)]
pub struct PastWorkOrder {
    /// WorkOrderNumber.
    pub number: String,
    /// Asset name.
    pub asset: String,
    /// Subject line.
    pub subject: String,
    /// Work Type name.
    pub work_type: Option<String>,
    /// When the work ended (epoch ms).
    pub end_ms: Option<i64>,
}

/// Assets and their maintenance history.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// By Asset.Name.
    pub assets: HashMap<String, AssetInfo>,
    /// Name by Salesforce Id.
    pub names_by_id: HashMap<String, String>,
    /// Work Order history in the models' form.
    pub history: FleetHistory,
    /// Corrective Work Orders per (product, failure mode), newest last.
    pub past_failures: BTreeMap<(String, String), Vec<PastWorkOrder>>,
}

/// SELECT list for assets (plus the criticality field when configured).
fn asset_fields(criticality_field: &str) -> String {
    let mut fields = String::from(
        "Id, Name, SerialNumber, Product2Id, Product2.Name, AccountId, Account.Name, InstallDate",
    );
    if !criticality_field.is_empty() {
        fields.push_str(", ");
        fields.push_str(criticality_field);
    }
    fields
}

/// SELECT list for Work Orders.
pub const WORK_ORDER_FIELDS: &str = "Id, WorkOrderNumber, AssetId, CaseId, Status, Subject, \
     WorkTypeId, WorkType.Name, CreatedDate, StartDate, EndDate, SystemModstamp";

fn text<'a>(rec: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    rec.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Directory {
    /// Reads every Asset, Product2 and Work Order.
    ///
    /// # Errors
    /// Salesforce errors after the client's retries.
    pub async fn load(client: &SalesforceClient, criticality_field: &str) -> Result<Self, SfError> {
        let assets: Vec<Map<String, Value>> = client
            .query(
                &format!("SELECT {} FROM Asset", asset_fields(criticality_field)),
                QueryOptions::default(),
            )
            .map_ok(|r| flatten_record(&r))
            .try_collect()
            .await?;
        let work_orders: Vec<Map<String, Value>> = client
            .query(
                &format!("SELECT {WORK_ORDER_FIELDS} FROM WorkOrder"),
                QueryOptions::default(),
            )
            .map_ok(|r| flatten_record(&r))
            .try_collect()
            .await?;
        Ok(Self::from_records(assets, &work_orders, criticality_field))
    }

    /// Builds the directory from flattened Asset and WorkOrder records.
    pub fn from_records(
        assets: Vec<Map<String, Value>>,
        work_orders: &[Map<String, Value>],
        criticality_field: &str,
    ) -> Self {
        let mut dir = Directory::default();
        let mut products = Vec::new();
        for rec in &assets {
            let (Some(id), Some(name)) = (text(rec, "Id"), text(rec, "Name")) else {
                continue;
            };
            let info = AssetInfo {
                id: id.to_string(),
                name: name.to_string(),
                product: text(rec, "Product2.Name").map(str::to_string),
                product_id: text(rec, "Product2Id").map(str::to_string),
                account_id: text(rec, "AccountId").map(str::to_string),
                account: text(rec, "Account.Name").map(str::to_string),
                serial: text(rec, "SerialNumber").map(str::to_string),
                criticality: (!criticality_field.is_empty())
                    .then(|| rec.get(criticality_field).and_then(Value::as_f64))
                    .flatten(),
            };
            if let (Some(pid), Some(pname)) = (&info.product_id, &info.product) {
                products.push(serde_json::json!({"Id": pid, "Name": pname}));
            }
            dir.names_by_id.insert(info.id.clone(), info.name.clone());
            dir.assets.insert(info.name.clone(), info);
        }
        let root = serde_json::json!({
            "records": {
                "Product2": products,
                "Asset": assets,
                "WorkOrder": work_orders,
            }
        });
        dir.history = FleetHistory::from_value(&root).unwrap_or_default();
        for wo in work_orders {
            dir.add_past_failure(wo);
        }
        dir
    }

    /// Files a Work Order under "past failures" when it was a repair with a known mode.
    pub fn add_past_failure(&mut self, wo: &Map<String, Value>) {
        let Some(asset) = text(wo, "AssetId").and_then(|id| self.names_by_id.get(id)) else {
            return;
        };
        let Some(product) = self.assets.get(asset).and_then(|a| a.product.clone()) else {
            return;
        };
        let work_type = text(wo, "WorkType.Name");
        let EventKind::Failure(Some(mode)) = classify(work_type, text(wo, "Subject"), false) else {
            return;
        };
        if !text(wo, "Status").is_some_and(|s| s == "Completed" || s == "Closed") {
            return;
        }
        let number = text(wo, "WorkOrderNumber").unwrap_or_default().to_string();
        let list = self.past_failures.entry((product, mode)).or_default();
        if list.iter().any(|p| p.number == number) {
            return;
        }
        list.push(PastWorkOrder {
            number,
            asset: asset.clone(),
            subject: text(wo, "Subject").unwrap_or_default().to_string(),
            work_type: work_type.map(str::to_string),
            end_ms: text(wo, "EndDate").and_then(parse_sf_datetime),
        });
        list.sort_by_key(|p| p.end_ms.unwrap_or(i64::MIN));
    }

    /// The asset, when Salesforce knows it.
    pub fn asset(&self, name: &str) -> Option<&AssetInfo> {
        self.assets.get(name)
    }

    /// Past repairs of `mode` on `product`, newest last.
    pub fn similar(&self, product: &str, mode: &str) -> &[PastWorkOrder] {
        self.past_failures
            .get(&(product.to_string(), mode.to_string()))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        flatten_record(&v)
    }

    #[test]
    fn assets_products_and_past_repairs_are_indexed() {
        let assets = vec![obj(json!({
            "Id": "02i000000000001AAA", "Name": "P-001", "SerialNumber": "SN1",
            "Product2Id": "01t000000000001AAA", "Product2": {"Name": "Pump"},
            "AccountId": "001000000000001AAA", "Account": {"Name": "Northwind"},
            "InstallDate": "2024-01-01"
        }))];
        let wos = vec![
            obj(json!({
                "Id": "0WO000000000001AAA", "WorkOrderNumber": "00000001",
                "AssetId": "02i000000000001AAA", "Status": "Completed",
                "Subject": "[BRG] Bearing replaced", "WorkType": {"Name": "Corrective - Bearing"},
                "CreatedDate": "2025-03-01T00:00:00.000+0000", "StartDate": "2025-03-01T02:00:00.000+0000",
                "EndDate": "2025-03-01T06:00:00.000+0000"
            })),
            obj(json!({
                "Id": "0WO000000000002AAA", "WorkOrderNumber": "00000002",
                "AssetId": "02i000000000001AAA", "Status": "Completed",
                "Subject": "Quarterly PM", "WorkType": {"Name": "Preventive Maintenance"},
                "CreatedDate": "2025-04-01T00:00:00.000+0000", "StartDate": "2025-04-01T00:00:00.000+0000",
                "EndDate": "2025-04-01T03:00:00.000+0000"
            })),
        ];
        let dir = Directory::from_records(assets, &wos, "");
        let a = dir.asset("P-001").unwrap();
        assert_eq!(a.product.as_deref(), Some("Pump"));
        assert_eq!(a.account.as_deref(), Some("Northwind"));
        let similar = dir.similar("Pump", "bearing");
        assert_eq!(similar.len(), 1);
        assert_eq!(similar[0].number, "00000001");
        assert_eq!(dir.history.assets["P-001"].failures.len(), 1);
        assert_eq!(dir.history.assets["P-001"].preventive.len(), 1);
    }
}
