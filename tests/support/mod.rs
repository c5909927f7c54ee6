//! Harness for integration tests that drive the real `parley` binary.
//!
//! - [`Parley`] starts `parley serve` on free loopback ports with its own data directory,
//!   waits for `GET /healthz`, and kills it on drop (printing its log when the test failed).
//! - [`Sipp`] runs a scenario from `sip-configs/sipp/` against it and reads sipp's own
//!   statistics and per-message counts.
//! - Small helpers: raw HTTP GET, polling with a deadline, a minimal WAV reader.
//!
//! Everything talks to 127.0.0.1 only. Nothing sleeps to "let things settle": every wait
//! polls a condition until a deadline.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod fakes;
pub mod sms;
pub mod stores;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How long `parley serve` may take to answer `/healthz` after it is spawned.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Path of the freshly built binary under test.
pub fn parley_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_parley"))
}

/// The repository root (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when running under CI (the `CI` environment variable is set and not empty/"false").
/// There, missing tools are failures instead of reasons to skip.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI"), Ok(v) if !v.is_empty() && v != "0" && v != "false")
}

/// Skips (returns false, after saying why on stderr) when a prerequisite is missing outside
/// CI; panics under CI.
pub fn require(test: &str, what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("{test}: {what} (CI is set, so this is a failure, not a skip)");
    }
    // Straight to the process's stderr: libtest captures eprintln! of passing tests, and a
    // skip must stay visible.
    let line = format!("SKIPPED {test}: {what} (with CI set, this is a failure)\n");
    let _ = io::stderr().write_all(line.as_bytes());
    false
}

// ---------------------------------------------------------------------------------------------
// Polling with a deadline

/// Polls `f` every `interval` until it returns `Some`, or gives up at `timeout` and returns
/// `None`.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Waits until `path` exists and `ready` accepts its content (e.g. a WAV whose header says it
/// is complete). Returns the last error on timeout.
pub fn wait_for_file<T>(
    path: &Path,
    timeout: Duration,
    mut ready: impl FnMut(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let mut last = format!("{} does not exist", path.display());
    poll_until(timeout, Duration::from_millis(50), || {
        if !path.exists() {
            return None;
        }
        match ready(path) {
            Ok(v) => Some(v),
            Err(e) => {
                last = e;
                None
            }
        }
    })
    .ok_or_else(|| format!("after {timeout:?}: {last}"))
}

// ---------------------------------------------------------------------------------------------
// Free ports

/// A free TCP port on 127.0.0.1 that is also free for UDP (Parley's SIP listens on both).
pub fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((LOOPBACK, 0)).expect("bind UDP 127.0.0.1:0");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    let l = TcpListener::bind((LOOPBACK, 0)).expect("bind TCP 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind((LOOPBACK, 0)).expect("bind UDP 127.0.0.1:0");
    s.local_addr().unwrap().port()
}

/// An even UDP port `p` with `p..p+count` all free on 127.0.0.1 (sipp's media port, which
/// also binds p+2 for video echo).
pub fn free_udp_block(count: u16) -> u16 {
    for _ in 0..200 {
        let base = free_udp_port() & !1;
        if base < 1024 || base.checked_add(count).is_none() {
            continue;
        }
        let held: Vec<_> = (base..base + count)
            .map_while(|p| UdpSocket::bind((LOOPBACK, p)).ok())
            .collect();
        if held.len() == count as usize {
            return base;
        }
    }
    panic!("no block of {count} free UDP ports on 127.0.0.1");
}

static RTP_BLOCKS: AtomicU32 = AtomicU32::new(0);

/// A range of RTP ports for one Parley, disjoint from the ranges of the other Parleys of
/// this process (an atomic counter picks the block) and, very likely, of other test
/// processes (the pid picks the stripe). It lies below the kernel's ephemeral range
/// (32768+), where ports picked by binding port 0 come from, and each block is checked free.
pub fn rtp_port_range() -> (u16, u16) {
    const BASE: u32 = 20000;
    const BLOCK: u32 = 64; // 32 RTP/RTCP pairs
    const BLOCKS: u32 = (32000 - BASE) / BLOCK; // 187 blocks
    let stripe = (std::process::id() % 16) * (BLOCKS / 16);
    for _ in 0..BLOCKS {
        let n = RTP_BLOCKS.fetch_add(1, Ordering::Relaxed);
        let lo = BASE + ((stripe + n) % BLOCKS) * BLOCK;
        let hi = lo + BLOCK - 1;
        let free = (lo..=hi)
            .step_by(2)
            .all(|p| UdpSocket::bind((LOOPBACK, p as u16)).is_ok());
        if free {
            return (lo as u16, hi as u16);
        }
    }
    panic!("no free block of RTP ports in 20000-31999");
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1

/// `GET path` on `addr` over a fresh connection. Returns (status, body). Handles
/// Content-Length, chunked and read-to-close bodies.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: parley-tests\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

/// `method path` on `addr` with a bearer key (when given) and a JSON body (when given).
/// Returns (status, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    json: Option<&str>,
) -> io::Result<(u16, String)> {
    http_request_with(addr, method, path, key, &[], json)
}

/// [`http_request`] with extra headers.
pub fn http_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    json: Option<&str>,
) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: parley-tests\r\nConnection: close\r\n"
    );
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

