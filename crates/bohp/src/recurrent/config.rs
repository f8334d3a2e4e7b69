//! Configs of recurrent runs (`configs/memorisation*.toml`, `configs/images*.toml`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::images;
use super::model::{LstmNet, PlasticRnnConfig};
use super::tasks::{ImageSource, RecurrentTask, RecurrentTaskKind};
use crate::device::{Backend, Precision};
use crate::error::Result;
use crate::rules::{Modulation, Rule};
pub use crate::schema::TrainConfig;
use crate::schema::{
    Engine, FamilyKey, Plasticity, TrainFamily, check_modulation, check_rule, is_unmodulated,
    parse_toml, rule_spec,
};

/// A recurrent run: task, model, training, device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrentConfig {
    /// Seed of every random stream.
    #[serde(default)]
    pub seed: u64,
    /// Compute backend of the `autodiff` engine (the `fused` engine runs on the host CPU).
    #[serde(default)]
    pub device: Backend,
    /// Float precision.
    #[serde(default)]
    pub dtype: Precision,
    /// The task.
    pub task: RecurrentTaskConfig,
    /// The network.
    pub model: RecurrentModelConfig,
    /// The training schedule.
    pub train: RecurrentTrainConfig,
}

/// `[task]` of a recurrent run. Defaults are the 2018 paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrentTaskConfig {
    /// `memorisation` or `images`.
    pub kind: RecurrentTaskKind,
    /// Pattern bits (memorisation; 1000 in the paper). Images are always 1024 pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Stimuli per episode (5 patterns, 3 images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// Presentations of each stimulus (2 patterns, 3 images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles: Option<usize>,
    /// Steps per presentation (6 patterns, 20 images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present_steps: Option<usize>,
    /// Silent steps after a presentation (4 patterns, 2 images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_steps: Option<usize>,
    /// Steps the half-erased probe is shown (6 patterns, 3 images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_steps: Option<usize>,
    /// Gain of unclamped inputs (20).
    #[serde(default = "default_gain")]
    pub input_gain: f64,
    /// Whether inputs clamp their neurons (default: true for images, false for patterns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp: Option<bool>,
    /// Images: `generated` (built-in generator) or the path of a CIFAR-10 binary file or
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
}

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RecurrentModelKind {
    /// [`PlasticRnn`](super::model::PlasticRnn) (with `plasticity = "none"`: the non-plastic RNN).
    #[default]
    Plastic,
    /// The LSTM baseline.
    Lstm,
}

/// How `α` is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AlphaShape {
    /// One `α` per connection.
    #[default]
    PerConnection,
    /// One `α` for the whole network.
    Shared,
}

/// `[model]` of a recurrent run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrentModelConfig {
    /// `plastic` or `lstm`.
    #[serde(default)]
    pub kind: RecurrentModelKind,
    /// Neurons (default: one per stimulus element; more adds free neurons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neurons: Option<usize>,
    /// The trace's rule: `hebb` (the default), `oja` or `clipped`.
    #[serde(default)]
    pub rule: Rule,
    /// The bound `c` of the `clipped` rule (default 1); only with `rule = "clipped"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<f64>,
    /// `per-connection` or `shared`.
    #[serde(default)]
    pub alpha: AlphaShape,
    /// `learned`, or `none` (the non-plastic RNN: `α = 0`, no trace).
    #[serde(default)]
    pub plasticity: Plasticity,
    /// A modulator neuron `M(t) = tanh(y(t)·w_M + b_M)` (the 2019 paper's, not published for
    /// this network): `none` (the default), `simple` (`M(t)` is the rule's rate) or
    /// `retroactive` (`M(t)` moves an eligibility trace into `H`; needs `rule = "clipped"`, the
    /// bound of `H`).
    #[serde(default, skip_serializing_if = "is_unmodulated")]
    pub modulation: Modulation,
    /// Standard deviation of the initial `W` and `α`.
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// Initial `η`.
    #[serde(default = "default_init_eta")]
    pub init_eta: f64,
    /// LSTM hidden units (default: the smallest LSTM with at least as many parameters as
    /// the plastic network of `neurons` neurons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lstm_hidden: Option<usize>,
}

