//! `winback-http` owns winback's HTTP service (`winback serve`):
//!
//! - **tracking** ([`tracking`]): the open pixel (human and machine opens told apart), click
//!   redirects by stored link id, RFC 8058 one-click unsubscribe by POST, the unsubscribe page
//!   (a GET that changes nothing), the preference centre with CSRF protection, and one-click
//!   survey answers; every link carries a purpose-bound HMAC token;
//! - **the `/v1` API** ([`api`]): upserting customers, orders and events singly or as NDJSON,
//!   campaign files, ESP and SMS webhooks, behind hashed, scoped API keys ([`auth`]), with
//!   `Idempotency-Key`, a body limit (413), a per-key rate limit (429), stable error codes
//!   ([`error`]) and an OpenAPI document at `/v1/openapi.json`;
//! - **the dashboard** under `/admin` ([`dashboard`]): base health, campaigns with their journey
//!   graph and holdout readouts, customer timelines, behind an administrator's login;
//! - `/healthz` and Prometheus `/metrics`.
//!
//! [`app`] builds the router from an [`AppState`], so tests drive it in process; [`serve`] runs
//! it with graceful shutdown.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod engagement;
pub mod error;
mod openapi;
mod pages;
pub mod tracking;
pub mod wallet;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use winback_channels::Keyring;
use winback_channels::sms::HttpSms;
use winback_domain::Clock;
use winback_import::ImportOptions;
use winback_store::SqlStore;

/// Settings of the service (`[server]` in `winback.toml`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The public base URL links point at (`https://mail.shop.example`); POSTs to the
    /// preference centre and surveys must come from this origin.
    pub public_url: String,
    /// The shop's name on pages.
    pub shop_name: String,
    /// Largest request body, bytes (larger: 413).
    pub body_limit: usize,
    /// Requests per second per API key.
    pub rate_per_second: u32,
    /// Burst per API key.
    pub burst: u32,
    /// Topics the preference centre offers (`topic_off:NAME` tags when turned off).
    pub topics: Vec<String>,
    /// Secret of the inbound SMS webhook's signature; `None` turns the endpoint off.
    pub sms_webhook_secret: Option<String>,
    /// Take the client address from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// Defaults for ingested records (currency, zone, region).
    pub import: ImportOptions,
    /// What the dashboard's and `/v1/report`'s figures are computed with.
    pub report: winback_report::Settings,
    /// How long a dashboard login lasts, hours.
    pub session_hours: i64,
    /// Dashboard login attempts per minute per client address.
    pub logins_per_minute: u32,
    /// Email template names a campaign applied through the API may use (the library's, plus
    /// the shop's `[email] templates_dir`).
    pub templates: std::collections::BTreeSet<String>,
    /// Origins whose forms are taken besides the public URL's: the listener's own, when it is a
    /// loopback address and the shop has configured no public URL (see
    /// [`ServerSettings::listen_at`]). Empty otherwise.
    pub local_origins: Vec<String>,
    /// How call lists are read and outcomes recorded (`[policy.calls]`).
    pub calls: winback_store::calls::CallSettings,
    /// Apple Wallet (`[wallet]`): the PassKit web service answers only when it is set.
    pub wallet: Option<winback_app::wallet::WalletService>,
    /// Google Wallet (`[wallet.google]`): add-to-wallet links on Android lead there.
    pub google_wallet: Option<winback_app::wallet::GoogleWalletService>,
}

