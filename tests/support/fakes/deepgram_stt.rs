//! A fake Deepgram live-streaming server (`GET /v1/listen` upgraded to a WebSocket).
//!
//! It answers the audio it receives, deterministically, in audio time: the audio is cut into
//! 20 ms frames and a frame whose mean absolute amplitude reaches a threshold is speech.
//! Speech start sends `SpeechStarted` (with `vad_events=true`); after `interim_after_ms` of
//! speech an interim `Results` (`is_final: false`, the first half of the transcript);
//! after `endpointing` ms of silence (the query's value) the final `Results`
//! (`is_final` and `speech_final` true); after `utterance_end_ms` of silence an
//! `UtteranceEnd`. `CloseStream` finalizes, sends `Metadata` and closes, as Deepgram does.
//!
//! Transcripts are scripted per utterance ([`FakeDeepgram::push_transcript`]), each with a
//! language reported in `languages` when the session asked for `language=multi`.
//! Connections are scripted too ([`DgConnection`]): refuse the upgrade with a status, drop
//! the connection after some audio, or send a frame that is not JSON first. Every
//! connection is recorded: path, query, headers, audio bytes and text messages received.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

use super::openai_llm::{serve, ServerThread};

/// What one utterance is transcribed as.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// ISO 639-1 code reported with `language=multi` (`None`: not reported).
    pub language: Option<String>,
}

impl Transcript {
    pub fn new(text: &str, language: Option<&str>) -> Transcript {
        Transcript {
            text: text.into(),
            language: language.map(str::to_string),
        }
    }
}

/// How one connection behaves.
#[derive(Debug, Clone, Default)]
pub struct DgConnection {
    /// Refuse the upgrade with this status and body.
    pub reject: Option<(u16, String)>,
    /// Drop the TCP connection (no close frame) once this many audio bytes arrived.
    pub drop_after_audio_bytes: Option<usize>,
    /// Send a text frame that is not JSON right after the upgrade.
    pub malformed_first: bool,
}

impl DgConnection {
    pub fn normal() -> DgConnection {
        DgConnection::default()
    }

    /// Refuses with 401 and Deepgram's error body for a bad key.
    pub fn unauthorized() -> DgConnection {
        DgConnection::reject(
            401,
            r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"fake"}"#,
        )
    }

    pub fn reject(status: u16, body: &str) -> DgConnection {
        DgConnection {
            reject: Some((status, body.into())),
            ..DgConnection::default()
        }
    }

    pub fn drop_after_audio(bytes: usize) -> DgConnection {
        DgConnection {
            drop_after_audio_bytes: Some(bytes),
            ..DgConnection::default()
        }
    }

    pub fn malformed_first() -> DgConnection {
        DgConnection {
            malformed_first: true,
            ..DgConnection::default()
        }
    }
}

/// How the fake tells speech from silence.
#[derive(Debug, Clone, Copy)]
pub struct DgOptions {
    /// Mean absolute amplitude of a 20 ms frame from which it is speech.
    pub threshold: i32,
    /// Speech before the interim result.
    pub interim_after_ms: u32,
}

impl Default for DgOptions {
    fn default() -> Self {
        DgOptions {
            threshold: 500,
            interim_after_ms: 200,
        }
    }
}

/// One connection as the fake saw it.
#[derive(Debug, Clone, Default)]
pub struct DgSession {
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The upgrade was refused (scripted).
    pub rejected: bool,
    pub audio_bytes: usize,
    pub audio_frames: usize,
    /// Text messages from the client (`KeepAlive`, `CloseStream`, …).
    pub texts: Vec<String>,
    /// Messages the fake sent.
    pub sent: Vec<String>,
    /// The connection is over.
    pub ended: bool,
}

impl DgSession {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Text messages from the client of this `type`.
    pub fn count_type(&self, kind: &str) -> usize {
        self.texts
            .iter()
            .filter(|t| serde_json::from_str::<Value>(t).is_ok_and(|v| v["type"] == kind))
            .count()
    }
}

#[derive(Debug)]
struct State {
    connections: VecDeque<DgConnection>,
    transcripts: VecDeque<Transcript>,
    default_transcript: Transcript,
    sessions: Vec<DgSession>,
    options: DgOptions,
}

