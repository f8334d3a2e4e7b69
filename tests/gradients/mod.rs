//! Gradient validation: burn autodiff, the hand-derived recursion (`bohp-gradcheck`) and
//! central finite differences agree, and the checker catches the paper's and the original
//! code's mistakes.

use bohp::device::{Backend, Precision, init_device};
use bohp::engines::analytic::{Analytic, Grads, Params, Variant, evaluate, evaluate_with};
use bohp::layer::PlasticLayerConfig;
use bohp::rules::faults::{Fault, Faulty};
use bohp::rules::{Modulation, Retroactive, Rule, RuleSpec};
use bohp::single::config::Engine;
use bohp::single::network::{PlasticNet, PlasticNetConfig};
use bohp::single::tasks::{EpisodeBatch, Targets, Task, TaskKind};
use bohp::single::train::Autodiff;
use bohp_gradcheck::check::{CheckOptions, Recursion, Tolerances, check};
use bohp_gradcheck::compare::{
    agreement, autodiff, finite_differences, floor, model_with, worst_relative,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::backend_matrix;
use crate::common::{budget_config, shipped_config, train_with};

/// A check of 4 episodes.
fn options(finite_differences: bool, recursion: Recursion) -> CheckOptions {
    CheckOptions {
        episodes: 4,
        finite_differences,
        dump: false,
        recursion,
    }
}

/// Trains `config` with autodiff and with the analytic engine (f64): the same parameters to
/// 1e-9 and the same losses; returns the autodiff run's metrics.
fn train_both_engines(
    name: &str,
    mut config: bohp::single::config::SingleLayerConfig,
) -> Vec<bohp::run::MetricsRow> {
    let (rows_ad, autodiff_params) = train_with(config.clone(), Box::new(Autodiff));
    config.train.engine = Engine::Analytic;
    let (rows_an, analytic_params) = train_with(config, Box::new(Analytic));
    for ((group, a), (_, b)) in autodiff_params.iter().zip(&analytic_params) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-9, "{name} {group}: {x} vs {y}");
        }
    }
    for (x, y) in rows_ad.iter().zip(&rows_an) {
        assert!(
            (x.loss - y.loss).abs() <= 1e-9
                && (x.error - y.error).abs() <= 1e-9
                && (x.error_code - y.error_code).abs() <= 1e-9,
            "{name}: {x:?} vs {y:?}"
        );
    }
    rows_ad
}

#[derive(Clone, Copy, Debug)]
enum Sign {
    Positive,
    Negative,
    Mixed,
}

/// A random network and episode batch: Gaussian inputs (not just ±1), α of a chosen sign,
/// large enough for plasticity to matter but not so large that positive feedback makes the
/// loss near-discontinuous (where no finite difference can check anything), and either a
/// readout with cross-entropy on random scored steps or a squared error on the last step.
struct Case {
    params: Params,
    batch: EpisodeBatch,
    task: Task,
}

/// The clipped rule's bound in the random cases: small enough that traces saturate.
const CLIP: f64 = 0.2;

fn random_case(
    n_in: usize,
    n_out: usize,
    gamma: f64,
    sign: Sign,
    labelled: bool,
    steps: usize,
    seed: u64,
) -> Case {
    ruled_case(Rule::Hebb, n_in, n_out, gamma, sign, labelled, steps, seed)
}

#[allow(clippy::too_many_arguments)]
fn ruled_case(
    rule: Rule,
    n_in: usize,
    n_out: usize,
    gamma: f64,
    sign: Sign,
    labelled: bool,
    steps: usize,
    seed: u64,
) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
    let w = (0..n_in * n_out).map(|_| normal(0.5)).collect();
    let alpha = (0..n_in * n_out)
        .map(|i| {
            let a = normal(0.3).abs() + 0.1;
            match sign {
                Sign::Positive => a,
                Sign::Negative => -a,
                Sign::Mixed => {
                    if i % 2 == 0 {
                        a
                    } else {
                        -a
                    }
                }
            }
        })
        .collect();
    let b = (0..n_out).map(|_| normal(0.5)).collect();
    let batch_size = 3;
    let inputs = (0..steps * batch_size * n_in)
        .map(|_| normal(0.5))
        .collect();
    let (readout_v, readout_c, targets) = if labelled {
        let v = (0..n_out * 2).map(|_| normal(1.0)).collect();
        let c = (0..2).map(|_| normal(0.5)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
        let classes = (0..steps).map(|_| rng.random_range(0..2)).collect();
        let mut scored: Vec<bool> = (0..steps).map(|_| rng.random::<bool>()).collect();
        scored[steps - 1] = true;
        (Some(v), Some(c), Targets::Labels { classes, scored })
    } else {
        let values = (0..batch_size * n_out)
            .map(|_| normal(0.5).tanh())
            .collect();
        (None, None, Targets::Pattern { values })
    };
    Case {
        params: Params {
            n_in,
            n_out,
            gamma,
            rule: RuleSpec { rule, clip: CLIP },
            modulation: Modulation::None,
            w,
            alpha,
            b,
            w_m: None,
            b_m: None,
            readout_v,
            readout_c,
        },
        batch: EpisodeBatch {
            batch: batch_size,
            steps,
            n_in,
            inputs,
            targets,
        },
        task: Task {
            kind: if labelled {
                TaskKind::OneShot
            } else {
                TaskKind::Completion
            },
            pattern_bits: n_in,
            steps,
        },
    }
}

