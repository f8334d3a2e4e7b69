//! One episode as JSON, so anyone can recompute it in another framework. The schema is
//! documented in `docs/gradients.md` (section "The dump format"); [`SCHEMA`] names its
//! version.

use bohp::engines::analytic::{EpisodeTrace, Grads, Params};
use bohp::engines::fused::{EpisodeBatch as HostEpisodes, HostGrads, HostRnn};
use bohp::rules::{Modulation, Retroactive};
use bohp::single::tasks::{EpisodeBatch, Targets, Task};
use std::collections::BTreeMap;

use serde::Serialize;

use bohp::rl::config::RlConfig;
use bohp::rl::host::{AcParams, HostAc, HostState, Rollout};
use bohp::rl::model::RlModelKind;
use bohp::rl::replay::{Replay, ReplayLoss};

use crate::check::{Tolerances, recurrent_groups};

mod agents;
pub use agents::{dump_fewshot, dump_rl};

/// Schema identifier written in every dump. Version 2 added `produced_by`, the recurrent
/// family, `clamp`, and `indices` on sampled arrays; version 3 the reinforcement-learning
/// family (`rl`, and `targets` absent there); version 4 the recurrent network's modulator
/// (`modulation`, parameters `w_m`, `b_m`); version 5 the single layer's (the same section and
/// names, `w_m` `[n_out, 1]`).
pub const SCHEMA: &str = "bohp-gradcheck-dump/5";

/// The few-shot layer's traces after each support step, as `(H, eligibility, modulation)` rows.
pub type FewShotTraces = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>);

/// One method's gradients for a dump: its name, the gradients, and the flat indices checked
/// per group when only some entries were computed.
pub type MethodGrads<G> = (String, G, Option<Vec<Vec<usize>>>);

/// What produced a dump.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Producer {
    /// `single-layer` or `recurrent`.
    pub family: String,
    /// Task name.
    pub task: String,
    /// The trace's rule, with its constants (`hebb`, `oja`, `clipped(±c)`).
    pub rule: String,
    /// `learned`, `none` or `nonnegative`.
    pub plasticity: String,
    /// Seed of the parameters and the episode.
    pub seed: u64,
    /// Backend of the autodiff gradients.
    pub device: String,
    /// Precision of the autodiff gradients (every other method runs in f64).
    pub dtype: String,
    /// The reference method (`analytic`, `rtrl` or `fused`).
    pub reference: String,
    /// The reference's recursion (`correct`, or the known-wrong one asked for).
    pub recursion: String,
    /// The comparisons made, `<method> vs <reference>`.
    pub engines: Vec<String>,
    /// The tolerances applied.
    pub tolerances: Tolerances,
}

/// A tensor as shape and row-major values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Array {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major; with `indices`, only the entries at those flat indices.
    pub values: Vec<f64>,
    /// The flat indices of `values` when only some entries were computed (sampled finite
    /// differences).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<usize>>,
}

impl Array {
    /// Every entry of a tensor of `shape`.
    pub fn full(shape: Vec<usize>, values: Vec<f64>) -> Array {
        Array {
            shape,
            values,
            indices: None,
        }
    }
}

/// The dumped episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dump {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// What produced it.
    pub produced_by: Producer,
    /// Task name.
    pub task: String,
    /// Equations and conventions, in words.
    pub conventions: Conventions,
    /// Single layer: the trace rate γ (fixed). The recurrent network's rate is the parameter
    /// `eta`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Parameters. Single layer: `w`, `alpha` `[n_in, n_out]`, `b` `[n_out]`, and for the
    /// labelled tasks `readout.v` `[n_out, classes]`, `readout.c` `[classes]`. Recurrent:
    /// `w` `[N, N]`, `alpha` `[N, N]` or `[1, 1]`, `eta` `[1]`.
    pub parameters: BTreeMap<String, Array>,
    /// Inputs, `[steps, n_in]` (recurrent: `u(t)`, `[steps, N]`).
    pub inputs: Array,
    /// Recurrent: the clamp mask `c(t)`, `[steps, N]`, when inputs clamp their neurons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamp: Option<Array>,
    /// Targets (supervised families; absent for reinforcement learning, see `rl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<DumpTargets>,
    /// Outputs `y(t)`, `[steps, n_out]` (recurrent: `[steps, N]`).
    pub outputs: Array,
    /// Single layer: readout logits `z(t)`, `[steps, classes]` (labelled tasks; empty
    /// otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Array>,
    /// Traces `H(t)` after each step, `[steps, n_in, n_out]` (recurrent: `[steps, N, N]`).
    pub traces: Array,
    /// Few-shot (Omniglot): the plastic layer's episode (embeddings, labels, mask, targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub few_shot: Option<FewShotEpisode>,
    /// Reinforcement learning: what the episode did (actions, rewards, returns, advantages,
    /// the policy, values, modulation, eligibility traces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rl: Option<RlEpisode>,
    /// A modulated single layer or recurrent network: `M(t)` and the eligibility traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modulation: Option<ModulatedEpisode>,
    /// The loss.
    pub loss: f64,
    /// dL/dθ by each method (`analytic` or `rtrl`, `autodiff`, `fused`,
    /// `finite_differences`), per parameter.
    pub gradients: BTreeMap<String, BTreeMap<String, Array>>,
}

