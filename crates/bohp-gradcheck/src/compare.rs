//! Gradients three ways (burn autodiff, the analytic recursion, central finite differences)
//! and their agreement, per parameter group.

use bohp::single::network::PlasticNet;
use bohp::single::tasks::{EpisodeBatch, Task, read_measures};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use bohp::engines::analytic::{Grads, Params, loss};
pub use bohp::engines::analytic::{params_from_values, params_of};

/// Relative errors divide by `max(|a|, |b|, floor)`: entries whose gradients are both below the
/// floor are compared on the floor's scale, so that rounding noise on near-zero entries is not
/// amplified. Checks state their floor as a fraction of `max(1, |loss|)` (see
/// [`crate::check::Tolerances`]).
pub fn floor(loss: f64, fraction: f64) -> f64 {
    fraction * loss.abs().max(1.0)
}

/// Initial step of the finite differences, relative to `max(1, |θ|)`.
pub const FD_STEP: f64 = 1e-2;

/// Initial step of the recurrent network's finite differences, relative to `max(1, |θ|)`:
/// its loss curves faster (a shared `α` or `η` moves every connection at once, over dozens of
/// steps), and Ridders' extrapolation from 1e-2 can settle on a step still too large.
pub const RECURRENT_FD_STEP: f64 = 1e-3;

/// Initial step of the finite differences for a rule that is not smooth (the clipped rule),
/// relative to `max(1, |θ|)`: a step that moves a trace entry across the clip differences
/// across a kink, so the steps stay small enough that hardly any entry is that close to it.
/// Its cancellation error (about `1e-16 · |L| / h`, amplified by the extrapolation) sets the
/// check's floor for these rules, `1e-5 · max(1, |L|)` ([`crate::check::Tolerances`]).
pub const FD_STEP_NONSMOOTH: f64 = 1e-4;

/// The initial finite-difference step for `rule` in a network family whose smooth rules take
/// `smooth_step`.
pub fn fd_step(rule: &bohp::rules::RuleSpec, smooth_step: f64) -> f64 {
    if rule.smooth() {
        smooth_step
    } else {
        FD_STEP_NONSMOOTH
    }
}

/// Agreement of two gradients on one parameter group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAgreement {
    /// Parameter group (`w`, `alpha`, `b`, `readout.v`, `readout.c`).
    pub group: String,
    /// Number of entries.
    pub count: usize,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest relative difference, `|a - b| / max(|a|, |b|, floor)`.
    pub max_rel: f64,
    /// Cosine similarity of the two gradient vectors (1 when both are zero).
    pub cosine: f64,
    /// Entries left out because the second method could not resolve them (`NaN`: a finite
    /// difference across a kink of the clipped rule, see [`finite_differences`]).
    #[serde(default)]
    pub unresolved: usize,
}

/// Per-group agreement of `a` with `b`, relative errors floored at `floor`.
pub fn agreement(a: &Grads, b: &Grads, floor: f64) -> Vec<GroupAgreement> {
    agreement_groups(&a.groups(), &b.groups(), floor)
}

/// The fraction of a group's largest gradient below which its entries are compared on that
/// scale ([`agreement_groups`]): an entry is a sum of many terms on its group's scale (over
/// steps, episodes and, in a recurrent network, `N` neurons), which f64 rounds at about
/// `1e-16·sqrt(terms)` of that scale; with this floor the exact comparisons (tolerance 1e-10)
/// allow `1e-14` of the group's largest entry. Measured: `configs/memorisation.toml` (N = 1000,
/// 106 steps, 4 episodes) has autodiff and the fused engine 3e-15 apart on a `W` entry of
/// 2.4e-5, 1.3e-10 of it.
pub const GROUP_FLOOR: f64 = 1e-4;

