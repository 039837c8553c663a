//! The axum service behind `POST /v1/batches`, plus `/metrics` and `/healthz`.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fieldpulse_proto::v1::{Batch, BatchAck};
use prost::Message;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::dedupe::SeqSet;
use super::wire::{self, ShapeError};
use crate::log::{EpochKey, LogStats, Recovered};
use crate::metrics::{CloudMetrics, RejectReason};

/// Where accepted batches go before they are acknowledged.
///
/// `commit` must return only once the batch is durable; an error makes the
/// ingest answer 503 so that the gateway retries with the same seq. The
/// ingest runs `commit` in its own task, so it completes even when the HTTP
/// client gives up.
pub trait BatchSink: Send + Sync + 'static {
    /// Durably commits one batch. `encoded` is the batch's protobuf encoding as
    /// received (decompressed), so a sink that stores bytes need not re-encode.
    fn commit(
        &self,
        batch: &Batch,
        encoded: Bytes,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The log's counters for `/metrics`, when the sink is a log.
    fn log_stats(&self) -> Option<LogStats> {
        None
    }
}

/// A sink could not commit a batch (the gateway will retry).
#[derive(Debug, Clone, thiserror::Error)]
#[error("committing batch: {message}")]
pub struct SinkError {
    message: String,
}

impl SinkError {
    /// An error with a human-readable cause.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Errors building or serving the ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No gateway token is configured and `insecure_dev_no_auth` is off.
    #[error("no gateway tokens configured (insecure_dev_no_auth allows none, on loopback only)")]
    NoTokens,
    /// `insecure_dev_no_auth` on a listener that is not loopback.
    #[error("insecure_dev_no_auth refuses to serve on non-loopback address {addr}")]
    InsecureListener {
        /// The listener's address.
        addr: SocketAddr,
    },
    /// A token hash that is not 64 hex digits.
    #[error("token sha256 of gateway {gateway_id} must be 64 hex digits")]
    TokenHex {
        /// The gateway the token belongs to.
        gateway_id: String,
    },
    /// A config limit that must be at least 1 is 0.
    #[error("ingest config {key} must be at least 1")]
    ZeroLimit {
        /// The config key.
        key: &'static str,
    },
    /// The listener failed.
    #[error("ingest listener")]
    Io(#[from] std::io::Error),
}

/// A gateway's bearer token, stored as its SHA-256, and the gateway id it
/// authenticates.
#[derive(Clone)]
pub struct GatewayToken {
    /// The gateway id the token belongs to.
    pub gateway_id: String,
    /// SHA-256 of the bearer token.
    pub token_sha256: [u8; 32],
}

impl GatewayToken {
    /// Hashes a plaintext token.
    pub fn from_plaintext(gateway_id: impl Into<String>, token: &str) -> Self {
        Self {
            gateway_id: gateway_id.into(),
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Parses a hex SHA-256 (as a config file holds it).
    ///
    /// # Errors
    /// [`IngestError::TokenHex`] unless `hex` is 64 hex digits.
    pub fn from_sha256_hex(gateway_id: impl Into<String>, hex: &str) -> Result<Self, IngestError> {
        let gateway_id = gateway_id.into();
        let digits = hex.trim().as_bytes();
        let mut token_sha256 = [0u8; 32];
        let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if digits.len() != 64 {
            return Err(IngestError::TokenHex { gateway_id });
        }
        for (byte, pair) in token_sha256.iter_mut().zip(digits.chunks_exact(2)) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
                _ => return Err(IngestError::TokenHex { gateway_id }),
            }
        }
        Ok(Self {
            gateway_id,
            token_sha256,
        })
    }
}

impl std::fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayToken")
            .field("gateway_id", &self.gateway_id)
            .field("token_sha256", &"***")
            .finish()
    }
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Accepted tokens. Empty is refused unless `insecure_dev_no_auth`.
    pub tokens: Vec<GatewayToken>,
    /// Accept requests without authentication: for loopback development and
    /// tests only (`serve` refuses any other listener).
    pub insecure_dev_no_auth: bool,
    /// Largest accepted request body (compressed), in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted batch after decompression, in bytes.
    pub max_decoded_bytes: usize,
    /// Most `Series` entries in one batch.
    pub max_series_per_batch: usize,
    /// Most readings in one batch.
    pub max_readings_per_batch: usize,
    /// Largest zstd window accepted (log2 bytes): a frame asking for more
    /// memory is refused before decoding. The default, 23 (8 MiB), is the
    /// largest window of the levels the edge may use (1..=19).
    pub zstd_window_log_max: u32,
    /// Requests decoded at once (zstd + protobuf, on the blocking pool).
    pub decode_concurrency: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            insecure_dev_no_auth: false,
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            max_series_per_batch: 100_000,
            max_readings_per_batch: 1_000_000,
            zstd_window_log_max: 23,
            decode_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Counters an in-process caller can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Batches committed (first delivery).
    pub batches_committed: u64,
    /// Readings in committed batches.
    pub readings_ingested: u64,
    /// Readings in committed batches marked `historical`.
    pub readings_historical: u64,
    /// Deliveries of an already committed batch (acknowledged again).
    pub duplicate_batches: u64,
    /// Requests rejected for any reason.
    pub rejected_batches: u64,
}

