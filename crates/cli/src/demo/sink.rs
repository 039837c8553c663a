//! The demo's cloud-side sink: the real durable `IngestLog`, plus a switch that
//! simulates an uplink outage (the ingest answers 503, as a real cloud does
//! when it cannot commit) and per-reading end-to-end latency bookkeeping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fieldpulse_cloud::ingest::{BatchSink, SinkError};
use fieldpulse_cloud::log::{IngestLog, LogStats};
use fieldpulse_edge::clock::now_ms;
use fieldpulse_proto::v1::Batch;

/// Latencies (commit time minus reading timestamp), split by lane.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Readings that arrived in live batches, stamped outside the outage
    /// (steady-state latency).
    pub live_ms: Vec<u32>,
    /// Readings in live batches stamped during the outage (held back by it).
    pub live_during_outage_ms: Vec<u32>,
    /// Readings that arrived in historical (backfill) batches.
    pub historical_ms: Vec<u32>,
    /// `(first_live_commit_ms, first_historical_commit_ms)` after the outage:
    /// shows that live data overtook the backlog.
    pub first_commit_after_outage: (Option<i64>, Option<i64>),
}

/// An [`IngestLog`] that can be switched off.
#[derive(Clone)]
pub struct DemoSink {
    log: IngestLog,
    outage: Arc<AtomicBool>,
    outage_seen: Arc<AtomicBool>,
    /// `(start_ms, end_ms)` of the outage; `end_ms` is `i64::MAX` while it lasts.
    outage_window: Arc<Mutex<Option<(i64, i64)>>>,
    latencies: Arc<Mutex<Latencies>>,
}

impl DemoSink {
    /// Wraps `log`.
    pub fn new(log: IngestLog) -> Self {
        Self {
            log,
            outage: Arc::new(AtomicBool::new(false)),
            outage_seen: Arc::new(AtomicBool::new(false)),
            outage_window: Arc::default(),
            latencies: Arc::default(),
        }
    }

    /// Starts or ends the simulated outage.
    pub fn set_outage(&self, down: bool) {
        let mut window = self.outage_window.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        if down {
            self.outage_seen.store(true, Ordering::SeqCst);
            *window = Some((now, i64::MAX));
        } else if let Some((start, _)) = *window {
            *window = Some((start, now));
        }
        self.outage.store(down, Ordering::SeqCst);
    }

    /// Takes the latency record.
    pub fn take_latencies(&self) -> Latencies {
        std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl BatchSink for DemoSink {
    async fn commit(&self, batch: &Batch, encoded: Bytes) -> Result<(), SinkError> {
        if self.outage.load(Ordering::SeqCst) {
            return Err(SinkError::new("simulated uplink outage"));
        }
        self.log.commit(batch, encoded).await?;
        let now = now_ms();
        // Readings stamped shortly before the outage may have been in the batch
        // it held back; give the window a second of margin.
        let held_back = self
            .outage_window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or((i64::MAX, i64::MAX), |(start, end)| (start - 1_000, end));
        let mut lat = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        if self.outage_seen.load(Ordering::SeqCst) {
            let slot = if batch.historical {
                &mut lat.first_commit_after_outage.1
            } else {
                &mut lat.first_commit_after_outage.0
            };
            slot.get_or_insert(now);
        }
        for series in &batch.series {
            for (ts, _) in series.points() {
                let latency = (now - ts).clamp(0, i64::from(u32::MAX)) as u32;
                let lane = if batch.historical {
                    &mut lat.historical_ms
                } else if (held_back.0..=held_back.1).contains(&ts) {
                    &mut lat.live_during_outage_ms
                } else {
                    &mut lat.live_ms
                };
                lane.push(latency);
            }
        }
        Ok(())
    }

    fn log_stats(&self) -> Option<LogStats> {
        Some(self.log.stats())
    }
}

/// The `p`-th percentile (0–100) of `values`, or 0 when empty.
pub fn percentile(values: &mut [u32], p: f64) -> u32 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}