/// `[train]` of a recurrent run: [`crate::schema::TrainConfig`] with this family's defaults
/// (batch 1, the fused engine, 100 held-out episodes, a checkpoint every 100 updates).
pub(crate) type RecurrentTrainConfig = TrainConfig<RecurrentTraining>;

/// The recurrent family's `[train]` defaults and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentTraining;

impl TrainFamily for RecurrentTraining {
    const NAME: &'static str = "the recurrent family";
    const ENGINES: &'static [Engine] = &[Engine::Fused, Engine::Autodiff];
    const KEYS: &'static [FamilyKey] = &[FamilyKey::EvalEpisodes, FamilyKey::Checkpointing];
    fn batch() -> usize {
        1
    }
    fn checkpoint_every() -> usize {
        100
    }
    fn engine() -> Engine {
        Engine::Fused
    }
    fn eval_episodes() -> usize {
        100
    }
}

fn default_gain() -> f64 {
    20.0
}
fn default_init_std() -> f64 {
    0.01
}
fn default_init_eta() -> f64 {
    0.01
}

impl RecurrentConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<RecurrentConfig> {
        crate::schema::load_config(path, RecurrentConfig::validate, |c| c.train.resolve())
    }

    /// Parses TOML text (not validated).
    pub fn parse(text: &str, path: &Path) -> Result<RecurrentConfig> {
        parse_toml(text, path)
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RecurrentConfig always serializes")
    }

    fn images(&self) -> bool {
        self.task.kind == RecurrentTaskKind::Images
    }

    /// Stimulus size.
    pub fn size(&self) -> usize {
        if self.images() {
            images::PIXELS
        } else {
            self.task.size.unwrap_or(1000)
        }
    }

    /// The learning rate of update `episode`.
    pub fn learning_rate(&self, episode: usize) -> f64 {
        self.train.learning_rate_at(episode)
    }

    /// Neurons of the recurrent network.
    pub fn neurons(&self) -> usize {
        self.model.neurons.unwrap_or_else(|| self.size())
    }

    /// The plastic network's options.
    pub fn plastic_rnn(&self) -> PlasticRnnConfig {
        PlasticRnnConfig {
            neurons: self.neurons(),
            rule: rule_spec(self.model.rule, self.model.clip),
            shared_alpha: self.model.alpha == AlphaShape::Shared,
            plastic: self.model.plasticity != Plasticity::None,
            init_std: self.model.init_std,
            init_eta: self.model.init_eta,
            modulation: self.model.modulation,
        }
    }

    /// LSTM hidden units.
    pub fn lstm_hidden(&self) -> usize {
        self.model.lstm_hidden.unwrap_or_else(|| {
            let mut plastic = self.plastic_rnn();
            plastic.plastic = true;
            LstmNet::hidden_for(self.size(), plastic.num_params())
        })
    }

    /// Trained parameters of the configured network.
    pub fn num_params(&self) -> usize {
        match self.model.kind {
            RecurrentModelKind::Plastic => self.plastic_rnn().num_params(),
            RecurrentModelKind::Lstm => LstmNet::num_params(self.size(), self.lstm_hidden()),
        }
    }

    /// `[items, cycles, present_steps, gap_steps, probe_steps]`, defaults filled in.
    fn timing(&self) -> [usize; 5] {
        let t = &self.task;
        let images = self.images();
        let pick = |v: Option<usize>, pattern: usize, image: usize| {
            v.unwrap_or(if images { image } else { pattern })
        };
        [
            pick(t.items, 5, 3),
            pick(t.cycles, 2, 3),
            pick(t.present_steps, 6, 20),
            pick(t.gap_steps, 4, 2),
            pick(t.probe_steps, 6, 3),
        ]
    }

    /// Steps per episode.
    pub fn steps(&self) -> usize {
        let [items, cycles, present, gap, probe] = self.timing();
        cycles
            .saturating_mul(items)
            .saturating_mul(present.saturating_add(gap))
            .saturating_add(probe)
    }

    /// The task, with its images loaded when it reads CIFAR-10 files.
    pub fn task(&self) -> Result<RecurrentTask> {
        let t = &self.task;
        let [items, cycles, present_steps, gap_steps, probe_steps] = self.timing();
        let images = self.images();
        let source = match t.images.as_deref() {
            None | Some("generated") => ImageSource::Generated,
            Some(path) => {
                ImageSource::Loaded(Arc::new(images::read_cifar10(&PathBuf::from(path))?))
            }
        };
        Ok(RecurrentTask {
            kind: t.kind,
            size: self.size(),
            items,
            cycles,
            present_steps,
            gap_steps,
            probe_steps,
            input_gain: t.input_gain as f32,
            clamp: t.clamp.unwrap_or(images),
            source,
        })
    }

    /// Checks ranges and consistency; errors name the field.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = crate::schema::value_error(source);
        let t = &self.task;
        crate::schema::bounds::check(
            &bad,
            "recurrent",
            &[
                ("task.size", t.size),
                ("task.items", t.items),
                ("task.cycles", t.cycles),
                ("task.present_steps", t.present_steps),
                ("task.gap_steps", t.gap_steps),
                ("task.probe_steps", t.probe_steps),
                ("model.neurons", self.model.neurons),
                ("model.lstm_hidden", self.model.lstm_hidden),
            ],
        )?;
        match (t.kind, t.size) {
            (RecurrentTaskKind::Images, Some(size)) => {
                return Err(bad(
                    "task.size",
                    size.to_string(),
                    "does not apply to `images` (always 32x32 = 1024 pixels); remove it",
                ));
            }
            (RecurrentTaskKind::Memorisation, Some(size)) if size < 2 => {
                return Err(bad(
                    "task.size",
                    size.to_string(),
                    "expected at least 2 bits",
                ));
            }
            _ => {}
        }
        if t.kind == RecurrentTaskKind::Memorisation && t.images.is_some() {
            return Err(bad(
                "task.images",
                format!("{:?}", t.images.as_deref().unwrap_or("")),
                "applies only to task `images`; remove it",
            ));
        }
        for (field, v) in [
            ("task.items", t.items),
            ("task.cycles", t.cycles),
            ("task.present_steps", t.present_steps),
            ("task.probe_steps", t.probe_steps),
        ] {
            if v == Some(0) {
                return Err(bad(field, "0".into(), "expected at least 1"));
            }
        }
        if !(t.input_gain.is_finite() && t.input_gain > 0.0) {
            return Err(bad(
                "task.input_gain",
                t.input_gain.to_string(),
                "expected a finite value > 0",
            ));
        }
        let m = &self.model;
        if let Some(neurons) = m.neurons
            && neurons < self.size()
        {
            return Err(bad(
                "model.neurons",
                neurons.to_string(),
                &format!(
                    "expected at least the stimulus size {} (one neuron per bit or pixel)",
                    self.size()
                ),
            ));
        }
        check_rule(&bad, m.rule, m.clip)?;
        check_modulation(
            &bad,
            m.modulation,
            m.rule,
            (
                m.plasticity != Plasticity::None && m.kind != RecurrentModelKind::Lstm,
                "plasticity = \"none\" or kind = \"lstm\"",
            ),
        )?;
        if m.plasticity == Plasticity::Nonnegative {
            return Err(bad(
                "model.plasticity",
                "\"nonnegative\"".into(),
                "expected `learned` or `none` for recurrent networks",
            ));
        }
        for (field, v) in [
            ("model.init_std", m.init_std),
            ("model.init_eta", m.init_eta),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(field, v.to_string(), "expected a finite value >= 0"));
            }
        }
        if m.init_eta > 1.0 {
            return Err(bad(
                "model.init_eta",
                m.init_eta.to_string(),
                "expected 0 <= init_eta <= 1",
            ));
        }
        if m.lstm_hidden == Some(0) {
            return Err(bad("model.lstm_hidden", "0".into(), "expected at least 1"));
        }
        if m.lstm_hidden.is_some() && m.kind != RecurrentModelKind::Lstm {
            return Err(bad(
                "model.lstm_hidden",
                m.lstm_hidden.unwrap_or(0).to_string(),
                "applies only to `kind = \"lstm\"`; remove it",
            ));
        }
        let tr = &self.train;
        tr.check(&bad)?;
        if tr.engine == Engine::Fused {
            if m.kind == RecurrentModelKind::Lstm {
                return Err(bad(
                    "train.engine",
                    "\"fused\"".into(),
                    "the fused engine trains plastic/non-plastic RNNs only; use `autodiff` for the LSTM",
                ));
            }
            if self.device.is_gpu() {
                return Err(bad(
                    "train.engine",
                    "\"fused\"".into(),
                    &format!(
                        "the fused engine runs on the host CPU; use `autodiff` with device `{}`",
                        self.device
                    ),
                ));
            }
            if tr.gradient_checkpointing {
                return Err(bad(
                    "train.gradient_checkpointing",
                    "true".into(),
                    "applies to the `autodiff` engine (the fused engine checkpoints traces: trace_checkpoint_every)",
                ));
            }
        } else if tr.trace_checkpoint_every != 0 {
            return Err(bad(
                "train.trace_checkpoint_every",
                tr.trace_checkpoint_every.to_string(),
                "applies to the `fused` engine (use gradient_checkpointing with autodiff)",
            ));
        }
        if let Some(path) = t.images.as_deref()
            && path != "generated"
            && !Path::new(path).exists()
        {
            return Err(bad(
                "task.images",
                format!("{path:?}"),
                "expected `generated` or an existing CIFAR-10 binary file or directory",
            ));
        }
        if let Some(available) = crate::memory::available_bytes() {
            self.check_memory(&bad, available)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[task]
kind = "memorisation"
size = 50
[model]
[train]
episodes = 10
learning_rate = 0.001
"#;

    fn error_of(text: &str) -> String {
        let path = PathBuf::from("rnn.toml");
        match RecurrentConfig::parse(text, &path).and_then(|c| c.validate("rnn.toml")) {
            Ok(()) => panic!("config must be rejected: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_the_papers_and_round_trip() {
        let c = RecurrentConfig::parse(BASE, Path::new("rnn.toml")).unwrap();
        c.validate("rnn.toml").unwrap();
        let task = c.task().unwrap();
        assert_eq!((task.items, task.cycles, task.steps()), (5, 2, 106));
        assert_eq!(c.neurons(), 50);
        assert_eq!(c.num_params(), 2 * 50 * 50 + 1);
        let registry = crate::registry::Registry::builtin();
        assert_eq!(registry.of_text(BASE).map(|f| f.name()), Some("recurrent"));
        assert_eq!(
            registry
                .of_text("[task]\nkind = \"one-shot\"\n")
                .map(|f| f.name()),
            Some("single-layer")
        );
        let again = RecurrentConfig::parse(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(c, again);
        let images = BASE
            .replace("memorisation", "images")
            .replace("size = 50\n", "");
        let c = RecurrentConfig::parse(&images, Path::new("x")).unwrap();
        c.validate("x").unwrap();
        let task = c.task().unwrap();
        assert_eq!((task.size, task.steps(), task.clamp), (1024, 201, true));
    }

    #[test]
    fn learning_rate_schedules_decay_to_the_minimum_at_the_last_update() {
        let c = RecurrentConfig::parse(BASE, Path::new("rnn.toml")).unwrap();
        assert_eq!((c.learning_rate(0), c.learning_rate(9)), (0.001, 0.001));
        let text = BASE.replace(
            "[train]",
            "[train]\nlr_schedule = \"cosine\"\nmin_learning_rate = 0.0001",
        );
        let c = RecurrentConfig::parse(&text, Path::new("rnn.toml")).unwrap();
        c.validate("rnn.toml").unwrap();
        assert_eq!(c.learning_rate(0), 0.001);
        // Halfway (5 of 10 updates): the mean of the two rates.
        assert!((c.learning_rate(5) - 0.00055).abs() < 1e-15);
        assert!((c.learning_rate(10) - 0.0001).abs() < 1e-15);
        let linear =
            RecurrentConfig::parse(&text.replace("cosine", "linear"), Path::new("x")).unwrap();
        assert!((linear.learning_rate(2) - (0.001 - 0.2 * 0.0009)).abs() < 1e-15);
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, field) in [
            ("size = 50", "size = 1", "task.size"),
            ("[model]", "[model]\nneurons = 20", "model.neurons"),
            (
                "[model]",
                "[model]\nplasticity = \"nonnegative\"",
                "model.plasticity",
            ),
            ("[model]", "[model]\nkind = \"lstm\"", "train.engine"),
            (
                "[model]\n[train]",
                "[model]\nmodulation = \"retroactive\"\n[train]\nengine = \"autodiff\"",
                "model.rule",
            ),
            (
                "[model]",
                "[model]\nmodulation = \"simple\"\nplasticity = \"none\"",
                "model.modulation",
            ),
            ("[model]", "[model]\nmodulation = \"always\"", "modulation"),
            ("[model]", "[model]\nlstm_hidden = 5", "model.lstm_hidden"),
            ("[model]", "[model]\ninit_eta = 2.0", "model.init_eta"),
            ("episodes = 10", "episodes = 0", "train.episodes"),
            (
                "learning_rate = 0.001",
                "learning_rate = -1.0",
                "train.learning_rate",
            ),
            ("[train]", "[train]\nbatch = 0", "train.batch"),
            ("[train]", "[train]\nadam_beta2 = 1.0", "train.adam_beta2"),
            (
                "[train]",
                "[train]\nlr_schedule = \"cosine\"\nmin_learning_rate = 0.01",
                "train.min_learning_rate",
            ),
            (
                "[train]",
                "[train]\nmin_learning_rate = -1.0",
                "train.min_learning_rate",
            ),
            (
                "[train]",
                "[train]\ncheckpoint_every = 0",
                "train.checkpoint_every",
            ),
            (
                "[train]",
                "[train]\neval_episodes = 0",
                "train.eval_episodes",
            ),
            (
                "[train]",
                "[train]\ngradient_checkpointing = true",
                "train.gradient_checkpointing",
            ),
            (
                "[train]",
                "[train]\nengine = \"autodiff\"\ntrace_checkpoint_every = 4",
                "train.trace_checkpoint_every",
            ),
            ("[task]", "[task]\nitems = 0", "task.items"),
            ("[task]", "[task]\ninput_gain = 0.0", "task.input_gain"),
            ("[task]", "[task]\nimages = \"generated\"", "task.images"),
            ("[model]", "[model]\nclip = 0.5", "model.clip"),
            (
                "[model]",
                "[model]\nrule = \"clipped\"\nclip = 0.0",
                "model.clip",
            ),
            (
                "[model]",
                "[model]\nrule = \"clipped\"\nclip = -1.0",
                "model.clip",
            ),
        ] {
            let e = error_of(&BASE.replace(from, to));
            assert!(e.contains(field) && e.contains("rnn.toml"), "{to}: {e}");
        }
        let images = BASE.replace("memorisation", "images");
        let e = error_of(&images);
        assert!(e.contains("task.size"), "{e}");
        let e = error_of(&images.replace("size = 50\n", "images = \"/no/such/cifar\"\n"));
        assert!(
            e.contains("task.images") && e.contains("/no/such/cifar"),
            "{e}"
        );
        let e = error_of(&BASE.replace("[model]", "[model]\nrule = \"bcm\""));
        assert!(
            e.contains("model.rule") && e.contains("hebb") && e.contains("clipped"),
            "{e}"
        );
        let e = error_of(&BASE.replace("[train]", "[train]\nengine = \"magic\""));
        assert!(e.contains("train.engine"), "{e}");
    }
}
