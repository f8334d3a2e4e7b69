//! Meta-reinforcement-learning environments, stepped for a whole batch of independent episodes
//! at once: a two-armed bandit, the cue–reward association task and the grid maze of the
//! neuromodulation issue (docs/neuromodulation.md), and tasks of the generated meta-task space
//! ([`super::metatask`], docs/metatasks.md).
//!
//! Every episode draws its randomness (arm probabilities, cues, reward positions, teleports)
//! from its own generator, `stream_rng(seed, stream, episode)`, so episode `e` is the same
//! whatever the batch it is in, and a resumed run sees the same environments.
//!
//! Each step's observation ends with the inputs every task shares: a bias (1), the time
//! `t / steps`, the previous step's reward and the previous action, one-hot.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::metatask::runner::{self, Instance, Planner, Position};
use super::metatask::{FIXED_STIMULI, MetaTask, NamedTask, generate};
use crate::rng::{Stream, stream_rng};

/// The environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvKind {
    /// Two arms; arm 0 pays 1 with a per-episode probability `p ~ U(0, 1)`, arm 1 with `1 − p`.
    Bandit,
    /// Cue–reward association: respond 1 at Go when the episode's target cue was shown.
    Cue,
    /// Grid maze: find the episode's reward cell, again and again.
    Maze,
    /// A task of the generated meta-task space, drawn per episode from a pool (`task.pool`).
    Metatasks,
}

impl EnvKind {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            EnvKind::Bandit => "bandit",
            EnvKind::Cue => "cue",
            EnvKind::Maze => "maze",
            EnvKind::Metatasks => "metatasks",
        }
    }
}

/// Which tasks a meta-task environment draws its episodes from (`task.pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pool {
    /// The training tasks: generated tasks `0..train_tasks`.
    #[default]
    Train,
    /// The held-out generated tasks `train_tasks..train_tasks + heldout_tasks`.
    Heldout,
    /// Every named task.
    Named,
    /// One named task.
    One(NamedTask),
}

impl Pool {
    /// The name as written in configs: `train`, `heldout`, `named`, or a named task's name.
    pub fn name(self) -> &'static str {
        match self {
            Pool::Train => "train",
            Pool::Heldout => "heldout",
            Pool::Named => "named",
            Pool::One(t) => t.name(),
        }
    }
}

impl std::str::FromStr for Pool {
    type Err = String;
    fn from_str(s: &str) -> Result<Pool, String> {
        match s {
            "train" => Ok(Pool::Train),
            "heldout" => Ok(Pool::Heldout),
            "named" => Ok(Pool::Named),
            _ => s.parse().map(Pool::One).map_err(|_| {
                let named: Vec<&str> = NamedTask::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "expected train, heldout, named or a named task ({})",
                    named.join(", ")
                )
            }),
        }
    }
}

impl Serialize for Pool {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Pool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pool, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|why: String| serde::de::Error::custom(format!("\"{text}\": {why}")))
    }
}

/// The sizes of a meta-task environment (`task.kind = "metatasks"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaShape {
    /// The generator's seed (`task.generator_seed`).
    pub seed: u64,
    /// Generated training tasks (`task.train_tasks`).
    pub train: usize,
    /// Generated held-out tasks after them (`task.heldout_tasks`).
    pub heldout: usize,
    /// Where episodes come from.
    pub pool: Pool,
    /// Values of a stimulus (`task.stimulus_bits`).
    pub bits: usize,
    /// Transitions after which a trial that has not returned to state 0 is ended
    /// (`task.trial_timeout`).
    pub timeout: usize,
}

