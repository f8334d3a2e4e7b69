//! `bohp reproduce`: the paper's protocol per task (N seeds, training then the last episodes
//! frozen), the median and interquartile range across seeds, figures like the paper's
//! Figures 2a/3a/4a, the learned structure of every seed, and the plasticity ablations.
//!
//! Output layout (every seed is an ordinary run directory, so an interrupted reproduction
//! resumes where it stopped):
//!
//! ```text
//! <out>/<task>/<plasticity>/seed-<k>/      run directories
//! <out>/<task>/<plasticity>/summary.json   per-episode and frozen-phase statistics
//! <out>/<task>/<plasticity>/figure.png|svg median error per episode, IQR shaded
//! <out>/summary.md                         one table for everything
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bohp::learner::{Observer, Outcome, train};
use bohp::run::{MetricsRow, RunDir};
use bohp::single::config::{Plasticity, SingleLayerConfig};
use bohp::single::tasks::TaskKind;
use bohp::single::train::{GradientEngine, SingleLayerTrainer};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::figures::{Curve, learning_curve};
use crate::inspect::{Structure, load_run_model, structure};
use crate::shard::Shard;
use crate::stats::{Spread, per_episode};

/// What to reproduce.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Tasks, by config name (`completion`, `one-shot`, `reversal`).
    pub tasks: Vec<String>,
    /// Plasticity variants (the paper's network is `learned`).
    pub variants: Vec<Plasticity>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Directory of the task configs (`<task>.toml`).
    pub configs: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Seeds trained at once.
    pub jobs: usize,
    /// Fresh episodes for each seed's structure measurement.
    pub inspect_episodes: usize,
    /// Updates per seed, overriding the configs' (`--episodes`, for a quick look).
    pub episodes: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
    /// Train only this slice of the runs, and summarize nothing (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Gather finished runs from these slices' output directories, then summarize (`--merge`).
    pub merge: Vec<PathBuf>,
}

/// What a reproduction did.
#[derive(Debug)]
pub enum Reproduced<S> {
    /// Stopped by Ctrl-C; every interrupted seed keeps a checkpoint.
    Interrupted,
    /// A slice (`--shard`) finished its runs: how many runs it holds, of how many planned.
    Slice {
        /// Runs of this slice (all finished).
        runs: usize,
        /// Runs of the whole plan.
        planned: usize,
    },
    /// Every run finished and summarized.
    Done(S),
}

/// One seed's training run.
#[derive(Debug, Clone)]
struct Job {
    config: SingleLayerConfig,
    dir: PathBuf,
}

/// Statistics of one measure across seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureStats {
    /// Median and quartiles across seeds of each seed's frozen-phase mean.
    pub frozen: Spread,
    /// Each seed's frozen-phase mean, in seed order.
    pub frozen_per_seed: Vec<f64>,
    /// Per-episode median across seeds.
    pub median: Vec<f64>,
    /// Per-episode first quartile across seeds.
    pub q25: Vec<f64>,
    /// Per-episode third quartile across seeds.
    pub q75: Vec<f64>,
}

/// Structure of the trained networks, across seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructureStats {
    /// Completion: median across seeds of mean `|w|` input → own output.
    pub own_fixed: Option<Spread>,
    /// Completion: median of mean `|w|` input → other outputs.
    pub others_fixed: Option<Spread>,
    /// Completion: median of mean `|α·H|` input → other outputs.
    pub others_plastic: Option<Spread>,
    /// Labelled: median of mean `|w|` from pattern bits.
    pub pattern_fixed: Option<Spread>,
    /// Labelled: median of mean `|α·H|` from pattern bits.
    pub pattern_plastic: Option<Spread>,
    /// Labelled: median of mean `|w|` from label bits.
    pub label_fixed: Option<Spread>,
    /// Labelled: median of mean `|α·H|` from label bits.
    pub label_plastic: Option<Spread>,
    /// Labelled: median of the fraction of negative `α` from pattern bits.
    pub pattern_alpha_negative_fraction: Option<Spread>,
    /// Labelled: median of the mean `α` from pattern bits.
    pub pattern_alpha_mean: Option<Spread>,
    /// Labelled: median of the share of pattern-bit plastic weight `|α·H|` with `α < 0`.
    pub pattern_plastic_negative_share: Option<Spread>,
    /// Labelled: median of the share of pattern-bit `|α|` with `α < 0`.
    pub pattern_alpha_negative_mass_share: Option<Spread>,
    /// Labelled: seeds whose pattern-bit plasticity is predominantly negative (more than half
    /// of `Σ |α|` on `α < 0`).
    pub seeds_with_mostly_negative_pattern_alpha: Option<usize>,
    /// Labelled: seeds that learned the task (frozen-phase `error` below
    /// [`LEARNED_ERROR`]).
    pub seeds_learned: Option<usize>,
    /// Labelled: seeds that learned the task and have predominantly negative pattern-bit `α`.
    pub learned_seeds_with_mostly_negative_pattern_alpha: Option<usize>,
    /// Each seed's structure.
    pub per_seed: Vec<Structure>,
}

