//! Prepaid billing with heartbeat leases, after Diameter credit control (RFC 4006 / 8506):
//! a call reserves units before it is answered (initial), reports what it used and gets more
//! at each heartbeat (update), and reports its final usage when it ends (terminate), which
//! settles the cost and returns what was held but not used. Each grant has a validity; a
//! lease not renewed within it (its node died) is settled by the sweeper at the last reported
//! usage plus one billing increment. When the balance cannot cover what was asked, the grant
//! is cut to what it can cover and carries a final-unit indication: the call must end (or be
//! told so) when it has used it.
//!
//! Every operation runs in one transaction that first locks the account's balance row (on
//! PostgreSQL a row lock; on SQLite the single writer connection already serialises writes),
//! so concurrent calls of one account see each other's holds. The invariants are CHECK
//! constraints on that row, so the database itself refuses a write that would break them:
//! nothing held below zero, and `balance - reserved + overdraft >= 0`. Every change of the
//! balance or of what is held is an append-only ledger row (`amount` moves the balance,
//! `hold` what is reserved): summed, they equal the row.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::clock::{add_months, ser_time};
use super::{int, now_ms, random_id, Store, StoreError};

/// An account's rate plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Micro-units per minute of call.
    pub rate_per_minute: i64,
    /// Usage is billed in whole increments of this many seconds (1, 6, 60 …).
    pub increment_s: i64,
    /// Free seconds each month (reset a calendar month after the plan was set).
    pub free_seconds: i64,
    /// How far below zero the balance may go.
    pub overdraft: i64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            rate_per_minute: 0,
            increment_s: 1,
            free_seconds: 0,
            overdraft: 0,
        }
    }
}

/// An account's money as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub account_id: String,
    /// Settled money (micro-units): top-ups less what calls cost.
    pub balance: i64,
    /// Held by open leases.
    pub reserved: i64,
    /// What new grants can still take: balance - reserved + overdraft.
    pub available: i64,
    pub plan: Plan,
    pub free_seconds_left: i64,
    #[serde(serialize_with = "ser_time")]
    pub free_resets_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Open,
    Released,
    Expired,
}

