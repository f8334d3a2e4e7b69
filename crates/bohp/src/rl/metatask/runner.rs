//! Running a meta-task: instances, one episode's transitions, and the exact expected total
//! reward of the optimal and of the uniformly random policy.
//!
//! *Runner choices* (the paper leaves them open; docs/metatasks.md):
//! - an episode is `steps` transitions; the agent starts in state 0 with the flag at 0;
//! - the reward of a transition is decided by the last reward rule that matches it (old state,
//!   new state, action, the flag *before* the transition), paid with the rule's probability;
//! - then the last matching flag rule sets the flag, and entering state 0 resets it to 0;
//! - a trial is the walk from state 0 back to state 0: after `timeout` transitions without
//!   returning, the agent is put back in state 0 (flag 0), so no task traps it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Cond, MetaTask, Prob, StateRef, Stimulus};

/// A task's hidden values in one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The state each special-state variable takes.
    pub special: Vec<usize>,
    /// Each probability variable's value.
    pub p: Vec<f64>,
    /// Each variable stimulus, `bits` values of ±1.
    pub variable: Vec<Vec<f32>>,
}

impl Instance {
    /// Draws an instance of `task`: special states uniformly in their ranges, then `p_k ~ U(0,
    /// 1)`, then the variable stimuli (±1 with equal odds, `bits` each), in that order.
    pub fn draw(task: &MetaTask, bits: usize, rng: &mut ChaCha8Rng) -> Instance {
        let special = task
            .special
            .iter()
            .map(|[lo, hi]| rng.random_range(*lo..=*hi))
            .collect();
        let p = (0..task.probabilities)
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let variable = (0..task.variable_stimuli())
            .map(|_| {
                (0..bits)
                    .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                    .collect()
            })
            .collect();
        Instance {
            special,
            p,
            variable,
        }
    }
}

fn state_matches(r: StateRef, s: usize, inst: &Instance) -> bool {
    match r {
        StateRef::Any => true,
        StateRef::State(t) => t == s,
        StateRef::Special(k) => inst.special[k] == s,
    }
}

fn cond_matches(c: Cond, v: usize) -> bool {
    match c {
        Cond::Any => true,
        Cond::Is(w) => w == v,
    }
}

/// Whether a rule's `from`, `to` and `action` conditions match transition `s --a--> next`.
fn transition_matches(
    (from, to, action): (StateRef, StateRef, Cond),
    inst: &Instance,
    (s, a, next): (usize, usize, usize),
) -> bool {
    state_matches(from, s, inst) && state_matches(to, next, inst) && cond_matches(action, a)
}

impl MetaTask {
    /// The reward of transition `s --a--> next` with the flag at `flag` in `inst`: its
    /// probability and value (the last matching rule's; none: `(0, 0)`).
    pub fn reward_of(
        &self,
        inst: &Instance,
        s: usize,
        a: usize,
        next: usize,
        flag: usize,
    ) -> (f64, f64) {
        self.reward
            .iter()
            .rev()
            .find(|r| {
                transition_matches((r.from, r.to, r.action), inst, (s, a, next))
                    && cond_matches(r.flag, flag)
            })
            .map_or((0.0, 0.0), |r| {
                let p = match r.p {
                    Prob::Const(x) => x,
                    Prob::Var(k) => inst.p[k],
                    Prob::OneMinus(k) => 1.0 - inst.p[k],
                };
                (p, r.value)
            })
    }

    /// The flag after transition `s --a--> next` from `flag`: the last matching flag rule's
    /// value, then 0 on entering state 0.
    pub fn flag_after(
        &self,
        inst: &Instance,
        s: usize,
        a: usize,
        next: usize,
        flag: usize,
    ) -> usize {
        if next == 0 {
            return 0;
        }
        self.flag
            .iter()
            .rev()
            .find(|r| transition_matches((r.from, r.to, r.action), inst, (s, a, next)))
            .map_or(flag, |r| r.set)
    }

    /// The expected reward of transition `s --a--> next` with `flag` (probability × value).
    pub fn expected_reward(
        &self,
        inst: &Instance,
        s: usize,
        a: usize,
        next: usize,
        flag: usize,
    ) -> f64 {
        let (p, v) = self.reward_of(inst, s, a, next, flag);
        p * v
    }
}

/// Where an episode is: the state, the flag, and transitions since it last was in state 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The current state.
    pub state: usize,
    /// The flag (0 or 1).
    pub flag: usize,
    /// Transitions since the trial began (in state 0).
    pub since_start: usize,
}

impl Position {
    /// The start of an episode: state 0, flag 0.
    pub const START: Position = Position {
        state: 0,
        flag: 0,
        since_start: 0,
    };
}

/// Where `at --a--> next` leads (the flag rules, the reset on state 0, and the trial timeout).
pub fn advance(
    task: &MetaTask,
    inst: &Instance,
    at: Position,
    a: usize,
    next: usize,
    timeout: usize,
) -> Position {
    let flag = task.flag_after(inst, at.state, a, next, at.flag);
    let since = if next == 0 { 0 } else { at.since_start + 1 };
    if next != 0 && since >= timeout {
        Position::START
    } else {
        Position {
            state: next,
            flag,
            since_start: since,
        }
    }
}

