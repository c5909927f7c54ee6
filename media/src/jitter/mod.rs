//! Adaptive RTP jitter buffer, codec-agnostic and sans-I/O.
//!
//! The media worker calls [`JitterBuffer::push`] for every received RTP
//! packet and [`JitterBuffer::pop`] once per 20 ms tick; both take the
//! current time as an argument and never read a clock. All storage (a ring
//! of `capacity_packets` slots with `max_payload_bytes` each, the delay
//! histogram, the duplicate bitmap) is allocated by [`JitterBuffer::new`];
//! `push`, `pop` and `reset` never allocate, never lock and never panic.
//!
//! # Playout model
//!
//! Packets are played in sequence-number order, one 20 ms frame
//! (`frame_samples` timestamp units) per `pop`. The *playout delay* of a
//! frame with timestamp `ts` played at `now` is
//!
//! ```text
//! delay = now - (ts / clock_rate + reference)
//! ```
//!
//! where `reference` is the fastest-path transit (`arrival - ts /
//! clock_rate`): the smallest of the per-16-packet transit minima over the
//! last 128 packets, each projected to `now` along the estimated clock
//! drift (see `delay.rs`). The delay is how long ago the frame would have
//! arrived over the fastest path. Unlike a buffer fill level it does not
//! move when one packet is late; it moves only when the playout point does
//! or when the clocks drift.
//!
//! # Target delay (adaptation)
//!
//! Each arriving packet, late ones included, adds its *relative delay*
//! `transit - reference` to a histogram with bins of a quarter frame
//! (5 ms) whose old entries decay by a factor 0.997 per packet (half
//! weight after about 4.6 s, negligible after about 20 s). The target delay
//! is the upper edge of the bin holding the 95th percentile, clamped to
//! `[min_delay_ms, max_delay_ms]`: with that delay 95 % of packets are in
//! time. This is the idea of WebRTC NetEq's delay manager, computed from
//! transit times rather than inter-arrival times.
//!
//! # Holding the delay at the target (drift, target changes)
//!
//! * A talkspurt, or the stream, starts playing at the first tick where its
//!   first frame's delay reaches the target (plus, for a slow sender, the
//!   drift expected over 2 s of speech, at most half a frame). Waiting
//!   longer or starting early in a sender's silence gap is how the delay
//!   is changed without touching speech.
//! * During speech the delay is held in the band `[target - frame/4,
//!   target + 1.5 frames]`, more than a frame wide so that one correction
//!   never overshoots. Above the band one frame is skipped (the due packet
//!   is discarded and the next one played); below it one frame is
//!   stretched (`pop` returns [`Playout::Lost`] without advancing; the
//!   caller conceals). At most one such action per 10 ticks.
//!
//! A sender clock 0.5 % fast or slow thus costs one skipped or inserted
//! frame every 4 s of continuous speech and the delay stays in the band; a
//! sender with silence suppression has its drift absorbed in the gaps.
//!
//! # Loss, lateness, silence suppression
//!
//! A sequence number whose frame time passes without the packet is *lost*;
//! if it arrives afterwards it is counted *late* instead. Silence gaps are
//! told from loss by sequence numbers: a silence-suppressing sender stops
//! sending but does not skip sequence numbers, so a gap's frames are never
//! counted lost; its first packet after the gap (marker bit, timestamp
//! jump) is held, with `pop` returning [`Playout::Empty`], until its delay
//! reaches the target. When the buffer runs dry (a talkspurt ended, or
//! the network stalls) `pop` returns up to three [`Playout::Lost`] frames,
//! enough for the concealment to fade out, then [`Playout::Empty`]; this is
//! concealment, not loss. Packets of a stall that arrive afterwards are
//! still played (the delay grows by the stall and the band brings it back
//! by skipping), unless their delay would exceed `max_delay_ms`, in which
//! case they are dropped as late.
//!
//! Packets are expected to carry one 20 ms frame each (`frame_samples`);
//! the sequence and timestamp are unwrapped to 64 bits, so wrap-around is
//! invisible.

