//! The `/v1` API: ingest (customers, orders, events, singly as JSON or in batches as NDJSON),
//! campaigns (apply a file, start, pause, list), customer lookup, and webhooks from email
//! providers (a generic format and Amazon SES through SNS) and from the SMS provider.
//!
//! Records go through the same parsers and the same import transaction as `winback import`, so
//! the API refuses exactly what a file import refuses, naming the line and field. A POST with an
//! `Idempotency-Key` header is handled once: a retry with the same body gets the stored
//! response, one with a different body a 422.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use winback_domain::{BounceKind, EmailAddress, EventKind, Timestamp};
use winback_engine::JourneyStore;
use winback_engine::definition::Campaign;
use winback_engine::ports::Applied;
use winback_import::{ParsedRow, Rejected, RowIter, SourceKind};
use winback_store::ingest::{IngestOptions, Mode, ingest};
use winback_store::responses::Idempotency;

use crate::AppState;
use crate::auth::ApiKey;
use crate::error::ApiError;

/// The API routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/customers", post(customers))
        .route("/v1/customers/{key}", get(customer))
        .route("/v1/orders", post(orders))
        .route("/v1/events", post(events))
        .route("/v1/campaigns", get(campaigns))
        .route("/v1/report", get(report))
        .route("/v1/campaigns/{name}", put(apply_campaign))
        .route("/v1/campaigns/{name}/start", post(start_campaign))
        .route("/v1/campaigns/{name}/pause", post(pause_campaign))
        .route("/v1/webhooks/esp", post(esp_webhook))
        .route("/v1/webhooks/ses", post(ses_webhook))
        .route("/v1/webhooks/dsn", post(dsn_webhook))
        .route("/v1/webhooks/sms", post(sms_webhook))
        .route("/v1/call-lists/{name}", get(call_list))
        .route("/v1/call-outcomes", post(call_outcomes))
        .route("/v1/privacy/export", post(privacy_export))
        .route("/v1/privacy/erase", post(privacy_erase))
        .route("/v1/privacy/object", post(privacy_object))
        .route("/v1/openapi.json", get(crate::openapi::document))
}

fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body exceeds the server's limit",
            )
        } else {
            ApiError::bad_body(e.body_text())
        }
    })
}

/// Runs `handle` once per (key, Idempotency-Key); replays its stored response on a retry.
async fn idempotent<F, Fut>(
    state: &AppState,
    key: &ApiKey,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    handle: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let Some(idem) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        return Ok(match handle().await {
            Ok((status, v)) => (status, axum::Json(v)).into_response(),
            Err(e) => e.into_response(),
        });
    };
    if idem.len() > 255 {
        return Err(ApiError::bad_body(
            "Idempotency-Key is longer than 255 characters",
        ));
    }
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update(b"\0");
    h.update(body);
    let hash = hex::encode(h.finalize());
    match state
        .store
        .idempotency_begin(key.0.id, idem, &hash, state.clock.now())
        .await?
    {
        Idempotency::New => {}
        Idempotency::Replay(status, stored) => {
            let v: Value = serde_json::from_str(&stored).map_err(ApiError::internal)?;
            let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
            let mut r = (status, axum::Json(v)).into_response();
            r.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return Ok(r);
        }
        Idempotency::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ));
        }
        Idempotency::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being handled; retry shortly",
            ));
        }
    }
    let (status, v) = match handle().await {
        Ok(ok) => ok,
        Err(e) if e.status.is_server_error() => {
            // A fault, not an answer: release the key so a retry runs again.
            state.store.idempotency_finish(key.0.id, idem, None).await?;
            return Err(e);
        }
        Err(e) => (e.status, e.body()),
    };
    state
        .store
        .idempotency_finish(key.0.id, idem, Some((status.as_u16(), &v.to_string())))
        .await?;
    Ok((status, axum::Json(v)).into_response())
}

/// The body as NDJSON lines of JSON objects: a single JSON document (pretty-printed or not) is
/// one record; otherwise every non-blank line is one.
fn json_lines(content_type: Option<&str>, body: &[u8]) -> Result<Vec<String>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_body("the body is not UTF-8"))?;
    let ndjson = content_type.is_some_and(|c| c.starts_with("application/x-ndjson"));
    let json = content_type.is_none_or(|c| c.starts_with("application/json"));
    if !ndjson && !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json (one record) or application/x-ndjson (one record per line)",
        ));
    }
    if ndjson {
        return Ok(text.lines().map(str::to_owned).collect());
    }
    let v: Value =
        serde_json::from_str(text).map_err(|e| ApiError::bad_body(format!("body: {e}")))?;
    Ok(vec![v.to_string()])
}

/// One NDJSON line's flat object as CSV cells for the CSV parsers.
fn cells(line: usize, text: &str) -> Result<Option<serde_json::Map<String, Value>>, Rejected> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let reject = |field: &str, reason: String| Rejected {
        error: winback_import::RowError {
            file: Arc::from("request body"),
            line: line as u64,
            field: field.to_owned(),
            reason,
        },
        raw: text.to_owned(),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(reject("row", "not a JSON object".into())),
        Err(e) => Err(reject("row", format!("not JSON: {e}"))),
    }
}

