//! The gradient check behind `bohp gradcheck`: one batch of a task's episodes, gradients by
//! autodiff, the analytic recursion and finite differences, and a pass/fail verdict against
//! stated tolerances.

use bohp::config::RunConfig;
use bohp::device::{Precision, init_device};
use bohp::rng::Stream;
use bohp::train::init_model;
use serde::Serialize;

use crate::analytic::{Variant, evaluate};
use crate::compare::{
    GroupAgreement, agreement, autodiff, finite_differences, floor, params_of, worst_relative,
};
use crate::dump::{Dump, dump};

/// Largest accepted relative differences, and the floors of their denominators.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    /// Autodiff (in the run's precision) vs the analytic recursion (f64).
    pub autodiff_vs_analytic: f64,
    /// Floor of autodiff-vs-analytic relative errors, as a fraction of `max(1, |loss|)`.
    pub autodiff_floor: f64,
    /// The analytic recursion vs central finite differences (both f64).
    pub analytic_vs_finite_differences: f64,
    /// Floor of analytic-vs-finite-difference relative errors, as a fraction of
    /// `max(1, |loss|)`.
    pub finite_difference_floor: f64,
}

impl Tolerances {
    /// The tolerances for autodiff in `precision`:
    /// - f64: relative error ≤ 1e-10 (both sides are exact up to rounding; measured 1e-13 and
    ///   below), floor 1e-8 · max(1, |L|);
    /// - f32: relative error ≤ 2e-3 (f32 rounding accumulated over the unrolled episode),
    ///   floor 1e-5 · max(1, |L|);
    /// - finite differences: relative error ≤ 1e-6, floor 1e-6 · max(1, |L|) (the 5-point
    ///   stencil's cancellation error is about 1e-13 · |L|, so entries below the floor cannot be
    ///   resolved to 1e-6 by any f64 finite difference).
    pub fn for_precision(precision: Precision) -> Tolerances {
        let (autodiff_vs_analytic, autodiff_floor) = match precision {
            Precision::F64 => (1e-10, 1e-8),
            Precision::F32 => (2e-3, 1e-5),
        };
        Tolerances {
            autodiff_vs_analytic,
            autodiff_floor,
            analytic_vs_finite_differences: 1e-6,
            finite_difference_floor: 1e-6,
        }
    }
}

/// What `bohp gradcheck` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Task name.
    pub task: String,
    /// The analytic recursion checked.
    pub recursion: String,
    /// Episodes in the checked batch.
    pub episodes: usize,
    /// Steps per episode.
    pub steps: usize,
    /// Backend of the autodiff side.
    pub device: String,
    /// Precision of the autodiff side.
    pub dtype: String,
    /// Loss by the analytic forward pass (f64).
    pub loss_analytic: f64,
    /// Loss by the burn model.
    pub loss_autodiff: f64,
    /// Autodiff vs analytic, per parameter group.
    pub autodiff_vs_analytic: Vec<GroupAgreement>,
    /// Analytic vs finite differences, per parameter group (absent when skipped).
    pub analytic_vs_finite_differences: Option<Vec<GroupAgreement>>,
    /// The tolerances applied.
    pub tolerances: Tolerances,
    /// Whether every comparison is within its tolerance.
    pub passed: bool,
}

/// Options of a check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Episodes in the batch.
    pub episodes: usize,
    /// Also compare against finite differences.
    pub finite_differences: bool,
    /// Build a dump of the first episode.
    pub dump: bool,
    /// The analytic recursion to check ([`Variant::Correct`], or a known-wrong one to see the
    /// check fail).
    pub variant: Variant,
}

