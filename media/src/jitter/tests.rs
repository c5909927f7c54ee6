//! Jitter buffer tests on simulated network traces with simulated time.

use super::sim::{network, payload, Gilbert, Receiver, Rng, Sender};
use super::*;

const MS: i64 = 1_000;
const S: i64 = 1_000_000;

fn cfg() -> JitterConfig {
    JitterConfig::for_clock_rate(8000)
}

fn jb() -> JitterBuffer {
    JitterBuffer::new(cfg()).unwrap()
}

fn no_loss(_: &sim::Sent, _: &mut Rng) -> bool {
    false
}

/// Frames between consecutive played frames must only increase.
fn assert_strictly_increasing(played: &[u64]) {
    for w in played.windows(2) {
        assert!(w[0] < w[1], "playout out of order: {} then {}", w[0], w[1]);
    }
}

#[test]
fn config_is_validated() {
    let ok = cfg();
    assert!(JitterBuffer::new(ok).is_ok());
    let bad = |f: fn(&mut JitterConfig)| {
        let mut c = ok;
        f(&mut c);
        JitterBuffer::new(c).unwrap_err()
    };
    assert_eq!(bad(|c| c.clock_rate = 0), JitterConfigError::ClockRate(0));
    assert!(matches!(
        bad(|c| c.frame_samples = 0),
        JitterConfigError::FrameSamples { .. }
    ));
    assert!(matches!(
        bad(|c| c.frame_samples = 8000),
        JitterConfigError::FrameSamples { .. }
    ));
    assert!(matches!(
        bad(|c| c.min_delay_ms = 500),
        JitterConfigError::DelayRange { .. }
    ));
    assert!(matches!(
        bad(|c| c.capacity_packets = 10),
        JitterConfigError::Capacity { needed: 22, .. }
    ));
    assert_eq!(
        bad(|c| c.max_payload_bytes = 0),
        JitterConfigError::MaxPayload(0)
    );
}

#[test]
fn clean_stream_plays_every_frame_in_order_at_target_delay() {
    let mut rng = Rng::new(1);
    let sent = Sender::new(1_000).packets(&mut rng);
    let (arr, _) = network(&sent, &mut rng, no_loss, |_, _| 30 * MS, 0.0);
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 7 * MS, 21 * S);
    assert_same_frames(&rx.played(), &(0..1_000).collect::<Vec<_>>());
    let st = jb.stats();
    assert_eq!(st.received, 1_000);
    assert_eq!((st.lost, st.late, st.duplicates), (0, 0, 0));
    assert_eq!(st.skipped_frames, 0);
    // Only the end of the stream is concealed (the buffer runs dry).
    assert_eq!(st.concealed_frames, 3);
    assert_eq!(st.target_delay_ms, 20);
    for t in rx.ticks.iter().filter(|t| t.frame.is_some()) {
        let d = t.stats.current_delay_ms;
        assert!((20..40).contains(&d), "delay {d} ms outside [20, 40)");
    }
}

#[test]
fn reordering_and_jitter_are_undone() {
    let mut rng = Rng::new(2);
    let sent = Sender::new(5_000).packets(&mut rng);
    // 0-60 ms of jitter: packets overtake each other constantly.
    let (arr, _) = network(
        &sent,
        &mut rng,
        no_loss,
        |_, r| 20 * MS + (r.uniform() * 60_000.0) as i64,
        0.0,
    );
    let reordered = arr
        .windows(2)
        .filter(|w| w[1].pkt.seq < w[0].pkt.seq)
        .count();
    assert!(reordered > 500, "trace reorders only {reordered} packets");
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 3 * MS, 110 * S);
    let played = rx.played();
    assert_strictly_increasing(&played);
    let st = jb.stats();
    // Every packet is accounted for exactly once.
    assert_eq!(st.received, 5_000);
    assert_eq!(
        played.len() as u64 + st.skipped_frames + st.late + st.discarded_overflow,
        5_000
    );
    assert_eq!(st.lost, 0);
    // With the target at the 95th percentile, few packets are late.
    assert!(st.late < 150, "{st:?}");
    assert!((55..=70).contains(&st.target_delay_ms), "{st:?}");
}

