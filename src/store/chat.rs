//! Web chat tokens: short-lived bearer tokens the API mints for one contact of one account,
//! which a business hands to its web page so the visitor's browser can open `/v1/chat`
//! without holding an API key. Only a hash of each token is stored.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{now_ms, random_id, Store, StoreError};

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatGrant {
    pub account_id: String,
    pub contact_id: String,
    /// The agent that answers (None: the number-less default agent).
    pub agent_id: Option<String>,
    pub expires_at: i64,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// A new token for `contact_id`, valid until `expires_at` (ms).
    pub async fn mint_chat_token(
        &self,
        account_id: &str,
        contact_id: &str,
        agent_id: Option<&str>,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        let token = random_id("pct_", 40);
        let now = now_ms();
        // Expired tokens are of no use to anyone: clear them as new ones are made.
        sqlx::query("DELETE FROM chat_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(self.writer())
            .await?;
        sqlx::query(
            "INSERT INTO chat_tokens (hash, account_id, contact_id, agent_id, expires_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash(&token))
        .bind(account_id)
        .bind(contact_id)
        .bind(agent_id)
        .bind(expires_at)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(token)
    }

    /// What `token` grants, if it is one we made and it has not expired.
    pub async fn chat_grant(&self, token: &str) -> Result<Option<ChatGrant>, StoreError> {
        let row = sqlx::query(
            "SELECT account_id, contact_id, agent_id, expires_at FROM chat_tokens \
             WHERE hash = $1",
        )
        .bind(hash(token))
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let grant = ChatGrant {
            account_id: row.try_get("account_id")?,
            contact_id: row.try_get("contact_id")?,
            agent_id: row.try_get("agent_id")?,
            expires_at: super::int(&row, "expires_at")?,
        };
        Ok((grant.expires_at > now_ms()).then_some(grant))
    }
}
