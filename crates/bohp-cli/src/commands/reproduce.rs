//! `bohp reproduce`: the paper's figures over many seeds.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};

use super::*;
use crate::args::*;
use crate::reproduce::Reproduced;

pub(crate) fn reproduce_command(cli: &Cli, args: &ReproduceArgs) -> Result<ExitCode> {
    if args.seeds == 0 {
        bail!("--seeds: expected at least 1");
    }
    if args.inspect_episodes == 0 {
        bail!("--inspect-episodes: expected at least 1");
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if jobs == 0 {
        bail!("--jobs: expected at least 1");
    }
    let jobs = crate::reproduce::concurrent_jobs(jobs);
    if ["bandit", "cue", "maze", "metatasks"].contains(&args.target.as_str()) {
        return reproduce_rl_command(cli, args, jobs);
    }
    if args.lstm_learning_rate.is_some() {
        bail!(
            "--lstm-learning-rate: only with bandit, cue, maze or metatasks (the tasks with an LSTM kind)"
        );
    }
    let mut variants = Vec::new();
    for name in &args.plasticity {
        if name == "all" {
            variants.extend(bohp::single::config::Plasticity::ALL);
        } else {
            variants.push(
                <bohp::single::config::Plasticity as clap::ValueEnum>::from_str(name, false)
                    .map_err(|_| {
                        let names: Vec<&str> = bohp::single::config::Plasticity::ALL
                            .map(|p| p.name())
                            .to_vec();
                        anyhow::anyhow!(
                            "--plasticity: unknown variant `{name}`: expected {} or all",
                            names.join(", ")
                        )
                    })?,
            );
        }
    }
    variants.dedup();
    let plan = crate::reproduce::Plan {
        tasks: crate::reproduce::tasks_of(&args.target)?,
        variants,
        seeds: (args.first_seed..args.first_seed + args.seeds).collect(),
        configs: args.configs.clone(),
        out: args.out.clone(),
        jobs,
        inspect_episodes: args.inspect_episodes,
        episodes: args.episodes,
        quiet: cli.quiet,
        shard: args.shard,
        merge: args.merge.clone(),
    };
    install_stop_handler()?;
    let started = Instant::now();
    match crate::reproduce::reproduce(&plan, &STOP)? {
        Reproduced::Interrupted => {
            eprintln!(
                "interrupted: every seed wrote a checkpoint; run the same command again to continue"
            );
            Ok(ExitCode::from(130))
        }
        Reproduced::Slice { runs, planned } => {
            slice_done(args, runs, planned, started);
            Ok(ExitCode::SUCCESS)
        }
        Reproduced::Done(summaries) => {
            println!(
                "reproduced {} task/variant pairs x {} seeds in {:.0} s ({} jobs)",
                summaries.len(),
                plan.seeds.len(),
                started.elapsed().as_secs_f64(),
                jobs
            );
            for s in &summaries {
                println!(
                    "  {:<10} {:<11} solved by {}/{} seeds (frozen error < {}); frozen error median [IQR] {}, error_code {}",
                    s.task,
                    s.plasticity,
                    s.solved,
                    s.seeds.len(),
                    crate::reproduce::LEARNED_ERROR,
                    crate::reproduce::fmt(&s.error.frozen),
                    crate::reproduce::fmt(&s.error_code.frozen)
                );
            }
            println!("wrote {}", plan.out.join("summary.md").display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What a finished slice prints: its share, and how to merge.
fn slice_done(args: &ReproduceArgs, runs: usize, planned: usize, started: Instant) {
    let shard = args.shard.expect("a slice has --shard");
    println!(
        "slice {shard}: {runs} of the plan's {planned} runs finished in {:.0} s in {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    println!(
        "when every slice has finished: bohp reproduce {} ... --merge <each slice's --out> --out DIR",
        args.target
    );
}

/// `bohp reproduce bandit|cue|maze|metatasks`.
fn reproduce_rl_command(cli: &Cli, args: &ReproduceArgs, jobs: usize) -> Result<ExitCode> {
    if args.kinds.is_empty() {
        bail!("--kinds: expected at least one network kind");
    }
    if cli.device.is_some() || cli.dtype.is_some() {
        bail!(
            "--device/--dtype: set `device` and `dtype` in the task's config for reinforcement-learning reproductions"
        );
    }
    let mut kinds = args.kinds.clone();
    kinds.dedup();
    if args.lstm_learning_rate.is_some() && !kinds.contains(&bohp::rl::model::RlModelKind::Lstm) {
        bail!("--lstm-learning-rate: expected --kinds to include lstm");
    }
    let plan = crate::rl_reproduce::RlPlan {
        task: args.target.clone(),
        kinds,
        seeds: (args.first_seed..args.first_seed + args.seeds).collect(),
        configs: args.configs.clone(),
        out: args.out.clone(),
        episodes: args.episodes,
        lstm_learning_rate: args.lstm_learning_rate,
        jobs,
        shard: args.shard,
        merge: args.merge.clone(),
        eval_episodes: args.inspect_episodes,
    };
    install_stop_handler()?;
    let started = Instant::now();
    match crate::rl_reproduce::reproduce_rl(&plan, &STOP)? {
        Reproduced::Interrupted => {
            eprintln!(
                "interrupted: every unfinished seed wrote a checkpoint; run the same command again to continue"
            );
            Ok(ExitCode::from(130))
        }
        Reproduced::Slice { runs, planned } => {
            slice_done(args, runs, planned, started);
            Ok(ExitCode::SUCCESS)
        }
        Reproduced::Done(r) => {
            println!(
                "{}: {} kinds x {} seeds in {:.0} s ({jobs} jobs); a random policy earns {:.2}",
                r.task,
                r.kinds.len(),
                r.seeds.len(),
                started.elapsed().as_secs_f64(),
                r.random_reward
            );
            for k in &r.kinds {
                println!(
                    "  {:<12} N={:<4} {:>6} params: final reward median [IQR] {:.2} [{:.2}, {:.2}]",
                    k.kind, k.hidden, k.params, k.spread.median, k.spread.q25, k.spread.q75
                );
            }
            for t in &r.tests {
                println!(
                    "  rank-sum {} vs {}: U = {}, p = {:.3}",
                    t.kinds.0, t.kinds.1, t.u, t.p
                );
            }
            for p in &r.pools {
                let kinds: Vec<String> = p
                    .kinds
                    .iter()
                    .map(|k| format!("{} {:.2}", k.kind, k.spread.median))
                    .collect();
                println!(
                    "  pool {:<9} median reward: {} (random {:.2}, optimum {:.2})",
                    p.pool,
                    kinds.join(", "),
                    p.random,
                    p.optimal
                );
            }
            println!(
                "wrote {}",
                plan.out.join(&plan.task).join("summary.md").display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
