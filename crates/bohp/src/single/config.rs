//! Run configuration: the TOML files in `configs/`, their defaults and their validation.
//!
//! Unknown keys and wrong types are rejected while reading (naming the key); out-of-range or
//! inconsistent values are rejected by [`SingleLayerConfig::validate`] (naming the field and what was
//! expected). A run directory keeps the fully resolved config, defaults written out.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::device::{Backend, Precision};
use crate::error::{Error, Result};
use crate::layer::PlasticLayerConfig;
use crate::memory::Estimate;
use crate::rules::{Modulation, Rule};
use crate::single::network::PlasticNetConfig;
use crate::single::tasks::{LABELLED_STEPS, N_LABELS, Task, TaskKind};

/// A whole run: task, model, training schedule, device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleLayerConfig {
    /// Seed of every random stream (initial parameters, episodes).
    #[serde(default)]
    pub seed: u64,
    /// Compute backend.
    #[serde(default)]
    pub device: Backend,
    /// Float precision.
    #[serde(default)]
    pub dtype: Precision,
    /// The task.
    pub task: TaskConfig,
    /// The network.
    pub model: ModelConfig,
    /// The training schedule.
    pub train: SingleLayerTrainConfig,
}

/// `[task]`: which task, and its sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// `completion`, `one-shot` or `reversal`.
    pub kind: TaskKind,
    /// Pattern length (8 in the paper).
    #[serde(default = "default_pattern_bits")]
    pub pattern_bits: usize,
    /// Steps per episode of the labelled tasks (20 in the paper). Completion episodes are
    /// always 2 steps; giving `steps` for completion is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
}

/// `[model]`: the plastic network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Trace rate γ of Eq. 1, in (0, 1]; the original code's `ALPHATRACE` is `1 - γ`.
    pub gamma: f64,
    /// Hidden (plastic) units of the labelled tasks (2 in the paper). For completion the
    /// plastic layer's outputs are the pattern; giving `hidden` there is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    /// Standard deviation of the Gaussian initial parameters.
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// `learned`, `none` (α fixed at zero) or `nonnegative` (α clipped to ≥ 0).
    #[serde(default)]
    pub plasticity: Plasticity,
    /// The trace's rule: `hebb` (Eq. 1, the default), `oja` or `clipped` (rate γ for each).
    #[serde(default)]
    pub rule: Rule,
    /// The bound `c` of the `clipped` rule (default 1); only with `rule = "clipped"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<f64>,
    /// A modulator neuron `M(t) = tanh(y(t)·w_M + b_M)` (the 2019 paper's): `none` (the
    /// default), `simple` (`M(t)` is the rule's rate instead of γ) or `retroactive` (needs
    /// `rule = "clipped"`: `M(t)` moves an eligibility trace of rate γ into the clipped `H`).
    #[serde(default, skip_serializing_if = "is_unmodulated")]
    pub modulation: Modulation,
}

pub use crate::schema::{
    Engine, GPU_READBACK_EVERY, LrSchedule, OptimizerKind, Plasticity, TrainConfig,
};
use crate::schema::{
    FamilyKey, TrainFamily, check_modulation, check_rule, is_unmodulated, parse_toml, rule_spec,
};

/// `[train]` of a single-layer run: [`crate::schema::TrainConfig`] with this family's
/// defaults (batch 1, a checkpoint every 500 updates, the autodiff engine).
pub(crate) type SingleLayerTrainConfig = TrainConfig<SingleLayerTraining>;

/// The single layer's `[train]` defaults and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleLayerTraining;

impl TrainFamily for SingleLayerTraining {
    const NAME: &'static str = "the single layer";
    const ENGINES: &'static [Engine] = &[Engine::Autodiff, Engine::Analytic, Engine::Fused];
    const KEYS: &'static [FamilyKey] = &[FamilyKey::FreezeLast, FamilyKey::ReadbackEvery];
    fn batch() -> usize {
        1
    }
    fn checkpoint_every() -> usize {
        500
    }
    fn engine() -> Engine {
        Engine::default()
    }
}

fn default_pattern_bits() -> usize {
    8
}
fn default_init_std() -> f64 {
    0.1
}

/// Default steps of a labelled episode.
pub(crate) const DEFAULT_STEPS: usize = 20;
/// Default hidden units of the labelled tasks.
pub(crate) const DEFAULT_HIDDEN: usize = 2;

impl SingleLayerConfig {
    /// Reads and validates the config of the run in `run`.
    pub fn of_run(run: &crate::run::RunDir) -> Result<SingleLayerConfig> {
        SingleLayerConfig::load(&run.config_path())
    }

