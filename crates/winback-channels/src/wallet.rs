//! Wallet passes (seed 001's "push wallet"): Apple Wallet `.pkpass` files carrying a contact's
//! personal offer code, signed as Apple requires, and the APNs pushes that tell a device its pass
//! changed.
//!
//! A `.pkpass` is a zip of `pass.json`, the images, `manifest.json` (the SHA-1 of every other
//! file) and `signature`: a detached CMS (PKCS #7) SignedData over the manifest, signed with the
//! shop's pass type certificate and carrying Apple's WWDR intermediate. The signature is built
//! with the RustCrypto `cms` crate; the keys are read as `openssl` writes them (PKCS #8 or
//! PKCS #1 PEM).

use std::io::Write;

use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::{Decode, DecodePem, Encode};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use winback_domain::Timestamp;
use x509_cert::Certificate;

/// The pass icon when the shop gives none (Apple refuses a pass without `icon.png`).
const DEFAULT_ICON: &[u8] = include_bytes!("../assets/wallet-icon.png");
const DEFAULT_ICON_2X: &[u8] = include_bytes!("../assets/wallet-icon@2x.png");

/// What went wrong with a pass or a push.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// A certificate or key file could not be read.
    #[error("{what}: {reason}")]
    Key {
        /// Which file.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Signing failed.
    #[error("signing the pass: {0}")]
    Sign(String),
    /// Writing the zip failed.
    #[error("writing the pass: {0}")]
    Zip(String),
}

fn key_error(what: &'static str) -> impl Fn(String) -> WalletError {
    move |reason| WalletError::Key { what, reason }
}

/// The shop's pass type certificate and key, and Apple's WWDR intermediate.
#[derive(Clone)]
pub struct PassSigner {
    cert: Certificate,
    wwdr: Certificate,
    key: rsa::RsaPrivateKey,
}

impl std::fmt::Debug for PassSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PassSigner")
            .field("subject", &self.cert.tbs_certificate.subject.to_string())
            .finish_non_exhaustive()
    }
}

impl PassSigner {
    /// Reads the certificate, its RSA key (`openssl genrsa` PKCS #1 or `openssl genpkey` PKCS
    /// #8 PEM) and the WWDR intermediate (PEM or DER, as Apple publishes it).
    pub fn from_pem(cert: &[u8], key: &str, wwdr: &[u8]) -> Result<Self, WalletError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let read_cert = |bytes: &[u8], what: &'static str| {
            Certificate::from_pem(bytes)
                .or_else(|_| Certificate::from_der(bytes))
                .map_err(|e| key_error(what)(e.to_string()))
        };
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(key)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(key))
            .map_err(|e| key_error("pass key")(format!("not an RSA private key in PEM: {e}")))?;
        let signer = Self {
            cert: read_cert(cert, "pass certificate")?,
            wwdr: read_cert(wwdr, "WWDR certificate")?,
            key,
        };
        // The key must be the certificate's: a mismatch would sign passes no device accepts.
        let public = rsa::RsaPublicKey::from(&signer.key);
        let spki_der = signer
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| key_error("pass certificate")(e.to_string()))?;
        use rsa::pkcs8::EncodePublicKey;
        let ours = public
            .to_public_key_der()
            .map_err(|e| key_error("pass key")(e.to_string()))?;
        if ours.as_bytes() != spki_der.as_slice() {
            return Err(key_error("pass key")(
                "does not belong to the pass certificate".into(),
            ));
        }
        Ok(signer)
    }

    /// A detached CMS SignedData (DER) over `content`: SHA-256, RSA PKCS #1 v1.5, signed
    /// attributes with the signing time, both certificates included.
    pub fn sign_detached(&self, content: &[u8]) -> Result<Vec<u8>, WalletError> {
        let sign = |e: cms::builder::Error| WalletError::Sign(e.to_string());
        let eci = EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        };
        let digest = Sha256::digest(content);
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: self.cert.tbs_certificate.issuer.clone(),
            serial_number: self.cert.tbs_certificate.serial_number.clone(),
        });
        let digest_alg = AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_256,
            parameters: None,
        };
        let key = rsa::pkcs1v15::SigningKey::<Sha256>::new(self.key.clone());
        let info = SignerInfoBuilder::new(&key, sid, digest_alg.clone(), &eci, Some(&digest))
            .map_err(sign)?;
        let mut builder = SignedDataBuilder::new(&eci);
        builder
            .add_digest_algorithm(digest_alg)
            .map_err(sign)?
            .add_certificate(CertificateChoices::Certificate(self.cert.clone()))
            .map_err(sign)?
            .add_certificate(CertificateChoices::Certificate(self.wwdr.clone()))
            .map_err(sign)?
            .add_signer_info::<_, rsa::pkcs1v15::Signature>(info)
            .map_err(sign)?;
        builder
            .build()
            .map_err(sign)?
            .to_der()
            .map_err(|e| WalletError::Sign(e.to_string()))
    }
}