/// A modulated network's episode (single layer, recurrent), beside `outputs` and `traces`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModulatedEpisode {
    /// `simple` or `retroactive`.
    pub kind: String,
    /// `M(t) = tanh(y(t) . w_m + b_m)` after each step, `[steps]`.
    pub signal: Array,
    /// Retroactive: the eligibility traces `E(t)` after each step, `[steps, N, N]` (single
    /// layer: `[steps, n_in, n_out]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligibility: Option<Array>,
}

/// What one reinforcement-learning episode did, beside the dump's `inputs` (observations
/// `[steps, I]`), `outputs` (`h(t)`, `[steps, N]`) and `traces` (`H` after each step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlEpisode {
    /// The action taken at each step, `[steps]` (maze: 0 up (row − 1), 1 right (column + 1),
    /// 2 down (row + 1), 3 left (column − 1); bandit: the arm; cue: 1 responds at Go).
    pub actions: Vec<usize>,
    /// The reward after each step's action, `[steps]`.
    pub rewards: Vec<f64>,
    /// The discounted returns `R_t` (f32 arithmetic, as trained), `[steps]`.
    pub returns: Vec<f64>,
    /// `R_t − V_t`, held fixed in the policy term, `[steps]`.
    pub advantages: Vec<f64>,
    /// The policy `p_t`, `[steps, A]`.
    pub probabilities: Array,
    /// `V_t`, `[steps]`.
    pub values: Vec<f64>,
    /// `M(t)`, `[steps]` (0 without modulation).
    pub modulation: Vec<f64>,
    /// The eligibility traces `E` after each step, `[steps, N, N]` (retroactive only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligibility: Option<Array>,
    /// Discount, value and exploration coefficients, and the exploration term.
    pub discount: f64,
    /// `c_v`.
    pub value_coef: f64,
    /// `c_e`.
    pub exploration_coef: f64,
    /// `sum-p2` or `entropy`.
    pub exploration: String,
}

/// One few-shot episode's plastic layer, beside the dump's `inputs` (the support embeddings,
/// `[S, C]`: the presynaptic activities of the support steps), `outputs` (the queries' logits,
/// `[Q, O]`) and `traces` (`H` after each support step, `[S, C, O]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FewShotEpisode {
    /// The support labels, one-hot on the output units, `[S, O]` (the postsynaptic activities).
    pub support_labels: Array,
    /// The queries' embeddings, `[Q, C]`.
    pub queries: Array,
    /// 0 on the episode's classes, −10⁴ on the other units, `[O]`.
    pub mask: Vec<f64>,
    /// Each query's unit, `[Q]`.
    pub targets: Vec<usize>,
    /// `M_s`, `[S]` (with a modulator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modulation: Option<Vec<f64>>,
    /// The eligibility traces after each support step, `[S, C, O]` (retroactive modulation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligibility: Option<Array>,
}

/// The equations the dump follows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conventions {
    /// The step.
    pub step: &'static str,
    /// The trace's rule.
    pub trace: String,
    /// The loss.
    pub loss: &'static str,
}

/// Targets of the dumped episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DumpTargets {
    /// Completion, and the recurrent tasks: the pattern the output at the last step is scored
    /// against (recurrent: its first `values.len()` neurons).
    Pattern {
        /// `[n_out]` (recurrent: `[n_targets]`).
        values: Vec<f64>,
    },
    /// Labelled tasks: a class per step and whether the step is scored.
    Labels {
        /// `[steps]`.
        classes: Vec<usize>,
        /// `[steps]`.
        scored: Vec<bool>,
    },
}

fn param_arrays(p: &Params) -> BTreeMap<String, Array> {
    shaped(p.n_in, p.n_out, p.classes(), &p.groups())
}

