//! Advantage actor-critic (A2C) training of the actor-critic networks, batched over independent
//! episodes, through the one training loop ([`crate::learner::train`]).
//!
//! An update rolls out `batch` episodes of the environment for its `steps` steps: at each step
//! the network sees the observation, samples an action from its policy (each episode from its
//! own seeded generator), and the environment answers with a reward. The loss, averaged over
//! the batch and summed over steps, is
//! `−log π(a_t)·A_t + value_coef·(R_t − V_t)² + exploration_coef·X_t`, with the discounted
//! return `R_t = r_t + γ·R_{t+1}`, the advantage `A_t = R_t − V_t` of **each episode's own**
//! value estimate (detached), and the exploration term `X_t = Σ_a p_a²` (the published code's)
//! or `Σ_a p_a log p_a` (entropy). The published trainers subtract batch element 0's value from
//! every element's return; bohp does not copy that bug.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::config::{Exploration, RlConfig, RlTrainConfig};
use super::env::{BatchEnv, EnvKind, EnvShape, Pool};
use super::fused::FusedAc;
use super::host::AcParams;
use super::metatask::NamedTask;
use super::model::{AcStep, Agent};
use super::replay::Replay;
pub use super::replay::sample_action;
use crate::device::{Precision, init_device};
use crate::error::{Error, Result};
use crate::learner::{
    Divergence, Learner, Progress, Session, non_finite_parameter, open_checkpoint,
};
use crate::rng::{Stream, stream_rng};
use crate::run::{MetricsRecord, RunDir, Snapshot, model_bytes};
use crate::schema::Engine;
use crate::store::{HostParams, ModuleStore};

/// One update's measures (a row of `metrics.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RlRow {
    /// Update index (0-based).
    pub episode: usize,
    /// The A2C loss of the batch.
    pub loss: f64,
    /// Mean total reward per episode of the batch.
    pub reward: f64,
    /// Mean `|M(t)|` over the batch's steps (0 without modulation).
    pub modulation: f64,
    /// Seconds the update took.
    pub seconds: f64,
}

impl MetricsRecord for RlRow {
    fn episode(&self) -> usize {
        self.episode
    }
}

/// A finished run's summary (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlSummary {
    /// Environment.
    pub task: String,
    /// Network kind.
    pub model: String,
    /// Trained parameters.
    pub params: usize,
    /// Updates run.
    pub episodes: usize,
    /// Mean reward per episode over the last tenth of the updates.
    pub final_reward: f64,
    /// Mean reward per episode of a uniformly random policy on `eval` episodes, for reference.
    pub random_reward: f64,
    /// Seconds the run spent training, over all its sessions.
    pub wall_seconds: f64,
    /// Its peak resident memory (MiB).
    pub peak_rss_mib: Option<f64>,
}

/// Trains one actor-critic network on one environment.
pub struct RlTrainer {
    config: RlConfig,
    device: Device,
    /// The network (autodiff engine); with the fused engine, the module the host values are
    /// written into when a record or an evaluation needs them.
    model: Agent,
    /// The autodiff engine's optimizer (unused by the fused engine, whose `host` holds it).
    optim: ModuleStore,
    /// The fused engine's parameters and optimizer.
    host: Option<HostParams>,
    next_episode: usize,
}

/// The fused engine's parameters ([`AcParams::into_groups`]'s order), as a network's values.
fn ac_values(host: &HostParams) -> AcParams {
    AcParams::from_groups(host.values.clone())
}

/// A meta-task agent's held-out reward on one pool of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolScore {
    /// The pool: `train` (new instances of the training tasks), `heldout` (generated tasks
    /// never trained on) or a named task.
    pub pool: String,
    /// Episodes measured.
    pub episodes: usize,
    /// The agent's mean total reward per episode.
    pub reward: f64,
    /// A uniformly random policy's expected total reward on the same episodes (exact).
    pub random: f64,
    /// The expected total reward on the same episodes of the policy that knows each
    /// instance's hidden values and its state (exact; an upper bound for any agent).
    pub optimal: f64,
}

