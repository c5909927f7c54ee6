//! One conversational turn end to end, as the caller sees it: Parley's whole engine runs in
//! this process (`parley::server::serve`: SIP, the media workers with the Silero VAD, the
//! agent, the HTTP control plane), its STT, LLM and TTS are the zero-delay fakes of
//! `tests/support/fakes/` over HTTP on 127.0.0.1, and a caller in this process sends RTP.
//!
//!     cargo bench --bench turn
//!
//! The caller (plain UDP: an INVITE offering PCMU, then a continuous 20 ms PCMU stream) says
//! a short phrase of the speech fixture, then silence. One measurement is the time from the
//! send of the phrase's last packet to the arrival of the reply's first RTP packet, minus
//! the configured end-of-turn silence (`agent.turn_silence_ms`): what the engine adds to the
//! wait it was told to make, seen from the wire. That includes the receive path (jitter
//! buffer, decode, resampling, the VAD's 32 ms windows and its decision), the STT upload and
//! its answer, the LLM request and first sentence, TTS and the first packet's send; the
//! fakes answer at once, so nearly all of it is Parley's. `tests/agent_load.rs` measures the
//! engine's own view (`engine_added_us`); this bench reads the same server's
//! `parley_turn_engine_added_seconds` and voice-to-voice stage from `/metrics` at the end and
//! prints their means beside its own p50/p99, so the two views can be compared.
//!
//! A turn takes about 1.2 s of wall time (speech, the silence, the reply, a quiet gap), so
//! criterion takes one turn per sample (it warns that it cannot fit its samples in the
//! target time; that is expected): 50 turns by default, `-- --sample-size N` for N.
//!
//! Needs the VAD model and ONNX Runtime (`scripts/fetch_models.sh`) and the speech fixture
//! (`scripts/setup.sh`); without them it says so and skips (a failure when `CI` is set, as
//! for the integration tests). `PARLEY_LOG` (an env-filter, e.g. `info`) shows the server's
//! logs. The in-process server takes SIGINT as `parley serve` does (it drains), so Ctrl-C
//! ends the bench at its next turn, when the reply does not come.

// The integration tests' harness (free ports, HTTP, WAV) and fakes, reused as they are; the
// module allows its own dead code, since each user takes a different part.
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use parley::config::Config;
use parley::sip::message::{self, Message, Response};
use parley::sip::sdp::SessionDescription;
use parley_media::{parse_rtp, RtpSender};

use support::fakes::openai_llm::{FakeLlm, LlmReply};
use support::fakes::openai_stt::{FakeOpenAiStt, SttReply};
use support::fakes::tts_openai::FakeOpenAiTts;
use support::{free_sip_port, free_tcp_port, http_get, metric_value, poll_until, read_wav};

/// `agent.turn_silence_ms`, set explicitly and subtracted from each measurement.
const TURN_SILENCE_MS: u64 = 300;
/// The phrase: the fixture's first word, 3,799 samples (0.47 s) before its first pause;
/// 24 packets, the last one carrying the end of the speech.
const PHRASE_SAMPLES: usize = 3_799;
/// PCMU samples per 20 ms packet.
const FRAME: usize = 160;
/// No packet from Parley for this long: its reply is over (its talkspurt hangover is
/// 100 ms and keepalives are off).
const QUIET: Duration = Duration::from_millis(300);
/// Every wait on the engine gives up after this long (a missed turn fails the bench).
const DEADLINE: Duration = Duration::from_secs(15);

/// A packet from Parley: when it arrived and whether it started a talkspurt.
struct Arrival {
    at: Instant,
    marker: bool,
}

