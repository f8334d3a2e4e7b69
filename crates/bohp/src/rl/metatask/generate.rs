//! The seeded task generator and the paper's rejection tests (reference §7).
//!
//! Proportions (ours where the paper gives none; docs/metatasks.md): 4 states (3 one time in
//! four); each state's two transition distributions one-hot (3 in 5) or two-hot (0.9/0.1 or
//! 0.5/0.5), a quarter of states with the same distribution for both actions and a quarter
//! with action 1's targets swapped from action 0's; a state shows nothing one time in five,
//! else a fixed stimulus (3 in 5) or a variable one; 1 reward rule (3 in 5), 2 (1 in 4) or 3;
//! 1 or 2 flag rules. A reward rule always names its old state (a special-state variable one
//! time in four), names its new state half the time, its action a third of the time, and its
//! flag a quarter of the time; its probability is a constant (1, 0.9, 0.5 or 0.1), `p_k` or
//! `1 − p_k`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::runner::Instance;
use super::{Cond, FIXED_STIMULI, FlagRule, MetaTask, Prob, RewardRule, StateRef, Stimulus};
use crate::rng::{Stream, stream_rng};

/// Why the rejection tests refuse a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No quantity that matters varies between instances: every instance pays the same
    /// expected rewards (nothing to meta-learn).
    NothingVaries,
    /// Fewer than two states where the action changes the outcome (the next state's
    /// distribution or the expected reward).
    FewChoices,
    /// State 0 is absorbing: both actions stay there for sure.
    AbsorbingStart,
    /// This state cannot be reached from state 0.
    Unreachable(usize),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NothingVaries => {
                write!(f, "no quantity that matters varies between instances")
            }
            Rejection::FewChoices => {
                write!(f, "fewer than two states have action-dependent outcomes")
            }
            Rejection::AbsorbingStart => write!(f, "state 0 is absorbing"),
            Rejection::Unreachable(s) => write!(f, "state {s} cannot be reached from state 0"),
        }
    }
}

/// Instances drawn to compare expected rewards in [`check`].
const PROBE_INSTANCES: u64 = 16;

/// The expected reward of every `(s, a, flag)` in an instance, over the next state (so a rule on
/// a transition that cannot happen changes nothing).
fn reward_table(task: &MetaTask, inst: &Instance) -> Vec<f64> {
    let n = task.states();
    let mut table = Vec::with_capacity(n * 2 * 2);
    for s in 0..n {
        for a in 0..2 {
            for flag in 0..2 {
                table.push(
                    (0..n)
                        .map(|next| {
                            task.transitions[s][a][next]
                                * task.expected_reward(inst, s, a, next, flag)
                        })
                        .sum(),
                );
            }
        }
    }
    table
}

/// The paper's rejection tests, in order: state 0 not absorbing; every state reachable from
/// state 0; at least two states with action-dependent outcomes (in some instance); some
/// expected reward of a (state, action, flag) that differs between instances (16 instances
/// drawn from a fixed stream).
/// The task must be valid ([`MetaTask::validate`]).
pub fn check(task: &MetaTask) -> Result<(), Rejection> {
    let n = task.states();
    if task.transitions[0].iter().all(|d| d[0] == 1.0) {
        return Err(Rejection::AbsorbingStart);
    }
    let mut seen = vec![false; n];
    seen[0] = true;
    let mut stack = vec![0];
    while let Some(s) = stack.pop() {
        for dist in &task.transitions[s] {
            for (t, p) in dist.iter().enumerate() {
                if *p > 0.0 && !seen[t] {
                    seen[t] = true;
                    stack.push(t);
                }
            }
        }
    }
    if let Some(s) = seen.iter().position(|v| !v) {
        return Err(Rejection::Unreachable(s));
    }
    let instances: Vec<Instance> = (0..PROBE_INSTANCES)
        .map(|i| Instance::draw(task, 1, &mut stream_rng(0, Stream::Tasks, i)))
        .collect();
    let choices = (0..n)
        .filter(|&s| {
            let t = &task.transitions[s];
            t[0] != t[1]
                || instances.iter().any(|inst| {
                    (0..2).any(|flag| {
                        let mean = |a: usize| -> f64 {
                            (0..n)
                                .map(|next| {
                                    t[a][next] * task.expected_reward(inst, s, a, next, flag)
                                })
                                .sum()
                        };
                        (mean(0) - mean(1)).abs() > 1e-12
                    })
                })
        })
        .count();
    if choices < 2 {
        return Err(Rejection::FewChoices);
    }
    let first = reward_table(task, &instances[0]);
    if instances[1..]
        .iter()
        .all(|inst| reward_table(task, inst) == first)
    {
        return Err(Rejection::NothingVaries);
    }
    Ok(())
}

/// A transition distribution: one-hot on a uniform state, or two-hot on two distinct states.
fn distribution(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut d = vec![0.0; n];
    let a = rng.random_range(0..n);
    if rng.random_bool(0.6) {
        d[a] = 1.0;
    } else {
        let b = (a + rng.random_range(1..n)) % n;
        let (major, minor) = if rng.random_bool(0.5) {
            (0.9, 0.1)
        } else {
            (0.5, 0.5)
        };
        d[a] = major;
        d[b] = minor;
    }
    d
}

