//! The HTTP server: one axum fallback handler that routes by path, checks
//! the bearer session, counts the daily API allocation, injects faults, and
//! dispatches to the REST resources. Servers take a bound listener and a
//! cancellation token so tests bind port 0.

mod admin;
mod auth;
mod bulk;
mod collections;
mod composite;
mod faults;
mod methods;
mod rest;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use rand::{rngs::StdRng, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{EmulatorConfig, FaultConfig};
use crate::error::{rest_array, ApiErr};
use crate::id;
use crate::persist;
use crate::schema::{Schema, SchemaError};
use crate::soql;
use crate::store::Store;
use crate::time::Clock;

pub use bulk::Job;
pub use tls::TlsIdentity;

/// Versions the emulator serves (reference §0.1).
pub const MIN_VERSION: u32 = 46;
/// Newest version served.
pub const MAX_VERSION: u32 = 68;
/// Requests kept in the request log (a ring buffer, so long runs stay bounded).
pub const REQUEST_LOG_CAPACITY: usize = 10_000;

/// An error starting or running the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The schema metadata is invalid.
    #[error("loading schema")]
    Schema(#[from] SchemaError),
    /// The state directory could not be read or written.
    #[error("state file {path}")]
    State {
        /// File path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A state or fixture file is not valid.
    #[error("{path}: {reason}")]
    Invalid {
        /// File path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The JWT certificate/public key is not usable.
    #[error("jwt certificate: {0}")]
    Certificate(String),
    /// Serving failed.
    #[error("serving http")]
    Serve(#[source] std::io::Error),
}

/// One logged request (method, path, status, first errorCode).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// First `errorCode` of an error response.
    pub error_code: Option<String>,
}

pub(crate) struct Session {
    issued_ms: i64,
}

pub(crate) struct Cursor {
    pub query: soql::Query,
    pub ids: Vec<Box<str>>,
    pub last_used_ms: i64,
    pub batch_size: usize,
}

/// Everything behind the org lock: records, query cursors, Bulk jobs.
pub(crate) struct Org {
    pub store: Store,
    pub cursors: HashMap<String, Cursor>,
    pub jobs: HashMap<String, Job>,
    pub locator_seq: u64,
    /// Published platform events, oldest first.
    pub events: Vec<serde_json::Value>,
}

pub(crate) struct FaultState {
    pub config: FaultConfig,
    pub rng: StdRng,
}

pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub schema: Arc<Schema>,
    pub org: Mutex<Org>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub api_used: Mutex<crate::limits::ApiCounter>,
    pub faults: Mutex<FaultState>,
    pub log: Mutex<std::collections::VecDeque<LogEntry>>,
    pub clock: Clock,
    pub user_id: String,
    pub base_url: Mutex<String>,
    pub state_dir: Option<PathBuf>,
    pub jwt_key: Option<rsa::RsaPublicKey>,
    pub admin_allowed: Mutex<bool>,
    /// Start times (epoch ms) of REST calls in flight, by call number.
    pub in_flight: Mutex<(u64, HashMap<u64, i64>)>,
}

/// A running or ready-to-run emulator; cheap to clone (shared state).
#[derive(Clone)]
pub struct Emulator {
    pub(crate) shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave records half-written
    // (writes replace whole records), so continuing after poison is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A response before it becomes HTTP.
pub(crate) struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub headers: Vec<(String, String)>,
}

pub(crate) enum ReplyBody {
    Json(String),
    Text(String, &'static str),
    Empty,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply {
            status,
            body: ReplyBody::Json(value.to_string()),
            headers: Vec::new(),
        }
    }
    pub fn raw_json(status: u16, text: String) -> Self {
        Reply {
            status,
            body: ReplyBody::Json(text),
            headers: Vec::new(),
        }
    }
    pub fn errors(status: u16, errors: &[ApiErr]) -> Self {
        Reply::json(status, &rest_array(errors))
    }
    pub fn error(status: u16, err: ApiErr) -> Self {
        Reply::errors(status, &[err])
    }
    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            body: ReplyBody::Empty,
            headers: Vec::new(),
        }
    }
    pub fn not_found() -> Self {
        Reply::error(404, ApiErr::not_found())
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    /// The body as JSON (composite subresponses).
    pub fn body_json(&self) -> serde_json::Value {
        match &self.body {
            ReplyBody::Json(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            ReplyBody::Text(text, _) => serde_json::Value::String(text.clone()),
            ReplyBody::Empty => serde_json::Value::Null,
        }
    }
    fn first_error_code(&self) -> Option<String> {
        if self.status < 400 {
            return None;
        }
        match &self.body {
            ReplyBody::Json(text) => serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| {
                    v.get(0)
                        .and_then(|e| e.get("errorCode"))
                        .or_else(|| v.get("error"))
                        .and_then(|c| c.as_str())
                        .map(str::to_string)
                }),
            _ => None,
        }
    }
}

/// A parsed REST call (also used for composite subrequests).
pub(crate) struct Call {
    pub method: Method,
    /// Version without the `v`, e.g. `66.0`.
    pub version: String,
    /// Path segments after the version, percent-decoded.
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: Option<serde_json::Value>,
    pub batch_size: Option<usize>,
}

impl Emulator {
    /// Builds an emulator with the embedded schema, loading `state_dir/state.jsonl` if present.
    ///
    /// # Errors
    /// Bad metadata, an unreadable state file or an unusable JWT certificate.
    pub fn new(config: EmulatorConfig, state_dir: Option<PathBuf>) -> Result<Self, EmulatorError> {
        let schema = Schema::with_embedded_metadata()?;
        Self::with_schema(config, schema, state_dir)
    }