fn cell_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "yes".into() } else { "no".into() }),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Turns JSON objects into a CSV with a header of every key seen, for the CSV parsers. Line `n`
/// of the body becomes CSV line `n + 1`; [`shift`] maps errors back.
fn to_csv(
    lines: &[(usize, serde_json::Map<String, Value>)],
    skip: &[&str],
) -> Result<(Vec<u8>, Vec<usize>), Rejected> {
    let mut header: Vec<String> = Vec::new();
    for (line, m) in lines {
        for (k, v) in m {
            if skip.contains(&k.as_str()) && v.is_array() {
                continue;
            }
            if matches!(v, Value::Object(_) | Value::Array(_)) {
                return Err(Rejected {
                    error: winback_import::RowError {
                        file: Arc::from("request body"),
                        line: *line as u64,
                        field: k.clone(),
                        reason: "nested values are not accepted here; use a flat value".into(),
                    },
                    raw: Value::Object(m.clone()).to_string(),
                });
            }
            if !header.contains(k) {
                header.push(k.clone());
            }
        }
    }
    let mut w = csv_writer();
    w.write_record(&header)
        .map_err(|e| internal_reject(e.to_string()))?;
    let mut source_lines = Vec::with_capacity(lines.len());
    for (line, m) in lines {
        let row: Vec<String> = header
            .iter()
            .map(|k| m.get(k).and_then(cell_text).unwrap_or_default())
            .collect();
        w.write_record(&row)
            .map_err(|e| internal_reject(e.to_string()))?;
        source_lines.push(*line);
    }
    let bytes = w.into_inner().map_err(|e| internal_reject(e.to_string()))?;
    Ok((bytes, source_lines))
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(Vec::new())
}

fn internal_reject(reason: String) -> Rejected {
    Rejected {
        error: winback_import::RowError {
            file: Arc::from("request body"),
            line: 0,
            field: "row".into(),
            reason,
        },
        raw: String::new(),
    }
}

/// The body line of CSV line `csv_line` (the header is line 1).
fn body_line(csv_line: u64, source_lines: &[usize]) -> Option<u64> {
    (csv_line as usize)
        .checked_sub(2)
        .and_then(|i| source_lines.get(i))
        .map(|l| *l as u64)
}

/// Runs the CSV parser of `kind` over JSON objects, with lines and fields (prefixed with
/// `field_prefix`, e.g. `items.`) as the body has them.
fn parse_objects(
    kind: SourceKind,
    objects: &[(usize, serde_json::Map<String, Value>)],
    field_prefix: &str,
    options: &winback_import::ImportOptions,
    rows: &mut Vec<ParsedRow>,
    rejected: &mut Vec<Rejected>,
) -> Result<(), ApiError> {
    if objects.is_empty() {
        return Ok(());
    }
    let (csv, source_lines) = to_csv(objects, &["items"]).map_err(|r| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            r.error.to_string(),
        )
        .with_details(error_details(std::slice::from_ref(&r)))
    })?;
    let parser = winback_import::from_reader(
        kind,
        Arc::from("request body"),
        std::io::Cursor::new(csv),
        options,
        None,
    )
    .map_err(|e| ApiError::bad_body(e.to_string()))?;
    for r in parser {
        match r {
            Ok(mut row) => {
                row.line = body_line(row.line, &source_lines).unwrap_or(row.line);
                rows.push(row);
            }
            Err(mut e) => {
                e.error.line = body_line(e.error.line, &source_lines).unwrap_or(e.error.line);
                e.error.field = format!("{field_prefix}{}", e.error.field);
                rejected.push(e);
            }
        }
    }
    Ok(())
}

fn error_details(rejected: &[Rejected]) -> Value {
    Value::Array(
        rejected
            .iter()
            .take(100)
            .map(
                |r| json!({"line": r.error.line, "field": r.error.field, "reason": r.error.reason}),
            )
            .collect(),
    )
}

/// Query of the ingest endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct IngestQuery {
    /// `strict` (default: any refused record refuses the request) or `skip_invalid` (store the
    /// good records, report the refused ones).
    pub mode: Option<String>,
}

