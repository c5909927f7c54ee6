//! The HTTP control plane. For now: `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use parley_media::engine::EngineStats;

use crate::metrics::Metrics;
use crate::sip::runtime::SipStats;

#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    pub sip: Arc<SipStats>,
    pub engine: Arc<EngineStats>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(Some(&state.sip), Some(&state.engine)),
    )
}
