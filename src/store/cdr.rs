//! Call detail records: one per call (answered, or refused for its number, capacity, its
//! SDP, its credit or a failure; refusals before routing belong to the operator), with who, when, how long, what it cost, how it
//! ended, the media quality and each turn's latency. Written by [`CdrWriter`], a task of its
//! own, so a call never waits on the database; read back filtered and in pages (newest
//! first, keyset cursors), or exported page by page without loading everything.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::mpsc;

use super::clock::{ser_opt_time, ser_time};
use super::{int, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cdr {
    pub id: String,
    pub account_id: String,
    pub agent_id: Option<String>,
    /// The SIP Call-ID.
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `sip`, the only channel calls come over (text messages are kept in `messages`).
    pub channel: String,
    pub from_uri: String,
    pub to_uri: String,
    /// The configured number the call reached, E.164.
    pub number: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub started_at: i64,
    #[serde(serialize_with = "ser_opt_time")]
    pub answered_at: Option<i64>,
    #[serde(serialize_with = "ser_time")]
    pub ended_at: i64,
    /// Answer to end, in ms (0 when not answered).
    pub duration_ms: i64,
    pub billable_seconds: i64,
    /// Micro-units.
    pub cost: i64,
    /// Why it ended: `remote_bye`; when Parley ended it, why: `agent`, `api`, `drain`,
    /// `credit`, `max_duration`, `media_timeout`, `lease_closed`, `transferred` (`local_bye`
    /// for any other); `cancelled`, `ack_timeout`, `failed`, `shutdown`; refused calls: `unknown_number`, `capacity`, `bad_sdp`, `no_ports`, `no_media`,
    /// `no_credit`, `unavailable`.
    pub hangup_cause: String,
    /// Who ended it: `caller`, `parley` or `none` (refused).
    pub hangup_side: String,
    /// The final SIP status of the INVITE (200 when answered).
    pub final_code: i64,
    pub codec: Option<String>,
    pub packets_lost: i64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    /// E-model MOS estimate of what Parley received.
    pub mos: Option<f64>,
    /// Each turn's latency stages, in ms.
    pub turns: Value,
    /// What was said, in order: `[{"role": "caller"|"agent", "text": …}]`; the agent's
    /// lines as far as the caller heard them.
    pub transcript: Value,
    pub recording: Option<String>,
    /// The configured trunk the call came in or went out through, by name.
    pub trunk: Option<String>,
    /// The Parley node that held the call ([`crate::config::RedisConfig::node_name`]); none
    /// on records written before nodes were named.
    pub node: Option<String>,
}

/// Filters of a listing or an export.
#[derive(Debug, Clone, Default)]
pub struct CdrQuery {
    pub account_id: String,
    /// Started at or after (ms).
    pub from: Option<i64>,
    /// Started before (ms).
    pub to: Option<i64>,
    /// The number called.
    pub number: Option<String>,
    pub agent_id: Option<String>,
    /// Answered calls only (`Some(true)`) or refused ones only (`Some(false)`).
    pub answered: Option<bool>,
    /// Continue after this (started_at, id), from a previous page.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

const COLUMNS: &str = "id, account_id, agent_id, call_id, direction, channel, from_uri, to_uri, \
     number, started_at, answered_at, ended_at, duration_ms, billable_s, cost, hangup_cause, \
     hangup_side, final_code, codec, packets_lost, loss_percent, jitter_ms, mos, turns, recording, transcript, trunk, node";

fn cdr_from(row: &sqlx::any::AnyRow) -> Result<Cdr, StoreError> {
    let turns: String = row.try_get("turns")?;
    let transcript: String = row.try_get("transcript")?;
    Ok(Cdr {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        agent_id: row.try_get("agent_id")?,
        call_id: row.try_get("call_id")?,
        direction: row.try_get("direction")?,
        channel: row.try_get("channel")?,
        from_uri: row.try_get("from_uri")?,
        to_uri: row.try_get("to_uri")?,
        number: row.try_get("number")?,
        started_at: int(row, "started_at")?,
        answered_at: row.try_get::<Option<i64>, _>("answered_at")?,
        ended_at: int(row, "ended_at")?,
        duration_ms: int(row, "duration_ms")?,
        billable_seconds: int(row, "billable_s")?,
        cost: int(row, "cost")?,
        hangup_cause: row.try_get("hangup_cause")?,
        hangup_side: row.try_get("hangup_side")?,
        final_code: int(row, "final_code")?,
        codec: row.try_get("codec")?,
        packets_lost: int(row, "packets_lost")?,
        loss_percent: row.try_get("loss_percent")?,
        jitter_ms: row.try_get("jitter_ms")?,
        mos: row.try_get("mos")?,
        turns: serde_json::from_str(&turns).unwrap_or(Value::Array(vec![])),
        transcript: serde_json::from_str(&transcript).unwrap_or(Value::Array(vec![])),
        recording: row.try_get("recording")?,
        trunk: row.try_get("trunk")?,
        node: row.try_get("node")?,
    })
}

impl Store {
    pub async fn insert_cdr(&self, c: &Cdr) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO cdrs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&c.id)
        .bind(&c.account_id)
        .bind(c.agent_id.as_deref())
        .bind(&c.call_id)
        .bind(&c.direction)
        .bind(&c.channel)
        .bind(&c.from_uri)
        .bind(&c.to_uri)
        .bind(c.number.as_deref())
        .bind(c.started_at)
        .bind(c.answered_at)
        .bind(c.ended_at)
        .bind(c.duration_ms)
        .bind(c.billable_seconds)
        .bind(c.cost)
        .bind(&c.hangup_cause)
        .bind(&c.hangup_side)
        .bind(c.final_code)
        .bind(c.codec.as_deref())
        .bind(c.packets_lost)
        .bind(c.loss_percent)
        .bind(c.jitter_ms)
        .bind(c.mos)
        .bind(c.turns.to_string())
        .bind(c.recording.as_deref())
        .bind(c.transcript.to_string())
        .bind(c.trunk.as_deref())
        .bind(c.node.as_deref())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn cdr(&self, account_id: &str, id: &str) -> Result<Cdr, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cdrs WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(self.reader())
        .await?
        .ok_or(StoreError::NotFound("call record"))?;
        cdr_from(&row)
    }

    /// One page of an account's records, newest first.
    pub async fn cdrs(&self, q: &CdrQuery) -> Result<Vec<Cdr>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM cdrs WHERE account_id = $1");
        let mut n = 1;
        let mut next = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if q.from.is_some() {
            next(&mut sql, " AND started_at >= ?");
        }
        if q.to.is_some() {
            next(&mut sql, " AND started_at < ?");
        }
        if q.number.is_some() {
            next(&mut sql, " AND number = ?");
        }
        if q.agent_id.is_some() {
            next(&mut sql, " AND agent_id = ?");
        }
        match q.answered {
            Some(true) => sql.push_str(" AND answered_at IS NOT NULL"),
            Some(false) => sql.push_str(" AND answered_at IS NULL"),
            None => {}
        }
        if q.after.is_some() {
            // Keyset: strictly older than the last row of the previous page.
            next(&mut sql, " AND (started_at < ?");
            next(&mut sql, " OR (started_at = ?");
            next(&mut sql, " AND id < ?))");
        }
        sql.push_str(" ORDER BY started_at DESC, id DESC LIMIT ");
        sql.push_str(&q.limit.clamp(1, 1000).to_string());
        let mut query = sqlx::query(&sql).bind(&q.account_id);
        if let Some(v) = q.from {
            query = query.bind(v);
        }
        if let Some(v) = q.to {
            query = query.bind(v);
        }
        if let Some(v) = &q.number {
            query = query.bind(v);
        }
        if let Some(v) = &q.agent_id {
            query = query.bind(v);
        }
        if let Some((at, id)) = &q.after {
            query = query.bind(*at).bind(*at).bind(id);
        }
        let rows = query.fetch_all(self.reader()).await?;
        rows.iter().map(cdr_from).collect()
    }
}

