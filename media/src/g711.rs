//! ITU-T G.711 companding: µ-law (PCMU, RTP payload type 0) and A-law
//! (PCMA, payload type 8).
//!
//! Every SIP endpoint speaks at least one of these, so they sit on the hot
//! path of every call: 50 frames of 160 samples per second per direction.
//!
//! # Design
//!
//! * **Decode** is a single lookup in a 256-entry table per law.
//! * **Encode** is a single lookup in a table indexed by the top bits of the
//!   sample. G.711 µ-law only looks at the top 14 bits of a 16-bit sample and
//!   A-law at the top 13, so a 16 KiB (µ-law) / 8 KiB (A-law) table covers
//!   every input exactly. We chose this over the classic segment search
//!   because the search has a data-dependent loop (or chain of compares)
//!   whose branches mispredict on real speech, whose level jumps between
//!   segments constantly; the table is one shift plus one load, branch-free,
//!   and at this size it stays resident in L1/L2 while a call is active.
//!
//! All tables are computed at compile time by `const fn` from the arithmetic
//! definition of the laws (the same formulas as the ITU-T G.191 reference
//! implementation), so there are no pasted magic literals to get wrong. The
//! unit tests cross-check each table against the formula for every input.
//!
//! Negative inputs are reduced to a magnitude with one's complement
//! (`!x`, i.e. `-x - 1`) as G.191 does; this keeps the quantiser symmetric
//! around zero and is what makes the encoder depend only on the top bits.

/// Bias added to the 14-bit µ-law magnitude so that every segment has the
/// same shape (33 in 14-bit units, i.e. 132 in 16-bit units).
const ULAW_BIAS: i32 = 33;
/// Largest biased 14-bit magnitude that µ-law can represent.
const ULAW_CLIP: i32 = 0x1FFF;

/// Encode one 14-bit signed sample (`-8192..=8191`) with µ-law arithmetic.
///
/// Used only to build [`ULAW_ENCODE_TABLE`]; kept separate so tests can
/// compare the table with the formula.
const fn ulaw_encode_14(x: i32) -> u8 {
    let positive = x >= 0;
    let mut mag = if positive { x } else { !x } + ULAW_BIAS;
    if mag > ULAW_CLIP {
        mag = ULAW_CLIP;
    }
    // Segment number = bit length of (mag >> 6), in 0..=7.
    let mut seg = 0;
    let mut top = mag >> 6;
    while top != 0 {
        seg += 1;
        top >>= 1;
    }
    let mantissa = (mag >> (seg + 1)) & 0x0F;
    // µ-law transmits the one's complement of sign/segment/mantissa; the
    // sign bit is 1 for positive samples after inversion.
    let code = ((seg << 4) | mantissa) as u8;
    let inverted = !code & 0x7F;
    if positive {
        inverted | 0x80
    } else {
        inverted
    }
}

/// Decode one µ-law code with µ-law arithmetic (see [`ULAW_DECODE_TABLE`]).
const fn ulaw_decode_formula(code: u8) -> i16 {
    let c = !code;
    let seg = ((c >> 4) & 0x07) as i32;
    let mantissa = (c & 0x0F) as i32;
    // Reconstruct at the centre of the decision interval, in 16-bit units.
    let mag = (((mantissa << 3) + 4 * ULAW_BIAS) << seg) - 4 * ULAW_BIAS;
    if c & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// Encode one 13-bit signed sample (`-4096..=4095`) with A-law arithmetic.
const fn alaw_encode_13(x: i32) -> u8 {
    let positive = x >= 0;
    // 12-bit magnitude (one's complement for negatives, as in G.191).
    let mut ix = (if positive { x } else { !x }) >> 1;
    if ix > 15 {
        let mut seg = 1;
        while ix > 31 {
            ix >>= 1;
            seg += 1;
        }
        ix = (ix - 16) + (seg << 4);
    }
    let code = if positive { ix | 0x80 } else { ix } as u8;
    // A-law inverts the even bits on the wire (ITU-T G.711 table 1a).
    code ^ 0x55
}

/// Decode one A-law code with A-law arithmetic (see [`ALAW_DECODE_TABLE`]).
const fn alaw_decode_formula(code: u8) -> i16 {
    let ix = (code ^ 0x55) & 0x7F;
    let seg = (ix >> 4) as i32;
    let mut mag = (ix & 0x0F) as i32;
    if seg > 0 {
        mag += 16;
    }
    mag = (mag << 4) + 8;
    if seg > 1 {
        mag <<= seg - 1;
    }
    if code & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_formula(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_formula(i as u8);
        i += 1;
    }
    t
}

/// Entries: one per 14-bit input, indexed by `(sample >> 2) & 0x3FFF`
/// (two's-complement bit pattern, so negatives land in the upper half).
const ULAW_TABLE_LEN: usize = 1 << 14;
/// Entries: one per 13-bit input, indexed by `(sample >> 3) & 0x1FFF`.
const ALAW_TABLE_LEN: usize = 1 << 13;

const fn build_ulaw_encode() -> [u8; ULAW_TABLE_LEN] {
    let mut t = [0u8; ULAW_TABLE_LEN];
    let mut i = 0;
    while i < ULAW_TABLE_LEN {
        // Sign-extend the 14-bit index back to a signed value.
        let x = ((i as i32) << 18) >> 18;
        t[i] = ulaw_encode_14(x);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; ALAW_TABLE_LEN] {
    let mut t = [0u8; ALAW_TABLE_LEN];
    let mut i = 0;
    while i < ALAW_TABLE_LEN {
        let x = ((i as i32) << 19) >> 19;
        t[i] = alaw_encode_13(x);
        i += 1;
    }
    t
}

/// µ-law code -> 16-bit linear sample.
static ULAW_DECODE_TABLE: [i16; 256] = build_ulaw_decode();
/// A-law code -> 16-bit linear sample.
static ALAW_DECODE_TABLE: [i16; 256] = build_alaw_decode();
/// 14-bit linear (two's-complement index) -> µ-law code.
static ULAW_ENCODE_TABLE: [u8; ULAW_TABLE_LEN] = build_ulaw_encode();
/// 13-bit linear (two's-complement index) -> A-law code.
static ALAW_ENCODE_TABLE: [u8; ALAW_TABLE_LEN] = build_alaw_encode();

/// Encode one 16-bit linear sample to µ-law. The two low bits are below
/// µ-law's resolution and are ignored.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    // `as u16` reinterprets the bits; the mask keeps the index in bounds.
    ULAW_ENCODE_TABLE[((sample as u16) >> 2) as usize & (ULAW_TABLE_LEN - 1)]
}

/// Decode one µ-law code to a 16-bit linear sample (range ±32124).
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE_TABLE[code as usize]
}

