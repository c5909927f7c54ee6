//! `/v1/contacts`: the people an account talks to (a phone number, or the id the business
//! gives a web chat visitor), the language each writes and speaks, and their timeline:
//! everything said with them on every channel (calls' summaries, SMS, web chat), which the
//! agent recalls at the start of each conversation.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::directory::target;
use super::error::{ApiError, Forbidden, Invalid, InvalidQuery, NotFound, Refused};
use super::query::{cursor, page_limit, parse_cursor, Query};
use super::schemas;
use super::ApiState;
use crate::memory::language::Language;
use crate::store::accounts::Scope;
use crate::store::contacts::{Contact, WEB_PREFIX};
use crate::store::directory::e164;

/// The confidence of a language a person set: detection never replaces it
/// (`memory::Memory::learn_language`).
const SET_BY_A_PERSON: f64 = 1.0;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, update))
        .routes(routes!(timeline))
}

/// `PATCH /v1/contacts/{id}`
#[derive(ToSchema)]
pub struct ContactChange {
    /// The language to answer them in, kept whatever they write next; null: unknown again,
    /// detected from what they write.
    #[schema(required = true)]
    pub language: Option<schemas::LanguageCode>,
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// The account (default: the key's; another needs the operator's admin key).
    account_id: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AccountQuery {
    /// The account (default: the key's; another needs the operator's admin key).
    account_id: Option<String>,
}

/// The contact named in the path: its id (`ctc_…`), its number (any E.164 spelling) or its
/// web address (`web:<id>`), the last two URL-encoded.
async fn named(state: &ApiState, account: &str, raw: &str) -> Result<Contact, ApiError> {
    let key = if raw.starts_with("ctc_") || raw.starts_with(WEB_PREFIX) {
        raw.to_string()
    } else {
        e164(raw).unwrap_or_else(|| raw.to_string())
    };
    Ok(state.store.find_contact(account, &key).await?)
}

/// The account's contacts, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/contacts",
    operation_id = "list_contacts",
    tag = "contacts",
    security(("bearer" = [])),
    params(Page),
    responses(
        (status = 200, description = "A page of contacts", body = schemas::ContactPage),
        InvalidQuery, NotFound, Refused,
    ),
)]
async fn list(
    State(state): State<ApiState>,
    auth: Auth,
    Query(q): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(q.limit)?;
    let account = target(&auth, q.account_id, Scope::Read)?;
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let page = state.store.contacts(&account, before, limit).await?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|c| cursor(c.created_at, &c.id)))
        .flatten();
    Ok(Json(json!({ "data": page, "next_cursor": next })))
}

/// One contact.
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}",
    operation_id = "get_contact",
    tag = "contacts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The contact's id (`ctc_…`), number (`%2B15551230001`) or web address (`web:visitor-42`)"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "The contact", body = schemas::Contact),
        NotFound, Refused,
    ),
)]
async fn get_one(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    let account = q.account_id.unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Read, "contact")?;
    Ok(Json(json!(named(&state, &account, &id).await?)))
}

/// Sets the language the agent answers the contact in, on every channel. Set this way it
/// stays (confidence 1) whatever language they write next; null forgets it, and the next
/// message's language is detected again.
#[utoipa::path(
    patch,
    path = "/v1/contacts/{id}",
    operation_id = "update_contact",
    tag = "contacts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The contact's id (`ctc_…`), number or web address"),
        AccountQuery,
    ),
    request_body = ContactChange,
    responses(
        (status = 200, description = "The contact", body = schemas::Contact),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn update(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let account = q.account_id.unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Write, "contact")?;
    body.only(&["language"])?;
    let language = match body.0.get("language") {
        None => {
            return Err(ApiError::field(
                "language",
                "is required: en, es, pt, or null to detect it again",
            ))
        }
        Some(Value::Null) => None,
        Some(Value::String(code)) => Some(
            Language::ALL
                .into_iter()
                .find(|l| l.code() == code)
                .ok_or_else(|| {
                    ApiError::field("language", format!("{code:?} is not one of en, es, pt"))
                })?,
        ),
        Some(other) => {
            return Err(ApiError::field(
                "language",
                format!("must be en, es, pt or null, got {other}"),
            ))
        }
    };
    let contact = named(&state, &account, &id).await?;
    let confidence = language.map(|_| SET_BY_A_PERSON);
    state
        .store
        .set_contact_language(&contact.id, language.map(Language::code), confidence)
        .await?;
    Ok(Json(json!(
        state.store.contact(&account, &contact.id).await?
    )))
}

/// What was said and done with the contact on every channel, newest first, a page at a
/// time: calls (their summary, with the transcript in `detail`), SMS and web chat lines.
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}/timeline",
    operation_id = "contact_timeline",
    tag = "contacts",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The contact's id (`ctc_…`), number or web address"),
        Page,
    ),
    responses(
        (status = 200, description = "A page of the timeline", body = schemas::TimelinePage),
        InvalidQuery, NotFound, Refused,
    ),
)]
async fn timeline(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(q.limit)?;
    let before = match q.cursor.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| ApiError::field("cursor", "not a cursor this API returned"))?,
        ),
    };
    let account = q.account_id.unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Read, "contact")?;
    let contact = named(&state, &account, &id).await?;
    let page = state.store.timeline(&contact.id, before, limit).await?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(json!({ "data": page, "next_cursor": next })))
}
