//! The recurrent actor-critic networks of backpropamine (reference §4): a recurrent layer
//! `h(t) = tanh(x(t)·W_in + h(t-1)·(W + α ⊙ H) + b)`, a policy (softmax over actions), a value
//! head, and, in the neuromodulated kinds, a neuromodulatory output
//! `M(t) = tanh(h(t)·w_M + b_M)`, one scalar per episode and step, that gates the plastic
//! update (optionally fanned out to one rate per postsynaptic neuron, `M_j = f_j·M + g_j`).
//!
//! The trace rules, all from the rule library (pre = `h(t-1)`, post = `h(t)`, `H = E = 0` at
//! the start of an episode; the new `H` serves the next step):
//! - `plastic`: `H ← f(H, pre, post, η)` with a learned η, `f` the config's `model.rule`
//!   (default and published: clipped Hebb, `H ← clip(H + η·preᵀpost, ±c)`);
//! - `simple`: the same rule with `M(t)` as its rate ([`Rate::Modulated`]), published:
//!   `H ← clip(H + M(t)·preᵀpost, ±c)`;
//! - `retroactive`: [`Retroactive`], `H ← clip(H + M(t)·E, ±c)` with the old `E`, then
//!   `E ← (1 − η)·E + η·preᵀpost`, learned η.
//!
//! The gradient through `clip` is 0 at a saturated entry (burn's `clamp`), as in the published
//! code; tested against finite differences.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig, LstmState};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::params::AcParams;
use crate::layer::{gaussian, param};
use crate::rng::{Stream, stream_rng};
use crate::rules::{Rate, Retroactive, Rule, RuleSpec};

/// The network kinds compared in the neuromodulation experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RlModelKind {
    /// A plain recurrent network (`α = 0`, no trace).
    NonPlastic,
    /// Clipped Hebbian plasticity with a learned rate η, not modulated.
    Plastic,
    /// Simple neuromodulation: `M(t)` is the rate of the clipped Hebbian update.
    Simple,
    /// Retroactive neuromodulation: `M(t)` moves an eligibility trace `E` into `H`.
    #[default]
    Retroactive,
    /// An LSTM (burn's) with the same policy and value heads: the non-plastic baseline with
    /// gated memory.
    Lstm,
}

impl RlModelKind {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            RlModelKind::NonPlastic => "non-plastic",
            RlModelKind::Plastic => "plastic",
            RlModelKind::Simple => "simple",
            RlModelKind::Retroactive => "retroactive",
            RlModelKind::Lstm => "lstm",
        }
    }

    /// Whether the network has a trace `H` (and `α`).
    pub fn plastic(self) -> bool {
        !matches!(self, RlModelKind::NonPlastic | RlModelKind::Lstm)
    }

    /// Whether `M(t)` gates the update.
    pub fn modulated(self) -> bool {
        matches!(self, RlModelKind::Simple | RlModelKind::Retroactive)
    }
}

/// How the actor-critic's parameters start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RlInit {
    /// Weights ~ N(0, 1/fan-in), `α` too; biases 0.
    #[default]
    Gaussian,
    /// As the published code and the peer: `W` and `α` ~ 0.001·U(0, 1); the input, policy,
    /// value and modulation weights and their biases ~ U(±1/√fan-in) (PyTorch's `Linear`).
    Published,
    /// The LSTM only: burn's default initializers (Xavier-normal weights and biases), as
    /// the LSTM started before it had its own (orthogonal recurrent weights, forget-gate bias 1);
    /// kept to reproduce those runs.
    Burn,
}

/// Sizes and options of an [`ActorCritic`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActorCriticConfig {
    /// Observation length.
    pub inputs: usize,
    /// Recurrent neurons `N`.
    pub hidden: usize,
    /// Actions.
    pub actions: usize,
    /// The trace rule.
    pub kind: RlModelKind,
    /// The clip bound `c` of `H` (the clipped rule's, and the retroactive rule's).
    pub clip: f64,
    /// The trace rule of the `plastic` and `simple` kinds (`H`'s rule, with the learned η or
    /// `M(t)` as its rate); the retroactive kind's `H` is always clipped.
    pub rule: Rule,
    /// Fan `M` out to one rate per postsynaptic neuron.
    pub fanout: bool,
    /// Initial η.
    pub init_eta: f64,
    /// How the parameters start.
    pub init: RlInit,
}

