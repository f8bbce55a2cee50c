//! The dashboard under `/admin`: server-rendered pages behind an administrator's login.
//!
//! - **Login**: argon2id password hashes ([`hash_password`]), a random session token in an
//!   `HttpOnly; SameSite=Strict` cookie (the store keeps its SHA-256 only), a login rate limit per
//!   client address, and the same answer for an unknown name as for a wrong password.
//! - **CSRF**: every form carries a token (the session's, or before login a double-submit
//!   cookie's) and every POST must come from our own origin.
//! - **Pages**: the overview (base health over time, hygiene, campaigns), a campaign (the journey
//!   as a graph with counts at each step, the readout against the holdout with 95% intervals,
//!   offers, reasons, locales, deliverability per mailbox provider, did they stay) and a
//!   customer's timeline (orders, messages, engagement, journeys, stage changes, and why the
//!   score is what it is). The figures are those of [`winback_report::Report`], the same as
//!   `winback report` and `GET /v1/report`.
//! - **Safety**: minijinja escapes every value; chart data travels as JSON in
//!   `<script type="application/json">` with `<`, `>` and `&` escaped; the Content Security
//!   Policy allows scripts from `/admin/assets` only (uPlot, vendored, and our `dashboard.js`),
//!   so even an escaping bug could not run an inline script.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{AutoEscape, Environment, Value, context};
use subtle::ConstantTimeEq;
use winback_domain::Timestamp;
use winback_engine::JourneyStore;
use winback_report::{CampaignReport, Report, money, n};
use winback_store::admin::AdminSession;

use crate::AppState;
use crate::auth;
use crate::tracking::{Peer, client_ip, cross_origin};

const SESSION_COOKIE: &str = "winback_admin";
const LOGIN_COOKIE: &str = "winback_login";

/// Hashes a dashboard password as an argon2id PHC string (random salt, the crate's default
/// cost: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash no password matches in practice; an unknown name is checked against it so that it
/// takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("winback decoy password, never valid").unwrap_or_default())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares two strings in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The headers every dashboard response carries.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn cookie_attrs(state: &AppState) -> &'static str {
    if state.settings.secure_cookies() {
        "; Path=/admin; HttpOnly; SameSite=Strict; Secure"
    } else {
        "; Path=/admin; HttpOnly; SameSite=Strict"
    }
}

/// A logged-in administrator. Pages that take it send everyone else to the login page.
pub struct Admin(pub AdminSession);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || secure(Redirect::to("/admin/login").into_response());
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        match state
            .store
            .admin_session(&auth::hash(token), state.clock.now())
            .await
        {
            Ok(Some(s)) => Ok(Admin(s)),
            Ok(None) => Err(to_login()),
            Err(e) => Err(internal(e)),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("dashboard: {e}");
    secure((StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response())
}

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/campaigns/{name}", get(campaign))
        .route("/admin/campaigns/{name}/people", get(campaign_people))
        .route("/admin/campaigns/{name}/status", post(campaign_status))
        .route("/admin/customers", get(customer_search))
        .route("/admin/customers/{key}", get(customer))
        .route("/admin/help", get(help))
        .route("/admin/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "uPlot.iife.min.js" => (
            include_str!("../assets/vendor/uplot/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (
            include_str!("../assets/vendor/uplot/uPlot.min.css"),
            "text/css; charset=utf-8",
        ),
        "dashboard.js" => (
            include_str!("../assets/dashboard.js"),
            "text/javascript; charset=utf-8",
        ),
        "dashboard.css" => (
            include_str!("../assets/dashboard.css"),
            "text/css; charset=utf-8",
        ),
        _ => return secure((StatusCode::NOT_FOUND, "not found\n").into_response()),
    };
    secure(
        (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
    )
}

// ---------------------------------------------------------------------------------------------
// Login and logout

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = state
            .store
            .admin_session(&auth::hash(token), state.clock.now())
            .await
        {
            return secure(Redirect::to("/admin").into_response());
        }
    }
    login_form(&state, None, StatusCode::OK)
}

