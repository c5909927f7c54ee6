//! Load harness for browser calls (not a test of behaviour; `#[ignore]`d, run by
//! `scripts/bench_webrtc.sh`): N concurrent WebRTC clients (str0m, full ICE, DTLS-SRTP, Opus;
//! `media/tests/support/webrtc_client.rs`) call a release Parley over WHIP with the admin key;
//! its providers are the zero-delay local fakes, as in `tests/agent_load.rs`. Each client
//! loops the same pattern as agent_load's sipp callers: a phrase of real speech (the 8 kHz
//! fixture's first 2.45 s, upsampled to 16 kHz) then 4 s of silence, Opus-encoded 20 ms a
//! packet, so every call has a turn (VAD end → STT → LLM → TTS → Opus/SRTP back) every
//! 6.45 s while its media, SRTP, Opus decoding and VAD run all the time.
//!
//! The clients cost CPU too, so they all run on ONE thread (this test's): every 20 ms each
//! connected client sends its next frame, then every client is pumped (its socket drained,
//! str0m's timers run) with a deadline already past, so no socket waits for another. Calls
//! are set up at `WEBRTC_LOAD_RATE` a second (default 10, agent_load's sipp rate) while the
//! earlier ones already talk; then 8 s of warm-up; then the server process's CPU
//! (utime + stime from /proc) is measured over the window. Reported as one JSON line: setup
//! times, the server's CPU in all and per call (and per thread group), what the clients
//! received, the turns, and the engine-added latency per turn. Then every call is hung up
//! with the WHIP `DELETE` and its record checked (`channel: "webrtc"`).
//!
//! Settings come from the environment: `WEBRTC_LOAD_CALLS` (default 100),
//! `WEBRTC_LOAD_SECONDS` (measured window, default 30), `WEBRTC_LOAD_MODE` (`ai`, or `off`
//! for the same calls without an agent: media, SRTP, VAD only), `WEBRTC_LOAD_RATE` (calls
//! set up per second, default 10), `WEBRTC_LOAD_LOG` (Parley's log filter).

mod support;

// The client file allows its own dead code (this harness uses a part of it).
#[path = "../media/tests/support/webrtc_client.rs"]
mod webrtc_client;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_openai::FakeOpenAiTts;
use support::*;
use webrtc_client::WebRtcClient;

const TICK: Duration = Duration::from_millis(20);
/// Time after the last call connected before the window opens (agent_load's).
const WARM_UP: Duration = Duration::from_secs(8);

/// utime + stime in seconds of a `/proc/.../stat` file.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks / 100.0)
}

/// utime + stime of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat")).unwrap()
}

/// CPU seconds of each thread of `pid`: tid → (name, seconds).
fn thread_cpu(pid: u32) -> HashMap<String, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().to_string();
        let dir = format!("/proc/{pid}/task/{tid}");
        let name = std::fs::read_to_string(format!("{dir}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if let Some(s) = stat_cpu_seconds(&format!("{dir}/stat")) {
            out.insert(tid, (name, s));
        }
    }
    out
}

/// Cores used per thread name between two [`thread_cpu`] readings (each media worker has its
/// own; tokio's threads are taken together).
fn thread_groups(
    before: &HashMap<String, (String, f64)>,
    after: &HashMap<String, (String, f64)>,
    wall: f64,
) -> BTreeMap<String, f64> {
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, s1)) in after {
        let s0 = before.get(tid).map(|(_, s)| *s).unwrap_or(0.0);
        // tokio names its workers and its blocking pool's threads alike ("tokio-rt-worker";
        // "tokio-runtime-worker" in older versions).
        let group = if name.starts_with("tokio-r") {
            "tokio".to_string()
        } else {
            name.clone()
        };
        *groups.entry(group).or_default() += (s1 - s0) / wall;
    }
    // Idle threads (under 0.1 % of a core) left out.
    groups.retain(|_, cores| *cores >= 0.001);
    groups
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

