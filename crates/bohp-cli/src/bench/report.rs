//! `bench.md`: the report's tables, from `bench.json`.

use super::*;

pub(super) fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// Episodes per second: whole numbers, three decimals below 10 (the large recurrent networks).
pub(super) fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(x) if x < 10.0 => format!("{x:.3}"),
        _ => fmt_opt(v, 0),
    }
}

/// The report as markdown tables: every cell (with the peer and the ratio to it where
/// measured), then the analytic engine's speed-up over autodiff.
pub fn markdown(report: &BenchReport) -> String {
    let mut threads: Vec<usize> = report.results.iter().filter_map(|r| r.threads).collect();
    threads.sort();
    threads.dedup();
    let threads = threads
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "# bohp bench\n\n`{}`\n\n{} cores, {} thread(s) per cell and peer; up to {} warm-up updates, then the median of {} repeats of up to {} updates, the warm-up and the first repeat stopping after {} s (later repeats as long as the first; each cell's counts in bench.json, the same rule in every family); f32.\n\n",
        report.command,
        report.cores,
        threads,
        report.timing.warmup,
        report.timing.repeats,
        report.timing.updates,
        report.timing.seconds
    );
    // One pair of columns per peer framework measured (PyTorch's when none was).
    let mut frameworks: Vec<Framework> = report.peer.iter().map(|p| p.framework).collect();
    frameworks.sort_by_key(|f| f.name());
    frameworks.dedup();
    frameworks.reverse(); // torch, then jax
    if frameworks.is_empty() {
        frameworks.push(Framework::Torch);
    }
    out += "| workload | batch | device | engine | episodes/s | ms/update | peak RSS (MiB) | GPU memory (MiB) |";
    for f in &frameworks {
        let t = f.title();
        out += &format!(" {t} episodes/s (fastest implementation) | × {t} |");
    }
    out += "\n|---|---:|---|---|---:|---:|---:|---:|";
    out += &"---:|---:|".repeat(frameworks.len());
    out += "\n";
    for r in &report.results {
        let rate = match &r.error {
            Some(e) => format!("failed: {e}"),
            None => fmt_rate(r.episodes_per_second),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.cell.workload,
            r.cell.batch,
            r.cell.device,
            r.cell.engine.name(),
            rate,
            fmt_opt(r.ms_per_update, 3),
            fmt_opt(r.peak_rss_mib, 0),
            fmt_opt(r.device_memory_mib, 1),
        );
        for &f in &frameworks {
            // The peer's fastest implementation that ran (the recurrent peer has two).
            let peer = report
                .peer
                .iter()
                .filter(|p| {
                    p.framework == f && p.workload == r.cell.workload && p.batch == r.cell.batch
                })
                .filter_map(|p| p.episodes_per_second)
                .reduce(f64::max);
            let ratio = r.episodes_per_second.zip(peer).map(|(a, b)| a / b);
            out += &format!(" {} | {} |", fmt_rate(peer), fmt_opt(ratio, 1));
        }
        out += "\n";
    }
    let speedups: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.cell.engine == BenchEngine::Analytic)
        .filter_map(|an| {
            let ad = report.results.iter().find(|r| {
                r.cell.engine == BenchEngine::Autodiff
                    && r.cell.workload == an.cell.workload
                    && r.cell.device == an.cell.device
                    && r.cell.batch == an.cell.batch
            })?;
            let ratio = an.episodes_per_second? / ad.episodes_per_second?;
            Some(format!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.1} |\n",
                an.cell.workload,
                an.cell.batch,
                an.cell.device,
                an.episodes_per_second?,
                ad.episodes_per_second?,
                ratio
            ))
        })
        .collect();
    if !speedups.is_empty() {
        out += "\n## Analytic engine vs autodiff\n\n| workload | batch | device | analytic episodes/s | autodiff episodes/s | × autodiff |\n|---|---:|---|---:|---:|---:|\n";
        for line in speedups {
            out += &line;
        }
    }
    if !report.peer.is_empty() {
        out += "\n## Peers\n\n| framework | workload | batch | implementation | episodes/s | compile (s, not timed) | peak RSS (MiB) | version and flags | command |\n|---|---|---:|---|---:|---:|---:|---|---|\n";
        for p in &report.peer {
            let rate = match &p.error {
                Some(e) => format!("failed: {e}"),
                None => fmt_rate(p.episodes_per_second),
            };
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | `{}` |\n",
                p.framework.title(),
                p.workload,
                p.batch,
                p.implementation,
                rate,
                fmt_opt(p.compile_seconds, 2),
                fmt_opt(p.peak_rss_mib, 0),
                p.header.as_deref().unwrap_or("–"),
                p.command
            );
        }
    }
    out
}
