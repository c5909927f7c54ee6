//! The OpenAI-compatible LLM client against a local fake that speaks the chat-completions
//! streaming protocol: event order, tool-call assembly, the request it sends, retries,
//! timeouts, malformed streams, cancellation and TTFB.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parley::config::agent::{LlmConfig, LlmKind, Secret};
use parley::metrics::Histogram;
use parley::providers::llm::{
    ChatMessage, ChatRequest, Llm, LlmEvent, LlmStream, Role, ToolCall, ToolSpec,
};
use parley::providers::{ProviderError, Ttfb};
use serde_json::json;
use support::fakes::openai_llm::{eventually, FakeLlm, LlmReply};

/// Longest any one test waits for something that should happen at once.
const DEADLINE: Duration = Duration::from_secs(10);

fn config(fake: &FakeLlm) -> LlmConfig {
    LlmConfig {
        provider: LlmKind::OpenAi,
        base_url: Some(fake.base_url()),
        api_key: Some(Secret::new("sk-test-123")),
        model: Some("gpt-test".into()),
        temperature: 0.2,
        max_tokens: 64,
        timeout_ms: 2_000,
        retries: 2,
    }
}

fn llm(config: &LlmConfig) -> Llm {
    Llm::from_config(config, Ttfb::none()).expect("an OpenAI provider")
}

fn hello() -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
        tools: Vec::new(),
    }
}

/// Every event until the stream ends; the error, if it ended with one.
async fn collect(mut stream: LlmStream) -> (Vec<LlmEvent>, Option<ProviderError>) {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(DEADLINE, stream.next()).await {
            Err(_) => panic!("the stream stalled after {events:?}"),
            Ok(None) => return (events, None),
            Ok(Some(Ok(e))) => events.push(e),
            Ok(Some(Err(e))) => {
                assert!(
                    tokio::time::timeout(DEADLINE, stream.next())
                        .await
                        .unwrap()
                        .is_none(),
                    "nothing may follow an error"
                );
                return (events, Some(e));
            }
        }
    }
}

fn text_of(events: &[LlmEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn done(reason: &str) -> LlmEvent {
    LlmEvent::Done {
        finish_reason: reason.into(),
    }
}

fn call(id: &str, name: &str, arguments: &str) -> LlmEvent {
    LlmEvent::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    })
}

#[tokio::test]
async fn text_streams_in_order_then_done() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text(&["Hel", "lo", ", wor", "ld"]).with_usage());
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            LlmEvent::Text("Hel".into()),
            LlmEvent::Text("lo".into()),
            LlmEvent::Text(", wor".into()),
            LlmEvent::Text("ld".into()),
            done("stop"),
        ]
    );
    assert!(eventually(DEADLINE, || fake.completed() == 1).await);
}

#[tokio::test]
async fn crlf_comments_multi_line_data_and_split_chunks() {
    let fake = FakeLlm::start();
    // 7-byte pieces split lines, CRLF pairs and the UTF-8 of "á".
    fake.push(LlmReply::fixture("text_crlf.sse", 7));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(text_of(&events), "Olá! Posso ajudar com o quê?");
    assert_eq!(events.last(), Some(&done("stop")));
}

#[tokio::test]
async fn two_parallel_tool_calls_are_assembled_from_fragments() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::tool_calls(&[
        (
            "call_1",
            "get_weather",
            r#"{"city": "Lisbon", "unit": "celsius"}"#,
        ),
        ("call_2", "get_time", r#"{"timezone": "Europe/Lisbon"}"#),
    ]));
    fake.push(LlmReply::fixture("tool_calls_parallel.sse", 13));
    let llm = llm(&config(&fake));

    let (events, error) = collect(llm.stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            call(
                "call_1",
                "get_weather",
                r#"{"city": "Lisbon", "unit": "celsius"}"#
            ),
            call("call_2", "get_time", r#"{"timezone": "Europe/Lisbon"}"#),
            done("tool_calls"),
        ]
    );

    let (events, error) = collect(llm.stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            call("call_Wx1", "get_weather", r#"{"city": "Lisbon"}"#),
            call("call_Tz2", "get_time", r#"{"tz": "Europe/Lisbon"}"#),
            done("tool_calls"),
        ]
    );
}

