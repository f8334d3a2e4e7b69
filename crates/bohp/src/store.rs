//! The parameter store under every family's trainer: one place for what an update does to the
//! parameters once the gradients are known.
//!
//! - [`HostParams`]: parameter groups and a host optimizer ([`HostOptimizer`]: Adam or the
//!   original procedure) for the host engines and for any run whose schedule burn's optimizer
//!   cannot run (the original procedure, global clipping). Its [`HostParams::step`] clips the
//!   gradients as `[train]` says, steps the optimizer, clamps the groups kept non-negative and
//!   rounds to the model's precision, so that a resumed run continues from the very values the
//!   model stores; [`HostParams::non_finite`] is the finite check; [`HostParams::optimizer`]
//!   and [`HostParams::restore`] are the checkpoint's snapshot and exact resume.
//! - [`ModuleStore`]: the optimizer of an autodiff module, with its checkpoint snapshot and
//!   exact resume: burn's Adam as `[train]` sets it ([`burn_optimizer`]: βs, ε, per-tensor
//!   clipping), or, for what burn's optimizer cannot run (the original procedure, global
//!   clipping), the module's parameters mirrored in a [`HostParams`] ([`gradient_values`] and
//!   [`with_values`] carry gradients and values between the module and the host). Every family
//!   thus trains with every optimizer on every engine.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Tensor, TensorData};

use crate::device::Precision;
use crate::error::{Error, Result};
use crate::host_optim::{ADAM_EPSILON, HostOptimizer};
use crate::learner::parameter_values;
use crate::run::{Checkpoint, optimizer_bytes};
use crate::schema::{ClipScope, TrainConfig, TrainFamily};

/// burn's Adam for an autodiff run of `train`: its βs, ε = [`ADAM_EPSILON`], and
/// per-tensor norm clipping when `train.clip_grad_norm` applies per tensor. (Global clipping
/// and the original procedure run on the host: [`TrainConfig::needs_host_optimizer`].)
pub fn burn_optimizer<F: TrainFamily>(train: &TrainConfig<F>) -> ModuleOptimizer {
    let clipping = match train.clip() {
        Some((ClipScope::PerTensor, max)) => Some(GradientClippingConfig::Norm(max as f32)),
        _ => None,
    };
    AdamConfig::new()
        .with_beta_1(train.adam_beta1 as f32)
        .with_beta_2(train.adam_beta2 as f32)
        .with_epsilon(ADAM_EPSILON)
        .with_grad_clipping(clipping)
        .init()
}

/// The optimizer of an autodiff module under a `[train]` schedule.
#[derive(Clone)]
pub enum ModuleStore {
    /// burn's Adam ([`burn_optimizer`]).
    Burn(ModuleOptimizer),
    /// The module's parameters, in its visiting order, and a host optimizer.
    Host(HostParams),
}

impl ModuleStore {
    /// burn's Adam, or the host store when `train` needs it
    /// ([`TrainConfig::needs_host_optimizer`]), holding `module`'s values.
    pub fn new<F: TrainFamily, M: Module>(
        train: &TrainConfig<F>,
        module: &M,
        precision: Precision,
    ) -> ModuleStore {
        if train.needs_host_optimizer() {
            ModuleStore::Host(HostParams::new(
                parameter_values(module),
                trainable_flags(module),
                train,
                precision,
            ))
        } else {
            ModuleStore::Burn(burn_optimizer(train))
        }
    }

