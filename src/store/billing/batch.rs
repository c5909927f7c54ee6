//! Group commit of one account's lease operations (flat combining). Every reserve, renew and
//! release of an account joins the account's queue on this node; one worker task per busy
//! account takes what has queued and runs it as ONE transaction: it reads the balance row and
//! the leases concerned, computes each operation's grant or settlement in turn in memory
//! (releases first, then renewals, then reservations), writes every idempotency key, lease and
//! ledger row in a few multi-row statements, and ends with one conditional update of the
//! balance row by the batch's net change and one commit. The invariants stay in the database:
//! the update only matches when the balance still covers the batch's net hold (another node
//! may have taken money since the read: then the batch rolls back and runs again from fresh
//! reads), the lease updates are conditional on the values read, and the CHECKs stand.
//!
//! The worker keeps its connection while the account is busy on PostgreSQL. The two
//! statements that look leases up by id are planned at each run (`persistent(false)`): a
//! plan cached while the table was small would scan it whole once it has grown.
//!
//! All or nothing: when an idempotency key of the batch turns out to be taken, or a lease
//! changed under it (another node), the transaction rolls back and runs again without that
//! operation, which then answers as the one-operation path would (a replay, or that path run
//! alone). Anything unusual (no grant at all, a closed lease, a database error before the
//! commit) is also handed back to the one-operation path, so those answers do not change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Row};

use super::ledger::{balance_row, Replay, ATTEMPTS};
use super::{
    grant, lease_from, settlement, BalanceRow, Grant, Lease, LeaseRequest, LeaseState,
    LEASE_COLUMNS,
};
use crate::store::{now_ms, Backend, Store, StoreError};

/// The most operations in one transaction.
const MAX_BATCH: usize = 64;

/// One lease operation, as queued.
pub(super) enum Work {
    Reserve {
        id: String,
        req: LeaseRequest,
        key: Option<String>,
    },
    Renew {
        lease_id: String,
        used_s: i64,
        req: LeaseRequest,
        key: Option<String>,
    },
    Release {
        lease_id: String,
        used_s: i64,
        key: Option<String>,
    },
}

impl Work {
    fn key(&self) -> Option<&str> {
        match self {
            Work::Reserve { key, .. } | Work::Renew { key, .. } | Work::Release { key, .. } => {
                key.as_deref()
            }
        }
    }

    /// The existing lease it works on.
    fn lease_id(&self) -> Option<&str> {
        match self {
            Work::Reserve { .. } => None,
            Work::Renew { lease_id, .. } | Work::Release { lease_id, .. } => Some(lease_id),
        }
    }

    /// The name its idempotency key is kept under.
    pub(super) fn operation(&self) -> String {
        match self {
            Work::Reserve { .. } => "reserve".into(),
            Work::Renew { lease_id, .. } => format!("renew:{lease_id}"),
            Work::Release { lease_id, .. } => format!("release:{lease_id}"),
        }
    }
}

/// How a queued operation ended.
pub(super) enum Done {
    /// Reserved or renewed.
    Granted(Grant),
    /// Released: the lease as it closed.
    Released(Lease),
    Failed(StoreError),
    /// Its idempotency key was taken: replay the first answer.
    Duplicate,
    /// Not for a batch: run it alone.
    Alone,
}

struct Pending {
    work: Work,
    reply: oneshot::Sender<Done>,
}

