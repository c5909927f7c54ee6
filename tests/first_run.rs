//! A newcomer's first `make run` on a fresh clone, and `parley doctor`.
//!
//! The checkout is a temporary directory holding what `make run` uses (scripts/run.sh and
//! scripts/fetch_models.sh) and no `.cache/`; the binary under test stands in for the release
//! build (`CARGO=true` makes the build step a no-op). pip reads the pinned archives from this
//! machine's own `.cache/models/dl` (PIP_NO_INDEX + PIP_FIND_LINKS) instead of PyPI, so the
//! fetch, its checksums and the extraction run as they would online, without the network; the
//! offline case points pip at a closed port.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_openai::FakeOpenAiTts;
use support::*;

/// A fresh clone as far as `make run` is concerned.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("parley-clone-")
        .tempdir()
        .unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for script in ["run.sh", "fetch_models.sh"] {
        std::fs::copy(
            repo_root().join("scripts").join(script),
            scripts.join(script),
        )
        .unwrap();
    }
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(parley_bin(), release.join("parley")).unwrap();
    dir
}

/// The pinned archives `scripts/setup.sh` downloaded, which pip reads instead of PyPI.
fn archives() -> PathBuf {
    repo_root().join(".cache/models/dl")
}

fn archives_present() -> bool {
    std::fs::read_dir(archives()).is_ok_and(|d| {
        let names: Vec<String> = d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.iter().any(|n| n.starts_with("onnxruntime-"))
            && names
                .iter()
                .any(|n| n.starts_with("silero_vad-") && n.ends_with(".whl"))
    })
}

/// Every regular file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The caller's audio: the fixture's first phrase, then silence long enough for the reply
/// (baresip hangs up when its source file ends).
fn phrase_then_silence(dir: &Path) -> PathBuf {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    let rate = wav.sample_rate as usize;
    let mut samples = wav.samples[..(rate * 245 / 100).min(wav.samples.len())].to_vec();
    samples.extend(std::iter::repeat_n(0i16, rate * 5));
    let path = dir.join("caller.wav");
    let mut w = parley_media::wav::WavWriter::create(&path, wav.sample_rate).unwrap();
    w.write_samples(&samples).unwrap();
    w.finalize().unwrap();
    path
}

