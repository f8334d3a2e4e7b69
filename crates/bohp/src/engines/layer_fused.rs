//! The single layer's `fused` engine (`train.engine = "fused"`): backpropagation through time
//! written out by hand on the host, in the model's precision (f32 or f64), vectorised over the
//! rows of the layer and split over the batch's episodes across threads (rayon).
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

use burn::tensor::DType;
use rayon::prelude::*;

use crate::network::PlasticNet;
use crate::rules::{Real, RuleKernel, real};
use crate::tasks::{EpisodeBatch, LABELLED_STEPS, Measures, Targets};
use crate::train::GradientEngine;

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
}

fn group<F: Real>(values: &[(&'static str, Vec<f64>)], name: &str) -> Vec<F> {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.iter().map(|&x| real(x)).collect())
        .unwrap_or_default()
}

/// Loss-gradient accumulators of one thread, in `F` (summed in f64 across threads).
#[derive(Debug, Clone)]
struct Acc<F> {
    w: Vec<F>,
    alpha: Vec<F>,
    b: Vec<F>,
    v: Vec<F>,
    c: Vec<F>,
    loss: f64,
    error: f64,
}

impl<F: Real> Acc<F> {
    fn new(p: &Layer<F>) -> Self {
        Acc {
            w: vec![F::zero(); p.w.len()],
            alpha: vec![F::zero(); p.alpha.len()],
            b: vec![F::zero(); p.b.len()],
            v: vec![F::zero(); p.v.len()],
            c: vec![F::zero(); p.c.len()],
            loss: 0.0,
            error: 0.0,
        }
    }

    /// Adds `other` into `self`.
    fn merge(mut self, other: Self) -> Self {
        for (a, b) in [
            (&mut self.w, &other.w),
            (&mut self.alpha, &other.alpha),
            (&mut self.b, &other.b),
            (&mut self.v, &other.v),
            (&mut self.c, &other.c),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x = *x + *y);
        }
        self.loss += other.loss;
        self.error += other.error;
        self
    }
}

/// Per-thread work buffers for one episode.
struct Work<F> {
    /// `H(t)` for `t = 0..=steps` (`H(0) = 0`), `[steps + 1][n_in * n_out]`.
    h: Vec<F>,
    /// `y(t)`, `[steps][n_out]`.
    y: Vec<F>,
    /// The direct partial `∂L/∂y(t)`, `[steps][n_out]`.
    dy: Vec<F>,
    /// `∂L/∂H`, `[n_in * n_out]`.
    gh: Vec<F>,
    /// Scratch: `[n_out]` and `[classes]`.
    g_raw: Vec<F>,
    logits: Vec<F>,
}

impl<F: Real> Work<F> {
    fn new(p: &Layer<F>, steps: usize) -> Self {
        let size = p.n_in * p.n_out;
        Work {
            h: vec![F::zero(); (steps + 1) * size],
            y: vec![F::zero(); steps * p.n_out],
            dy: vec![F::zero(); steps * p.n_out],
            gh: vec![F::zero(); size],
            g_raw: vec![F::zero(); p.n_out],
            logits: vec![F::zero(); p.classes],
        }
    }
}

/// The scoring of a batch: what the per-episode pass needs from [`Targets`].
struct Scoring<'a> {
    targets: &'a Targets,
    /// Divisor of each scored step's loss (`batch × scored steps`; `batch` for completion).
    norm: f64,
}

