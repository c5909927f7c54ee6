//! The text channels' HTTP API against the real binary: `/v1/messages` (single and bulk SMS
//! sends through a fake Twilio, their retries, refusals, business hours and rate, the
//! status callbacks kept per message), `/v1/contacts` (listing, timeline, language),
//! `/v1/accounts/{id}/messaging`, and `POST /v1/chat/tokens` with a web chat over a real
//! WebSocket answered by a fake LLM, whose second session remembers the first.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::twilio::{FakeTwilio, TwilioReply};
use support::sms::{as_env, sms_env, twilio_webhook};
use support::*;

/// How long a message may take to go through the outbox and the fake.
const WITHIN: Duration = Duration::from_secs(15);
const EVERY: Duration = Duration::from_millis(50);

fn start(twilio: &FakeTwilio, extra: &[(&str, &str)]) -> (Parley, String) {
    let env = sms_env(twilio, extra);
    let p = Parley::start(&as_env(&env));
    let root = p.printed_admin_key();
    (p, root)
}

fn post(p: &Parley, key: &str, path: &str, body: Value) -> (u16, Value) {
    p.api("POST", path, key, &[], Some(&body.to_string()))
}

fn get(p: &Parley, key: &str, path: &str) -> Value {
    let (status, v) = p.api("GET", path, key, &[], None);
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Polls message `id` until `done` holds; panics with the last answer otherwise.
fn wait_message(
    p: &Parley,
    key: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    poll_until(WITHIN, EVERY, || {
        last = get(p, key, &format!("/v1/messages/{id}"));
        done(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("message {id}: {what} not reached: {last}"))
}

/// A refusal naming `field` with `status`.
fn assert_refused(answer: &(u16, Value), status: u16, field: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["field"], field, "{}", answer.1);
}

fn requests_to(twilio: &FakeTwilio, to: &str) -> usize {
    twilio
        .requests()
        .iter()
        .filter(|r| r.field("To") == Some(to))
        .count()
}

fn time(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn sends_are_checked_sent_through_twilio_and_tracked() {
    let twilio = FakeTwilio::start();
    let public = "https://sms.example.com";
    let (p, root) = start(&twilio, &[("PARLEY_SMS_PUBLIC_URL", public)]);
    let (acc, key) = p.tenant(&root, "Clinic", Some("+15551230001"), "write");

    // Refusals name their field.
    let send = |body: Value| post(&p, &key, "/v1/messages", body);
    assert_refused(
        &send(json!({"to": "not a number", "body": "hi"})),
        422,
        "to",
    );
    assert_refused(
        &send(json!({"to": "+15557654321", "body": "  "})),
        422,
        "body",
    );
    assert_refused(&send(json!({"to": "+15557654321"})), 422, "body");
    assert_refused(
        &send(json!({"to": "+15557654321", "body": "x".repeat(1601)})),
        422,
        "body",
    );
    let not_ours = json!({"to": "+15557654321", "body": "hi", "from": "+15559990000"});
    assert_refused(&send(not_ours), 422, "from");
    assert_refused(
        &send(json!({"to": "+15557654321", "body": "hi", "cc": "x"})),
        422,
        "cc",
    );
    let (_, numberless) = p.tenant(&root, "No number", None, "write");
    let refused = post(
        &p,
        &numberless,
        "/v1/messages",
        json!({"to": "+15557654321", "body": "hi"}),
    );
    assert_refused(&refused, 422, "from");
    let (_, reader) = p.tenant(&root, "Reader", Some("+15551230002"), "read");
    let refused = post(
        &p,
        &reader,
        "/v1/messages",
        json!({"to": "+15557654321", "body": "hi"}),
    );
    assert_eq!(refused.0, 403, "{}", refused.1);
    assert!(twilio.requests().is_empty(), "{:?}", twilio.requests());

    // A send: 201 at once, then through the fake with the callback URL.
    let (status, m) =
        send(json!({"to": "+1 (555) 765-4321", "body": "Your appointment is at 3pm."}));
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["account_id"], acc.as_str());
    assert_eq!(m["direction"], "outbound");
    assert_eq!(m["source"], "api");
    assert_eq!(m["to"], "+15557654321");
    assert_eq!(m["from"], "+15551230001");
    assert_eq!(m["encoding"], "GSM-7");
    assert_eq!(m["segments"], 1);
    let id = m["id"].as_str().unwrap().to_string();
    let sent = wait_message(&p, &key, &id, "queued", |m| m["status"] == "queued");
    let at_twilio = twilio.messages();
    assert_eq!(at_twilio.len(), 1, "{at_twilio:?}");
    assert_eq!(at_twilio[0].to, "+15557654321");
    assert_eq!(at_twilio[0].from, "+15551230001");
    assert_eq!(at_twilio[0].body, "Your appointment is at 3pm.");
    let callback = format!("{public}/webhooks/twilio/status");
    assert_eq!(
        at_twilio[0].status_callback.as_deref(),
        Some(callback.as_str())
    );
    assert_eq!(sent["provider_sid"], at_twilio[0].sid.as_str());
    assert_eq!(sent["attempts"], 1);

    // Status callbacks are kept with the message; a late one does not move it back.
    let sid = at_twilio[0].sid.clone();
    for status in ["delivered", "sent"] {
        let params = [("MessageSid", sid.as_str()), ("MessageStatus", status)];
        let (code, text) = twilio_webhook(&p, public, "/webhooks/twilio/status", &params);
        assert_eq!(code, 200, "{text}");
    }
    let detail = get(&p, &key, &format!("/v1/messages/{id}"));
    assert_eq!(detail["status"], "delivered", "{detail}");
    let events = detail["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{detail}");
    assert_eq!(events[0]["status"], "delivered");
    assert_eq!(events[0]["applied"], true);
    assert_eq!(events[0]["raw"]["MessageSid"], sid.as_str());
    assert_eq!(events[1]["status"], "sent");
    assert_eq!(events[1]["applied"], false);

    // Idempotency: the same key gets the same message (200) and one send; another
    // message under it is a conflict.
    let idem = [("Idempotency-Key", "reminder-42")];
    let body = json!({"to": "+15557654322", "body": "See you tomorrow."}).to_string();
    let (status, first) = p.api("POST", "/v1/messages", &key, &idem, Some(&body));
    assert_eq!(status, 201, "{first}");
    let (status, again) = p.api("POST", "/v1/messages", &key, &idem, Some(&body));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    let other = json!({"to": "+15557654322", "body": "Something else."}).to_string();
    let (status, clash) = p.api("POST", "/v1/messages", &key, &idem, Some(&other));
    assert_eq!(status, 409, "{clash}");
    assert_eq!(clash["error"]["code"], "conflict");
    let first_id = first["id"].as_str().unwrap();
    wait_message(&p, &key, first_id, "queued", |m| m["status"] == "queued");
    assert_eq!(requests_to(&twilio, "+15557654322"), 1);
    let bad_key = [("Idempotency-Key", "")];
    let (status, refused) = p.api("POST", "/v1/messages", &key, &bad_key, Some(&body));
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (400, json!("bad_idempotency_key"))
    );

    // Segments and encoding: a character outside GSM-7 makes it UCS-2.
    let (status, m) = send(json!({"to": "+15557654323", "body": "héllo ☺"}));
    assert_eq!(status, 201, "{m}");
    assert_eq!(
        (m["encoding"].clone(), m["segments"].clone()),
        (json!("UCS-2"), json!(1))
    );
    let (status, m) = send(json!({"to": "+15557654323", "body": "a".repeat(161)}));
    assert_eq!(status, 201, "{m}");
    assert_eq!(
        (m["encoding"].clone(), m["segments"].clone()),
        (json!("GSM-7"), json!(2))
    );

    // Listing, newest first, in pages.
    let page = get(&p, &key, "/v1/messages?limit=2");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{page}");
    assert_eq!(data[0]["segments"], 2, "newest first: {page}");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let rest = get(&p, &key, &format!("/v1/messages?limit=100&cursor={cursor}"));
    let ids: Vec<&str> = rest["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{rest}");
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&first_id),
        "{rest}"
    );
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let (status, bad) = p.api("GET", "/v1/messages?cursor=zzz", &key, &[], None);
    assert_refused(&(status, bad), 422, "cursor");
    let (status, bad) = p.api("GET", "/v1/messages?limit=0", &key, &[], None);
    assert_refused(&(status, bad), 422, "limit");
    // Another account's message is not found.
    let (status, _) = p.api("GET", &format!("/v1/messages/{id}"), &reader, &[], None);
    assert_eq!(status, 404);

    // Contacts: one per number written to, their timeline holds what was sent.
    let contacts = get(&p, &key, "/v1/contacts");
    let addresses: Vec<&str> = contacts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 3, "{contacts}");
    assert_eq!(
        addresses[0], "+15557654323",
        "most recently active first: {contacts}"
    );
    let contact = get(&p, &key, "/v1/contacts/%2B15557654321");
    assert_eq!(contact["kind"], "phone");
    assert_eq!(contact["address"], "+15557654321");
    let contact_id = contact["id"].as_str().unwrap().to_string();
    assert_eq!(
        get(&p, &key, &format!("/v1/contacts/{contact_id}"))["id"],
        contact_id.as_str()
    );
    let only = get(&p, &key, &format!("/v1/messages?contact_id={contact_id}"));
    assert_eq!(only["data"].as_array().unwrap().len(), 1, "{only}");
    let timeline = get(&p, &key, "/v1/contacts/%2B15557654323/timeline?limit=1");
    let entries = timeline["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{timeline}");
    assert_eq!(entries[0]["text"], "a".repeat(161));
    assert_eq!(
        (entries[0]["channel"].clone(), entries[0]["role"].clone()),
        (json!("sms"), json!("agent"))
    );
    let before = timeline["next_cursor"].as_str().expect("an older page");
    let older = get(
        &p,
        &key,
        &format!("/v1/contacts/%2B15557654323/timeline?cursor={before}"),
    );
    let entries = older["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{older}");
    assert_eq!(entries[0]["text"], "héllo ☺");
    let (status, _) = p.api("GET", "/v1/contacts/%2B15550000000", &key, &[], None);
    assert_eq!(status, 404);

    // The language: set by a person it stays (confidence 1); null forgets it.
    let path = format!("/v1/contacts/{contact_id}");
    let patch = |body: Value| p.api("PATCH", &path, &key, &[], Some(&body.to_string()));
    let (status, c) = patch(json!({"language": "es"}));
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["language"].clone(), c["language_confidence"].clone()),
        (json!("es"), json!(1.0))
    );
    assert_eq!(get(&p, &key, &path)["language"], "es");
    assert_refused(&patch(json!({"language": "fr"})), 422, "language");
    assert_refused(&patch(json!({})), 422, "language");
    let (status, c) = patch(json!({"language": null}));
    assert_eq!(status, 200, "{c}");
    assert!(
        c["language"].is_null() && c["language_confidence"].is_null(),
        "{c}"
    );
    let (status, _) = p.api("GET", &path, &reader, &[], None);
    assert_eq!(status, 404, "another account's contact");

    // The text channels' events can be subscribed to.
    let events = ["sms.received", "sms.status", "chat.message"];
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": events});
    let (status, created) = post(&p, &root, "/v1/webhooks", hook);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["events"], json!(events));
}

