//! Twilio's webhooks: `POST /webhooks/twilio/sms` (a message received) and
//! `POST /webhooks/twilio/status` (an outbound message's delivery status).
//!
//! Both are checked against `X-Twilio-Signature` before anything is read or stored. An
//! incoming message is stored (its complete payload), put on the contact's timeline and
//! acknowledged with an empty TwiML `<Response/>` in the same request; the agent's reply is
//! made afterwards and sent through the REST API. Twilio gives a webhook 15 seconds, and an
//! LLM reply (with tools) can take longer; a REST send can also be retried and tracked,
//! which a TwiML reply cannot. A replayed webhook (same `MessageSid`) finds the stored
//! message and gets the same answer, and nothing new is made or sent.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::segments;
use super::signature;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::store::accounts::OPERATOR_ACCOUNT;
use crate::store::directory::e164;
use crate::store::messages::{status_rank, Inbound};

/// What Twilio is answered: no TwiML instructions (the reply goes out by REST).
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The form parameters of a Twilio webhook, in order.
type Params = Vec<(String, String)>;

/// The webhook's parameters, once its signature checks out.
fn verified(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<Params, ApiError> {
    let sms = state.channels.sms.config();
    if !state.channels.sms.enabled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sms_not_configured",
            "SMS is not configured (sms.twilio_account_sid, sms.twilio_auth_token)",
        ));
    }
    let params: Params = form_urlencoded::parse(body).into_owned().collect();
    let url = public_url(&sms.public_url, headers, uri);
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given.is_empty() || !signature::valid(&sms.twilio_auth_token, &url, &params, given) {
        tracing::warn!(%url, signed = !given.is_empty(), "Twilio webhook with a bad or missing signature refused");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "X-Twilio-Signature is missing or does not match this request",
        ));
    }
    Ok(params)
}

/// The URL Twilio requested, as it signed it: the configured public URL, else the Host
/// header's, with the path and query as received.
fn public_url(configured: &str, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(uri.path());
    if !configured.is_empty() {
        return format!("{configured}{path}");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}{path}")
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    param(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::field(name, "missing from Twilio's parameters"))
}

/// Every parameter as a JSON object (a repeated name keeps its values as an array).
fn raw_payload(params: &Params) -> Value {
    let mut map = Map::new();
    for (k, v) in params {
        match map.get_mut(k) {
            None => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            Some(Value::Array(items)) => items.push(Value::String(v.clone())),
            Some(first) => {
                let first = first.take();
                map.insert(
                    k.clone(),
                    Value::Array(vec![first, Value::String(v.clone())]),
                );
            }
        }
    }
    Value::Object(map)
}

fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        EMPTY_TWIML,
    )
        .into_response()
}

/// The form fields Twilio posts for a message received (the ones Parley reads; all of
/// them are stored).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioMessage {
    #[schema(example = "SM0123456789abcdef0123456789abcdef")]
    MessageSid: String,
    /// The sender.
    From: String,
    /// One of the accounts' numbers.
    To: String,
    Body: String,
    NumSegments: Option<String>,
}

/// The form fields Twilio posts for a status change.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioStatus {
    MessageSid: String,
    /// `queued`, `sending`, `sent`, `delivered`, `undelivered`, `failed`, `read`.
    MessageStatus: String,
    ErrorCode: Option<String>,
}

