//! Per-call receive quality for CDRs and metrics: packet counts, loss,
//! jitter, round-trip time and an E-model MOS estimate.
//!
//! [`QualityStats`] is fed from three places, none of which it depends on
//! beyond plain numbers:
//!
//! * [`ReceptionStats`] (RFC 3550 counts and jitter) through
//!   [`update_reception`](QualityStats::update_reception);
//! * the RTT from RTCP through [`set_rtt_ms`](QualityStats::set_rtt_ms);
//! * the jitter buffer's own counters (late, discarded, duplicates) and
//!   its current delay through the `set_*` methods.
//!
//! Every update recomputes `loss_percent`, `r_factor` and `mos`, so the
//! public fields are always a consistent snapshot. Updating is cheap and
//! allocation-free; call it once per tick or per RTCP report.

use crate::emodel::{Codec, EModelInput};
use crate::rtcp::{ReceptionStats, RtcpSession};

/// Counts of one source incarnation (an SSRC until it changes or its
/// sequence numbers restart).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct SourceCounts {
    expected: u64,
    received: u64,
    reordered: u64,
}

impl SourceCounts {
    fn add(&mut self, other: &SourceCounts) {
        self.expected += other.expected;
        self.received += other.received;
        self.reordered += other.reordered;
    }
}

/// Receive-side quality of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityStats {
    /// RTP packets received and accepted by sequence validation, over all
    /// sources the call had (duplicates included, as RFC 3550 counts).
    pub packets_received: u64,
    /// Packets the sequence numbers say should have arrived.
    pub packets_expected: u64,
    /// Packets never received: `expected − received + duplicates`, at
    /// least 0 (adding back duplicates undoes RFC 3550's netting of
    /// duplicates against losses).
    pub packets_lost: u64,
    /// Packets that arrived after their playout time (set by the jitter
    /// buffer).
    pub packets_late: u64,
    /// Packets the jitter buffer dropped for other reasons, e.g. overflow
    /// (set by the jitter buffer).
    pub packets_discarded: u64,
    /// Duplicate packets (set by the jitter buffer).
    pub duplicates: u64,
    /// Packets that arrived out of order (from sequence validation).
    pub reordered: u64,
    /// Current RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Highest interarrival jitter seen in any update, in milliseconds.
    pub max_jitter_ms: f64,
    /// Latest round-trip time from RTCP, if measured.
    pub rtt_ms: Option<f64>,
    /// Current jitter-buffer delay, in milliseconds.
    pub jitter_buffer_delay_ms: f64,
    /// Other one-way delay to count (packetisation, codec, device), in
    /// milliseconds; 0 unless set.
    pub fixed_delay_ms: f64,
    /// Loss burst ratio for the E-model (1 = random loss, the default).
    pub burst_ratio: f64,
    /// The codec being received.
    pub codec: Codec,
    /// Loss seen by the decoder, in percent: lost + late + discarded over
    /// expected.
    pub loss_percent: f64,
    /// E-model transmission rating.
    pub r_factor: f64,
    /// E-model MOS estimate (1.0..=4.5).
    pub mos: f64,
    /// Counts of sources that ended (SSRC change or restart).
    finished: SourceCounts,
    /// Counts of the current source.
    current: SourceCounts,
    /// (SSRC, restart count) of the current source.
    current_key: Option<(u32, u32)>,
}

impl QualityStats {
    /// Empty statistics for a call receiving `codec`.
    pub fn new(codec: Codec) -> Self {
        let mut s = QualityStats {
            packets_received: 0,
            packets_expected: 0,
            packets_lost: 0,
            packets_late: 0,
            packets_discarded: 0,
            duplicates: 0,
            reordered: 0,
            jitter_ms: 0.0,
            max_jitter_ms: 0.0,
            rtt_ms: None,
            jitter_buffer_delay_ms: 0.0,
            fixed_delay_ms: 0.0,
            burst_ratio: 1.0,
            codec,
            loss_percent: 0.0,
            r_factor: 0.0,
            mos: 0.0,
            finished: SourceCounts::default(),
            current: SourceCounts::default(),
            current_key: None,
        };
        s.refresh();
        s
    }

