//! The BOHP plastic layer (Miconi 2016, Eq. 1-2 with the timing the reference code uses).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::connection::PlasticConnection;
use crate::rules::{Modulation, Rate, Retroactive, RuleSpec};

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
    /// A modulator neuron `M(t) = tanh(y(t)·w_M + b_M)` gating the trace update (the 2019
    /// paper's neuron, not published for this layer): [`Modulation::Simple`] makes `M(t)` the
    /// rule's rate instead of γ; [`Modulation::Retroactive`] (clipped rule) keeps an
    /// eligibility trace `E` with rate γ and moves `H` by `M(t)·E`. Needs `plastic`.
    #[config(default = "Modulation::None")]
    pub modulation: Modulation,
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
///
/// With a modulator (trained `w_M` `[n_out, 1]` and `b_M`), one value per episode and step
/// computed from the step's outputs gates the update instead of the constant γ:
///
/// ```text
/// M(t)    = tanh(Σ_j y_j(t)·w_Mj + b_M)
/// simple:       H(t) = f(H(t-1), x(t), y(t), M(t))           (the rule with rate M(t))
/// retroactive:  H(t) = clip(H(t-1) + M(t)·E(t-1), ±c)
///               E(t) = (1 - γ)·E(t-1) + γ·x(t)·y(t)           (E(0) = 0)
/// ```
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
    /// The trace's rule (clipped with retroactive modulation: the bound of `H`).
    pub rule: RuleSpec,
    /// The modulator's weights `w_M`, `[n_out, 1]` (none without a modulator, so that the
    /// records of unmodulated layers are unchanged).
    pub w_m: Option<Param<Tensor<2>>>,
    /// The modulator's bias `b_M`, `[1]`.
    pub b_m: Option<Param<Tensor<1>>>,
    /// How the modulator gates the update ([`Modulation::None`] without one).
    pub modulation: Modulation,
}

