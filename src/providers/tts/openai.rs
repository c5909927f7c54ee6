//! Scaffold: being implemented.

use tokio::sync::mpsc;

use super::{TtsEvent, TtsTurn};
use crate::config::agent::TtsConfig;
use crate::providers::{AbortOnDrop, ProviderError, Ttfb};

#[derive(Debug, Clone)]
pub struct OpenAiTts {
    _ttfb: Ttfb,
}

impl OpenAiTts {
    pub fn new(_config: &TtsConfig, ttfb: Ttfb) -> OpenAiTts {
        OpenAiTts { _ttfb: ttfb }
    }

    pub fn open_turn(&self, _language: &str) -> TtsTurn {
        let (text, _rx) = mpsc::unbounded_channel();
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let _ = tx
                .send(TtsEvent::Error(ProviderError::Local {
                    provider: "openai",
                    reason: "not implemented yet".into(),
                }))
                .await;
        });
        TtsTurn {
            text,
            events,
            _task: AbortOnDrop(task),
            next_index: 0,
        }
    }
}
