//! `/v1/calls`: the calls in progress (every node's with `redis.url`, else this node's), one
//! of them, hanging one up (on the node that holds it), and placing a call through a
//! configured trunk.

use axum::extract::{Path, State};

use super::query::Query;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::error::{
    ApiError, BadGateway, Forbidden, InsufficientFunds, Invalid, NotFound, Refused, TooManyCalls,
};
use super::schemas;
use super::ApiState;
use crate::call::originate::{Originate, OriginateError};
use crate::store::accounts::Scope;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, originate))
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
    Ok(Json(visible(&state, &auth, &id, Scope::Read).await?))
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
    let call = visible(&state, &auth, &id, Scope::Write).await?;
    if !state.calls.cluster_hang_up(&id).await {
        return Err(ApiError::not_found("call"));
    }
    Ok((StatusCode::ACCEPTED, Json(call)))
}

/// `POST /v1/calls`
#[derive(ToSchema)]
pub struct NewCall {
    /// The number to call, E.164 (any spelling: `+1 (555) 123-4567`).
    pub to: String,
    /// The account's agent that speaks (default: the configured default agent).
    pub agent_id: Option<String>,
    /// The trunk (`sip.trunks`) by name; default: the only one configured.
    pub trunk: Option<String>,
    /// The caller ID, E.164 (default: the trunk's `from`).
    pub from: Option<String>,
    /// The account that pays (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

/// Places a call through a configured trunk; the agent speaks once the callee answers. The
/// call holds a billing lease from the start (402 without credit) and is listed at once
/// (`dialing`, then `ringing`, `answered`); its record follows it as for any call.
#[utoipa::path(
    post,
    path = "/v1/calls",
    operation_id = "originate_call",
    tag = "calls",
    security(("bearer" = [])),
    request_body = NewCall,
    responses(
        (status = 201, description = "The call, dialing", body = schemas::LiveCall),
        Invalid, InsufficientFunds, Forbidden, NotFound, TooManyCalls, BadGateway, Refused,
    ),
)]
async fn originate(
    State(state): State<ApiState>,
    auth: Auth,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["to", "agent_id", "trunk", "from", "account_id"])?;
    let account = body
        .string("account_id")?
        .unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Write, "account")?;
    let request = Originate {
        account_id: account,
        to: body.required_string("to")?,
        from: body.string("from")?,
        trunk: body.string("trunk")?,
        agent_id: body.string("agent_id")?,
    };
    let call = state
        .originator
        .originate(request)
        .await
        .map_err(|e| match e {
            OriginateError::Field(field, why) => ApiError::field(field, why),
            OriginateError::NoCredit => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "the account has no credit for a call",
            ),
            e @ OriginateError::CallLimit(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "call_limit", e.to_string())
            }
            OriginateError::Unreachable(why) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "trunk_unreachable", why)
            }
            OriginateError::Busy(why) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", why)
            }
            OriginateError::Store(e) => e.into(),
        })?;
    Ok((StatusCode::CREATED, Json(json!(call))))
}
