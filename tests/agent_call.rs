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
use support::*;

/// The fakes and the Parley that uses them.
struct Rig {
    stt: FakeOpenAiStt,
    llm: FakeLlm,
    tts: FakeOpenAiTts,
    parley: Parley,
}

fn models() -> Option<(String, String)> {
    let model = repo_root().join(".cache/models/silero_vad.onnx");
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    (model.exists() && lib.exists()).then(|| {
        (
            lib.to_string_lossy().to_string(),
            model.to_string_lossy().to_string(),
        )
    })
}

impl Rig {
    /// `None` (with the skip message printed) when the VAD model or the speech fixture is
    /// missing.
    fn start(test: &str, extra_env: &[(&str, &str)]) -> Option<Rig> {
        let models = models();
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
        let (lo, hi) = rtp_port_range();
        let data = self.parley.scratch_dir("caller-data");
        let output = Command::new(parley_bin())
            .args(["call", &format!("sip:agent@{}", self.parley.sip_addr)])
            .arg("--wav")
            .arg(wav)
            .args(["--duration", &seconds.to_string()])
            .args(["--bind", "127.0.0.1:0"])
            .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
            .env("PARLEY_DATA_DIR", &data)
            .stdin(Stdio::null())
            .output()
            .unwrap();
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

/// The first phrase of the speech fixture, alone, as a 16 kHz WAV in `dir`: one utterance,
/// so one turn.
fn first_phrase(dir: &Path) -> PathBuf {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    // The fixture's first phrase ends at about 2.35 s, the second starts at about 2.62 s.
    let end = (wav.sample_rate as usize * 245 / 100).min(wav.samples.len());
    let path = dir.join("phrase.wav");
    let mut w = parley_media::wav::WavWriter::create(&path, wav.sample_rate).unwrap();
    w.write_samples(&wav.samples[..end]).unwrap();
    w.finalize().unwrap();
    path
}

#[test]
fn speech_in_produces_the_agents_reply_over_rtp() {
    let name = "speech_in_produces_the_agents_reply_over_rtp";
    let Some(rig) = Rig::start(name, &[]) else {
        return;
    };
    rig.stt
        .set_default(SttReply::text("What time do you open?", Some("english")));
    rig.llm
        .set_default(LlmReply::text(&["We open ", "at nine. ", "See you then!"]));
    let phrase = first_phrase(&rig.parley.scratch_dir("audio"));
    let heard = rig.call(&phrase, 8.0);

    // The utterance was transcribed and its text became the user's turn.
    assert!(rig.stt.upload_count() >= 1, "STT got the utterance");
    assert!(rig.llm.request_count() >= 1, "the LLM was asked");
    assert_eq!(user_messages(&rig.llm, 0), vec!["What time do you open?"]);
    // Both sentences were synthesized, in order, and both reached the caller over RTP.
    let inputs: Vec<String> = rig
        .tts
        .requests()
        .iter()
        .map(|r| r.body["input"].as_str().unwrap_or_default().to_string())
        .collect();
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
    for line in rig.parley.logs().lines().filter(|l| l.contains("\"turn\"")) {
        println!("{line}");
    }
}
