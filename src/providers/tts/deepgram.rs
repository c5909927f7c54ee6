//! Deepgram Aura: `POST /v1/speak?model=…&encoding=linear16&sample_rate=16000&container=none`
//! with `{"text": …}`; the response body is raw 16 kHz linear16 PCM, streamed as it is made.
//! One request per sentence.

use std::sync::Arc;
use std::time::Duration;

use super::http_pcm::PcmRequest;
use super::turn::{self, SentenceSynth, Sink};
use super::TtsTurn;
use crate::config::agent::TtsConfig;
use crate::providers::{http_client, ProviderError, Retry, Ttfb};

const PROVIDER: &str = "deepgram";
pub(crate) const VENDOR_URL: &str = "https://api.deepgram.com";
/// We ask for PCM at the agent's rate, so nothing needs resampling.
const RATE: u32 = 16_000;

/// The Aura voice for a language when none is configured. Aura has no Portuguese voice;
/// other languages get the English default.
fn default_voice(language: &str) -> &'static str {
    match language {
        "es" => "aura-2-celeste-es",
        _ => "aura-2-thalia-en",
    }
}

#[derive(Debug, Clone)]
pub struct DeepgramTts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    /// `…/v1/speak`, without the query.
    url: String,
    authorization: Option<String>,
    config: TtsConfig,
    timeout: Duration,
    ttfb: Ttfb,
}

impl DeepgramTts {
    pub fn new(config: &TtsConfig, ttfb: Ttfb) -> DeepgramTts {
        let timeout = Duration::from_millis(config.timeout_ms);
        DeepgramTts {
            inner: Arc::new(Inner {
                client: http_client(timeout),
                url: format!("{}/v1/speak", turn::base_url(config, VENDOR_URL)),
                authorization: config
                    .api_key
                    .as_ref()
                    .map(|k| format!("Token {}", k.expose())),
                config: config.clone(),
                timeout,
                ttfb,
            }),
        }
    }

    /// Opens a turn speaking `language`. Aura's voice is its model: `voices[language]`,
    /// `voice`, then `model`, then the default for the language.
    pub fn open_turn(&self, language: &str) -> TtsTurn {
        let c = &self.inner.config;
        let voice = turn::configured_voice(c, language)
            .or_else(|| c.model.clone())
            .unwrap_or_else(|| default_voice(&turn::primary_language(language)).to_string());
        turn::sequential_turn(self.clone(), voice)
    }
}

impl SentenceSynth for DeepgramTts {
    const NAME: &'static str = PROVIDER;

    async fn speak(
        &self,
        voice: &str,
        sentence: usize,
        text: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), ProviderError> {
        let i = &self.inner;
        let url = speak_url(&i.url, voice);
        PcmRequest {
            provider: PROVIDER,
            client: &i.client,
            url: &url,
            authorization: i.authorization.clone(),
            body: serde_json::json!({ "text": text }),
            rate: RATE,
            timeout: i.timeout,
            retry: Retry::new(2),
            ttfb: &i.ttfb,
        }
        .speak(sentence, sink)
        .await
    }
}

/// `…/v1/speak` with the query asking for headerless 16 kHz linear16 in `voice`.
fn speak_url(base: &str, voice: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .append_pair("model", voice)
                .append_pair("encoding", "linear16")
                .append_pair("sample_rate", &RATE.to_string())
                .append_pair("container", "none");
            url.into()
        }
        // A bad base URL fails at request time with a Connect error naming it.
        Err(_) => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_asks_for_raw_16k_linear16() {
        assert_eq!(
            speak_url("https://api.deepgram.com/v1/speak", "aura-2-thalia-en"),
            "https://api.deepgram.com/v1/speak?model=aura-2-thalia-en&encoding=linear16\
             &sample_rate=16000&container=none"
        );
    }

    #[test]
    fn spanish_gets_a_spanish_voice() {
        assert_eq!(default_voice("es"), "aura-2-celeste-es");
        assert_eq!(default_voice("en"), "aura-2-thalia-en");
        assert_eq!(default_voice("pt"), "aura-2-thalia-en");
    }
}
