//! OpenAI-compatible transcription, one request per utterance: the VAD's SpeechStart and
//! SpeechEnd cut the audio (plus a short pre-roll, so the onset the VAD needed to notice
//! speech is not lost), and each utterance is uploaded as a WAV file to
//! `POST {base}/audio/transcriptions`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::{language_code, SttEvent, SttInput, SttSession, INPUT_QUEUE};
use crate::config::agent::{Secret, SttConfig};
use crate::providers::audio::AGENT_RATE;
use crate::providers::{
    body_excerpt, error_chain, http_client, AbortOnDrop, ProviderError, Retry, Ttfb,
};

const PROVIDER: &str = "openai";
pub(crate) const DEFAULT_BASE: &str = "https://api.openai.com/v1";
const DEFAULT_MODEL: &str = "whisper-1";
/// Audio kept from before SpeechStart (300 ms).
const PREROLL: usize = AGENT_RATE as usize * 3 / 10;
/// Longest utterance uploaded (30 s, Whisper's window); later audio is left out.
const MAX_UTTERANCE: usize = AGENT_RATE as usize * 30;
/// Further attempts per utterance after a retryable failure.
const RETRIES: u32 = 2;
/// Utterances waiting for transcription before new ones are dropped.
const UTTERANCE_QUEUE: usize = 8;

/// A configured transcription endpoint. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiStt {
    client: reqwest::Client,
    url: Arc<str>,
    key: Option<Secret>,
    model: Arc<str>,
    /// Per request, upload to answer.
    timeout: Duration,
    ttfb: Ttfb,
}

struct Utterance {
    samples: Vec<i16>,
    ended_at: Instant,
}

#[derive(Debug, Deserialize)]
struct Transcription {
    text: String,
    /// `verbose_json` names the language (`"spanish"`); plain `json` does not.
    #[serde(default)]
    language: Option<String>,
}

impl OpenAiStt {
    pub fn new(config: &SttConfig, ttfb: Ttfb) -> OpenAiStt {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let base = config.base_url.as_deref().unwrap_or(DEFAULT_BASE);
        OpenAiStt {
            client: http_client(timeout),
            url: format!("{}/audio/transcriptions", base.trim_end_matches('/')).into(),
            key: config.api_key.clone().filter(|k| !k.expose().is_empty()),
            model: config.model.as_deref().unwrap_or(DEFAULT_MODEL).into(),
            timeout,
            ttfb,
        }
    }

    /// Opens a session: utterances are transcribed in order as the VAD ends them.
    pub fn start(&self, language: &str) -> SttSession {
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (events_tx, events) = mpsc::channel(64);
        let language = (!matches!(language, "auto" | "")).then(|| language.to_string());
        let task = tokio::spawn(self.clone().run(language, input_rx, events_tx));
        SttSession {
            input,
            events,
            _task: AbortOnDrop(task),
            dropped: 0,
        }
    }

    async fn run(
        self,
        language: Option<String>,
        input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) {
        let (utterances_tx, utterances) = mpsc::channel(UTTERANCE_QUEUE);
        let worker = self.transcribe_all(language, utterances, events);
        tokio::pin!(worker);
        tokio::select! {
            // The worker stops on a failure (or a consumer gone): the session is over.
            _ = &mut worker => return,
            _ = cut_utterances(input, utterances_tx) => {}
        }
        // The input closed: finish what was already cut.
        worker.await;
    }

    async fn transcribe_all(
        &self,
        language: Option<String>,
        mut utterances: mpsc::Receiver<Utterance>,
        events: mpsc::Sender<SttEvent>,
    ) {
        while let Some(utterance) = utterances.recv().await {
            let transcription = match self
                .transcribe(&utterance.samples, language.as_deref())
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    let _ = events.send(SttEvent::Error(e)).await;
                    return;
                }
            };
            let text = transcription.text.trim();
            if !text.is_empty() {
                self.ttfb.observe(utterance.ended_at.elapsed());
                let event = SttEvent::Final {
                    text: text.to_string(),
                    speech_final: true,
                    language: transcription
                        .language
                        .as_deref()
                        .and_then(language_code)
                        .or_else(|| language.clone()),
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            if events.send(SttEvent::UtteranceEnd).await.is_err() {
                return;
            }
        }
    }

