//! The actor-critic networks on the host, f64, with a hand-written reverse pass (BPTT) and a
//! forward-mode pass (tangents carried forward, as in RTRL): the independent checks of burn
//! autodiff and of the fused engine (`bohp gradcheck`). Every trace update is the rule
//! library's, through its per-connection values and partials ([`RuleKernel::local`],
//! [`TwoTraceKernel::local2`]). The forward pass records what the reverse pass needs (`Tape`); the reverse pass
//! takes the loss's gradients with respect to each step's logits, value and `M(t)` and returns
//! the parameters' gradients.
//!
//! Derivation (one episode, row vectors; `κ` the mask of trace entries strictly inside the
//! clip, `S` the trace before clipping, `r` the rate `M` or its fan-out):
//!
//! ```text
//! forward   a = x·W_in + pre·(W + α⊙H) + b,  post = tanh(a)
//!           plastic S = H + η·preᵀpost;  simple S = H + preᵀpost·r;  retroactive S = H + E·r,
//!           E' = (1 − η)·E + η·preᵀpost;  H' = clip(S)
//! reverse   dS = dH'⊙κ;  dH = dS + (α ⊙ preᵀda);  dE = dS·r + (1 − η)·dE'   (retroactive)
//!           dr_j = Σ_i dS_ij·(preᵀpost)_ij (simple) or Σ_i dS_ij·E_ij (retroactive)
//!           dη = Σ dS⊙preᵀpost (plastic) or Σ dE'⊙(preᵀpost − E) (retroactive)
//!           d_post += heads + trace terms;  da = d_post⊙(1 − post²);  d_pre = da·(W + α⊙H)ᵀ + trace terms
//! ```

use super::model::{ActorCritic, RlModelKind};
use crate::rules::faults::{Fault, Faulty, FaultyRetroactive};
use crate::rules::retroactive::{Local2, TwoTraceKernel};
use crate::rules::{Local, Retroactive, RuleKernel, RuleSpec, jvp};

pub use super::params::AcParams;

/// The host network.
#[derive(Debug, Clone)]
pub struct HostAc {
    /// The rule.
    pub kind: RlModelKind,
    /// Fan-out of `M`.
    pub fanout: bool,
    /// The clip bound.
    pub clip: f64,
    /// `H`'s rule (plastic and simple kinds).
    pub rule: RuleSpec,
    /// Sizes: inputs, neurons, actions.
    pub sizes: (usize, usize, usize),
    /// The parameters.
    pub p: AcParams,
    /// A known-wrong derivative for the reverse pass ([`crate::rules::faults`]), or none.
    pub fault: Option<Fault>,
    /// Branches of the clip held fixed, per step and trace entry (as [`Rollout::sides`]
    /// recorded them): the forward pass then follows the smooth piece of the loss that holds at
    /// the recorded parameters (finite differences across many kinks).
    pub frozen: Option<std::sync::Arc<Vec<Vec<i8>>>>,
}

/// What one step recorded, for a batch.
#[derive(Debug, Clone)]
struct StepTape {
    x: Vec<f64>,
    pre: Vec<f64>,
    post: Vec<f64>,
    hebb: Vec<f64>,
    elig: Vec<f64>,
    /// `M(t)`, per episode.
    m: Vec<f64>,
    probs: Vec<f64>,
    /// The clip's branch of each trace entry's update (`[B, N, N]`; empty without plasticity
    /// and on a pass that holds recorded branches).
    sides: Vec<i8>,
}

/// The recurrent state of a batch of episodes on the host.
#[derive(Debug, Clone)]
pub struct HostState {
    /// `h(t-1)`, `[B, N]`.
    pub h: Vec<f64>,
    /// `H`, `[B, N, N]`.
    pub hebb: Vec<f64>,
    /// `E`, `[B, N, N]`.
    pub elig: Vec<f64>,
}

/// The forward pass of a batch: per step, the probabilities `[B, A]`, values `[B]` and `M`
/// `[B]`, and the tape.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Per step: probabilities `[B, A]`.
    pub probs: Vec<Vec<f64>>,
    /// Per step: values `[B]`.
    pub values: Vec<Vec<f64>>,
    /// Per step: `M(t)` `[B]`.
    pub modulation: Vec<Vec<f64>>,
    tape: Vec<StepTape>,
    batch: usize,
}

