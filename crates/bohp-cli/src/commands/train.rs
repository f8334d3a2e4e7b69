//! `bohp train`: a new run, a resumed one, or an extended one, of either family.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bohp::config::RunConfig;
use bohp::device::init_device;
use bohp::run::{MetricsRow, RunDir};
use bohp::train::{Observer, Outcome, Trainer, train};
use indicatif::ProgressBar;

use super::*;
use crate::args::*;

pub(crate) fn train_recurrent_command(
    cli: &Cli,
    args: &TrainArgs,
    path: &Path,
) -> Result<ExitCode> {
    use bohp::recurrent::config::RecurrentConfig;
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
    let trainer = bohp::recurrent::train::RecurrentTrainer::new(config.clone())?;
    let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
    let run = RunDir::create(&dir)?;
    install_stop_handler()?;
    init_logging(&run)?;
    let Some(summary) = crate::recurrent::train(&run, trainer, config, cli.quiet, &STOP)? else {
        eprintln!(
            "interrupted: {} holds the parameters so far (no summary.json: the run did not finish); \
             recurrent runs cannot be resumed yet",
            run.model_path().display()
        );
        return Ok(ExitCode::from(130));
    };
    println!("{}", crate::recurrent::summary_text(&summary));
    println!("run directory: {}", run.path().display());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn train_command(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    if args.extend.is_some() && args.resume.is_none() {
        bail!("--extend N: adds updates to a finished run, so it goes with --resume RUN_DIR");
    }
    if let Some(path) = &args.config
        && is_recurrent_file(path)
    {
        return train_recurrent_command(cli, args, path);
    }
    if let Some(dir) = &args.resume
        && is_recurrent_file(&dir.join("config.toml"))
    {
        bail!(
            "{}: resuming recurrent runs is not supported yet; the run's model.bpk holds its last saved parameters",
            dir.display()
        );
    }
    let (run, config, mut trainer) = if let Some(dir) = &args.resume {
        let run = RunDir::open(dir)?;
        let mut config = run.read_config()?;
        if let Some(dtype) = cli.dtype
            && dtype != config.dtype
        {
            bail!(
                "--dtype {dtype}: the run in {} was trained in {}; resume it in the same precision",
                dir.display(),
                config.dtype
            );
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        let mut trainer = Trainer::resume(&run, config.clone(), engine(config.train.engine))?;
        if let Some(updates) = args.extend {
            trainer.extend(
                updates,
                &format!("{} with --extend {updates}", run.config_path().display()),
            )?;
            let mut extended = trainer.config().clone();
            // The run's own device, not a --device override, goes into its config.
            extended.device = run.read_config()?.device;
            run.write_config(&extended)?;
            trainer.checkpoint(&run)?;
            let summary = run.summary_path();
            if summary.exists() {
                std::fs::remove_file(&summary)
                    .with_context(|| format!("{}: cannot remove", summary.display()))?;
            }
            eprintln!(
                "{}: extended by {updates} updates to {} (the last {} frozen)",
                run.path().display(),
                extended.train.episodes,
                extended.train.freeze_last
            );
        }
        let config = trainer.config().clone();
        (run, config, trainer)
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

    install_stop_handler()?;
    let total = config.train.episodes;
    init_logging(&run)?;
    if trainer.is_done() {
        println!(
            "{}: the run has already finished its {total} episodes; nothing to do",
            run.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(
        task = %config.task.kind,
        device = %config.device,
        dtype = %config.dtype,
        from_episode = trainer.next_episode(),
        episodes = total,
        "training"
    );
    if !cli.quiet {
        eprintln!(
            "{} {} on {} ({}, {} gradients), episodes {}..{total}, batch {} -> {}",
            if args.resume.is_some() {
                "resuming"
            } else {
                "training"
            },
            config.task.kind,
            config.device,
            config.dtype,
            config.train.engine,
            trainer.next_episode(),
            config.train.batch,
            run.path().display()
        );
    }
    let mut progress = Progress::new(total, trainer.next_episode(), cli.quiet);
    let started = Instant::now();
    let first = trainer.next_episode();
    let outcome = train(&run, &mut trainer, &mut progress, &STOP);
    progress.bar.finish_and_clear();
    match outcome? {
        Outcome::Interrupted { next_episode } => {
            eprintln!(
                "interrupted before episode {next_episode}: checkpoint written; continue with \
                 `bohp train --resume {}`",
                run.path().display()
            );
            Ok(ExitCode::from(130))
        }
        Outcome::Finished(summary) => {
            let seconds = started.elapsed().as_secs_f64();
            let ran = total - first;
            println!(
                "finished {} episodes of {} in {seconds:.1} s ({:.0} episodes/s, batch {})",
                ran,
                summary.task,
                (ran * summary.batch) as f64 / seconds.max(1e-9),
                summary.batch
            );
            if let Some(frozen) = summary.frozen {
                println!(
                    "frozen phase ({} episodes): {}",
                    config.train.freeze_last,
                    format_measures(&frozen)
                );
            }
            println!("last 100 episodes: {}", format_measures(&summary.last_100));
            println!("run directory: {}", run.path().display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The progress bar, showing the mean loss and error of the last 100 episodes.
struct Progress {
    bar: ProgressBar,
    recent: std::collections::VecDeque<MetricsRow>,
}

impl Progress {
    fn new(total: usize, position: usize, quiet: bool) -> Progress {
        let bar = progress_bar(total as u64, "updates", quiet);
        bar.set_position(position as u64);
        Progress {
            bar,
            recent: Default::default(),
        }
    }
}

impl Observer for Progress {
    fn episode(&mut self, row: &MetricsRow) {
        if self.recent.len() == 100 {
            self.recent.pop_front();
        }
        self.recent.push_back(*row);
        self.bar.inc(1);
        if row.episode.is_multiple_of(25) {
            let n = self.recent.len() as f64;
            let loss = self.recent.iter().map(|r| r.loss).sum::<f64>() / n;
            let error = self.recent.iter().map(|r| r.error).sum::<f64>() / n;
            let phase = if row.frozen == 1 { " [frozen]" } else { "" };
            self.bar
                .set_message(format!("loss {loss:.4} error {error:.4}{phase}"));
        }
    }
}
