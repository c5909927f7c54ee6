//! The billing operations: balances and plans, top-ups, and the lease lifecycle (reserve,
//! renew, release, expiry). Each one reads, computes, then writes in a transaction that ends
//! with conditional updates; losing a race means starting again (see the module docs).
//! Reserve, renew and release are committed in batches per account (batch.rs); their
//! one-operation paths here answer what a batch hands back (refusals, closed leases, lost
//! races).

use sqlx::Row;

use super::batch::{Done, Work};
use super::ledger::{
    adjust, hold, ledger, ledger_rows, remember, Remembered, Replay, Tx, ATTEMPTS,
};
use super::{
    grant, lease_from, settlement, Balance, Grant, Lease, LeaseRequest, LeaseState, Plan,
    LEASE_COLUMNS,
};
use crate::store::clock::add_months;
use crate::store::{int, now_ms, random_id, Store, StoreError};

/// An open lease to work on, or the earlier answer to replay.
enum Opened {
    Lease(Lease),
    Replay(Replay),
}

/// Too many lost races in a row: the account is too busy right now.
fn contended() -> StoreError {
    StoreError::Conflict("the account is busy; try again".into())
}

impl Store {
    /// The account's balance and plan.
    pub async fn balance(&self, account_id: &str) -> Result<Balance, StoreError> {
        let row = self.read_balance(account_id, now_ms()).await?;
        Ok(Balance {
            account_id: account_id.to_string(),
            balance: row.balance,
            reserved: row.reserved,
            available: row.available(),
            plan: row.plan,
            free_seconds_left: row.free_left(),
            free_resets_at: row.free_resets_at,
            debt: row.debt,
        })
    }

    /// Sets the rate plan. Free seconds start a monthly period now when they are first set.
    pub async fn set_plan(&self, account_id: &str, plan: Plan) -> Result<Balance, StoreError> {
        let now = now_ms();
        let row = self.read_balance(account_id, now).await?;
        let resets = if plan.free_seconds > 0 && row.free_resets_at == 0 {
            add_months(now, 1)
        } else {
            row.free_resets_at
        };
        sqlx::query(
            "UPDATE balances SET rate_per_minute = $1, increment_s = $2, free_seconds = $3, \
             overdraft = $4, free_resets_at = $5, updated_at = $6 WHERE account_id = $7",
        )
        .bind(plan.rate_per_minute)
        .bind(plan.increment_s)
        .bind(plan.free_seconds)
        .bind(plan.overdraft)
        .bind(resets)
        .bind(now)
        .bind(account_id)
        .execute(self.writer())
        .await?;
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
        self.read_balance(account_id, now).await?;
        let mut tx = self.writer().begin().await?;
        let replay = Replay {
            lease_id: None,
            granted_now: 0,
        };
        match remember(&mut tx, account_id, key, "topup", &replay, now).await? {
            Remembered::Stored => {
                ledger(&mut tx, account_id, None, "topup", amount, 0, now).await?;
                let turn = self.hot_row(account_id).lock().await;
                adjust(&mut tx, account_id, amount, 0, 0, 0, now).await?;
                super::debt::pay_from_topup(&mut tx, account_id, amount, now).await?;
                tx.commit().await?;
                drop(turn);
            }
            // Credited already, by the first request with this key.
            Remembered::Duplicate => {
                drop(tx);
                self.replay(account_id, key, "topup").await?;
            }
        }
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
        let work = Work::Reserve {
            id: random_id("lse_", 20),
            req: req.clone(),
            key: key.map(str::to_owned),
        };
        match self.batched(account_id, work).await {
            Done::Granted(grant) => Ok(grant),
            Done::Failed(e) => Err(e),
            Done::Duplicate => self.replay_now(account_id, key, "reserve").await,
            Done::Released(_) | Done::Alone => self.reserve_alone(account_id, req, key).await,
        }
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
        let work = Work::Renew {
            lease_id: lease_id.to_string(),
            used_s,
            req: req.clone(),
            key: key.map(str::to_owned),
        };
        let op = work.operation();
        match self.batched(account_id, work).await {
            Done::Granted(grant) => Ok(grant),
            Done::Failed(e) => Err(e),
            Done::Duplicate => self.replay_now(account_id, key, &op).await,
            Done::Released(_) | Done::Alone => {
                self.renew_alone(account_id, lease_id, used_s, req, key)
                    .await
            }
        }
    }

