//! Jitter buffer cost per 20 ms packet: one `push` and one `pop`, as a worker does per call
//! and tick, in steady state (in order, on time), and with 5 % random loss where each
//! `Playout::Lost` is concealed by the pitch-based `Concealer` (and every played frame is
//! recorded by it, as the session does). Also the concealer alone on the first lost frame
//! of a loss (the costly one: it runs the pitch search).
//!
//!     cargo bench -p parley-media --bench jitter
//!
//! Time is simulated: packet `i` arrives at `t0 + 20 ms * i` and is popped at the same
//! instant, so the buffer plays at its target delay, as on a clean network.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use parley_media::{encode_ulaw, Concealer, JitterBuffer, JitterConfig, Playout};

const TICK: Duration = Duration::from_millis(20);

/// A jitter buffer fed PCMU speech packets, one per simulated 20 ms tick.
struct Feed {
    jb: JitterBuffer,
    t0: Instant,
    i: u32,
    payloads: Vec<[u8; 160]>,
    pcm: Vec<Vec<i16>>,
    out: [u8; 1500],
    frame: [i16; 160],
    rng: u32,
}

impl Feed {
    fn new() -> Feed {
        let pcm = common::voiced_frames(8000, 200);
        let payloads = pcm
            .iter()
            .map(|f| {
                let mut p = [0u8; 160];
                encode_ulaw(f, &mut p);
                p
            })
            .collect();
        let mut feed = Feed {
            jb: JitterBuffer::new(JitterConfig::for_clock_rate(8000)).unwrap(),
            t0: Instant::now(),
            i: 0,
            payloads,
            pcm,
            out: [0; 1500],
            frame: [0; 160],
            rng: 0x9E37_79B9,
        };
        // Past the start-up buffering: playing at the target delay.
        for _ in 0..100 {
            feed.step(None);
        }
        assert!(matches!(feed.step(None), Playout::Packet { .. }));
        feed
    }

    /// One tick: push packet `i` (unless lost), pop one frame; with a concealer, conceal a
    /// lost frame or let it record a played one.
    fn step(&mut self, mut plc: Option<(&mut Concealer, u32)>) -> Playout {
        let i = self.i;
        self.i = self.i.wrapping_add(1);
        let now = self.t0 + TICK * i;
        let k = i as usize % self.payloads.len();
        let lost = match plc.as_ref() {
            Some((_, per_mille)) => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 17;
                self.rng ^= self.rng << 5;
                self.rng % 1000 < *per_mille
            }
            None => false,
        };
        if !lost {
            self.jb
                .push(now, i as u16, i.wrapping_mul(160), false, &self.payloads[k]);
        }
        let played = self.jb.pop(now, &mut self.out);
        if let Some((concealer, _)) = plc.as_mut() {
            match played {
                Playout::Lost => concealer.conceal(&mut self.frame),
                Playout::Packet { .. } => {
                    // Stands in for the decoded payload (decode is benched in `codecs`).
                    self.frame.copy_from_slice(&self.pcm[k]);
                    concealer.good_frame(&mut self.frame);
                }
                Playout::Empty | Playout::Buffering => {}
            }
        }
        played
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("jitter");
    group.throughput(Throughput::Elements(1));

    let mut feed = Feed::new();
    group.bench_function("push_pop_in_order", |b| {
        b.iter(|| black_box(feed.step(None)))
    });
    let stats = feed.jb.stats();
    assert_eq!(stats.lost, 0, "{stats:?}");
    println!(
        "jitter push_pop_in_order: {} packets, {} lost, {} late, delay {} ms (target {} ms)",
        stats.received, stats.lost, stats.late, stats.current_delay_ms, stats.target_delay_ms
    );

    let mut feed = Feed::new();
    let mut concealer = Concealer::new(8000);
    group.bench_function("push_pop_5pct_loss_conceal", |b| {
        b.iter(|| black_box(feed.step(Some((&mut concealer, 50)))))
    });
    let stats = feed.jb.stats();
    println!(
        "jitter push_pop_5pct_loss_conceal: {} ticks, {} packets, {} lost ({:.2} %), \
         {} concealed frames",
        feed.i,
        stats.received,
        stats.lost,
        100.0 * stats.lost as f64 / feed.i as f64,
        stats.concealed_frames
    );
    group.finish();

    // The first concealed frame of a loss: pitch search plus synthesis. Each iteration
    // records one good frame (ending the previous loss) and conceals the next one.
    let mut group = c.benchmark_group("concealer");
    group.throughput(Throughput::Elements(1));
    for rate in [8000u32, 16000] {
        let frames = common::voiced_frames(rate, 200);
        let mut concealer = Concealer::new(rate);
        let mut good = vec![0i16; rate as usize / 50];
        let mut lost = vec![0i16; rate as usize / 50];
        let mut k = 0;
        group.bench_function(format!("good_then_first_lost_{}k", rate / 1000), |b| {
            b.iter(|| {
                good.copy_from_slice(&frames[k % frames.len()]);
                k += 1;
                concealer.good_frame(&mut good);
                concealer.conceal(&mut lost);
                black_box(&lost);
            })
        });
    }
    group.finish();
    c.final_summary();
}
