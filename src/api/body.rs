//! Request bodies: JSON objects read field by field, so that every refusal names the field
//! (and unknown fields are refused rather than ignored).

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// A JSON object body.
pub struct Body(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
        if bytes.is_empty() {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the body must be a JSON object",
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("the body is not valid JSON: {e}"),
            )),
        }
    }
}

impl Body {
    /// Refuses fields other than `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::field(
                k,
                format!("unknown field (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// A string field; None when absent. Empty strings are refused.
    pub fn string(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(ApiError::field(field, "must not be empty")),
            Some(other) => Err(ApiError::field(
                field,
                format!("must be a string, got {other}"),
            )),
        }
    }

    pub fn required_string(&self, field: &str) -> Result<String, ApiError> {
        self.string(field)?
            .ok_or_else(|| ApiError::field(field, "is required"))
    }

    /// An integer field; None when absent.
    pub fn int(&self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::field(field, format!("must be an integer, got {n}"))),
            Some(other) => Err(ApiError::field(
                field,
                format!("must be an integer, got {other}"),
            )),
        }
    }
}
