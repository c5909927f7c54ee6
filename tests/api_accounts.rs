//! The control plane's accounts and API keys over HTTP against the real binary: the first
//! start prints one admin key, keys are scoped, revocable, and a key of account A can neither
//! read nor change anything of account B. Errors are JSON naming the field at fault.

mod support;

use serde_json::Value;
use support::*;

/// (status, parsed body) of a request; `None` sends no key.
fn call(
    p: &Parley,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    match key {
        Some(key) => p.api(method, path, key, &[], body),
        None => {
            let (status, text) = http_request(p.http_addr, method, path, None, body).unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
    }
}

fn printed_key(p: &Parley) -> String {
    p.printed_admin_key()
}

#[test]
fn accounts_and_keys_are_scoped_to_their_account() {
    let p = Parley::start(&[]);
    let root = printed_key(&p);
    assert!(root.starts_with("pk_"), "{root}");

    // No key, a wrong key: 401 with a JSON error.
    let (status, body) = call(&p, "GET", "/v1/accounts", None, None);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(call(&p, "GET", "/v1/accounts", Some("pk_x_y"), None).0, 401);

    // The operator makes two tenants, and an admin key for each.
    let (status, a) = call(
        &p,
        "POST",
        "/v1/accounts",
        Some(&root),
        Some(r#"{"name":"Clinic A"}"#),
    );
    assert_eq!(status, 201, "{a}");
    let (_, b) = call(
        &p,
        "POST",
        "/v1/accounts",
        Some(&root),
        Some(r#"{"name":"Clinic B"}"#),
    );
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (status, made) = call(
        &p,
        "POST",
        &format!("/v1/accounts/{a_id}/keys"),
        Some(&root),
        Some(r#"{"name":"a admin","scope":"admin"}"#),
    );
    assert_eq!(status, 201, "{made}");
    let key_a = made["key"].as_str().unwrap().to_string();
    let (_, made_b) = call(
        &p,
        "POST",
        &format!("/v1/accounts/{b_id}/keys"),
        Some(&root),
        Some(r#"{"scope":"admin"}"#),
    );
    let key_b_id = made_b["id"].as_str().unwrap().to_string();

    // A sees itself only; B's account, keys and key revocation are "not found" to A.
    let (_, list) = call(&p, "GET", "/v1/accounts", Some(&key_a), None);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a_id]);
    for (method, path) in [
        ("GET", format!("/v1/accounts/{b_id}")),
        ("GET", format!("/v1/accounts/{b_id}/keys")),
        ("POST", format!("/v1/accounts/{b_id}/keys")),
        ("DELETE", format!("/v1/accounts/{b_id}/keys/{key_b_id}")),
    ] {
        let (status, body) = call(&p, method, &path, Some(&key_a), Some("{}"));
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    // A cannot make accounts; the listing never shows secrets.
    assert_eq!(
        call(
            &p,
            "POST",
            "/v1/accounts",
            Some(&key_a),
            Some(r#"{"name":"x"}"#)
        )
        .0,
        403
    );
    let (_, keys) = call(
        &p,
        "GET",
        &format!("/v1/accounts/{b_id}/keys"),
        Some(&root),
        None,
    );
    let listed = keys["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed.iter().all(|k| k.get("key").is_none()), "{keys}");

    // A read key of A can read A but not make keys.
    let (_, read) = call(
        &p,
        "POST",
        &format!("/v1/accounts/{a_id}/keys"),
        Some(&key_a),
        Some(r#"{"scope":"read"}"#),
    );
    let key_read = read["key"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &p,
            "GET",
            &format!("/v1/accounts/{a_id}"),
            Some(&key_read),
            None
        )
        .0,
        200
    );
    let (status, body) = call(
        &p,
        "POST",
        &format!("/v1/accounts/{a_id}/keys"),
        Some(&key_read),
        Some("{}"),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Revoked: the key stops working at once.
    let read_id = read["id"].as_str().unwrap();
    let (status, _) = call(
        &p,
        "DELETE",
        &format!("/v1/accounts/{a_id}/keys/{read_id}"),
        Some(&key_a),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        call(
            &p,
            "GET",
            &format!("/v1/accounts/{a_id}"),
            Some(&key_read),
            None
        )
        .0,
        401
    );
}

#[test]
fn bad_bodies_name_the_field() {
    let p = Parley::start(&[]);
    let root = printed_key(&p);
    let cases = [
        (r#"{}"#, 422, Some("name")),
        (r#"{"name":""}"#, 422, Some("name")),
        (r#"{"name":5}"#, 422, Some("name")),
        (r#"{"name":"x","colour":"red"}"#, 422, Some("colour")),
        (r#"{"name":"#, 400, None),
        (r#"[1]"#, 400, None),
    ];
    for (body, status, field) in cases {
        let (got, json) = call(&p, "POST", "/v1/accounts", Some(&root), Some(body));
        assert_eq!(got, status, "{body}: {json}");
        assert_eq!(json["error"]["field"].as_str(), field, "{body}: {json}");
    }
    let (status, json) = call(
        &p,
        "POST",
        "/v1/accounts/acc_operator/keys",
        Some(&root),
        Some(r#"{"scope":"owner"}"#),
    );
    assert_eq!(
        (status, json["error"]["field"].as_str()),
        (422, Some("scope"))
    );
    let (status, json) = call(&p, "GET", "/v1/nothing", Some(&root), None);
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(http_get(p.http_addr, "/readyz").unwrap().0, 200);
}

#[test]
fn a_configured_admin_key_is_used_and_nothing_is_printed() {
    let key = "operator-key-from-the-environment-0001";
    let p = Parley::start(&[("PARLEY_API_ADMIN_KEY", key)]);
    assert!(!p.stdout().contains("admin API key"), "{}", p.stdout());
    let (status, body) = call(&p, "GET", "/v1/accounts", Some(key), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["id"], "acc_operator");
}
