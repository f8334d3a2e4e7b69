//! `bohp train`: a new run, a resumed one, or an extended one, of any family, through the
//! registry ([`bohp::registry::Registry::train`]); this file is the command line's face of it:
//! the progress bar, the messages, the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bohp::family::{TrainEnd, TrainRequest, TrainUi};
use bohp::recurrent::tasks::RecurrentTaskKind;
use bohp::recurrent::train::RecurrentTrainer;
use bohp::run::RunDir;
use indicatif::ProgressBar;

use super::*;
use crate::args::*;

pub(crate) fn train_command(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    let out = match (&args.out, &args.config) {
        (Some(out), _) => out.clone(),
        (None, Some(path)) => default_run_dir(path),
        (None, None) => PathBuf::from("runs/run"),
    };
    let request = TrainRequest {
        config: args.config.clone(),
        resume: args.resume.clone(),
        out,
        extend: args.extend,
        episodes: args.episodes,
        seed: args.seed,
        engine: args.engine,
        device: cli.device,
        dtype: cli.dtype,
        stop: &STOP,
    };
    let mut ui = Console {
        quiet: cli.quiet,
        bar: ProgressBar::hidden(),
    };
    let end = registry().train(&request, &mut ui);
    ui.bar.finish_and_clear();
    match end? {
        TrainEnd::AlreadyDone { run, total } => {
            println!(
                "{}: the run has already finished its {total} updates; nothing to do",
                run.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TrainEnd::Interrupted { run, next_episode } => {
            eprintln!(
                "interrupted before update {next_episode}: checkpoint written; continue with \
                 `bohp train --resume {}`",
                run.display()
            );
            Ok(ExitCode::from(130))
        }
        TrainEnd::Finished {
            run,
            first,
            total,
            seconds,
            lines,
        } => {
            println!(
                "finished updates {first}..{total} in {seconds:.1} s ({:.1} updates/s)",
                (total - first) as f64 / seconds.max(1e-9),
            );
            for line in lines {
                println!("{line}");
            }
            println!("run directory: {}", run.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The terminal: messages on stderr, the progress bar, `train.log`, Ctrl-C.
struct Console {
    quiet: bool,
    bar: ProgressBar,
}

impl TrainUi for Console {
    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn begin(
        &mut self,
        run: &RunDir,
        what: &str,
        first: usize,
        total: usize,
        resumed: bool,
    ) -> bohp::Result<()> {
        install_stop_handler().map_err(|e| bohp::Error::Unsupported(e.to_string()))?;
        init_logging(run).map_err(|e| bohp::Error::Unsupported(format!("{e:#}")))?;
        if !self.quiet {
            eprintln!(
                "{} {what}, updates {first}..{total} -> {}",
                if resumed { "resuming" } else { "training" },
                run.path().display()
            );
        }
        self.bar = progress_bar(total as u64, "updates", self.quiet);
        self.bar.set_position(first as u64);
        Ok(())
    }

    fn update(&mut self, done: usize, message: Option<String>) {
        self.bar.set_position(done as u64);
        if let Some(message) = message {
            self.bar.set_message(message);
        }
    }

    /// An images run draws its held-out reconstructions.
    fn finished(
        &mut self,
        run: &RunDir,
        _family: &'static str,
        trainer: &dyn std::any::Any,
    ) -> bohp::Result<Vec<String>> {
        if let Some(trainer) = trainer.downcast_ref::<RecurrentTrainer>()
            && trainer.config().task.kind == RecurrentTaskKind::Images
        {
            let png = run.path().join("reconstruction.png");
            crate::recurrent::reconstruction_figure(trainer, &png, 4)
                .map_err(|e| bohp::Error::artifact(&png, format!("{e:#}")))?;
            if !self.quiet {
                eprintln!("reconstructions: {}", png.display());
            }
        }
        Ok(Vec::new())
    }
}
