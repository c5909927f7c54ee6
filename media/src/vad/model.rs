//! The Silero VAD ONNX session and its batched inference.
//!
//! The model (`silero_vad.onnx` from the `silero-vad` package) takes
//! `input` `[B, 576]` f32 (64 samples of context + 512 new samples at 16 kHz, scaled to ±1;
//! `[B, 288]`, 32 + 256, at 8 kHz), `state` `[2, B, 128]` f32 and `sr` (int64 scalar, 16000
//! or 8000, choosing the model's branch), and returns `output` `[B, 1]`
//! (speech probability) and `stateN` `[2, B, 128]`. The batch rows are independent, so one run
//! serves many calls as long as each call's state row is gathered in and scattered back out.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};

use super::{VadError, VadRate, STATE_HALF, STATE_LEN};

/// Default largest batch [`SileroModel::load`] prepares for. A worker with more windows ready
/// in one tick runs several batches ([`super::VadBatcher`] splits them).
pub const DEFAULT_MAX_BATCH: usize = 128;

/// ONNX Runtime is loaded once per process (and `ort` allows one environment per process):
/// the library it came from and the environment every session shares.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime from `lib` the first time; later calls must name the same file.
fn runtime(lib: &Path) -> Result<Environment, VadError> {
    if !lib.is_file() {
        return Err(VadError::RuntimeMissing {
            path: lib.to_path_buf(),
        });
    }
    let requested = lib.canonicalize().map_err(|e| VadError::RuntimeLoad {
        path: lib.to_path_buf(),
        reason: e.to_string(),
    })?;
    // A panic while holding this lock leaves nothing half-done worth refusing over.
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((loaded, env)) = slot.as_ref() {
        if *loaded == requested {
            return Ok(env.clone());
        }
        return Err(VadError::RuntimeConflict {
            loaded: loaded.clone(),
            requested,
        });
    }
    let load_err = |reason: String| VadError::RuntimeLoad {
        path: requested.clone(),
        reason,
    };
    let env = ort::init_from(&requested)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("parley-vad")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    *slot = Some((requested, env.clone()));
    Ok(env)
}

/// A loaded Silero VAD model, ready for batched inference.
///
/// Not `Sync`: one per media worker thread. Inference runs on the calling thread only
/// (ONNX Runtime intra-op and inter-op threads are both 1: the media workers are the
/// parallelism).
pub struct SileroModel {
    session: Session,
    /// `[2, max_batch, 128]` staging area for the state input, reused by every run.
    state_in: Vec<f32>,
    /// The `sr` input for each rate, created once: `[narrowband, wideband]`.
    sr: [Tensor<i64>; 2],
    /// Where the model wants `input`, `state` and `sr` among its inputs.
    order: InputOrder,
    max_batch: usize,
}

