//! Browser calls end to end without a browser: a WebRTC client built on the same library as
//! the server (str0m: full ICE, DTLS-SRTP, Opus), signalling over WHIP against the real
//! `parley serve` with the local fake providers. What a real browser does on top of this
//! (getUserMedia, the served page) is `tests/webrtc_page.rs`.

mod support;

#[path = "../media/tests/support/webrtc_client.rs"]
mod webrtc_client;

use std::time::{Duration, Instant};

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_openai::FakeOpenAiTts;
use support::*;
use webrtc_client::{loud_frames, WebRtcClient};

struct Rig {
    stt: FakeOpenAiStt,
    llm: FakeLlm,
    _tts: FakeOpenAiTts,
    parley: Parley,
    key: String,
}

impl Rig {
    fn start(test: &str, extra_env: &[(&str, &str)]) -> Option<Rig> {
        let models = vad_models();
        if !require(
            test,
            "the VAD model (scripts/fetch_models.sh)",
            models.is_some(),
        ) || !require(
            test,
            "the speech fixture (scripts/setup.sh)",
            speech_s16_wav().exists(),
        ) {
            return None;
        }
        let (lib, model) = models.unwrap();
        let stt = FakeOpenAiStt::start();
        let llm = FakeLlm::start();
        let tts = FakeOpenAiTts::start();
        let (stt_url, llm_url, tts_url) = (stt.base_url(), llm.base_url(), tts.base_url());
        let mut env: Vec<(&str, &str)> = vec![
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
            ("PARLEY_STT_PROVIDER", "openai"),
            ("PARLEY_STT_BASE_URL", &stt_url),
            ("PARLEY_LLM_PROVIDER", "openai"),
            ("PARLEY_LLM_BASE_URL", &llm_url),
            ("PARLEY_TTS_PROVIDER", "openai"),
            ("PARLEY_TTS_BASE_URL", &tts_url),
            ("PARLEY_AGENT_GREETING", "Hello there."),
        ];
        env.extend_from_slice(extra_env);
        let parley = Parley::launch(Launch {
            args: &["--log-format", "json"],
            env: &env,
            ..Launch::default()
        });
        let key = parley.printed_admin_key();
        Some(Rig {
            stt,
            llm,
            _tts: tts,
            parley,
            key,
        })
    }
}

/// POSTs `offer` to the WHIP endpoint with `token`: (status, Location, body).
fn whip(parley: &Parley, token: &str, offer: &str) -> (u16, Option<String>, String) {
    whip_at(parley, "/v1/webrtc/whip", token, offer)
}

/// [`whip`] to `path` (with a query).
fn whip_at(parley: &Parley, path: &str, token: &str, offer: &str) -> (u16, Option<String>, String) {
    let auth = format!("Bearer {token}");
    let (status, headers, body) = raw_http(
        parley.http_addr,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/sdp"),
        ],
        offer,
    );
    (
        status,
        header_value(&headers, "location").map(str::to_string),
        body,
    )
}

/// The speech fixture (8 kHz) at 16 kHz, by linear interpolation.
fn speech_16k() -> Vec<i16> {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    assert_eq!(wav.sample_rate, 8_000);
    let s = &wav.samples;
    let mut out = Vec::with_capacity(s.len() * 2);
    for i in 0..s.len() {
        let next = *s.get(i + 1).unwrap_or(&s[i]);
        out.push(s[i]);
        out.push(((i32::from(s[i]) + i32::from(next)) / 2) as i16);
    }
    out
}

/// Sends `pcm` (16 kHz) in real time, 20 ms a packet, pumping the client meanwhile.
fn speak(client: &mut WebRtcClient, pcm: &[i16]) {
    let start = Instant::now();
    for (i, frame) in pcm.chunks(320).enumerate() {
        let mut f = frame.to_vec();
        f.resize(320, 0);
        client.send_audio_20ms(&f);
        client.pump(start + Duration::from_millis(20 * (i as u64 + 1)));
    }
}

/// Keeps the client's side of the call going for `d`, sending silence.
fn listen(client: &mut WebRtcClient, d: Duration) {
    speak(client, &vec![0i16; (d.as_millis() as usize / 20) * 320]);
}

