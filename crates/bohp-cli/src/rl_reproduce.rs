//! `bohp reproduce bandit|cue|maze`: each network kind (parameter-matched to the task config's
//! own network) trained over many seeds in parallel, the median and IQR reward curves per kind,
//! and a two-sided Mann-Whitney rank-sum test between kinds on each seed's final reward.
//!
//! ```text
//! <out>/<task>/<kind>/seed-k/      each seed's run directory (resumable)
//! <out>/<task>/rewards.png|svg     median reward per update and IQR, one colour per kind
//! <out>/<task>/summary.json|md     final rewards per seed, spreads, parameter counts, tests
//! <out>/maze/<kind>/maze-path.png  maze: the first seed's agent in a held-out episode
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use bohp::learner::{Outcome, train};
use bohp::rl::config::RlConfig;
use bohp::rl::env::EnvKind;
use bohp::rl::model::RlModelKind;
use bohp::rl::train::{PoolScore, RlRow, RlTrainer};
use bohp::run::{RunDir, write_atomic};
use plotters::prelude::*;
use serde::Serialize;

use crate::reproduce::Reproduced;
use crate::shard::Shard;
use crate::stats::{Spread, per_episode};

/// What to run.
#[derive(Debug, Clone)]
pub struct RlPlan {
    /// `bandit`, `cue` or `maze` (the config `<configs>/<task>.toml`).
    pub task: String,
    /// The kinds compared.
    pub kinds: Vec<RlModelKind>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Directory of the task configs.
    pub configs: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Updates per seed, overriding the config's.
    pub episodes: Option<usize>,
    /// The LSTM's learning rate, overriding the config's (`--lstm-learning-rate`).
    pub lstm_learning_rate: Option<f64>,
    /// Seeds trained at once.
    pub jobs: usize,
    /// Train only this slice of the runs, and summarize nothing (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Gather finished runs from these slices' output directories, then summarize (`--merge`).
    pub merge: Vec<PathBuf>,
    /// Meta-tasks: held-out episodes per pool and seed (`--inspect-episodes`).
    pub eval_episodes: usize,
}

/// One kind's results.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    /// The kind.
    pub kind: String,
    /// Its neurons (parameter-matched to the config's network).
    pub hidden: usize,
    /// Its trained parameters.
    pub params: usize,
    /// Its learning rate (the config's, or `--lstm-learning-rate` for the LSTM).
    pub learning_rate: f64,
    /// Each seed's mean reward per episode over the last tenth of the updates.
    pub final_reward: Vec<f64>,
    /// Median and quartiles of `final_reward`.
    pub spread: Spread,
}

/// A rank-sum test between two kinds.
#[derive(Debug, Clone, Serialize)]
pub struct RankSum {
    /// The kinds compared.
    pub kinds: (String, String),
    /// Mann-Whitney U of the first kind.
    pub u: f64,
    /// Two-sided p-value (exact without ties for up to 20 seeds per kind; else the normal
    /// approximation with the tie correction).
    pub p: f64,
}

