//! What the run produced in Salesforce, read back from the emulator, and
//! what it was worth against the simulator's ground truth (the same
//! definitions as `cloud/tests/predictive.rs`).

use std::collections::{BTreeMap, BTreeSet};

use fieldpulse_cloud::actions::key_part_decode;
use fieldpulse_models::failure::labels::parse_sf_datetime;
use fieldpulse_sf_emulator::Emulator;
use serde::Serialize;
use serde_json::Value;

use super::html::{self, PageData};
use super::publisher::PublishStats;
use super::scenario::{Scenario, LOOKBACK_MS};

/// One Case as a dispatcher reads it.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    /// Asset name.
    pub asset: String,
    /// Predicted failure mode.
    pub mode: String,
    /// Case priority (`High`, `Medium`, `Low`).
    pub priority: String,
    /// Case status.
    pub status: String,
    /// When the episode opened (fleet time, RFC 3339).
    pub opened: String,
    /// Predicted failure date from the `Asset_Alert__c`, if the model gave one.
    pub predicted_failure: Option<String>,
    /// Remaining useful life in days from the alert, if any.
    pub rul_days: Option<f64>,
    /// The asset's actual failure of this mode within the look-ahead (ground truth).
    pub actual_failure: Option<String>,
    /// Opened in the judged window (Cases of the warm-up are not judged).
    pub judged: bool,
    /// Sensor-to-Case latency: MQTT publish of the reading that opened the
    /// episode to the Case's `CreatedDate` in the emulator, ms.
    pub latency_ms: Option<u64>,
    /// `Asset_Alert__c` records pointing at this Case (one expected).
    pub asset_alerts: usize,
    /// `AI_Insight__c` audit records of this Case's episode (at least its opening).
    pub ai_insights: usize,
    /// The Case's Salesforce Id (for the report's links; not in the JSON).
    #[serde(skip)]
    pub case_id: String,
    /// The Case's `AssetId`.
    #[serde(skip)]
    pub asset_id: String,
    /// When the episode opened, ms.
    #[serde(skip)]
    pub opened_ms: Option<i64>,
    /// The actual failure, ms.
    #[serde(skip)]
    pub actual_failure_ms: Option<i64>,
}

/// Prediction quality against the ground truth in the judged window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    /// Failures in the window.
    pub failures: usize,
    /// Failures with a Case of the right mode opened at most 14 days before.
    pub caught: usize,
    /// Openings followed by their failure within 14 days.
    pub true_alarms: usize,
    /// Openings followed by no failure of their asset and mode within 14 days.
    pub false_alarms: usize,
    /// Hours from the first right-mode opening to each caught failure.
    pub lead_hours: Vec<f64>,
}

impl Quality {
    /// Caught failures / failures (0 when there were none).
    pub fn recall(&self) -> f64 {
        self.caught as f64 / self.failures.max(1) as f64
    }
    /// True alarms / openings (0 when there were none).
    pub fn precision(&self) -> f64 {
        self.true_alarms as f64 / (self.true_alarms + self.false_alarms).max(1) as f64
    }
    /// Median lead time, hours; `None` when nothing was caught.
    pub fn median_lead_hours(&self) -> Option<f64> {
        let mut l = self.lead_hours.clone();
        l.sort_by(f64::total_cmp);
        l.get(l.len() / 2).copied()
    }
}

/// Everything read back from the org.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The Cases, by opening time.
    pub cases: Vec<CaseRow>,
    /// `Asset_Alert__c` records.
    pub asset_alerts: usize,
    /// PM campaign drafts (`MaintenancePlan`).
    pub pm_campaign_drafts: usize,
    /// `AI_Insight__c` audit records.
    pub ai_insights: usize,
    /// Quality in the judged window.
    pub quality: Quality,
    /// Sensor-to-Case latencies, ms.
    pub latencies_ms: Vec<u64>,
    /// What `report.html` plots.
    pub page: PageData,
}

#[derive(Debug, Clone)]
struct Opening {
    asset: String,
    mode: String,
    opened_ms: i64,
}

fn text<'a>(rec: &'a Value, field: &str) -> &'a str {
    rec.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// (asset, mode) from `fp-case:<asset>:<mode>:<generation>`.
pub fn case_asset_mode(key: &str) -> Option<(String, String)> {
    let mut parts = key.strip_prefix("fp-case:")?.rsplitn(3, ':');
    let _generation = parts.next()?;
    let mode = key_part_decode(parts.next()?)?;
    let asset = key_part_decode(parts.next()?)?;
    Some((asset, mode))
}

