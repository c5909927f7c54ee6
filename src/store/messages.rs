//! Text messages (SMS) in and out. Inbound ones keep the provider's complete webhook
//! payload and are unique by the provider's message id, so a replayed webhook finds its
//! message instead of making another. Outbound ones wait here (the outbox) until they are
//! due (business hours, the account's rate), are claimed by one node, and are sent; every
//! delivery-status callback is kept as received, and a message's status only moves forward.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::clock::{ser_opt_time, ser_time};
use super::contacts::{append_in, contact_in, Channel, Contact, NewEntry, Role};
use super::{now_ms, random_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    pub account_id: String,
    pub contact_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Who made it: `twilio` (received), `api`, `bulk`, `agent`.
    pub source: String,
    pub from: String,
    pub to: String,
    pub body: String,
    /// `scheduled` (held for business hours), `pending` (in Parley's outbox), then the
    /// provider's: `accepted`, `queued`, `sending`, `sent`, `delivered`, `undelivered`,
    /// `failed`, `read`; inbound: `received`.
    pub status: String,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// The provider's id (Twilio's `MessageSid`), once it has one.
    pub provider_sid: Option<String>,
    pub segments: i64,
    /// `GSM-7` or `UCS-2`.
    pub encoding: String,
    pub idempotency_key: Option<String>,
    /// Send attempts made so far.
    pub attempts: i64,
    /// Not sent before this time (business hours, rate limit).
    #[serde(serialize_with = "ser_opt_time")]
    pub send_after: Option<i64>,
    /// The provider's webhook payload, as received (inbound only).
    pub raw: Option<Value>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "ser_time")]
    pub updated_at: i64,
}

/// Where a status stands in a message's life: a status callback applies only when it moves
/// the message forward (callbacks arrive out of order; a late `sent` must not undo
/// `delivered`). None: not a status we know.
pub fn status_rank(status: &str) -> Option<i64> {
    Some(match status {
        "scheduled" | "pending" => 0,
        "accepted" => 1,
        "queued" => 2,
        "sending" => 3,
        "sent" | "receiving" => 4,
        "delivered" | "undelivered" | "failed" | "canceled" | "received" => 5,
        "read" => 6,
        _ => return None,
    })
}

/// The statuses after which nothing more happens to an outbound message but a `read`.
pub fn is_final(status: &str) -> bool {
    status_rank(status).is_some_and(|r| r >= 5)
}

const COLUMNS: &str = "id, account_id, contact_id, direction, source, from_number, to_number, \
     body, status, error_code, error_message, provider_sid, segments, encoding, \
     idempotency_key, attempts, send_after, raw, created_at, updated_at";

fn message_from(row: &sqlx::any::AnyRow) -> Result<Message, StoreError> {
    let raw: Option<String> = row.try_get("raw")?;
    Ok(Message {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        contact_id: row.try_get("contact_id")?,
        direction: row.try_get("direction")?,
        source: row.try_get("source")?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        provider_sid: row.try_get("provider_sid")?,
        segments: super::int(row, "segments")?,
        encoding: row.try_get("encoding")?,
        idempotency_key: row.try_get("idempotency_key")?,
        attempts: super::int(row, "attempts")?,
        send_after: row.try_get("send_after")?,
        raw: raw.and_then(|r| serde_json::from_str(&r).ok()),
        created_at: super::int(row, "created_at")?,
        updated_at: super::int(row, "updated_at")?,
    })
}

/// A message received from the provider.
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    pub account_id: &'a str,
    /// E.164.
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub sid: &'a str,
    /// The webhook's parameters, all of them.
    pub raw: &'a Value,
    pub segments: i64,
    pub encoding: &'a str,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    pub account_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    /// `api`, `bulk` or `agent`.
    pub source: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// `pending`, or `scheduled` when held for business hours.
    pub status: &'a str,
    pub send_after: i64,
    pub segments: i64,
    pub encoding: &'a str,
}