/// The Hebbian traces of a batch of episodes: `H`, `[batch, n_in, n_out]`.
#[derive(Debug, Clone)]
pub struct HebbTrace {
    /// `H(t)`, `[batch, n_in, n_out]`.
    pub h: Tensor<3>,
    /// The eligibility trace `E(t)` of retroactive modulation, `[batch, n_in, n_out]`.
    pub e: Option<Tensor<3>>,
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
        // The modulator starts silent to the outputs (w_M = 0) at the unmodulated rate
        // (M = γ), and draws nothing from `rng`: unmodulated layers initialize as before.
        let modulated = self.plastic && self.modulation != Modulation::None;
        PlasticLayer {
            w: param(w, [self.n_in, self.n_out], device),
            alpha,
            b: param(b, [self.n_out], device),
            gamma: self.gamma,
            plastic: self.plastic,
            nonnegative_alpha: self.nonnegative_alpha,
            rule: self.rule,
            w_m: modulated.then(|| param(vec![0.0; self.n_out], [self.n_out, 1], device)),
            b_m: modulated.then(|| param(vec![self.gamma.min(0.999).atanh()], [1], device)),
            modulation: if modulated {
                self.modulation
            } else {
                Modulation::None
            },
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
    pub(crate) fn init_trace(&self, batch: usize, device: &Device) -> HebbTrace {
        let zeros = || Tensor::zeros([batch, self.n_in(), self.n_out()], device);
        HebbTrace {
            h: zeros(),
            e: (self.modulation == Modulation::Retroactive).then(zeros),
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
        let connection = self.connection(false);
        let x_row = x.clone().reshape([batch, 1, n_in]);
        let fixed = x.clone().matmul(self.w.val()) + self.b.val().unsqueeze::<2>(); // [batch, n_out]
        let y = (fixed + connection.drive(x_row, trace.h.clone())).tanh();
        let x_col = x.reshape([batch, n_in, 1]);
        let trace = self.update(&connection, trace, x_col, y.clone());
        (y, trace)
    }

    /// The traces after a step with input column `pre` (`[batch, n_in, 1]`, carrying γ when
    /// `connection`'s rate is [`Rate::Folded`]) and outputs `y` (`[batch, n_out]`): the
    /// connection's rule at rate γ, or, with a modulator, at `M(t)` or retroactively.
    fn update(
        &self,
        connection: &PlasticConnection,
        trace: HebbTrace,
        pre: Tensor<3>,
        y: Tensor<2>,
    ) -> HebbTrace {
        let [batch, n_out] = y.dims();
        let post = y.clone().reshape([batch, 1, n_out]);
        let (Some(w_m), Some(b_m)) = (&self.w_m, &self.b_m) else {
            let h = connection.update(trace.h, pre, post);
            return HebbTrace { h, e: trace.e };
        };
        // M(t) = tanh(y(t)·w_M + b_M), one per episode.
        let m = (y.matmul(w_m.val()) + b_m.val().unsqueeze::<2>())
            .tanh()
            .reshape([batch, 1, 1]);
        let m = Rate::Modulated(m);
        if self.modulation == Modulation::Retroactive {
            let e = trace
                .e
                .expect("a retroactive layer's trace has an eligibility trace");
            let (h, e) = Retroactive {
                bound: self.rule.clip,
            }
            .tensor(trace.h, e, pre, post, &m, &connection.rate);
            HebbTrace { h, e: Some(e) }
        } else {
            HebbTrace {
                h: self.rule.tensor(trace.h, pre, post, &m),
                e: None,
            }
        }
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
        // γ is folded into the inputs unless a modulated rate replaces it.
        let fold = self.modulation != Modulation::Simple;
        let cols = if fold {
            inputs.mul_scalar(self.gamma)
        } else {
            inputs
        }
        .reshape([steps, batch, n_in, 1])
        .chunk(steps, 0);
        let connection = self.connection(fold);
        let mut trace = self.init_trace(batch, &device);
        let mut ys = Vec::with_capacity(steps);
        for ((fixed, row), col) in fixed.into_iter().zip(rows).zip(cols) {
            let plastic = connection.drive(row.reshape([batch, 1, n_in]), trace.h.clone());
            let y = (fixed.reshape([batch, n_out]) + plastic).tanh();
            trace = self.update(&connection, trace, col.reshape([batch, n_in, 1]), y.clone());
            ys.push(y);
        }
        (ys, trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Backend, Precision, init_device};
    use crate::rules::Rule;
    use rand::SeedableRng;

    #[test]
    fn unroll_equals_stepping() {
        for (rule, modulation) in [
            (Rule::Hebb, Modulation::None),
            (Rule::Oja, Modulation::Simple),
            (Rule::Clipped, Modulation::Retroactive),
        ] {
            unroll_equals_stepping_with(RuleSpec { rule, clip: 0.2 }, modulation);
        }
    }

    /// [`PlasticLayer::unroll`] and [`PlasticLayer::step`] agree for one rule and modulation
    /// (a modulator with random weights, so that `M(t)` varies).
    fn unroll_equals_stepping_with(rule: RuleSpec, modulation: Modulation) {
        let device = init_device(Backend::Ndarray, Precision::F64).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut layer = PlasticLayerConfig::new(5, 3, 0.3)
            .with_init_std(0.8)
            .with_rule(rule)
            .with_modulation(modulation)
            .init(&mut rng, &device);
        assert_eq!(layer.w_m.is_some(), modulation != Modulation::None);
        if layer.w_m.is_some() {
            layer.w_m = Some(param(gaussian(&mut rng, 3, 1.0), [3, 1], &device));
        }
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
        if let (Some(a), Some(b)) = (reference.e, trace.e) {
            let diff: f64 = (a - b).abs().max().into_scalar::<f64>();
            assert!(diff < 1e-12, "eligibility trace: {diff}");
        } else {
            assert_ne!(modulation, Modulation::Retroactive);
        }
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
            w_m: None,
            b_m: None,
            modulation: Modulation::None,
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
