//! `bohp reproduce metatasks`: after training, each seed of each kind is measured on every
//! pool of tasks (new instances of its training tasks, the held-out generated tasks, each named
//! task), beside the random and the optimal policy; per pool, the spread over seeds and the
//! rank-sum tests between kinds; a figure of the normalised scores.
//!
//! ```text
//! <out>/metatasks/<kind>/seed-k/pools.json   the seed's measures (reused when present)
//! <out>/metatasks/heldout.png|svg            normalised score per pool and kind
//! ```
//!
//! The normalised score of a seed on a pool is `(reward − random) / (optimum − random)`: 0 is
//! the random policy, 1 the policy that knows each instance's hidden values.

use std::path::Path;

use anyhow::{Context, Result};
use bohp::rl::config::RlConfig;
use bohp::rl::train::{PoolScore, RlTrainer};
use bohp::run::{RunDir, write_atomic};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rl_reproduce::{RankSum, rank_sum};
use crate::stats::Spread;

/// What a seed's `pools.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    episodes: usize,
    pools: Vec<PoolScore>,
}

/// The seed's measures on every pool: read from `<dir>/pools.json` when it holds `episodes`
/// episodes per pool, else measured (the run's final model) and written there.
pub fn measure(dir: &Path, config: &RlConfig, episodes: usize) -> Result<Vec<PoolScore>> {
    let path = dir.join("pools.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(m) = serde_json::from_str::<Measured>(&text)
        && m.episodes == episodes
    {
        return Ok(m.pools);
    }
    let mut trainer = RlTrainer::new(config.clone())?;
    trainer.load_model(&RunDir::open(dir)?.model_path())?;
    let pools = trainer.evaluate_pools(episodes);
    let text = serde_json::to_vec_pretty(&Measured {
        episodes,
        pools: pools.clone(),
    })
    .expect("serializes");
    write_atomic(&path, &text).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(pools)
}

/// One kind on one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolKind {
    /// The kind.
    pub kind: String,
    /// Each seed's mean reward per episode.
    pub reward: Vec<f64>,
    /// Each seed's normalised score.
    pub score: Vec<f64>,
    /// Spread of `reward`.
    pub spread: Spread,
    /// Spread of `score`.
    pub score_spread: Spread,
}

/// Every kind on one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolSummary {
    /// `train`, `heldout` or a named task.
    pub pool: String,
    /// The random policy's expected reward, mean over the seeds' episodes.
    pub random: f64,
    /// The optimal policy's expected reward, mean over the seeds' episodes.
    pub optimal: f64,
    /// Per kind.
    pub kinds: Vec<PoolKind>,
    /// Rank-sum tests of the normalised scores between each pair of kinds (each seed is
    /// measured on its own episodes, whose optimum differs: the score corrects for it).
    pub tests: Vec<RankSum>,
}

/// Per pool, the spreads and tests of `measured`: `(kind, each seed's pool scores)`.
pub fn summarize(measured: &[(String, Vec<Vec<PoolScore>>)]) -> Vec<PoolSummary> {
    let Some(pools) = measured
        .iter()
        .find_map(|(_, seeds)| seeds.first())
        .map(|p| p.iter().map(|s| s.pool.clone()).collect::<Vec<_>>())
    else {
        return Vec::new();
    };
    pools
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            let all: Vec<&PoolScore> = measured
                .iter()
                .flat_map(|(_, seeds)| seeds.iter().map(move |s| &s[i]))
                .collect();
            let mean = |f: fn(&PoolScore) -> f64| {
                all.iter().map(|s| f(s)).sum::<f64>() / all.len().max(1) as f64
            };
            let kinds: Vec<PoolKind> = measured
                .iter()
                .filter(|(_, seeds)| !seeds.is_empty())
                .map(|(kind, seeds)| {
                    let reward: Vec<f64> = seeds.iter().map(|s| s[i].reward).collect();
                    let score: Vec<f64> = seeds.iter().map(|s| normalised(&s[i])).collect();
                    PoolKind {
                        kind: kind.clone(),
                        spread: Spread::of(&reward),
                        score_spread: Spread::of(&score),
                        reward,
                        score,
                    }
                })
                .collect();
            let mut tests = Vec::new();
            for a in 0..kinds.len() {
                for b in a + 1..kinds.len() {
                    let (u, p) = rank_sum(&kinds[a].score, &kinds[b].score);
                    tests.push(RankSum {
                        kinds: (kinds[a].kind.clone(), kinds[b].kind.clone()),
                        u,
                        p,
                    });
                }
            }
            PoolSummary {
                pool: pool.clone(),
                random: mean(|s| s.random),
                optimal: mean(|s| s.optimal),
                kinds,
                tests,
            }
        })
        .collect()
}

/// `(reward − random) / (optimum − random)`; 0 when the optimum is no better than random.
pub fn normalised(s: &PoolScore) -> f64 {
    let gap = s.optimal - s.random;
    if gap > 1e-12 {
        (s.reward - s.random) / gap
    } else {
        0.0
    }
}