impl ActorCriticConfig {
    /// `H`'s rule with its constants (the plastic and simple kinds).
    pub fn rule_spec(&self) -> RuleSpec {
        RuleSpec {
            rule: self.rule,
            clip: self.clip,
        }
    }

    /// Trained parameters.
    pub fn num_params(&self) -> usize {
        let (i, n, a) = (self.inputs, self.hidden, self.actions);
        if self.kind == RlModelKind::Lstm {
            // 4 gates, each an input and a hidden transform with biases; policy and value heads.
            return 4 * (i * n + n * n + 2 * n) + n * (a + 1) + a + 1;
        }
        let base = i * n + n * n + n + n * a + a + n + 1;
        let plastic = if self.kind.plastic() { n * n } else { 0 };
        let eta = matches!(self.kind, RlModelKind::Plastic | RlModelKind::Retroactive) as usize;
        let modulation = if self.kind.modulated() {
            n + 1 + if self.fanout { 2 * n } else { 0 }
        } else {
            0
        };
        base + plastic + eta + modulation
    }

    /// Which groups of [`AcParams`] (in its order) this kind trains: `α` with plasticity, `M`'s
    /// weights with modulation (its fan-out with `fanout`), `η` for the plastic and retroactive
    /// rules.
    pub fn trainable(&self) -> Vec<bool> {
        let kind = self.kind;
        let modulated = kind.modulated();
        let eta = matches!(kind, RlModelKind::Plastic | RlModelKind::Retroactive);
        vec![
            true,
            true,
            true,
            kind.plastic(),
            true,
            true,
            true,
            true,
            modulated,
            modulated,
            modulated && self.fanout,
            modulated && self.fanout,
            eta,
        ]
    }

    /// The agent of the configured kind: the recurrent actor-critic, or the LSTM.
    pub fn init_agent(&self, seed: u64, device: &Device) -> Agent {
        if self.kind == RlModelKind::Lstm {
            // burn's default initializers draw from the device's generator.
            device.seed(seed);
            let lstm = LstmConfig::new(self.inputs, self.hidden, true).init(device);
            let heads = LinearConfig::new(self.hidden, self.actions + 1).init(device);
            let lstm = if self.init == RlInit::Burn {
                lstm
            } else {
                lstm_init(lstm, self.inputs, self.hidden, seed, device)
            };
            Agent::Lstm(LstmAgent { lstm, heads })
        } else {
            Agent::Plastic(self.init(seed, device))
        }
    }

    /// A network with Gaussian initial weights (std `1/√fan-in`), `α ~ N(0, 0.01²)`... drawn
    /// from the run's `Init` stream.
    pub fn init(&self, seed: u64, device: &Device) -> ActorCritic {
        self.from_values(&self.init_values(seed), device)
    }

