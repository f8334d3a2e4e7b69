//! The fused actor-critic engine (`train.engine = "fused"`): a whole A2C update on the host,
//! rollout, loss and reverse pass, with no tensor operation and no autodiff graph.
//!
//! Each episode of the batch runs on its own (rayon, one episode per task): its environment,
//! its action sampling, the forward pass, the discounted returns, the loss and the reverse pass
//! (BPTT), in `f32` or `f64`. The loss of the batch is the mean of its episodes' losses (the
//! advantage uses each episode's own value), so the batch gradient is the sum of per-episode
//! gradients: added in fixed chunks of `CHUNK` episodes, then chunk by chunk in order, so the
//! result does not depend on the thread count.
//!
//! Memory: the reverse pass needs each step's traces `H(t−1)` and `E(t−1)`, `2·N²` numbers a
//! step. Rather than keep them for every step (the peer's autograd keeps several `B·N²`
//! tensors a step), the forward pass keeps them every [`SEGMENT`] steps, and the reverse pass
//! recomputes one segment at a time from its checkpoint with the recorded activities and
//! `M(t)` (the trace update alone, no matrix–vector product), so a running episode holds
//! `2·N²·(T/SEGMENT + SEGMENT + 2)` numbers: about 2.6 MB for the maze at N = 100 in f32.
//!
//! The equations are those of [`super::host`] (its module documentation derives the reverse
//! pass), vectorised over a row of the `N × N` arrays; the inner loops are written so that the
//! compiler vectorises them (independent accumulators, row sums through [`sum_lanes`]). The
//! trace updates, forward and reverse, are the rule library's row kernels
//! ([`RuleKernel::forward_row`], [`RuleKernel::reverse_row`], [`Retroactive::forward_row`],
//! [`Retroactive::reverse_row`]).
//!
//! **Why this file is long** (about 760 lines): one A2C update in full: the episode rolled out
//! in the environment with its trace checkpoints, the returns and advantages, and the reverse
//! pass through the policy, the value, the modulator and the plastic recurrence for every
//! network kind; the forward and reverse halves must mirror each other line for line.

use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

use rayon::prelude::*;

use super::config::RlTrainConfig;
use super::env::{BatchEnv, EnvShape};
use super::host::AcParams;
use super::model::ActorCriticConfig;
use super::model::RlModelKind;
use super::params::AcGroups;
use super::replay::a2c_step;
use super::replay::sample_action;
use crate::rng::{Stream, stream_rng};
use crate::rules::{Real, Retroactive, RowRate, RuleKernel, RuleSpec, real, sum_lanes};

/// Steps between the trace checkpoints of the forward pass.
/// (Measured at the published sizes: 12 beats 6, 8 and 16 by 5-25% for the cue task, N = 200, and
/// is within 5% of the best for the maze, N = 100; keeping every step's traces is 2-4× slower,
/// bound by memory traffic.)
pub const SEGMENT: usize = 12;

/// The network on the host, in `F`.
#[derive(Debug, Clone)]
pub struct FusedAc<F> {
    kind: RlModelKind,
    fanout: bool,
    /// `H`'s rule (plastic, simple) and the clip (retroactive).
    rule: RuleSpec,
    /// Inputs, neurons, actions.
    sizes: (usize, usize, usize),
    /// The parameters in `F`.
    p: AcGroups<F>,
}

/// What one update of a batch measured, with its gradient.
#[derive(Debug, Clone)]
pub struct FusedUpdate {
    /// The loss's gradient, the groups of [`AcParams`].
    pub grads: AcParams,
    /// The A2C loss of the batch.
    pub loss: f64,
    /// Mean total reward per episode.
    pub reward: f64,
    /// Mean `|M(t)|` over the batch's steps.
    pub modulation: f64,
}

/// One episode's (or a chunk of episodes') measures; the gradient goes to a [`Grads`].
#[derive(Debug, Clone, Copy, Default)]
struct Measures {
    loss: f64,
    reward: f64,
    modulation: f64,
}

/// Episodes per chunk: a chunk's episodes run in order on one thread, adding into one gradient;
/// the chunks' gradients are then added in chunk order. Fixed, so that the sums (and the run)
/// do not depend on the thread count.
const CHUNK: usize = 4;

