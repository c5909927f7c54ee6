//! OpenAI-compatible chat completions: `POST {base}/chat/completions` with `stream: true`,
//! the reply read as Server-Sent Events of `chat.completion.chunk`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::timeout_at;

use super::chunk::{Assembler, ChunkError};
use super::sse::SseParser;
use super::{ChatMessage, ChatRequest, LlmEvent, LlmStream, Role};
use crate::config::agent::{LlmConfig, Secret};
use crate::providers::{
    body_excerpt, error_chain, http_client, AbortOnDrop, ProviderError, Retry, Ttfb,
};

const PROVIDER: &str = "openai";
pub(crate) const DEFAULT_BASE: &str = "https://api.openai.com/v1";
const DEFAULT_MODEL: &str = "gpt-4o-mini";

type Events = mpsc::Sender<Result<LlmEvent, ProviderError>>;

/// A configured chat-completions endpoint. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiLlm {
    client: reqwest::Client,
    url: Arc<str>,
    key: Option<Secret>,
    model: Arc<str>,
    temperature: f64,
    max_tokens: u32,
    /// First byte of the response after the request, and the longest gap between chunks.
    timeout: Duration,
    retries: u32,
    ttfb: Ttfb,
}

impl OpenAiLlm {
    pub fn new(config: &LlmConfig, ttfb: Ttfb) -> OpenAiLlm {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let base = config.base_url.as_deref().unwrap_or(DEFAULT_BASE);
        OpenAiLlm {
            client: http_client(timeout),
            url: format!("{}/chat/completions", base.trim_end_matches('/')).into(),
            key: config.api_key.clone().filter(|k| !k.expose().is_empty()),
            model: config.model.as_deref().unwrap_or(DEFAULT_MODEL).into(),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            timeout,
            retries: config.retries,
            ttfb,
        }
    }

    /// Starts a streamed completion; events arrive through the returned stream.
    pub fn stream(&self, request: ChatRequest) -> LlmStream {
        let (tx, events) = mpsc::channel(64);
        let this = self.clone();
        let task = tokio::spawn(async move { this.run(request, tx).await });
        LlmStream {
            events,
            _task: AbortOnDrop(task),
            started: Instant::now(),
        }
    }