/// Parses the body into rows for `kind` and writes them in one import transaction.
async fn ingest_body(
    state: &AppState,
    kind: SourceKind,
    content_type: Option<&str>,
    body: &[u8],
    mode: Mode,
) -> Result<(StatusCode, Value), ApiError> {
    let lines = json_lines(content_type, body)?;
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut rows: Vec<ParsedRow> = Vec::new();
    let mut options = state.settings.import.clone();
    // A statement sent to the API without a time was made now: it is recorded at the time it
    // was received (a file's undated statement counts as the oldest possible instead).
    options.as_of = state.clock.now();
    options.undated_consent = winback_import::UndatedConsent::Received;
    // A program can fix what it sends: an unreadable optional field refuses the record here
    // (a file import leaves it out with a warning instead).
    options.strict = true;
    let name: Arc<str> = Arc::from("request body");
    match kind {
        SourceKind::Events => {
            let text = lines.join("\n").into_bytes();
            let parser = winback_import::from_reader(
                kind,
                name.clone(),
                std::io::Cursor::new(text),
                &options,
                None,
            )
            .map_err(|e| ApiError::bad_body(e.to_string()))?;
            for r in parser {
                match r {
                    Ok(row) => rows.push(row),
                    Err(e) => rejected.push(e),
                }
            }
        }
        _ => {
            let mut objects = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                match cells(i + 1, l) {
                    Ok(Some(m)) => objects.push((i + 1, m)),
                    Ok(None) => {}
                    Err(e) => rejected.push(e),
                }
            }
            let mut item_objects = Vec::new();
            if kind == SourceKind::Orders {
                // `items: [...]` inside an order become order_items rows of that order.
                for (line, m) in &objects {
                    // A number under `items` is the item count, as in orders.csv.
                    let Some(items) = m.get("items").and_then(Value::as_array) else {
                        continue;
                    };
                    let order_id = m
                        .get("order_id")
                        .or_else(|| m.get("id"))
                        .and_then(cell_text)
                        .unwrap_or_default();
                    for it in items {
                        if let Value::Object(o) = it {
                            let mut o = o.clone();
                            o.insert("order_id".into(), Value::String(order_id.clone()));
                            item_objects.push((*line, o));
                        }
                    }
                }
            }
            parse_objects(kind, &objects, "", &options, &mut rows, &mut rejected)?;
            parse_objects(
                SourceKind::OrderItems,
                &item_objects,
                "items.",
                &options,
                &mut rows,
                &mut rejected,
            )?;
        }
    }
    rejected.sort_by_key(|r| r.error.line);
    if mode == Mode::Strict && !rejected.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            format!(
                "{} record(s) refused; nothing was stored (use ?mode=skip_invalid to store the rest)",
                rejected.len()
            ),
        )
        .with_details(error_details(&rejected)));
    }
    let read = (rows.len() + rejected.len()) as u64;
    let options = IngestOptions {
        file: name,
        mode: Mode::Strict,
        max_errors: 100,
        batch_rows: 5_000,
        now: state.clock.now(),
    };
    let iter: RowIter = Box::new(rows.into_iter().map(Ok));
    let report = ingest(&state.store, iter, &options, |_| {}, |_| {})
        .await
        .map_err(ApiError::internal)?;
    if !report.committed {
        // Refused by the store (an order line of an unknown order): nothing was written.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            "records were refused; nothing was stored",
        )
        .with_details(json!(report.errors)));
    }
    metrics::counter!("winback_ingest_records_total", "kind" => kind.as_str())
        .increment(report.rows_ok);
    Ok((
        StatusCode::OK,
        json!({
            "rows_read": read,
            "rows_ok": report.rows_ok,
            "rows_rejected": rejected.len(),
            "errors": error_details(&rejected),
            "written": report.written,
        }),
    ))
}

fn mode_of(q: &IngestQuery) -> Result<Mode, ApiError> {
    match q.mode.as_deref() {
        None | Some("strict") => Ok(Mode::Strict),
        Some("skip_invalid") => Ok(Mode::SkipInvalid),
        Some(other) => Err(ApiError::bad_body(format!(
            "mode `{other}` is not strict or skip_invalid"
        ))),
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_ascii_lowercase())
}

async fn ingest_route(
    state: AppState,
    key: ApiKey,
    kind: SourceKind,
    q: IngestQuery,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    key.require("ingest")?;
    let bytes = body(raw)?;
    let mode = mode_of(&q)?;
    let ct = content_type(&headers);
    let route = format!("ingest:{}:{:?}", kind.as_str(), mode);
    idempotent(&state, &key, &headers, &route, &bytes, || {
        ingest_body(&state, kind, ct.as_deref(), &bytes, mode)
    })
    .await
}

/// Upserts customers: one JSON object, or NDJSON with one per line. Fields are those of
/// `customers.csv`.
#[utoipa::path(post, path = "/v1/customers", tag = "ingest", params(IngestQuery),
    request_body(content_type = "application/json", description = "a customer object (customers.csv columns); send application/x-ndjson for a batch"),
    responses((status = 200, description = "stored"), (status = 422, description = "invalid_record")),
    security(("api_key" = ["ingest"])))]
pub async fn customers(
    State(state): State<AppState>,
    key: ApiKey,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest_route(state, key, SourceKind::Customers, q, headers, raw).await
}

/// Upserts orders (`orders.csv` fields), each optionally with `items: [...]` (`order_items.csv`
/// fields).
#[utoipa::path(post, path = "/v1/orders", tag = "ingest", params(IngestQuery),
    request_body(content_type = "application/json", description = "an order object (orders.csv columns, optional items array); application/x-ndjson for a batch"),
    responses((status = 200, description = "stored"), (status = 422, description = "invalid_record")),
    security(("api_key" = ["ingest"])))]
pub async fn orders(
    State(state): State<AppState>,
    key: ApiKey,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest_route(state, key, SourceKind::Orders, q, headers, raw).await
}

/// Inserts events (`events.jsonl` objects); an event whose id is stored already is skipped.
#[utoipa::path(post, path = "/v1/events", tag = "ingest", params(IngestQuery),
    request_body(content_type = "application/json", description = "an event object (events.jsonl); application/x-ndjson for a batch"),
    responses((status = 200, description = "stored"), (status = 422, description = "invalid_record")),
    security(("api_key" = ["ingest"])))]
pub async fn events(
    State(state): State<AppState>,
    key: ApiKey,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest_route(state, key, SourceKind::Events, q, headers, raw).await
}

