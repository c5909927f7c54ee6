//! Billing over HTTP: balances, rate plans and top-ups per account, and the heartbeat leases
//! (`/v1/leases`: reserve, renew, release) that a call engine, Parley's own or another,
//! holds while a call runs. The mutating calls honour an `Idempotency-Key` header: a retry
//! with the same key gets the first answer instead of a second charge.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::error::{ApiError, Conflict, Forbidden, InsufficientFunds, Invalid, NotFound, Refused};
use super::schemas;
use super::ApiState;
use crate::store::accounts::Scope;
use crate::store::billing::{Grant, LeaseRequest, Plan};
use crate::store::directory::Owned;

/// Seconds a reserve or renew asks for when the body does not say.
const DEFAULT_SECONDS: i64 = 60;
/// How long a grant stays valid without a renewal, when the body does not say: three
/// default heartbeats.
const DEFAULT_VALIDITY_S: i64 = 90;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(balance))
        .routes(routes!(set_plan))
        .routes(routes!(topup))
        .routes(routes!(reserve))
        .routes(routes!(get_lease))
        .routes(routes!(renew))
        .routes(routes!(release))
}

/// `PUT /v1/accounts/{id}/plan`: the fields left out keep their value.
#[derive(ToSchema)]
pub struct PlanChange {
    /// Micro-units per minute of call.
    pub rate_per_minute: Option<i64>,
    /// Billing increment in seconds, 1 to 3600.
    pub increment_s: Option<i64>,
    /// Free seconds each month.
    pub free_seconds: Option<i64>,
    /// How far below zero the balance may go (micro-units).
    pub overdraft: Option<i64>,
}

/// `POST /v1/accounts/{id}/topups`
#[derive(ToSchema)]
pub struct Topup {
    /// Micro-units, positive.
    pub amount: i64,
}

/// `POST /v1/leases`
#[derive(ToSchema)]
pub struct NewLease {
    /// The account to charge (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
    /// The call it pays for.
    pub call_id: Option<String>,
    /// Seconds wanted (default 60).
    pub seconds: Option<i64>,
    /// How long the grant stays valid without a renewal (default 90).
    pub validity_seconds: Option<i64>,
}

/// `POST /v1/leases/{id}/renew`
#[derive(ToSchema)]
pub struct Renewal {
    /// The call's usage so far, in seconds.
    pub used_seconds: i64,
    /// Seconds wanted beyond the usage so far (default 60).
    pub seconds: Option<i64>,
    /// How long the grant stays valid without a renewal (default 90).
    pub validity_seconds: Option<i64>,
}

/// `POST /v1/leases/{id}/release`
#[derive(ToSchema)]
pub struct Release {
    /// The call's final usage, in seconds.
    pub used_seconds: i64,
}

/// The `Idempotency-Key` header, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 characters: a retry with the same key gets the first answer instead of
    /// being applied twice. A bad key is a 400 (`bad_idempotency_key`).
    #[param(rename = "Idempotency-Key")]
    pub idempotency_key: Option<String>,
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() && s.len() <= 255 => Ok(Some(s.trim().to_string())),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible characters",
            )),
        },
    }
}

/// A non-negative integer field, or `default`.
fn non_negative(body: &Body, field: &str, default: i64) -> Result<i64, ApiError> {
    match body.int(field)? {
        None => Ok(default),
        Some(n) if n >= 0 => Ok(n),
        Some(n) => Err(ApiError::field(
            field,
            format!("must not be negative, got {n}"),
        )),
    }
}

fn grant_json(g: &Grant) -> Value {
    let mut v = json!(g);
    v["final_unit_action"] = json!(if g.lease.final_unit_indication {
        "terminate"
    } else {
        "none"
    });
    v
}

/// The account's money and plan.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/balance",
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The balance", body = schemas::Balance),
        NotFound, Refused,
    ),
)]
async fn balance(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Read, "account")?;
    Ok(Json(json!(state.store.balance(&id).await?)))
}

