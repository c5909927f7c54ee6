//! A fake ElevenLabs WebSocket `stream-input`
//! (`GET /v1/text-to-speech/{voice_id}/stream-input`, `xi-api-key` header), speaking the
//! documented protocol: the client's first message is `{"text": " "}`, then text messages
//! (`"flush": true` forces generation), and `{"text": ""}` ends the stream. The server
//! answers with `{"audio": <base64 pcm_16000>, "isFinal": null, "normalizedAlignment": {…},
//! "alignment": {"chars", "charStartTimesMs", "charDurationsMs"}}` messages and, after the
//! end, `{"isFinal": true}` and a normal close.
//!
//! Audio: [`MS_PER_CHAR`] of a tone per character, at [`tone_hz`]`(k)` for characters of the
//! connection's `k`-th text message, cut into messages of [`FakeElevenLabsTts::set_chars_per_message`]
//! characters. With [`FakeElevenLabsTts::set_batching`] the server holds back a partial
//! message until more text or the end comes, so one message can straddle two sentences.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::Engine;

use super::tts_deepgram::{json_error, le_bytes, lock, parse_query, tone, Background};
pub use super::tts_deepgram::{tone_hz, MS_PER_CHAR};

/// Samples of one character's audio at 16 kHz.
pub const SAMPLES_PER_CHAR: usize = 16 * MS_PER_CHAR;

/// What to do wrong on one connection (the default: nothing).
#[derive(Debug, Clone, Default)]
pub struct WsFault {
    /// Refuse the handshake with this status and an ElevenLabs-style error body.
    pub status: Option<u16>,
    /// Wait this long before the first audio message.
    pub first_audio_delay: Duration,
    /// Wait this long before each later audio message.
    pub message_delay: Duration,
    /// Drop the TCP connection (no close frame) after this many audio messages.
    pub disconnect_after_messages: Option<usize>,
    /// Send a text frame that is not JSON after this many audio messages.
    pub malformed_after_messages: Option<usize>,
    /// Send `{"message", "error", "code"}` and close with 1008 after this many audio
    /// messages.
    pub error_after_messages: Option<usize>,
    /// Close with 1008 when no text comes for this long while nothing is left to voice
    /// (ElevenLabs' `inactivity_timeout`, 20 s by default).
    pub inactivity_close: Option<Duration>,
}

/// One connection as the server saw it.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub voice_id: String,
    pub query: Vec<(String, String)>,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    /// The status the handshake was refused with.
    pub refused: Option<u16>,
    /// Text frames received, parsed (a frame that is not JSON is kept as a JSON string).
    pub messages: Vec<serde_json::Value>,
    pub audio_messages_sent: usize,
    /// The client sent `{"text": ""}`.
    pub end_of_stream: bool,
    /// The connection is over.
    pub ended: bool,
    /// It ended because the client went away before `{"text": ""}` (cancellation).
    pub client_left_early: bool,
}

impl Connection {
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

    /// The `text` of each message received.
    pub fn texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| {
                m.get("text")
                    .and_then(|t| t.as_str())
                    .unwrap_or("<none>")
                    .to_string()
            })
            .collect()
    }
}

struct Shared {
    connections: Mutex<Vec<Connection>>,
    faults: Mutex<VecDeque<WsFault>>,
    key: Mutex<Option<String>>,
    chars_per_message: AtomicUsize,
    batching: AtomicBool,
}

pub struct FakeElevenLabsTts {
    server: Background,
    shared: Arc<Shared>,
}

