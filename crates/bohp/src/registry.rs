//! The one registry of model families: every command finds a config's or a run's family here.
//!
//! [`Registry::builtin`] lists the library's families, one line each; a program (or a test)
//! adds its own with [`Registry::with`]. A config file or a run directory goes to the first
//! family whose [`crate::family::Family::owns`] accepts its `task.kind`. [`TrainedModel`] and
//! [`load_trained`] give the library's families' trained models typed, for code that
//! inspects them.

use std::path::Path;

use crate::error::{Error, Result};
use crate::family::{DynFamily, EvalRequest, Report, TrainEnd, TrainRequest, TrainUi, Trained};
use crate::recurrent::config::RecurrentConfig;
use crate::recurrent::model::{LstmNet, PlasticRnn};
use crate::single::config::SingleLayerConfig;
use crate::single::network::PlasticNet;

/// A config text's `task.kind`, when it parses and has a string one.
fn task_kind(text: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(text).ok()?;
    Some(value.get("task")?.get("kind")?.as_str()?.to_string())
}

/// The families a program knows, in order: a config goes to the first that owns its
/// `task.kind`.
#[derive(Clone)]
pub struct Registry {
    families: Vec<&'static dyn DynFamily>,
}

impl Registry {
    /// The library's families. A new family adds its line here.
    pub fn builtin() -> Registry {
        Registry {
            families: vec![
                &crate::single::FAMILY,
                &crate::recurrent::family::FAMILY,
                &crate::rl::family::FAMILY,
                &crate::omniglot::family::FAMILY,
            ],
        }
    }

    /// This registry with `family` added after the others.
    pub fn with(mut self, family: &'static dyn DynFamily) -> Registry {
        self.families.push(family);
        self
    }

    /// The registered families' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.families.iter().map(|f| f.name()).collect()
    }

    /// The family of a config's text, from its `task.kind`; `None` when the text has no
    /// string `task.kind` or no family owns it.
    pub fn of_text(&self, text: &str) -> Option<&'static dyn DynFamily> {
        let kind = task_kind(text)?;
        self.families.iter().copied().find(|f| f.owns(&kind))
    }

    /// The family of the config file at `path`: an error naming `task.kind` and every
    /// family's kinds when `task.kind` is missing, not a string, or a string no family owns.
    /// Text that is not TOML is refused naming the file and line. When the file cannot be
    /// read, the first family (the single layer), whose loader then names the file and why.
    pub fn of_file(&self, path: &Path) -> Result<&'static dyn DynFamily> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(self.families[0]);
        };
        let value: toml::Value = crate::schema::parse_toml(&text, path)?;
        let bad = |value: String| Error::ConfigValue {
            source_name: path.display().to_string(),
            field: "task.kind".into(),
            value,
            expected: format!("expected one of {}", self.kinds_text()),
        };
        match value.get("task").and_then(|t| t.get("kind")) {
            None => Err(bad("(missing)".into())),
            Some(toml::Value::String(kind)) => self
                .families
                .iter()
                .copied()
                .find(|f| f.owns(kind))
                .ok_or_else(|| bad(format!("{kind:?}"))),
            Some(other) => Err(bad(other.to_string())),
        }
    }

    /// The family of the finished run in `dir` (whose loader then verifies its files, once).
    /// When its `config.toml` does not name a family, a failed verification is the error
    /// reported (a corrupt file is named as corrupt, not by the parse error it causes).
    pub fn of_finished_run(&self, dir: &Path) -> Result<&'static dyn DynFamily> {
        self.of_run(dir).map_err(|e| {
            crate::run::RunDir::open(dir)
                .and_then(|run| run.verify_finished())
                .err()
                .unwrap_or(e)
        })
    }

    /// Every family's kinds, for messages: `"a", "b" (family), ...`.
    fn kinds_text(&self) -> String {
        self.families
            .iter()
            .map(|f| {
                let kinds: Vec<String> = f.kinds().iter().map(|k| format!("{k:?}")).collect();
                format!("{} ({})", kinds.join(", "), f.name())
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The family of the run in `dir`, from its `config.toml` (as [`Registry::of_file`]).
    pub fn of_run(&self, dir: &Path) -> Result<&'static dyn DynFamily> {
        self.of_file(&dir.join("config.toml"))
    }

    /// Whether the config file at `path` belongs to the family named `name`.
    pub fn is(&self, path: &Path, name: &str) -> bool {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| self.of_text(&text))
            .is_some_and(|f| f.name() == name)
    }

    /// `bohp train` through the family of the request's config (or resumed run).
    pub fn train(&self, request: &TrainRequest<'_>, ui: &mut dyn TrainUi) -> Result<TrainEnd> {
        let family = match (&request.resume, &request.config) {
            (Some(dir), _) => self.of_run(dir)?,
            (None, Some(path)) => self.of_file(path)?,
            (None, None) => {
                return Err(Error::Unsupported(
                    "train: give a config file, or --resume RUN_DIR".into(),
                ));
            }
        };
        family.train(request, ui)
    }

    /// `bohp eval` through the family of the run in `dir`.
    pub fn evaluate(&self, dir: &Path, request: &EvalRequest) -> Result<Report> {
        self.of_finished_run(dir)?.evaluate(dir, request)
    }

    /// The trained module of the finished run in `dir`.
    pub fn trained(&self, dir: &Path) -> Result<Trained> {
        self.of_finished_run(dir)?.trained(dir)
    }

    /// `bohp export`: the trained parameters of the run in `dir` written to `out` in
    /// `format`; the number of tensors. Refuses to replace an existing file.
    pub fn export(
        &self,
        dir: &Path,
        format: crate::export::ExportFormat,
        out: &Path,
    ) -> Result<usize> {
        crate::export::write(self.trained_for_export(dir, out)?, dir, format, out)
    }

    fn trained_for_export(&self, dir: &Path, out: &Path) -> Result<Trained> {
        if out.exists() {
            return Err(Error::artifact(
                out,
                "already exists; choose another --out (or remove it)",
            ));
        }
        self.trained(dir)
    }
}

