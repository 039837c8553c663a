//! `POST /v1/batches` over real HTTP on an ephemeral port.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fieldpulse_cloud::ingest::{
    BatchSink, GatewayToken, Ingest, IngestConfig, IngestError, SinkError,
};
use fieldpulse_cloud::log::{BatchSource, IngestLog, LogConfig, Recovered};
use fieldpulse_proto::v1::{Batch, BatchAck, Series};
use fieldpulse_proto::Message;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A sink that counts commits, can be told to fail, and can hold commits
/// until the test lets them through.
#[derive(Clone)]
struct FlakySink {
    commits: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    gate: Arc<Semaphore>,
}

impl Default for FlakySink {
    fn default() -> Self {
        Self {
            commits: Arc::default(),
            started: Arc::default(),
            finished: Arc::default(),
            failing: Arc::default(),
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
        }
    }
}

impl FlakySink {
    /// A sink whose commits wait until `release`.
    fn held() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            ..Self::default()
        }
    }

    fn release(&self) {
        self.gate.add_permits(1000);
    }

    async fn wait_started(&self, n: usize) {
        wait_until(|| self.started.load(Ordering::SeqCst) >= n).await;
    }
}

impl BatchSink for FlakySink {
    async fn commit(&self, _batch: &Batch, _encoded: bytes::Bytes) -> Result<(), SinkError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.expect("the gate stays open");
        let res = if self.failing.load(Ordering::SeqCst) {
            Err(SinkError::new("disk unavailable"))
        } else {
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        self.finished.fetch_add(1, Ordering::SeqCst);
        res
    }
}

