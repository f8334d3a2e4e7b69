//! `bohp bench`: training throughput and peak memory per workload, device, batch size and
//! gradient engine, optionally beside the PyTorch peer measured in the same run.
//!
//! Every cell runs in its own child process (`bohp bench-cell`): burn fixes a device's set-up
//! once per process, and a process's peak resident memory then belongs to one cell alone.
//!
//! This file holds the plan, the report's types and the run over cells and peers; [`cells`]
//! measures one cell of each family, `peers` the PyTorch peers, `scaling` the scaling
//! section and [`report`] writes `bench.md`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bohp::device::Backend;
use serde::{Deserialize, Serialize};

mod cells;
mod peers;
mod report;
mod scaling;

pub use cells::*;
use peers::*;
pub use report::*;
use scaling::*;

/// The schema name written into `bench.json`.
pub const SCHEMA: &str = "bohp-bench/2";

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

/// How long each cell is measured: the same rule for every family
/// ([`bohp::family::bench`]): at most `warmup` warm-up updates and `updates` updates per
/// repeat, each phase stopping early after `seconds`, later repeats as long as the first.
pub use bohp::family::bench::BenchTiming as Timing;

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
    /// The warm-up, updates per repeat and repeats this cell really ran (a slow cell stops its
    /// warm-up and first repeat after `seconds`).
    #[serde(default)]
    pub timing: Option<Timing>,
    /// The threads the cell's host computation could use (rayon's pool).
    #[serde(default)]
    pub threads: Option<usize>,
}

/// A peer's framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    /// PyTorch, eager (`*_torch.py`).
    Torch,
    /// JAX, one `jit`-compiled update (`*_jax.py`).
    Jax,
}

impl Framework {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Torch => "torch",
            Framework::Jax => "jax",
        }
    }

    /// The name in tables.
    pub fn title(self) -> &'static str {
        match self {
            Framework::Torch => "PyTorch",
            Framework::Jax => "JAX",
        }
    }
}

fn torch() -> Framework {
    Framework::Torch
}

/// One peer measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// The peer's framework (`torch` in reports written before JAX peers).
    #[serde(default = "torch")]
    pub framework: Framework,
    /// Seconds the peer spent compiling before its timed updates (JAX: tracing and XLA), not
    /// counted in its rate.
    #[serde(default)]
    pub compile_seconds: Option<f64>,
    /// The peer's own first line: its framework's version, thread count and flags.
    #[serde(default)]
    pub header: Option<String>,
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

/// The implementation of a peer that differentiates by its framework's autograd alone.
pub(super) const AUTOGRAD: &str = "autograd";

fn autograd() -> String {
    AUTOGRAD.into()
}

impl PeerResult {
    /// A peer measurement about to run `python args`.
    fn started(
        framework: Framework,
        workload: &str,
        batch: usize,
        python: &std::path::Path,
        args: &[String],
        implementation: &str,
    ) -> PeerResult {
        PeerResult {
            framework,
            compile_seconds: None,
            header: None,
            workload: workload.to_string(),
            batch,
            episodes_per_second: None,
            peak_rss_mib: None,
            command: format!("{} {}", python.display(), args.join(" ")),
            error: None,
            implementation: implementation.to_string(),
        }
    }

    /// A peer measurement that could not be run.
    fn failed(framework: Framework, workload: &str, batch: usize, error: String) -> PeerResult {
        PeerResult {
            command: String::new(),
            error: Some(error),
            ..PeerResult::started(
                framework,
                workload,
                batch,
                std::path::Path::new(""),
                &[],
                AUTOGRAD,
            )
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
    /// The Python interpreter with the peers' frameworks, to measure the peers too.
    pub peer_python: Option<PathBuf>,
    /// The peers to measure (`--peer`).
    pub peers: Vec<Framework>,
    /// The directory of the peer scripts.
    pub peer_dir: PathBuf,
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
        .arg("--seconds")
        .arg(plan.timing.seconds.to_string())
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

/// The timing the cells of `workload` at `batch` really ran, the fewest updates among them:
/// what the peer of that workload runs, so that it does no less work than bohp's slowest cell.
fn timing_ran(results: &[CellResult], workload: &str, batch: usize) -> Option<Timing> {
    results
        .iter()
        .filter(|r| r.cell.workload == workload && r.cell.batch == batch)
        .filter_map(|r| r.timing)
        .min_by_key(|t| (t.updates, t.warmup))
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
            let timing = timing_ran(&results, &cell.workload, cell.batch).unwrap_or(plan.timing);
            for &framework in &plan.peers {
                progress(&format!(
                    "{:<5} {:<10} batch {:>3}",
                    framework.name(),
                    cell.workload,
                    cell.batch
                ));
                peer.extend(run_peer(
                    plan,
                    python,
                    framework,
                    &cell.workload,
                    cell.batch,
                    &timing,
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_scaling_section_lists_each_size_and_names_failures() {
        let dir = tempfile::tempdir().unwrap();
        let text = include_str!("../../../../configs/scaling/memorisation-250.toml");
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
                framework: Framework::Torch,
                compile_seconds: None,
                header: None,
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
                seconds: 1.0,
            },
            configs: dir.path().to_path_buf(),
            out: dir.path().to_path_buf(),
            peer_python: None,
            peers: vec![Framework::Torch],
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
        for script in [
            PEER_SINGLE_LAYER,
            PEER_RECURRENT,
            PEER_RL,
            JAX_SINGLE_LAYER,
            JAX_RECURRENT,
        ] {
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