/// Everything stored about one person: by customer id, external id or email.
#[utoipa::path(get, path = "/v1/customers/{key}", tag = "customers",
    params(("key" = String, Path, description = "customer id, external id or email")),
    responses((status = 200, description = "the profile"), (status = 404, description = "not_found")),
    security(("api_key" = ["read"])))]
pub async fn customer(
    State(state): State<AppState>,
    key: ApiKey,
    Path(who): Path<String>,
) -> Result<Response, ApiError> {
    key.require("read")?;
    match state.store.customer_detail(&who).await? {
        Some(d) => Ok(axum::Json(d).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no customer `{who}`"),
        )),
    }
}

/// `?format=csv` of `GET /v1/call-lists/NAME`.
#[derive(Debug, Deserialize)]
pub struct CallListQuery {
    format: Option<String>,
}

/// A call list for customer service: everyone its journeys' call steps put on it who may be
/// called, checked now (journey running, a number, no do-not-call, no objection), the callable
/// ones first, with why (stage, usual interval, reasons for leaving, value) and the offer to
/// make; and how many are held back, by reason. `?format=csv` gives the same as a defused CSV.
/// Reading it changes nothing.
#[utoipa::path(get, path = "/v1/call-lists/{name}", tag = "calls",
    params(("name" = String, Path, description = "the list's name, as the call step names it"),
           ("format" = Option<String>, Query, description = "`csv` for a CSV file")),
    responses((status = 200, description = "the list")),
    security(("api_key" = ["read"])))]
pub async fn call_list(
    State(state): State<AppState>,
    key: ApiKey,
    Path(name): Path<String>,
    Query(q): Query<CallListQuery>,
) -> Result<Response, ApiError> {
    key.require("read")?;
    let list = state
        .store
        .call_list(&name, &state.settings.calls, state.clock.now())
        .await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(axum::Json(list).into_response()),
        Some("csv") => {
            let mut buf = Vec::new();
            winback_app::calls::write_call_list(&list, &mut buf).map_err(ApiError::internal)?;
            Ok((
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "text/csv; charset=utf-8".to_owned(),
                    ),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        format!(
                            "attachment; filename=\"call-list-{}.csv\"",
                            sanitise_file_name(&name)
                        ),
                    ),
                ],
                buf,
            )
                .into_response())
        }
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("format: `{other}` is not json or csv"),
        )),
    }
}

/// A list name as part of a file name: letters, digits, `-` and `_` only.
fn sanitise_file_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect()
}

/// An agent's outcome for one call: `{"task": 12, "outcome": "reason_for_leaving", "reason":
/// "too_expensive", "agent": "Sanne", "note": "…", "at": "2025-06-02T10:15:00+02:00", "id":
/// "crm-8812"}` (or `"list"` and `"customer_id"` instead of `"task"`). It is stored on the
/// task and as a `call_outcome` event the journey waits and branches on; `do_not_call` takes the
/// person's numbers off every list for good, `wants_fewer_emails` sets their preference. The same
/// `id` again (or the same task, outcome and time) changes nothing.
#[utoipa::path(post, path = "/v1/call-outcomes", tag = "calls",
    responses((status = 200, description = "recorded (or a repeat)"),
              (status = 404, description = "unknown_task"),
              (status = 409, description = "task_closed"),
              (status = 422, description = "invalid_outcome")),
    security(("api_key" = ["ingest"])))]
pub async fn call_outcomes(
    State(state): State<AppState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    key.require("ingest")?;
    let bytes = body(raw)?;
    let input: winback_app::calls::OutcomeInput = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_body(format!("expected a call outcome: {e}")))?;
    let now = state.clock.now();
    let o = &state.settings.import;
    let dates =
        winback_import::DateParser::new(o.default_time_zone.time_zone(), o.date_order, None);
    let report = match input
        .resolve(&state.store, &dates, now)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(r) => r,
        Err(e) => {
            let status = if e.field == "customer_id" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let code = if e.field == "customer_id" {
                "unknown_task"
            } else {
                "invalid_outcome"
            };
            return Err(ApiError::new(status, code, e.to_string()));
        }
    };
    match state
        .store
        .record_call_outcome(&report, &state.settings.calls, now)
        .await?
    {
        Ok(winback_store::calls::CallRecorded::Stored { open }) => Ok(axum::Json(json!({
            "task": report.task, "outcome": report.outcome, "recorded": true,
            "task_open": open,
        }))
        .into_response()),
        Ok(winback_store::calls::CallRecorded::Repeat) => Ok(axum::Json(json!({
            "task": report.task, "outcome": report.outcome, "recorded": false, "repeat": true,
        }))
        .into_response()),
        Err(refused) => {
            let (code, status) = winback_app::calls::refusal_code(&refused);
            Err(ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT),
                code,
                refused.to_string(),
            ))
        }
    }
}

/// The person a privacy request names.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct PrivacyRequest {
    /// Email address, +phone number, customer id or external id.
    pub key: String,
}

