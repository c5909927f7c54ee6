//! A fake Twilio Programmable Messaging REST API: `POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP Basic auth (AccountSid:AuthToken)
//! and a form body (`To`, `From`, `Body`, optional `StatusCallback`), answered as Twilio
//! documents it: 201 with the Message resource (`sid` = `SM` + 32 hex digits, `status`
//! `queued`), or an error status with Twilio's error body
//! `{"code", "message", "more_info", "status"}`.
//!
//! Replies can be scripted per request ([`FakeTwilio::push`]): a 503, a 429 with Retry-After,
//! a 400 with Twilio's error code, ... Unscripted requests are checked (path, Basic auth user
//! matching the path's AccountSid, and the token when [`FakeTwilio::require_auth`] set one;
//! `To`, `From` and `Body` present) and accepted. Every request is recorded, its form parsed.
//! The answer leaves out `num_segments`: this fake does not count segments.
//!
//! ```ignore
//! let twilio = FakeTwilio::start();
//! twilio.push(TwilioReply::status(503));
//! // configure Parley with twilio.base_url(), send an SMS ...
//! assert_eq!(twilio.requests().len(), 2);
//! assert_eq!(twilio.messages()[0].to, "+14155550100");
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::openai_llm::{reason, serve, Conn, HttpRequest, ServerThread};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The form body's fields, decoded, in order.
    pub form: Vec<(String, String)>,
}

impl TwilioRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first form field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The user and password of `Authorization: Basic ...`.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let encoded = self.header("authorization")?.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }
}

/// A message the fake accepted (answered 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioMessage {
    /// `SM` + 32 hex digits, as answered.
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    pub status_callback: Option<String>,
}

/// The scripted answer to one request.
#[derive(Debug, Clone)]
pub struct TwilioReply {
    /// `None`: accept the message as an unscripted request would be.
    error: Option<(u16, String)>,
    retry_after: Option<u32>,
}

impl TwilioReply {
    /// Accepts the message (201), as if unscripted; for scripts such as 503, 201, 400.
    pub fn accepted() -> TwilioReply {
        TwilioReply {
            error: None,
            retry_after: None,
        }
    }

    /// `status` with Twilio's error body for it (code 20000 + status, as Twilio's 20003,
    /// 20404, 20429, 20500, 20503).
    pub fn status(status: u16) -> TwilioReply {
        TwilioReply::error(status, 20_000 + i64::from(status), reason(status))
    }

    /// `status` with Twilio's error body carrying `code` and `message`, e.g.
    /// `TwilioReply::error(400, 21211, "Invalid 'To' Phone Number")`.
    pub fn error(status: u16, code: i64, message: &str) -> TwilioReply {
        TwilioReply {
            error: Some(error(status, code, message)),
            retry_after: None,
        }
    }

    /// Adds `Retry-After: <seconds>` to the answer.
    pub fn retry_after(mut self, seconds: u32) -> TwilioReply {
        self.retry_after = Some(seconds);
        self
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<TwilioReply>,
    requests: Vec<TwilioRequest>,
    messages: Vec<TwilioMessage>,
    /// AccountSid and AuthToken every unscripted request must carry.
    auth: Option<(String, String)>,
}

/// The running fake; stopped when dropped.
pub struct FakeTwilio {
    state: Arc<Mutex<State>>,
    server: ServerThread,
}

impl FakeTwilio {
    pub fn start() -> FakeTwilio {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = serve(move |listener| async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(Conn::new(stream), shared.clone()));
            }
        });
        FakeTwilio { state, server }
    }

    /// What stands for `https://api.twilio.com`: `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Queues the answer to the next request that has none scripted yet.
    pub fn push(&self, reply: TwilioReply) {
        lock(&self.state).script.push_back(reply);
    }

    /// From now on, unscripted requests must authenticate as `account_sid`:`auth_token`
    /// (otherwise 401, Twilio error 20003).
    pub fn require_auth(&self, account_sid: &str, auth_token: &str) {
        lock(&self.state).auth = Some((account_sid.to_string(), auth_token.to_string()));
    }

    /// Every request received, refused ones included.
    pub fn requests(&self) -> Vec<TwilioRequest> {
        lock(&self.state).requests.clone()
    }

    /// The messages accepted, in order.
    pub fn messages(&self) -> Vec<TwilioMessage> {
        lock(&self.state).messages.clone()
    }
}

