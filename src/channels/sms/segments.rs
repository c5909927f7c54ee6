//! How many SMS segments a body takes, which is what a carrier (and Twilio) bills.
//!
//! A body made only of characters of the GSM 03.38 default alphabet travels 7-bit: 160
//! septets in a single SMS, 153 per part once it is split (the user data header of a
//! concatenated SMS takes the rest). The extension table's characters (`^ { } \ [ ~ ] | €`
//! and form feed) are an escape plus a character, two septets, and a part never ends between
//! the two. Any other character switches the whole body to UCS-2: 70 UTF-16 code units single,
//! 67 per part, and a character outside the Basic Multilingual Plane (most emoji) is a
//! surrogate pair that a part never splits either.

/// How a body is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet with its extension table, 7 bits a character.
    Gsm7,
    /// UTF-16 (what handsets accept as UCS-2), 16 bits a code unit.
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// The units a single SMS holds, and the units each part of a split one holds.
    fn capacity(self) -> (u32, u32) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }
}

/// The cost of one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// SMS parts; 1 for an empty body, which is still sent (and billed) as one SMS.
    pub count: u32,
    /// The body's length in the encoding's units: septets for GSM-7, UTF-16 code units for
    /// UCS-2.
    pub units: u32,
}

/// The segments `body` takes.
pub fn count(body: &str) -> Segments {
    let encoding = if body.chars().all(|c| gsm_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    };
    let width = |c: char| -> u32 {
        match encoding {
            // Every character was found in the alphabet above.
            Encoding::Gsm7 => gsm_septets(c).unwrap_or(1),
            Encoding::Ucs2 => c.len_utf16() as u32,
        }
    };
    let (single, per_part) = encoding.capacity();
    let units: u32 = body.chars().map(width).sum();
    if units <= single {
        return Segments {
            encoding,
            count: 1,
            units,
        };
    }
    // Filled part by part: a character that does not fit whole (an escaped GSM character, a
    // surrogate pair) opens the next part, leaving a unit of the previous one unused.
    let mut count = 1;
    let mut fill = 0;
    for c in body.chars() {
        let w = width(c);
        if fill + w > per_part {
            count += 1;
            fill = 0;
        }
        fill += w;
    }
    Segments {
        encoding,
        count,
        units,
    }
}

