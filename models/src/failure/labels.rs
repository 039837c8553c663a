//! Maintenance events from Work Order history, and the labels they imply.
//!
//! Input is the Salesforce seed fixture the simulator writes (and the shape a
//! SOQL export has): `records.Asset`, `records.WorkType`, `records.WorkOrder`
//! (and optionally `records.Product2`) with standard field names.
//!
//! Classifying a Work Order (there is no standard failure-code field):
//! - `Status` `Canceled`: ignored.
//! - Work Type `Corrective - <Mode>`: a failure of that mode.
//! - Work Type `Corrective` (or a Subject starting `[CODE]`): a failure whose
//!   mode comes from the `[CODE]` prefix when present, otherwise *unknown*;
//!   a Subject saying "no fault found" makes it not a failure.
//! - Work Type `Preventive Maintenance` (or `IsGeneratedFromMaintenancePlan`):
//!   preventive maintenance.
//! - Anything else (inspection, installation): kept as history, not a label.
//!
//! A failure happened at the earliest of the Work Order's `CreatedDate` and
//! `StartDate`; planned work (preventive, inspections) at its `StartDate`
//! (falling back to `CreatedDate`), since it is often created weeks ahead. Corrective Work Orders of one asset whose windows overlap (or
//! start within [`MERGE_GAP_MS`] of the previous one's end) are one failure:
//! a second dispatch for the same breakdown must not count twice. When the
//! first of them had no failure code and a later one has, the failure takes
//! that code, and [`Event::mode_known_ms`] records when it became known (the
//! later Work Order's start) so that features never use it earlier.
//!
//! # End of observation
//! Each asset has its own end of observation (see `dataset::Observation`):
//! the earliest of its decommission date (Asset `UsageEndDate`; a `Status`
//! of `Obsolete` without a date adds nothing, the asset's last reading
//! already bounds it), its last telemetry reading, and the optional global
//! "exported until" date of the Work Order export (`--observed-until`). A
//! failure after that end is not known to have happened or not.
//!
//! # Label rules
//! - **Failure within H** at row time `t`: labelled only when the whole
//!   window `(t, t + H]` lies at or before the end of observation
//!   (`t + H <= end`); otherwise [`Label::Excluded`] *whatever the outcome*.
//!   Keeping incomplete windows only when a failure falls in them (as this
//!   module once did) selects rows near the censor by their outcome and
//!   inflates the failure rate there.
//! - **RUL** (days to the next failure, capped at `cap`): the target is the
//!   capped value `min(RUL, cap)`, which is observed exactly when the window
//!   `(t, t + cap]` is complete, so a row is kept only when `t + cap <= end`;
//!   then its target is the time to the next failure in that window, or
//!   `cap` when there is none. Rows closer to the end than `cap` are dropped
//!   whether or not a failure was seen: keeping those with an observed
//!   failure would keep only short lives (a row near the censor can only
//!   show a failure if it is soon), biasing RUL down.
//! - A failure without a code inside a window makes a per-mode label
//!   [`Label::Excluded`] (it may have been that mode) but is a failure for the
//!   "any mode" label.
//! - Feedback false alarms (`feedback` module) never change a label: a
//!   negative row in the `H` before a false alarm of its mode is a *hard*
//!   negative and weighs [`FALSE_ALARM_WEIGHT`] in fitting.

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

/// Corrective Work Orders closer than this are the same breakdown.
pub const MERGE_GAP_MS: i64 = 24 * 3_600_000;

/// Milliseconds per day.
pub const DAY_MS: i64 = 86_400_000;

/// What a Work Order means for the models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A failure; `None` when no failure code could be found.
    Failure(Option<String>),
    /// Preventive maintenance.
    Preventive,
    /// Other work (inspection, installation, no fault found).
    Other,
}

/// Weight of a negative row in the horizon before a dispatcher's false
/// alarm (a hard negative: the model alarmed there and no fault was found).
pub const FALSE_ALARM_WEIGHT: f64 = 3.0;

/// One maintenance event of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it started (epoch ms).
    pub start_ms: i64,
    /// When the work ended (epoch ms, ≥ start).
    pub end_ms: i64,
    /// What it was.
    pub kind: EventKind,
    /// When the failure code of `kind` became known (epoch ms, ≥ start): the
    /// start of the Work Order that carried it. Features at `t` use the code
    /// only when this is before `t`.
    pub mode_known_ms: i64,
}

