//! Call detail records from real calls: one per call that reached an account, answered or
//! refused, listed with filters and cursors, fetched one by one, exported as CSV and NDJSON,
//! and never shown to another account.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// The account's records once there are `n` of them.
fn records(p: &Parley, key: &str, n: usize) -> Vec<Value> {
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, list) = p.api("GET", "/v1/cdrs", key, &[], None);
        let data = list["data"].as_array().cloned().unwrap_or_default();
        (data.len() >= n).then_some(data)
    })
    .unwrap_or_else(|| panic!("{n} call records did not appear"))
}

#[test]
fn calls_leave_records_that_only_their_account_sees() {
    if !require_sipp("calls_leave_records_that_only_their_account_sees") {
        return;
    }
    let p = Parley::start(&[("PARLEY_CALL_MAX_DURATION_S", "1")]);
    let root = p.printed_admin_key();
    let (a, key_a) = p.tenant(&root, "A", Some("+15551230010"), "write");
    let (b, key_b) = p.tenant(&root, "B", Some("+15551230020"), "write");
    // Two answered calls to A; B's account has a price and no credit: its call is refused.
    run_sipp("uac_parley_hangs_up", &p, &["-s", "+15551230010"]).assert_success();
    run_sipp("uac_parley_hangs_up", &p, &["-s", "+15551230010"]).assert_success();
    p.api(
        "PUT",
        &format!("/v1/accounts/{b}/plan"),
        &root,
        &[],
        Some(r#"{"rate_per_minute":600000}"#),
    );
    run_sipp("uac_expect_402", &p, &["-s", "+15551230020"]).assert_success();

    let got = records(&p, &key_a, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    let r = &got[0];
    assert_eq!(r["account_id"], a.as_str());
    assert_eq!(
        (r["final_code"].as_i64(), r["hangup_side"].as_str()),
        (Some(200), Some("parley"))
    );
    assert_eq!(
        (r["number"].as_str(), r["codec"].as_str()),
        (Some("+15551230010"), Some("PCMU"))
    );
    assert_eq!(r["direction"], "inbound");
    assert!(r["duration_ms"].as_i64().unwrap() >= 900, "{r}");
    assert!(r["answered_at"].as_str().unwrap().ends_with('Z'));
    let refused = records(&p, &key_b, 1);
    assert_eq!(
        (
            refused[0]["final_code"].as_i64(),
            refused[0]["answered_at"].clone()
        ),
        (Some(402), Value::Null)
    );

    // One by one, and not across accounts.
    let id = r["id"].as_str().unwrap();
    assert_eq!(
        p.api("GET", &format!("/v1/cdrs/{id}"), &key_a, &[], None).0,
        200
    );
    assert_eq!(
        p.api("GET", &format!("/v1/cdrs/{id}"), &key_b, &[], None).0,
        404
    );
    let (status, _) = p.api(
        "GET",
        &format!("/v1/cdrs?account_id={a}"),
        &key_b,
        &[],
        None,
    );
    assert_eq!(status, 404);

    // Filters and pages.
    let (_, failed) = p.api("GET", "/v1/cdrs?status=failed", &key_a, &[], None);
    assert_eq!(failed["data"].as_array().unwrap().len(), 0);
    let (_, page1) = p.api("GET", "/v1/cdrs?limit=1", &key_a, &[], None);
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, page2) = p.api(
        "GET",
        &format!("/v1/cdrs?limit=1&cursor={cursor}"),
        &key_a,
        &[],
        None,
    );
    assert_ne!(page1["data"][0]["id"], page2["data"][0]["id"]);
    let (_, page3) = p.api(
        "GET",
        &format!(
            "/v1/cdrs?limit=1&cursor={}",
            page2["next_cursor"].as_str().unwrap()
        ),
        &key_a,
        &[],
        None,
    );
    assert_eq!(page3["data"].as_array().unwrap().len(), 0);
    let (status, e) = p.api("GET", "/v1/cdrs?from=yesterday", &key_a, &[], None);
    assert_eq!((status, e["error"]["field"].as_str()), (422, Some("from")));
    // A query value of the wrong type is refused the same way, naming its parameter.
    let (status, e) = p.api("GET", "/v1/cdrs?limit=abc", &key_a, &[], None);
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (422, Some("limit")),
        "{e}"
    );
    let (_, future) = p.api(
        "GET",
        "/v1/cdrs?from=2099-01-01T00:00:00Z",
        &key_a,
        &[],
        None,
    );
    assert_eq!(future["data"].as_array().unwrap().len(), 0);

    // Exports: a header and a line per record (CSV); a JSON object per line (NDJSON).
    let (status, csv) = http_request(
        p.http_addr,
        "GET",
        "/v1/cdrs/export?format=csv",
        Some(&key_a),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,account_id,"));
    let (_, nd) = http_request(
        p.http_addr,
        "GET",
        "/v1/cdrs/export?format=ndjson",
        Some(&key_a),
        None,
    )
    .unwrap();
    let rows: Vec<Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["account_id"] == a.as_str()));
}
