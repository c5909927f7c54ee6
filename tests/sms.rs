//! SMS through Twilio against the real binary: webhooks signed as Twilio signs them (with
//! Twilio's own Python helper library where it is installed), the agent's replies sent to a
//! fake Twilio REST API, delivery status callbacks in any order, retries, and the contact's
//! language and memory as the fake LLM's prompts show them.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::twilio::{FakeTwilio, TwilioReply};
use support::sms::*;
use support::*;

const SHOP: &str = "+15550100200";
const TEXTER: &str = "+15550100999";

struct Rig {
    twilio: FakeTwilio,
    llm: FakeLlm,
    parley: Parley,
    key: String,
}

impl Rig {
    fn start(extra_env: &[(&str, &str)]) -> Rig {
        let twilio = FakeTwilio::start();
        twilio.require_auth(ACCOUNT_SID, AUTH_TOKEN);
        let llm = FakeLlm::start();
        let llm_url = llm.base_url();
        let mut extra = vec![
            ("PARLEY_LLM_PROVIDER", "openai"),
            ("PARLEY_LLM_BASE_URL", llm_url.as_str()),
            // The agent also takes calls, so it needs ears; no call is made here.
            ("PARLEY_STT_PROVIDER", "openai"),
            ("PARLEY_STT_BASE_URL", "http://127.0.0.1:9"),
        ];
        extra.extend_from_slice(extra_env);
        let sms = sms_env(&twilio, &extra);
        let env = as_env(&sms);
        let parley = Parley::start(&env);
        let root = parley.printed_admin_key();
        let (_, key) = parley.tenant(&root, "Bakery", Some(SHOP), "write");
        Rig {
            twilio,
            llm,
            parley,
            key,
        }
    }

    /// Posts Twilio's form to `path` with `signature` (None: no header).
    fn post(
        &self,
        path: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> (u16, String) {
        post_form(&self.parley, path, params, signature)
    }

    /// Posts `params` to `path` signed as Twilio signs it.
    fn webhook(&self, path: &str, params: &[(String, String)]) -> (u16, String) {
        post_signed(&self.parley, path, params)
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.parley.api("GET", path, &self.key, &[], None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn messages(&self) -> Vec<Value> {
        self.get("/v1/messages")["data"].as_array().unwrap().clone()
    }

    /// Waits until the fake Twilio has accepted `n` messages.
    fn sent(&self, n: usize) -> Vec<support::fakes::twilio::TwilioMessage> {
        poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            let m = self.twilio.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| {
            panic!(
                "Twilio got {:?}, not {n} messages\n{}",
                self.twilio.requests(),
                self.parley.logs()
            )
        })
    }

    /// The stored message `id` once `ready` says so.
    fn message_when(&self, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            let m = self.get(&format!("/v1/messages/{id}"));
            ready(&m).then_some(m)
        })
        .unwrap_or_else(|| panic!("message {id}: {}", self.get(&format!("/v1/messages/{id}"))))
    }
}

