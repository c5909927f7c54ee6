//! Prepaid billing with heartbeat leases, after Diameter credit control (RFC 4006 / 8506):
//! a call reserves units before it is answered (initial), reports what it used and gets more
//! at each heartbeat (update), and reports its final usage when it ends (terminate), which
//! settles the cost and returns what was held but not used. Each grant has a validity; a
//! lease not renewed within it (its node died) is settled by the sweeper at the last reported
//! usage plus one billing increment. When the balance cannot cover what was asked, the grant
//! is cut to what it can cover and carries a final-unit indication: the call must end (or be
//! told so) when it has used it.
//!
//! Concurrency, without holding a lock across round trips: an operation reads the balance,
//! computes its grant, and then writes in one transaction whose last statement is a
//! *conditional* update of the account's balance row (`… WHERE balance - reserved +
//! overdraft >= <hold>`), so the row is locked only from that statement to the commit. When
//! another call took the money in between, the update matches nothing, the transaction rolls
//! back and the operation starts again from a fresh read (optimistic concurrency). Lease rows
//! are updated the same way, conditional on the values read. The invariants are also CHECK
//! constraints on the balance row, so the database itself refuses a write that would break
//! them: nothing held below zero, and `balance - reserved + overdraft >= 0`. Every change of
//! the balance or of what is held is an append-only ledger row (`amount` moves the balance,
//! `hold` what is reserved), written in the same transaction: summed, they equal the row.
//!
//! Group commit: a node runs one account's concurrent reserves, renewals and releases as one
//! transaction (batch.rs): grants are computed in turn in memory from the row read, and the
//! batch ends with one update of the balance row by its net change, conditional the same way
//! (what is left must cover it), and one commit. A busy account's row then takes one update
//! and one WAL flush per batch rather than per operation.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::clock::ser_time;
use super::int;

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
    /// What calls used beyond their grants (`billing.final_unit_action = "allow"`) and no
    /// top-up has paid yet; top-ups pay it first.
    pub debt: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Open,
    Released,
    Expired,
}

impl LeaseState {
    pub(super) fn as_str(self) -> &'static str {
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
    /// Seconds the call went on beyond its grant, and their price: owed, not settled.
    pub debt_seconds: i64,
    pub debt: i64,
    /// The last grant was cut short: end the call when it is used.
    pub final_unit_indication: bool,
    /// The plan's price when the lease was made: the call is billed at it throughout.
    pub rate_per_minute: i64,
    pub increment_s: i64,
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

/// The balance row as read.
#[derive(Debug, Clone)]
pub(super) struct BalanceRow {
    balance: i64,
    reserved: i64,
    plan: Plan,
    free_used: i64,
    free_held: i64,
    free_resets_at: i64,
    debt: i64,
}

impl BalanceRow {
    fn available(&self) -> i64 {
        self.balance - self.reserved + self.plan.overdraft
    }

    fn free_left(&self) -> i64 {
        (self.plan.free_seconds - self.free_used - self.free_held).max(0)
    }

    /// The free seconds are due to start a new month.
    fn rollover_due(&self, now: i64) -> bool {
        self.plan.free_seconds > 0 && self.free_resets_at > 0 && now >= self.free_resets_at
    }
}

/// Micro-units for `seconds` at `rate_per_minute`, rounded up.
pub fn cost(seconds: i64, rate_per_minute: i64) -> i64 {
    (seconds * rate_per_minute + 59).div_euclid(60)
}

pub(super) fn round_up(seconds: i64, increment: i64) -> i64 {
    (seconds + increment - 1).div_euclid(increment) * increment
}

/// What can be granted of `want` seconds: (seconds, of which free, money to hold, cut short).
pub(super) fn grant(row: &BalanceRow, want: i64) -> (i64, i64, i64, bool) {
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

/// What closing `lease` at `used` seconds charges: (money, free seconds).
pub(super) fn settlement(lease: &Lease, used: i64) -> (i64, i64) {
    let inc = lease.increment_s.max(1);
    let billable = round_up(used, inc).min(lease.granted_seconds);
    let free = billable.min(lease.free_seconds_held);
    let money = cost(billable - free, lease.rate_per_minute).min(lease.held);
    (money, free)
}

pub(super) fn lease_from(row: &AnyRow) -> Result<Lease, sqlx::Error> {
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
        debt_seconds: int(row, "debt_s")?,
        debt: int(row, "debt")?,
        final_unit_indication: int(row, "final_units")? != 0,
        rate_per_minute: int(row, "rate_per_minute")?,
        increment_s: int(row, "increment_s")?,
        validity_seconds: int(row, "validity_s")?,
        expires_at: int(row, "expires_at")?,
        created_at: int(row, "created_at")?,
    })
}

pub(super) const LEASE_COLUMNS: &str =
    "id, account_id, call_id, state, granted_s, used_s, held, free_held, \
     cost, free_charged, final_units, rate_per_minute, increment_s, validity_s, expires_at, \
     created_at, debt_s, debt";

mod batch;
mod debt;
mod leases;
mod ledger;

pub(crate) use batch::Lanes;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(balance: i64, rate: i64, inc: i64, free: i64) -> BalanceRow {
        BalanceRow {
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
            debt: 0,
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
