//! Google Wallet: offer objects created and updated through the Wallet REST API with a service
//! account, and "Add to Google Wallet" links (a JWT the service account signs).
//!
//! The service account's key signs two kinds of JWT with RS256: the OAuth assertion exchanged
//! for an access token, and the save link's token. Both are three base64url parts; written here
//! on the `rsa` crate the DKIM and pass signatures already use, rather than a JWT crate that
//! would bring a second cryptography stack for one function.

use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::Sha256;
use winback_domain::Timestamp;

use crate::wallet::WalletError;

/// The service account's key file, as the Google Cloud console downloads it.
#[derive(Clone)]
pub struct ServiceAccount {
    client_email: String,
    token_uri: String,
    key: rsa::RsaPrivateKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

fn bad_key(reason: impl Into<String>) -> WalletError {
    WalletError::Key {
        what: "Google service account",
        reason: reason.into(),
    }
}

impl ServiceAccount {
    /// Reads the JSON key file (`client_email`, `private_key` in PKCS #8 PEM, `token_uri`).
    pub fn from_json(text: &str) -> Result<Self, WalletError> {
        use rsa::pkcs8::DecodePrivateKey;
        let f: KeyFile = serde_json::from_str(text)
            .map_err(|e| bad_key(format!("not a service account key file: {e}")))?;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&f.private_key)
            .map_err(|e| bad_key(format!("private_key: {e}")))?;
        Ok(Self {
            client_email: f.client_email,
            token_uri: f
                .token_uri
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            key,
        })
    }

    /// The account's address (the JWTs' issuer).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// An RS256 JWT with `claims`.
    pub fn jwt(&self, claims: &serde_json::Value) -> String {
        let header = B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signing = format!("{header}.{body}");
        let key = rsa::pkcs1v15::SigningKey::<Sha256>::new(self.key.clone());
        let signature = key.sign(signing.as_bytes()).to_bytes();
        format!("{signing}.{}", B64.encode(signature))
    }
}

/// What an offer object shows.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferObject {
    /// The pass's serial (the object id is `ISSUER.SERIAL`).
    pub serial: String,
    /// The personal code (the barcode).
    pub code: Option<String>,
    /// The offer in words.
    pub offer: Option<String>,
    /// When it expires.
    pub expires: Option<Timestamp>,
    /// Used or revoked.
    pub voided: bool,
}

/// What the API said about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Created.
    Created,
    /// Updated.
    Updated,
    /// Failed; try again later.
    Failed(String),
}

/// A Google Wallet issuer's offer objects.
#[derive(Debug)]
pub struct GoogleWallet {
    account: ServiceAccount,
    issuer_id: String,
    class_id: String,
    api: String,
    client: reqwest::Client,
    token: Mutex<Option<(String, i64)>>,
}

const SCOPE: &str = "https://www.googleapis.com/auth/wallet_object.issuer";

impl GoogleWallet {
    /// `class_suffix`: the offer class the shop created in the Wallet console (its id is
    /// `ISSUER.SUFFIX`); `api`: `https://walletobjects.googleapis.com` (a local endpoint in
    /// tests).
    pub fn new(
        account: ServiceAccount,
        issuer_id: &str,
        class_suffix: &str,
        api: &str,
    ) -> Result<Self, WalletError> {
        Ok(Self {
            class_id: format!("{issuer_id}.{class_suffix}"),
            issuer_id: issuer_id.to_owned(),
            account,
            api: api.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .map_err(|e| bad_key(e.to_string()))?,
            token: Mutex::new(None),
        })
    }

    /// The object id of pass `serial`.
    pub fn object_id(&self, serial: &str) -> String {
        format!("{}.{serial}", self.issuer_id)
    }

    /// The "Add to Google Wallet" link for `object`. The object travels in the link, so it
    /// works before the worker created it through the API (Google creates it on save).
    pub fn save_link(&self, object: &OfferObject, now: Timestamp) -> String {
        let jwt = self.account.jwt(&serde_json::json!({
            "iss": self.account.client_email,
            "aud": "google",
            "typ": "savetowallet",
            "iat": now.as_micros() / 1_000_000,
            "payload": {"offerObjects": [self.object_json(object)]},
        }));
        format!("https://pay.google.com/gp/v/save/{jwt}")
    }

    /// An access token, fetched with the service account's assertion and kept until a minute
    /// before it expires.
    async fn access_token(&self, now: Timestamp) -> Result<String, String> {
        let secs = now.as_micros() / 1_000_000;
        if let Some((t, until)) = self.token.lock().expect("token lock").clone() {
            if until > secs + 60 {
                return Ok(t);
            }
        }
        let assertion = self.account.jwt(&serde_json::json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": secs,
            "exp": secs + 3600,
        }));
        let r = self
            .client
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("token: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("token: {}", r.status()));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            access_token: String,
            #[serde(default)]
            expires_in: Option<i64>,
        }
        let t: Token = r.json().await.map_err(|e| format!("token: {e}"))?;
        *self.token.lock().expect("token lock") =
            Some((t.access_token.clone(), secs + t.expires_in.unwrap_or(3600)));
        Ok(t.access_token)
    }

    fn object_json(&self, o: &OfferObject) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.object_id(&o.serial),
            "classId": self.class_id,
            "state": if o.voided { "INACTIVE" } else { "ACTIVE" },
        });
        if let Some(code) = &o.code {
            v["barcode"] =
                serde_json::json!({"type": "QR_CODE", "value": code, "alternateText": code});
        }
        if let Some(offer) = &o.offer {
            v["textModulesData"] =
                serde_json::json!([{"id": "offer", "header": "Offer", "body": offer}]);
        }
        if let Some(e) = o.expires {
            v["validTimeInterval"] = serde_json::json!({"end": {"date": e.to_string()}});
        }
        v
    }

    /// Creates the object, or updates it when it exists.
    pub async fn upsert(&self, o: &OfferObject, now: Timestamp) -> SyncOutcome {
        let token = match self.access_token(now).await {
            Ok(t) => t,
            Err(e) => return SyncOutcome::Failed(e),
        };
        let body = self.object_json(o);
        let created = self
            .client
            .post(format!("{}/walletobjects/v1/offerObject", self.api))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        match created {
            Ok(r) if r.status().is_success() => return SyncOutcome::Created,
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {}
            Ok(r) => return SyncOutcome::Failed(format!("create: {}", r.status())),
            Err(e) => return SyncOutcome::Failed(format!("create: {e}")),
        }
        match self
            .client
            .patch(format!(
                "{}/walletobjects/v1/offerObject/{}",
                self.api,
                self.object_id(&o.serial)
            ))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => SyncOutcome::Updated,
            Ok(r) => SyncOutcome::Failed(format!("update: {}", r.status())),
            Err(e) => SyncOutcome::Failed(format!("update: {e}")),
        }
    }
}
