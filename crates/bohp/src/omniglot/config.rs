//! Configs of few-shot classification runs (`task.kind = "omniglot"`).

use crate::rules::{Modulation, Rule, RuleSpec};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::{Backend, Precision};
use crate::error::Result;
use crate::omniglot::data::{Augment, SIDE};
pub use crate::schema::TrainConfig;
use crate::schema::{Engine, FamilyKey, TrainFamily};

/// The few-shot tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FewShotKind {
    /// N-way K-shot classification of Omniglot characters.
    Omniglot,
}

/// A few-shot run: data, network, training, device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniglotConfig {
    /// Seed of every random stream.
    #[serde(default)]
    pub seed: u64,
    /// Compute backend.
    #[serde(default)]
    pub device: Backend,
    /// Float precision.
    #[serde(default)]
    pub dtype: Precision,
    /// The data and the episodes.
    pub task: OmniglotTaskConfig,
    /// The network.
    pub model: OmniglotModelConfig,
    /// The training schedule.
    pub train: OmniglotTrainConfig,
}

/// `[task]`: where the images are, which alphabets are held out, the episodes' shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniglotTaskConfig {
    /// `omniglot`.
    pub kind: FewShotKind,
    /// Image sets: zip archives or directories in the layout
    /// `<set>/<alphabet>/<character>/<image>.png` (relative paths from the working directory).
    pub data: Vec<PathBuf>,
    /// Alphabets never trained on: `bohp eval` measures accuracy on them.
    #[serde(default)]
    pub held_out: Vec<String>,
    /// Classes per training episode (default 5).
    #[serde(default = "default_ways")]
    pub ways: usize,
    /// Support images per class (default 1).
    #[serde(default = "default_shots")]
    pub shots: usize,
    /// Draw each training episode's classes from one alphabet (alphabets with at least `ways`
    /// characters), as in Lake et al.'s within-alphabet runs [false].
    #[serde(default)]
    pub within_alphabet: bool,
    /// Queries per training episode, all read after the same support steps [1, the 2018
    /// setup]; more give more loss terms per support set.
    #[serde(default = "default_queries")]
    pub queries: usize,
    /// Random affine distortions of every training image (`[task.augment]`; off by default).
    #[serde(default, skip_serializing_if = "Augment::is_off")]
    pub augment: Augment,
}

/// `[model]`: the convolutional embedding and the plastic output layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniglotModelConfig {
    /// `false`: the α = 0 control (no plasticity; the support set cannot be learned).
    #[serde(default = "default_true")]
    pub plastic: bool,
    /// Channels of each convolution (default 64).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Output units of the plastic layer: the largest number of classes an episode may have
    /// (default 20). Each episode's classes take random units.
    #[serde(default = "default_slots")]
    pub outputs: usize,
    /// The plastic layer's rule from the rule library: `oja` (the default and the 2018
    /// paper's), `hebb` or `clipped`, with the learned η as its rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The bound `c` of `rule = "clipped"` (default 1) (an error with the other rules), and of `H`
    /// with `modulation = "retroactive"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<f64>,
    /// A modulator (a neuron computing `M = tanh(x·w_M + b_M)` from each support image's
    /// embedding `x`, as the 2019 paper builds one): `none` (the default and the 2018 paper's),
    /// `simple` (`M` is the rule's rate) or `retroactive` (`M` moves an eligibility trace into
    /// a clipped `H`). Not published for this network.
    #[serde(default, skip_serializing_if = "is_default")]
    pub modulation: Modulation,
    /// Initial η of the rule.
    #[serde(default = "default_eta")]
    pub init_eta: f64,
    /// Initial α of every connection (default 1): the query's logit for a class then starts as the
    /// (η-scaled) dot product of its embedding with the class's support embedding, a similarity
    /// classifier from the first update.
    #[serde(default = "default_alpha")]
    pub init_alpha: f64,
    /// Batch normalization after each convolution, before its tanh [false: the 2018 network].
    #[serde(default)]
    pub batch_norm: bool,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl OmniglotModelConfig {
    /// The plastic layer's rule with its constants (default: Oja's; the clipped rule's bound
    /// for `H` with retroactive modulation).
    pub fn rule(&self) -> RuleSpec {
        let default = if self.modulation == Modulation::Retroactive {
            Rule::Clipped
        } else {
            Rule::Oja
        };
        RuleSpec {
            rule: self.rule.unwrap_or(default),
            clip: self.clip.unwrap_or(crate::rules::DEFAULT_CLIP),
        }
    }
}