    /// One utterance, retried (with backoff) while failures are transient.
    async fn transcribe(
        &self,
        samples: &[i16],
        language: Option<&str>,
    ) -> Result<Transcription, ProviderError> {
        let wav = wav(samples);
        let retry = Retry::new(RETRIES);
        let mut attempt = 0;
        loop {
            match self.request(wav.clone(), language).await {
                Err(e) if e.retryable() && attempt < retry.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "transcription failed; retrying");
                    tokio::time::sleep(retry.delay(attempt)).await;
                }
                result => return result,
            }
        }
    }

    async fn request(
        &self,
        wav: Vec<u8>,
        language: Option<&str>,
    ) -> Result<Transcription, ProviderError> {
        let file = reqwest::multipart::Part::bytes(wav)
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|e| self.connect_error(&e))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.model.to_string())
            .text("response_format", "verbose_json");
        if let Some(language) = language {
            form = form.text("language", language.to_string());
        }
        let mut request = self
            .client
            .post(&*self.url)
            .multipart(form)
            .timeout(self.timeout);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| self.send_error(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.send_error(&e))?;
        if !status.is_success() {
            return Err(ProviderError::Status {
                provider: PROVIDER,
                status: status.as_u16(),
                body: body_excerpt(&String::from_utf8_lossy(&body), 300),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ProviderError::Protocol {
            provider: PROVIDER,
            what: "transcription",
            detail: format!(
                "{e} in {}",
                body_excerpt(&String::from_utf8_lossy(&body), 120)
            ),
        })
    }

    fn send_error(&self, e: &reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout {
                provider: PROVIDER,
                ms: self.timeout.as_millis() as u64,
            }
        } else {
            self.connect_error(e)
        }
    }

    fn connect_error(&self, e: &reqwest::Error) -> ProviderError {
        ProviderError::Connect {
            provider: PROVIDER,
            url: self.url.to_string(),
            reason: error_chain(e),
        }
    }
}

/// Cuts the input into utterances: a pre-roll ring while nobody speaks, an utterance from
/// SpeechStart (pre-roll included) to SpeechEnd.
async fn cut_utterances(mut input: mpsc::Receiver<SttInput>, out: mpsc::Sender<Utterance>) {
    let mut preroll: VecDeque<i16> = VecDeque::with_capacity(PREROLL);
    let mut current: Option<Vec<i16>> = None;
    while let Some(item) = input.recv().await {
        match item {
            SttInput::Audio(pcm) => match current.as_mut() {
                Some(utterance) => {
                    let room = MAX_UTTERANCE.saturating_sub(utterance.len());
                    utterance.extend_from_slice(&pcm[..pcm.len().min(room)]);
                }
                None => {
                    let keep = pcm.len().min(PREROLL);
                    preroll.extend(&pcm[pcm.len() - keep..]);
                    let excess = preroll.len().saturating_sub(PREROLL);
                    preroll.drain(..excess);
                }
            },
            SttInput::SpeechStart => {
                if current.is_none() {
                    current = Some(preroll.drain(..).collect());
                }
            }
            SttInput::SpeechEnd => {
                let Some(samples) = current.take() else {
                    continue;
                };
                if samples.is_empty() {
                    continue;
                }
                let utterance = Utterance {
                    samples,
                    ended_at: Instant::now(),
                };
                if out.try_send(utterance).is_err() {
                    tracing::warn!("transcription queue full; dropping an utterance");
                }
            }
        }
    }
}

/// A 16 kHz mono 16-bit PCM WAV file.
fn wav(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&AGENT_RATE.to_le_bytes());
    out.extend_from_slice(&(AGENT_RATE * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header() {
        let w = wav(&[1, -2, 3]);
        assert_eq!(w.len(), 44 + 6);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(w[4..8].try_into().unwrap()), 42);
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([w[22], w[23]]), 1);
        assert_eq!(u32::from_le_bytes(w[24..28].try_into().unwrap()), 16_000);
        assert_eq!(u16::from_le_bytes([w[34], w[35]]), 16);
        assert_eq!(&w[36..40], b"data");
        assert_eq!(u32::from_le_bytes(w[40..44].try_into().unwrap()), 6);
        assert_eq!(i16::from_le_bytes([w[46], w[47]]), -2);
    }

    #[tokio::test]
    async fn utterances_keep_a_preroll_and_are_capped() {
        let (tx, rx) = mpsc::channel(16);
        let (out_tx, mut out) = mpsc::channel(16);
        let cutter = tokio::spawn(cut_utterances(rx, out_tx));
        tx.send(SttInput::Audio(vec![1; 10_000])).await.unwrap();
        tx.send(SttInput::SpeechEnd).await.unwrap(); // no speech: ignored
        tx.send(SttInput::SpeechStart).await.unwrap();
        tx.send(SttInput::Audio(vec![2; 100])).await.unwrap();
        tx.send(SttInput::SpeechStart).await.unwrap(); // already speaking: ignored
        tx.send(SttInput::SpeechEnd).await.unwrap();
        tx.send(SttInput::SpeechStart).await.unwrap();
        tx.send(SttInput::Audio(vec![3; MAX_UTTERANCE]))
            .await
            .unwrap();
        tx.send(SttInput::Audio(vec![4; 10])).await.unwrap();
        tx.send(SttInput::SpeechEnd).await.unwrap();
        drop(tx);
        let first = out.recv().await.unwrap().samples;
        assert_eq!(first.len(), PREROLL + 100);
        assert!(first[..PREROLL].iter().all(|&s| s == 1));
        assert!(first[PREROLL..].iter().all(|&s| s == 2));
        let second = out.recv().await.unwrap().samples;
        assert_eq!(second.len(), MAX_UTTERANCE);
        assert!(second.iter().all(|&s| s == 3));
        assert!(out.recv().await.is_none());
        cutter.await.unwrap();
    }
}