impl MetaShape {
    /// The pool's tasks (generated sets are made once per process and shared).
    pub fn tasks(&self) -> Arc<Vec<MetaTask>> {
        type Sets = HashMap<(u64, usize), Arc<Vec<MetaTask>>>;
        static SETS: OnceLock<Mutex<Sets>> = OnceLock::new();
        let generated = |count: usize| {
            let mut sets = SETS
                .get_or_init(Default::default)
                .lock()
                .expect("task sets");
            sets.entry((self.seed, count))
                .or_insert_with(|| Arc::new(generate(self.seed, count)))
                .clone()
        };
        match self.pool {
            Pool::Train => generated(self.train),
            Pool::Heldout => Arc::new(generated(self.train + self.heldout)[self.train..].to_vec()),
            Pool::Named => Arc::new(NamedTask::ALL.map(NamedTask::task).to_vec()),
            Pool::One(t) => Arc::new(vec![t.task()]),
        }
    }

    /// The run's fixed stimuli `f0 …`, `bits` values of ±1 each, from the generator's seed.
    pub fn alphabet(&self) -> Arc<Vec<f32>> {
        let mut rng = stream_rng(self.seed, Stream::Tasks, u64::MAX);
        Arc::new(
            (0..FIXED_STIMULI * self.bits)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect(),
        )
    }
}

/// How the cue task scores the response at Go (`task.cue_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CueResponse {
    /// The paper's: respond 1 when the target was shown, 0 when not; +1 right, −1 wrong.
    #[default]
    Report,
    /// Respond 1 to claim the target: +1 when it was shown, −1 when not; 0 passes (no
    /// reward). Not the paper's: the reward alone then says whether a claimed cue was the
    /// target, without the action.
    Claim,
}

impl CueResponse {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            CueResponse::Report => "report",
            CueResponse::Claim => "claim",
        }
    }
}

/// Steps of a cue trial, drawn uniformly: blank, the cues, Go on the next-to-last step, blank.
const TRIAL_STEPS: std::ops::RangeInclusive<usize> = 5..=8;

/// Cues per episode in the cue task, one of them the target (the paper's; `task.cues`).
pub(crate) const CUES: usize = 4;
/// Bits of a cue (the paper's; `task.cue_bits`).
pub(crate) const CUE_BITS: usize = 20;
/// Distinct cues a trial shows (the paper's; `task.cues_per_trial`).
pub(crate) const CUES_PER_TRIAL: usize = 2;
/// Reward for reaching the maze's reward cell.
pub(crate) const MAZE_REWARD: f32 = 10.0;

/// The sizes of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvShape {
    /// Which environment.
    pub kind: EnvKind,
    /// Steps per episode.
    pub steps: usize,
    /// The maze's side `L` (odd, ≥ 5), including the border wall.
    pub maze_side: usize,
    /// Cues per episode (cue task; more than `cues_per_trial`).
    pub cues: usize,
    /// Bits of a cue (cue task).
    pub cue_bits: usize,
    /// Distinct cues each trial shows, 1 or 2 (cue task).
    pub cues_per_trial: usize,
    /// How the response at Go is scored (cue task).
    pub cue_response: CueResponse,
    /// The meta-task space's sizes (meta-task environments).
    pub meta: MetaShape,
}

impl EnvShape {
    /// Actions the agent chooses from.
    pub fn actions(&self) -> usize {
        match self.kind {
            EnvKind::Bandit | EnvKind::Cue | EnvKind::Metatasks => 2,
            EnvKind::Maze => 4,
        }
    }

    /// Length of one observation.
    pub fn inputs(&self) -> usize {
        let own = match self.kind {
            EnvKind::Bandit => 0,
            // The cue's bits, then the Go bit.
            EnvKind::Cue => self.cue_bits + 1,
            // The 3×3 neighbourhood, 1 where there is a wall.
            EnvKind::Maze => 9,
            // The state's stimulus.
            EnvKind::Metatasks => self.meta.bits,
        };
        own + 3 + self.actions()
    }
}