/// The queues of the accounts that have operations in flight on this node; an account is
/// in the map while its worker runs.
#[derive(Default)]
pub(crate) struct Lanes {
    queues: Mutex<HashMap<String, VecDeque<Pending>>>,
    batches: AtomicU64,
    operations: AtomicU64,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("batches", &self.batches)
            .field("operations", &self.operations)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// The next batch of `account`: queued operations in order, up to [`MAX_BATCH`], at most
    /// one per idempotency key and per lease (the others wait for the next batch). None when
    /// nothing is queued: the worker ends.
    fn take(&self, account: &str) -> Option<Vec<Pending>> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let queue = queues.get_mut(account)?;
        if queue.is_empty() {
            queues.remove(account);
            return None;
        }
        let mut batch = Vec::new();
        let mut later = VecDeque::new();
        let (mut keys, mut leases) = (HashSet::new(), HashSet::new());
        while let Some(p) = queue.pop_front() {
            let key = p.work.key().map(str::to_owned);
            let lease = p.work.lease_id().map(str::to_owned);
            let clash = key.as_ref().is_some_and(|k| keys.contains(k))
                || lease.as_ref().is_some_and(|l| leases.contains(l));
            if batch.len() >= MAX_BATCH || clash {
                later.push_back(p);
                continue;
            }
            keys.extend(key);
            leases.extend(lease);
            batch.push(p);
        }
        *queue = later;
        Some(batch)
    }
}

/// Ends a worker that panicked: its account leaves the map (the queued operations' callers
/// then run them alone), so the next operation starts a new worker.
struct WorkerGuard {
    lanes: Arc<Lanes>,
    account: String,
    done: bool,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if !self.done {
            let mut queues = self.lanes.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.remove(&self.account);
        }
    }
}

/// One operation's part of the batch being written.
struct Planned {
    /// Its place in the batch.
    at: usize,
    replay: Replay,
    write: LeaseWrite,
    granted_now: i64,
}

enum LeaseWrite {
    /// A new lease (reserve).
    Insert(Lease),
    /// An open lease's new values, conditional on the old (renew, release).
    Update { old: Lease, new: Lease },
}

impl LeaseWrite {
    fn id(&self) -> &str {
        match self {
            LeaseWrite::Insert(l) => &l.id,
            LeaseWrite::Update { new, .. } => &new.id,
        }
    }
}

/// The batch's net change of the balance row.
#[derive(Default)]
struct Net {
    balance: i64,
    reserved: i64,
    free_used: i64,
    free_held: i64,
    /// Free seconds newly held (the free-seconds condition applies only then).
    free_taken: i64,
}

enum Step {
    /// Committed, or nothing left to write.
    Finished,
    /// The commit failed: every operation has its answer; the connection may be broken.
    Broken,
    /// Rolled back: run what is undecided again.
    Again,
}

impl Store {
    /// Queues `work` on `account`'s batch and waits for its end.
    pub(super) async fn batched(&self, account: &str, work: Work) -> Done {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { work, reply };
        let start = {
            let mut queues = self.lanes.queues.lock().unwrap_or_else(|e| e.into_inner());
            match queues.get_mut(account) {
                Some(queue) => {
                    queue.push_back(pending);
                    false
                }
                None => {
                    queues.insert(account.to_string(), VecDeque::from([pending]));
                    true
                }
            }
        };
        if start {
            let (store, account) = (self.clone(), account.to_string());
            tokio::spawn(async move { store.work_lane(account).await });
        }
        // A worker that died answers nothing: run it alone.
        answer.await.unwrap_or(Done::Alone)
    }

    /// The statistics of group commit on this node: (batches committed, operations in them).
    pub fn lease_batches(&self) -> (u64, u64) {
        (
            self.lanes.batches.load(Ordering::Relaxed),
            self.lanes.operations.load(Ordering::Relaxed),
        )
    }

    /// An account's worker: batches until its queue is empty.
    async fn work_lane(self, account: String) {
        let mut guard = WorkerGuard {
            lanes: self.lanes.clone(),
            account: account.clone(),
            done: false,
        };
        // On PostgreSQL the worker keeps its connection while the account is busy (no pool
        // round trip per batch); SQLite's one writer connection goes back after each batch.
        let mut conn = None;
        while let Some(batch) = self.lanes.take(&account) {
            self.run_batch(&account, batch, &mut conn).await;
            if self.backend() == Backend::Sqlite {
                conn = None;
            }
        }
        guard.done = true;
    }

