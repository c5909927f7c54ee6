//! Graceful shutdown: on SIGTERM Parley stops taking calls (503, `/readyz` "draining"), lets
//! the calls in progress go on for `call.drain_s`, hangs up the rest with BYE, writes their
//! records, and exits cleanly.

mod support;

use std::time::{Duration, Instant};

use parley::store::cdr::CdrQuery;
use parley::store::Store;
use support::*;

fn terminate(p: &Parley) {
    let pid = p.pid().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

#[test]
fn sigterm_drains_the_calls_in_progress_then_exits() {
    if !require_sipp("sigterm_drains_the_calls_in_progress_then_exits") {
        return;
    }
    let mut p = Parley::start(&[("PARLEY_CALL_DRAIN_S", "2")]);
    let root = p.printed_admin_key();
    let held = Sipp::spawn("uac_parley_hangs_up", &p, &[]);
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, list) = p.api("GET", "/v1/calls", &root, &[], None);
        list["data"]
            .as_array()
            .and_then(|d| d.first().cloned())
            .filter(|c| c["state"] == "answered")
    })
    .expect("the call is answered");
    assert_eq!(p.get("/readyz").unwrap().0, 200);

    terminate(&p);
    let signalled = Instant::now();
    poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
        let (status, body) = p.get("/readyz").ok()?;
        (status == 503 && body.contains("draining")).then_some(())
    })
    .expect("/readyz says draining");
    // New calls are turned away while the old one goes on.
    run_sipp("uac_expect_503", &p, &[]).assert_success();
    let (_, list) = p.api("GET", "/v1/calls", &root, &[], None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // At the drain limit Parley hangs up, then exits cleanly.
    held.wait(Duration::from_secs(15)).assert_success();
    assert!(
        signalled.elapsed() >= Duration::from_millis(1_900),
        "hung up after {:?}",
        signalled.elapsed()
    );
    let status = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        p.exit_status()
    })
    .expect("Parley exited");
    assert!(status.success(), "{status}\n{}", p.logs());
    assert!(p.logs().contains("drain time is up"), "{}", p.logs());

    // Both calls have their records: the drained one, and the one refused while draining.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let records = rt.block_on(async {
        let store = Store::open("", &p.data_dir).await.unwrap();
        store
            .cdrs(&CdrQuery {
                account_id: "acc_operator".into(),
                limit: 10,
                ..CdrQuery::default()
            })
            .await
            .unwrap()
    });
    let causes: Vec<(&str, i64)> = records
        .iter()
        .map(|c| (c.hangup_cause.as_str(), c.final_code))
        .collect();
    assert_eq!(causes, [("draining", 503), ("drain", 200)], "{records:?}");
}

#[test]
fn sigterm_without_calls_exits_at_once() {
    let mut p = Parley::start(&[]);
    terminate(&p);
    let started = Instant::now();
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        p.exit_status()
    })
    .expect("Parley exited");
    assert!(status.success(), "{status}");
    // Not the 30 s the default drain allows calls.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