/// Per-group agreement of two gradient sets given as `(name, values)` groups in the same order.
/// Relative differences divide by `max(|a|, |b|, floor, GROUP_FLOOR · max_group |b|)`.
pub fn agreement_groups(
    a: &[(&str, &[f64])],
    b: &[(&str, &[f64])],
    floor: f64,
) -> Vec<GroupAgreement> {
    a.iter()
        .zip(b)
        .map(|((name, x), (_, y))| {
            assert_eq!(x.len(), y.len(), "group {name} sizes");
            let largest = y
                .iter()
                .filter(|v| v.is_finite())
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let floor = floor.max(GROUP_FLOOR * largest);
            let mut max_abs: f64 = 0.0;
            let mut max_rel: f64 = 0.0;
            let (mut dot, mut nx, mut ny) = (0.0, 0.0, 0.0);
            let mut unresolved = 0;
            for (u, v) in x.iter().zip(y.iter()) {
                if v.is_nan() {
                    unresolved += 1;
                    continue;
                }
                let diff = (u - v).abs();
                // A NaN difference (a method that failed) is the worst possible agreement.
                let rel = if diff.is_nan() {
                    f64::INFINITY
                } else {
                    diff / u.abs().max(v.abs()).max(floor)
                };
                max_abs = max_abs.max(if diff.is_nan() { f64::INFINITY } else { diff });
                max_rel = max_rel.max(rel);
                dot += u * v;
                nx += u * u;
                ny += v * v;
            }
            let cosine = if nx == 0.0 && ny == 0.0 {
                1.0
            } else {
                dot / (nx.sqrt() * ny.sqrt()).max(f64::MIN_POSITIVE)
            };
            GroupAgreement {
                group: name.to_string(),
                count: x.len(),
                max_abs,
                max_rel,
                cosine,
                unresolved,
            }
        })
        .collect()
}

/// The largest relative difference over all groups.
pub fn worst_relative(rows: &[GroupAgreement]) -> f64 {
    rows.iter().map(|r| r.max_rel).fold(0.0, f64::max)
}

/// Central finite differences of the analytic forward loss, one parameter at a time, refined
/// by Ridders' extrapolation: central differences `(L(θ+h) - L(θ-h)) / 2h` at steps
/// `h₀, h₀/1.4, h₀/1.4², …` (`h₀ = FD_STEP · max(1, |θ|)`), extrapolated to `h → 0` in a Neville
/// tableau; the estimate with the smallest internal error is kept. Unlike a fixed step, this
/// is accurate both where the loss is smooth (large steps, little cancellation) and where it
/// is sharp (saturated tanh units, large α).
///
/// For a rule that is not smooth (the clipped rule) a step can straddle a kink where a trace
/// entry reaches the clip; the extrapolation then does not converge. Such entries, whose
/// estimated error exceeds a tenth of the check's tolerance
/// ([`unresolved`]), are `NaN`: the comparisons leave them out and count them.
pub fn finite_differences(params: &Params, batch: &EpisodeBatch) -> Grads {
    let mut p = params.clone();
    let smooth = params.rule.smooth();
    let scale = floor(loss(params, batch), NONSMOOTH_FLOOR);
    let mut out: Vec<(&str, Vec<f64>)> = Vec::new();
    for group in 0..params.groups().len() {
        let len = params.groups()[group].1.len();
        let mut g = vec![0.0; len];
        for (i, gi) in g.iter_mut().enumerate() {
            let theta = p.group_mut(group)[i];
            *gi = derivative(
                theta,
                fd_step(&params.rule, FD_STEP),
                !smooth,
                scale,
                |value| {
                    p.group_mut(group)[i] = value;
                    loss(&p, batch)
                },
            );
            p.group_mut(group)[i] = theta;
        }
        out.push((params.groups()[group].0, g));
    }
    Grads::from_groups(out)
}

/// The finite differences' floor fraction for rules that are not smooth (see
/// [`crate::check::Tolerances::for_rule`]).
pub const NONSMOOTH_FLOOR: f64 = 1e-5;

