//! Browser calls through the real media engine: a browser-like str0m client (full ICE, DTLS,
//! SRTP, Opus) on a real UDP socket talks to a worker that owns the shared WebRTC port.
//! Real time throughout, a few seconds per test.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parley_media::codec::CodecKind;
use parley_media::engine::{CallHandle, EventSink, MediaEngine, WebRtcSetup};
use parley_media::playout::{capture_queue, playout_queue, CaptureConsumer, PlayoutProducer};
use parley_media::session::{MediaEvent, MediaSession, SessionOptions, SessionParams};
use parley_media::webrtc::WebRtcAnswerer;

use support::webrtc_client::{
    connect_all, fake_dtls_record, fake_stun_binding_request, loud_frames, pump_all, tone_power,
    Junk, Tone, WebRtcClient,
};

const FRAME: Duration = Duration::from_millis(20);
/// Tone amplitude (about -12 dBFS).
const AMPLITUDE: f64 = 8_000.0;

struct ChannelSink(mpsc::Sender<MediaEvent>);

impl EventSink for ChannelSink {
    fn push(&mut self, event: MediaEvent) {
        let _ = self.0.send(event);
    }
}

/// One browser call as the call layer holds it.
struct Call {
    handle: CallHandle,
    playout: PlayoutProducer,
    capture: CaptureConsumer,
    events: mpsc::Receiver<MediaEvent>,
    /// The caller's audio so far (16 kHz).
    captured: Vec<i16>,
}

impl Call {
    fn drain_capture(&mut self) {
        let n = self.capture.slots();
        if let Ok(chunk) = self.capture.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            self.captured.extend_from_slice(a);
            self.captured.extend_from_slice(b);
            chunk.commit_all();
        }
    }

    /// Removes the call and returns its final stats' `packets_received`, and every event
    /// that came before.
    fn finish(self) -> (u64, Vec<MediaEvent>) {
        let Call { handle, events, .. } = self;
        handle.remove();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(MediaEvent::Closed(stats)) => return (stats.packets_received, seen),
                Ok(e) => seen.push(e),
                Err(_) => break,
            }
        }
        panic!("no Closed event after the call was removed (events: {seen:?})");
    }
}

/// An engine with one worker, no VAD, and its WebRTC port on 127.0.0.1.
fn engine_with_port() -> (MediaEngine, SocketAddr) {
    let engine = MediaEngine::start(1, None).expect("engine");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("WebRTC port");
    let port = socket.local_addr().unwrap();
    engine
        .attach_webrtc(socket)
        .expect("attach the WebRTC port");
    (engine, port)
}

/// What the HTTP side does with a browser's offer: answer it, build the session, hand the
/// call to the engine. Returns the call and the answer for the client.
fn add_call(engine: &MediaEngine, answerer: &WebRtcAnswerer, offer: &str) -> (Call, String) {
    let now = Instant::now();
    let (peer, answer) = answerer.answer(offer, now).expect("an answer");
    let (playout, playout_rx) = playout_queue(16_000 * 4);
    let (capture_tx, capture) = capture_queue(16_000 * 8);
    let params = SessionParams {
        codec: CodecKind::Opus,
        payload_type: peer.payload_type(),
        dtmf_payload_type: None,
        remote: Some(answerer.candidate()),
        send: true,
        receive: true,
    };
    let session = MediaSession::new(
        now,
        params,
        playout_rx,
        Some(capture_tx),
        SessionOptions::default(),
    );
    let (tx, events) = mpsc::channel();
    let handle = engine
        .add_webrtc_call(WebRtcSetup {
            peer,
            session,
            events: Box::new(ChannelSink(tx)),
            keepalive: Box::new(()),
        })
        .expect("add the browser call");
    let call = Call {
        handle,
        playout,
        capture,
        events,
        captured: Vec::new(),
    };
    (call, answer)
}

/// A client connected to a new call on `engine`.
fn connected_call(
    engine: &MediaEngine,
    answerer: &WebRtcAnswerer,
    client: &mut WebRtcClient,
) -> Call {
    let offer = client.offer();
    let (call, answer) = add_call(engine, answerer, &offer);
    client.accept_answer(&answer);
    call
}