impl HostAc {
    /// The network `net` holding `values`.
    pub fn new(net: &super::model::ActorCriticConfig, values: AcParams) -> HostAc {
        HostAc {
            kind: net.kind,
            fanout: net.fanout,
            clip: net.clip,
            rule: net.rule_spec(),
            sizes: (net.inputs, net.hidden, net.actions),
            p: values,
            fault: None,
            frozen: None,
        }
    }

    /// The host copy of a burn network (its current parameter values).
    pub fn of(model: &ActorCritic) -> HostAc {
        let [i, n] = model.w_in.val().dims();
        let a = model.b_pi.val().dims()[0];
        HostAc {
            kind: model.kind(),
            fanout: model.fanout(),
            clip: model.clip(),
            rule: model.rule(),
            sizes: (i, n, a),
            p: AcParams::of(model),
            fault: None,
            frozen: None,
        }
    }

    fn retroactive(&self) -> Retroactive {
        Retroactive { bound: self.clip }
    }

    /// `H`'s rule at one connection (with the fault in its derivatives, if any).
    fn local(&self, h: f64, pre: f64, post: f64, rate: f64) -> Local<f64> {
        match self.fault {
            Some(fault) => Faulty {
                spec: self.rule,
                fault,
            }
            .local(h, pre, post, rate),
            None => self.rule.local(h, pre, post, rate),
        }
    }

    /// The retroactive rule at one connection (with the fault in its derivatives, if any).
    fn local2(&self, h: f64, e: f64, pre: f64, post: f64, m: f64, eta: f64) -> Local2<f64> {
        match self.fault {
            Some(fault) => FaultyRetroactive {
                kernel: self.retroactive(),
                fault,
            }
            .local2(h, e, pre, post, m, eta),
            None => self.retroactive().local2(h, e, pre, post, m, eta),
        }
    }

    fn rate(&self, m: f64, j: usize) -> f64 {
        if self.fanout {
            self.p.fan_w[j] * m + self.p.fan_b[j]
        } else {
            m
        }
    }

    /// Runs `xs` (per step, `[B, I]`) from zero state.
    pub fn forward(&self, xs: &[Vec<f64>], batch: usize) -> Rollout {
        let mut state = self.start(batch);
        let mut out = Rollout::new(batch);
        for x in xs {
            self.step(&mut out, &mut state, x);
        }
        out
    }

    /// The zero state of `batch` episodes.
    pub fn start(&self, batch: usize) -> HostState {
        let n = self.sizes.1;
        HostState {
            h: vec![0.0; batch * n],
            hebb: vec![0.0; batch * n * n],
            elig: vec![0.0; batch * n * n],
        }
    }

