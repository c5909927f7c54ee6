//! The 49 RFC 4475 torture messages, sent over UDP to a running Parley.
//!
//! For each message of `fixtures/rfc4475/` (expectations in `expected.tsv`):
//! - an invalid request gets 400 (or the code its reason column names, e.g. 505), and every
//!   400 carries a Warning header saying what is wrong;
//! - a valid request gets a final response that is not 400 (or one of the codes named by
//!   `expect ...` in its reason column);
//! - a response (Parley has no client transaction for it) gets nothing at all;
//! - the trailing message of `dblreq` (a second request in the same datagram) is ignored;
//! - after every message Parley still answers an OPTIONS probe and `GET /healthz`, and every
//!   wait has a deadline, so a hang is a failure, not a stuck test.
//!
//! The messages name foreign hosts (192.0.2.x, example.com) that Parley would answer or
//! send media to. So Parley runs inside a fresh network namespace that has nothing but
//! loopback (`ip netns add`), and this test's own sockets are created on a thread that has
//! joined that namespace (`setns`). Parley listens on 127.0.0.1:5080 there; the test sends
//! from 127.0.0.1:5060, where RFC 3261 §18.2.2 sends responses for a Via without rport
//! (received=127.0.0.1, sent-by port or 5060), and also listens on the other sent-by ports
//! the messages name (5050, 5070) and on TCP, in case Parley answers a TCP/TLS/SCTP Via over
//! a connection of its own.
//!
//! Needs root for `ip netns`; without it the test is skipped (outside CI) or fails (CI).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Launch, Parley};

const PARLEY_SIP: &str = "127.0.0.1:5080";
const PARLEY_HTTP: &str = "127.0.0.1:8080";
/// Ports the torture messages' Via sent-by values (or RFC 3261 defaults) point responses to.
const PEER_PORTS: [u16; 3] = [5060, 5050, 5070];
/// How long to wait for Parley's answer to one message.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Fixtures and expectations

#[derive(Debug)]
struct Fixture {
    name: String,
    bytes: Vec<u8>,
    valid: bool,
    section: String,
    reason: String,
    /// Final response codes allowed by the reason column ("expect 405 or 501"); empty: the
    /// default for the class (valid: anything but 400; invalid: 400).
    expect: Vec<u16>,
    is_response: bool,
    /// Call-IDs of the message (several for multi01).
    call_ids: Vec<String>,
    /// Call-IDs of trailing bytes after the message's body (dblreq's second request).
    trailing_call_ids: Vec<String>,
}

fn fixtures_dir() -> PathBuf {
    support::repo_root().join("fixtures/rfc4475")
}

fn load_fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("read expected.tsv");
    let mut fixtures = Vec::new();
    for (n, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            cols.len(),
            4,
            "expected.tsv line {}: want 4 tab-separated columns",
            n + 1
        );
        let (name, class, section, reason) = (cols[0], cols[1], cols[2], cols[3]);
        assert!(
            class == "valid" || class == "invalid",
            "expected.tsv line {}: class must be valid or invalid, not {class:?}",
            n + 1
        );
        let bytes = std::fs::read(dir.join(format!("{name}.dat")))
            .unwrap_or_else(|e| panic!("fixture {name}.dat: {e}"));
        let (head_end, body_len) = message_extent(&bytes);
        let head = &bytes[..head_end];
        let trailing = head_end
            .checked_add(body_len)
            .and_then(|end| bytes.get(end..))
            .unwrap_or_default();
        fixtures.push(Fixture {
            name: name.to_string(),
            is_response: bytes.starts_with(b"SIP/"),
            call_ids: header_values(head, &["call-id", "i"]),
            trailing_call_ids: header_values(trailing, &["call-id", "i"]),
            bytes,
            valid: class == "valid",
            section: section.to_string(),
            reason: reason.to_string(),
            expect: expected_codes(reason),
        });
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = fixtures.iter().map(|f| f.name.clone()).collect();
    listed.sort();
    assert_eq!(
        listed, on_disk,
        "expected.tsv must list every .dat fixture exactly once"
    );
    assert_eq!(fixtures.len(), 49, "RFC 4475 has 49 torture messages");
    fixtures
}