/// One episode's state.
// A batch holds one per episode, of a single kind: the sizes of the others do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum State {
    Bandit {
        /// Probability that arm 0 pays.
        p: f64,
    },
    Cue {
        /// The cues, `cue_bits` values each, one after another.
        cues: Vec<f32>,
        /// Index of the target cue.
        target: usize,
        /// The current trial's steps: `Some(cue)` where a cue is shown, and its Go step.
        trial: Vec<Option<usize>>,
        /// Step of the current trial.
        at: usize,
    },
    Maze {
        agent: (usize, usize),
        reward: (usize, usize),
    },
    Meta {
        /// The task's index in the pool.
        task: usize,
        /// Its hidden values.
        instance: Instance,
        /// Where the episode is.
        at: Position,
    },
}

/// A meta-task environment's tasks and fixed stimuli.
#[derive(Debug, Clone)]
struct MetaPool {
    tasks: Arc<Vec<MetaTask>>,
    alphabet: Arc<Vec<f32>>,
}

/// A batch of independent episodes of one environment.
#[derive(Debug, Clone)]
pub struct BatchEnv {
    shape: EnvShape,
    episodes: Vec<(State, ChaCha8Rng)>,
    prev_reward: Vec<f32>,
    prev_action: Vec<Option<usize>>,
    /// Where the Go step of each episode's current trial is (cue task).
    go: Vec<bool>,
    /// The pool (meta-task environments).
    meta: Option<MetaPool>,
}

/// Whether maze cell `(row, col)` is a wall: the border, or a pillar where both are even,
/// except at the centre, where the agent starts (as in the published maze; for sides 7, 11,
/// 15 … the centre's coordinates are odd and it has no pillar anyway).
pub fn is_wall(side: usize, (row, col): (usize, usize)) -> bool {
    let centre = side / 2;
    row == 0
        || col == 0
        || row + 1 >= side
        || col + 1 >= side
        || (row % 2 == 0 && col % 2 == 0 && (row, col) != (centre, centre))
}

/// The maze's free cells, row by row.
pub(crate) fn free_cells(side: usize) -> Vec<(usize, usize)> {
    (0..side)
        .flat_map(|r| (0..side).map(move |c| (r, c)))
        .filter(|&cell| !is_wall(side, cell))
        .collect()
}

fn new_trial(rng: &mut ChaCha8Rng, count: usize, shown: usize) -> Vec<Option<usize>> {
    // 5-8 steps: blank, `shown` (1 or 2) distinct cues, drawn uniformly, at distinct positions
    // among the middle steps, Go on the next-to-last step, blank. `None` marks a step without
    // a cue. (Two cues draw the same numbers from `rng` as before `shown` existed.)
    let len = rng.random_range(TRIAL_STEPS);
    let mut trial = vec![None; len];
    let mut positions: Vec<usize> = (1..len - 2).collect();
    positions.shuffle(rng);
    let mut cues: Vec<usize> = (0..count).collect();
    cues.shuffle(rng);
    for k in 0..shown {
        trial[positions[k]] = Some(cues[k]);
    }
    trial
}

impl BatchEnv {
    /// Episodes `first..first + batch` of `stream` in a run seeded with `seed`.
    pub fn new(shape: EnvShape, seed: u64, stream: Stream, first: u64, batch: usize) -> BatchEnv {
        let meta = (shape.kind == EnvKind::Metatasks).then(|| MetaPool {
            tasks: shape.meta.tasks(),
            alphabet: shape.meta.alphabet(),
        });
        let episodes = (0..batch)
            .map(|b| {
                let mut rng = stream_rng(seed, stream, first + b as u64);
                let state = match shape.kind {
                    EnvKind::Bandit => State::Bandit {
                        p: rng.random_range(0.0..1.0),
                    },
                    EnvKind::Cue => {
                        let cues = (0..shape.cues * shape.cue_bits)
                            .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                            .collect();
                        let target = rng.random_range(0..shape.cues);
                        let trial = new_trial(&mut rng, shape.cues, shape.cues_per_trial);
                        State::Cue {
                            cues,
                            target,
                            trial,
                            at: 0,
                        }
                    }
                    EnvKind::Maze => {
                        let free = free_cells(shape.maze_side);
                        let centre = (shape.maze_side / 2, shape.maze_side / 2);
                        let choices: Vec<_> = free.into_iter().filter(|c| *c != centre).collect();
                        let reward = choices[rng.random_range(0..choices.len())];
                        State::Maze {
                            agent: centre,
                            reward,
                        }
                    }
                    EnvKind::Metatasks => {
                        // The task, uniformly from the pool, then its instance.
                        let tasks = &meta.as_ref().expect("a pool").tasks;
                        let task = rng.random_range(0..tasks.len());
                        let instance = Instance::draw(&tasks[task], shape.meta.bits, &mut rng);
                        State::Meta {
                            task,
                            instance,
                            at: Position::START,
                        }
                    }
                };
                (state, rng)
            })
            .collect();
        BatchEnv {
            shape,
            episodes,
            prev_reward: vec![0.0; batch],
            prev_action: vec![None; batch],
            go: vec![false; batch],
            meta,
        }
    }

