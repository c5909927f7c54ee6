//! Prepaid billing with heartbeat leases on both backends: grants, renewals, settlement,
//! final units, free minutes, idempotency, the sweeper, and 100 calls racing on one balance.

mod support;

use std::sync::Arc;

use parley::store::billing::{LeaseRequest, LeaseState, Plan};
use parley::store::{now_ms, Store, StoreError};
use support::stores::on_each_backend;

/// 0.60 a minute: 10,000 micro-units a second.
const RATE: i64 = 600_000;

fn ask(seconds: i64) -> LeaseRequest {
    LeaseRequest {
        call_id: Some("call-1".into()),
        seconds,
        validity_s: 60,
    }
}

/// 0.60 a minute billed in 6 s increments.
fn in_sixes() -> Plan {
    Plan {
        rate_per_minute: RATE,
        increment_s: 6,
        ..Plan::default()
    }
}

async fn funded(store: &Store, amount: i64, plan: Plan) -> String {
    let account = store.create_account("billed").await.unwrap();
    store.set_plan(&account.id, plan).await.unwrap();
    store.topup(&account.id, amount, None).await.unwrap();
    account.id
}

/// The ledger sums to the balance row, nothing is held, and the balance never went below
/// the overdraft.
async fn assert_books_balance(store: &Store, account: &str) {
    let b = store.balance(account).await.unwrap();
    let (amount, hold) = store.ledger_sums(account).await.unwrap();
    assert_eq!(
        (amount, hold),
        (b.balance, b.reserved),
        "ledger against {b:?}"
    );
    assert!(b.available >= 0, "{b:?}");
}

