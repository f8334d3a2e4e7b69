//! `bohp eval`: a trained run on fresh held-out episodes, through its family
//! ([`bohp::registry::Registry::evaluate`]).

use std::process::ExitCode;

use anyhow::Result;
use bohp::family::EvalRequest;

use super::*;
use crate::args::*;

pub(crate) fn eval_command(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    let request = EvalRequest {
        episodes: args.episodes,
        batch: args.batch,
        seed: args.seed,
        device: cli.device,
        dtype: cli.dtype,
        omniglot_runs: args.omniglot_runs.clone(),
    };
    let report = registry().evaluate(&args.run_dir, &request)?;
    if args.json {
        println!("{}", report.json);
    } else {
        for line in report.lines {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