/// `summary.json` of one task and plasticity variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Task name.
    pub task: String,
    /// Plasticity variant.
    pub plasticity: String,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Episodes (updates) per seed.
    pub episodes: usize,
    /// Independent episodes per update.
    pub batch: usize,
    /// Frozen episodes at the end.
    pub freeze_last: usize,
    /// Seeds that solve the task: frozen-phase mean `error` below [`LEARNED_ERROR`].
    #[serde(default)]
    pub solved: usize,
    /// The paper's error measure (see docs/model.md).
    pub error: MeasureStats,
    /// The training loss.
    pub loss: MeasureStats,
    /// The original code's error measure.
    pub error_code: MeasureStats,
    /// Learned structure.
    pub structure: StructureStats,
}

/// Counts finished episodes into the shared progress bar.
struct Shared<'a> {
    bar: &'a ProgressBar,
}

impl Observer<MetricsRow> for Shared<'_> {
    fn episode(&mut self, _: &MetricsRow) {
        self.bar.inc(1);
    }
}

fn engine(config: &SingleLayerConfig) -> Box<dyn GradientEngine> {
    bohp::single::train::gradient_engine(config.train.engine)
}

/// Loads `<configs>/<task>.toml`.
fn task_config(configs: &Path, task: &str) -> Result<SingleLayerConfig> {
    Ok(SingleLayerConfig::load(
        &configs.join(format!("{task}.toml")),
    )?)
}

/// Whether `dir` holds a finished run; errors if it holds a run of another config.
fn finished(dir: &Path, config: &SingleLayerConfig) -> Result<bool> {
    if !dir.join("config.toml").is_file() {
        return Ok(false);
    }
    let run = RunDir::open(dir)?;
    let existing = SingleLayerConfig::of_run(&run)?;
    if &existing != config {
        bail!(
            "{}: holds a run of a different config than this reproduction would train; \
             choose another --out (or remove it)",
            dir.display()
        );
    }
    if !run.summary_path().is_file() {
        return Ok(false);
    }
    // A finished run's files match their checksums before it is reused or merged.
    run.verify_finished()?;
    Ok(true)
}

fn run_job(job: &Job, bar: &ProgressBar, stop: &AtomicBool) -> Result<bool> {
    let dir = &job.dir;
    let resuming = dir.join("config.toml").is_file();
    let run = if resuming {
        RunDir::open(dir)?
    } else {
        let run = RunDir::create(dir)?;
        job.config.write_to(&run)?;
        run
    };
    let mut trainer = if resuming {
        SingleLayerTrainer::resume(&run, job.config.clone(), engine(&job.config))?
    } else {
        SingleLayerTrainer::new(job.config.clone(), engine(&job.config))?
    };
    let mut observer = Shared { bar };
    Ok(matches!(
        train(&run, &mut trainer, &mut observer, stop)?,
        Outcome::Finished(_)
    ))
}

fn stats_of(series: &[Vec<f64>], frozen_from: usize) -> MeasureStats {
    let spreads = per_episode(series);
    let frozen_per_seed: Vec<f64> = series
        .iter()
        .map(|s| {
            let tail = &s[frozen_from.min(s.len())..];
            tail.iter().sum::<f64>() / tail.len().max(1) as f64
        })
        .collect();
    MeasureStats {
        frozen: Spread::of(&frozen_per_seed),
        frozen_per_seed,
        median: spreads.iter().map(|s| s.median).collect(),
        q25: spreads.iter().map(|s| s.q25).collect(),
        q75: spreads.iter().map(|s| s.q75).collect(),
    }
}

/// A seed whose frozen-phase mean `error` is below this solved the task: a tenth of chance (0.5
/// for the labelled tasks and for completion's per-bit Manhattan error). Outcomes are bimodal:
/// solved seeds sit at 1e-6 to 1e-3, a labelled-task seed stuck on one label per pattern near
/// 0.3.
pub const LEARNED_ERROR: f64 = 0.05;