/// Codes named after "expect" in a reason ("expect 405 or 501" -> [405, 501]).
fn expected_codes(reason: &str) -> Vec<u16> {
    let Some(pos) = reason.find("expect ") else {
        return Vec::new();
    };
    reason[pos + 7..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3)
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// (end of the header block including CRLFCRLF, declared body length) of the first message
/// in `bytes`; the body length is 0 when missing or unparseable.
fn message_extent(bytes: &[u8]) -> (usize, usize) {
    let Some(end) = support::find(bytes, b"\r\n\r\n") else {
        return (bytes.len(), 0);
    };
    let head = &bytes[..end + 4];
    let len = header_values(head, &["content-length", "l"])
        .first()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (end + 4, len)
}

/// Values of the headers named `names` (case-insensitive, compact forms allowed) in a SIP
/// header block; folded lines are joined.
fn header_values(head: &[u8], names: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    let mut unfolded: Vec<String> = Vec::new();
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = unfolded.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            unfolded.push(line.to_string());
        }
    }
    unfolded
        .iter()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| names.iter().any(|n| name.trim().eq_ignore_ascii_case(n)))
        .map(|(_, value)| value.trim().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What comes back

#[derive(Debug, Clone)]
struct Received {
    /// Index of the fixture being processed when it arrived.
    window: usize,
    transport: String,
    raw: Vec<u8>,
    code: Option<u16>,
    call_id: Option<String>,
    warning: Option<String>,
}

impl Received {
    fn parse(raw: Vec<u8>, transport: String, window: usize) -> Received {
        let (head_end, _) = message_extent(&raw);
        let head = &raw[..head_end.min(raw.len())];
        let code = raw
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok());
        Received {
            window,
            transport,
            code,
            call_id: header_values(head, &["call-id", "i"]).into_iter().next(),
            warning: header_values(head, &["warning"]).into_iter().next(),
            raw,
        }
    }

    fn first_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        text.lines().next().unwrap_or_default().to_string()
    }

    /// First line, Warning (if any) and transport, for failure messages.
    fn summary(&self) -> String {
        match &self.warning {
            Some(w) => format!(
                "{} [Warning: {w}] via {}",
                self.first_line(),
                self.transport
            ),
            None => format!("{} via {}", self.first_line(), self.transport),
        }
    }
}

/// The test's side: UDP sockets and TCP listeners on the peer ports, inside the namespace.
struct Peer {
    udp: Vec<(u16, UdpSocket)>,
    listeners: Vec<(u16, TcpListener)>,
    streams: Vec<(u16, TcpStream, Vec<u8>)>,
    received: Vec<Received>,
    window: usize,
}

