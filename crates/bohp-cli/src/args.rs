//! The command line: global flags, the subcommands and each one's arguments.

use std::path::PathBuf;

use bohp::device::{Backend, Precision};
use bohp::single::config::Engine;
use bohp_gradcheck::check::Recursion;
use clap::{Args, Parser, Subcommand};

/// Train networks with Hebbian plastic connections by backpropagation (BOHP, Miconi 2016).
#[derive(Parser, Debug)]
#[command(name = "bohp", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Compute backend: ndarray, flex, or (builds with the `wgpu`/`cuda` features) wgpu, cuda; overrides the config's `device`.
    #[arg(long, global = true, value_name = "DEVICE")]
    pub(crate) device: Option<Backend>,

    /// Float precision: f32 or f64 (overrides the config's `dtype`).
    #[arg(long, global = true, value_name = "DTYPE")]
    pub(crate) dtype: Option<Precision>,

    /// No progress bar; print only the final summary and errors.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,

    /// Threads of the host engines (rayon's pool); default: one per core. `bench` gives its
    /// cells and the peers (PyTorch, JAX) this same count.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Train a network on a task from a config file, or resume an interrupted run.
    Train(TrainArgs),
    /// Evaluate a trained run's network on fresh episodes.
    Eval(EvalArgs),
    /// Check burn's autodiff gradients against the hand-derived recursion and finite
    /// differences on a config's network and episodes; exits non-zero on a mismatch.
    Gradcheck(GradcheckArgs),
    /// Show a trained network's learned structure: heatmaps of w, α and the plastic weights
    /// α·H, and numbers that quantify fixed vs plastic connectivity.
    Inspect(InspectArgs),
    /// Reproduce the paper's figures: train each task over many seeds (the last episodes
    /// frozen), and write median/IQR statistics, figures and learned-structure summaries.
    Reproduce(ReproduceArgs),
    /// Measure training throughput (episodes/s) and peak memory per workload, device, batch
    /// size and gradient engine, optionally beside the PyTorch peer; writes bench.json and
    /// bench.md.
    Bench(BenchArgs),
    /// Write a finished run's trained parameters, named and shaped as in the model, for use
    /// outside Rust: safetensors, npz (numpy) or JSON. Every model family.
    Export(ExportArgs),
    /// The generated space of meta-RL tasks: generate a task set as a file, or describe and
    /// draw the tasks of one (docs/metatasks.md).
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// One benchmark cell, measured in this process (run by `bench`).
    #[command(hide = true)]
    BenchCell(BenchCellArgs),
}

