//! A fake Deepgram Aura (`POST /v1/speak`), speaking the documented protocol: the query names
//! the model and asks for `encoding=linear16&sample_rate=16000&container=none`, the JSON body
//! holds `text`, `Authorization: Token <key>`; the answer is raw 16 kHz linear16 PCM sent in
//! chunks of an odd number of bytes (so samples straddle chunks), and errors are JSON
//! `{"err_code", "err_msg", "request_id"}`.
//!
//! The audio is deterministic: [`MS_PER_CHAR`] of a tone per character of the text, at
//! [`tone_hz`]`(n)` for the server's `n`-th request (0-based, failed ones included), so a
//! test can tell sentences and retries apart.
//!
//! This file also holds what the TTS fakes share: the background server ([`Background`]),
//! the audio ([`speech`]), scripted HTTP faults ([`HttpFault`]) and the chunked body
//! ([`chunked_body`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::sync::oneshot;

/// Audio per character of text.
pub const MS_PER_CHAR: usize = 50;

/// Body chunk size: odd, so 16-bit samples straddle chunks.
pub const CHUNK_BYTES: usize = 999;

/// The tone of response (or sentence) number `n`.
pub fn tone_hz(n: usize) -> f64 {
    300.0 + 100.0 * (n % 40) as f64
}

/// `samples` of a sine at `hz`, sampled at `rate`.
pub fn tone(hz: f64, rate: u32, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

/// The fakes' "speech" for `text`: [`MS_PER_CHAR`] per character at [`tone_hz`]`(n)`.
pub fn speech(text: &str, n: usize, rate: u32) -> Vec<i16> {
    let per_char = rate as usize * MS_PER_CHAR / 1000;
    tone(tone_hz(n), rate, text.chars().count() * per_char)
}

pub fn le_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A lock that survives a panicked holder (a failed test must still report clearly).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Background server

/// An axum app served on 127.0.0.1 from its own thread and runtime, so that both plain
/// `#[test]`s and `#[tokio::test]`s can use it. Dropping it stops the server and every
/// connection it holds.
pub struct Background {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    pub fn start(name: &str, app: Router) -> Background {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake server on 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop => {}
                    }
                });
                // Dropping the runtime here ends the connections still open.
            })
            .expect("spawn the fake server's thread");
        Background {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests, faults and bodies shared by the HTTP fakes

/// What a request carried.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when it was not JSON).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    pub fn from_parts(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
        RecordedRequest {
            path: uri.path().to_string(),
            query: parse_query(uri.query().unwrap_or("")),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        }
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `a=1&b=x%20y` as pairs, percent-decoded.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to do wrong with one request (the default: nothing).
#[derive(Debug, Clone, Default)]
pub struct HttpFault {
    /// Answer with this status and the vendor's error body instead of audio.
    pub status: Option<u16>,
    /// Wait this long before answering at all.
    pub first_byte_delay: Duration,
    /// Wait this long between body chunks.
    pub chunk_delay: Duration,
    /// Drop the connection after this many body bytes.
    pub disconnect_after_bytes: Option<usize>,
}

impl HttpFault {
    pub fn status(status: u16) -> HttpFault {
        HttpFault {
            status: Some(status),
            ..HttpFault::default()
        }
    }

    pub fn slow_first_byte(delay: Duration) -> HttpFault {
        HttpFault {
            first_byte_delay: delay,
            ..HttpFault::default()
        }
    }

    pub fn slow_chunks(delay: Duration) -> HttpFault {
        HttpFault {
            chunk_delay: delay,
            ..HttpFault::default()
        }
    }

    pub fn disconnect_after(bytes: usize) -> HttpFault {
        HttpFault {
            disconnect_after_bytes: Some(bytes),
            ..HttpFault::default()
        }
    }
}

/// How audio bodies ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyStats {
    /// Sent to the end.
    pub completed: usize,
    /// Cut by a scripted disconnect.
    pub disconnected: usize,
    /// Dropped before the end because the client went away (cancellation).
    pub aborted: usize,
}

/// Counts a body as aborted unless it was marked finished.
struct BodyGuard {
    stats: Arc<Mutex<BodyStats>>,
    finished: bool,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.stats).aborted += 1;
        }
    }
}

struct BodyState {
    bytes: Vec<u8>,
    at: usize,
    fault: HttpFault,
    guard: BodyGuard,
}