    /// One step from observations `x` (`[B, I]`): appends the step's outputs and tape to `out`
    /// and advances `state`.
    pub fn step(&self, out: &mut Rollout, state: &mut HostState, x: &[f64]) {
        let (ni, n, na) = self.sizes;
        let p = &self.p;
        let eta = p.eta[0];
        let batch = out.batch;
        let HostState { h, hebb, elig } = state;
        {
            let mut post = vec![0.0; batch * n];
            let (mut probs, mut values, mut ms) =
                (vec![0.0; batch * na], vec![0.0; batch], vec![0.0; batch]);
            let mut new_hebb = hebb.clone();
            let mut new_elig = elig.clone();
            let plastic = self.kind.plastic();
            let frozen = self.frozen.as_ref().map(|f| &f[out.tape.len()]);
            // The branches are recorded on a free pass (a frozen one follows recorded ones).
            let record = plastic && frozen.is_none();
            let mut sides = vec![0i8; if record { batch * n * n } else { 0 }];
            for bi in 0..batch {
                let pre = &h[bi * n..(bi + 1) * n];
                let hb = &hebb[bi * n * n..(bi + 1) * n * n];
                for j in 0..n {
                    let mut a = p.b[j];
                    for k in 0..ni {
                        a += x[bi * ni + k] * p.w_in[k * n + j];
                    }
                    for i in 0..n {
                        a += pre[i] * (p.w[i * n + j] + p.alpha[i * n + j] * hb[i * n + j]);
                    }
                    post[bi * n + j] = a.tanh();
                }
                let po = &post[bi * n..(bi + 1) * n];
                let mut z = p.b_pi.clone();
                for (k, zk) in z.iter_mut().enumerate() {
                    for j in 0..n {
                        *zk += po[j] * p.w_pi[j * na + k];
                    }
                }
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                for k in 0..na {
                    probs[bi * na + k] = ((z[k] - max).exp()) / sum;
                }
                values[bi] = p.b_v[0] + (0..n).map(|j| po[j] * p.w_v[j]).sum::<f64>();
                let u = p.b_m[0] + (0..n).map(|j| po[j] * p.w_m[j]).sum::<f64>();
                ms[bi] = u.tanh();
                let off = bi * n * n;
                for i in 0..n {
                    for j in 0..n {
                        let idx = off + i * n + j;
                        let r = self.rate(ms[bi], j);
                        match self.kind {
                            RlModelKind::NonPlastic | RlModelKind::Lstm => {}
                            RlModelKind::Plastic | RlModelKind::Simple => {
                                let rate = if self.kind == RlModelKind::Plastic {
                                    eta
                                } else {
                                    r
                                };
                                let (hv, rule) = (hebb[idx], &self.rule);
                                if record {
                                    sides[idx] = rule.side(hv, pre[i], po[j], rate);
                                }
                                new_hebb[idx] = match frozen {
                                    Some(f) => rule.on_side(hv, pre[i], po[j], rate, f[idx]),
                                    None => rule.local(hv, pre[i], po[j], rate).value,
                                };
                            }
                            RlModelKind::Retroactive => {
                                let k = self.retroactive();
                                let (hv, e) = (hebb[idx], elig[idx]);
                                let l = k.local2(hv, e, pre[i], po[j], r, eta);
                                if record {
                                    sides[idx] = k.side(hv, e, r);
                                }
                                new_hebb[idx] = match frozen {
                                    Some(f) => k.h_on_side(hv, e, r, f[idx]),
                                    None => l.h,
                                };
                                new_elig[idx] = l.e.value;
                            }
                        }
                    }
                }
            }
            out.tape.push(StepTape {
                x: x.to_vec(),
                pre: h.clone(),
                post: post.clone(),
                hebb: hebb.clone(),
                elig: elig.clone(),
                m: ms.clone(),
                probs: probs.clone(),
                sides,
            });
            out.probs.push(probs);
            out.values.push(values);
            out.modulation.push(ms);
            *h = post;
            if self.kind.plastic() {
                *hebb = new_hebb;
            }
            if self.kind == RlModelKind::Retroactive {
                *elig = new_elig;
            }
        }
    }

