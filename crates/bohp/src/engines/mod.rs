//! Host gradient engines: hand-derived gradients computed on the CPU, built on the rule
//! library ([`crate::rules`]), each checked against burn autodiff, an independent recursion and
//! finite differences by `bohp-gradcheck`.
//!
//! - [`analytic`]: the single layer's forward-mode recursion (exact gradients in f64), and
//!   [`analytic::Analytic`], the [`GradientEngine`] that trains with it
//!   (`train.engine = "analytic"`).
//! - [`layer_fused`]: the single layer's backpropagation through time in the model's
//!   precision, split over the batch across threads (`train.engine = "fused"`), the fast path.
//! - [`fused`]: backpropagation through time for the recurrent network, with checkpointed
//!   traces (`train.engine = "fused"`).

pub mod analytic;
pub mod fused;
pub mod layer_fused;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::single::network::PlasticNet;
use crate::single::tasks::{EpisodeBatch, Measures, Task};

/// Where a run's gradients come from (`train.engine`, `--engine`), in every model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Engine {
    /// burn autodiff: backpropagation through the unrolled episode, on any backend (the
    /// single layer's default; the LSTM's only engine).
    #[default]
    Autodiff,
    /// The single layer's hand-derived forward-mode recursion, on the host
    /// (module `engines::analytic`).
    Analytic,
    /// Hand-written backpropagation through time on the host: the single layer's
    /// (`engines::layer_fused`), the recurrent networks' (`engines::fused`, the recurrent
    /// default) and the RL networks' (`rl::fused`).
    Fused,
}

impl Engine {
    /// The name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Autodiff => "autodiff",
            Engine::Analytic => "analytic",
            Engine::Fused => "fused",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a training step's loss and gradients come from.
pub trait GradientEngine: Send {
    /// A short name for logs and errors (`autodiff`, `analytic`).
    fn name(&self) -> &'static str;

    /// The measures of `batch` under `model` and the gradients of its loss, keyed by parameter
    /// id, as plain (non-autodiff) tensors like those burn's backward pass yields. `device` is
    /// the model's autodiff device. Parameters that are not trained get no gradient.
    ///
    /// The default serves [`GradientEngine::on_host`] engines: their host gradients, as tensors.
    fn gradients(
        &mut self,
        model: &PlasticNet,
        _task: &Task,
        batch: &EpisodeBatch,
        device: &Device,
    ) -> (Measures, GradientsParams) {
        let values = model.parameter_values();
        let named: Vec<(&'static str, &[f64])> =
            values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let (measures, grads) = self
            .host_gradients(model, &named, batch)
            .unwrap_or_else(|| panic!("the {} engine gives no host gradients", self.name()));
        (measures, model.gradients_params(&grads, device))
    }

    /// Whether the engine computes on the host and implements [`GradientEngine::host_gradients`]:
    /// the trainer then keeps the parameters and Adam on the host too.
    fn on_host(&self) -> bool {
        false
    }

    /// [`GradientEngine::gradients`] with the measures (loss, error, error_code) as a `[3]`
    /// tensor on the device, for the caller to read when it chooses (every few updates on a
    /// GPU). The default uploads the host measures; autodiff leaves its own there.
    fn gradients_on_device(
        &mut self,
        model: &PlasticNet,
        task: &Task,
        batch: &EpisodeBatch,
        device: &Device,
    ) -> (Tensor<1>, GradientsParams) {
        let (m, grads) = self.gradients(model, task, batch, device);
        let values = vec![m.loss, m.error, m.error_code];
        let plain = device.clone().without_autodiff();
        (
            Tensor::from_data(TensorData::new(values, [3]), &plain),
            grads,
        )
    }

    /// For [`GradientEngine::on_host`] engines: the measures of `batch` and the loss gradient
    /// of each parameter group, for `model`'s shape with the parameter values `values` (named
    /// and ordered as [`PlasticNet::parameter_values`]).
    fn host_gradients(
        &mut self,
        _model: &PlasticNet,
        _values: &[(&'static str, &[f64])],
        _batch: &EpisodeBatch,
    ) -> Option<(Measures, Vec<Vec<f64>>)> {
        None
    }
}
