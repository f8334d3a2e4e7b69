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
//!
//! A modulator `M(t) = tanh(Σ_j y_j(t)·w_Mj + b_M)` couples the columns: every parameter
//! reaches every `y_j` through `M`. Modulated layers therefore carry the tangent of every
//! output and trace entry for every parameter θ (`S(·) = ∂·/∂θ`, `(n_in·n_out)·P` numbers for
//! `P` parameters; `run_modulated`):
//!
//! ```text
//! S(y_j)   = (1 - y_j²) · ( direct_j + Σ_k α_kj · x_k · S(H_kj(t-1)) )
//! S(M)     = (1 - M²) · ( Σ_j w_Mj · S(y_j) + [θ = w_Mj] · y_j + [θ = b_M] )
//! simple:       S(H_kj) = f_H · S(H_kj(t-1)) + f_post · S(y_j) + f_η · S(M)     (rate M(t))
//! retroactive:  S(H_kj) = ∂H'/∂H · S(H_kj(t-1)) + ∂H'/∂E · S(E_kj(t-1)) + ∂H'/∂M · S(M)
//!               S(E_kj) = (1 - γ) · S(E_kj(t-1)) + γ · x_k · S(y_j)
//! ```
//!
//! **Why this file is long** (about 840 lines): it is one derivation written out once: the
//! sensitivity recursion for every parameter group (w, α, b, the modulator's w_M and b_M, the
//! readout) under each of the three modulations, for the three tasks' losses, plus the
//! parameter and gradient layouts it shares with the fused engine. Split, each part would only
//! make sense beside the others; the equations above are the map.

use serde::{Deserialize, Serialize};

use crate::engines::GradientEngine;
use crate::rules::retroactive::TwoTraceKernel;
use crate::rules::{Modulation, Retroactive, RuleKernel, RuleSpec, jvp};
use crate::single::network::PlasticNet;
use crate::single::tasks::{EpisodeBatch, Measures, Targets};

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
    /// A modulated update's rate tangent taken from `M(t-1)` instead of `M(t)` (modulated
    /// layers only).
    PreviousModulation,
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
    /// How a modulator gates the update (with `w_m`, `b_m`).
    #[serde(default)]
    pub modulation: Modulation,
    /// `w`, `[n_in, n_out]`.
    pub w: Vec<f64>,
    /// `α`, `[n_in, n_out]`.
    pub alpha: Vec<f64>,
    /// `b`, `[n_out]`.
    pub b: Vec<f64>,
    /// The modulator's weights `w_M`, `[n_out]` (modulated layers).
    #[serde(default)]
    pub w_m: Option<Vec<f64>>,
    /// The modulator's bias `b_M`, `[1]`.
    #[serde(default)]
    pub b_m: Option<Vec<f64>>,
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
    /// dL/dw_M (modulated layers).
    #[serde(default)]
    pub w_m: Option<Vec<f64>>,
    /// dL/db_M (modulated layers).
    #[serde(default)]
    pub b_m: Option<Vec<f64>>,
    /// dL/dv (labelled tasks).
    pub readout_v: Option<Vec<f64>>,
    /// dL/dc (labelled tasks).
    pub readout_c: Option<Vec<f64>>,
}

/// `(name, values)` of each parameter group present, in the burn model's order
/// ([`PlasticNet::parameter_values`]): `w`, `alpha`, `b`, `w_m`, `b_m`, `readout.v`, `readout.c`.
fn named_groups(groups: [Option<&Vec<f64>>; 7]) -> Vec<(&'static str, &[f64])> {
    GROUP_NAMES
        .into_iter()
        .zip(groups)
        .filter_map(|(name, g)| g.map(|g| (name, g.as_slice())))
        .collect()
}

/// The names of the parameter groups, in order.
const GROUP_NAMES: [&str; 7] = ["w", "alpha", "b", "w_m", "b_m", "readout.v", "readout.c"];

impl Grads {
    /// Parameter groups by name, as `(name, values)`.
    pub fn groups(&self) -> Vec<(&'static str, &[f64])> {
        named_groups([
            Some(&self.w),
            Some(&self.alpha),
            Some(&self.b),
            self.w_m.as_ref(),
            self.b_m.as_ref(),
            self.readout_v.as_ref(),
            self.readout_c.as_ref(),
        ])
    }