/// `2026-11-20 14:00` (UTC).
fn datetime(ms: i64) -> String {
    let s = fieldpulse_simulator::time::format_datetime(ms);
    format!("{} {}", &s[..10], &s[11..16])
}

/// Reads the org (served at `org_base`) and judges it.
pub fn collect(
    emulator: &Emulator,
    scenario: &Scenario,
    published: &PublishStats,
    org_base: &str,
) -> Outcome {
    // Episode openings, from the audit trail: case key → opening.
    let mut openings: BTreeMap<String, Opening> = BTreeMap::new();
    let mut insights_of: BTreeMap<String, usize> = BTreeMap::new();
    for r in emulator.records("AI_Insight__c") {
        if let Some(key) = serde_json::from_str::<Value>(text(&r, "Source_Record_Ids__c"))
            .ok()
            .and_then(|src| src["case_key"].as_str().map(str::to_string))
        {
            *insights_of.entry(key).or_default() += 1;
        }
        let opened = text(&r, "Outcome__c")
            .split_once(':')
            .is_some_and(|(_, what)| what.trim_start().starts_with("opened"));
        if !opened {
            continue;
        }
        let Ok(src) = serde_json::from_str::<Value>(text(&r, "Source_Record_Ids__c")) else {
            continue;
        };
        let Some(key) = src["case_key"].as_str() else {
            continue;
        };
        let (Some((asset, mode)), Some(opened_ms)) = (
            case_asset_mode(key),
            parse_sf_datetime(text(&r, "Window_Start__c")),
        ) else {
            continue;
        };
        openings.entry(key.to_string()).or_insert(Opening {
            asset,
            mode,
            opened_ms,
        });
    }
    let alerts = emulator.records("Asset_Alert__c");
    let alert_of: BTreeMap<&str, &Value> = alerts
        .iter()
        .map(|a| (text(a, "Case__c"), a))
        .filter(|(id, _)| !id.is_empty())
        .collect();
    let mut alerts_of: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &alerts {
        *alerts_of.entry(text(a, "Case__c")).or_default() += 1;
    }
    let mut cases = Vec::new();
    let mut latencies_ms = Vec::new();
    for case in emulator.records("Case") {
        let key = text(&case, "FieldPulse_Key__c");
        let Some((asset, mode)) = case_asset_mode(key) else {
            continue;
        };
        let alert = alert_of.get(text(&case, "Id")).copied();
        let opened_ms = openings
            .get(key)
            .map(|o| o.opened_ms)
            .or_else(|| alert.and_then(|a| parse_sf_datetime(text(a, "Detected_At__c"))));
        let latency_ms = opened_ms.and_then(|t| {
            let published = published.wall_time_of(t)?;
            let created = parse_sf_datetime(text(&case, "CreatedDate"))?;
            u64::try_from(created - published).ok()
        });
        latencies_ms.extend(latency_ms);
        let actual_failure = opened_ms.and_then(|t| {
            scenario
                .failures
                .iter()
                .filter(|f| f.asset == asset && f.mode == mode)
                .map(|f| f.ts_ms)
                .find(|&f| f > t && f - t <= LOOKBACK_MS)
        });
        cases.push((
            opened_ms.unwrap_or(i64::MAX),
            CaseRow {
                asset,
                mode,
                priority: text(&case, "Priority").to_string(),
                status: text(&case, "Status").to_string(),
                opened: opened_ms.map(datetime).unwrap_or_default(),
                predicted_failure: alert
                    .map(|a| text(a, "Predicted_Failure_Date__c").to_string())
                    .filter(|d| !d.is_empty()),
                rul_days: alert
                    .and_then(|a| a.get("RUL_Days__c"))
                    .and_then(Value::as_f64),
                actual_failure: actual_failure.map(datetime),
                judged: opened_ms
                    .is_some_and(|t| (scenario.window_start_ms..scenario.end_ms).contains(&t)),
                latency_ms,
                asset_alerts: alerts_of.get(text(&case, "Id")).copied().unwrap_or(0),
                ai_insights: insights_of.get(key).copied().unwrap_or(0),
                case_id: text(&case, "Id").to_string(),
                asset_id: text(&case, "AssetId").to_string(),
                opened_ms,
                actual_failure_ms: actual_failure,
            },
        ));
    }
    cases.sort_by_key(|(t, _)| *t);
    let openings: Vec<Opening> = openings.into_values().collect();
    let cases: Vec<CaseRow> = cases.into_iter().map(|(_, c)| c).collect();
    let quality = quality(scenario, &openings);
    let mut page = html::collect(emulator, scenario, &cases, org_base);
    page.lead_hours = quality.lead_hours.clone();
    Outcome {
        cases,
        asset_alerts: emulator.live_count("Asset_Alert__c"),
        pm_campaign_drafts: emulator.live_count("MaintenancePlan"),
        ai_insights: emulator.live_count("AI_Insight__c"),
        quality,
        latencies_ms,
        page,
    }
}

