//! ElevenLabs WebSocket `stream-input`: one connection per turn, opened as the turn opens
//! (so the handshake overlaps the LLM's first sentence).
//!
//! We send `{"text": " "}` to start, `{"text": "<sentence> ", "flush": true}` per sentence,
//! and `{"text": ""}` when the turn is finished. The server sends `{"audio": <base64
//! pcm_16000>, "alignment": {"chars": […], …}, …}` messages and finally `{"isFinal": true}`;
//! the alignment tells which sentence the audio belongs to (see `alignment.rs`).
//!
//! A connection that fails before any audio of the pending sentences was yielded is opened
//! again and they are sent again; one the server closes while nothing is pending (its
//! inactivity limit, while the LLM thinks) is reopened when the next sentence comes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::alignment::{Step, Tracker};
use super::turn;
use super::{TtsEvent, TtsTurn};
use crate::config::agent::TtsConfig;
use crate::providers::audio::StreamResampler;
use crate::providers::error_chain;
use crate::providers::{body_excerpt, ProviderError, Retry, Ttfb};

const PROVIDER: &str = "elevenlabs";
pub(crate) const VENDOR_URL: &str = "wss://api.elevenlabs.io";
const DEFAULT_MODEL: &str = "eleven_flash_v2_5";
/// A premade voice ("George"); premade voices speak every language of the multilingual
/// models.
const DEFAULT_VOICE: &str = "JBFqnCBsd6RMkjVDRZzb";
/// `output_format=pcm_16000`: the agent's rate.
const RATE: u32 = 16_000;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `ws(s)://host[/prefix]`.
    base: String,
    model: String,
    api_key: Option<String>,
    config: TtsConfig,
    timeout: Duration,
    ttfb: Ttfb,
}

impl ElevenLabsTts {
    pub fn new(config: &TtsConfig, ttfb: Ttfb) -> ElevenLabsTts {
        ElevenLabsTts {
            inner: Arc::new(Inner {
                base: websocket_base(&turn::base_url(config, VENDOR_URL)),
                model: config
                    .model
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
                api_key: config.api_key.as_ref().map(|k| k.expose().to_string()),
                config: config.clone(),
                timeout: Duration::from_millis(config.timeout_ms),
                ttfb,
            }),
        }
    }

    pub fn open_turn(&self, language: &str) -> TtsTurn {
        let voice = turn::voice_for(&self.inner.config, language, |_| DEFAULT_VOICE);
        let url = stream_url(&self.inner.base, &voice, &self.inner.model, language);
        let inner = self.inner.clone();
        turn::spawn_turn(move |sentences, tx| async move {
            let mut session = Session {
                inner,
                url,
                conn: None,
                tracker: Tracker::new(),
                resampler: None,
                closing: false,
                retries: 0,
                last_heard: Instant::now(),
                tx,
            };
            if let Err(e) = session.run(sentences).await {
                let _ = session.tx.send(TtsEvent::Error(e)).await;
            }
        })
    }
}

/// The base URL as a WebSocket URL (`http` → `ws`, `https` → `wss`).
fn websocket_base(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    }
}

fn stream_url(base: &str, voice: &str, model: &str, language: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(base) else {
        // Unparseable: the handshake fails with a Connect error naming it.
        return base.to_string();
    };
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty()
            .extend(["v1", "text-to-speech", voice, "stream-input"]);
    }
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("model_id", model)
            .append_pair("output_format", "pcm_16000")
            .append_pair("sync_alignment", "true");
        let lang = turn::primary_language(language);
        if !lang.is_empty() && lang != "en" {
            q.append_pair("language_code", &lang);
        }
    }
    url.into()
}

