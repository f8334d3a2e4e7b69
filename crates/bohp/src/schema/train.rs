//! `[train]`: one schema for every family.
//!
//! [`TrainConfig`] holds every `[train]` key any family has: the schedule (updates, batch,
//! learning rate and its decay), the optimizer (`adam | original` and their settings), gradient
//! clipping, checkpoints, the engine, and the few keys only some families read (the single
//! layer's frozen phase and readback interval, held-out episodes, the recurrent engines' trace
//! checkpointing, the actor-critic loss). A family says, through [`TrainFamily`], its defaults,
//! its engines and which of those few keys it reads; [`TrainConfig::check`] then rejects a key
//! the family would ignore, naming it, instead of ignoring it silently.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use super::{Engine, LrSchedule};
use crate::error::{Error, Result};
use crate::host_optim::{ADAM_EPSILON, HostAdam, HostOptimizer, Original};

/// The optimizer of a run (`train.optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (β₁, β₂ from `train.adam_beta1`/`adam_beta2`, ε = 1e-8).
    #[default]
    Adam,
    /// The original BOHP code's clipped RMSprop with L1/L2 penalties.
    Original,
}

/// What `train.clip_grad_norm` bounds (`train.clip_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClipScope {
    /// The norm of all trainable parameters' gradients together.
    Global,
    /// Each parameter tensor's gradient norm on its own (burn's `GradientClipping::Norm`).
    PerTensor,
}

/// The exploration term of the actor-critic loss (`train.exploration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Exploration {
    /// `+coef·Σ_a p_a²`, as the published code computes it (smallest for a uniform policy).
    #[default]
    SumP2,
    /// `−coef·H(p) = coef·Σ_a p_a log p_a`, the entropy bonus.
    Entropy,
}

/// The `[train]` keys that only some families read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKey {
    /// `freeze_last`: a frozen evaluation phase at the end of the run.
    FreezeLast,
    /// `readback_every`: metric readbacks batched on a GPU.
    ReadbackEvery,
    /// `eval_episodes`: held-out episodes measured at the end.
    EvalEpisodes,
    /// `trace_checkpoint_every` and `gradient_checkpointing` (recurrent engines).
    Checkpointing,
    /// `discount`, `value_coef`, `exploration`, `exploration_coef` (the actor-critic loss).
    ActorCritic,
}

