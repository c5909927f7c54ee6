//! Billing over HTTP: balances, rate plans and top-ups per account, and the heartbeat leases
//! (`/v1/leases`: reserve, renew, release) that a call engine, Parley's own or another,
//! holds while a call runs. The mutating calls honour an `Idempotency-Key` header: a retry
//! with the same key gets the first answer instead of a second charge.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Auth;
use super::body::Body;
use super::error::ApiError;
use super::ApiState;
use crate::store::accounts::Scope;
use crate::store::billing::{Grant, LeaseRequest, Plan};
use crate::store::directory::Owned;

/// Seconds a reserve or renew asks for when the body does not say.
const DEFAULT_SECONDS: i64 = 60;
/// How long a grant stays valid without a renewal, when the body does not say: three
/// default heartbeats.
const DEFAULT_VALIDITY_S: i64 = 90;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/accounts/{id}/balance", get(balance))
        .route("/v1/accounts/{id}/plan", put(set_plan))
        .route("/v1/accounts/{id}/topups", post(topup))
        .route("/v1/leases", post(reserve))
        .route("/v1/leases/{id}", get(get_lease))
        .route("/v1/leases/{id}/renew", post(renew))
        .route("/v1/leases/{id}/release", post(release))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

async fn balance(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.on_account(&id, Scope::Read, "account")?;
    Ok(Json(json!(state.store.balance(&id).await?)))
}

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