    /// Terminate: the final usage is settled and the rest of the hold returned.
    pub async fn release(
        &self,
        account_id: &str,
        lease_id: &str,
        used_s: i64,
        key: Option<&str>,
    ) -> Result<Lease, StoreError> {
        let work = Work::Release {
            lease_id: lease_id.to_string(),
            used_s,
            key: key.map(str::to_owned),
        };
        let op = work.operation();
        match self.batched(account_id, work).await {
            Done::Released(lease) => Ok(lease),
            Done::Failed(e) => Err(e),
            Done::Duplicate => {
                self.replay(account_id, key, &op).await?;
                self.lease(account_id, lease_id).await
            }
            Done::Granted(_) | Done::Alone => {
                self.release_alone(account_id, lease_id, used_s, key).await
            }
        }
    }

    /// [`Store::reserve`] in a transaction of its own.
    async fn reserve_alone(
        &self,
        account_id: &str,
        req: &LeaseRequest,
        key: Option<&str>,
    ) -> Result<Grant, StoreError> {
        let op = "reserve";
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let row = self.read_balance(account_id, now).await?;
            let (seconds, free, money, cut) = grant(&row, req.seconds);
            let id = random_id("lse_", 20);
            let mut tx = self.writer().begin().await?;
            // The key first: a retry of an earlier reserve gets its answer, not a second
            // lease (and not a refusal because the first took the money).
            let replay = Replay {
                lease_id: Some(id.clone()),
                granted_now: seconds,
            };
            if let Remembered::Duplicate =
                remember(&mut tx, account_id, key, op, &replay, now).await?
            {
                drop(tx);
                return self.replay_now(account_id, key, op).await;
            }
            if seconds == 0 {
                return Err(StoreError::Insufficient);
            }
            let inserted = sqlx::query(&format!(
                "INSERT INTO leases (id, account_id, call_id, state, granted_s, used_s, held, \
                 free_held, final_units, rate_per_minute, increment_s, validity_s, expires_at, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, 'open', $4, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 RETURNING {LEASE_COLUMNS}",
            ))
            .bind(&id)
            .bind(account_id)
            .bind(req.call_id.as_deref())
            .bind(seconds)
            .bind(money)
            .bind(free)
            .bind(i64::from(cut))
            .bind(row.plan.rate_per_minute)
            .bind(row.plan.increment_s)
            .bind(req.validity_s)
            .bind(now + req.validity_s * 1000)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let lease = lease_from(&inserted)?;
            ledger(&mut tx, account_id, Some(&id), "reserve", 0, money, now).await?;
            let turn = self.hot_row(account_id).lock().await;
            if !hold(&mut tx, account_id, money, free, now).await? {
                continue;
            }
            tx.commit().await?;
            drop(turn);
            return Ok(Grant {
                lease,
                granted_now: seconds,
            });
        }
        Err(contended())
    }

    /// [`Store::renew`] in a transaction of its own.
    async fn renew_alone(
        &self,
        account_id: &str,
        lease_id: &str,
        used_s: i64,
        req: &LeaseRequest,
        key: Option<&str>,
    ) -> Result<Grant, StoreError> {
        let op = format!("renew:{lease_id}");
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let lease = match self.open_or_replay(account_id, lease_id, key, &op).await? {
                Opened::Lease(lease) => lease,
                Opened::Replay(r) => return self.replayed(account_id, r).await,
            };
            let mut row = self.read_balance(account_id, now).await?;
            // Extensions are priced as the lease was.
            row.plan.rate_per_minute = lease.rate_per_minute;
            row.plan.increment_s = lease.increment_s;
            let used = used_s.clamp(lease.used_seconds, lease.granted_seconds);
            let extra = (used + req.seconds.max(0) - lease.granted_seconds).max(0);
            let (seconds, free, money, cut) = if extra > 0 {
                grant(&row, extra)
            } else {
                (0, 0, 0, false)
            };
            let mut tx = self.writer().begin().await?;
            let replay = Replay {
                lease_id: Some(lease_id.to_string()),
                granted_now: seconds,
            };
            if let Remembered::Duplicate =
                remember(&mut tx, account_id, key, &op, &replay, now).await?
            {
                drop(tx);
                return self.replay_now(account_id, key, &op).await;
            }
            let updated = sqlx::query(&format!(
                "UPDATE leases SET granted_s = granted_s + $1, used_s = $2, held = held + $3, \
                 free_held = free_held + $4, final_units = $5, validity_s = $6, \
                 expires_at = $7, updated_at = $8 WHERE id = $9 AND state = 'open' \
                 AND granted_s = $10 AND used_s = $11 RETURNING {LEASE_COLUMNS}",
            ))
            .bind(seconds)
            .bind(used)
            .bind(money)
            .bind(free)
            .bind(i64::from(cut))
            .bind(req.validity_s)
            .bind(now + req.validity_s * 1000)
            .bind(now)
            .bind(lease_id)
            .bind(lease.granted_seconds)
            .bind(lease.used_seconds)
            .fetch_optional(&mut *tx)
            .await?;
            // None: renewed, released or expired since it was read.
            let Some(updated) = updated else { continue };
            let renewed = lease_from(&updated)?;
            ledger(
                &mut tx,
                account_id,
                Some(lease_id),
                "reserve",
                0,
                money,
                now,
            )
            .await?;
            let turn = self.hot_row(account_id).lock().await;
            if !hold(&mut tx, account_id, money, free, now).await? {
                continue;
            }
            tx.commit().await?;
            drop(turn);
            return Ok(Grant {
                lease: renewed,
                granted_now: seconds,
            });
        }
        Err(contended())
    }

    /// [`Store::release`] in a transaction of its own.
    async fn release_alone(
        &self,
        account_id: &str,
        lease_id: &str,
        used_s: i64,
        key: Option<&str>,
    ) -> Result<Lease, StoreError> {
        let op = format!("release:{lease_id}");
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let lease = match self.open_or_replay(account_id, lease_id, key, &op).await? {
                Opened::Lease(lease) => lease,
                // A retry of the release that closed it: the lease as it closed.
                Opened::Replay(_) => return self.lease(account_id, lease_id).await,
            };
            let used = used_s.clamp(lease.used_seconds, lease.granted_seconds);
            let mut tx = self.writer().begin().await?;
            let replay = Replay {
                lease_id: Some(lease_id.to_string()),
                granted_now: 0,
            };
            if let Remembered::Duplicate =
                remember(&mut tx, account_id, key, &op, &replay, now).await?
            {
                drop(tx);
                self.replay(account_id, key, &op).await?;
                return self.lease(account_id, lease_id).await;
            }
            let Some((closed, settled)) =
                close_lease(&mut tx, &lease, used, LeaseState::Released, now).await?
            else {
                continue;
            };
            let turn = self.hot_row(account_id).lock().await;
            settled.apply(&mut tx, account_id, now).await?;
            tx.commit().await?;
            drop(turn);
            return Ok(closed);
        }
        Err(contended())
    }

    /// Settles every open lease whose validity has passed at the last reported usage plus
    /// one increment; returns how many. Nodes may sweep at once: each lease settles once.
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
            let lease = self.lease(&account, &id).await?;
            if lease.state != LeaseState::Open || lease.expires_at > now {
                continue;
            }
            let used = (lease.used_seconds + lease.increment_s.max(1)).min(lease.granted_seconds);
            let mut tx = self.writer().begin().await?;
            // Renewed or released since it was read: not this sweep's.
            if let Some((_, settled)) =
                close_lease(&mut tx, &lease, used, LeaseState::Expired, now).await?
            {
                let turn = self.hot_row(&account).lock().await;
                settled.apply(&mut tx, &account, now).await?;
                tx.commit().await?;
                drop(turn);
                tracing::warn!(lease = %id, account = %account, used_s = used, "lease expired unrenewed; settled");
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// The lease while it is open. Once it has closed, a retry of `op` under `key` gets its
    /// first answer back (the request that closed it, or the one just before); anything
    /// else is a conflict.
    async fn open_or_replay(
        &self,
        account_id: &str,
        lease_id: &str,
        key: Option<&str>,
        op: &str,
    ) -> Result<Opened, StoreError> {
        let lease = self.lease(account_id, lease_id).await?;
        if lease.state == LeaseState::Open {
            return Ok(Opened::Lease(lease));
        }
        match self.replay(account_id, key, op).await? {
            Some(r) => Ok(Opened::Replay(r)),
            None => Err(StoreError::Conflict(format!(
                "the lease is {}",
                lease.state.as_str()
            ))),
        }
    }

    async fn replayed(&self, account_id: &str, r: Replay) -> Result<Grant, StoreError> {
        let id = r.lease_id.ok_or(StoreError::NotFound("lease"))?;
        Ok(Grant {
            lease: self.lease(account_id, &id).await?,
            granted_now: r.granted_now,
        })
    }

    /// The answer a concurrent request with the same key stored.
    async fn replay_now(
        &self,
        account_id: &str,
        key: Option<&str>,
        op: &str,
    ) -> Result<Grant, StoreError> {
        match self.replay(account_id, key, op).await? {
            Some(r) => self.replayed(account_id, r).await,
            None => Err(contended()),
        }
    }

    /// A lease of `account_id`.
    pub async fn lease(&self, account_id: &str, lease_id: &str) -> Result<Lease, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE id = $1 AND account_id = $2"
        ))
        .bind(lease_id)
        .bind(account_id)
        .fetch_optional(self.reader())
        .await?
        .ok_or(StoreError::NotFound("lease"))?;
        Ok(lease_from(&row)?)
    }

    /// The ledger summed: (sum of amounts, sum of holds), which must equal the balance row's
    /// balance and reserved.
    pub async fn ledger_sums(&self, account_id: &str) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS amount, \
             CAST(COALESCE(SUM(hold), 0) AS BIGINT) AS hold FROM ledger WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(self.writer())
        .await?;
        Ok((int(&row, "amount")?, int(&row, "hold")?))
    }
}

