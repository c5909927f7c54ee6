//! Several nodes sharing one Redis (`redis.url`), against the real Redis named by
//! `PARLEY_TEST_REDIS_URL` (skipped, visibly, without it; failed when it is set and cannot be
//! reached): call slots taken atomically and expiring with their node, live calls seen and
//! hung up from any node, and two `parley serve` processes (on the PostgreSQL store of
//! `PARLEY_TEST_DATABASE_URL`) enforcing one account's limit together. Every test works
//! under a key prefix of its own and deletes its keys afterwards.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parley::call::core::HangupCause;
use parley::call::limits::CallLimits;
use parley::call::registry::{LiveCall, LiveCalls};
use parley::cluster::{calls, slots, Redis};
use parley::config::RedisConfig;
use parley::metrics::Metrics;
use support::*;

/// `PARLEY_TEST_REDIS_URL`, checked to answer; None (after saying so) when it is not set.
fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("PARLEY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if !require(
        test,
        "PARLEY_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)",
        url.is_some(),
    ) {
        return None;
    }
    let url = url.unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("PARLEY_TEST_REDIS_URL={url} is set but unreachable: {e}"));
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    Some(url)
}

/// A key prefix of the test's own; its keys are deleted when dropped.
struct Keys {
    url: String,
    prefix: String,
}

impl Keys {
    fn new(url: &str) -> Keys {
        Keys {
            url: url.to_string(),
            prefix: format!("parley-test-{}:", parley::store::random_id("", 10)),
        }
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn matching(&self) -> Vec<String> {
        let mut conn = self.conn();
        let iter: redis::Iter<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}*", self.prefix))
            .clone()
            .iter(&mut conn)
            .unwrap();
        iter.filter_map(Result::ok).collect()
    }

    /// A node on this prefix.
    fn node(&self, id: &str, ttl_s: u64) -> Arc<Redis> {
        let config = RedisConfig {
            url: self.url.clone(),
            prefix: self.prefix.clone(),
            node_id: id.to_string(),
            ttl_s,
        };
        Redis::new(&config, Arc::new(Metrics::default())).unwrap()
    }

    /// Milliseconds on Redis's clock.
    fn now_ms(&self) -> i64 {
        let (s, us): (i64, i64) = redis::cmd("TIME").query(&mut self.conn()).unwrap();
        s * 1000 + us / 1000
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let keys = self.matching();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut self.conn());
        }
    }
}

/// Polls an async condition every 20 ms for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn call(id: &str, account: &str) -> LiveCall {
    LiveCall {
        id: id.into(),
        call_id: format!("{id}@test"),
        account_id: account.into(),
        agent_id: None,
        number: Some("+15551230070".into()),
        from_uri: "sip:a@b".into(),
        to_uri: "sip:+15551230070@parley".into(),
        direction: "inbound".into(),
        state: "ringing".into(),
        started_at: 1_796_327_062_123,
        answered_at: None,
    }
}

