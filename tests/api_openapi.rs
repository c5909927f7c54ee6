//! `GET /openapi.json` against the real binary: a valid OpenAPI 3.x document with the API key
//! scheme, and every route is in it, both ways.
//!
//! - Document to router: every operation in the document is sent to the server (dummy ids in
//!   the path, no key) and must reach a handler: not the JSON "route not found" fallback, not
//!   405. An operation that declares the bearer scheme must answer 401 without a key, one that
//!   does not must not; every status seen must be one the operation documents.
//! - Router to document: the routes come from `utoipa_axum::routes!`, which takes the method
//!   and path from the handler's `#[utoipa::path]`, so those cannot be missing. What can is a
//!   route added the plain axum way (`.route("/x", get(h))`, `.route_service`, `.nest`,
//!   `.nest_service`): axum cannot list its routes, so the sources are read instead, and
//!   every such call under `src/` must name a literal path listed in `NOT_IN_DOCUMENT` with
//!   the reason (under `src/api/` a non-literal path is refused too). At run time, each path
//!   of the document is also tried with the methods it does not list: they must answer 405,
//!   so no undocumented method hides on a documented path.
//! - The schemas are checked against real answers: each request body schema's fields must be
//!   exactly the fields the handler accepts (it names them when refusing an unknown one), and
//!   the answers of a run through the API (accounts, keys, billing, leases, agents, numbers,
//!   webhooks, messages sent through a fake Twilio, contacts, messaging settings, chat
//!   tokens, calls, records) must fit their documented schema, field for field.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::fakes::twilio::FakeTwilio;
use support::sms::{as_env, sms_env, twilio_webhook};
use support::*;

/// Where the run-through's Twilio reaches Parley (its webhooks are signed over this URL).
const PUBLIC_URL: &str = "https://sms.example.com";

/// Routes served but left out of the document on purpose, with why. A plain `.route(...)`
/// anywhere under `src/` must be listed here (or, better, registered with `routes!`).
const NOT_IN_DOCUMENT: &[(&str, &str)] = &[
    ("/", "the ops page: HTML for browsers, not part of the API"),
    ("/ops.js", "the ops page's script"),
    ("/ops.css", "the ops page's style sheet"),
    (
        "/call",
        "the browser call page: HTML for browsers, not part of the API",
    ),
    ("/call/call.js", "the call page's script"),
    (
        "/call/call.css",
        "the call page's (and widget's) style sheet",
    ),
    (
        "/widget.js",
        "the embeddable call widget: the call page's script",
    ),
];

/// The methods tried on every documented path (HEAD and OPTIONS are axum's own).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Axum's router calls that add a route without a `#[utoipa::path]`.
const PLAIN_ROUTE_CALLS: &[&str] = &[".route(", ".route_service(", ".nest(", ".nest_service("];

fn document(p: &Parley) -> Value {
    let (status, text) = p.get("/openapi.json").expect("GET /openapi.json");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("/openapi.json is not JSON: {e}"))
}

/// (METHOD, path template, operation) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                out.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

/// `template` with each `{name}` replaced by `ids[name]`, or by a dummy id.
fn concrete(template: &str, ids: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    while let Some(start) = out.find('{') {
        let end = start + out[start..].find('}').expect("closing brace");
        let name = &out[start + 1..end];
        let value = ids
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| format!("probe_{name}"));
        out.replace_range(start..=end, &value);
    }
    out
}

/// The server's JSON "route not found" (the fallback) or axum's 405.
fn unrouted(status: u16, body: &Value) -> bool {
    status == 405 || (status == 404 && body["error"]["message"] == "route not found")
}

