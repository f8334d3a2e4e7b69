//! `bohp inspect`: a trained network's learned structure, as the paper describes it
//! (Figs. 2b-4b): heatmaps of `w`, `α` and the plastic weights `α ⊙ H`, and numbers that
//! quantify fixed vs plastic connectivity.
//!
//! Raw `|α|` and `|w|` are not comparable (the plastic weight is `α · H`, and `H` is of order
//! γ), so the plastic side is measured as the *effective plastic weight* `|α_kj · H_kj|` that
//! the last step of an episode reads, averaged over fresh episodes.

use std::path::Path;

use anyhow::Result;
use bohp::device::init_device;
use bohp::rng::Stream;
use bohp::run::{RunDir, load_model};
use bohp::single::config::SingleLayerConfig;
use bohp::single::network::PlasticNet;
use bohp::single::tasks::TaskKind;
use bohp::single::train::init_model;
use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::figures::{Matrix, heatmaps};

/// Fixed and plastic connection strengths of a group of connections.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Strength {
    /// Mean `|w|`.
    pub fixed: f64,
    /// Mean effective plastic weight `|α · H|` at the last step.
    pub plastic: f64,
    /// Mean `α`.
    pub alpha_mean: f64,
    /// Fraction of connections with `α < 0`.
    pub alpha_negative_fraction: f64,
    /// Share of the plasticity magnitude `Σ |α|` carried by connections with `α < 0`: whether
    /// the learned plasticity is predominantly negative.
    pub alpha_negative_mass_share: f64,
    /// Share of the plastic weight `Σ |α·H|` carried by connections with `α < 0`: whether the
    /// plasticity the network actually uses is negative.
    pub plastic_negative_share: f64,
}

/// One hidden unit of a labelled-task network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HiddenUnit {
    /// From the pattern bits.
    pub pattern: Strength,
    /// From the label bits.
    pub label: Strength,
}

/// The learned structure of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    /// Task name.
    pub task: String,
    /// Fresh episodes the plastic weights were averaged over.
    pub episodes: usize,
    /// Completion: each input's connection to its own output.
    pub own: Option<Strength>,
    /// Completion: connections to the other outputs.
    pub others: Option<Strength>,
    /// Labelled tasks: per hidden unit.
    pub hidden: Vec<HiddenUnit>,
    /// Labelled tasks: all pattern-bit connections.
    pub pattern: Option<Strength>,
    /// Labelled tasks: all label-bit connections.
    pub label: Option<Strength>,
    /// A modulated layer's `M(t)` over the same episodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulator: Option<ModulatorUse>,
}

/// What a modulated layer's `M(t) = tanh(y(t)·w_M + b_M)` did over fresh episodes: the sign
/// of the rate, whether it switches from Hebbian to anti-Hebbian, is the question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModulatorUse {
    /// `simple` or `retroactive`.
    pub kind: String,
    /// The learned `w_M`, `[n_out]`.
    pub w_m: Vec<f64>,
    /// The learned `b_M`.
    pub b_m: f64,
    /// Mean `M(t)` over the episodes at each step, `[steps]`.
    pub mean_by_step: Vec<f64>,
    /// Fraction of (episode, step) pairs with `M(t) < 0`.
    pub negative_fraction: f64,
}

/// `M(t)` of a modulated `model` over `episodes` fresh episodes of its task (`None` without a
/// modulator).
fn modulator_use(
    model: &PlasticNet,
    config: &SingleLayerConfig,
    episodes: usize,
    device: &burn::tensor::Device,
) -> Option<ModulatorUse> {
    let layer = &model.plastic;
    let (w_m, b_m) = (layer.w_m.as_ref()?, layer.b_m.as_ref()?);
    let task = config.task();
    let batch = task.generate(config.seed, Stream::Eval, 0, episodes);
    let (ys, _) = layer.unroll(batch.input_tensor(device));
    let host = |t: burn::tensor::Tensor<2>| -> Vec<f64> {
        t.into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("float tensor")
    };
    let by_step: Vec<Vec<f64>> = ys
        .into_iter()
        .map(|y| host((y.matmul(w_m.val()) + b_m.val().unsqueeze::<2>()).tanh()))
        .collect();
    let count = (by_step.len() * episodes).max(1) as f64;
    let negative = by_step.iter().flatten().filter(|m| **m < 0.0).count() as f64;
    Some(ModulatorUse {
        kind: layer.modulation.name().to_string(),
        w_m: host(w_m.val()),
        b_m: host(b_m.val().unsqueeze::<2>())[0],
        mean_by_step: by_step
            .iter()
            .map(|m| m.iter().sum::<f64>() / m.len().max(1) as f64)
            .collect(),
        negative_fraction: negative / count,
    })
}