#[tokio::test]
async fn slots_are_taken_atomically_across_nodes() {
    let Some(url) = redis_url("slots_are_taken_atomically_across_nodes") else {
        return;
    };
    let keys = Keys::new(&url);
    let (a, b) = (keys.node("a", 15), keys.node("b", 15));
    // 20 calls at once from two nodes, limit 3: exactly 3 get a slot.
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tries.spawn(async move {
            slots::acquire(&node, "acc_x", &format!("c{i}"), Some(3))
                .await
                .unwrap()
        });
    }
    let taken = tries.join_all().await.into_iter().filter(|t| *t).count();
    assert_eq!(taken, 3);
    assert_eq!(slots::count(&a, "acc_x").await.unwrap(), 3);
    // A call that holds a slot keeps it; a new one waits for a slot to be given back.
    let held: Vec<String> = redis::cmd("ZRANGE")
        .arg(slots::key(&a, "acc_x"))
        .arg(0)
        .arg(-1)
        .query(&mut keys.conn())
        .unwrap();
    assert!(slots::acquire(&b, "acc_x", &held[0], Some(3))
        .await
        .unwrap());
    assert!(!slots::acquire(&b, "acc_new", "n", Some(0)).await.unwrap());
    assert!(!slots::acquire(&b, "acc_x", "n", Some(3)).await.unwrap());
    slots::release(&a, "acc_x", &held[1]).await.unwrap();
    assert!(slots::acquire(&b, "acc_x", "n", Some(3)).await.unwrap());
    // No limit: counted all the same.
    assert!(slots::acquire(&a, "acc_x", "m", None).await.unwrap());
    assert_eq!(slots::count(&b, "acc_x").await.unwrap(), 4);
    // The set lives as long as its latest slot.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(slots::key(&a, "acc_x"))
        .query(&mut keys.conn())
        .unwrap();
    assert!((1..=15_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_dead_nodes_slots_expire_and_a_live_node_restores_its_own() {
    let Some(url) = redis_url("a_dead_nodes_slots_expire_and_a_live_node_restores_its_own") else {
        return;
    };
    let keys = Keys::new(&url);
    let a = keys.node("a", 15);
    let key = slots::key(&a, "acc_y");
    // Slots left by a node that stopped refreshing them: one expired, one not yet.
    let now = keys.now_ms();
    let _: i64 = redis::cmd("ZADD")
        .arg(&key)
        .arg(now - 1)
        .arg("expired")
        .arg(now + 60_000)
        .arg("alive")
        .query(&mut keys.conn())
        .unwrap();
    assert_eq!(slots::count(&a, "acc_y").await.unwrap(), 1);
    assert!(!slots::acquire(&a, "acc_y", "c1", Some(1)).await.unwrap());
    assert!(slots::acquire(&a, "acc_y", "c1", Some(2)).await.unwrap());
    // Redis lost the set (restarted empty): the holder's refresh puts its slots back.
    let _: i64 = redis::cmd("DEL").arg(&key).query(&mut keys.conn()).unwrap();
    slots::refresh(&a, &[("acc_y".into(), vec!["c1".into(), "c2".into()])])
        .await
        .unwrap();
    assert_eq!(slots::count(&a, "acc_y").await.unwrap(), 2);
}

#[tokio::test]
async fn call_limits_are_shared_by_nodes() {
    let Some(url) = redis_url("call_limits_are_shared_by_nodes") else {
        return;
    };
    let keys = Keys::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let store = parley::store::Store::open("", dir.path()).await.unwrap();
    let acc = store.create_account("A").await.unwrap().id;
    store
        .update_account(&acc, None, Some(Some(2)))
        .await
        .unwrap();
    let a = CallLimits::shared(store.clone(), keys.node("a", 15));
    let b = CallLimits::shared(store.clone(), keys.node("b", 15));
    let on_a = a.acquire(&acc, "c1").await.unwrap();
    let _on_b = b.acquire(&acc, "c2").await.unwrap();
    assert_eq!(b.acquire(&acc, "c3").await.err(), Some(2));
    assert_eq!(a.acquire(&acc, "c3").await.err(), Some(2));
    assert_eq!((a.held_here(&acc), b.held_here(&acc)), (1, 1));
    // A call ending on A frees its slot for B (given back by A's task).
    drop(on_a);
    let node = keys.node("probe", 15);
    eventually("A gave its slot back", || {
        let node = node.clone();
        let acc = acc.clone();
        async move { slots::count(&node, &acc).await.unwrap() == 1 }
    })
    .await;
    let _c3 = b.acquire(&acc, "c3").await.unwrap();
    assert_eq!(slots::count(&node, &acc).await.unwrap(), 2);
}

#[tokio::test]
async fn live_calls_are_listed_and_hung_up_from_any_node() {
    let Some(url) = redis_url("live_calls_are_listed_and_hung_up_from_any_node") else {
        return;
    };
    let keys = Keys::new(&url);
    let (node_a, node_b) = (keys.node("a", 15), keys.node("b", 15));
    let a = LiveCalls::shared(node_a.clone());
    let b = LiveCalls::shared(node_b.clone());
    let (entry, mut hangups) = a.register(call("cdr_1", "acc_1"));
    eventually("B lists A's call", || async {
        b.cluster_list(None).await.iter().any(|c| c.id == "cdr_1")
    })
    .await;
    assert_eq!(b.cluster_list(Some("acc_1")).await.len(), 1);
    assert_eq!(b.cluster_list(Some("acc_2")).await.len(), 0);
    assert_eq!(b.list(None).len(), 0, "B's own calls are its own");
    let seen = b.cluster_get("cdr_1").await.unwrap();
    assert_eq!(seen, call("cdr_1", "acc_1"), "the same call, as A wrote it");
    entry.answered(1_796_327_063_000);
    eventually("B sees the call answered", || async {
        b.cluster_get("cdr_1")
            .await
            .is_some_and(|c| c.state == "answered" && c.answered_at == Some(1_796_327_063_000))
    })
    .await;
    // B asks A (over A's channel) to hang it up, once A listens.
    let channel = format!("{}node:a:hangup", keys.prefix);
    eventually("A subscribed", || async {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query(&mut keys.conn())
            .unwrap();
        n == 1
    })
    .await;
    assert!(b.cluster_hang_up("cdr_1").await);
    let asked = tokio::time::timeout(Duration::from_secs(5), hangups.recv()).await;
    assert_eq!(asked.unwrap(), Some(HangupCause::Api));
    assert!(!b.cluster_hang_up("cdr_none").await);
    // The call ends on A: gone for B too.
    drop(entry);
    eventually("the ended call leaves every list", || async {
        b.cluster_list(None).await.is_empty() && b.cluster_get("cdr_1").await.is_none()
    })
    .await;
    // A call of a node that no longer listens cannot be hung up (and expires with its TTL).
    let ghost = keys.node("ghost", 15);
    calls::put(&ghost, &[call("cdr_2", "acc_1")]).await.unwrap();
    assert!(b.cluster_get("cdr_2").await.is_some());
    assert!(!b.cluster_hang_up("cdr_2").await);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}call:cdr_2", keys.prefix))
        .query(&mut keys.conn())
        .unwrap();
    assert!((1..=15_000).contains(&ttl), "{ttl}");
    calls::remove(&ghost, "cdr_2", "acc_1").await.unwrap();
    assert!(b.cluster_list(None).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Two `parley serve` processes

const ADMIN_KEY: &str = "parley-test-operator-key-0123456789";

/// A call to `number` through `caller_to`, held until Parley hangs up, once `lister` lists
/// it answered: the caller and the call's id.
fn hold_call(caller_to: &Parley, lister: &Parley, number: &str) -> (Sipp, String) {
    let caller = Sipp::spawn("uac_parley_hangs_up", caller_to, &["-s", number]);
    let call = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, list) = lister.api("GET", "/v1/calls", ADMIN_KEY, &[], None);
        list["data"]
            .as_array()
            .and_then(|d| d.iter().find(|c| c["number"] == number).cloned())
            .filter(|c| c["state"] == "answered")
    })
    .unwrap_or_else(|| {
        panic!(
            "the call to {number} is listed answered\n{}\n{}",
            caller_to.logs(),
            lister.logs()
        )
    });
    (caller, call["id"].as_str().unwrap().to_string())
}

