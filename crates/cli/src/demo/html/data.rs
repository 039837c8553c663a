//! What the report shows beyond the summary's numbers, gathered once the
//! run is over: the readings of each plotted Case's asset around the Case
//! (a window, not the fleet), the risk and RUL the cloud wrote to
//! `AI_Insight__c` for the assets with Cases, and where the records live.

use std::collections::BTreeMap;

use fieldpulse_models::failure::labels::parse_sf_datetime;
use fieldpulse_sf_emulator::Emulator;
use fieldpulse_simulator::product::channel;
use fieldpulse_simulator::time::DAY_MS;
use serde_json::Value;

use crate::demo::outcome::{case_asset_mode, CaseRow};
use crate::demo::scenario::Scenario;

/// Cases with a sensor timeline (the rest are listed).
pub const MAX_TIMELINES: usize = 12;
/// Assets with a risk plot (the rest are listed).
pub const MAX_RISK_ASSETS: usize = 12;
/// A timeline starts this long before the Case opened.
const BEFORE_MS: i64 = 7 * DAY_MS;
/// ... and ends this long after the later of the opening and the failure.
const AFTER_MS: i64 = 2 * DAY_MS;

/// The report's data beyond [`super::super::report::DemoSummary`]'s numbers.
#[derive(Debug, Clone, Default)]
pub struct PageData {
    /// The emulator's base URL (it stops when the demo ends).
    pub org_base: String,
    /// REST API version the cloud used, e.g. `66.0`.
    pub api_version: String,
    /// First replayed reading, ms.
    pub start_ms: i64,
    /// Start of the judged window, ms.
    pub window_start_ms: i64,
    /// End of the replay, ms.
    pub end_ms: i64,
    /// Sensor timelines of the plotted Cases.
    pub timelines: Vec<Timeline>,
    /// Risk over time of the plotted assets.
    pub risk: Vec<AssetRisk>,
    /// Assets with Cases but no risk plot (over [`MAX_RISK_ASSETS`]).
    pub risk_not_plotted: Vec<String>,
    /// Hours from the first right-mode Case to each caught failure.
    pub lead_hours: Vec<f64>,
}

/// One Case's asset around the Case.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Index of the Case in the summary's `cases`.
    pub case_idx: usize,
    /// Window start, ms.
    pub from_ms: i64,
    /// Window end, ms (may pass the replay's end when the failure came later).
    pub to_ms: i64,
    /// The failure mode's signature channels.
    pub channels: Vec<Channel>,
    /// The asset's failures (mode, ms) in the window, any mode.
    pub failures: Vec<(String, i64)>,
}

/// One sensor's readings in a window.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Channel name, as the fleet publishes it.
    pub name: &'static str,
    /// Its unit.
    pub unit: &'static str,
    /// `(ms, value)`; a missing value is NaN (a gap).
    pub points: Vec<(i64, f64)>,
}

/// What the cloud wrote about one asset's failure risk.
#[derive(Debug, Clone)]
pub struct AssetRisk {
    /// Asset name.
    pub asset: String,
    /// One point per episode change (`AI_Insight__c`), in time order.
    pub points: Vec<RiskPoint>,
    /// The asset's failures (mode, ms) from the judged window on.
    pub failures: Vec<(String, i64)>,
}

/// One `AI_Insight__c`: an episode change with the scores behind it.
#[derive(Debug, Clone)]
pub struct RiskPoint {
    /// Failure mode.
    pub mode: String,
    /// Asset time of the evaluation (`Window_End__c`), ms.
    pub ts_ms: i64,
    /// Probability of failure within the horizon.
    pub risk: f64,
    /// The mode's alert threshold.
    pub threshold: f64,
    /// Remaining useful life, days, when the model gave one.
    pub rul_days: Option<f64>,
    /// The change (`opened`, `escalated`, `updated`, ...).
    pub change: String,
}

/// The channels whose drift announces a mode (the simulator's signatures:
/// bearing wear shows in vibration then heat, fouling in heat and pressure,
/// a winding fault in current and slip).
pub fn signature_channels(mode: &str) -> [(usize, &'static str, &'static str); 2] {
    const TEMP: (usize, &str, &str) = (channel::TEMP, "temp_c", "°C");
    const VIB: (usize, &str, &str) = (channel::VIB_RMS, "vib_rms", "mm/s");
    const PRESSURE: (usize, &str, &str) = (channel::PRESSURE, "pressure_bar", "bar");
    const CURRENT: (usize, &str, &str) = (channel::CURRENT, "current_a", "A");
    const RPM: (usize, &str, &str) = (channel::RPM, "rpm", "rpm");
    match mode {
        "bearing" => [VIB, TEMP],
        "fouling" => [TEMP, PRESSURE],
        "electrical" => [CURRENT, RPM],
        _ => [TEMP, VIB],
    }
}