/// Autodiff gradients of `case` on an f64 autodiff device.
fn autodiff_grads(case: &Case, backend: Backend) -> (f64, Grads) {
    let device = init_device(backend, Precision::F64).unwrap().autodiff();
    let config = PlasticNetConfig {
        layer: PlasticLayerConfig::new(case.params.n_in, case.params.n_out, case.params.gamma)
            .with_rule(case.params.rule)
            .with_modulation(case.params.modulation),
        classes: case.params.readout_c.as_ref().map(Vec::len),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let model: PlasticNet = model_with(config.init(&mut rng, &device), &case.params);
    autodiff(&model, &case.task, &case.batch, &device)
}

fn cases() -> Vec<(String, Case)> {
    let mut out = Vec::new();
    let mut seed = 100;
    for (n_in, n_out) in [(3, 2), (8, 8), (10, 2), (5, 4)] {
        for gamma in [0.02, 0.3, 1.0] {
            for sign in [Sign::Positive, Sign::Negative, Sign::Mixed] {
                for labelled in [false, true] {
                    seed += 1;
                    let name =
                        format!("{n_in}x{n_out} gamma {gamma} {sign:?} alpha, labelled {labelled}");
                    out.push((
                        name,
                        random_case(n_in, n_out, gamma, sign, labelled, 20, seed),
                    ));
                }
            }
        }
        // Oja's rule and the clipped rule (saturated in places) in the single layer.
        for rule in [Rule::Oja, Rule::Clipped] {
            for gamma in [0.3, 1.0] {
                for labelled in [false, true] {
                    seed += 1;
                    let name = format!("{rule} {n_in}x{n_out} gamma {gamma}, labelled {labelled}");
                    out.push((
                        name,
                        ruled_case(rule, n_in, n_out, gamma, Sign::Mixed, labelled, 20, seed),
                    ));
                }
            }
        }
    }
    out
}

/// Modulated layers with random parameters, the modulator's weights included (so that `M(t)`
/// couples the outputs): each rule with a modulated rate, and retroactive modulation.
fn modulated_cases() -> Vec<(String, Case)> {
    let mut out = Vec::new();
    let mut seed = 500;
    for (n_in, n_out) in [(3, 2), (8, 8), (5, 4)] {
        for (rule, modulation) in [
            (Rule::Hebb, Modulation::Simple),
            (Rule::Oja, Modulation::Simple),
            (Rule::Clipped, Modulation::Simple),
            (Rule::Clipped, Modulation::Retroactive),
        ] {
            for labelled in [false, true] {
                seed += 1;
                let mut case = ruled_case(rule, n_in, n_out, 0.3, Sign::Mixed, labelled, 20, seed);
                let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
                let mut normal = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
                case.params.modulation = modulation;
                // M(t) mostly positive: with a negative rate the decaying traces grow at
                // (1 - M) per step, and Ridders' first steps (0.1) no longer see a smooth loss.
                case.params.w_m = Some((0..n_out).map(|_| normal(0.5)).collect());
                case.params.b_m = Some(vec![0.3 + normal(0.1)]);
                let name =
                    format!("{rule}, {modulation} modulation, {n_in}x{n_out}, labelled {labelled}");
                out.push((name, case));
            }
        }
    }
    out
}

/// A modulated layer's gradients agree on every engine at random parameters: autodiff and the
/// fused engine (f64 to 1e-10, f32 to its own tolerance) with the forward-mode recursion (which
/// `the_analytic_recursion_equals_finite_differences_on_random_networks` checks against finite
/// differences); the modulator's `M(t)` varies and some retroactive
/// or clipped traces saturate (so that both branches are exercised).
#[test]
fn a_modulated_layer_agrees_on_every_engine_at_random_parameters() {
    let tol = Tolerances::for_precision(Precision::F64);
    let tol32 = Tolerances::for_precision(Precision::F32);
    let mut saturated = 0;
    for (name, case) in modulated_cases() {
        let analytic = evaluate(&case.params, &case.batch, Variant::Correct, true);
        let m = &analytic.traces[0].m;
        let spread = m.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b))
            - m.iter().fold(f64::INFINITY, |a, &b| a.min(b));
        assert!(spread > 1e-2, "{name}: M(t) spans only {spread}");
        if case.params.rule.rule == Rule::Clipped
            && analytic
                .traces
                .iter()
                .any(|t| t.h.iter().flatten().any(|h| h.abs() >= CLIP))
        {
            saturated += 1;
        }
        let floor64 = floor(analytic.loss, tol.autodiff_floor);
        let (loss, ad) = autodiff_grads(&case, Backend::Ndarray);
        assert!(
            (loss - analytic.loss).abs() <= 1e-12 * loss.abs().max(1.0),
            "{name}: loss"
        );
        let (_, fused) = bohp::engines::layer_fused::evaluate::<f64>(&case.params, &case.batch);
        let (_, fused32) = bohp::engines::layer_fused::evaluate::<f32>(&case.params, &case.batch);
        for (what, grads, limit, fl) in [
            ("autodiff", &ad, tol.autodiff_vs_reference, floor64),
            ("fused f64", &fused, tol.autodiff_vs_reference, floor64),
            (
                "fused f32",
                &fused32,
                tol32.autodiff_vs_reference,
                floor(analytic.loss, tol32.autodiff_floor),
            ),
        ] {
            let rows = agreement(grads, &analytic.grads, fl);
            assert!(
                rows.iter().any(|r| r.group == "w_m") && rows.iter().any(|r| r.group == "b_m"),
                "{name}: {rows:?}"
            );
            let worst = worst_relative(&rows);
            assert!(worst <= limit, "{name}, {what}: {worst:e}: {rows:?}");
        }
    }
    assert!(saturated >= 3, "only {saturated} clipped cases saturate");
}

