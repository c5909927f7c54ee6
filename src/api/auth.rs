//! API keys on requests: `Authorization: Bearer <key>` checked against the store, and who
//! may touch which account.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::error::ApiError;
use super::ApiState;
use crate::store::accounts::{Principal, Scope};
use crate::store::directory::Owned;
use crate::store::Store;

/// The checked key of a request.
pub struct Auth(pub Principal);

impl FromRequestParts<ApiState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        match state.store.authenticate(key).await? {
            Some(principal) => Ok(Auth(principal)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

impl Auth {
    /// The key may act on `account_id` with at least `scope`: its own account, or any
    /// account for the operator's admin keys. Another account's things are "not found"
    /// (their existence is not revealed); too small a scope is "forbidden".
    pub fn on_account(&self, account_id: &str, scope: Scope, what: &str) -> Result<(), ApiError> {
        let p = &self.0;
        let operator_admin = p.operator && p.scope == Scope::Admin;
        if p.account_id != account_id && !operator_admin {
            return Err(ApiError::not_found(what));
        }
        if p.scope < scope {
            return Err(ApiError::forbidden(scope.as_str()));
        }
        Ok(())
    }

    /// The account that owns `id` (an agent, a number, a lease), checked for `scope`: the
    /// key's own account, or whichever owns it for the operator's admin keys.
    pub async fn owner_of(
        &self,
        store: &Store,
        what: Owned,
        id: &str,
        scope: Scope,
        label: &str,
    ) -> Result<String, ApiError> {
        let account = if self.operator_admin().is_ok() {
            store.owner(what, id).await?
        } else {
            self.0.account_id.clone()
        };
        self.on_account(&account, scope, label)?;
        Ok(account)
    }

    /// The operator's admin keys only (e.g. making accounts).
    pub fn operator_admin(&self) -> Result<(), ApiError> {
        if self.0.operator && self.0.scope == Scope::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("the operator's admin key"))
        }
    }
}