fn cdr_of(parley: &Parley, key: &str, id: &str) -> serde_json::Value {
    poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (status, cdr) = parley.api("GET", &format!("/v1/cdrs/{id}"), key, &[], None);
        (status == 200).then_some(cdr)
    })
    .unwrap_or_else(|| panic!("no record of {id}\n{}", parley.logs()))
}

fn live_calls(parley: &Parley, key: &str) -> Vec<serde_json::Value> {
    let (status, calls) = parley.api("GET", "/v1/calls", key, &[], None);
    assert_eq!(status, 200, "{calls}");
    calls["data"]
        .as_array()
        .or_else(|| calls.as_array())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_webrtc_client_talks_with_the_agent_and_hangs_up_with_delete() {
    let name = "a_webrtc_client_talks_with_the_agent_and_hangs_up_with_delete";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    rig.stt
        .push(SttReply::text("What time do you open?", Some("english")));
    rig.stt.set_default(SttReply::text("", Some("english")));
    rig.llm
        .set_default(LlmReply::text(&["We open ", "at nine. ", "See you then!"]));

    // The caller is a known person: their phone number as the contact.
    let mut client = WebRtcClient::new();
    let offer = client.offer();
    let path = "/v1/webrtc/whip?contact=%2B15551230000";
    let (status, location, answer) = whip_at(&rig.parley, path, &rig.key, &offer);
    assert_eq!(status, 201, "{answer}\n{}", rig.parley.logs());
    let location = location.expect("a Location header");
    let id = location.rsplit('/').next().unwrap().to_string();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    client.accept_answer(&answer);
    assert!(client.connect(Duration::from_secs(5)), "ICE and DTLS");

    // The call is live and the greeting (the fake TTS's tone) reaches the client.
    let calls = live_calls(&rig.parley, &rig.key);
    assert!(
        calls.iter().any(|c| c["id"] == id.as_str()),
        "{id} in {calls:?}"
    );
    listen(&mut client, Duration::from_millis(1500));
    let greeting = loud_frames(&client.received_pcm, 48_000);
    assert!(
        greeting >= 10,
        "the greeting was heard ({greeting} loud frames)"
    );

    // The caller speaks; the reply comes back.
    let heard_before = client.received_pcm.len();
    speak(&mut client, &speech_16k());
    // The reply (0.8 s of the fake voice) follows the end of speech; a loaded machine may
    // take a while.
    let deadline = Instant::now() + Duration::from_secs(12);
    while loud_frames(&client.received_pcm[heard_before..], 48_000) < 20
        && Instant::now() < deadline
    {
        listen(&mut client, Duration::from_millis(500));
    }
    assert!(rig.stt.upload_count() >= 1, "the STT got the speech");
    assert!(rig.llm.request_count() >= 1, "the LLM was asked");
    let reply = loud_frames(&client.received_pcm[heard_before..], 48_000);
    assert!(reply >= 20, "the reply was heard ({reply} loud frames)");

    // The browser hangs up.
    let auth = format!("Bearer {}", rig.key);
    let (status, _, body) = raw_http(
        rig.parley.http_addr,
        "DELETE",
        &location,
        &[("Authorization", &auth)],
        "",
    );
    assert!((200..300).contains(&status), "DELETE: {status} {body}");
    let cdr = cdr_of(&rig.parley, &rig.key, &id);
    assert_eq!(cdr["channel"], "webrtc", "{cdr}");
    assert_eq!(cdr["hangup_cause"], "browser_hangup", "{cdr}");
    assert_eq!(cdr["codec"], "opus", "{cdr}");
    assert!(cdr["mos"].as_f64().is_some(), "quality: {cdr}");
    let transcript = cdr["transcript"].to_string();
    assert!(transcript.contains("What time do you open?"), "{cdr}");
    assert!(
        !live_calls(&rig.parley, &rig.key)
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "the call is over"
    );
    // The call joined that person's timeline, as their calls and texts do.
    let on_timeline = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let (status, timeline) = rig.parley.api(
            "GET",
            "/v1/contacts/%2B15551230000/timeline",
            &rig.key,
            &[],
            None,
        );
        (status == 200 && timeline.to_string().contains(&id)).then_some(())
    });
    assert!(
        on_timeline.is_some(),
        "the browser call is on +15551230000's timeline"
    );
    // A second DELETE finds nothing.
    let (status, _, _) = raw_http(
        rig.parley.http_addr,
        "DELETE",
        &location,
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 404);
}

