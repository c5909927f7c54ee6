//! Agents and phone numbers: what answers a call, and which account a dialled number bills.
//!
//! An agent is an account's named configuration of the conversation (prompt, greeting,
//! language, voice, limits), kept as a JSON object whose keys are checked by the API. A
//! number is an E.164 DID owned by one account, pointing at one of its agents (or at none:
//! the config file's default agent answers).

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::clock::ser_time;
use super::{now_ms, random_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agent {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// The agent's settings (prompt, greeting, language, voice, max_duration_s).
    pub config: Value,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "ser_time")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Number {
    /// E.164, e.g. `+15551234567`.
    pub number: String,
    pub account_id: String,
    pub agent_id: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
}

/// Where an inbound call goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub account_id: String,
    /// None: the config file's default agent.
    pub agent_id: Option<String>,
    /// The number dialled, when it is one of the configured numbers.
    pub number: Option<String>,
    /// The agent's stored settings and when they last changed, read with the route so a
    /// call costs one query.
    pub agent: Option<(Value, i64)>,
}

/// `raw` as E.164 (`+` and 1 to 15 digits, not starting with 0), ignoring the visual
/// separators people write (spaces, dashes, dots, parentheses); None when it is not a number.
/// Without a `+`, 11 to 15 digits are taken as already international.
pub fn e164(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with('+');
    let mut digits = String::new();
    for c in trimmed.trim_start_matches('+').chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let ok_len = if plus { 1..=15 } else { 11..=15 };
    if !ok_len.contains(&digits.len()) || digits.starts_with('0') {
        return None;
    }
    Some(format!("+{digits}"))
}

/// The number a SIP or tel URI dials: the user part (`sip:+1555…@host;…`, `tel:+1555…`).
pub fn dialled(uri: &str) -> Option<String> {
    let rest = uri
        .trim()
        .trim_start_matches('<')
        .split_once(':')
        .map(|(_, r)| r)?;
    let user = rest.split(['@', ';', '>', '?']).next()?;
    e164(user)
}

fn agent_from(row: &sqlx::any::AnyRow) -> Result<Agent, StoreError> {
    let config: String = row.try_get("config")?;
    Ok(Agent {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
        created_at: super::int(row, "created_at")?,
        updated_at: super::int(row, "updated_at")?,
    })
}

fn number_from(row: &sqlx::any::AnyRow) -> Result<Number, StoreError> {
    Ok(Number {
        number: row.try_get("number")?,
        account_id: row.try_get("account_id")?,
        agent_id: row.try_get("agent_id")?,
        created_at: super::int(row, "created_at")?,
    })
}

/// Things that belong to an account, for [`Store::owner`].
#[derive(Debug, Clone, Copy)]
pub enum Owned {
    Agent,
    Number,
    Lease,
}

const AGENT_COLUMNS: &str = "id, account_id, name, config, created_at, updated_at";

impl Store {
    pub async fn create_agent(
        &self,
        account_id: &str,
        name: &str,
        config: &Value,
    ) -> Result<Agent, StoreError> {
        self.account(account_id).await?;
        let now = now_ms();
        let id = random_id("agt_", 16);
        sqlx::query(
            "INSERT INTO agents (id, account_id, name, config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(name)
        .bind(config.to_string())
        .bind(now)
        .bind(now)
        .execute(self.writer())
        .await?;
        self.agent(account_id, &id).await
    }

    pub async fn agent(&self, account_id: &str, id: &str) -> Result<Agent, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(self.writer())
        .await?
        .ok_or(StoreError::NotFound("agent"))?;
        agent_from(&row)
    }

    pub async fn agents(&self, account_id: &str) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(account_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(agent_from).collect()
    }

    /// Replaces an agent's name and settings.
    pub async fn update_agent(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
        config: &Value,
    ) -> Result<Agent, StoreError> {
        let done = sqlx::query(
            "UPDATE agents SET name = $1, config = $2, updated_at = $3 \
             WHERE id = $4 AND account_id = $5",
        )
        .bind(name)
        .bind(config.to_string())
        .bind(now_ms())
        .bind(id)
        .bind(account_id)
        .execute(self.writer())
        .await?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        self.agent(account_id, id).await
    }