/// Calls `target` with baresip (a real softphone, headless), sending `wav`; returns what the
/// phone decoded from Parley (its sndfile dump) and baresip's output.
fn baresip_call(dir: &Path, target: &str, wav: &Path, seconds: u32) -> (Wav, String) {
    let (lo, hi) = rtp_port_range();
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let config = format!(
        "sip_listen 127.0.0.1:{port}\n\
         audio_source aufile,{wav}\n\
         audio_alert aufile,/dev/null\n\
         rtp_ports {lo}-{hi}\n\
         module_path /usr/lib/baresip/modules\n\
         module g711.so\n\
         module aufile.so\n\
         module sndfile.so\n\
         snd_path {dumps}\n\
         module_app account.so\n\
         module_app menu.so\n",
        port = free_sip_port(),
        wav = wav.display(),
        dumps = dumps.display(),
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(dir.join("accounts"), "<sip:newcomer@127.0.0.1>;regint=0\n").unwrap();
    let out = Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .args(["-e", &format!("/dial {target}"), "-t", &seconds.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run baresip");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = files_under(&dumps)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip wrote no decoded audio:\n{log}"));
    (read_wav(&heard).unwrap(), log)
}

fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn make_run_on_a_fresh_clone_fetches_the_vad_and_the_agent_hears_a_softphone() {
    let name = "make_run_on_a_fresh_clone_fetches_the_vad_and_the_agent_hears_a_softphone";
    if !require(
        name,
        "the pinned archives in .cache/models/dl (scripts/setup.sh)",
        archives_present(),
    ) || !require(
        name,
        "baresip (scripts/setup.sh installs it)",
        system_binary("baresip").is_some(),
    ) || !require(
        name,
        "the speech fixture (scripts/setup.sh)",
        speech_s16_wav().exists(),
    ) {
        return;
    }
    let clone = checkout();
    let run = clone.path().join("scripts/run.sh");
    let run = run.to_str().unwrap();
    let links = archives();
    let stt = FakeOpenAiStt::start();
    let llm = FakeLlm::start();
    let tts = FakeOpenAiTts::start();
    stt.push(SttReply::text("What time do you open?", Some("english")));
    stt.set_default(SttReply::text("", Some("english")));
    llm.set_default(LlmReply::text(&["We open ", "at nine."]));
    let (stt_url, llm_url, tts_url) = (stt.base_url(), llm.base_url(), tts.base_url());
    let parley = Parley::launch(Launch {
        command: Some(&[run]),
        args: &["--log-format", "json"],
        env: &[
            ("CARGO", "true"),
            ("PIP_NO_INDEX", "1"),
            ("PIP_FIND_LINKS", links.to_str().unwrap()),
            ("PARLEY_STT_PROVIDER", "openai"),
            ("PARLEY_STT_BASE_URL", &stt_url),
            ("PARLEY_LLM_PROVIDER", "openai"),
            ("PARLEY_LLM_BASE_URL", &llm_url),
            ("PARLEY_TTS_PROVIDER", "openai"),
            ("PARLEY_TTS_BASE_URL", &tts_url),
            ("PARLEY_AGENT_GREETING", ""),
        ],
        ..Launch::default()
    });

    // The models were fetched into the clone's own cache, with visible progress, and the
    // server loaded them from there (its default paths, no configuration).
    let models = clone.path().join(".cache/models");
    assert!(models.join("libonnxruntime.so.1.22.1").is_file());
    assert!(models.join("silero_vad.onnx").is_file());
    let logs = parley.logs();
    assert!(
        logs.contains("fetch_models: downloading onnxruntime-")
            && logs.contains("fetch_models: extracted"),
        "no progress shown:\n{logs}"
    );
    assert!(
        logs.contains("media engine started") && logs.contains("\"vad\":true"),
        "the VAD is not on:\n{logs}"
    );

    // A softphone calls; the agent hears it through the OpenAI-compatible STT and answers.
    let phone = parley.scratch_dir("baresip");
    let wav = phrase_then_silence(&phone);
    let target = format!("sip:agent@{}", parley.sip_addr);
    let (heard, phone_log) = baresip_call(&phone, &target, &wav, 9);
    assert!(
        stt.upload_count() >= 1,
        "the STT got no utterance\n{phone_log}\n{}",
        parley.logs()
    );
    let asked = llm.requests();
    assert!(
        !asked.is_empty(),
        "the LLM was not asked\n{}",
        parley.logs()
    );
    let said: Vec<String> = asked[0].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(said, ["What time do you open?"]);
    assert!(
        tts.requests()
            .iter()
            .any(|r| r.body["input"] == "We open at nine."),
        "the reply was not spoken"
    );
    // The phone heard the reply. With no greeting, and silence suppressed between talkspurts,
    // all it decoded is the reply: the fake voice speaks "We open at nine." for about 800 ms.
    let seconds = heard.samples.len() as f64 / f64::from(heard.sample_rate);
    assert!(
        seconds >= 0.5 && rms(&heard.samples) > 300.0,
        "the phone heard no reply ({seconds:.2} s, rms {:.0})\n{phone_log}",
        rms(&heard.samples)
    );

    // The call's record has the transcript both ways.
    let key = parley.printed_admin_key();
    let cdr = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let (_, list) = parley.api("GET", "/v1/cdrs", &key, &[], None);
        list["data"].as_array()?.first().cloned()
    })
    .expect("a call record");
    let transcript = cdr["transcript"].to_string();
    assert!(
        transcript.contains("What time do you open?") && transcript.contains("We open at nine."),
        "{cdr}"
    );
}

#[test]
fn make_run_offline_says_what_is_missing_and_still_serves() {
    let clone = checkout();
    let run = clone.path().join("scripts/run.sh");
    let empty = clone.path().join("no-archives");
    std::fs::create_dir_all(&empty).unwrap();
    // Nothing listens on this port: pip is refused at once, as it is offline.
    let closed = format!("http://127.0.0.1:{}/simple", free_tcp_port());
    let parley = Parley::launch(Launch {
        command: Some(&[run.to_str().unwrap()]),
        env: &[
            ("CARGO", "true"),
            ("PIP_INDEX_URL", &closed),
            ("PIP_FIND_LINKS", empty.to_str().unwrap()),
            ("PIP_RETRIES", "0"),
            ("PIP_DEFAULT_TIMEOUT", "2"),
        ],
        ..Launch::default()
    });
    let logs = parley.logs();
    // What is missing, what still works, and the one command that fixes it.
    for needed in [
        "fetch_models: missing: ",
        "silero_vad.onnx",
        "still answers calls",
        "barge-in is off",
        "run: make models",
        "serving WITHOUT the VAD",
    ] {
        assert!(logs.contains(needed), "{needed:?} not said:\n{logs}");
    }
    // The server says it again in its own log, where an operator looks.
    assert!(
        logs.contains("VAD off") && logs.contains("make models"),
        "{logs}"
    );
    // Nothing half-written was left behind.
    let left = files_under(&clone.path().join(".cache"));
    assert!(left.is_empty(), "left in .cache/: {left:?}");
}

