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

use bohp::engines::fused::{EpisodeBatch, HostGrads, HostRnn};
use bohp::recurrent::model::PlasticRnn;
use bohp::rules::{RuleKernel, jvp};
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
    bohp::with_rule!(net.rule, |k| rtrl_grads_with(&k, net, ep, false))
}

/// [`rtrl_grads`] with the trace's rule given as a [`RuleKernel`] (`net.rule` is not read), so
/// that checks can pass a known-wrong rule ([`bohp::rules::faults`]); with `new_trace`, the
/// known-wrong recursion that reads `H(t)` where `H(t-1)` is due (in the α direct term).
///
/// # Panics
///
/// Panics when the shapes of `ep` do not match the network.
pub fn rtrl_grads_with<R: RuleKernel>(
    rule: &R,
    net: &HostRnn<f64>,
    ep: &EpisodeBatch<'_, f64>,
    new_trace: bool,
) -> (f64, HostGrads) {
    let n = net.n;
    let nn = n * n;
    let shared = net.alpha.len() == 1;
    let n_alpha = net.alpha.len();
    let p_count = nn + n_alpha + 1;
    let (pa, pe) = (nn, nn + n_alpha);
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
            let locals: Vec<_> = if net.plastic {
                (0..nn)
                    .map(|ij| rule.local(h_prev[ij], y_prev[ij / n], y[ij % n], eta))
                    .collect()
            } else {
                Vec::new()
            };
            let h: Vec<f64> = locals.iter().map(|l| l.value).collect();
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
            // Sensitivities of H(t): the rule's forward-mode step.
            if net.plastic {
                let mut sh = vec![0.0; nn * p_count];
                for i in 0..n {
                    for j in 0..n {
                        let ij = i * n + j;
                        let local = &locals[ij];
                        let out = &mut sh[ij * p_count..(ij + 1) * p_count];
                        let old = &sh_prev[ij * p_count..(ij + 1) * p_count];
                        let syp = &sy_prev[i * p_count..(i + 1) * p_count];
                        let syj = &sy[j * p_count..(j + 1) * p_count];
                        for p in 0..p_count {
                            let drate = if p == pe { 1.0 } else { 0.0 };
                            out[p] = jvp(local, old[p], syp[p], syj[p], drate);
                        }
                    }
                }
                h_prev = h;
                sh_prev = sh;
            }
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
    (
        loss,
        HostGrads {
            w: grads[..nn].to_vec(),
            alpha,
            eta,
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
    let model = PlasticRnn {
        w: param(&net.w, [n, n]),
        alpha: param(&net.alpha, if shared { [1, 1] } else { [n, n] }),
        eta: Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(vec![net.eta], [1]),
            device,
        )),
        rule: net.rule,
        plastic: net.plastic,
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
    let eta = if net.plastic {
        host(&grads, &model.eta)[0]
    } else {
        0.0
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
        },
    )
}
