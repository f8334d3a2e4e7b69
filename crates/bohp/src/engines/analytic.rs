//! The analytic BOHP gradient of the single layer: the forward-mode recursion of
//! `docs/gradients.md`, in plain f64, and the [`Analytic`] engine that trains with it.
//!
//! Nothing here uses burn: it is an independent computation of the same loss and gradients.
//!
//! For a parameter θ of output `j` (`w_kj`, `α_kj` or `b_j`), with `D(t) = ∂y_j(t)/∂θ` and
//! `G_l(t) = ∂H_lj(t)/∂θ`, and the rule's local derivatives `f_H`, `f_post` at
//! `(H_lj(t-1), x_l(t), y_j(t), γ)` ([`crate::rules::jvp`]):
//!
//! ```text
//! ∂raw_j(t)/∂θ = direct(t) + Σ_l α_lj · x_l(t) · G_l(t-1)
//!     direct = x_k(t) for θ = w_kj;  H_kj(t-1) · x_k(t) for θ = α_kj;  1 for θ = b_j
//! D(t)   = (1 - y_j(t)²) · ∂raw_j(t)/∂θ
//! G_l(t) = f_H · G_l(t-1) + f_post · D(t),      G(0) = 0
//!        = (1 - γ) · G_l(t-1) + γ · x_l(t) · D(t)   for the decaying Hebbian trace (Eq. 1)
//! dL/dθ  = Σ_t ∂L/∂y_j(t) · D(t)
//! ```
//!
//! Parameters of output `j` reach only `y_j` and column `j` of `H`, so each column is
//! recursed independently; `∂L/∂y_j(t)` is the direct partial (through the loss, or through
//! the readout and the softmax cross-entropy).

use serde::{Deserialize, Serialize};

use crate::network::PlasticNet;
use crate::rules::{RuleKernel, RuleSpec};
use crate::tasks::{EpisodeBatch, Measures, Targets};
use crate::train::GradientEngine;

/// Which recursion to run. Only [`Variant::Correct`] is right; the others reproduce the paper's
/// and the original code's mistakes, so that tests can show the checker catches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The recursion derived from Eq. 1 (γ on the new product) with the tanh derivative `1 - y²`.
    Correct,
    /// The paper's Eq. 3-4 weighting of past terms, `(1-γ)·γ^(tz-tu)`:
    /// `G(t) = γ·G(t-1) + γ(1-γ)·x(t)·D(t)`.
    PaperWeighting,
    /// The original code's tanh derivative applied to an output that is already a tanh:
    /// `1 - tanh(y)²`.
    DoubleTanh,
    /// The step reads the trace `H(t)` where `H(t-1)` is due (in the α direct term).
    NewTrace,
}

/// The network's parameters on the host, row-major, with the same layout as the burn model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Inputs of the plastic layer.
    pub n_in: usize,
    /// Outputs of the plastic layer.
    pub n_out: usize,
    /// Trace rate γ (Eq. 1).
    pub gamma: f64,
    /// The trace's rule.
    #[serde(default)]
    pub rule: RuleSpec,
    /// `w`, `[n_in, n_out]`.
    pub w: Vec<f64>,
    /// `α`, `[n_in, n_out]`.
    pub alpha: Vec<f64>,
    /// `b`, `[n_out]`.
    pub b: Vec<f64>,
    /// Readout weights `v`, `[n_out, classes]`, for the labelled tasks.
    pub readout_v: Option<Vec<f64>>,
    /// Readout biases `c`, `[classes]`.
    pub readout_c: Option<Vec<f64>>,
}

/// Gradients of the loss, shaped like [`Params`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grads {
    /// dL/dw.
    pub w: Vec<f64>,
    /// dL/dα.
    pub alpha: Vec<f64>,
    /// dL/db.
    pub b: Vec<f64>,
    /// dL/dv (labelled tasks).
    pub readout_v: Option<Vec<f64>>,
    /// dL/dc (labelled tasks).
    pub readout_c: Option<Vec<f64>>,
}

/// `(name, values)` of each parameter group, in the burn model's order.
fn named_groups<'a>(
    w: &'a [f64],
    alpha: &'a [f64],
    b: &'a [f64],
    readout: (Option<&'a Vec<f64>>, Option<&'a Vec<f64>>),
) -> Vec<(&'static str, &'a [f64])> {
    let mut out = vec![("w", w), ("alpha", alpha), ("b", b)];
    if let (Some(v), Some(c)) = readout {
        out.push(("readout.v", v.as_slice()));
        out.push(("readout.c", c.as_slice()));
    }
    out
}