fn strength(cells: &[(f64, f64, f64)]) -> Strength {
    let n = cells.len().max(1) as f64;
    Strength {
        fixed: cells.iter().map(|c| c.0.abs()).sum::<f64>() / n,
        plastic: cells.iter().map(|c| c.2).sum::<f64>() / n,
        alpha_mean: cells.iter().map(|c| c.1).sum::<f64>() / n,
        alpha_negative_fraction: cells.iter().filter(|c| c.1 < 0.0).count() as f64 / n,
        // (`+ 0.0` turns the empty sum's -0.0 into 0.0.)
        alpha_negative_mass_share: cells
            .iter()
            .filter(|c| c.1 < 0.0)
            .map(|c| -c.1)
            .sum::<f64>()
            / cells
                .iter()
                .map(|c| c.1.abs())
                .sum::<f64>()
                .max(f64::MIN_POSITIVE)
            + 0.0,
        plastic_negative_share: cells.iter().filter(|c| c.1 < 0.0).map(|c| c.2).sum::<f64>()
            / cells
                .iter()
                .map(|c| c.2)
                .sum::<f64>()
                .max(f64::MIN_POSITIVE)
            + 0.0,
    }
}

/// Mean over `episodes` fresh episodes of `|α ⊙ H(T-1)|`, the plastic weights read by the last
/// step, `[n_in * n_out]`.
fn plastic_weights(
    model: &PlasticNet,
    config: &SingleLayerConfig,
    episodes: usize,
    device: &burn::tensor::Device,
) -> Vec<f64> {
    let task = config.task();
    let batch = task.generate(config.seed, Stream::Eval, 0, episodes);
    let inputs = batch.input_tensor(device).narrow(0, 0, task.steps - 1);
    let (_, trace) = model.forward(inputs);
    let alpha = model.plastic.alpha.val().unsqueeze::<3>();
    let effective = (trace.h * alpha).abs().mean_dim(0);
    effective
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("float tensor")
}

/// Measures the structure of `model` (trained for `config`).
pub fn structure(
    model: &PlasticNet,
    config: &SingleLayerConfig,
    episodes: usize,
    device: &burn::tensor::Device,
) -> Structure {
    let values = model.parameter_values();
    let w = &values[0].1;
    let alpha = &values[1].1;
    let plastic = plastic_weights(model, config, episodes, device);
    let (n_in, n_out) = (model.plastic.n_in(), model.plastic.n_out());
    let cell = |k: usize, j: usize| {
        (
            w[k * n_out + j],
            alpha[k * n_out + j],
            plastic[k * n_out + j],
        )
    };
    let task = config.task();
    let mut s = Structure {
        task: task.kind.to_string(),
        episodes,
        own: None,
        others: None,
        hidden: Vec::new(),
        pattern: None,
        label: None,
        modulator: modulator_use(model, config, episodes, device),
    };
    if task.kind == TaskKind::Completion {
        let own: Vec<_> = (0..n_in).map(|k| cell(k, k)).collect();
        let others: Vec<_> = (0..n_in)
            .flat_map(|k| (0..n_out).filter(move |j| *j != k).map(move |j| (k, j)))
            .map(|(k, j)| cell(k, j))
            .collect();
        s.own = Some(strength(&own));
        s.others = Some(strength(&others));
    } else {
        let bits = task.pattern_bits;
        let pattern_cells = |j: usize| (0..bits).map(|k| cell(k, j)).collect::<Vec<_>>();
        let label_cells = |j: usize| (bits..n_in).map(|k| cell(k, j)).collect::<Vec<_>>();
        s.hidden = (0..n_out)
            .map(|j| HiddenUnit {
                pattern: strength(&pattern_cells(j)),
                label: strength(&label_cells(j)),
            })
            .collect();
        s.pattern = Some(strength(
            &(0..n_out).flat_map(pattern_cells).collect::<Vec<_>>(),
        ));
        s.label = Some(strength(
            &(0..n_out).flat_map(label_cells).collect::<Vec<_>>(),
        ));
    }
    s
}

