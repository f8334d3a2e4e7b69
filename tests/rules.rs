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

/// A small modulated memorisation network (8 neurons, trained with autodiff), with `model`
/// added to its `[model]` table.
fn small_memorisation(model: &str) -> RecurrentConfig {
    let text = format!(
        "seed = 2\ndtype = \"f64\"\n[task]\nkind = \"memorisation\"\nsize = 8\nitems = 2\ninput_gain = 1.0\n\
         [model]\ninit_std = 0.3\ninit_eta = 0.2\n{model}\n[train]\nengine = \"autodiff\"\nepisodes = 1\nlearning_rate = 0.001\n"
    );
    let config = RecurrentConfig::parse(&text, Path::new("small.toml")).unwrap();
    config.validate("small.toml").unwrap();
    config
}

/// The one-shot task's single layer (γ = 0.3, f64) with `model` added to its `[model]` table.
fn small_one_shot(model: &str) -> SingleLayerConfig {
    let text = format!(
        "seed = 1\ndtype = \"f64\"\n[task]\nkind = \"one-shot\"\n[model]\ngamma = 0.3\n{model}\n\
         [train]\nepisodes = 1\nlearning_rate = 0.01\n"
    );
    let config: SingleLayerConfig = toml::from_str(&text).unwrap();
    config.validate("one-shot").unwrap();
    config
}

