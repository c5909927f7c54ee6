//! Parley's G.722 against spandsp's, bit for bit (fixtures/g722, made by
//! scripts/g722_reference.py). spandsp's test suite checks its codec against the ITU-T test
//! vectors, which are not available here; see the script for why this stands in for them.

use std::path::PathBuf;

use parley_media::codec::{G722Decoder, G722Encoder};

const FRAME_SAMPLES: usize = 320;
const FRAME_OCTETS: usize = 160;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/g722")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn samples(bytes: &[u8]) -> Vec<i16> {
    assert!(bytes.len().is_multiple_of(2));
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The index of the first difference, with both values, for a readable failure.
fn first_difference<T: PartialEq + Copy + std::fmt::Debug>(
    ours: &[T],
    reference: &[T],
) -> Option<(usize, T, T)> {
    assert_eq!(ours.len(), reference.len(), "length");
    ours.iter()
        .zip(reference)
        .position(|(a, b)| a != b)
        .map(|i| (i, ours[i], reference[i]))
}

fn decode_in_frames(octets: &[u8]) -> Vec<i16> {
    let mut dec = G722Decoder::new();
    let mut out = vec![0i16; octets.len() * 2];
    for (frame, pcm) in octets
        .chunks(FRAME_OCTETS)
        .zip(out.chunks_mut(FRAME_SAMPLES))
    {
        assert_eq!(dec.decode(frame, pcm), Ok(frame.len() * 2));
    }
    out
}

#[test]
fn encoder_matches_spandsp_bit_for_bit() {
    let input = samples(&fixture("input.s16"));
    let reference = fixture("encoded.g722");
    assert!(input.len().is_multiple_of(FRAME_SAMPLES));
    let mut enc = G722Encoder::new();
    let mut ours = vec![0u8; input.len() / 2];
    for (pcm, out) in input
        .chunks(FRAME_SAMPLES)
        .zip(ours.chunks_mut(FRAME_OCTETS))
    {
        assert_eq!(enc.encode(pcm, out), Ok(FRAME_OCTETS));
    }
    if let Some((i, a, b)) = first_difference(&ours, &reference) {
        panic!(
            "octet {i} (sample pair at {:.4} s): ours {a:#04x}, spandsp {b:#04x}",
            i as f64 / 8000.0
        );
    }
}

/// Compares decoded audio sample by sample. The one allowed difference is spandsp 0.0.6's
/// output stage: it casts the receive QMF's sum to 16 bits, so an overshoot past full scale
/// wraps to the opposite sign (a loud click); Parley saturates, as later spandsp releases
/// (`saturate16(... >> 11)`) and the ITU-T reference's saturating operators do. Such a sample
/// must be at the rail in ours and of the opposite sign in spandsp's, and the samples around
/// it must match exactly (the codec state is not affected by the output stage).
fn assert_decoded_matches(ours: &[i16], reference: &[i16]) -> usize {
    assert_eq!(ours.len(), reference.len(), "length");
    let mut wrapped = 0;
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        if a == b {
            continue;
        }
        let clipped_vs_wrapped = (a == i16::MAX && b < 0) || (a == i16::MIN && b > 0);
        assert!(clipped_vs_wrapped, "sample {i}: ours {a}, spandsp {b}");
        wrapped += 1;
    }
    wrapped
}

#[test]
fn decoder_matches_spandsp_on_the_encoded_signal() {
    let ours = decode_in_frames(&fixture("encoded.g722"));
    let reference = samples(&fixture("decoded.s16"));
    // Up to 1.5 s the signal is speech, which never reaches full scale: exact there.
    let speech = 24_000;
    if let Some((i, a, b)) = first_difference(&ours[..speech], &reference[..speech]) {
        panic!("sample {i}: ours {a}, spandsp {b}");
    }
    let wrapped = assert_decoded_matches(&ours, &reference);
    assert!(
        wrapped > 0,
        "the full-scale part should reach the output rails"
    );
}

/// Random octets reach every code and push the decoder's predictor and scale factors to
/// their limits, which a real encoder's output seldom does.
#[test]
fn decoder_matches_spandsp_on_random_codes() {
    let ours = decode_in_frames(&fixture("random.g722"));
    let reference = samples(&fixture("random_decoded.s16"));
    let wrapped = assert_decoded_matches(&ours, &reference);
    assert!(wrapped < ours.len() / 20, "{wrapped} samples at the rails");
}
