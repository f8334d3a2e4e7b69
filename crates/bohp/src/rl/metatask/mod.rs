//! A generated space of meta-reinforcement-learning tasks (Miconi 2023, arXiv 2302.05583;
//! `docs/metatasks.md`, reference §7), ported from the paper's description.
//!
//! A [`MetaTask`] is a small POMDP: up to [`MAX_STATES`] states, two actions in each, state 0
//! the start. Each state shows a stimulus (a fixed one, a variable one redrawn per instance, or
//! none); transitions are probabilities; reward rules (later ones override earlier ones) and
//! flag rules are conditioned on the old state, the new state, the action and the flag, where a
//! state may be a *special-state variable* and a reward probability a *probability variable*
//! `p_k ~ U(0, 1)` or its complement, both drawn per [`runner::Instance`].
//!
//! - [`generate()`]: a seeded generator with the paper's rejection tests ([`check`]);
//! - [`named`]: the known tasks written in the space (bandit, Harlow, T-maze, two-step,
//!   key–door);
//! - [`runner`]: instances, one episode's steps, and the exact expected reward of the optimal
//!   (instance-knowing) and the uniformly random policy, by dynamic programming;
//! - [`TaskSet`]: a set of tasks as a TOML or JSON file, validated field by field on reading;
//! - [`draw`]: a task's state graph as SVG.

pub mod draw;
pub mod generate;
pub mod named;
pub mod runner;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use generate::{Rejection, check, generate};
pub use named::NamedTask;

use crate::error::{Error, Result};

/// Most states a task may have (the paper uses 3 and 4).
pub const MAX_STATES: usize = 8;
/// Actions in every state.
pub const ACTIONS: usize = 2;
/// Fixed stimuli a task may show (ids `f0` … `f15`): the run's stimulus alphabet.
pub const FIXED_STIMULI: usize = 16;
/// Most variable stimuli, probability variables or special-state variables of one task.
pub const MAX_VARIABLES: usize = 8;
/// The largest reward a rule may pay (in size), so rewards stay finite in `f32`.
pub const MAX_REWARD: f64 = 1e6;

/// A state in a rule: any state, a given state, or a special-state variable.
/// Written `"any"`, `2` (or `"2"`), `"x0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Token", into = "Token")]
pub enum StateRef {
    /// Every state.
    Any,
    /// This state.
    State(usize),
    /// The state special-state variable `k` takes in the instance.
    Special(usize),
}

/// An action or flag condition: any value, or this one (0 or 1). Written `"any"`, `0`, `1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Token", into = "Token")]
pub enum Cond {
    /// Any value.
    Any,
    /// This value.
    Is(usize),
}

/// A reward probability: a constant, probability variable `p_k`, or `1 − p_k`.
/// Written `0.9`, `"p0"`, `"1-p0"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Token", into = "Token")]
pub enum Prob {
    /// This probability.
    Const(f64),
    /// The instance's `p_k`.
    Var(usize),
    /// The instance's `1 − p_k`.
    OneMinus(usize),
}

/// What a state shows: nothing, fixed stimulus `f_k` (the same in every instance and task of a
/// run), or variable stimulus `v_k` (redrawn for each instance). Written `"none"`, `"f3"`,
/// `"v0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Token", into = "Token")]
pub enum Stimulus {
    /// No stimulus (zeros).
    None,
    /// Fixed stimulus `k`.
    Fixed(usize),
    /// Variable stimulus `k` of the instance.
    Variable(usize),
}

/// A number or a word, as a rule's field is written in a task file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Token {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A word (`"any"`, `"x0"`, `"p1"`, `"1-p0"`, `"f2"`, `"v0"`, `"none"`).
    Text(String),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Int(i) => write!(f, "{i}"),
            Token::Float(x) => write!(f, "{x}"),
            Token::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

/// `prefix` followed by an index (`x0`, `p12`), as the index.
fn indexed(text: &str, prefix: &str) -> Option<usize> {
    text.strip_prefix(prefix)?.parse().ok()
}

/// A token as a small integer, when it is one (`2` or `"2"`).
fn small_int(t: &Token) -> Option<usize> {
    match t {
        Token::Int(i) => usize::try_from(*i).ok(),
        Token::Text(s) => s.parse().ok(),
        Token::Float(_) => None,
    }
}