    /// The parameters' gradients, given per step the loss's gradients with respect to the
    /// logits `[B, A]`, the values `[B]` and `M(t)` `[B]`.
    pub fn backward(
        &self,
        rollout: &Rollout,
        d_logits: &[Vec<f64>],
        d_values: &[Vec<f64>],
        d_modulation: &[Vec<f64>],
    ) -> AcParams {
        let (ni, n, na) = self.sizes;
        let p = &self.p;
        let eta = p.eta[0];
        let batch = rollout.batch;
        let mut g = p.map(|v| vec![0.0; v.len()]);
        let mut d_h = vec![0.0; batch * n];
        let mut d_hebb = vec![0.0; batch * n * n];
        let mut d_elig = vec![0.0; batch * n * n];
        // Under the M(t−1) fault: the gradient owed to M(t) by step t+1's update.
        let mut d_m_next = vec![0.0; batch];
        for t in (0..rollout.tape.len()).rev() {
            let st = &rollout.tape[t];
            let mut d_h_prev = vec![0.0; batch * n];
            let mut d_hebb_prev = vec![0.0; batch * n * n];
            let mut d_elig_prev = vec![0.0; batch * n * n];
            let mut d_m_this = vec![0.0; batch];
            for bi in 0..batch {
                let pre = &st.pre[bi * n..(bi + 1) * n];
                let po = &st.post[bi * n..(bi + 1) * n];
                let off = bi * n * n;
                let mut d_post: Vec<f64> = d_h[bi * n..(bi + 1) * n].to_vec();
                let mut d_pre = vec![0.0; n];
                // The trace update.
                let mut d_rate = vec![0.0; n];
                if self.kind.plastic() {
                    for i in 0..n {
                        for j in 0..n {
                            let idx = off + i * n + j;
                            let r = self.rate(st.m[bi], j);
                            let (gh, hv) = (d_hebb[idx], st.hebb[idx]);
                            match self.kind {
                                RlModelKind::Plastic | RlModelKind::Simple => {
                                    let rate = if self.kind == RlModelKind::Plastic {
                                        eta
                                    } else {
                                        r
                                    };
                                    let l = self.local(hv, pre[i], po[j], rate);
                                    d_hebb_prev[idx] += gh * l.d_h;
                                    d_pre[i] += gh * l.d_pre;
                                    d_post[j] += gh * l.d_post;
                                    if self.kind == RlModelKind::Plastic {
                                        g.eta[0] += gh * l.d_rate;
                                    } else {
                                        d_rate[j] += gh * l.d_rate;
                                    }
                                }
                                RlModelKind::Retroactive => {
                                    let ge = d_elig[idx];
                                    let l = self.local2(hv, st.elig[idx], pre[i], po[j], r, eta);
                                    d_hebb_prev[idx] += gh * l.dh_h;
                                    d_elig_prev[idx] += gh * l.dh_e + ge * l.e.d_h;
                                    d_rate[j] += gh * l.dh_m;
                                    g.eta[0] += gh * l.dh_eta + ge * l.e.d_rate;
                                    d_pre[i] += gh * l.dh_pre + ge * l.e.d_pre;
                                    d_post[j] += gh * l.dh_post + ge * l.e.d_post;
                                }
                                RlModelKind::NonPlastic | RlModelKind::Lstm => {}
                            }
                        }
                    }
                }
                // The rate's gradient goes to the M that gated the update.
                let mut d_m_gate = 0.0;
                for j in 0..n {
                    if self.fanout {
                        d_m_gate += d_rate[j] * p.fan_w[j];
                        g.fan_w[j] += d_rate[j] * st.m[bi];
                        g.fan_b[j] += d_rate[j];
                    } else {
                        d_m_gate += d_rate[j];
                    }
                }
                let mut d_m = d_modulation[t][bi];
                if self.kind.modulated() {
                    if self.fault == Some(Fault::PreviousModulation) {
                        d_m_this[bi] = d_m_gate; // owed to M(t−1)
                        d_m += d_m_next[bi];
                    } else {
                        d_m += d_m_gate;
                    }
                }
                // Heads.
                let du = d_m * (1.0 - st.m[bi] * st.m[bi]);
                g.b_m[0] += du;
                let dv = d_values[t][bi];
                g.b_v[0] += dv;
                let dz = &d_logits[t][bi * na..(bi + 1) * na];
                for k in 0..na {
                    g.b_pi[k] += dz[k];
                }
                for j in 0..n {
                    g.w_m[j] += po[j] * du;
                    g.w_v[j] += po[j] * dv;
                    d_post[j] += p.w_m[j] * du + p.w_v[j] * dv;
                    for k in 0..na {
                        g.w_pi[j * na + k] += po[j] * dz[k];
                        d_post[j] += p.w_pi[j * na + k] * dz[k];
                    }
                }
                // tanh and the recurrent layer.
                for j in 0..n {
                    let da = d_post[j] * (1.0 - po[j] * po[j]);
                    g.b[j] += da;
                    for k in 0..ni {
                        g.w_in[k * n + j] += st.x[bi * ni + k] * da;
                    }
                    for i in 0..n {
                        let idx = i * n + j;
                        let hv = st.hebb[off + idx];
                        g.w[idx] += pre[i] * da;
                        d_pre[i] += (p.w[idx] + p.alpha[idx] * hv) * da;
                        if self.kind.plastic() {
                            g.alpha[idx] += pre[i] * hv * da;
                            d_hebb_prev[off + idx] += p.alpha[idx] * pre[i] * da;
                        }
                    }
                }
                d_h_prev[bi * n..(bi + 1) * n].copy_from_slice(&d_pre);
            }
            d_h = d_h_prev;
            d_hebb = d_hebb_prev;
            d_elig = d_elig_prev;
            d_m_next = d_m_this;
        }
        let _ = &rollout.probs;
        g
    }
}

/// Tangents of one forward pass ([`HostAc::jvp`]): per step, of the logits `[B, A]`, the values
/// `[B]` and `M(t)` `[B]`.
#[derive(Debug, Clone)]
pub struct Tangents {
    /// Per step: the logits' tangents `[B, A]`.
    pub logits: Vec<Vec<f64>>,
    /// Per step: the values' tangents `[B]`.
    pub values: Vec<Vec<f64>>,
    /// Per step: `M(t)`'s tangents `[B]`.
    pub modulation: Vec<Vec<f64>>,
}

