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
use bohp::omniglot::config::OmniglotConfig;
use bohp::omniglot::train::{OmniglotRow, OmniglotTrainer};
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
        Some(ConfigFamily::FewShot) => train_few_shot(cli, args),
        _ => train_single_layer(cli, args),
    }
}

/// What `train --resume` needs of a family's trainer, beside the training loop.
trait Family: Learner + Sized {
    type Config: Clone;
    /// Reads and validates a config file.
    fn load(path: &Path) -> Result<Self::Config>;
    /// The config's device and precision, to override.
    fn placement(config: &mut Self::Config) -> (&mut Backend, &mut Precision);
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
    /// A fresh trainer for a new run.
    fn start(config: Self::Config) -> Result<Self>;
    /// The keys `--episodes`, `--seed` and `--engine` override.
    fn overridden(config: &mut Self::Config) -> (&mut usize, &mut u64, &mut Engine);
    /// After `--episodes` changed the run's length from `configured`: what else follows (the
    /// single layer's frozen phase keeps its share), in words.
    fn rescale(config: &mut Self::Config, configured: usize) -> Option<String>;
    /// Validates the config, naming `source`.
    fn validate(config: &Self::Config, source: &str) -> Result<()>;
}

/// `Family` for a trainer type: `$config` has `load`, `validate`, `to_toml`, `seed`, `device`,
/// `dtype` and `train.{episodes, engine}`; `$start` makes a fresh trainer, `$resume` restores
/// one; `$frozen` gives the frozen updates and `$rescale` scales them (single layer).
macro_rules! family {
    ($trainer:ty, $config:ty, $start:expr, $resume:expr, $frozen:expr, $rescale:expr) => {
        impl Family for $trainer {
            type Config = $config;
            fn load(path: &Path) -> Result<$config> {
                Ok(<$config>::load(path)?)
            }
            fn placement(config: &mut $config) -> (&mut Backend, &mut Precision) {
                (&mut config.device, &mut config.dtype)
            }
            fn resume(run: &RunDir, config: $config) -> Result<$trainer> {
                Ok($resume(run, config)?)
            }
            fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
                Ok(<$trainer>::extend(self, updates, source)?)
            }
            fn config(&self) -> &$config {
                <$trainer>::config(self)
            }
            fn to_toml(config: &$config) -> String {
                config.to_toml()
            }
            fn frozen(config: &$config) -> Option<usize> {
                $frozen(config)
            }
            fn start(config: $config) -> Result<$trainer> {
                Ok($start(config)?)
            }
            fn overridden(config: &mut $config) -> (&mut usize, &mut u64, &mut Engine) {
                (
                    &mut config.train.episodes,
                    &mut config.seed,
                    &mut config.train.engine,
                )
            }
            fn rescale(config: &mut $config, configured: usize) -> Option<String> {
                $rescale(config, configured)
            }
            fn validate(config: &$config, source: &str) -> Result<()> {
                Ok(config.validate(source)?)
            }
        }
    };
}

family!(
    Trainer,
    RunConfig,
    |config: RunConfig| {
        let engine = engine(config.train.engine);
        Trainer::new(config, engine)
    },
    |run: &RunDir, config: RunConfig| {
        let engine = engine(config.train.engine);
        Trainer::resume(run, config, engine)
    },
    |c: &RunConfig| Some(c.train.freeze_last),
    |c: &mut RunConfig, configured| c.scale_frozen_phase(configured)
);
family!(
    RecurrentTrainer,
    RecurrentConfig,
    RecurrentTrainer::new,
    RecurrentTrainer::resume,
    |_: &RecurrentConfig| None,
    |_: &mut RecurrentConfig, _| None
);
family!(
    RlTrainer,
    RlConfig,
    RlTrainer::new,
    RlTrainer::resume,
    |_: &RlConfig| None,
    |_: &mut RlConfig, _| None
);

family!(
    OmniglotTrainer,
    OmniglotConfig,
    OmniglotTrainer::new,
    OmniglotTrainer::resume,
    |_: &OmniglotConfig| None,
    |_: &mut OmniglotConfig, _| None
);

