//! The fully recurrent plastic network of differentiable plasticity (Miconi, Clune & Stanley
//! 2018), and the LSTM baseline.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, LstmConfig};
use burn::tensor::{Device, Tensor};
use rand::Rng;

use crate::connection::PlasticConnection;
use crate::engines::fused::{HostModulator, HostRnn, Real};
use crate::layer::{gaussian, param};
use crate::rng::{Stream, stream_rng};
use crate::rules::{Modulation, Rate, Retroactive, RuleSpec};

/// Sizes and options of a [`PlasticRnn`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlasticRnnConfig {
    /// Number of neurons `N`.
    pub neurons: usize,
    /// The trace's update rule.
    pub rule: RuleSpec,
    /// One `α` shared by every connection, instead of one per connection.
    pub shared_alpha: bool,
    /// When false, `α = 0` and `η` are fixed and the trace is not computed: the non-plastic
    /// recurrent baseline.
    pub plastic: bool,
    /// Standard deviation of the Gaussian initial `W` and `α` (0.01 in the 2018 code).
    pub init_std: f64,
    /// Initial plasticity rate `η` (0.01 in the 2018 code).
    pub init_eta: f64,
    /// A modulator neuron `M(t) = tanh(y(t)·w_M + b_M)` gating the trace update (the 2019
    /// paper's, not published for this network): [`Modulation::Simple`] makes `M(t)` the
    /// rule's rate (`η` unused and frozen); [`Modulation::Retroactive`] moves an eligibility
    /// trace with the learned rate `η` into a clipped `H`.
    pub modulation: Modulation,
}

impl PlasticRnnConfig {
    /// `neurons` neurons, the decaying Hebbian rule, per-connection `α`, the 2018 code's initial values.
    pub fn new(neurons: usize) -> Self {
        PlasticRnnConfig {
            neurons,
            rule: RuleSpec::default(),
            shared_alpha: false,
            plastic: true,
            init_std: 0.01,
            init_eta: 0.01,
            modulation: Modulation::None,
        }
    }

    /// Whether the network has a modulator (`w_M`, `b_M`).
    pub fn modulated(&self) -> bool {
        self.plastic && self.modulation != Modulation::None
    }

    /// Whether `η` is trained: with plasticity, except under simple modulation (where `M(t)`
    /// is the rate and `η` unused).
    pub(crate) fn eta_trained(&self) -> bool {
        self.plastic && !(self.modulated() && self.modulation == Modulation::Simple)
    }

    /// Number of trained parameters.
    pub fn num_params(&self) -> usize {
        let n2 = self.neurons * self.neurons;
        let base = match (self.plastic, self.shared_alpha) {
            (false, _) => n2,
            (true, false) => 2 * n2 + 1,
            (true, true) => n2 + 2,
        };
        let eta_unused = usize::from(self.plastic && !self.eta_trained());
        let modulator = if self.modulated() {
            self.neurons + 1
        } else {
            0
        };
        base - eta_unused + modulator
    }

    /// Gaussian `W` and `α`, `η = init_eta`, drawn from `rng` (`W` first, then `α`).
    pub fn init(&self, rng: &mut impl Rng, device: &Device) -> PlasticRnn {
        self.from_values(&self.draw_values(rng), device)
    }

    /// Initial values `[W, α, η]` drawn from `rng` (`W` first, then `α`; without plasticity
    /// `α = 0`, `η = 0`), followed with a modulator by `[w_M, b_M]`: `w_M = 0` and
    /// `b_M = atanh(init_eta)`, so that `M(t)` starts at the unmodulated network's rate
    /// whatever the state, for learning to vary it.
    pub(crate) fn draw_values(&self, rng: &mut impl Rng) -> Vec<Vec<f64>> {
        let n = self.neurons;
        let w = gaussian(rng, n * n, self.init_std);
        let alpha_len = if self.shared_alpha { 1 } else { n * n };
        let alpha = gaussian(rng, alpha_len, self.init_std);
        if !self.plastic {
            return vec![w, vec![0.0; alpha_len], vec![0.0]];
        }
        let mut values = vec![w, alpha, vec![self.init_eta]];
        if self.modulated() {
            values.push(vec![0.0; n]);
            values.push(vec![self.init_eta.min(0.999).atanh()]);
        }
        values
    }

    /// The initial values of a run seeded with `seed`.
    pub fn init_values(&self, seed: u64) -> Vec<Vec<f64>> {
        self.draw_values(&mut stream_rng(seed, Stream::Init, 0))
    }

