//! A fake OpenAI-compatible speech endpoint (`POST /v1/audio/speech`), speaking the
//! documented protocol: JSON `{"model", "input", "voice", "response_format"}` with
//! `Authorization: Bearer <key>`; for `response_format: "pcm"` the answer is raw 24 kHz
//! 16-bit little-endian PCM, chunked (odd sizes); errors are JSON
//! `{"error": {"message", "type", "param", "code"}}`.
//!
//! The audio is `MS_PER_CHAR` of a tone per character of `input`, at `tone_hz(n)` for the
//! server's `n`-th request (0-based, failed ones included); both are in [`super::tts_deepgram`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::tts_deepgram::{chunked_body, json_error, le_bytes, lock, speech, Background};
pub use super::tts_deepgram::{BodyStats, HttpFault, RecordedRequest};

/// The rate of `response_format: "pcm"`.
pub const RATE: u32 = 24_000;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<VecDeque<HttpFault>>,
    stats: Arc<Mutex<BodyStats>>,
    key: Mutex<Option<String>>,
}

pub struct FakeOpenAiTts {
    server: Background,
    shared: Arc<Shared>,
}

impl FakeOpenAiTts {
    pub fn start() -> FakeOpenAiTts {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/audio/speech", post(speech_handler))
            .with_state(shared.clone());
        FakeOpenAiTts {
            server: Background::start("fake-openai-tts", app),
            shared,
        }
    }

    /// What `tts.base_url` should be (it includes `/v1`, like OpenAI's).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    /// Requests without `Authorization: Bearer <key>` get a 401 from now on.
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

    /// The 24 kHz audio request number `n` with `input` is answered with.
    pub fn expected_pcm(input: &str, n: usize) -> Vec<i16> {
        speech(input, n, RATE)
    }
}

fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    json_error(
        status,
        serde_json::json!({
            "error": { "message": message, "type": kind, "param": null, "code": code }
        }),
    )
}

async fn speech_handler(
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
        if request.header("authorization") != Some(format!("Bearer {key}").as_str()) {
            return openai_error(
                401,
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            );
        }
    }
    if let Some(status) = fault.status {
        let (message, kind, code) = match status {
            401 => (
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            429 => (
                "Rate limit reached.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            503 => ("The engine is currently overloaded.", "server_error", None),
            _ => (
                "The server had an error while processing your request.",
                "server_error",
                None,
            ),
        };
        return openai_error(status, message, kind, code);
    }
    let field = |k: &str| request.body.get(k).and_then(|v| v.as_str());
    for required in ["model", "input", "voice"] {
        if field(required).is_none_or(str::is_empty) {
            return openai_error(
                400,
                &format!("`{required}` is required."),
                "invalid_request_error",
                None,
            );
        }
    }
    // This fake speaks only what Parley asks for.
    if field("response_format") != Some("pcm") {
        return openai_error(
            400,
            "This fake only returns response_format \"pcm\".",
            "invalid_request_error",
            None,
        );
    }
    let pcm = FakeOpenAiTts::expected_pcm(field("input").unwrap_or_default(), n);
    let body = chunked_body(le_bytes(&pcm), fault, shared.stats.clone());
    (StatusCode::OK, [("content-type", "audio/pcm")], body).into_response()
}
