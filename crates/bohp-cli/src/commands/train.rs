//! `bohp train`: a new run, a resumed one, or an extended one, of any family. Each family
//! prepares its trainer (from a config, or from a run's checkpoint); [`drive`] runs it through
//! the one training loop, [`bohp::learner::train`].

use std::collections::VecDeque;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bohp::config::{Engine, RunConfig};
use bohp::device::{Backend, Precision, init_device};
use bohp::learner::{Learner, Observer, Outcome, train};
use bohp::recurrent::config::{Family as ConfigFamily, RecurrentConfig};
use bohp::recurrent::tasks::RecurrentTaskKind;
use bohp::recurrent::train::{RecurrentRow, RecurrentTrainer};
use bohp::rl::config::RlConfig;
use bohp::rl::train::{RlRow, RlTrainer};
use bohp::run::{MetricsRow, RunDir, write_atomic};
use bohp::train::Trainer;
use indicatif::ProgressBar;

use super::*;
use crate::args::*;

pub(crate) fn train_command(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    if args.extend.is_some() && args.resume.is_none() {
        bail!("--extend N: adds updates to a finished run, so it goes with --resume RUN_DIR");
    }
    let family = match (&args.config, &args.resume) {
        (Some(path), _) => family_of_file(path),
        (None, Some(dir)) => family_of_file(&dir.join("config.toml")),
        (None, None) => None,
    };
    match family {
        Some(ConfigFamily::Recurrent) => train_recurrent(cli, args),
        Some(ConfigFamily::Reinforcement) => train_rl(cli, args),
        _ => train_single_layer(cli, args),
    }
}

/// What `train --resume` needs of a family's trainer, beside the training loop.
trait Family: Learner + Sized {
    type Config: Clone;
    /// Reads and validates a config file.
    fn load(path: &Path) -> Result<Self::Config>;
    /// The config's device (to override) and precision.
    fn placement(config: &mut Self::Config) -> (&mut Backend, Precision);
    /// The trainer restored from the run's checkpoint.
    fn resume(run: &RunDir, config: Self::Config) -> Result<Self>;
    /// Adds `updates` to the finished run.
    fn extend(&mut self, updates: usize, source: &str) -> Result<()>;
    /// The trainer's config.
    fn config(&self) -> &Self::Config;
    /// The config as written to `config.toml`.
    fn to_toml(config: &Self::Config) -> String;
    /// Frozen updates at the end of the run (single layer), for messages.
    fn frozen(config: &Self::Config) -> Option<usize>;
}

impl Family for Trainer {
    type Config = RunConfig;
    fn load(path: &Path) -> Result<RunConfig> {
        Ok(RunConfig::load(path)?)
    }
    fn placement(config: &mut RunConfig) -> (&mut Backend, Precision) {
        (&mut config.device, config.dtype)
    }
    fn resume(run: &RunDir, config: RunConfig) -> Result<Trainer> {
        let engine = engine(config.train.engine);
        Ok(Trainer::resume(run, config, engine)?)
    }
    fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        Ok(Trainer::extend(self, updates, source)?)
    }
    fn config(&self) -> &RunConfig {
        Trainer::config(self)
    }
    fn to_toml(config: &RunConfig) -> String {
        config.to_toml()
    }
    fn frozen(config: &RunConfig) -> Option<usize> {
        Some(config.train.freeze_last)
    }
}

impl Family for RlTrainer {
    type Config = RlConfig;
    fn load(path: &Path) -> Result<RlConfig> {
        Ok(RlConfig::load(path)?)
    }
    fn placement(config: &mut RlConfig) -> (&mut Backend, Precision) {
        (&mut config.device, config.dtype)
    }
    fn resume(run: &RunDir, config: RlConfig) -> Result<RlTrainer> {
        Ok(RlTrainer::resume(run, config)?)
    }
    fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        Ok(RlTrainer::extend(self, updates, source)?)
    }
    fn config(&self) -> &RlConfig {
        RlTrainer::config(self)
    }
    fn to_toml(config: &RlConfig) -> String {
        config.to_toml()
    }
    fn frozen(_: &RlConfig) -> Option<usize> {
        None
    }
}

