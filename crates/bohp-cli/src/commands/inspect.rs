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
    if is_recurrent_file(&args.run_dir.join("config.toml")) {
        let structure = crate::inspect::inspect_recurrent(&args.run_dir, &out)?;
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
        return Ok(ExitCode::SUCCESS);
    }
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