/// Whether a finite difference with Ridders' error estimate `error` cannot certify agreement to
/// the check's tolerance (1e-6 relative to `max(|estimate|, scale)`): its error estimate is
/// above a tenth of it.
pub fn unresolved(estimate: f64, error: f64, scale: f64) -> bool {
    // A NaN error or estimate is unresolved too.
    let bound = 1e-7 * estimate.abs().max(scale);
    error.is_nan() || bound.is_nan() || error > bound
}

/// The derivative at `theta` of `loss_at(value)` (which sets the parameter to `value` and
/// returns the loss) by central differences refined with Ridders' extrapolation (see
/// [`finite_differences`]), from the initial step `step · max(1, |θ|)`: the estimate and its
/// error estimate (the tableau's disagreement). The caller restores the parameter afterwards.
pub fn ridders(theta: f64, step: f64, mut loss_at: impl FnMut(f64) -> f64) -> (f64, f64) {
    const SHRINK: f64 = 1.4;
    const TABLE: usize = 10;
    const SAFE: f64 = 2.0;
    let mut central = |h: f64| (loss_at(theta + h) - loss_at(theta - h)) / (2.0 * h);
    let mut h = step * theta.abs().max(1.0);
    let mut a = [[0.0f64; TABLE]; TABLE];
    a[0][0] = central(h);
    let (mut best, mut err) = (a[0][0], f64::INFINITY);
    for col in 1..TABLE {
        h /= SHRINK;
        a[0][col] = central(h);
        let mut fac = SHRINK * SHRINK;
        for row in 1..=col {
            a[row][col] = (a[row - 1][col] * fac - a[row - 1][col - 1]) / (fac - 1.0);
            fac *= SHRINK * SHRINK;
            let e = (a[row][col] - a[row - 1][col])
                .abs()
                .max((a[row][col] - a[row - 1][col - 1]).abs());
            if e <= err {
                err = e;
                best = a[row][col];
            }
        }
        if (a[col][col] - a[col - 1][col - 1]).abs() >= SAFE * err {
            break;
        }
    }
    (best, err)
}

/// The derivative at `theta` of `loss_at(value)` by [`ridders`]: its estimate, or `NaN` when
/// `check_resolution` is on and the estimate cannot certify the checks' precision
/// ([`unresolved`] against `scale`; the comparisons leave such entries out and count them).
/// The caller restores the parameter afterwards.
pub fn derivative(
    theta: f64,
    step: f64,
    check_resolution: bool,
    scale: f64,
    loss_at: impl FnMut(f64) -> f64,
) -> f64 {
    let (estimate, error) = ridders(theta, step, loss_at);
    if check_resolution && unresolved(estimate, error, scale) {
        f64::NAN
    } else {
        estimate
    }
}

/// At most `entries` evenly spaced indices of `0..len` (every index of a shorter range).
pub fn evenly_spaced(len: usize, entries: usize) -> Vec<usize> {
    (0..len)
        .step_by(len.div_ceil(entries.max(1)).max(1))
        .collect()
}

