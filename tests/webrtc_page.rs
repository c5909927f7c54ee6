//! The browser side of WebRTC calls: the `/call?token=…` page and the embeddable
//! `/widget.js`, served by the real `parley serve` and driven in headless Chromium over the
//! DevTools protocol (`support/cdp.rs`: clicks, the page's `window.parleyTest`, console
//! errors and CSP violations) with a fake microphone
//! (`--use-fake-ui-for-media-stream --use-fake-device-for-media-stream`).
//!
//! - the page's and the widget's headers (CSP, nosniff, no-referrer, CORP) and that nothing
//!   in them points at another host;
//! - the page loads without a CSP violation or a console error, and says when its link has
//!   no token;
//! - with a junk token, Call ends in the failed state showing the WHIP endpoint's 401 reason;
//! - the widget on another origin's page: its Shadow DOM keeps the site's CSS out, it gets
//!   its token from the site's backend (`data-token-url`) and reaches the WHIP endpoint
//!   cross-origin (CORS);
//! - a whole call with the AI agent through the page: the greeting heard, the caller's
//!   speech interrupting it (barge-in: the agent's context keeps only what was heard), the
//!   answer heard, voice to voice measured in the page; the page's hang-up and then, on a
//!   second call, the API's, each ending the call with its record.

mod support;

#[path = "support/cdp.rs"]
mod cdp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdp::{chromium, Browser};
use serde_json::Value;
use support::*;

/// What the fake microphone needs on top of headless Chromium.
const FAKE_MEDIA: [&str; 3] = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
];

/// `GET path` with `headers`: (status, head in lower case, body).
fn get_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The value of header `name` (lower case) in a lower-cased head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

