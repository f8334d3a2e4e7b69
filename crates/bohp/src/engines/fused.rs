//! The `fused` gradient engine for [`PlasticRnn`](crate::recurrent::model::PlasticRnn): backpropagation
//! through time written out by hand on the host, one pass over the `N × N` arrays per step and
//! direction, with the traces checkpointed.
//!
//! Reverse-mode autodiff of the unrolled network keeps several `batch × N × N` tensors per step
//! (809 MiB per episode at `N = 1000`, 106 steps, in the PyTorch peer). This engine keeps the
//! outputs `y(t)` of every step (`batch × N` each) and, for the traces, by default (no interval
//! given) only the last one: where the rule is invertible (Hebb, Oja:
//! [`RuleKernel::inverse`]) the backward pass walks `H(t-1)` from `H(t)` step by step, so two
//! traces are held whatever the episode's length, as long as the rounding this grows,
//! `(1/(1-η))^steps`, stays within [`MAX_INVERSION_GROWTH`]. Otherwise (the clipped rule, a
//! large `η`, or an explicit interval `K`) it keeps the trace every `K` steps and the backward
//! pass recomputes the `K` traces of one segment at a time from its checkpoint (one extra
//! forward pass): about `(steps/K + K + 3)` traces, `K = ⌈√steps⌉` unless every trace fits in
//! [`TRACE_BUDGET`].
//!
//! The gradients are the same quantities autodiff computes (tested against burn's autodiff and
//! against the RTRL recursion of `bohp-gradcheck` to rounding in f64). Rows of the `N × N`
//! arrays are split across threads (rayon); each step's inner loops run over contiguous rows
//! `[i][batch][j]`, so `W`, `α` and their gradients are read once per step for the whole batch.
//!
//! The trace update and its derivatives come from the rule library ([`crate::rules`]); the
//! engine is compiled once per rule. Rules whose `∂f/∂post` can be read off the new trace
//! (Hebb, clipped Hebb: [`RuleKernel::POST_PARTIAL_FROM_NEW`]) get a single pass over the
//! arrays per step backward; the others (Oja) a two-pass step.
//!
//! **Why this file is long** (about 1230 lines): the recurrent network's forward pass, its
//! reverse pass with the two trace strategies (walking `H` backwards by the rule's inverse, or
//! re-running segments from checkpoints), the modulator's extra traces and the row-split batch
//! all share one state layout (`[i][batch][j]`); they are written once here, for every rule
//! and modulation, rather than spread over files that would each need the whole layout.

use rayon::prelude::*;

pub use crate::rules::Real;
use crate::rules::{self, Modulation, Retroactive, RuleKernel, RuleSpec};

/// A plastic recurrent network's parameters on the host (the values of a
/// [`PlasticRnn`](crate::recurrent::model::PlasticRnn)).
#[derive(Debug, Clone, PartialEq)]
pub struct HostRnn<F> {
    /// Number of neurons `N`.
    pub n: usize,
    /// `W`, row-major `[N, N]`.
    pub w: Vec<F>,
    /// `α`, row-major `[N, N]`, or one value when shared.
    pub alpha: Vec<F>,
    /// `η`.
    pub eta: F,
    /// The trace's update rule.
    pub rule: RuleSpec,
    /// Whether the trace is computed at all (false: the non-plastic baseline).
    pub plastic: bool,
    /// The modulator `M(t) = tanh(y(t)·w_M + b_M)` of a modulated network: the rule's rate
    /// (simple), or what moves the eligibility trace into `H` (retroactive: the engine keeps
    /// `E` beside `H`, each row `[H | E]`).
    pub modulator: Option<HostModulator<F>>,
}

/// A recurrent network's modulator neuron on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostModulator<F> {
    /// Simple or retroactive.
    pub modulation: Modulation,
    /// `w_M`, `[N]`.
    pub w: Vec<F>,
    /// `b_M`.
    pub b: F,
}

/// One episode's states ([`HostRnn::episode_states`]): `y(t)` `[steps][N]`, `H(t)` after each
/// step `[steps][N²]`, and with a modulator `M(t)` `[steps]` and (retroactive) `E(t)`
/// `[steps][N²]` (empty otherwise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpisodeStates<F> {
    /// `y(t)`.
    pub ys: Vec<F>,
    /// `H(t)` (zero without plasticity).
    pub traces: Vec<F>,
    /// `M(t)`.
    pub modulation: Vec<F>,
    /// `E(t)`.
    pub eligibility: Vec<F>,
}

/// A batch of episodes: inputs, clamp mask and the target of the last step.
#[derive(Debug, Clone, Copy)]
pub struct EpisodeBatch<'a, F> {
    /// Steps per episode `T`.
    pub steps: usize,
    /// Episodes `B`.
    pub batch: usize,
    /// `u(t)`, `[T][B][N]`.
    pub inputs: &'a [F],
    /// `c(t)` (0 or 1), `[T][B][N]`, or `None` (no clamping).
    pub clamp: Option<&'a [F]>,
    /// The target of the last step for the first `targets.len() / B` neurons, `[B][n_targets]`.
    pub targets: &'a [F],
}

/// Loss gradients, summed in f64 at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct HostGrads {
    /// `∂L/∂W`, `[N, N]`.
    pub w: Vec<f64>,
    /// `∂L/∂α`, `[N, N]` or one value.
    pub alpha: Vec<f64>,
    /// `∂L/∂η`.
    pub eta: f64,
    /// `∂L/∂w_M`, `[N]`, and `∂L/∂b_M` of a modulated network (empty and 0 without one).
    pub modulator: (Vec<f64>, f64),
}

/// What one forward-backward pass returns.
#[derive(Debug, Clone)]
pub struct Pass<F> {
    /// `L = (1/B) Σ_b Σ_j (y_j(T) - target_j)²` over the target neurons.
    pub loss: f64,
    /// `y(T)`, `[B][N]`.
    pub y_last: Vec<F>,
    /// The gradients of `L`.
    pub grads: HostGrads,
    /// Traces held at once at the peak (checkpoints + one segment + working copies).
    pub traces_held: usize,
}

