//! What contacts reach from a message: `/o` (open pixel), `/c` (click), `/u` (unsubscribe),
//! `/p` (preferences) and `/s` (survey), each followed by a purpose-bound signed token.
//!
//! Rules every handler keeps:
//! - a forged, tampered, expired or unknown token gets the same 404; a click on a message whose
//!   person was erased still leads to the link's page, and records nothing (the click path
//!   reads nothing from the store);
//! - a GET never changes a contact's subscription, preferences or answers (mail scanners fetch
//!   every link); the pixel and click only append engagement events;
//! - the click destination comes from the stored link table, never from the URL;
//! - one-click unsubscribe is a POST (RFC 8058) with no cookie and no redirect, and idempotent;
//! - preference and survey forms carry a signed CSRF token and refuse cross-origin posts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::context;
use winback_channels::tracking::classify_open;
use winback_channels::{Claims, Purpose};
use winback_domain::{EventKind, EventRecord, ExternalId, LeaveReason, Timestamp};
use winback_store::responses::{MessageRef, Preferences};

use crate::AppState;

/// A 1×1 transparent GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The tracking routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/o/{token}", get(open))
        .route("/c/{token}", get(click))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/p/{token}", get(preferences_page).post(save_preferences))
        .route("/s/{token}", get(survey_page).post(answer_survey))
        .route("/w/{token}", get(wallet_pass))
}

/// The one answer to every bad token.
fn not_found(state: &AppState) -> Response {
    let body = state
        .pages
        .render("not_found.html", "en", context! {})
        .unwrap_or_default();
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        Html(body),
    )
        .into_response()
}

/// A page about message `m`, in its contact's language.
fn page(state: &AppState, m: &MessageRef, name: &str, ctx: minijinja::Value) -> Response {
    match state
        .pages
        .render(name, m.locale.as_deref().unwrap_or("en"), ctx)
    {
        Ok(html) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                ),
            ],
            Html(html),
        )
            .into_response(),
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}

/// The claims of a valid token for `purpose` (`None`, counted and logged, for any other).
fn verify(state: &AppState, purpose: Purpose, token: &str) -> Option<Claims> {
    state
        .keys
        .verify(purpose, token, state.clock.now())
        .map_err(|e| {
            tracing::debug!("refused {purpose:?} token: {e}");
            metrics::counter!("winback_tracking_refused_total").increment(1);
        })
        .ok()
}

/// The message a valid token for `purpose` names.
async fn resolve(
    state: &AppState,
    purpose: Purpose,
    token: &str,
) -> Result<(Claims, MessageRef), Response> {
    let claims = verify(state, purpose, token).ok_or_else(|| not_found(state))?;
    match state.store.message(&claims.message).await {
        Ok(Some(m)) => Ok((claims, m)),
        Ok(None) => Err(not_found(state)),
        Err(e) => Err(crate::error::ApiError::internal(e).into_response()),
    }
}

/// The event a tracked response stores against the message's contact.
fn event_of(
    m: &MessageRef,
    source_id: &str,
    kind: EventKind,
    at: Timestamp,
) -> Result<EventRecord, crate::error::ApiError> {
    let fail = crate::error::ApiError::internal;
    Ok(EventRecord {
        source_id: Some(ExternalId::parse(source_id).map_err(fail)?),
        customer: ExternalId::parse(&m.customer).map_err(fail)?,
        at,
        kind,
    })
}

/// Stores one event before the response (unsubscribes, answers). Returns `false` when the
/// event's key was stored already.
async fn record(
    state: &AppState,
    m: &MessageRef,
    source_id: String,
    kind: EventKind,
    at: Timestamp,
) -> Result<bool, Response> {
    let event = event_of(m, &source_id, kind, at).map_err(IntoResponse::into_response)?;
    let fail = |e: winback_store::StoreError| crate::error::ApiError::internal(e).into_response();
    let mut session = state.store.begin_import(at).await.map_err(fail)?;
    session
        .insert_events(std::slice::from_ref(&event))
        .await
        .map_err(fail)?;
    let counts = session.commit().await.map_err(fail)?;
    metrics::counter!("winback_tracking_events_total", "type" => event.kind.type_name())
        .increment(counts.events);
    Ok(counts.events > 0)
}

