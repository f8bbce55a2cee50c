//! Configuration (`winback.toml`), and what it builds: the engine's settings, the schedule, the
//! renderer, composer and every channel's transport. One place, so the CLI, the HTTP service
//! and the worker are built alike.
//!
//! Sources: built-in defaults, then `winback.toml`, then `WINBACK_…` environment variables
//! (`WINBACK_DATABASE_URL`, `WINBACK_IMPORT__MAX_ERRORS`, `WINBACK_IDENTITY__PHONE=false`, …).

use std::path::Path;

use anyhow::{Context, Result};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use winback_domain::{Currency, DecimalSeparator, Locale, Region, TimeZoneName, Timestamp};
use winback_identity::IdentityRules;
use winback_import::{DateOrder, ImportOptions};
use winback_scoring::{ClvSettings, InactivityDefinition, PrioritySettings, StageRules};

/// Everything `winback.toml` can set.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://winback.db` (default) or `postgres://user@host/db`.
    pub database_url: String,
    /// PostgreSQL schema to keep this store in (several shops or test runs in one database).
    pub database_schema: Option<String>,
    /// Region for phone numbers without a country code.
    pub default_region: String,
    /// Zone for times without an offset, and for customers without one.
    pub default_time_zone: String,
    /// Currency for amounts without a currency column.
    pub default_currency: String,
    /// Locale for customers without one.
    pub default_locale: Option<String>,
    /// Import settings.
    pub import: ImportConfig,
    /// Identity-resolution rules.
    pub identity: IdentityConfig,
    /// `[scoring]`: which purchase model, and the prediction horizon.
    pub scoring: ScoringConfig,
    /// `[stages]`: lifecycle stage thresholds.
    pub stages: StageRules,
    /// `[clv]`: horizon, discount rate and margin of CLV.
    pub clv: ClvSettings,
    /// `[[inactivity]]`: named inactivity definitions (replacing the defaults when given).
    pub inactivity: Vec<InactivityDefinition>,
    /// `[priority]`: win-back priority response rates, boosts, offer cost and exclusions.
    pub priority: PrioritySettings,
    /// `[engine]`: the worker's leases, batches and offer-code key.
    pub engine: EngineConfig,
    /// `[policy]`: send windows, frequency caps and the deliverability ramp.
    pub policy: PolicyConfig,
    /// `[simulation]`: how simulated contacts respond (`winback simulate`, `winback demo`).
    pub simulation: winback_engine::simulate::ResponseModel,
    /// `[email]`: sender, link base and transport.
    pub email: EmailConfig,
    /// `[smtp]`: the relay, when `email.transport = "smtp"` (the password never printed).
    pub smtp: winback_channels::SmtpSettings,
    /// `[tokens]`: keys that sign links in messages.
    pub tokens: TokensConfig,
    /// `[server]`: `winback serve` (tracking links and the `/v1` API).
    pub server: ServerConfig,
    /// `[sms]`: the generic HTTP SMS provider; without `url`, SMS go to `KEY.sms.json` files in
    /// the outbox.
    pub sms: winback_channels::sms::SmsSettings,
    /// `[webhooks]`: campaign webhook steps; without `secret`, they go to JSON files.
    pub webhooks: WebhooksConfig,
    /// `[privacy]`: the retention policy.
    pub privacy: PrivacyConfig,
    /// `[schedule]`: what the worker runs by itself (nightly scoring, refreshes after ingests).
    pub schedule: crate::schedule::ScheduleConfig,
    /// `[measurement]`: message costs for `winback report`.
    pub measurement: MeasurementConfig,
    /// `[exports]`: the legal basis each audience destination may receive contacts on.
    pub exports: crate::exports::ExportsConfig,
    /// `[wallet]`: Apple Wallet passes (certificates, APNs).
    pub wallet: crate::wallet::WalletConfig,
}