/// One transition drawn from `rng`: the next state (one uniform number against the
/// transition's cumulative probabilities), then the reward (a second uniform number against
/// its probability). Returns the new position and the reward.
pub fn step(
    task: &MetaTask,
    inst: &Instance,
    at: Position,
    a: usize,
    timeout: usize,
    rng: &mut ChaCha8Rng,
) -> (Position, f32) {
    let dist = &task.transitions[at.state][a];
    let u: f64 = rng.random_range(0.0..1.0);
    let mut next = dist.len() - 1;
    let mut cumulative = 0.0;
    for (t, p) in dist.iter().enumerate() {
        cumulative += p;
        if u < cumulative && *p > 0.0 {
            next = t;
            break;
        }
    }
    // Rounding can leave u above the last cumulative sum: take the last reachable state.
    if dist[next] == 0.0 {
        next = dist.iter().rposition(|p| *p > 0.0).expect("a distribution");
    }
    let (p, value) = task.reward_of(inst, at.state, a, next, at.flag);
    let paid: f64 = rng.random_range(0.0..1.0);
    let reward = if paid < p { value as f32 } else { 0.0 };
    (advance(task, inst, at, a, next, timeout), reward)
}

/// What state `at` shows, `bits` values: a fixed stimulus's row of `alphabet`, the instance's
/// variable stimulus, or zeros.
pub fn stimulus<'a>(
    task: &MetaTask,
    inst: &'a Instance,
    alphabet: &'a [f32],
    bits: usize,
    state: usize,
) -> Option<&'a [f32]> {
    match task.stimuli[state] {
        Stimulus::None => None,
        Stimulus::Fixed(k) => Some(&alphabet[k * bits..(k + 1) * bits]),
        Stimulus::Variable(k) => Some(&inst.variable[k]),
    }
}

/// The exact expected total reward, over an episode of `steps` transitions, of the policy that
/// knows the instance and the state and acts optimally, and of the uniformly random policy:
/// dynamic programming over (state, flag, transitions since state 0) and the steps left.
#[derive(Debug, Clone)]
pub struct Planner {
    /// `q[h][position][a]`: the optimal expected reward of the last `h + 1` steps after taking
    /// `a` (row `h` = steps left − 1).
    q: Vec<Vec<[f64; 2]>>,
    timeout: usize,
    /// The random policy's expected total from the start.
    random: f64,
}

impl Planner {
    /// Plans `task` in `inst` for episodes of `steps` transitions.
    pub fn new(task: &MetaTask, inst: &Instance, steps: usize, timeout: usize) -> Planner {
        let n = task.states();
        let positions = n * 2 * timeout;
        let index = |p: Position| (p.state * 2 + p.flag) * timeout + p.since_start;
        // Each (position, action): its outcomes (probability, reward, next position's index).
        let mut outcomes: Vec<[Vec<(f64, f64, usize)>; 2]> = Vec::with_capacity(positions);
        for state in 0..n {
            for flag in 0..2 {
                for since_start in 0..timeout {
                    let at = Position {
                        state,
                        flag,
                        since_start,
                    };
                    outcomes.push(std::array::from_fn(|a| {
                        task.transitions[state][a]
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| **p > 0.0)
                            .map(|(next, p)| {
                                let r = task.expected_reward(inst, state, a, next, flag);
                                let to = advance(task, inst, at, a, next, timeout);
                                (*p, r, index(to))
                            })
                            .collect()
                    }));
                }
            }
        }
        let (mut best, mut uniform) = (vec![0.0; positions], vec![0.0; positions]);
        let mut q = Vec::with_capacity(steps);
        for _ in 0..steps {
            let mut row = vec![[0.0; 2]; positions];
            let (mut next_best, mut next_uniform) = (vec![0.0; positions], vec![0.0; positions]);
            for (i, outs) in outcomes.iter().enumerate() {
                let mut mean = 0.0;
                for (a, out) in outs.iter().enumerate() {
                    row[i][a] = out.iter().map(|(p, r, to)| p * (r + best[*to])).sum();
                    mean += 0.5
                        * out
                            .iter()
                            .map(|(p, r, to)| p * (r + uniform[*to]))
                            .sum::<f64>();
                }
                next_best[i] = row[i][0].max(row[i][1]);
                next_uniform[i] = mean;
            }
            best = next_best;
            uniform = next_uniform;
            q.push(row);
        }
        Planner {
            random: uniform[index(Position::START)],
            q,
            timeout,
        }
    }

    /// The optimal policy's expected total reward from the start.
    pub fn optimal(&self) -> f64 {
        self.q.last().map_or(0.0, |row| row[0][0].max(row[0][1]))
    }

    /// The uniformly random policy's expected total reward from the start.
    pub fn random(&self) -> f64 {
        self.random
    }

    /// The optimal action at `at` with `left` steps to go (ties: action 0).
    pub fn act(&self, at: Position, left: usize) -> usize {
        let i = (at.state * 2 + at.flag) * self.timeout + at.since_start;
        let q = self.q[left - 1][i];
        usize::from(q[1] > q[0])
    }
}
