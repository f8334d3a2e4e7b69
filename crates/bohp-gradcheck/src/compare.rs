//! Gradients three ways (burn autodiff, the analytic recursion, central finite differences)
//! and their agreement, per parameter group.

use bohp::network::PlasticNet;
use bohp::tasks::{EpisodeBatch, Task, read_measures};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::analytic::{Grads, Params, loss};

/// Relative errors divide by `max(|a|, |b|, floor)`: entries whose gradients are both below the
/// floor are compared on the floor's scale, so that rounding noise on near-zero entries is not
/// amplified. Checks state their floor as a fraction of `max(1, |loss|)` (see
/// [`crate::check::Tolerances`]).
pub fn floor(loss: f64, fraction: f64) -> f64 {
    fraction * loss.abs().max(1.0)
}

/// Initial step of the finite differences, relative to `max(1, |θ|)`.
pub const FD_STEP: f64 = 1e-2;

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
}

/// Per-group agreement of `a` with `b`, relative errors floored at `floor`.
pub fn agreement(a: &Grads, b: &Grads, floor: f64) -> Vec<GroupAgreement> {
    a.groups()
        .into_iter()
        .zip(b.groups())
        .map(|((name, x), (_, y))| {
            assert_eq!(x.len(), y.len(), "group {name} sizes");
            let mut max_abs: f64 = 0.0;
            let mut max_rel: f64 = 0.0;
            let (mut dot, mut nx, mut ny) = (0.0, 0.0, 0.0);
            for (u, v) in x.iter().zip(y) {
                let diff = (u - v).abs();
                max_abs = max_abs.max(diff);
                max_rel = max_rel.max(diff / u.abs().max(v.abs()).max(floor));
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
pub fn finite_differences(params: &Params, batch: &EpisodeBatch) -> Grads {
    const SHRINK: f64 = 1.4;
    const TABLE: usize = 10;
    const SAFE: f64 = 2.0;
    let mut p = params.clone();
    let mut out: Vec<Vec<f64>> = Vec::new();
    for group in 0..params.groups().len() {
        let len = params.groups()[group].1.len();
        let mut g = vec![0.0; len];
        for i in 0..len {
            let theta = p.group_mut(group)[i];
            let mut central = |h: f64| {
                p.group_mut(group)[i] = theta + h;
                let plus = loss(&p, batch);
                p.group_mut(group)[i] = theta - h;
                let minus = loss(&p, batch);
                (plus - minus) / (2.0 * h)
            };
            let mut h = FD_STEP * theta.abs().max(1.0);
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
            p.group_mut(group)[i] = theta;
            g[i] = best;
        }
        out.push(g);
    }
    let mut it = out.into_iter();
    Grads {
        w: it.next().expect("w"),
        alpha: it.next().expect("alpha"),
        b: it.next().expect("b"),
        readout_v: it.next(),
        readout_c: it.next(),
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
        w: get("w").expect("w"),
        alpha: get("alpha").expect("alpha"),
        b: get("b").expect("b"),
        readout_v: get("readout.v"),
        readout_c: get("readout.c"),
    }
}

/// `params` as a burn model, built from `template` (a network of the same shape) so that
/// parameter ids and trainability carry over.
pub fn model_with(template: PlasticNet, params: &Params) -> PlasticNet {
    let mut values = vec![
        ("w", params.w.clone()),
        ("alpha", params.alpha.clone()),
        ("b", params.b.clone()),
    ];
    if let (Some(v), Some(c)) = (&params.readout_v, &params.readout_c) {
        values.push(("readout.v", v.clone()));
        values.push(("readout.c", c.clone()));
    }
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
pub fn autodiff(model: &PlasticNet, task: &Task, batch: &EpisodeBatch, device: &Device) -> (f64, Grads) {
    let (outputs, _) = model.forward(batch.input_tensor(device));
    let (loss, measures) = task.measure(outputs, &batch.target_tensors(device));
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let readout = model.readout.as_ref();
    let g = Grads {
        w: host(&grads, &model.plastic.w),
        alpha: host(&grads, &model.plastic.alpha),
        b: host(&grads, &model.plastic.b),
        readout_v: readout.map(|r| host(&grads, &r.v)),
        readout_c: readout.map(|r| host(&grads, &r.c)),
    };
    (read_measures(measures).loss, g)
}

/// Whether `model` lives on an autodiff device.
pub fn on_autodiff(model: &PlasticNet) -> bool {
    model.devices().first().is_some_and(Device::is_autodiff)
}
