//! `bohp bench`: training throughput and peak memory per workload, device, batch size and
//! gradient engine, optionally beside the PyTorch peer measured in the same run.
//!
//! Every cell runs in its own child process (`bohp bench-cell`): burn fixes a device's set-up
//! once per process, and a process's peak resident memory then belongs to one cell alone.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bohp::learner::Learner;

use anyhow::{Context, Result, bail};
use bohp::device::{Backend, Precision};
use bohp::single::config::{Engine, SingleLayerConfig};
use bohp::single::train::SingleLayerTrainer;
use serde::{Deserialize, Serialize};

use crate::stats::quantile;

/// The schema name written into `bench.json`.
pub const SCHEMA: &str = "bohp-bench/1";

/// One measured combination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Workload: a task config name (`completion`, `one-shot`, `reversal`).
    pub workload: String,
    /// Compute backend.
    pub device: Backend,
    /// Independent episodes per update.
    pub batch: usize,
    /// Gradient engine.
    pub engine: BenchEngine,
}

/// A gradient engine as benchmarked: `autodiff` and `fused` for every family, `analytic` for
/// the single layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(clap::ValueEnum)]
pub enum BenchEngine {
    /// burn autodiff (both kinds of workload).
    Autodiff,
    /// The analytic forward-mode engine (single-layer tasks).
    Analytic,
    /// The fused host BPTT engine (every family).
    Fused,
}

impl BenchEngine {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchEngine::Autodiff => "autodiff",
            BenchEngine::Analytic => "analytic",
            BenchEngine::Fused => "fused",
        }
    }

    /// Whether the engine applies to a recurrent (`true`) or single-layer workload.
    pub fn applies(self, recurrent: bool) -> bool {
        match self {
            BenchEngine::Autodiff => true,
            BenchEngine::Analytic => !recurrent,
            BenchEngine::Fused => true,
        }
    }
}

/// Whether workload `name` in `configs` is a recurrent task.
pub fn is_recurrent_workload(configs: &Path, name: &str) -> bool {
    crate::commands::is_family(&configs.join(format!("{name}.toml")), "recurrent")
}

/// Recurrent workloads are long per update: their cells run at most 2 warm-up updates and 3
/// repeats of 3 updates.
pub fn recurrent_timing(timing: &Timing) -> Timing {
    Timing {
        warmup: timing.warmup.min(2),
        updates: timing.updates.min(3),
        repeats: timing.repeats.min(3),
    }
}

/// Measures one recurrent cell in this process.
pub fn run_recurrent_cell(configs: &Path, cell: &Cell, timing: &Timing) -> Result<CellResult> {
    use bohp::recurrent::config::RecurrentConfig;
    use bohp::single::config::Engine;
    let path = configs.join(format!("{}.toml", cell.workload));
    let timing = recurrent_timing(timing);
    let mut config = RecurrentConfig::load(&path)?;
    config.device = cell.device;
    config.dtype = Precision::F32;
    config.train.batch = cell.batch;
    config.train.engine = match cell.engine {
        BenchEngine::Fused => Engine::Fused,
        BenchEngine::Autodiff => Engine::Autodiff,
        BenchEngine::Analytic => bail!("the analytic engine does not apply to recurrent workloads"),
    };
    config.train.episodes = timing.warmup + timing.updates * timing.repeats;
    config.validate(&format!("{} as benchmarked", path.display()))?;
    let mut trainer = bohp::recurrent::train::RecurrentTrainer::new(config)?;
    time_updates(cell, &timing, || {
        trainer
            .step()
            .map(|r| r.seconds)
            .map_err(|d| anyhow::anyhow!("diverged: {d}"))
    })
}

/// Whether workload `name` in `configs` is a reinforcement-learning task (`bandit`, `cue`,
/// `maze`).
pub fn is_rl_workload(configs: &Path, name: &str) -> bool {
    crate::commands::is_family(&configs.join(format!("{name}.toml")), "reinforcement")
}

/// Measures one reinforcement-learning cell in this process: whole A2C updates (the rollout in
/// the environment, the loss, the gradient, clipping and Adam), with the recurrent workloads'
/// timing.
pub fn run_rl_cell(configs: &Path, cell: &Cell, timing: &Timing) -> Result<CellResult> {
    use bohp::single::config::Engine;
    let path = configs.join(format!("{}.toml", cell.workload));
    let timing = recurrent_timing(timing);
    let mut config = bohp::rl::config::RlConfig::load(&path)?;
    config.device = cell.device;
    config.dtype = Precision::F32;
    config.train.batch = cell.batch;
    config.train.engine = match cell.engine {
        BenchEngine::Fused => Engine::Fused,
        BenchEngine::Autodiff => Engine::Autodiff,
        BenchEngine::Analytic => {
            bail!("the analytic engine does not apply to reinforcement-learning workloads")
        }
    };
    config.train.episodes = timing.warmup + timing.updates * timing.repeats;
    config.validate(&format!("{} as benchmarked", path.display()))?;
    let mut trainer = bohp::rl::train::RlTrainer::new(config)?;
    time_updates(cell, &timing, || {
        trainer
            .step()
            .map(|r| r.seconds)
            .map_err(|d| anyhow::anyhow!("diverged: {d}"))
    })
}