/// (status, body parsed as JSON, or as a string when it is not).
fn send(
    p: &Parley,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, text) = http_request(p.http_addr, method, path, key, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

fn is_bearer(op: &Value) -> bool {
    op["security"] == json!([{ "bearer": [] }])
}

#[test]
fn the_document_is_openapi_3_with_the_bearer_scheme() {
    let p = Parley::start(&[]);
    let doc = document(&p);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Parley");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(scheme["bearerFormat"], "pk_<id>_<secret>", "{scheme}");
    let chat = &doc["components"]["securitySchemes"]["chat_token"];
    assert_eq!(
        (&chat["type"], &chat["in"], &chat["name"]),
        (&json!("apiKey"), &json!("query"), &json!("token")),
        "{chat}"
    );

    let ops = operations(&doc);
    assert!(ops.len() > 30, "only {} operations", ops.len());
    let mut ids = BTreeSet::new();
    for (method, path, op) in &ops {
        let at = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(
            ids.insert(id.to_string()),
            "{at}: operationId {id} is used twice"
        );
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{at}: no tag"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{at}: no responses");
        for (status, r) in responses {
            assert!(
                r["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{at} {status}: no description"
            );
        }
        // Every `{name}` of the path is a required path parameter, and nothing else is.
        let in_path: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(n, _)| n))
            .collect();
        let params: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .inspect(|p| assert_eq!(p["required"], true, "{at}: {p}"))
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(in_path, params, "{at}: path parameters");
        // The `/v1` API needs a key, but the web chat socket, which needs a chat token (minted
        // with a key); health, metrics, this document and Twilio's webhooks (checked against
        // Twilio's signature) need neither.
        let chat_token = op["security"] == json!([{ "chat_token": [] }]);
        assert!(!chat_token || path == "/v1/chat", "{at}: a chat token");
        assert_eq!(
            is_bearer(op) || chat_token,
            path.starts_with("/v1/"),
            "{at}: security"
        );
        if is_bearer(op) {
            assert!(responses.contains_key("401"), "{at}: 401 not documented");
        }
    }
    // Every reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    // The JSON error body is one shared schema.
    let error = &doc["components"]["schemas"]["ErrorDetail"]["properties"];
    for field in ["code", "message", "field"] {
        assert!(
            error.get(field).is_some(),
            "ErrorDetail lacks {field}: {error}"
        );
    }
}

/// Document to router: every documented operation reaches a handler; every other method on a
/// documented path is a 405.
#[test]
fn every_documented_operation_is_routed() {
    let p = Parley::start(&[]);
    let doc = document(&p);
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path, op) in operations(&doc) {
        by_path
            .entry(path.clone())
            .or_default()
            .insert(method.clone());
        let at = format!("{method} {path}");
        let (status, body) = send(&p, &method, &concrete(&path, &[]), None, None);
        assert!(
            !unrouted(status, &body),
            "{at} is documented but not routed: {status} {body}"
        );
        if is_bearer(op) {
            assert_eq!(status, 401, "{at} without a key: {body}");
        } else {
            assert_ne!(status, 401, "{at} needs a key but documents none");
        }
        assert!(
            op["responses"].get(status.to_string()).is_some(),
            "{at} answered {status}, which it does not document"
        );
    }
    for (path, documented) in &by_path {
        for method in METHODS.iter().filter(|m| !documented.contains(**m)) {
            let (status, body) = send(&p, method, &concrete(path, &[]), None, None);
            assert_eq!(
                status, 405,
                "{method} {path} is routed but not in the document: {status} {body}"
            );
        }
    }
    // The control: a path nobody routes gets the fallback, so the check above can fail.
    let (status, body) = send(&p, "GET", "/v1/no-such-route", None, None);
    assert!(unrouted(status, &body), "{status} {body}");
    // What is left out on purpose is really served.
    for (path, why) in NOT_IN_DOCUMENT {
        assert!(
            doc["paths"].get(*path).is_none(),
            "{path} is documented after all"
        );
        let (status, body) = send(&p, "GET", path, None, None);
        assert!(
            !unrouted(status, &body),
            "{path} ({why}) is not served: {status}"
        );
    }
}

/// Every `.route(` / `.route_service(` / `.nest(` / `.nest_service(` call in `text` (comments
/// removed): (offset, call, the literal path or None).
fn plain_routes(text: &str) -> Vec<(usize, &'static str, Option<String>)> {
    let mut out = Vec::new();
    for call in PLAIN_ROUTE_CALLS {
        for (at, _) in text.match_indices(call) {
            let rest = text[at + call.len()..].trim_start();
            let literal = rest
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .map(|(lit, _)| lit.to_string());
            out.push((at, *call, literal));
        }
    }
    out
}

