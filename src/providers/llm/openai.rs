//! OpenAI-compatible chat completions (scaffold: being implemented).

use std::time::Instant;

use tokio::sync::mpsc;

use super::{ChatRequest, LlmStream};
use crate::config::agent::LlmConfig;
use crate::providers::{AbortOnDrop, ProviderError, Ttfb};

#[derive(Debug, Clone)]
pub struct OpenAiLlm {
    _ttfb: Ttfb,
}

impl OpenAiLlm {
    pub fn new(_config: &LlmConfig, ttfb: Ttfb) -> OpenAiLlm {
        OpenAiLlm { _ttfb: ttfb }
    }

    pub fn stream(&self, _request: ChatRequest) -> LlmStream {
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let _ = tx
                .send(Err(ProviderError::Local {
                    provider: "openai",
                    reason: "not implemented yet".into(),
                }))
                .await;
        });
        LlmStream {
            events,
            _task: AbortOnDrop(task),
            started: Instant::now(),
        }
    }
}