    /// The environment's sizes.
    pub fn shape(&self) -> EnvShape {
        self.shape
    }

    /// Episodes in the batch.
    pub fn batch(&self) -> usize {
        self.episodes.len()
    }

    /// The observation of step `t` of every episode, `[batch][inputs]`, row-major.
    pub fn observe(&mut self, t: usize) -> Vec<f32> {
        let n = self.shape.inputs();
        let actions = self.shape.actions();
        let side = self.shape.maze_side;
        let mut out = vec![0.0f32; self.batch() * n];
        for (b, (state, _)) in self.episodes.iter().enumerate() {
            let row = &mut out[b * n..(b + 1) * n];
            let own = match state {
                State::Bandit { .. } => 0,
                State::Cue {
                    cues, trial, at, ..
                } => {
                    let bits = self.shape.cue_bits;
                    if let Some(cue) = trial[*at] {
                        row[..bits].copy_from_slice(&cues[cue * bits..(cue + 1) * bits]);
                    }
                    let go = *at == trial.len() - 2;
                    row[bits] = go as u8 as f32;
                    self.go[b] = go;
                    bits + 1
                }
                State::Maze { agent, .. } => {
                    for (k, (dr, dc)) in
                        (0..3).flat_map(|r| (0..3).map(move |c| (r, c))).enumerate()
                    {
                        let cell = (agent.0 + dr - 1, agent.1 + dc - 1);
                        row[k] = is_wall(side, cell) as u8 as f32;
                    }
                    9
                }
                State::Meta { task, instance, at } => {
                    let pool = self.meta.as_ref().expect("a pool");
                    let bits = self.shape.meta.bits;
                    if let Some(stimulus) = runner::stimulus(
                        &pool.tasks[*task],
                        instance,
                        &pool.alphabet,
                        bits,
                        at.state,
                    ) {
                        row[..bits].copy_from_slice(stimulus);
                    }
                    bits
                }
            };
            row[own] = 1.0;
            row[own + 1] = t as f32 / self.shape.steps as f32;
            row[own + 2] = self.prev_reward[b];
            if let Some(a) = self.prev_action[b] {
                row[own + 3 + a.min(actions - 1)] = 1.0;
            }
        }
        out
    }

