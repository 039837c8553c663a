//! OAuth 2.0 server-to-server flows (reference §1): JWT bearer (RS256
//! assertion signed with the connected app's private key) and client
//! credentials (HTTP Basic to the org's My Domain). Tokens and keys are
//! [`Secret`]s and never logged.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::Sha256;

use crate::error::SfError;
use crate::secret::Secret;

/// How the client obtains tokens.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// JWT bearer flow.
    JwtBearer {
        /// Token host, e.g. `https://login.salesforce.com` or a My Domain URL.
        token_url: String,
        /// JWT `aud`: the login host (`https://login.salesforce.com` / `https://test.salesforce.com`).
        audience: String,
        /// Connected app consumer key (JWT `iss`).
        client_id: String,
        /// Integration user's username (JWT `sub`).
        username: String,
        /// PEM private key (PKCS#8 or PKCS#1).
        private_key_pem: Secret,
    },
    /// Client credentials flow (My Domain host required).
    ClientCredentials {
        /// My Domain URL, e.g. `https://acme.my.salesforce.com`.
        token_url: String,
        /// Consumer key.
        client_id: String,
        /// Consumer secret.
        client_secret: Secret,
    },
}

/// A parsed RSA signing key that never prints.
#[derive(Clone)]
pub(crate) struct JwtSigner(SigningKey<Sha256>);

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSigner(***)")
    }
}

impl JwtSigner {
    pub(crate) fn from_pem(pem: &Secret) -> Result<Self, SfError> {
        let text = pem.expose();
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map_err(|e| SfError::Config(format!("jwt private key (PKCS#1): {e}")))?
        } else {
            rsa::RsaPrivateKey::from_pkcs8_pem(text)
                .map_err(|e| SfError::Config(format!("jwt private key (PKCS#8): {e}")))?
        };
        Ok(JwtSigner(SigningKey::<Sha256>::new(key)))
    }

    /// Builds a compact RS256 assertion valid for three minutes.
    pub(crate) fn assertion(&self, client_id: &str, username: &str, audience: &str) -> Secret {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 180;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims =
            serde_json::json!({"iss": client_id, "sub": username, "aud": audience, "exp": exp});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature = self.0.sign(signing_input.as_bytes());
        Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// A bearer token and the instance it is valid for.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The access token.
    pub access_token: Secret,
    /// Base URL for REST calls made with this token.
    pub instance_url: String,
}

/// Requests a token.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    config: &AuthConfig,
    signer: Option<&JwtSigner>,
) -> Result<Token, SfError> {
    let request = match config {
        AuthConfig::JwtBearer {
            token_url,
            audience,
            client_id,
            username,
            ..
        } => {
            let signer = signer
                .ok_or_else(|| SfError::Config("jwt bearer flow without a private key".into()))?;
            let assertion = signer.assertion(client_id, username, audience);
            http.post(format!(
                "{}/services/oauth2/token",
                token_url.trim_end_matches('/')
            ))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.expose()),
            ])
        }
        AuthConfig::ClientCredentials {
            token_url,
            client_id,
            client_secret,
        } => http
            .post(format!(
                "{}/services/oauth2/token",
                token_url.trim_end_matches('/')
            ))
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&[("grant_type", "client_credentials")]),
    };
    let response = request
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|source| SfError::Transport {
            context: "requesting a token".into(),
            source,
        })?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|source| SfError::Transport {
            context: "reading the token response".into(),
            source,
        })?;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| SfError::Decode {
        context: "token response".into(),
        detail: e.to_string(),
    })?;
    if status != 200 {
        let text = |k: &str| {
            json.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        return Err(SfError::Auth {
            status,
            error: text("error"),
            description: text("error_description"),
        });
    }
    let access_token = json
        .get("access_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| SfError::Decode {
            context: "token response".into(),
            detail: "missing access_token".into(),
        })?;
    let instance_url = json
        .get("instance_url")
        .and_then(|v| v.as_str())
        .ok_or_else(|| SfError::Decode {
            context: "token response".into(),
            detail: "missing instance_url".into(),
        })?;
    Ok(Token {
        access_token: Secret::new(access_token),
        instance_url: instance_url.trim_end_matches('/').to_string(),
    })
}