/// The balance change that closing a lease makes: its cost is charged, its holds returned.
struct Settlement {
    money: i64,
    held: i64,
    free: i64,
    free_held: i64,
}

impl Settlement {
    /// The balance row's side, last before the commit (see [`Store::hot_row`]).
    async fn apply(&self, tx: &mut Tx, account_id: &str, now: i64) -> Result<(), StoreError> {
        adjust(
            tx,
            account_id,
            -self.money,
            -self.held,
            self.free,
            -self.free_held,
            now,
        )
        .await
    }
}

/// Closes `lease` as `state`, charging `used` seconds, with its ledger rows: the lease as
/// closed and the balance change; None when the lease changed since it was read (the caller
/// starts again).
async fn close_lease(
    tx: &mut Tx,
    lease: &Lease,
    used: i64,
    state: LeaseState,
    now: i64,
) -> Result<Option<(Lease, Settlement)>, StoreError> {
    let (money, free) = settlement(lease, used);
    let closed = sqlx::query(&format!(
        "UPDATE leases SET state = $1, used_s = $2, held = 0, free_held = 0, cost = $3, \
         free_charged = $4, updated_at = $5 WHERE id = $6 AND state = 'open' AND held = $7 \
         AND free_held = $8 AND granted_s = $9 RETURNING {LEASE_COLUMNS}",
    ))
    .bind(state.as_str())
    .bind(used)
    .bind(money)
    .bind(free)
    .bind(now)
    .bind(&lease.id)
    .bind(lease.held)
    .bind(lease.free_seconds_held)
    .bind(lease.granted_seconds)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(closed) = closed else {
        return Ok(None);
    };
    let closed = lease_from(&closed)?;
    let (account, id) = (lease.account_id.as_str(), Some(lease.id.as_str()));
    let kind = if state == LeaseState::Expired {
        "expire"
    } else {
        "settle"
    };
    let rows = [
        (kind, -money, -money),
        ("release", 0, -(lease.held - money)),
    ];
    ledger_rows(tx, account, id, &rows, now).await?;
    Ok(Some((
        closed,
        Settlement {
            money,
            held: lease.held,
            free,
            free_held: lease.free_seconds_held,
        },
    )))
}
