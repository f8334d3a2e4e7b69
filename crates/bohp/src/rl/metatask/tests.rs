use rand::Rng;

use super::named::rule as pays;
use super::runner::{Instance, Planner, Position, step};
use super::*;
use crate::rng::{Stream, stream_rng};

const STEPS: usize = 100;
const TIMEOUT: usize = 4;
const BITS: usize = 8;

/// Mean and standard error of `f(episode)` over `episodes` episodes.
fn mean_se(episodes: u64, mut f: impl FnMut(u64) -> f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..episodes).map(&mut f).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Total reward of one episode of `task` (instance from the episode's stream) under `policy`
/// (the planner, the position and the steps left → an action).
fn episode(
    task: &MetaTask,
    seed: u64,
    policy: &mut dyn FnMut(&Planner, Position, usize, &mut rand_chacha::ChaCha8Rng) -> usize,
) -> f64 {
    let mut rng = stream_rng(seed, Stream::Eval, 0);
    let inst = Instance::draw(task, BITS, &mut rng);
    let planner = Planner::new(task, &inst, STEPS, TIMEOUT);
    let mut act_rng = stream_rng(seed, Stream::Act, 0);
    let mut at = Position::START;
    let mut total = 0.0;
    for t in 0..STEPS {
        let a = policy(&planner, at, STEPS - t, &mut act_rng);
        let (next, r) = step(task, &inst, at, a, TIMEOUT, &mut rng);
        total += f64::from(r);
        at = next;
    }
    total
}

#[test]
fn every_named_task_is_valid_and_its_planner_gives_the_hand_computed_rewards() {
    for named in NamedTask::ALL {
        let task = named.task();
        task.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", named.name()));
        let (optimal, random) = named.expected(STEPS);
        for i in 0..20 {
            let inst = Instance::draw(&task, BITS, &mut stream_rng(1, Stream::Eval, i));
            let plan = Planner::new(&task, &inst, STEPS, TIMEOUT);
            // The bandit's optimum depends on the instance: max(p, 1 − p) per step.
            let optimal = if named == NamedTask::Bandit {
                STEPS as f64 * inst.p[0].max(1.0 - inst.p[0])
            } else {
                optimal
            };
            assert!(
                (plan.optimal() - optimal).abs() < 1e-9,
                "{}: planner {} against {optimal} by hand",
                named.name(),
                plan.optimal()
            );
            assert!(
                (plan.random() - random).abs() < 1e-9,
                "{}: planner's random {} against {random} by hand",
                named.name(),
                plan.random()
            );
        }
    }
}

/// An oracle that knows the instance earns the optimum and a random policy its own
/// expectation, each within 4 standard errors over 400 episodes, on every named task (the
/// runner against the hand-computed values).
#[test]
fn oracle_and_random_agents_earn_the_expected_rewards_on_every_named_task() {
    for named in NamedTask::ALL {
        let task = named.task();
        let (optimal, random) = named.expected(STEPS);
        let (mean, se) = mean_se(400, |e| {
            episode(&task, e, &mut |plan, at, left, _| plan.act(at, left))
        });
        assert!(
            (mean - optimal).abs() < 4.0 * se.max(0.05),
            "{}: oracle {mean} ± {se} against {optimal}",
            named.name()
        );
        let (mean, se) = mean_se(400, |e| {
            episode(&task, e, &mut |_, _, _, rng| rng.random_range(0..2))
        });
        assert!(
            (mean - random).abs() < 4.0 * se,
            "{}: random {mean} ± {se} against {random}",
            named.name()
        );
        assert!(optimal > random + 5.0, "{}: the oracle gains", named.name());
    }
}

/// The same comparison on generated tasks, against the planner's expectations (which the
/// named tasks check by hand): the runner and the planner agree on tasks with probability
/// variables, special states, flags and timeouts.
#[test]
fn the_runner_matches_the_planner_on_generated_tasks() {
    for task in generate(3, 12) {
        let (mut optimal, mut random) = (0.0, 0.0);
        let episodes = 300;
        let (oracle, se_o) = mean_se(episodes, |e| {
            episode(&task, e, &mut |plan, at, left, _| {
                if left == STEPS {
                    optimal += plan.optimal();
                    random += plan.random();
                }
                plan.act(at, left)
            })
        });
        let (optimal, random) = (optimal / episodes as f64, random / episodes as f64);
        let (chance, se_r) = mean_se(episodes, |e| {
            episode(&task, e, &mut |_, _, _, rng| rng.random_range(0..2))
        });
        assert!(
            (oracle - optimal).abs() < 4.0 * se_o.max(0.05),
            "{}: oracle {oracle} ± {se_o} against the planner's {optimal}",
            task.name
        );
        assert!(
            (chance - random).abs() < 4.0 * se_r.max(0.05),
            "{}: random {chance} ± {se_r} against the planner's {random}",
            task.name
        );
        assert!(optimal >= random - 1e-9, "{}", task.name);
    }
}

fn passing() -> MetaTask {
    NamedTask::Harlow.task()
}

#[test]
fn a_task_that_passes_every_rejection_test() {
    assert_eq!(check(&passing()), Ok(()));
}

#[test]
fn an_absorbing_start_is_rejected() {
    let mut t = passing();
    t.transitions[0] = vec![vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0]];
    assert_eq!(check(&t), Err(Rejection::AbsorbingStart));
    // One action leaving is enough.
    t.transitions[0][1] = vec![0.0, 1.0, 0.0];
    assert_ne!(check(&t), Err(Rejection::AbsorbingStart));
}

