//! `/v1/calls`: the calls in progress (every node's with `redis.url`, else this node's), one
//! of them, and hanging one up (on the node that holds it).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Auth;
use super::error::ApiError;
use super::ApiState;
use crate::store::accounts::Scope;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/calls", get(list))
        .route("/v1/calls/{id}", get(get_one))
        .route("/v1/calls/{id}/hangup", post(hang_up))
}

#[derive(serde::Deserialize)]
struct AccountQuery {
    account_id: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    auth: Auth,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    let calls = match (q.account_id, auth.operator_admin().is_ok()) {
        // The operator's admin keys see every account's calls unless they name one.
        (None, true) => state.calls.cluster_list(None).await,
        (named, _) => {
            let account = named.unwrap_or_else(|| auth.0.account_id.clone());
            auth.on_account(&account, Scope::Read, "account")?;
            state.calls.cluster_list(Some(&account)).await
        }
    };
    Ok(Json(json!({ "data": calls })))
}

/// The live call `id` (on any node), as the key may see it.
async fn visible(state: &ApiState, auth: &Auth, id: &str, scope: Scope) -> Result<Value, ApiError> {
    let call = state
        .calls
        .cluster_get(id)
        .await
        .ok_or_else(|| ApiError::not_found("call"))?;
    auth.on_account(&call.account_id, scope, "call")?;
    Ok(json!(call))
}

async fn get_one(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(visible(&state, &auth, &id, Scope::Read).await?))
}

async fn hang_up(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let call = visible(&state, &auth, &id, Scope::Write).await?;
    if !state.calls.cluster_hang_up(&id).await {
        return Err(ApiError::not_found("call"));
    }
    Ok((StatusCode::ACCEPTED, Json(call)))
}
