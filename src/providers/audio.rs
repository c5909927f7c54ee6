//! Audio as providers deliver it (any chunk size, any of the usual rates, little-endian
//! bytes) turned into the 16 kHz `i16` PCM the agent plays.

use parley_media::resample::Resampler;

/// The rate audio crosses the provider boundary at.
pub const AGENT_RATE: u32 = 16_000;

/// Streaming conversion of arbitrary-size chunks at `from` Hz to 16 kHz: buffers to the
/// resampler's 20 ms frames, and compensates the resampler's delay so the output lines up
/// with the input and nothing is lost at the end ([`StreamResampler::finish`]).
pub struct StreamResampler {
    inner: Option<Resampler>,
    frame_in: usize,
    pending: Vec<i16>,
    out_frame: Vec<i16>,
    /// Output samples still to drop (the resampler's start-up delay).
    skip: usize,
    /// Input samples pushed and output samples emitted, to size the tail.
    pushed: u64,
    emitted: u64,
    from: u32,
    /// A byte left over from an odd-length chunk of little-endian samples.
    odd_byte: Option<u8>,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A converter from `from` Hz (8, 16, 22.05, 24, 44.1 or 48 kHz) to 16 kHz.
    pub fn new(from: u32) -> Result<StreamResampler, String> {
        // 20 ms frames; 40 ms at 22.05 kHz, whose 20 ms (441 samples) is an odd block.
        let frame_in = if from == 22_050 {
            882
        } else {
            (from / 50) as usize
        };
        let inner = if from == AGENT_RATE {
            None
        } else {
            Some(
                Resampler::new(from, AGENT_RATE, frame_in)
                    .map_err(|e| format!("cannot resample {from} Hz audio: {e}"))?,
            )
        };
        let skip = inner.as_ref().map_or(0, |r| r.delay());
        let out_len = inner.as_ref().map_or(frame_in, |r| r.frame_out());
        Ok(StreamResampler {
            inner,
            frame_in,
            pending: Vec::with_capacity(frame_in * 2),
            out_frame: vec![0; out_len],
            skip,
            pushed: 0,
            emitted: 0,
            from,
            odd_byte: None,
        })
    }

    /// Converts `pcm` (at the input rate), appending what is ready to `out`.
    pub fn push(&mut self, pcm: &[i16], out: &mut Vec<i16>) {
        self.pushed += pcm.len() as u64;
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(pcm);
            self.emitted += pcm.len() as u64;
            return;
        };
        self.pending.extend_from_slice(pcm);
        let mut at = 0;
        while self.pending.len() - at >= self.frame_in {
            let n = r.process(&self.pending[at..at + self.frame_in], &mut self.out_frame);
            at += self.frame_in;
            let drop = self.skip.min(n);
            self.skip -= drop;
            out.extend_from_slice(&self.out_frame[drop..n]);
            self.emitted += (n - drop) as u64;
        }
        self.pending.drain(..at);
    }

    /// As [`StreamResampler::push`], for little-endian 16-bit bytes (a chunk may split a
    /// sample; the odd byte waits for the next chunk).
    pub fn push_le_bytes(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(lo) = self.odd_byte.take() {
            if let Some((&hi, tail)) = rest.split_first() {
                samples.push(i16::from_le_bytes([lo, hi]));
                rest = tail;
            } else {
                self.odd_byte = Some(lo);
            }
        }
        let mut pairs = rest.chunks_exact(2);
        samples.extend((&mut pairs).map(|p| i16::from_le_bytes([p[0], p[1]])));
        if let [b] = pairs.remainder() {
            self.odd_byte = Some(*b);
        }
        self.push(&samples, out);
    }

    /// End of the stream: flushes the resampler's tail (padding with silence) so the output
    /// holds as many samples as the input's duration at 16 kHz.
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        if self.inner.is_none() {
            return;
        }
        let want = self.pushed * u64::from(AGENT_RATE) / u64::from(self.from);
        let mut guard = 0;
        while self.emitted < want && guard < 8 {
            let pad = self.frame_in - self.pending.len() % self.frame_in;
            let zeros = vec![0i16; pad];
            let pushed = self.pushed;
            let before = out.len();
            self.push(&zeros, out);
            self.pushed = pushed;
            let _ = before;
            guard += 1;
        }
        let extra = self.emitted.saturating_sub(want) as usize;
        out.truncate(out.len().saturating_sub(extra));
        self.emitted = want;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn odd_chunks_at_24k_become_16k_of_the_same_duration() {
        let input = tone(24_000, 440.0, 24_000);
        let mut r = StreamResampler::new(24_000).unwrap();
        let mut out = Vec::new();
        // Ragged chunk sizes, as HTTP chunks arrive.
        let mut at = 0;
        for size in [1usize, 333, 4097, 7, 2048].iter().cycle() {
            if at >= input.len() {
                break;
            }
            let end = (at + size).min(input.len());
            r.push(&input[at..end], &mut out);
            at = end;
        }
        r.finish(&mut out);
        assert_eq!(out.len(), 16_000);
        // Same tone, in time: compare with a 16 kHz rendering away from the edges.
        let reference = tone(16_000, 440.0, 16_000);
        let err: f64 = out[1000..15000]
            .iter()
            .zip(&reference[1000..15000])
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / 14000.0;
        assert!(err < 300.0, "mean error {err}");
    }

    #[test]
    fn espeak_rate_converts_too() {
        let mut r = StreamResampler::new(22_050).unwrap();
        let mut out = Vec::new();
        r.push(&tone(22_050, 300.0, 22_050 / 2 + 17), &mut out);
        r.finish(&mut out);
        assert_eq!(out.len(), (22_050 / 2 + 17) * 16_000 / 22_050);
    }

    #[test]
    fn bytes_split_inside_a_sample_are_joined() {
        let samples: Vec<i16> = vec![1, -2, 300, -32768, 32767];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut r = StreamResampler::new(16_000).unwrap();
        let mut out = Vec::new();
        r.push_le_bytes(&bytes[..3], &mut out);
        r.push_le_bytes(&bytes[3..4], &mut out);
        r.push_le_bytes(&bytes[4..], &mut out);
        r.finish(&mut out);
        assert_eq!(out, samples);
    }

    #[test]
    fn unsupported_rates_are_refused() {
        assert!(StreamResampler::new(11_000).is_err());
    }
}
