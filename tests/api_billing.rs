//! Billing over HTTP against the real binary: the operator sets a plan and tops up, the
//! account's key holds a lease through reserve, renew and release (with idempotency keys),
//! another account cannot see it, and refusals are the right status with a named field.

mod support;

use serde_json::Value;
use support::*;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn a_lease_over_http_from_reserve_to_release() {
    let p = Parley::start(&[]);
    let root = p.printed_admin_key();
    let (_, a) = p.api("POST", "/v1/accounts", &root, &[], Some(r#"{"name":"A"}"#));
    let (_, b) = p.api("POST", "/v1/accounts", &root, &[], Some(r#"{"name":"B"}"#));
    let (a, b) = (id(&a), id(&b));
    let key_of = |acc: &str| {
        let (_, k) = p.api(
            "POST",
            &format!("/v1/accounts/{acc}/keys"),
            &root,
            &[],
            Some(r#"{"scope":"write"}"#),
        );
        k["key"].as_str().unwrap().to_string()
    };
    let (key_a, key_b) = (key_of(&a), key_of(&b));

    // 0.60 a minute in 6 s increments; one euro (1,000,000 micro-units) topped up twice
    // under one idempotency key: credited once.
    let (status, plan) = p.api(
        "PUT",
        &format!("/v1/accounts/{a}/plan"),
        &root,
        &[],
        Some(r#"{"rate_per_minute":600000,"increment_s":6}"#),
    );
    assert_eq!(status, 200, "{plan}");
    for _ in 0..2 {
        let (status, bal) = p.api(
            "POST",
            &format!("/v1/accounts/{a}/topups"),
            &root,
            &[("Idempotency-Key", "topup-1")],
            Some(r#"{"amount":1000000}"#),
        );
        assert_eq!(
            (status, bal["balance"].as_i64()),
            (201, Some(1_000_000)),
            "{bal}"
        );
    }
    // The account cannot top itself up.
    let (status, _) = p.api(
        "POST",
        &format!("/v1/accounts/{a}/topups"),
        &key_a,
        &[],
        Some(r#"{"amount":5}"#),
    );
    assert_eq!(status, 403);

    let (status, g) = p.api(
        "POST",
        "/v1/leases",
        &key_a,
        &[("Idempotency-Key", "call-1-reserve")],
        Some(r#"{"call_id":"call-1","seconds":30,"validity_seconds":60}"#),
    );
    assert_eq!(status, 201, "{g}");
    assert_eq!(
        (g["granted_now"].as_i64(), g["final_unit_action"].as_str()),
        (Some(30), Some("none"))
    );
    assert!(
        g["expires_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339: {g}"
    );
    let lease = id(&g);

    // B sees nothing of it.
    let (status, _) = p.api("GET", &format!("/v1/leases/{lease}"), &key_b, &[], None);
    assert_eq!(status, 404);
    let (status, _) = p.api(
        "POST",
        &format!("/v1/leases/{lease}/release"),
        &key_b,
        &[],
        Some(r#"{"used_seconds":1}"#),
    );
    assert_eq!(status, 404);

    let (status, r) = p.api(
        "POST",
        &format!("/v1/leases/{lease}/renew"),
        &key_a,
        &[("Idempotency-Key", "call-1-renew-1")],
        Some(r#"{"used_seconds":25,"seconds":30}"#),
    );
    assert_eq!(
        (status, r["granted_seconds"].as_i64()),
        (200, Some(60)),
        "{r}"
    );
    let (status, done) = p.api(
        "POST",
        &format!("/v1/leases/{lease}/release"),
        &key_a,
        &[("Idempotency-Key", "call-1-release")],
        Some(r#"{"used_seconds":40}"#),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["state"].as_str(), done["cost"].as_i64()),
        (Some("released"), Some(420_000))
    );
    let (_, bal) = p.api(
        "GET",
        &format!("/v1/accounts/{a}/balance"),
        &key_a,
        &[],
        None,
    );
    assert_eq!(
        (bal["balance"].as_i64(), bal["reserved"].as_i64()),
        (Some(580_000), Some(0)),
        "{bal}"
    );

    // Refusals: a missing field, a negative one, a lease already released, no money.
    let (status, e) = p.api(
        "POST",
        &format!("/v1/leases/{lease}/renew"),
        &key_a,
        &[],
        Some("{}"),
    );
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("used_seconds"))
    );
    let (status, e) = p.api("POST", "/v1/leases", &key_a, &[], Some(r#"{"seconds":-5}"#));
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("seconds"))
    );
    let (status, _) = p.api(
        "POST",
        &format!("/v1/leases/{lease}/release"),
        &key_a,
        &[],
        Some(r#"{"used_seconds":40}"#),
    );
    assert_eq!(status, 409);
    let (status, _) = p.api(
        "PUT",
        &format!("/v1/accounts/{b}/plan"),
        &root,
        &[],
        Some(r#"{"rate_per_minute":600000}"#),
    );
    assert_eq!(status, 200);
    let (status, e) = p.api("POST", "/v1/leases", &key_b, &[], Some(r#"{"seconds":30}"#));
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (402, Some("insufficient_funds")),
        "{e}"
    );
}
