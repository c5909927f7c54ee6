//! `/v1/agents` and `/v1/numbers`: an account's agents (the conversation's settings) and its
//! phone numbers (E.164 DIDs, each answered by one of its agents). A key acts on its own
//! account; the operator's admin keys name another with `account_id` (in the body when
//! creating, in the query when listing).

use axum::extract::{Path, State};

use super::query::Query;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::body::Body;
use super::error::{ApiError, Conflict, Forbidden, Invalid, NotFound, Refused};
use super::schemas;
use super::ApiState;
use crate::store::accounts::Scope;
use crate::store::directory::{e164, Owned};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(list_numbers, create_number))
        .routes(routes!(get_number, update_number, delete_number))
}

/// `POST /v1/agents` and `PUT /v1/agents/{id}` (which replaces all the settings).
#[derive(ToSchema)]
pub struct AgentBody {
    pub name: String,
    /// When creating: the account (default: the key's; another needs the operator's admin
    /// key). Ignored when updating.
    pub account_id: Option<String>,
    /// The system prompt.
    pub prompt: Option<String>,
    /// What the agent says first.
    pub greeting: Option<String>,
    /// `auto` or a language code such as `en` or `es`.
    pub language: Option<String>,
    /// The voice, for every language the agent speaks (the configured TTS provider's).
    pub voice: Option<String>,
    /// The LLM model, on the configured LLM endpoint.
    pub llm_model: Option<String>,
    /// HTTP tools the LLM may call, instead of the config file's: `[{"name", "url",
    /// "description", "parameters" (JSON Schema, `type: object`), "timeout_ms"}]`; each is
    /// `POST url` with the arguments as the JSON body.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// The longest a call may last, in seconds, 0 to 604800 (0: no limit).
    pub max_duration_s: Option<i64>,
}

/// `POST /v1/numbers`
#[derive(ToSchema)]
pub struct NewNumber {
    /// Any spelling of an E.164 number: `+1 (555) 123-0001` is stored as `+15551230001`.
    pub number: String,
    /// The agent that answers it (default: the configured default agent).
    pub agent_id: Option<String>,
    /// The account (default: the key's; another needs the operator's admin key).
    pub account_id: Option<String>,
}

/// `PUT /v1/numbers/{number}`
#[derive(ToSchema)]
pub struct NumberChange {
    /// The agent that answers it; null or absent: the configured default agent.
    pub agent_id: Option<String>,
}

/// The agent settings an API client may set, checked one by one.
const AGENT_FIELDS: &[&str] = &[
    "name",
    "account_id",
    "prompt",
    "greeting",
    "language",
    "voice",
    "llm_model",
    "tools",
    "max_duration_s",
];

/// The body's agent settings as the stored JSON object.
fn agent_config(body: &Body) -> Result<(String, Value), ApiError> {
    body.only(AGENT_FIELDS)?;
    let name = body.required_string("name")?;
    let mut config = Map::new();
    for field in ["prompt", "greeting", "voice", "llm_model"] {
        if let Some(v) = body.string(field)? {
            config.insert(field.into(), json!(v));
        }
    }
    if let Some(language) = body.string("language")? {
        let ok = language == "auto"
            || (language.len() >= 2
                && language.len() <= 8
                && language
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-'));
        if !ok {
            return Err(ApiError::field(
                "language",
                "must be \"auto\" or a language code such as \"en\" or \"es\"",
            ));
        }
        config.insert("language".into(), json!(language));
    }
    match body.0.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            crate::config::agent::http_tools(items).map_err(|why| ApiError::field("tools", why))?;
            config.insert("tools".into(), Value::Array(items.clone()));
        }
        Some(_) => return Err(ApiError::field("tools", "must be an array of tools")),
    }
    if let Some(max) = body.int("max_duration_s")? {
        if !(0..=7 * 86_400).contains(&max) {
            return Err(ApiError::field("max_duration_s", "must be 0 to 604800"));
        }
        config.insert("max_duration_s".into(), json!(max));
    }
    Ok((name, Value::Object(config)))
}

/// The account a request names (`account_id`) or the key's own, checked for `scope`.
pub(super) fn target(auth: &Auth, named: Option<String>, scope: Scope) -> Result<String, ApiError> {
    let account = named.unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, scope, "account")?;
    Ok(account)
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AccountQuery {
    /// The account (default: the key's; another needs the operator's admin key).
    account_id: Option<String>,
}

/// Makes an agent.
#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "agents",
    security(("bearer" = [])),
    request_body = AgentBody,
    responses(
        (status = 201, description = "The new agent", body = schemas::Agent),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn create_agent(
    State(state): State<ApiState>,
    auth: Auth,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let account = target(&auth, body.string("account_id")?, Scope::Write)?;
    let (name, config) = agent_config(&body)?;
    let agent = state.store.create_agent(&account, &name, &config).await?;
    Ok((StatusCode::CREATED, Json(json!(agent))))
}

/// The account's agents.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    security(("bearer" = [])),
    params(AccountQuery),
    responses(
        (status = 200, description = "The agents", body = schemas::AgentList),
        NotFound, Refused,
    ),
)]
async fn list_agents(
    State(state): State<ApiState>,
    auth: Auth,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    let account = target(&auth, q.account_id, Scope::Read)?;
    Ok(Json(json!({ "data": state.store.agents(&account).await? })))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = schemas::Agent),
        NotFound, Refused,
    ),
)]
async fn get_agent(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = auth
        .owner_of(&state.store, Owned::Agent, &id, Scope::Read, "agent")
        .await?;
    Ok(Json(json!(state.store.agent(&account, &id).await?)))
}