impl Structure {
    /// The summary as text.
    pub fn text(&self) -> String {
        let line = |name: &str, s: &Strength| {
            format!(
                "  {name:<24} fixed |w| {:>7.3}  plastic |α·H| {:>7.3}  α mean {:>7.3}, {:>3.0}% of α < 0 \
                 holding {:>3.0}% of |α| and {:>3.0}% of |α·H|\n",
                s.fixed,
                s.plastic,
                s.alpha_mean,
                100.0 * s.alpha_negative_fraction,
                100.0 * s.alpha_negative_mass_share,
                100.0 * s.plastic_negative_share
            )
        };
        let mut out = format!(
            "{}: learned structure (plastic weights |α·H| averaged over {} fresh episodes, at the last step)\n",
            self.task, self.episodes
        );
        if let (Some(own), Some(others)) = (&self.own, &self.others) {
            out += &line("input -> own output", own);
            out += &line("input -> other outputs", others);
        }
        for (j, unit) in self.hidden.iter().enumerate() {
            out += &line(&format!("pattern bits -> hidden {j}"), &unit.pattern);
            out += &line(&format!("label bits -> hidden {j}"), &unit.label);
        }
        if let (Some(p), Some(l)) = (&self.pattern, &self.label) {
            out += &line("all pattern bits", p);
            out += &line("all label bits", l);
        }
        if let Some(m) = &self.modulator {
            let steps: Vec<String> = m.mean_by_step.iter().map(|v| format!("{v:.2}")).collect();
            out += &format!(
                "  modulator ({}): M(t) < 0 in {:.0}% of steps; mean M(t) by step [{}]\n",
                m.kind,
                100.0 * m.negative_fraction,
                steps.join(", ")
            );
        }
        out
    }
}

/// Loads a finished run's model (on its config's device and dtype).
pub fn load_run_model(
    run: &RunDir,
) -> Result<(SingleLayerConfig, PlasticNet, burn::tensor::Device)> {
    run.verify_finished()?;
    let config = bohp::single::config::SingleLayerConfig::of_run(run)?;
    let device = init_device(config.device, config.dtype)?;
    let model = load_model(init_model(&config, &device), &run.model_path(), None)?.valid();
    Ok((config, model, device))
}

/// `bohp inspect`: writes `weights.png` and `structure.json` to `out` and returns the
/// structure.
pub fn inspect(run_dir: &Path, out: &Path, episodes: usize) -> Result<Structure> {
    let run = RunDir::open(run_dir)?;
    let (config, model, device) = load_run_model(&run)?;
    let s = structure(&model, &config, episodes, &device);
    std::fs::create_dir_all(out).map_err(|e| {
        anyhow::anyhow!("{}: cannot create the output directory: {e}", out.display())
    })?;
    let values = model.parameter_values();
    let plastic = plastic_weights(&model, &config, episodes, &device);
    let task = config.task();
    let (n_in, n_out) = (model.plastic.n_in(), model.plastic.n_out());
    let rows: Vec<String> = (0..n_in)
        .map(|k| {
            if task.kind == TaskKind::Completion || k < task.pattern_bits {
                format!("x{}", k + 1)
            } else {
                format!("L{}", k - task.pattern_bits + 1)
            }
        })
        .collect();
    let cols: Vec<String> = (0..n_out)
        .map(|j| {
            if task.kind == TaskKind::Completion {
                format!("y{}", j + 1)
            } else {
                format!("h{}", j + 1)
            }
        })
        .collect();
    heatmaps(
        &out.join("weights.png"),
        &format!(
            "{}: learned weights (rows: inputs, columns: outputs)",
            task.kind
        ),
        &[
            Matrix {
                title: "fixed w",
                values: &values[0].1,
                rows: &rows,
                cols: &cols,
            },
            Matrix {
                title: "plasticity α",
                values: &values[1].1,
                rows: &rows,
                cols: &cols,
            },
            Matrix {
                title: "mean |α·H| at last step",
                values: &plastic,
                rows: &rows,
                cols: &cols,
            },
        ],
    )?;
    let json = serde_json::to_vec_pretty(&s)?;
    std::fs::write(out.join("structure.json"), json)
        .map_err(|e| anyhow::anyhow!("{}: cannot write structure.json: {e}", out.display()))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_of_known_cells() {
        // (w, α, |α·H|): three connections, one with α < 0 carrying most of |α|.
        let s = strength(&[(1.0, -3.0, 0.2), (-2.0, 1.0, 0.6), (0.5, 0.0, 0.0)]);
        assert!((s.fixed - 3.5 / 3.0).abs() < 1e-12);
        assert!((s.plastic - 0.8 / 3.0).abs() < 1e-12);
        assert!((s.alpha_mean + 2.0 / 3.0).abs() < 1e-12);
        assert!((s.alpha_negative_fraction - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.alpha_negative_mass_share - 0.75).abs() < 1e-12);
        assert!((s.plastic_negative_share - 0.25).abs() < 1e-12);
        // No plasticity at all: shares are 0, not NaN.
        let none = strength(&[(1.0, 0.0, 0.0)]);
        assert_eq!(
            (none.alpha_negative_mass_share, none.plastic_negative_share),
            (0.0, 0.0)
        );
    }
}