#[test]
fn twilio_failures_are_retried_or_final() {
    let twilio = FakeTwilio::start();
    let (p, root) = start(&twilio, &[]);
    let (_, key) = p.tenant(&root, "Clinic", Some("+15551230001"), "write");

    // A 503 is retried: the second attempt gets through.
    twilio.push(TwilioReply::status(503));
    let (status, m) = post(
        &p,
        &key,
        "/v1/messages",
        json!({"to": "+15557650001", "body": "one"}),
    );
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap();
    let m = wait_message(&p, &key, id, "queued", |m| m["status"] == "queued");
    assert_eq!(m["attempts"], 2, "{m}");
    assert_eq!(requests_to(&twilio, "+15557650001"), 2);
    assert!(
        m["provider_sid"]
            .as_str()
            .is_some_and(|s| s.starts_with("SM")),
        "{m}"
    );

    // Twilio's refusal of the number is final: no retry, its code kept.
    twilio.push(TwilioReply::error(400, 21211, "Invalid 'To' Phone Number"));
    let (status, m) = post(
        &p,
        &key,
        "/v1/messages",
        json!({"to": "+15557650002", "body": "two"}),
    );
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap();
    let m = wait_message(&p, &key, id, "failed", |m| m["status"] == "failed");
    assert_eq!(m["error_code"], 21211, "{m}");
    assert_eq!(m["attempts"], 1, "{m}");
    assert!(m["provider_sid"].is_null(), "{m}");
    assert_eq!(requests_to(&twilio, "+15557650002"), 1);
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[test]
fn business_hours_hold_messages_and_the_rate_spreads_them() {
    let twilio = FakeTwilio::start();
    let (p, root) = start(&twilio, &[]);
    let (acc, key) = p.tenant(&root, "Closed today", Some("+15551230001"), "write");
    let settings = format!("/v1/accounts/{acc}/messaging");
    let put = |key: &str, body: Value| p.api("PUT", &settings, key, &[], Some(&body.to_string()));

    // Bad settings name their field.
    let hours =
        |tz: &str, weekly: Value| json!({"business_hours": {"timezone": tz, "weekly": weekly}});
    assert_refused(
        &put(&key, hours("Mars/Olympus", json!({}))),
        422,
        "business_hours.timezone",
    );
    let bad_time = hours("UTC", json!({"mon": [["09:00", "25:00"]]}));
    assert_refused(&put(&key, bad_time), 422, "business_hours.weekly.mon[0][1]");
    assert_refused(
        &put(&key, hours("UTC", json!({}))),
        422,
        "business_hours.weekly",
    );
    assert_refused(
        &put(&root, json!({"sms_per_minute": 0})),
        422,
        "sms_per_minute",
    );
    assert_refused(&put(&key, json!({"hours": {}})), 422, "hours");
    let (_, reader) = {
        let body = json!({"scope": "read"}).to_string();
        let (s, k) = p.api(
            "POST",
            &format!("/v1/accounts/{acc}/keys"),
            &root,
            &[],
            Some(&body),
        );
        assert_eq!(s, 201, "{k}");
        (s, k["key"].as_str().unwrap().to_string())
    };
    assert_eq!(put(&reader, json!({"business_hours": null})).0, 403);

    // Open only tomorrow (UTC): a send now is held until tomorrow's 00:00.
    let tomorrow = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::now())
        .date()
        .tomorrow()
        .unwrap();
    let day = DAYS[tomorrow.weekday().to_monday_zero_offset() as usize];
    let opens: jiff::Timestamp = format!("{tomorrow}T00:00:00Z").parse().unwrap();
    let (status, s) = put(&key, hours("UTC", json!({day: [["00:00", "24:00"]]})));
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s["business_hours"]["weekly"][day],
        json!([["00:00", "24:00"]]),
        "{s}"
    );
    assert!(s["sms_per_minute"].is_null(), "{s}");
    assert_eq!(get(&p, &key, &settings), s);
    let (status, held) = post(
        &p,
        &key,
        "/v1/messages",
        json!({"to": "+15557650001", "body": "tomorrow"}),
    );
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["status"], "scheduled", "{held}");
    assert_eq!(time(&held["send_after"]), opens, "{held}");

    // The rate: 2 a minute, 4 asked for; 2 go now and 2 wait a minute.
    let (acc2, key2) = p.tenant(&root, "Slow", Some("+15551230002"), "write");
    let settings2 = format!("/v1/accounts/{acc2}/messaging");
    // The rate is the operator's to set, not the tenant's.
    let (status, _) = p.api(
        "PUT",
        &settings2,
        &key2,
        &[],
        Some(r#"{"sms_per_minute":2000}"#),
    );
    assert_eq!(status, 403);
    let (status, s) = p.api(
        "PUT",
        &settings2,
        &root,
        &[],
        Some(r#"{"sms_per_minute":2}"#),
    );
    assert_eq!(
        (status, s["sms_per_minute"].clone()),
        (200, json!(2)),
        "{s}"
    );
    let started = jiff::Timestamp::now();
    let to = [
        "+15557660001",
        "+15557660002",
        "+15557660003",
        "+15557660004",
    ];
    let (status, bulk) = post(
        &p,
        &key2,
        "/v1/messages/bulk",
        json!({"to": to, "body": "Reminder"}),
    );
    assert_eq!(status, 202, "{bulk}");
    assert_eq!(
        (bulk["queued"].clone(), bulk["failed"].clone()),
        (json!(4), json!(0))
    );
    let ids: Vec<String> = bulk["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let settled = poll_until(WITHIN, EVERY, || {
        let now: Vec<Value> = ids
            .iter()
            .map(|id| get(&p, &key2, &format!("/v1/messages/{id}")))
            .collect();
        let sent = now.iter().filter(|m| m["status"] == "queued").count();
        let waiting = now
            .iter()
            .filter(|m| {
                m["status"] == "pending"
                    && time(&m["send_after"]) > started + jiff::SignedDuration::from_secs(30)
            })
            .count();
        (sent == 2 && waiting == 2).then_some(now)
    })
    .expect("two sent and two held for the rate");
    let from_slow = twilio
        .messages()
        .iter()
        .filter(|m| m.from == "+15551230002")
        .count();
    assert_eq!(from_slow, 2);
    for m in settled.iter().filter(|m| m["status"] == "pending") {
        let wait = time(&m["send_after"]).duration_since(started);
        assert!(
            wait >= jiff::SignedDuration::from_secs(55)
                && wait <= jiff::SignedDuration::from_secs(65),
            "held {wait:?}: {m}"
        );
    }
    // That message of the other account went out in the meantime: the outbox worker passed
    // over the held one after it was written, and it is still held.
    assert_eq!(
        get(
            &p,
            &key,
            &format!("/v1/messages/{}", held["id"].as_str().unwrap())
        )["status"],
        "scheduled"
    );
    assert_eq!(requests_to(&twilio, "+15557650001"), 0);
}

