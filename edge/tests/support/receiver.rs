//! An in-process HTTP receiver speaking the cloud's batch protocol: zstd + protobuf `Batch` in,
//! protobuf `BatchAck` out, dedupe by exact `(gateway, spool_epoch, seq)` membership. It records
//! every reading it commits, and can be told to answer 503, to answer 429/503 with a
//! `Retry-After`, or to send acks the edge must not accept (another spool epoch) or must question
//! (a contiguous seq the edge never sent). It can also serve HTTPS ([`Receiver::start_tls`]),
//! counting the TLS handshakes it refused.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use fieldpulse_proto::v1::{Batch, BatchAck};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// One committed reading, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub asset: String,
    pub sensor: String,
    pub ts_ms: i64,
    pub value: f64,
    pub seq: u64,
    pub historical: bool,
    /// The series' `receive_stamped` flag.
    pub receive_stamped: bool,
    /// The series' `held_back` flag.
    pub held_back: bool,
}

#[derive(Default)]
pub struct Inner {
    /// (gateway, spool epoch, seq) -> content fingerprint of the committed batch.
    committed: HashMap<(String, u64, u64), Vec<u8>>,
    /// Committed readings in commit order.
    pub readings: Vec<Got>,
    /// Re-sent batches (same gateway, spool epoch and seq).
    pub duplicate_batches: u64,
    /// Re-sent batches whose readings differ from the first copy (must stay 0).
    pub duplicate_mismatches: u64,
    /// Requests refused: bad auth, bad idempotency key, undecodable body.
    pub bad_requests: Vec<String>,
    /// Requests answered 503.
    pub refused_503: u64,
    /// Committed seqs per spool epoch.
    pub epoch_seqs: HashMap<u64, BTreeSet<u64>>,
    /// When each request arrived, in order.
    pub arrivals: Vec<std::time::Instant>,
    /// Requests answered with a `Retry-After`, as indexes into `arrivals`.
    pub retry_after_refusals: Vec<usize>,
}

struct Shared {
    inner: Mutex<Inner>,
    unavailable: AtomicBool,
    /// Answer every batch with this status (a permanent rejection), when non-zero.
    reject_status: std::sync::atomic::AtomicU16,
    /// Added (wrapping) to the spool epoch the ack echoes: non-zero acks another epoch.
    ack_epoch_offset: AtomicU64,
    /// When non-zero, the ack's `contiguous_seq`.
    ack_contiguous_seq: AtomicU64,
    /// The gateway token accepted (`test-token` unless changed).
    token: Mutex<String>,
    /// Answer the next request with this status and `Retry-After` value (once).
    retry_after: Mutex<Option<(u16, String)>>,
    /// TLS handshakes that failed (HTTPS only).
    tls_handshake_failures: AtomicU64,
}

/// The running receiver.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tls: bool,
}

/// Accepts TCP connections and completes the server side of TLS; failed handshakes are counted
/// and skipped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            match tokio::time::timeout(Duration::from_secs(5), handshake).await {
                Ok(Ok(stream)) => return (stream, addr),
                _ => {
                    self.shared
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Self::shared();
        let stop = Self::serve(listener, &shared);
        Self {
            addr,
            shared,
            stop,
            tls: false,
        }
    }

    /// Binds 127.0.0.1:0 and serves HTTPS with `config` until dropped.
    pub async fn start_tls(config: rustls::ServerConfig) -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = tcp.local_addr().expect("receiver address");
        let shared = Self::shared();
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            shared: Arc::clone(&shared),
        };
        let stop = Self::serve(listener, &shared);
        Self {
            addr,
            shared,
            stop,
            tls: true,
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            unavailable: AtomicBool::new(false),
            reject_status: std::sync::atomic::AtomicU16::new(0),
            ack_epoch_offset: AtomicU64::new(0),
            ack_contiguous_seq: AtomicU64::new(0),
            token: Mutex::new("test-token".into()),
            retry_after: Mutex::new(None),
            tls_handshake_failures: AtomicU64::new(0),
        })
    }

    fn serve<L>(listener: L, shared: &Arc<Shared>) -> CancellationToken
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let app = Router::new()
            .route("/v1/batches", post(handle))
            .with_state(Arc::clone(shared));
        let stop = CancellationToken::new();
        let server_stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .await
                .expect("receiver serves");
        });
        stop
    }

    /// Base URL for `forward.url` (`https://127.0.0.1:<port>` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// TLS handshakes the receiver refused or that failed (HTTPS only).
    pub fn tls_handshake_failures(&self) -> u64 {
        self.shared.tls_handshake_failures.load(Ordering::SeqCst)
    }

    /// Answer 503 (true) or serve normally (false).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Accepts only `token` from now on (a rotated gateway token).
    pub fn set_token(&self, token: &str) {
        *self.shared.token.lock().unwrap() = token.to_string();
    }

    /// Answer every batch with `status` (e.g. 422); 0 serves normally.
    pub fn set_reject_status(&self, status: u16) {
        self.shared.reject_status.store(status, Ordering::SeqCst);
    }

    /// Acks name the batch's spool epoch plus `offset` (wrapping); 0 echoes it. The batch is
    /// committed either way.
    pub fn set_ack_epoch_offset(&self, offset: u64) {
        self.shared.ack_epoch_offset.store(offset, Ordering::SeqCst);
    }

    /// Acks claim this `contiguous_seq`; 0 reports the true one.
    pub fn set_ack_contiguous_seq(&self, seq: u64) {
        self.shared.ack_contiguous_seq.store(seq, Ordering::SeqCst);
    }

    /// Answers the next batch request with `status` and `Retry-After: value` (once).
    pub fn refuse_next_with_retry_after(&self, status: u16, value: &str) {
        *self.shared.retry_after.lock().unwrap() = Some((status, value.to_string()));
    }

    /// Runs `f` on the recorded state.
    pub fn with<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.shared.inner.lock().unwrap())
    }

    /// Committed readings so far.
    pub fn n_readings(&self) -> usize {
        self.with(|inner| inner.readings.len())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Records the arrival, answers with a pending `Retry-After` refusal or handles the batch.
async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrival = {
        let mut inner = shared.inner.lock().unwrap();
        inner.arrivals.push(std::time::Instant::now());
        inner.arrivals.len() - 1
    };
    let refusal = shared.retry_after.lock().unwrap().take();
    if let Some((status, value)) = refusal {
        shared
            .inner
            .lock()
            .unwrap()
            .retry_after_refusals
            .push(arrival);
        let status = StatusCode::from_u16(status).expect("a valid status");
        return (status, [(RETRY_AFTER, value)]).into_response();
    }
    handle_batch(State(shared), headers, body)
        .await
        .into_response()
}

