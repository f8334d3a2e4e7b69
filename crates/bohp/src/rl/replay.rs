//! Recorded episodes and the A2C loss on them.
//!
//! A2C samples its actions, so its loss is not a function of the parameters alone: moving a
//! parameter can change an action. A [`Replay`] records a batch of episodes (observations,
//! actions, rewards) once; on it the loss is a deterministic, differentiable function of the
//! parameters, which the gradient check (`bohp gradcheck` on a bandit, cue or maze config)
//! compares across burn autodiff, the host reverse pass, forward mode, the fused engine and
//! finite differences. Recording uses the trainer's streams (the environment's, and one action
//! stream per episode), so a replay holds the episodes that the trainer and the fused engine
//! would run with the same parameters.
//!
//! The loss per episode and step (the advantage `R − V` held fixed in the policy term, as in
//! training; `R` the discounted return, computed in f32 as the trainer does):
//!
//! ```text
//! L = (1/B) Σ_b Σ_t [ −log p(a_t)·(R_t − V_t) + c_v·(R_t − V_t)² + c_e·X(p_t) ]
//! X = Σ_a p_a² (sum-p2)  or  Σ_a p_a·log p_a (entropy)
//! ```

use super::config::{Exploration, RlConfig, RlTrainConfig};
use super::env::BatchEnv;
use super::host::{HostAc, HostState, Rollout};
use crate::rng::{Stream, stream_rng};
use crate::rules::{Real, real};

/// A batch of recorded episodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// Per step, the observations `[B, I]`.
    pub observations: Vec<Vec<f64>>,
    /// Per step, each episode's action `[B]`.
    pub actions: Vec<Vec<usize>>,
    /// Per step, each episode's reward `[B]`.
    pub rewards: Vec<Vec<f32>>,
    /// Episodes.
    pub batch: usize,
}

impl Replay {
    /// Runs episodes `first..first + batch` of `stream` under `net` (f64) and records them:
    /// the replay, the forward pass, and the state after the last step.
    pub fn record(
        config: &RlConfig,
        net: &HostAc,
        stream: Stream,
        first: u64,
        batch: usize,
    ) -> (Replay, Rollout, HostState) {
        let shape = config.env_shape();
        let actions_n = shape.actions();
        let mut env = BatchEnv::new(shape, config.seed, stream, first, batch);
        let mut rngs: Vec<_> = (0..batch as u64)
            .map(|b| stream_rng(config.seed ^ stream as u64, Stream::Act, first + b))
            .collect();
        let mut state: HostState = net.start(batch);
        let mut rollout = Rollout::new(batch);
        let mut replay = Replay {
            observations: Vec::with_capacity(shape.steps),
            actions: Vec::with_capacity(shape.steps),
            rewards: Vec::with_capacity(shape.steps),
            batch,
        };
        for t in 0..shape.steps {
            let obs: Vec<f64> = env.observe(t).into_iter().map(f64::from).collect();
            net.step(&mut rollout, &mut state, &obs);
            let probs: Vec<f32> = rollout.step_probs(t).iter().map(|&p| p as f32).collect();
            let actions: Vec<usize> = rngs
                .iter_mut()
                .enumerate()
                .map(|(b, rng)| sample_action(&probs[b * actions_n..(b + 1) * actions_n], rng))
                .collect();
            replay.rewards.push(env.act(&actions));
            replay.actions.push(actions);
            replay.observations.push(obs);
        }
        (replay, rollout, state)
    }

    /// Steps per episode.
    pub fn steps(&self) -> usize {
        self.actions.len()
    }

    /// The discounted returns `[steps][B]`, in f32 as the trainer computes them.
    pub fn returns(&self, discount: f64) -> Vec<Vec<f32>> {
        let mut out = vec![vec![0.0f32; self.batch]; self.steps()];
        let mut next = vec![0.0f32; self.batch];
        for t in (0..self.steps()).rev() {
            for b in 0..self.batch {
                next[b] = self.rewards[t][b] + discount as f32 * next[b];
                out[t][b] = next[b];
            }
        }
        out
    }

