//! Plumbing shared by the TTS providers: where a sentence's audio goes ([`Sink`]), the turn
//! task of providers that synthesize one sentence at a time ([`sequential_turn`]), and the
//! choice of voice for a language ([`voice_for`]).

use std::future::Future;

use tokio::sync::mpsc;

use super::{TtsEvent, TtsTurn};
use crate::config::agent::TtsConfig;
use crate::providers::{AbortOnDrop, ProviderError};

/// Events a turn may buffer before its task waits for the agent to read: enough for a few
/// seconds of audio in provider-sized chunks, so the network is read ahead of playback.
const EVENT_QUEUE: usize = 256;

/// Where synthesized audio goes: a turn's event channel, or one buffer (whole-prompt
/// synthesis).
pub(super) enum Sink<'a> {
    Events {
        provider: &'static str,
        tx: &'a mpsc::Sender<TtsEvent>,
    },
    Collect(&'a mut Vec<i16>),
}

impl Sink<'_> {
    /// Hands over audio of `sentence` (nothing for an empty chunk). Fails only when the turn
    /// was dropped, which also aborts the task, so the error is never seen.
    pub(super) async fn audio(
        &mut self,
        sentence: usize,
        pcm: Vec<i16>,
    ) -> Result<(), ProviderError> {
        if pcm.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Events { provider, tx } => tx
                .send(TtsEvent::Audio { sentence, pcm })
                .await
                .map_err(|_| gone(provider)),
            Sink::Collect(buf) => {
                buf.extend_from_slice(&pcm);
                Ok(())
            }
        }
    }

    /// Says that all of `sentence`'s audio was handed over.
    pub(super) async fn done(&mut self, sentence: usize) -> Result<(), ProviderError> {
        match self {
            Sink::Events { provider, tx } => tx
                .send(TtsEvent::SentenceDone { sentence })
                .await
                .map_err(|_| gone(provider)),
            Sink::Collect(_) => Ok(()),
        }
    }
}

fn gone(provider: &'static str) -> ProviderError {
    ProviderError::Local {
        provider,
        reason: "the turn was dropped".into(),
    }
}

/// Starts a turn whose task is `run(sentences, events)`.
pub(super) fn spawn_turn<F, Fut>(run: F) -> TtsTurn
where
    F: FnOnce(mpsc::UnboundedReceiver<(usize, String)>, mpsc::Sender<TtsEvent>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (text, sentences) = mpsc::unbounded_channel();
    let (tx, events) = mpsc::channel(EVENT_QUEUE);
    let task = tokio::spawn(run(sentences, tx));
    TtsTurn {
        text,
        events,
        _task: AbortOnDrop(task),
        next_index: 0,
    }
}

/// A provider that synthesizes one sentence per request.
pub(super) trait SentenceSynth: Send + Sync + 'static {
    const NAME: &'static str;

    /// Streams the audio of `text` (sentence number `sentence`) into `sink`, at 16 kHz, as it
    /// is produced; retries are the provider's business.
    fn speak(
        &self,
        voice: &str,
        sentence: usize,
        text: &str,
        sink: &mut Sink<'_>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// A turn that speaks its sentences one after the other with `synth`; the first failure
/// ends it.
pub(super) fn sequential_turn<S: SentenceSynth>(synth: S, voice: String) -> TtsTurn {
    spawn_turn(move |mut sentences, tx| async move {
        while let Some((index, text)) = sentences.recv().await {
            let mut sink = Sink::Events {
                provider: S::NAME,
                tx: &tx,
            };
            // Vendors refuse empty input; an empty sentence is trivially complete.
            let spoken = if text.trim().is_empty() {
                Ok(())
            } else {
                synth.speak(&voice, index, text.trim(), &mut sink).await
            };
            let result = match spoken {
                Ok(()) => sink.done(index).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let _ = tx.send(TtsEvent::Error(e)).await;
                return;
            }
        }
    })
}

/// The voice for `language`: `voices[language]` (or its primary subtag's entry), else
/// `voice`, else the provider's default for the language.
pub(super) fn voice_for(
    config: &TtsConfig,
    language: &str,
    default: impl FnOnce(&str) -> &'static str,
) -> String {
    configured_voice(config, language)
        .unwrap_or_else(|| default(&primary_language(language)).to_string())
}

/// The voice configured for `language`, if any: `voices[language]` (or its primary subtag's
/// entry), else `voice`.
pub(super) fn configured_voice(config: &TtsConfig, language: &str) -> Option<String> {
    config
        .voices
        .get(language)
        .or_else(|| config.voices.get(&primary_language(language)))
        .or(config.voice.as_ref())
        .cloned()
}

/// `es` of `es-MX`, lowercase.
pub(super) fn primary_language(language: &str) -> String {
    language
        .split(['-', '_'])
        .next()
        .unwrap_or(language)
        .to_ascii_lowercase()
}

/// `base_url` without a trailing slash, or the vendor's URL.
pub(super) fn base_url(config: &TtsConfig, vendor: &str) -> String {
    config
        .base_url
        .as_deref()
        .unwrap_or(vendor)
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(lang: &str) -> &'static str {
        match lang {
            "es" => "default-es",
            _ => "default-en",
        }
    }

    #[test]
    fn voices_by_language_then_voice_then_default() {
        let mut c = TtsConfig::default();
        assert_eq!(voice_for(&c, "en", defaults), "default-en");
        assert_eq!(voice_for(&c, "es-MX", defaults), "default-es");
        c.voice = Some("mine".into());
        assert_eq!(voice_for(&c, "es", defaults), "mine");
        c.voices.insert("es".into(), "spanish".into());
        assert_eq!(voice_for(&c, "es", defaults), "spanish");
        assert_eq!(voice_for(&c, "es-AR", defaults), "spanish");
        assert_eq!(voice_for(&c, "en", defaults), "mine");
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        let mut c = TtsConfig::default();
        assert_eq!(base_url(&c, "https://x.test"), "https://x.test");
        c.base_url = Some("http://127.0.0.1:9/v1/".into());
        assert_eq!(base_url(&c, "https://x.test"), "http://127.0.0.1:9/v1");
    }
}
