//! Episode changes → Salesforce records, written for a dispatcher.
//!
//! One [`EpisodeChange`] (an episode opened, escalated, updated, suppressed or
//! closed) becomes the upserts the rollout mode allows:
//!
//! | rollout | Case | Asset_Alert__c | Asset health | AI_Insight__c |
//! |---|---|---|---|---|
//! | `observe` | – | – | – | ✓ |
//! | `review` | ✓ (status awaiting acceptance) | ✓ | ✓ | ✓ |
//! | `act` | ✓ (ready for dispatch) | ✓ | ✓ | ✓ |
//!
//! Every record carries `FieldPulse_Key__c` (so a retry or a replay upserts,
//! never duplicates), `AI_Generated__c = true` and `FieldPulse_Trace_Id__c`,
//! the key of the `AI_Insight__c` that explains it.
//!
//! A failure-model change carries the model's top feature contributions
//! ([`RiskExplanation`], exact TreeSHAP, computed when the change is built,
//! never per reading): the Case description and the audit record's
//! `Explanation__c` list them as "vibration RMS 3.1σ above this asset's
//! normal, +0.21 to the risk (+1.35 log-odds)", and `Scores__c` holds them as
//! JSON under `explanation`.

use fieldpulse_models::failure::explain::{Explanation, METHOD};
use serde_json::{json, Map, Value};

use crate::config::Rollout;
use crate::directory::{AssetInfo, PastWorkOrder};
use crate::episodes::{Priority, PriorityDecision};
use crate::outbox::Action;

/// Case status for `review` rollout: a person must accept the Case first.
pub const REVIEW_CASE_STATUS: &str = "Pending Review";
/// Case status for `act` rollout.
pub const ACT_CASE_STATUS: &str = "New";
/// Case `Description` length limit (textarea, 32,000 characters).
pub const CASE_DESCRIPTION_MAX_CHARS: usize = 32_000;
/// Feature contributions listed per change.
pub const EXPLANATION_TOP: usize = 4;

/// Why the failure model rated an evaluation as it did.
#[derive(Debug, Clone, PartialEq)]
pub enum RiskExplanation {
    /// The largest feature contributions ([`EXPLANATION_TOP`]).
    Computed(Explanation),
    /// The model could not explain it (e.g. an artifact without node
    /// covers); why, in words.
    Unavailable(String),
}

/// What happened to an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// It opened (a new problem).
    Opened,
    /// Its risk rose into a higher priority band.
    Escalated,
    /// New evidence, same band.
    Updated,
    /// A Work Order for it is open: quiet until it completes.
    Suppressed,
    /// It closed: risk receded, the Work Order completed, or the dispatcher dismissed it.
    Closed,
}

impl ChangeKind {
    /// Lowercase name, used in keys and the audit record.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Escalated => "escalated",
            ChangeKind::Updated => "updated",
            ChangeKind::Suppressed => "suppressed",
            ChangeKind::Closed => "closed",
        }
    }
}

/// One sensor's distance from the asset's own normal.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorEvidence {
    /// Sensor name.
    pub sensor: String,
    /// Robust z-score against this asset's running median/MAD.
    pub z: f64,
    /// Latest value.
    pub value: f64,
}

/// Where the evidence came from in the ingest log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRange {
    /// Gateway id.
    pub gateway: String,
    /// Spool epoch.
    pub epoch: u64,
    /// First and last batch seq that contributed.
    pub seqs: (u64, u64),
    /// Ingest log offsets.
    pub offsets: (u64, u64),
}

