//! Steady-state encode/decode of every codec and `Resampler::process` make no
//! heap allocation: a counting global allocator watches this test's thread
//! after a few warm-up calls.

use parley_media::codec::{new_codec, CodecKind, OpusSettings};
use parley_media::resample::{Resampler, SUPPORTED_RATES};

mod common;

fn allocations(f: impl FnOnce()) -> u64 {
    common::allocations_in(f).0
}

fn tone(n: usize, step: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i * step % 200) as i16 - 100) * 80)
        .collect()
}

#[test]
fn the_counter_sees_allocations() {
    // Proves the harness can fail: a Vec allocation is counted.
    let n = allocations(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(&v);
    });
    assert!(n >= 1);
}

#[test]
fn codecs_do_not_allocate_per_frame() {
    for kind in CodecKind::ALL {
        let mut c = new_codec(kind, OpusSettings::default()).unwrap();
        let f = c.frame_samples();
        let pcm = tone(f, 7);
        let mut payload = [0u8; 1500];
        let mut out = vec![0i16; f * 6];
        let mut frame = |c: &mut Box<dyn parley_media::codec::AudioCodec>| {
            let n = c.encode(&pcm, &mut payload).unwrap();
            c.decode(&payload[..n], &mut out).unwrap();
            let _ = c.conceal(&mut out);
            let _ = c.decode_fec(&payload[..n], &mut out);
            // Error paths too.
            let _ = c.decode(&[0x03, 0x00], &mut out);
            let _ = c.encode(&pcm[..1], &mut payload);
        };
        for _ in 0..5 {
            frame(&mut c);
        }
        let n = allocations(|| {
            for _ in 0..200 {
                frame(&mut c);
            }
        });
        assert_eq!(n, 0, "{kind}: {n} allocations in 200 frames");
    }
}

#[test]
fn resampler_does_not_allocate_per_frame() {
    for from in SUPPORTED_RATES {
        for to in SUPPORTED_RATES {
            for low_delay in [false, true] {
                let frame = from as usize / 50;
                let mut r = if low_delay {
                    Resampler::low_delay(from, to, frame).unwrap()
                } else {
                    Resampler::new(from, to, frame).unwrap()
                };
                let input = tone(r.frame_in(), 3);
                let mut out = vec![0i16; r.frame_out()];
                for _ in 0..5 {
                    r.process(&input, &mut out);
                }
                let n = allocations(|| {
                    for _ in 0..200 {
                        assert_eq!(r.process(&input, &mut out), r.frame_out());
                    }
                });
                assert_eq!(n, 0, "{from}->{to}: {n} allocations in 200 frames");
            }
        }
    }
}
