//! Errors as the API returns them: the right status and a JSON body
//! `{"error": {"code": …, "message": …, "field": …}}`, where `field` names the request field
//! at fault when there is one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A request field that is missing or wrong (422).
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    pub fn forbidden(needed: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key's scope does not allow this ({needed} needed)"),
        )
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Insufficient => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "the balance cannot cover any of the requested units",
            ),
            other => {
                tracing::error!(error = %other, "store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database failed; try again",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_field", "message": "is required", "field": "name"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for programs: `unauthorized`, `forbidden`, `not_found`,
    /// `invalid_field`, `bad_body`, `bad_json`, `bad_idempotency_key`, `conflict`,
    /// `insufficient_funds`, `store_unavailable`, `sms_not_configured`; browser calls (WHIP)
    /// add `webrtc_disabled`, `token_expired`, `too_large`, `unsupported_media_type`,
    /// `bad_sdp`, `not_acceptable`, `call_limit`, `method_not_allowed`, `draining`,
    /// `unavailable`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, when there is one.
    #[schema(required = true)]
    pub field: Option<String>,
}

// The error answers as the OpenAPI document lists them, for `responses(...)` in
// `#[utoipa::path]`: each operation names the ones it can give.

/// What any `/v1` operation may answer: no valid key, or the database failed.
#[derive(IntoResponses)]
pub enum Refused {
    /// No API key, or not a valid one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The database failed; try again (`store_unavailable`).
    #[response(status = 503)]
    StoreUnavailable(ErrorBody),
}

/// What an operation that sends SMS may answer besides: no valid key, or it cannot send now.
#[derive(IntoResponses)]
pub enum RefusedSms {
    /// No API key, or not a valid one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The database failed; try again (`store_unavailable`). Or this Parley has no SMS
    /// provider (`sms_not_configured`: `sms.twilio_account_sid` and `sms.twilio_auth_token`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The key's scope does not allow this (`forbidden`).
#[derive(IntoResponses)]
#[response(status = 403)]
pub struct Forbidden(pub ErrorBody);

/// No such thing, or it belongs to another account (`not_found`).
#[derive(IntoResponses)]
#[response(status = 404)]
pub struct NotFound(pub ErrorBody);

/// A refused request body.
#[derive(IntoResponses)]
pub enum Invalid {
    /// The body is not a JSON object (`bad_json`, `bad_body`).
    #[response(status = 400)]
    BadBody(ErrorBody),
    /// A field is missing, unknown or wrong; `field` names it (`invalid_field`).
    #[response(status = 422)]
    InvalidField(ErrorBody),
}

/// A query parameter is wrong; `field` names it (`invalid_field`).
#[derive(IntoResponses)]
#[response(status = 422)]
pub struct InvalidQuery(pub ErrorBody);

/// It clashes with what exists (`conflict`).
#[derive(IntoResponses)]
#[response(status = 409)]
pub struct Conflict(pub ErrorBody);

/// The account has as many calls in progress as its limit allows (`call_limit`).
#[derive(IntoResponses)]
#[response(status = 429)]
pub struct TooManyCalls(pub ErrorBody);

/// The carrier's trunk cannot be reached (`trunk_unreachable`).
#[derive(IntoResponses)]
#[response(status = 502)]
pub struct BadGateway(pub ErrorBody);

/// The balance cannot cover any of the requested units (`insufficient_funds`).
#[derive(IntoResponses)]
#[response(status = 402)]
pub struct InsufficientFunds(pub ErrorBody);
