//! `bohp bench` writes a complete, well-formed report, and the GPU devices fail clearly where
//! they are not available.

use serde_json::Value;

use crate::common::{repo_root, run_bohp};

/// Runs `bohp GLOBAL... bench CELLS --configs configs --out DIR/bench -q` in a fresh
/// temporary directory (returned, to keep it; `CELLS` split at spaces), asserts success and
/// returns the output folder and the parsed `bench.json`.
fn bench_report(global: &[&str], cells: &str) -> (tempfile::TempDir, std::path::PathBuf, Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let configs = repo_root().join("configs");
    let mut args = global.to_vec();
    args.push("bench");
    args.extend(cells.split_whitespace());
    let tail = [
        "--configs",
        configs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(&tail);
    let result = run_bohp(&args);
    crate::common::assert_success(&result);
    let report = serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    (dir, out, report)
}

#[test]
fn bench_runs_the_engines_that_apply_to_recurrent_and_rl_workloads() {
    let (_dir, out, report) = bench_report(
        &[],
        "--workloads memorisation-50,completion,bandit --devices flex --batches 2 \
         --engines autodiff,analytic,fused --warmup 1 --updates 2 --repeats 2",
    );
    let cells: Vec<(String, String)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(
                r["error"].is_null() && r["episodes_per_second"].as_f64().unwrap() > 0.0,
                "{r}"
            );
            (
                r["workload"].as_str().unwrap().to_string(),
                r["engine"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("memorisation-50", "autodiff"),
        ("memorisation-50", "fused"),
        ("completion", "autodiff"),
        ("completion", "analytic"),
        ("completion", "fused"),
        ("bandit", "autodiff"),
        ("bandit", "fused"),
    ];
    assert_eq!(cells.len(), expected.len(), "{cells:?}");
    for (w, e) in expected {
        assert!(
            cells.contains(&(w.to_string(), e.to_string())),
            "{w} {e}: {cells:?}"
        );
    }
    let e = run_bohp(&[
        "bench",
        "--engines",
        "magic",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && stderr.contains("magic") && stderr.contains("fused"),
        "{stderr}"
    );
}

#[test]
fn bench_measures_every_cell_and_writes_json_and_markdown() {
    let (_dir, out, report) = bench_report(
        &[],
        "--workloads completion,one-shot --devices flex,ndarray --batches 1,4 \
         --engines autodiff,analytic --warmup 2 --updates 5 --repeats 3",
    );
    assert_eq!(report["schema"], "bohp-bench/2");
    let results = report["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        2 * 2 * 2 * 2,
        "every workload × device × batch × engine"
    );
    for r in results {
        assert!(r["error"].is_null(), "{r}");
        let rate = r["episodes_per_second"].as_f64().unwrap();
        let repeats = r["repeats"].as_array().unwrap();
        assert_eq!(repeats.len(), 3);
        // The reported rate is the median of the repeats.
        let mut sorted: Vec<f64> = repeats.iter().map(|v| v.as_f64().unwrap()).collect();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(rate, sorted[1], "{r}");
        let batch = r["batch"].as_f64().unwrap();
        let ms = r["ms_per_update"].as_f64().unwrap();
        assert!((ms - 1000.0 * batch / rate).abs() < 1e-9 * ms.max(1.0));
        let rss = r["peak_rss_mib"].as_f64().unwrap();
        assert!(rss > 1.0 && rss < 4096.0, "{r}");
        assert!(
            r["device_memory_mib"].is_null(),
            "CPU cells have no device memory: {r}"
        );
    }
    assert!(report["peer"].as_array().unwrap().is_empty());
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(md.contains("| one-shot | 4 | ndarray | analytic |"), "{md}");
    assert!(md.contains("Analytic engine vs autodiff"), "{md}");
}

#[test]
fn bench_rejects_bad_arguments_and_reports_unusable_devices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let configs = repo_root().join("configs");
    let configs = configs.to_str().unwrap();
    let base = [
        "bench",
        "--configs",
        configs,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        run_bohp(&args)
    };
    let r = run(&["--workloads", "juggling"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("juggling.toml"));
    let r = run(&["--batches", "0"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--batches"));
    // The time budget of a warm-up or first repeat: finite and positive, named if not.
    for seconds in ["0", "inf", "NaN"] {
        let r = run(&["--workloads", "completion", "--seconds", seconds]);
        assert_eq!(r.status.code(), Some(1), "--seconds {seconds}");
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(
            stderr.contains("--seconds"),
            "--seconds {seconds}: {stderr}"
        );
        assert!(!out.exists(), "--seconds {seconds}: nothing written");
    }
    // A peer that cannot run is refused before anything is measured or written.
    let r = run(&["--peer-python", "/nonexistent/python"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--peer-python /nonexistent/python"));
    let r = run(&["--peer-python", "false"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("`import torch` fails"));
    let r = run(&["--peer-python", "false", "--peer", "jax"]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("`import jax, optax` fails") && stderr.contains("--peer jax"),
        "{stderr}"
    );
    // `--peer` without a Python to run it is clap's error.
    let r = run(&["--peer", "both"]);
    assert_eq!(r.status.code(), Some(2));
    let r = run(&["--peer", "tf", "--peer-python", "true"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("invalid value 'tf' for '--peer"));
    // (`true` stands for a Python that imports torch.)
    let r = run(&["--peer-python", "true", "--peer-dir", "/nonexistent-peers"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&r.stderr)
            .contains("--peer-dir /nonexistent-peers: no bohp_torch.py")
    );
    let r = run(&[
        "--workloads",
        "one-shot",
        "--peer-python",
        "true",
        "--peer",
        "both",
        "--peer-dir",
        repo_root().join("configs").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("no bohp_torch.py"));
    assert!(!out.exists(), "nothing written");
    let r = run(&["--devices", "tpu"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("invalid value 'tpu' for '--devices"));
    // A device this build or machine cannot use is a failed cell with the reason, not a crash.
    if cfg!(not(feature = "cuda")) {
        let r = run(&[
            "--workloads",
            "completion",
            "--devices",
            "cuda",
            "--batches",
            "1",
            "--engines",
            "autodiff",
            "--updates",
            "1",
            "--repeats",
            "1",
        ]);
        crate::common::assert_success(&r);
        let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
        assert!(
            md.contains("failed: ") && md.contains("--features cuda"),
            "{md}"
        );
    }
}

/// Training on a GPU backend that is not compiled in names the cargo feature to build with.
#[test]
#[cfg(not(feature = "cuda"))]
fn a_device_not_compiled_in_names_its_feature() {
    let config = crate::common::shipped_config_path("completion");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--device",
        "cuda",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("cuda") && stderr.contains("--features cuda"),
        "{stderr}"
    );
    assert!(
        !out.exists(),
        "nothing is created for a run that cannot start"
    );
}

/// The GPU backends run in f32 only, and say so.
#[test]
#[cfg(feature = "wgpu")]
fn wgpu_refuses_f64_with_a_clear_error() {
    let config = crate::common::shipped_config_path("completion");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = run_bohp(&[
        "train",
        config.to_str().unwrap(),
        "--device",
        "wgpu",
        "--dtype",
        "f64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("f32 only"), "{stderr}");
}

/// `--threads` reaches every cell, recorded with the timing each cell really ran, under one rule
/// for every family: the plan's counts where updates are quick, and with a time budget too short
/// for any update, one warm-up update and one update per repeat, in the recurrent, actor-critic
/// and single-layer cells alike. A thread count of 0 is refused by the parser naming the flag.
#[test]
fn cells_record_the_threads_and_timing_they_ran() {
    let cells = "--workloads memorisation-50,completion,bandit --devices flex --batches 2 \
                 --engines fused --warmup 3 --updates 4 --repeats 2";
    for (seconds, warmup, updates) in [("100", 3, 4), ("0.000000001", 1, 1)] {
        let (_dir, _out, report) =
            bench_report(&["--threads", "1"], &format!("{cells} --seconds {seconds}"));
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), 3, "{report}");
        for r in results {
            assert_eq!(r["threads"], 1, "{r}");
            assert_eq!(r["timing"]["warmup"], warmup, "--seconds {seconds}: {r}");
            assert_eq!(r["timing"]["updates"], updates, "--seconds {seconds}: {r}");
            assert_eq!(r["timing"]["repeats"], 2, "{r}");
            assert_eq!(r["repeats"].as_array().unwrap().len(), 2, "{r}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let e = run_bohp(&["--threads", "0", "bench", "--out", out.to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("--threads"));
}

/// The JAX peer's cell: its rate, and apart from it its compile time and its version line, read
/// from what the peer prints (a stand-in Python here prints the lines the JAX peers do); an
/// actor-critic workload gets the peer's two implementations (autograd, `jax.checkpoint`) at the
/// workload's sizes; a task the peer lacks (the bandit) is a failed cell saying so.
#[test]
fn the_jax_peer_reports_its_compile_time_apart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let python = dir.path().join("python");
    std::fs::write(
        &python,
        "#!/bin/sh\n\
         echo '# bohp peer: task=oneshot batch=1 jax=0.10.2 XLA_FLAGS=intra_op_parallelism_threads=1'\n\
         echo '# compile time 2.500 s'\n\
         echo '# train time 1.000 s for 40 updates x batch 1: 40.0 updates/s, 40.0 episodes/s'\n\
         echo '# RESULT task=maze type=modul batch=1: median s/update 0.0400 => 0.04000 s/episode, 25.000 episodes/s; peak RSS 9 MiB'\n",
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let peers = dir.path().join("peers");
    std::fs::create_dir(&peers).unwrap();
    for script in ["bohp_jax.py", "backpropamine_jax.py"] {
        std::fs::write(peers.join(script), "").unwrap();
    }
    let (_keep, out, report) = bench_report(
        &[],
        &format!(
            "--workloads one-shot,maze,bandit --devices flex --batches 1 --engines fused \
             --warmup 1 --updates 2 --repeats 1 --peer jax --peer-python {} --peer-dir {}",
            python.display(),
            peers.display()
        ),
    );
    let peer = report["peer"].as_array().unwrap();
    assert_eq!(peer.len(), 5, "{peer:?}");
    let one_shot = &peer[0];
    assert_eq!(one_shot["framework"], "jax");
    assert_eq!(one_shot["workload"], "one-shot");
    assert_eq!(one_shot["episodes_per_second"].as_f64(), Some(40.0));
    assert_eq!(one_shot["compile_seconds"].as_f64(), Some(2.5));
    assert!(one_shot["header"].as_str().unwrap().contains("jax=0.10.2"));
    assert!(
        one_shot["command"]
            .as_str()
            .unwrap()
            .contains("bohp_jax.py")
    );
    for (cell, implementation) in peer[1..3].iter().zip(["autograd", "checkpoint"]) {
        assert_eq!(cell["workload"], "maze");
        assert_eq!(cell["episodes_per_second"].as_f64(), Some(25.0), "{cell}");
        let command = cell["command"].as_str().unwrap();
        for arg in [
            "backpropamine_jax.py",
            "--task maze",
            "--type modul",
            "--hidden 100",
            "--eplen 200",
            "--maze-size 11",
            &format!("--impl {implementation}"),
        ] {
            assert!(command.contains(arg), "{arg}: {command}");
        }
    }
    for cell in &peer[3..] {
        assert_eq!(cell["workload"], "bandit");
        let error = cell["error"].as_str().unwrap();
        assert!(error.contains("no bandit task"), "{error}");
    }
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(
        md.contains("| JAX episodes/s (fastest implementation) | × JAX |"),
        "{md}"
    );
    assert!(!md.contains("× PyTorch"), "{md}");
    assert!(
        md.contains("| JAX | one-shot | 1 | autograd | 40 | 2.50 |"),
        "{md}"
    );
}