/// Recall, precision, lead time and false alarms of the openings in the
/// window against the failures in it.
fn quality(scenario: &Scenario, opened: &[Opening]) -> Quality {
    let window = scenario.window_start_ms..scenario.end_ms;
    let opened: Vec<&Opening> = opened
        .iter()
        .filter(|o| window.contains(&o.opened_ms))
        .collect();
    let mut q = Quality::default();
    for f in scenario
        .failures
        .iter()
        .filter(|f| window.contains(&f.ts_ms))
    {
        q.failures += 1;
        if let Some(first) = opened
            .iter()
            .filter(|o| {
                o.asset == f.asset
                    && o.mode == f.mode
                    && o.opened_ms < f.ts_ms
                    && o.opened_ms >= f.ts_ms - LOOKBACK_MS
            })
            .map(|o| o.opened_ms)
            .min()
        {
            q.caught += 1;
            q.lead_hours.push((f.ts_ms - first) as f64 / 3.6e6);
        }
    }
    for o in &opened {
        let hit = scenario.failures.iter().any(|f| {
            f.asset == o.asset
                && f.mode == o.mode
                && f.ts_ms > o.opened_ms
                && f.ts_ms - o.opened_ms <= LOOKBACK_MS
        });
        if hit {
            q.true_alarms += 1;
        } else {
            q.false_alarms += 1;
        }
    }
    q
}

/// Distinct assets with a Case (for the text).
pub fn assets_with_cases(cases: &[CaseRow]) -> usize {
    cases
        .iter()
        .map(|c| c.asset.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::scenario::{Failure, DAY_MS};

    fn scenario(failures: Vec<Failure>) -> Scenario {
        Scenario {
            names: vec!["pump-0001".into(), "comp-0002".into()],
            readings: Vec::new(),
            start_ms: 0,
            window_start_ms: 10 * DAY_MS,
            end_ms: 40 * DAY_MS,
            fixture: Value::Null,
            failures,
            trained_on: (0, 0),
        }
    }

    fn failure(asset: &str, mode: &str, day: i64) -> Failure {
        Failure {
            asset: asset.into(),
            mode: mode.into(),
            ts_ms: day * DAY_MS,
        }
    }

    fn opening(asset: &str, mode: &str, day: i64) -> Opening {
        Opening {
            asset: asset.into(),
            mode: mode.into(),
            opened_ms: day * DAY_MS,
        }
    }

    #[test]
    fn quality_judges_openings_in_the_window_against_the_truth() {
        let s = scenario(vec![
            // Caught 5 days ahead by a right-mode opening (the first one counts).
            failure("pump-0001", "bearing", 20),
            // Only a wrong-mode opening before it: missed.
            failure("comp-0002", "fouling", 30),
            // Before the window: not judged.
            failure("pump-0001", "fouling", 5),
            // After the window: judges an opening, is not a failure in it.
            failure("comp-0002", "bearing", 45),
        ]);
        let opened = [
            opening("pump-0001", "bearing", 15),
            opening("pump-0001", "bearing", 17),
            opening("comp-0002", "electrical", 28),
            opening("comp-0002", "bearing", 38),
            // Warm-up opening: not judged.
            opening("pump-0001", "fouling", 2),
        ];
        let q = quality(&s, &opened);
        assert_eq!(q.failures, 2);
        assert_eq!(q.caught, 1);
        assert_eq!(q.lead_hours, vec![5.0 * 24.0]);
        assert_eq!((q.true_alarms, q.false_alarms), (3, 1));
        assert_eq!(q.recall(), 0.5);
        assert_eq!(q.precision(), 0.75);
        assert_eq!(q.median_lead_hours(), Some(120.0));
        assert_eq!(Quality::default().median_lead_hours(), None);
        assert_eq!(Quality::default().precision(), 0.0);
    }

    #[test]
    fn case_keys_give_asset_and_mode_and_bad_keys_none() {
        assert_eq!(
            case_asset_mode("fp-case:pump-0001:bearing:2"),
            Some(("pump-0001".into(), "bearing".into()))
        );
        assert_eq!(case_asset_mode("fp-alert:pump-0001:bearing:2"), None);
        assert_eq!(case_asset_mode("fp-case:bearing"), None);
    }
}