    async fn run_batch(
        &self,
        account: &str,
        batch: Vec<Pending>,
        conn: &mut Option<PoolConnection<Any>>,
    ) {
        let work: Vec<&Work> = batch.iter().map(|p| &p.work).collect();
        let mut done: Vec<Option<Done>> = work.iter().map(|_| None).collect();
        let mut finished = false;
        for _ in 0..ATTEMPTS {
            match self.try_batch(account, &work, &mut done, conn).await {
                Ok(Step::Finished) => {
                    finished = true;
                    break;
                }
                Ok(Step::Broken) => {
                    *conn = None;
                    finished = true;
                    break;
                }
                Ok(Step::Again) => {}
                Err(e) => {
                    // The connection may be broken: the pool checks it before lending it again.
                    *conn = None;
                    // Nothing was written: each runs alone and meets the error itself.
                    tracing::warn!(account, error = %e, "lease batch failed; running its operations alone");
                    for d in done.iter_mut().filter(|d| d.is_none()) {
                        *d = Some(Done::Alone);
                    }
                    finished = true;
                    break;
                }
            }
        }
        if !finished {
            tracing::warn!(account, "lease batch lost {ATTEMPTS} races in a row");
        }
        for (p, d) in batch.into_iter().zip(done) {
            let d = d.unwrap_or_else(|| {
                Done::Failed(StoreError::Conflict(
                    "the account is busy; try again".into(),
                ))
            });
            // The caller may have gone (its request was dropped): the answer is kept under
            // its idempotency key.
            let _ = p.reply.send(d);
        }
    }

    /// One try at the undecided operations of a batch in one transaction.
    async fn try_batch(
        &self,
        account: &str,
        work: &[&Work],
        done: &mut [Option<Done>],
        conn: &mut Option<PoolConnection<Any>>,
    ) -> Result<Step, StoreError> {
        let now = now_ms();
        let conn = match conn {
            Some(c) => c,
            None => conn.insert(self.writer().acquire().await?),
        };
        let mut tx = conn.begin().await?;
        let row = match balance_row(&mut *tx, account).await? {
            Some(row) if !row.rollover_due(now) => row,
            // No balance row yet, or the free seconds' month is over: the one-operation path
            // sees to those.
            _ => {
                for d in done.iter_mut().filter(|d| d.is_none()) {
                    *d = Some(Done::Alone);
                }
                return Ok(Step::Finished);
            }
        };
        let ids: Vec<&str> = work
            .iter()
            .zip(done.iter())
            .filter(|(_, d)| d.is_none())
            .filter_map(|(w, _)| w.lease_id())
            .collect();
        let leases = read_leases(&mut tx, account, &ids).await?;
        let (planned, net) = plan(account, work, done, &leases, row, now);
        if planned.is_empty() {
            return Ok(Step::Finished);
        }

        // The keys first: a retry of an earlier operation gets that one's answer.
        let keyed: Vec<(&str, String, &Replay)> = planned
            .iter()
            .filter_map(|p| Some((work[p.at].key()?, work[p.at].operation(), &p.replay)))
            .collect();
        let stored = remember_all(&mut tx, account, &keyed, now).await?;
        let mut again = false;
        for p in &planned {
            if work[p.at].key().is_some_and(|k| !stored.contains(k)) {
                done[p.at] = Some(Done::Duplicate);
                again = true;
            }
        }
        if again {
            return Ok(Step::Again);
        }

        let written = write_leases(&mut tx, account, &planned, now).await?;
        for p in &planned {
            if !written.contains(p.write.id()) {
                // Changed by another node since it was read: alone, it reads it again.
                done[p.at] = Some(Done::Alone);
                again = true;
            }
        }
        if again {
            return Ok(Step::Again);
        }
        write_ledger(&mut tx, account, &planned, now).await?;

        let turn = self.hot_row(account).lock().await;
        if !apply_net(&mut tx, account, &net, now).await? {
            // Another node took the money since the read.
            drop(tx);
            drop(turn);
            return Ok(Step::Again);
        }
        if let Err(e) = tx.commit().await {
            drop(turn);
            // Whether it committed is unknown: no second try, which could apply it twice.
            let message = e.to_string();
            for p in &planned {
                done[p.at] = Some(Done::Failed(StoreError::Db(sqlx::Error::Io(
                    std::io::Error::other(format!("commit: {message}")),
                ))));
            }
            return Ok(Step::Broken);
        }
        drop(turn);
        self.lanes.batches.fetch_add(1, Ordering::Relaxed);
        self.lanes
            .operations
            .fetch_add(planned.len() as u64, Ordering::Relaxed);

        for p in planned {
            done[p.at] = Some(match p.write {
                LeaseWrite::Update { new, .. } if new.state == LeaseState::Released => {
                    Done::Released(new)
                }
                LeaseWrite::Update { new: lease, .. } | LeaseWrite::Insert(lease) => {
                    Done::Granted(Grant {
                        lease,
                        granted_now: p.granted_now,
                    })
                }
            });
        }
        Ok(Step::Finished)
    }
}

