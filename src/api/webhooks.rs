//! `/v1/webhooks`: subscriptions to an account's events, delivered by POST with an
//! HMAC-SHA256 signature (`Parley-Signature: t=…,v1=…` over `"<t>.<body>"`), and the log of
//! each subscription's deliveries.

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
use crate::store::random_id;

/// The event types a subscription may name.
const EVENT_TYPES: &[&str] = &[
    "*",
    "call.started",
    "call.answered",
    "call.ended",
    "turn.completed",
    "lease.final_units",
    "sms.received",
    "sms.status",
    "chat.message",
];

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove))
        .routes(routes!(deliveries))
}

/// `POST /v1/webhooks`
#[derive(ToSchema)]
pub struct NewWebhook {
    /// Where events are POSTed: `http://` or `https://`.
    pub url: String,
    /// The event types to deliver (default all): `*`, `call.started`, `call.answered`,
    /// `call.ended`, `turn.completed`, `lease.final_units`, `sms.received`, `sms.status`,
    /// `chat.message`.
    pub events: Option<Vec<String>>,
    /// The signing key, 16 characters or more (default: one is made and shown once).
    pub secret: Option<String>,
    /// The account (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

/// Subscribes a URL to the account's events (an admin key). The answer's `secret` is the
/// only time it is shown.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = NewWebhook,
    responses(
        (status = 201, description = "The subscription, with its secret", body = schemas::CreatedWebhook),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
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

/// The account's subscriptions.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The subscriptions", body = schemas::WebhookList),
        Refused,
    ),
)]
async fn list(State(state): State<ApiState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let account = auth.0.account_id.clone();
    auth.on_account(&account, Scope::Read, "account")?;
    Ok(Json(
        json!({ "data": state.store.webhooks(&account).await? }),
    ))
}

/// Ends a subscription (an admin key).
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        Forbidden, NotFound, Refused,
    ),
)]
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

/// A subscription's deliveries, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "list_deliveries",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The latest 100 deliveries (none for an unknown id)", body = schemas::DeliveryList),
        Refused,
    ),
)]
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