impl LeaseState {
    fn as_str(self) -> &'static str {
        match self {
            LeaseState::Open => "open",
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> LeaseState {
        match s {
            "open" => LeaseState::Open,
            "released" => LeaseState::Released,
            _ => LeaseState::Expired,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub id: String,
    pub account_id: String,
    pub call_id: Option<String>,
    pub state: LeaseState,
    /// Seconds granted in all.
    pub granted_seconds: i64,
    /// The usage last reported.
    pub used_seconds: i64,
    /// Money held for the seconds granted and not yet settled.
    pub held: i64,
    pub free_seconds_held: i64,
    /// What the call cost, once settled.
    pub cost: i64,
    pub free_seconds_charged: i64,
    /// The last grant was cut short: end the call when it is used.
    pub final_unit_indication: bool,
    pub validity_seconds: i64,
    #[serde(serialize_with = "ser_time")]
    pub expires_at: i64,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
}

/// The answer to a reserve or renew: the lease and what this request granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    #[serde(flatten)]
    pub lease: Lease,
    /// Seconds this request granted (on top of what was granted before).
    pub granted_now: i64,
}

/// What a reserve or renew asks for.
#[derive(Debug, Clone, Default)]
pub struct LeaseRequest {
    pub call_id: Option<String>,
    /// Seconds wanted beyond the usage so far.
    pub seconds: i64,
    /// How long the grant stays valid without a renewal.
    pub validity_s: i64,
}

/// The balance row, as locked inside a transaction.
#[derive(Debug, Clone)]
struct Row_ {
    balance: i64,
    reserved: i64,
    plan: Plan,
    free_used: i64,
    free_held: i64,
    free_resets_at: i64,
}

impl Row_ {
    fn available(&self) -> i64 {
        self.balance - self.reserved + self.plan.overdraft
    }

    fn free_left(&self) -> i64 {
        (self.plan.free_seconds - self.free_used - self.free_held).max(0)
    }
}

/// Micro-units for `seconds` at `rate_per_minute`, rounded up.
pub fn cost(seconds: i64, rate_per_minute: i64) -> i64 {
    (seconds * rate_per_minute + 59).div_euclid(60)
}

fn round_up(seconds: i64, increment: i64) -> i64 {
    (seconds + increment - 1).div_euclid(increment) * increment
}

/// What can be granted of `want` seconds: (seconds, of which free, money to hold, cut short).
fn grant(row: &Row_, want: i64) -> (i64, i64, i64, bool) {
    let inc = row.plan.increment_s.max(1);
    let want = round_up(want.max(0), inc);
    let free = want.min(row.free_left());
    let paid = want - free;
    let rate = row.plan.rate_per_minute;
    let available = row.available().max(0);
    if cost(paid, rate) <= available {
        return (want, free, cost(paid, rate), false);
    }
    // Whole increments the money covers.
    let mut steps = available * 60 / (rate * inc);
    while steps > 0 && cost(steps * inc, rate) > available {
        steps -= 1;
    }
    let paid = steps * inc;
    (free + paid, free, cost(paid, rate), true)
}

fn lease_from(row: &AnyRow) -> Result<Lease, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(Lease {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        call_id: row.try_get("call_id")?,
        state: LeaseState::parse(&state),
        granted_seconds: int(row, "granted_s")?,
        used_seconds: int(row, "used_s")?,
        held: int(row, "held")?,
        free_seconds_held: int(row, "free_held")?,
        cost: int(row, "cost")?,
        free_seconds_charged: int(row, "free_charged")?,
        final_unit_indication: int(row, "final_units")? != 0,
        validity_seconds: int(row, "validity_s")?,
        expires_at: int(row, "expires_at")?,
        created_at: int(row, "created_at")?,
    })
}

const LEASE_COLUMNS: &str = "id, account_id, call_id, state, granted_s, used_s, held, free_held, \
     cost, free_charged, final_units, validity_s, expires_at, created_at";

/// An operation's replayable answer, kept under its idempotency key.
#[derive(serde::Serialize, serde::Deserialize)]
struct Replay {
    lease_id: Option<String>,
    granted_now: i64,
}

/// How an operation is replayed: the lease as it is now, with the grant it made then.
enum Idempotent {
    Fresh,
    Replay(Replay),
}

impl Store {
    /// Locks `account_id`'s balance row for the rest of `tx` (creating it when missing) and
    /// reads it, rolling the free seconds into a new month when their reset is due.
    async fn lock_balance(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: &str,
        now: i64,
    ) -> Result<Row_, StoreError> {
        let locked = sqlx::query("UPDATE balances SET updated_at = $1 WHERE account_id = $2")
            .bind(now)
            .bind(account_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if locked == 0 {
            let exists = sqlx::query("SELECT id FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(&mut **tx)
                .await?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound("account"));
            }
            sqlx::query(
                "INSERT INTO balances (account_id, updated_at) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO NOTHING",
            )
            .bind(account_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE balances SET updated_at = $1 WHERE account_id = $2")
                .bind(now)
                .bind(account_id)
                .execute(&mut **tx)
                .await?;
        }
        let r = sqlx::query(
            "SELECT balance, reserved, overdraft, rate_per_minute, increment_s, free_seconds, \
             free_used, free_held, free_resets_at FROM balances WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(&mut **tx)
        .await?;
        let mut row = Row_ {
            balance: int(&r, "balance")?,
            reserved: int(&r, "reserved")?,
            plan: Plan {
                rate_per_minute: int(&r, "rate_per_minute")?,
                increment_s: int(&r, "increment_s")?,
                free_seconds: int(&r, "free_seconds")?,
                overdraft: int(&r, "overdraft")?,
            },
            free_used: int(&r, "free_used")?,
            free_held: int(&r, "free_held")?,
            free_resets_at: int(&r, "free_resets_at")?,
        };
        if row.plan.free_seconds > 0 && row.free_resets_at > 0 && now >= row.free_resets_at {
            while row.free_resets_at <= now {
                row.free_resets_at = add_months(row.free_resets_at, 1);
            }
            row.free_used = 0;
            sqlx::query(
                "UPDATE balances SET free_used = 0, free_resets_at = $1 WHERE account_id = $2",
            )
            .bind(row.free_resets_at)
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(row)
    }

    /// Moves money and holds: the balance row and one ledger row per non-zero change.
    #[allow(clippy::too_many_arguments)]
    async fn post(
        tx: &mut Transaction<'static, Any>,
        account_id: &str,
        lease_id: Option<&str>,
        kind: &str,
        amount: i64,
        hold: i64,
        free_used: i64,
        free_hold: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE balances SET balance = balance + $1, reserved = reserved + $2, \
             free_used = free_used + $3, free_held = free_held + $4 WHERE account_id = $5",
        )
        .bind(amount)
        .bind(hold)
        .bind(free_used)
        .bind(free_hold)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
        if amount != 0 || hold != 0 {
            sqlx::query(
                "INSERT INTO ledger (account_id, lease_id, kind, amount, hold, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(account_id)
            .bind(lease_id)
            .bind(kind)
            .bind(amount)
            .bind(hold)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// An earlier answer under `key`, or Fresh. A key reused for another operation is a
    /// conflict.
    async fn idempotent(
        tx: &mut Transaction<'static, Any>,
        account_id: &str,
        key: Option<&str>,
        operation: &str,
    ) -> Result<Idempotent, StoreError> {
        let Some(key) = key else {
            return Ok(Idempotent::Fresh);
        };
        let row = sqlx::query(
            "SELECT operation, response FROM idempotency WHERE account_id = $1 AND key = $2",
        )
        .bind(account_id)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(Idempotent::Fresh);
        };
        let op: String = row.try_get("operation")?;
        if op != operation {
            return Err(StoreError::Conflict(format!(
                "the idempotency key was used for another operation ({op})"
            )));
        }
        let response: String = row.try_get("response")?;
        let replay = serde_json::from_str(&response)
            .map_err(|e| StoreError::Conflict(format!("unreadable idempotent answer: {e}")))?;
        Ok(Idempotent::Replay(replay))
    }

    async fn remember(
        tx: &mut Transaction<'static, Any>,
        account_id: &str,
        key: Option<&str>,
        operation: &str,
        replay: &Replay,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(key) = key else { return Ok(()) };
        sqlx::query(
            "INSERT INTO idempotency (account_id, key, operation, response, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account_id)
        .bind(key)
        .bind(operation)
        .bind(serde_json::to_string(replay).unwrap_or_default())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The account's balance and plan.
    pub async fn balance(&self, account_id: &str) -> Result<Balance, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let row = self.lock_balance(&mut tx, account_id, now).await?;
        tx.commit().await?;
        Ok(Balance {
            account_id: account_id.to_string(),
            balance: row.balance,
            reserved: row.reserved,
            available: row.available(),
            plan: row.plan,
            free_seconds_left: row.free_left(),
            free_resets_at: row.free_resets_at,
        })
    }

    /// Sets the rate plan. Free seconds start a monthly period now when they are first set.
    pub async fn set_plan(&self, account_id: &str, plan: Plan) -> Result<Balance, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let row = self.lock_balance(&mut tx, account_id, now).await?;
        let resets = if plan.free_seconds > 0 && row.free_resets_at == 0 {
            add_months(now, 1)
        } else {
            row.free_resets_at
        };
        sqlx::query(
            "UPDATE balances SET rate_per_minute = $1, increment_s = $2, free_seconds = $3, \
             overdraft = $4, free_resets_at = $5 WHERE account_id = $6",
        )
        .bind(plan.rate_per_minute)
        .bind(plan.increment_s)
        .bind(plan.free_seconds)
        .bind(plan.overdraft)
        .bind(resets)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.balance(account_id).await
    }

    /// Adds money (micro-units, positive) to the balance.
    pub async fn topup(
        &self,
        account_id: &str,
        amount: i64,
        key: Option<&str>,
    ) -> Result<Balance, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        self.lock_balance(&mut tx, account_id, now).await?;
        if let Idempotent::Fresh = Self::idempotent(&mut tx, account_id, key, "topup").await? {
            Self::post(&mut tx, account_id, None, "topup", amount, 0, 0, 0, now).await?;
            let replay = Replay {
                lease_id: None,
                granted_now: 0,
            };
            Self::remember(&mut tx, account_id, key, "topup", &replay, now).await?;
        }
        tx.commit().await?;
        self.balance(account_id).await
    }

    /// Initial reservation: a new lease with what the balance covers of `req.seconds`.
    /// Nothing grantable is `StoreError::Insufficient` (the call must not be answered).
    pub async fn reserve(
        &self,
        account_id: &str,
        req: &LeaseRequest,
        key: Option<&str>,
    ) -> Result<Grant, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let row = self.lock_balance(&mut tx, account_id, now).await?;
        if let Idempotent::Replay(r) = Self::idempotent(&mut tx, account_id, key, "reserve").await?
        {
            tx.commit().await?;
            return self.replayed(account_id, r).await;
        }
        let (seconds, free, money, cut) = grant(&row, req.seconds);
        if seconds == 0 {
            return Err(StoreError::Insufficient);
        }
        let id = random_id("lse_", 20);
        let expires_at = now + req.validity_s * 1000;
        sqlx::query(
            "INSERT INTO leases (id, account_id, call_id, state, granted_s, used_s, held, \
             free_held, final_units, validity_s, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, 0, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(req.call_id.as_deref())
        .bind(seconds)
        .bind(money)
        .bind(free)
        .bind(i64::from(cut))
        .bind(req.validity_s)
        .bind(expires_at)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::post(
            &mut tx,
            account_id,
            Some(&id),
            "reserve",
            0,
            money,
            0,
            free,
            now,
        )
        .await?;
        let replay = Replay {
            lease_id: Some(id.clone()),
            granted_now: seconds,
        };
        Self::remember(&mut tx, account_id, key, "reserve", &replay, now).await?;
        let lease = Self::lease_in(&mut tx, account_id, &id).await?;
        tx.commit().await?;
        Ok(Grant {
            lease,
            granted_now: seconds,
        })
    }

    /// Update: reports `used_s` (cumulative) and asks for `req.seconds` more beyond it.
    pub async fn renew(
        &self,
        account_id: &str,
        lease_id: &str,
        used_s: i64,
        req: &LeaseRequest,
        key: Option<&str>,
    ) -> Result<Grant, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let row = self.lock_balance(&mut tx, account_id, now).await?;
        let op = format!("renew:{lease_id}");
        if let Idempotent::Replay(r) = Self::idempotent(&mut tx, account_id, key, &op).await? {
            tx.commit().await?;
            return self.replayed(account_id, r).await;
        }
        let lease = Self::lease_in(&mut tx, account_id, lease_id).await?;
        if lease.state != LeaseState::Open {
            return Err(StoreError::Conflict(format!(
                "the lease is {}",
                lease.state.as_str()
            )));
        }
        let used = used_s.clamp(lease.used_seconds, lease.granted_seconds);
        let wanted_total = used + req.seconds.max(0);
        let extra = (wanted_total - lease.granted_seconds).max(0);
        let (seconds, free, money, cut) = if extra > 0 {
            grant(&row, extra)
        } else {
            (0, 0, 0, false)
        };
        sqlx::query(
            "UPDATE leases SET granted_s = granted_s + $1, used_s = $2, held = held + $3, \
             free_held = free_held + $4, final_units = $5, validity_s = $6, expires_at = $7, \
             updated_at = $8 WHERE id = $9",
        )
        .bind(seconds)
        .bind(used)
        .bind(money)
        .bind(free)
        .bind(i64::from(cut))
        .bind(req.validity_s)
        .bind(now + req.validity_s * 1000)
        .bind(now)
        .bind(lease_id)
        .execute(&mut *tx)
        .await?;
        Self::post(
            &mut tx,
            account_id,
            Some(lease_id),
            "reserve",
            0,
            money,
            0,
            free,
            now,
        )
        .await?;
        let replay = Replay {
            lease_id: Some(lease_id.to_string()),
            granted_now: seconds,
        };
        Self::remember(&mut tx, account_id, key, &op, &replay, now).await?;
        let lease = Self::lease_in(&mut tx, account_id, lease_id).await?;
        tx.commit().await?;
        Ok(Grant {
            lease,
            granted_now: seconds,
        })
    }

    /// Terminate: the final usage is settled and the rest of the hold returned.
    pub async fn release(
        &self,
        account_id: &str,
        lease_id: &str,
        used_s: i64,
        key: Option<&str>,
    ) -> Result<Lease, StoreError> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let row = self.lock_balance(&mut tx, account_id, now).await?;
        let op = format!("release:{lease_id}");
        if let Idempotent::Replay(_) = Self::idempotent(&mut tx, account_id, key, &op).await? {
            let lease = Self::lease_in(&mut tx, account_id, lease_id).await?;
            tx.commit().await?;
            return Ok(lease);
        }
        let lease = Self::lease_in(&mut tx, account_id, lease_id).await?;
        if lease.state != LeaseState::Open {
            return Err(StoreError::Conflict(format!(
                "the lease is {}",
                lease.state.as_str()
            )));
        }
        let used = used_s.clamp(lease.used_seconds, lease.granted_seconds);
        Self::settle(&mut tx, &row, &lease, used, LeaseState::Released, now).await?;
        let replay = Replay {
            lease_id: Some(lease_id.to_string()),
            granted_now: 0,
        };
        Self::remember(&mut tx, account_id, key, &op, &replay, now).await?;
        let lease = Self::lease_in(&mut tx, account_id, lease_id).await?;
        tx.commit().await?;
        Ok(lease)
    }

    /// Charges `used` seconds of `lease` and returns the rest of its hold.
    async fn settle(
        tx: &mut Transaction<'static, Any>,
        row: &Row_,
        lease: &Lease,
        used: i64,
        state: LeaseState,
        now: i64,
    ) -> Result<(), StoreError> {
        let inc = row.plan.increment_s.max(1);
        let billable = round_up(used, inc).min(lease.granted_seconds);
        let free = billable.min(lease.free_seconds_held);
        let money = cost(billable - free, row.plan.rate_per_minute).min(lease.held);
        let kind = match state {
            LeaseState::Expired => "expire",
            _ => "settle",
        };
        sqlx::query(
            "UPDATE leases SET state = $1, used_s = $2, held = 0, free_held = 0, cost = $3, \
             free_charged = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(state.as_str())
        .bind(used)
        .bind(money)
        .bind(free)
        .bind(now)
        .bind(&lease.id)
        .execute(&mut **tx)
        .await?;
        let account = &lease.account_id;
        let id = Some(lease.id.as_str());
        Self::post(tx, account, id, kind, -money, -money, free, -free, now).await?;
        let rest = lease.held - money;
        let free_rest = lease.free_seconds_held - free;
        Self::post(tx, account, id, "release", 0, -rest, 0, -free_rest, now).await?;
        Ok(())
    }

    /// Settles every open lease whose validity has passed at the last reported usage plus
    /// one increment; returns how many.
    pub async fn expire_due(&self, now: i64) -> Result<usize, StoreError> {
        let due = sqlx::query(
            "SELECT id, account_id FROM leases WHERE state = 'open' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT 500",
        )
        .bind(now)
        .fetch_all(self.reader())
        .await?;
        let mut expired = 0;
        for r in due {
            let (id, account): (String, String) = (r.try_get("id")?, r.try_get("account_id")?);
            let mut tx = self.writer().begin().await?;
            let row = self.lock_balance(&mut tx, &account, now).await?;
            let lease = Self::lease_in(&mut tx, &account, &id).await?;
            // Renewed or released since the scan: not due any more.
            if lease.state != LeaseState::Open || lease.expires_at > now {
                continue;
            }
            let used =
                (lease.used_seconds + row.plan.increment_s.max(1)).min(lease.granted_seconds);
            Self::settle(&mut tx, &row, &lease, used, LeaseState::Expired, now).await?;
            tx.commit().await?;
            tracing::warn!(lease = %id, account = %account, used_s = used, "lease expired unrenewed; settled");
            expired += 1;
        }
        Ok(expired)
    }

    async fn lease_in(
        tx: &mut Transaction<'static, Any>,
        account_id: &str,
        lease_id: &str,
    ) -> Result<Lease, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE id = $1 AND account_id = $2"
        ))
        .bind(lease_id)
        .bind(account_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("lease"))?;
        Ok(lease_from(&row)?)
    }

