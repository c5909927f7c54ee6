//! The steady-state media path allocates nothing: a counting global allocator watches
//! `MediaSession::handle_packet` and `tick` over many frames after warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parley_media::codec::CodecKind;
use parley_media::playout::{capture_queue, playout_queue};
use parley_media::rtp::{self, RtpHeader};
use parley_media::session::{MediaSession, SessionOptions, SessionParams};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only the test's own thread is watched: the test harness allocates on its threads.
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if WATCHED.with(|w| w.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    // The counter itself must work: one deliberate allocation is seen.
    WATCHED.with(|w| w.set(true));
    let probe = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![1u8; 16]));
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        probe + 1,
        "the counter counts"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run(500, &mut session);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    WATCHED.with(|w| w.set(false));
    let n = capture_rx.slots().min(drained.len());
    let chunk = capture_rx.read_chunk(n).unwrap();
    let (a, _) = chunk.as_slices();
    drained[..a.len()].copy_from_slice(a);
    chunk.commit_all();
    assert_eq!(after - before, 0, "allocations in 500 steady-state frames");
    assert!(playout_tx.samples_played() > 0);
}