/// Everything needed to write the records for one episode change.
#[derive(Debug, Clone)]
pub struct EpisodeChange {
    /// Asset name (telemetry key).
    pub asset: String,
    /// Salesforce facts about it, when the org knows it.
    pub info: Option<AssetInfo>,
    /// Failure mode, or `anomaly`.
    pub mode: String,
    /// True for a failure-model episode, false for an anomaly episode.
    pub predictive: bool,
    /// What happened.
    pub kind: ChangeKind,
    /// Why it closed, in words (for `Closed`).
    pub reason: Option<String>,
    /// Episode number of this (asset, mode).
    pub number: u64,
    /// Change number within the episode (makes the audit key unique).
    pub change_no: u64,
    /// The Case's key: one per (asset, mode, Case generation); a new Case only
    /// once the previous one was closed in Salesforce.
    pub case_key: String,
    /// The `Asset_Alert__c` key: one alert per Case, updated as episodes come and go.
    pub alert_key: String,
    /// Risk (probability of failure within the horizon, or anomaly score).
    pub risk: f64,
    /// Threshold the risk is judged against.
    pub threshold: f64,
    /// Horizon of the probability, days (predictive only).
    pub horizon_days: Option<f64>,
    /// Predicted remaining useful life, days.
    pub rul_days: Option<f64>,
    /// Asset time of the evaluation (ms).
    pub ts_ms: i64,
    /// First reading of the episode (ms).
    pub opened_ms: i64,
    /// Priority and its inputs.
    pub priority: PriorityDecision,
    /// Sensors furthest from normal, largest first.
    pub evidence: Vec<SensorEvidence>,
    /// The failure model's feature contributions for the evaluation behind
    /// this change; `None` when no model evaluation is behind it (anomaly
    /// episodes, Work Order events, suppressions and closings).
    pub explanation: Option<RiskExplanation>,
    /// Similar past repairs on the same product.
    pub similar: Vec<PastWorkOrder>,
    /// Model name and version.
    pub model: (String, String),
    /// Source readings.
    pub source: SourceRange,
    /// Rollout mode for this asset's product.
    pub rollout: Rollout,
    /// When the triggering batch was appended to the ingest log (wall ms).
    pub appended_ms: i64,
    /// Flapping (opened and closed repeatedly): the Case stays one.
    pub flapping: bool,
}

/// A name (asset id, failure mode, product) as part of a record key.
///
/// Keys go into upsert URLs and allow only `[A-Za-z0-9_:-]`, while asset ids
/// come from gateways and may hold anything. ASCII letters, digits and `-`
/// stay; every other byte becomes `_` and two hex digits, so distinct names
/// give distinct keys and [`key_part_decode`] gets the name back. A name
/// whose encoding would pass 96 characters keeps its first 64 and ends with
/// `_h` and a SHA-256 prefix (distinct still, not reversible).
pub fn key_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    if out.len() > 96 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let mut cut = 64;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("_h");
        out.push_str(&hex);
    }
    out
}

/// The name [`key_part`] encoded, or `None` for a hashed or malformed part.
pub fn key_part_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `2026-12-03T14:00:00.000Z`.
pub fn sf_datetime(ms: i64) -> String {
    fieldpulse_models::failure::labels::format_ms(ms)
}

fn sf_date(ms: i64) -> String {
    sf_datetime(ms).chars().take(10).collect()
}

fn mode_words(mode: &str) -> String {
    match mode {
        "bearing" => "bearing wear".into(),
        "fouling" => "fouling / blockage".into(),
        "electrical" => "electrical fault".into(),
        "anomaly" => "abnormal sensor behaviour".into(),
        other => other.replace('_', " "),
    }
}

/// Case Priority picklist value (standard orgs have High/Medium/Low; Critical
/// is High plus `IsEscalated`).
fn case_priority(p: Priority) -> &'static str {
    match p {
        Priority::Critical | Priority::High => "High",
        Priority::Medium => "Medium",
        Priority::Low => "Low",
    }
}

/// The AI markers every record carries (its key travels as the outbox `ext_key`).
fn stamp(fields: &mut Map<String, Value>, trace: &str) {
    fields.insert("AI_Generated__c".into(), json!(true));
    fields.insert("FieldPulse_Trace_Id__c".into(), json!(trace));
}

