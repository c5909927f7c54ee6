//! Browser calls over HTTP: WebRTC signalling over WHIP (RFC 9725) and the call tokens that
//! let a web page's visitor call without an API key.
//!
//! - `POST /v1/webrtc/tokens` (an API key, write scope): a short-lived call token for one
//!   visitor, like a web chat token (`chat.rs`): it names the account, the contact and the
//!   agent, and comes with the absolute URL of the call page, `/call?token=…`. Only its hash
//!   is stored (`store::webrtc`). A token may start calls until it expires (a reloaded page
//!   calls again); the account's call limit bounds how many run at once.
//! - `POST /v1/webrtc/whip`: the WHIP endpoint. The body is the browser's SDP offer
//!   (`application/sdp`, at most [`MAX_OFFER`] bytes), the bearer a call token or an API key
//!   (write scope; then `agent_id`, `contact` and `account_id` may come in the query). The
//!   call starts through `call::webrtc::BrowserCalls`; the answer is `201` with the SDP
//!   answer, `Location: /v1/webrtc/whip/{id}` (the WHIP session, `{id}` being the call's id in
//!   `/v1/calls` and `/v1/cdrs`) and one `Link: <url>; rel="ice-server"` per configured ICE
//!   server URL (RFC 9725 §4.6).
//! - `DELETE /v1/webrtc/whip/{id}`: the browser hangs up (the same bearer; its account must
//!   own the call). A call token that has expired may still end its account's calls.
//! - `OPTIONS` on both: CORS preflight answers and the STUN servers' `Link`s (TURN servers'
//!   too when the request carries a valid bearer: their credentials are not handed to anyone
//!   who asks).
//! - `PATCH /v1/webrtc/whip/{id}` (trickle ICE, ICE restarts) is `405`: the server is ICE-lite
//!   with one known address, so it needs no candidates from the browser after the offer; the
//!   browser sends its candidates in the offer (wait for ICE gathering to complete).
//!
//! CORS applies to the WHIP routes only (the token endpoint is for the business's backend):
//! an `Origin` listed in `webrtc.allowed_origins` (or any, with `*`), or the server's own
//! (the `Origin`'s host is the `Host`), gets `Access-Control-Allow-Origin: <origin>`; others
//! get no CORS headers, so the browser keeps the answer from the page. No cookies are used.
//! With `webrtc.enabled = false` every route here answers 404.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::chat::contact_address as address;
use super::directory::target;
use super::error::{ApiError, ErrorBody, Forbidden, Invalid, Refused};
use super::query::Query;
use super::schemas;
use super::ApiState;
use crate::call::webrtc::{BrowserCallRefusal, BrowserCallRequest};
use crate::config::webrtc::{IceServer, WebRtcConfig};
use crate::store::accounts::Scope;
use crate::store::clock::rfc3339;
use crate::store::webrtc::{CallGrant, CALL_TOKEN_PREFIX};
use crate::store::{now_ms, StoreError};

/// How long a token lasts when the request does not say, and the bounds it may ask for.
const DEFAULT_TTL_S: i64 = 900;
const MIN_TTL_S: i64 = 60;
const MAX_TTL_S: i64 = 86_400;
/// The largest SDP offer taken, in bytes (a browser's, candidates included, is a few KB).
pub const MAX_OFFER: usize = 20 * 1024;
/// A larger body is still read up to this size before it is refused, so that the client
/// reads the 413 rather than a reset connection; beyond it the answer does not wait.
const DRAIN_LIMIT: usize = 256 * 1024;
/// How long browsers may cache a preflight's answer, in seconds.
const CORS_MAX_AGE_S: &str = "600";
/// When to try again after a 503.
const RETRY_AFTER_S: &str = "5";

const SDP: &str = "application/sdp";
const WHIP: &str = "/v1/webrtc/whip";

pub fn routes() -> OpenApiRouter<ApiState> {
    // Other methods on the WHIP paths reach these fallbacks: a 405 naming the allowed ones
    // (PATCH's says why there is no trickle ICE), with the CORS headers.
    let (schemas, paths, endpoint) = routes!(whip, preflight_endpoint);
    let endpoint = endpoint.fallback(not_allowed);
    let (session_schemas, session_paths, session) = routes!(end, preflight_session);
    let session = session.fallback(not_allowed);
    OpenApiRouter::new()
        .routes(routes!(mint))
        .routes((schemas, paths, endpoint))
        .routes((session_schemas, session_paths, session))
}

