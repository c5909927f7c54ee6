//! Conversations with the AI agent over real calls: `parley call` (the UAC, recording what it
//! hears) calls a `parley serve` whose STT, LLM and TTS are the local fakes speaking the
//! vendors' protocols. The fake TTS answers each request with a tone of its own frequency,
//! so the caller's recording shows which sentence it heard and when.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_deepgram::tone_hz;
use support::fakes::tts_openai::FakeOpenAiTts;
use support::fakes::twilio::FakeTwilio;
use support::*;

/// The fakes and the Parley that uses them.
struct Rig {
    stt: FakeOpenAiStt,
    llm: FakeLlm,
    tts: FakeOpenAiTts,
    parley: Parley,
}

impl Rig {
    /// `None` (with the skip message printed) when the VAD model or the speech fixture is
    /// missing.
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
            ("PARLEY_AGENT_GREETING", ""),
        ];
        env.extend_from_slice(extra_env);
        let parley = Parley::launch(Launch {
            args: &["--log-format", "json"],
            env: &env,
            ..Launch::default()
        });
        Some(Rig {
            stt,
            llm,
            tts,
            parley,
        })
    }

    /// Calls the agent, plays `wav` and stays on the line for `seconds`; returns what the
    /// caller recorded (16 kHz) once the call is over.
    fn call(&self, wav: &Path, seconds: f64) -> Vec<i16> {
        let (output, data) = run_caller(&self.parley, wav, &["--duration", &seconds.to_string()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "parley call failed: {stderr}");
        let file = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            recording_in(&data.join("recordings"))
        })
        .expect("the caller's recording");
        let wav = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            read_wav(&file).ok()
        })
        .expect("a finished recording");
        assert_eq!(wav.sample_rate, 16_000);
        wav.samples
    }
}

/// `parley call` to `parley`, playing `wav`, with `args`; returns its output and its data
/// directory (where its recording of the call is).
fn run_caller(parley: &Parley, wav: &Path, args: &[&str]) -> (std::process::Output, PathBuf) {
    run_caller_to("agent", parley, wav, args)
}

/// [`run_caller`] dialling `user` (a number, say) at Parley.
fn run_caller_to(
    user: &str,
    parley: &Parley,
    wav: &Path,
    args: &[&str],
) -> (std::process::Output, PathBuf) {
    let (lo, hi) = rtp_port_range();
    let data = parley.scratch_dir("caller-data");
    let output = Command::new(parley_bin())
        .args(["call", &format!("sip:{user}@{}", parley.sip_addr)])
        .arg("--wav")
        .arg(wav)
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
        .env("PARLEY_DATA_DIR", &data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, data)
}

fn recording_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wav"))
}

/// Goertzel power of `hz` in `x` (16 kHz), normalized so a full-scale sine gives about 0.25.
fn tone_power(x: &[i16], hz: f64) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / 16_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (x.len() as f64 * x.len() as f64)
}

/// Milliseconds of the recording, in 100 ms blocks, in which the tone of TTS request `n`
/// dominates.
fn tone_ms(recording: &[i16], n: usize) -> u64 {
    let hz = tone_hz(n);
    recording
        .chunks(1_600)
        .filter(|b| tone_power(b, hz) > 0.002)
        .count() as u64
        * 100
}

/// The first 100 ms block (as ms from the start) where TTS request `n`'s tone is heard.
fn tone_onset_ms(recording: &[i16], n: usize) -> Option<u64> {
    let hz = tone_hz(n);
    recording
        .chunks(1_600)
        .position(|b| tone_power(b, hz) > 0.002)
        .map(|i| i as u64 * 100)
}

/// The user messages of LLM request `i`.
fn user_messages(llm: &FakeLlm, i: usize) -> Vec<String> {
    llm.requests()[i].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Pieces of the caller's audio.
enum Part {
    /// The speech fixture's first phrase (about 0.03-2.35 s of it).
    Phrase1,
    /// Its second phrase (about 2.62-5.45 s).
    Phrase2,
    Silence(u32),
}

/// The caller's audio made of `parts`, as a WAV at the fixture's rate in `dir`.
fn compose(dir: &Path, name: &str, parts: &[Part]) -> PathBuf {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    let rate = wav.sample_rate as usize;
    let split = (rate * 245 / 100).min(wav.samples.len());
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Phrase1 => out.extend_from_slice(&wav.samples[..split]),
            Part::Phrase2 => out.extend_from_slice(&wav.samples[split..]),
            Part::Silence(ms) => out.extend(std::iter::repeat_n(0i16, rate * *ms as usize / 1000)),
        }
    }
    let path = dir.join(name);
    let mut w = parley_media::wav::WavWriter::create(&path, wav.sample_rate).unwrap();
    w.write_samples(&out).unwrap();
    w.finalize().unwrap();
    path
}