/// A trained model of one of the library's families, loaded from a run directory, typed (for
/// code that inspects it; export goes through [`crate::registry::Registry`]).
#[derive(Debug)]
pub enum TrainedModel {
    /// The 2016 single layer (with its readout for the labelled tasks).
    Single(PlasticNet, SingleLayerConfig),
    /// The recurrent plastic (or non-plastic) network.
    Recurrent(PlasticRnn, RecurrentConfig),
    /// The LSTM baseline.
    Lstm(LstmNet, RecurrentConfig),
    /// An actor-critic agent trained by reinforcement.
    ActorCritic(crate::rl::model::Agent, crate::rl::config::RlConfig),
    /// The few-shot network (convolutional embedding and plastic output layer).
    FewShot(
        crate::omniglot::model::FewShotNet,
        crate::omniglot::config::OmniglotConfig,
    ),
}

impl TrainedModel {
    /// `single-layer`, `recurrent`, `lstm`, `actor-critic` or `few-shot`.
    pub fn family(&self) -> &'static str {
        match self {
            TrainedModel::Single(..) => "single-layer",
            TrainedModel::Recurrent(..) => "recurrent",
            TrainedModel::Lstm(..) => "lstm",
            TrainedModel::ActorCritic(..) => "actor-critic",
            TrainedModel::FewShot(..) => "few-shot",
        }
    }
}