/// Septets a character takes in GSM-7: 1 for the default alphabet, 2 for the extension
/// table (escape + character); `None` when GSM-7 cannot carry it.
fn gsm_septets(c: char) -> Option<u32> {
    let basic = c.is_ascii_alphanumeric()
        || matches!(
            c,
            '@' | '£'
                | '$'
                | '¥'
                | 'è'
                | 'é'
                | 'ù'
                | 'ì'
                | 'ò'
                | 'Ç'
                | '\n'
                | 'Ø'
                | 'ø'
                | '\r'
                | 'Å'
                | 'å'
                | 'Δ'
                | '_'
                | 'Φ'
                | 'Γ'
                | 'Λ'
                | 'Ω'
                | 'Π'
                | 'Ψ'
                | 'Σ'
                | 'Θ'
                | 'Ξ'
                | 'Æ'
                | 'æ'
                | 'ß'
                | 'É'
                | ' '
                | '!'
                | '"'
                | '#'
                | '¤'
                | '%'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | '-'
                | '.'
                | '/'
                | ':'
                | ';'
                | '<'
                | '='
                | '>'
                | '?'
                | '¡'
                | 'Ä'
                | 'Ö'
                | 'Ñ'
                | 'Ü'
                | '§'
                | '¿'
                | 'ä'
                | 'ö'
                | 'ñ'
                | 'ü'
                | 'à'
        );
    if basic {
        return Some(1);
    }
    let extension = matches!(
        c,
        '\u{0C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€'
    );
    extension.then_some(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gsm(count: u32, units: u32) -> Segments {
        Segments {
            encoding: Encoding::Gsm7,
            count,
            units,
        }
    }

    fn ucs2(count: u32, units: u32) -> Segments {
        Segments {
            encoding: Encoding::Ucs2,
            count,
            units,
        }
    }

    fn times(s: &str, n: usize) -> String {
        s.repeat(n)
    }

    #[test]
    fn empty_body_is_one_segment() {
        assert_eq!(count(""), gsm(1, 0));
    }

    #[test]
    fn the_alphabet_has_127_characters_and_10_escaped_ones() {
        // 128 code points less the escape (0x1B), which is not a character of its own.
        let all = (0..=0x10FFFF).filter_map(char::from_u32);
        let (mut single, mut double) = (0, 0);
        for c in all {
            match gsm_septets(c) {
                Some(1) => single += 1,
                Some(2) => double += 1,
                Some(n) => panic!("{c:?} takes {n} septets"),
                None => {}
            }
        }
        assert_eq!((single, double), (127, 10));
    }

    #[test]
    fn gsm_single_holds_160_septets() {
        assert_eq!(count(&times("a", 160)), gsm(1, 160));
        assert_eq!(count(&times("a", 161)), gsm(2, 161));
        let accents = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\r\n";
        assert_eq!(count(accents).encoding, Encoding::Gsm7);
    }

    #[test]
    fn gsm_parts_hold_153_septets() {
        assert_eq!(count(&times("a", 306)), gsm(2, 306));
        assert_eq!(count(&times("a", 307)), gsm(3, 307));
        assert_eq!(count(&times("a", 153 * 3)), gsm(3, 459));
        assert_eq!(count(&times("a", 153 * 3 + 1)), gsm(4, 460));
    }

    #[test]
    fn extension_characters_take_two_septets() {
        for c in ["^", "{", "}", "\\", "[", "~", "]", "|", "€", "\u{0C}"] {
            assert_eq!(count(c), gsm(1, 2), "{c:?}");
        }
        assert_eq!(count(&times("€", 80)), gsm(1, 160));
        // 162 septets: 76 euros fill 152 septets of the first part, the 77th opens the next.
        assert_eq!(count(&times("€", 81)), gsm(2, 162));
        assert_eq!(count(&times("€", 153)), gsm(3, 306));
    }

    #[test]
    fn an_escaped_character_at_a_part_boundary_goes_whole_to_the_next_part() {
        // 306 septets would fit two parts, but the euro at septets 153-154 cannot be split:
        // the parts are 152 | € + 151 | 1.
        let body = format!("{}€{}", times("a", 152), times("a", 152));
        assert_eq!(count(&body), gsm(3, 306));
        // One septet earlier it fits exactly: 151 + € | 152.
        let body = format!("{}€{}", times("a", 151), times("a", 152));
        assert_eq!(count(&body), gsm(2, 305));
        // A single SMS has no such boundary: 158 + 2 = 160.
        let body = format!("{}€", times("a", 158));
        assert_eq!(count(&body), gsm(1, 160));
    }

    #[test]
    fn any_other_character_makes_the_body_ucs2() {
        assert_eq!(count("ç"), ucs2(1, 1)); // only the capital Ç is in the alphabet
        assert_eq!(count("`"), ucs2(1, 1));
        assert_eq!(count("\t"), ucs2(1, 1));
        // 100 GSM characters and one that is not: 101 UCS-2 units, two parts.
        let body = format!("{}ç", times("a", 100));
        assert_eq!(count(&body), ucs2(2, 101));
        assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
    }

    #[test]
    fn ucs2_single_holds_70_units_and_parts_67() {
        assert_eq!(count(&times("ж", 70)), ucs2(1, 70));
        assert_eq!(count(&times("ж", 71)), ucs2(2, 71));
        assert_eq!(count(&times("ж", 134)), ucs2(2, 134));
        assert_eq!(count(&times("ж", 135)), ucs2(3, 135));
        // Escaped GSM characters are one unit like any other in UCS-2.
        let body = format!("{}ж", times("€", 69));
        assert_eq!(count(&body), ucs2(1, 70));
    }

    #[test]
    fn emoji_take_two_units_and_are_never_split() {
        assert_eq!(count("😀"), ucs2(1, 2));
        assert_eq!(count(&times("😀", 35)), ucs2(1, 70));
        // 72 units: 33 emoji (66 units) fill the first part, as a 34th would need 68.
        assert_eq!(count(&times("😀", 36)), ucs2(2, 72));
        // 134 units would fit two parts, but the pair at units 67-68 cannot be split:
        // 66 | 😀 + 65 | 1.
        let body = format!("{}😀{}", times("ж", 66), times("ж", 66));
        assert_eq!(count(&body), ucs2(3, 134));
        let body = format!("{}😀{}", times("ж", 65), times("ж", 66));
        assert_eq!(count(&body), ucs2(2, 133));
    }
}
