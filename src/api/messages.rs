//! `/v1/messages`: SMS sent from an account's numbers, one at a time or up to 1,000 at once,
//! and the messages sent and received, each with the delivery-status callbacks Twilio made
//! for it. A send is answered once the message is in the outbox (the `messages` table), so
//! nothing accepted is lost; the outbox worker sends it when the account's business hours
//! and rate allow (`channels::sms::outbox`). Sends honour an `Idempotency-Key` header.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::billing::{idempotency_key, IdempotencyKey};
use super::body::Body;
use super::directory::target;
use super::error::{
    ApiError, Conflict, Forbidden, Invalid, InvalidQuery, NotFound, Refused, RefusedSms,
};
use super::query::{cursor, page_limit, parse_cursor, Query};
use super::schemas;
use super::ApiState;
use crate::channels::sms::outbox::{SendRequest, SmsError, Source};
use crate::store::accounts::Scope;
use crate::store::messages::Message;

/// The most recipients one bulk send takes.
pub const MAX_RECIPIENTS: usize = 1_000;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, send))
        .routes(routes!(bulk))
        .routes(routes!(get_one))
}

/// `POST /v1/messages`
#[derive(ToSchema)]
pub struct NewMessage {
    /// The recipient, E.164 (any spelling: `+1 (555) 123-0001`).
    pub to: String,
    /// The text, 1 to 1,600 characters (ten concatenated SMS).
    pub body: String,
    /// One of the account's numbers (default: its first).
    pub from: Option<String>,
    /// The account (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

/// One message of `POST /v1/messages/bulk`'s `messages`.
#[derive(ToSchema)]
pub struct BulkMessage {
    pub to: String,
    pub body: String,
}

/// `POST /v1/messages/bulk`: `to` with one `body` for all, or `messages`, each with its own.
#[derive(ToSchema)]
pub struct BulkMessages {
    /// The recipients (E.164), 1 to 1,000; with `body`.
    pub to: Option<Vec<String>>,
    /// The text sent to every number of `to`.
    pub body: Option<String>,
    /// 1 to 1,000 messages, each to its own number with its own text (instead of `to`).
    pub messages: Option<Vec<BulkMessage>>,
    /// One of the account's numbers (default: its first).
    pub from: Option<String>,
    /// The account (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Filters {
    /// The account (default: the key's; another needs the operator's admin key).
    account_id: Option<String>,
    /// Only the messages with this contact (`ctc_…`).
    contact_id: Option<String>,
    /// Messages per page, 1 to 1000 (default 100).
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

/// What the SMS service's refusals are over HTTP.
fn sms_error(e: SmsError) -> ApiError {
    match e {
        SmsError::NotConfigured => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sms_not_configured",
            "SMS is not configured on this server (sms.twilio_account_sid and \
             sms.twilio_auth_token)",
        ),
        SmsError::Field { field, message } => ApiError::field(field, message),
        SmsError::Store(e) => e.into(),
    }
}

/// Sends an SMS: checked, written to the outbox and answered at once; the message's
/// `status` then follows it (`scheduled` while the account's business hours are closed,
/// `pending` in the outbox, then Twilio's). Honours `Idempotency-Key`: a retry with the same
/// key gets the message the first request made (200), and sends nothing again.
#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "send_message",
    tag = "messages",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = NewMessage,
    responses(
        (status = 201, description = "The message, in the outbox", body = schemas::Message),
        (status = 200, description = "The message this `Idempotency-Key` made before", body = schemas::Message),
        Invalid, Forbidden, NotFound, Conflict, RefusedSms,
    ),
)]
async fn send(
    State(state): State<ApiState>,
    auth: Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["to", "body", "from", "account_id"])?;
    let account = target(&auth, body.string("account_id")?, Scope::Write)?;
    let request = SendRequest {
        account_id: account,
        to: body.required_string("to")?,
        body: body.required_string("body")?,
        from: body.string("from")?,
        source: Source::Api,
        idempotency_key: idempotency_key(&headers)?,
    };
    let recorded = state.channels.sms.send(&request).await.map_err(sms_error)?;
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(recorded.message))))
}

/// One recipient of a bulk send, with the names its fields have in the request.
struct Recipient {
    to: String,
    body: String,
    to_field: String,
    body_field: String,
}

/// A list field of the body: None when absent or null.
fn list_field<'a>(body: &'a Body, field: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
    match body.0.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(ApiError::field(field, "must not be empty"))
        }
        Some(Value::Array(items)) if items.len() > MAX_RECIPIENTS => Err(ApiError::field(
            field,
            format!("at most {MAX_RECIPIENTS} recipients, got {}", items.len()),
        )),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(ApiError::field(
            field,
            format!("must be a list, got {other}"),
        )),
    }
}

/// A string inside a list item (empty strings pass: the send refuses them per recipient).
fn item_string(v: Option<&Value>, field: &str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::field(field, "is required")),
        Some(other) => Err(ApiError::field(
            field,
            format!("must be a string, got {other}"),
        )),
    }
}

