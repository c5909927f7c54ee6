//! Calls hold billing leases: a call whose account has no credit is refused with 402 before
//! anything is set up; a call whose credit runs out is ended by Parley when its last grant
//! is used, and settled so that the balance ends at zero with nothing held.

mod support;

use std::time::Duration;

use support::*;

/// The operator's account (every call's, until numbers route calls) at 0.60 a minute in
/// 1 s increments, with `credit` micro-units.
fn priced(parley: &Parley, credit: i64) -> String {
    let root = parley.printed_admin_key();
    let (status, body) = parley.api(
        "PUT",
        "/v1/accounts/acc_operator/plan",
        &root,
        &[],
        Some(r#"{"rate_per_minute":600000,"increment_s":1}"#),
    );
    assert_eq!(status, 200, "{body}");
    if credit > 0 {
        let (status, body) = parley.api(
            "POST",
            "/v1/accounts/acc_operator/topups",
            &root,
            &[],
            Some(&format!(r#"{{"amount":{credit}}}"#)),
        );
        assert_eq!(status, 201, "{body}");
    }
    root
}

#[test]
fn a_call_without_credit_is_refused_with_402() {
    if !require_sipp("a_call_without_credit_is_refused_with_402") {
        return;
    }
    let parley = Parley::start(&[]);
    priced(&parley, 0);
    let out = run_sipp("uac_expect_402", &parley, &[]);
    out.assert_success();
    parley.wait_for_metric(
        "parley_calls_rejected_credit_total",
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(
        metric_value(&parley.metrics(), "parley_calls_answered_total"),
        Some(0.0)
    );
}

#[test]
fn parley_ends_the_call_when_the_credit_runs_out_and_settles_it() {
    if !require_sipp("parley_ends_the_call_when_the_credit_runs_out_and_settles_it") {
        return;
    }
    // Renewals every second; 3 s of credit.
    let parley = Parley::start(&[("PARLEY_BILLING_HEARTBEAT_S", "1")]);
    let root = priced(&parley, 30_000);
    let mut events = SseListener::open(&parley, &root);
    events.until("text/event-stream", Duration::from_secs(5));
    let out = run_sipp("uac_parley_hangs_up", &parley, &[]);
    out.assert_success();
    assert!(
        out.elapsed >= Duration::from_secs(3) && out.elapsed < Duration::from_secs(15),
        "hung up after {:?}\n{}",
        out.elapsed,
        out.report()
    );
    parley.wait_for_metric(
        "parley_calls_ended_credit_total",
        1.0,
        Duration::from_secs(5),
    );
    for counter in [
        "parley_leases_reserved_total",
        "parley_leases_final_units_total",
        "parley_leases_released_total",
    ] {
        parley.wait_for_metric(counter, 1.0, Duration::from_secs(5));
    }
    assert_eq!(
        metric_value(&parley.metrics(), "parley_lease_errors_total"),
        Some(0.0)
    );
    // Settled: the three seconds were charged, nothing is held.
    let settled = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, b) = parley.api("GET", "/v1/accounts/acc_operator/balance", &root, &[], None);
        (b["reserved"].as_i64() == Some(0)).then_some(b)
    })
    .expect("the lease was released");
    assert_eq!(settled["balance"].as_i64(), Some(0), "{settled}");
    assert!(parley.logs().contains("billing lease released"));
    // Listeners were told before the end.
    let seen = events.until("event: call.ended", Duration::from_secs(5));
    let final_units = seen.find("event: lease.final_units").expect(seen);
    assert!(
        final_units < seen.find("event: call.ended").unwrap(),
        "{seen}"
    );
}