/// The single layer's modulator: each injected fault of the neuromodulated rules, and the
/// layer's own mistakes, fail the check against the analytic recursion with a group named;
/// the paper's weighting (a recursion of the unmodulated trace) and the retroactive fault
/// under simple modulation are refused.
#[test]
fn the_single_layer_modulator_catches_every_fault() {
    let options = |recursion| CheckOptions {
        episodes: 2,
        finite_differences: false,
        dump: false,
        recursion,
    };
    let retro = "rule = \"clipped\"\nclip = 0.05\nmodulation = \"retroactive\"";
    let simple = "rule = \"hebb\"\nmodulation = \"simple\"";
    for (model, recursion) in [
        (retro, Recursion::Fault(Fault::EligibilityFirst)),
        (retro, Recursion::Fault(Fault::PreviousModulation)),
        (retro, Recursion::Fault(Fault::GradientThroughClip)),
        (retro, Recursion::NewTrace),
        (retro, Recursion::DoubleTanh),
        (simple, Recursion::Fault(Fault::PreviousModulation)),
        (simple, Recursion::Fault(Fault::RateOnOldTrace)),
        (
            "rule = \"oja\"\nmodulation = \"simple\"",
            Recursion::Fault(Fault::OjaDecayDropped),
        ),
        (
            "rule = \"clipped\"\nclip = 0.05\nmodulation = \"simple\"",
            Recursion::Fault(Fault::GradientThroughClip),
        ),
    ] {
        let report = check_any(
            &AnyConfig::Single(small_one_shot(model)),
            options(recursion),
        )
        .unwrap()
        .0;
        assert_caught(
            &report,
            "autodiff vs analytic",
            &format!("{model:?} {}", recursion.name()),
        );
    }
    for (model, recursion, says) in [
        (
            simple,
            Recursion::Fault(Fault::EligibilityFirst),
            "eligibility-first",
        ),
        (simple, Recursion::PaperWeighting, "paper-weighting"),
        (
            "rule = \"hebb\"",
            Recursion::Fault(Fault::PreviousModulation),
            "neuromodulated",
        ),
    ] {
        let err = check_any(
            &AnyConfig::Single(small_one_shot(model)),
            options(recursion),
        )
        .unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}

/// The recurrent network's modulator: each injected fault of the neuromodulated rules fails
/// the check against RTRL, with a group named; the retroactive fault is refused under simple
/// modulation.
#[test]
fn the_recurrent_modulator_catches_every_fault() {
    let options = |fault| CheckOptions {
        episodes: 2,
        finite_differences: false,
        dump: false,
        recursion: Recursion::Fault(fault),
    };
    for (model, fault) in [
        (
            "rule = \"clipped\"\nmodulation = \"retroactive\"",
            Fault::EligibilityFirst,
        ),
        (
            "rule = \"clipped\"\nmodulation = \"retroactive\"",
            Fault::PreviousModulation,
        ),
        (
            "rule = \"clipped\"\nclip = 0.05\nmodulation = \"retroactive\"",
            Fault::GradientThroughClip,
        ),
        (
            "rule = \"hebb\"\nmodulation = \"simple\"",
            Fault::PreviousModulation,
        ),
        (
            "rule = \"hebb\"\nmodulation = \"simple\"",
            Fault::RateOnOldTrace,
        ),
        (
            "rule = \"oja\"\nmodulation = \"simple\"",
            Fault::OjaDecayDropped,
        ),
        (
            "rule = \"clipped\"\nclip = 0.05\nmodulation = \"simple\"",
            Fault::GradientThroughClip,
        ),
    ] {
        let report = check_any(
            &AnyConfig::Recurrent(small_memorisation(model)),
            options(fault),
        )
        .unwrap()
        .0;
        assert_caught(
            &report,
            "autodiff vs rtrl",
            &format!("{model:?} {}", fault.name()),
        );
    }
    let err = check_any(
        &AnyConfig::Recurrent(small_memorisation(
            "rule = \"hebb\"\nmodulation = \"simple\"",
        )),
        options(Fault::EligibilityFirst),
    )
    .unwrap_err();
    assert!(err.to_string().contains("eligibility-first"), "{err}");
}

/// One cell of the matrix: family, rule, comparison, largest relative difference, tolerance.
type Cell = (String, String, String, f64, f64);

/// The rule × family × engine matrix: each cell's largest relative difference from its
/// family's independent reference, in f64 (finite differences: on sampled entries, within
/// their own limit; Omniglot's embedding: autodiff against finite differences).
fn matrix() -> Vec<Cell> {
    let mut cells = Vec::new();
    let options = CheckOptions {
        episodes: 2,
        finite_differences: true,
        dump: false,
        recursion: Recursion::Correct,
    };
    let mut add = |family: &str, rule: &str, report: Report| {
        assert!(report.passed, "{family} {rule}:\n{}", report.table());
        for c in &report.comparisons {
            let name = c
                .name
                .replace("central finite differences", "finite differences");
            cells.push((
                family.to_string(),
                rule.to_string(),
                name,
                c.worst(),
                c.tolerance,
            ));
        }
    };
    for rule in ["hebb", "oja", "clipped"] {
        let text = format!(
            "seed = 1\ndtype = \"f64\"\n[task]\nkind = \"one-shot\"\n[model]\ngamma = 0.3\nrule = \"{rule}\"\n\
             [train]\nepisodes = 1\nlearning_rate = 0.01\n"
        );
        let config: SingleLayerConfig = toml::from_str(&text).unwrap();
        add(
            "single layer (one-shot)",
            rule,
            check_any(&AnyConfig::Single(config), options).unwrap().0,
        );
        let text = format!(
            "seed = 2\ndtype = \"f64\"\n[task]\nkind = \"memorisation\"\nsize = 8\nitems = 2\ninput_gain = 1.0\n\
             [model]\ninit_std = 0.3\ninit_eta = 0.2\nrule = \"{rule}\"\n[train]\nepisodes = 1\nlearning_rate = 0.001\n"
        );
        let config = RecurrentConfig::parse(&text, Path::new("small.toml")).unwrap();
        add(
            "recurrent (memorisation)",
            rule,
            check_any(&AnyConfig::Recurrent(config), options).unwrap().0,
        );
    }
    for (model, name) in [
        (
            "rule = \"hebb\"\nmodulation = \"simple\"",
            "hebb, modulated rate",
        ),
        (
            "rule = \"oja\"\nmodulation = \"simple\"",
            "oja, modulated rate",
        ),
        (
            "rule = \"clipped\"\nclip = 0.05\nmodulation = \"simple\"",
            "clipped, modulated rate (simple)",
        ),
        (
            "rule = \"clipped\"\nclip = 0.05\nmodulation = \"retroactive\"",
            "retroactive",
        ),
    ] {
        add(
            "single layer (one-shot)",
            name,
            check_any(&AnyConfig::Single(small_one_shot(model)), options)
                .unwrap()
                .0,
        );
        add(
            "recurrent (memorisation)",
            name,
            check_any(&AnyConfig::Recurrent(small_memorisation(model)), options)
                .unwrap()
                .0,
        );
    }
    for (model, name) in [
        ("kind = \"non-plastic\"", "none"),
        ("kind = \"plastic\"\nrule = \"hebb\"", "hebb"),
        ("kind = \"plastic\"\nrule = \"oja\"", "oja"),
        ("kind = \"plastic\"\nclip = 0.05", "clipped"),
        ("kind = \"simple\"\nrule = \"hebb\"", "hebb, modulated rate"),
        ("kind = \"simple\"\nrule = \"oja\"", "oja, modulated rate"),
        (
            "kind = \"simple\"\nclip = 0.05\nfanout = true",
            "clipped, modulated rate (simple)",
        ),
        ("kind = \"retroactive\"\nclip = 0.05", "retroactive"),
    ] {
        add(
            "actor-critic (maze)",
            name,
            check_any(&AnyConfig::Rl(small_maze(model)), options)
                .unwrap()
                .0,
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let set = crate::omniglot::write_set(tmp.path(), "images_background", 2, 6, 4);
    for (model, name) in [
        ("rule = \"oja\"", "oja"),
        ("rule = \"hebb\"", "hebb"),
        ("rule = \"clipped\"", "clipped"),
        (
            "rule = \"oja\"\nmodulation = \"simple\"",
            "oja, modulated rate",
        ),
        ("modulation = \"retroactive\"\nclip = 0.05", "retroactive"),
    ] {
        let text = format!(
            "seed = 3\ndtype = \"f64\"\n[task]\nkind = \"omniglot\"\ndata = [{set:?}]\nways = 3\nshots = 2\nqueries = 2\n\
             [model]\n{model}\nchannels = 4\noutputs = 5\ninit_eta = 0.3\ninit_alpha = 0.7\n\
             [train]\nepisodes = 1\nbatch = 2\nlearning_rate = 0.001\n"
        );
        let config: OmniglotConfig = toml::from_str(&text).unwrap();
        config.validate("omniglot").unwrap();
        add(
            "few-shot (Omniglot)",
            name,
            check_any(&AnyConfig::FewShot(config), options).unwrap().0,
        );
    }
    cells
}

/// The matrix in docs/gradients.md is what the check measures: every cell measured here is
/// in the documented table, measured and documented within its tolerance (1e-10 between exact
/// methods, 1e-6 against finite differences), and the table has no cell that is not measured.
/// `BOHP_WRITE_MATRIX=1` prints the table to paste.
#[test]
fn the_rule_family_matrix_in_the_docs_is_measured() {
    let cells = matrix();
    let mut table = String::from(
        "| family | rule | comparison (f64) | max relative difference |\n|---|---|---|---:|\n",
    );
    for (family, rule, comparison, worst, tolerance) in &cells {
        assert!(
            *worst <= *tolerance && *tolerance <= 1e-6,
            "{family} {rule} {comparison}: {worst:e}"
        );
        assert!(
            *tolerance <= 1e-10 || comparison.contains("finite differences"),
            "{comparison}: {tolerance}"
        );
        table += &format!("| {family} | {rule} | {comparison} | {worst:.1e} |\n");
    }
    if std::env::var("BOHP_WRITE_MATRIX").is_ok() {
        println!("{table}");
    }
    let docs = std::fs::read_to_string(repo_root().join("docs/gradients.md")).unwrap();
    let documented: Vec<&str> = docs
        .lines()
        .skip_while(|l| !l.starts_with("| family | rule | comparison (f64)"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(
        documented.len(),
        cells.len(),
        "documented rows vs measured cells:\n{table}"
    );
    for ((family, rule, comparison, _, tolerance), row) in cells.iter().zip(&documented) {
        let prefix = format!("| {family} | {rule} | {comparison} |");
        assert!(row.starts_with(&prefix), "{row} vs {prefix}\n{table}");
        let value: f64 = row[prefix.len()..]
            .trim()
            .trim_matches('|')
            .trim()
            .parse()
            .unwrap();
        assert!(value <= *tolerance, "{row}");
    }
}

/// `bohp gradcheck` on a modulated recurrent config from the command line: autodiff and the
/// fused engine pass against RTRL, a fault fails it, and its dump recomputes the modulator and both traces of the
/// retroactive rule from the dumped parameters and outputs.
#[test]
fn gradcheck_cli_checks_a_modulated_recurrent_network_and_its_dump_recomputes() {
    let d = checked_modulated_dump(
        "seed = 4\n[task]\nkind = \"memorisation\"\nsize = 6\nitems = 2\n\
         [model]\nrule = \"clipped\"\nclip = 0.5\nmodulation = \"retroactive\"\ninit_std = 0.3\ninit_eta = 0.3\n\
         [train]\nengine = \"autodiff\"\nepisodes = 1\nlearning_rate = 0.001\n",
        ["autodiff vs rtrl", "fused vs rtrl"],
        "eligibility-first",
    );
    let n = 6;
    let p = &d["parameters"];
    let (w_m, b_m, eta) = (
        nums(&p["w_m"]["values"]),
        nums(&p["b_m"]["values"])[0],
        nums(&p["eta"]["values"])[0],
    );
    let y = nums(&d["outputs"]["values"]);
    let m = nums(&d["modulation"]["signal"]["values"]);
    let e = nums(&d["modulation"]["eligibility"]["values"]);
    let h = nums(&d["traces"]["values"]);
    assert_eq!(d["modulation"]["kind"], "retroactive");
    // M(t) = tanh(y(t)·w_M + b_M) at every step.
    for (t, mt) in m.iter().enumerate() {
        let z: f64 = (0..n).map(|j| y[t * n + j] * w_m[j]).sum::<f64>() + b_m;
        assert!((z.tanh() - mt).abs() < 1e-14, "M({})", t + 1);
    }
    // Steps 1-3 (y(0) = 0, E(0) = H(0) = 0): E(1) = 0, H(1) = H(2) = 0;
    // E(2) = η·y(1)ᵀy(2), H(3) = clip(M(3)·E(2), ±0.5).
    let nn = n * n;
    for ij in 0..nn {
        let (i, j) = (ij / n, ij % n);
        assert_eq!(
            (e[ij], h[ij], h[nn + ij]),
            (0.0, 0.0, 0.0),
            "step 1-2 at {ij}"
        );
        let e2 = eta * y[i] * y[n + j];
        assert!((e[nn + ij] - e2).abs() < 1e-14, "E_{i}{j}(2)");
        let h3 = (m[2] * e2).clamp(-0.5, 0.5);
        assert!((h[2 * nn + ij] - h3).abs() < 1e-14, "H_{i}{j}(3)");
    }
    let g = &d["gradients"];
    for method in ["rtrl", "autodiff", "fused", "finite_differences"] {
        for group in ["w", "alpha", "eta", "w_m", "b_m"] {
            assert!(g[method][group].is_object(), "{method} {group}");
        }
    }
}

/// `bohp gradcheck` on a retroactively modulated single layer from the command line: autodiff
/// and the fused engine pass against the analytic recursion, `eligibility-first` fails it, and
/// its dump recomputes `M(t)`, `E(t)` and `H(t)` from the dumped inputs, outputs and
/// parameters alone.
#[test]
fn gradcheck_cli_checks_a_modulated_single_layer_and_its_dump_recomputes() {
    let d = checked_modulated_dump(
        "seed = 2\n[task]\nkind = \"one-shot\"\n\
         [model]\ngamma = 0.3\nrule = \"clipped\"\nclip = 0.05\nmodulation = \"retroactive\"\n\
         [train]\nepisodes = 1\nlearning_rate = 0.01\n",
        ["autodiff vs analytic", "fused vs analytic"],
        "eligibility-first",
    );
    let (steps, n_in) = (20, 10);
    let n_out = d["outputs"]["shape"][1].as_u64().unwrap() as usize;
    assert_eq!(d["modulation"]["kind"], "retroactive");
    assert_eq!(
        d["parameters"]["w_m"]["shape"],
        serde_json::json!([n_out, 1])
    );
    let (x, y) = (nums(&d["inputs"]["values"]), nums(&d["outputs"]["values"]));
    let w_m = nums(&d["parameters"]["w_m"]["values"]);
    let b_m = nums(&d["parameters"]["b_m"]["values"])[0];
    let gamma = d["gamma"].as_f64().unwrap();
    let (m, e, h) = (
        nums(&d["modulation"]["signal"]["values"]),
        nums(&d["modulation"]["eligibility"]["values"]),
        nums(&d["traces"]["values"]),
    );
    let size = n_in * n_out;
    assert_eq!(
        (m.len(), e.len(), h.len()),
        (steps, steps * size, steps * size)
    );
    let (mut h_prev, mut e_prev) = (vec![0.0; size], vec![0.0; size]);
    let mut saturated = 0;
    for t in 0..steps {
        let yt = &y[t * n_out..(t + 1) * n_out];
        let mt = ((0..n_out).map(|j| yt[j] * w_m[j]).sum::<f64>() + b_m).tanh();
        assert!((mt - m[t]).abs() < 1e-14, "M({t})");
        for k in 0..n_in {
            for j in 0..n_out {
                let i = k * n_out + j;
                let h_new = (h_prev[i] + mt * e_prev[i]).clamp(-0.05, 0.05);
                let e_new = (1.0 - gamma) * e_prev[i] + gamma * x[t * n_in + k] * yt[j];
                assert!((h_new - h[t * size + i]).abs() < 1e-14, "H({t})");
                assert!((e_new - e[t * size + i]).abs() < 1e-14, "E({t})");
                saturated += usize::from(h_new.abs() == 0.05);
                (h_prev[i], e_prev[i]) = (h_new, e_new);
            }
        }
    }
    assert!(saturated > 0, "no trace reached the clip");
}

/// Writes `text` as a config, checks it from the command line with a dump (the comparisons
/// `methods` must appear), requires `fault` to fail it, and returns the dump.
fn checked_modulated_dump(text: &str, methods: [&str; 2], fault: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("retro.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let file = dir.path().join("dump.json");
    let stdout = crate::common::gradcheck_passes_with_dump(config, 2, &file);
    assert!(methods.iter().all(|m| stdout.contains(m)), "{stdout}");
    crate::common::assert_gradcheck_catches(config, fault);
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(d["schema"], "bohp-gradcheck-dump/5");
    d
}

/// The numbers of a JSON array.
fn nums(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
