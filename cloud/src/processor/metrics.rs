//! Counters of the processor (`fieldpulse_cloud_*`), counted per record or
//! per change, never inside the per-reading loop beyond one add per asset.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the arrival → outbox latency histogram.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

/// Upper bounds of the risk histograms (calibrated probabilities, 0–1).
pub const RISK_BUCKETS: [f64; 16] = [
    0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
];

/// How a shadow evaluation compared with the champion's at the same row and
/// failure mode (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// Both at or above their thresholds, or both below.
    Agree,
    /// Only the champion alarms.
    ChampionOnly,
    /// Only the shadow model alarms.
    ShadowOnly,
}

impl Agreement {
    /// Every outcome, in label order.
    pub const ALL: [Self; 3] = [Self::Agree, Self::ChampionOnly, Self::ShadowOnly];

    /// From the two alarm decisions.
    pub fn of(champion_alarms: bool, shadow_alarms: bool) -> Self {
        match (champion_alarms, shadow_alarms) {
            (true, false) => Self::ChampionOnly,
            (false, true) => Self::ShadowOnly,
            _ => Self::Agree,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agree => "agree",
            Self::ChampionOnly => "champion_only",
            Self::ShadowOnly => "shadow_only",
        }
    }
}

/// A histogram of risks (per evaluated classifier), lock-free.
#[derive(Debug, Default)]
pub struct RiskHistogram {
    buckets: [AtomicU64; RISK_BUCKETS.len() + 1],
    /// Sum of the observed risks, in millionths.
    sum_micro: AtomicU64,
}

/// A copy of a [`RiskHistogram`]'s counts, for reports and differences.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskCounts {
    /// Count per bucket of [`RISK_BUCKETS`] (not cumulative), then the overflow bucket.
    pub buckets: Vec<u64>,
    /// Sum of the observed risks.
    pub sum: f64,
}