/// Encode one 16-bit linear sample to A-law. The three low bits are below
/// A-law's resolution and are ignored.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE_TABLE[((sample as u16) >> 3) as usize & (ALAW_TABLE_LEN - 1)]
}

/// Decode one A-law code to a 16-bit linear sample (range ±32256).
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE_TABLE[code as usize]
}

/// Encode a block of samples to µ-law.
///
/// Writes `min(pcm.len(), out.len())` codes to the front of `out` and leaves
/// the rest of `out` untouched; callers size `out` to at least `pcm.len()`.
/// Never allocates and never panics.
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = ulaw_encode(s);
    }
}

/// Decode a block of µ-law codes. Writes `min(codes.len(), out.len())`
/// samples to the front of `out`; see [`encode_ulaw`] for the contract.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_decode(c);
    }
}

/// Encode a block of samples to A-law. Writes `min(pcm.len(), out.len())`
/// codes; see [`encode_ulaw`] for the contract.
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = alaw_encode(s);
    }
}

/// Decode a block of A-law codes. Writes `min(codes.len(), out.len())`
/// samples; see [`encode_ulaw`] for the contract.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_decode(c);
    }
}

/// The two G.711 variants, so call code can pick one from SDP negotiation
/// and then stay law-agnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum G711 {
    /// µ-law, the North American / Japanese variant ("PCMU", PT 0).
    Ulaw,
    /// A-law, the European / international variant ("PCMA", PT 8).
    Alaw,
}

impl G711 {
    /// Encode `min(pcm.len(), out.len())` samples into `out`.
    pub fn encode(&self, pcm: &[i16], out: &mut [u8]) {
        match self {
            G711::Ulaw => encode_ulaw(pcm, out),
            G711::Alaw => encode_alaw(pcm, out),
        }
    }

    /// Decode `min(codes.len(), out.len())` codes into `out`.
    pub fn decode(&self, codes: &[u8], out: &mut [i16]) {
        match self {
            G711::Ulaw => decode_ulaw(codes, out),
            G711::Alaw => decode_alaw(codes, out),
        }
    }

    /// Static RTP payload type from RFC 3551 table 4.
    pub fn payload_type(&self) -> u8 {
        match self {
            G711::Ulaw => 0,
            G711::Alaw => 8,
        }
    }

