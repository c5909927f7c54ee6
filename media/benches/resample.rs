//! Resampling of one 20 ms frame, the conversions a narrowband (G.711) call makes every
//! tick: 8 kHz -> 16 kHz for what the caller sends, 16 kHz -> 8 kHz for what we send; with
//! `Resampler::new` (one FFT block per frame, `fft_*`) and with `Resampler::for_call` (the
//! halfband FIR calls use, `halfband_*`). Input is speech frames, cycled.
//!
//!     cargo bench -p parley-media --bench resample

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use parley_media::resample::Resampler;

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("resample");
    group.throughput(Throughput::Elements(1));
    type Build = fn(u32, u32, usize) -> Result<Resampler, parley_media::resample::ResampleError>;
    let kinds: [(&str, Build); 2] = [("fft", Resampler::new), ("halfband", Resampler::for_call)];
    for ((from, to), (kind, build)) in [(8000u32, 16000u32), (16000, 8000)]
        .into_iter()
        .flat_map(|pair| kinds.map(|k| (pair, k)))
    {
        let frames = common::voiced_frames(from, 250);
        let mut r = build(from, to, from as usize / 50).unwrap();
        let mut out = vec![0i16; r.frame_out()];
        let mut k = 0;
        let name = format!("{kind}_{}k_to_{}k_20ms", from / 1000, to / 1000);
        group.bench_function(name, |b| {
            b.iter(|| {
                let f = &frames[k % frames.len()];
                k += 1;
                let n = r.process(black_box(f), &mut out);
                debug_assert_eq!(n, out.len());
                black_box(&out);
                n
            })
        });
    }
    group.finish();
    c.final_summary();
}
