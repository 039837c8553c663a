//! Prometheus metrics of the cloud process (`fieldpulse_cloud_*`).
//!
//! Plain atomics rendered in the text exposition format: counted per batch,
//! never per reading inside a hot loop; labels come from closed enums.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::log::LogStats;

/// Why a batch request was rejected (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Missing, unknown or mismatched bearer token.
    Unauthorized,
    /// Unsupported or corrupt content encoding.
    Encoding,
    /// The body is not a `Batch`.
    Decode,
    /// A `Batch` that breaks the contract (seq 0, bad key, bad series).
    Malformed,
    /// The body or the decoded batch exceeds the size limit.
    TooLarge,
    /// More `Series` in one batch than `max_series_per_batch`.
    TooManySeries,
    /// More readings in one batch than `max_readings_per_batch`.
    TooManyReadings,
    /// The sink could not commit; the gateway retries.
    Unavailable,
}

impl RejectReason {
    const ALL: [Self; 8] = [
        Self::Unauthorized,
        Self::Encoding,
        Self::Decode,
        Self::Malformed,
        Self::TooLarge,
        Self::TooManySeries,
        Self::TooManyReadings,
        Self::Unavailable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Encoding => "encoding",
            Self::Decode => "decode",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::TooManySeries => "too_many_series",
            Self::TooManyReadings => "too_many_readings",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The cloud's counters.
#[derive(Debug, Default)]
pub struct CloudMetrics {
    /// Batches committed on first delivery.
    pub batches_committed: AtomicU64,
    /// Readings in committed batches.
    pub readings_ingested: AtomicU64,
    /// Readings in committed batches marked historical.
    pub readings_historical: AtomicU64,
    /// Re-deliveries of committed batches.
    pub duplicate_batches: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

/// Appends the ingest log's series: fsyncs and the batches they made
/// durable (their ratio is the group-commit factor), append errors, damaged
/// bytes skipped by readers, and the log's end and start offsets.
pub fn render_log(out: &mut String, stats: &LogStats) {
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "fieldpulse_cloud_log_fsyncs_total",
        "counter",
        "fdatasync calls on ingest log segments.",
        stats.fsyncs,
    );
    metric(
        "fieldpulse_cloud_log_batches_synced_total",
        "counter",
        "Batches made durable by those fsyncs (divided by fsyncs: batches per fsync).",
        stats.batches_synced,
    );
    metric(
        "fieldpulse_cloud_log_append_errors_total",
        "counter",
        "Ingest log appends that failed and were rolled back.",
        stats.append_errors,
    );
    metric(
        "fieldpulse_cloud_log_read_skipped_bytes_total",
        "counter",
        "Damaged ingest log bytes readers skipped.",
        stats.read_skipped_bytes,
    );
    metric(
        "fieldpulse_cloud_log_end_offset",
        "gauge",
        "Offset the next record appended to the ingest log gets.",
        stats.end_offset,
    );
    metric(
        "fieldpulse_cloud_log_start_offset",
        "gauge",
        "Oldest offset retained in the ingest log.",
        stats.start_offset,
    );
}

impl CloudMetrics {
    /// Counts one rejected request.
    pub fn count_rejected(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections for one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// Rejections for all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "fieldpulse_cloud_batches_committed_total",
            "Batches durably committed on first delivery.",
            self.batches_committed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "fieldpulse_cloud_readings_ingested_total",
            "Readings in committed batches.",
            self.readings_ingested.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "fieldpulse_cloud_readings_historical_total",
            "Readings in committed batches marked historical (backfill).",
            self.readings_historical.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "fieldpulse_cloud_duplicate_batches_total",
            "Deliveries of already committed batches, acknowledged again.",
            self.duplicate_batches.load(Ordering::Relaxed),
        );
        let name = "fieldpulse_cloud_batches_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Batch requests rejected, by reason.\n# TYPE {name} counter"
        );
        for reason in RejectReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.rejected(reason)
            );
        }
        out
    }
}
