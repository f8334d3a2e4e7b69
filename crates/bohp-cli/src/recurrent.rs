//! What `bohp train` prints and draws for recurrent runs: the summary line, and for image runs
//! the reconstruction figure.

use std::path::Path;

use anyhow::{Result, anyhow};
use bohp::recurrent::images::SIDE;
use bohp::recurrent::train::RecurrentTrainer;
use bohp::rng::Stream;
use plotters::prelude::*;

/// A PNG grid, one row per held-out episode: the presented images, the half-erased probe
/// (erased pixels mid-grey), the network's reconstruction (its last step) and the original.
pub fn reconstruction_figure(
    trainer: &RecurrentTrainer,
    path: &Path,
    episodes: usize,
) -> Result<()> {
    let task = trainer.task();
    let width = trainer.config().neurons().max(task.size);
    let width = if trainer.model_name() == "lstm" {
        task.size
    } else {
        width
    };
    let batch = task.batch(trainer.config().seed, Stream::Eval, 0, episodes, width);
    let y = trainer.outputs(&batch);
    let size = task.size;
    let scale = 4usize;
    let cols = task.items + 3;
    let pad = 6usize;
    let cell = SIDE * scale + pad;
    let header = 24usize;
    let (w, h) = (cols * cell + pad, episodes * cell + pad + header);
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    let fail = |e: String| anyhow!("{}: cannot draw the figure: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    crate::figures::register_font_public();
    let labels: Vec<String> = (1..=task.items)
        .map(|k| format!("shown {k}"))
        .chain([
            "probe".to_string(),
            "network".to_string(),
            "original".to_string(),
        ])
        .collect();
    for (c, label) in labels.iter().enumerate() {
        root.draw(&Text::new(
            label.clone(),
            ((pad + c * cell) as i32, 6),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(|e| fail(e.to_string()))?;
    }
    let grey = |v: f32| {
        let g = (((v.clamp(-1.0, 1.0) + 1.0) / 2.0) * 255.0).round() as u8;
        RGBColor(g, g, g)
    };
    for e in 0..episodes {
        let target = &batch.targets[e * size..(e + 1) * size];
        let erased = &batch.erased[e * size..(e + 1) * size];
        let probe: Vec<f32> = target
            .iter()
            .zip(erased)
            .map(|(&v, &x)| if x == 1.0 { 0.0 } else { v })
            .collect();
        let out = &y[e * batch.neurons..e * batch.neurons + size];
        let mut panels: Vec<&[f32]> = (0..task.items)
            .map(|k| &batch.stimuli[(e * task.items + k) * size..(e * task.items + k + 1) * size])
            .collect();
        panels.push(&probe);
        panels.push(out);
        panels.push(target);
        for (c, img) in panels.iter().enumerate() {
            let (x0, y0) = (pad + c * cell, header + pad + e * cell);
            for py in 0..SIDE {
                for px in 0..SIDE {
                    let (x, yy) = ((x0 + px * scale) as i32, (y0 + py * scale) as i32);
                    root.draw(&Rectangle::new(
                        [(x, yy), (x + scale as i32, yy + scale as i32)],
                        grey(img[py * SIDE + px]).filled(),
                    ))
                    .map_err(|e| fail(e.to_string()))?;
                }
            }
        }
    }
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}
