//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bohp::device::{Backend, Precision};
use bohp::learner::Learner;
use bohp::run::{MetricsRow, RunDir, load_model};
use bohp::single::config::SingleLayerConfig;
use bohp::single::tasks::Measures;
use bohp::single::train::{Autodiff, GradientEngine, SingleLayerTrainer, init_model};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A shipped config, `configs/<name>.toml`.
pub fn shipped_config(name: &str) -> SingleLayerConfig {
    SingleLayerConfig::load(&repo_root().join("configs").join(format!("{name}.toml"))).unwrap()
}

/// The path of a shipped config.
pub fn shipped_config_path(name: &str) -> PathBuf {
    repo_root().join("configs").join(format!("{name}.toml"))
}

/// The `bohp` binary.
pub fn bohp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bohp"))
}

/// Runs `bohp` with `args` and returns its output.
pub fn run_bohp(args: &[&str]) -> Output {
    bohp().args(args).output().expect("the bohp binary runs")
}

/// Asserts that a `bohp` run succeeded, showing its stderr otherwise.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `text` to `dir/<name>.toml` and trains it quietly into `dir/<name>` (asserting
/// success); returns the config file and the run directory.
#[track_caller]
pub fn train_new(dir: &Path, name: &str, text: &str) -> (PathBuf, PathBuf) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text).unwrap();
    let run = dir.join(name);
    assert_success(&run_bohp(&[
        "-q",
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]));
    (config, run)
}

/// `bohp eval RUN --episodes N`.
pub fn eval_run(run: &Path, episodes: usize) -> Output {
    run_bohp(&[
        "eval",
        run.to_str().unwrap(),
        "--episodes",
        &episodes.to_string(),
    ])
}

/// `bohp -q train --resume RUN --extend N`.
pub fn extend_run(run: &Path, updates: usize) -> Output {
    run_bohp(&[
        "-q",
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--extend",
        &updates.to_string(),
    ])
}

/// Trains `config` to the end in memory (no run directory) and returns its metrics.
pub fn train_in_memory(config: SingleLayerConfig) -> Vec<MetricsRow> {
    train_with(config, Box::new(Autodiff)).0
}

/// Trains `config` to the end in memory with `engine`; returns the metrics and the final
/// parameters.
pub fn train_with(
    config: SingleLayerConfig,
    engine: Box<dyn GradientEngine>,
) -> (Vec<MetricsRow>, Vec<(&'static str, Vec<f64>)>) {
    let mut trainer = SingleLayerTrainer::new(config, engine).unwrap();
    let mut rows = Vec::new();
    while !trainer.is_done() {
        rows.push(trainer.step().unwrap());
    }
    (rows, trainer.model().parameter_values())
}

/// Mean measures over the frozen episodes of `rows`.
pub fn frozen_mean(rows: &[MetricsRow]) -> Measures {
    let frozen: Vec<&MetricsRow> = rows.iter().filter(|r| r.frozen == 1).collect();
    assert!(!frozen.is_empty(), "the run has a frozen phase");
    let n = frozen.len() as f64;
    Measures {
        loss: frozen.iter().map(|r| r.loss).sum::<f64>() / n,
        error: frozen.iter().map(|r| r.error).sum::<f64>() / n,
        error_code: frozen.iter().map(|r| r.error_code).sum::<f64>() / n,
    }
}

/// A shipped config cut down to `episodes` updates with a `freeze` episode frozen phase, on
/// `backend` in `precision`.
pub fn budget_config(
    name: &str,
    episodes: usize,
    freeze: usize,
    backend: Backend,
    precision: Precision,
) -> SingleLayerConfig {
    let mut config = shipped_config(name);
    config.train.episodes = episodes;
    config.train.freeze_last = freeze;
    config.device = backend;
    config.dtype = precision;
    config.validate("test").unwrap();
    config
}

/// The final parameters of a finished run directory.
pub fn final_parameters(dir: &Path) -> Vec<(&'static str, Vec<f64>)> {
    let run = RunDir::open(dir).unwrap();
    let config = SingleLayerConfig::of_run(&run).unwrap();
    let device = bohp::device::init_device(config.device, config.dtype).unwrap();
    load_model(init_model(&config, &device), &run.model_path(), None)
        .unwrap()
        .parameter_values()
}

/// Every file under `dir` with a hash of its contents, for "nothing was changed" checks.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut hasher);
                out.push((path.clone(), hasher.finish()));
            }
        }
    }
    out.sort();
    out
}