/// `[measurement]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeasurementConfig {
    /// What one email costs (ESP fees), minor units of the default currency.
    pub email_cost_minor: i64,
    /// What one SMS costs, minor units.
    pub sms_cost_minor: i64,
    /// What one printed card costs with its postage, minor units.
    pub print_cost_minor: i64,
    /// What one contact added to an ad or onboarding audience costs (the campaign's ad spend
    /// over its audience), minor units; 0 leaves ad spend out of the margin.
    pub audience_cost_minor: i64,
    /// What putting one contact on a call list costs in agent time, minor units.
    pub call_cost_minor: i64,
}

impl Default for MeasurementConfig {
    fn default() -> Self {
        Self {
            email_cost_minor: 1,
            sms_cost_minor: 8,
            print_cost_minor: 90,
            audience_cost_minor: 0,
            call_cost_minor: 250,
        }
    }
}

/// `[privacy]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Months without customer-originated activity after which a person is erased (seed 001
    /// cites the GDPR practice of 36).
    pub retention_months: u32,
    /// Days the erasure waits after the `retention-notice` campaign's "do you want to stay?"
    /// message (0: no waiting; the campaign is only sent when applied and started).
    pub notice_days: u32,
    /// Whether `winback worker` runs the retention policy daily.
    pub enforce: bool,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            retention_months: 36,
            notice_days: 30,
            enforce: true,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body in bytes (413 above).
    pub body_limit_bytes: usize,
    /// Requests per second per API key (429 above).
    pub rate_per_second: u32,
    /// Burst per API key.
    pub burst: u32,
    /// Topics of the preference centre.
    pub topics: Vec<String>,
    /// Take client addresses from `X-Forwarded-For` (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// How long a dashboard login lasts, hours.
    pub session_hours: i64,
    /// Dashboard login attempts per minute per client address.
    pub logins_per_minute: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        // The HTTP service's defaults (`winback_http::ServerSettings::new`) are these.
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 10 * 1024 * 1024,
            rate_per_second: 200,
            burst: 400,
            topics: vec!["offers".into(), "news".into(), "product_updates".into()],
            trust_forwarded_for: false,
            session_hours: 8,
            logins_per_minute: 10,
        }
    }
}

/// One more DKIM key (`[[email.dkim_more]]`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// `s=`.
    pub selector: String,
    /// `d=`; `email.dkim_domain` when absent.
    #[serde(default)]
    pub domain: Option<String>,
    /// The private key file.
    pub key_file: String,
}

/// `[webhooks]`
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Signs outgoing webhook bodies (`X-Winback-Signature`); empty: webhooks go to files.
    pub secret: String,
    /// Hosts allowed past the SSRF check (internal services).
    pub allow_hosts: Vec<String>,
    /// Seconds before a webhook call times out.
    pub timeout_seconds: Option<u64>,
}

/// `[email]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `eml` (one file per message in `outbox_dir`, the default) or `smtp`.
    pub transport: String,
    /// Folder for `.eml` files (and for SMS and webhook messages until their providers are set).
    pub outbox_dir: String,
    /// Sender address.
    pub from_address: String,
    /// Sender name.
    pub from_name: String,
    /// The shop's name in templates.
    pub shop_name: String,
    /// Public base URL of `winback serve`, for unsubscribe, preference, survey and tracking links.
    pub public_url: String,
    /// Where calls to action lead.
    pub shop_url: String,
    /// Address for mailto unsubscribes.
    pub unsubscribe_mailto: String,
    /// Domain for `List-Id` and `Message-ID`.
    pub list_domain: String,
    /// Sender id in `Feedback-ID`.
    pub feedback_sender: String,
    /// DKIM selector, domain and key file (RSA or Ed25519 PEM as openssl writes it, or a base64
    /// Ed25519 seed); all or none.
    pub dkim_selector: Option<String>,
    /// DKIM domain.
    pub dkim_domain: Option<String>,
    /// DKIM key file.
    pub dkim_key_file: Option<String>,
    /// The shop's own email templates: `en/NAME.mjml`, `nl/NAME.mjml`, `pl/NAME.mjml` beside
    /// the library's (a library name replaces its template); read at start.
    pub templates_dir: Option<String>,
    /// Further DKIM keys, each a signature of its own (an Ed25519 key beside the RSA one):
    /// `dkim_more = [{ selector = "ed1", key_file = "ed25519.pem" }]`; `domain` defaults to
    /// `dkim_domain`.
    pub dkim_more: Vec<DkimKeyConfig>,
    /// Messages per second per recipient domain, e.g. `{ "gmail.com" = 20 }` (others unlimited).
    pub domain_rates: std::collections::BTreeMap<String, u32>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        let d = winback_channels::EmailSettings::default();
        Self {
            transport: "eml".into(),
            outbox_dir: "outbox".into(),
            from_address: d.from_address,
            from_name: d.from_name,
            shop_name: d.shop_name,
            public_url: d.public_url,
            shop_url: d.shop_url,
            unsubscribe_mailto: d.unsubscribe_mailto,
            list_domain: d.list_domain,
            feedback_sender: d.feedback_sender,
            dkim_selector: None,
            dkim_domain: None,
            dkim_key_file: None,
            dkim_more: Vec::new(),
            templates_dir: None,
            domain_rates: Default::default(),
        }
    }
}