impl TryFrom<Token> for StateRef {
    type Error = String;
    fn try_from(t: Token) -> std::result::Result<Self, String> {
        if let Some(s) = small_int(&t) {
            return Ok(StateRef::State(s));
        }
        match &t {
            Token::Text(s) if s == "any" => Ok(StateRef::Any),
            Token::Text(s) if indexed(s, "x").is_some() => {
                Ok(StateRef::Special(indexed(s, "x").expect("checked")))
            }
            _ => Err(format!(
                "{t}: expected a state: \"any\", a state number, or \"xK\" (special-state variable K)"
            )),
        }
    }
}

impl From<StateRef> for Token {
    fn from(s: StateRef) -> Token {
        match s {
            StateRef::Any => Token::Text("any".into()),
            StateRef::State(s) => Token::Int(s as i64),
            StateRef::Special(k) => Token::Text(format!("x{k}")),
        }
    }
}

impl TryFrom<Token> for Cond {
    type Error = String;
    fn try_from(t: Token) -> std::result::Result<Self, String> {
        match (&t, small_int(&t)) {
            (_, Some(v)) => Ok(Cond::Is(v)),
            (Token::Text(s), _) if s == "any" => Ok(Cond::Any),
            _ => Err(format!("{t}: expected \"any\", 0 or 1")),
        }
    }
}

impl From<Cond> for Token {
    fn from(c: Cond) -> Token {
        match c {
            Cond::Any => Token::Text("any".into()),
            Cond::Is(v) => Token::Int(v as i64),
        }
    }
}

impl TryFrom<Token> for Prob {
    type Error = String;
    fn try_from(t: Token) -> std::result::Result<Self, String> {
        let bad =
            || format!("{t}: expected a probability: a number, \"pK\" or \"1-pK\" (variable K)");
        match &t {
            Token::Int(i) => Ok(Prob::Const(*i as f64)),
            Token::Float(x) => Ok(Prob::Const(*x)),
            Token::Text(s) => {
                if let Some(k) = indexed(s, "1-p") {
                    Ok(Prob::OneMinus(k))
                } else if let Some(k) = indexed(s, "p") {
                    Ok(Prob::Var(k))
                } else {
                    s.parse().map(Prob::Const).map_err(|_| bad())
                }
            }
        }
    }
}

impl From<Prob> for Token {
    fn from(p: Prob) -> Token {
        match p {
            Prob::Const(x) => Token::Float(x),
            Prob::Var(k) => Token::Text(format!("p{k}")),
            Prob::OneMinus(k) => Token::Text(format!("1-p{k}")),
        }
    }
}

impl TryFrom<Token> for Stimulus {
    type Error = String;
    fn try_from(t: Token) -> std::result::Result<Self, String> {
        match &t {
            Token::Text(s) if s == "none" => Ok(Stimulus::None),
            Token::Text(s) if indexed(s, "f").is_some() => {
                Ok(Stimulus::Fixed(indexed(s, "f").expect("checked")))
            }
            Token::Text(s) if indexed(s, "v").is_some() => {
                Ok(Stimulus::Variable(indexed(s, "v").expect("checked")))
            }
            _ => Err(format!(
                "{t}: expected a stimulus: \"none\", \"fK\" (fixed K) or \"vK\" (variable K)"
            )),
        }
    }
}

impl From<Stimulus> for Token {
    fn from(s: Stimulus) -> Token {
        Token::Text(s.to_string())
    }
}

impl fmt::Display for StateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateRef::Any => write!(f, "any"),
            StateRef::State(s) => write!(f, "{s}"),
            StateRef::Special(k) => write!(f, "x{k}"),
        }
    }
}

impl fmt::Display for Prob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prob::Const(x) => write!(f, "{x}"),
            Prob::Var(k) => write!(f, "p{k}"),
            Prob::OneMinus(k) => write!(f, "1-p{k}"),
        }
    }
}

impl fmt::Display for Stimulus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stimulus::None => write!(f, "none"),
            Stimulus::Fixed(k) => write!(f, "f{k}"),
            Stimulus::Variable(k) => write!(f, "v{k}"),
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Any => write!(f, "any"),
            Cond::Is(v) => write!(f, "{v}"),
        }
    }
}