/// `(gateway, spool_epoch, seq)`.
type BatchKey = (String, u64, u64);

/// Committed seqs and the commits under way.
#[derive(Default)]
struct DedupeState {
    committed: HashMap<EpochKey, SeqSet>,
    /// The outcome of each commit under way: `None` until it finishes, then
    /// whether it committed.
    in_flight: HashMap<BatchKey, watch::Receiver<Option<bool>>>,
}

/// The ingest service: shared state plus the sink.
pub struct Ingest<S> {
    config: IngestConfig,
    sink: S,
    dedupe: Mutex<DedupeState>,
    decode_permits: Arc<Semaphore>,
    metrics: CloudMetrics,
}

impl<S: BatchSink> Ingest<S> {
    /// Builds the service, seeding the dedupe sets from what the log
    /// recovered on open (`Recovered::default()` for a sink without history).
    ///
    /// # Errors
    /// [`IngestError::NoTokens`] for an empty token list without
    /// `insecure_dev_no_auth`; [`IngestError::ZeroLimit`].
    pub fn new(
        config: IngestConfig,
        sink: S,
        recovered: &Recovered,
    ) -> Result<Arc<Self>, IngestError> {
        if config.tokens.is_empty() && !config.insecure_dev_no_auth {
            return Err(IngestError::NoTokens);
        }
        for (key, value) in [
            ("max_body_bytes", config.max_body_bytes),
            ("max_decoded_bytes", config.max_decoded_bytes),
            ("max_series_per_batch", config.max_series_per_batch),
            ("max_readings_per_batch", config.max_readings_per_batch),
            ("decode_concurrency", config.decode_concurrency),
        ] {
            if value == 0 {
                return Err(IngestError::ZeroLimit { key });
            }
        }
        let dedupe = DedupeState {
            committed: recovered.dedupe.clone(),
            in_flight: HashMap::new(),
        };
        Ok(Arc::new(Self {
            decode_permits: Arc::new(Semaphore::new(config.decode_concurrency)),
            config,
            sink,
            dedupe: Mutex::new(dedupe),
            metrics: CloudMetrics::default(),
        }))
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &CloudMetrics {
        &self.metrics
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// A snapshot of the ingest counters.
    pub fn stats(&self) -> IngestStats {
        let m = &self.metrics;
        IngestStats {
            batches_committed: m.batches_committed.load(Ordering::Relaxed),
            readings_ingested: m.readings_ingested.load(Ordering::Relaxed),
            readings_historical: m.readings_historical.load(Ordering::Relaxed),
            duplicate_batches: m.duplicate_batches.load(Ordering::Relaxed),
            rejected_batches: m.rejected_total(),
        }
    }

    /// The contiguous committed seq of a gateway's spool epoch (0 when none).
    pub fn contiguous_seq(&self, gateway_id: &str, spool_epoch: u64) -> u64 {
        self.lock_dedupe()
            .committed
            .get(&(gateway_id.to_string(), spool_epoch))
            .map_or(0, SeqSet::contiguous)
    }

    /// The axum router: `POST /v1/batches`, `GET /metrics`, `GET /healthz`.
    ///
    /// [`Ingest::serve`] checks the listener of an unauthenticated ingest;
    /// a caller serving this router itself must keep it on loopback.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/batches", post(post_batch::<S>))
            .route("/metrics", get(metrics::<S>))
            .route("/healthz", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(Arc::clone(self))
    }

    /// Only `POST /v1/batches` (with the body limit), for a process that
    /// serves its own `/metrics` and `/healthz` beside it.
    pub fn batches_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/batches", post(post_batch::<S>))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(Arc::clone(self))
    }

    /// Serves on `listener` until `shutdown` is cancelled.
    ///
    /// # Errors
    /// [`IngestError::InsecureListener`] when authentication is off and the
    /// listener is not loopback; the accept loop's IO error.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), IngestError> {
        if self.config.tokens.is_empty() {
            let addr = listener.local_addr()?;
            if !addr.ip().is_loopback() {
                return Err(IngestError::InsecureListener { addr });
            }
            tracing::warn!(%addr, "Ingest runs without authentication (insecure_dev_no_auth).");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }

    fn lock_dedupe(&self) -> MutexGuard<'_, DedupeState> {
        self.dedupe.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reject(&self, reason: RejectReason, status: StatusCode, message: String) -> Rejection {
        self.metrics.count_rejected(reason);
        tracing::debug!(reason = reason.as_str(), %status, "Rejected batch: {message}");
        Rejection { status, message }
    }

    /// The gateway the bearer token authenticates (`None` without auth).
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, Rejection> {
        if self.config.tokens.is_empty() {
            return Ok(None);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let unauthorized = || {
            self.reject(
                RejectReason::Unauthorized,
                StatusCode::UNAUTHORIZED,
                "missing or unknown bearer token".into(),
            )
        };
        let Some(bearer) = bearer else {
            return Err(unauthorized());
        };
        let digest: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        // Constant-time comparison against every entry: neither the secret
        // nor its hash is ever a lookup key.
        let mut found = None;
        for token in &self.config.tokens {
            if bool::from(token.token_sha256.ct_eq(&digest)) && found.is_none() {
                found = Some(token.gateway_id.clone());
            }
        }
        found.map(Some).ok_or_else(unauthorized)
    }

    /// Decompresses, counts and decodes one body (blocking: run it on the
    /// blocking pool).
    fn decode(&self, encoding: Encoding, body: &[u8]) -> Result<(Batch, Bytes), Rejection> {
        let decoded = match encoding {
            Encoding::Identity => {
                if body.len() > self.config.max_decoded_bytes {
                    return Err(self.too_large());
                }
                body.to_vec()
            }
            Encoding::Zstd => self.decompress(body)?,
        };
        match wire::batch_shape(
            &decoded,
            self.config.max_series_per_batch,
            self.config.max_readings_per_batch,
        ) {
            Ok(_) => {}
            Err(ShapeError::Wire(why)) => {
                return Err(self.reject(
                    RejectReason::Decode,
                    StatusCode::BAD_REQUEST,
                    format!("invalid Batch: {why}"),
                ))
            }
            Err(ShapeError::TooManySeries { max }) => {
                return Err(self.reject(
                    RejectReason::TooManySeries,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("batch has more than {max} series"),
                ))
            }
            Err(ShapeError::TooManyReadings { max }) => {
                return Err(self.reject(
                    RejectReason::TooManyReadings,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("batch has more than {max} readings"),
                ))
            }
        }
        let batch = Batch::decode(decoded.as_slice()).map_err(|err| {
            self.reject(
                RejectReason::Decode,
                StatusCode::BAD_REQUEST,
                format!("invalid Batch: {err}"),
            )
        })?;
        Ok((batch, Bytes::from(decoded)))
    }

    fn too_large(&self) -> Rejection {
        self.reject(
            RejectReason::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "batch decodes to more than {} bytes",
                self.config.max_decoded_bytes
            ),
        )
    }

    fn decompress(&self, body: &[u8]) -> Result<Vec<u8>, Rejection> {
        let limit = self.config.max_decoded_bytes;
        let mut out = Vec::new();
        let res = zstd::stream::read::Decoder::new(body).and_then(|mut decoder| {
            decoder.window_log_max(self.config.zstd_window_log_max)?;
            decoder.take(limit as u64 + 1).read_to_end(&mut out)
        });
        match res {
            Err(err) => Err(self.reject(
                RejectReason::Encoding,
                StatusCode::BAD_REQUEST,
                format!("invalid zstd body: {err}"),
            )),
            Ok(_) if out.len() > limit => Err(self.too_large()),
            Ok(_) => Ok(out),
        }
    }

    /// Contract checks on a decoded batch.
    fn check(
        &self,
        batch: &Batch,
        authenticated: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), Rejection> {
        if batch.seq == 0 || batch.gateway_id.is_empty() {
            return Err(self.reject(
                RejectReason::Malformed,
                StatusCode::BAD_REQUEST,
                "batch needs a gateway_id and a seq >= 1".into(),
            ));
        }
        if authenticated.is_some_and(|gateway| gateway != batch.gateway_id) {
            return Err(self.reject(
                RejectReason::Unauthorized,
                StatusCode::FORBIDDEN,
                format!("token does not belong to gateway {}", batch.gateway_id),
            ));
        }
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
        if key != Some(batch.idempotency_key().as_str()) {
            return Err(self.reject(
                RejectReason::Malformed,
                StatusCode::BAD_REQUEST,
                format!("Idempotency-Key must be {}", batch.idempotency_key()),
            ));
        }
        if let Some(err) = batch.series.iter().find_map(|s| s.check().err()) {
            return Err(self.reject(
                RejectReason::Malformed,
                StatusCode::BAD_REQUEST,
                err.to_string(),
            ));
        }
        Ok(())
    }

    async fn accept(self: &Arc<Self>, batch: Batch, encoded: Bytes) -> Response {
        let key: BatchKey = (batch.gateway_id.clone(), batch.spool_epoch, batch.seq);
        let role = {
            let mut dedupe = self.lock_dedupe();
            let epoch_key = (key.0.clone(), key.1);
            if dedupe
                .committed
                .get(&epoch_key)
                .is_some_and(|set| set.contains(key.2))
            {
                Role::Duplicate
            } else if let Some(outcome) = dedupe.in_flight.get(&key) {
                Role::Follower(outcome.clone())
            } else {
                let (tx, rx) = watch::channel(None);
                dedupe.in_flight.insert(key.clone(), rx);
                Role::Leader(tx)
            }
        };
        match role {
            Role::Duplicate => self.ack_duplicate(&key),
            Role::Follower(mut outcome) => {
                // A retry racing its original: answer what the original gets.
                let committed = matches!(
                    outcome.wait_for(Option::is_some).await.as_deref(),
                    Ok(Some(true))
                );
                if committed {
                    self.ack_duplicate(&key)
                } else {
                    self.metrics.count_rejected(RejectReason::Unavailable);
                    retry_later("commit failed, retry")
                }
            }
            Role::Leader(outcome) => {
                // The commit runs in its own task so that a client giving up
                // cannot cancel it halfway; the guard releases the slot
                // whatever happens to the task.
                let guard = InFlight {
                    ingest: Arc::clone(self),
                    key: key.clone(),
                    outcome,
                };
                let task = tokio::spawn(async move {
                    let res = guard.ingest.sink.commit(&batch, encoded).await;
                    guard.finish(&batch, res)
                });
                match task.await {
                    Ok(Ok(())) => self.ack(&key),
                    Ok(Err(())) | Err(_) => retry_later("commit failed, retry"),
                }
            }
        }
    }

    fn ack_duplicate(&self, key: &BatchKey) -> Response {
        self.metrics
            .duplicate_batches
            .fetch_add(1, Ordering::Relaxed);
        self.ack(key)
    }

    fn ack(&self, key: &BatchKey) -> Response {
        let ack = BatchAck {
            seq: key.2,
            contiguous_seq: self.contiguous_seq(&key.0, key.1),
            spool_epoch: key.1,
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ack.encode_to_vec(),
        )
            .into_response()
    }
}

/// How a request takes part in committing its batch.
enum Role {
    /// Already committed: ack again.
    Duplicate,
    /// Another request is committing it: wait for its outcome.
    Follower(watch::Receiver<Option<bool>>),
    /// This request commits it and publishes the outcome.
    Leader(watch::Sender<Option<bool>>),
}

/// The slot of a commit under way; dropping it without `finish` (a panic or
/// a cancelled task) releases the slot as failed.
struct InFlight<S: BatchSink> {
    ingest: Arc<Ingest<S>>,
    key: BatchKey,
    outcome: watch::Sender<Option<bool>>,
}

impl<S: BatchSink> InFlight<S> {
    /// Records the outcome: on success the seq joins the committed set in the
    /// same critical section that frees the slot, so no request sees neither.
    fn finish(self, batch: &Batch, res: Result<(), SinkError>) -> Result<(), ()> {
        let ingest = Arc::clone(&self.ingest);
        let metrics = &ingest.metrics;
        match &res {
            Ok(()) => {
                {
                    let mut dedupe = ingest.lock_dedupe();
                    dedupe
                        .committed
                        .entry((self.key.0.clone(), self.key.1))
                        .or_default()
                        .insert(self.key.2);
                    dedupe.in_flight.remove(&self.key);
                }
                let n_readings = batch.n_readings() as u64;
                metrics.batches_committed.fetch_add(1, Ordering::Relaxed);
                metrics
                    .readings_ingested
                    .fetch_add(n_readings, Ordering::Relaxed);
                if batch.historical {
                    metrics
                        .readings_historical
                        .fetch_add(n_readings, Ordering::Relaxed);
                }
                self.outcome.send_replace(Some(true));
            }
            Err(err) => {
                tracing::warn!(
                    gateway = %self.key.0,
                    spool_epoch = self.key.1,
                    seq = self.key.2,
                    error = %err,
                    "Could not commit batch; gateway will retry."
                );
                metrics.count_rejected(RejectReason::Unavailable);
                // Drop releases the slot and publishes the failure.
            }
        }
        res.map_err(|_| ())
    }
}

impl<S: BatchSink> Drop for InFlight<S> {
    fn drop(&mut self) {
        if self.outcome.borrow().is_none() {
            self.ingest.lock_dedupe().in_flight.remove(&self.key);
            self.outcome.send_replace(Some(false));
        }
    }
}

/// `Content-Encoding` values the ingest accepts.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Identity,
    Zstd,
}