/// `parley doctor` in `cwd` with `env` on free ports: (exit code, report).
fn doctor(cwd: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let (lo, hi) = rtp_port_range();
    let data = cwd.join("data");
    let out = Command::new(parley_bin())
        .arg("doctor")
        .current_dir(cwd)
        .env(
            "PARLEY_SIP_LISTEN",
            format!("127.0.0.1:{}", free_sip_port()),
        )
        .env(
            "PARLEY_HTTP_LISTEN",
            format!("127.0.0.1:{}", free_tcp_port()),
        )
        .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
        .env("PARLEY_DATA_DIR", &data)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), report)
}

/// The report's line about `what`.
fn line<'a>(report: &'a str, what: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(what))
        .unwrap_or_else(|| panic!("no line for {what}:\n{report}"))
}

#[test]
fn doctor_names_a_missing_model_and_fails() {
    let cwd = tempfile::tempdir().unwrap();
    let (code, report) = doctor(cwd.path(), &[]);
    assert_eq!(code, 1, "{report}");
    let vad = line(&report, "vad");
    assert!(vad.starts_with("MISSING"), "{report}");
    assert!(
        vad.contains(".cache/models/silero_vad.onnx") && vad.contains("make models"),
        "{report}"
    );
    assert!(report.contains("verdict: NOT READY"), "{report}");
    // The rest was still checked, each with its verdict (espeak-ng's depends on the machine).
    line(&report, "espeak-ng");
    for what in ["sip.listen", "http.listen", "media.rtp_ports", "database"] {
        assert!(line(&report, what).starts_with("ok"), "{report}");
    }
}

#[test]
fn doctor_passes_with_everything_in_place_and_flags_what_is_not() {
    let name = "doctor_passes_with_everything_in_place_and_flags_what_is_not";
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    let model = repo_root().join(".cache/models/silero_vad.onnx");
    if !require(
        name,
        "the VAD model (scripts/fetch_models.sh)",
        lib.is_file() && model.is_file(),
    ) {
        return;
    }
    let (lib, model) = (lib.to_str().unwrap(), model.to_str().unwrap());
    let cwd = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("PARLEY_MEDIA_ONNXRUNTIME", lib),
        ("PARLEY_MEDIA_VAD_MODEL", model),
        ("PARLEY_STT_PROVIDER", "openai"),
        ("PARLEY_STT_BASE_URL", "http://localhost:9/v1"),
        ("PARLEY_LLM_PROVIDER", "openai"),
        ("PARLEY_LLM_BASE_URL", "http://localhost:9/v1"),
    ];
    // The shared services of a fleet, when this machine has them.
    let database = std::env::var("PARLEY_TEST_DATABASE_URL").ok();
    let redis = std::env::var("PARLEY_TEST_REDIS_URL").ok();
    if let Some(url) = &database {
        env.push(("PARLEY_DATABASE_URL", url));
    }
    if let Some(url) = &redis {
        env.push(("PARLEY_REDIS_URL", url));
    }
    let (code, report) = doctor(cwd.path(), &env);
    assert_eq!(code, 0, "{report}");
    assert!(
        line(&report, "vad").contains("loads with ONNX Runtime"),
        "{report}"
    );
    assert!(line(&report, "llm").starts_with("ok"), "{report}");
    if database.is_some() {
        assert!(line(&report, "database").contains("answers"), "{report}");
    }
    if redis.is_some() {
        assert!(line(&report, "redis").contains("answers PING"), "{report}");
    }
    assert!(report.contains("verdict: ready"), "{report}");

    // A port another process holds and a Redis nobody runs are each named.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_addr = held.local_addr().unwrap().to_string();
    let dead_redis = format!("redis://127.0.0.1:{}", free_tcp_port());
    env.retain(|(k, _)| *k != "PARLEY_REDIS_URL");
    env.push(("PARLEY_HTTP_LISTEN", &held_addr));
    env.push(("PARLEY_REDIS_URL", &dead_redis));
    let (code, report) = doctor(cwd.path(), &env);
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "http.listen").starts_with("MISSING"),
        "{report}"
    );
    assert!(line(&report, "redis").starts_with("MISSING"), "{report}");
    assert!(line(&report, "vad").starts_with("ok"), "{report}");
}