/// Gathers the page's data: timelines for at most [`MAX_TIMELINES`] Cases
/// (caught failures first), risk for at most [`MAX_RISK_ASSETS`] assets.
pub fn collect(
    emulator: &Emulator,
    scenario: &Scenario,
    cases: &[CaseRow],
    org_base: &str,
) -> PageData {
    let mut timelines = plotted_cases(cases)
        .into_iter()
        .filter_map(|case_idx| {
            let case = &cases[case_idx];
            let opened = case.opened_ms?;
            let from_ms = (opened - BEFORE_MS).max(scenario.start_ms);
            let to_ms = opened.max(case.actual_failure_ms.unwrap_or(opened)) + AFTER_MS;
            let failures = scenario
                .failures
                .iter()
                .filter(|f| f.asset == case.asset && (from_ms..=to_ms).contains(&f.ts_ms))
                .map(|f| (f.mode.clone(), f.ts_ms))
                .collect();
            Some(Timeline {
                case_idx,
                from_ms,
                to_ms,
                channels: signature_channels(&case.mode)
                    .iter()
                    .map(|&(_, name, unit)| Channel {
                        name,
                        unit,
                        points: Vec::new(),
                    })
                    .collect(),
                failures,
            })
        })
        .collect::<Vec<_>>();
    fill_readings(scenario, cases, &mut timelines);

    // Risk: the assets of the plotted Cases first, then the others.
    let mut assets: Vec<&str> = Vec::new();
    for name in timelines
        .iter()
        .map(|t| cases[t.case_idx].asset.as_str())
        .chain(cases.iter().map(|c| c.asset.as_str()))
    {
        if !assets.contains(&name) {
            assets.push(name);
        }
    }
    let risk_not_plotted = assets
        .iter()
        .skip(MAX_RISK_ASSETS)
        .map(|a| a.to_string())
        .collect();
    assets.truncate(MAX_RISK_ASSETS);
    let mut points = risk_points(emulator, &assets);
    let risk = assets
        .iter()
        .map(|&asset| {
            let mut pts = points.remove(asset).unwrap_or_default();
            pts.sort_by_key(|p| p.ts_ms);
            AssetRisk {
                asset: asset.to_string(),
                points: pts,
                failures: scenario
                    .failures
                    .iter()
                    .filter(|f| f.asset == asset)
                    .map(|f| (f.mode.clone(), f.ts_ms))
                    .collect(),
            }
        })
        .collect();
    PageData {
        org_base: org_base.to_string(),
        api_version: fieldpulse_cloud::config::RawCloudConfig::default()
            .salesforce
            .api_version,
        start_ms: scenario.start_ms,
        window_start_ms: scenario.window_start_ms,
        end_ms: scenario.end_ms,
        timelines,
        risk,
        risk_not_plotted,
        lead_hours: Vec::new(),
    }
}

/// Indexes of the Cases to plot, by opening time: at most
/// [`MAX_TIMELINES`], judged Cases first (up to two thirds true alarms, so
/// false alarms are seen too), then warm-up Cases with a failure, then the rest.
pub fn plotted_cases(cases: &[CaseRow]) -> Vec<usize> {
    let of = |judged: bool, failed: bool| -> Vec<usize> {
        (0..cases.len())
            .filter(|&i| {
                let c = &cases[i];
                c.opened_ms.is_some()
                    && c.judged == judged
                    && c.actual_failure_ms.is_some() == failed
            })
            .collect()
    };
    let (true_alarms, false_alarms) = (of(true, true), of(true, false));
    let mut picked: Vec<usize> = true_alarms
        .iter()
        .take(MAX_TIMELINES * 2 / 3)
        .copied()
        .collect();
    for i in false_alarms
        .into_iter()
        .chain(true_alarms)
        .chain(of(false, true))
        .chain(of(false, false))
    {
        if picked.len() == MAX_TIMELINES {
            break;
        }
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    picked
}

/// One pass over the replayed readings, copying only those of a plotted
/// asset inside its window.
fn fill_readings(scenario: &Scenario, cases: &[CaseRow], timelines: &mut [Timeline]) {
    let asset_idx: BTreeMap<&str, usize> = scenario
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut by_asset: Vec<Vec<usize>> = vec![Vec::new(); scenario.names.len()];
    for (t, timeline) in timelines.iter().enumerate() {
        if let Some(&a) = asset_idx.get(cases[timeline.case_idx].asset.as_str()) {
            by_asset[a].push(t);
        }
    }
    for reading in &scenario.readings {
        let Some(wanted) = by_asset.get(reading.asset_idx) else {
            continue;
        };
        for &t in wanted {
            let timeline = &mut timelines[t];
            if !(timeline.from_ms..=timeline.to_ms).contains(&reading.ts_ms) {
                continue;
            }
            let mode = &cases[timeline.case_idx].mode;
            for (channel, (idx, _, _)) in timeline.channels.iter_mut().zip(signature_channels(mode))
            {
                let value = reading.values.get(idx).copied().flatten();
                channel
                    .points
                    .push((reading.ts_ms, value.unwrap_or(f64::NAN)));
            }
        }
    }
}

fn text<'a>(rec: &'a Value, field: &str) -> &'a str {
    rec.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// The `AI_Insight__c` scores of `assets`, by asset.
