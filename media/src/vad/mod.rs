//! Voice activity detection with the Silero VAD model (v5/v6 ONNX) run by ONNX Runtime.
//!
//! The pieces, from the media worker's point of view:
//!
//! - [`VadStream`], one per call: takes the call's PCM as it arrives (20 ms frames, at 8 kHz
//!   for narrowband calls and 16 kHz otherwise, see [`VadRate`]) and says when a 32 ms window
//!   (512 new samples at 16 kHz plus the 64 before them as context; 256 and 32 at 8 kHz) is
//!   ready. It keeps the call's recurrent model state and a
//!   [`SpeechSegmenter`].
//! - [`VadBatcher`], one per media worker: once per tick it runs **one** batched inference
//!   per rate over every stream with a window ready and hands each stream its probability, which the
//!   stream's segmenter turns into speech start/end events ([`SpeechEvent`]).
//! - [`SileroModel`]: the ONNX session. ONNX Runtime is loaded at run time from a shared
//!   library whose path comes from config (`PARLEY_MEDIA_ONNXRUNTIME`), the model from
//!   `PARLEY_MEDIA_VAD_MODEL`; `scripts/fetch_models.sh` fetches both from PyPI.
//! - [`analyze_wav`]: the offline diagnostic behind `parley media vad FILE.wav`.
//!
//! Times are milliseconds from the start of the stream, counted from the samples pushed
//! (window `i` starts at `32 * i` ms), so tests run faster than real time.

mod analyze;
mod batcher;
mod model;
mod segmenter;
mod stream;

#[cfg(test)]
mod model_tests;

pub use analyze::{analyze_samples, analyze_wav, resample_to_16k, VadAnalysis};
pub use batcher::VadBatcher;
pub use model::{SileroModel, DEFAULT_MAX_BATCH};
pub use segmenter::{Segment, SegmenterConfig, SpeechEvent, SpeechEventKind, SpeechSegmenter};
pub use stream::{VadStream, WindowOutcome, STREAM_CAPACITY_WINDOWS};

use std::path::PathBuf;

use thiserror::Error;

/// The model's wideband rate (the rate of the engine's 16 kHz path).
pub const SAMPLE_RATE: u32 = 16_000;
/// New samples per model window at 16 kHz (32 ms).
pub const WINDOW_SAMPLES: usize = 512;
/// Samples of the previous window prepended to each 16 kHz window as context.
pub const CONTEXT_SAMPLES: usize = 64;
/// Length of one 16 kHz model input row: context plus the new window. The longest row of
/// either rate.
pub const INPUT_SAMPLES: usize = CONTEXT_SAMPLES + WINDOW_SAMPLES;
/// Recurrent state per stream: 2 × 128 (the model's `[2, batch, 128]` state, one batch row).
pub const STATE_LEN: usize = 2 * STATE_HALF;
/// One half (h or c) of a stream's recurrent state.
pub(crate) const STATE_HALF: usize = 128;
/// Duration of one window in milliseconds, at either rate.
pub const WINDOW_MS: u32 = 32;

/// The two rates the Silero model runs at. One model file holds both (an `If` on its `sr`
/// input picks the branch); a batch is all one rate.
///
/// Narrowband calls (G.711, the bulk of carrier traffic) run at 8 kHz: their audio has
/// nothing above 4 kHz for the 16 kHz branch to use, and the 8 kHz branch costs about 40 %
/// of the 16 kHz one per window (docs/benchmarks.md). Wideband calls run at 16 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VadRate {
    /// 8 kHz: windows of 256 new samples after 32 of context.
    Narrowband,
    /// 16 kHz: windows of 512 new samples after 64 of context.
    Wideband,
}

impl VadRate {
    /// Both rates, in the order a batcher serves them.
    pub const ALL: [VadRate; 2] = [VadRate::Narrowband, VadRate::Wideband];

    /// The rate for audio at `hz`: 8 kHz audio runs narrowband, anything else is brought to
    /// 16 kHz and runs wideband.
    pub fn for_audio_rate(hz: u32) -> VadRate {
        if hz == 8_000 {
            VadRate::Narrowband
        } else {
            VadRate::Wideband
        }
    }

    /// Samples per second.
    pub const fn sample_rate(self) -> u32 {
        match self {
            VadRate::Narrowband => 8_000,
            VadRate::Wideband => SAMPLE_RATE,
        }
    }

