//! The peers (PyTorch, JAX): the same work, threads and timing as bohp's cell, in a child
//! Python.

use super::*;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The peer's name for a workload, if the peer has it.
pub(super) fn peer_task(workload: &str) -> Option<&'static str> {
    match workload {
        "completion" => Some("completion"),
        "one-shot" => Some("oneshot"),
        "reversal" => Some("reversal"),
        _ => None,
    }
}

pub use bohp::run::peak_rss_mib;

/// The peer's timed updates for a batch size.
pub(super) fn peer_updates(batch: usize) -> usize {
    if batch == 1 { 1000 } else { 500 }
}

/// The peer's thread count: the threads bohp's cells use (`--threads`, default every core).
pub(super) fn peer_threads() -> usize {
    rayon::current_num_threads()
}

/// The peer scripts (in `--peer-dir`): the single layer's, the recurrent network's, the
/// neuromodulated actor-critic's.
pub(super) const PEER_SINGLE_LAYER: &str = "bohp_torch.py";
pub(super) const PEER_RECURRENT: &str = "recurrent_torch.py";
pub(super) const PEER_RL: &str = "backpropamine_torch.py";
/// The JAX peers: the single layer's, the recurrent network's, the actor-critic's.
pub(super) const JAX_SINGLE_LAYER: &str = "bohp_jax.py";
pub(super) const JAX_RECURRENT: &str = "recurrent_jax.py";
pub(super) const JAX_RL: &str = "backpropamine_jax.py";
/// The recurrent and actor-critic JAX peers' implementations: plain reverse mode, and with the
/// step wrapped in `jax.checkpoint` (less memory, the step recomputed).
pub(super) const JAX_IMPLS: [&str; 2] = ["autograd", "checkpoint"];

/// The peer script of a workload in `framework` (in `--peer-dir`), or `None` where the peers
/// have none.
pub(super) fn peer_script(
    configs: &Path,
    workload: &str,
    framework: Framework,
) -> Option<&'static str> {
    let recurrent = is_recurrent_workload(configs, workload);
    let rl = is_rl_workload(configs, workload);
    match framework {
        _ if is_few_shot_workload(configs, workload) => None,
        Framework::Torch if recurrent => Some(PEER_RECURRENT),
        Framework::Torch if rl => Some(PEER_RL),
        Framework::Torch => Some(PEER_SINGLE_LAYER),
        Framework::Jax if recurrent => Some(JAX_RECURRENT),
        Framework::Jax if rl => Some(JAX_RL),
        Framework::Jax => Some(JAX_SINGLE_LAYER),
    }
}

