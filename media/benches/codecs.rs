//! Encode and decode of one 20 ms frame for each codec, through the `AudioCodec` trait the
//! session uses: PCMU and PCMA at 8 kHz, G.722 and Opus (default `OpusSettings`: 16 kHz,
//! 32 kbit/s, FEC for 5 % loss, complexity 1) at 16 kHz. Input is speech frames (pauses
//! left out), cycled; decode runs on the payloads the encoder made from them, with its own
//! codec instance so the decoder state follows a real stream.
//!
//!     cargo bench -p parley-media --bench codecs

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use parley_media::codec::{new_codec, CodecKind, OpusSettings};

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    for kind in [
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        CodecKind::Opus,
    ] {
        let mut enc = new_codec(kind, OpusSettings::default()).unwrap();
        let mut dec = new_codec(kind, OpusSettings::default()).unwrap();
        let rate = enc.sample_rate();
        let frames = common::voiced_frames(rate, 250);
        let samples = enc.frame_samples();
        assert_eq!(frames[0].len(), samples);
        let mut payload = [0u8; 1500];
        let payloads: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let n = enc.encode(f, &mut payload).unwrap();
                payload[..n].to_vec()
            })
            .collect();
        let mean_bytes =
            payloads.iter().map(Vec::len).sum::<usize>() as f64 / payloads.len() as f64;
        println!(
            "codec {kind}: {} Hz, {} frames of speech, {mean_bytes:.0} payload bytes per 20 ms",
            rate,
            frames.len()
        );
        let name = kind.name().to_ascii_lowercase();

        let mut k = 0;
        group.bench_function(format!("{name}_encode_20ms"), |b| {
            b.iter(|| {
                let f = &frames[k % frames.len()];
                k += 1;
                black_box(enc.encode(black_box(f), &mut payload).unwrap())
            })
        });

        let mut pcm = vec![0i16; samples];
        let mut k = 0;
        group.bench_function(format!("{name}_decode_20ms"), |b| {
            b.iter(|| {
                let p = &payloads[k % payloads.len()];
                k += 1;
                let n = dec.decode(black_box(p), &mut pcm).unwrap();
                black_box(&pcm);
                n
            })
        });
    }
    group.finish();
    c.final_summary();
}
