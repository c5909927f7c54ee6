//! `/v1/accounts/{id}/messaging`: when an account's SMS go out. Its business hours (in its
//! own time zone; the messages the business starts wait for them, the agent's replies to
//! someone who just wrote do not) and its rate (`sms_per_minute`, else `sms.per_minute` of
//! the config file).

use axum::extract::{Path, State};
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
use crate::channels::sms::hours::BusinessHours;
use crate::store::accounts::Scope;
use crate::store::now_ms;

/// The highest `sms_per_minute` accepted (as `sms.per_minute`).
const MAX_PER_MINUTE: i64 = 100_000;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

/// `PUT /v1/accounts/{id}/messaging`: a field left out keeps its value, null unsets it.
#[derive(ToSchema)]
pub struct MessagingChange {
    /// When the account's SMS may go out; null: at any time.
    pub business_hours: Option<schemas::BusinessHours>,
    /// SMS the account may send per minute, 1 to 100000; null: `sms.per_minute`. Only the
    /// operator's admin key may set it.
    pub sms_per_minute: Option<i64>,
}

/// The stored settings as answered: both fields, null when unset.
fn answer(stored: &Value) -> Value {
    json!({
        "business_hours": stored.get("business_hours").cloned().unwrap_or(Value::Null),
        "sms_per_minute": stored.get("sms_per_minute").cloned().unwrap_or(Value::Null),
    })
}

/// The account's messaging settings.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/messaging",
    operation_id = "get_messaging",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The settings", body = schemas::MessagingSettings),
        NotFound, Refused,
    ),
)]
async fn get_settings(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Read, "account")?;
    Ok(Json(answer(&state.store.messaging_settings(&id).await?)))
}

/// Sets the account's business hours and (operator only) its SMS rate; a field left out
/// keeps its value.
/// Messages already waiting follow the new settings when they fall due.
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/messaging",
    operation_id = "set_messaging",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body = MessagingChange,
    responses(
        (status = 200, description = "The settings", body = schemas::MessagingSettings),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn put_settings(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Write, "account")?;
    body.only(&["business_hours", "sms_per_minute"])?;
    // The rate protects the operator's Twilio account (and its sender reputation) from any
    // one tenant, so only the operator changes it.
    if body.0.contains_key("sms_per_minute") {
        auth.operator_admin()?;
    }
    let stored = state.store.messaging_settings(&id).await?;
    let kept = |field: &str| stored.get(field).cloned().unwrap_or(Value::Null);
    let hours = match body.0.get("business_hours") {
        None => kept("business_hours"),
        Some(Value::Null) => Value::Null,
        Some(doc) => {
            let hours = BusinessHours::from_json(doc).map_err(|e| {
                let field = match e.field() {
                    "$" => "business_hours".to_string(),
                    path => format!("business_hours.{path}"),
                };
                ApiError::field(&field, e.to_string())
            })?;
            // Hours that never open would hold every message forever.
            if hours.next_open(now_ms()).is_none() {
                return Err(ApiError::field(
                    "business_hours.weekly",
                    "no day has open hours (null: no business hours, send at any time)",
                ));
            }
            hours.to_json()
        }
    };
    let per_minute = match body.int("sms_per_minute")? {
        None if body.0.contains_key("sms_per_minute") => Value::Null,
        None => kept("sms_per_minute"),
        Some(n) if (1..=MAX_PER_MINUTE).contains(&n) => json!(n),
        Some(_) => {
            return Err(ApiError::field(
                "sms_per_minute",
                format!("must be 1 to {MAX_PER_MINUTE}, or null for the server's default"),
            ))
        }
    };
    let settings = json!({"business_hours": hours, "sms_per_minute": per_minute});
    state.store.set_messaging_settings(&id, &settings).await?;
    Ok(Json(answer(&settings)))
}
