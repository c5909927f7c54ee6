//! `chat.completion.chunk` payloads turned into [`LlmEvent`]s: text deltas pass through,
//! tool-call fragments are assembled by `index` and released, complete, when the choice
//! finishes.

use serde::Deserialize;

use super::{LlmEvent, ToolCall};

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    /// Some servers report a failure inside the stream instead of with a status.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A tool call being assembled.
#[derive(Debug)]
struct Partial {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Why a payload could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Not a chunk (invalid JSON, or a tool call without a name).
    Malformed(String),
    /// The server reported an error inside the stream.
    Server(String),
}

/// The state of one response.
#[derive(Debug, Default)]
pub struct Assembler {
    calls: Vec<Partial>,
    /// `Done` was produced.
    finished: bool,
    /// A text or tool-call delta arrived.
    output: bool,
}

impl Assembler {
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Whether `Done` was produced.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether any text or tool-call delta arrived.
    pub fn has_output(&self) -> bool {
        self.output
    }

    /// Applies one event's `data`; returns what to emit.
    pub fn apply(&mut self, data: &str) -> Result<Vec<LlmEvent>, ChunkError> {
        if data.trim() == "[DONE]" {
            return Ok(self.finish(None));
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| ChunkError::Malformed(format!("{e} in {}", excerpt(data))))?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            return Err(ChunkError::Server(message));
        }
        let mut events = Vec::new();
        // Only the first choice is asked for (n = 1); usage chunks have no choices at all.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if self.finished {
                continue; // after finish_reason only usage and [DONE] are expected
            }
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.output = true;
                events.push(LlmEvent::Text(text));
            }
            for fragment in delta.tool_calls.unwrap_or_default() {
                self.output = true;
                self.merge(fragment);
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                events.extend(self.finish(Some(reason)));
            }
        }
        self.check_names(&events)?;
        Ok(events)
    }

    /// Adds a fragment to the call it belongs to. Servers that send whole calls may leave
    /// out `index`: a new `id` then starts a new call, no `id` continues the last one.
    fn merge(&mut self, fragment: ToolCallDelta) {
        let index = match fragment.index {
            Some(i) => i,
            None => match (&fragment.id, self.calls.last()) {
                (Some(id), Some(last)) if !last.id.is_empty() && last.id != *id => last.index + 1,
                (_, Some(last)) => last.index,
                (_, None) => 0,
            },
        };
        let at = match self.calls.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.calls.push(Partial {
                    index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[at];
        if let Some(id) = fragment.id.filter(|s| !s.is_empty()) {
            call.id = id;
        }
        if let Some(f) = fragment.function {
            if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                call.name = name;
            }
            if let Some(args) = f.arguments {
                call.arguments.push_str(&args);
            }
        }
    }

    /// The assembled calls and `Done`, once.
    fn finish(&mut self, reason: Option<String>) -> Vec<LlmEvent> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|c| c.index);
        let had_calls = !calls.is_empty();
        let mut events: Vec<LlmEvent> = calls
            .into_iter()
            .map(|c| {
                LlmEvent::ToolCall(ToolCall {
                    id: if c.id.is_empty() {
                        format!("call_{}", c.index)
                    } else {
                        c.id
                    },
                    name: c.name,
                    // A call without arguments is a call with none (`{}`), which is valid JSON.
                    arguments: if c.arguments.trim().is_empty() {
                        "{}".to_string()
                    } else {
                        c.arguments
                    },
                })
            })
            .collect();
        let finish_reason =
            reason.unwrap_or_else(|| if had_calls { "tool_calls" } else { "stop" }.to_string());
        events.push(LlmEvent::Done { finish_reason });
        events
    }

    fn check_names(&self, events: &[LlmEvent]) -> Result<(), ChunkError> {
        for e in events {
            if let LlmEvent::ToolCall(c) = e {
                if c.name.is_empty() {
                    return Err(ChunkError::Malformed(format!(
                        "tool call {} has no function name",
                        c.id
                    )));
                }
            }
        }
        Ok(())
    }
}