/// `bohp tasks …`.
#[derive(Subcommand, Debug)]
pub(crate) enum TasksCommand {
    /// Generate tasks from a seed (the paper's rejection tests applied) and write them as a
    /// task-set file: TOML, or JSON when the name ends in .json. Tasks 0..N of a seed are the
    /// same whatever the count, so `task.train_tasks`/`task.heldout_tasks` of a config with
    /// `task.generator_seed = S` are this command's first tasks.
    Generate(TasksGenerateArgs),
    /// Describe the tasks of a task-set file (or the named tasks), and draw each state graph
    /// as SVG.
    Show(TasksShowArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TasksGenerateArgs {
    /// Tasks to generate.
    #[arg(long)]
    pub(crate) count: usize,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Also write the five named tasks (bandit, harlow, t-maze, two-step, key-door) after the
    /// generated ones.
    #[arg(long)]
    pub(crate) named: bool,
    /// The task-set file to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct TasksShowArgs {
    /// A task-set file (TOML or JSON), or `named` for the named tasks.
    pub(crate) file: String,
    /// Write each task's state graph as <DIR>/<task name>.svg.
    #[arg(long, value_name = "DIR")]
    pub(crate) draw: Option<PathBuf>,
    /// Show only these tasks (their names, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    /// The config file (TOML), e.g. configs/one-shot.toml.
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    pub(crate) config: Option<PathBuf>,

    /// Continue the interrupted run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub(crate) resume: Option<PathBuf>,

    /// Number of episodes (parameter updates), overriding `train.episodes`; single-layer
    /// configs scale their frozen phase (`train.freeze_last`) to the same share of the run.
    #[arg(long, conflicts_with = "resume")]
    pub(crate) episodes: Option<usize>,

    /// Random seed, overriding `seed`.
    #[arg(long, conflicts_with = "resume")]
    pub(crate) seed: Option<u64>,

    /// The run directory to create [default: runs/<config name>, or runs/<config name>-N if taken].
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub(crate) out: Option<PathBuf>,

    /// With --resume: add N updates to a finished run (its last `train.freeze_last` frozen
    /// again); the extended run is itself resumable.
    #[arg(long, value_name = "N")]
    pub(crate) extend: Option<usize>,

    /// Gradient engine, overriding `train.engine`: fused, analytic or autodiff (single layer),
    /// fused or autodiff (recurrent and RL).
    #[arg(long, conflicts_with = "resume")]
    pub(crate) engine: Option<Engine>,
}

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// A run directory written by `bohp train` (any family).
    pub(crate) run_dir: PathBuf,

    /// Number of fresh episodes.
    #[arg(long, default_value_t = 1000)]
    pub(crate) episodes: usize,

    /// Seed of the evaluation episodes [default: the run's seed].
    #[arg(long)]
    pub(crate) seed: Option<u64>,

    /// Episodes evaluated at once.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch: usize,

    /// Print the measures as JSON.
    #[arg(long)]
    pub(crate) json: bool,

    /// Omniglot runs: also measure the error on Lake et al.'s one-shot runs (`all_runs.zip`
    /// or its directory), beside the modified-Hausdorff baseline.
    #[arg(long, value_name = "PATH")]
    pub(crate) omniglot_runs: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct GradcheckArgs {
    /// The config file (TOML): task, sizes, rule, seed (initial parameters), device and dtype.
    /// Single layer: autodiff and finite differences against the analytic recursion.
    /// Recurrent: autodiff, the fused engine and finite differences against RTRL (networks of
    /// at most 64 neurons; larger ones against the fused engine), with or without a modulator;
    /// the LSTM baseline against finite differences (with --dtype f64). Reinforcement learning
    /// (bandit, cue, maze): on a recorded replay of A2C episodes, autodiff, the fused engine,
    /// forward mode and finite differences against the host reverse pass. Omniglot: the
    /// plastic layer against a host reference and finite differences, the convolutional
    /// embedding against finite differences (with --dtype f64).
    pub(crate) config: PathBuf,

    /// Episodes in the checked batch.
    #[arg(long, default_value_t = 4)]
    pub(crate) episodes: usize,

    /// Steps per episode, overriding `task.steps` (one-shot, reversal).
    #[arg(long)]
    pub(crate) steps: Option<usize>,

    /// Skip the finite-difference comparison (slow for long episodes; recurrent networks check
    /// 24 evenly spaced entries per parameter group, reinforcement learning 8).
    #[arg(long)]
    pub(crate) no_finite_differences: bool,

    /// Write one episode (parameters, inputs, targets, outputs, traces, loss, gradients of
    /// each method) as JSON to this file; schema in docs/gradients.md.
    #[arg(long, value_name = "FILE")]
    pub(crate) dump: Option<PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,

    /// The reference recursion: correct, or a known-wrong one to watch the check fail:
    /// paper-weighting (Eq. 3-4's `(1-γ)γ^(tz-tu)`) or double-tanh (the original code's
    /// `1 - tanh(y)²`), single layer only; new-trace (`H(t)` read where `H(t-1)` is due),
    /// rate-on-old-trace (hebb), oja-decay-dropped (oja) or gradient-through-clip (clipped);
    /// neuromodulated networks: eligibility-first (retroactive: `E` updated before it moves
    /// `H`; actor-critic and Omniglot) or previous-modulation (`M(t-1)` credited with step
    /// t's update; actor-critic).
    #[arg(long, default_value = "correct")]
    pub(crate) recursion: Recursion,
}

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// A finished run directory.
    pub(crate) run_dir: PathBuf,

    /// Where to write weights.png and structure.json [default: <RUN_DIR>/inspect].
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,

    /// Fresh episodes to average the plastic weights α·H over.
    #[arg(long, default_value_t = 200)]
    pub(crate) episodes: usize,

    /// Print the structure as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ReproduceArgs {
    /// completion, one-shot, reversal or all (the 2016 tasks); or bandit, cue, maze (network
    /// kinds compared by reinforcement learning, see --kinds).
    pub(crate) target: String,

    /// bandit, cue, maze: the network kinds compared, comma-separated, each parameter-matched
    /// to the task config's network.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "non-plastic,plastic,simple,retroactive,lstm"
    )]
    pub(crate) kinds: Vec<bohp::rl::model::RlModelKind>,

    /// Number of seeds per task (seeds first-seed, first-seed + 1, ...).
    #[arg(long, default_value_t = 20)]
    pub(crate) seeds: u64,

    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) first_seed: u64,

    /// Seeds trained at once, each on a thread of the pool, so at most --threads [default:
    /// the number of CPU cores].
    #[arg(long)]
    pub(crate) jobs: Option<usize>,

    /// Output directory; an interrupted reproduction resumes from what it holds.
    #[arg(long, value_name = "DIR", default_value = "reproduce")]
    pub(crate) out: PathBuf,

    /// Plasticity variants, comma-separated: learned (the paper's network), none (α = 0) and
    /// nonnegative (α clipped to ≥ 0), or all.
    #[arg(long, default_value = "learned", value_delimiter = ',')]
    pub(crate) plasticity: Vec<String>,

    /// Directory holding the task configs <task>.toml.
    #[arg(long, value_name = "DIR", default_value = "configs")]
    pub(crate) configs: PathBuf,

    /// Fresh episodes per seed for the learned-structure measurement.
    #[arg(long, default_value_t = 200)]
    pub(crate) inspect_episodes: usize,

    /// Updates per seed, overriding each task's `train.episodes` for a quick look (the frozen
    /// phase keeps its share of the run).
    #[arg(long)]
    pub(crate) episodes: Option<usize>,

    /// bandit, cue, maze: the LSTM's learning rate, overriding the task config's
    /// `train.learning_rate` for that kind only (the LSTM needs a larger one than the plastic
    /// networks: docs/neuromodulation.md §4); the summary lists each kind's rate
    #[arg(long)]
    pub(crate) lstm_learning_rate: Option<f64>,

    /// Train only the K-th of N slices of the runs (every N-th, round-robin) and summarize
    /// nothing: one slice per machine or Slurm array task (docs/reproduce.md)
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<crate::shard::Shard>,

    /// Gather the finished runs of these slices' --out directories into --out, then write the
    /// summary and figures as an unsharded run would; a run no slice finished is an error
    #[arg(long, value_name = "DIR", num_args = 1..)]
    pub(crate) merge: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Workloads (task config names in --configs), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "completion,one-shot,reversal"
    )]
    pub(crate) workloads: Vec<String>,

    /// Devices, comma-separated (ndarray, flex, and in GPU builds wgpu, cuda).
    #[arg(long, value_delimiter = ',', default_value = "flex,ndarray")]
    pub(crate) devices: Vec<Backend>,

    /// Batch sizes (independent episodes per update), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub(crate) batches: Vec<usize>,

    /// Gradient engines, comma-separated: autodiff, analytic (single-layer tasks), fused
    /// (recurrent tasks); each workload runs the ones that apply to it.
    #[arg(long, value_delimiter = ',', default_value = "autodiff,analytic,fused")]
    pub(crate) engines: Vec<crate::bench::BenchEngine>,

    #[command(flatten)]
    pub(crate) timing: TimingArgs,

    /// Directory holding the workload configs <workload>.toml.
    #[arg(long, value_name = "DIR", default_value = "configs")]
    pub(crate) configs: PathBuf,

    /// Output directory for bench.json and bench.md.
    #[arg(long, value_name = "DIR", default_value = "bench")]
    pub(crate) out: PathBuf,

    /// A Python interpreter with the peers' frameworks: also measure the peers (`--peer`) on
    /// the same workloads and batch sizes, in the same run.
    #[arg(long, value_name = "PYTHON")]
    pub(crate) peer_python: Option<PathBuf>,

    /// Which peers `--peer-python` runs: PyTorch (`*_torch.py`, eager), JAX (`*_jax.py`, one
    /// jit-compiled update; its compile time is reported apart), or both.
    #[arg(long, value_enum, default_value_t = PeerChoice::Torch, requires = "peer_python")]
    pub(crate) peer: PeerChoice,

    /// Directory of the peer scripts: the project's own (`peers/` of the repository), or any
    /// directory with scripts of the same names and command lines.
    #[arg(long, value_name = "DIR", default_value = "peers")]
    pub(crate) peer_dir: PathBuf,
}