impl Grads {
    /// Parameter groups by name, as `(name, values)`.
    pub fn groups(&self) -> Vec<(&'static str, &[f64])> {
        named_groups(
            &self.w,
            &self.alpha,
            &self.b,
            (self.readout_v.as_ref(), self.readout_c.as_ref()),
        )
    }
}

impl Grads {
    /// The gradients laid out as `values` (named as [`PlasticNet::parameter_values`]), zeros for
    /// a group this set lacks: what a host engine hands the trainer.
    pub fn in_order_of(&self, values: &[(&'static str, Vec<f64>)]) -> Vec<Vec<f64>> {
        let groups = self.groups();
        values
            .iter()
            .map(|(name, v)| {
                groups
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| vec![0.0; v.len()], |(_, g)| g.to_vec())
            })
            .collect()
    }
}

impl Params {
    /// Parameter groups by name, as `(name, values)`, in the order of [`Grads::groups`].
    pub fn groups(&self) -> Vec<(&'static str, &[f64])> {
        named_groups(
            &self.w,
            &self.alpha,
            &self.b,
            (self.readout_v.as_ref(), self.readout_c.as_ref()),
        )
    }

    /// Mutable access to one parameter group by its index in [`Params::groups`].
    pub fn group_mut(&mut self, group: usize) -> &mut Vec<f64> {
        match group {
            0 => &mut self.w,
            1 => &mut self.alpha,
            2 => &mut self.b,
            3 => self.readout_v.as_mut().expect("readout.v"),
            4 => self.readout_c.as_mut().expect("readout.c"),
            _ => panic!("no parameter group {group}"),
        }
    }

    /// Number of readout classes (0 without a readout).
    pub fn classes(&self) -> usize {
        self.readout_c.as_ref().map_or(0, Vec::len)
    }
}

/// What one episode did, step by step (for dumps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeTrace {
    /// Plastic-layer outputs `y(t)`, `[steps][n_out]`.
    pub y: Vec<Vec<f64>>,
    /// Readout logits `z(t)`, `[steps][classes]` (labelled tasks).
    pub logits: Vec<Vec<f64>>,
    /// Traces `H(t)` after each step, `[steps][n_in * n_out]`.
    pub h: Vec<Vec<f64>>,
}

/// The loss of a batch, its gradients, and (if asked) each episode's trace.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The loss, as `bohp::tasks::Task::measure` defines it (batch mean).
    pub loss: f64,
    /// Loss, `error` and `error_code`, as `bohp::tasks::Task::measure` defines them.
    pub measures: Measures,
    /// Its gradients.
    pub grads: Grads,
    /// Per-episode traces, when requested.
    pub traces: Vec<EpisodeTrace>,
}