fn excerpt(data: &str) -> String {
    crate::providers::body_excerpt(data, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(payloads: &[&str]) -> Vec<LlmEvent> {
        let mut a = Assembler::new();
        payloads.iter().flat_map(|p| a.apply(p).unwrap()).collect()
    }

    fn delta(d: &str) -> String {
        format!(
            r#"{{"object":"chat.completion.chunk","choices":[{{"index":0,"delta":{d},"finish_reason":null}}]}}"#
        )
    }

    fn finish(reason: &str) -> String {
        format!(r#"{{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#)
    }

    #[test]
    fn text_then_done() {
        let events = run(&[
            &delta(r#"{"role":"assistant","content":""}"#),
            &delta(r#"{"content":"Hel"}"#),
            &delta(r#"{"content":"lo"}"#),
            &finish("stop"),
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "[DONE]",
        ]);
        assert_eq!(
            events,
            vec![
                LlmEvent::Text("Hel".into()),
                LlmEvent::Text("lo".into()),
                LlmEvent::Done {
                    finish_reason: "stop".into()
                }
            ]
        );
    }

    #[test]
    fn interleaved_tool_call_fragments_are_assembled_by_index() {
        let events = run(&[
            &delta(
                r#"{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]}"#,
            ),
            &delta(
                r#"{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{\"tz\":"}}]}"#,
            ),
            &delta(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}"#),
            &delta(r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Lisbon\"}"}}]}"#),
            &delta(r#"{"tool_calls":[{"index":1,"function":{"arguments":"\"UTC\"}"}}]}"#),
            &finish("tool_calls"),
            "[DONE]",
        ]);
        assert_eq!(
            events,
            vec![
                LlmEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "weather".into(),
                    arguments: r#"{"city":"Lisbon"}"#.into()
                }),
                LlmEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "time".into(),
                    arguments: r#"{"tz":"UTC"}"#.into()
                }),
                LlmEvent::Done {
                    finish_reason: "tool_calls".into()
                }
            ]
        );
    }

    #[test]
    fn whole_calls_without_index_and_done_without_finish_reason() {
        let events = run(&[
            &delta(r#"{"tool_calls":[{"id":"x1","function":{"name":"a","arguments":"{}"}}]}"#),
            &delta(r#"{"tool_calls":[{"id":"x2","function":{"name":"b"}}]}"#),
            "[DONE]",
        ]);
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], LlmEvent::ToolCall(c) if c.id == "x1" && c.name == "a"));
        assert!(matches!(&events[1], LlmEvent::ToolCall(c) if c.id == "x2" && c.arguments == "{}"));
        assert_eq!(
            events[2],
            LlmEvent::Done {
                finish_reason: "tool_calls".into()
            }
        );
    }

    #[test]
    fn bad_payloads_are_errors() {
        let mut a = Assembler::new();
        assert!(matches!(
            a.apply("{not json"),
            Err(ChunkError::Malformed(_))
        ));
        assert_eq!(
            a.apply(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
            Err(ChunkError::Server("overloaded".into()))
        );
        let mut a = Assembler::new();
        a.apply(&delta(
            r#"{"tool_calls":[{"index":0,"id":"c","function":{"arguments":"{}"}}]}"#,
        ))
        .unwrap();
        assert!(matches!(
            a.apply(&finish("tool_calls")),
            Err(ChunkError::Malformed(_))
        ));
    }

    #[test]
    fn state_flags() {
        let mut a = Assembler::new();
        a.apply(&delta(r#"{"role":"assistant","content":""}"#))
            .unwrap();
        assert!(!a.has_output());
        a.apply(&delta(r#"{"content":"x"}"#)).unwrap();
        assert!(a.has_output() && !a.finished());
        a.apply(&finish("length")).unwrap();
        assert!(a.finished());
        assert!(a.apply("[DONE]").unwrap().is_empty());
    }
}