/// The pools a meta-task run is measured on: `train` (new instances), `heldout` (when the
/// config holds tasks out) and every named task. Empty for the other environments.
pub fn meta_pools(config: &RlConfig) -> Vec<Pool> {
    if config.task.kind != EnvKind::Metatasks {
        return Vec::new();
    }
    let mut pools = vec![Pool::Train];
    if config.env_shape().meta.heldout > 0 {
        pools.push(Pool::Heldout);
    }
    pools.extend(NamedTask::ALL.map(Pool::One));
    pools
}

/// The random and the optimal policy's exact expected total reward per episode, averaged over
/// episodes `0..episodes` of the `Eval` stream of the meta-task environment `shape`.
pub fn pool_expectations(shape: EnvShape, seed: u64, episodes: usize) -> (f64, f64) {
    let env = BatchEnv::new(shape, seed, Stream::Eval, 0, episodes);
    let expected = env.meta_expectations();
    let n = expected.len().max(1) as f64;
    (
        expected.iter().map(|e| e.2).sum::<f64>() / n,
        expected.iter().map(|e| e.1).sum::<f64>() / n,
    )
}

/// Mean total reward per episode of a uniformly random policy, over `episodes` episodes of the
/// `Eval` stream.
pub fn random_policy_reward(config: &RlConfig, episodes: usize) -> f64 {
    let shape = config.env_shape();
    let mut env = BatchEnv::new(shape, config.seed, Stream::Eval, 0, episodes);
    let mut rng = stream_rng(config.seed, Stream::Act, u64::MAX);
    let mut total = 0.0;
    for t in 0..shape.steps {
        env.observe(t);
        let actions: Vec<usize> = (0..episodes)
            .map(|_| rng.random_range(0..shape.actions()))
            .collect();
        total += env.act(&actions).iter().map(|r| f64::from(*r)).sum::<f64>();
    }
    total / episodes as f64
}

impl RlTrainer {
    /// A fresh trainer: initial parameters from the config's seed.
    pub fn new(config: RlConfig) -> Result<RlTrainer> {
        let device = init_device(config.device, config.dtype)?.autodiff();
        let network = config.network();
        let (model, host) = if config.train.engine == Engine::Fused {
            let host = HostParams::new(
                network.init_values(config.seed).into_groups(),
                network.trainable(),
                &config.train,
                config.dtype,
            );
            let model = Agent::Plastic(network.from_values(&ac_values(&host), &device));
            (model, Some(host))
        } else {
            (network.init_agent(config.seed, &device), None)
        };
        Ok(RlTrainer {
            optim: ModuleStore::new(&config.train, &model, config.dtype),
            config,
            device,
            model,
            host,
            next_episode: 0,
        })
    }

    /// The network with the current parameters (the fused engine's values written into the
    /// module).
    fn agent(&self) -> Agent {
        match &self.host {
            Some(host) => Agent::Plastic(
                self.config
                    .network()
                    .from_values(&ac_values(host), &self.device),
            ),
            None => self.model.clone(),
        }
    }

    /// The trainer of an interrupted (or finished) run, from its checkpoint.
    pub fn resume(run: &RunDir, config: RlConfig) -> Result<RlTrainer> {
        let mut trainer = RlTrainer::new(config)?;
        let mut checkpoint =
            open_checkpoint::<RlRow>(run, trainer.config.dtype, trainer.config.train.episodes)?;
        let dir = checkpoint.dir.clone();
        trainer.model = checkpoint.restore_model(trainer.model.clone())?;
        if let Some(host) = &mut trainer.host {
            let path = dir.join("host_optimizer.bin");
            let Some(restored) = checkpoint.host_optimizer.take() else {
                return Err(Error::artifact(
                    &path,
                    "missing: the run trains with the fused engine, whose checkpoints hold its host optimizer state (this one was written by another engine)",
                ));
            };
            let Agent::Plastic(model) = &trainer.model else {
                unreachable!("the fused engine runs the actor-critic kinds")
            };
            host.values = AcParams::of(model).into_groups();
            host.restore(restored)
                .map_err(|why| Error::artifact(&path, why))?;
        } else {
            let (train, dtype) = (&trainer.config.train, trainer.config.dtype);
            trainer.optim = ModuleStore::resumed(train, &trainer.model, dtype, &mut checkpoint)?;
        }
        trainer.next_episode = checkpoint.state.next_episode;
        Ok(trainer)
    }

