//! Offline VAD over a whole recording: the engine behind `parley media vad FILE.wav`.

use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::model::SileroModel;
use super::segmenter::{segments_from_events, Segment, SegmenterConfig};
use super::stream::VadStream;
use super::{VadError, VadRate, SAMPLE_RATE};

/// What [`analyze_wav`] finds: each window's `(t_ms, probability)` and the speech segments.
pub type VadAnalysis = (Vec<(u32, f32)>, Vec<Segment>);

/// Runs the VAD over a WAV file of any format [`crate::wav::read_wav`] reads (any rate, any
/// channel count: channels are averaged). 8 kHz audio runs through the model's 8 kHz branch,
/// as a narrowband call's does; other rates are resampled to 16 kHz with [`resample_to_16k`].
///
/// Returns the speech probability of every 32 ms window as `(t_ms, p)`, `t_ms` being the
/// window's start (a last partial window is zero-padded), and the speech segments the
/// segmenter with `config` finds, exactly as a live call would see them.
pub fn analyze_wav(
    model: &mut SileroModel,
    path: &Path,
    config: SegmenterConfig,
) -> Result<VadAnalysis, VadError> {
    let audio = crate::wav::read_wav(path)?;
    let rate = VadRate::for_audio_rate(audio.sample_rate);
    if rate.sample_rate() == audio.sample_rate {
        return analyze_samples(model, &audio.samples, rate, config);
    }
    let samples = resample_to_16k(&audio.samples, audio.sample_rate)?;
    analyze_samples(model, &samples, rate, config)
}

/// As [`analyze_wav`], on mono samples at `rate`.
pub fn analyze_samples(
    model: &mut SileroModel,
    samples: &[i16],
    rate: VadRate,
    config: SegmenterConfig,
) -> Result<VadAnalysis, VadError> {
    let mut stream = VadStream::with_rate(config, rate)?;
    let mut probs = Vec::with_capacity(samples.len() / rate.window_samples() + 1);
    let mut events = Vec::new();
    let mut run_window = |stream: &mut VadStream| -> Result<(), VadError> {
        while let Some(w) = stream.window() {
            let mut state = [*stream.state()];
            let mut p = [0.0f32];
            model.infer_batch(rate, w, &mut state, &mut p)?;
            let Some(out) = stream.complete_window(p[0], &state[0]) else {
                break;
            };
            probs.push((out.t_ms, out.prob));
            events.extend(out.event);
        }
        Ok(())
    };
    // 20 ms frames, as the live path pushes them.
    for frame in samples.chunks(rate.sample_rate() as usize / 50) {
        stream.push_pcm(frame);
        run_window(&mut stream)?;
    }
    if stream.pad_final_window() {
        run_window(&mut stream)?;
    }
    events.extend(stream.finish());
    Ok((probs, segments_from_events(events)))
}

/// Converts mono audio at `rate` Hz to 16 kHz.
///
/// 16 kHz input is returned as is. Other rates go through rubato's FFT resampler (a
/// synchronous sinc resampler with a Blackman-Harris anti-aliasing filter), with its delay
/// trimmed so the output lines up with the input in time; the output has
/// `len * 16000 / rate` samples (rounded down). This is the offline path for whole files;
/// live calls use the media pipeline's streaming resampler.
pub fn resample_to_16k(samples: &[i16], rate: u32) -> Result<Vec<i16>, VadError> {
    if rate == SAMPLE_RATE {
        return Ok(samples.to_vec());
    }
    let err = |reason: String| VadError::Resample { from: rate, reason };
    if rate == 0 {
        return Err(err("the sample rate is 0".into()));
    }
    let out_len = (samples.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(rate)) as usize;
    if samples.is_empty() || out_len == 0 {
        return Ok(Vec::new());
    }
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| err(e.to_string()))?;
    let mut output = vec![0.0f32; resampler.process_all_needed_output_len(input.len())];
    let out_frames = output.len();
    let in_buf = InterleavedSlice::new(&input, 1, input.len()).map_err(|e| err(e.to_string()))?;
    let mut out_buf =
        InterleavedSlice::new_mut(&mut output, 1, out_frames).map_err(|e| err(e.to_string()))?;
    let (_, produced) = resampler
        .process_all_into_buffer(&in_buf, &mut out_buf, input.len(), None)
        .map_err(|e| err(e.to_string()))?;
    Ok(output[..produced.min(out_len)]
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    .round() as i16
            })
            .collect()
    }

    /// Amplitude and phase (radians, relative to a sine starting at sample 0) of `freq` in
    /// `x` sampled at `rate`, by correlation, ignoring the edges.
    fn measure(x: &[i16], rate: u32, freq: f64) -> (f64, f64) {
        let edge = x.len() / 10;
        let body = &x[edge..x.len() - edge];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in body.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * freq * (i + edge) as f64 / f64::from(rate);
            re += f64::from(v) * ph.sin();
            im += f64::from(v) * ph.cos();
        }
        let n = body.len() as f64;
        (2.0 * (re * re + im * im).sqrt() / n, im.atan2(re))
    }

    #[test]
    fn sixteen_khz_passes_through() {
        let x = tone(440.0, 16000, 0.1, 8000.0);
        assert_eq!(resample_to_16k(&x, 16000).unwrap(), x);
    }

    #[test]
    fn resampling_keeps_in_band_tones_and_length() {
        for rate in [8000u32, 11025, 22050, 44100, 48000] {
            let x = tone(1000.0, rate, 1.0, 10000.0);
            let y = resample_to_16k(&x, rate).unwrap();
            assert_eq!(y.len(), 16000, "{rate} Hz");
            let (a, phase) = measure(&y, 16000, 1000.0);
            assert!((a - 10000.0).abs() < 150.0, "{rate} Hz: 1 kHz at {a}");
            // Aligned in time with the source: within one output sample (62.5 us).
            let shift_us = phase / (2.0 * std::f64::consts::PI * 1000.0) * 1e6;
            assert!(
                shift_us.abs() <= 62.5,
                "{rate} Hz: shifted by {shift_us:.1} us"
            );
        }
    }

    #[test]
    fn downsampling_filters_what_16k_cannot_carry() {
        // 11 kHz at 48 kHz would alias to 5 kHz without an anti-alias filter.
        let x = tone(11000.0, 48000, 1.0, 10000.0);
        let y = resample_to_16k(&x, 48000).unwrap();
        let (alias, _) = measure(&y, 16000, 5000.0);
        assert!(alias < 100.0, "alias at 5 kHz: {alias}");
    }

    #[test]
    fn bad_and_empty_inputs() {
        assert!(matches!(
            resample_to_16k(&[1, 2, 3], 0),
            Err(VadError::Resample { from: 0, .. })
        ));
        assert!(resample_to_16k(&[], 8000).unwrap().is_empty());
        assert!(resample_to_16k(&[5], 48000).unwrap().is_empty());
    }
}
