//! OpenAI-compatible speech: `POST {base}/audio/speech` with
//! `{"model", "input", "voice", "response_format": "pcm"}`; the body is raw 24 kHz 16-bit
//! little-endian PCM, streamed, which is resampled to 16 kHz. One request per sentence.

use std::sync::Arc;
use std::time::Duration;

use super::http_pcm::PcmRequest;
use super::turn::{self, SentenceSynth, Sink};
use super::TtsTurn;
use crate::config::agent::TtsConfig;
use crate::providers::{http_client, ProviderError, Retry, Ttfb};

const PROVIDER: &str = "openai";
pub(crate) const VENDOR_URL: &str = "https://api.openai.com/v1";
const DEFAULT_MODEL: &str = "gpt-4o-mini-tts";
/// OpenAI's voices are multilingual: one default serves every language.
const DEFAULT_VOICE: &str = "alloy";
/// The rate of `response_format: "pcm"`.
const RATE: u32 = 24_000;

#[derive(Debug, Clone)]
pub struct OpenAiTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    url: String,
    authorization: Option<String>,
    model: String,
    config: TtsConfig,
    timeout: Duration,
    ttfb: Ttfb,
}

impl OpenAiTts {
    pub fn new(config: &TtsConfig, ttfb: Ttfb) -> OpenAiTts {
        let timeout = Duration::from_millis(config.timeout_ms);
        OpenAiTts {
            inner: Arc::new(Inner {
                client: http_client(timeout),
                url: format!("{}/audio/speech", turn::base_url(config, VENDOR_URL)),
                authorization: config
                    .api_key
                    .as_ref()
                    .map(|k| format!("Bearer {}", k.expose())),
                model: config
                    .model
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
                config: config.clone(),
                timeout,
                ttfb,
            }),
        }
    }

    pub fn open_turn(&self, language: &str) -> TtsTurn {
        let voice = turn::voice_for(&self.inner.config, language, |_| DEFAULT_VOICE);
        turn::sequential_turn(self.clone(), voice)
    }
}

impl SentenceSynth for OpenAiTts {
    const NAME: &'static str = PROVIDER;

    async fn speak(
        &self,
        voice: &str,
        sentence: usize,
        text: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ProviderError> {
        let i = &self.inner;
        PcmRequest {
            provider: PROVIDER,
            client: &i.client,
            url: &i.url,
            authorization: i.authorization.clone(),
            body: serde_json::json!({
                "model": i.model,
                "input": text,
                "voice": voice,
                "response_format": "pcm",
            }),
            rate: RATE,
            timeout: i.timeout,
            retry: Retry::new(2),
            ttfb: &i.ttfb,
        }
        .speak(sentence, sink)
        .await
    }
}
