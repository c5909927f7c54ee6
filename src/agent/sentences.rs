//! Cuts the LLM's token stream into pieces TTS can start on: whole sentences, or a long
//! enough clause, as soon as each is complete.
//!
//! TTS quality wants whole sentences (prosody), latency wants the first audio early. So a
//! piece ends at a sentence end (`.`, `!`, `?`, `…` and their CJK forms, followed by
//! whitespace), or at a clause mark (`,`, `;`, `:`, a dash) once the piece is long enough to
//! be worth a request of its own. A full stop after a number's digit or a common
//! abbreviation does not end a sentence.

/// Clause marks cut a piece only when it has at least this many characters: shorter clauses
/// ("Sure, ...") are kept with what follows.
const MIN_CLAUSE_CHARS: usize = 40;
/// Pieces are cut at the next space once this long, whatever the punctuation (a model that
/// never stops a sentence must still be heard).
const MAX_PIECE_CHARS: usize = 300;

/// Words after which a full stop does not end the sentence (lower case, without the dot).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "sra", "jr", "st", "vs", "etc", "e.g", "i.e", "no",
    "approx", "dept", "min", "max", "av", "avda", "ave",
];

#[derive(Debug, Default)]
pub struct SentenceSplitter {
    pending: String,
}

impl SentenceSplitter {
    pub fn new() -> SentenceSplitter {
        SentenceSplitter::default()
    }

    /// Adds streamed text; returns the pieces it completed, trimmed, in order.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.cut_point() {
            let piece: String = self.pending[..end].trim().to_string();
            self.pending.drain(..end);
            if !piece.is_empty() {
                out.push(piece);
            }
        }
        out
    }

    /// The end of the reply: whatever is left, if anything.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }

    /// Byte index where the first complete piece of `pending` ends (after its punctuation),
    /// when there is one. A mark counts only once the character after it has arrived, so
    /// "3." waits to see whether "5" follows.
    fn cut_point(&self) -> Option<usize> {
        let s = &self.pending;
        let mut chars = s.char_indices().peekable();
        let mut count = 0;
        let mut last_space = None;
        while let Some((i, c)) = chars.next() {
            count += 1;
            let next = chars.peek().map(|&(_, n)| n);
            let after = i + c.len_utf8();
            if c.is_whitespace() {
                last_space = Some(i);
            }
            let Some(next) = next else {
                break;
            };
            let boundary = next.is_whitespace() || next == '"' || next == '\'' || next == ')';
            match c {
                '.' if boundary && !self.abbreviation_before(i) => return Some(after),
                '!' | '?' | '…' if boundary => return Some(after),
                '。' | '！' | '？' => return Some(after),
                ',' | ';' | ':' | '—' | '–' if boundary && count >= MIN_CLAUSE_CHARS => {
                    return Some(after)
                }
                '\n' => return Some(after),
                _ => {}
            }
            if count >= MAX_PIECE_CHARS {
                if let Some(sp) = last_space {
                    return Some(sp + 1);
                }
            }
        }
        None
    }

    /// Whether the word ending just before byte `dot` is an abbreviation or a digit
    /// (a decimal point or "No. 5").
    fn abbreviation_before(&self, dot: usize) -> bool {
        let before = &self.pending[..dot];
        let word: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '.')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if word.is_empty() {
            return false;
        }
        let lower = word.to_lowercase();
        // A single letter ("J. Smith") is an initial.
        lower.chars().count() == 1 && lower.chars().all(char::is_alphabetic)
            || ABBREVIATIONS.contains(&lower.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `step` characters, as tokens arrive.
    fn split(text: &str, step: usize) -> Vec<String> {
        let mut s = SentenceSplitter::new();
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for chunk in chars.chunks(step) {
            out.extend(s.push(&chunk.iter().collect::<String>()));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn sentences_come_out_as_soon_as_they_end() {
        let mut s = SentenceSplitter::new();
        assert!(s.push("Hello there").is_empty());
        // The mark waits for the next character.
        assert!(s.push("!").is_empty());
        assert_eq!(s.push(" How"), vec!["Hello there!"]);
        assert_eq!(s.push(" are you? I"), vec!["How are you?"]);
        assert_eq!(s.finish().as_deref(), Some("I"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn token_size_does_not_change_the_pieces() {
        let text = "Sure. Your appointment with Dr. Smith is at 3.30 pm on Monday. \
                    Shall I text you the address? ¡Claro! Obrigado.";
        let want = vec![
            "Sure.",
            "Your appointment with Dr. Smith is at 3.30 pm on Monday.",
            "Shall I text you the address?",
            "¡Claro!",
            "Obrigado.",
        ];
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(split(text, step), want, "step {step}");
        }
    }

    #[test]
    fn long_clauses_are_cut_at_commas_short_ones_are_not() {
        let text = "Well, I checked the calendar for next week carefully, and Tuesday at \
                    ten is free.";
        assert_eq!(
            split(text, 4),
            vec![
                "Well, I checked the calendar for next week carefully,",
                "and Tuesday at ten is free."
            ]
        );
    }

    #[test]
    fn a_reply_without_punctuation_is_still_cut() {
        let text = "word ".repeat(200);
        let pieces = split(&text, 5);
        assert!(pieces.len() >= 3, "{}", pieces.len());
        assert!(pieces.iter().all(|p| p.chars().count() <= MAX_PIECE_CHARS));
        assert_eq!(pieces.join(" "), text.trim());
    }

    #[test]
    fn initials_and_newlines() {
        assert_eq!(
            split("Ask for J. Smith at the desk.\nThanks", 3),
            vec!["Ask for J. Smith at the desk.", "Thanks"]
        );
    }
}