    /// Writes the config as the run's `config.toml`.
    pub fn write_to(&self, run: &crate::run::RunDir) -> Result<()> {
        crate::run::write_atomic(&run.config_path(), self.to_toml().as_bytes())
    }

    /// Reads and validates a config file. Errors name the file and the field.
    pub fn load(path: &Path) -> Result<SingleLayerConfig> {
        crate::schema::load_config(path, SingleLayerConfig::validate, |c| c.train.resolve())
    }

    /// Parses TOML text (not validated); `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<SingleLayerConfig> {
        parse_toml(text, path)
    }

    /// The config as TOML (defaults written out).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a SingleLayerConfig always serializes")
    }

    /// Checks ranges and consistency. `source` names where the values came from, for errors.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = crate::schema::value_error(source);
        let task = &self.task;
        crate::schema::bounds::check(
            &bad,
            "single-layer",
            &[
                ("task.pattern_bits", Some(task.pattern_bits)),
                ("task.steps", task.steps),
                ("model.hidden", self.model.hidden),
            ],
        )?;
        if task.pattern_bits == 0 {
            return Err(bad("task.pattern_bits", "0".into(), "expected at least 1"));
        }
        match (task.kind, task.steps) {
            (TaskKind::Completion, Some(steps)) => {
                return Err(bad(
                    "task.steps",
                    steps.to_string(),
                    "does not apply to task `completion` (its episodes are always 2 steps); remove it",
                ));
            }
            (TaskKind::OneShot, Some(steps)) if steps <= LABELLED_STEPS => {
                return Err(bad(
                    "task.steps",
                    steps.to_string(),
                    "expected at least 3 for `one-shot` (2 labelled steps, then scored ones)",
                ));
            }
            (TaskKind::Reversal, Some(steps)) if steps < 6 || steps % 2 != 0 => {
                return Err(bad(
                    "task.steps",
                    steps.to_string(),
                    "expected an even number of at least 6 for `reversal` (labels swap at steps/2)",
                ));
            }
            _ => {}
        }
        let model = &self.model;
        if !(model.gamma > 0.0 && model.gamma <= 1.0) {
            return Err(bad(
                "model.gamma",
                model.gamma.to_string(),
                "expected 0 < gamma <= 1 (the trace rate of Eq. 1)",
            ));
        }
        match (task.kind, model.hidden) {
            (TaskKind::Completion, Some(hidden)) => {
                return Err(bad(
                    "model.hidden",
                    hidden.to_string(),
                    "does not apply to task `completion` (its plastic layer outputs the pattern); remove it",
                ));
            }
            (_, Some(0)) => return Err(bad("model.hidden", "0".into(), "expected at least 1")),
            _ => {}
        }
        check_rule(&bad, model.rule, model.clip)?;
        check_modulation(
            &bad,
            model.modulation,
            model.rule,
            (
                model.plasticity != Plasticity::None,
                "plasticity = \"none\"",
            ),
        )?;
        if !(model.init_std.is_finite() && model.init_std >= 0.0) {
            return Err(bad(
                "model.init_std",
                model.init_std.to_string(),
                "expected a finite value >= 0",
            ));
        }
        self.train.check(&bad)?;
        if let Some(available) = crate::memory::available_bytes() {
            self.check_memory(&bad, available)?;
        }
        Ok(())
    }

    /// After `train.episodes` changed from `configured` (a `--episodes` override), the frozen
    /// phase keeps its share of the run: `train.freeze_last` scales by `episodes / configured`,
    /// rounded. Returns what changed, in words for the user.
    pub fn scale_frozen_phase(&mut self, configured: usize) -> Option<String> {
        let (episodes, freeze) = (self.train.episodes, self.train.freeze_last);
        if episodes == configured || freeze == 0 || configured == 0 {
            return None;
        }
        let scaled = ((freeze as f64) * (episodes as f64) / (configured as f64)).round() as usize;
        self.train.freeze_last = scaled;
        Some(format!(
            "--episodes {episodes}: train.freeze_last scaled from {freeze} to {scaled} (the same share of the run as {freeze} of {configured}); \
             {} training updates, then {scaled} frozen",
            episodes - scaled.min(episodes)
        ))
    }

    /// The least memory this config needs to train ([`crate::memory`]): the plastic layer's
    /// and readout's parameters with Adam's two moments (and a host engine's f64 host
    /// copies), and one trace `[n_in, n_out]` per step and episode of a batch, which
    /// backpropagation keeps.
    pub(crate) fn memory_estimate(&self) -> Estimate {
        let task = self.task();
        let n_in = task.n_in() as f64;
        let (n_out, classes) = match task.kind {
            TaskKind::Completion => (task.pattern_bits as f64, 0.0),
            _ => (
                self.model.hidden.unwrap_or(DEFAULT_HIDDEN) as f64,
                N_LABELS as f64,
            ),
        };
        let float = match self.dtype {
            Precision::F32 => 4.0,
            Precision::F64 => 8.0,
        };
        let modulated = self.model.modulation != Modulation::None;
        let params = 2.0 * n_in * n_out
            + n_out
            + classes * (n_out + 1.0)
            + if modulated { n_out + 1.0 } else { 0.0 };
        // Retroactive modulation keeps an eligibility trace beside H.
        let traces_per_step = if self.model.modulation == Modulation::Retroactive {
            2.0
        } else {
            1.0
        };
        let host = if self.train.engine != Engine::Autodiff {
            3.0 * 8.0
        } else {
            0.0
        };
        let size_field = match task.kind {
            TaskKind::Completion => "task.pattern_bits",
            _ if n_out >= n_in => "model.hidden",
            _ => "task.pattern_bits",
        };
        let mut e = Estimate::default();
        e.add(
            size_field,
            "parameters and Adam state",
            params * (3.0 * float + host),
        );
        if modulated && self.train.engine == Engine::Analytic {
            // The forward-mode recursion of a modulated layer carries every trace entry's
            // tangent for every parameter (f64).
            e.add(
                size_field,
                "forward-mode tangents of the modulated traces (analytic engine)",
                traces_per_step * n_in * n_out * (2.0 * n_in * n_out + 2.0 * n_out + 1.0) * 8.0,
            );
        }
        let traces =
            traces_per_step * task.steps as f64 * self.train.batch as f64 * n_in * n_out * float;
        e.add(
            if self.train.batch >= task.steps {
                "train.batch"
            } else {
                "task.steps"
            },
            "one trace per step and episode",
            traces,
        );
        e
    }

    fn check_memory(
        &self,
        bad: &dyn Fn(&str, String, &str) -> Error,
        available: f64,
    ) -> Result<()> {
        let with = |f: &dyn Fn(&mut SingleLayerConfig)| {
            let mut c = self.clone();
            f(&mut c);
            c.memory_estimate()
        };
        let candidates = [
            (
                "task.pattern_bits",
                with(&|c| c.task.pattern_bits = default_pattern_bits()),
            ),
            ("model.hidden", with(&|c| c.model.hidden = None)),
            (
                "train.batch",
                with(&|c| c.train.batch = SingleLayerTraining::batch()),
            ),
            ("task.steps", with(&|c| c.task.steps = None)),
        ];
        crate::memory::check_sizes(&self.memory_estimate(), &candidates, available).map_err(
            |(field, expected)| {
                let value = match field {
                    "task.pattern_bits" => self.task.pattern_bits.to_string(),
                    "model.hidden" => self.model.hidden.unwrap_or(DEFAULT_HIDDEN).to_string(),
                    "train.batch" => self.train.batch.to_string(),
                    _ => self.task().steps.to_string(),
                };
                bad(field, value, &expected)
            },
        )
    }

    /// The task with its resolved sizes.
    pub fn task(&self) -> Task {
        let steps = match self.task.kind {
            TaskKind::Completion => 2,
            _ => self.task.steps.unwrap_or(DEFAULT_STEPS),
        };
        Task {
            kind: self.task.kind,
            pattern_bits: self.task.pattern_bits,
            steps,
        }
    }

    /// The network's sizes and options.
    pub fn network(&self) -> PlasticNetConfig {
        let task = self.task();
        let (n_out, classes) = match task.kind {
            TaskKind::Completion => (task.pattern_bits, None),
            _ => (self.model.hidden.unwrap_or(DEFAULT_HIDDEN), Some(N_LABELS)),
        };
        PlasticNetConfig {
            layer: PlasticLayerConfig::new(task.n_in(), n_out, self.model.gamma)
                .with_init_std(self.model.init_std)
                .with_plastic(self.model.plasticity != Plasticity::None)
                .with_nonnegative_alpha(self.model.plasticity == Plasticity::Nonnegative)
                .with_rule(rule_spec(self.model.rule, self.model.clip))
                .with_modulation(self.model.modulation),
            classes,
        }
    }

    /// The learning rate of training episode `episode`.
    pub fn learning_rate(&self, episode: usize) -> f64 {
        self.train.learning_rate_at(episode)
    }

    /// The index of the first frozen episode.
    pub fn first_frozen(&self) -> usize {
        self.train.first_frozen()
    }

    /// Updates between metric readbacks (`train.readback_every`, or its device default).
    pub fn readback_every(&self) -> usize {
        self.train
            .readback_every
            .unwrap_or(if self.device.is_gpu() {
                GPU_READBACK_EVERY
            } else {
                1
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSpec;
    use std::path::PathBuf;

    const ONE_SHOT: &str = r#"
seed = 3
[task]
kind = "one-shot"
[model]
gamma = 0.02
[train]
episodes = 100
learning_rate = 0.01
freeze_last = 10
"#;

    fn parse(text: &str) -> Result<SingleLayerConfig> {
        let config = SingleLayerConfig::parse(text, &PathBuf::from("test.toml"))?;
        config.validate("test.toml")?;
        Ok(config)
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .expect_err("config must be rejected")
            .to_string()
    }

    #[test]
    fn defaults_fill_in_and_round_trip() {
        let config = parse(ONE_SHOT).unwrap();
        assert_eq!(config.task().steps, 20);
        assert_eq!(config.task().n_in(), 10);
        assert_eq!(config.network().layer.n_out, 2);
        assert_eq!(config.train.batch, 1);
        assert_eq!(config.first_frozen(), 90);
        let again = parse(&config.to_toml()).unwrap();
        assert_eq!(config, again);
    }

    #[test]
    fn schedules_decay_from_the_learning_rate_to_the_minimum_at_the_frozen_phase() {
        let mut config = parse(ONE_SHOT).unwrap(); // lr 0.01, first frozen episode 90
        assert_eq!(config.learning_rate(50), 0.01);
        config.train.min_learning_rate = 0.002;
        config.train.lr_schedule = LrSchedule::Linear;
        // halfway (episode 45 of 90): 0.01 + (0.002 - 0.01) / 2 = 0.006
        assert!((config.learning_rate(45) - 0.006).abs() < 1e-15);
        assert!((config.learning_rate(90) - 0.002).abs() < 1e-15);
        config.train.lr_schedule = LrSchedule::Cosine;
        assert!((config.learning_rate(0) - 0.01).abs() < 1e-15);
        assert!((config.learning_rate(45) - 0.006).abs() < 1e-15);
        assert!((config.learning_rate(90) - 0.002).abs() < 1e-15);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = error_of(&ONE_SHOT.replace("learning_rate", "lr"));
        assert!(e.contains("test.toml") && e.contains("lr"), "{e}");
        let e = error_of(&format!("{ONE_SHOT}\nextra = 1\n"));
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = error_of(&ONE_SHOT.replace("episodes = 100", "episodes = \"many\""));
        assert!(e.contains("train.episodes") && e.contains("usize"), "{e}");
        let e = error_of(&ONE_SHOT.replace("gamma = 0.02", "gamma = true"));
        assert!(e.contains("model.gamma"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = error_of(&ONE_SHOT.replace("gamma = 0.02", ""));
        assert!(e.contains("gamma"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (from, to, field) in [
            ("gamma = 0.02", "gamma = 1.5", "model.gamma"),
            ("gamma = 0.02", "gamma = 0.0", "model.gamma"),
            ("gamma = 0.02", "gamma = nan", "model.gamma"),
            ("episodes = 100", "episodes = 0", "train.episodes"),
            (
                "learning_rate = 0.01",
                "learning_rate = -0.1",
                "train.learning_rate",
            ),
            (
                "learning_rate = 0.01",
                "learning_rate = 0.0",
                "train.learning_rate",
            ),
            ("freeze_last = 10", "freeze_last = 101", "train.freeze_last"),
            ("[model]", "[model]\nhidden = 0", "model.hidden"),
            ("[task]", "[task]\npattern_bits = 0", "task.pattern_bits"),
            ("[task]", "[task]\nsteps = 2", "task.steps"),
            ("[train]", "[train]\nbatch = 0", "train.batch"),
            // The original procedure's keys: only with it, in range, MAXDW required.
            ("[train]", "[train]\nmax_change = 0.01", "train.max_change"),
            ("[train]", "[train]\nl1 = 0.001", "train.l1"),
            (
                "[train]",
                "[train]\noptimizer = \"original\"",
                "train.max_change",
            ),
            (
                "[train]",
                "[train]\noptimizer = \"original\"\nmax_change = 0.0",
                "train.max_change",
            ),
            (
                "[train]",
                "[train]\noptimizer = \"original\"\nmax_change = 0.01\nl2 = -1.0",
                "train.l2",
            ),
            (
                "[train]",
                "[train]\noptimizer = \"original\"\nmax_change = 0.01\nrmsprop_rate = 1.5",
                "train.rmsprop_rate",
            ),
            (
                "[train]",
                "[train]\nclip_grad_norm = 0.0",
                "train.clip_grad_norm",
            ),
            (
                "[train]",
                "[train]\nmin_learning_rate = 0.1",
                "train.min_learning_rate",
            ),
            (
                "[train]",
                "[train]\nmin_learning_rate = -1.0",
                "train.min_learning_rate",
            ),
            (
                "[train]",
                "[train]\nreadback_every = 0",
                "train.readback_every",
            ),
            ("[train]", "[train]\nadam_beta2 = 1.0", "train.adam_beta2"),
            ("[train]", "[train]\nadam_beta1 = -0.1", "train.adam_beta1"),
        ] {
            let e = error_of(&ONE_SHOT.replace(from, to));
            assert!(e.contains(field) && e.contains("test.toml"), "{to}: {e}");
        }
    }

    #[test]
    fn unknown_device_and_task_are_named() {
        let e = error_of(&format!("device = \"tpu\"\n{ONE_SHOT}"));
        assert!(e.contains("device") && e.contains("ndarray"), "{e}");
        let e = error_of(&ONE_SHOT.replace("one-shot", "two-shot"));
        assert!(e.contains("task.kind") && e.contains("completion"), "{e}");
        let e = error_of(&format!("dtype = \"f16\"\n{ONE_SHOT}"));
        assert!(e.contains("dtype"), "{e}");
    }

    #[test]
    fn options_that_do_not_apply_are_rejected() {
        let completion = ONE_SHOT.replace("one-shot", "completion");
        let e = error_of(&completion.replace("[task]", "[task]\nsteps = 20"));
        assert!(e.contains("task.steps") && e.contains("completion"), "{e}");
        let e = error_of(&completion.replace("[model]", "[model]\nhidden = 4"));
        assert!(e.contains("model.hidden"), "{e}");
        let reversal = ONE_SHOT.replace("one-shot", "reversal");
        let e = error_of(&reversal.replace("[task]", "[task]\nsteps = 7"));
        assert!(e.contains("task.steps") && e.contains("even"), "{e}");
    }

    #[test]
    fn rules_and_their_clip_are_checked() {
        let e = error_of(&ONE_SHOT.replace("[model]", "[model]\nclip = 0.5"));
        assert!(e.contains("model.clip") && e.contains("clipped"), "{e}");
        for bad in ["0.0", "-2.0", "nan"] {
            let e = error_of(&ONE_SHOT.replace(
                "[model]",
                &format!("[model]\nrule = \"clipped\"\nclip = {bad}"),
            ));
            assert!(e.contains("model.clip") && e.contains("> 0"), "{bad}: {e}");
        }
        let e = error_of(&ONE_SHOT.replace("[model]", "[model]\nrule = \"bcm\""));
        assert!(e.contains("model.rule") && e.contains("oja"), "{e}");
        let c =
            parse(&ONE_SHOT.replace("[model]", "[model]\nrule = \"clipped\"\nclip = 0.5")).unwrap();
        assert_eq!(
            c.network().layer.rule,
            RuleSpec {
                rule: Rule::Clipped,
                clip: 0.5
            }
        );
        let c = parse(&ONE_SHOT.replace("[model]", "[model]\nrule = \"oja\"")).unwrap();
        assert_eq!(c.network().layer.rule, RuleSpec::new(Rule::Oja));
    }

    #[test]
    fn the_modulator_is_checked() {
        let with = |lines: &str| ONE_SHOT.replace("[model]", &format!("[model]\n{lines}"));
        let e = error_of(&with("modulation = \"retroactive\""));
        assert!(e.contains("model.rule") && e.contains("clipped"), "{e}");
        let e = error_of(&with("modulation = \"simple\"\nplasticity = \"none\""));
        assert!(
            e.contains("model.modulation") && e.contains("plasticity"),
            "{e}"
        );
        let e = error_of(&with("modulation = \"always\""));
        assert!(e.contains("modulation") && e.contains("retroactive"), "{e}");
        let c = parse(&with("modulation = \"retroactive\"\nrule = \"clipped\"")).unwrap();
        assert_eq!(c.network().layer.modulation, Modulation::Retroactive);
        // Written out only when set, so unmodulated configs read back unchanged.
        assert!(c.to_toml().contains("modulation = \"retroactive\""));
        assert!(!parse(ONE_SHOT).unwrap().to_toml().contains("modulation"));
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let e = error_of("seed = = 3");
        assert!(e.contains("test.toml") && e.contains("invalid TOML"), "{e}");
    }
}