impl Peer {
    fn bind() -> Peer {
        let mut udp = Vec::new();
        let mut listeners = Vec::new();
        for port in PEER_PORTS {
            let s = UdpSocket::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("bind UDP 127.0.0.1:{port} in the namespace: {e}"));
            s.set_nonblocking(true).unwrap();
            udp.push((port, s));
            let l = TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("bind TCP 127.0.0.1:{port} in the namespace: {e}"));
            l.set_nonblocking(true).unwrap();
            listeners.push((port, l));
        }
        Peer {
            udp,
            listeners,
            streams: Vec::new(),
            received: Vec::new(),
            window: 0,
        }
    }

    /// Sends one datagram from 127.0.0.1:5060 to Parley.
    fn send(&self, bytes: &[u8]) {
        let to: SocketAddr = PARLEY_SIP.parse().unwrap();
        self.udp[0].1.send_to(bytes, to).expect("send to Parley");
    }

    /// Reads whatever has arrived; true if anything did.
    fn drain(&mut self) -> bool {
        let mut got = false;
        let mut buf = vec![0u8; 65536];
        for (port, s) in &self.udp {
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        self.received.push(Received::parse(
                            buf[..n].to_vec(),
                            format!("udp:{port}"),
                            self.window,
                        ));
                        got = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                    Err(e) => panic!("recv on udp:{port}: {e}"),
                }
            }
        }
        for (port, l) in &self.listeners {
            while let Ok((stream, _)) = l.accept() {
                stream.set_nonblocking(true).unwrap();
                self.streams.push((*port, stream, Vec::new()));
            }
        }
        for (port, stream, pending) in &mut self.streams {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            // Split complete messages off the stream (framed by Content-Length).
            loop {
                let (head_end, body_len) = message_extent(pending);
                if support::find(pending, b"\r\n\r\n").is_none()
                    || pending.len() < head_end + body_len
                {
                    break;
                }
                let msg: Vec<u8> = pending.drain(..head_end + body_len).collect();
                self.received
                    .push(Received::parse(msg, format!("tcp:{port}"), self.window));
                got = true;
            }
        }
        got
    }

    /// Collects messages until `done` holds or `timeout` passes; returns whether it held.
    fn collect_until(&mut self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.drain();
            if done(&self.received) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if !got {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// An OPTIONS from the test that Parley must answer with 200: proves it is alive and, as
/// it is handled after the message before it, orders the answers.
fn probe(n: usize, call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:parley@{PARLEY_SIP} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-probe-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1:5060>;tag=probe{n}\r\n\
         To: <sip:parley@{PARLEY_SIP}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        n = n + 1
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The network namespace

/// A loopback-only network namespace, deleted on drop (also when the test panics).
struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create(name: &str) -> Result<Netns, String> {
        // A namespace left over by a killed earlier run with the same pid would be in the way.
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Moves the calling thread (only it) into the namespace: sockets it creates afterwards
    /// live there, and so do processes it spawns.
    fn enter_current_thread(&self) -> std::io::Result<()> {
        let path = ["/run/netns", "/var/run/netns"]
            .iter()
            .map(|d| PathBuf::from(d).join(&self.name))
            .find(|p| p.exists())
            .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "netns file not found"))?;
        let f = std::fs::File::open(path)?;
        // SAFETY: setns(2) on a valid namespace fd, affecting only the calling thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete network namespace {}: {e}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
fn rfc4475_torture_messages_over_udp() {
    const TEST: &str = "rfc4475_torture_messages_over_udp";
    let fixtures = load_fixtures();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !support::require(TEST, "needs root for `ip netns`", root) {
        return;
    }
    let name = format!("parley-4475-{}", std::process::id());
    let ns = match Netns::create(&name) {
        Ok(ns) => ns,
        Err(e) => {
            support::require(TEST, &format!("`ip netns` is unavailable: {e}"), false);
            return;
        }
    };
    let ns_name = ns.name.clone();
    let worker = std::thread::Builder::new()
        .name("in-netns".into())
        .spawn(move || {
            let ns = Netns { name: ns_name };
            let entered = ns.enter_current_thread();
            let name = std::mem::take(&mut std::mem::ManuallyDrop::new(ns).name);
            entered.expect("join the network namespace");
            run_in_namespace(&name, &fixtures)
        })
        .unwrap();
    let result = worker.join();
    drop(ns);
    match result {
        Ok(failures) if failures.is_empty() => {}
        Ok(failures) => panic!(
            "{} RFC 4475 expectation(s) not met:\n{}",
            failures.len(),
            failures.join("\n")
        ),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Starts Parley inside the namespace on the fixed addresses.
fn launch_parley(ns_name: &str) -> Parley {
    // The thread is already in the namespace, so spawning Parley directly would put it there
    // too; `ip netns exec` makes that explicit and gives it the namespace's /etc/netns view.
    let prefix = ["ip", "netns", "exec", ns_name];
    Parley::launch(Launch {
        prefix: &prefix,
        sip_listen: Some(PARLEY_SIP.parse().unwrap()),
        http_listen: Some(PARLEY_HTTP.parse().unwrap()),
        rtp_ports: Some((20000, 20999)),
        // Short timers: unacknowledged final responses stop (Timer H = 3.2 s) while we run.
        env: &[("PARLEY_SIP_T1_MS", "50")],
        ..Launch::default()
    })
}

/// The RFC 3261 §17.2.3 server transaction a request would match: method, top Via sent-by
/// and branch (RFC 3261-style branches only; older requests are matched with their Call-ID,
/// which differs between fixtures).
fn transaction_key(fx: &Fixture) -> Option<String> {
    if fx.is_response {
        return None;
    }
    let (head_end, _) = message_extent(&fx.bytes);
    let head = &fx.bytes[..head_end];
    let method = String::from_utf8_lossy(head.split(|&b| b == b' ').next()?).into_owned();
    let via = header_values(head, &["via", "v"]).into_iter().next()?;
    let top = via.split(',').next()?.to_string();
    let mut params = top.split(';');
    let sent_by: String = params
        .next()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .rsplit('/')
        .next()?
        .to_string();
    let branch = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
        .map(|(_, v)| v.trim().to_string())?;
    (branch.starts_with("z9hG4bK") && branch.len() > 7)
        .then(|| format!("{method} {sent_by} {branch}"))
}

/// Runs on a thread inside the namespace; returns the list of unmet expectations.
fn run_in_namespace(ns_name: &str, fixtures: &[Fixture]) -> Vec<String> {
    let mut peer = Peer::bind();
    let mut failures = Vec::new();
    let mut probe_ids = HashSet::new();
    let mut parley: Option<Parley> = None;
    // Some fixtures share branch, sent-by and method (cparam01/cparam02, escnull/regescrt,
    // unkscm/novelsc): to a single Parley the second is a retransmission of the first. Such
    // a message goes to a fresh Parley instead.
    let mut keys_seen = HashSet::new();

    for (i, fx) in fixtures.iter().enumerate() {
        let key = transaction_key(fx);
        let collides = key.as_ref().is_some_and(|k| keys_seen.contains(k));
        if collides {
            drop(parley.take());
        }
        let p = parley.get_or_insert_with(|| {
            keys_seen.clear();
            launch_parley(ns_name)
        });
        keys_seen.extend(key);

        peer.window = i;
        peer.send(&fx.bytes);
        let probe_id = format!("probe-{i}-{}@parley-tests", std::process::id());
        probe_ids.insert(probe_id.clone());
        peer.send(&probe(i, &probe_id));
        let alive = peer.collect_until(ANSWER_DEADLINE, |r| {
            r.iter()
                .any(|m| m.call_id.as_deref() == Some(probe_id.as_str()) && m.code == Some(200))
        });
        if !alive {
            failures.push(format!(
                "{} ({}): Parley did not answer the OPTIONS probe sent after it within \
                 {ANSWER_DEADLINE:?}",
                fx.name, fx.section
            ));
        }
        if !fx.is_response {
            // Requests get a final response; it may come after the probe's (e.g. an INVITE).
            let ids: Vec<&str> = fx.call_ids.iter().map(String::as_str).collect();
            peer.collect_until(ANSWER_DEADLINE, |r| {
                r.iter().any(|m| {
                    m.code.is_some_and(|c| c >= 200)
                        && match m.call_id.as_deref() {
                            Some(id) => ids.contains(&id),
                            None => m.window == i,
                        }
                })
            });
        }
        if !p.is_running() {
            failures.push(format!(
                "{} ({}): Parley exited: {:?} (a fresh one takes the next message)",
                fx.name,
                fx.section,
                p.exit_status()
            ));
            eprintln!("{}", p.logs());
            parley = None;
            continue;
        }
        if !p.healthy() {
            failures.push(format!(
                "{} ({}): GET /healthz failed after it",
                fx.name, fx.section
            ));
        }
    }

    let mut p = parley.unwrap_or_else(|| launch_parley(ns_name));
    // A last probe flushes answers still in flight for the last messages.
    let last = format!("probe-final-{}@parley-tests", std::process::id());
    probe_ids.insert(last.clone());
    peer.window = fixtures.len();
    peer.send(&probe(fixtures.len(), &last));
    if !peer.collect_until(ANSWER_DEADLINE, |r| {
        r.iter()
            .any(|m| m.call_id.as_deref() == Some(last.as_str()) && m.code == Some(200))
    }) {
        failures.push("Parley did not answer the final OPTIONS probe".into());
    }
    failures.extend(evaluate(fixtures, &peer.received, &probe_ids));
    if !p.is_running() || !p.healthy() {
        failures.push("Parley is not healthy at the end of the run".into());
    }
    if !failures.is_empty() {
        eprintln!("{}", p.logs());
    }
    failures
}

/// Attributes every received message to a fixture and checks the expectations.
fn evaluate(
    fixtures: &[Fixture],
    received: &[Received],
    probe_ids: &HashSet<String>,
) -> Vec<String> {
    let mut by_fixture: BTreeMap<usize, Vec<&Received>> = BTreeMap::new();
    let mut failures = Vec::new();
    for m in received {
        let id = m.call_id.as_deref();
        if id.is_some_and(|id| probe_ids.contains(id)) {
            continue;
        }
        if let Some(k) = fixtures
            .iter()
            .position(|f| id.is_some_and(|id| f.trailing_call_ids.iter().any(|t| t == id)))
        {
            failures.push(format!(
                "{} ({}): Parley answered the trailing message in the datagram, which must \
                 be discarded: {} via {}",
                fixtures[k].name,
                fixtures[k].section,
                m.first_line(),
                m.transport
            ));
            continue;
        }
        let owner = fixtures
            .iter()
            .position(|f| id.is_some_and(|id| f.call_ids.iter().any(|c| c == id)))
            .unwrap_or(m.window);
        by_fixture.entry(owner).or_default().push(m);
    }

    for (i, fx) in fixtures.iter().enumerate() {
        let got = by_fixture.get(&i).cloned().unwrap_or_default();
        let seen: Vec<String> = got.iter().map(|m| m.summary()).collect();
        // One line per fixture on stderr (shown with --nocapture or when the test fails).
        eprintln!(
            "{:<11} {:<8} {:<8} -> {}",
            fx.name,
            fx.section,
            if fx.valid { "valid" } else { "invalid" },
            if seen.is_empty() {
                "(nothing)".to_string()
            } else {
                seen.join(" | ")
            }
        );
        let label = format!(
            "{} ({}, {}: {})",
            fx.name,
            fx.section,
            if fx.valid { "valid" } else { "invalid" },
            fx.reason
        );
        if fx.is_response {
            if !got.is_empty() {
                failures.push(format!(
                    "{label}: a response matching no transaction must be discarded, but \
                     Parley sent {seen:?}"
                ));
            }
            continue;
        }
        for m in &got {
            if m.code == Some(400) && m.warning.is_none() {
                failures.push(format!(
                    "{label}: 400 without a Warning header saying what is wrong: {}",
                    String::from_utf8_lossy(&m.raw)
                ));
            }
        }
        let finals: Vec<u16> = got
            .iter()
            .filter_map(|m| m.code)
            .filter(|&c| c >= 200)
            .collect();
        if finals.is_empty() {
            failures.push(format!(
                "{label}: no final response within {ANSWER_DEADLINE:?} (got {seen:?})"
            ));
            continue;
        }
        let allowed: Vec<u16> = if !fx.expect.is_empty() {
            fx.expect.clone()
        } else if fx.valid {
            Vec::new() // anything but 400
        } else {
            vec![400]
        };
        let ok = if allowed.is_empty() {
            !finals.contains(&400)
        } else {
            finals.iter().all(|c| allowed.contains(c))
        };
        if !ok {
            let want = if allowed.is_empty() {
                "a final response other than 400".to_string()
            } else {
                format!("final response {allowed:?}")
            };
            failures.push(format!("{label}: want {want}, got {seen:?}"));
        }
    }
    failures
}
