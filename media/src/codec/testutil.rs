//! Signals and measurements shared by the codec and resampler tests.

use std::f64::consts::PI;

/// `n` samples of a sine at `freq` Hz.
pub fn sine(rate: u32, n: usize, freq: f64, amp: f64) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
        .collect()
}

/// `n` samples of a linear chirp from `f0` to `f1` Hz.
pub fn chirp(rate: u32, n: usize, f0: f64, f1: f64, amp: f64) -> Vec<i16> {
    let dur = n as f64 / f64::from(rate);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let phase = 2.0 * PI * (f0 * t + (f1 - f0) * t * t / (2.0 * dur));
            (amp * phase.sin()).round() as i16
        })
        .collect()
}

/// A voiced-speech-like signal: harmonics of a pitch that glides between
/// 110 and 230 Hz, with a falling spectral tilt, formant-ish emphasis and a
/// 4 Hz syllable envelope. Harmonics stop below `max_hz`.
pub fn speech_like(rate: u32, n: usize, max_hz: f64) -> Vec<i16> {
    let mut phase = [0.0f64; 64];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let f0 = 170.0 + 60.0 * (2.0 * PI * 1.3 * t).sin();
        let env = 0.65 + 0.35 * (2.0 * PI * 4.0 * t).sin();
        let mut v = 0.0;
        for (k, ph) in phase.iter_mut().enumerate() {
            let h = (k + 1) as f64;
            let f = f0 * h;
            if f >= max_hz {
                break;
            }
            *ph += 2.0 * PI * f / f64::from(rate);
            // Two broad "formants" near 500 Hz and 1500 Hz over a 1/h tilt.
            let formant = 1.0
                + 2.0 * (-((f - 500.0) / 300.0).powi(2)).exp()
                + 1.2 * (-((f - 1500.0) / 400.0).powi(2)).exp();
            v += formant / h * ph.sin();
        }
        out.push((2500.0 * env * v).round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// Lag in `0..max_lag` at which `output` best matches `reference`
/// (normalized cross-correlation).
pub fn best_lag(reference: &[i16], output: &[i16], max_lag: usize) -> usize {
    (0..max_lag)
        .max_by(|&a, &b| {
            correlation(reference, output, a)
                .partial_cmp(&correlation(reference, output, b))
                .unwrap()
        })
        .unwrap()
}

/// Normalized cross-correlation of `reference[i]` with `output[i + lag]`.
pub fn correlation(reference: &[i16], output: &[i16], lag: usize) -> f64 {
    let n = reference.len().min(output.len().saturating_sub(lag));
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let x = f64::from(reference[i]);
        let y = f64::from(output[i + lag]);
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

/// SNR in dB of `output[i + lag]` against `reference[i]`.
pub fn snr_db(reference: &[i16], output: &[i16], lag: usize) -> f64 {
    let n = reference.len().min(output.len().saturating_sub(lag));
    let (mut sig, mut noise) = (0.0, 0.0);
    for i in 0..n {
        let x = f64::from(reference[i]);
        let y = f64::from(output[i + lag]);
        sig += x * x;
        noise += (x - y) * (x - y);
    }
    10.0 * (sig / noise.max(1e-9)).log10()
}

/// Root mean square of a block.
pub fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}