impl FakeElevenLabsTts {
    pub fn start() -> FakeElevenLabsTts {
        let shared = Arc::new(Shared {
            connections: Mutex::default(),
            faults: Mutex::default(),
            key: Mutex::default(),
            chars_per_message: AtomicUsize::new(5),
            batching: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/v1/text-to-speech/{voice_id}/stream-input", get(upgrade))
            .with_state(shared.clone());
        FakeElevenLabsTts {
            server: Background::start("fake-elevenlabs-tts", app),
            shared,
        }
    }

    /// What `tts.base_url` should be.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.server.addr())
    }

    /// Handshakes without `xi-api-key: <key>` are refused with 401 from now on.
    pub fn require_key(&self, key: &str) {
        *lock(&self.shared.key) = Some(key.to_string());
    }

    /// The next connection not yet scripted gets `fault`.
    pub fn push_fault(&self, fault: WsFault) {
        lock(&self.shared.faults).push_back(fault);
    }

    /// Characters per audio message (default 5).
    pub fn set_chars_per_message(&self, n: usize) {
        self.shared
            .chars_per_message
            .store(n.max(1), Ordering::SeqCst);
    }

    /// Whether a flush leaves a partial message for later (default: no, a flush sends all).
    pub fn set_batching(&self, on: bool) {
        self.shared.batching.store(on, Ordering::SeqCst);
    }

    pub fn connections(&self) -> Vec<Connection> {
        lock(&self.shared.connections).clone()
    }

    /// One character's audio, from the `k`-th text message of a connection.
    pub fn char_pcm(k: usize) -> Vec<i16> {
        tone(tone_hz(k), 16_000, SAMPLES_PER_CHAR)
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Path(voice_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let mut conn = Connection {
        voice_id,
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
        ..Connection::default()
    };
    let fault = lock(&shared.faults).pop_front().unwrap_or_default();
    let key = lock(&shared.key).clone();
    let refusal = match (key, fault.status) {
        (Some(key), _) if conn.header("xi-api-key") != Some(key.as_str()) => {
            Some((401, "invalid_api_key", "Invalid API key"))
        }
        (_, Some(401)) => Some((401, "invalid_api_key", "Invalid API key")),
        (_, Some(429)) => Some((429, "too_many_concurrent_requests", "Too many requests")),
        (_, Some(s)) => Some((s, "service_unavailable", "Scripted failure of the fake")),
        _ => None,
    };
    if let Some((status, code, message)) = refusal {
        conn.refused = Some(status);
        conn.ended = true;
        lock(&shared.connections).push(conn);
        return json_error(
            status,
            serde_json::json!({ "detail": { "status": code, "message": message } }),
        );
    }
    if conn.query("output_format") != Some("pcm_16000") {
        conn.refused = Some(400);
        conn.ended = true;
        lock(&shared.connections).push(conn);
        return json_error(
            400,
            serde_json::json!({ "detail": { "status": "invalid_output_format",
                "message": "this fake only speaks pcm_16000" } }),
        );
    }
    let index = {
        let mut all = lock(&shared.connections);
        all.push(conn);
        all.len() - 1
    };
    ws.on_upgrade(move |socket| async move {
        let mut session = Session {
            shared,
            index,
            fault,
            socket,
            buffered: VecDeque::new(),
            texts: 0,
            initialized: false,
        };
        let end = session.run().await;
        session.record(|c| {
            c.ended = true;
            c.client_left_early = end == End::ClientLeft && !c.end_of_stream;
        });
    })
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The stream completed, or the server ended it (fault, protocol error).
    Server,
    ClientLeft,
}

struct Session {
    shared: Arc<Shared>,
    index: usize,
    fault: WsFault,
    socket: WebSocket,
    /// Characters received and not yet voiced, with the text message each came in.
    buffered: VecDeque<(char, usize)>,
    /// Text messages received after the initial one.
    texts: usize,
    initialized: bool,
}

impl Session {
    fn record(&self, f: impl FnOnce(&mut Connection)) {
        if let Some(c) = lock(&self.shared.connections).get_mut(self.index) {
            f(c);
        }
    }

    async fn run(&mut self) -> End {
        loop {
            let received = match self.fault.inactivity_close {
                Some(limit) if self.buffered.is_empty() => {
                    match tokio::time::timeout(limit, self.socket.recv()).await {
                        Ok(r) => r,
                        Err(_) => {
                            return self
                                .refuse(
                                    "input_timeout_exceeded",
                                    "Have not received new text within the inactivity timeout.",
                                )
                                .await
                        }
                    }
                }
                _ => self.socket.recv().await,
            };
            let text = match received {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::ClientLeft,
                Some(Ok(_)) => continue,
            };
            let value = serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or(serde_json::Value::String(text.clone()));
            self.record(|c| c.messages.push(value.clone()));
            let Some(t) = value
                .get("text")
                .and_then(|t| t.as_str())
                .map(str::to_string)
            else {
                return self
                    .refuse("invalid_request", "Each message needs `text`.")
                    .await;
            };
            if !self.initialized {
                if t != " " {
                    return self
                        .refuse(
                            "invalid_request",
                            "The first message must be a single space.",
                        )
                        .await;
                }
                self.initialized = true;
                continue;
            }
            if t.is_empty() {
                self.record(|c| c.end_of_stream = true);
                if let Err(end) = self.generate(true).await {
                    return end;
                }
                let done = serde_json::json!({ "isFinal": true }).to_string();
                if self.socket.send(Message::Text(done.into())).await.is_err() {
                    return End::ClientLeft;
                }
                let _ = self.socket.send(Message::Close(None)).await;
                return End::Server;
            }
            let k = self.texts;
            self.texts += 1;
            self.buffered.extend(t.chars().map(|c| (c, k)));
            if value.get("flush").and_then(|f| f.as_bool()) == Some(true) {
                let all = !self.shared.batching.load(Ordering::SeqCst);
                if let Err(end) = self.generate(all).await {
                    return end;
                }
            }
        }
    }

    /// Voices buffered characters: whole messages, and the rest too when `all`.
    async fn generate(&mut self, all: bool) -> Result<(), End> {
        let per = self.shared.chars_per_message.load(Ordering::SeqCst);
        while self.buffered.len() >= per || (all && !self.buffered.is_empty()) {
            let sent = lock(&self.shared.connections)
                .get(self.index)
                .map_or(0, |c| c.audio_messages_sent);
            if self.fault.disconnect_after_messages == Some(sent) {
                // Dropping the socket without a close frame is the disconnect.
                return Err(End::Server);
            }
            if self.fault.malformed_after_messages == Some(sent) {
                let _ = self
                    .socket
                    .send(Message::Text("{\"audio\": \"AAA".into()))
                    .await;
            }
            if self.fault.error_after_messages == Some(sent) {
                let error = serde_json::json!({
                    "message": "Scripted failure of the fake.",
                    "error": "internal_error",
                    "code": 1008,
                });
                let _ = self
                    .socket
                    .send(Message::Text(error.to_string().into()))
                    .await;
                let _ = self
                    .socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: "internal_error".into(),
                    })))
                    .await;
                return Err(End::Server);
            }
            let delay = if sent == 0 {
                self.fault.first_audio_delay
            } else {
                self.fault.message_delay
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let n = per.min(self.buffered.len());
            let chars: Vec<(char, usize)> = self.buffered.drain(..n).collect();
            let message = audio_message(&chars);
            if self
                .socket
                .send(Message::Text(message.into()))
                .await
                .is_err()
            {
                return Err(End::ClientLeft);
            }
            self.record(|c| c.audio_messages_sent += 1);
        }
        Ok(())
    }

