//! Accounts (tenants) and their API keys.
//!
//! A key is `pk_<id>_<secret>`: the id finds the row (so the lookup does not depend on the
//! secret), then the SHA-256 of the whole key is compared with the stored hash in constant
//! time. Only the hash and a display prefix are stored; the key itself is shown once, when
//! it is made. The key set in the config (`api.admin_key`) may be any string of 24 or more
//! characters; it is stored under the id `config`.

use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::{int, now_ms, random_id, Store, StoreError};

/// What a key may do. Ordered: each scope includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// The operator's account: its admin keys manage every account.
    pub operator: bool,
    #[serde(serialize_with = "crate::store::clock::ser_time")]
    pub created_at: i64,
    /// Calls of the account in progress at once, on every node together; None: no limit.
    pub max_concurrent_calls: Option<i64>,
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub scope: Scope,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    #[serde(serialize_with = "crate::store::clock::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::store::clock::ser_opt_time")]
    pub revoked_at: Option<i64>,
}

/// Who a request's key belongs to, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: String,
    pub key_id: String,
    pub scope: Scope,
    pub operator: bool,
}

/// How long a checked key is trusted without asking the database again. A revocation
/// applies at once on the node that made it and within this long on the others.
const AUTH_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Checked keys remembered at most (the cache is emptied when it is full).
const AUTH_CACHE_MAX: usize = 10_000;

/// Recently checked keys, by the hash of the presented key: a busy client's every request
/// would otherwise cost a database query.
#[derive(Debug, Default)]
pub struct AuthCache(
    std::sync::Mutex<std::collections::HashMap<String, (Principal, std::time::Instant)>>,
);

impl AuthCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        let map = self.0.lock().ok()?;
        let (p, at) = map.get(hash)?;
        (at.elapsed() < AUTH_CACHE_TTL).then(|| p.clone())
    }

    fn put(&self, hash: String, p: Principal) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= AUTH_CACHE_MAX {
                map.clear();
            }
            map.insert(hash, (p, std::time::Instant::now()));
        }
    }

    /// Forgets a key (revoked) or, with None, every key.
    fn forget(&self, key_id: Option<&str>) {
        if let Ok(mut map) = self.0.lock() {
            match key_id {
                Some(id) => map.retain(|_, (p, _)| p.key_id != id),
                None => map.clear(),
            }
        }
    }
}

/// The id under which the configured admin key is stored.
const CONFIG_KEY_ID: &str = "config";
/// The operator's account, made at first start.
pub const OPERATOR_ACCOUNT: &str = "acc_operator";
/// Shortest key accepted in the config.
pub const MIN_CONFIG_KEY_LEN: usize = 24;

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The id part of a `pk_<id>_<secret>` key; other strings are the configured key.
fn key_id(key: &str) -> &str {
    key.strip_prefix("pk_")
        .and_then(|rest| rest.split_once('_'))
        .map_or(CONFIG_KEY_ID, |(id, _)| id)
}

fn account_from(row: &sqlx::any::AnyRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        operator: int(row, "operator")? != 0,
        created_at: int(row, "created_at")?,
        max_concurrent_calls: row.try_get::<Option<i64>, _>("max_concurrent_calls")?,
    })
}

/// The columns [`account_from`] reads.
const ACCOUNT_COLUMNS: &str = "id, name, operator, created_at, max_concurrent_calls";

fn key_from(row: &sqlx::any::AnyRow) -> Result<ApiKey, sqlx::Error> {
    let scope: String = row.try_get("scope")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        prefix: row.try_get("prefix")?,
        created_at: int(row, "created_at")?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?,
    })
}

