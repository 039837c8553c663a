//! `POST /services/oauth2/token`: JWT bearer (RS256 verified against the
//! configured certificate), client credentials, refresh token (none are ever
//! issued, so always `invalid_grant`), and a deliberate refusal of the
//! username-password flow (reference §1).

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::Rng;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{lock, parse_query, Emulator, EmulatorError, Reply, Session};
use crate::id;

/// Parses a PEM public key (SPKI or PKCS#1) or an X.509 certificate.
pub(crate) fn parse_public_key(pem: &str) -> Result<rsa::RsaPublicKey, EmulatorError> {
    if pem.contains("BEGIN CERTIFICATE") {
        use x509_cert::der::{DecodePem, Encode};
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| EmulatorError::Certificate(e.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| EmulatorError::Certificate(e.to_string()))?;
        return rsa::RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| EmulatorError::Certificate(e.to_string()));
    }
    if pem.contains("BEGIN RSA PUBLIC KEY") {
        return rsa::RsaPublicKey::from_pkcs1_pem(pem)
            .map_err(|e| EmulatorError::Certificate(e.to_string()));
    }
    rsa::RsaPublicKey::from_public_key_pem(pem)
        .map_err(|e| EmulatorError::Certificate(e.to_string()))
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

pub(crate) fn token(emu: &Emulator, method: &Method, headers: &HeaderMap, body: &[u8]) -> Reply {
    if method != Method::POST {
        return Reply::error(
            405,
            crate::error::ApiErr::new(
                "METHOD_NOT_ALLOWED",
                format!("HTTP Method '{method}' not allowed. Allowed are POST"),
            ),
        );
    }
    let form: HashMap<String, String> = parse_query(&String::from_utf8_lossy(body));
    let cfg = &emu.shared.config;
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(assertion) = form.get("assertion") else {
                return oauth_error(400, "invalid_grant", "invalid assertion");
            };
            match verify_jwt(emu, assertion) {
                Ok(()) => issue(emu, false),
                Err(reply) => reply,
            }
        }
        Some("client_credentials") => {
            let (id, secret) = match basic_auth(headers) {
                Some(pair) => pair,
                None => (
                    form.get("client_id").cloned().unwrap_or_default(),
                    form.get("client_secret").cloned().unwrap_or_default(),
                ),
            };
            let Some(expected) = &cfg.consumer_secret else {
                return oauth_error(400, "invalid_grant", "no client credentials user enabled");
            };
            if id != cfg.consumer_key {
                return oauth_error(400, "invalid_client_id", "client identifier invalid");
            }
            if !constant_time_eq(secret.as_bytes(), expected.as_bytes()) {
                return oauth_error(400, "invalid_client", "invalid client credentials");
            }
            issue(emu, true)
        }
        Some("refresh_token") => oauth_error(400, "invalid_grant", "expired access/refresh token"),
        Some(_) | None => oauth_error(400, "unsupported_grant_type", "grant type not supported"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(value.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn verify_jwt(emu: &Emulator, assertion: &str) -> Result<(), Reply> {
    let cfg = &emu.shared.config;
    let invalid = || oauth_error(400, "invalid_grant", "invalid assertion");
    let Some(key) = &emu.shared.jwt_key else {
        return Err(oauth_error(400, "invalid_grant", "invalid assertion"));
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, sig_b64] = parts.as_slice() else {
        return Err(invalid());
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(invalid)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
        return Err(invalid());
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .ok()
        .and_then(|b| Signature::try_from(b.as_slice()).ok())
        .ok_or_else(invalid)?;
    let verifier = VerifyingKey::<Sha256>::new(key.clone());
    let signed = format!("{header_b64}.{claims_b64}");
    verifier
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| invalid())?;
    // The signature is good: check the claims ourselves (exp may be a numeric string).
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(invalid)?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    if text("iss") != cfg.consumer_key {
        return Err(oauth_error(
            400,
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => cfg.audiences.iter().any(|x| x == a),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str())
            .any(|a| cfg.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(oauth_error(
            400,
            "invalid_grant",
            "Audience validation failed",
        ));
    }
    if text("sub") != cfg.username {
        return Err(oauth_error(
            400,
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    let exp = match claims.get("exp") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(invalid)?;
    let now_s = emu.shared.clock.now_ms() / 1000;
    if exp <= now_s || exp > now_s + cfg.max_jwt_lifetime.as_secs() as i64 {
        return Err(invalid());
    }
    Ok(())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn issue(emu: &Emulator, with_signature: bool) -> Reply {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";
    let mut rng = rand::thread_rng();
    let secret: String = (0..96)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let cfg = &emu.shared.config;
    let token = format!("{}!{secret}", cfg.org_id);
    let now = emu.shared.clock.now_ms();
    {
        // Expired sessions are never valid again: drop them so the table stays bounded.
        let lifetime = cfg.session_lifetime.as_millis() as i64;
        let mut sessions = lock(&emu.shared.sessions);
        sessions.retain(|_, s| now - s.issued_ms < lifetime);
        sessions.insert(token.clone(), Session { issued_ms: now });
    }
    let org18 = id::to_id18(&cfg.org_id);
    let identity = format!(
        "https://login.salesforce.com/id/{org18}/{}",
        emu.shared.user_id
    );
    let mut body = json!({
        "access_token": token,
        "scope": "api",
        "instance_url": emu.base_url(),
        "id": identity,
        "token_type": "Bearer",
    });
    if with_signature {
        let issued_at = now.to_string();
        let key = cfg.consumer_secret.clone().unwrap_or_default();
        let signature = STANDARD.encode(hmac_sha256(
            key.as_bytes(),
            format!("{identity}{issued_at}").as_bytes(),
        ));
        body["issued_at"] = json!(issued_at);
        body["signature"] = json!(signature);
    }
    Reply::json(200, &body)
}
