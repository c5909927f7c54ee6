//! `/v1/accounts` and their API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Auth;
use super::body::Body;
use super::error::ApiError;
use super::ApiState;
use crate::store::accounts::Scope;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/accounts", get(list_accounts).post(create_account))
        .route("/v1/accounts/{id}", get(get_account).patch(update_account))
        .route("/v1/accounts/{id}/keys", get(list_keys).post(create_key))
        .route("/v1/accounts/{id}/keys/{key_id}", delete(revoke_key))
}

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

async fn list_accounts(State(state): State<ApiState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let accounts = if auth.operator_admin().is_ok() {
        state.store.accounts().await?
    } else {
        vec![state.store.account(&auth.0.account_id).await?]
    };
    Ok(Json(json!({ "data": accounts })))
}

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

/// `PATCH /v1/accounts/{id}` `{"name", "max_concurrent_calls"}` (the operator's admin keys):
/// fields left out stay as they are; `"max_concurrent_calls": null` removes the limit.
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

async fn list_keys(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Admin, "account")?;
    Ok(Json(json!({ "data": state.store.keys(&id).await? })))
}

async fn revoke_key(
    State(state): State<ApiState>,
    auth: Auth,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Admin, "account")?;
    Ok(Json(json!(state.store.revoke_key(&id, &key_id).await?)))
}