    async fn replayed(&self, account_id: &str, r: Replay) -> Result<Grant, StoreError> {
        let id = r.lease_id.ok_or(StoreError::NotFound("lease"))?;
        Ok(Grant {
            lease: self.lease(account_id, &id).await?,
            granted_now: r.granted_now,
        })
    }

    /// A lease of `account_id`.
    pub async fn lease(&self, account_id: &str, lease_id: &str) -> Result<Lease, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE id = $1 AND account_id = $2"
        ))
        .bind(lease_id)
        .bind(account_id)
        .fetch_optional(self.writer())
        .await?
        .ok_or(StoreError::NotFound("lease"))?;
        Ok(lease_from(&row)?)
    }

    /// The account a lease belongs to (for the operator's keys, which act on any account).
    pub async fn lease_account(&self, lease_id: &str) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT account_id FROM leases WHERE id = $1")
            .bind(lease_id)
            .fetch_optional(self.reader())
            .await?
            .ok_or(StoreError::NotFound("lease"))?;
        Ok(row.try_get("account_id")?)
    }

    /// The ledger summed: (sum of amounts, sum of holds), which must equal the balance row's
    /// balance and reserved.
    pub async fn ledger_sums(&self, account_id: &str) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS amount, \
             CAST(COALESCE(SUM(hold), 0) AS BIGINT) AS hold \
             FROM ledger WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(self.writer())
        .await?;
        Ok((int(&row, "amount")?, int(&row, "hold")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(balance: i64, rate: i64, inc: i64, free: i64) -> Row_ {
        Row_ {
            balance,
            reserved: 0,
            plan: Plan {
                rate_per_minute: rate,
                increment_s: inc,
                free_seconds: free,
                overdraft: 0,
            },
            free_used: 0,
            free_held: 0,
            free_resets_at: 0,
        }
    }

    #[test]
    fn grants_round_to_increments_and_take_free_seconds_first() {
        // 0.60 per minute = 10,000 micro-units a second.
        let r = row(1_000_000, 600_000, 6, 30);
        assert_eq!(grant(&r, 58), (60, 30, 300_000, false));
        // 100 s of money at 1 s increments: asking 300 s gets 30 free + 100 paid, cut.
        let r = row(1_000_000, 600_000, 1, 30);
        assert_eq!(grant(&r, 300), (130, 30, 1_000_000, true));
        // 60 s increments: only whole minutes.
        let r = row(1_000_000, 600_000, 60, 0);
        assert_eq!(grant(&r, 300), (60, 0, 600_000, true));
        // Nothing left: nothing granted.
        let r = row(0, 600_000, 1, 0);
        assert_eq!(grant(&r, 60), (0, 0, 0, true));
        // Free of charge plans grant everything.
        let r = row(0, 0, 1, 0);
        assert_eq!(grant(&r, 60), (60, 0, 0, false));
    }

    #[test]
    fn cost_rounds_up_to_the_micro_unit() {
        assert_eq!(cost(1, 1), 1);
        assert_eq!(cost(60, 1), 1);
        assert_eq!(cost(61, 1), 2);
        assert_eq!(cost(90, 600_000), 900_000);
    }
}
