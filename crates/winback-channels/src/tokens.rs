//! Signed tokens for links in messages: unsubscribe, preferences, survey answers, clicks and
//! opens. A token names its purpose, the key that signed it and when it expires, so a token made
//! for one purpose is refused for another, keys can be rotated (old keys verify, only the
//! current one signs), and a forged, truncated or expired token is refused.
//!
//! Format: `v1.<kid>.<payload>.<mac>`, with payload and MAC in unpadded base64url. The MAC is
//! HMAC-SHA-256 over `v1.<kid>.<purpose>.<payload>`, truncated to 128 bits (enough against
//! forgery; links stay short).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use winback_domain::Timestamp;

type HmacSha256 = Hmac<Sha256>;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// One-click and page unsubscribe.
    Unsubscribe,
    /// The preference centre.
    Preferences,
    /// A one-click survey answer.
    Survey,
    /// A tracked click.
    Click,
    /// The open pixel.
    Open,
    /// An add-to-wallet link (the pass's serial in `extra`).
    Wallet,
}

impl Purpose {
    /// The name signed into a token, so a token for one purpose never serves another.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Unsubscribe => "unsubscribe",
            Purpose::Preferences => "preferences",
            Purpose::Survey => "survey",
            Purpose::Click => "click",
            Purpose::Open => "open",
            Purpose::Wallet => "wallet",
        }
    }
}

/// Signs the add-to-wallet links messages carry (`{public_url}/w/TOKEN`): the SMS transports
/// use it; email gets the same link through the composer's [`crate::Links`].
#[derive(Clone)]
pub struct WalletLinks {
    keys: Keyring,
    base: String,
    link_days: i64,
    clock: std::sync::Arc<dyn winback_domain::Clock>,
}

impl std::fmt::Debug for WalletLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletLinks")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl WalletLinks {
    /// Links under `public_url`, valid `link_days` days.
    pub fn new(
        keys: Keyring,
        public_url: &str,
        link_days: i64,
        clock: std::sync::Arc<dyn winback_domain::Clock>,
    ) -> Self {
        Self {
            keys,
            base: public_url.trim_end_matches('/').to_owned(),
            link_days,
            clock,
        }
    }

    /// The link to message `d`'s wallet pass, when it has one.
    pub fn link(&self, d: &winback_engine::ports::Dispatch) -> Option<String> {
        let serial = d.wallet_pass.as_deref()?;
        let expires = self.clock.now().as_micros() / 1_000_000 + self.link_days * 86_400;
        Some(format!(
            "{}/w/{}",
            self.base,
            self.keys.sign(
                Purpose::Wallet,
                &Claims {
                    message: d.key.to_string(),
                    extra: Some(serial.to_owned()),
                    expires,
                },
            )
        ))
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The message's idempotency key; the outbox row it names says who and what.
    #[serde(rename = "m")]
    pub message: String,
    /// Extra data: a link id for clicks, a reason for survey answers.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
}

/// Why a token was refused. Callers answer all of them alike (a 404), so an attacker learns
/// nothing; the variants are for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not in the token format (truncated, wrong version, bad base64, bad JSON).
    #[error("malformed token")]
    Malformed,
    /// Signed by a key this keyring does not hold.
    #[error("unknown signing key")]
    UnknownKey,
    /// The MAC does not match: forged, tampered, or made for another purpose.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired token")]
    Expired,
}

