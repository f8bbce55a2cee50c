//! Wallet passes: the shop's Apple Wallet settings (`[wallet]`), the signed pass a device or a
//! contact's add-to-wallet link gets, the tokens PassKit requests carry, and the pushes that
//! tell registered devices a pass changed. One service for `winback serve` (the PassKit web
//! service) and the worker (the pushes).

use std::path::PathBuf;

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use winback_channels::wallet::{Apns, PassContent, PassSigner, PassStyle, PushOutcome};
use winback_domain::Timestamp;
use winback_store::SqlStore;

/// `[wallet]`: Apple Wallet. Without `pass_type_id` passes are still issued, counted and
/// pushed to nobody; with it, the certificate, key and WWDR files are required.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalletConfig {
    /// The pass type identifier registered with Apple (`pass.com.shop.winback`).
    pub pass_type_id: String,
    /// The shop's Apple team identifier.
    pub team_id: String,
    /// The pass type certificate (PEM or DER).
    pub certificate: Option<PathBuf>,
    /// Its private key (PEM, as `openssl` writes it).
    pub key: Option<PathBuf>,
    /// Apple's WWDR intermediate certificate (PEM or DER).
    pub wwdr: Option<PathBuf>,
    /// The pass icon (PNG, 29×29); winback's own when unset.
    pub icon: Option<PathBuf>,
    /// APNs (`https://api.push.apple.com`; a local endpoint in tests).
    pub apns_url: String,
    /// `[wallet.google]`: Google Wallet.
    pub google: GoogleWalletConfig,
}

/// `[wallet.google]`: Google Wallet offer objects. Without `issuer_id`, none are made.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleWalletConfig {
    /// The issuer id from the Google Pay & Wallet console.
    pub issuer_id: String,
    /// The offer class made in the console (its id is `ISSUER.SUFFIX`).
    pub class_suffix: String,
    /// The service account's JSON key file.
    pub service_account: Option<PathBuf>,
    /// The Wallet REST API (`https://walletobjects.googleapis.com`; a local endpoint in tests).
    pub api_url: String,
}

/// A stored pass as Google Wallet's offer object.
fn object_of(
    p: &winback_store::wallet::StoredPass,
) -> winback_channels::google_wallet::OfferObject {
    winback_channels::google_wallet::OfferObject {
        serial: p.serial.clone(),
        code: p.offer_code.clone(),
        offer: p.offer.clone(),
        expires: p.expires_at,
        voided: p.voided,
    }
}

/// Google Wallet objects synced in one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncTally {
    /// Objects created.
    pub created: u64,
    /// Objects updated.
    pub updated: u64,
    /// Failed; tried again next round.
    pub failed: u64,
}

/// The shop's Google Wallet issuer: keeps each pass's offer object up to date, and makes the
/// "Add to Google Wallet" links.
#[derive(Debug, Clone)]
pub struct GoogleWalletService {
    wallet: std::sync::Arc<winback_channels::google_wallet::GoogleWallet>,
}

impl GoogleWalletService {
    /// The service `[wallet.google]` describes, or `None` without an issuer id.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Self>> {
        let g = &config.wallet.google;
        if g.issuer_id.trim().is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            !g.class_suffix.trim().is_empty(),
            "wallet.google.class_suffix is required with wallet.google.issuer_id"
        );
        let path = g
            .service_account
            .as_ref()
            .context("wallet.google.service_account is required with wallet.google.issuer_id")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("wallet.google.service_account: {}", path.display()))?;
        let account = winback_channels::google_wallet::ServiceAccount::from_json(&text)
            .context("wallet.google.service_account")?;
        let api = if g.api_url.is_empty() {
            "https://walletobjects.googleapis.com"
        } else {
            g.api_url.as_str()
        };
        Ok(Some(Self {
            wallet: std::sync::Arc::new(winback_channels::google_wallet::GoogleWallet::new(
                account,
                g.issuer_id.trim(),
                g.class_suffix.trim(),
                api,
            )?),
        }))
    }

    /// The "Add to Google Wallet" link of pass `serial`; `None`: no such pass.
    pub async fn save_link(
        &self,
        store: &SqlStore,
        serial: &str,
        now: Timestamp,
    ) -> Result<Option<String>> {
        Ok(store
            .wallet_pass(serial)
            .await?
            .map(|p| self.wallet.save_link(&object_of(&p), now)))
    }

    /// Creates or updates the offer object of every pass whose object is behind.
    pub async fn sync_due(&self, store: &SqlStore, now: Timestamp) -> Result<SyncTally> {
        use winback_channels::google_wallet::SyncOutcome;
        let mut tally = SyncTally::default();
        loop {
            let due = store.wallet_google_due(200).await?;
            if due.is_empty() {
                break;
            }
            let mut progressed = false;
            for p in &due {
                match self.wallet.upsert(&object_of(p), now).await {
                    SyncOutcome::Created | SyncOutcome::Updated => {
                        store.wallet_google_synced(&p.serial, p.version).await?;
                        progressed = true;
                        tally.created += u64::from(p.version == 1);
                        tally.updated += u64::from(p.version > 1);
                    }
                    SyncOutcome::Failed(why) => {
                        tracing::warn!(serial = %p.serial, "Google Wallet: {why}");
                        tally.failed += 1;
                    }
                }
            }
            if !progressed || due.len() < 200 {
                break;
            }
        }
        Ok(tally)
    }
}