    /// One update of `module` at learning rate `lr` from its gradients.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        match self {
            ModuleStore::Burn(optim) => optim.step(lr, module, grads),
            ModuleStore::Host(host) => {
                let mut grads = gradient_values(&module, &grads);
                host.step(lr, &mut grads);
                with_values(module, &host.values)
            }
        }
    }

    /// The checkpoint's optimizer files: burn's record (`optimizer.bpk`) or the host state
    /// (`host_optimizer.bin`).
    pub fn snapshot(&self, at: &Path) -> Result<(Option<Vec<u8>>, Option<HostOptimizer>)> {
        Ok(match self {
            ModuleStore::Burn(optim) => (Some(optimizer_bytes(optim, at)?), None),
            ModuleStore::Host(host) => (None, Some(host.optimizer().clone())),
        })
    }

    /// A fresh store for `module` ([`ModuleStore::new`]) with `checkpoint`'s state: what a
    /// resumed trainer continues with, `module` being the checkpoint's model.
    pub fn resumed<F: TrainFamily, M: Module>(
        train: &TrainConfig<F>,
        module: &M,
        precision: Precision,
        checkpoint: &mut Checkpoint,
    ) -> Result<ModuleStore> {
        ModuleStore::new(train, module, precision).restore(checkpoint, module)
    }

    /// The state of `checkpoint`, for `module` as restored from the same checkpoint.
    pub fn restore<M: Module>(
        self,
        checkpoint: &mut Checkpoint,
        module: &M,
    ) -> Result<ModuleStore> {
        match self {
            ModuleStore::Burn(optim) => Ok(ModuleStore::Burn(checkpoint.restore_optimizer(optim)?)),
            ModuleStore::Host(mut host) => {
                let path = checkpoint.dir.join("host_optimizer.bin");
                let state = checkpoint.host_optimizer.take().ok_or_else(|| {
                    Error::artifact(
                        &path,
                        "missing: the run's optimizer runs on the host (train.optimizer = \"original\" or global clipping), but the checkpoint has no host optimizer state",
                    )
                })?;
                host.values = parameter_values(module);
                host.restore(state)
                    .map_err(|why| Error::artifact(&path, why))?;
                Ok(ModuleStore::Host(host))
            }
        }
    }
}

/// Each float parameter's gradient in `grads`, in `module`'s visiting order; zeros for a
/// parameter without one (not trained).
pub fn gradient_values<M: Module>(module: &M, grads: &GradientsParams) -> Vec<Vec<f64>> {
    struct Grads<'a>(&'a GradientsParams, Vec<Vec<f64>>);
    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = match self.0.get::<D>(param.id) {
                Some(g) => g.into_data().convert::<f64>().iter::<f64>().collect(),
                None => vec![0.0; param.val().shape().num_elements()],
            };
            self.1.push(values);
        }
    }
    let mut visitor = Grads(grads, Vec::new());
    module.visit(&mut visitor);
    visitor.1
}

/// Whether each float parameter of `module` is trained (tracks gradients), in visiting order.
pub(crate) fn trainable_flags<M: Module>(module: &M) -> Vec<bool> {
    struct Flags(Vec<bool>);
    impl ModuleVisitor for Flags {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.is_require_grad());
        }
    }
    let mut visitor = Flags(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

/// `module` with its float parameters set to `values` (in visiting order), each keeping its
/// id, shape, device and gradient tracking.
///
/// # Panics
///
/// Panics if the number of groups or a group's length does not match the module's.
pub fn with_values<M: Module>(module: M, values: &[Vec<f64>]) -> M {
    struct Set<'a>(&'a [Vec<f64>], usize);
    impl ModuleMapper for Set<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let values = &self.0[self.1];
            self.1 += 1;
            param.map(|t| {
                let shape = t.shape();
                assert_eq!(shape.num_elements(), values.len(), "parameter size");
                let require_grad = t.is_require_grad();
                Tensor::from_data(TensorData::new(values.clone(), shape), &t.device())
                    .set_require_grad(require_grad)
            })
        }
    }
    let mut mapper = Set(values, 0);
    let module = module.map(&mut mapper);
    assert_eq!(mapper.1, values.len(), "one group per parameter");
    module
}

/// Parameter groups and their optimizer on the host.
#[derive(Debug, Clone)]
pub struct HostParams {
    /// The groups' values, always rounded to the model's precision.
    pub values: Vec<Vec<f64>>,
    /// Which groups are trained (the others keep their values).
    pub trainable: Vec<bool>,
    /// Groups clamped to `≥ 0` after every update (α under `plasticity = "nonnegative"`).
    nonnegative: Vec<bool>,
    optim: HostOptimizer,
    clip: Option<(ClipScope, f64)>,
    precision: Precision,
}

impl HostParams {
    /// `values` (rounded to `precision`) with a fresh optimizer as `train` configures it.
    pub fn new<F: TrainFamily>(
        values: Vec<Vec<f64>>,
        trainable: Vec<bool>,
        train: &TrainConfig<F>,
        precision: Precision,
    ) -> HostParams {
        let sizes: Vec<usize> = values.iter().map(Vec::len).collect();
        HostParams {
            nonnegative: vec![false; values.len()],
            values: round(values, precision),
            trainable,
            optim: train.host_optimizer(&sizes),
            clip: train.clip(),
            precision,
        }
    }