/// One episode, forward and backward, added into `acc`.
fn episode<F: Real, R: RuleKernel>(
    rule: &R,
    p: &Layer<F>,
    batch: &EpisodeBatch,
    e: usize,
    scoring: &Scoring,
    work: &mut Work<F>,
    acc: &mut Acc<F>,
) {
    let (n_in, n_out, classes) = (p.n_in, p.n_out, p.classes);
    let size = n_in * n_out;
    let steps = batch.steps;
    let bsz = batch.batch;
    let norm: F = real(scoring.norm);
    let x_at = |t: usize| &batch.inputs[(t * bsz + e) * n_in..(t * bsz + e + 1) * n_in];
    work.h[..size].iter_mut().for_each(|v| *v = F::zero());
    work.dy.iter_mut().for_each(|v| *v = F::zero());
    // Forward.
    for t in 0..steps {
        let x = x_at(t);
        let (before, after) = work.h.split_at_mut((t + 1) * size);
        let h_old = &before[t * size..];
        let h_new = &mut after[..size];
        let y = &mut work.y[t * n_out..(t + 1) * n_out];
        y.copy_from_slice(&p.b);
        for (k, &xk) in x.iter().enumerate() {
            if xk != 0.0 {
                let xk: F = real(xk);
                let row = k * n_out..(k + 1) * n_out;
                for ((yj, &w), (&a, &h)) in y
                    .iter_mut()
                    .zip(&p.w[row.clone()])
                    .zip(p.alpha[row.clone()].iter().zip(&h_old[row]))
                {
                    *yj = *yj + (w + a * h) * xk;
                }
            }
        }
        y.iter_mut().for_each(|v| *v = v.tanh());
        for (k, &xk) in x.iter().enumerate() {
            let row = k * n_out..(k + 1) * n_out;
            crate::rules::forward(
                rule,
                &h_old[row.clone()],
                real(xk),
                y,
                p.gamma,
                &mut h_new[row],
            );
        }
        // The loss's direct partials at this step.
        let dy = &mut work.dy[t * n_out..(t + 1) * n_out];
        match scoring.targets {
            Targets::Pattern { values } => {
                if t == steps - 1 {
                    let target = &values[e * n_out..(e + 1) * n_out];
                    for ((g, &yj), &tj) in dy.iter_mut().zip(y.iter()).zip(target) {
                        let diff = yj.to_f64().unwrap_or(f64::NAN) - tj;
                        acc.loss += diff * diff / scoring.norm;
                        acc.error += diff.abs() / scoring.norm;
                        *g = real::<F>(2.0 * diff) / norm;
                    }
                }
            }
            Targets::Labels { classes: cls, scored } => {
                if !scored[t] {
                    continue;
                }
                let z = &mut work.logits;
                z.copy_from_slice(&p.c);
                for (j, &yj) in y.iter().enumerate() {
                    for (zm, &v) in z.iter_mut().zip(&p.v[j * classes..(j + 1) * classes]) {
                        *zm = *zm + yj * v;
                    }
                }
                let max = z.iter().copied().fold(F::neg_infinity(), F::max);
                z.iter_mut().for_each(|v| *v = (*v - max).exp());
                let sum: F = z.iter().copied().sum();
                let target = cls[t];
                // z now holds the softmax probabilities.
                z.iter_mut().for_each(|v| *v = *v / sum);
                let p_target = z[target].to_f64().unwrap_or(f64::NAN);
                acc.loss -= p_target.ln() / scoring.norm;
                for (m, zm) in z.iter_mut().enumerate() {
                    let hot = if m == target { F::one() } else { F::zero() };
                    let diff = *zm - hot;
                    acc.error += diff.abs().to_f64().unwrap_or(f64::NAN)
                        / (scoring.norm * classes as f64);
                    // ∂L/∂z_m
                    *zm = diff / norm;
                }
                for (cm, &dz) in acc.c.iter_mut().zip(z.iter()) {
                    *cm = *cm + dz;
                }
                for (j, (&yj, g)) in y.iter().zip(dy.iter_mut()).enumerate() {
                    let vj = &p.v[j * classes..(j + 1) * classes];
                    let gv = &mut acc.v[j * classes..(j + 1) * classes];
                    let mut s = F::zero();
                    for ((gvm, &vm), &dz) in gv.iter_mut().zip(vj).zip(z.iter()) {
                        *gvm = *gvm + yj * dz;
                        s = s + vm * dz;
                    }
                    *g = s;
                }
            }
        }
    }
    // Backward.
    work.gh.iter_mut().for_each(|v| *v = F::zero());
    for t in (0..steps).rev() {
        let x = x_at(t);
        let h_old = &work.h[t * size..(t + 1) * size];
        let y = &work.y[t * n_out..(t + 1) * n_out];
        // ∂L/∂y(t): the direct partial plus what H(t) sends back through post.
        let g_raw = &mut work.g_raw;
        g_raw.copy_from_slice(&work.dy[t * n_out..(t + 1) * n_out]);
        if t + 1 < steps {
            for (k, &xk) in x.iter().enumerate() {
                let xk: F = real(xk);
                let row = k * n_out..(k + 1) * n_out;
                for (((g, &gh), &h), &yj) in g_raw
                    .iter_mut()
                    .zip(&work.gh[row.clone()])
                    .zip(&h_old[row])
                    .zip(y)
                {
                    *g = *g + gh * rule.local(h, xk, yj, p.gamma).d_post;
                }
            }
        }
        for (g, &yj) in g_raw.iter_mut().zip(y) {
            *g = *g * (F::one() - yj * yj);
        }
        for (gb, &g) in acc.b.iter_mut().zip(g_raw.iter()) {
            *gb = *gb + g;
        }
        for (k, &xk) in x.iter().enumerate() {
            let xk: F = real(xk);
            let row = k * n_out..(k + 1) * n_out;
            let gh = &mut work.gh[row.clone()];
            let h = &h_old[row.clone()];
            if xk != F::zero() {
                let gw = &mut acc.w[row.clone()];
                let ga = &mut acc.alpha[row.clone()];
                for ((gwj, gaj), (&g, &hj)) in gw.iter_mut().zip(ga.iter_mut()).zip(g_raw.iter().zip(h)) {
                    let gx = g * xk;
                    *gwj = *gwj + gx;
                    *gaj = *gaj + gx * hj;
                }
            }
            if t > 0 {
                let a = &p.alpha[row];
                for (((ghj, &hj), &yj), (&g, &aj)) in gh
                    .iter_mut()
                    .zip(h)
                    .zip(y)
                    .zip(g_raw.iter().zip(a))
                {
                    let d_h = rule.local(hj, xk, yj, p.gamma).d_h;
                    *ghj = *ghj * d_h + g * aj * xk;
                }
            }
        }
    }
}