#[tokio::test]
async fn a_call_reserves_renews_and_settles_in_increments() {
    on_each_backend(|store, _| async move {
        let acc = funded(&store, 1_000_000, in_sixes()).await;
        let g = store.reserve(&acc, &ask(30), Some("r1")).await.unwrap();
        assert_eq!((g.granted_now, g.lease.held), (30, 300_000));
        assert!(!g.lease.final_unit_indication);
        // Same key again: the same lease, nothing held twice.
        let again = store.reserve(&acc, &ask(30), Some("r1")).await.unwrap();
        assert_eq!(
            (again.lease.id.as_str(), again.granted_now),
            (g.lease.id.as_str(), 30)
        );
        assert_eq!(store.balance(&acc).await.unwrap().reserved, 300_000);
        // 25 s used, 30 more wanted: 55 in all, granted to 60 (whole increments).
        let r = store
            .renew(&acc, &g.lease.id, 25, &ask(30), Some("n1"))
            .await
            .unwrap();
        assert_eq!(
            (r.granted_now, r.lease.granted_seconds, r.lease.held),
            (30, 60, 600_000)
        );
        // Hung up at 40 s: billed 42 s (7 increments).
        let done = store
            .release(&acc, &g.lease.id, 40, Some("x1"))
            .await
            .unwrap();
        assert_eq!(done.state, LeaseState::Released);
        assert_eq!((done.cost, done.held), (420_000, 0));
        let b = store.balance(&acc).await.unwrap();
        assert_eq!((b.balance, b.reserved), (580_000, 0));
        assert_books_balance(&store, &acc).await;
        // The release replays; a second release without the key is refused.
        assert_eq!(
            store
                .release(&acc, &g.lease.id, 40, Some("x1"))
                .await
                .unwrap()
                .cost,
            420_000
        );
        assert!(matches!(
            store.release(&acc, &g.lease.id, 40, None).await,
            Err(StoreError::Conflict(_))
        ));
        // A key reused for another operation is a conflict, not a silent replay.
        assert!(matches!(
            store.topup(&acc, 5, Some("r1")).await,
            Err(StoreError::Conflict(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn when_money_runs_short_the_grant_is_cut_and_marked_final() {
    on_each_backend(|store, _| async move {
        let acc = funded(&store, 1_000_000, in_sixes()).await;
        let g = store.reserve(&acc, &ask(300), None).await.unwrap();
        assert_eq!(g.granted_now, 96, "16 whole increments of 6 s");
        assert!(g.lease.final_unit_indication);
        // 40,000 left: less than one increment; no call can be answered.
        assert!(matches!(
            store.reserve(&acc, &ask(60), None).await,
            Err(StoreError::Insufficient)
        ));
        // Renewing asks beyond the grant: nothing more, still final.
        let r = store
            .renew(&acc, &g.lease.id, 90, &ask(60), None)
            .await
            .unwrap();
        assert_eq!((r.granted_now, r.lease.final_unit_indication), (0, true));
        // Usage reported beyond the grant is billed up to the grant only.
        let done = store.release(&acc, &g.lease.id, 500, None).await.unwrap();
        assert_eq!((done.used_seconds, done.cost), (96, 960_000));
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test]
async fn a_call_allowed_past_its_grant_records_debt_that_the_next_topup_pays() {
    on_each_backend(|store, _| async move {
        let acc = funded(&store, 1_000_000, in_sixes()).await;
        let g = store.reserve(&acc, &ask(300), None).await.unwrap();
        assert_eq!(g.granted_now, 96);
        assert!(
            matches!(
                store.record_debt(&acc, &g.lease.id, 130).await,
                Err(StoreError::Conflict(_))
            ),
            "an open lease has no debt yet"
        );
        store.release(&acc, &g.lease.id, 130, None).await.unwrap();
        // 130 s used of 96 granted: 34 s over, billed as 36 (whole increments) of debt.
        let owed = store.record_debt(&acc, &g.lease.id, 130).await.unwrap();
        assert_eq!((owed.debt_seconds, owed.debt), (36, 360_000));
        // Once per lease.
        let again = store.record_debt(&acc, &g.lease.id, 200).await.unwrap();
        assert_eq!((again.debt_seconds, again.debt), (36, 360_000));
        let b = store.balance(&acc).await.unwrap();
        assert_eq!(
            (b.balance, b.debt),
            (40_000, 360_000),
            "the balance stays within bounds"
        );
        assert_books_balance(&store, &acc).await;
        // A top-up pays the debt first; what is left is the balance.
        let b = store.topup(&acc, 300_000, None).await.unwrap();
        assert_eq!((b.balance, b.debt), (40_000, 60_000));
        let b = store.topup(&acc, 100_000, None).await.unwrap();
        assert_eq!((b.balance, b.debt), (80_000, 0));
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test]
async fn free_minutes_are_used_first_and_an_overdraft_is_honoured() {
    on_each_backend(|store, _| async move {
        let plan = Plan {
            rate_per_minute: RATE,
            increment_s: 1,
            free_seconds: 60,
            overdraft: 200_000,
        };
        let acc = funded(&store, 0, plan).await;
        let b = store.balance(&acc).await.unwrap();
        assert_eq!((b.free_seconds_left, b.available), (60, 200_000));
        assert!(
            b.free_resets_at > now_ms() + 27 * 86_400_000,
            "a month ahead"
        );
        // 90 s wanted: 60 free and the 20 s the overdraft covers.
        let g = store.reserve(&acc, &ask(90), None).await.unwrap();
        assert_eq!(
            (g.granted_now, g.lease.free_seconds_held, g.lease.held),
            (80, 60, 200_000)
        );
        assert!(g.lease.final_unit_indication);
        let done = store.release(&acc, &g.lease.id, 70, None).await.unwrap();
        assert_eq!((done.free_seconds_charged, done.cost), (60, 100_000));
        let b = store.balance(&acc).await.unwrap();
        assert_eq!(
            (b.balance, b.free_seconds_left, b.available),
            (-100_000, 0, 100_000)
        );
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test]
async fn unrenewed_leases_are_settled_at_the_last_usage_plus_an_increment() {
    on_each_backend(|store, _| async move {
        let acc = funded(&store, 1_000_000, in_sixes()).await;
        let g = store.reserve(&acc, &ask(60), None).await.unwrap();
        store
            .renew(&acc, &g.lease.id, 20, &ask(30), None)
            .await
            .unwrap();
        // Not due yet.
        assert_eq!(store.expire_due(now_ms()).await.unwrap(), 0);
        let later = now_ms() + 61_000;
        assert_eq!(store.expire_due(later).await.unwrap(), 1);
        let lease = store.lease(&acc, &g.lease.id).await.unwrap();
        assert_eq!(lease.state, LeaseState::Expired);
        // 20 s reported + one 6 s increment = 26 s, billed as 30 s.
        assert_eq!((lease.used_seconds, lease.cost), (26, 300_000));
        assert!(matches!(
            store.renew(&acc, &g.lease.id, 30, &ask(30), None).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.expire_due(later).await.unwrap(), 0, "once");
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

/// An account with ten minutes of money at a per-second rate, its store shared by tasks.
async fn ten_minutes(store: Store) -> (Arc<Store>, String) {
    let plan = Plan {
        rate_per_minute: RATE,
        increment_s: 1,
        ..Plan::default()
    };
    let acc = funded(&store, 6_000_000, plan).await;
    (Arc::new(store), acc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_with_one_idempotency_key_racing_each_other_hold_once() {
    on_each_backend(|store, _| async move {
        let (store, acc) = ten_minutes(store).await;
        let mut tries = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (store, acc) = (store.clone(), acc.clone());
            tries.spawn(async move { store.reserve(&acc, &ask(60), Some("same")).await.unwrap() });
        }
        let mut ids = std::collections::BTreeSet::new();
        while let Some(g) = tries.join_next().await {
            let g = g.unwrap();
            assert_eq!(g.granted_now, 60);
            ids.insert(g.lease.id);
        }
        assert_eq!(ids.len(), 1, "one lease: {ids:?}");
        assert_eq!(store.balance(&acc).await.unwrap().reserved, 600_000);
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_calls_racing_on_ten_minutes_never_overspend() {
    on_each_backend(|store, _| async move {
        let (store, acc) = ten_minutes(store).await;
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..100i64 {
            let (store, acc) = (store.clone(), acc.clone());
            calls.spawn(async move {
                let g = match store.reserve(&acc, &ask(30), Some(&format!("r{i}"))).await {
                    Ok(g) => g,
                    Err(StoreError::Insufficient) => return None,
                    Err(e) => panic!("reserve: {e}"),
                };
                let used = 20 + i % 10;
                let r = store
                    .renew(&acc, &g.lease.id, used, &ask(30), Some(&format!("n{i}")))
                    .await
                    .unwrap();
                let end = (used + 15).min(r.lease.granted_seconds);
                let done = store
                    .release(&acc, &g.lease.id, end, Some(&format!("x{i}")))
                    .await
                    .unwrap();
                assert_eq!(done.held, 0);
                Some(done.cost)
            });
        }
        let (mut charged, mut refused) = (0, 0);
        while let Some(cost) = calls.join_next().await {
            match cost.unwrap() {
                Some(c) => charged += c,
                None => refused += 1,
            }
        }
        // About 40 s a call against 600 s of money: most were refused.
        assert!(refused > 50, "{refused} refused");
        let b = store.balance(&acc).await.unwrap();
        assert!(charged > 0 && charged <= 6_000_000, "charged {charged}");
        assert_eq!(b.balance, 6_000_000 - charged);
        assert_eq!(b.reserved, 0);
        assert!(b.balance >= 0, "{b:?}");
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

// Group commit (src/store/billing/batch.rs): an account's concurrent operations share one
// transaction. What that could break: one operation's refusal failing the others, answers
// mixed up between them, operations of one lease in one batch, and nodes racing.

/// Runs `n` tasks at once on `store` and collects their results in order.
async fn at_once<T, F, Fut>(n: usize, each: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let f = each(i);
        tasks.spawn(async move { (i, f.await) });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        let (i, v) = r.unwrap();
        out[i] = Some(v);
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// Open leases hold what the balance row says is reserved.
async fn assert_holds_match(store: &Store, account: &str, open: &[String]) {
    let mut held = 0;
    for id in open {
        let l = store.lease(account, id).await.unwrap();
        assert_eq!(l.state, LeaseState::Open, "{l:?}");
        held += l.held;
    }
    assert_eq!(store.balance(account).await.unwrap().reserved, held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_batch_a_refused_operation_does_not_fail_the_others() {
    on_each_backend(|store, _| async move {
        let (store, acc) = ten_minutes(store).await;
        store.topup(&acc, 1, Some("paid")).await.unwrap();
        let closed = store.reserve(&acc, &ask(10), None).await.unwrap().lease.id;
        store
            .release(&acc, &closed, 5, Some("closed"))
            .await
            .unwrap();
        let (batches_before, _) = store.lease_batches();
        // 24 reservations, and among them: a key used by a top-up (conflict), a renewal of
        // a closed lease (conflict), one of a lease that does not exist (not found), and a
        // retry of the release that closed a lease (its first answer).
        let results = at_once(28, |i| {
            let (store, acc, closed) = (store.clone(), acc.clone(), closed.clone());
            async move {
                match i {
                    24 => store
                        .reserve(&acc, &ask(10), Some("paid"))
                        .await
                        .map(|g| g.lease.id),
                    25 => store
                        .renew(&acc, &closed, 8, &ask(10), Some("late"))
                        .await
                        .map(|g| g.lease.id),
                    26 => store
                        .renew(&acc, "lse_nosuchlease", 8, &ask(10), None)
                        .await
                        .map(|g| g.lease.id),
                    27 => store
                        .release(&acc, &closed, 5, Some("closed"))
                        .await
                        .map(|l| l.id),
                    _ => store
                        .reserve(&acc, &ask(10), Some(&format!("ok{i}")))
                        .await
                        .map(|g| g.lease.id),
                }
            }
        })
        .await;
        let mut open = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match (i, r) {
                (24 | 25, Err(StoreError::Conflict(_))) => {}
                (26, Err(StoreError::NotFound("lease"))) => {}
                (27, Ok(id)) => assert_eq!(id, closed),
                (0..=23, Ok(id)) => open.push(id),
                (i, r) => panic!("operation {i}: {r:?}"),
            }
        }
        assert_eq!(open.len(), 24);
        assert_eq!(
            open.iter().collect::<std::collections::BTreeSet<_>>().len(),
            24,
            "a lease each"
        );
        // Each got its own answer back on a retry.
        for (i, id) in open.iter().enumerate() {
            let again = store
                .reserve(&acc, &ask(10), Some(&format!("ok{i}")))
                .await
                .unwrap();
            assert_eq!(&again.lease.id, id);
        }
        let (batches, operations) = store.lease_batches();
        assert!(
            operations > batches && batches > batches_before,
            "{batches} batches, {operations} operations"
        );
        assert_holds_match(&store, &acc, &open).await;
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_mixes_reserves_renewals_and_releases_of_one_account() {
    on_each_backend(|store, _| async move {
        let (store, acc) = ten_minutes(store).await;
        let mut leases = Vec::new();
        for i in 0..11 {
            let g = store
                .reserve(&acc, &ask(20), Some(&format!("first{i}")))
                .await
                .unwrap();
            leases.push(g.lease.id);
        }
        let before = store.balance(&acc).await.unwrap();
        // Leases 0-4 released, 5-9 renewed, lease 10 renewed and released at once (one
        // lease's operations never share a batch), and 5 new reservations.
        let results = at_once(17, |i| {
            let (store, acc, leases) = (store.clone(), acc.clone(), leases.clone());
            async move {
                match i {
                    0..=4 => store
                        .release(&acc, &leases[i], 12, Some(&format!("x{i}")))
                        .await
                        .map(|l| (l.id, l.held, 0)),
                    5..=9 | 15 => store
                        .renew(
                            &acc,
                            &leases[i.min(10)],
                            15,
                            &ask(20),
                            Some(&format!("n{i}")),
                        )
                        .await
                        .map(|g| (g.lease.id, g.lease.held, g.granted_now)),
                    16 => store
                        .release(&acc, &leases[10], 18, Some("x10"))
                        .await
                        .map(|l| (l.id, l.held, 0)),
                    _ => store
                        .reserve(&acc, &ask(20), Some(&format!("new{i}")))
                        .await
                        .map(|g| (g.lease.id, g.lease.held, g.granted_now)),
                }
            }
        })
        .await;
        let mut open: Vec<String> = leases[5..10].to_vec();
        for (i, r) in results.into_iter().enumerate() {
            match (i, r) {
                (0..=4, Ok((id, held, _))) => {
                    assert_eq!((id.as_str(), held), (leases[i].as_str(), 0))
                }
                // 15 s used + 20 more: 35 in all, 15 more than the first 20.
                (5..=9, Ok((id, held, now))) => {
                    assert_eq!((id.as_str(), held, now), (leases[i].as_str(), 350_000, 15))
                }
                (10..=14, Ok((id, held, now))) => {
                    assert_eq!((held, now), (200_000, 20));
                    open.push(id);
                }
                // Renewed before the release, or refused after it.
                (15, Ok(_)) | (15, Err(StoreError::Conflict(_))) => {}
                (16, Ok((id, held, _))) => {
                    assert_eq!((id.as_str(), held), (leases[10].as_str(), 0))
                }
                (i, r) => panic!("operation {i}: {r:?}"),
            }
        }
        for (i, id) in leases[..5].iter().enumerate() {
            let l = store.lease(&acc, id).await.unwrap();
            assert_eq!(
                (l.state, l.used_seconds, l.cost),
                (LeaseState::Released, 12, 120_000),
                "{i}"
            );
        }
        let ten = store.lease(&acc, &leases[10]).await.unwrap();
        assert_eq!(
            (ten.state, ten.used_seconds, ten.cost),
            (LeaseState::Released, 18, 180_000)
        );
        let after = store.balance(&acc).await.unwrap();
        assert_eq!(after.balance, before.balance - 5 * 120_000 - 180_000);
        assert_holds_match(&store, &acc, &open).await;
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_grants_in_turn_what_the_money_covers() {
    on_each_backend(|store, _| async move {
        // 600 s of money; 30 calls at once each want 60 s: ten get them, no grant is cut
        // (none needs to be), the rest are refused.
        let (store, acc) = ten_minutes(store).await;
        let results = at_once(30, |i| {
            let (store, acc) = (store.clone(), acc.clone());
            async move { store.reserve(&acc, &ask(60), Some(&format!("r{i}"))).await }
        })
        .await;
        let mut granted = Vec::new();
        let mut refused = 0;
        for r in results {
            match r {
                Ok(g) => {
                    assert_eq!((g.granted_now, g.lease.held), (60, 600_000));
                    granted.push(g.lease.id);
                }
                Err(StoreError::Insufficient) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((granted.len(), refused), (10, 20));
        let b = store.balance(&acc).await.unwrap();
        assert_eq!((b.reserved, b.available), (6_000_000, 0));
        assert_holds_match(&store, &acc, &granted).await;
        assert_books_balance(&store, &acc).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_on_one_account_never_overspend() {
    support::stores::on_two_postgres_nodes(|one, two| async move {
        let (one, acc) = ten_minutes(one).await;
        let two = Arc::new(two);
        // The same key tried on both nodes at once: one lease.
        let tries = at_once(10, |i| {
            let (store, acc) = (
                if i % 2 == 0 { one.clone() } else { two.clone() },
                acc.clone(),
            );
            async move { store.reserve(&acc, &ask(60), Some("same")).await.unwrap() }
        })
        .await;
        let first = &tries[0].lease.id;
        assert!(tries
            .iter()
            .all(|g| &g.lease.id == first && g.granted_now == 60));
        one.release(&acc, first, 30, None).await.unwrap();
        // 100 calls, half on each node, on the 5.7 minutes left.
        let costs = at_once(100, |i| {
            let (store, acc) = (
                if i % 2 == 0 { one.clone() } else { two.clone() },
                acc.clone(),
            );
            async move {
                let g = match store.reserve(&acc, &ask(30), Some(&format!("r{i}"))).await {
                    Ok(g) => g,
                    Err(StoreError::Insufficient) => return None,
                    Err(e) => panic!("reserve: {e}"),
                };
                let used = 20 + i as i64 % 10;
                let r = store
                    .renew(&acc, &g.lease.id, used, &ask(30), Some(&format!("n{i}")))
                    .await
                    .unwrap();
                let end = (used + 15).min(r.lease.granted_seconds);
                let done = store
                    .release(&acc, &g.lease.id, end, Some(&format!("x{i}")))
                    .await
                    .unwrap();
                assert_eq!(done.held, 0);
                Some(done.cost)
            }
        })
        .await;
        let charged: i64 = costs.iter().flatten().sum();
        let refused = costs.iter().filter(|c| c.is_none()).count();
        assert!(refused > 50, "{refused} refused");
        let b = two.balance(&acc).await.unwrap();
        assert_eq!(b.balance, 6_000_000 - 300_000 - charged);
        assert_eq!(b.reserved, 0);
        assert!(b.balance >= 0, "{b:?}");
        assert_books_balance(&one, &acc).await;
    })
    .await;
}
