//! `/v1/calls`: the calls in progress on this node, one of them, and hanging one up.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::error::{ApiError, Forbidden, NotFound, Refused};
use super::schemas;
use super::ApiState;
use crate::store::accounts::Scope;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(hang_up))
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AccountQuery {
    /// Only this account's calls (default: the key's; the operator's admin keys see every
    /// account's unless they name one).
    account_id: Option<String>,
}

/// The calls in progress on this node.
#[utoipa::path(
    get,
    path = "/v1/calls",
    operation_id = "list_calls",
    tag = "calls",
    security(("bearer" = [])),
    params(AccountQuery),
    responses(
        (status = 200, description = "The live calls", body = schemas::LiveCallList),
        NotFound, Refused,
    ),
)]
async fn list(
    State(state): State<ApiState>,
    auth: Auth,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    let calls = match (q.account_id, auth.operator_admin().is_ok()) {
        // The operator's admin keys see every account's calls unless they name one.
        (None, true) => state.calls.list(None),
        (named, _) => {
            let account = named.unwrap_or_else(|| auth.0.account_id.clone());
            auth.on_account(&account, Scope::Read, "account")?;
            state.calls.list(Some(&account))
        }
    };
    Ok(Json(json!({ "data": calls })))
}

/// The live call `id`, as the key may see it.
fn visible(state: &ApiState, auth: &Auth, id: &str, scope: Scope) -> Result<Value, ApiError> {
    let call = state
        .calls
        .get(id)
        .ok_or_else(|| ApiError::not_found("call"))?;
    auth.on_account(&call.account_id, scope, "call")?;
    Ok(json!(call))
}

/// One call in progress.
#[utoipa::path(
    get,
    path = "/v1/calls/{id}",
    operation_id = "get_call",
    tag = "calls",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The call's id (its call record's id)")),
    responses(
        (status = 200, description = "The call", body = schemas::LiveCall),
        NotFound, Refused,
    ),
)]
async fn get_one(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(visible(&state, &auth, &id, Scope::Read)?))
}

/// Hangs up a call in progress: Parley sends BYE.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/hangup",
    operation_id = "hang_up_call",
    tag = "calls",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 202, description = "Hanging up; the call as it was", body = schemas::LiveCall),
        Forbidden, NotFound, Refused,
    ),
)]
async fn hang_up(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let call = visible(&state, &auth, &id, Scope::Write)?;
    if !state.calls.hang_up(&id) {
        return Err(ApiError::not_found("call"));
    }
    Ok((StatusCode::ACCEPTED, Json(call)))
}
