//! The receive path (jitter buffer push/pop, G.711 decode, concealment,
//! comfort noise) must not touch the heap in steady state. A counting
//! global allocator counts allocations made by this test's thread while
//! counting is switched on; a simulated call with loss, jitter, reordering,
//! duplicates, clock skew, silence suppression and a source change runs
//! through the whole path with counting on, after a warm-up with it off.

use std::time::{Duration, Instant};

use parley_media::{
    decode_ulaw, encode_ulaw, ComfortNoise, Concealer, JitterBuffer, JitterConfig, Playout,
    PushOutcome,
};

mod common;

/// Allocations made by `f` on this thread.
fn allocations_during(f: impl FnOnce()) -> usize {
    common::allocations_in(f).0 as usize
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
struct Arrival {
    at_us: i64,
    seq: u16,
    ts: u32,
    marker: bool,
}

/// A 10-minute call: 0.3 % fast sender clock, talkspurts of 1-6 s with
/// 0.2-1.6 s silences, 3 % loss, 0-40 ms jitter, 2 % duplicates, a 150 ms
/// delay spike every 30 s, and a new source (sequence and timestamp
/// jump, not signalled) after 5 minutes.
fn trace() -> Vec<Arrival> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = Vec::new();
    let (mut seq, mut ts_base) = (100u16, 1_000u32);
    let mut frame = 0u64;
    let mut switched = false;
    while frame < 30_000 {
        let talk = 50 + rng.next() % 250;
        for k in 0..talk {
            let f = frame + k;
            if f >= 15_000 && !switched {
                switched = true;
                seq = seq.wrapping_add(20_000);
                ts_base = ts_base.wrapping_add(123_456_789);
            }
            let send_us = (f as f64 * 20_000.0 / 1.003) as i64;
            let ts = ts_base.wrapping_add((f as u32).wrapping_mul(160));
            let p = Arrival {
                at_us: 0,
                seq,
                ts,
                marker: k == 0,
            };
            seq = seq.wrapping_add(1);
            if rng.uniform() < 0.03 {
                continue;
            }
            let spike = if send_us % 30_000_000 < 200_000 {
                150_000
            } else {
                0
            };
            let at_us = send_us + 30_000 + (rng.uniform() * 40_000.0) as i64 + spike;
            out.push(Arrival { at_us, ..p });
            if rng.uniform() < 0.02 {
                out.push(Arrival {
                    at_us: at_us + 15_000,
                    ..p
                });
            }
        }
        frame += talk + 10 + rng.next() % 70;
    }
    out.sort_by_key(|a| a.at_us);
    out
}

/// A voiced 20 ms frame (three harmonics of 140 Hz) for frame index `f`.
fn voiced(f: u64, pcm: &mut [i16; 160]) {
    for (i, s) in pcm.iter_mut().enumerate() {
        let t = (f as f64 * 160.0 + i as f64) / 8_000.0;
        let w = 2.0 * std::f64::consts::PI * 140.0 * t;
        *s = (4_000.0 * (w.sin() + 0.5 * (2.0 * w).sin() + 0.3 * (3.0 * w).sin())) as i16;
    }
}

struct Call {
    jb: JitterBuffer,
    plc: Concealer,
    cng: ComfortNoise,
    arrivals: Vec<Arrival>,
    next: usize,
    t_us: i64,
    base: Instant,
    tally: [u64; 4],
    outcomes: [u64; 6],
}

impl Call {
    /// Run the receive path for `ticks` 20 ms ticks.
    fn run(&mut self, ticks: u32) {
        let mut wire = [0u8; 160];
        let mut pcm = [0i16; 160];
        let mut out = [0u8; 1500];
        for _ in 0..ticks {
            while self.next < self.arrivals.len() && self.arrivals[self.next].at_us <= self.t_us {
                let a = self.arrivals[self.next];
                self.next += 1;
                voiced(u64::from(a.ts / 160), &mut pcm);
                encode_ulaw(&pcm, &mut wire);
                let now = self.base + Duration::from_micros(a.at_us as u64);
                let o = self.jb.push(now, a.seq, a.ts, a.marker, &wire);
                self.outcomes[match o {
                    PushOutcome::Accepted => 0,
                    PushOutcome::Duplicate => 1,
                    PushOutcome::TooLate => 2,
                    PushOutcome::TooEarly => 3,
                    PushOutcome::Reset => 4,
                    PushOutcome::Oversize => 5,
                }] += 1;
            }
            let now = self.base + Duration::from_micros(self.t_us as u64);
            match self.jb.pop(now, &mut out) {
                Playout::Packet { len, .. } => {
                    decode_ulaw(&out[..len.min(160)], &mut pcm);
                    self.plc.good_frame(&mut pcm);
                    self.cng.observe(&pcm);
                    self.tally[0] += 1;
                }
                Playout::Lost => {
                    self.plc.conceal(&mut pcm);
                    self.tally[1] += 1;
                }
                Playout::Empty => {
                    self.cng.fill(&mut pcm);
                    self.tally[2] += 1;
                }
                Playout::Buffering => {
                    self.cng.fill(&mut pcm);
                    self.tally[3] += 1;
                }
            }
            let _ = self.jb.stats();
            self.t_us += 20_000;
        }
    }
}

#[test]
fn receive_path_does_not_allocate_in_steady_state() {
    // The counter works: an allocation while counting is seen.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);

    let mut call = Call {
        jb: JitterBuffer::new(JitterConfig::for_clock_rate(8_000)).unwrap(),
        plc: Concealer::new(8_000),
        cng: ComfortNoise::new(8_000),
        arrivals: trace(),
        next: 0,
        t_us: 0,
        base: Instant::now(),
        tally: [0; 4],
        outcomes: [0; 6],
    };
    // Warm-up: 1 minute with counting off.
    call.run(3_000);
    let n = allocations_during(|| {
        call.run(6_000);
        // A source change signalled by the caller is steady state too.
        call.jb.reset();
        call.run(21_000);
    });
    assert_eq!(n, 0, "{n} allocations in the receive path");

    // The run went through every kind of event.
    let [packets, lost, empty, buffering] = call.tally;
    assert!(
        packets > 15_000 && lost > 500 && empty > 2_000 && buffering > 0,
        "{:?} {:?} {:?}",
        call.tally,
        call.outcomes,
        call.jb.stats()
    );
    let [accepted, dups, late, _early, resets, _] = call.outcomes;
    assert!(accepted > 15_000 && dups > 100 && late > 0 && resets >= 1);
    let st = call.jb.stats();
    assert!(st.skipped_frames > 0 && st.concealed_frames > 0 && st.lost > 0);
}