/// Runs the check for `config` (its task, sizes, seed, device and dtype; the parameters are
/// the config's initial ones), on episodes of the evaluation stream.
pub fn check(config: &RunConfig, options: CheckOptions) -> bohp::Result<(Report, Option<Dump>)> {
    let device = init_device(config.device, config.dtype)?.autodiff();
    let model = init_model(config, &device);
    let task = config.task();
    let params = params_of(&model);
    let batch = task.generate(config.seed, Stream::Eval, 0, options.episodes);
    let (loss_autodiff, grads_autodiff) = autodiff(&model, &task, &batch, &device);
    let analytic = evaluate(&params, &batch, options.variant, false);
    let tolerances = Tolerances::for_precision(config.dtype);
    let vs_autodiff = agreement(
        &grads_autodiff,
        &analytic.grads,
        floor(analytic.loss, tolerances.autodiff_floor),
    );
    let fd = options
        .finite_differences
        .then(|| finite_differences(&params, &batch));
    let vs_fd = fd.as_ref().map(|fd| {
        agreement(
            &analytic.grads,
            fd,
            floor(analytic.loss, tolerances.finite_difference_floor),
        )
    });
    let loss_ok = (loss_autodiff - analytic.loss).abs()
        <= tolerances.autodiff_vs_analytic * analytic.loss.abs().max(1.0);
    let passed = loss_ok
        && worst_relative(&vs_autodiff) <= tolerances.autodiff_vs_analytic
        && vs_fd
            .as_ref()
            .is_none_or(|rows| worst_relative(rows) <= tolerances.analytic_vs_finite_differences);
    let dump = options.dump.then(|| {
        let one = task.generate(config.seed, Stream::Eval, 0, 1);
        let traced = evaluate(&params, &one, options.variant, true);
        let (_, one_autodiff) = autodiff(&model, &task, &one, &device);
        let one_fd = finite_differences(&params, &one);
        dump(
            &task,
            &params,
            &one,
            &traced.traces[0],
            traced.loss,
            &[
                ("analytic", &traced.grads),
                ("autodiff", &one_autodiff),
                ("finite_differences", &one_fd),
            ],
        )
    });
    Ok((
        Report {
            task: task.kind.to_string(),
            recursion: format!("{:?}", options.variant),
            episodes: options.episodes,
            steps: task.steps,
            device: config.device.to_string(),
            dtype: config.dtype.to_string(),
            loss_analytic: analytic.loss,
            loss_autodiff,
            autodiff_vs_analytic: vs_autodiff,
            analytic_vs_finite_differences: vs_fd,
            tolerances,
            passed,
        },
        dump,
    ))
}

impl Report {
    /// The report as a text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "gradient check: {} ({} episodes x {} steps), autodiff on {} {}, {} recursion\n\
             loss: analytic {:.12e}, autodiff {:.12e}\n\n",
            self.task,
            self.episodes,
            self.steps,
            self.device,
            self.dtype,
            self.recursion,
            self.loss_analytic,
            self.loss_autodiff
        );
        let loss = self.loss_analytic;
        let mut section = |title: &str, rows: &[GroupAgreement], tol: f64, floor_fraction: f64| {
            out += &format!(
                "{title} (tolerance: max relative error <= {tol:e}; relative to max(|a|, |b|, {:.1e}))\n",
                floor(loss, floor_fraction)
            );
            out += &format!(
                "  {:<10} {:>6} {:>12} {:>12} {:>14}  {}\n",
                "group", "count", "max |diff|", "max rel", "cosine", "verdict"
            );
            for r in rows {
                out += &format!(
                    "  {:<10} {:>6} {:>12.3e} {:>12.3e} {:>14.12}  {}\n",
                    r.group,
                    r.count,
                    r.max_abs,
                    r.max_rel,
                    r.cosine,
                    if r.max_rel <= tol { "ok" } else { "MISMATCH" }
                );
            }
            out += "\n";
        };
        section(
            "autodiff vs analytic",
            &self.autodiff_vs_analytic,
            self.tolerances.autodiff_vs_analytic,
            self.tolerances.autodiff_floor,
        );
        if let Some(rows) = &self.analytic_vs_finite_differences {
            section(
                "analytic vs central finite differences",
                rows,
                self.tolerances.analytic_vs_finite_differences,
                self.tolerances.finite_difference_floor,
            );
        }
        out += if self.passed { "PASSED\n" } else { "FAILED\n" };
        out
    }
}
