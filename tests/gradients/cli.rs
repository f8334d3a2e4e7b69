//! The single layer's gradient checks through the CLI and in training: gradcheck on every
//! backend, the analytic and autodiff engines training alike, the dump recomputed from its
//! JSON alone, training with host gradients.

use super::*;

/// The check passes on every backend and precision, f32 with its own tolerance.
fn gradcheck_passes(backend: Backend, precision: Precision) {
    for name in ["completion", "one-shot", "reversal"] {
        let mut config = shipped_config(name);
        config.device = backend;
        config.dtype = precision;
        let options = options(false, Recursion::Correct);
        let (report, _) = check(&config, options).unwrap();
        assert!(
            report.passed,
            "{name} on {backend} {precision}:\n{}",
            report.table()
        );
    }
}

backend_matrix! {
    gradcheck => gradcheck_passes,
}

#[test]
fn training_with_analytic_gradients_equals_autodiff_training_in_f64() {
    for name in ["completion", "one-shot", "reversal"] {
        let mut config = budget_config(name, 100, 0, Backend::Ndarray, Precision::F64);
        config.train.batch = 4;
        train_both_engines(name, config);
    }
}

/// Oja's rule and the clipped rule train in the single layer with both engines, to the same
/// parameters, and the loss goes down.
#[test]
fn every_rule_trains_the_single_layer_with_both_engines_alike() {
    for (rule, clip) in [(Rule::Oja, None), (Rule::Clipped, Some(0.05))] {
        for name in ["completion", "one-shot"] {
            let mut config = budget_config(name, 60, 0, Backend::Ndarray, Precision::F64);
            config.train.batch = 8;
            config.model.rule = rule;
            config.model.clip = clip;
            config.validate("test").unwrap();
            let rows_ad = train_both_engines(&format!("{rule} {name}"), config);
            if name == "completion" {
                // Completion learns within these 60 updates (one-shot needs thousands).
                let mean = |rows: &[bohp::run::MetricsRow]| {
                    rows.iter().map(|r| r.loss).sum::<f64>() / rows.len() as f64
                };
                let (first, last) = (mean(&rows_ad[..10]), mean(&rows_ad[50..]));
                assert!(last < 0.9 * first, "{rule} {name}: loss {first} -> {last}");
            }
        }
    }
}