    /// The request body (the wire format of the chat-completions API).
    pub(crate) fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        let mut body = json!({
            "model": &*self.model,
            "messages": messages,
            "stream": true,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        });
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        }
                    })
                })
                .collect();
            body["tools"] = Value::Array(tools);
        }
        body
    }

    async fn run(self, request: ChatRequest, tx: Events) {
        let body = self.body(&request);
        let retry = Retry::new(self.retries);
        let mut attempt = 0;
        loop {
            let mut output_started = false;
            match self.attempt(&body, &tx, &mut output_started).await {
                Ok(Some(response)) => {
                    // Done was sent: end the consumer's stream now, then read the rest of the
                    // body (usage, [DONE]) so the connection goes back to the pool.
                    drop(tx);
                    self.drain(response).await;
                    return;
                }
                Ok(None) => return,
                Err(e) if !output_started && e.retryable() && attempt < retry.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "LLM request failed; retrying");
                    tokio::time::sleep(retry.delay(attempt)).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    /// One request. `Ok(Some(response))`: complete, with the body still to drain;
    /// `Ok(None)`: complete, or the consumer went away.
    async fn attempt(
        &self,
        body: &Value,
        tx: &Events,
        output_started: &mut bool,
    ) -> Result<Option<reqwest::Response>, ProviderError> {
        let sent = Instant::now();
        let first_byte_deadline = tokio::time::Instant::from_std(sent + self.timeout);
        let mut request = self.client.post(&*self.url).json(body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let mut response = match timeout_at(first_byte_deadline, request.send()).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) if e.is_timeout() => return Err(self.timed_out()),
            Ok(Err(e)) => {
                return Err(ProviderError::Connect {
                    provider: PROVIDER,
                    url: self.url.to_string(),
                    reason: error_chain(&e),
                })
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let text = tokio::time::timeout(self.timeout, response.text()).await;
            return Err(ProviderError::Status {
                provider: PROVIDER,
                status: status.as_u16(),
                body: body_excerpt(&text.ok().and_then(Result::ok).unwrap_or_default(), 300),
            });
        }

        let mut parser = SseParser::new();
        let mut assembler = Assembler::new();
        let mut deadline = first_byte_deadline;
        loop {
            let chunk = match timeout_at(deadline, response.chunk()).await {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => {
                    return Err(ProviderError::Disconnected {
                        provider: PROVIDER,
                        reason: error_chain(&e),
                    })
                }
                Ok(Ok(chunk)) => chunk,
            };
            deadline = tokio::time::Instant::now() + self.timeout;
            let payloads = match &chunk {
                Some(bytes) => parser.push(bytes),
                None => parser.finish().map(|last| last.into_iter().collect()),
            }
            .map_err(|detail| ProviderError::Protocol {
                provider: PROVIDER,
                what: "event stream",
                detail,
            })?;
            for data in payloads {
                let events = assembler.apply(&data).map_err(chunk_error)?;
                if assembler.has_output() && !*output_started {
                    *output_started = true;
                    self.ttfb.observe(sent.elapsed());
                }
                for event in events {
                    if tx.send(Ok(event)).await.is_err() {
                        return Ok(None); // nobody is listening any more
                    }
                }
                if assembler.finished() {
                    return Ok(chunk.is_some().then_some(response));
                }
            }
            if chunk.is_none() {
                return Err(ProviderError::Disconnected {
                    provider: PROVIDER,
                    reason: "the stream ended before finish_reason or [DONE]".into(),
                });
            }
        }
    }

    /// Reads what is left of a finished response (usage, `[DONE]`), for at most one timeout.
    async fn drain(&self, mut response: reqwest::Response) {
        let _ = tokio::time::timeout(self.timeout, async {
            while let Ok(Some(_)) = response.chunk().await {}
        })
        .await;
    }

    fn timed_out(&self) -> ProviderError {
        ProviderError::Timeout {
            provider: PROVIDER,
            ms: self.timeout.as_millis() as u64,
        }
    }
}

fn chunk_error(e: ChunkError) -> ProviderError {
    match e {
        ChunkError::Malformed(detail) => ProviderError::Protocol {
            provider: PROVIDER,
            what: "chunk",
            detail,
        },
        ChunkError::Server(detail) => ProviderError::Protocol {
            provider: PROVIDER,
            what: "stream (the server reported an error)",
            detail,
        },
    }
}

fn message_json(m: &ChatMessage) -> Value {
    let mut v = json!({ "role": m.role, "content": m.content });
    if m.role == Role::Assistant && !m.tool_calls.is_empty() {
        if m.content.is_empty() {
            // The API's form for "no text, only calls".
            v["content"] = Value::Null;
        }
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })
            })
            .collect();
        v["tool_calls"] = Value::Array(calls);
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = Value::String(id.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::llm::{ToolCall, ToolSpec};

    fn llm() -> OpenAiLlm {
        let config = LlmConfig {
            base_url: Some("http://127.0.0.1:9/v1/".into()),
            model: Some("m".into()),
            temperature: 0.5,
            max_tokens: 42,
            ..LlmConfig::default()
        };
        OpenAiLlm::new(&config, Ttfb::none())
    }

    #[test]
    fn url_and_defaults() {
        assert_eq!(&*llm().url, "http://127.0.0.1:9/v1/chat/completions");
        let d = OpenAiLlm::new(&LlmConfig::default(), Ttfb::none());
        assert_eq!(&*d.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(&*d.model, "gpt-4o-mini");
        assert!(d.key.is_none());
    }

    #[test]
    fn body_carries_messages_tools_and_settings() {
        let request = ChatRequest {
            messages: vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("weather?"),
                ChatMessage {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "weather".into(),
                        arguments: "{}".into(),
                    }],
                    tool_call_id: None,
                },
                ChatMessage::tool_result("c1", "sunny"),
            ],
            tools: vec![ToolSpec {
                name: "weather".into(),
                description: "Current weather".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
        };
        let body = llm().body(&request);
        assert_eq!(body["model"], "m");
        assert_eq!(body["stream"], true);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["max_tokens"], 42);
        let m = &body["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[2]["content"], Value::Null);
        assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(m[2]["tool_calls"][0]["type"], "function");
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[3]["tool_call_id"], "c1");
        assert_eq!(
            body["tools"][0]["function"]["description"],
            "Current weather"
        );

        let plain = llm().body(&ChatRequest {
            messages: vec![ChatMessage::user("hi")],
            tools: vec![],
        });
        assert!(plain.get("tools").is_none());
    }
}
