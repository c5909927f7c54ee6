//! DTMF digits: RFC 4733 telephone-events (receive and send) and in-band
//! tone detection with the Goertzel algorithm.
//!
//! Carriers deliver keypad digits either as RFC 4733 `telephone-event`
//! RTP packets or as plain audio tones inside the voice payload. Both paths
//! end in the same [`DtmfEvent`], reported **once per key press, when the
//! press ends**, with its duration. Reporting at the end (rather than at the
//! first packet) gives the call layer the duration and a single, final
//! answer; the cost is the press length in latency, which does not matter
//! for menus or an AI agent collecting digits.
//!
//! Everything here is sans-I/O and allocation-free: packets and samples are
//! passed in, events come out, and no clock is read.

use thiserror::Error;

/// Keypad characters in RFC 4733 event-code order (events 0..=15).
const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// One key press, from either RFC 4733 packets or in-band tones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// `'0'..='9'`, `'*'`, `'#'` or `'A'..='D'`.
    pub digit: char,
    /// How long the key was held, in milliseconds (the best estimate
    /// available when the event was reported).
    pub duration_ms: u32,
}

/// Invalid arguments to a DTMF sender or detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// The character is not a DTMF key.
    #[error("{0:?} is not a DTMF digit (expected 0-9, *, #, A-D)")]
    UnknownDigit(char),
    /// The duration is zero or does not fit the 16-bit RFC 4733 field.
    #[error("DTMF duration {duration_ms} ms out of range 1..={max_ms} ms at this clock rate")]
    BadDuration {
        /// The requested duration.
        duration_ms: u32,
        /// The longest duration one RFC 4733 event can carry.
        max_ms: u32,
    },
    /// The clock or sample rate is outside 4000..=192000 Hz.
    #[error("rate {0} Hz out of range 4000..=192000")]
    BadRate(u32),
}

/// Map an RFC 4733 event code to its keypad character (events 0..=15).
pub fn event_to_digit(event: u8) -> Option<char> {
    DIGITS.get(usize::from(event)).copied()
}

/// Map a keypad character to its RFC 4733 event code. Accepts lowercase
/// `a`..=`d` as well.
pub fn digit_to_event(digit: char) -> Option<u8> {
    let upper = digit.to_ascii_uppercase();
    DIGITS.iter().position(|&d| d == upper).map(|i| i as u8)
}

fn check_rate(rate: u32) -> Result<(), DtmfError> {
    if (4000..=192_000).contains(&rate) {
        Ok(())
    } else {
        Err(DtmfError::BadRate(rate))
    }
}

fn ticks_to_ms(ticks: u32, rate: u32) -> u32 {
    (u64::from(ticks) * 1000 / u64::from(rate.max(1))) as u32
}

// ---------------------------------------------------------------------------
// RFC 4733 receive
// ---------------------------------------------------------------------------

/// The event being tracked: identified by its RTP timestamp, which RFC 4733
/// keeps fixed for every packet of one event.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    timestamp: u32,
    event: u8,
    duration: u16,
    ended: bool,
    reported: bool,
}

/// Turns a stream of RFC 4733 telephone-event payloads into one
/// [`DtmfEvent`] per key press.
///
/// # When a digit is reported
///
/// At the first packet with the End bit for its event timestamp, with the
/// duration from that packet. The two further retransmissions of the end
/// packet (and any late updates) are recognised by their timestamp and
/// ignored. If every end packet is lost, the digit is reported when the
/// next event starts (a packet with a newer timestamp), with the longest
/// duration seen, or when [`expire`](Self::expire) /
/// [`flush`](Self::flush) is called. A lost start packet does not matter:
/// any packet of a new timestamp opens the event.
///
/// Packets whose timestamp is older than the tracked event (reordered
/// leftovers) are ignored unless they carry the marker bit, which a sender
/// sets only on the first packet of a new event. Payloads shorter than
/// 4 octets, not a multiple of 4 octets, or with an event code above 15
/// (not a DTMF key) are ignored. Only the first 4-octet block of a payload
/// is read: it is the block the packet's timestamp belongs to. A key held
/// past the 16-bit duration field (8.19 s at 8 kHz) is sent as segments
/// with new timestamps (RFC 4733 §2.5.2.3); each segment is reported as a
/// digit of its own.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    clock_rate: u32,
    current: Option<Tracked>,
}

impl Default for DtmfReceiver {
    /// A receiver for the default telephone-event clock of 8000 Hz.
    fn default() -> Self {
        DtmfReceiver {
            clock_rate: 8000,
            current: None,
        }
    }
}

impl DtmfReceiver {
    /// A receiver for a telephone-event stream with the given RTP clock
    /// rate (the `rate` of the SDP `telephone-event/RATE`, usually 8000).
    pub fn new(clock_rate: u32) -> Result<Self, DtmfError> {
        check_rate(clock_rate)?;
        Ok(DtmfReceiver {
            clock_rate,
            current: None,
        })
    }