    /// Builds an emulator with an explicit schema (e.g. from a metadata directory).
    ///
    /// # Errors
    /// An unreadable state file or an unusable JWT certificate.
    pub fn with_schema(
        config: EmulatorConfig,
        schema: Schema,
        state_dir: Option<PathBuf>,
    ) -> Result<Self, EmulatorError> {
        let schema = Arc::new(schema);
        let jwt_key = config
            .jwt_certificate_pem
            .as_deref()
            .map(auth::parse_public_key)
            .transpose()?;
        let mut store = Store::new(schema.clone());
        let clock = Clock::default();
        let user_obj = schema
            .object_idx("User")
            .expect("User is a standard object");
        let mut user_id = id::make_id("005", 0);
        if let Some(dir) = &state_dir {
            persist::load(&mut store, &dir.join(persist::STATE_FILE))?;
        }
        if let Some(existing) = store.tables[user_obj].records.keys().next() {
            user_id = existing.to_string();
        } else {
            persist::insert_user(
                &mut store,
                user_obj,
                &user_id,
                &config.username,
                clock.now_ms(),
            );
        }
        store.dirty = false;
        let faults = FaultState {
            rng: StdRng::seed_from_u64(config.faults.seed),
            config: config.faults.clone(),
        };
        let limit = config.daily_api_limit;
        Ok(Emulator {
            shared: Arc::new(Shared {
                config,
                schema,
                org: Mutex::new(Org {
                    store,
                    cursors: HashMap::new(),
                    jobs: HashMap::new(),
                    locator_seq: 1,
                    events: Vec::new(),
                }),
                sessions: Mutex::new(HashMap::new()),
                api_used: Mutex::new(crate::limits::ApiCounter::new(limit)),
                faults: Mutex::new(faults),
                log: Mutex::new(std::collections::VecDeque::new()),
                clock,
                user_id,
                base_url: Mutex::new(String::from("http://127.0.0.1")),
                state_dir,
                jwt_key,
                admin_allowed: Mutex::new(true),
                in_flight: Mutex::new((0, HashMap::new())),
            }),
        })
    }

