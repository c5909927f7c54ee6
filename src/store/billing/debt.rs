//! Debt: what a call used beyond its grant when `billing.final_unit_action = "allow"` let it
//! go on. The balance never goes below the overdraft (its CHECK stands), so the excess is
//! not settled: it is written on the lease and added to the account's debt, and the next
//! top-ups pay it before anything else (a `debt_paid` ledger row, so the ledger still sums
//! to the balance).

use super::ledger::{ledger, Tx};
use super::{cost, round_up, Lease, LeaseState};
use crate::store::{int, now_ms, Store, StoreError};

impl Store {
    /// Records that the closed lease `lease_id`'s call used `used_s` seconds in all, beyond
    /// its grant: the excess (whole increments) and its price at the lease's rate go on the
    /// lease and the account's debt. Once per lease: a retry changes nothing.
    pub async fn record_debt(
        &self,
        account_id: &str,
        lease_id: &str,
        used_s: i64,
    ) -> Result<Lease, StoreError> {
        let lease = self.lease(account_id, lease_id).await?;
        if lease.state == LeaseState::Open {
            return Err(StoreError::Conflict(
                "the lease is still open; release it first".into(),
            ));
        }
        let over = used_s - lease.granted_seconds;
        if over <= 0 || lease.debt_seconds > 0 {
            return Ok(lease);
        }
        let seconds = round_up(over, lease.increment_s.max(1));
        let amount = cost(seconds, lease.rate_per_minute);
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let first = sqlx::query(
            "UPDATE leases SET debt_s = $1, debt = $2, updated_at = $3 \
             WHERE id = $4 AND debt_s = 0",
        )
        .bind(seconds)
        .bind(amount)
        .bind(now)
        .bind(lease_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if first && amount > 0 {
            let turn = self.hot_row(account_id).lock().await;
            sqlx::query(
                "UPDATE balances SET debt = debt + $1, updated_at = $2 WHERE account_id = $3",
            )
            .bind(amount)
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            drop(turn);
        } else {
            tx.commit().await?;
        }
        if first {
            tracing::info!(lease = %lease_id, account = %account_id, seconds, amount, "call went on beyond its grant; recorded as debt");
        }
        self.lease(account_id, lease_id).await
    }
}

/// Inside a top-up of `amount` (already credited in `tx`): pays as much of the account's
/// debt as the top-up covers.
pub(super) async fn pay_from_topup(
    tx: &mut Tx,
    account_id: &str,
    amount: i64,
    now: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT debt FROM balances WHERE account_id = $1")
        .bind(account_id)
        .fetch_one(&mut **tx)
        .await?;
    let debt = int(&row, "debt")?;
    let pay = debt.min(amount);
    if pay <= 0 {
        return Ok(());
    }
    // Conditional on the debt read: the row is the account's hot row, held by this node's
    // turn; another node's change in between makes this a conflict the caller retries.
    let paid = sqlx::query(
        "UPDATE balances SET debt = debt - $1, balance = balance - $2, updated_at = $3 \
         WHERE account_id = $4 AND debt = $5",
    )
    .bind(pay)
    .bind(pay)
    .bind(now)
    .bind(account_id)
    .bind(debt)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if paid != 1 {
        return Err(StoreError::Conflict(
            "the account is busy; try again".into(),
        ));
    }
    ledger(tx, account_id, None, "debt_paid", -pay, 0, now).await
}