/// Writes records off the call path: calls hand them over and go on; the writer retries
/// until the database takes each one (a record is never dropped while Parley runs).
#[derive(Clone)]
pub struct CdrWriter {
    tx: mpsc::Sender<Cdr>,
    /// Handed over and not yet in the database.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Records waiting for the database at most; a call ending when it is full waits its turn.
const QUEUE: usize = 10_000;

impl CdrWriter {
    pub fn start(store: Store) -> CdrWriter {
        let (tx, mut rx) = mpsc::channel::<Cdr>(QUEUE);
        let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = pending.clone();
        tokio::spawn(async move {
            while let Some(cdr) = rx.recv().await {
                let mut backoff = std::time::Duration::from_millis(100);
                while let Err(e) = store.insert_cdr(&cdr).await {
                    tracing::warn!(cdr = %cdr.id, error = %e, "cannot write the call record; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                }
                written.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        CdrWriter { tx, pending }
    }

    pub async fn write(&self, cdr: Cdr) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send(cdr).await.is_err() {
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!("the call record writer has stopped");
        }
    }

    /// Records handed over and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::CallRecord;

    #[tokio::test]
    async fn a_record_keeps_the_node_that_held_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("", dir.path()).await.unwrap();
        let account = store.create_account("A").await.unwrap().id;
        for (call, node) in [("c1", Some("media-1")), ("c2", None)] {
            let record = CallRecord::inbound(call, "sip:a@b", "sip:c@d");
            let record = match node {
                Some(node) => record.on_node(node),
                None => record,
            };
            let mut cdr = record.refused(503, "draining");
            cdr.account_id = account.clone();
            store.insert_cdr(&cdr).await.unwrap();
            let read = store.cdr(&account, &cdr.id).await.unwrap();
            assert_eq!(read.node.as_deref(), node);
            assert_eq!(read, cdr);
        }
    }
}
