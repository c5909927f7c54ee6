//! The fleet kit of `deploy/`, run for real: Kamailio (Debian's `kamailio` 5.6, on
//! `deploy/kamailio/kamailio.cfg` as shipped, given only its addresses and a node list)
//! in front of two `parley serve` nodes on 127.0.0.1 that share the PostgreSQL store of
//! `PARLEY_TEST_DATABASE_URL` (a schema of the test's own) and the Redis of
//! `PARLEY_TEST_REDIS_URL` (a key prefix of its own). sipp calls Kamailio; RTP flows between
//! sipp and the node that answered.
//!
//! 1. 40 calls with speech are spread over both nodes, every one answered and recorded on
//!    the node its record names.
//! 2. `kill -9` of node A with calls up: Kamailio takes A out of its rotation, new calls all
//!    go to B and are answered, B's lease sweeper settles A's open leases, and `/v1/calls`
//!    on B lists B's live calls only.
//! 3. A starts again and rejoins the rotation; SIGTERM of B with calls up: B's new INVITEs
//!    get 503 and Kamailio retries them on A (no caller sees a failure), B leaves the
//!    rotation, its calls in progress finish, and B exits cleanly.
//!
//! Skipped (visibly) without sipp, Kamailio, the speech fixture or the two URLs; with CI set,
//! each of those is a failure.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const TEST: &str = "a_fleet_behind_kamailio_spreads_fails_over_and_drains";
const ADMIN_KEY: &str = "parley-test-operator-key-0123456789";
/// Where calls to no configured number go (`sip.catch_all` auto, no numbers).
const OPERATOR: &str = "acc_operator";
/// The nodes' `call.drain_s`: a draining node's calls in progress go on this long.
const DRAIN_S: u64 = 30;
/// How long the calls in progress at B's SIGTERM last once answered (the speech, then
/// silence). Longer than every check made while B drains (SIGTERM, the during-drain calls,
/// B leaving the rotation, the probe window: about 10 s, more on a loaded machine), so those
/// checks see a node that is still draining; shorter than `DRAIN_S`, so the calls end with
/// their callers' BYE, not the drain's.
const TALK: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Kamailio

fn shipped_config() -> PathBuf {
    repo_root().join("deploy/kamailio/kamailio.cfg")
}

/// A `#!define NAME value` default of the shipped configuration, as a number.
fn shipped_define(name: &str) -> u64 {
    let text = fs::read_to_string(shipped_config()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("#!define {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no numeric #!define {name} in the shipped kamailio.cfg"))
}

/// The longest a node that stopped answering 200 may stay in the rotation: the failed
/// probes in a row it takes, each up to a ping interval apart, the last one timing out.
fn out_of_rotation_bound() -> Duration {
    let interval = shipped_define("DS_PING_INTERVAL");
    let threshold = shipped_define("DS_PROBING_THRESHOLD");
    let timeout = Duration::from_millis(shipped_define("FR_TIMER_MS"));
    Duration::from_secs(threshold * interval) + timeout + Duration::from_secs(1)
}