/// `[tokens]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// Id of the key that signs new links.
    pub current: String,
    /// Keys by id (at least 32 bytes each); keep retired ones here so old links still work.
    pub keys: std::collections::BTreeMap<String, String>,
}

/// The link-signing key every copy of winback ships with: fine for the demo and a loopback
/// trial, never for a server the public reaches (anyone can read it and forge links).
pub const BUILTIN_TOKEN_KEY: &str = "winback-development-token-key-change-me";
/// The offer-code key every copy of winback ships with.
pub const BUILTIN_ENGINE_SECRET: &str = "winback-development-secret";

impl Default for TokensConfig {
    /// No keys: the built-in development key signs (see [`TokensConfig::effective_keys`]).
    /// Defaults carry no key, so a configured `keys` table replaces it instead of being merged
    /// with it (the built-in key must never keep verifying beside a real one).
    fn default() -> Self {
        Self {
            current: "dev".into(),
            keys: std::collections::BTreeMap::new(),
        }
    }
}

impl TokensConfig {
    /// The keys that sign and verify: the configured ones, or the built-in development key
    /// when none is configured.
    pub fn effective_keys(&self) -> std::collections::BTreeMap<String, String> {
        if self.keys.is_empty() {
            [(self.current.clone(), BUILTIN_TOKEN_KEY.to_owned())].into()
        } else {
            self.keys.clone()
        }
    }
}

/// `[engine]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Key that makes offer codes unguessable; set it (`WINBACK_ENGINE__SECRET`) in production.
    pub secret: String,
    /// Seconds a claim is held before another worker may take it over.
    pub lease_seconds: i64,
    /// Claims per batch.
    pub batch: usize,
    /// Deliveries in flight at once per worker; match `[smtp] pool` (an SMTP relay's
    /// round trips, not winback, bound a sequential sender).
    pub send_concurrency: usize,
    /// Seconds between passes of `winback worker`.
    pub poll_seconds: u64,
    /// A worker whose clock differs from the database's by more than this refuses to run: its
    /// leases and due times would lock other workers out (a clock 30 days fast leases a claim
    /// for 30 days). 0 turns the check off: only for simulations (`WINBACK_NOW`) on a store no
    /// other worker uses.
    pub max_clock_skew_seconds: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            secret: BUILTIN_ENGINE_SECRET.into(),
            lease_seconds: 60,
            batch: 500,
            send_concurrency: 4,
            poll_seconds: 5,
            max_clock_skew_seconds: 60,
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Local window for marketing sends, e.g. `"09:00-20:00"` (SMS never outside 08:00–21:00).
    pub send_window: String,
    /// Frequency caps across every campaign.
    pub caps: Vec<winback_engine::policy::Cap>,
    /// The deliverability ramp and breaker.
    pub ramp: winback_engine::policy::RampSettings,
    /// A message that cannot leave within this long is dropped as expired, e.g. `"7d"`.
    pub max_defer: String,
    /// `[policy.calls]`: when customer service may call, and whom.
    pub calls: CallsConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = winback_engine::policy::PolicySettings::default();
        Self {
            send_window: p.send_window.to_string(),
            caps: p.caps,
            ramp: p.ramp,
            max_defer: p.max_defer.to_string(),
            calls: CallsConfig::default(),
        }
    }
}