    /// Feed one telephone-event RTP packet: its header timestamp and marker
    /// bit, and its payload. Returns a digit when one is complete.
    pub fn on_packet(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<DtmfEvent> {
        if payload.len() < 4 || !payload.len().is_multiple_of(4) {
            return None;
        }
        let event = payload[0];
        if event > 15 {
            return None;
        }
        let ended = payload[1] & 0x80 != 0;
        let duration = u16::from_be_bytes([payload[2], payload[3]]);

        if let Some(cur) = self.current.as_mut() {
            if timestamp == cur.timestamp {
                if event != cur.event {
                    // Two different keys cannot share one event timestamp.
                    return None;
                }
                cur.duration = cur.duration.max(duration);
                cur.ended |= ended;
                if cur.ended && !cur.reported {
                    cur.reported = true;
                    return Some(to_event(*cur, self.clock_rate));
                }
                return None;
            }
            let newer = (timestamp.wrapping_sub(cur.timestamp) as i32) > 0;
            if !newer && !marker {
                return None;
            }
        }

        // A new event. Anything still unreported about the old one is
        // reported now; the new one then waits for a further end packet
        // (or `flush`) if it also arrived already ended.
        let previous = self.current.filter(|c| !c.reported);
        let mut fresh = Tracked {
            timestamp,
            event,
            duration,
            ended,
            reported: false,
        };
        let out = if let Some(prev) = previous {
            Some(self.event_of(prev))
        } else if ended {
            fresh.reported = true;
            Some(self.event_of(fresh))
        } else {
            None
        };
        self.current = Some(fresh);
        out
    }

    /// Report the tracked event if it is still unreported and the RTP clock
    /// (`rtp_timestamp`, e.g. from the audio packets that resumed after the
    /// event) has moved more than 100 ms past its last known end. Use this
    /// to recover a digit whose three end packets were all lost.
    pub fn expire(&mut self, rtp_timestamp: u32) -> Option<DtmfEvent> {
        let cur = self.current?;
        if cur.reported {
            return None;
        }
        let end = cur.timestamp.wrapping_add(u32::from(cur.duration));
        let past = rtp_timestamp.wrapping_sub(end) as i32;
        if past > (self.clock_rate / 10) as i32 {
            self.flush()
        } else {
            None
        }
    }

    /// Report the tracked event now if it has not been reported (end of
    /// stream, SSRC change, hang-up).
    pub fn flush(&mut self) -> Option<DtmfEvent> {
        let cur = self.current.as_mut()?;
        if cur.reported {
            return None;
        }
        cur.reported = true;
        let c = *cur;
        Some(self.event_of(c))
    }

    /// Forget all state, e.g. when the sender's SSRC changes. Call
    /// [`flush`](Self::flush) first to keep an unfinished digit.
    pub fn reset(&mut self) {
        self.current = None;
    }

    fn event_of(&self, t: Tracked) -> DtmfEvent {
        to_event(t, self.clock_rate)
    }
}

fn to_event(t: Tracked, clock_rate: u32) -> DtmfEvent {
    DtmfEvent {
        digit: event_to_digit(t.event).unwrap_or('?'),
        duration_ms: ticks_to_ms(u32::from(t.duration), clock_rate),
    }
}

// ---------------------------------------------------------------------------
// RFC 4733 send
// ---------------------------------------------------------------------------

/// One telephone-event payload to send, with its RTP marker bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The 4-octet payload: event, E|R|volume, duration (big-endian).
    pub payload: [u8; 4],
    /// RTP marker bit: set on the first packet of the event only.
    pub marker: bool,
    /// True for the (three) packets carrying the End bit.
    pub end: bool,
}

/// Produces the RFC 4733 packets for one key press.
///
/// The sequence is: a first packet with the marker bit, one update per
/// packet interval (20 ms) with the duration so far, then the final
/// duration with the End bit three times. Every packet of the event carries
/// the **same RTP timestamp** (the event's start): with
/// [`RtpSender`](crate::rtp::RtpSender), switch to the negotiated payload
/// type, call `next_header(0, packet.marker)` for each packet, then
/// `skip_samples(sender.duration_samples())` before audio resumes. Send one
/// packet every [`packet_ms`](Self::packet_ms), the end packets included,
/// so that a short burst of loss cannot take all three.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    event: u8,
    volume: u8,
    total: u16,
    step: u32,
    elapsed: u32,
    ends_sent: u8,
    started: bool,
    rate: u32,
}

impl DtmfSender {
    /// Volume sent when none is set: 10 (meaning −10 dBm0).
    pub const DEFAULT_VOLUME: u8 = 10;
    /// Interval between packets, in milliseconds.
    pub const PACKET_MS: u32 = 20;

    /// A press of `digit` lasting `duration_ms` on the 8000 Hz
    /// telephone-event clock.
    pub fn new(digit: char, duration_ms: u32) -> Result<Self, DtmfError> {
        Self::with_clock_rate(digit, duration_ms, 8000)
    }

