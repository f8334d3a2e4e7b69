//! Configs of reinforcement-learning runs (`task.kind = "bandit" | "cue" | "maze" | "metatasks"`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::env::{CUE_BITS, CUES, CUES_PER_TRIAL, CueResponse, EnvKind, EnvShape, MetaShape, Pool};
use super::model::{ActorCriticConfig, RlInit, RlModelKind};
use crate::device::{Backend, Precision};
use crate::error::Result;
use crate::rules::Rule;
pub use crate::schema::TrainConfig;
use crate::schema::{ClipScope, Engine, FamilyKey, TrainFamily};

/// A reinforcement-learning run: environment, network, training, device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    /// Seed of every random stream.
    #[serde(default)]
    pub seed: u64,
    /// Compute backend.
    #[serde(default)]
    pub device: Backend,
    /// Float precision.
    #[serde(default)]
    pub dtype: Precision,
    /// The environment.
    pub task: RlTaskConfig,
    /// The network.
    pub model: RlModelConfig,
    /// The training schedule.
    pub train: RlTrainConfig,
}

/// `[task]`: the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlTaskConfig {
    /// `bandit`, `cue` or `maze`.
    pub kind: EnvKind,
    /// Steps per episode [default: bandit 100, cue 120, maze 200].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// The maze's side `L` including its border (odd, ≥ 5) [default 11]; maze only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maze_side: Option<usize>,
    /// Cues per episode, one of them the target (more than `cues_per_trial`) [default 4]; cue
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cues: Option<usize>,
    /// Bits of a cue (≥ 1) [default 20]; cue only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue_bits: Option<usize>,
    /// Distinct cues each trial shows before Go, 1 or 2 [default 2, the paper's]; cue only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cues_per_trial: Option<usize>,
    /// How the response at Go is scored: `report` (the paper's: 1 when the target was shown,
    /// 0 when not, ±1) or `claim` (1 claims the target, ±1; 0 passes, no reward) [default
    /// report]; cue only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue_response: Option<CueResponse>,
    /// The meta-task generator's seed [default 1]; metatasks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_seed: Option<u64>,
    /// Generated tasks trained on (tasks `0..train_tasks` of the seed's set) [default 100];
    /// metatasks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_tasks: Option<usize>,
    /// Generated tasks held out (the next `heldout_tasks` of the set) [default 50]; metatasks
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_tasks: Option<usize>,
    /// Where episodes come from: `train`, `heldout`, `named` (every named task) or one named
    /// task (`bandit`, `harlow`, `t-maze`, `two-step`, `key-door`) [default train]; metatasks
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pool>,
    /// Values of each stimulus, ±1 [default 8]; metatasks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stimulus_bits: Option<usize>,
    /// Transitions after which a trial that has not come back to state 0 ends (the agent is
    /// put back there) [default 4]; metatasks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_timeout: Option<usize>,
}

/// `[model]`: the actor-critic network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlModelConfig {
    /// `non-plastic`, `plastic` (clipped Hebb, learned η), `simple` or `retroactive`
    /// (neuromodulated).
    pub kind: RlModelKind,
    /// Recurrent neurons.
    pub hidden: usize,
    /// The clip bound of `H` (1 in the paper).
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// `H`'s plasticity rule in the `plastic` and `simple` kinds: `clipped` (the default and
    /// the paper's), `hebb` or `oja`, with the learned η (plastic) or `M(t)` (simple) as its
    /// rate. The retroactive kind's `H` is always clipped (`E` decays as Hebb's trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// Fan `M(t)` out to one rate per postsynaptic neuron (neuromodulated kinds).
    #[serde(default)]
    pub fanout: bool,
    /// Initial η (`plastic`, `retroactive`).
    #[serde(default = "default_eta")]
    pub init_eta: f64,
    /// `gaussian` (weights ~ N(0, 1/fan-in)) or `published` (the published code's and the
    /// peer's: `W`, `α` ~ 0.001·U(0, 1), the other weights and biases ~ U(±1/√fan-in)).
    #[serde(default)]
    pub init: RlInit,
}

pub use crate::schema::Exploration;

/// `[train]` of an actor-critic run (A2C): [`crate::schema::TrainConfig`] with this family's
/// defaults (batch 30, gradients clipped per tensor to norm 4, the autodiff engine, a
/// checkpoint every 100 updates) and the loss's keys (`discount`, `value_coef`,
/// `exploration`, `exploration_coef`).
pub type RlTrainConfig = TrainConfig<RlTraining>;