/// The fraction of the clipped rule's trace entries at the bound, over the episode.
fn saturated_fraction(case: &Case) -> f64 {
    let traced = evaluate(&case.params, &case.batch, Variant::Correct, true);
    let all: Vec<f64> = traced
        .traces
        .iter()
        .flat_map(|t| t.h.iter().flatten().copied())
        .collect();
    all.iter().filter(|h| h.abs() >= CLIP).count() as f64 / all.len() as f64
}

#[test]
fn the_clipped_cases_saturate_some_traces() {
    for (name, case) in cases()
        .iter()
        .filter(|(_, c)| c.params.rule.rule == Rule::Clipped)
    {
        let f = saturated_fraction(case);
        assert!(
            f > 0.01 && f < 0.99,
            "{name}: {f} of the trace entries at the clip"
        );
    }
}

#[test]
fn autodiff_equals_the_analytic_recursion_on_random_networks() {
    let tol = Tolerances::for_precision(Precision::F64);
    for (name, case) in cases() {
        let (loss, ad) = autodiff_grads(&case, Backend::Ndarray);
        let analytic = evaluate(&case.params, &case.batch, Variant::Correct, false);
        assert!(
            (loss - analytic.loss).abs() <= 1e-12 * loss.abs().max(1.0),
            "{name}: loss {loss} vs {}",
            analytic.loss
        );
        let rows = agreement(
            &ad,
            &analytic.grads,
            floor(analytic.loss, tol.autodiff_floor),
        );
        let worst = worst_relative(&rows);
        assert!(
            worst <= tol.autodiff_vs_reference,
            "{name}: max relative error {worst:e}: {rows:?}"
        );
        assert!(
            rows.iter().all(|r| r.cosine > 1.0 - 1e-12),
            "{name}: {rows:?}"
        );
    }
}

