//! The building blocks of every billing operation: reading an account's balance row,
//! writing the ledger, the conditional updates of the balance row, and idempotency keys.

use sqlx::{Any, Executor, Row, Transaction};

use super::BalanceRow;
use super::Plan;
use crate::store::clock::add_months;
use crate::store::{int, Store, StoreError};

/// An operation's replayable answer, kept under its idempotency key.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Replay {
    pub lease_id: Option<String>,
    pub granted_now: i64,
}

pub(super) type Tx = Transaction<'static, Any>;

/// How many times an operation starts again after losing a race before giving up.
pub(super) const ATTEMPTS: usize = 64;

impl Store {
    /// The account's balance row (made when missing), its free seconds rolled into a new
    /// month when their reset is due.
    pub(super) async fn read_balance(
        &self,
        account_id: &str,
        now: i64,
    ) -> Result<BalanceRow, StoreError> {
        loop {
            let Some(row) = balance_row(self.reader(), account_id).await? else {
                let exists = sqlx::query("SELECT id FROM accounts WHERE id = $1")
                    .bind(account_id)
                    .fetch_optional(self.writer())
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
                .execute(self.writer())
                .await?;
                continue;
            };
            if row.rollover_due(now) {
                let mut next = row.free_resets_at;
                while next <= now {
                    next = add_months(next, 1);
                }
                // Whoever gets here first rolls the month; the others re-read.
                sqlx::query(
                    "UPDATE balances SET free_used = 0, free_resets_at = $1 \
                     WHERE account_id = $2 AND free_resets_at = $3",
                )
                .bind(next)
                .bind(account_id)
                .bind(row.free_resets_at)
                .execute(self.writer())
                .await?;
                continue;
            }
            return Ok(row);
        }
    }
}

/// The account's balance row as it is, if it has one.
pub(super) async fn balance_row<'e, E>(
    db: E,
    account_id: &str,
) -> Result<Option<BalanceRow>, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let r = sqlx::query(
        "SELECT balance, reserved, overdraft, rate_per_minute, increment_s, free_seconds, \
         free_used, free_held, free_resets_at, debt FROM balances WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(db)
    .await?;
    let Some(r) = r else { return Ok(None) };
    Ok(Some(BalanceRow {
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
        debt: int(&r, "debt")?,
    }))
}

/// Holds `money` and `free` seconds more, if the account still has them: false when another
/// operation took them since they were read (the caller rolls back and starts again). The
/// last statement before the commit, so the row is locked only briefly.
pub(super) async fn hold(
    tx: &mut Tx,
    account_id: &str,
    money: i64,
    free: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE balances SET reserved = reserved + $1, free_held = free_held + $2, \
         updated_at = $3 WHERE account_id = $4 AND balance - reserved + overdraft >= $5 \
         AND free_seconds - free_used - free_held >= $6",
    )
    .bind(money)
    .bind(free)
    .bind(now)
    .bind(account_id)
    .bind(money)
    .bind(free)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Moves the balance and what is held (settling, releasing, topping up): no condition but
/// the row's CHECKs.
pub(super) async fn adjust(
    tx: &mut Tx,
    account_id: &str,
    amount: i64,
    hold: i64,
    free_used: i64,
    free_hold: i64,
    now: i64,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE balances SET balance = balance + $1, reserved = reserved + $2, \
         free_used = free_used + $3, free_held = free_held + $4, updated_at = $5 \
         WHERE account_id = $6",
    )
    .bind(amount)
    .bind(hold)
    .bind(free_used)
    .bind(free_hold)
    .bind(now)
    .bind(account_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if done == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound("account"))
    }
}

/// One ledger row (none for a change of nothing).
pub(super) async fn ledger(
    tx: &mut Tx,
    account_id: &str,
    lease_id: Option<&str>,
    kind: &str,
    amount: i64,
    hold: i64,
    now: i64,
) -> Result<(), StoreError> {
    ledger_rows(tx, account_id, lease_id, &[(kind, amount, hold)], now).await
}

/// Ledger rows of one operation, `(kind, amount, hold)`, in one statement; changes of
/// nothing are left out.
pub(super) async fn ledger_rows(
    tx: &mut Tx,
    account_id: &str,
    lease_id: Option<&str>,
    rows: &[(&str, i64, i64)],
    now: i64,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows.iter().filter(|(_, a, h)| *a != 0 || *h != 0).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO ledger (account_id, lease_id, kind, amount, hold, created_at) VALUES ",
    );
    for i in 0..rows.len() {
        let n = i * 6;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6
        ));
    }
    let mut q = sqlx::query(&sql);
    for (kind, amount, hold) in rows {
        q = q
            .bind(account_id)
            .bind(lease_id)
            .bind(*kind)
            .bind(*amount)
            .bind(*hold)
            .bind(now);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    /// The answer given earlier under `key` to `operation`, if any. A key used for another
    /// operation is a conflict.
    pub(super) async fn replay(
        &self,
        account_id: &str,
        key: Option<&str>,
        operation: &str,
    ) -> Result<Option<Replay>, StoreError> {
        let Some(key) = key else { return Ok(None) };
        let row = sqlx::query(
            "SELECT operation, response FROM idempotency WHERE account_id = $1 AND key = $2",
        )
        .bind(account_id)
        .bind(key)
        .fetch_optional(self.writer())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let op: String = row.try_get("operation")?;
        if op != operation {
            return Err(StoreError::Conflict(format!(
                "the idempotency key was used for another operation ({op})"
            )));
        }
        let response: String = row.try_get("response")?;
        serde_json::from_str(&response)
            .map(Some)
            .map_err(|e| StoreError::Conflict(format!("unreadable idempotent answer: {e}")))
    }
}

/// What `remember` found.
pub(super) enum Remembered {
    Stored,
    /// A concurrent request with the same key got there first: replay its answer.
    Duplicate,
}

/// Keeps `replay` under `key`, in the operation's transaction.
pub(super) async fn remember(
    tx: &mut Tx,
    account_id: &str,
    key: Option<&str>,
    operation: &str,
    replay: &Replay,
    now: i64,
) -> Result<Remembered, StoreError> {
    let Some(key) = key else {
        return Ok(Remembered::Stored);
    };
    let result = sqlx::query(
        "INSERT INTO idempotency (account_id, key, operation, response, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_id)
    .bind(key)
    .bind(operation)
    .bind(serde_json::to_string(replay).unwrap_or_default())
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(Remembered::Stored),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Remembered::Duplicate),
        Err(e) => Err(e.into()),
    }
}