/// Computes each undecided operation's part from `row` and the leases read, in turn:
/// releases first (they return money), then renewals, then reservations. Operations that
/// cannot be batched are decided here (a lease not found, or one to run alone).
fn plan(
    account: &str,
    work: &[&Work],
    done: &mut [Option<Done>],
    leases: &HashMap<String, Lease>,
    mut row: BalanceRow,
    now: i64,
) -> (Vec<Planned>, Net) {
    let mut planned = Vec::new();
    let mut net = Net::default();
    for pass in 0..3 {
        for (at, w) in work.iter().enumerate() {
            if done[at].is_some() {
                continue;
            }
            let lease = w.lease_id().map(|id| leases.get(id));
            let p = match (pass, w, lease) {
                (0 | 1, Work::Renew { .. } | Work::Release { .. }, Some(None)) => {
                    done[at] = Some(Done::Failed(StoreError::NotFound("lease")));
                    continue;
                }
                // Closed: a replay or a conflict, as the one-operation path says.
                (0 | 1, Work::Renew { .. } | Work::Release { .. }, Some(Some(l)))
                    if l.state != LeaseState::Open =>
                {
                    done[at] = Some(Done::Alone);
                    continue;
                }
                (0, Work::Release { used_s, .. }, Some(Some(l))) => {
                    let used = (*used_s).clamp(l.used_seconds, l.granted_seconds);
                    let (money, free) = settlement(l, used);
                    row.balance -= money;
                    row.reserved -= l.held;
                    row.free_used += free;
                    row.free_held -= l.free_seconds_held;
                    net.balance -= money;
                    net.reserved -= l.held;
                    net.free_used += free;
                    net.free_held -= l.free_seconds_held;
                    let new = Lease {
                        state: LeaseState::Released,
                        used_seconds: used,
                        held: 0,
                        free_seconds_held: 0,
                        cost: money,
                        free_seconds_charged: free,
                        ..l.clone()
                    };
                    Planned {
                        at,
                        replay: Replay {
                            lease_id: Some(l.id.clone()),
                            granted_now: 0,
                        },
                        write: LeaseWrite::Update {
                            old: l.clone(),
                            new,
                        },
                        granted_now: 0,
                    }
                }
                (1, Work::Renew { used_s, req, .. }, Some(Some(l))) => {
                    // Extensions are priced as the lease was.
                    let mut priced = row.clone();
                    priced.plan.rate_per_minute = l.rate_per_minute;
                    priced.plan.increment_s = l.increment_s;
                    let used = (*used_s).clamp(l.used_seconds, l.granted_seconds);
                    let extra = (used + req.seconds.max(0) - l.granted_seconds).max(0);
                    let (seconds, free, money, cut) = if extra > 0 {
                        grant(&priced, extra)
                    } else {
                        (0, 0, 0, false)
                    };
                    hold(&mut row, &mut net, money, free);
                    let new = Lease {
                        granted_seconds: l.granted_seconds + seconds,
                        used_seconds: used,
                        held: l.held + money,
                        free_seconds_held: l.free_seconds_held + free,
                        final_unit_indication: cut,
                        validity_seconds: req.validity_s,
                        expires_at: now + req.validity_s * 1000,
                        ..l.clone()
                    };
                    Planned {
                        at,
                        replay: Replay {
                            lease_id: Some(l.id.clone()),
                            granted_now: seconds,
                        },
                        write: LeaseWrite::Update {
                            old: l.clone(),
                            new,
                        },
                        granted_now: seconds,
                    }
                }
                (2, Work::Reserve { id, req, .. }, None) => {
                    let (seconds, free, money, cut) = grant(&row, req.seconds);
                    if seconds == 0 {
                        // Refused (or a retry of one that was not): the one-operation path.
                        done[at] = Some(Done::Alone);
                        continue;
                    }
                    hold(&mut row, &mut net, money, free);
                    let new = Lease {
                        id: id.clone(),
                        account_id: account.to_string(),
                        call_id: req.call_id.clone(),
                        state: LeaseState::Open,
                        granted_seconds: seconds,
                        used_seconds: 0,
                        held: money,
                        free_seconds_held: free,
                        cost: 0,
                        free_seconds_charged: 0,
                        debt_seconds: 0,
                        debt: 0,
                        final_unit_indication: cut,
                        rate_per_minute: row.plan.rate_per_minute,
                        increment_s: row.plan.increment_s,
                        validity_seconds: req.validity_s,
                        expires_at: now + req.validity_s * 1000,
                        created_at: now,
                    };
                    Planned {
                        at,
                        replay: Replay {
                            lease_id: Some(id.clone()),
                            granted_now: seconds,
                        },
                        write: LeaseWrite::Insert(new),
                        granted_now: seconds,
                    }
                }
                _ => continue,
            };
            planned.push(p);
        }
    }
    (planned, net)
}

