//! One batched inference per media tick and rate over every stream with a window ready.

use super::model::SileroModel;
use super::stream::{VadStream, WindowOutcome};
use super::{VadError, VadRate, INPUT_SAMPLES, STATE_LEN};

/// Runs the VAD for all the calls of one media worker.
///
/// The worker calls [`VadBatcher::run`] once per 20 ms tick with its calls; every stream that
/// has a 32 ms window ready goes into one model run per rate (narrowband and wideband calls
/// cannot share a batch; more runs if more than the model's maximum batch are ready), and
/// each gets its probability and segmenter event back through a callback. The gather buffers
/// are allocated once, for the model's maximum batch at the longer (16 kHz) row.
#[derive(Debug)]
pub struct VadBatcher {
    model: SileroModel,
    /// Input rows one after another, each the batch rate's row length.
    inputs: Vec<f32>,
    states: Vec<[f32; STATE_LEN]>,
    probs: Vec<f32>,
    /// Index in the caller's slice of each batch row.
    members: Vec<usize>,
}

impl VadBatcher {
    /// A batcher running `model`.
    pub fn new(model: SileroModel) -> Self {
        let max = model.max_batch();
        VadBatcher {
            model,
            inputs: Vec::with_capacity(max * INPUT_SAMPLES),
            states: Vec::with_capacity(max),
            probs: Vec::with_capacity(max),
            members: Vec::with_capacity(max),
        }
    }

    /// The model, for direct use.
    pub fn model_mut(&mut self) -> &mut SileroModel {
        &mut self.model
    }

    /// Gives the model back.
    pub fn into_model(self) -> SileroModel {
        self.model
    }

    /// Runs the model over every stream of `items` that has a window ready and hands each
    /// its result: `stream` picks an item's [`VadStream`], `on_window(index, item, outcome)`
    /// receives the outcome of one window of the item at `index`.
    ///
    /// Streams are batched by rate. Each stream contributes one window per model run. A
    /// stream with more than one window ready (audio arrived in a burst) is served again in a
    /// further round, so nothing is left pending that could have been processed. Returns the
    /// number of windows processed.
    ///
    /// On an inference error the windows of that batch stay pending (they are retried on the
    /// next call) and the error is returned; windows already processed in this call have
    /// been handed out.
    pub fn run<T>(
        &mut self,
        items: &mut [T],
        mut stream: impl FnMut(&mut T) -> &mut VadStream,
        mut on_window: impl FnMut(usize, &mut T, WindowOutcome),
    ) -> Result<usize, VadError> {
        let mut total = 0;
        for rate in VadRate::ALL {
            total += self.run_rate(rate, items, &mut stream, &mut on_window)?;
        }
        Ok(total)
    }

    /// [`VadBatcher::run`] for the streams at one rate.
    fn run_rate<T>(
        &mut self,
        rate: VadRate,
        items: &mut [T],
        stream: &mut impl FnMut(&mut T) -> &mut VadStream,
        on_window: &mut impl FnMut(usize, &mut T, WindowOutcome),
    ) -> Result<usize, VadError> {
        let max = self.model.max_batch();
        let mut total = 0;
        loop {
            let mut this_round = 0;
            let mut next = 0;
            while next < items.len() {
                self.inputs.clear();
                self.states.clear();
                self.members.clear();
                while next < items.len() && self.members.len() < max {
                    let s = stream(&mut items[next]);
                    if s.rate() == rate {
                        if let Some(w) = s.window() {
                            self.inputs.extend_from_slice(w);
                            self.states.push(*s.state());
                            self.members.push(next);
                        }
                    }
                    next += 1;
                }
                let n = self.members.len();
                if n == 0 {
                    break;
                }
                self.probs.clear();
                self.probs.resize(n, 0.0);
                self.model
                    .infer_batch(rate, &self.inputs, &mut self.states, &mut self.probs)?;
                for (k, &idx) in self.members.iter().enumerate() {
                    let item = &mut items[idx];
                    if let Some(out) = stream(item).complete_window(self.probs[k], &self.states[k])
                    {
                        on_window(idx, item, out);
                    }
                }
                this_round += n;
            }
            if this_round == 0 {
                return Ok(total);
            }
            total += this_round;
        }
    }
}