/// Finds the person, handles the request as an audited run, answers with its outcome.
async fn privacy(
    state: &AppState,
    key: &ApiKey,
    raw: Result<Bytes, BytesRejection>,
    request: winback_store::privacy::Request,
) -> Result<Response, ApiError> {
    key.require("admin")?;
    let bytes = body(raw)?;
    let req: PrivacyRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_body(format!("expected {{\"key\": \"…\"}}: {e}")))?;
    let Some(profile) = state.store.find_profile(&req.key).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such person (or already erased)",
        ));
    };
    let origin = format!("api key {}", key.0.prefix);
    let outcome = state
        .store
        .privacy_request(request, profile, &origin, state.clock.now())
        .await?;
    Ok(match outcome {
        winback_store::privacy::Outcome::Exported(data) => axum::Json(data).into_response(),
        winback_store::privacy::Outcome::Erased(e) => {
            axum::Json(json!({"erased": e})).into_response()
        }
        winback_store::privacy::Outcome::Objected(dropped) => {
            axum::Json(json!({"profile_id": profile, "messages_dropped": dropped})).into_response()
        }
    })
}

/// Right of access: everything stored about one person, as JSON (audited; hence a POST).
#[utoipa::path(post, path = "/v1/privacy/export", tag = "privacy",
    request_body = PrivacyRequest,
    responses((status = 200, description = "the export"), (status = 404, description = "not_found")),
    security(("api_key" = ["admin"])))]
pub async fn privacy_export(
    State(state): State<AppState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    privacy(&state, &key, raw, winback_store::privacy::Request::Export).await
}

/// Right to erasure: the person is anonymised and kept out of later imports.
#[utoipa::path(post, path = "/v1/privacy/erase", tag = "privacy",
    request_body = PrivacyRequest,
    responses((status = 200, description = "erased"), (status = 404, description = "not_found")),
    security(("api_key" = ["admin"])))]
pub async fn privacy_erase(
    State(state): State<AppState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    privacy(&state, &key, raw, winback_store::privacy::Request::Erase).await
}

/// Objection to direct marketing: every channel withdrawn, queued messages dropped, at once.
#[utoipa::path(post, path = "/v1/privacy/object", tag = "privacy",
    request_body = PrivacyRequest,
    responses((status = 200, description = "withdrawn"), (status = 404, description = "not_found")),
    security(("api_key" = ["admin"])))]
pub async fn privacy_object(
    State(state): State<AppState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    privacy(&state, &key, raw, winback_store::privacy::Request::Object).await
}

/// Campaigns with their status and version.
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns",
    responses((status = 200, description = "campaigns")),
    security(("api_key" = ["read"])))]
pub async fn campaigns(State(state): State<AppState>, key: ApiKey) -> Result<Response, ApiError> {
    key.require("read")?;
    let list = state.store.campaigns().await.map_err(ApiError::internal)?;
    Ok(axum::Json(
        list.iter()
            .map(|c| json!({"id": c.id, "name": c.name, "status": c.status, "version": c.version, "file": c.file}))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// `?since=YYYY-MM-DD&until=YYYY-MM-DD` of `GET /v1/report`.
#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    since: Option<String>,
    until: Option<String>,
}

fn report_date(field: &str, raw: &str) -> Result<Timestamp, ApiError> {
    raw.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| Timestamp::new(z.timestamp()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("{field}: `{raw}` is not a date (YYYY-MM-DD)"),
            )
        })
}

/// The campaign report as of now: KPIs per campaign, step, variant, channel, locale and
/// mailbox provider, readouts against the holdout with 95% intervals, did they stay, list
/// hygiene and base health. The same figures as `winback report --json` and the dashboard.
#[utoipa::path(get, path = "/v1/report", tag = "campaigns",
    params(("since" = Option<String>, Query, description = "contacts who entered on or after (YYYY-MM-DD)"),
           ("until" = Option<String>, Query, description = "contacts who entered before (YYYY-MM-DD)")),
    responses((status = 200, description = "the report"), (status = 400, description = "invalid_query")),
    security(("api_key" = ["read"])))]
pub async fn report(
    State(state): State<AppState>,
    key: ApiKey,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    key.require("read")?;
    let from = q
        .since
        .as_deref()
        .map(|s| report_date("since", s))
        .transpose()?
        .unwrap_or(Timestamp::EPOCH);
    let until = q
        .until
        .as_deref()
        .map(|s| report_date("until", s))
        .transpose()?
        .unwrap_or_else(winback_report::forever);
    let as_of = winback_report::as_of(&state.store, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    let report = winback_report::build(&state.settings.report, &state.store, from, until, as_of)
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(report).into_response())
}

/// Applies a campaign file (TOML body). The name in the path must match the file's.
#[utoipa::path(put, path = "/v1/campaigns/{name}", tag = "campaigns",
    params(("name" = String, Path, description = "campaign name")),
    request_body(content_type = "application/toml", description = "the campaign file"),
    responses((status = 200, description = "applied"), (status = 422, description = "invalid_campaign")),
    security(("api_key" = ["admin"])))]