#[test]
fn the_analytic_recursion_equals_finite_differences_on_random_networks() {
    let modulated = modulated_cases().into_iter().step_by(3);
    for (name, case) in cases().into_iter().step_by(3).chain(modulated) {
        let tol = Tolerances::for_rule(Precision::F64, &case.params.rule);
        let analytic = evaluate(&case.params, &case.batch, Variant::Correct, false);
        let fd = finite_differences(&case.params, &case.batch);
        let rows = agreement(
            &analytic.grads,
            &fd,
            floor(analytic.loss, tol.finite_difference_floor),
        );
        let worst = worst_relative(&rows);
        assert!(
            worst <= tol.reference_vs_finite_differences,
            "{name}: max relative error {worst:e}: {rows:?}"
        );
        let left_out: usize = rows.iter().map(|r| r.unresolved).sum();
        let count: usize = rows.iter().map(|r| r.count).sum();
        let clipped = case.params.rule.rule == Rule::Clipped;
        assert!(
            if clipped {
                10 * left_out <= count
            } else {
                left_out == 0
            },
            "{name}: {left_out} of {count} unresolved"
        );
    }
}

#[test]
fn long_episodes_of_1000_steps_agree() {
    let tol = Tolerances::for_precision(Precision::F64);
    for (labelled, sign) in [(true, Sign::Mixed), (false, Sign::Negative)] {
        let case = random_case(6, 3, 0.05, sign, labelled, 1000, 7);
        let (_, ad) = autodiff_grads(&case, Backend::Flex);
        let analytic = evaluate(&case.params, &case.batch, Variant::Correct, false);
        let rows = agreement(
            &ad,
            &analytic.grads,
            floor(analytic.loss, tol.autodiff_floor),
        );
        assert!(
            worst_relative(&rows) <= tol.autodiff_vs_reference,
            "{rows:?}"
        );
        let fd = finite_differences(&case.params, &case.batch);
        let rows = agreement(
            &analytic.grads,
            &fd,
            floor(analytic.loss, tol.finite_difference_floor),
        );
        assert!(
            worst_relative(&rows) <= tol.reference_vs_finite_differences,
            "{rows:?}"
        );
    }
}

#[test]
fn every_task_passes_the_check_in_f64_including_1000_step_episodes() {
    for (name, steps) in [
        ("completion", None),
        ("one-shot", None),
        ("reversal", None),
        ("one-shot", Some(1000)),
        ("reversal", Some(1000)),
    ] {
        let mut config = shipped_config(name);
        config.dtype = Precision::F64;
        config.task.steps = steps.or(config.task.steps);
        let options = options(true, Recursion::Correct);
        let (report, _) = check(&config, options).unwrap();
        assert!(
            report.passed,
            "{name} ({steps:?} steps):\n{}",
            report.table()
        );
        assert!(report.comparison("autodiff vs analytic").unwrap().worst() <= 1e-10);
        assert!(report.comparison("fused vs analytic").unwrap().worst() <= 1e-10);
    }
}

/// A shipped single-layer config with another rule, in f64.
fn with_rule(name: &str, rule: Rule, clip: Option<f64>) -> bohp::single::config::SingleLayerConfig {
    let mut config = shipped_config(name);
    config.dtype = Precision::F64;
    config.model.rule = rule;
    config.model.clip = clip;
    config.validate("test").unwrap();
    config
}

/// Every rule the single-layer configs allow passes the check (autodiff and finite
/// differences against the recursion), the clipped rule with saturated traces.
#[test]
fn every_rule_passes_the_single_layer_check() {
    for name in ["completion", "one-shot"] {
        for (rule, clip) in [
            (Rule::Oja, None),
            (Rule::Clipped, Some(0.01)),
            (Rule::Clipped, None),
        ] {
            let options = options(true, Recursion::Correct);
            let (report, _) = check(&with_rule(name, rule, clip), options).unwrap();
            assert!(report.passed, "{name} {rule} {clip:?}:\n{}", report.table());
        }
    }
}