/// Kamailio on the shipped configuration, in the foreground; stopped on drop.
struct Kamailio {
    child: Option<Child>,
    addr: SocketAddr,
    ctl: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Listens on a free loopback port (UDP and TCP) and dispatches to `nodes` (set 1).
    fn start(nodes: &[SocketAddr]) -> Kamailio {
        let dir = tempfile::Builder::new()
            .prefix("parley-fleet-kamailio-")
            .tempdir()
            .unwrap();
        let list = dir.path().join("dispatcher.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n} 0 0\n")).collect();
        fs::write(&list, lines).unwrap();
        let addr = SocketAddr::from((LOOPBACK, free_sip_port()));
        let ctl = format!("unix:{}", dir.path().join("ctl").display());
        let log = dir.path().join("kamailio.log");
        let kamailio = system_binary("kamailio").expect("kamailio");
        let mut cmd = Command::new(kamailio);
        cmd.arg("-f")
            .arg(shipped_config())
            .args(["-DD", "-E"])
            .arg("-w")
            .arg(dir.path())
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .args(["-A", &format!("LISTEN_UDP=udp:{addr}")])
            .args(["-A", &format!("LISTEN_TCP=tcp:{addr}")])
            .args(["-A", &format!("DS_LIST=\"{}\"", list.display())])
            .args(["-A", &format!("CTL_SOCKET=\"{ctl}\"")])
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("kamailio.stdout")).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        // Its own process group: the children go with it whatever happens.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn kamailio");
        let mut k = Kamailio {
            child: Some(child),
            addr,
            ctl,
            log,
            _dir: dir,
        };
        let up = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            if let Some(status) = k.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("kamailio exited with {status}\n{}", k.logs());
            }
            let nodes = k.nodes();
            (nodes.len() == 2).then_some(())
        });
        assert!(up.is_some(), "kamailio did not come up\n{}", k.logs());
        k
    }

    /// Each node's dispatcher flags (`AX` active, `IP` inactive and probing, …), by URI.
    fn nodes(&self) -> BTreeMap<String, String> {
        let kamcmd = system_binary("kamcmd").expect("kamcmd");
        let Ok(out) = Command::new(kamcmd)
            .args(["-s", &self.ctl, "dispatcher.list"])
            .stdin(Stdio::null())
            .output()
        else {
            return BTreeMap::new();
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut nodes = BTreeMap::new();
        let mut uri = None;
        for line in text.lines().map(str::trim) {
            if let Some(u) = line.strip_prefix("URI: ") {
                uri = Some(u.to_string());
            } else if let Some(flags) = line.strip_prefix("FLAGS: ") {
                if let Some(u) = uri.take() {
                    nodes.insert(u, flags.to_string());
                }
            }
        }
        nodes
    }

    fn flags(&self, node: &Parley) -> String {
        self.nodes()
            .get(&format!("sip:{}", node.sip_addr))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `node`'s flags satisfy `ok`; how long that took.
    fn wait_flags(&self, node: &Parley, what: &str, within: Duration, ok: fn(&str) -> bool) {
        let started = Instant::now();
        let seen = poll_until(within, Duration::from_millis(20), || {
            ok(&self.flags(node)).then_some(())
        });
        assert!(
            seen.is_some(),
            "{what}: not within {within:?} (flags {:?} after {:?})\n{}",
            self.nodes(),
            started.elapsed(),
            self.logs()
        );
    }

    fn logs(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .rev()
            .take(60)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "----- kamailio log (tail) -----\n{}\n-----",
            tail.join("\n")
        )
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = child.id() as libc::pid_t;
            // SAFETY: kill(2) on the process group of our own child.
            unsafe { libc::kill(-group, libc::SIGTERM) };
            let ended = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
                child.try_wait().ok().flatten()
            });
            if ended.is_none() {
                // SAFETY: as above.
                unsafe { libc::kill(-group, libc::SIGKILL) };
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------------------
// The shared stores

/// A PostgreSQL schema and a Redis key prefix of the test's own, both removed on drop.
struct Shared {
    pg_base: String,
    schema: String,
    db_url: String,
    redis_url: String,
    prefix: String,
    pool: sqlx::AnyPool,
    rt: tokio::runtime::Runtime,
}

impl Shared {
    fn new(pg_base: String, redis_url: String) -> Shared {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (db_url, schema) = rt.block_on(stores::pg_schema(&pg_base));
        let pool = rt.block_on(sqlx::AnyPool::connect(&db_url)).unwrap();
        let mut redis = redis_conn(&redis_url);
        let pong: String = redis::cmd("PING").query(&mut redis).unwrap();
        assert_eq!(pong, "PONG");
        Shared {
            pg_base,
            schema,
            db_url,
            redis_url,
            prefix: format!("parley-fleet-{}:", parley::store::random_id("", 10)),
            pool,
            rt,
        }
    }

    fn query<T>(&self, sql: &str, row: fn(&sqlx::any::AnyRow) -> T) -> Vec<T> {
        let rows = self
            .rt
            .block_on(sqlx::query(sql).fetch_all(&self.pool))
            .unwrap();
        rows.iter().map(row).collect()
    }

    /// Every call record on PostgreSQL.
    fn cdrs(&self) -> Vec<Record> {
        self.query(
            "SELECT call_id, node, final_code, hangup_cause, answered_at, recording FROM cdrs",
            |r| {
                use sqlx::Row;
                Record {
                    call_id: r.get("call_id"),
                    node: r.get("node"),
                    final_code: r.get("final_code"),
                    hangup_cause: r.get("hangup_cause"),
                    answered: r.get::<Option<i64>, _>("answered_at").is_some(),
                    recording: r.get("recording"),
                }
            },
        )
    }

    /// The billing leases of calls: (SIP Call-ID, state).
    fn leases(&self) -> Vec<(String, String)> {
        self.query(
            "SELECT call_id, state FROM leases WHERE call_id IS NOT NULL",
            |r| {
                use sqlx::Row;
                (r.get("call_id"), r.get("state"))
            },
        )
    }

    /// Which node holds the live call `id` (its `call:{id}` hash in Redis).
    fn holder(&self, id: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(format!("{}call:{id}", self.prefix))
            .arg("node")
            .query(&mut redis_conn(&self.redis_url))
            .unwrap()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut conn = redis_conn(&self.redis_url);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
        self.rt.block_on(async {
            self.pool.close().await;
            stores::drop_schema(&self.pg_base, &self.schema).await
        });
    }
}

fn redis_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("PARLEY_TEST_REDIS_URL={url} is set but unreachable: {e}"))
}