pub async fn apply_campaign(
    State(state): State<AppState>,
    key: ApiKey,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    key.require("admin")?;
    let bytes = body(raw)?;
    let route = format!("campaign:{name}");
    idempotent(&state, &key, &headers, &route, &bytes, || async {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_body("the body is not UTF-8"))?;
        let file = format!("api:{name}.toml");
        let campaign =
            Campaign::parse_with_templates(&file, text, &|t| state.settings.templates.contains(t))
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_campaign",
                        format!("{} problem(s) in the campaign file", e.problems.len()),
                    )
                    .with_details(Value::Array(
                        e.problems
                            .iter()
                            .map(|p| Value::String(p.to_string()))
                            .collect(),
                    ))
                })?;
        if campaign.name != name {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_campaign",
                format!(
                    "the file names campaign `{}`, the URL `{name}`",
                    campaign.name
                ),
            ));
        }
        let applied = state
            .store
            .apply_campaign(&name, &file, text, state.clock.now())
            .await
            .map_err(ApiError::internal)?;
        let (what, version) = match applied {
            Applied::Created(v) => ("created", v),
            Applied::NewVersion(v) => ("new_version", v),
            Applied::Unchanged(v) => ("unchanged", v),
        };
        Ok((
            StatusCode::OK,
            json!({"name": name, "applied": what, "version": version}),
        ))
    })
    .await
}

async fn set_status(
    state: &AppState,
    key: &ApiKey,
    name: &str,
    to: winback_engine::CampaignStatus,
) -> Result<Response, ApiError> {
    key.require("admin")?;
    if state
        .store
        .set_campaign_status(name, to, state.clock.now())
        .await
        .map_err(ApiError::internal)?
    {
        Ok(axum::Json(json!({"name": name, "status": to})).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no campaign `{name}`; apply its file first"),
        ))
    }
}

/// Starts (or resumes) a campaign.
#[utoipa::path(post, path = "/v1/campaigns/{name}/start", tag = "campaigns",
    params(("name" = String, Path, description = "campaign name")),
    responses((status = 200, description = "active"), (status = 404, description = "not_found")),
    security(("api_key" = ["admin"])))]
pub async fn start_campaign(
    State(state): State<AppState>,
    key: ApiKey,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&state, &key, &name, winback_engine::CampaignStatus::Active).await
}

/// Pauses a campaign: nothing is planned or sent until it is started again.
#[utoipa::path(post, path = "/v1/campaigns/{name}/pause", tag = "campaigns",
    params(("name" = String, Path, description = "campaign name")),
    responses((status = 200, description = "paused"), (status = 404, description = "not_found")),
    security(("api_key" = ["admin"])))]
pub async fn pause_campaign(
    State(state): State<AppState>,
    key: ApiKey,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_status(&state, &key, &name, winback_engine::CampaignStatus::Paused).await
}

/// One delivery notice from an email provider, in winback's generic format.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EspEvent {
    /// The provider's event id (makes a retried webhook a no-op).
    pub id: String,
    /// `delivered`, `bounced`, `complained`, `opened`, `clicked` or `unsubscribed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The recipient.
    pub email: String,
    /// RFC 3339 time; the time of receipt when absent.
    #[serde(default)]
    pub at: Option<String>,
    /// `hard` or `soft`, for bounces.
    #[serde(default)]
    pub bounce: Option<String>,
    /// The `Message-ID` or winback message key.
    #[serde(default)]
    pub message_id: Option<String>,
    /// The receiving server's reply, for bounces.
    #[serde(default)]
    pub diagnostic: Option<String>,
    /// The link, for clicks.
    #[serde(default)]
    pub url: Option<String>,
}

async fn apply_esp_events(
    state: &AppState,
    list: Vec<(usize, EspEvent)>,
) -> Result<(StatusCode, Value), ApiError> {
    let now = state.clock.now();
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (line, e) in list {
        let email = match EmailAddress::parse(&e.email) {
            Ok(a) => a,
            Err(err) => {
                problems.push(json!({"line": line, "field": "email", "reason": err.to_string()}));
                continue;
            }
        };
        let at = match e.at.as_deref() {
            None => now,
            Some(t) => match t.parse::<jiff::Timestamp>() {
                Ok(t) => Timestamp::new(t),
                Err(err) => {
                    problems.push(json!({"line": line, "field": "at", "reason": err.to_string()}));
                    continue;
                }
            },
        };
        let kind = match e.kind.as_str() {
            "delivered" => EventKind::EmailDelivered {
                message_id: e.message_id.clone(),
            },
            "bounced" => {
                let bounce = match e.bounce.as_deref() {
                    Some("hard") | None => BounceKind::Hard,
                    Some("soft") => BounceKind::Soft,
                    Some(other) => {
                        problems.push(json!({"line": line, "field": "bounce", "reason": format!("`{other}` is not hard or soft")}));
                        continue;
                    }
                };
                EventKind::EmailBounced {
                    bounce,
                    message_id: e.message_id.clone(),
                    diagnostic: e.diagnostic.clone(),
                }
            }
            "complained" => EventKind::EmailComplained {
                message_id: e.message_id.clone(),
            },
            "opened" => EventKind::EmailOpened {
                message_id: e.message_id.clone(),
                machine: None,
                user_agent: None,
            },
            "clicked" => EventKind::EmailClicked {
                message_id: e.message_id.clone(),
                url: e.url.clone(),
            },
            "unsubscribed" => EventKind::EmailUnsubscribed {
                message_id: e.message_id.clone(),
            },
            other => {
                problems.push(json!({"line": line, "field": "type", "reason": format!("`{other}` is not delivered, bounced, complained, opened, clicked or unsubscribed")}));
                continue;
            }
        };
        records.push((e.id, email, at, kind));
    }
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            format!("{} event(s) refused; nothing was stored", problems.len()),
        )
        .with_details(Value::Array(problems)));
    }
    let list = records
        .into_iter()
        .map(
            |(id, email, at, kind)| winback_app::mail_events::MailEvent {
                id,
                email,
                at,
                kind,
                about_sender: false,
                customer: None,
            },
        )
        .collect();
    let report = winback_app::mail_events::apply(&state.store, now, list).await?;
    Ok((
        StatusCode::OK,
        serde_json::to_value(&report).map_err(ApiError::internal)?,
    ))
}

