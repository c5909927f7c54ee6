//! `/v1/webhooks`: subscriptions to an account's events, delivered by POST with an
//! HMAC-SHA256 signature (`Parley-Signature: t=…,v1=…` over `"<t>.<body>"`), and the log of
//! each subscription's deliveries.

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
use crate::store::random_id;

/// The event types a subscription may name.
const EVENT_TYPES: &[&str] = &[
    "*",
    "call.started",
    "call.answered",
    "call.ended",
    "turn.completed",
    "lease.final_units",
];

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", delete(remove))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
}

async fn create(
    State(state): State<ApiState>,
    auth: Auth,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["url", "events", "secret", "account_id"])?;
    let account = body
        .string("account_id")?
        .unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Admin, "account")?;
    let url = body.required_string("url")?;
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| ApiError::field("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::field("url", "must be http:// or https://"));
    }
    let events = match body.0.get("events") {
        None | Some(Value::Null) => vec!["*".to_string()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if EVENT_TYPES.contains(&s) => Ok(s.to_string()),
                _ => Err(ApiError::field(
                    "events",
                    format!("{v} is not one of {}", EVENT_TYPES.join(", ")),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::field("events", "must be a non-empty list")),
    };
    let secret = match body.string("secret")? {
        Some(s) if s.len() < 16 => return Err(ApiError::field("secret", "at least 16 characters")),
        Some(s) => s,
        None => random_id("whsec_", 32),
    };
    let hook = state
        .store
        .create_webhook(&account, &url, &events, &secret)
        .await?;
    let mut out = json!(hook);
    // The only time the secret is shown.
    out["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(State(state): State<ApiState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let account = auth.0.account_id.clone();
    auth.on_account(&account, Scope::Read, "account")?;
    Ok(Json(
        json!({ "data": state.store.webhooks(&account).await? }),
    ))
}

async fn remove(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let account = auth.0.account_id.clone();
    auth.on_account(&account, Scope::Admin, "webhook")?;
    state.store.delete_webhook(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deliveries(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = auth.0.account_id.clone();
    auth.on_account(&account, Scope::Read, "webhook")?;
    Ok(Json(
        json!({ "data": state.store.deliveries(&account, &id).await? }),
    ))
}