/// Of `candidates`, the frequency with the most power in `pcm`, and how far it stands above
/// the next one (power ratio).
fn strongest(pcm: &[i16], rate: u32, candidates: &[f64]) -> (f64, f64) {
    let mut powers: Vec<(f64, f64)> = candidates
        .iter()
        .map(|&f| (f, tone_power(pcm, rate, f)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    let ratio = powers[0].1 / powers.get(1).map_or(0.0, |p| p.1).max(1e-9);
    (powers[0].0, ratio)
}

/// The peak of a 20 Hz-step scan from 100 Hz to 3 kHz.
fn peak_frequency(pcm: &[i16], rate: u32) -> f64 {
    let scan: Vec<f64> = (5..=150).map(|i| f64::from(i) * 20.0).collect();
    strongest(pcm, rate, &scan).0
}

/// The 20 ms frames of `pcm` that are audio, not silence or comfort noise.
fn loud_part(pcm: &[i16], rate: u32) -> Vec<i16> {
    pcm.chunks_exact(rate as usize / 50)
        .filter(|f| support::webrtc_client::rms(f) > support::webrtc_client::NON_SILENT_RMS)
        .flatten()
        .copied()
        .collect()
}

#[test]
fn browser_audio_reaches_the_session_and_ours_reaches_the_browser() {
    let (engine, port) = engine_with_port();
    let answerer = WebRtcAnswerer::new(port).unwrap();
    let mut client = WebRtcClient::new();
    let mut call = connected_call(&engine, &answerer, &mut client);
    let started = Instant::now();
    assert!(
        client.connect(Duration::from_secs(3)),
        "ICE and DTLS did not complete within 3 s"
    );
    eprintln!("connected in {:?}", started.elapsed());

    // The caller speaks: 1 s of 440 Hz, 20 ms at a time, in real time.
    let mut tone = Tone::new(440.0, 48_000, AMPLITUDE);
    let start = Instant::now();
    for i in 1..=50 {
        client.send_audio_20ms(&tone.frame());
        client.pump(start + FRAME * i);
        call.drain_capture();
    }
    // The jitter buffer's delay.
    client.pump(Instant::now() + Duration::from_millis(300));
    call.drain_capture();
    let heard = loud_part(&call.captured, 16_000);
    eprintln!(
        "captured {} samples, {} loud frames, peak {} Hz",
        call.captured.len(),
        heard.len() / 320,
        peak_frequency(&heard, 16_000)
    );
    assert!(
        heard.len() / 320 >= 35,
        "the session captured {} loud frames of the 50 sent",
        heard.len() / 320
    );
    let peak = peak_frequency(&heard, 16_000);
    assert!(
        (peak - 440.0).abs() <= 20.0,
        "the captured audio peaks at {peak} Hz, not 440 Hz"
    );

    // Until now the engine sent silence: the browser heard nothing.
    let before = client.stats;
    assert!(
        before.rtp_received >= 20,
        "the engine streams (silence) once connected: {} packets",
        before.rtp_received
    );
    assert!(
        before.non_silent_packets <= 2,
        "silence decoded as audio: {} packets",
        before.non_silent_packets
    );
    let heard_before = client.received_pcm.len();

    // The agent speaks: 1 s of 440 Hz into the call's playout ring.
    let mut reply = Tone::new(440.0, 16_000, AMPLITUDE);
    assert_eq!(call.playout.push(&reply.next(16_000)), 16_000);
    client.pump(Instant::now() + Duration::from_millis(1_300));
    let after = client.stats;
    let loud = after.non_silent_packets - before.non_silent_packets;
    eprintln!(
        "browser: {} RTP packets, {loud} loud, decode errors {}",
        after.rtp_received - before.rtp_received,
        after.decode_errors
    );
    assert!(
        loud >= 40,
        "the browser heard {loud} loud Opus packets, not ≥ 40"
    );
    assert_eq!(after.decode_errors, 0);
    let reply_heard = loud_part(&client.received_pcm[heard_before..], 48_000);
    let peak = peak_frequency(&reply_heard, 48_000);
    assert!(
        (peak - 440.0).abs() <= 20.0,
        "the browser's audio peaks at {peak} Hz, not 440 Hz"
    );
    assert_eq!(call.playout.samples_played(), 16_000);
    let (received, events) = call.finish();
    assert!(received >= 50, "the session received {received} packets");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, MediaEvent::TransportClosed(_))),
        "{events:?}"
    );
}

