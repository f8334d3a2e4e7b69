//! The family registry, proven with a test-only family (`tests/toy/`): registered with one
//! line, it trains, stops and resumes exactly, extends, evaluates and exports through the same
//! code paths as the library's families (`cli::every_shipped_config_loads` sends every shipped
//! config through the registry).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bohp::export::ExportFormat;
use bohp::family::{EvalRequest, TrainEnd, TrainRequest, TrainUi};
use bohp::registry::Registry;
use bohp::run::RunDir;

use crate::toy;

fn registry() -> Registry {
    Registry::builtin().with(&toy::FAMILY)
}

const TOY: &str = "seed = 3\n[task]\nkind = \"toy\"\ntarget = 1.5\n[train]\nepisodes = 20\ncheckpoint_every = 4\nlearning_rate = 0.1\n";

/// Records what the session shows, and sets the stop flag after `stop_after` updates.
struct Recorder<'a> {
    stop: &'a AtomicBool,
    stop_after: Option<usize>,
    begun: Vec<(usize, usize, bool)>,
    messages: usize,
    notes: Vec<String>,
}

impl<'a> Recorder<'a> {
    fn new(stop: &'a AtomicBool, stop_after: Option<usize>) -> Self {
        Recorder {
            stop,
            stop_after,
            begun: Vec::new(),
            messages: 0,
            notes: Vec::new(),
        }
    }
}

impl TrainUi for Recorder<'_> {
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }
    fn begin(
        &mut self,
        _: &RunDir,
        _: &str,
        first: usize,
        total: usize,
        resumed: bool,
    ) -> bohp::Result<()> {
        self.begun.push((first, total, resumed));
        Ok(())
    }
    fn update(&mut self, done: usize, message: Option<String>) {
        self.messages += usize::from(message.is_some());
        if self.stop_after == Some(done) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn request<'a>(
    config: Option<PathBuf>,
    resume: Option<PathBuf>,
    out: &Path,
    stop: &'a AtomicBool,
) -> TrainRequest<'a> {
    TrainRequest {
        config,
        resume,
        out: out.to_path_buf(),
        extend: None,
        episodes: None,
        seed: None,
        engine: None,
        device: None,
        dtype: None,
        stop,
    }
}