/// Per-group agreement of `a` with `b` on the entries `indices[k]` of group `k` only (sampled
/// finite differences).
pub fn agreement_at(
    a: &[(&'static str, &[f64])],
    b: &[(&'static str, &[f64])],
    indices: &[Vec<usize>],
    floor: f64,
) -> Vec<GroupAgreement> {
    let pick = |groups: &[(&'static str, &[f64])]| -> Vec<(&'static str, Vec<f64>)> {
        groups
            .iter()
            .zip(indices)
            .map(|((name, v), idx)| (*name, idx.iter().map(|&i| v[i]).collect()))
            .collect()
    };
    let (pa, pb) = (pick(a), pick(b));
    agreement_groups(&view(&pa), &view(&pb), floor)
}

/// Autodiff gradients against central finite differences ([`derivative`], from
/// [`RECURRENT_FD_STEP`], resolution checked against `floor`) on at most `entries` evenly spaced
/// entries of each group. `groups` holds `(name, autodiff gradient, values)`; `loss_at(g, i, x)`
/// is the loss with entry `i` of group `g` set to `x`. Serves the parameter groups that have no
/// hand-derived gradient (Omniglot's embedding, the LSTM baseline).
pub fn sampled_agreement(
    groups: &[(String, Vec<f64>, Vec<f64>)],
    entries: usize,
    floor: f64,
    mut loss_at: impl FnMut(usize, usize, f64) -> f64,
) -> Vec<GroupAgreement> {
    let mut ad = Vec::new();
    let mut fd = Vec::new();
    for (g, (_, grad, values)) in groups.iter().enumerate() {
        let idx = evenly_spaced(values.len(), entries);
        fd.push(
            idx.iter()
                .map(|&i| {
                    derivative(values[i], RECURRENT_FD_STEP, true, floor, |x| {
                        loss_at(g, i, x)
                    })
                })
                .collect::<Vec<f64>>(),
        );
        ad.push(idx.iter().map(|&i| grad[i]).collect::<Vec<f64>>());
    }
    fn named<'a>(
        groups: &'a [(String, Vec<f64>, Vec<f64>)],
        v: &'a [Vec<f64>],
    ) -> Vec<(&'a str, &'a [f64])> {
        groups
            .iter()
            .zip(v)
            .map(|((n, ..), x)| (n.as_str(), x.as_slice()))
            .collect()
    }
    agreement_groups(&named(groups, &ad), &named(groups, &fd), floor)
}

/// The value of a one-element tensor (a loss), in f64.
pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .iter::<f64>()
        .next()
        .expect("a one-element tensor")
}

/// Owned groups viewed as `(name, values)` slices.
pub fn view<'a>(v: &'a [(&'static str, Vec<f64>)]) -> Vec<(&'static str, &'a [f64])> {
    v.iter().map(|(n, x)| (*n, x.as_slice())).collect()
}

/// `params` as a burn model, built from `template` (a network of the same shape) so that
/// parameter ids and trainability carry over.
pub fn model_with(template: PlasticNet, params: &Params) -> PlasticNet {
    let values: Vec<(&str, Vec<f64>)> = params
        .groups()
        .into_iter()
        .map(|(name, v)| (name, v.to_vec()))
        .collect();
    template.with_parameter_values(&values)
}

pub(crate) fn host<const D: usize>(grads: &GradientsParams, p: &Param<Tensor<D>>) -> Vec<f64> {
    match grads.get::<D>(p.id) {
        Some(g) => g
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("float gradients"),
        // A parameter that does not require a gradient (α without plasticity) has none.
        None => vec![0.0; p.shape().num_elements()],
    }
}

/// The loss and its gradients by burn autodiff (backpropagation through the unrolled episode),
/// for `model` on an autodiff `device`.
pub fn autodiff(
    model: &PlasticNet,
    task: &Task,
    batch: &EpisodeBatch,
    device: &Device,
) -> (f64, Grads) {
    let (outputs, _) = model.forward(batch.input_tensor(device));
    let (loss, measures) = task.measure(outputs, &batch.target_tensors(device));
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let readout = model.readout.as_ref();
    let layer = &model.plastic;
    let g = Grads {
        w: host(&grads, &layer.w),
        alpha: host(&grads, &layer.alpha),
        b: host(&grads, &layer.b),
        w_m: layer.w_m.as_ref().map(|p| host(&grads, p)),
        b_m: layer.b_m.as_ref().map(|p| host(&grads, p)),
        readout_v: readout.map(|r| host(&grads, &r.v)),
        readout_c: readout.map(|r| host(&grads, &r.c)),
    };
    (read_measures(measures).loss, g)
}

/// Whether `model` lives on an autodiff device.
pub fn on_autodiff(model: &PlasticNet) -> bool {
    model.devices().first().is_some_and(Device::is_autodiff)
}