#[test]
fn duplicates_are_discarded() {
    let mut rng = Rng::new(3);
    let sent = Sender::new(3_000).packets(&mut rng);
    let (arr, _) = network(
        &sent,
        &mut rng,
        no_loss,
        |_, r| 20 * MS + (r.uniform() * 20_000.0) as i64,
        0.1,
    );
    let copies = arr.len() - sent.len();
    assert!(copies > 200);
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 5 * MS, 62 * S);
    let st = jb.stats();
    assert_eq!(st.duplicates, copies as u64);
    let dup_outcomes = rx
        .outcomes
        .iter()
        .filter(|(_, o)| *o == PushOutcome::Duplicate)
        .count();
    assert_eq!(dup_outcomes, copies);
    let played = rx.played();
    assert_strictly_increasing(&played);
    assert_eq!(played.len() as u64 + st.skipped_frames + st.late, 3_000);
}

/// Compare frame lists, reporting the first difference only.
fn assert_same_frames(got: &[u64], want: &[u64]) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "frame lists differ at {i}: got {:?}, want {:?}",
            &got[i.saturating_sub(3)..(i + 3).min(got.len())],
            &want[i.saturating_sub(3)..(i + 3).min(want.len())]
        );
    }
    assert_eq!(got.len(), want.len(), "frame lists differ in length");
}

/// Ticks from the one playing frame `a` to the one playing frame `b`.
fn ticks_between(rx: &Receiver, a: u64, b: u64) -> &[sim::Tick] {
    let ia = rx.ticks.iter().position(|t| t.frame == Some(a)).unwrap();
    let ib = rx.ticks.iter().position(|t| t.frame == Some(b)).unwrap();
    &rx.ticks[ia + 1..ib]
}

#[test]
fn random_loss_is_counted_exactly_and_concealed_in_place() {
    let mut rng = Rng::new(4);
    let sent = Sender::new(10_000).packets(&mut rng);
    let (arr, lost) = network(
        &sent,
        &mut rng,
        |p, r| p.frame < 9_990 && r.chance(0.05),
        |_, _| 40 * MS,
        0.0,
    );
    assert!(lost.len() > 400);
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 11 * MS, 202 * S);
    let st = jb.stats();
    assert_eq!(st.lost, lost.len() as u64);
    assert_eq!(st.late, 0);
    let played = rx.played();
    assert_eq!(played.len() + lost.len(), 10_000);
    // Each gap between played frames is filled by exactly one Lost per
    // missing frame: the stream keeps its timing.
    for w in played.windows(2) {
        let gap = ticks_between(&rx, w[0], w[1]);
        assert_eq!(gap.len() as u64, w[1] - w[0] - 1);
        assert!(gap.iter().all(|t| t.out == Playout::Lost));
    }
    assert_eq!(st.concealed_frames, lost.len() as u64 + 3);
}

#[test]
fn burst_loss_is_counted_exactly() {
    let mut rng = Rng::new(5);
    let sent = Sender::new(15_000).packets(&mut rng);
    let mut ge = Gilbert {
        p_gb: 0.01,
        p_bg: 0.25,
        loss_good: 0.002,
        loss_bad: 0.9,
        bad: false,
    };
    let (arr, lost) = network(
        &sent,
        &mut rng,
        |p, r| p.frame < 14_990 && ge.lose(r),
        |_, r| 30 * MS + (r.uniform() * 10_000.0) as i64,
        0.0,
    );
    let (mut longest_burst, mut run, mut prev) = (0, 0, u64::MAX);
    for p in &lost {
        run = if p.frame == prev.wrapping_add(1) {
            run + 1
        } else {
            1
        };
        longest_burst = longest_burst.max(run);
        prev = p.frame;
    }
    assert!(longest_burst >= 6, "longest burst {longest_burst}");
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 9 * MS, 302 * S);
    let st = jb.stats();
    assert_eq!(st.lost, lost.len() as u64);
    let played = rx.played();
    assert_strictly_increasing(&played);
    assert_eq!(
        played.len() as u64 + st.lost + st.late + st.skipped_frames,
        15_000
    );
    // Within a burst the frame slots are kept: the caller conceals the
    // first 60 ms and then plays comfort noise.
    for w in played.windows(2).filter(|w| w[1] - w[0] > 4) {
        let gap = ticks_between(&rx, w[0], w[1]);
        let lost_ticks = gap.iter().filter(|t| t.out == Playout::Lost).count();
        assert!(lost_ticks >= 3, "{gap:?}");
        assert!(gap
            .iter()
            .all(|t| matches!(t.out, Playout::Lost | Playout::Empty)));
    }
}