    /// The initial parameter values of a run seeded with `seed` (see [`Self::init`]).
    pub fn init_values(&self, seed: u64) -> AcParams {
        let mut rng = stream_rng(seed, Stream::Init, 0);
        let (i, n, a) = (self.inputs, self.hidden, self.actions);
        let fan = |k: usize| 1.0 / (k as f64).sqrt();
        let published = self.init == RlInit::Published;
        // Weights of fan-in `k`: N(0, 1/k), or U(±1/√k) (published).
        let weights = |rng: &mut ChaCha8Rng, count: usize, k: usize| -> Vec<f64> {
            if published {
                (0..count)
                    .map(|_| rng.random_range(-fan(k)..fan(k)))
                    .collect()
            } else {
                gaussian(rng, count, fan(k))
            }
        };
        // Biases: 0, or U(±1/√k) (published; no draw otherwise, so the Gaussian stream is
        // unchanged).
        let biases = |rng: &mut ChaCha8Rng, count: usize, k: usize| -> Vec<f64> {
            if published {
                weights(rng, count, k)
            } else {
                vec![0.0; count]
            }
        };
        // `W` and `α`: N(0, 1/N), or 0.001·U(0, 1) (published).
        let recurrent = |rng: &mut ChaCha8Rng, count: usize| -> Vec<f64> {
            if published {
                (0..count)
                    .map(|_| 0.001 * rng.random_range(0.0..1.0))
                    .collect()
            } else {
                gaussian(rng, count, fan(n))
            }
        };
        // In the order the draws have always been made.
        let w_in = weights(&mut rng, i * n, i);
        let w = recurrent(&mut rng, n * n);
        let b = biases(&mut rng, n, i);
        let alpha = recurrent(&mut rng, n * n);
        let w_pi = weights(&mut rng, n * a, n);
        let b_pi = biases(&mut rng, a, n);
        let w_v = weights(&mut rng, n, n);
        let b_v = biases(&mut rng, 1, n);
        let w_m = weights(&mut rng, n, n);
        let b_m = biases(&mut rng, 1, n);
        AcParams {
            w_in,
            w,
            b,
            alpha,
            w_pi,
            b_pi,
            w_v,
            b_v,
            w_m,
            b_m,
            fan_w: vec![1.0; n],
            fan_b: vec![0.0; n],
            eta: vec![self.init_eta],
        }
    }

    /// A network holding `values` (trained parameters of this kind require gradients, the
    /// others are frozen).
    pub fn from_values(&self, values: &AcParams, device: &Device) -> ActorCritic {
        let (i, n, a) = (self.inputs, self.hidden, self.actions);
        let v = values.clone();
        let w_in = param(v.w_in, [i, n], device);
        let w = param(v.w, [n, n], device);
        let b = param(v.b, [n], device);
        let alpha = param(v.alpha, [n, n], device);
        let w_pi = param(v.w_pi, [n, a], device);
        let b_pi = param(v.b_pi, [a], device);
        let w_v = param(v.w_v, [n, 1], device);
        let b_v = param(v.b_v, [1], device);
        let w_m = param(v.w_m, [n, 1], device);
        let b_m = param(v.b_m, [1], device);
        let fan_w = param(v.fan_w, [1, n], device);
        let fan_b = param(v.fan_b, [1, n], device);
        let eta = param(v.eta, [1], device);
        let kind = self.kind;
        let freeze = |p: Param<Tensor<2>>, on: bool| if on { p } else { p.set_require_grad(false) };
        ActorCritic {
            w_in,
            w,
            b,
            alpha: freeze(alpha, kind.plastic()),
            w_pi,
            b_pi,
            w_v,
            b_v,
            w_m: freeze(w_m, kind.modulated()),
            b_m: if kind.modulated() {
                b_m
            } else {
                b_m.set_require_grad(false)
            },
            fan_w: freeze(fan_w, kind.modulated() && self.fanout),
            fan_b: freeze(fan_b, kind.modulated() && self.fanout),
            eta: if matches!(kind, RlModelKind::Plastic | RlModelKind::Retroactive) {
                eta
            } else {
                eta.set_require_grad(false)
            },
            kind_code: kind as usize,
            clip: self.clip,
            fanout: self.fanout,
            rule: self.rule_spec(),
        }
    }
}