/// Before anything is measured or written: `--peer-python` runs and imports each framework of
/// `--peer`, and every workload's peer script is in `--peer-dir`. A missing peer is an error
/// naming it, not a table of failed cells.
pub(super) fn check_peer(plan: &Plan, python: &Path) -> Result<()> {
    for &framework in &plan.peers {
        let (imports, install) = match framework {
            Framework::Torch => ("import torch", "torch numpy"),
            Framework::Jax => ("import jax, optax", "jax optax"),
        };
        let probe = Command::new(python)
            .args(["-c", imports])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("--peer-python {}: cannot run it", python.display()))?;
        if !probe.status.success() {
            let stderr = String::from_utf8_lossy(&probe.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "--peer-python {}: `{imports}` fails ({last}), needed by --peer {}; a peer \
                 environment: python3 -m venv peer-venv && peer-venv/bin/pip install {install}",
                python.display(),
                framework.name()
            );
        }
    }
    let mut workloads: Vec<&str> = plan.cells.iter().map(|c| c.workload.as_str()).collect();
    workloads.dedup();
    for (workload, &framework) in workloads
        .iter()
        .flat_map(|w| plan.peers.iter().map(move |f| (*w, f)))
    {
        if let Some(script) = peer_script(&plan.configs, workload, framework) {
            let path = plan.peer_dir.join(script);
            if !path.is_file() {
                bail!(
                    "--peer-dir {}: no {script} (the peer of workload `{workload}`)",
                    plan.peer_dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Runs the `framework` peer for one workload and batch size: the single layer's peer, or each
/// implementation of the recurrent and actor-critic peers (PyTorch: autograd, and the recurrent
/// peer's hand-written fused step; JAX: autograd and the step under `jax.checkpoint`).
pub(super) fn run_peer(
    plan: &Plan,
    python: &Path,
    framework: Framework,
    workload: &str,
    batch: usize,
    timing: &Timing,
) -> Vec<PeerResult> {
    let recurrent = is_recurrent_workload(&plan.configs, workload);
    if !recurrent && !is_rl_workload(&plan.configs, workload) {
        return vec![single_layer_peer(plan, python, framework, workload, batch)];
    }
    let impls: &[&str] = match framework {
        Framework::Torch if recurrent => &PEER_IMPLS,
        Framework::Torch => &[AUTOGRAD],
        Framework::Jax => &JAX_IMPLS,
    };
    impls
        .iter()
        .map(|i| {
            if recurrent {
                run_recurrent_peer(plan, python, framework, workload, batch, i, timing)
            } else {
                run_rl_peer(plan, python, framework, workload, batch, i, timing)
            }
        })
        .collect()
}

/// Runs a single-layer peer script (`bohp_torch.py`, `bohp_jax.py`: the same command line); an
/// Omniglot workload is a failed cell (the peers have none).
fn single_layer_peer(
    plan: &Plan,
    python: &Path,
    framework: Framework,
    workload: &str,
    batch: usize,
) -> PeerResult {
    if is_few_shot_workload(&plan.configs, workload) {
        return PeerResult::failed(
            framework,
            workload,
            batch,
            "the peers have no Omniglot workload".into(),
        );
    }
    let script = plan.peer_dir.join(match framework {
        Framework::Torch => PEER_SINGLE_LAYER,
        Framework::Jax => JAX_SINGLE_LAYER,
    });
    let task = peer_task(workload).unwrap_or("?");
    let args: Vec<String> = vec![
        script.display().to_string(),
        "--task".into(),
        task.into(),
        "--batch".into(),
        batch.to_string(),
        "--episodes".into(),
        peer_updates(batch).to_string(),
        "--seed".into(),
        "1".into(),
        "--threads".into(),
        peer_threads().to_string(),
        // No per-update printing: the peer is timed doing the same work as bohp.
        "--print-every".into(),
        "0".into(),
    ];
    let mut result = PeerResult::started(framework, workload, batch, python, &args, AUTOGRAD);
    if peer_task(workload).is_none() {
        result.error = Some(format!("the peer has no workload `{workload}`"));
        return result;
    }
    measure_peer(python, &args, result, "# train time", parse_peer_rate)
}

/// Runs the recurrent peer (`recurrent_torch.py` or `recurrent_jax.py`) at the workload's size.
pub(super) fn run_recurrent_peer(
    plan: &Plan,
    python: &Path,
    framework: Framework,
    workload: &str,
    batch: usize,
    implementation: &str,
    timing: &Timing,
) -> PeerResult {
    let script = plan.peer_dir.join(match framework {
        Framework::Torch => PEER_RECURRENT,
        Framework::Jax => JAX_RECURRENT,
    });
    let task = bohp::recurrent::config::RecurrentConfig::load(
        &plan.configs.join(format!("{workload}.toml")),
    )
    .and_then(|c| c.task());
    let task = match task {
        Ok(task) => task,
        Err(e) => {
            return PeerResult::failed(framework, workload, batch, e.to_string());
        }
    };
    if task.kind != bohp::recurrent::tasks::RecurrentTaskKind::Memorisation {
        return PeerResult::failed(
            framework,
            workload,
            batch,
            format!(
                "the peer has no `{}` task (memorisation only)",
                task.kind.name()
            ),
        );
    }
    // The peer has the memorisation task only, with the same timing options.
    let args: Vec<String> = vec![
        script.display().to_string(),
        "--size".into(),
        task.size.to_string(),
        "--nbpatterns".into(),
        task.items.to_string(),
        "--prescycles".into(),
        task.cycles.to_string(),
        "--prestime".into(),
        task.present_steps.to_string(),
        "--interpresdelay".into(),
        task.gap_steps.to_string(),
        "--prestimetest".into(),
        task.probe_steps.to_string(),
        "--batch".into(),
        batch.to_string(),
        "--impl".into(),
        implementation.into(),
        "--steps".into(),
        (timing.updates * timing.repeats).to_string(),
        "--warmup".into(),
        timing.warmup.max(1).to_string(),
        "--threads".into(),
        peer_threads().to_string(),
        // No per-update printing: the peer is timed doing the same work as bohp.
        "--print-every".into(),
        "0".into(),
    ];
    let result = PeerResult::started(framework, workload, batch, python, &args, implementation);
    measure_peer(python, &args, result, "# RESULT", parse_recurrent_peer_rate)
}

/// Runs the backpropamine peer (`backpropamine_torch.py`, or `backpropamine_jax.py` with its
/// `implementation`) at the workload's size: the same task, network type, neurons, batch, steps
/// and maze side.
pub(super) fn run_rl_peer(
    plan: &Plan,
    python: &Path,
    framework: Framework,
    workload: &str,
    batch: usize,
    implementation: &str,
    timing: &Timing,
) -> PeerResult {
    use bohp::rl::env::EnvKind;
    use bohp::rl::model::RlModelKind;
    let script = plan.peer_dir.join(match framework {
        Framework::Torch => PEER_RL,
        Framework::Jax => JAX_RL,
    });
    let config =
        match bohp::rl::config::RlConfig::load(&plan.configs.join(format!("{workload}.toml"))) {
            Ok(config) => config,
            Err(e) => return PeerResult::failed(framework, workload, batch, e.to_string()),
        };
    let shape = config.env_shape();
    let task = match shape.kind {
        EnvKind::Maze => "maze",
        EnvKind::Cue => "cue",
        EnvKind::Bandit | EnvKind::Metatasks => {
            return PeerResult::failed(
                framework,
                workload,
                batch,
                format!("the peer has no {} task", shape.kind.name()),
            );
        }
    };
    let kind = match config.model.kind {
        RlModelKind::NonPlastic => "rnn",
        RlModelKind::Plastic => "plastic",
        RlModelKind::Simple => "modplast",
        RlModelKind::Retroactive => "modul",
        RlModelKind::Lstm => {
            return PeerResult::failed(
                framework,
                workload,
                batch,
                "the peer has no LSTM agent".into(),
            );
        }
    };
    if config.model.fanout {
        return PeerResult::failed(
            framework,
            workload,
            batch,
            "the peer has no fan-out of M".into(),
        );
    }
    let mut args: Vec<String> = vec![
        script.display().to_string(),
        "--task".into(),
        task.into(),
        "--type".into(),
        kind.into(),
        "--hidden".into(),
        config.model.hidden.to_string(),
        "--batch".into(),
        batch.to_string(),
        "--eplen".into(),
        shape.steps.to_string(),
        "--steps".into(),
        (timing.updates * timing.repeats).to_string(),
        "--warmup".into(),
        timing.warmup.max(1).to_string(),
        "--threads".into(),
        peer_threads().to_string(),
        // No per-update printing: the peer is timed doing the same work as bohp.
        "--print-every".into(),
        "0".into(),
    ];
    if shape.kind == EnvKind::Maze {
        args.extend(["--maze-size".into(), shape.maze_side.to_string()]);
    }
    if framework == Framework::Jax {
        args.extend(["--impl".into(), implementation.into()]);
    }
    let result = PeerResult::started(framework, workload, batch, python, &args, implementation);
    measure_peer(python, &args, result, "# RESULT", parse_recurrent_peer_rate)
}

/// The episodes per second of the recurrent peer's `# RESULT ... => X s/episode, Y episodes/s; ...` line.
pub fn parse_recurrent_peer_rate(line: &str) -> Option<f64> {
    let before = line.split("episodes/s").next()?;
    before.trim().rsplit([' ', ',']).next()?.parse().ok()
}

/// Runs a peer command, sampling its memory, and reads its rate from the last line starting
/// with `marker`.
pub(super) fn measure_peer(
    python: &Path,
    args: &[String],
    mut result: PeerResult,
    marker: &str,
    parse: fn(&str) -> Option<f64>,
) -> PeerResult {
    // The peer runs under an address-space limit of the machine's memory less 1 GiB
    // (`ulimit -v`), so that a size it cannot hold ends in its own allocation error, reported
    // in the cell, rather than in the kernel's OOM killer.
    let limit_kib = machine_memory_kib().map(|kib| kib.saturating_sub(1 << 20));
    if let Some(kib) = limit_kib {
        result.command = format!("ulimit -v {kib}; {}", result.command);
    }
    let command = result.command.clone();
    let mut launcher = match limit_kib {
        Some(kib) => {
            let mut c = Command::new("sh");
            c.args(["-c", "ulimit -v \"$0\" && exec \"$@\""])
                .arg(kib.to_string())
                .arg(python);
            c
        }
        None => Command::new(python),
    };
    let child = launcher
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            result.error = Some(format!("cannot run `{command}`: {e}"));
            return result;
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = watch_rss(child.id(), done.clone(), peak.clone());
    let mut last = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if line.starts_with(marker) {
                last = line;
            } else if line.starts_with("# bohp peer:") && result.header.is_none() {
                result.header = Some(line.trim_start_matches("# bohp peer:").trim().to_string());
            } else if let Some(rest) = line.strip_prefix("# compile time") {
                result.compile_seconds = rest.trim().trim_end_matches('s').trim().parse().ok();
            }
        }
    }
    let output = child.wait_with_output();
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    let peak = peak.load(Ordering::SeqCst);
    result.peak_rss_mib = (peak > 0).then(|| peak as f64 / 1024.0);
    match output {
        Ok(out) if out.status.success() => match parse(&last) {
            Some(rate) => result.episodes_per_second = Some(rate),
            None => {
                result.error = Some(format!(
                    "no `{marker} ... episodes/s` line from `{command}`"
                ))
            }
        },
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            result.error = Some(format!(
                "`{command}` failed: {}",
                stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message")
            ))
        }
        Err(e) => result.error = Some(format!("`{command}`: {e}")),
    }
    result
}

/// The episodes per second from the peer's last line, `# train time ... : U updates/s, E episodes/s`.
pub fn parse_peer_rate(line: &str) -> Option<f64> {
    let before = line.trim().strip_suffix("episodes/s")?;
    before.trim().rsplit([' ', ',']).next()?.parse().ok()
}
