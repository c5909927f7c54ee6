//! Web chat over HTTP. `POST /v1/chat/tokens`: a short-lived token with which a web page's
//! visitor opens the web chat without an API key. The business's backend mints one per
//! visitor and hands it to the page; the token names the account, the contact (so the agent
//! recalls earlier conversations with them) and the agent. `GET /v1/chat?token=…`: the chat
//! itself, a WebSocket whose frames this module moves to and from the chat
//! (`channels::chat`, which says what they are).

use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::directory::target;
use super::error::{ApiError, Forbidden, Invalid, NotFound, Refused};
use super::query::Query;
use super::schemas;
use super::ApiState;
use crate::channels::chat::{Chat, ChatError};
use crate::store::accounts::Scope;
use crate::store::chat::ChatGrant;
use crate::store::clock::rfc3339;
use crate::store::contacts::WEB_PREFIX;
use crate::store::directory::e164;
use crate::store::{now_ms, StoreError};

/// How long a token lasts when the request does not say, and the bounds it may ask for.
const DEFAULT_TTL_S: i64 = 900;
const MIN_TTL_S: i64 = 60;
const MAX_TTL_S: i64 = 86_400;
/// The longest id a business may give a visitor.
const MAX_VISITOR_ID: usize = 128;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(mint))
        .routes(routes!(open))
}

/// `POST /v1/chat/tokens`
#[derive(ToSchema)]
pub struct NewChatToken {
    /// Who the visitor is: the business's own id for them (kept as the contact
    /// `web:<id>`), or their phone number (E.164, starting with `+`), which joins the chat to
    /// that number's contact and so to their calls and SMS.
    pub contact: String,
    /// The agent that answers (one of the account's; default: the configured agent).
    pub agent_id: Option<String>,
    /// How long the token lasts, 60 to 86400 seconds (default 900). The chat closes then.
    pub ttl_s: Option<i64>,
    /// The account (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

/// The contact's address for `raw`: a number when it starts with `+`, else a web visitor's
/// id (with or without its `web:` prefix). Browser call tokens read it the same way.
pub(super) fn contact_address(raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    if raw.starts_with('+') {
        return e164(raw)
            .ok_or_else(|| ApiError::field("contact", "starts with + but is not an E.164 number"));
    }
    let id = raw.strip_prefix(WEB_PREFIX).unwrap_or(raw);
    if id.is_empty() || id.chars().count() > MAX_VISITOR_ID || id.chars().any(char::is_control) {
        return Err(ApiError::field(
            "contact",
            format!(
                "a visitor's id must be 1 to {MAX_VISITOR_ID} characters without control \
                 characters (or an E.164 number starting with +)"
            ),
        ));
    }
    Ok(format!("{WEB_PREFIX}{id}"))
}

/// Mints a web chat token for one visitor. Give the page the `url` (or the token): it opens
/// it as a WebSocket.
#[utoipa::path(
    post,
    path = "/v1/chat/tokens",
    operation_id = "mint_chat_token",
    tag = "chat",
    security(("bearer" = [])),
    request_body = NewChatToken,
    responses(
        (status = 201, description = "The token, shown this once", body = schemas::ChatToken),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn mint(
    State(state): State<ApiState>,
    auth: Auth,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["contact", "agent_id", "ttl_s", "account_id"])?;
    let account = target(&auth, body.string("account_id")?, Scope::Write)?;
    let address = contact_address(&body.required_string("contact")?)?;
    let ttl = body.int("ttl_s")?.unwrap_or(DEFAULT_TTL_S);
    if !(MIN_TTL_S..=MAX_TTL_S).contains(&ttl) {
        return Err(ApiError::field(
            "ttl_s",
            format!("must be {MIN_TTL_S} to {MAX_TTL_S} seconds"),
        ));
    }
    let agent = body.string("agent_id")?;
    if let Some(id) = &agent {
        match state.store.agent(&account, id).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::field("agent_id", "no such agent in this account"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let contact = state.store.contact_for(&account, &address).await?;
    let expires_at = now_ms() + ttl * 1_000;
    let token = state
        .store
        .mint_chat_token(&account, &contact.id, agent.as_deref(), expires_at)
        .await?;
    let url = format!("/v1/chat?token={token}");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "contact_id": contact.id,
            "url": url,
        })),
    ))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatQuery {
    /// A token from `POST /v1/chat/tokens`.
    token: Option<String>,
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> ApiError {
        match e {
            ChatError::BadToken => ApiError::new(StatusCode::FORBIDDEN, "bad_token", e.to_string()),
            ChatError::Store(e) => e.into(),
        }
    }
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
    let grant = state.channels.chat_grant(q.token.as_deref()).await?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            format!("open this URL as a WebSocket: {e}"),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| serve(state, grant, socket)))
}

/// Moves the chat's frames until the visitor leaves or the token expires.
async fn serve(state: ApiState, grant: ChatGrant, mut socket: WebSocket) {
    let mut chat = match Chat::start(state.channels.clone(), grant).await {
        Ok(chat) => chat,
        Err(e) => {
            tracing::warn!(error = %e, "chat: cannot read the contact");
            return;
        }
    };
    if socket.send(Frame::Text(chat.ready().into())).await.is_err() {
        return;
    }
    let expiry = tokio::time::sleep(chat.expires_in());
    tokio::pin!(expiry);
    loop {
        let frame = tokio::select! {
            f = socket.recv() => f,
            _ = &mut expiry => {
                let _ = socket.send(Frame::Text(chat.expired().into())).await;
                break;
            }
        };
        let text = match frame {
            Some(Ok(Frame::Text(t))) => t.to_string(),
            Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        let answer = chat.answer(&text).await;
        if socket.send(Frame::Text(answer.into())).await.is_err() {
            break;
        }
    }
}