    /// Applies one action per episode (after [`BatchEnv::observe`] of the same step) and
    /// returns the rewards.
    pub fn act(&mut self, actions: &[usize]) -> Vec<f32> {
        let side = self.shape.maze_side;
        let mut rewards = vec![0.0f32; self.batch()];
        for (b, ((state, rng), &action)) in self.episodes.iter_mut().zip(actions).enumerate() {
            rewards[b] = match state {
                State::Bandit { p } => {
                    let pays = if action == 0 { *p } else { 1.0 - *p };
                    rng.random_bool(pays) as u8 as f32
                }
                State::Cue {
                    target, trial, at, ..
                } => {
                    let reward = if self.go[b] {
                        let shown = trial.contains(&Some(*target));
                        match self.shape.cue_response {
                            CueResponse::Report if (action == 1) == shown => 1.0,
                            CueResponse::Report => -1.0,
                            CueResponse::Claim if action == 0 => 0.0,
                            CueResponse::Claim if shown => 1.0,
                            CueResponse::Claim => -1.0,
                        }
                    } else {
                        0.0
                    };
                    *at += 1;
                    if *at == trial.len() {
                        *trial = new_trial(rng, self.shape.cues, self.shape.cues_per_trial);
                        *at = 0;
                    }
                    reward
                }
                State::Maze { agent, reward } => {
                    let (r, c) = *agent;
                    let next = match action {
                        0 => (r - 1, c),
                        1 => (r, c + 1),
                        2 => (r + 1, c),
                        _ => (r, c - 1),
                    };
                    if !is_wall(side, next) {
                        *agent = next;
                    }
                    if *agent == *reward {
                        let free: Vec<_> = free_cells(side)
                            .into_iter()
                            .filter(|cell| cell != reward)
                            .collect();
                        *agent = free[rng.random_range(0..free.len())];
                        MAZE_REWARD
                    } else {
                        0.0
                    }
                }
                State::Meta { task, instance, at } => {
                    let pool = self.meta.as_ref().expect("a pool");
                    let timeout = self.shape.meta.timeout;
                    let (next, reward) =
                        runner::step(&pool.tasks[*task], instance, *at, action, timeout, rng);
                    *at = next;
                    reward
                }
            };
            self.prev_action[b] = Some(action);
        }
        self.prev_reward.clone_from(&rewards);
        rewards
    }

    /// Meta-tasks: each episode's task (its name) and the exact expected total reward over
    /// the episode of the policy that knows the instance and of the uniformly random policy
    /// ([`Planner`]), from the episode's start.
    pub fn meta_expectations(&self) -> Vec<(String, f64, f64)> {
        let Some(pool) = &self.meta else {
            return Vec::new();
        };
        self.episodes
            .iter()
            .filter_map(|(s, _)| match s {
                State::Meta { task, instance, .. } => {
                    let task = &pool.tasks[*task];
                    let plan =
                        Planner::new(task, instance, self.shape.steps, self.shape.meta.timeout);
                    Some((task.name.clone(), plan.optimal(), plan.random()))
                }
                _ => None,
            })
            .collect()
    }