    /// Zero gradients for every group of `p`.
    pub fn zeros_like(p: &Params) -> Grads {
        let zeros = |v: &Vec<f64>| vec![0.0; v.len()];
        Grads {
            w: zeros(&p.w),
            alpha: zeros(&p.alpha),
            b: zeros(&p.b),
            w_m: p.w_m.as_ref().map(zeros),
            b_m: p.b_m.as_ref().map(zeros),
            readout_v: p.readout_v.as_ref().map(zeros),
            readout_c: p.readout_c.as_ref().map(zeros),
        }
    }

    /// Gradients from `(name, values)` groups (as [`Grads::groups`] names them; `w`, `alpha`
    /// and `b` required).
    ///
    /// # Panics
    ///
    /// Panics if a required group is missing or a name is unknown.
    pub fn from_groups(groups: Vec<(&str, Vec<f64>)>) -> Grads {
        let mut out = Grads {
            w: Vec::new(),
            alpha: Vec::new(),
            b: Vec::new(),
            w_m: None,
            b_m: None,
            readout_v: None,
            readout_c: None,
        };
        let mut seen = [false; 3];
        for (name, v) in groups {
            match name {
                "w" => (out.w, seen[0]) = (v, true),
                "alpha" => (out.alpha, seen[1]) = (v, true),
                "b" => (out.b, seen[2]) = (v, true),
                "w_m" => out.w_m = Some(v),
                "b_m" => out.b_m = Some(v),
                "readout.v" => out.readout_v = Some(v),
                "readout.c" => out.readout_c = Some(v),
                other => panic!("no parameter group {other}"),
            }
        }
        assert!(seen.iter().all(|s| *s), "w, alpha and b are required");
        out
    }
}

impl Grads {
    /// The gradients laid out as `values` (named as [`PlasticNet::parameter_values`]), zeros for
    /// a group this set lacks: what a host engine hands the trainer.
    pub(crate) fn in_order_of<V: AsRef<[f64]>>(&self, values: &[(&str, V)]) -> Vec<Vec<f64>> {
        let groups = self.groups();
        values
            .iter()
            .map(|(name, v)| {
                groups
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| vec![0.0; v.as_ref().len()], |(_, g)| g.to_vec())
            })
            .collect()
    }
}

impl Params {
    /// Parameter groups by name, as `(name, values)`, in the order of [`Grads::groups`].
    pub fn groups(&self) -> Vec<(&'static str, &[f64])> {
        named_groups([
            Some(&self.w),
            Some(&self.alpha),
            Some(&self.b),
            self.w_m.as_ref(),
            self.b_m.as_ref(),
            self.readout_v.as_ref(),
            self.readout_c.as_ref(),
        ])
    }

    /// Mutable access to one parameter group by its index in [`Params::groups`].
    ///
    /// # Panics
    ///
    /// Panics if there is no such group.
    pub fn group_mut(&mut self, group: usize) -> &mut Vec<f64> {
        let present = [
            true,
            true,
            true,
            self.w_m.is_some(),
            self.b_m.is_some(),
            self.readout_v.is_some(),
            self.readout_c.is_some(),
        ];
        let slot = (0..7)
            .filter(|&i| present[i])
            .nth(group)
            .unwrap_or_else(|| panic!("no parameter group {group}"));
        match slot {
            0 => &mut self.w,
            1 => &mut self.alpha,
            2 => &mut self.b,
            3 => self.w_m.as_mut().expect("w_m"),
            4 => self.b_m.as_mut().expect("b_m"),
            5 => self.readout_v.as_mut().expect("readout.v"),
            _ => self.readout_c.as_mut().expect("readout.c"),
        }
    }

