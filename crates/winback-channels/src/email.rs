//! Composing marketing email and handing it over: SMTP through lettre's async pool, or one
//! `.eml` file per message.
//!
//! Every message carries a `Message-ID` derived from its idempotency key (so a receiving system
//! can de-duplicate, and a resend after a crash would be recognisable), RFC 8058 one-click
//! unsubscribe (`List-Unsubscribe` with an HTTPS URL and a mailto, and
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`), `List-Id` and `Feedback-ID`. With DKIM
//! keys configured each signs it ([`crate::dkim`]), covering and oversigning both unsubscribe
//! headers.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{PoolConfig, authentication::Credentials};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use winback_domain::Clock;
use winback_engine::file_outbox::OnceDir;
use winback_engine::ports::{Dispatch, MessageChannel, SendOutcome, Transport};

use crate::render::{Links, Renderer};
use crate::tokens::{Claims, Keyring, Purpose};

/// Survey reasons a message can offer (keys of `links.survey`).
pub const SURVEY_REASONS: [&str; 6] = [
    "too_many_emails",
    "not_relevant",
    "price",
    "quality",
    "competitor",
    "other",
];

/// Who sends, and where links point.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Sender address (`news@shop.example`).
    pub from_address: String,
    /// Sender name when the step gives none.
    pub from_name: String,
    /// The shop's name, for templates.
    pub shop_name: String,
    /// Public base URL of `winback serve` (`https://mail.shop.example`), for tracking links.
    pub public_url: String,
    /// Where the call to action leads.
    pub shop_url: String,
    /// Address that unsubscribes whoever writes to it (`unsubscribe@shop.example`).
    pub unsubscribe_mailto: String,
    /// Domain for `List-Id` and `Message-ID`.
    pub list_domain: String,
    /// Sender id in `Feedback-ID` (for Gmail's feedback loop).
    pub feedback_sender: String,
    /// How long links in a message stay valid, in days.
    pub link_days: i64,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            from_address: "news@shop.example".into(),
            from_name: "The Shop".into(),
            shop_name: "The Shop".into(),
            public_url: "https://mail.shop.example".into(),
            shop_url: "https://shop.example".into(),
            unsubscribe_mailto: "unsubscribe@shop.example".into(),
            list_domain: "shop.example".into(),
            feedback_sender: "winback".into(),
            link_days: 365,
        }
    }
}

/// Why a message could not be composed (it is not sent; the outbox row fails with this).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// An address or header is invalid.
    #[error("{0}")]
    Address(String),
    /// Signing failed.
    #[error(transparent)]
    Dkim(#[from] DkimError),
}

pub use crate::dkim::DkimError;

/// A composed message: its envelope and its bytes as they go on the wire, DKIM-signed.
#[derive(Debug, Clone)]
pub struct Composed {
    envelope: lettre::address::Envelope,
    bytes: Vec<u8>,
    subject: String,
}

impl Composed {
    /// The bytes (RFC 5322, CRLF line ends), signatures first.
    pub fn formatted(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The envelope: the From address as sender, the To address as recipient.
    pub fn envelope(&self) -> &lettre::address::Envelope {
        &self.envelope
    }

    /// The subject line as rendered for the recipient.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Renders a dispatch into a signed RFC 5322 message.
pub struct Composer {
    renderer: Renderer,
    keys: Keyring,
    settings: EmailSettings,
    dkim: Vec<crate::dkim::DkimSigner>,
    clock: Arc<dyn Clock>,
    /// Whether `winback serve` serves wallet passes (`[wallet]` set): only then does a
    /// message carry an add-to-wallet link.
    wallet: bool,
}

impl std::fmt::Debug for Composer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composer")
            .field("settings", &self.settings)
            .field("dkim", &self.dkim)
            .finish()
    }
}