/// `[policy.calls]`: call lists' quiet hours and rules (the Dutch telemarketing code's hours by
/// default).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Monday to Friday, the contact's local time.
    pub weekdays: String,
    /// Saturday, or `"off"`.
    pub saturday: String,
    /// Sunday, or `"off"`.
    pub sunday: String,
    /// Tries before a contact who is never reached leaves the list.
    pub max_attempts: u32,
    /// Only customers who ordered within this many years are called (0: anyone on the list).
    pub customer_years: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            weekdays: "09:00-21:00".into(),
            saturday: "10:00-16:00".into(),
            sunday: "off".into(),
            max_attempts: 3,
            customer_years: 3,
        }
    }
}

impl Config {
    /// Refuses to run a server or worker that signs links or offer codes with a key from
    /// winback's public source, unless nobody outside this machine can reach its links (the
    /// public URL is loopback) or the store is the demo's.
    pub fn refuse_builtin_secrets(&self) -> Result<()> {
        let builtin_tokens = self
            .tokens
            .effective_keys()
            .values()
            .any(|k| k == BUILTIN_TOKEN_KEY);
        let builtin_engine = self.engine.secret == BUILTIN_ENGINE_SECRET;
        if !builtin_tokens && !builtin_engine {
            return Ok(());
        }
        let host = self
            .email
            .public_url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let demo = self.database_url.contains("winback-demo");
        if loopback || demo {
            return Ok(());
        }
        let which = match (builtin_tokens, builtin_engine) {
            (true, true) => "[tokens] and [engine] secret use the built-in development keys",
            (true, false) => "[tokens] uses the built-in development key",
            _ => "[engine] secret is the built-in development key",
        };
        anyhow::bail!(
            "refusing to start: {which} (public in winback's source), so anyone could forge unsubscribe, preference and click links (and guess offer codes) for {}. Run `winback keys secret` for a fresh key and set it, e.g. WINBACK_TOKENS__CURRENT=k1 WINBACK_TOKENS__KEYS__K1=<secret> WINBACK_ENGINE__SECRET=<another secret>; README: Keys and rotation",
            self.email.public_url
        )
    }

    /// Whether the shop set `[email] public_url` (the default, `https://mail.shop.example`, is
    /// nobody's address).
    pub fn public_url_configured(&self) -> bool {
        self.email.public_url.trim_end_matches('/')
            != EmailConfig::default().public_url.trim_end_matches('/')
    }

    /// The signing keys from `[tokens]`.
    pub fn keyring(&self) -> Result<winback_channels::Keyring> {
        let keys = self.tokens.effective_keys();
        let secret = keys.get(&self.tokens.current).with_context(|| {
            format!(
                "tokens.current = `{}` names no key in tokens.keys",
                self.tokens.current
            )
        })?;
        let mut ring = winback_channels::Keyring::new(&self.tokens.current, secret.as_bytes())?;
        for (kid, secret) in &keys {
            ring.add(kid, secret.as_bytes())?;
        }
        Ok(ring)
    }

    /// The scoring settings: `[scoring]`, `[stages]`, `[clv]`, `[[inactivity]]`, `[priority]`.
    pub fn scoring_settings(&self) -> crate::scoring::Settings {
        crate::scoring::Settings {
            scoring: self.scoring.clone(),
            stages: self.stages,
            clv: self.clv,
            inactivity: self.inactivity.clone(),
            priority: self.priority.clone(),
        }
    }

