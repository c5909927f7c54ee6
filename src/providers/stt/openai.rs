//! Scaffold: being implemented.

use tokio::sync::mpsc;

use super::{SttEvent, SttSession};
use crate::config::agent::SttConfig;
use crate::providers::{AbortOnDrop, ProviderError, Ttfb};

#[derive(Debug, Clone)]
pub struct OpenAiStt {
    _ttfb: Ttfb,
}

impl OpenAiStt {
    pub fn new(_config: &SttConfig, ttfb: Ttfb) -> OpenAiStt {
        OpenAiStt { _ttfb: ttfb }
    }

    pub fn start(&self, _language: &str) -> SttSession {
        let (input, _rx) = mpsc::channel(1);
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let _ = tx
                .send(SttEvent::Error(ProviderError::Local {
                    provider: "openai",
                    reason: "not implemented yet".into(),
                }))
                .await;
        });
        SttSession {
            input,
            events,
            _task: AbortOnDrop(task),
            dropped: 0,
        }
    }
}
