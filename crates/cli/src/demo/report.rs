//! The demo's summary: every reading accounted for, the Cases as a
//! dispatcher reads them and their quality as an engineer judges it, as JSON
//! and as text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use fieldpulse_cloud::archive::Inventory;
use fieldpulse_cloud::ingest::IngestStats;
use serde::Serialize;

use super::edge_process::EdgeCounters;
use super::html::PageData;
use super::outcome::{assets_with_cases, CaseRow, Outcome};
use super::publisher::PublishStats;
use super::scenario::Scenario;

/// What `fieldpulse demo` prints and writes to `summary.json`.
#[derive(Debug, Default, Serialize)]
pub struct DemoSummary {
    /// Which MQTT broker carried the run.
    pub broker: String,
    /// Seed of the simulated fleets.
    pub seed: u64,
    /// Assets replayed.
    pub assets: usize,
    /// Days of fleet time replayed (warm-up + judged window).
    pub days_replayed: u64,
    /// Days of the judged window.
    pub days_judged: u64,
    /// History the model was trained on: assets and Work Orders.
    pub trained_on_assets: usize,
    /// Work Orders in that history.
    pub trained_on_work_orders: usize,
    /// Wall time of the whole run, seconds.
    pub wall_seconds: f64,
    /// MQTT messages the fleet published (valid and malformed).
    pub messages_published: u64,
    /// Of those, malformed on purpose.
    pub malformed_messages_published: u64,
    /// PUBACKs the broker returned to the fleet.
    pub messages_acknowledged_by_broker: u64,
    /// Valid readings published (each must reach the cloud exactly once).
    pub readings_published: u64,
    /// Readings the cloud committed to its ingest log (both cloud lives).
    pub readings_ingested: u64,
    /// Published readings that never reached the log (must be 0).
    pub readings_lost: u64,
    /// Readings committed more than once (must be 0).
    pub readings_duplicated: u64,
    /// Batches the cloud recognised as already committed and acknowledged again.
    pub duplicates_dropped: u64,
    /// Readings the edge rejected (malformed, out of range), all reasons.
    pub rejected: u64,
    /// Readings the edge decoded or rejected.
    pub edge_readings_received: u64,
    /// Readings the edge made durable in its spool.
    pub edge_readings_spooled: u64,
    /// Readings the cloud acknowledged to the edge.
    pub edge_readings_forwarded: u64,
    /// Rejected readings by reason.
    pub edge_rejected: BTreeMap<String, u64>,
    /// Readings dropped after acceptance (spool cap, dead letter, corruption).
    pub edge_readings_dropped: u64,
    /// Batches the cloud acknowledged.
    pub edge_batches_acked: u64,
    /// Backfill (historical) batches among them.
    pub edge_batches_historical: u64,
    /// Failed sends the edge retried (the outage).
    pub edge_send_failures: u64,
    /// Compressed bytes per reading on the edge → cloud wire.
    pub bytes_per_reading_on_wire: f64,
    /// Largest spool backlog during the outage, records.
    pub peak_spool_backlog_records: u64,
    /// Readings the cloud committed from backfill batches.
    pub cloud_readings_historical: u64,
    /// The edge agent flushed, fsynced, forwarded and exited cleanly within its shutdown
    /// grace period (after SIGTERM).
    pub edge_finished_in_grace: bool,
    /// Times the edge agent was killed with SIGKILL and restarted on its spool.
    pub edge_kills: u32,
    /// The uplink cut, cloud kill and edge kill were injected (not `--no-faults`).
    pub faults_injected: bool,
    /// MQTT messages the broker redelivered after the kill that the edge recognised as
    /// already spooled and skipped.
    pub edge_redeliveries_skipped: u64,
    /// After the cloud was killed: assets whose state came back from a checkpoint.
    pub cloud_assets_restored: u64,
    /// After the cloud was killed: readings re-read from the log and skipped
    /// because the restored state already reflected them.
    pub cloud_readings_skipped_on_replay: u64,
    /// After the cloud was killed: episode changes replayed but not emitted again.
    pub cloud_changes_not_reemitted: u64,
    /// Episodes open at the end.
    pub episodes_open: u64,
    /// Rows the restarted cloud scored but did not learn: older than the asset's last row.
    pub cloud_rows_out_of_order: u64,
    /// Rows the restarted cloud scored but did not learn: same instant as the asset's last row.
    pub cloud_rows_same_instant: u64,
    /// The cloud's Parquet telemetry archive directory (`null` when disabled).
    pub archive_dir: Option<String>,
    /// Readings in the archive's part files at the end (after the cloud's drain).
    pub archive_rows: u64,
    /// Parquet part files in the archive.
    pub archive_files: u64,
    /// UTC day partitions in the archive.
    pub archive_days: u64,
    /// Bytes of those part files.
    pub archive_bytes: u64,
    /// Archive bytes per archived reading.
    pub archive_bytes_per_reading: f64,
    /// Cases in the emulator.
    pub cases_created: usize,
    /// `Asset_Alert__c` records in the emulator.
    pub asset_alerts: usize,
    /// PM campaign drafts (`MaintenancePlan`) in the emulator.
    pub pm_campaign_drafts: usize,
    /// `AI_Insight__c` audit records in the emulator.
    pub ai_insights: usize,
    /// Failures in the judged window (ground truth).
    pub failures_in_window: usize,
    /// Of those, preceded by a Case of the right mode within 14 days.
    pub failures_caught: usize,
    /// Failures in the judged window by failure mode (ground truth).
    pub failures_by_mode: BTreeMap<String, usize>,
    /// Openings in the window followed by their failure / all openings in it.
    pub case_precision: f64,
    /// Failures caught / failures in the window.
    pub case_recall: f64,
    /// Median hours from the first right-mode Case to the failure (`null`
    /// when none was caught).
    pub median_lead_time_hours: Option<f64>,
    /// Openings in the window followed by no failure of their asset and
    /// mode within 14 days.
    pub false_alarms: usize,
    /// Sensor-to-Case latency, median, ms: MQTT publish of the reading that
    /// opened the episode → Case `CreatedDate` in Salesforce.
    pub latency_ms_p50: u64,
    /// Sensor-to-Case latency, 99th percentile, ms (includes Cases held back
    /// by the outage).
    pub latency_ms_p99: u64,
    /// The Cases, by opening time.
    pub cases: Vec<CaseRow>,
    /// What `report.html` plots besides these numbers (not in the JSON).
    #[serde(skip)]
    pub page: PageData,
}