/// `bohp bench --peer`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerChoice {
    /// The PyTorch peers.
    Torch,
    /// The JAX peers.
    Jax,
    /// Both.
    Both,
}

#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct TimingArgs {
    /// Updates before timing starts.
    #[arg(long, default_value_t = 50)]
    pub(crate) warmup: usize,

    /// Updates per timed repeat.
    #[arg(long, default_value_t = 300)]
    pub(crate) updates: usize,

    /// Timed repeats (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) repeats: usize,

    /// The longest a cell's warm-up or first repeat runs: it stops early (after at least one
    /// update) once this many seconds have passed, and later repeats run as many updates as
    /// the first. The same rule in every family; the counts run are recorded.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) seconds: f64,
}

#[derive(Args, Debug)]
pub(crate) struct BenchCellArgs {
    #[arg(long)]
    pub(crate) workload: String,
    #[arg(long = "batch")]
    pub(crate) batch: usize,
    #[arg(long)]
    pub(crate) engine: crate::bench::BenchEngine,
    #[command(flatten)]
    pub(crate) timing: TimingArgs,
    #[arg(long, value_name = "DIR")]
    pub(crate) configs: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// A finished run directory (any family).
    pub(crate) run_dir: PathBuf,

    /// safetensors (burn's store), npz (numpy) or json.
    #[arg(long, default_value = "safetensors")]
    pub(crate) format: bohp::export::ExportFormat,

    /// The file to write [default: RUN_DIR/model.<format>]; an existing file is never replaced.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}
