//! Training with the analytic gradients: a [`GradientEngine`] for `bohp train --grad analytic`.

use bohp::network::PlasticNet;
use bohp::tasks::{EpisodeBatch, Measures, Task};
use bohp::train::GradientEngine;
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::analytic::{Variant, evaluate};
use crate::compare::{params_from_values, params_of};

/// Gradients from the forward-mode recursion of [`crate::analytic`], computed on the host in
/// f64 and handed to the optimizer as tensors in the model's precision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Analytic;

fn register<const D: usize>(grads: &mut GradientsParams, p: &Param<Tensor<D>>, values: Vec<f64>, device: &Device) {
    let shape = p.shape();
    grads.register::<D>(p.id, Tensor::from_data(TensorData::new(values, shape), device));
}

impl GradientEngine for Analytic {
    fn name(&self) -> &'static str {
        "analytic"
    }

    fn on_host(&self) -> bool {
        true
    }

    fn host_gradients(
        &mut self,
        model: &PlasticNet,
        values: &[(&'static str, Vec<f64>)],
        batch: &EpisodeBatch,
    ) -> Option<(Measures, Vec<Vec<f64>>)> {
        let eval = evaluate(&params_from_values(model, values), batch, Variant::Correct, false);
        let groups = eval.grads.groups();
        let grads = values
            .iter()
            .map(|(name, v)| {
                groups
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| vec![0.0; v.len()], |(_, g)| g.to_vec())
            })
            .collect();
        Some((eval.measures, grads))
    }

    fn gradients(
        &mut self,
        model: &PlasticNet,
        _task: &Task,
        batch: &EpisodeBatch,
        device: &Device,
    ) -> (Measures, GradientsParams) {
        let eval = evaluate(&params_of(model), batch, Variant::Correct, false);
        let g = eval.grads;
        let device = &device.clone().without_autodiff();
        let mut grads = GradientsParams::new();
        register(&mut grads, &model.plastic.w, g.w, device);
        if model.plastic.plastic {
            register(&mut grads, &model.plastic.alpha, g.alpha, device);
        }
        register(&mut grads, &model.plastic.b, g.b, device);
        if let (Some(readout), Some(v), Some(c)) = (&model.readout, g.readout_v, g.readout_c) {
            register(&mut grads, &readout.v, v, device);
            register(&mut grads, &readout.c, c, device);
        }
        (eval.measures, grads)
    }
}
