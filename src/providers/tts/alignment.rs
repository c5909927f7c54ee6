//! Which sentence a piece of streamed audio belongs to, when the vendor takes the whole
//! turn's text on one connection and returns audio with character alignment (ElevenLabs
//! `stream-input` with `sync_alignment`).
//!
//! The alignment lists the characters each audio message voices. Walking them along the
//! text as sent (each sentence with its trailing space) tells where the audio is: a
//! message's audio belongs to the sentence in which its alignment starts, and a sentence is
//! complete once the alignment has passed its end. The walk tolerates whitespace
//! differences: whitespace the vendor adds (the initial `" "`) is ignored, and whitespace
//! it drops is skipped when the next visible character comes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the turn should yield, in this order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Audio {
        sentence: usize,
        pcm: Vec<i16>,
        /// Set on the sentence's first audio: the wait since it was sent (or since the
        /// sentence before it completed, if later).
        first_after: Option<Duration>,
    },
    Done {
        sentence: usize,
    },
}

#[derive(Debug)]
struct Pending {
    index: usize,
    /// The sentence exactly as sent (with its trailing space; empty if not sent), to send
    /// again on a new connection.
    text: String,
    /// Characters of the text sent, up to and including this sentence.
    end: u64,
    /// When its audio could start coming (TTFB).
    since: Instant,
    emitted: bool,
}

/// Sentences sent on the current connection and not yet complete, and how far the audio
/// has got through them.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    pending: VecDeque<Pending>,
    /// The text sent and not yet voiced.
    script: VecDeque<char>,
    /// Characters of the text sent that the alignment has covered.
    covered: u64,
    /// Characters of the text sent.
    sent: u64,
    /// Audio that came when no sentence was pending (alignment beyond the text sent): it
    /// leads the next sentence's audio, if one comes.
    orphan: Vec<i16>,
}

impl Tracker {
    pub(super) fn new() -> Tracker {
        Tracker::default()
    }

    /// Sentences sent and not complete.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether any audio of a pending sentence was yielded (then it cannot be sent again).
    pub(super) fn any_emitted(&self) -> bool {
        self.pending.iter().any(|p| p.emitted)
    }

    /// Registers sentence `index`, sent as `text` (empty: nothing sent, and it completes
    /// as soon as those before it do, possibly now).
    pub(super) fn sent(&mut self, index: usize, text: &str, now: Instant) -> Vec<Step> {
        self.script.extend(text.chars());
        self.sent += text.chars().count() as u64;
        self.pending.push_back(Pending {
            index,
            text: text.to_string(),
            end: self.sent,
            since: now,
            emitted: false,
        });
        self.pop_complete(now)
    }

