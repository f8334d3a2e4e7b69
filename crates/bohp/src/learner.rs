//! The one training loop every model family runs through.
//!
//! A family (the single plastic layer, recurrent plastic / non-plastic / LSTM networks, and
//! next the networks trained by reinforcement) implements [`Learner`]: how to run one update,
//! what a checkpoint holds, and what its summary says. [`train`] does everything else, once:
//! checkpoints every `train.checkpoint_every` updates (and of the initial parameters), Ctrl-C
//! (checkpoint, then [`Outcome::Interrupted`]), divergence (stop with the update's index and
//! keep the last good checkpoint), `metrics.csv` (rows after the checkpoint a resumed run
//! continues from are re-run identically), the final `model.bpk` and `summary.json` (with the
//! session's wall time and peak memory).
//!
//! **Where the objective comes from.** The loop never sees episodes: [`Learner::step`] asks its
//! task for the next batch and turns it into a loss. A supervised task generates its batch from
//! `(seed, stream, index)` before the forward pass; an interactive task (an environment that
//! reacts to the network's actions) is stepped inside the same call, its rollout producing the
//! loss. Either way the batch of update `k` depends only on the seed and `k` (and, for an
//! environment, on the parameters), which is what makes a resumed run equal the uninterrupted
//! one: nothing but the model, the optimizer and `next_episode` need be saved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::Serialize;

use crate::device::Precision;
use crate::error::{Error, Result};
use crate::run::{Checkpoint, MetricsRecord, RunDir, Snapshot, write_atomic};

/// A non-finite loss or parameter, and the update that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The update's index (0-based).
    pub episode: usize,
    /// What was not finite.
    pub what: String,
}

impl Divergence {
    /// The finite check of a trainer's parameters before a checkpoint: `Err` naming `bad`, the
    /// first parameter found not finite (after update `next_episode - 1`), if there is one.
    pub fn in_parameter(
        next_episode: usize,
        bad: Option<String>,
    ) -> std::result::Result<(), Divergence> {
        match bad {
            None => Ok(()),
            Some(name) => Err(Divergence {
                episode: next_episode.saturating_sub(1),
                what: format!("parameter {name}"),
            }),
        }
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not finite at update {}", self.what, self.episode)
    }
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S> {
    /// All updates ran; the final model and summary were written.
    Finished(S),
    /// Stopped on request after writing a checkpoint before `next_episode`.
    Interrupted {
        /// Where a resumed run will continue.
        next_episode: usize,
    },
}

/// What the session that finished a run measured, for its summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Session {
    /// Seconds spent training over every session of the run (each resume adds its own),
    /// evaluation excluded.
    pub wall_seconds: f64,
    /// The process's peak resident memory (MiB), when the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

/// Receives each update's row from [`train`] (the progress bar, `reproduce`'s bookkeeping).
pub trait Observer<R> {
    /// Called after each update.
    fn episode(&mut self, row: &R);
}

impl<R> Observer<R> for () {
    fn episode(&mut self, _: &R) {}
}

impl<R, F: FnMut(&R)> Observer<R> for F {
    fn episode(&mut self, row: &R) {
        self(row)
    }
}

/// Where a run stands: its next update, its length and its checkpoint interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The next update's index.
    pub next_episode: usize,
    /// The run's total number of updates (`train.episodes`).
    pub episodes: usize,
    /// Updates between checkpoints (`train.checkpoint_every`).
    pub checkpoint_every: usize,
}

impl Progress {
    /// Before update `next_episode` of a run configured by `config`.
    pub fn of<C: RunSchedule>(next_episode: usize, config: &C) -> Progress {
        Progress {
            next_episode,
            episodes: config.episodes(),
            checkpoint_every: config.checkpoint_every(),
        }
    }
}

/// The schedule keys every family's config has (`train.episodes`, `train.checkpoint_every`)
/// and its validation.
pub trait RunSchedule: Clone {
    /// `train.episodes`.
    fn episodes(&self) -> usize;
    /// `train.episodes`, to change.
    fn episodes_mut(&mut self) -> &mut usize;
    /// `train.checkpoint_every`.
    fn checkpoint_every(&self) -> usize;
    /// Validates the config, naming `source` in errors.
    fn check(&self, source: &str) -> Result<()>;
}

/// The config of a finished run extended by `updates` (`bohp train --resume DIR --extend N`),
/// validated; an error if the run (at `next_episode`) has not finished.
pub fn extended<C: RunSchedule>(
    config: &C,
    next_episode: usize,
    updates: usize,
    source: &str,
) -> Result<C> {
    if next_episode < config.episodes() {
        return Err(Error::Unsupported(format!(
            "--extend: the run has run {next_episode} of its {} updates; resume it without --extend to finish it first",
            config.episodes()
        )));
    }
    let mut config = config.clone();
    *config.episodes_mut() = config.episodes().saturating_add(updates);
    config.check(source)?;
    Ok(config)
}

