//! Per-call VAD state: pending samples, the model's recurrent state, the segmenter.

use super::segmenter::{SegmenterConfig, SpeechEvent, SpeechSegmenter};
use super::{VadError, VadRate, STATE_LEN, WINDOW_MS};

/// Pending audio a stream holds before it drops the oldest: 8 windows (256 ms). A stream
/// whose batcher runs every 20 ms never holds more than one window plus one frame.
pub const STREAM_CAPACITY_WINDOWS: usize = 8;

/// What one window of one stream gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowOutcome {
    /// Start of the window, in ms from the start of the stream.
    pub t_ms: u32,
    /// The model's speech probability for the window.
    pub prob: f32,
    /// The speech start or end this window decided, if any.
    pub event: Option<SpeechEvent>,
    /// This window began possible speech (see [`super::SpeechSegmenter::onset`]).
    pub onset: bool,
}

/// One call's voice activity detection: accumulates PCM at its [`VadRate`], exposes 32 ms
/// windows with their context, and keeps the call's model state and [`SpeechSegmenter`].
///
/// Allocates its buffer once, with the first samples pushed (a call that never sends audio
/// costs no buffer); pushing samples and completing windows do not allocate after that.
#[derive(Debug, Clone)]
pub struct VadStream {
    /// `buf[..ctx]`: the last `ctx` samples of the previous window (zeros at first);
    /// `buf[ctx..ctx + len]`: samples not yet run through the model, oldest first
    /// (`ctx` = the rate's context length).
    buf: Box<[f32]>,
    len: usize,
    rate: VadRate,
    state: [f32; STATE_LEN],
    segmenter: SpeechSegmenter,
    samples_in: u64,
    dropped: u64,
}

impl VadStream {
    /// A new 16 kHz stream with the given segmenter settings.
    pub fn new(config: SegmenterConfig) -> Result<Self, VadError> {
        Self::with_rate(config, VadRate::Wideband)
    }

    /// A new stream at `rate` with the given segmenter settings.
    pub fn with_rate(config: SegmenterConfig, rate: VadRate) -> Result<Self, VadError> {
        Ok(VadStream {
            buf: Box::new([]),
            len: 0,
            rate,
            state: [0.0; STATE_LEN],
            segmenter: SpeechSegmenter::new(config)?,
            samples_in: 0,
            dropped: 0,
        })
    }

    /// The rate this stream takes its audio at.
    pub fn rate(&self) -> VadRate {
        self.rate
    }

    /// Switches the stream to audio at `rate` (the call's codec changed). A change resets
    /// the stream ([`VadStream::reset`]): the recurrent state and pending audio of one rate
    /// mean nothing to the other. The same rate changes nothing.
    pub fn set_rate(&mut self, rate: VadRate) {
        if rate != self.rate {
            self.rate = rate;
            self.buf = Box::new([]);
            self.reset();
        }
    }

    /// Pending samples a stream of this rate holds at most.
    pub fn capacity(&self) -> usize {
        STREAM_CAPACITY_WINDOWS * self.rate.window_samples()
    }

