//! A bench cell, the same for every family: the workload's family found by the registry, its
//! cell measured by [`bohp::family::bench::measure`] (one warm-up and repeat rule, whole
//! updates, the counts really run recorded).

use super::*;
use crate::stats::quantile;
use anyhow::{Result, bail};
use bohp::family::bench::BenchCell;
use bohp::single::config::Engine;
use std::path::Path;

/// Whether workload `name` in `configs` is a recurrent task.
pub fn is_recurrent_workload(configs: &Path, name: &str) -> bool {
    crate::commands::is_family(&configs.join(format!("{name}.toml")), "recurrent")
}

/// Whether workload `name` in `configs` is a reinforcement-learning task (`bandit`, `cue`,
/// `maze`).
pub fn is_rl_workload(configs: &Path, name: &str) -> bool {
    crate::commands::is_family(&configs.join(format!("{name}.toml")), "reinforcement")
}

/// Whether workload `name` in `configs` is a few-shot task (`omniglot`).
pub fn is_few_shot_workload(configs: &Path, name: &str) -> bool {
    crate::commands::is_family(&configs.join(format!("{name}.toml")), "few-shot")
}

/// Measures one cell in this process (`bohp bench-cell`), whatever its workload's family.
pub fn run_cell(configs: &Path, cell: &Cell, timing: &Timing) -> Result<CellResult> {
    let path = configs.join(format!("{}.toml", cell.workload));
    if !path.is_file() {
        bail!(
            "{}: no config for workload `{}`",
            path.display(),
            cell.workload
        );
    }
    let family = crate::commands::registry().of_file(&path)?;
    let engine = match cell.engine {
        BenchEngine::Analytic => Engine::Analytic,
        BenchEngine::Autodiff => Engine::Autodiff,
        BenchEngine::Fused => Engine::Fused,
    };
    let measured = family.bench(
        &path,
        &BenchCell {
            device: cell.device,
            batch: cell.batch,
            engine,
        },
        timing,
    )?;
    let rate = quantile(&measured.rates, 0.5);
    Ok(CellResult {
        cell: cell.clone(),
        episodes_per_second: Some(rate),
        ms_per_update: Some(1000.0 * cell.batch as f64 / rate),
        repeats: measured.rates,
        peak_rss_mib: peak_rss_mib(None),
        device_memory_mib: measured
            .device_memory_bytes
            .map(|b| b as f64 / (1024.0 * 1024.0)),
        error: None,
        timing: Some(measured.timing),
        threads: Some(rayon::current_num_threads()),
    })
}
