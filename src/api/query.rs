//! Query strings, read so that a refusal is the API's JSON error naming the parameter
//! (422, `field`), like a refused body, rather than axum's plain-text 400.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Items per page when `limit` is not given.
pub const PAGE: i64 = 100;

/// A page's `limit`: 1 to 1000, default [`PAGE`].
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(PAGE);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 1000"));
    }
    Ok(limit)
}

/// The opaque cursor of a keyset page that ends at (`at`, `id`): the listing's sort key.
pub fn cursor(at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}|{id}"))
}

/// The (`at`, `id`) a [`cursor`] carries.
pub fn parse_cursor(raw: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::field("cursor", "not a cursor this API returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_string()))
}

/// The query string as `T`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(pairs).map_err(|e| {
        let field = e.path().to_string();
        let why = e.into_inner().to_string();
        if field.is_empty() || field == "." {
            ApiError::field("query", why)
        } else {
            ApiError::field(&field, why)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Page {
        limit: Option<i64>,
        #[allow(dead_code)]
        status: Option<String>,
    }

    #[test]
    fn a_bad_value_names_its_parameter() {
        let ok: Page = parse("limit=5&status=answered").unwrap();
        assert_eq!(ok.limit, Some(5));
        let e = parse::<Page>("limit=abc").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("limit"), "{}", e.message);
    }
}
