//! Real calls from sipp (Debian `sip-tester`) to the real `parley serve` on 127.0.0.1.
//!
//! One test per scenario in `sip-configs/sipp/`. Each test starts its own Parley on free
//! ports, runs one sipp call and asserts on sipp's verdict (its own statistics), on what
//! Parley reports (`/metrics`) and, for the speech call, on the recorded WAV.
//!
//! Without sipp on PATH these tests are skipped (with a message on stderr), unless CI is
//! set, in which case they fail.

mod support;

use std::time::Duration;

use support::{read_wav, run_sipp, wait_for_file, Parley, Sipp};

/// After a call is over, Parley must not keep it: active calls drop back to 0 and its RTP
/// ports return to the pool.
fn assert_no_call_left(parley: &Parley) {
    parley.wait_for_metric("parley_active_calls", 0.0, Duration::from_secs(10));
    parley.wait_for_metric("parley_rtp_ports_in_use", 0.0, Duration::from_secs(10));
}

fn recordings_listing(parley: &Parley) -> String {
    let dir = parley.data_dir.join("recordings");
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                format!("  {} ({len} bytes)", e.file_name().to_string_lossy())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("  cannot list {}: {e}", dir.display()),
    }
}

#[test]
fn speech_call_is_recorded() {
    if !support::require_sipp("speech_call_is_recorded") {
        return;
    }
    let speech = support::speech_pcmu_wav();
    let greeting = support::speech_s16_wav();
    let have_fixtures = speech.exists() && greeting.exists();
    if !support::require(
        "speech_call_is_recorded",
        "speech fixtures in .cache/speech/ are missing (scripts/setup.sh makes them)",
        have_fixtures,
    ) {
        return;
    }
    // sipp's rtp_stream sends the file's bytes as PCMU at 8000 bytes per second.
    let streamed_bytes = std::fs::metadata(&speech).unwrap().len();
    let streamed = Duration::from_secs_f64(streamed_bytes as f64 / 8000.0);
    // Wait a little longer than the stream before the BYE, so all of it is sent.
    let pause_ms = streamed.as_millis() as u64 + 300;

    let greeting_path = greeting.to_string_lossy().into_owned();
    let parley = Parley::start(&[("PARLEY_MEDIA_GREETING", greeting_path.as_str())]);
    let out = run_sipp("uac_speech", &parley, &["-d", &pause_ms.to_string()]);
    out.assert_success();

    let path = parley.recording_path(&out.call_id);
    let wav = wait_for_file(&path, Duration::from_secs(15), read_wav).unwrap_or_else(|e| {
        panic!(
            "no finalized recording for call {}: {e}\nrecordings:\n{}",
            out.call_id,
            recordings_listing(&parley)
        )
    });
    assert_eq!(
        (
            wav.format_tag,
            wav.channels,
            wav.sample_rate,
            wav.bits_per_sample
        ),
        (1, 1, 16000, 16),
        "recording must be 16 kHz (the engine rate) mono 16-bit PCM (format tag, channels, rate, bits)"
    );
    let got = wav.duration().as_secs_f64();
    let want = streamed.as_secs_f64();
    assert!(
        (got - want).abs() <= 0.2 * want,
        "recording lasts {got:.2} s; the caller streamed {want:.2} s of speech before its BYE \
         (allowed: +/-20%)"
    );
    let rms = wav.rms();
    assert!(
        rms > 0.01,
        "recording is (nearly) silent: RMS {rms:.5} of full scale; the caller sent speech \
         normalized to -3 dBFS"
    );
    assert_no_call_left(&parley);
}

#[test]
fn parley_hangs_up_at_max_duration() {
    if !support::require_sipp("parley_hangs_up_at_max_duration") {
        return;
    }
    let parley = Parley::start(&[("PARLEY_CALL_MAX_DURATION_S", "2")]);
    let out = run_sipp("uac_parley_hangs_up", &parley, &[]);
    out.assert_success();
    assert!(
        out.elapsed >= Duration::from_secs(2),
        "Parley hung up after {:?}, before call.max_duration_s = 2\n{}",
        out.elapsed,
        out.report()
    );
    assert!(
        out.elapsed < Duration::from_secs(15),
        "Parley took {:?} to hang up a call limited to 2 s\n{}",
        out.elapsed,
        out.report()
    );
    assert_no_call_left(&parley);
}