/// The large per-episode arrays (`N × N` traces, their checkpoints and gradients), allocated
/// once per thread and update and reused by the episodes that thread runs.
struct Workspace<F> {
    saved_h: Vec<F>,
    saved_e: Vec<F>,
    hebb: Vec<F>,
    elig: Vec<F>,
    /// The forward pass's next traces (written out of place, then swapped).
    hebb_next: Vec<F>,
    elig_next: Vec<F>,
    d_hebb: Vec<F>,
    d_elig: Vec<F>,
    seg_h: Vec<F>,
    seg_e: Vec<F>,
}

/// Gradients in `F`, the groups of [`AcParams`].
type Grads<F> = AcGroups<F>;

fn cast<F: Real>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| real(x)).collect()
}

impl<F: Real> FusedAc<F> {
    /// The network `net` holding `params` (laid out as the burn module's tensors).
    pub fn new(net: &ActorCriticConfig, params: &AcParams) -> FusedAc<F> {
        FusedAc {
            kind: net.kind,
            fanout: net.fanout,
            rule: net.rule_spec(),
            sizes: (net.inputs, net.hidden, net.actions),
            p: params.map(cast),
        }
    }

    fn workspace(&self, steps: usize) -> Workspace<F> {
        let n = self.sizes.1;
        let state_len = if self.kind.plastic() { n * n } else { 0 };
        let elig_len = if self.kind == RlModelKind::Retroactive {
            n * n
        } else {
            0
        };
        let segments = steps.div_ceil(SEGMENT);
        let z = |len: usize| vec![F::zero(); len];
        Workspace {
            saved_h: z(segments * state_len),
            saved_e: z(segments * elig_len),
            hebb: z(state_len),
            elig: z(elig_len),
            hebb_next: z(state_len),
            elig_next: z(elig_len),
            d_hebb: z(state_len),
            d_elig: z(elig_len),
            seg_h: z(SEGMENT * state_len),
            seg_e: z(SEGMENT * elig_len),
        }
    }

    fn zero_grads(&self) -> Grads<F> {
        self.p.map(|v| vec![F::zero(); v.len()])
    }

    /// The rates `r_j` of the update gated by `m`: `m` for every `j`, or `f_j·m + g_j`.
    #[inline(always)]
    fn rates(&self, m: F, out: &mut [F]) {
        if self.fanout {
            for ((r, f), g) in out.iter_mut().zip(&self.p.fan_w).zip(&self.p.fan_b) {
                *r = *f * m + *g;
            }
        } else {
            out.fill(m);
        }
    }

    fn retroactive(&self) -> Retroactive {
        Retroactive {
            bound: self.rule.clip,
        }
    }