/// What a family's `[train]` section defaults to and accepts.
pub trait TrainFamily: std::fmt::Debug + Clone + PartialEq {
    /// The family's name in errors ("the recurrent family").
    const NAME: &'static str;
    /// The engines it has.
    const ENGINES: &'static [Engine];
    /// The family-only keys it reads.
    const KEYS: &'static [FamilyKey];
    /// `clip_scope` when absent.
    const CLIP_SCOPE: ClipScope = ClipScope::Global;
    /// `batch` when absent.
    fn batch() -> usize;
    /// `checkpoint_every` when absent.
    fn checkpoint_every() -> usize;
    /// `engine` when absent.
    fn engine() -> Engine;
    /// `clip_grad_norm` when absent.
    fn clip_grad_norm() -> Option<f64> {
        None
    }
    /// `eval_episodes` when absent (0: the family has none).
    fn eval_episodes() -> usize {
        0
    }
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Actor-critic loss defaults (the 2019 paper's).
const DEFAULT_DISCOUNT: f64 = 0.9;
const DEFAULT_VALUE_COEF: f64 = 0.1;
const DEFAULT_EXPLORATION_COEF: f64 = 0.03;

/// `[train]`: the optimization schedule of a run of family `F`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct TrainConfig<F: TrainFamily> {
    /// Parameter updates; each is a batch of `batch` independent episodes.
    pub episodes: usize,
    /// Independent episodes per update.
    #[serde(default = "F::batch")]
    pub batch: usize,
    /// The learning rate (the initial one, under a decaying schedule).
    pub learning_rate: f64,
    /// `constant`, `linear` or `cosine` (decaying to `min_learning_rate` at the first frozen
    /// update, or the last).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// The learning rate a decaying schedule ends at (ignored by `constant`).
    #[serde(default)]
    pub min_learning_rate: f64,
    /// Adam's β₁ (decay of the gradient average).
    #[serde(default = "default_beta1")]
    pub adam_beta1: f64,
    /// Adam's β₂ (decay of the squared-gradient average).
    #[serde(default = "default_beta2")]
    pub adam_beta2: f64,
    /// `adam`, or `original`: the original BOHP code's procedure (RMSprop, each parameter's
    /// change clipped to `max_change`, L1/L2 penalties; [`Original`]).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// `original`: the largest change of one parameter in one update (the code's MAXDW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_change: Option<f64>,
    /// `original`: L1 penalty coefficient (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<f64>,
    /// `original`: L2 penalty coefficient (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
    /// `original`: rate of the squared-gradient running mean (default 0.01, the code's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmsprop_rate: Option<f64>,
    /// Rescales the gradient, before the optimizer, to at most this Euclidean norm (see
    /// `clip_scope`). Absent: no clipping (actor-critic runs: 4).
    #[serde(default = "F::clip_grad_norm", skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// `global` (all gradients' norm together) or `per-tensor` [default: the family's; per
    /// tensor for actor-critic runs, as the 2019 code clips].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_scope: Option<ClipScope>,
    /// Single layer: the last `freeze_last` updates are evaluation only, parameters fixed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze_last: usize,
    /// Write a checkpoint every this many updates (and at the end).
    #[serde(default = "F::checkpoint_every")]
    pub checkpoint_every: usize,
    /// `autodiff`, `analytic` or `fused`: where the gradients come from.
    #[serde(default = "F::engine")]
    pub engine: Engine,
    /// Single layer: updates between reads of the loss and errors back from the device
    /// (autodiff engine). Absent: every update on CPU devices, [`super::GPU_READBACK_EVERY`]
    /// on GPU devices. The metrics are the same either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readback_every: Option<usize>,
    /// Recurrent and Omniglot: held-out episodes measured at the end (and by `bohp eval`).
    #[serde(default = "F::eval_episodes", skip_serializing_if = "is_zero")]
    pub eval_episodes: usize,
    /// Recurrent, fused engine: keep the trace every this many steps (0: ⌈√steps⌉).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trace_checkpoint_every: usize,
    /// Recurrent, autodiff engine: burn's gradient checkpointing (recompute cheap operations
    /// in the backward pass instead of keeping their outputs).
    #[serde(default, skip_serializing_if = "is_false")]
    pub gradient_checkpointing: bool,
    /// Actor-critic: discount γ of the returns [default 0.9].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<f64>,
    /// Actor-critic: coefficient of the value loss [default 0.1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_coef: Option<f64>,
    /// Actor-critic: `sum-p2` (the published term) or `entropy` [default sum-p2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<Exploration>,
    /// Actor-critic: coefficient of the exploration term [default 0.03].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration_coef: Option<f64>,
    #[serde(skip)]
    family: PhantomData<F>,
}

impl<F: TrainFamily> TrainConfig<F> {
    /// The settings with every default filled in: what a config of only `episodes` and
    /// `learning_rate` reads as.
    pub fn new(episodes: usize, learning_rate: f64) -> TrainConfig<F> {
        TrainConfig {
            episodes,
            batch: F::batch(),
            learning_rate,
            lr_schedule: LrSchedule::Constant,
            min_learning_rate: 0.0,
            adam_beta1: default_beta1(),
            adam_beta2: default_beta2(),
            optimizer: OptimizerKind::Adam,
            max_change: None,
            l1: None,
            l2: None,
            rmsprop_rate: None,
            clip_grad_norm: F::clip_grad_norm(),
            clip_scope: None,
            freeze_last: 0,
            checkpoint_every: F::checkpoint_every(),
            engine: F::engine(),
            readback_every: None,
            eval_episodes: F::eval_episodes(),
            trace_checkpoint_every: 0,
            gradient_checkpointing: false,
            discount: None,
            value_coef: None,
            exploration: None,
            exploration_coef: None,
            family: PhantomData,
        }
    }