/// Whether workload `name` in `configs` is a few-shot task (`omniglot`).
pub fn is_few_shot_workload(configs: &Path, name: &str) -> bool {
    crate::commands::is_family(&configs.join(format!("{name}.toml")), "few-shot")
}

/// Measures one few-shot cell in this process: whole updates (episode sampling, the batched
/// convolutions of every image, the plastic layer, backward and Adam), with the recurrent
/// workloads' timing.
pub fn run_few_shot_cell(configs: &Path, cell: &Cell, timing: &Timing) -> Result<CellResult> {
    let path = configs.join(format!("{}.toml", cell.workload));
    let timing = recurrent_timing(timing);
    let mut config = bohp::omniglot::config::OmniglotConfig::load(&path)?;
    config.device = cell.device;
    config.dtype = Precision::F32;
    config.train.batch = cell.batch;
    if cell.engine != BenchEngine::Autodiff {
        bail!("the few-shot network trains with autodiff only");
    }
    config.train.episodes = timing.warmup + timing.updates * timing.repeats;
    config.validate(&format!("{} as benchmarked", path.display()))?;
    let mut trainer = bohp::omniglot::train::OmniglotTrainer::new(config)?;
    time_updates(cell, &timing, || {
        trainer
            .step()
            .map(|r| r.seconds)
            .map_err(|d| anyhow::anyhow!("diverged: {d}"))
    })
}

/// Runs `timing.warmup` updates of `step` (which returns an update's seconds), then
/// `timing.repeats` repeats of `timing.updates` timed updates; the median rate.
fn time_updates(
    cell: &Cell,
    timing: &Timing,
    mut step: impl FnMut() -> Result<f64>,
) -> Result<CellResult> {
    for _ in 0..timing.warmup {
        step()?;
    }
    let mut rates = Vec::new();
    for _ in 0..timing.repeats {
        let mut seconds = 0.0;
        for _ in 0..timing.updates {
            seconds += step()?;
        }
        rates.push((timing.updates * cell.batch) as f64 / seconds.max(1e-12));
    }
    let rate = quantile(&rates, 0.5);
    Ok(CellResult {
        cell: cell.clone(),
        episodes_per_second: Some(rate),
        ms_per_update: Some(1000.0 * cell.batch as f64 / rate),
        repeats: rates,
        peak_rss_mib: peak_rss_mib(None),
        device_memory_mib: None,
        error: None,
        timing: Some(*timing),
        threads: Some(rayon::current_num_threads()),
    })
}

/// How long each cell is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Updates run before timing starts (allocation pools, caches, GPU kernel compilation).
    pub warmup: usize,
    /// Updates per timed repeat.
    pub updates: usize,
    /// Timed repeats; the reported rate is their median.
    pub repeats: usize,
}

/// A cell's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// What was measured.
    #[serde(flatten)]
    pub cell: Cell,
    /// Training episodes per second (forward, backward, optimizer step), median of repeats.
    pub episodes_per_second: Option<f64>,
    /// Milliseconds per update (one batch), at the median rate.
    pub ms_per_update: Option<f64>,
    /// Episodes per second of each repeat.
    pub repeats: Vec<f64>,
    /// Peak resident memory of the whole process (MiB), from the kernel's high-water mark.
    pub peak_rss_mib: Option<f64>,
    /// GPU backends: bytes the device's allocator holds at the end (MiB), pages kept for reuse
    /// included: its peak, as pools do not shrink.
    pub device_memory_mib: Option<f64>,
    /// Why the cell could not be measured (a backend not compiled in, no GPU, ...).
    pub error: Option<String>,
    /// The warm-up, updates per repeat and repeats this cell really ran (the recurrent and RL
    /// cells cap the plan's).
    #[serde(default)]
    pub timing: Option<Timing>,
    /// The threads the cell's host computation could use (rayon's pool).
    #[serde(default)]
    pub threads: Option<usize>,
}