/// `[webrtc]` switched off: every route here is "not found", saying why.
fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "webrtc_disabled",
        BrowserCallRefusal::Disabled.to_string(),
    )
}

// ---------------------------------------------------------------------------------------------
// Call tokens

/// `POST /v1/webrtc/tokens`
#[derive(ToSchema)]
pub struct NewCallToken {
    /// Who the visitor is: the business's own id for them (kept as the contact
    /// `web:<id>`), or their phone number (E.164, starting with `+`), which joins the call to
    /// that number's contact and so to their other calls, SMS and chats.
    pub contact: String,
    /// The agent that answers (one of the account's; default: the configured agent).
    pub agent_id: Option<String>,
    /// How long the token may start calls, 60 to 86400 seconds (default 900). A call in
    /// progress goes on after it.
    pub ttl_s: Option<i64>,
    /// The account (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

/// `agent_id` is one of `account`'s agents (else 422 naming the field).
async fn check_agent(state: &ApiState, account: &str, agent: Option<&str>) -> Result<(), ApiError> {
    let Some(id) = agent else {
        return Ok(());
    };
    match state.store.agent(account, id).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound(_)) => {
            Err(ApiError::field("agent_id", "no such agent in this account"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The absolute URL of the call page for `token`, on the host the request was sent to
/// (`https` when a proxy says `X-Forwarded-Proto: https`); a relative one without a usable
/// `Host`.
fn call_page_url(headers: &HeaderMap, token: &str) -> String {
    let path = format!("/call?token={token}");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
        });
    let Some(host) = host else {
        return path;
    };
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}{path}")
}

/// Mints a call token for one visitor. Give the page the `url` (or the token): the call page
/// starts the call with it, or a page of the business's own posts its offer to
/// `/v1/webrtc/whip` with `Authorization: Bearer <token>`.
#[utoipa::path(
    post,
    path = "/v1/webrtc/tokens",
    operation_id = "mint_call_token",
    tag = "webrtc",
    security(("bearer" = [])),
    request_body = NewCallToken,
    responses(
        (status = 201, description = "The token, shown this once", body = schemas::CallToken),
        Invalid, Forbidden,
        (status = 404, description = "No such account (`not_found`), or browser calls are disabled (`webrtc_disabled`)", body = ErrorBody),
        Refused,
    ),
)]
async fn mint(
    State(state): State<ApiState>,
    headers: HeaderMap,
    auth: Result<Auth, ApiError>,
    body: Result<Body, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !state.browser_calls.config().enabled {
        return Err(disabled());
    }
    let auth = auth?;
    let body = body?;
    body.only(&["contact", "agent_id", "ttl_s", "account_id"])?;
    let account = target(&auth, body.string("account_id")?, Scope::Write)?;
    let address = address(&body.required_string("contact")?)?;
    let ttl = body.int("ttl_s")?.unwrap_or(DEFAULT_TTL_S);
    if !(MIN_TTL_S..=MAX_TTL_S).contains(&ttl) {
        return Err(ApiError::field(
            "ttl_s",
            format!("must be {MIN_TTL_S} to {MAX_TTL_S} seconds"),
        ));
    }
    let agent = body.string("agent_id")?;
    check_agent(&state, &account, agent.as_deref()).await?;
    let contact = state.store.contact_for(&account, &address).await?;
    let expires_at = now_ms() + ttl * 1_000;
    let token = state
        .store
        .mint_call_token(
            &account,
            &contact.id,
            &contact.address,
            agent.as_deref(),
            expires_at,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "contact_id": contact.id,
            "url": call_page_url(&headers, &token),
        })),
    ))
}

// ---------------------------------------------------------------------------------------------
// The WHIP bearer: a call token or an API key

/// Who the bearer of a WHIP request is.
enum Bearer {
    Key(Auth),
    Call(CallGrant),
}

/// The bearer token of `headers` (`Authorization: Bearer …`, the scheme in any case).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "{why}: send a call token (POST /v1/webrtc/tokens) or an API key as \
             Authorization: Bearer <token>"
        ),
    )
}

