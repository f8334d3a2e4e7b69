//! Real-time recurrent learning (forward-mode) gradients of the recurrent plastic network, for
//! small networks (`N ≤ ~20`): an independent derivation to check burn's autodiff and the
//! fused BPTT engine against.
//!
//! For every parameter `θ` (each `W_ij`, each `α_ij` or the shared `α`, and `η`) the recursion
//! carries `∂y(t)/∂θ` (`N` values) and `∂H(t)/∂θ` (`N²` values), i.e. `N³` and `N⁴` numbers
//! per step. With `y' = y(t-1)`, `H' = H(t-1)`, and `S` for sensitivities:
//!
//! ```text
//! ∂pre_j/∂θ = Σ_i [ (W_ij + α_ij H'_ij) · S(y'_i) + y'_i α_ij · S(H'_ij) ] + direct_j
//!     direct_j = y'_i for θ = W_ij;  y'_i H'_ij for θ = α_ij (Σ_i y'_i H'_ij when shared)
//! S(y_j)     = (1 - c_j) (1 - tanh²) · ∂pre_j/∂θ
//! S(H_ij)    = f_H S(H'_ij) + f_pre S(y'_i) + f_post S(y_j) + [θ = η] f_η
//! dL/dθ = Σ_j 2 (y_j(T) - target_j) / B · S(y_j(T))
//! ```
//!
//! where `f_H, f_pre, f_post, f_η` are the rule's local derivatives at `(H'_ij, y'_i, y_j, η)`
//! and `S(H_ij)` is the rule's forward-mode step ([`bohp::rules::jvp`]). For Hebb:
//! `S(H_ij) = (1-η) S(H'_ij) + η (S(y'_i) y_j + y'_i S(y_j)) + [θ = η] (y'_i y_j - H'_ij)`.
//!
//! With a modulator (parameters `w_M`, `b_M` after `η`), `M = tanh(Σ_j y_j w_Mj + b_M)`:
//!
//! ```text
//! S(M)    = (1 - M²) · ( Σ_j w_Mj S(y_j) + [θ = w_Mj] y_j + [θ = b_M] )
//! simple:       S(H_ij) = f_H S(H'_ij) + f_pre S(y'_i) + f_post S(y_j) + f_η S(M)   (rate M)
//! retroactive:  S(H_ij) = ∂H/∂H S(H'_ij) + ∂H/∂E S(E'_ij) + ∂H/∂M S(M)
//!               S(E_ij) = the decaying Hebbian step of E with its rate η
//! ```
//!
//! (the partials of [`bohp::rules::retroactive`]; with the `previous-modulation` fault, `S(M)`
//! of the previous step stands for this step's).

use bohp::engines::fused::{EpisodeBatch, HostGrads, HostRnn};
use bohp::recurrent::model::PlasticRnn;
use bohp::rules::retroactive::TwoTraceKernel;
use bohp::rules::{Modulation, Retroactive, RuleKernel, jvp};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::compare::host;

/// The loss and its gradients by RTRL, in f64. Same conventions as
/// [`HostRnn::loss_and_grads`].
///
/// # Panics
///
/// Panics when the shapes of `ep` do not match the network.
pub fn rtrl_grads(net: &HostRnn<f64>, ep: &EpisodeBatch<'_, f64>) -> (f64, HostGrads) {
    let retro = Retroactive {
        bound: net.rule.clip,
    };
    bohp::with_rule!(net.rule, |k| rtrl_grads_with(
        &k,
        &retro,
        net,
        ep,
        Mistake::None
    ))
}

/// A known-wrong use of the rule that RTRL can inject (besides a known-wrong rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mistake {
    /// The right recursion.
    None,
    /// `H(t)` read where `H(t-1)` is due (in the α direct term).
    NewTrace,
    /// A modulated update's rate tangent taken from `M(t-1)` instead of `M(t)`.
    PreviousModulation,
}