/// One PyTorch peer measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// Workload (our name).
    pub workload: String,
    /// Independent episodes per update.
    pub batch: usize,
    /// The peer's reported training episodes per second.
    pub episodes_per_second: Option<f64>,
    /// The peer process's peak resident memory (MiB), sampled every 20 ms.
    pub peak_rss_mib: Option<f64>,
    /// The command line that was run.
    pub command: String,
    /// Why it could not be measured.
    pub error: Option<String>,
    /// The peer's implementation: `autograd`, or the recurrent peer's hand-written `fused`
    /// step (`--impl fused`).
    #[serde(default = "autograd")]
    pub implementation: String,
}

fn autograd() -> String {
    "autograd".into()
}

impl PeerResult {
    /// A peer measurement that could not be run.
    fn failed(workload: &str, batch: usize, error: String) -> PeerResult {
        PeerResult {
            workload: workload.to_string(),
            batch,
            episodes_per_second: None,
            peak_rss_mib: None,
            command: String::new(),
            error: Some(error),
            implementation: autograd(),
        }
    }
}

/// `bench.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// CPU cores the machine offers to this process.
    pub cores: usize,
    /// The measurement lengths.
    pub timing: Timing,
    /// The command line of this run.
    pub command: String,
    /// Our cells.
    pub results: Vec<CellResult>,
    /// The peer's, measured in the same run (empty without `--peer-python`).
    pub peer: Vec<PeerResult>,
}

/// What `bohp bench` runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The cells, in order.
    pub cells: Vec<Cell>,
    /// Measurement lengths.
    pub timing: Timing,
    /// Where the task configs are.
    pub configs: PathBuf,
    /// Output directory for `bench.json` and `bench.md`.
    pub out: PathBuf,
    /// The Python interpreter with torch, to measure the peer too.
    pub peer_python: Option<PathBuf>,
    /// The directory of the peer scripts.
    pub peer_dir: PathBuf,
}

/// The peer's name for a workload, if the peer has it.
fn peer_task(workload: &str) -> Option<&'static str> {
    match workload {
        "completion" => Some("completion"),
        "one-shot" => Some("oneshot"),
        "reversal" => Some("reversal"),
        _ => None,
    }
}

pub use bohp::run::peak_rss_mib;

/// The config a cell trains: the workload's shipped config in f32 on the cell's device, batch
/// and engine, long enough for the warm-up and the repeats, with no frozen phase.
pub fn cell_config(configs: &Path, cell: &Cell, timing: &Timing) -> Result<SingleLayerConfig> {
    let path = configs.join(format!("{}.toml", cell.workload));
    if !path.is_file() {
        bail!(
            "{}: no config for workload `{}`",
            path.display(),
            cell.workload
        );
    }
    let mut config = SingleLayerConfig::load(&path)?;
    config.device = cell.device;
    config.dtype = Precision::F32;
    config.train.batch = cell.batch;
    config.train.engine = match cell.engine {
        BenchEngine::Analytic => Engine::Analytic,
        BenchEngine::Autodiff => Engine::Autodiff,
        BenchEngine::Fused => Engine::Fused,
    };
    config.train.freeze_last = 0;
    config.train.episodes = timing.warmup + timing.updates * timing.repeats;
    config.validate(&format!("{} as benchmarked", path.display()))?;
    Ok(config)
}

/// Measures one cell in this process (`bohp bench-cell`).
pub fn run_cell(
    configs: &Path,
    cell: &Cell,
    timing: &Timing,
    engine: Box<dyn bohp::single::train::GradientEngine>,
) -> Result<CellResult> {
    let config = cell_config(configs, cell, timing)?;
    let mut trainer = SingleLayerTrainer::new(config, engine)?;
    // `count` updates, reading the metrics back as training does (every `train.readback_every`
    // updates: every update on CPU devices).
    let every = trainer.readback_every().max(1);
    let updates = |trainer: &mut SingleLayerTrainer, count: usize| -> Result<()> {
        let mut done = 0;
        while done < count {
            let rows = trainer
                .steps(every.min(count - done))
                .map_err(|d| anyhow::anyhow!("diverged at episode {}: {}", d.episode, d.what))?;
            anyhow::ensure!(!rows.is_empty(), "the run ended before the bench did");
            done += rows.len();
        }
        Ok(())
    };
    updates(&mut trainer, timing.warmup)?;
    let sync = |trainer: &SingleLayerTrainer| -> Result<()> {
        trainer
            .device()
            .sync()
            .map_err(|e| anyhow::anyhow!("device failed: {e:?}"))
    };
    sync(&trainer)?;
    let mut rates = Vec::new();
    for _ in 0..timing.repeats {
        let started = Instant::now();
        updates(&mut trainer, timing.updates)?;
        sync(&trainer)?;
        let seconds = started.elapsed().as_secs_f64();
        rates.push((timing.updates * cell.batch) as f64 / seconds.max(1e-12));
    }
    let rate = quantile(&rates, 0.5);
    let device_memory_mib = cell
        .device
        .is_gpu()
        .then(|| trainer.device().memory_pool_usage())
        .flatten()
        .map(|u| u.bytes_reserved as f64 / (1024.0 * 1024.0));
    Ok(CellResult {
        cell: cell.clone(),
        episodes_per_second: Some(rate),
        ms_per_update: Some(1000.0 * cell.batch as f64 / rate),
        repeats: rates,
        peak_rss_mib: peak_rss_mib(None),
        device_memory_mib,
        error: None,
        timing: Some(*timing),
        threads: Some(rayon::current_num_threads()),
    })
}