/// The checkpoint interval used when none is given: every step (no recomputation) when all the
/// traces of the batch fit in [`TRACE_BUDGET`] bytes, else `⌈√steps⌉`.
pub fn auto_interval(steps: usize, batch: usize, n: usize, float_bytes: usize) -> usize {
    if steps * batch * n * n * float_bytes <= TRACE_BUDGET {
        1
    } else {
        sqrt_interval(steps)
    }
}

/// Memory the fused engine may use to keep every trace of a batch instead of recomputing them.
pub const TRACE_BUDGET: usize = 1 << 30;

/// The most by which walking the traces backwards may grow their rounding over an episode
/// (`(1/(1-η))^steps`; f32: about 1e-5 relative at the bound). Beyond it (a large learned `η`,
/// long episodes) the engine checkpoints instead.
pub const MAX_INVERSION_GROWTH: f64 = 100.0;

/// How much inverting the trace update step by step may grow its rounding over `steps` steps:
/// `(1/(1-η))^steps` (1 for `η ≤ 0`, infinite for `η ≥ 1`).
pub(crate) fn inversion_growth(eta: f64, steps: usize) -> f64 {
    if eta.is_nan() || eta >= 1.0 {
        f64::INFINITY
    } else {
        (1.0 / (1.0 - eta.max(0.0))).powi(steps as i32)
    }
}

/// `⌈√steps⌉`: the interval that minimises the traces held (`steps/K + K`).
pub fn sqrt_interval(steps: usize) -> usize {
    ((steps as f64).sqrt().ceil() as usize).max(1)
}

/// One chunk of rows of the merged backward step: each row's results `(index, value)`, the
/// column sums, its `∂η` and its part of a shared `∂α`.
type ColumnPart<F> = (Vec<(usize, F)>, Vec<F>, f64, f64);

fn chunk_rows(n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    n.div_ceil(4 * threads).max(1)
}

impl<F: Real> HostRnn<F> {
    fn shared(&self) -> bool {
        self.alpha.len() == 1
    }

    /// The modulator of a plastic network.
    fn modulator(&self) -> Option<&HostModulator<F>> {
        self.modulator.as_ref().filter(|_| self.plastic)
    }

    /// Whether the network keeps an eligibility trace (retroactive modulation).
    fn retroactive(&self) -> bool {
        self.modulator()
            .is_some_and(|m| m.modulation == Modulation::Retroactive)
    }

    /// Traces per connection: 2 (`H`, `E`) under retroactive modulation, else 1.
    fn traces(&self) -> usize {
        if self.retroactive() { 2 } else { 1 }
    }

    /// `M(t)_b = tanh(y(t)_b·w_M + b_M)` for every episode of the batch (`None` without a
    /// modulator).
    fn modulation(&self, y: &[F], batch: usize) -> Option<Vec<F>> {
        let m = self.modulator()?;
        let n = self.n;
        Some(
            (0..batch)
                .map(|b| {
                    let z = y[b * n..(b + 1) * n]
                        .iter()
                        .zip(&m.w)
                        .fold(m.b, |acc, (&yj, &wj)| acc + yj * wj);
                    z.tanh()
                })
                .collect(),
        )
    }

    fn check(&self, ep: &EpisodeBatch<'_, F>) {
        let (n, bn) = (self.n, ep.batch * self.n);
        assert_eq!(self.w.len(), n * n, "W must be N x N");
        assert!(
            self.alpha.len() == n * n || self.alpha.len() == 1,
            "alpha must be N x N or shared"
        );
        assert!(
            ep.steps >= 1 && ep.batch >= 1,
            "episodes need at least one step and one episode"
        );
        assert_eq!(
            ep.inputs.len(),
            ep.steps * bn,
            "inputs must be [steps][batch][N]"
        );
        if let Some(c) = ep.clamp {
            assert_eq!(c.len(), ep.steps * bn, "clamp must be [steps][batch][N]");
        }
        assert!(
            ep.targets.len().is_multiple_of(ep.batch) && ep.targets.len() / ep.batch <= n,
            "targets must be [batch][<= N]"
        );
    }

    /// `y(t)` from `pre(t)` (without the input) for every episode of the batch.
    fn activate(&self, ep: &EpisodeBatch<'_, F>, t: usize, pre: &[F], y: &mut [F]) {
        let bn = ep.batch * self.n;
        let u = &ep.inputs[(t - 1) * bn..t * bn];
        match ep.clamp {
            None => {
                for k in 0..bn {
                    y[k] = (pre[k] + u[k]).tanh();
                }
            }
            Some(c) => {
                let c = &c[(t - 1) * bn..t * bn];
                for k in 0..bn {
                    let v = (pre[k] + u[k]).tanh();
                    y[k] = c[k] * u[k] + (F::one() - c[k]) * v;
                }
            }
        }
    }

