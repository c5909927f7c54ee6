//! Deepgram live streaming: one WebSocket to `/v1/listen` per call, the caller's audio sent
//! as binary linear16 frames, `Results` / `UtteranceEnd` JSON messages read back.
//!
//! The session task owns the socket. It reconnects (with backoff) when Deepgram drops the
//! connection mid-call, dropping the audio of the outage; it keeps an idle connection open
//! with `KeepAlive` (Deepgram closes one that gets no audio for about 10 s), and ends it
//! with `CloseStream`, also when the session is dropped (best effort).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{language_code, SttEvent, SttInput, SttSession, INPUT_QUEUE};
use crate::config::agent::{Secret, SttConfig};
use crate::providers::{body_excerpt, error_chain, AbortOnDrop, ProviderError, Retry, Ttfb};

const PROVIDER: &str = "deepgram";
pub(crate) const DEFAULT_BASE: &str = "wss://api.deepgram.com";
const DEFAULT_MODEL: &str = "nova-3";
/// Audio is sent in frames of at least this many samples (50 ms): fewer, larger frames than
/// the agent's 20 ms ones, at little cost in latency (SpeechEnd flushes at once).
const COALESCE: usize = 800;
/// Audio waits at most this long to be coalesced (when the input stalls).
const COALESCE_WAIT: Duration = Duration::from_millis(100);
/// Deepgram closes a stream that gets no audio for about 10 s.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Further connection attempts when a session starts.
const CONNECT_RETRIES: u32 = 2;
/// Reconnection attempts after Deepgram dropped a live session.
const RECONNECTS: u32 = 3;
/// A connection that lasted this long counts as healthy: its loss starts a fresh series of
/// reconnection attempts.
const HEALTHY: Duration = Duration::from_secs(10);
/// How long a closing session waits for Deepgram's last results.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

const KEEPALIVE_MSG: &str = r#"{"type":"KeepAlive"}"#;
const CLOSE_STREAM_MSG: &str = r#"{"type":"CloseStream"}"#;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A configured Deepgram endpoint.
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    /// `ws(s)://host[:port]`, no trailing slash.
    base: Arc<str>,
    key: Option<Secret>,
    model: Arc<str>,
    endpointing_ms: u32,
    timeout: Duration,
    keepalive: Duration,
    ttfb: Ttfb,
}

impl DeepgramStt {
    pub fn new(config: &SttConfig, ttfb: Ttfb) -> DeepgramStt {
        let base = config.base_url.as_deref().unwrap_or(DEFAULT_BASE);
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_string()
        };
        DeepgramStt {
            base: base.trim_end_matches('/').into(),
            key: config.api_key.clone().filter(|k| !k.expose().is_empty()),
            model: config.model.as_deref().unwrap_or(DEFAULT_MODEL).into(),
            endpointing_ms: config.endpointing_ms,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            keepalive: KEEPALIVE,
            ttfb,
        }
    }

    /// Sends `KeepAlive` after `every` without audio instead of 5 s (tests).
    #[doc(hidden)]
    pub fn with_keepalive(mut self, every: Duration) -> DeepgramStt {
        self.keepalive = every;
        self
    }

    /// The streaming URL for a session in `language` (`auto`: Deepgram's multilingual mode).
    pub fn url(&self, language: &str) -> String {
        let language = match language {
            "auto" | "" => "multi",
            other => other,
        };
        format!(
            "{}/v1/listen?model={}&encoding=linear16&sample_rate=16000&channels=1\
             &interim_results=true&endpointing={}&utterance_end_ms=1000&vad_events=true\
             &smart_format=true&language={}",
            self.base,
            query_escape(&self.model),
            self.endpointing_ms,
            query_escape(language),
        )
    }

    /// Opens a session: connects in the background and streams until dropped.
    pub fn start(&self, language: &str) -> SttSession {
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (events_tx, events) = mpsc::channel(64);
        let session = Session {
            url: self.url(language),
            fixed_language: language_code(language),
            stt: self.clone(),
            input: input_rx,
            events: events_tx,
            speech_end_at: None,
        };
        let task = tokio::spawn(session.run());
        SttSession {
            input,
            events,
            _task: AbortOnDrop(task),
            dropped: 0,
        }
    }

    async fn connect(&self, url: &str) -> Result<Ws, ProviderError> {
        let connect_error = |reason: String| ProviderError::Connect {
            provider: PROVIDER,
            url: url.to_string(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_error(error_chain(&e)))?;
        if let Some(key) = &self.key {
            let value = HeaderValue::from_str(&format!("Token {}", key.expose()))
                .map_err(|_| connect_error("the API key is not a valid header value".into()))?;
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
        match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => Err(ProviderError::Timeout {
                provider: PROVIDER,
                ms: self.timeout.as_millis() as u64,
            }),
            Ok(Ok((ws, _response))) => Ok(ws),
            // The upgrade was refused with a status (401 for a bad key, 400 for a bad option):
            // Deepgram explains why in the body.
            Ok(Err(WsError::Http(response))) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                Err(ProviderError::Status {
                    provider: PROVIDER,
                    status: response.status().as_u16(),
                    body: body_excerpt(&body, 300),
                })
            }
            Ok(Err(e)) => Err(connect_error(error_chain(&e))),
        }
    }
}