    /// Maze: where each episode's agent is, and its reward cell (for pictures and tests).
    pub fn maze_positions(&self) -> Vec<((usize, usize), (usize, usize))> {
        self.episodes
            .iter()
            .filter_map(|(s, _)| match s {
                State::Maze { agent, reward } => Some((*agent, *reward)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether episode `b`'s current trial shows its target (cue task).
    fn target_shown(env: &BatchEnv, b: usize) -> bool {
        let State::Cue { target, trial, .. } = &env.episodes[b].0 else {
            unreachable!()
        };
        trial.contains(&Some(*target))
    }

    fn shape(kind: EnvKind, steps: usize) -> EnvShape {
        EnvShape {
            kind,
            steps,
            maze_side: 11,
            cues: CUES,
            cue_bits: CUE_BITS,
            cues_per_trial: CUES_PER_TRIAL,
            cue_response: CueResponse::Report,
            meta: MetaShape {
                seed: 1,
                train: 10,
                heldout: 5,
                pool: Pool::Train,
                bits: 6,
                timeout: 4,
            },
        }
    }

    #[test]
    fn the_maze_has_the_stated_pillars_and_free_cells() {
        // L = 11: a 9×9 interior with 16 pillars.
        assert_eq!(free_cells(11).len(), 81 - 16);
        assert!(is_wall(11, (2, 2)) && is_wall(11, (0, 5)) && !is_wall(11, (5, 5)));
        assert!(!is_wall(11, (1, 2)) && !is_wall(11, (3, 3)));
    }

    /// For every odd side the agent's start (the centre) is free and every free cell can be
    /// reached from it (sides 9 and 13 once put a pillar on the centre, issue 27).
    #[test]
    fn every_odd_maze_starts_on_a_free_cell_that_reaches_every_free_cell() {
        for side in (5..=101).step_by(2) {
            let centre = (side / 2, side / 2);
            assert!(!is_wall(side, centre), "side {side}: a wall at the centre");
            let free = free_cells(side);
            let mut seen = std::collections::HashSet::from([centre]);
            let mut queue = vec![centre];
            while let Some((r, c)) = queue.pop() {
                for next in [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)] {
                    if !is_wall(side, next) && seen.insert(next) {
                        queue.push(next);
                    }
                }
            }
            assert_eq!(
                seen.len(),
                free.len(),
                "side {side}: unreachable free cells"
            );
            // Only the centre differs from the plain pillar grid.
            let pillars = ((side - 3) / 2).pow(2);
            let interior = (side - 2).pow(2);
            let centre_pillar = usize::from(centre.0 % 2 == 0);
            assert_eq!(
                free.len(),
                interior - pillars + centre_pillar,
                "side {side}"
            );
        }
    }

    #[test]
    fn episodes_do_not_depend_on_their_batch() {
        for kind in [
            EnvKind::Bandit,
            EnvKind::Cue,
            EnvKind::Maze,
            EnvKind::Metatasks,
        ] {
            let s = shape(kind, 30);
            let mut alone = BatchEnv::new(s, 3, Stream::Train, 5, 1);
            let mut within = BatchEnv::new(s, 3, Stream::Train, 4, 3);
            let n = s.inputs();
            for t in 0..30 {
                let (a, b) = (alone.observe(t), within.observe(t));
                assert_eq!(a[..], b[n..2 * n], "{kind:?} step {t}");
                let action = t % s.actions();
                let ra = alone.act(&[action]);
                let rb = within.act(&[0, action, 1]);
                assert_eq!(ra[0], rb[1], "{kind:?} step {t}");
            }
        }
    }

    #[test]
    fn a_maze_agent_that_walks_into_walls_stays_and_reaching_the_reward_pays() {
        let s = shape(EnvKind::Maze, 200);
        let mut env = BatchEnv::new(s, 1, Stream::Train, 0, 1);
        let (start, goal) = env.maze_positions()[0];
        assert_eq!(start, (5, 5), "the agent starts at the centre");
        // (5, 5) has pillars nowhere adjacent orthogonally: moving up goes to (4, 5).
        env.observe(0);
        env.act(&[0]);
        let after = env.maze_positions()[0].0;
        if goal != (4, 5) {
            assert_eq!(after, (4, 5));
        }
        // Walk into the top wall: from row 1, up is blocked.
        let mut env = BatchEnv::new(s, 1, Stream::Train, 0, 1);
        let mut total = 0.0;
        for t in 0..10 {
            env.observe(t);
            total += env.act(&[0])[0];
        }
        let (agent, _) = env.maze_positions()[0];
        assert!(
            agent.0 == 1 || total > 0.0,
            "blocked by the wall at row 0: {agent:?}"
        );
        // The observation's neighbourhood marks the wall above.
        let obs = env.observe(10);
        if agent.0 == 1 {
            assert_eq!(obs[1], 1.0, "the cell above is a wall");
        }
        // A greedy walk to the reward cell pays MAZE_REWARD and teleports the agent.
        let mut env = BatchEnv::new(s, 2, Stream::Train, 7, 1);
        let mut paid = 0.0;
        for t in 0..200 {
            env.observe(t);
            let ((r, c), (gr, gc)) = env.maze_positions()[0];
            let tries = [(gr < r, 0), (gc > c, 1), (gr > r, 2), (gc < c, 3)];
            let action = tries
                .iter()
                .find(|(want, a)| {
                    let next = match a {
                        0 => (r - 1, c),
                        1 => (r, c + 1),
                        2 => (r + 1, c),
                        _ => (r, c - 1),
                    };
                    *want && !is_wall(11, next)
                })
                .map_or(t % 4, |(_, a)| *a);
            paid += env.act(&[action])[0];
        }
        assert!(
            paid >= 2.0 * MAZE_REWARD,
            "a greedy walker finds the reward repeatedly: {paid}"
        );
    }

    #[test]
    fn the_cue_task_rewards_the_right_response_at_go_only() {
        // The paper's sizes, and smaller tasks (`task.cues`, `task.cue_bits`,
        // `task.cues_per_trial`).
        for (cues, bits, per_trial) in [(CUES, CUE_BITS, CUES_PER_TRIAL), (3, 6, 2), (2, 8, 1)] {
            cue_task_rewards_the_right_response(cues, bits, per_trial);
        }
    }

    fn cue_task_rewards_the_right_response(cues: usize, bits: usize, per_trial: usize) {
        let s = EnvShape {
            cues,
            cue_bits: bits,
            cues_per_trial: per_trial,
            ..shape(EnvKind::Cue, 120)
        };
        let mut env = BatchEnv::new(s, 4, Stream::Train, 0, 1);
        let n = s.inputs();
        assert_eq!(n, bits + 1 + 3 + 2);
        let mut gos = 0;
        let mut shown_steps = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut with_target = 0;
        for t in 0..120 {
            let obs = env.observe(t);
            let go = obs[bits] == 1.0;
            shown_steps += obs[..bits].iter().any(|x| *x != 0.0) as usize;
            if obs[..bits].iter().any(|x| *x != 0.0) {
                assert!(obs[..bits].iter().all(|x| x.abs() == 1.0), "±1 bits");
                seen.insert(obs[..bits].iter().map(|x| *x > 0.0).collect::<Vec<_>>());
            }
            let right = target_shown(&env, 0) as usize;
            // Answer wrongly on even Go steps, rightly on odd ones.
            let action = if go && gos % 2 == 0 { 1 - right } else { right };
            let reward = env.act(&[action])[0];
            if go {
                assert_eq!(reward, if gos % 2 == 0 { -1.0 } else { 1.0 });
                gos += 1;
                with_target += right;
            } else {
                assert_eq!(reward, 0.0, "no reward outside Go (step {t})");
            }
        }
        // Trials of 5-8 steps: between 15 and 24 Go steps, `per_trial` cues per trial.
        assert!((15..=24).contains(&gos), "{gos}");
        assert!(
            (per_trial * (gos - 1)..=per_trial * (gos + 1)).contains(&shown_steps),
            "{shown_steps} cue steps for {gos} trials of {per_trial} cues"
        );
        // The target is among the shown cues in a fraction per_trial / cues of the trials.
        let expected = (gos * per_trial) as f64 / cues as f64;
        assert!(
            (with_target as f64 - expected).abs() <= 0.25 * gos as f64,
            "target shown in {with_target} of {gos} trials, expected about {expected}"
        );
        assert!(seen.len() <= cues, "{} distinct cues shown", seen.len());
        assert!(seen.len() >= cues.min(3), "every cue is shown in 15 trials");
    }

    #[test]
    fn a_claim_is_paid_by_whether_the_target_was_shown_and_a_pass_is_not_paid() {
        let s = EnvShape {
            cue_response: CueResponse::Claim,
            ..shape(EnvKind::Cue, 120)
        };
        let mut env = BatchEnv::new(s, 5, Stream::Train, 0, 1);
        let mut paid = [0.0f32; 4];
        for t in 0..120 {
            let go = env.observe(t)[s.cue_bits] == 1.0;
            let shown = target_shown(&env, 0);
            // Alternate claims and passes over the Go steps.
            let action = t % 2;
            let reward = env.act(&[action])[0];
            match (go, action, shown) {
                (false, ..) => assert_eq!(reward, 0.0, "no reward outside Go (step {t})"),
                (true, 0, _) => assert_eq!(reward, 0.0, "a pass is not paid (step {t})"),
                (true, _, true) => assert_eq!(reward, 1.0, "a right claim (step {t})"),
                (true, _, false) => assert_eq!(reward, -1.0, "a wrong claim (step {t})"),
            }
            if go {
                paid[2 * action + shown as usize] += 1.0;
            }
        }
        assert!(paid.iter().all(|n| *n > 0.0), "every case met: {paid:?}");
    }

    /// Expected Go steps in an episode of `steps` steps: trial lengths uniform over
    /// `TRIAL_STEPS`, Go on each trial's next-to-last step, counted when inside the episode.
    fn expected_go_steps(steps: usize) -> f64 {
        // from[t]: expected Go steps from a trial starting at step t.
        let lengths = TRIAL_STEPS.count() as f64;
        let mut from = vec![0.0; steps + *TRIAL_STEPS.end()];
        for t in (0..steps).rev() {
            from[t] = TRIAL_STEPS
                .map(|len| (((t + len - 2) < steps) as u8 as f64 + from[t + len]) / lengths)
                .sum();
        }
        from[0]
    }

    #[test]
    fn an_oracle_earns_the_computed_optimum_of_the_cue_task_and_a_random_policy_nothing() {
        // One cue per trial out of two: the target is shown in half the trials. An oracle that
        // knows the target is paid at every Go under `report` and at the Go steps after the
        // target under `claim` (passing after the other cue); a random policy earns 0 under
        // both. Means over 400 episodes, each within 4 standard errors of its expectation.
        let go = expected_go_steps(120);
        assert!((go - 18.207).abs() < 1e-3, "{go}");
        for (response, oracle_expected) in
            [(CueResponse::Report, go), (CueResponse::Claim, go / 2.0)]
        {
            let s = EnvShape {
                cues: 2,
                cue_bits: 8,
                cues_per_trial: 1,
                cue_response: response,
                ..shape(EnvKind::Cue, 120)
            };
            let episodes = 400;
            for oracle in [true, false] {
                let mut env = BatchEnv::new(s, 11, Stream::Eval, 0, episodes);
                let mut totals = vec![0.0f64; episodes];
                let mut coin = stream_rng(11, Stream::Train, 0);
                for t in 0..120 {
                    env.observe(t);
                    let actions: Vec<usize> = (0..episodes)
                        .map(|b| {
                            if oracle {
                                target_shown(&env, b) as usize
                            } else {
                                coin.random_range(0..2)
                            }
                        })
                        .collect();
                    for (total, r) in totals.iter_mut().zip(env.act(&actions)) {
                        *total += r as f64;
                    }
                }
                let mean = totals.iter().sum::<f64>() / episodes as f64;
                let var =
                    totals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (episodes - 1) as f64;
                let se = (var / episodes as f64).sqrt().max(0.05);
                let expected = if oracle { oracle_expected } else { 0.0 };
                assert!(
                    (mean - expected).abs() < 4.0 * se,
                    "{response:?}, oracle {oracle}: mean {mean:.3} vs {expected:.3} (se {se:.3})"
                );
            }
        }
    }

    #[test]
    fn the_bandits_better_arm_pays_more_often() {
        let s = shape(EnvKind::Bandit, 1000);
        let mut env = BatchEnv::new(s, 9, Stream::Train, 0, 1);
        let State::Bandit { p } = env.episodes[0].0 else {
            unreachable!()
        };
        let better = if p > 0.5 { 0 } else { 1 };
        let mut paid = 0.0;
        for t in 0..1000 {
            env.observe(t);
            paid += env.act(&[better])[0];
        }
        let expected = p.max(1.0 - p) * 1000.0;
        assert!(
            (paid as f64 - expected).abs() < 60.0,
            "{paid} vs {expected}"
        );
    }
}