    /// Writes out the defaults a run's `config.toml` should show although they are not
    /// written in the file read: the clipping's scope (when it clips) and the actor-critic
    /// loss's keys (in the family that reads them).
    pub fn resolve(&mut self) {
        if self.clip_grad_norm.is_some() && self.clip_scope.is_none() {
            self.clip_scope = Some(F::CLIP_SCOPE);
        }
        if F::KEYS.contains(&FamilyKey::ActorCritic) {
            self.discount = Some(self.discount());
            self.value_coef = Some(self.value_coef());
            self.exploration = Some(self.exploration());
            self.exploration_coef = Some(self.exploration_coef());
        }
    }

    /// The index of the first frozen update (`episodes` when there is no frozen phase).
    pub fn first_frozen(&self) -> usize {
        self.episodes - self.freeze_last
    }

    /// The learning rate of update `episode`: the schedule decays from `learning_rate` at
    /// update 0 to `min_learning_rate` at the first frozen update (the last, without a frozen
    /// phase).
    pub(crate) fn learning_rate_at(&self, episode: usize) -> f64 {
        self.lr_schedule.at(
            self.learning_rate,
            self.min_learning_rate,
            episode,
            self.first_frozen(),
        )
    }

    /// The gradient clipping: its scope and bound, if any.
    pub fn clip(&self) -> Option<(ClipScope, f64)> {
        self.clip_grad_norm
            .map(|max| (self.clip_scope.unwrap_or(F::CLIP_SCOPE), max))
    }

    /// A fresh host optimizer of the configured kind for groups of `sizes` elements.
    pub fn host_optimizer(&self, sizes: &[usize]) -> HostOptimizer {
        match self.optimizer {
            OptimizerKind::Adam => HostOptimizer::Adam(HostAdam::new(
                self.adam_beta1 as f32,
                self.adam_beta2 as f32,
                ADAM_EPSILON,
                sizes,
            )),
            OptimizerKind::Original => HostOptimizer::Original(Original::new(
                self.rmsprop_rate.unwrap_or(0.01),
                self.max_change.unwrap_or(f64::INFINITY),
                self.l1.unwrap_or(0.0),
                self.l2.unwrap_or(0.0),
                sizes,
            )),
        }
    }

    /// Whether burn's optimizer cannot run this schedule, so that an autodiff run keeps its
    /// parameters and optimizer on the host ([`crate::store::ModuleStore`]): the original
    /// procedure and global clipping are host-only.
    pub fn needs_host_optimizer(&self) -> bool {
        self.optimizer == OptimizerKind::Original
            || matches!(self.clip(), Some((ClipScope::Global, _)))
    }

    /// Actor-critic: the discount γ.
    pub fn discount(&self) -> f64 {
        self.discount.unwrap_or(DEFAULT_DISCOUNT)
    }

    /// Actor-critic: the value loss coefficient.
    pub fn value_coef(&self) -> f64 {
        self.value_coef.unwrap_or(DEFAULT_VALUE_COEF)
    }

    /// Actor-critic: the exploration term.
    pub fn exploration(&self) -> Exploration {
        self.exploration.unwrap_or_default()
    }

    /// Actor-critic: the exploration coefficient.
    pub fn exploration_coef(&self) -> f64 {
        self.exploration_coef.unwrap_or(DEFAULT_EXPLORATION_COEF)
    }