impl Family for RecurrentTrainer {
    type Config = RecurrentConfig;
    fn load(path: &Path) -> Result<RecurrentConfig> {
        Ok(RecurrentConfig::load(path)?)
    }
    fn placement(config: &mut RecurrentConfig) -> (&mut Backend, Precision) {
        (&mut config.device, config.dtype)
    }
    fn resume(run: &RunDir, config: RecurrentConfig) -> Result<RecurrentTrainer> {
        Ok(RecurrentTrainer::resume(run, config)?)
    }
    fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        Ok(RecurrentTrainer::extend(self, updates, source)?)
    }
    fn config(&self) -> &RecurrentConfig {
        RecurrentTrainer::config(self)
    }
    fn to_toml(config: &RecurrentConfig) -> String {
        config.to_toml()
    }
    fn frozen(_: &RecurrentConfig) -> Option<usize> {
        None
    }
}

/// `train --resume DIR [--extend N]`: the run's trainer from its checkpoint, on its own device
/// or `--device` (`--dtype` may not change the precision). With `--extend`, the run's new
/// config (with the run's own device, not a `--device` override), a checkpoint, and no
/// `summary.json` (the run is unfinished again).
fn resume<F: Family>(cli: &Cli, args: &TrainArgs, dir: &Path) -> Result<(RunDir, F::Config, F)> {
    let run = RunDir::open(dir)?;
    let mut config = F::load(&run.config_path())?;
    let (device, dtype) = F::placement(&mut config);
    let own_device = *device;
    if let Some(asked) = cli.dtype
        && asked != dtype
    {
        bail!(
            "--dtype {asked}: the run in {} was trained in {dtype}; resume it in the same precision",
            dir.display()
        );
    }
    if let Some(asked) = cli.device {
        *device = asked;
    }
    init_device(*device, dtype)?;
    let mut trainer = F::resume(&run, config)?;
    if let Some(updates) = args.extend {
        trainer.extend(
            updates,
            &format!("{} with --extend {updates}", run.config_path().display()),
        )?;
        let mut extended = trainer.config().clone();
        *F::placement(&mut extended).0 = own_device;
        write_atomic(&run.config_path(), F::to_toml(&extended).as_bytes())?;
        trainer.checkpoint(&run)?;
        let summary = run.summary_path();
        if summary.exists() {
            std::fs::remove_file(&summary)
                .with_context(|| format!("{}: cannot remove", summary.display()))?;
        }
        eprintln!(
            "{}: extended by {updates} updates to {}{}",
            run.path().display(),
            trainer.total_episodes(),
            F::frozen(&extended).map_or(String::new(), |f| format!(" (the last {f} frozen)"))
        );
    }
    let config = trainer.config().clone();
    Ok((run, config, trainer))
}