/// The request's bearer, checked: 401 when missing or unknown; 403 for a call token that has
/// expired unless `expired_ok`.
async fn bearer(
    state: &ApiState,
    headers: &HeaderMap,
    expired_ok: bool,
) -> Result<Bearer, ApiError> {
    let token = bearer_token(headers).ok_or_else(|| unauthorized("no token"))?;
    if token.starts_with(CALL_TOKEN_PREFIX) {
        let grant = state
            .store
            .call_grant(token)
            .await?
            .ok_or_else(|| unauthorized("unknown call token"))?;
        if grant.expired(now_ms()) && !expired_ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "token_expired",
                format!(
                    "this call token expired at {}; mint a new one",
                    rfc3339(grant.expires_at)
                ),
            ));
        }
        return Ok(Bearer::Call(grant));
    }
    match state.store.authenticate(token).await? {
        Some(principal) => Ok(Bearer::Key(Auth(principal))),
        None => Err(unauthorized("unknown token")),
    }
}

// ---------------------------------------------------------------------------------------------
// CORS and the answers' common headers

/// True when `origin` may call: it is listed (`*` lists every one), or it is the server's
/// own (its host and port are the request's `Host`).
fn origin_allowed(allowed: &[String], origin: &str, host: Option<&str>) -> bool {
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let origin = canonical_origin(origin);
    if allowed.iter().any(|a| canonical_origin(a) == origin) {
        return true;
    }
    // The server's own pages: the origin's host and port are the request's `Host`.
    match (origin.split_once("://"), host) {
        (Some((scheme, _)), Some(host)) => {
            canonical_origin(&format!("{scheme}://{host}")) == origin
        }
        _ => false,
    }
}

/// `scheme://host[:port]` in lower case, without a trailing `/` or the scheme's default port.
fn canonical_origin(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if o.starts_with(scheme) && o.ends_with(port) {
            return o[..o.len() - port.len()].to_string();
        }
    }
    o
}

/// The CORS headers for a request with these `headers`, when its origin may call.
fn cors(config: &WebRtcConfig, headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = vec![(header::VARY, HeaderValue::from_static("Origin"))];
    let Some(origin) = headers.get(header::ORIGIN) else {
        return out;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let allowed = origin
        .to_str()
        .is_ok_and(|o| origin_allowed(&config.allowed_origins, o, host));
    if allowed {
        out.extend([
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, DELETE, OPTIONS"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type"),
            ),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Location, Link"),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(CORS_MAX_AGE_S),
            ),
        ]);
    }
    out
}

/// `answer` with the WHIP routes' headers: CORS, `WWW-Authenticate` on a 401, `Retry-After`
/// on a 503, `Accept-Post` on a 415.
fn finish(config: &WebRtcConfig, headers: &HeaderMap, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    let out = response.headers_mut();
    for (name, value) in cors(config, headers) {
        out.insert(name, value);
    }
    let extra = match response.status() {
        StatusCode::UNAUTHORIZED => Some((header::WWW_AUTHENTICATE, "Bearer")),
        StatusCode::SERVICE_UNAVAILABLE => Some((header::RETRY_AFTER, RETRY_AFTER_S)),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Some((HeaderName::from_static("accept-post"), SDP)),
        _ => None,
    };
    if let Some((name, value)) = extra {
        response
            .headers_mut()
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// A string for a quoted-string parameter of a `Link` header.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One `Link` header value per URL of `servers` (RFC 9725 §4.6); servers with credentials
/// (TURN) only when `with_credentials`.
fn ice_links(servers: &[IceServer], with_credentials: bool) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    for server in servers {
        let credentials = match (&server.username, &server.credential) {
            (Some(u), Some(c)) => Some(format!(
                "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                quoted(u),
                quoted(c)
            )),
            _ => None,
        };
        if credentials.is_some() && !with_credentials {
            continue;
        }
        for url in &server.urls {
            let link = format!(
                "<{url}>; rel=\"ice-server\"{}",
                credentials.as_deref().unwrap_or_default()
            );
            match HeaderValue::from_str(&link) {
                Ok(v) => out.push(v),
                Err(_) => tracing::warn!(url, "webrtc: an ICE server cannot go in a Link header"),
            }
        }
    }
    out
}

fn with_links(mut response: Response, links: Vec<HeaderValue>) -> Response {
    for link in links {
        response.headers_mut().append(header::LINK, link);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// WHIP

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhipQuery {
    /// With an API key: the agent that answers (one of the account's; default: the
    /// configured agent). A call token names its own.
    agent_id: Option<String>,
    /// With an API key: who is calling, an E.164 number or a visitor's id (`web:<id>`); none:
    /// an anonymous caller. A call token names its own.
    contact: Option<String>,
    /// With an API key: the account (default: the key's; another needs the operator's admin
    /// key).
    account_id: Option<String>,
}

impl From<BrowserCallRefusal> for ApiError {
    fn from(refusal: BrowserCallRefusal) -> ApiError {
        let code = match &refusal {
            BrowserCallRefusal::Disabled => "webrtc_disabled",
            BrowserCallRefusal::BadSdp(_) => "bad_sdp",
            BrowserCallRefusal::NotAcceptable(_) => "not_acceptable",
            BrowserCallRefusal::NoCredit => "insufficient_funds",
            BrowserCallRefusal::CallLimit(_) => "call_limit",
            BrowserCallRefusal::Draining => "draining",
            BrowserCallRefusal::Unavailable(_) => "unavailable",
        };
        let status =
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        ApiError::new(status, code, refusal.to_string())
    }
}

/// True when `headers` say the body is `application/sdp` (parameters aside).
fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(SDP))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("an SDP offer is at most {MAX_OFFER} bytes"),
    )
}