    /// A module holding values `[W, α, η]` and, with a modulator, `[w_M, b_M]` (`α`, `η`
    /// frozen without plasticity, `η` with simple modulation).
    pub fn from_values(&self, values: &[Vec<f64>], device: &Device) -> PlasticRnn {
        let n = self.neurons;
        let shape = if self.shared_alpha { [1, 1] } else { [n, n] };
        fn frozen<const D: usize>(p: Param<Tensor<D>>, trained: bool) -> Param<Tensor<D>> {
            if trained {
                p
            } else {
                p.set_require_grad(false)
            }
        }
        let alpha = frozen(param(values[1].clone(), shape, device), self.plastic);
        let modulated = self.modulated();
        let eta = frozen(param(values[2].clone(), [1], device), self.eta_trained());
        PlasticRnn {
            w: param(values[0].clone(), [n, n], device),
            alpha,
            eta,
            w_m: modulated.then(|| param(values[3].clone(), [n, 1], device)),
            b_m: modulated.then(|| param(values[4].clone(), [1], device)),
            rule: self.rule,
            plastic: self.plastic,
            modulation: if modulated {
                self.modulation
            } else {
                Modulation::None
            },
        }
    }

    /// The host network (for the fused engine) holding values `[W, α, η]`.
    pub fn host<F: Real>(&self, values: &[Vec<f64>]) -> HostRnn<F> {
        let cast = |v: &Vec<f64>| {
            v.iter()
                .map(|&x| F::from(x).expect("finite"))
                .collect::<Vec<F>>()
        };
        let modulated = self.modulated();
        HostRnn {
            n: self.neurons,
            w: cast(&values[0]),
            alpha: cast(&values[1]),
            eta: F::from(values[2][0]).expect("finite"),
            rule: self.rule,
            plastic: self.plastic,
            modulator: modulated.then(|| HostModulator {
                modulation: self.modulation,
                w: cast(&values[3]),
                b: F::from(values[4][0]).expect("finite"),
            }),
        }
    }
}

/// `N` fully recurrent tanh neurons whose connections are `W + α ⊙ H`, with a Hebbian trace
/// `H` (row-vector convention: column `j` of `W` holds the inputs of neuron `j`):
///
/// ```text
/// y(t) = c(t) ⊙ u(t) + (1 - c(t)) ⊙ tanh( y(t-1)·(W + α ⊙ H(t-1)) + u(t) )
/// H_ij(t) = f(H_ij(t-1), y_i(t-1), y_j(t), η)          (the rule f of crate::rules)
/// y(0) = 0, H(0) = 0 at the start of every episode
/// ```
///
/// With a modulator (`w_M`, `b_M`; Miconi et al. 2019's neuron, here in this network),
/// `M(t) = tanh(y(t)·w_M + b_M)`, one value per episode, gates the update: simple modulation
/// is `f` with rate `M(t)`; retroactive modulation keeps an eligibility trace `E`,
/// `H(t) = clip(H(t-1) + M(t)·E(t-1), ±c)`, `E(t) = (1-η)·E(t-1) + η·y(t-1)ᵀ y(t)`
/// ([`Retroactive`]).
///
/// e.g. Hebb: `H(t) = (1-η)·H(t-1) + η·y(t-1)ᵀ y(t)`; Oja:
/// `H_ij(t) = H_ij(t-1) + η·y_j(t)·( y_i(t-1) - H_ij(t-1)·y_j(t) )`. The plastic part is the
/// connection code the single layer shares ([`PlasticConnection`]).
///
/// `u(t)` is the input and `c(t)` the clamp mask (1 where an input sets its neuron's value;
/// without clamping `c = 0`). `W`, `α` (per connection, or one shared value) and the
/// plasticity rate `η` are trained; `H` is per-episode state. A batch is that many independent
/// episodes, each with its own trace.
#[derive(Module, Debug)]
pub struct PlasticRnn {
    /// Fixed weights `W`, `[N, N]`.
    pub w: Param<Tensor<2>>,
    /// Plasticity coefficients `α`, `[N, N]`, or `[1, 1]` when shared.
    pub alpha: Param<Tensor<2>>,
    /// Plasticity rate `η`, `[1]` (the eligibility trace's with retroactive modulation; unused
    /// with simple modulation).
    pub eta: Param<Tensor<1>>,
    /// The modulator's weights `w_M`, `[N, 1]` (none without a modulator, so that the records
    /// of unmodulated networks are unchanged).
    pub w_m: Option<Param<Tensor<2>>>,
    /// The modulator's bias `b_M`, `[1]`.
    pub b_m: Option<Param<Tensor<1>>>,
    /// The trace's rule (clipped with retroactive modulation: the bound of `H`).
    pub rule: RuleSpec,
    /// Whether `α` and `η` are trained and the trace computed.
    pub plastic: bool,
    /// How the modulator gates the update.
    pub modulation: Modulation,
}