#[derive(Debug, Clone)]
struct Record {
    call_id: String,
    node: Option<String>,
    final_code: i64,
    hangup_cause: String,
    answered: bool,
    recording: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Nodes and calls

struct Node {
    name: &'static str,
    p: Parley,
}

impl Node {
    fn start(shared: &Shared, name: &'static str, sip: Option<SocketAddr>) -> Node {
        let drain_s = DRAIN_S.to_string();
        let env = [
            ("PARLEY_DATABASE_URL", shared.db_url.as_str()),
            ("PARLEY_API_ADMIN_KEY", ADMIN_KEY),
            ("PARLEY_REDIS_URL", shared.redis_url.as_str()),
            ("PARLEY_REDIS_PREFIX", shared.prefix.as_str()),
            ("PARLEY_REDIS_NODE_ID", name),
            // A dead node's live calls leave the lists after 3 s.
            ("PARLEY_REDIS_TTL_S", "3"),
            // Leases valid for 3 s: a dead node's are due for the sweeper soon.
            ("PARLEY_BILLING_HEARTBEAT_S", "1"),
            ("PARLEY_CALL_DRAIN_S", drain_s.as_str()),
            ("PARLEY_AGENT_MODE", "off"),
            ("PARLEY_MEDIA_VAD", "false"),
        ];
        let p = Parley::launch(Launch {
            env: &env,
            sip_listen: sip,
            ..Launch::default()
        });
        Node { name, p }
    }

    /// The calls `/v1/calls` on this node lists: SIP Call-ID → (id, state).
    fn live_calls(&self) -> BTreeMap<String, (String, String)> {
        let (status, list) = self.p.api("GET", "/v1/calls", ADMIN_KEY, &[], None);
        assert_eq!(status, 200, "{list}");
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (s("call_id"), (s("id"), s("state")))
            })
            .collect()
    }

    fn recording(&self, name: &str) -> PathBuf {
        self.p.data_dir.join("recordings").join(name)
    }
}