#[test]
fn target_rises_with_jitter_and_falls_back() {
    let mut rng = Rng::new(6);
    let sent = Sender::new(9_000).packets(&mut rng); // 180 s
                                                     // Jitter of 0-100 ms between 30 s and 90 s only.
    let (arr, _) = network(
        &sent,
        &mut rng,
        no_loss,
        |p, r| {
            let jitter = (30 * S..90 * S).contains(&p.send_us);
            30 * MS
                + if jitter {
                    (r.uniform() * 100_000.0) as i64
                } else {
                    0
                }
        },
        0.0,
    );
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 13 * MS, 181 * S);
    let at = |s: i64| rx.ticks.iter().find(|t| t.at_us >= s * S).unwrap().stats;
    let calm = at(29);
    let jittery = at(89);
    let after = at(179);
    assert_eq!(calm.target_delay_ms, 20);
    assert!((90..=110).contains(&jittery.target_delay_ms), "{jittery:?}");
    assert!(jittery.current_delay_ms >= 80, "{jittery:?}");
    assert!(jittery.jitter_ms > 20.0, "{jittery:?}");
    assert!(after.target_delay_ms <= 25, "{after:?}");
    assert!(after.current_delay_ms <= 50, "{after:?}");
    assert!(after.jitter_ms < 1.0, "{after:?}");
    // The 60 s of jitter cost few late packets once the target caught up.
    assert!(after.late < 200, "{after:?}");
    assert_eq!(after.lost, 0);
}

fn skew_run(skew: f64) -> (Receiver, JitterStats) {
    let mut rng = Rng::new(7);
    let mut snd = Sender::new(30_000); // 10 minutes
    snd.skew = skew;
    let sent = snd.packets(&mut rng);
    let (arr, _) = network(
        &sent,
        &mut rng,
        no_loss,
        |_, r| 30 * MS + (r.uniform() * 8_000.0) as i64,
        0.0,
    );
    let mut jb = jb();
    let mut rx = Receiver::new();
    let end = arr.last().unwrap().at_us + S;
    rx.run(&mut jb, &arr, 17 * MS, end);
    let st = jb.stats();
    (rx, st)
}

fn assert_delay_bounded(rx: &Receiver) {
    let mut worst_early = 0u32;
    let mut worst_late = 0u32;
    for t in rx
        .ticks
        .iter()
        .filter(|t| t.frame.is_some() && t.at_us > 30 * S)
    {
        let (d, target) = (t.stats.current_delay_ms, t.stats.target_delay_ms);
        assert!(
            d + 6 >= target && d <= target + 31,
            "delay {d} ms, target {target} ms"
        );
        if t.at_us < 90 * S {
            worst_early = worst_early.max(d);
        }
        if t.at_us > 540 * S {
            worst_late = worst_late.max(d);
        }
    }
    // No growth between the second and the tenth minute.
    assert!(
        worst_late <= worst_early + 5,
        "{worst_early} -> {worst_late}"
    );
}