macro_rules! run_schedule {
    ($config:ty) => {
        impl $crate::learner::RunSchedule for $config {
            fn episodes(&self) -> usize {
                self.train.episodes
            }
            fn episodes_mut(&mut self) -> &mut usize {
                &mut self.train.episodes
            }
            fn checkpoint_every(&self) -> usize {
                self.train.checkpoint_every
            }
            fn check(&self, source: &str) -> $crate::error::Result<()> {
                self.validate(source)
            }
        }
    };
}

/// Implements [`RunSchedule`] for a config type whose `train` section has `episodes` and
/// `checkpoint_every` and which has `validate(source)` (each family's `family.rs` invokes it).
pub(crate) use run_schedule;

/// One model family's trainer, as [`train`] drives it.
pub trait Learner {
    /// A row of the family's `metrics.csv`.
    type Row: MetricsRecord;
    /// The family's `summary.json`.
    type Summary: Serialize;

    /// Where the run stands.
    fn progress(&self) -> Progress;
    /// Runs the next update: its task's batch (generated, or rolled out in an environment),
    /// the loss, the gradients and the optimizer step. Fails when the loss or a parameter is
    /// not finite.
    fn step(&mut self) -> std::result::Result<Self::Row, Divergence>;

    /// Up to `count` updates (never past the end of the run), their rows in order. Learners
    /// that read their metrics back from a device every few updates override this to read them
    /// once for all `count`; the default runs [`Learner::step`] `count` times.
    fn steps(&mut self, count: usize) -> std::result::Result<Vec<Self::Row>, Divergence> {
        let mut rows = Vec::with_capacity(count);
        for _ in 0..count {
            if self.is_done() {
                break;
            }
            rows.push(self.step()?);
        }
        Ok(rows)
    }

    /// Updates between metric readbacks: [`train`] asks [`Learner::steps`] for this many at a
    /// time (fewer before a checkpoint or the end).
    fn readback_every(&self) -> usize {
        1
    }

    /// The device the trainer computes on, where it has one: `bohp bench` synchronises it
    /// before stopping the clock and reads its memory.
    fn compute_device(&self) -> Option<&burn::tensor::Device> {
        None
    }

    /// Waits for the work queued on [`Learner::compute_device`].
    fn sync(&self) -> Result<()> {
        match self.compute_device() {
            Some(device) => device
                .sync()
                .map_err(|e| crate::error::Error::Unsupported(format!("the device failed: {e:?}"))),
            None => Ok(()),
        }
    }

    /// Bytes the device's allocator holds (its pools do not shrink: their peak), if it says.
    fn device_memory_bytes(&self) -> Option<u64> {
        self.compute_device()
            .and_then(|d| d.memory_pool_usage())
            .map(|u| u.bytes_reserved)
    }

    /// Checks that every parameter is finite (before a checkpoint).
    fn check_parameters(&self) -> std::result::Result<(), Divergence>;
    /// The checkpoint of the current state (model, optimizer, `next_episode`).
    fn snapshot(&self) -> Result<Snapshot>;
    /// The final model record (`model.bpk`).
    fn model_record(&self) -> Result<Vec<u8>>;
    /// The summary of the finished run from all its rows (those of earlier sessions included).
    fn summarize(&mut self, rows: &[Self::Row], session: Session) -> Result<Self::Summary>;

    /// The next update's index.
    fn next_episode(&self) -> usize {
        self.progress().next_episode
    }

    /// The run's total number of updates.
    fn total_episodes(&self) -> usize {
        self.progress().episodes
    }

    /// Whether all updates have run.
    fn is_done(&self) -> bool {
        self.next_episode() >= self.total_episodes()
    }

    /// Writes a checkpoint before the next update.
    fn checkpoint(&self, run: &RunDir) -> Result<()> {
        run.write_checkpoint(&self.snapshot()?)
    }
}

/// The first parameter of `module` holding a non-finite value, named by its id, or `None`.
pub(crate) fn non_finite_parameter<M: Module>(module: &M) -> Option<String> {
    struct Finite(Option<String>);
    impl ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0.is_none()
                && param
                    .val()
                    .into_data()
                    .convert::<f64>()
                    .iter::<f64>()
                    .any(|x| !x.is_finite())
            {
                self.0 = Some(format!("{} (shape {:?})", param.id, param.val().dims()));
            }
        }
    }
    let mut visitor = Finite(None);
    module.visit(&mut visitor);
    visitor.0
}