/// The offer in the body: at most [`MAX_OFFER`] bytes of UTF-8 text.
async fn read_offer(headers: &HeaderMap, body: axum::body::Body) -> Result<String, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, DRAIN_LIMIT)
        .await
        .map_err(|_| too_large())?;
    if bytes.len() > MAX_OFFER {
        return Err(too_large());
    }
    let offer = String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_sdp",
            "malformed SDP offer: not UTF-8 text",
        )
    })?;
    if offer.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_sdp",
            "malformed SDP offer: the body is empty",
        ));
    }
    Ok(offer)
}

/// Starts a browser call (WHIP, RFC 9725): the body is the browser's SDP offer, the answer
/// the SDP answer. The bearer is a call token (`POST /v1/webrtc/tokens`), which names the
/// account, agent and contact, or an API key with write scope (then the query may name
/// them). The server is ICE-lite: send every ICE candidate in the offer (no trickle ICE;
/// `PATCH` on the session answers 405). End the call with `DELETE` on the `Location`, or by
/// closing the peer connection. CORS: see `webrtc.allowed_origins`.
#[utoipa::path(
    post,
    path = "/v1/webrtc/whip",
    operation_id = "start_browser_call",
    tag = "webrtc",
    security(("bearer" = [])),
    params(WhipQuery),
    request_body(content = String, content_type = "application/sdp", description = "The browser's SDP offer (at most 20 KiB), with its ICE candidates"),
    responses(
        (status = 201, description = "The call started: the SDP answer. `Location` is the WHIP session (`/v1/webrtc/whip/{id}`, `id` being the call's id in `/v1/calls` and `/v1/cdrs`); one `Link` per ICE server URL (`<stun:…>; rel=\"ice-server\"`, TURN with `username`, `credential` and `credential-type`)", content_type = "application/sdp", body = String,
            headers(("Location" = String, description = "The WHIP session: `/v1/webrtc/whip/{id}`"), ("Link" = String, description = "An ICE server (RFC 9725 §4.6), once per URL"))),
        (status = 400, description = "The offer cannot be parsed (`bad_sdp`)", body = ErrorBody),
        (status = 401, description = "No bearer token, or not a known call token or API key (`unauthorized`; `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 402, description = "The account has no credit for a call (`insufficient_funds`)", body = ErrorBody),
        (status = 403, description = "The call token has expired (`token_expired`), or the key's scope is below write (`forbidden`)", body = ErrorBody),
        (status = 404, description = "Browser calls are disabled (`webrtc_disabled`), or no such account (`not_found`)", body = ErrorBody),
        (status = 406, description = "The offer has no audio, or no Opus (`not_acceptable`)", body = ErrorBody),
        (status = 413, description = "The offer is over 20 KiB (`too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/sdp` (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "A query parameter is wrong, or given with a call token, which names its own; `field` names it (`invalid_field`)", body = ErrorBody),
        (status = 429, description = "The account has as many calls in progress as its limit allows (`call_limit`)", body = ErrorBody),
        (status = 503, description = "The node is shutting down or cannot take the call, or the database failed (`draining`, `unavailable`, `store_unavailable`); `Retry-After`", body = ErrorBody),
    ),
)]
async fn whip(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<WhipQuery>, ApiError>,
    body: axum::body::Body,
) -> Response {
    let config = state.browser_calls.config();
    let answer = start(&state, &config, &headers, query, body).await;
    finish(&config, &headers, answer)
}

