//! The recurrent gradient checks through `bohp gradcheck` and `bohp_gradcheck`: every rule, each
//! injected mistake caught, the LSTM baseline against finite differences, the fused engine
//! with a modulator against RTRL.

use super::*;

/// A small recurrent config (8 neurons, 46 steps) in f64, with `model` lines added.
fn small_recurrent(model: &str) -> RecurrentConfig {
    let text = format!(
        "seed = 2\ndtype = \"f64\"\ndevice = \"ndarray\"\n[task]\nkind = \"memorisation\"\nsize = 8\nitems = 2\ninput_gain = 1.0\n\
         [model]\ninit_std = 0.3\ninit_eta = 0.2\n{model}\n[train]\nepisodes = 10\nlearning_rate = 0.001\n"
    );
    RecurrentConfig::parse(&text, Path::new("small.toml")).unwrap()
}

fn recurrent_check(
    config: &RecurrentConfig,
    recursion: Recursion,
) -> bohp_gradcheck::check::Report {
    let options = CheckOptions {
        episodes: 2,
        finite_differences: true,
        dump: false,
        recursion,
    };
    check_recurrent(config, options).unwrap().0
}

/// Every rule × α shape × plasticity the recurrent configs allow passes the check: autodiff and
/// the fused engine against RTRL to 1e-10, RTRL against finite differences to 1e-6.
#[test]
fn every_rule_passes_the_recurrent_check() {
    for model in [
        "rule = \"hebb\"",
        "rule = \"oja\"",
        "rule = \"clipped\"\nclip = 0.05",
        "rule = \"clipped\"",
        "alpha = \"shared\"",
        "rule = \"oja\"\nalpha = \"shared\"",
        "plasticity = \"none\"",
    ] {
        let report = recurrent_check(&small_recurrent(model), Recursion::Correct);
        assert!(report.passed, "{model}:\n{}", report.table());
        let names: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "autodiff vs rtrl",
                "fused vs rtrl",
                "rtrl vs central finite differences"
            ],
            "{model}"
        );
        let groups: Vec<&str> = report.comparisons[0]
            .rows
            .iter()
            .map(|r| r.group.as_str())
            .collect();
        let expected: &[&str] = if model.contains("none") {
            &["w"]
        } else {
            &["w", "alpha", "eta"]
        };
        assert_eq!(
            groups, expected,
            "{model}: α and η are compared only when trained"
        );
    }
}

/// Each injected mistake makes the recurrent check fail far above its tolerance.
#[test]
fn the_recurrent_check_catches_each_injected_mistake() {
    let tol = bohp_gradcheck::check::Tolerances::for_precision(Precision::F64);
    for (model, recursion) in [
        ("rule = \"hebb\"", Recursion::NewTrace),
        ("rule = \"hebb\"", Recursion::Fault(Fault::RateOnOldTrace)),
        ("rule = \"oja\"", Recursion::Fault(Fault::OjaDecayDropped)),
        (
            "rule = \"clipped\"\nclip = 0.05",
            Recursion::Fault(Fault::GradientThroughClip),
        ),
    ] {
        let report = recurrent_check(&small_recurrent(model), recursion);
        assert!(
            !report.passed,
            "{model} {}:\n{}",
            recursion.name(),
            report.table()
        );
        let worst = report.comparison("autodiff vs rtrl").unwrap().worst();
        assert!(
            worst > 1e4 * tol.autodiff_vs_reference && worst > 1e-4,
            "{model} {}: only {worst:e}",
            recursion.name()
        );
    }
}

/// Oja and clipped Hebb train the recurrent network with both engines alike (f64).
#[test]
fn every_rule_trains_the_recurrent_network_with_both_engines_alike() {
    for model in ["rule = \"oja\"", "rule = \"clipped\"\nclip = 0.05"] {
        engines_agree(model, small_recurrent(model));
    }
}