/// Replaces an agent's name and settings.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}",
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    request_body = AgentBody,
    responses(
        (status = 200, description = "The agent", body = schemas::Agent),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn update_agent(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let account = auth
        .owner_of(&state.store, Owned::Agent, &id, Scope::Write, "agent")
        .await?;
    let (name, config) = agent_config(&body)?;
    Ok(Json(json!(
        state
            .store
            .update_agent(&account, &id, &name, &config)
            .await?
    )))
}

/// Deletes an agent (409 while a number points at it).
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 204, description = "Deleted"),
        Forbidden, NotFound, Conflict, Refused,
    ),
)]
async fn delete_agent(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let account = auth
        .owner_of(&state.store, Owned::Agent, &id, Scope::Write, "agent")
        .await?;
    state.store.delete_agent(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A number from the body or the path, as E.164.
fn number_field(raw: &str, field: &str) -> Result<String, ApiError> {
    e164(raw).ok_or_else(|| {
        ApiError::field(
            field,
            format!("{raw:?} is not an E.164 number (e.g. +15551234567)"),
        )
    })
}

/// Adds a number to the account (409 when another account has it).
#[utoipa::path(
    post,
    path = "/v1/numbers",
    tag = "numbers",
    security(("bearer" = [])),
    request_body = NewNumber,
    responses(
        (status = 201, description = "The new number", body = schemas::Number),
        Invalid, Forbidden, NotFound, Conflict, Refused,
    ),
)]
async fn create_number(
    State(state): State<ApiState>,
    auth: Auth,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body.only(&["number", "agent_id", "account_id"])?;
    let account = target(&auth, body.string("account_id")?, Scope::Write)?;
    let number = number_field(&body.required_string("number")?, "number")?;
    let agent = body.string("agent_id")?;
    let created = state
        .store
        .create_number(&account, &number, agent.as_deref())
        .await
        .map_err(|e| agent_field(e, agent.is_some()))?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

/// An agent that is not the account's is a wrong `agent_id`, not a missing route.
fn agent_field(e: crate::store::StoreError, had_agent: bool) -> ApiError {
    match e {
        crate::store::StoreError::NotFound("agent") if had_agent => {
            ApiError::field("agent_id", "no such agent in this account")
        }
        other => other.into(),
    }
}

/// The account's numbers.
#[utoipa::path(
    get,
    path = "/v1/numbers",
    tag = "numbers",
    security(("bearer" = [])),
    params(AccountQuery),
    responses(
        (status = 200, description = "The numbers", body = schemas::NumberList),
        NotFound, Refused,
    ),
)]
async fn list_numbers(
    State(state): State<ApiState>,
    auth: Auth,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    let account = target(&auth, q.account_id, Scope::Read)?;
    Ok(Json(
        json!({ "data": state.store.numbers(&account).await? }),
    ))
}

/// One number.
#[utoipa::path(
    get,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "The number, E.164, e.g. `+15551230001`")),
    responses(
        (status = 200, description = "The number", body = schemas::Number),
        NotFound, Refused,
    ),
)]
async fn get_number(
    State(state): State<ApiState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number = e164(&raw).ok_or_else(|| ApiError::not_found("number"))?;
    let account = auth
        .owner_of(&state.store, Owned::Number, &number, Scope::Read, "number")
        .await?;
    Ok(Json(json!(state.store.number(&account, &number).await?)))
}

/// Points a number at another agent.
#[utoipa::path(
    put,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "The number, E.164, e.g. `+15551230001`")),
    request_body = NumberChange,
    responses(
        (status = 200, description = "The number", body = schemas::Number),
        Invalid, Forbidden, NotFound, Refused,
    ),
)]
async fn update_number(
    State(state): State<ApiState>,
    auth: Auth,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    body.only(&["agent_id"])?;
    let number = e164(&raw).ok_or_else(|| ApiError::not_found("number"))?;
    let account = auth
        .owner_of(&state.store, Owned::Number, &number, Scope::Write, "number")
        .await?;
    let agent = body.string("agent_id")?;
    let updated = state
        .store
        .update_number(&account, &number, agent.as_deref())
        .await
        .map_err(|e| agent_field(e, agent.is_some()))?;
    Ok(Json(json!(updated)))
}

/// Removes a number from the account.
#[utoipa::path(
    delete,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "The number, E.164, e.g. `+15551230001`")),
    responses(
        (status = 204, description = "Deleted"),
        Forbidden, NotFound, Refused,
    ),
)]
async fn delete_number(
    State(state): State<ApiState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = e164(&raw).ok_or_else(|| ApiError::not_found("number"))?;
    let account = auth
        .owner_of(&state.store, Owned::Number, &number, Scope::Write, "number")
        .await?;
    state.store.delete_number(&account, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}