/// A failed cell.
fn failed(cell: &Cell, error: String) -> CellResult {
    CellResult {
        cell: cell.clone(),
        episodes_per_second: None,
        ms_per_update: None,
        repeats: Vec::new(),
        peak_rss_mib: None,
        device_memory_mib: None,
        error: Some(error),
        timing: None,
        threads: None,
    }
}

/// Runs one cell in a child process and reads its result.
fn spawn_cell(plan: &Plan, cell: &Cell) -> Result<CellResult> {
    let exe = std::env::current_exe().context("cannot find the bohp executable")?;
    let output = Command::new(exe)
        .arg("bench-cell")
        .arg("--workload")
        .arg(&cell.workload)
        .arg("--device")
        .arg(cell.device.name())
        .arg("--batch")
        .arg(cell.batch.to_string())
        .arg("--engine")
        .arg(cell.engine.name())
        .arg("--warmup")
        .arg(plan.timing.warmup.to_string())
        .arg("--updates")
        .arg(plan.timing.updates.to_string())
        .arg("--repeats")
        .arg(plan.timing.repeats.to_string())
        .arg("--configs")
        .arg(&plan.configs)
        .arg("--threads")
        .arg(rayon::current_num_threads().to_string())
        .stdin(Stdio::null())
        .output()
        .context("cannot run a bench cell")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error message")
            .trim_start_matches("error: ")
            .to_string();
        return Ok(failed(cell, message));
    }
    serde_json::from_slice(&output.stdout).context("a bench cell printed an unreadable result")
}

