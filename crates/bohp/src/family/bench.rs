//! `bohp bench`'s measurement of one cell, written once for every family: the workload's
//! config made into the cell's (f32 on the cell's device, its batch and engine, no frozen
//! phase), whole updates timed as training runs them (metrics read back as the trainer reads
//! them, the device synchronised before the clock stops), under one warm-up and repeat rule.
//!
//! **The rule.** The warm-up runs up to `warmup` updates, stopping early once it has run
//! `seconds`; the first timed repeat runs up to `updates` updates, stopping early once it has
//! run `seconds` (at least one update); every later repeat runs as many updates as the first.
//! So a fast cell (a single-layer update of microseconds) runs the plan's counts, and a slow
//! one (a 1000-neuron recurrent update of a second) about `seconds` per repeat, in every family
//! alike; the counts really run are recorded beside the rates.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Family;
use crate::device::{Backend, Precision};
use crate::engines::Engine;
use crate::error::{Error, Result};
use crate::learner::{Learner, RunSchedule};

/// What one cell measures: the workload's config on `device` in f32, with `batch` episodes
/// per update and gradients from `engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchCell {
    /// Compute backend.
    pub device: Backend,
    /// Episodes per update.
    pub batch: usize,
    /// Gradient engine.
    pub engine: Engine,
}

/// How long a cell is measured (see the module's rule); as measured, the counts really run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BenchTiming {
    /// Updates before timing starts (at most).
    pub warmup: usize,
    /// Updates per timed repeat (at most).
    pub updates: usize,
    /// Timed repeats; the reported rate is their median.
    pub repeats: usize,
    /// The longest a warm-up or the first repeat runs before it stops early.
    #[serde(default = "default_seconds")]
    pub seconds: f64,
}

fn default_seconds() -> f64 {
    f64::INFINITY
}

/// One cell's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchMeasure {
    /// Episodes per second of each repeat.
    pub rates: Vec<f64>,
    /// The warm-up and repeat counts really run.
    pub timing: BenchTiming,
    /// GPU backends: bytes the device's allocator holds at the end.
    pub device_memory_bytes: Option<u64>,
}

/// Measures the workload of the config at `path` as `cell` says, under `timing`'s rule.
pub fn measure<F: Family>(
    path: &Path,
    cell: &BenchCell,
    timing: &BenchTiming,
) -> Result<BenchMeasure> {
    if timing.updates == 0 || timing.repeats == 0 {
        return Err(Error::Unsupported(
            "a bench cell needs at least one update and one repeat".into(),
        ));
    }
    let mut config = F::load(path)?;
    {
        let keys = F::keys(&mut config);
        *keys.device = cell.device;
        *keys.dtype = Precision::F32;
        *keys.batch = cell.batch;
        *keys.engine = cell.engine;
        *keys.episodes = timing.warmup + timing.updates * timing.repeats;
        if let Some(frozen) = keys.freeze_last {
            *frozen = 0;
        }
    }
    config.check(&format!("{} as benchmarked", path.display()))?;
    let mut trainer = F::start(config)?;
    let every = trainer.readback_every().max(1);
    // Up to `count` updates, stopping early (after at least one) once `budget` seconds have
    // passed; the number run.
    let run = |trainer: &mut F::Trainer, count: usize, budget: f64| -> Result<usize> {
        let started = Instant::now();
        let mut done = 0;
        while done < count {
            let rows = trainer
                .steps(every.min(count - done))
                .map_err(|d| Error::Unsupported(format!("the bench cell diverged: {d}")))?;
            if rows.is_empty() {
                return Err(Error::Unsupported(
                    "the run ended before the bench did".into(),
                ));
            }
            done += rows.len();
            if started.elapsed().as_secs_f64() >= budget {
                break;
            }
        }
        trainer.sync()?;
        Ok(done)
    };
    let warmup = if timing.warmup == 0 {
        0
    } else {
        run(&mut trainer, timing.warmup, timing.seconds)?
    };
    let mut updates = timing.updates;
    let mut rates = Vec::with_capacity(timing.repeats);
    for repeat in 0..timing.repeats {
        let budget = if repeat == 0 {
            timing.seconds
        } else {
            f64::INFINITY
        };
        let started = Instant::now();
        let done = run(&mut trainer, updates, budget)?;
        let seconds = started.elapsed().as_secs_f64();
        updates = done;
        rates.push((done * cell.batch) as f64 / seconds.max(1e-12));
    }
    Ok(BenchMeasure {
        rates,
        timing: BenchTiming {
            warmup,
            updates,
            repeats: timing.repeats,
            seconds: timing.seconds,
        },
        device_memory_bytes: if cell.device.is_gpu() {
            trainer.device_memory_bytes()
        } else {
            None
        },
    })
}