/// The looped pattern, in 20 ms frames at 16 kHz: the speech fixture's first 2.45 s (the
/// phrase agent_load's callers say) upsampled by linear interpolation, then 4 s of silence.
fn conversation_frames() -> Vec<Vec<i16>> {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    assert_eq!(wav.sample_rate, 8_000);
    let s = &wav.samples[..8_000 * 245 / 100];
    let mut pcm = Vec::with_capacity(s.len() * 2 + 16_000 * 4);
    for i in 0..s.len() {
        let next = *s.get(i + 1).unwrap_or(&s[i]);
        pcm.push(s[i]);
        pcm.push(((i32::from(s[i]) + i32::from(next)) / 2) as i16);
    }
    pcm.extend(std::iter::repeat_n(0i16, 16_000 * 4));
    pcm.chunks(320)
        .map(|f| {
            let mut f = f.to_vec();
            f.resize(320, 0);
            f
        })
        .collect()
}

/// One browser call of the harness.
struct Caller {
    client: WebRtcClient,
    /// The WHIP resource (`/v1/webrtc/whip/{id}`); its last segment is the call's id.
    location: String,
    posted: Instant,
    connected: bool,
    /// Frames of the pattern sent so far (the pattern starts when the call connects).
    sent: usize,
    /// `rtp_received` at the last one-second mark of the window.
    rx_mark: u64,
}

impl Caller {
    fn id(&self) -> &str {
        self.location.rsplit('/').next().unwrap_or_default()
    }
}

/// What the window measured, taken at its start and its end.
struct Reading {
    at: Instant,
    cpu: f64,
    threads: HashMap<String, (String, f64)>,
    metrics: String,
    client_cpu: f64,
    test_cpu: f64,
    rx: u64,
    non_silent: u64,
    log_len: usize,
}

fn reading(parley: &Parley, pid: u32, callers: &[Caller]) -> Reading {
    let metrics = parley.metrics();
    Reading {
        at: Instant::now(),
        cpu: cpu_seconds(pid),
        threads: thread_cpu(pid),
        metrics,
        client_cpu: stat_cpu_seconds("/proc/thread-self/stat").unwrap_or(0.0),
        test_cpu: stat_cpu_seconds("/proc/self/stat").unwrap_or(0.0),
        rx: callers.iter().map(|c| c.client.stats.rtp_received).sum(),
        non_silent: callers
            .iter()
            .map(|c| c.client.stats.non_silent_packets)
            .sum(),
        log_len: parley.logs().len(),
    }
}