impl Event {
    /// An event whose code (if any) is known from its start.
    pub fn new(start_ms: i64, end_ms: i64, kind: EventKind) -> Self {
        Self {
            start_ms,
            end_ms: end_ms.max(start_ms),
            kind,
            mode_known_ms: start_ms,
        }
    }

    /// The failure mode as known at `t_ms` (`None` before its code was).
    pub fn mode_at(&self, t_ms: i64) -> Option<&str> {
        match &self.kind {
            EventKind::Failure(Some(m)) if self.mode_known_ms < t_ms => Some(m),
            _ => None,
        }
    }
}

/// A dispatcher's "not a problem" on an alarm (feedback export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalseAlarm {
    /// When the Case was closed as not a problem (epoch ms).
    pub at_ms: i64,
    /// Failure mode of the alarm; `None` = any.
    pub mode: Option<String>,
}

/// Everything known about one asset's maintenance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetHistory {
    /// Product name (Product2.Name, else ProductCode, else the Id).
    pub product: Option<String>,
    /// Install date (epoch ms).
    pub install_ms: Option<i64>,
    /// Failures (merged), in time order.
    pub failures: Vec<Event>,
    /// Preventive visits, in time order.
    pub preventive: Vec<Event>,
    /// Decommission date (Asset `UsageEndDate`), epoch ms.
    pub decommissioned_ms: Option<i64>,
    /// Dispatcher false alarms (feedback), in time order.
    pub false_alarms: Vec<FalseAlarm>,
}

/// Maintenance history of a fleet, keyed by Asset Name (the telemetry key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetHistory {
    /// Per asset name.
    pub assets: BTreeMap<String, AssetHistory>,
    /// Work Orders read.
    pub n_work_orders: usize,
    /// Work Orders ignored (canceled, or on an unknown asset).
    pub n_ignored: usize,
    /// Corrective Work Orders merged into an earlier failure.
    pub n_merged: usize,
    /// Failures without a failure code.
    pub n_unknown_mode: usize,
    /// Rows of the source rejected, by reason (CMMS CSV: `bad_date`,
    /// `unknown_type`, `missing_asset`, `field_count`).
    pub rejected: BTreeMap<String, usize>,
}

/// Why the history could not be read.
#[derive(Debug, Error)]
pub enum HistoryError {
    /// Not JSON.
    #[error("work order history is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Structure missing.
    #[error("work order history: {0}")]
    Shape(String),
}