    /// Take counts and jitter from the RTP receive statistics. When the
    /// source changes (new SSRC, or its sequence numbers restarted) the
    /// previous source's last counts are kept and the new one's added, so
    /// call this at least once per report interval.
    pub fn update_reception(&mut self, rs: &ReceptionStats) {
        let key = (rs.ssrc(), rs.restarts());
        if self.current_key.is_some_and(|k| k != key) {
            let done = self.current;
            self.finished.add(&done);
        }
        self.current_key = Some(key);
        self.current = SourceCounts {
            expected: u64::from(rs.expected()),
            received: u64::from(rs.received()),
            reordered: rs.reordered(),
        };
        let jitter = rs.jitter_ms();
        self.jitter_ms = if jitter.is_finite() { jitter } else { 0.0 };
        self.max_jitter_ms = self.max_jitter_ms.max(self.jitter_ms);
        self.refresh();
    }

    /// Take reception statistics and RTT from an RTCP session.
    pub fn update_from_session(&mut self, session: &RtcpSession) {
        if let Some(rs) = session.reception() {
            self.update_reception(rs);
        }
        if session.rtt().is_some() {
            self.set_rtt_ms(session.rtt_ms());
        }
    }

    /// Set the round-trip time (`None` if unknown).
    pub fn set_rtt_ms(&mut self, rtt_ms: Option<f64>) {
        self.rtt_ms = rtt_ms.filter(|r| r.is_finite() && *r >= 0.0);
        self.refresh();
    }

    /// Set the jitter buffer's count of late packets (cumulative).
    pub fn set_packets_late(&mut self, count: u64) {
        self.packets_late = count;
        self.refresh();
    }

    /// Set the jitter buffer's count of otherwise discarded packets
    /// (cumulative).
    pub fn set_packets_discarded(&mut self, count: u64) {
        self.packets_discarded = count;
        self.refresh();
    }

    /// Set the jitter buffer's count of duplicate packets (cumulative).
    pub fn set_duplicates(&mut self, count: u64) {
        self.duplicates = count;
        self.refresh();
    }

    /// Set the jitter buffer's current delay in milliseconds.
    pub fn set_jitter_buffer_delay_ms(&mut self, delay_ms: f64) {
        self.jitter_buffer_delay_ms = finite_non_negative(delay_ms);
        self.refresh();
    }

    /// Set extra one-way delay (packetisation, codec, device) to count.
    pub fn set_fixed_delay_ms(&mut self, delay_ms: f64) {
        self.fixed_delay_ms = finite_non_negative(delay_ms);
        self.refresh();
    }

    /// Set the loss burst ratio (1 = random loss).
    pub fn set_burst_ratio(&mut self, burst_ratio: f64) {
        self.burst_ratio = if burst_ratio.is_finite() && burst_ratio > 0.0 {
            burst_ratio
        } else {
            1.0
        };
        self.refresh();
    }

    /// Change the codec (after a re-INVITE, for example).
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
        self.refresh();
    }

    /// One-way delay the E-model is given: jitter-buffer delay + RTT/2
    /// (when measured) + the fixed delay.
    pub fn one_way_delay_ms(&self) -> f64 {
        self.jitter_buffer_delay_ms + self.rtt_ms.map_or(0.0, |r| r / 2.0) + self.fixed_delay_ms
    }

    /// The E-model MOS for the current loss, delay and codec.
    pub fn mos(&self) -> f64 {
        self.emodel_input().mos()
    }

    /// The E-model inputs built from the current values.
    pub fn emodel_input(&self) -> EModelInput {
        EModelInput {
            burst_ratio: self.burst_ratio,
            ..EModelInput::new(self.codec, self.loss_percent, self.one_way_delay_ms())
        }
    }

    fn refresh(&mut self) {
        let mut total = self.finished;
        total.add(&self.current);
        self.packets_expected = total.expected;
        self.packets_received = total.received;
        self.reordered = total.reordered;
        let raw_lost = i128::from(total.expected) - i128::from(total.received);
        let lost = (raw_lost + i128::from(self.duplicates)).clamp(0, i128::from(total.expected));
        self.packets_lost = lost as u64;
        self.loss_percent = if total.expected == 0 {
            0.0
        } else {
            let unplayable = lost as f64 + self.packets_late as f64 + self.packets_discarded as f64;
            (100.0 * unplayable / total.expected as f64).clamp(0.0, 100.0)
        };
        let input = self.emodel_input();
        self.r_factor = input.r_factor();
        self.mos = input.mos();
    }
}

