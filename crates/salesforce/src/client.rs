//! The client core: token cache with single-flight refresh, one
//! re-authentication and replay on `401 INVALID_SESSION_ID`, capped
//! exponential backoff with full jitter for retriable errors, and
//! `Sforce-Limit-Info` tracking with a budget guard.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use reqwest::Method;

use crate::auth::{fetch_token, AuthConfig, JwtSigner, Token};
use crate::error::{ApiError, ErrorClass, SfError};
use crate::limits::ApiUsage;

/// Retry policy for retriable errors (reference §3.4: base 500 ms, factor 2, cap 30 s, 5 attempts).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts including the first.
    pub max_attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.cap);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(if millis == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=millis)
        })
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API version without `v`, e.g. `66.0`.
    pub api_version: String,
    /// How to authenticate.
    pub auth: AuthConfig,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Refuse to send when this share of the daily allocation is used (0.9 = 90 %).
    pub budget_threshold: f64,
    /// `Sforce-Call-Options: client=<name>` (lets CDC consumers skip our writes).
    pub call_options_client: Option<String>,
}

impl ClientConfig {
    /// Defaults for an auth configuration: v66.0, 60 s timeout, default retries, 90 % budget.
    pub fn new(auth: AuthConfig) -> Self {
        ClientConfig {
            api_version: "66.0".into(),
            auth,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            budget_threshold: 0.9,
            call_options_client: Some("fieldpulse".into()),
        }
    }
}

/// One HTTP request the client may replay.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub method: Method,
    /// Path on the instance (`/services/data/...`).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Safe to retry automatically (GET, PATCH upserts, ...); plain POST creates are not.
    pub idempotent: bool,
}

impl Spec {
    pub fn new(method: Method, path: String) -> Self {
        let idempotent = method != Method::POST;
        Spec {
            method,
            path,
            query: Vec::new(),
            body: None,
            headers: Vec::new(),
            idempotent,
        }
    }
    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
}

/// A successful (status < 400) HTTP reply.
#[derive(Debug)]
pub(crate) struct HttpReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl HttpReply {
    pub fn json(&self, context: &str) -> Result<serde_json::Value, SfError> {
        serde_json::from_slice(&self.body).map_err(|e| SfError::Decode {
            context: context.to_string(),
            detail: e.to_string(),
        })
    }
}

/// The Salesforce REST client. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct SalesforceClient {
    pub(crate) http: reqwest::Client,
    pub(crate) config: ClientConfig,
    signer: Option<JwtSigner>,
    token: tokio::sync::Mutex<Option<Token>>,
    usage: Mutex<Option<ApiUsage>>,
    stats: Mutex<ClientStats>,
}

/// Counters of what the client did (exported as metrics by the cloud).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP requests sent to REST endpoints.
    pub requests: u64,
    /// Retries after retriable errors.
    pub retries: u64,
    /// Token requests.
    pub token_requests: u64,
    /// Re-authentications after `INVALID_SESSION_ID`.
    pub reauths: u64,
}

impl SalesforceClient {
    /// Builds a client (parses the JWT key now, so a bad key fails early).
    ///
    /// # Errors
    /// `Config` for an unparsable private key or HTTP client setup failure.
    pub fn new(config: ClientConfig) -> Result<Self, SfError> {
        let signer = match &config.auth {
            AuthConfig::JwtBearer {
                private_key_pem, ..
            } => Some(JwtSigner::from_pem(private_key_pem)?),
            AuthConfig::ClientCredentials { .. } => None,
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| SfError::Config(format!("http client: {e}")))?;
        Ok(SalesforceClient {
            http,
            config,
            signer,
            token: tokio::sync::Mutex::new(None),
            usage: Mutex::new(None),
            stats: Mutex::new(ClientStats::default()),
        })
    }

    /// `/services/data/vXX.X`.
    pub(crate) fn base(&self) -> String {
        format!("/services/data/v{}", self.config.api_version)
    }