/// A counted rejection, turned into a plain-text error response.
struct Rejection {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

fn retry_later(message: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        message,
    )
        .into_response()
}

async fn post_batch<S: BatchSink>(
    State(ingest): State<Arc<Ingest<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Authenticate before decoding anything (the body itself is bounded by
    // `max_body_bytes`).
    let authenticated = match ingest.authenticate(&headers) {
        Ok(gateway) => gateway,
        Err(rejection) => return rejection.into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(err))
            if err.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            return ingest
                .reject(
                    RejectReason::TooLarge,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is larger than {} bytes", ingest.config.max_body_bytes),
                )
                .into_response();
        }
        Err(err) => {
            return ingest
                .reject(RejectReason::Decode, err.status(), err.body_text())
                .into_response()
        }
    };
    let encoding = match headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::as_bytes)
    {
        None | Some(b"identity") => Encoding::Identity,
        Some(b"zstd") => Encoding::Zstd,
        Some(other) => {
            return ingest
                .reject(
                    RejectReason::Encoding,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported content-encoding {:?}",
                        String::from_utf8_lossy(other)
                    ),
                )
                .into_response()
        }
    };
    // Decoding is CPU and memory heavy: a bounded number at a time, off the
    // async workers. The semaphore is never closed.
    let Ok(permit) = Arc::clone(&ingest.decode_permits).acquire_owned().await else {
        return retry_later("shutting down");
    };
    let decoder = Arc::clone(&ingest);
    let decoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decoder.decode(encoding, &body)
    })
    .await;
    let (batch, encoded) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(rejection)) => return rejection.into_response(),
        Err(join) => {
            tracing::error!(error = %join, "Batch decoding task failed.");
            return ingest
                .reject(
                    RejectReason::Decode,
                    StatusCode::BAD_REQUEST,
                    "batch could not be decoded".into(),
                )
                .into_response();
        }
    };
    if let Err(rejection) = ingest.check(&batch, authenticated.as_deref(), &headers) {
        return rejection.into_response();
    }
    ingest.accept(batch, encoded).await
}

async fn metrics<S: BatchSink>(State(ingest): State<Arc<Ingest<S>>>) -> impl IntoResponse {
    let mut text = ingest.metrics.render();
    if let Some(stats) = ingest.sink.log_stats() {
        crate::metrics::render_log(&mut text, &stats);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
