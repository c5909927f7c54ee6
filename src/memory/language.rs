//! The language of a short text: an SMS, a chat line, a call transcript.
//!
//! Contacts write a handful of words ("sí", "obrigado", "I need to change my appointment"),
//! often without accents ("nao", "voce") and in any case, which is too little text for
//! character n-gram models. So each language collects points from three kinds of evidence:
//!
//! - a lexicon of cue words and function words, looked up with accents stripped, each word
//!   weighted by how much it says about each language ("gracias" is Spanish only, "que" is
//!   Spanish or Portuguese, "no" is English or Spanish);
//! - spelling that only one language uses: `ñ`, `¿`, `¡` for Spanish; `ã`, `õ`, `ç`, `â`, `ê`,
//!   `ô` for Portuguese; apostrophe contractions ("don't", "I'm") for English;
//! - for words outside the lexicon, letter patterns: "th", "w", "k", "-ing" for English;
//!   "-ción", initial "ll", "-dad" for Spanish; "lh", "nh", "-ção", "-dade" for Portuguese.
//!
//! The language with the most points wins. Its confidence grows with its lead over the
//! runner-up, not with its share, so a word that fits two languages equally well ("no",
//! "a", "por favor") gets a confidence near zero however often it is repeated:
//!
//! `confidence = 1 - exp(-(winner - runner_up) / 3.5)`
//!
//! Which puts, by design (the tests hold these):
//! - words that fit two languages ("no", "a", "consulta", "por favor") at 0 to 0.1;
//! - one cue word ("si" 0.4; "sim", "yes", "gracias", "obrigado" 0.58) below [`CONFIDENT`]:
//!   one word is not enough to overturn what we know about a contact;
//! - one cue word whose spelling confirms it ("não") or two or three words ("kkkk blz",
//!   "don't call me", "¿dónde está?") at 0.65 to 0.85;
//! - a sentence of four words or more in one language above 0.85, usually above 0.9.
//!
//! Only English, Spanish and Portuguese are told apart: text in another language written in
//! the Latin alphabet is attributed to the closest of the three, usually with low confidence,
//! and text in another alphabet has no evidence at all.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A language a contact can be served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    En,
    Es,
    Pt,
}

impl Language {
    /// Every language, in the order of the score arrays below (and of tie-breaks).
    pub const ALL: [Language; 3] = [Language::En, Language::Es, Language::Pt];

    /// The ISO 639-1 code: "en", "es", "pt".
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Pt => "pt",
        }
    }

    /// The language of an ISO 639-1 code, in any case, with or without a region
    /// ("pt-BR", "es_MX"), because that is how vendors and browsers spell it.
    pub fn from_code(code: &str) -> Option<Language> {
        let primary = code.split(['-', '_']).next().unwrap_or(code);
        Language::ALL
            .into_iter()
            .find(|lang| lang.code().eq_ignore_ascii_case(primary))
    }

    /// The English name: "English", "Spanish", "Portuguese".
    pub fn name(self) -> &'static str {
        match self {
            Language::En => "English",
            Language::Es => "Spanish",
            Language::Pt => "Portuguese",
        }
    }

    fn index(self) -> usize {
        match self {
            Language::En => 0,
            Language::Es => 1,
            Language::Pt => 2,
        }
    }
}

/// The language a text is most likely in, and how sure we are of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub language: Language,
    /// 0 to 1: how far ahead the language is of the next most likely one (see the module
    /// documentation for the scale). Near 0, `language` is a coin toss between two.
    pub confidence: f32,
}

/// The confidence above which a detection replaces the language stored for a contact.
///
/// Below it a single message is not enough: a Spanish speaker texting "ok" or "yes", or an
/// English speaker answering "no", must not flip the language of everything sent to them.
/// One cue word stays below it; a cue word with telling accents ("não") or a short sentence
/// is above it.
pub const CONFIDENT: f32 = 0.7;

/// Points per language, indexed by [`Language::index`].
type Scores = [f32; 3];

/// How many points of lead make the confidence reach 1 - 1/e (about 0.63).
const LEAD_SCALE: f32 = 3.5;

/// Pattern evidence of one unknown word is capped so that one long word cannot outweigh
/// the function words around it.
const PATTERN_CAP: f32 = 1.5;

/// The language of `text`, or `None` when nothing in it points to any language (digits,
/// emoji, "ok", another alphabet).
pub fn detect(text: &str) -> Option<Detection> {
    let scores = score(text);
    let mut ranked = Language::ALL;
    // Stable sort: on equal points the order of `Language::ALL` decides.
    ranked.sort_by(|a, b| scores[b.index()].total_cmp(&scores[a.index()]));
    let (winner, runner_up) = (ranked[0], ranked[1]);
    let best = scores[winner.index()];
    if best <= 0.0 {
        return None;
    }
    let lead = best - scores[runner_up.index()];
    Some(Detection {
        language: winner,
        confidence: (1.0 - (-lead / LEAD_SCALE).exp()).clamp(0.0, 1.0),
    })
}