    /// One step of the trace update (`hebb`, `elig` hold `H(t−1)`, `E(t−1)`; `hebb_out`,
    /// `elig_out` receive `H(t)`, `E(t)`), by the rule library's row kernels.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn trace_step(
        &self,
        hebb: &[F],
        elig: &[F],
        hebb_out: &mut [F],
        elig_out: &mut [F],
        pre: &[F],
        post: &[F],
        rate: &[F],
    ) {
        let n = self.sizes.1;
        // Every slice cut to `n` before its loop, so that the loops carry no bounds checks and
        // vectorise.
        let (pre, post, rate) = (&pre[..n], &post[..n], &rate[..n]);
        match self.kind {
            RlModelKind::Plastic | RlModelKind::Simple => {
                let r = if self.kind == RlModelKind::Plastic {
                    RowRate::Uniform(self.p.eta[0])
                } else {
                    RowRate::PerPost(rate)
                };
                crate::with_rule!(self.rule, |k| {
                    for i in 0..n {
                        k.forward_row(
                            &hebb[i * n..][..n],
                            pre[i],
                            post,
                            r,
                            &mut hebb_out[i * n..][..n],
                        );
                    }
                })
            }
            RlModelKind::Retroactive => {
                let k = self.retroactive();
                for i in 0..n {
                    k.forward_row(
                        &hebb[i * n..][..n],
                        &elig[i * n..][..n],
                        pre[i],
                        post,
                        RowRate::PerPost(rate),
                        self.p.eta[0],
                        &mut hebb_out[i * n..][..n],
                        &mut elig_out[i * n..][..n],
                    );
                }
            }
            RlModelKind::NonPlastic | RlModelKind::Lstm => {}
        }
    }

    /// Rolls out episode `episode` of `stream`, adds its gradient to `g`, and returns its loss
    /// (already divided by the batch size `batch`), reward and summed `|M|`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn episode(
        &self,
        ws: &mut Workspace<F>,
        g: &mut Grads<F>,
        shape: EnvShape,
        seed: u64,
        stream: Stream,
        episode: u64,
        batch: usize,
        train: &RlTrainConfig,
    ) -> Measures {
        let (ni, n, na) = self.sizes;
        let steps = shape.steps;
        let plastic = self.kind.plastic();
        let retro = self.kind == RlModelKind::Retroactive;
        let nn = n * n;
        let mut env = BatchEnv::new(shape, seed, stream, episode, 1);
        let mut rng: ChaCha8Rng = stream_rng(seed ^ stream as u64, Stream::Act, episode);
        // Recorded per step: inputs, activities (hs[t] = h(t−1)), probabilities, values, M.
        let mut xs = vec![F::zero(); steps * ni];
        let mut hs = vec![F::zero(); (steps + 1) * n];
        let mut probs = vec![F::zero(); steps * na];
        let mut values = vec![F::zero(); steps];
        let mut ms = vec![F::zero(); steps];
        let mut actions = vec![0usize; steps];
        let mut rewards = vec![0.0f64; steps];
        let seg_len = SEGMENT;
        let state_len = if plastic { nn } else { 0 };
        let elig_len = if retro { nn } else { 0 };
        let Workspace {
            saved_h,
            saved_e,
            hebb,
            elig,
            hebb_next,
            elig_next,
            ..
        } = &mut *ws;
        hebb.fill(F::zero());
        elig.fill(F::zero());
        let mut rate = vec![F::zero(); n];
        let mut a = vec![F::zero(); n];
        let mut p32 = vec![0.0f32; na];
        for t in 0..steps {
            if t % seg_len == 0 {
                let s = t / seg_len;
                saved_h[s * state_len..(s + 1) * state_len].copy_from_slice(hebb);
                saved_e[s * elig_len..(s + 1) * elig_len].copy_from_slice(elig);
            }
            let obs = env.observe(t);
            let x = &mut xs[t * ni..(t + 1) * ni];
            for (xk, o) in x.iter_mut().zip(&obs) {
                *xk = real(f64::from(*o));
            }
            a.copy_from_slice(&self.p.b);
            for (k, &xk) in x.iter().enumerate() {
                if xk != F::zero() {
                    let row = &self.p.w_in[k * n..(k + 1) * n];
                    for j in 0..n {
                        a[j] = a[j] + xk * row[j];
                    }
                }
            }
            let (before, after) = hs.split_at_mut((t + 1) * n);
            let pre = &before[t * n..];
            let a = &mut a[..n];
            for i in 0..n {
                let p = pre[i];
                let w = &self.p.w[i * n..][..n];
                if plastic {
                    let al = &self.p.alpha[i * n..][..n];
                    let h = &hebb[i * n..][..n];
                    for j in 0..n {
                        a[j] = a[j] + p * (w[j] + al[j] * h[j]);
                    }
                } else {
                    for j in 0..n {
                        a[j] = a[j] + p * w[j];
                    }
                }
            }
            let post = &mut after[..n];
            for j in 0..n {
                post[j] = a[j].tanh();
            }
            let post = &after[..n];
            // Heads.
            let pr = &mut probs[t * na..(t + 1) * na];
            for k in 0..na {
                let mut z = self.p.b_pi[k];
                for j in 0..n {
                    z = z + post[j] * self.p.w_pi[j * na + k];
                }
                pr[k] = z;
            }
            let max = pr.iter().fold(F::neg_infinity(), |m, v| m.max(*v));
            let mut sum = F::zero();
            for v in pr.iter_mut() {
                *v = (*v - max).exp();
                sum = sum + *v;
            }
            for (v, q) in pr.iter_mut().zip(p32.iter_mut()) {
                *v = *v / sum;
                *q = v.to_f32().expect("finite");
            }
            values[t] = self.p.b_v[0] + (0..n).map(|j| post[j] * self.p.w_v[j]).sum::<F>();
            let m = (self.p.b_m[0] + (0..n).map(|j| post[j] * self.p.w_m[j]).sum::<F>()).tanh();
            ms[t] = m;
            actions[t] = sample_action(&p32, &mut rng);
            rewards[t] = f64::from(env.act(&actions[t..t + 1])[0]);
            if plastic {
                self.rates(m, &mut rate);
                self.trace_step(hebb, elig, hebb_next, elig_next, pre, post, &rate);
                std::mem::swap(hebb, hebb_next);
                std::mem::swap(elig, elig_next);
            }
        }
        // Returns, the loss and its gradients with respect to the logits and values.
        let inv_b = 1.0 / batch as f64;
        let mut loss = 0.0;
        let mut d_logits = vec![F::zero(); steps * na];
        let mut d_values = vec![F::zero(); steps];
        let mut ret = 0.0;
        for t in (0..steps).rev() {
            // The burn path computes the returns in f32.
            ret = f64::from(rewards[t] as f32 + train.discount() as f32 * ret as f32);
            let step = a2c_step(
                &probs[t * na..(t + 1) * na],
                actions[t],
                real(ret),
                values[t],
                None,
                train,
                inv_b,
                &mut d_logits[t * na..(t + 1) * na],
            );
            loss += step.term.to_f64().expect("finite") * inv_b;
            d_values[t] = step.d_value;
        }
        let reward: f64 = rewards.iter().sum();
        let modulation: f64 = ms.iter().map(|m| m.abs().to_f64().expect("finite")).sum();
        self.reverse(ws, g, &xs, &hs, &ms, &d_logits, &d_values);
        Measures {
            loss,
            reward,
            modulation,
        }
    }

    /// The reverse pass of one episode (see [`super::host`] for the derivation).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn reverse(
        &self,
        ws: &mut Workspace<F>,
        g: &mut Grads<F>,
        xs: &[F],
        hs: &[F],
        ms: &[F],
        d_logits: &[F],
        d_values: &[F],
    ) {
        let (ni, n, na) = self.sizes;
        let steps = ms.len();
        let plastic = self.kind.plastic();
        let retro = self.kind == RlModelKind::Retroactive;
        let modulated = self.kind.modulated();
        let nn = n * n;
        let state_len = if plastic { nn } else { 0 };
        let elig_len = if retro { nn } else { 0 };
        let eta = self.p.eta[0];
        // Gradients with respect to H(t), E(t) and h(t), carried backwards; one segment's
        // traces, recomputed (entry s holds H, E at the start of its step s).
        let Workspace {
            saved_h,
            saved_e,
            d_hebb,
            d_elig,
            seg_h,
            seg_e,
            ..
        } = &mut *ws;
        d_hebb.fill(F::zero());
        d_elig.fill(F::zero());
        let mut d_post_next = vec![F::zero(); n];
        let seg_len = SEGMENT;
        let mut rate = vec![F::zero(); n];
        let mut d_rate = vec![F::zero(); n];
        let mut d_post = vec![F::zero(); n];
        let mut d_pre = vec![F::zero(); n];
        let mut da = vec![F::zero(); n];
        let mut row = vec![F::zero(); n];
        let mut eta_acc = vec![F::zero(); n];
        for seg in (0..steps.div_ceil(seg_len)).rev() {
            let start = seg * seg_len;
            let end = (start + seg_len).min(steps);
            if plastic {
                seg_h[..state_len].copy_from_slice(&saved_h[seg * state_len..][..state_len]);
                seg_e[..elig_len].copy_from_slice(&saved_e[seg * elig_len..][..elig_len]);
                for t in start..end.saturating_sub(1) {
                    let s = t - start;
                    let (h0, h1) = seg_h.split_at_mut((s + 1) * state_len);
                    let (e0, e1) = seg_e.split_at_mut((s + 1) * elig_len);
                    self.rates(ms[t], &mut rate);
                    self.trace_step(
                        &h0[s * state_len..],
                        &e0[s * elig_len..],
                        &mut h1[..state_len],
                        &mut e1[..elig_len],
                        &hs[t * n..(t + 1) * n],
                        &hs[(t + 1) * n..(t + 2) * n],
                        &rate,
                    );
                }
            }
            for t in (start..end).rev() {
                let s = t - start;
                let hp = &seg_h[s * state_len..(s + 1) * state_len];
                let ep = &seg_e[s * elig_len..(s + 1) * elig_len];
                let pre = &hs[t * n..(t + 1) * n];
                let po = &hs[(t + 1) * n..(t + 2) * n];
                let m = ms[t];
                d_post.copy_from_slice(&d_post_next);
                d_pre.fill(F::zero());
                // The trace update, pulled back by the rule library's row kernels.
                if plastic {
                    self.rates(m, &mut rate);
                    d_rate.fill(F::zero());
                    eta_acc.fill(F::zero());
                    let (po, rate) = (&po[..n], &rate[..n]);
                    let (row, d_post) = (&mut row[..n], &mut d_post[..n]);
                    match self.kind {
                        RlModelKind::Plastic | RlModelKind::Simple => {
                            let (r, acc) = if self.kind == RlModelKind::Plastic {
                                (RowRate::Uniform(eta), &mut eta_acc[..n])
                            } else {
                                (RowRate::PerPost(rate), &mut d_rate[..n])
                            };
                            crate::with_rule!(self.rule, |k| {
                                for i in 0..n {
                                    d_pre[i] = d_pre[i]
                                        + k.reverse_row(
                                            &mut d_hebb[i * n..][..n],
                                            &hp[i * n..][..n],
                                            pre[i],
                                            po,
                                            r,
                                            d_post,
                                            acc,
                                            row,
                                        );
                                }
                            })
                        }
                        RlModelKind::Retroactive => {
                            let k = self.retroactive();
                            for i in 0..n {
                                d_pre[i] = d_pre[i]
                                    + k.reverse_row(
                                        &mut d_hebb[i * n..][..n],
                                        &mut d_elig[i * n..][..n],
                                        &hp[i * n..][..n],
                                        &ep[i * n..][..n],
                                        pre[i],
                                        po,
                                        rate,
                                        eta,
                                        d_post,
                                        &mut d_rate[..n],
                                        &mut eta_acc[..n],
                                        row,
                                    );
                            }
                        }
                        RlModelKind::NonPlastic | RlModelKind::Lstm => {}
                    }
                    g.eta[0] = g.eta[0] + sum_lanes(&eta_acc);
                }
                // The rate's gradient goes to M(t).
                let mut d_m = F::zero();
                if modulated {
                    if self.fanout {
                        for j in 0..n {
                            d_m = d_m + d_rate[j] * self.p.fan_w[j];
                            g.fan_w[j] = g.fan_w[j] + d_rate[j] * m;
                            g.fan_b[j] = g.fan_b[j] + d_rate[j];
                        }
                    } else {
                        d_m = sum_lanes(&d_rate);
                    }
                }
                // Heads.
                let du = d_m * (F::one() - m * m);
                let dv = d_values[t];
                let dz = &d_logits[t * na..(t + 1) * na];
                g.b_m[0] = g.b_m[0] + du;
                g.b_v[0] = g.b_v[0] + dv;
                for k in 0..na {
                    g.b_pi[k] = g.b_pi[k] + dz[k];
                }
                for j in 0..n {
                    g.w_m[j] = g.w_m[j] + po[j] * du;
                    g.w_v[j] = g.w_v[j] + po[j] * dv;
                    let mut dp = d_post[j] + self.p.w_m[j] * du + self.p.w_v[j] * dv;
                    for k in 0..na {
                        g.w_pi[j * na + k] = g.w_pi[j * na + k] + po[j] * dz[k];
                        dp = dp + self.p.w_pi[j * na + k] * dz[k];
                    }
                    da[j] = dp * (F::one() - po[j] * po[j]);
                    g.b[j] = g.b[j] + da[j];
                }
                let x = &xs[t * ni..(t + 1) * ni];
                for (k, &xk) in x.iter().enumerate() {
                    if xk != F::zero() {
                        let gw = &mut g.w_in[k * n..(k + 1) * n];
                        for j in 0..n {
                            gw[j] = gw[j] + xk * da[j];
                        }
                    }
                }
                // The recurrent layer: W, α, H(t−1) and h(t−1).
                let (da, row) = (&da[..n], &mut row[..n]);
                for i in 0..n {
                    let p = pre[i];
                    let w = &self.p.w[i * n..][..n];
                    let gw = &mut g.w[i * n..][..n];
                    if plastic {
                        let al = &self.p.alpha[i * n..][..n];
                        let h = &hp[i * n..][..n];
                        let ga = &mut g.alpha[i * n..][..n];
                        let dh = &mut d_hebb[i * n..][..n];
                        for j in 0..n {
                            let pda = p * da[j];
                            gw[j] = gw[j] + pda;
                            ga[j] = ga[j] + pda * h[j];
                            dh[j] = dh[j] + al[j] * pda;
                            row[j] = (w[j] + al[j] * h[j]) * da[j];
                        }
                    } else {
                        for j in 0..n {
                            gw[j] = gw[j] + p * da[j];
                            row[j] = w[j] * da[j];
                        }
                    }
                    d_pre[i] = d_pre[i] + sum_lanes(row);
                }
                d_post_next.copy_from_slice(&d_pre);
            }
        }
    }

    /// [`Self::episode`] compiled for AVX2 where the CPU has it (eight f32 lanes instead of
    /// SSE2's four; the arithmetic, and so the result, is the same: no fused multiply-add).
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        ws: &mut Workspace<F>,
        g: &mut Grads<F>,
        shape: EnvShape,
        seed: u64,
        stream: Stream,
        episode: u64,
        batch: usize,
        train: &RlTrainConfig,
    ) -> Measures {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            #[allow(unsafe_code)]
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.episode_avx2(ws, g, shape, seed, stream, episode, batch, train) };
        }
        self.episode(ws, g, shape, seed, stream, episode, batch, train)
    }

    #[allow(clippy::too_many_arguments)]
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn episode_avx2(
        &self,
        ws: &mut Workspace<F>,
        g: &mut Grads<F>,
        shape: EnvShape,
        seed: u64,
        stream: Stream,
        episode: u64,
        batch: usize,
        train: &RlTrainConfig,
    ) -> Measures {
        self.episode(ws, g, shape, seed, stream, episode, batch, train)
    }

    /// One update's rollout and gradient: episodes `first..first + batch` of `stream`, in
    /// chunks of `CHUNK` on rayon tasks.
    pub fn update(
        &self,
        shape: EnvShape,
        seed: u64,
        stream: Stream,
        first: u64,
        batch: usize,
        train: &RlTrainConfig,
    ) -> FusedUpdate {
        let threads = rayon::current_num_threads().max(1);
        let pool: Vec<Mutex<Option<Workspace<F>>>> =
            (0..threads).map(|_| Mutex::new(None)).collect();
        let chunks: Vec<(Grads<F>, Measures)> = (0..batch.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                // A chunk runs on one thread without yielding to rayon: its workspace's lock is
                // never contended.
                let slot = rayon::current_thread_index().unwrap_or(0) % threads;
                let mut guard = pool[slot].lock().expect("a workspace");
                let ws = guard.get_or_insert_with(|| self.workspace(shape.steps));
                let mut g = self.zero_grads();
                let mut total = Measures::default();
                for b in c * CHUNK..((c + 1) * CHUNK).min(batch) {
                    let m = self.dispatch(
                        ws,
                        &mut g,
                        shape,
                        seed,
                        stream,
                        first + b as u64,
                        batch,
                        train,
                    );
                    total.loss += m.loss;
                    total.reward += m.reward;
                    total.modulation += m.modulation;
                }
                (g, total)
            })
            .collect();
        let mut total = self.p.map(|v| vec![0.0f64; v.len()]);
        let (mut loss, mut reward, mut modulation) = (0.0, 0.0, 0.0);
        for (g, e) in &chunks {
            total.zip_each(g, |to, from| {
                for (t, f) in to.iter_mut().zip(from) {
                    *t += f.to_f64().expect("finite");
                }
            });
            loss += e.loss;
            reward += e.reward;
            modulation += e.modulation;
        }
        let steps = shape.steps.max(1) as f64;
        FusedUpdate {
            grads: total,
            loss,
            reward: reward / batch as f64,
            modulation: modulation / (batch as f64 * steps),
        }
    }
}