pub use winback_engine::definition::PassStyle;

/// What a pass shows and where its device asks for updates.
#[derive(Debug, Clone, PartialEq)]
pub struct PassContent {
    /// The shop's pass type identifier (`pass.com.shop.winback`).
    pub pass_type: String,
    /// The shop's Apple team identifier.
    pub team: String,
    /// The pass's serial number.
    pub serial: String,
    /// The token the device sends back (at least 16 characters).
    pub auth_token: String,
    /// Where the PassKit web service is (`https://mail.shop.example/wallet`).
    pub web_service_url: String,
    /// The shop's name.
    pub organization: String,
    /// Coupon or store card.
    pub style: PassStyle,
    /// The personal offer code (the barcode), if the contact holds one.
    pub code: Option<String>,
    /// The offer in words.
    pub offer: Option<String>,
    /// When the offer expires (the pass expires with it).
    pub expires: Option<Timestamp>,
    /// The offer was used or withdrawn: the pass shows as void.
    pub voided: bool,
}

impl PassContent {
    /// `pass.json`.
    pub fn pass_json(&self) -> serde_json::Value {
        let offer = self
            .offer
            .clone()
            .unwrap_or_else(|| self.organization.clone());
        let mut fields = serde_json::json!({
            "primaryFields": [{"key": "offer", "label": "OFFER", "value": offer,
                               "changeMessage": "%@"}],
        });
        if let Some(code) = &self.code {
            fields["secondaryFields"] = serde_json::json!([
                {"key": "code", "label": "CODE", "value": code, "changeMessage": "Your new code: %@"}
            ]);
        }
        if let Some(e) = self.expires {
            fields["auxiliaryFields"] = serde_json::json!([
                {"key": "expires", "label": "VALID UNTIL", "value": e.to_string(),
                 "dateStyle": "PKDateStyleMedium", "changeMessage": "Now valid until %@"}
            ]);
        }
        let mut pass = serde_json::json!({
            "formatVersion": 1,
            "passTypeIdentifier": self.pass_type,
            "serialNumber": self.serial,
            "teamIdentifier": self.team,
            "organizationName": self.organization,
            "description": format!("{}: {offer}", self.organization),
            "authenticationToken": self.auth_token,
            "webServiceURL": self.web_service_url,
            "foregroundColor": "rgb(255, 255, 255)",
            "backgroundColor": "rgb(31, 107, 82)",
        });
        pass[match self.style {
            PassStyle::Coupon => "coupon",
            PassStyle::StoreCard => "storeCard",
        }] = fields;
        if let Some(code) = &self.code {
            pass["barcodes"] = serde_json::json!([{
                "format": "PKBarcodeFormatQR", "message": code,
                "messageEncoding": "iso-8859-1", "altText": code,
            }]);
        }
        if let Some(e) = self.expires {
            pass["expirationDate"] = serde_json::Value::String(e.to_string());
        }
        if self.voided {
            pass["voided"] = serde_json::Value::Bool(true);
        }
        pass
    }

