//! The CLI on real configs: bad input is rejected with the file and field named, a non-zero
//! exit code and nothing overwritten; evaluation of a trained run; divergence handling.

use std::path::Path;

use bohp::run::{CheckpointState, MetricsRow, RunDir};
use bohp::single::train::{init_model, non_finite_param};

use crate::common::{run_bohp, shipped_config_path, snapshot};

const VALID: &str = r#"
seed = 1
[task]
kind = "one-shot"
steps = 20
[model]
gamma = 0.02
hidden = 2
[train]
episodes = 40
batch = 4
learning_rate = 0.01
freeze_last = 10
checkpoint_every = 10
"#;

/// Runs `bohp train` on `config_text` and returns (exit code, stderr); the run directory it
/// was pointed at must not have been created.
fn train_rejects(config_text: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, config_text).unwrap();
    let out_dir = dir.path().join("run");
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = run_bohp(&args);
    assert!(!out.status.success(), "must fail: {config_text}");
    assert!(
        !out_dir.exists(),
        "nothing may be written for a rejected config"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_valid_config_trains() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    std::fs::write(&config, VALID).unwrap();
    let run = dir.path().join("run");
    let started = std::time::Instant::now();
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    let process_seconds = started.elapsed().as_secs_f64();
    crate::common::assert_success(&out);
    // The summary states the training time (within the process's) and its peak memory.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let wall = summary["wall_seconds"].as_f64().unwrap();
    assert!(
        wall > 0.0 && wall <= process_seconds,
        "{wall} s of {process_seconds} s"
    );
    assert!(
        summary["peak_rss_mib"].as_f64().unwrap() >= 1.0,
        "{summary}"
    );
    for file in [
        "config.toml",
        "metrics.csv",
        "model.bpk",
        "summary.json",
        "train.log",
        "checkpoint/model.bpk",
        "checkpoint/optimizer.bpk",
        "checkpoint/state.json",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let rows: Vec<MetricsRow> = RunDir::open(&run).unwrap().read_metrics().unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows.iter().filter(|r| r.frozen == 1).count(), 10);
    assert!(rows.iter().enumerate().all(|(i, r)| r.episode == i));
}

#[test]
fn bad_configs_name_the_file_and_field() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "learning_rate = 0.01",
            "lr = 0.01",
            &["bad.toml", "lr", "train"],
        ),
        (
            "episodes = 40",
            "episodes = \"many\"",
            &["bad.toml", "train.episodes"],
        ),
        (
            "gamma = 0.02",
            "gamma = 1.5",
            &["bad.toml", "model.gamma", "0 < gamma <= 1"],
        ),
        ("gamma = 0.02", "gamma = -0.1", &["bad.toml", "model.gamma"]),
        (
            "hidden = 2",
            "hidden = 0",
            &["bad.toml", "model.hidden", "at least 1"],
        ),
        (
            "steps = 20",
            "steps = 20\npattern_bits = 0",
            &["bad.toml", "task.pattern_bits"],
        ),
        ("batch = 4", "batch = 0", &["bad.toml", "train.batch"]),
        (
            "learning_rate = 0.01",
            "learning_rate = 0.0",
            &["bad.toml", "train.learning_rate", "> 0"],
        ),
        (
            "freeze_last = 10",
            "freeze_last = 41",
            &["bad.toml", "train.freeze_last", "at most"],
        ),
        (
            "seed = 1",
            "seed = 1\ndevice = \"tpu\"",
            &["bad.toml", "device", "ndarray", "flex"],
        ),
        (
            "seed = 1",
            "seed = 1\ndtype = \"f16\"",
            &["bad.toml", "dtype", "f32"],
        ),
        (
            "kind = \"one-shot\"",
            "kind = \"many-shot\"",
            &["bad.toml", "task.kind", "reversal"],
        ),
        ("gamma = 0.02", "", &["bad.toml", "gamma"]),
        (
            "seed = 1",
            "seed = = 1",
            &["bad.toml", "invalid TOML", "line 2"],
        ),
    ];
    for (from, to, expected) in cases {
        assert!(VALID.contains(from));
        let (code, stderr) = train_rejects(&VALID.replace(from, to), &[]);
        assert_eq!(code, Some(1), "{to}: {stderr}");
        for needle in *expected {
            assert!(
                stderr.contains(needle),
                "{to}: expected `{needle}` in: {stderr}"
            );
        }
    }
}