/// The machine's memory (`MemTotal`, KiB), on Linux.
fn machine_memory_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a child's peak resident memory until `done` is set.
fn watch_rss(
    pid: u32,
    done: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            if let Some(mib) = peak_rss_mib(Some(pid)) {
                peak_kib.fetch_max((mib * 1024.0) as u64, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// The peer's timed updates for a batch size.
fn peer_updates(batch: usize) -> usize {
    if batch == 1 { 1000 } else { 500 }
}

/// The peer's thread count: the threads bohp's cells use (`--threads`, default every core).
fn peer_threads() -> usize {
    rayon::current_num_threads()
}

/// The peer scripts (in `--peer-dir`): the single layer's, the recurrent network's, the
/// neuromodulated actor-critic's.
const PEER_SINGLE_LAYER: &str = "bohp_torch.py";
const PEER_RECURRENT: &str = "recurrent_torch.py";
const PEER_RL: &str = "backpropamine_torch.py";

/// The peer script of a workload (in `--peer-dir`), or `None` where the peers have none.
fn peer_script(configs: &Path, workload: &str) -> Option<&'static str> {
    if is_recurrent_workload(configs, workload) {
        Some(PEER_RECURRENT)
    } else if is_rl_workload(configs, workload) {
        Some(PEER_RL)
    } else if is_few_shot_workload(configs, workload) {
        None
    } else {
        Some(PEER_SINGLE_LAYER)
    }
}

/// Before anything is measured or written: `--peer-python` runs and imports torch, and every
/// workload's peer script is in `--peer-dir`. A missing peer is an error naming it, not a
/// table of failed cells.
fn check_peer(plan: &Plan, python: &Path) -> Result<()> {
    let probe = Command::new(python)
        .args(["-c", "import torch"])
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
            "--peer-python {}: cannot import torch ({last}); a peer environment: \
             python3 -m venv torch-venv && torch-venv/bin/pip install torch numpy",
            python.display()
        );
    }
    let mut workloads: Vec<&str> = plan.cells.iter().map(|c| c.workload.as_str()).collect();
    workloads.dedup();
    for workload in workloads {
        if let Some(script) = peer_script(&plan.configs, workload) {
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

/// Runs the PyTorch peer for one workload and batch size.
fn run_peer(plan: &Plan, python: &Path, workload: &str, batch: usize) -> Vec<PeerResult> {
    if is_recurrent_workload(&plan.configs, workload) {
        // The recurrent peer's autograd, and beside it its hand-written fused step.
        return PEER_IMPLS
            .iter()
            .map(|i| run_recurrent_peer(plan, python, workload, batch, i))
            .collect();
    }
    vec![run_single_peer(plan, python, workload, batch)]
}

/// Runs the peer of a single-layer or RL workload.
fn run_single_peer(plan: &Plan, python: &Path, workload: &str, batch: usize) -> PeerResult {
    if is_rl_workload(&plan.configs, workload) {
        return run_rl_peer(plan, python, workload, batch);
    }
    if is_few_shot_workload(&plan.configs, workload) {
        return PeerResult::failed(
            workload,
            batch,
            "the peers have no Omniglot workload".into(),
        );
    }
    let script = plan.peer_dir.join(PEER_SINGLE_LAYER);
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
    let command = format!("{} {}", python.display(), args.join(" "));
    let mut result = PeerResult {
        workload: workload.to_string(),
        batch,
        episodes_per_second: None,
        peak_rss_mib: None,
        command: command.clone(),
        error: None,
        implementation: autograd(),
    };
    if peer_task(workload).is_none() {
        result.error = Some(format!("the peer has no workload `{workload}`"));
        return result;
    }
    measure_peer(python, &args, result, "# train time", parse_peer_rate)
}

/// Runs the recurrent peer (`recurrent_torch.py`, autograd) at the workload's size.
fn run_recurrent_peer(
    plan: &Plan,
    python: &Path,
    workload: &str,
    batch: usize,
    implementation: &str,
) -> PeerResult {
    let script = plan.peer_dir.join(PEER_RECURRENT);
    let task = bohp::recurrent::config::RecurrentConfig::load(
        &plan.configs.join(format!("{workload}.toml")),
    )
    .and_then(|c| c.task());
    let task = match task {
        Ok(task) => task,
        Err(e) => {
            return PeerResult::failed(workload, batch, e.to_string());
        }
    };
    if task.kind != bohp::recurrent::tasks::RecurrentTaskKind::Memorisation {
        return PeerResult::failed(
            workload,
            batch,
            format!(
                "the peer has no `{}` task (memorisation only)",
                task.kind.name()
            ),
        );
    }
    let timing = recurrent_timing(&plan.timing);
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
    let command = format!("{} {}", python.display(), args.join(" "));
    let result = PeerResult {
        workload: workload.to_string(),
        batch,
        episodes_per_second: None,
        peak_rss_mib: None,
        command,
        error: None,
        implementation: implementation.to_string(),
    };
    measure_peer(python, &args, result, "# RESULT", parse_recurrent_peer_rate)
}

/// Runs the backpropamine peer (`backpropamine_torch.py`, autograd, timing mode) at the
/// workload's size: the same task, network type, neurons, batch, steps and maze side.
fn run_rl_peer(plan: &Plan, python: &Path, workload: &str, batch: usize) -> PeerResult {
    use bohp::rl::env::EnvKind;
    use bohp::rl::model::RlModelKind;
    let script = plan.peer_dir.join(PEER_RL);
    let config =
        match bohp::rl::config::RlConfig::load(&plan.configs.join(format!("{workload}.toml"))) {
            Ok(config) => config,
            Err(e) => return PeerResult::failed(workload, batch, e.to_string()),
        };
    let shape = config.env_shape();
    let task = match shape.kind {
        EnvKind::Maze => "maze",
        EnvKind::Cue => "cue",
        EnvKind::Bandit => {
            return PeerResult::failed(workload, batch, "the peer has no bandit task".into());
        }
    };
    let kind = match config.model.kind {
        RlModelKind::NonPlastic => "rnn",
        RlModelKind::Plastic => "plastic",
        RlModelKind::Simple => "modplast",
        RlModelKind::Retroactive => "modul",
        RlModelKind::Lstm => {
            return PeerResult::failed(workload, batch, "the peer has no LSTM agent".into());
        }
    };
    if config.model.fanout {
        return PeerResult::failed(workload, batch, "the peer has no fan-out of M".into());
    }
    let timing = recurrent_timing(&plan.timing);
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
    let command = format!("{} {}", python.display(), args.join(" "));
    let result = PeerResult {
        workload: workload.to_string(),
        batch,
        episodes_per_second: None,
        peak_rss_mib: None,
        command,
        error: None,
        implementation: autograd(),
    };
    measure_peer(python, &args, result, "# RESULT", parse_recurrent_peer_rate)
}

/// The episodes per second of the recurrent peer's `# RESULT ... => X s/episode, Y episodes/s; ...` line.
pub fn parse_recurrent_peer_rate(line: &str) -> Option<f64> {
    let before = line.split("episodes/s").next()?;
    before.trim().rsplit([' ', ',']).next()?.parse().ok()
}

/// Runs a peer command, sampling its memory, and reads its rate from the last line starting
/// with `marker`.
fn measure_peer(
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

/// Runs the plan, writes `bench.json` and `bench.md` to `plan.out`, and returns the report.
pub fn bench(plan: &Plan, command: String, progress: &dyn Fn(&str)) -> Result<BenchReport> {
    if let Some(python) = &plan.peer_python {
        check_peer(plan, python)?;
    }
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("{}: cannot create the output directory", plan.out.display()))?;
    let mut results = Vec::new();
    for cell in &plan.cells {
        progress(&format!(
            "bohp  {:<10} {:<7} batch {:>3} {:<8}",
            cell.workload,
            cell.device.name(),
            cell.batch,
            cell.engine.name()
        ));
        results.push(spawn_cell(plan, cell)?);
    }
    let mut peer = Vec::new();
    if let Some(python) = &plan.peer_python {
        let mut seen = Vec::new();
        for cell in &plan.cells {
            let key = (cell.workload.clone(), cell.batch);
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            progress(&format!(
                "peer  {:<10} batch {:>3}",
                cell.workload, cell.batch
            ));
            peer.extend(run_peer(plan, python, &cell.workload, cell.batch));
        }
    }
    let report = BenchReport {
        schema: SCHEMA.to_string(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        timing: plan.timing,
        command,
        results,
        peer,
    };
    let json = serde_json::to_vec_pretty(&report)?;
    bohp::run::write_atomic(&plan.out.join("bench.json"), &json)?;
    let mut md = markdown(&report);
    md += &scaling(plan, &report)?;
    bohp::run::write_atomic(&plan.out.join("bench.md"), md.as_bytes())?;
    Ok(report)
}

/// The recurrent peer's implementations, measured side by side.
const PEER_IMPLS: [&str; 2] = ["autograd", "fused"];

/// The recurrent network size of a memorisation workload (`task.size`), if it is one.
fn memorisation_size(configs: &Path, workload: &str) -> Option<usize> {
    let config =
        bohp::recurrent::config::RecurrentConfig::load(&configs.join(format!("{workload}.toml")))
            .ok()?;
    let task = config.task().ok()?;
    (task.kind == bohp::recurrent::tasks::RecurrentTaskKind::Memorisation).then_some(task.size)
}

/// With memorisation workloads of three or more sizes at batch 1: a section of `bench.md` and
/// the figure `scaling.png`/`.svg` (seconds per episode and peak memory against N, bohp's
/// fused engine and the peer), with the sizes where either failed and why.
/// A failed cell in the scaling table, in short (the whole error is in the peer table).
fn failure_kind(error: &str) -> &'static str {
    if error.contains("allocate")
        || error.contains("out of memory")
        || error.contains("MemoryError")
    {
        "failed: out of memory"
    } else {
        "failed (see above)"
    }
}

fn scaling(plan: &Plan, report: &BenchReport) -> Result<String> {
    let mut rows: Vec<(usize, String)> = report
        .results
        .iter()
        .filter(|r| r.cell.batch == 1 && r.cell.engine == BenchEngine::Fused)
        .filter_map(|r| {
            memorisation_size(&plan.configs, &r.cell.workload).map(|n| (n, r.cell.workload.clone()))
        })
        .collect();
    rows.sort();
    rows.dedup();
    if rows.len() < 3 {
        return Ok(String::new());
    }
    let mut bohp_points = Vec::new();
    let mut peer_points = vec![Vec::new(), Vec::new()];
    let mut failures = Vec::new();
    let mut md = String::from(
        "\n## Scaling (memorisation, batch 1, fused engine; `scaling.png`)\n\n| N | plastic connections | bohp s/episode | bohp peak MiB | peer autograd s/episode | peer autograd peak MiB | peer fused s/episode | peer fused peak MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (n, workload) in &rows {
        let ours = report.results.iter().find(|r| {
            r.cell.batch == 1 && r.cell.engine == BenchEngine::Fused && &r.cell.workload == workload
        });

        let cell = |rate: Option<f64>, rss: Option<f64>, error: Option<&String>| match (rate, error)
        {
            (Some(rate), None) => (format!("{:.3}", 1.0 / rate), fmt_opt(rss, 0)),
            (_, Some(e)) => (failure_kind(e).into(), fmt_opt(rss, 0)),
            _ => ("–".into(), "–".into()),
        };
        let (a, b) = match ours {
            Some(r) => {
                if let (Some(rate), Some(rss)) = (r.episodes_per_second, r.peak_rss_mib) {
                    bohp_points.push((*n as f64, 1.0 / rate, rss));
                }
                if r.error.is_some() {
                    failures.push(format!("bohp at N = {n}"));
                }
                cell(r.episodes_per_second, r.peak_rss_mib, r.error.as_ref())
            }
            None => ("–".into(), "–".into()),
        };
        let mut peer_cells = Vec::new();
        for (k, implementation) in PEER_IMPLS.iter().enumerate() {
            let peer = report.peer.iter().find(|p| {
                p.batch == 1 && &p.workload == workload && p.implementation == *implementation
            });
            peer_cells.push(match peer {
                Some(p) => {
                    if let (Some(rate), Some(rss)) = (p.episodes_per_second, p.peak_rss_mib) {
                        peer_points[k].push((*n as f64, 1.0 / rate, rss));
                    }
                    if p.error.is_some() {
                        failures.push(format!(
                            "the peer ({implementation}) at N = {n} (peak {} MiB)",
                            fmt_opt(p.peak_rss_mib, 0)
                        ));
                    }
                    cell(p.episodes_per_second, p.peak_rss_mib, p.error.as_ref())
                }
                None => ("–".into(), "–".into()),
            });
        }
        md += &format!(
            "| {n} | {} | {a} | {b} | {} | {} | {} | {} |\n",
            n * n,
            peer_cells[0].0,
            peer_cells[0].1,
            peer_cells[1].0,
            peer_cells[1].1
        );
    }
    let mut series = vec![crate::figures::ScalingSeries {
        label: "bohp fused".into(),
        points: bohp_points,
    }];
    for (implementation, points) in PEER_IMPLS.iter().zip(peer_points) {
        if !points.is_empty() {
            series.push(crate::figures::ScalingSeries {
                label: format!("PyTorch peer ({implementation})"),
                points,
            });
        }
    }
    let note = if failures.is_empty() {
        "every size ran".to_string()
    } else {
        format!("failed (see bench.md): {}", failures.join("; "))
    };
    crate::figures::scaling(
        &plan.out.join("scaling"),
        "memorisation, batch 1: time and peak memory against N (log-log)",
        &note,
        &series,
    )?;
    Ok(md)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// Episodes per second: whole numbers, three decimals below 10 (the large recurrent networks).
fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(x) if x < 10.0 => format!("{x:.3}"),
        _ => fmt_opt(v, 0),
    }
}

/// The report as markdown tables: every cell (with the peer and the ratio to it where
/// measured), then the analytic engine's speed-up over autodiff.
pub fn markdown(report: &BenchReport) -> String {
    let mut threads: Vec<usize> = report.results.iter().filter_map(|r| r.threads).collect();
    threads.sort();
    threads.dedup();
    let threads = threads
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "# bohp bench\n\n`{}`\n\n{} cores, {} thread(s) per cell and peer; {} warm-up updates, then the median of {} repeats of {} updates (recurrent workloads: at most 2, 3 and 3; each cell's own in bench.json); f32.\n\n",
        report.command,
        report.cores,
        threads,
        report.timing.warmup,
        report.timing.repeats,
        report.timing.updates
    );
    out += "| workload | batch | device | engine | episodes/s | ms/update | peak RSS (MiB) | GPU memory (MiB) | PyTorch episodes/s (fastest implementation) | × PyTorch |\n";
    out += "|---|---:|---|---|---:|---:|---:|---:|---:|---:|\n";
    for r in &report.results {
        // The peer's fastest implementation that ran (the recurrent peer has two).
        let peer = report
            .peer
            .iter()
            .filter(|p| p.workload == r.cell.workload && p.batch == r.cell.batch)
            .filter_map(|p| p.episodes_per_second)
            .reduce(f64::max);
        let ratio = r.episodes_per_second.zip(peer).map(|(a, b)| a / b);
        let rate = match &r.error {
            Some(e) => format!("failed: {e}"),
            None => fmt_rate(r.episodes_per_second),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.cell.workload,
            r.cell.batch,
            r.cell.device,
            r.cell.engine.name(),
            rate,
            fmt_opt(r.ms_per_update, 3),
            fmt_opt(r.peak_rss_mib, 0),
            fmt_opt(r.device_memory_mib, 1),
            fmt_rate(peer),
            fmt_opt(ratio, 1)
        );
    }
    let speedups: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.cell.engine == BenchEngine::Analytic)
        .filter_map(|an| {
            let ad = report.results.iter().find(|r| {
                r.cell.engine == BenchEngine::Autodiff
                    && r.cell.workload == an.cell.workload
                    && r.cell.device == an.cell.device
                    && r.cell.batch == an.cell.batch
            })?;
            let ratio = an.episodes_per_second? / ad.episodes_per_second?;
            Some(format!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.1} |\n",
                an.cell.workload,
                an.cell.batch,
                an.cell.device,
                an.episodes_per_second?,
                ad.episodes_per_second?,
                ratio
            ))
        })
        .collect();
    if !speedups.is_empty() {
        out += "\n## Analytic engine vs autodiff\n\n| workload | batch | device | analytic episodes/s | autodiff episodes/s | × autodiff |\n|---|---:|---|---:|---:|---:|\n";
        for line in speedups {
            out += &line;
        }
    }
    if !report.peer.is_empty() {
        out += "\n## PyTorch peer\n\n| workload | batch | implementation | episodes/s | peak RSS (MiB) | command |\n|---|---:|---|---:|---:|---|\n";
        for p in &report.peer {
            let rate = match &p.error {
                Some(e) => format!("failed: {e}"),
                None => fmt_rate(p.episodes_per_second),
            };
            out += &format!(
                "| {} | {} | {} | {} | {} | `{}` |\n",
                p.workload,
                p.batch,
                p.implementation,
                rate,
                fmt_opt(p.peak_rss_mib, 0),
                p.command
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaling_section_lists_each_size_and_names_failures() {
        let dir = tempfile::tempdir().unwrap();
        let text = include_str!("../../../configs/scaling/memorisation-250.toml");
        let mut results = Vec::new();
        let mut peer = Vec::new();
        for (k, n) in [250usize, 500, 1000].into_iter().enumerate() {
            let workload = format!("mem-{n}");
            std::fs::write(
                dir.path().join(format!("{workload}.toml")),
                text.replace("size = 250", &format!("size = {n}")),
            )
            .unwrap();
            results.push(CellResult {
                cell: Cell {
                    workload: workload.clone(),
                    device: Backend::Flex,
                    batch: 1,
                    engine: BenchEngine::Fused,
                },
                episodes_per_second: Some(10.0 / (k + 1) as f64),
                ms_per_update: None,
                repeats: vec![],
                peak_rss_mib: Some(100.0 * (k + 1) as f64),
                device_memory_mib: None,
                error: None,
                timing: None,
                threads: None,
            });
            peer.push(PeerResult {
                workload,
                batch: 1,
                episodes_per_second: (k < 2).then_some(1.0),
                peak_rss_mib: Some(1000.0),
                command: String::new(),
                error: (k == 2).then(|| "can't allocate memory".to_string()),
                implementation: "autograd".into(),
            });
        }
        let plan = Plan {
            cells: vec![],
            timing: Timing {
                warmup: 1,
                updates: 1,
                repeats: 1,
            },
            configs: dir.path().to_path_buf(),
            out: dir.path().to_path_buf(),
            peer_python: None,
            peer_dir: dir.path().to_path_buf(),
        };
        let report = BenchReport {
            schema: SCHEMA.into(),
            cores: 2,
            timing: plan.timing,
            command: String::new(),
            results,
            peer,
        };
        let md = scaling(&plan, &report).unwrap();
        assert!(
            md.contains("| 250 | 62500 | 0.100 | 100 | 1.000 | 1000 |"),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | 1000000 | 0.300 | 300 | failed: out of memory | 1000 | – | – |"),
            "{md}"
        );
        assert!(
            dir.path().join("scaling.png").is_file() && dir.path().join("scaling.svg").is_file()
        );
        let svg = std::fs::read_to_string(dir.path().join("scaling.svg")).unwrap();
        assert!(
            svg.contains("the peer (autograd) at N = 1000"),
            "the failure is on the figure"
        );
        // Two sizes are not a sweep: no section.
        let mut two = report.clone();
        two.results.truncate(2);
        assert_eq!(scaling(&plan, &two).unwrap(), "");
    }

    /// The repository's `peers/` holds every script the bench runs (the default --peer-dir).
    #[test]
    fn the_repository_ships_every_peer_script() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers");
        for script in [PEER_SINGLE_LAYER, PEER_RECURRENT, PEER_RL] {
            assert!(dir.join(script).is_file(), "peers/{script}");
        }
    }

    #[test]
    fn peer_rate_is_read_from_its_last_line() {
        let line =
            "# train time 4.465 s for 1000 updates x batch 1: 224.0 updates/s, 224.0 episodes/s";
        assert_eq!(parse_peer_rate(line), Some(224.0));
        assert_eq!(parse_peer_rate("# train time: nonsense"), None);
    }

    #[test]
    fn own_peak_memory_follows_an_allocation() {
        // 256 MiB touched page by page raise the high-water mark by at least that much
        // (the test process itself is far smaller than the 1 GiB limit checked first).
        let before = peak_rss_mib(None).expect("Linux reports VmHWM");
        assert!(before < 1024.0, "{before}");
        let mut block = vec![0u8; 256 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        let after = peak_rss_mib(None).expect("Linux reports VmHWM");
        assert!(after - before >= 250.0, "{before} -> {after} MiB");
        assert_eq!(
            block
                .iter()
                .step_by(4096)
                .map(|&b| b as usize)
                .sum::<usize>(),
            block.len() / 4096
        );
    }
}