#[test]
fn an_api_hang_up_ends_a_browser_call() {
    let name = "an_api_hang_up_ends_a_browser_call";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    let mut client = WebRtcClient::new();
    let offer = client.offer();
    let (status, location, answer) = whip(&rig.parley, &rig.key, &offer);
    assert_eq!(status, 201, "{answer}");
    let id = location.unwrap().rsplit('/').next().unwrap().to_string();
    client.accept_answer(&answer);
    assert!(client.connect(Duration::from_secs(5)));
    listen(&mut client, Duration::from_millis(300));
    let (status, body) = rig.parley.api(
        "POST",
        &format!("/v1/calls/{id}/hangup"),
        &rig.key,
        &[],
        Some("{}"),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let cdr = cdr_of(&rig.parley, &rig.key, &id);
    assert_eq!(cdr["hangup_cause"], "api", "{cdr}");
    assert_eq!(cdr["hangup_side"], "parley", "{cdr}");
    // Parley removed the peer: nothing more comes to the client.
    listen(&mut client, Duration::from_millis(500));
    let after = client.stats.rtp_received;
    listen(&mut client, Duration::from_secs(1));
    assert_eq!(client.stats.rtp_received, after, "media stopped");
}

#[test]
fn offers_that_cannot_make_a_call_are_refused_with_the_reason() {
    let name = "offers_that_cannot_make_a_call_are_refused_with_the_reason";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    let (status, _, body) = whip(&rig.parley, &rig.key, "v=0\r\nthis is not SDP\r\n");
    assert_eq!(status, 400, "{body}");
    assert!(body.to_lowercase().contains("sdp"), "{body}");

    let video = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                 a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
                 m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
                 a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
                 a=rtpmap:96 VP8/90000\r\na=sendrecv\r\na=rtcp-mux\r\n";
    let (status, _, body) = whip(&rig.parley, &rig.key, video);
    assert_eq!(status, 406, "{body}");
    assert!(body.contains("no audio"), "{body}");

    let mut client = WebRtcClient::new();
    let pcmu_only = client
        .offer()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().contains("opus"))
        .map(|l| {
            if l.starts_with("m=audio") {
                "m=audio 9 UDP/TLS/RTP/SAVPF 0".to_string()
            } else {
                l.to_string()
            }
        })
        .chain(["a=rtpmap:0 PCMU/8000".to_string()])
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let (status, _, body) = whip(&rig.parley, &rig.key, &pcmu_only);
    assert_eq!(status, 406, "{body}");
    assert!(body.contains("Opus"), "{body}");

    // An account without credit: 402, and nothing is left behind.
    // (Calls are free until the account has a rate plan; this one charges per second.)
    let (account, tenant_key) = rig.parley.tenant(&rig.key, "broke", None, "write");
    let (status, body) = rig.parley.api(
        "PUT",
        &format!("/v1/accounts/{account}/plan"),
        &rig.key,
        &[],
        Some(r#"{"rate_per_minute":600000,"increment_s":1}"#),
    );
    assert_eq!(status, 200, "{body}");
    let mut client = WebRtcClient::new();
    let (status, _, body) = whip(&rig.parley, &tenant_key, &client.offer());
    assert_eq!(status, 402, "{body}");
    assert!(live_calls(&rig.parley, &rig.key).is_empty());
}

#[test]
fn a_browser_that_never_connects_is_cleaned_up_with_its_lease() {
    let name = "a_browser_that_never_connects_is_cleaned_up_with_its_lease";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    let mut client = WebRtcClient::new();
    let (status, location, body) = whip(&rig.parley, &rig.key, &client.offer());
    assert_eq!(status, 201, "{body}");
    let id = location.unwrap().rsplit('/').next().unwrap().to_string();
    // The client never answers ICE: within 15 s (+ a tick and the record's write) it is gone.
    let started = Instant::now();
    let cdr = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let (status, cdr) = rig
            .parley
            .api("GET", &format!("/v1/cdrs/{id}"), &rig.key, &[], None);
        (status == 200).then_some(cdr)
    })
    .unwrap_or_else(|| panic!("no record\n{}", rig.parley.logs()));
    assert!(
        started.elapsed() <= Duration::from_secs(17),
        "cleaned up after {:?}",
        started.elapsed()
    );
    assert_eq!(cdr["hangup_cause"], "webrtc_connect_timeout", "{cdr}");
    assert!(live_calls(&rig.parley, &rig.key).is_empty());
    let metrics = rig.parley.metrics();
    let reserved = metric_value(&metrics, "parley_leases_reserved_total").unwrap_or(0.0);
    let released = metric_value(&metrics, "parley_leases_released_total").unwrap_or(0.0);
    assert_eq!(
        (reserved, released),
        (1.0, 1.0),
        "the lease was released:\n{metrics}"
    );
}

