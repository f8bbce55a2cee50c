//! The PassKit web service (Apple's "Wallet Passes Web Service"), under `/wallet`, where the
//! passes' `webServiceURL` points: devices register for a pass's updates and unregister,
//! ask which of their passes changed, fetch the latest pass, and send their logs. Requests about
//! one pass carry its token (`Authorization: ApplePass TOKEN`). Registering is a POST; no GET
//! changes anything.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

/// The PassKit routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/wallet/v1/devices/{device}/registrations/{pass_type}/{serial}",
            post(register).delete(unregister),
        )
        .route(
            "/wallet/v1/devices/{device}/registrations/{pass_type}",
            get(serials),
        )
        .route("/wallet/v1/passes/{pass_type}/{serial}", get(latest))
        .route("/wallet/v1/log", post(log))
}

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// The wallet service when the pass type is ours; else the answer to give.
fn service<'a>(
    state: &'a AppState,
    pass_type: &str,
) -> Result<&'a winback_app::wallet::WalletService, StatusCode> {
    match &state.settings.wallet {
        Some(w) if w.pass_type() == pass_type => Ok(w),
        _ => Err(StatusCode::NOT_FOUND),
    }
}

/// The wallet service for a request about one pass, when the pass type is ours (else 404) and
/// `Authorization: ApplePass TOKEN` carries the pass's token (else 401).
fn authorised<'a>(
    state: &'a AppState,
    pass_type: &str,
    headers: &HeaderMap,
    serial: &str,
) -> Result<&'a winback_app::wallet::WalletService, StatusCode> {
    let w = service(state, pass_type)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("ApplePass "))
        .unwrap_or_default();
    if w.token_ok(serial, token.trim()) {
        Ok(w)
    } else {
        Err(StatusCode::UNAUTHORIZED)
    }
}

/// Device identifiers and push tokens as Apple sends them: short, no control characters.
fn plausible(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && id.chars().all(|c| c.is_ascii_graphic())
}

#[derive(Debug, Deserialize)]
struct Registration {
    #[serde(rename = "pushToken")]
    push_token: String,
}

/// A device adds the pass: 201 the first time, 200 when it was registered already.
async fn register(
    State(state): State<AppState>,
    Path((device, pass_type, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Err(r) = authorised(&state, &pass_type, &headers, &serial) {
        return Ok(r.into_response());
    }
    let Ok(reg) = serde_json::from_slice::<Registration>(&body) else {
        return Ok(StatusCode::BAD_REQUEST.into_response());
    };
    if !plausible(&device) || !plausible(&reg.push_token) {
        return Ok(StatusCode::BAD_REQUEST.into_response());
    }
    Ok(
        match state
            .store
            .register_wallet_device(&device, &serial, &reg.push_token, state.clock.now())
            .await?
        {
            None => not_found(),
            Some(true) => StatusCode::CREATED.into_response(),
            Some(false) => StatusCode::OK.into_response(),
        },
    )
}

/// A device removes the pass.
async fn unregister(
    State(state): State<AppState>,
    Path((device, pass_type, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Err(r) = authorised(&state, &pass_type, &headers, &serial) {
        return Ok(r.into_response());
    }
    state
        .store
        .unregister_wallet_device(&device, &serial, state.clock.now())
        .await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(rename = "passesUpdatedSince")]
    since: Option<String>,
}

/// Which of the device's passes changed since the tag it got last time (204: none).
async fn serials(
    State(state): State<AppState>,
    Path((device, pass_type)): Path<(String, String)>,
    Query(q): Query<Since>,
) -> Result<Response, ApiError> {
    if let Err(r) = service(&state, &pass_type) {
        return Ok(r.into_response());
    }
    let since = match q.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => return Ok(StatusCode::BAD_REQUEST.into_response()),
        },
    };
    let (serials, last) = state.store.wallet_updated_since(&device, since).await?;
    Ok(match last {
        Some(last) if !serials.is_empty() => axum::Json(json!({
            "serialNumbers": serials,
            "lastUpdated": last.to_string(),
        }))
        .into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

/// The latest version of a pass (304 when unchanged since `If-Modified-Since`).
async fn latest(
    State(state): State<AppState>,
    Path((pass_type, serial)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let w = match authorised(&state, &pass_type, &headers, &serial) {
        Ok(w) => w,
        Err(r) => return Ok(r.into_response()),
    };
    let Some((bytes, updated)) = w
        .pkpass(&state.store, &serial)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(not_found());
    };
    // HTTP dates have whole seconds: compare at that grain.
    let updated_secs = updated.as_micros() / 1_000_000;
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    if since.is_some_and(|s| updated_secs <= s) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let last_modified = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(updated_secs.max(0) as u64),
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.apple.pkpass".to_owned(),
            ),
            (header::LAST_MODIFIED, last_modified),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct Logs {
    logs: Vec<String>,
}

/// Devices report problems with the web service here; they go to the service's log.
async fn log(body: Bytes) -> Response {
    match serde_json::from_slice::<Logs>(&body) {
        Ok(l) => {
            for line in l.logs.iter().take(100) {
                tracing::warn!(target: "winback::wallet", "device log: {}", line.chars().take(500).collect::<String>());
            }
            StatusCode::OK.into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
