//! The single layer's `fused` engine (`train.engine = "fused"`): backpropagation through time
//! written out by hand on the host, in the model's precision (f32 or f64). The episodes of a
//! batch run in lockstep in blocks of up to 8, every array laid out `[...][episode]` so that the
//! inner loops run over the block's episodes (SIMD lanes); the blocks run on rayon's threads.
//!
//! The forward pass keeps every step's output `y(t)` and trace `H(t)` (a single layer's trace
//! is `n_in × n_out`: for the paper's tasks a few hundred numbers per step). The backward pass
//! then runs from the last step to the first, with `g_H = ∂L/∂H(t)`:
//!
//! ```text
//! ∂L/∂y_j(t)  = direct_j(t) + Σ_l g_H,lj · ∂f/∂post(H_lj(t-1), x_l(t), y_j(t), γ)
//! ∂L/∂raw_j   = ∂L/∂y_j(t) · (1 - y_j(t)²)
//! ∂L/∂w_kj   += ∂L/∂raw_j · x_k(t)
//! ∂L/∂α_kj   += ∂L/∂raw_j · H_kj(t-1) · x_k(t)
//! ∂L/∂b_j    += ∂L/∂raw_j
//! g_H(t-1)    = g_H(t) · ∂f/∂H + ∂L/∂raw_j · α_kj · x_k(t)
//! ```
//!
//! where `f` is the rule's update ([`crate::rules`]) and `direct_j(t)` the partial of the loss
//! through the step's own output (squared error, or readout and softmax cross-entropy). This is
//! one pass over the layer per step and direction, against the forward-mode recursion's
//! `2·n_in + 1` tangents per connection ([`super::analytic`], which stays the independent check).
//! `bohp-gradcheck` compares the two, autodiff and finite differences.
//!
//! With a modulator, `M(t) = tanh(Σ_j y_j(t)·w_Mj + b_M)` (one per episode) is the rule's rate
//! (simple) or moves the eligibility trace `E` into `H` (retroactive, `g_E = ∂L/∂E(t)`). The
//! backward step then makes two passes over the layer: the first gathers what the traces send
//! back to `y` and to `M`,
//!
//! ```text
//! ∂L/∂M      = Σ_kj g_H,kj · ∂H'/∂M                (simple: ∂f/∂η at rate M; retroactive: E(t-1))
//! ∂L/∂y_j(t) = direct_j + Σ_k g_H,kj · ∂H'/∂post + g_E,kj · ∂E'/∂post + ∂L/∂M · (1 - M²) · w_Mj
//! ∂L/∂w_Mj  += ∂L/∂M · (1 - M²) · y_j(t),     ∂L/∂b_M += ∂L/∂M · (1 - M²)
//! ```
//!
//! and the second, with `∂L/∂raw` known, the parameters' terms and the traces' gradients at
//! `t-1` (`g_H ← g_H·∂H'/∂H + ∂L/∂raw_j·α_kj·x_k`, `g_E ← g_E·∂E'/∂E + g_H·∂H'/∂E`).
//!
//! **Why this file is long** (about 1050 lines): the forward pass and the reverse pass of one
//! layer are written per lane block (`L` episodes at once, so that the compiler vectorises
//! across the batch), each for the three modulations and the three tasks' targets, and their
//! state must stay in step line by line; the unit tests at the end check it against the
//! analytic engine. The two passes above are the map.

use burn::tensor::DType;
use rayon::prelude::*;

use super::analytic::{Grads, Params, params_from_values};
use crate::engines::GradientEngine;
use crate::rules::retroactive::TwoTraceKernel;
use crate::rules::{Modulation, Real, Retroactive, RuleKernel, real};
use crate::single::network::PlasticNet;
use crate::single::tasks::{EpisodeBatch, Measures, Targets};

/// The parameters of a [`PlasticNet`] in `F`, row-major like the burn model.
#[derive(Debug, Clone)]
struct Layer<F> {
    n_in: usize,
    n_out: usize,
    classes: usize,
    gamma: F,
    w: Vec<F>,
    alpha: Vec<F>,
    b: Vec<F>,
    v: Vec<F>,
    c: Vec<F>,
    /// The modulator: how it gates the update, `w_M` (`[n_out]`) and `b_M`.
    modulator: Option<(Modulation, Vec<F>, F)>,
    /// The retroactive rule (the bound of `H`).
    retro: Retroactive,
}

impl<F: Real> Layer<F> {
    /// Whether the layer is modulated retroactively.
    fn retroactive(&self) -> bool {
        matches!(self.modulator, Some((Modulation::Retroactive, _, _)))
    }

    /// The host parameters in `F`.
    fn of(p: &Params) -> Self {
        let to = |v: &[f64]| v.iter().map(|&x| real(x)).collect::<Vec<F>>();
        let none = Vec::new();
        Layer {
            n_in: p.n_in,
            n_out: p.n_out,
            classes: p.classes(),
            gamma: real(p.gamma),
            w: to(&p.w),
            alpha: to(&p.alpha),
            b: to(&p.b),
            v: to(p.readout_v.as_ref().unwrap_or(&none)),
            c: to(p.readout_c.as_ref().unwrap_or(&none)),
            modulator: match (p.modulated(), &p.w_m, &p.b_m) {
                (true, Some(w_m), Some(b_m)) => Some((p.modulation, to(w_m), real(b_m[0]))),
                _ => None,
            },
            retro: Retroactive { bound: p.rule.clip },
        }
    }
}

/// Loss-gradient accumulators, in `F`, with `lanes` values per entry (one per episode of a
/// block; 1 once the lanes are added up).
#[derive(Debug, Clone)]
struct Acc<F> {
    lanes: usize,
    w: Vec<F>,
    alpha: Vec<F>,
    b: Vec<F>,
    w_m: Vec<F>,
    b_m: Vec<F>,
    v: Vec<F>,
    c: Vec<F>,
    /// The loss and error measures, per lane.
    loss: Vec<f64>,
    error: Vec<f64>,
}

