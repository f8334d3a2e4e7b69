//! Model families and the one registry every command goes through.
//!
//! A family says what it is once, by implementing [`Family`]: which `task.kind` values its
//! configs carry, how its config is read and validated, how its trainer starts and resumes,
//! what its progress line and final report say, how a trained run is evaluated, and which
//! module holds its trained parameters. Everything around that (a new run's overrides and
//! directory, resuming, extending, the training loop, evaluation's overrides, export) is
//! written once, in [`session`], over any family.
//!
//! The [`Registry`] holds the families a program knows: [`Registry::builtin`] the library's
//! four, one line each; a program (or a test) adds its own with [`Registry::with`]. A config
//! file or a run directory is sent to the family whose [`Family::owns`] accepts its
//! `task.kind`.
//!
//! Adding a family: a folder with its config, model, task and trainer (a
//! [`crate::learner::Learner`]), a `family.rs` implementing [`Family`] with a
//! `pub static FAMILY: Registered<YourFamily> = Registered::new();`, and one line in
//! [`Registry::builtin`]. `docs/architecture.md` gives the recipe.

pub mod session;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::config::Engine;
use crate::device::{Backend, Precision};
use crate::error::{Error, Result};
use crate::export::NamedTensor;
use crate::learner::{Learner, RunSchedule};
use crate::run::RunDir;

pub use session::{EvalRequest, Report, TrainEnd, TrainRequest, TrainUi};

/// The config keys the command line overrides, the same in every family.
pub struct Keys<'a> {
    /// `train.episodes` (`--episodes`).
    pub episodes: &'a mut usize,
    /// `seed` (`--seed`).
    pub seed: &'a mut u64,
    /// `train.batch` (`eval --batch`).
    pub batch: &'a mut usize,
    /// `train.engine` (`--engine`).
    pub engine: &'a mut Engine,
    /// `device` (`--device`).
    pub device: &'a mut Backend,
    /// `dtype` (`--dtype`).
    pub dtype: &'a mut Precision,
}

/// A row of family `F`'s `metrics.csv`.
pub type Row<F> = <<F as Family>::Trainer as Learner>::Row;
/// Family `F`'s `summary.json`.
pub type Summary<F> = <<F as Family>::Trainer as Learner>::Summary;

/// What a model family is. Implemented once per family, in its folder's `family.rs`.
pub trait Family: 'static {
    /// The family's name (`single-layer`, `recurrent`, `reinforcement`, `few-shot`).
    const NAME: &'static str;
    /// Rows kept for the progress line's averages.
    const PROGRESS_WINDOW: usize = 50;
    /// Its run config (`config.toml`), with its schedule keys and validation.
    type Config: RunSchedule;
    /// Its trainer, which the training loop drives.
    type Trainer: Learner + 'static;

    /// Whether a config whose `task.kind` is `kind` belongs to this family.
    fn owns(kind: &str) -> bool;
    /// Reads and validates a config file.
    fn load(path: &Path) -> Result<Self::Config>;
    /// The config as `config.toml` holds it.
    fn to_toml(config: &Self::Config) -> String;
    /// The keys the command line overrides.
    fn keys(config: &mut Self::Config) -> Keys<'_>;
    /// After `--episodes` changed the run's length from `configured`: what else follows, in
    /// words (the single layer's frozen phase keeps its share). Nothing by default.
    fn rescale(config: &mut Self::Config, configured: usize) -> Option<String> {
        let _ = (config, configured);
        None
    }
    /// Updates at the end of the run trained with frozen parameters, for messages.
    fn frozen(config: &Self::Config) -> Option<usize> {
        let _ = config;
        None
    }

    /// A fresh trainer for a new run (the device is initialised).
    fn start(config: Self::Config) -> Result<Self::Trainer>;
    /// The trainer restored from the run's checkpoint.
    fn resume(run: &RunDir, config: Self::Config) -> Result<Self::Trainer>;
    /// Adds `updates` to a finished run's trainer, naming `source` in errors.
    fn extend(trainer: &mut Self::Trainer, updates: usize, source: &str) -> Result<()>;
    /// The trainer's config.
    fn config(trainer: &Self::Trainer) -> &Self::Config;

    /// What is trained, how and where, in one line (the start of `bohp train`'s output).
    fn describe(trainer: &Self::Trainer) -> String;
    /// The progress line from the last [`Family::PROGRESS_WINDOW`] rows.
    fn progress(recent: &VecDeque<Row<Self>>) -> String;
    /// The lines `bohp train` prints about a finished run.
    fn report(trainer: &Self::Trainer, summary: &Summary<Self>) -> Vec<String>;

    /// `bohp eval`: the trained run in `run` (its final model exists), configured by `config`
    /// with the request's overrides applied, on fresh held-out episodes.
    fn evaluate(run: &RunDir, config: Self::Config, request: &EvalRequest) -> Result<Report>;
    /// The run's trained module on the CPU in the run's precision (its final model exists).
    fn trained(run: &RunDir, config: Self::Config) -> Result<Trained>;
}

