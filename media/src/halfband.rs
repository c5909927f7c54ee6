//! Exact 2:1 sample-rate conversion (8 ↔ 16 kHz, 24 ↔ 48 kHz) with a linear-phase halfband
//! FIR, for the per-call media path.
//!
//! Every G.711 call converts both ways between its 8 kHz codec and the 16 kHz engine rate,
//! every 20 ms. The FFT resampler ([`crate::resample::Resampler::new`]) delays by half a
//! frame (10 ms) and costs an FFT pair per frame; a halfband filter needs no block: its delay
//! is half its length (about 2 ms here), and half of its taps are zero, so a polyphase
//! implementation costs [`ODD_TAPS`] multiply-adds per low-rate sample.
//!
//! The filter is a Kaiser-windowed sinc with cutoff at the low rate's Nyquist frequency:
//! 67 non-zero taps, β = 6.76 (about 70 dB stopband), flat to within 0.05 dB up to 0.425 of
//! the low rate (3.4 kHz at 8 kHz) and at least 60 dB down from 0.575 (4.6 kHz). Its centre
//! is at an even index, so the delay is a whole number of samples at both rates (34 at the
//! high rate, 17 at the low) and a stream converted up and back down is only delayed.

/// The centre tap's index (even); the filter's delay at the high rate.
const CENTRE: usize = 34;
/// Non-zero taps besides the centre: those at an odd distance from it (odd causal indices
/// 1, 3, …, 2·CENTRE − 1).
pub const ODD_TAPS: usize = CENTRE;
/// Kaiser window β for about 70 dB of stopband attenuation.
const KAISER_BETA: f64 = 6.76;

/// Which way a [`Halfband`] converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Low rate to twice the rate.
    Up,
    /// High rate to half the rate.
    Down,
}

/// Taps in a dot product: the odd taps padded with leading zeros to whole 8-lane chunks,
/// so the compiler vectorises it.
const PADDED: usize = ODD_TAPS.div_ceil(8) * 8;
/// Low-rate samples kept from one frame to the next, in each phase buffer.
const HISTORY: usize = PADDED;

/// A streaming 2:1 converter for fixed frames; no allocation after construction.
///
/// Both directions run at the low rate on phase buffers (polyphase form): interpolating,
/// the odd outputs are the odd taps' FIR over the input and the even outputs the input
/// delayed; decimating, the input's odd samples go through the odd taps and its even
/// samples meet the centre tap.
#[derive(Debug, Clone)]
pub struct Halfband {
    direction: Direction,
    frame_in: usize,
    /// The odd taps in time order (oldest sample first), after `PADDED - ODD_TAPS` zeros.
    taps: [f32; PADDED],
    /// Up: the input; down: the input's odd samples. History, then this frame.
    odd: Vec<f32>,
    /// Down: the input's even samples (history, then this frame); empty for up.
    even: Vec<f32>,
}

/// The zeroth-order modified Bessel function of the first kind, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > sum * 1e-12 {
        term *= (x / (2.0 * k)).powi(2);
        sum += term;
        k += 1.0;
    }
    sum
}

/// The off-centre taps of the halfband low-pass (the centre tap is 1/2), normalised so the
/// filter's DC gain is exactly 1.
fn design() -> [f32; ODD_TAPS] {
    let mut taps = [0f64; ODD_TAPS];
    let half = CENTRE as f64;
    for (j, tap) in taps.iter_mut().enumerate() {
        // Distance from the centre of the j-th non-zero off-centre tap (causal index 2j+1).
        let n = (2 * j + 1) as f64 - half;
        let sinc = (std::f64::consts::FRAC_PI_2 * n).sin() / (std::f64::consts::PI * n);
        let w = bessel_i0(KAISER_BETA * (1.0 - (n / half).powi(2)).max(0.0).sqrt())
            / bessel_i0(KAISER_BETA);
        *tap = sinc * w;
    }
    // The off-centre taps carry the other half of the DC gain.
    let sum: f64 = taps.iter().sum();
    taps.map(|t| (t * 0.5 / sum) as f32)
}