async fn start(
    state: &ApiState,
    config: &WebRtcConfig,
    headers: &HeaderMap,
    query: Result<Query<WhipQuery>, ApiError>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if !config.enabled {
        return Err(disabled());
    }
    let who = bearer(state, headers, false).await?;
    let Query(q) = query?;
    let (account_id, agent_id, contact) = match who {
        Bearer::Key(auth) => {
            let account = target(&auth, q.account_id, Scope::Write)?;
            check_agent(state, &account, q.agent_id.as_deref()).await?;
            let contact = q.contact.as_deref().map(address).transpose()?;
            (account, q.agent_id, contact)
        }
        Bearer::Call(grant) => {
            let named = [
                ("agent_id", &q.agent_id),
                ("contact", &q.contact),
                ("account_id", &q.account_id),
            ];
            if let Some((field, _)) = named.iter().find(|(_, v)| v.is_some()) {
                return Err(ApiError::field(
                    field,
                    "a call token names its own account, agent and contact",
                ));
            }
            (grant.account_id, grant.agent_id, Some(grant.address))
        }
    };
    if !is_sdp(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the offer as Content-Type: {SDP}"),
        ));
    }
    let offer = read_offer(headers, body).await?;
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let answer = state
        .browser_calls
        .start(BrowserCallRequest {
            offer,
            account_id,
            agent_id,
            contact,
            origin,
        })
        .await?;
    let location = HeaderValue::from_str(&format!("{WHIP}/{}", answer.id)).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "bad call id",
        )
    })?;
    let response = (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(SDP)),
            (header::LOCATION, location),
        ],
        answer.sdp,
    )
        .into_response();
    Ok(with_links(response, ice_links(&config.ice_servers, true)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// With an API key: the call's account (default: the key's; another needs the operator's
    /// admin key).
    account_id: Option<String>,
}

/// Ends a browser call (WHIP session teardown): the bearer is the call token or an API key
/// (write scope) of the call's account. A call token may end its account's calls after it
/// has expired.
#[utoipa::path(
    delete,
    path = "/v1/webrtc/whip/{id}",
    operation_id = "end_browser_call",
    tag = "webrtc",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The call's id, from the `Location` of its start"), SessionQuery),
    responses(
        (status = 200, description = "The call is being hung up"),
        (status = 401, description = "No bearer token, or not a known call token or API key (`unauthorized`; `WWW-Authenticate: Bearer`)", body = ErrorBody),
        Forbidden,
        (status = 404, description = "No such call of the account in progress on this node (`not_found`), or browser calls are disabled (`webrtc_disabled`)", body = ErrorBody),
        (status = 422, description = "A query parameter is wrong; `field` names it (`invalid_field`)", body = ErrorBody),
        (status = 503, description = "The database failed; try again (`store_unavailable`)", body = ErrorBody),
    ),
)]
async fn end(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<SessionQuery>, ApiError>,
) -> Response {
    let config = state.browser_calls.config();
    let answer = hang_up(&state, &config, &headers, &id, query).await;
    finish(&config, &headers, answer)
}

