//! Proves that the per-packet and per-frame paths of RTCP reception
//! statistics, quality statistics and DTMF detection do not touch the heap
//! in steady state. A counting global allocator records allocations made
//! by the current thread while a measurement is armed, so tests running in
//! parallel on other threads do not disturb the count.

use std::time::{Duration, Instant};

use parley_media::dtmf::{DtmfReceiver, DtmfSender, InbandDtmfDetector};
use parley_media::emodel::Codec;
use parley_media::rtcp::{parse_compound, ReceptionStats, RtcpConfig, RtcpPacket, RtcpSession};
use parley_media::stats::QualityStats;

mod common;

/// Allocations made by this thread while running `f`.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let (n, out) = common::allocations_in(f);
    (n as usize, out)
}

/// Serialise measurements so concurrent tests cannot add to each other's
/// counts.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_counter_sees_allocations() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (n, v) = allocations_in(|| vec![1u8; 64]);
    assert!(n >= 1, "counting allocator is not active");
    drop(v);
}

#[test]
fn reception_and_quality_stats_do_not_allocate() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut rs = ReceptionStats::new(0x1234, 8000);
    let mut q = QualityStats::new(Codec::G711Plc);
    let (n, valid) = allocations_in(|| {
        let mut valid = 0u32;
        for i in 0..20_000u32 {
            // Loss, reordering, duplicates, wrap-around and jitter.
            if i % 37 == 5 {
                continue;
            }
            let seq = if i % 53 == 7 { i.wrapping_sub(2) } else { i } as u16;
            let ts = i.wrapping_mul(160);
            let arrival = ts.wrapping_add(400 + (i * 7919) % 120);
            if rs.on_packet(seq, ts, arrival) {
                valid += 1;
            }
            if i % 29 == 0 {
                rs.on_packet(seq, ts, arrival);
            }
            if i % 250 == 0 {
                let _ = rs.report_block();
                q.update_reception(&rs);
                q.set_packets_late(u64::from(i / 100));
                q.set_duplicates(u64::from(i / 29));
                q.set_jitter_buffer_delay_ms(40.0);
                q.set_rtt_ms(Some(80.0));
                let _ = q.mos();
            }
        }
        valid
    });
    assert_eq!(n, 0, "reception statistics allocated {n} times");
    assert!(valid > 19_000);
    assert!(q.packets_lost > 0 && q.mos < 4.41);
}

#[test]
fn rtcp_session_steady_state_does_not_allocate() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let mut a = RtcpSession::new(RtcpConfig::new(0xA, "a@parley", 8000), t0);
    let mut b = RtcpSession::new(RtcpConfig::new(0xB, "b@parley", 8000), t0);
    let mut buf = [0u8; 512];
    let ntp =
        |d: Duration| (3_900_000_000u64 << 32) + ((d.as_nanos() << 32) / 1_000_000_000) as u64;
    let (n, rtt) = allocations_in(|| {
        let mut now = t0;
        for i in 0..5_000u32 {
            now += Duration::from_millis(20);
            let ts = i * 160;
            a.on_rtp_sent(160);
            b.on_rtp_received(0xA, i as u16, ts, ts + 240);
            if a.is_report_due(now) {
                let len = a
                    .build_report(now, ntp(now - t0), ts, &mut buf)
                    .unwrap_or(0);
                let _ = b.on_rtcp(now, ntp(now - t0), &buf[..len]);
            }
            if b.is_report_due(now) {
                let len = b.build_report(now, ntp(now - t0), 0, &mut buf).unwrap_or(0);
                if let Ok(c) = parse_compound(&buf[..len]) {
                    for p in c.packets() {
                        if let RtcpPacket::SourceDescription(s) = p {
                            for chunk in s.chunks() {
                                let _ = chunk.cname();
                            }
                        }
                    }
                }
                let _ = a.on_rtcp(now, ntp(now - t0), &buf[..len]);
            }
        }
        a.rtt()
    });
    assert_eq!(n, 0, "RTCP session allocated {n} times");
    assert!(rtt.is_some());
}

#[test]
fn dtmf_receive_and_send_do_not_allocate() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut rx = DtmfReceiver::default();
    let (n, digits) = allocations_in(|| {
        let mut digits = 0;
        let mut ts = 0u32;
        for i in 0..500u32 {
            let key = b"0123456789*#ABCD"[(i % 16) as usize] as char;
            if let Ok(mut tx) = DtmfSender::new(key, 100) {
                while let Some(p) = tx.next_packet() {
                    if rx.on_packet(ts, p.marker, &p.payload).is_some() {
                        digits += 1;
                    }
                }
                ts = ts.wrapping_add(tx.duration_samples() + 400);
            }
        }
        digits
    });
    assert_eq!(n, 0, "RFC 4733 path allocated {n} times");
    assert_eq!(digits, 500);
}

#[test]
fn goertzel_per_frame_does_not_allocate() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for rate in [8000u32, 16000] {
        // Two seconds of "5" tones (70 ms on, 70 ms off), prepared up front.
        let n = rate as usize * 2;
        let period = rate as usize * 140 / 1000;
        let pcm: Vec<i16> = (0..n)
            .map(|i| {
                if i % period >= period / 2 {
                    return 0;
                }
                let t = i as f64 / f64::from(rate);
                let v = 0.25 * (2.0 * std::f64::consts::PI * 770.0 * t).sin()
                    + 0.25 * (2.0 * std::f64::consts::PI * 1336.0 * t).sin();
                (v * 32767.0) as i16
            })
            .collect();
        let frame = rate as usize / 50;
        let mut det = InbandDtmfDetector::new(rate).expect("valid rate");
        let (allocs, digits) = allocations_in(|| {
            let mut digits = 0;
            for chunk in pcm.chunks(frame) {
                det.process(chunk, |e| {
                    if e.digit == '5' {
                        digits += 1;
                    }
                });
            }
            digits
        });
        assert_eq!(
            allocs, 0,
            "Goertzel path allocated {allocs} times at {rate} Hz"
        );
        assert!(digits >= 13, "{digits} digits at {rate} Hz");
    }
}