/// `bohp gradcheck` on the shipped 50-bit configs, plastic and not, in f64 with a dump: the
/// dump says what produced it, and its outputs, traces and loss recompute from the JSON alone.
#[test]
fn gradcheck_cli_checks_recurrent_configs_and_dumps_them() {
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    for name in ["memorisation-50", "memorisation-50-nonplastic"] {
        let file = dir.path().join(format!("{name}.json"));
        let config = repo_root().join("configs").join(format!("{name}.toml"));
        crate::common::gradcheck_passes_with_dump(config.to_str().unwrap(), 1, &file);
        let d: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(d["schema"], "bohp-gradcheck-dump/5");
        let plastic = name == "memorisation-50";
        let by = &d["produced_by"];
        for (key, expected) in [
            ("family", "recurrent"),
            ("rule", "hebb"),
            ("dtype", "f64"),
            ("device", "flex"),
            ("reference", "rtrl"),
            ("plasticity", if plastic { "learned" } else { "none" }),
        ] {
            assert_eq!(by[key], expected, "{name}: {key}");
        }
        assert_eq!(by["seed"], 1);
        assert_eq!(by["tolerances"]["engine_vs_reference"], 1e-10);
        let arr = |v: &Value| -> Vec<f64> {
            v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let n = d["parameters"]["w"]["shape"][0].as_u64().unwrap() as usize;
        let steps = d["inputs"]["shape"][0].as_u64().unwrap() as usize;
        let (w, alpha, eta, u) = (
            arr(&d["parameters"]["w"]),
            arr(&d["parameters"]["alpha"]),
            arr(&d["parameters"]["eta"])[0],
            arr(&d["inputs"]),
        );
        // The forward pass from the documented equations (no clamp in this task; Hebb).
        assert!(d.get("clamp").is_none());
        let (mut y, mut h) = (vec![0.0; n], vec![0.0; n * n]);
        let (outputs, traces) = (arr(&d["outputs"]), arr(&d["traces"]));
        for t in 0..steps {
            let a = |i: usize, j: usize| {
                if alpha.len() == 1 {
                    alpha[0]
                } else {
                    alpha[i * n + j]
                }
            };
            let y_new: Vec<f64> = (0..n)
                .map(|j| {
                    (u[t * n + j]
                        + (0..n)
                            .map(|i| y[i] * (w[i * n + j] + a(i, j) * h[i * n + j]))
                            .sum::<f64>())
                    .tanh()
                })
                .collect();
            if plastic {
                for i in 0..n {
                    for j in 0..n {
                        h[i * n + j] = (1.0 - eta) * h[i * n + j] + eta * y[i] * y_new[j];
                    }
                }
            }
            y = y_new;
            assert!(
                y.iter()
                    .zip(&outputs[t * n..(t + 1) * n])
                    .all(|(a, b)| (a - b).abs() < 1e-12),
                "{name}: outputs at step {t}"
            );
            assert!(
                h.iter()
                    .zip(&traces[t * n * n..(t + 1) * n * n])
                    .all(|(a, b)| (a - b).abs() < 1e-12),
                "{name}: traces at step {t}"
            );
        }
        let targets: Vec<f64> = d["targets"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let loss: f64 = targets
            .iter()
            .enumerate()
            .map(|(j, t)| (y[j] - t).powi(2))
            .sum();
        assert!(
            (loss - d["loss"].as_f64().unwrap()).abs() < 1e-10,
            "{name}: loss"
        );
        // Every method's dL/dW agrees where finite differences were taken.
        let fd = &d["gradients"]["finite_differences"]["w"];
        let idx: Vec<usize> = fd["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let fd_values = arr(fd);
        for method in ["rtrl", "autodiff", "fused"] {
            let g = arr(&d["gradients"][method]["w"]);
            for (k, &i) in idx.iter().enumerate() {
                assert!(
                    (g[i] - fd_values[k]).abs() <= 1e-6 * g[i].abs().max(1.0),
                    "{name} {method} w[{i}]: {} vs {}",
                    g[i],
                    fd_values[k]
                );
            }
        }
        let has_alpha = d["gradients"]["autodiff"].get("alpha").is_some();
        assert_eq!(
            has_alpha, plastic,
            "{name}: α's gradient is dumped only when α is trained"
        );
    }
    // The LSTM has no hand-derived gradient: checked against finite differences, which need
    // f64 (its config's f32 is refused with the reason).
    let lstm = repo_root().join("configs/memorisation-50-lstm.toml");
    let out = run_bohp(&["gradcheck", lstm.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("model.kind = \"lstm\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bohp(&["gradcheck", lstm.to_str().unwrap(), "--dtype", "f64"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("readout.weight") && stdout.contains("PASSED"),
        "{stdout}"
    );
}

/// The LSTM baseline's check: autodiff agrees with finite differences of its training loss on
/// every parameter group (each gate's input and hidden transforms and biases, the readout), to
/// 1e-6; what it cannot do is refused with the reason.
#[test]
fn gradcheck_checks_the_lstm_baseline_against_finite_differences() {
    let text = "seed = 3\ndtype = \"f64\"\n[task]\nkind = \"memorisation\"\nsize = 6\nitems = 2\n\
                [model]\nkind = \"lstm\"\nlstm_hidden = 4\n\
                [train]\nengine = \"autodiff\"\nepisodes = 1\nlearning_rate = 0.001\n";
    let config = RecurrentConfig::parse(text, Path::new("lstm.toml")).unwrap();
    config.validate("lstm.toml").unwrap();
    let options = CheckOptions {
        episodes: 2,
        finite_differences: true,
        dump: false,
        recursion: Recursion::Correct,
    };
    let report = check_any(&AnyConfig::Recurrent(config.clone()), options)
        .unwrap()
        .0;
    assert!(report.passed, "{}", report.table());
    let fd = report
        .comparison("autodiff vs central finite differences")
        .unwrap();
    // 4 gates x (input, hidden) x (weight, bias) + the readout's weight and bias.
    assert_eq!(fd.rows.len(), 18, "{}", report.table());
    assert!(fd.rows.iter().all(|r| r.count > 0 && r.cosine > 0.999999));
    assert!(fd.worst() < 1e-6, "{}", report.table());
    // Refused: an injected recursion (there is none), f32, no finite differences, a dump.
    let refused = |config: &RecurrentConfig, options: CheckOptions, says: &str| {
        let err = check_any(&AnyConfig::Recurrent(config.clone()), options)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says) && err.contains("lstm"), "{err}");
    };
    refused(
        &config,
        CheckOptions {
            recursion: Recursion::NewTrace,
            ..options
        },
        "new-trace",
    );
    refused(
        &config,
        CheckOptions {
            finite_differences: false,
            ..options
        },
        "--no-finite-differences",
    );
    refused(
        &config,
        CheckOptions {
            dump: true,
            ..options
        },
        "--dump",
    );
    let mut f32_config = config.clone();
    f32_config.dtype = Precision::F32;
    refused(&f32_config, options, "--dtype f64");
}

/// The fused engine runs a modulator (simple: `M(t)` as any rule's rate; retroactive: `E`
/// beside `H`) with the gradients RTRL derives, for every checkpoint interval, and its forward
/// pass gives the same last step.
#[test]
fn the_fused_engine_runs_a_modulator_as_rtrl_does() {
    use bohp::engines::fused::HostModulator;
    use bohp::rules::Modulation;
    let cases = [
        (Modulation::Simple, Rule::Hebb, false, false),
        (Modulation::Simple, Rule::Oja, true, false),
        (Modulation::Simple, Rule::Clipped, false, true),
        (Modulation::Retroactive, Rule::Clipped, false, false),
        (Modulation::Retroactive, Rule::Clipped, true, true),
    ];
    for (k, &(modulation, rule, shared, clamp)) in cases.iter().enumerate() {
        let mut c = case(7, 40, rule, shared, clamp, true, 70 + k as u64);
        let n = c.net.n;
        let mut rng = ChaCha8Rng::seed_from_u64(90 + k as u64);
        c.net.modulator = Some(HostModulator {
            modulation,
            w: (0..n)
                .map(|_| 1.5 * rng.sample::<f64, _>(StandardNormal) / (n as f64).sqrt())
                .collect(),
            b: 0.3,
        });
        let what = format!("{modulation} {rule} shared={shared} clamp={clamp}");
        let (loss_r, rtrl) = rtrl_grads(&c.net, &c.episodes());
        let scale = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(
            scale(&rtrl.modulator.0) > 1e-6 && rtrl.modulator.1.abs() > 1e-9,
            "{what}: the modulator's gradient must not vanish"
        );
        for interval in [None, Some(1), Some(3), Some(500)] {
            let pass = c.net.loss_and_grads(&c.episodes(), interval);
            assert!(
                (pass.loss - loss_r).abs() <= 1e-12 * loss_r.max(1.0),
                "{what}"
            );
            let what = format!("{what} K={interval:?}");
            assert_close(&what, &pass.grads, &rtrl, 1e-10);
            let (a, b) = (&pass.grads.modulator, &rtrl.modulator);
            let diff =
                a.0.iter()
                    .zip(&b.0)
                    .fold((a.1 - b.1).abs(), |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-10 * scale(&b.0).max(b.1.abs()),
                "{what}: modulator gradients differ by {diff:e}"
            );
        }
        let ys = c.net.forward(&c.episodes());
        let pass = c.net.loss_and_grads(&c.episodes(), None);
        assert_eq!(
            &ys[(c.steps - 1) * c.batch * n..],
            &pass.y_last[..],
            "{what}"
        );
    }
}

/// Above RTRL's size (64 neurons) the fused engine is the reference, for a modulated network
/// too; a mistake it cannot carry (`new-trace`, a modulated rule's fault) is refused, not
/// silently checked as the right recursion.
#[test]
fn above_rtrl_the_fused_engine_is_the_reference_and_rtrl_mistakes_are_refused() {
    let text = |model: &str| {
        format!(
            "seed = 2\ndtype = \"f64\"\n[task]\nkind = \"memorisation\"\nsize = 70\nitems = 2\n\
             [model]\n{model}\n[train]\nengine = \"autodiff\"\nepisodes = 1\nlearning_rate = 0.001\n"
        )
    };
    let options = |recursion| CheckOptions {
        episodes: 1,
        finite_differences: false,
        dump: false,
        recursion,
    };
    let retro = RecurrentConfig::parse(
        &text("rule = \"clipped\"\nmodulation = \"retroactive\""),
        Path::new("r.toml"),
    )
    .unwrap();
    let report = check_any(
        &AnyConfig::Recurrent(retro.clone()),
        options(Recursion::Correct),
    )
    .unwrap()
    .0;
    assert!(
        report.passed && report.checked.reference == "fused",
        "{}",
        report.table()
    );
    let groups: Vec<&str> = report.comparisons[0]
        .rows
        .iter()
        .map(|r| r.group.as_str())
        .collect();
    assert_eq!(groups, ["w", "alpha", "eta", "w_m", "b_m"]);
    for recursion in [
        Recursion::NewTrace,
        Recursion::Fault(Fault::EligibilityFirst),
        Recursion::Fault(Fault::GradientThroughClip),
    ] {
        let err = check_any(&AnyConfig::Recurrent(retro.clone()), options(recursion))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(recursion.name()) && err.contains("64 neurons"),
            "{err}"
        );
    }
    let plain = RecurrentConfig::parse(&text("rule = \"hebb\""), Path::new("p.toml")).unwrap();
    let err = check_any(&AnyConfig::Recurrent(plain), options(Recursion::NewTrace))
        .unwrap_err()
        .to_string();
    assert!(err.contains("new-trace"), "{err}");
}