fn risk_points(emulator: &Emulator, assets: &[&str]) -> BTreeMap<String, Vec<RiskPoint>> {
    let mut out: BTreeMap<String, Vec<RiskPoint>> = BTreeMap::new();
    for rec in emulator.records("AI_Insight__c") {
        let Ok(src) = serde_json::from_str::<Value>(text(&rec, "Source_Record_Ids__c")) else {
            continue;
        };
        let Some((asset, mode)) = src["case_key"].as_str().and_then(case_asset_mode) else {
            continue;
        };
        if !assets.contains(&asset.as_str()) {
            continue;
        }
        let Some(ts_ms) = parse_sf_datetime(text(&rec, "Window_End__c")) else {
            continue;
        };
        let Ok(scores) = serde_json::from_str::<Value>(text(&rec, "Scores__c")) else {
            continue;
        };
        let Some(risk) = scores["risk"].as_f64() else {
            continue;
        };
        let change = text(&rec, "Outcome__c")
            .split_once(':')
            .map(|(_, what)| what.trim())
            .unwrap_or_default();
        out.entry(asset).or_default().push(RiskPoint {
            mode,
            ts_ms,
            risk,
            threshold: scores["threshold"].as_f64().unwrap_or(f64::NAN),
            rul_days: scores["rul_days"].as_f64(),
            change: change.to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(asset: &str, judged: bool, failure: Option<i64>, opened: i64) -> CaseRow {
        CaseRow {
            asset: asset.into(),
            mode: "bearing".into(),
            priority: "High".into(),
            status: "New".into(),
            opened: String::new(),
            predicted_failure: None,
            rul_days: None,
            actual_failure: None,
            judged,
            latency_ms: None,
            case_id: String::new(),
            asset_id: String::new(),
            opened_ms: Some(opened),
            actual_failure_ms: failure,
            asset_alerts: 1,
            ai_insights: 1,
        }
    }

    #[test]
    fn judged_cases_are_plotted_first_true_and_false_alarms_at_most_twelve() {
        let mut cases = vec![
            case("warm-up false alarm", false, None, 1),
            case("false alarm", true, None, 2),
            case("true alarm", true, Some(50), 3),
            CaseRow {
                opened_ms: None,
                ..case("no opening", true, Some(60), 0)
            },
            case("warm-up caught", false, Some(70), 4),
        ];
        assert_eq!(plotted_cases(&cases), [0, 1, 2, 4]);
        // 20 more true alarms and 20 more false alarms: 8 true alarms, then
        // false alarms fill the page; warm-up Cases wait.
        cases.extend((0..20).map(|i| case("t", true, Some(100 + i), 10 + i)));
        cases.extend((0..20).map(|i| case("f", true, None, 40 + i)));
        let plotted = plotted_cases(&cases);
        assert_eq!(plotted.len(), MAX_TIMELINES);
        let n_true = plotted
            .iter()
            .filter(|&&i| cases[i].actual_failure_ms.is_some())
            .count();
        assert_eq!(n_true, MAX_TIMELINES * 2 / 3);
        assert!(plotted.iter().all(|&i| cases[i].judged));
        assert!(plotted.windows(2).all(|w| w[0] < w[1]));
        // Few false alarms: true alarms fill the rest.
        cases.truncate(25);
        let plotted = plotted_cases(&cases);
        assert_eq!(plotted.len(), MAX_TIMELINES);
        assert_eq!(plotted.iter().filter(|&&i| !cases[i].judged).count(), 0);
        assert!(plotted_cases(&[]).is_empty());
    }
}