    /// Serves on `listener` until `shutdown` fires, persisting state (if a
    /// state directory is set) twice a second when dirty and once at the end.
    ///
    /// # Errors
    /// The listener fails or the final state write fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), EmulatorError> {
        let local: SocketAddr = listener.local_addr().map_err(EmulatorError::Serve)?;
        self.set_base_url(&format!("http://{local}"), local.ip().is_loopback());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.clone());
        let server_token = shutdown.clone();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_token.cancelled().await });
        let persister = self.clone().persist_until(shutdown.clone());
        let (served, ()) = tokio::join!(async { server.await }, persister);
        served.map_err(EmulatorError::Serve)?;
        self.save_if_dirty().await
    }

    fn set_base_url(&self, url: &str, loopback: bool) {
        *lock(&self.shared.base_url) = url.to_string();
        *lock(&self.shared.admin_allowed) = loopback || self.shared.config.admin_on_non_loopback;
    }

    /// Writes the state file while dirty until `shutdown` fires.
    async fn persist_until(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut next_save = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    // Snapshots of big orgs take a while: keep the writer
                    // busy at most ~10 % of the time.
                    if tokio::time::Instant::now() < next_save {
                        continue;
                    }
                    let started = tokio::time::Instant::now();
                    if let Err(err) = self.save_if_dirty().await {
                        tracing::error!(error = %err, "Writing emulator state failed.");
                    }
                    next_save = tokio::time::Instant::now() + started.elapsed() * 9;
                }
            }
        }
    }

    /// The base URL clients should use (`instance_url`), once running.
    pub fn base_url(&self) -> String {
        lock(&self.shared.base_url).clone()
    }

    /// Writes the state file now if records changed since the last write.
    ///
    /// # Errors
    /// The state file could not be written.
    pub async fn save_if_dirty(&self) -> Result<(), EmulatorError> {
        let Some(dir) = self.shared.state_dir.clone() else {
            return Ok(());
        };
        let snapshot = {
            let mut org = lock(&self.shared.org);
            if !org.store.dirty {
                return Ok(());
            }
            org.store.dirty = false;
            persist::snapshot(&org.store)
        };
        tokio::task::spawn_blocking(move || persist::write_atomically(&dir, &snapshot))
            .await
            .map_err(|e| EmulatorError::State {
                path: "state".into(),
                source: std::io::Error::other(e),
            })?
    }

    /// The emulator's clock (tests move it forward).
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Replaces the fault configuration (and reseeds its RNG).
    pub fn set_faults(&self, faults: FaultConfig) {
        let mut state = lock(&self.shared.faults);
        state.rng = StdRng::seed_from_u64(faults.seed);
        state.config = faults;
    }

    /// Revokes every session: the next call with any token gets `401 INVALID_SESSION_ID`.
    pub fn expire_sessions(&self) {
        lock(&self.shared.sessions).clear();
    }

    /// Sets the daily API counter and allocation.
    pub fn set_api_usage(&self, used: u64, max: u64) {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.api_used).set(used, max, now);
    }

    /// (used, max) of the daily API allocation (rolling 24 h).
    pub fn api_usage(&self) -> (u64, u64) {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.api_used).usage(now)
    }

    /// Number of live records of an object (0 for an unknown object).
    pub fn live_count(&self, object: &str) -> usize {
        let org = lock(&self.shared.org);
        self.shared
            .schema
            .object_idx(object)
            .map(|o| org.store.live_count(o))
            .unwrap_or(0)
    }

    /// Whether the org holds no records besides its integration user.
    pub fn is_empty(&self) -> bool {
        let org = lock(&self.shared.org);
        org.store
            .schema
            .objects
            .iter()
            .enumerate()
            .all(|(i, o)| o.name == "User" || org.store.tables[i].records.is_empty())
    }

    /// Every live record of an object as JSON (admin and tests).
    pub fn records(&self, object: &str) -> Vec<serde_json::Value> {
        let org = lock(&self.shared.org);
        let Some(obj) = self.shared.schema.object_idx(object) else {
            return Vec::new();
        };
        persist::records_json(&org.store, obj)
    }

    /// REST calls currently being served.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.in_flight).1.len()
    }

    /// The most recent requests (at most [`REQUEST_LOG_CAPACITY`]), oldest first.
    pub fn request_log(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// Platform events published so far (`{"type", "uuid", "fields"}`), oldest first.
    pub fn published_events(&self) -> Vec<serde_json::Value> {
        lock(&self.shared.org).events.clone()
    }

    /// The schema in use.
    pub fn schema(&self) -> &Schema {
        &self.shared.schema
    }

    pub(crate) fn org(&self) -> MutexGuard<'_, Org> {
        lock(&self.shared.org)
    }
}