    /// Adds `updates` to a finished run.
    pub fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        self.config = crate::learner::extended(&self.config, self.next_episode, updates, source)?;
        Ok(())
    }

    /// Replaces the parameters with those of a saved model record (a run's `model.bpk`).
    pub fn load_model(&mut self, path: &Path) -> Result<()> {
        self.model = crate::run::load_record(self.model.clone(), path, None)?;
        if let (Some(host), Agent::Plastic(model)) = (&mut self.host, &self.model) {
            host.values = AcParams::of(model).into_groups();
        }
        Ok(())
    }

    /// Mean total reward per episode on `episodes` held-out episodes (the `Eval` stream, in
    /// batches of at most `train.batch`), sampling the policy; no update.
    pub fn evaluate(&self, episodes: usize) -> f64 {
        self.evaluate_in(self.config.env_shape(), episodes)
    }

    /// [`RlTrainer::evaluate`] in the environment `shape`.
    fn evaluate_in(&self, shape: EnvShape, episodes: usize) -> f64 {
        let plain = self.device.clone().without_autodiff();
        let model = self.agent().valid();
        let chunk = self.config.train.batch.max(1);
        let (mut total, mut done) = (0.0, 0);
        while done < episodes {
            let b = chunk.min(episodes - done);
            let (_, reward, _) =
                self.rollout_in(shape, &model, Stream::Eval, done as u64, b, &plain);
            total += reward * b as f64;
            done += b;
        }
        total / episodes.max(1) as f64
    }

    /// Meta-tasks: the agent on `episodes` held-out episodes of each pool of
    /// [`meta_pools`], beside the random and the optimal policy's exact expectations on the
    /// same episodes. Empty for the other environments.
    pub fn evaluate_pools(&self, episodes: usize) -> Vec<PoolScore> {
        meta_pools(&self.config)
            .into_iter()
            .map(|pool| {
                let mut shape = self.config.env_shape();
                shape.meta.pool = pool;
                let (random, optimal) = pool_expectations(shape, self.config.seed, episodes);
                PoolScore {
                    pool: pool.name().to_string(),
                    episodes,
                    reward: self.evaluate_in(shape, episodes),
                    random,
                    optimal,
                }
            })
            .collect()
    }

    /// The config.
    pub fn config(&self) -> &RlConfig {
        &self.config
    }

    /// The network with the current parameters.
    pub fn model(&self) -> Agent {
        self.agent()
    }

    /// The A2C loss of `batch` episodes from `first` (of `stream`) under `model`, with the
    /// mean total reward per episode and the mean `|M(t)|`.
    pub fn rollout(
        &self,
        model: &Agent,
        stream: Stream,
        first: u64,
        batch: usize,
        device: &Device,
    ) -> (Tensor<1>, f64, f64) {
        self.rollout_in(self.config.env_shape(), model, stream, first, batch, device)
    }

    /// [`RlTrainer::rollout`] in the environment `shape` (of the same inputs and actions).
    fn rollout_in(
        &self,
        shape: EnvShape,
        model: &Agent,
        stream: Stream,
        first: u64,
        batch: usize,
        device: &Device,
    ) -> (Tensor<1>, f64, f64) {
        let train = &self.config.train;
        let mut env = BatchEnv::new(shape, self.config.seed, stream, first, batch);
        let mut rngs: Vec<_> = (0..batch as u64)
            .map(|b| stream_rng(self.config.seed ^ stream as u64, Stream::Act, first + b))
            .collect();
        let mut state = model.start(batch);
        let (mut log_taken, mut values, mut explore) = (Vec::new(), Vec::new(), Vec::new());
        let mut rewards: Vec<Vec<f32>> = Vec::with_capacity(shape.steps);
        let mut value_host: Vec<Vec<f64>> = Vec::with_capacity(shape.steps);
        let mut modulation = 0.0;
        for t in 0..shape.steps {
            let obs = env.observe(t);
            let x = Tensor::from_data(TensorData::new(obs, [batch, shape.inputs()]), device);
            let (out, next) = model.step(x, state);
            state = next;
            let probs: Vec<f32> = out
                .probs
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .expect("f32");
            let actions: Vec<usize> = rngs
                .iter_mut()
                .enumerate()
                .map(|(b, rng)| {
                    sample_action(&probs[b * shape.actions()..(b + 1) * shape.actions()], rng)
                })
                .collect();
            let index = Tensor::<2, Int>::from_data(
                TensorData::new(
                    actions.iter().map(|a| *a as i64).collect::<Vec<_>>(),
                    [batch, 1],
                ),
                device,
            );
            log_taken.push(out.log_probs.clone().gather(1, index).reshape([batch]));
            value_host.push(
                out.value
                    .clone()
                    .into_data()
                    .convert::<f64>()
                    .try_to_vec()
                    .expect("f64"),
            );
            explore.push(exploration(&out, train));
            values.push(out.value.clone());
            modulation += out
                .modulation
                .abs()
                .mean()
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("f64")[0];
            rewards.push(env.act(&actions));
        }
        let loss = a2c_loss(
            &StepTensors {
                log_taken,
                values,
                explore,
                value_host,
            },
            &rewards,
            train,
            batch,
            device,
        );
        let total: f64 = rewards.iter().flatten().map(|r| f64::from(*r)).sum();
        (
            loss,
            total / batch as f64,
            modulation / shape.steps.max(1) as f64,
        )
    }
}

