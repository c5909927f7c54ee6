//! Speech-to-text: Deepgram live streaming over WebSocket, and OpenAI-compatible
//! transcription of each utterance (what whisper.cpp's server, faster-whisper-server and vLLM
//! speak, so STT can run locally).
//!
//! A call opens one [`SttSession`]: the agent pushes the caller's 16 kHz audio as it is
//! captured, tells the session when the VAD heard speech start and end, and reads
//! [`SttEvent`]s.

pub mod deepgram;
pub mod openai;

use tokio::sync::mpsc;

use super::{AbortOnDrop, ProviderError, Ttfb};
use crate::config::agent::{SttConfig, SttKind};

/// What a session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A provisional transcript of the speech so far (may change).
    Interim { text: String },
    /// A final transcript of a stretch of speech. `speech_final`: the provider also judged
    /// that the speaker paused (Deepgram endpointing; always true per OpenAI utterance).
    /// `language`: ISO 639-1 code when the provider detected it (`en`, `es`, `pt`).
    Final {
        text: String,
        speech_final: bool,
        language: Option<String>,
    },
    /// The provider's end-of-utterance signal (Deepgram `UtteranceEnd`; after each OpenAI
    /// transcription).
    UtteranceEnd,
    /// The session failed and will produce nothing more.
    Error(ProviderError),
}

/// What the agent sends into a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SttInput {
    /// Caller audio, 16 kHz mono.
    Audio(Vec<i16>),
    /// The VAD heard speech start (at the audio pushed so far).
    SpeechStart,
    /// The VAD heard speech end.
    SpeechEnd,
}

/// One call's transcription. Dropping it closes the provider connection.
#[derive(Debug)]
pub struct SttSession {
    pub(crate) input: mpsc::Sender<SttInput>,
    pub(crate) events: mpsc::Receiver<SttEvent>,
    pub(crate) _task: AbortOnDrop,
    /// Inputs dropped because the session's queue was full.
    pub(crate) dropped: u64,
}

impl SttSession {
    /// Queues input without waiting; a full queue drops it (and counts), so a stalled
    /// provider never stalls the agent.
    pub fn send(&mut self, input: SttInput) {
        if self.input.try_send(input).is_err() {
            self.dropped += 1;
        }
    }

    /// The next event; `None` once the session has ended.
    pub async fn next_event(&mut self) -> Option<SttEvent> {
        self.events.recv().await
    }

    /// Inputs dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The configured speech-to-text provider.
#[derive(Debug, Clone)]
pub enum Stt {
    Deepgram(deepgram::DeepgramStt),
    OpenAi(openai::OpenAiStt),
}

impl Stt {
    /// The provider `config` names; `None` when it names none (`auto` is resolved when the
    /// configuration is loaded, so an unresolved `auto` also means none).
    pub fn from_config(config: &SttConfig, ttfb: Ttfb) -> Option<Stt> {
        match config.provider {
            SttKind::Deepgram => Some(Stt::Deepgram(deepgram::DeepgramStt::new(config, ttfb))),
            SttKind::OpenAi => Some(Stt::OpenAi(openai::OpenAiStt::new(config, ttfb))),
            SttKind::Auto | SttKind::None => None,
        }
    }

    /// Opens a session for one call. `language`: `en`, `es`, `pt`, or `auto` to detect.
    pub fn start(&self, language: &str) -> SttSession {
        match self {
            Stt::Deepgram(p) => p.start(language),
            Stt::OpenAi(p) => p.start(language),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Stt::Deepgram(_) => "deepgram",
            Stt::OpenAi(_) => "openai",
        }
    }
}

/// How many inputs a session queues (20 ms frames: 5 s of audio) before dropping.
const INPUT_QUEUE: usize = 256;

/// The ISO 639-1 code of a language as vendors name it: `es`, `es-419`, `pt-BR`, `Spanish`.
/// `None` for what it cannot reduce to a two-letter code.
pub(crate) fn language_code(name: &str) -> Option<String> {
    const NAMES: &[(&str, &str)] = &[
        ("english", "en"),
        ("spanish", "es"),
        ("portuguese", "pt"),
        ("french", "fr"),
        ("german", "de"),
        ("italian", "it"),
        ("dutch", "nl"),
        ("catalan", "ca"),
        ("galician", "gl"),
    ];
    let name = name.trim().to_ascii_lowercase();
    if let Some((_, code)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Some((*code).to_string());
    }
    let primary = name.split(['-', '_']).next().unwrap_or_default();
    (primary.len() == 2 && primary.bytes().all(|b| b.is_ascii_lowercase()))
        .then(|| primary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes() {
        assert_eq!(language_code("spanish").as_deref(), Some("es"));
        assert_eq!(language_code("English").as_deref(), Some("en"));
        assert_eq!(language_code("portuguese").as_deref(), Some("pt"));
        assert_eq!(language_code("pt-BR").as_deref(), Some("pt"));
        assert_eq!(language_code("es-419").as_deref(), Some("es"));
        assert_eq!(language_code("en").as_deref(), Some("en"));
        assert_eq!(language_code("klingon"), None);
        assert_eq!(language_code(""), None);
        assert_eq!(language_code("e1"), None);
    }
}