impl Halfband {
    /// A converter taking `frame_in` samples per call (even, for `Down`).
    pub fn new(direction: Direction, frame_in: usize) -> Option<Halfband> {
        if frame_in == 0 || (direction == Direction::Down && !frame_in.is_multiple_of(2)) {
            return None;
        }
        let odd_taps = design();
        let mut taps = [0f32; PADDED];
        // Window position i holds the sample PADDED-1-i before the newest one.
        for (i, t) in taps.iter_mut().enumerate().skip(PADDED - ODD_TAPS) {
            *t = odd_taps[PADDED - 1 - i];
        }
        let low = Self::low_samples(direction, frame_in);
        Some(Halfband {
            direction,
            frame_in,
            taps,
            odd: vec![0.0; HISTORY + low],
            even: match direction {
                Direction::Up => Vec::new(),
                Direction::Down => vec![0.0; HISTORY + low],
            },
        })
    }

    /// Low-rate samples per frame.
    fn low_samples(direction: Direction, frame_in: usize) -> usize {
        match direction {
            Direction::Up => frame_in,
            Direction::Down => frame_in / 2,
        }
    }

    /// Samples each call produces.
    pub fn frame_out(&self) -> usize {
        match self.direction {
            Direction::Up => self.frame_in * 2,
            Direction::Down => self.frame_in / 2,
        }
    }

    /// Output samples by which the output lags the input: the filter's delay, `CENTRE` at
    /// the high rate.
    pub fn delay(&self) -> usize {
        match self.direction {
            Direction::Up => CENTRE,
            Direction::Down => CENTRE / 2,
        }
    }

    /// Converts one frame: `input` exactly `frame_in` samples, `out` at least `frame_out`.
    /// Returns the samples written, or 0 (state untouched) when the lengths are wrong.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        let n_out = self.frame_out();
        if input.len() != self.frame_in || out.len() < n_out {
            return 0;
        }
        let low = Self::low_samples(self.direction, self.frame_in);
        // The centre tap meets the low-rate sample CENTRE/2 before the newest.
        let centre = HISTORY - CENTRE / 2;
        match self.direction {
            Direction::Up => {
                for (b, &s) in self.odd[HISTORY..].iter_mut().zip(input) {
                    *b = f32::from(s);
                }
                for q in 0..low {
                    let acc = dot(&self.odd[q + 1..q + 1 + PADDED], &self.taps);
                    out[2 * q] = to_i16(self.odd[centre + q]);
                    out[2 * q + 1] = to_i16(2.0 * acc);
                }
            }
            Direction::Down => {
                for (i, pair) in input.chunks_exact(2).enumerate() {
                    self.even[HISTORY + i] = f32::from(pair[0]);
                    self.odd[HISTORY + i] = f32::from(pair[1]);
                }
                for (m, o) in out[..n_out].iter_mut().enumerate() {
                    // The odd samples before high-rate sample 2m, and the centre tap.
                    let acc = dot(&self.odd[m..m + PADDED], &self.taps);
                    *o = to_i16(acc + 0.5 * self.even[centre + m]);
                }
                self.even.copy_within(low.., 0);
            }
        }
        self.odd.copy_within(low.., 0);
        n_out
    }

    /// Forgets the stream so far.
    pub fn reset(&mut self) {
        self.odd.fill(0.0);
        self.even.fill(0.0);
    }
}

/// A dot product of two `PADDED`-long slices in 8 independent lanes (vectorised).
fn dot(x: &[f32], h: &[f32; PADDED]) -> f32 {
    let mut acc = [0f32; 8];
    for (xc, hc) in x.chunks_exact(8).zip(h.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += xc[k] * hc[k];
        }
    }
    acc.iter().sum()
}

