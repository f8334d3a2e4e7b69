//! Recurrent runs resume exactly (every family, after Ctrl-C and after a kill), and the fused and
//! autodiff engines train alike.

use super::*;

/// Every recurrent family resumes exactly from a checkpoint: the fused engine's host Adam, burn's
/// optimizer for the autodiff plastic network and the LSTM, a modulated network on both
/// engines, and the progress. The resumed
/// trainer's next updates equal the uninterrupted one's (f32, bit for bit).
#[test]
fn every_recurrent_family_resumes_exactly_from_a_checkpoint() {
    for (name, engine) in [
        ("memorisation-50", Engine::Fused),
        ("memorisation-50", Engine::Autodiff),
        ("memorisation-50-nonplastic", Engine::Fused),
        ("memorisation-50-lstm", Engine::Autodiff),
        // A modulator (w_M, b_M and E): both engines.
        ("memorisation-50-retroactive", Engine::Fused),
        ("memorisation-50-retroactive", Engine::Autodiff),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        let mut config = config(name);
        config.train.engine = engine;
        config.train.episodes = 12;
        config.train.batch = 4;
        std::fs::write(run.config_path(), config.to_toml()).unwrap();
        let mut a = RecurrentTrainer::new(config.clone()).unwrap();
        let mut metrics = run.metrics_writer(0).unwrap();
        for _ in 0..6 {
            metrics.write(&a.step().unwrap()).unwrap();
        }
        metrics.flush().unwrap();
        a.checkpoint(&run).unwrap();
        let mut b = RecurrentTrainer::resume(&run, config).unwrap();
        assert_eq!(b.next_episode(), 6, "{name} {engine}");
        while !a.is_done() {
            let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
            let what = format!("{name} {engine} update {}", ra.episode);
            assert_eq!(ra.episode, rb.episode, "{what}");
            assert_eq!(ra.loss.to_bits(), rb.loss.to_bits(), "{what}");
            assert_eq!(ra.error.to_bits(), rb.error.to_bits(), "{what}");
            assert_eq!(ra.eta.to_bits(), rb.eta.to_bits(), "{what}");
        }
        assert_eq!(
            a.parameter_values(),
            b.parameter_values(),
            "{name} {engine}: final parameters"
        );
    }
}

/// `metrics.csv` without its timing column, which differs between sessions.
fn rows_without_time(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

/// `bohp train configs/memorisation-50.toml --episodes 300 --out RUN -q`.
fn memorisation_run(run: &Path) -> std::process::Command {
    let config = repo_root().join("configs/memorisation-50.toml");
    let mut command = crate::common::bohp();
    command
        .args([
            "train",
            config.to_str().unwrap(),
            "--episodes",
            "300",
            "--out",
        ])
        .arg(run)
        .arg("-q");
    command
}

/// The uninterrupted run, and the same run started, stopped by `stop` once `ready(run)` holds,
/// with its exit code and stderr.
fn whole_and_stopped(
    dir: &Path,
    ready: fn(&Path) -> bool,
    stop: fn(&mut std::process::Child),
) -> (std::path::PathBuf, std::path::PathBuf, Option<i32>, String) {
    let whole = dir.join("whole");
    crate::common::assert_success(&memorisation_run(&whole).output().unwrap());
    let run = dir.join("run");
    let out = crate::common::stop_when(memorisation_run(&run), &run, ready, stop);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (whole, run, out.status.code(), stderr)
}

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv")).map_or(0, |t| t.lines().count())
}

fn checkpoint_at(run: &Path) -> usize {
    RunDir::open(run)
        .ok()
        .and_then(|r| r.read_checkpoint_state().ok())
        .map_or(0, |(_, s)| s.next_episode)
}

/// Resumes `run` to the end and checks it against `whole`: the same rows (but for the timing
/// column) and the same final parameters.
fn resume_equals(run: &Path, whole: &Path) {
    crate::common::assert_success(&crate::common::run_bohp(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "-q",
    ]));
    assert_eq!(rows_without_time(whole), rows_without_time(run));
    let final_values = |run: &Path| {
        let config = RecurrentConfig::load(&run.join("config.toml")).unwrap();
        let mut trainer = RecurrentTrainer::new(config).unwrap();
        trainer.load_model(&run.join("model.bpk")).unwrap();
        trainer.parameter_values()
    };
    assert_eq!(
        final_values(whole),
        final_values(run),
        "the same final parameters"
    );
    assert!(run.join("summary.json").is_file());
}