impl RiskHistogram {
    /// Counts one risk (NaN is not counted).
    pub fn observe(&self, risk: f64) {
        if risk.is_nan() {
            return;
        }
        let i = RISK_BUCKETS
            .iter()
            .position(|b| risk <= *b)
            .unwrap_or(RISK_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro.fetch_add(
            (risk.clamp(0.0, 1e6) * 1e6).round() as u64,
            Ordering::Relaxed,
        );
    }

    /// The counts now.
    pub fn counts(&self) -> RiskCounts {
        RiskCounts {
            buckets: self
                .buckets
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let counts = self.counts();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, v) in RISK_BUCKETS.iter().zip(&counts.buckets) {
            cum += v;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += counts.buckets[RISK_BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", counts.sum);
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

impl RiskCounts {
    /// Observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// These counts minus an earlier copy of the same histogram.
    pub fn since(&self, earlier: &RiskCounts) -> RiskCounts {
        RiskCounts {
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// The `q` quantile, interpolated linearly inside its bucket (so within
    /// one bucket width of the exact value); `None` before any observation.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0.0;
        for (i, c) in self.buckets.iter().enumerate() {
            let c = *c as f64;
            if c > 0.0 && seen + c >= want {
                let lo = if i == 0 { 0.0 } else { RISK_BUCKETS[i - 1] };
                let hi = RISK_BUCKETS.get(i).copied().unwrap_or(1.0);
                return Some(lo + (hi - lo) * ((want - seen) / c).clamp(0.0, 1.0));
            }
            seen += c;
        }
        Some(1.0)
    }
}

const TRANSITIONS: [&str; 7] = [
    "opened",
    "escalated",
    "updated",
    "flapping",
    "suppressed",
    "resumed",
    "closed",
];

/// The processor's counters.
#[derive(Debug, Default)]
pub struct ProcessorMetrics {
    /// Log records handed to the shards.
    pub records_read: AtomicU64,
    /// Readings scored.
    pub readings_scored: AtomicU64,
    /// Rows (asset, timestamp) scored.
    pub rows_scored: AtomicU64,
    /// Readings of sensors outside the scoring layout.
    pub unknown_sensor_readings: AtomicU64,
    /// Readings skipped on replay because the asset's saved state already reflects them.
    pub replayed_skipped: AtomicU64,
    /// Changes not emitted again on replay.
    pub replayed_changes: AtomicU64,
    /// Failure model evaluations.
    pub failure_evaluations: AtomicU64,
    /// Actions written to the outbox.
    pub actions_enqueued: AtomicU64,
    /// Assets whose state was restored from a checkpoint.
    pub assets_restored: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Model hand-overs a shard refused (it kept its model).
    pub swaps_refused: AtomicU64,
    /// Shadow evaluations compared with the champion's (both past warm-up).
    pub shadow_evaluations: AtomicU64,
    shadow_agreement: [AtomicU64; Agreement::ALL.len()],
    /// Risk of every champion evaluation, per followed classifier.
    pub champion_risk: RiskHistogram,
    /// Risk of every shadow evaluation, per followed classifier.
    pub shadow_risk: RiskHistogram,
    transitions: [AtomicU64; TRANSITIONS.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_ms: AtomicU64,
    latency_count: AtomicU64,
}

impl ProcessorMetrics {
    /// Counts an episode transition by kind.
    pub fn count_transition(&self, kind: &str) {
        if let Some(i) = TRANSITIONS.iter().position(|k| *k == kind) {
            self.transitions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one shadow comparison (one row and failure mode).
    pub fn count_agreement(&self, outcome: Agreement) {
        self.shadow_agreement[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Shadow comparisons with this outcome so far.
    pub fn agreement(&self, outcome: Agreement) -> u64 {
        self.shadow_agreement[outcome as usize].load(Ordering::Relaxed)
    }

    /// Records one batch-arrival → outbox-write latency.
    pub fn record_latency_ms(&self, ms: u64) {
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Approximate latency quantile (upper bucket bound), `None` before any sample.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .latency_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }

    /// Renders the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let c = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        c(
            out,
            "fieldpulse_cloud_log_records_read_total",
            "Ingest log records handed to the scoring shards.",
            &self.records_read,
        );
        c(
            out,
            "fieldpulse_cloud_readings_scored_total",
            "Readings scored.",
            &self.readings_scored,
        );
        c(
            out,
            "fieldpulse_cloud_rows_scored_total",
            "Scoring rows (asset, timestamp).",
            &self.rows_scored,
        );
        c(
            out,
            "fieldpulse_cloud_unknown_sensor_readings_total",
            "Readings of sensors outside the scoring layout.",
            &self.unknown_sensor_readings,
        );
        c(
            out,
            "fieldpulse_cloud_replay_skipped_readings_total",
            "Readings skipped on replay (already in the saved state).",
            &self.replayed_skipped,
        );
        c(
            out,
            "fieldpulse_cloud_replay_skipped_changes_total",
            "Episode changes not emitted again on replay (already in the outbox).",
            &self.replayed_changes,
        );
        c(
            out,
            "fieldpulse_cloud_failure_evaluations_total",
            "Failure model evaluations.",
            &self.failure_evaluations,
        );
        c(
            out,
            "fieldpulse_cloud_actions_enqueued_total",
            "Salesforce actions written to the outbox.",
            &self.actions_enqueued,
        );
        c(
            out,
            "fieldpulse_cloud_checkpoints_total",
            "Scorer and episode checkpoints written.",
            &self.checkpoints,
        );
        c(
            out,
            "fieldpulse_cloud_model_swaps_refused_total",
            "Model hand-overs a scoring shard refused (it kept scoring with its model).",
            &self.swaps_refused,
        );
        c(
            out,
            "fieldpulse_cloud_shadow_evaluations_total",
            "Shadow model evaluations compared with the champion's (never acted on).",
            &self.shadow_evaluations,
        );
        let name = "fieldpulse_cloud_shadow_agreement_total";
        let _ = writeln!(out, "# HELP {name} Shadow vs champion alarm decisions per evaluated row and failure mode.\n# TYPE {name} counter");
        for outcome in Agreement::ALL {
            let _ = writeln!(
                out,
                "{name}{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                self.agreement(outcome)
            );
        }
        self.champion_risk.render(
            out,
            "fieldpulse_cloud_champion_risk",
            "Failure risk of the served (champion) model's evaluations, per followed classifier.",
        );
        self.shadow_risk.render(
            out,
            "fieldpulse_cloud_shadow_risk",
            "Failure risk of the shadow (candidate) model's evaluations, per followed classifier.",
        );
        let _ = writeln!(out, "# HELP fieldpulse_cloud_episode_transitions_total Alert episode transitions by kind.\n# TYPE fieldpulse_cloud_episode_transitions_total counter");
        for (k, v) in TRANSITIONS.iter().zip(&self.transitions) {
            let _ = writeln!(
                out,
                "fieldpulse_cloud_episode_transitions_total{{kind=\"{k}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let name = "fieldpulse_cloud_outbox_latency_ms";
        let _ = writeln!(out, "# HELP {name} Batch arrival in the log to action written to the outbox.\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, v) in LATENCY_BUCKETS_MS.iter().zip(&self.latency_buckets) {
            cum += v.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.latency_buckets[LATENCY_BUCKETS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.latency_sum_ms.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "{name}_count {}",
            self.latency_count.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_the_buckets() {
        let m = ProcessorMetrics::default();
        assert_eq!(m.latency_quantile_ms(0.5), None);
        for ms in [1, 2, 3, 40, 700] {
            m.record_latency_ms(ms);
        }
        assert_eq!(m.latency_quantile_ms(0.5), Some(5));
        assert_eq!(m.latency_quantile_ms(0.99), Some(1_000));
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("fieldpulse_cloud_outbox_latency_ms_bucket{le=\"+Inf\"} 5"));
    }

    #[test]
    fn risk_quantiles_interpolate_inside_buckets_and_differences_start_at_a_baseline() {
        let h = RiskHistogram::default();
        assert_eq!(h.counts().quantile(0.5), None);
        for r in [0.005, 0.005, 0.45, 0.45, f64::NAN] {
            h.observe(r);
        }
        let base = h.counts();
        assert_eq!(base.count(), 4);
        let q = base.quantile(0.5).unwrap();
        assert!((0.0..=0.01).contains(&q), "{q}");
        assert!((0.4..=0.5).contains(&base.quantile(0.9).unwrap()));
        h.observe(0.97);
        let d = h.counts().since(&base);
        assert_eq!(d.count(), 1);
        assert!((0.95..=0.99).contains(&d.quantile(0.5).unwrap()));
        assert!((d.sum - 0.97).abs() < 1e-6);
        assert_eq!(Agreement::of(true, true), Agreement::Agree);
        assert_eq!(Agreement::of(false, false), Agreement::Agree);
        assert_eq!(Agreement::of(true, false), Agreement::ChampionOnly);
        assert_eq!(Agreement::of(false, true), Agreement::ShadowOnly);
        let mut text = String::new();
        ProcessorMetrics::default().render(&mut text);
        assert!(text.contains("fieldpulse_cloud_shadow_agreement_total{outcome=\"shadow_only\"} 0"));
        assert!(text.contains("fieldpulse_cloud_champion_risk_bucket{le=\"+Inf\"} 0"));
    }
}
