//! Load harness for inbound SMS (not a test of behaviour; `#[ignore]`d, run by
//! `scripts/bench_sms.sh`): Twilio's `POST /webhooks/twilio/sms`, signed as Twilio signs it,
//! sent to a release Parley on SQLite on a fixed schedule (open loop: a request goes out at
//! its time whether or not earlier ones were answered, and its latency counts from that
//! time, so a stall shows up in the percentiles instead of slowing the sender down). Every
//! request has its own MessageSid and comes from one of ~1,000 senders (contacts made, then
//! reused), over keep-alive connections (reqwest's pool opens as many as are in flight).
//! SMS goes to a fake Twilio REST API and the LLM is a fake that answers at once, so the
//! agent's replies (LLM, outbox, REST send) run during the load as they would in production.
//!
//! Prints one JSON line: the rate, the requests, errors (anything but 200), latency
//! percentiles in ms, and afterwards whether every message was stored exactly once (read
//! from Parley's SQLite file through `parley::store::Store`) and how many agent replies
//! reached the fake Twilio.
//!
//! `SMS_LOAD_RATE` (requests per second, default 200), `SMS_LOAD_SECONDS` (default 30),
//! `SMS_LOAD_SENDERS` (default 1000), `SMS_LOAD_REPLY` (default 1; 0 runs with
//! `PARLEY_SMS_REPLY=false`: the webhook's own work alone).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::fakes::openai_llm::FakeLlm;
use support::fakes::twilio::FakeTwilio;
use support::sms::*;
use support::*;

const SHOP: &str = "+15550100200";
const WEBHOOK: &str = "/webhooks/twilio/sms";

/// One request, ready to go: its MessageSid, its form body and its signature.
struct Prepared {
    sid: String,
    body: String,
    signature: String,
}