fn score(text: &str) -> Scores {
    let mut scores = [0.0; 3];
    // Inverted marks open Spanish questions and exclamations and nothing else.
    if text.contains(['¿', '¡']) {
        add(&mut scores, [0.0, 2.5, 0.0]);
    }
    for word in words(text) {
        add(&mut scores, word_score(&word));
    }
    scores
}

fn add(scores: &mut Scores, points: Scores) {
    for (total, p) in scores.iter_mut().zip(points) {
        *total += p;
    }
}

/// Lowercased words: runs of letters, with apostrophes kept inside a word ("don't") so
/// contractions can be seen. Digits and punctuation separate words.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphabetic() || is_apostrophe(c)))
        .map(|w| w.trim_matches(is_apostrophe))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '’'
}

fn word_score(word: &str) -> Scores {
    let mut points = accent_score(word);
    // "don't", "I'm", "it's", "we'll": Spanish and Portuguese do not contract with apostrophes.
    if word.contains(is_apostrophe) {
        add(&mut points, [2.5, 0.0, 0.0]);
        return points;
    }
    let folded = fold(word);
    if let Some(known) = LEXICON.get(folded.as_str()) {
        add(&mut points, *known);
    } else if let Some(laugh) = laughter(&folded) {
        add(&mut points, laugh);
    } else {
        add(&mut points, pattern_score(&folded));
    }
    points
}

/// Letters with diacritics. They count even on lexicon words: someone who types "não" with
/// its tilde is more surely Portuguese than someone who types "nao".
fn accent_score(word: &str) -> Scores {
    let mut points = [0.0; 3];
    for c in word.chars() {
        let p = match c {
            'ñ' => [0.0, 2.0, 0.0],
            'ã' | 'õ' => [0.0, 0.0, 2.0],
            'ç' => [0.0, 0.0, 1.5],
            'â' | 'ê' | 'ô' | 'à' => [0.0, 0.0, 1.0],
            'ü' => [0.0, 0.3, 0.0],
            // Acute accents are written in both Spanish and Portuguese, never in English.
            'á' | 'é' | 'í' | 'ó' | 'ú' => [0.0, 0.4, 0.4],
            _ => continue,
        };
        add(&mut points, p);
    }
    points
}

/// The word without diacritics, as people type it on phones without the right keyboard.
fn fold(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            other => other,
        })
        .collect()
}

/// Written laughter differs by language: "jajaja" in Spanish, "kkkk" and "rsrs" in Brazil,
/// "haha" mostly in English.
fn laughter(folded: &str) -> Option<Scores> {
    let repeats = |unit: &str| {
        folded.len() >= 2 * unit.len()
            && folded.len().is_multiple_of(unit.len())
            && folded
                .as_bytes()
                .chunks(unit.len())
                .all(|c| c == unit.as_bytes())
    };
    if repeats("ja") || repeats("je") {
        Some([0.0, 2.0, 0.0])
    } else if (folded.len() >= 3 && folded.bytes().all(|b| b == b'k')) || repeats("rs") {
        Some([0.0, 0.0, 2.0])
    } else if repeats("ha") || repeats("he") {
        Some([0.5, 0.0, 0.0])
    } else {
        None
    }
}

/// Spelling patterns of a word outside the lexicon (accents already stripped).
fn pattern_score(folded: &str) -> Scores {
    if folded.chars().count() < 2 || !folded.is_ascii() {
        return [0.0; 3];
    }
    let mut p = [0.0f32; 3];
    let (en, es, pt) = (0, 1, 2);
    // English spellings that native Spanish and Portuguese words do not use.
    if folded.contains("th") {
        p[en] += 1.0;
    }
    if folded.contains('w') {
        p[en] += 0.8;
    }
    if folded.contains('k') {
        p[en] += 0.8;
    }
    if folded.contains("sh") || folded.contains("ee") || folded.contains("oo") {
        p[en] += 0.6;
    }
    if folded.ends_with("ing") {
        p[en] += 1.2;
    }
    if folded.ends_with("tion") || folded.ends_with("tions") {
        p[en] += 1.0;
    }
    if folded.ends_with("ly") {
        p[en] += 0.5;
    }
    // Spanish: -ción, -dad, initial ll (llamar, llegar), ue not after q/g (bueno, puede).
    if folded.ends_with("cion") || folded.ends_with("ciones") {
        p[es] += 1.2;
    }
    if folded.ends_with("dad") || folded.ends_with("dades") {
        p[es] += 1.0;
    }
    if folded.starts_with("ll") {
        p[es] += 0.8;
    }
    if has_bare_ue(folded) {
        p[es] += 0.5;
    }
    // Portuguese: lh and nh digraphs, -ção/-ções (folded to -cao/-coes), -dade.
    if folded.contains("lh") || folded.contains("nh") {
        p[pt] += 1.2;
    }
    if folded.ends_with("ao") || folded.ends_with("oes") {
        p[pt] += 1.0;
    }
    if folded.ends_with("dade") || folded.ends_with("dades") {
        p[pt] += 1.0;
    }
    // A final y is English or Spanish (day, hoy); Portuguese spells it with i.
    if folded.ends_with('y') {
        p[en] += 0.3;
        p[es] += 0.3;
    }
    p.map(|x| x.min(PATTERN_CAP))
}

