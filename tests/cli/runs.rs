//! Finished runs through the CLI: corrupt files named and left alone, `bohp eval`, divergence
//! keeping a good checkpoint, and every shipped config loading.

use super::*;

#[test]
fn corrupt_run_files_are_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    // Make the run look interrupted so that --resume has work to do.
    std::fs::remove_file(run.join("model.bpk")).unwrap();
    let state_path = run.join("checkpoint/state.json");
    let mut state: CheckpointState =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state.next_episode = 20;
    // As a checkpoint of a bohp older than `metrics_crc32` (which would refuse the edit above:
    // verify::a_checkpoint_that_disagrees_with_the_metrics_is_refused).
    state.metrics_crc32 = None;
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let good = snapshot(&run);
    let good_bytes: Vec<(std::path::PathBuf, Vec<u8>)> = good
        .iter()
        .map(|(p, _)| (p.clone(), std::fs::read(p).unwrap()))
        .collect();

    let resume = |expect: &[&str]| {
        let before = snapshot(&run);
        let out = run_bohp(&["train", "--resume", run.to_str().unwrap(), "-q"]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in expect {
            assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
        }
        assert_eq!(
            before,
            snapshot(&run),
            "a failed resume must not touch the run"
        );
    };
    let corrupt = |file: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let path = run.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        f(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
    };
    let restore = || {
        for (path, bytes) in &good_bytes {
            std::fs::write(path, bytes).unwrap();
        }
    };

    corrupt("checkpoint/state.json", &|b| b.truncate(b.len() / 2));
    resume(&["state.json", "corrupt checkpoint state"]);
    restore();
    corrupt("checkpoint/optimizer.bpk", &|b| b[40] ^= 0xff);
    resume(&["optimizer.bpk", "corrupt"]);
    restore();
    corrupt("checkpoint/model.bpk", &|b| b.truncate(10));
    resume(&["model.bpk", "corrupt"]);
    restore();
    corrupt("metrics.csv", &|b| {
        let text = String::from_utf8(b.clone()).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[6] = "5,not-a-number,0.5,0.5,0".into();
        *b = (lines.join("\n") + "\n").into_bytes();
    });
    resume(&["metrics.csv", "row 7"]);
    restore();
    corrupt("metrics.csv", &|b| {
        let text = String::from_utf8(b.clone()).unwrap();
        let kept: Vec<&str> = text.lines().take(5).collect();
        *b = (kept.join("\n") + "\n").into_bytes();
    });
    resume(&["metrics.csv", "expected one per episode in order"]);
    restore();
    corrupt("config.toml", &|b| b.extend_from_slice(b"\nbogus = 1\n"));
    resume(&["config.toml", "bogus"]);
    restore();
    // A different precision than the run's.
    let out = run_bohp(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--dtype",
        "f64",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dtype f64"));
    assert_eq!(good, snapshot(&run));
    // Not a run directory at all.
    let out = run_bohp(&["train", "--resume", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory"));
    // Evaluating a run without a final model.
    let out = run_bohp(&["eval", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.bpk") && stderr.contains("--resume"),
        "{stderr}"
    );
    // A partly written row after the checkpoint (a kill during a write) is redone, not an
    // error: the intact checkpoint resumes and finishes the run.
    corrupt("metrics.csv", &|b| b.extend_from_slice(b"40,0.69"));
    let out = run_bohp(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    crate::common::assert_success(&out);
    let rows: Vec<MetricsRow> = RunDir::open(&run).unwrap().read_metrics().unwrap();
    assert_eq!(rows.len(), 40);
}

#[test]
fn eval_reports_the_trained_error_on_fresh_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = shipped_config_path("completion");
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--episodes",
        "1500",
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    crate::common::assert_success(&out);
    let out = run_bohp(&["eval", run.to_str().unwrap(), "--episodes", "500", "--json"]);
    crate::common::assert_success(&out);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["task"], "completion");
    assert_eq!(result["episodes"], 500);
    let error = result["error"].as_f64().unwrap();
    assert!(error < 0.6, "Manhattan error on fresh episodes: {error}");
    // The same run evaluated in f64 on the other backend agrees to f32 rounding.
    let out = run_bohp(&[
        "eval",
        run.to_str().unwrap(),
        "--episodes",
        "500",
        "--json",
        "--device",
        "flex",
        "--dtype",
        "f64",
    ]);
    crate::common::assert_success(&out);
    let other: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((other["error"].as_f64().unwrap() - error).abs() < 1e-4);
    let out = run_bohp(&["eval", run.to_str().unwrap(), "--episodes", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--episodes"));
}

#[test]
fn divergence_stops_with_the_episode_and_keeps_a_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wild.toml");
    // Adam moves every parameter by about the learning rate per update: 1e38 overflows f32.
    std::fs::write(
        &config,
        VALID
            .replace("learning_rate = 0.01", "learning_rate = 1e38")
            .replace("checkpoint_every = 10", "checkpoint_every = 1"),
    )
    .unwrap();
    let run = dir.path().join("run");
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("diverged at episode"), "{stderr}");
    let episode: usize = stderr
        .split("diverged at episode ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("the message names the episode");
    let run_dir = RunDir::open(&run).unwrap();
    let (_, state) = run_dir.read_checkpoint_state().unwrap();
    assert_eq!(
        state.next_episode, episode,
        "the checkpoint before the diverging episode is kept"
    );
    let config = bohp::single::config::SingleLayerConfig::of_run(&run_dir).unwrap();
    let device = bohp::device::init_device(config.device, config.dtype).unwrap();
    let model = bohp::run::load_model(
        init_model(&config, &device),
        &run.join("checkpoint/model.bpk"),
        Some(state.model_crc32),
    )
    .unwrap();
    assert_eq!(
        non_finite_param(&model),
        None,
        "the kept checkpoint is finite"
    );
    // metrics.csv holds the episodes before, and the diverging one if its loss was finite.
    let rows: Vec<MetricsRow> = run_dir.read_metrics().unwrap();
    assert!(
        rows.len() == episode || rows.len() == episode + 1,
        "{} rows, diverged at {episode}",
        rows.len()
    );
    assert!(episode > 0, "lr 1e38 runs at least one finite update first");
    assert!(!run.join("model.bpk").exists());
}

/// Every shipped config (`configs/` and its subdirectories) goes through the registry to a
/// family whose loader parses and validates it (every family has one), and the scaling sweep's configs differ from `memorisation.toml` only in N.
#[test]
fn every_shipped_config_loads() {
    let registry = bohp::registry::Registry::builtin();
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&crate::common::repo_root().join("configs"), &mut paths);
    assert!(paths.len() >= 20, "{paths:?}");
    let mut families = std::collections::BTreeSet::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let family = registry
            .of_text(&text)
            .unwrap_or_else(|| panic!("{}: no family owns its task.kind", path.display()));
        let loaded = family.check(path);
        assert!(loaded.is_ok(), "{}: {:?}", path.display(), loaded.err());
        families.insert(family.name());
    }
    assert_eq!(families.len(), 4, "{families:?}");
    let base = bohp::recurrent::config::RecurrentConfig::load(&shipped_config_path("memorisation"))
        .unwrap();
    for n in [250, 500, 1000, 2000, 4096] {
        let path =
            crate::common::repo_root().join(format!("configs/scaling/memorisation-{n}.toml"));
        let mut c = bohp::recurrent::config::RecurrentConfig::load(&path).unwrap();
        assert_eq!(c.task().unwrap().size, n);
        c.task = base.task.clone();
        assert_eq!(c, base, "{}", path.display());
    }
}
