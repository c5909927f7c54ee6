//! A fake OpenAI-compatible chat-completions server (`POST /v1/chat/completions`, streamed as
//! `chat.completion.chunk` Server-Sent Events ending with `data: [DONE]`).
//!
//! Replies are scripted per request ([`FakeLlm::push`]; [`FakeLlm::set_default`] once the
//! queue is empty) with faults: a status with an error body, a delay before the first byte
//! or between chunks, a malformed chunk, a disconnect mid-stream, or a stream that stalls
//! until the client goes away. Every request is recorded (headers and JSON body), and so is
//! every reply the client abandoned before its end.
//!
//! The server is a small hand-written HTTP/1.1 server (chunked responses, keep-alive) on
//! its own thread and tokio runtime, so that faults happen exactly where scripted; the
//! helpers here ([`serve`], [`read_request`], …) are shared with the other HTTP fakes.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------------
// Shared plumbing: a server thread, HTTP/1.1 requests and responses

/// A server running on its own thread and runtime; stopped (all its connections closed)
/// when dropped.
pub struct ServerThread {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds 127.0.0.1:0 and runs `accept_loop(listener)` on a new thread with its own runtime.
pub fn serve<F, Fut>(accept_loop: F) -> ServerThread
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (shutdown, stop) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("fake server runtime");
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tokio::select! {
                _ = accept_loop(listener) => {}
                _ = stop => {}
            }
        });
        // Dropping the runtime cancels every connection task (closing their sockets).
        rt.shutdown_timeout(Duration::from_secs(1));
    });
    let addr = addr_rx.recv().expect("fake server address");
    ServerThread {
        addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

/// One HTTP request as received.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection with what was read ahead of the current request.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).to_string();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The next request; `None` when the client closed the connection between requests.
    pub async fn read_request(&mut self) -> io::Result<Option<HttpRequest>> {
        while find(&self.buf, b"\r\n\r\n").is_none() {
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
        let start = self.line().await?;
        let mut parts = start.split(' ');
        let mut req = HttpRequest {
            method: parts.next().unwrap_or_default().to_string(),
            target: parts.next().unwrap_or_default().to_string(),
            ..HttpRequest::default()
        };
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                req.headers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if req
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = self.line().await?;
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
                let data = self.exact(size + 2).await?;
                if size == 0 {
                    break;
                }
                req.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(len) = req.header("content-length") {
            let len = len
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            req.body = self.exact(len).await?;
        }
        Ok(Some(req))
    }

    /// Waits `d`; false (early) when the client closed the connection meanwhile.
    pub async fn pause(&mut self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.closed() => false,
        }
    }

    /// Returns once the client has closed the connection (or reset it).
    pub async fn closed(&mut self) {
        loop {
            match self.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// A complete response with a body.
    pub async fn respond(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            reason(status),
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body).await?;
        self.stream.flush().await
    }

    /// The head of a chunked response.
    pub async fn start_chunked(&mut self, status: u16, content_type: &str) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
            reason(status)
        );
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.flush().await
    }

    /// One chunk of a chunked body (sent at once).
    pub async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(()); // an empty chunk would end the body
        }
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// The end of a chunked body.
    pub async fn end_chunked(&mut self) -> io::Result<()> {
        self.stream.write_all(b"0\r\n\r\n").await?;
        self.stream.flush().await
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Polls `f` (a snapshot check, never blocking) until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The vendor's error body shape.
pub fn openai_error(message: &str, kind: &str) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}}).to_string()
}

// ---------------------------------------------------------------------------------------------
// Scripted replies

/// How a streamed reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// All events, then the end of the body.
    Complete,
    /// This many events, then the connection is dropped (no end of body).
    DisconnectAfter(usize),
    /// This many events, then nothing until the client closes the connection.
    HangAfter(usize),
}

