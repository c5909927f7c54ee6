//! The agent on text channels (SMS, web chat): one reply per message, from the same agent
//! settings, HTTP tools and memory as its calls. The call-only tools (hang up, transfer,
//! keypad tones) are not offered.

use std::time::Duration;

use super::session::AgentRuntime;
use super::tools::run_http_tool;
use crate::providers::llm::{ChatMessage, ChatRequest};
use crate::store::contacts::Channel;

/// A reply may call tools and go back to the LLM this many times before it must answer.
const MAX_TOOL_ROUNDS: usize = 5;
/// The longest the LLM may take over one round.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// One message to answer.
pub struct TextTurn<'a> {
    pub channel: Channel,
    /// The contact's recent timeline ([`crate::memory::context::render`]); may be empty.
    pub context: &'a str,
    /// The language to answer in (`en`, `es`, `pt`); None: the agent's own.
    pub language: Option<&'a str>,
    pub text: &'a str,
    /// Sent to HTTP tools as `X-Parley-Call-Id` (the message's id).
    pub reference: &'a str,
}

/// How the agent is told which channel it is on.
fn channel_note(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => {
            "You are texting with this person by SMS. Answer in plain text (no markdown, no \
             lists), briefly: one to three short sentences."
        }
        Channel::Chat => {
            "You are chatting with this person in a web chat. Answer in plain text, briefly."
        }
        Channel::Voice => "You are speaking with this person on the phone.",
    }
}

/// "Always answer in Spanish." for a language code we know.
pub fn language_note(code: &str) -> Option<String> {
    crate::memory::language::Language::from_code(code)
        .map(|l| format!("Always answer in {}.", l.name()))
}

/// The system prompt of a text reply.
pub fn system_prompt(rt: &AgentRuntime, turn: &TextTurn<'_>) -> String {
    let mut prompt = rt.settings.system_prompt.trim().to_string();
    prompt.push_str("\n\n");
    prompt.push_str(channel_note(turn.channel));
    let language = turn
        .language
        .or((rt.settings.language != "auto").then_some(rt.settings.language.as_str()));
    match language.and_then(language_note) {
        Some(note) => {
            prompt.push(' ');
            prompt.push_str(&note);
        }
        None => prompt.push_str(" Answer in the language the person writes in."),
    }
    if !turn.context.is_empty() {
        prompt.push_str("\n\n");
        prompt.push_str(turn.context);
    }
    prompt
}

/// The agent's reply to `turn`; None when the LLM failed or said nothing.
pub async fn reply(rt: &AgentRuntime, turn: TextTurn<'_>) -> Option<String> {
    let mut messages = vec![
        ChatMessage::system(system_prompt(rt, &turn)),
        ChatMessage::user(turn.text),
    ];
    for _ in 0..=MAX_TOOL_ROUNDS {
        let request = ChatRequest {
            messages: messages.clone(),
            tools: rt.settings.tools.clone(),
        };
        let (text, calls) = match tokio::time::timeout(ROUND_LIMIT, rt.llm.complete(request)).await
        {
            Ok(Some(answer)) => answer,
            Ok(None) => return None,
            Err(_) => {
                tracing::warn!("the LLM did not answer the text message in time");
                return None;
            }
        };
        if calls.is_empty() {
            let text = text.trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        let mut assistant = ChatMessage::assistant(text);
        assistant.tool_calls = calls.clone();
        messages.push(assistant);
        for call in &calls {
            let result = run_http_tool(&rt.http, &rt.tools, call, turn.reference).await;
            messages.push(ChatMessage::tool_result(call.id.clone(), result));
        }
    }
    tracing::warn!(
        rounds = MAX_TOOL_ROUNDS,
        "too many tool rounds for a text reply"
    );
    None
}