/// The actor-critic family's `[train]` defaults and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct RlTraining;

impl TrainFamily for RlTraining {
    const NAME: &'static str = "the actor-critic family";
    const ENGINES: &'static [Engine] = &[Engine::Autodiff, Engine::Fused];
    const KEYS: &'static [FamilyKey] = &[FamilyKey::ActorCritic];
    const CLIP_SCOPE: ClipScope = ClipScope::PerTensor;
    fn batch() -> usize {
        30
    }
    fn checkpoint_every() -> usize {
        100
    }
    fn engine() -> Engine {
        Engine::Autodiff
    }
    fn clip_grad_norm() -> Option<f64> {
        Some(4.0)
    }
}

fn default_clip() -> f64 {
    1.0
}
fn default_eta() -> f64 {
    0.01
}

impl RlConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<RlConfig> {
        crate::schema::load_config(path, RlConfig::validate, |c| c.train.resolve())
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    /// The environment's sizes.
    pub fn env_shape(&self) -> EnvShape {
        let steps = self.task.steps.unwrap_or(match self.task.kind {
            EnvKind::Bandit => 100,
            EnvKind::Cue => 120,
            EnvKind::Maze => 200,
            EnvKind::Metatasks => 100,
        });
        EnvShape {
            kind: self.task.kind,
            steps,
            maze_side: self.task.maze_side.unwrap_or(11),
            cues: self.task.cues.unwrap_or(CUES),
            cue_bits: self.task.cue_bits.unwrap_or(CUE_BITS),
            cues_per_trial: self.task.cues_per_trial.unwrap_or(CUES_PER_TRIAL),
            cue_response: self.task.cue_response.unwrap_or_default(),
            meta: MetaShape {
                seed: self.task.generator_seed.unwrap_or(1),
                train: self.task.train_tasks.unwrap_or(100),
                heldout: self.task.heldout_tasks.unwrap_or(50),
                pool: self.task.pool.unwrap_or_default(),
                bits: self.task.stimulus_bits.unwrap_or(8),
                timeout: self.task.trial_timeout.unwrap_or(4),
            },
        }
    }

    /// The network's sizes and options.
    pub fn network(&self) -> ActorCriticConfig {
        let env = self.env_shape();
        ActorCriticConfig {
            inputs: env.inputs(),
            hidden: self.model.hidden,
            actions: env.actions(),
            kind: self.model.kind,
            clip: self.model.clip,
            rule: self.model.rule.unwrap_or(Rule::Clipped),
            fanout: self.model.fanout,
            init_eta: self.model.init_eta,
            init: self.model.init,
        }
    }

    /// The meta-task fields: set only with `task.kind = "metatasks"`, and in range.
    fn validate_meta(
        &self,
        bad: &impl Fn(&str, String, &str) -> crate::error::Error,
    ) -> Result<()> {
        let t = &self.task;
        let meta = t.kind == EnvKind::Metatasks;
        let pool = t.pool.map(|p| format!("\"{}\"", p.name()));
        let fields = [
            (
                "task.generator_seed",
                t.generator_seed.map(|v| v.to_string()),
                0,
            ),
            ("task.train_tasks", t.train_tasks.map(|v| v.to_string()), 1),
            (
                "task.heldout_tasks",
                t.heldout_tasks.map(|v| v.to_string()),
                0,
            ),
            (
                "task.stimulus_bits",
                t.stimulus_bits.map(|v| v.to_string()),
                1,
            ),
            (
                "task.trial_timeout",
                t.trial_timeout.map(|v| v.to_string()),
                1,
            ),
            ("task.pool", pool, 0),
        ];
        for (field, value, least) in fields {
            let Some(value) = value else { continue };
            if !meta {
                return Err(bad(
                    field,
                    value,
                    "to be set only with task.kind = \"metatasks\"",
                ));
            }
            if value.parse::<u64>().is_ok_and(|v| v < least) {
                return Err(bad(field, value, &format!("expected at least {least}")));
            }
        }
        let shape = self.env_shape().meta;
        if meta && shape.pool == Pool::Heldout && shape.heldout == 0 {
            return Err(bad(
                "task.heldout_tasks",
                "0".into(),
                "at least 1 with task.pool = \"heldout\"",
            ));
        }
        Ok(())
    }

