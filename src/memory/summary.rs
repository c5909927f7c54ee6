//! A call's summary for the contact's timeline, written as the call ends: by the LLM when
//! one is configured (a few sentences of what was asked, given and promised), else the
//! call's first caller line and last agent line.

use std::time::Duration;

use serde_json::Value;

use crate::providers::llm::{ChatMessage, ChatRequest, Llm};

/// How long the summary may take before the plain one is used.
const LLM_LIMIT: Duration = Duration::from_secs(20);
/// The longest summary kept.
const MAX_CHARS: usize = 600;
/// The most of a transcript sent to be summarized (the end of long calls matters most).
const MAX_TRANSCRIPT_CHARS: usize = 12_000;

/// What the LLM is asked.
pub const INSTRUCTION: &str = "Summarize this phone call between a caller and you, the \
     business's AI agent, in at most three short sentences, for your memory of this person: \
     what they wanted, facts they gave (names, dates, numbers), and what you promised. Plain \
     text, no preamble.";

/// The transcript's lines (`[{"role": "caller"|"agent", "text"}]`) as `Caller: …` lines.
pub fn transcript_text(transcript: &Value) -> String {
    let lines: Vec<String> = transcript
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| {
                    let text = l["text"].as_str()?.trim();
                    let who = if l["role"] == "caller" {
                        "Caller"
                    } else {
                        "Agent"
                    };
                    (!text.is_empty()).then(|| format!("{who}: {text}"))
                })
                .collect()
        })
        .unwrap_or_default();
    let text = lines.join("\n");
    let skip = text.chars().count().saturating_sub(MAX_TRANSCRIPT_CHARS);
    text.chars().skip(skip).collect()
}

/// The plain summary: what the caller said first and the agent said last.
pub fn plain(transcript: &Value, duration_s: i64) -> String {
    let lines = transcript.as_array().cloned().unwrap_or_default();
    let said = |role: &str, last: bool| {
        let mut it = lines
            .iter()
            .filter(|l| l["role"] == role)
            .filter_map(|l| l["text"].as_str().map(str::trim))
            .filter(|t| !t.is_empty());
        if last { it.next_back() } else { it.next() }.map(str::to_string)
    };
    let mut out = format!("A {} call.", length(duration_s));
    if let Some(first) = said("caller", false) {
        out.push_str(&format!(" The caller said: \"{first}\""));
    }
    if let Some(last) = said("agent", true) {
        out.push_str(&format!(" You last said: \"{last}\""));
    }
    cut(&out)
}

fn length(duration_s: i64) -> String {
    match duration_s {
        s if s < 60 => format!("{s}-second"),
        s => format!("{}-minute", (s + 30) / 60),
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_CHARS).collect();
    s.push('…');
    s
}

/// The call's summary: the LLM's when it answers in time, else [`plain`]. Nothing for a
/// call in which nobody said anything.
pub async fn summarize(llm: Option<&Llm>, transcript: &Value, duration_s: i64) -> Option<String> {
    let text = transcript_text(transcript);
    if text.is_empty() {
        return None;
    }
    if let Some(llm) = llm {
        let request = ChatRequest {
            messages: vec![ChatMessage::system(INSTRUCTION), ChatMessage::user(text)],
            tools: Vec::new(),
        };
        match tokio::time::timeout(LLM_LIMIT, llm.complete(request)).await {
            Ok(Some((summary, _))) if !summary.trim().is_empty() => {
                return Some(cut(summary.trim()));
            }
            Ok(_) => tracing::warn!("the LLM gave no call summary; keeping the plain one"),
            Err(_) => tracing::warn!("the call summary took too long; keeping the plain one"),
        }
    }
    Some(plain(transcript, duration_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call() -> Value {
        json!([
            {"role": "agent", "text": "Bob's Bakery, how can I help?"},
            {"role": "caller", "text": "Do you have gluten-free bread?"},
            {"role": "agent", "text": "Yes, on Saturdays."},
            {"role": "caller", "text": " "},
        ])
    }

    #[test]
    fn the_plain_summary_keeps_the_first_question_and_the_last_answer() {
        assert_eq!(
            plain(&call(), 95),
            "A 2-minute call. The caller said: \"Do you have gluten-free bread?\" You last \
             said: \"Yes, on Saturdays.\""
        );
        assert_eq!(plain(&json!([]), 12), "A 12-second call.");
    }

    #[test]
    fn the_transcript_reads_as_lines_and_keeps_its_end() {
        assert_eq!(
            transcript_text(&call()),
            "Agent: Bob's Bakery, how can I help?\nCaller: Do you have gluten-free bread?\n\
             Agent: Yes, on Saturdays."
        );
        let long: Vec<Value> = (0..2_000)
            .map(|i| json!({"role": "caller", "text": format!("line {i}")}))
            .collect();
        let text = transcript_text(&Value::Array(long));
        assert!(text.chars().count() <= MAX_TRANSCRIPT_CHARS);
        assert!(text.ends_with("line 1999"));
    }

    #[tokio::test]
    async fn without_an_llm_the_summary_is_the_plain_one() {
        let s = summarize(None, &call(), 30).await.unwrap();
        assert!(s.starts_with("A 30-second call."), "{s}");
        assert_eq!(summarize(None, &json!([]), 30).await, None);
    }
}
