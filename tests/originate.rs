//! Placing calls through the API (`POST /v1/calls`): a second Parley plays the carrier and
//! the callee (it answers every number and records what it hears), the first places the call
//! through its configured trunk, and its agent speaks once the call is answered.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// The callee: answers any number after a short ring, records what it hears, no agent.
fn callee(extra: &[(&str, &str)]) -> Parley {
    let mut env = vec![("PARLEY_AGENT_MODE", "off"), ("PARLEY_SIP_RING_MS", "300")];
    env.extend_from_slice(extra);
    Parley::start(&env)
}

/// A Parley whose trunk `carrier` points at `callee`; its agent is the built-in menu (no
/// provider needed: it speaks with the local voice).
fn caller(callee: &Parley) -> Parley {
    let trunks = format!(
        r#"[{{"name":"carrier","address":"{}","from":"+15550001111"}}]"#,
        callee.sip_addr
    );
    Parley::start(&[("PARLEY_SIP_TRUNKS", &trunks)])
}

fn rms(x: &[i16]) -> f64 {
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (sum / x.len().max(1) as f64).sqrt()
}

#[test]
fn a_call_placed_through_the_trunk_is_answered_and_the_agent_speaks() {
    if !require(
        "a_call_placed_through_the_trunk_is_answered_and_the_agent_speaks",
        "espeak-ng (scripts/setup.sh)",
        std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok(),
    ) {
        return;
    }
    let b = callee(&[]);
    let a = caller(&b);
    let root = a.printed_admin_key();
    let (status, placed) = a.api(
        "POST",
        "/v1/calls",
        &root,
        &[],
        Some(r#"{"to":"+1 (555) 765-4321"}"#),
    );
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["direction"], "outbound");
    assert_eq!(placed["number"], "+15557654321");
    assert!(
        ["dialing", "ringing"].contains(&placed["state"].as_str().unwrap()),
        "{placed}"
    );
    let id = placed["id"].as_str().unwrap().to_string();
    let call_id = placed["call_id"].as_str().unwrap().to_string();
    let answered = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, call) = a.api("GET", &format!("/v1/calls/{id}"), &root, &[], None);
        (call["state"] == "answered").then_some(call)
    })
    .expect("the callee answered");
    assert!(answered["answered_at"].is_string());
    // The callee got the INVITE for the number, from the trunk's caller ID.
    assert!(
        b.logs().contains("incoming call"),
        "the callee saw no call:\n{}",
        b.logs()
    );
    // Let the agent speak, then end the call through the API.
    std::thread::sleep(Duration::from_secs(4));
    let (status, _) = a.api("POST", &format!("/v1/calls/{id}/hangup"), &root, &[], None);
    assert_eq!(status, 202);
    let cdr: Value = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (status, cdr) = a.api("GET", &format!("/v1/cdrs/{id}"), &root, &[], None);
        (status == 200).then_some(cdr)
    })
    .expect("the call's record");
    assert_eq!(cdr["direction"], "outbound", "{cdr}");
    assert_eq!(cdr["trunk"], "carrier", "{cdr}");
    assert_eq!(cdr["final_code"], 200, "{cdr}");
    assert_eq!(cdr["hangup_side"], "parley", "{cdr}");
    assert!(
        cdr["from_uri"].as_str().unwrap().contains("+15550001111"),
        "{cdr}"
    );
    assert!(
        cdr["to_uri"].as_str().unwrap().contains("+15557654321"),
        "{cdr}"
    );
    assert!(cdr["duration_ms"].as_i64().unwrap() >= 3_000, "{cdr}");
    // What the callee heard: the agent's voice.
    let heard = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        read_wav(&b.recording_path(&call_id)).ok()
    })
    .expect("the callee's recording");
    let level = rms(&heard.samples);
    assert!(level > 300.0, "the callee heard {level} RMS");
}

#[test]
fn a_call_the_callee_refuses_is_recorded_with_its_cause() {
    // The callee knows no such number.
    let b = callee(&[("PARLEY_SIP_CATCH_ALL", "false")]);
    let a = caller(&b);
    let root = a.printed_admin_key();
    let (status, placed) = a.api(
        "POST",
        "/v1/calls",
        &root,
        &[],
        Some(r#"{"to":"+15557654321"}"#),
    );
    assert_eq!(status, 201, "{placed}");
    let id = placed["id"].as_str().unwrap();
    let cdr: Value = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (status, cdr) = a.api("GET", &format!("/v1/cdrs/{id}"), &root, &[], None);
        (status == 200).then_some(cdr)
    })
    .expect("the call's record");
    assert_eq!(cdr["final_code"], 404, "{cdr}");
    assert_eq!(cdr["hangup_cause"], "unknown_number", "{cdr}");
    assert_eq!(cdr["answered_at"], Value::Null, "{cdr}");
    assert_eq!(cdr["billable_seconds"], 0, "{cdr}");
    // Nothing is held for it any more.
    let (_, balance) = a.api("GET", "/v1/accounts/acc_operator/balance", &root, &[], None);
    assert_eq!(balance["reserved"], 0, "{balance}");
}

#[test]
fn bad_requests_and_accounts_without_credit_place_no_call() {
    let b = callee(&[]);
    let a = caller(&b);
    let root = a.printed_admin_key();
    let post = |body: &str| a.api("POST", "/v1/calls", &root, &[], Some(body));
    let (status, e) = post(r#"{"to":"alice"}"#);
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("to")),
        "{e}"
    );
    let (status, e) = post(r#"{"to":"+15557654321","trunk":"other"}"#);
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("trunk")),
        "{e}"
    );
    let (status, e) = post(r#"{"to":"+15557654321","agent_id":"agt_nope"}"#);
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("agent_id")),
        "{e}"
    );
    let (status, e) = post(r#"{"to":"+15557654321","ring":true}"#);
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("ring")),
        "{e}"
    );
    // Another account's key cannot place calls for the operator's account.
    let (_, key) = a.tenant(&root, "T", None, "write");
    let (status, _) = a.api(
        "POST",
        "/v1/calls",
        &key,
        &[],
        Some(r#"{"to":"+15557654321","account_id":"acc_operator"}"#),
    );
    assert_eq!(status, 404);
    // An account at its concurrent-call limit: 429, and no INVITE.
    let limit = |n: &str| {
        let body = format!(r#"{{"max_concurrent_calls":{n}}}"#);
        let (status, body) = a.api(
            "PATCH",
            "/v1/accounts/acc_operator",
            &root,
            &[],
            Some(&body),
        );
        assert_eq!(status, 200, "{body}");
    };
    limit("0");
    let (status, e) = post(r#"{"to":"+15557654321"}"#);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (429, Some("call_limit")),
        "{e}"
    );
    limit("null");
    // Priced and empty: 402, and no INVITE left.
    let (status, _) = a.api(
        "PUT",
        "/v1/accounts/acc_operator/plan",
        &root,
        &[],
        Some(r#"{"rate_per_minute":600000,"increment_s":1}"#),
    );
    assert_eq!(status, 200);
    let (status, e) = post(r#"{"to":"+15557654321"}"#);
    assert_eq!(status, 402, "{e}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!b.logs().contains("incoming call"), "{}", b.logs());
    // Without trunks, the field says so.
    let lone = Parley::start(&[]);
    let lone_root = lone.printed_admin_key();
    let (status, e) = lone.api(
        "POST",
        "/v1/calls",
        &lone_root,
        &[],
        Some(r#"{"to":"+15557654321"}"#),
    );
    assert_eq!(status, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sip.trunks"),
        "{e}"
    );
}
