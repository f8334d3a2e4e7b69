//! `bohp`: train, resume, evaluate, gradient-check, inspect and reproduce plastic networks on
//! the BOHP paper's tasks.

mod bench;
mod figures;
mod inspect;
mod recurrent;
mod reproduce;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bohp::config::{GradEngine, RunConfig};
use bohp::device::{Backend, Precision, init_device};
use bohp::run::{MetricsRow, RunDir, load_model};
use bohp::tasks::Measures;
use bohp::train::{
    Autodiff, GradientEngine, Observer, Outcome, Trainer, evaluate, init_model, train,
};
use bohp_gradcheck::check::{AnyConfig, CheckOptions, Recursion, check_any};
use burn::module::Module;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Train networks with Hebbian plastic connections by backpropagation (BOHP, Miconi 2016).
#[derive(Parser, Debug)]
#[command(name = "bohp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Compute backend: ndarray, flex, or (builds with the `wgpu`/`cuda` features) wgpu, cuda; overrides the config's `device`.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<Backend>,

    /// Float precision: f32 or f64 (overrides the config's `dtype`).
    #[arg(long, global = true, value_name = "DTYPE")]
    dtype: Option<Precision>,

    /// No progress bar; print only the final summary and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// One benchmark cell, measured in this process (run by `bench`).
    #[command(hide = true)]
    BenchCell(BenchCellArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Workloads (task config names in --configs), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "completion,one-shot,reversal"
    )]
    workloads: Vec<String>,

    /// Devices, comma-separated (ndarray, flex, and in GPU builds wgpu, cuda).
    #[arg(long, value_delimiter = ',', default_value = "flex,ndarray")]
    devices: Vec<Backend>,

    /// Batch sizes (independent episodes per update), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    batches: Vec<usize>,

    /// Gradient engines, comma-separated: autodiff, analytic (single-layer tasks), fused
    /// (recurrent tasks); each workload runs the ones that apply to it.
    #[arg(long, value_delimiter = ',', default_value = "autodiff,analytic,fused")]
    engines: Vec<bench::BenchEngine>,

    #[command(flatten)]
    timing: TimingArgs,

    /// Directory holding the workload configs <workload>.toml.
    #[arg(long, value_name = "DIR", default_value = "configs")]
    configs: PathBuf,

    /// Output directory for bench.json and bench.md.
    #[arg(long, value_name = "DIR", default_value = "bench")]
    out: PathBuf,

    /// A Python interpreter with torch: also measure the PyTorch peer (bohp_torch.py) on the
    /// same workloads and batch sizes, in the same run.
    #[arg(long, value_name = "PYTHON")]
    peer_python: Option<PathBuf>,

    /// Directory of the peer scripts.
    #[arg(long, value_name = "DIR", default_value = "../shared/peers")]
    peer_dir: PathBuf,
}

#[derive(Args, Debug, Clone, Copy)]
struct TimingArgs {
    /// Updates before timing starts.
    #[arg(long, default_value_t = 50)]
    warmup: usize,

    /// Updates per timed repeat.
    #[arg(long, default_value_t = 300)]
    updates: usize,

    /// Timed repeats (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

#[derive(Args, Debug)]
struct BenchCellArgs {
    #[arg(long)]
    workload: String,
    #[arg(long = "batch")]
    batch: usize,
    #[arg(long)]
    engine: bench::BenchEngine,
    #[command(flatten)]
    timing: TimingArgs,
    #[arg(long, value_name = "DIR")]
    configs: PathBuf,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// A finished run directory.
    run_dir: PathBuf,

    /// Where to write weights.png and structure.json [default: <RUN_DIR>/inspect].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Fresh episodes to average the plastic weights α·H over.
    #[arg(long, default_value_t = 200)]
    episodes: usize,

    /// Print the structure as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReproduceArgs {
    /// completion, one-shot, reversal or all.
    target: String,

    /// Number of seeds per task (seeds first-seed, first-seed + 1, ...).
    #[arg(long, default_value_t = 20)]
    seeds: u64,

    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,

    /// Seeds trained at once [default: the number of CPU cores].
    #[arg(long)]
    jobs: Option<usize>,