    /// Computes the traces `H(t)` into `h.1` from `H(t-1)` in `h.0` (both `[N][B][N]`; under
    /// retroactive modulation each row `i` is `[H_i | E_i]`, `[N][2][B][N]`) given `y(t-1)`,
    /// `y(t)` (`[B][N]`) and, with a modulator, `M(t)` (`[B]`), and with `with_pre` returns
    /// `pre(t+1) = y(t)·(W + α ⊙ H(t))` (`[B][N]`, no input; without plasticity `h` is `None`
    /// and this is `y(t)·W`).
    #[allow(clippy::too_many_arguments)]
    fn advance<R: RuleKernel>(
        &self,
        rule: R,
        h: Option<(&[F], &mut [F])>,
        y_prev: &[F],
        y_cur: &[F],
        rates: Option<&[F]>,
        batch: usize,
        with_pre: bool,
    ) -> Vec<F> {
        let n = self.n;
        let bn = batch * n;
        let stride = self.traces() * bn;
        let rows = chunk_rows(n);
        let eta = self.eta;
        let shared = self.shared();
        let retro = self.retroactive().then_some(Retroactive {
            bound: self.rule.clip,
        });
        let partials: Vec<Vec<F>> = match h {
            None => self
                .w
                .par_chunks(rows * n)
                .enumerate()
                .map(|(c, w_rows)| {
                    let mut acc = vec![F::zero(); bn];
                    for (r, wrow) in w_rows.chunks(n).enumerate() {
                        let i = c * rows + r;
                        for b in 0..batch {
                            let yi = y_cur[b * n + i];
                            if yi == F::zero() {
                                continue;
                            }
                            for (a, &wv) in acc[b * n..(b + 1) * n].iter_mut().zip(wrow) {
                                *a = *a + yi * wv;
                            }
                        }
                    }
                    acc
                })
                .collect(),
            Some((src, dst)) => dst
                .par_chunks_mut(rows * stride)
                .zip(src.par_chunks(rows * stride))
                .enumerate()
                .map(|(c, (d_rows, s_rows))| {
                    let mut acc = if with_pre {
                        vec![F::zero(); bn]
                    } else {
                        Vec::new()
                    };
                    for (r, (d_i, s_i)) in d_rows
                        .chunks_mut(stride)
                        .zip(s_rows.chunks(stride))
                        .enumerate()
                    {
                        let i = c * rows + r;
                        let wrow = &self.w[i * n..(i + 1) * n];
                        let (d_i, d_e) = d_i.split_at_mut(bn);
                        let (s_i, s_e) = s_i.split_at(bn);
                        for (b, (drow, srow)) in d_i.chunks_mut(n).zip(s_i.chunks(n)).enumerate() {
                            let yp = y_prev[b * n + i];
                            let ycur = &y_cur[b * n..(b + 1) * n];
                            let rate = rates.map_or(eta, |m| m[b]);
                            match &retro {
                                Some(k) => k.forward_row(
                                    srow,
                                    &s_e[b * n..(b + 1) * n],
                                    yp,
                                    ycur,
                                    rules::RowRate::Uniform(rate),
                                    eta,
                                    drow,
                                    &mut d_e[b * n..(b + 1) * n],
                                ),
                                None => rules::forward(&rule, srow, yp, ycur, rate, drow),
                            }
                            let yi = y_cur[b * n + i];
                            if !with_pre || yi == F::zero() {
                                continue;
                            }
                            let acc = &mut acc[b * n..(b + 1) * n];
                            if shared {
                                let a = self.alpha[0];
                                for ((s, &wv), &hv) in acc.iter_mut().zip(wrow).zip(drow.iter()) {
                                    *s = *s + yi * (wv + a * hv);
                                }
                            } else {
                                let arow = &self.alpha[i * n..(i + 1) * n];
                                for (((s, &wv), &av), &hv) in
                                    acc.iter_mut().zip(wrow).zip(arow).zip(drow.iter())
                                {
                                    *s = *s + yi * (wv + av * hv);
                                }
                            }
                        }
                    }
                    acc
                })
                .collect(),
        };
        let mut pre = vec![F::zero(); bn];
        for p in partials {
            for (a, v) in pre.iter_mut().zip(p) {
                *a = *a + v;
            }
        }
        pre
    }

    /// Runs the episodes forward and returns `y(t)` for `t = 1..=T`, `[T][B][N]`.
    pub fn forward(&self, ep: &EpisodeBatch<'_, F>) -> Vec<F> {
        crate::with_rule!(self.rule, |rule| self.forward_with(rule, ep))
    }

    /// [`HostRnn::forward`] with the trace's rule given as a [`RuleKernel`].
    pub(crate) fn forward_with<R: RuleKernel>(&self, rule: R, ep: &EpisodeBatch<'_, F>) -> Vec<F> {
        self.check(ep);
        let bn = ep.batch * self.n;
        let mut ys = vec![F::zero(); (ep.steps + 1) * bn];
        let len = self.traces() * self.n * bn;
        let mut h = self
            .plastic
            .then(|| (vec![F::zero(); len], vec![F::zero(); len]));
        let mut pre = vec![F::zero(); bn];
        for t in 1..=ep.steps {
            let (before, after) = ys.split_at_mut(t * bn);
            self.activate(ep, t, &pre, &mut after[..bn]);
            if t < ep.steps {
                let bufs = h
                    .as_mut()
                    .map(|(cur, next)| (cur.as_slice(), next.as_mut_slice()));
                let rates = self.modulation(&after[..bn], ep.batch);
                pre = self.advance(
                    rule,
                    bufs,
                    &before[(t - 1) * bn..],
                    &after[..bn],
                    rates.as_deref(),
                    ep.batch,
                    true,
                );
                if let Some((cur, next)) = h.as_mut() {
                    std::mem::swap(cur, next);
                }
            }
        }
        ys.split_off(bn)
    }

    /// Forward and backward through the episodes: the loss on the last step and its gradients,
    /// keeping a trace checkpoint every `interval` steps (`None`: [`auto_interval`]).
    pub fn loss_and_grads(&self, ep: &EpisodeBatch<'_, F>, interval: Option<usize>) -> Pass<F> {
        crate::with_rule!(self.rule, |rule| self
            .loss_and_grads_with(rule, ep, interval))
    }

    /// The states of episode 0 of `ep`, for inspection and dumps: `y(t)` from
    /// [`HostRnn::forward`], and the traces replayed from them after every step (`H(t)`, and with
    /// a modulator `M(t)` and, retroactive, `E(t)`).
    pub fn episode_states(&self, ep: &EpisodeBatch<'_, F>) -> EpisodeStates<F> {
        let (n, bn) = (self.n, ep.batch * self.n);
        let ys = self.forward(ep);
        let retro = self.retroactive().then_some(Retroactive {
            bound: self.rule.clip,
        });
        let mut out = EpisodeStates::default();
        let (mut h, mut e) = (vec![F::zero(); n * n], vec![F::zero(); n * n]);
        let (mut h_next, mut e_next) = (h.clone(), e.clone());
        let mut y_prev = vec![F::zero(); n];
        for t in 0..ep.steps {
            let y = &ys[t * bn..t * bn + n];
            if self.plastic {
                let rate = match self.modulation(y, 1) {
                    Some(m) => {
                        out.modulation.push(m[0]);
                        m[0]
                    }
                    None => self.eta,
                };
                for i in 0..n {
                    let row = i * n..(i + 1) * n;
                    match &retro {
                        Some(k) => k.forward_row(
                            &h[row.clone()],
                            &e[row.clone()],
                            y_prev[i],
                            y,
                            rules::RowRate::Uniform(rate),
                            self.eta,
                            &mut h_next[row.clone()],
                            &mut e_next[row],
                        ),
                        None => crate::with_rule!(self.rule, |k| rules::forward(
                            &k,
                            &h[row.clone()],
                            y_prev[i],
                            y,
                            rate,
                            &mut h_next[row]
                        )),
                    }
                }
                std::mem::swap(&mut h, &mut h_next);
                std::mem::swap(&mut e, &mut e_next);
            }
            out.ys.extend_from_slice(y);
            out.traces.extend_from_slice(&h);
            if retro.is_some() {
                out.eligibility.extend_from_slice(&e);
            }
            y_prev = y.to_vec();
        }
        out
    }