/// An open `GET /v1/events` stream.
pub struct SseListener(TcpStream, String);

impl SseListener {
    pub fn open(p: &Parley, key: &str) -> SseListener {
        let mut s = TcpStream::connect(p.http_addr).unwrap();
        write!(
            s,
            "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        SseListener(s, String::new())
    }

    /// Reads until `text` has arrived or `within` has passed; everything read so far.
    pub fn until(&mut self, text: &str, within: Duration) -> &str {
        let end = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !self.1.contains(text) && Instant::now() < end {
            if let Ok(n) = self.0.read(&mut buf) {
                self.1.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        &self.1
    }
}

fn parse_http_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(&format!("bad HTTP status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let mut body = raw[head_end + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = find(rest, b"\r\n") {
            let size_txt = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap().trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    } else if let Some(n) = length {
        body.truncate(n);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of an unlabelled (or labelled: labels are ignored, values summed) Prometheus
/// metric in `/metrics` text.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = if let Some(labels) = rest.strip_prefix('{') {
            match labels.split_once('}') {
                Some((_, after)) => after,
                None => continue,
            }
        } else if rest.starts_with([' ', '\t']) {
            rest
        } else {
            continue; // a longer metric name that merely starts with `name`
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The binary under test

/// How to launch `parley serve`. [`Parley::start`] covers the common case.
#[derive(Default)]
pub struct Launch<'a> {
    /// Command prefix, e.g. `["ip", "netns", "exec", "ns1"]`; the binary path follows it.
    pub prefix: &'a [&'a str],
    /// Arguments after `serve`, e.g. `["--config", "/path/parley.toml"]`.
    pub args: &'a [&'a str],
    /// What starts the server instead of `parley serve` (e.g. a checkout's `scripts/run.sh`,
    /// which ends in it); `args` follow it.
    pub command: Option<&'a [&'a str]>,
    /// Extra environment (applied last, so it can override the listen variables).
    pub env: &'a [(&'a str, &'a str)],
    /// SIP listen address; `None` picks a free loopback port.
    pub sip_listen: Option<SocketAddr>,
    /// HTTP listen address; `None` picks a free loopback port.
    pub http_listen: Option<SocketAddr>,
    /// RTP port range; `None` picks a free block with [`rtp_port_range`].
    pub rtp_ports: Option<(u16, u16)>,
}

/// A running `parley serve`, killed on drop.
pub struct Parley {
    child: Option<Child>,
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub rtp_ports: (u16, u16),
    pub data_dir: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// Removed on drop, unless `PARLEY_TEST_KEEP` is set (then its path is printed).
    tmp: Option<tempfile::TempDir>,
    pub tmp_path: PathBuf,
}

impl Parley {
    /// Starts `parley serve` on free loopback ports with a fresh data directory and
    /// `extra_env`, and waits until `/healthz` answers 200.
    pub fn start(extra_env: &[(&str, &str)]) -> Parley {
        Parley::launch(Launch {
            env: extra_env,
            ..Launch::default()
        })
    }

