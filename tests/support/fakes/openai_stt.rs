//! A fake OpenAI-compatible transcription server (`POST /v1/audio/transcriptions`, a
//! multipart upload of one audio file), answering `verbose_json` (`{"task", "language",
//! "duration", "text", "segments"}`), `json` (`{"text"}`) or `text` as the request asks.
//!
//! Replies are scripted per request ([`FakeOpenAiStt::push`]; [`FakeOpenAiStt::set_default`]
//! once the queue is empty): a transcript and language, an error status, a delay, a body
//! that is not JSON, or a dropped connection. Every upload is recorded: headers, form
//! fields, the file's name and type, and the WAV it carried (header and samples).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::openai_llm::{find, openai_error, serve, Conn, HttpRequest, ServerThread};

/// One scripted response.
#[derive(Debug, Clone)]
pub struct SttReply {
    pub status: u16,
    pub text: String,
    /// As `verbose_json` names it (`"spanish"`); `None` leaves the field out.
    pub language: Option<String>,
    /// A body sent as is instead of the transcription (or the error body).
    pub raw_body: Option<String>,
    pub delay: Duration,
    /// Close the connection without answering.
    pub disconnect: bool,
}

impl SttReply {
    /// A transcript; `language` as the API names it (`"english"`, `"spanish"`, …).
    pub fn text(text: &str, language: Option<&str>) -> SttReply {
        SttReply {
            status: 200,
            text: text.into(),
            language: language.map(str::to_string),
            raw_body: None,
            delay: Duration::ZERO,
            disconnect: false,
        }
    }

    pub fn status(status: u16, message: &str) -> SttReply {
        SttReply {
            status,
            raw_body: Some(openai_error(message, "server_error")),
            ..SttReply::text("", None)
        }
    }

    /// A 200 with this body (malformed replies, other servers' shapes).
    pub fn raw(body: &str) -> SttReply {
        SttReply {
            raw_body: Some(body.into()),
            ..SttReply::text("", None)
        }
    }

    pub fn disconnect() -> SttReply {
        SttReply {
            disconnect: true,
            ..SttReply::text("", None)
        }
    }

    pub fn delay(mut self, d: Duration) -> SttReply {
        self.delay = d;
        self
    }
}

/// The format of an uploaded WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// 1: PCM.
    pub format: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits: u16,
}

/// One upload as the fake saw it.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The form's text fields (`model`, `language`, `response_format`, …).
    pub fields: Vec<(String, String)>,
    pub file_name: Option<String>,
    pub file_content_type: Option<String>,
    /// The file's WAV header, or why it is not a WAV file.
    pub wav: Option<Result<WavFormat, String>>,
    /// The file's samples (16-bit PCM only).
    pub samples: Vec<i16>,
}

impl Upload {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
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
}

#[derive(Debug)]
struct State {
    script: VecDeque<SttReply>,
    default: SttReply,
    uploads: Vec<Upload>,
}

/// The running fake; stopped when dropped.
pub struct FakeOpenAiStt {
    state: Arc<Mutex<State>>,
    server: ServerThread,
}

impl FakeOpenAiStt {
    pub fn start() -> FakeOpenAiStt {
        let state = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            default: SttReply::text("Hello there.", Some("english")),
            uploads: Vec::new(),
        }));
        let shared = state.clone();
        let server = serve(move |listener| async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(Conn::new(stream), shared.clone()));
            }
        });
        FakeOpenAiStt { state, server }
    }

    /// The `base_url` to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The reply to the next request without one.
    pub fn push(&self, reply: SttReply) {
        self.state.lock().unwrap().script.push_back(reply);
    }

    /// The reply once the queue is empty.
    pub fn set_default(&self, reply: SttReply) {
        self.state.lock().unwrap().default = reply;
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.state.lock().unwrap().uploads.clone()
    }

    pub fn upload_count(&self) -> usize {
        self.state.lock().unwrap().uploads.len()
    }
}