/// The pools as markdown: rewards, normalised scores, and the tests.
pub fn markdown(pools: &[PoolSummary], episodes: usize) -> String {
    let Some(first) = pools.first() else {
        return String::new();
    };
    let header = |what: &str| {
        let mut h = format!("\n| {what} |");
        for p in pools {
            h += &format!(" {} |", p.pool);
        }
        h += "\n|---|";
        h += &"---:|".repeat(pools.len());
        h + "\n"
    };
    let mut out = format!(
        "\n## Held-out measures\n\n{episodes} episodes per pool and seed (the `Eval` stream): `train` = new \
         instances of the training tasks, `heldout` = generated tasks never trained on, then the named \
         tasks (never trained on). Reward per episode, median [IQR] over seeds:\n"
    );
    out += &header("kind");
    for (k, kind) in first.kinds.iter().enumerate() {
        out += &format!("| {} |", kind.kind);
        for p in pools {
            let s = &p.kinds[k].spread;
            out += &format!(" {:.2} [{:.2}, {:.2}] |", s.median, s.q25, s.q75);
        }
        out += "\n";
    }
    out += "| random policy |";
    for p in pools {
        out += &format!(" {:.2} |", p.random);
    }
    out += "\n| optimum (knows the instance) |";
    for p in pools {
        out += &format!(" {:.2} |", p.optimal);
    }
    out += "\n\nNormalised score (reward − random) / (optimum − random), median [IQR]:\n";
    out += &header("kind");
    for (k, kind) in first.kinds.iter().enumerate() {
        out += &format!("| {} |", kind.kind);
        for p in pools {
            let s = &p.kinds[k].score_spread;
            out += &format!(" {:.3} [{:.3}, {:.3}] |", s.median, s.q25, s.q75);
        }
        out += "\n";
    }
    out += "\nTwo-sided rank-sum p-values between kinds, on each pool's normalised scores:\n";
    out += &header("kinds");
    for (t, test) in first.tests.iter().enumerate() {
        out += &format!("| {} vs {} |", test.kinds.0, test.kinds.1);
        for p in pools {
            out += &format!(" {:.3} |", p.tests[t].p);
        }
        out += "\n";
    }
    out
}

/// The figure: each pool's normalised score, median with IQR whiskers, one bar per kind.
pub fn figure(stem: &Path, pools: &[PoolSummary], seeds: usize) -> Result<()> {
    let title = format!(
        "normalised score per pool (0 = random, 1 = optimum), median and IQR over {seeds} seeds"
    );
    crate::figures::write_png_svg(stem, (1000, 520), &HeldoutFigure(&title, pools))
}

/// [`figure`]'s figure: title, pools.
struct HeldoutFigure<'a>(&'a str, &'a [PoolSummary]);

impl crate::figures::Figure for HeldoutFigure<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), String> {
        draw(root, self.0, self.1)
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    pools: &[PoolSummary],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let kinds = pools.first().map_or(0, |p| p.kinds.len()).max(1);
    let lo = pools
        .iter()
        .flat_map(|p| p.kinds.iter().map(|k| k.score_spread.q25))
        .fold(-0.1f64, f64::min);
    let hi = pools
        .iter()
        .flat_map(|p| p.kinds.iter().map(|k| k.score_spread.q75))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..pools.len() as f64, (lo - 0.05)..(hi + 0.05))
        .map_err(err)?;
    let names: Vec<String> = pools.iter().map(|p| p.pool.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(pools.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("normalised score")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let width = 0.8 / kinds as f64;
    for k in 0..kinds {
        let color = crate::figures::KIND_PALETTE[k % crate::figures::KIND_PALETTE.len()];
        let x = |p: usize| p as f64 + 0.1 + width * k as f64;
        let bars: Vec<_> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = p.kinds[k].score_spread;
                Rectangle::new(
                    [(x(i), 0.0), (x(i) + width * 0.9, s.median)],
                    color.mix(0.7).filled(),
                )
            })
            .collect();
        let name = pools[0].kinds[k].kind.clone();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        chart
            .draw_series(pools.iter().enumerate().map(|(i, p)| {
                let s = p.kinds[k].score_spread;
                let mid = x(i) + width * 0.45;
                PathElement::new([(mid, s.q25), (mid, s.q75)], BLACK.stroke_width(1))
            }))
            .map_err(err)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            [(0.0, 0.0), (pools.len() as f64, 0.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(pool: &str, reward: f64) -> PoolScore {
        PoolScore {
            pool: pool.into(),
            episodes: 10,
            reward,
            random: 10.0,
            optimal: 20.0,
        }
    }

    #[test]
    fn pools_are_summarised_per_kind_with_scores_and_tests() {
        let seeds = |base: f64| -> Vec<Vec<PoolScore>> {
            (0..3)
                .map(|s| {
                    vec![
                        score("train", base + s as f64),
                        score("heldout", base - 1.0),
                    ]
                })
                .collect()
        };
        let measured = vec![
            ("plastic".to_string(), seeds(15.0)),
            ("lstm".to_string(), seeds(10.0)),
        ];
        let pools = summarize(&measured);
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].pool, "train");
        assert_eq!(pools[0].kinds[0].reward, vec![15.0, 16.0, 17.0]);
        assert!((pools[0].kinds[0].score_spread.median - 0.6).abs() < 1e-12);
        assert!((pools[1].kinds[1].score_spread.median + 0.1).abs() < 1e-12);
        // Separated 3 against 3: p = 0.1.
        assert!((pools[0].tests[0].p - 0.1).abs() < 1e-12);
        let md = markdown(&pools, 10);
        assert!(
            md.contains("| plastic | 16.00 [15.50, 16.50] | 14.00 [14.00, 14.00] |"),
            "{md}"
        );
        assert!(md.contains("| plastic vs lstm | 0.100 |"), "{md}");
        let dir = tempfile::tempdir().expect("tempdir");
        figure(&dir.path().join("heldout"), &pools, 3).expect("figure");
        assert!(
            dir.path().join("heldout.png").is_file() && dir.path().join("heldout.svg").is_file()
        );
    }

    #[test]
    fn a_pool_where_random_is_optimal_scores_zero() {
        let mut s = score("bandit", 5.0);
        s.optimal = s.random;
        assert_eq!(normalised(&s), 0.0);
    }
}