    /// Back to the state of a new stream (for reuse by another call), keeping the settings.
    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        self.len = 0;
        self.state = [0.0; STATE_LEN];
        self.segmenter.reset();
        self.samples_in = 0;
        self.dropped = 0;
    }

    /// Appends mono samples at the stream's rate (normally one 20 ms frame: 320 samples at
    /// 16 kHz, 160 at 8 kHz). If more than [`VadStream::capacity`] samples would be pending,
    /// the oldest are dropped and counted ([`VadStream::dropped_samples`]); window times then
    /// lag by the dropped audio.
    pub fn push_pcm(&mut self, pcm: &[i16]) {
        let capacity = self.capacity();
        let ctx = self.rate.context_samples();
        if self.buf.is_empty() {
            self.buf = vec![0.0; ctx + capacity].into_boxed_slice();
        }
        self.samples_in += pcm.len() as u64;
        let pcm = if pcm.len() > capacity {
            let skip = pcm.len() - capacity;
            self.dropped += skip as u64;
            &pcm[skip..]
        } else {
            pcm
        };
        let overflow = (self.len + pcm.len()).saturating_sub(capacity);
        if overflow > 0 {
            self.discard_oldest(overflow);
        }
        let at = ctx + self.len;
        for (dst, &s) in self.buf[at..at + pcm.len()].iter_mut().zip(pcm) {
            *dst = f32::from(s) * (1.0 / 32768.0);
        }
        self.len += pcm.len();
    }

    fn discard_oldest(&mut self, n: usize) {
        let n = n.min(self.len);
        let start = self.rate.context_samples();
        self.buf.copy_within(start + n..start + self.len, start);
        self.len -= n;
        self.dropped += n as u64;
    }

    /// Whether a window's worth of new samples is pending, so [`VadStream::window`] has one.
    pub fn window_ready(&self) -> bool {
        self.len >= self.rate.window_samples()
    }

    /// The next model input row ([`VadRate::input_samples`] long: the context followed by
    /// the new samples, ±1 scale), when one is ready.
    pub fn window(&self) -> Option<&[f32]> {
        if !self.window_ready() {
            return None;
        }
        Some(&self.buf[..self.rate.input_samples()])
    }

    /// The stream's recurrent model state (`[h; c]`).
    pub fn state(&self) -> &[f32; STATE_LEN] {
        &self.state
    }

    /// Samples pushed but not yet part of a completed window.
    pub fn pending_samples(&self) -> usize {
        self.len
    }

    /// Samples dropped because the stream was not drained in time.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped
    }

    /// Whether the segmenter has an open speech segment.
    pub fn in_speech(&self) -> bool {
        self.segmenter.in_speech()
    }

    /// Milliseconds covered by the windows completed so far.
    pub fn elapsed_ms(&self) -> u32 {
        self.segmenter.elapsed_ms()
    }

    /// Records the model's result for the current window: stores the new state, keeps the
    /// window's last samples as the next context, and feeds the segmenter.
    ///
    /// Does nothing and returns `None` when no window is ready.
    pub fn complete_window(
        &mut self,
        prob: f32,
        new_state: &[f32; STATE_LEN],
    ) -> Option<WindowOutcome> {
        if !self.window_ready() {
            return None;
        }
        let t_ms = self.segmenter.elapsed_ms();
        self.state = *new_state;
        // The window's last `ctx` samples (buf[window..window + ctx]) become the context,
        // followed by the samples after the window.
        let window = self.rate.window_samples();
        self.buf
            .copy_within(window..self.rate.context_samples() + self.len, 0);
        self.len -= window;
        let event = self.segmenter.push(prob);
        Some(WindowOutcome {
            t_ms,
            prob,
            event,
            onset: self.segmenter.onset(),
        })
    }

    /// End of the audio: zero-pads pending samples (fewer than a window) to a full window so
    /// the tail can be analysed too. Returns whether that made a window ready.
    pub fn pad_final_window(&mut self) -> bool {
        if self.len == 0 || self.buf.is_empty() || self.window_ready() {
            return self.window_ready();
        }
        let at = self.rate.context_samples() + self.len;
        self.buf[at..self.rate.input_samples()].fill(0.0);
        self.len = self.rate.window_samples();
        true
    }

    /// End of the stream: closes an open segment at the end of the audio pushed (see
    /// [`SpeechSegmenter::finish`]).
    pub fn finish(&mut self) -> impl Iterator<Item = SpeechEvent> {
        let hz = u64::from(self.rate.sample_rate());
        let end_ms = (self.samples_in * 1000 / hz).min(u64::from(u32::MAX));
        // Never past the windows actually analysed plus what is pending.
        let pending_ms =
            (self.len as u64 * u64::from(WINDOW_MS) / self.rate.window_samples() as u64) as u32;
        let end_ms = (end_ms as u32).min(self.segmenter.elapsed_ms() + pending_ms);
        self.segmenter.finish(end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vad::{CONTEXT_SAMPLES, WINDOW_SAMPLES};

    const STREAM_CAPACITY: usize = STREAM_CAPACITY_WINDOWS * WINDOW_SAMPLES;

    fn stream() -> VadStream {
        VadStream::new(SegmenterConfig::default()).unwrap()
    }

    /// Samples whose values encode their position (scaled), for checking framing.
    fn ramp(from: usize, n: usize) -> Vec<i16> {
        (from..from + n).map(|i| (i % 30000) as i16).collect()
    }

    fn as_f32(x: i16) -> f32 {
        f32::from(x) / 32768.0
    }

    #[test]
    fn windows_from_20ms_frames_keep_64_samples_of_context() {
        let mut s = stream();
        let state = [0.25; STATE_LEN];
        let mut pushed = 0;
        let mut windows = 0;
        // 16 frames of 320 samples = 5120 samples = 10 windows exactly.
        for _ in 0..16 {
            s.push_pcm(&ramp(pushed, 320));
            pushed += 320;
            if let Some(w) = s.window() {
                let first_new = windows * WINDOW_SAMPLES;
                // New samples are the next 512 of the stream.
                for k in 0..WINDOW_SAMPLES {
                    assert_eq!(w[CONTEXT_SAMPLES + k], as_f32((first_new + k) as i16));
                }
                // Context: the 64 samples before them, zeros for the first window.
                for (k, &x) in w[..CONTEXT_SAMPLES].iter().enumerate() {
                    let expect = if windows == 0 {
                        0.0
                    } else {
                        as_f32((first_new - CONTEXT_SAMPLES + k) as i16)
                    };
                    assert_eq!(x, expect, "window {windows} context {k}");
                }
                let out = s.complete_window(0.1, &state).unwrap();
                assert_eq!(out.t_ms, windows as u32 * 32);
                assert_eq!(out.prob, 0.1);
                windows += 1;
                // At most one window per 20 ms frame.
                assert!(!s.window_ready());
            }
        }
        assert_eq!(windows, 10);
        assert_eq!(s.pending_samples(), 0);
        assert_eq!(s.elapsed_ms(), 320);
        assert_eq!(s.state(), &state);
        assert_eq!(s.dropped_samples(), 0);
    }

    #[test]
    fn narrowband_windows_are_256_samples_after_32_of_context() {
        let mut s = VadStream::with_rate(SegmenterConfig::default(), VadRate::Narrowband).unwrap();
        assert_eq!(s.capacity(), 8 * 256);
        let state = [0.5; STATE_LEN];
        let mut windows = 0;
        // 16 frames of 160 samples (20 ms at 8 kHz) = 2560 samples = 10 windows of 256.
        for f in 0..16 {
            s.push_pcm(&ramp(f * 160, 160));
            if let Some(w) = s.window() {
                assert_eq!(w.len(), 288);
                let first_new = windows * 256;
                for k in 0..256 {
                    assert_eq!(w[32 + k], as_f32((first_new + k) as i16));
                }
                for (k, &x) in w[..32].iter().enumerate() {
                    let expect = if windows == 0 {
                        0.0
                    } else {
                        as_f32((first_new - 32 + k) as i16)
                    };
                    assert_eq!(x, expect, "window {windows} context {k}");
                }
                let out = s.complete_window(0.1, &state).unwrap();
                assert_eq!(out.t_ms, windows as u32 * 32);
                windows += 1;
            }
        }
        assert_eq!(windows, 10);
        assert_eq!(s.elapsed_ms(), 320);
        // A tail of 80 samples is 10 ms at 8 kHz.
        s.push_pcm(&[0; 80]);
        assert!(s.pad_final_window());
        assert_eq!(s.window().unwrap()[32 + 80..], [0.0; 176]);
    }

    #[test]
    fn changing_the_rate_resets_the_stream() {
        let mut s = stream();
        s.push_pcm(&[100; 600]);
        s.complete_window(0.9, &[0.5; STATE_LEN]);
        // The same rate keeps everything.
        s.set_rate(VadRate::Wideband);
        assert_eq!(s.pending_samples(), 88);
        s.set_rate(VadRate::Narrowband);
        assert_eq!(s.rate(), VadRate::Narrowband);
        assert_eq!(s.pending_samples(), 0);
        assert_eq!(s.state(), &[0.0; STATE_LEN]);
        s.push_pcm(&[7; 256]);
        let w = s.window().unwrap();
        assert_eq!(w.len(), 288);
        assert!(w[..32].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn window_readiness_and_completion_without_a_window() {
        let mut s = stream();
        s.push_pcm(&[1000; 511]);
        assert!(!s.window_ready());
        assert!(s.window().is_none());
        assert!(s.complete_window(0.9, &[1.0; STATE_LEN]).is_none());
        assert_eq!(s.state(), &[0.0; STATE_LEN]);
        s.push_pcm(&[1000]);
        assert!(s.window_ready());
        // Two windows' worth at once: both are served, one per completion.
        s.push_pcm(&[2000; 512]);
        assert!(s.complete_window(0.9, &[1.0; STATE_LEN]).is_some());
        assert!(s.window_ready());
        assert_eq!(s.window().unwrap()[CONTEXT_SAMPLES], as_f32(2000));
        assert_eq!(s.window().unwrap()[0], as_f32(1000));
        assert!(s.complete_window(0.9, &[1.0; STATE_LEN]).is_some());
        assert!(!s.window_ready());
    }

    #[test]
    fn segmenter_events_come_out_of_completed_windows() {
        let mut s = stream();
        let st = [0.0; STATE_LEN];
        let mut events = Vec::new();
        for i in 0..40 {
            s.push_pcm(&[0; 512]);
            let p = if (5..20).contains(&i) { 0.95 } else { 0.02 };
            if let Some(e) = s.complete_window(p, &st).unwrap().event {
                events.push((e.kind, e.t_ms));
            }
        }
        use super::super::SpeechEventKind::{End, Start};
        assert_eq!(events, vec![(Start, 130), (End, 670)]);
    }

    #[test]
    fn overflow_drops_the_oldest_samples() {
        let mut s = stream();
        s.push_pcm(&ramp(0, STREAM_CAPACITY));
        assert_eq!(s.dropped_samples(), 0);
        s.push_pcm(&ramp(STREAM_CAPACITY, 100));
        assert_eq!(s.dropped_samples(), 100);
        assert_eq!(s.pending_samples(), STREAM_CAPACITY);
        // The oldest pending sample is now #100.
        assert_eq!(s.window().unwrap()[CONTEXT_SAMPLES], as_f32(100));
        // A single push larger than the capacity keeps its newest samples.
        let mut s = stream();
        s.push_pcm(&ramp(0, STREAM_CAPACITY + 7));
        assert_eq!(s.dropped_samples(), 7);
        assert_eq!(s.window().unwrap()[CONTEXT_SAMPLES], as_f32(7));
    }

    #[test]
    fn final_partial_window_is_zero_padded() {
        let mut s = stream();
        assert!(!s.pad_final_window());
        s.push_pcm(&[3000; 600]);
        assert!(s.pad_final_window()); // a full window is ready already
        s.complete_window(0.0, &[0.0; STATE_LEN]);
        assert_eq!(s.pending_samples(), 88);
        assert!(s.pad_final_window());
        let w = s.window().unwrap();
        assert!(w[..CONTEXT_SAMPLES + 88].iter().all(|&x| x == as_f32(3000)));
        assert!(w[CONTEXT_SAMPLES + 88..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn finish_ends_open_speech_at_the_end_of_the_audio() {
        let mut s = stream();
        let st = [0.0; STATE_LEN];
        for _ in 0..20 {
            s.push_pcm(&[0; 512]);
            s.complete_window(0.9, &st);
        }
        // 100 more samples (6.25 ms) that never filled a window.
        s.push_pcm(&[0; 100]);
        let ev: Vec<_> = s.finish().collect();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].t_ms, 646);
        assert!(!s.in_speech());
    }

    #[test]
    fn reset_forgets_everything() {
        let mut s = stream();
        s.push_pcm(&[5; 700]);
        s.complete_window(0.9, &[0.5; STATE_LEN]);
        s.reset();
        assert_eq!(s.pending_samples(), 0);
        assert_eq!(s.elapsed_ms(), 0);
        assert_eq!(s.state(), &[0.0; STATE_LEN]);
        s.push_pcm(&[1; 512]);
        // Context is zeros again.
        assert!(s.window().unwrap()[..CONTEXT_SAMPLES]
            .iter()
            .all(|&x| x == 0.0));
    }
}
