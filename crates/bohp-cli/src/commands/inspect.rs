//! `bohp inspect`: a trained network's learned structure (single layer or recurrent).

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::*;
use crate::args::*;

pub(crate) fn inspect_command(args: &InspectArgs) -> Result<ExitCode> {
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("inspect"));
    let written = format!(
        "wrote {} and {}",
        out.join("weights.png").display(),
        out.join("structure.json").display()
    );
    let family = registry().of_finished_run(&args.run_dir)?.name();
    if family == "few-shot" {
        let e = crate::fewshot_inspect::inspect_omniglot(&args.run_dir, &out)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&e)?);
        } else {
            println!(
                "a {}-way 1-shot episode of the {} alphabets: the query is class {}, the network gives it {:.3} and chooses class {}",
                e.ways,
                e.alphabets,
                e.target + 1,
                e.probabilities[e.target],
                e.predicted + 1
            );
            println!("wrote {}", out.join("episode.png").display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if family == "reinforcement" {
        let e = crate::rl_inspect::inspect_maze(&args.run_dir, &out)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&e)?);
        } else {
            println!(
                "held-out episode: reward {} ({} times at the reward cell {:?}; first at step {})",
                e.total,
                e.rewards,
                e.reward_cell,
                e.first_reward
                    .map_or("never".to_string(), |t| (t + 1).to_string())
            );
            println!("wrote {}", out.join("maze-path.png").display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (json, text) = if family == "recurrent" {
        let s = crate::inspect::inspect_recurrent(&args.run_dir, &out)?;
        (serde_json::to_string_pretty(&s)?, s.text())
    } else {
        let s = crate::inspect::inspect(&args.run_dir, &out, args.episodes)?;
        (serde_json::to_string_pretty(&s)?, s.text())
    };
    if args.json {
        println!("{json}");
    } else {
        print!("{text}");
        println!("{written}");
    }
    Ok(ExitCode::SUCCESS)
}