#[test]
fn fast_sender_clock_is_absorbed_by_skipping_frames() {
    let (rx, st) = skew_run(0.005);
    assert_delay_bounded(&rx);
    // 0.5 % of 30 000 frames must go.
    assert!((130..=170).contains(&st.skipped_frames), "{st:?}");
    assert_eq!(st.lost, 0);
    assert_eq!(st.late, 0);
    let played = rx.played();
    assert_strictly_increasing(&played);
    assert_eq!(played.len() as u64 + st.skipped_frames, 30_000);
}

#[test]
fn slow_sender_clock_is_absorbed_by_inserting_frames() {
    let (rx, st) = skew_run(-0.005);
    assert_delay_bounded(&rx);
    // 0.5 % more frames than received must be invented, and nothing lost.
    assert!((130..=170).contains(&st.concealed_frames), "{st:?}");
    assert_eq!(st.skipped_frames, 0);
    assert_eq!((st.lost, st.late), (0, 0));
    assert_same_frames(&rx.played(), &(0..30_000).collect::<Vec<_>>());
}

fn dtx_run(skew: f64, seed: u64) -> (Receiver, JitterStats, usize) {
    let mut rng = Rng::new(seed);
    let mut snd = Sender::new(30_000);
    snd.skew = skew;
    // Talkspurts of 0.5-1.5 s, silences of 0.2-2 s.
    snd.talk_frames = Some(((25, 75), (10, 100)));
    let sent = snd.packets(&mut rng);
    let spurts = sent.iter().filter(|p| p.marker).count();
    let (arr, _) = network(
        &sent,
        &mut rng,
        no_loss,
        |_, r| 30 * MS + (r.uniform() * 15_000.0) as i64,
        0.0,
    );
    let mut jb = jb();
    let mut rx = Receiver::new();
    let end = arr.last().unwrap().at_us + S;
    rx.run(&mut jb, &arr, MS, end);
    let played = rx.played();
    assert_strictly_increasing(&played);
    let st = jb.stats();
    assert_eq!(played.len() as u64 + st.skipped_frames, sent.len() as u64);
    (rx, st, spurts)
}

#[test]
fn silence_suppression_is_not_loss() {
    for (skew, seed) in [(0.0, 8), (0.005, 9), (-0.005, 10)] {
        let (rx, st, spurts) = dtx_run(skew, seed);
        assert!(spurts > 200);
        assert_eq!((st.lost, st.late), (0, 0), "skew {skew}: {st:?}");
        assert!(rx.count(Playout::Empty) > 5_000);
        // Drift is absorbed by lengthening or shortening the silences:
        // speech is touched (a frame skipped or concealed inside a
        // talkspurt) only while the skew estimate converges.
        let mut touched = Vec::new();
        for w in rx.played().windows(2).filter(|w| w[1] == w[0] + 1) {
            let gap = ticks_between(&rx, w[0], w[1]);
            if !gap.is_empty() {
                touched.push(gap[0].at_us);
            }
        }
        let skips = rx
            .ticks
            .windows(2)
            .filter(|w| w[1].stats.skipped_frames > w[0].stats.skipped_frames);
        touched.extend(skips.map(|w| w[1].at_us));
        assert!(
            touched.len() <= 5,
            "skew {skew}: speech touched at {touched:?}"
        );
        assert!(
            touched.iter().all(|&t| t < 20 * S),
            "skew {skew}: {touched:?}"
        );
        // Concealment only where a talkspurt ends (the buffer runs dry
        // before the gap is known), at most 60 ms each.
        assert!(st.concealed_frames <= 3 * spurts as u64 + 5, "{st:?}");
        for t in rx
            .ticks
            .iter()
            .filter(|t| t.frame.is_some() && t.at_us > 20 * S)
        {
            let (d, target) = (t.stats.current_delay_ms, t.stats.target_delay_ms);
            assert!(
                d + 5 >= target && d <= target + 30,
                "delay {d}, target {target}"
            );
        }
    }
}

