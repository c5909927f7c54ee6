//! Silero VAD inference cost per 32 ms window at batch sizes 1, 8, 32 and 128, at 16 kHz
//! (`vad_infer_batch`) and 8 kHz (`vad_infer_batch_8k`, the narrowband calls' branch), a
//! worker tick through the batcher, and the Rust heap allocations one batched inference makes.
//!
//!     cargo bench -p parley-media --bench vad
//!
//! Needs ONNX Runtime and the model (scripts/fetch_models.sh; PARLEY_MEDIA_ONNXRUNTIME and
//! PARLEY_MEDIA_VAD_MODEL override the .cache/models/ paths). Inputs are windows of the
//! reference speech (.cache/speech/silero_test_16k.wav) when present, else a synthetic
//! signal. Criterion's throughput line gives windows per second; per window = 1 / that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput};
use parley_media::vad::{SegmenterConfig, SileroModel, VadBatcher, VadRate, VadStream, STATE_LEN};

/// Counts heap allocations (calls to alloc/realloc) of the whole process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

mod common;

const BATCHES: [usize; 4] = [1, 8, 32, 128];

/// `n` model input rows at `rate`, one after another, cut from the reference speech at
/// different offsets (or a synthetic signal), each with its context before it. 8 kHz rows
/// come from the speech halved by pair averaging.
fn windows(n: usize, rate: VadRate) -> Vec<f32> {
    let (window, ctx) = (rate.window_samples(), rate.context_samples());
    let wav = common::repo_root().join(".cache/speech/silero_test_16k.wav");
    let wide: Vec<f32> = match parley_media::read_wav(&wav) {
        Ok(a) if a.sample_rate == 16000 && a.samples.len() > 400 * 512 => {
            a.samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
        }
        _ => (0..800 * 512)
            .map(|i| {
                let t = i as f32 / 16000.0;
                0.3 * (2.0 * std::f32::consts::PI * 180.0 * t).sin()
                    * (2.0 * std::f32::consts::PI * 3.0 * t).sin().abs()
            })
            .collect(),
    };
    let pcm: Vec<f32> = match rate {
        VadRate::Wideband => wide,
        VadRate::Narrowband => wide.chunks_exact(2).map(|p| (p[0] + p[1]) / 2.0).collect(),
    };
    let span = pcm.len() / window - 2;
    let mut rows = Vec::with_capacity(n * rate.input_samples());
    for b in 0..n {
        let at = (1 + (b * 7919) % span) * window;
        rows.extend_from_slice(&pcm[at - ctx..at + window]);
    }
    rows
}

/// Allocations made by one `infer_batch` call in steady state (after warm-up), averaged.
fn report_allocations(model: &mut SileroModel) {
    let rate = VadRate::Wideband;
    for &b in &BATCHES {
        let inputs = windows(b, rate);
        let mut states = vec![[0.0f32; STATE_LEN]; b];
        let mut probs = vec![0.0f32; b];
        for _ in 0..20 {
            model
                .infer_batch(rate, &inputs, &mut states, &mut probs)
                .unwrap();
        }
        let runs = 200;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..runs {
            model
                .infer_batch(rate, &inputs, &mut states, &mut probs)
                .unwrap();
        }
        let per_run = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / runs as f64;
        println!(
            "vad allocations: batch {b:>3}: {per_run:.1} Rust heap allocations per infer_batch \
             (ort's tensor views and output handles; ONNX Runtime's own C++ allocations are \
             not seen by this counter)"
        );
    }
}

fn main() {
    let (lib, model_path) = common::vad_paths();
    let mut model = match SileroModel::load(&lib, &model_path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED vad bench: {e}");
            return;
        }
    };
    report_allocations(&mut model);

    let mut c = Criterion::default().configure_from_args();
    for (name, rate) in [
        ("vad_infer_batch", VadRate::Wideband),
        ("vad_infer_batch_8k", VadRate::Narrowband),
    ] {
        let mut group = c.benchmark_group(name);
        for &b in &BATCHES {
            let inputs = windows(b, rate);
            let mut states = vec![[0.0f32; STATE_LEN]; b];
            let mut probs = vec![0.0f32; b];
            group.throughput(Throughput::Elements(b as u64));
            group.bench_function(BenchmarkId::from_parameter(b), |bench| {
                bench.iter(|| {
                    model
                        .infer_batch(rate, black_box(&inputs), &mut states, &mut probs)
                        .unwrap();
                    black_box(&probs);
                })
            });
        }
        group.finish();
    }

    // A worker tick through the batcher: streams with a window each, gathered, one run,
    // results handed back to the streams' segmenters.
    let mut batcher = VadBatcher::new(model);
    {
        let mut group = c.benchmark_group("vad_batcher_tick");
        for &b in &[32usize, 128] {
            let rate = VadRate::Wideband;
            let rows = windows(b, rate);
            let pcm: Vec<Vec<i16>> = rows
                .chunks_exact(rate.input_samples())
                .map(|r| {
                    r[rate.context_samples()..]
                        .iter()
                        .map(|&x| (x * 32768.0).clamp(-32768.0, 32767.0) as i16)
                        .collect()
                })
                .collect();
            let mut streams: Vec<VadStream> = (0..b)
                .map(|_| VadStream::new(SegmenterConfig::default()).unwrap())
                .collect();
            group.throughput(Throughput::Elements(b as u64));
            group.bench_function(BenchmarkId::from_parameter(b), |bench| {
                bench.iter(|| {
                    for (s, w) in streams.iter_mut().zip(&pcm) {
                        s.push_pcm(w);
                    }
                    let n = batcher
                        .run(
                            &mut streams,
                            |s| s,
                            |_, _, out| {
                                black_box(out);
                            },
                        )
                        .unwrap();
                    assert_eq!(n, b);
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
