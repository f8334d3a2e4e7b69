//! One episode as JSON, so anyone can recompute it in another framework. The schema is
//! documented in `docs/gradients.md`.

use bohp::tasks::{EpisodeBatch, Targets, Task};
use std::collections::BTreeMap;

use serde::Serialize;

use crate::analytic::{EpisodeTrace, Grads, Params};

/// Schema identifier written in every dump.
pub const SCHEMA: &str = "bohp-gradcheck-dump/1";

/// A tensor as shape and row-major values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Array {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f64>,
}

/// The dumped episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dump {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Task name.
    pub task: String,
    /// Equations and conventions, in words.
    pub conventions: Conventions,
    /// Trace rate γ.
    pub gamma: f64,
    /// Parameters: `w`, `alpha` `[n_in, n_out]`, `b` `[n_out]`, and for the labelled tasks
    /// `readout.v` `[n_out, classes]`, `readout.c` `[classes]`.
    pub parameters: BTreeMap<String, Array>,
    /// Inputs, `[steps, n_in]`.
    pub inputs: Array,
    /// Targets.
    pub targets: DumpTargets,
    /// Plastic-layer outputs `y(t)`, `[steps, n_out]`.
    pub outputs: Array,
    /// Readout logits `z(t)`, `[steps, classes]` (labelled tasks; empty otherwise).
    pub logits: Array,
    /// Traces `H(t)` after each step, `[steps, n_in, n_out]`.
    pub traces: Array,
    /// The loss.
    pub loss: f64,
    /// dL/dθ by each method: `analytic`, `autodiff`, `finite_differences`.
    pub gradients: BTreeMap<String, BTreeMap<String, Array>>,
}

/// The equations the dump follows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conventions {
    /// The step.
    pub step: &'static str,
    /// The trace.
    pub trace: &'static str,
    /// The loss.
    pub loss: &'static str,
}

/// Targets of the dumped episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DumpTargets {
    /// Completion: the pattern the output at the last step is scored against.
    Pattern {
        /// `[n_out]`.
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

fn shaped(n_in: usize, n_out: usize, classes: usize, groups: &[(&'static str, &[f64])]) -> BTreeMap<String, Array> {
    groups
        .iter()
        .map(|(name, values)| {
            let shape = match *name {
                "w" | "alpha" => vec![n_in, n_out],
                "b" => vec![n_out],
                "readout.v" => vec![n_out, classes],
                _ => vec![classes],
            };
            (
                name.to_string(),
                Array {
                    shape,
                    values: values.to_vec(),
                },
            )
        })
        .collect()
}

/// Builds the dump of a one-episode `batch`.
pub fn dump(task: &Task, params: &Params, batch: &EpisodeBatch, trace: &EpisodeTrace, loss: f64, gradients: &[(&str, &Grads)]) -> Dump {
    assert_eq!(batch.batch, 1, "a dump holds one episode");
    let steps = batch.steps;
    let flat = |rows: &[Vec<f64>], width: usize| Array {
        shape: vec![rows.len(), width],
        values: rows.iter().flatten().copied().collect(),
    };
    Dump {
        schema: SCHEMA,
        task: task.kind.to_string(),
        conventions: Conventions {
            step: "y_j(t) = tanh( sum_k (w_kj + alpha_kj * H_kj(t-1)) * x_k(t) + b_j ); \
                   labelled tasks: z(t) = y(t) . v + c",
            trace: "H_kj(t) = (1 - gamma) * H_kj(t-1) + gamma * x_k(t) * y_j(t), H(0) = 0 \
                    (gamma on the new product; the original code's ALPHATRACE = 1 - gamma)",
            loss: "completion: sum_j (y_j(T-1) - target_j)^2; labelled: mean over scored \
                   steps of -log softmax(z(t))[class(t)]",
        },
        gamma: params.gamma,
        parameters: param_arrays(params),
        inputs: Array {
            shape: vec![steps, batch.n_in],
            values: batch.inputs.clone(),
        },
        targets: match &batch.targets {
            Targets::Pattern { values } => DumpTargets::Pattern {
                values: values.clone(),
            },
            Targets::Labels { classes, scored } => DumpTargets::Labels {
                classes: classes.clone(),
                scored: scored.clone(),
            },
        },
        outputs: flat(&trace.y, params.n_out),
        logits: if params.classes() > 0 {
            flat(&trace.logits, params.classes())
        } else {
            Array {
                shape: vec![steps, 0],
                values: Vec::new(),
            }
        },
        traces: Array {
            shape: vec![steps, params.n_in, params.n_out],
            values: trace.h.iter().flatten().copied().collect(),
        },
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
