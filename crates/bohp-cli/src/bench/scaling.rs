//! The scaling section of `bench.md`: rate and memory against the network's size.

use super::*;
use anyhow::Result;
use std::path::Path;

/// The recurrent peer's implementations, measured side by side.
pub(super) const PEER_IMPLS: [&str; 2] = ["autograd", "fused"];

/// The recurrent network size of a memorisation workload (`task.size`), if it is one.
pub(super) fn memorisation_size(configs: &Path, workload: &str) -> Option<usize> {
    let config =
        bohp::recurrent::config::RecurrentConfig::load(&configs.join(format!("{workload}.toml")))
            .ok()?;
    let task = config.task().ok()?;
    (task.kind == bohp::recurrent::tasks::RecurrentTaskKind::Memorisation).then_some(task.size)
}

/// With memorisation workloads of three or more sizes at batch 1: a section of `bench.md` and
/// the figure `scaling.png`/`.svg` (seconds per episode and peak memory against N, bohp's
/// fused engine and the peer), with the sizes where either failed and why.
/// A failed cell in the scaling table, in short (the whole error is in the peer table).
pub(super) fn failure_kind(error: &str) -> &'static str {
    if error.contains("allocate")
        || error.contains("out of memory")
        || error.contains("MemoryError")
    {
        "failed: out of memory"
    } else {
        "failed (see above)"
    }
}

pub(super) fn scaling(plan: &Plan, report: &BenchReport) -> Result<String> {
    let mut rows: Vec<(usize, String)> = report
        .results
        .iter()
        .filter(|r| r.cell.batch == 1 && r.cell.engine == BenchEngine::Fused)
        .filter_map(|r| {
            memorisation_size(&plan.configs, &r.cell.workload).map(|n| (n, r.cell.workload.clone()))
        })
        .collect();
    rows.sort();
    rows.dedup();
    if rows.len() < 3 {
        return Ok(String::new());
    }
    let mut bohp_points = Vec::new();
    let mut peer_points = vec![Vec::new(), Vec::new()];
    let mut failures = Vec::new();
    let mut md = String::from(
        "\n## Scaling (memorisation, batch 1, fused engine; `scaling.png`)\n\n| N | plastic connections | bohp s/episode | bohp peak MiB | peer autograd s/episode | peer autograd peak MiB | peer fused s/episode | peer fused peak MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (n, workload) in &rows {
        let ours = report.results.iter().find(|r| {
            r.cell.batch == 1 && r.cell.engine == BenchEngine::Fused && &r.cell.workload == workload
        });

        let cell = |rate: Option<f64>, rss: Option<f64>, error: Option<&String>| match (rate, error)
        {
            (Some(rate), None) => (format!("{:.3}", 1.0 / rate), fmt_opt(rss, 0)),
            (_, Some(e)) => (failure_kind(e).into(), fmt_opt(rss, 0)),
            _ => ("–".into(), "–".into()),
        };
        let (a, b) = match ours {
            Some(r) => {
                if let (Some(rate), Some(rss)) = (r.episodes_per_second, r.peak_rss_mib) {
                    bohp_points.push((*n as f64, 1.0 / rate, rss));
                }
                if r.error.is_some() {
                    failures.push(format!("bohp at N = {n}"));
                }
                cell(r.episodes_per_second, r.peak_rss_mib, r.error.as_ref())
            }
            None => ("–".into(), "–".into()),
        };
        let mut peer_cells = Vec::new();
        for (k, implementation) in PEER_IMPLS.iter().enumerate() {
            let peer = report.peer.iter().find(|p| {
                p.framework == Framework::Torch
                    && p.batch == 1
                    && &p.workload == workload
                    && p.implementation == *implementation
            });
            peer_cells.push(match peer {
                Some(p) => {
                    if let (Some(rate), Some(rss)) = (p.episodes_per_second, p.peak_rss_mib) {
                        peer_points[k].push((*n as f64, 1.0 / rate, rss));
                    }
                    if p.error.is_some() {
                        failures.push(format!(
                            "the peer ({implementation}) at N = {n} (peak {} MiB)",
                            fmt_opt(p.peak_rss_mib, 0)
                        ));
                    }
                    cell(p.episodes_per_second, p.peak_rss_mib, p.error.as_ref())
                }
                None => ("–".into(), "–".into()),
            });
        }
        md += &format!(
            "| {n} | {} | {a} | {b} | {} | {} | {} | {} |\n",
            n * n,
            peer_cells[0].0,
            peer_cells[0].1,
            peer_cells[1].0,
            peer_cells[1].1
        );
    }
    let mut series = vec![crate::figures::ScalingSeries {
        label: "bohp fused".into(),
        points: bohp_points,
    }];
    for (implementation, points) in PEER_IMPLS.iter().zip(peer_points) {
        if !points.is_empty() {
            series.push(crate::figures::ScalingSeries {
                label: format!("PyTorch peer ({implementation})"),
                points,
            });
        }
    }
    let note = if failures.is_empty() {
        "every size ran".to_string()
    } else {
        format!("failed (see bench.md): {}", failures.join("; "))
    };
    crate::figures::scaling(
        &plan.out.join("scaling"),
        "memorisation, batch 1: time and peak memory against N (log-log)",
        &note,
        &series,
    )?;
    Ok(md)
}