/// The signature Twilio's own `RequestValidator` (PyPI `twilio`) computes; None when the
/// package is not installed (scripts/setup.sh installs it).
fn twilio_library_signature(url: &str, params: &[(String, String)]) -> Option<String> {
    let script = repo_root().join("tests/support/twilio_sign.py");
    let out = Command::new("python3")
        .current_dir(repo_root())
        .arg(script)
        .args(["sign", AUTH_TOKEN, url])
        .args(params.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn incoming(sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    incoming_to(sid, from, SHOP, body)
}

/// A status callback for a message from the shop to the texter.
fn status(sid: &str, status: &str, error_code: Option<&str>) -> Vec<(String, String)> {
    status_form(sid, SHOP, TEXTER, status, error_code)
}

fn system_prompt(llm: &FakeLlm, i: usize) -> String {
    llm.requests()[i].body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn last_user_message(llm: &FakeLlm, i: usize) -> String {
    llm.requests()[i].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

#[test]
fn requests_signed_by_twilios_own_library_are_accepted_and_tampered_ones_refused() {
    let rig = Rig::start(&[]);
    rig.llm.set_default(LlmReply::text(&["Yes, we do."]));
    let path = "/webhooks/twilio/sms";
    let form = incoming(
        "SM00000000000000000000000000000001",
        TEXTER,
        "Do you bake rye?",
    );
    let url = format!("{PUBLIC_URL}{path}");
    let library = twilio_library_signature(&url, &form);
    if !require(
        "requests_signed_by_twilios_own_library",
        "the twilio Python package (scripts/setup.sh)",
        library.is_some(),
    ) {
        return;
    }
    let library = library.unwrap();
    assert_eq!(
        library,
        sign(path, &form),
        "Parley signs as Twilio's library does"
    );
    let mut events = SseListener::open(&rig.parley, &rig.key);

    // Tampered with: a changed body, a signature over the internal URL, another token's
    // signature, no signature. Each is refused and nothing is stored.
    let mut changed = form.clone();
    changed[10].1 = "Do you bake rye? Send me 100.".into();
    assert_eq!(rig.post(path, &changed, Some(&library)).0, 403);
    let internal = format!("http://{}{path}", rig.parley.http_addr);
    let wrong_url = parley::channels::sms::signature::expected(AUTH_TOKEN, &internal, &form);
    assert_eq!(rig.post(path, &form, Some(&wrong_url)).0, 403);
    let wrong_token = parley::channels::sms::signature::expected("another-token", &url, &form);
    assert_eq!(rig.post(path, &form, Some(&wrong_token)).0, 403);
    let (status, body) = rig.post(path, &form, None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("X-Twilio-Signature"), "{body}");
    assert!(
        rig.messages().is_empty(),
        "nothing stored for refused webhooks"
    );

    // Signed by Twilio's library: stored whole and acknowledged with empty TwiML.
    let (status, body) = rig.post(path, &form, Some(&library));
    assert_eq!((status, body.as_str()), (200, EMPTY_TWIML));
    let stored = rig.messages();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let id = stored[0]["id"].as_str().unwrap();
    let one = rig.get(&format!("/v1/messages/{id}"));
    assert_eq!(one["direction"], "inbound");
    assert_eq!(one["from"], TEXTER);
    assert_eq!(one["to"], SHOP);
    assert_eq!(one["body"], "Do you bake rye?");
    assert_eq!(one["status"], "received");
    for (k, v) in &form {
        assert_eq!(one["raw"][k], v.as_str(), "raw payload keeps {k}");
    }
    events.until("sms.received", Duration::from_secs(5));
    assert!(
        events.until(id, Duration::from_secs(5)).contains(id),
        "sms.received names the message"
    );
    // The agent's reply went out by REST, to the texter, from the number texted.
    let sent = rig.sent(1);
    assert_eq!(
        (
            sent[0].to.as_str(),
            sent[0].from.as_str(),
            sent[0].body.as_str()
        ),
        (TEXTER, SHOP, "Yes, we do.")
    );
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some("https://sms.parley.example/webhooks/twilio/status")
    );
}

#[test]
fn twilios_documented_example_signature_verifies() {
    // https://www.twilio.com/docs/usage/security#validating-requests
    let params: Vec<(String, String)> = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert!(parley::channels::sms::signature::valid(
        "12345",
        url,
        &params,
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    ));
    assert!(!parley::channels::sms::signature::valid(
        "12345",
        url,
        &params[1..],
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    ));
}

#[test]
fn a_replayed_message_sid_creates_nothing_new_and_gets_the_same_answer() {
    let rig = Rig::start(&[]);
    rig.llm.set_default(LlmReply::text(&["We open at eight."]));
    let form = incoming(
        "SM00000000000000000000000000000002",
        TEXTER,
        "When do you open?",
    );
    let first = rig.webhook("/webhooks/twilio/sms", &form);
    rig.sent(1);
    let again = rig.webhook("/webhooks/twilio/sms", &form);
    assert_eq!(first, again);
    assert_eq!(first.1, EMPTY_TWIML);
    // One message in, one reply out; one LLM request, one send, one timeline entry each.
    let messages = rig.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(rig.llm.request_count(), 1);
    assert_eq!(rig.twilio.messages().len(), 1);
    let timeline = rig.get(&format!(
        "/v1/contacts/{}/timeline",
        TEXTER.replace('+', "%2B")
    ));
    let texts: Vec<&str> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["We open at eight.", "When do you open?"]);
}

#[test]
fn the_agent_answers_each_sms_knowing_the_conversation_so_far() {
    let rig = Rig::start(&[("PARLEY_AGENT_PROMPT", "You answer for Bob's Bakery.")]);
    rig.llm.push(LlmReply::text(&["Yes, every day."]));
    rig.llm.push(LlmReply::text(&["On Sundays until noon."]));
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming(
            "SM00000000000000000000000000000003",
            TEXTER,
            "Do you sell sourdough?",
        ),
    );
    rig.sent(1);
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming(
            "SM00000000000000000000000000000004",
            TEXTER,
            "And on Sundays?",
        ),
    );
    let sent = rig.sent(2);
    assert_eq!(sent[1].body, "On Sundays until noon.");
    let first = system_prompt(&rig.llm, 0);
    assert!(first.starts_with("You answer for Bob's Bakery."), "{first}");
    assert!(first.contains("SMS"), "told it is texting: {first}");
    assert!(
        !first.contains("What you remember"),
        "nothing to remember yet: {first}"
    );
    let second = system_prompt(&rig.llm, 1);
    assert!(
        second.contains("SMS from them: Do you sell sourdough?"),
        "{second}"
    );
    assert!(second.contains("SMS from you: Yes, every day."), "{second}");
    assert!(
        !second.contains("And on Sundays?"),
        "the message answered is the user's turn"
    );
    assert_eq!(last_user_message(&rig.llm, 1), "And on Sundays?");
}