/// "ue" that is a Spanish diphthong (bueno, puede, nuevo) rather than the silent u of
/// "que", "quero", "guerra", which Portuguese shares.
fn has_bare_ue(folded: &str) -> bool {
    let bytes = folded.as_bytes();
    bytes
        .windows(3)
        .any(|w| w[1] == b'u' && w[2] == b'e' && w[0] != b'q' && w[0] != b'g')
        || folded.starts_with("ue")
}

/// Words with their points for [English, Spanish, Portuguese], keys lowercase and without
/// diacritics. Roughly: 3 for a word that alone names its language ("gracias"), 2-2.5 for a
/// common word of one language that another language has rarely, 1-1.5 for function words,
/// equal points for words two languages share, and all zeros for words every language uses
/// ("ok"), which are thereby kept away from the spelling patterns.
const WORDS: &[(&str, Scores)] = &[
    // Shared by all three or by none in particular.
    ("ok", [0.0, 0.0, 0.0]),
    ("okay", [0.0, 0.0, 0.0]),
    ("okey", [0.0, 0.5, 0.0]),
    ("hmm", [0.0, 0.0, 0.0]),
    ("oh", [0.0, 0.0, 0.0]),
    ("ah", [0.0, 0.0, 0.0]),
    ("a", [0.5, 0.6, 0.8]),
    ("no", [1.0, 1.0, 0.5]),
    ("me", [1.0, 1.0, 1.0]),
    ("do", [1.5, 0.0, 1.5]),
    ("as", [1.0, 0.0, 1.0]),
    ("so", [1.5, 0.0, 0.5]),
    // English: answers and courtesies.
    ("yes", [3.0, 0.0, 0.0]),
    ("yeah", [3.0, 0.0, 0.0]),
    ("yep", [3.0, 0.0, 0.0]),
    ("nope", [3.0, 0.0, 0.0]),
    ("thanks", [3.0, 0.0, 0.0]),
    ("thank", [3.0, 0.0, 0.0]),
    ("thx", [3.0, 0.0, 0.0]),
    ("hello", [2.5, 0.0, 0.0]),
    ("hi", [1.5, 0.0, 0.0]),
    ("hey", [2.0, 0.0, 0.0]),
    ("please", [3.0, 0.0, 0.0]),
    ("pls", [3.0, 0.0, 0.0]),
    ("sorry", [3.0, 0.0, 0.0]),
    ("bye", [2.5, 0.0, 0.0]),
    ("sure", [2.5, 0.0, 0.0]),
    ("great", [2.5, 0.0, 0.0]),
    ("good", [2.5, 0.0, 0.0]),
    ("morning", [3.0, 0.0, 0.0]),
    ("afternoon", [3.0, 0.0, 0.0]),
    ("evening", [3.0, 0.0, 0.0]),
    ("night", [2.5, 0.0, 0.0]),
    ("lol", [2.0, 0.0, 0.0]),
    // English: what contacts ask for.
    ("want", [2.5, 0.0, 0.0]),
    ("need", [2.5, 0.0, 0.0]),
    ("appointment", [3.0, 0.0, 0.0]),
    ("tomorrow", [3.0, 0.0, 0.0]),
    ("today", [3.0, 0.0, 0.0]),
    ("yesterday", [3.0, 0.0, 0.0]),
    ("change", [2.5, 0.0, 0.0]),
    ("cancel", [2.5, 0.0, 0.0]),
    ("confirm", [2.5, 0.0, 0.0]),
    ("reschedule", [3.0, 0.0, 0.0]),
    ("call", [2.0, 0.0, 0.0]),
    ("speak", [2.5, 0.0, 0.0]),
    ("talk", [2.5, 0.0, 0.0]),
    ("help", [2.5, 0.0, 0.0]),
    ("time", [2.0, 0.0, 0.0]),
    ("week", [2.5, 0.0, 0.0]),
    ("next", [2.5, 0.0, 0.0]),
    ("monday", [3.0, 0.0, 0.0]),
    ("tuesday", [3.0, 0.0, 0.0]),
    ("wednesday", [3.0, 0.0, 0.0]),
    ("thursday", [3.0, 0.0, 0.0]),
    ("friday", [3.0, 0.0, 0.0]),
    ("saturday", [3.0, 0.0, 0.0]),
    ("sunday", [3.0, 0.0, 0.0]),
    // English: function words.
    ("the", [3.0, 0.0, 0.0]),
    ("an", [1.5, 0.0, 0.0]),
    ("and", [2.0, 0.0, 0.0]),
    ("or", [1.5, 0.0, 0.0]),
    ("but", [2.0, 0.0, 0.0]),
    ("if", [2.0, 0.0, 0.0]),
    ("is", [2.0, 0.0, 0.0]),
    ("are", [2.0, 0.0, 0.0]),
    ("was", [2.0, 0.0, 0.0]),
    ("be", [2.0, 0.0, 0.0]),
    ("am", [2.0, 0.0, 0.0]),
    ("i", [2.0, 0.0, 0.0]),
    ("you", [2.5, 0.0, 0.0]),
    ("your", [2.5, 0.0, 0.0]),
    ("u", [1.5, 0.0, 0.0]),
    ("ur", [2.0, 0.0, 0.0]),
    ("my", [2.0, 0.0, 0.0]),
    ("we", [2.0, 0.0, 0.0]),
    ("they", [2.0, 0.0, 0.0]),
    ("it", [2.0, 0.0, 0.0]),
    ("this", [2.5, 0.0, 0.0]),
    ("that", [2.5, 0.0, 0.0]),
    ("to", [1.5, 0.0, 0.0]),
    ("of", [1.5, 0.0, 0.0]),
    ("in", [1.5, 0.0, 0.0]),
    ("on", [1.5, 0.0, 0.0]),
    ("at", [1.5, 0.0, 0.0]),
    ("for", [2.0, 0.0, 0.0]),
    ("with", [2.5, 0.0, 0.0]),
    ("from", [2.0, 0.0, 0.0]),
    ("what", [2.5, 0.0, 0.0]),
    ("where", [2.5, 0.0, 0.0]),
    ("when", [2.5, 0.0, 0.0]),
    ("how", [2.5, 0.0, 0.0]),
    ("why", [2.5, 0.0, 0.0]),
    ("can", [2.0, 0.0, 0.0]),
    ("could", [2.5, 0.0, 0.0]),
    ("would", [2.5, 0.0, 0.0]),
    ("will", [2.0, 0.0, 0.0]),
    ("not", [2.0, 0.0, 0.0]),
    ("have", [2.5, 0.0, 0.0]),
    ("has", [2.0, 0.0, 0.0]),
    ("does", [2.5, 0.0, 0.0]),
    ("get", [2.0, 0.0, 0.0]),
    ("got", [2.0, 0.0, 0.0]),
    ("there", [2.5, 0.0, 0.0]),
    ("here", [2.5, 0.0, 0.0]),
    ("just", [2.5, 0.0, 0.0]),
    ("now", [2.0, 0.0, 0.0]),
    ("still", [2.5, 0.0, 0.0]),
    ("again", [2.5, 0.0, 0.0]),
    ("up", [1.5, 0.0, 0.0]),
    ("out", [2.0, 0.0, 0.0]),
    ("these", [2.5, 0.0, 0.0]),
    ("those", [2.5, 0.0, 0.0]),
    ("them", [2.0, 0.0, 0.0]),
    ("our", [2.5, 0.0, 0.0]),
    ("open", [2.0, 0.0, 0.0]),
    ("closed", [2.5, 0.0, 0.0]),
    ("late", [2.5, 0.0, 0.0]),
    // Spanish: answers and courtesies.
    ("si", [0.0, 2.0, 0.2]),
    ("gracias", [0.0, 3.0, 0.0]),
    ("hola", [0.0, 3.0, 0.0]),
    ("buenos", [0.0, 3.0, 0.0]),
    ("buenas", [0.0, 3.0, 0.0]),
    ("bueno", [0.0, 2.5, 0.0]),
    ("bien", [0.0, 2.5, 0.0]),
    ("noche", [0.0, 3.0, 0.0]),
    ("noches", [0.0, 3.0, 0.0]),
    ("adios", [0.0, 3.0, 0.0]),
    ("perdon", [0.0, 2.5, 0.0]),
    ("disculpa", [0.0, 2.5, 0.5]),
    ("vale", [0.0, 1.0, 0.5]),
    ("senor", [0.0, 2.5, 0.0]),
    ("senora", [0.0, 2.5, 0.0]),
    ("usted", [0.0, 3.0, 0.0]),
    ("ustedes", [0.0, 3.0, 0.0]),
    ("muchas", [0.0, 3.0, 0.0]),
    ("mucho", [0.0, 3.0, 0.0]),
    ("muy", [0.0, 3.0, 0.0]),
    ("xq", [0.0, 2.0, 0.0]),
    ("tmb", [0.0, 2.0, 0.0]),
    // Spanish: what contacts ask for.
    ("quiero", [0.0, 3.0, 0.0]),
    ("quisiera", [0.0, 3.0, 0.0]),
    ("necesito", [0.0, 3.0, 0.0]),
    ("cita", [0.0, 3.0, 0.0]),
    ("manana", [0.0, 3.0, 0.0]),
    ("hoy", [0.0, 3.0, 0.0]),
    ("ayer", [0.0, 3.0, 0.0]),
    ("ahora", [0.0, 2.5, 0.0]),
    ("cambiar", [0.0, 3.0, 0.0]),
    ("hablar", [0.0, 3.0, 0.0]),
    ("llamar", [0.0, 2.5, 0.0]),
    ("llamada", [0.0, 2.5, 0.0]),
    ("ayuda", [0.0, 3.0, 0.0]),
    ("cuenta", [0.0, 2.5, 0.0]),
    ("factura", [0.0, 3.0, 0.0]),
    ("precio", [0.0, 3.0, 0.0]),
    ("hacer", [0.0, 3.0, 0.0]),
    ("puedo", [0.0, 3.0, 0.0]),
    ("puede", [0.0, 3.0, 0.0]),
    ("podria", [0.0, 3.0, 0.0]),
    ("tengo", [0.0, 3.0, 0.0]),
    ("tiene", [0.0, 2.5, 0.0]),
    ("tienen", [0.0, 2.5, 0.0]),
    ("estoy", [0.0, 3.0, 0.0]),
    ("hay", [0.0, 2.5, 0.0]),
    ("entiendo", [0.0, 3.0, 0.0]),
    ("voy", [0.0, 3.0, 0.0]),
    ("atencion", [0.0, 3.0, 0.0]),
    ("lunes", [0.0, 3.0, 0.0]),
    ("martes", [0.0, 3.0, 0.0]),
    ("miercoles", [0.0, 3.0, 0.0]),
    ("jueves", [0.0, 3.0, 0.0]),
    ("viernes", [0.0, 3.0, 0.0]),
    // Spanish: function words.
    ("el", [0.0, 1.5, 0.0]),
    ("la", [0.0, 1.5, 0.5]),
    ("los", [0.0, 2.0, 0.0]),
    ("las", [0.0, 1.5, 0.0]),
    ("del", [0.0, 1.5, 0.0]),
    ("al", [0.0, 1.0, 0.0]),
    ("y", [0.0, 1.5, 0.0]),
    ("en", [0.0, 1.2, 0.0]),
    ("un", [0.0, 1.5, 0.0]),
    ("una", [0.0, 1.5, 0.0]),
    ("con", [0.0, 1.5, 0.0]),
    ("sin", [0.0, 2.0, 0.0]),
    ("es", [0.0, 1.5, 0.0]),
    ("son", [0.0, 1.0, 0.0]),
    ("yo", [0.0, 2.0, 0.0]),
    ("mi", [0.0, 2.0, 0.0]),
    ("mis", [0.0, 2.0, 0.0]),
    ("su", [0.0, 1.5, 0.0]),
    ("lo", [0.0, 1.5, 0.0]),
    ("le", [0.0, 1.0, 0.0]),
    ("eso", [0.0, 2.0, 0.0]),
    ("esto", [0.0, 2.0, 0.0]),
    ("donde", [0.0, 2.5, 0.0]),
    ("cuando", [0.0, 2.0, 0.0]),
    ("cuanto", [0.0, 2.0, 0.0]),
    ("cual", [0.0, 2.0, 0.0]),
    ("pero", [0.0, 2.0, 0.0]),
    ("tambien", [0.0, 3.0, 0.0]),
    ("ya", [0.0, 2.0, 0.0]),
    ("nosotros", [0.0, 3.0, 0.0]),
    // Portuguese: answers and courtesies.
    ("sim", [0.0, 0.0, 3.0]),
    ("nao", [0.0, 0.0, 3.0]),
    ("obrigado", [0.0, 0.0, 3.0]),
    ("obrigada", [0.0, 0.0, 3.0]),
    ("obg", [0.0, 0.0, 3.0]),
    ("valeu", [0.0, 0.0, 3.0]),
    ("ola", [0.0, 0.8, 2.0]),
    ("oi", [0.0, 0.0, 2.5]),
    ("tchau", [0.0, 0.0, 3.0]),
    ("bom", [0.0, 0.0, 3.0]),
    ("boa", [0.0, 0.0, 3.0]),
    ("noite", [0.0, 0.0, 3.0]),
    ("bem", [0.0, 0.0, 2.5]),
    ("desculpa", [0.0, 0.5, 2.5]),
    ("muito", [0.0, 0.0, 3.0]),
    ("muita", [0.0, 0.0, 3.0]),
    ("entao", [0.0, 0.0, 3.0]),
    ("blz", [0.0, 0.0, 3.0]),
    ("vc", [0.0, 0.0, 3.0]),
    ("tb", [0.0, 0.0, 2.5]),
    ("tbm", [0.0, 0.0, 2.5]),
    ("hj", [0.0, 0.0, 3.0]),
    ("pq", [0.0, 0.5, 1.5]),
    // Portuguese: what contacts ask for.
    ("quero", [0.0, 0.0, 3.0]),
    ("queria", [0.0, 0.5, 2.0]),
    ("preciso", [0.0, 0.5, 2.5]),
    ("amanha", [0.0, 0.0, 3.0]),
    ("hoje", [0.0, 0.0, 3.0]),
    ("ontem", [0.0, 0.0, 3.0]),
    ("agora", [0.0, 0.0, 3.0]),
    ("remarcar", [0.0, 0.5, 2.0]),
    ("falar", [0.0, 0.0, 3.0]),
    ("ligar", [0.0, 0.0, 2.5]),
    ("ligacao", [0.0, 0.0, 3.0]),
    ("ajuda", [0.0, 0.0, 3.0]),
    ("conta", [0.0, 0.0, 2.0]),
    ("fatura", [0.0, 0.0, 3.0]),
    ("preco", [0.0, 0.0, 3.0]),
    ("fazer", [0.0, 0.0, 3.0]),
    ("posso", [0.0, 0.0, 3.0]),
    ("pode", [0.0, 0.0, 2.5]),
    ("tenho", [0.0, 0.0, 3.0]),
    ("tem", [0.0, 0.0, 2.5]),
    ("estou", [0.0, 0.0, 3.0]),
    ("vou", [0.0, 0.0, 3.0]),
    ("poder", [0.0, 1.0, 1.5]),
    ("atendimento", [0.0, 0.0, 3.0]),
    ("feira", [0.0, 0.0, 3.0]),
    ("terca", [0.0, 0.0, 3.0]),
    ("quarta", [0.0, 0.0, 2.5]),
    ("sexta", [0.0, 0.0, 2.5]),
    ("segunda", [0.0, 0.5, 1.5]),
    // Portuguese: function words.
    ("o", [0.0, 0.5, 1.5]),
    ("os", [0.0, 0.0, 1.5]),
    ("e", [0.0, 0.2, 1.5]),
    ("um", [0.0, 0.0, 2.0]),
    ("uma", [0.0, 0.0, 2.5]),
    ("com", [0.0, 0.0, 2.0]),
    ("sem", [0.0, 0.0, 2.0]),
    ("em", [0.0, 0.0, 2.0]),
    ("na", [0.0, 0.0, 1.5]),
    ("da", [0.0, 0.0, 1.5]),
    ("das", [0.0, 0.0, 1.0]),
    ("dos", [0.0, 0.3, 1.0]),
    ("ao", [0.0, 0.0, 2.0]),
    ("aos", [0.0, 0.0, 2.0]),
    ("pra", [0.0, 0.0, 2.5]),
    ("pro", [0.0, 0.0, 1.0]),
    ("eu", [0.0, 0.0, 2.5]),
    ("voce", [0.0, 0.0, 3.0]),
    ("voces", [0.0, 0.0, 3.0]),
    ("ele", [0.0, 0.0, 2.0]),
    ("ela", [0.0, 0.0, 2.0]),
    ("meu", [0.0, 0.0, 3.0]),
    ("meus", [0.0, 0.0, 2.5]),
    ("minha", [0.0, 0.0, 3.0]),
    ("minhas", [0.0, 0.0, 2.5]),
    ("seu", [0.0, 0.0, 2.0]),
    ("sua", [0.0, 0.0, 2.0]),
    ("isso", [0.0, 0.0, 2.5]),
    ("isto", [0.0, 0.0, 2.5]),
    ("onde", [0.0, 0.0, 2.5]),
    ("quando", [0.0, 0.0, 2.0]),
    ("quanto", [0.0, 0.0, 2.0]),
    ("qual", [0.0, 0.0, 2.0]),
    ("mais", [0.0, 0.0, 2.5]),
    ("tambem", [0.0, 0.0, 3.0]),
    ("ja", [0.0, 0.0, 1.5]),
    ("ate", [0.0, 0.0, 2.0]),
    // Spanish and Portuguese alike.
    ("que", [0.0, 1.0, 1.0]),
    ("de", [0.0, 1.0, 1.0]),
    ("por", [0.0, 1.0, 1.0]),
    ("para", [0.0, 0.8, 0.8]),
    ("favor", [0.0, 0.5, 0.5]),
    ("porque", [0.0, 1.0, 1.0]),
    ("como", [0.0, 1.0, 1.0]),
    ("esta", [0.0, 1.0, 1.0]),
    ("este", [0.0, 1.0, 1.0]),
    ("se", [0.0, 0.8, 0.8]),
    ("te", [0.0, 1.0, 1.0]),
    ("tu", [0.0, 1.0, 1.0]),
    ("nos", [0.0, 0.8, 0.8]),
    ("mas", [0.0, 0.8, 1.5]),
    ("aqui", [0.0, 1.0, 1.0]),
    ("nada", [0.0, 1.0, 1.0]),
    ("claro", [0.0, 1.0, 1.0]),
    ("todo", [0.0, 1.0, 0.5]),
    ("dia", [0.0, 0.5, 1.0]),
    ("dias", [0.0, 1.0, 0.5]),
    ("tarde", [0.0, 0.8, 0.8]),
    ("tardes", [0.0, 1.5, 0.5]),
    ("hora", [0.0, 1.0, 1.0]),
    ("horario", [0.0, 1.0, 1.0]),
    ("semana", [0.0, 1.0, 1.0]),
    ("proxima", [0.0, 1.0, 1.0]),
    ("sabado", [0.0, 1.0, 1.0]),
    ("domingo", [0.0, 1.0, 1.0]),
    ("consulta", [0.0, 1.2, 1.5]),
    ("agendar", [0.0, 1.0, 1.5]),
    ("marcar", [0.0, 1.0, 1.0]),
    ("reservar", [0.0, 1.0, 1.0]),
    ("cancelar", [0.0, 1.0, 1.0]),
    ("confirmar", [0.0, 1.0, 1.0]),
    ("pagar", [0.0, 1.0, 1.0]),
    ("ir", [0.0, 1.0, 1.0]),
    ("vamos", [0.0, 1.0, 1.0]),
];