/// The outcome of recording a message: the message, its contact, and whether it is new
/// (false: the same provider id or idempotency key was seen before).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub message: Message,
    pub contact: Contact,
    pub created: bool,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Records a received message, its contact and its timeline entry in one transaction;
    /// a message already recorded under the same provider id is returned as it is.
    pub async fn record_inbound(&self, m: &Inbound<'_>) -> Result<Recorded, StoreError> {
        if let Some(found) = self.by_sid(m.sid).await? {
            return self.recorded(found, false).await;
        }
        let now = now_ms();
        let id = random_id("msg_", 20);
        let mut tx = self.writer().begin().await?;
        let contact = contact_in(&mut tx, m.account_id, m.from, now).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO messages ({COLUMNS}, status_rank) VALUES \
             ($1, $2, $3, 'inbound', 'twilio', $4, $5, $6, 'received', NULL, NULL, $7, $8, $9, \
             NULL, 0, NULL, $10, $11, $12, 5)"
        ))
        .bind(&id)
        .bind(m.account_id)
        .bind(&contact.id)
        .bind(m.from)
        .bind(m.to)
        .bind(m.body)
        .bind(m.sid)
        .bind(m.segments)
        .bind(m.encoding)
        .bind(m.raw.to_string())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The same webhook on another connection got in first.
            Err(e) if unique_violation(&e) => {
                drop(tx);
                let found = self
                    .by_sid(m.sid)
                    .await?
                    .ok_or(StoreError::NotFound("message"))?;
                return self.recorded(found, false).await;
            }
            Err(e) => return Err(e.into()),
        }
        self.recorded_new(tx, &id, contact, Role::Contact, m.body, now)
            .await
    }

    /// Puts new message `id`'s line on its contact's timeline, commits `tx`, and reads the
    /// message back.
    async fn recorded_new(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        id: &str,
        contact: Contact,
        role: Role,
        body: &str,
        now: i64,
    ) -> Result<Recorded, StoreError> {
        let entry = NewEntry {
            channel: Channel::Sms,
            role,
            text: body,
            ref_id: Some(id),
            detail: None,
        };
        append_in(&mut tx, &contact.account_id, &contact.id, &entry, now).await?;
        tx.commit().await?;
        let message = self
            .message_by_id(id)
            .await?
            .ok_or(StoreError::NotFound("message"))?;
        Ok(Recorded {
            message,
            contact,
            created: true,
        })
    }

    async fn recorded(&self, message: Message, created: bool) -> Result<Recorded, StoreError> {
        let contact_id = message.contact_id.clone().unwrap_or_default();
        let contact = self.contact(&message.account_id, &contact_id).await?;
        Ok(Recorded {
            message,
            contact,
            created,
        })
    }

    async fn by_sid(&self, sid: &str) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE provider_sid = $1"
        ))
        .bind(sid)
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(message_from).transpose()
    }

    async fn message_by_id(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM messages WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.writer())
            .await?;
        row.as_ref().map(message_from).transpose()
    }

    /// Queues a message to send, with its timeline entry; with an idempotency key already
    /// used, the message it made is returned (a different message under the same key is a
    /// conflict).
    pub async fn enqueue_outbound(&self, m: &Outbound<'_>) -> Result<Recorded, StoreError> {
        if let Some(key) = m.idempotency_key {
            if let Some(found) = self.by_idempotency(m.account_id, key).await? {
                return self.message_replayed(found, m).await;
            }
        }
        let now = now_ms();
        let id = random_id("msg_", 20);
        let rank = status_rank(m.status).unwrap_or(0);
        let mut tx = self.writer().begin().await?;
        let contact = contact_in(&mut tx, m.account_id, m.to, now).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO messages ({COLUMNS}, status_rank) VALUES \
             ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, NULL, NULL, NULL, $9, $10, $11, 0, \
             $12, NULL, $13, $14, $15)"
        ))
        .bind(&id)
        .bind(m.account_id)
        .bind(&contact.id)
        .bind(m.source)
        .bind(m.from)
        .bind(m.to)
        .bind(m.body)
        .bind(m.status)
        .bind(m.segments)
        .bind(m.encoding)
        .bind(m.idempotency_key)
        .bind(m.send_after)
        .bind(now)
        .bind(now)
        .bind(rank)
        .execute(&mut *tx)
        .await;
        match (inserted, m.idempotency_key) {
            (Ok(_), _) => {}
            (Err(e), Some(key)) if unique_violation(&e) => {
                drop(tx);
                let found = self
                    .by_idempotency(m.account_id, key)
                    .await?
                    .ok_or(StoreError::NotFound("message"))?;
                return self.message_replayed(found, m).await;
            }
            (Err(e), _) => return Err(e.into()),
        }
        self.recorded_new(tx, &id, contact, Role::Agent, m.body, now)
            .await
    }

    async fn message_replayed(
        &self,
        found: Message,
        m: &Outbound<'_>,
    ) -> Result<Recorded, StoreError> {
        if found.to != m.to || found.from != m.from || found.body != m.body {
            return Err(StoreError::Conflict(
                "the idempotency key was used for a different message".into(),
            ));
        }
        self.recorded(found, false).await
    }

    async fn by_idempotency(
        &self,
        account_id: &str,
        key: &str,
    ) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE account_id = $1 AND idempotency_key = $2"
        ))
        .bind(account_id)
        .bind(key)
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(message_from).transpose()
    }

    /// Applies a delivery-status callback for provider id `sid`: kept as received, and the
    /// message's status moves to `status` only if that is further along. Returns the message
    /// (None when no message has that id yet: the callback is kept and applied when the
    /// send that made the id is recorded) and whether the status changed.
    pub async fn apply_status(
        &self,
        sid: &str,
        status: &str,
        error_code: Option<i64>,
        error_message: Option<&str>,
        raw: &Value,
    ) -> Result<Option<(Message, bool)>, StoreError> {
        let now = now_ms();
        let rank = status_rank(status).unwrap_or(-1);
        let Some(found) = self.by_sid(sid).await? else {
            self.keep_event(sid, status, error_code, raw, false, now)
                .await?;
            return Ok(None);
        };
        let mut tx = self.writer().begin().await?;
        let changed = sqlx::query(
            "UPDATE messages SET status = $1, status_rank = $2, error_code = $3, \
             error_message = $4, updated_at = $5 WHERE id = $6 AND status_rank < $7",
        )
        .bind(status)
        .bind(rank)
        .bind(error_code)
        .bind(error_message)
        .bind(now)
        .bind(&found.id)
        .bind(rank)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        sqlx::query(
            "INSERT INTO message_events (message_id, status, error_code, raw, applied, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&found.id)
        .bind(status)
        .bind(error_code)
        .bind(raw.to_string())
        .bind(i64::from(changed))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let message = self.message_by_id(&found.id).await?.unwrap_or(found);
        Ok(Some((message, changed)))
    }

    async fn keep_event(
        &self,
        message_id: &str,
        status: &str,
        error_code: Option<i64>,
        raw: &Value,
        applied: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO message_events (message_id, status, error_code, raw, applied, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(message_id)
        .bind(status)
        .bind(error_code)
        .bind(raw.to_string())
        .bind(i64::from(applied))
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The status callbacks kept for message `id`, in arrival order: (status, applied, raw).
    pub async fn message_events(&self, id: &str) -> Result<Vec<(String, bool, Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, applied, raw FROM message_events WHERE message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let raw: String = r.try_get("raw")?;
                Ok((
                    r.try_get("status")?,
                    super::int(r, "applied")? != 0,
                    serde_json::from_str(&raw).unwrap_or(Value::Null),
                ))
            })
            .collect()
    }

    /// Outbound messages due by `now` and not held by a node, oldest first.
    pub async fn due_messages(&self, now: i64, limit: i64) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE status IN ('pending', 'scheduled') \
             AND send_after <= $1 AND (claimed_until IS NULL OR claimed_until < $2) \
             ORDER BY send_after, id LIMIT $3"
        ))
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(message_from).collect()
    }

    /// When the next unclaimed outbound message falls due (None: none waiting).
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(send_after) AS at FROM messages WHERE status IN ('pending', 'scheduled') \
             AND (claimed_until IS NULL OR claimed_until < $1)",
        )
        .bind(now_ms())
        .fetch_one(self.writer())
        .await?;
        Ok(row.try_get::<Option<i64>, _>("at")?)
    }

    /// Takes message `id` for this node until `until` (ms); false when another has it.
    pub async fn claim_message(&self, id: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET claimed_until = $1 WHERE id = $2 \
             AND status IN ('pending', 'scheduled') \
             AND (claimed_until IS NULL OR claimed_until < $3)",
        )
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Holds message `id` until `send_after` with `status` (`pending` or `scheduled`).
    pub async fn hold_message(
        &self,
        id: &str,
        status: &str,
        send_after: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET status = $1, send_after = $2, claimed_until = NULL, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(send_after)
        .bind(now_ms())
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records that the provider took message `id` as `sid` with `status`, then applies any
    /// status callback that arrived for `sid` before this was recorded.
    pub async fn message_sent(
        &self,
        id: &str,
        sid: &str,
        status: &str,
        attempts: i64,
    ) -> Result<Message, StoreError> {
        let rank = status_rank(status).unwrap_or(1);
        sqlx::query(
            "UPDATE messages SET provider_sid = $1, status = $2, status_rank = $3, \
             attempts = $4, claimed_until = NULL, updated_at = $5 WHERE id = $6",
        )
        .bind(sid)
        .bind(status)
        .bind(rank)
        .bind(attempts)
        .bind(now_ms())
        .bind(id)
        .execute(self.writer())
        .await?;
        let early = sqlx::query(
            "SELECT status, error_code, raw FROM message_events WHERE message_id = $1 ORDER BY id",
        )
        .bind(sid)
        .fetch_all(self.writer())
        .await?;
        for row in &early {
            let status: String = row.try_get("status")?;
            let raw: String = row.try_get("raw")?;
            let raw: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
            let code: Option<i64> = row.try_get("error_code")?;
            let message = raw["ErrorMessage"].as_str().map(str::to_string);
            self.apply_status(sid, &status, code, message.as_deref(), &raw)
                .await?;
        }
        if !early.is_empty() {
            sqlx::query("DELETE FROM message_events WHERE message_id = $1")
                .bind(sid)
                .execute(self.writer())
                .await?;
        }
        self.message_by_id(id)
            .await?
            .ok_or(StoreError::NotFound("message"))
    }

    /// Records that message `id` could not be sent.
    pub async fn message_failed(
        &self,
        id: &str,
        error_code: Option<i64>,
        error_message: &str,
        attempts: i64,
    ) -> Result<Message, StoreError> {
        sqlx::query(
            "UPDATE messages SET status = 'failed', status_rank = 5, error_code = $1, \
             error_message = $2, attempts = $3, claimed_until = NULL, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(error_code)
        .bind(error_message)
        .bind(attempts)
        .bind(now_ms())
        .bind(id)
        .execute(self.writer())
        .await?;
        self.message_by_id(id)
            .await?
            .ok_or(StoreError::NotFound("message"))
    }

    /// Message `id` of `account_id`.
    pub async fn message(&self, account_id: &str, id: &str) -> Result<Message, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(self.reader())
        .await?
        .ok_or(StoreError::NotFound("message"))?;
        message_from(&row)
    }

    /// An account's messages, newest first, before the (created_at, id) of a previous page.
    pub async fn messages(
        &self,
        account_id: &str,
        contact_id: Option<&str>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM messages WHERE account_id = $1");
        let mut n = 1;
        if contact_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND contact_id = ${n}"));
        }
        if before.is_some() {
            sql.push_str(&format!(
                " AND (created_at < ${} OR (created_at = ${} AND id < ${}))",
                n + 1,
                n + 2,
                n + 3
            ));
            n += 3;
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut q = sqlx::query(&sql).bind(account_id);
        if let Some(c) = contact_id {
            q = q.bind(c);
        }
        if let Some((at, id)) = before {
            q = q.bind(at).bind(at).bind(id);
        }
        let rows = q.bind(limit).fetch_all(self.reader()).await?;
        rows.iter().map(message_from).collect()
    }

    /// Marks inbound message `id` as answered (or given up on) by the agent.
    pub async fn message_handled(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET handled_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Inbound messages received since `since` (ms) that the agent has not answered: those a
    /// node that stopped left behind.
    pub async fn unhandled_messages(&self, since: i64) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM messages WHERE direction = 'inbound' AND handled_at IS NULL \
             AND created_at >= $1 ORDER BY created_at"
        ))
        .bind(since)
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(message_from).collect()
    }

    /// The account's messaging settings (`business_hours`, `sms_per_minute`), as stored.
    pub async fn messaging_settings(&self, account_id: &str) -> Result<Value, StoreError> {
        let row = sqlx::query("SELECT messaging FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(self.reader())
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        let raw: Option<String> = row.try_get("messaging")?;
        Ok(raw
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_else(|| Value::Object(Default::default())))
    }

    pub async fn set_messaging_settings(
        &self,
        account_id: &str,
        settings: &Value,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE accounts SET messaging = $1 WHERE id = $2")
            .bind(settings.to_string())
            .bind(account_id)
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }
}