    /// Output directory; an interrupted reproduction resumes from what it holds.
    #[arg(long, value_name = "DIR", default_value = "reproduce")]
    out: PathBuf,

    /// Plasticity variants, comma-separated: learned (the paper's network), none (α = 0) and
    /// nonnegative (α clipped to ≥ 0), or all.
    #[arg(long, default_value = "learned", value_delimiter = ',')]
    plasticity: Vec<String>,

    /// Directory holding the task configs <task>.toml.
    #[arg(long, value_name = "DIR", default_value = "configs")]
    configs: PathBuf,

    /// Fresh episodes per seed for the learned-structure measurement.
    #[arg(long, default_value_t = 200)]
    inspect_episodes: usize,

    /// Updates per seed, overriding each task's `train.episodes` for a quick look (the frozen
    /// phase keeps its share of the run).
    #[arg(long)]
    episodes: Option<usize>,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// A finished run directory (any family).
    run_dir: PathBuf,

    /// safetensors (burn's store), npz (numpy) or json.
    #[arg(long, default_value = "safetensors")]
    format: bohp::export::ExportFormat,

    /// The file to write [default: RUN_DIR/model.<format>]; an existing file is never replaced.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct GradcheckArgs {
    /// The config file (TOML) of either family: task, sizes, rule, seed (initial parameters),
    /// device and dtype. Single layer: autodiff and finite differences against the analytic
    /// recursion. Recurrent: autodiff, the fused engine and finite differences against RTRL
    /// (networks of at most 64 neurons; larger ones against the fused engine).
    config: PathBuf,

    /// Episodes in the checked batch.
    #[arg(long, default_value_t = 4)]
    episodes: usize,

    /// Steps per episode, overriding `task.steps` (one-shot, reversal).
    #[arg(long)]
    steps: Option<usize>,

    /// Skip the finite-difference comparison (slow for long episodes; recurrent networks check
    /// 24 evenly spaced entries per parameter group).
    #[arg(long)]
    no_finite_differences: bool,

    /// Write one episode (parameters, inputs, targets, outputs, traces, loss, gradients of
    /// each method) as JSON to this file; schema in docs/gradients.md.
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// The reference recursion: correct, or a known-wrong one to watch the check fail:
    /// paper-weighting (Eq. 3-4's `(1-γ)γ^(tz-tu)`) or double-tanh (the original code's
    /// `1 - tanh(y)²`), single layer only; new-trace (`H(t)` read where `H(t-1)` is due),
    /// rate-on-old-trace (hebb), oja-decay-dropped (oja) or gradient-through-clip (clipped).
    #[arg(long, default_value = "correct")]
    recursion: Recursion,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// The config file (TOML), e.g. configs/one-shot.toml.
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    config: Option<PathBuf>,

    /// Continue the interrupted run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,

    /// Number of episodes (parameter updates), overriding `train.episodes`; single-layer
    /// configs scale their frozen phase (`train.freeze_last`) to the same share of the run.
    #[arg(long, conflicts_with = "resume")]
    episodes: Option<usize>,

    /// Random seed, overriding `seed`.
    #[arg(long, conflicts_with = "resume")]
    seed: Option<u64>,

    /// The run directory to create [default: runs/<config name>, or runs/<config name>-N if taken].
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,

    /// With --resume: add N updates to a finished run (its last `train.freeze_last` frozen
    /// again); the extended run is itself resumable.
    #[arg(long, value_name = "N")]
    extend: Option<usize>,

    /// Gradient engine: autodiff or analytic, overriding `train.grad`.
    #[arg(long, conflicts_with = "resume")]
    grad: Option<GradEngine>,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A run directory written by `bohp train` (any family).
    run_dir: PathBuf,

    /// Number of fresh episodes.
    #[arg(long, default_value_t = 1000)]
    episodes: usize,

    /// Seed of the evaluation episodes [default: the run's seed].
    #[arg(long)]
    seed: Option<u64>,

    /// Episodes evaluated at once.
    #[arg(long, default_value_t = 100)]
    batch: usize,