    /// [`HostRnn::loss_and_grads`] with the trace's rule given as a [`RuleKernel`] (`self.rule` is not
    /// read): checks pass a known-wrong rule here ([`crate::rules::faults`]).
    pub fn loss_and_grads_with<R: RuleKernel>(
        &self,
        rule: R,
        ep: &EpisodeBatch<'_, F>,
        interval: Option<usize>,
    ) -> Pass<F> {
        self.check(ep);
        let (n, batch, steps) = (self.n, ep.batch, ep.steps);
        let bn = batch * n;
        let len = self.traces() * n * bn;
        let modulated = self.modulator().is_some();
        let k = interval
            .unwrap_or_else(|| auto_interval(steps, batch, n, std::mem::size_of::<F>()))
            .max(1);
        let plastic = self.plastic;
        // Walk the traces backwards from the last one by inverting the rule (two traces held)
        // where that is exact enough: its rounding grows by at most 1/(1-η) per step.
        let invert = plastic
            && !modulated
            && interval.is_none()
            && R::INVERTIBLE
            && inversion_growth(self.eta.to_f64().unwrap_or(f64::NAN), steps)
                <= MAX_INVERSION_GROWTH;
        let mut spare: Vec<Vec<F>> = Vec::new();
        let buffer = |spare: &mut Vec<Vec<F>>| spare.pop().unwrap_or_else(|| vec![F::zero(); len]);
        // Forward, keeping every y(t) and H(t) for t = 0, K, 2K, ...
        let mut ys = vec![F::zero(); (steps + 1) * bn];
        let mut h = plastic.then(|| vec![F::zero(); len]);
        let mut checkpoints: Vec<Vec<F>> = Vec::new();
        let mut pre = vec![F::zero(); bn];
        let mut traces_held = 0;
        // M(t) of every step, [T+1][B] (a modulator's rate).
        let mut ms: Vec<F> = if modulated {
            vec![F::zero(); (steps + 1) * batch]
        } else {
            Vec::new()
        };
        for t in 1..=steps {
            let (before, after) = ys.split_at_mut(t * bn);
            self.activate(ep, t, &pre, &mut after[..bn]);
            if t < steps {
                let y_prev = &before[(t - 1) * bn..];
                if let Some(m) = self.modulation(&after[..bn], batch) {
                    ms[t * batch..(t + 1) * batch].copy_from_slice(&m);
                }
                let rates = modulated.then(|| &ms[t * batch..(t + 1) * batch]);
                match h.as_mut() {
                    None => pre = self.advance(rule, None, y_prev, &after[..bn], None, batch, true),
                    Some(cur) => {
                        let mut next = buffer(&mut spare);
                        pre = self.advance(
                            rule,
                            Some((cur, &mut next)),
                            y_prev,
                            &after[..bn],
                            rates,
                            batch,
                            true,
                        );
                        let old = std::mem::replace(cur, next);
                        // `old` is H(t-1).
                        if !invert && (t - 1) % k == 0 {
                            checkpoints.push(old)
                        } else {
                            spare.push(old)
                        }
                        traces_held = traces_held.max(checkpoints.len() + spare.len() + 1);
                    }
                }
            }
        }
        // H(steps-1): the start of the backward walk, or kept with the checkpoints.
        let mut last = None;
        if let Some(h) = h {
            if invert {
                last = Some(h);
            } else if (steps - 1) % k == 0 {
                checkpoints.push(h)
            } else {
                spare.push(h)
            }
        }
        let y = |t: usize| &ys[t * bn..(t + 1) * bn];
        // Loss on the last step.
        let n_t = ep.targets.len() / batch;
        let scale = F::from(2.0 / batch as f64).expect("finite");
        let mut gy = vec![F::zero(); bn];
        let mut loss = 0.0f64;
        for b in 0..batch {
            for j in 0..n_t {
                let d = y(steps)[b * n + j] - ep.targets[b * n_t + j];
                loss += d.to_f64().expect("finite").powi(2);
                gy[b * n + j] = scale * d;
            }
        }
        loss /= batch as f64;
        // Backward, segment by segment.
        let shared = self.shared();
        let merged = plastic && !modulated && R::POST_PARTIAL_FROM_NEW;
        let (mut g_wm, mut g_bm) = (vec![0.0f64; if modulated { n } else { 0 }], 0.0f64);
        let mut gw = vec![F::zero(); n * n];
        let mut ga = vec![F::zero(); if shared { 0 } else { n * n }];
        let mut ga_shared = 0.0f64;
        let mut geta = 0.0f64;
        let mut g_h = plastic.then(|| vec![F::zero(); len]);
        // Single-pass path: c(t)_j = Σ_i g_H(t)_ij ∂H_ij(t)/∂y_j(t), and g_pre(t) kept for ∂L/∂W.
        let mut col = vec![F::zero(); bn];
        let mut gpres: Vec<F> = if merged {
            vec![F::zero(); (steps + 1) * bn]
        } else {
            Vec::new()
        };
        // One step backward, with `hprev = H(t-1)` (`None` without plasticity).
        let mut step = |t: usize, hprev: Option<&[F]>| {
            let c = ep.clamp.map(|c| &c[(t - 1) * bn..t * bn]);
            if merged {
                let gpre = &mut gpres[t * bn..(t + 1) * bn];
                let y_cur = y(t);
                for k in 0..bn {
                    let free = c.map_or(F::one(), |c| F::one() - c[k]);
                    gpre[k] = (gy[k] + col[k]) * free * (F::one() - y_cur[k] * y_cur[k]);
                }
                let g = g_h.as_deref_mut().expect("plastic");
                let (gy_prev, col_prev, e, gas) = self.backward_merged(
                    rule,
                    y(t - 2),
                    y(t - 1),
                    y_cur,
                    hprev.expect("plastic"),
                    g,
                    &gpres[t * bn..(t + 1) * bn],
                    &mut ga,
                    batch,
                );
                geta += e;
                ga_shared += gas;
                gy = gy_prev;
                col = col_prev;
            } else {
                let rates = modulated.then(|| &ms[t * batch..(t + 1) * batch]);
                let (gy_prev, step) = self.backward_step(
                    rule,
                    y(t - 1),
                    y(t),
                    hprev,
                    g_h.as_deref_mut(),
                    &gy,
                    c,
                    t < steps,
                    batch,
                    (&mut gw, &mut ga),
                    rates.map(|m| (m, &mut g_wm[..], &mut g_bm)),
                );
                geta += step.0;
                ga_shared += step.1;
                gy = gy_prev;
            }
        };
        if let Some(mut cur) = last {
            // H(t-1) for t = steps, steps-1, ..., 2, each from the next by the rule's inverse.
            for t in (2..=steps).rev() {
                step(t, Some(&cur));
                if t > 2 {
                    self.retreat(rule, &mut cur, y(t - 2), y(t - 1), batch);
                }
            }
        } else {
            let mut segment: Vec<Vec<F>> = Vec::new();
            let segments = if plastic { (steps - 1) / k + 1 } else { 1 };
            for s in (0..segments).rev() {
                // Steps t in (s·K, end] need H(t-1) for t-1 in [s·K, end-1].
                let start = s * k;
                let end = if plastic {
                    ((s + 1) * k).min(steps)
                } else {
                    steps
                };
                if plastic {
                    spare.append(&mut segment);
                    segment.push(checkpoints.pop().expect("one checkpoint per segment"));
                    for t in start + 1..end {
                        let mut next = buffer(&mut spare);
                        self.advance(
                            rule,
                            Some((segment.last().expect("nonempty"), &mut next)),
                            y(t - 1),
                            y(t),
                            modulated.then(|| &ms[t * batch..(t + 1) * batch]),
                            batch,
                            false,
                        );
                        segment.push(next);
                    }
                    traces_held =
                        traces_held.max(checkpoints.len() + segment.len() + spare.len() + 1);
                }
                for t in (start + 1..=end).rev() {
                    if t < 2 {
                        break;
                    }
                    step(t, plastic.then(|| segment[t - 1 - start].as_slice()));
                }
            }
        }
        if merged {
            // ∂L/∂W_ij = Σ_t Σ_b y(t-1)_{b,i} g_pre(t)_{b,j}.
            let rows = chunk_rows(n);
            gw.par_chunks_mut(rows * n)
                .enumerate()
                .for_each(|(c, gw_rows)| {
                    for (r, gwrow) in gw_rows.chunks_mut(n).enumerate() {
                        let i = c * rows + r;
                        for t in 2..=steps {
                            for b in 0..batch {
                                let yp = ys[(t - 1) * bn + b * n + i];
                                if yp == F::zero() {
                                    continue;
                                }
                                let gp = &gpres[t * bn + b * n..t * bn + (b + 1) * n];
                                for (g, &p) in gwrow.iter_mut().zip(gp) {
                                    *g = *g + yp * p;
                                }
                            }
                        }
                    }
                });
        }
        let y = |t: usize| &ys[t * bn..(t + 1) * bn];
        let to64 = |v: Vec<F>| {
            v.into_iter()
                .map(|x| x.to_f64().expect("finite"))
                .collect::<Vec<f64>>()
        };
        let alpha = if shared { vec![ga_shared] } else { to64(ga) };
        let (alpha, eta) = if plastic {
            (alpha, geta)
        } else {
            (vec![0.0; self.alpha.len()], 0.0)
        };
        Pass {
            loss,
            y_last: y(steps).to_vec(),
            grads: HostGrads {
                w: to64(gw),
                alpha,
                eta,
                modulator: (g_wm, g_bm),
            },
            traces_held,
        }
    }

