//! A worker thread with real sockets: a call whose stream is held sends its keep-alive, and
//! audio queued between ticks wakes the worker, which starts the talkspurt at once (counted
//! in `early_talkspurts`) rather than at its next tick.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parley_media::codec::CodecKind;
use parley_media::engine::{CallSetup, EventSink, MediaEngine};
use parley_media::playout::playout_queue;
use parley_media::rtp;
use parley_media::session::{MediaEvent, MediaSession, SessionOptions, SessionParams};
use parley_media::talkspurt::{TalkspurtConfig, HANGOVER_FRAMES};

struct Discard;

impl EventSink for Discard {
    fn push(&mut self, _event: MediaEvent) {}
}

/// The next RTP packet from Parley's side: (marker, timestamp).
fn next_packet(peer: &UdpSocket) -> (bool, u32) {
    let mut buf = [0u8; 1500];
    let (n, _) = peer
        .recv_from(&mut buf)
        .expect("a packet within the timeout");
    let h = rtp::parse(&buf[..n]).unwrap().header;
    (h.marker, h.timestamp)
}

#[test]
fn queued_audio_wakes_the_worker_and_starts_the_talkspurt() {
    let engine = MediaEngine::start(1, None).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut playout, rx) = playout_queue(16_000);
    let params = SessionParams {
        codec: CodecKind::Pcmu,
        payload_type: 0,
        dtmf_payload_type: None,
        remote: Some(peer.local_addr().unwrap()),
        send: true,
        receive: true,
    };
    let options = SessionOptions {
        talkspurts: TalkspurtConfig {
            suppress_silence: true,
            keepalive: Duration::from_secs(60),
        },
        ..SessionOptions::default()
    };
    let session = MediaSession::new(Instant::now(), params, rx, None, options);
    let handle = engine
        .add_call(CallSetup {
            socket,
            rtcp_socket: None,
            session,
            events: Box::new(Discard),
            keepalive: Box::new(()),
        })
        .unwrap();
    playout.set_waker(handle.playout_waker());
    // The first keep-alive opens the path; then nothing until there is audio.
    let (marker, keepalive_ts) = next_packet(&peer);
    assert!(marker);
    // A talkspurt may start between ticks only after the last packet's 20 ms; a wake that
    // races with a tick is started by the tick instead. Some of several must be early.
    let mut starts = Vec::new();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(47));
        playout.push(&[4000; 320]);
        let (marker, ts) = next_packet(&peer);
        assert!(marker, "each reply starts a talkspurt");
        starts.push(ts);
        // Its one frame, then the hangover of silence, then the stream is held again.
        for _ in 0..HANGOVER_FRAMES {
            assert!(!next_packet(&peer).0);
        }
    }
    let early = engine.stats.early_talkspurts.load(Ordering::Relaxed);
    assert!(early >= 1, "no talkspurt started between ticks");
    // Held time is skipped on the real clock: each start is well past the previous end.
    let mut last_end = keepalive_ts.wrapping_add(160);
    for ts in starts {
        let gap = ts.wrapping_sub(last_end) as i32;
        assert!(gap > 0, "the timestamp moves on across held time ({gap})");
        last_end = ts.wrapping_add(160 * (1 + HANGOVER_FRAMES));
    }
    drop(handle);
}