/// `bytes` as a chunked body of [`CHUNK_BYTES`]-byte chunks, with the fault's pacing and
/// disconnect; how it ended is counted in `stats`.
pub fn chunked_body(bytes: Vec<u8>, fault: HttpFault, stats: Arc<Mutex<BodyStats>>) -> Body {
    let state = BodyState {
        bytes,
        at: 0,
        fault,
        guard: BodyGuard {
            stats,
            finished: false,
        },
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if s.guard.finished {
            return None;
        }
        if let Some(limit) = s.fault.disconnect_after_bytes {
            if s.at >= limit {
                // Let the server flush what was sent (it does while the body is pending),
                // so the cut comes after the audio, not instead of the response.
                tokio::task::yield_now().await;
                s.guard.finished = true;
                lock(&s.guard.stats).disconnected += 1;
                let cut = std::io::Error::other("scripted disconnect");
                return Some((Err(cut), s));
            }
        }
        if s.at >= s.bytes.len() {
            s.guard.finished = true;
            lock(&s.guard.stats).completed += 1;
            return None;
        }
        if s.at > 0 && !s.fault.chunk_delay.is_zero() {
            tokio::time::sleep(s.fault.chunk_delay).await;
        }
        let mut end = (s.at + CHUNK_BYTES).min(s.bytes.len());
        if let Some(limit) = s.fault.disconnect_after_bytes {
            end = end.min(limit.max(s.at + 1));
        }
        let chunk = Bytes::copy_from_slice(&s.bytes[s.at..end]);
        s.at = end;
        Some((Ok::<_, std::io::Error>(chunk), s))
    });
    Body::from_stream(stream)
}

/// A JSON error response.
pub fn json_error(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The Deepgram fake

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<VecDeque<HttpFault>>,
    stats: Arc<Mutex<BodyStats>>,
    key: Mutex<Option<String>>,
}

pub struct FakeDeepgramTts {
    server: Background,
    shared: Arc<Shared>,
}

impl FakeDeepgramTts {
    pub fn start() -> FakeDeepgramTts {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/speak", post(speak))
            .with_state(shared.clone());
        FakeDeepgramTts {
            server: Background::start("fake-deepgram-tts", app),
            shared,
        }
    }

    /// What `tts.base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Requests without `Authorization: Token <key>` get a 401 from now on.
    pub fn require_key(&self, key: &str) {
        *lock(&self.shared.key) = Some(key.to_string());
    }

    /// The next request not yet scripted gets `fault`.
    pub fn push_fault(&self, fault: HttpFault) {
        lock(&self.shared.faults).push_back(fault);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn stats(&self) -> BodyStats {
        *lock(&self.shared.stats)
    }

    /// The audio request number `n` with `text` is answered with.
    pub fn expected_pcm(text: &str, n: usize) -> Vec<i16> {
        speech(text, n, 16_000)
    }
}

fn deepgram_error(status: u16, code: &str, msg: &str) -> Response {
    json_error(
        status,
        serde_json::json!({
            "err_code": code,
            "err_msg": msg,
            "request_id": "00000000-0000-4000-8000-000000000000",
        }),
    )
}

async fn speak(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest::from_parts(&uri, &headers, &body);
    let n = {
        let mut requests = lock(&shared.requests);
        requests.push(request.clone());
        requests.len() - 1
    };
    let fault = lock(&shared.faults).pop_front().unwrap_or_default();
    if !fault.first_byte_delay.is_zero() {
        tokio::time::sleep(fault.first_byte_delay).await;
    }
    let key = lock(&shared.key).clone();
    if let Some(key) = key {
        if request.header("authorization") != Some(format!("Token {key}").as_str()) {
            return deepgram_error(401, "INVALID_AUTH", "Invalid credentials.");
        }
    }
    if let Some(status) = fault.status {
        let code = match status {
            401 => "INVALID_AUTH",
            429 => "TOO_MANY_REQUESTS",
            s if s >= 500 => "SERVICE_UNAVAILABLE",
            _ => "Bad Request",
        };
        return deepgram_error(
            status,
            code,
            "Scripted failure of the fake Deepgram server.",
        );
    }
    let Some(text) = request.body.get("text").and_then(|t| t.as_str()) else {
        return deepgram_error(400, "INVALID_QUERY", "The request body must hold `text`.");
    };
    if text.trim().is_empty() {
        return deepgram_error(400, "INVALID_QUERY", "`text` is empty.");
    }
    // This fake speaks only what Parley asks for: headerless 16 kHz linear16.
    let wants = [
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("container", "none"),
    ];
    for (k, v) in wants {
        if request.query(k) != Some(v) {
            return deepgram_error(
                400,
                "UNSUPPORTED_AUDIO_FORMAT",
                &format!("this fake needs {k}={v}"),
            );
        }
    }
    if request.query("model").is_none_or(str::is_empty) {
        return deepgram_error(400, "INVALID_QUERY", "`model` is required.");
    }
    let pcm = FakeDeepgramTts::expected_pcm(text, n);
    let body = chunked_body(le_bytes(&pcm), fault, shared.stats.clone());
    (
        StatusCode::OK,
        [("content-type", "application/octet-stream")],
        body,
    )
        .into_response()
}
