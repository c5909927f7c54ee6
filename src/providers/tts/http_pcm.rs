//! One sentence over HTTP: `POST` a JSON body, read raw little-endian 16-bit PCM back as it
//! streams (Deepgram Aura, OpenAI `/audio/speech`), resample it to 16 kHz and hand it on
//! chunk by chunk. Bounded waits for the first byte and between chunks; retries while no
//! audio of the sentence has been handed on.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::AUTHORIZATION;
use tokio::time::{timeout_at, Instant};

use super::turn::Sink;
use crate::providers::audio::StreamResampler;
use crate::providers::{body_excerpt, error_chain, ProviderError, Retry, Ttfb};

/// Longest error-body excerpt kept in a [`ProviderError::Status`].
const ERROR_EXCERPT: usize = 300;

/// A speech request, ready to be sent as many times as retries need.
pub(super) struct PcmRequest<'a> {
    pub provider: &'static str,
    pub client: &'a reqwest::Client,
    pub url: &'a str,
    /// The whole `Authorization` header value (`Token …`, `Bearer …`).
    pub authorization: Option<String>,
    pub body: serde_json::Value,
    /// The sample rate of the PCM the server returns.
    pub rate: u32,
    /// Limit for the first byte, and for the gap between chunks.
    pub timeout: Duration,
    pub retry: Retry,
    pub ttfb: &'a Ttfb,
}

/// Why an attempt failed, and whether audio of it was already handed on (then it may not
/// be retried: the caller would hear the start twice).
struct Failed {
    error: ProviderError,
    emitted: bool,
}

impl PcmRequest<'_> {
    /// Speaks `sentence` into `sink`, retrying transient failures before any audio.
    pub(super) async fn speak(
        &self,
        sentence: usize,
        sink: &mut Sink<'_>,
    ) -> Result<(), ProviderError> {
        let mut attempt = 0;
        loop {
            match self.attempt(sentence, sink).await {
                Ok(()) => return Ok(()),
                Err(f) if !f.emitted && f.error.retryable() && attempt < self.retry.retries => {
                    attempt += 1;
                    tracing::debug!(provider = self.provider, attempt, error = %f.error, "retrying TTS request");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn attempt(&self, sentence: usize, sink: &mut Sink<'_>) -> Result<(), Failed> {
        let fail = |error, emitted| Failed { error, emitted };
        let timeout = self.timeout_error();
        let sent = Instant::now();
        let first_byte_by = sent + self.timeout;

        let mut request = self.client.post(self.url).json(&self.body);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = match timeout_at(first_byte_by, request.send()).await {
            Err(_) => return Err(fail(timeout, false)),
            Ok(Err(e)) => return Err(fail(self.connect_error(&e), false)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            // The body explains the error; waiting for it is bounded like any read.
            let body = timeout_at(Instant::now() + self.timeout, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let error = ProviderError::Status {
                provider: self.provider,
                status: status.as_u16(),
                body: body_excerpt(&body, ERROR_EXCERPT),
            };
            return Err(fail(error, false));
        }

        let mut resampler = StreamResampler::new(self.rate).map_err(|reason| {
            fail(
                ProviderError::Local {
                    provider: self.provider,
                    reason,
                },
                false,
            )
        })?;
        let mut body = response.bytes_stream();
        let mut first = true;
        let mut emitted = false;
        loop {
            let by = if first {
                first_byte_by
            } else {
                Instant::now() + self.timeout
            };
            let chunk = match timeout_at(by, body.next()).await {
                Err(_) => return Err(fail(self.timeout_error(), emitted)),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    let error = ProviderError::Disconnected {
                        provider: self.provider,
                        reason: error_chain(&e),
                    };
                    return Err(fail(error, emitted));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if chunk.is_empty() {
                continue;
            }
            if first {
                self.ttfb.observe(sent.elapsed());
                first = false;
            }
            let mut pcm = Vec::with_capacity(chunk.len() / 2 + 1);
            resampler.push_le_bytes(&chunk, &mut pcm);
            if !pcm.is_empty() {
                emitted = true;
                sink.audio(sentence, pcm).await.map_err(|e| fail(e, true))?;
            }
        }
        let mut tail = Vec::new();
        resampler.finish(&mut tail);
        sink.audio(sentence, tail).await.map_err(|e| fail(e, true))
    }

    fn timeout_error(&self) -> ProviderError {
        ProviderError::Timeout {
            provider: self.provider,
            ms: self.timeout.as_millis() as u64,
        }
    }

    fn connect_error(&self, e: &reqwest::Error) -> ProviderError {
        ProviderError::Connect {
            provider: self.provider,
            url: self.url.to_string(),
            reason: error_chain(e),
        }
    }
}