/// The reproduction's summary.
#[derive(Debug, Clone, Serialize)]
pub struct RlReproduction {
    /// Task.
    pub task: String,
    /// Updates per seed.
    pub episodes: usize,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Mean reward per episode of a uniformly random policy (held-out episodes).
    pub random_reward: f64,
    /// Per kind.
    pub kinds: Vec<KindSummary>,
    /// Between each pair of kinds.
    pub tests: Vec<RankSum>,
    /// Meta-tasks: every kind measured on every pool of tasks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::meta_reproduce::PoolSummary>,
    /// Meta-tasks: episodes per pool and seed of those measures.
    #[serde(skip_serializing_if = "is_zero")]
    pub pool_episodes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Neurons for `kind` whose parameter count is closest to `target` (the config's network).
fn matched_hidden(base: &RlConfig, kind: RlModelKind, target: usize) -> usize {
    let count = |n: usize| {
        let mut c = base.clone();
        c.model.kind = kind;
        c.model.hidden = n;
        c.model.fanout = c.model.fanout && kind.modulated();
        c.network().num_params()
    };
    (1..=4 * base.model.hidden.max(1))
        .min_by_key(|&n| count(n).abs_diff(target))
        .unwrap_or(base.model.hidden)
}

/// Two-sided Mann-Whitney test of samples `a` against `b`: (U of `a`, p).
pub fn rank_sum(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len(), b.len());
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|v| (*v, 0))
        .chain(b.iter().map(|v| (*v, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks = vec![0.0; all.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for r in ranks.iter_mut().take(j + 1).skip(i) {
            *r = rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|((_, g), _)| *g == 0)
        .map(|(_, r)| r)
        .sum();
    let u = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let mean = (n1 * n2) as f64 / 2.0;
    if ties == 0.0 && n1 <= 20 && n2 <= 20 {
        // Exact: the number of arrangements with each U, by dynamic programming.
        let max_u = n1 * n2;
        // counts[i][j][u]: arrangements of i from a and j from b with U = u.
        let mut counts = vec![vec![vec![0f64; max_u + 1]; n2 + 1]; n1 + 1];
        counts[0][0][0] = 1.0;
        for i in 0..=n1 {
            for j in 0..=n2 {
                for u_val in 0..=max_u {
                    let c = counts[i][j][u_val];
                    if c == 0.0 {
                        continue;
                    }
                    // The next-largest element is from a: it beats all j of b placed so far.
                    if i < n1 && u_val + j <= max_u {
                        counts[i + 1][j][u_val + j] += c;
                    }
                    if j < n2 {
                        counts[i][j + 1][u_val] += c;
                    }
                }
            }
        }
        let dist = &counts[n1][n2];
        let total: f64 = dist.iter().sum();
        let deviation = (u - mean).abs();
        let p: f64 = dist
            .iter()
            .enumerate()
            .filter(|(v, _)| (*v as f64 - mean).abs() >= deviation - 1e-9)
            .map(|(_, c)| c)
            .sum::<f64>()
            / total;
        return (u, p.min(1.0));
    }
    let n = (n1 + n2) as f64;
    let var = (n1 * n2) as f64 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt().max(1e-300);
    (u, (2.0 * normal_tail(z)).min(1.0))
}

/// P(Z > z) for a standard normal (Abramowitz-Stegun 7.1.26 on erfc).
fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// Whether `dir` holds a finished run of `config` (an error if it holds another config's).
fn finished(dir: &Path, config: &RlConfig) -> Result<bool> {
    if !dir.join("config.toml").is_file() {
        return Ok(false);
    }
    let run = RunDir::open(dir)?;
    if std::fs::read_to_string(run.config_path())? != config.to_toml() {
        bail!(
            "{}: holds a run of a different config; use another --out",
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

/// Trains one seed of one kind (or reuses/resumes what its directory holds); returns its rows.
fn run_seed(config: RlConfig, dir: &Path, stop: &AtomicBool) -> Result<Option<Vec<RlRow>>> {
    let toml = config.to_toml();
    let mut trainer = if dir.join("config.toml").is_file() {
        let run = RunDir::open(dir)?;
        let written = std::fs::read_to_string(run.config_path())?;
        if written != toml {
            bail!(
                "{}: holds a run of a different config; use another --out",
                dir.display()
            );
        }
        if run.summary_path().is_file() {
            return Ok(Some(run.read_metrics()?));
        }
        RlTrainer::resume(&run, config)?
    } else {
        let trainer = RlTrainer::new(config)?;
        let run = RunDir::create(dir)?;
        write_atomic(&run.config_path(), toml.as_bytes())?;
        trainer
    };
    let run = RunDir::open(dir)?;
    match train(&run, &mut trainer, &mut (), stop)? {
        Outcome::Finished(_) => Ok(Some(run.read_metrics()?)),
        Outcome::Interrupted { .. } => Ok(None),
    }
}

/// Runs the plan; `None` when interrupted (every unfinished seed keeps a checkpoint).
pub fn reproduce_rl(plan: &RlPlan, stop: &AtomicBool) -> Result<Reproduced<RlReproduction>> {
    crate::shard::check_flags(plan.shard, &plan.merge)?;
    let path = plan.configs.join(format!("{}.toml", plan.task));
    let mut base = RlConfig::load(&path)?;
    if let Some(e) = plan.episodes {
        base.train.episodes = e;
        base.validate(&format!("{} with --episodes {e}", path.display()))?;
    }
    let target = base.network().num_params();
    let mut jobs = Vec::new();
    let mut kinds = Vec::new();
    let mut planned = 0usize;
    let mut merges = Vec::new();
    for &kind in &plan.kinds {
        let mut config = base.clone();
        config.model.kind = kind;
        config.model.fanout = base.model.fanout && kind.modulated();
        // The config's trace rule goes to the kinds that take one (plastic and simple).
        config.model.rule = base
            .model
            .rule
            .filter(|_| matches!(kind, RlModelKind::Plastic | RlModelKind::Simple));
        if kind == RlModelKind::Lstm {
            // The fused engine runs the actor-critic kinds; the LSTM trains with autodiff.
            config.train.engine = bohp::single::config::Engine::Autodiff;
            if let Some(lr) = plan.lstm_learning_rate {
                config.train.learning_rate = lr;
                config.validate(&format!(
                    "{} with --lstm-learning-rate {lr}",
                    path.display()
                ))?;
            }
        }
        config.model.hidden = if kind == base.model.kind {
            base.model.hidden
        } else {
            matched_hidden(&base, kind, target)
        };
        kinds.push((
            kind,
            config.model.hidden,
            config.network().num_params(),
            config.train.learning_rate,
        ));
        for &seed in &plan.seeds {
            let mut c = config.clone();
            c.seed = seed;
            let rel = Path::new(&plan.task)
                .join(kind.name())
                .join(format!("seed-{seed}"));
            let job = planned;
            planned += 1;
            if let Some(shard) = plan.shard
                && !shard.takes(job)
            {
                continue;
            }
            if !plan.merge.is_empty() {
                merges.extend(crate::shard::plan_merge(
                    &rel,
                    &plan.merge,
                    &plan.out,
                    &|d: &Path| finished(d, &c),
                )?);
            }
            jobs.push((kind, seed, c, plan.out.join(rel)));
        }
    }
    crate::shard::apply_merges(&merges)?;
    type Done = (RlModelKind, u64, Vec<RlRow>, Vec<PoolScore>);
    let results: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    let meta = base.task.kind == EnvKind::Metatasks;
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let queue = Mutex::new(jobs.into_iter());
    // The seeds run on the pool's threads (this command runs on one of them, which takes part
    // while it waits): a job on a thread of its own would hand every parallel loop of its
    // engine to the pool, and with `--threads 1` wait forever on the one thread that waits
    // for it.
    rayon::scope(|scope| {
        for _ in 0..crate::reproduce::concurrent_jobs(plan.jobs) {
            scope.spawn(|_| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some((kind, seed, config, dir)) = next else {
                        break;
                    };
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Meta-tasks: the finished seed on every pool of tasks.
                    let pools = |config: &RlConfig| -> Result<Vec<PoolScore>> {
                        if meta && plan.shard.is_none() {
                            crate::meta_reproduce::measure(&dir, config, plan.eval_episodes)
                        } else {
                            Ok(Vec::new())
                        }
                    };
                    match run_seed(config.clone(), &dir, stop)
                        .map(|rows| rows.map(|r| (r, pools(&config))))
                    {
                        Ok(Some((rows, Ok(pools)))) => results
                            .lock()
                            .expect("results")
                            .push((kind, seed, rows, pools)),
                        Ok(Some((_, Err(e)))) => errors
                            .lock()
                            .expect("errors")
                            .push(e.context(dir.display().to_string())),
                        Ok(None) => {}
                        Err(e) => errors
                            .lock()
                            .expect("errors")
                            .push(e.context(dir.display().to_string())),
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().expect("errors").into_iter().next() {
        return Err(e);
    }
    if stop.load(Ordering::SeqCst) {
        return Ok(Reproduced::Interrupted);
    }
    let results = results.into_inner().expect("results");
    if plan.shard.is_some() {
        return Ok(Reproduced::Slice {
            runs: results.len(),
            planned,
        });
    }
    let mut summaries = Vec::new();
    let mut curves = Vec::new();
    let mut measured = Vec::new();
    for &(kind, hidden, params, learning_rate) in &kinds {
        let mut per_seed: Vec<(u64, Vec<RlRow>, Vec<PoolScore>)> = results
            .iter()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, s, rows, pools)| (*s, rows.clone(), pools.clone()))
            .collect();
        per_seed.sort_by_key(|(s, ..)| *s);
        measured.push((
            kind.name().to_string(),
            per_seed.iter().map(|(.., p)| p.clone()).collect::<Vec<_>>(),
        ));
        let final_reward: Vec<f64> = per_seed
            .iter()
            .map(|(_, rows, _)| {
                let tail = (rows.len() / 10).max(1);
                rows.iter().rev().take(tail).map(|r| r.reward).sum::<f64>() / tail as f64
            })
            .collect();
        let series: Vec<Vec<f64>> = per_seed
            .iter()
            .map(|(_, rows, _)| smooth(&rows.iter().map(|r| r.reward).collect::<Vec<_>>()))
            .collect();
        curves.push((kind.name().to_string(), per_episode(&series)));
        summaries.push(KindSummary {
            kind: kind.name().to_string(),
            hidden,
            params,
            learning_rate,
            spread: Spread::of(&final_reward),
            final_reward,
        });
    }
    let mut tests = Vec::new();
    for i in 0..summaries.len() {
        for j in i + 1..summaries.len() {
            let (u, p) = rank_sum(&summaries[i].final_reward, &summaries[j].final_reward);
            tests.push(RankSum {
                kinds: (summaries[i].kind.clone(), summaries[j].kind.clone()),
                u,
                p,
            });
        }
    }
    let reproduction = RlReproduction {
        task: plan.task.clone(),
        episodes: base.train.episodes,
        seeds: plan.seeds.clone(),
        random_reward: bohp::rl::train::random_policy_reward(&base, 200),
        kinds: summaries,
        tests,
        pools: if meta {
            crate::meta_reproduce::summarize(&measured)
        } else {
            Vec::new()
        },
        pool_episodes: if meta { plan.eval_episodes } else { 0 },
    };
    let dir = plan.out.join(&plan.task);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    if base.task.kind == bohp::rl::env::EnvKind::Maze
        && let Some(&seed) = plan.seeds.first()
    {
        // One trained agent of each kind, in a held-out episode: <kind>/maze-path.png.
        for &(kind, ..) in &kinds {
            let kind_dir = dir.join(kind.name());
            crate::rl_inspect::inspect_maze(&kind_dir.join(format!("seed-{seed}")), &kind_dir)?;
        }
    }
    reward_figure(&dir.join("rewards"), &reproduction, &curves)?;
    if !reproduction.pools.is_empty() {
        crate::meta_reproduce::figure(&dir.join("heldout"), &reproduction.pools, plan.seeds.len())?;
    }
    write_atomic(
        &dir.join("summary.json"),
        &serde_json::to_vec_pretty(&reproduction).expect("serializes"),
    )?;
    write_atomic(&dir.join("summary.md"), markdown(&reproduction).as_bytes())?;
    Ok(Reproduced::Done(reproduction))
}

/// A running mean over 1% of the run (at least 1 update), so that curves of noisy per-update
/// rewards are readable.
fn smooth(values: &[f64]) -> Vec<f64> {
    let w = (values.len() / 100).max(1);
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(w - 1);
            values[lo..=i].iter().sum::<f64>() / (i - lo + 1) as f64
        })
        .collect()
}

/// The summary as markdown.
pub fn markdown(r: &RlReproduction) -> String {
    let mut out = format!(
        "# {}: {} seeds, {} updates each\n\nFinal reward: each seed's mean reward per episode over the last tenth of its updates. \
         A uniformly random policy earns {:.2}.\n\n| kind | neurons | params | learning rate | final reward, median [IQR] | per seed |\n|---|---:|---:|---:|---|---|\n",
        r.task,
        r.seeds.len(),
        r.episodes,
        r.random_reward
    );
    for k in &r.kinds {
        out += &format!(
            "| {} | {} | {} | {} | {:.2} [{:.2}, {:.2}] | {} |\n",
            k.kind,
            k.hidden,
            k.params,
            k.learning_rate,
            k.spread.median,
            k.spread.q25,
            k.spread.q75,
            k.final_reward
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out += "\nTwo-sided Mann-Whitney rank-sum tests on the final rewards:\n\n| kinds | U | p |\n|---|---:|---:|\n";
    for t in &r.tests {
        out += &format!(
            "| {} vs {} | {} | {:.3} |\n",
            t.kinds.0, t.kinds.1, t.u, t.p
        );
    }
    out + &crate::meta_reproduce::markdown(&r.pools, r.pool_episodes)
}

fn reward_figure(stem: &Path, r: &RlReproduction, curves: &[(String, Vec<Spread>)]) -> Result<()> {
    let title = format!(
        "{}: reward per episode, median over {} seeds (IQR shaded)",
        r.task,
        r.seeds.len()
    );
    crate::figures::write_png_svg(stem, (900, 560), &RewardFigure(&title, r, curves))
}

/// [`reward_figure`]'s figure: title, reproduction, curves.
struct RewardFigure<'a>(&'a str, &'a RlReproduction, &'a [(String, Vec<Spread>)]);

impl crate::figures::Figure for RewardFigure<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), String> {
        draw(root, self.0, self.1, self.2)
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    r: &RlReproduction,
    curves: &[(String, Vec<Spread>)],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let n = curves
        .iter()
        .map(|(_, s)| s.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let lo = curves
        .iter()
        .flat_map(|(_, s)| s.iter().map(|v| v.q25))
        .fold(r.random_reward, f64::min);
    let hi = curves
        .iter()
        .flat_map(|(_, s)| s.iter().map(|v| v.q75))
        .fold(r.random_reward, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("update")
        .y_desc("reward per episode")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    for (c, (name, spreads)) in curves.iter().enumerate() {
        let color = crate::figures::KIND_PALETTE[c % crate::figures::KIND_PALETTE.len()];
        let band: Vec<(f64, f64)> = spreads
            .iter()
            .enumerate()
            .map(|(e, s)| (e as f64, s.q75))
            .chain(
                spreads
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(e, s)| (e as f64, s.q25)),
            )
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                color.mix(0.15).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                spreads
                    .iter()
                    .enumerate()
                    .map(|(e, s)| (e as f64, s.median)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, r.random_reward), (n, r.random_reward)],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label("random policy")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_sum_matches_known_values() {
        // Complete separation of 3 against 3: U = 9 or 0, exact two-sided p = 2/20 = 0.1.
        let (u, p) = rank_sum(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert_eq!(u, 9.0);
        assert!((p - 0.1).abs() < 1e-12, "{p}");
        let (u, p) = rank_sum(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert_eq!(u, 0.0);
        assert!((p - 0.1).abs() < 1e-12, "{p}");
        // Interleaved samples: no evidence of a difference.
        let (_, p) = rank_sum(&[1.0, 3.0, 5.0, 7.0], &[2.0, 4.0, 6.0, 8.0]);
        assert!(p > 0.5, "{p}");
        // 5 against 5, separated: exact p = 2/252.
        let (_, p) = rank_sum(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((p - 2.0 / 252.0).abs() < 1e-12, "{p}");
        // With ties: the normal approximation, still small for separated samples.
        let (_, p) = rank_sum(
            &[5.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            &[1.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        );
        assert!(p < 0.02, "{p}");
    }
}