/// Ctrl-C on a recurrent run: a checkpoint, exit 130, no summary.json that would make the run
/// look finished; an edited config.toml is then refused; `--resume` finishes the run exactly
/// as the uninterrupted one; `--extend` continues the finished run.
#[test]
fn ctrl_c_then_resume_equals_the_uninterrupted_recurrent_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, run, code, stderr) = whole_and_stopped(
        dir.path(),
        |run| metrics_lines(run) > 20,
        crate::common::sigint,
    );
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("checkpoint written") && stderr.contains("--resume"),
        "{stderr}"
    );
    let at = checkpoint_at(&run);
    assert!(
        (20..300).contains(&at),
        "checkpoint at the interruption: {at}"
    );
    assert_eq!(
        metrics_lines(&run),
        at + 1,
        "every update before the checkpoint, and a header"
    );
    // An edited config is refused, naming the file; nothing changes.
    let toml = run.join("config.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        original.replace("learning_rate = 0.003", "learning_rate = 0.004"),
    )
    .unwrap();
    let out = crate::common::run_bohp(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("config.toml") && stderr.contains("edited since the run started"),
        "{stderr}"
    );
    assert_eq!(checkpoint_at(&run), at, "a refused resume writes nothing");
    std::fs::write(&toml, original).unwrap();
    resume_equals(&run, &whole);
    // A finished recurrent run extends by N updates, and is finished again.
    crate::common::assert_success(&crate::common::run_bohp(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--extend",
        "10",
        "-q",
    ]));
    assert_eq!(metrics_lines(&run), 311);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["episodes"], 310);
}

/// A kill -9 at any moment after a checkpoint: rows written after it are re-run on resume, and
/// the run ends as the uninterrupted one.
#[test]
fn kill_then_resume_equals_the_uninterrupted_recurrent_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, run, code, _) = whole_and_stopped(
        dir.path(),
        |run| checkpoint_at(run) >= 100,
        |child| child.kill().unwrap(),
    );
    assert_eq!(code, None, "killed by a signal");
    let at = checkpoint_at(&run);
    assert!((100..300).contains(&at), "checkpoint {at}");
    resume_equals(&run, &whole);
}

/// The recurrent network trains through burn autodiff on every backend (wgpu on lavapipe with
/// the `wgpu` feature): three updates of a small memorisation run give the losses of the fused
/// host engine in f64 (to 1e-9 in f64, 1e-3 relative in f32).
fn recurrent_autodiff_trains_like_the_host(backend: Backend, precision: Precision) {
    let text = |device: Backend, dtype: Precision, engine: &str| {
        format!(
            "seed = 2\ndtype = \"{dtype}\"\ndevice = \"{device}\"\n[task]\nkind = \"memorisation\"\nsize = 8\nitems = 2\n\
             input_gain = 1.0\n[model]\ninit_std = 0.3\ninit_eta = 0.2\n[train]\nepisodes = 3\nbatch = 2\n\
             learning_rate = 0.01\nengine = \"{engine}\"\n"
        )
    };
    let load = |t: String| RecurrentConfig::parse(&t, Path::new("small.toml")).unwrap();
    let mut ours = RecurrentTrainer::new(load(text(backend, precision, "autodiff"))).unwrap();
    let (other, tol) = crate::common::host_reference(backend, precision);
    let mut host = RecurrentTrainer::new(load(text(other, Precision::F64, "fused"))).unwrap();
    for _ in 0..3 {
        let (a, b) = (ours.step().unwrap(), host.step().unwrap());
        assert!(
            (a.loss - b.loss).abs() <= tol * b.loss.abs().max(1.0),
            "{backend} {precision}: {} vs {}",
            a.loss,
            b.loss
        );
    }
}

backend_matrix! {
    recurrent_autodiff_training => recurrent_autodiff_trains_like_the_host,
}