mod delay;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::time::Instant;

use thiserror::Error;

use delay::{DelayEstimator, QUANTILE};

/// A sequence number this far ahead of (or behind) the newest one is a
/// discontinuity (RFC 3550 §A.1 `MAX_DROPOUT`); see [`PushOutcome::Reset`].
pub const MAX_SEQ_JUMP: u16 = 3000;
/// Sequence numbers behind the playout point for which duplicates are still
/// told apart from late packets.
const DUP_HISTORY: usize = 128;
/// Ticks between two skip/stretch actions while speech is playing.
const MIN_TICKS_BETWEEN_ACTIONS: u32 = 10;
/// Concealment frames returned when the buffer runs dry before switching to
/// [`Playout::Empty`]: 60 ms, after which concealment is silent anyway.
const DRY_CONCEAL_FRAMES: u32 = 3;
/// A gap in arrivals longer than this resets the transit reference: the
/// skew estimate is not trusted to project it further.
const REFERENCE_GAP_US: i64 = 10_000_000;
/// Largest accepted clock rate.
const MAX_CLOCK_RATE: u32 = 384_000;
/// Largest accepted `max_delay_ms`.
const MAX_DELAY_LIMIT_MS: u32 = 10_000;

/// Jitter buffer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate in Hz (8000 for PCMU/PCMA/G.722, 48000 for Opus).
    pub clock_rate: u32,
    /// Timestamp units per 20 ms frame (one packet, one `pop`): 160 at 8 kHz.
    pub frame_samples: u32,
    /// Smallest target delay in ms.
    pub min_delay_ms: u32,
    /// Largest target delay in ms; also the most a late packet may be
    /// delayed and still be played.
    pub max_delay_ms: u32,
    /// Ring slots; at least `max_delay_ms / 20 + 2`, at most 2048.
    pub capacity_packets: usize,
    /// Largest payload accepted, in bytes (1..=65535).
    pub max_payload_bytes: usize,
}

impl JitterConfig {
    /// A sensible configuration for 20 ms packets at `clock_rate`: delay
    /// between 20 and 400 ms, 64 slots, payloads up to 1500 bytes.
    pub fn for_clock_rate(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame_samples: clock_rate / 50,
            min_delay_ms: 20,
            max_delay_ms: 400,
            capacity_packets: 64,
            max_payload_bytes: 1500,
        }
    }
}

/// Why a [`JitterConfig`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum JitterConfigError {
    /// `clock_rate` is zero or above 384 kHz.
    #[error("jitter buffer clock_rate {0} Hz is out of range 1..=384000")]
    ClockRate(u32),
    /// `frame_samples` is not between 5 and 100 ms at the clock rate.
    #[error("jitter buffer frame_samples {frame_samples} is not 5..=100 ms at {clock_rate} Hz")]
    FrameSamples {
        /// The configured frame length.
        frame_samples: u32,
        /// The configured clock rate.
        clock_rate: u32,
    },
    /// `min_delay_ms > max_delay_ms` or `max_delay_ms` above 10 s.
    #[error(
        "jitter buffer delay range {min_ms}..={max_ms} ms is invalid (need min <= max <= 10000)"
    )]
    DelayRange {
        /// Configured minimum.
        min_ms: u32,
        /// Configured maximum.
        max_ms: u32,
    },
    /// `capacity_packets` cannot hold `max_delay_ms` of frames, or exceeds 2048.
    #[error("jitter buffer capacity_packets {capacity} is out of range {needed}..=2048")]
    Capacity {
        /// Configured capacity.
        capacity: usize,
        /// Smallest capacity for the configured delay.
        needed: usize,
    },
    /// `max_payload_bytes` is zero or above 65535.
    #[error("jitter buffer max_payload_bytes {0} is out of range 1..=65535")]
    MaxPayload(usize),
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Accepted,
    /// A copy of a packet already received; dropped.
    Duplicate,
    /// Its frame was already played or concealed; dropped and counted late.
    TooLate,
    /// Too far ahead of the playout point to fit in the ring (a loss of
    /// more than `capacity_packets` packets): the buffered packets were
    /// discarded (counted in `discarded_overflow`) and playout restarts,
    /// after buffering, from this packet, which was stored.
    TooEarly,
    /// A sequence jump of [`MAX_SEQ_JUMP`] or more, or a timestamp that
    /// disagrees with the arrival time by more than `max(1 s, 2 ×
    /// max_delay)`: treated as a new stream, as after [`JitterBuffer::reset`];
    /// this packet was stored as its first.
    Reset,
    /// Payload longer than `max_payload_bytes`; dropped.
    Oversize,
}