#[test]
fn an_unreachable_state_is_rejected() {
    let mut t = passing();
    t.transitions[0] = vec![vec![0.0, 1.0, 0.0], vec![0.0, 1.0, 0.0]];
    assert_eq!(check(&t), Err(Rejection::Unreachable(2)));
}

#[test]
fn a_task_with_one_choice_state_is_rejected() {
    // Only state 2 pays by action; state 1's rules pay the same for both actions.
    let mut t = passing();
    t.reward = vec![
        pays(StateRef::State(2), StateRef::Any, Cond::Is(0), Prob::Var(0)),
        pays(StateRef::State(1), StateRef::Any, Cond::Any, Prob::Var(0)),
    ];
    t.special.clear();
    t.probabilities = 1;
    assert_eq!(check(&t), Err(Rejection::FewChoices));
    // Make state 1's action matter too: it passes.
    t.reward[1].action = Cond::Is(1);
    assert_eq!(check(&t), Ok(()));
}

#[test]
fn a_task_whose_instances_all_pay_alike_is_rejected() {
    // Constant probabilities only: stimuli vary (v0, v1) but no expected reward does.
    let mut t = passing();
    t.special.clear();
    t.reward = vec![
        pays(
            StateRef::State(1),
            StateRef::Any,
            Cond::Is(0),
            Prob::Const(1.0),
        ),
        pays(
            StateRef::State(2),
            StateRef::Any,
            Cond::Is(1),
            Prob::Const(1.0),
        ),
    ];
    assert_eq!(check(&t), Err(Rejection::NothingVaries));
    // A special state whose rule is overridden by a later one still varies nothing.
    t.special = vec![[1, 2]];
    t.reward.insert(
        0,
        pays(
            StateRef::Special(0),
            StateRef::Any,
            Cond::Is(0),
            Prob::Const(0.5),
        ),
    );
    t.reward.push(pays(
        StateRef::State(2),
        StateRef::Any,
        Cond::Is(0),
        Prob::Const(0.0),
    ));
    assert_eq!(check(&t), Err(Rejection::NothingVaries));
    // Without the override, x0 = 2 decides state 2's action 0: the instances differ.
    t.reward.pop();
    assert_eq!(check(&t), Ok(()));
    // A varying rule on a transition that cannot happen (state 1 never leads to 2) varies
    // nothing (the generator of 129c8c0 compared such rules too: 14 of seed 1's 150 tasks).
    t.reward[0] = pays(
        StateRef::State(1),
        StateRef::State(2),
        Cond::Any,
        Prob::Var(0),
    );
    t.special.clear();
    t.probabilities = 1;
    assert_eq!(check(&t), Err(Rejection::NothingVaries));
}

#[test]
fn generated_sets_are_valid_distinct_deterministic_and_nested() {
    let tasks = generate(1, 60);
    assert_eq!(tasks.len(), 60);
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(t.name, format!("gen-1-{i}"));
        t.validate().unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert_eq!(check(t), Ok(()), "{}", t.name);
        assert!((3..=4).contains(&t.states()), "{}", t.name);
        assert!((1..=3).contains(&t.reward.len()), "{}", t.name);
        assert!((1..=2).contains(&t.flag.len()), "{}", t.name);
        for u in &tasks[..i] {
            assert_ne!(
                u.anonymous(),
                t.anonymous(),
                "{} repeats {}",
                t.name,
                u.name
            );
        }
    }
    assert_eq!(
        generate(1, 20)[..],
        tasks[..20],
        "the first tasks do not depend on the count"
    );
    assert_ne!(generate(2, 5)[..], tasks[..5], "another seed, other tasks");
    // The proportions the docs state, loosely: most tasks have 4 states and one reward rule.
    let four = tasks.iter().filter(|t| t.states() == 4).count();
    let one_rule = tasks.iter().filter(|t| t.reward.len() == 1).count();
    assert!(
        four > 30 && one_rule > 15,
        "4 states: {four}, one rule: {one_rule}"
    );
}