impl PlasticRnn {
    /// Number of neurons.
    pub fn neurons(&self) -> usize {
        self.w.dims()[0]
    }

    /// Whether `α` is one shared value.
    pub fn shared_alpha(&self) -> bool {
        self.alpha.dims() == [1, 1]
    }

    /// The state before an episode's first step: `y = 0`, `H = 0` (and the eligibility trace
    /// 0 under retroactive modulation), for `batch` episodes.
    pub fn initial_state(&self, batch: usize, device: &Device) -> RnnState {
        let n = self.neurons();
        RnnState {
            y: Tensor::zeros([batch, n], device),
            h: Tensor::zeros([batch, n, n], device),
            elig: (self.plastic && self.modulation == Modulation::Retroactive)
                .then(|| Tensor::zeros([batch, n, n], device)),
        }
    }

    /// One step from `state`: the input `u` (`[batch, N]`) and, with clamping, the clamp mask
    /// `c` (`[batch, N]`, 0 or 1); the new state, whose `y` is the step's output. Unrolling it
    /// from [`PlasticRnn::initial_state`] gives [`PlasticRnn::forward`] exactly.
    pub fn step(&self, state: RnnState, u: Tensor<2>, clamp: Option<Tensor<2>>) -> RnnState {
        self.step_with(&self.connection(), &self.w.val(), state, u, clamp)
    }

    /// The plastic part of the recurrent connection: `α`, the rate `η` and the rule.
    fn connection(&self) -> PlasticConnection {
        PlasticConnection::new(
            self.alpha.val(),
            Rate::Learned(self.eta.val().reshape([1, 1, 1])),
            self.rule,
        )
    }

    /// [`PlasticRnn::step`] with the connection and `W` read once per episode.
    fn step_with(
        &self,
        connection: &PlasticConnection,
        w: &Tensor<2>,
        state: RnnState,
        u: Tensor<2>,
        clamp: Option<Tensor<2>>,
    ) -> RnnState {
        let RnnState { y, mut h, mut elig } = state;
        let [batch, n] = y.dims();
        let mut pre = y.clone().matmul(w.clone()) + u.clone();
        if self.plastic {
            pre = pre + connection.drive(y.clone().reshape([batch, 1, n]), h.clone());
        }
        let mut y_new = pre.tanh();
        if let Some(c) = clamp {
            y_new = y_new * c.clone().neg().add_scalar(1.0) + u * c;
        }
        if self.plastic {
            let (pre, post) = (
                y.reshape([batch, n, 1]),
                y_new.clone().reshape([batch, 1, n]),
            );
            match (&self.w_m, &self.b_m) {
                (Some(w_m), Some(b_m)) => {
                    // M(t) = tanh(y(t)·w_M + b_M), one per episode.
                    let m = (y_new.clone().matmul(w_m.val()) + b_m.val().unsqueeze::<2>())
                        .tanh()
                        .reshape([batch, 1, 1]);
                    let m = Rate::Modulated(m);
                    if self.modulation == Modulation::Retroactive {
                        let e = elig.take().expect("an eligibility trace");
                        let (h_new, e_new) = Retroactive {
                            bound: self.rule.clip,
                        }
                        .tensor(h, e, pre, post, &m, &connection.rate);
                        (h, elig) = (h_new, Some(e_new));
                    } else {
                        h = self.rule.tensor(h, pre, post, &m);
                    }
                }
                _ => h = connection.update(h, pre, post),
            }
        }
        RnnState { y: y_new, h, elig }
    }

    /// A whole episode from [`PlasticRnn::initial_state`]; returns `y(t)` for every step.
    ///
    /// # Shapes
    /// - `inputs`: `[steps, batch, N]`
    /// - `clamp`: `[steps, batch, N]` (0 or 1), or `None`
    /// - returned: `[steps, batch, N]`
    pub fn forward(&self, inputs: Tensor<3>, clamp: Option<Tensor<3>>) -> Tensor<3> {
        let [steps, batch, n] = inputs.dims();
        let connection = self.connection();
        let w = self.w.val();
        let mut state = self.initial_state(batch, &inputs.device());
        let cs = clamp.map(|c| c.chunk(steps, 0));
        let mut ys = Vec::with_capacity(steps);
        for (t, u) in inputs.chunk(steps, 0).into_iter().enumerate() {
            let c = cs.as_ref().map(|cs| cs[t].clone().reshape([batch, n]));
            state = self.step_with(&connection, &w, state, u.reshape([batch, n]), c);
            ys.push(state.y.clone());
        }
        Tensor::stack(ys, 0)
    }
}