/// What to play for one 20 ms tick, from [`JitterBuffer::pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout {
    /// A packet's payload, copied into the front of `out`.
    Packet {
        /// Payload length in bytes.
        len: usize,
        /// Its RTP timestamp. A step of two frames from the previous packet
        /// means the buffer skipped a frame to reduce delay.
        timestamp: u32,
    },
    /// A frame is missing (lost, late, or inserted to grow the delay) but
    /// the stream goes on: the caller conceals one frame.
    Lost,
    /// Nothing to play: no stream, a silence gap of the sender, or a dry
    /// buffer after concealment has faded. The caller plays comfort noise.
    Empty,
    /// The stream (re)started and the buffer is filling up to its target.
    Buffering,
}

/// Jitter buffer counters and delay estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Distinct packets received (duplicates and oversize excluded).
    pub received: u64,
    /// Copies of packets already received.
    pub duplicates: u64,
    /// Packets that arrived after their frame had been played or concealed,
    /// or too late to be played within `max_delay_ms`.
    pub late: u64,
    /// Sequence numbers whose frame time passed without the packet, less
    /// those that arrived late afterwards within 128 sequence numbers
    /// (RFC 3550 cumulative loss).
    pub lost: u64,
    /// Buffered packets discarded unplayed because a far-ahead packet
    /// ([`PushOutcome::TooEarly`]) flushed the buffer.
    pub discarded_overflow: u64,
    /// Frames skipped to bring the delay down to the target.
    pub skipped_frames: u64,
    /// [`Playout::Lost`] frames returned (loss, dry buffer, delay growth).
    pub concealed_frames: u64,
    /// Packets refused by [`PushOutcome::Oversize`], plus packets that did
    /// not fit the `out` buffer given to `pop` (those are concealed).
    pub oversize: u64,
    /// Stream restarts ([`PushOutcome::Reset`] and [`PushOutcome::TooEarly`]).
    pub resets: u64,
    /// Playout delay of the frame due at the last `pop`, in ms.
    pub current_delay_ms: u32,
    /// Target delay, in ms.
    pub target_delay_ms: u32,
    /// RFC 3550 interarrival jitter, in ms.
    pub jitter_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No stream since construction or reset.
    Idle,
    /// Stream started; waiting for the delay to reach the target.
    Buffering,
    Playing,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    used: bool,
    marker: bool,
    len: u16,
    rtp_ts: u32,
    seq: i64,
    ts: i64,
}

