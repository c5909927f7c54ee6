//! Simulated senders, networks and a receiver loop with simulated time, for
//! the jitter buffer tests. Times are µs of receiver time from a fixed base
//! `Instant`.

use std::time::{Duration, Instant};

use super::{JitterBuffer, JitterStats, Playout, PushOutcome};

/// Deterministic xorshift64* generator.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// One RTP packet as sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    /// Index of the 20 ms frame on the sender's media clock.
    pub frame: u64,
    /// Send time on the receiver's clock, µs.
    pub send_us: i64,
}

/// A sender of 20 ms packets.
pub(crate) struct Sender {
    pub frames: u64,
    pub first_seq: u16,
    pub first_ts: u32,
    pub frame_samples: u32,
    /// Sender clock rate error: +0.005 runs 0.5 % fast (sends a frame every
    /// 19.9 ms of receiver time).
    pub skew: f64,
    /// Silence suppression: talkspurt and silence lengths in frames,
    /// uniformly drawn from these ranges.
    pub talk_frames: Option<((u64, u64), (u64, u64))>,
}

impl Sender {
    pub(crate) fn new(frames: u64) -> Self {
        Sender {
            frames,
            first_seq: 1000,
            first_ts: 50_000,
            frame_samples: 160,
            skew: 0.0,
            talk_frames: None,
        }
    }

    pub(crate) fn packets(&self, rng: &mut Rng) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut seq = self.first_seq;
        let mut f = 0u64;
        while f < self.frames {
            let (talk, silence) = match self.talk_frames {
                None => (self.frames, 0),
                Some(((t0, t1), (s0, s1))) => (
                    t0 + rng.next_u64() % (t1 - t0 + 1),
                    s0 + rng.next_u64() % (s1 - s0 + 1),
                ),
            };
            for k in 0..talk {
                let frame = f + k;
                if frame >= self.frames {
                    break;
                }
                out.push(Sent {
                    seq,
                    ts: self
                        .first_ts
                        .wrapping_add((frame as u32).wrapping_mul(self.frame_samples)),
                    marker: k == 0,
                    frame,
                    send_us: (frame as f64 * 20_000.0 / (1.0 + self.skew)).round() as i64,
                });
                seq = seq.wrapping_add(1);
            }
            f += talk + silence;
        }
        out
    }
}

/// A packet on the wire at the receiver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub at_us: i64,
    pub pkt: Sent,
}

/// Gilbert–Elliott two-state loss: `p_gb` good→bad, `p_bg` bad→good per
/// packet; losses with probability `loss_good` / `loss_bad` in each state.
pub(crate) struct Gilbert {
    pub p_gb: f64,
    pub p_bg: f64,
    pub loss_good: f64,
    pub loss_bad: f64,
    pub bad: bool,
}

impl Gilbert {
    pub(crate) fn lose(&mut self, rng: &mut Rng) -> bool {
        if self.bad {
            if rng.chance(self.p_bg) {
                self.bad = false;
            }
        } else if rng.chance(self.p_gb) {
            self.bad = true;
        }
        rng.chance(if self.bad {
            self.loss_bad
        } else {
            self.loss_good
        })
    }
}

/// Pass packets through a network: `lose` decides loss, `delay` gives the
/// one-way delay in µs (base plus jitter), `dup_p` duplicates a packet
/// (the copy arrives up to 40 ms later). Returns the arrivals sorted by
/// time (stable for equal times) and the number of packets lost.
pub(crate) fn network(
    sent: &[Sent],
    rng: &mut Rng,
    mut lose: impl FnMut(&Sent, &mut Rng) -> bool,
    mut delay: impl FnMut(&Sent, &mut Rng) -> i64,
    dup_p: f64,
) -> (Vec<Arrival>, Vec<Sent>) {
    let mut arrivals = Vec::new();
    let mut lost = Vec::new();
    for p in sent {
        if lose(p, rng) {
            lost.push(*p);
            continue;
        }
        let at_us = p.send_us + delay(p, rng);
        arrivals.push(Arrival { at_us, pkt: *p });
        if rng.chance(dup_p) {
            let extra = (rng.uniform() * 40_000.0) as i64;
            arrivals.push(Arrival {
                at_us: at_us + extra,
                pkt: *p,
            });
        }
    }
    arrivals.sort_by_key(|a| a.at_us);
    (arrivals, lost)
}

/// The payload of a simulated packet: its frame index, then filler.
pub(crate) fn payload(frame: u64) -> [u8; 160] {
    let mut b = [0x55u8; 160];
    b[..8].copy_from_slice(&frame.to_le_bytes());
    b
}

/// One `pop` of the receiver loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tick {
    pub at_us: i64,
    pub out: Playout,
    /// Frame index decoded from the payload of a played packet.
    pub frame: Option<u64>,
    pub stats: JitterStats,
}

/// Receiver loop: every 20 ms (from `phase_us`) push everything that has
/// arrived, then pop. Runs until `until_us`.
pub(crate) struct Receiver {
    pub base: Instant,
    pub ticks: Vec<Tick>,
    pub outcomes: Vec<(Sent, PushOutcome)>,
}

impl Receiver {
    pub(crate) fn new() -> Self {
        Receiver {
            base: Instant::now(),
            ticks: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    pub(crate) fn at(&self, us: i64) -> Instant {
        self.base + Duration::from_micros(us.max(0) as u64)
    }

    pub(crate) fn run(
        &mut self,
        jb: &mut JitterBuffer,
        arrivals: &[Arrival],
        phase_us: i64,
        until_us: i64,
    ) {
        let mut next = 0;
        let mut t = phase_us;
        let mut out = [0u8; 1500];
        while t <= until_us {
            while next < arrivals.len() && arrivals[next].at_us <= t {
                let a = arrivals[next];
                let p = payload(a.pkt.frame);
                let o = jb.push(self.at(a.at_us), a.pkt.seq, a.pkt.ts, a.pkt.marker, &p);
                self.outcomes.push((a.pkt, o));
                next += 1;
            }
            let r = jb.pop(self.at(t), &mut out);
            let frame = match r {
                Playout::Packet { len, .. } if len >= 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&out[..8]);
                    Some(u64::from_le_bytes(b))
                }
                _ => None,
            };
            self.ticks.push(Tick {
                at_us: t,
                out: r,
                frame,
                stats: jb.stats(),
            });
            t += 20_000;
        }
    }

    /// Frame indices of played packets, in playout order.
    pub(crate) fn played(&self) -> Vec<u64> {
        self.ticks.iter().filter_map(|t| t.frame).collect()
    }

    pub(crate) fn count(&self, want: Playout) -> usize {
        self.ticks
            .iter()
            .filter(|t| std::mem::discriminant(&t.out) == std::mem::discriminant(&want))
            .count()
    }
}