fn to_i16(x: f32) -> i16 {
    // `as` saturates (and maps NaN to 0).
    x.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::{best_lag, chirp, rms, sine, snr_db};

    fn run(h: &mut Halfband, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        let mut buf = vec![0i16; h.frame_out()];
        for frame in input.chunks_exact(h.frame_in) {
            assert_eq!(h.process(frame, &mut buf), h.frame_out());
            out.extend_from_slice(&buf);
        }
        out
    }

    fn gain_db(direction: Direction, rate_in: u32, freq: f64) -> f64 {
        let mut h = Halfband::new(direction, rate_in as usize / 50).unwrap();
        let out = run(&mut h, &sine(rate_in, rate_in as usize / 2, freq, 10000.0));
        20.0 * (rms(&out[out.len() / 2..]) / (10000.0 / 2f64.sqrt())).log10()
    }

    #[test]
    fn the_delay_is_whole_and_the_signal_survives() {
        for (direction, from, to) in [
            (Direction::Up, 8000, 16000),
            (Direction::Down, 16000, 8000),
            (Direction::Up, 24000, 48000),
            (Direction::Down, 48000, 24000),
        ] {
            let mut h = Halfband::new(direction, from as usize / 50).unwrap();
            let input = chirp(from, from as usize, 100.0, 3000.0, 10000.0);
            let out = run(&mut h, &input);
            assert_eq!(out.len(), to as usize);
            let expect = chirp(to, to as usize, 100.0, 3000.0, 10000.0);
            let lag = best_lag(&expect, &out, h.delay() + 20);
            assert_eq!(lag, h.delay(), "{from}->{to}");
            let snr = snr_db(&expect[100..], &out[100..], lag);
            assert!(snr > 40.0, "{from}->{to}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn the_telephony_band_is_flat_and_the_rest_removed() {
        for f in [100.0, 300.0, 1000.0, 3000.0, 3400.0] {
            let up = gain_db(Direction::Up, 8000, f);
            let down = gain_db(Direction::Down, 16000, f);
            assert!(
                up.abs() < 0.05 && down.abs() < 0.05,
                "{f} Hz: {up:.3} / {down:.3} dB"
            );
        }
        // What the 8 kHz side cannot carry: aliases when decimating, images when
        // interpolating (a 3 kHz tone's image at 5 kHz is what the filter removes).
        for f in [4600.0, 5000.0, 6000.0, 7500.0] {
            let g = gain_db(Direction::Down, 16000, f);
            assert!(g < -60.0, "16k->8k at {f} Hz: {g:.1} dB");
        }
        let mut up = Halfband::new(Direction::Up, 160).unwrap();
        let out = run(&mut up, &sine(8000, 8000, 3000.0, 10000.0));
        let mut down = Halfband::new(Direction::Down, 320).unwrap();
        // Back down, the 3 kHz tone returns whole: nothing of it was folded or lost.
        let back = run(&mut down, &out);
        let ratio = rms(&back[4000..]) / rms(&sine(8000, 4000, 3000.0, 10000.0));
        assert!((0.99..1.01).contains(&ratio), "level ratio {ratio:.4}");
    }

    #[test]
    fn frames_are_exact_bad_lengths_refused_and_reset_forgets() {
        assert!(Halfband::new(Direction::Down, 321).is_none());
        assert!(Halfband::new(Direction::Up, 0).is_none());
        let mut h = Halfband::new(Direction::Down, 320).unwrap();
        let mut out = [0i16; 160];
        assert_eq!(h.process(&[0; 319], &mut out), 0);
        assert_eq!(h.process(&[0; 320], &mut out[..159]), 0);
        let tone = sine(16000, 320, 1200.0, 9000.0);
        let mut first = [0i16; 160];
        h.process(&tone, &mut first);
        h.process(&tone, &mut out);
        assert_ne!(first, out, "state carries across frames");
        h.reset();
        h.process(&tone, &mut out);
        assert_eq!(first, out);
        // Full scale saturates rather than wrapping.
        let mut up = Halfband::new(Direction::Up, 160).unwrap();
        let mut wide = [0i16; 320];
        for _ in 0..3 {
            up.process(&[i16::MAX; 160], &mut wide);
        }
        assert!(wide.iter().all(|&s| s > 32000), "{:?}", &wide[..4]);
    }
}
