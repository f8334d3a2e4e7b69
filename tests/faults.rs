//! Fault injection (issue 27): a training run killed with SIGKILL at random moments, and in the
//! middle of its checkpoint writes, many times over, resumes to exactly the run that was never
//! interrupted; writes that fail (a file-size limit: the first write past `k` bytes fails with
//! EFBIG, or kills the process with SIGXFSZ) end with an error naming the file, and the run
//! resumes to the same result.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{assert_success, bohp, final_parameters, run_bohp};

/// A short single-layer run with a checkpoint every 3 updates: most of its time is spent
/// writing checkpoints.
const CONFIG: &str = r#"
seed = 5
device = "ndarray"
dtype = "f32"
[task]
kind = "one-shot"
[model]
gamma = 0.02
[train]
episodes = 240
batch = 4
learning_rate = 0.01
freeze_last = 30
checkpoint_every = 3
"#;

/// The config file, and the run trained without interruption.
fn reference(dir: &Path) -> (PathBuf, PathBuf) {
    crate::common::train_new(dir, "whole", CONFIG)
}

/// `bohp train` for `run`: a new run if it has no config yet, else `--resume`.
fn train_command(config: &Path, run: &Path) -> Command {
    let mut command = bohp();
    if run.join("config.toml").is_file() {
        command.args(["-q", "train", "--resume", run.to_str().unwrap()]);
    } else {
        command.args([
            "-q",
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ]);
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: `kill(2)` on our own child's pid; it has not been waited for, so the pid is its.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// Whether the run is in the middle of writing a checkpoint: the new one is being written
/// (`checkpoint.tmp/` without its `state.json`), or the old one is moved aside.
fn mid_checkpoint(run: &Path) -> bool {
    let tmp = run.join("checkpoint.tmp");
    (tmp.is_dir() && !tmp.join("state.json").exists()) || run.join("checkpoint.old").exists()
}

/// When to kill.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After this long.
    After(Duration),
    /// As soon as the path exists under the run.
    Appears(&'static str),
    /// While a checkpoint is being written: the process is stopped (SIGSTOP) once it is seen
    /// mid-write, killed if it still is, else continued.
    MidCheckpoint,
}

/// Runs `command` and SIGKILLs it at `moment`: `Ok(true)` if it was killed in the middle of a
/// checkpoint write, `Ok(false)` if killed elsewhere, `Err(status)` if it ended by itself.
fn kill_at(mut command: Command, run: &Path, moment: Moment) -> Result<bool, ExitStatus> {
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(status);
        }
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        let now = match moment {
            Moment::After(d) => start.elapsed() >= d,
            Moment::Appears(path) => run.join(path).exists(),
            Moment::MidCheckpoint => {
                if mid_checkpoint(run) {
                    signal(&child, libc::SIGSTOP);
                    // (The stop takes effect before the signal call returns for a process that
                    // is running; give it a moment on a loaded machine.)
                    std::thread::sleep(Duration::from_millis(1));
                    if mid_checkpoint(run) {
                        true
                    } else {
                        signal(&child, libc::SIGCONT);
                        false
                    }
                } else {
                    false
                }
            }
        };
        if now {
            child.kill().unwrap();
            child.wait().unwrap();
            return Ok(mid_checkpoint(run));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// The run's metrics and final parameters equal the uninterrupted run's.
fn assert_same_run(run: &Path, whole: &Path) {
    assert_eq!(
        std::fs::read(whole.join("metrics.csv")).unwrap(),
        std::fs::read(run.join("metrics.csv")).unwrap(),
        "metrics differ from the uninterrupted run"
    );
    assert_eq!(final_parameters(whole), final_parameters(run));
    assert_success(&run_bohp(&[
        "eval",
        run.to_str().unwrap(),
        "--episodes",
        "4",
    ]));
}

#[test]
fn sigkill_at_random_moments_always_resumes_to_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (config, whole) = reference(dir.path());
    let mut rng = ChaCha8Rng::seed_from_u64(27);
    // Killed as its config appears (before the first checkpoint), then 36 times at random
    // moments or in the middle of a checkpoint write, then as its final model appears (before
    // summary.json and checksums.json). A run that finishes before its kill (on a fast disk) is
    // compared and the next moments go to a new run, started as the first was.
    let mut moments = vec![Moment::Appears("config.toml")];
    for i in 0..36 {
        moments.push(if i % 2 == 0 {
            Moment::After(Duration::from_micros(rng.random_range(0..40_000)))
        } else {
            Moment::MidCheckpoint
        });
    }
    moments.push(Moment::Appears("model.bpk"));
    let (mut kills, mut mid_write, mut runs) = (0, 0, 1);
    let mut run = dir.path().join("killed-1");
    for moment in moments {
        if let Err(status) = kill_at(train_command(&config, &run), &run, moment) {
            assert!(status.success(), "{moment:?}: exit {status}");
            assert_same_run(&run, &whole);
            runs += 1;
            run = dir.path().join(format!("killed-{runs}"));
            kill_at(
                train_command(&config, &run),
                &run,
                Moment::Appears("config.toml"),
            )
            .unwrap();
        } else {
            kills += 1;
        }
        mid_write += usize::from(mid_checkpoint(&run));
    }
    eprintln!("{kills} kills of {runs} runs, {mid_write} of them during a checkpoint write");
    assert!(kills >= 20, "only {kills} kills");
    assert!(
        mid_write >= 5,
        "only {mid_write} kills during a checkpoint write"
    );
    let out = train_command(&config, &run).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.join("checksums.json").is_file(), "the run finished");
    assert_same_run(&run, &whole);
}

/// Runs `command` with a file-size limit of `limit` bytes (the first write past it fails), the
/// signal SIGXFSZ ignored (the write fails with EFBIG) or not (the process is killed).
fn with_file_limit(mut command: Command, limit: u64, ignore_signal: bool) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only calls async-signal-safe functions.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ignore_signal {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    command.output().unwrap()
}

#[test]
fn failing_writes_end_with_the_file_named_and_the_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let (config, whole) = reference(dir.path());
    // The largest file the run writes bounds the limits worth trying.
    let largest = crate::common::snapshot(&whole)
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().len())
        .max()
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    let (mut failed, mut killed) = (0, 0);
    for case in 0..16 {
        let run = dir.path().join(format!("limited-{case}"));
        let ignore_signal = case % 4 != 3;
        // Failures at several points in one run: each session gets a new random limit.
        for _ in 0..3 {
            let limit = rng.random_range(0..largest + 64);
            let out = with_file_limit(train_command(&config, &run), limit, ignore_signal);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                break;
            }
            if ignore_signal {
                failed += 1;
                assert_eq!(out.status.code(), Some(1), "limit {limit}: {stderr}");
                // The error names the file being written and why.
                assert!(
                    stderr.contains(&dir.path().display().to_string())
                        && stderr.contains("File too large"),
                    "limit {limit}: {stderr}"
                );
                assert!(!stderr.contains("panicked"), "{stderr}");
            } else {
                killed += 1;
                assert_eq!(out.status.code(), None, "killed by SIGXFSZ: {stderr}");
            }
        }
        // Without the limit, the run resumes (or starts) and finishes as if never stopped.
        let out = train_command(&config, &run).output().unwrap();
        assert!(
            out.status.success(),
            "case {case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_run(&run, &whole);
    }
    eprintln!("{failed} sessions ended by a failed write, {killed} killed by SIGXFSZ");
    assert!(failed >= 10, "only {failed} failed writes");
}