/// A state condition of a rule: a given state, or (with probability `special`) a new or
/// existing special-state variable.
fn state_ref(
    n: usize,
    special: &mut Vec<[usize; 2]>,
    p_special: f64,
    rng: &mut ChaCha8Rng,
) -> StateRef {
    if rng.random_bool(p_special) {
        if !special.is_empty() && rng.random_bool(0.5) {
            return StateRef::Special(rng.random_range(0..special.len()));
        }
        // A range of at least two states: 0 or 1 up to the last.
        let lo = if n > 2 { rng.random_range(0..2) } else { 0 };
        special.push([lo, n - 1]);
        StateRef::Special(special.len() - 1)
    } else {
        StateRef::State(rng.random_range(0..n))
    }
}

/// One candidate task (not yet checked) from `rng`.
pub fn candidate(rng: &mut ChaCha8Rng) -> MetaTask {
    let n = if rng.random_bool(0.75) { 4 } else { 3 };
    let mut transitions = Vec::with_capacity(n);
    for _ in 0..n {
        let first = distribution(n, rng);
        let u: f64 = rng.random_range(0.0..1.0);
        let second = if u < 0.25 {
            first.clone()
        } else if u < 0.5 {
            // Swapped: action 1 goes where action 0 does not (for a one-hot, another state).
            let mut swapped = vec![0.0; n];
            let targets: Vec<usize> = (0..n).filter(|t| first[*t] > 0.0).collect();
            if let [a, b] = targets[..] {
                swapped[a] = first[b];
                swapped[b] = first[a];
            } else {
                swapped[(targets[0] + rng.random_range(1..n)) % n] = 1.0;
            }
            swapped
        } else {
            distribution(n, rng)
        };
        transitions.push(vec![first, second]);
    }
    let mut variables = 0;
    let stimuli = (0..n)
        .map(|_| {
            if rng.random_bool(0.2) {
                Stimulus::None
            } else if rng.random_bool(0.6) {
                Stimulus::Fixed(rng.random_range(0..FIXED_STIMULI))
            } else {
                variables += 1;
                Stimulus::Variable(variables - 1)
            }
        })
        .collect();
    let mut special = Vec::new();
    let mut probabilities = 0;
    let count = match rng.random_range(0.0..1.0) {
        u if u < 0.6 => 1,
        u if u < 0.85 => 2,
        _ => 3,
    };
    let reward = (0..count)
        .map(|_| {
            let from = state_ref(n, &mut special, 0.25, rng);
            let to = if rng.random_bool(0.5) {
                state_ref(n, &mut special, 0.4, rng)
            } else {
                StateRef::Any
            };
            let action = if rng.random_bool(1.0 / 3.0) {
                Cond::Is(rng.random_range(0..2))
            } else {
                Cond::Any
            };
            let flag = if rng.random_bool(0.25) {
                Cond::Is(rng.random_range(0..2))
            } else {
                Cond::Any
            };
            let p = match rng.random_range(0..3) {
                0 => Prob::Const([1.0, 0.9, 0.5, 0.1][rng.random_range(0..4)]),
                kind => {
                    let k = if probabilities > 0 && rng.random_bool(0.5) {
                        rng.random_range(0..probabilities)
                    } else {
                        probabilities += 1;
                        probabilities - 1
                    };
                    if kind == 1 {
                        Prob::Var(k)
                    } else {
                        Prob::OneMinus(k)
                    }
                }
            };
            RewardRule {
                from,
                to,
                action,
                flag,
                p,
                value: 1.0,
            }
        })
        .collect();
    let flags = rng.random_range(1..=2);
    let flag = (0..flags)
        .map(|_| FlagRule {
            from: StateRef::State(rng.random_range(0..n)),
            to: if rng.random_bool(0.5) {
                StateRef::State(rng.random_range(0..n))
            } else {
                StateRef::Any
            },
            action: if rng.random_bool(1.0 / 3.0) {
                Cond::Is(rng.random_range(0..2))
            } else {
                Cond::Any
            },
            set: usize::from(rng.random_bool(0.8)),
        })
        .collect();
    MetaTask {
        name: String::new(),
        stimuli,
        transitions,
        special,
        probabilities,
        reward,
        flag,
    }
}

/// Most candidates drawn for one task before giving up (a guard: the tests generate hundreds
/// of tasks far below it).
const MAX_TRIES: usize = 10_000;

/// `count` distinct tasks generated from `seed`: task `i` is the first candidate drawn from
/// its own stream (`seed`, task `i`) that passes [`check`] and differs from tasks `0..i`. So
/// the first `k` tasks of a larger set are the `k`-task set, and tasks `k..` can be held out.
/// Named `gen-<seed>-<i>`.
pub fn generate(seed: u64, count: usize) -> Vec<MetaTask> {
    let mut tasks: Vec<MetaTask> = Vec::with_capacity(count);
    for i in 0..count {
        let mut rng = stream_rng(seed, Stream::Tasks, i as u64);
        let task = (0..MAX_TRIES)
            .map(|_| candidate(&mut rng))
            .find(|t| {
                t.validate().is_ok()
                    && check(t).is_ok()
                    && tasks.iter().all(|old| old.anonymous() != *t)
            })
            .expect("the generator finds a task within its tries");
        tasks.push(MetaTask {
            name: format!("gen-{seed}-{i}"),
            ..task
        });
    }
    tasks
}