impl ServerSettings {
    /// Settings with winback's defaults (those of `[server]`).
    pub fn new(public_url: &str, shop_name: &str, import: ImportOptions) -> Self {
        let d = winback_app::config::ServerConfig::default();
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            shop_name: shop_name.to_owned(),
            body_limit: d.body_limit_bytes,
            rate_per_second: d.rate_per_second,
            burst: d.burst,
            topics: d.topics,
            sms_webhook_secret: None,
            trust_forwarded_for: d.trust_forwarded_for,
            import,
            report: winback_report::Settings::default(),
            session_hours: d.session_hours,
            logins_per_minute: d.logins_per_minute,
            templates: winback_channels::Renderer::templates()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            local_origins: Vec::new(),
            calls: winback_store::calls::CallSettings::default(),
            wallet: None,
            google_wallet: None,
        }
    }

    /// The settings `winback.toml` describes (`[server]`, `[email]`, `[sms]`, the import
    /// defaults and the report's costs), as of `now`.
    pub fn from_config(
        config: &winback_app::config::Config,
        now: winback_domain::Timestamp,
    ) -> anyhow::Result<Self> {
        let mut s = Self::new(
            &config.email.public_url,
            &config.email.shop_name,
            config.import_options(now)?,
        );
        let c = &config.server;
        s.body_limit = c.body_limit_bytes;
        s.rate_per_second = c.rate_per_second;
        s.burst = c.burst;
        s.topics = c.topics.clone();
        s.trust_forwarded_for = c.trust_forwarded_for;
        s.session_hours = c.session_hours.max(1);
        s.logins_per_minute = c.logins_per_minute;
        s.report = config.report_settings();
        s.calls = config.call_settings()?;
        s.wallet = winback_app::wallet::WalletService::from_config(config)?;
        s.google_wallet = winback_app::wallet::GoogleWalletService::from_config(config)?;
        s.templates = config
            .renderer()?
            .template_languages()
            .into_keys()
            .collect();
        if !config.sms.url.is_empty() {
            s.sms_webhook_secret = Some(config.sms.secret.clone());
        }
        Ok(s)
    }

    /// Takes forms from the listener's own address when it listens on loopback and the shop has
    /// configured no public URL (the default points at `https://mail.shop.example`, which no
    /// browser on this machine is at): the dashboard then opens at `http://127.0.0.1:PORT/admin`
    /// as the README says. Another machine cannot reach a loopback listener, so no other site
    /// gains anything. Returns the dashboard's address to print.
    pub fn listen_at(&mut self, addr: std::net::SocketAddr, public_url_configured: bool) -> String {
        if public_url_configured || !addr.ip().is_loopback() {
            self.local_origins.clear();
            return format!("{}/admin", self.public_url);
        }
        let port = addr.port();
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        self.local_origins = vec![
            format!("http://{host}:{port}"),
            format!("http://localhost:{port}"),
        ];
        format!("http://{host}:{port}/admin")
    }

    /// Whether a form sent from `origin` (the `Origin` header) is one of this service's.
    pub fn accepts_origin(&self, origin: &str) -> bool {
        origin == self.origin() || self.local_origins.iter().any(|o| o == origin)
    }

    /// Whether cookies are marked `Secure`: when the public URL is HTTPS, unless the dashboard
    /// is served on plain loopback HTTP (a browser drops a `Secure` cookie sent over HTTP).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://") && self.local_origins.is_empty()
    }

    /// `scheme://host[:port]` of the public URL.
    pub fn origin(&self) -> &str {
        let s = &self.public_url;
        let after_scheme = s.find("://").map(|i| i + 3).unwrap_or(0);
        match s[after_scheme..].find('/') {
            Some(i) => &s[..after_scheme + i],
            None => s,
        }
    }
}

/// Everything handlers share.
pub struct Inner {
    /// The store.
    pub store: SqlStore,
    /// Token keys (the same ring the worker signs links with).
    pub keys: Keyring,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub settings: ServerSettings,
    /// The SMS provider, for STOP confirmations.
    pub sms: Option<HttpSms>,
    /// The batch writer of opens and clicks.
    pub engagement: engagement::Engagement,
    limiter: DefaultKeyedRateLimiter<i64>,
    /// Dashboard login attempts per client address.
    login_limiter: DefaultKeyedRateLimiter<std::net::IpAddr>,
    pages: pages::Pages,
    dashboard: dashboard::Templates,
    /// Click destinations by link id, re-read from the store after [`LINK_TTL`]: a redirect
    /// then costs one database read (the message), not two.
    links: std::sync::RwLock<std::collections::HashMap<String, (Option<String>, Instant)>>,
}

