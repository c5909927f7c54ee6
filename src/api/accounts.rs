//! `/v1/accounts` and their API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::error::{ApiError, Forbidden, Invalid, NotFound, Refused};
use super::schemas;
use super::ApiState;
use crate::store::accounts::Scope;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, update_account))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// `POST /v1/accounts`
#[derive(ToSchema)]
pub struct NewAccount {
    pub name: String,
}

/// `POST /v1/accounts/{id}/keys`
#[derive(ToSchema)]
pub struct NewKey {
    /// A label (default `key`).
    pub name: Option<String>,
    /// Default `read`.
    pub scope: Option<schemas::Scope>,
}

/// Makes an account (the operator's admin keys only).
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = NewAccount,
    responses(
        (status = 201, description = "The new account", body = schemas::Account),
        Invalid, Forbidden, Refused,
    ),
)]
async fn create_account(
    State(state): State<ApiState>,
    auth: Auth,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.operator_admin()?;
    body.only(&["name"])?;
    let name = body.required_string("name")?;
    let account = state.store.create_account(&name).await?;
    Ok((StatusCode::CREATED, Json(json!(account))))
}

/// Every account for the operator's admin keys; the key's own account for any other.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The accounts", body = schemas::AccountList),
        Refused,
    ),
)]
async fn list_accounts(State(state): State<ApiState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let accounts = if auth.operator_admin().is_ok() {
        state.store.accounts().await?
    } else {
        vec![state.store.account(&auth.0.account_id).await?]
    };
    Ok(Json(json!({ "data": accounts })))
}

/// One account.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account", body = schemas::Account),
        NotFound, Refused,
    ),
)]
async fn get_account(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Read, "account")?;
    Ok(Json(json!(state.store.account(&id).await?)))
}

/// Highest `max_concurrent_calls` accepted.
const MAX_CALL_LIMIT: i64 = 1_000_000;

/// `PATCH /v1/accounts/{id}`
#[derive(ToSchema)]
pub struct AccountChange {
    pub name: Option<String>,
    /// Calls the account may have in progress at once, on all nodes (0 to 1,000,000; calls
    /// beyond it get 486 Busy Here); null removes the limit.
    pub max_concurrent_calls: Option<i64>,
}

/// Renames an account or sets its concurrent-call limit (the operator's admin keys): fields
/// left out stay as they are; `"max_concurrent_calls": null` removes the limit.
#[utoipa::path(
    patch,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body = AccountChange,
    responses(
        (status = 200, description = "The account", body = schemas::Account),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn update_account(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    auth.operator_admin()?;
    body.only(&["name", "max_concurrent_calls"])?;
    let name = body.string("name")?;
    let field = "max_concurrent_calls";
    let limit = match body.0.get(field) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => match body.int(field)? {
            Some(n) if (0..=MAX_CALL_LIMIT).contains(&n) => Some(Some(n)),
            _ => {
                return Err(ApiError::field(
                    field,
                    format!("must be an integer from 0 to {MAX_CALL_LIMIT}, or null for no limit"),
                ))
            }
        },
    };
    let account = state
        .store
        .update_account(&id, name.as_deref(), limit)
        .await?;
    Ok(Json(json!(account)))
}

/// Makes an API key for the account (an admin key of it, or the operator's). The answer's
/// `key` is the only time the key is shown.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/keys",
    tag = "accounts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body = NewKey,
    responses(
        (status = 201, description = "The new key, with the key itself", body = schemas::CreatedKey),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn create_key(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.on_account(&id, Scope::Admin, "account")?;
    body.only(&["name", "scope"])?;
    let name = body.string("name")?.unwrap_or_else(|| "key".into());
    let scope = match body.string("scope")? {
        None => Scope::Read,
        Some(s) => Scope::parse(&s)
            .ok_or_else(|| ApiError::field("scope", "must be admin, write or read"))?,
    };
    let (listed, key) = state.store.create_key(&id, &name, scope).await?;
    let mut out = json!(listed);
    // The only time the key itself is shown.
    out["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(out)))
}

/// The account's keys (never the secrets).
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/keys",
    tag = "accounts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The keys", body = schemas::ApiKeyList),
        Forbidden, NotFound, Refused,
    ),
)]
async fn list_keys(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Admin, "account")?;
    Ok(Json(json!({ "data": state.store.keys(&id).await? })))
}

/// Revokes a key: it stops working at once on this node, within 2 s on the others.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{id}/keys/{key_id}",
    tag = "accounts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The account's id"),
        ("key_id" = String, Path, description = "The key's id"),
    ),
    responses(
        (status = 200, description = "The revoked key", body = schemas::ApiKey),
        Forbidden, NotFound, Refused,
    ),
)]
async fn revoke_key(
    State(state): State<ApiState>,
    auth: Auth,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Admin, "account")?;
    Ok(Json(json!(state.store.revoke_key(&id, &key_id).await?)))
}