/// Signing keys by id; the current one signs, all of them verify.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A key id or secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token key `{0}`: {1}")]
pub struct KeyError(String, &'static str);

impl Keyring {
    /// A keyring whose key `kid` signs. Key ids are letters and digits; secrets at least 32
    /// bytes.
    pub fn new(kid: &str, secret: &[u8]) -> Result<Self, KeyError> {
        let mut k = Self {
            current: kid.to_owned(),
            keys: BTreeMap::new(),
        };
        k.add(kid, secret)?;
        Ok(k)
    }

    /// Adds an older key that still verifies.
    pub fn add(&mut self, kid: &str, secret: &[u8]) -> Result<(), KeyError> {
        if kid.is_empty() || kid.len() > 16 || !kid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(KeyError(kid.into(), "ids are 1–16 letters and digits"));
        }
        if secret.len() < 32 {
            return Err(KeyError(kid.into(), "secrets must be at least 32 bytes"));
        }
        self.keys.insert(kid.to_owned(), secret.to_vec());
        Ok(())
    }

    /// The MAC over a token's signed part, keyed by `kid`; `None` for an unknown key.
    fn mac(&self, kid: &str, purpose: Purpose, payload: &str) -> Option<HmacSha256> {
        let key = self.keys.get(kid)?;
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(format!("v1.{kid}.{}.{payload}", purpose.as_str()).as_bytes());
        Some(mac)
    }

    /// Signs `claims` for `purpose` with the current key.
    pub fn sign(&self, purpose: Purpose, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let mac = self
            .mac(&self.current, purpose, &payload)
            .expect("the current key is in the ring")
            .finalize()
            .into_bytes();
        format!("v1.{}.{payload}.{}", self.current, B64.encode(&mac[..16]))
    }

    /// Checks a token for `purpose` at `now`.
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: Timestamp,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(kid), Some(payload), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let given = B64.decode(mac).map_err(|_| TokenError::Malformed)?;
        if given.len() != 16 {
            return Err(TokenError::Malformed);
        }
        // Constant-time comparison of the first 128 bits.
        self.mac(kid, purpose, payload)
            .ok_or(TokenError::UnknownKey)?
            .verify_truncated_left(&given)
            .map_err(|_| TokenError::BadSignature)?;
        let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
        if claims.expires < now.as_micros() / 1_000_000 {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::new("2024-06-03T10:00:00Z".parse().unwrap())
    }

    fn claims() -> Claims {
        Claims {
            message: "we-miss-you/1/hello/email".into(),
            extra: None,
            expires: now().as_micros() / 1_000_000 + 3600,
        }
    }

    fn ring() -> Keyring {
        Keyring::new("k1", &[7u8; 32]).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_for_its_purpose_only() {
        let t = ring().sign(Purpose::Unsubscribe, &claims());
        assert_eq!(ring().verify(Purpose::Unsubscribe, &t, now()), Ok(claims()));
        assert_eq!(
            ring().verify(Purpose::Click, &t, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn forged_truncated_and_expired_tokens_are_refused() {
        let r = ring();
        let t = r.sign(Purpose::Unsubscribe, &claims());
        // Another message in the payload, same MAC.
        let mut forged = claims();
        forged.message = "we-miss-you/2/hello/email".into();
        let payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = t.split('.').collect();
        let tampered = format!("v1.k1.{payload}.{}", parts[3]);
        assert_eq!(
            r.verify(Purpose::Unsubscribe, &tampered, now()),
            Err(TokenError::BadSignature)
        );
        // Signed with a key we do not hold.
        let other = Keyring::new("k1", &[8u8; 32])
            .unwrap()
            .sign(Purpose::Unsubscribe, &claims());
        assert_eq!(
            r.verify(Purpose::Unsubscribe, &other, now()),
            Err(TokenError::BadSignature)
        );
        for cut in [1, 10, t.len() / 2, t.len() - 1] {
            assert!(
                r.verify(Purpose::Unsubscribe, &t[..cut], now()).is_err(),
                "{cut}"
            );
        }
        let later = Timestamp::from_micros(now().as_micros() + 3601 * 1_000_000).unwrap();
        assert_eq!(
            r.verify(Purpose::Unsubscribe, &t, later),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn rotated_keys_still_verify_but_no_longer_sign() {
        let old = ring();
        let t = old.sign(Purpose::Survey, &claims());
        let mut new = Keyring::new("k2", &[9u8; 32]).unwrap();
        new.add("k1", &[7u8; 32]).unwrap();
        assert_eq!(new.verify(Purpose::Survey, &t, now()), Ok(claims()));
        assert!(new.sign(Purpose::Survey, &claims()).starts_with("v1.k2."));
        let without = Keyring::new("k2", &[9u8; 32]).unwrap();
        assert_eq!(
            without.verify(Purpose::Survey, &t, now()),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        assert!(Keyring::new("k1", b"short").is_err());
        assert!(Keyring::new("k.1", &[1u8; 32]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_verify(s in ".{0,200}") {
            proptest::prop_assert!(ring().verify(Purpose::Unsubscribe, &s, now()).is_err());
        }
    }
}