impl std::fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroModel")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl SileroModel {
    /// Loads ONNX Runtime from `onnxruntime_lib` (once per process) and the model from
    /// `model`, prepared for batches of up to [`DEFAULT_MAX_BATCH`].
    pub fn load(onnxruntime_lib: &Path, model: &Path) -> Result<Self, VadError> {
        Self::load_with_max_batch(onnxruntime_lib, model, DEFAULT_MAX_BATCH)
    }

    /// As [`SileroModel::load`], with the largest batch one [`SileroModel::infer_batch`] call
    /// accepts (at least 1).
    pub fn load_with_max_batch(
        onnxruntime_lib: &Path,
        model: &Path,
        max_batch: usize,
    ) -> Result<Self, VadError> {
        if max_batch == 0 {
            return Err(VadError::InvalidConfig {
                field: "max_batch",
                reason: "must be at least 1".into(),
            });
        }
        // Check the model first: a missing model should not need a loadable runtime to report.
        if !model.is_file() {
            return Err(VadError::ModelMissing {
                path: model.to_path_buf(),
            });
        }
        let env = runtime(onnxruntime_lib)?;
        let model_err = |reason: String| VadError::ModelLoad {
            path: model.to_path_buf(),
            reason,
        };
        let session = Session::builder(&env)
            .map_err(|e| model_err(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| model_err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| model_err(e.to_string()))?
            .with_parallel_execution(false)
            .map_err(|e| model_err(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| model_err(e.to_string()))?;
        let order = check_signature(&session, model)?;
        let sr_tensor = |rate: VadRate| {
            Tensor::from_array(((), vec![i64::from(rate.sample_rate())]))
                .map_err(|e| model_err(e.to_string()))
        };
        let sr = [
            sr_tensor(VadRate::Narrowband)?,
            sr_tensor(VadRate::Wideband)?,
        ];
        Ok(SileroModel {
            session,
            state_in: vec![0.0; STATE_LEN * max_batch],
            sr,
            order,
            max_batch,
        })
    }

    /// Largest batch [`SileroModel::infer_batch`] accepts.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Runs the model once over a batch of windows from different streams, all at `rate`.
    ///
    /// `inputs` holds the rows one after another, each [`VadRate::input_samples`] long:
    /// row `i` is stream `i`'s window (context then new samples, scaled to ±1);
    /// `states[i]` its recurrent state (`[h; c]`, 2 × 128), replaced by the new state;
    /// `probs[i]` receives its speech probability. There must be as many rows, states and
    /// probabilities, at most [`SileroModel::max_batch`]; an empty batch does nothing.
    ///
    /// The input rows are handed to ONNX Runtime in place (no copy); the states are gathered
    /// into a preallocated `[2, B, 128]` buffer and scattered back. What still allocates, per
    /// call, is below this API: `ort` makes 6 heap allocations (input views, output handles),
    /// and ONNX Runtime 1.22.1's executor about 340 at batch 1 and 1,000 at batch 128 (its
    /// per-run frames and the model's `If` subgraph), measured by counting `malloc` calls
    /// (benches/vad.rs counts the Rust side).
    pub fn infer_batch(
        &mut self,
        rate: VadRate,
        inputs: &[f32],
        states: &mut [[f32; STATE_LEN]],
        probs: &mut [f32],
    ) -> Result<(), VadError> {
        let row = rate.input_samples();
        let batch = inputs.len() / row;
        if !inputs.len().is_multiple_of(row) || states.len() != batch || probs.len() != batch {
            return Err(VadError::BatchMismatch {
                inputs: inputs.len(),
                row,
                states: states.len(),
                probs: probs.len(),
            });
        }
        if batch > self.max_batch {
            return Err(VadError::BatchTooLarge {
                got: batch,
                max: self.max_batch,
            });
        }
        if batch == 0 {
            return Ok(());
        }

        // Gather: state row b = [h_b; c_b] goes to [0, b, :] and [1, b, :].
        let (h_in, rest) = self.state_in.split_at_mut(batch * STATE_HALF);
        let c_in = &mut rest[..batch * STATE_HALF];
        for (b, st) in states.iter().enumerate() {
            h_in[b * STATE_HALF..(b + 1) * STATE_HALF].copy_from_slice(&st[..STATE_HALF]);
            c_in[b * STATE_HALF..(b + 1) * STATE_HALF].copy_from_slice(&st[STATE_HALF..]);
        }

        let infer_err = |e: ort::Error| VadError::Inference(e.to_string());
        let input = TensorRef::from_array_view(([batch, row], inputs)).map_err(infer_err)?;
        let state = TensorRef::from_array_view((
            [2, batch, STATE_HALF],
            &self.state_in[..batch * STATE_LEN],
        ))
        .map_err(infer_err)?;
        // Positional inputs (no name lookup, no allocation), in the model's order.
        let mut slots: [Option<SessionInputValue<'_>>; 3] = [None, None, None];
        slots[self.order.input] = Some(input.into());
        slots[self.order.state] = Some(state.into());
        slots[self.order.sr] = Some((&self.sr[rate.index()]).into());
        let outputs = self
            .session
            .run(slots.map(|s| s.expect("check_signature found three distinct inputs")))
            .map_err(infer_err)?;

        let (_, p) = outputs[0].try_extract_tensor::<f32>().map_err(infer_err)?;
        let (_, st) = outputs[1].try_extract_tensor::<f32>().map_err(infer_err)?;
        if p.len() != batch || st.len() != batch * STATE_LEN {
            return Err(VadError::Inference(format!(
                "model returned {} probabilities and {} state values for a batch of {batch}",
                p.len(),
                st.len()
            )));
        }
        probs.copy_from_slice(p);
        // Scatter the new state back to each stream.
        let (h_out, c_out) = st.split_at(batch * STATE_HALF);
        for (b, dst) in states.iter_mut().enumerate() {
            dst[..STATE_HALF].copy_from_slice(&h_out[b * STATE_HALF..(b + 1) * STATE_HALF]);
            dst[STATE_HALF..].copy_from_slice(&c_out[b * STATE_HALF..(b + 1) * STATE_HALF]);
        }
        Ok(())
    }
}

/// Positions of the model's inputs.
#[derive(Debug, Clone, Copy)]
struct InputOrder {
    input: usize,
    state: usize,
    sr: usize,
}

/// Refuses a model whose inputs and outputs are not Silero VAD v5's, naming what differs;
/// returns where each input goes.
fn check_signature(session: &Session, path: &Path) -> Result<InputOrder, VadError> {
    let names = |outlets: &[ort::value::Outlet]| -> Vec<String> {
        outlets.iter().map(|o| o.name().to_string()).collect()
    };
    let inputs = names(session.inputs());
    let outputs = names(session.outputs());
    let wrong = |reason: String| VadError::WrongModel {
        path: path.to_path_buf(),
        reason,
    };
    let position = |name: &str| inputs.iter().position(|n| n == name);
    let order = match (position("input"), position("state"), position("sr")) {
        (Some(input), Some(state), Some(sr)) if inputs.len() == 3 => {
            InputOrder { input, state, sr }
        }
        _ => {
            return Err(wrong(format!(
                "inputs are {inputs:?}, expected \"input\", \"state\" and \"sr\""
            )))
        }
    };
    if outputs.len() < 2 || outputs[0] != "output" || outputs[1] != "stateN" {
        return Err(wrong(format!(
            "outputs are {outputs:?}, expected [\"output\", \"stateN\"]"
        )));
    }
    Ok(order)
}