/// A new run from `path`, with the command line's overrides (`--episodes`, `--seed`,
/// `--engine`, `--device`, `--dtype`), validated; everything that can fail before the first
/// update (the device, data files) fails before the run directory exists.
fn new_run<F: Family>(cli: &Cli, args: &TrainArgs, path: &Path) -> Result<(RunDir, F::Config, F)> {
    let mut config = F::load(path)?;
    let (episodes, seed, engine) = F::overridden(&mut config);
    let configured = *episodes;
    let mut flags = args.override_schedule(episodes, seed);
    if let Some(asked) = args.engine {
        *engine = asked;
        flags.push("--engine");
    }
    if let Some(note) = F::rescale(&mut config, configured) {
        eprintln!("{note}");
    }
    let (device, dtype) = F::placement(&mut config);
    if let Some(asked) = cli.device {
        *device = asked;
        flags.push("--device");
    }
    if let Some(asked) = cli.dtype {
        *dtype = asked;
    }
    let (device, dtype) = (*device, *dtype);
    F::validate(
        &config,
        &if flags.is_empty() {
            path.display().to_string()
        } else {
            format!("{} with {}", path.display(), flags.join(" "))
        },
    )?;
    init_device(device, dtype)?;
    let trainer = F::start(config.clone())?;
    let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
    let run = RunDir::create(&dir)?;
    write_atomic(&run.config_path(), F::to_toml(&config).as_bytes())?;
    Ok((run, config, trainer))
}

/// `train --resume DIR [--extend N]`: the run's trainer from its checkpoint, on its own device
/// or `--device` (`--dtype` may not change the precision). With `--extend`, the run's new
/// config (with the run's own device, not a `--device` override), a checkpoint, and no
/// `summary.json` (the run is unfinished again).
fn resume<F: Family>(cli: &Cli, args: &TrainArgs, dir: &Path) -> Result<(RunDir, F::Config, F)> {
    let run = RunDir::open(dir)?;
    let mut config = F::load(&run.config_path())?;
    let (device, dtype) = F::placement(&mut config);
    let (own_device, dtype) = (*device, *dtype);
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
    let (run, config, trainer) = match (&args.resume, &args.config) {
        (Some(dir), _) => resume::<Trainer>(cli, args, dir)?,
        (None, Some(path)) => new_run::<Trainer>(cli, args, path)?,
        (None, None) => unreachable!("clap requires a config without --resume"),
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
    let (run, config, trainer) = match (&args.resume, &args.config) {
        (Some(dir), _) => resume::<RecurrentTrainer>(cli, args, dir)?,
        (None, Some(path)) => new_run::<RecurrentTrainer>(cli, args, path)?,
        (None, None) => unreachable!("clap requires a config without --resume"),
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
    let (run, config, trainer) = match (&args.resume, &args.config) {
        (Some(dir), _) => resume::<RlTrainer>(cli, args, dir)?,
        (None, Some(path)) => new_run::<RlTrainer>(cli, args, path)?,
        (None, None) => unreachable!("clap requires a config without --resume"),
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

fn train_few_shot(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    let (run, config, trainer) = match (&args.resume, &args.config) {
        (Some(dir), _) => resume::<OmniglotTrainer>(cli, args, dir)?,
        (None, Some(path)) => new_run::<OmniglotTrainer>(cli, args, path)?,
        (None, None) => unreachable!("clap requires a config without --resume"),
    };
    let what = format!(
        "Omniglot {}-way {}-shot ({} network, {} params) on {} ({}), batch {}",
        config.task.ways,
        config.task.shots,
        if config.model.plastic {
            "plastic"
        } else {
            "alpha = 0"
        },
        trainer.num_params(),
        config.device,
        config.dtype,
        config.train.batch,
    );
    let progress = Progress::new(&trainer, cli.quiet, 50, |recent: &VecDeque<OmniglotRow>| {
        let mean = recent.iter().map(|r| r.accuracy).sum::<f64>() / recent.len() as f64;
        let last = recent.back().expect("called after a row");
        format!(
            "accuracy {mean:.3} (last 50 updates), eta {:.3}, {:.2} s/update",
            last.eta, last.seconds
        )
    });
    drive(cli, args, &run, trainer, &what, progress, |_, summary| {
        println!(
            "omniglot ({} params): {} updates; training accuracy over the last tenth {:.3}",
            summary.params, summary.episodes, summary.final_train_accuracy
        );
        for a in &summary.held_out {
            println!(
                "held-out alphabets, {}-way 1-shot: accuracy {:.3} [95% CI {:.3}, {:.3}] on {} episodes",
                a.ways, a.accuracy, a.low, a.high, a.episodes
            );
        }
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
