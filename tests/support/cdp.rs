//! Headless Chromium driven over the DevTools protocol (CDP), for tests that must click and
//! read a page's JavaScript state (the `--dump-dom` runs of `ops_page.rs` cannot click).
//!
//! [`Browser::launch`] starts Chromium with `--remote-debugging-port=0` and its own profile,
//! reads the port from the profile's `DevToolsActivePort`, and attaches to its first tab
//! over a WebSocket (tungstenite, blocking). Everything the tab reports (console messages,
//! uncaught exceptions, log entries such as CSP refusals and failed loads) is kept, and a
//! `securitypolicyviolation` listener is installed in every document before its own scripts
//! run. Chromium is killed on drop.
//!
//! Include it with `#[path = "support/cdp.rs"] mod cdp;` (it is not part of `support`).
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// The Chromium binary on PATH, if any.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Collects CSP violations in `window.__cspViolations`, in every document, before its scripts.
const CSP_WATCH: &str = "window.__cspViolations = [];\
    document.addEventListener('securitypolicyviolation', (e) => {\
      window.__cspViolations.push(e.violatedDirective + ' blocked ' + e.blockedURI);\
    });";

/// `GET path` on Chromium's DevTools HTTP server: its body. (That server keeps the
/// connection open whatever the request says, so the body is read by its length.)
fn devtools_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })?;
        if body.len() >= length {
            return Some(body[..length].to_string());
        }
    }
}

pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Every event the tab sent so far (`{"method": …, "params": …}`).
    pub events: Vec<Value>,
    log: PathBuf,
}

impl Browser {
    /// Starts headless Chromium (profile and log under `dir`) with `args` added, on a blank
    /// tab, and attaches to that tab with the Page, Runtime and Log domains on.
    pub fn launch(bin: &str, dir: &Path, args: &[String]) -> Browser {
        fs::create_dir_all(dir).unwrap();
        let profile = dir.join("profile");
        let log = dir.join("chromium.log");
        let mut command = Command::new(bin);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1000,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        // A test process killed (a timeout, Ctrl-C) runs no Drop: the kernel then ends the
        // browser with it, so no headless Chromium is left burning CPU.
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));

        // Chromium writes "<port>\n<browser path>" once it listens.
        let active = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            let text = fs::read_to_string(&active).unwrap_or_default();
            if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                if text.lines().count() >= 2 {
                    break port;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{bin} exited ({status}) before it listened:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{bin} wrote no DevToolsActivePort within 30 s:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();

        // The blank tab's WebSocket (it may take a moment to be listed).
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = loop {
            let found = devtools_get(addr, "/json/list")
                .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                .and_then(|list| {
                    list.as_array()?
                        .iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
                });
            if let Some(url) = found {
                break url;
            }
            assert!(Instant::now() < deadline, "{bin} listed no tab");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut browser = Browser {
            child,
            ws,
            next_id: 0,
            events: Vec::new(),
            log,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).unwrap();
        }
        browser
            .call(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": CSP_WATCH }),
            )
            .unwrap();
        browser
    }

    /// Chromium's own log (stderr) so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads one message (None when nothing came within the read timeout).
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection: {e}\n{}", self.log()),
        }
    }

    /// Reads what has arrived for up to `wait`, keeping the events.
    pub fn pump(&mut self, wait: Duration) {
        let end = Instant::now() + wait;
        while Instant::now() < end {
            if let Some(message) = self.read() {
                if message.get("method").is_some() {
                    self.events.push(message);
                }
            }
        }
    }

    /// Sends `method` and waits (30 s at most) for its result; `Err` with the protocol's
    /// error.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::Text(request.into()))
            .map_err(|e| format!("{method}: {e}"))?;
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let Some(message) = self.read() else {
                continue;
            };
            if message.get("method").is_some() {
                self.events.push(message);
            } else if message["id"] == id {
                return match message.get("error") {
                    Some(error) => Err(format!("{method}: {error}")),
                    None => Ok(message["result"].clone()),
                };
            }
        }
        Err(format!("{method}: no answer within 30 s"))
    }

    /// Opens `url` in the tab and waits (30 s at most) for its load event.
    pub fn navigate(&mut self, url: &str) {
        let seen = self.events.len();
        let result = self.call("Page.navigate", json!({ "url": url })).unwrap();
        assert!(
            result.get("errorText").is_none(),
            "navigate to {url}: {result}"
        );
        let end = Instant::now() + Duration::from_secs(30);
        while !self.events[seen..]
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(Instant::now() < end, "{url} did not load within 30 s");
            self.pump(Duration::from_millis(50));
        }
    }

    /// The value of `expression` (awaited when it is a promise), as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.eval_as(expression, false)
    }

    /// `expression` run as if the user had clicked (a user activation: media may play, and
    /// the page may ask for the microphone).
    pub fn gesture(&mut self, expression: &str) -> Value {
        self.eval_as(expression, true)
    }

    fn eval_as(&mut self, expression: &str, user_gesture: bool) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                    "userGesture": user_gesture,
                }),
            )
            .unwrap();
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (its value), or `timeout` passes (None).
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Option<Value> {
        let end = Instant::now() + timeout;
        loop {
            let v = self.eval(expression);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Some(v);
            }
            if Instant::now() >= end {
                return None;
            }
            self.pump(Duration::from_millis(100));
        }
    }

    /// Content Security Policy violations in the current document (from the listener) and
    /// in the tab's log.
    pub fn csp_violations(&mut self) -> Vec<String> {
        let mut out: Vec<String> =
            serde_json::from_value(self.eval("window.__cspViolations || []")).unwrap_or_default();
        out.extend(
            self.problems()
                .into_iter()
                .filter(|p| p.contains("Content Security Policy")),
        );
        out
    }

    /// Console errors, uncaught exceptions and error log entries (failed loads, CSP
    /// refusals) the tab reported so far.
    pub fn problems(&mut self) -> Vec<String> {
        self.pump(Duration::from_millis(100));
        let mut out = Vec::new();
        for event in &self.events {
            let p = &event["params"];
            match event["method"].as_str().unwrap_or_default() {
                "Runtime.consoleAPICalled"
                    if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                {
                    let args: Vec<String> = p["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            a.get("value")
                                .map(|v| v.to_string())
                                .or_else(|| a["description"].as_str().map(str::to_string))
                                .unwrap_or_default()
                        })
                        .collect();
                    out.push(format!("console.error: {}", args.join(" ")));
                }
                "Runtime.exceptionThrown" => {
                    let d = &p["exceptionDetails"];
                    out.push(format!(
                        "exception: {} {}",
                        d["text"].as_str().unwrap_or_default(),
                        d["exception"]["description"].as_str().unwrap_or_default()
                    ));
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => {
                    let e = &p["entry"];
                    out.push(format!(
                        "log ({}): {} {}",
                        e["source"].as_str().unwrap_or_default(),
                        e["text"].as_str().unwrap_or_default(),
                        e["url"].as_str().unwrap_or_default()
                    ));
                }
                _ => {}
            }
        }
        out
    }

    /// Forgets the events so far (before a new page).
    pub fn clear_events(&mut self) {
        self.pump(Duration::from_millis(100));
        self.events.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
