//! The reinforcement-learning [`Family`]: configs whose `task.kind` is `bandit`, `cue`,
//! `maze` or `metatasks` (actor-critic agents trained by A2C).

use std::collections::VecDeque;

use serde_json::json;

use super::config::RlConfig;
use super::config::RlModelConfig;
use super::env::Pool;
use super::model::{Agent, RlModelKind};
use super::train::{RlRow, RlSummary, RlTrainer, random_policy_reward};
use crate::device::{Backend, init_device};
use crate::error::Result;
use crate::family::{EvalRequest, Family, Registered, Report, Trained};
use crate::run::{RunDir, load_record};

/// Actor-critic agents trained by reinforcement (2019).
pub struct Reinforcement;

/// The reinforcement family in the registry.
pub static FAMILY: Registered<Reinforcement> = Registered::new();

crate::learner::run_schedule!(RlConfig);

impl Family for Reinforcement {
    const NAME: &'static str = "reinforcement";
    type Config = RlConfig;
    type Trainer = RlTrainer;

    const KINDS: &'static [&'static str] = &["bandit", "cue", "maze", "metatasks"];
    crate::family::config_methods!(RlConfig);
    crate::family::trainer_methods!(RlConfig, RlTrainer);

    fn describe(trainer: &RlTrainer) -> String {
        let config = trainer.config();
        format!(
            "{} ({} network, {} hidden, {} params) by A2C on {} ({}), batch {}",
            config.task.kind.name(),
            config.model.kind.name(),
            config.model.hidden,
            config.network().num_params(),
            config.device,
            config.dtype,
            config.train.batch,
        )
    }
    fn progress(recent: &VecDeque<RlRow>) -> String {
        let mean = recent.iter().map(|r| r.reward).sum::<f64>() / recent.len() as f64;
        let last = recent.back().expect("called after a row");
        format!(
            "reward {mean:.3} per episode (last 50 updates), |M| {:.3}, {:.2} s/update",
            last.modulation, last.seconds
        )
    }
    fn report(_: &RlTrainer, summary: &RlSummary) -> Vec<String> {
        vec![format!(
            "{} {} ({} params): {} updates; reward per episode over the last tenth {:.3} (a random policy: {:.3})",
            summary.task,
            summary.model,
            summary.params,
            summary.episodes,
            summary.final_reward,
            summary.random_reward
        )]
    }

    fn evaluate(run: &RunDir, config: RlConfig, request: &EvalRequest) -> Result<Report> {
        request.refuse_omniglot_runs()?;
        let mut trainer = RlTrainer::new(config.clone())?;
        trainer.load_model(&run.model_path())?;
        // Meta-tasks: every pool (new instances, held-out tasks, each named task); the
        // first is the config's own pool, `train`, whose measure is the run's reward.
        let pools = trainer.evaluate_pools(request.episodes);
        let reward = match pools.first() {
            Some(own) if config.env_shape().meta.pool == Pool::Train => own.reward,
            _ => trainer.evaluate(request.episodes),
        };
        let random = random_policy_reward(&config, request.episodes);
        let mut lines = vec![format!(
            "{} {} on {} held-out episodes (seed {}): reward {:.3} per episode (a random policy: {:.3})",
            config.task.kind.name(),
            config.model.kind.name(),
            request.episodes,
            config.seed,
            reward,
            random
        )];
        lines.extend(pools.iter().map(|p| {
            format!(
                "  pool {:<9} reward {:7.3} per episode (random {:.3}, optimum {:.3})",
                p.pool, p.reward, p.random, p.optimal
            )
        }));
        Ok(Report {
            json: json!({
                "task": config.task.kind.name(),
                "model": config.model.kind.name(),
                "episodes": request.episodes,
                "seed": config.seed,
                "reward": reward,
                "random_reward": random,
                "pools": pools,
            }),
            lines,
        })
    }
    fn trained(run: &RunDir, config: RlConfig) -> Result<Trained> {
        let unused = unused_tensors(&config.model);
        let (agent, _) = load_trained(run, config)?;
        Ok(Trained {
            kind: "actor-critic",
            module: Box::new(agent),
            unused,
        })
    }
}

/// The tensors an agent of `model`'s kind holds but does not use, left out of its exports:
/// `α`, `η` and the modulator without plasticity; the modulator in the plastic kind; `η` in the
/// simple kind (`M(t)` is its rate); the fan-out weights unless `model.fanout`. The LSTM agent
/// holds none of them.
pub fn unused_tensors(model: &RlModelConfig) -> Vec<&'static str> {
    let mut unused = match model.kind {
        RlModelKind::NonPlastic => vec!["alpha", "eta", "w_m", "b_m"],
        RlModelKind::Plastic => vec!["w_m", "b_m"],
        RlModelKind::Simple => vec!["eta"],
        RlModelKind::Retroactive | RlModelKind::Lstm => Vec::new(),
    };
    if !model.fanout && model.kind != RlModelKind::Lstm {
        unused.extend(["fan_w", "fan_b"]);
    }
    unused
}

/// The run's final agent on the CPU, in the run's precision, with its config.
pub fn load_trained(run: &RunDir, config: RlConfig) -> Result<(Agent, RlConfig)> {
    let device = init_device(Backend::Flex, config.dtype)?;
    let template = config.network().init_agent(config.seed, &device);
    Ok((load_record(template, &run.model_path(), None)?, config))
}