/// Polls `done` until it holds (10 s at most).
async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Server {
    url: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    async fn metrics(&self) -> String {
        reqwest::get(self.url.replace("/v1/batches", "/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn dev_config() -> IngestConfig {
    IngestConfig {
        insecure_dev_no_auth: true,
        ..IngestConfig::default()
    }
}

async fn start<S: BatchSink>(
    config: IngestConfig,
    sink: S,
    recovered: &Recovered,
) -> (Server, Arc<Ingest<S>>) {
    let ingest = Ingest::new(config, sink, recovered).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/batches", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(Arc::clone(&ingest).serve(listener, shutdown.clone()));
    (Server { url, shutdown }, ingest)
}

fn batch(gateway: &str, seq: u64, historical: bool) -> Batch {
    let mut series = Series {
        asset_id: "pump-1".into(),
        sensor: "temp".into(),
        ..Default::default()
    };
    for i in 0..3 {
        series.push(1_700_000_000_000 + i * 1000, 20.0 + i as f64);
    }
    Batch {
        gateway_id: gateway.into(),
        seq,
        historical,
        series: vec![series],
        ..Default::default()
    }
}

async fn post(url: &str, token: Option<&str>, batch: &Batch) -> (u16, Option<BatchAck>) {
    let body = zstd::encode_all(batch.encode_to_vec().as_slice(), 3).unwrap();
    post_raw(url, token, &batch.idempotency_key(), Some("zstd"), body).await
}

async fn post_raw(
    url: &str,
    token: Option<&str>,
    idempotency_key: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Option<BatchAck>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("idempotency-key", idempotency_key)
        .body(body);
    if let Some(encoding) = encoding {
        req = req.header("content-encoding", encoding);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    let ack = (status == 200).then(|| BatchAck::decode(bytes.as_ref()).unwrap());
    (status, ack)
}

#[tokio::test]
async fn out_of_order_and_repeated_batches_are_committed_exactly_once() {
    let sink = FlakySink::default();
    let (server, ingest) = start(dev_config(), sink.clone(), &Recovered::default()).await;
    for seq in [3, 1, 3, 2, 1] {
        let (status, ack) = post(&server.url, None, &batch("gw-a", seq, false)).await;
        assert_eq!(status, 200);
        assert_eq!(ack.unwrap().seq, seq);
    }
    assert_eq!(sink.commits.load(Ordering::SeqCst), 3);
    let stats = ingest.stats();
    assert_eq!(stats.batches_committed, 3);
    assert_eq!(stats.duplicate_batches, 2);
    assert_eq!(stats.readings_ingested, 9);
    assert_eq!(ingest.contiguous_seq("gw-a", 0), 3);
}

#[tokio::test]
async fn a_new_spool_epoch_restarts_seqs_as_new_data() {
    let sink = FlakySink::default();
    let (server, ingest) = start(dev_config(), sink.clone(), &Recovered::default()).await;
    let with_epoch = |seq, epoch| Batch {
        spool_epoch: epoch,
        ..batch("gw", seq, false)
    };
    for seq in 1..=3 {
        let (status, ack) = post(&server.url, None, &with_epoch(seq, 0xA)).await;
        assert_eq!(status, 200);
        assert_eq!(ack.unwrap().spool_epoch, 0xA);
    }
    // The wiped spool's first batch is new data, not a duplicate of seq 1.
    let (status, ack) = post(&server.url, None, &with_epoch(1, 0xB)).await;
    let ack = ack.unwrap();
    assert_eq!(status, 200);
    assert_eq!((ack.seq, ack.contiguous_seq, ack.spool_epoch), (1, 1, 0xB));
    assert_eq!(sink.commits.load(Ordering::SeqCst), 4);
    // A late retry of the old epoch is still recognised.
    let (_, ack) = post(&server.url, None, &with_epoch(2, 0xA)).await;
    assert_eq!(ack.unwrap().contiguous_seq, 3);
    assert_eq!(sink.commits.load(Ordering::SeqCst), 4);
    assert_eq!(ingest.stats().duplicate_batches, 1);
    assert_eq!(ingest.contiguous_seq("gw", 0xA), 3);
    assert_eq!(ingest.contiguous_seq("gw", 0xB), 1);
}

#[tokio::test]
async fn sink_failure_answers_503_and_the_retry_commits() {
    let sink = FlakySink::default();
    let (server, ingest) = start(dev_config(), sink.clone(), &Recovered::default()).await;
    sink.failing.store(true, Ordering::SeqCst);
    assert_eq!(post(&server.url, None, &batch("gw", 1, true)).await.0, 503);
    sink.failing.store(false, Ordering::SeqCst);
    let (status, ack) = post(&server.url, None, &batch("gw", 1, true)).await;
    assert_eq!((status, ack.unwrap().contiguous_seq), (200, 1));
    assert_eq!(ingest.stats().readings_historical, 3);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("fieldpulse_cloud_batches_rejected_total{reason=\"unavailable\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_gives_up_mid_commit_does_not_cancel_it() {
    let sink = FlakySink::held();
    let (server, ingest) = start(dev_config(), sink.clone(), &Recovered::default()).await;
    let url = server.url.clone();
    let client = tokio::spawn(async move { post(&url, None, &batch("gw", 1, false)).await });
    sink.wait_started(1).await;
    // The gateway's request times out: its connection is closed mid-commit.
    client.abort();
    assert!(client.await.unwrap_err().is_cancelled());
    sink.release();
    // The commit finishes on its own, with nobody waiting for it...
    wait_until(|| sink.commits.load(Ordering::SeqCst) == 1).await;
    // ...and the slot it held is free: the retry is acked, not 503.
    let (status, ack) = post(&server.url, None, &batch("gw", 1, false)).await;
    assert_eq!((status, ack.unwrap().seq), (200, 1));
    assert_eq!(sink.commits.load(Ordering::SeqCst), 1);
    assert_eq!(ingest.stats().batches_committed, 1);
    assert_eq!(ingest.stats().duplicate_batches, 1);
}

#[tokio::test]
async fn a_client_that_gives_up_before_a_failed_commit_leaves_the_slot_free() {
    let sink = FlakySink::held();
    sink.failing.store(true, Ordering::SeqCst);
    let (server, _) = start(dev_config(), sink.clone(), &Recovered::default()).await;
    let url = server.url.clone();
    let client = tokio::spawn(async move { post(&url, None, &batch("gw", 1, false)).await });
    sink.wait_started(1).await;
    client.abort();
    assert!(client.await.unwrap_err().is_cancelled());
    sink.release();
    // The failed commit ran to its end although nobody waited for it...
    wait_until(|| sink.finished.load(Ordering::SeqCst) == 1).await;
    sink.failing.store(false, Ordering::SeqCst);
    // ...and released its slot: the retry commits (never 503 forever).
    let (status, ack) = post(&server.url, None, &batch("gw", 1, false)).await;
    assert_eq!((status, ack.unwrap().seq), (200, 1));
    assert_eq!(sink.commits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_retry_racing_its_original_gets_the_same_ack() {
    let sink = FlakySink::held();
    let (server, ingest) = start(dev_config(), sink.clone(), &Recovered::default()).await;
    let send = || {
        let url = server.url.clone();
        tokio::spawn(async move { post(&url, None, &batch("gw", 5, false)).await })
    };
    let original = send();
    sink.wait_started(1).await;
    let mut retry = send();
    // The retry waits for the original instead of answering 503.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut retry)
            .await
            .is_err(),
        "the retry answered before the original committed"
    );
    sink.release();
    let (status_a, ack_a) = original.await.unwrap();
    let (status_b, ack_b) = retry.await.unwrap();
    assert_eq!((status_a, status_b), (200, 200));
    assert_eq!(ack_a, ack_b);
    assert_eq!(sink.commits.load(Ordering::SeqCst), 1);
    assert_eq!(sink.started.load(Ordering::SeqCst), 1);
    assert_eq!(ingest.stats().duplicate_batches, 1);
}

#[tokio::test]
async fn tokens_are_hashed_and_authenticate_their_own_gateway_only() {
    let hex: String = Sha256::digest(b"secret-b")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = IngestConfig {
        tokens: vec![
            GatewayToken::from_plaintext("gw-a", "secret-a"),
            GatewayToken::from_sha256_hex("gw-b", &hex).unwrap(),
        ],
        ..IngestConfig::default()
    };
    assert!(
        !format!("{config:?}").contains("secret-a"),
        "tokens must not appear in Debug"
    );
    assert!(matches!(
        GatewayToken::from_sha256_hex("gw-c", "abc"),
        Err(IngestError::TokenHex { .. })
    ));
    assert!(GatewayToken::from_sha256_hex("gw-c", &"zz".repeat(32)).is_err());
    let (server, ingest) = start(config, FlakySink::default(), &Recovered::default()).await;
    let url = &server.url;
    assert_eq!(post(url, None, &batch("gw-a", 1, false)).await.0, 401);
    assert_eq!(
        post(url, Some("wrong"), &batch("gw-a", 1, false)).await.0,
        401
    );
    assert_eq!(
        post(url, Some("secret-a"), &batch("gw-b", 1, false))
            .await
            .0,
        403
    );
    assert_eq!(
        post(url, Some("secret-a"), &batch("gw-a", 1, false))
            .await
            .0,
        200
    );
    assert_eq!(
        post(url, Some("secret-b"), &batch("gw-b", 1, false))
            .await
            .0,
        200
    );
    assert_eq!(ingest.stats().rejected_batches, 3);
}

#[tokio::test]
async fn no_tokens_is_refused_unless_insecure_dev_on_loopback() {
    let refused = Ingest::new(
        IngestConfig::default(),
        FlakySink::default(),
        &Recovered::default(),
    );
    assert!(matches!(refused, Err(IngestError::NoTokens)));
    let ingest = Ingest::new(dev_config(), FlakySink::default(), &Recovered::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let res = ingest.serve(listener, CancellationToken::new()).await;
    assert!(
        matches!(res, Err(IngestError::InsecureListener { .. })),
        "{res:?}"
    );
}

#[tokio::test]
async fn malformed_requests_are_rejected_with_reasons() {
    let (server, ingest) = start(dev_config(), FlakySink::default(), &Recovered::default()).await;
    let url = &server.url;
    assert_eq!(
        post_raw(url, None, "gw/1", Some("zstd"), vec![1, 2, 3])
            .await
            .0,
        400
    );
    assert_eq!(
        post_raw(url, None, "gw/1", None, vec![0xff; 16]).await.0,
        400
    );
    assert_eq!(
        post_raw(url, None, "gw/1", Some("br"), vec![0; 4]).await.0,
        415
    );
    let body = batch("gw", 7, false).encode_to_vec();
    assert_eq!(post_raw(url, None, "gw/8", None, body).await.0, 400);
    let mut bad_series = batch("gw", 9, false);
    bad_series.series[0].values.pop();
    assert_eq!(post(url, None, &bad_series).await.0, 400);
    assert_eq!(ingest.stats().rejected_batches, 5);
    assert_eq!(ingest.stats().batches_committed, 0);
    let metrics = server.metrics().await;
    for (reason, n) in [("encoding", 2), ("decode", 1), ("malformed", 2)] {
        let line = format!("fieldpulse_cloud_batches_rejected_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

/// Encodes `Batch` fields by hand, so a test can build what the prost types
/// would refuse to hold in memory.
fn wire_batch(gateway: &str, seq: u64, series_entries: &[u8], n_entries: usize) -> Vec<u8> {
    let mut out = vec![0x0a, gateway.len() as u8];
    out.extend_from_slice(gateway.as_bytes());
    out.push(0x10);
    out.push(seq as u8);
    out.reserve(series_entries.len() * n_entries);
    for _ in 0..n_entries {
        out.extend_from_slice(series_entries);
    }
    out
}

#[tokio::test]
async fn memory_bombs_are_refused_with_413_and_counted() {
    let config = IngestConfig {
        max_decoded_bytes: 8 << 20,
        max_body_bytes: 1 << 20,
        max_readings_per_batch: 10_000,
        ..dev_config()
    };
    let (server, ingest) = start(config, FlakySink::default(), &Recovered::default()).await;
    let url = &server.url;

    // 64 MiB of zeros in a few KB of zstd.
    let zeros = zstd::encode_all(vec![0u8; 64 << 20].as_slice(), 3).unwrap();
    assert!(zeros.len() < 64 << 10);
    assert_eq!(
        post_raw(url, None, "gw/1", Some("zstd"), zeros).await.0,
        413
    );

    // Three million empty `Series` (two bytes each on the wire) in a few KB.
    let empty_series = wire_batch("gw", 1, &[0x32, 0x00], 3_000_000);
    let too_many_series = zstd::encode_all(empty_series.as_slice(), 3).unwrap();
    assert!(too_many_series.len() < 64 << 10);
    let config_limit = IngestConfig {
        max_decoded_bytes: 64 << 20,
        ..dev_config()
    };
    let (server_big, ingest_big) =
        start(config_limit, FlakySink::default(), &Recovered::default()).await;
    assert_eq!(
        post_raw(&server_big.url, None, "gw/1", Some("zstd"), too_many_series)
            .await
            .0,
        413
    );

    // One series with 20 000 values (over the 10 000 readings limit).
    let mut series = Series {
        asset_id: "a".into(),
        sensor: "s".into(),
        ..Default::default()
    };
    for i in 0..20_000 {
        series.push(i, 1.0);
    }
    let big = Batch {
        series: vec![series],
        ..batch("gw", 2, false)
    };
    assert_eq!(post(url, None, &big).await.0, 413);

    // A body over the limit before any decoding.
    assert_eq!(
        post_raw(url, None, "gw/3", None, vec![0x0a; 2 << 20])
            .await
            .0,
        413
    );
    // A zstd frame that asks for a 128 MiB window.
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    encoder.window_log(27).unwrap();
    encoder.long_distance_matching(true).unwrap();
    std::io::Write::write_all(&mut encoder, &batch("gw", 4, false).encode_to_vec()).unwrap();
    let wide_window = encoder.finish().unwrap();
    assert_eq!(
        post_raw(url, None, "gw/4", Some("zstd"), wide_window)
            .await
            .0,
        400
    );
    // Random bytes that zstd accepts but that are no Batch.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage = zstd::encode_all(garbage.as_slice(), 3).unwrap();
    assert_eq!(
        post_raw(url, None, "gw/5", Some("zstd"), garbage).await.0,
        400
    );

    let metrics = server.metrics().await;
    for (reason, n) in [
        ("too_large", 2),
        ("too_many_readings", 1),
        ("encoding", 1),
        ("decode", 1),
    ] {
        let line = format!("fieldpulse_cloud_batches_rejected_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    let metrics_big = server_big.metrics().await;
    assert!(
        metrics_big
            .contains("fieldpulse_cloud_batches_rejected_total{reason=\"too_many_series\"} 1"),
        "{metrics_big}"
    );
    assert_eq!(
        ingest.stats().batches_committed + ingest_big.stats().batches_committed,
        0
    );
    // Still serving.
    assert_eq!(post(url, None, &batch("gw", 6, false)).await.0, 200);
}

#[tokio::test]
async fn a_restarted_ingest_still_knows_committed_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
        let (server, _) = start(dev_config(), log, &recovered).await;
        assert_eq!(post(&server.url, None, &batch("gw", 2, false)).await.0, 200);
        let metrics = server.metrics().await;
        assert!(
            metrics.contains("fieldpulse_cloud_log_end_offset 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("fieldpulse_cloud_log_fsyncs_total 1"),
            "{metrics}"
        );
    }
    let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(recovered.end_offset, 1);
    let (server, ingest) = start(dev_config(), log.clone(), &recovered).await;
    assert_eq!(post(&server.url, None, &batch("gw", 2, false)).await.0, 200);
    assert_eq!(ingest.stats().duplicate_batches, 1);
    assert_eq!(ingest.stats().batches_committed, 0);
    assert_eq!(log.end_offset(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_share_fsyncs_in_the_log() {
    const N: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let (log, recovered) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
    let (server, ingest) = start(dev_config(), log.clone(), &recovered).await;
    let posts: Vec<_> = (1..=N)
        .map(|seq| {
            let url = server.url.clone();
            tokio::spawn(async move { post(&url, None, &batch("gw", seq, false)).await })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.unwrap().0, 200);
    }
    let stats = log.stats();
    // Printed for the record (`--nocapture`); timing is not asserted.
    eprintln!(
        "group commit over HTTP: {N} concurrent posts -> {} fsyncs",
        stats.fsyncs
    );
    assert_eq!((stats.batches_synced, stats.end_offset), (N, N));
    assert!(stats.fsyncs <= N);
    assert_eq!(ingest.contiguous_seq("gw", 0), N);
    let mut consumer = log.consumer("scorer").unwrap();
    let records = consumer.read(0, usize::MAX, Duration::ZERO).unwrap();
    let mut seqs: Vec<u64> = records.iter().map(|r| r.batch.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
}