/// A trained module of any family, for export.
pub struct Trained {
    /// The model's kind, as exports name it (`single-layer`, `recurrent`, `lstm`, ...).
    pub kind: &'static str,
    /// The module.
    pub module: Box<dyn TrainedModule>,
}

/// What export needs of a trained burn module.
pub trait TrainedModule {
    /// The trained tensors, named by their module paths.
    fn tensors(&self) -> Result<Vec<NamedTensor>>;
    /// Writes the module with burn's safetensors store.
    fn save_safetensors(&self, path: &Path) -> Result<()>;
}

impl<M: burn::module::Module> TrainedModule for M {
    fn tensors(&self) -> Result<Vec<NamedTensor>> {
        crate::export::tensors_of(self)
    }
    fn save_safetensors(&self, path: &Path) -> Result<()> {
        use burn::store::{ModuleSnapshot, SafetensorsStore};
        let mut store = SafetensorsStore::from_file(path.to_path_buf());
        self.save_into(&mut store)
            .map_err(|e| Error::artifact(path, format!("cannot write safetensors: {e}")))
    }
}

/// A family as the registry holds it: the commands' operations on config files and run
/// directories, with the family's types erased. Implemented by [`Registered`].
pub trait DynFamily: Sync {
    /// [`Family::NAME`].
    fn name(&self) -> &'static str;
    /// [`Family::owns`].
    fn owns(&self, kind: &str) -> bool;
    /// Validates the config file at `path`.
    fn check(&self, path: &Path) -> Result<()>;
    /// `bohp train`: a new, resumed or extended run (see [`session::train`]).
    fn train(&self, request: &TrainRequest<'_>, ui: &mut dyn TrainUi) -> Result<TrainEnd>;
    /// `bohp eval` on the finished run in `dir`.
    fn evaluate(&self, dir: &Path, request: &EvalRequest) -> Result<Report>;
    /// The finished run's trained module.
    fn trained(&self, dir: &Path) -> Result<Trained>;
}

/// Family `F` in a registry: `pub static FAMILY: Registered<F> = Registered::new();`.
pub struct Registered<F>(PhantomData<fn() -> F>);

impl<F> Registered<F> {
    /// The registry entry of `F`.
    pub const fn new() -> Registered<F> {
        Registered(PhantomData)
    }
}

impl<F> Default for Registered<F> {
    fn default() -> Self {
        Registered::new()
    }
}

impl<F: Family> DynFamily for Registered<F> {
    fn name(&self) -> &'static str {
        F::NAME
    }
    fn owns(&self, kind: &str) -> bool {
        F::owns(kind)
    }
    fn check(&self, path: &Path) -> Result<()> {
        F::load(path).map(|_| ())
    }
    fn train(&self, request: &TrainRequest<'_>, ui: &mut dyn TrainUi) -> Result<TrainEnd> {
        session::train::<F>(request, ui)
    }
    fn evaluate(&self, dir: &Path, request: &EvalRequest) -> Result<Report> {
        session::evaluate::<F>(dir, request)
    }
    fn trained(&self, dir: &Path) -> Result<Trained> {
        let (run, config) = session::finished::<F>(dir)?;
        F::trained(&run, config)
    }
}

/// Whether `kind` parses as the task-kind enum `K` (how a family's [`Family::owns`] is
/// usually written).
pub fn kind_is<K: DeserializeOwned>(kind: &str) -> bool {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        kind.into_deserializer();
    K::deserialize(de).is_ok()
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

    /// The family named `name`.
    pub fn named(&self, name: &str) -> Option<&'static dyn DynFamily> {
        self.families.iter().copied().find(|f| f.name() == name)
    }

    /// The family of a config's text, from its `task.kind`; `None` when the text has no
    /// string `task.kind` or no family owns it.
    pub fn of_text(&self, text: &str) -> Option<&'static dyn DynFamily> {
        let value: toml::Value = toml::from_str(text).ok()?;
        let kind = value.get("task")?.get("kind")?.as_str()?;
        self.families.iter().copied().find(|f| f.owns(kind))
    }

    /// The family of the config file at `path`. When the file cannot be read or names no
    /// family's kind, the first family (the single layer), whose loader then names what is
    /// wrong with the file.
    pub fn of_file(&self, path: &Path) -> &'static dyn DynFamily {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| self.of_text(&text))
            .unwrap_or(self.families[0])
    }

    /// The family of the run in `dir`, from its `config.toml` (as [`Registry::of_file`]).
    pub fn of_run(&self, dir: &Path) -> &'static dyn DynFamily {
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
            (Some(dir), _) => self.of_run(dir),
            (None, Some(path)) => self.of_file(path),
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
        self.of_run(dir).evaluate(dir, request)
    }

    /// The trained module of the finished run in `dir`.
    pub fn trained(&self, dir: &Path) -> Result<Trained> {
        self.of_run(dir).trained(dir)
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
