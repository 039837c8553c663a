//! The real cloud ingest (`fieldpulse-cloud`) with its durable log, as the receiver of tests that
//! assert exact sets: every reading the edge acknowledged is in the log exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_cloud::ingest::{GatewayToken, Ingest, IngestConfig};
use fieldpulse_cloud::log::{BatchSource, IngestLog, LogConfig, LogConsumer};
use tokio_util::sync::CancellationToken;

/// (asset, sensor, ts_ms, value bits) -> times it is in the log.
pub type ReadingCounts = BTreeMap<(String, String, i64, u64), u32>;

/// Adds every reading of `batch` to `counts`.
pub fn count_batch(batch: &fieldpulse_proto::v1::Batch, counts: &mut ReadingCounts) {
    for series in &batch.series {
        for (ts_ms, value) in series.points() {
            *counts
                .entry((
                    series.asset_id.clone(),
                    series.sensor.clone(),
                    ts_ms,
                    value.to_bits(),
                ))
                .or_default() += 1;
        }
    }
}

/// A running ingest on 127.0.0.1 with a log under the test's directory; the token of gateway
/// `gw-test` is `test-token` (what [`super::EdgeOptions`] configures).
pub struct RealCloud {
    /// The ingest (for its stats).
    pub ingest: Arc<Ingest<IngestLog>>,
    /// The base URL the edge posts to.
    pub url: String,
    consumer: LogConsumer,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), fieldpulse_cloud::ingest::IngestError>>,
}

impl RealCloud {
    /// Opens the log in `<dir>/ingest-log` and serves on a free port.
    pub async fn start(dir: &Path) -> Self {
        Self::start_in(&dir.join("ingest-log"), |_| {}).await
    }

    /// Opens the log in `log_dir` and serves on a free port, with the ingest settings adjusted
    /// by `adjust` (e.g. a small `max_readings_per_batch`).
    pub async fn start_in(log_dir: &Path, adjust: impl FnOnce(&mut IngestConfig)) -> Self {
        let (log, recovered) = IngestLog::open(log_dir, LogConfig::default()).unwrap();
        let consumer = log.consumer("test").unwrap();
        let mut config = IngestConfig {
            tokens: vec![GatewayToken::from_plaintext("gw-test", "test-token")],
            ..IngestConfig::default()
        };
        adjust(&mut config);
        let ingest = Ingest::new(config, log, &recovered).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn(Arc::clone(&ingest).serve(listener, stop.clone()));
        Self {
            ingest,
            url,
            consumer,
            stop,
            server,
        }
    }

    /// Every reading committed to the log so far, counted.
    pub fn readings(&mut self) -> ReadingCounts {
        let mut counts = ReadingCounts::new();
        let mut from = 0;
        while from < self.consumer.end_offset() {
            let records = self
                .consumer
                .read(from, 1000, Duration::from_millis(100))
                .expect("read the ingest log");
            for record in &records {
                count_batch(&record.batch, &mut counts);
                from = record.offset + 1;
            }
        }
        counts
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.stop.cancel();
        self.server.await.unwrap().unwrap();
    }
}