/// A grant of `money` and `free` seconds, held in memory.
fn hold(row: &mut BalanceRow, net: &mut Net, money: i64, free: i64) {
    row.reserved += money;
    row.free_held += free;
    net.reserved += money;
    net.free_held += free;
    net.free_taken += free;
}

/// Statements carry their rows padded to a power of two (repeating a row where that changes
/// nothing), so that a handful of statement texts serve every batch size and stay prepared.
fn padded(n: usize) -> usize {
    n.next_power_of_two()
}

/// `rows` tuples of `width` placeholders, numbered from `$first`.
fn tuples(rows: usize, width: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", first + r * width + c));
        }
        sql.push(')');
    }
    sql
}

/// The leases of `account` among `ids`, by id.
async fn read_leases(
    tx: &mut AnyConnection,
    account: &str,
    ids: &[&str],
) -> Result<HashMap<String, Lease>, StoreError> {
    let mut found = HashMap::new();
    let Some(last) = ids.last() else {
        return Ok(found);
    };
    // By id alone, so that the primary key is the index used (a busy account has many
    // leases); another account's are left out here.
    let sql = format!(
        "SELECT {LEASE_COLUMNS} FROM leases WHERE id IN {}",
        tuples(1, padded(ids.len()), 1)
    );
    let mut q = sqlx::query(&sql).persistent(false);
    for i in 0..padded(ids.len()) {
        q = q.bind(*ids.get(i).unwrap_or(last));
    }
    for r in q.fetch_all(&mut *tx).await? {
        let lease = lease_from(&r)?;
        if lease.account_id == account {
            found.insert(lease.id.clone(), lease);
        }
    }
    Ok(found)
}

