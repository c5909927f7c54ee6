//! Speech start/end events from per-window speech probabilities.
//!
//! Streaming, one window at a time, with hysteresis. The rules are those of the `silero-vad`
//! package's `get_speech_timestamps`, so `parley media vad` finds the segments users get from
//! the package with the same settings (the reference test checks this on real speech):
//!
//! - Speech may begin on a window whose probability is at least `threshold`. It becomes a
//!   segment (a [`SpeechEventKind::Start`] event) once it has lasted more than
//!   `min_speech_ms` with no silence in progress; shorter bursts (a cough, a click) produce no
//!   event at all.
//! - Inside speech, a window below the negative threshold (`threshold - 0.15` by default)
//!   starts a silence; a window at or above `threshold` cancels it, windows in between leave
//!   it as it is. The speech ends at the silence's start ([`SpeechEventKind::End`]) on the
//!   first window below the negative threshold that begins at least `min_silence_ms` after
//!   the silence began; a candidate that never became a segment is dropped instead. With the
//!   defaults that is the fifth silent window: the end is known 160 ms after speech stopped.
//! - Reported times are padded by `speech_pad_ms`: starts earlier (pre-roll, never before
//!   the previous end or 0), ends later (never after the audio seen so far).
//!
//! Every event carries `t_ms` (where the speech boundary is, padded) and `detected_ms` (the
//! end of the window that decided it): their difference is the detector's latency.

use super::{VadError, WINDOW_MS};

/// Segmenter settings. Durations are in milliseconds and act in whole 32 ms windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// Probability at or above which a window is speech.
    pub threshold: f32,
    /// Probability below which a window is silence; `None` means `threshold - 0.15`
    /// (at least 0.01).
    pub neg_threshold: Option<f32>,
    /// Speech must last longer than this to make a segment.
    pub min_speech_ms: u32,
    /// Silence needed to end a segment (counted as the module documentation says).
    pub min_silence_ms: u32,
    /// Padding added before each start (pre-roll) and after each end.
    pub speech_pad_ms: u32,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250,
            min_silence_ms: 100,
            speech_pad_ms: 30,
        }
    }
}

impl SegmenterConfig {
    /// The negative threshold in effect.
    pub fn negative_threshold(&self) -> f32 {
        self.neg_threshold
            .unwrap_or_else(|| (self.threshold - 0.15).max(0.01))
    }

    /// Checks the ranges: `0 < threshold <= 1`, `0 <= neg_threshold <= threshold`, durations
    /// at most one hour.
    pub fn validate(&self) -> Result<(), VadError> {
        let bad =
            |field: &'static str, reason: String| Err(VadError::InvalidConfig { field, reason });
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return bad("threshold", format!("{} is not in (0, 1]", self.threshold));
        }
        if let Some(neg) = self.neg_threshold {
            if !(0.0..=self.threshold).contains(&neg) {
                return bad(
                    "neg_threshold",
                    format!("{neg} is not in [0, threshold = {}]", self.threshold),
                );
            }
        }
        const HOUR_MS: u32 = 3_600_000;
        for (field, v) in [
            ("min_speech_ms", self.min_speech_ms),
            ("min_silence_ms", self.min_silence_ms),
            ("speech_pad_ms", self.speech_pad_ms),
        ] {
            if v > HOUR_MS {
                return bad(field, format!("{v} ms is more than an hour"));
            }
        }
        Ok(())
    }
}

/// Whether speech started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechEventKind {
    /// Speech began (at `t_ms`, pre-roll included).
    Start,
    /// Speech ended (at `t_ms`, padding included).
    End,
}

/// A speech boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechEvent {
    /// Start or end.
    pub kind: SpeechEventKind,
    /// Where the boundary is, in ms from the start of the stream, padded.
    pub t_ms: u32,
    /// End of the window that decided it, in ms from the start of the stream.
    pub detected_ms: u32,
}

