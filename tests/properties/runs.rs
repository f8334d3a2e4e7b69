//! Run directories and checkpoints: one file of a finished run (its config, metrics, summary,
//! model, checksums, log, or a checkpoint file) flipped, truncated, replaced or removed. Then
//! `bohp eval` either prints what it printed for the undamaged run or fails naming the file,
//! writing nothing; and `bohp train --resume --extend` either gives exactly the extended run
//! of the undamaged directory (metrics and parameters; a damaged final model or summary, which
//! the extension writes again, named in a warning) or fails naming the file, leaving the
//! directory as it was.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bohp::run::verify::FINAL_FILES;
use proptest::prelude::*;

use super::damage;
use crate::common::{assert_success, run_bohp, snapshot};

const BANDIT: &str = "seed = 3\n[task]\nkind = \"bandit\"\nsteps = 20\n[model]\nkind = \"simple\"\nhidden = 8\n[train]\nepisodes = 20\nbatch = 4\nlearning_rate = 0.001\ncheckpoint_every = 5\n";

/// The undamaged run, and what the commands give on it.
struct Reference {
    _dir: tempfile::TempDir,
    run: PathBuf,
    files: Vec<String>,
    eval: Vec<u8>,
    extended_metrics: Vec<String>,
    extended_npz: Vec<u8>,
}

fn eval(run: &Path) -> std::process::Output {
    crate::common::eval_run(run, 2)
}

fn extend(run: &Path) -> std::process::Output {
    crate::common::extend_run(run, 10)
}

/// `metrics.csv` without its `seconds` column (wall time, different in every run).
fn metrics(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let timed = header.iter().position(|c| *c == "seconds");
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| Some(*i) != timed)
                .map(|(_, c)| c)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn npz(run: &Path) -> Vec<u8> {
    let out = run.with_extension("npz");
    let _ = std::fs::remove_file(&out);
    assert_success(&run_bohp(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "npz",
        "--out",
        out.to_str().unwrap(),
    ]));
    std::fs::read(out).unwrap()
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (_, run) = crate::common::train_new(dir.path(), "run", BANDIT);
        let files = snapshot(&run)
            .into_iter()
            .map(|(p, _)| p.strip_prefix(&run).unwrap().to_string_lossy().into_owned())
            .collect();
        let eval = eval(&run);
        assert_success(&eval);
        let extended = dir.path().join("extended");
        crate::verify::copy_dir(&run, &extended);
        assert_success(&extend(&extended));
        Reference {
            files,
            eval: eval.stdout,
            extended_metrics: metrics(&extended),
            extended_npz: npz(&extended),
            run,
            _dir: dir,
        }
    })
}

/// The names an error about damage to `file` may give: the file, or for a file of checksums,
/// a file whose checksum it holds.
fn may_name(file: &str) -> Vec<String> {
    let base = file.rsplit('/').next().unwrap().to_string();
    match file {
        "checksums.json" => FINAL_FILES
            .iter()
            .map(|f| f.to_string())
            .chain([base])
            .collect(),
        "checkpoint/state.json" => [
            "model.bpk",
            "optimizer.bpk",
            "metrics.csv",
            "config.toml",
            "state.json",
        ]
        .map(String::from)
        .to_vec(),
        _ => vec![base],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_run_is_used_exactly_or_the_file_named_and_nothing_changed(
        pick in any::<prop::sample::Index>(),
        damage in damage(),
    ) {
        let reference = reference();
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        crate::verify::copy_dir(&reference.run, &run);
        let file = pick.get(&reference.files).clone();
        damage.to_file(&run.join(&file));
        let names = may_name(&file);
        let before = snapshot(&run);

        let out = eval(&run);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            prop_assert_eq!(&out.stdout, &reference.eval, "eval after {:?} of {}", damage, file);
        } else {
            prop_assert_eq!(out.status.code(), Some(1), "{}", stderr);
            prop_assert!(names.iter().any(|n| stderr.contains(n.as_str())), "eval, {:?} of {}: {}", damage, file, stderr);
        }
        prop_assert_eq!(&snapshot(&run), &before, "eval wrote nothing");

        let out = extend(&run);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            // A damaged final file is rebuilt, and said to be.
            if ["model.bpk", "summary.json"].contains(&file.as_str()) {
                prop_assert!(stderr.contains("warning:") && stderr.contains(file.as_str()), "{:?} of {}: {}", damage, file, stderr);
            }
            prop_assert_eq!(&metrics(&run), &reference.extended_metrics, "extend after {:?} of {}", damage, file);
            prop_assert_eq!(&npz(&run), &reference.extended_npz, "extend after {:?} of {}", damage, file);
        } else {
            prop_assert_eq!(out.status.code(), Some(1), "{}", stderr);
            prop_assert!(names.iter().any(|n| stderr.contains(n.as_str())), "extend, {:?} of {}: {}", damage, file, stderr);
            prop_assert_eq!(&snapshot(&run), &before, "a refused resume changes nothing: {}", stderr);
        }
    }
}
