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

/// `bohp eval` on an Omniglot run: 5-way and 20-way 1-shot accuracy on the held-out
/// alphabets, the network's and nearest neighbour's in its embedding, with 95% intervals; with
/// `--omniglot-runs`, the error on Lake et al.'s 20 one-shot runs beside the modified-Hausdorff
/// baseline.
fn eval_few_shot(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    use bohp::omniglot::config::OmniglotConfig;
    let (config, path) = finished_run(cli, args, OmniglotConfig::load, |c| {
        (&mut c.device, &mut c.dtype, &mut c.seed, &mut c.train.batch)
    })?;
    // Read the runs first: a bad path fails before the training data is read.
    let runs = match &args.omniglot_runs {
        Some(p) => Some(bohp::omniglot::read_runs(p)?),
        None => None,
    };
    let mut trainer = bohp::omniglot::train::OmniglotTrainer::new(config.clone())?;
    trainer.load_model(&path)?;
    let mut report = serde_json::Map::new();
    let mut lines = Vec::new();
    let held_out = trainer.held_out().clone();
    if held_out.characters.is_empty() {
        lines.push("no held-out alphabets (task.held_out is empty)".to_string());
    }
    let mut accuracies = Vec::new();
    for ways in [5usize, 20] {
        if held_out.characters.len() < ways || ways > config.model.outputs {
            continue;
        }
        let (net, nn) = trainer.evaluate(&held_out, ways, 1, args.episodes)?;
        lines.push(format!(
            "held-out alphabets, {ways}-way 1-shot, {} episodes: network {:.3} [95% CI {:.3}, {:.3}]; nearest neighbour in its embedding {:.3} [{:.3}, {:.3}]; chance {:.3}",
            args.episodes,
            net.accuracy,
            net.low,
            net.high,
            nn.accuracy,
            nn.low,
            nn.high,
            1.0 / ways as f64
        ));
        accuracies.push(serde_json::json!({"ways": ways, "network": net, "nearest_neighbour": nn}));
    }
    report.insert("held_out".into(), accuracies.into());
    if let Some(runs) = runs {
        let (net, nn) = trainer.runs_error(&runs)?;
        let hausdorff: f64 = runs
            .iter()
            .map(bohp::omniglot::hausdorff_error)
            .sum::<f64>()
            / runs.len() as f64;
        lines.push(format!(
            "Lake et al.'s {} one-shot runs (20-way, within alphabet): error network {:.1}%, nearest neighbour in its embedding {:.1}%, modified Hausdorff distance {:.1}%",
            runs.len(),
            100.0 * net,
            100.0 * nn,
            100.0 * hausdorff
        ));
        report.insert(
            "runs".into(),
            serde_json::json!({"count": runs.len(), "network_error": net, "nearest_neighbour_error": nn, "hausdorff_error": hausdorff}),
        );
    }
    if args.json {
        println!("{}", serde_json::Value::Object(report));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
    match family_of_file(&args.run_dir.join("config.toml")) {
        Some(bohp::recurrent::config::Family::Reinforcement) => return eval_rl(cli, args),
        Some(bohp::recurrent::config::Family::FewShot) => return eval_few_shot(cli, args),
        _ => {}
    }
    if args.omniglot_runs.is_some() {
        bail!("--omniglot-runs: applies to Omniglot runs (task.kind = \"omniglot\")");
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
