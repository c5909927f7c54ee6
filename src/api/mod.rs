//! The HTTP control plane: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, and the `/v1`
//! API (accounts and API keys, billing and leases, agents and numbers, calls, call records,
//! events, webhooks, SMS, contacts and their timelines, web chat tokens), every `/v1` route
//! behind an API key but the web chat socket (behind a chat token); and Twilio's webhooks
//! (behind Twilio's signature).
//!
//! A route is added with a handler carrying `#[utoipa::path(...)]` and one line in its
//! module's `routes()`: `.routes(routes!(handler))` (handlers on the same path together:
//! `routes!(list, create)`). That registers the route and its entry in `/openapi.json` at
//! once; see `openapi`.

pub mod accounts;
pub mod auth;
pub mod billing;
pub mod body;
pub mod call_page;
pub mod calls;
pub mod cdrs;
pub mod chat;
pub mod contacts;
pub mod directory;
pub mod error;
pub mod events;
pub mod messages;
pub mod messaging;
pub mod openapi;
pub mod ops_page;
pub mod query;
pub mod schemas;
pub mod twilio;
pub mod webhooks;
pub mod webrtc;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use parley_media::engine::EngineStats;

use crate::metrics::Metrics;
use crate::sip::runtime::SipStats;
use crate::store::Store;

#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    pub sip: Arc<SipStats>,
    pub engine: Arc<EngineStats>,
    pub store: Store,
    /// The calls in progress (every node's, with Redis).
    pub calls: crate::call::registry::LiveCalls,
    pub events: crate::events::EventBus,
    /// Set when the node is shutting down (`/readyz` answers "draining").
    pub drain: crate::drain::Drain,
    /// Places the calls `POST /v1/calls` asks for.
    pub originator: crate::call::originate::Originator,
    /// SMS, web chat and contacts' memory.
    pub channels: crate::channels::Channels,
    /// Browser calls (the WHIP endpoint).
    pub browser_calls: crate::call::webrtc::BrowserCalls,
}

/// Every route: the documented API, the ops page (a page for browsers, outside the API
/// document), and a JSON "route not found" for anything else.
pub fn router(state: ApiState) -> Router {
    let (api, _) = documented().split_for_parts();
    Router::new()
        .merge(api)
        .merge(ops_page::routes())
        .merge(call_page::routes())
        .fallback(|| async { error::ApiError::not_found("route") })
        .with_state(state)
}

/// The API's routes, each registered together with its OpenAPI operation.
pub fn documented() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::serve))
        .merge(accounts::routes())
        .merge(billing::routes())
        .merge(directory::routes())
        .merge(cdrs::routes())
        .merge(calls::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
        .merge(messages::routes())
        .merge(messaging::routes())
        .merge(contacts::routes())
        .merge(chat::routes())
        .merge(webrtc::routes())
        .merge(twilio::routes())
}

/// Alive: the process answers HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)),
)]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Media workers that have not finished a tick for this long are taken as stuck.
const MEDIA_STALL_MS: u64 = 1_000;

/// Ready to take calls and requests: not draining, the media workers tick and the store
/// answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "`ready`", content_type = "text/plain", body = String),
        (status = 503, description = "`draining`, `media workers stalled` or `store unreachable`", content_type = "text/plain", body = String),
    ),
)]
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let last = state
        .engine
        .last_tick_unix_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let now = crate::store::now_ms() as u64;
    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    if state.drain.draining() {
        (unavailable, "draining\n")
    } else if now.saturating_sub(last) > MEDIA_STALL_MS {
        (unavailable, "media workers stalled\n")
    } else if !state.store.ping().await {
        (unavailable, "store unreachable\n")
    } else {
        (axum::http::StatusCode::OK, "ready\n")
    }
}

/// Prometheus metrics: calls, SIP, media, providers, billing.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(Some(&state.sip), Some(&state.engine)),
    )
}