// A test that panicked while holding the lock should not hide the fake's records.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn connection(mut conn: Conn, state: Arc<Mutex<State>>) {
    while let Ok(Some(request)) = conn.read_request().await {
        let (status, retry_after, body) = {
            let mut s = lock(&state);
            let request = recorded(&request);
            s.requests.push(request.clone());
            match s.script.pop_front() {
                Some(TwilioReply {
                    error: Some((status, body)),
                    retry_after,
                }) => (status, retry_after, body),
                _ => {
                    let (status, body) = answer(&mut s, &request);
                    (status, None, body)
                }
            }
        };
        if respond(&mut conn, status, retry_after, &body)
            .await
            .is_err()
        {
            return;
        }
    }
}

fn recorded(request: &HttpRequest) -> TwilioRequest {
    let path = request
        .target
        .split_once('?')
        .map_or(request.target.as_str(), |(path, _)| path);
    TwilioRequest {
        method: request.method.clone(),
        path: path.to_string(),
        headers: request.headers.clone(),
        form: form_urlencoded::parse(&request.body)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect(),
    }
}

/// What Twilio would answer to an unscripted request.
fn answer(state: &mut State, request: &TwilioRequest) -> (u16, String) {
    let account_sid = request
        .path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|rest| rest.strip_suffix("/Messages.json"))
        .filter(|sid| !sid.is_empty() && !sid.contains('/'));
    let Some(account_sid) = account_sid.filter(|_| request.method == "POST") else {
        return error(
            404,
            20404,
            &format!("The requested resource {} was not found", request.path),
        );
    };
    let authenticated = match (request.basic_auth(), &state.auth) {
        (Some((user, _)), None) => user == account_sid,
        (Some(given), Some((sid, token))) => {
            given.0 == account_sid && given.0 == *sid && given.1 == *token
        }
        (None, _) => false,
    };
    if !authenticated {
        return error(401, 20003, "Authenticate");
    }
    let field = |name: &str| request.field(name).filter(|v| !v.is_empty());
    let (Some(to), Some(from), Some(body)) = (field("To"), field("From"), field("Body")) else {
        let (code, message) = match (field("To"), field("From")) {
            (None, _) => (21604, "A 'To' phone number is required."),
            (_, None) => (21603, "A 'From' phone number is required."),
            _ => (21602, "Message body is required."),
        };
        return error(400, code, message);
    };
    let message = TwilioMessage {
        sid: format!("SM{:032x}", rand::random::<u128>()),
        account_sid: account_sid.to_string(),
        to: to.to_string(),
        from: from.to_string(),
        body: body.to_string(),
        status_callback: request.field("StatusCallback").map(str::to_string),
    };
    let resource = json!({
        "sid": message.sid,
        "account_sid": message.account_sid,
        "to": message.to,
        "from": message.from,
        "body": message.body,
        "status": "queued",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "error_code": null,
        "error_message": null,
        "price": null,
        "uri": format!(
            "/2010-04-01/Accounts/{}/Messages/{}.json",
            message.account_sid, message.sid
        ),
    });
    state.messages.push(message);
    (201, resource.to_string())
}

/// `status` with Twilio's error body.
fn error(status: u16, code: i64, message: &str) -> (u16, String) {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    (status, body.to_string())
}

async fn respond(
    conn: &mut Conn,
    status: u16,
    retry_after: Option<u32>,
    body: &str,
) -> std::io::Result<()> {
    let reason = if status == 201 {
        "Created"
    } else {
        reason(status)
    };
    let retry_after = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{retry_after}\r\n",
        body.len()
    );
    conn.stream.write_all(head.as_bytes()).await?;
    conn.stream.write_all(body.as_bytes()).await?;
    conn.stream.flush().await
}
