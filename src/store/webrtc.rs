//! Call tokens: short-lived bearer tokens the API mints for one contact of one account, which
//! a business hands to its web page so that the visitor's browser can start a browser call
//! (the WHIP endpoint, `POST /v1/webrtc/whip`) and hang it up without holding an API key.
//! Only a hash of each token is stored. A token may start calls until it expires (a page
//! reloaded within its life calls again); the account's call limit bounds how many at once.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{now_ms, random_id, Store, StoreError};

/// What every call token starts with (API keys start with `pk_`, chat tokens with `pct_`).
pub const CALL_TOKEN_PREFIX: &str = "pwt_";

/// How long an expired token is kept, so that it is refused as expired rather than unknown;
/// older ones are cleared as new ones are minted.
const EXPIRED_KEPT_MS: i64 = 86_400_000;

/// What a token grants (expired or not: see [`CallGrant::expired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallGrant {
    pub account_id: String,
    pub contact_id: String,
    /// The contact's address: an E.164 number or `web:<visitor id>`.
    pub address: String,
    /// The agent that answers (None: the account's default, the configured agent).
    pub agent_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

impl CallGrant {
    /// True once the token's time has passed at `now` (ms).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// A new call token for the contact `contact_id` (whose address is `address`), valid
    /// until `expires_at` (ms). The token is returned this once; only its hash is kept.
    pub async fn mint_call_token(
        &self,
        account_id: &str,
        contact_id: &str,
        address: &str,
        agent_id: Option<&str>,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        let token = random_id(CALL_TOKEN_PREFIX, 40);
        let now = now_ms();
        sqlx::query("DELETE FROM call_tokens WHERE expires_at < $1")
            .bind(now - EXPIRED_KEPT_MS)
            .execute(self.writer())
            .await?;
        sqlx::query(
            "INSERT INTO call_tokens (hash, account_id, contact_id, address, agent_id, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash(&token))
        .bind(account_id)
        .bind(contact_id)
        .bind(address)
        .bind(agent_id)
        .bind(expires_at)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(token)
    }

    /// What `token` grants, if it is one we made (expired ones included, for a day after).
    pub async fn call_grant(&self, token: &str) -> Result<Option<CallGrant>, StoreError> {
        if !token.starts_with(CALL_TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT account_id, contact_id, address, agent_id, expires_at FROM call_tokens \
             WHERE hash = $1",
        )
        .bind(hash(token))
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(CallGrant {
            account_id: row.try_get("account_id")?,
            contact_id: row.try_get("contact_id")?,
            address: row.try_get("address")?,
            agent_id: row.try_get("agent_id")?,
            expires_at: super::int(&row, "expires_at")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_not_the_token() {
        let token = format!("{CALL_TOKEN_PREFIX}abc");
        let h = hash(&token);
        assert_eq!(h.len(), 64);
        assert!(!h.contains("abc"));
        assert_eq!(h, hash(&token));
    }

    #[test]
    fn a_grant_expires_at_its_time() {
        let g = CallGrant {
            account_id: "acc".into(),
            contact_id: "ctc".into(),
            address: "web:v".into(),
            agent_id: None,
            expires_at: 1_000,
        };
        assert!(!g.expired(999));
        assert!(g.expired(1_000));
    }
}
