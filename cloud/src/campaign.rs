//! PM campaign drafts: one `MaintenancePlan` per (product, failure mode,
//! window) plus a `MaintenanceAsset` row per asset at risk, for a planner to
//! review. fieldpulse never lets a draft generate Work Orders
//! (`DoesAutoGenerateWorkOrders = false`); approving and scheduling it is a
//! person's decision in Salesforce.

use serde_json::{json, Map};

use crate::actions::{sf_datetime, EpisodeChange};
use crate::directory::AssetInfo;
use crate::outbox::Action;

fn date(ms: i64) -> String {
    sf_datetime(ms).chars().take(10).collect()
}

/// The `MaintenancePlan` draft for campaign `key`.
pub fn plan_action(key: &str, product: &str, change: &EpisodeChange, n_assets: usize) -> Action {
    let mut f = Map::new();
    f.insert("AI_Generated__c".into(), json!(true));
    f.insert("FieldPulse_Trace_Id__c".into(), json!(change.trace_id()));
    let title = format!("DRAFT fieldpulse PM campaign: {} on {product}", change.mode);
    f.insert(
        "MaintenancePlanTitle".into(),
        json!(title.chars().take(255).collect::<String>()),
    );
    f.insert("StartDate".into(), json!(date(change.ts_ms)));
    let next = change
        .rul_days
        .filter(|d| d.is_finite())
        .map_or(change.ts_ms + 7 * 86_400_000, |d| {
            change.ts_ms + ((d * 0.5).max(1.0) * 86_400_000.0) as i64
        });
    f.insert("NextSuggestedMaintenanceDate".into(), json!(date(next)));
    f.insert("Frequency".into(), json!(12));
    f.insert("FrequencyType".into(), json!("Months"));
    f.insert("GenerationTimeframe".into(), json!(1));
    f.insert("GenerationTimeframeType".into(), json!("Months"));
    f.insert("DoesAutoGenerateWorkOrders".into(), json!(false));
    if let Some(acc) = change.info.as_ref().and_then(|i| i.account_id.clone()) {
        f.insert("AccountId".into(), json!(acc));
    }
    f.insert(
        "Description".into(),
        json!(format!(
            "Draft for review, created by fieldpulse: {n_assets} or more {product} assets show elevated {} risk \
             within the campaign window. Review the listed assets, adjust dates, then approve; \
             fieldpulse does not generate Work Orders. Audit: {}.",
            change.mode,
            change.insight_key()
        )),
    );
    Action {
        sobject: "MaintenancePlan".into(),
        ext_key: key.to_string(),
        fields: f,
        priority: 2,
        deferrable: false,
        source_ms: change.appended_ms,
    }
}

/// A `MaintenanceAsset` row adding `asset` to campaign `key`.
pub fn member_action(key: &str, asset: &AssetInfo, change: &EpisodeChange) -> Action {
    let member_key = format!("{key}:{}", crate::actions::key_part(&asset.name));
    let mut f = Map::new();
    f.insert("AI_Generated__c".into(), json!(true));
    f.insert("FieldPulse_Trace_Id__c".into(), json!(change.trace_id()));
    f.insert("MaintenancePlan".into(), json!({"FieldPulse_Key__c": key}));
    f.insert("AssetId".into(), json!(asset.id));
    Action {
        sobject: "MaintenanceAsset".into(),
        ext_key: member_key,
        fields: f,
        priority: 2,
        deferrable: false,
        source_ms: change.appended_ms,
    }
}