#[tokio::test]
async fn text_and_a_tool_call_in_one_reply() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text_and_tools(
        &["One moment."],
        &[("call_9", "lookup", r#"{"q":"x"}"#)],
    ));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![
            LlmEvent::Text("One moment.".into()),
            call("call_9", "lookup", r#"{"q":"x"}"#),
            done("tool_calls"),
        ]
    );
}

#[tokio::test]
async fn request_carries_model_settings_messages_tools_and_key() {
    let fake = FakeLlm::start();
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("You are a test."),
            ChatMessage::user("Weather in Lisbon?"),
            ChatMessage {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Lisbon"}"#.into(),
                }],
                tool_call_id: None,
            },
            ChatMessage::tool_result("call_1", r#"{"temp":21}"#),
            ChatMessage::assistant("It is 21 degrees."),
        ],
        tools: vec![ToolSpec {
            name: "get_weather".into(),
            description: "Current weather in a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}),
        }],
    };
    let (_, error) = collect(llm(&config(&fake)).stream(request)).await;
    assert_eq!(error, None);

    let req = &fake.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer sk-test-123"));
    assert!(req
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    let body = &req.body;
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["stream"], true);
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 64);
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant"]);
    let m = &body["messages"];
    assert_eq!(m[1]["content"], "Weather in Lisbon?");
    assert_eq!(
        m[2]["tool_calls"],
        json!([{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Lisbon\"}"}}])
    );
    assert_eq!(m[3]["tool_call_id"], "call_1");
    assert_eq!(m[3]["content"], r#"{"temp":21}"#);
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}])
    );

    // No key, no tools: neither an Authorization header nor a `tools` field.
    let mut keyless = config(&fake);
    keyless.api_key = None;
    keyless.model = None;
    let (_, error) = collect(llm(&keyless).stream(hello())).await;
    assert_eq!(error, None);
    let req = &fake.requests()[1];
    assert_eq!(req.header("authorization"), None);
    assert!(req.body.get("tools").is_none());
    assert_eq!(req.body["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn retries_after_503_then_succeeds() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::status(503, "The server is overloaded"));
    fake.push(LlmReply::status(429, "Rate limit reached"));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(text_of(&events), "Hello from the fake LLM.");
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn gives_up_after_the_configured_retries() {
    let fake = FakeLlm::start();
    for _ in 0..3 {
        fake.push(LlmReply::status(500, "boom"));
    }
    let mut c = config(&fake);
    c.retries = 1;
    let (events, error) = collect(llm(&c).stream(hello())).await;
    assert!(events.is_empty());
    match error {
        Some(ProviderError::Status { status, body, .. }) => {
            assert_eq!(status, 500);
            assert!(body.contains("boom"), "{body}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn no_retry_on_400() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::status(400, "Invalid value for 'temperature'"));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert!(events.is_empty());
    match error {
        Some(ProviderError::Status { status, body, .. }) => {
            assert_eq!(status, 400);
            assert!(body.contains("Invalid value for 'temperature'"), "{body}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    // The task has ended (the stream closed), so no retry can follow.
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn no_retry_after_output_started() {
    let fake = FakeLlm::start();
    // The role chunk and two text chunks, then the connection drops.
    fake.push(LlmReply::text(&["Hel", "lo", " again"]).disconnect_after(3));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(
        events,
        vec![LlmEvent::Text("Hel".into()), LlmEvent::Text("lo".into())]
    );
    assert!(
        matches!(error, Some(ProviderError::Disconnected { .. })),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_body_without_finish_reason_or_done_is_a_disconnect() {
    let fake = FakeLlm::start();
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"cut\"},\"finish_reason\":null}]}\n\n";
    fake.push(LlmReply::raw(body.as_bytes(), 1024));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(events, vec![LlmEvent::Text("cut".into())]);
    assert!(
        matches!(error, Some(ProviderError::Disconnected { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn slow_first_byte_times_out() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text(&["late"]).first_byte_delay(Duration::from_secs(30)));
    let mut c = config(&fake);
    c.timeout_ms = 200;
    c.retries = 0;
    let (events, error) = collect(llm(&c).stream(hello())).await;
    assert!(events.is_empty());
    assert_eq!(
        error,
        Some(ProviderError::Timeout {
            provider: "openai",
            ms: 200
        })
    );
    // The client gave up on the request: the fake sees the connection closed.
    assert!(eventually(DEADLINE, || fake.abandoned() == 1).await);
}

#[tokio::test]
async fn a_timeout_before_output_is_retried() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text(&["late"]).first_byte_delay(Duration::from_secs(30)));
    let mut c = config(&fake);
    c.timeout_ms = 200;
    let (events, error) = collect(llm(&c).stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(text_of(&events), "Hello from the fake LLM.");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn a_stall_between_chunks_times_out() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text(&["Hello", " world"]).hang_after(2));
    let mut c = config(&fake);
    c.timeout_ms = 200;
    let (events, error) = collect(llm(&c).stream(hello())).await;
    assert_eq!(events, vec![LlmEvent::Text("Hello".into())]);
    assert!(
        matches!(error, Some(ProviderError::Timeout { .. })),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1, "no retry once text was emitted");
}

#[tokio::test]
async fn a_malformed_chunk_is_a_protocol_error() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text(&["Hello", " world"]).malformed_at(2));
    let (events, error) = collect(llm(&config(&fake)).stream(hello())).await;
    assert_eq!(events, vec![LlmEvent::Text("Hello".into())]);
    assert!(
        matches!(error, Some(ProviderError::Protocol { .. })),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::text(&["Hello", " world"]).hang_after(2));
    let mut stream = llm(&config(&fake)).stream(hello());
    let first = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap();
    assert_eq!(first, Some(Ok(LlmEvent::Text("Hello".into()))));
    drop(stream);
    assert!(
        eventually(DEADLINE, || fake.abandoned() == 1).await,
        "the fake never saw the connection close"
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_after_retries() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = LlmConfig {
        provider: LlmKind::OpenAi,
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        retries: 1,
        timeout_ms: 2_000,
        ..LlmConfig::default()
    };
    let (events, error) = collect(llm(&c).stream(hello())).await;
    assert!(events.is_empty());
    assert!(
        matches!(error, Some(ProviderError::Connect { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn ttfb_is_observed_once_per_response() {
    let fake = FakeLlm::start();
    fake.push(LlmReply::status(503, "busy"));
    let histogram = Arc::new(Histogram::new());
    let llm = Llm::from_config(&config(&fake), Ttfb::new(histogram.clone())).unwrap();
    let (_, error) = collect(llm.stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(histogram.count(), 1);
    fake.push(LlmReply::tool_calls(&[("c", "f", "{}")]));
    let (_, error) = collect(llm.stream(hello())).await;
    assert_eq!(error, None);
    assert_eq!(histogram.count(), 2);
}

#[test]
fn from_config_names_the_provider() {
    let mut c = LlmConfig::default();
    assert!(
        Llm::from_config(&c, Ttfb::none()).is_none(),
        "auto unresolved"
    );
    c.provider = LlmKind::None;
    assert!(Llm::from_config(&c, Ttfb::none()).is_none());
    c.provider = LlmKind::OpenAi;
    let llm = Llm::from_config(&c, Ttfb::none()).unwrap();
    assert_eq!(llm.name(), "openai");
}