/// How many of `frozen_errors` are below [`LEARNED_ERROR`].
pub fn solved(frozen_errors: &[f64]) -> usize {
    frozen_errors.iter().filter(|e| **e < LEARNED_ERROR).count()
}

fn mostly_negative(s: &Structure) -> bool {
    s.pattern.is_some_and(|p| p.alpha_negative_mass_share > 0.5)
}

/// Structure statistics across seeds; `frozen_error` is each seed's frozen-phase `error`.
fn structure_stats(per_seed: Vec<Structure>, frozen_error: &[f64]) -> StructureStats {
    let labelled = per_seed.first().is_some_and(|s| s.pattern.is_some());
    let learned = |i: usize| frozen_error.get(i).is_some_and(|e| *e < LEARNED_ERROR);
    let spread = |f: &dyn Fn(&Structure) -> Option<f64>| -> Option<Spread> {
        let v: Vec<f64> = per_seed.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| Spread::of(&v))
    };
    StructureStats {
        own_fixed: spread(&|s| s.own.map(|x| x.fixed)),
        others_fixed: spread(&|s| s.others.map(|x| x.fixed)),
        others_plastic: spread(&|s| s.others.map(|x| x.plastic)),
        pattern_fixed: spread(&|s| s.pattern.map(|x| x.fixed)),
        pattern_plastic: spread(&|s| s.pattern.map(|x| x.plastic)),
        label_fixed: spread(&|s| s.label.map(|x| x.fixed)),
        label_plastic: spread(&|s| s.label.map(|x| x.plastic)),
        pattern_alpha_negative_fraction: spread(&|s| s.pattern.map(|x| x.alpha_negative_fraction)),
        pattern_alpha_mean: spread(&|s| s.pattern.map(|x| x.alpha_mean)),
        pattern_plastic_negative_share: spread(&|s| s.pattern.map(|x| x.plastic_negative_share)),
        pattern_alpha_negative_mass_share: spread(&|s| {
            s.pattern.map(|x| x.alpha_negative_mass_share)
        }),
        seeds_with_mostly_negative_pattern_alpha: labelled
            .then(|| per_seed.iter().filter(|s| mostly_negative(s)).count()),
        seeds_learned: labelled.then(|| (0..per_seed.len()).filter(|i| learned(*i)).count()),
        learned_seeds_with_mostly_negative_pattern_alpha: labelled.then(|| {
            (0..per_seed.len())
                .filter(|i| learned(*i) && mostly_negative(&per_seed[*i]))
                .count()
        }),
        per_seed,
    }
}

/// Summarizes the finished seeds of one task and variant, and draws its figure.
fn summarize(
    plan: &Plan,
    task: &str,
    variant: Plasticity,
    base: &SingleLayerConfig,
) -> Result<TaskSummary> {
    let dir = plan.out.join(task).join(variant.name());
    let mut series = [Vec::new(), Vec::new(), Vec::new()];
    let mut structures = Vec::new();
    for seed in &plan.seeds {
        let run = RunDir::open(&dir.join(format!("seed-{seed}")))?;
        let rows: Vec<MetricsRow> = run.read_metrics()?;
        series[0].push(rows.iter().map(|r| r.error).collect::<Vec<_>>());
        series[1].push(rows.iter().map(|r| r.loss).collect::<Vec<_>>());
        series[2].push(rows.iter().map(|r| r.error_code).collect::<Vec<_>>());
        let (config, model, device) = load_run_model(&run)?;
        structures.push(structure(&model, &config, plan.inspect_episodes, &device));
    }
    let frozen_from = base.first_frozen();
    let error = stats_of(&series[0], frozen_from);
    let summary = TaskSummary {
        task: task.to_string(),
        plasticity: variant.name().to_string(),
        seeds: plan.seeds.clone(),
        episodes: base.train.episodes,
        batch: base.train.batch,
        freeze_last: base.train.freeze_last,
        structure: structure_stats(structures, &error.frozen_per_seed),
        solved: solved(&error.frozen_per_seed),
        error,
        loss: stats_of(&series[1], frozen_from),
        error_code: stats_of(&series[2], frozen_from),
    };
    let spreads: Vec<Spread> = (0..summary.error.median.len())
        .map(|e| Spread {
            median: summary.error.median[e],
            q25: summary.error.q25[e],
            q75: summary.error.q75[e],
        })
        .collect();
    let y_label = match base.task.kind {
        TaskKind::Completion => "Manhattan error at step 2",
        _ => "mean |p - target| per scored step",
    };
    let variant_note = match variant {
        Plasticity::Learned => String::new(),
        other => format!(", plasticity {other}"),
    };
    learning_curve(
        &dir.join("figure"),
        &Curve {
            title: format!(
                "{task}{variant_note}: median over {} seeds (IQR shaded), batch {}, last {} frozen",
                plan.seeds.len(),
                base.train.batch,
                base.train.freeze_last
            ),
            y_label: y_label.to_string(),
            spreads: &spreads,
            frozen_from,
        },
    )?;
    let json = serde_json::to_vec_pretty(&summary)?;
    bohp::run::write_atomic(&dir.join("summary.json"), &json)?;
    Ok(summary)
}