fn first_phrase(dir: &Path) -> PathBuf {
    compose(dir, "phrase.wav", &[Part::Phrase1])
}

/// The `input` of every TTS request, in order.
fn tts_inputs(tts: &FakeOpenAiTts) -> Vec<String> {
    tts.requests()
        .iter()
        .map(|r| r.body["input"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Messages of LLM request `i` with role `role`.
fn messages(llm: &FakeLlm, i: usize, role: &str) -> Vec<serde_json::Value> {
    llm.requests()[i].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .cloned()
        .collect()
}

/// Whether Parley logged that its agent ended the call.
fn agent_hung_up(parley: &Parley) -> bool {
    poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        parley
            .logs()
            .contains("the agent ended the call")
            .then_some(())
    })
    .is_some()
}

#[test]
fn speech_in_produces_the_agents_reply_over_rtp() {
    let name = "speech_in_produces_the_agents_reply_over_rtp";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    // The phrase's first VAD segment carries the words. Under load the VAD may cut the
    // phrase at its short pause, and a later segment then transcribes to what is left of it
    // (here: nothing), as a real STT would, instead of the whole sentence again.
    rig.stt
        .push(SttReply::text("What time do you open?", Some("english")));
    rig.stt.set_default(SttReply::text("", Some("english")));
    rig.llm
        .set_default(LlmReply::text(&["We open ", "at nine. ", "See you then!"]));
    let phrase = first_phrase(&rig.parley.scratch_dir("audio"));
    let heard = rig.call(&phrase, 8.0);

    // The utterance was transcribed and its text became the user's turn.
    assert!(rig.stt.upload_count() >= 1, "STT got the utterance");
    assert!(rig.llm.request_count() >= 1, "the LLM was asked");
    assert_eq!(user_messages(&rig.llm, 0), vec!["What time do you open?"]);
    // Both sentences were synthesized, in order, and both reached the caller over RTP.
    let inputs = tts_inputs(&rig.tts);
    assert_eq!(inputs[..2], ["We open at nine.", "See you then!"]);
    let first = tone_ms(&heard, 0);
    let second = tone_ms(&heard, 1);
    // 16 characters at 50 ms each = 800 ms; 13 characters = 650 ms.
    assert!(
        (600..=1_000).contains(&first),
        "first sentence heard for {first} ms"
    );
    assert!(
        (400..=900).contains(&second),
        "second sentence heard for {second} ms"
    );
    let (a, b) = (
        tone_onset_ms(&heard, 0).unwrap(),
        tone_onset_ms(&heard, 1).unwrap(),
    );
    assert!(a < b, "in order: {a} ms then {b} ms");
    // The reply came after the caller's speech (2.35 s), not over it.
    assert!(a >= 2_300, "reply started at {a} ms");
    let metrics = rig.parley.metrics();
    let turns = metric_value(
        &metrics,
        "parley_turn_stage_seconds_count{stage=\"voice_to_voice\"}",
    )
    .unwrap_or(0.0);
    assert!(turns >= 1.0, "the turn's latency was measured:\n{metrics}");
    // The stream was held while the caller spoke: the reply woke the media worker and went
    // out at once rather than at its next tick.
    let early = metric_value(&metrics, "parley_media_early_talkspurts_total").unwrap_or(0.0);
    assert!(
        early >= 1.0,
        "no talkspurt started between ticks:\n{metrics}"
    );
    for line in rig.parley.logs().lines().filter(|l| l.contains("\"turn\"")) {
        println!("{line}");
    }
}

#[test]
fn barge_in_cuts_the_reply_and_the_context_keeps_what_was_heard() {
    let name = "barge_in_cuts_the_reply_and_the_context_keeps_what_was_heard";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    rig.stt
        .set_default(SttReply::text("Tell me everything.", None));
    let long = [
        "This is the first sentence of a long answer, and it goes on for quite a while. ",
        "Here comes the second sentence of it. ",
        "And finally the third one to finish.",
    ];
    rig.llm.push(LlmReply::text(&long));
    rig.llm.set_default(LlmReply::text(&["Sure, go ahead."]));
    // The caller speaks, waits 1.5 s (the reply starts), then talks over the reply's first
    // clause (about 2.7 s to 4.9 s into the call): the VAD decides speech started about
    // 0.6 s into the second phrase, so a longer wait would land on the clause boundary.
    let audio = compose(
        &rig.parley.scratch_dir("audio"),
        "barge.wav",
        &[Part::Phrase1, Part::Silence(1_500), Part::Phrase2],
    );
    let heard = rig.call(&audio, 12.0);

    assert!(
        rig.llm.request_count() >= 2,
        "a second turn followed the interruption"
    );
    // The second request's context holds only the part of the first reply that played.
    let assistant = messages(&rig.llm, 1, "assistant");
    assert_eq!(assistant.len(), 1, "{assistant:?}");
    let kept = assistant[0]["content"].as_str().unwrap().to_string();
    let full = long.concat();
    assert!(!kept.is_empty(), "some of the reply was heard");
    // The caller talked over the first sentence (80 characters: 4 s of audio), so only
    // its first words were kept.
    assert!(
        full.starts_with(&kept) && kept.len() < long[0].trim().len(),
        "kept {kept:?} of {full:?}"
    );
    // The caller heard the start of the first sentence, then nothing of the later two.
    let first = tone_ms(&heard, 0);
    assert!(
        (1_000..3_800).contains(&first),
        "first sentence heard for {first} ms"
    );
    // Later sentences may have been synthesized before the interruption; none was heard.
    let inputs = tts_inputs(&rig.tts);
    let next = inputs
        .iter()
        .position(|t| t == "Sure, go ahead.")
        .unwrap_or_else(|| panic!("the second reply was synthesized: {inputs:?}"));
    let heard_ms: Vec<u64> = (0..inputs.len()).map(|n| tone_ms(&heard, n)).collect();
    for n in 1..next {
        assert_eq!(
            heard_ms[n],
            0,
            "{:?} was cut; heard {heard_ms:?} of {inputs:?}; onsets {:?}; log:\n{}",
            inputs[n],
            (0..inputs.len())
                .map(|n| tone_onset_ms(&heard, n))
                .collect::<Vec<_>>(),
            rig.parley.logs()
        );
    }
    // And then the answer to the second turn.
    assert!(tone_ms(&heard, next) >= 400, "the next reply was heard");
    for line in rig
        .parley
        .logs()
        .lines()
        .filter(|l| l.contains("\"barge-in\""))
    {
        println!("{line}");
    }
}

#[test]
fn a_provider_failure_speaks_the_fallback_and_hangs_up() {
    let name = "a_provider_failure_speaks_the_fallback_and_hangs_up";
    if !require(name, "espeak-ng (scripts/setup.sh)", espeak_available()) {
        return;
    }
    let Some(rig) = Rig::start(name, &[("PARLEY_LLM_RETRIES", "1")]) else {
        return;
    };
    rig.stt.set_default(SttReply::text("Hello?", None));
    rig.llm
        .set_default(LlmReply::status(500, "model overloaded"));
    let phrase = first_phrase(&rig.parley.scratch_dir("audio"));
    let started = std::time::Instant::now();
    let heard = rig.call(&phrase, 25.0);
    let took = started.elapsed();

    assert_eq!(rig.llm.request_count(), 2, "the request was retried once");
    assert!(agent_hung_up(&rig.parley), "Parley ended the call");
    assert!(
        took < Duration::from_secs(20),
        "it did not wait for the caller: {took:?}"
    );
    // The fallback sentence was spoken with the local voice after the caller's phrase.
    let after = &heard[(16_000 * 25 / 10).min(heard.len())..];
    let speech_ms = after.chunks(1_600).filter(|b| rms(b) > 0.02).count() * 100;
    assert!(
        speech_ms >= 1_500,
        "the fallback was heard for {speech_ms} ms"
    );
    assert!(
        rig.tts.requests().is_empty(),
        "the vendor voice was not used"
    );
    let failures = metric_value(
        &rig.parley.metrics(),
        "parley_agent_provider_failures_total",
    )
    .unwrap();
    assert_eq!(failures, 1.0);
}

#[test]
fn a_tool_call_round_trips_through_the_business_system() {
    let name = "a_tool_call_round_trips_through_the_business_system";
    let (tool_url, tool_requests) = tool_server(r#"{"booked":true,"time":"19:00"}"#);
    let tools = format!(
        r#"[{{"name":"book_table","description":"Book a table","url":"{tool_url}","parameters":{{"type":"object","properties":{{"people":{{"type":"integer"}}}}}}}}]"#
    );
    let Some(rig) = Rig::start(name, &[("PARLEY_AGENT_TOOLS", &tools)]) else {
        return;
    };
    rig.stt
        .set_default(SttReply::text("A table for two tonight, please.", None));
    rig.llm.push(LlmReply::tool_calls(&[(
        "call_1",
        "book_table",
        r#"{"people":2}"#,
    )]));
    rig.llm
        .push(LlmReply::text(&["Your table for two is booked at seven."]));
    let phrase = first_phrase(&rig.parley.scratch_dir("audio"));
    let heard = rig.call(&phrase, 8.0);

    // The model was offered the tool, called it, and got the system's answer back.
    let offered: Vec<String> = rig.llm.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(offered.contains(&"book_table".to_string()), "{offered:?}");
    let posted = tool_requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(posted, serde_json::json!({"people": 2}));
    assert_eq!(rig.llm.request_count(), 2);
    let results = messages(&rig.llm, 1, "tool");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["tool_call_id"], "call_1");
    assert_eq!(results[0]["content"], r#"{"booked":true,"time":"19:00"}"#);
    let calls = &messages(&rig.llm, 1, "assistant")[0]["tool_calls"];
    assert_eq!(calls[0]["function"]["name"], "book_table");
    // And the caller heard the confirmation.
    assert_eq!(
        tts_inputs(&rig.tts),
        ["Your table for two is booked at seven."]
    );
    assert!(tone_ms(&heard, 0) >= 1_000);
}

#[test]
fn silence_brings_the_idle_prompt_then_a_goodbye_and_hang_up() {
    let name = "silence_brings_the_idle_prompt_then_a_goodbye_and_hang_up";
    let Some(rig) = Rig::start(
        name,
        &[
            ("PARLEY_AGENT_IDLE_PROMPT_S", "1"),
            ("PARLEY_AGENT_IDLE_HANGUP_S", "1"),
        ],
    ) else {
        return;
    };
    let quiet = compose(
        &rig.parley.scratch_dir("audio"),
        "quiet.wav",
        &[Part::Silence(500)],
    );
    let started = std::time::Instant::now();
    let heard = rig.call(&quiet, 20.0);
    let took = started.elapsed();

    assert_eq!(tts_inputs(&rig.tts), ["Are you still there?", "Goodbye!"]);
    assert!(agent_hung_up(&rig.parley));
    assert!(
        took < Duration::from_secs(10),
        "hung up after the goodbye: {took:?}"
    );
    assert!(tone_ms(&heard, 0) >= 700, "the idle prompt was heard");
    assert!(tone_ms(&heard, 1) >= 200, "the goodbye was heard");
    assert_eq!(rig.llm.request_count(), 0);
}

#[test]
fn dtmf_reaches_the_agent_as_user_input() {
    let name = "dtmf_reaches_the_agent_as_user_input";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    rig.llm
        .set_default(LlmReply::text(&["You pressed four two."]));
    let quiet = compose(
        &rig.parley.scratch_dir("audio"),
        "quiet.wav",
        &[Part::Silence(500)],
    );
    let (output, _) = run_caller(
        &rig.parley,
        &quiet,
        &["--duration", "5", "--dtmf", "42#", "--dtmf-at", "0.5"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(rig.llm.request_count(), 1, "one turn for the keys");
    assert_eq!(
        user_messages(&rig.llm, 0),
        ["[The caller pressed the telephone keys: 42#]"]
    );
    assert_eq!(tts_inputs(&rig.tts), ["You pressed four two."]);
}

#[test]
fn the_voice_follows_the_callers_language() {
    let name = "the_voice_follows_the_callers_language";
    let Some(rig) = Rig::start(
        name,
        &[
            ("PARLEY_AGENT_LANGUAGE", "auto"),
            ("PARLEY_TTS_VOICE", "alloy"),
            ("PARLEY_TTS_VOICES", "es=nova,pt=shimmer"),
        ],
    ) else {
        return;
    };
    rig.stt
        .set_default(SttReply::text("¿A qué hora abren mañana?", Some("spanish")));
    rig.llm
        .set_default(LlmReply::text(&["Abrimos a las nueve."]));
    let phrase = first_phrase(&rig.parley.scratch_dir("audio"));
    rig.call(&phrase, 8.0);

    let requests = rig.tts.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["input"], "Abrimos a las nueve.");
    assert_eq!(requests[0].body["voice"], "nova", "the Spanish voice");
    let system = messages(&rig.llm, 0, "system");
    assert!(
        system[0]["content"]
            .as_str()
            .unwrap()
            .contains("language the caller speaks"),
        "{system:?}"
    );
}

#[test]
fn a_numbers_stored_agent_answers_with_its_own_settings_and_the_cdr_keeps_the_transcript() {
    let name =
        "a_numbers_stored_agent_answers_with_its_own_settings_and_the_cdr_keeps_the_transcript";
    let Some(rig) = Rig::start(name, &[("PARLEY_TTS_VOICE", "alloy")]) else {
        return;
    };
    let p = &rig.parley;
    let root = p.printed_admin_key();
    let number = "+15551230070";
    let (_, key) = p.tenant(&root, "Bakery", Some(number), "write");
    let body = r#"{"name":"Bakery","prompt":"You answer for Bob's Bakery.",
        "greeting":"Bob's Bakery, how can I help?","voice":"echo","language":"en",
        "llm_model":"bakery-1","max_duration_s":30,
        "tools":[{"name":"opening_hours","url":"http://127.0.0.1:9/hours",
                  "description":"The bakery's opening hours"}]}"#;
    let (status, agent) = p.api("POST", "/v1/agents", &key, &[], Some(body));
    assert_eq!(status, 201, "{agent}");
    let agent_id = agent["id"].as_str().unwrap();
    let body = format!(r#"{{"agent_id":"{agent_id}"}}"#);
    let path = format!("/v1/numbers/{number}");
    assert_eq!(p.api("PUT", &path, &key, &[], Some(&body)).0, 200);
    rig.stt
        .push(SttReply::text("What time do you open?", Some("english")));
    rig.stt.set_default(SttReply::text("", Some("english")));
    rig.llm.set_default(LlmReply::text(&["We open at nine."]));
    // The caller speaks once the greeting (1.45 s of the fake's tone) is over.
    let phrase = compose(
        &p.scratch_dir("audio"),
        "after-greeting.wav",
        &[Part::Silence(2_500), Part::Phrase1],
    );
    let (output, _) = run_caller_to(number, p, &phrase, &["--duration", "9"]);
    assert!(output.status.success(), "{output:?}");

    // The stored agent's greeting, voice and prompt; not the config file's.
    let requests = rig.tts.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    assert_eq!(requests[0].body["input"], "Bob's Bakery, how can I help?");
    assert!(requests.iter().all(|r| r.body["voice"] == "echo"));
    let system = messages(&rig.llm, 0, "system");
    assert!(
        system[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You answer for Bob's Bakery."),
        "{system:?}"
    );
    // Its model and its tools.
    let request = &rig.llm.requests()[0].body;
    assert_eq!(request["model"], "bakery-1");
    let tools: Vec<&str> = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(tools.contains(&"opening_hours"), "{tools:?}");
    // The call's record names the agent and keeps what was said, in order.
    let cdr = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (_, list) = p.api("GET", "/v1/cdrs", &key, &[], None);
        list["data"].as_array().and_then(|d| d.first().cloned())
    })
    .expect("the call's record");
    assert_eq!(cdr["agent_id"], agent_id);
    assert_eq!(cdr["number"], number);
    let lines: Vec<(String, String)> = cdr["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["role"].as_str().unwrap().into(),
                l["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = |role: &str, text: &str| (role.to_string(), text.to_string());
    assert_eq!(
        lines[..3],
        [
            expected("agent", "Bob's Bakery, how can I help?"),
            expected("caller", "What time do you open?"),
            expected("agent", "We open at nine."),
        ],
        "{lines:?}"
    );
}

fn rms(x: &[i16]) -> f64 {
    let sum: f64 = x.iter().map(|&v| (f64::from(v) / 32768.0).powi(2)).sum();
    (sum / x.len().max(1) as f64).sqrt()
}

fn espeak_available() -> bool {
    Command::new("espeak-ng")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A business system's HTTP endpoint on 127.0.0.1 answering every POST with `body`; the
/// JSON bodies it received come out of the channel.
fn tool_server(body: &'static str) -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/book", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            let body_start = loop {
                let Ok(n) = s.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&buf[..n]);
                if let Some(i) = find(&req, b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&req[..body_start]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while req.len() < body_start + len {
                let Ok(n) = s.read(&mut buf) else { return };
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let json = serde_json::from_slice(&req[body_start..]).unwrap_or_default();
            let _ = tx.send(json);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, rx)
}

#[test]
fn without_providers_the_menu_takes_a_voicemail_in_the_chosen_language() {
    let name = "without_providers_the_menu_takes_a_voicemail_in_the_chosen_language";
    let models = vad_models();
    if !require(name, "espeak-ng (scripts/setup.sh)", espeak_available())
        || !require(
            name,
            "the VAD model (scripts/fetch_models.sh)",
            models.is_some(),
        )
        || !require(
            name,
            "the speech fixture (scripts/setup.sh)",
            speech_s16_wav().exists(),
        )
    {
        return;
    }
    let (lib, model) = models.unwrap();
    // No provider keys or URLs: the built-in menu answers.
    let parley = Parley::launch(Launch {
        args: &["--log-format", "json"],
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
        ],
        ..Launch::default()
    });
    // The caller presses 2 (Spanish) during the greeting, then speaks after the tone.
    let message = compose(
        &parley.scratch_dir("audio"),
        "message.wav",
        &[Part::Silence(9_000), Part::Phrase1, Part::Phrase2],
    );
    let started = std::time::Instant::now();
    let (output, data) = run_caller(
        &parley,
        &message,
        &["--duration", "40", "--dtmf", "2", "--dtmf-at", "1"],
    );
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let logs = parley.logs();
    assert!(
        logs.contains("menu: language chosen") && logs.contains("\"language\":\"es\""),
        "{logs}"
    );
    assert!(agent_hung_up(&parley), "the menu said goodbye and hung up");
    assert!(took < Duration::from_secs(35), "{took:?}");
    // The voicemail holds the caller's message: both phrases, not the prompt before them.
    let dir = parley.data_dir.join("voicemail");
    let file = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        recording_in(&dir)
    })
    .expect("a voicemail file");
    let wav = read_wav(&file).expect("a finished voicemail");
    let secs = wav.duration().as_secs_f64();
    assert!((5.0..14.0).contains(&secs), "voicemail of {secs} s");
    assert!(
        wav.rms() > 0.01,
        "speech in the voicemail: rms {}",
        wav.rms()
    );
    // The caller heard the prompts (espeak speech) and the tone.
    let heard = read_wav(&recording_in(&data.join("recordings")).unwrap()).unwrap();
    let beep_ms = heard
        .samples
        .chunks(1_600)
        .filter(|b| tone_power(b, 1_000.0) > 0.002)
        .count()
        * 100;
    assert!(
        (200..=600).contains(&beep_ms),
        "the tone was heard for {beep_ms} ms"
    );
    let spoken_ms = heard
        .samples
        .chunks(1_600)
        .filter(|b| rms(b) > 0.02)
        .count()
        * 100;
    assert!(spoken_ms >= 4_000, "prompts heard for {spoken_ms} ms");
}

#[test]
fn transfer_call_refers_the_caller_and_hangs_up_once_it_worked() {
    let name = "transfer_call_refers_the_caller_and_hangs_up_once_it_worked";
    if !require_sipp(name) {
        return;
    }
    let Some(rig) = Rig::start(
        name,
        &[("PARLEY_AGENT_TRANSFER_TARGET", "sip:frontdesk@192.0.2.7")],
    ) else {
        return;
    };
    rig.stt
        .set_default(SttReply::text("I want to talk to a person.", None));
    rig.llm.push(LlmReply::text_and_tools(
        &["Let me put you through."],
        &[("call_9", "transfer_call", "{}")],
    ));
    rig.llm.set_default(LlmReply::text(&["Goodbye."]));
    // sipp streams the speech, accepts the REFER, NOTIFYs success and expects our BYE.
    let out = run_sipp("uac_transferee", &rig.parley, &[]);
    out.assert_success();
    let offered: Vec<String> = rig.llm.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        offered.contains(&"transfer_call".to_string()),
        "{offered:?}"
    );
    let logs = rig.parley.logs();
    assert!(logs.contains("transferring the caller (REFER)"), "{logs}");
    // If the model was asked again, it learnt that the transfer worked.
    if rig.llm.request_count() > 1 {
        let results = messages(&rig.llm, 1, "tool");
        assert_eq!(results[0]["tool_call_id"], "call_9");
        assert!(
            results[0]["content"]
                .as_str()
                .unwrap()
                .contains("transferred"),
            "{results:?}"
        );
    }
    rig.parley
        .wait_for_metric("parley_active_calls", 0.0, Duration::from_secs(10));
}

#[test]
fn the_agent_presses_keys_on_the_line_with_send_dtmf() {
    let name = "the_agent_presses_keys_on_the_line_with_send_dtmf";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    rig.stt
        .set_default(SttReply::text("Please dial extension 305 for me.", None));
    rig.llm.push(LlmReply::tool_calls(&[(
        "call_d",
        "send_dtmf",
        r#"{"digits":"305"}"#,
    )]));
    rig.llm.set_default(LlmReply::text(&["Done."]));
    let phrase = first_phrase(&rig.parley.scratch_dir("audio"));
    let (output, _) = run_caller(&rig.parley, &phrase, &["--duration", "7"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The caller's side received the three keys as RFC 4733 events, in order.
    let keys: String = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("DTMF received: "))
        .filter_map(|l| l.chars().next())
        .collect();
    assert_eq!(keys, "305", "{stderr}");
    // And the model was told they were sent.
    let results = messages(&rig.llm, 1, "tool");
    assert_eq!(results[0]["content"], "Sent the tones 305.");
}

/// The first LLM request whose messages satisfy `test`, waiting for it.
fn llm_request_where(
    llm: &FakeLlm,
    test: impl Fn(&[serde_json::Value]) -> bool,
) -> serde_json::Value {
    poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        llm.requests()
            .into_iter()
            .find(|r| test(r.body["messages"].as_array().unwrap()))
            .map(|r| r.body)
    })
    .unwrap_or_else(|| panic!("no such LLM request in {:?}", llm.requests()))
}

