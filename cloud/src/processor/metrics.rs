//! Counters of the processor (`fieldpulse_cloud_*`), counted per record or
//! per change, never inside the per-reading loop beyond one add per asset.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the arrival → outbox latency histogram.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

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
}