static LEXICON: LazyLock<HashMap<&'static str, Scores>> =
    LazyLock::new(|| WORDS.iter().copied().collect());

#[cfg(test)]
mod tests {
    use super::*;
    use Language::{En, Es, Pt};

    /// What a message must come out as.
    enum Expect {
        /// This language, with at least this confidence.
        Sure(Language, f32),
        /// This language, with a confidence below [`CONFIDENT`] (a single word).
        Weak(Language),
        /// No language stands out: `None` or a confidence below 0.6.
        Ambiguous,
        /// No evidence at all.
        Nothing,
    }
    use Expect::*;

    const MESSAGES: &[(&str, Expect)] = &[
        // The cue words of the brief, alone.
        ("sí", Weak(Es)),
        ("si", Weak(Es)),
        ("Si", Weak(Es)),
        ("sim", Weak(Pt)),
        ("Sim!", Weak(Pt)),
        ("yes", Weak(En)),
        ("YES", Weak(En)),
        ("obrigado", Weak(Pt)),
        ("Obrigada!!", Weak(Pt)),
        ("gracias", Weak(Es)),
        ("Gracias :)", Weak(Es)),
        ("não", Sure(Pt, 0.7)),
        ("nao", Weak(Pt)),
        ("thanks", Weak(En)),
        ("hola", Weak(Es)),
        // Nothing to go on, or a tie between two languages.
        ("ok", Nothing),
        ("OK 👍", Nothing),
        ("12345", Nothing),
        ("😂😂", Nothing),
        ("", Nothing),
        ("  ?! ", Nothing),
        ("no", Ambiguous),
        ("No.", Ambiguous),
        ("a", Ambiguous),
        ("consulta", Ambiguous),
        ("por favor", Ambiguous),
        ("hmm ok", Nothing),
        // Sentences: Spanish.
        ("¿dónde está?", Sure(Es, 0.75)),
        ("Quiero cambiar mi cita", Sure(Es, 0.9)),
        ("quiero cambiar mi cita para mañana", Sure(Es, 0.9)),
        ("Buenos días, necesito hablar con alguien", Sure(Es, 0.9)),
        ("buenos dias necesito hablar con alguien", Sure(Es, 0.9)),
        ("¡Muchas gracias!", Sure(Es, 0.8)),
        ("no puedo ir mañana", Sure(Es, 0.8)),
        ("Hola, tengo una pregunta sobre mi factura", Sure(Es, 0.9)),
        ("si, a las 3 esta bien", Sure(Es, 0.75)),
        ("QUIERO CANCELAR LA CITA", Sure(Es, 0.8)),
        ("jajaja si claro", Sure(Es, 0.6)),
        // Sentences: Portuguese.
        ("Quero remarcar minha consulta", Sure(Pt, 0.85)),
        ("quero remarcar minha consulta pra amanha", Sure(Pt, 0.9)),
        ("Olá, você pode me ligar amanhã?", Sure(Pt, 0.9)),
        ("ola voce pode me ligar amanha", Sure(Pt, 0.9)),
        ("não vou poder ir hoje", Sure(Pt, 0.9)),
        ("nao vou poder ir hoje", Sure(Pt, 0.85)),
        ("Oi, preciso de ajuda com a minha conta", Sure(Pt, 0.9)),
        ("Bom dia! Qual o horário de atendimento?", Sure(Pt, 0.9)),
        ("obrigado, até amanhã", Sure(Pt, 0.9)),
        ("kkkk blz", Sure(Pt, 0.7)),
        ("A ligação caiu", Sure(Pt, 0.7)),
        // Sentences: English.
        ("I need to change my appointment", Sure(En, 0.95)),
        ("i need to change my appointment", Sure(En, 0.95)),
        ("Can you call me tomorrow?", Sure(En, 0.9)),
        ("don't call me", Sure(En, 0.7)),
        ("I'm running late", Sure(En, 0.8)),
        ("Yes please, thanks!", Sure(En, 0.9)),
        ("what time do you open", Sure(En, 0.9)),
        ("STOP sending these", Sure(En, 0.6)),
        ("no, not today", Sure(En, 0.7)),
        ("Hello, is this the dentist?", Sure(En, 0.9)),
    ];