    pub fn launch(opts: Launch<'_>) -> Parley {
        // A port the harness picked may be taken (another test's outgoing connection got it
        // as its ephemeral port) between the pick and Parley's bind: pick again.
        let picked = opts.sip_listen.is_none() && opts.http_listen.is_none();
        for _ in 0..3 {
            match Parley::try_launch(&opts) {
                Ok(parley) => return parley,
                Err(mut failed) if picked && failed.logs().contains("Address already in use") => {
                    failed.child = None;
                }
                Err(mut failed) => panic!(
                    "parley exited during startup with {:?}\n{}",
                    failed.exit_status(),
                    failed.logs()
                ),
            }
        }
        panic!("parley could not bind the ports picked for it three times running");
    }

    /// Starts the server; Err (the exited server) when it exits during startup.
    fn try_launch(opts: &Launch<'_>) -> Result<Parley, Box<Parley>> {
        let tmp = tempfile::Builder::new()
            .prefix("parley-test-")
            .tempdir()
            .expect("create temp dir");
        let tmp_path = tmp.path().to_path_buf();
        let data_dir = tmp_path.join("data");
        fs::create_dir_all(&data_dir).unwrap();
        let sip_addr = opts
            .sip_listen
            .unwrap_or_else(|| SocketAddrV4::new(LOOPBACK, free_sip_port()).into());
        let http_addr = opts
            .http_listen
            .unwrap_or_else(|| SocketAddrV4::new(LOOPBACK, free_tcp_port()).into());
        let rtp_ports = opts.rtp_ports.unwrap_or_else(rtp_port_range);
        let stdout_path = tmp_path.join("parley.stdout.log");
        let stderr_path = tmp_path.join("parley.stderr.log");

        let mut argv: Vec<OsString> = opts.prefix.iter().map(OsString::from).collect();
        match opts.command {
            Some(command) => argv.extend(command.iter().map(OsString::from)),
            None => {
                argv.push(parley_bin().into());
                argv.push("serve".into());
            }
        }
        argv.extend(opts.args.iter().map(OsString::from));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(&tmp_path)
            .env("PARLEY_SIP_LISTEN", sip_addr.to_string())
            .env("PARLEY_HTTP_LISTEN", http_addr.to_string())
            .env(
                "PARLEY_MEDIA_RTP_PORTS",
                format!("{}-{}", rtp_ports.0, rtp_ports.1),
            )
            .env("PARLEY_DATA_DIR", &data_dir)
            // Tests run side by side: each server's WebRTC port is one the kernel picks.
            .env("PARLEY_WEBRTC_UDP_PORT", "0")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,parley=debug".into()),
            )
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1") // plain logs in files
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap());
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", argv));
        let mut parley = Parley {
            child: Some(child),
            sip_addr,
            http_addr,
            rtp_ports,
            data_dir,
            stdout_path,
            stderr_path,
            tmp: Some(tmp),
            tmp_path,
        };
        if parley.wait_healthy(STARTUP_DEADLINE) {
            Ok(parley)
        } else {
            Err(Box::new(parley))
        }
    }

    /// False when the server exited during startup; panics when it never answers.
    fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let mut last = String::from("no attempt yet");
        let mut exited = false;
        let ok = poll_until(timeout, Duration::from_millis(50), || {
            if self.exit_status().is_some() {
                exited = true;
                return Some(());
            }
            match http_get(self.http_addr, "/healthz") {
                Ok((200, _)) => Some(()),
                Ok((code, body)) => {
                    last = format!("HTTP {code}: {body}");
                    None
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            }
        });
        if ok.is_none() {
            panic!(
                "parley did not answer GET /healthz on {} within {timeout:?} (last: {last})\n{}",
                self.http_addr,
                self.logs()
            );
        }
        !exited
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The server's process id (for CPU readings from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// `GET /healthz` answers 200 `ok` right now.
    pub fn healthy(&self) -> bool {
        matches!(http_get(self.http_addr, "/healthz"), Ok((200, _)))
    }

    pub fn get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.http_addr, path)
    }

    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, body)) => body,
            Ok((code, body)) => panic!("GET /metrics: HTTP {code}: {body}"),
            Err(e) => panic!("GET /metrics: {e}"),
        }
    }

    /// Polls `/metrics` until `name` has `value`; panics with the last scrape on timeout.
    pub fn wait_for_metric(&self, name: &str, value: f64, timeout: Duration) {
        let mut last = String::new();
        let hit = poll_until(timeout, Duration::from_millis(50), || {
            last = self.metrics();
            (metric_value(&last, name) == Some(value)).then_some(())
        });
        if hit.is_none() {
            panic!("{name} did not reach {value} within {timeout:?}; last /metrics:\n{last}");
        }
    }

    /// Where Parley records the caller's audio of a call.
    pub fn recording_path(&self, call_id: &str) -> PathBuf {
        self.data_dir
            .join("recordings")
            .join(format!("{call_id}.wav"))
    }

    /// A per-test scratch directory next to Parley's files (removed with them).
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp_path.join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Parley's stdout and stderr so far.
    /// What the process printed to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The operator's admin key printed at first start.
    pub fn printed_admin_key(&self) -> String {
        let out = self.stdout();
        let line = out
            .lines()
            .find(|l| l.contains("admin API key"))
            .unwrap_or_else(|| panic!("no admin key printed: {out:?}"));
        line.rsplit(' ').next().unwrap_or_default().to_string()
    }

    /// A new account (made with the operator's `root` key), with `number` when given, and a
    /// key of `scope` for it: (account id, key).
    pub fn tenant(
        &self,
        root: &str,
        name: &str,
        number: Option<&str>,
        scope: &str,
    ) -> (String, String) {
        let body = format!(r#"{{"name":"{name}"}}"#);
        let (status, acc) = self.api("POST", "/v1/accounts", root, &[], Some(&body));
        assert_eq!(status, 201, "{acc}");
        let acc = acc["id"].as_str().unwrap().to_string();
        if let Some(number) = number {
            let body = format!(r#"{{"account_id":"{acc}","number":"{number}"}}"#);
            let (status, n) = self.api("POST", "/v1/numbers", root, &[], Some(&body));
            assert_eq!(status, 201, "{n}");
        }
        let body = format!(r#"{{"scope":"{scope}"}}"#);
        let (status, k) = self.api(
            "POST",
            &format!("/v1/accounts/{acc}/keys"),
            root,
            &[],
            Some(&body),
        );
        assert_eq!(status, 201, "{k}");
        (acc, k["key"].as_str().unwrap().to_string())
    }

    /// An API request: (status, body as JSON, or as a JSON string when it is not JSON).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let (status, text) =
            http_request_with(self.http_addr, method, path, Some(key), headers, body).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    pub fn logs(&self) -> String {
        let out = fs::read_to_string(&self.stdout_path).unwrap_or_default();
        let err = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!(
            "----- parley stdout ({}) -----\n{out}\n----- parley stderr ({}) -----\n{err}\n-----",
            self.stdout_path.display(),
            self.stderr_path.display()
        )
    }

    /// Stops Parley: SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = poll_until(grace, Duration::from_millis(20), || {
            child.try_wait().ok().flatten()
        });
        status.or_else(|| {
            let _ = child.kill();
            child.wait().ok()
        })
    }
}

