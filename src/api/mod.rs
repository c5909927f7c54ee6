//! The HTTP control plane: `/healthz`, `/readyz`, `/metrics`, and the `/v1` API (accounts
//! and API keys, balances and billing leases so far), every `/v1` route behind an API key.

pub mod accounts;
pub mod auth;
pub mod billing;
pub mod body;
pub mod calls;
pub mod cdrs;
pub mod directory;
pub mod error;
pub mod events;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

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
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(accounts::routes())
        .merge(billing::routes())
        .merge(directory::routes())
        .merge(cdrs::routes())
        .merge(calls::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
        .fallback(|| async { error::ApiError::not_found("route") })
        .with_state(state)
}

/// Media workers that have not finished a tick for this long are taken as stuck.
const MEDIA_STALL_MS: u64 = 1_000;

/// Ready to take calls and requests: the media workers tick and the store answers.
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let last = state
        .engine
        .last_tick_unix_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let now = crate::store::now_ms() as u64;
    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    if now.saturating_sub(last) > MEDIA_STALL_MS {
        (unavailable, "media workers stalled\n")
    } else if !state.store.ping().await {
        (unavailable, "store unreachable\n")
    } else {
        (axum::http::StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(Some(&state.sip), Some(&state.engine)),
    )
}
