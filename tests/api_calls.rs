//! Live calls over HTTP: a call in progress is listed for its account (and only for it),
//! and hanging it up through the API ends it with Parley's BYE.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn a_live_call_is_listed_and_hung_up_through_the_api() {
    if !require_sipp("a_live_call_is_listed_and_hung_up_through_the_api") {
        return;
    }
    let p = Parley::start(&[]);
    let root = p.printed_admin_key();
    let (_, key_a) = p.tenant(&root, "A", Some("+15551230030"), "write");
    let (_, key_b) = p.tenant(&root, "B", Some("+15551230040"), "write");
    let (key_a, key_b) = (&key_a, &key_b);
    std::thread::scope(|s| {
        // The caller waits (up to 30 s) for Parley to hang up.
        let caller = s.spawn(|| run_sipp("uac_parley_hangs_up", &p, &["-s", "+15551230030"]));
        let call: Value = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let (_, list) = p.api("GET", "/v1/calls", key_a, &[], None);
            list["data"]
                .as_array()
                .and_then(|d| d.first().cloned())
                .filter(|c| c["state"] == "answered")
        })
        .expect("the call is listed as answered");
        assert_eq!(call["number"], "+15551230030");
        let id = call["id"].as_str().unwrap().to_string();
        let (_, others) = p.api("GET", "/v1/calls", key_b, &[], None);
        assert_eq!(others["data"].as_array().unwrap().len(), 0);
        assert_eq!(
            p.api("GET", &format!("/v1/calls/{id}"), key_b, &[], None).0,
            404
        );
        assert_eq!(
            p.api("POST", &format!("/v1/calls/{id}/hangup"), key_b, &[], None)
                .0,
            404
        );
        let (_, all) = p.api("GET", "/v1/calls", &root, &[], None);
        assert_eq!(
            all["data"].as_array().unwrap().len(),
            1,
            "the operator sees every call"
        );

        let (status, _) = p.api("POST", &format!("/v1/calls/{id}/hangup"), key_a, &[], None);
        assert_eq!(status, 202);
        let out = caller.join().unwrap();
        out.assert_success();
        assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
        let gone = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let (status, _) = p.api("GET", &format!("/v1/calls/{id}"), key_a, &[], None);
            (status == 404).then_some(())
        });
        assert!(gone.is_some(), "the ended call left the list");
        // Its record says Parley hung up.
        let record = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let (status, r) = p.api("GET", &format!("/v1/cdrs/{id}"), key_a, &[], None);
            (status == 200).then_some(r)
        })
        .expect("the call's record");
        assert_eq!(record["hangup_side"], "parley");
        assert_eq!(record["hangup_cause"], "api", "{record}");
    });
}