/// Delivery, bounce, complaint, open, click and unsubscribe notices in winback's generic format
/// (one JSON object, or NDJSON). Hard bounces and complaints suppress the address at once; the
/// fourth soft bounce does.
#[utoipa::path(post, path = "/v1/webhooks/esp", tag = "webhooks",
    request_body(content = EspEvent, content_type = "application/json", description = "one event; application/x-ndjson for a batch"),
    responses((status = 200, description = "applied"), (status = 422, description = "invalid_record")),
    security(("api_key" = ["webhooks"])))]
pub async fn esp_webhook(
    State(state): State<AppState>,
    key: ApiKey,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    key.require("webhooks")?;
    let bytes = body(raw)?;
    let ct = content_type(&headers);
    idempotent(&state, &key, &headers, "esp", &bytes, || async {
        let mut list = Vec::new();
        let mut problems = Vec::new();
        for (i, line) in json_lines(ct.as_deref(), &bytes)?.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<EspEvent>(line) {
                Ok(e) => list.push((i + 1, e)),
                Err(e) => {
                    problems.push(json!({"line": i + 1, "field": "row", "reason": e.to_string()}))
                }
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_record",
                "events refused; nothing was stored",
            )
            .with_details(Value::Array(problems)));
        }
        apply_esp_events(&state, list).await
    })
    .await
}

/// Amazon SES notifications through SNS (Bounce, Complaint, Delivery). Subscription
/// confirmations are logged for the operator to confirm by hand: winback never fetches a URL a
/// request hands it.
#[utoipa::path(post, path = "/v1/webhooks/ses", tag = "webhooks",
    request_body(content_type = "application/json", description = "an SNS envelope"),
    responses((status = 200, description = "applied")),
    security(("api_key" = ["webhooks"])))]
