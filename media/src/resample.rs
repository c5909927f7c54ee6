//! Streaming sample-rate conversion between the call rates (8, 16, 24 and
//! 48 kHz, either direction) for fixed 20 ms frames.
//!
//! A thin wrapper around rubato's synchronous FFT resampler (`rubato::Fft`,
//! fixed input size): rate pairs here are fixed integer ratios, for which it
//! is both the fastest and the cleanest of rubato's resamplers. Filter state
//! (the overlap of the previous block) carries across frames, so a stream
//! cut into frames resamples exactly like the whole stream.
//!
//! * **Frames.** Every call takes exactly `frame_in` samples and writes
//!   exactly `frame_out = frame_in * to / from` samples, from the first call
//!   on: there is no priming phase that returns short frames, so output
//!   frames line up one-to-one with input frames forever (no drift).
//! * **Delay and bandwidth.** rubato's FFT resampler delays by half its
//!   block. [`Resampler::new`] uses one block per 20 ms frame: 10 ms delay
//!   ([`Resampler::delay`]: 80 samples at 8 kHz, 160 at 16 kHz, 240 at
//!   24 kHz, 480 at 48 kHz, in output samples) and a flat passband up to
//!   about 0.44 of the lower rate (8 kHz side: 0 dB at 3.4 kHz, -0.1 dB at
//!   3.5 kHz). [`Resampler::low_delay`] splits the frame into two 10 ms
//!   blocks: 5 ms delay, but a gentler filter (8 kHz side: -2 dB at
//!   3.2 kHz, -10 dB at 3.4 kHz), so it suits the wideband pairs better than
//!   8 kHz telephony. Either way the first output frame begins with the
//!   filter's start-up (silence fading into the signal) for `delay()`
//!   samples; nothing is dropped or repeated later.
//! * **Equal rates** are an exact copy with no delay.
//! * **Calls' 2:1 pairs.** [`Resampler::for_call`] converts exact 2:1 pairs (8 ↔ 16 kHz,
//!   every G.711 call, both ways, every 20 ms) with a halfband FIR instead
//!   ([`crate::halfband`]): 2 ms of delay instead of 10, and about a quarter of the cost;
//!   other pairs take the pooled FFT resampler.
//! * **No allocation per call.** The i16 <-> f32 staging buffers and all of
//!   rubato's scratch space are allocated in [`Resampler::new`].

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

use crate::halfband::{Direction, Halfband};

/// Why a resampler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// Only 8000, 16000, 24000 and 48000 Hz are supported.
    #[error("unsupported resampling rate {0} Hz (8000, 16000, 24000, 48000)")]
    UnsupportedRate(u32),
    /// The frame does not split into blocks that map to whole numbers of output samples.
    #[error("frame of {frame_in} samples cannot be resampled {from} -> {to} Hz in whole blocks")]
    BadFrame {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// Requested input frame length.
        frame_in: usize,
    },
    /// rubato refused the configuration.
    #[error("resampler construction failed: {0}")]
    Rubato(#[from] rubato::ResamplerConstructionError),
}

/// The rates the media pipeline converts between.
pub const SUPPORTED_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// Rates accepted as input only: what some TTS engines produce (espeak-ng speaks at
/// 22.05 kHz). Converting *to* them would give a delay of a fractional number of samples.
pub const INPUT_ONLY_RATES: [u32; 2] = [22050, 44100];

/// A streaming mono resampler for fixed-size frames.
pub struct Resampler {
    from: u32,
    to: u32,
    frame_in: usize,
    frame_out: usize,
    /// `None` when the rates are equal (plain copy) or a halfband filter converts.
    inner: Option<Box<Fft<f32>>>,
    /// The 2:1 filter of [`Resampler::for_call`].
    halfband: Option<Halfband>,
    buf_in: Vec<f32>,
    buf_out: Vec<f32>,
    delay: usize,
    /// Return to the pool on drop (set on resamplers handed out by [`Resampler::recycled`]).
    recycle: bool,
}