    /// Checks every value, naming the field of the first bad one.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = crate::schema::value_error(source);
        let t = &self.train;
        t.check(&bad)?;
        crate::schema::bounds::check(
            &bad,
            "reinforcement",
            &[
                ("task.steps", self.task.steps),
                ("task.maze_side", self.task.maze_side),
                ("task.cues", self.task.cues),
                ("task.cue_bits", self.task.cue_bits),
                ("task.train_tasks", self.task.train_tasks),
                ("task.heldout_tasks", self.task.heldout_tasks),
                ("task.stimulus_bits", self.task.stimulus_bits),
                ("task.trial_timeout", self.task.trial_timeout),
                ("model.hidden", Some(self.model.hidden)),
            ],
        )?;
        if self.task.steps == Some(0) {
            return Err(bad("task.steps", "0".into(), "expected at least 1"));
        }
        match (self.task.kind, self.task.maze_side) {
            (EnvKind::Maze, Some(side)) if side < 5 || side % 2 == 0 => {
                return Err(bad(
                    "task.maze_side",
                    side.to_string(),
                    "expected an odd side of at least 5 (the border wall included)",
                ));
            }
            (EnvKind::Bandit | EnvKind::Cue | EnvKind::Metatasks, Some(side)) => {
                return Err(bad(
                    "task.maze_side",
                    side.to_string(),
                    "to be set only with task.kind = \"maze\"",
                ));
            }
            _ => {}
        }
        let shown = self.task.cues_per_trial.unwrap_or(CUES_PER_TRIAL);
        for (field, value, range, why) in [
            (
                "task.cues_per_trial",
                self.task.cues_per_trial,
                1..=2,
                "expected 1 or 2 (distinct cues a trial shows)".to_string(),
            ),
            (
                "task.cues",
                self.task.cues,
                shown + 1..=usize::MAX,
                format!(
                    "expected at least {} (a trial shows {shown} distinct cues, \
                     task.cues_per_trial)",
                    shown + 1
                ),
            ),
            (
                "task.cue_bits",
                self.task.cue_bits,
                1..=usize::MAX,
                "expected at least 1".to_string(),
            ),
        ] {
            match (self.task.kind, value) {
                (EnvKind::Cue, Some(v)) if !range.contains(&v) => {
                    return Err(bad(field, v.to_string(), &why));
                }
                (EnvKind::Bandit | EnvKind::Maze | EnvKind::Metatasks, Some(v)) => {
                    return Err(bad(
                        field,
                        v.to_string(),
                        "to be set only with task.kind = \"cue\"",
                    ));
                }
                _ => {}
            }
        }
        if let (EnvKind::Bandit | EnvKind::Maze | EnvKind::Metatasks, Some(response)) =
            (self.task.kind, self.task.cue_response)
        {
            return Err(bad(
                "task.cue_response",
                format!("\"{}\"", response.name()),
                "to be set only with task.kind = \"cue\"",
            ));
        }
        self.validate_meta(&bad)?;
        if self.model.hidden == 0 {
            return Err(bad("model.hidden", "0".into(), "expected at least 1"));
        }
        if !(self.model.clip.is_finite() && self.model.clip > 0.0) {
            return Err(bad(
                "model.clip",
                self.model.clip.to_string(),
                "expected a finite bound > 0",
            ));
        }
        match (self.model.kind, self.model.rule) {
            (RlModelKind::Plastic | RlModelKind::Simple, _) | (_, None) => {}
            (RlModelKind::Retroactive, Some(rule)) if rule != Rule::Clipped => {
                return Err(bad(
                    "model.rule",
                    format!("\"{rule}\""),
                    "\"clipped\" or no rule with model.kind = \"retroactive\" (its H is clipped; its eligibility trace decays as Hebb's)",
                ));
            }
            (RlModelKind::NonPlastic | RlModelKind::Lstm, Some(rule)) => {
                return Err(bad(
                    "model.rule",
                    format!("\"{rule}\""),
                    "no rule with a network without plasticity (model.kind = \"non-plastic\" or \"lstm\")",
                ));
            }
            _ => {}
        }
        if self.model.fanout && !self.model.kind.modulated() {
            return Err(bad(
                "model.fanout",
                "true".into(),
                "only with a neuromodulated kind (simple, retroactive)",
            ));
        }
        if self.model.init == RlInit::Burn && self.model.kind != RlModelKind::Lstm {
            return Err(bad(
                "model.init",
                "\"burn\"".into(),
                "\"gaussian\" or \"published\" (\"burn\" is for model.kind = \"lstm\")",
            ));
        }
        if !(self.model.init_eta.is_finite() && (0.0..=1.0).contains(&self.model.init_eta)) {
            return Err(bad(
                "model.init_eta",
                self.model.init_eta.to_string(),
                "expected a value in [0, 1]",
            ));
        }
        match t.engine {
            Engine::Autodiff | Engine::Analytic => {}
            Engine::Fused if self.model.kind == RlModelKind::Lstm => {
                return Err(bad(
                    "train.engine",
                    "\"fused\"".into(),
                    "expected \"autodiff\" with model.kind = \"lstm\" (the fused engine runs the recurrent actor-critic kinds)",
                ));
            }
            Engine::Fused if self.device.is_gpu() => {
                return Err(bad(
                    "train.engine",
                    "\"fused\"".into(),
                    &format!(
                        "the fused engine runs on the host CPU; use \"autodiff\" with device \"{}\"",
                        self.device
                    ),
                ));
            }
            Engine::Fused => {}
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

    const BASE: &str = "seed = 1\n[task]\nkind = \"bandit\"\n[model]\nkind = \"simple\"\nhidden = 8\n[train]\nepisodes = 10\nlearning_rate = 0.001\n";

    #[test]
    fn a_minimal_config_gets_the_published_defaults_and_round_trips() {
        let c: RlConfig = parse_toml(BASE, Path::new("x.toml")).unwrap();
        c.validate("x").unwrap();
        assert_eq!(
            (
                c.train.batch,
                c.train.discount(),
                c.train.value_coef(),
                c.train.clip(),
                c.model.clip
            ),
            (30, 0.9, 0.1, Some((ClipScope::PerTensor, 4.0)), 1.0)
        );
        assert_eq!(c.env_shape().steps, 100);
        let again: RlConfig = parse_toml(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, field) in [
            ("hidden = 8", "hidden = 0", "model.hidden"),
            ("[model]", "[model]\nclip = -1.0", "model.clip"),
            ("[model]", "[model]\ninit = \"burn\"", "model.init"),
            (
                "kind = \"simple\"",
                "kind = \"plastic\"\nfanout = true",
                "model.fanout",
            ),
            ("[task]", "[task]\nmaze_side = 11", "task.maze_side"),
            ("[task]", "[task]\ncues = 4", "task.cues"),
            ("kind = \"bandit\"", "kind = \"cue\"\ncues = 2", "task.cues"),
            (
                "kind = \"bandit\"",
                "kind = \"cue\"\ncues = 1\ncues_per_trial = 1",
                "task.cues",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"cue\"\ncues_per_trial = 3",
                "task.cues_per_trial",
            ),
            (
                "[task]",
                "[task]\ncues_per_trial = 1",
                "task.cues_per_trial",
            ),
            (
                "[task]",
                "[task]\ncue_response = \"claim\"",
                "task.cue_response",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"cue\"\ncue_bits = 0",
                "task.cue_bits",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"maze\"\nmaze_side = 6",
                "task.maze_side",
            ),
            ("[task]", "[task]\ntrain_tasks = 10", "task.train_tasks"),
            ("[task]", "[task]\npool = \"heldout\"", "task.pool"),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\ntrain_tasks = 0",
                "task.train_tasks",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\nstimulus_bits = 0",
                "task.stimulus_bits",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\ntrial_timeout = 0",
                "task.trial_timeout",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\nheldout_tasks = 0\npool = \"heldout\"",
                "task.heldout_tasks",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\npool = \"chess\"",
                "task.pool",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\ntrain_tasks = 1000000",
                "task.train_tasks",
            ),
            (
                "kind = \"bandit\"",
                "kind = \"metatasks\"\nmaze_side = 7",
                "task.maze_side",
            ),
            ("[train]", "[train]\ndiscount = 1.5", "train.discount"),
            ("[train]", "[train]\nengine = \"analytic\"", "train.engine"),
            (
                "kind = \"simple\"\nhidden = 8\n[train]",
                "kind = \"lstm\"\nhidden = 8\n[train]\nengine = \"fused\"",
                "train.engine",
            ),
            ("episodes = 10", "episodes = 0", "train.episodes"),
            (
                "kind = \"simple\"",
                "kind = \"retroactive\"\nrule = \"oja\"",
                "model.rule",
            ),
            (
                "kind = \"simple\"",
                "kind = \"non-plastic\"\nrule = \"hebb\"",
                "model.rule",
            ),
            (
                "kind = \"simple\"",
                "kind = \"simple\"\nrule = \"ojaa\"",
                "rule",
            ),
        ] {
            let text = BASE.replace(from, to);
            let err = parse_toml::<RlConfig>(&text, Path::new("x.toml"))
                .and_then(|c| c.validate("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{to}: {err}");
        }
    }
}