#[test]
fn junk_and_stun_floods_do_not_disturb_a_live_call() {
    let (engine, port) = engine_with_port();
    let answerer = WebRtcAnswerer::new(port).unwrap();
    let mut client = WebRtcClient::new();
    let offer = client.offer();
    let (mut call, answer) = add_call(&engine, &answerer, &offer);
    let our_ufrag = answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("the answer's ufrag")
        .to_owned();
    client.accept_answer(&answer);
    assert!(client.connect(Duration::from_secs(3)), "did not connect");

    // Media both ways: the agent talks for the whole test, the caller too.
    let mut reply = Tone::new(300.0, 16_000, AMPLITUDE);
    call.playout.push(&reply.next(16_000 * 3));
    let mut tone = Tone::new(440.0, 48_000, AMPLITUDE);
    let mut clock = Instant::now();
    let mut talk = |client: &mut WebRtcClient, call: &mut Call, frames: u32| {
        for _ in 0..frames {
            client.send_audio_20ms(&tone.frame());
            clock += FRAME;
            client.pump(clock);
            call.drain_capture();
        }
    };
    talk(&mut client, &mut call, 25);
    assert!(
        client.stats.non_silent_packets >= 15,
        "media flows before the flood"
    );

    // The flood: 5,000 datagrams over about a second from another socket.
    let unmatched_before = engine.stats.webrtc_unmatched.load(Ordering::Relaxed);
    let datagrams_before = engine.stats.webrtc_datagrams.load(Ordering::Relaxed);
    let flood = std::thread::spawn(move || {
        let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut junk = Junk::new(0x5eed);
        let start = Instant::now();
        let mut sent = 0u32;
        for ms in 0..1_000u32 {
            for k in 0..5u32 {
                let datagram = match (ms * 5 + k) % 4 {
                    0 => {
                        let mut d = vec![0u8; 20 + junk.below(300) as usize];
                        junk.fill(&mut d);
                        d
                    }
                    1 => fake_stun_binding_request(&mut junk, "wrongufrag:abcd"),
                    // The right ufrag, a forged integrity: only str0m's check refuses it.
                    2 => fake_stun_binding_request(&mut junk, &format!("{our_ufrag}:abcd")),
                    _ => fake_dtls_record(&mut junk),
                };
                if attacker.send_to(&datagram, port).is_ok() {
                    sent += 1;
                }
            }
            let next = start + Duration::from_millis(u64::from(ms) + 1);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        sent
    });
    let flood_start = Instant::now();
    let rx_before = client.stats.rtp_received;
    let loud_before = client.stats.non_silent_packets;
    let sent_before = client.stats.rtp_sent;
    while !flood.is_finished() {
        talk(&mut client, &mut call, 1);
    }
    let flood_time = flood_start.elapsed();
    let sent_junk = flood.join().unwrap();
    let rx = client.stats.rtp_received - rx_before;
    let loud = client.stats.non_silent_packets - loud_before;
    let sent_during = client.stats.rtp_sent - sent_before;
    let expected = (flood_time.as_millis() / 20) as u64;
    // What was in flight drains.
    talk(&mut client, &mut call, 15);
    let unmatched = engine.stats.webrtc_unmatched.load(Ordering::Relaxed) - unmatched_before;
    let datagrams = engine.stats.webrtc_datagrams.load(Ordering::Relaxed) - datagrams_before;
    eprintln!(
        "flood: {sent_junk} junk datagrams in {flood_time:?}; port read {datagrams}, \
         {unmatched} unmatched; browser got {rx} RTP ({loud} loud) of {expected} expected"
    );
    assert_eq!(sent_junk, 5_000);
    assert!(
        rx * 10 >= expected * 9,
        "the browser received {rx} of {expected} packets during the flood"
    );
    assert!(
        loud * 10 >= expected * 9,
        "only {loud} of {expected} packets during the flood were the agent's audio"
    );
    assert!(
        unmatched >= 4_900,
        "webrtc_unmatched counted {unmatched} of the 5,000 junk datagrams"
    );
    assert!(
        unmatched <= 5_000,
        "webrtc_unmatched counted {unmatched}: some of the call's own datagrams too"
    );
    assert!(!client.is_closed(), "the call's ICE went down");
    let sent_total = client.stats.rtp_sent;
    let (received, events) = call.finish();
    eprintln!("session received {received} of {sent_total} ({sent_during} during the flood)");
    // Anything lost was lost in the flood's second; at most 10 % of it.
    assert!(
        (sent_total - received) * 10 <= sent_during,
        "the session received {received} of {sent_total} packets ({sent_during} sent during \
         the flood)"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, MediaEvent::TransportClosed(_))),
        "{events:?}"
    );
}

