//! The BOHP plastic layer (Miconi 2016, Eq. 1-2 with the timing the reference code uses).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::connection::PlasticConnection;
use crate::rules::{Rate, RuleSpec};

/// Configuration of a [`PlasticLayer`].
#[derive(Config, Debug)]
pub struct PlasticLayerConfig {
    /// Number of inputs `n_in`.
    pub n_in: usize,
    /// Number of outputs `n_out`.
    pub n_out: usize,
    /// Trace rate γ of Eq. 1, in (0, 1]: the weight of the newest product `x·y`.
    /// The original code's `ALPHATRACE` is `1 - γ`.
    pub gamma: f64,
    /// Standard deviation of the Gaussian initial `w`, `α` and `b`.
    #[config(default = 0.1)]
    pub init_std: f64,
    /// When false, `α` is fixed at zero and not trained: the same network without plasticity.
    #[config(default = true)]
    pub plastic: bool,
    /// When true, `α` starts clipped to `α ≥ 0` (training keeps it there; see
    /// [`PlasticLayer::clip_alpha`]).
    #[config(default = false)]
    pub nonnegative_alpha: bool,
    /// The trace's rule (default: the decaying Hebbian trace of Eq. 1), with rate γ.
    #[config(default = "RuleSpec::default()")]
    pub rule: RuleSpec,
}

/// A fully connected tanh layer whose connections are `w + α ⊙ H`, where the Hebbian trace
/// `H` follows the layer's own activity within an episode.
///
/// For input `x(t)` (`n_in`) and output `y(t)` (`n_out`), per connection `k → j`:
///
/// ```text
/// raw_j(t) = Σ_k ( w_kj + α_kj · H_kj(t-1) ) · x_k(t) + b_j
/// y_j(t)   = tanh(raw_j(t))
/// H_kj(t)  = (1 - γ) · H_kj(t-1) + γ · x_k(t) · y_j(t)        (Eq. 1: γ on the new product)
/// H(0)     = 0 at the start of every episode
/// ```
///
/// The trace update is the layer's rule ([`crate::rules`]; Eq. 1 is [`crate::rules::Hebb`]),
/// with `pre = x(t)`, `post = y(t)` and the rate γ, through the plastic connection code the
/// recurrent network shares ([`PlasticConnection`]). `y(t)` reads the trace *before* this
/// step's update. `w`, `α` and `b` are trained; `H` is
/// per-episode state held in [`HebbTrace`], outside the module. A batch is that many
/// independent episodes, each with its own trace.
#[derive(Module, Debug)]
pub struct PlasticLayer {
    /// Baseline (fixed) weights `w`, `[n_in, n_out]`.
    pub w: Param<Tensor<2>>,
    /// Plasticity coefficients `α`, `[n_in, n_out]`; any sign.
    pub alpha: Param<Tensor<2>>,
    /// Biases `b`, `[n_out]`.
    pub b: Param<Tensor<1>>,
    /// Trace rate γ (a constant, not trained).
    pub gamma: f64,
    /// Whether `α` is trained (false: `α = 0`, fixed — the non-plastic control).
    pub plastic: bool,
    /// Whether `α` is kept non-negative (the paper's §4.4 ablation).
    pub nonnegative_alpha: bool,
    /// The trace's rule.
    pub rule: RuleSpec,
}

/// The Hebbian traces of a batch of episodes: `H`, `[batch, n_in, n_out]`.
#[derive(Debug, Clone)]
pub struct HebbTrace {
    /// `H(t)`, `[batch, n_in, n_out]`.
    pub h: Tensor<3>,
}