impl<F: Real> Acc<F> {
    fn new(p: &Layer<F>, lanes: usize) -> Self {
        Acc {
            lanes,
            w: vec![F::zero(); p.w.len() * lanes],
            alpha: vec![F::zero(); p.alpha.len() * lanes],
            b: vec![F::zero(); p.b.len() * lanes],
            w_m: vec![F::zero(); p.modulator.as_ref().map_or(0, |m| m.1.len()) * lanes],
            b_m: vec![F::zero(); if p.modulator.is_some() { lanes } else { 0 }],
            v: vec![F::zero(); p.v.len() * lanes],
            c: vec![F::zero(); p.c.len() * lanes],
            loss: vec![0.0; lanes],
            error: vec![0.0; lanes],
        }
    }

    /// Zero again, for the next segment.
    fn clear(&mut self) {
        for v in [
            &mut self.w,
            &mut self.alpha,
            &mut self.b,
            &mut self.w_m,
            &mut self.b_m,
            &mut self.v,
            &mut self.c,
        ] {
            v.fill(F::zero());
        }
        self.loss.fill(0.0);
        self.error.fill(0.0);
    }

    /// The same sums with the lanes added up in order (one lane).
    fn folded(&self, p: &Layer<F>) -> Self {
        let mut out = Acc::new(p, 1);
        self.fold_into(&mut out, true);
        out
    }

    /// `self`'s lanes added up in order into `out` (one lane): written over `out` when `first`,
    /// else added to it, entry by entry. A folded `self` (one lane) adds its values as they are.
    fn fold_into(&self, out: &mut Self, first: bool) {
        for (from, to) in [
            (&self.w, &mut out.w),
            (&self.alpha, &mut out.alpha),
            (&self.b, &mut out.b),
            (&self.w_m, &mut out.w_m),
            (&self.b_m, &mut out.b_m),
            (&self.v, &mut out.v),
            (&self.c, &mut out.c),
        ] {
            add_lanes(from, self.lanes, to, first);
        }
        add_lanes(&self.loss, self.lanes, &mut out.loss, first);
        add_lanes(&self.error, self.lanes, &mut out.error, first);
    }
}

/// Each run of `lanes` values of `from` added up in order into the matching entry of `to`:
/// written over it when `first`, else added to it. One lane is the value itself (0 + −0 would
/// be +0).
fn add_lanes<T: num_traits::Float>(from: &[T], lanes: usize, to: &mut [T], first: bool) {
    for (c, o) in from.chunks(lanes).zip(to.iter_mut()) {
        let sum = if lanes == 1 {
            c[0]
        } else {
            c.iter().fold(T::zero(), |a, &x| a + x)
        };
        *o = if first { sum } else { *o + sum };
    }
}

/// Work buffers of one block of `L` episodes run in lockstep, every array `[...][L]` (the
/// episode innermost, so that the inner loops run over the lanes).
struct Work<F> {
    /// `x(t)`, `[steps][n_in][L]` (0 in unused lanes).
    x: Vec<F>,
    /// `H(t)` for `t = 0..=steps`, `[steps + 1][n_in * n_out][L]` (`H(0) = 0`; `H(steps)` is
    /// neither written nor read).
    h: Vec<F>,
    /// `y(t)`, `[steps][n_out][L]`.
    y: Vec<F>,
    /// The direct partial `∂L/∂y(t)`, `[steps][n_out][L]` (0 in unused lanes).
    dy: Vec<F>,
    /// `∂L/∂H`, `[n_in * n_out][L]`.
    gh: Vec<F>,
    /// `∂L/∂raw`, `[n_out][L]`.
    g_raw: Vec<F>,
    /// Logits, then softmax, then `∂L/∂z`, `[classes][L]`.
    z: Vec<F>,
    /// The modulator's `M(t)`, `[steps][L]` (modulated layers).
    m: Vec<F>,
    /// The eligibility trace `E(t)` for `t = 0..=steps`, `[steps + 1][n_in * n_out][L]`
    /// (retroactive modulation).
    e: Vec<F>,
    /// `∂L/∂E`, `[n_in * n_out][L]` (retroactive modulation).
    ge: Vec<F>,
}

impl<F: Real> Work<F> {
    fn new(p: &Layer<F>, steps: usize, lanes: usize) -> Self {
        let size = p.n_in * p.n_out;
        let retroactive = p.retroactive();
        Work {
            x: vec![F::zero(); steps * p.n_in * lanes],
            h: vec![F::zero(); (steps + 1) * size * lanes],
            y: vec![F::zero(); steps * p.n_out * lanes],
            dy: vec![F::zero(); steps * p.n_out * lanes],
            gh: vec![F::zero(); size * lanes],
            g_raw: vec![F::zero(); p.n_out * lanes],
            z: vec![F::zero(); p.classes * lanes],
            m: vec![
                F::zero();
                if p.modulator.is_some() {
                    steps * lanes
                } else {
                    0
                }
            ],
            e: vec![
                F::zero();
                if retroactive {
                    (steps + 1) * size * lanes
                } else {
                    0
                }
            ],
            ge: vec![F::zero(); if retroactive { size * lanes } else { 0 }],
        }
    }
}

impl<F: Real> Work<F> {
    /// Zero again, for the next block, what the block reads before it writes: the traces'
    /// gradients, the direct partials (unscored steps keep 0) and, in a partial block, the
    /// unused lanes' inputs. The first traces `H(0)` and `E(0)` are zero from [`Work::new`] on
    /// (never written); every other array is written whole first.
    fn clear(&mut self, partial: bool) {
        for v in [&mut self.dy, &mut self.gh, &mut self.ge] {
            v.fill(F::zero());
        }
        if partial {
            self.x.fill(F::zero());
        }
    }
}

