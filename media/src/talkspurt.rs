//! Silence suppression on the sending side: when to hold the outgoing stream between
//! talkspurts, when a held stream must send a keep-alive, and the RTP timestamp a new
//! talkspurt starts at.
//!
//! A continuous stream can only carry a reply in its next 20 ms slot: the receiver plays
//! packets on the stream's timeline, so an early packet would not be heard sooner. A held
//! stream has no timeline to keep: the next talkspurt starts (marker bit set, RFC 3551 §4.1)
//! the moment its audio is ready, with the timestamp the real elapsed time gives it, and the
//! receiver's jitter buffer re-anchors its playout on it. That removes up to a tick from
//! every reply's latency, and the packets of silence from every listening period.
//!
//! While held, one packet of encoded silence goes out every `keepalive` (RFC 6263's RTP
//! keep-alive with the negotiated codec), so NAT bindings and carriers' media-inactivity
//! timers stay open.

use std::time::{Duration, Instant};

/// Frames of silence sent after the queued audio runs out before the stream is held: the
/// resampler's delay still holds the last few ms of the reply, and a receiver's concealment
/// then starts from silence.
pub const HANGOVER_FRAMES: u32 = 5;

/// How the sending side treats silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkspurtConfig {
    /// Hold the stream between talkspurts (false: a continuous stream of 20 ms packets).
    pub suppress_silence: bool,
    /// While held, one packet of silence this often; zero sends none.
    pub keepalive: Duration,
}

impl Default for TalkspurtConfig {
    fn default() -> Self {
        TalkspurtConfig {
            suppress_silence: false,
            keepalive: Duration::from_secs(5),
        }
    }
}

/// The sending side's talkspurt state, sans I/O: the session asks it what to do and tells it
/// what it sent.
#[derive(Debug, Clone)]
pub struct Talkspurts {
    config: TalkspurtConfig,
    holding: bool,
    silent_frames: u32,
    last_sent: Option<Instant>,
    clock_rate: u32,
    /// An instant and the RTP timestamp of audio sampled then: the stream's clock.
    anchor: (Instant, u32),
}

impl Talkspurts {
    /// A stream whose first packet would carry `first_ts`, starting at `now`. A suppressing
    /// stream starts held: it sends when there is audio (or a keep-alive is due).
    pub fn new(config: TalkspurtConfig, now: Instant, clock_rate: u32, first_ts: u32) -> Self {
        Talkspurts {
            config,
            holding: config.suppress_silence,
            silent_frames: 0,
            last_sent: None,
            clock_rate,
            anchor: (now, first_ts),
        }
    }

    /// True while the stream is held (nothing is sent but keep-alives).
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// The codec changed: its clock restarts from the stream's next timestamp.
    pub fn set_clock(&mut self, now: Instant, clock_rate: u32, next_ts: u32) {
        self.clock_rate = clock_rate;
        self.anchor = (now, next_ts);
    }

    /// The RTP timestamp of audio sampled at `now`, on the stream's clock.
    pub fn ts_at(&self, now: Instant) -> u32 {
        let (at, ts) = self.anchor;
        let elapsed = now.saturating_duration_since(at).as_micros();
        let ticks = elapsed * u128::from(self.clock_rate) / 1_000_000;
        ts.wrapping_add(ticks as u32)
    }

    /// How far `now` is past the end of what was sent (`next_ts` is the timestamp the next
    /// packet would carry), in clock ticks; negative while the last packet's audio is still
    /// playing on the receiver's timeline.
    fn lead(&self, now: Instant, next_ts: u32) -> i32 {
        self.ts_at(now).wrapping_sub(next_ts) as i32
    }

    /// A held stream may start a talkspurt between ticks only once the audio it last sent
    /// has ended on its timeline (otherwise the next tick starts it, in its slot).
    pub fn can_start_now(&self, now: Instant, next_ts: u32) -> bool {
        self.holding && self.lead(now, next_ts) >= 0
    }

    /// A talkspurt (or a keep-alive packet) starts at `now`: returns how many clock ticks
    /// the timestamp skips over the held time.
    pub fn start(&mut self, now: Instant, next_ts: u32) -> u32 {
        self.holding = false;
        self.silent_frames = 0;
        self.lead(now, next_ts).max(0) as u32
    }

