//! Scaffold: being implemented.

use tokio::sync::mpsc;

use super::{SttEvent, SttSession};
use crate::config::agent::SttConfig;
use crate::providers::{AbortOnDrop, ProviderError, Ttfb};

#[derive(Debug, Clone)]
pub struct DeepgramStt {
    _ttfb: Ttfb,
}

impl DeepgramStt {
    pub fn new(_config: &SttConfig, ttfb: Ttfb) -> DeepgramStt {
        DeepgramStt { _ttfb: ttfb }
    }

    pub fn start(&self, _language: &str) -> SttSession {
        let (input, _rx) = mpsc::channel(1);
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let _ = tx
                .send(SttEvent::Error(ProviderError::Local {
                    provider: "deepgram",
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