    /// The loss of the replayed episodes under the outputs of `rollout` (a forward pass of
    /// [`Self::observations`]), with its gradients with respect to each step's logits
    /// `[B, A]` and values `[B]`. `advantages`, if given, replaces `R − V` in the policy term
    /// (the advantage held fixed, as finite differences of the training loss need).
    pub fn loss(
        &self,
        rollout: &Rollout,
        train: &RlTrainConfig,
        advantages: Option<&[Vec<f64>]>,
    ) -> ReplayLoss {
        let returns = self.returns(train.discount());
        let (steps, batch) = (self.steps(), self.batch);
        let actions_n = rollout.probs[0].len() / batch;
        let inv_b = 1.0 / batch as f64;
        let mut out = ReplayLoss {
            loss: 0.0,
            d_logits: vec![vec![0.0; batch * actions_n]; steps],
            d_values: vec![vec![0.0; batch]; steps],
            advantages: vec![vec![0.0; batch]; steps],
        };
        for t in 0..steps {
            for b in 0..batch {
                let value = rollout.values[t][b];
                let ret = f64::from(returns[t][b]);
                out.advantages[t][b] = ret - value;
                let step = a2c_step(
                    &rollout.probs[t][b * actions_n..(b + 1) * actions_n],
                    self.actions[t][b],
                    ret,
                    value,
                    advantages.map(|a| a[t][b]),
                    train,
                    inv_b,
                    &mut out.d_logits[t][b * actions_n..(b + 1) * actions_n],
                );
                out.loss += step.term * inv_b;
                out.d_values[t][b] = step.d_value;
            }
        }
        out
    }

    /// The loss of the replayed episodes under `net` with the policy term's advantages fixed
    /// at `advantages` (finite differences).
    pub fn loss_under(&self, net: &HostAc, train: &RlTrainConfig, advantages: &[Vec<f64>]) -> f64 {
        let rollout = net.forward(&self.observations, self.batch);
        self.loss(&rollout, train, Some(advantages)).loss
    }
}

/// [`Replay::loss`]'s result.
#[derive(Debug, Clone)]
pub struct ReplayLoss {
    /// The loss.
    pub loss: f64,
    /// Per step, `∂L/∂logits` `[B, A]`.
    pub d_logits: Vec<Vec<f64>>,
    /// Per step, `∂L/∂V` `[B]`.
    pub d_values: Vec<Vec<f64>>,
    /// Per step, `R − V` `[B]`.
    pub advantages: Vec<Vec<f64>>,
}

/// One step of one episode in the A2C loss: its term and `∂/∂V` (both already scaled by
/// `scale`, the batch's `1/B`, except the returned term which is not).
#[derive(Debug, Clone, Copy)]
pub(crate) struct A2cStep<F> {
    /// `−log p(a)·adv + c_v·(R − V)² + c_e·X(p)` (unscaled).
    pub term: F,
    /// `scale · ∂term/∂V` with the advantage held fixed in the policy term.
    pub d_value: F,
}

/// The A2C loss of one step (probabilities `probs`, the action taken, return `ret`, value
/// `value`): its term, `∂/∂V`, and `∂/∂logits` written to `d_logits`, both scaled by `scale`.
/// `advantage` replaces `ret − value` in the policy term when given. The one formula of the
/// host engines (the fused engine's update and the replays of the gradient check).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn a2c_step<F: Real>(
    probs: &[F],
    action: usize,
    ret: F,
    value: F,
    advantage: Option<F>,
    train: &RlTrainConfig,
    scale: f64,
    d_logits: &mut [F],
) -> A2cStep<F> {
    let delta = ret - value;
    let adv = advantage.unwrap_or(delta);
    let p_taken = probs[action];
    let ce: F = real(train.exploration_coef());
    let (explore, d_explore): (F, Vec<F>) = match train.exploration() {
        Exploration::SumP2 => {
            let s2 = probs.iter().map(|p| *p * *p).sum::<F>();
            let two: F = real(2.0);
            (s2, probs.iter().map(|p| two * *p * (*p - s2)).collect())
        }
        Exploration::Entropy => {
            let plogp = probs.iter().map(|p| *p * p.ln()).sum::<F>();
            (plogp, probs.iter().map(|p| *p * (p.ln() - plogp)).collect())
        }
    };
    let cv: F = real(train.value_coef());
    let term = -p_taken.ln() * adv + cv * delta * delta + ce * explore;
    let scale: F = real(scale);
    for (k, dz) in d_logits.iter_mut().enumerate() {
        let onehot = if k == action { F::one() } else { F::zero() };
        *dz = scale * (adv * (probs[k] - onehot) + ce * d_explore[k]);
    }
    A2cStep {
        term,
        d_value: scale * (-real::<F>(2.0) * cv * delta),
    }
}

/// An action drawn from the policy's probabilities `probs` with `rng`.
pub fn sample_action(probs: &[f32], rng: &mut rand_chacha::ChaCha8Rng) -> usize {
    use rand::Rng;
    let u: f32 = rng.random();
    let mut acc = 0.0;
    probs
        .iter()
        .position(|p| {
            acc += p;
            u < acc
        })
        .unwrap_or(probs.len() - 1)
}
