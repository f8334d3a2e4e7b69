//! The rule library across the families: no trace update outside `crates/bohp/src/rules/`,
//! `bohp gradcheck` on the neuromodulated actor-critic (every kind and rule, injected faults
//! caught, the dump recomputable from its JSON), and the rule × family × engine matrix of
//! docs/gradients.md measured.

use std::path::Path;

use bohp::omniglot::config::OmniglotConfig;
use bohp::recurrent::config::RecurrentConfig;
use bohp::rl::config::RlConfig;
use bohp::rules::faults::Fault;
use bohp::single::config::SingleLayerConfig;
use bohp_gradcheck::check::{AnyConfig, CheckOptions, Recursion, Report, check_any};

use crate::common::{repo_root, run_bohp};

/// Patterns of a hand-written trace update: a trace clipped to its bound, a decay by the rate,
/// the rate times the outer product. Outside the rule library none may appear.
const TRACE_UPDATE_PATTERNS: [&str; 8] = [
    "clamp(-self.clip",
    ".max(-c).min(c)",
    "(1.0 - eta)",
    "one() - eta",
    "outer * eta",
    "eta * outer",
    "* rate(m)",
    "Oja.tensor(",
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crates/bohp/src/rules/mod.rs` says that nothing outside the rule library writes a trace
/// update: no source file of any crate elsewhere contains one of the patterns of one (the
/// patterns do appear inside `rules/`, so the scan can see them).
#[test]
fn no_trace_update_outside_the_rule_library() {
    let mut files = Vec::new();
    rust_files(&repo_root().join("crates"), &mut files);
    let rules = repo_root().join("crates/bohp/src/rules");
    let (mut inside, mut outside) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for pattern in TRACE_UPDATE_PATTERNS {
            if text.contains(pattern) {
                if file.starts_with(&rules) {
                    inside += 1;
                } else {
                    outside.push(format!("{}: {pattern}", file.display()));
                }
            }
        }
    }
    assert!(files.len() > 50, "{} files scanned", files.len());
    assert!(
        inside >= 3,
        "the patterns match the library's own updates ({inside})"
    );
    assert!(
        outside.is_empty(),
        "trace updates outside rules/: {outside:#?}"
    );
}

/// A small maze config (6 neurons, 30 steps, 3 episodes) in f64; `model` lines added.
fn small_maze(model: &str) -> RlConfig {
    let text = format!(
        "seed = 3\ndtype = \"f64\"\n[task]\nkind = \"maze\"\nsteps = 30\nmaze_side = 7\n\
         [model]\nhidden = 6\ninit_eta = 0.3\n{model}\n[train]\nepisodes = 1\nbatch = 3\nlearning_rate = 0.001\n"
    );
    let config: RlConfig = toml::from_str(&text).unwrap();
    config.validate("small maze").unwrap();
    config
}

fn rl_check(config: &RlConfig, recursion: Recursion) -> Report {
    let options = CheckOptions {
        episodes: 2,
        finite_differences: true,
        dump: false,
        recursion,
    };
    check_any(&AnyConfig::Rl(config.clone()), options)
        .unwrap()
        .0
}

/// The actor-critic kinds with every rule that applies, clips wide and saturating (a clip of
/// 0.05 saturates many traces of this small network), fanned-out modulation.
const RL_CASES: [&str; 10] = [
    "kind = \"non-plastic\"",
    "kind = \"plastic\"",
    "kind = \"plastic\"\nclip = 0.05",
    "kind = \"plastic\"\nrule = \"hebb\"",
    "kind = \"plastic\"\nrule = \"oja\"",
    "kind = \"simple\"\nclip = 0.05",
    "kind = \"simple\"\nrule = \"oja\"\nfanout = true",
    "kind = \"simple\"\nrule = \"hebb\"",
    "kind = \"retroactive\"",
    "kind = \"retroactive\"\nclip = 0.05\nfanout = true",
];

/// `bohp gradcheck`'s reinforcement-learning check passes for every kind and rule: burn
/// autodiff, the fused engine and forward mode within 1e-10 of the host reverse pass in f64,
/// finite differences within 1e-6, on a replay of A2C episodes.
#[test]
fn the_actor_critic_gradients_check_for_every_kind_and_rule() {
    for model in RL_CASES {
        let report = rl_check(&small_maze(model), Recursion::Correct);
        for c in &report.comparisons {
            eprintln!("{model:?}: {} {:.1e}", c.name, c.worst());
        }
        assert!(report.passed, "{model:?}:\n{}", report.table());
        assert_eq!(report.comparisons.len(), 4, "{model:?}");
        assert!(
            (report.loss_autodiff - report.loss_reference).abs() < 1e-10,
            "{model:?}"
        );
    }
}

/// Asserts that `report` failed, its `comparison` more than 1e-4 apart (10⁶ times the f64
/// tolerance), with the failing groups named.
fn assert_caught(report: &Report, comparison: &str, what: &str) {
    let c = report.comparison(comparison).unwrap();
    let failing: Vec<&str> = c
        .rows
        .iter()
        .filter(|r| r.max_rel > c.tolerance)
        .map(|r| r.group.as_str())
        .collect();
    eprintln!("{what}: {failing:?} {:.1e}", c.worst());
    assert!(
        !report.passed && c.worst() > 1e-4 && !failing.is_empty(),
        "{what} not caught:\n{}",
        report.table()
    );
}

/// Each injected fault makes the check fail, in the comparison with autodiff and with a group
/// named, where it applies; where it does not, the check refuses to run it.
#[test]
fn every_injected_fault_of_the_neuromodulated_rules_is_caught() {
    let cases = [
        ("kind = \"retroactive\"", Fault::EligibilityFirst),
        (
            "kind = \"retroactive\"\nclip = 0.05",
            Fault::GradientThroughClip,
        ),
        ("kind = \"retroactive\"", Fault::PreviousModulation),
        (
            "kind = \"simple\"\nfanout = true",
            Fault::PreviousModulation,
        ),
        ("kind = \"simple\"\nclip = 0.05", Fault::GradientThroughClip),
        (
            "kind = \"plastic\"\nclip = 0.05",
            Fault::GradientThroughClip,
        ),
        ("kind = \"plastic\"\nrule = \"hebb\"", Fault::RateOnOldTrace),
        ("kind = \"simple\"\nrule = \"oja\"", Fault::OjaDecayDropped),
    ];
    for (model, fault) in cases {
        let report = rl_check(&small_maze(model), Recursion::Fault(fault));
        assert_caught(
            &report,
            "autodiff vs host",
            &format!("{model:?} {}", fault.name()),
        );
    }
    for (model, fault) in [
        ("kind = \"simple\"", Fault::EligibilityFirst),
        ("kind = \"plastic\"", Fault::PreviousModulation),
        ("kind = \"plastic\"", Fault::OjaDecayDropped),
        ("kind = \"non-plastic\"", Fault::GradientThroughClip),
    ] {
        let options = CheckOptions {
            episodes: 1,
            finite_differences: false,
            dump: false,
            recursion: Recursion::Fault(fault),
        };
        let err = check_any(&AnyConfig::Rl(small_maze(model)), options).unwrap_err();
        assert!(
            err.to_string().contains(fault.name()),
            "{model:?} {}: {err}",
            fault.name()
        );
    }
}

/// `bohp gradcheck` on an actor-critic config from the command line: it passes, a fault fails
/// it (exit 1, the group named MISMATCH), and its dump recomputes: the loss from the dumped
/// policy, values, actions and returns; the returns from the rewards; the first step's
/// activity from the parameters and observation; the traces by the rule.
#[test]
fn gradcheck_cli_checks_an_actor_critic_and_its_dump_recomputes() {
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("maze.toml");
    std::fs::write(
        &config,
        "seed = 5\n[task]\nkind = \"maze\"\nsteps = 25\nmaze_side = 7\n\
         [model]\nkind = \"retroactive\"\nhidden = 5\ninit_eta = 0.3\nclip = 0.2\n\
         [train]\nepisodes = 1\nlearning_rate = 0.001\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let file = dir.path().join("dump.json");
    let stdout = crate::common::gradcheck_passes_with_dump(config, 2, &file);
    assert!(stdout.contains("autodiff vs host"), "{stdout}");
    crate::common::assert_gradcheck_catches(config, "eligibility-first");
    // Not for a single-layer config.
    let one_shot = repo_root().join("configs/one-shot.toml");
    let out = run_bohp(&[
        "gradcheck",
        one_shot.to_str().unwrap(),
        "--recursion",
        "previous-modulation",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("previous-modulation"));

    let d: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(d["schema"], "bohp-gradcheck-dump/5");
    assert_eq!(d["produced_by"]["family"], "reinforcement");
    assert!(d.get("targets").is_none());
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let rl = &d["rl"];
    let (rewards, returns, values, actions) = (
        nums(&rl["rewards"]),
        nums(&rl["returns"]),
        nums(&rl["values"]),
        nums(&rl["actions"]),
    );
    let probs = nums(&rl["probabilities"]["values"]);
    let steps = rewards.len();
    assert_eq!(steps, 25);
    let (discount, cv, ce) = (
        rl["discount"].as_f64().unwrap(),
        rl["value_coef"].as_f64().unwrap(),
        rl["exploration_coef"].as_f64().unwrap(),
    );
    assert_eq!(rl["exploration"], "sum-p2");
    // Returns from the rewards (f32 arithmetic, as trained).
    let mut next = 0.0f32;
    for t in (0..steps).rev() {
        next = rewards[t] as f32 + discount as f32 * next;
        assert_eq!(returns[t], f64::from(next), "return {t}");
    }
    // The loss from the policy, values, actions and returns.
    let a = 4;
    let mut loss = 0.0;
    for t in 0..steps {
        let p = &probs[t * a..(t + 1) * a];
        let adv = returns[t] - values[t];
        loss += -p[actions[t] as usize].ln() * adv
            + cv * adv * adv
            + ce * p.iter().map(|q| q * q).sum::<f64>();
    }
    let dumped = d["loss"].as_f64().unwrap();
    assert!(
        (loss - dumped).abs() < 1e-12 * dumped.abs().max(1.0),
        "{loss} vs {dumped}"
    );
    // The first step's activity: h(1) = tanh(x(1)·W_in + b) (h(0) = 0, H = 0).
    let (w_in, b) = (
        nums(&d["parameters"]["w_in"]["values"]),
        nums(&d["parameters"]["b"]["values"]),
    );
    let x = nums(&d["inputs"]["values"]);
    let inputs = d["inputs"]["shape"][1].as_u64().unwrap() as usize;
    let h1 = nums(&d["outputs"]["values"]);
    let n = 5;
    for j in 0..n {
        let a: f64 = b[j] + (0..inputs).map(|k| x[k] * w_in[k * n + j]).sum::<f64>();
        assert!((a.tanh() - h1[j]).abs() < 1e-14, "h_{j}(1)");
    }
    // The traces by the retroactive rule: E(2) = η·h(1)ᵀh(2) from E(1) = 0 (h(0) = 0).
    let eta = nums(&d["parameters"]["eta"]["values"])[0];
    let e = nums(&rl["eligibility"]["values"]);
    for i in 0..n {
        for j in 0..n {
            let want = eta * h1[i] * h1[n + j];
            assert!((e[n * n + i * n + j] - want).abs() < 1e-14, "E_{i}{j}(2)");
        }
    }
    // Gradients of every method, on the trained groups only (no `fan_w` without fan-out).
    let g = &d["gradients"];
    for method in ["host", "autodiff", "finite_differences"] {
        assert!(g[method]["alpha"].is_object(), "{method}");
        assert!(g[method].get("fan_w").is_none(), "{method}");
    }
    assert!(g["finite_differences"]["w"]["indices"].is_array());
}

mod modulated;