#[test]
fn sequence_and_timestamp_wrap() {
    let mut rng = Rng::new(11);
    let mut snd = Sender::new(2_000);
    snd.first_seq = 65_000;
    snd.first_ts = u32::MAX - 100_000;
    let sent = snd.packets(&mut rng);
    assert!(sent.iter().any(|p| p.seq < 100) && sent.iter().any(|p| p.ts < 1_000_000));
    let (arr, lost) = network(
        &sent,
        &mut rng,
        |p, r| p.frame < 1_990 && r.chance(0.03),
        |_, r| 20 * MS + (r.uniform() * 30_000.0) as i64,
        0.05,
    );
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 2 * MS, 42 * S);
    let played = rx.played();
    assert_strictly_increasing(&played);
    let st = jb.stats();
    assert_eq!(st.resets, 0);
    assert_eq!(st.lost, lost.len() as u64);
    assert_eq!(
        played.len() as u64 + st.late + st.skipped_frames + st.lost,
        2_000
    );
}

#[test]
fn late_packet_is_counted_late_not_lost() {
    let rx = Receiver::new();
    let mut jb = jb();
    let mut out = [0u8; 200];
    let mut late = None;
    // Frames 0..20 every 20 ms; frame 5 arrives 300 ms late.
    for tick in 0..40i64 {
        let now = tick * 20 * MS;
        for f in 0..20u64 {
            let arrive = f as i64 * 20 * MS + if f == 5 { 300 * MS } else { 0 };
            if arrive == now {
                let o = jb.push(
                    rx.at(now),
                    100 + f as u16,
                    f as u32 * 160,
                    f == 0,
                    &payload(f),
                );
                if f == 5 {
                    late = Some(o);
                }
            }
        }
        jb.pop(rx.at(now + 5 * MS), &mut out);
    }
    assert_eq!(late, Some(PushOutcome::TooLate));
    let st = jb.stats();
    assert_eq!((st.late, st.lost, st.received), (1, 0, 20));
    // A second copy of the late packet is a duplicate.
    assert_eq!(
        jb.push(rx.at(900 * MS), 105, 5 * 160, false, &payload(5)),
        PushOutcome::Duplicate
    );
}

#[test]
fn ssrc_like_jump_resets_and_playout_resumes() {
    let rx = Receiver::new();
    let mut jb = jb();
    let mut out = [0u8; 200];
    for f in 0..50u16 {
        let now = rx.at(i64::from(f) * 20 * MS);
        assert_eq!(
            jb.push(now, f, u32::from(f) * 160, f == 0, &payload(u64::from(f))),
            PushOutcome::Accepted
        );
        jb.pop(now, &mut out);
    }
    // New source: unrelated sequence number.
    let t0 = 1_000 * MS;
    assert_eq!(
        jb.push(rx.at(t0), 40_000, 7, true, &payload(1_000)),
        PushOutcome::Reset
    );
    assert_eq!(jb.len(), 1);
    assert_eq!(jb.pop(rx.at(t0), &mut out), Playout::Buffering);
    // Same sequence space but timestamp jumped by an hour: also a reset.
    let mut played_new = false;
    for k in 1..10u16 {
        let now = rx.at(t0 + i64::from(k) * 20 * MS);
        jb.push(
            now,
            40_000 + k,
            7 + u32::from(k) * 160,
            false,
            &payload(1_000 + u64::from(k)),
        );
        if let Playout::Packet { timestamp, .. } = jb.pop(now, &mut out) {
            assert!(timestamp >= 7);
            played_new = true;
        }
    }
    assert!(played_new);
    let now = rx.at(t0 + 220 * MS);
    assert_eq!(
        jb.push(now, 40_010, 7 + 8000 * 3600, false, &payload(0)),
        PushOutcome::Reset
    );
    assert_eq!(jb.stats().resets, 2);
    // The caller's reset() starts over without counting anything.
    jb.reset();
    assert!(jb.is_empty());
    assert_eq!(jb.pop(now, &mut out), Playout::Empty);
    assert_eq!(jb.push(now, 5, 5, true, &payload(0)), PushOutcome::Accepted);
    assert_eq!(jb.stats().resets, 2);
}