/// The running fake; stopped when dropped.
pub struct FakeDeepgram {
    state: Arc<Mutex<State>>,
    server: ServerThread,
}

impl FakeDeepgram {
    pub fn start() -> FakeDeepgram {
        FakeDeepgram::with_options(DgOptions::default())
    }

    pub fn with_options(options: DgOptions) -> FakeDeepgram {
        let state = Arc::new(Mutex::new(State {
            connections: VecDeque::new(),
            transcripts: VecDeque::new(),
            default_transcript: Transcript::new("Hello there.", Some("en")),
            sessions: Vec::new(),
            options,
        }));
        let shared = state.clone();
        let server = serve(move |listener| async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, shared.clone()));
            }
        });
        FakeDeepgram { state, server }
    }

    /// The `base_url` to configure (`ws://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.server.addr)
    }

    /// The same server as an `http://` URL (clients map it to `ws://`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The transcript of the next utterance without one.
    pub fn push_transcript(&self, text: &str, language: Option<&str>) {
        self.state
            .lock()
            .unwrap()
            .transcripts
            .push_back(Transcript::new(text, language));
    }

    /// The transcript once the queue is empty.
    pub fn set_default_transcript(&self, text: &str, language: Option<&str>) {
        self.state.lock().unwrap().default_transcript = Transcript::new(text, language);
    }

    /// How the next connection without a script behaves.
    pub fn push_connection(&self, script: DgConnection) {
        self.state.lock().unwrap().connections.push_back(script);
    }

    /// Every connection so far, in order.
    pub fn sessions(&self) -> Vec<DgSession> {
        self.state.lock().unwrap().sessions.clone()
    }

    pub fn session_count(&self) -> usize {
        self.state.lock().unwrap().sessions.len()
    }

    /// Connection `i`, if it was made.
    pub fn session(&self, i: usize) -> Option<DgSession> {
        self.state.lock().unwrap().sessions.get(i).cloned()
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%20", " "))
        })
        .collect()
}

async fn connection(stream: TcpStream, state: Arc<Mutex<State>>) {
    let _ = stream.set_nodelay(true);
    let (script, options) = {
        let mut s = state.lock().unwrap();
        (s.connections.pop_front().unwrap_or_default(), s.options)
    };
    // The connection is recorded as the upgrade request is read, before the answer goes
    // out, so a client that saw the answer can count on the record.
    let mut index = usize::MAX;
    // The error type is tungstenite's (an HTTP response), however large.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let record = DgSession {
            path: req.uri().path().to_string(),
            query: query_pairs(req.uri().query().unwrap_or("")),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).to_string(),
                    )
                })
                .collect(),
            rejected: script.reject.is_some(),
            ended: script.reject.is_some(),
            ..DgSession::default()
        };
        {
            let mut s = state.lock().unwrap();
            s.sessions.push(record);
            index = s.sessions.len() - 1;
        }
        match &script.reject {
            Some((status, body)) => {
                let mut refusal = ErrorResponse::new(Some(body.clone()));
                *refusal.status_mut() = (*status).try_into().unwrap();
                refusal
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                Err(refusal)
            }
            None => Ok(resp),
        }
    };
    let upgraded = tokio_tungstenite::accept_hdr_async(stream, callback).await;
    if index == usize::MAX {
        return; // not even a WebSocket request
    }
    if upgraded.is_err() {
        state.lock().unwrap().sessions[index].ended = true;
    }
    let Ok(mut ws) = upgraded else { return };
    let with = |f: &mut dyn FnMut(&mut DgSession)| f(&mut state.lock().unwrap().sessions[index]);

    let params = with_params(&state, index);
    let mut segmenter = Segmenter::new(&params, options);
    let mut out: Vec<String> = Vec::new();
    if script.malformed_first {
        out.push("this is not JSON {".into());
    }
    'conn: loop {
        for text in out.drain(..) {
            with(&mut |s| s.sent.push(text.clone()));
            if ws.send(Message::text(text)).await.is_err() {
                break 'conn;
            }
        }
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                let mut total = 0;
                with(&mut |s| {
                    s.audio_bytes += bytes.len();
                    s.audio_frames += 1;
                    total = s.audio_bytes;
                });
                if script.drop_after_audio_bytes.is_some_and(|n| total >= n) {
                    break 'conn; // dropped without a close frame
                }
                let next = || next_transcript(&state);
                out = segmenter.push(&bytes, next);
            }
            Some(Ok(Message::Text(text))) => {
                let text = text.to_string();
                with(&mut |s| s.texts.push(text.clone()));
                let kind = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_string));
                if kind.as_deref() == Some("CloseStream") {
                    let mut last = segmenter.finish();
                    last.push(metadata(segmenter.seconds()));
                    for text in last {
                        with(&mut |s| s.sent.push(text.clone()));
                        if ws.send(Message::text(text)).await.is_err() {
                            break 'conn;
                        }
                    }
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                    break 'conn;
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'conn,
            Some(Ok(_)) => {}
        }
    }
    with(&mut |s| s.ended = true);
}