/// A thread's buffers, reused from block to block: the block's work arrays (zeroed where read
/// before written, before each block) and the segment's per-lane gradient sums (zeroed before
/// each segment).
struct Buffers<F> {
    work: Work<F>,
    acc: Acc<F>,
}

impl<F: Real> Buffers<F> {
    fn new(p: &Layer<F>, steps: usize, lanes: usize) -> Self {
        Buffers {
            work: Work::new(p, steps, lanes),
            acc: Acc::new(p, lanes),
        }
    }
}

/// The scoring of a batch: what the pass needs from [`Targets`].
struct Scoring<'a> {
    targets: &'a Targets,
    /// Divisor of each scored step's loss (`batch × scored steps`; `batch` for completion).
    norm: f64,
}

impl<'a> Scoring<'a> {
    /// `batch`'s targets, each scored step's loss divided by `batch × scored steps`.
    fn of(batch: &'a EpisodeBatch) -> Self {
        Scoring {
            targets: &batch.targets,
            norm: (batch.batch * batch.scored_steps()) as f64,
        }
    }
}

/// `L` consecutive values of `v` from entry `i` on, as an array.
#[inline(always)]
fn lanes<F: Copy, const L: usize>(v: &[F], i: usize) -> &[F; L] {
    v[i * L..(i + 1) * L].try_into().expect("L lanes")
}

#[inline(always)]
fn lanes_mut<F: Copy, const L: usize>(v: &mut [F], i: usize) -> &mut [F; L] {
    (&mut v[i * L..(i + 1) * L]).try_into().expect("L lanes")
}

// The lane kernels below take every array as its own argument: the compiler then knows they do
// not overlap (they are distinct references) and runs the lanes as SIMD vectors; written inline
// in `block`, where the arrays come out of iterators, it kept them scalar.

/// `y_j += (w_j + α_j·H_j)·x` for one row of the layer.
#[inline(always)]
fn forward_row<F: Real, const L: usize>(
    y: &mut [[F; L]],
    w: &[F],
    a: &[F],
    h: &[[F; L]],
    xk: &[F; L],
) {
    let xk = *xk;
    for (((yj, &w), &a), h) in y.iter_mut().zip(w).zip(a).zip(h) {
        let (h, mut v) = (*h, *yj);
        for l in 0..L {
            v[l] = v[l] + (w + a * h[l]) * xk[l];
        }
        *yj = v;
    }
}

/// One row of the trace update, `H'_j = f(H_j, x, y_j)`.
#[inline(always)]
fn trace_row<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    out: &mut [[F; L]],
    h: &[[F; L]],
    y: &[[F; L]],
    xk: &[F; L],
    gamma: F,
) {
    let xk = *xk;
    for ((out, h), yj) in out.iter_mut().zip(h).zip(y) {
        let (h, yj) = (*h, *yj);
        let mut v = [F::zero(); L];
        for l in 0..L {
            v[l] = rule.local(h[l], xk[l], yj[l], gamma).value;
        }
        *out = v;
    }
}

/// What one row's `∂L/∂H` sends back to `y` through the rule's `post`.
#[inline(always)]
fn post_row<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    g: &mut [[F; L]],
    gh: &[[F; L]],
    h: &[[F; L]],
    y: &[[F; L]],
    xk: &[F; L],
    gamma: F,
) {
    let xk = *xk;
    for (((g, gh), h), yj) in g.iter_mut().zip(gh).zip(h).zip(y) {
        let (gh, h, yj, mut v) = (*gh, *h, *yj, *g);
        for l in 0..L {
            v[l] = v[l] + gh[l] * rule.local(h[l], xk[l], yj[l], gamma).d_post;
        }
        *g = v;
    }
}

/// One row's `∂L/∂w` and `∂L/∂α` at one step.
#[inline(always)]
fn param_row<F: Real, const L: usize>(
    gw: &mut [[F; L]],
    ga: &mut [[F; L]],
    g: &[[F; L]],
    h: &[[F; L]],
    xk: &[F; L],
) {
    let xk = *xk;
    for (((gw, ga), g), h) in gw.iter_mut().zip(ga.iter_mut()).zip(g).zip(h) {
        let (g, h, mut vw, mut va) = (*g, *h, *gw, *ga);
        for l in 0..L {
            let gx = g[l] * xk[l];
            vw[l] = vw[l] + gx;
            va[l] = va[l] + gx * h[l];
        }
        (*gw, *ga) = (vw, va);
    }
}

/// One row of `∂L/∂H(t-1) = ∂L/∂H(t)·∂f/∂H + ∂L/∂raw·α·x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn trace_grad_row<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    gh: &mut [[F; L]],
    h: &[[F; L]],
    y: &[[F; L]],
    g: &[[F; L]],
    a: &[F],
    xk: &[F; L],
    gamma: F,
) {
    let xk = *xk;
    for ((((gh, h), yj), g), &a) in gh.iter_mut().zip(h).zip(y).zip(g).zip(a) {
        let (h, yj, g, mut v) = (*h, *yj, *g, *gh);
        for l in 0..L {
            let d_h = rule.local(h[l], xk[l], yj[l], gamma).d_h;
            v[l] = v[l] * d_h + g[l] * a * xk[l];
        }
        *gh = v;
    }
}

