//! What the caller actually heard of a reply: each sentence's place in the playout stream,
//! against how far the media thread has read it.
//!
//! Positions count samples written into the call's playout ring since the call began (the
//! ring's `written` counter); the media thread's read position is `samples_played +
//! samples_cleared`. A sentence whose audio ends before the read position was heard whole; one
//! the read position is inside was heard up to the matching share of its words.

/// One sentence of a reply and where its audio sits in the playout stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spoken {
    text: String,
    /// Playout positions `[start, end)` of its audio; `start == end` until audio arrives.
    start: u64,
    end: u64,
    /// All its audio has been queued.
    complete: bool,
}

/// The sentences of one reply, in speaking order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyAudio {
    sentences: Vec<Spoken>,
}

impl ReplyAudio {
    pub fn new() -> ReplyAudio {
        ReplyAudio::default()
    }

    /// A sentence was sent to TTS; returns its index.
    pub fn add_sentence(&mut self, text: &str) -> usize {
        self.sentences.push(Spoken {
            text: text.to_string(),
            start: 0,
            end: 0,
            complete: false,
        });
        self.sentences.len() - 1
    }

    /// `len` samples of sentence `index` were written at playout position `at`.
    pub fn queued(&mut self, index: usize, at: u64, len: u64) {
        if let Some(s) = self.sentences.get_mut(index) {
            if s.start == s.end {
                s.start = at;
            }
            s.end = at + len;
        }
    }

    /// Sentence `index` has all its audio queued.
    pub fn sentence_complete(&mut self, index: usize) {
        if let Some(s) = self.sentences.get_mut(index) {
            s.complete = true;
        }
    }

    /// Whether every sentence has all its audio queued.
    pub fn all_queued(&self) -> bool {
        self.sentences.iter().all(|s| s.complete)
    }

    /// Playout position just past the reply's last queued sample (0 with no audio).
    pub fn end(&self) -> u64 {
        self.sentences.iter().map(|s| s.end).max().unwrap_or(0)
    }

    /// Whether any audio of the reply has been queued.
    pub fn has_audio(&self) -> bool {
        self.sentences.iter().any(|s| s.end > s.start)
    }

    /// The reply's full text (every sentence, heard or not).
    pub fn full_text(&self) -> String {
        join(self.sentences.iter().map(|s| s.text.as_str()))
    }

    /// The text heard once the media thread has read up to playout position `read`:
    /// whole sentences before it, and the share of the words of the one it is inside.
    pub fn heard_text(&self, read: u64) -> String {
        let mut parts: Vec<String> = Vec::new();
        for s in &self.sentences {
            if s.end == s.start || read <= s.start {
                break;
            }
            if read >= s.end && s.complete {
                parts.push(s.text.clone());
                continue;
            }
            let played = read.min(s.end) - s.start;
            let words: Vec<&str> = s.text.split_whitespace().collect();
            let span = (s.end - s.start).max(1);
            let n = (words.len() as u64 * played / span) as usize;
            if n > 0 {
                parts.push(words[..n].join(" "));
            }
            break;
        }
        join(parts.iter().map(String::as_str))
    }
}

fn join<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    parts.collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> ReplyAudio {
        let mut r = ReplyAudio::new();
        let a = r.add_sentence("Your table is booked.");
        let b = r.add_sentence("We look forward to seeing you on Friday evening.");
        // 1 s of audio for the first, queued in two chunks after 5,000 samples of greeting;
        // 2 s for the second.
        r.queued(a, 5_000, 8_000);
        r.queued(a, 13_000, 8_000);
        r.sentence_complete(a);
        r.queued(b, 21_000, 32_000);
        r.sentence_complete(b);
        r
    }

    #[test]
    fn nothing_heard_before_the_reply_starts() {
        let r = reply();
        assert_eq!(r.heard_text(0), "");
        assert_eq!(r.heard_text(5_000), "");
        assert!(r.all_queued());
        assert_eq!(r.end(), 53_000);
    }

    #[test]
    fn whole_sentences_and_a_share_of_the_one_in_progress() {
        let r = reply();
        assert_eq!(r.heard_text(21_000), "Your table is booked.");
        // Half of the second sentence's audio: half of its 9 words, rounded down.
        assert_eq!(
            r.heard_text(21_000 + 16_000),
            "Your table is booked. We look forward to"
        );
        assert_eq!(r.heard_text(53_000), r.full_text());
        assert_eq!(r.heard_text(90_000), r.full_text());
    }

    #[test]
    fn a_sentence_still_arriving_counts_what_was_queued() {
        let mut r = ReplyAudio::new();
        let a = r.add_sentence("one two three four");
        r.queued(a, 0, 1_000);
        // All of what was queued was played, but more is coming: not the whole sentence.
        assert_eq!(r.heard_text(1_000), "one two three four");
        let mut r = ReplyAudio::new();
        let a = r.add_sentence("one two three four");
        r.queued(a, 0, 4_000);
        assert_eq!(r.heard_text(2_000), "one two");
        assert!(!r.all_queued());
        r.add_sentence("never synthesized");
        assert_eq!(r.heard_text(4_000), "one two three four");
    }
}