impl Store {
    /// First start: the operator's account, and its admin key. With `configured` (from
    /// `api.admin_key`) that key is stored (replacing an earlier configured one); without
    /// it, a key is made when the operator has none, and returned so it can be shown once.
    pub async fn bootstrap(&self, configured: Option<&str>) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let exists = sqlx::query("SELECT id FROM accounts WHERE id = $1")
            .bind(OPERATOR_ACCOUNT)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            sqlx::query(
                "INSERT INTO accounts (id, name, operator, created_at) VALUES ($1, $2, 1, $3)",
            )
            .bind(OPERATOR_ACCOUNT)
            .bind("operator")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let made = match configured {
            Some(key) => {
                sqlx::query("DELETE FROM api_keys WHERE id = $1")
                    .bind(CONFIG_KEY_ID)
                    .execute(&mut *tx)
                    .await?;
                insert_key(
                    &mut tx,
                    CONFIG_KEY_ID,
                    OPERATOR_ACCOUNT,
                    "config",
                    Scope::Admin,
                    key,
                    now,
                )
                .await?;
                None
            }
            None => {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM api_keys WHERE account_id = $1 AND scope = 'admin' \
                     AND revoked_at IS NULL",
                )
                .bind(OPERATOR_ACCOUNT)
                .fetch_one(&mut *tx)
                .await?;
                if int(&row, "n")? == 0 {
                    let (id, key) = new_key();
                    insert_key(
                        &mut tx,
                        &id,
                        OPERATOR_ACCOUNT,
                        "first admin key",
                        Scope::Admin,
                        &key,
                        now,
                    )
                    .await?;
                    Some(key)
                } else {
                    None
                }
            }
        };
        tx.commit().await?;
        self.auth_cache.forget(None);
        Ok(made)
    }

    /// Checks a presented key: the principal it stands for, or None (unknown, wrong or
    /// revoked; the caller cannot tell which).
    pub async fn authenticate(&self, key: &str) -> Result<Option<Principal>, StoreError> {
        let presented = hash(key);
        if let Some(p) = self.auth_cache.get(&presented) {
            return Ok(Some(p));
        }
        let row = sqlx::query(
            "SELECT k.account_id, k.scope, k.hash, a.operator FROM api_keys k \
             JOIN accounts a ON a.id = k.account_id WHERE k.id = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_id(key))
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            // Same work as a found key, so timing does not tell unknown ids apart.
            let _ = presented.as_bytes().ct_eq(hash("").as_bytes());
            return Ok(None);
        };
        let stored: String = row.try_get("hash")?;
        if !bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
            return Ok(None);
        }
        let scope: String = row.try_get("scope")?;
        let principal = Principal {
            account_id: row.try_get("account_id")?,
            key_id: key_id(key).to_string(),
            scope: Scope::parse(&scope).unwrap_or(Scope::Read),
            operator: int(&row, "operator")? != 0,
        };
        self.auth_cache.put(presented, principal.clone());
        Ok(Some(principal))
    }

    pub async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let account = Account {
            id: random_id("acc_", 16),
            name: name.to_string(),
            operator: false,
            created_at: now_ms(),
            max_concurrent_calls: None,
        };
        sqlx::query("INSERT INTO accounts (id, name, operator, created_at) VALUES ($1, $2, 0, $3)")
            .bind(&account.id)
            .bind(&account.name)
            .bind(account.created_at)
            .execute(self.writer())
            .await?;
        Ok(account)
    }

    pub async fn account(&self, id: &str) -> Result<Account, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reader())
        .await?
        .ok_or(StoreError::NotFound("account"))?;
        Ok(account_from(&row)?)
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id"
        ))
        .fetch_all(self.reader())
        .await?;
        Ok(rows.iter().map(account_from).collect::<Result<_, _>>()?)
    }

    /// Changes an account's name (when given) and its concurrent-call limit (when given:
    /// `Some(None)` removes the limit).
    pub async fn update_account(
        &self,
        id: &str,
        name: Option<&str>,
        max_concurrent_calls: Option<Option<i64>>,
    ) -> Result<Account, StoreError> {
        let mut tx = self.writer().begin().await?;
        if let Some(name) = name {
            sqlx::query("UPDATE accounts SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(limit) = max_concurrent_calls {
            sqlx::query("UPDATE accounts SET max_concurrent_calls = $1 WHERE id = $2")
                .bind(limit)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
        tx.commit().await?;
        Ok(account_from(&row)?)
    }

    /// The account's concurrent-call limit (None: none, or no such account).
    pub async fn call_limit(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT max_concurrent_calls FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        match row {
            Some(row) => Ok(row.try_get::<Option<i64>, _>("max_concurrent_calls")?),
            None => Ok(None),
        }
    }

    /// Makes a key for `account_id`; returns it listed and the key itself (shown once).
    pub async fn create_key(
        &self,
        account_id: &str,
        name: &str,
        scope: Scope,
    ) -> Result<(ApiKey, String), StoreError> {
        self.account(account_id).await?;
        let (id, key) = new_key();
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        insert_key(&mut tx, &id, account_id, name, scope, &key, now).await?;
        tx.commit().await?;
        let listed = ApiKey {
            id,
            account_id: account_id.to_string(),
            name: name.to_string(),
            scope,
            prefix: display_prefix(&key),
            created_at: now,
            revoked_at: None,
        };
        Ok((listed, key))
    }

    /// The keys of one account.
    pub async fn keys(&self, account_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, scope, prefix, created_at, revoked_at FROM api_keys \
             WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.iter().map(key_from).collect::<Result<_, _>>()?)
    }

    /// Revokes a key of `account_id` (a key of another account is not found).
    pub async fn revoke_key(&self, account_id: &str, key_id: &str) -> Result<ApiKey, StoreError> {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 \
             AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(key_id)
        .bind(account_id)
        .execute(self.writer())
        .await?;
        self.auth_cache.forget(Some(key_id));
        let row = sqlx::query(
            "SELECT id, account_id, name, scope, prefix, created_at, revoked_at FROM api_keys \
             WHERE id = $1 AND account_id = $2",
        )
        .bind(key_id)
        .bind(account_id)
        .fetch_optional(self.writer())
        .await?
        .ok_or(StoreError::NotFound("key"))?;
        Ok(key_from(&row)?)
    }
}

/// A new key and its id: `pk_<12 chars>_<32 chars>` (about 165 bits of secret).
fn new_key() -> (String, String) {
    let id = random_id("", 12);
    let secret = random_id("", 32);
    let key = format!("pk_{id}_{secret}");
    (id, key)
}

/// What a listing shows of a key: enough to recognise it, nothing of the secret.
fn display_prefix(key: &str) -> String {
    match key.strip_prefix("pk_").and_then(|r| r.split_once('_')) {
        Some((id, _)) => format!("pk_{id}_…"),
        None => format!("{}…", &key[..key.len().min(4)]),
    }
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    account_id: &str,
    name: &str,
    scope: Scope,
    key: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, name, scope, hash, prefix, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(account_id)
    .bind(name)
    .bind(scope.as_str())
    .bind(hash(key))
    .bind(display_prefix(key))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_id_and_only_a_prefix_is_shown() {
        let (id, key) = new_key();
        assert!(key.starts_with(&format!("pk_{id}_")));
        assert_eq!(key.len(), 3 + 12 + 1 + 32);
        assert_eq!(key_id(&key), id);
        assert_eq!(key_id("some-configured-admin-key-value"), CONFIG_KEY_ID);
        assert_eq!(display_prefix(&key), format!("pk_{id}_…"));
        assert_ne!(new_key().1, key);
        assert_eq!(hash(&key).len(), 64);
    }
}
