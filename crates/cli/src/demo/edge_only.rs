//! `fieldpulse demo --edge-only`: the gateway half alone, in about twenty
//! seconds. The live fleet is replayed over MQTT into the edge agent (its own
//! process), which spools and forwards to the cloud's ingest endpoint alone
//! (`fieldpulse_cloud::ingest` over the durable `IngestLog`, no scoring, no
//! Salesforce). Midway the uplink is cut for a while, then the agent is killed
//! with SIGKILL and restarted on its spool; the summary accounts for every
//! reading.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fieldpulse_cloud::ingest::{GatewayToken, Ingest, IngestConfig};
use fieldpulse_cloud::log::{IngestLog, LogConfig};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::edge_process::EdgeCounters;
use super::publisher::{self, FleetPlan, PublishStats};
use super::scenario::{self, ScenarioConfig, DAY_MS};
use super::{
    broker, kill_and_restart_edge, progress, random_token, start_edge, uplink, watch_peak_spool,
    DemoArgs, GATEWAY_ID,
};

/// What `--edge-only` prints and writes to `summary.json`.
#[derive(Debug, Serialize)]
pub struct EdgeOnlySummary {
    /// Which MQTT broker carried the run.
    pub broker: String,
    /// Assets replayed.
    pub assets: usize,
    /// Days of fleet time replayed.
    pub days_replayed: u64,
    /// Wall time of the run, seconds.
    pub wall_seconds: f64,
    /// MQTT messages published (valid and malformed).
    pub messages_published: u64,
    /// Of those, malformed on purpose.
    pub malformed_messages_published: u64,
    /// PUBACKs the broker returned to the fleet.
    pub messages_acknowledged_by_broker: u64,
    /// Valid readings published (each must reach the ingest log exactly once).
    pub readings_published: u64,
    /// Readings the ingest committed to its log.
    pub readings_ingested: u64,
    /// Published readings that never reached the log (must be 0).
    pub readings_lost: u64,
    /// Readings committed more than once (must be 0).
    pub readings_duplicated: u64,
    /// Batches the ingest recognised as already committed and acknowledged again.
    pub duplicates_dropped: u64,
    /// Readings the edge rejected (a killed agent's count as of its last read).
    pub rejected: u64,
    /// Readings the ingest committed from backfill batches.
    pub readings_historical: u64,
    /// Largest spool backlog during the uplink cut, records.
    pub peak_spool_backlog_records: u64,
    /// Times the edge agent was killed with SIGKILL and restarted.
    pub edge_kills: u32,
    /// The agent drained and exited cleanly after SIGTERM.
    pub edge_finished_in_grace: bool,
    /// Compressed bytes per reading on the edge → cloud wire.
    pub bytes_per_reading_on_wire: f64,
}

impl EdgeOnlySummary {
    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        format!(
            "\nfieldpulse demo --edge-only: summary ({:.0} s)\n  \
             fleet      {} assets, {} days of fleet time; {} messages ({} malformed on purpose), {} acknowledged by the broker ({})\n  \
             readings   {} published, {} ingested, {} lost, {} duplicated; {} duplicate batches re-acknowledged; {} rejected at the edge\n  \
             faults     uplink cut (spool backlog peaked at {} records, {} readings backfilled as historical); edge killed with SIGKILL {} time(s) and restarted on its spool\n  \
             wire       {:.2} bytes/reading; edge shut down within its grace period: {}\n",
            self.wall_seconds,
            self.assets,
            self.days_replayed,
            self.messages_published,
            self.malformed_messages_published,
            self.messages_acknowledged_by_broker,
            self.broker,
            self.readings_published,
            self.readings_ingested,
            self.readings_lost,
            self.readings_duplicated,
            self.duplicates_dropped,
            self.rejected,
            self.peak_spool_backlog_records,
            self.readings_historical,
            self.edge_kills,
            self.bytes_per_reading_on_wire,
            if self.edge_finished_in_grace { "yes" } else { "no" },
        )
    }
}