    /// `H(t-1)` from `H(t)` in place (`[N][B][N]`), given `y(t-1)` and `y(t)`: the rule's
    /// inverse at every connection.
    fn retreat<R: RuleKernel>(
        &self,
        rule: R,
        h: &mut [F],
        y_prev: &[F],
        y_cur: &[F],
        batch: usize,
    ) {
        let n = self.n;
        let bn = batch * n;
        let rows = chunk_rows(n);
        let eta = self.eta;
        h.par_chunks_mut(rows * bn)
            .enumerate()
            .for_each(|(c, h_rows)| {
                for (r, h_i) in h_rows.chunks_mut(bn).enumerate() {
                    let i = c * rows + r;
                    for (b, hrow) in h_i.chunks_mut(n).enumerate() {
                        let pre = y_prev[b * n + i];
                        for (hv, &post) in hrow.iter_mut().zip(&y_cur[b * n..(b + 1) * n]) {
                            *hv = rule.inverse(*hv, pre, post, eta);
                        }
                    }
                }
            });
    }

    /// One step backward in a single pass over the arrays, for rules whose `∂f/∂post` can be
    /// read off the new trace: with `G = g_H(t)`, `H = H(t-1)`, `y' = y(t-1)`, `y = y(t)`, the
    /// step's local derivatives `f_H, f_pre, f_η` at `(H, y'_i, y_j, η)`, and `g_pre(t)` known
    /// (it needs only the column sums `c(t)` of the previous call),
    /// `g_y(t-1)_i = Σ_j (W_ij + α_ij H_ij) g_pre_j + Σ_j G_ij f_pre`,
    /// `∂η += Σ G_ij f_η`, `∂α_ij += y'_i g_pre_j H_ij`,
    /// `g_H(t-1) = f_H ⊙ G + α ⊙ y'ᵀ g_pre`, and the next column sums
    /// `c(t-1)_j = Σ_i g_H(t-1)_ij ∂H_ij(t-1)/∂y_j(t-1)` (from `H(t-1)` and `y(t-2)`). Returns
    /// `g_y(t-1)`, `c(t-1)`, `∂η` and a shared `∂α`.
    #[allow(clippy::too_many_arguments)]
    fn backward_merged<R: RuleKernel>(
        &self,
        rule: R,
        y_pp: &[F],
        y_prev: &[F],
        y_cur: &[F],
        hprev: &[F],
        g: &mut [F],
        gpre: &[F],
        ga: &mut [F],
        batch: usize,
    ) -> (Vec<F>, Vec<F>, f64, f64) {
        let n = self.n;
        let bn = batch * n;
        let rows = chunk_rows(n);
        let eta = self.eta;
        let shared = self.shared();
        // Per chunk: (row results (index, value), column sums, ∂η, shared ∂α). A shared α is
        // spread over a row, its gradient summed from a scratch row.
        let work = |c: usize, g_rows: &mut [F], h_rows: &[F], mut ga_rows: Option<&mut [F]>| {
            let mut out = Vec::with_capacity(rows * batch);
            let mut cols = vec![F::zero(); bn];
            let mut ge = 0.0f64;
            let shared_row = if shared {
                vec![self.alpha[0]; n]
            } else {
                Vec::new()
            };
            let mut scratch = if shared {
                vec![F::zero(); n]
            } else {
                Vec::new()
            };
            for (r, (g_i, h_i)) in g_rows.chunks_mut(bn).zip(h_rows.chunks(bn)).enumerate() {
                let i = c * rows + r;
                let wrow = &self.w[i * n..(i + 1) * n];
                let arow = if shared {
                    &shared_row[..]
                } else {
                    &self.alpha[i * n..(i + 1) * n]
                };
                let garow: &mut [F] = match ga_rows.as_deref_mut() {
                    Some(ga) => &mut ga[r * n..(r + 1) * n],
                    None => &mut scratch[..],
                };
                for b in 0..batch {
                    let (yp, ypp) = (y_prev[b * n + i], y_pp[b * n + i]);
                    let (e, rsum, ssum) = merged_kernel(
                        &rule,
                        &mut g_i[b * n..(b + 1) * n],
                        &h_i[b * n..(b + 1) * n],
                        wrow,
                        arow,
                        garow,
                        &y_cur[b * n..(b + 1) * n],
                        &gpre[b * n..(b + 1) * n],
                        &mut cols[b * n..(b + 1) * n],
                        (yp, ypp, eta),
                    );
                    ge += e.to_f64().expect("finite");
                    out.push((b * n + i, ssum + rsum));
                }
            }
            let gas = scratch
                .iter()
                .fold(0.0f64, |s, v| s + v.to_f64().expect("finite"));
            (out, cols, ge, gas)
        };
        let parts: Vec<ColumnPart<F>> = if shared {
            g.par_chunks_mut(rows * bn)
                .zip(hprev.par_chunks(rows * bn))
                .enumerate()
                .map(|(c, (g_rows, h_rows))| work(c, g_rows, h_rows, None))
                .collect()
        } else {
            g.par_chunks_mut(rows * bn)
                .zip(hprev.par_chunks(rows * bn))
                .zip(ga.par_chunks_mut(rows * n))
                .enumerate()
                .map(|(c, ((g_rows, h_rows), ga_rows))| work(c, g_rows, h_rows, Some(ga_rows)))
                .collect()
        };
        let mut gy_prev = vec![F::zero(); bn];
        let mut col = vec![F::zero(); bn];
        let (mut ge, mut gas) = (0.0, 0.0);
        for (out, cols, e, a) in parts {
            for (k, v) in out {
                gy_prev[k] = gy_prev[k] + v;
            }
            for (c, v) in col.iter_mut().zip(cols) {
                *c = *c + v;
            }
            ge += e;
            gas += a;
        }
        (gy_prev, col, ge, gas)
    }