/// The actor-critic network (see the module documentation).
#[derive(Module, Debug)]
pub struct ActorCritic {
    /// Input weights `[inputs, N]`.
    pub w_in: Param<Tensor<2>>,
    /// Recurrent weights `[N, N]` (pre, post).
    pub w: Param<Tensor<2>>,
    /// Biases `[N]`.
    pub b: Param<Tensor<1>>,
    /// Plasticity coefficients `[N, N]`.
    pub alpha: Param<Tensor<2>>,
    /// Policy weights `[N, actions]`.
    pub w_pi: Param<Tensor<2>>,
    /// Policy biases `[actions]`.
    pub b_pi: Param<Tensor<1>>,
    /// Value weights `[N, 1]`.
    pub w_v: Param<Tensor<2>>,
    /// Value bias `[1]`.
    pub b_v: Param<Tensor<1>>,
    /// Neuromodulation weights `[N, 1]`.
    pub w_m: Param<Tensor<2>>,
    /// Neuromodulation bias `[1]`.
    pub b_m: Param<Tensor<1>>,
    /// Fan-out gains `[1, N]` (`M_j = f_j·M + g_j`).
    pub fan_w: Param<Tensor<2>>,
    /// Fan-out offsets `[1, N]`.
    pub fan_b: Param<Tensor<2>>,
    /// Plasticity rate η `[1]`.
    pub eta: Param<Tensor<1>>,
    kind_code: usize,
    clip: f64,
    fanout: bool,
    rule: RuleSpec,
}

/// The recurrent state of a batch of episodes.
#[derive(Debug, Clone)]
pub struct AcState {
    /// `h(t-1)`, `[batch, N]`.
    pub h: Tensor<2>,
    /// The plastic trace `H`, `[batch, N, N]`.
    pub hebb: Tensor<3>,
    /// The eligibility trace `E` (retroactive), `[batch, N, N]`.
    pub elig: Tensor<3>,
}

/// One step's outputs.
#[derive(Debug, Clone)]
pub struct AcStep {
    /// Log-probabilities of the actions, `[batch, actions]`.
    pub log_probs: Tensor<2>,
    /// Probabilities, `[batch, actions]`.
    pub probs: Tensor<2>,
    /// Values `V(t)`, `[batch]`.
    pub value: Tensor<1>,
    /// `M(t)`, `[batch]` (zeros without modulation).
    pub modulation: Tensor<1>,
}

impl ActorCritic {
    /// The rule.
    pub fn kind(&self) -> RlModelKind {
        [
            RlModelKind::NonPlastic,
            RlModelKind::Plastic,
            RlModelKind::Simple,
            RlModelKind::Retroactive,
            RlModelKind::Lstm,
        ][self.kind_code]
    }

    /// Whether `M` fans out to one rate per postsynaptic neuron.
    pub fn fanout(&self) -> bool {
        self.fanout
    }

    /// The clip bound `c` of `H`.
    pub fn clip(&self) -> f64 {
        self.clip
    }

    /// `H`'s rule (the plastic and simple kinds).
    pub fn rule(&self) -> RuleSpec {
        self.rule
    }

    /// Zero state for `batch` episodes.
    pub fn start(&self, batch: usize) -> AcState {
        let n = self.w.val().dims()[0];
        let device = self.w.val().device();
        AcState {
            h: Tensor::zeros([batch, n], &device),
            hebb: Tensor::zeros([batch, n, n], &device),
            elig: Tensor::zeros([batch, n, n], &device),
        }
    }

