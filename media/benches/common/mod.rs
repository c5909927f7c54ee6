//! Inputs shared by the media benches: speech at 8 and 16 kHz, cut into 20 ms frames, and
//! the paths of the VAD's runtime and model.
//!
//! Speech comes from the project's fetched samples (`.cache/speech/`, see
//! scripts/fetch_models.sh) when they are there; otherwise a synthetic voiced signal (a
//! harmonic series with a gliding pitch and a syllable-rate envelope) stands in, and the
//! bench says so on stderr. Either way the frames are not silence.

#![allow(dead_code)] // each bench uses a different part

use std::path::{Path, PathBuf};

/// The repository root (`PARLEY_REPO_ROOT` overrides).
pub fn repo_root() -> PathBuf {
    match std::env::var_os("PARLEY_REPO_ROOT") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

fn path_from(key: &str, default: PathBuf) -> PathBuf {
    match std::env::var_os(key) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default,
    }
}

/// ONNX Runtime library and Silero model paths, as the `vad` bench finds them.
pub fn vad_paths() -> (PathBuf, PathBuf) {
    let root = repo_root();
    (
        path_from(
            parley_media::vad::ENV_ONNXRUNTIME,
            root.join(".cache/models/libonnxruntime.so.1.22.1"),
        ),
        path_from(
            parley_media::vad::ENV_VAD_MODEL,
            root.join(".cache/models/silero_vad.onnx"),
        ),
    )
}

/// A few seconds (at least) of speech at `rate` (8000 or 16000 Hz).
pub fn speech(rate: u32) -> Vec<i16> {
    let file = match rate {
        8000 => "speech_8k_s16.wav",
        16000 => "silero_test_16k.wav",
        _ => "",
    };
    let path = repo_root().join(".cache/speech").join(file);
    match parley_media::read_wav(&path) {
        Ok(a) if a.sample_rate == rate && a.samples.len() >= rate as usize => a.samples,
        _ => {
            eprintln!(
                "note: {} not found or unusable; using a synthetic voiced signal at {rate} Hz",
                path.display()
            );
            synthetic_voice(rate, 10 * rate as usize)
        }
    }
}

/// A voiced, speech-like signal: 12 harmonics of a pitch gliding between 100 and 180 Hz,
/// with a 1/k spectral tilt, shaped by a 4 Hz syllable envelope that never reaches zero.
pub fn synthetic_voice(rate: u32, len: usize) -> Vec<i16> {
    let mut phase = 0.0f64;
    let mut noise = 0x1234_5678u32;
    (0..len)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = 140.0 + 40.0 * (std::f64::consts::TAU * 0.7 * t).sin();
            phase += std::f64::consts::TAU * f0 / f64::from(rate);
            let mut v = 0.0;
            for k in 1..=12 {
                let f = f0 * k as f64;
                if f < 0.45 * f64::from(rate) {
                    v += (phase * k as f64).sin() / k as f64;
                }
            }
            let env = 0.35 + 0.65 * (std::f64::consts::TAU * 2.0 * t).sin().abs();
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = (f64::from(noise >> 16) / 65536.0 - 0.5) * 0.05;
            ((v * 0.25 + n) * env * 32767.0 * 0.5) as i16
        })
        .collect()
}

/// Up to `max` 20 ms frames of speech at `rate` whose RMS is above about -40 dBFS (so no
/// pauses), in the order they occur.
pub fn voiced_frames(rate: u32, max: usize) -> Vec<Vec<i16>> {
    let frame = rate as usize / 50;
    let pcm = speech(rate);
    let frames: Vec<Vec<i16>> = pcm
        .chunks_exact(frame)
        .filter(|f| rms(f) > 330.0)
        .take(max)
        .map(<[i16]>::to_vec)
        .collect();
    assert!(!frames.is_empty(), "no voiced frames at {rate} Hz");
    frames
}

/// Root mean square of a frame.
pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}
