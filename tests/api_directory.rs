//! Agents and numbers over HTTP: CRUD within an account, nothing across accounts, numbers
//! normalised to E.164 and unique, agents in use not deletable, bad fields named.

mod support;

use serde_json::Value;
use support::*;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn agents_and_numbers_belong_to_one_account() {
    let p = Parley::start(&[]);
    let root = p.printed_admin_key();
    let mut keys = Vec::new();
    for name in ["A", "B"] {
        let (_, acc) = p.api(
            "POST",
            "/v1/accounts",
            &root,
            &[],
            Some(&format!(r#"{{"name":"{name}"}}"#)),
        );
        let (_, k) = p.api(
            "POST",
            &format!("/v1/accounts/{}/keys", id(&acc)),
            &root,
            &[],
            Some(r#"{"scope":"write"}"#),
        );
        keys.push(k["key"].as_str().unwrap().to_string());
    }
    let (a, b) = (&keys[0], &keys[1]);

    let (status, agent) = p.api(
        "POST",
        "/v1/agents",
        a,
        &[],
        Some(r#"{"name":"Reception","prompt":"You are the clinic's receptionist.","greeting":"Hello!","language":"auto","voice":"es","max_duration_s":600}"#),
    );
    assert_eq!(status, 201, "{agent}");
    assert_eq!(agent["config"]["language"], "auto");
    let agent_id = id(&agent);
    let (status, number) = p.api(
        "POST",
        "/v1/numbers",
        a,
        &[],
        Some(&format!(
            r#"{{"number":"+1 (555) 123-0001","agent_id":"{agent_id}"}}"#
        )),
    );
    assert_eq!(status, 201, "{number}");
    assert_eq!(number["number"], "+15551230001");

    // B sees none of it, cannot take the number, cannot point a number at A's agent.
    let (_, listed) = p.api("GET", "/v1/agents", b, &[], None);
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        p.api("GET", &format!("/v1/agents/{agent_id}"), b, &[], None)
            .0,
        404
    );
    assert_eq!(
        p.api("DELETE", &format!("/v1/agents/{agent_id}"), b, &[], None)
            .0,
        404
    );
    assert_eq!(
        p.api("GET", "/v1/numbers/+15551230001", b, &[], None).0,
        404
    );
    assert_eq!(
        p.api("DELETE", "/v1/numbers/%2B15551230001", b, &[], None)
            .0,
        404
    );
    let (status, _) = p.api(
        "POST",
        "/v1/numbers",
        b,
        &[],
        Some(r#"{"number":"+15551230001"}"#),
    );
    assert_eq!(status, 409, "a number has one owner");
    let (status, e) = p.api(
        "POST",
        "/v1/numbers",
        b,
        &[],
        Some(&format!(
            r#"{{"number":"+15551230002","agent_id":"{agent_id}"}}"#
        )),
    );
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("agent_id")),
        "{e}"
    );
    let (status, _) = p.api("GET", "/v1/agents?account_id=acc_operator", b, &[], None);
    assert_eq!(status, 404, "another account named explicitly");

    // A updates its agent; an agent that answers a number cannot be deleted.
    let (status, updated) = p.api(
        "PUT",
        &format!("/v1/agents/{agent_id}"),
        a,
        &[],
        Some(r#"{"name":"Front desk","language":"en"}"#),
    );
    assert_eq!(
        (status, updated["name"].as_str()),
        (200, Some("Front desk"))
    );
    assert_eq!(
        p.api("DELETE", &format!("/v1/agents/{agent_id}"), a, &[], None)
            .0,
        409
    );
    let (status, n) = p.api(
        "PUT",
        "/v1/numbers/+15551230001",
        a,
        &[],
        Some(r#"{"agent_id":null}"#),
    );
    assert_eq!((status, n["agent_id"].clone()), (200, Value::Null));
    assert_eq!(
        p.api("DELETE", &format!("/v1/agents/{agent_id}"), a, &[], None)
            .0,
        204
    );
    assert_eq!(
        p.api("DELETE", "/v1/numbers/+15551230001", a, &[], None).0,
        204
    );
    let (_, listed) = p.api("GET", "/v1/numbers", a, &[], None);
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_agent_and_number_fields_are_named() {
    let p = Parley::start(&[]);
    let root = p.printed_admin_key();
    let cases = [
        ("/v1/agents", r#"{"prompt":"x"}"#, "name"),
        (
            "/v1/agents",
            r#"{"name":"x","language":"english!"}"#,
            "language",
        ),
        (
            "/v1/agents",
            r#"{"name":"x","max_duration_s":-1}"#,
            "max_duration_s",
        ),
        (
            "/v1/agents",
            r#"{"name":"x","temperature":2}"#,
            "temperature",
        ),
        ("/v1/agents", r#"{"name":"x","tools":{}}"#, "tools"),
        (
            "/v1/agents",
            r#"{"name":"x","tools":[{"name":"t","url":"ftp://x"}]}"#,
            "tools",
        ),
        ("/v1/agents", r#"{"name":"x","llm_model":7}"#, "llm_model"),
        ("/v1/numbers", r#"{"number":"reception"}"#, "number"),
        ("/v1/numbers", r#"{}"#, "number"),
    ];
    for (path, body, field) in cases {
        let (status, e) = p.api("POST", path, &root, &[], Some(body));
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (422, Some(field)),
            "{path} {body}: {e}"
        );
    }
}
