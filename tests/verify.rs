//! What a command reads back from a run directory is verified: a finished run's files against
//! `checksums.json`, a checkpoint's `next_episode` against the metrics rows before it.

use std::path::{Path, PathBuf};

use bohp::run::verify::FINAL_FILES;

use crate::common::{assert_success, run_bohp};

const BANDIT: &str = "seed = 3\n[task]\nkind = \"bandit\"\nsteps = 20\n[model]\nkind = \"simple\"\nhidden = 8\n[train]\nepisodes = 20\nbatch = 4\nlearning_rate = 0.001\ncheckpoint_every = 5\n";

/// A finished 20-update bandit run in `dir/name`.
fn finished_run(dir: &Path, name: &str) -> PathBuf {
    crate::common::train_new(dir, name, BANDIT).1
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `bohp eval` and `bohp export` on `run`: each fails, naming `file`.
fn refused(run: &Path, file: &str, why: &str) {
    let out_file = run.with_extension("npz");
    for args in [
        vec!["eval", run.to_str().unwrap(), "--episodes", "2"],
        vec![
            "export",
            run.to_str().unwrap(),
            "--format",
            "npz",
            "--out",
            out_file.to_str().unwrap(),
        ],
    ] {
        let out = run_bohp(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} {file}: {stderr}");
        assert!(
            stderr.contains(file) && stderr.contains(why),
            "{args:?} {file}: {stderr}"
        );
        assert!(!out_file.exists(), "nothing exported from a corrupt run");
    }
}

#[test]
fn a_finished_runs_files_are_verified_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(dir.path(), "run");
    assert!(run.join("checksums.json").is_file());
    assert_success(&crate::common::eval_run(&run, 2));
    for (i, name) in FINAL_FILES.iter().enumerate() {
        // One byte flipped (the reproduction flipped four in model.bpk).
        let copy = dir.path().join(format!("flip-{i}"));
        copy_dir(&run, &copy);
        let path = copy.join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        refused(&copy, name, "checksum differs");
        // Missing.
        let copy = dir.path().join(format!("missing-{i}"));
        copy_dir(&run, &copy);
        std::fs::remove_file(copy.join(name)).unwrap();
        let why = if *name == "model.bpk" {
            "no final model"
        } else if *name == "config.toml" {
            "no config.toml"
        } else {
            "cannot read"
        };
        refused(&copy, name, why);
    }
    let copy = dir.path().join("no-checksums");
    copy_dir(&run, &copy);
    std::fs::remove_file(copy.join("checksums.json")).unwrap();
    refused(&copy, "checksums.json", "missing");
    // A run of a bohp older than the checksums (no metrics_crc32 either) is read, with a
    // warning that says it is not verified.
    let state_path = copy.join("checkpoint/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("metrics_crc32");
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let out = run_bohp(&["eval", copy.to_str().unwrap(), "--episodes", "2"]);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not verified"), "{stderr}");
}

/// `bohp train --resume run` with `extra` fails, naming `state.json` and its disagreement
/// with `metrics.csv`, and rewrites nothing.
fn resume_refused(run: &Path, extra: &[&str]) {
    let before = std::fs::read(run.join("metrics.csv")).unwrap();
    let mut args = vec!["-q", "train", "--resume", run.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_bohp(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains("state.json") && stderr.contains("disagrees with metrics.csv"),
        "{args:?}: {stderr}"
    );
    assert_eq!(
        std::fs::read(run.join("metrics.csv")).unwrap(),
        before,
        "nothing rewritten"
    );
}

#[test]
fn a_checkpoint_that_disagrees_with_the_metrics_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(dir.path(), "run");
    // An edited next_episode (20 → 15): the rows before it are not those it was written after.
    let copy = dir.path().join("edited-state");
    copy_dir(&run, &copy);
    let state_path = copy.join("checkpoint/state.json");
    let text = std::fs::read_to_string(&state_path).unwrap();
    assert!(text.contains("\"next_episode\": 20"), "{text}");
    std::fs::write(
        &state_path,
        text.replace("\"next_episode\": 20", "\"next_episode\": 15"),
    )
    .unwrap();
    resume_refused(&copy, &[]);
    resume_refused(&copy, &["--extend", "5"]);
    // An edited metrics row before the checkpoint.
    let copy = dir.path().join("edited-metrics");
    copy_dir(&run, &copy);
    let path = copy.join("metrics.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[3] = lines[3].replacen(",", ",9", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    resume_refused(&copy, &["--extend", "5"]);
    // The untouched run extends, and is verified again once finished.
    assert_success(&crate::common::extend_run(&run, 5));
    assert_success(&crate::common::eval_run(&run, 2));
}

#[test]
fn one_process_trains_a_run_and_a_stale_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(dir.path(), "run");
    assert!(
        !run.join("lock").exists(),
        "the lock goes when training ends"
    );
    // A live process holds the lock (this test's own): a second trainer is refused, nothing
    // is written.
    let lock = run.join("lock");
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let before = crate::common::snapshot(&run);
    let out = crate::common::extend_run(&run, 5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lock") && stderr.contains(&std::process::id().to_string()),
        "{stderr}"
    );
    assert_eq!(
        crate::common::snapshot(&run),
        before,
        "nothing written: not the extended config, not a checkpoint"
    );
    // The lock of a process that is gone (killed) is stale: the run resumes.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&lock, pid.to_string()).unwrap();
    assert_success(&crate::common::extend_run(&run, 5));
    assert!(!lock.exists());
    assert_success(&crate::common::eval_run(&run, 2));
}

/// SIGTERM (a job scheduler's or `timeout`'s) stops a run as Ctrl-C does: the update finishes,
/// a checkpoint is written there, and the run resumes.
#[test]
fn sigterm_stops_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bandit.toml");
    std::fs::write(
        &config,
        BANDIT.replace("episodes = 20", "episodes = 100000"),
    )
    .unwrap();
    let run = dir.path().join("run");
    let mut command = crate::common::bohp();
    command.args([
        "train",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    let out = crate::common::stop_when(
        command,
        &run,
        |run| {
            std::fs::read_to_string(run.join("metrics.csv"))
                .map(|s| s.lines().count() > 30)
                .unwrap_or(false)
        },
        |child| {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        },
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, state) = bohp::run::RunDir::open(&run)
        .unwrap()
        .read_checkpoint_state()
        .unwrap();
    let rows = std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert!(state.next_episode >= 30, "{}", state.next_episode);
    assert_eq!(
        rows, state.next_episode,
        "the checkpoint is at the interruption"
    );
    assert!(
        !run.join("lock").exists(),
        "an interrupted run leaves no lock"
    );
}