/// The loss, measures and gradients of `batch` under the parameters `values` (named as
/// [`PlasticNet::parameter_values`]) of a network shaped like `model`, computed in `F`.
/// Episodes are split across rayon's threads when the batch has several.
pub fn evaluate<F: Real>(
    model: &PlasticNet,
    values: &[(&'static str, Vec<f64>)],
    batch: &EpisodeBatch,
) -> (Measures, Vec<Vec<f64>>) {
    let p = Layer::<F> {
        n_in: model.plastic.n_in(),
        n_out: model.plastic.n_out(),
        classes: model.readout.as_ref().map_or(0, |r| r.c.val().dims()[0]),
        gamma: real(model.plastic.gamma),
        w: group(values, "w"),
        alpha: group(values, "alpha"),
        b: group(values, "b"),
        v: group(values, "readout.v"),
        c: group(values, "readout.c"),
    };
    assert_eq!(batch.n_in, p.n_in, "episode input size must match the network");
    let scored_steps = match &batch.targets {
        Targets::Labels { scored, .. } => scored.iter().filter(|s| **s).count(),
        Targets::Pattern { .. } => 1,
    };
    let scoring = Scoring {
        targets: &batch.targets,
        norm: (batch.batch * scored_steps) as f64,
    };
    let acc = crate::with_rule!(model.plastic.rule, |k| {
        let threads = rayon::current_num_threads();
        // Episodes per task: every thread gets work, and a task is worth scheduling.
        let per = batch.batch.div_ceil(threads).max(1);
        if threads <= 1 || batch.batch < 2 * threads.min(4) {
            let mut acc = Acc::new(&p);
            let mut work = Work::new(&p, batch.steps);
            for e in 0..batch.batch {
                episode(&k, &p, batch, e, &scoring, &mut work, &mut acc);
            }
            acc
        } else {
            (0..batch.batch.div_ceil(per))
                .into_par_iter()
                .map(|chunk| {
                    let mut acc = Acc::new(&p);
                    let mut work = Work::new(&p, batch.steps);
                    for e in chunk * per..((chunk + 1) * per).min(batch.batch) {
                        episode(&k, &p, batch, e, &scoring, &mut work, &mut acc);
                    }
                    acc
                })
                .reduce_with(Acc::merge)
                .expect("a batch has episodes")
        }
    });
    let error_code = match &batch.targets {
        Targets::Pattern { .. } => acc.loss,
        // The original code averages over steps 2.. with the labelled steps counted as 0.
        Targets::Labels { .. } => {
            acc.loss * scored_steps as f64 / (batch.steps - LABELLED_STEPS) as f64
        }
    };
    let measures = Measures {
        loss: acc.loss,
        error: acc.error,
        error_code,
    };
    let widen = |v: &[F]| v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect();
    let grads = values
        .iter()
        .map(|(name, v)| match *name {
            "w" => widen(&acc.w),
            "alpha" => widen(&acc.alpha),
            "b" => widen(&acc.b),
            "readout.v" => widen(&acc.v),
            "readout.c" => widen(&acc.c),
            _ => vec![0.0; v.len()],
        })
        .collect();
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
        values: &[(&'static str, Vec<f64>)],
        batch: &EpisodeBatch,
    ) -> Option<(Measures, Vec<Vec<f64>>)> {
        Some(match model.plastic.w.val().dtype() {
            DType::F64 => evaluate::<f64>(model, values, batch),
            _ => evaluate::<f32>(model, values, batch),
        })
    }

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::rng::Stream;
    use crate::train::init_model;

    /// Splitting the batch across threads changes the gradients' summation order only.
    #[test]
    fn the_thread_count_changes_only_rounding() {
        for kind in ["completion", "one-shot", "reversal"] {
            let text = format!(
                "seed = 3\ndtype = \"f64\"\n[task]\nkind = \"{kind}\"\n[model]\ngamma = 0.1\n\
                 [train]\nbatch = 7\n"
            );
            let path = std::path::Path::new("test.toml");
            let config = RunConfig::parse(&text, path).unwrap();
            config.validate("test.toml").unwrap();
            let device = crate::device::init_device(config.device, config.dtype).unwrap();
            let model = init_model(&config, &device);
            let values = model.parameter_values();
            let batch = config.task().generate(3, Stream::Train, 0, 7);
            let on = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| evaluate::<f64>(&model, &values, &batch))
            };
            let (m1, g1) = on(1);
            let (m3, g3) = on(3);
            assert!((m1.loss - m3.loss).abs() <= 1e-12 * m1.loss.abs(), "{kind}");
            let (mut count, mut nonzero) = (0, 0);
            for (a, b) in g1.iter().flatten().zip(g3.iter().flatten()) {
                assert!((a - b).abs() <= 1e-12 * a.abs().max(1e-3), "{kind}: {a} vs {b}");
                count += 1;
                nonzero += (*a != 0.0) as usize;
            }
            assert!(count == values.iter().map(|(_, v)| v.len()).sum::<usize>() && nonzero > count / 2);
        }
    }
}