fn with_params(state: &Arc<Mutex<State>>, index: usize) -> Vec<(String, String)> {
    state.lock().unwrap().sessions[index].query.clone()
}

fn next_transcript(state: &Arc<Mutex<State>>) -> Transcript {
    let mut s = state.lock().unwrap();
    let default = s.default_transcript.clone();
    s.transcripts.pop_front().unwrap_or(default)
}

fn metadata(duration: f64) -> String {
    json!({
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": "00000000-0000-4000-8000-000000000000",
        "sha256": "0000000000000000000000000000000000000000000000000000000000000000",
        "created": "2024-01-01T00:00:00.000Z",
        "duration": duration,
        "channels": 1,
        "models": ["00000000-0000-4000-8000-000000000001"],
        "model_info": {"00000000-0000-4000-8000-000000000001":
            {"name": "general-nova-3", "version": "2024-01-01.0", "arch": "nova-3"}},
    })
    .to_string()
}

/// 20 ms at 16 kHz.
const FRAME: usize = 320;
const FRAME_MS: u32 = 20;

/// Speech/silence segmentation in audio time, and the messages it calls for.
struct Segmenter {
    options: DgOptions,
    endpointing_ms: u32,
    utterance_end_ms: u32,
    interim_results: bool,
    vad_events: bool,
    multi: bool,
    odd_byte: Option<u8>,
    frame: Vec<i16>,
    /// Audio time (ms) at the end of the frames processed.
    now_ms: u64,
    /// The utterance being spoken or awaiting its UtteranceEnd.
    current: Option<Transcript>,
    speaking: bool,
    start_ms: u64,
    speech_ms: u32,
    silence_ms: u32,
    interim_sent: bool,
    final_sent: bool,
}

impl Segmenter {
    fn new(params: &[(String, String)], options: DgOptions) -> Segmenter {
        let param = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        Segmenter {
            options,
            endpointing_ms: param("endpointing")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10),
            utterance_end_ms: param("utterance_end_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000),
            interim_results: param("interim_results") == Some("true"),
            vad_events: param("vad_events") == Some("true"),
            multi: param("language") == Some("multi"),
            odd_byte: None,
            frame: Vec::with_capacity(FRAME),
            now_ms: 0,
            current: None,
            speaking: false,
            start_ms: 0,
            speech_ms: 0,
            silence_ms: 0,
            interim_sent: false,
            final_sent: false,
        }
    }

    fn seconds(&self) -> f64 {
        self.now_ms as f64 / 1000.0
    }

    fn push(&mut self, bytes: &[u8], mut next: impl FnMut() -> Transcript) -> Vec<String> {
        let mut out = Vec::new();
        let mut bytes = bytes;
        if let Some(b) = self.odd_byte.take() {
            if let Some((&first, rest)) = bytes.split_first() {
                self.frame.push(i16::from_le_bytes([b, first]));
                bytes = rest;
            } else {
                self.odd_byte = Some(b);
            }
        }
        let mut pairs = bytes.chunks_exact(2);
        for pair in &mut pairs {
            self.frame.push(i16::from_le_bytes([pair[0], pair[1]]));
            if self.frame.len() == FRAME {
                self.frame_done(&mut out, &mut next);
            }
        }
        if let [b] = pairs.remainder() {
            self.odd_byte = Some(*b);
        }
        out
    }

