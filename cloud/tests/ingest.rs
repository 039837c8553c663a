//! `POST /v1/batches` over real HTTP on an ephemeral port.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use fieldpulse_cloud::ingest::{
    BatchLog, BatchSink, GatewayToken, Ingest, IngestConfig, Recovered, SinkError,
};
use fieldpulse_proto::v1::{Batch, BatchAck, Series};
use fieldpulse_proto::Message;
use tokio_util::sync::CancellationToken;

/// A sink that counts commits and can be told to fail.
#[derive(Clone, Default)]
struct FlakySink {
    commits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl BatchSink for FlakySink {
    async fn commit(&self, _batch: &Batch, _encoded: bytes::Bytes) -> Result<(), SinkError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::new("disk unavailable"));
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
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

async fn start<S: BatchSink>(
    config: IngestConfig,
    sink: S,
    recovered: &Recovered,
) -> (Server, Arc<Ingest<S>>) {
    let ingest = Ingest::new(config, sink, recovered);
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
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-encoding", "zstd")
        .header("idempotency-key", batch.idempotency_key())
        .body(body);
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
    let (server, ingest) =
        start(IngestConfig::default(), sink.clone(), &Recovered::default()).await;
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
    assert_eq!(ingest.contiguous_seq("gw-a"), 3);
}

#[tokio::test]
async fn sink_failure_answers_503_and_the_retry_commits() {
    let sink = FlakySink::default();
    let (server, ingest) =
        start(IngestConfig::default(), sink.clone(), &Recovered::default()).await;
    sink.failing.store(true, Ordering::SeqCst);
    assert_eq!(post(&server.url, None, &batch("gw", 1, true)).await.0, 503);
    sink.failing.store(false, Ordering::SeqCst);
    let (status, ack) = post(&server.url, None, &batch("gw", 1, true)).await;
    assert_eq!((status, ack.unwrap().contiguous_seq), (200, 1));
    assert_eq!(ingest.stats().readings_historical, 3);
    let metrics = reqwest::get(server.url.replace("/v1/batches", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("fieldpulse_cloud_batches_rejected_total{reason=\"unavailable\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_authenticate_their_own_gateway_only() {
    let config = IngestConfig {
        tokens: vec![GatewayToken {
            gateway_id: "gw-a".into(),
            token: "secret-a".into(),
        }],
        ..IngestConfig::default()
    };
    assert!(
        !format!("{config:?}").contains("secret-a"),
        "tokens must not appear in Debug"
    );
    let (server, ingest) = start(config, FlakySink::default(), &Recovered::default()).await;
    assert_eq!(
        post(&server.url, None, &batch("gw-a", 1, false)).await.0,
        401
    );
    assert_eq!(
        post(&server.url, Some("wrong"), &batch("gw-a", 1, false))
            .await
            .0,
        401
    );
    assert_eq!(
        post(&server.url, Some("secret-a"), &batch("gw-b", 1, false))
            .await
            .0,
        403
    );
    assert_eq!(
        post(&server.url, Some("secret-a"), &batch("gw-a", 1, false))
            .await
            .0,
        200
    );
    assert_eq!(ingest.stats().rejected_batches, 3);
}

#[tokio::test]
async fn malformed_requests_are_rejected_with_reasons() {
    let (server, ingest) = start(
        IngestConfig::default(),
        FlakySink::default(),
        &Recovered::default(),
    )
    .await;
    let client = reqwest::Client::new();
    let garbage = client
        .post(&server.url)
        .header("content-encoding", "zstd")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
    let not_protobuf = client
        .post(&server.url)
        .body(vec![0xff; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(not_protobuf.status().as_u16(), 400);
    let mut wrong_key = batch("gw", 7, false);
    let body = wrong_key.encode_to_vec();
    wrong_key.seq = 8;
    let res = client
        .post(&server.url)
        .header("idempotency-key", wrong_key.idempotency_key())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let mut bad_series = batch("gw", 9, false);
    bad_series.series[0].values.pop();
    assert_eq!(post(&server.url, None, &bad_series).await.0, 400);
    assert_eq!(ingest.stats().rejected_batches, 4);
    assert_eq!(ingest.stats().batches_committed, 0);
}

#[tokio::test]
async fn a_restarted_ingest_still_knows_committed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.log");
    {
        let (log, recovered) = BatchLog::open(&path).unwrap();
        let (server, _) = start(IngestConfig::default(), log, &recovered).await;
        assert_eq!(post(&server.url, None, &batch("gw", 2, false)).await.0, 200);
    }
    let (log, recovered) = BatchLog::open(&path).unwrap();
    let (server, ingest) = start(IngestConfig::default(), log, &recovered).await;
    assert_eq!(post(&server.url, None, &batch("gw", 2, false)).await.0, 200);
    assert_eq!(ingest.stats().duplicate_batches, 1);
    assert_eq!(ingest.stats().batches_committed, 0);
}