/// Keeps each operation's answer under its key; returns the keys stored (the others were
/// taken before).
async fn remember_all(
    tx: &mut AnyConnection,
    account: &str,
    keyed: &[(&str, String, &Replay)],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    if keyed.is_empty() {
        return Ok(HashSet::new());
    }
    let n = padded(keyed.len());
    let sql = format!(
        "INSERT INTO idempotency (account_id, key, operation, response, created_at) \
         VALUES {} ON CONFLICT (account_id, key) DO NOTHING RETURNING key",
        tuples(n, 5, 1)
    );
    let responses: Vec<String> = keyed
        .iter()
        .map(|(_, _, r)| serde_json::to_string(r).unwrap_or_default())
        .collect();
    let mut q = sqlx::query(&sql);
    for i in 0..n {
        // A repeated row conflicts with itself: nothing more is written.
        let i = i.min(keyed.len() - 1);
        let (key, op, _) = &keyed[i];
        q = q
            .bind(account)
            .bind(*key)
            .bind(op.as_str())
            .bind(responses[i].as_str())
            .bind(now);
    }
    let mut stored = HashSet::new();
    for r in q.fetch_all(&mut *tx).await? {
        stored.insert(r.try_get::<String, _>("key")?);
    }
    Ok(stored)
}

/// Inserts the new leases and updates the others, each conditional on the values read;
/// returns the ids written (one missing was changed by someone else). A lease written is
/// exactly its planned value: what the update leaves alone cannot change while it is open.
async fn write_leases(
    tx: &mut AnyConnection,
    account: &str,
    planned: &[Planned],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut written = HashSet::new();
    let inserts: Vec<&Lease> = planned
        .iter()
        .filter_map(|p| match &p.write {
            LeaseWrite::Insert(l) => Some(l),
            LeaseWrite::Update { .. } => None,
        })
        .collect();
    if let Some(last) = inserts.last() {
        let n = padded(inserts.len());
        // A repeated row conflicts with itself (its id): nothing more is written.
        let sql = format!(
            "INSERT INTO leases (id, account_id, call_id, state, granted_s, used_s, held, \
             free_held, final_units, rate_per_minute, increment_s, validity_s, expires_at, \
             created_at, updated_at) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            tuples(n, 15, 1)
        );
        let mut q = sqlx::query(&sql);
        for i in 0..n {
            let l = inserts.get(i).unwrap_or(last);
            q = q
                .bind(l.id.as_str())
                .bind(account)
                .bind(l.call_id.as_deref())
                .bind(l.state.as_str())
                .bind(l.granted_seconds)
                .bind(l.used_seconds)
                .bind(l.held)
                .bind(l.free_seconds_held)
                .bind(i64::from(l.final_unit_indication))
                .bind(l.rate_per_minute)
                .bind(l.increment_s)
                .bind(l.validity_seconds)
                .bind(l.expires_at)
                .bind(l.created_at)
                .bind(now);
        }
        for r in q.fetch_all(&mut *tx).await? {
            written.insert(r.try_get::<String, _>("id")?);
        }
    }
    let updates: Vec<(&Lease, &Lease)> = planned
        .iter()
        .filter_map(|p| match &p.write {
            LeaseWrite::Update { old, new } => Some((old, new)),
            LeaseWrite::Insert(_) => None,
        })
        .collect();
    if let Some(last) = updates.last() {
        let n = padded(updates.len());
        // A repeated row matches the same lease with the same values: one update.
        let sql = format!(
            "WITH v (v_id, v_state, v_granted, v_used, v_held, v_free_held, v_cost, \
             v_free_charged, v_final, v_validity, v_expires, v_updated, o_granted, o_used, \
             o_held, o_free_held) AS (VALUES {}) \
             UPDATE leases SET state = v_state, granted_s = v_granted, used_s = v_used, \
             held = v_held, free_held = v_free_held, cost = v_cost, \
             free_charged = v_free_charged, final_units = v_final, validity_s = v_validity, \
             expires_at = v_expires, updated_at = v_updated \
             FROM v WHERE leases.id = v_id AND leases.state = 'open' \
             AND leases.granted_s = o_granted AND leases.used_s = o_used \
             AND leases.held = o_held AND leases.free_held = o_free_held RETURNING id",
            tuples(n, 16, 1)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for i in 0..n {
            let (old, new) = updates.get(i).unwrap_or(last);
            q = q
                .bind(new.id.as_str())
                .bind(new.state.as_str())
                .bind(new.granted_seconds)
                .bind(new.used_seconds)
                .bind(new.held)
                .bind(new.free_seconds_held)
                .bind(new.cost)
                .bind(new.free_seconds_charged)
                .bind(i64::from(new.final_unit_indication))
                .bind(new.validity_seconds)
                .bind(new.expires_at)
                .bind(now)
                .bind(old.granted_seconds)
                .bind(old.used_seconds)
                .bind(old.held)
                .bind(old.free_seconds_held);
        }
        for r in q.fetch_all(&mut *tx).await? {
            written.insert(r.try_get::<String, _>("id")?);
        }
    }
    Ok(written)
}

/// The batch's ledger rows in one statement (changes of nothing left out).
async fn write_ledger(
    tx: &mut AnyConnection,
    account: &str,
    planned: &[Planned],
    now: i64,
) -> Result<(), StoreError> {
    let mut rows: Vec<(&str, &'static str, i64, i64)> = Vec::new();
    for p in planned {
        match &p.write {
            LeaseWrite::Insert(l) => rows.push((&l.id, "reserve", 0, l.held)),
            LeaseWrite::Update { old, new } if new.state == LeaseState::Released => {
                rows.push((&new.id, "settle", -new.cost, -new.cost));
                rows.push((&new.id, "release", 0, -(old.held - new.cost)));
            }
            LeaseWrite::Update { old, new } => {
                rows.push((&new.id, "reserve", 0, new.held - old.held));
            }
        }
    }
    rows.retain(|(_, _, amount, hold)| *amount != 0 || *hold != 0);
    let Some(&(last_id, last_kind, _, _)) = rows.last() else {
        return Ok(());
    };
    let n = padded(rows.len());
    // Padding rows change nothing and are left out by the WHERE.
    let sql = format!(
        "WITH v (v_account, v_lease, v_kind, v_amount, v_hold, v_at) AS (VALUES {}) \
         INSERT INTO ledger (account_id, lease_id, kind, amount, hold, created_at) \
         SELECT v_account, v_lease, v_kind, v_amount, v_hold, v_at FROM v \
         WHERE v_amount <> 0 OR v_hold <> 0",
        tuples(n, 6, 1)
    );
    let mut q = sqlx::query(&sql);
    for i in 0..n {
        let (id, kind, amount, hold) = rows.get(i).copied().unwrap_or((last_id, last_kind, 0, 0));
        q = q
            .bind(account)
            .bind(id)
            .bind(kind)
            .bind(amount)
            .bind(hold)
            .bind(now);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}

/// Moves the balance row by the batch's net change, if the account still covers it (what
/// is available, and the free seconds when the batch holds some): false when another node
/// took them since the read. The last statement before the commit.
async fn apply_net(
    tx: &mut AnyConnection,
    account: &str,
    net: &Net,
    now: i64,
) -> Result<bool, StoreError> {
    // After the change: balance - reserved + overdraft >= 0, i.e. before it >= taken.
    let taken = net.reserved - net.balance;
    let free_taken = if net.free_taken > 0 {
        net.free_used + net.free_held
    } else {
        i64::MIN
    };
    let done = sqlx::query(
        "UPDATE balances SET balance = balance + $1, reserved = reserved + $2, \
         free_used = free_used + $3, free_held = free_held + $4, updated_at = $5 \
         WHERE account_id = $6 AND balance - reserved + overdraft >= $7 \
         AND free_seconds - free_used - free_held >= $8",
    )
    .bind(net.balance)
    .bind(net.reserved)
    .bind(net.free_used)
    .bind(net.free_held)
    .bind(now)
    .bind(account)
    .bind(taken)
    .bind(free_taken)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}