fn to_response(reply: Reply, usage: Option<(u64, u64)>) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if let Some((used, max)) = usage {
        builder = builder.header("Sforce-Limit-Info", format!("api-usage={used}/{max}"));
    }
    for (name, value) in &reply.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            builder = builder.header(name.as_str(), v);
        }
    }
    let (content_type, body) = match reply.body {
        ReplyBody::Json(text) => (Some("application/json;charset=UTF-8"), Body::from(text)),
        ReplyBody::Text(text, ct) => (Some(ct), Body::from(text)),
        ReplyBody::Empty => (None, Body::empty()),
    };
    if let Some(ct) = content_type {
        builder = builder.header("Content-Type", ct);
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=b&c=d` with percent-decoding.
pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn path_segment_decode(s: &str) -> String {
    // In paths `+` is literal; only %XX is decoded.
    let encoded = s.replace('+', "%2B");
    percent_decode(&encoded)
}

/// Splits `/services/data/v66.0/a/b?x=y` into version and segments.
pub(crate) fn split_data_path(path: &str) -> Option<(String, Vec<String>)> {
    let rest = path.strip_prefix("/services/data/")?;
    let mut parts = rest.split('/');
    let version = parts.next()?.strip_prefix('v')?.to_string();
    let segments = parts
        .filter(|s| !s.is_empty())
        .map(path_segment_decode)
        .collect();
    Some((version, segments))
}

/// Whether `66.0` is a version the emulator serves.
pub(crate) fn version_ok(version: &str) -> bool {
    match version.split_once('.') {
        Some((major, "0")) => {
            major
                .parse::<u32>()
                .is_ok_and(|v| (MIN_VERSION..=MAX_VERSION).contains(&v))
                && !major.starts_with('0')
        }
        _ => false,
    }
}

async fn handle(State(emu): State<Emulator>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let uri_len = parts.uri.to_string().len();
    let header_len: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let (reply, usage) = if uri_len > 16_384 {
        (
            Reply::error(414, ApiErr::new("URI_TOO_LONG", "The URI is too long")),
            None,
        )
    } else if uri_len + header_len > 16_384 {
        (
            Reply::error(
                431,
                ApiErr::new(
                    "REQUEST_HEADER_FIELDS_TOO_LARGE",
                    "Request header fields too large",
                ),
            ),
            None,
        )
    } else {
        match axum::body::to_bytes(body, emu.shared.config.max_body_bytes).await {
            Err(_) => (
                Reply::error(
                    413,
                    ApiErr::new(
                        "REQUEST_ENTITY_TOO_LARGE",
                        "The request body is larger than the emulator's limit",
                    ),
                ),
                None,
            ),
            Ok(bytes) => route(&emu, &method, &path, &raw_query, &parts.headers, &bytes).await,
        }
    };
    {
        let mut log = lock(&emu.shared.log);
        if log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(LogEntry {
            method: method.to_string(),
            path: path.clone(),
            status: reply.status,
            error_code: reply.first_error_code(),
        });
    }
    to_response(reply, usage)
}

async fn route(
    emu: &Emulator,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Reply, Option<(u64, u64)>) {
    if path == "/services/oauth2/token" {
        return (auth::token(emu, method, headers, body), None);
    }
    if path == "/services/data" || path == "/services/data/" {
        return (rest::versions(), None);
    }
    if let Some(rest) = path.strip_prefix("/__emulator/") {
        if !*lock(&emu.shared.admin_allowed) {
            return (Reply::not_found(), None);
        }
        return (admin::handle(emu, method, rest, body), None);
    }
    let Some((version, segments)) = split_data_path(path) else {
        return (Reply::not_found(), None);
    };
    if !version_ok(&version) {
        return (Reply::not_found(), None);
    }
    // Authentication.
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(str::trim)
        .map(str::to_string);
    let usage_now = emu.api_usage();
    let invalid_session = || {
        Reply::error(
            401,
            ApiErr::new("INVALID_SESSION_ID", "Session expired or invalid"),
        )
    };
    let Some(token) = token else {
        return (invalid_session(), Some(usage_now));
    };
    {
        let now = emu.shared.clock.now_ms();
        let mut sessions = lock(&emu.shared.sessions);
        let lifetime = emu.shared.config.session_lifetime.as_millis() as i64;
        match sessions.get(&token) {
            Some(s) if now - s.issued_ms < lifetime => {}
            Some(_) => {
                sessions.remove(&token);
                return (invalid_session(), Some(usage_now));
            }
            None => return (invalid_session(), Some(usage_now)),
        }
    }
    // Daily allocation.
    let now = emu.shared.clock.now_ms();
    let counted = lock(&emu.shared.api_used).try_count(now);
    let usage = match counted {
        Ok(usage) => usage,
        Err(usage) => {
            return (
                Reply::error(
                    403,
                    ApiErr::new("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
                ),
                Some(usage),
            )
        }
    };
    // Fault injection (draws are reproducible from the configured seed).
    let is_write = matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    ) && segments.first().is_none_or(|s| s != "jobs");
    let is_collection =
        segments.len() >= 2 && segments[0] == "composite" && segments[1] == "sobjects";
    let (latency, fault) = faults::draw(emu, is_write && !is_collection);
    let Some(_in_flight) = faults::enter(emu, now) else {
        return (faults::concurrent_limit(), Some(usage));
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(fault) = fault {
        if fault == faults::Fault::Session {
            lock(&emu.shared.sessions).remove(&token);
            return (invalid_session(), Some(usage));
        }
        return (fault.reply(), Some(usage));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !body.is_empty()
        && !content_type.is_empty()
        && !content_type.to_ascii_lowercase().contains("json")
    {
        return (
            Reply::error(
                415,
                ApiErr::new(
                    "UNSUPPORTED_MEDIA_TYPE",
                    format!("Content type '{content_type}' not supported"),
                ),
            ),
            Some(usage),
        );
    }
    let body_json = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => Some(v),
            Err(err) => {
                return (
                    Reply::error(
                        400,
                        ApiErr::new(
                            "JSON_PARSER_ERROR",
                            format!(
                                "Unexpected character: {err} at [line:{}, column:{}]",
                                err.line(),
                                err.column()
                            ),
                        ),
                    ),
                    Some(usage),
                )
            }
        }
    };
    let batch_size = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix("batchSize="))
        })
        .and_then(|n| n.trim().parse::<usize>().ok());
    let call = Call {
        // HEAD is answered like GET; the server sends no body for it.
        method: if *method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        },
        version,
        segments,
        query: parse_query(raw_query),
        body: body_json,
        batch_size,
    };
    let lock_rate = if is_collection {
        lock(&emu.shared.faults).config.rate_lock
    } else {
        0.0
    };
    (rest::dispatch(emu, &call, lock_rate), Some(usage))
}