    /// Daily API usage from the last `Sforce-Limit-Info` header seen.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls left today, if known.
    pub fn remaining_daily_calls(&self) -> Option<u64> {
        self.api_usage().map(|u| u.remaining())
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, f: impl FnOnce(&mut ClientStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The budget guard: `Err(BudgetExhausted)` once usage reaches the configured threshold.
    ///
    /// # Errors
    /// `BudgetExhausted` when the last known usage is at or above the threshold.
    pub fn check_budget(&self) -> Result<(), SfError> {
        self.check_budget_at(self.config.budget_threshold)
    }

    /// The budget guard with an explicit threshold (e.g. a lower one for training reads).
    ///
    /// # Errors
    /// `BudgetExhausted` when usage is at or above `threshold`.
    pub fn check_budget_at(&self, threshold: f64) -> Result<(), SfError> {
        match self.api_usage() {
            Some(u) if u.fraction_used() >= threshold => Err(SfError::BudgetExhausted {
                used: u.used,
                max: u.max,
                threshold: threshold * 100.0,
            }),
            _ => Ok(()),
        }
    }

    pub(crate) async fn current_token(&self) -> Result<Token, SfError> {
        // Holding the async lock while fetching makes refresh single-flight:
        // concurrent callers wait for this one token request.
        let mut guard = self.token.lock().await;
        if let Some(token) = guard.as_ref() {
            return Ok(token.clone());
        }
        self.bump(|s| s.token_requests += 1);
        let token = fetch_token(&self.http, &self.config.auth, self.signer.as_ref()).await?;
        *guard = Some(token.clone());
        Ok(token)
    }

    async fn invalidate(&self, stale: &Token) {
        let mut guard = self.token.lock().await;
        if guard.as_ref() == Some(stale) {
            *guard = None;
        }
    }

    /// Obtains a token now (start-up check).
    ///
    /// # Errors
    /// The token endpoint refused or was unreachable.
    pub async fn authenticate(&self) -> Result<(), SfError> {
        self.current_token().await.map(|_| ())
    }

    async fn send_once(
        &self,
        token: &Token,
        spec: &Spec,
    ) -> Result<(u16, reqwest::header::HeaderMap, bytes::Bytes), SfError> {
        let url = format!("{}{}", token.instance_url, spec.path);
        let mut request = self
            .http
            .request(spec.method.clone(), &url)
            .bearer_auth(token.access_token.expose());
        if !spec.query.is_empty() {
            request = request.query(&spec.query);
        }
        if let Some(client) = &self.config.call_options_client {
            request = request.header("Sforce-Call-Options", format!("client={client}"));
        }
        for (name, value) in &spec.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &spec.body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        self.bump(|s| s.requests += 1);
        let context = || format!("{} {}", spec.method, spec.path);
        let response = request.send().await.map_err(|source| SfError::Transport {
            context: context(),
            source,
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(usage) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)
        {
            *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
        }
        let body = response
            .bytes()
            .await
            .map_err(|source| SfError::Transport {
                context: context(),
                source,
            })?;
        Ok((status, headers, body))
    }

    async fn send_with_reauth(&self, spec: &Spec) -> Result<HttpReply, SfError> {
        let token = self.current_token().await?;
        let (mut status, mut headers, mut body) = self.send_once(&token, spec).await?;
        if status == 401 && is_invalid_session(&body) {
            tracing::info!(path = %spec.path, "Session expired; re-authenticating once.");
            self.bump(|s| s.reauths += 1);
            self.invalidate(&token).await;
            let fresh = self.current_token().await?;
            (status, headers, body) = self.send_once(&fresh, spec).await?;
            if status == 401 {
                self.invalidate(&fresh).await;
                return Err(SfError::SessionInvalid);
            }
        }
        if status >= 400 {
            let path = spec.path.split('?').next().unwrap_or_default().to_string();
            let retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(SfError::Api {
                method: spec.method.to_string(),
                path,
                status,
                errors: ApiError::list_from_body(&body),
                retry_after,
            });
        }
        Ok(HttpReply {
            status,
            headers,
            body,
        })
    }

    /// Sends with re-auth and, for idempotent requests, retries with backoff.
    pub(crate) async fn execute(&self, spec: Spec) -> Result<HttpReply, SfError> {
        let mut attempt = 1;
        loop {
            match self.send_with_reauth(&spec).await {
                Ok(reply) => return Ok(reply),
                Err(err)
                    if err.class() == ErrorClass::Retriable
                        && spec.idempotent
                        && attempt < self.config.retry.max_attempts =>
                {
                    // Honour the server's Retry-After (capped) when it asks for longer.
                    let hinted = match &err {
                        SfError::Api {
                            retry_after: Some(after),
                            ..
                        } => (*after).min(self.config.retry.cap),
                        _ => Duration::ZERO,
                    };
                    let delay = self.config.retry.delay(attempt).max(hinted);
                    tracing::debug!(path = %spec.path, attempt, delay_ms = delay.as_millis() as u64, error = %err, "Retrying after a retriable error.");
                    self.bump(|s| s.retries += 1);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Sends one GET/POST/PATCH/DELETE to a path under the instance and returns
    /// the JSON body (`null` for 204), with re-auth and retries. For
    /// resources this client has no typed method for.
    ///
    /// # Errors
    /// Any [`SfError`].
    pub async fn raw_json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), SfError> {
        let mut spec = Spec::new(method, path.to_string());
        spec.body = body;
        let reply = self.execute(spec).await?;
        let json = if reply.body.is_empty() {
            serde_json::Value::Null
        } else {
            reply.json(path)?
        };
        Ok((reply.status, json))
    }
}

fn is_invalid_session(body: &[u8]) -> bool {
    ApiError::list_from_body(body)
        .iter()
        .any(|e| e.code == "INVALID_SESSION_ID")
}
