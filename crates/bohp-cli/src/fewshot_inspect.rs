//! `bohp inspect` on a trained Omniglot network: one held-out 5-way 1-shot episode drawn as
//! its support images, its query and the network's class probabilities (`episode.png`).

use std::path::Path;

use anyhow::Result;
use bohp::omniglot::config::OmniglotConfig;
use bohp::omniglot::train::{OmniglotTrainer, episode_batch};
use bohp::omniglot::{Augment, SIDE};
use bohp::rng::{Stream, stream_rng};
use burn::module::Module;
use burn::tensor::activation::softmax;
use plotters::prelude::*;
use serde::Serialize;

/// What the network did on one episode.
#[derive(Debug, Clone, Serialize)]
pub struct FewShotEpisode {
    /// Classes.
    pub ways: usize,
    /// The query's class (its support image's position, 0-based).
    pub target: usize,
    /// The network's probability for each class, in support order.
    pub probabilities: Vec<f64>,
    /// The class it chose.
    pub predicted: usize,
    /// Where the episode's characters came from: `held-out` or `training` alphabets.
    pub alphabets: String,
}

/// Runs episode 0 of the `Eval` stream (5-way 1-shot, from the held-out alphabets, else the
/// training ones) with the trained network of `run_dir`, and draws `out/episode.png`.
pub fn inspect_omniglot(run_dir: &Path, out: &Path) -> Result<FewShotEpisode> {
    let run = bohp::run::RunDir::open(run_dir)?;
    run.verify_finished()?;
    let config = OmniglotConfig::load(&run.config_path())?;
    let path = run.model_path();
    let mut trainer = OmniglotTrainer::new(config.clone())?;
    trainer.load_model(&path)?;
    let ways = 5.min(config.model.outputs);
    let held_out = trainer.held_out().characters.len() >= ways;
    let set = if held_out {
        trainer.held_out().clone()
    } else {
        trainer.train_set().clone()
    };
    let device = bohp::device::init_device(config.device, config.dtype)?;
    let model = trainer.model().valid();
    let mut rng = stream_rng(config.seed, Stream::Eval, u64::MAX);
    let batch = episode_batch(
        std::slice::from_ref(&set),
        ways,
        1,
        config.model.outputs,
        1,
        1,
        &Augment::default(),
        &mut rng,
        &device,
    );
    let probs: Vec<f64> = softmax(model.logits(&batch), 1)
        .into_data()
        .convert::<f64>()
        .try_to_vec()
        .expect("f64");
    let units: Vec<f32> = batch
        .support
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32");
    let outputs = config.model.outputs;
    // Each support image's output unit.
    let unit_of: Vec<usize> = (0..ways)
        .map(|k| {
            units[k * outputs..(k + 1) * outputs]
                .iter()
                .position(|v| *v == 1.0)
                .expect("one-hot")
        })
        .collect();
    let target_unit = batch
        .target
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")[0] as usize;
    let probabilities: Vec<f64> = unit_of.iter().map(|u| probs[*u]).collect();
    let target = unit_of
        .iter()
        .position(|u| *u == target_unit)
        .expect("the query's class is in the support");
    let predicted = (0..ways)
        .max_by(|a, b| probabilities[*a].total_cmp(&probabilities[*b]))
        .expect("classes");
    let images: Vec<f32> = batch
        .images
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32");
    let episode = FewShotEpisode {
        ways,
        target,
        probabilities,
        predicted,
        alphabets: if held_out { "held-out" } else { "training" }.into(),
    };
    std::fs::create_dir_all(out)?;
    draw(&out.join("episode.png"), &images, &episode).map_err(|e| anyhow::anyhow!(e))?;
    Ok(episode)
}

fn draw(png: &Path, images: &[f32], e: &FewShotEpisode) -> Result<(), String> {
    crate::figures::register_font_public();
    let scale = 4i32;
    let side = SIDE as i32 * scale;
    let gap = 24i32;
    let width = e.ways as i32 * (side + gap) + gap;
    let height = 2 * side + 140;
    let root = BitMapBackend::new(png, (width as u32, height as u32)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let font = ("sans-serif", 14).into_font();
    let image = |k: usize, x0: i32, y0: i32| -> Result<(), String> {
        let px = &images[k * SIDE * SIDE..(k + 1) * SIDE * SIDE];
        for r in 0..SIDE {
            for c in 0..SIDE {
                let v = (255.0 * (1.0 - px[r * SIDE + c].clamp(0.0, 1.0))) as u8;
                let (x, y) = (x0 + c as i32 * scale, y0 + r as i32 * scale);
                root.draw(&Rectangle::new(
                    [(x, y), (x + scale, y + scale)],
                    RGBColor(v, v, v).filled(),
                ))
                .map_err(err)?;
            }
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + side, y0 + side)],
            RGBColor(150, 150, 150).stroke_width(1),
        ))
        .map_err(err)?;
        Ok(())
    };
    root.draw(&Text::new(
        format!(
            "support: one image per class ({} alphabets, rotated per class)",
            e.alphabets
        ),
        (gap, 8),
        font.clone(),
    ))
    .map_err(err)?;
    for k in 0..e.ways {
        let x0 = gap + k as i32 * (side + gap);
        image(k, x0, 30)?;
        root.draw(&Text::new(
            format!("class {}", k + 1),
            (x0, 34 + side),
            font.clone(),
        ))
        .map_err(err)?;
    }
    let y1 = 70 + side;
    root.draw(&Text::new(
        format!(
            "query (class {}): the network's probabilities",
            e.target + 1
        ),
        (gap, y1 - 18),
        font.clone(),
    ))
    .map_err(err)?;
    image(e.ways, gap, y1)?;
    // Bars, one per class, beside the query.
    let x0 = 2 * gap + side;
    let bar_w = ((width - x0 - gap) / e.ways as i32 - 10).max(8);
    for (k, p) in e.probabilities.iter().enumerate() {
        let x = x0 + k as i32 * (bar_w + 10);
        let h = (p * side as f64) as i32;
        let colour = if k == e.target {
            RGBColor(44, 160, 44)
        } else {
            RGBColor(31, 119, 180)
        };
        root.draw(&Rectangle::new(
            [(x, y1 + side - h), (x + bar_w, y1 + side)],
            colour.filled(),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            format!("{} {:.2}", k + 1, p),
            (x, y1 + side + 6),
            font.clone(),
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