    /// Sends an error message and closes with 1008 (policy violation), as ElevenLabs does
    /// for a bad request.
    async fn refuse(&mut self, error: &str, message: &str) -> End {
        let body = serde_json::json!({ "message": message, "error": error, "code": 1008 });
        let _ = self
            .socket
            .send(Message::Text(body.to_string().into()))
            .await;
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: error.to_string().into(),
            })))
            .await;
        End::Server
    }
}

/// An audio message voicing `chars` (each with the text message it came in).
fn audio_message(chars: &[(char, usize)]) -> String {
    let mut pcm = Vec::with_capacity(chars.len() * SAMPLES_PER_CHAR);
    for (_, k) in chars {
        pcm.extend(FakeElevenLabsTts::char_pcm(*k));
    }
    let alignment = serde_json::json!({
        "chars": chars.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>(),
        "charStartTimesMs": (0..chars.len()).map(|i| i * MS_PER_CHAR).collect::<Vec<_>>(),
        "charDurationsMs": vec![MS_PER_CHAR; chars.len()],
    });
    serde_json::json!({
        "audio": base64::engine::general_purpose::STANDARD.encode(le_bytes(&pcm)),
        "isFinal": null,
        "normalizedAlignment": alignment,
        "alignment": alignment,
    })
    .to_string()
}
