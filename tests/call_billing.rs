//! Calls hold billing leases: a call whose account has no credit is refused with 402 before
//! anything is set up; a call whose credit runs out hears a notice and is ended by Parley
//! when its last grant is used, and settled so that the balance ends at zero with nothing
//! held; with `billing.final_unit_action = "allow"` it goes on and the excess becomes debt.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    // The record says why Parley ended it.
    let ended = &seen[seen.find("event: call.ended").unwrap()..];
    assert!(ended.contains("\"hangup_cause\":\"credit\""), "{ended}");
}

/// `parley call` to `parley` for at most `seconds`, recording what it hears: (how long the
/// call took, the recording at 16 kHz).
fn call_and_record(parley: &Parley, seconds: u32) -> (Duration, Vec<i16>) {
    let (lo, hi) = rtp_port_range();
    let data = parley.scratch_dir("caller-data");
    let started = std::time::Instant::now();
    let output = Command::new(parley_bin())
        .args(["call", &format!("sip:service@{}", parley.sip_addr)])
        .args(["--duration", &seconds.to_string(), "--bind", "127.0.0.1:0"])
        .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
        .env("PARLEY_DATA_DIR", &data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(output.status.success(), "parley call failed: {output:?}");
    let file = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        recording_in(&data.join("recordings"))
    })
    .expect("the caller's recording");
    let wav = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        read_wav(&file).ok()
    })
    .expect("a finished recording");
    assert_eq!(wav.sample_rate, 16_000);
    (took, wav.samples)
}

fn recording_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wav"))
}

/// RMS of `x[from_s .. to_s]` (seconds at 16 kHz; negative counts from the end).
fn rms_between(x: &[i16], from_s: f64, to_s: f64) -> f64 {
    let at = |s: f64| {
        let i = (s.abs() * 16_000.0) as usize;
        if s < 0.0 {
            x.len().saturating_sub(i)
        } else {
            i.min(x.len())
        }
    };
    let part = &x[at(from_s)..at(to_s)];
    let sum: f64 = part.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (sum / part.len().max(1) as f64).sqrt()
}

#[test]
fn a_call_out_of_credit_hears_the_notice_before_parley_hangs_up() {
    if !require(
        "a_call_out_of_credit_hears_the_notice_before_parley_hangs_up",
        "espeak-ng (scripts/setup.sh)",
        Command::new("espeak-ng").arg("--version").output().is_ok(),
    ) {
        return;
    }
    // No agent: the line is silent until the notice. 8 s of credit.
    let parley = Parley::start(&[
        ("PARLEY_BILLING_HEARTBEAT_S", "1"),
        ("PARLEY_AGENT_MODE", "off"),
    ]);
    priced(&parley, 80_000);
    let (took, heard) = call_and_record(&parley, 30);
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(15),
        "Parley hung up after {took:?}"
    );
    parley.wait_for_metric(
        "parley_calls_ended_credit_total",
        1.0,
        Duration::from_secs(5),
    );
    let quiet = rms_between(&heard, 0.5, 2.0);
    let notice = rms_between(&heard, -3.5, -0.5);
    assert!(quiet < 50.0, "silence before the notice: {quiet}");
    assert!(notice > 500.0, "the notice at the end: {notice}");
    assert!(parley.logs().contains("the notice plays"));
}

#[test]
fn with_allow_a_call_goes_on_past_its_credit_and_the_excess_is_debt() {
    // 3 s of credit, a call of about 6 s, ended by the caller.
    let parley = Parley::start(&[
        ("PARLEY_BILLING_HEARTBEAT_S", "1"),
        ("PARLEY_AGENT_MODE", "off"),
        ("PARLEY_BILLING_FINAL_UNIT_ACTION", "allow"),
    ]);
    let root = priced(&parley, 30_000);
    let (took, _) = call_and_record(&parley, 6);
    assert!(
        took >= Duration::from_secs(6),
        "the caller hung up, after {took:?}"
    );
    parley.wait_for_metric("parley_calls_in_debt_total", 1.0, Duration::from_secs(5));
    assert_eq!(
        metric_value(&parley.metrics(), "parley_calls_ended_credit_total"),
        Some(0.0)
    );
    let owed = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, b) = parley.api("GET", "/v1/accounts/acc_operator/balance", &root, &[], None);
        (b["reserved"].as_i64() == Some(0) && b["debt"].as_i64() > Some(0)).then_some(b)
    })
    .expect("the lease was released with debt");
    // The 3 s granted are settled; the rest (about 3 s at 10,000 a second) is owed.
    assert_eq!(owed["balance"].as_i64(), Some(0), "{owed}");
    let debt = owed["debt"].as_i64().unwrap();
    assert!((20_000..=50_000).contains(&debt), "{owed}");
    let cdr = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, list) = parley.api("GET", "/v1/cdrs", &root, &[], None);
        list["data"].as_array().and_then(|d| d.first().cloned())
    })
    .expect("the call's record");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
}