pub async fn ses_webhook(
    State(state): State<AppState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    key.require("webhooks")?;
    let bytes = body(raw)?;
    let envelope: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_body(format!("body: {e}")))?;
    let kind = envelope
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "SubscriptionConfirmation" {
        tracing::warn!(
            "SNS subscription confirmation received; confirm it in the AWS console or open: {}",
            envelope
                .get("SubscribeURL")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        );
        return Ok(axum::Json(json!({"confirmation": "logged"})).into_response());
    }
    let message: Value = match envelope.get("Message") {
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| ApiError::bad_body(format!("Message: {e}")))?
        }
        Some(v @ Value::Object(_)) => v.clone(),
        _ => envelope.clone(),
    };
    let id = envelope
        .get("MessageId")
        .and_then(Value::as_str)
        .or_else(|| message.pointer("/mail/messageId").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let mail_id = message
        .pointer("/mail/messageId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let notification = message
        .get("notificationType")
        .or_else(|| message.get("eventType"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut list = Vec::new();
    let recipients = |ptr: &str, field: &str| -> Vec<(String, Option<String>)> {
        message
            .pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        let email = r
                            .get(field)
                            .and_then(Value::as_str)
                            .or_else(|| r.as_str())?;
                        Some((
                            email.to_owned(),
                            r.get("diagnosticCode")
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match notification {
        "Bounce" => {
            // `Permanent` is a hard bounce only for the subtypes about the recipient, and only
            // when the recipient's diagnostic (if any) is about the recipient too (a 5.7.1
            // policy block is the sender's problem); `Transient` and `Undetermined` are soft.
            let permanent_recipient = message
                .pointer("/bounce/bounceType")
                .and_then(Value::as_str)
                == Some("Permanent")
                && matches!(
                    message
                        .pointer("/bounce/bounceSubType")
                        .and_then(Value::as_str)
                        .unwrap_or("General"),
                    "General" | "NoEmail" | "Suppressed" | "OnAccountSuppressionList"
                );
            for (n, (email, diag)) in recipients("/bounce/bouncedRecipients", "emailAddress")
                .into_iter()
                .enumerate()
            {
                let hard = permanent_recipient
                    && diag.as_deref().is_none_or(|d| {
                        let code = d
                            .split(|c: char| !c.is_ascii_digit())
                            .find_map(|w| w.parse::<u16>().ok().filter(|c| (400..600).contains(c)))
                            .unwrap_or(550);
                        matches!(
                            winback_channels::email::classify_reply(code, d),
                            winback_engine::ports::SendOutcome::HardBounce(_)
                        ) || !d.contains('.')
                    });
                list.push((
                    n + 1,
                    EspEvent {
                        id: format!("ses:{id}:{n}"),
                        kind: "bounced".into(),
                        email,
                        at: message
                            .pointer("/bounce/timestamp")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        bounce: Some(if hard { "hard" } else { "soft" }.into()),
                        message_id: mail_id.clone(),
                        diagnostic: diag,
                        url: None,
                    },
                ));
            }
        }
        "Complaint" => {
            for (n, (email, _)) in recipients("/complaint/complainedRecipients", "emailAddress")
                .into_iter()
                .enumerate()
            {
                list.push((
                    n + 1,
                    EspEvent {
                        id: format!("ses:{id}:{n}"),
                        kind: "complained".into(),
                        email,
                        at: message
                            .pointer("/complaint/timestamp")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        bounce: None,
                        message_id: mail_id.clone(),
                        diagnostic: None,
                        url: None,
                    },
                ));
            }
        }
        "Delivery" => {
            for (n, (email, _)) in recipients("/delivery/recipients", "emailAddress")
                .into_iter()
                .enumerate()
            {
                list.push((
                    n + 1,
                    EspEvent {
                        id: format!("ses:{id}:{n}"),
                        kind: "delivered".into(),
                        email,
                        at: message
                            .pointer("/delivery/timestamp")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        bounce: None,
                        message_id: mail_id.clone(),
                        diagnostic: None,
                        url: None,
                    },
                ));
            }
        }
        other => {
            return Ok(axum::Json(json!({"ignored": other})).into_response());
        }
    }
    let (status, v) = match apply_esp_events(&state, list).await {
        Ok(ok) => ok,
        Err(e) => return Err(e),
    };
    Ok((status, axum::Json(v)).into_response())
}

/// A bounce (RFC 3464 delivery status notification) or complaint (RFC 5965 ARF report) as the
/// raw mail message, for a mail server that pipes the return-path mailbox here. The message is
/// found by the VERP tag of the address the report was mailed to, else by the Message-ID of
/// the enclosed original. Only a 5.1.x failure suppresses (hard); a full mailbox or a
/// temporary failure counts toward the soft-bounce limit; a policy or reputation failure is
/// recorded and suppresses nobody; a complaint suppresses marketing email.
#[utoipa::path(post, path = "/v1/webhooks/dsn", tag = "webhooks",
    request_body(content_type = "message/rfc822", description = "one raw mail message"),
    responses((status = 200, description = "applied"), (status = 422, description = "not_a_report")),
    security(("api_key" = ["webhooks"])))]
pub async fn dsn_webhook(
    State(state): State<AppState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    key.require("webhooks")?;
    let bytes = body(raw)?;
    let report = winback_channels::reports::parse(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_report",
            format!("body: {e}"),
        )
    })?;
    let now = state.clock.now();
    let reports = vec![("webhook".to_owned(), report)];
    let (list, read) = winback_app::mail_events::from_reports(&state.store, now, &reports).await?;
    let applied = winback_app::mail_events::apply(&state.store, now, list).await?;
    Ok(axum::Json(json!({
        "report": reports[0].1,
        "read": read,
        "applied": applied,
    }))
    .into_response())
}

/// An inbound SMS from the provider.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct InboundSms {
    /// The provider's message id.
    pub id: String,
    /// The sender's number (E.164).
    pub from: String,
    /// The text.
    pub text: String,
}

/// Inbound SMS replies, signed by the provider with the shared secret
/// (`X-Winback-Signature: t=…,v1=…`). STOP, END, CANCEL, UNSUBSCRIBE and QUIT suppress the number
/// at once and send one confirmation.
#[utoipa::path(post, path = "/v1/webhooks/sms", tag = "webhooks",
    request_body(content = InboundSms, content_type = "application/json"),
    responses((status = 200, description = "handled"), (status = 401, description = "bad_signature")))]
pub async fn sms_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(secret) = state.settings.sms_webhook_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the SMS webhook is not configured",
        ));
    };
    let bytes = body(raw)?;
    let signature = headers
        .get("x-winback-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = state.clock.now();
    winback_channels::http::verify_signature(
        secret.as_bytes(),
        signature,
        &bytes,
        now.as_micros() / 1_000_000,
        300,
    )
    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()))?;
    let inbound: InboundSms =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_body(format!("body: {e}")))?;
    let number =
        winback_domain::PhoneE164::parse(&inbound.from, state.settings.import.default_region)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_record",
                    format!("from: {e}"),
                )
                .with_details(json!([{"line": 1, "field": "from", "reason": e.to_string()}]))
            })?;
    if !winback_channels::sms::is_stop(&inbound.text) {
        return Ok(axum::Json(json!({"action": "none"})).into_response());
    }
    let outcome = state
        .store
        .sms_stop(&inbound.id, number.as_str(), &inbound.text, now)
        .await?;
    let mut confirmed = false;
    if outcome.new {
        metrics::counter!("winback_sms_stops_total").increment(1);
        if let Some(sms) = &state.sms {
            let text = winback_channels::sms::stop_confirmation(&state.settings.shop_name, None);
            let result = sms
                .send_text(
                    &format!("stop-confirm:{}", inbound.id),
                    number.as_str(),
                    &text,
                )
                .await;
            confirmed = matches!(result, winback_engine::ports::SendOutcome::Sent { .. });
            if !confirmed {
                tracing::warn!(
                    "STOP confirmation to {} not sent: {result:?}",
                    number.as_str()
                );
            }
        }
    }
    Ok(axum::Json(json!({
        "action": "stop",
        "new": outcome.new,
        "records": outcome.records,
        "confirmation_sent": confirmed,
    }))
    .into_response())
}