impl HostAc {
    /// Forward mode: the tangents of every step's outputs when the parameters move along
    /// `dir` (a Jacobian–vector product), pushed through the same forward pass step by step
    /// (the state's tangents `ḣ`, `Ḣ`, `Ė` carried forward, as in RTRL). Always the right
    /// rules (`fault` is ignored): the reference the reverse pass is checked against, one
    /// parameter direction at a time.
    ///
    /// ```text
    /// ȧ = ẋW_in-terms + ṗre·(W + α⊙H) + pre·(Ẇ + α̇⊙H + α⊙Ḣ) + ḃ,   ṗost = (1 − post²)⊙ȧ
    /// Ḣ' = ∂f/∂H·Ḣ + ∂f/∂pre·ṗre + ∂f/∂post·ṗost + ∂f/∂rate·ṙate   plastic (rate η), simple (rate r)
    /// Ḣ' = ∂H'/∂H·Ḣ + ∂H'/∂E·Ė + ∂H'/∂M·ṙ,  Ė' likewise through Hebb's partials   retroactive
    /// ```
    /// (the partials are the rule library's, [`crate::rules::jvp`]).
    pub fn jvp(&self, xs: &[Vec<f64>], batch: usize, dir: &AcParams) -> Tangents {
        let (ni, n, na) = self.sizes;
        let p = &self.p;
        let (eta, d_eta) = (p.eta[0], dir.eta[0]);
        let mut out = Tangents {
            logits: Vec::new(),
            values: Vec::new(),
            modulation: Vec::new(),
        };
        let mut h = vec![0.0; batch * n];
        let mut dh = vec![0.0; batch * n];
        let mut hebb = vec![0.0; batch * n * n];
        let mut d_hebb = vec![0.0; batch * n * n];
        let mut elig = vec![0.0; batch * n * n];
        let mut d_elig = vec![0.0; batch * n * n];
        for x in xs {
            let (mut dz_all, mut dv_all, mut dm_all) =
                (vec![0.0; batch * na], vec![0.0; batch], vec![0.0; batch]);
            let mut post_all = vec![0.0; batch * n];
            let mut dpost_all = vec![0.0; batch * n];
            for bi in 0..batch {
                let off = bi * n * n;
                let pre = &h[bi * n..(bi + 1) * n];
                let dpre = &dh[bi * n..(bi + 1) * n];
                let mut post = vec![0.0; n];
                let mut dpost = vec![0.0; n];
                for j in 0..n {
                    let (mut a, mut da) = (p.b[j], dir.b[j]);
                    for k in 0..ni {
                        a += x[bi * ni + k] * p.w_in[k * n + j];
                        da += x[bi * ni + k] * dir.w_in[k * n + j];
                    }
                    for i in 0..n {
                        let idx = i * n + j;
                        let (hv, dhv) = if self.kind.plastic() {
                            (hebb[off + idx], d_hebb[off + idx])
                        } else {
                            (0.0, 0.0)
                        };
                        let (al, dal) = if self.kind.plastic() {
                            (p.alpha[idx], dir.alpha[idx])
                        } else {
                            (0.0, 0.0)
                        };
                        a += pre[i] * (p.w[idx] + al * hv);
                        da += dpre[i] * (p.w[idx] + al * hv)
                            + pre[i] * (dir.w[idx] + dal * hv + al * dhv);
                    }
                    post[j] = a.tanh();
                    dpost[j] = (1.0 - post[j] * post[j]) * da;
                }
                for k in 0..na {
                    let mut dz = dir.b_pi[k];
                    for j in 0..n {
                        dz += dpost[j] * p.w_pi[j * na + k] + post[j] * dir.w_pi[j * na + k];
                    }
                    dz_all[bi * na + k] = dz;
                }
                let lin = |w: &[f64], dw: &[f64], b: f64, db: f64| -> (f64, f64) {
                    let v = b + (0..n).map(|j| post[j] * w[j]).sum::<f64>();
                    let dv = db
                        + (0..n)
                            .map(|j| dpost[j] * w[j] + post[j] * dw[j])
                            .sum::<f64>();
                    (v, dv)
                };
                dv_all[bi] = lin(&p.w_v, &dir.w_v, p.b_v[0], dir.b_v[0]).1;
                let (u, du) = lin(&p.w_m, &dir.w_m, p.b_m[0], dir.b_m[0]);
                let m = u.tanh();
                let dm = (1.0 - m * m) * du;
                dm_all[bi] = dm;
                if self.kind.plastic() {
                    for i in 0..n {
                        for j in 0..n {
                            let idx = off + i * n + j;
                            let (r, dr) = if self.fanout {
                                (
                                    p.fan_w[j] * m + p.fan_b[j],
                                    dir.fan_w[j] * m + p.fan_w[j] * dm + dir.fan_b[j],
                                )
                            } else {
                                (m, dm)
                            };
                            let (hv, dhv) = (hebb[idx], d_hebb[idx]);
                            match self.kind {
                                RlModelKind::Plastic | RlModelKind::Simple => {
                                    let (rate, d_rate) = if self.kind == RlModelKind::Plastic {
                                        (eta, d_eta)
                                    } else {
                                        (r, dr)
                                    };
                                    let l = self.rule.local(hv, pre[i], post[j], rate);
                                    hebb[idx] = l.value;
                                    d_hebb[idx] = jvp(&l, dhv, dpre[i], dpost[j], d_rate);
                                }
                                _ => {
                                    let (e, de) = (elig[idx], d_elig[idx]);
                                    let l =
                                        self.retroactive().local2(hv, e, pre[i], post[j], r, eta);
                                    hebb[idx] = l.h;
                                    d_hebb[idx] = l.dh_h * dhv + l.dh_e * de + l.dh_m * dr;
                                    elig[idx] = l.e.value;
                                    d_elig[idx] = jvp(&l.e, de, dpre[i], dpost[j], d_eta);
                                }
                            }
                        }
                    }
                }
                post_all[bi * n..(bi + 1) * n].copy_from_slice(&post);
                dpost_all[bi * n..(bi + 1) * n].copy_from_slice(&dpost);
            }
            h = post_all;
            dh = dpost_all;
            out.logits.push(dz_all);
            out.values.push(dv_all);
            out.modulation.push(dm_all);
        }
        out
    }
}