    /// One step backward: from `g_y(t)` (without the trace-update term) and `g_H(t)` (with
    /// `g_E(t)` beside it under retroactive modulation) to `g_y(t-1)` and `g_H(t-1)` (in
    /// place), accumulating `∂L/∂W` and `∂L/∂α` and, with a modulator (`M(t)` per episode),
    /// `∂L/∂w_M` and `∂L/∂b_M`. Returns `g_y(t-1)` and this step's contributions to `∂L/∂η`
    /// and to a shared `∂L/∂α`.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn backward_step<R: RuleKernel>(
        &self,
        rule: R,
        y_prev: &[F],
        y_cur: &[F],
        hprev: Option<&[F]>,
        g_h: Option<&mut [F]>,
        gy_in: &[F],
        clamp: Option<&[F]>,
        h_used: bool,
        batch: usize,
        (gw, ga): (&mut [F], &mut [F]),
        modulator: Option<(&[F], &mut [f64], &mut f64)>,
    ) -> (Vec<F>, (f64, f64)) {
        let n = self.n;
        let bn = batch * n;
        let stride = self.traces() * bn;
        let rows = chunk_rows(n);
        let eta = self.eta;
        let shared = self.shared();
        let retro = self.retroactive().then_some(Retroactive {
            bound: self.rule.clip,
        });
        let rates = modulator.as_ref().map(|m| m.0);
        let mut gy = gy_in.to_vec();
        let mut gy_prev = vec![F::zero(); bn];
        let mut geta = 0.0f64;
        // ∂L/∂M(t) per episode.
        let mut g_m = vec![0.0f64; batch];
        // Phase A: H(t) = update(H(t-1), y(t-1), y(t)) — only when H(t) is used later.
        let (hprev, g_h) = match (hprev, g_h) {
            (Some(hp), Some(g)) => (Some(hp), Some(g)),
            _ => (None, None),
        };
        let mut g_h = g_h;
        if let (Some(hp), Some(g), true) = (hprev, g_h.as_deref_mut(), h_used) {
            let parts: Vec<(Vec<F>, Vec<(usize, F)>, f64, Vec<f64>)> = g
                .par_chunks_mut(rows * stride)
                .zip(hp.par_chunks(rows * stride))
                .enumerate()
                .map(|(c, (g_rows, h_rows))| {
                    let mut col = vec![F::zero(); bn];
                    let mut row_out = Vec::new();
                    let mut ge = 0.0f64;
                    let mut gm = vec![0.0f64; batch];
                    // Row scratch of the retroactive kernel: M(t) spread over the row, and
                    // the per-connection ∂/∂M, ∂/∂η and ∂/∂pre terms it sums.
                    let mut spread = vec![F::zero(); if retro.is_some() { 4 * n } else { 0 }];
                    for (r, (g_i, h_i)) in g_rows
                        .chunks_mut(stride)
                        .zip(h_rows.chunks(stride))
                        .enumerate()
                    {
                        let i = c * rows + r;
                        let (g_i, g_e) = g_i.split_at_mut(bn);
                        let (h_i, h_e) = h_i.split_at(bn);
                        for b in 0..batch {
                            let yp = y_prev[b * n + i];
                            let yc = &y_cur[b * n..(b + 1) * n];
                            let grow = &mut g_i[b * n..(b + 1) * n];
                            let hrow = &h_i[b * n..(b + 1) * n];
                            let col = &mut col[b * n..(b + 1) * n];
                            let rate = rates.map_or(eta, |m| m[b]);
                            let mut rowsum = F::zero();
                            // Σ G·∂/∂(rate) and, retroactive, Σ G_H·∂H/∂M.
                            let (mut e, mut dm) = (F::zero(), F::zero());
                            match &retro {
                                Some(k) => {
                                    let (m_row, rest) = spread.split_at_mut(n);
                                    let (d_m, rest) = rest.split_at_mut(n);
                                    let (d_eta, scratch) = rest.split_at_mut(n);
                                    m_row.fill(rate);
                                    d_m.fill(F::zero());
                                    d_eta.fill(F::zero());
                                    rowsum = k.reverse_row(
                                        grow,
                                        &mut g_e[b * n..(b + 1) * n],
                                        hrow,
                                        &h_e[b * n..(b + 1) * n],
                                        yp,
                                        yc,
                                        m_row,
                                        eta,
                                        col,
                                        d_m,
                                        d_eta,
                                        scratch,
                                    );
                                    dm = rules::sum_lanes(d_m);
                                    e = rules::sum_lanes(d_eta);
                                }
                                None => {
                                    for j in 0..n {
                                        let p =
                                            rules::vjp(&rule, grow[j], hrow[j], yp, yc[j], rate);
                                        e = e + p.rate;
                                        col[j] = col[j] + p.post;
                                        rowsum = rowsum + p.pre;
                                        grow[j] = p.h;
                                    }
                                }
                            }
                            let (e, dm) =
                                (e.to_f64().expect("finite"), dm.to_f64().expect("finite"));
                            match (&retro, rates) {
                                // Simple modulation: the rate is M(t).
                                (None, Some(_)) => gm[b] += e,
                                (Some(_), _) => {
                                    ge += e;
                                    gm[b] += dm;
                                }
                                (None, None) => ge += e,
                            }
                            row_out.push((b * n + i, rowsum));
                        }
                    }
                    (col, row_out, ge, gm)
                })
                .collect();
            for (col, row_out, ge, gm) in parts {
                for (a, v) in gy.iter_mut().zip(col) {
                    *a = *a + v;
                }
                for (k, v) in row_out {
                    gy_prev[k] = gy_prev[k] + v;
                }
                geta += ge;
                for (a, v) in g_m.iter_mut().zip(gm) {
                    *a += v;
                }
            }
        }
        // The modulator: M = tanh(z), z = y(t)·w_M + b_M; g_z = g_M·(1 - M²) reaches y(t),
        // w_M and b_M.
        if let (Some((ms, g_wm, g_bm)), Some(m)) = (modulator, self.modulator()) {
            for b in 0..batch {
                let mb = ms[b].to_f64().expect("finite");
                let gz = g_m[b] * (1.0 - mb * mb);
                if gz == 0.0 {
                    continue;
                }
                *g_bm += gz;
                let gzf = F::from(gz).expect("finite");
                for j in 0..n {
                    let yj = y_cur[b * n + j];
                    g_wm[j] += gz * yj.to_f64().expect("finite");
                    gy[b * n + j] = gy[b * n + j] + gzf * m.w[j];
                }
            }
        }
        // g_pre = g_y(t) · (1 - c) · (1 - y²).
        let mut gpre = vec![F::zero(); bn];
        for k in 0..bn {
            let free = clamp.map_or(F::one(), |c| F::one() - c[k]);
            gpre[k] = gy[k] * free * (F::one() - y_cur[k] * y_cur[k]);
        }
        // Phase B: pre(t) = y(t-1)·(W + α ⊙ H(t-1)) + u(t).
        let gpre = &gpre;
        let mut ga_shared = 0.0f64;
        // One row i of every episode: g_y(t-1)_i += Σ_j (W_ij + α_ij H_ij) g_pre_j,
        // ∂W_ij += y_i g_pre_j, ∂α_ij += y_i g_pre_j H_ij, g_H(t-1)_ij += α_ij y_i g_pre_j.
        let plastic_row =
            |i: usize, g_i: &mut [F], h_i: &[F], gwrow: &mut [F], mut garow: Option<&mut [F]>| {
                let wrow = &self.w[i * n..(i + 1) * n];
                let arow = if shared {
                    &self.alpha[..1]
                } else {
                    &self.alpha[i * n..(i + 1) * n]
                };
                let mut out = Vec::with_capacity(batch);
                let mut gas = F::zero();
                for b in 0..batch {
                    let yp = y_prev[b * n + i];
                    let gp = &gpre[b * n..(b + 1) * n];
                    let grow = &mut g_i[b * n..(b + 1) * n];
                    let hrow = &h_i[b * n..(b + 1) * n];
                    let mut s = F::zero();
                    match garow.as_deref_mut() {
                        Some(garow) => {
                            for j in 0..n {
                                let coef = yp * gp[j];
                                s = s + (wrow[j] + arow[j] * hrow[j]) * gp[j];
                                gwrow[j] = gwrow[j] + coef;
                                garow[j] = garow[j] + coef * hrow[j];
                                grow[j] = grow[j] + arow[j] * coef;
                            }
                        }
                        None => {
                            let a = arow[0];
                            for j in 0..n {
                                let coef = yp * gp[j];
                                s = s + (wrow[j] + a * hrow[j]) * gp[j];
                                gwrow[j] = gwrow[j] + coef;
                                gas = gas + coef * hrow[j];
                                grow[j] = grow[j] + a * coef;
                            }
                        }
                    }
                    out.push((b * n + i, s));
                }
                (out, gas.to_f64().expect("finite"))
            };
        let row_sums: Vec<(Vec<(usize, F)>, f64)> = match (hprev, g_h) {
            (Some(hp), Some(g)) if shared => g
                .par_chunks_mut(rows * stride)
                .zip(hp.par_chunks(rows * stride))
                .zip(gw.par_chunks_mut(rows * n))
                .enumerate()
                .map(|(c, ((g_rows, h_rows), gw_rows))| {
                    let mut out = Vec::new();
                    let mut gas = 0.0;
                    for (r, ((g_i, h_i), gwrow)) in g_rows
                        .chunks_mut(stride)
                        .zip(h_rows.chunks(stride))
                        .zip(gw_rows.chunks_mut(n))
                        .enumerate()
                    {
                        let (o, a) =
                            plastic_row(c * rows + r, &mut g_i[..bn], &h_i[..bn], gwrow, None);
                        out.extend(o);
                        gas += a;
                    }
                    (out, gas)
                })
                .collect(),
            (Some(hp), Some(g)) => g
                .par_chunks_mut(rows * stride)
                .zip(hp.par_chunks(rows * stride))
                .zip(gw.par_chunks_mut(rows * n))
                .zip(ga.par_chunks_mut(rows * n))
                .enumerate()
                .map(|(c, (((g_rows, h_rows), gw_rows), ga_rows))| {
                    let mut out = Vec::new();
                    for (r, (((g_i, h_i), gwrow), garow)) in g_rows
                        .chunks_mut(stride)
                        .zip(h_rows.chunks(stride))
                        .zip(gw_rows.chunks_mut(n))
                        .zip(ga_rows.chunks_mut(n))
                        .enumerate()
                    {
                        out.extend(
                            plastic_row(
                                c * rows + r,
                                &mut g_i[..bn],
                                &h_i[..bn],
                                gwrow,
                                Some(garow),
                            )
                            .0,
                        );
                    }
                    (out, 0.0)
                })
                .collect(),
            _ => gw
                .par_chunks_mut(rows * n)
                .enumerate()
                .map(|(c, gw_rows)| {
                    let mut out = Vec::new();
                    for (r, gwrow) in gw_rows.chunks_mut(n).enumerate() {
                        let i = c * rows + r;
                        let wrow = &self.w[i * n..(i + 1) * n];
                        for b in 0..batch {
                            let yp = y_prev[b * n + i];
                            let gp = &gpre[b * n..(b + 1) * n];
                            let mut s = F::zero();
                            for j in 0..n {
                                s = s + wrow[j] * gp[j];
                                gwrow[j] = gwrow[j] + yp * gp[j];
                            }
                            out.push((b * n + i, s));
                        }
                    }
                    (out, 0.0)
                })
                .collect(),
        };
        for (out, gas) in row_sums {
            for (k, v) in out {
                gy_prev[k] = gy_prev[k] + v;
            }
            ga_shared += gas;
        }
        (gy_prev, (geta, ga_shared))
    }
}

