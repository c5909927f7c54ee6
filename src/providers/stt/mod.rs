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

use super::{AbortOnDrop, ProviderError};

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