    #[test]
    fn language_of_short_messages() {
        let mut failures = Vec::new();
        for (text, expect) in MESSAGES {
            let got = detect(text);
            let ok = match (expect, got) {
                (Sure(lang, min), Some(d)) => d.language == *lang && d.confidence >= *min,
                (Weak(lang), Some(d)) => d.language == *lang && d.confidence < CONFIDENT,
                (Ambiguous, None) => true,
                (Ambiguous, Some(d)) => d.confidence < 0.6,
                (Nothing, None) => true,
                _ => false,
            };
            if !ok {
                failures.push(format!("{text:?}: got {got:?}"));
            }
        }
        assert!(MESSAGES.len() >= 40);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn language_confidence_grows_with_evidence() {
        let one = detect("quiero").map(|d| d.confidence).unwrap_or(0.0);
        let three = detect("quiero cambiar cita")
            .map(|d| d.confidence)
            .unwrap_or(0.0);
        assert!(one < three, "{one} !< {three}");
        // A telling accent is worth more than the same word typed without it.
        let plain = detect("nao").map(|d| d.confidence).unwrap_or(0.0);
        let tilde = detect("não").map(|d| d.confidence).unwrap_or(0.0);
        assert!(plain < tilde, "{plain} !< {tilde}");
    }

    #[test]
    fn language_mixed_text_is_not_confident() {
        // Half Spanish, half English: whichever wins, it must not replace a preference.
        let d = detect("hola, thanks").expect("evidence");
        assert!(d.confidence < CONFIDENT, "{d:?}");
    }

    #[test]
    fn language_codes_and_names() {
        for lang in Language::ALL {
            assert_eq!(Language::from_code(lang.code()), Some(lang));
        }
        assert_eq!(Language::from_code("pt-BR"), Some(Pt));
        assert_eq!(Language::from_code("ES_mx"), Some(Es));
        assert_eq!(Language::from_code("EN"), Some(En));
        assert_eq!(Language::from_code("fr"), None);
        assert_eq!(Language::from_code(""), None);
        assert_eq!(En.name(), "English");
        assert_eq!(Es.name(), "Spanish");
        assert_eq!(Pt.name(), "Portuguese");
    }

    #[test]
    fn language_lexicon_keys_are_folded_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for (word, _) in WORDS {
            assert_eq!(fold(&word.to_lowercase()), *word, "{word} is not folded");
            assert!(seen.insert(*word), "{word} is listed twice");
        }
    }
}
