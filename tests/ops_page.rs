//! The ops page at `/`, in a real browser: headless Chromium loads it with the key and a call
//! in the URL fragment (`/#key=…&call=…`) while a call answered by the AI agent (fake STT,
//! LLM and TTS with known delays) is in progress, then again once it has ended; the page
//! must list the call (live, then among the recent records) and draw its turn as a latency
//! waterfall. Chromium runs with `--dump-dom` under a virtual-time budget, so the page's
//! fetches and first refreshes complete before the DOM is read.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_openai::{FakeOpenAiTts, HttpFault};
use support::*;

/// Each provider's delay, so every stage of the turn takes visible time.
const STT_DELAY: Duration = Duration::from_millis(120);
const LLM_DELAY: Duration = Duration::from_millis(200);
const TTS_DELAY: Duration = Duration::from_millis(150);

/// `GET path` without a key: (status, head, body).
fn get_raw(p: &Parley, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(p.http_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn the_page_and_its_assets_are_served_without_a_key() {
    let p = Parley::start(&[]);
    let (status, head, body) = get_raw(&p, "/");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy:"), "{head}");
    assert!(body.contains("<title>Parley ops</title>"), "{body}");
    for (path, kind) in [("/ops.js", "text/javascript"), ("/ops.css", "text/css")] {
        let (status, head, body) = get_raw(&p, path);
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(!body.is_empty());
    }
    // The page holds no data: the API it reads still needs a key.
    assert_eq!(get_raw(&p, "/v1/calls").0, 401);
}

// ---------------------------------------------------------------------------------------------
// Chromium

/// The Chromium binary on PATH, if any.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Loads `url` in headless Chromium with the browser profile `profile` (a name under `dir`:
/// runs with the same one share its localStorage) and returns the DOM once `budget_ms` of
/// virtual time has passed (virtual time stands still while fetches are in flight, so the
/// page's requests all complete).
fn dump_dom(browser: &str, dir: &Path, profile: &str, url: &str, budget_ms: u32) -> String {
    let n = fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("run"))
        })
        .count()
    });
    let run = dir.join(format!("run{n}"));
    fs::create_dir_all(&run).unwrap();
    let profile = dir.join(format!("profile-{profile}"));
    let (out, err) = (run.join("dom.html"), run.join("chromium.log"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {browser}: {e}"));
    let status = poll_until(Duration::from_secs(90), Duration::from_millis(50), || {
        child.try_wait().ok().flatten()
    });
    let log = || fs::read_to_string(&err).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{browser} did not finish within 90 s:\n{}", log());
    };
    let dom = fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.success() && dom.contains("</html>"),
        "{browser} failed ({status}):\n{}\nDOM: {dom}",
        log()
    );
    dom
}

/// The text between the start tag with `id="…"` and the next `</tag>` (markup included).
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let open = format!("<{tag} id=\"{id}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in the page:\n{dom}"));
    let rest = &dom[start..];
    let end = rest.find(&format!("</{tag}>")).unwrap_or(rest.len());
    &rest[..end]
}