/// `count` draws from `N(0, std²)`.
pub(crate) fn gaussian(rng: &mut impl Rng, count: usize, std: f64) -> Vec<f64> {
    (0..count)
        .map(|_| std * rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// A parameter from host values, in the device's default float dtype.
pub(crate) fn param<const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    let data = TensorData::new(values, shape);
    Param::from_tensor(Tensor::from_data(data, device))
}

impl PlasticLayerConfig {
    /// Initializes the layer with Gaussian `w`, `α`, `b` drawn from `rng` (or `α = 0`, frozen,
    /// when `plastic` is false).
    ///
    /// # Panics
    ///
    /// Panics if `n_in` or `n_out` is zero; user configs are validated before this.
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticLayer {
        assert!(
            self.n_in > 0 && self.n_out > 0,
            "plastic layer sizes must be positive"
        );
        let n = self.n_in * self.n_out;
        let w = gaussian(rng, n, self.init_std);
        let alpha = gaussian(rng, n, self.init_std);
        let b = gaussian(rng, self.n_out, self.init_std);
        let alpha = if self.plastic {
            let alpha = if self.nonnegative_alpha {
                alpha.into_iter().map(|a| a.max(0.0)).collect()
            } else {
                alpha
            };
            param(alpha, [self.n_in, self.n_out], device)
        } else {
            param(vec![0.0; n], [self.n_in, self.n_out], device).set_require_grad(false)
        };
        PlasticLayer {
            w: param(w, [self.n_in, self.n_out], device),
            alpha,
            b: param(b, [self.n_out], device),
            gamma: self.gamma,
            plastic: self.plastic,
            nonnegative_alpha: self.nonnegative_alpha,
            rule: self.rule,
        }
    }
}

impl PlasticLayer {
    /// Number of inputs.
    pub fn n_in(&self) -> usize {
        self.w.dims()[0]
    }

    /// Number of outputs.
    pub fn n_out(&self) -> usize {
        self.w.dims()[1]
    }

    /// Applies the `α ≥ 0` constraint, when the layer has it: `α ← max(α, 0)`, as a fresh
    /// trainable leaf. Called after every parameter update.
    pub fn clip_alpha(mut self) -> Self {
        if self.nonnegative_alpha {
            self.alpha = self.alpha.map(|a| {
                let require_grad = a.is_require_grad();
                a.clamp_min(0.0).detach().set_require_grad(require_grad)
            });
        }
        self
    }

    /// The zero trace that starts every episode.
    ///
    /// # Shapes
    /// - returned `h`: `[batch, n_in, n_out]`
    pub fn init_trace(&self, batch: usize, device: &Device) -> HebbTrace {
        HebbTrace {
            h: Tensor::zeros([batch, self.n_in(), self.n_out()], device),
        }
    }

    /// One time step: computes `y(t)` from `x(t)` and `H(t-1)`, and returns `y(t)` with the
    /// updated trace `H(t)` (see the type's documentation for the equations).
    ///
    /// # Shapes
    /// - `x`: `[batch, n_in]`
    /// - `trace.h`: `[batch, n_in, n_out]`
    /// - returned `y`: `[batch, n_out]`, returned trace `[batch, n_in, n_out]`
    pub fn step(&self, x: Tensor<2>, trace: HebbTrace) -> (Tensor<2>, HebbTrace) {
        let [batch, n_in] = x.dims();
        let n_out = self.n_out();
        let connection = self.connection(false);
        let x_row = x.clone().reshape([batch, 1, n_in]);
        let fixed = x.clone().matmul(self.w.val()) + self.b.val().unsqueeze::<2>(); // [batch, n_out]
        let y = (fixed + connection.drive(x_row, trace.h.clone())).tanh();
        let h = connection.update(
            trace.h,
            x.reshape([batch, n_in, 1]),
            y.clone().reshape([batch, 1, n_out]),
        );
        (y, HebbTrace { h })
    }

    /// The plastic part of the layer's connections, for one unroll (`folded`: the caller
    /// multiplies the inputs by γ before they reach the trace update).
    pub fn connection(&self, folded: bool) -> PlasticConnection {
        let rate = if folded {
            Rate::Folded(self.gamma)
        } else {
            Rate::Fixed(self.gamma)
        };
        PlasticConnection::new(self.alpha.val(), rate, self.rule)
    }
}

impl PlasticLayer {
    /// A whole episode from the zero trace: the same computation as [`PlasticLayer::step`] at
    /// every step, arranged to record fewer operations for backpropagation. The fixed part
    /// `x(t)·w + b` of every step is one matrix product; γ is folded into the (constant)
    /// inputs of the trace update ([`Rate::Folded`]).
    ///
    /// # Shapes
    /// - `inputs`: `[steps, batch, n_in]`
    /// - returned outputs: `steps` tensors `[batch, n_out]`; returned trace `H(steps)`
    pub fn unroll(&self, inputs: Tensor<3>) -> (Vec<Tensor<2>>, HebbTrace) {
        let [steps, batch, n_in] = inputs.dims();
        let n_out = self.n_out();
        let device = inputs.device();
        let fixed = (inputs
            .clone()
            .reshape([steps * batch, n_in])
            .matmul(self.w.val())
            + self.b.val().unsqueeze::<2>())
        .reshape([steps, batch, n_out]);
        let fixed = fixed.chunk(steps, 0);
        let rows = inputs
            .clone()
            .reshape([steps, batch, 1, n_in])
            .chunk(steps, 0);
        let cols = inputs
            .mul_scalar(self.gamma)
            .reshape([steps, batch, n_in, 1])
            .chunk(steps, 0);
        let connection = self.connection(true);
        let mut h: Tensor<3> = Tensor::zeros([batch, n_in, n_out], &device);
        let mut ys = Vec::with_capacity(steps);
        for ((fixed, row), col) in fixed.into_iter().zip(rows).zip(cols) {
            let plastic = connection.drive(row.reshape([batch, 1, n_in]), h.clone());
            let y = (fixed.reshape([batch, n_out]) + plastic).tanh();
            h = connection.update(
                h,
                col.reshape([batch, n_in, 1]),
                y.clone().reshape([batch, 1, n_out]),
            );
            ys.push(y);
        }
        (ys, HebbTrace { h })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Backend, Precision, init_device};
    use rand::SeedableRng;

    #[test]
    fn unroll_equals_stepping() {
        let device = init_device(Backend::Ndarray, Precision::F64).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let layer = PlasticLayerConfig::new(5, 3, 0.3)
            .with_init_std(0.8)
            .init(&mut rng, &device);
        let (steps, batch) = (7, 4);
        let x = gaussian(&mut rng, steps * batch * 5, 1.0);
        let inputs = Tensor::<3>::from_data(TensorData::new(x, [steps, batch, 5]), &device);
        let (ys, trace) = layer.unroll(inputs.clone());
        let mut reference = layer.init_trace(batch, &device);
        for (t, x) in inputs.iter_dim(0).enumerate() {
            let (y, next) = layer.step(x.reshape([batch, 5]), reference);
            reference = next;
            let diff: f64 = (y - ys[t].clone()).abs().max().into_scalar::<f64>();
            assert!(diff < 1e-12, "step {t}: {diff}");
        }
        let diff: f64 = (reference.h - trace.h).abs().max().into_scalar::<f64>();
        assert!(diff < 1e-12, "trace: {diff}");
    }

    fn layer_2x1(device: &Device) -> PlasticLayer {
        // w = [0.5, -0.25], α = [1.0, 2.0], b = 0.1, γ = 0.5
        PlasticLayer {
            w: param(vec![0.5, -0.25], [2, 1], device),
            alpha: param(vec![1.0, 2.0], [2, 1], device),
            b: param(vec![0.1], [1], device),
            gamma: 0.5,
            plastic: true,
            nonnegative_alpha: false,
            rule: RuleSpec::default(),
        }
    }

    #[test]
    fn step_matches_hand_computed_values() {
        let device = init_device(Backend::Ndarray, Precision::F64).unwrap();
        let layer = layer_2x1(&device);
        let trace = layer.init_trace(1, &device);
        let x1 = Tensor::<2>::from_data(TensorData::new(vec![1.0, -1.0], [1, 2]), &device);
        let (y1, trace) = layer.step(x1, trace);
        // Step 1, H = 0: raw = 0.5·1 + (-0.25)·(-1) + 0.1 = 0.85, y1 = tanh(0.85)
        let y1_expected = 0.85f64.tanh();
        let y1v = y1.into_data().try_to_vec::<f64>().unwrap()[0];
        assert!((y1v - y1_expected).abs() < 1e-12);
        // H(1) = 0.5 · x ⊗ y1 = [0.5·y1, -0.5·y1]
        let h1 = trace.h.clone().into_data().try_to_vec::<f64>().unwrap();
        assert!((h1[0] - 0.5 * y1_expected).abs() < 1e-12);
        assert!((h1[1] + 0.5 * y1_expected).abs() < 1e-12);
        // Step 2, x = [1, 0]: raw = (0.5 + 1.0·H_0)·1 + 0.1
        let x2 = Tensor::<2>::from_data(TensorData::new(vec![1.0, 0.0], [1, 2]), &device);
        let (y2, trace) = layer.step(x2, trace);
        let y2_expected = (0.5 + 0.5 * y1_expected + 0.1).tanh();
        let y2v = y2.into_data().try_to_vec::<f64>().unwrap()[0];
        assert!((y2v - y2_expected).abs() < 1e-12);
        // H(2) = 0.5·H(1) + 0.5·x2 ⊗ y2 = [0.25·y1 + 0.5·y2, -0.25·y1]
        let h2 = trace.h.into_data().try_to_vec::<f64>().unwrap();
        assert!((h2[0] - (0.25 * y1_expected + 0.5 * y2_expected)).abs() < 1e-12);
        assert!((h2[1] + 0.25 * y1_expected).abs() < 1e-12);
    }

    #[test]
    fn batch_rows_are_independent_episodes() {
        let device = init_device(Backend::Ndarray, Precision::F64).unwrap();
        let layer = layer_2x1(&device);
        let xs = [[1.0, -1.0], [-0.5, 0.25]];
        // Run both rows together and each alone for two steps: the outputs must agree.
        let together = {
            let mut trace = layer.init_trace(2, &device);
            let mut out = Vec::new();
            for _ in 0..2 {
                let x = Tensor::<2>::from_data(
                    TensorData::new(vec![xs[0][0], xs[0][1], xs[1][0], xs[1][1]], [2, 2]),
                    &device,
                );
                let (y, t) = layer.step(x, trace);
                trace = t;
                out.push(y.into_data().try_to_vec::<f64>().unwrap());
            }
            out
        };
        for (row, x) in xs.iter().enumerate() {
            let mut trace = layer.init_trace(1, &device);
            for step in 0..2 {
                let xt = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, 2]), &device);
                let (y, t) = layer.step(xt, trace);
                trace = t;
                let alone = y.into_data().try_to_vec::<f64>().unwrap()[0];
                assert!((alone - together[step][row]).abs() < 1e-12);
            }
        }
    }
}
