//! The optional https listener: a self-signed certificate generated at start
//! (written out so clients can trust it) and a rustls accept loop serving the
//! same router. Plain HTTP on loopback stays the default.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Emulator, EmulatorError};

/// A PEM certificate and its private key.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"***")
            .finish()
    }
}

impl TlsIdentity {
    /// Generates a self-signed certificate for `hosts` (DNS names or IP addresses).
    ///
    /// # Errors
    /// `Certificate` if generation fails.
    pub fn self_signed(hosts: &[&str]) -> Result<Self, EmulatorError> {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| EmulatorError::Certificate(e.to_string()))?;
        Ok(TlsIdentity {
            cert_pem: certified.cert.pem(),
            key_pem: certified.key_pair.serialize_pem(),
        })
    }

    fn server_config(&self) -> Result<rustls::ServerConfig, EmulatorError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: &dyn std::fmt::Display| EmulatorError::Certificate(e.to_string());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| bad(&e))?;
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))
    }
}

impl Emulator {
    /// Serves https on `listener` with `identity` until `shutdown` fires
    /// (connections are tracked and drained), persisting like [`Emulator::run`].
    ///
    /// # Errors
    /// A bad identity, or accepting connections fails.
    pub async fn run_tls(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        identity: TlsIdentity,
    ) -> Result<(), EmulatorError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(identity.server_config()?));
        let local = listener.local_addr().map_err(EmulatorError::Serve)?;
        self.set_base_url(&format!("https://{local}"), local.ip().is_loopback());
        let app = axum::Router::new()
            .fallback(super::handle)
            .with_state(self.clone());
        let tracker = TaskTracker::new();
        let persister = self.clone().persist_until(shutdown.clone());
        let accept_loop = async {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => {
                        let (tcp, peer) = match accepted {
                            Ok(pair) => pair,
                            Err(err) => {
                                tracing::warn!(error = %err, "Accepting a connection failed.");
                                continue;
                            }
                        };
                        let acceptor = acceptor.clone();
                        let service = TowerToHyperService::new(app.clone());
                        let token = shutdown.clone();
                        tracker.spawn(async move {
                            let tls = match acceptor.accept(tcp).await {
                                Ok(tls) => tls,
                                Err(err) => {
                                    tracing::debug!(%peer, error = %err, "TLS handshake failed.");
                                    return;
                                }
                            };
                            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
                            let mut conn = std::pin::pin!(conn);
                            tokio::select! {
                                res = conn.as_mut() => {
                                    if let Err(err) = res {
                                        tracing::debug!(%peer, error = %err, "Connection ended with an error.");
                                    }
                                }
                                _ = token.cancelled() => {
                                    conn.as_mut().graceful_shutdown();
                                    let _ = conn.await;
                                }
                            }
                        });
                    }
                }
            }
            tracker.close();
            tracker.wait().await;
        };
        tokio::join!(accept_loop, persister);
        self.save_if_dirty().await
    }
}
