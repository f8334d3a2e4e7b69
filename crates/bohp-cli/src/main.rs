//! `bohp`: train, resume, evaluate, gradient-check, inspect, export, reproduce and benchmark
//! plastic networks. This file only dispatches: the arguments are in `args.rs`, each
//! subcommand in `commands/<name>.rs`.

mod args;
mod bench;
mod commands;
mod fewshot_inspect;
mod figures;
mod inspect;
mod meta_reproduce;
mod recurrent;
mod reproduce;
mod rl_inspect;
mod rl_reproduce;
mod shard;
mod stats;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: bohp's errors already include their
/// OS error in their message, so a cause whose text the line holds is not repeated.
fn error_text(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
    }
    out
}

/// Dispatches to the subcommand's file in `commands/`.
fn run(cli: Cli) -> Result<ExitCode> {
    // The pool's threads get the main thread's stack size (burn's autodiff may recurse deeply
    // over a long episode's graph).
    let mut pool = rayon::ThreadPoolBuilder::new().stack_size(8 << 20);
    if let Some(threads) = cli.threads {
        pool = pool.num_threads(usize::from(threads));
    }
    pool.build_global()
        .context("cannot start the thread pool (--threads)")?;
    // The command runs on a thread of the pool: a host engine's parallel loop then runs on
    // that thread when the pool has one thread, and that thread takes part when it has more,
    // instead of handing every loop to the pool and sleeping until it is done (two context
    // switches per loop, most of an update for a small recurrent network: memorisation-50 ran
    // 4-5× slower on one thread).
    rayon::scope(|_| dispatch(cli))
}

/// Runs the subcommand (on a thread of rayon's pool).
fn dispatch(cli: Cli) -> Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Eval(_) | Command::Inspect(_) | Command::Export(_) | Command::Tasks(_)
    ) {
        // Warnings (e.g. a run too old to verify) on stderr.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::WARN)
            .without_time()
            .with_target(false)
            .with_ansi(false)
            .try_init();
    }
    match &cli.command {
        Command::Train(args) => commands::train::train_command(&cli, args),
        Command::Eval(args) => commands::eval::eval_command(&cli, args),
        Command::Gradcheck(args) => commands::gradcheck::gradcheck_command(&cli, args),
        Command::Inspect(args) => commands::inspect::inspect_command(args),
        Command::Reproduce(args) => commands::reproduce::reproduce_command(&cli, args),
        Command::Bench(args) => commands::bench::bench_command(&cli, args),
        Command::Export(args) => commands::export::export_command(args),
        Command::Tasks(command) => commands::tasks::tasks_command(command),
        Command::BenchCell(args) => commands::bench::bench_cell_command(&cli, args),
    }
}