#[test]
fn gradcheck_cli_passes_fails_on_the_errata_and_rejects_bad_input() {
    use crate::common::{run_bohp, shipped_config_path};
    let config = shipped_config_path("one-shot");
    let config = config.to_str().unwrap();
    let out = run_bohp(&["gradcheck", config, "--dtype", "f64"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASSED") && !stdout.contains("MISMATCH"),
        "{stdout}"
    );
    for wrong in [
        "paper-weighting",
        "double-tanh",
        "new-trace",
        "rate-on-old-trace",
    ] {
        let out = run_bohp(&["gradcheck", config, "--dtype", "f64", "--recursion", wrong]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("MISMATCH") && stdout.contains("FAILED"),
            "{stdout}"
        );
    }
    let out = run_bohp(&["gradcheck", config, "--steps", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("task.steps"));
    let out = run_bohp(&["gradcheck", config, "--recursion", "wrong"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown recursion"));
}

/// The dump holds everything needed to recompute the episode elsewhere: this recomputes the
/// forward pass, the loss and (by finite differences of that independent forward pass) a
/// gradient from the JSON alone, following the schema in docs/gradients.md.
#[test]
fn the_dump_recomputes_from_its_json_alone() {
    use crate::common::{run_bohp, shipped_config_path};
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    for task in ["one-shot", "completion"] {
        let file = dir.path().join(format!("{task}.json"));
        let config = shipped_config_path(task);
        let out = run_bohp(&[
            "gradcheck",
            config.to_str().unwrap(),
            "--dtype",
            "f64",
            "--dump",
            file.to_str().unwrap(),
        ]);
        crate::common::assert_success(&out);
        let d: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(d["schema"], "bohp-gradcheck-dump/5");
        for (key, expected) in [
            ("family", "single-layer"),
            ("rule", "hebb"),
            ("dtype", "f64"),
            ("reference", "analytic"),
            ("recursion", "correct"),
        ] {
            assert_eq!(d["produced_by"][key], expected, "{key}");
        }
        assert_eq!(d["produced_by"]["seed"], 1);
        assert_eq!(
            d["produced_by"]["tolerances"]["autodiff_vs_reference"],
            1e-10
        );
        let arr = |v: &Value| -> (Vec<usize>, Vec<f64>) {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let values = v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (shape, values)
        };
        let (wshape, w) = arr(&d["parameters"]["w"]);
        let (_, alpha) = arr(&d["parameters"]["alpha"]);
        let (_, b) = arr(&d["parameters"]["b"]);
        let (xshape, x) = arr(&d["inputs"]);
        let gamma = d["gamma"].as_f64().unwrap();
        let (n_in, n_out, steps) = (wshape[0], wshape[1], xshape[0]);
        // Independent forward pass, straight from the documented equations.
        let forward = |w: &[f64]| -> (Vec<Vec<f64>>, Vec<f64>) {
            let mut h = vec![0.0; n_in * n_out];
            let mut ys = Vec::new();
            for t in 0..steps {
                let xt = &x[t * n_in..(t + 1) * n_in];
                let y: Vec<f64> = (0..n_out)
                    .map(|j| {
                        (b[j]
                            + (0..n_in)
                                .map(|k| {
                                    (w[k * n_out + j] + alpha[k * n_out + j] * h[k * n_out + j])
                                        * xt[k]
                                })
                                .sum::<f64>())
                        .tanh()
                    })
                    .collect();
                for k in 0..n_in {
                    for j in 0..n_out {
                        h[k * n_out + j] = (1.0 - gamma) * h[k * n_out + j] + gamma * xt[k] * y[j];
                    }
                }
                ys.push(y);
            }
            (ys, h)
        };
        let loss_of = |w: &[f64]| -> f64 {
            let (ys, _) = forward(w);
            match d["targets"]["kind"].as_str().unwrap() {
                "pattern" => {
                    let target: Vec<f64> = d["targets"]["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    ys[steps - 1]
                        .iter()
                        .zip(&target)
                        .map(|(y, p)| (y - p).powi(2))
                        .sum()
                }
                _ => {
                    let (_, v) = arr(&d["parameters"]["readout.v"]);
                    let (_, c) = arr(&d["parameters"]["readout.c"]);
                    let classes: Vec<usize> = d["targets"]["classes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap() as usize)
                        .collect();
                    let scored: Vec<bool> = d["targets"]["scored"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_bool().unwrap())
                        .collect();
                    let mut total = 0.0;
                    for t in (0..steps).filter(|t| scored[*t]) {
                        let z: Vec<f64> = (0..2)
                            .map(|m| {
                                c[m] + (0..n_out).map(|j| ys[t][j] * v[j * 2 + m]).sum::<f64>()
                            })
                            .collect();
                        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
                        total += lse - z[classes[t]];
                    }
                    total / scored.iter().filter(|s| **s).count() as f64
                }
            }
        };
        let (ys, h_last) = forward(&w);
        let (_, outputs) = arr(&d["outputs"]);
        let (_, traces) = arr(&d["traces"]);
        let flat: Vec<f64> = ys.concat();
        assert!(
            flat.iter()
                .zip(&outputs)
                .all(|(a, b)| (a - b).abs() < 1e-12),
            "{task}: outputs"
        );
        let last = &traces[(steps - 1) * n_in * n_out..];
        assert!(
            h_last.iter().zip(last).all(|(a, b)| (a - b).abs() < 1e-12),
            "{task}: traces"
        );
        let loss = d["loss"].as_f64().unwrap();
        assert!(
            (loss_of(&w) - loss).abs() < 1e-12,
            "{task}: loss {loss} vs {}",
            loss_of(&w)
        );
        // dL/dw_00 by a central difference of this independent forward pass.
        let h = 1e-5;
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[0] += h;
        wm[0] -= h;
        let fd = (loss_of(&wp) - loss_of(&wm)) / (2.0 * h);
        for method in ["analytic", "autodiff", "finite_differences"] {
            let (_, g) = arr(&d["gradients"][method]["w"]);
            assert!(
                (g[0] - fd).abs() < 1e-7 * fd.abs().max(1.0),
                "{task} {method}: {} vs {fd}",
                g[0]
            );
        }
    }
}

#[test]
fn train_with_host_gradients_from_the_cli() {
    use crate::common::{run_bohp, shipped_config_path};
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_path("completion");
    let mut summaries = Vec::new();
    for grad in ["autodiff", "analytic", "fused"] {
        let run = dir.path().join(grad);
        let out = run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--episodes",
            "600",
            "--dtype",
            "f64",
            "--engine",
            grad,
            "--out",
            run.to_str().unwrap(),
            "-q",
        ]);
        crate::common::assert_success(&out);
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(config.contains(&format!("engine = \"{grad}\"")), "{config}");
        summaries.push(crate::common::final_parameters(&run));
    }
    // 600 updates of the three engines' gradients land on the same parameters.
    for other in &summaries[1..] {
        for ((name, a), (_, b)) in summaries[0].iter().zip(other) {
            assert!(
                a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9),
                "{name}: {a:?} vs {b:?}"
            );
        }
    }
    let out = run_bohp(&["train", config.to_str().unwrap(), "--engine", "symbolic"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'symbolic' for '--engine")
            && stderr.contains("possible values: autodiff, analytic, fused"),
        "{stderr}"
    );
}