    /// What the report's figures are computed with: margin, message costs, currency, ramp.
    pub fn report_settings(&self) -> winback_report::Settings {
        winback_report::Settings {
            margin: self.clv.margin,
            email_cost_minor: self.measurement.email_cost_minor,
            sms_cost_minor: self.measurement.sms_cost_minor,
            print_cost_minor: self.measurement.print_cost_minor,
            audience_cost_minor: self.measurement.audience_cost_minor,
            call_cost_minor: self.measurement.call_cost_minor,
            currency: self.default_currency.clone(),
            ramp: self.policy.ramp,
        }
    }

    /// The worker's schedule (`[schedule]`, with `[identity]` and the scoring settings).
    pub fn schedule(&self) -> Result<crate::schedule::Schedule> {
        let mut s = self.schedule.schedule(
            self.identity.auto_resolve,
            self.identity.rules.clone(),
            self.scoring_settings(),
        )?;
        s.retention = self
            .privacy
            .enforce
            .then_some((self.privacy.retention_months, self.privacy.notice_days));
        Ok(s)
    }

    /// The renderer of email bodies: the library and `[email] templates_dir`.
    pub fn renderer(&self) -> Result<winback_channels::Renderer> {
        let r = winback_channels::Renderer::new(&self.email.shop_name);
        Ok(match &self.email.templates_dir {
            Some(dir) => r
                .with_templates_dir(std::path::Path::new(dir))
                .context("email.templates_dir")?,
            None => r,
        })
    }

    /// Renders and signs messages as `[email]` and `[tokens]` describe.
    pub fn composer(
        &self,
        clock: std::sync::Arc<dyn winback_domain::Clock>,
    ) -> Result<winback_channels::Composer> {
        let e = &self.email;
        let settings = winback_channels::EmailSettings {
            from_address: e.from_address.clone(),
            from_name: e.from_name.clone(),
            shop_name: e.shop_name.clone(),
            public_url: e.public_url.clone(),
            shop_url: e.shop_url.clone(),
            unsubscribe_mailto: e.unsubscribe_mailto.clone(),
            list_domain: e.list_domain.clone(),
            feedback_sender: e.feedback_sender.clone(),
            link_days: 365,
        };
        let mut composer = winback_channels::Composer::new(settings, self.keyring()?, clock);
        if self.wallet_links_enabled() {
            composer = composer.with_wallet_links();
        }
        if let Some(dir) = &e.templates_dir {
            composer = composer
                .with_templates_dir(std::path::Path::new(dir))
                .context("email.templates_dir")?;
        }
        match (&e.dkim_selector, &e.dkim_domain, &e.dkim_key_file) {
            (Some(selector), Some(domain), Some(file)) => {
                let key = std::fs::read_to_string(file)
                    .with_context(|| format!("email.dkim_key_file {file}"))?;
                composer = composer.with_dkim(selector, domain, key.trim())?;
            }
            (None, None, None) => {}
            _ => anyhow::bail!("email.dkim_selector, dkim_domain and dkim_key_file go together"),
        }
        for (i, more) in e.dkim_more.iter().enumerate() {
            let domain = more
                .domain
                .as_ref()
                .or(e.dkim_domain.as_ref())
                .with_context(|| format!("email.dkim_more[{i}]: domain (or email.dkim_domain)"))?;
            let key = std::fs::read_to_string(&more.key_file)
                .with_context(|| format!("email.dkim_more[{i}].key_file {}", more.key_file))?;
            composer = composer
                .with_dkim(&more.selector, domain, key.trim())
                .with_context(|| format!("email.dkim_more[{i}].key_file {}", more.key_file))?;
        }
        Ok(composer)
    }