    /// Whether the layer has a modulator.
    pub fn modulated(&self) -> bool {
        self.modulation != Modulation::None && self.w_m.is_some() && self.b_m.is_some()
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
    /// The modulator's `M(t)`, `[steps]` (modulated layers; empty otherwise).
    #[serde(default)]
    pub m: Vec<f64>,
    /// Eligibility traces `E(t)` after each step, `[steps][n_in * n_out]` (retroactive
    /// modulation; empty otherwise).
    #[serde(default)]
    pub e: Vec<Vec<f64>>,
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

/// The loss terms of step `t` of episode `e`, whose outputs are `y`: adds the step's loss and
/// error (batch means) to `totals` and, with `grads`, the readout's gradients to `out`;
/// returns the direct partials `∂L/∂y_j(t)` and the logits (labelled tasks).
fn step_loss(
    p: &Params,
    batch: &EpisodeBatch,
    (e, t): (usize, usize),
    y: &[f64],
    grads: bool,
    out: &mut Grads,
    totals: &mut (f64, f64),
) -> (Vec<f64>, Vec<f64>) {
    let (n_out, classes) = (p.n_out, p.classes());
    let (steps, bsz) = (batch.steps, batch.batch);
    let scored_steps = batch.scored_steps();
    let mut dl_dy = vec![0.0; n_out];
    let mut logits = Vec::new();
    match &batch.targets {
        Targets::Pattern { values } => {
            if t == steps - 1 {
                let target = &values[e * n_out..(e + 1) * n_out];
                for j in 0..n_out {
                    let diff = y[j] - target[j];
                    totals.0 += diff * diff / bsz as f64;
                    totals.1 += diff.abs() / bsz as f64;
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
                totals.0 -= lp[cls[t]] / norm;
                let prob = softmax(&logits);
                for m in 0..classes {
                    let target = if m == cls[t] { 1.0 } else { 0.0 };
                    totals.1 += (prob[m] - target).abs() / (norm * classes as f64);
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
    (dl_dy, logits)
}

/// The loss of `batch` under `params`, without gradients.
pub fn loss(params: &Params, batch: &EpisodeBatch) -> f64 {
    dispatch(params, batch, Variant::Correct, false, false).loss
}

/// The loss of `batch` and its gradients by the forward-mode recursion (`variant` selects the
/// right one or a known-wrong one). With `record`, each episode's outputs and traces are kept.
///
/// # Panics
///
/// Panics on [`Variant::PaperWeighting`] with a modulator, and on
/// [`Variant::PreviousModulation`] without one (checks refuse both first).
pub fn evaluate(
    params: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    record: bool,
) -> Evaluation {
    dispatch(params, batch, variant, true, record)
}

fn dispatch(
    params: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    grads: bool,
    record: bool,
) -> Evaluation {
    let retro = Retroactive {
        bound: params.rule.clip,
    };
    crate::with_rule!(params.rule, |k| if params.modulated() {
        run_modulated(&k, &retro, params, batch, variant, grads, record)
    } else {
        run(&k, params, batch, variant, grads, record)
    })
}

/// [`evaluate`] with the trace's rule given as a [`RuleKernel`] and the retroactive rule as a
/// [`TwoTraceKernel`] (`params.rule` is not read): checks pass a known-wrong rule here
/// ([`crate::rules::faults`]).
pub fn evaluate_with<R: RuleKernel, T: TwoTraceKernel>(
    rule: &R,
    retro: &T,
    params: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    record: bool,
) -> Evaluation {
    if params.modulated() {
        run_modulated(rule, retro, params, batch, variant, true, record)
    } else {
        run(rule, params, batch, variant, true, record)
    }
}

/// The forward-mode recursion of a modulated layer (see the module's documentation): the
/// tangents of every output, trace and eligibility entry for every parameter of the plastic
/// layer, `P = 2·n_in·n_out + 2·n_out + 1` of them (`w`, `α`, `b`, `w_M`, `b_M` in that order).
fn run_modulated<R: RuleKernel, T: TwoTraceKernel>(
    rule: &R,
    retro: &T,
    p: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    grads: bool,
    record: bool,
) -> Evaluation {
    assert!(
        variant != Variant::PaperWeighting,
        "the paper's weighting is a recursion of the unmodulated decaying trace"
    );
    let (n_in, n_out, gamma) = (p.n_in, p.n_out, p.gamma);
    assert_eq!(
        batch.n_in, n_in,
        "episode input size must match the network"
    );
    let (w_m, b_m) = (
        p.w_m.as_ref().expect("a modulated layer has w_m"),
        p.b_m.as_ref().expect("a modulated layer has b_m")[0],
    );
    let retroactive = p.modulation == Modulation::Retroactive;
    let size = n_in * n_out;
    // Parameter offsets: w, α, b, w_M, b_M.
    let (pa, pb, pm) = (size, 2 * size, 2 * size + n_out);
    let np = if grads { pm + n_out + 1 } else { 0 };
    let (steps, bsz) = (batch.steps, batch.batch);
    let mut out = Grads::zeros_like(p);
    let mut totals = (0.0, 0.0);
    let mut traces = Vec::new();
    for ep in 0..bsz {
        let mut h = vec![0.0; size];
        let mut e = vec![0.0; if retroactive { size } else { 0 }];
        // Tangents S(H), S(E) `[k * n_out + j][θ]`, S(y) `[j][θ]`, S(M) `[θ]`.
        let mut sh = vec![0.0; size * np];
        let mut se = vec![0.0; if retroactive { size * np } else { 0 }];
        let mut sm_prev = vec![0.0; np];
        let mut trace = EpisodeTrace::default();
        for t in 0..steps {
            let x = &batch.inputs[(t * bsz + ep) * n_in..(t * bsz + ep + 1) * n_in];
            let y: Vec<f64> = (0..n_out)
                .map(|j| {
                    let raw = (0..n_in).fold(p.b[j], |raw, k| {
                        let kj = k * n_out + j;
                        raw + (p.w[kj] + p.alpha[kj] * h[kj]) * x[k]
                    });
                    raw.tanh()
                })
                .collect();
            let m = ((0..n_out).map(|j| y[j] * w_m[j]).sum::<f64>() + b_m).tanh();
            let (dl_dy, logits) = step_loss(p, batch, (ep, t), &y, grads, &mut out, &mut totals);
            // The new traces and their local partials, at (H(t-1), E(t-1), x, y, M).
            let (h_new, e_new, locals, locals2) = if retroactive {
                let l2: Vec<_> = (0..size)
                    .map(|kj| retro.local2(h[kj], e[kj], x[kj / n_out], y[kj % n_out], m, gamma))
                    .collect();
                let h_new = l2.iter().map(|l| l.h).collect::<Vec<_>>();
                let e_new = l2.iter().map(|l| l.e.value).collect();
                (h_new, e_new, Vec::new(), l2)
            } else {
                let l: Vec<_> = (0..size)
                    .map(|kj| rule.local(h[kj], x[kj / n_out], y[kj % n_out], m))
                    .collect();
                let h_new = l.iter().map(|l| l.value).collect::<Vec<_>>();
                (h_new, Vec::new(), l, Vec::new())
            };
            if grads {
                // The α direct term reads H(t-1) (or, the injected mistake, H(t)).
                let h_drive = if variant == Variant::NewTrace {
                    &h_new
                } else {
                    &h
                };
                let mut sy = vec![0.0; n_out * np];
                for j in 0..n_out {
                    let row = &mut sy[j * np..(j + 1) * np];
                    for k in 0..n_in {
                        let kj = k * n_out + j;
                        let ax = p.alpha[kj] * x[k];
                        if ax != 0.0 {
                            for (r, s) in row.iter_mut().zip(&sh[kj * np..(kj + 1) * np]) {
                                *r += ax * s;
                            }
                        }
                        row[kj] += x[k];
                        row[pa + kj] += h_drive[kj] * x[k];
                    }
                    row[pb + j] += 1.0;
                    let slope = match variant {
                        Variant::DoubleTanh => 1.0 - y[j].tanh().powi(2),
                        _ => 1.0 - y[j] * y[j],
                    };
                    row.iter_mut().for_each(|r| *r *= slope);
                }
                // dL/dθ for every θ of the layer: Σ_j ∂L/∂y_j · S(y_j).
                let mut dtheta = vec![0.0; np];
                for j in 0..n_out {
                    if dl_dy[j] != 0.0 {
                        for (d, s) in dtheta.iter_mut().zip(&sy[j * np..(j + 1) * np]) {
                            *d += dl_dy[j] * s;
                        }
                    }
                }
                accumulate(&mut out, &dtheta, (pa, pb, pm));
                let mut sm = vec![0.0; np];
                for j in 0..n_out {
                    for (d, s) in sm.iter_mut().zip(&sy[j * np..(j + 1) * np]) {
                        *d += w_m[j] * s;
                    }
                    sm[pm + j] += y[j];
                }
                sm[pm + n_out] += 1.0;
                sm.iter_mut().for_each(|d| *d *= 1.0 - m * m);
                let s_rate = if variant == Variant::PreviousModulation {
                    &sm_prev
                } else {
                    &sm
                };
                for kj in 0..size {
                    let syj = &sy[(kj % n_out) * np..(kj % n_out + 1) * np];
                    // Each tangent entry reads only its own old value: updated in place.
                    let row = &mut sh[kj * np..(kj + 1) * np];
                    if retroactive {
                        let l = &locals2[kj];
                        let e_row = &mut se[kj * np..(kj + 1) * np];
                        for q in 0..np {
                            row[q] = l.dh_h * row[q]
                                + l.dh_e * e_row[q]
                                + l.dh_m * s_rate[q]
                                + l.dh_post * syj[q];
                            e_row[q] = jvp(&l.e, e_row[q], 0.0, syj[q], 0.0);
                        }
                    } else {
                        let l = &locals[kj];
                        for q in 0..np {
                            row[q] = jvp(l, row[q], 0.0, syj[q], s_rate[q]);
                        }
                    }
                }
                sm_prev = sm;
            }
            h = h_new;
            if retroactive {
                e = e_new;
            }
            if record {
                trace.y.push(y);
                trace.logits.push(logits);
                trace.h.push(h.clone());
                trace.m.push(m);
                if retroactive {
                    trace.e.push(e.clone());
                }
            }
        }
        if record {
            traces.push(trace);
        }
    }
    Evaluation {
        loss: totals.0,
        measures: batch.measures(totals.0, totals.1),
        grads: out,
        traces,
    }
}

/// Adds `dtheta` (laid out `w`, `α`, `b`, `w_M`, `b_M` from offsets `0`, `pa`, `pb`, `pm`) into
/// the layer's gradients.
fn accumulate(out: &mut Grads, dtheta: &[f64], (pa, pb, pm): (usize, usize, usize)) {
    for (g, d) in out.w.iter_mut().zip(&dtheta[..pa]) {
        *g += d;
    }
    for (g, d) in out.alpha.iter_mut().zip(&dtheta[pa..pb]) {
        *g += d;
    }
    for (g, d) in out.b.iter_mut().zip(&dtheta[pb..pm]) {
        *g += d;
    }
    let n_out = pm - pb;
    for (g, d) in out
        .w_m
        .as_mut()
        .expect("w_m")
        .iter_mut()
        .zip(&dtheta[pm..pm + n_out])
    {
        *g += d;
    }
    out.b_m.as_mut().expect("b_m")[0] += dtheta[pm + n_out];
}

fn run<R: RuleKernel>(
    rule: &R,
    p: &Params,
    batch: &EpisodeBatch,
    variant: Variant,
    grads: bool,
    record: bool,
) -> Evaluation {
    assert!(
        variant != Variant::PreviousModulation,
        "previous-modulation needs a modulated layer"
    );
    let (n_in, n_out, gamma) = (p.n_in, p.n_out, p.gamma);
    assert_eq!(
        batch.n_in, n_in,
        "episode input size must match the network"
    );
    let steps = batch.steps;
    let bsz = batch.batch;
    // Number of θ per output column: w_kj (n_in), α_kj (n_in), b_j.
    let nq = 2 * n_in + 1;
    let mut out = Grads::zeros_like(p);
    let mut totals = (0.0, 0.0);
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
            let (dl_dy, logits) = step_loss(p, batch, (e, t), &y, grads, &mut out, &mut totals);
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
        loss: totals.0,
        measures: batch.measures(totals.0, totals.1),
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
pub fn params_from_values<V: AsRef<[f64]>>(model: &PlasticNet, values: &[(&str, V)]) -> Params {
    let get = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref().to_vec())
    };
    Params {
        n_in: model.plastic.n_in(),
        n_out: model.plastic.n_out(),
        gamma: model.plastic.gamma,
        rule: model.plastic.rule,
        modulation: model.plastic.modulation,
        w: get("w").expect("w"),
        alpha: get("alpha").expect("alpha"),
        b: get("b").expect("b"),
        w_m: get("w_m"),
        b_m: get("b_m"),
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
        values: &[(&'static str, &[f64])],
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
