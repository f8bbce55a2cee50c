//! API errors: a stable, documented `code` per kind of failure, so clients branch on the code and
//! never on the message.
//!
//! ```json
//! {"error": {"code": "invalid_record", "message": "…", "details": [{"line": 3, "field": "email", "reason": "…"}]}}
//! ```

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Structured details (per-record errors, problems).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer KEY)",
        )
    }

    /// 400 `invalid_body`.
    pub fn bad_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// 500 `internal`, logging the cause (never shown to the client).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            e["details"] = d.clone();
        }
        json!({ "error": e })
    }
}

impl From<winback_store::StoreError> for ApiError {
    fn from(e: winback_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        r
    }
}

/// Every code the API returns, for the OpenAPI document and the README.
pub const CODES: [(&str, u16, &str); 13] = [
    ("unauthorized", 401, "missing, unknown or revoked API key"),
    (
        "forbidden",
        403,
        "the key lacks the scope, or a cross-origin form post",
    ),
    ("not_found", 404, "no such resource"),
    (
        "invalid_body",
        400,
        "the body is not the JSON or NDJSON the endpoint takes",
    ),
    (
        "invalid_record",
        422,
        "records were refused; details name line, field and reason",
    ),
    (
        "invalid_campaign",
        422,
        "the campaign file does not validate; details list problems",
    ),
    ("body_too_large", 413, "the body exceeds the server's limit"),
    (
        "rate_limited",
        429,
        "too many requests for this key; retry after Retry-After seconds",
    ),
    (
        "idempotency_key_reused",
        422,
        "the Idempotency-Key was used with a different body",
    ),
    (
        "idempotency_in_progress",
        409,
        "a request with this Idempotency-Key is being handled",
    ),
    (
        "bad_signature",
        401,
        "a webhook signature is missing, stale or wrong",
    ),
    (
        "unsupported_media_type",
        415,
        "send application/json or application/x-ndjson",
    ),
    ("internal", 500, "a server fault; the log has the cause"),
];