/// A sipp run against Kamailio: `calls` calls of `scenario`, Call-IDs `<tag>-<n>-<pid>`.
fn sipp(
    k: &Kamailio,
    scratch: &Path,
    tag: &str,
    scenario: &str,
    calls: u32,
    extra: &[&str],
) -> Sipp {
    let cid = format!("{tag}-%u-{}", std::process::id());
    let calls = calls.to_string();
    let mut args = vec!["-m", &calls, "-l", &calls, "-r", "20", "-cid_str", &cid];
    args.extend_from_slice(extra);
    Sipp::spawn_at(scenario, k.addr, scratch.join(tag), &args)
}

/// The Call-IDs a run of [`sipp`] made.
fn call_ids(tag: &str, calls: u32) -> BTreeSet<String> {
    (1..=calls)
        .map(|n| format!("{tag}-{n}-{}", std::process::id()))
        .collect()
}

fn assert_all_answered(out: &SippOutcome, calls: u64) {
    assert!(
        out.status.success() && out.successful == calls && out.failed == 0,
        "every one of {calls} calls must be answered and end well\n{}",
        out.report()
    );
}

/// Waits until each call of `ids` has the record of its answer; all their records (refusals
/// by a node before another answered, too).
fn records_of(shared: &Shared, ids: &BTreeSet<String>) -> Vec<Record> {
    let mut last = Vec::new();
    let all = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        last = shared
            .cdrs()
            .into_iter()
            .filter(|r| ids.contains(&r.call_id))
            .collect();
        let seen: BTreeSet<&String> = last
            .iter()
            .filter(|r| r.answered)
            .map(|r| &r.call_id)
            .collect();
        (seen.len() == ids.len()).then(|| last.clone())
    });
    all.unwrap_or_else(|| panic!("records of {} calls expected, got {last:#?}", ids.len()))
}