/// `[train]` of an Omniglot run: [`crate::schema::TrainConfig`] with this family's defaults
/// (batch 32, 1000 held-out episodes per way count, a checkpoint every 100 updates; autodiff,
/// the only engine).
pub(crate) type OmniglotTrainConfig = TrainConfig<OmniglotTraining>;

/// The Omniglot family's `[train]` defaults and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct OmniglotTraining;

impl TrainFamily for OmniglotTraining {
    const NAME: &'static str = "the Omniglot family";
    const ENGINES: &'static [Engine] = &[Engine::Autodiff];
    const KEYS: &'static [FamilyKey] = &[FamilyKey::EvalEpisodes];
    fn batch() -> usize {
        32
    }
    fn checkpoint_every() -> usize {
        100
    }
    fn engine() -> Engine {
        Engine::Autodiff
    }
    fn eval_episodes() -> usize {
        1000
    }
}

pub(super) fn default_ways() -> usize {
    5
}
pub(super) fn default_shots() -> usize {
    1
}
pub(super) fn default_queries() -> usize {
    1
}
fn default_true() -> bool {
    true
}
pub(super) fn default_channels() -> usize {
    64
}
pub(super) fn default_slots() -> usize {
    20
}
fn default_eta() -> f64 {
    0.1
}
fn default_alpha() -> f64 {
    1.0
}