/// Text content of `markup` (tags dropped).
fn text(markup: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in markup.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// The value of attribute `name` in the start tag `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// One bar of the waterfall: its stage, milliseconds, and left and width in % of the scale.
#[derive(Debug)]
struct Bar {
    stage: String,
    ms: u64,
    left: f64,
    width: f64,
}

/// The bars of turn `n` (1-based) in the dumped page.
fn bars(dom: &str, n: usize) -> Vec<Bar> {
    let marker = format!("data-turn=\"{n}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no turn {n} in the waterfall:\n{dom}"));
    let group = &dom[start..];
    let group = &group[..group.find("</tbody>").unwrap_or(group.len())];
    let style = |tag: &str, prop: &str| -> f64 {
        let style = attr(tag, "style").unwrap_or_else(|| panic!("no style in {tag}"));
        let at = style
            .find(&format!("{prop}:"))
            .unwrap_or_else(|| panic!("no {prop} in {style}"));
        let v = style[at + prop.len() + 1..].trim_start();
        v[..v.find('%').unwrap()].trim().parse().unwrap()
    };
    group
        .match_indices("<div ")
        .map(|(i, _)| &group[i..i + group[i..].find('>').unwrap()])
        .filter(|tag| tag.contains("data-stage="))
        .map(|tag| Bar {
            stage: attr(tag, "data-stage").unwrap().to_string(),
            ms: attr(tag, "data-ms").unwrap().parse().unwrap(),
            left: style(tag, "left"),
            width: style(tag, "width"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The call

/// The speech fixture's first phrase (about 2.35 s of speech), as a WAV in `dir`.
fn first_phrase(dir: &Path) -> PathBuf {
    let wav = read_wav(&speech_s16_wav()).unwrap();
    let split = (wav.sample_rate as usize * 245 / 100).min(wav.samples.len());
    let path = dir.join("phrase.wav");
    let mut w = parley_media::wav::WavWriter::create(&path, wav.sample_rate).unwrap();
    w.write_samples(&wav.samples[..split]).unwrap();
    w.finalize().unwrap();
    path
}

/// A `parley call` in progress, killed on drop.
struct Caller(Child);

impl Caller {
    /// Calls `parley`'s agent, plays `wav`, then stays on the line (up to a minute) until
    /// Parley hangs up.
    fn spawn(parley: &Parley, wav: &Path) -> Caller {
        let (lo, hi) = rtp_port_range();
        let dir = parley.scratch_dir("caller");
        let child = Command::new(parley_bin())
            .args(["call", &format!("sip:agent@{}", parley.sip_addr)])
            .arg("--wav")
            .arg(wav)
            .args(["--duration", "60", "--bind", "127.0.0.1:0"])
            .env("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}"))
            .env("PARLEY_DATA_DIR", dir.join("data"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Caller(child)
    }

    fn exited(&mut self, within: Duration) -> bool {
        poll_until(within, Duration::from_millis(50), || {
            self.0.try_wait().ok().flatten()
        })
        .is_some()
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_page_lists_a_live_call_then_draws_its_turns_as_a_waterfall() {
    let name = "the_page_lists_a_live_call_then_draws_its_turns_as_a_waterfall";
    let browser = chromium();
    let models = vad_models();
    if !require(
        name,
        "headless Chromium (Debian `chromium`, scripts/setup.sh)",
        browser.is_some(),
    ) || !require(
        name,
        "the VAD model (scripts/fetch_models.sh)",
        models.is_some(),
    ) || !require(
        name,
        "the speech fixture (scripts/setup.sh)",
        speech_s16_wav().exists(),
    ) {
        return;
    }
    let (browser, (lib, model)) = (browser.unwrap(), models.unwrap());

    let stt = FakeOpenAiStt::start();
    let llm = FakeLlm::start();
    let tts = FakeOpenAiTts::start();
    stt.push(SttReply::text("What time do you open?", Some("english")).delay(STT_DELAY));
    stt.set_default(SttReply::text("", Some("english")));
    llm.set_default(LlmReply::text(&["We open at nine."]).first_byte_delay(LLM_DELAY));
    tts.push_fault(HttpFault::slow_first_byte(TTS_DELAY));
    let (stt_url, llm_url, tts_url) = (stt.base_url(), llm.base_url(), tts.base_url());
    let p = Parley::launch(Launch {
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
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
    let key = p.printed_admin_key();
    let pages = p.scratch_dir("chromium");
    let mut events = SseListener::open(&p, &key);

    let mut caller = Caller::spawn(&p, &first_phrase(&p.scratch_dir("audio")));
    let live = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        let (_, calls) = p.api("GET", "/v1/calls", &key, &[], None);
        calls["data"].as_array().and_then(|a| a.first().cloned())
    })
    .expect("the call shows in /v1/calls");
    let id = live["id"].as_str().unwrap().to_string();
    let url = format!("http://{}/#key={key}&call={id}", p.http_addr);

    // While the call is in progress: listed among the live calls, selected, no record yet.
    let dom = dump_dom(browser, &pages, "live", &url, 3_000);
    assert!(
        dom.contains("<h1>Parley ops</h1>"),
        "the page loaded:\n{dom}"
    );
    let status = text(element(&dom, "p", "status"));
    assert!(status.is_empty(), "the page reported: {status}");
    let live_table = element(&dom, "table", "live-calls");
    assert!(
        live_table.contains(&format!("data-call-id=\"{id}\"")),
        "call {id} is not among the live calls:\n{live_table}"
    );
    assert!(
        text(live_table).contains(&id) && text(live_table).contains("answered"),
        "{live_table}"
    );
    let detail = element(&dom, "section", "detail");
    assert!(detail.contains("In progress"), "{detail}");
    // The key came in the fragment; it is nowhere in the page.
    assert!(!dom.contains(&key), "the key leaked into the DOM");

    // The caller spoke, the agent answered: one turn. Then Parley hangs up.
    let seen = events.until("turn.completed", Duration::from_secs(30));
    assert!(
        seen.contains("turn.completed"),
        "no turn was completed:\n{seen}\n{}",
        p.logs()
    );
    let (status, _) = p.api("POST", &format!("/v1/calls/{id}/hangup"), &key, &[], None);
    assert_eq!(status, 202);
    assert!(caller.exited(Duration::from_secs(20)), "the caller hung up");
    let cdr = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let (status, cdr) = p.api("GET", &format!("/v1/cdrs/{id}"), &key, &[], None);
        (status == 200).then_some(cdr)
    })
    .expect("the call's record");
    let turns = cdr["turns"].as_array().cloned().unwrap_or_default();
    assert!(!turns.is_empty(), "the record has the turn: {cdr}");

    // After the call: gone from the live calls, listed among the records, its turn drawn.
    let dom = dump_dom(browser, &pages, "ended", &url, 3_000);
    let status = text(element(&dom, "p", "status"));
    assert!(status.is_empty(), "the page reported: {status}");
    assert!(
        !element(&dom, "table", "live-calls").contains(&id),
        "the ended call is still listed as live"
    );
    let records = element(&dom, "table", "cdrs");
    assert!(
        records.contains(&format!("data-call-id=\"{id}\"")),
        "call {id} is not among the recent records:\n{records}"
    );
    // The selected call's section (the waterfall is its last part).
    let waterfall = element(&dom, "section", "detail");
    assert!(waterfall.contains("class=\"waterfall\""), "{waterfall}");

    let turn1 = bars(&dom, 1);
    println!("turn 1 as drawn: {turn1:?}\nits stages: {}", turns[0]);
    let ms = |k: &str| turns[0][k].as_u64();
    let expect = [
        ("stt", ms("stt_final_ms")),
        (
            "llm",
            Some(ms("llm_first_token_ms").unwrap() + ms("first_sentence_ms").unwrap()),
        ),
        ("tts", ms("tts_first_audio_ms")),
        ("playout", ms("playout_start_ms")),
        ("total", ms("voice_to_voice_ms")),
    ];
    let scale: f64 = attr(waterfall, "data-scale-ms").unwrap().parse().unwrap();
    for (stage, want) in expect {
        let want = want.unwrap_or_else(|| panic!("the record has no {stage}: {}", turns[0]));
        let bar = turn1
            .iter()
            .find(|b| b.stage == stage)
            .unwrap_or_else(|| panic!("no {stage} bar in {turn1:?}"));
        assert_eq!(bar.ms, want, "{stage}: {bar:?}");
        // The width is the stage's share of the slowest turn.
        let width = 100.0 * want as f64 / scale;
        assert!(
            (bar.width - width).abs() < 0.01,
            "{stage}: {bar:?}, scale {scale}"
        );
        assert!(bar.left >= 0.0 && bar.left + bar.width <= 100.01, "{bar:?}");
    }
    // The LLM's and TTS's delays come after the end of the turn, so those stages always
    // take visible time. (STT's may not: under load the VAD can cut the phrase, and the
    // first segment's transcript is then final before the turn ends; its bar is checked
    // against the record above.)
    for stage in ["llm", "tts", "total"] {
        let bar = turn1.iter().find(|b| b.stage == stage).unwrap();
        assert!(
            bar.ms > 0 && bar.width > 0.0,
            "{stage} bar is empty: {bar:?}"
        );
    }
    let at = |s: &str| turn1.iter().find(|b| b.stage == s).unwrap().left;
    assert!(at("stt") <= at("llm") && at("llm") < at("tts") && at("tts") < at("playout"));
    let drawn = text(waterfall);
    for label in ["STT", "LLM", "TTS", "Playout", "Voice to voice"] {
        assert!(drawn.contains(label), "no {label} label: {drawn}");
    }

    // The key from the fragment was kept (localStorage): the same browser opens the call
    // without it.
    let url = format!("http://{}/#call={id}", p.http_addr);
    let dom = dump_dom(browser, &pages, "ended", &url, 3_000);
    let status = text(element(&dom, "p", "status"));
    assert!(status.is_empty(), "the page reported: {status}");
    assert!(element(&dom, "table", "cdrs").contains(&format!("data-call-id=\"{id}\"")));
    assert_eq!(bars(&dom, 1).len(), turn1.len(), "the waterfall again");
}
