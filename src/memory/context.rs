//! A contact's timeline as the agent reads it: the most recent entries that fit the budget,
//! oldest first, one line each, so the model can tell what was said where and when.

use crate::store::clock::rfc3339;
use crate::store::contacts::{Channel, Entry, Role};

/// The most of one entry the context shows: a long message or summary is cut, so one
/// entry cannot crowd out the rest.
const MAX_ENTRY_CHARS: usize = 600;

/// The heading the context starts with (tests and logs look for it).
pub const HEADING: &str = "What you remember of earlier conversations with this person \
     (oldest first, times in UTC):";

/// `newest_first` rendered within `budget` characters; empty when nothing fits.
pub fn render(newest_first: &[Entry], budget: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut used = HEADING.len();
    for entry in newest_first {
        let line = line(entry);
        if used + line.len() + 1 > budget {
            break;
        }
        used += line.len() + 1;
        lines.push(line);
    }
    if lines.is_empty() {
        return String::new();
    }
    lines.reverse();
    let mut out = String::with_capacity(used);
    out.push_str(HEADING);
    for line in lines {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

fn line(entry: &Entry) -> String {
    // Minutes are enough, and they keep the line short: 2026-12-04 10:02.
    let at = rfc3339(entry.at);
    let at = at.get(..16).unwrap_or(&at).replace('T', " ");
    let what = match (entry.channel, entry.role) {
        (Channel::Voice, Role::Summary) => "phone call, summary",
        (Channel::Voice, Role::Contact) => "phone call, they said",
        (Channel::Voice, Role::Agent) => "phone call, you said",
        (Channel::Sms, Role::Contact) => "SMS from them",
        (Channel::Sms, _) => "SMS from you",
        (Channel::Chat, Role::Contact) => "web chat, they wrote",
        (Channel::Chat, _) => "web chat, you wrote",
    };
    let text: String = entry.text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = if text.chars().count() > MAX_ENTRY_CHARS {
        let cut: String = text.chars().take(MAX_ENTRY_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    };
    format!("- {at}, {what}: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, channel: Channel, role: Role, text: &str) -> Entry {
        Entry {
            id,
            contact_id: "ctc_1".into(),
            channel,
            role,
            text: text.into(),
            ref_id: None,
            detail: None,
            // 2026-12-04T10:00:00Z plus a minute per entry.
            at: 1_796_378_400_000 + id * 60_000,
        }
    }

    #[test]
    fn the_newest_entries_that_fit_are_shown_oldest_first() {
        let newest_first = vec![
            entry(3, Channel::Sms, Role::Agent, "We open at nine."),
            entry(2, Channel::Sms, Role::Contact, "When do you open?"),
            entry(
                1,
                Channel::Voice,
                Role::Summary,
                "Asked about a cake order.",
            ),
        ];
        let all = render(&newest_first, 10_000);
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines[0], HEADING);
        assert_eq!(
            lines[1],
            "- 2026-12-04 10:01, phone call, summary: Asked about a cake order."
        );
        assert_eq!(
            lines[2],
            "- 2026-12-04 10:02, SMS from them: When do you open?"
        );
        assert_eq!(
            lines[3],
            "- 2026-12-04 10:03, SMS from you: We open at nine."
        );
        // A budget for the heading and two lines keeps the two newest.
        let budget = HEADING.len() + lines[2].len() + lines[3].len() + 2;
        let cut = render(&newest_first, budget);
        assert_eq!(cut.lines().count(), 3, "{cut}");
        assert!(!cut.contains("cake"));
        assert_eq!(render(&newest_first, 10), "");
        assert_eq!(render(&[], 10_000), "");
    }

    #[test]
    fn long_entries_are_cut_and_whitespace_folded() {
        let long = "word ".repeat(500);
        let text = render(&[entry(1, Channel::Chat, Role::Contact, &long)], 100_000);
        let line = text.lines().nth(1).unwrap();
        assert!(line.ends_with('…'));
        assert!(line.chars().count() < MAX_ENTRY_CHARS + 60);
        let folded = render(&[entry(1, Channel::Chat, Role::Agent, "a\n\n  b")], 1_000);
        assert!(folded.ends_with("web chat, you wrote: a b"), "{folded}");
    }
}