/// `source` without `//` comments (doc comments included).
fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| {
            let code = if line.trim_start().starts_with("//") {
                ""
            } else {
                line.split(" //").next().unwrap_or("")
            };
            format!("{code}\n")
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Router to document: no route is added around `routes!` (see the top of this file).
#[test]
fn every_route_in_the_sources_is_documented() {
    let p = Parley::start(&[]);
    let doc = document(&p);
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "{files:?}");
    let mut problems = Vec::new();
    let mut allowed_seen = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let text = without_comments(&std::fs::read_to_string(file).unwrap());
        let in_api = rel.starts_with("src/api/");
        for (at, call, literal) in plain_routes(&text) {
            let line = text[..at].lines().count();
            match literal {
                Some(path) => {
                    if NOT_IN_DOCUMENT.iter().any(|(p, _)| *p == path) {
                        allowed_seen.insert(path);
                    } else {
                        problems.push(format!(
                            "{rel}:{line}: {call}\"{path}\", …) adds a route that /openapi.json \
                             lacks{}: register it with routes!() and a #[utoipa::path], or \
                             list it in NOT_IN_DOCUMENT with why",
                            if doc["paths"].get(&path).is_some() {
                                " (a method of it, at least)"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                // Elsewhere `.route(` is also, e.g., the store's routing of a dialled number.
                None if in_api => problems.push(format!(
                    "{rel}:{line}: {call}…) with a path that is not a literal: cannot be checked \
                     against /openapi.json; use routes!() and a #[utoipa::path]"
                )),
                None => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The list holds no path that is no longer routed the plain way.
    for (path, why) in NOT_IN_DOCUMENT {
        assert!(
            allowed_seen.contains(*path),
            "NOT_IN_DOCUMENT lists {path} ({why}) but no source routes it: remove it"
        );
    }
    // The scan does see a plain route (so it can fail): the ops page's.
    assert!(!plain_routes(&without_comments(".route(\"/x\", get(h))")).is_empty());
}

/// The schema behind `$ref`s, and an object's properties and required fields through `allOf`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(&r[1..]).expect("$ref")),
        None => schema,
    }
}

fn object_shape(
    doc: &Value,
    schema: &Value,
) -> Option<(BTreeMap<String, Value>, BTreeSet<String>)> {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        let mut props = BTreeMap::new();
        let mut required = BTreeSet::new();
        for part in parts {
            let (p, r) = object_shape(doc, part)?;
            props.extend(p);
            required.extend(r);
        }
        return Some((props, required));
    }
    let props = schema["properties"].as_object()?;
    let required = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some((
        props.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        required,
    ))
}

/// Whether `v` fits `schema`: types, enums, array items, and objects field for field (no
/// field the schema lacks, every required one present).
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[key].as_array() {
            return if variants.iter().any(|s| conforms(doc, s, v, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: {v} fits none of {key} {schema}"))
            };
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            return Err(format!("{at}: {v} is not one of {allowed:?}"));
        }
    }
    if let Some((props, required)) = object_shape(doc, schema) {
        if v.is_null() && type_allows(schema, "null") {
            return Ok(());
        }
        let obj = v
            .as_object()
            .ok_or_else(|| format!("{at}: {v} is not an object"))?;
        for key in obj.keys() {
            if !props.contains_key(key) {
                return Err(format!(
                    "{at}: field {key:?} is not in the schema ({:?})",
                    props.keys()
                ));
            }
        }
        for key in &required {
            if !obj.contains_key(key) {
                return Err(format!("{at}: required field {key:?} is missing from {v}"));
            }
        }
        for (key, value) in obj {
            conforms(doc, &props[key], value, &format!("{at}.{key}"))?;
        }
        return Ok(());
    }
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if schema.get("type").is_some()
        && !type_allows(schema, kind)
        && !(kind == "integer" && type_allows(schema, "number"))
    {
        return Err(format!(
            "{at}: {v} is a {kind}, the schema says {}",
            schema["type"]
        ));
    }
    if let (Value::Array(items), Some(item)) = (v, schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            conforms(doc, item, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn type_allows(schema: &Value, kind: &str) -> bool {
    match &schema["type"] {
        Value::String(t) => t == kind,
        Value::Array(ts) => ts.iter().any(|t| t == kind),
        _ => kind != "null",
    }
}

/// Runs requests and checks each answer against the document: the status is documented,
/// and a JSON body fits the documented schema.
struct Checked<'a> {
    p: &'a Parley,
    doc: &'a Value,
    key: String,
    seen: BTreeSet<String>,
}

impl Checked<'_> {
    /// `method template` on `path` (the template with its ids): (status, body).
    fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(method, template, path, &[], body)
    }

    /// [`Checked::call`] with extra request headers.
    fn call_with(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let at = format!("{method} {path}");
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the document");
        let body = body.map(|b| b.to_string());
        let (status, text) = http_request_with(
            self.p.http_addr,
            method,
            path,
            Some(&self.key),
            headers,
            body.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{at}: {e}"));
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{at} answered {status}, which it does not document: {answer}"
        );
        match response["content"].get("application/json") {
            Some(media) => {
                if let Err(e) = conforms(self.doc, &media["schema"], &answer, &at) {
                    panic!("{at} {status}: the answer does not fit the document: {e}\n{answer}");
                }
            }
            None => assert!(
                !answer.is_object() && !answer.is_array(),
                "{at} {status}: a JSON answer the document does not describe: {answer}"
            ),
        }
        self.seen.insert(format!("{method} {template} {status}"));
        (status, answer)
    }
}

/// The schemas hold: request bodies list exactly the fields the handlers take, and real
/// answers fit the documented answer schemas.
#[test]
fn request_bodies_and_answers_match_the_document() {
    // SMS is configured (against a fake Twilio) so that the messages' answers are real ones.
    let twilio = FakeTwilio::start();
    let env = sms_env(&twilio, &[("PARLEY_SMS_PUBLIC_URL", PUBLIC_URL)]);
    let p = Parley::start(&as_env(&env));
    let doc = document(&p);
    let mut api = Checked {
        p: &p,
        doc: &doc,
        key: p.printed_admin_key(),
        seen: BTreeSet::new(),
    };

    // A run through the API, every answer checked.
    let (s, acc) = api.call(
        "POST",
        "/v1/accounts",
        "/v1/accounts",
        Some(json!({"name": "Clinic"})),
    );
    assert_eq!(s, 201);
    let acc = acc["id"].as_str().unwrap().to_string();
    let ids = [("id", acc.as_str())];
    api.call("GET", "/v1/accounts", "/v1/accounts", None);
    let one = concrete("/v1/accounts/{id}", &ids);
    assert_eq!(api.call("GET", "/v1/accounts/{id}", &one, None).0, 200);
    let keys = concrete("/v1/accounts/{id}/keys", &ids);
    let (s, key) = api.call(
        "POST",
        "/v1/accounts/{id}/keys",
        &keys,
        Some(json!({"scope": "write"})),
    );
    assert_eq!(s, 201);
    let key_id = key["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.call("GET", "/v1/accounts/{id}/keys", &keys, None).0,
        200
    );
    let revoke = concrete(
        "/v1/accounts/{id}/keys/{key_id}",
        &[("id", &acc), ("key_id", &key_id)],
    );
    assert_eq!(
        api.call("DELETE", "/v1/accounts/{id}/keys/{key_id}", &revoke, None)
            .0,
        200
    );

    let plan = concrete("/v1/accounts/{id}/plan", &ids);
    let body = json!({"rate_per_minute": 60_000, "increment_s": 6});
    assert_eq!(
        api.call("PUT", "/v1/accounts/{id}/plan", &plan, Some(body))
            .0,
        200
    );
    let topups = concrete("/v1/accounts/{id}/topups", &ids);
    let body = json!({"amount": 10_000_000});
    assert_eq!(
        api.call("POST", "/v1/accounts/{id}/topups", &topups, Some(body))
            .0,
        201
    );
    let balance = concrete("/v1/accounts/{id}/balance", &ids);
    assert_eq!(
        api.call("GET", "/v1/accounts/{id}/balance", &balance, None)
            .0,
        200
    );
    let body = json!({"account_id": acc, "call_id": "c1", "seconds": 30});
    let (s, lease) = api.call("POST", "/v1/leases", "/v1/leases", Some(body));
    assert_eq!(s, 201);
    let lease = lease["id"].as_str().unwrap().to_string();
    let lids = [("id", lease.as_str())];
    let one = concrete("/v1/leases/{id}", &lids);
    assert_eq!(api.call("GET", "/v1/leases/{id}", &one, None).0, 200);
    let renew = concrete("/v1/leases/{id}/renew", &lids);
    let body = json!({"used_seconds": 20, "seconds": 30});
    assert_eq!(
        api.call("POST", "/v1/leases/{id}/renew", &renew, Some(body))
            .0,
        200
    );
    let release = concrete("/v1/leases/{id}/release", &lids);
    let body = json!({"used_seconds": 40});
    assert_eq!(
        api.call("POST", "/v1/leases/{id}/release", &release, Some(body))
            .0,
        200
    );
    // An error answer fits the shared error schema (checked like any other).
    let body = json!({"used_seconds": 40});
    assert_eq!(
        api.call("POST", "/v1/leases/{id}/release", &release, Some(body))
            .0,
        409
    );

    let body = json!({"account_id": acc, "name": "Front desk", "prompt": "Be brief.",
        "language": "en", "max_duration_s": 600});
    let (s, agent) = api.call("POST", "/v1/agents", "/v1/agents", Some(body));
    assert_eq!(s, 201);
    let agent = agent["id"].as_str().unwrap().to_string();
    let one = concrete("/v1/agents/{id}", &[("id", &agent)]);
    let list = format!("/v1/agents?account_id={acc}");
    assert_eq!(api.call("GET", "/v1/agents", &list, None).0, 200);
    assert_eq!(api.call("GET", "/v1/agents/{id}", &one, None).0, 200);
    let body = json!({"name": "Front desk", "greeting": "Hello!", "voice": "alloy"});
    assert_eq!(api.call("PUT", "/v1/agents/{id}", &one, Some(body)).0, 200);
    let body = json!({"account_id": acc, "number": "+1 (555) 123-0099", "agent_id": agent});
    assert_eq!(
        api.call("POST", "/v1/numbers", "/v1/numbers", Some(body)).0,
        201
    );
    let list = format!("/v1/numbers?account_id={acc}");
    assert_eq!(api.call("GET", "/v1/numbers", &list, None).0, 200);
    let number = "/v1/numbers/+15551230099";
    assert_eq!(api.call("GET", "/v1/numbers/{number}", number, None).0, 200);
    let body = json!({"agent_id": null});
    assert_eq!(
        api.call("PUT", "/v1/numbers/{number}", number, Some(body))
            .0,
        200
    );
    assert_eq!(
        api.call("DELETE", "/v1/numbers/{number}", number, None).0,
        204
    );
    assert_eq!(api.call("DELETE", "/v1/agents/{id}", &one, None).0, 204);

    let body = json!({"url": "http://127.0.0.1:9/hook", "events": ["call.ended"]});
    let (s, hook) = api.call("POST", "/v1/webhooks", "/v1/webhooks", Some(body));
    assert_eq!(s, 201);
    let hook = hook["id"].as_str().unwrap().to_string();
    assert_eq!(api.call("GET", "/v1/webhooks", "/v1/webhooks", None).0, 200);
    let deliveries = concrete("/v1/webhooks/{id}/deliveries", &[("id", &hook)]);
    assert_eq!(
        api.call("GET", "/v1/webhooks/{id}/deliveries", &deliveries, None)
            .0,
        200
    );
    let one = concrete("/v1/webhooks/{id}", &[("id", &hook)]);
    assert_eq!(api.call("DELETE", "/v1/webhooks/{id}", &one, None).0, 204);

    text_channels(&mut api, &acc, &twilio);

    assert_eq!(api.call("GET", "/v1/calls", "/v1/calls", None).0, 200);
    assert_eq!(
        api.call("GET", "/v1/calls/{id}", "/v1/calls/nope", None).0,
        404
    );
    assert_eq!(api.call("GET", "/v1/cdrs", "/v1/cdrs", None).0, 200);
    assert_eq!(
        api.call("GET", "/v1/cdrs", "/v1/cdrs?status=maybe", None).0,
        422
    );
    assert_eq!(
        api.call("GET", "/v1/cdrs/{id}", "/v1/cdrs/nope", None).0,
        404
    );
    assert_eq!(api.call("GET", "/healthz", "/healthz", None).0, 200);
    assert_eq!(api.call("GET", "/metrics", "/metrics", None).0, 200);

    // Request bodies: a field the handler does not know is refused with the list of those it
    // does, which must be the schema's fields. (An agent exists for PUT /v1/agents/{id}.)
    let body = json!({"account_id": acc, "name": "Probe"});
    let (_, agent) = api.call("POST", "/v1/agents", "/v1/agents", Some(body));
    let agent = agent["id"].as_str().unwrap().to_string();
    let mut bodies = 0;
    for (method, template, op) in operations(&doc) {
        let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema") else {
            continue;
        };
        bodies += 1;
        let at = format!("{method} {template}");
        let (fields, _) =
            object_shape(&doc, schema).unwrap_or_else(|| panic!("{at}: not an object"));
        let fields: BTreeSet<String> = fields.into_keys().collect();
        let ids: &[(&str, &str)] = if template.starts_with("/v1/agents/") {
            &[("id", &agent)]
        } else {
            &[]
        };
        let path = concrete(&template, ids);
        let (status, answer) = api.call(&method, &template, &path, Some(json!({"not_a_field": 1})));
        assert_eq!(status, 422, "{at}: {answer}");
        assert_eq!(answer["error"]["field"], "not_a_field", "{at}: {answer}");
        let known: BTreeSet<String> = answer["error"]["message"]
            .as_str()
            .and_then(|m| m.split_once("(known: "))
            .and_then(|(_, k)| k.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{at}: {answer}"))
            .split(", ")
            .map(String::from)
            .collect();
        assert_eq!(
            fields, known,
            "{at}: the schema's fields vs the fields the handler takes"
        );
    }
    assert!(bodies >= 12, "only {bodies} request bodies");
    eprintln!("checked against the document: {:#?}", api.seen);
}

/// The run-through's part for SMS, contacts, messaging settings and web chat tokens, on
/// account `acc` (named with `account_id`: the key is the operator's).
fn text_channels(api: &mut Checked<'_>, acc: &str, twilio: &FakeTwilio) {
    let body = json!({"account_id": acc, "number": "+15551230098"});
    assert_eq!(
        api.call("POST", "/v1/numbers", "/v1/numbers", Some(body)).0,
        201
    );
    let messaging = concrete("/v1/accounts/{id}/messaging", &[("id", acc)]);
    let template = "/v1/accounts/{id}/messaging";
    assert_eq!(api.call("GET", template, &messaging, None).0, 200);
    let every_day: serde_json::Map<String, Value> =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| (d.to_string(), json!([["00:00", "24:00"]])))
            .collect();
    let body = json!({"business_hours": {"timezone": "UTC", "weekly": every_day},
        "sms_per_minute": 1000});
    let (s, settings) = api.call("PUT", template, &messaging, Some(body));
    assert_eq!(s, 200, "{settings}");
    let body = json!({"business_hours": {"timezone": "Mars/Olympus", "weekly": {}}});
    assert_eq!(api.call("PUT", template, &messaging, Some(body)).0, 422);

    let body = json!({"account_id": acc, "to": "+15557654321", "body": "See you at 3pm."});
    let (s, sent) = api.call("POST", "/v1/messages", "/v1/messages", Some(body.clone()));
    assert_eq!(s, 201, "{sent}");
    let id = sent["id"].as_str().unwrap().to_string();
    let key = [("Idempotency-Key", "openapi-1")];
    let path = "/v1/messages";
    assert_eq!(
        api.call_with("POST", path, path, &key, Some(body.clone()))
            .0,
        201
    );
    assert_eq!(api.call_with("POST", path, path, &key, Some(body)).0, 200);
    let other = json!({"account_id": acc, "to": "+15557654321", "body": "Another text."});
    assert_eq!(api.call_with("POST", path, path, &key, Some(other)).0, 409);
    let bad = json!({"account_id": acc, "to": "nope", "body": "x"});
    assert_eq!(api.call("POST", path, path, Some(bad)).0, 422);
    let body = json!({"account_id": acc, "to": ["+15557654322", "nope"], "body": "Reminder"});
    let bulk = "/v1/messages/bulk";
    assert_eq!(api.call("POST", bulk, bulk, Some(body)).0, 202);

    // A status callback, so that the message's `events` are checked too.
    let sid = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        twilio
            .messages()
            .into_iter()
            .find(|m| m.body == "See you at 3pm.")
            .map(|m| m.sid)
    })
    .expect("the message reaches the fake Twilio");
    // The callback names the message by Twilio's sid, which Parley records once Twilio's
    // answer is back: under load the fake can see the send before the store has the sid.
    let one = format!("/v1/messages/{id}?account_id={acc}");
    let recorded = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        let (_, m) = api.call("GET", "/v1/messages/{id}", &one, None);
        (m["provider_sid"] == sid.as_str()).then_some(())
    });
    assert!(recorded.is_some(), "Parley recorded the message's sid");
    let params = [("MessageSid", sid.as_str()), ("MessageStatus", "delivered")];
    let (s, text) = twilio_webhook(api.p, PUBLIC_URL, "/webhooks/twilio/status", &params);
    assert_eq!(s, 200, "{text}");
    let list = format!("/v1/messages?account_id={acc}&limit=1");
    let (s, page) = api.call("GET", "/v1/messages", &list, None);
    assert_eq!(s, 200);
    assert!(page["next_cursor"].is_string(), "{page}");
    let (s, detail) = api.call("GET", "/v1/messages/{id}", &one, None);
    assert_eq!(s, 200);
    assert_eq!(detail["events"][0]["status"], "delivered", "{detail}");
    assert_eq!(
        api.call("GET", "/v1/messages/{id}", "/v1/messages/msg_nope", None)
            .0,
        404
    );

    let list = format!("/v1/contacts?account_id={acc}");
    let (s, contacts) = api.call("GET", "/v1/contacts", &list, None);
    assert_eq!(s, 200);
    let contact = contacts["data"][0]["id"].as_str().unwrap().to_string();
    let one = format!("/v1/contacts/{contact}?account_id={acc}");
    assert_eq!(api.call("GET", "/v1/contacts/{id}", &one, None).0, 200);
    let body = json!({"language": "es"});
    assert_eq!(
        api.call("PATCH", "/v1/contacts/{id}", &one, Some(body)).0,
        200
    );
    let timeline = format!("/v1/contacts/{contact}/timeline?account_id={acc}");
    let (s, entries) = api.call("GET", "/v1/contacts/{id}/timeline", &timeline, None);
    assert_eq!(s, 200);
    assert!(!entries["data"].as_array().unwrap().is_empty(), "{entries}");

    let tokens = "/v1/chat/tokens";
    let body = json!({"account_id": acc, "contact": "visitor-1", "ttl_s": 600});
    assert_eq!(api.call("POST", tokens, tokens, Some(body)).0, 201);
    let body = json!({"account_id": acc, "contact": "visitor-1", "ttl_s": 5});
    assert_eq!(api.call("POST", tokens, tokens, Some(body)).0, 422);
}
