//! `/v1/events`: a call's life as Server-Sent Events to its account's listeners (started,
//! answered, ended with the record), and nothing of it to another account's.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn a_calls_events_reach_its_accounts_listeners_only() {
    if !require_sipp("a_calls_events_reach_its_accounts_listeners_only") {
        return;
    }
    let p = Parley::start(&[("PARLEY_CALL_MAX_DURATION_S", "1")]);
    let root = p.printed_admin_key();
    let (_, key_a) = p.tenant(&root, "A", Some("+15551230050"), "read");
    let (_, key_b) = p.tenant(&root, "B", Some("+15551230060"), "read");
    let mut a = SseListener::open(&p, &key_a);
    let mut b = SseListener::open(&p, &key_b);
    assert!(a
        .until("text/event-stream", Duration::from_secs(5))
        .contains("200 OK"));
    b.until("text/event-stream", Duration::from_secs(5));
    run_sipp("uac_parley_hangs_up", &p, &["-s", "+15551230050"]).assert_success();
    let seen = a
        .until("event: call.ended", Duration::from_secs(10))
        .to_string();
    let started = seen.find("event: call.started").expect("call.started");
    let answered = seen.find("event: call.answered").expect("call.answered");
    let ended = seen.find("event: call.ended").expect(&seen);
    assert!(started < answered && answered < ended, "{seen}");
    assert!(
        seen.contains("\"final_code\":200"),
        "the record rides on call.ended: {seen}"
    );
    let other = b.until("event: call.", Duration::from_millis(500));
    assert!(!other.contains("event: call."), "B heard A's call: {other}");
    // No key, no stream.
    assert_eq!(http_get(p.http_addr, "/v1/events").unwrap().0, 401);
}