    /// A held stream owes a keep-alive packet at `now`.
    pub fn keepalive_due(&self, now: Instant) -> bool {
        self.holding
            && !self.config.keepalive.is_zero()
            && self
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= self.config.keepalive)
    }

    /// A keep-alive packet went out at `now`; the stream stays held.
    pub fn keepalive_sent(&mut self, now: Instant) {
        self.holding = true;
        self.silent_frames = 0;
        self.last_sent = Some(now);
    }

    /// A frame was sent at `now`; `silent` when it carried no queued audio or DTMF. Returns
    /// true when this frame ends the talkspurt and the stream is now held.
    pub fn frame_sent(&mut self, now: Instant, silent: bool) -> bool {
        self.last_sent = Some(now);
        if !silent {
            self.silent_frames = 0;
            return false;
        }
        self.silent_frames += 1;
        if self.config.suppress_silence && !self.holding && self.silent_frames >= HANGOVER_FRAMES {
            self.holding = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn suppressing() -> TalkspurtConfig {
        TalkspurtConfig {
            suppress_silence: true,
            keepalive: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_continuous_stream_is_never_held() {
        let t0 = Instant::now();
        let mut t = Talkspurts::new(TalkspurtConfig::default(), t0, 8000, 0);
        assert!(!t.holding());
        for i in 0..100 {
            assert!(!t.frame_sent(t0 + MS * 20 * i, true));
        }
        assert!(!t.holding());
        assert!(!t.keepalive_due(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn silence_after_the_hangover_holds_the_stream() {
        let t0 = Instant::now();
        let mut t = Talkspurts::new(suppressing(), t0, 8000, 1000);
        assert!(t.holding(), "nothing to say yet");
        assert_eq!(t.start(t0, 1000), 0);
        assert!(!t.frame_sent(t0, false));
        for i in 1..HANGOVER_FRAMES {
            assert!(!t.frame_sent(t0 + MS * 20 * i, true), "frame {i}");
        }
        assert!(t.frame_sent(t0 + MS * 20 * HANGOVER_FRAMES, true));
        assert!(t.holding());
    }

    #[test]
    fn a_talkspurt_starts_on_the_real_clock_but_never_inside_the_last_packet() {
        let t0 = Instant::now();
        let mut t = Talkspurts::new(suppressing(), t0, 8000, 1000);
        // 300 ms later, with nothing sent: 2400 ticks of held time.
        let now = t0 + MS * 300;
        assert!(t.can_start_now(now, 1000));
        assert_eq!(t.start(now, 1000), 2400);
        // One packet went out (timestamps 3400..3560), then the stream is held again.
        t.keepalive_sent(now);
        // 7 ms later that packet's audio is still playing: wait for the slot.
        assert!(!t.can_start_now(now + MS * 7, 3560));
        assert!(t.can_start_now(now + MS * 20, 3560));
        // A start forced by the tick while still inside the packet skips nothing.
        assert_eq!(t.start(now + MS * 7, 3560), 0);
    }

    #[test]
    fn keepalives_come_every_interval_while_held() {
        let t0 = Instant::now();
        let mut t = Talkspurts::new(suppressing(), t0, 8000, 0);
        assert!(t.keepalive_due(t0), "the first packet opens the path");
        t.start(t0, 0);
        t.keepalive_sent(t0);
        assert!(!t.keepalive_due(t0 + Duration::from_millis(4999)));
        assert!(t.keepalive_due(t0 + Duration::from_secs(5)));
        let off = TalkspurtConfig {
            keepalive: Duration::ZERO,
            ..suppressing()
        };
        assert!(!Talkspurts::new(off, t0, 8000, 0).keepalive_due(t0 + Duration::from_secs(99)));
    }

    #[test]
    fn timestamps_wrap_and_follow_a_codec_change() {
        let t0 = Instant::now();
        let mut t = Talkspurts::new(suppressing(), t0, 8000, u32::MAX - 100);
        assert_eq!(t.ts_at(t0 + MS * 20), 59);
        t.set_clock(t0 + MS * 20, 48_000, 500);
        assert_eq!(t.ts_at(t0 + MS * 40), 500 + 960);
    }
}
