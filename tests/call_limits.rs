//! Per-account concurrent-call limits on one node: the operator sets `max_concurrent_calls`,
//! a call beyond it is refused with 486 Busy Here and gets a record (`call_limit`), and once a
//! call ends its slot is free again. Also with a `redis.url` that nothing answers: calls go
//! on, counted and listed by the node alone.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// The account `acc`'s limit set to `limit` by the operator's key; the account as answered.
fn set_limit(p: &Parley, root: &str, acc: &str, limit: &str) -> Value {
    let body = format!(r#"{{"max_concurrent_calls":{limit}}}"#);
    let (status, account) = p.api(
        "PATCH",
        &format!("/v1/accounts/{acc}"),
        root,
        &[],
        Some(&body),
    );
    assert_eq!(status, 200, "{account}");
    account
}

/// A call to `number` that stays up until Parley hangs up, once it is listed as answered
/// (by `lister`, with `key`): the running caller and the call's id.
fn hold_call(caller_to: &Parley, lister: &Parley, key: &str, number: &str) -> (Sipp, String) {
    let caller = Sipp::spawn("uac_parley_hangs_up", caller_to, &["-s", number]);
    let call = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, list) = lister.api("GET", "/v1/calls", key, &[], None);
        list["data"]
            .as_array()
            .and_then(|d| d.iter().find(|c| c["number"] == number).cloned())
            .filter(|c| c["state"] == "answered")
    })
    .unwrap_or_else(|| {
        panic!(
            "the call to {number} is listed as answered\n{}",
            lister.logs()
        )
    });
    (caller, call["id"].as_str().unwrap().to_string())
}

/// Hangs up the call `id` through `p`'s API and waits for the caller to see Parley's BYE.
fn hang_up(p: &Parley, key: &str, caller: Sipp, id: &str) {
    let (status, body) = p.api("POST", &format!("/v1/calls/{id}/hangup"), key, &[], None);
    assert_eq!(status, 202, "{body}");
    caller.wait(Duration::from_secs(20)).assert_success();
}

/// Waits until `p` lists no call of the key's account.
fn wait_no_calls(p: &Parley, key: &str) {
    let empty = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, list) = p.api("GET", "/v1/calls", key, &[], None);
        (list["data"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
    assert!(empty.is_some(), "the calls ended:\n{}", p.logs());
}

/// The refused call's record: 486, `call_limit`, on the account.
fn assert_refused_record(p: &Parley, key: &str, acc: &str) {
    let refused = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, list) = p.api("GET", "/v1/cdrs?status=failed", key, &[], None);
        let data = list["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 1).then(|| data[0].clone())
    })
    .expect("one record of a refused call");
    assert_eq!(refused["final_code"], 486, "{refused}");
    assert_eq!(refused["hangup_cause"], "call_limit", "{refused}");
    assert_eq!(refused["account_id"], acc, "{refused}");
    assert_eq!(refused["answered_at"], Value::Null, "{refused}");
}