    /// The email transport `[email]` and `[smtp]` describe.
    pub fn mailer(
        &self,
        clock: std::sync::Arc<dyn winback_domain::Clock>,
    ) -> Result<winback_channels::Mailer> {
        let e = &self.email;
        let composer = self.composer(clock)?;
        Ok(match e.transport.as_str() {
            "eml" => winback_channels::Mailer::Eml(
                winback_channels::EmlOutbox::new(composer, &e.outbox_dir)
                    .with_context(|| format!("creating {}", e.outbox_dir))?,
            ),
            "smtp" => winback_channels::Mailer::Smtp(winback_channels::SmtpTransport::new(
                composer, &self.smtp,
            )?),
            other => anyhow::bail!("email.transport = `{other}`: use eml or smtp"),
        })
    }

    /// Every channel's transport: email by `[email]`; SMS through `[sms]` when it has a URL;
    /// webhooks over signed HTTP when `[webhooks]` has a secret; the rest as JSON files in the
    /// outbox folder.
    pub fn transports(
        &self,
        clock: std::sync::Arc<dyn winback_domain::Clock>,
    ) -> Result<
        winback_channels::Routed<
            winback_channels::email::DomainRateLimited<winback_channels::Mailer>,
            winback_channels::sms::SmsTransport,
            Route<winback_channels::http::WebhookTransport>,
        >,
    > {
        let dir = std::path::PathBuf::from(&self.email.outbox_dir);
        let files = || {
            winback_engine::file_outbox::FileOutbox::new(&dir)
                .with_context(|| format!("creating {}", dir.display()))
        };
        let wallet_links = self.wallet_links_enabled().then(|| -> Result<_> {
            Ok(winback_channels::WalletLinks::new(
                self.keyring()?,
                &self.email.public_url,
                365,
                clock.clone(),
            ))
        });
        let wallet_links = wallet_links.transpose()?;
        let sms = if self.sms.url.is_empty() {
            let mut outbox = winback_channels::sms::SmsOutbox::new(
                &dir,
                &self.email.shop_name,
                &self.sms.sender,
            )
            .with_context(|| format!("creating {}", dir.display()))?;
            if let Some(l) = wallet_links {
                outbox = outbox.with_wallet_links(l);
            }
            winback_channels::sms::SmsTransport::Folder(Box::new(outbox))
        } else {
            anyhow::ensure!(
                !self.sms.secret.is_empty(),
                "sms.secret is required with sms.url"
            );
            let mut http = winback_channels::sms::HttpSms::new(
                self.sms.clone(),
                &self.email.shop_name,
                clock.clone(),
            );
            if let Some(l) = wallet_links {
                http = http.with_wallet_links(l);
            }
            winback_channels::sms::SmsTransport::Http(http)
        };
        let webhook = if self.webhooks.secret.is_empty() {
            Route::File(files()?)
        } else {
            Route::Live(winback_channels::http::WebhookTransport::new(
                winback_channels::http::SignedPoster::new(
                    self.webhooks.secret.as_bytes(),
                    self.webhooks.allow_hosts.clone(),
                    std::time::Duration::from_secs(
                        self.webhooks.timeout_seconds.unwrap_or(10).max(1),
                    ),
                ),
                clock.clone(),
            ))
        };
        Ok(winback_channels::Routed {
            email: winback_channels::email::DomainRateLimited::new(
                self.mailer(clock)?,
                &self.email.domain_rates,
            )
            .map_err(anyhow::Error::msg)?,
            sms,
            webhook,
        })
    }

    /// Whether `[wallet]` names an Apple pass type: `winback serve` then serves passes.
    pub fn wallet_enabled(&self) -> bool {
        !self.wallet.pass_type_id.trim().is_empty()
    }

    /// Whether passes can be added to any wallet (Apple's or Google's): messages of journeys
    /// that issued a pass then carry an add-to-wallet link.
    pub fn wallet_links_enabled(&self) -> bool {
        self.wallet_enabled() || !self.wallet.google.issuer_id.trim().is_empty()
    }