/// Hands an open or click to the batch writer (see [`crate::engagement`]).
async fn record_later(
    state: &AppState,
    m: &MessageRef,
    source_id: String,
    kind: EventKind,
    at: Timestamp,
) -> Result<(), Response> {
    state
        .engagement
        .record(event_of(m, &source_id, kind, at).map_err(IntoResponse::into_response)?)
        .await;
    Ok(())
}

/// The connection's peer address, when the server recorded one.
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

pub(crate) fn client_ip(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    if state.settings.trust_forwarded_for {
        if let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    peer.map(|p| p.ip())
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect())
}

async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
    Peer(peer): Peer,
) -> Response {
    let (_, m) = match resolve(&state, Purpose::Open, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if method == Method::HEAD {
        // A HEAD is a link checker, not a reader.
        return gif();
    }
    let now = state.clock.now();
    let ua = user_agent(&headers);
    let ip = client_ip(&state, &headers, peer);
    let since = m
        .sent_at
        .map(|s| (now.as_micros() - s.as_micros()) / 1_000_000);
    let kind = classify_open(ua.as_deref(), ip, since);
    // One open of each kind per message and minute: a client reloading images is one open.
    let source = format!(
        "open:{}:{}:{}",
        m.key,
        if kind.is_machine() { "m" } else { "h" },
        now.as_micros() / 60_000_000
    );
    let event = EventKind::EmailOpened {
        message_id: Some(m.key.clone()),
        machine: Some(kind.is_machine()),
        user_agent: ua,
    };
    if let Err(r) = record_later(&state, &m, source, event, now).await {
        return r;
    }
    gif()
}

fn gif() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL,
    )
        .into_response()
}

async fn click(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
    Peer(peer): Peer,
) -> Response {
    // The token alone: the click is recorded by the batch writer, which looks the message up
    // with the rest of its batch, so the redirect reads nothing from the store (a store read
    // per click held redirects at 11,000 a second). A message whose person was erased still
    // leads to the shop's page, and records nothing.
    let Some(claims) = verify(&state, Purpose::Click, &token) else {
        return not_found(&state);
    };
    let key = claims.message.as_str();
    let Some(link) = claims.extra.as_deref() else {
        return not_found(&state);
    };
    // `preferences`: "yes, keep me subscribed" in a re-permission mail. It is a click (the
    // journey's `clicked` branch reads it), then the preference centre of the same message,
    // where the person confirms with a POST. Our own page, so never an open redirect.
    let url = if link == PREFERENCES_LINK {
        link_for(&state, Purpose::Preferences, "p", key)
    } else {
        match state.link(link).await {
            Ok(Some(u)) => u,
            Ok(None) => return not_found(&state),
            Err(e) => return crate::error::ApiError::internal(e).into_response(),
        }
    };
    let now = state.clock.now();
    let ua = user_agent(&headers);
    let ip = client_ip(&state, &headers, peer);
    // Scanners follow every link on delivery; only people's clicks count as engagement. The
    // seconds rule is left out: a person may click a link seconds after an open. A HEAD is a
    // link checker.
    if method == Method::HEAD || classify_open(ua.as_deref(), ip, None).is_machine() {
        metrics::counter!("winback_tracking_machine_clicks_total").increment(1);
    } else {
        let source_id = format!("click:{key}:{link}:{}", now.as_micros() / 1_000_000);
        let kind = EventKind::EmailClicked {
            message_id: Some(key.to_owned()),
            url: Some(url.clone()),
        };
        state
            .engagement
            .record_for_message(crate::engagement::MessageEvent {
                message: key.to_owned(),
                source_id,
                kind,
                at: now,
            })
            .await;
    }
    let mut r = Redirect::to(&url).into_response();
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The click link id that records a click and opens the message's preference centre.
pub const PREFERENCES_LINK: &str = "preferences";

/// A fresh signed link for `purpose` on the same message (e.g. preferences from the
/// unsubscribe page).
fn link_for(state: &AppState, purpose: Purpose, prefix: &str, key: &str) -> String {
    let expires = state.clock.now().as_micros() / 1_000_000 + 30 * 86_400;
    let token = state.keys.sign(
        purpose,
        &Claims {
            message: key.to_owned(),
            extra: None,
            expires,
        },
    );
    format!("{}/{prefix}/{token}", state.settings.public_url)
}

/// A CSRF token bound to the message and a day.
fn csrf_token(state: &AppState, key: &str) -> String {
    let expires = state.clock.now().as_micros() / 1_000_000 + 86_400;
    state.keys.sign(
        Purpose::Preferences,
        &Claims {
            message: format!("csrf:{key}"),
            extra: None,
            expires,
        },
    )
}

fn csrf_ok(state: &AppState, key: &str, given: Option<&String>) -> bool {
    given.is_some_and(|t| {
        state
            .keys
            .verify(Purpose::Preferences, t, state.clock.now())
            .is_ok_and(|c| c.message == format!("csrf:{key}"))
    })
}

/// Refuses a form post from another site: `Sec-Fetch-Site: cross-site`, or an `Origin` that is
/// not ours.
pub(crate) fn cross_origin(state: &AppState, headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => !state.settings.accepts_origin(origin),
        None => false,
    }
}