/// Generates one test per enabled backend × precision, each calling `$body(backend, precision)`
/// (a function of the invoking module): ndarray and flex in f32 and f64, and with the `wgpu`
/// feature wgpu in f32 (on lavapipe in CI).
/// Every backend-generic test goes through this one helper.
#[macro_export]
macro_rules! backend_matrix {
    ($($name:ident => $body:ident),* $(,)?) => {
        $(
            mod $name {
                use bohp::device::{Backend, Precision};
                #[test]
                fn ndarray_f32() {
                    super::$body(Backend::Ndarray, Precision::F32)
                }
                #[test]
                fn ndarray_f64() {
                    super::$body(Backend::Ndarray, Precision::F64)
                }
                #[test]
                fn flex_f32() {
                    super::$body(Backend::Flex, Precision::F32)
                }
                #[test]
                fn flex_f64() {
                    super::$body(Backend::Flex, Precision::F64)
                }
                #[cfg(feature = "wgpu")]
                #[test]
                fn wgpu_f32() {
                    super::$body(Backend::Wgpu, Precision::F32)
                }
            }
        )*
    };
}

/// Starts `command` (a `bohp train` writing into `run`), waits until `ready(run)` holds, stops
/// the process with `stop`, and returns its output. Fails if the run ends first, or after 120 s.
pub fn stop_when(
    mut command: Command,
    run: &Path,
    ready: fn(&Path) -> bool,
    stop: fn(&mut std::process::Child),
) -> Output {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready(run) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be interrupted"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
    stop(&mut child);
    let out = child.wait_with_output().unwrap();
    assert!(
        !run.join("model.bpk").exists() && !run.join("summary.json").exists(),
        "the run was interrupted before finishing: no final model, no summary"
    );
    out
}

/// Sends SIGINT (Ctrl-C) to `child`.
pub fn sigint(child: &mut std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// For a test comparing a backend's autodiff training with the fused host engine in f64: the
/// CPU backend the f64 reference runs on (a process uses a CPU backend in one precision, so
/// the other one) and the relative tolerance on the losses for `precision`.
pub fn host_reference(backend: Backend, precision: Precision) -> (Backend, f64) {
    let other = if backend == Backend::Flex {
        Backend::Ndarray
    } else {
        Backend::Flex
    };
    let tol = match precision {
        Precision::F64 => 1e-9,
        Precision::F32 => 1e-3,
    };
    (other, tol)
}

/// Asserts that `bohp gradcheck CONFIG --dtype f64 --recursion RECURSION` fails (exit 1) with a
/// group reported as a mismatch.
#[track_caller]
pub fn assert_gradcheck_catches(config: &str, recursion: &str) {
    let out = run_bohp(&[
        "gradcheck",
        config,
        "--dtype",
        "f64",
        "--recursion",
        recursion,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{recursion}: {stdout}");
    assert!(
        stdout.contains("MISMATCH") && stdout.contains("FAILED"),
        "{recursion}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `bohp gradcheck CONFIG --dtype f64 --episodes EPISODES --dump FILE`, asserts that it
/// passed, and returns its report.
#[track_caller]
pub fn gradcheck_passes_with_dump(config: &str, episodes: usize, dump: &Path) -> String {
    let episodes = episodes.to_string();
    let out = run_bohp(&[
        "gradcheck",
        config,
        "--dtype",
        "f64",
        "--episodes",
        &episodes,
        "--dump",
        dump.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("PASSED"),
        "{config}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
