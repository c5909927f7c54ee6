//! The steady-state media path allocates nothing: a counting global allocator watches
//! `MediaSession::handle_packet` and `tick` over many frames after warm-up.

use std::time::{Duration, Instant};

use parley_media::codec::CodecKind;
use parley_media::playout::{capture_queue, playout_queue};
use parley_media::rtp::{self, RtpHeader};
use parley_media::session::{MediaSession, SessionOptions, SessionParams};

mod common;

#[test]
fn session_steady_state_does_not_allocate() {
    let t0 = Instant::now();
    let (mut playout_tx, playout_rx) = playout_queue(64_000);
    let (capture_tx, mut capture_rx) = capture_queue(64_000);
    let params = SessionParams {
        codec: CodecKind::Pcmu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
        remote: Some("127.0.0.1:4000".parse().unwrap()),
        send: true,
        receive: true,
    };
    let mut session = MediaSession::new(
        t0,
        params,
        playout_rx,
        Some(capture_tx),
        SessionOptions {
            rtp_timeout: Duration::from_secs(30),
            ssrc: 9,
            ..SessionOptions::default()
        },
    );
    let from = "127.0.0.1:5000".parse().unwrap();
    let mut packet = [0u8; 172];
    let mut out = [0u8; 1500];
    let speech: Vec<i16> = (0..32_000).map(|i| ((i % 80) as i16 - 40) * 300).collect();
    let mut drained = vec![0i16; 64_000];
    let mut events = 0u32;
    let mut run = |frames: u32, session: &mut MediaSession| {
        for i in 0..frames {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: i as u16,
                timestamp: i * 160,
                ssrc: 1,
            };
            let n = rtp::write_packet(&header, &[0x55; 160], &mut packet).unwrap();
            session.handle_packet(now, from, &packet[..n], &mut |_| events += 1);
            session.tick(now, &mut out, &mut |_| events += 1);
        }
    };
    playout_tx.push(&speech);
    run(50, &mut session); // warm-up
    let n = capture_rx.slots();
    capture_rx.read_chunk(n).unwrap().commit_all();
    common::assert_counter_works();
    let (allocations, _) = common::allocations_in(|| run(500, &mut session));
    let n = capture_rx.slots().min(drained.len());
    let chunk = capture_rx.read_chunk(n).unwrap();
    let (a, _) = chunk.as_slices();
    drained[..a.len()].copy_from_slice(a);
    chunk.commit_all();
    assert_eq!(allocations, 0, "allocations in 500 steady-state frames");
    assert!(playout_tx.samples_played() > 0);
}