    /// An audio message: its (16 kHz) audio and, when it carries alignment, the
    /// characters it voices.
    pub(super) fn message<S: AsRef<str>>(
        &mut self,
        pcm: Vec<i16>,
        chars: Option<&[S]>,
        now: Instant,
    ) -> Vec<Step> {
        let chars: Vec<char> = chars
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.as_ref().chars().collect::<Vec<_>>())
            .collect();
        let mut steps = Vec::new();
        // A message starting with a visible character starts after any whitespace still
        // pending in the text (the vendor dropped it), which may complete a sentence.
        if chars.first().is_some_and(|c| !c.is_whitespace()) {
            self.skip_whitespace();
            steps.extend(self.pop_complete(now));
        }
        if !pcm.is_empty() {
            // Everything before the front sentence is complete, so the alignment of this
            // message starts in the front sentence.
            match self.pending.front_mut() {
                Some(p) => {
                    let first_after = (!p.emitted).then(|| now.saturating_duration_since(p.since));
                    p.emitted = true;
                    let mut audio = std::mem::take(&mut self.orphan);
                    audio.extend_from_slice(&pcm);
                    steps.push(Step::Audio {
                        sentence: p.index,
                        pcm: audio,
                        first_after,
                    });
                }
                None => self.orphan.extend_from_slice(&pcm),
            }
        }
        for c in chars {
            self.voice(c);
        }
        steps.extend(self.pop_complete(now));
        steps
    }

    /// The vendor says the stream is complete: every pending sentence is done.
    pub(super) fn complete_all(&mut self) -> Vec<Step> {
        self.covered = self.sent;
        self.script.clear();
        // Audio beyond the text with no sentence after it: nothing to attach it to.
        self.orphan.clear();
        self.pending
            .drain(..)
            .map(|p| Step::Done { sentence: p.index })
            .collect()
    }

    /// A new connection will voice the pending sentences from the start: returns their
    /// texts as sent (in order; empty ones included) to send again.
    pub(super) fn restart(&mut self, now: Instant) -> Vec<String> {
        self.covered = 0;
        self.sent = 0;
        self.script.clear();
        self.orphan.clear();
        for p in &mut self.pending {
            self.script.extend(p.text.chars());
            self.sent += p.text.chars().count() as u64;
            p.end = self.sent;
            p.since = now;
        }
        self.pending.iter().map(|p| p.text.clone()).collect()
    }

    /// Moves past one voiced character `c`.
    fn voice(&mut self, c: char) {
        let Some(&next) = self.script.front() else {
            // Beyond the text sent: it must not complete sentences not yet sent.
            return;
        };
        if c.is_whitespace() {
            // Whitespace the vendor added is not in the text.
            if next.is_whitespace() {
                self.advance();
            }
            return;
        }
        self.skip_whitespace();
        // A visible character stands for the next one of ours, whichever it is (the vendor
        // may spell it differently).
        self.advance();
    }

    fn skip_whitespace(&mut self) {
        while self.script.front().is_some_and(|c| c.is_whitespace()) {
            self.advance();
        }
    }

    fn advance(&mut self) {
        if self.script.pop_front().is_some() {
            self.covered += 1;
        }
    }

    fn pop_complete(&mut self, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        while let Some(p) = self.pending.front() {
            if p.end > self.covered {
                break;
            }
            steps.push(Step::Done { sentence: p.index });
            self.pending.pop_front();
            // The next sentence's audio can only start now.
            if let Some(next) = self.pending.front_mut() {
                next.since = next.since.max(now);
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<String> {
        s.chars().map(String::from).collect()
    }

    /// (sentence, samples, is-done) of each step, in order.
    fn summary(steps: &[Step]) -> Vec<(usize, usize, bool)> {
        steps
            .iter()
            .map(|s| match s {
                Step::Audio { sentence, pcm, .. } => (*sentence, pcm.len(), false),
                Step::Done { sentence } => (*sentence, 0, true),
            })
            .collect()
    }

    #[test]
    fn a_message_straddling_two_sentences_belongs_to_the_first() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        assert!(t.sent(0, "One two. ", t0).is_empty());
        assert!(t.sent(1, "Three. ", t0).is_empty());
        let mut steps = Vec::new();
        for (i, m) in ["One t", "wo. T", "hree.", " "].iter().enumerate() {
            steps.extend(t.message(vec![i as i16; 5], Some(&chars(m)), t0));
        }
        assert_eq!(
            summary(&steps),
            vec![
                (0, 5, false),
                (0, 5, false),
                (0, 0, true),
                (1, 5, false),
                (1, 5, false),
                (1, 0, true)
            ]
        );
        assert!(!t.has_pending());
    }

    #[test]
    fn whitespace_the_vendor_adds_or_drops_does_not_matter() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        t.sent(0, "Hi  there. ", t0);
        t.sent(1, "Bye. ", t0);
        // An initial " " we did not count, one of our two spaces, no trailing space.
        let s = t.message(vec![1; 4], Some(&chars(" Hi there.")), t0);
        assert_eq!(summary(&s), vec![(0, 4, false)]);
        // The next visible character passes sentence 0's trailing space: it is complete.
        let s = t.message(vec![1; 3], Some(&chars("Bye.")), t0);
        assert_eq!(summary(&s), vec![(0, 0, true), (1, 3, false)]);
        // Sentence 1 is complete at its trailing space, or at the end of the stream.
        assert_eq!(summary(&t.complete_all()), vec![(1, 0, true)]);
    }

    #[test]
    fn audio_beyond_the_text_leads_the_next_sentence() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        t.sent(0, "Yes. ", t0);
        let s = t.message(vec![1; 2], Some(&chars("Yes. ")), t0);
        assert_eq!(summary(&s), vec![(0, 2, false), (0, 0, true)]);
        assert!(t.message(vec![7; 2], Some(&chars(" ")), t0).is_empty());
        t.sent(1, "More. ", t0);
        let s = t.message(vec![1; 3], Some(&chars("More. ")), t0);
        assert_eq!(summary(&s), vec![(1, 5, false), (1, 0, true)]);
        // At the very end it has nothing to belong to.
        assert!(t.message(vec![7; 2], Some(&chars(" ")), t0).is_empty());
        assert!(t.complete_all().is_empty());
    }

    #[test]
    fn without_alignment_audio_goes_in_order_and_completes_at_the_end() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        t.sent(0, "A. ", t0);
        t.sent(1, "B. ", t0);
        let a = t.message::<String>(vec![1; 3], None, t0);
        let b = t.message::<String>(vec![1; 3], None, t0);
        assert_eq!(summary(&a), vec![(0, 3, false)]);
        assert_eq!(summary(&b), vec![(0, 3, false)]);
        assert_eq!(summary(&t.complete_all()), vec![(0, 0, true), (1, 0, true)]);
    }

    #[test]
    fn empty_sentences_complete_in_turn() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        assert_eq!(summary(&t.sent(0, "", t0)), vec![(0, 0, true)]);
        assert!(t.sent(1, "Yes. ", t0).is_empty());
        assert!(t.sent(2, "", t0).is_empty());
        let s = t.message(vec![1; 2], Some(&chars("Yes. ")), t0);
        assert_eq!(summary(&s), vec![(1, 2, false), (1, 0, true), (2, 0, true)]);
    }

    #[test]
    fn extra_alignment_does_not_complete_unsent_sentences() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        t.sent(0, "Hi. ", t0);
        t.message(vec![1], Some(&chars("Hi. and more")), t0);
        assert!(t.sent(1, "Later. ", t0).is_empty());
        assert!(t.has_pending());
    }

    #[test]
    fn first_audio_reports_the_wait_since_the_sentence_could_start() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Tracker::new();
        t.sent(0, "One. ", t0);
        t.sent(1, "Two. ", t0);
        let s = t.message(vec![1], Some(&chars("One. ")), t0 + ms(100));
        assert!(matches!(s[0], Step::Audio { first_after: Some(d), .. } if d == ms(100)));
        let s = t.message(vec![1], Some(&chars("Tw")), t0 + ms(130));
        assert!(matches!(s[0], Step::Audio { first_after: Some(d), .. } if d == ms(30)));
        let s = t.message(vec![1], Some(&chars("o.")), t0 + ms(140));
        assert!(matches!(
            s[0],
            Step::Audio {
                first_after: None,
                ..
            }
        ));
    }

    #[test]
    fn restart_sends_the_pending_sentences_again_from_zero() {
        let t0 = Instant::now();
        let mut t = Tracker::new();
        t.sent(0, "One. ", t0);
        t.message(vec![], Some(&chars("One. ")), t0);
        t.sent(1, "Two. ", t0);
        t.sent(2, "Three. ", t0);
        t.message(vec![], Some(&chars("Tw")), t0);
        assert!(!t.any_emitted());
        assert_eq!(t.restart(t0), ["Two. ", "Three. "]);
        let s = t.message(vec![1], Some(&chars("Two. ")), t0);
        assert_eq!(summary(&s), vec![(1, 1, false), (1, 0, true)]);
        assert!(t.has_pending(), "Three. is still pending");
    }
}
