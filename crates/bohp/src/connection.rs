//! One plastic connection, shared by the single layer (2016) and the recurrent network (2018).
//!
//! Presynaptic neurons `i` reach postsynaptic neurons `j` through `w_ij + α_ij · H_ij`, and the
//! trace follows a rule of [`crate::rules`]:
//!
//! ```text
//! drive_j = Σ_i pre_i · (w_ij + α_ij · H_ij(t-1))
//! H_ij(t) = f(H_ij(t-1), pre_i, post_j, η)
//! ```
//!
//! single layer: `pre = x(t)`, `post = y(t)`, `η = γ` fixed; recurrent network:
//! `pre = y(t-1)`, `post = y(t)`, `η` learned. `α` is one per connection or one shared value.
//! The fixed part `Σ_i pre_i · w_ij` is each family's own (the single layer computes it for
//! all steps at once); this type holds the plastic part.
//!
//! # A plastic connection in your own burn model
//!
//! The connection is plain tensors: put its `α` in any module of yours as a parameter, build a
//! [`PlasticConnection`] per unroll, and burn's autodiff and optimizers train `α` with the rest.
//! Here a linear encoder feeds a plastic layer whose trace stores the first pattern of an
//! episode, and Adam trains both so that the last step, given half the pattern, recalls the
//! other half. The two episodes share that half, so a network without plasticity can do no
//! better than a mean squared error of 0.5 (the mean of the two answers); this one goes below:
//!
//! ```
//! use bohp::prelude::*;
//! use burn::module::{Module, Param};
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::{AdamConfig, GradientsParams};
//! use burn::tensor::{Tensor, TensorData};
//!
//! #[derive(Module, Debug)]
//! struct Recall {
//!     encoder: Linear,
//!     /// The plastic coefficients `α`, `[n, n]`.
//!     alpha: Param<Tensor<2>>,
//! }
//!
//! impl Recall {
//!     /// `inputs` `[steps, batch, n]`; returns the last step's output `[batch, n]`.
//!     fn forward(&self, inputs: Tensor<3>) -> Tensor<2> {
//!         let [steps, batch, n] = inputs.dims();
//!         let device = inputs.device();
//!         let rule = RuleSpec::new(Rule::Hebb);
//!         let plastic = PlasticConnection::new(self.alpha.val(), Rate::Fixed(0.5), rule);
//!         let mut h: Tensor<3> = Tensor::zeros([batch, n, n], &device);
//!         let mut y: Tensor<2> = Tensor::zeros([batch, n], &device);
//!         for x in inputs.chunk(steps, 0) {
//!             let x = self.encoder.forward(x.reshape([batch, n]));
//!             // y(t) reads H(t-1); then H(t) = f(H(t-1), pre = x(t), post = y(t)).
//!             let pre = x.clone().reshape([batch, 1, n]);
//!             y = (x.clone() + plastic.drive(pre, h.clone())).tanh();
//!             h = plastic.update(h, x.reshape([batch, n, 1]), y.clone().reshape([batch, 1, n]));
//!         }
//!         y
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = init_device(Backend::Ndarray, Precision::F32)?.autodiff();
//! let n = 4;
//! let mut model = Recall {
//!     encoder: LinearConfig::new(n, n).init(&device),
//!     alpha: Param::from_tensor(Tensor::zeros([n, n], &device)),
//! };
//! // Two episodes of three steps: a pattern, a blank, then a cue (half the pattern).
//! let episode = |p: [f32; 4]| [p, [0.0; 4], [p[0], p[1], 0.0, 0.0]];
//! let (a, b) = (episode([1.0, -1.0, 1.0, -1.0]), episode([1.0, -1.0, -1.0, 1.0]));
//! let steps: Vec<f32> = (0..3).flat_map(|t| a[t].into_iter().chain(b[t])).collect();
//! let inputs = Tensor::<3>::from_data(TensorData::new(steps, [3, 2, n]), &device);
//! let target = Tensor::<2>::from_data(
//!     TensorData::new(vec![1.0f32, -1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0], [2, n]),
//!     &device,
//! );
//! let mut optim = AdamConfig::new().init();
//! let mut losses = Vec::new();
//! for _ in 0..300 {
//!     let loss = (model.forward(inputs.clone()) - target.clone()).powi_scalar(2).mean();
//!     losses.push(loss.clone().into_scalar::<f32>());
//!     let grads = GradientsParams::from_grads(loss.backward(), &model);
//!     model = optim.step(0.05, model, grads);
//! }
//! assert!(losses[299] < 0.25, "{losses:?}");
//! # Ok(())
//! # }
//! ```

use burn::tensor::Tensor;

use crate::rules::{Rate, RuleSpec};

/// The plastic part of a connection for one episode's unroll: `α`, the rate and the rule.
#[derive(Debug, Clone)]
pub struct PlasticConnection {
    /// `α`, `[1, n_pre, n_post]`, or `[1, 1, 1]` when shared.
    pub alpha: Tensor<3>,
    /// The trace's rate `η` (γ in the single layer).
    pub rate: Rate,
    /// The trace's rule.
    pub rule: RuleSpec,
}

impl PlasticConnection {
    /// `α` given as `[n_pre, n_post]` (or `[1, 1]` when shared).
    pub fn new(alpha: Tensor<2>, rate: Rate, rule: RuleSpec) -> Self {
        PlasticConnection {
            alpha: alpha.unsqueeze::<3>(),
            rate,
            rule,
        }
    }

    /// The plastic drive `pre · (α ⊙ H)`.
    ///
    /// # Shapes
    /// - `pre`: `[batch, 1, n_pre]`
    /// - `h`: `[batch, n_pre, n_post]`
    /// - returned: `[batch, n_post]`
    pub fn drive(&self, pre: Tensor<3>, h: Tensor<3>) -> Tensor<2> {
        let [batch, _, n_post] = h.dims();
        pre.matmul(self.alpha.clone() * h).reshape([batch, n_post])
    }

    /// The trace after this step: `H(t) = f(H(t-1), pre, post, η)`.
    ///
    /// # Shapes
    /// - `h`: `[batch, n_pre, n_post]`
    /// - `pre`: `[batch, n_pre, 1]`
    /// - `post`: `[batch, 1, n_post]`
    pub fn update(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>) -> Tensor<3> {
        self.rule.tensor(h, pre, post, &self.rate)
    }
}