/// Resamplers released by ended calls, reset and ready for the next call.
static POOL: std::sync::Mutex<Vec<Resampler>> = std::sync::Mutex::new(Vec::new());
/// Pooled resamplers kept at most (each holds a few KiB of filter and FFT state).
const POOL_CAP: usize = 4096;

impl Drop for Resampler {
    fn drop(&mut self) {
        if !self.recycle || self.inner.is_none() {
            return;
        }
        let Ok(mut pool) = POOL.lock() else { return };
        if pool.len() >= POOL_CAP {
            return;
        }
        let mut spare = Resampler {
            from: self.from,
            to: self.to,
            frame_in: self.frame_in,
            frame_out: self.frame_out,
            inner: self.inner.take(),
            halfband: None,
            buf_in: std::mem::take(&mut self.buf_in),
            buf_out: std::mem::take(&mut self.buf_out),
            delay: self.delay,
            recycle: false,
        };
        spare.reset();
        pool.push(spare);
    }
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("frame_in", &self.frame_in)
            .field("frame_out", &self.frame_out)
            .field("delay", &self.delay)
            .finish()
    }
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz taking `frame_in` samples per
    /// call (normally 20 ms: `from / 50`), with one FFT block per frame:
    /// delay of half a frame, full passband. The frame must map to a whole
    /// number of output samples, which every multiple of 2.5 ms does.
    pub fn new(from: u32, to: u32, frame_in: usize) -> Result<Self, ResampleError> {
        Self::build(from, to, frame_in, 1)
    }

    /// Like [`new`](Self::new), but reuses (after a reset) a resampler that an ended call
    /// released, and releases this one when it is dropped. Building the FFT plan and the
    /// anti-aliasing filter costs about as much as the rest of a call's setup; at thousands
    /// of calls per second that dominated call setup (see docs/benchmarks.md). The pool lock
    /// is taken only at call setup and teardown, never per frame.
    pub fn recycled(from: u32, to: u32, frame_in: usize) -> Result<Self, ResampleError> {
        if from != to {
            if let Ok(mut pool) = POOL.lock() {
                let found = pool
                    .iter()
                    .rposition(|r| r.from == from && r.to == to && r.frame_in == frame_in);
                if let Some(i) = found {
                    let mut r = pool.swap_remove(i);
                    r.recycle = true;
                    return Ok(r);
                }
            }
        }
        let mut r = Self::new(from, to, frame_in)?;
        r.recycle = true;
        Ok(r)
    }

    /// What a call's media path uses: a halfband FIR for exact 2:1 pairs (about 2 ms of
    /// delay, no FFT), the pooled FFT resampler of [`recycled`](Self::recycled) otherwise.
    pub fn for_call(from: u32, to: u32, frame_in: usize) -> Result<Self, ResampleError> {
        let direction = if to == from * 2 {
            Some(Direction::Up)
        } else if from == to * 2 {
            Some(Direction::Down)
        } else {
            None
        };
        let rates_ok = SUPPORTED_RATES.contains(&from) && SUPPORTED_RATES.contains(&to);
        if let (Some(direction), true) = (direction, rates_ok) {
            let halfband = Halfband::new(direction, frame_in).ok_or(ResampleError::BadFrame {
                from,
                to,
                frame_in,
            })?;
            return Ok(Self {
                from,
                to,
                frame_in,
                frame_out: halfband.frame_out(),
                inner: None,
                delay: halfband.delay(),
                halfband: Some(halfband),
                buf_in: Vec::new(),
                buf_out: Vec::new(),
                recycle: false,
            });
        }
        Self::recycled(from, to, frame_in)
    }

    /// Like [`new`](Self::new) but with two FFT blocks per frame: half the
    /// delay (a quarter frame) for a wider transition band below Nyquist.
    pub fn low_delay(from: u32, to: u32, frame_in: usize) -> Result<Self, ResampleError> {
        Self::build(from, to, frame_in, 2)
    }

    fn build(from: u32, to: u32, frame_in: usize, blocks: usize) -> Result<Self, ResampleError> {
        if !SUPPORTED_RATES.contains(&from) && !INPUT_ONLY_RATES.contains(&from) {
            return Err(ResampleError::UnsupportedRate(from));
        }
        if !SUPPORTED_RATES.contains(&to) {
            return Err(ResampleError::UnsupportedRate(to));
        }
        let bad = ResampleError::BadFrame { from, to, frame_in };
        if frame_in == 0 || !frame_in.is_multiple_of(blocks) {
            return Err(bad);
        }
        if from == to {
            return Ok(Self {
                from,
                to,
                frame_in,
                frame_out: frame_in,
                inner: None,
                halfband: None,
                buf_in: Vec::new(),
                buf_out: Vec::new(),
                delay: 0,
                recycle: false,
            });
        }
        let g = gcd(from, to) as usize;
        let (min_in, min_out) = (from as usize / g, to as usize / g);
        let block_in = frame_in / blocks;
        // rubato's FFT resampler degrades badly on odd block lengths (measured: 12 dB SNR
        // on a chirp for 441-sample blocks at 22.05 kHz against 84 dB for 882), so those
        // are refused; 22.05 kHz input takes 40 ms frames.
        if !block_in.is_multiple_of(min_in) || !block_in.is_multiple_of(2) {
            return Err(bad);
        }
        let block_out = block_in / min_in * min_out;
        let inner = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            frame_in,
            blocks,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )?;
        // The sizes rubato derived must be the ones we planned, or frames would drift.
        if inner.fft_size_in() != block_in
            || inner.fft_size_out() != block_out
            || inner.input_frames_next() != frame_in
            || inner.output_frames_next() != blocks * block_out
        {
            return Err(bad);
        }
        let delay = inner.output_delay();
        Ok(Self {
            from,
            to,
            frame_in,
            frame_out: blocks * block_out,
            inner: Some(Box::new(inner)),
            halfband: None,
            buf_in: vec![0.0; frame_in],
            buf_out: vec![0.0; blocks * block_out],
            delay,
            recycle: false,
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Samples each call consumes.
    pub fn frame_in(&self) -> usize {
        self.frame_in
    }

    /// Samples each call produces.
    pub fn frame_out(&self) -> usize {
        self.frame_out
    }

    /// Output samples by which the output lags the input (0 for equal rates).
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Resample one frame: `input` must hold exactly [`frame_in`](Self::frame_in)
    /// samples and `out` at least [`frame_out`](Self::frame_out). Returns the
    /// samples written: `frame_out`, or 0 (nothing consumed, state untouched)
    /// when the lengths are wrong.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        if input.len() != self.frame_in || out.len() < self.frame_out {
            return 0;
        }
        if let Some(halfband) = self.halfband.as_mut() {
            return halfband.process(input, out);
        }
        let Some(inner) = self.inner.as_mut() else {
            out[..self.frame_in].copy_from_slice(input);
            return self.frame_in;
        };
        for (f, &s) in self.buf_in.iter_mut().zip(input) {
            *f = f32::from(s);
        }
        let result = match (
            InterleavedSlice::new(&self.buf_in[..], 1, self.frame_in),
            InterleavedSlice::new_mut(&mut self.buf_out[..], 1, self.frame_out),
        ) {
            (Ok(a), Ok(mut b)) => inner.process_into_buffer(&a, &mut b, None),
            _ => return 0,
        };
        match result {
            Ok((_, produced)) => {
                let n = produced.min(self.frame_out);
                for (o, &f) in out.iter_mut().zip(&self.buf_out[..n]) {
                    // `as` saturates (and maps NaN to 0).
                    *o = f.round() as i16;
                }
                n
            }
            Err(_) => 0,
        }
    }

    /// Forget the stream so far (the next call starts like the first).
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
        }
        if let Some(halfband) = self.halfband.as_mut() {
            halfband.reset();
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod recycle_tests {
    use super::*;

    #[test]
    fn recycled_resamplers_are_reset_and_reused() {
        // A rate pair no other test uses, so the pool's content is ours.
        let mut first = Resampler::recycled(24000, 8000, 480).unwrap();
        let mut out = vec![0i16; 160];
        let tone: Vec<i16> = (0..480).map(|i| ((i % 48) as i16 - 24) * 500).collect();
        assert_eq!(first.process(&tone, &mut out), 160);
        let inner_ptr = first.inner.as_ref().map(|b| &**b as *const _ as usize);
        drop(first);
        let mut second = Resampler::recycled(24000, 8000, 480).unwrap();
        let reused = second.inner.as_ref().map(|b| &**b as *const _ as usize);
        assert_eq!(
            reused, inner_ptr,
            "the released resampler was handed out again"
        );
        // Reset: silence in gives silence out, with no tail of the earlier tone.
        let silence = vec![0i16; 480];
        assert_eq!(second.process(&silence, &mut out), 160);
        assert!(out.iter().all(|s| *s == 0), "state was reset");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::{best_lag, chirp, rms, sine, snr_db};

    fn run(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(input.len() * r.frame_out() / r.frame_in() + 1);
        let mut buf = vec![0i16; r.frame_out()];
        for frame in input.chunks_exact(r.frame_in()) {
            assert_eq!(r.process(frame, &mut buf), r.frame_out());
            out.extend_from_slice(&buf);
        }
        out
    }

    #[test]
    fn every_rate_pair_gives_exact_frames_and_the_documented_delay() {
        for (low, blocks) in [(false, 1), (true, 2)] {
            for from in SUPPORTED_RATES.into_iter().chain(INPUT_ONLY_RATES) {
                for to in SUPPORTED_RATES {
                    // 20 ms frames; 40 ms at 22.05 kHz, whose 20 ms block is odd.
                    let frame_ms = if from == 22050 { 40 } else { 20 };
                    if low && INPUT_ONLY_RATES.contains(&from) {
                        // Blocks of 441 samples: odd, refused (see `build`). TTS input
                        // has no use for the low-delay variant.
                        continue;
                    }
                    let frame_in = from as usize * frame_ms / 1000;
                    let mut r = if low {
                        Resampler::low_delay(from, to, frame_in).unwrap()
                    } else {
                        Resampler::new(from, to, frame_in).unwrap()
                    };
                    assert_eq!(r.frame_out(), to as usize * frame_ms / 1000, "{from}->{to}");
                    let want_delay = if from == to {
                        0
                    } else {
                        r.frame_out() / (2 * blocks)
                    };
                    assert_eq!(r.delay(), want_delay, "{from}->{to}");
                    // A chirp below both Nyquist limits comes out as the same
                    // chirp sampled at the new rate, delayed by exactly `delay()`.
                    let input = chirp(from, from as usize, 100.0, 3000.0, 10000.0);
                    let out = run(&mut r, &input);
                    assert_eq!(out.len(), to as usize);
                    let expect = chirp(to, to as usize, 100.0, 3000.0, 10000.0);
                    let lag = best_lag(&expect, &out, r.delay() + 20);
                    assert_eq!(lag, r.delay(), "{from}->{to}");
                    let skip = to as usize / 50;
                    let snr = snr_db(&expect[skip..], &out[skip..], lag);
                    assert!(snr > 30.0, "{from}->{to}: SNR {snr:.1} dB");
                }
            }
        }
    }

    /// Gain of a steady tone through a resampler, in dB.
    fn gain_db(r: &mut Resampler, freq: f64) -> f64 {
        let from = r.from_rate();
        let input = sine(from, from as usize / 2, freq, 10000.0);
        let out = run(r, &input);
        let tail = &out[out.len() / 2..];
        20.0 * (rms(tail) / (10000.0 / 2f64.sqrt())).log10()
    }

    /// The telephony band (to 3.4 kHz) passes flat through the default
    /// resampler at 8 kHz, what lies above the lower Nyquist is removed, and
    /// the low-delay variant rolls off earlier, as documented.
    #[test]
    fn passband_and_stopband() {
        for (from, to) in [(8000, 16000), (16000, 8000), (48000, 8000)] {
            for f in [300.0, 1000.0, 3000.0, 3400.0] {
                let g = gain_db(
                    &mut Resampler::new(from, to, from as usize / 50).unwrap(),
                    f,
                );
                assert!(g.abs() < 0.2, "{from}->{to} at {f} Hz: {g:.2} dB");
            }
            let g = gain_db(
                &mut Resampler::low_delay(from, to, from as usize / 50).unwrap(),
                3400.0,
            );
            assert!(
                (-12.0..-8.0).contains(&g),
                "low delay {from}->{to} at 3400 Hz: {g:.2} dB"
            );
        }
        // Downsampling removes what the lower rate cannot carry.
        let g = gain_db(&mut Resampler::new(16000, 8000, 320).unwrap(), 5000.0);
        assert!(g < -60.0, "16k->8k at 5 kHz: {g:.1} dB");
        let g = gain_db(&mut Resampler::new(48000, 16000, 960).unwrap(), 12000.0);
        assert!(g < -60.0, "48k->16k at 12 kHz: {g:.1} dB");
        let g = gain_db(&mut Resampler::new(16000, 48000, 320).unwrap(), 7000.0);
        assert!(g.abs() < 0.2, "16k->48k at 7 kHz: {g:.2} dB");
    }

    #[test]
    fn sine_8k_16k_8k_keeps_frequency_and_level() {
        let mut up = Resampler::new(8000, 16000, 160).unwrap();
        let mut down = Resampler::new(16000, 8000, 320).unwrap();
        let input = sine(8000, 16000, 1000.0, 12000.0);
        let mid = run(&mut up, &input);
        let out = run(&mut down, &mid);
        assert_eq!(out.len(), input.len());
        let delay = up.delay() / 2 + down.delay();
        // The delay, measured on a non-periodic signal through fresh resamplers.
        let sweep = chirp(8000, 8000, 100.0, 3000.0, 10000.0);
        let mut up2 = Resampler::new(8000, 16000, 160).unwrap();
        let mut down2 = Resampler::new(16000, 8000, 320).unwrap();
        let back = run(&mut down2, &run(&mut up2, &sweep));
        assert_eq!(best_lag(&sweep, &back, 200), delay);
        let snr = snr_db(&input[800..], &out[800..], delay);
        assert!(snr > 30.0, "8k->16k->8k SNR {snr:.1} dB");
        let ratio = rms(&out[800..]) / rms(&input[800..]);
        assert!((0.98..1.02).contains(&ratio), "level ratio {ratio:.3}");
        // Frequency: zero crossings per second of the steady part.
        let steady = &out[800..];
        let crossings = steady
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        let hz = crossings as f64 / 2.0 / (steady.len() as f64 / 8000.0);
        assert!((hz - 1000.0).abs() < 5.0, "frequency {hz:.1} Hz");
    }

    /// Ten minutes of 20 ms frames: exact frame counts, and the signal's
    /// phase (delay) at the end is what it was at the start.
    #[test]
    fn no_drift_over_ten_minutes() {
        let mut r = Resampler::new(8000, 48000, 160).unwrap();
        let frames = 10 * 60 * 50;
        let freq = 440.0;
        let amp = 8000.0;
        let mut input = [0i16; 160];
        let mut out = [0i16; 960];
        let mut total_out = 0usize;
        let mut last = Vec::new();
        for k in 0..frames {
            for (i, s) in input.iter_mut().enumerate() {
                let t = (k * 160 + i) as f64 / 8000.0;
                *s = (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16;
            }
            assert_eq!(r.process(&input, &mut out), 960);
            total_out += 960;
            if k >= frames - 5 {
                last.extend_from_slice(&out);
            }
        }
        assert_eq!(total_out, frames * 960);
        // The last 100 ms of output equal the ideal 48 kHz tone delayed by `delay()`.
        let start = total_out - last.len();
        let expect: Vec<i16> = (0..last.len() + r.delay())
            .map(|i| {
                let t = (start + i) as f64 / 48000.0 - r.delay() as f64 / 48000.0;
                (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect();
        let snr = snr_db(&expect[..last.len()], &last, 0);
        assert!(snr > 30.0, "after 10 minutes: SNR {snr:.1} dB");
    }

    #[test]
    fn identity_and_bad_arguments() {
        let mut r = Resampler::new(16000, 16000, 320).unwrap();
        let input = sine(16000, 320, 700.0, 5000.0);
        let mut out = [0i16; 320];
        assert_eq!(r.process(&input, &mut out), 320);
        assert_eq!(&out[..], &input[..]);
        assert_eq!(r.delay(), 0);

        assert!(matches!(
            Resampler::new(11025, 8000, 441),
            Err(ResampleError::UnsupportedRate(11025))
        ));
        assert!(matches!(
            Resampler::new(8000, 22050, 160),
            Err(ResampleError::UnsupportedRate(22050))
        ));
        assert!(matches!(
            Resampler::new(8000, 22050, 160),
            Err(ResampleError::UnsupportedRate(22050))
        ));
        assert!(matches!(
            Resampler::new(8000, 16000, 0),
            Err(ResampleError::BadFrame { .. })
        ));
        assert!(matches!(
            Resampler::low_delay(8000, 16000, 161),
            Err(ResampleError::BadFrame { .. })
        ));
        assert!(Resampler::new(8000, 16000, 162).is_ok());
        // Odd blocks are refused (rubato's FFT resampler degrades on them).
        assert!(matches!(
            Resampler::new(8000, 16000, 161),
            Err(ResampleError::BadFrame { .. })
        ));
        assert!(matches!(
            Resampler::new(22050, 16000, 441),
            Err(ResampleError::BadFrame { .. })
        ));
        // 48k -> 8k needs blocks that are multiples of 6 input samples.
        assert!(matches!(
            Resampler::new(48000, 8000, 20),
            Err(ResampleError::BadFrame { .. })
        ));
        assert!(matches!(
            Resampler::low_delay(48000, 8000, 30),
            Err(ResampleError::BadFrame { .. })
        ));
        assert!(Resampler::new(48000, 8000, 24).is_ok());
        assert!(Resampler::low_delay(48000, 8000, 24).is_ok());

        let mut r = Resampler::new(8000, 16000, 160).unwrap();
        let mut out = [0i16; 320];
        assert_eq!(r.process(&[0; 159], &mut out), 0);
        assert_eq!(r.process(&[0; 160], &mut out[..319]), 0);
        assert_eq!(r.process(&[0; 160], &mut out), 320);
        // Full-scale input saturates instead of wrapping.
        let loud = [i16::MAX; 160];
        for _ in 0..5 {
            r.process(&loud, &mut out);
        }
        assert!(out.iter().all(|&s| s > 30000), "{:?}", &out[..4]);
    }

    #[test]
    fn calls_convert_2_to_1_with_the_halfband_and_the_rest_with_the_fft() {
        let up = Resampler::for_call(8000, 16000, 160).unwrap();
        assert!(up.halfband.is_some() && up.delay() == 34, "{up:?}");
        let down = Resampler::for_call(16000, 8000, 320).unwrap();
        assert!(down.halfband.is_some() && down.delay() == 17, "{down:?}");
        assert_eq!(down.frame_out(), 160);
        let opus = Resampler::for_call(48000, 16000, 960).unwrap();
        assert!(opus.halfband.is_none() && opus.inner.is_some());
        assert!(matches!(
            Resampler::for_call(16000, 8000, 321),
            Err(ResampleError::BadFrame { .. })
        ));
        // Through the 8 kHz codec side and back, a sweep keeps its shape.
        let mut up = Resampler::for_call(8000, 16000, 160).unwrap();
        let mut down = Resampler::for_call(16000, 8000, 320).unwrap();
        let sweep = chirp(8000, 8000, 100.0, 3000.0, 10000.0);
        let back = run(&mut down, &run(&mut up, &sweep));
        let delay = up.delay() / 2 + down.delay();
        assert_eq!(best_lag(&sweep, &back, 100), delay);
        let snr = snr_db(&sweep[100..], &back[100..], delay);
        assert!(snr > 40.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn reset_restarts_the_stream() {
        let mut r = Resampler::new(16000, 8000, 320).unwrap();
        let input = sine(16000, 320, 1200.0, 9000.0);
        let mut first = [0i16; 160];
        let mut again = [0i16; 160];
        r.process(&input, &mut first);
        r.process(&input, &mut again);
        assert_ne!(first, again, "state carries across frames");
        r.reset();
        r.process(&input, &mut again);
        assert_eq!(first, again);
    }
}