/// The recipients of a bulk send, in order. Malformed input refuses the whole request;
/// values that only the send can judge (a number that is not E.164) fail one recipient.
fn recipients(body: &Body) -> Result<Vec<Recipient>, ApiError> {
    match (list_field(body, "to")?, list_field(body, "messages")?) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "messages",
            "give either `to` (with `body`) or `messages`, not both",
        )),
        (None, None) => Err(ApiError::field(
            "to",
            "is required: a list of numbers with `body`, or `messages` instead",
        )),
        (Some(numbers), None) => {
            let text = body.required_string("body")?;
            numbers
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let to_field = format!("to[{i}]");
                    Ok(Recipient {
                        to: item_string(Some(n), &to_field)?,
                        body: text.clone(),
                        to_field,
                        body_field: "body".into(),
                    })
                })
                .collect()
        }
        (None, Some(messages)) => {
            if body.0.get("body").is_some_and(|b| !b.is_null()) {
                return Err(ApiError::field(
                    "body",
                    "goes with `to`; each of `messages` has its own body",
                ));
            }
            messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let at = format!("messages[{i}]");
                    let m = m
                        .as_object()
                        .ok_or_else(|| ApiError::field(&at, "must be an object {to, body}"))?;
                    if let Some(k) = m.keys().find(|k| *k != "to" && *k != "body") {
                        return Err(ApiError::field(
                            &format!("{at}.{k}"),
                            "unknown field (known: to, body)",
                        ));
                    }
                    let (to_field, body_field) = (format!("{at}.to"), format!("{at}.body"));
                    Ok(Recipient {
                        to: item_string(m.get("to"), &to_field)?,
                        body: item_string(m.get("body"), &body_field)?,
                        to_field,
                        body_field,
                    })
                })
                .collect()
        }
    }
}

/// An error as a bulk answer's per-recipient `error` (the shape of the error body's).
fn detail(e: &ApiError) -> Value {
    json!({"code": e.code, "message": e.message, "field": e.field})
}

/// Sends one text to many numbers (or many texts): each recipient is checked and queued on
/// its own, and the answer says, in the request's order, which message each got or why it
/// got none. With `Idempotency-Key: K` recipient `i` is sent under key `K:i`, so a retried
/// bulk request sends nothing twice. The messages keep to the account's rate
/// (`sms_per_minute`) and business hours.
#[utoipa::path(
    post,
    path = "/v1/messages/bulk",
    operation_id = "send_bulk_messages",
    tag = "messages",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = BulkMessages,
    responses(
        (status = 202, description = "Queued: each recipient's message, or why it has none", body = schemas::BulkResult),
        Invalid, Forbidden, NotFound, RefusedSms,
    ),
)]
async fn bulk(
    State(state): State<ApiState>,
    auth: Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["to", "body", "messages", "from", "account_id"])?;
    let account = target(&auth, body.string("account_id")?, Scope::Write)?;
    let from = body.string("from")?;
    let recipients = recipients(&body)?;
    let key = idempotency_key(&headers)?;
    let sms = &state.channels.sms;
    if !sms.enabled() {
        return Err(sms_error(SmsError::NotConfigured));
    }
    let shared_body = body.0.get("to").is_some_and(|v| !v.is_null());
    let mut data = Vec::with_capacity(recipients.len());
    let (mut queued, mut failed) = (0, 0);
    for (i, r) in recipients.iter().enumerate() {
        let request = SendRequest {
            account_id: account.clone(),
            from: from.clone(),
            to: r.to.clone(),
            body: r.body.clone(),
            source: Source::Bulk,
            idempotency_key: key.as_ref().map(|k| format!("{k}:{i}")),
        };
        match sms.send(&request).await {
            Ok(recorded) => {
                queued += 1;
                let m = &recorded.message;
                data.push(json!({"to": r.to, "id": m.id, "status": m.status}));
            }
            Err(SmsError::Field { field, message }) => {
                // `from` (and a shared `body`) is the same for every recipient: its refusal
                // is the request's, as long as nothing was queued yet (it never is: the
                // number is checked before anything is written).
                let shared = field == "from" || (field == "body" && shared_body);
                if shared && queued == 0 {
                    return Err(ApiError::field(field, message));
                }
                let named = match field {
                    "to" => r.to_field.as_str(),
                    "body" => r.body_field.as_str(),
                    other => other,
                };
                failed += 1;
                data.push(json!({"to": r.to, "error": detail(&ApiError::field(named, message))}));
            }
            Err(e) => {
                // Reported for this recipient and the rest still tried: the answer then says
                // exactly which were queued (a retry with the same Idempotency-Key sends
                // only the others).
                failed += 1;
                data.push(json!({"to": r.to, "error": detail(&sms_error(e))}));
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"data": data, "queued": queued, "failed": failed})),
    ))
}

fn next_cursor(page: &[Message], limit: i64) -> Option<String> {
    (page.len() as i64 == limit)
        .then(|| page.last().map(|m| cursor(m.created_at, &m.id)))
        .flatten()
}

/// The account's messages, sent and received, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/messages",
    operation_id = "list_messages",
    tag = "messages",
    security(("bearer" = [])),
    params(Filters),
    responses(
        (status = 200, description = "A page of messages", body = schemas::MessagePage),
        InvalidQuery, NotFound, Refused,
    ),
)]
async fn list(
    State(state): State<ApiState>,
    auth: Auth,
    Query(f): Query<Filters>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(f.limit)?;
    let account = target(&auth, f.account_id, Scope::Read)?;
    let before = f.cursor.as_deref().map(parse_cursor).transpose()?;
    let page = state
        .store
        .messages(&account, f.contact_id.as_deref(), before, limit)
        .await?;
    let next = next_cursor(&page, limit);
    Ok(Json(json!({ "data": page, "next_cursor": next })))
}

/// One message, with every delivery-status callback Twilio made for it, in arrival order
/// (`applied`: false when it came late and did not move the status back).
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    operation_id = "get_message",
    tag = "messages",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The message's id (`msg_…`)"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "The message and its status callbacks", body = schemas::MessageDetail),
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
    auth.on_account(&account, Scope::Read, "message")?;
    let message = state.store.message(&account, &id).await?;
    let events: Vec<Value> = state
        .store
        .message_events(&message.id)
        .await?
        .into_iter()
        .map(|(status, applied, raw)| json!({"status": status, "applied": applied, "raw": raw}))
        .collect();
    let mut out = json!(message);
    out["events"] = Value::Array(events);
    Ok(Json(out))
}