async fn handle_batch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let refuse = |reason: String| {
        shared.inner.lock().unwrap().bad_requests.push(reason);
        (StatusCode::BAD_REQUEST, Vec::new())
    };
    let expected = format!("Bearer {}", shared.token.lock().unwrap());
    if header("authorization") != expected {
        shared
            .inner
            .lock()
            .unwrap()
            .bad_requests
            .push("auth".into());
        return (StatusCode::UNAUTHORIZED, Vec::new());
    }
    if header("content-encoding") != "zstd" {
        return refuse("content-encoding".into());
    }
    let raw = match zstd::bulk::decompress(&body, 256 << 20) {
        Ok(raw) => raw,
        Err(err) => return refuse(format!("zstd: {err}")),
    };
    let batch = match Batch::decode(raw.as_slice()) {
        Ok(batch) => batch,
        Err(err) => return refuse(format!("protobuf: {err}")),
    };
    if header("idempotency-key") != format!("{}/{}", batch.gateway_id, batch.seq) {
        return refuse(format!(
            "idempotency key {:?} for seq {}",
            header("idempotency-key"),
            batch.seq
        ));
    }
    for series in &batch.series {
        if let Err(err) = series.check() {
            return refuse(err.to_string());
        }
    }
    let reject = shared.reject_status.load(Ordering::SeqCst);
    if reject != 0 {
        return (
            StatusCode::from_u16(reject).unwrap_or(StatusCode::BAD_REQUEST),
            Vec::new(),
        );
    }
    if shared.unavailable.load(Ordering::SeqCst) {
        shared.inner.lock().unwrap().refused_503 += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
    }
    let mut fingerprint_batch = batch.clone();
    fingerprint_batch.created_ms = 0;
    let fingerprint = fingerprint_batch.encode_to_vec();
    let mut inner = shared.inner.lock().unwrap();
    let key = (batch.gateway_id.clone(), batch.spool_epoch, batch.seq);
    if let Some(first) = inner.committed.get(&key) {
        let mismatch = *first != fingerprint;
        inner.duplicate_batches += 1;
        if mismatch {
            inner.duplicate_mismatches += 1;
        }
    } else {
        inner.committed.insert(key, fingerprint);
        inner
            .epoch_seqs
            .entry(batch.spool_epoch)
            .or_default()
            .insert(batch.seq);
        for series in &batch.series {
            for (ts_ms, value) in series.points() {
                inner.readings.push(Got {
                    asset: series.asset_id.clone(),
                    sensor: series.sensor.clone(),
                    ts_ms,
                    value,
                    seq: batch.seq,
                    historical: batch.historical,
                    receive_stamped: series.receive_stamped,
                    held_back: series.held_back,
                });
            }
        }
    }
    let contiguous_seq = match shared.ack_contiguous_seq.load(Ordering::SeqCst) {
        0 => inner.epoch_seqs[&batch.spool_epoch]
            .iter()
            .enumerate()
            .take_while(|(idx, seq)| **seq == *idx as u64 + 1)
            .count() as u64,
        claimed => claimed,
    };
    let ack = BatchAck {
        seq: batch.seq,
        contiguous_seq,
        spool_epoch: batch
            .spool_epoch
            .wrapping_add(shared.ack_epoch_offset.load(Ordering::SeqCst)),
    };
    (StatusCode::OK, ack.encode_to_vec())
}