    /// SDP encoding name (RFC 3551), as used in `a=rtpmap`.
    pub fn name(&self) -> &'static str {
        match self {
            G711::Ulaw => "PCMU",
            G711::Alaw => "PCMA",
        }
    }

    /// Look up the variant for a static payload type, for incoming RTP.
    pub fn from_payload_type(pt: u8) -> Option<G711> {
        match pt {
            0 => Some(G711::Ulaw),
            8 => Some(G711::Alaw),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0); // "negative zero"
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        // First level of segment 1: ((0 + 132) << 1) - 132.
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(32124), 0x80);
        assert_eq!(ulaw_encode(-32124), 0x00);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn decode_tables_match_formula_and_are_odd_symmetric() {
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode(c), ulaw_decode_formula(c));
            assert_eq!(alaw_decode(c), alaw_decode_formula(c));
            // Flipping the sign bit negates the value.
            assert_eq!(ulaw_decode(c ^ 0x80), -ulaw_decode(c));
            assert_eq!(alaw_decode(c ^ 0x80), -alaw_decode(c));
        }
    }

    #[test]
    fn encode_tables_match_formula_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(s), ulaw_encode_14(i32::from(s) >> 2), "{s}");
            assert_eq!(alaw_encode(s), alaw_encode_13(i32::from(s) >> 3), "{s}");
        }
    }

    #[test]
    fn round_trip_all_codes() {
        for c in 0..=255u8 {
            let u = ulaw_decode(c);
            assert_eq!(ulaw_decode(ulaw_encode(u)), u, "ulaw {c:#04x}");
            let a = alaw_decode(c);
            assert_eq!(alaw_decode(alaw_encode(a)), a, "alaw {c:#04x}");
            // Codes are recovered exactly, except µ-law's negative zero.
            if c != 0x7F {
                assert_eq!(ulaw_encode(u), c);
            }
            assert_eq!(alaw_encode(a), c);
        }
    }

    #[test]
    fn quantisation_is_monotonic_and_close() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u, "ulaw not monotonic at {s}");
            assert!(a >= prev_a, "alaw not monotonic at {s}");
            prev_u = u;
            prev_a = a;
            // Error is at most half the largest step (1024 / 2) plus clipping
            // beyond the top reconstruction level.
            let eu = (i32::from(u) - i32::from(s)).abs();
            let ea = (i32::from(a) - i32::from(s)).abs();
            let lim_u = if i32::from(s).abs() > 32124 { 700 } else { 516 };
            let lim_a = if i32::from(s).abs() > 32256 { 600 } else { 516 };
            assert!(eu <= lim_u, "ulaw error {eu} at {s}");
            assert!(ea <= lim_a, "alaw error {ea} at {s}");
            // Relative error is bounded (the whole point of companding).
            if i32::from(s).abs() > 256 {
                assert!(eu * 16 <= i32::from(s).abs(), "ulaw rel err at {s}");
                assert!(ea * 16 <= i32::from(s).abs(), "alaw rel err at {s}");
            }
        }
    }

    fn sine_snr_db(law: G711, amplitude: f64) -> f64 {
        const N: usize = 8000;
        let mut pcm = [0i16; N];
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = i as f64 / 8000.0;
            *s = (amplitude * (2.0 * std::f64::consts::PI * 1013.0 * t).sin()).round() as i16;
        }
        let mut codes = [0u8; N];
        let mut back = [0i16; N];
        law.encode(&pcm, &mut codes);
        law.decode(&codes, &mut back);
        let (mut sig, mut noise) = (0.0f64, 0.0f64);
        for (&x, &y) in pcm.iter().zip(&back) {
            sig += f64::from(x).powi(2);
            noise += (f64::from(x) - f64::from(y)).powi(2);
        }
        10.0 * (sig / noise).log10()
    }

    #[test]
    fn sine_snr_above_35db() {
        for law in [G711::Ulaw, G711::Alaw] {
            for amp in [2000.0, 8000.0, 20000.0, 30000.0] {
                let snr = sine_snr_db(law, amp);
                assert!(snr > 35.0, "{law:?} amp {amp}: {snr:.1} dB");
            }
        }
    }

    #[test]
    fn block_functions_write_min_len_only() {
        let pcm = [0i16, 1000, -1000, 32000];
        let mut out = [0xAAu8; 6];
        encode_ulaw(&pcm, &mut out);
        assert_eq!(
            out[..4],
            [
                0xFF,
                ulaw_encode(1000),
                ulaw_encode(-1000),
                ulaw_encode(32000)
            ]
        );
        assert_eq!(out[4..], [0xAA, 0xAA]);
        let mut short = [0u8; 2];
        encode_alaw(&pcm, &mut short);
        assert_eq!(short, [0xD5, alaw_encode(1000)]);
        let mut dec = [7i16; 3];
        decode_alaw(&[0xD5, 0x55], &mut dec);
        assert_eq!(dec, [8, -8, 7]);
        let mut dec = [7i16; 1];
        decode_ulaw(&[0x80, 0x00], &mut dec);
        assert_eq!(dec, [32124]);
    }

    #[test]
    fn enum_metadata_and_dispatch() {
        assert_eq!(G711::Ulaw.payload_type(), 0);
        assert_eq!(G711::Alaw.payload_type(), 8);
        assert_eq!(G711::Ulaw.name(), "PCMU");
        assert_eq!(G711::Alaw.name(), "PCMA");
        assert_eq!(G711::from_payload_type(0), Some(G711::Ulaw));
        assert_eq!(G711::from_payload_type(8), Some(G711::Alaw));
        assert_eq!(G711::from_payload_type(9), None);
        let mut c = [0u8; 1];
        G711::Alaw.encode(&[0], &mut c);
        assert_eq!(c, [0xD5]);
        G711::Ulaw.encode(&[0], &mut c);
        assert_eq!(c, [0xFF]);
        let mut d = [0i16; 1];
        G711::Ulaw.decode(&[0x00], &mut d);
        assert_eq!(d, [-32124]);
        G711::Alaw.decode(&[0x55], &mut d);
        assert_eq!(d, [-8]);
    }
}
