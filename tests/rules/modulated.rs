//! The modulated rules: every fault of the single-layer and recurrent modulators caught, the
//! rule-family matrix of the docs measured, and `bohp gradcheck` on modulated networks.

use super::*;

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