    /// One step from observations `x` `[batch, inputs]`: the outputs, and the next state.
    pub fn step(&self, x: Tensor<2>, state: AcState) -> (AcStep, AcState) {
        let kind = self.kind();
        let [batch, n] = state.h.dims();
        let pre = state.h;
        let mut drive = x.matmul(self.w_in.val()) + pre.clone().matmul(self.w.val());
        if kind.plastic() {
            let plastic_w = self.alpha.val().unsqueeze::<3>() * state.hebb.clone();
            drive = drive
                + pre
                    .clone()
                    .reshape([batch, 1, n])
                    .matmul(plastic_w)
                    .reshape([batch, n]);
        }
        let post = (drive + self.b.val().unsqueeze::<2>()).tanh();
        let logits = post.clone().matmul(self.w_pi.val()) + self.b_pi.val().unsqueeze::<2>();
        let value = (post.clone().matmul(self.w_v.val()) + self.b_v.val().unsqueeze::<2>())
            .reshape([batch]);
        let m = (post.clone().matmul(self.w_m.val()) + self.b_m.val().unsqueeze::<2>()).tanh();
        let modulation = m.clone().reshape([batch]);
        let (hebb, elig) = if kind.plastic() {
            let pre = pre.reshape([batch, n, 1]);
            let post3 = post.clone().reshape([batch, 1, n]);
            // The modulated rate per postsynaptic neuron `[batch, 1, N]` (or one per episode,
            // `[batch, 1, 1]`).
            let modulated = || -> Rate {
                Rate::Modulated(if self.fanout {
                    (m.clone() * self.fan_w.val() + self.fan_b.val()).reshape([batch, 1, n])
                } else {
                    m.clone().reshape([batch, 1, 1])
                })
            };
            let eta = Rate::Learned(self.eta.val().reshape([1, 1, 1]));
            match kind {
                RlModelKind::Plastic => {
                    (self.rule.tensor(state.hebb, pre, post3, &eta), state.elig)
                }
                RlModelKind::Simple => (
                    self.rule.tensor(state.hebb, pre, post3, &modulated()),
                    state.elig,
                ),
                RlModelKind::Retroactive => Retroactive { bound: self.clip }.tensor(
                    state.hebb,
                    state.elig,
                    pre,
                    post3,
                    &modulated(),
                    &eta,
                ),
                RlModelKind::NonPlastic | RlModelKind::Lstm => unreachable!("checked above"),
            }
        } else {
            (state.hebb, state.elig)
        };
        let step = AcStep {
            log_probs: log_softmax(logits.clone(), 1),
            probs: softmax(logits, 1),
            value,
            modulation,
        };
        (
            step,
            AcState {
                h: post,
                hebb,
                elig,
            },
        )
    }
}

/// The LSTM baseline's initialization (whatever `model.init` says, except [`RlInit::Burn`]), as
/// an LSTM user expects it (Jozefowicz et al. 2015; Keras's defaults): each gate's input
/// weights Glorot-uniform U(±√(6/(I + N))), its recurrent weights an orthogonal N × N matrix
/// (the Q of a Gaussian matrix's QR, signs fixed so that R's diagonal is positive), biases 0
/// except the forget gate's, 1 (so the cell keeps its memory at first). Drawn from the run's
/// `Init` stream in the order input, forget, output, cell gate.
fn lstm_init(mut lstm: Lstm, inputs: usize, hidden: usize, seed: u64, device: &Device) -> Lstm {
    let mut rng = stream_rng(seed, Stream::Init, 0);
    let glorot = (6.0 / (inputs + hidden) as f64).sqrt();
    let mut set = |gate: &mut burn::nn::GateController, bias: f64| {
        let w_in = (0..inputs * hidden)
            .map(|_| rng.random_range(-glorot..glorot))
            .collect();
        gate.input_transform.weight = param(w_in, [inputs, hidden], device);
        gate.input_transform.bias = Some(param(vec![bias; hidden], [hidden], device));
        let w_rec = orthogonal(&mut rng, hidden);
        gate.hidden_transform.weight = param(w_rec, [hidden, hidden], device);
        gate.hidden_transform.bias = Some(param(vec![0.0; hidden], [hidden], device));
    };
    set(&mut lstm.input_gate, 0.0);
    let forget = lstm
        .forget_gate
        .as_mut()
        .expect("LstmConfig's gates are uncoupled");
    set(forget, 1.0);
    set(&mut lstm.output_gate, 0.0);
    set(&mut lstm.cell_gate, 0.0);
    lstm
}

/// A random orthogonal `n × n` matrix, row-major: modified Gram-Schmidt on the columns of a
/// Gaussian matrix (its QR's Q with R's diagonal positive, which makes Q uniform over the
/// orthogonal group).
pub(crate) fn orthogonal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = (0..n).map(|_| gaussian(rng, n, 1.0)).collect();
    for j in 0..n {
        let (done, rest) = cols.split_at_mut(j);
        let c = &mut rest[0];
        for q in done.iter() {
            let dot: f64 = q.iter().zip(c.iter()).map(|(a, b)| a * b).sum();
            c.iter_mut().zip(q).for_each(|(v, qv)| *v -= dot * qv);
        }
        let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
        c.iter_mut().for_each(|v| *v /= norm);
    }
    (0..n * n).map(|k| cols[k % n][k / n]).collect()
}

