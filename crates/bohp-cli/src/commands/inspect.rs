//! `bohp inspect`: a trained single-layer network's learned structure.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::*;
use crate::args::*;

pub(crate) fn inspect_command(args: &InspectArgs) -> Result<ExitCode> {
    single_layer_run("inspect", &args.run_dir)?;
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("inspect"));
    let structure = crate::inspect::inspect(&args.run_dir, &out, args.episodes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&structure)?);
    } else {
        print!("{}", structure.text());
        println!(
            "wrote {} and {}",
            out.join("weights.png").display(),
            out.join("structure.json").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