    /// Print the measures as JSON.
    #[arg(long)]
    json: bool,
}

/// Set by Ctrl-C: training stops after the current episode and writes a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: bohp's errors already include their
/// OS error in their message, so a cause whose text the line holds is not repeated.
fn error_text(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
    }
    out
}

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Train(args) => train_command(&cli, args),
        Command::Eval(args) => eval_command(&cli, args),
        Command::Gradcheck(args) => gradcheck_command(&cli, args),
        Command::Inspect(args) => inspect_command(args),
        Command::Reproduce(args) => reproduce_command(&cli, args),
        Command::Bench(args) => bench_command(&cli, args),
        Command::Export(args) => {
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| bohp::export::default_path(&args.run_dir, args.format));
            let count = bohp::export::export(&args.run_dir, args.format, &out)?;
            println!(
                "wrote {count} tensors to {} ({})",
                out.display(),
                args.format.name()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchCell(args) => bench_cell_command(&cli, args),
    }
}

/// `runs/<stem>`, or the first free `runs/<stem>-N`.
fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let base = PathBuf::from("runs");
    let mut candidate = base.join(&stem);
    let mut n = 2;
    while candidate.exists() {
        candidate = base.join(format!("{stem}-{n}"));
        n += 1;
    }
    candidate
}

fn init_logging(run: &RunDir) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log_path())
        .with_context(|| format!("{}: cannot open the log", run.log_path().display()))?;
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Ctrl-C sets [`STOP`] (training stops after the current update); a second Ctrl-C exits at
/// once with code 130.
fn install_stop_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(())
}

impl TrainArgs {
    /// Applies `--episodes` and `--seed` (keys every config kind has) and returns the flags
    /// given, for error messages.
    fn override_schedule(&self, episodes: &mut usize, seed: &mut u64) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if let Some(e) = self.episodes {
            *episodes = e;
            flags.push("--episodes");
        }
        if let Some(s) = self.seed {
            *seed = s;
            flags.push("--seed");
        }
        flags
    }
}

/// Whether the config file at `path` is a recurrent one (memorisation, images).
fn is_recurrent_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| bohp::recurrent::config::is_recurrent(&text))
}

fn train_recurrent_command(cli: &Cli, args: &TrainArgs, path: &Path) -> Result<ExitCode> {
    use bohp::recurrent::config::{RecurrentConfig, RecurrentEngine};
    let mut config = RecurrentConfig::load(path)?;
    let mut flags = args.override_schedule(&mut config.train.episodes, &mut config.seed);
    if let Some(grad) = args.grad {
        config.train.engine = match grad {
            GradEngine::Autodiff => RecurrentEngine::Autodiff,
            GradEngine::Analytic => bail!(
                "--grad analytic: recurrent networks train with `fused` (the default) or `autodiff`; \
                 the analytic (RTRL) recursion is a check for small networks (see docs/recurrent.md)"
            ),
        };
        flags.push("--grad");
    }
    if let Some(device) = cli.device {
        config.device = device;
        flags.push("--device");
    }
    if let Some(dtype) = cli.dtype {
        config.dtype = dtype;
    }
    config.validate(&if flags.is_empty() {
        path.display().to_string()
    } else {
        format!("{} with {}", path.display(), flags.join(" "))
    })?;
    init_device(config.device, config.dtype)?;
    // Everything that can fail before the first update (reading CIFAR files, the device)
    // happens before the run directory exists.
    let trainer = bohp::recurrent::train::RecurrentTrainer::new(config.clone())?;
    let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
    let run = RunDir::create(&dir)?;
    install_stop_handler()?;
    init_logging(&run)?;
    let Some(summary) = recurrent::train(&run, trainer, config, cli.quiet, &STOP)? else {
        eprintln!(
            "interrupted: {} holds the parameters so far (no summary.json: the run did not finish); \
             recurrent runs cannot be resumed yet",
            run.model_path().display()
        );
        return Ok(ExitCode::from(130));
    };
    println!("{}", recurrent::summary_text(&summary));
    println!("run directory: {}", run.path().display());
    Ok(ExitCode::SUCCESS)
}