/// Adaptive jitter buffer for one RTP stream; see the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate: i64,
    frame: i64,
    frame_us: i64,
    min_delay_us: i64,
    max_delay_us: i64,
    ts_jump_limit_us: i64,
    cap: usize,
    max_payload: usize,

    slots: Vec<Slot>,
    payloads: Vec<u8>,
    count: usize,
    /// Received-flags of sequence numbers, indexed modulo `seen.len() * 64`;
    /// valid for `[next_seq - DUP_HISTORY, next_seq + cap)`.
    seen: Vec<u64>,

    delay: DelayEstimator,
    epoch: Option<Instant>,
    phase: Phase,

    /// Extended sequence number of the next frame to play.
    next_seq: i64,
    /// Extended timestamp of the frame due at the next `pop`.
    play_ts: i64,
    /// Estimated extended timestamp of `next_seq - 1`.
    prev_ts: i64,
    /// Highest extended sequence number received, and its timestamp.
    high_seq: i64,
    high_ts: i64,
    /// Transit and arrival time of the packet that set `high_seq`.
    high_transit: i64,
    high_arrival_us: i64,
    last_arrival_us: i64,
    target_us: i64,
    ticks_since_action: u32,
    dry_ticks: u32,
    audio_flowing: bool,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Validate `cfg` and allocate all storage.
    pub fn new(cfg: JitterConfig) -> Result<Self, JitterConfigError> {
        if cfg.clock_rate == 0 || cfg.clock_rate > MAX_CLOCK_RATE {
            return Err(JitterConfigError::ClockRate(cfg.clock_rate));
        }
        let frame_ok = u64::from(cfg.frame_samples) * 200 >= u64::from(cfg.clock_rate)
            && u64::from(cfg.frame_samples) * 10 <= u64::from(cfg.clock_rate);
        if cfg.frame_samples == 0 || !frame_ok {
            return Err(JitterConfigError::FrameSamples {
                frame_samples: cfg.frame_samples,
                clock_rate: cfg.clock_rate,
            });
        }
        if cfg.min_delay_ms > cfg.max_delay_ms || cfg.max_delay_ms > MAX_DELAY_LIMIT_MS {
            return Err(JitterConfigError::DelayRange {
                min_ms: cfg.min_delay_ms,
                max_ms: cfg.max_delay_ms,
            });
        }
        let clock_rate = i64::from(cfg.clock_rate);
        let frame = i64::from(cfg.frame_samples);
        let frame_us = frame * 1_000_000 / clock_rate;
        let max_delay_us = i64::from(cfg.max_delay_ms) * 1_000;
        let needed = usize::try_from(max_delay_us / frame_us.max(1)).unwrap_or(usize::MAX) + 2;
        if cfg.capacity_packets < needed || cfg.capacity_packets > 2048 {
            return Err(JitterConfigError::Capacity {
                capacity: cfg.capacity_packets,
                needed,
            });
        }
        if cfg.max_payload_bytes == 0 || cfg.max_payload_bytes > usize::from(u16::MAX) {
            return Err(JitterConfigError::MaxPayload(cfg.max_payload_bytes));
        }
        let cap = cfg.capacity_packets;
        let seen_bits = (cap + DUP_HISTORY).next_power_of_two().max(64);
        let min_delay_us = i64::from(cfg.min_delay_ms) * 1_000;
        Ok(JitterBuffer {
            clock_rate,
            frame,
            frame_us,
            min_delay_us,
            max_delay_us,
            ts_jump_limit_us: (2 * max_delay_us).max(1_000_000),
            cap,
            max_payload: cfg.max_payload_bytes,
            slots: vec![Slot::default(); cap],
            payloads: vec![0; cap * cfg.max_payload_bytes],
            count: 0,
            seen: vec![0; seen_bits / 64],
            delay: DelayEstimator::new(frame_us / 4, max_delay_us),
            epoch: None,
            phase: Phase::Idle,
            next_seq: 0,
            play_ts: 0,
            prev_ts: 0,
            high_seq: 0,
            high_ts: 0,
            high_transit: 0,
            high_arrival_us: 0,
            last_arrival_us: 0,
            target_us: min_delay_us,
            ticks_since_action: 0,
            dry_ticks: 0,
            audio_flowing: false,
            stats: JitterStats {
                target_delay_ms: cfg.min_delay_ms,
                ..JitterStats::default()
            },
        })
    }

    /// Counters and delay estimates.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.jitter_ms = self.delay.jitter_us() / 1_000.0;
        s
    }

    /// Packets currently buffered.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no packet is buffered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forget the current stream (the caller saw the SSRC change): drop
    /// buffered packets without counting them, and start over with the next
    /// packet. Counters and the learned jitter statistics are kept.
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.used = false;
        }
        self.count = 0;
        for w in &mut self.seen {
            *w = 0;
        }
        self.delay.reset_reference();
        self.phase = Phase::Idle;
        self.audio_flowing = false;
        self.dry_ticks = 0;
    }

    /// Offer one received RTP packet.
    pub fn push(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> PushOutcome {
        if payload.len() > self.max_payload {
            self.stats.oversize += 1;
            return PushOutcome::Oversize;
        }
        let now_us = self.clock_us(now);
        if self.phase == Phase::Idle {
            self.start_stream(now_us, seq, timestamp, marker, payload);
            return PushOutcome::Accepted;
        }

        let udelta = seq.wrapping_sub(self.high_seq as u16);
        let ext_seq = if udelta < MAX_SEQ_JUMP {
            self.high_seq + i64::from(udelta)
        } else if udelta > u16::MAX - MAX_SEQ_JUMP {
            self.high_seq - (i64::from(u16::MAX - udelta) + 1)
        } else {
            return self.restart(now_us, seq, timestamp, marker, payload, PushOutcome::Reset);
        };
        let ext_ts = self.high_ts + i64::from(timestamp.wrapping_sub(self.high_ts as u32) as i32);
        let transit = now_us.saturating_sub(self.ts_to_us(ext_ts));

        // A new packet whose timestamp disagrees with its arrival time by far
        // more than any jitter (allowing 2 % skew over the time since the
        // previous newest packet) means the source changed. Older packets
        // (reordered, late, duplicates) are judged by sequence number only.
        if ext_seq > self.high_seq {
            let gap = now_us.saturating_sub(self.high_arrival_us).max(0);
            let allowed = self.ts_jump_limit_us.saturating_add(gap / 50);
            if transit.saturating_sub(self.high_transit).saturating_abs() > allowed {
                return self.restart(now_us, seq, timestamp, marker, payload, PushOutcome::Reset);
            }
        }

        if ext_seq < self.next_seq {
            if self.phase == Phase::Buffering
                && self.high_seq - ext_seq < self.cap as i64
                && !self.is_seen(ext_seq)
            {
                // Reordered packets around the start: play from the earliest.
                self.next_seq = ext_seq;
                self.play_ts = ext_ts;
                self.prev_ts = ext_ts - self.frame;
            } else {
                return self.late_packet(now_us, ext_seq, transit);
            }
        }
        if ext_seq >= self.next_seq + self.cap as i64 {
            return self.restart(
                now_us,
                seq,
                timestamp,
                marker,
                payload,
                PushOutcome::TooEarly,
            );
        }
        if self.is_seen(ext_seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        if ext_seq > self.high_seq {
            self.high_transit = transit;
            self.high_arrival_us = now_us;
        }
        self.note_arrival(now_us, transit);
        self.store(ext_seq, ext_ts, timestamp, marker, payload);
        PushOutcome::Accepted
    }

    /// Produce the frame for this 20 ms tick; a [`Playout::Packet`]'s
    /// payload is copied into `out`, which should hold `max_payload_bytes`.
    pub fn pop(&mut self, now: Instant, out: &mut [u8]) -> Playout {
        let now_us = self.clock_us(now);
        self.update_target();
        if self.phase == Phase::Idle {
            return Playout::Empty;
        }
        self.ticks_since_action = self.ticks_since_action.saturating_add(1);
        self.settle(now_us);
        let half = self.frame / 2;

        if let Some(mut i) = self.slot_of(self.next_seq) {
            let ts = self.slots[i].ts;
            let delay = self.delay_of(now_us, ts);
            self.stats.current_delay_ms = ms(delay);
            if !self.audio_flowing || ts > self.play_ts + half {
                // First frame of the stream or of a talkspurt: play it when
                // its delay reaches the target. Waiting here, or starting
                // early in a silence gap, is how the delay is adjusted
                // without touching speech.
                if delay < self.start_delay_us() {
                    return self.wait();
                }
                self.phase = Phase::Playing;
                return self.emit(i, out);
            }
            let too_high = delay > self.target_us + self.frame_us + self.frame_us / 2;
            let too_low = delay < self.target_us - self.frame_us / 4;
            let may_act = self.ticks_since_action >= MIN_TICKS_BETWEEN_ACTIONS;
            if too_high && may_act {
                if let Some(j) = self.slot_of(self.next_seq + 1) {
                    if self.slots[j].ts <= ts + self.frame + half {
                        // Skip frame `i`; play `j` in its place.
                        self.remove(i);
                        self.advance();
                        self.stats.skipped_frames += 1;
                        self.ticks_since_action = 0;
                        i = j;
                    }
                }
            } else if too_low && may_act {
                // Stretch: conceal one frame and play this one next tick.
                self.ticks_since_action = 0;
                return self.conceal();
            }
            return self.emit(i, out);
        }

        if self.count > 0 {
            // `next_seq` is missing but later packets are here.
            let est = self.estimate_missing_ts();
            let delay = self.delay_of(now_us, est);
            self.stats.current_delay_ms = ms(delay);
            if (!self.audio_flowing || est > self.play_ts + half) && delay < self.start_delay_us() {
                return self.wait();
            }
            self.phase = Phase::Playing;
            self.stats.lost += 1;
            self.advance();
            self.prev_ts = est;
            self.play_ts = est + self.frame;
            return self.conceal();
        }

        // Dry: nothing buffered. Keep the media clock running; `next_seq`
        // stays so that a silence gap's first packet is not taken as loss.
        self.stats.current_delay_ms = ms(self.delay_of(now_us, self.play_ts));
        self.play_ts += self.frame;
        self.dry_ticks = self.dry_ticks.saturating_add(1);
        if self.audio_flowing && self.dry_ticks <= DRY_CONCEAL_FRAMES {
            self.conceal()
        } else {
            self.wait()
        }
    }

    // ---- push helpers ----

    fn start_stream(
        &mut self,
        now_us: i64,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        self.delay.reset_reference();
        let ext_seq = i64::from(seq);
        let ext_ts = i64::from(timestamp);
        self.next_seq = ext_seq;
        self.high_seq = ext_seq;
        self.high_ts = ext_ts;
        self.play_ts = ext_ts;
        self.prev_ts = ext_ts - self.frame;
        self.phase = Phase::Buffering;
        self.audio_flowing = false;
        self.dry_ticks = 0;
        let transit = now_us.saturating_sub(self.ts_to_us(ext_ts));
        self.high_transit = transit;
        self.high_arrival_us = now_us;
        self.note_arrival(now_us, transit);
        self.store(ext_seq, ext_ts, timestamp, marker, payload);
    }

    /// Drop the current stream and start a new one at this packet.
    fn restart(
        &mut self,
        now_us: i64,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        outcome: PushOutcome,
    ) -> PushOutcome {
        if outcome == PushOutcome::TooEarly {
            self.stats.discarded_overflow += self.count as u64;
            // Sequence numbers skipped without ever arriving are lost.
            let target = self.high_seq + i64::from(seq.wrapping_sub(self.high_seq as u16));
            let skipped = (target - self.next_seq).max(0) as u64;
            self.stats.lost += skipped.saturating_sub(self.count as u64);
        }
        self.stats.resets += 1;
        self.reset();
        self.start_stream(now_us, seq, timestamp, marker, payload);
        outcome
    }

    fn late_packet(&mut self, now_us: i64, ext_seq: i64, transit: i64) -> PushOutcome {
        let behind = self.next_seq - ext_seq;
        if behind <= DUP_HISTORY as i64 {
            if self.is_seen(ext_seq) {
                self.stats.duplicates += 1;
                return PushOutcome::Duplicate;
            }
            self.set_seen(ext_seq);
            // It was counted lost when its frame time passed.
            self.stats.lost = self.stats.lost.saturating_sub(1);
        }
        self.stats.late += 1;
        self.note_arrival(now_us, transit);
        PushOutcome::TooLate
    }

    fn note_arrival(&mut self, now_us: i64, transit: i64) {
        if self.delay.last_transit().is_some()
            && now_us.saturating_sub(self.last_arrival_us) > REFERENCE_GAP_US
        {
            self.delay.reset_reference();
        }
        self.last_arrival_us = now_us;
        self.stats.received += 1;
        self.delay.observe(now_us, transit);
    }

    fn store(&mut self, ext_seq: i64, ext_ts: i64, rtp_ts: u32, marker: bool, payload: &[u8]) {
        let i = self.index(ext_seq);
        let start = i * self.max_payload;
        if let Some(dst) = self.payloads.get_mut(start..start + payload.len()) {
            dst.copy_from_slice(payload);
        }
        let slot = &mut self.slots[i];
        if !slot.used {
            self.count += 1;
        }
        *slot = Slot {
            used: true,
            marker,
            len: payload.len() as u16,
            rtp_ts,
            seq: ext_seq,
            ts: ext_ts,
        };
        self.set_seen(ext_seq);
        if ext_seq > self.high_seq {
            self.high_seq = ext_seq;
            self.high_ts = ext_ts;
        }
    }

    // ---- pop helpers ----

    /// Count passed losses, and re-anchor on (or discard) overdue packets.
    fn settle(&mut self, now_us: i64) {
        let half = self.frame / 2;
        for _ in 0..=self.cap {
            if let Some(i) = self.slot_of(self.next_seq) {
                let ts = self.slots[i].ts;
                if ts >= self.play_ts - half {
                    return;
                }
                // Its frame time has passed (we concealed it). Play it late,
                // growing the delay, unless that exceeds the maximum.
                if self.delay_of(now_us, ts) <= self.max_delay_us {
                    self.play_ts = ts;
                    return;
                }
                self.remove(i);
                self.advance();
                self.prev_ts = ts;
                self.stats.late += 1;
            } else if self.count > 0 {
                let est = self.estimate_missing_ts();
                if est >= self.play_ts - half {
                    return;
                }
                self.stats.lost += 1;
                self.advance();
                self.prev_ts = est;
            } else {
                return;
            }
        }
    }

    /// Timestamp the missing packet `next_seq` would have had.
    fn estimate_missing_ts(&self) -> i64 {
        let Some(later) = self.first_after(self.next_seq) else {
            return self.prev_ts + self.frame;
        };
        if later.marker {
            // A talkspurt starts at `later`: the missing packets ended the
            // previous one.
            self.prev_ts + self.frame
        } else {
            later.ts - (later.seq - self.next_seq) * self.frame
        }
    }

    /// Nothing to play this tick (stream start, silence gap, dry buffer).
    fn wait(&mut self) -> Playout {
        self.audio_flowing = false;
        if self.phase == Phase::Buffering {
            Playout::Buffering
        } else {
            Playout::Empty
        }
    }

    fn emit(&mut self, i: usize, out: &mut [u8]) -> Playout {
        let slot = self.slots[i];
        self.remove(i);
        self.advance();
        self.prev_ts = slot.ts;
        self.play_ts = slot.ts + self.frame;
        let len = usize::from(slot.len);
        let start = i * self.max_payload;
        match (out.get_mut(..len), self.payloads.get(start..start + len)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                self.dry_ticks = 0;
                self.audio_flowing = true;
                Playout::Packet {
                    len,
                    timestamp: slot.rtp_ts,
                }
            }
            _ => {
                self.stats.oversize += 1;
                self.conceal()
            }
        }
    }

    fn conceal(&mut self) -> Playout {
        self.stats.concealed_frames += 1;
        Playout::Lost
    }

    /// Delay at which a talkspurt (or the stream) starts playing: the
    /// target, plus, for a slow sender, the drift expected over 2 s of
    /// speech (at most half a frame), so that the delay does not sink
    /// below the target before the next silence.
    fn start_delay_us(&self) -> i64 {
        let drift = (self.delay.skew().max(0.0) * 2_000_000.0) as i64;
        self.target_us + drift.min(self.frame_us / 2)
    }

    fn update_target(&mut self) {
        let q = self.delay.quantile_us(QUANTILE).unwrap_or(0);
        self.target_us = q.clamp(self.min_delay_us, self.max_delay_us);
        self.stats.target_delay_ms = ms(self.target_us);
    }

    // ---- ring and bookkeeping ----

    fn index(&self, ext_seq: i64) -> usize {
        ext_seq.rem_euclid(self.cap as i64) as usize
    }

    fn slot_of(&self, ext_seq: i64) -> Option<usize> {
        let i = self.index(ext_seq);
        let s = &self.slots[i];
        (s.used && s.seq == ext_seq).then_some(i)
    }

    fn first_after(&self, ext_seq: i64) -> Option<Slot> {
        let mut s = ext_seq + 1;
        while s <= self.high_seq && s < ext_seq + self.cap as i64 {
            if let Some(i) = self.slot_of(s) {
                return Some(self.slots[i]);
            }
            s += 1;
        }
        None
    }

    fn remove(&mut self, i: usize) {
        if self.slots[i].used {
            self.slots[i].used = false;
            self.count -= 1;
        }
    }

    /// Move the playout point one sequence number on, keeping the received
    /// flags valid for the window `[next_seq - DUP_HISTORY, next_seq + cap)`.
    fn advance(&mut self) {
        self.next_seq += 1;
        let top = self.next_seq + self.cap as i64 - 1;
        if top > self.high_seq {
            self.clear_seen(top);
        }
    }

    fn bit(&self, ext_seq: i64) -> (usize, u64) {
        let bits = (self.seen.len() * 64) as i64;
        let b = ext_seq.rem_euclid(bits) as usize;
        (b / 64, 1u64 << (b % 64))
    }

    fn is_seen(&self, ext_seq: i64) -> bool {
        let (w, m) = self.bit(ext_seq);
        self.seen[w] & m != 0
    }

    fn set_seen(&mut self, ext_seq: i64) {
        let (w, m) = self.bit(ext_seq);
        self.seen[w] |= m;
    }

    fn clear_seen(&mut self, ext_seq: i64) {
        let (w, m) = self.bit(ext_seq);
        self.seen[w] &= !m;
    }

    // ---- time ----

    fn clock_us(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.checked_duration_since(epoch)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    fn ts_to_us(&self, ts: i64) -> i64 {
        let us = i128::from(ts) * 1_000_000 / i128::from(self.clock_rate);
        us.clamp(i128::from(i64::MIN / 4), i128::from(i64::MAX / 4)) as i64
    }

    /// Playout delay of the frame with extended timestamp `ts` if played at
    /// `now_us`: the time since it would have arrived over the fastest path.
    fn delay_of(&self, now_us: i64, ts: i64) -> i64 {
        now_us
            .saturating_sub(self.ts_to_us(ts))
            .saturating_sub(self.delay.reference(now_us).unwrap_or(0))
    }
}

fn ms(us: i64) -> u32 {
    u32::try_from(us.max(0) / 1_000).unwrap_or(u32::MAX)
}