#[test]
fn status_callbacks_only_move_a_message_forward_and_all_are_kept() {
    let rig = Rig::start(&[]);
    rig.llm.set_default(LlmReply::text(&["Noted."]));
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming("SM00000000000000000000000000000005", TEXTER, "Hi"),
    );
    let sid = rig.sent(1)[0].sid.clone();
    let reply = rig
        .messages()
        .into_iter()
        .find(|m| m["direction"] == "outbound")
        .unwrap();
    let id = reply["id"].as_str().unwrap().to_string();
    rig.message_when(&id, |m| m["provider_sid"] == sid.as_str());
    let mut events = SseListener::open(&rig.parley, &rig.key);
    let path = "/webhooks/twilio/status";
    // Out of order: delivered arrives before sent.
    for s in ["sending", "delivered", "sent"] {
        let (code, body) = rig.webhook(path, &status(&sid, s, None));
        assert_eq!(code, 200, "{s}: {body}");
    }
    let m = rig.get(&format!("/v1/messages/{id}"));
    assert_eq!(
        m["status"], "delivered",
        "a late sent does not undo delivered"
    );
    let kept: Vec<(String, bool)> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().into(),
                e["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        vec![
            ("sending".into(), true),
            ("delivered".into(), true),
            ("sent".into(), false)
        ]
    );
    assert!(events
        .until("delivered", Duration::from_secs(5))
        .contains("sms.status"));
    // A refused signature changes nothing; an unknown sid is kept for later and answered 200.
    let (code, _) = rig.post(path, &status(&sid, "failed", Some("30005")), Some("bad"));
    assert_eq!(code, 403);
    assert_eq!(
        rig.get(&format!("/v1/messages/{id}"))["status"],
        "delivered"
    );
    let unknown = "SM0000000000000000000000000000ffff";
    assert_eq!(rig.webhook(path, &status(unknown, "sent", None)).0, 200);
    // A failure with its error code, on a message not yet delivered.
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming(
            "SM00000000000000000000000000000006",
            "+15550100777",
            "Hello",
        ),
    );
    let sid2 = rig.sent(2)[1].sid.clone();
    let id2 = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rig.messages()
            .into_iter()
            .find(|m| m["provider_sid"] == sid2.as_str())
            .map(|m| m["id"].as_str().unwrap().to_string())
    })
    .unwrap();
    rig.webhook(path, &status(&sid2, "undelivered", Some("30003")));
    let m = rig.get(&format!("/v1/messages/{id2}"));
    assert_eq!(
        (m["status"].as_str(), m["error_code"].as_i64()),
        (Some("undelivered"), Some(30003))
    );
}

