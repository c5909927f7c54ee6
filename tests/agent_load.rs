//! Load harness for the agent (not a test of behaviour; `#[ignore]`d, run by
//! `scripts/bench_agent.sh`): N concurrent sipp callers hold conversations with a release
//! Parley whose providers are the zero-delay local fakes. Each caller loops a phrase of real
//! speech and 4 s of silence, so every call has a turn (VAD end → STT → LLM → TTS → RTP)
//! every 6.4 s while its media, VAD and capture run all the time. Reported as one JSON
//! line: the server's CPU per call, the turns, and the engine-added latency per turn.
//!
//! Settings come from the environment: `AGENT_LOAD_CALLS` (default 50),
//! `AGENT_LOAD_SECONDS` (measured window, default 30), `AGENT_LOAD_MODE` (`ai`, or `off`
//! for the same calls without an agent: media, VAD and recording only).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_openai::FakeOpenAiTts;
use support::*;

/// utime + stime of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// Field `field` of every JSON log line whose message is `message`, sorted.
fn sorted_field(logs: &str, message: &str, field: &str) -> Vec<u64> {
    let mut v: Vec<u64> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .filter_map(|v| v["fields"][field].as_u64())
        .collect();
    v.sort_unstable();
    v
}

/// Count, median, 99th percentile and maximum of sorted values.
fn summary(sorted: &[u64]) -> serde_json::Value {
    serde_json::json!({
        "n": sorted.len(),
        "p50": percentile(sorted, 0.5),
        "p99": percentile(sorted, 0.99),
        "max": sorted.last().copied().unwrap_or(0),
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
#[ignore = "a load benchmark: scripts/bench_agent.sh"]
fn conversations_at_steady_state() {
    let calls = env_u64("AGENT_LOAD_CALLS", 50);
    let seconds = env_u64("AGENT_LOAD_SECONDS", 30);
    let mode = std::env::var("AGENT_LOAD_MODE").unwrap_or_else(|_| "ai".into());
    let model = repo_root().join(".cache/models/silero_vad.onnx");
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    assert!(
        model.exists() && sipp_available(),
        "needs the VAD model and sipp (make test installs them)"
    );
    let (lib, model) = (
        lib.to_string_lossy().to_string(),
        model.to_string_lossy().to_string(),
    );
    let stt = FakeOpenAiStt::start();
    stt.set_default(SttReply::text("What time do you open tomorrow?", None));
    let llm = FakeLlm::start();
    llm.set_default(LlmReply::text(&["We open at nine. ", "See you then!"]));
    let tts = FakeOpenAiTts::start();
    let (stt_url, llm_url, tts_url) = (stt.base_url(), llm.base_url(), tts.base_url());
    let max_calls = (calls + 10).to_string();
    let log_filter = std::env::var("AGENT_LOAD_LOG")
        .unwrap_or_else(|_| "warn,parley::agent::session=info".into());
    let parley = Parley::launch(Launch {
        args: &["--log-format", "json"],
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
            ("PARLEY_MEDIA_RECORD", "false"),
            ("PARLEY_SIP_MAX_CALLS", &max_calls),
            ("PARLEY_STT_PROVIDER", "openai"),
            ("PARLEY_STT_BASE_URL", &stt_url),
            ("PARLEY_LLM_BASE_URL", &llm_url),
            ("PARLEY_TTS_PROVIDER", "openai"),
            ("PARLEY_TTS_BASE_URL", &tts_url),
            ("PARLEY_AGENT_MODE", &mode),
            ("PARLEY_AGENT_GREETING", ""),
            ("PARLEY_AGENT_IDLE_PROMPT_S", "0"),
            ("PARLEY_LOG", &log_filter),
        ],
        // Two ports per call: the whole test range (the load harness runs alone).
        rtp_ports: Some((20_000, 31_999)),
        ..Launch::default()
    });
    let dir = parley.scratch_dir("load");
    write_conversation(&dir);
    // Calls arrive at 10 per second and all last past the measured window.
    let ramp_s = calls / 10 + 1;
    let call_ms = (ramp_s + seconds + 10) * 1000;
    let mut sipp = Command::new("sipp")
        .arg(parley.sip_addr.to_string())
        .arg("-sf")
        .arg(repo_root().join("sip-configs/sipp/uac_conversation.xml"))
        .args([
            "-m",
            &calls.to_string(),
            "-l",
            &calls.to_string(),
            "-r",
            "10",
        ])
        .args(["-d", &call_ms.to_string()])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_udp_block(4).to_string()])
        .args([
            "-s",
            "agent",
            "-nostdin",
            "-timeout",
            &format!("{}s", call_ms / 1000 + 60),
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    parley.wait_for_metric(
        "parley_active_calls",
        calls as f64,
        Duration::from_secs(ramp_s + 30),
    );
    // Let every call get into its rhythm, then measure.
    std::thread::sleep(Duration::from_secs(8));
    let pid = parley.pid().unwrap();
    let turns = |m: &str| {
        metric_value(
            m,
            "parley_turn_stage_seconds_count{stage=\"voice_to_voice\"}",
        )
        .unwrap_or(0.0)
    };
    let (cpu0, turns0, t0) = (cpu_seconds(pid), turns(&parley.metrics()), Instant::now());
    let log_start = parley.logs().len();
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, turns1, wall) = (cpu_seconds(pid), turns(&parley.metrics()), t0.elapsed());
    let active = metric_value(&parley.metrics(), "parley_active_calls").unwrap_or(0.0);
    let logs = parley.logs();
    let window = &logs[log_start..];
    let engine_us = sorted_field(window, "turn", "engine_added_us");
    let v2v = sorted_field(window, "turn", "voice_to_voice_ms");
    let barge_in_us = sorted_field(window, "barge-in", "decision_to_clear_us");
    let cores = (cpu1 - cpu0) / wall.as_secs_f64();
    let result = serde_json::json!({
        "framework": "parley",
        "mode": mode,
        "calls": calls,
        "active_at_end": active,
        "seconds": wall.as_secs_f64(),
        "cpu_cores": cores,
        "cpu_percent_per_call": 100.0 * cores / calls as f64,
        "turns": turns1 - turns0,
        "barge_in_decision_to_clear_us": summary(&barge_in_us),
        "engine_added_us": summary(&engine_us),
        "voice_to_voice_ms": summary(&v2v),
    });
    println!("{result}");
    let _ = sipp.kill();
    let _ = sipp.wait();
    assert_eq!(active, calls as f64, "every call stayed up");
    if mode == "ai" {
        assert!(turns1 > turns0, "conversations happened");
    }
}