/// A reward rule: when a transition matches every condition, reward `value` with probability
/// `p` (the last matching rule of a task decides).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardRule {
    /// The state left.
    pub from: StateRef,
    /// The state entered.
    #[serde(default = "any_state")]
    pub to: StateRef,
    /// The action taken.
    #[serde(default = "any")]
    pub action: Cond,
    /// The flag before the transition.
    #[serde(default = "any")]
    pub flag: Cond,
    /// Probability of the reward.
    pub p: Prob,
    /// The reward (1 in the paper).
    #[serde(default = "one")]
    pub value: f64,
}

/// A flag rule: when a transition matches, the flag becomes `set` (the last matching rule
/// decides; entering state 0 then resets it to 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRule {
    /// The state left.
    pub from: StateRef,
    /// The state entered.
    #[serde(default = "any_state")]
    pub to: StateRef,
    /// The action taken.
    #[serde(default = "any")]
    pub action: Cond,
    /// The flag's new value, 0 or 1.
    pub set: usize,
}

fn any_state() -> StateRef {
    StateRef::Any
}
fn any() -> Cond {
    Cond::Any
}
fn one() -> f64 {
    1.0
}

/// One meta-task of the space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaTask {
    /// A name for people (`gen-1-17`, `harlow`); not part of the task's identity.
    #[serde(default)]
    pub name: String,
    /// What each state shows, one per state.
    pub stimuli: Vec<Stimulus>,
    /// `transitions[s][a][s']`: the probability that action `a` in state `s` leads to `s'`.
    pub transitions: Vec<Vec<Vec<f64>>>,
    /// The range `[lo, hi]` (inclusive) each special-state variable `x_k` is drawn from,
    /// uniformly, per instance.
    #[serde(default)]
    pub special: Vec<[usize; 2]>,
    /// Probability variables `p_0 … p_{n−1}`, each drawn `U(0, 1)` per instance.
    #[serde(default)]
    pub probabilities: usize,
    /// Reward rules, in order.
    #[serde(default)]
    pub reward: Vec<RewardRule>,
    /// Flag rules, in order.
    #[serde(default)]
    pub flag: Vec<FlagRule>,
}

/// A field of a task that is wrong: its path inside the task (`reward[1].p`), the value, and
/// what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The field, inside the task.
    pub field: String,
    /// The value as given.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` = {}: {}", self.field, self.value, self.expected)
    }
}

impl MetaTask {
    /// States.
    pub fn states(&self) -> usize {
        self.stimuli.len()
    }