/// One row of a modulated update with each lane's `M`: `H'_j = f(H_j, x, y_j, M)` (simple), or
/// `H'_j = clip(H_j + M·E_j)`, `E'_j = (1-γ)·E_j + γ·x·y_j` (`retro`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn modulated_row<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    retro: Option<&Retroactive>,
    (h_out, e_out): (&mut [[F; L]], &mut [[F; L]]),
    (h, e): (&[[F; L]], &[[F; L]]),
    y: &[[F; L]],
    xk: &[F; L],
    m: &[F; L],
    gamma: F,
) {
    for j in 0..y.len() {
        let (hj, yj) = (h[j], y[j]);
        match retro {
            None => {
                let mut v = [F::zero(); L];
                for l in 0..L {
                    v[l] = rule.local(hj[l], xk[l], yj[l], m[l]).value;
                }
                h_out[j] = v;
            }
            Some(r) => {
                let (ej, mut vh, mut ve) = (e[j], [F::zero(); L], [F::zero(); L]);
                for l in 0..L {
                    let local = r.local2(hj[l], ej[l], xk[l], yj[l], m[l], gamma);
                    (vh[l], ve[l]) = (local.h, local.e.value);
                }
                (h_out[j], e_out[j]) = (vh, ve);
            }
        }
    }
}

/// First pass of a modulated reverse step over one row: adds what the traces' gradients `g_H`
/// (and `g_E`) send back to `y` into `g` (`∂H'/∂post`, `∂E'/∂post`) and to `M` into `g_m`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn modulated_sends<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    retro: Option<&Retroactive>,
    (g, g_m): (&mut [[F; L]], &mut [F; L]),
    (gh, ge): (&[[F; L]], &[[F; L]]),
    (h, e): (&[[F; L]], &[[F; L]]),
    y: &[[F; L]],
    xk: &[F; L],
    m: &[F; L],
    gamma: F,
) {
    for j in 0..y.len() {
        let (ghj, hj, yj, mut gj) = (gh[j], h[j], y[j], g[j]);
        match retro {
            None => {
                for l in 0..L {
                    let local = rule.local(hj[l], xk[l], yj[l], m[l]);
                    gj[l] = gj[l] + ghj[l] * local.d_post;
                    g_m[l] = g_m[l] + ghj[l] * local.d_rate;
                }
            }
            Some(r) => {
                let (gej, ej) = (ge[j], e[j]);
                for l in 0..L {
                    let local = r.local2(hj[l], ej[l], xk[l], yj[l], m[l], gamma);
                    gj[l] = gj[l] + ghj[l] * local.dh_post + gej[l] * local.e.d_post;
                    g_m[l] = g_m[l] + ghj[l] * local.dh_m;
                }
            }
        }
        g[j] = gj;
    }
}

/// Second pass of a modulated reverse step over one row: `g_H ← g_H·∂H'/∂H + ∂L/∂raw·α·x`
/// (and `g_E ← g_E·∂E'/∂E + g_H·∂H'/∂E`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn modulated_trace_grads<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    retro: Option<&Retroactive>,
    (gh, ge): (&mut [[F; L]], &mut [[F; L]]),
    (h, e): (&[[F; L]], &[[F; L]]),
    (y, g): (&[[F; L]], &[[F; L]]),
    (a, xk): (&[F], &[F; L]),
    m: &[F; L],
    gamma: F,
) {
    for j in 0..y.len() {
        let (hj, yj, gj, mut ghj) = (h[j], y[j], g[j], gh[j]);
        match retro {
            None => {
                for l in 0..L {
                    let d_h = rule.local(hj[l], xk[l], yj[l], m[l]).d_h;
                    ghj[l] = ghj[l] * d_h + gj[l] * a[j] * xk[l];
                }
            }
            Some(r) => {
                let (ej, mut gej) = (e[j], ge[j]);
                for l in 0..L {
                    let local = r.local2(hj[l], ej[l], xk[l], yj[l], m[l], gamma);
                    gej[l] = gej[l] * local.e.d_h + ghj[l] * local.dh_e;
                    ghj[l] = ghj[l] * local.dh_h + gj[l] * a[j] * xk[l];
                }
                ge[j] = gej;
            }
        }
        gh[j] = ghj;
    }
}

fn f64_of<F: Real>(v: F) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// One block's work: episodes `first .. first + active` of `batch` (at most `L`).
struct Job<'a, F, R> {
    rule: &'a R,
    p: &'a Layer<F>,
    batch: &'a EpisodeBatch,
    first: usize,
    active: usize,
    scoring: &'a Scoring<'a>,
}