/// Sets the account's rate plan (the operator's admin keys only).
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/plan",
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The account's id")),
    request_body = PlanChange,
    responses(
        (status = 200, description = "The balance with the new plan", body = schemas::Balance),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn set_plan(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    auth.operator_admin()?;
    body.only(&[
        "rate_per_minute",
        "increment_s",
        "free_seconds",
        "overdraft",
    ])?;
    let current = state.store.balance(&id).await?.plan;
    let plan = Plan {
        rate_per_minute: non_negative(&body, "rate_per_minute", current.rate_per_minute)?,
        increment_s: non_negative(&body, "increment_s", current.increment_s)?,
        free_seconds: non_negative(&body, "free_seconds", current.free_seconds)?,
        overdraft: non_negative(&body, "overdraft", current.overdraft)?,
    };
    if !(1..=3600).contains(&plan.increment_s) {
        return Err(ApiError::field("increment_s", "must be 1 to 3600 seconds"));
    }
    Ok(Json(json!(state.store.set_plan(&id, plan).await?)))
}

/// Adds money to the account (the operator's admin keys only). Honours `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/topups",
    tag = "billing",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The account's id"),
        IdempotencyKey,
    ),
    request_body = Topup,
    responses(
        (status = 201, description = "The balance after the top-up", body = schemas::Balance),
        Invalid, Forbidden, NotFound, Conflict, Refused,
    ),
)]
async fn topup(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.operator_admin()?;
    body.only(&["amount"])?;
    let amount = body
        .int("amount")?
        .ok_or_else(|| ApiError::field("amount", "is required (micro-units)"))?;
    if amount <= 0 {
        return Err(ApiError::field("amount", "must be positive (micro-units)"));
    }
    let key = idempotency_key(&headers)?;
    let balance = state.store.topup(&id, amount, key.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(json!(balance))))
}

/// The `used_seconds` a renewal or release reports (required; negative reads as 0).
fn used_seconds(body: &Body) -> Result<i64, ApiError> {
    let used = body
        .int("used_seconds")?
        .ok_or_else(|| ApiError::field("used_seconds", "is required"))?;
    Ok(used.max(0))
}

/// Opens a lease: holds money for `seconds` of a call. Honours `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/leases",
    tag = "billing",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = NewLease,
    responses(
        (status = 201, description = "The lease and what was granted (possibly fewer seconds than asked, with `final_unit_action: terminate`)", body = schemas::Grant),
        Invalid, InsufficientFunds, Forbidden, NotFound, Conflict, Refused,
    ),
)]
async fn reserve(
    State(state): State<ApiState>,
    auth: Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["account_id", "call_id", "seconds", "validity_seconds"])?;
    let account = body
        .string("account_id")?
        .unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Write, "account")?;
    let req = LeaseRequest {
        call_id: body.string("call_id")?,
        seconds: non_negative(&body, "seconds", DEFAULT_SECONDS)?,
        validity_s: non_negative(&body, "validity_seconds", DEFAULT_VALIDITY_S)?.max(1),
    };
    let key = idempotency_key(&headers)?;
    let grant = state.store.reserve(&account, &req, key.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(grant_json(&grant))))
}

/// Reports a lease's usage and asks for more seconds (the heartbeat). Honours
/// `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/leases/{id}/renew",
    tag = "billing",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The lease's id"),
        IdempotencyKey,
    ),
    request_body = Renewal,
    responses(
        (status = 200, description = "The lease and what was granted", body = schemas::Grant),
        Invalid, InsufficientFunds, Forbidden, NotFound, Conflict, Refused,
    ),
)]
async fn renew(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    body.only(&["used_seconds", "seconds", "validity_seconds"])?;
    let account = auth
        .owner_of(&state.store, Owned::Lease, &id, Scope::Write, "lease")
        .await?;
    let used = used_seconds(&body)?;
    let req = LeaseRequest {
        call_id: None,
        seconds: non_negative(&body, "seconds", DEFAULT_SECONDS)?,
        validity_s: non_negative(&body, "validity_seconds", DEFAULT_VALIDITY_S)?.max(1),
    };
    let key = idempotency_key(&headers)?;
    let grant = state
        .store
        .renew(&account, &id, used, &req, key.as_deref())
        .await?;
    Ok(Json(grant_json(&grant)))
}

/// Settles a lease at its final usage and returns the rest. Honours `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/leases/{id}/release",
    tag = "billing",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The lease's id"),
        IdempotencyKey,
    ),
    request_body = Release,
    responses(
        (status = 200, description = "The settled lease", body = schemas::Lease),
        Invalid, Forbidden, NotFound, Conflict, Refused,
    ),
)]
async fn release(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    body.only(&["used_seconds"])?;
    let account = auth
        .owner_of(&state.store, Owned::Lease, &id, Scope::Write, "lease")
        .await?;
    let used = used_seconds(&body)?;
    let key = idempotency_key(&headers)?;
    let lease = state
        .store
        .release(&account, &id, used, key.as_deref())
        .await?;
    Ok(Json(json!(lease)))
}

/// One lease.
#[utoipa::path(
    get,
    path = "/v1/leases/{id}",
    tag = "billing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The lease's id")),
    responses(
        (status = 200, description = "The lease", body = schemas::Lease),
        NotFound, Refused,
    ),
)]
async fn get_lease(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = auth
        .owner_of(&state.store, Owned::Lease, &id, Scope::Read, "lease")
        .await?;
    Ok(Json(json!(state.store.lease(&account, &id).await?)))
}
