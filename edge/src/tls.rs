//! TLS for the agent's two connections: to a remote MQTT broker (`[mqtt.tls]`) and to the cloud
//! (`[forward.tls]`).
//!
//! Everything here runs while the configuration is validated: PEM files are read and checked (a
//! CA file must hold at least one usable certificate, a client key must match its certificate),
//! and the MQTT side's `rustls::ClientConfig` is built. A running agent only sees the results
//! ([`MqttTls`], [`ForwardTls`]), so a bad file stops `fieldpulse-edge validate` and the start, never
//! a connection attempt hours later. Errors ([`TlsError`]) name the PEM file; the config loader
//! adds the config file and the key.
//!
//! Both sides use rustls with the ring provider (the one reqwest brings), never aws-lc-rs. Without a
//! CA file the roots are the Mozilla set compiled into the binary (`webpki-roots`, as reqwest's),
//! not the system store: a gateway's system CA bundle is often stale.
//!
//! Deliberately absent: encrypted private keys, certificate revocation lists, and reloading
//! certificates without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why TLS material cannot be used. Messages name the PEM file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (missing, permissions).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The PEM file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{path}: not valid PEM: {detail}")]
    Pem {
        /// The PEM file.
        path: PathBuf,
        /// What the PEM parser reported.
        detail: String,
    },
    /// No `CERTIFICATE` section in the file.
    #[error("{path}: no certificate (-----BEGIN CERTIFICATE-----) in the file")]
    NoCertificate {
        /// The PEM file.
        path: PathBuf,
    },
    /// A CA certificate cannot serve as a trust anchor.
    #[error("{path}: certificate {index} is not usable as a CA certificate: {detail}")]
    BadCaCertificate {
        /// The PEM file.
        path: PathBuf,
        /// Position of the certificate in the file (0-based).
        index: usize,
        /// What webpki reported.
        detail: String,
    },
    /// No unencrypted private key in the file.
    #[error(
        "{path}: no private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY) in \
         the file; encrypted keys are not supported"
    )]
    NoKey {
        /// The PEM file.
        path: PathBuf,
    },
    /// The key is unusable or does not belong to the certificate.
    #[error("{key_path}: the key does not fit the certificate in {cert_path}: {detail}")]
    KeyMismatch {
        /// The key file.
        key_path: PathBuf,
        /// The certificate file.
        cert_path: PathBuf,
        /// What rustls reported.
        detail: String,
    },
    /// `server_name` is neither a DNS name nor an IP address.
    #[error("{name:?} is not a DNS name or an IP address")]
    ServerName {
        /// The configured name.
        name: String,
    },
    /// rustls refused the assembled configuration (not expected with checked inputs).
    #[error("building the TLS configuration: {detail}")]
    Build {
        /// What rustls reported.
        detail: String,
    },
}

/// CA certificates read from a PEM bundle, each checked as a trust anchor.
#[derive(Clone)]
pub struct CaBundle {
    path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
}

/// A client certificate chain and its private key, checked against each other (mTLS).
pub struct ClientIdentity {
    cert_path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Both files' PEM text: what `reqwest::Identity::from_pem` takes.
    pem: Vec<u8>,
}

/// The validated `[mqtt.tls]`: a ready rustls client configuration. `Debug` names the files.
#[derive(Clone)]
pub struct MqttTls {
    client_config: Arc<ClientConfig>,
    description: String,
}

/// The validated `[forward.tls]`, applied to the forwarder's HTTP client by [`ForwardTls::apply`].
/// `Debug` names the files.
#[derive(Clone)]
pub struct ForwardTls {
    roots: Vec<reqwest::Certificate>,
    only_ca: bool,
    identity: Option<reqwest::Identity>,
    description: String,
}

impl CaBundle {
    /// Reads every certificate of the PEM file at `path`.
    ///
    /// # Errors
    /// [`TlsError`] when the file cannot be read, is not PEM, holds no certificate, or holds one
    /// webpki cannot use as a trust anchor.
    pub fn read(path: &Path) -> Result<Self, TlsError> {
        let certs = read_certificates(path)?;
        for (index, cert) in certs.iter().enumerate() {
            RootCertStore::empty()
                .add(cert.clone())
                .map_err(|err| TlsError::BadCaCertificate {
                    path: path.to_path_buf(),
                    index,
                    detail: err.to_string(),
                })?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            certs,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ClientIdentity {
    /// Reads a certificate chain (leaf first) and its private key, and checks that they match.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that cannot be read or parsed, or the key that does not fit.
    pub fn read(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let certs = read_certificates(cert_path)?;
        let key_pem = read_file(key_path)?;
        let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
            Ok(key) => key,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => {
                return Err(TlsError::NoKey {
                    path: key_path.to_path_buf(),
                })
            }
            Err(err) => {
                return Err(TlsError::Pem {
                    path: key_path.to_path_buf(),
                    detail: err.to_string(),
                })
            }
        };
        // Loads the key and compares its public half with the leaf certificate's.
        rustls::sign::CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider()).map_err(
            |err| TlsError::KeyMismatch {
                key_path: key_path.to_path_buf(),
                cert_path: cert_path.to_path_buf(),
                detail: err.to_string(),
            },
        )?;
        // One file may hold both; reqwest takes every certificate it finds, so read it once.
        let mut pem = key_pem;
        if cert_path != key_path {
            pem.push(b'\n');
            pem.extend_from_slice(&read_file(cert_path)?);
        }
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            certs,
            key,
            pem,
        })
    }
}

