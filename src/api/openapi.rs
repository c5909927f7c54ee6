//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json` (no key needed).
//!
//! It is generated from the handlers: each one carries a `#[utoipa::path(...)]` (method,
//! path, parameters, body, answers, tag, security), and each module's `routes()` registers
//! it with `utoipa_axum::routes!`, which adds the route to the router and the operation to
//! the document from that one attribute. A route added with a plain `.route(...)` would be
//! served but not documented: tests/api_openapi.rs refuses those (see there).
//!
//! The pattern for a new operation (say `POST /v1/calls`): a `#[derive(ToSchema)]` struct for
//! its body next to the handler, a `#[utoipa::path(post, path = "/v1/calls", operation_id =
//! …, tag = "calls", security(("bearer" = [])), request_body = …, responses(…))]` on the
//! handler, the error sets of `error.rs` it can answer (`Invalid`, `NotFound`, `Refused`, …),
//! an answer schema from `schemas.rs`, and the handler added to the path's `routes!(…)`. A
//! handler that reads a `Body` calls `body.only(&[…])` first: the test compares those
//! fields with the body schema's through the 422 it answers to an unknown field.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::schemas::Event;

/// The name of the API key scheme; `security(("bearer" = []))` in `#[utoipa::path]` names it
/// (the attribute takes a literal only).
pub const BEARER: &str = "bearer";

/// The name of the web chat's token scheme (`GET /v1/chat?token=…`), which a visitor's
/// browser holds instead of an API key.
pub const CHAT_TOKEN: &str = "chat_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley",
        description = "The control plane of Parley, a voice-AI engine: accounts and API keys, \
            agents and numbers, live calls, call detail records, billing and leases, webhooks \
            and live events, SMS, contacts and their timelines, and web chat. Every `/v1` \
            operation needs an API key, `Authorization: Bearer <key>`, but the web chat \
            socket, which takes a chat token minted with one; Twilio's webhooks are checked \
            against Twilio's signature."
    ),
    modifiers(&BearerKey),
    components(schemas(ErrorBody, Event)),
    tags(
        (name = "service", description = "Health, readiness, metrics and this document"),
        (name = "accounts", description = "Accounts and their API keys"),
        (name = "billing", description = "Balances, rate plans, top-ups and call leases"),
        (name = "agents", description = "An account's agents: the conversations' settings"),
        (name = "numbers", description = "An account's phone numbers, each answered by an agent"),
        (name = "calls", description = "Calls in progress on this node"),
        (name = "cdrs", description = "Call detail records"),
        (name = "events", description = "Live events as Server-Sent Events"),
        (name = "webhooks", description = "Event subscriptions delivered by signed POST"),
        (name = "messages", description = "SMS sent and received, and when an account may send"),
        (name = "contacts", description = "The people an account talks to, and their timeline on every channel"),
        (name = "chat", description = "Web chat: tokens for visitors, and the chat socket"),
        (name = "webrtc", description = "Browser calls: call tokens for visitors, and WHIP (RFC 9725) signalling"),
        (name = "sms", description = "Twilio's webhooks: messages received and delivery status"),
    )
)]
struct Base;

/// Adds the API key scheme, `Authorization: Bearer pk_<id>_<secret>`, and the web chat's
/// token.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, doc: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("pk_<id>_<secret>")
            .description(Some(
                "An API key: `Authorization: Bearer <key>`. The operator's first admin key is \
                 printed at Parley's first start (or set with `api.admin_key`); \
                 `POST /v1/accounts/{id}/keys` makes more, scoped `read`, `write` or `admin`.",
            ))
            .build();
        let chat = ApiKeyValue::with_description(
            "token",
            "A web chat token from `POST /v1/chat/tokens`, in the query: `/v1/chat?token=pct_…`.",
        );
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
        components.add_security_scheme(CHAT_TOKEN, SecurityScheme::ApiKey(ApiKey::Query(chat)));
    }
}

/// The document's start: info, tags, the security scheme and the shared schemas. The
/// operations are added as the routes are registered (`super::documented`).
pub fn base() -> Document {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The whole document.
pub fn document() -> Document {
    super::documented().into_openapi()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
