//! HTTP tools declared in the agent config: the model's arguments are POSTed as JSON to the
//! tool's URL, and the response body (or what went wrong) goes back to the model as the
//! tool's result. This is how a business lets the agent book an appointment or look up an
//! order in its own system.

use std::time::Duration;

use crate::config::agent::HttpToolConfig;
use crate::providers::body_excerpt;
use crate::providers::llm::ToolCall;

/// The most of a response body the model is shown.
const MAX_RESULT_CHARS: usize = 4_000;

/// Runs `call` against its declared tool and returns the text the model gets back. Never
/// fails: a failure is described to the model, which can tell the caller.
pub async fn run_http_tool(
    client: &reqwest::Client,
    tools: &[HttpToolConfig],
    call: &ToolCall,
    call_id: &str,
) -> String {
    let Some(tool) = tools.iter().find(|t| t.name == call.name) else {
        return format!("Unknown tool {}.", call.name);
    };
    let arguments = if call.arguments.trim().is_empty() {
        "{}".to_string()
    } else {
        call.arguments.clone()
    };
    let body: serde_json::Value = match serde_json::from_str(&arguments) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return "The tool was not called: its arguments must be a JSON object.".into();
        }
    };
    let started = std::time::Instant::now();
    let response = client
        .post(&tool.url)
        .timeout(Duration::from_millis(tool.timeout_ms))
        .header("X-Parley-Call-Id", call_id)
        .json(&body)
        .send()
        .await;
    let result = match response {
        Err(e) if e.is_timeout() => format!(
            "The tool did not answer within {} ms; tell the caller it is unavailable.",
            tool.timeout_ms
        ),
        Err(e) => {
            format!("The tool could not be reached ({e}); tell the caller it is unavailable.")
        }
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let text: String = text.chars().take(MAX_RESULT_CHARS).collect();
            if status.is_success() {
                text
            } else {
                format!(
                    "The tool failed with HTTP {}: {}",
                    status.as_u16(),
                    body_excerpt(&text, 300)
                )
            }
        }
    };
    tracing::info!(
        tool = %tool.name,
        ms = started.elapsed().as_millis() as u64,
        "tool call"
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn tool(url: String, timeout_ms: u64) -> HttpToolConfig {
        HttpToolConfig {
            name: "book".into(),
            description: "Books a table".into(),
            url,
            parameters: "{}".into(),
            timeout_ms,
        }
    }

    fn call(arguments: &str) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: "book".into(),
            arguments: arguments.into(),
        }
    }

    /// A one-shot HTTP server answering `status` with `body`; returns its URL and the request.
    async fn server(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/book", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(head) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= head + 4 + len {
                        break;
                    }
                }
            }
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&req).to_string()
        });
        (url, task)
    }

    #[tokio::test]
    async fn arguments_are_posted_and_the_body_comes_back() {
        let (url, req) = server(200, r#"{"booked":true,"time":"19:00"}"#).await;
        let client = reqwest::Client::new();
        let out = run_http_tool(&client, &[tool(url, 2000)], &call(r#"{"people":2}"#), "abc").await;
        assert_eq!(out, r#"{"booked":true,"time":"19:00"}"#);
        let req = req.await.unwrap();
        assert!(req.starts_with("POST /book HTTP/1.1"), "{req}");
        assert!(req.to_ascii_lowercase().contains("x-parley-call-id: abc"));
        assert!(req.ends_with(r#"{"people":2}"#), "{req}");
    }

    #[tokio::test]
    async fn failures_are_described_to_the_model() {
        let (url, _req) = server(503, "down for maintenance").await;
        let client = reqwest::Client::new();
        let out = run_http_tool(&client, &[tool(url, 2000)], &call("{}"), "x").await;
        assert_eq!(out, "The tool failed with HTTP 503: down for maintenance");
        let out = run_http_tool(
            &client,
            &[tool("http://127.0.0.1:9/".into(), 500)],
            &call("[1]"),
            "x",
        )
        .await;
        assert!(out.contains("must be a JSON object"), "{out}");
        let unknown = ToolCall {
            name: "other".into(),
            ..call("{}")
        };
        let out = run_http_tool(&client, &[], &unknown, "x").await;
        assert_eq!(out, "Unknown tool other.");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(s);
        });
        let client = reqwest::Client::new();
        let out = run_http_tool(&client, &[tool(url, 200)], &call("{}"), "x").await;
        assert!(out.contains("did not answer within 200 ms"), "{out}");
    }
}