    /// New samples per window (32 ms).
    pub const fn window_samples(self) -> usize {
        match self {
            VadRate::Narrowband => WINDOW_SAMPLES / 2,
            VadRate::Wideband => WINDOW_SAMPLES,
        }
    }

    /// Samples of the previous window the model sees before the new ones.
    pub const fn context_samples(self) -> usize {
        match self {
            VadRate::Narrowband => CONTEXT_SAMPLES / 2,
            VadRate::Wideband => CONTEXT_SAMPLES,
        }
    }

    /// Length of one model input row.
    pub const fn input_samples(self) -> usize {
        self.context_samples() + self.window_samples()
    }

    /// Position in per-rate arrays (`[narrowband, wideband]`).
    pub(crate) const fn index(self) -> usize {
        match self {
            VadRate::Narrowband => 0,
            VadRate::Wideband => 1,
        }
    }
}

/// Environment variable (and config key `media.onnxruntime`) naming the ONNX Runtime library.
pub const ENV_ONNXRUNTIME: &str = "PARLEY_MEDIA_ONNXRUNTIME";
/// Environment variable (and config key `media.vad_model`) naming the Silero VAD model.
pub const ENV_VAD_MODEL: &str = "PARLEY_MEDIA_VAD_MODEL";

/// Why voice activity detection could not be set up or run.
#[derive(Debug, Error)]
pub enum VadError {
    /// The ONNX Runtime shared library is not at the configured path.
    #[error(
        "ONNX Runtime library not found at {} (set {ENV_ONNXRUNTIME} or media.onnxruntime; \
         scripts/fetch_models.sh downloads it into .cache/models/)",
        path.display()
    )]
    RuntimeMissing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The Silero VAD model is not at the configured path.
    #[error(
        "Silero VAD model not found at {} (set {ENV_VAD_MODEL} or media.vad_model; \
         scripts/fetch_models.sh downloads it into .cache/models/)",
        path.display()
    )]
    ModelMissing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The library exists but ONNX Runtime could not be loaded from it.
    #[error("could not load ONNX Runtime from {} ({ENV_ONNXRUNTIME}): {reason}", path.display())]
    RuntimeLoad {
        /// The library path.
        path: PathBuf,
        /// What ONNX Runtime or the loader said.
        reason: String,
    },
    /// ONNX Runtime is loaded once per process; a second, different library was asked for.
    #[error(
        "ONNX Runtime is already loaded in this process from {}; cannot also load {}",
        loaded.display(),
        requested.display()
    )]
    RuntimeConflict {
        /// The library in use.
        loaded: PathBuf,
        /// The library asked for now.
        requested: PathBuf,
    },
    /// ONNX Runtime could not create a session from the model file.
    #[error("could not load the Silero VAD model {} ({ENV_VAD_MODEL}): {reason}", path.display())]
    ModelLoad {
        /// The model path.
        path: PathBuf,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// The model loaded but does not have Silero VAD's inputs and outputs.
    #[error("{} is not a Silero VAD v5 model ({ENV_VAD_MODEL}): {reason}", path.display())]
    WrongModel {
        /// The model path.
        path: PathBuf,
        /// Which input or output did not match.
        reason: String,
    },
    /// More streams in one batch than the model was prepared for.
    #[error("VAD batch of {got} windows exceeds the maximum batch of {max}")]
    BatchTooLarge {
        /// Windows asked for.
        got: usize,
        /// The model's maximum batch.
        max: usize,
    },
    /// The slices handed to one inference do not have the same length.
    #[error(
        "VAD batch slices disagree: {inputs} input samples ({row} per row), {states} states, \
         {probs} probabilities"
    )]
    BatchMismatch {
        /// Input samples.
        inputs: usize,
        /// Samples per input row at the batch's rate.
        row: usize,
        /// State rows.
        states: usize,
        /// Probability slots.
        probs: usize,
    },
    /// ONNX Runtime failed while running the model.
    #[error("VAD inference failed: {0}")]
    Inference(String),
    /// A segmenter setting is out of range.
    #[error("invalid VAD setting {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The WAV file given to [`analyze_wav`] could not be read.
    #[error(transparent)]
    Wav(#[from] crate::wav::WavError),
    /// The audio could not be resampled to 16 kHz.
    #[error("could not resample {from} Hz audio to 16 kHz: {reason}")]
    Resample {
        /// The file's sample rate.
        from: u32,
        /// What the resampler said.
        reason: String,
    },
}