#[test]
fn the_operator_sets_an_accounts_call_limit() {
    let p = Parley::start(&[]);
    let root = p.printed_admin_key();
    let (acc, key) = p.tenant(&root, "A", None, "admin");
    let (_, account) = p.api("GET", &format!("/v1/accounts/{acc}"), &key, &[], None);
    assert_eq!(account["max_concurrent_calls"], Value::Null, "{account}");
    let account = set_limit(&p, &root, &acc, "3");
    assert_eq!(account["max_concurrent_calls"], 3);
    assert_eq!(account["name"], "A");
    let (_, account) = p.api("GET", &format!("/v1/accounts/{acc}"), &key, &[], None);
    assert_eq!(account["max_concurrent_calls"], 3, "shown on the account");
    // The name alone leaves the limit; null removes it.
    let (status, account) = p.api(
        "PATCH",
        &format!("/v1/accounts/{acc}"),
        &root,
        &[],
        Some(r#"{"name":"A2"}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(
        (
            account["name"].as_str(),
            account["max_concurrent_calls"].as_i64()
        ),
        (Some("A2"), Some(3))
    );
    assert_eq!(
        set_limit(&p, &root, &acc, "null")["max_concurrent_calls"],
        Value::Null
    );
    // Only the operator's admin keys set it (even the account's own admin key may not).
    let (status, _) = p.api(
        "PATCH",
        &format!("/v1/accounts/{acc}"),
        &key,
        &[],
        Some(r#"{"max_concurrent_calls":100}"#),
    );
    assert_eq!(status, 403);
    for bad in [r#"-1"#, r#""two""#, r#"1.5"#, r#"2000000"#] {
        let body = format!(r#"{{"max_concurrent_calls":{bad}}}"#);
        let (status, err) = p.api(
            "PATCH",
            &format!("/v1/accounts/{acc}"),
            &root,
            &[],
            Some(&body),
        );
        assert_eq!(status, 422, "{bad}: {err}");
        assert_eq!(err["error"]["field"], "max_concurrent_calls", "{err}");
    }
    let (status, err) = p.api(
        "PATCH",
        &format!("/v1/accounts/{acc}"),
        &root,
        &[],
        Some(r#"{"limit":1}"#),
    );
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("limit"))
    );
    let (status, _) = p.api(
        "PATCH",
        "/v1/accounts/acc_nosuch",
        &root,
        &[],
        Some(r#"{"max_concurrent_calls":1}"#),
    );
    assert_eq!(status, 404);
}

#[test]
fn a_call_beyond_the_accounts_limit_is_busy() {
    if !require_sipp("a_call_beyond_the_accounts_limit_is_busy") {
        return;
    }
    let p = Parley::start(&[]);
    let root = p.printed_admin_key();
    let number = "+15551230050";
    let (acc, key) = p.tenant(&root, "A", Some(number), "write");
    let (_, other_key) = p.tenant(&root, "B", Some("+15551230051"), "write");
    set_limit(&p, &root, &acc, "1");

    let (caller, id) = hold_call(&p, &p, &key, number);
    // The account's line is full: 486 Busy Here, counted, and recorded on the account.
    run_sipp("uac_expect_486", &p, &["-s", number]).assert_success();
    p.wait_for_metric(
        "parley_calls_rejected_limit_total",
        1.0,
        Duration::from_secs(5),
    );
    assert_refused_record(&p, &key, &acc);
    // Another account's calls are not limited by it.
    let (other, other_id) = hold_call(&p, &p, &other_key, "+15551230051");
    hang_up(&p, &other_key, other, &other_id);

    hang_up(&p, &key, caller, &id);
    wait_no_calls(&p, &key);
    // The slot is free again.
    let (caller, id) = hold_call(&p, &p, &key, number);
    hang_up(&p, &key, caller, &id);
    assert_eq!(
        metric_value(&p.metrics(), "parley_calls_rejected_limit_total"),
        Some(1.0)
    );
}

#[test]
fn without_redis_answering_calls_go_on_counted_by_the_node() {
    if !require_sipp("without_redis_answering_calls_go_on_counted_by_the_node") {
        return;
    }
    // Nothing listens there: every Redis operation fails at once.
    let dead = format!("redis://127.0.0.1:{}", free_tcp_port());
    let p = Parley::start(&[("PARLEY_REDIS_URL", &dead), ("PARLEY_REDIS_TTL_S", "3")]);
    let root = p.printed_admin_key();
    let number = "+15551230052";
    let (acc, key) = p.tenant(&root, "A", Some(number), "write");
    set_limit(&p, &root, &acc, "1");

    // Calls are answered, listed, limited and hung up as without Redis.
    let (caller, id) = hold_call(&p, &p, &key, number);
    let (status, call) = p.api("GET", &format!("/v1/calls/{id}"), &key, &[], None);
    assert_eq!((status, call["state"].as_str()), (200, Some("answered")));
    run_sipp("uac_expect_486", &p, &["-s", number]).assert_success();
    assert_refused_record(&p, &key, &acc);
    hang_up(&p, &key, caller, &id);
    wait_no_calls(&p, &key);
    let (caller, id) = hold_call(&p, &p, &key, number);
    hang_up(&p, &key, caller, &id);
    let errors = metric_value(&p.metrics(), "parley_redis_errors_total").unwrap_or(0.0);
    assert!(errors >= 1.0, "Redis failures are counted: {errors}");
    assert!(
        p.logs().contains("Redis failed"),
        "the outage is logged:\n{}",
        p.logs()
    );
}

#[tokio::test]
async fn the_limit_is_stored_on_both_backends() {
    support::stores::on_each_backend(|store, _| async move {
        let acc = store.create_account("A").await.unwrap();
        assert_eq!(acc.max_concurrent_calls, None);
        assert_eq!(store.call_limit(&acc.id).await.unwrap(), None);
        let updated = store
            .update_account(&acc.id, Some("A2"), Some(Some(5)))
            .await
            .unwrap();
        assert_eq!(
            (updated.name.as_str(), updated.max_concurrent_calls),
            ("A2", Some(5))
        );
        assert_eq!(store.call_limit(&acc.id).await.unwrap(), Some(5));
        assert_eq!(store.account(&acc.id).await.unwrap(), updated);
        // Nothing given: nothing changes; Some(None) removes the limit.
        assert_eq!(
            store.update_account(&acc.id, None, None).await.unwrap(),
            updated
        );
        let cleared = store
            .update_account(&acc.id, None, Some(None))
            .await
            .unwrap();
        assert_eq!(cleared.max_concurrent_calls, None);
        assert_eq!(store.call_limit(&acc.id).await.unwrap(), None);
        assert!(store
            .update_account("acc_nosuch", None, None)
            .await
            .is_err());
        assert_eq!(store.call_limit("acc_nosuch").await.unwrap(), None);
    })
    .await;
}