fn contact_timeline(p: &Parley, key: &str, number: &str) -> Vec<serde_json::Value> {
    let path = format!("/v1/contacts/{}/timeline", number.replace('+', "%2B"));
    let (status, body) = p.api("GET", &path, key, &[], None);
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_caller_is_remembered_from_call_to_sms_to_call_and_in_their_language() {
    let name = "a_caller_is_remembered_from_call_to_sms_to_call_and_in_their_language";
    let twilio = FakeTwilio::start();
    let sms = support::sms::sms_env(
        &twilio,
        &[
            ("PARLEY_TTS_VOICE", "alloy"),
            ("PARLEY_TTS_VOICES", "es=nova"),
            ("PARLEY_MEMORY_LLM_SUMMARY", "false"),
            ("PARLEY_AGENT_GREETING", "Bob's Bakery, hello!"),
        ],
    );
    let Some(rig) = Rig::start(name, &support::sms::as_env(&sms)) else {
        return;
    };
    let p = &rig.parley;
    let root = p.printed_admin_key();
    let (shop, caller) = ("+15550100300", "+15550107777");
    let (_, key) = p.tenant(&root, "Bakery", Some(shop), "write");

    // 1. A call: the caller orders a cake.
    rig.stt.push(SttReply::text(
        "I'd like a birthday cake for Saturday.",
        Some("english"),
    ));
    rig.stt.set_default(SttReply::text("", Some("english")));
    rig.llm.push(LlmReply::text(&["Happy to. What flavour?"]));
    let phrase = compose(
        &p.scratch_dir("audio"),
        "after-greeting.wav",
        &[Part::Silence(2_500), Part::Phrase1],
    );
    let (output, _) = run_caller_to(shop, p, &phrase, &["--duration", "8", "--from", caller]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        tts_inputs(&rig.tts)[0],
        "Bob's Bakery, hello!",
        "a stranger gets the fixed greeting"
    );
    let summary = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        contact_timeline(p, &key, caller)
            .into_iter()
            .find(|e| e["channel"] == "voice")
    })
    .unwrap_or_else(|| panic!("no call on the timeline\n{}", p.logs()));
    let summary = summary["text"].as_str().unwrap().to_string();
    assert!(summary.contains("birthday cake for Saturday"), "{summary}");

    // 2. They text afterwards, in Spanish: the reply knows about the call.
    rig.llm.push(LlmReply::text(&["Sí, a las diez está bien."]));
    let form = support::sms::incoming_to(
        "SM00000000000000000000000000000100",
        caller,
        shop,
        "Hola, ¿puedo recogerla el sábado a las diez?",
    );
    assert_eq!(
        support::sms::post_signed(p, "/webhooks/twilio/sms", &form).0,
        200
    );
    let texting = llm_request_where(&rig.llm, |m| {
        m.last()
            .is_some_and(|l| l["content"] == "Hola, ¿puedo recogerla el sábado a las diez?")
    });
    let system = texting["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("phone call, summary"), "{system}");
    assert!(system.contains(&summary), "{system}");
    assert!(system.contains("Always answer in Spanish."), "{system}");
    let sent = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        twilio.messages().first().cloned()
    })
    .expect("the SMS reply");
    assert_eq!((sent.to.as_str(), sent.from.as_str()), (caller, shop));

    // 3. They call again: greeted by the LLM with what it remembers, in Spanish, with the
    // Spanish voice.
    rig.llm.push(LlmReply::text(&[
        "¡Hola otra vez! ¿Todo bien con la tarta?",
    ]));
    let silence = compose(
        &p.scratch_dir("audio"),
        "silence.wav",
        &[Part::Silence(4_000)],
    );
    let (output, _) = run_caller_to(shop, p, &silence, &["--duration", "6", "--from", caller]);
    assert!(output.status.success(), "{output:?}");
    let greeting = llm_request_where(&rig.llm, |m| {
        m.last().is_some_and(|l| {
            l["role"] == "system"
                && l["content"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("The call has just been answered")
        })
    });
    let system = greeting["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("SMS from them: Hola, ¿puedo recogerla el sábado a las diez?"),
        "{system}"
    );
    assert!(
        system.contains("SMS from you: Sí, a las diez está bien."),
        "{system}"
    );
    assert!(system.contains(&summary), "{system}");
    assert!(system.contains("Always answer in Spanish."), "{system}");
    let spoken = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rig.tts.requests().into_iter().find(|r| {
            r.body["input"]
                .as_str()
                .is_some_and(|t| t.starts_with("¡Hola otra vez!"))
        })
    })
    .expect("the LLM's greeting is spoken");
    assert_eq!(spoken.body["voice"], "nova", "the Spanish voice");
}