fn train_command(cli: &Cli, args: &TrainArgs) -> Result<ExitCode> {
    if args.extend.is_some() && args.resume.is_none() {
        bail!("--extend N: adds updates to a finished run, so it goes with --resume RUN_DIR");
    }
    if let Some(path) = &args.config
        && is_recurrent_file(path)
    {
        return train_recurrent_command(cli, args, path);
    }
    if let Some(dir) = &args.resume
        && is_recurrent_file(&dir.join("config.toml"))
    {
        bail!(
            "{}: resuming recurrent runs is not supported yet; the run's model.bpk holds its last saved parameters",
            dir.display()
        );
    }
    let (run, config, mut trainer) = if let Some(dir) = &args.resume {
        let run = RunDir::open(dir)?;
        let mut config = run.read_config()?;
        if let Some(dtype) = cli.dtype
            && dtype != config.dtype
        {
            bail!(
                "--dtype {dtype}: the run in {} was trained in {}; resume it in the same precision",
                dir.display(),
                config.dtype
            );
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        let mut trainer = Trainer::resume(&run, config.clone(), engine(config.train.grad))?;
        if let Some(updates) = args.extend {
            trainer.extend(
                updates,
                &format!("{} with --extend {updates}", run.config_path().display()),
            )?;
            let mut extended = trainer.config().clone();
            // The run's own device, not a --device override, goes into its config.
            extended.device = run.read_config()?.device;
            run.write_config(&extended)?;
            trainer.checkpoint(&run)?;
            let summary = run.summary_path();
            if summary.exists() {
                std::fs::remove_file(&summary)
                    .with_context(|| format!("{}: cannot remove", summary.display()))?;
            }
            eprintln!(
                "{}: extended by {updates} updates to {} (the last {} frozen)",
                run.path().display(),
                extended.train.episodes,
                extended.train.freeze_last
            );
        }
        let config = trainer.config().clone();
        (run, config, trainer)
    } else {
        let path = args
            .config
            .as_ref()
            .expect("clap requires a config without --resume");
        let mut config = RunConfig::load(path)?;
        let configured = config.train.episodes;
        let flags = args.override_schedule(&mut config.train.episodes, &mut config.seed);
        if let Some(note) = config.scale_frozen_phase(configured) {
            eprintln!("{note}");
        }
        if let Some(grad) = args.grad {
            config.train.grad = grad;
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        if let Some(dtype) = cli.dtype {
            config.dtype = dtype;
        }
        if !flags.is_empty() {
            config.validate(&format!("{} with {}", path.display(), flags.join(" ")))?;
        }
        // Fail on an unusable device, or anything else the trainer needs, before creating
        // anything.
        init_device(config.device, config.dtype)?;
        let trainer = Trainer::new(config.clone(), engine(config.train.grad))?;
        let dir = args.out.clone().unwrap_or_else(|| default_run_dir(path));
        let run = RunDir::create(&dir)?;
        run.write_config(&config)?;
        (run, config, trainer)
    };

    install_stop_handler()?;
    let total = config.train.episodes;
    init_logging(&run)?;
    if trainer.is_done() {
        println!(
            "{}: the run has already finished its {total} episodes; nothing to do",
            run.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(
        task = %config.task.kind,
        device = %config.device,
        dtype = %config.dtype,
        from_episode = trainer.next_episode(),
        episodes = total,
        "training"
    );
    if !cli.quiet {
        eprintln!(
            "{} {} on {} ({}, {} gradients), episodes {}..{total}, batch {} -> {}",
            if args.resume.is_some() {
                "resuming"
            } else {
                "training"
            },
            config.task.kind,
            config.device,
            config.dtype,
            config.train.grad,
            trainer.next_episode(),
            config.train.batch,
            run.path().display()
        );
    }
    let mut progress = Progress::new(total, trainer.next_episode(), cli.quiet);
    let started = Instant::now();
    let first = trainer.next_episode();
    let outcome = train(&run, &mut trainer, &mut progress, &STOP);
    progress.bar.finish_and_clear();
    match outcome? {
        Outcome::Interrupted { next_episode } => {
            eprintln!(
                "interrupted before episode {next_episode}: checkpoint written; continue with \
                 `bohp train --resume {}`",
                run.path().display()
            );
            Ok(ExitCode::from(130))
        }
        Outcome::Finished(summary) => {
            let seconds = started.elapsed().as_secs_f64();
            let ran = total - first;
            println!(
                "finished {} episodes of {} in {seconds:.1} s ({:.0} episodes/s, batch {})",
                ran,
                summary.task,
                (ran * summary.batch) as f64 / seconds.max(1e-9),
                summary.batch
            );
            if let Some(frozen) = summary.frozen {
                println!(
                    "frozen phase ({} episodes): {}",
                    config.train.freeze_last,
                    format_measures(&frozen)
                );
            }
            println!("last 100 episodes: {}", format_measures(&summary.last_100));
            println!("run directory: {}", run.path().display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Refuses a recurrent run directory in a command that reads single-layer runs.
fn single_layer_run(command: &str, dir: &Path) -> Result<()> {
    if is_recurrent_file(&dir.join("config.toml")) {
        bail!(
            "{}: `bohp {command}` reads single-layer runs; this is a recurrent run, whose held-out \
             error, loss and peak memory are in its summary.json (and reconstruction.png for images)",
            dir.display()
        );
    }
    Ok(())
}

fn inspect_command(args: &InspectArgs) -> Result<ExitCode> {
    single_layer_run("inspect", &args.run_dir)?;
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("inspect"));
    let structure = inspect::inspect(&args.run_dir, &out, args.episodes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&structure)?);
    } else {
        print!("{}", structure.text());
        println!(
            "wrote {} and {}",
            out.join("weights.png").display(),
            out.join("structure.json").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn reproduce_command(cli: &Cli, args: &ReproduceArgs) -> Result<ExitCode> {
    if args.seeds == 0 {
        bail!("--seeds: expected at least 1");
    }
    if args.inspect_episodes == 0 {
        bail!("--inspect-episodes: expected at least 1");
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if jobs == 0 {
        bail!("--jobs: expected at least 1");
    }
    let mut variants = Vec::new();
    for name in &args.plasticity {
        if name == "all" {
            variants.extend(bohp::config::Plasticity::ALL);
        } else {
            variants.push(
                name.parse::<bohp::config::Plasticity>()
                    .map_err(|e| anyhow::anyhow!("--plasticity: {e}"))?,
            );
        }
    }
    variants.dedup();
    let plan = reproduce::Plan {
        tasks: reproduce::tasks_of(&args.target)?,
        variants,
        seeds: (args.first_seed..args.first_seed + args.seeds).collect(),
        configs: args.configs.clone(),
        out: args.out.clone(),
        jobs,
        inspect_episodes: args.inspect_episodes,
        episodes: args.episodes,
        quiet: cli.quiet,
    };
    install_stop_handler()?;
    let started = Instant::now();
    match reproduce::reproduce(&plan, &STOP)? {
        None => {
            eprintln!(
                "interrupted: every seed wrote a checkpoint; run the same command again to continue"
            );
            Ok(ExitCode::from(130))
        }
        Some(summaries) => {
            println!(
                "reproduced {} task/variant pairs x {} seeds in {:.0} s ({} jobs)",
                summaries.len(),
                plan.seeds.len(),
                started.elapsed().as_secs_f64(),
                jobs
            );
            for s in &summaries {
                println!(
                    "  {:<10} {:<11} frozen error median [IQR] {}, error_code {}",
                    s.task,
                    s.plasticity,
                    reproduce::fmt(&s.error.frozen),
                    reproduce::fmt(&s.error_code.frozen)
                );
            }
            println!("wrote {}", plan.out.join("summary.md").display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn timing(args: &TimingArgs) -> Result<bench::Timing> {
    if args.updates == 0 || args.repeats == 0 {
        bail!("--updates and --repeats must be at least 1");
    }
    Ok(bench::Timing {
        warmup: args.warmup,
        updates: args.updates,
        repeats: args.repeats,
    })
}

fn bench_command(cli: &Cli, args: &BenchArgs) -> Result<ExitCode> {
    if cli.device.is_some() || cli.dtype.is_some() {
        bail!(
            "bench takes --devices (a list) and always measures f32; --device and --dtype do not apply"
        );
    }
    if let Some(b) = args.batches.iter().find(|b| **b == 0) {
        bail!("--batches: {b} is not a batch size (at least 1)");
    }
    for workload in &args.workloads {
        let path = args.configs.join(format!("{workload}.toml"));
        if !path.is_file() {
            bail!(
                "--workloads: no config {} for workload `{workload}`",
                path.display()
            );
        }
    }
    let mut cells = Vec::new();
    for workload in &args.workloads {
        let recurrent = bench::is_recurrent_workload(&args.configs, workload);
        for &batch in &args.batches {
            for &device in &args.devices {
                for &engine in args.engines.iter().filter(|e| e.applies(recurrent)) {
                    cells.push(bench::Cell {
                        workload: workload.clone(),
                        device,
                        batch,
                        engine,
                    });
                }
            }
        }
    }
    let plan = bench::Plan {
        cells,
        timing: timing(&args.timing)?,
        configs: args.configs.clone(),
        out: args.out.clone(),
        peer_python: args.peer_python.clone(),
        peer_dir: args.peer_dir.clone(),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let quiet = cli.quiet;
    let report = bench::bench(&plan, command, &|what| {
        if !quiet {
            eprintln!("measuring {what}");
        }
    })?;
    print!("{}", bench::markdown(&report));
    println!(
        "\nwrote {} and {}",
        plan.out.join("bench.json").display(),
        plan.out.join("bench.md").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_cell_command(cli: &Cli, args: &BenchCellArgs) -> Result<ExitCode> {
    let device = cli.device.context("bench-cell needs --device")?;
    let cell = bench::Cell {
        workload: args.workload.clone(),
        device,
        batch: args.batch,
        engine: args.engine,
    };
    let result = match args.engine {
        _ if bench::is_recurrent_workload(&args.configs, &args.workload) => {
            bench::run_recurrent_cell(&args.configs, &cell, &timing(&args.timing)?)?
        }
        bench::BenchEngine::Autodiff => bench::run_cell(
            &args.configs,
            &cell,
            &timing(&args.timing)?,
            engine(GradEngine::Autodiff),
        )?,
        bench::BenchEngine::Analytic => bench::run_cell(
            &args.configs,
            &cell,
            &timing(&args.timing)?,
            engine(GradEngine::Analytic),
        )?,
        bench::BenchEngine::Fused => bail!("--engine fused applies to recurrent workloads only"),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}

/// The gradient engine named in a config.
fn engine(grad: GradEngine) -> Box<dyn GradientEngine> {
    match grad {
        GradEngine::Autodiff => Box::new(Autodiff),
        GradEngine::Analytic => Box::new(bohp::engines::analytic::Analytic),
    }
}

fn gradcheck_command(cli: &Cli, args: &GradcheckArgs) -> Result<ExitCode> {
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    let config = if is_recurrent_file(&args.config) {
        let mut config = bohp::recurrent::config::RecurrentConfig::load(&args.config)?;
        if args.steps.is_some() {
            bail!(
                "--steps: applies to single-layer configs (a recurrent task's steps follow from its [task] timing)"
            );
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        if let Some(dtype) = cli.dtype {
            config.dtype = dtype;
        }
        AnyConfig::Recurrent(config)
    } else {
        let mut config = RunConfig::load(&args.config)?;
        if let Some(steps) = args.steps {
            config.task.steps = Some(steps);
            config.validate(&format!("{} with --steps", args.config.display()))?;
        }
        if let Some(device) = cli.device {
            config.device = device;
        }
        if let Some(dtype) = cli.dtype {
            config.dtype = dtype;
        }
        AnyConfig::Single(config)
    };
    let options = CheckOptions {
        episodes: args.episodes,
        finite_differences: !args.no_finite_differences,
        dump: args.dump.is_some(),
        recursion: args.recursion,
    };
    let (report, dump) = check_any(&config, options)?;
    if let (Some(path), Some(dump)) = (&args.dump, dump) {
        let json = serde_json::to_vec_pretty(&dump).context("serializing the dump")?;
        std::fs::write(path, json)
            .with_context(|| format!("{}: cannot write the dump", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the report")?
        );
    } else {
        print!("{}", report.table());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bohp eval` on a recurrent run: loss, error and a blank reconstruction's error on fresh
/// held-out episodes, as the run's summary.json reports them at the end of training.
fn eval_recurrent(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    use bohp::recurrent::config::RecurrentConfig;
    let run = RunDir::open(&args.run_dir)?;
    let mut config = RecurrentConfig::load(&run.config_path())?;
    let path = run.model_path();
    if !path.is_file() {
        bail!(
            "{}: no final model: the run has not finished",
            path.display()
        );
    }
    if let Some(device) = cli.device {
        config.device = device;
    }
    if let Some(dtype) = cli.dtype {
        config.dtype = dtype;
    }
    config.seed = args.seed.unwrap_or(config.seed);
    config.train.batch = args.batch;
    let mut trainer = bohp::recurrent::train::RecurrentTrainer::new(config.clone())?;
    trainer.load_model(&path)?;
    let e = trainer.evaluate(args.episodes);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "task": config.task.kind.name(),
                "model": trainer.model_name(),
                "episodes": args.episodes,
                "seed": config.seed,
                "dtype": config.dtype.name(),
                "loss": e.loss,
                "error": e.error,
                "blank_error": e.blank_error,
            })
        );
    } else {
        println!(
            "{} {} on {} held-out episodes (seed {}, {}): loss {:.5}, error {:.5} (a blank output: {:.5})",
            config.task.kind.name(),
            trainer.model_name(),
            args.episodes,
            config.seed,
            config.dtype,
            e.loss,
            e.error,
            e.blank_error
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn format_measures(m: &Measures) -> String {
    format!(
        "loss {:.5}, error {:.5}, error_code {:.5}",
        m.loss, m.error, m.error_code
    )
}

fn eval_command(cli: &Cli, args: &EvalArgs) -> Result<ExitCode> {
    if args.episodes == 0 {
        bail!("--episodes: expected at least 1");
    }
    if args.batch == 0 {
        bail!("--batch: expected at least 1");
    }
    if is_recurrent_file(&args.run_dir.join("config.toml")) {
        return eval_recurrent(cli, args);
    }
    let run = RunDir::open(&args.run_dir)?;
    let config = run.read_config()?;
    let backend = cli.device.unwrap_or(config.device);
    let precision = cli.dtype.unwrap_or(config.dtype);
    let device = init_device(backend, precision)?;
    let path = run.model_path();
    if !path.is_file() {
        bail!(
            "{}: no final model: the run has not finished (resume it with `bohp train --resume {}`)",
            path.display(),
            run.path().display()
        );
    }
    let model = load_model(init_model(&config, &device), &path, None)?.valid();
    let seed = args.seed.unwrap_or(config.seed);
    let measures = evaluate(
        &model,
        &config.task(),
        seed,
        args.episodes,
        args.batch,
        &device,
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "task": config.task.kind.name(),
                "episodes": args.episodes,
                "seed": seed,
                "device": backend.name(),
                "dtype": precision.name(),
                "loss": measures.loss,
                "error": measures.error,
                "error_code": measures.error_code,
            })
        );
    } else {
        println!(
            "{} on {} fresh episodes (seed {seed}, {backend}, {precision}): {}",
            config.task.kind,
            args.episodes,
            format_measures(&measures)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The progress bar, showing the mean loss and error of the last 100 episodes.
struct Progress {
    bar: ProgressBar,
    recent: std::collections::VecDeque<MetricsRow>,
}

impl Progress {
    fn new(total: usize, position: usize, quiet: bool) -> Progress {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} episodes ({per_sec}, eta {eta}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_position(position as u64);
        Progress {
            bar,
            recent: Default::default(),
        }
    }
}

impl Observer for Progress {
    fn episode(&mut self, row: &MetricsRow) {
        if self.recent.len() == 100 {
            self.recent.pop_front();
        }
        self.recent.push_back(*row);
        self.bar.inc(1);
        if row.episode.is_multiple_of(25) {
            let n = self.recent.len() as f64;
            let loss = self.recent.iter().map(|r| r.loss).sum::<f64>() / n;
            let error = self.recent.iter().map(|r| r.error).sum::<f64>() / n;
            let phase = if row.frozen == 1 { " [frozen]" } else { "" };
            self.bar
                .set_message(format!("loss {loss:.4} error {error:.4}{phase}"));
        }
    }
}
