//! `shadow_report.json`: how the candidate scored in shadow compared with the
//! champion, for the person deciding whether to promote it.
//!
//! The figures are the `/metrics` counters and risk histograms since the
//! current (champion, candidate) pair was handed to the shards (`since`).
//! The shards apply a hand-over between two records, so the first few
//! records after `since` (those already queued to a shard) may still count
//! for the previous pair. Quantiles are interpolated inside the histogram
//! buckets (`RISK_BUCKETS`), so they are within one bucket of the exact value.
//! When shadow scoring stops (candidate promoted, withdrawn or refused), the
//! last pair's report stays in the file until another pair starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::artifact::now_iso;
use crate::processor::{Agreement, ProcessorMetrics, RiskCounts, ServedModel};

/// The report file in the state directory.
pub const REPORT_FILE: &str = "shadow_report.json";
const REPORT_FORMAT: u32 = 1;

/// The contents of [`REPORT_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Format of this file.
    pub format_version: u32,
    /// When it was written (ISO 8601, UTC).
    pub written_at: String,
    /// When this pair was handed to the shards.
    pub since: String,
    /// The served model.
    pub champion: Option<ReportModel>,
    /// The model scored in shadow.
    pub candidate: Option<ReportModel>,
    /// Shadow evaluations compared with the champion's (both past warm-up).
    pub evaluations: u64,
    /// Comparisons per row and failure mode, by outcome.
    pub agreement: AgreementCounts,
    /// `agree` over all comparisons; `None` before any.
    pub agreement_rate: Option<f64>,
    /// Risk of each model's evaluations (per followed classifier).
    pub risk: RiskPair,
}

/// A model named in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportModel {
    /// Registry version.
    pub version: String,
    /// The artifact's `model_version`.
    pub model_version: String,
}

/// Shadow comparisons by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementCounts {
    /// Both alarm, or neither.
    pub agree: u64,
    /// Only the champion alarms.
    pub champion_only: u64,
    /// Only the candidate alarms.
    pub shadow_only: u64,
}

/// Risk summaries of both models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskPair {
    /// The champion's (every evaluation, compared or not).
    pub champion: RiskSummary,
    /// The candidate's (compared evaluations).
    pub candidate: RiskSummary,
}

/// Count, mean and quantiles of a risk histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskSummary {
    /// Observations.
    pub n: u64,
    /// Mean risk.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl RiskSummary {
    fn of(counts: &RiskCounts) -> Self {
        let n = counts.count();
        Self {
            n,
            mean: (n > 0).then(|| counts.sum / n as f64),
            p50: counts.quantile(0.5),
            p90: counts.quantile(0.9),
            p99: counts.quantile(0.99),
        }
    }
}

/// The counters when the current pair started.
#[derive(Debug)]
struct Baseline {
    champion: Option<ServedModel>,
    shadow: Option<ServedModel>,
    since: String,
    evaluations: u64,
    agreement: [u64; 3],
    champion_risk: RiskCounts,
    shadow_risk: RiskCounts,
}

/// Keeps the baseline of the current (champion, candidate) pair and writes
/// [`REPORT_FILE`].
#[derive(Debug)]
pub struct ShadowReporter {
    path: PathBuf,
    metrics: Arc<ProcessorMetrics>,
    baseline: Mutex<Baseline>,
}

impl ShadowReporter {
    /// A reporter writing into `state_dir`, for the pair the processor
    /// started with: it counts from zero, since `metrics` are this process's
    /// (evaluations the shards made before the reporter existed included).
    pub fn new(
        state_dir: &Path,
        metrics: Arc<ProcessorMetrics>,
        champion: Option<ServedModel>,
        shadow: Option<ServedModel>,
    ) -> Self {
        let baseline = Baseline {
            champion,
            shadow,
            since: now_iso(),
            evaluations: 0,
            agreement: [0; 3],
            champion_risk: RiskCounts::default(),
            shadow_risk: RiskCounts::default(),
        };
        Self {
            path: state_dir.join(REPORT_FILE),
            metrics,
            baseline: Mutex::new(baseline),
        }
    }

    fn baseline(
        metrics: &ProcessorMetrics,
        champion: Option<ServedModel>,
        shadow: Option<ServedModel>,
    ) -> Baseline {
        Baseline {
            champion,
            shadow,
            since: now_iso(),
            evaluations: metrics
                .shadow_evaluations
                .load(std::sync::atomic::Ordering::Relaxed),
            agreement: Agreement::ALL.map(|a| metrics.agreement(a)),
            champion_risk: metrics.champion_risk.counts(),
            shadow_risk: metrics.shadow_risk.counts(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Baseline> {
        self.baseline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a candidate is in shadow now.
    pub fn active(&self) -> bool {
        self.lock().shadow.is_some()
    }

    /// The report of the current pair so far.
    pub fn report(&self) -> ShadowReport {
        let b = self.lock();
        let m = &self.metrics;
        let agreement = Agreement::ALL.map(|a| m.agreement(a));
        let d = |i: usize| agreement[i].saturating_sub(b.agreement[i]);
        let counts = AgreementCounts {
            agree: d(0),
            champion_only: d(1),
            shadow_only: d(2),
        };
        let total = counts.agree + counts.champion_only + counts.shadow_only;
        let named = |s: &Option<ServedModel>| {
            s.as_ref().map(|s| ReportModel {
                version: s.version.to_string(),
                model_version: s.model.model_version.clone(),
            })
        };
        ShadowReport {
            format_version: REPORT_FORMAT,
            written_at: now_iso(),
            since: b.since.clone(),
            champion: named(&b.champion),
            candidate: named(&b.shadow),
            evaluations: m
                .shadow_evaluations
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(b.evaluations),
            agreement: counts,
            agreement_rate: (total > 0).then(|| counts.agree as f64 / total as f64),
            risk: RiskPair {
                champion: RiskSummary::of(&m.champion_risk.counts().since(&b.champion_risk)),
                candidate: RiskSummary::of(&m.shadow_risk.counts().since(&b.shadow_risk)),
            },
        }
    }

    /// Writes the report atomically when a candidate is in shadow (otherwise
    /// the last pair's report stays).
    ///
    /// # Errors
    /// The write failed, phrased with the path.
    pub fn write(&self) -> Result<(), String> {
        if !self.active() {
            return Ok(());
        }
        let mut text = serde_json::to_string_pretty(&self.report()).map_err(|e| e.to_string())?;
        text.push('\n');
        fieldpulse_models::registry::atomic_write(&self.path, text.as_bytes())
            .map_err(|e| e.to_string())
    }

    /// Closes the current pair (its final report is written) and starts
    /// counting for a new one.
    ///
    /// # Errors
    /// Writing the closing report failed (the new pair starts anyway).
    pub fn restart(
        &self,
        champion: Option<ServedModel>,
        shadow: Option<ServedModel>,
    ) -> Result<(), String> {
        let res = self.write();
        *self.lock() = Self::baseline(&self.metrics, champion, shadow);
        res
    }
}