fn bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_family_added_with_one_registry_line_trains_resumes_evaluates_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("toy.toml");
    std::fs::write(&config, TOY).unwrap();
    let registry = registry();
    assert_eq!(
        registry.names(),
        [
            "single-layer",
            "recurrent",
            "reinforcement",
            "few-shot",
            "toy"
        ]
    );
    assert_eq!(registry.of_file(&config).unwrap().name(), "toy");
    assert!(
        Registry::builtin().of_text(TOY).is_none(),
        "the library alone does not know the toy"
    );

    // Uninterrupted.
    let whole = tmp.path().join("whole");
    let never = AtomicBool::new(false);
    let mut ui = Recorder::new(&never, None);
    let end = registry
        .train(
            &request(Some(config.clone()), None, &whole, &never),
            &mut ui,
        )
        .unwrap();
    let TrainEnd::Finished {
        first: 0,
        total: 20,
        lines,
        ..
    } = end
    else {
        panic!("{end:?}")
    };
    assert!(lines[0].starts_with("theta 1."), "{lines:?}");
    assert_eq!(ui.begun, [(0, 20, false)]);
    assert!(ui.messages >= 1);

    // Stopped after 7 updates, then resumed.
    let split = tmp.path().join("split");
    let stop = AtomicBool::new(false);
    let mut ui = Recorder::new(&stop, Some(7));
    let end = registry
        .train(&request(Some(config.clone()), None, &split, &stop), &mut ui)
        .unwrap();
    assert_eq!(
        end,
        TrainEnd::Interrupted {
            run: split.clone(),
            next_episode: 7
        }
    );
    assert!(!split.join("model.bpk").exists());
    stop.store(false, Ordering::SeqCst);
    let mut ui = Recorder::new(&stop, None);
    let end = registry
        .train(&request(None, Some(split.clone()), &split, &stop), &mut ui)
        .unwrap();
    assert!(
        matches!(
            end,
            TrainEnd::Finished {
                first: 7,
                total: 20,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(ui.begun, [(7, 20, true)]);
    for file in ["metrics.csv", "model.bpk", "summary.json"] {
        assert_eq!(
            bytes(whole.join(file)),
            bytes(split.join(file)),
            "{file} differs after resume"
        );
    }

    // Extended by 5 updates.
    let mut extend = request(None, Some(split.clone()), &split, &stop);
    extend.extend = Some(5);
    let mut ui = Recorder::new(&stop, None);
    let end = registry.train(&extend, &mut ui).unwrap();
    assert!(
        matches!(
            end,
            TrainEnd::Finished {
                first: 20,
                total: 25,
                ..
            }
        ),
        "{end:?}"
    );
    assert!(
        ui.notes[0].contains("extended by 5 updates to 25"),
        "{:?}",
        ui.notes
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&bytes(split.join("summary.json"))).unwrap();
    assert_eq!(summary["episodes"], 25);
    let theta = summary["theta"].as_f64().unwrap();
    assert!((theta - 1.5).abs() < 0.2, "theta {theta}");

    // Evaluated: the held-out loss is the targets' spread, far below the untrained (θ = 0) 2.25.
    let eval = EvalRequest {
        episodes: 50,
        batch: 1,
        seed: None,
        device: None,
        dtype: None,
        omniglot_runs: None,
    };
    let report = registry.evaluate(&split, &eval).unwrap();
    let loss = report.json["loss"].as_f64().unwrap();
    assert!(loss < 0.2, "{report:?}");
    assert_eq!(report.json["theta"].as_f64().unwrap(), theta);
    let wrong = EvalRequest {
        omniglot_runs: Some("runs.txt".into()),
        ..eval.clone()
    };
    let e = registry.evaluate(&split, &wrong).unwrap_err().to_string();
    assert!(e.contains("--omniglot-runs"), "{e}");
    for (bad, flag) in [
        (
            EvalRequest {
                episodes: 0,
                ..eval.clone()
            },
            "--episodes",
        ),
        (
            EvalRequest {
                batch: 0,
                ..eval.clone()
            },
            "--batch",
        ),
    ] {
        let e = registry.evaluate(&split, &bad).unwrap_err().to_string();
        assert!(e.contains(flag) && e.contains("at least 1"), "{e}");
    }
    let e = registry
        .evaluate(&tmp.path().join("none"), &eval)
        .unwrap_err()
        .to_string();
    assert!(e.contains("none"), "{e}");

    // Exported: the JSON holds θ under its module path.
    let out = split.join("model.json");
    assert_eq!(
        registry.export(&split, ExportFormat::Json, &out).unwrap(),
        1
    );
    let json: serde_json::Value = serde_json::from_slice(&bytes(out.clone())).unwrap();
    assert_eq!(json["family"], "toy");
    assert_eq!(
        json["tensors"]["theta"]["values"][0].as_f64().unwrap(),
        theta
    );
    let e = registry
        .export(&split, ExportFormat::Json, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn a_config_the_toy_rejects_names_the_field_before_a_run_directory_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("toy.toml");
    std::fs::write(
        &config,
        TOY.replace("learning_rate = 0.1", "learning_rate = 2.0"),
    )
    .unwrap();
    let out = tmp.path().join("run");
    let stop = AtomicBool::new(false);
    let e = registry()
        .train(
            &request(Some(config), None, &out, &stop),
            &mut Recorder::new(&stop, None),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train.learning_rate") && e.contains("(0, 0.5)"),
        "{e}"
    );
    assert!(!out.exists());
}