/// `text` with its comments blanked out, so that only what the browser acts on is checked:
/// `<!-- … -->` (HTML), `/* … */` (CSS, JS) and `// …` to the end of the line (JS, outside
/// strings). String literals are kept; a `//` inside one is not a comment.
fn without_comments(text: &str, js: bool) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let rest = &text[i..];
        if let Some(q) = quote {
            if b[i] == b'\\' && i + 1 < b.len() {
                out.push_str(&text[i..i + 2]);
                i += 2;
                continue;
            }
            if b[i] == q {
                quote = None;
            }
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if js && rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else {
            if js && matches!(b[i], b'\'' | b'"' | b'`') {
                quote = Some(b[i]);
            }
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Where `code` points at another host: absolute or protocol-relative URLs, CSS imports
/// and `url()`s, and HTML attributes that load something not from this origin.
fn external_references(name: &str, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for needle in ["http://", "https://", "ws://", "wss://", "@import", "url("] {
        for (at, _) in code.match_indices(needle) {
            let end = (at + 60).min(code.len());
            found.push(format!("{name}: {:?}", &code[at..end]));
        }
    }
    // Protocol-relative references ('//host') in strings or attributes.
    for quote in ["'//", "\"//", "`//", "=//"] {
        for (at, _) in code.match_indices(quote) {
            found.push(format!(
                "{name}: {:?}",
                &code[at..(at + 40).min(code.len())]
            ));
        }
    }
    for attr in ["src=\"", "href=\"", "action=\""] {
        for (at, _) in code.match_indices(attr) {
            let value = &code[at + attr.len()..];
            let value = &value[..value.find('"').unwrap_or(value.len())];
            let local = (value.starts_with('/') && !value.starts_with("//")) || value == "data:,";
            if !local {
                found.push(format!("{name}: {attr}{value}\""));
            }
        }
    }
    found
}

#[test]
fn the_page_and_the_widget_are_served_with_strict_headers() {
    let p = parley(None, &[]);

    let (status, head, page) = get_raw(p.http_addr, "/call", &[]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&head, "referrer-policy"), Some("no-referrer"));
    let csp = header(&head, "content-security-policy").expect("a CSP");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for wanted in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(&wanted), "no {wanted} in {csp}");
    }
    assert!(
        !csp.contains("unsafe") && !csp.contains('*') && !csp.contains("http"),
        "{csp}"
    );
    assert!(page.contains(r#"<script src="/call/call.js" data-mode="page" defer>"#));

    // The token stays in the browser: the page is the same with or without one.
    let (_, _, with_token) = get_raw(p.http_addr, "/call?token=pct_secret_123", &[]);
    assert_eq!(with_token, page);
    assert!(!with_token.contains("pct_secret_123"));

    let (status, head, script) = get_raw(p.http_addr, "/call/call.js", &[]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    let (status, head, style) = get_raw(p.http_addr, "/call/call.css", &[]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        header(&head, "cross-origin-resource-policy"),
        Some("cross-origin"),
        "the widget links it from other sites"
    );

    // The widget: the page's script itself (one copy of the call logic), for any site.
    let (status, head, widget) = get_raw(p.http_addr, "/widget.js", &[]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&head, "cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    let cache = header(&head, "cache-control").unwrap_or_default();
    assert!(
        cache.contains("max-age=") && !cache.contains("no-store"),
        "{cache}"
    );
    assert_eq!(widget, script, "the widget and the page share one script");
    // Revalidation by entity tag.
    let etag = header(&head, "etag").expect("an ETag").to_string();
    let (status, _, body) = get_raw(p.http_addr, "/widget.js", &[("If-None-Match", &etag)]);
    assert_eq!(status, 304);
    assert!(body.is_empty());

    // Nothing the browser acts on points at another host (comments may show examples).
    let mut external = external_references("/call", &without_comments(&page, false));
    external.extend(external_references(
        "/call/call.js",
        &without_comments(&script, true),
    ));
    external.extend(external_references(
        "/call/call.css",
        &without_comments(&style, false),
    ));
    assert!(external.is_empty(), "external references: {external:#?}");
    // The checks above would see one (they are not vacuous).
    assert!(!external_references("t", "x = 'https://cdn.example/a.js';").is_empty());
    assert!(!external_references("t", "<script src=\"//cdn.example/a.js\">").is_empty());
    assert!(!external_references("t", &without_comments("a{b:url(x.png)}", false)).is_empty());
    assert!(
        external_references(
            "t",
            &without_comments("// see https://x.example\nf('//')", true)
        )
        .len()
            == 1
    );
}

// ---------------------------------------------------------------------------------------------
// In Chromium

/// Chromium is here (else the test is skipped, or fails under CI).
fn browser_or_skip(test: &str) -> Option<&'static str> {
    let browser = chromium();
    require(
        test,
        "headless Chromium (Debian `chromium`, scripts/setup.sh)",
        browser.is_some(),
    )
    .then(|| browser.unwrap())
}

/// `parley serve` with browser calls on a free UDP port (the default, 50000, would be shared
/// by the tests running at once) and `env`.
fn parley(http_listen: Option<SocketAddr>, env: &[(&str, &str)]) -> Parley {
    let mut all = vec![("PARLEY_WEBRTC_UDP_PORT", "0")];
    all.extend_from_slice(env);
    Parley::launch(Launch {
        http_listen,
        env: &all,
        ..Launch::default()
    })
}

fn launch(bin: &str, p: &Parley, name: &str, extra: &[String]) -> Browser {
    let mut args: Vec<String> = FAKE_MEDIA.iter().map(|s| s.to_string()).collect();
    args.extend_from_slice(extra);
    Browser::launch(bin, &p.scratch_dir(name), &args)
}

/// The page's state element: (data-state, text).
fn shown_state(b: &mut Browser) -> (String, String) {
    let v = b.eval(
        "(() => { const s = document.getElementById('state'); \
         return [s.dataset.state, s.textContent]; })()",
    );
    (
        v[0].as_str().unwrap_or_default().to_string(),
        v[1].as_str().unwrap_or_default().to_string(),
    )
}

fn event_types(b: &mut Browser) -> Vec<String> {
    serde_json::from_value(b.eval("window.parleyTest.events.map((e) => e.type)")).unwrap()
}

#[test]
fn the_page_loads_cleanly_and_says_when_its_token_is_missing() {
    let name = "the_page_loads_cleanly_and_says_when_its_token_is_missing";
    let Some(bin) = browser_or_skip(name) else {
        return;
    };
    let p = parley(None, &[]);
    let mut b = launch(bin, &p, "chromium", &[]);

    b.navigate(&format!("http://{}/call", p.http_addr));
    assert_eq!(b.eval("typeof window.parleyTest"), "object");
    assert_eq!(b.eval("window.parleyTest.state()"), "failed");
    let (state, text) = shown_state(&mut b);
    assert_eq!(state, "failed");
    assert!(text.contains("no call token"), "the page says: {text}");
    assert_eq!(
        b.eval("document.getElementById('call-button').disabled"),
        true
    );
    assert_eq!(b.eval("window.ParleyCall.state"), "failed");
    // Styled by its own sheet (not blocked): the page's layout rule applies.
    assert_eq!(
        b.eval("getComputedStyle(document.body).display"),
        "grid",
        "call.css did not apply"
    );
    assert_eq!(b.csp_violations(), Vec::<String>::new());
    assert_eq!(b.problems(), Vec::<String>::new(), "{}", b.log());

    // With a token: ready to call.
    b.clear_events();
    b.navigate(&format!("http://{}/call?token=pct_anything", p.http_addr));
    assert_eq!(b.eval("window.parleyTest.state()"), "idle");
    let (_, text) = shown_state(&mut b);
    assert_eq!(text, "Ready to call");
    assert_eq!(
        b.eval("document.getElementById('call-button').disabled"),
        false
    );
    assert_eq!(
        b.eval("document.getElementById('hangup-button').hidden"),
        true
    );
    assert_eq!(b.eval("window.parleyTest.callId()"), Value::Null);
    assert_eq!(b.eval("window.parleyTest.remoteEnergy()"), 0);
    assert_eq!(b.csp_violations(), Vec::<String>::new());
    assert_eq!(b.problems(), Vec::<String>::new(), "{}", b.log());

    // The policy is enforced (and a violation would be seen): inline style is refused.
    b.eval(
        "(() => { const s = document.createElement('style'); \
         s.textContent = 'body { display: block }'; document.head.append(s); })()",
    );
    let refused = b.wait_for("window.__cspViolations.length > 0", Duration::from_secs(5));
    assert!(refused.is_some(), "an inline style was not refused");
    assert!(
        b.csp_violations().iter().any(|v| v.contains("style-src")),
        "{:?}",
        b.csp_violations()
    );
    assert_eq!(b.eval("getComputedStyle(document.body).display"), "grid");
}

/// Waits until the call is over (ended or failed): the page's state.
fn wait_until_over(b: &mut Browser, within: Duration) -> String {
    let over = b.wait_for(
        "['ended', 'failed'].includes(window.ParleyCall.state) && window.ParleyCall.state",
        within,
    );
    over.and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            let state = b.eval("window.ParleyCall.state");
            panic!("the call is still {state} after {within:?}")
        })
}