/// A detected stretch of speech, `[start_ms, end_ms)` from the start of the stream, padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    /// Start, pre-roll included.
    pub start_ms: u32,
    /// End, padding included.
    pub end_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No speech.
    Silence,
    /// Speech since `start` (unpadded), not yet long enough to report.
    Candidate { start: u32 },
    /// A reported segment is open.
    Speech,
}

/// Turns a stream's per-window probabilities into [`SpeechEvent`]s. No allocation.
#[derive(Debug, Clone)]
pub struct SpeechSegmenter {
    threshold: f32,
    neg_threshold: f32,
    min_speech_ms: u32,
    min_silence_ms: u32,
    pad_ms: u32,
    /// Windows seen so far.
    windows: u32,
    state: State,
    /// Start (unpadded) of a silence in progress inside speech or a candidate.
    silence_since: Option<u32>,
    /// The last reported end, which the next pre-roll must not cross.
    last_end_ms: u32,
    /// The last window pushed began a candidate (possible speech, not yet reported).
    onset: bool,
}

impl SpeechSegmenter {
    /// A segmenter with validated settings.
    pub fn new(config: SegmenterConfig) -> Result<Self, VadError> {
        config.validate()?;
        Ok(SpeechSegmenter {
            threshold: config.threshold,
            neg_threshold: config.negative_threshold(),
            min_speech_ms: config.min_speech_ms,
            min_silence_ms: config.min_silence_ms,
            pad_ms: config.speech_pad_ms,
            windows: 0,
            state: State::Silence,
            silence_since: None,
            last_end_ms: 0,
            onset: false,
        })
    }

    /// Back to the state of a new stream, keeping the settings.
    pub fn reset(&mut self) {
        self.windows = 0;
        self.state = State::Silence;
        self.silence_since = None;
        self.last_end_ms = 0;
        self.onset = false;
    }

    /// Whether the last window pushed began a candidate: possibly speech, reported as
    /// `Start` only if it lasts `min_speech_ms`. Turn-taking uses it to hold an end of turn
    /// while the caller may be resuming (the `Start` comes a quarter second later).
    pub fn onset(&self) -> bool {
        self.onset
    }

    /// Whether a reported segment is open (a `Start` was returned and no `End` yet).
    pub fn in_speech(&self) -> bool {
        self.state == State::Speech
    }

    /// Milliseconds of audio seen: the end of the last window pushed.
    pub fn elapsed_ms(&self) -> u32 {
        self.windows.saturating_mul(WINDOW_MS)
    }

    /// Feeds the next window's probability (NaN counts as 0); returns the event it decides.
    pub fn push(&mut self, prob: f32) -> Option<SpeechEvent> {
        let t = self.elapsed_ms();
        self.windows = self.windows.saturating_add(1);
        let now = self.elapsed_ms();
        let speech = prob >= self.threshold;
        // NaN is not speech (the comparison fails) and counts as silence.
        let silent = prob.is_nan() || prob < self.neg_threshold;
        self.onset = false;

        if self.state == State::Silence {
            if !speech {
                return None;
            }
            self.onset = true;
            self.state = State::Candidate { start: t };
            self.silence_since = None;
        } else if speech {
            self.silence_since = None;
        } else if silent && self.silence_since.is_none() {
            self.silence_since = Some(t);
        }

        // A silence is decided on a silent window starting min_silence after it began.
        let silence_over = |since: u32| silent && t - since >= self.min_silence_ms;
        match (self.state, self.silence_since) {
            (State::Candidate { .. }, Some(since)) if silence_over(since) => {
                self.state = State::Silence;
                self.silence_since = None;
                None
            }
            (State::Speech, Some(since)) if silence_over(since) => {
                self.state = State::Silence;
                self.silence_since = None;
                Some(self.end_event(since, now))
            }
            (State::Candidate { start }, None) if now - start > self.min_speech_ms => {
                self.state = State::Speech;
                Some(self.start_event(start, now))
            }
            _ => None,
        }
    }

