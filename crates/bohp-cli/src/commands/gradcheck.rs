//! `bohp gradcheck`: gradients of any config against the hand-derived recursions.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bohp::single::config::SingleLayerConfig;

use super::*;
use crate::args::*;
use bohp_gradcheck::check::{AnyConfig, CheckOptions, check_any};

pub(crate) fn gradcheck_command(cli: &Cli, args: &GradcheckArgs) -> Result<ExitCode> {
    // `--device` and `--dtype` over any family's config (each has both fields).
    macro_rules! overrides {
        ($config:ident) => {
            if let Some(device) = cli.device {
                $config.device = device;
            }
            if let Some(dtype) = cli.dtype {
                $config.dtype = dtype;
            }
        };
    }
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    let family = registry().of_file(&args.config)?.name();
    let config = if family == "few-shot" {
        let mut config = bohp::omniglot::config::OmniglotConfig::load(&args.config)?;
        if args.steps.is_some() {
            bail!(
                "--steps: applies to single-layer configs (an Omniglot episode's support steps are task.ways x task.shots)"
            );
        }
        overrides!(config);
        AnyConfig::FewShot(config)
    } else if family == "reinforcement" {
        let mut config = bohp::rl::config::RlConfig::load(&args.config)?;
        if args.steps.is_some() {
            bail!(
                "--steps: applies to single-layer configs (set task.steps in a reinforcement-learning config)"
            );
        }
        overrides!(config);
        AnyConfig::Rl(config)
    } else if family == "recurrent" {
        let mut config = bohp::recurrent::config::RecurrentConfig::load(&args.config)?;
        if args.steps.is_some() {
            bail!(
                "--steps: applies to single-layer configs (a recurrent task's steps follow from its [task] timing)"
            );
        }
        overrides!(config);
        AnyConfig::Recurrent(config)
    } else {
        let mut config = SingleLayerConfig::load(&args.config)?;
        if let Some(steps) = args.steps {
            config.task.steps = Some(steps);
            config.validate(&format!("{} with --steps", args.config.display()))?;
        }
        overrides!(config);
        AnyConfig::Single(config)
    };
    let options = CheckOptions {
        episodes: args.episodes,
        finite_differences: !args.no_finite_differences,
        dump: args.dump.is_some(),
        recursion: args.recursion,
    };
    let (report, dump) = check_any(&config, options)?;
    if let (Some(path), Some(dump)) = (&args.dump, dump) {
        let json = serde_json::to_vec_pretty(&dump).context("serializing the dump")?;
        std::fs::write(path, json)
            .with_context(|| format!("{}: cannot write the dump", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the report")?
        );
    } else {
        print!("{}", report.table());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