/// `Message-ID` local part from an idempotency key: stable, opaque, and free of characters a
/// header cannot carry.
pub fn message_id(key: &str, domain: &str) -> String {
    let h = Sha256::digest(key.as_bytes());
    format!("<wb.{}@{domain}>", &hex::encode(h)[..32])
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

impl Composer {
    /// A composer.
    pub fn new(settings: EmailSettings, keys: Keyring, clock: Arc<dyn Clock>) -> Self {
        Self {
            renderer: Renderer::new(&settings.shop_name),
            keys,
            settings,
            dkim: Vec::new(),
            wallet: false,
            clock,
        }
    }

    /// Messages of journeys that issued a wallet pass carry an add-to-wallet link
    /// (`links.wallet`; the layout shows a button).
    pub fn with_wallet_links(mut self) -> Self {
        self.wallet = true;
        self
    }

    /// Signs with DKIM, with a key as people have them: what `openssl genrsa` and
    /// `openssl genpkey -algorithm ed25519` write (PKCS#8 `BEGIN PRIVATE KEY`), an RSA key in
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`), or an Ed25519 seed in base64. Called again with
    /// another key (an Ed25519 key beside an RSA one), each message carries both signatures.
    pub fn with_dkim(mut self, selector: &str, domain: &str, key: &str) -> Result<Self, DkimError> {
        self.dkim.push(crate::dkim::DkimSigner {
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            key: crate::dkim::DkimKey::parse(key)?,
        });
        Ok(self)
    }

    /// Adds the shop's own templates (see [`Renderer::with_templates_dir`]).
    pub fn with_templates_dir(
        mut self,
        dir: &std::path::Path,
    ) -> Result<Self, crate::render::RenderError> {
        self.renderer = self.renderer.with_templates_dir(dir)?;
        Ok(self)
    }

    /// The renderer.
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// The settings.
    pub fn settings(&self) -> &EmailSettings {
        &self.settings
    }

    /// Signed links for a message.
    pub fn links(&self, d: &Dispatch) -> Links {
        let now = self.clock.now();
        let expires = now.as_micros() / 1_000_000 + self.settings.link_days * 86_400;
        let sign = |purpose: Purpose, extra: Option<&str>| {
            self.keys.sign(
                purpose,
                &Claims {
                    message: d.key.to_string(),
                    extra: extra.map(str::to_owned),
                    expires,
                },
            )
        };
        let base = self.settings.public_url.trim_end_matches('/');
        Links {
            unsubscribe: format!("{base}/u/{}", sign(Purpose::Unsubscribe, None)),
            preferences: format!("{base}/p/{}", sign(Purpose::Preferences, None)),
            survey: SURVEY_REASONS
                .iter()
                .map(|r| {
                    (
                        (*r).to_owned(),
                        format!("{base}/s/{}", sign(Purpose::Survey, Some(r))),
                    )
                })
                .collect(),
            shop: format!("{base}/c/{}", sign(Purpose::Click, Some("shop"))),
            keep: format!("{base}/c/{}", sign(Purpose::Click, Some("preferences"))),
            pixel: format!("{base}/o/{}", sign(Purpose::Open, None)),
            wallet: d
                .wallet_pass
                .as_deref()
                .filter(|_| self.wallet)
                .map(|serial| format!("{base}/w/{}", sign(Purpose::Wallet, Some(serial)))),
        }
    }

    /// Renders and builds the message, DKIM-signed with every configured key.
    pub fn compose(&self, d: &Dispatch) -> Result<Composed, ComposeError> {
        let links = self.links(d);
        let rendered = self.renderer.render(d, &links)?;
        let s = &self.settings;
        let from_name = d
            .sender_name
            .as_deref()
            .map(|n| self.renderer.render_line(n, d))
            .transpose()?
            .unwrap_or_else(|| s.from_name.clone());
        let from = Mailbox::new(
            Some(from_name),
            s.from_address
                .parse()
                .map_err(|e| ComposeError::Address(format!("from address: {e}")))?,
        );
        let to: Mailbox =
            d.to.parse()
                .map_err(|e| ComposeError::Address(format!("recipient `{}`: {e}", d.to)))?;
        let token = links.unsubscribe.rsplit('/').next().unwrap_or_default();
        let list_unsubscribe = format!(
            "<{}>, <mailto:{}?subject=unsubscribe%20{}>",
            links.unsubscribe, s.unsubscribe_mailto, token
        );
        let subject = rendered.subject.clone();
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(message_id(d.key.as_str(), &s.list_domain)))
            .date(
                std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_micros(self.clock.now().as_micros().max(0) as u64),
            )
            .raw_header(header("List-Unsubscribe", list_unsubscribe))
            .raw_header(header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".into(),
            ))
            .raw_header(header(
                "List-Id",
                format!("{} <{}.{}>", d.campaign, d.campaign, s.list_domain),
            ))
            .raw_header(header(
                "Feedback-ID",
                format!(
                    "{}:{}:{}:{}",
                    d.step, d.variant, d.campaign, s.feedback_sender
                ),
            ))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| ComposeError::Address(e.to_string()))?;
        let bytes = crate::dkim::sign_all(
            &self.dkim,
            message.formatted(),
            self.clock.now().as_micros() / 1_000_000,
        )?;
        Ok(Composed {
            envelope: message.envelope().clone(),
            bytes,
            subject,
        })
    }
}

/// SMTP connection settings (`[smtp]` in `winback.toml`). `Debug` never shows the password.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `none` (loopback relays only), `starttls` or `tls`.
    pub tls: String,
    /// User name, if the relay wants one.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Connections in the pool.
    pub pool: u32,
    /// Seconds before a command times out.
    pub timeout_seconds: u64,
    /// The name winback gives in EHLO (default: this machine's host name). Relays and
    /// receivers check it against the sending IP's reverse DNS.
    pub ehlo_name: Option<String>,
    /// The envelope sender (return path) for bounces, e.g. `bounces@shop.example`; default:
    /// the From address. With `+` support at the bounce mailbox, each message's return path is
    /// `bounces+TAG@shop.example` (VERP), TAG naming the message, so an asynchronous bounce
    /// can be matched to it.
    pub return_path: Option<String>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("pool", &self.pool)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: "starttls".into(),
            user: None,
            password: None,
            pool: 4,
            timeout_seconds: 30,
            ehlo_name: None,
            return_path: None,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("smtp: {0}")]
pub struct SmtpConfigError(String);

/// Sends through an SMTP relay with a pool of connections.
pub struct SmtpTransport {
    composer: Composer,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    /// The envelope sender base for VERP, when configured.
    return_path: Option<lettre::Address>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("composer", &self.composer)
            .finish()
    }
}

impl SmtpTransport {
    /// A transport to `settings`' relay.
    pub fn new(composer: Composer, settings: &SmtpSettings) -> Result<Self, SmtpConfigError> {
        let tls = match settings.tls.as_str() {
            "none" => Tls::None,
            "starttls" | "tls" => {
                let params = TlsParameters::new(settings.host.clone())
                    .map_err(|e| SmtpConfigError(e.to_string()))?;
                if settings.tls == "tls" {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
            other => {
                return Err(SmtpConfigError(format!(
                    "tls = `{other}`: use none, starttls or tls"
                )));
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(
                settings.timeout_seconds,
            )))
            .pool_config(PoolConfig::new().max_size(settings.pool.max(1)));
        if let Some(name) = settings.ehlo_name.as_deref().filter(|n| !n.is_empty()) {
            builder = builder.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                name.to_owned(),
            ));
        }
        let return_path = match settings.return_path.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => Some(
                r.parse::<lettre::Address>()
                    .map_err(|e| SmtpConfigError(format!("return_path `{r}`: {e}")))?,
            ),
            None => None,
        };
        if let (Some(u), Some(p)) = (&settings.user, &settings.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Self {
            composer,
            smtp: builder.build(),
            return_path,
        })
    }
}

/// The envelope sender of one message: `user+TAG@domain` (VERP), TAG a short hash of the
/// message's idempotency key, so a bounce report sent to the return path names its message.
pub fn verp(return_path: &lettre::Address, key: &str) -> Option<lettre::Address> {
    use sha2::{Digest, Sha256};
    let tag = &hex::encode(Sha256::digest(key.as_bytes()))[..16];
    format!("{}+{tag}@{}", return_path.user(), return_path.domain())
        .parse()
        .ok()
}

/// The relay's queue id in its acceptance reply (`250 2.0.0 Ok: queued as 4Xb2Yz`), else the
/// reply's text: what the relay's logs know the message by.
fn queue_id(reply: &str) -> String {
    let lower = reply.to_ascii_lowercase();
    for marker in ["queued as ", "queued as:", "id="] {
        if let Some(i) = lower.find(marker) {
            let rest = reply[i + marker.len()..].trim();
            if let Some(id) = rest.split_whitespace().next() {
                return id
                    .trim_matches(|c: char| {
                        !c.is_ascii_alphanumeric() && c != '-' && c != '.' && c != '@'
                    })
                    .to_owned();
            }
        }
    }
    reply.trim().to_owned()
}

/// Maps an SMTP error to what it says, by its reply code and enhanced status code (RFC 3463,
/// RFC 5321); see [`classify_reply`]. An error without a reply (connection refused, timeout,
/// TLS) is the transport's.
fn outcome_of(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let why = e.to_string();
    match e.status() {
        Some(code) => classify_reply(u16::from(code), &why),
        None => SendOutcome::TransportFailure(why),
    }
}

/// What one SMTP reply means for the recipient and the relay.
///
/// Only a permanent failure about the recipient is a hard bounce: an enhanced status 5.1.x
/// (bad mailbox, bad domain, bad syntax; 5.1.7 and 5.1.8 are about the *sender* and do not
/// count), or, from a relay that gives no enhanced status, a 550/551/553 whose text names the
/// recipient. A full or busy mailbox (x.2.x, 452) and a temporary recipient reply are soft.
/// Everything else is the relay's: authentication (535, 5.7.8), policy and reputation (5.7.x
/// at MAIL FROM, 554 at the greeting), throttling (421, 4.7.x), content rejections at DATA,
/// protocol and system errors. Those pause the transport and suppress nobody: a wrong password
/// or a blocklisted sending IP must never unsubscribe a shop's list.
pub fn classify_reply(code: u16, text: &str) -> SendOutcome {
    let why = text.to_owned();
    if let Some((class, subject, detail)) = enhanced_status(text) {
        return match (class, subject, detail) {
            (5, 1, 7 | 8) | (4, 1, 7 | 8) => SendOutcome::TransportFailure(why),
            (5, 1, _) => SendOutcome::HardBounce(why),
            (4, 1, _) | (_, 2, _) => SendOutcome::SoftBounce(why),
            _ => SendOutcome::TransportFailure(why),
        };
    }
    let lower = text.to_ascii_lowercase();
    let about_recipient = [
        "user unknown",
        "unknown user",
        "no such user",
        "no such recipient",
        "does not exist",
        "mailbox unavailable",
        "mailbox not found",
        "invalid recipient",
        "recipient address rejected",
        "address rejected",
    ]
    .iter()
    .any(|k| lower.contains(k));
    match code {
        550 | 551 | 553 if about_recipient => SendOutcome::HardBounce(why),
        452 | 552 => SendOutcome::SoftBounce(why),
        450 | 451 if about_recipient => SendOutcome::SoftBounce(why),
        _ => SendOutcome::TransportFailure(why),
    }
}

/// The enhanced status code (`5.1.1`) in a reply's text, as (class, subject, detail).
fn enhanced_status(text: &str) -> Option<(u8, u16, u16)> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .find_map(|w| {
            let mut p = w.split('.');
            let class: u8 = p.next()?.parse().ok()?;
            let subject: u16 = p.next()?.parse().ok()?;
            let detail: u16 = p.next()?.parse().ok()?;
            (p.next().is_none() && matches!(class, 2 | 4 | 5) && subject < 10 && detail < 1000)
                .then_some((class, subject, detail))
        })
}

impl Transport for SmtpTransport {
    async fn deliver(&self, d: &Dispatch) -> SendOutcome {
        if d.channel != MessageChannel::Email {
            return SendOutcome::Failed(format!("no transport for channel `{}`", d.channel));
        }
        let message = match self.composer.compose(d) {
            Ok(m) => m,
            Err(e) => return SendOutcome::Failed(e.to_string()),
        };
        let envelope = match self
            .return_path
            .as_ref()
            .and_then(|r| verp(r, d.key.as_str()))
        {
            Some(from) => {
                let to: Vec<lettre::Address> = message.envelope().to().to_vec();
                match lettre::address::Envelope::new(Some(from), to) {
                    Ok(envelope) => envelope,
                    Err(e) => return SendOutcome::Failed(format!("envelope: {e}")),
                }
            }
            None => message.envelope().clone(),
        };
        let sent = self.smtp.send_raw(&envelope, &message.bytes).await;
        match sent {
            Ok(r) => SendOutcome::Sent {
                provider_id: Some(queue_id(&r.message().collect::<Vec<_>>().join(" "))),
                subject: Some(message.subject().to_owned()),
            },
            Err(e) => outcome_of(&e),
        }
    }
}

/// One `.eml` file per message in a directory, named after its idempotency key, written
/// atomically and never overwritten (the engine's [`OnceDir`]): the embedded default.
#[derive(Debug)]
pub struct EmlOutbox {
    composer: Composer,
    files: OnceDir,
}

impl EmlOutbox {
    /// Writes into `dir`, creating it.
    pub fn new(composer: Composer, dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            composer,
            files: OnceDir::new(dir)?,
        })
    }

    /// The directory and its counts of written and repeated keys.
    pub fn files(&self) -> &OnceDir {
        &self.files
    }

    /// The file a key is written to.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.files.path_of(key, "eml")
    }
}

impl Transport for EmlOutbox {
    async fn deliver(&self, d: &Dispatch) -> SendOutcome {
        if d.channel != MessageChannel::Email {
            return SendOutcome::Failed(format!("no transport for channel `{}`", d.channel));
        }
        let message = match self.composer.compose(d) {
            Ok(m) => m,
            Err(e) => return SendOutcome::Failed(e.to_string()),
        };
        match self.files.put(d.key.as_str(), "eml", &message.formatted()) {
            Ok(_) => SendOutcome::Sent {
                provider_id: None,
                subject: Some(message.subject().to_owned()),
            },
            Err(e) => SendOutcome::Failed(format!("writing {}: {e}", self.files.dir().display())),
        }
    }
}

/// The configured email transport.
#[derive(Debug)]
pub enum Mailer {
    /// `.eml` files.
    Eml(EmlOutbox),
    /// An SMTP relay.
    Smtp(SmtpTransport),
}

impl Transport for Mailer {
    async fn deliver(&self, d: &Dispatch) -> SendOutcome {
        match self {
            Mailer::Eml(t) => t.deliver(d).await,
            Mailer::Smtp(t) => t.deliver(d).await,
        }
    }
}

/// Email to one transport, every other channel (SMS, webhooks) to another.
#[derive(Debug)]
pub struct ByChannel<E, O> {
    /// Email.
    pub email: E,
    /// Everything else.
    pub other: O,
}

impl<E: Transport, O: Transport> Transport for ByChannel<E, O> {
    async fn deliver(&self, d: &Dispatch) -> SendOutcome {
        if d.channel == MessageChannel::Email {
            self.email.deliver(d).await
        } else {
            self.other.deliver(d).await
        }
    }
}

/// Per-recipient-domain sending rates (`[email] domain_rates = { "gmail.com" = 20 }`, messages
/// per second): a large mailbox provider throttles or defers a sender that arrives too fast.
/// A message to a limited domain waits for its turn (well inside its lease); other domains pass
/// straight through.
pub struct DomainRateLimited<T> {
    inner: T,
    limits: std::collections::HashMap<String, governor::DefaultDirectRateLimiter>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for DomainRateLimited<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainRateLimited")
            .field("inner", &self.inner)
            .field("domains", &self.limits.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<T> DomainRateLimited<T> {
    /// Wraps `inner`; `rates` maps a recipient domain to messages per second (0 is refused).
    pub fn new(inner: T, rates: &std::collections::BTreeMap<String, u32>) -> Result<Self, String> {
        let mut limits = std::collections::HashMap::new();
        for (domain, per_second) in rates {
            let n = std::num::NonZeroU32::new(*per_second)
                .ok_or_else(|| format!("email.domain_rates.{domain}: must be at least 1"))?;
            limits.insert(
                domain.to_ascii_lowercase(),
                governor::RateLimiter::direct(governor::Quota::per_second(n)),
            );
        }
        Ok(Self { inner, limits })
    }
}

impl<T: Transport> Transport for DomainRateLimited<T> {
    async fn deliver(&self, message: &Dispatch) -> SendOutcome {
        if let Some(limit) = message
            .to
            .rsplit_once('@')
            .and_then(|(_, d)| self.limits.get(&d.to_ascii_lowercase()))
        {
            limit.until_ready().await;
        }
        self.inner.deliver(message).await
    }
}