/// The LSTM agent: burn's LSTM, then one linear layer giving the logits and the value.
#[derive(Module, Debug)]
pub struct LstmAgent {
    /// The recurrent part.
    pub lstm: Lstm,
    /// Hidden state → `[logits, V]`.
    pub heads: Linear,
}

/// An agent of any kind.
// One per run (a module): boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Agent {
    /// The recurrent actor-critic (non-plastic, plastic, neuromodulated).
    Plastic(ActorCritic),
    /// The LSTM baseline.
    Lstm(LstmAgent),
}

/// The recurrent state of a batch of episodes, of either agent.
// One per batch of episodes: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AgentState {
    /// The actor-critic's.
    Plastic(AcState),
    /// The LSTM's (none before the first step).
    Lstm(Option<LstmState<2>>),
}

impl Agent {
    /// Zero state for `batch` episodes.
    pub fn start(&self, batch: usize) -> AgentState {
        match self {
            Agent::Plastic(m) => AgentState::Plastic(m.start(batch)),
            Agent::Lstm(_) => AgentState::Lstm(None),
        }
    }

    /// One step from observations `x` `[batch, inputs]`.
    pub fn step(&self, x: Tensor<2>, state: AgentState) -> (AcStep, AgentState) {
        match (self, state) {
            (Agent::Plastic(m), AgentState::Plastic(s)) => {
                let (out, next) = m.step(x, s);
                (out, AgentState::Plastic(next))
            }
            (Agent::Lstm(m), AgentState::Lstm(s)) => {
                let [batch, inputs] = x.dims();
                let (out, next) = m.lstm.forward(x.reshape([batch, 1, inputs]), s);
                let hidden = out.dims()[2];
                let heads = m.heads.forward(out.reshape([batch, hidden]));
                let actions = heads.dims()[1] - 1;
                let logits = heads.clone().slice([0..batch, 0..actions]);
                let value = heads
                    .slice([0..batch, actions..actions + 1])
                    .reshape([batch]);
                let device = value.device();
                let step = AcStep {
                    log_probs: log_softmax(logits.clone(), 1),
                    probs: softmax(logits, 1),
                    value,
                    modulation: Tensor::zeros([batch], &device),
                };
                (step, AgentState::Lstm(Some(next)))
            }
            _ => unreachable!("a state of the agent's own kind"),
        }
    }

    /// The actor-critic, if the agent is one.
    pub fn actor_critic(&self) -> Option<&ActorCritic> {
        match self {
            Agent::Plastic(m) => Some(m),
            Agent::Lstm(_) => None,
        }
    }
}

impl AcParams {
    /// The current parameter values of a burn network.
    pub fn of(model: &ActorCritic) -> AcParams {
        AcParams {
            w_in: host(model.w_in.val()),
            w: host(model.w.val()),
            b: host(model.b.val()),
            alpha: host(model.alpha.val()),
            w_pi: host(model.w_pi.val()),
            b_pi: host(model.b_pi.val()),
            w_v: host(model.w_v.val()),
            b_v: host(model.b_v.val()),
            w_m: host(model.w_m.val()),
            b_m: host(model.b_m.val()),
            fan_w: host(model.fan_w.val()),
            fan_b: host(model.fan_b.val()),
            eta: host(model.eta.val()),
        }
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64 data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Backend, Precision, init_device};

    fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f64> {
        p.val()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap()
    }

    /// A network of `kind` with `inputs`, `hidden` and `actions`, the published initialization.
    fn config(
        inputs: usize,
        hidden: usize,
        actions: usize,
        kind: RlModelKind,
    ) -> ActorCriticConfig {
        ActorCriticConfig {
            inputs,
            hidden,
            actions,
            kind,
            clip: 1.0,
            rule: Rule::Clipped,
            fanout: false,
            init_eta: 0.01,
            init: RlInit::Published,
        }
    }