/// One scripted response.
#[derive(Debug, Clone)]
pub struct LlmReply {
    /// 200 streams `events`; anything else answers `error_body` as JSON.
    pub status: u16,
    pub error_body: String,
    /// Each is written as its own HTTP chunk (normally one SSE event each).
    pub events: Vec<Vec<u8>>,
    /// Before the response head.
    pub first_byte_delay: Duration,
    /// Before each event.
    pub chunk_delay: Duration,
    pub end: End,
}

/// A tool call a reply makes: `(id, function name, arguments JSON)`.
pub type FakeToolCall<'a> = (&'a str, &'a str, &'a str);

fn sse(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
    sse(&json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
    .to_string())
}

/// `s` in pieces of about `n` characters (never splitting a character).
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

impl LlmReply {
    fn streamed(events: Vec<Vec<u8>>) -> LlmReply {
        LlmReply {
            status: 200,
            error_body: String::new(),
            events,
            first_byte_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            end: End::Complete,
        }
    }

    /// Text streamed as these deltas, then `finish_reason: "stop"` and `[DONE]`.
    pub fn text(parts: &[&str]) -> LlmReply {
        LlmReply::text_and_tools(parts, &[])
    }

    /// Tool calls only (`finish_reason: "tool_calls"`).
    pub fn tool_calls(calls: &[FakeToolCall<'_>]) -> LlmReply {
        LlmReply::text_and_tools(&[], calls)
    }

    /// Text deltas, then tool calls streamed as OpenAI does: per call, a first fragment with
    /// `id`, `type` and `function.name`, then `function.arguments` in small pieces.
    pub fn text_and_tools(parts: &[&str], calls: &[FakeToolCall<'_>]) -> LlmReply {
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        for p in parts {
            events.push(chunk(json!({"content": p}), None));
        }
        for (index, (id, name, args)) in calls.iter().enumerate() {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                       "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in pieces(args, 7) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
        let finish = if calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        events.push(chunk(json!({}), Some(finish)));
        events.push(sse("[DONE]"));
        LlmReply::streamed(events)
    }

    /// An error status with the vendor's error body.
    pub fn status(status: u16, message: &str) -> LlmReply {
        LlmReply {
            status,
            error_body: openai_error(message, "server_error"),
            ..LlmReply::streamed(Vec::new())
        }
    }

    /// A raw event-stream body, written in pieces of `piece` bytes (one HTTP chunk each).
    pub fn raw(body: &[u8], piece: usize) -> LlmReply {
        LlmReply::streamed(body.chunks(piece.max(1)).map(<[u8]>::to_vec).collect())
    }

    /// A stream from `fixtures/providers/llm/<name>`, in pieces of `piece` bytes.
    pub fn fixture(name: &str, piece: usize) -> LlmReply {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/providers/llm")
            .join(name);
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        LlmReply::raw(&body, piece)
    }

    /// Adds a usage chunk (empty `choices`) before `[DONE]`, as with
    /// `stream_options.include_usage`.
    pub fn with_usage(mut self) -> LlmReply {
        let usage = sse(
            &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
            .to_string(),
        );
        let at = self.events.len().saturating_sub(1);
        self.events.insert(at, usage);
        self
    }

    /// Replaces event `at` with a chunk that is not JSON.
    pub fn malformed_at(mut self, at: usize) -> LlmReply {
        let bad = sse("{\"id\":\"chatcmpl-fake\",\"choices\":[{\"delta\":");
        if at < self.events.len() {
            self.events[at] = bad;
        } else {
            self.events.push(bad);
        }
        self
    }

    pub fn first_byte_delay(mut self, d: Duration) -> LlmReply {
        self.first_byte_delay = d;
        self
    }

    pub fn chunk_delay(mut self, d: Duration) -> LlmReply {
        self.chunk_delay = d;
        self
    }

    /// Sends `n` events, then drops the connection.
    pub fn disconnect_after(mut self, n: usize) -> LlmReply {
        self.end = End::DisconnectAfter(n);
        self
    }

    /// Sends `n` events, then waits for the client to close the connection.
    pub fn hang_after(mut self, n: usize) -> LlmReply {
        self.end = End::HangAfter(n);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
}

impl LlmRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    script: VecDeque<LlmReply>,
    default: LlmReply,
    requests: Vec<LlmRequest>,
    /// Streamed replies that reached their end.
    completed: usize,
    /// Replies the client abandoned (closed the connection) before their end.
    abandoned: usize,
}

/// The running fake; stopped when dropped.
pub struct FakeLlm {
    state: Arc<Mutex<State>>,
    server: ServerThread,
}

impl FakeLlm {
    /// A server whose default reply is a short text.
    pub fn start() -> FakeLlm {
        let state = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            default: LlmReply::text(&["Hello", " from", " the", " fake", " LLM."]),
            requests: Vec::new(),
            completed: 0,
            abandoned: 0,
        }));
        let shared = state.clone();
        let server = serve(move |listener| async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(Conn::new(stream), shared.clone()));
            }
        });
        FakeLlm { state, server }
    }

    /// The `base_url` to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Queues the reply to the next request without one.
    pub fn push(&self, reply: LlmReply) {
        self.state.lock().unwrap().script.push_back(reply);
    }

    /// The reply once the queue is empty.
    pub fn set_default(&self, reply: LlmReply) {
        self.state.lock().unwrap().default = reply;
    }

    pub fn requests(&self) -> Vec<LlmRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Streamed replies sent to their end.
    pub fn completed(&self) -> usize {
        self.state.lock().unwrap().completed
    }

    /// Replies cut short because the client closed the connection.
    pub fn abandoned(&self) -> usize {
        self.state.lock().unwrap().abandoned
    }
}

