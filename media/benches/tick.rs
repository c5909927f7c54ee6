//! One whole media tick for 1, 100 and 1,000 synthetic calls: what a media worker does every
//! 20 ms, minus the socket syscalls.
//!
//!     cargo bench -p parley-media --bench tick
//!
//! Each call is a `MediaSession` (PCMU, telephone-event negotiated, sending and receiving)
//! with speech queued on its playout ring and its capture ring drained regularly, so neither
//! runs dry or fills. One iteration is one tick: every call gets the RTP packet of that tick
//! (`handle_packet`: PCMU speech, in order, on time), then `tick()` (jitter buffer pop,
//! decode or concealment, 8 -> 16 kHz, capture ring, playout ring, 16 -> 8 kHz, encode, RTP
//! out) and `poll_rtcp()`, exactly the worker's per-call sequence. Time is simulated (tick
//! `k` is `t0 + 20 ms * k`). Only the per-call loop (and the VAD run) is timed; building the
//! tick's packet and the rings' upkeep (the async side's job, every 25 ticks) are not.
//!
//! - `tick/N`: VAD off. Per call and tick = reported time / N.
//! - `tick_vad/N`: VAD on (`SessionOptions::vad`), plus one `VadBatcher::run` per tick over the
//!   N calls, as the worker does. A call has a 32 ms window ready on 5 of every 8 ticks; the
//!   calls' phases are staggered (call `i` starts `i % 8` frames ahead, as calls that did not
//!   start on the same tick), so every tick runs a batch of about 5N/8 windows and the mean
//!   over ticks is the per-call cost averaged over ticks. Needs ONNX Runtime and the model
//!   (`.cache/models/`, or PARLEY_MEDIA_ONNXRUNTIME / PARLEY_MEDIA_VAD_MODEL); skipped with a
//!   message when they are missing.
//!
//! Criterion's throughput line (elem/s) counts call-ticks per second.

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, Throughput};
use parley_media::codec::{new_codec, CodecKind, OpusSettings};
use parley_media::playout::{
    capture_queue, playout_queue, CaptureConsumer, PlayoutProducer, ENGINE_RATE,
};
use parley_media::rtp::{self, RtpHeader};
use parley_media::session::{MediaSession, SessionOptions, SessionParams};
use parley_media::vad::{SileroModel, VadBatcher};

const TICK: Duration = Duration::from_millis(20);
/// Ticks between two upkeeps of the rings (the async side's work, not timed).
const UPKEEP_EVERY: u32 = 25;
/// Ring sizes: one second at 16 kHz, twice what accumulates between two upkeeps.
const RING: usize = 2 * ENGINE_RATE as usize;
const CALLS: [usize; 3] = [1, 100, 1000];

struct Call {
    session: MediaSession,
    playout: PlayoutProducer,
    capture: CaptureConsumer,
}

/// N calls on one simulated worker.
struct Rig {
    calls: Vec<Call>,
    batcher: Option<VadBatcher>,
    t0: Instant,
    tick: u32,
    /// The caller's speech in the call's codec, one payload per 20 ms (pauses included).
    payloads: Vec<Vec<u8>>,
    codec: CodecKind,
    packet: [u8; 1500],
    out: [u8; 1500],
    rtcp_out: [u8; 1500],
    /// What the agent says (16 kHz), fed into the playout rings.
    speech16: Vec<i16>,
    from: SocketAddr,
    events: u64,
    vad_windows: u64,
    measured_ticks: u64,
}

impl Rig {
    fn new(n: usize, model: Option<SileroModel>, codec: CodecKind) -> Rig {
        let t0 = Instant::now();
        let vad = model.is_some();
        let calls = (0..n)
            .map(|i| {
                let (playout, playout_rx) = playout_queue(RING);
                let (capture_tx, capture) = capture_queue(RING);
                let params = SessionParams {
                    codec,
                    payload_type: payload_type(codec),
                    dtmf_payload_type: Some(101),
                    remote: Some(SocketAddr::from(([127, 0, 0, 1], 20_000 + 2 * i as u16))),
                    send: true,
                    receive: true,
                };
                let mut session = MediaSession::new(
                    t0,
                    params,
                    playout_rx,
                    Some(capture_tx),
                    SessionOptions {
                        ssrc: 0x1000 + i as u32,
                        cname: format!("bench-{i}"),
                        vad,
                        ..SessionOptions::default()
                    },
                );
                if vad {
                    // Stagger the calls' VAD phases over the 8-tick cycle.
                    // 20 ms frames at the VAD's rate (8 kHz for PCMU calls).
                    let frame = session.vad_mut().rate().sample_rate() as usize / 50;
                    session.vad_mut().push_pcm(&vec![0; frame * (i % 8)]);
                }
                Call {
                    session,
                    playout,
                    capture,
                }
            })
            .collect();
        // The caller's side encodes with its own codec instance, as a peer would.
        let mut encoder = new_codec(codec, OpusSettings::default()).expect("codec");
        let frame = encoder.frame_samples();
        let payloads = common::speech(encoder.sample_rate())
            .chunks_exact(frame)
            .map(|f| {
                let mut p = vec![0u8; 1500];
                let n = encoder.encode(f, &mut p).expect("encode");
                p.truncate(n);
                p
            })
            .collect();
        let speech16 = common::speech(16000);
        assert!(speech16.len() > 2 * RING);
        let mut rig = Rig {
            calls,
            batcher: model.map(VadBatcher::new),
            t0,
            tick: 0,
            payloads,
            codec,
            packet: [0; 1500],
            out: [0; 1500],
            rtcp_out: [0; 1500],
            speech16,
            from: SocketAddr::from(([127, 0, 0, 1], 40_000)),
            events: 0,
            vad_windows: 0,
            measured_ticks: 0,
        };
        // One second of calls: jitter buffers playing, resamplers and VAD streams primed.
        rig.run(50);
        rig.vad_windows = 0;
        rig.measured_ticks = 0;
        rig
    }