async fn connection(mut conn: Conn, state: Arc<Mutex<State>>) {
    while let Ok(Some(req)) = conn.read_request().await {
        let upload = upload(&req);
        let format = upload
            .field("response_format")
            .unwrap_or("json")
            .to_string();
        let seconds = upload.samples.len() as f64 / 16_000.0;
        let reply = {
            let mut s = state.lock().unwrap();
            s.uploads.push(upload);
            let default = s.default.clone();
            s.script.pop_front().unwrap_or(default)
        };
        if !conn.pause(reply.delay).await || reply.disconnect {
            return;
        }
        let (content_type, body) = match (&reply.raw_body, format.as_str()) {
            (Some(raw), _) => ("application/json", raw.clone()),
            (None, "text") => ("text/plain", reply.text.clone()),
            (None, "verbose_json") => {
                let mut v = json!({
                    "task": "transcribe",
                    "duration": seconds,
                    "text": reply.text,
                    "segments": [{
                        "id": 0, "seek": 0, "start": 0.0, "end": seconds,
                        "text": reply.text, "tokens": [50364, 2425, 50414],
                        "temperature": 0.0, "avg_logprob": -0.2,
                        "compression_ratio": 0.9, "no_speech_prob": 0.01,
                    }],
                });
                if let Some(l) = &reply.language {
                    v["language"] = json!(l);
                }
                ("application/json", v.to_string())
            }
            (None, _) => ("application/json", json!({"text": reply.text}).to_string()),
        };
        if conn
            .respond(reply.status, content_type, body.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn upload(req: &HttpRequest) -> Upload {
    let mut upload = Upload {
        path: req.target.split('?').next().unwrap_or_default().to_string(),
        headers: req.headers.clone(),
        ..Upload::default()
    };
    let boundary = req
        .header("content-type")
        .and_then(|ct| {
            ct.split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
        })
        .map(|b| b.trim_matches('"').to_string());
    let Some(boundary) = boundary else {
        return upload;
    };
    for part in multipart(&req.body, &boundary) {
        match part.file_name {
            Some(name) => {
                upload.file_name = Some(name);
                upload.file_content_type = part.content_type;
                match wav(&part.data) {
                    Ok((format, samples)) => {
                        upload.wav = Some(Ok(format));
                        upload.samples = samples;
                    }
                    Err(e) => upload.wav = Some(Err(e)),
                }
            }
            None => upload
                .fields
                .push((part.name, String::from_utf8_lossy(&part.data).to_string())),
        }
    }
    upload
}

struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body (what cannot be parsed is left out).
fn multipart(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    // The first delimiter may start the body without the CRLF before it.
    let Some(first) = find(body, format!("--{boundary}").as_bytes()) else {
        return parts;
    };
    let mut at = first + boundary.len() + 2;
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") || !rest.starts_with(b"\r\n") {
            break; // the closing delimiter
        }
        let rest = &rest[2..];
        let Some(end) = find(rest, delimiter.as_bytes()) else {
            break;
        };
        let raw = &rest[..end];
        at += 2 + end + delimiter.len();
        let Some(head_end) = find(raw, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..head_end]);
        let mut part = Part {
            name: String::new(),
            file_name: None,
            content_type: None,
            data: raw[head_end + 4..].to_vec(),
        };
        for line in head.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for p in value.split(';').map(str::trim) {
                        if let Some(v) = p.strip_prefix("name=") {
                            part.name = v.trim_matches('"').to_string();
                        } else if let Some(v) = p.strip_prefix("filename=") {
                            part.file_name = Some(v.trim_matches('"').to_string());
                        }
                    }
                }
                "content-type" => part.content_type = Some(value.trim().to_string()),
                _ => {}
            }
        }
        parts.push(part);
    }
    parts
}

/// The format and samples of a WAV file (RIFF chunks in any order).
fn wav(data: &[u8]) -> Result<(WavFormat, Vec<i16>), String> {
    if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let riff_len = u32::from_le_bytes(data[4..8].try_into().unwrap()) as usize;
    if riff_len + 8 != data.len() {
        return Err(format!(
            "RIFF size {} does not match the file ({} bytes)",
            riff_len,
            data.len()
        ));
    }
    let mut format = None;
    let mut at = 12;
    while at + 8 <= data.len() {
        let id = &data[at..at + 4];
        let len = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = data
            .get(at + 8..at + 8 + len)
            .ok_or_else(|| format!("chunk {:?} runs past the end", String::from_utf8_lossy(id)))?;
        match id {
            b"fmt " if len >= 16 => {
                let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                format = Some(WavFormat {
                    format: u16_at(0),
                    channels: u16_at(2),
                    sample_rate: u32::from_le_bytes(body[4..8].try_into().unwrap()),
                    bits: u16_at(14),
                });
            }
            b"data" => {
                let format = format.ok_or("data before fmt")?;
                if format.bits != 16 {
                    return Ok((format, Vec::new()));
                }
                let samples = body
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok((format, samples));
            }
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    Err("no data chunk".into())
}