    /// The signed `.pkpass` file (`icon`: the shop's 29×29 PNG, or winback's).
    pub fn build(&self, signer: &PassSigner, icon: Option<&[u8]>) -> Result<Vec<u8>, WalletError> {
        let pass = serde_json::to_vec_pretty(&self.pass_json())
            .map_err(|e| WalletError::Zip(e.to_string()))?;
        let files: Vec<(&str, &[u8])> = vec![
            ("pass.json", &pass),
            ("icon.png", icon.unwrap_or(DEFAULT_ICON)),
            ("icon@2x.png", icon.unwrap_or(DEFAULT_ICON_2X)),
        ];
        let manifest: serde_json::Map<String, serde_json::Value> = files
            .iter()
            .map(|(name, bytes)| {
                (
                    (*name).to_owned(),
                    serde_json::Value::String(hex::encode(sha1::Sha1::digest(bytes))),
                )
            })
            .collect();
        let manifest =
            serde_json::to_vec(&manifest).map_err(|e| WalletError::Zip(e.to_string()))?;
        let signature = signer.sign_detached(&manifest)?;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let zip_err = |e: zip::result::ZipError| WalletError::Zip(e.to_string());
        for (name, bytes) in files.iter().copied().chain([
            ("manifest.json", manifest.as_slice()),
            ("signature", signature.as_slice()),
        ]) {
            zip.start_file(name, options).map_err(zip_err)?;
            zip.write_all(bytes)
                .map_err(|e| WalletError::Zip(e.to_string()))?;
        }
        Ok(zip.finish().map_err(zip_err)?.into_inner())
    }
}

/// What APNs said about one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted.
    Sent,
    /// The device token is no longer valid (410): the registration is gone.
    Unregistered,
    /// Anything else; try again later.
    Failed(String),
}

/// An APNs client for pass updates: an empty push to each registered device with the pass
/// type as the topic, over HTTP/2. Authenticated with the pass type certificate (Wallet
/// updates take certificate authentication).
#[derive(Debug, Clone)]
pub struct Apns {
    client: reqwest::Client,
    base: String,
    topic: String,
}

impl Apns {
    /// `base`: `https://api.push.apple.com` (or a local `http://` endpoint, spoken to with
    /// HTTP/2 prior knowledge); `identity_pem`: the pass certificate and its key in one PEM.
    pub fn new(base: &str, topic: &str, identity_pem: Option<&[u8]>) -> Result<Self, WalletError> {
        let mut b = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .http2_prior_knowledge();
        if let Some(pem) = identity_pem {
            b = b.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| key_error("APNs identity")(e.to_string()))?,
            );
        }
        Ok(Self {
            client: b
                .build()
                .map_err(|e| key_error("APNs client")(e.to_string()))?,
            base: base.trim_end_matches('/').to_owned(),
            topic: topic.to_owned(),
        })
    }

    /// Tells the device holding `push_token` that its passes changed.
    pub async fn push(&self, push_token: &str) -> PushOutcome {
        if push_token.is_empty() || !push_token.chars().all(|c| c.is_ascii_hexdigit()) {
            return PushOutcome::Unregistered;
        }
        let r = self
            .client
            .post(format!("{}/3/device/{push_token}", self.base))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "background")
            .header("apns-priority", "5")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => PushOutcome::Sent,
            Ok(r) if r.status() == reqwest::StatusCode::GONE => PushOutcome::Unregistered,
            Ok(r) => {
                let status = r.status();
                PushOutcome::Failed(format!("{status}: {}", r.text().await.unwrap_or_default()))
            }
            Err(e) => PushOutcome::Failed(e.to_string()),
        }
    }
}