/// Loads the final model of the run in `dir` (its `model.bpk`) on the CPU, in the run's
/// precision, as its family's typed model.
pub fn load_trained(dir: &Path) -> Result<TrainedModel> {
    use crate::family::{Family, session::finished};
    use crate::omniglot::family::FewShot;
    use crate::recurrent::family::{Recurrent, TrainedRecurrent};
    use crate::rl::family::Reinforcement;
    use crate::single::SingleLayer;
    let family = Registry::builtin().of_run(dir)?.name();
    Ok(match family {
        FewShot::NAME => {
            let (run, config) = finished::<FewShot>(dir)?;
            let (net, config) = crate::omniglot::family::load_trained(&run, config)?;
            TrainedModel::FewShot(net, config)
        }
        Reinforcement::NAME => {
            let (run, config) = finished::<Reinforcement>(dir)?;
            let (agent, config) = crate::rl::family::load_trained(&run, config)?;
            TrainedModel::ActorCritic(agent, config)
        }
        Recurrent::NAME => {
            let (run, config) = finished::<Recurrent>(dir)?;
            match crate::recurrent::family::load_trained(&run, config)? {
                TrainedRecurrent::Plastic(m, c) => TrainedModel::Recurrent(*m, c),
                TrainedRecurrent::Lstm(m, c) => TrainedModel::Lstm(*m, c),
            }
        }
        _ => {
            let (run, config) = finished::<SingleLayer>(dir)?;
            let (net, config) = crate::single::family::load_trained(&run, config)?;
            TrainedModel::Single(net, config)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variants serde accepts for `K`, from its error for an unknown one.
    fn variants<K: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        use serde::de::IntoDeserializer;
        let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            "no such kind".into_deserializer();
        let message = K::deserialize(de).unwrap_err().to_string();
        let listed = message.split("expected one of ").nth(1).unwrap_or_else(|| {
            message
                .split("expected ")
                .nth(1)
                .expect("serde names the variants")
        });
        listed
            .split(", ")
            .flat_map(|v| v.split(" or "))
            .map(|v| v.trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn every_familys_kinds_are_its_configs_task_kinds() {
        use crate::family::Family;
        let cases: [(&[&str], Vec<String>); 4] = [
            (
                crate::single::SingleLayer::KINDS,
                variants::<crate::single::tasks::TaskKind>(),
            ),
            (
                crate::recurrent::family::Recurrent::KINDS,
                variants::<crate::recurrent::tasks::RecurrentTaskKind>(),
            ),
            (
                crate::rl::family::Reinforcement::KINDS,
                variants::<crate::rl::env::EnvKind>(),
            ),
            (
                crate::omniglot::family::FewShot::KINDS,
                variants::<crate::omniglot::config::FewShotKind>(),
            ),
        ];
        for (kinds, variants) in cases {
            let mut kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
            let mut variants = variants;
            kinds.sort();
            variants.sort();
            assert_eq!(kinds, variants);
        }
    }

    #[test]
    fn a_mistyped_task_kind_is_answered_with_every_familys_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.toml");
        std::fs::write(
            &path,
            "[task]\nkind = \"bandits\"\n[model]\nkind = \"simple\"\n",
        )
        .unwrap();
        let message = match Registry::builtin().of_file(&path) {
            Ok(f) => panic!("{} owns \"bandits\"", f.name()),
            Err(e) => e.to_string(),
        };
        assert!(
            message.contains("task.kind") && message.contains("\"bandits\""),
            "{message}"
        );
        for kind in [
            "one-shot",
            "memorisation",
            "images",
            "bandit",
            "cue",
            "maze",
            "omniglot",
        ] {
            assert!(
                message.contains(&format!("\"{kind}\"")),
                "{kind}: {message}"
            );
        }
        // A task.kind that is missing or not a string is named too.
        let message_of = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Registry::builtin()
                .of_file(&path)
                .err()
                .map(|e| e.to_string())
        };
        for text in ["[task]\nkind = 3\n", "[task]\nsteps = 3\n", "seed = 1\n"] {
            let message = message_of(text);
            assert!(
                message
                    .as_ref()
                    .is_some_and(|m| m.contains("task.kind") && m.contains("\"maze\"")),
                "{text}: {message:?}"
            );
        }
        // Text that is not TOML (here an integer beyond i64) is named with its line.
        let message = message_of("seed = 1\n[task]\nkind = 10000000000000000000\n");
        assert!(
            message
                .as_ref()
                .is_some_and(|m| m.contains("typo.toml") && m.contains("line 3")),
            "{message:?}"
        );
    }
}