/// `H(t)` of column `j` from `H(t-1)`: the rule with `pre = x`, `post = y_j`, rate γ.
fn update_column<R: RuleKernel>(
    rule: &R,
    h: &mut [f64],
    x: &[f64],
    yj: f64,
    j: usize,
    n_out: usize,
    gamma: f64,
) {
    for (l, &xl) in x.iter().enumerate() {
        let i = l * n_out + j;
        h[i] = rule.local(h[i], xl, yj, gamma).value;
    }
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn log_softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

/// The loss of `batch` under `params`, without gradients.
pub fn loss(params: &Params, batch: &EpisodeBatch) -> f64 {
    crate::with_rule!(params.rule, |k| run(
        &k,
        params,
        batch,
        Variant::Correct,
        false,
        false
    )
    .loss)
}

/// The loss of `batch` and its gradients by the forward-mode recursion (`variant` selects the
/// right one or a known-wrong one). With `record`, each episode's outputs and traces are kept.
pub fn evaluate(
    params: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    record: bool,
) -> Evaluation {
    crate::with_rule!(params.rule, |k| run(
        &k, params, batch, variant, true, record
    ))
}

/// [`evaluate`] with the trace's rule given as a [`RuleKernel`] (`params.rule` is not read):
/// checks pass a known-wrong rule here ([`crate::rules::faults`]).
pub fn evaluate_with<R: RuleKernel>(
    rule: &R,
    params: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    record: bool,
) -> Evaluation {
    run(rule, params, batch, variant, true, record)
}

fn run<R: RuleKernel>(
    rule: &R,
    p: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    grads: bool,
    record: bool,
) -> Evaluation {
    let (n_in, n_out, gamma) = (p.n_in, p.n_out, p.gamma);
    assert_eq!(
        batch.n_in, n_in,
        "episode input size must match the network"
    );
    let steps = batch.steps;
    let bsz = batch.batch;
    let classes = p.classes();
    // Number of θ per output column: w_kj (n_in), α_kj (n_in), b_j.
    let nq = 2 * n_in + 1;
    let scored_steps = batch.scored_steps();
    let mut out = Grads {
        w: vec![0.0; n_in * n_out],
        alpha: vec![0.0; n_in * n_out],
        b: vec![0.0; n_out],
        readout_v: (classes > 0).then(|| vec![0.0; n_out * classes]),
        readout_c: (classes > 0).then(|| vec![0.0; classes]),
    };
    let mut total_loss = 0.0;
    let mut total_error = 0.0;
    let mut traces = Vec::new();

    // Per-episode state, reused.
    let mut h = vec![0.0; n_in * n_out]; // H[k * n_out + j]
    let mut g = vec![0.0; n_out * n_in * nq]; // G_j[l][q] at (j * n_in + l) * nq + q
    let mut y = vec![0.0; n_out];
    let mut d = vec![0.0; n_out * nq]; // D_j[q]
    let mut draw = vec![0.0; nq];
    let mut a = vec![0.0; n_in];

    for e in 0..bsz {
        h.iter_mut().for_each(|v| *v = 0.0);
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut trace = EpisodeTrace::default();
        for t in 0..steps {
            let x = &batch.inputs[(t * bsz + e) * n_in..(t * bsz + e + 1) * n_in];
            // Forward: y_j = tanh(Σ_k (w + α H) x + b), with H = H(t-1).
            for j in 0..n_out {
                let mut raw = p.b[j];
                for k in 0..n_in {
                    raw += (p.w[k * n_out + j] + p.alpha[k * n_out + j] * h[k * n_out + j]) * x[k];
                }
                y[j] = raw.tanh();
            }
            // Direct partials of the loss wrt y_j(t).
            let mut dl_dy = vec![0.0; n_out];
            let mut logits = Vec::new();
            match &batch.targets {
                Targets::Pattern { values } => {
                    if t == steps - 1 {
                        let target = &values[e * n_out..(e + 1) * n_out];
                        for j in 0..n_out {
                            let diff = y[j] - target[j];
                            total_loss += diff * diff / bsz as f64;
                            total_error += diff.abs() / bsz as f64;
                            dl_dy[j] = 2.0 * diff / bsz as f64;
                        }
                    }
                }
                Targets::Labels {
                    classes: cls,
                    scored,
                } => {
                    let v = p.readout_v.as_ref().expect("labelled tasks have a readout");
                    let c = p.readout_c.as_ref().expect("labelled tasks have a readout");
                    logits = (0..classes)
                        .map(|m| c[m] + (0..n_out).map(|j| y[j] * v[j * classes + m]).sum::<f64>())
                        .collect();
                    if scored[t] {
                        let norm = (bsz * scored_steps) as f64;
                        let lp = log_softmax(&logits);
                        total_loss -= lp[cls[t]] / norm;
                        let prob = softmax(&logits);
                        for m in 0..classes {
                            let target = if m == cls[t] { 1.0 } else { 0.0 };
                            total_error += (prob[m] - target).abs() / (norm * classes as f64);
                        }
                        if grads {
                            let dz: Vec<f64> = (0..classes)
                                .map(|m| (prob[m] - if m == cls[t] { 1.0 } else { 0.0 }) / norm)
                                .collect();
                            let gv = out.readout_v.as_mut().expect("readout grads");
                            let gc = out.readout_c.as_mut().expect("readout grads");
                            for m in 0..classes {
                                gc[m] += dz[m];
                                for j in 0..n_out {
                                    gv[j * classes + m] += y[j] * dz[m];
                                    dl_dy[j] += v[j * classes + m] * dz[m];
                                }
                            }
                        }
                    }
                }
            }
            // Column by column: the recursion of column j (which reads H(t-1) of column j
            // only), then H(t) of column j.
            for j in 0..n_out {
                if variant == Variant::NewTrace {
                    update_column(rule, &mut h, x, y[j], j, n_out, gamma);
                }
                if grads {
                    // a_l = α_lj x_l
                    for l in 0..n_in {
                        a[l] = p.alpha[l * n_out + j] * x[l];
                    }
                    for q in 0..nq {
                        draw[q] = if q < n_in {
                            x[q]
                        } else if q < 2 * n_in {
                            h[(q - n_in) * n_out + j] * x[q - n_in]
                        } else {
                            1.0
                        };
                    }
                    let gj = &g[j * n_in * nq..(j + 1) * n_in * nq];
                    for l in 0..n_in {
                        if a[l] != 0.0 {
                            let row = &gj[l * nq..(l + 1) * nq];
                            for q in 0..nq {
                                draw[q] += a[l] * row[q];
                            }
                        }
                    }
                    let slope = match variant {
                        Variant::DoubleTanh => 1.0 - y[j].tanh().powi(2),
                        _ => 1.0 - y[j] * y[j],
                    };
                    let dj = &mut d[j * nq..(j + 1) * nq];
                    for q in 0..nq {
                        dj[q] = slope * draw[q];
                    }
                    let gl = dl_dy[j];
                    if gl != 0.0 {
                        for k in 0..n_in {
                            out.w[k * n_out + j] += gl * dj[k];
                            out.alpha[k * n_out + j] += gl * dj[n_in + k];
                        }
                        out.b[j] += gl * dj[2 * n_in];
                    }
                    // G_l(t) from G_l(t-1) and D(t): the rule's forward-mode step (x is an
                    // input: no tangent; γ is fixed: no tangent).
                    let gj = &mut g[j * n_in * nq..(j + 1) * n_in * nq];
                    for l in 0..n_in {
                        let local = rule.local(h[l * n_out + j], x[l], y[j], gamma);
                        let row = &mut gj[l * nq..(l + 1) * nq];
                        match variant {
                            Variant::PaperWeighting => {
                                let xl = gamma * (1.0 - gamma) * x[l];
                                for q in 0..nq {
                                    row[q] = gamma * row[q] + xl * dj[q];
                                }
                            }
                            _ => {
                                // jvp(local, G, 0, D, 0), without the zero tangents.
                                let (d_h, d_post) = (local.d_h, local.d_post);
                                for q in 0..nq {
                                    row[q] = d_h * row[q] + d_post * dj[q];
                                }
                            }
                        }
                    }
                }
                if variant != Variant::NewTrace {
                    update_column(rule, &mut h, x, y[j], j, n_out, gamma);
                }
            }
            if record {
                trace.y.push(y.clone());
                trace.logits.push(logits);
                trace.h.push(h.clone());
            }
        }
        if record {
            traces.push(trace);
        }
    }
    Evaluation {
        loss: total_loss,
        measures: batch.measures(total_loss, total_error),
        grads: out,
        traces,
    }
}

/// The host parameters of a burn model.
pub fn params_of(model: &PlasticNet) -> Params {
    params_from_values(model, &model.parameter_values())
}

/// The parameters of a network shaped like `model`, with the values `values` (named as
/// [`PlasticNet::parameter_values`]).
pub fn params_from_values(model: &PlasticNet, values: &[(&'static str, Vec<f64>)]) -> Params {
    let get = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    Params {
        n_in: model.plastic.n_in(),
        n_out: model.plastic.n_out(),
        gamma: model.plastic.gamma,
        rule: model.plastic.rule,
        w: get("w").expect("w"),
        alpha: get("alpha").expect("alpha"),
        b: get("b").expect("b"),
        readout_v: get("readout.v"),
        readout_c: get("readout.c"),
    }
}

/// Training with the analytic gradients (`train.engine = "analytic"`): the forward-mode
/// recursion above, computed on the host in f64 and handed to the optimizer (the trainer's
/// host Adam, or burn's) in the model's precision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Analytic;

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
        let eval = evaluate(
            &params_from_values(model, values),
            batch,
            Variant::Correct,
            false,
        );
        Some((eval.measures, eval.grads.in_order_of(values)))
    }
}