/// The in-process server, its fakes, and the caller's threads.
struct Rig {
    _stt: FakeOpenAiStt,
    _llm: FakeLlm,
    _tts: FakeOpenAiTts,
    _data: tempfile::TempDir,
    http: SocketAddr,
    sip: UdpSocket,
    parley_sip: SocketAddr,
    dialog: Dialog,
    /// Speech packets waiting to be sent; the sender sends silence when it is empty.
    speech: Arc<Mutex<VecDeque<Vec<u8>>>>,
    /// The instant the last packet of a phrase was sent.
    spoken: Receiver<Instant>,
    arrivals: Receiver<Arrival>,
    phrase: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Every turn measured (criterion's warm-up included), in µs.
    turns_us: Vec<u64>,
    /// Packets that arrived while the caller was speaking (none expected).
    stray_packets: u64,
    /// Replies whose first packet did not carry the marker bit (none expected).
    unmarked_starts: u64,
}

/// What the caller needs to send in the dialog: its headers and the 200's To tag.
struct Dialog {
    call_id: String,
    from: String,
    to: String,
    target: String,
    via_host: String,
}

impl Rig {
    /// `None` (after saying why) when the VAD model or the speech fixture is missing.
    fn start() -> Option<Rig> {
        let root = support::repo_root();
        let lib = root.join(parley::config::DEFAULT_ONNXRUNTIME);
        let model = root.join(parley::config::DEFAULT_VAD_MODEL);
        let speech = support::speech_s16_wav();
        let name = "turn bench";
        if !support::require(
            name,
            "the VAD model and ONNX Runtime (scripts/fetch_models.sh)",
            lib.is_file() && model.is_file(),
        ) || !support::require(
            name,
            "the speech fixture .cache/speech/speech_8k_s16.wav (scripts/setup.sh)",
            speech.is_file(),
        ) {
            return None;
        }
        let wav = read_wav(&speech).expect("read the speech fixture");
        assert_eq!(wav.sample_rate, 8_000, "the fixture is 8 kHz");
        let phrase = wav.samples[..PHRASE_SAMPLES.div_ceil(FRAME) * FRAME]
            .chunks(FRAME)
            .map(|pcm| {
                let mut ulaw = vec![0u8; FRAME];
                parley_media::encode_ulaw(pcm, &mut ulaw);
                ulaw
            })
            .collect();

        let stt = FakeOpenAiStt::start();
        stt.set_default(SttReply::text("What time do you open tomorrow?", None));
        let llm = FakeLlm::start();
        llm.set_default(LlmReply::text(&["At nine."]));
        let tts = FakeOpenAiTts::start();

        let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let sip_addr: SocketAddr = format!("127.0.0.1:{}", free_sip_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let (lo, hi) = support::rtp_port_range();
        let env: Vec<(String, String)> = [
            ("PARLEY_DATA_DIR", data.path().to_string_lossy().to_string()),
            ("PARLEY_SIP_LISTEN", sip_addr.to_string()),
            ("PARLEY_HTTP_LISTEN", http.to_string()),
            ("PARLEY_MEDIA_RTP_PORTS", format!("{lo}-{hi}")),
            ("PARLEY_MEDIA_RECORD", "false".into()),
            (
                "PARLEY_MEDIA_ONNXRUNTIME",
                lib.to_string_lossy().to_string(),
            ),
            (
                "PARLEY_MEDIA_VAD_MODEL",
                model.to_string_lossy().to_string(),
            ),
            // Nothing but the reply on the wire between turns.
            ("PARLEY_MEDIA_KEEPALIVE_MS", "0".into()),
            ("PARLEY_STT_PROVIDER", "openai".into()),
            ("PARLEY_STT_BASE_URL", stt.base_url()),
            ("PARLEY_LLM_PROVIDER", "openai".into()),
            ("PARLEY_LLM_BASE_URL", llm.base_url()),
            ("PARLEY_TTS_PROVIDER", "openai".into()),
            ("PARLEY_TTS_BASE_URL", tts.base_url()),
            ("PARLEY_AGENT_MODE", "ai".into()),
            ("PARLEY_AGENT_GREETING", String::new()),
            ("PARLEY_AGENT_TURN_SILENCE_MS", TURN_SILENCE_MS.to_string()),
            ("PARLEY_AGENT_IDLE_PROMPT_S", "0".into()),
            ("PARLEY_AGENT_IDLE_HANGUP_S", "0".into()),
            // A fixed key (so none is printed) and no spoken notice (no espeak-ng needed).
            (
                "PARLEY_API_ADMIN_KEY",
                "bench-admin-key-0123456789abcdef".into(),
            ),
            ("PARLEY_BILLING_FINAL_UNIT_NOTICE", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let config = Config::load_with_env(None, &env).expect("the bench's configuration");

        if let Ok(filter) = std::env::var("PARLEY_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        // The server on its own runtime, as `parley serve` runs it (multi-threaded, one
        // worker per core); it lives until the process exits.
        let (failed_tx, failed) = mpsc::channel();
        std::thread::Builder::new()
            .name("parley-serve".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("the server's runtime");
                if let Err(e) = rt.block_on(parley::server::serve(config)) {
                    let _ = failed_tx.send(format!("{e:#}"));
                }
            })
            .unwrap();
        let ready = poll_until(DEADLINE, Duration::from_millis(20), || {
            if let Ok(e) = failed.try_recv() {
                panic!("parley::server::serve failed: {e}");
            }
            matches!(http_get(http, "/healthz"), Ok((200, _))).then_some(())
        });
        assert!(ready.is_some(), "the server did not answer /healthz");

        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (dialog, remote_rtp) = invite(&sip, sip_addr, rtp.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let speech = Arc::new(Mutex::new(VecDeque::new()));
        let (spoken_tx, spoken) = mpsc::channel();
        let (arrived_tx, arrivals) = mpsc::channel();
        let threads = vec![
            spawn_sender(
                rtp.try_clone().unwrap(),
                remote_rtp,
                speech.clone(),
                spoken_tx,
                stop.clone(),
            ),
            spawn_receiver(rtp, arrived_tx, stop.clone()),
        ];
        Some(Rig {
            _stt: stt,
            _llm: llm,
            _tts: tts,
            _data: data,
            http,
            sip,
            parley_sip: sip_addr,
            dialog,
            speech,
            spoken,
            arrivals,
            phrase,
            stop,
            threads,
            turns_us: Vec::new(),
            stray_packets: 0,
            unmarked_starts: 0,
        })
    }

    /// Waits until Parley has sent nothing for [`QUIET`] (the last reply is over).
    fn wait_quiet(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.arrivals.recv_timeout(QUIET) {
                Ok(_) => assert!(Instant::now() < deadline, "Parley never went quiet"),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => panic!("the RTP receiver stopped"),
            }
        }
    }

    /// One turn: the phrase, then the wait for the reply. Returns the time from the
    /// phrase's last packet to the reply's first, minus the end-of-turn silence.
    fn turn(&mut self) -> Duration {
        self.wait_quiet();
        self.speech
            .lock()
            .unwrap()
            .extend(self.phrase.iter().cloned());
        let last_sent = self
            .spoken
            .recv_timeout(DEADLINE)
            .expect("the caller sent its phrase");
        let deadline = last_sent + DEADLINE;
        let first = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let a = self
                .arrivals
                .recv_timeout(left)
                .expect("no reply from the agent in time (was the phrase heard as speech?)");
            if a.at > last_sent {
                break a;
            }
            self.stray_packets += 1;
        };
        if !first.marker {
            self.unmarked_starts += 1;
        }
        let waited = first.at - last_sent;
        let added = waited.saturating_sub(Duration::from_millis(TURN_SILENCE_MS));
        self.turns_us.push(added.as_micros() as u64);
        added
    }

    /// The engine's own view of the same turns, from `/metrics`: mean engine-added and
    /// voice-to-voice times and the number of turns it counted.
    fn engine_view(&self) -> String {
        let Ok((200, m)) = http_get(self.http, "/metrics") else {
            return "(no /metrics)".into();
        };
        let mean_ms = |name: &str, labels: &str| {
            let sum = metric_value(&m, &format!("{name}_sum{labels}"))?;
            let count = metric_value(&m, &format!("{name}_count{labels}"))?;
            (count > 0.0).then(|| (1000.0 * sum / count, count))
        };
        let engine = mean_ms("parley_turn_engine_added_seconds", "");
        let v2v = mean_ms("parley_turn_stage_seconds", "{stage=\"voice_to_voice\"}");
        match (engine, v2v) {
            (Some((e, n)), Some((v, _))) => format!(
                "server's own view over {n} turns: engine-added mean {e:.2} ms, \
                 voice-to-voice (VAD speech end to first packet) mean {v:.1} ms"
            ),
            _ => "(the server counted no turns)".into(),
        }
    }

    fn report(&self) {
        let mut v = self.turns_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return;
        }
        let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
        println!(
            "turn: {} turns (warm-up included), last speech packet sent -> first reply packet \
             received, minus {TURN_SILENCE_MS} ms end-of-turn silence: p50 {:.1} ms, p90 {:.1} \
             ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms; {} packets during speech, {} replies \
             without a marker bit",
            v.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            v[0] as f64 / 1000.0,
            v[v.len() - 1] as f64 / 1000.0,
            self.stray_packets,
            self.unmarked_starts,
        );
        println!("turn: {}", self.engine_view());
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Hang up politely; the server itself ends with the process.
        let d = &self.dialog;
        let bye = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-turn-bye;rport\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            d.target, d.via_host, d.from, d.to, d.call_id
        );
        let _ = self.sip.send_to(bye.as_bytes(), self.parley_sip);
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Places the call: INVITE with a PCMU offer, waits for the 200, sends the ACK. Returns
/// the dialog and where Parley wants the RTP.
fn invite(sip: &UdpSocket, parley: SocketAddr, rtp: SocketAddr) -> (Dialog, SocketAddr) {
    let local = sip.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        rtp.port()
    );
    let call_id = format!("turn-bench-{}@127.0.0.1", std::process::id());
    let from = "<sip:bench@127.0.0.1>;tag=turnbench".to_string();
    let request = format!(
        "INVITE sip:agent@{parley} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-turn-inv;rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:agent@{parley}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:bench@{local}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sip.send_to(request.as_bytes(), parley).unwrap();
    let ok = poll_until(DEADLINE, Duration::ZERO, || {
        let mut buf = vec![0u8; 65_535];
        let (n, _) = sip.recv_from(&mut buf).ok()?;
        match message::parse(&buf[..n]) {
            Ok(Message::Response(r)) if r.code >= 200 => Some(r),
            _ => None,
        }
    })
    .expect("an answer to the INVITE");
    assert_eq!(ok.code, 200, "the call was answered: {ok:?}");
    let to = header(&ok, "To");
    let target = contact_uri(&header(&ok, "Contact"));
    let body = std::str::from_utf8(&ok.body).expect("an SDP answer");
    let answer = SessionDescription::parse(body).expect("a valid SDP answer");
    let ip = answer
        .media_connection(0)
        .expect("a connection address")
        .address;
    let remote_rtp = SocketAddr::new(ip, answer.media[0].port);
    let ack = format!(
        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-turn-ack;rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sip.send_to(ack.as_bytes(), parley).unwrap();
    let dialog = Dialog {
        call_id,
        from,
        to,
        target,
        via_host: local.to_string(),
    };
    (dialog, remote_rtp)
}

fn header(r: &Response, name: &str) -> String {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("the 200 has no {name}"))
        .to_string()
}

fn contact_uri(contact: &str) -> String {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if a < b => contact[a + 1..b].to_string(),
        _ => contact.trim().to_string(),
    }
}

/// The caller's stream: one PCMU packet every 20 ms on an absolute schedule, speech when
/// some is queued, silence otherwise; reports when a phrase's last packet left.
fn spawn_sender(
    socket: UdpSocket,
    to: SocketAddr,
    speech: Arc<Mutex<VecDeque<Vec<u8>>>>,
    spoken: mpsc::Sender<Instant>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("caller-rtp-out".into())
        .spawn(move || {
            let mut rtp = RtpSender::new(0x5eed_ca11, 0, 1000, 16_000);
            let silence = vec![parley_media::ulaw_encode(0); FRAME];
            let mut buf = vec![0u8; 12 + FRAME];
            let mut next = Instant::now();
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                let (payload, last_of_phrase) = {
                    let mut q = speech.lock().unwrap();
                    match q.pop_front() {
                        Some(p) => {
                            let last = q.is_empty();
                            (p, last)
                        }
                        None => (silence.clone(), false),
                    }
                };
                let header = rtp.next_header(FRAME as u32, first);
                first = false;
                let n = parley_media::write_packet(&header, &payload, &mut buf).unwrap();
                socket.send_to(&buf[..n], to).unwrap();
                if last_of_phrase {
                    let _ = spoken.send(Instant::now());
                }
                next += Duration::from_millis(20);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
        .unwrap()
}

/// Timestamps every RTP packet from Parley (RTCP is left out).
fn spawn_receiver(
    socket: UdpSocket,
    arrived: mpsc::Sender<Arrival>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("caller-rtp-in".into())
        .spawn(move || {
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                if parley_media::is_rtcp(&buf[..n]) {
                    continue;
                }
                if let Ok(p) = parse_rtp(&buf[..n]) {
                    let _ = arrived.send(Arrival {
                        at,
                        marker: p.header.marker,
                    });
                }
            }
        })
        .unwrap()
}

fn main() {
    let Some(mut rig) = Rig::start() else {
        return;
    };
    let mut c = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(50))
        .configure_from_args();
    let mut g = c.benchmark_group("turn");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function(
        "last_speech_packet_to_first_reply_packet_minus_silence",
        |b| b.iter_custom(|iters| (0..iters).map(|_| rig.turn()).sum()),
    );
    g.finish();
    c.final_summary();
    rig.report();
}