    /// How call lists are read: `[policy.calls]` and the default zone.
    pub fn call_settings(&self) -> Result<winback_store::calls::CallSettings> {
        use winback_engine::duration::LocalWindow;
        let c = &self.policy.calls;
        let window = |key: &str, v: &str| -> Result<Option<LocalWindow>> {
            if v.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            LocalWindow::parse(v)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("policy.calls.{key}: {e}"))
        };
        let weekdays = window("weekdays", &c.weekdays)?
            .ok_or_else(|| anyhow::anyhow!("policy.calls.weekdays cannot be off"))?;
        anyhow::ensure!(
            c.max_attempts >= 1,
            "policy.calls.max_attempts must be at least 1"
        );
        Ok(winback_store::calls::CallSettings {
            hours: winback_engine::policy::CallHours {
                weekdays,
                saturday: window("saturday", &c.saturday)?,
                sunday: window("sunday", &c.sunday)?,
            },
            default_zone: self.default_time_zone.clone(),
            max_attempts: c.max_attempts,
            customer_years: (c.customer_years > 0).then_some(c.customer_years),
        })
    }

    /// The engine's settings from `[engine]`, `[policy]` and the default zone.
    pub fn engine_settings(&self) -> Result<winback_engine::EngineSettings> {
        use winback_engine::duration::{Duration, LocalWindow};
        // Refused at start, like every other setting, not when the first list is read.
        self.call_settings()?;
        let send_window = LocalWindow::parse(&self.policy.send_window)
            .map_err(|e| anyhow::anyhow!("policy.send_window: {e}"))?;
        let max_defer = Duration::parse(&self.policy.max_defer)
            .map_err(|e| anyhow::anyhow!("policy.max_defer: {e}"))?;
        anyhow::ensure!(
            self.policy.ramp.step > 0.0 && self.policy.ramp.step <= 0.10,
            "policy.ramp.step must be above 0 and at most 0.10 (seed 001: widen in steps of at most 10%)"
        );
        anyhow::ensure!(
            self.engine.lease_seconds >= 5,
            "engine.lease_seconds must be at least 5"
        );
        Ok(winback_engine::EngineSettings {
            policy: winback_engine::policy::PolicySettings {
                send_window,
                default_zone: self.default_time_zone.clone(),
                caps: self.policy.caps.clone(),
                ramp: self.policy.ramp,
                max_defer,
            },
            secret: self.engine.secret.as_bytes().to_vec(),
            lease_seconds: self.engine.lease_seconds,
            batch: self.engine.batch.max(1),
            worker_id: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
                std::process::id()
            ),
            date_grace_days: 2,
            send_concurrency: self.engine.send_concurrency.max(1),
        })
    }
}

pub use crate::scoring::ScoringConfig;

/// `[import]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportConfig {
    /// How to read `03/04/2024`: `dmy` or `mdy`; unset refuses ambiguous dates.
    pub date_order: Option<DateOrder>,
    /// `auto`, `dot` or `comma`.
    pub decimal: DecimalSeparator,
    /// CSV delimiter.
    pub delimiter: String,
    /// Errors listed before an import stops looking.
    pub max_errors: usize,
    /// Records per write batch.
    pub batch_rows: usize,
}

/// `[identity]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Resolve identities after every import.
    pub auto_resolve: bool,
    /// The merge rules.
    #[serde(flatten)]
    pub rules: IdentityRules,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://winback.db".into(),
            database_schema: None,
            default_region: "NL".into(),
            default_time_zone: "Europe/Amsterdam".into(),
            default_currency: "EUR".into(),
            default_locale: None,
            import: ImportConfig::default(),
            identity: IdentityConfig::default(),
            scoring: ScoringConfig::default(),
            stages: StageRules::default(),
            clv: ClvSettings::default(),
            inactivity: InactivityDefinition::defaults(),
            priority: PrioritySettings::default(),
            engine: EngineConfig::default(),
            policy: PolicyConfig::default(),
            simulation: winback_engine::simulate::ResponseModel::default(),
            email: EmailConfig::default(),
            smtp: winback_channels::SmtpSettings::default(),
            tokens: TokensConfig::default(),
            server: ServerConfig::default(),
            sms: winback_channels::sms::SmsSettings::default(),
            webhooks: WebhooksConfig::default(),
            privacy: PrivacyConfig::default(),
            schedule: crate::schedule::ScheduleConfig::default(),
            measurement: MeasurementConfig::default(),
            exports: crate::exports::ExportsConfig::default(),
            wallet: crate::wallet::WalletConfig::default(),
        }
    }
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            date_order: None,
            decimal: DecimalSeparator::Auto,
            delimiter: ",".into(),
            max_errors: 20,
            batch_rows: 5000,
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            auto_resolve: true,
            rules: IdentityRules::default(),
        }
    }
}