/// [`block_generic`], compiled for AVX2 and FMA where the CPU has them: eight f32 lanes per
/// instruction instead of SSE2's four, the same arithmetic, so the same result (the only fused
/// multiply-adds are the `tanh`'s explicit `mul_add`s, which the generic build computes
/// exactly as well, by a library call).
fn block<F: Real, R: RuleKernel, const L: usize>(job: &Job<F, R>, buf: &mut Buffers<F>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { block_avx2::<F, R, L>(job, buf) };
    }
    block_generic::<F, R, L>(job, buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2<F: Real, R: RuleKernel, const L: usize>(job: &Job<F, R>, buf: &mut Buffers<F>) {
    block_generic::<F, R, L>(job, buf)
}

/// The block's episodes forward and backward in lockstep, one lane each (unused lanes see zero
/// inputs and no loss, so they add nothing); leaves their gradient sums, lane by lane, in
/// `buf.acc`.
#[inline(always)]
fn block_generic<F: Real, R: RuleKernel, const L: usize>(job: &Job<F, R>, buf: &mut Buffers<F>) {
    let Job {
        rule,
        p,
        batch,
        first,
        active,
        scoring,
    } = *job;
    let (n_in, n_out, classes) = (p.n_in, p.n_out, p.classes);
    let size = n_in * n_out;
    let steps = batch.steps;
    let bsz = batch.batch;
    // The normalisations multiply by the reciprocal, as the autodiff loss does (a division per
    // output and lane was a tenth of the block's time at batch 1024).
    let inv_norm = 1.0 / scoring.norm;
    let inv_norm_f: F = real(inv_norm);
    let inv_class_norm = 1.0 / (scoring.norm * classes as f64);
    let gamma = p.gamma;
    let Buffers { work, acc } = buf;
    work.clear(active < L);
    for (t, xt) in work.x.chunks_exact_mut(n_in * L).enumerate() {
        let rows = &batch.inputs[(t * bsz + first) * n_in..(t * bsz + first + active) * n_in];
        for (l, row) in rows.chunks_exact(n_in).enumerate() {
            for (xk, &v) in xt.as_chunks_mut::<L>().0.iter_mut().zip(row) {
                xk[l] = real(v);
            }
        }
    }
    // Forward. The labelled tasks' loss, -Σ_t ln p_t(target), takes one logarithm per episode:
    // the product of the step's probabilities, taken out before it could underflow (a
    // logarithm per scored step was 15% of one-shot's time at batch 1024).
    let mut likelihood = [1.0f64; L];
    for t in 0..steps {
        let x = &work.x[t * n_in * L..(t + 1) * n_in * L];
        let (before, after) = work.h.split_at_mut((t + 1) * size * L);
        let h_old = &before[t * size * L..];
        let h_new = &mut after[..size * L];
        let y = &mut work.y[t * n_out * L..(t + 1) * n_out * L];
        for (j, &bj) in p.b.iter().enumerate() {
            *lanes_mut::<F, L>(y, j) = [bj; L];
        }
        // Row k of the layer is entries k·n_out .. (k+1)·n_out, `[j][lane]` in the traces.
        let rows = || {
            x.as_chunks::<L>()
                .0
                .iter()
                .zip(p.w.chunks_exact(n_out))
                .zip(p.alpha.chunks_exact(n_out))
        };
        for (((xk, w), a), h) in rows().zip(h_old.chunks_exact(n_out * L)) {
            if xk.iter().all(|v| *v == F::zero()) {
                continue;
            }
            forward_row(y.as_chunks_mut::<L>().0, w, a, h.as_chunks::<L>().0, xk);
        }
        F::tanh_in_place(y);
        if let Some((_, w_m, b_m)) = &p.modulator {
            // M(t) = tanh(Σ_j y_j·w_Mj + b_M), one per lane.
            let m = lanes_mut::<F, L>(&mut work.m, t);
            *m = [*b_m; L];
            for (j, &wj) in w_m.iter().enumerate() {
                let yj = lanes::<F, L>(y, j);
                for l in 0..L {
                    m[l] = m[l] + yj[l] * wj;
                }
            }
            F::tanh_in_place(m);
            let m = *m;
            let retro = p.retroactive().then_some(&p.retro);
            let (e_old, e_new): (&[F], &mut [F]) = if retro.is_some() {
                let (before, after) = work.e.split_at_mut((t + 1) * size * L);
                (&before[t * size * L..], &mut after[..size * L])
            } else {
                (&[], &mut [])
            };
            // The last step's traces are never read: not computed.
            let rows = if t + 1 < steps { n_in } else { 0 };
            for (k, xk) in x.as_chunks::<L>().0.iter().enumerate().take(rows) {
                let row = k * n_out * L..(k + 1) * n_out * L;
                let (er, er_new): (&[F], &mut [F]) = if retro.is_some() {
                    (&e_old[row.clone()], &mut e_new[row.clone()])
                } else {
                    (&[], &mut [])
                };
                modulated_row(
                    rule,
                    retro,
                    (
                        h_new[row.clone()].as_chunks_mut::<L>().0,
                        er_new.as_chunks_mut::<L>().0,
                    ),
                    (h_old[row].as_chunks::<L>().0, er.as_chunks::<L>().0),
                    y.as_chunks::<L>().0,
                    xk,
                    &m,
                    gamma,
                );
            }
        } else if t + 1 < steps {
            // (The last step's traces are never read: not computed.)
            for (xk, (h, out)) in x.as_chunks::<L>().0.iter().zip(
                h_old
                    .chunks_exact(n_out * L)
                    .zip(h_new.chunks_exact_mut(n_out * L)),
            ) {
                trace_row(
                    rule,
                    out.as_chunks_mut::<L>().0,
                    h.as_chunks::<L>().0,
                    y.as_chunks::<L>().0,
                    xk,
                    gamma,
                );
            }
        }
        // The loss's direct partials at this step.
        let dy = &mut work.dy[t * n_out * L..(t + 1) * n_out * L];
        match scoring.targets {
            Targets::Pattern { values } => {
                if t == steps - 1 {
                    for l in 0..active {
                        let target = &values[(first + l) * n_out..(first + l + 1) * n_out];
                        let (mut loss, mut error) = (acc.loss[l], acc.error[l]);
                        for (j, &tj) in target.iter().enumerate() {
                            let diff = f64_of(y[j * L + l]) - tj;
                            loss += diff * diff * inv_norm;
                            error += diff.abs() * inv_norm;
                            dy[j * L + l] = real::<F>(2.0 * diff) * inv_norm_f;
                        }
                        (acc.loss[l], acc.error[l]) = (loss, error);
                    }
                }
            }
            Targets::Labels {
                classes: cls,
                scored,
            } => {
                if !scored[t] {
                    continue;
                }
                let z = &mut work.z;
                for (m, &cm) in p.c.iter().enumerate() {
                    let zm = lanes_mut::<F, L>(z, m);
                    *zm = [cm; L];
                    for j in 0..n_out {
                        let (v, yj) = (p.v[j * classes + m], lanes::<F, L>(y, j));
                        for l in 0..L {
                            zm[l] = zm[l] + yj[l] * v;
                        }
                    }
                }
                let target = cls[t];
                for l in 0..active {
                    let max = (0..classes)
                        .map(|m| z[m * L + l])
                        .fold(F::neg_infinity(), F::max);
                    let mut sum = F::zero();
                    for m in 0..classes {
                        let e = (z[m * L + l] - max).exp();
                        z[m * L + l] = e;
                        sum = sum + e;
                    }
                    // z holds the probabilities, then ∂L/∂z.
                    for m in 0..classes {
                        z[m * L + l] = z[m * L + l] / sum;
                    }
                    likelihood[l] *= f64_of(z[target * L + l]);
                    // (A probability is at least f32's 1.4e-45 or 0: the product stays normal.)
                    if likelihood[l] < 1e-200 {
                        acc.loss[l] -= likelihood[l].ln() * inv_norm;
                        likelihood[l] = 1.0;
                    }
                    for m in 0..classes {
                        let hot = if m == target { F::one() } else { F::zero() };
                        let diff = z[m * L + l] - hot;
                        acc.error[l] += f64_of(diff.abs()) * inv_class_norm;
                        z[m * L + l] = diff * inv_norm_f;
                    }
                }
                for l in active..L {
                    for m in 0..classes {
                        z[m * L + l] = F::zero();
                    }
                }
                for m in 0..classes {
                    let dz = lanes::<F, L>(z, m);
                    let gc = lanes_mut::<F, L>(&mut acc.c, m);
                    for l in 0..L {
                        gc[l] = gc[l] + dz[l];
                    }
                }
                for j in 0..n_out {
                    let yj = *lanes::<F, L>(y, j);
                    let mut g = [F::zero(); L];
                    for m in 0..classes {
                        let (v, dz) = (p.v[j * classes + m], lanes::<F, L>(z, m));
                        let gv = lanes_mut::<F, L>(&mut acc.v, j * classes + m);
                        for l in 0..L {
                            gv[l] = gv[l] + yj[l] * dz[l];
                            g[l] = g[l] + v * dz[l];
                        }
                    }
                    *lanes_mut::<F, L>(dy, j) = g;
                }
            }
        }
    }
    if matches!(scoring.targets, Targets::Labels { .. }) {
        for l in 0..active {
            acc.loss[l] -= likelihood[l].ln() * inv_norm;
        }
    }
    // Backward.
    for t in (0..steps).rev() {
        let x = &work.x[t * n_in * L..(t + 1) * n_in * L];
        let h_old = &work.h[t * size * L..(t + 1) * size * L];
        let y = &work.y[t * n_out * L..(t + 1) * n_out * L];
        // ∂L/∂y(t): the direct partial plus what H(t) sends back through post.
        let g_raw = &mut work.g_raw;
        g_raw.copy_from_slice(&work.dy[t * n_out * L..(t + 1) * n_out * L]);
        if let Some((_, w_m, _)) = &p.modulator {
            let m = *lanes::<F, L>(&work.m, t);
            let retro = p.retroactive().then_some(&p.retro);
            let e_old: &[F] = if retro.is_some() {
                &work.e[t * size * L..(t + 1) * size * L]
            } else {
                &[]
            };
            if t + 1 < steps {
                let mut g_m = [F::zero(); L];
                for (k, xk) in x.as_chunks::<L>().0.iter().enumerate() {
                    let row = k * n_out * L..(k + 1) * n_out * L;
                    let (ge, er): (&[F], &[F]) = if retro.is_some() {
                        (&work.ge[row.clone()], &e_old[row.clone()])
                    } else {
                        (&[], &[])
                    };
                    modulated_sends(
                        rule,
                        retro,
                        (g_raw.as_chunks_mut::<L>().0, &mut g_m),
                        (
                            work.gh[row.clone()].as_chunks::<L>().0,
                            ge.as_chunks::<L>().0,
                        ),
                        (h_old[row].as_chunks::<L>().0, er.as_chunks::<L>().0),
                        y.as_chunks::<L>().0,
                        xk,
                        &m,
                        gamma,
                    );
                }
                // Through M = tanh(Σ_j y_j·w_Mj + b_M).
                for l in 0..L {
                    g_m[l] = g_m[l] * (F::one() - m[l] * m[l]);
                    acc.b_m[l] = acc.b_m[l] + g_m[l];
                }
                for (j, &wj) in w_m.iter().enumerate() {
                    let yj = *lanes::<F, L>(y, j);
                    let gw = lanes_mut::<F, L>(&mut acc.w_m, j);
                    let gy = lanes_mut::<F, L>(g_raw, j);
                    for l in 0..L {
                        gw[l] = gw[l] + g_m[l] * yj[l];
                        gy[l] = gy[l] + g_m[l] * wj;
                    }
                }
            }
            for (g, &yj) in g_raw.iter_mut().zip(y) {
                *g = *g * (F::one() - yj * yj);
            }
            for (gb, &g) in acc.b.iter_mut().zip(g_raw.iter()) {
                *gb = *gb + g;
            }
            for (k, xk) in x.as_chunks::<L>().0.iter().enumerate() {
                let row = k * n_out * L..(k + 1) * n_out * L;
                let (g, h) = (
                    g_raw.as_chunks::<L>().0,
                    h_old[row.clone()].as_chunks::<L>().0,
                );
                if xk.iter().any(|v| *v != F::zero()) {
                    param_row(
                        acc.w[row.clone()].as_chunks_mut::<L>().0,
                        acc.alpha[row.clone()].as_chunks_mut::<L>().0,
                        g,
                        h,
                        xk,
                    );
                }
                if t > 0 {
                    let (ge, er): (&mut [F], &[F]) = if retro.is_some() {
                        (&mut work.ge[row.clone()], &e_old[row.clone()])
                    } else {
                        (&mut [], &[])
                    };
                    modulated_trace_grads(
                        rule,
                        retro,
                        (
                            work.gh[row].as_chunks_mut::<L>().0,
                            ge.as_chunks_mut::<L>().0,
                        ),
                        (h, er.as_chunks::<L>().0),
                        (y.as_chunks::<L>().0, g),
                        (&p.alpha[k * n_out..(k + 1) * n_out], xk),
                        &m,
                        gamma,
                    );
                }
            }
            continue;
        }
        if t + 1 < steps {
            for (xk, (gh, h)) in x.as_chunks::<L>().0.iter().zip(
                work.gh
                    .chunks_exact(n_out * L)
                    .zip(h_old.chunks_exact(n_out * L)),
            ) {
                post_row(
                    rule,
                    g_raw.as_chunks_mut::<L>().0,
                    gh.as_chunks::<L>().0,
                    h.as_chunks::<L>().0,
                    y.as_chunks::<L>().0,
                    xk,
                    gamma,
                );
            }
        }
        for (g, &yj) in g_raw.iter_mut().zip(y) {
            *g = *g * (F::one() - yj * yj);
        }
        for (gb, &g) in acc.b.iter_mut().zip(g_raw.iter()) {
            *gb = *gb + g;
        }
        let row = n_out * L;
        for ((((xk, a), h), (gw, ga)), gh) in x
            .as_chunks::<L>()
            .0
            .iter()
            .zip(p.alpha.chunks_exact(n_out))
            .zip(h_old.chunks_exact(row))
            .zip(
                acc.w
                    .chunks_exact_mut(row)
                    .zip(acc.alpha.chunks_exact_mut(row)),
            )
            .zip(work.gh.chunks_exact_mut(row))
        {
            let (g, h) = (g_raw.as_chunks::<L>().0, h.as_chunks::<L>().0);
            if xk.iter().any(|v| *v != F::zero()) {
                param_row(
                    gw.as_chunks_mut::<L>().0,
                    ga.as_chunks_mut::<L>().0,
                    g,
                    h,
                    xk,
                );
            }
            if t > 0 {
                let y = y.as_chunks::<L>().0;
                trace_grad_row(rule, gh.as_chunks_mut::<L>().0, h, y, g, a, xk, gamma);
            }
        }
    }
}

/// Episodes per segment: a segment's blocks add into one set of per-lane sums, whose lanes are
/// added up once the segment ends; the segments are then added in order. The sums depend on
/// the segment length and the block width `L`, not on the thread count.
const SEGMENT: usize = 64;

/// The whole batch in blocks of `L` episodes, segment by segment, the segments on rayon's
/// threads when there are several and they are worth it.
fn blocks<F: Real, R: RuleKernel, const L: usize>(
    rule: &R,
    p: &Layer<F>,
    batch: &EpisodeBatch,
    scoring: &Scoring,
) -> Acc<F> {
    let count = batch.batch.div_ceil(L);
    let per_segment = SEGMENT.div_ceil(L);
    let segments = count.div_ceil(per_segment);
    // One segment's blocks in order into `buf.acc` (zeroed first).
    let segment = |buf: &mut Buffers<F>, s: usize| {
        buf.acc.clear();
        for c in s * per_segment..((s + 1) * per_segment).min(count) {
            let first = c * L;
            let job = Job {
                rule,
                p,
                batch,
                first,
                active: L.min(batch.batch - first),
                scoring,
            };
            block::<F, R, L>(&job, buf);
        }
    };
    let buffers = || Buffers::new(p, batch.steps, L);
    // Threads pay when a segment outweighs handing it over. Measured on 2 cores, batches
    // 128-1024, two threads against one (alternating runs): reversal (51,200 connection-steps
    // per segment) 1.3-1.45× faster, one-shot (25,600) 1.1-1.5×, completion (8,192) no faster
    // and at batch 256 slower (5.2 against 5.7 M episodes/s). Hence at least 16,384.
    let worth = batch.steps * p.n_in * p.n_out * SEGMENT >= 16_384;
    // Each segment's lanes are added up in order, then the segments in order into one total:
    // the same sums on one thread (folded as each segment ends) as on several.
    let mut total = Acc::new(p, 1);
    if segments > 1 && rayon::current_num_threads() > 1 && worth {
        let one = |buf: &mut Buffers<F>, s: usize| {
            segment(buf, s);
            buf.acc.folded(p)
        };
        let parts: Vec<Acc<F>> = (0..segments)
            .into_par_iter()
            .map_init(buffers, one)
            .collect();
        for (s, part) in parts.iter().enumerate() {
            part.fold_into(&mut total, s == 0);
        }
    } else {
        let mut buf = buffers();
        for s in 0..segments {
            segment(&mut buf, s);
            buf.acc.fold_into(&mut total, s == 0);
        }
    }
    total
}

/// The loss, measures and gradients of `batch` under `params` (the host parameters of
/// [`super::analytic`], the rule included), computed in `F`, the gradients widened to f64.
/// Segments of the batch run on rayon's threads when the batch has several.
pub fn evaluate<F: Real>(params: &Params, batch: &EpisodeBatch) -> (Measures, Grads) {
    let p = Layer::<F>::of(params);
    assert_eq!(
        batch.n_in, p.n_in,
        "episode input size must match the network"
    );
    let scoring = Scoring::of(batch);
    // Blocks of `L` episodes in lockstep (`L` = 16 from batch 16, else the largest power of two
    // up to the batch; blocks of 8 compile to a loop that transposes the lanes, 6× slower per
    // row than 16 in a micro-benchmark), segments of `SEGMENT` episodes each on one thread,
    // then added in order: the result does not depend on the thread count or on scheduling.
    let acc = crate::with_rule!(params.rule, |k| match batch.batch {
        1 => blocks::<F, _, 1>(&k, &p, batch, &scoring),
        2..=3 => blocks::<F, _, 2>(&k, &p, batch, &scoring),
        4..=7 => blocks::<F, _, 4>(&k, &p, batch, &scoring),
        8..=15 => blocks::<F, _, 8>(&k, &p, batch, &scoring),
        _ => blocks::<F, _, 16>(&k, &p, batch, &scoring),
    });
    let measures = batch.measures(acc.loss[0], acc.error[0]);
    let widen = |v: &[F]| {
        v.iter()
            .map(|x| x.to_f64().unwrap_or(f64::NAN))
            .collect::<Vec<f64>>()
    };
    let readout = params.readout_c.is_some();
    let grads = Grads {
        w: widen(&acc.w),
        alpha: widen(&acc.alpha),
        b: widen(&acc.b),
        w_m: p.modulator.is_some().then(|| widen(&acc.w_m)),
        b_m: p.modulator.is_some().then(|| widen(&acc.b_m)),
        readout_v: readout.then(|| widen(&acc.v)),
        readout_c: readout.then(|| widen(&acc.c)),
    };
    (measures, grads)
}

/// Training with the fused reverse-mode gradients (`train.engine = "fused"` for the single
/// layer): [`evaluate`] in the model's precision, with the parameters and Adam on the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerFused;

impl GradientEngine for LayerFused {
    fn name(&self) -> &'static str {
        "fused"
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
        let params = params_from_values(model, values);
        let (measures, grads) = match model.plastic.w.val().dtype() {
            DType::F64 => evaluate::<f64>(&params, batch),
            _ => evaluate::<f32>(&params, batch),
        };
        Some((measures, grads.in_order_of(values)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;
    use crate::single::config::SingleLayerConfig;
    use crate::single::train::init_model;

    /// A `kind` task's config (f64, seed `seed`, batch `batch`) and its initial host parameters.
    fn task(kind: &str, seed: u64, batch: usize) -> (SingleLayerConfig, Params) {
        let text = format!(
            "seed = {seed}\ndtype = \"f64\"\n[task]\nkind = \"{kind}\"\n[model]\ngamma = 0.1\n\
             [train]\nepisodes = 10\nbatch = {batch}\nlearning_rate = 0.01\n"
        );
        let config = SingleLayerConfig::parse(&text, std::path::Path::new("test.toml")).unwrap();
        config.validate("test.toml").unwrap();
        let device = crate::device::init_device(config.device, config.dtype).unwrap();
        let params = super::super::analytic::params_of(&init_model(&config, &device));
        (config, params)
    }

    /// The AVX2 build of a block (where the CPU has it) gives the same bits as the generic one,
    /// in f32 and f64, on every task, in blocks of 8 and of 16 lanes.
    #[test]
    fn the_simd_build_gives_the_same_bits() {
        fn both<F: Real, const L: usize>(params: &Params, batch: &EpisodeBatch, scoring: &Scoring) {
            let layer = Layer::<F>::of(params);
            let job = Job {
                rule: &crate::rules::Hebb,
                p: &layer,
                batch,
                first: 0,
                active: L,
                scoring,
            };
            // One buffer for both: the second block starts from the first one's leftovers,
            // which it must clear where it reads them.
            let mut buf = Buffers::new(&layer, batch.steps, L);
            block::<F, _, L>(&job, &mut buf);
            let a = buf.acc.folded(&layer);
            buf.acc.clear();
            block_generic::<F, _, L>(&job, &mut buf);
            let b = buf.acc.folded(&layer);
            assert_eq!((a.loss, a.error), (b.loss, b.error));
            assert_eq!((&a.w, &a.alpha, &a.b), (&b.w, &b.alpha, &b.b));
            assert_eq!((&a.v, &a.c), (&b.v, &b.c));
            assert!(a.alpha.iter().any(|g| *g != F::zero()));
        }
        // Blocks of 8 (batches 8-15) and of 16 (from batch 16).
        for (kind, size) in [
            ("completion", 8),
            ("one-shot", 8),
            ("reversal", 8),
            ("completion", 16),
            ("one-shot", 16),
            ("reversal", 16),
        ] {
            let (config, params) = task(kind, 5, size);
            let batch = config.task().generate(5, Stream::Train, 0, size);
            let scoring = Scoring::of(&batch);
            if size == 8 {
                both::<f32, 8>(&params, &batch, &scoring);
                both::<f64, 8>(&params, &batch, &scoring);
            } else {
                both::<f32, 16>(&params, &batch, &scoring);
                both::<f64, 16>(&params, &batch, &scoring);
            }
        }
    }

    /// The result does not depend on the thread count (fixed segments, added in order), and
    /// the batch's episodes all contribute: at batch 7 (one block of 4 lanes and one of 3) and
    /// at batch 150 (blocks of 16, three segments, the last block partial; one-shot's and
    /// reversal's segments take the threaded path, completion's are too small for it).
    #[test]
    fn the_thread_count_does_not_change_the_result() {
        for (kind, size) in [
            ("completion", 7),
            ("one-shot", 7),
            ("reversal", 7),
            ("completion", 150),
            ("one-shot", 150),
            ("reversal", 150),
        ] {
            let (config, params) = task(kind, 3, size);
            let batch = config.task().generate(3, Stream::Train, 0, size);
            let on = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| evaluate::<f64>(&params, &batch))
            };
            let (m1, g1) = on(1);
            let (m3, g3) = on(3);
            assert_eq!(m1, m3, "{kind}");
            assert_eq!(g1, g3, "{kind}");
            // The batch's gradient is the mean of its episodes' (each drawn alone: episode e
            // is the same whatever the batch).
            let flat = |g: &Grads| -> Vec<f64> {
                g.groups().iter().flat_map(|(_, v)| v.to_vec()).collect()
            };
            let g1 = flat(&g1);
            let mut mean = vec![0.0; g1.len()];
            for e in 0..size {
                let one = config.task().generate(3, Stream::Train, e as u64, 1);
                let (_, g) = evaluate::<f64>(&params, &one);
                for (m, v) in mean.iter_mut().zip(flat(&g)) {
                    *m += v / size as f64;
                }
            }
            for (a, m) in g1.iter().zip(&mean) {
                assert!(
                    (a - m).abs() <= 1e-12 * m.abs().max(1e-6),
                    "{kind}: {a} vs {m}"
                );
            }
            assert!(
                mean.iter().filter(|m| **m != 0.0).count() > mean.len() / 2,
                "{kind}"
            );
        }
    }
}
