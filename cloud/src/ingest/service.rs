//! The axum service behind `POST /v1/batches`, plus `/metrics` and `/healthz`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fieldpulse_proto::v1::{Batch, BatchAck};
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::dedupe::SeqSet;
use super::log::Recovered;
use crate::metrics::{CloudMetrics, RejectReason};

/// Where accepted batches go before they are acknowledged.
///
/// `commit` must return only once the batch is durable; an error makes the
/// ingest answer 503 so that the gateway retries with the same seq.
pub trait BatchSink: Send + Sync + 'static {
    /// Durably commits one batch. `encoded` is the batch's protobuf encoding as
    /// received (decompressed), so a sink that stores bytes need not re-encode.
    fn commit(
        &self,
        batch: &Batch,
        encoded: Bytes,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
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

/// A gateway's bearer token and the gateway id it authenticates.
#[derive(Clone)]
pub struct GatewayToken {
    /// The gateway id the token belongs to.
    pub gateway_id: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayToken")
            .field("gateway_id", &self.gateway_id)
            .field("token", &"***")
            .finish()
    }
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Accepted tokens. Empty means "no authentication", allowed only for
    /// loopback development and tests.
    pub tokens: Vec<GatewayToken>,
    /// Largest accepted request body (compressed), in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted batch after decompression, in bytes.
    pub max_decoded_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
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

/// The ingest service: shared state plus the sink.
pub struct Ingest<S> {
    config: IngestConfig,
    tokens: HashMap<String, String>,
    sink: S,
    committed: Mutex<HashMap<String, SeqSet>>,
    in_flight: Mutex<HashSet<(String, u64)>>,
    metrics: CloudMetrics,
}

impl<S: BatchSink> Ingest<S> {
    /// Builds the service, seeding the dedupe sets from what the sink
    /// recovered on open.
    pub fn new(config: IngestConfig, sink: S, recovered: &Recovered) -> Arc<Self> {
        let tokens = config
            .tokens
            .iter()
            .map(|t| (t.token.clone(), t.gateway_id.clone()))
            .collect();
        let mut committed: HashMap<String, SeqSet> = HashMap::new();
        for (gateway, seq, _) in &recovered.batches {
            committed.entry(gateway.clone()).or_default().insert(*seq);
        }
        Arc::new(Self {
            config,
            tokens,
            sink,
            committed: Mutex::new(committed),
            in_flight: Mutex::new(HashSet::new()),
            metrics: CloudMetrics::default(),
        })
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &CloudMetrics {
        &self.metrics
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

    /// The contiguous committed seq of a gateway (0 when none).
    pub fn contiguous_seq(&self, gateway_id: &str) -> u64 {
        self.lock_committed()
            .get(gateway_id)
            .map_or(0, SeqSet::contiguous)
    }

    /// The axum router: `POST /v1/batches`, `GET /metrics`, `GET /healthz`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/batches", post(post_batch::<S>))
            .route("/metrics", get(metrics::<S>))
            .route("/healthz", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(Arc::clone(self))
    }

    /// Serves on `listener` until `shutdown` is cancelled.
    ///
    /// # Errors
    /// The accept loop's IO error.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }

    fn lock_committed(&self) -> std::sync::MutexGuard<'_, HashMap<String, SeqSet>> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reject(&self, reason: RejectReason, status: StatusCode, message: String) -> Rejection {
        self.metrics.count_rejected(reason);
        tracing::debug!(reason = reason.as_str(), %status, "Rejected batch: {message}");
        Rejection { status, message }
    }

    /// Authenticates, decodes and checks one request body.
    fn admit(&self, headers: &HeaderMap, body: &[u8]) -> Result<(Batch, Bytes), Rejection> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let authenticated_gateway = if self.tokens.is_empty() {
            None
        } else {
            match bearer.and_then(|token| self.tokens.get(token)) {
                Some(gateway) => Some(gateway.as_str()),
                None => {
                    return Err(self.reject(
                        RejectReason::Unauthorized,
                        StatusCode::UNAUTHORIZED,
                        "missing or unknown bearer token".into(),
                    ))
                }
            }
        };
        let decoded = match headers
            .get(header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes)
        {
            None | Some(b"identity") => body.to_vec(),
            Some(b"zstd") => self.decompress(body)?,
            Some(other) => {
                return Err(self.reject(
                    RejectReason::Encoding,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported content-encoding {:?}",
                        String::from_utf8_lossy(other)
                    ),
                ))
            }
        };
        let batch = Batch::decode(decoded.as_slice()).map_err(|err| {
            self.reject(
                RejectReason::Decode,
                StatusCode::BAD_REQUEST,
                format!("invalid Batch: {err}"),
            )
        })?;
        if batch.seq == 0 || batch.gateway_id.is_empty() {
            return Err(self.reject(
                RejectReason::Malformed,
                StatusCode::BAD_REQUEST,
                "batch needs a gateway_id and a seq >= 1".into(),
            ));
        }
        if let Some(gateway) = authenticated_gateway {
            if gateway != batch.gateway_id {
                return Err(self.reject(
                    RejectReason::Unauthorized,
                    StatusCode::FORBIDDEN,
                    format!("token does not belong to gateway {}", batch.gateway_id),
                ));
            }
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
        Ok((batch, Bytes::from(decoded)))
    }

    fn decompress(&self, body: &[u8]) -> Result<Vec<u8>, Rejection> {
        let limit = self.config.max_decoded_bytes;
        let mut out = Vec::new();
        let res = zstd::stream::read::Decoder::new(body)
            .and_then(|decoder| decoder.take(limit as u64 + 1).read_to_end(&mut out));
        match res {
            Err(err) => Err(self.reject(
                RejectReason::Encoding,
                StatusCode::BAD_REQUEST,
                format!("invalid zstd body: {err}"),
            )),
            Ok(_) if out.len() > limit => Err(self.reject(
                RejectReason::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("batch decodes to more than {limit} bytes"),
            )),
            Ok(_) => Ok(out),
        }
    }

    async fn accept(&self, batch: Batch, encoded: Bytes) -> Response {
        let gateway = batch.gateway_id.clone();
        let seq = batch.seq;
        if self
            .lock_committed()
            .get(&gateway)
            .is_some_and(|set| set.contains(seq))
        {
            self.metrics
                .duplicate_batches
                .fetch_add(1, Ordering::Relaxed);
            return self.ack(&gateway, seq);
        }
        // A retry racing the first delivery of the same batch: let it come back
        // later rather than commit twice.
        let slot = (gateway.clone(), seq);
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot.clone())
        {
            return retry_later("batch is being committed");
        }
        let res = self.sink.commit(&batch, encoded).await;
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&slot);
        if let Err(err) = res {
            tracing::warn!(%gateway, seq, error = %err, "Could not commit batch; gateway will retry.");
            self.metrics.count_rejected(RejectReason::Unavailable);
            return retry_later("commit failed, retry");
        }
        self.lock_committed()
            .entry(gateway.clone())
            .or_default()
            .insert(seq);
        let n_readings = batch.n_readings() as u64;
        self.metrics
            .batches_committed
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .readings_ingested
            .fetch_add(n_readings, Ordering::Relaxed);
        if batch.historical {
            self.metrics
                .readings_historical
                .fetch_add(n_readings, Ordering::Relaxed);
        }
        self.ack(&gateway, seq)
    }

    fn ack(&self, gateway: &str, seq: u64) -> Response {
        let ack = BatchAck {
            seq,
            contiguous_seq: self.contiguous_seq(gateway),
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ack.encode_to_vec(),
        )
            .into_response()
    }
}

/// A counted rejection, turned into a plain-text error response.
struct Rejection {
    status: StatusCode,
    message: String,
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
    body: Bytes,
) -> Response {
    match ingest.admit(&headers, &body) {
        Ok((batch, encoded)) => ingest.accept(batch, encoded).await,
        Err(rejection) => (rejection.status, rejection.message).into_response(),
    }
}

async fn metrics<S: BatchSink>(State(ingest): State<Arc<Ingest<S>>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ingest.metrics.render(),
    )
}