    /// Deletes an agent that no number points at.
    pub async fn delete_agent(&self, account_id: &str, id: &str) -> Result<(), StoreError> {
        self.agent(account_id, id).await?;
        let used = sqlx::query("SELECT number FROM numbers WHERE agent_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(self.writer())
            .await?;
        if let Some(row) = used {
            let number: String = row.try_get("number")?;
            return Err(StoreError::Conflict(format!(
                "the agent answers {number}; point the number elsewhere first"
            )));
        }
        sqlx::query("DELETE FROM agents WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Adds a number (E.164) to an account, answered by `agent_id` (one of its agents).
    pub async fn create_number(
        &self,
        account_id: &str,
        number: &str,
        agent_id: Option<&str>,
    ) -> Result<Number, StoreError> {
        self.account(account_id).await?;
        if let Some(agent) = agent_id {
            self.agent(account_id, agent).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO numbers (number, account_id, agent_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (number) DO NOTHING",
        )
        .bind(number)
        .bind(account_id)
        .bind(agent_id)
        .bind(now_ms())
        .execute(self.writer())
        .await?
        .rows_affected();
        if inserted == 0 {
            // Whose it is stays unsaid: it may be another account's.
            return Err(StoreError::Conflict(format!("{number} is already taken")));
        }
        self.number(account_id, number).await
    }

    pub async fn number(&self, account_id: &str, number: &str) -> Result<Number, StoreError> {
        let row = sqlx::query(
            "SELECT number, account_id, agent_id, created_at FROM numbers \
             WHERE number = $1 AND account_id = $2",
        )
        .bind(number)
        .bind(account_id)
        .fetch_optional(self.writer())
        .await?
        .ok_or(StoreError::NotFound("number"))?;
        number_from(&row)
    }

    pub async fn numbers(&self, account_id: &str) -> Result<Vec<Number>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, account_id, agent_id, created_at FROM numbers \
             WHERE account_id = $1 ORDER BY number",
        )
        .bind(account_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(number_from).collect()
    }

    pub async fn delete_number(&self, account_id: &str, number: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM numbers WHERE number = $1 AND account_id = $2")
            .bind(number)
            .bind(account_id)
            .execute(self.writer())
            .await?
            .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound("number"));
        }
        Ok(())
    }

    /// Points a number at another of its account's agents (or at none).
    pub async fn update_number(
        &self,
        account_id: &str,
        number: &str,
        agent_id: Option<&str>,
    ) -> Result<Number, StoreError> {
        if let Some(agent) = agent_id {
            self.agent(account_id, agent).await?;
        }
        let done =
            sqlx::query("UPDATE numbers SET agent_id = $1 WHERE number = $2 AND account_id = $3")
                .bind(agent_id)
                .bind(number)
                .bind(account_id)
                .execute(self.writer())
                .await?
                .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound("number"));
        }
        self.number(account_id, number).await
    }

    /// The account an agent, a number or a lease belongs to (for the operator's keys, which
    /// act on any account).
    pub async fn owner(&self, what: Owned, id: &str) -> Result<String, StoreError> {
        let (sql, name) = match what {
            Owned::Agent => ("SELECT account_id FROM agents WHERE id = $1", "agent"),
            Owned::Number => ("SELECT account_id FROM numbers WHERE number = $1", "number"),
            Owned::Lease => ("SELECT account_id FROM leases WHERE id = $1", "lease"),
        };
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .ok_or(StoreError::NotFound(name))?;
        Ok(row.try_get("account_id")?)
    }

    /// Where a call to `dialled` goes: its number's account and agent; otherwise, for a
    /// call from a trunk with a default (`trunk_default`: account, agent), there; otherwise,
    /// with `catch_all` (or, when that is not set, while no number is configured at all),
    /// the operator's account and the default agent; otherwise nowhere (404).
    pub async fn route(
        &self,
        dialled: Option<&str>,
        trunk_default: Option<(&str, Option<&str>)>,
        catch_all: Option<bool>,
    ) -> Result<Option<Route>, StoreError> {
        if let Some(number) = dialled {
            let row = sqlx::query(
                "SELECT n.account_id, n.agent_id, a.config, a.updated_at FROM numbers n \
                 LEFT JOIN agents a ON a.id = n.agent_id WHERE n.number = $1",
            )
            .bind(number)
            .fetch_optional(self.reader())
            .await?;
            if let Some(row) = row {
                let config: Option<String> = row.try_get("config")?;
                let updated: Option<i64> = row.try_get("updated_at")?;
                return Ok(Some(Route {
                    account_id: row.try_get("account_id")?,
                    agent_id: row.try_get("agent_id")?,
                    number: Some(number.to_string()),
                    agent: config.map(|c| {
                        let settings = serde_json::from_str(&c).unwrap_or(Value::Null);
                        (settings, updated.unwrap_or(0))
                    }),
                }));
            }
        }
        if let Some((account_id, agent_id)) = trunk_default {
            let agent = match agent_id {
                Some(id) => Some(self.agent(account_id, id).await?),
                None => None,
            };
            return Ok(Some(Route {
                account_id: account_id.to_string(),
                agent_id: agent.as_ref().map(|a| a.id.clone()),
                number: None,
                agent: agent.map(|a| (a.config, a.updated_at)),
            }));
        }
        let catch_all = match catch_all {
            Some(explicit) => explicit,
            None => sqlx::query("SELECT number FROM numbers LIMIT 1")
                .fetch_optional(self.reader())
                .await?
                .is_none(),
        };
        Ok(catch_all.then(|| Route {
            account_id: super::accounts::OPERATOR_ACCOUNT.to_string(),
            agent_id: None,
            number: None,
            agent: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_e164() {
        assert_eq!(e164("+1 (555) 123-4567").as_deref(), Some("+15551234567"));
        assert_eq!(e164("34911234567").as_deref(), Some("+34911234567"));
        assert_eq!(e164("5551234").as_deref(), None, "too short without a +");
        assert_eq!(e164("+0123").as_deref(), None);
        assert_eq!(e164("+1234567890123456").as_deref(), None, "16 digits");
        assert_eq!(e164("alice"), None);
        assert_eq!(e164("+"), None);
    }

    #[test]
    fn the_dialled_number_is_the_uris_user_part() {
        assert_eq!(
            dialled("sip:+15551234567@10.0.0.1:5060;user=phone").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            dialled("<tel:+34-91-123-4567>").as_deref(),
            Some("+34911234567")
        );
        assert_eq!(
            dialled("sip:15551234567@carrier.example").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(dialled("sip:service@127.0.0.1:5060"), None);
        assert_eq!(dialled("sip:127.0.0.1"), None);
    }
}