/// Percent-encodes what is not unreserved in a query value.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The socket, closed with `CloseStream` if the session task is dropped (the session was
/// dropped, which aborts the task) while it is open.
struct Conn(Option<Ws>);

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(mut ws) = self.0.take() else { return };
        // The task is being torn down: finish the socket on a task of its own. Without a
        // runtime (shutting down) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    ws.send(Message::text(CLOSE_STREAM_MSG)).await?;
                    ws.close(None).await
                })
                .await;
            });
        }
    }
}

/// How a connection's pump ended.
enum Ended {
    /// The agent closed the input: close the stream cleanly.
    InputClosed,
    /// Nobody reads the events any more.
    ConsumerGone,
    /// Deepgram went away; `heard`: it had sent something on this connection.
    Lost { reason: String, heard: bool },
}

struct Session {
    stt: DeepgramStt,
    url: String,
    /// The session's language when one was asked for (Deepgram then names none).
    fixed_language: Option<String>,
    input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    /// When the VAD last heard speech end, for TTFB.
    speech_end_at: Option<Instant>,
}

impl Session {
    async fn run(mut self) {
        let mut conn = match self.connect(CONNECT_RETRIES).await {
            Ok(ws) => Conn(Some(ws)),
            Err(e) => {
                let _ = self.events.send(SttEvent::Error(e)).await;
                return;
            }
        };
        // Reconnection attempts in the current outage.
        let mut attempts = 0u32;
        loop {
            let connected = Instant::now();
            let Some(ws) = conn.0.as_mut() else { return };
            match self.pump(ws).await {
                Ended::ConsumerGone => return,
                Ended::InputClosed => {
                    let ws = conn.0.take();
                    if let Some(ws) = ws {
                        self.close(ws).await;
                    }
                    return;
                }
                Ended::Lost { reason, heard } => {
                    conn.0 = None;
                    if heard || connected.elapsed() >= HEALTHY {
                        attempts = 0;
                    }
                    tracing::warn!(%reason, "Deepgram connection lost; reconnecting");
                    match self.reconnect(&mut attempts, reason).await {
                        Ok(ws) => conn.0 = Some(ws),
                        Err(e) => {
                            let _ = self.events.send(SttEvent::Error(e)).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Connects, retrying connection failures and timeouts (not refusals like 401).
    async fn connect(&self, retries: u32) -> Result<Ws, ProviderError> {
        let retry = Retry::new(retries);
        let mut attempt = 0;
        loop {
            match self.stt.connect(&self.url).await {
                Ok(ws) => return Ok(ws),
                Err(e) if e.retryable() && attempt < retry.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Deepgram connection failed; retrying");
                    tokio::time::sleep(retry.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reconnects after a loss, dropping the audio that arrives meanwhile (it would reach
    /// Deepgram late, and the conversation has moved on).
    async fn reconnect(&mut self, attempts: &mut u32, reason: String) -> Result<Ws, ProviderError> {
        let retry = Retry::new(RECONNECTS);
        let mut last = ProviderError::Disconnected {
            provider: PROVIDER,
            reason,
        };
        while *attempts < RECONNECTS {
            *attempts += 1;
            tokio::time::sleep(retry.delay(*attempts)).await;
            match self.stt.connect(&self.url).await {
                Ok(ws) => {
                    while self.input.try_recv().is_ok() {}
                    self.speech_end_at = None;
                    return Ok(ws);
                }
                Err(e) if !e.retryable() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Moves audio out and results in until the input closes or the connection is lost.
    async fn pump(&mut self, ws: &mut Ws) -> Ended {
        let mut pending: Vec<i16> = Vec::with_capacity(COALESCE * 2);
        // When pending audio goes out even if no more arrives.
        let mut flush_at: Option<tokio::time::Instant> = None;
        let mut last_sent = tokio::time::Instant::now();
        let mut heard = false;
        let lost = |e: WsError, heard| Ended::Lost {
            reason: error_chain(&e),
            heard,
        };
        loop {
            let keepalive_at = last_sent + self.stt.keepalive;
            tokio::select! {
                input = self.input.recv() => {
                    let flush = match input {
                        None => {
                            if let Err(e) = send_audio(ws, &mut pending).await {
                                return lost(e, heard);
                            }
                            return Ended::InputClosed;
                        }
                        Some(SttInput::Audio(pcm)) => {
                            if pending.is_empty() {
                                flush_at = Some(tokio::time::Instant::now() + COALESCE_WAIT);
                            }
                            pending.extend_from_slice(&pcm);
                            pending.len() >= COALESCE
                        }
                        Some(SttInput::SpeechStart) => false,
                        Some(SttInput::SpeechEnd) => {
                            self.speech_end_at = Some(Instant::now());
                            true
                        }
                    };
                    if flush && !pending.is_empty() {
                        flush_at = None;
                        if let Err(e) = send_audio(ws, &mut pending).await {
                            return lost(e, heard);
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                }
                _ = sleep_until_some(flush_at) => {
                    flush_at = None;
                    if let Err(e) = send_audio(ws, &mut pending).await {
                        return lost(e, heard);
                    }
                    last_sent = tokio::time::Instant::now();
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        heard = true;
                        if !self.handle(text.as_str()).await {
                            return Ended::ConsumerGone;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map_or_else(
                            || "closed by the server".to_string(),
                            |f| format!("closed by the server: {} {}", f.code, f.reason),
                        );
                        return Ended::Lost { reason, heard };
                    }
                    Some(Ok(_)) => {} // pings are answered by tungstenite
                    Some(Err(e)) => return lost(e, heard),
                    None => {
                        return Ended::Lost {
                            reason: "connection closed".into(),
                            heard,
                        }
                    }
                },
                _ = tokio::time::sleep_until(keepalive_at) => {
                    if let Err(e) = ws.send(Message::text(KEEPALIVE_MSG)).await {
                        return lost(e, heard);
                    }
                    last_sent = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Ends the stream: `CloseStream`, then Deepgram's last results until it closes.
    async fn close(&mut self, mut ws: Ws) {
        if ws.send(Message::text(CLOSE_STREAM_MSG)).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    if !self.handle(text.as_str()).await {
                        return;
                    }
                }
            }
        })
        .await;
    }

    /// Turns one server message into events; false when nobody reads them any more.
    async fn handle(&mut self, text: &str) -> bool {
        let event = match parse(text, self.fixed_language.as_deref()) {
            Ok(Some(event)) => event,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a Deepgram message");
                return true;
            }
        };
        if matches!(event, SttEvent::Final { .. }) {
            if let Some(at) = self.speech_end_at.take() {
                self.stt.ttfb.observe(at.elapsed());
            }
        }
        self.events.send(event).await.is_ok()
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send_audio(ws: &mut Ws, pending: &mut Vec<i16>) -> Result<(), WsError> {
    if pending.is_empty() {
        return Ok(());
    }
    let bytes: Vec<u8> = pending.iter().flat_map(|s| s.to_le_bytes()).collect();
    pending.clear();
    ws.send(Message::binary(bytes)).await
}

#[derive(Debug, Deserialize)]
struct Results {
    #[serde(default)]
    channel: Channel,
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
    #[serde(default)]
    detected_language: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    /// With `language=multi`: the languages of the transcript, main one first.
    #[serde(default)]
    languages: Vec<String>,
}

/// The event a server message means, if any. `fixed`: the language the session asked for.
fn parse(text: &str, fixed: Option<&str>) -> Result<Option<SttEvent>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    // The type decides the shape (SpeechStarted's `channel` is a list of indexes).
    match value.get("type").and_then(|t| t.as_str()) {
        Some("Results") => {}
        Some("UtteranceEnd") => return Ok(Some(SttEvent::UtteranceEnd)),
        _ => return Ok(None), // SpeechStarted, Metadata, and types added later
    }
    let results: Results =
        serde_json::from_value(value).map_err(|e| format!("malformed Results: {e}"))?;
    let Some(best) = results.channel.alternatives.first() else {
        return Ok(None);
    };
    let text = best.transcript.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if !results.is_final {
        return Ok(Some(SttEvent::Interim { text: text.into() }));
    }
    let language = best
        .languages
        .first()
        .or(results.channel.detected_language.as_ref())
        .and_then(|l| language_code(l))
        .or_else(|| fixed.map(str::to_string));
    Ok(Some(SttEvent::Final {
        text: text.into(),
        speech_final: results.speech_final,
        language,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(transcript: &str, is_final: bool, extra: &str) -> String {
        format!(
            r#"{{"type":"Results","channel_index":[0,1],"duration":1.2,"start":0.0,
               "is_final":{is_final},"speech_final":{is_final},
               "channel":{{"alternatives":[{{"transcript":"{transcript}","confidence":0.98,
               "words":[]{extra}}}]}},"metadata":{{"request_id":"r"}}}}"#
        )
    }

    #[test]
    fn url_carries_the_options() {
        let config = SttConfig {
            base_url: Some("http://127.0.0.1:1234/".into()),
            model: Some("nova-2".into()),
            endpointing_ms: 250,
            ..SttConfig::default()
        };
        let url = DeepgramStt::new(&config, Ttfb::none()).url("auto");
        assert!(
            url.starts_with("ws://127.0.0.1:1234/v1/listen?model=nova-2&"),
            "{url}"
        );
        for p in [
            "encoding=linear16",
            "sample_rate=16000",
            "channels=1",
            "interim_results=true",
            "endpointing=250",
            "utterance_end_ms=1000",
            "vad_events=true",
            "smart_format=true",
            "language=multi",
        ] {
            assert!(url.contains(p), "{p} missing from {url}");
        }
        let default = DeepgramStt::new(&SttConfig::default(), Ttfb::none()).url("es");
        assert!(default.starts_with("wss://api.deepgram.com/v1/listen?model=nova-3&"));
        assert!(default.ends_with("language=es"));
    }

    #[test]
    fn messages_map_to_events() {
        assert_eq!(
            parse(&results("hola", false, ""), None),
            Ok(Some(SttEvent::Interim {
                text: "hola".into()
            }))
        );
        assert_eq!(
            parse(
                &results("hola qué tal", true, r#","languages":["es"]"#),
                None
            ),
            Ok(Some(SttEvent::Final {
                text: "hola qué tal".into(),
                speech_final: true,
                language: Some("es".into())
            }))
        );
        assert_eq!(parse(&results("", true, ""), None), Ok(None));
        assert_eq!(
            parse(
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.1}"#,
                None
            ),
            Ok(Some(SttEvent::UtteranceEnd))
        );
        assert_eq!(
            parse(
                r#"{"type":"SpeechStarted","channel":[0],"timestamp":0.3}"#,
                None
            ),
            Ok(None)
        );
        assert_eq!(
            parse(r#"{"type":"Metadata","request_id":"x"}"#, None),
            Ok(None)
        );
        assert_eq!(parse(r#"{"type":"SomethingNew"}"#, None), Ok(None));
        assert!(parse("not json", None).is_err());
    }

    #[test]
    fn language_from_detected_language_or_the_session() {
        let detected = r#"{"type":"Results","is_final":true,"speech_final":false,
            "channel":{"detected_language":"pt-BR","alternatives":[{"transcript":"olá"}]}}"#;
        assert_eq!(
            parse(detected, None),
            Ok(Some(SttEvent::Final {
                text: "olá".into(),
                speech_final: false,
                language: Some("pt".into())
            }))
        );
        let plain = results("hello", true, "");
        assert!(matches!(
            parse(&plain, Some("en")),
            Ok(Some(SttEvent::Final { language: Some(l), .. })) if l == "en"
        ));
        assert!(matches!(
            parse(&plain, None),
            Ok(Some(SttEvent::Final { language: None, .. }))
        ));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("nova-3"), "nova-3");
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
