//! Query strings, read so that a refusal is the API's JSON error naming the parameter
//! (422, `field`), like a refused body, rather than axum's plain-text 400.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

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