impl HostAc {
    /// The derivative of a scalar of the outputs along one parameter entry (`group` in
    /// [`AcParams`]'s order, `index` in it), by forward mode: one [`HostAc::jvp`], its tangents
    /// dotted with the scalar's gradients with respect to each step's logits `[B, A]`, values
    /// `[B]` and `M(t)` `[B]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_mode_entry(
        &self,
        xs: &[Vec<f64>],
        batch: usize,
        group: usize,
        index: usize,
        d_logits: &[Vec<f64>],
        d_values: &[Vec<f64>],
        d_modulation: &[Vec<f64>],
    ) -> f64 {
        let mut dir = AcParams::from_groups(
            self.p
                .groups()
                .iter()
                .map(|(_, v)| vec![0.0; v.len()])
                .collect(),
        );
        dir.groups_mut()[group].1[index] = 1.0;
        let tangents = self.jvp(xs, batch, &dir);
        let dot = |a: &[Vec<f64>], b: &[Vec<f64>]| -> f64 {
            a.iter()
                .flatten()
                .zip(b.iter().flatten())
                .map(|(x, y)| x * y)
                .sum()
        };
        dot(&tangents.logits, d_logits)
            + dot(&tangents.values, d_values)
            + dot(&tangents.modulation, d_modulation)
    }
}

impl Rollout {
    /// An empty rollout of `batch` episodes.
    pub fn new(batch: usize) -> Rollout {
        Rollout {
            probs: Vec::new(),
            values: Vec::new(),
            modulation: Vec::new(),
            tape: Vec::new(),
            batch,
        }
    }

    /// Steps recorded.
    pub fn steps(&self) -> usize {
        self.tape.len()
    }

    /// The traces `H` and `E` before step `t` (`[B, N, N]` each).
    pub fn traces(&self, t: usize) -> (&[f64], &[f64]) {
        (&self.tape[t].hebb, &self.tape[t].elig)
    }

    /// The clip's branch of every trace entry's update at each step (`[steps][B·N·N]`: 0 inside,
    /// ±1 at `±c`), to hold with [`HostAc::frozen`].
    pub fn sides(&self) -> Vec<Vec<i8>> {
        self.tape.iter().map(|s| s.sides.clone()).collect()
    }

    /// The activities `h(t)` after step `t` (`[B, N]`).
    pub fn activity(&self, t: usize) -> &[f64] {
        &self.tape[t].post
    }

    /// The probabilities recorded at step `t` (`[B, A]`).
    pub fn step_probs(&self, t: usize) -> &[f64] {
        &self.tape[t].probs
    }
}