/// The restarted cloud's recovery counters.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// Assets restored from a checkpoint.
    pub assets_restored: u64,
    /// Readings skipped on replay.
    pub readings_skipped: u64,
    /// Changes replayed but not emitted again.
    pub changes_not_reemitted: u64,
    /// Episodes open at the end.
    pub episodes_open: u64,
    /// Rows scored but not learned: older than the asset's last row (backlog after
    /// live data), in the restarted cloud's life.
    pub rows_out_of_order: u64,
    /// Rows scored but not learned: same instant as the asset's last row (a scan split
    /// across batches).
    pub rows_same_instant: u64,
}

/// Inputs of [`DemoSummary::collect`].
#[derive(Debug)]
pub struct Collected<'a> {
    /// Which broker.
    pub broker: String,
    /// The simulated world.
    pub scenario: &'a Scenario,
    /// Seed and sizes.
    pub seed: u64,
    /// Warm-up days replayed before the window.
    pub warmup_days: u64,
    /// The publisher's counters.
    pub published: &'a PublishStats,
    /// The edge's counters over its lives (a killed life's as of its last scrape).
    pub edge: &'a EdgeCounters,
    /// The edge exited cleanly after SIGTERM.
    pub edge_clean_exit: bool,
    /// Times the edge was killed and restarted.
    pub edge_kills: u32,
    /// Faults were injected.
    pub faults_injected: bool,
    /// Each cloud life's ingest counters.
    pub cloud: &'a [IngestStats],
    /// What the org holds.
    pub outcome: Outcome,
    /// Peak spool backlog during the outage.
    pub peak_spool: u64,
    /// The restarted cloud's recovery.
    pub recovery: Recovery,
    /// The archive directory and what it holds, when enabled.
    pub archive: Option<(String, Inventory)>,
    /// Wall time of the run, seconds.
    pub wall_seconds: f64,
}

