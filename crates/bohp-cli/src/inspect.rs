//! `bohp inspect`: a trained network's learned structure, as the paper describes it
//! (Figs. 2b-4b): heatmaps of `w`, `α` and the plastic weights `α ⊙ H`, and numbers that
//! quantify fixed vs plastic connectivity.
//!
//! Raw `|α|` and `|w|` are not comparable (the plastic weight is `α · H`, and `H` is of order
//! γ), so the plastic side is measured as the *effective plastic weight* `|α_kj · H_kj|` that
//! the last step of an episode reads, averaged over fresh episodes.

use std::path::Path;

use anyhow::Result;
use bohp::config::RunConfig;
use bohp::device::init_device;
use bohp::network::PlasticNet;
use bohp::rng::Stream;
use bohp::run::{RunDir, load_model};
use bohp::tasks::TaskKind;
use bohp::train::init_model;
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
    config: &RunConfig,
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
    config: &RunConfig,
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
        out
    }
}

/// Loads a finished run's model (on its config's device and dtype).
pub fn load_run_model(run: &RunDir) -> Result<(RunConfig, PlasticNet, burn::tensor::Device)> {
    let config = run.read_config()?;
    let device = init_device(config.device, config.dtype)?;
    let path = run.model_path();
    if !path.is_file() {
        anyhow::bail!(
            "{}: no final model: the run has not finished (resume it with `bohp train --resume {}`)",
            path.display(),
            run.path().display()
        );
    }
    let model = load_model(init_model(&config, &device), &path, None)?.valid();
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