#[test]
fn far_ahead_packet_flushes() {
    let rx = Receiver::new();
    let mut jb = jb();
    for f in 0..10u16 {
        jb.push(rx.at(0), f, u32::from(f) * 160, false, &payload(0));
    }
    assert_eq!(jb.len(), 10);
    // 200 packets ahead: beyond the 64-slot ring.
    let o = jb.push(rx.at(200 * 20 * MS), 200, 200 * 160, false, &payload(0));
    assert_eq!(o, PushOutcome::TooEarly);
    let st = jb.stats();
    assert_eq!(st.discarded_overflow, 10);
    assert_eq!(st.lost, 190);
    assert_eq!(jb.len(), 1);
}

#[test]
fn oversize_payload_and_small_output_are_refused() {
    let rx = Receiver::new();
    let mut jb = jb();
    let big = [0u8; 1501];
    assert_eq!(jb.push(rx.at(0), 1, 0, true, &big), PushOutcome::Oversize);
    assert_eq!(
        jb.push(rx.at(0), 1, 0, true, &[1; 100]),
        PushOutcome::Accepted
    );
    let mut small = [0u8; 10];
    assert_eq!(jb.pop(rx.at(100 * MS), &mut small), Playout::Lost);
    assert_eq!(jb.stats().oversize, 2);
}

#[test]
fn rfc3550_jitter_matches_theory() {
    // Uniform one-way delay on [0, 30] ms: E|D_i - D_j| = 10 ms.
    let mut rng = Rng::new(12);
    let sent = Sender::new(20_000).packets(&mut rng);
    let (arr, _) = network(
        &sent,
        &mut rng,
        no_loss,
        |_, r| 20 * MS + (r.uniform() * 30_000.0) as i64,
        0.0,
    );
    // Consecutive *arrivals* differ less than consecutive sends when packets
    // reorder, so compute the expected value from the trace itself.
    let mut expect = 0.0;
    for w in arr.windows(2) {
        let d = (w[1].at_us - w[0].at_us) - (w[1].pkt.send_us - w[0].pkt.send_us);
        expect += (d.unsigned_abs() as f64 - expect) / 16.0;
    }
    let mut jb = jb();
    let mut rx = Receiver::new();
    rx.run(&mut jb, &arr, 0, 401 * S);
    let j = jb.stats().jitter_ms;
    assert!(
        (j - expect / 1_000.0).abs() < 0.01,
        "{j} vs {}",
        expect / 1_000.0
    );
    assert!((6.0..12.0).contains(&j), "{j}");
}

#[test]
fn arbitrary_input_never_panics_and_keeps_invariants() {
    let mut rng = Rng::new(13);
    let rx = Receiver::new();
    for round in 0..20 {
        let mut c = cfg();
        c.capacity_packets = 22 + round;
        c.max_payload_bytes = 1 + round * 7;
        let mut jb = JitterBuffer::new(c).unwrap();
        let mut out = vec![0u8; (rng.next_u64() % 300) as usize];
        let mut now = 0i64;
        for _ in 0..5_000 {
            // Mostly sane, sometimes wild: random seq/ts jumps, time going
            // backwards, empty and oversize payloads.
            now += (rng.next_u64() % 40_000) as i64 - 5_000;
            let seq = rng.next_u64() as u16 % 400;
            let ts = if rng.chance(0.1) {
                rng.next_u64() as u32
            } else {
                u32::from(seq) * 160
            };
            let len = (rng.next_u64() % 200) as usize;
            let data = [7u8; 200];
            jb.push(rx.at(now), seq, ts, rng.chance(0.1), &data[..len]);
            if rng.chance(0.5) {
                jb.pop(rx.at(now), &mut out);
            }
            if rng.chance(0.001) {
                jb.reset();
            }
            assert!(jb.len() <= c.capacity_packets);
        }
    }
}