/// The checks every form post passes: same origin, a valid link token, and the CSRF token of
/// the same message.
async fn form_post(
    state: &AppState,
    purpose: Purpose,
    token: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(Claims, MessageRef), Response> {
    if cross_origin(state, headers) {
        return Err(forbidden());
    }
    let (claims, m) = resolve(state, purpose, token).await?;
    if !csrf_ok(state, &m.key, form.get("csrf")) {
        return Err(forbidden());
    }
    Ok((claims, m))
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "cross-origin form posts are refused\n",
    )
        .into_response()
}

/// Shows the address partly (`an***@example.nl`): the page is reachable by whoever holds the
/// link, and a forwarded email should not hand over the full address.
fn masked(recipient: Option<&str>) -> String {
    let Some(r) = recipient else {
        return "your address".into();
    };
    match r.split_once('@') {
        Some((local, domain)) => {
            let keep: String = local.chars().take(2).collect();
            format!("{keep}***@{domain}")
        }
        None => {
            let n = r.chars().count();
            let tail: String = r.chars().skip(n.saturating_sub(3)).collect();
            format!("***{tail}")
        }
    }
}

async fn unsubscribe_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (_, m) = match resolve(&state, Purpose::Unsubscribe, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    page(
        &state,
        &m,
        "unsubscribe.html",
        context! {
            recipient => masked(m.recipient.as_deref()),
            action => format!("{}/u/{token}", state.settings.public_url),
            preferences => link_for(&state, Purpose::Preferences, "p", &m.key),
        },
    )
}

/// RFC 8058 one-click (`List-Unsubscribe=One-Click` from the mailbox provider) and the page's
/// form both land here. No cookie, no redirect; a repeat changes nothing.
async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (_, m) = match resolve(&state, Purpose::Unsubscribe, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = state.clock.now();
    let event = || EventKind::EmailUnsubscribed {
        message_id: Some(m.key.clone()),
    };
    match record(&state, &m, format!("unsub:{}", m.key), event(), now).await {
        Ok(true) => {}
        Ok(false) => {
            // Unsubscribed from this message before. If the contact opted in again since (in
            // the preference centre), this is a new decision and must be recorded.
            match state.store.preferences(m.profile_id).await {
                Ok(p) if p.email => {
                    let key = format!("unsub:{}:{}", m.key, now.as_micros());
                    if let Err(r) = record(&state, &m, key, event(), now).await {
                        return r;
                    }
                }
                Ok(_) => {}
                Err(e) => return crate::error::ApiError::internal(e).into_response(),
            }
        }
        Err(r) => return r,
    }
    page(
        &state,
        &m,
        "unsubscribed.html",
        context! { preferences => link_for(&state, Purpose::Preferences, "p", &m.key) },
    )
}

async fn preferences_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (_, m) = match resolve(&state, Purpose::Preferences, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let prefs = match state.store.preferences(m.profile_id).await {
        Ok(p) => p,
        Err(e) => return crate::error::ApiError::internal(e).into_response(),
    };
    page(
        &state,
        &m,
        "preferences.html",
        context! {
            recipient => masked(m.recipient.as_deref()),
            action => format!("{}/p/{token}", state.settings.public_url),
            csrf => csrf_token(&state, &m.key),
            prefs => minijinja::Value::from_serialize(&prefs),
            topics => state.settings.topics.clone(),
        },
    )
}