/// Per step of a batch: what the A2C loss needs of the network's outputs.
struct StepTensors {
    /// `log p(a_t)` of the action taken, `[B]` per step.
    log_taken: Vec<Tensor<1>>,
    /// `V_t`, `[B]` per step.
    values: Vec<Tensor<1>>,
    /// The exploration term `X(p_t)`, `[B]` per step.
    explore: Vec<Tensor<1>>,
    /// `V_t` on the host (the advantage is held fixed in the policy term).
    value_host: Vec<Vec<f64>>,
}

/// The exploration term of one step's outputs, `[B]`.
fn exploration(out: &AcStep, train: &RlTrainConfig) -> Tensor<1> {
    let batch = out.value.dims()[0];
    match train.exploration() {
        Exploration::SumP2 => (out.probs.clone() * out.probs.clone())
            .sum_dim(1)
            .reshape([batch]),
        Exploration::Entropy => (out.probs.clone() * out.log_probs.clone())
            .sum_dim(1)
            .reshape([batch]),
    }
}

/// The A2C loss (see [`super::replay`]) of a batch's outputs and rewards.
fn a2c_loss(
    steps_out: &StepTensors,
    rewards: &[Vec<f32>],
    train: &RlTrainConfig,
    batch: usize,
    device: &Device,
) -> Tensor<1> {
    // Discounted returns and advantages, on the host.
    let steps = rewards.len();
    let mut returns = vec![vec![0.0f32; batch]; steps];
    let mut next = vec![0.0f32; batch];
    for t in (0..steps).rev() {
        for b in 0..batch {
            next[b] = rewards[t][b] + train.discount() as f32 * next[b];
            returns[t][b] = next[b];
        }
    }
    let mut loss: Tensor<1> = Tensor::zeros([1], device);
    for t in 0..steps {
        let ret = Tensor::<1>::from_data(TensorData::new(returns[t].clone(), [batch]), device);
        // In f64 (exact for f32 values), so that an f64 run's advantage is not rounded.
        let adv: Vec<f64> = (0..batch)
            .map(|b| f64::from(returns[t][b]) - steps_out.value_host[t][b])
            .collect();
        let adv = Tensor::<1>::from_data(TensorData::new(adv, [batch]), device);
        let delta = ret - steps_out.values[t].clone();
        let term = steps_out.log_taken[t].clone().neg() * adv
            + delta.clone() * delta * train.value_coef()
            + steps_out.explore[t].clone() * train.exploration_coef();
        loss = loss + term.mean().reshape([1]);
    }
    loss
}

/// The A2C loss of recorded episodes under `model` (on `device`; an autodiff device gives
/// its gradient): the observations fed and the actions taken as recorded.
pub fn replay_loss(
    model: &Agent,
    replay: &Replay,
    train: &RlTrainConfig,
    device: &Device,
) -> Tensor<1> {
    let batch = replay.batch;
    let mut state = model.start(batch);
    let mut out = StepTensors {
        log_taken: Vec::new(),
        values: Vec::new(),
        explore: Vec::new(),
        value_host: Vec::new(),
    };
    for (obs, actions) in replay.observations.iter().zip(&replay.actions) {
        let inputs = obs.len() / batch;
        let x = Tensor::from_data(TensorData::new(obs.clone(), [batch, inputs]), device);
        let (step, next) = model.step(x, state);
        state = next;
        let index = Tensor::<2, Int>::from_data(
            TensorData::new(
                actions.iter().map(|a| *a as i64).collect::<Vec<_>>(),
                [batch, 1],
            ),
            device,
        );
        out.log_taken
            .push(step.log_probs.clone().gather(1, index).reshape([batch]));
        out.value_host.push(
            step.value
                .clone()
                .into_data()
                .convert::<f64>()
                .try_to_vec()
                .expect("f64"),
        );
        out.explore.push(exploration(&step, train));
        out.values.push(step.value);
    }
    a2c_loss(&out, &replay.rewards, train, batch, device)
}

