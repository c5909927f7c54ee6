//! Inbound calls are routed by the number called: a configured number reaches its account
//! (and is billed there), an unknown one gets 404 once any number is configured, and
//! `sip.catch_all` decides that explicitly.

mod support;

use std::time::Duration;

use support::*;

/// Account "A" with the number `number`, answered by the default agent.
fn account_with_number(parley: &Parley, number: &str) -> String {
    let root = parley.printed_admin_key();
    let (_, a) = parley.api("POST", "/v1/accounts", &root, &[], Some(r#"{"name":"A"}"#));
    let a = a["id"].as_str().unwrap().to_string();
    let body = format!(r#"{{"account_id":"{a}","number":"{number}"}}"#);
    let (status, n) = parley.api("POST", "/v1/numbers", &root, &[], Some(&body));
    assert_eq!(status, 201, "{n}");
    a
}

#[test]
fn a_configured_number_reaches_its_account_and_others_get_404() {
    if !require_sipp("a_configured_number_reaches_its_account_and_others_get_404") {
        return;
    }
    let parley = Parley::start(&[("PARLEY_CALL_MAX_DURATION_S", "1")]);
    let a = account_with_number(&parley, "+15551230001");
    let out = run_sipp("uac_parley_hangs_up", &parley, &["-s", "+15551230001"]);
    out.assert_success();
    assert!(
        parley.logs().contains(&format!("account={a} ")),
        "the call was routed to {a}:\n{}",
        parley.logs()
    );
    let out = run_sipp("uac_expect_404", &parley, &["-s", "+15559999999"]);
    out.assert_success();
    parley.wait_for_metric(
        "parley_calls_rejected_number_total",
        1.0,
        Duration::from_secs(5),
    );
    // A name, not a number, is not configured either.
    run_sipp("uac_expect_404", &parley, &["-s", "service"]).assert_success();
    // Refused calls have records too: the operator's, since they reached no account.
    let root = parley.printed_admin_key();
    let refused = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, list) = parley.api("GET", "/v1/cdrs?status=failed", &root, &[], None);
        let data = list["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 2).then_some(data)
    })
    .expect("two records of refused calls");
    for cdr in &refused {
        assert_eq!(cdr["final_code"], 404, "{cdr}");
        assert_eq!(cdr["hangup_cause"], "unknown_number", "{cdr}");
        assert_eq!(cdr["answered_at"], serde_json::Value::Null, "{cdr}");
    }
    assert!(refused[1]["to_uri"]
        .as_str()
        .unwrap()
        .contains("+15559999999"));
}

#[test]
fn catch_all_answers_unknown_numbers_with_the_default_agent() {
    if !require_sipp("catch_all_answers_unknown_numbers_with_the_default_agent") {
        return;
    }
    let parley = Parley::start(&[
        ("PARLEY_CALL_MAX_DURATION_S", "1"),
        ("PARLEY_SIP_CATCH_ALL", "true"),
    ]);
    account_with_number(&parley, "+15551230002");
    let out = run_sipp("uac_parley_hangs_up", &parley, &["-s", "+15559999998"]);
    out.assert_success();
    assert!(
        parley.logs().contains("account=acc_operator "),
        "{}",
        parley.logs()
    );
}

#[test]
fn a_call_from_a_trunk_reaches_the_trunks_account_and_its_record_names_the_trunk() {
    if !require_sipp(
        "a_call_from_a_trunk_reaches_the_trunks_account_and_its_record_names_the_trunk",
    ) {
        return;
    }
    // Unknown numbers get 404, except from the trunk (sipp calls from 127.0.0.1), whose
    // calls go to the operator's account.
    let trunks = r#"[{"name":"carrier","address":"127.0.0.1:5999","account_id":"acc_operator"}]"#;
    let parley = Parley::start(&[
        ("PARLEY_CALL_MAX_DURATION_S", "1"),
        ("PARLEY_SIP_CATCH_ALL", "false"),
        ("PARLEY_SIP_TRUNKS", trunks),
    ]);
    run_sipp("uac_parley_hangs_up", &parley, &["-s", "+15559999999"]).assert_success();
    let root = parley.printed_admin_key();
    let cdr = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, list) = parley.api("GET", "/v1/cdrs", &root, &[], None);
        list["data"].as_array().and_then(|d| d.first().cloned())
    })
    .expect("the call's record");
    assert_eq!(cdr["trunk"], "carrier", "{cdr}");
    assert_eq!(cdr["final_code"], 200, "{cdr}");
    assert_eq!(cdr["direction"], "inbound", "{cdr}");
}