#[test]
fn a_draining_node_refuses_new_browser_calls_with_503() {
    let name = "a_draining_node_refuses_new_browser_calls_with_503";
    let Some(mut rig) = Rig::start(name, &[]) else {
        return;
    };
    // A call in progress keeps the drain (and the HTTP server) going.
    let mut client = WebRtcClient::new();
    let (status, location, body) = whip(&rig.parley, &rig.key, &client.offer());
    assert_eq!(status, 201, "{body}");
    client.accept_answer(&body);
    assert!(client.connect(Duration::from_secs(5)));
    let pid = rig.parley.pid().expect("parley's pid") as i32;
    // SAFETY: kill(2) with a valid signal number on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let refused = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let mut other = WebRtcClient::new();
        let (status, _, body) = whip(&rig.parley, &rig.key, &other.offer());
        (status == 503).then_some(body)
    });
    let body = refused.unwrap_or_else(|| panic!("no 503 while draining\n{}", rig.parley.logs()));
    assert!(body.contains("draining"), "{body}");
    // The call in progress goes on until the browser hangs up.
    listen(&mut client, Duration::from_millis(200));
    let auth = format!("Bearer {}", rig.key);
    let (status, _, _) = raw_http(
        rig.parley.http_addr,
        "DELETE",
        &location.unwrap(),
        &[("Authorization", &auth)],
        "",
    );
    assert!(
        (200..300).contains(&status),
        "DELETE while draining: {status}"
    );
    let exited = rig.parley.stop(Duration::from_secs(15));
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}

#[test]
fn a_browser_call_counts_toward_the_accounts_call_limit() {
    let name = "a_browser_call_counts_toward_the_accounts_call_limit";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    let (account, key) = rig.parley.tenant(&rig.key, "one-line", None, "write");
    let (status, body) = rig.parley.api(
        "PATCH",
        &format!("/v1/accounts/{account}"),
        &rig.key,
        &[],
        Some(r#"{"max_concurrent_calls":1}"#),
    );
    assert_eq!(status, 200, "{body}");
    let mut first = WebRtcClient::new();
    let (status, location, body) = whip(&rig.parley, &key, &first.offer());
    assert_eq!(status, 201, "{body}");
    let mut second = WebRtcClient::new();
    let (status, _, body) = whip(&rig.parley, &key, &second.offer());
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("limit"), "{body}");
    // Once the first ends, its place is free again.
    let auth = format!("Bearer {key}");
    let (status, _, _) = raw_http(
        rig.parley.http_addr,
        "DELETE",
        &location.unwrap(),
        &[("Authorization", &auth)],
        "",
    );
    assert!((200..300).contains(&status));
    let freed = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let mut third = WebRtcClient::new();
        let (status, _, _) = whip(&rig.parley, &key, &third.offer());
        (status == 201).then_some(())
    });
    assert!(freed.is_some(), "the account's line was not freed");
}