async fn hang_up(
    state: &ApiState,
    config: &WebRtcConfig,
    headers: &HeaderMap,
    id: &str,
    query: Result<Query<SessionQuery>, ApiError>,
) -> Result<StatusCode, ApiError> {
    if !config.enabled {
        return Err(disabled());
    }
    let who = bearer(state, headers, true).await?;
    let Query(q) = query?;
    let account = match who {
        Bearer::Key(auth) => target(&auth, q.account_id, Scope::Write)?,
        Bearer::Call(grant) => {
            if q.account_id.is_some() {
                return Err(ApiError::field(
                    "account_id",
                    "a call token names its own account",
                ));
            }
            grant.account_id
        }
    };
    if state.browser_calls.hang_up(id, &account) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("call"))
    }
}

/// The OPTIONS answer: 204 with `Allow`, the CORS preflight's headers (for an allowed
/// origin) and the ICE servers' `Link`s (TURN's only for a valid bearer).
async fn options(state: &ApiState, headers: &HeaderMap, allow: &'static str) -> Response {
    let config = state.browser_calls.config();
    if !config.enabled {
        return finish(&config, headers, disabled());
    }
    // A preflight carries no credentials; a WHIP client's own OPTIONS may.
    let authenticated = match bearer_token(headers) {
        Some(_) => match bearer(state, headers, false).await {
            Ok(Bearer::Call(_)) => true,
            Ok(Bearer::Key(auth)) => auth.0.scope >= Scope::Write,
            Err(_) => false,
        },
        None => false,
    };
    let response = (
        StatusCode::NO_CONTENT,
        [(header::ALLOW, HeaderValue::from_static(allow))],
    )
        .into_response();
    let response = with_links(response, ice_links(&config.ice_servers, authenticated));
    finish(&config, headers, response)
}

/// The WHIP endpoint's options: the CORS preflight's answer (for an origin in
/// `webrtc.allowed_origins` or the server's own) and the ICE servers as `Link` headers (TURN
/// servers, which carry credentials, only when the request has a valid bearer).
#[utoipa::path(
    options,
    path = "/v1/webrtc/whip",
    operation_id = "whip_options",
    tag = "webrtc",
    responses(
        (status = 204, description = "`Allow`, the CORS headers for an allowed `Origin`, and one `Link: <url>; rel=\"ice-server\"` per ICE server URL"),
        (status = 404, description = "Browser calls are disabled (`webrtc_disabled`)", body = ErrorBody),
    ),
)]
async fn preflight_endpoint(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    options(&state, &headers, "POST, OPTIONS").await
}

/// A WHIP session's options: the CORS preflight's answer for its `DELETE`, and the ICE
/// servers as for the endpoint.
#[utoipa::path(
    options,
    path = "/v1/webrtc/whip/{id}",
    operation_id = "whip_session_options",
    tag = "webrtc",
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 204, description = "`Allow`, the CORS headers for an allowed `Origin`, and the ICE servers' `Link`s"),
        (status = 404, description = "Browser calls are disabled (`webrtc_disabled`)", body = ErrorBody),
    ),
)]
async fn preflight_session(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    options(&state, &headers, "DELETE, OPTIONS").await
}