async fn connection(mut conn: Conn, state: Arc<Mutex<State>>) {
    while let Ok(Some(req)) = conn.read_request().await {
        let reply = {
            let mut s = state.lock().unwrap();
            let (path, _) = req.target.split_once('?').unwrap_or((&req.target, ""));
            s.requests.push(LlmRequest {
                method: req.method.clone(),
                path: path.to_string(),
                headers: req.headers.clone(),
                body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
            });
            let default = s.default.clone();
            s.script.pop_front().unwrap_or(default)
        };
        match send(&mut conn, &reply).await {
            Outcome::KeepAlive => {}
            Outcome::Closed => return,
            Outcome::Abandoned => {
                state.lock().unwrap().abandoned += 1;
                return;
            }
        }
        if reply.status == 200 {
            state.lock().unwrap().completed += 1;
        }
    }
}

enum Outcome {
    KeepAlive,
    /// The script closed the connection.
    Closed,
    /// The client closed it before the reply's end.
    Abandoned,
}

async fn send(conn: &mut Conn, reply: &LlmReply) -> Outcome {
    if !conn.pause(reply.first_byte_delay).await {
        return Outcome::Abandoned;
    }
    if reply.status != 200 {
        let body = reply.error_body.as_bytes();
        return match conn.respond(reply.status, "application/json", body).await {
            Ok(()) => Outcome::KeepAlive,
            Err(_) => Outcome::Abandoned,
        };
    }
    if conn.start_chunked(200, "text/event-stream").await.is_err() {
        return Outcome::Abandoned;
    }
    for (i, event) in reply.events.iter().enumerate() {
        match reply.end {
            End::DisconnectAfter(n) if i == n => return Outcome::Closed,
            End::HangAfter(n) if i == n => {
                conn.closed().await;
                return Outcome::Abandoned;
            }
            _ => {}
        }
        if !conn.pause(reply.chunk_delay).await || conn.chunk(event).await.is_err() {
            return Outcome::Abandoned;
        }
    }
    match reply.end {
        End::DisconnectAfter(_) => Outcome::Closed,
        End::HangAfter(_) => {
            conn.closed().await;
            Outcome::Abandoned
        }
        End::Complete => match conn.end_chunked().await {
            Ok(()) => Outcome::KeepAlive,
            Err(_) => Outcome::Abandoned,
        },
    }
}