impl Drop for Parley {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if std::env::var_os("PARLEY_TEST_KEEP").is_some() {
            if let Some(tmp) = self.tmp.take() {
                let kept = tmp.keep();
                eprintln!("kept test files in {}", kept.display());
            }
        }
    }
}

/// A program installed on this machine: on PATH, or in the sbin directories (where Debian puts
/// kamailio and setcap, off a user's PATH).
pub fn system_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// sipp

/// sipp (from Debian's `sip-tester`) is on PATH.
pub fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Skips outside CI (and fails under CI) when sipp is missing.
pub fn require_sipp(test: &str) -> bool {
    require(
        test,
        "sipp is not on PATH (Debian package sip-tester; scripts/setup.sh installs it)",
        sipp_available(),
    )
}

pub fn scenario_path(name: &str) -> PathBuf {
    repo_root()
        .join("sip-configs/sipp")
        .join(format!("{name}.xml"))
}

/// The speech fixture made by scripts/setup.sh (µ-law WAV for sipp's rtp_stream).
pub fn speech_pcmu_wav() -> PathBuf {
    repo_root().join(".cache/speech/speech_8k_pcmu.wav")
}

/// The speech fixture as 16-bit PCM (Parley's greeting format).
pub fn speech_s16_wav() -> PathBuf {
    repo_root().join(".cache/speech/speech_8k_s16.wav")
}