    /// A press of `digit` lasting `duration_ms` on a telephone-event clock
    /// of `clock_rate` Hz. The duration must be at least 1 ms and fit the
    /// 16-bit duration field (8191 ms at 8000 Hz).
    pub fn with_clock_rate(
        digit: char,
        duration_ms: u32,
        clock_rate: u32,
    ) -> Result<Self, DtmfError> {
        check_rate(clock_rate)?;
        let event = digit_to_event(digit).ok_or(DtmfError::UnknownDigit(digit))?;
        let max_ms = ticks_to_ms(u32::from(u16::MAX), clock_rate);
        if duration_ms == 0 || duration_ms > max_ms {
            return Err(DtmfError::BadDuration {
                duration_ms,
                max_ms,
            });
        }
        let total = (u64::from(duration_ms) * u64::from(clock_rate) / 1000).max(1) as u16;
        Ok(DtmfSender {
            event,
            volume: Self::DEFAULT_VOLUME,
            total,
            step: clock_rate * Self::PACKET_MS / 1000,
            elapsed: 0,
            ends_sent: 0,
            started: false,
            rate: clock_rate,
        })
    }

    /// Set the volume field: the tone power in −dBm0, 0..=63 (clamped).
    pub fn set_volume(&mut self, minus_dbm0: u8) {
        self.volume = minus_dbm0.min(63);
    }

    /// The event's length in RTP clock ticks: how far the stream's
    /// timestamp must advance once the event is over.
    pub fn duration_samples(&self) -> u32 {
        u32::from(self.total)
    }

    /// Interval between packets in milliseconds.
    pub fn packet_ms(&self) -> u32 {
        Self::PACKET_MS
    }

    /// RTP clock rate the durations are expressed in.
    pub fn clock_rate(&self) -> u32 {
        self.rate
    }

    /// True once all packets (including the three end packets) were taken.
    pub fn is_done(&self) -> bool {
        self.ends_sent >= 3
    }

    /// The next packet to send, or `None` when the event is complete.
    pub fn next_packet(&mut self) -> Option<DtmfPacket> {
        if self.is_done() {
            return None;
        }
        let marker = !self.started;
        self.started = true;
        let total = u32::from(self.total);
        if self.ends_sent == 0 {
            self.elapsed = (self.elapsed + self.step).min(total);
        }
        let end = self.elapsed >= total;
        if end {
            self.ends_sent += 1;
        }
        let duration = self.elapsed as u16;
        let flags = if end { 0x80 } else { 0 } | self.volume;
        let [d0, d1] = duration.to_be_bytes();
        Some(DtmfPacket {
            payload: [self.event, flags, d0, d1],
            marker,
            end,
        })
    }
}

impl Iterator for DtmfSender {
    type Item = DtmfPacket;

    fn next(&mut self) -> Option<DtmfPacket> {
        self.next_packet()
    }
}

// ---------------------------------------------------------------------------
// In-band detection (Goertzel)
// ---------------------------------------------------------------------------

