//! Dispatcher feedback as extra labels (feature `train`).
//!
//! Reads what `fieldpulse feedback export` writes — CSV with the header
//! `asset,mode,label,at,at_ms,source_object,source_id,failure_code,detail`,
//! or a JSON array of objects with those keys (`at` is optional there) — and
//! applies it to a [`FleetHistory`]:
//!
//! - `failure` (a completed Work Order with a failure code): a failure of
//!   that mode at `at_ms`, unless the history already has a failure of the
//!   asset within [`MERGE_GAP_MS`] of it (then it is the same breakdown:
//!   counted as already known, and it gives its code to an uncoded one, known
//!   from `at_ms`).
//! - `false_alarm` (a fieldpulse Case closed as not a problem): recorded on
//!   the asset. It never turns a label: rows whose window is complete and
//!   holds no failure are negatives anyway, and a failure that happened after
//!   all stays a failure. It makes the negative rows in the horizon before it
//!   (`at - H <= t <= at`, same mode or any) hard negatives weighing
//!   [`FALSE_ALARM_WEIGHT`](super::labels::FALSE_ALARM_WEIGHT) in fitting,
//!   since the model alarmed there and someone checked.
//! - Labels on an asset the Work Order history does not name are counted as
//!   `unknown_asset` and not applied: feedback must not make an asset missing
//!   from the export look like a fully observed one.
//!
//! Rows that cannot be read (no asset, no time, another label) are counted
//! by reason (`bad_row`, `bad_time`, `unknown_label`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::cmms_csv::parse_csv;
use super::labels::{
    mode_from_code, parse_sf_datetime, Event, EventKind, FalseAlarm, FleetHistory, MERGE_GAP_MS,
};

/// What a feedback label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackKind {
    /// A confirmed failure.
    Failure,
    /// An alarm a dispatcher found to be no problem.
    FalseAlarm,
}

/// One feedback label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackLabel {
    /// Asset name.
    pub asset: String,
    /// Failure mode, when known.
    pub mode: Option<String>,
    /// What it says.
    pub kind: FeedbackKind,
    /// When (epoch ms).
    pub at_ms: i64,
}

/// A feedback file read: labels and the rows that could not be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackFile {
    /// Labels, in file order.
    pub labels: Vec<FeedbackLabel>,
    /// Unreadable rows by reason.
    pub rejected: BTreeMap<String, usize>,
}

/// What applying feedback did (train summary and model card).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FeedbackSummary {
    /// Labels read.
    pub n_labels: usize,
    /// Failures added to the history.
    pub failures_added: usize,
    /// Failures the Work Order history already had (same breakdown).
    pub failures_already_known: usize,
    /// Of those, uncoded failures that got their code from feedback.
    pub failures_coded: usize,
    /// False alarms recorded (hard negatives before them).
    pub false_alarms_applied: usize,
    /// Labels on assets the Work Order history does not name (not applied).
    pub unknown_asset: usize,
    /// Unreadable rows by reason.
    pub rejected: BTreeMap<String, usize>,
}

/// Why a feedback file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// Unreadable file.
    #[error("reading {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither the CSV nor the JSON layout of `feedback export`.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl FeedbackFile {
    /// Reads a `feedback export` file (CSV or JSON, by its first character).
    ///
    /// # Errors
    /// Unreadable file, JSON that is not an array of objects, or a CSV
    /// header without `asset`, `label` and `at_ms` or `at`.
    pub fn read(path: &Path) -> Result<Self, FeedbackError> {
        let text = std::fs::read_to_string(path).map_err(|source| FeedbackError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| FeedbackError::Format {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses file text; the error is the message.
    ///
    /// # Errors
    /// As [`FeedbackFile::read`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let rows: Vec<BTreeMap<String, String>> = if text.trim_start().starts_with('[') {
            let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
            let items = value.as_array().ok_or("not a JSON array")?;
            items
                .iter()
                .map(|item| {
                    let obj = item.as_object().ok_or("array items must be objects")?;
                    Ok(obj
                        .iter()
                        .filter_map(|(k, v)| {
                            let v = match v {
                                Value::String(s) => s.clone(),
                                Value::Number(n) => n.to_string(),
                                _ => return None,
                            };
                            Some((k.clone(), v))
                        })
                        .collect())
                })
                .collect::<Result<_, &str>>()?
        } else {
            let mut records = parse_csv(text, b',').into_iter();
            let header = records.next().unwrap_or_default();
            let has = |k: &str| header.iter().any(|h| h.trim() == k);
            if !(has("asset") && has("label") && (has("at_ms") || has("at"))) {
                return Err(
                    "CSV header must name `asset`, `label` and `at_ms` (or `at`): is this a \
                     `fieldpulse feedback export` file?"
                        .into(),
                );
            }
            records
                .map(|rec| {
                    header
                        .iter()
                        .map(|h| h.trim().to_string())
                        .zip(rec)
                        .collect()
                })
                .collect()
        };
        let mut out = FeedbackFile::default();
        for row in rows {
            let get = |k: &str| row.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
            let Some(asset) = get("asset") else {
                *out.rejected.entry("bad_row".into()).or_default() += 1;
                continue;
            };
            let at_ms = get("at_ms")
                .and_then(|v| v.parse::<i64>().ok())
                .or_else(|| get("at").and_then(parse_sf_datetime));
            let Some(at_ms) = at_ms else {
                *out.rejected.entry("bad_time".into()).or_default() += 1;
                continue;
            };
            let kind = match get("label") {
                Some("failure") => FeedbackKind::Failure,
                Some("false_alarm") => FeedbackKind::FalseAlarm,
                _ => {
                    *out.rejected.entry("unknown_label".into()).or_default() += 1;
                    continue;
                }
            };
            out.labels.push(FeedbackLabel {
                asset: asset.to_string(),
                mode: get("mode")
                    .or_else(|| get("failure_code"))
                    .map(mode_from_code),
                kind,
                at_ms,
            });
        }
        Ok(out)
    }
}