/// The held calls of `callers` once every one is listed answered: Call-ID → (id, node).
fn held_calls(
    shared: &Shared,
    lister: &Node,
    callers: &[Sipp],
) -> BTreeMap<String, (String, String)> {
    let wanted: BTreeSet<&String> = callers.iter().map(|s| &s.call_id).collect();
    let held = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        let live = lister.live_calls();
        let answered: BTreeMap<String, String> = live
            .into_iter()
            .filter(|(cid, (_, state))| wanted.contains(cid) && state == "answered")
            .map(|(cid, (id, _))| (cid, id))
            .collect();
        (answered.len() == wanted.len()).then_some(answered)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} held calls listed answered; /v1/calls: {:?}",
            wanted.len(),
            lister.live_calls()
        )
    });
    held.into_iter()
        .map(|(cid, id)| {
            let node = shared.holder(&id).expect("a live call's holder in Redis");
            (cid, (id, node))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_fleet_behind_kamailio_spreads_fails_over_and_drains() {
    if !require_sipp(TEST) {
        return;
    }
    let tools = system_binary("kamailio").is_some() && system_binary("kamcmd").is_some();
    if !require(
        TEST,
        "kamailio and kamcmd are not installed (Debian package kamailio; scripts/setup.sh installs it)",
        tools,
    ) {
        return;
    }
    if !require(
        TEST,
        "the speech fixture .cache/speech/speech_8k_pcmu.wav is missing (scripts/setup.sh makes it)",
        speech_pcmu_wav().exists(),
    ) {
        return;
    }
    let env = |name: &str| std::env::var(name).ok().filter(|u| !u.is_empty());
    let (pg, redis_url) = (
        env("PARLEY_TEST_DATABASE_URL"),
        env("PARLEY_TEST_REDIS_URL"),
    );
    if !require(
        TEST,
        "PARLEY_TEST_DATABASE_URL and PARLEY_TEST_REDIS_URL are not both set: the nodes share \
         one PostgreSQL store and one Redis",
        pg.is_some() && redis_url.is_some(),
    ) {
        return;
    }
    let shared = Shared::new(pg.unwrap(), redis_url.unwrap());
    let scratch = tempfile::Builder::new()
        .prefix("parley-fleet-")
        .tempdir()
        .unwrap();
    let scratch = scratch.path();
    let mut a = Node::start(&shared, "node-a", None);
    let b = Node::start(&shared, "node-b", None);
    let k = Kamailio::start(&[a.p.sip_addr, b.p.sip_addr]);
    let bound = out_of_rotation_bound();

    // 1. 40 calls with speech, spread over both nodes, each recorded where its record says.
    let speech_ms = fs::metadata(speech_pcmu_wav()).unwrap().len() / 8; // PCMU: 8 bytes/ms
    let pause = (speech_ms + 300).to_string();
    let out = sipp(&k, scratch, "spread", "uac_speech", 40, &["-d", &pause])
        .wait(Duration::from_secs(90));
    assert_all_answered(&out, 40);
    let records = records_of(&shared, &call_ids("spread", 40));
    let mut per_node = BTreeMap::<String, usize>::new();
    for r in &records {
        assert!(
            r.answered && r.final_code == 200 && r.hangup_cause == "remote_bye",
            "{r:?}"
        );
        let node = r.node.clone().unwrap_or_default();
        let (held_by, other) = match node.as_str() {
            "node-a" => (&a, &b),
            "node-b" => (&b, &a),
            _ => panic!("a record names no node of the fleet: {r:?}"),
        };
        // The caller's speech reached the node that answered (RTP does not pass Kamailio).
        let name = r.recording.clone().expect("recorded");
        let wav = wait_for_file(&held_by.recording(&name), Duration::from_secs(10), read_wav)
            .unwrap_or_else(|e| panic!("{r:?}: no recording on {}: {e}", held_by.name));
        assert!(
            wav.duration() >= Duration::from_millis(speech_ms / 2) && wav.rms() > 0.01,
            "{r:?}: the recording on {} lasts {:?}, RMS {:.4}",
            held_by.name,
            wav.duration(),
            wav.rms()
        );
        assert!(!other.recording(&name).exists(), "{r:?}");
        *per_node.entry(node).or_default() += 1;
    }
    assert!(
        per_node.values().all(|&n| n >= 10) && per_node.len() == 2,
        "calls spread round-robin over both nodes: {per_node:?}"
    );
    // The node's name reaches the API too.
    let (status, page) = a.p.api(
        "GET",
        &format!("/v1/cdrs?account_id={OPERATOR}&limit=1"),
        ADMIN_KEY,
        &[],
        None,
    );
    assert_eq!(status, 200, "{page}");
    let node = page["data"][0]["node"].as_str().unwrap_or_default();
    assert!(node == "node-a" || node == "node-b", "{page}");

    // 2. kill -9 of A with calls up on both nodes.
    let held: Vec<Sipp> = (0..4)
        .map(|i| {
            let dir = scratch.join(format!("held-{i}"));
            Sipp::spawn_at("uac_parley_hangs_up", k.addr, dir, &[])
        })
        .collect();
    let calls = held_calls(&shared, &b, &held);
    let on = |node: &str| -> BTreeMap<String, String> {
        calls
            .iter()
            .filter(|(_, (_, n))| n == node)
            .map(|(cid, (id, _))| (cid.clone(), id.clone()))
            .collect()
    };
    let (on_a, on_b) = (on("node-a"), on("node-b"));
    assert!(
        !on_a.is_empty() && !on_b.is_empty() && on_a.len() + on_b.len() == 4,
        "held calls on both nodes: {calls:?}"
    );
    let pid = a.p.pid().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        a.p.exit_status()
    })
    .expect("A is dead");
    // New calls at once: those sent to A before Kamailio notices time out there and go on
    // to B.
    let after = sipp(&k, scratch, "after-kill", "uac_speech", 10, &["-d", "1000"]);
    k.wait_flags(&a.p, "A out of the rotation after kill -9", bound, |f| {
        f.starts_with('I')
    });
    eprintln!(
        "fleet: A left the rotation {:?} after kill -9",
        killed.elapsed()
    );
    assert!(k.flags(&b.p).starts_with('A'), "{:?}", k.nodes());
    assert_all_answered(&after.wait(Duration::from_secs(60)), 10);
    for r in records_of(&shared, &call_ids("after-kill", 10)) {
        assert!(r.answered && r.node.as_deref() == Some("node-b"), "{r:?}");
    }
    // A's open leases are settled by B's sweeper; B's own stay open.
    let settled = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let leases: BTreeMap<String, String> = shared.leases().into_iter().collect();
        let expired = on_a
            .keys()
            .all(|cid| leases.get(cid).map(String::as_str) == Some("expired"));
        expired.then_some(leases)
    })
    .unwrap_or_else(|| panic!("A's leases settled: {:?}", shared.leases()));
    for cid in on_b.keys() {
        assert_eq!(settled.get(cid).map(String::as_str), Some("open"), "{cid}");
    }
    b.p.wait_for_metric(
        "parley_leases_expired_total",
        on_a.len() as f64,
        Duration::from_secs(5),
    );
    // B lists its own live calls only, once A's entries have expired.
    let live_only = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let listed: BTreeSet<String> = b.live_calls().into_keys().collect();
        (listed == on_b.keys().cloned().collect()).then_some(())
    });
    assert!(
        live_only.is_some(),
        "B lists {:?}; live are {:?}",
        b.live_calls(),
        on_b
    );
    // B's held calls end well (hung up from B's API); A's died with A.
    for id in on_b.values() {
        let (status, body) = b.p.api(
            "POST",
            &format!("/v1/calls/{id}/hangup"),
            ADMIN_KEY,
            &[],
            None,
        );
        assert_eq!(status, 202, "{body}");
    }
    for caller in held {
        if on_b.contains_key(&caller.call_id) {
            caller.wait(Duration::from_secs(20)).assert_success();
        } else {
            caller.kill();
        }
    }

    // 3. A again, on its address: back in the rotation once its probe sees 200.
    let a_sip = a.p.sip_addr;
    drop(a);
    let a = Node::start(&shared, "node-a", Some(a_sip));
    let rejoin = Duration::from_secs(shipped_define("DS_PING_INTERVAL")) + Duration::from_secs(2);
    k.wait_flags(&a.p, "A back in the rotation", rejoin, |f| {
        f.starts_with('A')
    });

    // SIGTERM of B with calls up on both nodes, each lasting TALK once answered: none can end
    // before `talk_from` + TALK.
    const { assert!(TALK.as_secs() + 5 <= DRAIN_S) };
    let talk_ms = TALK.as_millis().to_string();
    let talk_from = Instant::now();
    let talking: Vec<Sipp> = (0..4)
        .map(|i| {
            let dir = scratch.join(format!("talking-{i}"));
            Sipp::spawn_at("uac_speech", k.addr, dir, &["-d", &talk_ms])
        })
        .collect();
    let calls = held_calls(&shared, &a, &talking);
    let on_b: BTreeSet<String> = calls
        .iter()
        .filter(|(_, (_, n))| n == "node-b")
        .map(|(cid, _)| cid.clone())
        .collect();
    assert!(
        !on_b.is_empty() && on_b.len() < 4,
        "calls in progress on both nodes: {calls:?}"
    );
    let mut b = b;
    let pid = b.p.pid().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        let (status, body) = b.p.get("/readyz").ok()?;
        (status == 503 && body.contains("draining")).then_some(())
    })
    .expect("B drains");
    // New calls while B drains: round-robin offers B one of the first two before its probes
    // can fail twice; B's 503 sends it on to A.
    let during = sipp(
        &k,
        scratch,
        "during-drain",
        "uac_speech",
        10,
        &["-d", "1000"],
    );
    k.wait_flags(&b.p, "B out of the rotation while it drains", bound, |f| {
        f.starts_with('I')
    });
    assert_all_answered(&during.wait(Duration::from_secs(60)), 10);
    // B stays out while it drains: its probes get 503, where a 200 would bring it back.
    let probes = Duration::from_secs(shipped_define("DS_PING_INTERVAL"))
        + Duration::from_millis(shipped_define("FR_TIMER_MS"));
    let back = poll_until(probes, Duration::from_millis(20), || {
        let flags = k.flags(&b.p);
        (!flags.starts_with('I')).then_some(flags)
    });
    assert_eq!(back, None, "B rejoined while draining\n{}", k.logs());
    // The window above saw a draining node if B is still up now: it holds its calls (none
    // can end before TALK, longer than the checks take).
    eprintln!(
        "fleet: B stayed out while draining; the checks ended {:?} after its calls started",
        talk_from.elapsed()
    );
    let exited = b.p.exit_status();
    assert!(
        exited.is_none(),
        "B still holds its calls, so the probes above reached a draining node; it exited \
         ({exited:?}) {:?} after the calls started, which last {TALK:?} once answered",
        talk_from.elapsed()
    );
    let records = records_of(&shared, &call_ids("during-drain", 10));
    let answered: BTreeSet<&String> = records
        .iter()
        .filter(|r| r.answered)
        .map(|r| {
            assert_eq!(r.node.as_deref(), Some("node-a"), "{r:?}");
            &r.call_id
        })
        .collect();
    assert_eq!(answered.len(), 10, "{records:#?}");
    let refused: Vec<&Record> = records.iter().filter(|r| !r.answered).collect();
    assert!(
        !refused.is_empty(),
        "B refused a new call while draining (then answered by A): {records:#?}"
    );
    for r in refused {
        assert_eq!(
            (r.node.as_deref(), r.final_code, r.hangup_cause.as_str()),
            (Some("node-b"), 503, "draining"),
            "{r:?}"
        );
    }
    // The calls in progress finish (their callers hang up), on both nodes; then B exits.
    for caller in talking {
        caller.wait(TALK + Duration::from_secs(15)).assert_success();
    }
    for r in records_of(&shared, &on_b) {
        assert_eq!(
            (r.node.as_deref(), r.hangup_cause.as_str()),
            (Some("node-b"), "remote_bye"),
            "{r:?}"
        );
    }
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        b.p.exit_status()
    })
    .expect("B exited after its calls");
    assert!(status.success(), "{status}\n{}", b.p.logs());
    assert!(k.flags(&b.p).starts_with('I'), "{:?}", k.nodes());
    assert!(k.flags(&a.p).starts_with('A'), "{:?}", k.nodes());
    drop((k, a, b));
}

