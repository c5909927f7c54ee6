//! A real sipp call streams speech over RTP; the VAD inside Parley's media workers must report
//! speech start and end at the times the offline analysis of the same audio finds
//! (`parley media vad`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// (kind, t_ms) of every "speech" event in Parley's JSON log.
fn speech_events(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "speech")
        .map(|v| {
            let f = &v["fields"];
            (
                f["kind"].as_str().unwrap_or_default().to_string(),
                f["t_ms"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Segments from `parley media vad` on the same speech.
fn offline_segments(wav: &std::path::Path) -> Vec<(u64, u64)> {
    let out = Command::new(parley_bin())
        .args(["media", "vad"])
        .arg(wav)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("segment").is_some())
        .map(|v| {
            (
                v["segment"]["start_ms"].as_u64().unwrap(),
                v["segment"]["end_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn streamed_speech_yields_vad_events_at_the_right_times() {
    let name = "streamed_speech_yields_vad_events_at_the_right_times";
    if !require_sipp(name) {
        return;
    }
    let models = repo_root().join(".cache/models/silero_vad.onnx");
    if !require(
        name,
        "the VAD model (scripts/fetch_models.sh)",
        models.exists(),
    ) {
        return;
    }
    let lib = repo_root().join(".cache/models/libonnxruntime.so.1.22.1");
    let (lib, models) = (lib.to_string_lossy(), models.to_string_lossy());
    let parley = Parley::launch(Launch {
        args: &["--log-format", "json"],
        env: &[
            ("PARLEY_MEDIA_ONNXRUNTIME", lib.as_ref()),
            ("PARLEY_MEDIA_VAD_MODEL", models.as_ref()),
        ],
        ..Launch::default()
    });
    let out = run_sipp("uac_speech", &parley, &["-d", "6000"]);
    out.assert_success();
    parley.wait_for_metric("parley_active_calls", 0.0, Duration::from_secs(10));
    let reference = offline_segments(&speech_s16_wav());
    assert!(
        reference.len() >= 2,
        "the fixture has several phrases: {reference:?}"
    );
    let events = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let e = speech_events(&parley.logs());
        (e.len() >= reference.len() * 2).then_some(e)
    })
    .unwrap_or_else(|| speech_events(&parley.logs()));
    let starts: Vec<u64> = events
        .iter()
        .filter(|(k, _)| k == "Start")
        .map(|e| e.1)
        .collect();
    let ends: Vec<u64> = events
        .iter()
        .filter(|(k, _)| k == "End")
        .map(|e| e.1)
        .collect();
    assert_eq!(
        starts.len(),
        reference.len(),
        "starts {starts:?} vs {reference:?}"
    );
    assert_eq!(
        ends.len(),
        reference.len(),
        "ends {ends:?} vs {reference:?}"
    );
    // The live path adds G.711, the jitter buffer's first playout delay and sipp's WAV
    // header sent as audio; 150 ms covers those.
    for ((s, e), (rs, re)) in starts.iter().zip(&ends).zip(&reference) {
        assert!(s.abs_diff(*rs) <= 150, "start {s} ms vs offline {rs} ms");
        assert!(e.abs_diff(*re) <= 150, "end {e} ms vs offline {re} ms");
    }
    let windows = metric_value(&parley.metrics(), "parley_vad_windows_total").unwrap_or(0.0);
    assert!(
        windows >= 150.0,
        "about 5.7 s of 32 ms windows were inferred: {windows}"
    );
}
