//! The demo's summary: every reading accounted for, as JSON and as text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use fieldpulse_cloud::ingest::IngestStats;
use fieldpulse_edge::{MetricsSnapshot, RunSummary};
use serde::Serialize;

use super::publisher::PublishStats;
use super::sink::{percentile, Latencies};

/// What `fieldpulse demo` prints and writes to `summary.json`.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// Which MQTT broker carried the run.
    pub broker: String,
    /// MQTT messages the fleet published (valid and malformed).
    pub messages_published: u64,
    /// Of those, malformed on purpose.
    pub malformed_messages_published: u64,
    /// PUBACKs the broker returned to the fleet.
    pub messages_acknowledged_by_broker: u64,
    /// Valid readings published (each must reach the cloud exactly once).
    pub readings_published: u64,
    /// Readings the edge decoded or rejected.
    pub edge_readings_received: u64,
    /// Readings the edge made durable in its spool.
    pub edge_readings_spooled: u64,
    /// Readings the cloud acknowledged to the edge.
    pub edge_readings_forwarded: u64,
    /// Rejected readings by reason.
    pub edge_rejected: BTreeMap<&'static str, u64>,
    /// Readings dropped after acceptance (spool cap, dead letter, corruption).
    pub edge_readings_dropped: u64,
    /// Batches the cloud acknowledged, and how many of them were backfill.
    pub edge_batches_acked: u64,
    /// Backfill (historical) batches among them.
    pub edge_batches_historical: u64,
    /// Failed POST attempts during the outage (each retried).
    pub edge_send_failures: u64,
    /// Compressed bytes on the wire per forwarded reading.
    pub bytes_per_reading_on_wire: f64,
    /// Highest number of spool records waiting during the outage.
    pub peak_spool_backlog_records: u64,
    /// Readings committed by the cloud (first delivery of each batch).
    pub cloud_readings_ingested: u64,
    /// Of those, in historical batches.
    pub cloud_readings_historical: u64,
    /// Re-deliveries of committed batches (acknowledged, not committed again).
    pub cloud_duplicate_batches: u64,
    /// Published valid readings that never reached the cloud.
    pub readings_lost: u64,
    /// Readings committed more than once (must be 0).
    pub readings_duplicated: u64,
    /// Median publish-to-commit latency of live readings, ms.
    pub latency_ms_p50: u32,
    /// 99th percentile publish-to-commit latency of live readings, ms.
    pub latency_ms_p99: u32,
    /// 99th percentile latency of live-lane readings stamped during the outage, ms.
    pub outage_live_latency_ms_p99: u32,
    /// 99th percentile latency of backfilled readings (includes the outage), ms.
    pub historical_latency_ms_p99: u32,
    /// After the outage, live data was committed before the backlog.
    pub live_resumed_before_backlog: bool,
    /// The edge agent flushed, fsynced and forwarded within its shutdown grace period.
    pub edge_finished_in_grace: bool,
}

impl DemoSummary {
    /// Builds the summary from every component's counters.
    pub fn collect(
        published: &PublishStats,
        edge: &MetricsSnapshot,
        edge_run: &RunSummary,
        cloud: &IngestStats,
        mut latencies: Latencies,
        peak_spool: u64,
    ) -> Self {
        let readings_published = published.valid_readings.load(Ordering::Relaxed);
        let (first_live, first_historical) = latencies.first_commit_after_outage;
        Self {
            broker: String::new(),
            messages_published: published.messages.load(Ordering::Relaxed),
            malformed_messages_published: published.malformed_messages.load(Ordering::Relaxed),
            messages_acknowledged_by_broker: published.pubacks.load(Ordering::Relaxed),
            readings_published,
            edge_readings_received: edge.readings_received,
            edge_readings_spooled: edge.readings_spooled,
            edge_readings_forwarded: edge.readings_forwarded,
            edge_rejected: edge
                .rejected
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| (reason.as_str(), n))
                .collect(),
            edge_readings_dropped: edge.dropped_total(),
            edge_batches_acked: edge.batches_acked,
            edge_batches_historical: edge.batches_historical,
            edge_send_failures: edge.send_failures,
            bytes_per_reading_on_wire: edge.wire_bytes as f64
                / edge.readings_forwarded.max(1) as f64,
            peak_spool_backlog_records: peak_spool,
            cloud_readings_ingested: cloud.readings_ingested,
            cloud_readings_historical: cloud.readings_historical,
            cloud_duplicate_batches: cloud.duplicate_batches,
            readings_lost: readings_published.saturating_sub(cloud.readings_ingested),
            readings_duplicated: cloud.readings_ingested.saturating_sub(readings_published),
            latency_ms_p50: percentile(&mut latencies.live_ms, 50.0),
            latency_ms_p99: percentile(&mut latencies.live_ms, 99.0),
            outage_live_latency_ms_p99: percentile(&mut latencies.live_during_outage_ms, 99.0),
            historical_latency_ms_p99: percentile(&mut latencies.historical_ms, 99.0),
            live_resumed_before_backlog: match (first_live, first_historical) {
                (Some(live), Some(hist)) => live <= hist,
                (Some(_), None) => true,
                _ => false,
            },
            edge_finished_in_grace: edge_run.finished_in_grace,
        }
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let rejected: Vec<String> = self
            .edge_rejected
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(out, "\nfieldpulse demo: summary");
        let _ = writeln!(out, "  broker     {}", self.broker);
        let _ = writeln!(
            out,
            "  fleet      {} messages published ({} malformed on purpose), {} acknowledged by the broker",
            self.messages_published, self.malformed_messages_published, self.messages_acknowledged_by_broker
        );
        let _ = writeln!(
            out,
            "             {} valid readings",
            self.readings_published
        );
        let _ = writeln!(
            out,
            "  edge       {} received, {} spooled (fsynced before PUBACK), {} forwarded, {} dropped",
            self.edge_readings_received, self.edge_readings_spooled, self.edge_readings_forwarded, self.edge_readings_dropped
        );
        let _ = writeln!(
            out,
            "             rejected: {}",
            if rejected.is_empty() {
                "none".into()
            } else {
                rejected.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "             {} batches acked ({} backfill), {:.2} bytes/reading on the wire, {} failed sends retried",
            self.edge_batches_acked, self.edge_batches_historical, self.bytes_per_reading_on_wire, self.edge_send_failures
        );
        let _ = writeln!(
            out,
            "  outage     spool backlog peaked at {} records; live resumed before backlog: {}",
            self.peak_spool_backlog_records,
            yes_no(self.live_resumed_before_backlog)
        );
        let _ = writeln!(
            out,
            "  cloud      {} readings committed ({} historical), {} duplicate batches re-acked",
            self.cloud_readings_ingested,
            self.cloud_readings_historical,
            self.cloud_duplicate_batches
        );
        let _ = writeln!(
            out,
            "  latency    live p50 {} ms, p99 {} ms; held back by the outage p99 {} ms; backfill p99 {} ms",
            self.latency_ms_p50, self.latency_ms_p99, self.outage_live_latency_ms_p99, self.historical_latency_ms_p99
        );
        let _ = writeln!(
            out,
            "  result     {} readings lost, {} duplicated; edge shut down within its grace period: {}",
            self.readings_lost,
            self.readings_duplicated,
            yes_no(self.edge_finished_in_grace)
        );
        out
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}
