//! Model families and the one registry every command goes through.
//!
//! A family says what it is once, by implementing [`Family`]: which `task.kind` values its
//! configs carry, how its config is read and validated, how its trainer starts and resumes,
//! what its progress line and final report say, how a trained run is evaluated, and which
//! module holds its trained parameters. Everything around that (a new run's overrides and
//! directory, resuming, extending, the training loop, evaluation's overrides, export) is
//! written once, in [`session`], over any family.
//!
//! The [`crate::registry::Registry`] holds the families a program knows.
//!
//! Adding a family: a folder with its config, model, task and trainer (a
//! [`crate::learner::Learner`]), a `family.rs` implementing [`Family`] with a
//! `pub static FAMILY: Registered<YourFamily> = Registered::new();`, and one line in
//! [`crate::registry::Registry::builtin`]. `docs/architecture.md` gives the recipe.

pub mod bench;
pub mod session;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;

use crate::device::{Backend, Precision};
use crate::engines::Engine;
use crate::error::Result;
pub use crate::export::{Trained, TrainedModule};
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
    /// `train.freeze_last`, where the family has a frozen phase (`bohp bench` turns it off).
    pub freeze_last: Option<&'a mut usize>,
}

/// [`Family::load`], [`Family::to_toml`] and [`Family::keys`] for a config type with `load`,
/// `to_toml`, `seed`, `device`, `dtype` and `train.{episodes, batch, engine}` (every family of
/// the library); invoked inside `impl Family`.
macro_rules! config_methods {
    ($config:ty) => {
        fn load(path: &std::path::Path) -> $crate::error::Result<$config> {
            <$config>::load(path)
        }
        fn to_toml(config: &$config) -> String {
            config.to_toml()
        }
        fn keys(c: &mut $config) -> $crate::family::Keys<'_> {
            $crate::family::Keys {
                episodes: &mut c.train.episodes,
                seed: &mut c.seed,
                batch: &mut c.train.batch,
                engine: &mut c.train.engine,
                device: &mut c.device,
                dtype: &mut c.dtype,
                freeze_last: Some(&mut c.train.freeze_last),
            }
        }
    };
}
pub(crate) use config_methods;

/// [`Family::start`], [`Family::resume`], [`Family::extend`] and [`Family::config`] for a
/// trainer type with `new(config)`, `resume(run, config)`, `extend` and `config`; invoked
/// inside `impl Family`.
macro_rules! trainer_methods {
    ($config:ty, $trainer:ty) => {
        fn start(config: $config) -> $crate::error::Result<$trainer> {
            <$trainer>::new(config)
        }
        fn resume(run: &$crate::run::RunDir, config: $config) -> $crate::error::Result<$trainer> {
            <$trainer>::resume(run, config)
        }
        fn extend(
            trainer: &mut $trainer,
            updates: usize,
            source: &str,
        ) -> $crate::error::Result<()> {
            trainer.extend(updates, source)
        }
        fn config(trainer: &$trainer) -> &$config {
            trainer.config()
        }
    };
}
pub(crate) use trainer_methods;

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

    /// The `task.kind`s of this family's configs, as written in them.
    const KINDS: &'static [&'static str];

    /// Whether a config whose `task.kind` is `kind` belongs to this family.
    fn owns(kind: &str) -> bool {
        Self::KINDS.contains(&kind)
    }
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
    /// with the request's overrides applied, on fresh held-out episodes, on the config's device
    /// (which this method initialises).
    fn evaluate(run: &RunDir, config: Self::Config, request: &EvalRequest) -> Result<Report>;
    /// The run's trained module on the CPU in the run's precision (its final model exists).
    fn trained(run: &RunDir, config: Self::Config) -> Result<Trained>;
}

/// A family as the registry holds it: the commands' operations on config files and run
/// directories, with the family's types erased. Implemented by [`Registered`].
pub trait DynFamily: Sync {
    /// [`Family::NAME`].
    fn name(&self) -> &'static str;
    /// [`Family::owns`].
    fn owns(&self, kind: &str) -> bool;
    /// [`Family::KINDS`].
    fn kinds(&self) -> &'static [&'static str];
    /// Validates the config file at `path`.
    fn check(&self, path: &Path) -> Result<()>;
    /// `bohp train`: a new, resumed or extended run (see [`session::train`]).
    fn train(&self, request: &TrainRequest<'_>, ui: &mut dyn TrainUi) -> Result<TrainEnd>;
    /// `bohp eval` on the finished run in `dir`.
    fn evaluate(&self, dir: &Path, request: &EvalRequest) -> Result<Report>;
    /// The finished run's trained module.
    fn trained(&self, dir: &Path) -> Result<Trained>;
    /// `bohp bench`: one cell of the workload configured at `path` ([`bench::measure`]).
    fn bench(
        &self,
        path: &Path,
        cell: &bench::BenchCell,
        timing: &bench::BenchTiming,
    ) -> Result<bench::BenchMeasure>;
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
    fn kinds(&self) -> &'static [&'static str] {
        F::KINDS
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
    fn bench(
        &self,
        path: &Path,
        cell: &bench::BenchCell,
        timing: &bench::BenchTiming,
    ) -> Result<bench::BenchMeasure> {
        bench::measure::<F>(path, cell, timing)
    }
}