/// How long a click destination is served from memory before the store is asked again.
pub const LINK_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Inner {
    /// The destination of link id `name` (cached for [`LINK_TTL`]).
    pub async fn link(&self, name: &str) -> Result<Option<String>, winback_store::StoreError> {
        if let Some((url, at)) = self
            .links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            if at.elapsed() < LINK_TTL {
                return Ok(url.clone());
            }
        }
        let url = self.store.link(name).await?;
        let mut cache = self.links.write().unwrap_or_else(|p| p.into_inner());
        // Link ids come from signed tokens, so the cache cannot be flooded with made-up ones;
        // the bound is for safety all the same.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(name.to_owned(), (url.clone(), Instant::now()));
        Ok(url)
    }
}

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// State for [`app`]. Starts the engagement writer, so it must be called inside a Tokio
    /// runtime.
    pub fn new(
        store: SqlStore,
        keys: Keyring,
        clock: Arc<dyn Clock>,
        settings: ServerSettings,
        sms: Option<HttpSms>,
    ) -> Self {
        let per_second = NonZeroU32::new(settings.rate_per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(settings.burst.max(1)).expect("at least 1");
        let limiter = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst));
        let engagement = engagement::Engagement::start(store.clone(), clock.clone());
        let logins = NonZeroU32::new(settings.logins_per_minute.max(1)).expect("at least 1");
        Self(Arc::new(Inner {
            login_limiter: RateLimiter::keyed(Quota::per_minute(logins)),
            dashboard: dashboard::Templates::new(),
            engagement,
            store,
            keys,
            clock,
            pages: pages::Pages::new(&settings.shop_name),
            settings,
            sms,
            limiter,
            links: Default::default(),
        }))
    }
}

/// The process-wide Prometheus recorder (a recorder can be installed once per process; every
/// router built in it, tests included, shares it).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed by an embedding program; then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("winback_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("winback_http_request_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

async fn metrics_page(State(state): State<AppState>) -> impl IntoResponse {
    // The schedule's jobs as the store knows them, whichever worker ran them.
    if let Ok(jobs) = state.store.jobs().await {
        for j in jobs {
            let at = j.last_finished.map_or(0.0, |t| t.as_micros() as f64 / 1e6);
            metrics::gauge!("winback_job_last_finished_timestamp_seconds", "job" => j.name.clone())
                .set(at);
            metrics::gauge!("winback_job_runs", "job" => j.name.clone()).set(j.runs as f64);
            metrics::gauge!("winback_job_running", "job" => j.name.clone())
                .set(if j.running_on.is_some() { 1.0 } else { 0.0 });
            metrics::gauge!("winback_job_last_failed", "job" => j.name).set(
                if j.last_outcome
                    .as_deref()
                    .is_some_and(|o| o.starts_with("failed"))
                {
                    1.0
                } else {
                    0.0
                },
            );
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.pool().fetch("SELECT 1", &[]).await {
        Ok(_) => (axum::http::StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!("health check: {e}");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable\n",
            )
                .into_response()
        }
    }
}

/// The router: tracking pages at the root, the API under `/v1`, the dashboard under `/admin`,
/// health and metrics.
pub fn app(state: AppState) -> Router {
    prometheus();
    let limit = state.settings.body_limit;
    Router::new()
        .merge(tracking::routes())
        .merge(api::routes())
        .merge(dashboard::routes())
        .merge(wallet::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .layer(middleware::from_fn(track_metrics))
        // One structured log line per request. The route pattern is logged, never the URI:
        // tracking URIs carry tokens.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "unmatched".into());
                    tracing::info_span!("http", method = %req.method(), route)
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engagement = state.engagement.clone();
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    // The last requests' opens and clicks are stored before the process exits.
    engagement.flush().await;
    Ok(())
}
