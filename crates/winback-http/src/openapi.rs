//! The OpenAPI document served at `/v1/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer wbk_…` (create keys with `winback keys create`). \
                         Error bodies are `{\"error\": {\"code\", \"message\", \"details\"}}`; codes: \
                         unauthorized, forbidden, not_found, invalid_body, invalid_record, \
                         invalid_campaign, body_too_large, rate_limited, idempotency_key_reused, \
                         idempotency_in_progress, invalid_query, bad_signature, unsupported_media_type, internal.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "winback API", description = "Ingest customers, orders and events; manage campaigns; receive provider webhooks. POSTs accept an `Idempotency-Key` header."),
    paths(
        api::customers,
        api::orders,
        api::events,
        api::customer,
        api::campaigns,
        api::report,
        api::apply_campaign,
        api::start_campaign,
        api::pause_campaign,
        api::esp_webhook,
        api::ses_webhook,
        api::dsn_webhook,
        api::sms_webhook,
        api::privacy_export,
        api::privacy_erase,
        api::privacy_object,
        api::call_list,
        api::call_outcomes,
    ),
    components(schemas(api::EspEvent, api::InboundSms, api::PrivacyRequest)),
    modifiers(&ApiKeyScheme),
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