    /// Variable stimuli the task shows (`v0 …`): one more than the highest index used.
    pub fn variable_stimuli(&self) -> usize {
        self.stimuli
            .iter()
            .filter_map(|s| match s {
                Stimulus::Variable(k) => Some(k + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The task without its name (two tasks are the same task when these are equal).
    pub fn anonymous(&self) -> MetaTask {
        MetaTask {
            name: String::new(),
            ..self.clone()
        }
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        let bad = |field: String, value: String, expected: String| Invalid {
            field,
            value,
            expected,
        };
        let n = self.states();
        if n == 0 || n > MAX_STATES {
            return Err(bad(
                "stimuli".into(),
                format!("{n} entries"),
                format!("one per state, 1 to {MAX_STATES} states"),
            ));
        }
        for (s, stim) in self.stimuli.iter().enumerate() {
            let ok = match stim {
                Stimulus::None => true,
                Stimulus::Fixed(k) => *k < FIXED_STIMULI,
                Stimulus::Variable(k) => *k < MAX_VARIABLES,
            };
            if !ok {
                return Err(bad(
                    format!("stimuli[{s}]"),
                    format!("\"{stim}\""),
                    format!(
                        "a fixed stimulus f0-f{} or a variable one v0-v{}",
                        FIXED_STIMULI - 1,
                        MAX_VARIABLES - 1
                    ),
                ));
            }
        }
        if self.transitions.len() != n {
            return Err(bad(
                "transitions".into(),
                format!("{} states", self.transitions.len()),
                format!("one entry per state ({n}, as many as `stimuli`)"),
            ));
        }
        for (s, row) in self.transitions.iter().enumerate() {
            if row.len() != ACTIONS {
                return Err(bad(
                    format!("transitions[{s}]"),
                    format!("{} actions", row.len()),
                    format!("{ACTIONS} (one distribution per action)"),
                ));
            }
            for (a, dist) in row.iter().enumerate() {
                let field = format!("transitions[{s}][{a}]");
                if dist.len() != n {
                    return Err(bad(
                        field,
                        format!("{dist:?}"),
                        format!("{n} probabilities, one per state"),
                    ));
                }
                let sum: f64 = dist.iter().sum();
                if dist.iter().any(|p| !(p.is_finite() && *p >= 0.0)) || (sum - 1.0).abs() > 1e-9 {
                    return Err(bad(
                        field,
                        format!("{dist:?}"),
                        "probabilities ≥ 0 that sum to 1".into(),
                    ));
                }
            }
        }
        if self.special.len() > MAX_VARIABLES {
            return Err(bad(
                "special".into(),
                format!("{} variables", self.special.len()),
                format!("at most {MAX_VARIABLES}"),
            ));
        }
        for (k, [lo, hi]) in self.special.iter().enumerate() {
            if lo > hi || *hi >= n {
                return Err(bad(
                    format!("special[{k}]"),
                    format!("[{lo}, {hi}]"),
                    format!("a range [lo, hi] of states, lo ≤ hi < {n}"),
                ));
            }
        }
        if self.probabilities > MAX_VARIABLES {
            return Err(bad(
                "probabilities".into(),
                self.probabilities.to_string(),
                format!("at most {MAX_VARIABLES}"),
            ));
        }
        let state_ok = |r: &StateRef| match r {
            StateRef::Any => true,
            StateRef::State(s) => *s < n,
            StateRef::Special(k) => *k < self.special.len(),
        };
        let state_why = format!(
            "\"any\", a state 0-{} or a special-state variable x0-x{} (declared in `special`)",
            n - 1,
            self.special.len() as isize - 1
        );
        let cond_ok = |c: &Cond| matches!(c, Cond::Any | Cond::Is(0 | 1));
        for (i, r) in self.reward.iter().enumerate() {
            let at = |f: &str| format!("reward[{i}].{f}");
            for (f, s) in [("from", r.from), ("to", r.to)] {
                if !state_ok(&s) {
                    return Err(bad(at(f), s.to_string(), state_why.clone()));
                }
            }
            for (f, c) in [("action", r.action), ("flag", r.flag)] {
                if !cond_ok(&c) {
                    return Err(bad(at(f), c.to_string(), "\"any\", 0 or 1".into()));
                }
            }
            let p_ok = match r.p {
                Prob::Const(x) => (0.0..=1.0).contains(&x),
                Prob::Var(k) | Prob::OneMinus(k) => k < self.probabilities,
            };
            if !p_ok {
                return Err(bad(
                    at("p"),
                    r.p.to_string(),
                    format!(
                        "a probability in [0, 1], or pK / 1-pK with K < {} (`probabilities`)",
                        self.probabilities
                    ),
                ));
            }
            if !r.value.is_finite() {
                return Err(bad(
                    at("value"),
                    r.value.to_string(),
                    "a finite reward".into(),
                ));
            }
        }
        for (i, r) in self.flag.iter().enumerate() {
            let at = |f: &str| format!("flag[{i}].{f}");
            for (f, s) in [("from", r.from), ("to", r.to)] {
                if !state_ok(&s) {
                    return Err(bad(at(f), s.to_string(), state_why.clone()));
                }
            }
            if !cond_ok(&r.action) {
                return Err(bad(
                    at("action"),
                    r.action.to_string(),
                    "\"any\", 0 or 1".into(),
                ));
            }
            if r.set > 1 {
                return Err(bad(at("set"), r.set.to_string(), "0 or 1".into()));
            }
        }
        Ok(())
    }

    /// The variables and the rules, one line each, for people.
    pub fn rule_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (k, [lo, hi]) in self.special.iter().enumerate() {
            lines.push(format!(
                "x{k}: a state drawn uniformly from {lo}..={hi} per instance"
            ));
        }
        for k in 0..self.probabilities {
            lines.push(format!("p{k}: a probability drawn U(0, 1) per instance"));
        }
        for (i, r) in self.reward.iter().enumerate() {
            lines.push(format!(
                "reward rule {i}: {} → {}, action {}, flag {}: {} with probability {}",
                r.from, r.to, r.action, r.flag, r.value, r.p
            ));
        }
        for (i, r) in self.flag.iter().enumerate() {
            lines.push(format!(
                "flag rule {i}: {} → {}, action {}: flag := {}",
                r.from, r.to, r.action, r.set
            ));
        }
        if !self.flag.is_empty() {
            lines.push("entering state 0 resets the flag to 0".into());
        }
        lines
    }

    /// A readable description: states, stimuli, transitions, variables and rules.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let name = if self.name.is_empty() {
            "(unnamed)"
        } else {
            &self.name
        };
        let _ = writeln!(out, "task {name}: {} states, 2 actions", self.states());
        for (s, row) in self.transitions.iter().enumerate() {
            let _ = writeln!(out, "  state {s} shows {}", self.stimuli[s]);
            for (a, dist) in row.iter().enumerate() {
                let to: Vec<String> = dist
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| **p > 0.0)
                    .map(|(t, p)| {
                        if *p == 1.0 {
                            format!("{t}")
                        } else {
                            format!("{t} ({p})")
                        }
                    })
                    .collect();
                let _ = writeln!(out, "    action {a} → {}", to.join(", "));
            }
        }
        for line in self.rule_lines() {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// The format tag of a task-set file.
pub const TASK_SET_FORMAT: &str = "bohp-metatasks/1";

/// A set of tasks, as shared in a file (`bohp tasks generate`, `bohp tasks show`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSet {
    /// [`TASK_SET_FORMAT`].
    pub format: String,
    /// How the set was made (`generated with seed 1`), for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// The tasks.
    #[serde(rename = "task")]
    pub tasks: Vec<MetaTask>,
}

impl TaskSet {
    /// A set of `tasks`.
    pub fn new(origin: impl Into<String>, tasks: Vec<MetaTask>) -> TaskSet {
        TaskSet {
            format: TASK_SET_FORMAT.into(),
            origin: origin.into(),
            tasks,
        }
    }

    /// The set as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a task set serializes")
    }

    /// The set as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a task set serializes")
    }