    /// The async side: drain what the calls captured, top up what they play.
    fn upkeep(&mut self) {
        let len = self.speech16.len();
        for call in &mut self.calls {
            let n = call.capture.slots();
            if let Ok(chunk) = call.capture.read_chunk(n) {
                chunk.commit_all();
            }
            let free = call.playout.free();
            let at = (self.tick as usize * 320) % (len - free);
            call.playout.push(&self.speech16[at..at + free]);
        }
    }

    /// Runs `ticks` ticks; returns the time spent in the calls (and the VAD).
    fn run(&mut self, ticks: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..ticks {
            if self.tick.is_multiple_of(UPKEEP_EVERY) {
                self.upkeep();
            }
            let k = self.tick;
            let now = self.t0 + TICK * k;
            let ntp_now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(parley_media::rtcp::ntp_from_unix)
                .unwrap_or(0);
            let ticks = if self.codec == CodecKind::Opus {
                960
            } else {
                160
            };
            let header = RtpHeader {
                marker: k == 0,
                payload_type: payload_type(self.codec),
                sequence: k as u16,
                timestamp: k.wrapping_mul(ticks),
                ssrc: 0xCA11_E500,
            };
            let payload = &self.payloads[k as usize % self.payloads.len()];
            let len = rtp::write_packet(&header, payload, &mut self.packet).unwrap();

            let Rig {
                calls,
                batcher,
                packet,
                out,
                rtcp_out,
                from,
                events,
                vad_windows,
                ..
            } = self;
            let start = Instant::now();
            for call in calls.iter_mut() {
                let s = &mut call.session;
                s.handle_packet(now, *from, &packet[..len], &mut |_| *events += 1);
                if let Some(t) = s.tick(now, out, &mut |_| *events += 1) {
                    black_box(&out[..t.len]);
                }
                if let Some(t) = s.poll_rtcp(now, ntp_now, rtcp_out) {
                    black_box(&rtcp_out[..t.len]);
                }
            }
            if let Some(batcher) = batcher.as_mut() {
                let n = batcher
                    .run(
                        calls,
                        |c| c.session.vad_mut(),
                        |_, c, outcome| c.session.on_vad_window(outcome, &mut |_| *events += 1),
                    )
                    .expect("VAD inference");
                *vad_windows += n as u64;
            }
            total += start.elapsed();
            self.tick += 1;
            self.measured_ticks += 1;
        }
        total
    }

    /// Checks the run was the steady state it claims to be, and says what it did.
    fn report(&mut self, name: &str) {
        let n = self.calls.len();
        let s = self.calls[0].session.stats();
        let dropped: u64 = self
            .calls
            .iter_mut()
            .map(|c| c.session.stats().capture_dropped_samples)
            .sum();
        let vad_dropped: u64 = self
            .calls
            .iter_mut()
            .map(|c| c.session.vad_mut().dropped_samples())
            .sum();
        println!(
            "{name}/{n}: {} ticks; call 0: {} packets in, {} out, {} lost, {} late, jitter-buffer \
             delay {} ms; capture samples dropped (all calls): {dropped}; VAD samples dropped: \
             {vad_dropped}; VAD windows per tick: {:.1} ({:.3} per call)",
            self.tick,
            s.packets_received,
            s.packets_sent,
            s.jitter.lost,
            s.jitter.late,
            s.jitter.current_delay_ms,
            self.vad_windows as f64 / self.measured_ticks.max(1) as f64,
            self.vad_windows as f64 / self.measured_ticks.max(1) as f64 / n as f64,
        );
        assert_eq!(s.jitter.lost, 0);
        assert_eq!(dropped, 0, "capture rings overflowed");
        assert_eq!(vad_dropped, 0, "VAD streams overflowed");
        assert_eq!(s.packets_received as u32, self.tick);
    }
}

fn payload_type(codec: CodecKind) -> u8 {
    codec.static_payload_type().unwrap_or(96)
}

fn bench_group(
    c: &mut Criterion,
    name: &str,
    codec: CodecKind,
    calls: &[usize],
    model: &mut dyn FnMut() -> Option<SileroModel>,
) {
    let mut group = c.benchmark_group(name);
    for &n in calls {
        let mut rig = Rig::new(n, model(), codec);
        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(if n >= 1000 { 10 } else { 20 });
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| rig.run(iters))
        });
        rig.report(name);
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();

    bench_group(&mut c, "tick", CodecKind::Pcmu, &CALLS, &mut || None);
    // Opus calls cost far more than G.711 (encode ~67 µs, decode ~16 µs per frame).
    bench_group(&mut c, "tick_opus", CodecKind::Opus, &[1, 100], &mut || {
        None
    });

    let (lib, model_path) = common::vad_paths();
    match SileroModel::load(&lib, &model_path) {
        Ok(first) => {
            let mut first = Some(first);
            bench_group(&mut c, "tick_vad", CodecKind::Pcmu, &CALLS, &mut || {
                Some(first.take().unwrap_or_else(|| {
                    SileroModel::load(&lib, &model_path).expect("VAD model loaded before")
                }))
            });
        }
        Err(e) => println!("SKIPPED tick_vad group (VAD model not available): {e}"),
    }
    c.final_summary();
}