fn finite_non_negative(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emodel;
    use std::time::Instant;

    /// A stream of `n` packets from `ssrc` starting at `first`, skipping
    /// every `skip_every`-th (0 = none), with arrival jitter of `jitter`
    /// ticks alternating.
    fn stream(rs: &mut ReceptionStats, first: u16, n: u16, skip_every: u16, jitter: u32) {
        for i in 0..n {
            if skip_every != 0 && i % skip_every == skip_every - 1 {
                continue;
            }
            let seq = first.wrapping_add(i);
            let ts = u32::from(i) * 160;
            let arrival = ts + if i % 2 == 0 { 0 } else { jitter };
            rs.on_packet(seq, ts, arrival);
        }
    }

    #[test]
    fn clean_call() {
        let mut q = QualityStats::new(Codec::G711Plc);
        assert!((q.mos - 4.41).abs() < 0.005);
        let mut rs = ReceptionStats::new(1, 8000);
        stream(&mut rs, 0, 500, 0, 0);
        q.update_reception(&rs);
        assert_eq!(q.packets_received, 499);
        assert_eq!(q.packets_expected, 499);
        assert_eq!(q.packets_lost, 0);
        assert_eq!(q.loss_percent, 0.0);
        assert_eq!(q.jitter_ms, 0.0);
        assert!((q.mos - 4.41).abs() < 0.005, "{}", q.mos);
        assert_eq!(q.mos, q.mos());
    }

    #[test]
    fn loss_and_jitter_from_reception() {
        let mut q = QualityStats::new(Codec::G711Plc);
        let mut rs = ReceptionStats::new(1, 8000);
        // Lose every 20th packet (5 %), 10 ms alternating jitter.
        stream(&mut rs, 100, 1001, 20, 80);
        q.update_reception(&rs);
        assert_eq!(q.packets_expected, 1000);
        assert_eq!(q.packets_lost, 50);
        assert!((q.loss_percent - 5.0).abs() < 1e-9);
        // 10 ms alternation, slightly less where a loss breaks the pattern.
        assert!((8.5..=10.1).contains(&q.jitter_ms), "{}", q.jitter_ms);
        assert_eq!(q.max_jitter_ms, q.jitter_ms);
        let expect = emodel::mos(Codec::G711Plc, 5.0, 0.0);
        assert!((q.mos - expect).abs() < 1e-12);
        assert!(q.mos < 4.0 && q.mos > 3.0, "{}", q.mos);
    }

    #[test]
    fn jitter_buffer_counters_count_as_loss() {
        let mut q = QualityStats::new(Codec::G711Plc);
        let mut rs = ReceptionStats::new(1, 8000);
        stream(&mut rs, 0, 201, 0, 0);
        q.update_reception(&rs);
        let clean = q.mos;
        q.set_packets_late(4);
        assert!((q.loss_percent - 2.0).abs() < 1e-9);
        let with_late = q.mos;
        assert!(with_late < clean);
        q.set_packets_discarded(2);
        assert!((q.loss_percent - 3.0).abs() < 1e-9);
        assert!(q.mos < with_late);
        assert_eq!((q.packets_late, q.packets_discarded), (4, 2));
    }

    #[test]
    fn duplicates_do_not_hide_loss() {
        let mut q = QualityStats::new(Codec::G711);
        let mut rs = ReceptionStats::new(1, 8000);
        // 0..=100, seq 50 lost, 1 and 2 duplicated: RFC 3550 nets this to -1.
        for s in (0u16..=100).filter(|&s| s != 50) {
            rs.on_packet(s, 0, 0);
            if s == 1 || s == 2 {
                rs.on_packet(s, 0, 0);
            }
        }
        q.update_reception(&rs);
        assert_eq!(rs.cumulative_lost(), -1);
        assert_eq!(q.packets_lost, 0);
        q.set_duplicates(2);
        assert_eq!(q.packets_lost, 1);
        assert!((q.loss_percent - 1.0).abs() < 1e-9);
    }

    #[test]
    fn delay_comes_from_jitter_buffer_and_rtt() {
        let mut q = QualityStats::new(Codec::Opus);
        q.set_jitter_buffer_delay_ms(60.0);
        assert_eq!(q.one_way_delay_ms(), 60.0);
        let no_rtt = q.mos;
        q.set_rtt_ms(Some(300.0));
        assert_eq!(q.one_way_delay_ms(), 210.0);
        assert!(q.mos < no_rtt);
        let expect = emodel::mos(Codec::Opus, 0.0, 210.0);
        assert!((q.mos - expect).abs() < 1e-12);
        q.set_fixed_delay_ms(100.0);
        assert_eq!(q.one_way_delay_ms(), 310.0);
        assert!(q.mos < expect);
        // Garbage is ignored.
        q.set_rtt_ms(Some(f64::NAN));
        assert_eq!(q.rtt_ms, None);
        q.set_jitter_buffer_delay_ms(-5.0);
        assert_eq!(q.jitter_buffer_delay_ms, 0.0);
    }

    #[test]
    fn codec_and_burst_ratio_matter() {
        let mut q = QualityStats::new(Codec::G711Plc);
        let mut rs = ReceptionStats::new(1, 8000);
        stream(&mut rs, 0, 401, 50, 0);
        q.update_reception(&rs);
        let plc = q.mos;
        q.set_codec(Codec::G711);
        assert!(q.mos < plc);
        let random = q.mos;
        q.set_burst_ratio(3.0);
        assert!(q.mos < random);
        q.set_burst_ratio(f64::INFINITY);
        assert_eq!(q.burst_ratio, 1.0);
        assert_eq!(q.mos, random);
    }

    #[test]
    fn source_changes_keep_earlier_counts() {
        let mut q = QualityStats::new(Codec::G711Plc);
        let mut a = ReceptionStats::new(0xA, 8000);
        stream(&mut a, 0, 101, 10, 0); // 100 expected, 10 lost
        q.update_reception(&a);
        assert_eq!((q.packets_expected, q.packets_lost), (100, 10));
        let mut b = ReceptionStats::new(0xB, 8000);
        stream(&mut b, 5000, 51, 0, 0); // 50 expected, none lost
        q.update_reception(&b);
        assert_eq!(
            (q.packets_expected, q.packets_received, q.packets_lost),
            (150, 140, 10)
        );
        // Updating the same source again does not double count.
        q.update_reception(&b);
        assert_eq!(q.packets_expected, 150);
        // A sequence restart of the same SSRC starts a new incarnation.
        assert!(!b.on_packet(40_000, 0, 0));
        assert!(b.on_packet(40_001, 0, 0));
        stream(&mut b, 40_002, 9, 0, 0);
        q.update_reception(&b);
        assert_eq!(q.packets_expected, 160);
        assert_eq!(q.packets_lost, 10);
    }

    #[test]
    fn update_from_session_takes_rtt_and_counts() {
        let now = Instant::now();
        let mut s = RtcpSession::new(crate::rtcp::RtcpConfig::new(1, "q", 8000), now);
        let mut q = QualityStats::new(Codec::G711Plc);
        q.update_from_session(&s);
        assert_eq!(q.packets_expected, 0);
        for i in 0..10u16 {
            s.on_rtp_received(9, i, u32::from(i) * 160, u32::from(i) * 160);
        }
        q.set_rtt_ms(Some(40.0));
        q.update_from_session(&s);
        assert_eq!(q.packets_expected, 9);
        // No RTT measured by the session: the earlier value stays.
        assert_eq!(q.rtt_ms, Some(40.0));
    }
}
