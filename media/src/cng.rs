//! Comfort noise: a background-noise level tracked from received audio and
//! a generator that plays noise at that level when there is nothing to
//! play (a silence gap of the sender, or a long loss), so the line does not
//! go dead.
//!
//! # Level tracking
//!
//! Every frame given to [`ComfortNoise::observe`] has its mean square `e`
//! compared with the current noise floor `n`:
//!
//! * `e <= n`: the floor drops quickly, `n += (e - n) / 2` per 20 ms;
//! * `n < e <= 4n` (within 6 dB, a quiet frame): it rises gently,
//!   `n += (e - n) / 10` per 20 ms;
//! * `e > 4n` (speech): it creeps up by 2 % per 20 ms (about 4 dB/s), so a
//!   floor that started too low, or a background that got louder, is
//!   followed within seconds while speech itself barely counts.
//!
//! The generated level is `sqrt(n)` capped at [`MAX_NOISE_RMS`]
//! (about -36 dBov), so noise stays quiet even if no quiet frame was seen.
//!
//! # Generator
//!
//! A xorshift32 generator gives uniform white noise, lightly low-passed by
//! averaging neighbouring samples (a zero at the Nyquist frequency, -3 dB at
//! a quarter of the sample rate), scaled to the tracked RMS. Level changes
//! are ramped linearly across a call to [`ComfortNoise::fill`].
//! No allocation, no locks, no panics.

/// Upper bound of the generated noise RMS (about -36 dBov).
pub const MAX_NOISE_RMS: f32 = 500.0;
/// Standard deviation of the average of two uniform [-1, 1) samples.
const FILTERED_STD: f32 = 0.408_248_3; // sqrt(1/6)

/// Background level tracker and comfort-noise generator.
#[derive(Debug, Clone)]
pub struct ComfortNoise {
    frame_len: f32,
    noise_ms: f32,
    have_level: bool,
    rng: u32,
    prev: f32,
    last_rms: f32,
}

impl ComfortNoise {
    /// A generator for audio at `sample_rate` Hz (used to scale the
    /// tracking speed to 20 ms frames; 0 is treated as 8 kHz).
    pub fn new(sample_rate: u32) -> Self {
        let rate = if sample_rate == 0 { 8_000 } else { sample_rate };
        ComfortNoise {
            frame_len: (rate as f32 / 50.0).max(1.0),
            noise_ms: 0.0,
            have_level: false,
            rng: 0x9E37_79B9,
            prev: 0.0,
            last_rms: 0.0,
        }
    }

    /// Track the background level from a received (or concealed) frame.
    pub fn observe(&mut self, pcm: &[i16]) {
        if pcm.is_empty() {
            return;
        }
        let e = pcm.iter().map(|&x| f32::from(x).powi(2)).sum::<f32>() / pcm.len() as f32;
        // Updates are defined per 20 ms; scale them to the frame's length.
        let frames = pcm.len() as f32 / self.frame_len;
        if !self.have_level {
            self.noise_ms = e;
            self.have_level = true;
            return;
        }
        let n = self.noise_ms;
        let toward = |rate: f32| 1.0 - (1.0 - rate).powf(frames);
        self.noise_ms = if e <= n {
            n + (e - n) * toward(0.5)
        } else if e <= 4.0 * n {
            n + (e - n) * toward(0.1)
        } else {
            (n * 1.02f32.powf(frames)).max(1.0).min(e)
        };
    }

    /// The RMS level noise is generated at.
    pub fn level_rms(&self) -> f32 {
        self.noise_ms.sqrt().min(MAX_NOISE_RMS)
    }