/// Writes `conversation.ulaw` into `dir` for `uac_conversation.xml`'s looping RTP stream:
/// the speech fixture's first phrase then 4 s of silence, raw PCMU.
pub fn write_conversation(dir: &Path) {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    assert_eq!(wav.sample_rate, 8_000);
    let mut pcm = wav.samples[..8_000 * 245 / 100].to_vec();
    pcm.extend(std::iter::repeat_n(0i16, 8_000 * 4));
    let mut ulaw = vec![0u8; pcm.len()];
    parley_media::g711::encode_ulaw(&pcm, &mut ulaw);
    fs::write(dir.join("conversation.ulaw"), ulaw).unwrap();
}

/// A numeric setting of a load harness from the environment, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A sipp run: one call (`-m 1`) of a scenario against a Parley, files in its own dir.
pub struct Sipp {
    child: Option<Child>,
    pub scenario: String,
    pub dir: PathBuf,
    pub call_id: String,
    pub local_port: u16,
    pub media_port: u16,
    started: Instant,
}

/// What a finished sipp run reports.
#[derive(Debug)]
pub struct SippOutcome {
    pub scenario: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
    /// SuccessfulCall(C) and FailedCall(C) from the -trace_stat file.
    pub successful: u64,
    pub failed: u64,
    /// Last row of the -trace_counts file: per scenario message, e.g. "4_200_Retrans".
    pub counts: HashMap<String, String>,
    pub call_id: String,
    pub dir: PathBuf,
}

impl SippOutcome {
    pub fn succeeded(&self) -> bool {
        self.status.success() && self.successful == 1 && self.failed == 0
    }

    /// A per-message counter of the -trace_counts file as a number (0 when absent).
    pub fn count(&self, column: &str) -> u64 {
        self.counts
            .get(column)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// sipp's output, error log and message trace, for failure messages.
    pub fn report(&self) -> String {
        let mut out = format!(
            "sipp {} exited with {} after {:?}: {} successful, {} failed call(s), call-id {}\n",
            self.scenario, self.status, self.elapsed, self.successful, self.failed, self.call_id
        );
        out.push_str(&sipp_files_report(&self.dir));
        out
    }

    pub fn assert_success(&self) {
        assert!(self.succeeded(), "sipp scenario failed\n{}", self.report());
    }
}

fn sipp_files_report(dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let wanted = name.ends_with("_errors.log")
            || name.ends_with("_messages.log")
            || name == "sipp.stdout.log"
            || name == "sipp.stderr.log";
        if wanted {
            let text = fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            // Keep the tail: the end of a long message trace is what explains a failure.
            let tail: String = {
                let chars: Vec<char> = text.chars().collect();
                let start = chars.len().saturating_sub(12_000);
                chars[start..].iter().collect()
            };
            out.push_str(&format!("----- {name} -----\n{tail}\n"));
        }
    }
    out
}

static SIPP_RUNS: AtomicU32 = AtomicU32::new(0);