impl FleetHistory {
    /// Applies feedback labels (module docs) and says what they did.
    pub fn apply_feedback(&mut self, feedback: &FeedbackFile) -> FeedbackSummary {
        let mut summary = FeedbackSummary {
            n_labels: feedback.labels.len(),
            rejected: feedback.rejected.clone(),
            ..FeedbackSummary::default()
        };
        for label in &feedback.labels {
            let Some(hist) = self.assets.get_mut(&label.asset) else {
                summary.unknown_asset += 1;
                continue;
            };
            let at = label.at_ms;
            match label.kind {
                FeedbackKind::Failure => {
                    let same = hist
                        .failures
                        .iter_mut()
                        .find(|f| at >= f.start_ms - MERGE_GAP_MS && at <= f.end_ms + MERGE_GAP_MS);
                    match same {
                        Some(f) => {
                            summary.failures_already_known += 1;
                            if f.kind == EventKind::Failure(None) && label.mode.is_some() {
                                f.kind = EventKind::Failure(label.mode.clone());
                                f.mode_known_ms = at.max(f.start_ms);
                                summary.failures_coded += 1;
                            }
                        }
                        None => {
                            let pos = hist.failures.partition_point(|f| f.start_ms <= at);
                            hist.failures.insert(
                                pos,
                                Event::new(at, at, EventKind::Failure(label.mode.clone())),
                            );
                            summary.failures_added += 1;
                        }
                    }
                }
                FeedbackKind::FalseAlarm => {
                    let pos = hist.false_alarms.partition_point(|f| f.at_ms <= at);
                    hist.false_alarms.insert(
                        pos,
                        FalseAlarm {
                            at_ms: at,
                            mode: label.mode.clone(),
                        },
                    );
                    summary.false_alarms_applied += 1;
                }
            }
        }
        self.n_unknown_mode = self
            .assets
            .values()
            .flat_map(|a| &a.failures)
            .filter(|f| f.kind == EventKind::Failure(None))
            .count();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::labels::{AssetHistory, DAY_MS};

    fn history() -> FleetHistory {
        let mut h = FleetHistory::default();
        let mut a = AssetHistory::default();
        a.failures.push(Event::new(
            10 * DAY_MS,
            11 * DAY_MS,
            EventKind::Failure(None),
        ));
        h.assets.insert("pump-1".into(), a);
        h.n_unknown_mode = 1;
        h
    }

    #[test]
    fn the_csv_export_applies_failures_false_alarms_and_counts_the_rest() {
        let csv = "asset,mode,label,at,at_ms,source_object,source_id,failure_code,detail\n\
            pump-1,bearing,failure,1970-01-11T12:00:00Z,907200000,WorkOrder,0WO1,bearing,\"[BRG] noisy, hot\"\n\
            pump-1,,failure,1970-01-31T00:00:00Z,,WorkOrder,0WO2,ELEC,\n\
            pump-1,fouling,false_alarm,1970-01-21T00:00:00Z,1728000000,Case,500x,,Closed - Not a Problem\n\
            pump-9,fouling,false_alarm,1970-01-21T00:00:00Z,1728000000,Case,500y,,\n\
            pump-1,,maybe,,1,Case,500z,,\n\
            pump-1,,failure,,,WorkOrder,0WO3,,\n";
        let file = FeedbackFile::parse(csv).expect("feedback");
        let mut h = history();
        let s = h.apply_feedback(&file);
        assert_eq!(s.n_labels, 4);
        assert_eq!(s.failures_already_known, 1);
        assert_eq!(s.failures_coded, 1);
        assert_eq!(s.failures_added, 1);
        assert_eq!(s.false_alarms_applied, 1);
        assert_eq!(s.unknown_asset, 1);
        assert_eq!(s.rejected.get("unknown_label"), Some(&1));
        assert_eq!(s.rejected.get("bad_time"), Some(&1));
        let a = &h.assets["pump-1"];
        assert_eq!(a.failures.len(), 2);
        assert_eq!(
            a.failures[0].kind,
            EventKind::Failure(Some("bearing".into()))
        );
        assert_eq!(
            a.failures[0].mode_known_ms, 907_200_000,
            "known from the feedback on"
        );
        assert_eq!(a.failures[1].start_ms, 30 * DAY_MS);
        assert_eq!(
            a.failures[1].kind,
            EventKind::Failure(Some("electrical".into()))
        );
        assert_eq!(a.false_alarms[0].mode.as_deref(), Some("fouling"));
        assert_eq!(h.n_unknown_mode, 0);
        assert!(!h.assets.contains_key("pump-9"));
    }

    #[test]
    fn the_json_export_reads_like_the_csv() {
        let json = r#"[{"asset":"pump-1","mode":null,"label":"false_alarm","at_ms":1728000000,
            "source_object":"Case","source_id":"500x","failure_code":null,"detail":null}]"#;
        let file = FeedbackFile::parse(json).expect("feedback");
        assert_eq!(
            file.labels,
            vec![FeedbackLabel {
                asset: "pump-1".into(),
                mode: None,
                kind: FeedbackKind::FalseAlarm,
                at_ms: 20 * DAY_MS,
            }]
        );
        assert!(FeedbackFile::parse("time,value\n1,2\n").is_err());
        assert!(FeedbackFile::parse("[1]").is_err());
    }
}
