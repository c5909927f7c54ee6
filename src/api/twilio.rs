//! Twilio's webhooks over HTTP: `POST /webhooks/twilio/sms` (a message received) and
//! `POST /webhooks/twilio/status` (an outbound message's delivery status), behind Twilio's
//! signature. What they do is the SMS channel's (`channels::sms::webhook`); here they are read
//! off the request and answered: an empty TwiML `<Response/>` for a message (the agent's
//! reply goes out by REST), 200 for a status, and the same answer to a replay.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::ApiState;
use crate::channels::sms::webhook::{Signed, Verified, WebhookError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What Twilio is answered: no TwiML instructions (the reply goes out by REST).
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        match e {
            WebhookError::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sms_not_configured",
                e.to_string(),
            ),
            WebhookError::BadSignature => {
                ApiError::new(StatusCode::FORBIDDEN, "bad_signature", e.to_string())
            }
            WebhookError::Param(name, why) => ApiError::field(name, why),
            WebhookError::Store(e) => e.into(),
        }
    }
}

/// The webhook's parameters, once its signature checks out.
fn verified(
    state: &ApiState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<Verified, ApiError> {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(uri.path());
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let request = Signed {
        host: get(header::HOST.as_str()),
        path_and_query,
        body,
        signature: get("x-twilio-signature").unwrap_or_default(),
    };
    Ok(state.channels.twilio_params(&request)?)
}

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(inbound))
        .routes(routes!(status))
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
        (status = 422, description = "A required parameter is missing (the body names it)", body = crate::api::error::ErrorBody),
        (status = 403, description = "X-Twilio-Signature is missing or wrong: nothing stored", body = crate::api::error::ErrorBody),
        (status = 503, description = "SMS is not configured", body = crate::api::error::ErrorBody),
    ),
)]
pub async fn inbound(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified(&state, &headers, &uri, &body)?;
    state.channels.sms_received(&params).await?;
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
        (status = 422, description = "A required parameter is missing or has an unknown value (the body names it)", body = crate::api::error::ErrorBody),
        (status = 403, description = "X-Twilio-Signature is missing or wrong: nothing stored", body = crate::api::error::ErrorBody),
        (status = 503, description = "SMS is not configured", body = crate::api::error::ErrorBody),
    ),
)]
pub async fn status(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified(&state, &headers, &uri, &body)?;
    state.channels.sms_status(&params).await?;
    Ok(StatusCode::OK.into_response())
}