/// The learned structure of a recurrent plastic network (`bohp inspect` on a recurrent run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrentStructure {
    /// Neurons `N`.
    pub neurons: usize,
    /// The trace's rule.
    pub rule: String,
    /// The learned plasticity rate `η`.
    pub eta: f64,
    /// Mean `|W_ij|`.
    pub w_mean_abs: f64,
    /// Mean `|α_ij|` (or the shared `|α|`).
    pub alpha_mean_abs: f64,
    /// Fraction of the `α_ij` below zero.
    pub alpha_negative_fraction: f64,
    /// Mean `|α_ij · H_ij|` read by the last step of one held-out episode (the probe).
    pub plastic_mean_abs: f64,
}

impl RecurrentStructure {
    /// The structure in words.
    pub fn text(&self) -> String {
        format!(
            "recurrent network, {} neurons, rule {}, eta {:.4}\n  mean |W| {:.4e}, mean |alpha| {:.4e} ({:.1}% negative), mean |alpha . H| at the probe {:.4e}\n",
            self.neurons,
            self.rule,
            self.eta,
            self.w_mean_abs,
            self.alpha_mean_abs,
            100.0 * self.alpha_negative_fraction,
            self.plastic_mean_abs
        )
    }
}

/// `bohp inspect` on a recurrent run: `weights.png` (images of `W`, `α` and `α ⊙ H` at the
/// probe of one held-out episode) and `structure.json` in `out`.
pub fn inspect_recurrent(run_dir: &Path, out: &Path) -> Result<RecurrentStructure> {
    use bohp::registry::{TrainedModel, load_trained};
    let (model, config) = match load_trained(run_dir)? {
        TrainedModel::Recurrent(model, config) => (model, config),
        TrainedModel::Lstm(..) => anyhow::bail!(
            "{}: an LSTM run has no W, α or trace to inspect (`bohp eval` and `bohp export` read it)",
            run_dir.display()
        ),
        TrainedModel::Single(..) | TrainedModel::ActorCritic(..) | TrainedModel::FewShot(..) => {
            unreachable!("the caller routes the other families' runs")
        }
    };
    let host = |t: burn::tensor::Tensor<2>| {
        t.into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64")
    };
    let rnn = config.plastic_rnn();
    let n = rnn.neurons;
    let mut values = vec![
        host(model.w.val()),
        host(model.alpha.val()),
        host(model.eta.val().unsqueeze::<2>()),
    ];
    if let (Some(w_m), Some(b_m)) = (&model.w_m, &model.b_m) {
        values.push(host(w_m.val()));
        values.push(host(b_m.val().unsqueeze::<2>()));
    }
    let net = rnn.host::<f64>(&values);
    // One held-out episode, its outputs, and the trace H(T-1) that the last step reads.
    let batch = config.task()?.batch(config.seed, Stream::Eval, 0, 1, n);
    let arrays = batch.to_host::<f64>();
    let ep = arrays.episodes();
    // The trace after step T-1, which the last step reads (zero without plasticity).
    let states = net.episode_states(&ep);
    let h = match batch.steps {
        0 | 1 => vec![0.0; n * n],
        steps => states.traces[(steps - 2) * n * n..(steps - 1) * n * n].to_vec(),
    };
    let alpha = |ij: usize| {
        if net.alpha.len() == 1 {
            net.alpha[0]
        } else {
            net.alpha[ij]
        }
    };
    let plastic: Vec<f64> = (0..n * n).map(|ij| alpha(ij) * h[ij]).collect();
    let alpha_full: Vec<f64> = (0..n * n).map(alpha).collect();
    let mean_abs = |v: &[f64]| v.iter().map(|x| x.abs()).sum::<f64>() / v.len().max(1) as f64;
    let s = RecurrentStructure {
        neurons: n,
        rule: match &net.modulator {
            Some(m) => format!("{} with {} modulation", net.rule, m.modulation),
            None => net.rule.to_string(),
        },
        eta: net.eta,
        w_mean_abs: mean_abs(&net.w),
        alpha_mean_abs: mean_abs(&net.alpha),
        alpha_negative_fraction: net.alpha.iter().filter(|a| **a < 0.0).count() as f64
            / net.alpha.len() as f64,
        plastic_mean_abs: mean_abs(&plastic),
    };
    std::fs::create_dir_all(out).map_err(|e| {
        anyhow::anyhow!("{}: cannot create the output directory: {e}", out.display())
    })?;
    crate::figures::matrix_images(
        &out.join("weights.png"),
        &format!(
            "{}: learned weights (row i: presynaptic, column j: postsynaptic)",
            config.task.kind.name()
        ),
        &[
            ("fixed W", &net.w, n),
            ("plasticity α", &alpha_full, n),
            ("plastic weights α·H at the probe", &plastic, n),
        ],
    )?;
    let json = serde_json::to_vec_pretty(&s)?;
    bohp::run::write_atomic(&out.join("structure.json"), &json)?;
    Ok(s)
}