/// A message received: stored and put on the contact's timeline; the agent replies by REST.
#[utoipa::path(
    post,
    path = "/webhooks/twilio/sms",
    operation_id = "twilio_sms_webhook",
    tag = "sms",
    request_body(content = TwilioMessage, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Stored (or stored before): an empty TwiML response", content_type = "text/xml", body = String),
        (status = 400, description = "A required parameter is missing", body = crate::api::error::ErrorBody),
        (status = 403, description = "X-Twilio-Signature is missing or wrong: nothing stored", body = crate::api::error::ErrorBody),
        (status = 503, description = "SMS is not configured", body = crate::api::error::ErrorBody),
    ),
)]
pub async fn inbound(
    State(state): State<ApiState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified(&state, &headers, &uri, &body)?;
    let sid = required(&params, "MessageSid")?;
    let from_raw = required(&params, "From")?;
    let to_raw = required(&params, "To")?;
    let text = param(&params, "Body").unwrap_or_default();
    // Short codes and alphanumeric senders are not E.164: they are kept as sent.
    let from = e164(from_raw).unwrap_or_else(|| from_raw.trim().to_string());
    let to = e164(to_raw).unwrap_or_else(|| to_raw.trim().to_string());
    let owner = match state
        .store
        .owner(crate::store::directory::Owned::Number, &to)
        .await
    {
        Ok(account) => Some(account),
        Err(crate::store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let counted = segments::count(text);
    let segments = param(&params, "NumSegments")
        .and_then(|n| n.parse().ok())
        .unwrap_or(i64::from(counted.count));
    let raw = raw_payload(&params);
    // A message to a number no account has is kept on the operator's account (nothing
    // received is lost), unanswered.
    let account_id = owner
        .clone()
        .unwrap_or_else(|| OPERATOR_ACCOUNT.to_string());
    let recorded = state
        .store
        .record_inbound(&Inbound {
            account_id: &account_id,
            from: &from,
            to: &to,
            body: text,
            sid,
            raw: &raw,
            segments,
            encoding: counted.encoding.as_str(),
        })
        .await?;
    if !recorded.created {
        tracing::info!(sid, message = %recorded.message.id, "Twilio webhook replayed; already stored");
        return Ok(twiml());
    }
    tracing::info!(sid, message = %recorded.message.id, account = %account_id, "SMS received");
    state.events.publish(
        "sms.received",
        &account_id,
        serde_json::json!({
            "id": recorded.message.id,
            "sid": sid,
            "from": from,
            "to": to,
            "body": text,
            "contact_id": recorded.contact.id,
        }),
    );
    let channels = &state.channels;
    if owner.is_none() {
        tracing::warn!(%to, "SMS to a number no account has; stored on the operator's account, not answered");
        let _ = state.store.message_handled(&recorded.message.id).await;
    } else if channels.sms.config().reply {
        let channels = channels.clone();
        tokio::spawn(async move {
            channels
                .answer_sms(recorded.message, recorded.contact)
                .await
        });
    } else {
        let _ = state.store.message_handled(&recorded.message.id).await;
    }
    Ok(twiml())
}

/// A delivery status: applied when it moves the message forward, kept in any case.
#[utoipa::path(
    post,
    path = "/webhooks/twilio/status",
    operation_id = "twilio_status_webhook",
    tag = "sms",
    request_body(content = TwilioStatus, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "A required parameter is missing or unknown", body = crate::api::error::ErrorBody),
        (status = 403, description = "X-Twilio-Signature is missing or wrong: nothing stored", body = crate::api::error::ErrorBody),
        (status = 503, description = "SMS is not configured", body = crate::api::error::ErrorBody),
    ),
)]
pub async fn status(
    State(state): State<ApiState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified(&state, &headers, &uri, &body)?;
    let sid = required(&params, "MessageSid")?;
    let status = required(&params, "MessageStatus")?;
    if status_rank(status).is_none() {
        return Err(ApiError::field(
            "MessageStatus",
            format!("{status:?} is not a message status"),
        ));
    }
    let code = param(&params, "ErrorCode").and_then(|c| c.trim().parse::<i64>().ok());
    let why = param(&params, "ErrorMessage");
    let raw = raw_payload(&params);
    match state
        .store
        .apply_status(sid, status, code, why, &raw)
        .await?
    {
        Some((message, true)) => {
            tracing::info!(sid, status, message = %message.id, "SMS status");
            state.channels.sms.status_event(&message);
        }
        Some((message, false)) => {
            tracing::info!(sid, status, now = %message.status, "SMS status older than the one recorded; kept, not applied");
        }
        None => tracing::info!(
            sid,
            status,
            "SMS status for a message not recorded yet; kept"
        ),
    }
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_is_the_public_one_when_configured() {
        let uri: axum::http::Uri = "/webhooks/twilio/sms?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "10.0.0.5:8080".parse().unwrap());
        assert_eq!(
            public_url("https://voice.example.com", &headers, &uri),
            "https://voice.example.com/webhooks/twilio/sms?x=1"
        );
        assert_eq!(
            public_url("", &headers, &uri),
            "http://10.0.0.5:8080/webhooks/twilio/sms?x=1"
        );
    }

    #[test]
    fn the_raw_payload_keeps_every_parameter() {
        let params: Params = vec![
            ("Body".into(), "hi".into()),
            ("MediaUrl".into(), "a".into()),
            ("MediaUrl".into(), "b".into()),
        ];
        assert_eq!(
            raw_payload(&params),
            serde_json::json!({"Body": "hi", "MediaUrl": ["a", "b"]})
        );
    }
}