/// Row (low group) then column (high group) frequencies in Hz.
const TONES: [f64; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout: `KEYPAD[row][col]`.
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Analysis window at 8 kHz: 102 samples (12.75 ms) resolves the 73 Hz
/// spacing of the row tones; scaled with the sample rate.
const BLOCK_AT_8K: u64 = 102;
/// Weakest tone accepted, as mean power of a full-scale-normalised sine:
/// amplitude 0.01 (−40 dBFS, about −37 dBm0).
const MIN_TONE_POWER: f64 = 0.01 * 0.01 / 2.0;
/// Column tone may exceed the row tone by up to 8 dB (normal twist).
const NORMAL_TWIST: f64 = 6.309_573; // 10^(8/10)
/// Row tone may exceed the column tone by up to 4 dB (reverse twist).
const REVERSE_TWIST: f64 = 2.511_886; // 10^(4/10)
/// Each other tone of a group must be at least 8 dB below the group's peak.
const RELATIVE_PEAK: f64 = 6.309_573; // 10^(8/10)
/// The two tones must hold this share of the window's total energy.
const MIN_ENERGY_SHARE: f64 = 0.7;
/// Windows (at half-window hops) a tone must span: 5 hops ≈ 32 ms plus the
/// window, so any tone of 40 ms passes and none under 23 ms does.
const MIN_WINDOWS: u32 = 5;
/// Consecutive windows without the digit that end it.
const END_MISSES: u32 = 3;
/// Consecutive windows without any digit needed before a new digit starts.
const MIN_GAP_WINDOWS: u32 = 3;

/// One Goertzel filter bank over a window of samples.
#[derive(Debug, Clone, Copy, Default)]
struct Bank {
    s1: [f64; 8],
    s2: [f64; 8],
    energy: f64,
    count: u32,
    /// Samples still to skip before this bank starts (offsets the second
    /// bank by half a window).
    wait: u32,
}

/// Detects DTMF digits in PCM audio.
///
/// Two Goertzel banks for the 8 DTMF frequencies run over windows of
/// 102 samples at 8 kHz (scaled with the rate: 204 at 16 kHz), offset by
/// half a window, so a decision is made every 6.4 ms from 12.75 ms of
/// audio. A window holds a digit when:
///
/// * the strongest row tone and the strongest column tone are each above
///   −40 dBFS;
/// * twist is within limits: the column tone at most 8 dB above the row
///   tone (normal twist), the row tone at most 4 dB above the column tone
///   (reverse twist);
/// * every other tone of each group is at least 8 dB below that group's
///   peak;
/// * the two tones carry at least 70% of the window's energy (speech and
///   music spread their energy over many frequencies).
///
/// A digit is reported once it stops (3 windows without it) if it lasted
/// at least 5 windows (any tone of 40 ms or more; never one under 23 ms).
/// A new digit can start only after 3 windows with no digit at all, so one
/// long tone is never reported twice and digits need a gap between them.
#[derive(Debug, Clone)]
pub struct InbandDtmfDetector {
    rate: u32,
    block: u32,
    hop: u32,
    coeff: [f64; 8],
    banks: [Bank; 2],
    current: Option<char>,
    span: u32,
    misses: u32,
    quiet: u32,
}

impl InbandDtmfDetector {
    /// A detector for mono PCM at `sample_rate` Hz (4000..=192000).
    pub fn new(sample_rate: u32) -> Result<Self, DtmfError> {
        check_rate(sample_rate)?;
        let block = ((BLOCK_AT_8K * u64::from(sample_rate) + 4000) / 8000) as u32;
        let hop = block / 2;
        let mut coeff = [0.0; 8];
        for (c, f) in coeff.iter_mut().zip(TONES) {
            *c = 2.0 * (2.0 * std::f64::consts::PI * f / f64::from(sample_rate)).cos();
        }
        let second = Bank {
            wait: hop,
            ..Bank::default()
        };
        Ok(InbandDtmfDetector {
            rate: sample_rate,
            block,
            hop,
            coeff,
            banks: [Bank::default(), second],
            current: None,
            span: 0,
            misses: 0,
            quiet: MIN_GAP_WINDOWS,
        })
    }

    /// The sample rate given to [`new`](Self::new).
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Analysis window length in samples.
    pub fn block_len(&self) -> u32 {
        self.block
    }

    /// Feed a frame of any length; `on_digit` is called for every digit
    /// that ends inside it (at most a few per second of audio).
    pub fn process<F: FnMut(DtmfEvent)>(&mut self, samples: &[i16], mut on_digit: F) {
        for &s in samples {
            let x = f64::from(s) / 32768.0;
            for b in 0..2 {
                let bank = &mut self.banks[b];
                if bank.wait > 0 {
                    bank.wait -= 1;
                    continue;
                }
                for i in 0..8 {
                    let s0 = x + self.coeff[i] * bank.s1[i] - bank.s2[i];
                    bank.s2[i] = bank.s1[i];
                    bank.s1[i] = s0;
                }
                bank.energy += x * x;
                bank.count += 1;
                if bank.count >= self.block {
                    let hit = self.classify(b);
                    self.banks[b] = Bank::default();
                    if let Some(ev) = self.on_window(hit) {
                        on_digit(ev);
                    }
                }
            }
        }
    }

    /// Report a digit still sounding at the end of the audio, if it has
    /// already lasted long enough, and reset the digit state.
    pub fn flush(&mut self) -> Option<DtmfEvent> {
        let out = match self.current {
            Some(d) if self.span >= MIN_WINDOWS => Some(self.event(d)),
            _ => None,
        };
        self.current = None;
        self.span = 0;
        self.misses = 0;
        self.quiet = MIN_GAP_WINDOWS;
        out
    }

    /// The digit a finished window holds, if any.
    fn classify(&self, b: usize) -> Option<char> {
        let bank = &self.banks[b];
        let n = f64::from(self.block);
        let mut power = [0.0f64; 8];
        for (i, p) in power.iter_mut().enumerate() {
            let (s1, s2) = (bank.s1[i], bank.s2[i]);
            let mag2 = s1 * s1 + s2 * s2 - self.coeff[i] * s1 * s2;
            *p = 2.0 * mag2.max(0.0) / (n * n);
        }
        let energy = bank.energy / n;
        let (row, row_p) = peak(&power[..4]);
        let (col, col_p) = peak(&power[4..]);
        if row_p < MIN_TONE_POWER || col_p < MIN_TONE_POWER {
            return None;
        }
        if col_p > row_p * NORMAL_TWIST || row_p > col_p * REVERSE_TWIST {
            return None;
        }
        for (i, &p) in power[..4].iter().enumerate() {
            if i != row && p * RELATIVE_PEAK > row_p {
                return None;
            }
        }
        for (i, &p) in power[4..].iter().enumerate() {
            if i != col && p * RELATIVE_PEAK > col_p {
                return None;
            }
        }
        if row_p + col_p < MIN_ENERGY_SHARE * energy {
            return None;
        }
        Some(KEYPAD[row][col])
    }

    fn on_window(&mut self, hit: Option<char>) -> Option<DtmfEvent> {
        let mut out = None;
        match self.current {
            Some(d) if hit == Some(d) => {
                self.span += self.misses + 1;
                self.misses = 0;
            }
            Some(d) => {
                self.misses += 1;
                if self.misses >= END_MISSES {
                    if self.span >= MIN_WINDOWS {
                        out = Some(self.event(d));
                    }
                    self.current = None;
                    self.span = 0;
                    self.misses = 0;
                }
            }
            None => {
                if hit.is_some() && self.quiet >= MIN_GAP_WINDOWS {
                    self.current = hit;
                    self.span = 1;
                    self.misses = 0;
                }
            }
        }
        self.quiet = if hit.is_none() {
            self.quiet.saturating_add(1)
        } else {
            0
        };
        out
    }

    fn event(&self, digit: char) -> DtmfEvent {
        // `span` windows at `hop` spacing cover about (span + 1) hops of tone.
        let samples = (self.span + 1) * self.hop;
        DtmfEvent {
            digit,
            duration_ms: ticks_to_ms(samples, self.rate),
        }
    }
}

fn peak(p: &[f64]) -> (usize, f64) {
    let mut best = (0, 0.0);
    for (i, &v) in p.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 } else { 0 } | 10, d[0], d[1]]
    }

    /// Feed (marker, payload) packets at one timestamp, collect events.
    fn feed(rx: &mut DtmfReceiver, ts: u32, pkts: &[(bool, [u8; 4])]) -> Vec<DtmfEvent> {
        pkts.iter()
            .filter_map(|(m, p)| rx.on_packet(ts, *m, p))
            .collect()
    }

    fn press(event: u8, total: u16) -> Vec<(bool, [u8; 4])> {
        let mut v = Vec::new();
        let mut d = 160u16;
        let mut first = true;
        while d < total {
            v.push((first, pl(event, false, d)));
            first = false;
            d += 160;
        }
        for _ in 0..3 {
            v.push((first, pl(event, true, total)));
            first = false;
        }
        v
    }

    #[test]
    fn event_codes_map_to_keys() {
        let keys = "0123456789*#ABCD";
        for (code, key) in keys.chars().enumerate() {
            assert_eq!(event_to_digit(code as u8), Some(key));
            assert_eq!(digit_to_event(key), Some(code as u8));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        assert_eq!(event_to_digit(16), None);
        assert_eq!(digit_to_event('E'), None);
    }

    #[test]
    fn retransmitted_end_counts_once() {
        let mut rx = DtmfReceiver::default();
        let got = feed(&mut rx, 1000, &press(5, 800));
        assert_eq!(
            got,
            vec![DtmfEvent {
                digit: '5',
                duration_ms: 100
            }]
        );
        // A late duplicate of an end packet still does nothing.
        assert_eq!(rx.on_packet(1000, false, &pl(5, true, 800)), None);
        assert_eq!(rx.flush(), None);
    }

    #[test]
    fn reported_at_first_end_packet() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(7, true, &pl(11, false, 160)), None);
        assert_eq!(rx.on_packet(7, false, &pl(11, false, 320)), None);
        let ev = rx.on_packet(7, false, &pl(11, true, 400));
        assert_eq!(
            ev,
            Some(DtmfEvent {
                digit: '#',
                duration_ms: 50
            })
        );
    }

    #[test]
    fn lost_start_packet_still_reports() {
        let mut rx = DtmfReceiver::default();
        let mut pkts = press(1, 960);
        pkts.remove(0); // the marker packet is lost
        let got = feed(&mut rx, 5000, &pkts);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].digit, '1');
        assert_eq!(got[0].duration_ms, 120);
    }

    #[test]
    fn same_digit_twice_is_two_events() {
        let mut rx = DtmfReceiver::default();
        let mut got = feed(&mut rx, 1000, &press(9, 800));
        got.extend(feed(&mut rx, 2600, &press(9, 640)));
        let digits: Vec<_> = got.iter().map(|e| (e.digit, e.duration_ms)).collect();
        assert_eq!(digits, vec![('9', 100), ('9', 80)]);
    }

    #[test]
    fn all_ends_lost_reported_when_next_event_starts() {
        let mut rx = DtmfReceiver::default();
        let first: Vec<_> = press(3, 800)
            .into_iter()
            .filter(|(_, p)| p[1] & 0x80 == 0)
            .collect();
        assert!(feed(&mut rx, 1000, &first).is_empty());
        let mut second = press(4, 480);
        let ev = rx.on_packet(3000, second[0].0, &second[0].1);
        assert_eq!(
            ev,
            Some(DtmfEvent {
                digit: '3',
                duration_ms: 80
            })
        );
        second.remove(0);
        let got = feed(&mut rx, 3000, &second);
        assert_eq!(got.iter().map(|e| e.digit).collect::<String>(), "4");
    }

    #[test]
    fn all_ends_lost_then_expire_or_flush() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(100, true, &pl(0, false, 160)), None);
        assert_eq!(rx.on_packet(100, false, &pl(0, false, 320)), None);
        // Audio resumes 50 ms after the last known end: too early.
        assert_eq!(rx.expire(100 + 320 + 400), None);
        let ev = rx.expire(100 + 320 + 1000).expect("expired digit");
        assert_eq!(ev.digit, '0');
        assert_eq!(rx.flush(), None);

        rx.on_packet(9000, true, &pl(12, false, 160));
        assert_eq!(rx.flush().map(|e| e.digit), Some('A'));
        assert_eq!(rx.flush(), None);
    }

    #[test]
    fn new_event_arriving_already_ended_after_unfinished_one() {
        let mut rx = DtmfReceiver::default();
        rx.on_packet(0, true, &pl(1, false, 160));
        // Event 1's ends and event 2's updates are all lost.
        assert_eq!(
            rx.on_packet(2000, false, &pl(2, true, 800))
                .map(|e| e.digit),
            Some('1')
        );
        assert_eq!(
            rx.on_packet(2000, false, &pl(2, true, 800))
                .map(|e| e.digit),
            Some('2')
        );
        assert_eq!(rx.on_packet(2000, false, &pl(2, true, 800)), None);
    }

    #[test]
    fn reordered_old_packet_is_ignored() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(feed(&mut rx, 1000, &press(7, 800)).len(), 1);
        assert!(feed(&mut rx, 3000, &press(8, 800)[..2]).is_empty());
        // A straggler from the first event arrives late.
        assert_eq!(rx.on_packet(1000, false, &pl(7, true, 800)), None);
        let got = feed(&mut rx, 3000, &press(8, 800)[2..]);
        assert_eq!(got.iter().map(|e| e.digit).collect::<String>(), "8");
    }

    #[test]
    fn timestamp_wrap_is_a_newer_event() {
        let mut rx = DtmfReceiver::default();
        let ts1 = u32::MAX - 100;
        assert_eq!(feed(&mut rx, ts1, &press(6, 800)).len(), 1);
        let got = feed(&mut rx, ts1.wrapping_add(2000), &press(6, 800));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn malformed_payloads_are_ignored() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(1, true, &[]), None);
        assert_eq!(rx.on_packet(1, true, &[5, 0x80, 0]), None);
        assert_eq!(rx.on_packet(1, true, &[5, 0x80, 0, 160, 0]), None);
        assert_eq!(rx.on_packet(1, true, &[16, 0x80, 0, 160]), None); // flash
        assert_eq!(rx.on_packet(1, true, &[200, 0x80, 0, 160]), None);
        assert_eq!(rx.flush(), None);
        // A conflicting code at the tracked timestamp is ignored.
        rx.on_packet(50, true, &pl(2, false, 160));
        assert_eq!(rx.on_packet(50, false, &pl(3, true, 320)), None);
        assert_eq!(
            rx.on_packet(50, false, &pl(2, true, 320)).map(|e| e.digit),
            Some('2')
        );
        // Arbitrary bytes never panic.
        let mut seed = 1u32;
        for len in 0..40 {
            let mut buf = [0u8; 40];
            for b in buf.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (seed >> 16) as u8;
            }
            let _ = rx.on_packet(seed, seed & 1 == 0, &buf[..len]);
        }
    }

    #[test]
    fn sender_sequence_shape() {
        let pkts: Vec<_> = DtmfSender::new('#', 100).unwrap().collect();
        // 100 ms = 800 ticks: updates at 160..=640, then 3 ends at 800.
        assert_eq!(pkts.len(), 7);
        assert!(pkts[0].marker);
        assert!(pkts[1..].iter().all(|p| !p.marker));
        let durs: Vec<u16> = pkts
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durs, vec![160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = pkts.iter().map(|p| p.end).collect();
        assert_eq!(ends, vec![false, false, false, false, true, true, true]);
        for p in &pkts {
            assert_eq!(p.payload[0], 11);
            assert_eq!(p.payload[1] & 0x80 != 0, p.end);
            assert_eq!(p.payload[1] & 0x40, 0, "reserved bit must be zero");
            assert_eq!(p.payload[1] & 0x3F, 10);
        }
    }

    #[test]
    fn sender_short_and_odd_durations() {
        let mut s = DtmfSender::new('1', 10).unwrap();
        let p = s.next_packet().unwrap();
        assert!(p.marker && p.end);
        assert_eq!(u16::from_be_bytes([p.payload[2], p.payload[3]]), 80);
        assert_eq!(s.by_ref().count(), 2);
        assert!(s.is_done());
        assert_eq!(s.next_packet(), None);

        let pkts: Vec<_> = DtmfSender::with_clock_rate('D', 50, 16000)
            .unwrap()
            .collect();
        let durs: Vec<u16> = pkts
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durs, vec![320, 640, 800, 800, 800]);
    }

    #[test]
    fn sender_rejects_bad_arguments() {
        assert_eq!(
            DtmfSender::new('x', 100).unwrap_err(),
            DtmfError::UnknownDigit('x')
        );
        assert!(matches!(
            DtmfSender::new('1', 0),
            Err(DtmfError::BadDuration { .. })
        ));
        assert!(matches!(
            DtmfSender::new('1', 8200),
            Err(DtmfError::BadDuration { .. })
        ));
        assert!(DtmfSender::new('1', 8191).is_ok());
        assert_eq!(
            DtmfSender::with_clock_rate('1', 100, 0).unwrap_err(),
            DtmfError::BadRate(0)
        );
        assert!(DtmfReceiver::new(100).is_err());
        assert!(InbandDtmfDetector::new(1000).is_err());
    }

    #[test]
    fn send_receive_round_trip() {
        let mut rx = DtmfReceiver::default();
        let mut ts = 12_345u32;
        let mut got = String::new();
        for (i, key) in "0123456789*#ABCD".chars().enumerate() {
            let ms = 60 + 20 * i as u32;
            let mut tx = DtmfSender::new(key, ms).unwrap();
            tx.set_volume(99);
            let mut events = Vec::new();
            for p in tx.by_ref() {
                assert_eq!(p.payload[1] & 0x3F, 63);
                events.extend(rx.on_packet(ts, p.marker, &p.payload));
            }
            assert_eq!(
                events,
                vec![DtmfEvent {
                    digit: key,
                    duration_ms: ms
                }]
            );
            got.push(events[0].digit);
            ts = ts.wrapping_add(tx.duration_samples() + 800);
        }
        assert_eq!(got, "0123456789*#ABCD");
    }

    // ----- in-band -----

    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn gauss(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    fn freqs(key: char) -> (f64, f64) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, &k) in row.iter().enumerate() {
                if k == key {
                    return (TONES[r], TONES[4 + c]);
                }
            }
        }
        panic!("not a key: {key}");
    }

    /// Append `ms` of a tone pair (amplitudes as fractions of full scale)
    /// to `out`; `phase` keeps time continuous across calls.
    fn tone(out: &mut Vec<f64>, rate: u32, ms: u32, f: &[(f64, f64)]) {
        let n = (rate * ms / 1000) as usize;
        let start = out.len();
        for i in 0..n {
            let t = (start + i) as f64 / f64::from(rate);
            let v: f64 = f
                .iter()
                .map(|&(freq, amp)| amp * (2.0 * std::f64::consts::PI * freq * t).sin())
                .sum();
            out.push(v);
        }
    }

    fn silence(out: &mut Vec<f64>, rate: u32, ms: u32) {
        out.extend(std::iter::repeat_n(0.0, (rate * ms / 1000) as usize));
    }

    /// Add white noise at `snr_db` below `signal_power` and quantise.
    fn to_pcm(signal: &[f64], signal_power: f64, snr_db: f64, seed: u64) -> Vec<i16> {
        let sigma = (signal_power / 10f64.powf(snr_db / 10.0)).sqrt();
        let mut rng = Rng(seed);
        signal
            .iter()
            .map(|&v| {
                ((v + sigma * rng.gauss()) * 32767.0)
                    .round()
                    .clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn detect(rate: u32, pcm: &[i16], frame: usize) -> Vec<DtmfEvent> {
        let mut det = InbandDtmfDetector::new(rate).unwrap();
        let mut out = Vec::new();
        for chunk in pcm.chunks(frame.max(1)) {
            det.process(chunk, |e| out.push(e));
        }
        out.extend(det.flush());
        out
    }

    fn keys_signal(rate: u32, keys: &str, on_ms: u32, off_ms: u32, amp: f64) -> Vec<f64> {
        let mut s = Vec::new();
        silence(&mut s, rate, 30);
        for k in keys.chars() {
            let (lo, hi) = freqs(k);
            tone(&mut s, rate, on_ms, &[(lo, amp), (hi, amp)]);
            silence(&mut s, rate, off_ms);
        }
        s
    }

    #[test]
    fn detects_all_digits_with_noise_at_8k_and_16k() {
        let keys = "123A456B789C*0#D";
        for rate in [8000, 16000] {
            for (seed, frame) in [(1u64, 160usize), (2, 7), (3, 320)] {
                let amp = 0.25;
                let s = keys_signal(rate, keys, 70, 60, amp);
                // Tone pair power is 2 * amp^2 / 2; noise 20 dB below it.
                let pcm = to_pcm(&s, amp * amp, 20.0, seed);
                let got = detect(rate, &pcm, frame * rate as usize / 8000);
                let digits: String = got.iter().map(|e| e.digit).collect();
                assert_eq!(digits, keys, "rate {rate} frame {frame}");
                for e in &got {
                    assert!((55..=85).contains(&e.duration_ms), "{e:?} at {rate}");
                }
            }
        }
    }

    #[test]
    fn twist_limits() {
        let rate = 8000;
        let run = |row_db: f64, col_db: f64| {
            let (lo, hi) = freqs('5');
            let a = |db: f64| 0.3 * 10f64.powf(db / 20.0);
            let mut s = Vec::new();
            silence(&mut s, rate, 20);
            tone(&mut s, rate, 100, &[(lo, a(row_db)), (hi, a(col_db))]);
            silence(&mut s, rate, 50);
            detect(rate, &to_pcm(&s, 1e-6, 0.0, 9), 160).len()
        };
        assert_eq!(run(0.0, 0.0), 1);
        assert_eq!(run(-6.0, 0.0), 1, "normal twist 6 dB");
        assert_eq!(run(-10.0, 0.0), 0, "normal twist 10 dB");
        assert_eq!(run(0.0, -3.0), 1, "reverse twist 3 dB");
        assert_eq!(run(0.0, -6.0), 0, "reverse twist 6 dB");
    }

    #[test]
    fn minimum_duration_is_enforced() {
        let rate = 8000;
        for offset_ms in [0u32, 3, 7, 11] {
            for (ms, expect) in [(45u32, 1usize), (40, 1), (20, 0), (15, 0)] {
                let (lo, hi) = freqs('8');
                let mut s = Vec::new();
                silence(&mut s, rate, 30);
                s.extend(std::iter::repeat_n(0.0, (offset_ms * 8) as usize));
                tone(&mut s, rate, ms, &[(lo, 0.25), (hi, 0.25)]);
                silence(&mut s, rate, 60);
                let pcm = to_pcm(&s, 0.0625, 20.0, u64::from(ms + offset_ms));
                let got = detect(rate, &pcm, 160);
                assert_eq!(
                    got.len(),
                    expect,
                    "{ms} ms tone at offset {offset_ms}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn long_tone_is_one_digit_and_gap_is_needed() {
        let rate = 8000;
        let (lo, hi) = freqs('0');
        let mut s = Vec::new();
        tone(&mut s, rate, 1500, &[(lo, 0.2), (hi, 0.2)]);
        let got = detect(rate, &to_pcm(&s, 0.04, 25.0, 5), 160);
        assert_eq!(got.len(), 1);
        assert!((1450..=1550).contains(&got[0].duration_ms), "{got:?}");

        // Two different keys back to back with no gap: only the first counts.
        let mut s = Vec::new();
        silence(&mut s, rate, 20);
        let (l1, h1) = freqs('1');
        let (l2, h2) = freqs('9');
        tone(&mut s, rate, 100, &[(l1, 0.2), (h1, 0.2)]);
        tone(&mut s, rate, 100, &[(l2, 0.2), (h2, 0.2)]);
        silence(&mut s, rate, 50);
        let got: String = detect(rate, &to_pcm(&s, 0.04, 30.0, 6), 160)
            .iter()
            .map(|e| e.digit)
            .collect();
        assert_eq!(got, "1");
    }

    #[test]
    fn rejects_single_tones() {
        let rate = 8000;
        for f in TONES {
            let mut s = Vec::new();
            tone(&mut s, rate, 300, &[(f, 0.5)]);
            assert!(
                detect(rate, &to_pcm(&s, 0.125, 30.0, 3), 160).is_empty(),
                "{f} Hz"
            );
        }
        // Two tones of the same group are not a digit either.
        let mut s = Vec::new();
        tone(&mut s, rate, 300, &[(697.0, 0.3), (852.0, 0.3)]);
        assert!(detect(rate, &to_pcm(&s, 0.09, 30.0, 4), 160).is_empty());
    }

    /// Voiced speech stand-in: harmonics of a pitch gliding between 100 and
    /// 200 Hz, shaped by three formant resonances that sweep through the
    /// DTMF bands.
    fn voiced(rate: u32, seconds: f64) -> Vec<f64> {
        let n = (f64::from(rate) * seconds) as usize;
        let mut out = Vec::with_capacity(n);
        let mut phase = 0.0f64;
        let nyq = f64::from(rate) / 2.0;
        for i in 0..n {
            let t = i as f64 / f64::from(rate);
            let f0 = 150.0 + 50.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / f64::from(rate);
            let f1 = 500.0 + 300.0 * (2.0 * std::f64::consts::PI * 1.3 * t).sin();
            let f2 = 1400.0 + 400.0 * (2.0 * std::f64::consts::PI * 0.9 * t).cos();
            let mut v = 0.0;
            let mut k = 1.0;
            while k * f0 < nyq.min(3800.0) {
                let f = k * f0;
                let env = 1.0 / (1.0 + ((f - f1) / 120.0).powi(2))
                    + 0.7 / (1.0 + ((f - f2) / 150.0).powi(2))
                    + 0.3 / (1.0 + ((f - 2600.0) / 200.0).powi(2))
                    + 0.05;
                v += env * (k * phase).sin();
                k += 1.0;
            }
            out.push(0.1 * v);
        }
        out
    }

    #[test]
    fn rejects_voiced_speech() {
        for rate in [8000, 16000] {
            let s = voiced(rate, 6.0);
            let got = detect(rate, &to_pcm(&s, 0.01, 40.0, 11), 160);
            assert!(got.is_empty(), "{rate}: {got:?}");
        }
    }

    #[test]
    fn rejects_music_chords() {
        // Four-note chords (equal temperament), 400 ms each.
        let rate = 8000;
        let chords: [[f64; 4]; 4] = [
            [261.63, 329.63, 392.00, 523.25],
            [349.23, 440.00, 523.25, 698.46],
            [392.00, 493.88, 587.33, 783.99],
            [659.25, 783.99, 987.77, 1318.51],
        ];
        let mut s = Vec::new();
        for c in chords {
            let f: Vec<(f64, f64)> = c.iter().map(|&f| (f, 0.15)).collect();
            tone(&mut s, rate, 400, &f);
        }
        assert!(detect(rate, &to_pcm(&s, 0.09, 40.0, 12), 160).is_empty());
    }

    #[test]
    fn silence_and_garbage_never_trigger() {
        let rate = 8000;
        let mut det = InbandDtmfDetector::new(rate).unwrap();
        let mut n = 0;
        det.process(&[0i16; 8000], |_| n += 1);
        det.process(&[i16::MAX; 4000], |_| n += 1);
        det.process(&[i16::MIN; 4000], |_| n += 1);
        det.process(&[], |_| n += 1);
        let noise = to_pcm(&vec![0.0; 16000], 0.1, 0.0, 77);
        det.process(&noise, |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(det.flush(), None);
        assert_eq!(det.block_len(), 102);
        assert_eq!(InbandDtmfDetector::new(16000).unwrap().block_len(), 204);
    }
}
