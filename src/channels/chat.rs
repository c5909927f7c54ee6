//! Web chat: a web page's visitor talks to the account's agent in text, on a WebSocket that
//! `GET /v1/chat?token=…` opens (`api::chat`, which moves the frames; nothing here knows
//! HTTP). The token (minted by `POST /v1/chat/tokens` with an API key, short-lived) names
//! the account, the contact and the agent, so the page never holds an API key.
//!
//! Frames are JSON text. The visitor sends `{"type": "message", "text": "…"}` (a bare
//! text frame is taken as the message too); the server answers `{"type": "ready",
//! "contact_id"}` once open, `{"type": "message", "role": "agent", "text"}` for each reply,
//! and `{"type": "error", "message"}` when a reply cannot be made. The connection closes when
//! the token expires.

use std::time::Duration;

use serde_json::{json, Value};

use super::Channels;
use crate::store::chat::ChatGrant;
use crate::store::contacts::Contact;
use crate::store::{now_ms, StoreError};

/// The longest message a visitor may send, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;

/// Why a chat does not open.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the chat token is missing, unknown or expired (POST /v1/chat/tokens makes one)")]
    BadToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Channels {
    /// What `token` grants: the chat of one contact with one agent, until it expires.
    pub async fn chat_grant(&self, token: Option<&str>) -> Result<ChatGrant, ChatError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(ChatError::BadToken)?;
        self.store
            .chat_grant(token)
            .await?
            .ok_or(ChatError::BadToken)
    }
}

/// One visitor's chat, once its socket is open: each frame in, the frame to answer it with.
pub struct Chat {
    channels: Channels,
    grant: ChatGrant,
    contact: Contact,
}

impl Chat {
    /// The chat `grant` allows.
    pub async fn start(channels: Channels, grant: ChatGrant) -> Result<Chat, StoreError> {
        let contact = channels
            .store
            .contact(&grant.account_id, &grant.contact_id)
            .await?;
        Ok(Chat {
            channels,
            grant,
            contact,
        })
    }

    /// The first frame: the chat is open.
    pub fn ready(&self) -> String {
        json!({"type": "ready", "contact_id": self.contact.id}).to_string()
    }

    /// How long until the token expires (the chat closes then).
    pub fn expires_in(&self) -> Duration {
        Duration::from_millis((self.grant.expires_at - now_ms()).max(0) as u64)
    }

    /// The last frame, when the token expired.
    pub fn expired(&self) -> String {
        json!({"type": "error", "message": "the chat token expired"}).to_string()
    }

    /// The answer to the visitor's text frame: the agent's reply, or an error frame.
    pub async fn answer(&mut self, frame: &str) -> String {
        let text = match message_text(frame) {
            Ok(t) => t,
            Err(why) => return json!({"type": "error", "message": why}).to_string(),
        };
        let answer = match self
            .channels
            .answer_chat(&mut self.contact, self.grant.agent_id.as_deref(), &text)
            .await
        {
            Ok(Some(answer)) => json!({"type": "message", "role": "agent", "text": answer}),
            Ok(None) => {
                json!({"type": "error", "message": "the agent could not answer; try again"})
            }
            Err(e) => {
                tracing::warn!(error = %e, "chat: cannot store the conversation");
                json!({"type": "error", "message": "the message could not be stored; try again"})
            }
        };
        answer.to_string()
    }
}

/// The visitor's text in a frame: `{"type": "message", "text"}` or plain text.
fn message_text(frame: &str) -> Result<String, String> {
    let text = match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(o)) => {
            if o.get("type").and_then(Value::as_str).unwrap_or("message") != "message" {
                return Err("frames are {\"type\": \"message\", \"text\": \"…\"}".into());
            }
            o.get("text")
                .and_then(Value::as_str)
                .ok_or("text: a string is needed")?
                .to_string()
        }
        _ => frame.to_string(),
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err("text: must not be empty".into());
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("text: longer than {MAX_TEXT_CHARS} characters"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_text_as_json_or_plain() {
        assert_eq!(
            message_text(r#"{"type":"message","text":" hola "}"#).unwrap(),
            "hola"
        );
        assert_eq!(message_text(r#"{"text":"hi"}"#).unwrap(), "hi");
        assert_eq!(message_text("plain words").unwrap(), "plain words");
        assert!(message_text(r#"{"type":"typing"}"#).is_err());
        assert!(message_text(r#"{"type":"message"}"#).is_err());
        assert!(message_text("   ").is_err());
        assert!(message_text(&"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }
}