async fn save_preferences(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, m) = match form_post(&state, Purpose::Preferences, &token, &headers, &form).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let on = |k: &str| form.get(k).is_some_and(|v| v == "on");
    let prefs = Preferences {
        low_frequency: form.get("frequency").is_some_and(|f| f == "low"),
        topics_off: state
            .settings
            .topics
            .iter()
            .filter(|t| !on(&format!("topic_{t}")))
            .cloned()
            .collect(),
        email: on("email"),
        sms: on("sms"),
    };
    if let Err(e) = state
        .store
        .set_preferences(m.profile_id, &prefs, state.clock.now())
        .await
    {
        return crate::error::ApiError::internal(e).into_response();
    }
    page(&state, &m, "saved.html", context! {})
}

fn survey_reason(claims: &Claims) -> Option<&str> {
    claims
        .extra
        .as_deref()
        .filter(|r| winback_channels::email::SURVEY_REASONS.contains(r))
}

async fn survey_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (claims, m) = match resolve(&state, Purpose::Survey, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(reason) = survey_reason(&claims) else {
        return not_found(&state);
    };
    page(
        &state,
        &m,
        "survey.html",
        context! {
            label => crate::pages::reason_label(reason, m.locale.as_deref().unwrap_or("en")),
            action => format!("{}/s/{token}", state.settings.public_url),
            csrf => csrf_token(&state, &m.key),
        },
    )
}

/// The leave reason an email survey answer stands for.
fn leave_reason(reason: &str) -> LeaveReason {
    match reason {
        "price" => LeaveReason::TooExpensive,
        "quality" => LeaveReason::Quality,
        _ => LeaveReason::Other,
    }
}

async fn answer_survey(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (claims, m) = match form_post(&state, Purpose::Survey, &token, &headers, &form).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(reason) = survey_reason(&claims) else {
        return not_found(&state);
    };
    let now = state.clock.now();
    let comment = form
        .get("comment")
        .map(|c| c.trim().chars().take(1000).collect::<String>())
        .filter(|c| !c.is_empty());
    let answer = match comment {
        Some(c) => format!("{reason}: {c}"),
        None => reason.to_owned(),
    };
    let event = EventKind::SurveyAnswered {
        survey: Some("leave_reason".into()),
        reason: Some(leave_reason(reason)),
        answer: Some(answer),
        message_id: Some(m.key.clone()),
    };
    // One answer per message and reason; a second click on the same answer changes nothing.
    if let Err(r) = record(&state, &m, format!("survey:{}:{reason}", m.key), event, now).await {
        return r;
    }
    if let Err(e) = state
        .store
        .add_tag(m.profile_id, &format!("reason:{reason}"), "survey", now)
        .await
    {
        return crate::error::ApiError::internal(e).into_response();
    }
    page(&state, &m, "thanks.html", context! {})
}

/// An add-to-wallet link: on Android (when Google Wallet is set up) a redirect to Google's
/// "save to wallet" page for the pass's offer object; elsewhere the signed pass, which Apple
/// Wallet opens. Changes nothing: a pass counts as added when a device registers it.
async fn wallet_pass(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(claims) = verify(&state, Purpose::Wallet, &token) else {
        return not_found(&state);
    };
    let Some(serial) = claims.extra.as_deref() else {
        return not_found(&state);
    };
    let android = user_agent(&headers).is_some_and(|ua| ua.contains("Android"));
    let google = state.settings.google_wallet.as_ref();
    if let Some(g) = google.filter(|_| android || state.settings.wallet.is_none()) {
        // Google's own page, never a destination from the request: no open redirect.
        return match g.save_link(&state.store, serial, state.clock.now()).await {
            Ok(Some(link)) => (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, link),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
            )
                .into_response(),
            Ok(None) => not_found(&state),
            Err(e) => crate::error::ApiError::internal(e).into_response(),
        };
    }
    let Some(w) = state.settings.wallet.as_ref() else {
        return not_found(&state);
    };
    match w.pkpass(&state.store, serial).await {
        Ok(Some((bytes, _))) => (
            [
                (header::CONTENT_TYPE, "application/vnd.apple.pkpass"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"pass.pkpass\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => not_found(&state),
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(masked(Some("anna@example.nl")), "an***@example.nl");
        assert_eq!(masked(Some("+31612345678")), "***678");
        assert_eq!(masked(None), "your address");
    }
}