/// Each injected mistake is reported far above the tolerance, on the rule it concerns.
#[test]
fn the_single_layer_check_catches_each_injected_mistake() {
    let tol = Tolerances::for_precision(Precision::F64);
    let cases = [
        (Rule::Hebb, None, Recursion::NewTrace),
        (Rule::Hebb, None, Recursion::Fault(Fault::RateOnOldTrace)),
        (Rule::Oja, None, Recursion::Fault(Fault::OjaDecayDropped)),
        (
            Rule::Clipped,
            Some(0.01),
            Recursion::Fault(Fault::GradientThroughClip),
        ),
    ];
    for name in ["completion", "one-shot"] {
        for (rule, clip, recursion) in cases {
            if name == "completion" && rule == Rule::Oja {
                // Completion's trace is updated once from H(0) = 0 before it is read: Oja's
                // decay term (-γ·H·y²) is 0 there, so dropping it changes nothing.
                continue;
            }
            let options = options(true, recursion);
            // γ ≠ 0.5: at 0.5 the rate on the old trace and on the new product coincide.
            let mut config = with_rule(name, rule, clip);
            config.model.gamma = 0.3;
            let (report, _) = check(&config, options).unwrap();
            assert!(
                !report.passed,
                "{name} {rule} {}:\n{}",
                recursion.name(),
                report.table()
            );
            let worst = report.comparison("autodiff vs analytic").unwrap().worst();
            assert!(
                worst > 1e4 * tol.autodiff_vs_reference && worst > 1e-4,
                "{name} {rule} {}: only {worst:e}",
                recursion.name()
            );
            let fd = report
                .comparison("analytic vs central finite differences")
                .unwrap()
                .worst();
            assert!(
                fd > 1e2 * tol.reference_vs_finite_differences,
                "{name} {rule} {}: finite differences only {fd:e}",
                recursion.name()
            );
        }
    }
}

/// With `plasticity = "none"` α is not a parameter: the check passes and does not compare it.
#[test]
fn the_check_passes_without_plasticity_and_leaves_alpha_out() {
    for name in ["completion", "one-shot"] {
        let mut config = shipped_config(name);
        config.dtype = Precision::F64;
        config.model.plasticity = bohp::single::config::Plasticity::None;
        let options = options(true, Recursion::Correct);
        let (report, _) = check(&config, options).unwrap();
        assert!(report.passed, "{name}:\n{}", report.table());
        for c in &report.comparisons {
            assert!(
                c.rows.iter().all(|r| r.group != "alpha") && c.rows.iter().any(|r| r.group == "w"),
                "{name}: {:?}",
                c.rows
            );
        }
    }
}

#[test]
fn the_checker_catches_the_papers_weighting_and_the_double_tanh() {
    let tol = Tolerances::for_precision(Precision::F64);
    for (name, case) in cases()
        .into_iter()
        .filter(|(_, c)| c.params.gamma != 1.0 && c.params.rule.rule == Rule::Hebb)
        .step_by(4)
    {
        let (_, ad) = autodiff_grads(&case, Backend::Ndarray);
        for variant in [
            Variant::PaperWeighting,
            Variant::DoubleTanh,
            Variant::NewTrace,
        ] {
            let wrong = evaluate(&case.params, &case.batch, variant, false);
            let rows = agreement(&ad, &wrong.grads, floor(wrong.loss, tol.autodiff_floor));
            let worst = worst_relative(&rows);
            assert!(
                worst > 1e4 * tol.autodiff_vs_reference && worst > 1e-3,
                "{name}, {variant:?}: only {worst:e}"
            );
        }
        let faulty = Faulty {
            spec: case.params.rule,
            fault: Fault::RateOnOldTrace,
        };
        let retro = Retroactive {
            bound: case.params.rule.clip,
        };
        let wrong = evaluate_with(
            &faulty,
            &retro,
            &case.params,
            &case.batch,
            Variant::Correct,
            false,
        );
        let worst = worst_relative(&agreement(
            &ad,
            &wrong.grads,
            floor(wrong.loss, tol.autodiff_floor),
        ));
        assert!(
            worst > 1e4 * tol.autodiff_vs_reference && worst > 1e-3,
            "{name}, rate on the old trace: only {worst:e}"
        );
    }
    // And on the paper's one-shot task with its own parameters.
    let config = shipped_config("one-shot");
    let device = init_device(Backend::Ndarray, Precision::F64)
        .unwrap()
        .autodiff();
    let mut c = config.clone();
    c.dtype = Precision::F64;
    let model = bohp::single::train::init_model(&c, &device);
    let params = bohp_gradcheck::compare::params_of(&model);
    let task = c.task();
    let batch = task.generate(1, bohp::rng::Stream::Eval, 0, 4);
    let (_, ad) = autodiff(&model, &task, &batch, &device);
    for variant in [Variant::PaperWeighting, Variant::DoubleTanh] {
        let wrong = evaluate(&params, &batch, variant, false);
        let worst = worst_relative(&agreement(
            &ad,
            &wrong.grads,
            floor(wrong.loss, tol.autodiff_floor),
        ));
        assert!(worst > 1e-3, "one-shot, {variant:?}: only {worst:e}");
    }
}

mod cli;