/// A server message (the fields we use; others are ignored).
#[derive(Debug, Deserialize)]
struct ServerMessage {
    audio: Option<String>,
    #[serde(rename = "isFinal")]
    is_final: Option<bool>,
    alignment: Option<Alignment>,
    #[serde(rename = "normalizedAlignment")]
    normalized_alignment: Option<Alignment>,
    error: Option<serde_json::Value>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Alignment {
    #[serde(default)]
    chars: Vec<String>,
}

/// One turn's connection and what has been said on it.
struct Session {
    inner: Arc<Inner>,
    url: String,
    conn: Option<Ws>,
    tracker: Tracker,
    /// Joins audio bytes split across messages (16 kHz already).
    resampler: Option<StreamResampler>,
    /// The agent finished the turn: `{"text": ""}` is (or will be) sent.
    closing: bool,
    /// Retries since audio was last yielded.
    retries: u32,
    /// When the server last sent something, or a sentence was sent with nothing pending.
    last_heard: Instant,
    tx: mpsc::Sender<TtsEvent>,
}

/// How a connection ended or failed.
enum Outcome {
    Continue,
    /// The turn is complete.
    Finished,
}

impl Session {
    async fn run(
        &mut self,
        mut sentences: mpsc::UnboundedReceiver<(usize, String)>,
    ) -> Result<(), ProviderError> {
        let retry = Retry::new(2);
        if let Err(e) = self.open().await {
            self.recover(e, retry).await?;
        }
        loop {
            let deadline = self
                .tracker
                .has_pending()
                .then(|| self.last_heard + self.inner.timeout);
            let step = tokio::select! {
                s = sentences.recv(), if !self.closing => match s {
                    Some((index, text)) => self.sentence(index, text.trim()).await,
                    None => self.finish().await,
                },
                frame = next_frame(&mut self.conn) => self.frame(frame).await,
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    Err(self.timeout_error())
                }
            };
            match step {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Finished) => return Ok(()),
                Err(e) => {
                    self.conn = None;
                    self.recover(e, retry).await?;
                }
            }
            if self.closing && self.conn.is_none() && !self.tracker.has_pending() {
                return Ok(());
            }
        }
    }

    /// After a failure: opens a new connection and sends the pending sentences again, if
    /// that is safe (transient failure, none of their audio yielded) and retries remain.
    async fn recover(
        &mut self,
        mut error: ProviderError,
        retry: Retry,
    ) -> Result<(), ProviderError> {
        loop {
            if !error.retryable() || self.tracker.any_emitted() || self.retries >= retry.retries {
                return Err(error);
            }
            self.retries += 1;
            tracing::debug!(provider = PROVIDER, attempt = self.retries, %error, "reconnecting");
            tokio::time::sleep(retry.delay(self.retries)).await;
            match self.open().await {
                Ok(()) => return Ok(()),
                Err(e) => error = e,
            }
        }
    }

    /// Connects, initializes the stream, and sends what is pending (again).
    async fn open(&mut self) -> Result<(), ProviderError> {
        self.conn = None;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| self.connect_error(&e))?;
        if let Some(key) = &self.inner.api_key {
            let value = HeaderValue::from_str(key).map_err(|_| ProviderError::Connect {
                provider: PROVIDER,
                url: self.url.clone(),
                reason: "the API key is not a valid header value".into(),
            })?;
            request.headers_mut().insert("xi-api-key", value);
        }
        let ws = match timeout(
            self.inner.timeout,
            tokio_tungstenite::connect_async(request),
        )
        .await
        {
            Err(_) => return Err(self.timeout_error()),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                return Err(ProviderError::Status {
                    provider: PROVIDER,
                    status: response.status().as_u16(),
                    body: body_excerpt(&body, 300),
                });
            }
            Ok(Err(e)) => return Err(self.connect_error(&e)),
            Ok(Ok((ws, _))) => ws,
        };
        self.conn = Some(ws);
        self.resampler = None;
        let now = Instant::now();
        self.last_heard = now;
        let texts = self.tracker.restart(now.into_std());
        self.send(serde_json::json!({ "text": " " })).await?;
        for text in texts.iter().filter(|t| !t.is_empty()) {
            self.send(sentence_message(text)).await?;
        }
        if self.closing {
            self.send(serde_json::json!({ "text": "" })).await?;
        }
        Ok(())
    }

    /// The agent's next sentence.
    async fn sentence(&mut self, index: usize, text: &str) -> Result<Outcome, ProviderError> {
        let now = Instant::now();
        let idle = !self.tracker.has_pending();
        if idle {
            self.last_heard = now;
        }
        // The trailing space keeps sentences apart in the vendor's buffer; an empty
        // sentence is not sent at all.
        let text = if text.is_empty() {
            String::new()
        } else {
            format!("{text} ")
        };
        let steps = self.tracker.sent(index, &text, now.into_std());
        self.emit(steps).await?;
        if text.is_empty() {
            return Ok(Outcome::Continue);
        }
        if self.conn.is_none() {
            // Closed while idle: a fresh connection sends the pending sentences, this one
            // included.
            self.open().await?;
            return Ok(Outcome::Continue);
        }
        if let Err(e) = self.send(sentence_message(&text)).await {
            if !idle {
                return Err(e);
            }
            // The server closed the idle connection as we spoke (its close frame not yet
            // read): nothing is lost, a fresh connection sends this sentence.
            tracing::debug!(provider = PROVIDER, error = %e, "idle connection gone");
            self.open().await?;
        }
        Ok(Outcome::Continue)
    }

    /// No more sentences: ask the server to finish.
    async fn finish(&mut self) -> Result<Outcome, ProviderError> {
        self.closing = true;
        if self.conn.is_some() {
            if let Err(e) = self.send(serde_json::json!({ "text": "" })).await {
                if self.tracker.has_pending() {
                    return Err(e);
                }
                // Gone while idle: there is nothing left to hear.
                self.conn = None;
                return Ok(Outcome::Finished);
            }
        }
        Ok(Outcome::Continue)
    }

    async fn frame(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<Outcome, ProviderError> {
        match frame {
            Some(Ok(Message::Text(text))) => self.message(&text).await,
            Some(Ok(Message::Binary(_))) => Err(ProviderError::Protocol {
                provider: PROVIDER,
                what: "message",
                detail: "a binary frame (JSON text expected)".into(),
            }),
            Some(Ok(Message::Close(close))) => {
                let reason = close.as_ref().map(|c| (c.code, c.reason.to_string()));
                self.closed(reason)
            }
            Some(Ok(_)) => Ok(Outcome::Continue),
            Some(Err(e)) => {
                if self.tracker.has_pending() {
                    Err(ProviderError::Disconnected {
                        provider: PROVIDER,
                        reason: error_chain(&e),
                    })
                } else {
                    self.closed(None)
                }
            }
            None => self.closed(None),
        }
    }

    /// The server closed the connection (`code` from its close frame, if any).
    fn closed(&mut self, close: Option<(CloseCode, String)>) -> Result<Outcome, ProviderError> {
        self.conn = None;
        if !self.tracker.has_pending() {
            // Idle (or finished): a later sentence opens a new connection.
            return Ok(if self.closing {
                Outcome::Finished
            } else {
                Outcome::Continue
            });
        }
        let reason = match close {
            Some((code, reason)) if code != CloseCode::Normal => {
                format!("closed with code {}: {reason}", u16::from(code))
            }
            _ => "closed before the audio was complete".into(),
        };
        Err(ProviderError::Disconnected {
            provider: PROVIDER,
            reason,
        })
    }

    async fn message(&mut self, text: &str) -> Result<Outcome, ProviderError> {
        let msg: ServerMessage =
            serde_json::from_str(text).map_err(|e| ProviderError::Protocol {
                provider: PROVIDER,
                what: "message",
                detail: format!("{e}: {}", body_excerpt(text, 120)),
            })?;
        if let Some(error) = &msg.error {
            let kind = match error {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let reason = format!(
                "server error {kind}: {}",
                body_excerpt(msg.message.as_deref().unwrap_or(""), 200)
            );
            if !self.tracker.has_pending() {
                // Nothing is lost (its inactivity limit, typically): the connection is
                // over, and the next sentence opens another, which reports a lasting
                // problem with that sentence pending.
                tracing::debug!(provider = PROVIDER, %reason, "idle connection ended");
                return self.closed(None);
            }
            if kind == INACTIVITY_CLOSE {
                // The server gave up on an idle connection while our sentence was on its
                // way (its error crossed our text). Every sentence is flushed as it is sent,
                // so all before the idle time were spoken and heard: what is pending arrived
                // too late, and a fresh connection says it.
                tracing::debug!(provider = PROVIDER, %reason, "idle connection ended as we spoke");
                self.open().await?;
                return Ok(Outcome::Continue);
            }
            return Err(ProviderError::Disconnected {
                provider: PROVIDER,
                reason,
            });
        }
        self.last_heard = Instant::now();
        let mut pcm = Vec::new();
        if let Some(audio) = msg.audio.as_deref().filter(|a| !a.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(audio)
                .map_err(|e| ProviderError::Protocol {
                    provider: PROVIDER,
                    what: "audio",
                    detail: format!("bad base64: {e}"),
                })?;
            let r = match self.resampler.as_mut() {
                Some(r) => r,
                None => self
                    .resampler
                    .insert(
                        StreamResampler::new(RATE).map_err(|reason| ProviderError::Local {
                            provider: PROVIDER,
                            reason,
                        })?,
                    ),
            };
            r.push_le_bytes(&bytes, &mut pcm);
        }
        // The original text's alignment counts like what we sent; the normalized one
        // (numbers spelled out) only when it is all there is.
        let chars = msg
            .alignment
            .as_ref()
            .or(msg.normalized_alignment.as_ref())
            .map(|a| a.chars.as_slice());
        let steps = self.tracker.message(pcm, chars, self.last_heard.into_std());
        self.emit(steps).await?;
        // Time spent waiting for the agent to take the audio is not the server's silence.
        self.last_heard = Instant::now();
        if msg.is_final == Some(true) {
            let steps = self.tracker.complete_all();
            self.emit(steps).await?;
            if self.closing {
                if let Some(mut ws) = self.conn.take() {
                    // Politely, but the turn is complete whatever the server does.
                    let _ = timeout(Duration::from_millis(500), ws.close(None)).await;
                }
                return Ok(Outcome::Finished);
            }
        }
        Ok(Outcome::Continue)
    }

    /// Yields steps as events; TTFB is observed at each sentence's first audio.
    async fn emit(&mut self, steps: Vec<Step>) -> Result<(), ProviderError> {
        for step in steps {
            let event = match step {
                Step::Audio {
                    sentence,
                    pcm,
                    first_after,
                } => {
                    if let Some(waited) = first_after {
                        self.inner.ttfb.observe(waited);
                    }
                    self.retries = 0;
                    TtsEvent::Audio { sentence, pcm }
                }
                Step::Done { sentence } => TtsEvent::SentenceDone { sentence },
            };
            if self.tx.send(event).await.is_err() {
                return Err(ProviderError::Local {
                    provider: PROVIDER,
                    reason: "the turn was dropped".into(),
                });
            }
        }
        Ok(())
    }

    async fn send(&mut self, json: serde_json::Value) -> Result<(), ProviderError> {
        let Some(ws) = self.conn.as_mut() else {
            return Err(ProviderError::Disconnected {
                provider: PROVIDER,
                reason: "not connected".into(),
            });
        };
        let sent = timeout(self.inner.timeout, ws.send(Message::text(json.to_string()))).await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProviderError::Disconnected {
                provider: PROVIDER,
                reason: error_chain(&e),
            }),
            Err(_) => Err(self.timeout_error()),
        }
    }

    fn timeout_error(&self) -> ProviderError {
        ProviderError::Timeout {
            provider: PROVIDER,
            ms: self.inner.timeout.as_millis() as u64,
        }
    }

    fn connect_error(&self, e: &tungstenite::Error) -> ProviderError {
        ProviderError::Connect {
            provider: PROVIDER,
            url: self.url.clone(),
            reason: error_chain(e),
        }
    }
}

