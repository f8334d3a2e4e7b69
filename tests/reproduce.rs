//! `bohp reproduce` and `bohp inspect`: statistics across seeds, valid figures, the learned
//! structure, restartability, and bad input.

use std::path::Path;

use serde_json::Value;

use crate::common::{repo_root, run_bohp};

/// Writes cut-down copies of the shipped configs (`episodes` updates of 8 episodes, the last
/// `freeze` frozen) into `dir`.
fn tiny_configs(dir: &Path, episodes: usize, freeze: usize) {
    for task in ["completion", "one-shot", "reversal"] {
        let text =
            std::fs::read_to_string(repo_root().join("configs").join(format!("{task}.toml")))
                .unwrap();
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("episodes =") {
                    format!("episodes = {episodes}")
                } else if l.starts_with("freeze_last =") {
                    format!("freeze_last = {freeze}")
                } else if l.starts_with("batch =") {
                    "batch = 8".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(format!("{task}.toml")), text).unwrap();
    }
}

/// Decodes a PNG and returns its dimensions.
fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().expect("a valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("valid PNG image data");
    (info.width, info.height)
}

/// Parses an SVG as XML and returns the texts it draws.
fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `reproduce --episodes N` is a quick look: every seed trains N updates, the frozen phase
/// keeps its share of the run.
#[test]
fn reproduce_episodes_override_gives_a_quick_look() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let configs = repo_root().join("configs");
    let o = run_bohp(&[
        "reproduce",
        "completion",
        "--seeds",
        "2",
        "--episodes",
        "40",
        "--inspect-episodes",
        "5",
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // completion.toml: 5000 updates, the last 500 frozen -> 40 updates, the last 4 frozen.
    assert!(
        stderr.contains("train.freeze_last scaled from 500 to 4"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(
        &std::fs::read(out.join("completion/learned/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["error"]["median"].as_array().unwrap().len(), 40);
    for seed in 1..=2 {
        let config = std::fs::read_to_string(
            out.join(format!("completion/learned/seed-{seed}/config.toml")),
        )
        .unwrap();
        assert!(
            config.contains("episodes = 40") && config.contains("freeze_last = 4"),
            "{config}"
        );
    }
    let o = run_bohp(&[
        "reproduce",
        "completion",
        "--seeds",
        "1",
        "--episodes",
        "0",
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        dir.path().join("zero").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("train.episodes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn reproduce_writes_statistics_figures_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    tiny_configs(&configs, 300, 50);
    let out = dir.path().join("out");
    let args = [
        "reproduce",
        "completion",
        "--seeds",
        "3",
        "--jobs",
        "2",
        "--plasticity",
        "learned,none",
        "--inspect-episodes",
        "20",
        "-q",
    ];
    let mut full: Vec<&str> = args.to_vec();
    full.extend([
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let first = run_bohp(&full);
    crate::common::assert_success(&first);
    for variant in ["learned", "none"] {
        let base = out.join("completion").join(variant);
        let summary: Value =
            serde_json::from_slice(&std::fs::read(base.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["seeds"], serde_json::json!([1, 2, 3]));
        assert_eq!(summary["error"]["median"].as_array().unwrap().len(), 300);
        // The medians recomputed from the seeds' own metrics.csv.
        let mut frozen = Vec::new();
        let mut at_10 = Vec::new();
        for seed in 1..=3 {
            let csv =
                std::fs::read_to_string(base.join(format!("seed-{seed}/metrics.csv"))).unwrap();
            let errors: Vec<f64> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
                .collect();
            frozen.push(errors[250..].iter().sum::<f64>() / 50.0);
            at_10.push(errors[10]);
        }
        // Seeds that solve the task: frozen-phase error below the stated threshold.
        let solved = frozen.iter().filter(|e| **e < 0.05).count();
        assert_eq!(summary["solved"], solved, "{variant}: {frozen:?}");
        let f = summary["error"]["frozen"]["median"].as_f64().unwrap();
        assert!(
            (f - median(&mut frozen)).abs() < 1e-12,
            "{variant}: {f} vs {frozen:?}"
        );
        let m = summary["error"]["median"][10].as_f64().unwrap();
        assert!((m - median(&mut at_10)).abs() < 1e-12);
        let q25 = summary["error"]["frozen"]["q25"].as_f64().unwrap();
        let q75 = summary["error"]["frozen"]["q75"].as_f64().unwrap();
        assert!(q25 <= f && f <= q75);
        // Figures: a valid PNG of the stated size and a well-formed SVG with the title.
        assert_eq!(png_size(&base.join("figure.png")), (1400, 520));
        let texts = svg_texts(&base.join("figure.svg"));
        assert!(
            texts.iter().any(|t| t.contains("median over 3 seeds")),
            "{texts:?}"
        );
        assert!(texts.iter().any(|t| t == "episode"));
    }
    // Without plasticity, completion stays far worse than with it.
    let frozen = |v: &str| -> f64 {
        let s: Value = serde_json::from_slice(
            &std::fs::read(out.join("completion").join(v).join("summary.json")).unwrap(),
        )
        .unwrap();
        s["error"]["frozen"]["median"].as_f64().unwrap()
    };
    assert!(frozen("none") > 2.0 * frozen("learned"));
    let table = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let solved = |v: &str| -> u64 {
        let s: Value = serde_json::from_slice(
            &std::fs::read(out.join("completion").join(v).join("summary.json")).unwrap(),
        )
        .unwrap();
        s["solved"].as_u64().unwrap()
    };
    assert!(
        table.contains(&format!(
            "| completion | learned | 3 | {}/3 |",
            solved("learned")
        )) && table.contains(&format!("| completion | none | 3 | {}/3 |", solved("none")))
            && table.contains("frozen-phase error is below 0.05"),
        "{table}"
    );
    // Running it again reuses every finished seed: same summary, no training.
    let before = std::fs::read(out.join("completion/learned/summary.json")).unwrap();
    let second = run_bohp(&full);
    assert!(second.status.success());
    let after = std::fs::read(out.join("completion/learned/summary.json")).unwrap();
    assert_eq!(before, after);
    // A changed config does not silently mix runs.
    tiny_configs(&configs, 320, 50);
    let third = run_bohp(&full);
    assert_eq!(third.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&third.stderr).contains("different config"));
}

/// Three slices (`--shard K/3`, each into its own directory, as on three machines) and a merge
/// give the same summaries as one unsharded run; a merge missing a slice names the missing run.
#[test]
fn reproduce_shards_and_merge_equal_an_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    tiny_configs(&configs, 60, 10);
    let common = |out: &Path| -> Vec<String> {
        [
            "reproduce",
            "one-shot",
            "--seeds",
            "3",
            "--jobs",
            "1",
            "--plasticity",
            "learned,none",
            "--inspect-episodes",
            "10",
            "-q",
            "--configs",
            configs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |args: &[String]| run_bohp(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let whole = dir.path().join("whole");
    crate::common::assert_success(&run(&common(&whole)));
    let mut slices = Vec::new();
    let mut seen = Vec::new();
    for k in 1..=3 {
        let out = dir.path().join(format!("slice-{k}"));
        let mut args = common(&out);
        args.extend(["--shard".into(), format!("{k}/3")]);
        let run = run(&args);
        crate::common::assert_success(&run);
        assert!(
            String::from_utf8_lossy(&run.stdout)
                .contains(&format!("slice {k}/3: 2 of the plan's 6 runs")),
            "{}",
            String::from_utf8_lossy(&run.stdout)
        );
        // A slice trains its share and summarizes nothing.
        assert!(!out.join("summary.md").exists());
        for variant in ["learned", "none"] {
            for seed in 1..=3 {
                if out
                    .join(format!("one-shot/{variant}/seed-{seed}/summary.json"))
                    .is_file()
                {
                    seen.push((variant, seed));
                }
            }
        }
        slices.push(out);
    }
    seen.sort();
    let mut all: Vec<(&str, i32)> = ["learned", "none"]
        .iter()
        .flat_map(|v| (1..=3).map(move |s| (*v, s)))
        .collect();
    all.sort();
    assert_eq!(seen, all, "every run trained by exactly one slice");
    // A merge without the third slice fails, naming a run only it holds.
    let partial = dir.path().join("partial");
    let mut args = common(&partial);
    args.push("--merge".into());
    args.extend(slices[..2].iter().map(|p| p.to_str().unwrap().to_string()));
    let failed = run(&args);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("no finished run in any --merge directory") && stderr.contains("seed-"),
        "{stderr}"
    );
    // ... and writes nothing: no run of the two slices it had was copied (issue 27).
    let copied: Vec<_> = walk(&partial)
        .into_iter()
        .filter(|p| p.ends_with("model.bpk"))
        .collect();
    assert!(copied.is_empty(), "a failed merge copied {copied:?}");
    // The full merge summarizes without training, as the unsharded run did.
    let merged = dir.path().join("merged");
    let mut args = common(&merged);
    args.push("--merge".into());
    args.extend(slices.iter().map(|p| p.to_str().unwrap().to_string()));
    crate::common::assert_success(&run(&args));
    for variant in ["learned", "none"] {
        let path = format!("one-shot/{variant}/summary.json");
        let a = std::fs::read(whole.join(&path)).unwrap();
        let b = std::fs::read(merged.join(&path)).unwrap();
        assert_eq!(a, b, "{path}");
        assert!(
            merged
                .join(format!("one-shot/{variant}/figure.png"))
                .is_file()
        );
    }
    let table = std::fs::read_to_string(merged.join("summary.md")).unwrap();
    assert!(table.contains("| one-shot | learned | 3 |"), "{table}");
}

/// The documented Slurm script (`docs/slurm/reproduce.sbatch`), with `sbatch` replaced by a
/// stub that records what it is asked to submit: two array tasks train their slices, the first
/// submits the merge (after the array, `afterok`), and running that merge gives the summary.
#[test]
fn the_slurm_script_runs_slices_and_submits_the_merge() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    tiny_configs(&configs, 40, 10);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let submitted = dir.path().join("submitted");
    let stub = bin.join("sbatch");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/bash\nfor a in \"$@\"; do echo \"$a\"; done > {}\n",
            submitted.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", stub.to_str().unwrap()])
        .status()
        .unwrap();
    let script = repo_root().join("docs/slurm/reproduce.sbatch");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for k in ["1", "2"] {
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args(["one-shot", "--seeds", "2", "-q", "--inspect-episodes", "5"])
            .args(["--configs", configs.to_str().unwrap()])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("BOHP", env!("CARGO_BIN_EXE_bohp"))
            .env("SLURM_ARRAY_TASK_ID", k)
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_MAX", "2")
            .env("SLURM_ARRAY_JOB_ID", "77")
            .env("SLURM_CPUS_PER_TASK", "1")
            .output()
            .unwrap();
        crate::common::assert_success(&out);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("slice {k}/2: 1 of")),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let args: Vec<String> = std::fs::read_to_string(&submitted)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(
        args.contains(&"--dependency=afterok:77".to_string()),
        "{args:?}"
    );
    let wrap = args
        .iter()
        .find_map(|a| a.strip_prefix("--wrap="))
        .expect("the merge is submitted with --wrap");
    assert!(
        wrap.contains("--merge shards/slice-1 shards/slice-2"),
        "{wrap}"
    );
    let merge = std::process::Command::new("bash")
        .args(["-c", wrap])
        .current_dir(dir.path())
        .output()
        .unwrap();
    crate::common::assert_success(&merge);
    let summary: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("reproduce/one-shot/learned/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["seeds"], serde_json::json!([1, 2]));
}

#[test]
fn reproduce_rejects_bad_arguments() {
    for (args, needle) in [
        (vec!["reproduce", "pattern-completion"], "unknown task"),
        (
            vec!["reproduce", "all", "--plasticity", "sometimes"],
            "--plasticity",
        ),
        (vec!["reproduce", "all", "--seeds", "0"], "--seeds"),
        (vec!["reproduce", "all", "--jobs", "0"], "--jobs"),
        (vec!["reproduce", "all", "--shard", "4/3"], "--shard"),
        (vec!["reproduce", "all", "--shard", "0/3"], "--shard"),
        (
            vec!["reproduce", "all", "--shard", "1/2", "--merge", "."],
            "--shard and --merge",
        ),
        (
            vec!["reproduce", "all", "--merge", "/nonexistent-slice"],
            "--merge /nonexistent-slice",
        ),
        (
            vec!["reproduce", "all", "--configs", "/nonexistent"],
            "/nonexistent/completion.toml",
        ),
    ] {
        let out = run_bohp(&args);
        // 1: refused by bohp; 2: a value clap's parser refuses (`--shard 4/3`).
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{args:?}: {:?}",
            out.status
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn inspect_finds_the_completion_structure() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = repo_root().join("configs/completion.toml");
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
    let out = run_bohp(&[
        "inspect",
        run.to_str().unwrap(),
        "--episodes",
        "50",
        "--json",
    ]);
    crate::common::assert_success(&out);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["task"], "completion");
    let own = s["own"]["fixed"].as_f64().unwrap();
    let others_fixed = s["others"]["fixed"].as_f64().unwrap();
    let others_plastic = s["others"]["plastic"].as_f64().unwrap();
    // The paper's Fig. 2b: a strong fixed connection from each input to its own output, and
    // plastic (not fixed) connections to every other output.
    assert!(
        own > 10.0 * others_fixed,
        "own {own} vs others {others_fixed}"
    );
    assert!(
        others_plastic > 10.0 * others_fixed,
        "plastic {others_plastic} vs fixed {others_fixed}"
    );
    assert_eq!(png_size(&run.join("inspect/weights.png")).0, 360 * 3 + 40);
    let written: Value =
        serde_json::from_slice(&std::fs::read(run.join("inspect/structure.json")).unwrap())
            .unwrap();
    assert_eq!(written, s);
    // A run without a final model, and a non-run directory.
    std::fs::remove_file(run.join("model.bpk")).unwrap();
    let out = run_bohp(&["inspect", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model.bpk"));
    let out = run_bohp(&["inspect", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory"));
}

#[test]
fn inspect_measures_the_labelled_structure() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = repo_root().join("configs/one-shot.toml");
    let out = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--episodes",
        "700",
        "--device",
        "flex",
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    crate::common::assert_success(&out);
    let out = run_bohp(&[
        "inspect",
        run.to_str().unwrap(),
        "--episodes",
        "50",
        "--json",
    ]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["hidden"].as_array().unwrap().len(), 2);
    // Fig. 3b: label bits drive the hidden units through fixed weights; pattern bits through
    // plastic ones.
    let pattern_fixed = s["pattern"]["fixed"].as_f64().unwrap();
    let pattern_plastic = s["pattern"]["plastic"].as_f64().unwrap();
    let label_fixed = s["label"]["fixed"].as_f64().unwrap();
    assert!(label_fixed > 10.0 * pattern_fixed, "{s}");
    assert!(pattern_plastic > pattern_fixed, "{s}");
    // The share of Σ|α| on negative α over the pattern bits (rows 0..8 of α, [n_in, n_out]),
    // recomputed from the trained parameters.
    let params = crate::common::final_parameters(&run);
    let alpha = &params.iter().find(|(n, _)| *n == "alpha").unwrap().1;
    let n_out = 2;
    let pattern: Vec<f64> = alpha[..8 * n_out].to_vec();
    let expected = pattern
        .iter()
        .filter(|a| **a < 0.0)
        .map(|a| -a)
        .sum::<f64>()
        / pattern.iter().map(|a| a.abs()).sum::<f64>();
    let share = s["pattern"]["alpha_negative_mass_share"].as_f64().unwrap();
    assert!((share - expected).abs() < 1e-9, "{share} vs {expected}");
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