    /// Fill `out` with comfort noise.
    pub fn fill(&mut self, out: &mut [i16]) {
        let target = self.level_rms();
        let start = self.last_rms;
        let n = out.len().max(1) as f32;
        for (i, s) in out.iter_mut().enumerate() {
            // xorshift32
            let mut x = self.rng;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.rng = x;
            let white = (x as i32) as f32 / 2_147_483_648.0;
            let shaped = 0.5 * (white + self.prev);
            self.prev = white;
            let rms = start + (target - start) * (i + 1) as f32 / n;
            *s = (shaped * rms / FILTERED_STD)
                .round()
                .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
        }
        if !out.is_empty() {
            self.last_rms = target;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[i16]) -> f32 {
        (x.iter().map(|&v| f32::from(v).powi(2)).sum::<f32>() / x.len() as f32).sqrt()
    }

    /// Uniform noise of a given RMS, from an independent generator.
    fn noise(seed: u64, level: f32, n: usize) -> Vec<i16> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0;
                (u * level * 3f32.sqrt()) as i16
            })
            .collect()
    }

    fn tone(level: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f32 * 0.2).sin() * level * 2f32.sqrt()) as i16)
            .collect()
    }

    #[test]
    fn tracks_background_between_speech() {
        let mut cn = ComfortNoise::new(8_000);
        let bg = noise(1, 200.0, 160 * 500);
        for (k, frame) in bg.chunks(160).enumerate() {
            // Speech-level frames two thirds of the time.
            if k % 3 != 0 {
                cn.observe(&tone(5_000.0, 160));
            } else {
                cn.observe(frame);
            }
        }
        let level = cn.level_rms();
        assert!((150.0..260.0).contains(&level), "level {level}");
        let mut out = vec![0i16; 160 * 50];
        for chunk in out.chunks_mut(160) {
            cn.fill(chunk);
        }
        let got = rms(&out[1_600..]);
        assert!(
            (got / level - 1.0).abs() < 0.1,
            "rms {got} vs level {level}"
        );
    }

    #[test]
    fn falls_fast_and_rises_slowly() {
        let mut cn = ComfortNoise::new(16_000);
        cn.observe(&noise(2, 400.0, 320));
        for _ in 0..10 {
            cn.observe(&noise(3, 50.0, 320));
        }
        assert!(cn.level_rms() < 60.0, "{}", cn.level_rms());
        // Background gets 6 dB louder: followed, but not in one frame.
        cn.observe(&noise(4, 100.0, 320));
        assert!(cn.level_rms() < 80.0);
        for _ in 0..100 {
            cn.observe(&noise(5, 100.0, 320));
        }
        assert!(
            (85.0..115.0).contains(&cn.level_rms()),
            "{}",
            cn.level_rms()
        );
    }

    #[test]
    fn level_is_capped_without_quiet_frames() {
        let mut cn = ComfortNoise::new(8_000);
        for _ in 0..50 {
            cn.observe(&tone(8_000.0, 160));
        }
        assert_eq!(cn.level_rms(), MAX_NOISE_RMS);
        let mut out = [0i16; 1_600];
        cn.fill(&mut out);
        cn.fill(&mut out);
        assert!(rms(&out) < 1.2 * MAX_NOISE_RMS);
    }

    #[test]
    fn digital_silence_gives_silence() {
        let mut cn = ComfortNoise::new(8_000);
        let mut out = [5i16; 160];
        cn.fill(&mut out);
        assert_eq!(out, [0; 160]);
        cn.observe(&[0; 160]);
        cn.fill(&mut out);
        assert_eq!(out, [0; 160]);
        cn.fill(&mut []);
        cn.observe(&[]);
    }

    #[test]
    fn noise_is_broadband_not_a_tone() {
        let mut cn = ComfortNoise::new(8_000);
        cn.observe(&noise(6, 300.0, 160));
        let mut out = vec![0i16; 8_000];
        cn.fill(&mut out[..160]);
        cn.fill(&mut out);
        // Normalised autocorrelation: 0.5 at lag 1 (the light low-pass),
        // near 0 beyond; a tone or a short loop would correlate strongly.
        let x: Vec<f64> = out.iter().map(|&v| f64::from(v)).collect();
        let r = |lag: usize| {
            let c: f64 = x[lag..].iter().zip(&x).map(|(a, b)| a * b).sum();
            c / x.iter().map(|a| a * a).sum::<f64>()
        };
        assert!((r(1) - 0.5).abs() < 0.05, "r1 {}", r(1));
        for lag in 2..200 {
            assert!(r(lag).abs() < 0.06, "lag {lag}: {}", r(lag));
        }
    }
}
