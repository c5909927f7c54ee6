//! Load harness (not a test of behaviour; `#[ignore]`d, run by `scripts/bench_cdrs.sh`):
//! do call records ever reach the media path? A release Parley carries N calls with RTP in
//! both directions (the speech fixture looping, VAD on); after a quiet window, 1,000 short
//! calls arrive and end, each writing its record (with its lease reserved and released)
//! while the N calls go on. Reported as one JSON line: how late the media ticks started in
//! each window (`parley_media_tick_delay_seconds`), late ticks, and when the 1,000th record
//! was in the database.
//!
//! Settings: `CDR_LOAD_CALLS` (media calls held, default 100), `CDR_LOAD_RECORDS` (short
//! calls, default 1000), `CDR_LOAD_RATE` (their calls per second, default 200).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The tick-delay histogram's cumulative buckets: (upper bound in s, count).
fn tick_delays(metrics: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("parley_media_tick_delay_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// What a window's ticks looked like, from /metrics before and after it.
fn window(before: &str, after: &str, seconds: f64) -> serde_json::Value {
    let (b, a) = (tick_delays(before), tick_delays(after));
    let buckets: Vec<(f64, f64)> = a
        .iter()
        .zip(&b)
        .map(|((le, n1), (_, n0))| (*le, n1 - n0))
        .collect();
    let total = buckets.last().map_or(0.0, |x| x.1);
    let within = |bound: f64| {
        buckets
            .iter()
            .find(|(le, _)| (*le - bound).abs() < 1e-9)
            .map_or(0.0, |x| x.1)
    };
    // The smallest bucket bound holding 99 % (and all) of the window's ticks.
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map(|(le, _)| {
                if le.is_finite() {
                    le * 1e3
                } else {
                    f64::INFINITY
                }
            })
    };
    let late = |m: &str| metric_value(m, "parley_media_late_ticks_total").unwrap_or(0.0);
    serde_json::json!({
        "seconds": seconds,
        "ticks": total,
        "late_ticks": late(after) - late(before),
        "ticks_over_1ms": total - within(0.001),
        "ticks_over_5ms": total - within(0.005),
        "p99_delay_ms_at_most": quantile(0.99),
        "max_delay_ms_at_most": quantile(1.0),
    })
}

/// How many records the operator's account has, streamed from the export.
fn records(parley: &Parley, key: &str) -> usize {
    let (status, body) = http_request_with(
        parley.http_addr,
        "GET",
        "/v1/cdrs/export?format=ndjson",
        Some(key),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    body.lines().filter(|l| l.starts_with('{')).count()
}

#[test]
#[ignore = "a load benchmark: scripts/bench_cdrs.sh"]
fn call_records_stay_off_the_media_path() {
    let calls = env_u64("CDR_LOAD_CALLS", 100);
    let short = env_u64("CDR_LOAD_RECORDS", 1000);
    let rate = env_u64("CDR_LOAD_RATE", 200);
    let model = repo_root().join(".cache/models/silero_vad.onnx");
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    assert!(
        model.exists() && sipp_available(),
        "needs the VAD model and sipp (make test installs them)"
    );
    let (lib, model) = (
        lib.to_string_lossy().to_string(),
        model.to_string_lossy().to_string(),
    );
    let max_calls = (calls + short + 10).to_string();
    let parley = Parley::launch(Launch {
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", &lib),
            ("PARLEY_MEDIA_VAD_MODEL", &model),
            ("PARLEY_MEDIA_RECORD", "false"),
            ("PARLEY_SIP_MAX_CALLS", &max_calls),
            ("PARLEY_SIP_RING_MS", "0"),
            ("PARLEY_AGENT_MODE", "off"),
            ("PARLEY_LOG", "warn"),
        ],
        rtp_ports: Some((20_000, 31_999)),
        ..Launch::default()
    });
    let root = parley.printed_admin_key();
    let dir = parley.scratch_dir("load");
    write_conversation(&dir);
    let ramp_s = calls / 10 + 1;
    let call_ms = (ramp_s + 120) * 1000;
    let mut held = Command::new("sipp")
        .arg(parley.sip_addr.to_string())
        .arg("-sf")
        .arg(repo_root().join("sip-configs/sipp/uac_conversation.xml"))
        .args([
            "-m",
            &calls.to_string(),
            "-l",
            &calls.to_string(),
            "-r",
            "10",
        ])
        .args(["-d", &call_ms.to_string()])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_udp_block(4).to_string()])
        .args(["-s", "media", "-nostdin", "-timeout", "300s"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    parley.wait_for_metric(
        "parley_active_calls",
        calls as f64,
        Duration::from_secs(ramp_s + 30),
    );
    std::thread::sleep(Duration::from_secs(5));

    // The quiet window: the media calls alone, as long as the burst will take.
    let burst_s = (short / rate).max(1) + 2;
    let m0 = parley.metrics();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(burst_s));
    let m1 = parley.metrics();
    let quiet = window(&m0, &m1, t0.elapsed().as_secs_f64());

    // The burst: short calls (INVITE, 200, ACK, BYE), each ending in a record.
    let before = records(&parley, &root);
    let t1 = Instant::now();
    let mut burst = Command::new("sipp")
        .arg(parley.sip_addr.to_string())
        .args(["-sn", "uac", "-s", "records"])
        .args([
            "-m",
            &short.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "2000",
        ])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-nostdin", "-timeout", "120s"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    let written = poll_until(Duration::from_secs(120), Duration::from_millis(200), || {
        let n = records(&parley, &root) - before;
        (n as u64 >= short).then_some(n)
    });
    let m2 = parley.metrics();
    let busy = window(&m1, &m2, t1.elapsed().as_secs_f64());
    let _ = burst.wait();
    let active = metric_value(&m2, "parley_active_calls").unwrap_or(0.0);
    let _ = held.kill();
    let _ = held.wait();
    let result = serde_json::json!({
        "media_calls": calls,
        "media_calls_active_at_end": active,
        "records_written": written.unwrap_or(0),
        "records_seconds": t1.elapsed().as_secs_f64(),
        "quiet": quiet,
        "while_writing_records": busy,
    });
    println!("{result}");
    assert!(written.is_some(), "not every record was written: {result}");
}