fn prepare(n: u64, senders: u64) -> Vec<Prepared> {
    (0..n)
        .map(|i| {
            let sid = format!("SM{:032x}", 0x5_1000_0000_u64 + i);
            let from = format!("+1555{:07}", 2_000_000 + i % senders);
            let text = format!("Hi! Do you still have sourdough today? I'd like two loaves ({i}).");
            let params = incoming_to(&sid, &from, SHOP, &text);
            let signature = sign(WEBHOOK, &params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            Prepared {
                sid,
                body,
                signature,
            }
        })
        .collect()
}

#[test]
#[ignore = "a load benchmark: scripts/bench_sms.sh"]
fn inbound_sms_latency() {
    let rate = env_u64("SMS_LOAD_RATE", 200).max(1);
    let seconds = env_u64("SMS_LOAD_SECONDS", 30).max(1);
    let senders = env_u64("SMS_LOAD_SENDERS", 1000).max(1);
    let reply = env_u64("SMS_LOAD_REPLY", 1) != 0;
    let n = rate * seconds;

    let twilio = FakeTwilio::start();
    twilio.require_auth(ACCOUNT_SID, AUTH_TOKEN);
    let llm = FakeLlm::start();
    let llm_url = llm.base_url();
    let sms = sms_env(
        &twilio,
        &[
            ("PARLEY_LLM_PROVIDER", "openai"),
            ("PARLEY_LLM_BASE_URL", llm_url.as_str()),
            // An LLM needs an STT to start; no call is made, so none is ever asked.
            ("PARLEY_STT_PROVIDER", "openai"),
            ("PARLEY_STT_BASE_URL", llm_url.as_str()),
            ("PARLEY_SMS_REPLY", if reply { "true" } else { "false" }),
            // The account's rate would otherwise pace the replies at 60 a minute; this lets
            // every reply go out during the load.
            ("PARLEY_SMS_PER_MINUTE", "100000"),
            ("PARLEY_LOG", "warn"),
        ],
    );
    let env = as_env(&sms);
    let parley = Parley::start(&env);
    let root = parley.printed_admin_key();
    let (account, _) = parley.tenant(&root, "load", Some(SHOP), "write");
    let url = format!("http://{}{WEBHOOK}", parley.http_addr);
    let prepared = prepare(n, senders);
    let sids: Vec<String> = prepared.iter().map(|p| p.sid.clone()).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load_started = Instant::now();
    let (latencies, errors, sender_lag, in_flight_max) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1000)
            .timeout(Duration::from_secs(15)) // what Twilio gives a webhook
            .build()
            .unwrap();
        let start = tokio::time::Instant::now() + Duration::from_millis(200);
        let mut tasks = tokio::task::JoinSet::new();
        let mut done: Vec<(Duration, bool)> = Vec::with_capacity(n as usize);
        let (mut lag, mut in_flight_max) = (Duration::ZERO, 0);
        for (i, p) in prepared.into_iter().enumerate() {
            let at = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
            tokio::time::sleep_until(at).await;
            lag = lag.max(at.elapsed());
            let request = http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("User-Agent", "TwilioProxy/1.1")
                .header("X-Twilio-Signature", p.signature)
                .body(p.body);
            tasks.spawn(async move {
                let ok = match request.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        r.bytes().await.is_ok() && status == 200
                    }
                    Err(_) => false,
                };
                // From the time it was due, not from when it went out.
                (at.elapsed(), ok)
            });
            while let Some(finished) = tasks.try_join_next() {
                done.push(finished.unwrap());
            }
            in_flight_max = in_flight_max.max(tasks.len());
        }
        while let Some(finished) = tasks.join_next().await {
            done.push(finished.unwrap());
        }
        let errors = done.iter().filter(|(_, ok)| !ok).count();
        let mut ms: Vec<f64> = done.iter().map(|(d, _)| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        (ms, errors, lag, in_flight_max)
    });
    let load_s = load_started.elapsed().as_secs_f64();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };

    // The agent's replies: wait until every stored message has one at the fake Twilio, or
    // until none has arrived for 10 s.
    let answered = Instant::now();
    let (mut replies, mut last_change) = (0, Instant::now());
    if reply {
        loop {
            let now = twilio.messages().len();
            if now != replies {
                (replies, last_change) = (now, Instant::now());
            }
            if replies as u64 >= n || last_change.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let replies_done_s = if reply {
        last_change.duration_since(answered).as_secs_f64()
    } else {
        0.0
    };

    // What the database holds, read through the store from Parley's own file.
    let (inbound, distinct, missing, contacts) = rt.block_on(async {
        let db = parley.data_dir.join("parley.db");
        let store = parley::store::Store::open(
            &format!("sqlite://{}?mode=rwc", db.display()),
            &parley.data_dir,
        )
        .await
        .expect("open Parley's database");
        let mut seen: Vec<String> = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .messages(&account, None, before.clone(), 1000)
                .await
                .expect("list messages");
            let Some(last) = page.last() else { break };
            before = Some((last.created_at, last.id.clone()));
            seen.extend(
                page.into_iter()
                    .filter(|m| m.direction == "inbound")
                    .map(|m| m.provider_sid.unwrap_or_default()),
            );
        }
        let distinct: HashSet<&str> = seen.iter().map(String::as_str).collect();
        let missing = sids
            .iter()
            .filter(|s| !distinct.contains(s.as_str()))
            .count();
        let mut contacts = 0;
        let mut before = None;
        loop {
            let page = store
                .contacts(&account, before.clone(), 1000)
                .await
                .expect("list contacts");
            let Some(last) = page.last() else { break };
            before = Some((last.updated_at, last.id.clone()));
            contacts += page.len();
        }
        (seen.len(), distinct.len(), missing, contacts)
    });

    let result = serde_json::json!({
        "backend": "sqlite",
        "reply": reply,
        "rate": rate,
        "seconds": seconds,
        "requests": latencies.len(),
        "load_seconds": (load_s * 100.0).round() / 100.0,
        "errors": errors,
        "latency_ms": {
            "p50": round(pct(0.5)),
            "p90": round(pct(0.9)),
            "p99": round(pct(0.99)),
            "p999": round(pct(0.999)),
            "max": round(pct(1.0)),
        },
        "sender_lag_max_ms": round(sender_lag.as_secs_f64() * 1e3),
        "in_flight_max": in_flight_max,
        "stored": inbound,
        "stored_distinct": distinct,
        "stored_missing": missing,
        "stored_exactly_once": inbound as u64 == n && distinct as u64 == n && missing == 0,
        "contacts": contacts,
        "llm_requests": llm.request_count(),
        "replies_sent": replies,
        "replies_done_s_after_load": (replies_done_s * 100.0).round() / 100.0,
    });
    println!("{result}");
}

fn round(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}