/// `s[from..to]`, both ends moved back to a character boundary and clamped to `s`.
fn char_slice(s: &str, from: usize, to: usize) -> &str {
    let back = |mut i: usize| {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    &s[back(from)..back(to).max(back(from))]
}

/// Every client's socket drained and timers run, without waiting.
fn pump_now(callers: &mut [Caller]) {
    let now = Instant::now();
    for c in callers.iter_mut() {
        c.client.pump(now);
    }
}

fn metric_delta(a: &Reading, b: &Reading, name: &str) -> f64 {
    metric_value(&b.metrics, name).unwrap_or(0.0) - metric_value(&a.metrics, name).unwrap_or(0.0)
}

#[test]
#[ignore = "a load benchmark: scripts/bench_webrtc.sh"]
fn browser_calls_at_steady_state() {
    let calls = env_u64("WEBRTC_LOAD_CALLS", 100) as usize;
    let seconds = env_u64("WEBRTC_LOAD_SECONDS", 30);
    let rate = env_u64("WEBRTC_LOAD_RATE", 10).max(1);
    let mode = std::env::var("WEBRTC_LOAD_MODE").unwrap_or_else(|_| "ai".into());
    let model = repo_root().join(".cache/models/silero_vad.onnx");
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    assert!(
        model.exists() && lib.exists() && speech_s16_wav().exists(),
        "needs the VAD model and the speech fixture (make test fetches them)"
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
    let log_filter = std::env::var("WEBRTC_LOAD_LOG")
        .unwrap_or_else(|_| "warn,parley::agent::session=info".into());
    let parley = Parley::launch(Launch {
        args: &["--log-format", "json"],
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
            ("PARLEY_MEDIA_RECORD", "false"),
            // Browser calls count against the node's call capacity too.
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
        ..Launch::default()
    });
    let key = parley.printed_admin_key();
    let auth = format!("Bearer {key}");
    let pid = parley.pid().unwrap();
    let frames = conversation_frames();

    let mut callers: Vec<Caller> = Vec::with_capacity(calls);
    let mut refused: Vec<String> = Vec::new();
    let mut whip_us: Vec<u64> = Vec::new();
    let mut connect_us: Vec<u64> = Vec::new();
    // Per call and second of the window: packets received in that second, binned.
    let mut rx_bins: BTreeMap<&str, u64> = BTreeMap::new();
    let mut speaking_seconds_rx: u64 = 0;
    let mut late_ticks_setup = 0u64;
    let mut late_ticks_window = 0u64;

    let started = Instant::now();
    let call_every = Duration::from_secs_f64(1.0 / rate as f64);
    let setup_limit = started + call_every * calls as u32 + Duration::from_secs(30);
    let mut next_call = started;
    let mut all_connected_at: Option<Instant> = None;
    let mut window: Option<Reading> = None;
    let mut end: Option<Reading> = None;
    let mut next_second = started;
    let mut tick = started;
    loop {
        let now = Instant::now();
        // Setup: the next call's offer, WHIP POST and answer, at `rate` a second.
        if callers.len() + refused.len() < calls && now >= next_call {
            next_call += call_every;
            let mut client = WebRtcClient::new();
            let offer = client.offer();
            let posted = Instant::now();
            let (status, headers, body) = raw_http(
                parley.http_addr,
                "POST",
                "/v1/webrtc/whip",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/sdp"),
                ],
                &offer,
            );
            whip_us.push(posted.elapsed().as_micros() as u64);
            let location = headers
                .iter()
                .find(|(k, _)| k == "location")
                .map(|(_, v)| v.clone());
            match (status, location) {
                (201, Some(location)) => {
                    client.accept_answer(&body);
                    callers.push(Caller {
                        client,
                        location,
                        posted,
                        connected: false,
                        sent: 0,
                        rx_mark: 0,
                    });
                }
                (status, _) => refused.push(format!("{status} {body}")),
            }
        }
        // Every connected call sends its next frame.
        for c in callers.iter_mut().filter(|c| c.connected) {
            let frame = &frames[c.sent % frames.len()];
            c.client.send_audio_20ms(frame);
            c.sent += 1;
        }
        // Every call's socket drained and timers run.
        let now = Instant::now();
        for c in callers.iter_mut() {
            c.client.pump(now);
            if !c.connected && c.client.is_connected() {
                c.connected = true;
                connect_us.push(c.posted.elapsed().as_micros() as u64);
            }
        }
        // Calls still connecting get the rest of the tick, so that their handshake is not
        // held to the 20 ms grid (the setup times are then the server's, not the loop's).
        tick += TICK;
        while callers.iter().any(|c| !c.connected)
            && Instant::now() + Duration::from_millis(1) < tick
        {
            for c in callers.iter_mut().filter(|c| !c.connected) {
                c.client
                    .pump((Instant::now() + Duration::from_millis(1)).min(tick));
                if c.client.is_connected() {
                    c.connected = true;
                    connect_us.push(c.posted.elapsed().as_micros() as u64);
                }
            }
        }

        let now = Instant::now();
        if all_connected_at.is_none() {
            let done =
                callers.len() + refused.len() == calls && callers.iter().all(|c| c.connected);
            if done {
                all_connected_at = Some(now);
            } else if now > setup_limit {
                break;
            }
        }
        // The window: opens WARM_UP after the last call connected, lasts `seconds`.
        if let Some(at) = all_connected_at {
            if window.is_none() && now >= at + WARM_UP {
                window = Some(reading(&parley, pid, &callers));
                for c in callers.iter_mut() {
                    c.rx_mark = c.client.stats.rtp_received;
                }
                next_second = Instant::now() + Duration::from_secs(1);
            } else if let Some(w) = &window {
                if now >= next_second {
                    next_second += Duration::from_secs(1);
                    for c in callers.iter_mut() {
                        let n = c.client.stats.rtp_received - c.rx_mark;
                        c.rx_mark = c.client.stats.rtp_received;
                        let bin = match n {
                            0 => "0",
                            1..=5 => "1-5",
                            6..=44 => "6-44",
                            45..=55 => "45-55",
                            _ => ">55",
                        };
                        *rx_bins.entry(bin).or_default() += 1;
                        if n >= 45 {
                            speaking_seconds_rx += n;
                        }
                        // The client keeps every decoded frame; the harness needs none.
                        c.client.received_pcm.clear();
                    }
                }
                if now >= w.at + Duration::from_secs(seconds) {
                    end = Some(reading(&parley, pid, &callers));
                    break;
                }
            }
        }
        // Wait for the next tick; a loop that overran its tick does not sleep.
        let now = Instant::now();
        if now < tick {
            std::thread::sleep(tick - now);
        } else {
            if window.is_some() {
                late_ticks_window += 1;
            } else {
                late_ticks_setup += 1;
            }
            if now > tick + TICK {
                // Far behind: start afresh rather than send a burst.
                tick = now;
            }
        }
    }

    // The calls still up (before any hang-up), then every call hung up by its browser; the
    // clients are kept serviced between requests so that none drops out meanwhile.
    pump_now(&mut callers);
    let (status, live) = parley.api("GET", "/v1/calls", &key, &[], None);
    assert_eq!(status, 200, "{live}");
    let live_ids: Vec<String> = live["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    let active = metric_value(&parley.metrics(), "parley_active_calls").unwrap_or(0.0);
    let closed_early = callers.iter().filter(|c| c.client.is_closed()).count();
    let connected = callers.iter().filter(|c| c.connected).count();
    let mut delete_failed = Vec::new();
    for i in 0..callers.len() {
        pump_now(&mut callers[i..]);
        let c = &callers[i];
        let (status, _, body) = raw_http(
            parley.http_addr,
            "DELETE",
            &c.location,
            &[("Authorization", &auth)],
            "",
        );
        if !(200..300).contains(&status) {
            delete_failed.push(format!("{}: {status} {body}", c.id()));
        }
    }
    let ids: Vec<String> = callers.iter().map(|c| c.id().to_string()).collect();
    let cdrs: HashMap<String, serde_json::Value> =
        poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
            let (status, page) = parley.api("GET", "/v1/cdrs?limit=1000", &key, &[], None);
            if status != 200 {
                return None;
            }
            let found: HashMap<String, serde_json::Value> = page["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|cdr| Some((cdr["id"].as_str()?.to_string(), cdr)))
                .filter(|(id, _)| ids.contains(id))
                .collect();
            (found.len() == ids.len()).then_some(found)
        })
        .unwrap_or_default();
    let webrtc_cdrs = cdrs.values().filter(|c| c["channel"] == "webrtc").count();
    let mut hangup_causes: BTreeMap<String, u64> = BTreeMap::new();
    for cdr in cdrs.values() {
        *hangup_causes
            .entry(cdr["hangup_cause"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }

    let mut whip_sorted = whip_us.clone();
    whip_sorted.sort_unstable();
    connect_us.sort_unstable();
    let setup = serde_json::json!({
        "rate_per_s": rate,
        "whip_post_us": summary(&whip_sorted),
        "post_to_connected_us": summary(&connect_us),
        "refused": refused.len(),
        "never_connected": callers.len() - connected,
        "late_ticks": late_ticks_setup,
    });
    let (Some(w), Some(e)) = (window, end) else {
        let result = serde_json::json!({
            "framework": "parley", "channel": "webrtc", "mode": mode, "calls": calls,
            "error": "not every call connected", "setup": setup, "refusals": refused,
        });
        println!("{result}");
        panic!("not every call connected:\n{}", parley.logs());
    };
    let wall = (e.at - w.at).as_secs_f64();
    let cores = (e.cpu - w.cpu) / wall;
    let n = calls as f64;
    let turns = |m: &str| {
        metric_value(
            m,
            "parley_turn_stage_seconds_count{stage=\"voice_to_voice\"}",
        )
        .unwrap_or(0.0)
    };
    let logs = parley.logs();
    let window_logs = char_slice(&logs, w.log_len, e.log_len);
    let engine_us = sorted_field(window_logs, "turn", "engine_added_us");
    let v2v = sorted_field(window_logs, "turn", "voice_to_voice_ms");
    let result = serde_json::json!({
        "framework": "parley",
        "channel": "webrtc",
        "mode": mode,
        "calls": calls,
        "connected": connected,
        "active_at_end": active,
        "live_calls_at_end": live_ids.len(),
        "closed_early": closed_early,
        "seconds": wall,
        "cpu_cores": cores,
        "cpu_percent_per_call": 100.0 * cores / n,
        "server_threads_cores": thread_groups(&w.threads, &e.threads, wall),
        "media_busy_cores": metric_delta(&w, &e, "parley_media_busy_microseconds_total") / 1e6 / wall,
        "media_late_ticks": metric_delta(&w, &e, "parley_media_late_ticks_total"),
        "vad_windows_per_call_per_s": metric_delta(&w, &e, "parley_vad_windows_total") / n / wall,
        "webrtc_datagrams_in_per_call_per_s": metric_delta(&w, &e, "parley_webrtc_datagrams_total") / n / wall,
        "turns": turns(&e.metrics) - turns(&w.metrics),
        "engine_added_us": summary(&engine_us),
        "voice_to_voice_ms": summary(&v2v),
        "client_rx_packets_per_call_per_s": (e.rx - w.rx) as f64 / n / wall,
        "client_rx_loud_packets_per_call_per_s": (e.non_silent - w.non_silent) as f64 / n / wall,
        "client_rx_call_seconds_by_packets": rx_bins,
        "client_rx_packets_per_speaking_second": speaking_seconds_rx as f64
            / rx_bins.iter().filter(|(b, _)| **b == "45-55" || **b == ">55").map(|(_, v)| *v).sum::<u64>().max(1) as f64,
        "client_decode_errors": callers.iter().map(|c| c.client.stats.decode_errors).sum::<u64>(),
        "client_thread_cpu_cores": (e.client_cpu - w.client_cpu) / wall,
        "test_process_cpu_cores": (e.test_cpu - w.test_cpu) / wall,
        "client_late_ticks": late_ticks_window,
        "setup": setup,
        "cdrs_found": cdrs.len(),
        "cdrs_webrtc": webrtc_cdrs,
        "hangup_causes": hangup_causes,
        "delete_failed": delete_failed.len(),
    });
    println!("{result}");

    assert!(refused.is_empty(), "refused: {refused:?}");
    assert_eq!(connected, calls, "every call connected");
    assert_eq!(closed_early, 0, "no call ended early");
    assert_eq!(live_ids.len(), calls, "every call stayed up");
    assert!(
        ids.iter().all(|id| live_ids.contains(id)),
        "the live calls are ours"
    );
    assert!(delete_failed.is_empty(), "DELETE: {delete_failed:?}");
    assert_eq!(cdrs.len(), calls, "every call has its record");
    assert_eq!(webrtc_cdrs, calls, "every record says channel webrtc");
    if mode == "ai" {
        assert!(
            turns(&e.metrics) > turns(&w.metrics),
            "conversations happened"
        );
    }
}