impl OmniglotConfig {
    /// The learning rate of update `episode`.
    pub fn learning_rate(&self, episode: usize) -> f64 {
        self.train.learning_rate_at(episode)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<OmniglotConfig> {
        crate::schema::load_config(path, OmniglotConfig::validate, |c| c.train.resolve())
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    /// Checks every value, naming the field of the first bad one (the data files are checked
    /// when they are read).
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = crate::schema::value_error(source);
        let t = &self.train;
        t.check(&bad)?;
        let (task, model) = (&self.task, &self.model);
        crate::schema::bounds::check(
            &bad,
            "few-shot",
            &[
                ("task.ways", Some(task.ways)),
                ("task.shots", Some(task.shots)),
                ("task.queries", Some(task.queries)),
                ("model.channels", Some(model.channels)),
                ("model.outputs", Some(model.outputs)),
            ],
        )?;
        if self.task.data.is_empty() {
            return Err(bad(
                "task.data",
                "[]".into(),
                "expected at least one image set (a zip or a directory)",
            ));
        }
        if self.task.ways < 2 {
            return Err(bad(
                "task.ways",
                self.task.ways.to_string(),
                "expected at least 2 classes per episode",
            ));
        }
        if self.task.ways > self.model.outputs {
            return Err(bad(
                "task.ways",
                self.task.ways.to_string(),
                &format!(
                    "expected at most model.outputs = {} classes per episode",
                    self.model.outputs
                ),
            ));
        }
        let a = &self.task.augment;
        for (field, value, most) in [
            ("task.augment.rotation", a.rotation, 180.0),
            ("task.augment.scale", a.scale, 0.9),
            ("task.augment.shear", a.shear, 1.0),
            ("task.augment.shift", a.shift, (SIDE / 2) as f64),
        ] {
            if !(value.is_finite() && (0.0..=most).contains(&value)) {
                return Err(bad(
                    field,
                    value.to_string(),
                    &format!("expected a value in [0, {most}]"),
                ));
            }
        }
        if self.task.queries == 0 {
            return Err(bad("task.queries", "0".into(), "expected at least 1"));
        }
        if self.task.shots == 0 {
            return Err(bad("task.shots", "0".into(), "expected at least 1"));
        }
        if self.model.channels == 0 {
            return Err(bad("model.channels", "0".into(), "expected at least 1"));
        }
        if !(self.model.init_eta.is_finite() && (0.0..=1.0).contains(&self.model.init_eta)) {
            return Err(bad(
                "model.init_eta",
                self.model.init_eta.to_string(),
                "expected a value in [0, 1]",
            ));
        }
        let m = &self.model;
        if m.modulation != Modulation::None && !m.plastic {
            return Err(bad(
                "model.modulation",
                format!("\"{}\"", m.modulation.name()),
                "\"none\" with model.plastic = false (no plasticity to modulate)",
            ));
        }
        if m.modulation == Modulation::Retroactive && m.rule.is_some_and(|r| r != Rule::Clipped) {
            return Err(bad(
                "model.rule",
                format!("\"{}\"", m.rule().rule),
                "\"clipped\" or no rule with model.modulation = \"retroactive\" (its H is clipped; its eligibility trace decays as Hebb's)",
            ));
        }
        match (self.model.rule(), self.model.clip) {
            (_, Some(c)) if !(c.is_finite() && c > 0.0) => {
                return Err(bad(
                    "model.clip",
                    c.to_string(),
                    "expected a finite bound > 0",
                ));
            }
            (rule, Some(c)) if rule.rule != Rule::Clipped => {
                return Err(bad(
                    "model.clip",
                    c.to_string(),
                    "only with model.rule = \"clipped\" or model.modulation = \"retroactive\"",
                ));
            }
            _ => {}
        }
        if !self.model.init_alpha.is_finite() {
            return Err(bad(
                "model.init_alpha",
                self.model.init_alpha.to_string(),
                "expected a finite value",
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
    use crate::schema::parse_toml;

    const BASE: &str = "seed = 1\n[task]\nkind = \"omniglot\"\ndata = [\"x.zip\"]\n[model]\n[train]\nepisodes = 10\nlearning_rate = 0.001\n";

    #[test]
    fn a_minimal_config_gets_the_defaults_and_round_trips() {
        let c: OmniglotConfig = parse_toml(BASE, Path::new("x.toml")).unwrap();
        c.validate("x").unwrap();
        assert_eq!(
            (c.task.ways, c.task.shots, c.model.outputs, c.model.channels),
            (5, 1, 20, 64)
        );
        assert!(c.model.plastic && !c.model.batch_norm && !c.task.within_alphabet);
        let again: OmniglotConfig = parse_toml(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, field) in [
            ("data = [\"x.zip\"]", "data = []", "task.data"),
            ("[task]", "[task]\nways = 1", "task.ways"),
            ("[task]", "[task]\nways = 21", "task.ways"),
            ("[task]", "[task]\nshots = 0", "task.shots"),
            ("[task]", "[task]\nqueries = 0", "task.queries"),
            ("[model]", "[model]\nchannels = 0", "model.channels"),
            ("[model]", "[model]\ninit_eta = 2.0", "model.init_eta"),
            ("[model]", "[model]\ninit_alpha = nan", "model.init_alpha"),
            ("[model]", "[model]\nclip = 0.5", "model.clip"),
            (
                "[model]",
                "[model]\nrule = \"clipped\"\nclip = -1.0",
                "model.clip",
            ),
            ("[model]", "[model]\nrule = \"hebbb\"", "rule"),
            (
                "[model]",
                "[model]\nplastic = false\nmodulation = \"simple\"",
                "model.modulation",
            ),
            (
                "[model]",
                "[model]\nmodulation = \"retroactive\"\nrule = \"oja\"",
                "model.rule",
            ),
            (
                "[model]",
                "[model]\nmodulation = \"sometimes\"",
                "modulation",
            ),
            (
                "[train]",
                "[train]\neval_episodes = 0",
                "train.eval_episodes",
            ),
            ("[train]", "[train]\nengine = \"fused\"", "train.engine"),
            ("episodes = 10", "episodes = 0", "train.episodes"),
            ("[model]", "[model]\nbatch_norm = 3", "batch_norm"),
            (
                "[model]",
                "[task.augment]\nrotation = 200.0\n[model]",
                "task.augment.rotation",
            ),
            (
                "[model]",
                "[task.augment]\nshift = -1.0\n[model]",
                "task.augment.shift",
            ),
            (
                "[model]",
                "[task.augment]\nscale = nan\n[model]",
                "task.augment.scale",
            ),
            (
                "[model]",
                "[task.augment]\nstretch = 0.1\n[model]",
                "stretch",
            ),
            (
                "[train]",
                "[train]\nlr_schedule = \"cosine\"\nmin_learning_rate = 0.01",
                "train.min_learning_rate",
            ),
        ] {
            let text = BASE.replace(from, to);
            let err = parse_toml::<OmniglotConfig>(&text, Path::new("x.toml"))
                .and_then(|c| c.validate("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{to}: {err}");
        }
    }
}
