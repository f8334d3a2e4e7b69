//! Interrupting a run (Ctrl-C, or a kill) and resuming it gives exactly the run that was not
//! interrupted: the same metrics, byte for byte, and the same final parameters.

use std::path::Path;

use bohp::run::RunDir;

use crate::common::{bohp, final_parameters, run_bohp};

const CONFIG: &str = r#"
seed = 11
device = "ndarray"
dtype = "f32"
[task]
kind = "one-shot"
[model]
gamma = 0.02
[train]
episodes = 3000
batch = 16
learning_rate = 0.01
freeze_last = 200
checkpoint_every = 100
"#;

fn uninterrupted(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("c.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = dir.join("whole");
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

/// Starts a run, waits until `ready(run)` holds, then stops it with `stop(pid)`.
fn interrupted(
    dir: &Path,
    name: &str,
    ready: fn(&Path) -> bool,
    stop: fn(&mut std::process::Child),
) -> (std::path::PathBuf, Option<i32>) {
    let config = dir.join("c.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = dir.join(name);
    let mut command = bohp();
    command.args([
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    let out = crate::common::stop_when(command, &run, ready, stop);
    (run, out.status.code())
}

fn checkpoint_episode(run: &Path) -> usize {
    RunDir::open(run)
        .ok()
        .and_then(|r| r.read_checkpoint_state().ok())
        .map(|(_, s)| s.next_episode)
        .unwrap_or(0)
}

fn resume_and_compare(run: &Path, whole: &Path) {
    let out = run_bohp(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    crate::common::assert_success(&out);
    assert_eq!(
        std::fs::read(whole.join("metrics.csv")).unwrap(),
        std::fs::read(run.join("metrics.csv")).unwrap(),
        "metrics differ from the uninterrupted run"
    );
    assert_eq!(final_parameters(whole), final_parameters(run));
}

#[test]
fn resume_after_a_kill_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = uninterrupted(dir.path());
    // SIGKILL between checkpoints: the rows after the last checkpoint are re-run on resume.
    let (run, code) = interrupted(
        dir.path(),
        "killed",
        |run| checkpoint_episode(run) >= 300,
        |child| child.kill().unwrap(),
    );
    assert_eq!(code, None, "killed by a signal");
    let at = checkpoint_episode(&run);
    assert!((300..3000).contains(&at));
    resume_and_compare(&run, &whole);
}

#[test]
fn resume_after_ctrl_c_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = uninterrupted(dir.path());
    // SIGINT: the run finishes its episode, writes a checkpoint there and exits with 130.
    let (run, code) = interrupted(
        dir.path(),
        "interrupted",
        |run| {
            std::fs::read_to_string(run.join("metrics.csv"))
                .map(|s| s.lines().count() > 250)
                .unwrap_or(false)
        },
        crate::common::sigint,
    );
    assert_eq!(code, Some(130));
    let at = checkpoint_episode(&run);
    assert!(
        (250..3000).contains(&at),
        "checkpoint at the interruption: {at}"
    );
    let rows: Vec<bohp::run::MetricsRow> = RunDir::open(&run).unwrap().read_metrics().unwrap();
    assert_eq!(
        rows.len(),
        at,
        "every episode before the checkpoint is in metrics.csv"
    );
    // The first session's training time is in the checkpoint, and the summary's wall time
    // covers both sessions.
    let (_, state) = RunDir::open(&run).unwrap().read_checkpoint_state().unwrap();
    let first = state
        .wall_seconds
        .expect("the checkpoint records the time trained");
    assert!(first > 0.0, "{first}");
    resume_and_compare(&run, &whole);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let total = summary["wall_seconds"].as_f64().expect("wall_seconds");
    assert!(total > first, "summary {total} s, first session {first} s");
}

/// The host engines (analytic, and the fused one whose model is rebuilt from the host values
/// only when read) keep their parameters and Adam on the host; a checkpoint carries that
/// state, and a resumed f32 run continues exactly like the uninterrupted one, with and without
/// a modulator.
#[test]
fn the_host_engines_resume_exactly() {
    use bohp::device::{Backend, Precision};
    use bohp::learner::Learner;
    use bohp::run::RunDir;
    use bohp::single::config::Engine;
    use bohp::single::train::{GradientEngine, SingleLayerTrainer};
    type Make = fn() -> Box<dyn GradientEngine>;
    let engines: [(Engine, Make); 2] = [
        (Engine::Analytic, || {
            Box::new(bohp::engines::analytic::Analytic)
        }),
        (Engine::Fused, || {
            Box::new(bohp::engines::layer_fused::LayerFused)
        }),
    ];
    use bohp::rules::{Modulation, Rule};
    for ((engine_kind, engine), modulation) in engines.into_iter().flat_map(|e| {
        [
            Modulation::None,
            Modulation::Simple,
            Modulation::Retroactive,
        ]
        .map(|m| (e, m))
    }) {
        let kind = format!("{engine_kind}, modulation {modulation}");
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        let mut config =
            crate::common::budget_config("reversal", 30, 0, Backend::Flex, Precision::F32);
        config.train.batch = 9;
        config.train.engine = engine_kind;
        config.model.modulation = modulation;
        if modulation == Modulation::Retroactive {
            config.model.rule = Rule::Clipped;
        }
        let mut a = SingleLayerTrainer::new(config.clone(), engine()).unwrap();
        let mut metrics = run.metrics_writer(0).unwrap();
        for _ in 0..12 {
            metrics.write(&a.step().unwrap()).unwrap();
        }
        metrics.flush().unwrap();
        a.checkpoint(&run).unwrap();
        let mut b = SingleLayerTrainer::resume(&run, config, engine()).unwrap();
        assert_eq!(
            a.model().parameter_values(),
            b.model().parameter_values(),
            "{kind}"
        );
        while !a.is_done() {
            assert_eq!(a.step().unwrap(), b.step().unwrap(), "{kind}");
        }
        assert_eq!(
            a.model().parameter_values(),
            b.model().parameter_values(),
            "{kind}"
        );
        // And it learned something: the parameters moved.
        let fresh = SingleLayerTrainer::new(a.config().clone(), engine()).unwrap();
        assert_ne!(
            fresh.model().parameter_values(),
            a.model().parameter_values(),
            "{kind}"
        );
    }
}

/// Reading the metrics back every 7 updates (and the GPU default, every 16, where a GPU backend
/// is built) writes the same metrics and ends on the same parameters as reading every update:
/// the deferred read changes when the host synchronizes, not what is computed. Checkpoints
/// still fall every `checkpoint_every` updates.
fn deferred_readback_changes_nothing(
    backend: bohp::device::Backend,
    precision: bohp::device::Precision,
) {
    use bohp::run::RunDir;
    use bohp::single::train::{Autodiff, SingleLayerTrainer};
    use std::sync::atomic::AtomicBool;
    let mut outputs = Vec::new();
    for every in [Some(1), Some(7), None] {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        let mut config = crate::common::budget_config("one-shot", 30, 4, backend, precision);
        config.train.batch = 2;
        config.train.checkpoint_every = 10;
        config.train.readback_every = every;
        let mut trainer = SingleLayerTrainer::new(config, Box::new(Autodiff)).unwrap();
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        let mut observer = |row: &bohp::run::MetricsRow| seen.push(row.episode);
        bohp::learner::train(&run, &mut trainer, &mut observer, &stop).unwrap();
        assert_eq!(
            seen,
            (0..30).collect::<Vec<_>>(),
            "{every:?}: every update observed in order"
        );
        let metrics = std::fs::read_to_string(run.path().join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 31, "{metrics}");
        outputs.push((metrics, trainer.model().parameter_values()));
    }
    for (metrics, params) in &outputs[1..] {
        assert_eq!(metrics, &outputs[0].0);
        assert_eq!(params, &outputs[0].1);
    }
}

crate::backend_matrix! {
    deferred_readback => deferred_readback_changes_nothing,
}
