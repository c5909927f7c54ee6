//! Language models: OpenAI-compatible chat completions, streamed (`stream: true`, SSE), with
//! tool calling. This one protocol covers OpenAI, Groq, vLLM, Ollama and llama.cpp's server.

mod chunk;
pub mod openai;
mod sse;

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{AbortOnDrop, ProviderError, Ttfb};
use crate::config::agent::{LlmConfig, LlmKind};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message of the conversation, as the chat-completions API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Tool calls the assistant made in this message (assistant messages only).
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages only).
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage::plain(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::plain(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage::plain(Role::Assistant, content)
    }

    /// The result of tool call `id`.
    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.into()),
        }
    }

    fn plain(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (`{"type": "object", ...}`).
    pub parameters: serde_json::Value,
}

/// A call the model made: assembled from the streamed fragments, arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// What to ask: the model, temperature and token limit come from the provider's config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
}

/// What a response stream yields, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// The next piece of the reply text (a token or a few).
    Text(String),
    /// A complete tool call (emitted once its arguments are complete, before `Done`).
    ToolCall(ToolCall),
    /// The end of the response: `stop`, `tool_calls`, `length`, … as the server said.
    Done { finish_reason: String },
}

/// A streaming response. Dropping it cancels the request (closes the connection).
#[derive(Debug)]
pub struct LlmStream {
    pub(crate) events: mpsc::Receiver<Result<LlmEvent, ProviderError>>,
    pub(crate) _task: AbortOnDrop,
    /// When the request was sent.
    pub started: Instant,
}

impl LlmStream {
    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<LlmEvent, ProviderError>> {
        self.events.recv().await
    }
}

/// The configured language model.
#[derive(Debug, Clone)]
pub enum Llm {
    OpenAi(openai::OpenAiLlm),
}

impl Llm {
    /// The provider `config` names; `None` when it names none (`auto` is resolved when the
    /// configuration is loaded, so an unresolved `auto` also means none).
    pub fn from_config(config: &LlmConfig, ttfb: Ttfb) -> Option<Llm> {
        match config.provider {
            LlmKind::OpenAi => Some(Llm::OpenAi(openai::OpenAiLlm::new(config, ttfb))),
            LlmKind::Auto | LlmKind::None => None,
        }
    }

    /// Starts a streamed completion.
    pub fn stream(&self, request: ChatRequest) -> LlmStream {
        match self {
            Llm::OpenAi(p) => p.stream(request),
        }
    }

    /// Provider name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Llm::OpenAi(_) => "openai",
        }
    }

    /// One whole LLM answer: its text and tool calls; None when the request failed.
    pub async fn complete(&self, request: ChatRequest) -> Option<(String, Vec<ToolCall>)> {
        let mut stream = self.stream(request);
        let mut text = String::new();
        let mut calls = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(LlmEvent::Text(t)) => text.push_str(&t),
                Ok(LlmEvent::ToolCall(call)) => calls.push(call),
                Ok(LlmEvent::Done { .. }) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "LLM request failed");
                    return None;
                }
            }
        }
        Some((text, calls))
    }
}