/// Maps a failure code or Work Type suffix to a mode name.
pub fn mode_from_code(code: &str) -> String {
    match code.trim().to_ascii_uppercase().as_str() {
        "BRG" | "BEARING" => "bearing".into(),
        "FOUL" | "FOULING" => "fouling".into(),
        "ELEC" | "ELECTRICAL" => "electrical".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Parses Salesforce date/datetime text (`2026-01-01`,
/// `2026-01-01T06:30:00.000+0000`, `...Z`, `...+02:00`) to epoch ms.
pub fn parse_sf_datetime(text: &str) -> Option<i64> {
    let t = text.trim();
    let date = t.get(..10)?;
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let mut ms = days * DAY_MS;
    let rest = &t[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let hh: i64 = rest.get(0..2)?.parse().ok()?;
    let mm: i64 = rest.get(3..5)?.parse().ok()?;
    let mut idx = 5;
    let mut secs: f64 = 0.0;
    if rest.get(5..6) == Some(":") {
        let end = rest[6..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(rest.len(), |p| p + 6);
        secs = rest[6..end].parse().ok()?;
        idx = end;
    }
    ms += hh * 3_600_000 + mm * 60_000 + (secs * 1000.0).round() as i64;
    let tz = &rest[idx..];
    if tz.is_empty() || tz == "Z" {
        return Some(ms);
    }
    let sign = match tz.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = tz[1..].chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 4 {
        return None;
    }
    let off_h: i64 = digits[..2].parse().ok()?;
    let off_m: i64 = digits[2..].parse().ok()?;
    Some(ms - sign * (off_h * 3_600_000 + off_m * 60_000))
}

/// Epoch ms as ISO 8601 UTC text (`2026-01-01T06:00:00Z`).
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Converts the emulator's fixture shape (`{"objects": [{"type",
/// "records"}]}`, records named by `@ref` and linked by `"@name"` values)
/// into the `{"records": {Object: [...]}}` shape, using each `@ref` as `Id`.
fn emulator_fixture_to_records(objects: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for group in objects {
        let Some(object) = group.get("type").and_then(Value::as_str) else {
            continue;
        };
        let rows = group
            .get("records")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let converted: Vec<Value> = rows
            .iter()
            .filter_map(Value::as_object)
            .map(|rec| {
                let mut m = serde_json::Map::new();
                for (key, value) in rec {
                    if key == "@ref" {
                        m.insert("Id".into(), value.clone());
                    } else if let Some(target) = value.as_str().and_then(|v| v.strip_prefix('@')) {
                        m.insert(key.clone(), Value::String(target.to_string()));
                    } else {
                        m.insert(key.clone(), value.clone());
                    }
                }
                Value::Object(m)
            })
            .collect();
        let entry = out
            .entry(object.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.extend(converted);
        }
    }
    let mut root = serde_json::Map::new();
    root.insert("records".into(), Value::Object(out));
    Value::Object(root)
}

fn records<'a>(root: &'a Value, object: &str) -> &'a [Value] {
    root.get("records")
        .and_then(|r| r.get(object))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(rec: &'a Value, field: &str) -> Option<&'a str> {
    rec.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Classifies one Work Order from its Work Type name, Subject and flags.
pub fn classify(
    work_type: Option<&str>,
    subject: Option<&str>,
    generated_by_plan: bool,
) -> EventKind {
    let wt = work_type.unwrap_or("").trim();
    let subject = subject.unwrap_or("");
    let code = subject
        .trim_start()
        .strip_prefix('[')
        .and_then(|s| s.split_once(']'))
        .map(|(c, _)| c.to_string());
    let wt_lower = wt.to_ascii_lowercase();
    if generated_by_plan || wt_lower.starts_with("preventive") {
        return EventKind::Preventive;
    }
    let repair = ["replacement", "repair", "breakdown"]
        .iter()
        .any(|k| wt_lower.contains(k));
    if repair && !wt_lower.starts_with("corrective") {
        // Orgs often name corrective work types after the repair ("Bearing
        // replacement"): the mode is the part named.
        let mode = ["bearing", "foul", "electric", "motor", "winding"]
            .iter()
            .find(|k| wt_lower.contains(*k))
            .map(|k| match *k {
                "bearing" => "bearing".to_string(),
                "foul" => "fouling".to_string(),
                _ => "electrical".to_string(),
            });
        return EventKind::Failure(mode.or_else(|| code.as_deref().map(mode_from_code)));
    }
    if wt_lower.starts_with("corrective") || code.is_some() {
        if subject.to_ascii_lowercase().contains("no fault found") {
            return EventKind::Other;
        }
        let from_type = wt
            .split_once('-')
            .map(|(_, m)| m.trim())
            .filter(|m| !m.is_empty());
        let mode = from_type
            .map(mode_from_code)
            .or_else(|| code.as_deref().map(mode_from_code));
        return EventKind::Failure(mode);
    }
    EventKind::Other
}

impl FleetHistory {
    /// Reads the seed-fixture / export JSON.
    ///
    /// # Errors
    /// Not JSON, or no `records.Asset` / `records.WorkOrder` arrays.
    pub fn from_json(json: &str) -> Result<Self, HistoryError> {
        Self::from_value(&serde_json::from_str(json)?)
    }

    /// Reads a `fieldpulse sync work-orders` directory: `products.jsonl`,
    /// `assets.jsonl` and `work_orders.jsonl` (one flattened record per line,
    /// the Work Type name as the dotted key `WorkType.Name`).
    ///
    /// # Errors
    /// Unreadable files or lines that are not JSON.
    pub fn from_sync_dir(dir: &std::path::Path) -> Result<Self, HistoryError> {
        let mut objects = serde_json::Map::new();
        for (object, stem, required) in [
            ("Product2", "products", false),
            ("Asset", "assets", true),
            ("WorkOrder", "work_orders", true),
        ] {
            let path = dir.join(format!("{stem}.jsonl"));
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(HistoryError::Shape(format!("{}: {e}", path.display()))),
            };
            let rows = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<Vec<Value>, _>>()?;
            objects.insert(object.to_string(), Value::Array(rows));
        }
        let mut root = serde_json::Map::new();
        root.insert("records".into(), Value::Object(objects));
        Self::from_value(&Value::Object(root))
    }

    /// Reads already-parsed fixture / export JSON.
    ///
    /// # Errors
    /// No `records.WorkOrder` array.
    pub fn from_value(root: &Value) -> Result<Self, HistoryError> {
        if let Some(objects) = root.get("objects").and_then(Value::as_array) {
            return Self::from_value(&emulator_fixture_to_records(objects));
        }
        if root
            .get("records")
            .and_then(|r| r.get("WorkOrder"))
            .is_none()
        {
            return Err(HistoryError::Shape("no `records.WorkOrder` array".into()));
        }
        let products: BTreeMap<&str, &str> = records(root, "Product2")
            .iter()
            .filter_map(|p| {
                Some((
                    text(p, "Id")?,
                    text(p, "Name").or_else(|| text(p, "ProductCode"))?,
                ))
            })
            .collect();
        let work_types: BTreeMap<&str, &str> = records(root, "WorkType")
            .iter()
            .filter_map(|w| Some((text(w, "Id")?, text(w, "Name")?)))
            .collect();
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        let mut out = FleetHistory::default();
        for asset in records(root, "Asset") {
            let (Some(id), Some(name)) = (text(asset, "Id"), text(asset, "Name")) else {
                continue;
            };
            names.insert(id, name);
            let product = text(asset, "Product2Id")
                .map(|p| products.get(p).copied().unwrap_or(p).to_string());
            out.assets.insert(
                name.to_string(),
                AssetHistory {
                    product,
                    install_ms: text(asset, "InstallDate").and_then(parse_sf_datetime),
                    decommissioned_ms: text(asset, "UsageEndDate").and_then(parse_sf_datetime),
                    ..AssetHistory::default()
                },
            );
        }
        let mut raw: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for wo in records(root, "WorkOrder") {
            out.n_work_orders += 1;
            let asset = text(wo, "AssetId").and_then(|id| names.get(id));
            let canceled = text(wo, "Status").is_some_and(|s| s.eq_ignore_ascii_case("Canceled"));
            let created = text(wo, "CreatedDate").and_then(parse_sf_datetime);
            let started = text(wo, "StartDate").and_then(parse_sf_datetime);
            let work_type = text(wo, "WorkTypeId")
                .and_then(|id| work_types.get(id).copied())
                .or_else(|| text(wo, "WorkType.Name"));
            let generated = wo
                .get("IsGeneratedFromMaintenancePlan")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let kind = classify(work_type, text(wo, "Subject"), generated);
            // A breakdown is known from the moment it is reported; planned
            // work happens at its StartDate (it is often created weeks ahead).
            let start = match (&kind, created, started) {
                (EventKind::Failure(_), Some(c), Some(s)) => Some(c.min(s)),
                (_, c, s) => s.or(c),
            };
            let (Some(asset), false, Some(start_ms)) = (asset, canceled, start) else {
                out.n_ignored += 1;
                continue;
            };
            let end_ms = text(wo, "EndDate")
                .and_then(parse_sf_datetime)
                .unwrap_or(start_ms);
            raw.entry(asset.to_string())
                .or_default()
                .push(Event::new(start_ms, end_ms, kind));
        }
        out.add_events(raw);
        Ok(out)
    }

    /// Adds raw events per asset (any order): failures merged within
    /// [`MERGE_GAP_MS`], preventive visits kept, other work dropped; then
    /// recounts failures without a code.
    pub(crate) fn add_events(&mut self, raw: BTreeMap<String, Vec<Event>>) {
        let out = self;
        for (asset, mut events) in raw {
            events.sort_by_key(|e| (e.start_ms, e.end_ms));
            let hist = out.assets.entry(asset).or_default();
            for event in events {
                match &event.kind {
                    EventKind::Failure(mode) => {
                        if let Some(last) = hist.failures.last_mut() {
                            if event.start_ms <= last.end_ms + MERGE_GAP_MS {
                                last.end_ms = last.end_ms.max(event.end_ms);
                                if last.kind == EventKind::Failure(None) && mode.is_some() {
                                    // The code is known only from this later
                                    // Work Order on (no look-ahead in features).
                                    last.kind = event.kind.clone();
                                    last.mode_known_ms = event.mode_known_ms;
                                }
                                out.n_merged += 1;
                                continue;
                            }
                        }
                        hist.failures.push(event);
                    }
                    EventKind::Preventive => hist.preventive.push(event),
                    EventKind::Other => {}
                }
            }
        }
        out.n_unknown_mode = out
            .assets
            .values()
            .flat_map(|a| &a.failures)
            .filter(|f| f.kind == EventKind::Failure(None))
            .count();
    }

    /// Sorted distinct known failure modes.
    pub fn modes(&self) -> Vec<String> {
        let mut modes: Vec<String> = self
            .assets
            .values()
            .flat_map(|a| &a.failures)
            .filter_map(|f| match &f.kind {
                EventKind::Failure(Some(m)) => Some(m.clone()),
                _ => None,
            })
            .collect();
        modes.sort();
        modes.dedup();
        modes
    }

    /// Sorted distinct product names.
    pub fn products(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .assets
            .values()
            .filter_map(|a| a.product.clone())
            .collect();
        p.sort();
        p.dedup();
        p
    }
}

/// Outcome of a label for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The event happens within the horizon.
    Positive,
    /// The horizon was fully observed and the event did not happen.
    Negative,
    /// Unknown: the horizon runs past the end of observation, or an
    /// unlabelled failure makes the mode ambiguous.
    Excluded,
}

/// Label "failure of `mode` (any mode when `None`) within `horizon_ms`
/// after `t_ms`" for an asset observed until `end_ms` (module docs: a window
/// that runs past `end_ms` is excluded whatever happened in it).
pub fn failure_within(
    hist: &AssetHistory,
    t_ms: i64,
    horizon_ms: i64,
    mode: Option<&str>,
    end_ms: i64,
) -> Label {
    let window_end = t_ms + horizon_ms;
    if window_end > end_ms {
        return Label::Excluded;
    }
    let mut ambiguous = false;
    for f in &hist.failures {
        if f.start_ms <= t_ms {
            continue;
        }
        if f.start_ms > window_end {
            break;
        }
        match (&f.kind, mode) {
            (_, None) => return Label::Positive,
            (EventKind::Failure(Some(m)), Some(want)) if m == want => return Label::Positive,
            (EventKind::Failure(None), Some(_)) => ambiguous = true,
            _ => {}
        }
    }
    if ambiguous {
        Label::Excluded
    } else {
        Label::Negative
    }
}

/// Remaining useful life in days to the next failure (any mode), capped at
/// `cap_days`, for an asset observed until `end_ms`; `None` when the window
/// `(t, t + cap]` is not complete (module docs).
pub fn rul_days(hist: &AssetHistory, t_ms: i64, cap_days: f64, end_ms: i64) -> Option<f64> {
    let cap_ms = (cap_days * DAY_MS as f64) as i64;
    if t_ms + cap_ms > end_ms {
        return None;
    }
    let next = hist.failures.iter().find(|f| f.start_ms > t_ms);
    Some(match next {
        Some(f) if f.start_ms <= t_ms + cap_ms => {
            ((f.start_ms - t_ms) as f64 / DAY_MS as f64).min(cap_days)
        }
        _ => cap_days,
    })
}

/// Whether a row at `t_ms` for `mode` (`None` = any) with this horizon lies
/// in the horizon before a false alarm seen by `end_ms`: `at - H <= t <= at`.
pub fn before_false_alarm(
    hist: &AssetHistory,
    t_ms: i64,
    horizon_ms: i64,
    mode: Option<&str>,
    end_ms: i64,
) -> bool {
    hist.false_alarms
        .iter()
        .filter(|fa| fa.at_ms <= end_ms)
        .any(|fa| {
            let mode_matches = match (mode, fa.mode.as_deref()) {
                (None, _) | (_, None) => true,
                (Some(want), Some(m)) => want == m,
            };
            mode_matches && t_ms <= fa.at_ms && t_ms >= fa.at_ms - horizon_ms
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(work_orders: Vec<Value>) -> String {
        json!({"records": {
            "Product2": [{"Id": "01t1", "Name": "Pump"}],
            "WorkType": [
                {"Id": "08q1", "Name": "Corrective - Bearing"},
                {"Id": "08q2", "Name": "Corrective"},
                {"Id": "08q3", "Name": "Preventive Maintenance"},
                {"Id": "08q4", "Name": "Installation"}
            ],
            "Asset": [{"Id": "02i1", "Name": "pump-0001", "Product2Id": "01t1", "InstallDate": "2025-06-01"}],
            "WorkOrder": work_orders
        }})
        .to_string()
    }

    fn wo(wt: &str, subject: &str, created: &str, end: &str, status: &str) -> Value {
        json!({"AssetId": "02i1", "WorkTypeId": wt, "Subject": subject, "Status": status,
               "CreatedDate": created, "StartDate": created, "EndDate": end})
    }

    #[test]
    fn a_sync_directory_of_json_lines_reads_like_the_fixture() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("assets.jsonl"),
            "{\"Id\":\"02i1\",\"Name\":\"pump-0001\",\"InstallDate\":\"2025-06-01\"}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("work_orders.jsonl"),
            "{\"Id\":\"0WO1\",\"AssetId\":\"02i1\",\"WorkType.Name\":\"Corrective - Electrical\",\"Status\":\"Completed\",\"CreatedDate\":\"2026-02-01T10:00:00.000+0000\"}\n",
        )
        .expect("write");
        let h = FleetHistory::from_sync_dir(dir.path()).expect("history");
        assert_eq!(
            h.assets["pump-0001"].failures[0].kind,
            EventKind::Failure(Some("electrical".into()))
        );
        assert!(FleetHistory::from_sync_dir(&dir.path().join("missing")).is_err());
    }

    /// Reads the emulator's own demo fixture (`@ref` links, a repair-named
    /// Work Type, plan-generated inspections).
    #[test]
    fn the_emulator_demo_fixture_reads_with_its_bearing_replacement_as_a_failure() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/sf-emulator/fixtures/demo-org.json");
        let text = std::fs::read_to_string(&path).expect("demo fixture");
        let h = FleetHistory::from_json(&text).expect("history");
        let p104 = &h.assets["Pump P-104"];
        assert_eq!(p104.failures.len(), 1);
        assert_eq!(
            p104.failures[0].kind,
            EventKind::Failure(Some("bearing".into()))
        );
        assert_eq!(p104.preventive.len(), 1, "plan-generated inspection");
        assert_eq!(p104.product.as_deref(), Some("Centrifugal pump CP-200"));
    }

    #[test]
    fn salesforce_datetimes_parse_with_offsets() {
        assert_eq!(parse_sf_datetime("1970-01-02"), Some(DAY_MS));
        assert_eq!(
            parse_sf_datetime("1970-01-01T01:00:00.000+0000"),
            Some(3_600_000)
        );
        assert_eq!(parse_sf_datetime("1970-01-01T01:00:00Z"), Some(3_600_000));
        assert_eq!(
            parse_sf_datetime("1970-01-01T03:00:00+02:00"),
            Some(3_600_000)
        );
        assert_eq!(parse_sf_datetime("yesterday"), None);
        let t = parse_sf_datetime("2026-03-01T06:07:08Z").expect("date");
        assert_eq!(format_ms(t), "2026-03-01T06:07:08Z");
    }

    #[test]
    fn overlapping_corrective_work_orders_are_one_failure() {
        let text = fixture(vec![
            wo(
                "08q1",
                "[BRG] Bearing failure",
                "2026-02-01T10:00:00.000+0000",
                "2026-02-02T10:00:00.000+0000",
                "Completed",
            ),
            wo(
                "08q1",
                "[BRG] parts visit",
                "2026-02-01T15:00:00.000+0000",
                "2026-02-02T08:00:00.000+0000",
                "Closed",
            ),
            wo(
                "08q1",
                "[BRG] Bearing failure",
                "2026-04-01T10:00:00.000+0000",
                "2026-04-01T20:00:00.000+0000",
                "Completed",
            ),
        ]);
        let h = FleetHistory::from_json(&text).expect("history");
        let a = &h.assets["pump-0001"];
        assert_eq!(a.failures.len(), 2);
        assert_eq!(h.n_merged, 1);
        assert_eq!(
            a.failures[0].kind,
            EventKind::Failure(Some("bearing".into()))
        );
        assert_eq!(a.product.as_deref(), Some("Pump"));
    }

    #[test]
    fn missing_failure_codes_canceled_and_no_fault_found_orders_are_handled() {
        let text = fixture(vec![
            wo(
                "08q2",
                "Breakdown repair",
                "2026-02-01T10:00:00.000+0000",
                "2026-02-01T12:00:00.000+0000",
                "Completed",
            ),
            wo(
                "08q2",
                "[ELEC] trip",
                "2026-03-01T10:00:00.000+0000",
                "2026-03-01T12:00:00.000+0000",
                "Canceled",
            ),
            wo(
                "08q2",
                "Noise complaint - no fault found",
                "2026-03-05T10:00:00.000+0000",
                "2026-03-05T11:00:00.000+0000",
                "Closed",
            ),
            wo(
                "08q2",
                "[FOUL] clogged",
                "2026-03-10T10:00:00.000+0000",
                "2026-03-10T12:00:00.000+0000",
                "Completed",
            ),
            json!({"AssetId": "02iUNKNOWN", "WorkTypeId": "08q1", "CreatedDate": "2026-03-01"}),
        ]);
        let h = FleetHistory::from_json(&text).expect("history");
        let a = &h.assets["pump-0001"];
        assert_eq!(a.failures.len(), 2);
        assert_eq!(a.failures[0].kind, EventKind::Failure(None));
        assert_eq!(
            a.failures[1].kind,
            EventKind::Failure(Some("fouling".into()))
        );
        assert_eq!(h.n_ignored, 2);
        assert_eq!(h.n_unknown_mode, 1);
        assert_eq!(h.modes(), vec!["fouling".to_string()]);
        // An uncoded failure inside the horizon makes a per-mode label unknown,
        // but it is a failure for the "any mode" label.
        let t = parse_sf_datetime("2026-01-30").expect("date");
        let censor = parse_sf_datetime("2026-12-31").expect("date");
        assert_eq!(
            failure_within(a, t, 7 * DAY_MS, Some("fouling"), censor),
            Label::Excluded
        );
        assert_eq!(
            failure_within(a, t, 7 * DAY_MS, None, censor),
            Label::Positive
        );
    }

    #[test]
    fn work_orders_before_the_first_reading_count_as_history_only() {
        let text = fixture(vec![
            wo(
                "08q4",
                "Commissioning",
                "2025-06-01T08:00:00.000+0000",
                "2025-06-01T16:00:00.000+0000",
                "Completed",
            ),
            wo(
                "08q3",
                "PM",
                "2025-12-01T08:00:00.000+0000",
                "2025-12-01T11:00:00.000+0000",
                "Completed",
            ),
            wo(
                "08q1",
                "[BRG] old failure",
                "2025-11-01T08:00:00.000+0000",
                "2025-11-02T08:00:00.000+0000",
                "Completed",
            ),
        ]);
        let h = FleetHistory::from_json(&text).expect("history");
        let a = &h.assets["pump-0001"];
        assert_eq!(a.preventive.len(), 1);
        assert_eq!(
            a.preventive[0].start_ms,
            parse_sf_datetime("2025-12-01T08:00:00Z").expect("date")
        );
        assert_eq!(a.install_ms, parse_sf_datetime("2025-06-01"));
        // Telemetry starts 2026-01-01: the old failure never labels a row after it.
        let t = parse_sf_datetime("2026-01-01").expect("date");
        let censor = parse_sf_datetime("2026-06-01").expect("date");
        assert_eq!(
            failure_within(a, t, 30 * DAY_MS, None, censor),
            Label::Negative
        );
    }

    #[test]
    fn planned_work_counts_from_its_start_and_breakdowns_from_their_report() {
        let mut pm = wo(
            "08q3",
            "PM",
            "2026-03-01T08:00:00Z",
            "2026-03-11T11:00:00Z",
            "Completed",
        );
        pm["StartDate"] = json!("2026-03-11T08:00:00Z");
        let mut breakdown = wo(
            "08q1",
            "[BRG] x",
            "2026-04-01T08:00:00Z",
            "2026-04-02T08:00:00Z",
            "Completed",
        );
        breakdown["StartDate"] = json!("2026-04-01T12:00:00Z");
        let h = FleetHistory::from_json(&fixture(vec![pm, breakdown])).expect("history");
        let a = &h.assets["pump-0001"];
        assert_eq!(
            a.preventive[0].start_ms,
            parse_sf_datetime("2026-03-11T08:00:00Z").expect("date")
        );
        assert_eq!(
            a.failures[0].start_ms,
            parse_sf_datetime("2026-04-01T08:00:00Z").expect("date")
        );
    }

    #[test]
    fn labels_are_censored_at_the_end_of_observation() {
        let text = fixture(vec![wo(
            "08q1",
            "[BRG] x",
            "2026-03-01T00:00:00.000+0000",
            "2026-03-02T00:00:00.000+0000",
            "Completed",
        )]);
        let h = FleetHistory::from_json(&text).expect("history");
        let a = &h.assets["pump-0001"];
        let fail = parse_sf_datetime("2026-03-01").expect("date");
        let t = fail - 10 * DAY_MS;
        assert_eq!(
            failure_within(a, t, 14 * DAY_MS, Some("bearing"), fail + 4 * DAY_MS),
            Label::Positive
        );
        // The window runs one day past the end of observation: excluded even
        // though the failure is inside it (keeping it only because it is
        // positive is the censoring bias).
        assert_eq!(
            failure_within(a, t, 14 * DAY_MS, Some("bearing"), fail + 3 * DAY_MS),
            Label::Excluded
        );
        assert_eq!(
            failure_within(a, t, 14 * DAY_MS, Some("bearing"), fail - DAY_MS),
            Label::Excluded
        );
        assert_eq!(
            failure_within(a, t, 7 * DAY_MS, Some("bearing"), fail + DAY_MS),
            Label::Negative
        );
        // RUL: kept only when (t, t + cap] is observed; then the capped value.
        assert_eq!(rul_days(a, t, 30.0, fail + 20 * DAY_MS), Some(10.0));
        assert_eq!(
            rul_days(a, t, 30.0, fail + 19 * DAY_MS),
            None,
            "short life near the end"
        );
        assert_eq!(rul_days(a, t, 30.0, fail - DAY_MS), None);
        assert_eq!(
            rul_days(a, t - 60 * DAY_MS, 30.0, fail - DAY_MS),
            Some(30.0)
        );
    }

    /// Rows are kept or dropped by the end of observation alone, never by
    /// their outcome: near the end, positives and negatives go alike.
    #[test]
    fn whether_a_row_is_labelled_does_not_depend_on_its_outcome() {
        let text = fixture(vec![wo(
            "08q1",
            "[BRG] x",
            "2026-03-01T00:00:00.000+0000",
            "2026-03-02T00:00:00.000+0000",
            "Completed",
        )]);
        let failed = FleetHistory::from_json(&text).expect("history");
        let healthy = FleetHistory::from_json(&fixture(vec![])).expect("history");
        let end = parse_sf_datetime("2026-03-10").expect("date");
        for day in 0..60 {
            let t = end - day * DAY_MS;
            for horizon in [7, 14, 30] {
                let h = horizon * DAY_MS;
                let a = failure_within(&failed.assets["pump-0001"], t, h, None, end);
                let b = failure_within(&healthy.assets["pump-0001"], t, h, None, end);
                assert_eq!(
                    a == Label::Excluded,
                    b == Label::Excluded,
                    "t = end - {day}d, H = {horizon}d"
                );
            }
            let a = rul_days(&failed.assets["pump-0001"], t, 30.0, end);
            let b = rul_days(&healthy.assets["pump-0001"], t, 30.0, end);
            assert_eq!(a.is_some(), b.is_some(), "RUL at end - {day}d");
        }
    }

    #[test]
    fn the_usage_end_date_of_an_asset_is_its_decommission_date() {
        let mut root: Value = serde_json::from_str(&fixture(vec![])).expect("json");
        root["records"]["Asset"][0]["UsageEndDate"] = json!("2026-05-01");
        root["records"]["Asset"][0]["Status"] = json!("Obsolete");
        let h = FleetHistory::from_value(&root).expect("history");
        assert_eq!(
            h.assets["pump-0001"].decommissioned_ms,
            parse_sf_datetime("2026-05-01")
        );
    }

    #[test]
    fn a_code_from_a_merged_later_work_order_is_known_only_from_its_start() {
        let text = fixture(vec![
            wo(
                "08q2",
                "Breakdown",
                "2026-02-01T10:00:00Z",
                "2026-02-01T20:00:00Z",
                "Completed",
            ),
            wo(
                "08q2",
                "[BRG] parts",
                "2026-02-02T08:00:00Z",
                "2026-02-02T12:00:00Z",
                "Completed",
            ),
        ]);
        let h = FleetHistory::from_json(&text).expect("history");
        let f = &h.assets["pump-0001"].failures[0];
        let coded = parse_sf_datetime("2026-02-02T08:00:00Z").expect("date");
        assert_eq!(f.kind, EventKind::Failure(Some("bearing".into())));
        assert_eq!(f.mode_known_ms, coded);
        assert_eq!(f.mode_at(coded), None);
        assert_eq!(f.mode_at(coded + 1), Some("bearing"));
    }
}