/// A sentence (as sent, with its trailing space), to be voiced now.
/// The error the vendor closes an idle connection with (no text within its inactivity
/// timeout).
const INACTIVITY_CLOSE: &str = "input_timeout_exceeded";

fn sentence_message(text: &str) -> serde_json::Value {
    serde_json::json!({ "text": text, "flush": true })
}

/// The next frame of the connection; never resolves without one.
async fn next_frame(conn: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match conn.as_mut() {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_voice_model_format_and_language() {
        assert_eq!(
            stream_url(VENDOR_URL, "abc", "eleven_flash_v2_5", "en"),
            "wss://api.elevenlabs.io/v1/text-to-speech/abc/stream-input?model_id=\
             eleven_flash_v2_5&output_format=pcm_16000&sync_alignment=true"
        );
        assert_eq!(
            stream_url("ws://127.0.0.1:9/", "v", "m", "es"),
            "ws://127.0.0.1:9/v1/text-to-speech/v/stream-input?model_id=m\
             &output_format=pcm_16000&sync_alignment=true&language_code=es"
        );
    }

    #[test]
    fn http_base_urls_become_websocket_urls() {
        assert_eq!(websocket_base("http://127.0.0.1:1"), "ws://127.0.0.1:1");
        assert_eq!(
            websocket_base("https://proxy.test/el"),
            "wss://proxy.test/el"
        );
        assert_eq!(
            websocket_base("wss://api.elevenlabs.io"),
            "wss://api.elevenlabs.io"
        );
    }
}