/// Problems other than the refused request (the browser logs a load that ended in 401).
fn unexpected_problems(b: &mut Browser) -> Vec<String> {
    b.problems()
        .into_iter()
        .filter(|p| !(p.contains("401") && p.contains("webrtc/whip")))
        .collect()
}

#[test]
fn a_junk_token_fails_with_the_servers_401_reason() {
    let name = "a_junk_token_fails_with_the_servers_401_reason";
    let Some(bin) = browser_or_skip(name) else {
        return;
    };
    // A STUN server in the config: the page reads it from the OPTIONS answer's Link header.
    let p = parley(
        None,
        &[(
            "PARLEY_WEBRTC_ICE_SERVERS",
            r#"[{"urls": ["stun:127.0.0.1:9"]}]"#,
        )],
    );
    let mut b = launch(bin, &p, "chromium", &[]);
    b.navigate(&format!("http://{}/call?token=junk-token", p.http_addr));
    assert_eq!(b.eval("window.parleyTest.state()"), "idle");

    b.gesture("document.getElementById('call-button').click()");
    let state = wait_until_over(&mut b, Duration::from_secs(20));
    let (shown, text) = shown_state(&mut b);
    let events = event_types(&mut b);
    assert_eq!(state, "failed", "{text}\nevents: {events:?}\n{}", p.logs());
    assert_eq!(shown, "failed");
    assert!(
        text.contains("HTTP 401") && text.contains("unknown token"),
        "the page shows the server's 401 reason: {text:?}"
    );
    assert!(text.contains("token is invalid or has expired"), "{text}");
    // It got the (fake) microphone, read the ICE servers and sent its offer first.
    let at = |e: &str| {
        events
            .iter()
            .position(|t| t == e)
            .unwrap_or_else(|| panic!("no {e} in {events:?}"))
    };
    assert!(
        at("requesting-microphone") < at("microphone")
            && at("microphone") < at("connecting")
            && at("connecting") < at("ice-servers")
            && at("ice-servers") < at("offer")
            && at("offer") < at("failed"),
        "{events:?}"
    );
    assert_eq!(
        b.eval("window.parleyTest.events.find((e) => e.type === 'ice-servers').count"),
        1,
        "the STUN server's Link"
    );
    assert_eq!(b.eval("window.parleyTest.callId()"), Value::Null);
    println!(
        "shown: {text}\nevents: {}\nreported by the tab: {:#?}",
        b.eval("JSON.stringify(window.parleyTest.events)"),
        b.problems()
    );
    // Over means over: the microphone is let go, Call is offered again.
    assert_eq!(
        b.eval("document.getElementById('call-button').textContent"),
        "Call again"
    );
    assert_eq!(
        b.eval("document.getElementById('mute-button').disabled"),
        true
    );
    assert_eq!(b.csp_violations(), Vec::<String>::new());
    assert_eq!(unexpected_problems(&mut b), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// The widget on a business's own site

/// A business's site on its own origin: `/` is a page embedding the widget (with CSS that
/// would restyle every button it could reach), `/parley-token` its backend handing out
/// `token` (POST). Records the requests it answered.
struct Site {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Site {
    fn start(parley: SocketAddr, token: &'static str) -> Site {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Shop</title>\
             <link rel=\"icon\" href=\"data:,\">\
             <style>button {{ background: rgb(255, 0, 0) !important; \
             font-size: 40px !important; }}</style></head>\
             <body><h1>Shop</h1><button id=\"own\">The shop's button</button>\
             <script src=\"http://{parley}/widget.js\" data-token-url=\"/parley-token\" \
             defer></script></body></html>"
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                while find(&raw, b"\r\n\r\n").is_none() {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&raw).to_string();
                let line = head.lines().next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line.clone());
                let (ctype, body) = if line.starts_with("POST /parley-token ") {
                    ("application/json", format!("{{\"token\": \"{token}\"}}"))
                } else if line.starts_with("GET / ") {
                    ("text/html; charset=utf-8", page.clone())
                } else {
                    ("text/plain", String::new())
                };
                let status = if body.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Site { addr, requests }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[test]
fn the_widget_calls_from_another_sites_page() {
    let name = "the_widget_calls_from_another_sites_page";
    let Some(bin) = browser_or_skip(name) else {
        return;
    };
    // The site's origin may call the WHIP endpoint (CORS); the port is known once the site
    // listens, so the site starts first, pointing at Parley's address picked in advance.
    let parley_addr: SocketAddr = (LOOPBACK, free_tcp_port()).into();
    let site = Site::start(parley_addr, "junk-from-the-site");
    let origins = format!("[\"{}\"]", site.origin());
    let p = parley(
        Some(parley_addr),
        &[("PARLEY_WEBRTC_ALLOWED_ORIGINS", &origins)],
    );
    let mut b = launch(bin, &p, "chromium", &[]);
    b.navigate(&format!("{}/", site.origin()));

    // The floating button, in a Shadow DOM, styled by its own sheet (once loaded).
    let shown = b.wait_for(
        "(() => { const h = document.querySelector('parley-call'); \
         const l = h && h.shadowRoot && h.shadowRoot.querySelector('.launcher'); \
         return l && !l.hidden; })()",
        Duration::from_secs(10),
    );
    assert!(shown.is_some(), "no widget button: {:?}", b.problems());
    assert_eq!(b.eval("window.ParleyCall.state"), "idle");
    assert_eq!(
        b.eval("typeof window.parleyTest"),
        "undefined",
        "page mode only"
    );
    let styles = b.eval(
        "(() => { const root = document.querySelector('parley-call').shadowRoot; \
         const own = getComputedStyle(document.getElementById('own')); \
         const l = getComputedStyle(root.querySelector('.launcher')); \
         return [own.backgroundColor, l.backgroundColor, l.fontSize, l.position, \
                 getComputedStyle(document.querySelector('parley-call')).position]; })()",
    );
    assert_eq!(styles[0], "rgb(255, 0, 0)", "the site's own rule: {styles}");
    assert_ne!(
        styles[1], "rgb(255, 0, 0)",
        "the site's CSS leaked in: {styles}"
    );
    assert_ne!(styles[2], "40px", "the site's CSS leaked in: {styles}");
    assert_eq!(styles[4], "fixed", "floating: {styles}");

    // One click: the panel opens, the token comes from the site's backend, the offer goes
    // to Parley (cross-origin), whose 401 the panel shows.
    b.gesture(
        "document.querySelector('parley-call').shadowRoot.querySelector('.launcher').click()",
    );
    let state = wait_until_over(&mut b, Duration::from_secs(20));
    let text = b.eval(
        "document.querySelector('parley-call').shadowRoot.getElementById('state').textContent",
    );
    let text = text.as_str().unwrap_or_default().to_string();
    assert_eq!(state, "failed", "{text}");
    assert!(
        text.contains("HTTP 401") && text.contains("unknown token"),
        "the widget shows the server's reason (so CORS let it read the answer): {text:?}"
    );
    assert_eq!(
        b.eval("!document.querySelector('parley-call').shadowRoot.getElementById('panel').hidden"),
        true
    );
    let requests = site.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST /parley-token ")),
        "the token came from the site: {requests:?}"
    );

    // The API: start with a token of the caller's choosing.
    b.gesture("window.ParleyCall.start({ token: 'another-junk' })");
    assert_eq!(wait_until_over(&mut b, Duration::from_secs(20)), "failed");
    assert_eq!(b.csp_violations(), Vec::<String>::new());
    assert_eq!(unexpected_problems(&mut b), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// A whole call

/// The speech fixture at 48 kHz (what Chromium's fake microphone plays, looping): 2 s of
/// silence (the agent greets), the fixture, then 4 s of silence. Made with sox from
/// `.cache/speech/speech_8k_s16.wav` (scripts/setup.sh).
fn speech_48k(dir: &Path) -> PathBuf {
    let out = dir.join("speech_48k.wav");
    let status = Command::new("sox")
        .arg(speech_s16_wav())
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["pad", "2", "4"])
        .status()
        .expect("run sox");
    assert!(status.success(), "sox failed: {status}");
    out
}

#[test]
fn browser_calls_the_agent() {
    use support::fakes::openai_llm::{FakeLlm, LlmReply};
    use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
    use support::fakes::tts_openai::FakeOpenAiTts;

    let name = "browser_calls_the_agent";
    let Some(bin) = browser_or_skip(name) else {
        return;
    };
    let models = vad_models();
    let sox = Command::new("sox").arg("--version").output().is_ok();
    if !require(
        name,
        "the VAD model (scripts/fetch_models.sh)",
        models.is_some(),
    ) || !require(
        name,
        "the speech fixture (scripts/setup.sh)",
        speech_s16_wav().exists(),
    ) || !require(name, "sox (scripts/setup.sh)", sox)
    {
        return;
    }
    let (lib, model) = models.unwrap();

    // The agent: a greeting (TTS), then an answer to what the caller says.
    let stt = FakeOpenAiStt::start();
    let llm = FakeLlm::start();
    let tts = FakeOpenAiTts::start();
    stt.push(SttReply::text("What time do you open?", Some("english")));
    stt.set_default(SttReply::text("", Some("english")));
    llm.set_default(LlmReply::text(&["We open at nine."]));
    let (stt_url, llm_url, tts_url) = (stt.base_url(), llm.base_url(), tts.base_url());
    let p = Parley::launch(Launch {
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
            ("PARLEY_STT_PROVIDER", "openai"),
            ("PARLEY_STT_BASE_URL", &stt_url),
            ("PARLEY_LLM_PROVIDER", "openai"),
            ("PARLEY_LLM_BASE_URL", &llm_url),
            ("PARLEY_TTS_PROVIDER", "openai"),
            ("PARLEY_TTS_BASE_URL", &tts_url),
            // About 7 s of the fake voice (50 ms a character): the caller (2 s into the fake
            // microphone's file, so 0.5 to 4 s into the call however long it took to
            // connect) talks over it.
            (
                "PARLEY_AGENT_GREETING",
                "Hello! Thank you for calling. How can I help you today? Take your time, please. We are open every day of the week and always happy to hear from you.",
            ),
            ("PARLEY_WEBRTC_UDP_PORT", "0"),
        ],
        ..Launch::default()
    });
    let key = p.printed_admin_key();
    let (status, minted) = p.api(
        "POST",
        "/v1/webrtc/tokens",
        &key,
        &[],
        Some(r#"{"contact": "+15551230000"}"#),
    );
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().expect("a token").to_string();

    let wav = speech_48k(&p.scratch_dir("audio"));
    let mut b = launch(
        bin,
        &p,
        "chromium",
        // On the defaults: Parley's candidate is this machine's outward address, which a
        // browser here pairs with as any browser would (no loopback flag).
        &[format!(
            "--use-file-for-fake-audio-capture={}",
            wav.display()
        )],
    );
    b.navigate(&format!("http://{}/call?token={token}", p.http_addr));
    b.gesture("document.getElementById('call-button').click()");

    let connected = b.wait_for(
        "window.parleyTest.state() === 'connected' || \
         ['ended', 'failed'].includes(window.parleyTest.state())",
        Duration::from_secs(20),
    );
    let (state, text) = shown_state(&mut b);
    assert!(
        connected.is_some() && state == "connected",
        "the call did not connect: {text}\nevents: {}\n{}",
        b.eval("JSON.stringify(window.parleyTest.events)"),
        p.logs()
    );
    let id = b
        .eval("window.parleyTest.callId()")
        .as_str()
        .expect("the call's id (the Location's last segment)")
        .to_string();
    let (_, live) = p.api("GET", "/v1/calls", &key, &[], None);
    assert!(live.to_string().contains(&id), "{live}");

    // The agent speaks (its greeting, then its answer): audio energy arrives.
    let heard = b.wait_for(
        "window.parleyTest.remoteEnergy() > 0 && \
         window.parleyTest.events.some((e) => e.type === 'remote-audio-start')",
        Duration::from_secs(30),
    );
    assert!(
        heard.is_some(),
        "no audio from the agent; events: {}\n{}",
        b.eval("JSON.stringify(window.parleyTest.events)"),
        p.logs()
    );
    // The reply after the caller's speech, if it came: voice to voice as the page saw it.
    b.wait_for(
        "(() => { const ev = window.parleyTest.events; \
         const end = ev.find((e) => e.type === 'mic-audio-end'); \
         return end && ev.some((e) => e.type === 'remote-audio-start' && e.t > end.t); })()",
        Duration::from_secs(20),
    );
    let v2v = b.eval(
        "(() => { const ev = window.parleyTest.events; \
         const end = ev.find((e) => e.type === 'mic-audio-end'); \
         const reply = end && ev.find((e) => e.type === 'remote-audio-start' && e.t > end.t); \
         return reply ? reply.t - end.t : null; })()",
    );
    println!(
        "voice to voice in the browser: {v2v} ms; mic energy {}, remote energy {}",
        b.eval("window.parleyTest.micEnergy()"),
        b.eval("window.parleyTest.remoteEnergy()")
    );

    // Barge-in: the caller talked over the greeting, which stopped; what the agent's context
    // keeps of it is what was heard, not the whole of it.
    let greeting =
        "Hello! Thank you for calling. How can I help you today? Take your time, please. We are open every day of the week and always happy to hear from you.";
    let requests = llm.requests();
    assert!(!requests.is_empty(), "the LLM was asked\n{}", p.logs());
    let heard_greeting: Vec<String> = requests[0].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect();
    assert!(
        heard_greeting
            .iter()
            .any(|h| !h.is_empty() && greeting.starts_with(h.as_str()) && h.len() < greeting.len()),
        "the interrupted greeting as heard: {heard_greeting:?}\n{}",
        p.logs()
    );

    b.gesture("document.getElementById('hangup-button').click()");
    assert_eq!(wait_until_over(&mut b, Duration::from_secs(10)), "ended");
    let gone = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (_, calls) = p.api("GET", "/v1/calls", &key, &[], None);
        calls["data"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    });
    assert!(gone.is_some(), "the call is still live after the hang-up");
    let cdr = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (_, cdrs) = p.api("GET", "/v1/cdrs", &key, &[], None);
        cdrs["data"]
            .as_array()?
            .iter()
            .find(|c| c["id"] == id.as_str())
            .cloned()
    })
    .expect("the call's record");
    assert_eq!(cdr["channel"], "webrtc", "{cdr}");
    assert_eq!(cdr["hangup_cause"], "browser_hangup", "{cdr}");

    // A second call from the same page, hung up through the API: the page sees it end.
    b.gesture("document.getElementById('call-button').click()");
    let second_connected = format!(
        "window.parleyTest.state() === 'connected' && window.parleyTest.callId() !== null && \
         window.parleyTest.callId() !== '{id}'"
    );
    let again = b.wait_for(&second_connected, Duration::from_secs(20));
    assert!(
        again.is_some(),
        "the second call did not connect\n{}",
        p.logs()
    );
    let second = b
        .eval("window.parleyTest.callId()")
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = p.api(
        "POST",
        &format!("/v1/calls/{second}/hangup"),
        &key,
        &[],
        Some("{}"),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let over = wait_until_over(&mut b, Duration::from_secs(15));
    assert!(
        ["ended", "failed"].contains(&over.as_str()),
        "the page did not see the API's hang-up: {over}"
    );
    let cdr = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (status, cdr) = p.api("GET", &format!("/v1/cdrs/{second}"), &key, &[], None);
        (status == 200).then_some(cdr)
    })
    .expect("the second call's record");
    assert_eq!(cdr["hangup_cause"], "api", "{cdr}");
    assert_eq!(b.csp_violations(), Vec::<String>::new());
}