/// Every float parameter of `module`, in the module's visiting order, as f64 values.
pub fn parameter_values<M: Module>(module: &M) -> Vec<Vec<f64>> {
    struct Values(Vec<Vec<f64>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data().convert::<f64>();
            self.0.push(data.iter::<f64>().collect());
        }
    }
    let mut visitor = Values(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

/// Reads the checkpoint of `run` for a trainer of `L::Row` rows configured for `dtype` and
/// `total` updates, checking that `config.toml` was not edited since, that the precision and
/// progress fit, and that `metrics.csv` holds one row per update before it. Writes nothing.
pub fn open_checkpoint<R: MetricsRecord>(
    run: &RunDir,
    dtype: Precision,
    total: usize,
) -> Result<Checkpoint> {
    let checkpoint = run.read_checkpoint()?;
    run.check_config_identity(&checkpoint.state)?;
    let state = &checkpoint.state;
    if state.dtype != dtype {
        return Err(Error::artifact(
            &checkpoint.dir,
            format!(
                "checkpoint is in {} but the run's config says dtype = {dtype}",
                state.dtype
            ),
        ));
    }
    if state.next_episode > total {
        return Err(Error::artifact(
            &checkpoint.dir,
            format!(
                "checkpoint is at episode {} but the run has only {total} episodes",
                state.next_episode
            ),
        ));
    }
    run.metrics_before::<R>(state.next_episode)?;
    if let Some(expected) = state.metrics_crc32
        && run.metrics_prefix_crc(state.next_episode)? != expected
    {
        return Err(Error::artifact(
            checkpoint.dir.join("state.json"),
            format!(
                "disagrees with metrics.csv: the {} rows before its next_episode are not those the checkpoint was written after \
                 (state.json or metrics.csv edited since); the run cannot resume from it",
                state.next_episode
            ),
        ));
    }
    Ok(checkpoint)
}

/// Trains `learner` to the end of its run (or until `stop` is set), writing metrics,
/// checkpoints, and at the end the final model and `summary.json` to `run`.
///
/// A new run writes a checkpoint of its initial parameters first, so a run that diverges always
/// leaves a good checkpoint behind. On divergence the error names the update and the
/// checkpoint kept.
pub fn train<L: Learner>(
    run: &RunDir,
    learner: &mut L,
    observer: &mut dyn Observer<L::Row>,
    stop: &AtomicBool,
) -> Result<Outcome<L::Summary>> {
    let _lock = run.lock()?;
    let every = learner.progress().checkpoint_every.max(1);
    let mut last_checkpoint = learner.next_episode();
    if learner.next_episode() == 0 {
        learner.checkpoint(run)?;
    }
    let mut metrics = run.metrics_writer::<L::Row>(learner.next_episode())?;
    // Seconds trained by earlier sessions of this run, from the checkpoint it resumes.
    let before = if learner.next_episode() > 0 {
        run.read_checkpoint_state()
            .map(|(_, state)| state.wall_seconds.unwrap_or(0.0))?
    } else {
        0.0
    };
    let run = &run.timed(before);
    let started = Instant::now();
    let first_episode = learner.next_episode();
    let diverged = |d: Divergence, last_checkpoint: usize| Error::Diverged {
        episode: d.episode,
        what: d.what,
        checkpoint: format!("checkpoint/, taken before episode {last_checkpoint}"),
        run_dir: run.path().to_path_buf(),
    };
    while !learner.is_done() {
        if stop.load(Ordering::SeqCst) {
            metrics.flush()?;
            learner
                .check_parameters()
                .map_err(|d| diverged(d, last_checkpoint))?;
            learner.checkpoint(run)?;
            tracing::info!(
                next_episode = learner.next_episode(),
                "interrupted: checkpoint written"
            );
            return Ok(Outcome::Interrupted {
                next_episode: learner.next_episode(),
            });
        }
        // Updates up to the next checkpoint (or the end) at most, so that checkpoints fall
        // where they would one update at a time.
        let next = learner.next_episode();
        let count = learner
            .readback_every()
            .max(1)
            .min(every - next % every)
            .min(learner.total_episodes() - next);
        let rows = match learner.steps(count) {
            Ok(rows) => rows,
            Err(d) => {
                metrics.flush()?;
                return Err(diverged(d, last_checkpoint));
            }
        };
        for row in &rows {
            metrics.write(row)?;
            observer.episode(row);
        }
        if learner.next_episode().is_multiple_of(every) || learner.is_done() {
            metrics.flush()?;
            learner
                .check_parameters()
                .map_err(|d| diverged(d, last_checkpoint))?;
            learner.checkpoint(run)?;
            last_checkpoint = learner.next_episode();
        }
    }
    metrics.flush()?;
    let session_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        updates = learner.next_episode() - first_episode,
        seconds = session_seconds,
        "training finished"
    );
    let wall_seconds = before + session_seconds;
    write_atomic(&run.model_path(), &learner.model_record()?)?;
    let rows = run.read_metrics::<L::Row>()?;
    let session = Session {
        wall_seconds,
        peak_rss_mib: crate::run::peak_rss_mib(None),
    };
    let summary = learner.summarize(&rows, session)?;
    let json = serde_json::to_vec_pretty(&summary).expect("summary serializes");
    write_atomic(&run.summary_path(), &json)?;
    run.write_checksums()?;
    Ok(Outcome::Finished(summary))
}
