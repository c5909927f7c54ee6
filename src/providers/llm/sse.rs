//! Incremental Server-Sent Events parsing: network chunks in, event `data` payloads out.
//!
//! Only what chat-completion streams use: `data:` lines (several in one event are joined with
//! `\n`), `:` comment lines (keep-alives), other fields ignored, an event ends at a blank line.
//! Lines end with LF or CRLF; a line or a UTF-8 character may be split across chunks.

/// Longest line accepted: a server that never sends a newline must not grow memory forever.
const MAX_LINE: usize = 1 << 20;

/// Parser state carried between network chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// `data` of the event being read, and whether it had a `data` field at all.
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds a chunk; returns the `data` of each event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..nl]);
            rest = &rest[nl + 1..];
            let line = std::mem::take(&mut self.line);
            if let Some(data) = self.line_done(&line)? {
                events.push(data);
            }
        }
        if self.line.len() + rest.len() > MAX_LINE {
            return Err(format!("an event line longer than {MAX_LINE} bytes"));
        }
        self.line.extend_from_slice(rest);
        Ok(events)
    }

    /// The end of the body: an event the server did not terminate with a blank line is
    /// still delivered (lenient, some servers end with `data: [DONE]\n`).
    pub fn finish(&mut self) -> Result<Option<String>, String> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            if let Some(data) = self.line_done(&line)? {
                return Ok(Some(data));
            }
        }
        Ok(self.dispatch())
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<String>, String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|e| format!("invalid UTF-8: {e}"))?;
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None); // a comment: servers send these as keep-alives
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<String> {
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(std::mem::take(&mut self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    const STREAM: &str = ": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: message\nid: 7\ndata: first\ndata:second\n\ndata: [DONE]\n\n";

    #[test]
    fn events_comments_and_multi_line_data() {
        assert_eq!(
            parse_all(&[STREAM.as_bytes()]),
            vec!["{\"a\":1}", "first\nsecond", "[DONE]"]
        );
    }

    #[test]
    fn any_split_point_gives_the_same_events() {
        let whole = parse_all(&[STREAM.as_bytes()]);
        let bytes = STREAM.as_bytes();
        for i in 0..bytes.len() {
            for j in i..bytes.len() {
                let got = parse_all(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let text = "data: olá\n\n".as_bytes();
        let at = text.iter().position(|&b| b >= 0x80).unwrap() + 1;
        assert_eq!(parse_all(&[&text[..at], &text[at..]]), vec!["olá"]);
    }

    #[test]
    fn unterminated_last_event_is_delivered() {
        assert_eq!(parse_all(&[b"data: [DONE]"]), vec!["[DONE]"]);
        assert_eq!(parse_all(&[b"data: x\n"]), vec!["x"]);
        assert!(parse_all(&[b": only a comment"]).is_empty());
    }

    #[test]
    fn empty_data_field_is_an_event() {
        assert_eq!(parse_all(&[b"data\n\n"]), vec![""]);
    }

    #[test]
    fn bad_utf8_and_endless_lines_are_errors() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: \xff\xfe\n").is_err());
        let mut p = SseParser::new();
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(p.push(&long).is_err());
    }
}
