//! Web chat: `GET /v1/chat?token=…` upgrades to a WebSocket on which a web page's visitor
//! talks to the account's agent in text. The token (minted by `POST /v1/chat/tokens` with
//! an API key, short-lived) names the account, the contact and the agent, so the page never
//! holds an API key.
//!
//! Frames are JSON text. The visitor sends `{"type": "message", "text": "…"}` (a bare
//! text frame is taken as the message too); the server answers `{"type": "ready",
//! "contact_id"}` once open, `{"type": "message", "role": "agent", "text"}` for each reply,
//! and `{"type": "error", "message"}` when a reply cannot be made. The connection closes when
//! the token expires.

use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::ApiState;
use crate::store::chat::ChatGrant;
use crate::store::now_ms;

/// The longest message a visitor may send, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatQuery {
    /// A token from `POST /v1/chat/tokens`.
    token: Option<String>,
}

/// Opens the chat (a WebSocket upgrade).
#[utoipa::path(
    get,
    path = "/v1/chat",
    operation_id = "open_chat",
    tag = "chat",
    security(("chat_token" = [])),
    params(ChatQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket chat"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::api::error::ErrorBody),
        (status = 403, description = "The token is missing, unknown or expired", body = crate::api::error::ErrorBody),
    ),
)]
pub async fn open(
    State(state): State<ApiState>,
    Query(q): Query<ChatQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_token",
            "the chat token is missing, unknown or expired (POST /v1/chat/tokens makes one)",
        )
    };
    let token = q.token.filter(|t| !t.is_empty()).ok_or_else(refused)?;
    let grant = state.store.chat_grant(&token).await?.ok_or_else(refused)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            format!("open this URL as a WebSocket: {e}"),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| serve(state, grant, socket)))
}

async fn serve(state: ApiState, grant: ChatGrant, mut socket: WebSocket) {
    let channels = state.channels.clone();
    let mut contact = match state
        .store
        .contact(&grant.account_id, &grant.contact_id)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "chat: cannot read the contact");
            return;
        }
    };
    let ready = json!({"type": "ready", "contact_id": contact.id});
    if socket
        .send(Frame::Text(ready.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let expires_in = std::time::Duration::from_millis((grant.expires_at - now_ms()).max(0) as u64);
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    loop {
        let frame = tokio::select! {
            f = socket.recv() => f,
            _ = &mut expiry => {
                let _ = socket.send(Frame::Text(json!({"type": "error", "message": "the chat token expired"}).to_string().into())).await;
                break;
            }
        };
        let text = match frame {
            Some(Ok(Frame::Text(t))) => t.to_string(),
            Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        let text = match message_text(&text) {
            Ok(t) => t,
            Err(why) => {
                let err = json!({"type": "error", "message": why});
                if socket
                    .send(Frame::Text(err.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        let answer = match channels
            .answer_chat(&mut contact, grant.agent_id.as_deref(), &text)
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
        if socket
            .send(Frame::Text(answer.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
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
