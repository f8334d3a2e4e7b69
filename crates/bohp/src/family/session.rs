//! What `bohp train` and `bohp eval` do around a family, written once for every family: a
//! new run (the command line's overrides, validation, the device, then the run directory),
//! a resumed or extended one, the training loop with a progress line, and evaluation of a
//! finished run with its overrides.

use std::any::Any;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::{Family, Row};
use crate::device::{Backend, Precision, init_device};
use crate::engines::Engine;
use crate::error::{Error, Result};
use crate::learner::{Learner, Observer, Outcome, RunSchedule};
use crate::run::{RunDir, write_atomic};

/// What `bohp train` asks for.
#[derive(Debug, Clone)]
pub struct TrainRequest<'a> {
    /// The config file of a new run.
    pub config: Option<PathBuf>,
    /// The run directory to resume (then `config` is not read).
    pub resume: Option<PathBuf>,
    /// A new run's directory.
    pub out: PathBuf,
    /// Updates to add to a finished run (with `resume`).
    pub extend: Option<usize>,
    /// `--episodes`: the new run's length.
    pub episodes: Option<usize>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--engine`.
    pub engine: Option<Engine>,
    /// `--device`: a new run's device, or where a resumed one continues.
    pub device: Option<Backend>,
    /// `--dtype`: a new run's precision (a resumed run keeps its own).
    pub dtype: Option<Precision>,
    /// Set to stop after the current update (a checkpoint is written).
    pub stop: &'a AtomicBool,
}

/// How a [`TrainRequest`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEnd {
    /// The run had already finished its `total` updates: nothing ran.
    AlreadyDone {
        /// The run's directory.
        run: PathBuf,
        /// Its updates.
        total: usize,
    },
    /// Stopped on request; a checkpoint before `next_episode` was written.
    Interrupted {
        /// The run's directory.
        run: PathBuf,
        /// Where a resumed run continues.
        next_episode: usize,
    },
    /// Updates `first..total` ran; the final model and summary were written.
    Finished {
        /// The run's directory.
        run: PathBuf,
        /// The first update this session ran.
        first: usize,
        /// The run's updates.
        total: usize,
        /// Wall seconds of this session's training.
        seconds: f64,
        /// The family's report on the run, with what [`TrainUi::finished`] added.
        lines: Vec<String>,
    },
}

/// What the user sees of a training session (the command line: stderr and a progress bar).
pub trait TrainUi {
    /// A message for the user.
    fn note(&mut self, text: &str);
    /// Training begins in `run`: `what` is trained, updates `first..total`, `resumed` or new.
    fn begin(
        &mut self,
        run: &RunDir,
        what: &str,
        first: usize,
        total: usize,
        resumed: bool,
    ) -> Result<()>;
    /// After each update: the updates done, and (every 25 updates and after the first) the
    /// family's progress line.
    fn update(&mut self, done: usize, message: Option<String>);
    /// The run of family `family` finished; `trainer` is its trainer (downcast it for
    /// figures of your own). Lines returned are added to the report.
    fn finished(
        &mut self,
        run: &RunDir,
        family: &'static str,
        trainer: &dyn Any,
    ) -> Result<Vec<String>> {
        let _ = (run, family, trainer);
        Ok(Vec::new())
    }
}

/// `bohp train` for family `F`: a new run from `request.config`, or the run in
/// `request.resume` resumed (and extended by `request.extend`), trained to its end or until
/// `request.stop` is set.
pub fn train<F: Family>(request: &TrainRequest<'_>, ui: &mut dyn TrainUi) -> Result<TrainEnd> {
    if request.extend.is_some() && request.resume.is_none() {
        return Err(Error::Unsupported(
            "--extend N: adds updates to a finished run, so it goes with --resume RUN_DIR".into(),
        ));
    }
    // A resumed run is locked before anything is read or written (`--extend` rewrites its
    // config); the training loop's own lock nests in this one.
    let _lock = match &request.resume {
        Some(dir) => Some(RunDir::open(dir)?.lock()?),
        None => None,
    };
    let (run, mut trainer) = match (&request.resume, &request.config) {
        (Some(dir), _) => resume::<F>(request, dir, ui)?,
        (None, Some(path)) => new_run::<F>(request, path, ui)?,
        (None, None) => {
            return Err(Error::Unsupported(
                "train: give a config file, or --resume RUN_DIR".into(),
            ));
        }
    };
    let (first, total) = (trainer.next_episode(), trainer.total_episodes());
    // (A run stopped while writing its final files goes on to write them.)
    if trainer.is_done() && run.final_files_written() {
        return Ok(TrainEnd::AlreadyDone {
            run: run.path().to_path_buf(),
            total,
        });
    }
    let what = F::describe(&trainer);
    ui.begin(&run, &what, first, total, request.resume.is_some())?;
    tracing::info!(run = %what, from_episode = first, episodes = total, "training");
    let started = Instant::now();
    let mut observer = Progress::<F> {
        ui,
        recent: VecDeque::new(),
        done: first,
    };
    let outcome = crate::learner::train(&run, &mut trainer, &mut observer, request.stop)?;
    let ui = observer.ui;
    match outcome {
        Outcome::Interrupted { next_episode } => Ok(TrainEnd::Interrupted {
            run: run.path().to_path_buf(),
            next_episode,
        }),
        Outcome::Finished(summary) => {
            let seconds = started.elapsed().as_secs_f64();
            let mut lines = F::report(&trainer, &summary);
            lines.extend(ui.finished(&run, F::NAME, &trainer)?);
            Ok(TrainEnd::Finished {
                run: run.path().to_path_buf(),
                first,
                total,
                seconds,
                lines,
            })
        }
    }
}

/// Forwards each row to the [`TrainUi`] with the family's progress line.
struct Progress<'u, F: Family> {
    ui: &'u mut dyn TrainUi,
    recent: VecDeque<Row<F>>,
    done: usize,
}

impl<F: Family> Observer<Row<F>> for Progress<'_, F> {
    fn episode(&mut self, row: &Row<F>) {
        if self.recent.len() == F::PROGRESS_WINDOW.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(*row);
        self.done += 1;
        let message = (self.done.is_multiple_of(25) || self.recent.len() == 1)
            .then(|| F::progress(&self.recent));
        self.ui.update(self.done, message);
    }
}

/// A new run from `path` with the request's overrides, validated; everything that can fail
/// before the first update (the device, data files) fails before the run directory exists.
fn new_run<F: Family>(
    request: &TrainRequest<'_>,
    path: &Path,
    ui: &mut dyn TrainUi,
) -> Result<(RunDir, F::Trainer)> {
    let mut config = F::load(path)?;
    let keys = F::keys(&mut config);
    let configured = *keys.episodes;
    let mut flags = Vec::new();
    if let Some(e) = request.episodes {
        *keys.episodes = e;
        flags.push("--episodes");
    }
    if let Some(s) = request.seed {
        *keys.seed = s;
        flags.push("--seed");
    }
    if let Some(asked) = request.engine {
        *keys.engine = asked;
        flags.push("--engine");
    }
    if let Some(asked) = request.device {
        *keys.device = asked;
        flags.push("--device");
    }
    if let Some(asked) = request.dtype {
        *keys.dtype = asked;
    }
    let (device, dtype) = (*keys.device, *keys.dtype);
    if let Some(note) = F::rescale(&mut config, configured) {
        ui.note(&note);
    }
    config.check(&if flags.is_empty() {
        path.display().to_string()
    } else {
        format!("{} with {}", path.display(), flags.join(" "))
    })?;
    init_device(device, dtype)?;
    let trainer = F::start(config.clone())?;
    let run = RunDir::create(&request.out)?;
    write_atomic(&run.config_path(), F::to_toml(&config).as_bytes())?;
    Ok((run, trainer))
}

/// The run in `dir` from its checkpoint, on its own device or `--device` (`--dtype` may not
/// change the precision). With `--extend`, the run's new config (with the run's own device,
/// not a `--device` override), a checkpoint, and no `summary.json` (the run is unfinished
/// again).
fn resume<F: Family>(
    request: &TrainRequest<'_>,
    dir: &Path,
    ui: &mut dyn TrainUi,
) -> Result<(RunDir, F::Trainer)> {
    let run = RunDir::open(dir)?;
    let mut config = F::load(&run.config_path())?;
    let keys = F::keys(&mut config);
    let (own_device, dtype) = (*keys.device, *keys.dtype);
    if let Some(asked) = request.dtype
        && asked != dtype
    {
        return Err(Error::Unsupported(format!(
            "--dtype {asked}: the run in {} was trained in {dtype}; resume it in the same precision",
            dir.display()
        )));
    }
    if let Some(asked) = request.device {
        *keys.device = asked;
    }
    init_device(*keys.device, dtype)?;
    // A run killed between writing its config and its first checkpoint starts again.
    if request.extend.is_none() && run.stopped_before_first_checkpoint() {
        ui.note(&format!(
            "{}: stopped before its first checkpoint; starting again from update 0",
            run.path().display()
        ));
        return Ok((run, F::start(config)?));
    }
    let mut trainer = F::resume(&run, config)?;
    if let Some(updates) = request.extend {
        // The extension rebuilds every final file from the (verified) checkpoint and metrics;
        // a final file damaged since the run finished is said, not silently replaced.
        if let Err(e) = run.verify_finished() {
            ui.note(&format!(
                "warning: {e}; the extended run writes its final files again from the checkpoint"
            ));
        }
        F::extend(
            &mut trainer,
            updates,
            &format!("{} with --extend {updates}", run.config_path().display()),
        )?;
        let mut extended = F::config(&trainer).clone();
        *F::keys(&mut extended).device = own_device;
        run.remove_checksums()?;
        write_atomic(&run.config_path(), F::to_toml(&extended).as_bytes())?;
        trainer.checkpoint(&run)?;
        let summary = run.summary_path();
        if summary.exists() {
            std::fs::remove_file(&summary).map_err(|e| Error::io(&summary, "cannot remove", e))?;
        }
        ui.note(&format!(
            "{}: extended by {updates} updates to {}{}",
            run.path().display(),
            trainer.total_episodes(),
            F::frozen(&extended).map_or(String::new(), |f| format!(" (the last {f} frozen)"))
        ));
    }
    Ok((run, trainer))
}

/// What `bohp eval` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    /// Held-out episodes.
    pub episodes: usize,
    /// Episodes per batch.
    pub batch: usize,
    /// The evaluation seed (the run's own when `None`).
    pub seed: Option<u64>,
    /// `--device`.
    pub device: Option<Backend>,
    /// `--dtype`.
    pub dtype: Option<Precision>,
    /// Lake et al.'s one-shot runs, for families that evaluate on them (Omniglot).
    pub omniglot_runs: Option<PathBuf>,
}

impl EvalRequest {
    /// An error unless the request is for a family that reads `--omniglot-runs`.
    pub fn refuse_omniglot_runs(&self) -> Result<()> {
        match self.omniglot_runs {
            Some(_) => Err(Error::Unsupported(
                "--omniglot-runs: applies to Omniglot runs (task.kind = \"omniglot\")".into(),
            )),
            None => Ok(()),
        }
    }
}

/// A command's result: the JSON `--json` prints, and the lines printed otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The machine-readable result.
    pub json: serde_json::Value,
    /// The human-readable lines.
    pub lines: Vec<String>,
}

/// The finished run in `dir` (its final model exists and every file matches
/// `checksums.json`, [`RunDir::verify_finished`]) and its config.
pub(crate) fn finished<F: Family>(dir: &Path) -> Result<(RunDir, F::Config)> {
    let run = RunDir::open(dir)?;
    run.verify_finished()?;
    let config = F::load(&run.config_path())?;
    Ok((run, config))
}

/// `bohp eval` for family `F`: the finished run in `dir` with the request's overrides
/// (`--device`, `--dtype`, `--seed`, `--batch`), on the device.
pub fn evaluate<F: Family>(dir: &Path, request: &EvalRequest) -> Result<Report> {
    if request.episodes == 0 {
        return Err(Error::Unsupported("--episodes: expected at least 1".into()));
    }
    if request.batch == 0 {
        return Err(Error::Unsupported("--batch: expected at least 1".into()));
    }
    let (run, mut config) = finished::<F>(dir)?;
    let keys = F::keys(&mut config);
    if let Some(asked) = request.device {
        *keys.device = asked;
    }
    if let Some(asked) = request.dtype {
        *keys.dtype = asked;
    }
    *keys.seed = request.seed.unwrap_or(*keys.seed);
    *keys.batch = request.batch;
    F::evaluate(&run, config, request)
}