/// `--episodes` below (or above) the config's keeps the frozen phase's share of the run, and
/// says so.
#[test]
fn episodes_override_scales_the_frozen_phase() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    std::fs::write(&config, VALID).unwrap();
    for (episodes, frozen) in [("8", 2), ("4", 1), ("2", 1), ("80", 20)] {
        let run = dir.path().join(format!("run-{episodes}"));
        let out = run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--episodes",
            episodes,
            "--out",
            run.to_str().unwrap(),
            "-q",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("train.freeze_last scaled from 10 to {frozen}")),
            "{stderr}"
        );
        let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(
            written.contains(&format!("freeze_last = {frozen}")),
            "{written}"
        );
        let rows = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let frozen_rows = rows.lines().skip(1).filter(|l| l.ends_with(",1")).count();
        assert_eq!(frozen_rows, frozen, "{rows}");
    }
}

/// Configs whose least memory exceeds the machine's are refused at load, with the field to
/// fix named and the estimate stated, before anything is allocated or written.
#[test]
fn oversized_configs_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    // (shipped config, its edits (section, line), the field named, why: a size that cannot fit
    // in any machine's memory, or one above the field's documented bound).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "one-shot",
            &[("model", "hidden = 900000")],
            "model.hidden",
            "memory",
        ),
        (
            "one-shot",
            &[("task", "pattern_bits = 100000000")],
            "task.pattern_bits",
            "bound",
        ),
        (
            "completion",
            &[("task", "pattern_bits = 900000")],
            "task.pattern_bits",
            "memory",
        ),
        (
            "one-shot",
            &[("model", "hidden = 100000000")],
            "model.hidden",
            "bound",
        ),
        (
            "one-shot",
            &[("train", "batch = 1000000000")],
            "train.batch",
            "bound",
        ),
        (
            "one-shot",
            &[("task", "steps = 1000000000")],
            "task.steps",
            "bound",
        ),
        (
            "memorisation-50",
            &[("model", "neurons = 60000")],
            "model.neurons",
            "memory",
        ),
        (
            "memorisation",
            &[("task", "size = 900000")],
            "task.size",
            "memory",
        ),
        (
            "memorisation-50",
            &[("train", "batch = 10000000")],
            "train.batch",
            "bound",
        ),
        (
            "memorisation-50-lstm",
            &[("model", "lstm_hidden = 65536")],
            "model.lstm_hidden",
            "memory",
        ),
        (
            "memorisation-50",
            &[("model", "neurons = 100000000")],
            "model.neurons",
            "bound",
        ),
        (
            "images",
            &[("train", "batch = 1000000")],
            "train.batch",
            "bound",
        ),
        // The actor-critic family (issue 27's reproductions).
        (
            "maze",
            &[("model", "hidden = 60000")],
            "model.hidden",
            "memory",
        ),
        (
            "maze",
            &[("model", "hidden = 100000")],
            "model.hidden",
            "bound",
        ),
        (
            "maze",
            &[("train", "batch = 100000000")],
            "train.batch",
            "bound",
        ),
        (
            "maze",
            &[("task", "steps = 4000000000")],
            "task.steps",
            "bound",
        ),
        (
            "maze",
            &[("task", "maze_side = 100001")],
            "task.maze_side",
            "bound",
        ),
        (
            "maze",
            &[
                ("train", "engine = \"autodiff\""),
                ("task", "steps = 1000000"),
            ],
            "task.steps",
            "memory",
        ),
        (
            "bandit",
            &[("train", "batch = 65536"), ("model", "hidden = 2000")],
            "train.batch",
            "memory",
        ),
        // The few-shot family.
        (
            "omniglot",
            &[("model", "channels = 100000")],
            "model.channels",
            "bound",
        ),
        (
            "omniglot",
            &[("model", "outputs = 1000000000")],
            "model.outputs",
            "bound",
        ),
        (
            "omniglot",
            &[("train", "batch = 100000000")],
            "train.batch",
            "bound",
        ),
        (
            "omniglot",
            &[("train", "batch = 65536"), ("task", "queries = 10000")],
            "train.batch",
            "memory",
        ),
    ];
    for &(base, edits, field, why) in cases {
        let mut text = std::fs::read_to_string(crate::common::shipped_config_path(base)).unwrap();
        for (section, line) in edits {
            let key = line.split(' ').next().unwrap();
            text = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} ")))
                .map(|l| {
                    if l == format!("[{section}]") {
                        format!("{l}\n{line}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        let config = dir.path().join(format!("{base}-{field}-{why}.toml"));
        std::fs::write(&config, text).unwrap();
        let out_dir = dir.path().join("run");
        let out = run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "-q",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let case = format!("{base} {edits:?}");
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(
            stderr.contains(&format!("field `{field}`")),
            "{case}: {stderr}"
        );
        match why {
            "memory" => assert!(
                stderr.contains("fits in memory") && stderr.contains("GiB available"),
                "{case}: {stderr}"
            ),
            _ => assert!(
                stderr.contains("expected at most") && stderr.contains("docs/reliability.md"),
                "{case}: {stderr}"
            ),
        }
        assert!(!out_dir.exists(), "{case}: nothing may be written");
    }
}

/// A run's identity is its config: a resume refuses a config.toml edited since the run
/// started; `--extend N` adds updates to a finished run, which then resumes as usual.
#[test]
fn edited_configs_are_refused_and_finished_runs_extend() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let config = dir.path().join("ok.toml");
    // --extend without --resume is refused before anything is written.
    let elsewhere = dir.path().join("elsewhere");
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--extend",
        "5",
        "--out",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!elsewhere.exists());
    // Extend the finished run by 20 updates: 60 rows, the last 10 frozen, a new summary.
    let out = run_bohp(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--extend",
        "20",
        "-q",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("extended by 20 updates to 60"), "{stderr}");
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(written.contains("episodes = 60"), "{written}");
    let rows = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = rows.lines().skip(1).collect();
    assert_eq!(rows.len(), 60);
    let frozen: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, l)| l.ends_with(",1"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        frozen,
        (30..40).chain(50..60).collect::<Vec<_>>(),
        "the old frozen phase, then the new one"
    );
    assert!(run.join("summary.json").is_file());
    // The extended run resumes as a finished run (its recorded config is the extended one).
    let out = run_bohp(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("already finished its 60"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An edited config is refused on resume, naming the file, and nothing changes.
    let edited = written.replace("gamma = 0.02", "gamma = 0.03");
    assert_ne!(edited, written);
    std::fs::write(run.join("config.toml"), &edited).unwrap();
    let before = crate::common::snapshot(&run);
    let out = run_bohp(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("config.toml") && stderr.contains("edited since the run started"),
        "{stderr}"
    );
    assert_eq!(
        crate::common::snapshot(&run),
        before,
        "nothing in the run may change"
    );
    let out = run_bohp(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--extend",
        "5",
        "-q",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--extend checks the identity too"
    );
}

#[test]
fn bad_flags_are_rejected() {
    // An override that makes the config inconsistent names the field and the flag.
    let (code, stderr) = train_rejects(VALID, &["--episodes", "0"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("train.episodes") && stderr.contains("--episodes"),
        "{stderr}"
    );
    // Unknown device and dtype values are refused by the parser with the choices listed.
    let (code, stderr) = train_rejects(VALID, &["--device", "tpu"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("invalid value 'tpu' for '--device")
            && stderr.contains("possible values: ndarray, flex"),
        "{stderr}"
    );
    let (code, stderr) = train_rejects(VALID, &["--dtype", "f8"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("invalid value 'f8' for '--dtype")
            && stderr.contains("possible values: f32, f64"),
        "{stderr}"
    );
    let (code, stderr) = train_rejects(VALID, &["--episodes", "-3"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn unreadable_config_names_the_file() {
    let out = run_bohp(&[
        "train",
        "/nonexistent/config.toml",
        "--out",
        "/nonexistent/run",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/config.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
    // The OS error is printed once.
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

#[test]
fn an_existing_run_directory_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let before = snapshot(&run);
    let config = shipped_config_path("completion");
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert_eq!(before, snapshot(&run));
}

/// Trains the valid config into `dir/run` and returns the run path.
fn trained_run(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("ok.toml");
    std::fs::write(&config, VALID).unwrap();
    let run = dir.join("run");
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    crate::common::assert_success(&out);
    run
}

mod runs;