/// Pushes sent in one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushTally {
    /// Accepted by APNs.
    pub sent: u64,
    /// Devices APNs says are gone (unregistered).
    pub gone: u64,
    /// Failed; tried again next round.
    pub failed: u64,
}

/// The shop's wallet: signs passes, checks PassKit tokens, pushes changes.
#[derive(Debug, Clone)]
pub struct WalletService {
    signer: PassSigner,
    pass_type: String,
    team: String,
    web_service_url: String,
    organization: String,
    secret: Vec<u8>,
    icon: Option<Vec<u8>>,
    apns: Apns,
}

impl WalletService {
    /// The service `[wallet]` describes, or `None` when no pass type is configured.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Self>> {
        let w = &config.wallet;
        if !config.wallet_enabled() {
            return Ok(None);
        }
        let read = |p: &Option<PathBuf>, key: &str| -> Result<Vec<u8>> {
            let p = p
                .as_ref()
                .with_context(|| format!("wallet.{key} is required with wallet.pass_type_id"))?;
            std::fs::read(p).with_context(|| format!("wallet.{key}: reading {}", p.display()))
        };
        let cert = read(&w.certificate, "certificate")?;
        let key = String::from_utf8(read(&w.key, "key")?).context("wallet.key: not PEM text")?;
        let wwdr = read(&w.wwdr, "wwdr")?;
        let signer = PassSigner::from_pem(&cert, &key, &wwdr).context("wallet")?;
        anyhow::ensure!(!w.team_id.trim().is_empty(), "wallet.team_id is required");
        let icon = w
            .icon
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("wallet.icon: {}", p.display())))
            .transpose()?;
        let apns_url = if w.apns_url.is_empty() {
            "https://api.push.apple.com".to_owned()
        } else {
            w.apns_url.clone()
        };
        // Wallet pushes authenticate with the pass certificate and its key.
        let identity = [cert.as_slice(), b"\n", key.as_bytes()].concat();
        let identity = apns_url
            .starts_with("https://")
            .then_some(identity.as_slice());
        Ok(Some(Self {
            signer,
            pass_type: w.pass_type_id.trim().to_owned(),
            team: w.team_id.trim().to_owned(),
            web_service_url: format!("{}/wallet", config.email.public_url.trim_end_matches('/')),
            organization: config.email.shop_name.clone(),
            secret: config.engine.secret.as_bytes().to_vec(),
            icon,
            apns: Apns::new(&apns_url, w.pass_type_id.trim(), identity)
                .context("wallet.apns_url")?,
        }))
    }

    /// The pass type identifier.
    pub fn pass_type(&self) -> &str {
        &self.pass_type
    }

    /// The token a pass carries and its device sends back (`Authorization: ApplePass …`):
    /// derived from the serial with the engine's secret, so it is never stored.
    pub fn auth_token(&self, serial: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(b"passkit/");
        mac.update(serial.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..20])
    }

    /// Whether `presented` is the pass's token (in constant time).
    pub fn token_ok(&self, serial: &str, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.auth_token(serial)
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }

    /// The signed `.pkpass` of pass `serial` as it is now, and when it last changed; `None`:
    /// no such pass.
    pub async fn pkpass(
        &self,
        store: &SqlStore,
        serial: &str,
    ) -> Result<Option<(Vec<u8>, Timestamp)>> {
        let Some(p) = store.wallet_pass(serial).await? else {
            return Ok(None);
        };
        let content = PassContent {
            pass_type: self.pass_type.clone(),
            team: self.team.clone(),
            serial: p.serial.clone(),
            auth_token: self.auth_token(&p.serial),
            web_service_url: self.web_service_url.clone(),
            organization: self.organization.clone(),
            style: PassStyle::parse(&p.style).unwrap_or(PassStyle::Coupon),
            code: p.offer_code.clone(),
            offer: p.offer.clone(),
            expires: p.expires_at,
            voided: p.voided,
        };
        Ok(Some((
            content.build(&self.signer, self.icon.as_deref())?,
            p.updated_at,
        )))
    }

    /// Tells every registered device whose pass changed since it was last told: one push per
    /// change and device, recorded once APNs accepted it.
    pub async fn push_due(&self, store: &SqlStore, now: Timestamp) -> Result<PushTally> {
        let mut tally = PushTally::default();
        loop {
            let due = store.wallet_pushes_due(500).await?;
            if due.is_empty() {
                break;
            }
            let mut progressed = false;
            for push in &due {
                match self.apns.push(&push.push_token).await {
                    PushOutcome::Sent => {
                        store.wallet_pushed(push).await?;
                        tally.sent += 1;
                        progressed = true;
                    }
                    PushOutcome::Unregistered => {
                        store
                            .unregister_wallet_device(&push.device, &push.serial, now)
                            .await?;
                        tally.gone += 1;
                        progressed = true;
                    }
                    PushOutcome::Failed(why) => {
                        tracing::warn!(device = %push.device, serial = %push.serial, "APNs push failed: {why}");
                        tally.failed += 1;
                    }
                }
            }
            // APNs down: the rest waits for the next round rather than spinning.
            if !progressed || due.len() < 500 {
                break;
            }
        }
        Ok(tally)
    }
}
