//! The memory a recurrent config needs, estimated before anything is allocated, and the check
//! that refuses a config that cannot fit, naming the field to shrink.

use super::config::{AlphaShape, RecurrentConfig, RecurrentModelKind};
use super::tasks::RecurrentTaskKind;
use crate::device::Precision;
use crate::engines::fused::TRACE_BUDGET;
use crate::error::{Error, Result};
use crate::memory::Estimate;
use crate::rules::Modulation;
use crate::schema::{Engine, Plasticity};

impl RecurrentConfig {
    /// The least memory this config needs to train ([`crate::memory`]): the parameters with
    /// Adam's two moments (on the host in f64 for the fused engine), and the traces `[N, N]`
    /// kept for backpropagation: one per step and episode for autodiff (one per episode with
    /// gradient checkpointing), the fused engine's kept or checkpointed traces; for the LSTM,
    /// its gate activations per step and episode.
    pub(crate) fn memory_estimate(&self) -> Estimate {
        let n = self.neurons() as f64;
        let size_field = if self.model.neurons.is_some() {
            "model.neurons"
        } else {
            "task.size"
        };
        let float = match self.dtype {
            Precision::F32 => 4.0,
            Precision::F64 => 8.0,
        };
        let (steps, batch) = (self.steps() as f64, self.train.batch as f64);
        let mut e = Estimate::default();
        let shared = self.model.alpha == AlphaShape::Shared;
        let plastic = self.model.plasticity != Plasticity::None;
        // In f64: absurd sizes must not overflow (PlasticRnnConfig::num_params in usize).
        let plastic_params = match (plastic, shared) {
            (false, _) => n * n,
            (true, false) => 2.0 * n * n + 1.0,
            (true, true) => n * n + 2.0,
        } + if plastic && self.model.modulation != Modulation::None {
            n + 1.0
        } else {
            0.0
        };
        if self.model.kind == RecurrentModelKind::Lstm {
            let inputs = self.size() as f64;
            let h = match self.model.lstm_hidden {
                Some(h) => h as f64,
                // The smallest h with 4h(n+h+2) + hn + n >= the plastic network's parameters
                // (LstmNet::hidden_for, solved in closed form).
                None => {
                    let target = 2.0 * n * n + 1.0;
                    let b = 5.0 * inputs + 8.0;
                    ((-b + (b * b + 16.0 * (target - inputs).max(0.0)).sqrt()) / 8.0)
                        .ceil()
                        .max(1.0)
                }
            };
            let params = 4.0 * h * (inputs + h + 2.0) + h * n + n;
            let field = if self.model.lstm_hidden.is_some() {
                "model.lstm_hidden"
            } else {
                size_field
            };
            e.add(field, "parameters and Adam state", params * 3.0 * float);
            e.add(
                "train.batch",
                "gate activations per step and episode",
                steps * batch * 4.0 * h * float,
            );
            return e;
        }
        let params = plastic_params;
        // Retroactive modulation keeps an eligibility trace beside H.
        let traces_per_step = if plastic && self.model.modulation == Modulation::Retroactive {
            2.0
        } else {
            1.0
        };
        let trace = traces_per_step * batch * n * n * float;
        match self.train.engine {
            Engine::Fused => {
                e.add(
                    size_field,
                    "parameters and Adam state (f64, host)",
                    params * 3.0 * 8.0,
                );
                if plastic {
                    let all = steps * trace;
                    let kept =
                        if self.train.trace_checkpoint_every == 0 && all <= TRACE_BUDGET as f64 {
                            all
                        } else {
                            let k = match self.train.trace_checkpoint_every {
                                0 => (steps.sqrt()).ceil().max(1.0),
                                k => k as f64,
                            };
                            ((steps / k).ceil() + k) * trace
                        };
                    e.add("train.batch", "kept or checkpointed traces", kept);
                }
            }
            // (Analytic is refused by `validate`; estimated as autodiff.)
            Engine::Autodiff | Engine::Analytic => {
                e.add(
                    size_field,
                    "parameters and Adam state",
                    params * 3.0 * float,
                );
                if plastic {
                    let kept = if self.train.gradient_checkpointing {
                        trace
                    } else {
                        steps * trace
                    };
                    e.add("train.batch", "traces kept for backpropagation", kept);
                }
            }
        }
        e
    }

    pub(super) fn check_memory(
        &self,
        bad: &dyn Fn(&str, String, &str) -> Error,
        available: f64,
    ) -> Result<()> {
        let with = |f: &dyn Fn(&mut RecurrentConfig)| {
            let mut c = self.clone();
            f(&mut c);
            c.memory_estimate()
        };
        let candidates = [
            ("model.neurons", with(&|c| c.model.neurons = None)),
            (
                "task.size",
                with(&|c| {
                    if c.task.kind == RecurrentTaskKind::Memorisation {
                        c.task.size = None;
                    }
                    c.model.neurons = None;
                }),
            ),
            ("model.lstm_hidden", with(&|c| c.model.lstm_hidden = None)),
            ("train.batch", with(&|c| c.train.batch = 1)),
        ];
        crate::memory::check_sizes(&self.memory_estimate(), &candidates, available).map_err(
            |(field, expected)| {
                let value = match field {
                    "model.neurons" => self.neurons().to_string(),
                    "task.size" => self.size().to_string(),
                    "model.lstm_hidden" => self
                        .model
                        .lstm_hidden
                        .map_or_else(|| "(automatic)".into(), |h| h.to_string()),
                    _ => self.train.batch.to_string(),
                };
                bad(field, value, &expected)
            },
        )
    }
}