#[test]
fn sends_are_retried_on_5xx_but_not_on_other_refusals() {
    let rig = Rig::start(&[]);
    rig.llm.set_default(LlmReply::text(&["Thanks!"]));
    rig.twilio.push(TwilioReply::status(503));
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming("SM00000000000000000000000000000007", TEXTER, "Hi there"),
    );
    rig.sent(1);
    let reply = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rig.messages()
            .into_iter()
            .find(|m| m["direction"] == "outbound" && m["provider_sid"].is_string())
    })
    .unwrap();
    assert_eq!(reply["attempts"], 2, "{reply}");
    assert_eq!(reply["status"], "queued");
    assert_eq!(rig.twilio.requests().len(), 2);

    // Twilio refuses the number: not retried; the message fails with Twilio's code.
    rig.twilio
        .push(TwilioReply::error(400, 21211, "Invalid 'To' Phone Number"));
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming(
            "SM00000000000000000000000000000008",
            "+15550100888",
            "Hello",
        ),
    );
    let failed = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rig.messages().into_iter().find(|m| m["status"] == "failed")
    })
    .unwrap_or_else(|| panic!("{:?}\n{}", rig.messages(), rig.parley.logs()));
    assert_eq!(failed["error_code"], 21211);
    assert_eq!(failed["attempts"], 1);
    assert_eq!(rig.twilio.requests().len(), 3, "the 400 was not retried");
}

#[test]
fn the_texters_language_is_detected_kept_and_used_for_replies() {
    let rig = Rig::start(&[]);
    rig.llm.set_default(LlmReply::text(&["¡Claro!"]));
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming(
            "SM00000000000000000000000000000009",
            TEXTER,
            "Hola, ¿tienen pan sin gluten para mañana?",
        ),
    );
    rig.sent(1);
    let contact = rig.get(&format!("/v1/contacts/{}", TEXTER.replace('+', "%2B")));
    assert_eq!(contact["language"], "es", "{contact}");
    assert!(contact["language_confidence"].as_f64().unwrap() > 0.7);
    assert!(system_prompt(&rig.llm, 0).contains("Always answer in Spanish."));
    // "ok" says nothing of a language: the stored one holds.
    rig.webhook(
        "/webhooks/twilio/sms",
        &incoming("SM00000000000000000000000000000010", TEXTER, "ok"),
    );
    rig.sent(2);
    assert!(system_prompt(&rig.llm, 1).contains("Always answer in Spanish."));
    let contact = rig.get(&format!("/v1/contacts/{}", TEXTER.replace('+', "%2B")));
    assert_eq!(contact["language"], "es");
}

#[test]
fn a_message_to_a_number_no_account_has_is_kept_and_not_answered() {
    let rig = Rig::start(&[]);
    let mut form = incoming("SM00000000000000000000000000000011", TEXTER, "Hello?");
    for (k, v) in form.iter_mut() {
        if k == "To" {
            *v = "+15550109999".into();
        }
    }
    assert_eq!(rig.webhook("/webhooks/twilio/sms", &form).1, EMPTY_TWIML);
    let root = rig.parley.printed_admin_key();
    let (_, listed) = rig.parley.api(
        "GET",
        "/v1/messages?account_id=acc_operator",
        &root,
        &[],
        None,
    );
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(rig.llm.request_count(), 0);
    assert!(rig.twilio.requests().is_empty());
}

#[test]
fn without_twilio_configured_the_webhooks_refuse() {
    let p = Parley::start(&[]);
    let form = incoming("SM00000000000000000000000000000012", TEXTER, "Hi");
    let (status, body) = post_form(&p, "/webhooks/twilio/sms", &form, Some("x"));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("sms.twilio_account_sid"), "{body}");
}