    fn frame_done(&mut self, out: &mut Vec<String>, next: &mut impl FnMut() -> Transcript) {
        let energy =
            self.frame.iter().map(|s| (*s as i32).abs()).sum::<i32>() / self.frame.len() as i32;
        self.frame.clear();
        self.now_ms += FRAME_MS as u64;
        if energy >= self.options.threshold {
            if !self.speaking {
                if self.final_sent || self.current.is_none() {
                    // A new utterance (the last one's UtteranceEnd is skipped if speech
                    // resumed first, as with Deepgram).
                    self.current = Some(next());
                    self.interim_sent = false;
                    self.final_sent = false;
                    self.speech_ms = 0;
                    self.start_ms = self.now_ms - FRAME_MS as u64;
                }
                self.speaking = true;
                if self.vad_events {
                    out.push(
                        json!({"type": "SpeechStarted", "channel": [0],
                               "timestamp": (self.now_ms - FRAME_MS as u64) as f64 / 1000.0})
                        .to_string(),
                    );
                }
            }
            self.silence_ms = 0;
            self.speech_ms += FRAME_MS;
            if self.interim_results
                && !self.interim_sent
                && self.speech_ms >= self.options.interim_after_ms
            {
                self.interim_sent = true;
                out.push(self.results(false));
            }
            return;
        }
        if self.current.is_none() {
            return;
        }
        self.silence_ms += FRAME_MS;
        if self.speaking && self.silence_ms >= self.endpointing_ms {
            self.speaking = false;
            self.final_sent = true;
            out.push(self.results(true));
        }
        if self.final_sent && self.silence_ms >= self.utterance_end_ms {
            out.push(
                json!({"type": "UtteranceEnd", "channel": [0, 1],
                       "last_word_end": self.speech_end_s()})
                .to_string(),
            );
            self.current = None;
        }
    }

    /// CloseStream: finalize what is being said.
    fn finish(&mut self) -> Vec<String> {
        if self.current.is_some() && !self.final_sent {
            self.final_sent = true;
            self.speaking = false;
            return vec![self.results(true)];
        }
        Vec::new()
    }

    fn speech_end_s(&self) -> f64 {
        (self.now_ms - self.silence_ms as u64) as f64 / 1000.0
    }

    fn results(&self, is_final: bool) -> String {
        let t = self
            .current
            .clone()
            .unwrap_or_else(|| Transcript::new("", None));
        let words: Vec<&str> = t.text.split_whitespace().collect();
        let shown = if is_final {
            words.clone()
        } else {
            words[..words.len().div_ceil(2)].to_vec()
        };
        let start = self.start_ms as f64 / 1000.0;
        let end = self.speech_end_s().max(start + 0.02);
        let step = (end - start) / words.len().max(1) as f64;
        let word_list: Vec<Value> = shown
            .iter()
            .enumerate()
            .map(|(i, w)| {
                json!({"word": w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase(),
                       "start": start + step * i as f64, "end": start + step * (i + 1) as f64,
                       "confidence": 0.98, "punctuated_word": w})
            })
            .collect();
        let mut alternative = json!({
            "transcript": shown.join(" "),
            "confidence": 0.98,
            "words": word_list,
        });
        if self.multi {
            if let Some(l) = &t.language {
                alternative["languages"] = json!([l]);
            }
        }
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": end - start,
            "start": start,
            "is_final": is_final,
            "speech_final": is_final,
            "channel": {"alternatives": [alternative]},
            "metadata": {"request_id": "00000000-0000-4000-8000-000000000000",
                         "model_info": {"name": "general-nova-3", "version": "2024-01-01.0",
                                        "arch": "nova-3"},
                         "model_uuid": "00000000-0000-4000-8000-000000000001"},
            "from_finalize": false,
        })
        .to_string()
    }
}

/// 16 kHz test audio: `ms` of a loud square wave (speech to the fake) or of silence.
pub fn tone(ms: u32) -> Vec<i16> {
    (0..ms as usize * 16)
        .map(|i| if (i / 20) % 2 == 0 { 4000 } else { -4000 })
        .collect()
}

pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; ms as usize * 16]
}
