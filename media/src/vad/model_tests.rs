//! Tests that run the real model: ONNX Runtime and `silero_vad.onnx` as fetched by
//! `scripts/fetch_models.sh`, and the reference speech it extracts.
//!
//! Paths: `PARLEY_MEDIA_ONNXRUNTIME` and `PARLEY_MEDIA_VAD_MODEL` when set, otherwise
//! `.cache/models/` under the repository root (`PARLEY_REPO_ROOT`, or the parent of this
//! crate). Without the assets the tests skip with a message on stderr, unless `CI` is set,
//! where a missing asset is a failure.

use std::path::{Path, PathBuf};

use super::*;

fn repo_root() -> PathBuf {
    match std::env::var_os("PARLEY_REPO_ROOT") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

fn in_ci() -> bool {
    matches!(std::env::var("CI"), Ok(v) if !v.is_empty() && v != "0" && v != "false")
}

struct Assets {
    lib: PathBuf,
    model: PathBuf,
    speech: PathBuf,
    reference: PathBuf,
    reference_segments: PathBuf,
    /// The same speech halved to 8 kHz ([`decimate_pairs`]) through the 8 kHz branch.
    reference_8k: PathBuf,
    reference_8k_segments: PathBuf,
}

/// The assets, or `None` (after saying why) when they are missing outside CI.
fn assets(test: &str) -> Option<Assets> {
    let root = repo_root();
    let env_or = |key: &str, default: PathBuf| match std::env::var_os(key) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default,
    };
    let a = Assets {
        lib: env_or(
            ENV_ONNXRUNTIME,
            root.join(".cache/models/libonnxruntime.so.1.22.1"),
        ),
        model: env_or(ENV_VAD_MODEL, root.join(".cache/models/silero_vad.onnx")),
        speech: root.join(".cache/speech/silero_test_16k.wav"),
        reference: root.join("fixtures/vad/silero_test_16k.probs.json"),
        reference_segments: root.join("fixtures/vad/silero_test_16k.segments.json"),
        reference_8k: root.join("fixtures/vad/silero_test_8k.probs.json"),
        reference_8k_segments: root.join("fixtures/vad/silero_test_8k.segments.json"),
    };
    // The reference fixtures are committed: their absence is always a failure.
    for f in [
        &a.reference,
        &a.reference_segments,
        &a.reference_8k,
        &a.reference_8k_segments,
    ] {
        assert!(
            f.is_file(),
            "{test}: {} is missing (scripts/vad_reference.py writes it)",
            f.display()
        );
    }
    let missing: Vec<String> = [&a.lib, &a.model, &a.speech]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(a);
    }
    let what = format!(
        "{test}: VAD assets missing: {} (run scripts/fetch_models.sh)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{what} (CI is set, so this is a failure, not a skip)");
    }
    // Straight to the process's stderr: libtest captures eprintln! of passing tests, and a
    // skip must stay visible.
    let line = format!("SKIPPED {what} (with CI set, this is a failure)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

fn load(a: &Assets, max_batch: usize) -> SileroModel {
    SileroModel::load_with_max_batch(&a.lib, &a.model, max_batch).unwrap()
}

/// Reads a JSON list of flat objects with numeric fields, as scripts/vad_reference.py
/// writes them, returning `keys` of each object in order.
fn read_json_rows(path: &Path, keys: &[&str]) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let field = |obj: &str, key: &str| -> f64 {
        let at = obj
            .find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{}: no {key} in {obj}", path.display()));
        let rest = obj[at + key.len() + 2..].trim_start();
        let rest = rest.strip_prefix(':').unwrap().trim_start();
        rest.split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let rows: Vec<Vec<f64>> = text
        .split('{')
        .skip(1)
        .map(|obj| keys.iter().map(|k| field(obj, k)).collect())
        .collect();
    assert!(!rows.is_empty(), "{}: empty", path.display());
    rows
}

/// The reference probabilities: `[{"t_ms": 0, "p": 0.5}, ...]`.
fn read_reference(path: &Path) -> Vec<(u32, f32)> {
    read_json_rows(path, &["t_ms", "p"])
        .into_iter()
        .map(|r| (r[0] as u32, r[1] as f32))
        .collect()
}

/// The reference segments: `[{"start_ms": 2, "end_ms": 2046}, ...]`.
fn read_reference_segments(path: &Path) -> Vec<Segment> {
    read_json_rows(path, &["start_ms", "end_ms"])
        .into_iter()
        .map(|r| Segment {
            start_ms: r[0] as u32,
            end_ms: r[1] as u32,
        })
        .collect()
}

/// Every window within 0.01 of the reference, with the same timing.
fn assert_matches_reference(what: &str, got: &[(u32, f32)], reference: &[(u32, f32)]) {
    assert_eq!(got.len(), reference.len(), "{what}: window count");
    let mut worst = (0.0f32, 0u32);
    for (&(t, p), &(rt, rp)) in got.iter().zip(reference) {
        assert_eq!(t, rt, "{what}: window timing");
        let d = (p - rp).abs();
        assert!(
            d <= 0.01,
            "{what}: window at {t} ms: p = {p}, reference {rp}"
        );
        if d > worst.0 {
            worst = (d, t);
        }
    }
    eprintln!(
        "{what}: {} windows, largest difference {:.2e} at {} ms",
        got.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn probabilities_match_the_python_reference_on_real_speech() {
    let Some(a) = assets("probabilities_match_the_python_reference_on_real_speech") else {
        return;
    };
    let reference = read_reference(&a.reference);
    let mut model = load(&a, 4);
    let (probs, segments) = analyze_wav(&mut model, &a.speech, SegmenterConfig::default()).unwrap();
    assert_matches_reference("analyze_wav", &probs, &reference);

    // The segments are those the package's get_speech_timestamps finds with the same
    // (default) settings. Exact: no reference probability lies within 0.004 of the
    // thresholds (0.5, 0.35), and Parley's differ from them by about 1e-6.
    let expected = read_reference_segments(&a.reference_segments);
    assert_eq!(segments, expected);
    assert!(segments.len() >= 10, "{segments:?}");
}

/// 16 kHz to 8 kHz exactly as scripts/vad_reference.py does for its 8 kHz fixture: each
/// pair of samples averaged in integer arithmetic, `(x[2n] + x[2n+1]) >> 1`.
fn decimate_pairs(x: &[i16]) -> Vec<i16> {
    x.chunks_exact(2)
        .map(|p| ((i32::from(p[0]) + i32::from(p[1])) >> 1) as i16)
        .collect()
}

/// The 8 kHz branch, as narrowband calls use it, against the package on the same samples.
#[test]
fn narrowband_probabilities_match_the_python_reference() {
    let Some(a) = assets("narrowband_probabilities_match_the_python_reference") else {
        return;
    };
    let reference = read_reference(&a.reference_8k);
    let speech = crate::wav::read_wav(&a.speech).unwrap();
    let narrow = decimate_pairs(&speech.samples);
    let mut model = load(&a, 1);
    let (probs, segments) = analyze_samples(
        &mut model,
        &narrow,
        VadRate::Narrowband,
        SegmenterConfig::default(),
    )
    .unwrap();
    assert_matches_reference("8 kHz analyze_samples", &probs, &reference);
    assert_eq!(segments, read_reference_segments(&a.reference_8k_segments));
}

/// Total time two sets of segments share.
fn overlap_ms(a: &[Segment], b: &[Segment]) -> u32 {
    let mut total = 0;
    for x in a {
        for y in b {
            total += x
                .end_ms
                .min(y.end_ms)
                .saturating_sub(x.start_ms.max(y.start_ms));
        }
    }
    total
}

/// The diagnostic on a telephone-rate file: the reference speech low-passed to 8 kHz (as a
/// caller's audio arrives), run through the 8 kHz branch as a narrowband call's is, finds
/// the speech the 16 kHz reference found.
#[test]
fn analyze_wav_runs_an_8khz_recording_narrowband() {
    let Some(a) = assets("analyze_wav_runs_an_8khz_recording_narrowband") else {
        return;
    };
    let speech = crate::wav::read_wav(&a.speech).unwrap();
    let narrow = resample_to_8k_for_test(&speech.samples);
    let path = std::env::temp_dir().join(format!("parley-vad-{}-8k.wav", std::process::id()));
    let mut w = crate::wav::WavWriter::create(&path, 8000).unwrap();
    w.write_samples(&narrow).unwrap();
    w.finalize().unwrap();
    let mut model = load(&a, 1);
    let result = analyze_wav(&mut model, &path, SegmenterConfig::default());
    std::fs::remove_file(&path).ok();
    let (probs, segments) = result.unwrap();
    let reference = read_reference_segments(&a.reference_segments);
    assert_eq!(probs.len(), 1875);
    let speech_ms: u32 = reference.iter().map(|s| s.end_ms - s.start_ms).sum();
    let found_ms: u32 = segments.iter().map(|s| s.end_ms - s.start_ms).sum();
    let shared = overlap_ms(&segments, &reference);
    eprintln!("8 kHz: {found_ms} ms of speech found, {shared} of the reference's {speech_ms} ms");
    assert!(shared * 100 >= speech_ms * 95, "{segments:?}");
    assert!(found_ms * 100 <= speech_ms * 105, "{segments:?}");
}

/// 16 kHz to 8 kHz for the test above: a 31-tap windowed-sinc low-pass at 3.6 kHz, then
/// every other sample.
fn resample_to_8k_for_test(x: &[i16]) -> Vec<i16> {
    let taps: Vec<f64> = (-15i32..=15)
        .map(|n| {
            let n = f64::from(n);
            let sinc = if n == 0.0 {
                0.45
            } else {
                (std::f64::consts::PI * 0.45 * n).sin() / (std::f64::consts::PI * n)
            };
            let window = 0.54 + 0.46 * (std::f64::consts::PI * n / 15.0).cos();
            sinc * window
        })
        .collect();
    (0..x.len() / 2)
        .map(|i| {
            let c = 2 * i as i64;
            let acc: f64 = taps
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    let j = c + k as i64 - 15;
                    if j < 0 || j >= x.len() as i64 {
                        0.0
                    } else {
                        t * f64::from(x[j as usize])
                    }
                })
                .sum();
            acc.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Streams fed 20 ms at a time through the batcher, with different start times, a burst
/// and more streams than the maximum batch, each get the reference probabilities.
#[test]
fn batched_streams_each_match_the_reference() {
    let Some(a) = assets("batched_streams_each_match_the_reference") else {
        return;
    };
    let reference = read_reference(&a.reference);
    let speech = crate::wav::read_wav(&a.speech).unwrap();
    assert_eq!(speech.sample_rate, 16000);
    let pcm = &speech.samples;

    let reference_8k = read_reference(&a.reference_8k);
    let narrow_pcm = decimate_pairs(pcm);

    struct Call {
        stream: VadStream,
        /// 8 kHz audio (the decimated speech, 160 samples a frame) or 16 kHz.
        narrow: bool,
        /// Tick at which this call starts sending.
        start_tick: usize,
        /// Frames sent per push (a burst every `burst` ticks).
        burst: usize,
        sent: usize,
        probs: Vec<(u32, f32)>,
        events: Vec<SpeechEvent>,
        speech: bool,
    }
    let call = |start_tick, burst, speech, narrow| Call {
        stream: VadStream::with_rate(
            SegmenterConfig::default(),
            if narrow {
                VadRate::Narrowband
            } else {
                VadRate::Wideband
            },
        )
        .unwrap(),
        narrow,
        start_tick,
        burst,
        sent: 0,
        probs: Vec::new(),
        events: Vec::new(),
        speech,
    };
    let mut calls = vec![
        call(0, 1, true, false),
        call(7, 1, true, false),
        call(3, 3, true, false),
        call(0, 1, false, false),
        call(11, 1, true, false),
        call(2, 1, true, true),
        call(5, 2, true, true),
    ];
    // Max batch 2 with up to 5 streams of a rate ready: several model runs per tick and rate.
    let mut batcher = VadBatcher::new(load(&a, 2));
    let frames = pcm.len().div_ceil(320);
    let silence = [0i16; 320];
    for tick in 0.. {
        let mut active = false;
        for c in calls.iter_mut() {
            if tick < c.start_tick || c.sent >= frames {
                continue;
            }
            active = true;
            if (tick - c.start_tick) % c.burst == c.burst - 1 || c.burst == 1 {
                for _ in 0..c.burst {
                    if c.sent < frames {
                        let (src, n) = if c.narrow {
                            (&narrow_pcm[..], 160)
                        } else {
                            (&pcm[..], 320)
                        };
                        let frame = if c.speech {
                            &src[c.sent * n..((c.sent + 1) * n).min(src.len())]
                        } else {
                            &silence[..]
                        };
                        c.stream.push_pcm(frame);
                        c.sent += 1;
                    }
                }
            }
        }
        if !active {
            break;
        }
        batcher
            .run(
                &mut calls,
                |c| &mut c.stream,
                |_, c, out| {
                    c.probs.push((out.t_ms, out.prob));
                    c.events.extend(out.event);
                },
            )
            .unwrap();
        // Nothing processable is left pending.
        assert!(calls.iter().all(|c| !c.stream.window_ready()));
    }
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(c.stream.dropped_samples(), 0);
        if c.speech {
            let reference = if c.narrow { &reference_8k } else { &reference };
            assert_matches_reference(&format!("stream {i}"), &c.probs, reference);
        } else {
            assert_eq!(c.probs.len(), reference.len());
            assert!(c.probs.iter().all(|&(_, p)| p < 0.1), "silence stream");
            assert!(c.events.is_empty());
        }
    }
    // The streams that heard the same speech found the same speech starts and ends.
    assert!(!calls[0].events.is_empty());
    let times = |c: &Call| {
        c.events
            .iter()
            .map(|e| (e.kind, e.t_ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(times(&calls[0]), times(&calls[1]));
    assert_eq!(times(&calls[0]), times(&calls[2]));
    assert!(!calls[5].events.is_empty());
    assert_eq!(times(&calls[5]), times(&calls[6]));
}

#[test]
fn batch_rows_are_independent_of_each_other() {
    let Some(a) = assets("batch_rows_are_independent_of_each_other") else {
        return;
    };
    let mut model = load(&a, 8);
    // Distinct inputs (tones of different pitch and level) and states.
    let mut inputs = [[0.0f32; INPUT_SAMPLES]; 5];
    let mut states = [[0.0f32; STATE_LEN]; 5];
    for (b, row) in inputs.iter_mut().enumerate() {
        for (i, x) in row.iter_mut().enumerate() {
            let f = 200.0 + 150.0 * b as f32;
            *x = 0.1
                * (b as f32 + 1.0)
                * (2.0 * std::f32::consts::PI * f * i as f32 / 16000.0).sin();
        }
    }
    // Warm the states up with a few windows so they are not all zeros.
    let mut p = [0.0f32; 5];
    for _ in 0..3 {
        model
            .infer_batch(
                VadRate::Wideband,
                inputs.as_flattened(),
                &mut states,
                &mut p,
            )
            .unwrap();
    }
    assert!(states.iter().all(|s| s.iter().any(|&x| x != 0.0)));
    assert!(states[0] != states[1]);

    let mut batched_states = states;
    let mut batched = [0.0f32; 5];
    model
        .infer_batch(
            VadRate::Wideband,
            inputs.as_flattened(),
            &mut batched_states,
            &mut batched,
        )
        .unwrap();
    for b in 0..5 {
        let mut st = [states[b]];
        let mut one = [0.0f32];
        model
            .infer_batch(VadRate::Wideband, &inputs[b], &mut st, &mut one)
            .unwrap();
        assert!(
            (one[0] - batched[b]).abs() < 1e-5,
            "row {b}: {} vs {}",
            one[0],
            batched[b]
        );
        let worst = st[0]
            .iter()
            .zip(&batched_states[b])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "row {b}: state differs by {worst}");
    }
    // The state really matters: the same input from a zero state gives another answer.
    let mut zero = [[0.0f32; STATE_LEN]];
    let mut q = [0.0f32];
    model
        .infer_batch(VadRate::Wideband, &inputs[4], &mut zero, &mut q)
        .unwrap();
    assert!((q[0] - batched[4]).abs() > 1e-6 || zero[0] != batched_states[4]);
}

#[test]
fn batch_shape_errors() {
    let Some(a) = assets("batch_shape_errors") else {
        return;
    };
    let mut model = load(&a, 2);
    assert_eq!(model.max_batch(), 2);
    let inputs = [[0.0f32; INPUT_SAMPLES]; 3];
    let inputs = inputs.as_flattened();
    let wb = VadRate::Wideband;
    let mut states = [[0.0f32; STATE_LEN]; 3];
    let mut probs = [0.0f32; 3];
    let e = model
        .infer_batch(wb, inputs, &mut states, &mut probs)
        .unwrap_err();
    assert!(
        matches!(e, VadError::BatchTooLarge { got: 3, max: 2 }),
        "{e}"
    );
    let e = model
        .infer_batch(wb, &inputs[..2 * 576], &mut states[..1], &mut probs[..2])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "VAD batch slices disagree: 1152 input samples (576 per row), 1 states, 2 probabilities"
    );
    // 16 kHz rows handed over as 8 kHz ones: 576 is two 288-sample rows, 578 is ragged.
    let e = model
        .infer_batch(
            VadRate::Narrowband,
            &inputs[..578],
            &mut states[..2],
            &mut probs[..2],
        )
        .unwrap_err();
    assert!(matches!(e, VadError::BatchMismatch { row: 288, .. }), "{e}");
    model.infer_batch(wb, &[], &mut [], &mut []).unwrap();
    model
        .infer_batch(wb, &inputs[..2 * 576], &mut states[..2], &mut probs[..2])
        .unwrap();
    assert!(probs[..2].iter().all(|p| (0.0..=1.0).contains(p)));
    model
        .infer_batch(
            VadRate::Narrowband,
            &inputs[..2 * 288],
            &mut states[..2],
            &mut probs[..2],
        )
        .unwrap();
    assert!(probs[..2].iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(matches!(
        SileroModel::load_with_max_batch(&a.lib, &a.model, 0),
        Err(VadError::InvalidConfig {
            field: "max_batch",
            ..
        })
    ));
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("parley-vad-{}-{name}", std::process::id()));
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn missing_files_are_named_with_their_setting() {
    // Needs no assets: both are checked before anything is loaded.
    let nowhere = Path::new("/nonexistent/parley/silero_vad.onnx");
    let e = SileroModel::load(Path::new("/nonexistent/libonnxruntime.so"), nowhere).unwrap_err();
    assert!(matches!(e, VadError::ModelMissing { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/parley/silero_vad.onnx")
            && msg.contains("PARLEY_MEDIA_VAD_MODEL"),
        "{msg}"
    );

    let model = temp_file("model-placeholder.onnx", b"not read");
    let e =
        SileroModel::load(Path::new("/nonexistent/libonnxruntime.so.1.22.1"), &model).unwrap_err();
    std::fs::remove_file(&model).ok();
    assert!(matches!(e, VadError::RuntimeMissing { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/libonnxruntime.so.1.22.1")
            && msg.contains("PARLEY_MEDIA_ONNXRUNTIME")
            && msg.contains("scripts/fetch_models.sh"),
        "{msg}"
    );
}

#[test]
fn unusable_model_and_second_runtime_are_refused() {
    let Some(a) = assets("unusable_model_and_second_runtime_are_refused") else {
        return;
    };
    // Load the runtime for this process first.
    load(&a, 1);
    let garbage = temp_file("garbage.onnx", b"this is not an ONNX model");
    let e = SileroModel::load(&a.lib, &garbage).unwrap_err();
    std::fs::remove_file(&garbage).ok();
    assert!(matches!(e, VadError::ModelLoad { .. }), "{e}");
    assert!(e.to_string().contains("garbage.onnx"), "{e}");

    // Another file as the runtime, once one is loaded: refused by name, not loaded.
    let e = SileroModel::load(&a.model, &a.model).unwrap_err();
    assert!(matches!(e, VadError::RuntimeConflict { .. }), "{e}");
    assert!(e.to_string().contains("silero_vad.onnx"), "{e}");
}