fn login_form(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    // Double-submit: the form's token must equal the cookie's, which another site can neither
    // read nor set.
    let csrf = random_token();
    let page = state.dashboard.render(
        "login.html",
        context! { csrf => csrf, error => error, shop => state.settings.shop_name.clone() },
    );
    let mut response = (status, Html(page)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={csrf}{}; Max-Age=3600",
        cookie_attrs(state)
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    secure(response)
}

/// Why a dashboard form was refused.
enum Refusal {
    /// It was sent from another address than the service's (the `Origin` header, or
    /// `Sec-Fetch-Site: cross-site` without one).
    Origin(Option<String>),
    /// Its CSRF token was missing or did not match: an old page, or cookies turned off.
    Stale,
}

/// The refusal as a page that says what happened and what to do, with status 403.
fn forbidden(state: &AppState, headers: &HeaderMap, why: Refusal) -> Response {
    let (sent, stale) = match why {
        Refusal::Origin(sent) => (sent, false),
        Refusal::Stale => (None, true),
    };
    let mut accepted = vec![state.settings.origin().to_owned()];
    accepted.extend(state.settings.local_origins.iter().cloned());
    tracing::warn!(
        origin = sent.as_deref().unwrap_or(""),
        stale,
        referer = headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        "dashboard form refused"
    );
    let page = state.dashboard.render(
        "refused.html",
        context! {
            shop => state.settings.shop_name.clone(),
            stale => stale,
            sent => sent,
            accepted => accepted,
            open => format!("{}/admin/login", state.settings.origin()),
        },
    );
    secure((StatusCode::FORBIDDEN, Html(page)).into_response())
}

/// [`cross_origin`] with the reason for [`forbidden`].
fn origin_refusal(state: &AppState, headers: &HeaderMap) -> Option<Refusal> {
    cross_origin(state, headers).then(|| {
        Refusal::Origin(
            headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        )
    })
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(why) = origin_refusal(&state, &headers) {
        return forbidden(&state, &headers, why);
    }
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let given = form.get("csrf").map(String::as_str).unwrap_or_default();
    if expected.is_empty() || !same(expected, given) {
        return forbidden(&state, &headers, Refusal::Stale);
    }
    if let Some(ip) = client_ip(&state, &headers, peer) {
        if state.login_limiter.check_key(&ip).is_err() {
            return login_form(
                &state,
                Some("Too many attempts. Wait a minute and try again."),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
    }
    let username = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let user = match state.store.admin_user(username.trim()).await {
        Ok(u) => u,
        Err(e) => return internal(e),
    };
    let hash = user
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    // argon2 is slow on purpose; keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some((user_id, _)) = user.filter(|_| ok) else {
        tracing::warn!(ip = ?client_ip(&state, &headers, peer), "dashboard login refused");
        return login_form(
            &state,
            Some("Wrong name or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let token = random_token();
    let now = state.clock.now();
    let expires = now.plus_seconds(state.settings.session_hours * 3600);
    if let Err(e) = state
        .store
        .create_admin_session(&auth::hash(&token), user_id, &random_token(), now, expires)
        .await
    {
        return internal(e);
    }
    let mut response = Redirect::to("/admin").into_response();
    let attrs = cookie_attrs(&state);
    for c in [
        format!(
            "{SESSION_COOKIE}={token}{attrs}; Max-Age={}",
            state.settings.session_hours * 3600
        ),
        format!("{LOGIN_COOKIE}={attrs}; Max-Age=0"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    secure(response)
}

/// The refusal of a logged-in administrator's form that came from another origin or without
/// the session's CSRF token; `None` when it may proceed.
fn session_form_refused(
    state: &AppState,
    headers: &HeaderMap,
    session: &AdminSession,
    form: &HashMap<String, String>,
) -> Option<Response> {
    if let Some(why) = origin_refusal(state, headers) {
        return Some(forbidden(state, headers, why));
    }
    let given = form.get("csrf").map(String::as_str).unwrap_or_default();
    (!same(&session.csrf, given)).then(|| forbidden(state, headers, Refusal::Stale))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Admin(session): Admin,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = session_form_refused(&state, &headers, &session, &form) {
        return refused;
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = state.store.delete_admin_session(&auth::hash(token)).await {
            return internal(e);
        }
    }
    let mut response = Redirect::to("/admin/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Max-Age=0",
        cookie_attrs(&state)
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    secure(response)
}

// ---------------------------------------------------------------------------------------------
// Pages

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` are escaped so the
/// data cannot end the element or open a comment.
fn json_block(v: &impl serde::Serialize) -> Value {
    let s = serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    Value::from_safe_string(s)
}

fn when(t: Timestamp) -> String {
    let s = t.to_string();
    // `2026-11-24T06:18:52Z` → `2026-11-24 06:18 UTC`
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => s,
    }
}

/// The date-range filter every figures page takes: `?since=YYYY-MM-DD&until=YYYY-MM-DD`, both
/// optional and both days included.
#[derive(Debug, Default, serde::Deserialize)]
struct PeriodQuery {
    since: Option<String>,
    until: Option<String>,
}

/// The period a page shows: contacts who entered (or, on a customer's page, what happened) in
/// `[from, until)`.
struct Period {
    from: Timestamp,
    until: Timestamp,
    since_text: String,
    until_text: String,
    /// A date that could not be read, in words.
    error: Option<String>,
}

impl Period {
    fn new(q: &PeriodQuery) -> Self {
        let mut error = None;
        let mut day = |field: &str, raw: &Option<String>, next: bool| -> Option<Timestamp> {
            let raw = raw.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
            let date = raw
                .parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| if next { d.tomorrow().ok() } else { Some(d) });
            match date.and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok()) {
                Some(z) => Some(Timestamp::new(z.timestamp())),
                None => {
                    error = Some(format!(
                        "“{raw}” is not a date for “{field}”: use a date such as 2026-03-01"
                    ));
                    None
                }
            }
        };
        let from = day("from", &q.since, false);
        // The last day is included: the period ends at the start of the next.
        let until = day("to", &q.until, true);
        let ok = |t: Option<Timestamp>| t.map(|_| ());
        let text = |raw: &Option<String>, t: Option<Timestamp>| {
            ok(t)
                .and(raw.as_deref().map(str::trim).map(str::to_owned))
                .unwrap_or_default()
        };
        let mut p = Self {
            from: from.unwrap_or(Timestamp::EPOCH),
            until: until.unwrap_or_else(winback_report::forever),
            since_text: text(&q.since, from),
            until_text: text(&q.until, until),
            error,
        };
        if p.from >= p.until {
            p.error = Some("The period ends before it starts: all time is shown.".into());
            (p.from, p.until) = (Timestamp::EPOCH, winback_report::forever());
            (p.since_text, p.until_text) = (String::new(), String::new());
        }
        p
    }

    /// Whether it narrows anything.
    fn active(&self) -> bool {
        !self.since_text.is_empty() || !self.until_text.is_empty()
    }

    /// `since=…&until=…` for links that keep the period (empty for all time).
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if !self.since_text.is_empty() {
            parts.push(format!("since={}", self.since_text));
        }
        if !self.until_text.is_empty() {
            parts.push(format!("until={}", self.until_text));
        }
        parts.join("&")
    }

    /// The filter form's values (`label` says what the dates select), and what the links
    /// append.
    fn view(&self, label: &str, keep: &[(&str, &str)]) -> Value {
        let q = self.query();
        context! {
            label, since => self.since_text.clone(), until => self.until_text.clone(),
            active => self.active(), error => self.error.clone(),
            // `?since=…` for a link without a query, `&since=…` for one with.
            q => if q.is_empty() { String::new() } else { format!("?{q}") },
            amp => if q.is_empty() { String::new() } else { format!("&{q}") },
            keep => keep.iter().map(|(k, v)| context! { name => *k, value => *v }).collect::<Vec<_>>(),
        }
    }
}

async fn report(state: &AppState, period: &Period) -> Result<Report, Response> {
    let as_of = winback_report::as_of(&state.store, state.clock.now())
        .await
        .map_err(internal)?;
    winback_report::build(
        &state.settings.report,
        &state.store,
        period.from,
        period.until,
        as_of,
    )
    .await
    .map_err(internal)
}

fn page(state: &AppState, session: &AdminSession, name: &str, ctx: Value) -> Response {
    let ctx = context! {
        user => session.username.clone(),
        csrf => session.csrf.clone(),
        shop => state.settings.shop_name.clone(),
        now => when(state.clock.now()),
        ..ctx
    };
    secure(Html(state.dashboard.render(name, ctx)).into_response())
}

/// A readout's figures in words, and its rate difference as a bar on `axis`, the axis every
/// bar of the page shares.
fn readout_view(
    r: &winback_measure::Readout,
    cur: &str,
    axis: &winback_report::present::Axis,
) -> Value {
    // Every figure as `winback_report::present` words it (the CLI and report.html too).
    let v = winback_report::present::ReadoutView::new(r, cur);
    context! {
        treated_rate => v.treated_rate,
        holdout_rate => v.holdout_rate,
        lift => v.lift.as_ref().map(|f| f.estimate.clone()),
        lift_interval => v.lift.as_ref().map(|f| f.interval.clone()),
        significant => v.lift.as_ref().is_some_and(|f| f.positive || f.negative),
        positive => v.lift.as_ref().is_some_and(|f| f.positive),
        revenue => v.revenue_per_contact.map(|f| f.text),
        margin => v.margin.map(|f| f.text),
        margin_anytime => v.margin_at_every_look.map(|f| f.interval),
        roi => v.roi.map(|f| f.text),
        per_1000 => v.margin_per_1000_messages.map(|f| f.text),
        adjustment => v.adjustment,
        warnings => v.warnings,
        bar => r.rate_difference.map(|i| {
            let b = axis.bar(&i);
            context! { low => b.low, est => b.est, high => b.high, tone => b.tone, zero => axis.zero.clone() }
        }),
    }
}

async fn overview(
    State(state): State<AppState>,
    Admin(session): Admin,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let period = Period::new(&q);
    let r = match report(&state, &period).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let total: i64 = r.base.stages.iter().map(|(_, k)| k).sum();
    let stages: Vec<Value> = r
        .base
        .stages
        .iter()
        .map(|(s, k)| context! { stage => s, label => winback_report::present::label(s), people => n(*k as u64), raw => k, share => winback_report::present::percent(*k as f64 / total.max(1) as f64) })
        .collect();
    // Stage shares per scoring run, for the uPlot chart: x = seconds, one series per stage.
    let mut runs: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for (t, s, k) in &r.base.history {
        runs.entry(t.as_micros() / 1_000_000)
            .or_default()
            .insert(s.clone(), *k);
    }
    let names: Vec<String> = {
        let mut v: Vec<String> = r.base.history.iter().map(|(_, s, _)| s.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let xs: Vec<i64> = runs.keys().copied().collect();
    let series: Vec<Vec<f64>> = names
        .iter()
        .map(|name| {
            runs.values()
                .map(|m| {
                    let t: i64 = m.values().sum();
                    100.0 * *m.get(name).unwrap_or(&0) as f64 / t.max(1) as f64
                })
                .collect()
        })
        .collect();
    // Series named in words; the chart's text alternative is the stages table beside it.
    let labels: Vec<String> = names
        .iter()
        .map(|s| winback_report::present::label(s))
        .collect();
    // The chart's text alternative: every run's shares, newest first.
    let health_rows: Vec<Value> = runs
        .iter()
        .rev()
        .map(|(t, m)| {
            let total: i64 = m.values().sum();
            context! {
                at => Timestamp::from_micros(t * 1_000_000).map(|t| t.date_local().to_string()).unwrap_or_default(),
                shares => names.iter().map(|name| winback_report::present::percent_of(*m.get(name).unwrap_or(&0) as u64, total.max(0) as u64)).collect::<Vec<_>>(),
            }
        })
        .collect();
    let health = serde_json::json!({ "x": xs, "names": labels, "series": series });
    let h = &r.hygiene;
    let share = |x: u64| winback_report::present::percent(x as f64 / h.addresses.max(1) as f64);
    let hygiene = context! {
        addresses => n(h.addresses),
        idle_6m => share(h.idle_6m), idle_12m => share(h.idle_12m), idle_24m => share(h.idle_24m),
        idle_12m_people => n(h.idle_12m),
        never_engaged => n(h.never_engaged),
        hard_bounces => n(h.hard_bounces),
        complaints => n(h.complaints),
        complaint_rate => format!("{:.3}%", 100.0 * h.complaint_rate),
        duplicates_merged => n(h.duplicates_merged),
        sunset => n(h.sunset),
        erased => n(h.erased_profiles),
        suppressions => h.suppressions.iter().map(|(k, v)| format!("{k} {}", n(*v))).collect::<Vec<_>>(),
    };
    // The programme table, as `winback report` and report.html show it.
    let p = winback_report::present::programme(&r);
    let mut migration: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut tos: Vec<String> = Vec::new();
    for (a, b, k) in &r.base.migration {
        migration
            .entry(a.clone())
            .or_default()
            .insert(b.clone(), *k);
        if !tos.contains(b) {
            tos.push(b.clone());
        }
    }
    tos.sort();
    let matrix: Vec<Value> = migration
        .iter()
        .map(|(from, row)| {
            context! { from => winback_report::present::label(from), cells => tos.iter().map(|t| row.get(t).map(|k| n(*k as u64)).unwrap_or_default()).collect::<Vec<_>>() }
        })
        .collect();
    let providers: Vec<Value> = r
        .providers
        .iter()
        .map(|p| context! { provider => p.provider.clone(), share => winback_report::present::percent(p.share), paused => p.paused.clone(), attempts => n(p.window_attempts as u64) })
        .collect();
    let pauses: Vec<Value> = r
        .transport_pauses
        .iter()
        .map(|(channel, why, until)| context! { channel => channel, why => why, until => until.to_string() })
        .collect();
    // The worker's schedule: what runs by itself, and when it last did.
    let jobs: Vec<Value> = match state.store.jobs().await {
        Ok(j) => j,
        Err(e) => return crate::error::ApiError::internal(e).into_response(),
    }
    .iter()
    .map(|j| {
        let what = j.last_outcome.clone().unwrap_or_default();
        context! {
            name => j.name.clone(),
            finished => j.last_finished.map(|t| t.to_string()).unwrap_or_else(|| "never".into()),
            running => j.running_on.clone(),
            runs => n(j.runs as u64),
            failed => what.starts_with("failed"),
            what => what.chars().take(200).collect::<String>(),
        }
    })
    .collect();
    page(
        &state,
        &session,
        "overview.html",
        context! {
            stages, total => n(total as u64), health => json_block(&health), hygiene,
            spam_trap_risk => h.idle_12m > 0,
            health_names => labels, health_rows,
            period => period.view("Contacts who entered from", &[]),
            deliverability => r.deliverability.iter().map(|d| context! {
                provider => d.provider.clone(), sent => n(d.sent.max(0) as u64),
                hard_rate => format!("{:.2}%", 100.0 * d.hard_bounce_rate), complaint_rate => format!("{:.3}%", 100.0 * d.complaint_rate),
                max_hard => format!("{:.2}%", 100.0 * d.max_hard_bounce_rate), max_complaint => format!("{:.3}%", 100.0 * d.max_complaint_rate),
                hard_over => d.sent > 0 && d.hard_bounce_rate >= d.max_hard_bounce_rate,
                complaint_over => d.sent > 0 && d.complaint_rate >= d.max_complaint_rate,
            }).collect::<Vec<_>>(),
            p, matrix, tos => tos.iter().map(|t| winback_report::present::label(t)).collect::<Vec<_>>(), providers, pauses, jobs, as_of => when(r.as_of),
            reasons => r.base.reasons.iter().map(|(k, v)| context! { reason => winback_report::present::label(k), count => v }).collect::<Vec<_>>(),
        },
    )
}

/// A campaign month by month of entry: the table (the charts' text alternative) and the data
/// of its two charts, counts and the incremental margin to date.
fn over_time(months: &[winback_report::MonthPoint], cur: &str) -> Value {
    let unit = winback_domain::Currency::parse(cur)
        .map(|c| 10f64.powi(i32::from(c.minor_digits())))
        .unwrap_or(100.0);
    let xs: Vec<i64> = months
        .iter()
        .map(|m| m.start.as_micros() / 1_000_000)
        .collect();
    let counts = serde_json::json!({
        "x": xs, "unit": "", "digits": 0, "monthly": true,
        "names": ["messages sent", "buyers, messaged", "buyers, held out"],
        "series": [
            months.iter().map(|m| m.sent).collect::<Vec<_>>(),
            months.iter().map(|m| m.buyers).collect::<Vec<_>>(),
            months.iter().map(|m| m.holdout_buyers).collect::<Vec<_>>(),
        ],
    });
    let major = |f: fn(&winback_measure::Interval) -> f64| {
        months
            .iter()
            .map(|m| m.margin_to_date.as_ref().map(|i| f(i) / unit))
            .collect::<Vec<_>>()
    };
    let margin = serde_json::json!({
        "x": xs, "unit": format!(" {cur}"), "digits": 0, "monthly": true,
        "names": ["margin to date", "95% interval, low", "95% interval, high"],
        "dashed": [false, true, true],
        "series": [major(|i| i.estimate), major(|i| i.low), major(|i| i.high)],
    });
    context! {
        rows => months.iter().rev().map(|m| context! {
            month => m.month.clone(), entered => n(m.entered.max(0) as u64), sent => n(m.sent.max(0) as u64),
            buyers => n(m.buyers.max(0) as u64), holdout_buyers => n(m.holdout_buyers.max(0) as u64),
            margin => m.margin_to_date.as_ref().map(|i| winback_report::present::Figure::money(i, cur).short),
        }).collect::<Vec<_>>(),
        counts => json_block(&counts),
        margin => json_block(&margin),
        charted => months.len() > 1,
        margin_charted => months.len() > 1 && months.iter().any(|m| m.margin_to_date.is_some()),
    }
}

/// Held-out people a segment needs before its difference against the holdout is shown.
const SEGMENT_MIN_HOLDOUT: i64 = 30;

fn campaign_view(c: &CampaignReport, cur: &str, period: &Period) -> Value {
    // One axis for every lift bar on the page, so the arms' and segments' bars compare.
    let shown = |x: &&winback_report::SegmentReport| x.holdout_contacts >= SEGMENT_MIN_HOLDOUT;
    let axis = winback_report::present::Axis::new(
        c.arms
            .iter()
            .filter_map(|a| a.readout.as_ref())
            .chain(c.overall.iter())
            .chain(
                c.results_by_locale
                    .iter()
                    .chain(&c.results_by_provider)
                    .filter(shown)
                    .filter_map(|x| x.readout.as_ref()),
            )
            .filter_map(|r| r.rate_difference.as_ref()),
        300.0,
        |v| format!("{:+.0} points", 100.0 * v),
    );
    let entered: i64 = c.arms.iter().map(|a| a.contacts).sum();
    let bought = c.treated_converted();
    let s = &c.summary;
    let people = |group: &str| {
        let q = period.query();
        format!(
            "/admin/campaigns/{}/people?group={group}{}{q}",
            c.name,
            if q.is_empty() { "" } else { "&" }
        )
    };
    // The journey as a vertical graph: one box per step, arrows to the next steps.
    let index: HashMap<&str, usize> = c
        .journey
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let box_h = 84.0;
    let gap = 36.0;
    let top = 70.0;
    let y = |i: usize| top + i as f64 * (box_h + gap);
    let end_y = y(c.journey.len());
    let nodes: Vec<Value> = c
        .journey
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let counts = if s.sent + s.dropped > 0 {
                format!(
                    "{} sent · {} opened · {} clicked ({})",
                    n(s.sent as u64),
                    n(s.opened as u64),
                    n(s.clicked as u64),
                    winback_report::present::percent(s.clicked as f64 / s.sent.max(1) as f64)
                )
            } else {
                String::new()
            };
            let mut flow = format!("{} reached", n(s.reached.max(0) as u64));
            if s.waiting > 0 {
                flow += &format!(" · {} waiting here", n(s.waiting as u64));
            }
            if s.left > 0 {
                flow += &format!(" · {} left the journey here", n(s.left as u64));
            }
            context! {
                id => s.id.clone(), kind => s.kind.clone(), label => s.label.clone(), counts, flow,
                y => format!("{:.0}", y(i)), ty => format!("{:.0}", y(i) + 22.0), fy => format!("{:.0}", y(i) + 44.0),
                cy => format!("{:.0}", y(i) + 66.0), sent => s.sent, reached => s.reached,
            }
        })
        .collect();
    let mut edges: Vec<Value> = Vec::new();
    for (i, s) in c.journey.iter().enumerate() {
        for (k, ((to, label), taken)) in s.next.iter().zip(&s.taken).enumerate() {
            // The edge's words and how many people took it.
            let people = n((*taken).max(0) as u64);
            let label = if label.is_empty() {
                people
            } else {
                format!("{label} · {people}")
            };
            let target = index.get(to.as_str()).copied();
            let (y1, y2) = (y(i) + box_h, target.map(y).unwrap_or(end_y));
            // Forward to the next box: straight; anything else: a curve out to the side.
            let straight = target == Some(i + 1) || (target.is_none() && i + 1 == c.journey.len());
            let side = 560.0 + 30.0 * k as f64;
            let path = if straight {
                format!("M300,{y1:.0} L300,{y2:.0}")
            } else {
                format!(
                    "M520,{:.0} C{side:.0},{:.0} {side:.0},{:.0} 520,{:.0}",
                    y1 - box_h / 2.0,
                    y1 - box_h / 2.0,
                    y2 + 20.0,
                    y2 + 20.0
                )
            };
            // A label sits on its edge: beside the straight line's middle, or at the curve's
            // outermost point (a cubic with both controls at `side` reaches 3/4 of the way).
            let apex = 520.0 + 0.75 * (side - 520.0);
            edges.push(context! { path, label, lx => if straight { "306".to_owned() } else { format!("{:.0}", apex + 4.0) }, ly => format!("{:.0}", (y1 + y2) / 2.0 + 4.0) });
        }
    }
    let arms: Vec<Value> = c
        .arms
        .iter()
        .map(|a| {
            context! {
                variant => if a.holdout { "holdout".to_owned() } else { a.variant.clone() },
                holdout => a.holdout,
                contacts => a.contacts, converted => a.converted,
                rate => winback_report::present::percent(a.converted as f64 / a.contacts.max(1) as f64),
                revenue => money(a.revenue_minor, cur), revenue_minor => a.revenue_minor,
                aov => a.average_order_minor.map(|v| money(v, cur)),
                offers => a.offers, redeemed => a.redeemed,
                discount => money(a.discount_minor, cur),
                message_cost => money(a.message_cost_minor, cur),
                readout => a.readout.as_ref().map(|r| readout_view(r, cur, &axis)),
            }
        })
        .collect();
    let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
    for f in &c.messages {
        for (k, v) in &f.survey {
            *reasons.entry(k.clone()).or_default() += v;
        }
    }
    let stay_rows = winback_report::present::stay_rows(&c.stay, cur);
    context! {
        name => c.name.clone(), description => c.description.clone(), status => c.status.clone(),
        window_days => format!("{:.0}", c.window_days),
        entered => n(entered.max(0) as u64), bought => n(bought.max(0) as u64),
        entered_raw => entered, messaged_raw => s.messaged, bought_raw => bought, held_out_raw => s.held_out,
        messaged => n(s.messaged.max(0) as u64), held_out => winback_report::present::count_or_dash(s.held_out),
        sent => n(s.sent.max(0) as u64), delivered => n(s.delivered.max(0) as u64),
        dropped => n(s.dropped.max(0) as u64), exported => s.exported, channels => s.channels.join(", "),
        links => context! { entered => people("entered"), messaged => people("messaged"), bought => people("bought"), held_out => people("held_out"), dropped => people("dropped") },
        verdict => s.verdict.key(), verdict_label => s.verdict.label(), why => s.why.clone(),
        exports => c.exports.iter().map(|e| context! { step => e.step.clone(), target => e.target.clone(), kind => e.kind(), people => n(e.people.max(0) as u64) }).collect::<Vec<_>>(),
        wallet => c.wallet.map(|w| context! { issued => n(w.issued.max(0) as u64), added => n(w.added.max(0) as u64), updated => n(w.updated.max(0) as u64), removed => n(w.removed.max(0) as u64), redeemed => n(w.redeemed.max(0) as u64) }),
        conversion => winback_report::present::percent(bought as f64 / s.messaged.max(1) as f64),
        journey_version => c.journey_version, journey_other_versions => c.journey_other_versions,
        journey_other_versions_n => n(c.journey_other_versions.max(0) as u64),
        journey_entered => n(c.journey.first().map_or(0, |s| s.reached).max(0) as u64),
        nodes, edges, end_y => format!("{end_y:.0}"), end_ty => format!("{:.0}", end_y + 26.0),
        height => format!("{:.0}", end_y + 60.0),
        arms,
        overall => c.overall.as_ref().map(|o| readout_view(o, cur, &axis)),
        axis => context! { left => axis.left.clone(), right => axis.right.clone() },
        multi => c.arms.iter().filter(|a| !a.holdout).count() > 1,
        winner => c.winner.as_ref().map(|w| match w {
            winback_measure::Winner::Chosen { reason, .. } => format!("Winner: {reason}"),
            winback_measure::Winner::NotYet { reason } => format!("No winner yet: {reason}"),
        }),
        dropped_by_reason => c.dropped_by_reason.iter().map(|(k, v)| format!("{} {}", n(*v as u64), winback_report::present::label(k))).collect::<Vec<_>>().join(", "),
        messages => c.messages.iter().map(|f| context! {
            step => f.step.clone(), variant => f.variant.clone(), channel => f.channel.clone(),
            sent => f.sent, delivered => f.delivered, hard => f.hard_bounced, soft => f.soft_bounced,
            in_doubt => f.in_doubt, dropped => f.dropped, opened => f.opened_human, machine => f.opened_machine,
            clicked => f.clicked, unsubscribed => f.unsubscribed, complained => f.complained,
        }).collect::<Vec<_>>(),
        segments => [("locale", "locale", &c.results_by_locale), ("mailbox provider", "provider", &c.results_by_provider)].iter().filter(|(_, _, rows)| rows.len() > 1).map(|(title, key, rows)| context! {
            title => *title,
            rows => rows.iter().map(|x| context! {
                people => format!("/admin/campaigns/{}/people?{key}={}{}", c.name, url_part(&x.segment), if period.query().is_empty() { String::new() } else { format!("&{}", period.query()) }),
                segment => x.segment.clone(), label => winback_report::present::label(&x.segment), contacts => x.contacts, converted => x.converted,
                rate => winback_report::present::percent(x.converted as f64 / x.contacts.max(1) as f64),
                holdout => winback_report::present::count_or_dash(x.holdout_contacts),
                holdout_rate => if x.holdout_contacts > 0 { winback_report::present::percent(x.holdout_converted as f64 / x.holdout_contacts as f64) } else { "–".to_owned() },
                revenue => money(x.revenue_minor, cur),
                // Under 30 held out, a segment's difference is noise: flagged, not shown.
                few => x.holdout_contacts < SEGMENT_MIN_HOLDOUT,
                readout => x.readout.as_ref().filter(|_| x.holdout_contacts >= SEGMENT_MIN_HOLDOUT).map(|r| readout_view(r, cur, &axis)),
            }).collect::<Vec<_>>(),
        }).collect::<Vec<_>>(),
        locales => c.by_locale.iter().map(|f| context! {
            locale => f.locale.clone(), channel => f.channel.clone(), sent => f.sent, opened => f.opened_human, clicked => f.clicked, unsubscribed => f.unsubscribed,
        }).collect::<Vec<_>>(),
        deliverability => c.deliverability.iter().map(|d| context! {
            provider => d.provider.clone(), sent => d.sent, delivered => d.delivered, hard => d.hard_bounced, soft => d.soft_bounced,
            complained => d.complained, hard_rate => format!("{:.2}%", 100.0 * d.hard_bounce_rate), complaint_rate => format!("{:.3}%", 100.0 * d.complaint_rate),
            max_hard => format!("{:.2}%", 100.0 * d.max_hard_bounce_rate), max_complaint => format!("{:.3}%", 100.0 * d.max_complaint_rate),
            over => d.over_threshold,
        }).collect::<Vec<_>>(),
        reasons => reasons.iter().map(|(k, v)| context! { reason => k, count => v }).collect::<Vec<_>>(),
        stay => stay_rows,
        reward_only => (c.stay.reactivated.reward_only.eligible > 0).then(|| format!("{} of {}", n(c.stay.reactivated.reward_only.yes), n(c.stay.reactivated.reward_only.eligible))),
    }
}

/// An event's payload in words for the timeline: amounts in `*_minor` as money in the
/// payload's currency, empty values and internal ids left out, keys in words.
fn payload_words(payload: &serde_json::Value) -> String {
    let serde_json::Value::Object(m) = payload else {
        return String::new();
    };
    let currency = m.get("currency").and_then(|v| v.as_str()).unwrap_or("EUR");
    m.iter()
        // The message id is internal, the type is the line's title already, and the currency
        // goes with the amounts.
        .filter(|(k, _)| !matches!(k.as_str(), "message_id" | "type" | "currency"))
        .filter(|(_, v)| match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            serde_json::Value::String(s) => !s.is_empty(),
            _ => true,
        })
        .map(|(k, v)| match (k.strip_suffix("_minor"), v.as_i64()) {
            (Some(what), Some(minor)) => {
                format!(
                    "{}: {}",
                    winback_report::present::label(what),
                    money(minor, currency)
                )
            }
            _ => match v {
                serde_json::Value::String(s) => {
                    format!("{}: {s}", winback_report::present::label(k))
                }
                serde_json::Value::Array(a) => format!(
                    "{}: {}",
                    winback_report::present::label(k),
                    a.iter()
                        .map(|x| x
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| x.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => format!("{}: {other}", winback_report::present::label(k)),
            },
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// How to read the figures, in a marketer's words.
async fn help(State(state): State<AppState>, Admin(session): Admin) -> Response {
    page(&state, &session, "help.html", context! {})
}

/// The 404 page for an unknown campaign or customer.
fn missing(state: &AppState, what: &str) -> Response {
    secure(
        (
            StatusCode::NOT_FOUND,
            Html(state.dashboard.render(
                "missing.html",
                context! { what => what, shop => state.settings.shop_name.clone() },
            )),
        )
            .into_response(),
    )
}

#[derive(serde::Deserialize)]
struct CampaignQuery {
    changed: Option<String>,
}

async fn campaign(
    State(state): State<AppState>,
    Admin(session): Admin,
    Path(name): Path<String>,
    Query(q): Query<CampaignQuery>,
    Query(pq): Query<PeriodQuery>,
) -> Response {
    let period = Period::new(&pq);
    let as_of = match winback_report::as_of(&state.store, state.clock.now()).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    // Only this campaign's figures: a page for one campaign does not gather the others'.
    let c = match winback_report::build_campaign(
        &state.settings.report,
        &state.store,
        &name,
        period.from,
        period.until,
        as_of,
    )
    .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return missing(&state, "campaign"),
        Err(e) => return internal(e),
    };
    let months = match winback_report::timeline(
        &state.settings.report,
        &state.store,
        &name,
        period.from,
        period.until,
    )
    .await
    {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return internal(e),
    };
    let offers = match state.store.offer_codes_summary(&name).await {
        Ok(o) => o,
        Err(e) => return internal(e),
    };
    page(
        &state,
        &session,
        "campaign.html",
        context! {
            c => campaign_view(&c, &state.settings.report.currency, &period),
            period => period.view("Contacts who entered from", &[]),
            over_time => over_time(&months, &state.settings.report.currency),
            offers,
            all_margin => state.settings.report.margin >= 1.0,
            as_of => when(as_of),
            // Only a status this page can set is echoed back.
            changed => q.changed.filter(|c| matches!(c.as_str(), "active" | "paused" | "closing")),
        },
    )
}

/// The stored campaign named `name` and its parsed file (`None`: no such campaign).
async fn stored_campaign(
    state: &AppState,
    name: &str,
) -> Result<
    Option<(
        winback_engine::ports::CampaignRecord,
        winback_engine::Campaign,
    )>,
    Response,
> {
    let records = state.store.campaigns().await.map_err(internal)?;
    let Some(rec) = records.into_iter().find(|r| r.name == name) else {
        return Ok(None);
    };
    let c = winback_engine::Campaign::parse(&rec.file, &rec.source).map_err(internal)?;
    Ok(Some((rec, c)))
}

#[derive(serde::Deserialize)]
struct PeopleQuery {
    group: Option<String>,
    locale: Option<String>,
    provider: Option<String>,
    page: Option<i64>,
    format: Option<String>,
}

/// People per page of a list.
const PEOPLE_PAGE: i64 = 100;

/// The people behind one of a campaign's counts, a page at a time, or all of them as CSV.
async fn campaign_people(
    State(state): State<AppState>,
    Admin(session): Admin,
    Path(name): Path<String>,
    Query(q): Query<PeopleQuery>,
    Query(pq): Query<PeriodQuery>,
) -> Response {
    let period = Period::new(&pq);
    let group_name = q.group.as_deref().unwrap_or("entered");
    let Some(group) = winback_store::PeopleGroup::parse(group_name) else {
        return missing(&state, "list");
    };
    let (rec, c) = match stored_campaign(&state, &name).await {
        Ok(Some(x)) => x,
        Ok(None) => return missing(&state, "campaign"),
        Err(e) => return e,
    };
    let csv = q.format.as_deref() == Some("csv");
    let number = q.page.unwrap_or(1).max(1);
    let window = c.conversion_window.seconds();
    let range = (period.from, period.until);
    // One segment of the report's results, or everyone.
    let (segment, segment_title, segment_q) = match (&q.locale, &q.provider) {
        (Some(l), _) => (
            winback_store::PeopleSegment::Locale(l.clone()),
            format!(", locale {}", winback_report::present::label(l)),
            format!("&locale={}", url_part(l)),
        ),
        (None, Some(p)) => (
            winback_store::PeopleSegment::Provider(p.clone()),
            format!(", mailbox provider {p}"),
            format!("&provider={}", url_part(p)),
        ),
        (None, None) => (
            winback_store::PeopleSegment::All,
            String::new(),
            String::new(),
        ),
    };
    let cur = &state.settings.report.currency;
    tracing::info!(
        target: "winback::audit",
        user = %session.username,
        campaign = %name,
        group = group.as_str(),
        csv,
        "dashboard: people list read"
    );
    if csv {
        let filename = format!(
            "attachment; filename=\"{}-{}.csv\"",
            name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
            group.as_str()
        );
        let body = people_csv(
            state.store.clone(),
            (rec.id, window, range),
            (group, segment),
            cur.clone(),
        );
        return secure(
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, filename),
                ],
                body,
            )
                .into_response(),
        );
    }
    let page_asked = winback_store::PeoplePage::Offset {
        limit: PEOPLE_PAGE,
        offset: (number - 1) * PEOPLE_PAGE,
    };
    let (people, total) = match state
        .store
        .campaign_people(rec.id, window, range, (group, &segment), page_asked)
        .await
    {
        Ok((people, total)) => (people, total.unwrap_or(0)),
        Err(e) => return internal(e),
    };
    let pages = (total + PEOPLE_PAGE - 1) / PEOPLE_PAGE;
    page(
        &state,
        &session,
        "people.html",
        context! {
            campaign => name.clone(),
            group => group.as_str(),
            period => period.view("Contacts who entered from", &[("group", group.as_str())]),
            title => format!("{}{segment_title}", group_title(group)),
            seg => segment_q,
            total => n(total.max(0) as u64),
            total_raw => total,
            page => number, pages => pages.max(1),
            prev => (number > 1).then(|| number - 1),
            next => (number < pages).then(|| number + 1),
            window_days => format!("{:.0}", window as f64 / 86_400.0),
            people => people.iter().map(|p| context! {
                key => format!("profile:{}", p.profile_id),
                customer_id => p.customer_id.clone(),
                name => if p.name.is_empty() { None } else { Some(p.name.clone()) },
                email => p.email.clone(),
                arm => if p.holdout { "holdout".to_owned() } else { p.variant.clone() },
                entered => when(p.entered_at),
                state => winback_report::present::label(&p.state),
                messaged => p.messaged_at.map(when),
                orders => p.orders,
                revenue => money(p.revenue_minor, cur),
            }).collect::<Vec<_>>(),
        },
    )
}

/// `s` encoded for a URL's query.
fn url_part(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A list's heading.
fn group_title(group: winback_store::PeopleGroup) -> &'static str {
    use winback_store::PeopleGroup as G;
    match group {
        G::Entered => "Everyone who entered",
        G::HeldOut => "Held out (never messaged)",
        G::Treated => "In the messaged group (whether a message reached them or not)",
        G::Messaged => "Messaged (got at least one message)",
        G::Bought => "Bought within the attribution window (messaged arms)",
        G::Dropped => "With a message that was not sent",
    }
}

/// People read per query while a list streams out as CSV.
const CSV_PAGE: i64 = 2_000;

/// A people list as CSV, streamed a keyset page at a time so a list of a million people never
/// sits in memory whole; every cell is defused so a spreadsheet runs no formula from it. A
/// store error mid-way ends the body early (the client sees a broken download, not a short
/// file passed off as whole) and is logged.
fn people_csv(
    store: winback_store::SqlStore,
    (campaign, window, range): (winback_domain::CampaignId, i64, (Timestamp, Timestamp)),
    (group, segment): (winback_store::PeopleGroup, winback_store::PeopleSegment),
    cur: String,
) -> axum::body::Body {
    enum Next {
        Header,
        After(Option<(Timestamp, i64)>),
        Done,
    }
    let stream = futures_util::stream::unfold(Next::Header, move |next| {
        let (store, segment, cur) = (store.clone(), segment.clone(), cur.clone());
        async move {
            let after = match next {
                Next::Done => return None,
                Next::Header => {
                    let header = csv_rows(&[], &cur, true).map_err(std::io::Error::other);
                    return Some((header, Next::After(None)));
                }
                Next::After(after) => after,
            };
            let page = winback_store::PeoplePage::After {
                limit: CSV_PAGE,
                after,
            };
            match store
                .campaign_people(campaign, window, range, (group, &segment), page)
                .await
            {
                Ok((people, _)) => {
                    let next = match people.last() {
                        Some(p) if people.len() as i64 == CSV_PAGE => {
                            Next::After(Some((p.entered_at, p.enrolment_id)))
                        }
                        _ => Next::Done,
                    };
                    let rows = csv_rows(&people, &cur, false).map_err(std::io::Error::other);
                    Some((rows, next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "people CSV: reading the list failed; the download ends early");
                    Some((Err(std::io::Error::other(e)), Next::Done))
                }
            }
        }
    });
    axum::body::Body::from_stream(stream)
}

/// Rows of a people list as CSV (with the header row first when `header`).
fn csv_rows(
    people: &[winback_store::CampaignPerson],
    cur: &str,
    header: bool,
) -> Result<Vec<u8>, csv::Error> {
    use winback_channels::exports::defuse;
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record([
            "customer_id",
            "name",
            "email",
            "arm",
            "entered_at",
            "journey_state",
            "first_message_at",
            "orders_in_window",
            "revenue_in_window",
            "currency",
        ])?;
    }
    for p in people {
        let revenue = money(p.revenue_minor, cur);
        let amount = revenue
            .split(' ')
            .next()
            .unwrap_or_default()
            .replace(',', "");
        w.write_record([
            defuse(&p.customer_id),
            defuse(&p.name),
            defuse(p.email.as_deref().unwrap_or_default()),
            defuse(if p.holdout { "holdout" } else { &p.variant }),
            p.entered_at.to_string(),
            defuse(&p.state),
            p.messaged_at.map(|t| t.to_string()).unwrap_or_default(),
            p.orders.to_string(),
            amount,
            cur.to_owned(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// Starts, pauses or closes a campaign from its page: an administrator's form, checked for its
/// origin and CSRF token, and written to the audit log.
async fn campaign_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Admin(session): Admin,
    Path(name): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = session_form_refused(&state, &headers, &session, &form) {
        return refused;
    }
    use winback_engine::CampaignStatus as S;
    let to = match form.get("to").map(String::as_str) {
        Some("start") => S::Active,
        Some("pause") => S::Paused,
        Some("close") => S::Closing,
        _ => return missing(&state, "action"),
    };
    let before = match stored_campaign(&state, &name).await {
        Ok(Some((rec, _))) => rec.status,
        Ok(None) => return missing(&state, "campaign"),
        Err(e) => return e,
    };
    match state
        .store
        .set_campaign_status(&name, to, state.clock.now())
        .await
    {
        Ok(true) => {
            tracing::info!(
                target: "winback::audit",
                user = %session.username,
                campaign = %name,
                from = before.as_str(),
                to = to.as_str(),
                "dashboard: campaign status changed"
            );
            secure(
                Redirect::to(&format!("/admin/campaigns/{name}?changed={}", to.as_str()))
                    .into_response(),
            )
        }
        Ok(false) => missing(&state, "campaign"),
        Err(e) => internal(e),
    }
}

#[derive(serde::Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn customer_search(
    State(state): State<AppState>,
    Admin(session): Admin,
    Query(query): Query<SearchQuery>,
) -> Response {
    let q = query.q.unwrap_or_default();
    let q = q.trim();
    let mut hits = Vec::new();
    if !q.is_empty() {
        // An exact key (a customer id, an email, `profile:N`) opens the customer at once.
        match state.store.customer_detail(q).await {
            Ok(Some(d)) => {
                return secure(
                    Redirect::to(&format!("/admin/customers/profile:{}", d.profile_id))
                        .into_response(),
                );
            }
            Ok(None) => {}
            Err(e) => return internal(e),
        }
        hits = match state.store.search_customers(q, SEARCH_LIMIT + 1).await {
            Ok(h) => h,
            Err(e) => return internal(e),
        };
        if let [one] = &hits[..] {
            return secure(
                Redirect::to(&format!("/admin/customers/profile:{}", one.profile_id))
                    .into_response(),
            );
        }
    }
    let more = hits.len() as i64 > SEARCH_LIMIT;
    hits.truncate(SEARCH_LIMIT as usize);
    page(
        &state,
        &session,
        "search.html",
        context! {
            q => q,
            not_found => !q.is_empty() && hits.is_empty(),
            more,
            hits => hits.iter().map(|h| context! {
                key => format!("profile:{}", h.profile_id),
                customer_id => h.external_id.clone(),
                name => h.name.clone(), email => h.email.clone(), phone => h.phone.clone(),
            }).collect::<Vec<_>>(),
        },
    )
}

/// Matches a customer search lists.
const SEARCH_LIMIT: i64 = 50;

async fn customer(
    State(state): State<AppState>,
    Admin(session): Admin,
    Path(key): Path<String>,
    Query(pq): Query<PeriodQuery>,
) -> Response {
    let period = Period::new(&pq);
    let detail = match state.store.customer_detail(&key).await {
        Ok(Some(d)) => d,
        Ok(None) => return missing(&state, "customer"),
        Err(e) => return internal(e),
    };
    let pid = detail.profile_id;
    let (score, stages, messages, journeys) = match async {
        Ok::<_, winback_store::StoreError>((
            state.store.latest_score(pid).await?,
            state.store.stage_history(pid).await?,
            state.store.profile_messages(pid, 200).await?,
            state.store.profile_journeys(pid).await?,
        ))
    }
    .await
    {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    // One timeline, newest first: (time, kind, what, detail).
    let mut items: Vec<(Timestamp, &str, String, String)> = Vec::new();
    for o in &detail.orders {
        items.push((
            o.ordered_at,
            "order",
            format!(
                "Order {} — {}",
                o.external_id,
                money(o.total_minor, &o.currency)
            ),
            [
                o.category.clone().unwrap_or_default(),
                o.status.clone(),
                if o.discount_codes.is_empty() {
                    String::new()
                } else {
                    format!("codes: {}", o.discount_codes.join(", "))
                },
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · "),
        ));
    }
    for m in &messages {
        items.push((
            m.sent_at.unwrap_or(m.queued_at),
            "message",
            format!("{} {} — {} / {}", m.channel, m.state, m.campaign, m.step),
            [
                // The subject as sent; before the send (or from a transport that does not
                // render, such as the JSON file outbox) the campaign's template, said so.
                match (&m.sent_subject, &m.subject) {
                    (Some(sent), _) => format!("subject: {sent}"),
                    (None, Some(s)) => format!(
                        "subject template: {}",
                        winback_channels::render::display_line(s)
                    ),
                    (None, None) => String::new(),
                },
                format!("variant {}", m.variant),
                m.outcome.clone().unwrap_or_default(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · "),
        ));
    }
    for e in &detail.events {
        items.push((
            e.at,
            "engagement",
            winback_report::present::label(&e.kind),
            payload_words(&e.payload),
        ));
    }
    for s in &stages {
        items.push((
            s.at,
            "stage",
            match &s.from {
                Some(f) => format!(
                    "Stage {} → {}",
                    winback_report::present::label(f),
                    winback_report::present::label(&s.to)
                ),
                None => format!("Stage {}", winback_report::present::label(&s.to)),
            },
            String::new(),
        ));
    }
    for j in &journeys {
        items.push((
            j.entered_at,
            "journey",
            format!(
                "Entered {}{}",
                j.campaign,
                if j.holdout {
                    " (holdout: no messages)"
                } else {
                    ""
                }
            ),
            format!("variant {} · {}", j.variant, j.state),
        ));
        if let Some(t) = j.ended_at {
            items.push((
                t,
                "journey",
                format!("Left {}", j.campaign),
                j.end_reason.clone().unwrap_or_default(),
            ));
        }
    }
    items.retain(|i| period.from <= i.0 && i.0 < period.until);
    items.sort_by_key(|i| std::cmp::Reverse(i.0));
    let name = detail
        .records
        .iter()
        .find_map(|r| {
            let parts: Vec<&str> = [r.first_name.as_deref(), r.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| format!("Customer {pid}"));
    page(
        &state,
        &session,
        "customer.html",
        context! {
            name, profile_id => pid,
            period => period.view("What happened from", &[]),
            records => detail.records.iter().map(|r| context! {
                external_id => r.external_id.clone(), email => r.email.clone(), phone => r.phone.clone(),
                locale => r.locale.clone(), time_zone => r.time_zone.clone(),
            }).collect::<Vec<_>>(),
            consent => detail.consent.iter().map(|c| context! {
                channel => c.channel.clone(), status => c.status.clone(), source => c.source.clone(), at => when(c.at),
            }).collect::<Vec<_>>(),
            order_count => detail.order_count,
            // customer_detail returns the latest 50 orders and events; say so when there are more.
            truncated => detail.order_count > detail.orders.len() as u64 || detail.event_count > detail.events.len() as u64 || messages.len() >= 200,
            score => score.map(|s| context! {
                stage => winback_report::present::label(&s.stage), reason => s.reason, segment => s.segment.as_deref().map(winback_report::present::label), rfm => s.rfm,
                p_alive => s.p_alive.map(winback_report::present::percent), expected_90d => s.expected_90d.map(|v| format!("{v:.2}")),
                clv => s.clv_minor.map(|v| money(v.round() as i64, s.currency.as_deref().unwrap_or("EUR"))),
                reorder => s.reorder, purchases => s.purchases,
                spend => money(s.spend_minor, s.currency.as_deref().unwrap_or("EUR")),
            }),
            timeline => items.into_iter().map(|(t, kind, what, detail)| context! { at => when(t), kind, what, detail }).collect::<Vec<_>>(),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Templates

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{% block title %}winback{% endblock %} · {{ shop }}</title>
<link rel="stylesheet" href="/admin/assets/uPlot.min.css"><link rel="stylesheet" href="/admin/assets/dashboard.css">
</head><body>
<header><strong>winback</strong> · {{ shop }}
{% if user %}<nav><a href="/admin">Overview</a> <a href="/admin/customers">Customers</a>
<form class="inline" method="post" action="/admin/logout"><input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit" id="logout">Log out {{ user }}</button></form></nav>{% endif %}
</header>
<main>{% if period %}<form method="get" class="period" id="period" aria-label="period">{% for k in period.keep %}<input type="hidden" name="{{ k.name }}" value="{{ k.value }}">{% endfor %}
<label for="since">{{ period.label }}</label> <input type="date" name="since" id="since" value="{{ period.since }}">
<label for="until">to</label> <input type="date" name="until" id="until" value="{{ period.until }}">
<button type="submit">Show</button>{% if period.active %} <a href="?{% for k in period.keep %}{{ k.name }}={{ k.value }}{% endfor %}" id="all-time">all time</a>{% endif %}
{% if period.error %}<p class="error" role="alert">{{ period.error }}</p>{% endif %}</form>{% endif %}
{% block body %}{% endblock %}</main>
{% if now %}<footer>{% if as_of %}Figures as of {{ as_of }}{% if as_of != now %}, where the data ends: it runs ahead of today ({{ now }}), as a simulated programme does{% endif %}.{% else %}Shown {{ now }}.{% endif %} <a href="/admin/help">How to read these figures</a></footer>{% endif %}
<script src="/admin/assets/uPlot.iife.min.js"></script><script src="/admin/assets/dashboard.js"></script>
</body></html>"#;

const LOGIN: &str = r#"{% extends "layout.html" %}{% block title %}Log in{% endblock %}{% block body %}
<h1>Log in</h1>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<form method="post" action="/admin/login" class="login">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Name <input name="username" id="username" autocomplete="username" required></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button>
</form>{% endblock %}"#;

const REFUSED: &str = r#"{% extends "layout.html" %}{% block title %}Not accepted{% endblock %}{% block body %}
{% if stale %}<h1>This form has expired</h1>
<p id="refused">The sign-in form is valid for an hour, and only in the browser that opened it, with cookies allowed. Nothing was changed.</p>
<p><a href="/admin/login">Open the sign-in page again</a>.</p>
{% else %}<h1>This form came from another address</h1>
<p id="refused">The form was sent from <code>{{ sent or "another site" }}</code>, but this winback takes forms only from {% for a in accepted %}<code>{{ a }}</code>{% if not loop.last %} or {% endif %}{% endfor %}. Nothing was changed.</p>
<p>Open the dashboard at <a href="{{ open }}">{{ open }}</a>. If the address you used is the right one, whoever runs winback sets it as its public address: see “Opening the dashboard” in winback's README.</p>
{% endif %}{% endblock %}"#;

const MISSING: &str = r#"{% extends "layout.html" %}{% block body %}<h1>Not found</h1><p>No such {{ what }}.</p>{% endblock %}"#;

const READOUT: &str = r#"{% macro readout(r) %}{% if r %}
<span class="{% if r.positive %}good{% elif r.significant %}bad{% endif %}" data-k="lift">{{ r.lift }}</span> points
<small>({{ r.lift_interval }})</small>
{% if r.bar %}<svg class="bar" viewBox="0 0 300 16" width="300" height="16" role="img" aria-label="lift {{ r.lift }} points, {{ r.lift_interval }}">
<line x1="{{ r.bar.zero }}" y1="0" x2="{{ r.bar.zero }}" y2="16" class="zero"/><line x1="{{ r.bar.low }}" y1="8" x2="{{ r.bar.high }}" y2="8" class="ci ci-{{ r.bar.tone }}"/>
<circle cx="{{ r.bar.est }}" cy="8" r="4" class="est est-{{ r.bar.tone }}"/></svg>{% endif %}
{% else %}<span class="muted">no holdout</span>{% endif %}{% endmacro %}"#;

const OVERVIEW: &str = r#"{% extends "layout.html" %}{% import "readout.html" as m %}{% block title %}Overview{% endblock %}{% block body %}
<h1>Overview</h1>
<section aria-labelledby="campaigns-title"><h2 id="campaigns-title">What makes money, what to stop</h2>
<p class="muted">Incremental margin is what the messaged people earned beyond the holdout, after discounts and sending; the verdict follows its 95% interval, which holds however often you look (so it is wider than the one-off interval on a campaign's page). Click a number to see the people behind it.</p>
<div class="scroll" tabindex="0"><table id="campaigns" class="sortable"><thead><tr>
<th scope="col"><button type="button" data-sort="text" data-col="0">Campaign</button></th>
<th scope="col"><button type="button" data-sort="text" data-col="1">Verdict</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="2">Entered</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="3">Held out</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="4">Messaged</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="5">Sent</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="6">Delivered</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="7">Not sent</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="8">Buyers</button></th>
<th scope="col"><button type="button" data-sort="num" data-col="9">Incremental margin (95% at every look)</button></th>
<th scope="col">Margin on one axis</th></tr></thead><tbody>
{% for r in p.rows %}<tr data-campaign="{{ r.name }}">
<th scope="row" data-v="{{ r.name }}"><a href="/admin/campaigns/{{ r.name }}{{ period.q }}">{{ r.name }}</a><br><small class="muted">{{ r.status }}{% if r.channels %} · {{ r.channels }}{% endif %}</small></th>
<td data-v="{{ r.verdict_label }}"><span class="verdict v-{{ r.verdict }}">{{ r.verdict_label }}</span><br><small>{{ r.why }}</small></td>
<td class="num" data-k="contacts" data-v="{{ r.raw[0] }}"><a href="/admin/campaigns/{{ r.name }}/people?group=entered{{ period.amp }}">{{ r.entered }}</a></td>
<td class="num" data-k="held_out" data-v="{{ r.raw[1] }}">{% if r.raw[1] > 0 %}<a href="/admin/campaigns/{{ r.name }}/people?group=held_out{{ period.amp }}">{{ r.held_out }}</a>{% else %}–{% endif %}</td>
<td class="num" data-k="messaged" data-v="{{ r.raw[2] }}"><a href="/admin/campaigns/{{ r.name }}/people?group=messaged{{ period.amp }}">{{ r.messaged }}</a></td>
<td class="num" data-k="sent" data-v="{{ r.raw[3] }}">{{ r.sent }}</td>
<td class="num" data-k="delivered" data-v="{{ r.raw[5] }}">{{ r.delivered }}</td>
<td class="num" data-k="dropped" data-v="{{ r.raw[6] }}" title="{{ r.dropped_reasons }}">{% if r.raw[6] > 0 %}<a href="/admin/campaigns/{{ r.name }}/people?group=dropped{{ period.amp }}">{{ r.dropped }}</a>{% if r.dropped_reasons %}<br><small>{{ r.dropped_reasons }}</small>{% endif %}{% else %}0{% endif %}</td>
<td class="num" data-k="buyers" data-v="{{ r.raw[4] }}"><a href="/admin/campaigns/{{ r.name }}/people?group=bought{{ period.amp }}">{{ r.buyers }}</a></td>
<td class="num" data-v="{% if r.margin_raw is not none %}{{ r.margin_raw }}{% endif %}">{% if r.margin %}<span class="{% if r.margin.negative %}bad{% elif r.margin.positive %}good{% endif %}">{{ r.margin.estimate }}</span><br><small>{{ r.margin.low }} to {{ r.margin.high }}</small>{% else %}–{% endif %}</td>
<td>{% if r.bar %}<svg class="axisbar" viewBox="0 0 {{ p.axis.width }} 14" width="{{ p.axis.width }}" height="14" role="img" aria-label="incremental margin {{ r.margin.text }}"><line x1="{{ p.axis.zero }}" y1="0" x2="{{ p.axis.zero }}" y2="14" class="zero"/><line x1="{{ r.bar.low }}" y1="7" x2="{{ r.bar.high }}" y2="7" class="ci ci-{{ r.bar.tone }}"/><circle cx="{{ r.bar.est }}" cy="7" r="4" class="est est-{{ r.bar.tone }}"/></svg>{% endif %}</td></tr>
{% else %}<tr><td colspan="11">No campaigns yet.</td></tr>{% endfor %}</tbody>
{% if p.rows %}<tfoot><tr id="programme-total"><th scope="row">{{ p.total.name }}</th><td>{{ p.total.verdict_label }}</td><td class="num" data-k="contacts">{{ p.total.entered }}</td><td class="num">{{ p.total.held_out }}</td><td class="num">{{ p.total.messaged }}</td><td class="num">{{ p.total.sent }}</td><td class="num">{{ p.total.delivered }}</td><td class="num">{{ p.total.dropped }}</td><td class="num">{{ p.total.buyers }}</td>
<td class="num">{% if p.total.margin %}<span class="{% if p.total.margin.negative %}bad{% elif p.total.margin.positive %}good{% endif %}">{{ p.total.margin.estimate }}</span><br><small>{{ p.total.margin.low }} to {{ p.total.margin.high }}</small>{% else %}–{% endif %}</td><td></td></tr></tfoot>{% endif %}
</table></div>
<p class="muted">The bars share one axis from {{ p.axis.left }} to {{ p.axis.right }}, zero marked: a dot is the estimate, the line its 95% interval.{% if p.total_note %} {{ p.total_note }}{% endif %}</p>
</section>

<section><h2>Base health</h2>
{% if stages %}<p>{{ total }} people at the latest scoring run.</p>
<div class="scroll" tabindex="0"><table id="stages"><thead><tr><th>Stage</th><th>People</th><th>Share</th></tr></thead><tbody>
{% for s in stages %}<tr data-stage="{{ s.stage }}"><td>{{ s.label }}</td><td class="num" data-v="{{ s.raw }}">{{ s.people }}</td><td class="num">{{ s.share }}</td></tr>{% endfor %}
</tbody></table></div>
<div class="chart" id="health-chart" data-chart="health-data" data-title="Share of the base per stage, per scoring run (%)" data-x-title="scoring run" data-y-title="share of the base" role="img" aria-label="Share of the base per stage at each scoring run; the figures are in the table below"></div>
<details id="health-figures"><summary>The chart's figures</summary><div class="scroll" tabindex="0"><table class="chart-table"><thead><tr><th scope="col">Scoring run</th>{% for n in health_names %}<th scope="col">{{ n }}</th>{% endfor %}</tr></thead><tbody>
{% for row in health_rows %}<tr><th scope="row">{{ row.at }}</th>{% for v in row.shares %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div></details>
<script type="application/json" id="health-data">{{ health }}</script>
{% else %}<p>No scoring run yet: run <code>winback score</code>.</p>{% endif %}
{% if matrix %}<h3>Segment moves since the previous scoring run</h3>
<div class="scroll" tabindex="0"><table id="migration"><thead><tr><th>from \ to</th>{% for t in tos %}<th>{{ t }}</th>{% endfor %}</tr></thead><tbody>
{% for row in matrix %}<tr><th>{{ row.from }}</th>{% for cell in row.cells %}<td class="num">{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>{% endif %}
{% if reasons %}<h3>Why people left (survey answers)</h3><ul id="reasons">{% for r in reasons %}<li>{{ r.reason }}: {{ r.count }}</li>{% endfor %}</ul>{% endif %}
</section>

<section><h2>List hygiene</h2>
<div class="scroll" tabindex="0"><table id="hygiene"><tbody>
<tr><th>Addresses</th><td class="num">{{ hygiene.addresses }}</td></tr>
<tr><th>Idle 6+ months</th><td class="num">{{ hygiene.idle_6m }}</td></tr>
<tr><th>Idle 12+ months</th><td class="num">{{ hygiene.idle_12m }}{% if spam_trap_risk %} <span class="bad">spam-trap risk: {{ hygiene.idle_12m_people }} addresses</span>{% endif %}</td></tr>
<tr><th>Idle 24+ months</th><td class="num">{{ hygiene.idle_24m }}</td></tr>
<tr><th>Never engaged</th><td class="num">{{ hygiene.never_engaged }}</td></tr>
<tr><th>Hard bounces</th><td class="num">{{ hygiene.hard_bounces }}</td></tr>
<tr><th>Complaints</th><td class="num">{{ hygiene.complaints }} ({{ hygiene.complaint_rate }} of email sent)</td></tr>
<tr><th>Duplicates merged</th><td class="num">{{ hygiene.duplicates_merged }}</td></tr>
<tr><th>Unsubscribed by sunset</th><td class="num">{{ hygiene.sunset }}</td></tr>
<tr><th>Erased</th><td class="num">{{ hygiene.erased }}</td></tr>
<tr><th>Suppressions</th><td>{{ hygiene.suppressions | join(", ") }}</td></tr>
</tbody></table></div></section>
{% if pauses %}<section><h2>Paused transports</h2><p>The relay or provider failed about itself (authentication, a blocklist, throttling, content); sends wait for it and nobody is suppressed.</p><div class="scroll" tabindex="0"><table><thead><tr><th>Channel</th><th>Paused until</th><th>Why</th></tr></thead><tbody>
{% for p in pauses %}<tr><td>{{ p.channel }}</td><td>{{ p.until }}</td><td><span class="bad">{{ p.why }}</span></td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}
{% if jobs %}<section><h2>Scheduled jobs</h2><p>What the worker runs by itself: features of the profiles an ingest touched, and the nightly scoring run.</p><div class="scroll" tabindex="0"><table><thead><tr><th>Job</th><th>Last finished</th><th>Runs</th><th>Now</th><th>Last outcome</th></tr></thead><tbody>
{% for j in jobs %}<tr><td>{{ j.name }}</td><td>{{ j.finished }}</td><td class="num">{{ j.runs }}</td><td>{% if j.running %}running on {{ j.running }}{% else %}idle{% endif %}</td><td>{% if j.failed %}<span class="bad">{{ j.what }}</span>{% else %}{{ j.what }}{% endif %}</td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}
{% if deliverability %}<section aria-labelledby="deliv-title"><h2 id="deliv-title">Deliverability by mailbox provider</h2>
<p class="muted">Every campaign's email together. At a limit the engine pauses sending to that provider by itself.</p>
<div class="scroll" tabindex="0"><table id="provider-deliverability"><thead><tr><th scope="col">Provider</th><th scope="col">Sent</th><th scope="col">Hard bounces</th><th scope="col">Limit</th><th scope="col">Complaints</th><th scope="col">Limit</th></tr></thead><tbody>
{% for d in deliverability %}<tr data-provider="{{ d.provider }}"><th scope="row">{{ d.provider }}</th><td class="num">{{ d.sent }}</td><td class="num">{% if d.hard_over %}<span class="bad">{{ d.hard_rate }} (at the limit)</span>{% else %}{{ d.hard_rate }}{% endif %}</td><td class="num">{{ d.max_hard }}</td><td class="num">{% if d.complaint_over %}<span class="bad">{{ d.complaint_rate }} (at the limit)</span>{% else %}{{ d.complaint_rate }}{% endif %}</td><td class="num">{{ d.max_complaint }}</td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}
{% if providers %}<section><h2>Mailbox providers</h2><div class="scroll" tabindex="0"><table><thead><tr><th>Provider</th><th>Share admitted</th><th>Attempts in window</th><th>Breaker</th></tr></thead><tbody>
{% for p in providers %}<tr><td>{{ p.provider }}</td><td class="num">{{ p.share }}</td><td class="num">{{ p.attempts }}</td><td>{% if p.paused %}<span class="bad">paused: {{ p.paused }}</span>{% else %}ok{% endif %}</td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}
{% endblock %}"#;

const CAMPAIGN: &str = r#"{% extends "layout.html" %}{% import "readout.html" as m %}{% block title %}{{ c.name }}{% endblock %}{% block body %}
<h1 id="campaign-name">{{ c.name }}</h1><p>{{ c.description }} <span class="tag">{{ c.status }}</span>{% if c.channels %} <span class="muted">· {{ c.channels }}</span>{% endif %}</p>
<section aria-labelledby="verdict-title"><h2 id="verdict-title">Verdict: <span class="verdict v-{{ c.verdict }}" id="verdict">{{ c.verdict_label }}</span></h2>
<p>Why: {{ c.why }}.{% if c.overall and c.overall.lift %} Reactivation against the holdout: {{ c.overall.lift }} points ({{ c.overall.lift_interval }}).{% endif %}</p>
<dl class="counts" id="counts">
<div><dt>Entered</dt><dd><a data-k="entered" data-v="{{ c.entered_raw }}" href="{{ c.links.entered }}">{{ c.entered }}</a></dd></div>
<div><dt>Held out</dt><dd>{% if c.held_out_raw > 0 %}<a data-k="held_out" data-v="{{ c.held_out_raw }}" href="{{ c.links.held_out }}">{{ c.held_out }}</a>{% else %}<span data-k="held_out" data-v="0">–</span>{% endif %}</dd></div>
<div><dt>Messaged (got at least one message)</dt><dd><a data-k="messaged" data-v="{{ c.messaged_raw }}" href="{{ c.links.messaged }}">{{ c.messaged }}</a></dd></div>
<div><dt>Messages sent</dt><dd>{{ c.sent }}</dd></div>
<div><dt>Delivered</dt><dd>{{ c.delivered }}</dd></div>
<div><dt>Not sent (dropped)</dt><dd><a href="{{ c.links.dropped }}">{{ c.dropped }}</a>{% if c.dropped_by_reason %} <small>{{ c.dropped_by_reason }}</small>{% endif %}</dd></div>
<div><dt>Bought within {{ c.window_days }} days</dt><dd><a data-k="bought" data-v="{{ c.bought_raw }}" href="{{ c.links.bought }}">{{ c.bought }}</a> <small>{{ c.conversion }} of those messaged</small></dd></div>
</dl>
<form method="post" action="/admin/campaigns/{{ c.name }}/status" id="actions">
<input type="hidden" name="csrf" value="{{ csrf }}">
{% if changed %}<p class="good" id="changed" role="status">The campaign is now {{ changed }}.</p>{% endif %}
<p>Status: <span class="tag" id="status">{{ c.status }}</span>
{% if c.status in ["draft", "paused"] %}<button type="submit" name="to" value="start" id="start">Start</button>{% endif %}
{% if c.status == "active" %}<button type="submit" name="to" value="pause" id="pause">Pause</button>{% endif %}
{% if c.status in ["draft", "active", "paused"] %}<button type="submit" name="to" value="close" id="close" class="secondary">Close</button>{% endif %}</p>
<p class="muted">Pause: nobody new enters and nothing is sent until it starts again. Close: nobody new enters, and journeys under way run to their end. The journey itself changes only through its campaign file and <code>winback campaigns apply</code>, which checks it first (“Campaigns” in the README).</p>
</form>
{% if c.wallet %}<p id="wallet">Wallet passes: {{ c.wallet.issued }} issued, {{ c.wallet.added }} added to a wallet, {{ c.wallet.updated }} updates, {{ c.wallet.removed }} removed from every wallet, {{ c.wallet.redeemed }} codes used.</p>{% endif %}
{% if c.exports %}<p id="exports">Handed to ad audiences and print lists: {% for e in c.exports %}{{ e.people }} to {{ e.target }} ({{ e.kind }}, step {{ e.step }}){% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
</section>

{% if over_time.rows %}<section aria-labelledby="time-title"><h2 id="time-title">Over time, by month of entry</h2>
{% if over_time.charted %}<div class="chart" id="counts-chart" data-chart="counts-data" data-title="Messages sent and buyers, by month of entry" data-x-title="month the contacts entered" data-y-title="messages, people" role="img" aria-label="Messages sent and buyers per month of entry; the figures are in the table below"></div>
<script type="application/json" id="counts-data">{{ over_time.counts }}</script>
{% if over_time.margin_charted %}<div class="chart" id="margin-chart" data-chart="margin-data" data-title="Incremental margin to date, with its 95% interval" data-x-title="month the contacts entered" data-y-title="margin" role="img" aria-label="Incremental margin to date with its interval per month; the figures are in the table below"></div>
<script type="application/json" id="margin-data">{{ over_time.margin }}</script>{% endif %}{% endif %}
<div class="scroll" tabindex="0"><table id="months"><thead><tr><th scope="col">Month</th><th scope="col">Entered</th><th scope="col">Messages sent</th><th scope="col">Buyers, messaged</th><th scope="col">Buyers, held out</th><th scope="col">Incremental margin to date (95% CI)</th></tr></thead><tbody>
{% for m in over_time.rows %}<tr><th scope="row">{{ m.month }}</th><td class="num">{{ m.entered }}</td><td class="num">{{ m.sent }}</td><td class="num">{{ m.buyers }}</td><td class="num">{{ m.holdout_buyers }}</td><td class="num">{{ m.margin or "–" }}</td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}

<section><h2>Journey</h2>
<svg id="journey" viewBox="0 0 720 {{ c.height }}" width="720" height="{{ c.height }}" role="img" aria-label="the journey">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>
<rect x="80" y="10" width="440" height="40" rx="8" class="node start"/><text x="300" y="35" text-anchor="middle">{{ c.entered }} entered · {{ c.messaged }} messaged</text>
<path d="M300,50 L300,70" class="edge" marker-end="url(#arrow)"/>
{% for e in c.edges %}<path d="{{ e.path }}" class="edge" marker-end="url(#arrow)"/>{% if e.label %}<text x="{{ e.lx }}" y="{{ e.ly }}" class="edge-label">{{ e.label }}</text>{% endif %}
{% endfor %}
{% for s in c.nodes %}<g class="step" data-step="{{ s.id }}" data-sent="{{ s.sent }}" data-reached="{{ s.reached }}"><rect x="80" y="{{ s.y }}" width="440" height="84" rx="8" class="node {{ s.kind }}"/>
<text x="96" y="{{ s.ty }}"><tspan class="kind">{{ s.kind }}</tspan> {{ s.id }}: {{ s.label }}</text>
<text x="96" y="{{ s.fy }}" class="counts flow">{{ s.flow }}</text>
{% if s.counts %}<text x="96" y="{{ s.cy }}" class="counts">{{ s.counts }}</text>{% endif %}</g>
{% endfor %}
<rect x="80" y="{{ c.end_y }}" width="440" height="40" rx="8" class="node end"/><text x="300" y="{{ c.end_ty }}" text-anchor="middle">{{ c.bought }} bought ({{ c.conversion }} of those messaged)</text>
</svg>
<p class="muted">The numbers on the arrows are people: at a branch or a wait for an event, those the journey sent that way; elsewhere, those who reached the step and moved on. Held-out contacts never enter the journey{% if c.journey_other_versions > 0 %}. These counts are the {{ c.journey_entered }} who entered on version {{ c.journey_version }}; {{ c.journey_other_versions_n }} entered on earlier versions and follow those versions' steps{% endif %}.</p></section>

<section><h2>Against the holdout</h2>
<div class="scroll" tabindex="0"><table id="arms"><thead><tr><th>Arm</th><th>Contacts</th><th>Bought</th><th>Rate</th><th>Revenue</th><th>AOV</th><th>Offers redeemed</th><th>Discount</th><th>Messages</th><th>Lift vs holdout</th></tr></thead><tbody>
{% for a in c.arms %}<tr data-arm="{{ a.variant }}"><td>{{ a.variant }}</td><td class="num" data-k="contacts">{{ a.contacts }}</td><td class="num" data-k="converted">{{ a.converted }}</td><td class="num">{{ a.rate }}</td>
<td class="num" data-k="revenue" data-v="{{ a.revenue_minor }}">{{ a.revenue }}</td><td class="num">{{ a.aov or "–" }}</td><td class="num">{{ a.redeemed }} of {{ a.offers }}</td><td class="num">{{ a.discount }}</td><td class="num">{{ a.message_cost }}</td>
<td>{% if not a.holdout %}{{ m.readout(a.readout) }}{% endif %}</td></tr>{% endfor %}
</tbody></table></div>
<p class="muted">The lift bars on this page share one axis, {{ c.axis.left }} to {{ c.axis.right }}, zero marked: a dot is the estimate, the line its 95% interval.</p>
{% if c.overall %}<div id="readout"><h3>{% if c.multi %}All variants together{% else %}Readout{% endif %}</h3><ul>
<li>Reactivation {{ c.overall.treated_rate }} vs {{ c.overall.holdout_rate }} in the holdout: {{ m.readout(c.overall) }}</li>
{% if c.overall.revenue %}<li>Incremental revenue per contact: {{ c.overall.revenue }}</li>{% endif %}
{% if c.overall.margin %}<li>Incremental margin after discounts and sending: {{ c.overall.margin }}{% if c.overall.margin_anytime %}; {{ c.overall.margin_anytime }}, the interval the verdict reads{% endif %}{% if c.overall.roi %}; ROI {{ c.overall.roi }}{% elif c.overall.per_1000 %}; {{ c.overall.per_1000 }} per 1,000 messages{% endif %}</li>{% endif %}
{% if c.overall.adjustment %}<li>{{ c.overall.adjustment }}</li>{% endif %}
{% for w in c.overall.warnings %}<li class="warn">{{ w }}</li>{% endfor %}
{% if all_margin %}<li class="warn">Margins count all revenue as margin, because the shop's gross margin is not set yet: <a href="/admin/help#margin">what that means</a>.</li>{% endif %}
</ul></div>{% endif %}
{% if c.winner %}<p id="winner">{{ c.winner }}</p>{% endif %}
</section>

{% for g in c.segments %}<section><h2>Results by {{ g.title }}</h2>
<div class="scroll" tabindex="0"><table class="segments"><thead><tr><th>{{ g.title }}</th><th>Messaged group</th><th>Bought</th><th>Rate</th><th>Revenue</th><th>Held out</th><th>Rate</th><th>Lift vs holdout</th></tr></thead><tbody>
{% for x in g.rows %}<tr><td>{{ x.label }}</td><td class="num"><a href="{{ x.people }}&amp;group=treated">{{ x.contacts }}</a></td><td class="num"><a href="{{ x.people }}&amp;group=bought">{{ x.converted }}</a></td><td class="num">{{ x.rate }}</td><td class="num">{{ x.revenue }}</td><td class="num">{% if x.holdout != "–" %}<a href="{{ x.people }}&amp;group=held_out">{{ x.holdout }}</a>{% else %}–{% endif %}</td><td class="num">{{ x.holdout_rate }}</td><td>{% if x.few %}<span class="flag">too few held out to compare</span>{% else %}{{ m.readout(x.readout) }}{% endif %}</td></tr>{% endfor %}
</tbody></table></div></section>{% endfor %}

{% if offers %}<section><h2>Offers</h2><div class="scroll" tabindex="0"><table id="offers"><thead><tr><th>Kind</th><th>State</th><th>Codes</th></tr></thead><tbody>
{% for o in offers %}<tr><td>{{ o.0 }}</td><td>{{ o.1 }}</td><td class="num">{{ o.2 }}</td></tr>{% endfor %}</tbody></table></div></section>{% endif %}

<section><h2>Messages</h2>
<div class="scroll" tabindex="0"><table id="messages"><thead><tr><th>Step</th><th>Variant</th><th>Channel</th><th>Sent</th><th>Delivered</th><th>Hard</th><th>Soft</th><th>In doubt</th><th>Dropped</th><th>Opened</th><th>Machine opens</th><th>Clicked</th><th>Unsub.</th><th>Spam</th></tr></thead><tbody>
{% for f in c.messages %}<tr data-step="{{ f.step }}" data-variant="{{ f.variant }}" data-channel="{{ f.channel }}"><td>{{ f.step }}</td><td>{{ f.variant }}</td><td>{{ f.channel }}</td><td class="num" data-k="sent">{{ f.sent }}</td><td class="num">{{ f.delivered }}</td><td class="num">{{ f.hard }}</td><td class="num">{{ f.soft }}</td><td class="num">{{ f.in_doubt }}</td><td class="num">{{ f.dropped }}</td><td class="num">{{ f.opened }}</td><td class="num">{{ f.machine }}</td><td class="num" data-k="clicked">{{ f.clicked }}</td><td class="num">{{ f.unsubscribed }}</td><td class="num">{{ f.complained }}</td></tr>
{% else %}<tr><td colspan="14">No messages yet.</td></tr>{% endfor %}</tbody></table></div>
{% if c.dropped_by_reason %}<p id="dropped-reasons">Dropped at send time: {{ c.dropped_by_reason }}.</p>{% endif %}
{% if c.locales %}<h3>By locale</h3><div class="scroll" tabindex="0"><table id="locales"><thead><tr><th>Locale</th><th>Channel</th><th>Sent</th><th>Opened</th><th>Clicked</th><th>Unsub.</th></tr></thead><tbody>
{% for l in c.locales %}<tr><td>{{ l.locale }}</td><td>{{ l.channel }}</td><td class="num">{{ l.sent }}</td><td class="num">{{ l.opened }}</td><td class="num">{{ l.clicked }}</td><td class="num">{{ l.unsubscribed }}</td></tr>{% endfor %}</tbody></table></div>{% endif %}
</section>

{% if c.deliverability %}<section><h2>Deliverability by mailbox provider</h2>
<div class="scroll" tabindex="0"><table id="deliverability"><thead><tr><th>Provider</th><th>Sent</th><th>Delivered</th><th>Hard bounces</th><th>Soft</th><th>Complaints</th><th>Hard-bounce rate (limit)</th><th>Complaint rate (limit)</th></tr></thead><tbody>
{% for d in c.deliverability %}<tr{% if d.over %} class="over"{% endif %}><td>{{ d.provider }}</td><td class="num">{{ d.sent }}</td><td class="num">{{ d.delivered }}</td><td class="num">{{ d.hard }}</td><td class="num">{{ d.soft }}</td><td class="num">{{ d.complained }}</td><td class="num">{{ d.hard_rate }} ({{ d.max_hard }})</td><td class="num">{{ d.complaint_rate }} ({{ d.max_complaint }})</td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}

{% if c.reasons %}<section><h2>Reasons given</h2><ul>{% for r in c.reasons %}<li>{{ r.reason }}: {{ r.count }}</li>{% endfor %}</ul></section>{% endif %}

<section><h2>Did they stay?</h2>
<div class="scroll" tabindex="0"><table id="stay"><thead><tr><th></th><th>People</th><th>Again in 30 d</th><th>90 d</th><th>180 d</th><th>Lapsed again</th><th>Revenue after</th><th>Mean CLV</th></tr></thead><tbody>
{% for s in c.stay %}<tr><th>{{ s.label }}</th><td class="num">{{ s.people }}</td><td class="num">{{ s.again_30d }}</td><td class="num">{{ s.again_90d }}</td><td class="num">{{ s.again_180d }}</td><td class="num">{{ s.lapsed_again }}</td><td class="num">{{ s.revenue_after }}</td><td class="num">{{ s.clv }}</td></tr>{% else %}<tr><td colspan="8">Nobody was reactivated yet.</td></tr>{% endfor %}
</tbody></table></div>
{% if c.reward_only %}<p>Reward only: {{ c.reward_only }} who came back with the campaign's code bought nothing more within 90 days.</p>{% endif %}
</section>
{% endblock %}"#;

const SEARCH: &str = r#"{% extends "layout.html" %}{% block title %}Customers{% endblock %}{% block body %}
<h1>Customers</h1>
<form method="get" action="/admin/customers" role="search"><label for="q">Name, part of an email, phone or customer id</label> <input name="q" id="q" value="{{ q }}" autocomplete="off"> <button type="submit">Find</button></form>
{% if not_found %}<p class="error">Nobody found for “{{ q }}”.</p>{% endif %}
{% if hits %}<section aria-labelledby="hits-title"><h2 id="hits-title">{{ hits|length }}{% if more %}+{% endif %} found for “{{ q }}”</h2>{% if more %}<p class="muted">The first 50 are shown: type more of the name or address.</p>{% endif %}
<div class="scroll" tabindex="0"><table id="hits"><thead><tr><th scope="col">Customer id</th><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Phone</th></tr></thead><tbody>
{% for h in hits %}<tr><td><a href="/admin/customers/{{ h.key }}">{{ h.customer_id }}</a></td><td>{{ h.name }}</td><td>{{ h.email or "" }}</td><td>{{ h.phone or "" }}</td></tr>{% endfor %}
</tbody></table></div></section>{% endif %}
{% endblock %}"#;

const HELP: &str = r#"{% extends "layout.html" %}{% block title %}How to read these figures{% endblock %}{% block body %}
<h1>How to read these figures</h1>
<section aria-labelledby="h-verdict"><h2 id="h-verdict">The verdict</h2>
<p>Every campaign keeps a <b>holdout</b>: a random share of the people who qualify is never messaged. What the messaged people did beyond the holdout is what the campaign caused. The verdict follows the <b>incremental margin</b>'s 95% interval:</p>
<ul><li><span class="verdict v-keep">keep</span>: the whole interval is above zero; it earns more than it costs.</li>
<li><span class="verdict v-change_or_stop">change or stop</span>: the whole interval is below zero; it costs more than it brings.</li>
<li><span class="verdict v-too_early">too early to tell</span>: the interval still spans zero, fewer than 100 people are held out or messaged, or the campaign has no holdout. Let it run, or give it a larger holdout.</li>
<li><span class="verdict v-nothing_sent">nothing sent</span>: nobody was messaged or exported yet.</li></ul>
<p>The reactivation-rate difference (points more buyers than in the holdout) is shown beside the margin as supporting evidence; the verdict does not follow it.</p></section>
<section aria-labelledby="margin"><h2 id="margin">Incremental margin</h2>
<p>The extra revenue of the messaged people over the holdout's, times the shop's gross margin, minus what the discounts gave away and what the messages cost. Until whoever runs winback sets the shop's gross margin, all revenue counts as margin and the figures are too high; the README's “Measurement” section says how to set it.</p>
<p>On the overview every campaign's interval is drawn on one axis, zero in the middle, so the bars compare. The programme's total adds the campaigns' figures and the ends of their intervals, which holds however the campaigns' customers overlap.</p></section>
<section aria-labelledby="h-counts"><h2 id="h-counts">The counts</h2>
<dl><dt>Entered</dt><dd>People who qualified and joined the campaign, messaged group and holdout together.</dd>
<dt>Held out</dt><dd>Of them, people never messaged, to compare with. “–” means none.</dd>
<dt>Messaged</dt><dd>People who received at least one message: the mail server or SMS provider accepted it.</dd>
<dt>Sent</dt><dd>Messages accepted; one person can get several.</dd>
<dt>Delivered</dt><dd>Sent and not bounced afterwards.</dd>
<dt>Not sent (dropped)</dt><dd>Messages winback did not send at send time, with the reason: no consent, unsubscribed, suppressed, a frequency cap, an ended journey.</dd>
<dt>Buyers</dt><dd>Messaged-group people who ordered within the campaign's attribution window.</dd>
<dt>Exported</dt><dd>People handed to an ad audience or a print list instead of a message.</dd></dl>
<p>Every count links to the people behind it, with a CSV download.</p></section>
<section aria-labelledby="h-small"><h2 id="h-small">Small groups</h2>
<p>A segment (a language, a mailbox provider) with fewer than 30 people held out shows no difference against the holdout: at that size any figure is noise.</p></section>
{% endblock %}"#;

const PEOPLE: &str = r#"{% extends "layout.html" %}{% block title %}{{ campaign }}: {{ title }}{% endblock %}{% block body %}
<p><a href="/admin/campaigns/{{ campaign }}{{ period.q }}">← {{ campaign }}</a></p>
<h1 id="people-title">{{ title }}</h1>
<p><span id="people-total" data-v="{{ total_raw }}">{{ total }}</span> people. <a id="csv" href="/admin/campaigns/{{ campaign }}/people?group={{ group }}&amp;format=csv{{ seg }}{{ period.amp }}" download>Download all as CSV</a> <span class="muted">(cells a spreadsheet would run as a formula are prefixed with ').</span></p>
<nav aria-label="other lists"><p>{% for g in [("entered", "entered"), ("held_out", "held out"), ("treated", "messaged group"), ("messaged", "messaged"), ("bought", "bought"), ("dropped", "not sent")] %}{% if g[0] == group %}<strong>{{ g[1] }}</strong>{% else %}<a href="/admin/campaigns/{{ campaign }}/people?group={{ g[0] }}{{ seg }}{{ period.amp }}">{{ g[1] }}</a>{% endif %}{% if not loop.last %} · {% endif %}{% endfor %}</p></nav>
<div class="scroll" tabindex="0"><table id="people"><thead><tr><th scope="col">Customer</th><th scope="col">Email</th><th scope="col">Arm</th><th scope="col">Entered</th><th scope="col">Journey</th><th scope="col">First message</th><th scope="col">Orders in {{ window_days }} days</th><th scope="col">Revenue</th></tr></thead><tbody>
{% for p in people %}<tr><td><a href="/admin/customers/{{ p.key }}">{{ p.name or p.customer_id or p.key }}</a>{% if p.name %}<br><small>{{ p.customer_id }}</small>{% endif %}</td><td>{{ p.email or "" }}</td><td>{{ p.arm }}</td><td>{{ p.entered }}</td><td>{{ p.state }}</td><td>{{ p.messaged or "–" }}</td><td class="num">{{ p.orders }}</td><td class="num">{{ p.revenue }}</td></tr>
{% else %}<tr><td colspan="8">Nobody.</td></tr>{% endfor %}</tbody></table></div>
{% if pages > 1 %}<nav aria-label="pages"><p>Page {{ page }} of {{ pages }}{% if prev %} · <a rel="prev" href="/admin/campaigns/{{ campaign }}/people?group={{ group }}&amp;page={{ prev }}{{ seg }}{{ period.amp }}">previous</a>{% endif %}{% if next %} · <a rel="next" href="/admin/campaigns/{{ campaign }}/people?group={{ group }}&amp;page={{ next }}{{ seg }}{{ period.amp }}">next</a>{% endif %}</p></nav>{% endif %}
{% endblock %}"#;

const CUSTOMER: &str = r#"{% extends "layout.html" %}{% block title %}{{ name }}{% endblock %}{% block body %}
<h1 id="customer-name">{{ name }}</h1>
<p>Profile {{ profile_id }} · {{ order_count }} orders</p>
{% if score %}<section id="score"><h2>Score</h2>
<p><span class="tag" data-k="stage">{{ score.stage }}</span> {{ score.reason }}</p>
<div class="scroll" tabindex="0"><table><tbody>
<tr><th>RFM</th><td>{{ score.rfm or "–" }} {{ score.segment or "" }}</td></tr>
<tr><th>Still a customer (P alive)</th><td>{{ score.p_alive or "–" }}</td></tr>
<tr><th>Expected orders in 90 days</th><td>{{ score.expected_90d or "–" }}</td></tr>
<tr><th>Predicted 12-month value</th><td>{{ score.clv or "–" }}</td></tr>
<tr><th>Usual reorder interval</th><td>{{ score.reorder or "–" }}</td></tr>
<tr><th>Purchase days · spend</th><td>{{ score.purchases }} · {{ score.spend }}</td></tr>
</tbody></table></div></section>{% endif %}
<section><h2>Records</h2><div class="scroll" tabindex="0"><table id="records"><thead><tr><th>Customer id</th><th>Email</th><th>Phone</th><th>Locale</th><th>Time zone</th></tr></thead><tbody>
{% for r in records %}<tr><td>{{ r.external_id }}</td><td>{{ r.email or "" }}</td><td>{{ r.phone or "" }}</td><td>{{ r.locale or "" }}</td><td>{{ r.time_zone or "" }}</td></tr>{% endfor %}
</tbody></table></div>
{% if consent %}<h3>Consent</h3><ul>{% for c in consent %}<li>{{ c.channel }}: {{ c.status }} ({{ c.source }}, {{ c.at }})</li>{% endfor %}</ul>{% endif %}
</section>
<section><h2>Timeline</h2>{% if truncated %}<p class="muted">The latest 50 orders, 50 engagement events and 200 messages.</p>{% endif %}<ol id="timeline" class="timeline">
{% for t in timeline %}<li class="{{ t.kind }}"><time>{{ t.at }}</time> <span class="tag">{{ t.kind }}</span> {{ t.what }}{% if t.detail %}<br><small>{{ t.detail }}</small>{% endif %}</li>
{% else %}<li>Nothing yet.</li>{% endfor %}</ol></section>
{% endblock %}"#;

/// The dashboard's templates, HTML auto-escaped.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Loads the templates.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, src) in [
            ("layout.html", LAYOUT),
            ("login.html", LOGIN),
            ("missing.html", MISSING),
            ("refused.html", REFUSED),
            ("readout.html", READOUT),
            ("overview.html", OVERVIEW),
            ("campaign.html", CAMPAIGN),
            ("search.html", SEARCH),
            ("people.html", PEOPLE),
            ("help.html", HELP),
            ("customer.html", CUSTOMER),
        ] {
            env.add_template(name, src)
                .expect("the dashboard's templates parse");
        }
        Self { env }
    }

    /// Renders a page; a rendering error is logged and shown as a short notice.
    pub fn render(&self, name: &str, ctx: Value) -> String {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!("dashboard template {name}: {e:#}");
                "<!doctype html><p>This page could not be shown; the error is in the log.</p>"
                    .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_a_salt_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsE", &a));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn chart_json_cannot_close_its_script_element() {
        let v = json_block(&serde_json::json!({"name": "</script><img src=x onerror=alert(1)>&"}));
        let s = v.to_string();
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["name"], "</script><img src=x onerror=alert(1)>&");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("winback_admin_x=1; winback_admin=abc; other=2"),
        );
        assert_eq!(cookie(&h, "winback_admin"), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