/// A number for the summary: four decimals, or three significant digits below 0.01.
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

/// A spread as `median [q25, q75]`.
pub fn fmt(s: &Spread) -> String {
    format!("{} [{}, {}]", num(s.median), num(s.q25), num(s.q75))
}

/// The markdown table of all summaries.
pub fn markdown(summaries: &[TaskSummary], trained: usize, seconds: f64, jobs: usize) -> String {
    let mut out = format!(
        "# Reproduction summary\n\nFrozen-phase means per seed, then median [first quartile, third quartile] across seeds.\n\
         The invocation that wrote this trained {trained} seed runs (finished runs found in the output \
         directory are reused) in {seconds:.0} s of wall time with {jobs} jobs.\n\n\
         A seed solves the task when its frozen-phase error is below {LEARNED_ERROR} (a tenth of chance).\n\n\
         | task | plasticity | seeds | solved | error | loss | error_code |\n|---|---|---:|---:|---|---|---|\n"
    );
    for s in summaries {
        out += &format!(
            "| {} | {} | {} | {}/{} | {} | {} | {} |\n",
            s.task,
            s.plasticity,
            s.seeds.len(),
            s.solved,
            s.seeds.len(),
            fmt(&s.error.frozen),
            fmt(&s.loss.frozen),
            fmt(&s.error_code.frozen)
        );
    }
    out += "\n## Learned structure (median [IQR] across seeds)\n\n";
    for s in summaries {
        let st = &s.structure;
        out += &format!("- {} ({}): ", s.task, s.plasticity);
        if let (Some(own), Some(others), Some(op)) =
            (&st.own_fixed, &st.others_fixed, &st.others_plastic)
        {
            out += &format!(
                "fixed |w| input->own output {}, input->other outputs {}; plastic |α·H| to other outputs {}\n",
                fmt(own),
                fmt(others),
                fmt(op)
            );
        }
        if let (Some(pf), Some(pp), Some(lf), Some(lp), Some(neg), Some(mass), Some(share)) = (
            &st.pattern_fixed,
            &st.pattern_plastic,
            &st.label_fixed,
            &st.label_plastic,
            &st.pattern_alpha_negative_fraction,
            &st.pattern_alpha_negative_mass_share,
            &st.pattern_plastic_negative_share,
        ) {
            let count = |n: Option<usize>| n.unwrap_or(0);
            out += &format!(
                "pattern bits: fixed |w| {}, plastic |α·H| {}; label bits: fixed |w| {}, plastic |α·H| {}; \
                 pattern-bit α < 0: fraction of connections {}, share of |α| {}, share of |α·H| {}; \
                 {}/{} seeds with predominantly negative pattern-bit α (> 50% of |α|); \
                 {}/{} seeds learned (frozen error < {LEARNED_ERROR}), {} of them with predominantly negative α\n",
                fmt(pf),
                fmt(pp),
                fmt(lf),
                fmt(lp),
                fmt(neg),
                fmt(mass),
                fmt(share),
                count(st.seeds_with_mostly_negative_pattern_alpha),
                s.seeds.len(),
                count(st.seeds_learned),
                s.seeds.len(),
                count(st.learned_seeds_with_mostly_negative_pattern_alpha),
            );
        }
    }
    out
}

/// Seeds trained at once for `--jobs jobs`: at least one, at most the pool's threads (more
/// would only queue behind them, and a thread waiting inside one seed's parallel loop could
/// start another seed).
pub fn concurrent_jobs(jobs: usize) -> usize {
    jobs.clamp(1, rayon::current_num_threads())
}