#[test]
fn the_agent_texts_the_caller_during_the_call_with_send_sms() {
    let name = "the_agent_texts_the_caller_during_the_call_with_send_sms";
    let twilio = FakeTwilio::start();
    let sms = support::sms::sms_env(&twilio, &[]);
    let Some(rig) = Rig::start(name, &support::sms::as_env(&sms)) else {
        return;
    };
    let p = &rig.parley;
    let root = p.printed_admin_key();
    let (shop, caller) = ("+15550100400", "+15550108888");
    p.tenant(&root, "Bakery", Some(shop), "write");
    rig.stt
        .set_default(SttReply::text("Can you text me your address?", None));
    rig.llm.push(LlmReply::text_and_tools(
        &["Sure, I'm texting it to you now."],
        &[(
            "call_s",
            "send_sms",
            r#"{"body":"Bob's Bakery, 12 Main St."}"#,
        )],
    ));
    rig.llm.set_default(LlmReply::text(&["Done."]));
    let phrase = first_phrase(&p.scratch_dir("audio"));
    let (output, _) = run_caller_to(shop, p, &phrase, &["--duration", "7", "--from", caller]);
    assert!(output.status.success(), "{output:?}");
    let sent = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        twilio.messages().first().cloned()
    })
    .unwrap_or_else(|| panic!("no SMS sent\n{}", p.logs()));
    assert_eq!(
        (sent.to.as_str(), sent.from.as_str(), sent.body.as_str()),
        (caller, shop, "Bob's Bakery, 12 Main St.")
    );
    let tools = rig.llm.requests()[0].body["tools"].clone();
    assert!(tools.to_string().contains("send_sms"), "{tools}");
    let results = messages(&rig.llm, 1, "tool");
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("on its way"),
        "{results:?}"
    );
}