impl EpisodeChange {
    /// The trace id every record of this change carries (`FieldPulse_Trace_Id__c`,
    /// Text(64)): a digest of the insight key, the same on the `AI_Insight__c`.
    pub fn trace_id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.insight_key().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("fp-{hex}")
    }

    /// Key of this change's `AI_Insight__c`.
    pub fn insight_key(&self) -> String {
        format!(
            "fp-insight:{}:{}:{}:{}",
            key_part(&self.asset),
            key_part(&self.mode),
            self.number,
            self.change_no
        )
    }

    fn predicted_date_ms(&self) -> Option<i64> {
        self.rul_days
            .filter(|d| d.is_finite())
            .map(|d| self.ts_ms + (d * 86_400_000.0) as i64)
    }

    /// Case subject: asset, problem, priority, in one line.
    pub fn subject(&self) -> String {
        let site = self
            .info
            .as_ref()
            .and_then(|i| i.account.clone())
            .map(|a| format!(" at {a}"))
            .unwrap_or_default();
        let what = mode_words(&self.mode);
        let when = match self.predicted_date_ms() {
            Some(ms) if self.predictive => format!(", failure expected around {}", sf_date(ms)),
            _ => String::new(),
        };
        let mut s = format!("{}{}: {}{}", self.asset, site, what, when);
        s.truncate(255);
        s
    }

    /// Case description a dispatcher can act on without another tool.
    pub fn description(&self) -> String {
        let mut d = String::new();
        let info = self.info.as_ref();
        d.push_str(&format!("Asset: {}", self.asset));
        if let Some(p) = info.and_then(|i| i.product.as_deref()) {
            d.push_str(&format!(" ({p})"));
        }
        if let Some(s) = info.and_then(|i| i.serial.as_deref()) {
            d.push_str(&format!(", serial {s}"));
        }
        if let Some(a) = info.and_then(|i| i.account.as_deref()) {
            d.push_str(&format!(", site/account {a}"));
        }
        d.push('\n');
        if self.predictive {
            d.push_str(&format!(
                "What is wrong: risk of {} — {:.0} % probability of failure within {} days (alarm level {:.0} %).\n",
                mode_words(&self.mode),
                100.0 * self.risk,
                self.horizon_days.map_or("the model's".into(), |h| format!("{h:.0}")),
                100.0 * self.threshold,
            ));
            if let Some(ms) = self.predicted_date_ms() {
                d.push_str(&format!(
                    "Predicted failure window: around {} (remaining useful life ≈ {:.1} days).\n",
                    sf_date(ms),
                    self.rul_days.unwrap_or(0.0)
                ));
            }
        } else {
            d.push_str(&format!(
                "What is wrong: sensor readings far outside this asset's normal behaviour (anomaly score {:.4}, alarm level {:.4}).\n",
                self.risk, self.threshold
            ));
        }
        if !self.evidence.is_empty() {
            d.push_str("Evidence (distance from this asset's normal):\n");
            for e in self.evidence.iter().take(4) {
                if e.z.is_finite() {
                    d.push_str(&format!(
                        "  - {}: {:.1}σ {} normal (now {:.3})\n",
                        e.sensor,
                        e.z.abs(),
                        if e.z >= 0.0 { "above" } else { "below" },
                        e.value
                    ));
                } else {
                    d.push_str(&format!(
                        "  - {}: the most unusual sensor (now {:.3})\n",
                        e.sensor, e.value
                    ));
                }
            }
        }
        self.push_explanation(&mut d);
        let pi = &self.priority.inputs;
        d.push_str(&format!(
            "Priority {}: score {:.3} = probability {:.3} × criticality {:.2} ({}) × SLA factor {:.2} ({}).\n",
            self.priority.priority,
            self.priority.score,
            pi.probability,
            pi.criticality,
            pi.criticality_source,
            pi.sla_factor,
            pi.sla_source
        ));
        if !self.similar.is_empty() {
            d.push_str("Similar past repairs on this product:\n");
            for wo in self.similar.iter().rev().take(3) {
                d.push_str(&format!(
                    "  - WO {} on {}{}: {}\n",
                    wo.number,
                    wo.asset,
                    wo.end_ms
                        .map(|ms| format!(" ({})", sf_date(ms)))
                        .unwrap_or_default(),
                    wo.subject
                ));
            }
        }
        if self.flapping {
            d.push_str("Note: this problem has come and gone several times recently; one Case covers it.\n");
        }
        if let Some(r) = &self.reason {
            d.push_str(&format!("Status: {r}\n"));
        }
        d.push_str(&format!(
            "Detected {} by {} {} (episode {}, audit {}).",
            sf_datetime(self.opened_ms),
            self.model.0,
            self.model.1,
            self.number,
            self.insight_key()
        ));
        truncate(&d, CASE_DESCRIPTION_MAX_CHARS)
    }

    /// The "why" lines: each listed feature, its value against the asset's
    /// normal, and its share of the risk in probability and log-odds.
    fn push_explanation(&self, d: &mut String) {
        match &self.explanation {
            None => {}
            Some(RiskExplanation::Unavailable(why)) => d.push_str(&format!(
                "Why the model rates it so: no per-feature explanation ({why}).\n"
            )),
            Some(RiskExplanation::Computed(e)) if e.top.is_empty() => d.push_str(&format!(
                "Why the model rates it so: no feature moves the risk from the model's baseline of {:.0} %.\n",
                100.0 * e.base_probability
            )),
            Some(RiskExplanation::Computed(e)) => {
                d.push_str(&format!(
                    "Why the model rates it so (exact TreeSHAP feature contributions; \"to the risk\" is in probability, \
                     the change from the model's baseline of {:.0} % to {:.0} % shared in proportion to each feature's log-odds contribution):\n",
                    100.0 * e.base_probability,
                    100.0 * e.probability
                ));
                for c in &e.top {
                    d.push_str(&format!(
                        "  - {}, {:+.2} to the risk ({:+.2} log-odds)\n",
                        c.phrase, c.probability, c.log_odds
                    ));
                }
                let rest = e.n_contributing.saturating_sub(e.top.len());
                if rest > 0 {
                    d.push_str(&format!("  ({rest} more features contribute less)\n"));
                }
            }
        }
    }

    fn explanation_json(&self) -> Value {
        match &self.explanation {
            None => Value::Null,
            Some(RiskExplanation::Unavailable(why)) => json!({ "unavailable": why }),
            Some(RiskExplanation::Computed(e)) => json!({
                "method": METHOD,
                "probability_method": "proportional to log-odds contributions; sums to probability - base_probability",
                "base_log_odds": e.base_log_odds,
                "log_odds": e.log_odds,
                "base_probability": e.base_probability,
                "probability": e.probability,
                "n_contributing": e.n_contributing,
                "contributions": e.top.iter().map(|c| json!({
                    "feature": c.feature,
                    "value": c.value.is_finite().then_some(c.value),
                    "log_odds": c.log_odds,
                    "probability": c.probability,
                    "text": c.phrase,
                })).collect::<Vec<_>>(),
            }),
        }
    }

    fn evidence_json(&self) -> Value {
        Value::Array(
            self.evidence
                .iter()
                .map(|e| {
                    let z = e.z.is_finite().then(|| round(e.z, 3));
                    json!({"sensor": e.sensor, "z": z, "value": e.value})
                })
                .collect(),
        )
    }

    /// The upserts for this change, in dependency order (parents first).
    pub fn actions(&self) -> Vec<Action> {
        let trace = self.trace_id();
        let urgency = match self.priority.priority {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Medium => 2,
            Priority::Low => 3,
        };
        let mut out = Vec::new();
        let visible = self.rollout != Rollout::Observe;
        let case_fields =
            visible && !matches!(self.kind, ChangeKind::Suppressed | ChangeKind::Closed);
        if case_fields {
            let mut f = Map::new();
            stamp(&mut f, &trace);
            f.insert("Subject".into(), json!(self.subject()));
            f.insert("Description".into(), json!(self.description()));
            f.insert(
                "Priority".into(),
                json!(case_priority(self.priority.priority)),
            );
            f.insert(
                "IsEscalated".into(),
                json!(self.priority.priority == Priority::Critical),
            );
            if self.kind == ChangeKind::Opened {
                let status = match self.rollout {
                    Rollout::Review => REVIEW_CASE_STATUS,
                    _ => ACT_CASE_STATUS,
                };
                f.insert("Status".into(), json!(status));
                f.insert("Origin".into(), json!("Web"));
                f.insert(
                    "Reason".into(),
                    json!(if self.predictive {
                        "Performance"
                    } else {
                        "Other"
                    }),
                );
            }
            if let Some(info) = &self.info {
                f.insert("AssetId".into(), json!(info.id));
                if let Some(acc) = &info.account_id {
                    f.insert("AccountId".into(), json!(acc));
                }
                if let Some(p) = &info.product_id {
                    f.insert("ProductId".into(), json!(p));
                }
            }
            out.push(Action {
                sobject: "Case".into(),
                ext_key: self.case_key.clone(),
                fields: f,
                priority: urgency,
                deferrable: self.kind == ChangeKind::Updated,
                source_ms: self.appended_ms,
            });
        }
        if visible {
            if let Some(info) = &self.info {
                let mut f = Map::new();
                stamp(&mut f, &trace);
                f.insert("Asset__c".into(), json!(info.id));
                if case_fields || self.kind != ChangeKind::Opened {
                    f.insert(
                        "Case__r".into(),
                        json!({"FieldPulse_Key__c": self.case_key}),
                    );
                }
                f.insert(
                    "Score__c".into(),
                    json!(round(self.risk.clamp(0.0, 9.999), 3)),
                );
                f.insert(
                    "Priority__c".into(),
                    json!(self.priority.priority.to_string()),
                );
                f.insert("Failure_Mode__c".into(), json!(self.mode));
                f.insert(
                    "Status__c".into(),
                    json!(match self.kind {
                        ChangeKind::Closed => "Resolved",
                        ChangeKind::Suppressed => "Acknowledged",
                        _ => "Open",
                    }),
                );
                if let Some(ms) = self.predicted_date_ms().filter(|_| self.predictive) {
                    f.insert("Predicted_Failure_Date__c".into(), json!(sf_date(ms)));
                }
                if let Some(rul) = self.rul_days.filter(|r| r.is_finite() && self.predictive) {
                    f.insert(
                        "RUL_Days__c".into(),
                        json!(round(rul.clamp(0.0, 999_999.0), 1)),
                    );
                }
                let pi = &self.priority.inputs;
                f.insert(
                    "Priority_Score__c".into(),
                    json!(round(self.priority.score.clamp(0.0, 9_999.0), 4)),
                );
                f.insert(
                    "Probability__c".into(),
                    json!(round(pi.probability.clamp(0.0, 1.0), 4)),
                );
                f.insert(
                    "Criticality__c".into(),
                    json!(round(pi.criticality.clamp(0.0, 999.0), 2)),
                );
                f.insert(
                    "SLA_Factor__c".into(),
                    json!(round(pi.sla_factor.clamp(0.0, 999.0), 2)),
                );
                f.insert(
                    "Evidence__c".into(),
                    json!(self.evidence_json().to_string()),
                );
                f.insert(
                    "Model_Version__c".into(),
                    json!(truncate(&self.model.1, 64)),
                );
                f.insert("Detected_At__c".into(), json!(sf_datetime(self.opened_ms)));
                out.push(Action {
                    sobject: "Asset_Alert__c".into(),
                    ext_key: self.alert_key.clone(),
                    fields: f,
                    priority: urgency,
                    deferrable: matches!(self.kind, ChangeKind::Updated),
                    source_ms: self.appended_ms,
                });
                if self.predictive {
                    let mut f = Map::new();
                    f.insert(
                        "FieldPulse_Risk__c".into(),
                        json!(round(self.risk.clamp(0.0, 9.999), 3)),
                    );
                    f.insert(
                        "FieldPulse_Health__c".into(),
                        json!(round(100.0 * (1.0 - self.risk.clamp(0.0, 1.0)), 2)),
                    );
                    f.insert(
                        "FieldPulse_Last_Scored__c".into(),
                        json!(sf_datetime(self.ts_ms)),
                    );
                    out.push(Action {
                        sobject: "Asset".into(),
                        ext_key: info.id.clone(),
                        fields: f,
                        priority: 3,
                        deferrable: true,
                        source_ms: self.appended_ms,
                    });
                }
            }
        }
        out.push(self.insight());
        out
    }

    fn insight(&self) -> Action {
        let key = self.insight_key();
        let mut f = Map::new();
        stamp(&mut f, &self.trace_id());
        f.insert("Model_Name__c".into(), json!(truncate(&self.model.0, 80)));
        f.insert(
            "Model_Version__c".into(),
            json!(truncate(&self.model.1, 64)),
        );
        f.insert("Window_Start__c".into(), json!(sf_datetime(self.opened_ms)));
        f.insert("Window_End__c".into(), json!(sf_datetime(self.ts_ms)));
        f.insert(
            "Scores__c".into(),
            json!(json!({
                "risk": self.risk,
                "threshold": self.threshold,
                "horizon_days": self.horizon_days,
                "rul_days": self.rul_days,
                "priority_score": self.priority.score,
                "priority": self.priority.priority.to_string(),
                "evidence": self.evidence_json(),
                "explanation": self.explanation_json(),
            })
            .to_string()),
        );
        f.insert(
            "Threshold__c".into(),
            json!(round(self.threshold.clamp(0.0, 9.999), 3)),
        );
        f.insert(
            "Action__c".into(),
            json!(if self.rollout == Rollout::Observe {
                "Alert"
            } else {
                "Case"
            }),
        );
        f.insert(
            "Source_Record_Ids__c".into(),
            json!(json!({
                "gateway": self.source.gateway,
                "epoch": self.source.epoch,
                "seq_first": self.source.seqs.0,
                "seq_last": self.source.seqs.1,
                "log_offset_first": self.source.offsets.0,
                "log_offset_last": self.source.offsets.1,
                "case_key": self.case_key,
                "alert_key": self.alert_key.clone(),
                "asset_id": self.info.as_ref().map(|i| i.id.clone()),
            })
            .to_string()),
        );
        let outcome = match (self.rollout, self.kind) {
            (Rollout::Observe, k) => {
                format!("observe: {} (no record visible to dispatchers)", k.as_str())
            }
            (r, k) => format!(
                "{}: {}{}",
                r.as_str(),
                k.as_str(),
                self.reason
                    .as_ref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            ),
        };
        // Same limit as the Case description (Explanation__c holds 32,768).
        f.insert("Explanation__c".into(), json!(self.description()));
        f.insert("Outcome__c".into(), json!(truncate(&outcome, 255)));
        f.insert("Rollout_Mode__c".into(), json!(self.rollout.as_str()));
        let target = match (self.rollout, self.kind) {
            (Rollout::Observe, _) => "none",
            (_, ChangeKind::Suppressed | ChangeKind::Closed) => "Asset_Alert__c",
            _ => "Case",
        };
        f.insert("Target_Object__c".into(), json!(target));
        let target_key = match target {
            "Case" => Some(&self.case_key),
            "Asset_Alert__c" if self.info.is_some() => Some(&self.alert_key),
            _ => None,
        };
        if let Some(k) = target_key {
            // The outbox fills in the target's Salesforce Id once it was sent.
            f.insert(
                "Target_Record_Id__c".into(),
                json!({crate::outbox::SF_ID_OF: k}),
            );
        }
        f.insert(
            "Source_Range__c".into(),
            json!(format!(
                "gateway {} epoch {} seq {}..{} (ingest log offsets {}..{})",
                self.source.gateway,
                self.source.epoch,
                self.source.seqs.0,
                self.source.seqs.1,
                self.source.offsets.0,
                self.source.offsets.1
            )),
        );
        f.insert(
            "Priority_Inputs__c".into(),
            json!(serde_json::to_string(&self.priority).unwrap_or_default()),
        );
        Action {
            sobject: "AI_Insight__c".into(),
            ext_key: key,
            fields: f,
            priority: 3,
            deferrable: false,
            source_ms: self.appended_ms,
        }
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episodes::{prioritize, PriorityBands, PriorityInputs};

    fn change(rollout: Rollout, kind: ChangeKind) -> EpisodeChange {
        EpisodeChange {
            asset: "PUMP-001".into(),
            info: Some(AssetInfo {
                id: "02i000000000001AAA".into(),
                name: "PUMP-001".into(),
                product: Some("Centrifugal Pump".into()),
                product_id: Some("01t000000000001AAA".into()),
                account_id: Some("001000000000001AAA".into()),
                account: Some("Acme Water".into()),
                serial: Some("SN-1".into()),
                criticality: None,
            }),
            mode: "bearing".into(),
            predictive: true,
            kind,
            reason: None,
            number: 2,
            change_no: 5,
            case_key: "fp-case:PUMP-001:bearing:1".into(),
            alert_key: "fp-alert:PUMP-001:bearing:1".into(),
            risk: 0.8,
            threshold: 0.4,
            horizon_days: Some(14.0),
            rul_days: Some(9.5),
            ts_ms: 1_767_225_600_000,
            opened_ms: 1_767_200_000_000,
            priority: prioritize(
                PriorityInputs {
                    probability: 0.8,
                    criticality: 1.0,
                    criticality_source: "default".into(),
                    sla_factor: 1.0,
                    sla_source: "default".into(),
                },
                &PriorityBands::default(),
            ),
            evidence: vec![SensorEvidence {
                sensor: "vib_rms".into(),
                z: 3.2,
                value: 2.5,
            }],
            explanation: Some(RiskExplanation::Computed(explanation())),
            similar: vec![PastWorkOrder {
                number: "00001234".into(),
                asset: "PUMP-007".into(),
                subject: "[BRG] bearing replaced".into(),
                work_type: Some("Corrective - Bearing".into()),
                end_ms: Some(1_760_000_000_000),
            }],
            model: ("fieldpulse-failure".into(), "fp-failure-test".into()),
            source: SourceRange {
                gateway: "gw-1".into(),
                epoch: 7,
                seqs: (10, 12),
                offsets: (100, 120),
            },
            rollout,
            appended_ms: 0,
            flapping: false,
        }
    }

    fn explanation() -> Explanation {
        use fieldpulse_models::failure::FeatureContribution;
        Explanation {
            base_log_odds: -3.0,
            log_odds: 1.2,
            base_probability: 0.05,
            probability: 0.8,
            top: vec![
                FeatureContribution {
                    feature: "vib_rms.robust_z".into(),
                    value: 3.1,
                    log_odds: 2.1,
                    probability: 0.375,
                    phrase: "vibration RMS 3.1σ above this asset's normal".into(),
                },
                FeatureContribution {
                    feature: "hist.days_since_pm".into(),
                    value: 170.0,
                    log_odds: 1.17,
                    probability: 0.209,
                    phrase: "170.0 days since the last preventive maintenance".into(),
                },
            ],
            n_contributing: 9,
        }
    }

    fn objects(actions: &[Action]) -> Vec<&str> {
        actions.iter().map(|a| a.sobject.as_str()).collect()
    }

    #[test]
    fn any_asset_name_makes_a_valid_distinct_reversible_key() {
        let names = [
            "PUMP-001",
            "plant 1/pump.7",
            "a_b",
            "a:b",
            "a b",
            "Pumpe Süd #3",
            "",
        ];
        let parts: Vec<String> = names.iter().map(|n| key_part(n)).collect();
        for (name, part) in names.iter().zip(&parts) {
            assert!(
                part.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{part}"
            );
            assert_eq!(key_part_decode(part).as_deref(), Some(*name));
        }
        let unique: std::collections::BTreeSet<_> = parts.iter().collect();
        assert_eq!(unique.len(), parts.len(), "{parts:?}");
        let long = "x".repeat(300);
        let part = key_part(&long);
        assert!(part.len() <= 96 && part.contains("_h"));
        assert_ne!(part, key_part(&"x".repeat(301)));
    }

    #[test]
    fn rollout_decides_what_a_dispatcher_sees() {
        let observe = change(Rollout::Observe, ChangeKind::Opened).actions();
        assert_eq!(objects(&observe), ["AI_Insight__c"]);
        assert_eq!(observe[0].fields["Rollout_Mode__c"], "observe");

        let review = change(Rollout::Review, ChangeKind::Opened).actions();
        assert_eq!(
            objects(&review),
            ["Case", "Asset_Alert__c", "Asset", "AI_Insight__c"]
        );
        assert_eq!(review[0].fields["Status"], REVIEW_CASE_STATUS);

        let act = change(Rollout::Act, ChangeKind::Opened).actions();
        assert_eq!(act[0].fields["Status"], ACT_CASE_STATUS);
        assert_eq!(act[0].fields["Priority"], "High");
        assert_eq!(
            act[0].fields["IsEscalated"], true,
            "Critical is High plus escalated"
        );
        // Every record carries the AI markers and the same trace id as the insight.
        let trace = act.last().unwrap().fields["FieldPulse_Trace_Id__c"].clone();
        for a in &act {
            if a.sobject != "Asset" {
                assert_eq!(a.fields["AI_Generated__c"], true, "{}", a.sobject);
                assert_eq!(a.fields["FieldPulse_Trace_Id__c"], trace, "{}", a.sobject);
                assert!(!a.fields.contains_key("FieldPulse_Key__c"));
            }
        }
        assert!(trace.as_str().unwrap().len() <= 64);
    }

    #[test]
    fn a_suppressed_or_closed_episode_updates_the_alert_not_the_case() {
        for kind in [ChangeKind::Suppressed, ChangeKind::Closed] {
            let actions = change(Rollout::Act, kind).actions();
            assert!(!objects(&actions).contains(&"Case"), "{kind:?}");
            let alert = actions
                .iter()
                .find(|a| a.sobject == "Asset_Alert__c")
                .unwrap();
            assert_ne!(alert.fields["Status__c"], "Open");
        }
    }

    #[test]
    fn the_description_says_what_where_when_why_and_what_fixed_it_before() {
        let c = change(Rollout::Act, ChangeKind::Opened);
        let d = c.description();
        for needle in [
            "PUMP-001",
            "Centrifugal Pump",
            "Acme Water",
            "bearing wear",
            "80 %",
            "14 days",
            "vib_rms: 3.2σ above normal",
            "WO 00001234",
            "fp-failure-test",
            "Priority Critical",
        ] {
            assert!(d.contains(needle), "missing {needle:?} in:\n{d}");
        }
        assert!(c.subject().len() <= 255);
        assert!(c.subject().contains("failure expected around"));
    }

    #[test]
    fn the_case_and_the_audit_record_say_which_features_drove_the_risk() {
        let actions = change(Rollout::Act, ChangeKind::Opened).actions();
        let case = &actions[0];
        let d = case.fields["Description"].as_str().unwrap();
        for needle in [
            "Why the model rates it so (exact TreeSHAP",
            "baseline of 5 % to 80 %",
            "  - vibration RMS 3.1σ above this asset's normal, +0.38 to the risk (+2.10 log-odds)\n",
            "  - 170.0 days since the last preventive maintenance, +0.21 to the risk (+1.17 log-odds)\n",
            "(7 more features contribute less)",
        ] {
            assert!(d.contains(needle), "missing {needle:?} in:\n{d}");
        }
        let insight = actions.last().unwrap();
        assert_eq!(insight.fields["Explanation__c"].as_str(), Some(d));
        let scores: Value =
            serde_json::from_str(insight.fields["Scores__c"].as_str().unwrap()).unwrap();
        let e = &scores["explanation"];
        assert_eq!(e["method"], "tree_shap_path_dependent");
        assert_eq!(e["contributions"][0]["feature"], "vib_rms.robust_z");
        assert_eq!(e["contributions"][1]["probability"], 0.209);
        assert_eq!(e["base_probability"], 0.05);
    }

    #[test]
    fn an_unexplainable_model_says_so_and_an_anomaly_case_has_no_model_section() {
        let mut c = change(Rollout::Act, ChangeKind::Opened);
        c.explanation = Some(RiskExplanation::Unavailable(
            "tree 0 has no node covers".into(),
        ));
        assert!(c.description().contains(
            "Why the model rates it so: no per-feature explanation (tree 0 has no node covers)."
        ));
        let actions = c.actions();
        let scores: Value = serde_json::from_str(
            actions.last().unwrap().fields["Scores__c"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            scores["explanation"]["unavailable"],
            "tree 0 has no node covers"
        );
        c.explanation = None;
        assert!(!c.description().contains("Why the model"));
    }

    #[test]
    fn a_huge_description_is_cut_at_the_case_limit_on_a_char_boundary() {
        let mut c = change(Rollout::Act, ChangeKind::Opened);
        c.similar[0].subject = "Lager über Soll — ".repeat(3_000);
        let d = c.description();
        assert_eq!(d.chars().count(), CASE_DESCRIPTION_MAX_CHARS);
        assert!(d.starts_with("Asset: PUMP-001"));
    }
}
