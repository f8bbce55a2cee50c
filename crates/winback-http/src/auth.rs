//! API keys: `wbk_<8 hex>_<43 base64url>`, 256 random bits. Only a SHA-256 of the key is
//! stored (a fast hash is right for a random 256-bit secret; argon2 is for guessable passwords),
//! and the key is looked up on every request, so a revoked key is refused on its next request.
//!
//! Scopes: `ingest` (customers, orders, events), `webhooks` (ESP callbacks), `read`
//! (customers, campaigns), `admin` (campaign files, start and pause).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use winback_store::responses::ApiKeyRow;

use crate::AppState;
use crate::error::ApiError;

/// The scopes a key can hold.
pub const SCOPES: [&str; 4] = ["ingest", "webhooks", "read", "admin"];

/// A new key: the secret (shown once), its public prefix and the hash to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key to give the client.
    pub secret: String,
    /// `wbk_<8 hex>`.
    pub prefix: String,
    /// SHA-256 of `secret`, hex.
    pub hash: String,
}

/// Makes a key from the operating system's random source.
pub fn generate() -> NewKey {
    let mut id = [0u8; 4];
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let prefix = format!("wbk_{}", hex::encode(id));
    let secret = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&secret);
    NewKey {
        secret,
        prefix,
        hash,
    }
}

/// The stored form of a key.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Checks scope names.
pub fn parse_scopes(raw: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for s in raw {
        let s = s.trim().to_ascii_lowercase();
        if !SCOPES.contains(&s.as_str()) {
            return Err(format!(
                "unknown scope `{s}` (scopes: {})",
                SCOPES.join(", ")
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(format!("give at least one scope ({})", SCOPES.join(", ")));
    }
    Ok(out)
}

/// The key a request presented: `Authorization: Bearer KEY`, or HTTP Basic with the key as the
/// password (for senders such as Amazon SNS that can only put credentials in the URL).
fn presented(parts: &Parts) -> Option<String> {
    let value = parts.headers.get("authorization")?.to_str().ok()?.trim();
    if let Some(k) = value.strip_prefix("Bearer ") {
        return Some(k.trim().to_owned());
    }
    let b = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(b.trim()).ok()?).ok()?;
    Some(decoded.split_once(':')?.1.to_owned())
}

/// An authenticated, rate-limited API key.
#[derive(Debug, Clone)]
pub struct ApiKey(pub ApiKeyRow);

impl ApiKey {
    /// Refuses with 403 unless the key holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.0.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this key lacks the `{scope}` scope"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(secret) = presented(parts) else {
            return Err(ApiError::unauthorized());
        };
        let row = state
            .store
            .api_key_by_hash(&hash(&secret), state.clock.now())
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if state.limiter.check_key(&row.id).is_err() {
            metrics::counter!("winback_http_rate_limited_total").increment(1);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests per second for this key",
                    state.settings.rate_per_second
                ),
            ));
        }
        Ok(ApiKey(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("{}_", a.prefix)));
        assert_eq!(a.secret.len(), 4 + 8 + 1 + 43);
        assert_eq!(a.hash, hash(&a.secret));
        assert!(!a.hash.contains(&a.secret));
    }

    #[test]
    fn scopes_are_checked() {
        assert_eq!(
            parse_scopes(&["Ingest".into(), "read".into(), "ingest".into()]).unwrap(),
            ["ingest", "read"]
        );
        assert!(
            parse_scopes(&["root".into()])
                .unwrap_err()
                .contains("unknown scope")
        );
        assert!(parse_scopes(&[]).is_err());
    }
}
