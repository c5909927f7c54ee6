//! Webhook subscriptions and their durable outbox: every event an account subscribed to
//! becomes a delivery row before anything is sent, so deliveries survive restarts; each try
//! is logged as an attempt.

use serde::Serialize;
use sqlx::Row;

use super::clock::{ser_opt_time, ser_time};
use super::{int, now_ms, random_id, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// Event types delivered (`*` for all).
    pub events: Vec<String>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub next_attempt_at: i64,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "ser_opt_time")]
    pub delivered_at: Option<i64>,
}

/// A delivery due to be sent, with what sending needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub event_type: String,
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

/// The outcome of one try.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Tries before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 15;

fn webhook_from(row: &sqlx::any::AnyRow) -> Result<Webhook, StoreError> {
    let events: String = row.try_get("events")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        url: row.try_get("url")?,
        events: events.split(',').map(str::to_string).collect(),
        created_at: int(row, "created_at")?,
    })
}

impl Store {
    /// A new subscription; its secret is returned by the caller only once.
    pub async fn create_webhook(
        &self,
        account_id: &str,
        url: &str,
        events: &[String],
        secret: &str,
    ) -> Result<Webhook, StoreError> {
        self.account(account_id).await?;
        let id = random_id("whk_", 16);
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhooks (id, account_id, url, secret, events, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(url)
        .bind(secret)
        .bind(events.join(","))
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(Webhook {
            id,
            account_id: account_id.to_string(),
            url: url.to_string(),
            events: events.to_vec(),
            created_at: now,
        })
    }

    pub async fn webhooks(&self, account_id: &str) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, url, events, created_at FROM webhooks \
             WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(webhook_from).collect()
    }

    /// Stops a subscription (its pending deliveries are not sent).
    pub async fn delete_webhook(&self, account_id: &str, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE webhooks SET deleted_at = $1 WHERE id = $2 AND account_id = $3 \
             AND deleted_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(account_id)
        .execute(self.writer())
        .await?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        Ok(())
    }

    /// Queues `payload` for every subscription of `account_id` that wants `event_type`;
    /// returns how many deliveries were queued.
    pub async fn enqueue_event(
        &self,
        account_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<usize, StoreError> {
        let hooks = self.webhooks(account_id).await?;
        let now = now_ms();
        let mut queued = 0;
        for hook in hooks
            .iter()
            .filter(|h| h.events.iter().any(|e| e == "*" || e == event_type))
        {
            sqlx::query(
                "INSERT INTO webhook_deliveries (webhook_id, account_id, event_type, payload, \
                 state, attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6)",
            )
            .bind(&hook.id)
            .bind(account_id)
            .bind(event_type)
            .bind(payload)
            .bind(now)
            .bind(now)
            .execute(self.writer())
            .await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Deliveries whose time has come, oldest first.
    pub async fn due_deliveries(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, w.url, w.secret, d.event_type, d.payload, d.attempts, \
             d.next_attempt_at FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND w.deleted_at IS NULL \
             ORDER BY d.next_attempt_at, d.id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: int(r, "id")?,
                    url: r.try_get("url")?,
                    secret: r.try_get("secret")?,
                    event_type: r.try_get("event_type")?,
                    payload: r.try_get("payload")?,
                    attempts: int(r, "attempts")?,
                    next_attempt_at: int(r, "next_attempt_at")?,
                })
            })
            .collect()
    }

    /// Takes a due delivery for this node until `until` (other nodes skip it meanwhile);
    /// false when another node took it first.
    pub async fn claim_delivery(&self, d: &DueDelivery, until: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id = $2 \
             AND state = 'pending' AND next_attempt_at = $3",
        )
        .bind(until)
        .bind(d.id)
        .bind(d.next_attempt_at)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Logs a try and moves the delivery on: delivered on a 2xx, otherwise retried after
    /// `retry_at`, or given up after [`MAX_ATTEMPTS`].
    pub async fn record_attempt(
        &self,
        d: &DueDelivery,
        attempt: &Attempt,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let ok = attempt.status.is_some_and(|s| (200..300).contains(&s));
        let attempts = d.attempts + 1;
        let state = if ok {
            "delivered"
        } else if attempts >= MAX_ATTEMPTS {
            "failed"
        } else {
            "pending"
        };
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, at, status, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(d.id)
        .bind(now)
        .bind(attempt.status)
        .bind(attempt.error.as_deref())
        .bind(attempt.duration_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, attempts = $2, last_status = $3, \
             last_error = $4, next_attempt_at = $5, delivered_at = $6 WHERE id = $7",
        )
        .bind(state)
        .bind(attempts)
        .bind(attempt.status)
        .bind(attempt.error.as_deref())
        .bind(retry_at)
        .bind(ok.then_some(now))
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A subscription's deliveries, newest first.
    pub async fn deliveries(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, webhook_id, event_type, state, attempts, last_status, last_error, \
             next_attempt_at, created_at, delivered_at FROM webhook_deliveries \
             WHERE account_id = $1 AND webhook_id = $2 ORDER BY id DESC LIMIT 100",
        )
        .bind(account_id)
        .bind(webhook_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: int(r, "id")?,
                    webhook_id: r.try_get("webhook_id")?,
                    event_type: r.try_get("event_type")?,
                    state: r.try_get("state")?,
                    attempts: int(r, "attempts")?,
                    last_status: r.try_get::<Option<i64>, _>("last_status")?,
                    last_error: r.try_get("last_error")?,
                    next_attempt_at: int(r, "next_attempt_at")?,
                    created_at: int(r, "created_at")?,
                    delivered_at: r.try_get::<Option<i64>, _>("delivered_at")?,
                })
            })
            .collect()
    }
}