    /// Checks every key: ranges, the optimizer's settings only with it, the engine among the
    /// family's, and no key the family does not read.
    pub fn check(&self, bad: &dyn Fn(&str, String, &str) -> Error) -> Result<()> {
        self.check_family_keys(bad)?;
        self.check_schedule(bad)?;
        self.check_optimizer(bad)?;
        if !F::ENGINES.contains(&self.engine) {
            let names: Vec<String> = F::ENGINES
                .iter()
                .map(|e| format!("\"{}\"", e.name()))
                .collect();
            return Err(bad(
                "train.engine",
                format!("\"{}\"", self.engine.name()),
                &format!(
                    "one of {} ({} has no {} engine)",
                    names.join(", "),
                    F::NAME,
                    self.engine.name()
                ),
            ));
        }
        self.check_actor_critic(bad)
    }

    /// The keys only some families read: an error for a key set that `F` does not read.
    fn check_family_keys(&self, bad: &dyn Fn(&str, String, &str) -> Error) -> Result<()> {
        let set: [(FamilyKey, &str, Option<String>, &str); 9] = [
            (
                FamilyKey::FreezeLast,
                "train.freeze_last",
                (self.freeze_last != 0).then(|| self.freeze_last.to_string()),
                "single-layer",
            ),
            (
                FamilyKey::ReadbackEvery,
                "train.readback_every",
                self.readback_every.map(|n| n.to_string()),
                "single-layer",
            ),
            (
                FamilyKey::EvalEpisodes,
                "train.eval_episodes",
                (self.eval_episodes != 0).then(|| self.eval_episodes.to_string()),
                "recurrent and Omniglot",
            ),
            (
                FamilyKey::Checkpointing,
                "train.trace_checkpoint_every",
                (self.trace_checkpoint_every != 0).then(|| self.trace_checkpoint_every.to_string()),
                "recurrent",
            ),
            (
                FamilyKey::Checkpointing,
                "train.gradient_checkpointing",
                self.gradient_checkpointing.then(|| "true".to_string()),
                "recurrent",
            ),
            (
                FamilyKey::ActorCritic,
                "train.discount",
                self.discount.map(|v| v.to_string()),
                "actor-critic",
            ),
            (
                FamilyKey::ActorCritic,
                "train.value_coef",
                self.value_coef.map(|v| v.to_string()),
                "actor-critic",
            ),
            (
                FamilyKey::ActorCritic,
                "train.exploration",
                self.exploration.map(|v| format!("{v:?}")),
                "actor-critic",
            ),
            (
                FamilyKey::ActorCritic,
                "train.exploration_coef",
                self.exploration_coef.map(|v| v.to_string()),
                "actor-critic",
            ),
        ];
        for (key, field, value, readers) in set {
            let Some(value) = value else { continue };
            if !F::KEYS.contains(&key) {
                return Err(bad(
                    field,
                    value,
                    &format!(
                        "no such key for {} (only {readers} runs read it); remove it",
                        F::NAME
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Updates, batch, learning rates, Adam's βs, the frozen phase and the intervals.
    fn check_schedule(&self, bad: &dyn Fn(&str, String, &str) -> Error) -> Result<()> {
        for (field, n) in [
            ("train.episodes", self.episodes),
            ("train.batch", self.batch),
            ("train.checkpoint_every", self.checkpoint_every),
        ] {
            if n == 0 {
                return Err(bad(field, "0".into(), "expected at least 1"));
            }
        }
        let has = |key| F::KEYS.contains(&key);
        super::bounds::check(
            bad,
            "any",
            &[
                ("train.episodes", Some(self.episodes)),
                ("train.batch", Some(self.batch)),
                ("train.checkpoint_every", Some(self.checkpoint_every)),
                ("train.readback_every", self.readback_every),
                (
                    "train.eval_episodes",
                    has(FamilyKey::EvalEpisodes).then_some(self.eval_episodes),
                ),
                (
                    "train.trace_checkpoint_every",
                    has(FamilyKey::Checkpointing).then_some(self.trace_checkpoint_every),
                ),
            ],
        )?;
        if F::KEYS.contains(&FamilyKey::EvalEpisodes) && self.eval_episodes == 0 {
            return Err(bad(
                "train.eval_episodes",
                "0".into(),
                "expected at least 1 (the run's held-out measure)",
            ));
        }
        if self.readback_every == Some(0) {
            return Err(bad(
                "train.readback_every",
                "0".into(),
                "expected at least 1 (updates between metric readbacks)",
            ));
        }
        let (lr, min_lr) = (self.learning_rate, self.min_learning_rate);
        if !(lr.is_finite() && lr > 0.0) {
            return Err(bad(
                "train.learning_rate",
                lr.to_string(),
                "expected a finite value > 0",
            ));
        }
        if !(min_lr.is_finite() && min_lr >= 0.0 && min_lr <= lr) {
            return Err(bad(
                "train.min_learning_rate",
                min_lr.to_string(),
                "expected a finite value with 0 <= min_learning_rate <= learning_rate",
            ));
        }
        for (field, beta) in [
            ("train.adam_beta1", self.adam_beta1),
            ("train.adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(bad(field, beta.to_string(), "expected 0 <= beta < 1"));
            }
        }
        if self.freeze_last > self.episodes {
            return Err(bad(
                "train.freeze_last",
                self.freeze_last.to_string(),
                &format!(
                    "expected at most train.episodes = {} (the frozen phase is part of the run)",
                    self.episodes
                ),
            ));
        }
        Ok(())
    }

    /// The optimizer's keys: the original procedure's only with it, each in range; clipping.
    fn check_optimizer(&self, bad: &dyn Fn(&str, String, &str) -> Error) -> Result<()> {
        let original = [
            ("train.max_change", self.max_change, "a finite value > 0"),
            ("train.l1", self.l1, "a finite value >= 0"),
            ("train.l2", self.l2, "a finite value >= 0"),
            ("train.rmsprop_rate", self.rmsprop_rate, "a value in (0, 1]"),
        ];
        for (field, value, expected) in original {
            let Some(v) = value else { continue };
            if self.optimizer != OptimizerKind::Original {
                return Err(bad(
                    field,
                    v.to_string(),
                    "to be set only with train.optimizer = \"original\" (it is a setting of the original procedure)",
                ));
            }
            let ok = match field {
                "train.max_change" => v.is_finite() && v > 0.0,
                "train.rmsprop_rate" => v > 0.0 && v <= 1.0,
                _ => v.is_finite() && v >= 0.0,
            };
            if !ok {
                return Err(bad(field, v.to_string(), &format!("expected {expected}")));
            }
        }
        if self.optimizer == OptimizerKind::Original && self.max_change.is_none() {
            return Err(bad(
                "train.max_change",
                "(missing)".into(),
                "a value with train.optimizer = \"original\" (the original code's MAXDW: 0.01 for one-shot and reversal, 0.1 for completion)",
            ));
        }
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(bad(
                "train.clip_grad_norm",
                c.to_string(),
                "expected a finite value > 0",
            ));
        }
        if let Some(scope) = self.clip_scope
            && self.clip_grad_norm.is_none()
        {
            return Err(bad(
                "train.clip_scope",
                format!("{scope:?}"),
                "to be set only with train.clip_grad_norm (it says what the bound applies to)",
            ));
        }
        Ok(())
    }

    /// The actor-critic loss's keys in range.
    fn check_actor_critic(&self, bad: &dyn Fn(&str, String, &str) -> Error) -> Result<()> {
        for (field, v, ok) in [
            (
                "train.discount",
                self.discount(),
                (0.0..=1.0).contains(&self.discount()),
            ),
            (
                "train.value_coef",
                self.value_coef(),
                self.value_coef() >= 0.0,
            ),
            (
                "train.exploration_coef",
                self.exploration_coef(),
                self.exploration_coef() >= 0.0,
            ),
        ] {
            if !(v.is_finite() && ok) {
                return Err(bad(
                    field,
                    v.to_string(),
                    "expected a finite value in range (discount in [0, 1], coefficients >= 0)",
                ));
            }
        }
        Ok(())
    }
}