impl DemoSummary {
    /// Builds the summary from every component's counters.
    pub fn collect(c: Collected<'_>) -> Self {
        let readings_published = c.published.valid_readings.load(Ordering::Relaxed);
        let readings_ingested: u64 = c.cloud.iter().map(|s| s.readings_ingested).sum();
        let mut latencies = c.outcome.latencies_ms.clone();
        let q = &c.outcome.quality;
        let days_judged = ((c.scenario.end_ms - c.scenario.window_start_ms) / 86_400_000) as u64;
        let archive = c
            .archive
            .as_ref()
            .map(|(_, inv)| inv.clone())
            .unwrap_or_default();
        Self {
            broker: c.broker,
            seed: c.seed,
            assets: c.scenario.names.len(),
            days_replayed: days_judged + c.warmup_days,
            days_judged,
            trained_on_assets: c.scenario.trained_on.0,
            trained_on_work_orders: c.scenario.trained_on.1,
            wall_seconds: (c.wall_seconds * 10.0).round() / 10.0,
            messages_published: c.published.messages.load(Ordering::Relaxed),
            malformed_messages_published: c.published.malformed_messages.load(Ordering::Relaxed),
            messages_acknowledged_by_broker: c.published.pubacks.load(Ordering::Relaxed),
            readings_published,
            readings_ingested,
            readings_lost: readings_published.saturating_sub(readings_ingested),
            readings_duplicated: readings_ingested.saturating_sub(readings_published),
            duplicates_dropped: c.cloud.iter().map(|s| s.duplicate_batches).sum(),
            rejected: c.edge.rejected_total(),
            edge_readings_received: c.edge.readings_received,
            edge_readings_spooled: c.edge.readings_spooled,
            edge_readings_forwarded: c.edge.readings_forwarded,
            edge_rejected: c
                .edge
                .rejected
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(reason, n)| (reason.clone(), *n))
                .collect(),
            edge_readings_dropped: c.edge.dropped,
            edge_batches_acked: c.edge.batches_acked,
            edge_batches_historical: c.edge.batches_historical,
            edge_send_failures: c.edge.send_failures,
            bytes_per_reading_on_wire: c.edge.wire_bytes as f64
                / c.edge.readings_forwarded.max(1) as f64,
            peak_spool_backlog_records: c.peak_spool,
            cloud_readings_historical: c.cloud.iter().map(|s| s.readings_historical).sum(),
            edge_finished_in_grace: c.edge_clean_exit,
            edge_kills: c.edge_kills,
            faults_injected: c.faults_injected,
            edge_redeliveries_skipped: c.edge.messages_duplicate,
            cloud_assets_restored: c.recovery.assets_restored,
            cloud_readings_skipped_on_replay: c.recovery.readings_skipped,
            cloud_changes_not_reemitted: c.recovery.changes_not_reemitted,
            episodes_open: c.recovery.episodes_open,
            cloud_rows_out_of_order: c.recovery.rows_out_of_order,
            cloud_rows_same_instant: c.recovery.rows_same_instant,
            archive_dir: c.archive.as_ref().map(|(dir, _)| dir.clone()),
            archive_rows: archive.rows,
            archive_files: archive.files,
            archive_days: archive.days,
            archive_bytes: archive.bytes,
            archive_bytes_per_reading: round2(archive.bytes as f64 / archive.rows.max(1) as f64),
            cases_created: c.outcome.cases.len(),
            asset_alerts: c.outcome.asset_alerts,
            pm_campaign_drafts: c.outcome.pm_campaign_drafts,
            ai_insights: c.outcome.ai_insights,
            failures_in_window: q.failures,
            failures_caught: q.caught,
            failures_by_mode: c
                .scenario
                .failures
                .iter()
                .filter(|f| (c.scenario.window_start_ms..c.scenario.end_ms).contains(&f.ts_ms))
                .fold(BTreeMap::new(), |mut by_mode, f| {
                    *by_mode.entry(f.mode.clone()).or_default() += 1;
                    by_mode
                }),
            case_precision: round2(q.precision()),
            case_recall: round2(q.recall()),
            median_lead_time_hours: q.median_lead_hours().map(|h| (h * 10.0).round() / 10.0),
            false_alarms: q.false_alarms,
            latency_ms_p50: percentile(&mut latencies, 50.0),
            latency_ms_p99: percentile(&mut latencies, 99.0),
            cases: c.outcome.cases,
            page: c.outcome.page,
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
        let _ = writeln!(
            out,
            "\nfieldpulse demo: summary ({:.0} s)",
            self.wall_seconds
        );
        let _ = writeln!(
            out,
            "\nCases for dispatch ({} Cases on {} of {} assets; {} Asset_Alert__c, {} PM campaign drafts, {} AI_Insight__c audit records)",
            self.cases_created,
            assets_with_cases(&self.cases),
            self.assets,
            self.asset_alerts,
            self.pm_campaign_drafts,
            self.ai_insights
        );
        if !self.cases.is_empty() {
            let _ = writeln!(
                out,
                "  {:<10} {:<8} {:<11} {:<17} {:<28} what happened",
                "asset", "priority", "mode", "raised (fleet)", "predicted failure"
            );
        }
        for c in &self.cases {
            let predicted = match (&c.predicted_failure, c.rul_days) {
                (Some(d), Some(rul)) => format!("by {d} ({rul:.1} d)"),
                (Some(d), None) => format!("by {d}"),
                (None, Some(rul)) => format!("within {rul:.1} d"),
                (None, None) => "-".into(),
            };
            let happened = c.actual_failure.as_ref().map_or_else(
                || "no failure within 14 d".into(),
                |f| format!("failed {f}"),
            );
            let _ = writeln!(
                out,
                "{} {:<10} {:<8} {:<11} {:<17} {:<28} {}",
                if c.judged { ' ' } else { '~' },
                c.asset,
                c.priority,
                c.mode,
                c.opened,
                predicted,
                happened
            );
        }
        if self.cases.iter().any(|c| !c.judged) {
            let _ = writeln!(
                out,
                "  (~ raised during the {}-day warm-up: listed, not judged)",
                self.days_replayed - self.days_judged
            );
        }
        let lead = self
            .median_lead_time_hours
            .map_or_else(|| "-".into(), |h| format!("{h:.0} h ({:.1} d)", h / 24.0));
        let _ = writeln!(
            out,
            "\nPrediction quality, last {} days of the replay against the simulator's ground truth",
            self.days_judged
        );
        let _ = writeln!(
            out,
            "  {} failures, {} caught by a Case of the right mode up to 14 days ahead: recall {:.2}",
            self.failures_in_window, self.failures_caught, self.case_recall
        );
        let _ = writeln!(
            out,
            "  precision {:.2} ({} false alarms), median lead time {lead}",
            self.case_precision, self.false_alarms
        );
        let _ = writeln!(
            out,
            "  model trained on {} assets / {} Work Orders of simulated history",
            self.trained_on_assets, self.trained_on_work_orders
        );
        let _ = writeln!(out, "\nPipeline");
        let _ = writeln!(out, "  broker     {}", self.broker);
        let _ = writeln!(
            out,
            "  fleet      {} assets, {} days of fleet time; {} messages ({} malformed on purpose), {} acknowledged by the broker; {} readings",
            self.assets, self.days_replayed, self.messages_published, self.malformed_messages_published, self.messages_acknowledged_by_broker, self.readings_published
        );
        let _ = writeln!(
            out,
            "  edge       {} received, {} spooled (fsynced before PUBACK), {} forwarded, {} dropped; rejected: {} (a killed agent's counters as of its last /metrics read)",
            self.edge_readings_received,
            self.edge_readings_spooled,
            self.edge_readings_forwarded,
            self.edge_readings_dropped,
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
        if self.faults_injected {
            let _ = writeln!(
                out,
                "  outage     uplink cut and cloud killed and restarted: spool backlog peaked at {} records",
                self.peak_spool_backlog_records
            );
            let _ = writeln!(
                out,
                "             the restarted cloud restored {} assets from checkpoints, skipped {} readings it had already scored, did not re-emit {} changes",
                self.cloud_assets_restored,
                self.cloud_readings_skipped_on_replay,
                self.cloud_changes_not_reemitted
            );
        } else {
            let _ = writeln!(out, "  faults     none injected (--no-faults)");
        }
        if self.edge_kills > 0 {
            let _ = writeln!(
                out,
                "  power cut  edge agent killed with SIGKILL {} time(s) and restarted on its spool; {} broker redeliveries recognised and skipped",
                self.edge_kills, self.edge_redeliveries_skipped
            );
        }
        let _ = writeln!(
            out,
            "  cloud      {} readings committed ({} from backfill), {} duplicate batches re-acknowledged",
            self.readings_ingested, self.cloud_readings_historical, self.duplicates_dropped
        );
        if let Some(dir) = &self.archive_dir {
            let _ = writeln!(
                out,
                "  archive    {} readings in {} Parquet files over {} UTC days, {} bytes ({:.2} bytes/reading), in {dir}",
                self.archive_rows,
                self.archive_files,
                self.archive_days,
                self.archive_bytes,
                self.archive_bytes_per_reading
            );
        }
        let _ = writeln!(
            out,
            "  latency    sensor-to-Case (MQTT publish → Case created in Salesforce): p50 {} ms, p99 {} ms",
            self.latency_ms_p50, self.latency_ms_p99
        );
        let _ = writeln!(
            out,
            "  result     {} readings lost, {} duplicated; edge shut down within its grace period: {}",
            self.readings_lost,
            self.readings_duplicated,
            if self.edge_finished_in_grace { "yes" } else { "no" }
        );
        out
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `p`-th percentile (0–100) of `values`, or 0 when empty.
fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}