    /// Ends the stream at `end_ms` (the length of the audio): closes an open segment and
    /// reports a candidate that is long enough. Returns up to two events, in order. The
    /// segmenter is then back in silence; call [`SpeechSegmenter::reset`] before reusing it
    /// for another stream.
    pub fn finish(&mut self, end_ms: u32) -> impl Iterator<Item = SpeechEvent> {
        let speech_end = self.silence_since.unwrap_or(end_ms).min(end_ms);
        let events = match self.state {
            State::Silence => [None, None],
            State::Speech => [Some(self.end_event(speech_end, end_ms)), None],
            State::Candidate { start } if speech_end.saturating_sub(start) > self.min_speech_ms => {
                let s = self.start_event(start, end_ms);
                [Some(s), Some(self.end_event(speech_end, end_ms))]
            }
            State::Candidate { .. } => [None, None],
        };
        self.state = State::Silence;
        self.silence_since = None;
        events.into_iter().flatten()
    }

    fn start_event(&self, start: u32, now: u32) -> SpeechEvent {
        SpeechEvent {
            kind: SpeechEventKind::Start,
            t_ms: start.saturating_sub(self.pad_ms).max(self.last_end_ms),
            detected_ms: now,
        }
    }

    fn end_event(&mut self, speech_end: u32, now: u32) -> SpeechEvent {
        let t_ms = speech_end.saturating_add(self.pad_ms).min(now);
        self.last_end_ms = t_ms;
        SpeechEvent {
            kind: SpeechEventKind::End,
            t_ms,
            detected_ms: now,
        }
    }
}

