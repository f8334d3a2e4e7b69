//! The few-shot network's gradients against finite differences, a tiny training above chance,
//! bad data settings refused before anything is written, and `bohp gradcheck` on it.

use super::*;

fn bump<const D: usize>(p: &Param<Tensor<D>>, index: usize, delta: f64) -> Param<Tensor<D>> {
    p.clone().map(|t| {
        let (shape, device, grad) = (t.shape(), t.device(), t.is_require_grad());
        let mut v: Vec<f64> = t.into_data().convert::<f64>().try_to_vec().unwrap();
        v[index] += delta;
        Tensor::from_data(TensorData::new(v, shape), &device).set_require_grad(grad)
    })
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec().unwrap()
}

/// The query loss's gradient through the plastic layer (every rule of the library: Oja's, the
/// paper's, Hebb's and the clipped rule) and the convolutional embedding: burn autodiff against
/// central finite differences in f64 (first and last convolution, `w`, `α`, `η`), on a batch of
/// 3-way 2-shot episodes with two queries each.
#[test]
fn few_shot_gradients_equal_finite_differences() {
    for rule in bohp::rules::Rule::ALL {
        few_shot_gradients_for(rule);
    }
}

fn few_shot_gradients_for(rule: bohp::rules::Rule) {
    let tmp = tempfile::tempdir().unwrap();
    let set = Omniglot::open(&[write_set(tmp.path(), "s", 1, 4, 3)]).unwrap();
    let device = init_device(Backend::Flex, Precision::F64)
        .unwrap()
        .autodiff();
    let config = OmniglotModelConfig {
        plastic: true,
        channels: 3,
        outputs: 4,
        init_eta: 0.3,
        init_alpha: 0.7,
        batch_norm: false,
        rule: Some(rule),
        clip: None,
        modulation: Default::default(),
    };
    let mut model = FewShotNet::new(&config, 5, &device);
    model.w = bump(&model.w, 1, 0.2);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let batch = episode_batch(
        std::slice::from_ref(&set),
        3,
        2,
        4,
        2,
        2,
        &Augment::default(),
        &mut rng,
        &device,
    );
    let (loss, _) = model.loss(&batch);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let plain = |m: &FewShotNet| values(m.loss(&batch).0)[0];
    let h = 1e-6;
    let mut checked = 0;
    let check = |name: &str, analytic: f64, plus: f64, minus: f64| {
        let fd = (plus - minus) / (2.0 * h);
        let err = (analytic - fd).abs() / fd.abs().max(1e-4);
        assert!(
            err < 1e-5,
            "{rule} {name}: autodiff {analytic} vs finite differences {fd}"
        );
    };
    for index in [0, 5, 7] {
        let g = values(grads.get::<2>(model.alpha.id).unwrap())[index];
        let (mut p, mut m) = (model.clone(), model.clone());
        p.alpha = bump(&model.alpha, index, h);
        m.alpha = bump(&model.alpha, index, -h);
        check(&format!("alpha[{index}]"), g, plain(&p), plain(&m));
        let g = values(grads.get::<2>(model.w.id).unwrap())[index];
        let (mut p, mut m) = (model.clone(), model.clone());
        p.w = bump(&model.w, index, h);
        m.w = bump(&model.w, index, -h);
        check(&format!("w[{index}]"), g, plain(&p), plain(&m));
        checked += 2;
    }
    let g = values(grads.get::<1>(model.eta.id).unwrap())[0];
    let (mut p, mut m) = (model.clone(), model.clone());
    p.eta = bump(&model.eta, 0, h);
    m.eta = bump(&model.eta, 0, -h);
    check("eta", g, plain(&p), plain(&m));
    for conv in [0, 3] {
        for index in [0, 4] {
            let weight = &model.convs[conv].weight;
            let g = values(grads.get::<4>(weight.id).unwrap())[index];
            let (mut p, mut m) = (model.clone(), model.clone());
            p.convs[conv].weight = bump(weight, index, h);
            m.convs[conv].weight = bump(weight, index, -h);
            check(
                &format!("conv {conv} weight[{index}]"),
                g,
                plain(&p),
                plain(&m),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
}

/// `bohp train` on a tiny Omniglot-layout set (zip) learns 5-way 1-shot episodes of held-out
/// alphabets well above chance (0.2) in 150 updates, the α = 0 control stays near chance, and
/// `bohp eval --omniglot-runs` reports the network, nearest-neighbour and Hausdorff errors.
#[test]
fn a_tiny_training_beats_chance_and_the_control_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "images_background", 4, 8, 4);
    let zip_path = tmp.path().join("background.zip");
    zip_dir(&dir, "images_background", &zip_path);
    let mut accuracy = Vec::new();
    for plastic in [true, false] {
        let config = tmp.path().join(format!("omniglot-{plastic}.toml"));
        std::fs::write(
            &config,
            format!(
                "seed = 1\n[task]\nkind = \"omniglot\"\ndata = [{:?}]\nheld_out = [\"Alphabet3\"]\n\
                 [model]\nplastic = {plastic}\nchannels = 16\noutputs = 8\n\
                 [train]\nepisodes = 150\nbatch = 8\nlearning_rate = 0.003\neval_episodes = 200\ncheckpoint_every = 50\n",
                zip_path
            ),
        )
        .unwrap();
        let run = tmp.path().join(format!("run-{plastic}"));
        assert_success(&run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "-q",
        ]));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        let five = summary["held_out"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["ways"] == 5)
            .unwrap()["accuracy"]
            .as_f64()
            .unwrap();
        accuracy.push(five);
        if plastic {
            // The runs format on the same drawings: the network's error is reported beside
            // nearest neighbour's and the Hausdorff baseline's.
            let runs = tmp.path().join("runs");
            let name = "run01";
            std::fs::create_dir_all(runs.join(name).join("training")).unwrap();
            std::fs::create_dir_all(runs.join(name).join("test")).unwrap();
            let mut labels = String::new();
            for k in 1..=5u64 {
                let glyph = 300 + k - 1;
                std::fs::write(
                    runs.join(format!("{name}/training/class{k:02}.png")),
                    drawing(glyph, 0),
                )
                .unwrap();
                std::fs::write(
                    runs.join(format!("{name}/test/item{k:02}.png")),
                    drawing(glyph, 1),
                )
                .unwrap();
                labels += &format!("{name}/test/item{k:02}.png {name}/training/class{k:02}.png\n");
            }
            std::fs::write(runs.join(name).join("class_labels.txt"), labels).unwrap();
            let out = run_bohp(&[
                "eval",
                run.to_str().unwrap(),
                "--episodes",
                "100",
                "--omniglot-runs",
                runs.to_str().unwrap(),
                "--json",
            ]);
            assert_success(&out);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            eprintln!("runs: {}", report["runs"]);
            for key in [
                "network_error",
                "nearest_neighbour_error",
                "hausdorff_error",
            ] {
                let e = report["runs"][key].as_f64().unwrap();
                assert!((0.0..=0.6).contains(&e), "{key} {e}: {report}");
            }
        }
    }
    let (plastic, control) = (accuracy[0], accuracy[1]);
    eprintln!("5-way held-out accuracy: plastic {plastic}, control {control}");
    assert!(plastic >= 0.6, "plastic 5-way accuracy {plastic}");
    assert!(
        (0.1..=0.32).contains(&control),
        "alpha = 0 control accuracy {control} (chance 0.2)"
    );
}