impl Learner for RlTrainer {
    fn compute_device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    type Row = RlRow;
    type Summary = RlSummary;

    fn progress(&self) -> Progress {
        Progress::of(self.next_episode, &self.config)
    }

    fn step(&mut self) -> std::result::Result<RlRow, Divergence> {
        let episode = self.next_episode;
        let batch = self.config.train.batch;
        let started = Instant::now();
        if let Some(host) = &mut self.host {
            let config = &self.config;
            let network = config.network();
            let (shape, first) = (config.env_shape(), (episode * batch) as u64);
            let values = AcParams::from_groups(std::mem::take(&mut host.values));
            let update = match config.dtype {
                Precision::F32 => FusedAc::<f32>::new(&network, &values).update(
                    shape,
                    config.seed,
                    Stream::Train,
                    first,
                    batch,
                    &config.train,
                ),
                Precision::F64 => FusedAc::<f64>::new(&network, &values).update(
                    shape,
                    config.seed,
                    Stream::Train,
                    first,
                    batch,
                    &config.train,
                ),
            };
            host.values = values.into_groups();
            if !update.loss.is_finite() {
                return Err(Divergence {
                    episode,
                    what: format!("the loss ({})", update.loss),
                });
            }
            let mut grads = update.grads.into_groups();
            host.step(config.train.learning_rate_at(episode), &mut grads);
            self.next_episode += 1;
            return Ok(RlRow {
                episode,
                loss: update.loss,
                reward: update.reward,
                modulation: update.modulation,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let (loss, reward, modulation) = self.rollout(
            &self.model,
            Stream::Train,
            (episode * batch) as u64,
            batch,
            &self.device,
        );
        let value = loss
            .clone()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64")[0];
        if !value.is_finite() {
            return Err(Divergence {
                episode,
                what: format!("the loss ({value})"),
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(
            self.config.train.learning_rate_at(episode),
            self.model.clone(),
            grads,
        );
        self.next_episode += 1;
        Ok(RlRow {
            episode,
            loss: value,
            reward,
            modulation,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn check_parameters(&self) -> std::result::Result<(), Divergence> {
        let bad = match &self.host {
            Some(host) => host
                .non_finite()
                .map(|i| AcParams::GROUP_NAMES[i].to_string()),
            None => non_finite_parameter(&self.model),
        };
        Divergence::in_parameter(self.next_episode, bad)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let at = Path::new("checkpoint");
        let (optimizer, host_optimizer) = match &self.host {
            Some(host) => (None, Some(host.optimizer().clone())),
            None => self.optim.snapshot(at)?,
        };
        Ok(Snapshot {
            model: model_bytes(&self.agent().valid(), at)?,
            optimizer,
            host_optimizer,
            next_episode: self.next_episode,
            dtype: self.config.dtype,
        })
    }

    fn model_record(&self) -> Result<Vec<u8>> {
        model_bytes(&self.agent().valid(), Path::new("model.bpk"))
    }

    fn summarize(&mut self, rows: &[RlRow], session: Session) -> Result<RlSummary> {
        let tail = (rows.len() / 10).max(1).min(rows.len().max(1));
        let final_reward =
            rows.iter().rev().take(tail).map(|r| r.reward).sum::<f64>() / tail as f64;
        Ok(RlSummary {
            task: self.config.task.kind.name().to_string(),
            model: self.config.model.kind.name().to_string(),
            params: self.config.network().num_params(),
            episodes: rows.len(),
            final_reward,
            random_reward: random_policy_reward(&self.config, 200),
            wall_seconds: session.wall_seconds,
            peak_rss_mib: session.peak_rss_mib,
        })
    }
}