/// Runs `plan`: trains what is missing (resuming interrupted seeds), then summarizes.
/// Returns `None` if interrupted.
pub fn reproduce(plan: &Plan, stop: &AtomicBool) -> Result<Reproduced<Vec<TaskSummary>>> {
    crate::shard::check_flags(plan.shard, &plan.merge)?;
    let mut jobs = Vec::new();
    let mut planned = 0usize;
    let mut slice = 0usize;
    let mut bases = Vec::new();
    let mut remaining = 0u64;
    let mut merges = Vec::new();
    for task in &plan.tasks {
        let mut base = task_config(&plan.configs, task)?;
        if let Some(episodes) = plan.episodes {
            let configured = base.train.episodes;
            base.train.episodes = episodes;
            if let Some(note) = base.scale_frozen_phase(configured)
                && !plan.quiet
            {
                eprintln!("{task}: {note}");
            }
            base.validate(&format!(
                "{} with --episodes {episodes}",
                plan.configs.join(format!("{task}.toml")).display()
            ))?;
        }
        for &variant in &plan.variants {
            for &seed in &plan.seeds {
                let mut config = base.clone();
                config.seed = seed;
                config.model.plasticity = variant;
                let rel = Path::new(task)
                    .join(variant.name())
                    .join(format!("seed-{seed}"));
                let dir = plan.out.join(&rel);
                let job = planned;
                planned += 1;
                if let Some(shard) = plan.shard {
                    if !shard.takes(job) {
                        continue;
                    }
                    slice += 1;
                }
                if !plan.merge.is_empty() {
                    // Every run of a merge is finished: in the output, or once copied there.
                    merges.extend(crate::shard::plan_merge(
                        &rel,
                        &plan.merge,
                        &plan.out,
                        &|d: &Path| finished(d, &config),
                    )?);
                } else if !finished(&dir, &config)? {
                    let done = RunDir::open(&dir)
                        .ok()
                        .and_then(|r| r.read_checkpoint_state().ok())
                        .map_or(0, |(_, s)| s.next_episode);
                    remaining += (config.train.episodes - done) as u64;
                    jobs.push(Job { config, dir });
                }
            }
            bases.push((task.clone(), variant, base.clone()));
        }
    }
    crate::shard::apply_merges(&merges)?;
    let started = Instant::now();
    let bar = crate::commands::progress_bar(remaining, "updates", plan.quiet);
    let total_jobs = jobs.len();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let finished_jobs = Mutex::new(0usize);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let interrupted = AtomicBool::new(false);
    // The seeds run on the pool's threads (this command runs on one of them, which takes part
    // while it waits): a job on a thread of its own would hand every parallel loop of its
    // engine to the pool, and with `--threads 1` wait forever on the one thread that waits
    // for it.
    rayon::scope(|scope| {
        for _ in 0..crate::reproduce::concurrent_jobs(plan.jobs) {
            scope.spawn(|_| {
                loop {
                    if stop.load(Ordering::SeqCst) || failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let Some(job) = queue.lock().expect("lock").pop_front() else {
                        return;
                    };
                    match run_job(&job, &bar, stop) {
                        Ok(true) => {
                            let mut n = finished_jobs.lock().expect("lock");
                            *n += 1;
                            bar.set_message(format!("{}/{total_jobs} seeds done", *n));
                        }
                        Ok(false) => interrupted.store(true, Ordering::SeqCst),
                        Err(e) => {
                            let e = e.context(format!("training {}", job.dir.display()));
                            *failure.lock().expect("lock") = Some(e);
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    if interrupted.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
        return Ok(Reproduced::Interrupted);
    }
    if plan.shard.is_some() {
        return Ok(Reproduced::Slice {
            runs: slice,
            planned,
        });
    }
    let mut summaries = Vec::new();
    for (task, variant, base) in &bases {
        summaries.push(
            summarize(plan, task, *variant, base)
                .with_context(|| format!("summarizing {task} ({variant})"))?,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("{}: cannot create", plan.out.display()))?;
    bohp::run::write_atomic(
        &plan.out.join("summary.md"),
        markdown(&summaries, total_jobs, seconds, plan.jobs).as_bytes(),
    )?;
    Ok(Reproduced::Done(summaries))
}

/// The tasks named by the command line's target.
pub fn tasks_of(target: &str) -> Result<Vec<String>> {
    match target {
        "all" => Ok(vec![
            "completion".into(),
            "one-shot".into(),
            "reversal".into(),
        ]),
        "completion" | "one-shot" | "reversal" => Ok(vec![target.to_string()]),
        other => bail!("unknown task `{other}`: expected completion, one-shot, reversal or all"),
    }
}