fn wait_no_calls(p: &Parley) {
    let empty = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, list) = p.api("GET", "/v1/calls", ADMIN_KEY, &[], None);
        (list["data"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
    assert!(empty.is_some(), "no call is listed:\n{}", p.logs());
}

#[test]
fn two_nodes_share_live_calls_and_an_accounts_limit() {
    let test = "two_nodes_share_live_calls_and_an_accounts_limit";
    if !require_sipp(test) {
        return;
    }
    let Some(url) = redis_url(test) else {
        return;
    };
    let db = std::env::var("PARLEY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if !require(
        test,
        "PARLEY_TEST_DATABASE_URL is not set: two processes need one PostgreSQL store",
        db.is_some(),
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let schema = Schema::new(&rt, db.unwrap());
    let db = schema.url.clone();
    let keys = Keys::new(&url);
    let env = |node: &'static str| {
        vec![
            ("PARLEY_DATABASE_URL", db.clone()),
            ("PARLEY_API_ADMIN_KEY", ADMIN_KEY.to_string()),
            ("PARLEY_REDIS_URL", url.clone()),
            ("PARLEY_REDIS_PREFIX", keys.prefix.clone()),
            ("PARLEY_REDIS_NODE_ID", node.to_string()),
        ]
    };
    let launch = |vars: &Vec<(&'static str, String)>| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Parley::start(&vars)
    };
    let (env_a, env_b) = (env("node-a"), env("node-b"));
    let a = launch(&env_a);
    let b = launch(&env_b);
    let number = "+15551230060";
    let (acc, _) = a.tenant(ADMIN_KEY, "A", Some(number), "write");
    let (status, account) = b.api(
        "PATCH",
        &format!("/v1/accounts/{acc}"),
        ADMIN_KEY,
        &[],
        Some(r#"{"max_concurrent_calls":1}"#),
    );
    assert_eq!(status, 200, "{account}");

    // A call held on A is listed by B.
    let (caller, id) = hold_call(&a, &b, number);
    let (status, call) = b.api("GET", &format!("/v1/calls/{id}"), ADMIN_KEY, &[], None);
    assert_eq!(
        (status, call["account_id"].as_str()),
        (200, Some(acc.as_str()))
    );
    // The account's one line is busy on B too.
    run_sipp("uac_expect_486", &b, &["-s", number]).assert_success();
    b.wait_for_metric(
        "parley_calls_rejected_limit_total",
        1.0,
        Duration::from_secs(5),
    );
    // Hung up through B, by A.
    let (status, body) = b.api(
        "POST",
        &format!("/v1/calls/{id}/hangup"),
        ADMIN_KEY,
        &[],
        None,
    );
    assert_eq!(status, 202, "{body}");
    caller.wait(Duration::from_secs(20)).assert_success();
    assert!(
        a.logs().contains("hang-up asked by another node"),
        "{}",
        a.logs()
    );
    wait_no_calls(&b);
    wait_no_calls(&a);

    // The slot is free again, for either node; now held on B, listed and hung up by A.
    let (caller, id) = hold_call(&b, &a, number);
    run_sipp("uac_expect_486", &a, &["-s", number]).assert_success();
    let (status, _) = a.api(
        "POST",
        &format!("/v1/calls/{id}/hangup"),
        ADMIN_KEY,
        &[],
        None,
    );
    assert_eq!(status, 202);
    caller.wait(Duration::from_secs(20)).assert_success();
    wait_no_calls(&a);

    // Both refusals have records on the account, in the shared store.
    let path = format!("/v1/cdrs?status=failed&account_id={acc}");
    let refused = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, cdrs) = a.api("GET", &path, ADMIN_KEY, &[], None);
        let data = cdrs["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 2).then_some(data)
    })
    .expect("two records of refused calls");
    for cdr in &refused {
        assert_eq!(
            (cdr["final_code"].as_i64(), cdr["hangup_cause"].as_str()),
            (Some(486), Some("call_limit")),
            "{cdr}"
        );
    }
    // Nothing is left counted or listed.
    rt.block_on(async {
        let probe = keys.node("probe", 15);
        assert_eq!(slots::count(&probe, &acc).await.unwrap(), 0);
        assert!(calls::list::<LiveCall>(&probe, None)
            .await
            .unwrap()
            .is_empty());
    });
    drop((a, b));
    schema.drop_in(&rt);
}

/// A PostgreSQL schema of the test's own; dropped at the end, or when the test fails.
struct Schema {
    base: String,
    name: String,
    url: String,
    dropped: bool,
}

impl Schema {
    fn new(rt: &tokio::runtime::Runtime, base: String) -> Schema {
        let (url, name) = rt.block_on(support::stores::pg_schema(&base));
        Schema {
            base,
            name,
            url,
            dropped: false,
        }
    }

    fn drop_in(mut self, rt: &tokio::runtime::Runtime) {
        rt.block_on(support::stores::drop_schema(&self.base, &self.name));
        self.dropped = true;
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if !self.dropped {
            let (base, name) = (self.base.clone(), self.name.clone());
            // Its own thread and runtime: the test's may be gone with the panic.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(support::stores::drop_schema(&base, &name));
            })
            .join();
        }
    }
}