    /// Keeps the groups marked `true` non-negative after every update.
    pub(crate) fn with_nonnegative(mut self, nonnegative: Vec<bool>) -> HostParams {
        assert_eq!(nonnegative.len(), self.values.len(), "one flag per group");
        self.nonnegative = nonnegative;
        self
    }

    /// Each group's length.
    pub fn sizes(&self) -> Vec<usize> {
        self.values.iter().map(Vec::len).collect()
    }

    /// One update at learning rate `lr` from `grads` (one per group): clipping, the optimizer,
    /// the non-negative clamp and rounding to the model's precision.
    pub fn step(&mut self, lr: f64, grads: &mut [Vec<f64>]) {
        match self.clip {
            Some((ClipScope::Global, max)) => clip_global(grads, &self.trainable, max),
            Some((ClipScope::PerTensor, max)) => {
                clip_per_tensor(grads, &self.trainable, max, self.precision)
            }
            None => {}
        }
        self.optim
            .step(lr, &mut self.values, grads, &self.trainable);
        for (group, clamp) in self.values.iter_mut().zip(&self.nonnegative) {
            if *clamp {
                group.iter_mut().for_each(|x| *x = x.max(0.0));
            }
        }
        round_in_place(&mut self.values, self.precision);
    }

    /// The index of the first group holding a value that is not finite.
    pub fn non_finite(&self) -> Option<usize> {
        self.values
            .iter()
            .position(|v| v.iter().any(|x| !x.is_finite()))
    }

    /// The optimizer's state, for a checkpoint.
    pub fn optimizer(&self) -> &HostOptimizer {
        &self.optim
    }

    /// Restores a checkpoint's optimizer state; an error says why it cannot be this run's (not
    /// the configured optimizer, or not the network's sizes).
    pub fn restore(&mut self, optim: HostOptimizer) -> std::result::Result<(), String> {
        if !optim.same_kind(&self.optim) {
            return Err(format!(
                "holds the state of another optimizer than the configured one ({})",
                self.optim.name()
            ));
        }
        if !optim.fits(&self.sizes()) {
            return Err("the host optimizer state does not fit the network".into());
        }
        self.optim = optim;
        Ok(())
    }
}

/// `values` as the model stores them in `precision`.
pub fn round(mut values: Vec<Vec<f64>>, precision: Precision) -> Vec<Vec<f64>> {
    round_in_place(&mut values, precision);
    values
}

/// Rounds `values` in place to what the model stores in `precision`.
fn round_in_place(values: &mut [Vec<f64>], precision: Precision) {
    if precision == Precision::F32 {
        for group in values {
            group.iter_mut().for_each(|x| *x = f64::from(*x as f32));
        }
    }
}

/// Rescales the trainable groups of `grads` together to a Euclidean norm of at most `max`.
pub(crate) fn clip_global(grads: &mut [Vec<f64>], trainable: &[bool], max: f64) {
    let norm = grads
        .iter()
        .zip(trainable)
        .filter(|(_, t)| **t)
        .flat_map(|(g, _)| g.iter())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    if norm > max {
        let scale = max / norm;
        for g in grads.iter_mut() {
            g.iter_mut().for_each(|x| *x *= scale);
        }
    }
}

/// burn's per-tensor gradient-norm clipping (`GradientClipping::Norm`) of the trained groups:
/// each rescaled by `min(1, max / (‖g‖ + tiny))`, `tiny` the precision's smallest normal.
pub(crate) fn clip_per_tensor(
    grads: &mut [Vec<f64>],
    trainable: &[bool],
    max: f64,
    dtype: Precision,
) {
    let tiny = match dtype {
        Precision::F32 => f64::from(f32::MIN_POSITIVE),
        Precision::F64 => f64::MIN_POSITIVE,
    };
    for (g, on) in grads.iter_mut().zip(trainable) {
        if !on {
            continue;
        }
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let coef = (max / (norm + tiny)).min(1.0);
        for x in g.iter_mut() {
            *x *= coef;
        }
    }
}