impl Config {
    /// Loads defaults, then `path` (when it exists, or always when given explicitly), then the
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
                fig = fig.merge(Toml::file(p));
            }
            None => fig = fig.merge(Toml::file("winback.toml")),
        }
        fig = fig.merge(Env::prefixed("WINBACK_").split("__").ignore(&[
            "test_database_url",
            "crash_contacts",
            "crash_report",
            // Read by `winback admin set-password`, never part of the configuration.
            "admin_password",
            "chromedriver",
            "chromium",
            // The CLI's starting time (`WINBACK_NOW`), read before the configuration.
            "now",
            // The CLI's logging (`WINBACK_LOG`, `WINBACK_LOG_FORMAT`), set up before it.
            "log",
            "log_format",
            // Where a `winback bench cycle` step reports its peak memory at exit.
            "peak_memory_file",
        ]));
        let config: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        InactivityDefinition::validate(&config.inactivity)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        anyhow::ensure!(
            config.scoring.horizon_days > 0.0,
            "invalid configuration: scoring.horizon_days must be positive"
        );
        config
            .engine_settings()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(config)
    }

    /// Opens (creating and migrating when needed) the store `database_url` names.
    pub async fn open_store(&self) -> Result<winback_store::SqlStore> {
        winback_store::SqlStore::connect_in_schema(
            &self.database_url,
            self.database_schema.as_deref(),
        )
        .await
        .with_context(|| format!("cannot open the database {}", redact(&self.database_url)))
    }

    /// The import options these settings give, as of `now`.
    pub fn import_options(&self, now: Timestamp) -> Result<ImportOptions> {
        let mut o = ImportOptions::new(now);
        o.default_region = Region::parse(&self.default_region).context("default_region")?;
        o.default_time_zone =
            TimeZoneName::parse(&self.default_time_zone).context("default_time_zone")?;
        o.default_currency = Currency::parse(&self.default_currency).context("default_currency")?;
        o.default_locale = self
            .default_locale
            .as_deref()
            .map(Locale::parse)
            .transpose()
            .context("default_locale")?;
        o.date_order = self.import.date_order;
        o.decimal = self.import.decimal;
        o.delimiter = match self.import.delimiter.as_str() {
            "tab" | "\t" => b'\t',
            d if d.len() == 1 => d.as_bytes()[0],
            d => anyhow::bail!("import.delimiter `{d}` must be one character or `tab`"),
        };
        Ok(o)
    }
}

/// The URL with any password replaced, for messages: secrets are never printed or logged.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/w"),
            "postgres://app:***@db:5432/w"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite://winback.db"), "sqlite://winback.db");
    }
}

/// A channel's transport, or the JSON file outbox when the channel is not configured.
#[derive(Debug)]
pub enum Route<T> {
    /// The configured provider.
    Live(T),
    /// One JSON file per message.
    File(winback_engine::file_outbox::FileOutbox),
}

impl<T: winback_engine::ports::Transport> winback_engine::ports::Transport for Route<T> {
    async fn deliver(
        &self,
        message: &winback_engine::ports::Dispatch,
    ) -> winback_engine::ports::SendOutcome {
        match self {
            Route::Live(t) => t.deliver(message).await,
            Route::File(f) => f.deliver(message).await,
        }
    }
}
