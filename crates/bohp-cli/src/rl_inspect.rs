//! `bohp inspect` on a trained maze agent: its path through one held-out episode, before and
//! after it first finds the reward (`maze-path.png`), and the episode's reward.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use bohp::registry::{TrainedModel, load_trained};
use bohp::rl::env::{BatchEnv, EnvKind, is_wall};
use bohp::rng::{Stream, stream_rng};
use burn::tensor::{Tensor, TensorData};
use plotters::prelude::*;
use serde::Serialize;

/// What one held-out episode of a maze agent did.
#[derive(Debug, Clone, Serialize)]
pub struct MazeEpisode {
    /// The agent's cell after each step.
    pub path: Vec<(usize, usize)>,
    /// The reward cell.
    pub reward_cell: (usize, usize),
    /// The step at which it first reached the reward (none if never).
    pub first_reward: Option<usize>,
    /// Times it reached the reward.
    pub rewards: usize,
    /// Total reward.
    pub total: f64,
}

/// Runs episode 0 of the `Eval` stream with the trained agent of `run_dir`, sampling its
/// policy, and draws `out/maze-path.png`.
pub fn inspect_maze(run_dir: &Path, out: &Path) -> Result<MazeEpisode> {
    let TrainedModel::ActorCritic(agent, config) = load_trained(run_dir)? else {
        bail!("{}: not a reinforcement-learning run", run_dir.display());
    };
    if config.task.kind != EnvKind::Maze {
        bail!(
            "{}: `bohp inspect` draws maze agents; this run's task is {:?} (its summary.json has its reward)",
            run_dir.display(),
            config.task.kind
        );
    }
    let shape = config.env_shape();
    let device = bohp::device::init_device(bohp::device::Backend::Flex, config.dtype)?;
    let mut env = BatchEnv::new(shape, config.seed, Stream::Eval, 0, 1);
    let mut rng = stream_rng(config.seed, Stream::Act, u64::MAX - 1);
    let mut state = agent.start(1);
    let reward_cell = env.maze_positions()[0].1;
    let mut episode = MazeEpisode {
        path: vec![env.maze_positions()[0].0],
        reward_cell,
        first_reward: None,
        rewards: 0,
        total: 0.0,
    };
    for t in 0..shape.steps {
        let obs = env.observe(t);
        let x = Tensor::from_data(TensorData::new(obs, [1, shape.inputs()]), &device);
        let (step, next) = agent.step(x, state);
        state = next;
        let probs: Vec<f32> = step
            .probs
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("probabilities: {e:?}"))?;
        let action = bohp::rl::train::sample_action(&probs, &mut rng);
        let r = env.act(&[action])[0];
        if r > 0.0 {
            episode.rewards += 1;
            episode.first_reward.get_or_insert(t);
            // The step that reached the reward ends on its cell; the teleport follows.
            episode.path.push(reward_cell);
        }
        episode.total += f64::from(r);
        episode.path.push(env.maze_positions()[0].0);
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow!("{}: cannot create: {e}", out.display()))?;
    let png = out.join("maze-path.png");
    draw(&png, shape.maze_side, &episode)
        .map_err(|e| anyhow!("{}: cannot draw the figure: {e}", png.display()))?;
    Ok(episode)
}

fn draw(png: &Path, side: usize, e: &MazeEpisode) -> Result<(), String> {
    crate::figures::register_font_public();
    let cell = 36i32;
    let panel = cell * side as i32;
    let root =
        BitMapBackend::new(png, ((2 * panel + 60) as u32, (panel + 70) as u32)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let split = e
        .first_reward
        .map_or(e.path.len(), |t| (t + 2).min(e.path.len()));
    // After the first reward: from the teleport to the reward again (at most 60 steps).
    let again = e.path[split..]
        .iter()
        .position(|c| *c == e.reward_cell)
        .map_or(e.path.len(), |i| split + i + 1)
        .min(split + 60)
        .min(e.path.len());
    let titles = [
        format!("before the first reward: {} steps", split.saturating_sub(1)),
        format!(
            "after it: teleported, back in {} steps",
            again.saturating_sub(split + 1)
        ),
    ];
    let segments = [&e.path[..split], &e.path[split..again]];
    for (k, (title, segment)) in titles.iter().zip(segments).enumerate() {
        let x0 = 20 + k as i32 * (panel + 20);
        let y0 = 50;
        root.draw(&Text::new(
            title.clone(),
            (x0, 15),
            ("sans-serif", 15).into_font(),
        ))
        .map_err(err)?;
        for r in 0..side {
            for c in 0..side {
                let (x, y) = (x0 + c as i32 * cell, y0 + r as i32 * cell);
                let fill = if is_wall(side, (r, c)) {
                    RGBColor(60, 60, 60)
                } else if (r, c) == e.reward_cell {
                    RGBColor(255, 200, 0)
                } else {
                    RGBColor(245, 245, 245)
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))
                .map_err(err)?;
            }
        }
        let centre = |(r, c): (usize, usize)| {
            (
                x0 + c as i32 * cell + cell / 2,
                y0 + r as i32 * cell + cell / 2,
            )
        };
        let colour = if k == 0 {
            RGBColor(31, 119, 180)
        } else {
            RGBColor(214, 39, 40)
        };
        for pair in segment.windows(2) {
            // A teleport is not a move: draw only steps between neighbouring cells.
            let (a, b) = (pair[0], pair[1]);
            if a.0.abs_diff(b.0) + a.1.abs_diff(b.1) == 1 {
                root.draw(&PathElement::new(
                    vec![centre(a), centre(b)],
                    colour.stroke_width(3),
                ))
                .map_err(err)?;
            }
        }
        if let Some(&start) = segment.first() {
            root.draw(&Circle::new(centre(start), 7, colour.filled()))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
