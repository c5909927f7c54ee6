//! `GET /v1/events`: the key's account's events as Server-Sent Events (`event:` the type,
//! `id:` the sequence number, `data:` the JSON event), with a keep-alive comment every 15 s.
//! The operator's admin keys get every account's. A listener that falls behind gets an
//! `event: lagged` with how many it missed, then goes on.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::error::{ApiError, Refused};
use super::ApiState;
use crate::store::accounts::Scope;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// The key's account's events, live (every account's for the operator's admin keys).
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "stream_events",
    tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-Sent Events: `event:` the type, `id:` the sequence number, `data:` the event as JSON (the `Event` schema); a comment every 15 s keeps the stream alive; `event: lagged` with the number of events missed when the listener fell behind", content_type = "text/event-stream", body = String),
        Refused,
    ),
)]
async fn stream(
    State(state): State<ApiState>,
    auth: Auth,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let account = auth.0.account_id.clone();
    auth.on_account(&account, Scope::Read, "account")?;
    let all = auth.operator_admin().is_ok();
    let rx = state.events.subscribe();
    let events = futures_util::stream::unfold(rx, move |mut rx| {
        let account = account.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(e) if all || e.account_id == account => {
                        let sse = Event::default()
                            .event(e.kind)
                            .id(e.seq.to_string())
                            .json_data(&*e)
                            .unwrap_or_default();
                        return Some((Ok(sse), rx));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        let sse = Event::default().event("lagged").data(n.to_string());
                        return Some((Ok(sse), rx));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