/// Pairs start and end events into segments (an unmatched start is dropped).
pub(crate) fn segments_from_events(events: impl IntoIterator<Item = SpeechEvent>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut open = None;
    for e in events {
        match e.kind {
            SpeechEventKind::Start => open = Some(e.t_ms),
            SpeechEventKind::End => {
                if let Some(start_ms) = open.take() {
                    out.push(Segment {
                        start_ms,
                        end_ms: e.t_ms,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probs` through a segmenter and `finish`, returning every event.
    fn run(config: SegmenterConfig, probs: &[f32]) -> Vec<SpeechEvent> {
        let mut s = SpeechSegmenter::new(config).unwrap();
        let mut events: Vec<SpeechEvent> = probs.iter().filter_map(|&p| s.push(p)).collect();
        let end = probs.len() as u32 * WINDOW_MS;
        events.extend(s.finish(end));
        events
    }

    /// `n` windows of probability `p`.
    fn w(n: usize, p: f32) -> Vec<f32> {
        vec![p; n]
    }

    fn cat(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    #[test]
    fn onset_marks_the_first_window_of_possible_speech() {
        let mut s = SpeechSegmenter::new(SegmenterConfig::default()).unwrap();
        let onsets: Vec<bool> = cat(&[w(3, 0.1), w(12, 0.9), w(6, 0.05), w(2, 0.9)])
            .into_iter()
            .map(|p| {
                s.push(p);
                s.onset()
            })
            .collect();
        let at: Vec<usize> = (0..onsets.len()).filter(|&i| onsets[i]).collect();
        // Once when the speech begins, not again while it lasts or once it is reported, and
        // again when speech follows the silence that ended it.
        assert_eq!(at, vec![3, 21]);
    }

    fn start(t_ms: u32, detected_ms: u32) -> SpeechEvent {
        SpeechEvent {
            kind: SpeechEventKind::Start,
            t_ms,
            detected_ms,
        }
    }

    fn end(t_ms: u32, detected_ms: u32) -> SpeechEvent {
        SpeechEvent {
            kind: SpeechEventKind::End,
            t_ms,
            detected_ms,
        }
    }

    #[test]
    fn one_utterance_with_defaults() {
        // 10 silent windows (0..320 ms), 20 speech windows (320..960 ms), 10 silent.
        let probs = cat(&[w(10, 0.05), w(20, 0.9), w(10, 0.05)]);
        let ev = run(SegmenterConfig::default(), &probs);
        // Start confirmed once 256 ms (8 windows > 250 ms) of speech were seen: at 576 ms.
        // Reported 30 ms before the first speech window. End: silence from 960 ms, decided
        // by the silent window starting 128 ms (>= 100 ms) later, at its end (1120 ms);
        // reported at 990 ms.
        assert_eq!(ev, vec![start(290, 576), end(990, 1120)]);
    }

    #[test]
    fn short_burst_is_not_speech() {
        // 7 windows = 224 ms < 250 ms.
        let ev = run(
            SegmenterConfig::default(),
            &cat(&[w(5, 0.0), w(7, 0.99), w(10, 0.0)]),
        );
        assert!(ev.is_empty(), "{ev:?}");
        // 8 windows = 256 ms: a segment.
        let ev = run(
            SegmenterConfig::default(),
            &cat(&[w(5, 0.0), w(8, 0.99), w(10, 0.0)]),
        );
        assert_eq!(ev, vec![start(130, 416), end(446, 576)]);
    }

    #[test]
    fn short_pause_does_not_split() {
        // 4 silent windows inside speech: the 5th, which would start 128 ms into the
        // silence, is speech again: one segment.
        let probs = cat(&[w(10, 0.9), w(4, 0.1), w(10, 0.9), w(10, 0.1)]);
        let ev = run(SegmenterConfig::default(), &probs);
        assert_eq!(ev, vec![start(0, 256), end(798, 928)]);
        // 5 silent windows: two segments; the second pre-roll starts 30 ms early.
        let probs = cat(&[w(10, 0.9), w(5, 0.1), w(10, 0.9), w(10, 0.1)]);
        let ev = run(SegmenterConfig::default(), &probs);
        assert_eq!(
            ev,
            vec![start(0, 256), end(350, 480), start(450, 736), end(830, 960)]
        );
    }

    #[test]
    fn hysteresis_between_thresholds() {
        // After speech starts, 0.4 (between 0.35 and 0.5) keeps it going indefinitely.
        let probs = cat(&[w(10, 0.9), w(40, 0.4), w(5, 0.2)]);
        let ev = run(SegmenterConfig::default(), &probs);
        assert_eq!(ev, vec![start(0, 256), end(1630, 1760)]);
        // But 0.4 never starts speech.
        assert!(run(SegmenterConfig::default(), &w(50, 0.4)).is_empty());
        // Windows between the thresholds neither cancel a silence nor decide it: silence
        // from 320 ms, then 0.4s; the next silent window (at 672 ms) ends the speech.
        let probs = cat(&[w(10, 0.9), w(1, 0.1), w(10, 0.4)]);
        let mut s = SpeechSegmenter::new(SegmenterConfig::default()).unwrap();
        let ev: Vec<_> = probs.iter().filter_map(|&p| s.push(p)).collect();
        assert_eq!(ev, vec![start(0, 256)]);
        assert!(s.in_speech());
        assert_eq!(s.push(0.1), Some(end(350, 704)));
        // A window at the threshold cancels it.
        let probs = cat(&[w(10, 0.9), w(3, 0.1), w(1, 0.5), w(3, 0.1), w(10, 0.0)]);
        let ev = run(SegmenterConfig::default(), &probs);
        assert_eq!(ev, vec![start(0, 256), end(478, 608)]);
    }

    #[test]
    fn explicit_negative_threshold() {
        let cfg = SegmenterConfig {
            neg_threshold: Some(0.45),
            ..SegmenterConfig::default()
        };
        assert_eq!(cfg.negative_threshold(), 0.45);
        // 0.4 is now silence.
        let ev = run(cfg, &cat(&[w(10, 0.9), w(10, 0.4)]));
        assert_eq!(ev, vec![start(0, 256), end(350, 480)]);
        // Default: 0.15 below, but never under 0.01.
        let low = SegmenterConfig {
            threshold: 0.1,
            ..SegmenterConfig::default()
        };
        assert_eq!(low.negative_threshold(), 0.01);
        assert!((SegmenterConfig::default().negative_threshold() - 0.35).abs() < 1e-6);
    }

    #[test]
    fn threshold_is_configurable() {
        let cfg = SegmenterConfig {
            threshold: 0.8,
            ..SegmenterConfig::default()
        };
        let probs = cat(&[w(3, 0.0), w(10, 0.7), w(10, 0.85), w(10, 0.0)]);
        // 0.7 is below 0.8: speech starts at window 13 (416 ms).
        assert_eq!(run(cfg, &probs), vec![start(386, 672), end(766, 896)]);
        // With the default threshold it starts at window 3 (96 ms).
        assert_eq!(
            run(SegmenterConfig::default(), &probs),
            vec![start(66, 352), end(766, 896)]
        );
    }

    #[test]
    fn durations_and_padding_are_configurable() {
        let cfg = SegmenterConfig {
            min_speech_ms: 64,
            min_silence_ms: 300,
            speech_pad_ms: 100,
            ..SegmenterConfig::default()
        };
        // 3 speech windows (96 ms > 64) make a segment; a 256 ms pause does not split it.
        let probs = cat(&[w(10, 0.0), w(3, 0.9), w(8, 0.0), w(3, 0.9), w(12, 0.0)]);
        let ev = run(cfg, &probs);
        // Start 100 ms before 320 ms. Speech ends at 768 ms, reported 100 ms later; decided
        // by the silent window starting 320 ms (>= 300) after it, at 1120 ms.
        assert_eq!(ev, vec![start(220, 416), end(868, 1120)]);
        // 2 windows (64 ms, not more than 64): nothing.
        assert!(run(cfg, &cat(&[w(10, 0.0), w(2, 0.9), w(12, 0.0)])).is_empty());
    }

    #[test]
    fn zero_durations() {
        let cfg = SegmenterConfig {
            min_speech_ms: 0,
            min_silence_ms: 0,
            speech_pad_ms: 0,
            ..SegmenterConfig::default()
        };
        let ev = run(cfg, &[0.0, 0.9, 0.0, 0.9, 0.9, 0.0]);
        assert_eq!(
            ev,
            vec![start(32, 64), end(64, 96), start(96, 128), end(160, 192)]
        );
    }

    #[test]
    fn pre_roll_never_crosses_the_previous_end_nor_zero() {
        let cfg = SegmenterConfig {
            speech_pad_ms: 200,
            ..SegmenterConfig::default()
        };
        // Speech from 64 ms: the pre-roll stops at 0. The first end, 480 + 200, is limited
        // to what had been seen when it was decided (640). The second segment's pre-roll
        // would reach back to 704 - 200 = 504: it stops at that end.
        let probs = cat(&[w(2, 0.0), w(13, 0.9), w(7, 0.0), w(10, 0.9), w(10, 0.0)]);
        let ev = run(cfg, &probs);
        assert_eq!(ev[0], start(0, 320));
        assert_eq!(ev[1], end(640, 640));
        assert_eq!(ev[2], start(640, 960));
        assert!(ev.windows(2).all(|p| p[0].t_ms <= p[1].t_ms), "{ev:?}");
    }

    #[test]
    fn finish_closes_open_speech_and_long_candidates() {
        let mut s = SpeechSegmenter::new(SegmenterConfig::default()).unwrap();
        for _ in 0..20 {
            s.push(0.9);
        }
        assert!(s.in_speech());
        // Speech until the end of the audio: no padding past it.
        let ev: Vec<_> = s.finish(650).collect();
        assert_eq!(ev, vec![end(650, 650)]);
        assert!(!s.in_speech());

        // A silence in progress at the end: speech ended at its start, padded.
        s.reset();
        for p in cat(&[w(20, 0.9), w(2, 0.0)]) {
            s.push(p);
        }
        assert_eq!(s.finish(704).collect::<Vec<_>>(), vec![end(670, 704)]);

        // A candidate cut short by the end of the file is reported when long enough...
        s.reset();
        for p in cat(&[w(3, 0.0), w(7, 0.9)]) {
            assert_eq!(s.push(p), None);
        }
        // 7 windows = 224 ms < 250: nothing.
        assert_eq!(s.finish(320).count(), 0);
        s.reset();
        for p in cat(&[w(3, 0.0), w(7, 0.9)]) {
            s.push(p);
        }
        // ...judged on the audio's end, which may lie past the last whole window (samples
        // that never filled one): 96..352 = 256 ms.
        assert_eq!(
            s.finish(352).collect::<Vec<_>>(),
            vec![start(66, 352), end(352, 352)]
        );
        // Nothing open: nothing to report.
        s.reset();
        assert_eq!(s.finish(1000).count(), 0);
    }

    #[test]
    fn nan_counts_as_silence() {
        let probs = cat(&[w(10, 0.9), w(5, f32::NAN), w(3, 0.9)]);
        let ev = run(SegmenterConfig::default(), &probs);
        assert_eq!(ev, [start(0, 256), end(350, 480)]);
        assert!(run(SegmenterConfig::default(), &w(20, f32::NAN)).is_empty());
    }

    #[test]
    fn reset_restarts_time() {
        let mut s = SpeechSegmenter::new(SegmenterConfig::default()).unwrap();
        for _ in 0..30 {
            s.push(0.0);
        }
        assert_eq!(s.elapsed_ms(), 960);
        s.reset();
        assert_eq!(s.elapsed_ms(), 0);
        let ev: Vec<_> = (0..8).filter_map(|_| s.push(0.9)).collect();
        assert_eq!(ev, vec![start(0, 256)]);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let check = |cfg: SegmenterConfig, field: &str| {
            let err = SpeechSegmenter::new(cfg).unwrap_err();
            assert!(
                matches!(err, VadError::InvalidConfig { field: f, .. } if f == field),
                "{err}"
            );
        };
        let d = SegmenterConfig::default();
        check(
            SegmenterConfig {
                threshold: 0.0,
                ..d
            },
            "threshold",
        );
        check(
            SegmenterConfig {
                threshold: 1.5,
                ..d
            },
            "threshold",
        );
        check(
            SegmenterConfig {
                threshold: f32::NAN,
                ..d
            },
            "threshold",
        );
        check(
            SegmenterConfig {
                neg_threshold: Some(0.6),
                ..d
            },
            "neg_threshold",
        );
        check(
            SegmenterConfig {
                neg_threshold: Some(-0.1),
                ..d
            },
            "neg_threshold",
        );
        check(
            SegmenterConfig {
                min_silence_ms: 4_000_000,
                ..d
            },
            "min_silence_ms",
        );
        let msg = SpeechSegmenter::new(SegmenterConfig {
            threshold: 2.0,
            ..d
        })
        .unwrap_err()
        .to_string();
        assert_eq!(msg, "invalid VAD setting threshold: 2 is not in (0, 1]");
        assert!(SpeechSegmenter::new(SegmenterConfig {
            threshold: 1.0,
            neg_threshold: Some(1.0),
            ..d
        })
        .is_ok());
    }

    #[test]
    fn segments_pair_events() {
        let ev = vec![
            start(10, 100),
            end(200, 300),
            start(400, 500),
            end(600, 700),
            start(800, 900),
        ];
        assert_eq!(
            segments_from_events(ev),
            vec![
                Segment {
                    start_ms: 10,
                    end_ms: 200
                },
                Segment {
                    start_ms: 400,
                    end_ms: 600
                }
            ]
        );
    }
}