/// Runs the edge-only demo in `out` (already emptied and created).
pub async fn run(args: &DemoArgs, out: &Path) -> anyhow::Result<EdgeOnlySummary> {
    let wall = std::time::Instant::now();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let cfg = ScenarioConfig {
        assets: args.assets,
        history_assets: args.history_assets,
        warmup_days: args.warmup_days,
        days: args.days,
        seed: args.seed,
    };
    progress(
        args,
        &format!(
            "simulating the fleet: {} assets, {} days",
            args.assets,
            args.warmup_days + args.days
        ),
    );
    let (names, readings, start_ms, end_ms) =
        tokio::task::spawn_blocking(move || scenario::live_fleet(&cfg))
            .await
            .context("fleet task")??;

    // The cloud's ingest alone: token-authenticated, durable log.
    let token = random_token();
    std::fs::write(out.join("gateway.token"), &token).context("writing the gateway token")?;
    let (log, recovered) = IngestLog::open(&out.join("ingest-log"), LogConfig::default())
        .context("opening the ingest log")?;
    let ingest = Ingest::new(
        IngestConfig {
            tokens: vec![GatewayToken::from_plaintext(GATEWAY_ID, &token)],
            ..IngestConfig::default()
        },
        log,
        &recovered,
    )
    .context("building the ingest")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the ingest")?;
    let ingest_addr = listener.local_addr()?;
    let server = tokio::spawn(Arc::clone(&ingest).serve(listener, shutdown.child_token()));
    progress(args, &format!("cloud ingest serving on {ingest_addr}"));
    let uplink = uplink::Uplink::start(ingest_addr).await?;

    let (broker, broker_kind) = match args.broker {
        Some(addr) => (addr, format!("external {addr}")),
        None => (broker::start()?, "rumqttd (embedded)".to_string()),
    };
    let age_days = (fieldpulse_edge::clock::now_ms() - start_ms).max(0) / DAY_MS + 2;
    let mut edge = start_edge(broker, uplink.addr, out, age_days as u64).await?;
    let edge_watch = edge.watch();

    let stats = Arc::new(PublishStats::default());
    let plan = FleetPlan {
        names,
        readings,
        start_ms,
        end_ms,
        duration: args.duration(),
    };
    progress(
        args,
        &format!(
            "replaying {} scans over MQTT in about {:?}",
            plan.readings.len(),
            args.duration()
        ),
    );
    let started = tokio::time::Instant::now();
    let fleet = tokio::spawn(publisher::run(
        broker,
        plan,
        Arc::clone(&stats),
        shutdown.child_token(),
    ));
    let mut peak_spool = 0;
    if !args.no_faults {
        tokio::time::sleep(args.duration() / 4).await;
        progress(
            args,
            "uplink cut: the edge keeps accepting readings into its spool",
        );
        uplink.cut();
        peak_spool = watch_peak_spool(
            &edge_watch,
            (args.duration() / 4).max(Duration::from_secs(2)),
        )
        .await;
        uplink.restore(ingest_addr);
        progress(
            args,
            "uplink back: live data first, backlog drains as historical",
        );
        tokio::time::sleep_until(started + args.duration() * 5 / 8).await;
        if !fleet.is_finished() {
            kill_and_restart_edge(args, &mut edge).await?;
        }
    }
    fleet.await.context("publisher task")??;
    let expected = stats.valid_readings.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while ingest.stats().readings_ingested < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let edge_kills = edge.kills;
    let (edge_counters, clean) = edge.stop(Duration::from_secs(30)).await?;
    shutdown.cancel();
    server
        .await
        .context("ingest server task")?
        .context("ingest server")?;
    Ok(summarize(SummaryInputs {
        broker: broker_kind,
        args,
        published: &stats,
        ingested: ingest.stats(),
        edge: &edge_counters,
        edge_kills,
        clean,
        peak_spool,
        wall_seconds: wall.elapsed().as_secs_f64(),
    }))
}

struct SummaryInputs<'a> {
    broker: String,
    args: &'a DemoArgs,
    published: &'a PublishStats,
    ingested: fieldpulse_cloud::ingest::IngestStats,
    edge: &'a EdgeCounters,
    edge_kills: u32,
    clean: bool,
    peak_spool: u64,
    wall_seconds: f64,
}

fn summarize(c: SummaryInputs<'_>) -> EdgeOnlySummary {
    let published = c.published.valid_readings.load(Ordering::Relaxed);
    let ingested = c.ingested.readings_ingested;
    EdgeOnlySummary {
        broker: c.broker,
        assets: c.args.assets,
        days_replayed: c.args.warmup_days + c.args.days,
        wall_seconds: (c.wall_seconds * 10.0).round() / 10.0,
        messages_published: c.published.messages.load(Ordering::Relaxed),
        malformed_messages_published: c.published.malformed_messages.load(Ordering::Relaxed),
        messages_acknowledged_by_broker: c.published.pubacks.load(Ordering::Relaxed),
        readings_published: published,
        readings_ingested: ingested,
        readings_lost: published.saturating_sub(ingested),
        readings_duplicated: ingested.saturating_sub(published),
        duplicates_dropped: c.ingested.duplicate_batches,
        rejected: c.edge.rejected_total(),
        readings_historical: c.ingested.readings_historical,
        peak_spool_backlog_records: c.peak_spool,
        edge_kills: c.edge_kills,
        edge_finished_in_grace: c.clean,
        bytes_per_reading_on_wire: (c.edge.wire_bytes as f64
            / c.edge.readings_forwarded.max(1) as f64
            * 100.0)
            .round()
            / 100.0,
    }
}
