//! The bench cells of each family: its config made into the cell's, whole updates timed.

use super::*;
use crate::stats::quantile;
use anyhow::{Result, bail};
use bohp::device::Precision;
use bohp::learner::Learner;
use bohp::single::config::{Engine, SingleLayerConfig};
use bohp::single::train::SingleLayerTrainer;
use std::path::Path;
use std::time::Instant;

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
pub(super) fn time_updates(
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