/// A [`PlasticRnn`]'s state between steps, one row per episode of the batch.
#[derive(Debug, Clone)]
pub struct RnnState {
    /// The activity `y(t)`, `[batch, N]`.
    pub y: Tensor<2>,
    /// The Hebbian trace `H`, `[batch, N, N]`.
    pub h: Tensor<3>,
    /// The eligibility trace, `[batch, N, N]`, under retroactive modulation only.
    pub elig: Option<Tensor<3>>,
}

/// The LSTM baseline: an LSTM reading the inputs, and a linear readout to the `N` outputs.
#[derive(Module, Debug)]
pub struct LstmNet {
    /// The recurrent part.
    pub lstm: burn::nn::Lstm,
    /// Hidden state → outputs.
    pub readout: Linear,
}

impl LstmNet {
    /// An LSTM with `hidden` units over `n` inputs and outputs (burn's default initializers).
    pub fn new(n: usize, hidden: usize, device: &Device) -> LstmNet {
        LstmNet {
            lstm: LstmConfig::new(n, hidden, true).init(device),
            readout: LinearConfig::new(hidden, n).init(device),
        }
    }

    /// Trained parameters of an LSTM with `hidden` units over `n` inputs and outputs.
    pub fn num_params(n: usize, hidden: usize) -> usize {
        4 * hidden * (n + hidden + 2) + hidden * n + n
    }

    /// The smallest hidden size whose parameter count reaches `target`.
    pub(crate) fn hidden_for(n: usize, target: usize) -> usize {
        (1..)
            .find(|&h| Self::num_params(n, h) >= target)
            .unwrap_or(1)
    }

    /// The outputs `tanh(readout(h(t)))` for every step: `[steps, batch, N]` from inputs
    /// `[steps, batch, N]`.
    pub fn forward(&self, inputs: Tensor<3>) -> Tensor<3> {
        let [steps, batch, n] = inputs.dims();
        let (hidden, _) = self.lstm.forward(inputs.swap_dims(0, 1), None); // [batch, steps, hidden]
        let d = hidden.dims()[2];
        self.readout
            .forward(hidden.reshape([batch * steps, d]))
            .tanh()
            .reshape([batch, steps, n])
            .swap_dims(0, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Backend, Precision, init_device};
    use crate::rules::Rule;
    use burn::tensor::{Distribution, TensorData};

    /// Stepping by hand from the initial state gives `forward`'s outputs to the bit, for every
    /// modulation, with and without clamping; and its final trace is not zero (the steps
    /// learned something).
    #[test]
    fn stepping_by_hand_equals_forward() {
        let device = init_device(Backend::Flex, Precision::F32).unwrap();
        let (n, batch, steps) = (6, 3, 5);
        for (modulation, rule) in [
            (Modulation::None, Rule::Hebb),
            (Modulation::Simple, Rule::Oja),
            (Modulation::Retroactive, Rule::Clipped),
        ] {
            let config = PlasticRnnConfig {
                rule: RuleSpec::new(rule),
                modulation,
                ..PlasticRnnConfig::new(n)
            };
            let rnn = config.from_values(&config.init_values(7), &device);
            let inputs: Tensor<3> =
                Tensor::random([steps, batch, n], Distribution::Normal(0.0, 1.0), &device);
            let mask: Vec<f32> = (0..steps * batch * n)
                .map(|i| (i % 3 == 0) as u8 as f32)
                .collect();
            let clamp: Tensor<3> =
                Tensor::from_data(TensorData::new(mask, [steps, batch, n]), &device);
            for clamp in [None, Some(clamp)] {
                let whole = rnn.forward(inputs.clone(), clamp.clone());
                let mut state = rnn.initial_state(batch, &device);
                let mut ys = Vec::new();
                for t in 0..steps {
                    let u = inputs.clone().narrow(0, t, 1).reshape([batch, n]);
                    let c = clamp
                        .as_ref()
                        .map(|c| c.clone().narrow(0, t, 1).reshape([batch, n]));
                    state = rnn.step(state, u, c);
                    ys.push(state.y.clone());
                }
                let stepped = Tensor::stack::<3>(ys, 0);
                assert_eq!(
                    whole.into_data().try_to_vec::<f32>().unwrap(),
                    stepped.into_data().try_to_vec::<f32>().unwrap(),
                    "{modulation:?}"
                );
                let h: f32 = state.h.abs().sum().into_scalar();
                assert!(h > 0.0, "{modulation:?}: the trace stayed 0");
                assert_eq!(state.elig.is_some(), modulation == Modulation::Retroactive);
            }
        }
    }
}