/// Bad data settings fail before the run directory exists, naming the field or file: an
/// unknown held-out alphabet, within-alphabet episodes no alphabet can fill, a missing set.
#[test]
fn bad_data_settings_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "s", 2, 3, 3);
    for (task, expected) in [
        (
            format!("data = [{dir:?}]\nheld_out = [\"Nope\"]"),
            "task.held_out",
        ),
        (
            format!("data = [{dir:?}]\nways = 4\nwithin_alphabet = true"),
            "task.within_alphabet",
        ),
        (
            format!("data = [{:?}]", tmp.path().join("missing.zip")),
            "missing.zip",
        ),
    ] {
        let config = tmp.path().join("bad.toml");
        std::fs::write(
            &config,
            format!(
                "[task]\nkind = \"omniglot\"\n{task}\n[model]\nchannels = 4\n[train]\nepisodes = 2\nlearning_rate = 0.001\n"
            ),
        )
        .unwrap();
        let run = tmp.path().join("run");
        let out = run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{task}: {stderr}"
        );
        assert!(!run.exists(), "{task}: nothing written");
    }
}

/// `bohp gradcheck` on an Omniglot config (a tiny set written here, f64): the plastic layer's
/// autodiff gradients equal the host reference's, both equal finite differences, the embedding's
/// autodiff gradients equal finite differences of the burn model's loss; a rule's known-wrong
/// derivative fails the check; the dump recomputes: the traces by Oja's rule from the dumped
/// embeddings and labels, the logits from the queries and `w + α ⊙ H`, the loss from the logits.
#[test]
fn gradcheck_checks_an_omniglot_config_and_its_dump_recomputes() {
    use serde_json::Value;
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "images_background", 2, 6, 4);
    let config = tmp.path().join("omniglot.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 3\n[task]\nkind = \"omniglot\"\ndata = [{:?}]\nways = 3\nshots = 2\nqueries = 2\n\
             [model]\nchannels = 4\noutputs = 5\ninit_eta = 0.3\ninit_alpha = 0.7\nbatch_norm = true\n\
             [train]\nepisodes = 1\nbatch = 2\nlearning_rate = 0.001\n",
            dir
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let file = tmp.path().join("dump.json");
    let stdout = crate::common::gradcheck_passes_with_dump(config, 2, &file);
    assert!(
        stdout.contains("conv3.weight") && stdout.contains("norm0.gamma"),
        "{stdout}"
    );
    crate::common::assert_gradcheck_catches(config, "oja-decay-dropped");
    let out = run_bohp(&["gradcheck", config, "--recursion", "eligibility-first"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("eligibility-first"));

    let d: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(d["schema"], "bohp-gradcheck-dump/5");
    assert_eq!(d["produced_by"]["family"], "few-shot");
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (s, c, o, q) = (6, 4, 5, 2);
    let x = nums(&d["inputs"]["values"]);
    let labels = nums(&d["few_shot"]["support_labels"]["values"]);
    let queries = nums(&d["few_shot"]["queries"]["values"]);
    let mask = nums(&d["few_shot"]["mask"]);
    let targets = nums(&d["few_shot"]["targets"]);
    let (w, alpha, eta) = (
        nums(&d["parameters"]["w"]["values"]),
        nums(&d["parameters"]["alpha"]["values"]),
        nums(&d["parameters"]["eta"]["values"])[0],
    );
    let mut h = vec![0.0; c * o];
    let traces = nums(&d["traces"]["values"]);
    for step in 0..s {
        for i in 0..c {
            for j in 0..o {
                let (pre, post) = (x[step * c + i], labels[step * o + j]);
                h[i * o + j] += eta * post * (pre - h[i * o + j] * post);
                assert!(
                    (h[i * o + j] - traces[(step * c + i) * o + j]).abs() < 1e-13,
                    "H({step})"
                );
            }
        }
    }
    let logits = nums(&d["outputs"]["values"]);
    let mut loss = 0.0;
    for k in 0..q {
        let z: Vec<f64> = (0..o)
            .map(|j| {
                mask[j]
                    + (0..c)
                        .map(|i| {
                            queries[k * c + i] * (w[i * o + j] + alpha[i * o + j] * h[i * o + j])
                        })
                        .sum::<f64>()
            })
            .collect();
        for j in 0..o {
            assert!((z[j] - logits[k * o + j]).abs() < 1e-12, "logit {k} {j}");
        }
        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        loss += (lse - z[targets[k] as usize]) / q as f64;
    }
    let dumped = d["loss"].as_f64().unwrap();
    assert!((loss - dumped).abs() < 1e-12, "{loss} vs {dumped}");
    for method in ["host", "autodiff"] {
        assert!(
            d["gradients"][method]["alpha"]["values"].is_array(),
            "{method}"
        );
    }

    // With a modulator: retroactive modulation passes, its injected fault fails, and the
    // modulator's groups are checked.
    let text = std::fs::read_to_string(config).unwrap().replace(
        "[model]\n",
        "[model]\nmodulation = \"retroactive\"\nclip = 0.05\n",
    );
    let modulated = tmp.path().join("modulated.toml");
    std::fs::write(&modulated, text).unwrap();
    let modulated = modulated.to_str().unwrap();
    let out = run_bohp(&["gradcheck", modulated, "--dtype", "f64"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("w_m") && stdout.contains("retroactive(±0.05)"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::common::assert_gradcheck_catches(modulated, "eligibility-first");
}