/// The systemd unit gives the node the VAD files that `scripts/fetch_models.sh --runtime`
/// writes with `PARLEY_CACHE_DIR=/opt/parley` (deploy/README.md's install steps), at the ONNX
/// Runtime version the script pins: the defaults are relative to the source tree, so without
/// these a node run from /var/lib/parley has no VAD.
#[test]
fn the_systemd_unit_points_at_the_fetched_vad() {
    let root = repo_root();
    let unit = fs::read_to_string(root.join("deploy/systemd/parley.service")).unwrap();
    let fetch = fs::read_to_string(root.join("scripts/fetch_models.sh")).unwrap();
    let readme = fs::read_to_string(root.join("deploy/README.md")).unwrap();
    let version = fetch
        .lines()
        .find_map(|l| l.strip_prefix("ORT_VERSION=\""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("ORT_VERSION in fetch_models.sh");
    let lib = format!("PARLEY_MEDIA_ONNXRUNTIME=/opt/parley/models/libonnxruntime.so.{version}");
    let model = "PARLEY_MEDIA_VAD_MODEL=/opt/parley/models/silero_vad.onnx";
    for wanted in [&lib, model] {
        assert!(
            unit.lines().any(|l| l == format!("Environment={wanted}")),
            "parley.service lacks Environment={wanted}"
        );
        assert!(readme.contains(wanted), "deploy/README.md lacks {wanted}");
    }
    assert!(
        readme.contains("PARLEY_CACHE_DIR=/opt/parley scripts/fetch_models.sh --runtime"),
        "deploy/README.md's install steps fetch the VAD into /opt/parley"
    );
}