/// The inner loop of [`HostRnn::backward_merged`] for one row `i` of one episode, in lanes of 8
/// so that it vectorizes: returns `Σ_j G_ij f_η`, `Σ_j G_ij f_pre` and
/// `Σ_j (W_ij + α_ij H_ij) g_pre_j`; updates `G` to `g_H(t-1)`, `∂α` and the column sums.
#[allow(clippy::too_many_arguments)]
#[inline]
fn merged_kernel<F: Real, R: RuleKernel>(
    rule: &R,
    g: &mut [F],
    h: &[F],
    w: &[F],
    a: &[F],
    ga: &mut [F],
    y: &[F],
    p: &[F],
    cn: &mut [F],
    (yp, ypp, eta): (F, F, F),
) -> (F, F, F) {
    const L: usize = 8;
    let n = g.len();
    let full = n - n % L;
    let mut e = [F::zero(); L];
    let mut r = [F::zero(); L];
    let mut s = [F::zero(); L];
    // One element: the step's local derivatives at (H(t-1), y(t-1)_i, y(t)_j), and the
    // previous step's ∂H(t-1)/∂y(t-1)_j for the column sums.
    let one = |old: F,
               hv: F,
               yj: F,
               pv: F,
               av: F,
               wv: F,
               gav: &mut F,
               gc: &mut F,
               cc: &mut F,
               e: &mut F,
               r: &mut F,
               s: &mut F| {
        let l = rule.local(hv, yp, yj, eta);
        *e = *e + old * l.d_rate;
        *r = *r + old * l.d_pre;
        *s = *s + (wv + av * hv) * pv;
        let coef = yp * pv;
        *gav = *gav + coef * hv;
        let gn = l.d_h * old + av * coef;
        *gc = gn;
        *cc = *cc + gn * rule.post_partial_after(hv, ypp, eta);
    };
    let it = g[..full]
        .chunks_exact_mut(L)
        .zip(h[..full].chunks_exact(L))
        .zip(w[..full].chunks_exact(L))
        .zip(a[..full].chunks_exact(L))
        .zip(ga[..full].chunks_exact_mut(L))
        .zip(y[..full].chunks_exact(L))
        .zip(p[..full].chunks_exact(L))
        .zip(cn[..full].chunks_exact_mut(L));
    for (((((((gc, hc), wc), ac), gac), yc), pc), cc) in it {
        for l in 0..L {
            one(
                gc[l],
                hc[l],
                yc[l],
                pc[l],
                ac[l],
                wc[l],
                &mut gac[l],
                &mut gc[l],
                &mut cc[l],
                &mut e[l],
                &mut r[l],
                &mut s[l],
            );
        }
    }
    for j in full..n {
        one(
            g[j], h[j], y[j], p[j], a[j], w[j], &mut ga[j], &mut g[j], &mut cn[j], &mut e[0],
            &mut r[0], &mut s[0],
        );
    }
    let sum = |v: [F; L]| v.into_iter().fold(F::zero(), |acc, x| acc + x);
    (sum(e), sum(r), sum(s))
}