/// Any other method on a WHIP path: 405 with `Allow`. `PATCH` on a session (trickle ICE, ICE
/// restart) says why the server takes none.
async fn not_allowed(
    State(state): State<ApiState>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let config = state.browser_calls.config();
    if !config.enabled {
        return finish(&config, &headers, disabled());
    }
    let session = uri.path() != WHIP;
    let allow = if session {
        "DELETE, OPTIONS"
    } else {
        "POST, OPTIONS"
    };
    let message = if session && method == Method::PATCH {
        "trickle ICE and ICE restarts are not supported: the server is ICE-lite; send every \
         ICE candidate in the offer (wait for ICE gathering to complete) and start a new call \
         to restart"
            .to_string()
    } else {
        format!("{method} is not allowed here (allowed: {allow})")
    };
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    );
    finish(
        &config,
        &headers,
        ([(header::ALLOW, HeaderValue::from_static(allow))], error),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(urls: &[&str], user: Option<&str>, pass: Option<&str>) -> IceServer {
        IceServer {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            username: user.map(str::to_string),
            credential: pass.map(str::to_string),
        }
    }

    #[test]
    fn ice_servers_become_link_headers() {
        let servers = [
            server(&["stun:stun.example:3478"], None, None),
            server(
                &[
                    "turn:turn.example:3478?transport=udp",
                    "turns:turn.example:5349",
                ],
                Some("u"),
                Some("p\"q"),
            ),
        ];
        let links: Vec<String> = ice_links(&servers, true)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            links,
            [
                r#"<stun:stun.example:3478>; rel="ice-server""#,
                r#"<turn:turn.example:3478?transport=udp>; rel="ice-server"; username="u"; credential="p\"q"; credential-type="password""#,
                r#"<turns:turn.example:5349>; rel="ice-server"; username="u"; credential="p\"q"; credential-type="password""#,
            ]
        );
        let public = ice_links(&servers, false);
        assert_eq!(public.len(), 1);
    }

    #[test]
    fn origins_are_listed_any_or_the_servers_own() {
        let listed = vec!["https://shop.example".to_string()];
        assert!(origin_allowed(&listed, "https://shop.example", None));
        assert!(origin_allowed(&listed, "https://SHOP.example:443", None));
        assert!(!origin_allowed(&listed, "http://shop.example", None));
        assert!(!origin_allowed(&listed, "https://evil.example", None));
        assert!(!origin_allowed(&listed, "null", Some("parley.example")));
        // The server's own pages.
        assert!(origin_allowed(
            &[],
            "http://127.0.0.1:8080",
            Some("127.0.0.1:8080")
        ));
        assert!(origin_allowed(
            &[],
            "https://parley.example",
            Some("parley.example")
        ));
        assert!(origin_allowed(
            &[],
            "https://parley.example",
            Some("parley.example:443")
        ));
        assert!(!origin_allowed(
            &[],
            "https://parley.example.evil",
            Some("parley.example")
        ));
        assert!(!origin_allowed(&[], "https://evil.example", None));
        // Any.
        let any = vec!["*".to_string()];
        assert!(origin_allowed(&any, "https://anything.example", None));
    }

    #[test]
    fn cors_headers_only_for_allowed_origins() {
        let config = WebRtcConfig {
            allowed_origins: vec!["https://shop.example".into()],
            ..WebRtcConfig::default()
        };
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("parley.example"));
        assert_eq!(cors(&config, &h).len(), 1, "Vary only without an Origin");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(cors(&config, &h).len(), 1);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://shop.example"),
        );
        let out = cors(&config, &h);
        let allow = out
            .iter()
            .find(|(n, _)| n == header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|(_, v)| v.to_str().unwrap());
        assert_eq!(allow, Some("https://shop.example"));
        assert!(!out
            .iter()
            .any(|(n, _)| n == header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn the_call_page_url_follows_the_host_and_the_proxy() {
        let mut h = HeaderMap::new();
        assert_eq!(call_page_url(&h, "pwt_x"), "/call?token=pwt_x");
        h.insert(header::HOST, HeaderValue::from_static("calls.example:8080"));
        assert_eq!(
            call_page_url(&h, "pwt_x"),
            "http://calls.example:8080/call?token=pwt_x"
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        assert_eq!(
            call_page_url(&h, "pwt_x"),
            "https://calls.example:8080/call?token=pwt_x"
        );
        h.insert(header::HOST, HeaderValue::from_static("evil.example/x?"));
        assert_eq!(call_page_url(&h, "pwt_x"), "/call?token=pwt_x");
    }

    #[test]
    fn bearer_tokens_are_read_in_any_case() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer pwt_a"),
        );
        assert_eq!(bearer_token(&h), Some("pwt_a"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn refusals_keep_their_status() {
        for (refusal, status) in [
            (BrowserCallRefusal::BadSdp("x".into()), 400),
            (BrowserCallRefusal::NotAcceptable("no audio".into()), 406),
            (BrowserCallRefusal::NoCredit, 402),
            (BrowserCallRefusal::CallLimit(2), 429),
            (BrowserCallRefusal::Draining, 503),
            (BrowserCallRefusal::Disabled, 404),
        ] {
            let why = refusal.to_string();
            let e = ApiError::from(refusal);
            assert_eq!(e.status.as_u16(), status);
            assert_eq!(e.message, why);
        }
    }

    #[test]
    fn sdp_content_type_with_parameters() {
        let mut h = HeaderMap::new();
        assert!(!is_sdp(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/SDP; charset=utf-8"),
        );
        assert!(is_sdp(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_sdp(&h));
    }
}
