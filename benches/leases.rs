//! A billing lease's operations on SQLite, one at a time, as a call holds them
//! (`src/call/lease.rs`): reserve two heartbeats before answering, renew every heartbeat with
//! the usage so far, release with the final usage; every operation with its own idempotency
//! key, as the call engine sends them.
//!
//!     cargo bench --bench leases
//!
//! The store is `Store::open` on a fresh directory under `target/tmp` (the machine's disk,
//! as a deployment's data directory would be, not a tmpfs), one funded account with a
//! per-second plan. This is the latency of one operation with nothing else waiting; the
//! throughput of many clients on one account is `scripts/bench_leases.sh` (docs/benchmarks.md,
//! "Billing leases").

use std::time::{Duration, Instant};

use criterion::Criterion;
use parley::store::billing::{LeaseRequest, Plan};
use parley::store::Store;

/// 30 s heartbeats (`billing.heartbeat_s`' default): two reserved ahead, valid for three.
const HEARTBEAT_S: i64 = 30;

fn ask(call_id: Option<&str>) -> LeaseRequest {
    LeaseRequest {
        call_id: call_id.map(str::to_string),
        seconds: 2 * HEARTBEAT_S,
        validity_s: 3 * HEARTBEAT_S,
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    store: Store,
    account: String,
    /// Makes every call id and idempotency key unique.
    n: u64,
}

impl Bench {
    fn open(dir: &std::path::Path) -> Bench {
        // The server's shape: a multi-threaded runtime (sqlx's SQLite worker and the
        // billing batcher are tasks and threads of their own).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (store, account) = rt.block_on(async {
            let store = Store::open("", dir).await.expect("open the SQLite store");
            let account = store.create_account("bench").await.unwrap();
            let plan = Plan {
                rate_per_minute: 600_000,
                ..Plan::default()
            };
            store.set_plan(&account.id, plan).await.unwrap();
            // Enough that no grant is ever cut, whatever the iteration count.
            store
                .topup(&account.id, 1_000_000_000_000_000, None)
                .await
                .unwrap();
            (store, account.id)
        });
        Bench {
            rt,
            store,
            account,
            n: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn reserve(&self, n: u64) -> String {
        let call = format!("call-{n}");
        let key = format!("{call}/reserve");
        self.rt
            .block_on(
                self.store
                    .reserve(&self.account, &ask(Some(&call)), Some(&key)),
            )
            .unwrap()
            .lease
            .id
    }

    fn renew(&self, lease: &str, used_s: i64) {
        let key = format!("{lease}/renew-{used_s}");
        let grant = self
            .rt
            .block_on(
                self.store
                    .renew(&self.account, lease, used_s, &ask(None), Some(&key)),
            )
            .unwrap();
        assert!(!grant.lease.final_unit_indication);
    }

    fn release(&self, lease: &str, used_s: i64) {
        let key = format!("{lease}/release");
        self.rt
            .block_on(self.store.release(&self.account, lease, used_s, Some(&key)))
            .unwrap();
    }
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut b = Bench::open(dir.path());
    // Each operation commits (about 1 ms): 50 samples in 10 s keep the run near a minute.
    let mut c = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let mut g = c.benchmark_group("billing_lease_sqlite");
    g.bench_function("reserve", |bench| {
        bench.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let n = b.next();
                let start = Instant::now();
                let lease = b.reserve(n);
                spent += start.elapsed();
                // Untimed: the call ends, so the account's holds do not pile up.
                b.release(&lease, 0);
            }
            spent
        })
    });
    g.bench_function("renew", |bench| {
        // One long call: a renewal every heartbeat with the usage so far.
        let n = b.next();
        let lease = b.reserve(n);
        let mut used = 0;
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                used += HEARTBEAT_S;
                b.renew(&lease, used);
            }
            start.elapsed()
        });
        b.release(&lease, used);
    });
    g.bench_function("release", |bench| {
        bench.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let n = b.next();
                let lease = b.reserve(n);
                let start = Instant::now();
                b.release(&lease, 17);
                spent += start.elapsed();
            }
            spent
        })
    });
    g.bench_function("call_reserve_renew_release", |bench| {
        // A 50 s call's whole lease: reserve, one renewal at 30 s, release at 50 s.
        bench.iter(|| {
            let n = b.next();
            let lease = b.reserve(n);
            b.renew(&lease, HEARTBEAT_S);
            b.release(&lease, 50);
        })
    });
    g.finish();
    c.final_summary();
}