fn shaped(
    n_in: usize,
    n_out: usize,
    classes: usize,
    groups: &[(&'static str, &[f64])],
) -> BTreeMap<String, Array> {
    groups
        .iter()
        .map(|(name, values)| {
            let shape = match *name {
                "w" | "alpha" => vec![n_in, n_out],
                "b" => vec![n_out],
                "w_m" => vec![n_out, 1],
                "b_m" => vec![1],
                "readout.v" => vec![n_out, classes],
                _ => vec![classes],
            };
            (name.to_string(), Array::full(shape, values.to_vec()))
        })
        .collect()
}

/// Builds the single-layer dump of a one-episode `batch`.
pub fn dump_single(
    produced_by: Producer,
    task: &Task,
    params: &Params,
    batch: &EpisodeBatch,
    trace: &EpisodeTrace,
    loss: f64,
    gradients: &[(&str, &Grads)],
) -> Dump {
    assert_eq!(batch.batch, 1, "a dump holds one episode");
    let steps = batch.steps;
    let flat = |rows: &[Vec<f64>], width: usize| {
        Array::full(
            vec![rows.len(), width],
            rows.iter().flatten().copied().collect(),
        )
    };
    Dump {
        schema: SCHEMA,
        produced_by,
        task: task.kind.to_string(),
        conventions: Conventions {
            step: "y_j(t) = tanh( sum_k (w_kj + alpha_kj * H_kj(t-1)) * x_k(t) + b_j ); \
                   labelled tasks: z(t) = y(t) . v + c",
            trace: match params.modulated().then_some(params.modulation) {
                Some(Modulation::Retroactive) => format!(
                    "M(t) = tanh(y(t) . w_m + b_m); {} (pre = x_k(t), post = y_j(t), eta = gamma, c = {}); H(0) = E(0) = 0",
                    Retroactive::EQUATION,
                    params.rule.clip
                ),
                Some(_) => format!(
                    "M(t) = tanh(y(t) . w_m + b_m); H_kj(t) = f(H_kj(t-1), pre = x_k(t), post = y_j(t), eta = M(t)) with f: {}; H(0) = 0",
                    params.rule.equation()
                ),
                None => format!(
                    "H_kj(t) = f(H_kj(t-1), pre = x_k(t), post = y_j(t), eta = gamma) with f: {}; H(0) = 0 \
                     (hebb: gamma on the new product; the original code's ALPHATRACE = 1 - gamma)",
                    params.rule.equation()
                ),
            },
            loss: "completion: sum_j (y_j(T-1) - target_j)^2; labelled: mean over scored \
                   steps of -log softmax(z(t))[class(t)]",
        },
        gamma: Some(params.gamma),
        parameters: param_arrays(params),
        inputs: Array::full(vec![steps, batch.n_in], batch.inputs.clone()),
        clamp: None,
        targets: Some(match &batch.targets {
            Targets::Pattern { values } => DumpTargets::Pattern {
                values: values.clone(),
            },
            Targets::Labels { classes, scored } => DumpTargets::Labels {
                classes: classes.clone(),
                scored: scored.clone(),
            },
        }),
        few_shot: None,
        rl: None,
        modulation: params.modulated().then(|| {
            let retro = params.modulation == Modulation::Retroactive;
            ModulatedEpisode {
                kind: params.modulation.name().to_string(),
                signal: Array::full(vec![steps], trace.m.clone()),
                eligibility: retro.then(|| {
                    Array::full(
                        vec![steps, params.n_in, params.n_out],
                        trace.e.iter().flatten().copied().collect(),
                    )
                }),
            }
        }),
        outputs: flat(&trace.y, params.n_out),
        logits: Some(if params.classes() > 0 {
            flat(&trace.logits, params.classes())
        } else {
            Array::full(vec![steps, 0], Vec::new())
        }),
        traces: Array::full(
            vec![steps, params.n_in, params.n_out],
            trace.h.iter().flatten().copied().collect(),
        ),
        loss,
        gradients: gradients
            .iter()
            .map(|(name, g)| {
                (
                    name.to_string(),
                    shaped(params.n_in, params.n_out, params.classes(), &g.groups()),
                )
            })
            .collect(),
    }
}

/// Builds the recurrent dump of a one-episode `ep`; each gradient set may carry the indices it
/// was computed on (sampled finite differences).
pub fn dump_recurrent(
    produced_by: Producer,
    task: &str,
    net: &HostRnn<f64>,
    ep: &HostEpisodes<'_, f64>,
    loss: f64,
    gradients: &[MethodGrads<HostGrads>],
) -> Dump {
    assert_eq!(ep.batch, 1, "a dump holds one episode");
    let (n, steps) = (net.n, ep.steps);
    let alpha_shape = if net.alpha.len() == 1 {
        vec![1, 1]
    } else {
        vec![n, n]
    };
    let shape_of = |name: &str| match name {
        "w" => vec![n, n],
        "alpha" => alpha_shape.clone(),
        "w_m" => vec![n, 1],
        _ => vec![1],
    };
    let mut parameters = BTreeMap::new();
    parameters.insert("w".to_string(), Array::full(vec![n, n], net.w.clone()));
    parameters.insert(
        "alpha".to_string(),
        Array::full(alpha_shape.clone(), net.alpha.clone()),
    );
    parameters.insert("eta".to_string(), Array::full(vec![1], vec![net.eta]));
    let states = net.episode_states(ep);
    let modulation = net.modulator.as_ref().map(|m| {
        parameters.insert("w_m".to_string(), Array::full(vec![n, 1], m.w.clone()));
        parameters.insert("b_m".to_string(), Array::full(vec![1], vec![m.b]));
        let retro = m.modulation == Modulation::Retroactive;
        ModulatedEpisode {
            kind: m.modulation.name().to_string(),
            signal: Array::full(vec![steps], states.modulation.clone()),
            eligibility: retro.then(|| Array::full(vec![steps, n, n], states.eligibility.clone())),
        }
    });
    let (ys, traces) = (states.ys, states.traces);
    Dump {
        schema: SCHEMA,
        produced_by,
        task: task.to_string(),
        conventions: Conventions {
            step: "y(t) = c(t) * u(t) + (1 - c(t)) * tanh( y(t-1) . (W + alpha * H(t-1)) + u(t) ), y(0) = 0 \
                   (row vectors; alpha of shape [1, 1] is shared by every connection; c = 0 without clamp)",
            trace: if let Some(m) = &net.modulator {
                match m.modulation {
                    Modulation::Retroactive => format!(
                        "M(t) = tanh(y(t) . w_m + b_m); {} (pre = y_i(t-1), post = y_j(t), c = {}); H(0) = E(0) = 0",
                        Retroactive::EQUATION,
                        net.rule.clip
                    ),
                    _ => format!(
                        "M(t) = tanh(y(t) . w_m + b_m); H_ij(t) = f(H_ij(t-1), pre = y_i(t-1), post = y_j(t), eta = M(t)) with f: {}; H(0) = 0",
                        net.rule.equation()
                    ),
                }
            } else if net.plastic {
                format!(
                    "H_ij(t) = f(H_ij(t-1), pre = y_i(t-1), post = y_j(t), eta) with f: {}; H(0) = 0",
                    net.rule.equation()
                )
            } else {
                "none: plasticity = none (alpha = 0, eta = 0, not trained; H stays 0)".to_string()
            },
            loss: "sum_j (y_j(T) - target_j)^2 over the first len(targets) neurons, last step T",
        },
        gamma: None,
        parameters,
        inputs: Array::full(vec![steps, n], ep.inputs.to_vec()),
        clamp: ep.clamp.map(|c| Array::full(vec![steps, n], c.to_vec())),
        targets: Some(DumpTargets::Pattern {
            values: ep.targets.to_vec(),
        }),
        few_shot: None,
        rl: None,
        modulation,
        outputs: Array::full(vec![steps, n], ys),
        logits: None,
        traces: Array::full(vec![steps, n, n], traces),
        loss,
        gradients: gradients
            .iter()
            .map(|(method, g, indices)| {
                let groups = recurrent_groups(g, net)
                    .into_iter()
                    .enumerate()
                    .map(|(k, (name, values))| {
                        let array = match indices {
                            Some(idx) => Array {
                                shape: shape_of(name),
                                values: idx[k].iter().map(|&i| values[i]).collect(),
                                indices: Some(idx[k].clone()),
                            },
                            None => Array::full(shape_of(name), values.to_vec()),
                        };
                        (name.to_string(), array)
                    })
                    .collect();
                (method.clone(), groups)
            })
            .collect(),
    }
}

/// The shapes of the actor-critic's parameter groups, as in the burn module.
fn ac_shapes(net: &HostAc) -> Vec<Vec<usize>> {
    let (i, n, a) = net.sizes;
    vec![
        vec![i, n],
        vec![n, n],
        vec![n],
        vec![n, n],
        vec![n, a],
        vec![a],
        vec![n, 1],
        vec![1],
        vec![n, 1],
        vec![1],
        vec![1, n],
        vec![1, n],
        vec![1],
    ]
}
