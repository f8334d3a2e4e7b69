//! `bohp eval`: a trained run on fresh held-out episodes.

use std::process::ExitCode;

use anyhow::{Result, bail};
use bohp::device::{Backend, Precision, init_device};
use bohp::run::{RunDir, load_model};
use bohp::train::{evaluate, init_model};
use burn::module::Module;

use super::*;
use crate::args::*;

/// A finished run's config (read by `load`) with `bohp eval`'s overrides (`--device`,
/// `--dtype`, `--seed`, `--batch`, through the fields `keys` gives), and its final model's path.
fn finished_run<C>(
    cli: &Cli,
    args: &EvalArgs,
    load: fn(&std::path::Path) -> bohp::error::Result<C>,
    keys: fn(&mut C) -> (&mut Backend, &mut Precision, &mut u64, &mut usize),
) -> Result<(C, std::path::PathBuf)> {
    let run = RunDir::open(&args.run_dir)?;
    let mut config = load(&run.config_path())?;
    let path = run.model_path();
    if !path.is_file() {
        bail!(
            "{}: no final model: the run has not finished",
            path.display()
        );
    }
    let (device, dtype, seed, batch) = keys(&mut config);
    if let Some(asked) = cli.device {
        *device = asked;
    }
    if let Some(asked) = cli.dtype {
        *dtype = asked;
    }
    *seed = args.seed.unwrap_or(*seed);
    *batch = args.batch;
    Ok((config, path))
}

/// `bohp eval` on a reinforcement-learning run: the agent's mean reward per episode on
/// held-out episodes, beside a random policy's.
fn eval_rl(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    let (config, path) = finished_run(cli, args, bohp::rl::config::RlConfig::load, |c| {
        (&mut c.device, &mut c.dtype, &mut c.seed, &mut c.train.batch)
    })?;
    let mut trainer = bohp::rl::train::RlTrainer::new(config.clone())?;
    trainer.load_model(&path)?;
    let reward = trainer.evaluate(args.episodes);
    let random = bohp::rl::train::random_policy_reward(&config, args.episodes);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "task": format!("{:?}", config.task.kind).to_lowercase(),
                "model": config.model.kind.name(),
                "episodes": args.episodes,
                "seed": config.seed,
                "reward": reward,
                "random_reward": random,
            })
        );
    } else {
        println!(
            "{:?} {} on {} held-out episodes (seed {}): reward {:.3} per episode (a random policy: {:.3})",
            config.task.kind,
            config.model.kind.name(),
            args.episodes,
            config.seed,
            reward,
            random
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `bohp eval` on a recurrent run: loss, error and a blank reconstruction's error on fresh
/// held-out episodes, as the run's summary.json reports them at the end of training.
pub(crate) fn eval_recurrent(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    let (config, path) = finished_run(
        cli,
        args,
        bohp::recurrent::config::RecurrentConfig::load,
        |c| (&mut c.device, &mut c.dtype, &mut c.seed, &mut c.train.batch),
    )?;
    let mut trainer = bohp::recurrent::train::RecurrentTrainer::new(config.clone())?;
    trainer.load_model(&path)?;
    let e = trainer.evaluate(args.episodes);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "task": config.task.kind.name(),
                "model": trainer.model_name(),
                "episodes": args.episodes,
                "seed": config.seed,
                "dtype": config.dtype.name(),
                "loss": e.loss,
                "error": e.error,
                "blank_error": e.blank_error,
            })
        );
    } else {
        println!(
            "{} {} on {} held-out episodes (seed {}, {}): loss {:.5}, error {:.5} (a blank output: {:.5})",
            config.task.kind.name(),
            trainer.model_name(),
            args.episodes,
            config.seed,
            config.dtype,
            e.loss,
            e.error,
            e.blank_error
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn eval_command(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    if args.batch == 0 {
        bail!("--batch: expected at least 1");
    }
    if family_of_file(&args.run_dir.join("config.toml"))
        == Some(bohp::recurrent::config::Family::Reinforcement)
    {
        return eval_rl(cli, args);
    }
    if is_recurrent_file(&args.run_dir.join("config.toml")) {
        return eval_recurrent(cli, args);
    }
    let run = RunDir::open(&args.run_dir)?;
    let config = run.read_config()?;
    let backend = cli.device.unwrap_or(config.device);
    let precision = cli.dtype.unwrap_or(config.dtype);
    let device = init_device(backend, precision)?;
    let path = run.model_path();
    if !path.is_file() {
        bail!(
            "{}: no final model: the run has not finished (resume it with `bohp train --resume {}`)",
            path.display(),
            run.path().display()
        );
    }
    let model = load_model(init_model(&config, &device), &path, None)?.valid();
    let seed = args.seed.unwrap_or(config.seed);
    let measures = evaluate(
        &model,
        &config.task(),
        seed,
        args.episodes,
        args.batch,
        &device,
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "task": config.task.kind.name(),
                "episodes": args.episodes,
                "seed": seed,
                "device": backend.name(),
                "dtype": precision.name(),
                "loss": measures.loss,
                "error": measures.error,
                "error_code": measures.error_code,
            })
        );
    } else {
        println!(
            "{} on {} fresh episodes (seed {seed}, {backend}, {precision}): {}",
            config.task.kind,
            args.episodes,
            format_measures(&measures)
        );
    }
    Ok(ExitCode::SUCCESS)
}
