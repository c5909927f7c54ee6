//! `/v1/cdrs`: call detail records, filtered by time range, number, agent and status, in
//! pages with an opaque cursor; `/v1/cdrs/export` streams them all as CSV or NDJSON, one
//! page of the database at a time.

use axum::body::Body as HttpBody;
use axum::extract::{Path, State};

use super::query::{cursor, page_limit, parse_cursor, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::error::{ApiError, InvalidQuery, NotFound, Refused};
use super::schemas;
use super::ApiState;
use crate::store::accounts::Scope;
use crate::store::cdr::{Cdr, CdrQuery};
use crate::store::clock::parse_rfc3339;
use crate::store::directory::e164;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(export))
        .routes(routes!(get_one))
}

#[derive(serde::Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct Filters {
    /// The account (default: the key's; another needs the operator's admin key).
    account_id: Option<String>,
    /// Calls started at or after this RFC 3339 time.
    from: Option<String>,
    /// Calls started before this RFC 3339 time.
    to: Option<String>,
    /// Calls to this configured number (E.164).
    number: Option<String>,
    agent_id: Option<String>,
    /// `answered` or `failed`.
    status: Option<String>,
    /// Records per page, 1 to 1000 (default 100; listing only).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `csv` or `ndjson` (default; export only).
    format: Option<String>,
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AccountQuery {
    /// The account (default: the key's; another needs the operator's admin key).
    account_id: Option<String>,
}

/// Rows fetched per database round trip while exporting.
const EXPORT_PAGE: i64 = 500;

fn time(field: &str, raw: &Option<String>) -> Result<Option<i64>, ApiError> {
    raw.as_deref()
        .map(|s| {
            parse_rfc3339(s).ok_or_else(|| {
                ApiError::field(field, "must be an RFC 3339 time, e.g. 2026-12-03T00:00:00Z")
            })
        })
        .transpose()
}

fn cursor_of(cdr: &Cdr) -> String {
    cursor(cdr.started_at, &cdr.id)
}

fn query(auth: &Auth, f: &Filters, limit: i64) -> Result<CdrQuery, ApiError> {
    let account = f
        .account_id
        .clone()
        .unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Read, "account")?;
    let answered = match f.status.as_deref() {
        None => None,
        Some("answered") => Some(true),
        Some("failed") => Some(false),
        Some(_) => return Err(ApiError::field("status", "must be answered or failed")),
    };
    let number = match &f.number {
        None => None,
        Some(n) => Some(e164(n).ok_or_else(|| ApiError::field("number", "not an E.164 number"))?),
    };
    Ok(CdrQuery {
        account_id: account,
        from: time("from", &f.from)?,
        to: time("to", &f.to)?,
        number,
        agent_id: f.agent_id.clone(),
        answered,
        after: f.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    })
}

/// Call records, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/cdrs",
    operation_id = "list_cdrs",
    tag = "cdrs",
    security(("bearer" = [])),
    params(Filters),
    responses(
        (status = 200, description = "A page of records", body = schemas::CdrPage),
        InvalidQuery, NotFound, Refused,
    ),
)]
async fn list(
    State(state): State<ApiState>,
    auth: Auth,
    Query(f): Query<Filters>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(f.limit)?;
    let q = query(&auth, &f, limit)?;
    let page = state.store.cdrs(&q).await?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(cursor_of))
        .flatten();
    Ok(Json(json!({ "data": page, "next_cursor": next })))
}

/// One call record.
#[utoipa::path(
    get,
    path = "/v1/cdrs/{id}",
    operation_id = "get_cdr",
    tag = "cdrs",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The record's id (the live call's id)"),
        AccountQuery,
    ),
    responses(
        (status = 200, description = "The record", body = schemas::Cdr),
        NotFound, Refused,
    ),
)]
async fn get_one(
    State(state): State<ApiState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    let account = q.account_id.unwrap_or_else(|| auth.0.account_id.clone());
    auth.on_account(&account, Scope::Read, "call record")?;
    Ok(Json(json!(state.store.cdr(&account, &id).await?)))
}

/// CSV columns, in order.
const CSV_COLUMNS: &[&str] = &[
    "id",
    "account_id",
    "agent_id",
    "call_id",
    "direction",
    "channel",
    "from_uri",
    "to_uri",
    "number",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "billable_seconds",
    "cost",
    "hangup_cause",
    "hangup_side",
    "final_code",
    "codec",
    "packets_lost",
    "loss_percent",
    "jitter_ms",
    "mos",
    "recording",
    "trunk",
    "node",
];

/// One CSV field, quoted when it must be (RFC 4180).
fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_line(cdr: &Cdr) -> String {
    let v = json!(cdr);
    let mut line = CSV_COLUMNS
        .iter()
        .map(|c| csv_field(&v[*c]))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Every record the filters match, streamed: CSV (a header line, then one line a record)
/// or NDJSON (one JSON record a line).
#[utoipa::path(
    get,
    path = "/v1/cdrs/export",
    operation_id = "export_cdrs",
    tag = "cdrs",
    security(("bearer" = [])),
    params(Filters),
    responses(
        (status = 200, description = "The records, newest first", content(
            (String = "text/csv; charset=utf-8"),
            (schemas::Cdr = "application/x-ndjson"),
        )),
        InvalidQuery, NotFound, Refused,
    ),
)]
async fn export(
    State(state): State<ApiState>,
    auth: Auth,
    Query(f): Query<Filters>,
) -> Result<Response, ApiError> {
    let csv = match f.format.as_deref().unwrap_or("ndjson") {
        "csv" => true,
        "ndjson" => false,
        _ => return Err(ApiError::field("format", "must be csv or ndjson")),
    };
    let q = query(&auth, &f, EXPORT_PAGE)?;
    let header_line = csv.then(|| format!("{}\r\n", CSV_COLUMNS.join(",")));
    // Page by page: the database hands over EXPORT_PAGE rows at a time, and each page is
    // sent before the next is read.
    let pages = futures_util::stream::unfold(Some(q), move |q| {
        let store = state.store.clone();
        async move {
            let mut q = q?;
            match store.cdrs(&q).await {
                Ok(page) => {
                    let done = (page.len() as i64) < q.limit;
                    q.after = page.last().map(|c| (c.started_at, c.id.clone()));
                    let mut chunk = String::new();
                    for cdr in &page {
                        if csv {
                            chunk.push_str(&csv_line(cdr));
                        } else {
                            chunk.push_str(&json!(cdr).to_string());
                            chunk.push('\n');
                        }
                    }
                    let next = (!done && !page.is_empty()).then_some(q);
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let head = futures_util::stream::iter(header_line.map(Ok::<_, std::io::Error>));
    let body = HttpBody::from_stream(futures_util::StreamExt::chain(head, pages));
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