fn train_single_layer(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    let (run, config, trainer) = if let Some(dir) = &args.resume {
        resume::<Trainer>(cli, args, dir)?
    } else {
        let path = args
            .config
            .as_ref()
            .expect("clap requires a config without --resume");
        let mut config = RunConfig::load(path)?;
        let configured = config.train.episodes;
        let mut flags = args.override_schedule(&mut config.train.episodes, &mut config.seed);
        if let Some(note) = config.scale_frozen_phase(configured) {
            eprintln!("{note}");
        }
        if let Some(engine) = args.engine {
            config.train.engine = engine;
            flags.push("--engine");
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        if let Some(dtype) = cli.dtype {
            config.dtype = dtype;
        }
        if !flags.is_empty() {
            config.validate(&format!("{} with {}", path.display(), flags.join(" ")))?;
        }
        // Fail on an unusable device, or anything else the trainer needs, before creating
        // anything.
        init_device(config.device, config.dtype)?;
        let trainer = Trainer::new(config.clone(), engine(config.train.engine))?;
        let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
        let run = RunDir::create(&dir)?;
        run.write_config(&config)?;
        (run, config, trainer)
    };
    let what = format!(
        "{} on {} ({}, {} gradients), batch {}",
        config.task.kind, config.device, config.dtype, config.train.engine, config.train.batch
    );
    let progress = Progress::new(&trainer, cli.quiet, 100, |recent: &VecDeque<MetricsRow>| {
        let n = recent.len() as f64;
        let loss = recent.iter().map(|r| r.loss).sum::<f64>() / n;
        let error = recent.iter().map(|r| r.error).sum::<f64>() / n;
        let frozen = recent.back().is_some_and(|r| r.frozen == 1);
        let phase = if frozen { " [frozen]" } else { "" };
        format!("loss {loss:.4} error {error:.4}{phase}")
    });
    drive(cli, args, &run, trainer, &what, progress, |_, summary| {
        if let Some(frozen) = summary.frozen {
            println!(
                "frozen phase ({} episodes): {}",
                config.train.freeze_last,
                format_measures(&frozen)
            );
        }
        println!("last 100 episodes: {}", format_measures(&summary.last_100));
        Ok(())
    })
}

fn train_recurrent(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    let (run, config, trainer) = if let Some(dir) = &args.resume {
        resume::<RecurrentTrainer>(cli, args, dir)?
    } else {
        let path = args
            .config
            .as_ref()
            .expect("clap requires a config without --resume");
        let mut config = RecurrentConfig::load(path)?;
        let mut flags = args.override_schedule(&mut config.train.episodes, &mut config.seed);
        if let Some(engine) = args.engine {
            config.train.engine = engine;
            flags.push("--engine");
        }
        if let Some(device) = cli.device {
            config.device = device;
            flags.push("--device");
        }
        if let Some(dtype) = cli.dtype {
            config.dtype = dtype;
        }
        config.validate(&if flags.is_empty() {
            path.display().to_string()
        } else {
            format!("{} with {}", path.display(), flags.join(" "))
        })?;
        init_device(config.device, config.dtype)?;
        // Everything that can fail before the first update (reading CIFAR files, the device)
        // happens before the run directory exists.
        let trainer = RecurrentTrainer::new(config.clone())?;
        let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
        let run = RunDir::create(&dir)?;
        write_atomic(&run.config_path(), config.to_toml().as_bytes())?;
        (run, config, trainer)
    };
    let what = format!(
        "{} ({} model, {} params) with the {} engine on {}, batch {}",
        config.task.kind.name(),
        trainer.model_name(),
        config.num_params(),
        config.train.engine.name(),
        if config.train.engine == Engine::Fused {
            "the host CPU".to_string()
        } else {
            config.device.to_string()
        },
        config.train.batch,
    );
    let progress = Progress::new(
        &trainer,
        cli.quiet,
        50,
        |recent: &VecDeque<RecurrentRow>| {
            let mean = recent.iter().map(|r| r.error).sum::<f64>() / recent.len() as f64;
            let last = recent.back().expect("called after a row");
            format!(
                "error {mean:.4} (last 50 updates), plasticity rate η {:.4}, {:.2} s/update",
                last.eta, last.seconds
            )
        },
    );
    drive(
        cli,
        args,
        &run,
        trainer,
        &what,
        progress,
        |trainer, summary| {
            println!("{}", crate::recurrent::summary_text(summary));
            if config.task.kind == RecurrentTaskKind::Images {
                let png = run.path().join("reconstruction.png");
                crate::recurrent::reconstruction_figure(trainer, &png, 4)?;
                if !cli.quiet {
                    eprintln!("reconstructions: {}", png.display());
                }
            }
            Ok(())
        },
    )
}

fn train_rl(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    let (run, config, trainer) = if let Some(dir) = &args.resume {
        resume::<RlTrainer>(cli, args, dir)?
    } else {
        let path = args
            .config
            .as_ref()
            .expect("clap requires a config without --resume");
        let mut config = RlConfig::load(path)?;
        let mut flags = args.override_schedule(&mut config.train.episodes, &mut config.seed);
        if let Some(engine) = args.engine {
            config.train.engine = engine;
            flags.push("--engine");
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        if let Some(dtype) = cli.dtype {
            config.dtype = dtype;
        }
        config.validate(&if flags.is_empty() {
            path.display().to_string()
        } else {
            format!("{} with {}", path.display(), flags.join(" "))
        })?;
        init_device(config.device, config.dtype)?;
        let trainer = RlTrainer::new(config.clone())?;
        let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
        let run = RunDir::create(&dir)?;
        write_atomic(&run.config_path(), config.to_toml().as_bytes())?;
        (run, config, trainer)
    };
    let what = format!(
        "{:?} ({} network, {} hidden, {} params) by A2C on {} ({}), batch {}",
        config.task.kind,
        config.model.kind.name(),
        config.model.hidden,
        config.network().num_params(),
        config.device,
        config.dtype,
        config.train.batch,
    );
    let progress = Progress::new(&trainer, cli.quiet, 50, |recent: &VecDeque<RlRow>| {
        let mean = recent.iter().map(|r| r.reward).sum::<f64>() / recent.len() as f64;
        let last = recent.back().expect("called after a row");
        format!(
            "reward {mean:.3} per episode (last 50 updates), |M| {:.3}, {:.2} s/update",
            last.modulation, last.seconds
        )
    });
    drive(cli, args, &run, trainer, &what, progress, |_, summary| {
        println!(
            "{} {} ({} params): {} updates; reward per episode over the last tenth {:.3} (a random policy: {:.3})",
            summary.task,
            summary.model,
            summary.params,
            summary.episodes,
            summary.final_reward,
            summary.random_reward
        );
        Ok(())
    })
}

/// Runs `trainer` through the one training loop with Ctrl-C handling, `train.log` and the
/// progress bar; prints the outcome (`finished` adds the family's lines).
fn drive<L: Learner>(
    cli: &Cli,
    args: &TrainArgs,
    run: &RunDir,
    mut trainer: L,
    what: &str,
    mut progress: Progress<L::Row>,
    finished: impl FnOnce(&L, &L::Summary) -> Result<()>,
) -> Result<ExitCode> {
    install_stop_handler()?;
    init_logging(run)?;
    let (first, total) = (trainer.next_episode(), trainer.total_episodes());
    if trainer.is_done() {
        println!(
            "{}: the run has already finished its {total} updates; nothing to do",
            run.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(run = %what, from_episode = first, episodes = total, "training");
    if !cli.quiet {
        eprintln!(
            "{} {what}, updates {first}..{total} -> {}",
            if args.resume.is_some() {
                "resuming"
            } else {
                "training"
            },
            run.path().display()
        );
    }
    let started = std::time::Instant::now();
    let outcome = train(run, &mut trainer, &mut progress, &STOP);
    progress.bar.finish_and_clear();
    match outcome? {
        Outcome::Interrupted { next_episode } => {
            eprintln!(
                "interrupted before update {next_episode}: checkpoint written; continue with \
                 `bohp train --resume {}`",
                run.path().display()
            );
            Ok(ExitCode::from(130))
        }
        Outcome::Finished(summary) => {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "finished updates {first}..{total} in {seconds:.1} s ({:.1} updates/s)",
                (total - first) as f64 / seconds.max(1e-9),
            );
            finished(&trainer, &summary)?;
            println!("run directory: {}", run.path().display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The progress bar, with a message computed from the last `window` rows.
struct Progress<R> {
    bar: ProgressBar,
    recent: VecDeque<R>,
    window: usize,
    message: fn(&VecDeque<R>) -> String,
}

impl<R> Progress<R> {
    fn new<L: Learner<Row = R>>(
        trainer: &L,
        quiet: bool,
        window: usize,
        message: fn(&VecDeque<R>) -> String,
    ) -> Progress<R> {
        let bar = progress_bar(trainer.total_episodes() as u64, "updates", quiet);
        bar.set_position(trainer.next_episode() as u64);
        Progress {
            bar,
            recent: VecDeque::new(),
            window,
            message,
        }
    }
}

impl<R: Copy> Observer<R> for Progress<R> {
    fn episode(&mut self, row: &R) {
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(*row);
        self.bar.inc(1);
        if self.bar.position().is_multiple_of(25) || self.recent.len() == 1 {
            self.bar.set_message((self.message)(&self.recent));
        }
    }
}
