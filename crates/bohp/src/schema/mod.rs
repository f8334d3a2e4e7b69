//! What every family's config shares: the `[train]` section ([`TrainConfig`]), the checks
//! of `model.rule`, `model.clip` and `model.modulation`, and TOML parsing that
//! names the file, the field and the line.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::engines::Engine;
use crate::error::{Error, Result};
use crate::rules::{DEFAULT_CLIP, Modulation, Rule, RuleSpec};

pub mod bounds;
mod train;
pub use train::{ClipScope, Exploration, FamilyKey, OptimizerKind, TrainConfig, TrainFamily};

/// How `α` is trained: freely, not at all (the non-plastic control), or kept non-negative
/// (the paper's §4.4 ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Plasticity {
    /// `α` is trained with `w` and `b`, any sign.
    #[default]
    Learned,
    /// `α = 0`, not trained: the same network without plasticity.
    None,
    /// `α` is trained but clipped to `α ≥ 0` at initialization and after every update.
    Nonnegative,
}

impl Plasticity {
    /// Every variant, in order.
    pub const ALL: [Plasticity; 3] = [
        Plasticity::Learned,
        Plasticity::None,
        Plasticity::Nonnegative,
    ];

    /// The name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Plasticity::Learned => "learned",
            Plasticity::None => "none",
            Plasticity::Nonnegative => "nonnegative",
        }
    }
}

impl std::fmt::Display for Plasticity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a config has no modulator (then `model.modulation` is not written out).
pub(crate) fn is_unmodulated(m: &Modulation) -> bool {
    *m == Modulation::None
}

/// How the learning rate changes over the training episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `learning_rate` throughout.
    #[default]
    Constant,
    /// Linear decay from `learning_rate` at episode 0 to `min_learning_rate` at the first
    /// frozen episode.
    Linear,
    /// Cosine decay from `learning_rate` at episode 0 to `min_learning_rate` at the first
    /// frozen episode.
    Cosine,
}

impl LrSchedule {
    /// The learning rate of episode `episode` when the schedule decays from `lr0` at episode 0
    /// to `lr1` at episode `end` (and stays there).
    pub fn at(self, lr0: f64, lr1: f64, episode: usize, end: usize) -> f64 {
        let progress = (episode as f64 / end.max(1) as f64).clamp(0.0, 1.0);
        match self {
            LrSchedule::Constant => lr0,
            LrSchedule::Linear => lr0 + (lr1 - lr0) * progress,
            LrSchedule::Cosine => {
                lr1 + (lr0 - lr1) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Updates between metric readbacks on GPU devices when `train.readback_every` is absent.
pub const GPU_READBACK_EVERY: usize = 16;

/// The error maker every config check takes: `bad(field, value, expected)` is the error of a
/// value out of range in the config read from `source`.
pub(crate) fn value_error(source: &str) -> impl Fn(&str, String, &str) -> Error + '_ {
    move |field, value, expected| Error::ConfigValue {
        source_name: source.to_string(),
        field: field.to_string(),
        value,
        expected: expected.to_string(),
    }
}

/// Reads the config file `path` as `T`, validates it with `validate` (which names the file as
/// the source) and writes out its `[train]` defaults (`resolve`, [`TrainConfig::resolve`]):
/// every family's `load`.
pub(crate) fn load_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&T, &str) -> Result<()>,
    resolve: impl Fn(&mut T),
) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read config", e))?;
    let mut config: T = parse_toml(&text, path)?;
    validate(&config, &path.display().to_string())?;
    resolve(&mut config);
    Ok(config)
}

/// " (line N)" for the start of `span` in `text`, or "" when unknown.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) if span.start <= text.len() => {
            format!(" (line {})", text[..span.start].matches('\n').count() + 1)
        }
        _ => String::new(),
    }
}

/// Parses TOML text into `T`, naming the file, the field and the line of any error.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| Error::ConfigSyntax {
        path: path.to_path_buf(),
        field: "<file>".into(),
        message: format!("invalid TOML{}: {}", line_of(text, e.span()), e.message()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            "<top level>".to_string()
        } else {
            field
        };
        let inner = e.into_inner();
        Error::ConfigSyntax {
            path: path.to_path_buf(),
            field,
            message: format!("{}{}", inner.message(), line_of(text, inner.span())),
        }
    })
}

/// Checks `model.rule` and `model.clip` (every family has them) and returns the rule with its
/// constants.
pub(crate) fn check_rule(
    bad: &dyn Fn(&str, String, &str) -> Error,
    rule: Rule,
    clip: Option<f64>,
) -> Result<RuleSpec> {
    match (rule, clip) {
        (Rule::Clipped, Some(c)) if !(c.is_finite() && c > 0.0) => Err(bad(
            "model.clip",
            c.to_string(),
            "expected a finite bound > 0",
        )),
        (Rule::Clipped, c) => Ok(RuleSpec {
            rule,
            clip: c.unwrap_or(DEFAULT_CLIP),
        }),
        (_, Some(c)) => Err(bad(
            "model.clip",
            c.to_string(),
            "applies only to `rule = \"clipped\"`; remove it",
        )),
        (_, None) => Ok(RuleSpec::new(rule)),
    }
}

/// Checks `model.modulation` against the network it gates: a modulator needs plastic
/// connections (`plastic`; `why_not` says in the error what lacks them), and retroactive
/// modulation the clipped rule (the bound of its `H`).
pub(crate) fn check_modulation(
    bad: &dyn Fn(&str, String, &str) -> Error,
    modulation: Modulation,
    rule: Rule,
    (plastic, why_not): (bool, &str),
) -> Result<()> {
    if modulation == Modulation::None {
        return Ok(());
    }
    if !plastic {
        return Err(bad(
            "model.modulation",
            format!("\"{}\"", modulation.name()),
            &format!("\"none\" without a plastic network ({why_not} has no trace to modulate)"),
        ));
    }
    if modulation == Modulation::Retroactive && rule != Rule::Clipped {
        return Err(bad(
            "model.rule",
            format!("\"{}\"", rule.name()),
            "\"clipped\" with model.modulation = \"retroactive\" (its H is clipped, model.clip the bound; its eligibility trace decays as Hebb's)",
        ));
    }
    Ok(())
}

/// The rule of a validated config's `model.rule` and `model.clip`.
pub(crate) fn rule_spec(rule: Rule, clip: Option<f64>) -> RuleSpec {
    RuleSpec {
        rule,
        clip: clip.unwrap_or(DEFAULT_CLIP),
    }
}
