//! Text-to-speech: local espeak-ng (no network; the default voice), Deepgram Aura,
//! ElevenLabs WebSocket stream-input, and OpenAI-compatible `/v1/audio/speech`.
//!
//! The agent opens one [`TtsTurn`] per reply and feeds it sentences as the LLM completes
//! them; the turn yields each sentence's audio, in order, at 16 kHz, tagged with the
//! sentence's index so the agent knows how much of the reply the caller heard.

mod alignment;
pub mod deepgram;
pub mod elevenlabs;
pub mod espeak;
mod http_pcm;
pub mod openai;
mod turn;
mod wav_stream;

use tokio::sync::mpsc;

use super::{AbortOnDrop, ProviderError, Ttfb};
use crate::config::agent::{TtsConfig, TtsKind};

/// What a turn yields.
#[derive(Debug, Clone, PartialEq)]
pub enum TtsEvent {
    /// Audio of sentence `sentence` (16 kHz mono), in playing order.
    Audio { sentence: usize, pcm: Vec<i16> },
    /// Sentence `sentence` is complete: all its audio has been yielded.
    SentenceDone { sentence: usize },
    /// The turn failed; nothing more follows.
    Error(ProviderError),
}

/// One reply's synthesis. Sentences are spoken in the order given; dropping the turn
/// cancels whatever is in flight (barge-in).
#[derive(Debug)]
pub struct TtsTurn {
    pub(crate) text: mpsc::UnboundedSender<(usize, String)>,
    pub(crate) events: mpsc::Receiver<TtsEvent>,
    pub(crate) _task: AbortOnDrop,
    pub(crate) next_index: usize,
}

impl TtsTurn {
    /// Queues a sentence; returns its index (0, 1, 2, … within the turn).
    pub fn speak(&mut self, sentence: impl Into<String>) -> usize {
        let i = self.next_index;
        self.next_index += 1;
        let _ = self.text.send((i, sentence.into()));
        i
    }

    /// The next event; `None` when the turn's task has ended.
    pub async fn next_event(&mut self) -> Option<TtsEvent> {
        self.events.recv().await
    }

    /// No more sentences will come: the turn's task ends after the last one.
    pub fn finish(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        self.text = closed;
    }
}

/// The configured voice.
#[derive(Debug, Clone)]
pub enum Tts {
    Espeak(espeak::EspeakTts),
    Deepgram(deepgram::DeepgramTts),
    ElevenLabs(elevenlabs::ElevenLabsTts),
    OpenAi(openai::OpenAiTts),
}

impl Tts {
    /// The provider `config` names; `auto` (normally resolved by the config layer) is the
    /// local voice.
    pub fn from_config(config: &TtsConfig, ttfb: Ttfb) -> Tts {
        match config.provider {
            TtsKind::Auto | TtsKind::Espeak => Tts::Espeak(espeak::EspeakTts::new(config, ttfb)),
            TtsKind::Deepgram => Tts::Deepgram(deepgram::DeepgramTts::new(config, ttfb)),
            TtsKind::ElevenLabs => Tts::ElevenLabs(elevenlabs::ElevenLabsTts::new(config, ttfb)),
            TtsKind::OpenAi => Tts::OpenAi(openai::OpenAiTts::new(config, ttfb)),
        }
    }

    /// Opens a turn speaking `language` (`en`, `es`, `pt`) with the voice configured for it.
    pub fn open_turn(&self, language: &str) -> TtsTurn {
        match self {
            Tts::Espeak(p) => p.open_turn(language),
            Tts::Deepgram(p) => p.open_turn(language),
            Tts::ElevenLabs(p) => p.open_turn(language),
            Tts::OpenAi(p) => p.open_turn(language),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Tts::Espeak(_) => "espeak",
            Tts::Deepgram(_) => "deepgram",
            Tts::ElevenLabs(_) => "elevenlabs",
            Tts::OpenAi(_) => "openai",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_config_picks_the_configured_provider() {
        let with = |provider| TtsConfig {
            provider,
            ..TtsConfig::default()
        };
        let name = |k| Tts::from_config(&with(k), Ttfb::none()).name();
        assert_eq!(name(TtsKind::Auto), "espeak");
        assert_eq!(name(TtsKind::Espeak), "espeak");
        assert_eq!(name(TtsKind::Deepgram), "deepgram");
        assert_eq!(name(TtsKind::ElevenLabs), "elevenlabs");
        assert_eq!(name(TtsKind::OpenAi), "openai");
    }
}