#[test]
fn task_sets_round_trip_through_toml_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tasks = generate(5, 8);
    tasks.extend(NamedTask::ALL.map(NamedTask::task));
    let set = TaskSet::new("test", tasks);
    for name in ["set.toml", "set.json"] {
        let path = dir.path().join(name);
        set.save(&path).expect("save");
        assert_eq!(TaskSet::load(&path).expect("load"), set, "{name}");
    }
}

/// A bad task file is refused naming the file, the task and the field.
#[test]
fn a_bad_task_file_names_the_task_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("set.toml");
    let good = TaskSet::new("", vec![NamedTask::Bandit.task(), NamedTask::TMaze.task()]).to_toml();
    let cases = [
        // p1 with one probability variable.
        (
            good.replacen("\"1-p0\"", "\"1-p1\"", 1),
            "task[0].reward[1].p",
        ),
        // A distribution that does not sum to 1.
        (
            good.replacen("[1.0], [1.0]", "[1.0], [0.5]", 1),
            "task[0].transitions[0][1]",
        ),
        // A special-state variable that is not declared.
        (
            good.replacen("to = \"x0\"", "to = \"x1\"", 1),
            "task[1].reward[0].to",
        ),
        (
            good.replacen("bohp-metatasks/1", "bohp-metatasks/9", 1),
            "format",
        ),
        (good.replacen("\"f2\"", "\"q2\"", 1), "task[1].stimuli[2]"),
    ];
    for (text, field) in cases {
        assert_ne!(text, good, "the case {field} changed the file");
        std::fs::write(&path, &text).expect("write");
        let err = TaskSet::load(&path).expect_err(field).to_string();
        assert!(
            err.contains(field) && err.contains("set.toml"),
            "{field}: {err}"
        );
    }
}

#[test]
fn rule_fields_parse_from_their_written_forms() {
    let t = |s: &str| Token::Text(s.into());
    assert_eq!(StateRef::try_from(t("any")), Ok(StateRef::Any));
    assert_eq!(StateRef::try_from(t("x2")), Ok(StateRef::Special(2)));
    assert_eq!(StateRef::try_from(Token::Int(3)), Ok(StateRef::State(3)));
    assert!(StateRef::try_from(t("y")).is_err());
    assert_eq!(Prob::try_from(t("1-p1")), Ok(Prob::OneMinus(1)));
    assert_eq!(Prob::try_from(t("p0")), Ok(Prob::Var(0)));
    assert_eq!(Prob::try_from(Token::Float(0.9)), Ok(Prob::Const(0.9)));
    assert_eq!(Stimulus::try_from(t("v1")), Ok(Stimulus::Variable(1)));
    assert_eq!(Cond::try_from(t("any")), Ok(Cond::Any));
    assert!(Cond::try_from(t("maybe")).is_err());
}

#[test]
fn the_drawing_shows_every_state_and_rule() {
    let task = NamedTask::KeyDoor.task();
    let svg = draw::svg(&task);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<circle").count(), 4);
    // 8 transitions of positive probability, each an arrow.
    assert_eq!(svg.matches("marker-end").count(), 8);
    assert!(svg.contains("flag rule 0"), "{svg}");
}

#[test]
fn the_flag_resets_in_state_zero_and_a_trial_times_out() {
    let task = NamedTask::KeyDoor.task();
    let mut rng = stream_rng(0, Stream::Eval, 0);
    let inst = Instance {
        special: vec![1],
        p: vec![],
        variable: vec![],
    };
    // Left room holds the key: 0 → 1 sets the flag, 1 → 3 keeps it, the door pays and 3 → 0
    // resets it.
    let (at, r) = step(&task, &inst, Position::START, 0, TIMEOUT, &mut rng);
    assert_eq!((at.state, at.flag, r), (1, 1, 0.0));
    let (at, _) = step(&task, &inst, at, 0, TIMEOUT, &mut rng);
    assert_eq!((at.state, at.flag), (3, 1));
    let (at, r) = step(&task, &inst, at, 1, TIMEOUT, &mut rng);
    assert_eq!((at.state, at.flag, r), (0, 0, 1.0));
    // With a timeout of 2 the walk 0 → 1 → 3 is cut short: back at the start, flag 0.
    let (at, _) = step(&task, &inst, Position::START, 0, 2, &mut rng);
    let (at, _) = step(&task, &inst, at, 0, 2, &mut rng);
    assert_eq!(at, Position::START);
}