impl MqttTls {
    /// Builds the broker connection's TLS configuration: the server is verified against `ca`
    /// (or the built-in roots), under `server_name` instead of `mqtt.host` when given; `identity`
    /// is presented when the broker asks for a client certificate.
    ///
    /// # Errors
    /// [`TlsError::ServerName`] for a name that is neither a DNS name nor an IP address.
    pub fn new(
        ca: Option<&CaBundle>,
        identity: Option<&ClientIdentity>,
        server_name: Option<&str>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let roots = match ca {
            Some(bundle) => {
                let mut roots = RootCertStore::empty();
                // Each certificate was checked by `CaBundle::read`.
                roots.add_parsable_certificates(bundle.certs.iter().cloned());
                roots
            }
            None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        };
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(build_error)?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(build_error)?;
        let builder = match server_name {
            Some(name) => {
                let expected =
                    ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName {
                        name: name.to_string(),
                    })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ExpectedServerName {
                        inner: verifier,
                        expected,
                    }))
            }
            None => builder.with_webpki_verifier(verifier),
        };
        let client_config = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
                .map_err(build_error)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            client_config: Arc::new(client_config),
            description: describe(ca, identity, server_name),
        })
    }

    /// The rustls configuration for `rumqttc::TlsConfiguration::Rustls`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client_config)
    }
}

impl ForwardTls {
    /// The cloud connection's TLS settings: `ca` added to the built-in roots (or replacing them
    /// when `only_ca`), `identity` presented when the server asks for a client certificate.
    ///
    /// # Errors
    /// [`TlsError::Build`] when reqwest refuses a certificate or the identity (not expected: both
    /// were checked when read).
    pub fn new(
        ca: Option<&CaBundle>,
        only_ca: bool,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, TlsError> {
        let roots = ca
            .map(|bundle| {
                bundle
                    .certs
                    .iter()
                    .map(|cert| reqwest::Certificate::from_der(cert))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(build_error)?
            .unwrap_or_default();
        let identity = identity
            .map(|id| reqwest::Identity::from_pem(&id.pem))
            .transpose()
            .map_err(build_error)?;
        let description = match (ca, only_ca) {
            (Some(bundle), true) => format!("roots: {} only", bundle.path.display()),
            (Some(bundle), false) => format!("roots: built-in and {}", bundle.path.display()),
            (None, _) => "roots: built-in".to_string(),
        };
        Ok(Self {
            roots,
            only_ca,
            identity,
            description,
        })
    }

    /// Adds these settings to the forwarder's HTTP client builder.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if self.only_ca {
            builder = builder.tls_built_in_root_certs(false);
        }
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("n_certs", &self.certs.len())
            .finish()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .field("key", &"***")
            .finish()
    }
}

impl fmt::Debug for MqttTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MqttTls({})", self.description)
    }
}

impl fmt::Debug for ForwardTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ForwardTls({}, client certificate: {})",
            self.description,
            if self.identity.is_some() { "yes" } else { "no" }
        )
    }
}

/// Verifies the server's certificate for a configured name instead of the host connected to
/// (`mqtt.tls.server_name`: a broker reached by IP address or through a tunnel whose certificate
/// names its DNS name). Everything else is webpki's verification, unchanged.
#[derive(Debug)]
struct ExpectedServerName {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for ExpectedServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// True when `host` can be checked against a certificate: a DNS name or an IP address.
pub fn is_valid_server_name(host: &str) -> bool {
    ServerName::try_from(host).is_ok()
}

/// True when `err`, or an error in its source chain, comes from rustls: a failed TLS handshake
/// (unknown CA, wrong name, expired certificate, client certificate refused).
pub fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips a custom inner error (it returns the inner error's source),
        // and tokio-rustls wraps `rustls::Error` in one: look at the inner error itself.
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        next = err.source();
    }
    false
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn build_error(err: impl fmt::Display) -> TlsError {
    TlsError::Build {
        detail: err.to_string(),
    }
}

fn describe(
    ca: Option<&CaBundle>,
    identity: Option<&ClientIdentity>,
    server_name: Option<&str>,
) -> String {
    let mut out = match ca {
        Some(bundle) => format!("roots: {}", bundle.path.display()),
        None => "roots: built-in".to_string(),
    };
    if let Some(id) = identity {
        out.push_str(&format!(", client certificate: {}", id.cert_path.display()));
    }
    if let Some(name) = server_name {
        out.push_str(&format!(", server name: {name}"));
    }
    out
}