    #[test]
    fn the_published_initialization_has_its_stated_ranges() {
        let device = init_device(Backend::Flex, Precision::F64).unwrap();
        let config = config(16, 25, 4, RlModelKind::Retroactive);
        let m = config.init(3, &device);
        for (name, v, lo, hi) in [
            ("w", values(&m.w), 0.0, 0.001),
            ("alpha", values(&m.alpha), 0.0, 0.001),
            ("w_in", values(&m.w_in), -0.25, 0.25),
            ("b", values(&m.b), -0.25, 0.25),
            ("w_pi", values(&m.w_pi), -0.2, 0.2),
            ("b_v", values(&m.b_v), -0.2, 0.2),
        ] {
            assert!(v.iter().all(|x| (lo..=hi).contains(x)), "{name}: {v:?}");
            let spread = v.iter().cloned().fold(f64::MIN, f64::max)
                - v.iter().cloned().fold(f64::MAX, f64::min);
            assert!(
                v.len() == 1 || spread > 0.3 * (hi - lo),
                "{name} uses its range"
            );
        }
        // The Gaussian default: W ~ N(0, 1/N), of both signs.
        let g = ActorCriticConfig {
            init: RlInit::Gaussian,
            ..config
        }
        .init(3, &device);
        let w = values(&g.w);
        let std = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
        assert!((std - 0.2).abs() < 0.03, "{std}");
    }

    /// The LSTM starts as an LSTM baseline is expected to: orthogonal recurrent weights,
    /// Glorot-uniform input weights, biases 0 but the forget gate's 1; `init = "burn"` keeps
    /// burn's default.
    #[test]
    fn the_lstm_starts_with_orthogonal_recurrence_and_forget_bias_one() {
        let device = init_device(Backend::Flex, Precision::F64).unwrap();
        let config = config(7, 12, 3, RlModelKind::Lstm);
        let Agent::Lstm(agent) = config.init_agent(5, &device) else {
            panic!("an LSTM")
        };
        let lstm = &agent.lstm;
        let forget = lstm.forget_gate.as_ref().unwrap();
        let n = 12;
        for (name, gate, bias) in [
            ("input", &lstm.input_gate, 0.0),
            ("forget", forget, 1.0),
            ("output", &lstm.output_gate, 0.0),
            ("cell", &lstm.cell_gate, 0.0),
        ] {
            let q = values(&gate.hidden_transform.weight);
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12, "{name}: Q·Qᵀ[{i}][{j}] = {dot}");
                }
            }
            let b_in = values(gate.input_transform.bias.as_ref().unwrap());
            let b_h = values(gate.hidden_transform.bias.as_ref().unwrap());
            assert!(b_in.iter().all(|b| *b == bias), "{name}: {b_in:?}");
            assert!(b_h.iter().all(|b| *b == 0.0), "{name}: {b_h:?}");
            let limit = (6.0f64 / 19.0).sqrt();
            let w = values(&gate.input_transform.weight);
            assert!(w.iter().all(|x| x.abs() <= limit), "{name}");
            let spread = w.iter().cloned().fold(f64::MIN, f64::max)
                - w.iter().cloned().fold(f64::MAX, f64::min);
            assert!(spread > limit, "{name}: input weights use their range");
        }
        // The gates draw different matrices.
        assert_ne!(
            values(&lstm.input_gate.hidden_transform.weight),
            values(&forget.hidden_transform.weight)
        );
        // burn's default: the forget gate's biases are drawn, none 1.
        let Agent::Lstm(burn) = ActorCriticConfig {
            init: RlInit::Burn,
            ..config
        }
        .init_agent(5, &device) else {
            panic!("an LSTM")
        };
        let b = values(
            burn.lstm
                .forget_gate
                .as_ref()
                .unwrap()
                .input_transform
                .bias
                .as_ref()
                .unwrap(),
        );
        assert!(b.iter().all(|b| b.abs() < 1.0), "burn draws them: {b:?}");
    }
}