impl Sipp {
    /// Starts `sipp 127.0.0.1:<sip port> -sf sip-configs/sipp/<scenario>.xml -m 1 ...`
    /// against `parley` in the background, from its own directory (where sipp writes its
    /// traces, and where a link to the speech fixture lets `rtp_stream` find it). The Call-ID
    /// is fixed by the test (`-cid_str`) and available as `call_id`. `args` are appended
    /// (e.g. `["-d", "6000"]`).
    pub fn spawn(scenario: &str, parley: &Parley, args: &[&str]) -> Sipp {
        let n = SIPP_RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = parley.scratch_dir(&format!("sipp-{scenario}-{n}"));
        Sipp::spawn_at(scenario, parley.sip_addr, dir, args)
    }

    /// [`Sipp::spawn`] towards any SIP address (a proxy in front of Parleys), from `dir`.
    /// For several calls (`-m`), pass a `-cid_str` with `%u` in `args`: it overrides the
    /// fixed Call-ID.
    pub fn spawn_at(scenario: &str, target: SocketAddr, dir: PathBuf, args: &[&str]) -> Sipp {
        let n = SIPP_RUNS.fetch_add(1, Ordering::Relaxed);
        fs::create_dir_all(&dir).unwrap();
        let speech = speech_pcmu_wav();
        if speech.exists() {
            std::os::unix::fs::symlink(&speech, dir.join("speech_8k_pcmu.wav"))
                .expect("link the speech fixture into the sipp directory");
        }
        let call_id = format!("{scenario}-{}-{n}-{}", std::process::id(), unique_suffix());
        let local_port = free_udp_port();
        let media_port = free_udp_block(4);
        let target = target.to_string();
        let scenario_file = scenario_path(scenario);
        assert!(
            scenario_file.exists(),
            "no scenario {}",
            scenario_file.display()
        );
        let mut cmd = Command::new("sipp");
        cmd.arg(&target)
            .arg("-sf")
            .arg(&scenario_file)
            .args(["-m", "1", "-l", "1"])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &local_port.to_string()])
            .args(["-mp", &media_port.to_string()])
            .args(["-s", "parley"])
            .args(["-cid_str", &call_id])
            .args(["-timeout", "60s", "-timeout_error"])
            .args(["-trace_err", "-trace_msg", "-trace_stat", "-trace_counts"])
            .args(["-fd", "1"])
            .arg("-nostdin")
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("sipp.stdout.log")).unwrap())
            .stderr(fs::File::create(dir.join("sipp.stderr.log")).unwrap());
        let child = cmd.spawn().expect("spawn sipp");
        Sipp {
            child: Some(child),
            scenario: scenario.to_string(),
            dir,
            call_id,
            local_port,
            media_port,
            started: Instant::now(),
        }
    }

    /// True while sipp is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits (up to `timeout`, then kills it) for sipp to finish and reads its results.
    pub fn wait(mut self, timeout: Duration) -> SippOutcome {
        let mut child = self.child.take().expect("sipp already waited for");
        let status = poll_until(timeout, Duration::from_millis(20), || {
            child.try_wait().ok().flatten()
        });
        let status = match status {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let s = child.wait().expect("wait for killed sipp");
                eprintln!(
                    "sipp {} did not finish within {timeout:?}: killed",
                    self.scenario
                );
                s
            }
        };
        self.outcome(status)
    }

    /// Ends a sipp that is still running (e.g. a call holding a capacity slot).
    pub fn kill(mut self) -> SippOutcome {
        let mut child = self.child.take().expect("sipp already waited for");
        let _ = child.kill();
        let status = child.wait().expect("wait for killed sipp");
        self.outcome(status)
    }

    fn outcome(&self, status: ExitStatus) -> SippOutcome {
        let elapsed = self.started.elapsed();
        let stats = last_csv_row(&self.dir, "_.csv");
        let num = |k: &str| {
            stats
                .get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        SippOutcome {
            scenario: self.scenario.clone(),
            status,
            elapsed,
            successful: num("SuccessfulCall(C)"),
            failed: num("FailedCall(C)"),
            counts: last_csv_row(&self.dir, "_counts.csv"),
            call_id: self.call_id.clone(),
            dir: self.dir.clone(),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs one call of `scenario` against `parley` and waits (90 s at most) for the result.
pub fn run_sipp(scenario: &str, parley: &Parley, args: &[&str]) -> SippOutcome {
    Sipp::spawn(scenario, parley, args).wait(Duration::from_secs(90))
}

/// The header and last row of the sipp CSV file in `dir` whose name ends with `suffix`
/// (sipp separates fields with ';').
fn last_csv_row(dir: &Path, suffix: &str) -> HashMap<String, String> {
    let Some(path) = fs::read_dir(dir).ok().and_then(|d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
    }) else {
        return HashMap::new();
    };
    let text = fs::read_to_string(&path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return HashMap::new();
    };
    let Some(last) = lines.next_back() else {
        return HashMap::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:08x}")
}

// ---------------------------------------------------------------------------------------------
// WAV

/// A PCM WAV file as far as the tests care.
#[derive(Debug, Clone)]
pub struct Wav {
    pub format_tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    /// Interleaved 16-bit samples (empty unless the file is 16-bit PCM).
    pub samples: Vec<i16>,
    /// Bytes of the data chunk.
    pub data_len: usize,
}

impl Wav {
    pub fn duration(&self) -> Duration {
        let frame_bytes = (self.channels as u64 * self.bits_per_sample as u64 / 8).max(1);
        let frames = self.data_len as u64 / frame_bytes;
        Duration::from_secs_f64(frames as f64 / self.sample_rate.max(1) as f64)
    }

    /// Root mean square of the samples, in full-scale units (0.0 ..= 1.0).
    pub fn rms(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|&s| {
                let x = s as f64 / 32768.0;
                x * x
            })
            .sum();
        (sum / self.samples.len() as f64).sqrt()
    }
}

/// Reads a RIFF/WAVE file. Strict about sizes so that a file still being written (header
/// not yet finalized) is reported as an error rather than read as a short file.
pub fn read_wav(path: &Path) -> Result<Wav, String> {
    let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    parse_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse_wav(bytes: &[u8]) -> Result<Wav, String> {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let riff_len = u32_at(4) as usize;
    if riff_len + 8 != bytes.len() {
        return Err(format!(
            "RIFF size {} + 8 does not match the file size {} (not finalized?)",
            riff_len,
            bytes.len()
        ));
    }
    let mut pos = 12;
    let mut fmt = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32_at(pos + 4) as usize;
        let body = pos + 8;
        if body + len > bytes.len() {
            return Err(format!(
                "chunk {:?} of {len} bytes runs past the end of the file",
                String::from_utf8_lossy(id)
            ));
        }
        if id == b"fmt " {
            if len < 16 {
                return Err("fmt chunk too short".into());
            }
            fmt = Some((
                u16_at(body),
                u16_at(body + 2),
                u32_at(body + 4),
                u16_at(body + 14),
            ));
        } else if id == b"data" {
            let (format_tag, channels, sample_rate, bits_per_sample) =
                fmt.ok_or("data chunk before fmt chunk")?;
            let data = &bytes[body..body + len];
            let samples = if format_tag == 1 && bits_per_sample == 16 {
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect()
            } else {
                Vec::new()
            };
            return Ok(Wav {
                format_tag,
                channels,
                sample_rate,
                bits_per_sample,
                samples,
                data_len: len,
            });
        }
        pos = body + len + (len & 1);
    }
    Err("no data chunk".into())
}

/// The ONNX Runtime library and the Silero model (`scripts/fetch_models.sh`), as paths for
/// `PARLEY_MEDIA_ONNXRUNTIME` and `PARLEY_MEDIA_VAD_MODEL`; None when they are not fetched.
pub fn vad_models() -> Option<(String, String)> {
    let model = repo_root().join(".cache/models/silero_vad.onnx");
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    (model.exists() && lib.exists()).then(|| {
        (
            lib.to_string_lossy().to_string(),
            model.to_string_lossy().to_string(),
        )
    })
}

/// A raw HTTP/1.1 exchange with any body and headers (WHIP's `application/sdp`, whose
/// `Location` and `Link` headers matter): (status, headers lower-cased, body, de-chunked).
pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = header_value(&headers, "transfer-encoding") == Some("chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

/// A chunked body's text.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of header `name` (lower case) among [`raw_http`]'s headers.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