#[test]
fn cancel_before_answer() {
    if !support::require_sipp("cancel_before_answer") {
        return;
    }
    // Ring for 10 s before answering: sipp cancels after the 180.
    let parley = Parley::start(&[("PARLEY_SIP_RING_MS", "10000")]);
    let out = run_sipp("uac_cancel", &parley, &[]);
    out.assert_success();
    assert!(
        out.elapsed < Duration::from_secs(10),
        "CANCEL took {:?}: Parley seems to have waited for the ring time\n{}",
        out.elapsed,
        out.report()
    );
    assert_no_call_left(&parley);
}

#[test]
fn options_lists_methods() {
    if !support::require_sipp("options_lists_methods") {
        return;
    }
    let parley = Parley::start(&[]);
    let out = run_sipp("options", &parley, &[]);
    out.assert_success();
    assert_no_call_left(&parley);
}

#[test]
fn reinvite_hold_and_unhold() {
    if !support::require_sipp("reinvite_hold_and_unhold") {
        return;
    }
    let parley = Parley::start(&[]);
    let out = run_sipp("uac_reinvite", &parley, &[]);
    out.assert_success();
    assert_no_call_left(&parley);
}

#[test]
fn busy_at_capacity_gets_503() {
    if !support::require_sipp("busy_at_capacity_gets_503") {
        return;
    }
    let parley = Parley::start(&[
        ("PARLEY_SIP_MAX_CALLS", "1"),
        // The holding call sends no RTP; keep Parley from ending it during the test.
        ("PARLEY_MEDIA_RTP_TIMEOUT_S", "300"),
    ]);
    let mut hold = Sipp::spawn("uac_hold_call", &parley, &[]);

    // Wait until the first call fills the only slot (or fail early if it did not get up).
    let mut last = String::new();
    let full = support::poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        if !hold.is_running() {
            return Some(false);
        }
        last = parley.metrics();
        (support::metric_value(&last, "parley_active_calls") == Some(1.0)).then_some(true)
    });
    match full {
        Some(true) => {}
        Some(false) => panic!(
            "the holding call ended before Parley reported it active\n{}",
            hold.wait(Duration::from_secs(1)).report()
        ),
        None => panic!(
            "Parley never reported parley_active_calls 1 for the holding call; last /metrics:\n\
             {last}"
        ),
    }

    let busy = run_sipp("uac_expect_503", &parley, &[]);
    let still_up = hold.is_running();
    let hold_outcome = hold.kill();
    busy.assert_success();
    assert!(
        still_up,
        "the holding call ended while the second call was tried\n{}",
        hold_outcome.report()
    );
    // The refused call took no slot.
    assert_eq!(
        support::metric_value(&parley.metrics(), "parley_active_calls"),
        Some(1.0),
        "after the 503, only the holding call may be active"
    );
}

#[test]
fn missing_ack_ends_call_with_bye() {
    if !support::require_sipp("missing_ack_ends_call_with_bye") {
        return;
    }
    // T1 = 50 ms: Timer H (64 * T1) fires 3.2 s after the 200.
    let parley = Parley::start(&[("PARLEY_SIP_T1_MS", "50")]);
    let out = run_sipp("uac_no_ack", &parley, &[]);
    out.assert_success();
    // Message 4 of uac_no_ack.xml is the 200; sipp counts its identical repeats.
    let retransmitted = out.count("4_200_Retrans");
    assert!(
        retransmitted >= 1,
        "sipp saw no retransmission of the unacknowledged 200 OK (Timer G); counts: {:?}\n{}",
        out.counts,
        out.report()
    );
    assert_eq!(
        out.count("5_BYE_Recv"),
        1,
        "no BYE after Timer H\n{}",
        out.report()
    );
    assert!(
        out.elapsed < Duration::from_secs(20),
        "the BYE came {:?} after the call started; Timer H is 3.2 s with T1 = 50 ms\n{}",
        out.elapsed,
        out.report()
    );
    assert_no_call_left(&parley);
}

#[test]
fn silent_caller_is_hung_up_after_rtp_timeout() {
    if !support::require_sipp("silent_caller_is_hung_up_after_rtp_timeout") {
        return;
    }
    // sipp sends no RTP in this scenario: after media.rtp_timeout_s Parley ends the call.
    let parley = Parley::start(&[("PARLEY_MEDIA_RTP_TIMEOUT_S", "1")]);
    let out = run_sipp("uac_parley_hangs_up", &parley, &[]);
    out.assert_success();
    assert!(
        out.elapsed >= Duration::from_secs(1) && out.elapsed < Duration::from_secs(15),
        "hung up after {:?}\n{}",
        out.elapsed,
        out.report()
    );
    parley.wait_for_metric(
        "parley_calls_rtp_timeout_total",
        1.0,
        Duration::from_secs(5),
    );
    assert_no_call_left(&parley);
}