/// [`rtrl_grads`] with the trace's rule given as a [`RuleKernel`] and the retroactive rule as a
/// [`TwoTraceKernel`] (`net.rule` is not read), so that checks can pass a known-wrong rule
/// ([`bohp::rules::faults`]), and with a known-wrong use of them (`mistake`).
///
/// # Panics
///
/// Panics when the shapes of `ep` do not match the network.
pub fn rtrl_grads_with<R: RuleKernel, T: TwoTraceKernel>(
    rule: &R,
    retro: &T,
    net: &HostRnn<f64>,
    ep: &EpisodeBatch<'_, f64>,
    mistake: Mistake,
) -> (f64, HostGrads) {
    let new_trace = mistake == Mistake::NewTrace;
    let n = net.n;
    let nn = n * n;
    let shared = net.alpha.len() == 1;
    let n_alpha = net.alpha.len();
    let modulator = net.modulator.as_ref().filter(|_| net.plastic);
    let modulation = modulator.map_or(Modulation::None, |m| m.modulation);
    let retroactive = modulation == Modulation::Retroactive;
    let (pa, pe) = (nn, nn + n_alpha);
    // w_M at pm..pm+n, b_M at pm+n.
    let pm = pe + 1;
    let p_count = if modulator.is_some() { pm + n + 1 } else { pm };
    let (steps, batch) = (ep.steps, ep.batch);
    let bn = batch * n;
    assert_eq!(
        ep.inputs.len(),
        steps * bn,
        "inputs must be [steps][batch][N]"
    );
    let n_t = ep.targets.len() / batch;
    let a = |i: usize, j: usize| {
        if shared {
            net.alpha[0]
        } else {
            net.alpha[i * n + j]
        }
    };
    let eta = net.eta;
    let mut grads = vec![0.0; p_count];
    let mut loss = 0.0;
    for b in 0..batch {
        let mut y_prev = vec![0.0; n];
        let mut h_prev = vec![0.0; nn];
        let mut sy_prev = vec![0.0; n * p_count];
        let mut sh_prev = vec![0.0; nn * p_count];
        let mut e_prev = vec![0.0; if retroactive { nn } else { 0 }];
        let mut se_prev = vec![0.0; if retroactive { nn * p_count } else { 0 }];
        let mut sm_prev = vec![0.0; p_count];
        for t in 0..steps {
            let u = &ep.inputs[(t * batch + b) * n..(t * batch + b + 1) * n];
            let c = ep
                .clamp
                .map(|c| &c[(t * batch + b) * n..(t * batch + b + 1) * n]);
            // Values: y(t) from H(t-1), then H(t).
            let mut y = vec![0.0; n];
            let mut slope = vec![0.0; n];
            for j in 0..n {
                let mut pre = u[j];
                for i in 0..n {
                    let weff = net.w[i * n + j]
                        + if net.plastic {
                            a(i, j) * h_prev[i * n + j]
                        } else {
                            0.0
                        };
                    pre += y_prev[i] * weff;
                }
                let cj = c.map_or(0.0, |c| c[j]);
                let v = pre.tanh();
                y[j] = cj * u[j] + (1.0 - cj) * v;
                slope[j] = (1.0 - cj) * (1.0 - v * v);
            }
            // The rate: the modulator's M(t), or η.
            let rate = match modulator {
                None => eta,
                Some(m) => ((0..n).map(|j| y[j] * m.w[j]).sum::<f64>() + m.b).tanh(),
            };
            let locals: Vec<_> = if net.plastic && !retroactive {
                (0..nn)
                    .map(|ij| rule.local(h_prev[ij], y_prev[ij / n], y[ij % n], rate))
                    .collect()
            } else {
                Vec::new()
            };
            let locals2: Vec<_> = if retroactive {
                (0..nn)
                    .map(|ij| {
                        retro.local2(h_prev[ij], e_prev[ij], y_prev[ij / n], y[ij % n], rate, eta)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let h: Vec<f64> = if retroactive {
                locals2.iter().map(|l| l.h).collect()
            } else {
                locals.iter().map(|l| l.value).collect()
            };
            // The α direct term reads H(t-1) (or, the injected mistake, H(t)).
            let h_drive = if new_trace && net.plastic {
                &h
            } else {
                &h_prev
            };
            // Sensitivities of y(t).
            let mut sy = vec![0.0; n * p_count];
            for j in 0..n {
                let dpre = &mut sy[j * p_count..(j + 1) * p_count];
                for i in 0..n {
                    let weff = net.w[i * n + j]
                        + if net.plastic {
                            a(i, j) * h_prev[i * n + j]
                        } else {
                            0.0
                        };
                    for (d, s) in dpre
                        .iter_mut()
                        .zip(&sy_prev[i * p_count..(i + 1) * p_count])
                    {
                        *d += weff * s;
                    }
                    if net.plastic {
                        let k = y_prev[i] * a(i, j);
                        for (d, s) in dpre
                            .iter_mut()
                            .zip(&sh_prev[(i * n + j) * p_count..(i * n + j + 1) * p_count])
                        {
                            *d += k * s;
                        }
                    }
                    dpre[i * n + j] += y_prev[i];
                    if net.plastic {
                        let p = if shared { pa } else { pa + i * n + j };
                        dpre[p] += y_prev[i] * h_drive[i * n + j];
                    }
                }
                for d in dpre.iter_mut() {
                    *d *= slope[j];
                }
            }
            // Sensitivity of M(t): (1 - M²)(Σ_j w_Mj S(y_j) + [θ = w_Mj] y_j + [θ = b_M]).
            let sm: Vec<f64> = match modulator {
                None => Vec::new(),
                Some(m) => {
                    let mut sm = vec![0.0; p_count];
                    for j in 0..n {
                        for (d, s) in sm.iter_mut().zip(&sy[j * p_count..(j + 1) * p_count]) {
                            *d += m.w[j] * s;
                        }
                        sm[pm + j] += y[j];
                    }
                    sm[pm + n] += 1.0;
                    let slope = 1.0 - rate * rate;
                    sm.iter_mut().for_each(|d| *d *= slope);
                    sm
                }
            };
            // The rate tangent the update is differentiated with.
            let s_rate = |p: usize| match modulator {
                None => {
                    if p == pe {
                        1.0
                    } else {
                        0.0
                    }
                }
                Some(_) if mistake == Mistake::PreviousModulation => sm_prev[p],
                Some(_) => sm[p],
            };
            // Sensitivities of H(t) (and E(t)): the rule's forward-mode step.
            if net.plastic {
                let mut sh = vec![0.0; nn * p_count];
                let mut se = vec![0.0; if retroactive { nn * p_count } else { 0 }];
                for i in 0..n {
                    for j in 0..n {
                        let ij = i * n + j;
                        let out = &mut sh[ij * p_count..(ij + 1) * p_count];
                        let old = &sh_prev[ij * p_count..(ij + 1) * p_count];
                        let syp = &sy_prev[i * p_count..(i + 1) * p_count];
                        let syj = &sy[j * p_count..(j + 1) * p_count];
                        if retroactive {
                            let l = &locals2[ij];
                            let e_out = &mut se[ij * p_count..(ij + 1) * p_count];
                            let e_old = &se_prev[ij * p_count..(ij + 1) * p_count];
                            for p in 0..p_count {
                                let deta = if p == pe { 1.0 } else { 0.0 };
                                out[p] = l.dh_h * old[p]
                                    + l.dh_e * e_old[p]
                                    + l.dh_m * s_rate(p)
                                    + l.dh_pre * syp[p]
                                    + l.dh_post * syj[p]
                                    + l.dh_eta * deta;
                                e_out[p] = jvp(&l.e, e_old[p], syp[p], syj[p], deta);
                            }
                        } else {
                            let local = &locals[ij];
                            for p in 0..p_count {
                                out[p] = jvp(local, old[p], syp[p], syj[p], s_rate(p));
                            }
                        }
                    }
                }
                if retroactive {
                    e_prev = locals2.iter().map(|l| l.e.value).collect();
                    se_prev = se;
                }
                h_prev = h;
                sh_prev = sh;
            }
            sm_prev = sm;
            y_prev = y;
            sy_prev = sy;
        }
        for j in 0..n_t {
            let d = y_prev[j] - ep.targets[b * n_t + j];
            loss += d * d / batch as f64;
            let k = 2.0 * d / batch as f64;
            for (g, s) in grads
                .iter_mut()
                .zip(&sy_prev[j * p_count..(j + 1) * p_count])
            {
                *g += k * s;
            }
        }
    }
    let (alpha, eta) = if net.plastic {
        (grads[pa..pe].to_vec(), grads[pe])
    } else {
        (vec![0.0; n_alpha], 0.0)
    };
    let modulator = match modulator {
        Some(_) => (grads[pm..pm + n].to_vec(), grads[pm + n]),
        None => (Vec::new(), 0.0),
    };
    (
        loss,
        HostGrads {
            w: grads[..nn].to_vec(),
            alpha,
            eta,
            modulator,
        },
    )
}

/// The largest absolute difference between two gradient sets, relative to the largest
/// absolute gradient (per group: `[W, α, η]`).
pub fn relative_differences(a: &HostGrads, b: &HostGrads) -> [f64; 3] {
    let rel = |x: &[f64], y: &[f64]| {
        let scale = x
            .iter()
            .chain(y)
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(1e-300);
        x.iter()
            .zip(y)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
            / scale
    };
    [
        rel(&a.w, &b.w),
        rel(&a.alpha, &b.alpha),
        rel(&[a.eta], &[b.eta]),
    ]
}

/// The loss and its gradients by burn autodiff through [`PlasticRnn::forward`], for the
/// network `net` rebuilt as a module on the autodiff `device`.
pub fn autodiff_grads(
    net: &HostRnn<f64>,
    ep: &EpisodeBatch<'_, f64>,
    device: &Device,
) -> (f64, HostGrads) {
    let n = net.n;
    let param = |v: &[f64], shape: [usize; 2]| {
        Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(v.to_vec(), shape),
            device,
        ))
    };
    let shared = net.alpha.len() == 1;
    let scalar = |v: f64| {
        Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(vec![v], [1]),
            device,
        ))
    };
    let modulator = net.modulator.as_ref().filter(|_| net.plastic);
    let model = PlasticRnn {
        w: param(&net.w, [n, n]),
        alpha: param(&net.alpha, if shared { [1, 1] } else { [n, n] }),
        eta: scalar(net.eta),
        w_m: modulator.map(|m| param(&m.w, [n, 1])),
        b_m: modulator.map(|m| scalar(m.b)),
        rule: net.rule,
        plastic: net.plastic,
        modulation: modulator.map_or(Modulation::None, |m| m.modulation),
    };
    let shape = [ep.steps, ep.batch, n];
    let t3 = |v: &[f64]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), shape), device);
    let ys = model.forward(t3(ep.inputs), ep.clamp.map(t3));
    let n_t = ep.targets.len() / ep.batch;
    let last = ys
        .slice([ep.steps - 1..ep.steps, 0..ep.batch, 0..n_t])
        .reshape([ep.batch, n_t]);
    let targets = Tensor::<2>::from_data(
        TensorData::new(ep.targets.to_vec(), [ep.batch, n_t]),
        device,
    );
    let diff = last - targets;
    let loss = diff
        .clone()
        .mul(diff)
        .sum()
        .mul_scalar(1.0 / ep.batch as f64);
    let value = loss
        .clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64")[0];
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    // η is unused with simple modulation (no gradient reaches it).
    let simple = model.modulation == Modulation::Simple;
    let eta = if net.plastic && !simple {
        host(&grads, &model.eta)[0]
    } else {
        0.0
    };
    let modulator = match (&model.w_m, &model.b_m) {
        (Some(w), Some(b)) => (host(&grads, w), host(&grads, b)[0]),
        _ => (Vec::new(), 0.0),
    };
    let alpha = if net.plastic {
        host(&grads, &model.alpha)
    } else {
        vec![0.0; net.alpha.len()]
    };
    (
        value,
        HostGrads {
            w: host(&grads, &model.w),
            alpha,
            eta,
            modulator,
        },
    )
}
