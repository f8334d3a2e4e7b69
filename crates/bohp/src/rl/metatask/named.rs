//! The known meta-RL tasks written in the space's own terms (reference §7). Each has a
//! hand-computed expected reward for the optimal (instance-knowing) and the random policy,
//! which the tests compare with [`super::runner::Planner`] and with simulated episodes.

use super::{Cond, FlagRule, MetaTask, Prob, RewardRule, StateRef, Stimulus};

/// The named tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedTask {
    /// One state; action 0 pays with probability `p0`, action 1 with `1 − p0`.
    Bandit,
    /// Harlow's task: a fixation state, then one of two states showing the instance's two new
    /// objects (which one is on the left drawn at random); picking the rewarded object pays 1.
    Harlow,
    /// T-maze: from the start, action 0 enters the left arm, 1 the right; the arm `x0` pays 1.
    TMaze,
    /// The Daw two-step task: each first-stage action leads to its "common" second-stage state
    /// with probability 0.9; leaving the second-stage state `x0` pays with probability 0.9,
    /// the other 0.1.
    TwoStep,
    /// Key–door: a left and a right room, one of them (`x0`) holding the key (the flag), then
    /// the door, which pays 1 with the key.
    KeyDoor,
}

/// Stimuli of a task whose states each show their own fixed stimulus.
fn fixed(n: usize) -> Vec<Stimulus> {
    (0..n).map(Stimulus::Fixed).collect()
}

/// A one-hot distribution over `n` states.
fn to(n: usize, s: usize) -> Vec<f64> {
    (0..n).map(|t| f64::from(u8::from(t == s))).collect()
}

/// A reward rule paying 1 with probability `p`, whatever the flag (also the tests' `pays`).
pub(super) fn rule(from: StateRef, to: StateRef, action: Cond, p: Prob) -> RewardRule {
    RewardRule {
        from,
        to,
        action,
        flag: Cond::Any,
        p,
        value: 1.0,
    }
}

use Cond::{Any, Is};
use StateRef::{Special, State};

impl NamedTask {
    /// Every named task.
    pub const ALL: [NamedTask; 5] = [
        NamedTask::Bandit,
        NamedTask::Harlow,
        NamedTask::TMaze,
        NamedTask::TwoStep,
        NamedTask::KeyDoor,
    ];

    /// The name in configs and files.
    pub fn name(self) -> &'static str {
        match self {
            NamedTask::Bandit => "bandit",
            NamedTask::Harlow => "harlow",
            NamedTask::TMaze => "t-maze",
            NamedTask::TwoStep => "two-step",
            NamedTask::KeyDoor => "key-door",
        }
    }

    /// The task.
    pub fn task(self) -> MetaTask {
        let name = self.name().to_string();
        match self {
            NamedTask::Bandit => MetaTask {
                name,
                stimuli: vec![Stimulus::None],
                transitions: vec![vec![vec![1.0], vec![1.0]]],
                special: vec![],
                probabilities: 1,
                reward: vec![
                    rule(State(0), StateRef::Any, Is(0), Prob::Var(0)),
                    rule(State(0), StateRef::Any, Is(1), Prob::OneMinus(0)),
                ],
                flag: vec![],
            },
            NamedTask::Harlow => MetaTask {
                name,
                // State 1 shows v0 (v0 on the left, v1 on the right), state 2 shows v1.
                stimuli: vec![
                    Stimulus::Fixed(0),
                    Stimulus::Variable(0),
                    Stimulus::Variable(1),
                ],
                transitions: vec![
                    vec![vec![0.0, 0.5, 0.5], vec![0.0, 0.5, 0.5]],
                    vec![to(3, 0), to(3, 0)],
                    vec![to(3, 0), to(3, 0)],
                ],
                // x0: the state whose left object is the rewarded one.
                special: vec![[1, 2]],
                probabilities: 0,
                reward: vec![
                    rule(State(1), StateRef::Any, Is(1), Prob::Const(1.0)),
                    rule(State(2), StateRef::Any, Is(1), Prob::Const(1.0)),
                    rule(Special(0), StateRef::Any, Is(1), Prob::Const(0.0)),
                    rule(Special(0), StateRef::Any, Is(0), Prob::Const(1.0)),
                ],
                flag: vec![],
            },
            NamedTask::TMaze => MetaTask {
                name,
                stimuli: fixed(3),
                transitions: vec![
                    vec![to(3, 1), to(3, 2)],
                    vec![to(3, 0), to(3, 0)],
                    vec![to(3, 0), to(3, 0)],
                ],
                special: vec![[1, 2]],
                probabilities: 0,
                reward: vec![rule(State(0), Special(0), Any, Prob::Const(1.0))],
                flag: vec![],
            },
            NamedTask::TwoStep => MetaTask {
                name,
                stimuli: fixed(3),
                transitions: vec![
                    vec![vec![0.0, 0.9, 0.1], vec![0.0, 0.1, 0.9]],
                    vec![to(3, 0), to(3, 0)],
                    vec![to(3, 0), to(3, 0)],
                ],
                special: vec![[1, 2]],
                probabilities: 0,
                reward: vec![
                    rule(State(1), StateRef::Any, Any, Prob::Const(0.1)),
                    rule(State(2), StateRef::Any, Any, Prob::Const(0.1)),
                    rule(Special(0), StateRef::Any, Any, Prob::Const(0.9)),
                ],
                flag: vec![],
            },
            NamedTask::KeyDoor => MetaTask {
                name,
                stimuli: fixed(4),
                transitions: vec![
                    vec![to(4, 1), to(4, 2)],
                    vec![to(4, 3), to(4, 3)],
                    vec![to(4, 3), to(4, 3)],
                    vec![to(4, 0), to(4, 0)],
                ],
                special: vec![[1, 2]],
                probabilities: 0,
                reward: vec![RewardRule {
                    flag: Is(1),
                    ..rule(State(3), StateRef::Any, Any, Prob::Const(1.0))
                }],
                flag: vec![FlagRule {
                    from: StateRef::Any,
                    to: Special(0),
                    action: Any,
                    set: 1,
                }],
            },
        }
    }

    /// The expected total reward over `steps` transitions of the policy that knows the
    /// instance (hand-computed), and of the uniformly random policy.
    pub fn expected(self, steps: usize) -> (f64, f64) {
        let t = steps as f64;
        match self {
            // E[max(p, 1 − p)] = 3/4 per step; a random arm pays 1/2.
            NamedTask::Bandit => (0.75 * t, 0.5 * t),
            // A choice every second step (transitions 1, 3, …): always right, or half the time.
            NamedTask::Harlow => {
                let choices = (steps / 2) as f64;
                (choices, 0.5 * choices)
            }
            // A choice at transitions 0, 2, 4, …
            NamedTask::TMaze => {
                let choices = steps.div_ceil(2) as f64;
                (choices, 0.5 * choices)
            }
            // Second-stage rewards at transitions 1, 3, …: 0.9·0.9 + 0.1·0.1 = 0.82 when
            // aiming for x0, 0.5 at random.
            NamedTask::TwoStep => {
                let visits = (steps / 2) as f64;
                (0.82 * visits, 0.5 * visits)
            }
            // The door at transitions 2, 5, 8, …, with the key for the right first choice.
            NamedTask::KeyDoor => {
                let doors = (steps + 1) as f64 / 3.0;
                let doors = doors.floor();
                (doors, 0.5 * doors)
            }
        }
    }
}
