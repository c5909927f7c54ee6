//! Webhooks against a local receiver: a call's `call.ended` is delivered signed; a receiver
//! error is retried; each delivery and its attempts are logged; bad subscriptions are
//! refused with the field named.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// A request the receiver got: (headers, body).
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// An HTTP receiver on 127.0.0.1 that answers 500 to the first request and 200 after.
fn receiver() -> (String, Received) {
    receiver_on(TcpListener::bind("127.0.0.1:0").unwrap())
}

fn receiver_on(listener: TcpListener) -> (String, Received) {
    let url = format!("http://{}/hooks/parley", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let first = {
                let mut g = seen.lock().unwrap();
                g.push((headers, String::from_utf8(body).unwrap()));
                g.len() == 1
            };
            let status = if first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

#[test]
fn a_calls_end_is_delivered_signed_and_retried() {
    if !require_sipp("a_calls_end_is_delivered_signed_and_retried") {
        return;
    }
    let p = Parley::start(&[("PARLEY_CALL_MAX_DURATION_S", "1")]);
    let root = p.printed_admin_key();
    let (_, acc) = p.api("POST", "/v1/accounts", &root, &[], Some(r#"{"name":"A"}"#));
    let acc = acc["id"].as_str().unwrap().to_string();
    p.api(
        "POST",
        "/v1/numbers",
        &root,
        &[],
        Some(&format!(
            r#"{{"account_id":"{acc}","number":"+15551230070"}}"#
        )),
    );
    let (_, k) = p.api(
        "POST",
        &format!("/v1/accounts/{acc}/keys"),
        &root,
        &[],
        Some(r#"{"scope":"admin"}"#),
    );
    let key = k["key"].as_str().unwrap().to_string();
    let (url, got) = receiver();
    let (status, hook) = p.api(
        "POST",
        "/v1/webhooks",
        &key,
        &[],
        Some(&format!(r#"{{"url":"{url}","events":["call.ended"]}}"#)),
    );
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let hook_id = hook["id"].as_str().unwrap().to_string();

    run_sipp("uac_parley_hangs_up", &p, &["-s", "+15551230070"]).assert_success();
    // The first try gets 500; the retry (a second later) gets 200.
    let requests = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        let g = got.lock().unwrap();
        (g.len() >= 2).then(|| g.clone())
    })
    .expect("two tries of the delivery");
    let (headers, body) = &requests[1];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("parley-event").as_deref(), Some("call.ended"));
    let sig = header("parley-signature").unwrap();
    let t: i64 = sig
        .strip_prefix("t=")
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        sig,
        parley::webhooks::sign::signature(&secret, t, body),
        "signature"
    );
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["account_id"].as_str()),
        (Some("call.ended"), Some(acc.as_str()))
    );
    assert_eq!(event["data"]["final_code"], 200);
    assert_eq!(requests[0].1, *body, "the retry sends the same event");

    let log = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (_, d) = p.api(
            "GET",
            &format!("/v1/webhooks/{hook_id}/deliveries"),
            &key,
            &[],
            None,
        );
        (d["data"][0]["state"] == "delivered").then_some(d)
    })
    .expect("the delivery is logged as delivered");
    assert_eq!(log["data"][0]["attempts"], 2);
    p.wait_for_metric(
        "parley_webhook_deliveries_total",
        1.0,
        Duration::from_secs(5),
    );
    p.wait_for_metric(
        "parley_webhook_failed_attempts_total",
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(log["data"][0]["last_status"], 200);

    // Refusals name the field.
    for (body, field) in [
        (r#"{"url":"ftp://x/y"}"#, "url"),
        (r#"{"url":"not a url"}"#, "url"),
        (
            r#"{"url":"http://x/y","events":["call.exploded"]}"#,
            "events",
        ),
        (r#"{"url":"http://x/y","secret":"short"}"#, "secret"),
    ] {
        let (status, e) = p.api("POST", "/v1/webhooks", &key, &[], Some(body));
        assert_eq!(
            (status, e["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {e}"
        );
    }
    assert_eq!(
        p.api(
            "DELETE",
            &format!("/v1/webhooks/{hook_id}"),
            &key,
            &[],
            None
        )
        .0,
        204
    );
    let (_, listed) = p.api("GET", "/v1/webhooks", &key, &[], None);
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[test]
fn pending_deliveries_survive_a_restart() {
    if !require_sipp("pending_deliveries_survive_a_restart") {
        return;
    }
    // The receiver is down at first: its port is known but nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks/parley");
    let mut first = Parley::start(&[("PARLEY_CALL_MAX_DURATION_S", "1")]);
    let root = first.printed_admin_key();
    let (status, hook) = first.api(
        "POST",
        "/v1/webhooks",
        &root,
        &[],
        Some(&format!(r#"{{"url":"{url}","events":["call.ended"]}}"#)),
    );
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap().to_string();
    run_sipp("uac_parley_hangs_up", &first, &[]).assert_success();
    // Tried and failed at least once, still pending.
    poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (_, d) = first.api(
            "GET",
            &format!("/v1/webhooks/{hook_id}/deliveries"),
            &root,
            &[],
            None,
        );
        (d["data"][0]["state"] == "pending" && d["data"][0]["attempts"].as_i64() >= Some(1))
            .then_some(())
    })
    .expect("a failed try is logged and the delivery stays pending");
    first.stop(Duration::from_secs(5));

    // The receiver comes up; a new Parley on the same data directory delivers.
    let (_, got) = receiver_on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let data_dir = first.data_dir.to_string_lossy().to_string();
    let second = Parley::start(&[("PARLEY_DATA_DIR", &data_dir)]);
    let delivered = poll_until(Duration::from_secs(75), Duration::from_millis(100), || {
        let g = got.lock().unwrap();
        (g.len() >= 2).then(|| g[1].1.clone())
    })
    .expect("the delivery queued before the restart arrived after it");
    let event: serde_json::Value = serde_json::from_str(&delivered).unwrap();
    assert_eq!(event["type"], "call.ended");
    let (_, d) = second.api(
        "GET",
        &format!("/v1/webhooks/{hook_id}/deliveries"),
        &root,
        &[],
        None,
    );
    assert_eq!(
        d["data"].as_array().unwrap().len(),
        1,
        "one delivery, not a second copy: {d}"
    );
}