#[test]
fn bulk_sends_report_each_recipient() {
    let twilio = FakeTwilio::start();
    let (p, root) = start(&twilio, &[]);
    let (acc, key) = p.tenant(&root, "Clinic", Some("+15551230001"), "write");
    let bulk = |body: Value, headers: &[(&str, &str)]| {
        p.api(
            "POST",
            "/v1/messages/bulk",
            &key,
            headers,
            Some(&body.to_string()),
        )
    };

    // Malformed requests are refused whole, naming the field.
    assert_refused(&bulk(json!({"body": "hi"}), &[]), 422, "to");
    assert_refused(&bulk(json!({"to": ["+15557650001"]}), &[]), 422, "body");
    assert_refused(&bulk(json!({"to": [], "body": "hi"}), &[]), 422, "to");
    assert_refused(&bulk(json!({"to": [7], "body": "hi"}), &[]), 422, "to[0]");
    let both = json!({"to": ["+15557650001"], "body": "hi", "messages": [{"to": "+15557650001", "body": "hi"}]});
    assert_refused(&bulk(both, &[]), 422, "messages");
    let too_many: Vec<String> = (0..1001).map(|i| format!("+1555800{i:04}")).collect();
    assert_refused(&bulk(json!({"to": too_many, "body": "hi"}), &[]), 422, "to");
    let extra = json!({"messages": [{"to": "+15557650001", "body": "hi", "cc": 1}]});
    assert_refused(&bulk(extra, &[]), 422, "messages[0].cc");
    let not_ours = json!({"to": ["+15557650001"], "body": "hi", "from": "+15559990000"});
    assert_refused(&bulk(not_ours, &[]), 422, "from");
    assert!(twilio.requests().is_empty());

    // One bad number among good ones: reported in place, the rest queued.
    let to = ["+15557650001", "12", "+15557650002"];
    let (status, answer) = bulk(json!({"to": to, "body": "Open today"}), &[]);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["queued"].clone(), answer["failed"].clone()),
        (json!(2), json!(1)),
        "{answer}"
    );
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data[1]["to"], "12");
    assert_eq!(data[1]["error"]["field"], "to[1]", "{answer}");
    assert!(data[1].get("id").is_none(), "{answer}");
    for i in [0, 2] {
        assert_eq!(data[i]["to"], to[i]);
        assert!(
            data[i]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("msg_")),
            "{answer}"
        );
        assert_eq!(data[i]["status"], "pending", "{answer}");
    }
    poll_until(WITHIN, EVERY, || {
        (twilio.messages().len() == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", twilio.messages()));
    let m = get(
        &p,
        &key,
        &format!("/v1/messages/{}", data[0]["id"].as_str().unwrap()),
    );
    assert_eq!(m["source"], "bulk");

    // Each message its own text; with an Idempotency-Key a retry sends nothing again.
    let messages = json!({"account_id": acc, "messages": [
        {"to": "+15557650003", "body": "Hi Ana"},
        {"to": "+15557650004", "body": ""},
        {"to": "+15557650005", "body": "Hi Bo"},
    ]});
    let idem = [("Idempotency-Key", "campaign-7")];
    let (status, first) = bulk(messages.clone(), &idem);
    assert_eq!(status, 202, "{first}");
    assert_eq!(
        first["data"][1]["error"]["field"], "messages[1].body",
        "{first}"
    );
    assert_eq!(first["queued"], 2);
    let (status, again) = bulk(messages, &idem);
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["data"][0]["id"], first["data"][0]["id"]);
    assert_eq!(again["data"][2]["id"], first["data"][2]["id"]);
    for (i, to) in [(0, "+15557650003"), (2, "+15557650005")] {
        let id = first["data"][i]["id"].as_str().unwrap();
        wait_message(&p, &key, id, "queued", |m| m["status"] == "queued");
        assert_eq!(requests_to(&twilio, to), 1, "{to}");
        assert_eq!(
            get(&p, &key, &format!("/v1/messages/{id}"))["idempotency_key"],
            format!("campaign-7:{i}")
        );
    }
}

/// The WebSocket client's side of a chat: the frames it reads, as JSON.
struct Chat {
    rt: tokio::runtime::Runtime,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Chat {
    /// Opens `/v1/chat?token=…`; Err(HTTP status) when refused.
    fn open(p: &Parley, token: &str) -> Result<Chat, u16> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("ws://{}/v1/chat?token={token}", p.http_addr);
        match rt.block_on(tokio_tungstenite::connect_async(url)) {
            Ok((ws, _)) => Ok(Chat { rt, ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("chat: {e}"),
        }
    }

    fn next(&mut self) -> Value {
        use futures_util::StreamExt;
        let frame = self
            .rt
            .block_on(async { tokio::time::timeout(WITHIN, self.ws.next()).await })
            .expect("a frame in time")
            .expect("the chat stays open")
            .expect("a frame");
        serde_json::from_str(frame.to_text().unwrap()).unwrap_or_else(|e| panic!("{frame}: {e}"))
    }

    fn say(&mut self, text: &str) -> Value {
        use futures_util::SinkExt;
        let frame = json!({"type": "message", "text": text}).to_string();
        self.rt
            .block_on(
                self.ws
                    .send(tokio_tungstenite::tungstenite::Message::Text(frame.into())),
            )
            .unwrap();
        self.next()
    }
}

/// The system prompt of the LLM's `i`-th request.
fn system_prompt(llm: &FakeLlm, i: usize) -> String {
    let request = &llm.requests()[i];
    request.body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn chat_tokens_open_a_web_chat_that_remembers() {
    let llm = FakeLlm::start();
    let llm_url = llm.base_url();
    let p = Parley::start(&[
        ("PARLEY_LLM_PROVIDER", "openai"),
        ("PARLEY_LLM_BASE_URL", &llm_url),
        // An AI agent needs speech-to-text configured; no call is made, so nothing serves it.
        ("PARLEY_STT_PROVIDER", "openai"),
        ("PARLEY_STT_BASE_URL", "http://127.0.0.1:9/v1"),
    ]);
    let root = p.printed_admin_key();
    let (acc, key) = p.tenant(&root, "Clinic", Some("+15551230001"), "write");

    // Without Twilio, sends are refused with a clear code.
    for (path, body) in [
        ("/v1/messages", json!({"to": "+15557654321", "body": "hi"})),
        (
            "/v1/messages/bulk",
            json!({"to": ["+15557654321"], "body": "hi"}),
        ),
    ] {
        let (status, answer) = post(&p, &key, path, body);
        assert_eq!(status, 503, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "sms_not_configured", "{answer}");
    }

    // Minting: checked fields, then a token for the visitor.
    let mint = |body: Value| post(&p, &key, "/v1/chat/tokens", body);
    assert_refused(&mint(json!({})), 422, "contact");
    assert_refused(&mint(json!({"contact": "v-1", "ttl_s": 59})), 422, "ttl_s");
    assert_refused(
        &mint(json!({"contact": "v-1", "ttl_s": 86_401})),
        422,
        "ttl_s",
    );
    assert_refused(&mint(json!({"contact": "+1 555 CALL"})), 422, "contact");
    assert_refused(
        &mint(json!({"contact": "v-1", "agent_id": "agt_nope"})),
        422,
        "agent_id",
    );
    let (_, other) = p.tenant(&root, "Other", None, "write");
    let body = json!({"name": "Theirs"}).to_string();
    let (_, theirs) = p.api("POST", "/v1/agents", &other, &[], Some(&body));
    let theirs = theirs["id"].as_str().unwrap();
    assert_refused(
        &mint(json!({"contact": "v-1", "agent_id": theirs})),
        422,
        "agent_id",
    );
    let body =
        json!({"name": "Front desk", "prompt": "You are the clinic's front desk."}).to_string();
    let (status, agent) = p.api("POST", "/v1/agents", &key, &[], Some(&body));
    assert_eq!(status, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap();
    let before = jiff::Timestamp::now();
    let (status, minted) = mint(json!({"contact": "visitor-42", "agent_id": agent, "ttl_s": 600}));
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    assert_eq!(minted["url"], format!("/v1/chat?token={token}"));
    let lasts = time(&minted["expires_at"]).duration_since(before);
    assert!(
        lasts > jiff::SignedDuration::from_secs(590)
            && lasts <= jiff::SignedDuration::from_secs(601),
        "{minted}"
    );
    let contact_id = minted["contact_id"].as_str().unwrap().to_string();
    let visitor = get(&p, &key, "/v1/contacts/web:visitor-42");
    assert_eq!(
        (visitor["id"].as_str(), visitor["kind"].as_str()),
        (Some(contact_id.as_str()), Some("web"))
    );

    // Unknown tokens are refused.
    assert_eq!(Chat::open(&p, "pct_unknown").err(), Some(403));

    // The first session: the reply comes back and both lines go on the timeline.
    llm.push(LlmReply::text(&["We have openings", " on Tuesday."]));
    let mut chat = Chat::open(&p, &token).expect("the chat opens");
    assert_eq!(
        chat.next(),
        json!({"type": "ready", "contact_id": contact_id})
    );
    let reply = chat.say("Can I book a cleaning next week?");
    assert_eq!(
        reply,
        json!({"type": "message", "role": "agent", "text": "We have openings on Tuesday."})
    );
    assert!(
        system_prompt(&llm, 0).contains("You are the clinic's front desk."),
        "{}",
        system_prompt(&llm, 0)
    );
    drop(chat);
    let timeline = get(&p, &key, &format!("/v1/contacts/{contact_id}/timeline"));
    let lines: Vec<(String, String, String)> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["channel"].as_str().unwrap().into(),
                e["role"].as_str().unwrap().into(),
                e["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "chat".into(),
                "agent".into(),
                "We have openings on Tuesday.".into()
            ),
            (
                "chat".into(),
                "contact".into(),
                "Can I book a cleaning next week?".into()
            ),
        ],
        "{timeline}"
    );

    // A second session remembers the first: its lines are in the LLM's system prompt.
    let (status, second) = mint(json!({"contact": "visitor-42"}));
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["contact_id"], contact_id.as_str());
    let mut chat = Chat::open(&p, second["token"].as_str().unwrap()).expect("the chat opens");
    chat.next();
    let reply = chat.say("Is Tuesday at 10 free?");
    assert_eq!(reply["role"], "agent", "{reply}");
    let prompt = system_prompt(&llm, 1);
    assert!(
        prompt.contains("Can I book a cleaning next week?"),
        "{prompt}"
    );
    assert!(prompt.contains("We have openings on Tuesday."), "{prompt}");
    drop(chat);

    // A phone number joins the visitor to that number's contact.
    let (status, by_phone) = mint(json!({"contact": "+1 555 765 4321", "account_id": acc}));
    assert_eq!(status, 201, "{by_phone}");
    let phone = get(&p, &key, "/v1/contacts/%2B15557654321");
    assert_eq!(by_phone["contact_id"], phone["id"], "{phone}");

    // An expired token is refused like an unknown one. (Tokens last at least a minute, so
    // the test ages this one in the database.)
    expire_chat_tokens(&p);
    assert_eq!(Chat::open(&p, &token).err(), Some(403));
}

/// Makes every chat token of `p` expired, as if their time had passed.
fn expire_chat_tokens(p: &Parley) {
    let url = format!("sqlite://{}", p.data_dir.join("parley.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        let done = sqlx::query("UPDATE chat_tokens SET expires_at = 1")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(done.rows_affected() > 0);
    });
}
