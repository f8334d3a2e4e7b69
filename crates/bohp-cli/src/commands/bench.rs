//! `bohp bench` and its per-cell child process.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::bench::BenchEngine;

use crate::args::*;

pub(crate) fn timing(args: &TimingArgs) -> Result<crate::bench::Timing> {
    if args.updates == 0 || args.repeats == 0 {
        bail!("--updates and --repeats must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!(
            "--seconds {}: expected a finite number of seconds > 0",
            args.seconds
        );
    }
    Ok(crate::bench::Timing {
        warmup: args.warmup,
        updates: args.updates,
        repeats: args.repeats,
        seconds: args.seconds,
    })
}

pub(crate) fn bench_command(cli: &Cli, args: &BenchArgs) -> Result<ExitCode> {
    if cli.device.is_some() || cli.dtype.is_some() {
        bail!(
            "bench takes --devices (a list) and always measures f32; --device and --dtype do not apply"
        );
    }
    if let Some(b) = args.batches.iter().find(|b| **b == 0) {
        bail!("--batches: {b} is not a batch size (at least 1)");
    }
    for workload in &args.workloads {
        let path = args.configs.join(format!("{workload}.toml"));
        if !path.is_file() {
            bail!(
                "--workloads: no config {} for workload `{workload}`",
                path.display()
            );
        }
    }
    let mut cells = Vec::new();
    for workload in &args.workloads {
        // The recurrent and reinforcement-learning workloads take the same engines.
        let recurrent = crate::bench::is_recurrent_workload(&args.configs, workload)
            || crate::bench::is_rl_workload(&args.configs, workload);
        let few_shot = crate::bench::is_few_shot_workload(&args.configs, workload);
        for &batch in &args.batches {
            for &device in &args.devices {
                for &engine in args
                    .engines
                    .iter()
                    .filter(|e| e.applies(recurrent) && (!few_shot || **e == BenchEngine::Autodiff))
                {
                    cells.push(crate::bench::Cell {
                        workload: workload.clone(),
                        device,
                        batch,
                        engine,
                    });
                }
            }
        }
    }
    let plan = crate::bench::Plan {
        cells,
        timing: timing(&args.timing)?,
        configs: args.configs.clone(),
        out: args.out.clone(),
        peer_python: args.peer_python.clone(),
        peers: {
            use crate::args::PeerChoice;
            use crate::bench::Framework;
            match args.peer {
                PeerChoice::Torch => vec![Framework::Torch],
                PeerChoice::Jax => vec![Framework::Jax],
                PeerChoice::Both => vec![Framework::Torch, Framework::Jax],
            }
        },
        peer_dir: args.peer_dir.clone(),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let quiet = cli.quiet;
    let report = crate::bench::bench(&plan, command, &|what| {
        if !quiet {
            eprintln!("measuring {what}");
        }
    })?;
    print!("{}", crate::bench::markdown(&report));
    println!(
        "\nwrote {} and {}",
        plan.out.join("bench.json").display(),
        plan.out.join("bench.md").display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn bench_cell_command(cli: &Cli, args: &BenchCellArgs) -> Result<ExitCode> {
    let device = cli.device.context("bench-cell needs --device")?;
    let cell = crate::bench::Cell {
        workload: args.workload.clone(),
        device,
        batch: args.batch,
        engine: args.engine,
    };
    let result = crate::bench::run_cell(&args.configs, &cell, &timing(&args.timing)?)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}