    /// Writes the set: JSON when the file name ends in `.json`, TOML otherwise.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = if is_json(path) {
            self.to_json()
        } else {
            self.to_toml()
        };
        crate::run::write_atomic(path, text.as_bytes())
    }

    /// Reads a TOML or JSON (by the file name's `.json`) task-set file and validates every task,
    /// naming the file and the first bad field (`task[3].reward[0].p`).
    pub fn load(path: &Path) -> Result<TaskSet> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            action: "cannot read the task set",
            source,
        })?;
        TaskSet::parse(&text, path)
    }

    /// [`TaskSet::load`] of text already read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<TaskSet> {
        let syntax = |field: String, message: String| Error::ConfigSyntax {
            path: path.to_path_buf(),
            field,
            message,
        };
        let set: TaskSet = if is_json(path) {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| syntax(e.path().to_string(), e.inner().to_string()))?
        } else {
            let de = toml::Deserializer::parse(text)
                .map_err(|e| syntax("<file>".into(), e.to_string()))?;
            serde_path_to_error::deserialize(de)
                .map_err(|e| syntax(e.path().to_string(), e.inner().to_string()))?
        };
        let value_error = |field: String, value: String, expected: String| Error::ConfigValue {
            source_name: path.display().to_string(),
            field,
            value,
            expected,
        };
        if set.format != TASK_SET_FORMAT {
            return Err(value_error(
                "format".into(),
                format!("\"{}\"", set.format),
                format!("\"{TASK_SET_FORMAT}\""),
            ));
        }
        if set.tasks.is_empty() {
            return Err(value_error(
                "task".into(),
                "(none)".into(),
                "at least one [[task]]".into(),
            ));
        }
        for (i, task) in set.tasks.iter().enumerate() {
            task.validate()
                .map_err(|e| value_error(format!("task[{i}].{}", e.field), e.value, e.expected))?;
        }
        Ok(set)
    }
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

impl FromStr for NamedTask {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<NamedTask, String> {
        NamedTask::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = NamedTask::ALL.iter().map(|t| t.name()).collect();
                format!("\"{s}\": expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests;