#[test]
fn a_peer_that_never_connects_is_reported() {
    let (engine, port) = engine_with_port();
    let answerer = WebRtcAnswerer::new(port)
        .unwrap()
        .with_connect_timeout(Duration::from_millis(500));
    // The browser offers, then goes away: nothing ever reaches the port.
    let offer = WebRtcClient::new().offer();
    let added = Instant::now();
    let (call, _answer) = add_call(&engine, &answerer, &offer);
    let deadline = added + Duration::from_millis(1_500);
    let mut seen = Vec::new();
    let closed_at = loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            panic!("no TransportClosed within 1.5 s (events: {seen:?})");
        };
        match call.events.recv_timeout(left) {
            Ok(MediaEvent::TransportClosed(reason)) => {
                assert_eq!(reason, "webrtc_connect_timeout");
                break added.elapsed();
            }
            Ok(e) => seen.push(e),
            Err(_) => panic!("no TransportClosed within 1.5 s (events: {seen:?})"),
        }
    };
    eprintln!("reported after {closed_at:?}");
    assert!(
        closed_at >= Duration::from_millis(480),
        "reported after {closed_at:?}, before the 500 ms timeout"
    );
    // Reported once.
    std::thread::sleep(Duration::from_millis(200));
    let again: Vec<MediaEvent> = call.events.try_iter().collect();
    assert!(
        !again
            .iter()
            .any(|e| matches!(e, MediaEvent::TransportClosed(_))),
        "reported again: {again:?}"
    );
    let (_, events) = call.finish();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, MediaEvent::TransportClosed(_))),
        "reported again: {events:?}"
    );
    assert_eq!(engine.stats.webrtc_datagrams.load(Ordering::Relaxed), 0);
}

#[test]
fn two_calls_share_the_port() {
    let (engine, port) = engine_with_port();
    let answerer = WebRtcAnswerer::new(port).unwrap();
    let mut a = WebRtcClient::new();
    let mut b = WebRtcClient::new();
    let mut call_a = connected_call(&engine, &answerer, &mut a);
    let mut call_b = connected_call(&engine, &answerer, &mut b);
    assert!(
        connect_all(&mut [&mut a, &mut b], Duration::from_secs(3)),
        "both did not connect within 3 s (a: {}, b: {})",
        a.is_connected(),
        b.is_connected()
    );
    // Four different tones: what each caller says, what each call's agent says.
    const A_SAYS: f64 = 440.0;
    const B_SAYS: f64 = 1_200.0;
    const TO_A: f64 = 700.0;
    const TO_B: f64 = 1_800.0;
    let all = [A_SAYS, B_SAYS, TO_A, TO_B];
    call_a
        .playout
        .push(&Tone::new(TO_A, 16_000, AMPLITUDE).next(16_000));
    call_b
        .playout
        .push(&Tone::new(TO_B, 16_000, AMPLITUDE).next(16_000));
    let (mut tone_a, mut tone_b) = (
        Tone::new(A_SAYS, 48_000, AMPLITUDE),
        Tone::new(B_SAYS, 16_000, AMPLITUDE),
    );
    let start = Instant::now();
    for i in 1..=50 {
        a.send_audio_20ms(&tone_a.frame());
        b.send_audio_20ms(&tone_b.frame());
        pump_all(&mut [&mut a, &mut b], start + FRAME * i);
        call_a.drain_capture();
        call_b.drain_capture();
    }
    pump_all(
        &mut [&mut a, &mut b],
        Instant::now() + Duration::from_millis(300),
    );
    call_a.drain_capture();
    call_b.drain_capture();

    for (who, pcm, rate, own) in [
        ("call A's capture", &call_a.captured, 16_000, A_SAYS),
        ("call B's capture", &call_b.captured, 16_000, B_SAYS),
        ("browser A", &a.received_pcm, 48_000, TO_A),
        ("browser B", &b.received_pcm, 48_000, TO_B),
    ] {
        let loud = loud_part(pcm, rate);
        let frames = loud_frames(pcm, rate);
        let (peak, ratio) = strongest(&loud, rate, &all);
        eprintln!("{who}: {frames} loud frames, strongest {peak} Hz ({ratio:.0}x the next)");
        assert!(frames >= 35, "{who}: only {frames} loud frames");
        assert_eq!(peak, own, "{who} hears {peak} Hz, not its own {own} Hz");
        assert!(
            ratio >= 30.0,
            "{who}: another call's tone is in it ({ratio:.1}x)"
        );
    }
    let (ra, _) = call_a.finish();
    let (rb, _) = call_b.finish();
    assert!(ra >= 50 && rb >= 50, "received {ra} and {rb}");
}
