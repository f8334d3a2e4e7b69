//! The gradient check behind `bohp gradcheck`, for both model families, with a pass/fail
//! verdict against stated tolerances.
//!
//! - Single layer (`configs/{completion,one-shot,reversal}.toml`): burn autodiff (the config's
//!   device and dtype) and central finite differences against the analytic forward-mode
//!   recursion (f64).
//! - Recurrent network (`configs/memorisation*.toml`, `configs/images*.toml`): burn autodiff
//!   (the config's device and dtype), the fused BPTT engine (f64) and central finite
//!   differences against RTRL (f64; for networks of at most [`RTRL_MAX_NEURONS`] neurons,
//!   else the fused engine is the reference).
//!
//! Parameter groups that are not trained (α and η with `plasticity = "none"`) are not
//! compared.

use bohp::device::{Backend, Precision, init_device};
use bohp::engines::analytic::{Variant, evaluate, evaluate_with};
use bohp::engines::fused::{EpisodeBatch as HostEpisodes, HostGrads, HostRnn};
use bohp::recurrent::config::{RecurrentConfig, RecurrentModelKind};
use bohp::rng::Stream;
use bohp::rules::faults::{Fault, Faulty, FaultyRetroactive};
use bohp::rules::{Modulation, Retroactive};
use bohp::single::config::SingleLayerConfig;
use bohp::single::train::init_model;
use serde::Serialize;

use crate::compare::{
    GroupAgreement, NONSMOOTH_FLOOR, RECURRENT_FD_STEP, agreement, agreement_at, agreement_groups,
    autodiff, evenly_spaced, fd_step, finite_differences, floor, params_of, ridders, unresolved,
    worst_relative,
};
use crate::dump::{Dump, Producer, dump_recurrent, dump_single};
use crate::rtrl::{Mistake, autodiff_grads, rtrl_grads_with};

mod recurrent;
pub use recurrent::{
    check_recurrent, recurrent_finite_differences, recurrent_groups, recurrent_loss,
};

/// The largest recurrent network checked against RTRL (its cost grows as `N⁴` per step).
pub const RTRL_MAX_NEURONS: usize = 64;

/// Entries per parameter group that the recurrent finite differences check (evenly spaced;
/// every entry when the group is smaller).
pub const RECURRENT_FD_ENTRIES: usize = 24;

/// Largest accepted relative differences, and the floors of their denominators.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    /// Autodiff (in the run's precision) vs the reference recursion (f64).
    pub autodiff_vs_reference: f64,
    /// Floor of autodiff-vs-reference relative errors, as a fraction of `max(1, |loss|)`.
    pub autodiff_floor: f64,
    /// A host engine in f64 (the fused engine) vs the reference recursion (f64).
    pub engine_vs_reference: f64,
    /// The reference vs central finite differences (both f64).
    pub reference_vs_finite_differences: f64,
    /// Floor of reference-vs-finite-difference relative errors, as a fraction of
    /// `max(1, |loss|)`.
    pub finite_difference_floor: f64,
}

impl Tolerances {
    /// The tolerances for autodiff in `precision`:
    /// - f64: relative error ≤ 1e-10 (both sides are exact up to rounding; measured 1e-13 and
    ///   below), floor 1e-8 · max(1, |L|); the same for the fused engine (always f64 here);
    /// - f32: relative error ≤ 2e-3 (f32 rounding accumulated over the unrolled episode),
    ///   floor 1e-5 · max(1, |L|);
    /// - finite differences: relative error ≤ 1e-6, floor 1e-6 · max(1, |L|) (the 5-point
    ///   stencil's cancellation error is about 1e-13 · |L|, so entries below the floor cannot be
    ///   resolved to 1e-6 by any f64 finite difference); see [`Tolerances::for_rule`] for the
    ///   clipped rule.
    pub fn for_precision(precision: Precision) -> Tolerances {
        let (autodiff_vs_reference, autodiff_floor) = match precision {
            Precision::F64 => (1e-10, 1e-8),
            Precision::F32 => (2e-3, 1e-5),
        };
        Tolerances {
            autodiff_vs_reference,
            autodiff_floor,
            engine_vs_reference: 1e-10,
            reference_vs_finite_differences: 1e-6,
            finite_difference_floor: 1e-6,
        }
    }

    /// The tolerances for autodiff in `precision` on a network with `rule`: a rule that is not
    /// smooth (the clipped rule) takes finite differences of smaller steps
    /// ([`crate::compare::FD_STEP_NONSMOOTH`]), which resolve entries down to a floor of
    /// `1e-5 · max(1, |L|)` instead of `1e-6 · max(1, |L|)`.
    pub fn for_rule(precision: Precision, rule: &bohp::rules::RuleSpec) -> Tolerances {
        let mut t = Tolerances::for_precision(precision);
        if !rule.smooth() {
            t.finite_difference_floor = 1e-5;
        }
        t
    }
}

/// Which recursion the check runs as its reference: the right one, or a known-wrong one to see
/// the check fail (`bohp gradcheck --recursion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recursion {
    /// The right derivatives.
    Correct,
    /// Single layer: the paper's Eq. 3-4 weighting `(1-γ)·γ^(tz-tu)`.
    PaperWeighting,
    /// Single layer: the original code's `1 - tanh(y)²` on an output that is already a tanh.
    DoubleTanh,
    /// `H(t)` read where `H(t-1)` is due (both families).
    NewTrace,
    /// A rule's known-wrong derivative ([`Fault`]; both families).
    Fault(Fault),
}

impl Recursion {
    /// Every recursion `--recursion` accepts.
    pub const ALL: [Recursion; 9] = [
        Recursion::Correct,
        Recursion::PaperWeighting,
        Recursion::DoubleTanh,
        Recursion::NewTrace,
        Recursion::Fault(Fault::RateOnOldTrace),
        Recursion::Fault(Fault::OjaDecayDropped),
        Recursion::Fault(Fault::GradientThroughClip),
        Recursion::Fault(Fault::EligibilityFirst),
        Recursion::Fault(Fault::PreviousModulation),
    ];

    /// The name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Recursion::Correct => "correct",
            Recursion::PaperWeighting => "paper-weighting",
            Recursion::DoubleTanh => "double-tanh",
            Recursion::NewTrace => "new-trace",
            Recursion::Fault(fault) => fault.name(),
        }
    }
}

impl std::str::FromStr for Recursion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Recursion::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Recursion::ALL.iter().map(|r| r.name()).collect();
                format!(
                    "unknown recursion `{s}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One comparison of two gradient sets, per parameter group.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `"<method> vs <reference>"`.
    pub name: String,
    /// Largest accepted relative difference.
    pub tolerance: f64,
    /// Floor of the relative differences' denominators.
    pub floor: f64,
    /// Per parameter group.
    pub rows: Vec<GroupAgreement>,
    /// What was compared, when not every entry (sampled finite differences).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Comparison {
    /// The largest relative difference over the groups.
    pub fn worst(&self) -> f64 {
        worst_relative(&self.rows)
    }

    /// Entries left out as unresolved, and entries compared in all.
    pub fn unresolved(&self) -> (usize, usize) {
        (
            self.rows.iter().map(|r| r.unresolved).sum(),
            self.rows.iter().map(|r| r.count).sum(),
        )
    }

    /// Whether every group is within the tolerance, with at most half of the entries left out
    /// as unresolved.
    pub fn passed(&self) -> bool {
        let (left_out, count) = self.unresolved();
        self.worst() <= self.tolerance && 2 * left_out <= count
    }
}

/// What a check is of (the head of a [`Report`]).
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// `single-layer`, `recurrent`, `reinforcement` or `few-shot`.
    pub family: String,
    /// Task name.
    pub task: String,
    /// The trace's rule (with its constants).
    pub rule: String,
    /// `learned`, `none` or `nonnegative` (the agents: their kind).
    pub plasticity: String,
    /// The reference method: `analytic` (single layer), `rtrl` or `fused` (recurrent), `host`,
    /// `finite differences`.
    pub reference: String,
}

impl Checked {
    /// The head of a report.
    pub(crate) fn of(
        family: impl Into<String>,
        task: impl Into<String>,
        rule: impl Into<String>,
        plasticity: impl Into<String>,
        reference: impl Into<String>,
    ) -> Checked {
        Checked {
            family: family.into(),
            task: task.into(),
            rule: rule.into(),
            plasticity: plasticity.into(),
            reference: reference.into(),
        }
    }
}

/// How a check ran.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    /// The reference's recursion ([`Recursion::name`]).
    pub recursion: String,
    /// Episodes in the checked batch.
    pub episodes: usize,
    /// Steps per episode.
    pub steps: usize,
    /// Backend of the autodiff side.
    pub device: String,
    /// Precision of the autodiff side.
    pub dtype: String,
    /// Seed of the initial parameters and the episodes.
    pub seed: u64,
}

impl CheckRun {
    /// A check under `options` of episodes of `steps` steps, on `device` in `dtype` from `seed`
    /// (each config's `device`, `dtype` and `seed`).
    pub(crate) fn of(
        options: &CheckOptions,
        steps: usize,
        (device, dtype, seed): (Backend, Precision, u64),
    ) -> CheckRun {
        CheckRun {
            recursion: options.recursion.name().into(),
            episodes: options.episodes,
            steps,
            device: device.to_string(),
            dtype: dtype.to_string(),
            seed,
        }
    }
}

/// What `bohp gradcheck` reports (its JSON: the fields of [`Checked`] and [`CheckRun`], then
/// these).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was checked.
    #[serde(flatten)]
    pub checked: Checked,
    /// How.
    #[serde(flatten)]
    pub run: CheckRun,
    /// Loss by the reference (f64).
    pub loss_reference: f64,
    /// Loss by the burn model.
    pub loss_autodiff: f64,
    /// Every comparison made.
    pub comparisons: Vec<Comparison>,
    /// The tolerances applied.
    pub tolerances: Tolerances,
    /// Whether the losses agree and every comparison is within its tolerance.
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
    /// The reference recursion (right, or known-wrong to see the check fail).
    pub recursion: Recursion,
}

/// Either family's config, as `bohp gradcheck` reads it.
#[derive(Debug, Clone)]
pub enum AnyConfig {
    /// A single-layer config.
    Single(SingleLayerConfig),
    /// A recurrent config.
    Recurrent(RecurrentConfig),
    /// A reinforcement-learning config.
    Rl(bohp::rl::config::RlConfig),
    /// A few-shot (Omniglot) config.
    FewShot(bohp::omniglot::config::OmniglotConfig),
}

/// Runs the check for `config`.
pub fn check_any(
    config: &AnyConfig,
    options: CheckOptions,
) -> bohp::Result<(Report, Option<Dump>)> {
    match config {
        AnyConfig::Single(c) => check(c, options),
        AnyConfig::Recurrent(c) => check_recurrent(c, options),
        AnyConfig::Rl(c) => crate::rl::check_rl(c, options),
        AnyConfig::FewShot(c) => crate::fewshot::check_omniglot(c, options),
    }
}

/// Refuses the faults of neuromodulated rules where a network has no modulator
/// (`modulation` is `None`), and `eligibility-first` without retroactive modulation: there they
/// would change nothing and the check would pass.
pub(crate) fn refuse_absent_modulation_faults(
    recursion: Recursion,
    modulation: Option<Modulation>,
) -> bohp::Result<()> {
    match (recursion, modulation) {
        (Recursion::Fault(Fault::PreviousModulation), Some(_))
        | (Recursion::Fault(Fault::EligibilityFirst), Some(Modulation::Retroactive)) => Ok(()),
        (Recursion::Fault(Fault::EligibilityFirst), Some(_)) => Err(bohp::Error::Unsupported(
            "--recursion eligibility-first: applies to retroactive modulation (this config has model.modulation = \"simple\")".into(),
        )),
        (Recursion::Fault(Fault::EligibilityFirst | Fault::PreviousModulation), None) => {
            Err(bohp::Error::Unsupported(format!(
                "--recursion {}: applies to neuromodulated networks (configs with a model.modulation, reinforcement-learning configs with model.kind = \"simple\" or \"retroactive\")",
                recursion.name()
            )))
        }
        _ => Ok(()),
    }
}

impl Report {
    /// The report of a check: passed when the two losses (the reference's, autodiff's) agree
    /// within `tolerances.autodiff_vs_reference` and every comparison passes.
    pub(crate) fn new(
        (checked, run): (Checked, CheckRun),
        (loss_reference, loss_autodiff): (f64, f64),
        (comparisons, tolerances): (Vec<Comparison>, Tolerances),
    ) -> Report {
        let loss_ok = (loss_autodiff - loss_reference).abs()
            <= tolerances.autodiff_vs_reference * loss_reference.abs().max(1.0);
        let passed = loss_ok && comparisons.iter().all(Comparison::passed);
        Report {
            checked,
            run,
            loss_reference,
            loss_autodiff,
            comparisons,
            tolerances,
            passed,
        }
    }
}

/// Runs the single-layer check for `config` (its task, sizes, rule, seed, device and dtype;
/// the parameters are the config's initial ones), on episodes of the evaluation stream.
pub fn check(
    config: &SingleLayerConfig,
    options: CheckOptions,
) -> bohp::Result<(Report, Option<Dump>)> {
    let device = init_device(config.device, config.dtype)?.autodiff();
    let model = init_model(config, &device);
    let task = config.task();
    let params = params_of(&model);
    let modulated = params.modulated();
    refuse_absent_modulation_faults(options.recursion, modulated.then_some(params.modulation))?;
    if modulated && options.recursion == Recursion::PaperWeighting {
        return Err(bohp::Error::Unsupported(
            "--recursion paper-weighting: is a recursion of the unmodulated decaying trace (this config has a model.modulation)".into(),
        ));
    }
    let retro = Retroactive {
        bound: params.rule.clip,
    };
    let batch = task.generate(config.seed, Stream::Eval, 0, options.episodes);
    let (loss_autodiff, grads_autodiff) = autodiff(&model, &task, &batch, &device);
    let reference =
        |batch: &bohp::single::tasks::EpisodeBatch, record: bool| match options.recursion {
            Recursion::Correct => evaluate(&params, batch, Variant::Correct, record),
            Recursion::PaperWeighting => evaluate(&params, batch, Variant::PaperWeighting, record),
            Recursion::DoubleTanh => evaluate(&params, batch, Variant::DoubleTanh, record),
            Recursion::NewTrace => evaluate(&params, batch, Variant::NewTrace, record),
            Recursion::Fault(fault) => evaluate_with(
                &Faulty {
                    spec: params.rule,
                    fault,
                },
                &FaultyRetroactive {
                    kernel: retro,
                    fault,
                },
                &params,
                batch,
                if fault == Fault::PreviousModulation {
                    Variant::PreviousModulation
                } else {
                    Variant::Correct
                },
                record,
            ),
        };
    let analytic = reference(&batch, false);
    let tolerances = Tolerances::for_rule(config.dtype, &params.rule);
    // Without plasticity α is not a parameter: it is not compared.
    let trained: Vec<&str> = params
        .groups()
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "alpha" || model.plastic.plastic)
        .collect();
    let keep = |rows: Vec<GroupAgreement>| {
        rows.into_iter()
            .filter(|r| trained.contains(&r.group.as_str()))
            .collect::<Vec<_>>()
    };
    let autodiff_floor = floor(analytic.loss, tolerances.autodiff_floor);
    let mut comparisons = vec![Comparison {
        name: "autodiff vs analytic".into(),
        tolerance: tolerances.autodiff_vs_reference,
        floor: autodiff_floor,
        rows: keep(agreement(&grads_autodiff, &analytic.grads, autodiff_floor)),
        note: None,
    }];
    // The fused reverse-mode engine, in the model's precision, against the same reference.
    let (_, fused) = match config.dtype {
        Precision::F64 => bohp::engines::layer_fused::evaluate::<f64>(&params, &batch),
        Precision::F32 => bohp::engines::layer_fused::evaluate::<f32>(&params, &batch),
    };
    comparisons.push(Comparison {
        name: "fused vs analytic".into(),
        tolerance: tolerances.autodiff_vs_reference,
        floor: autodiff_floor,
        rows: keep(agreement(&fused, &analytic.grads, autodiff_floor)),
        note: None,
    });
    if options.finite_differences {
        let fd = finite_differences(&params, &batch);
        let fd_floor = floor(analytic.loss, tolerances.finite_difference_floor);
        comparisons.push(Comparison {
            name: "analytic vs central finite differences".into(),
            tolerance: tolerances.reference_vs_finite_differences,
            floor: fd_floor,
            rows: keep(agreement(&analytic.grads, &fd, fd_floor)),
            note: None,
        });
    }
    let what = Checked::of(
        "single-layer",
        task.kind.to_string(),
        model.plastic.rule.to_string(),
        config.model.plasticity.name(),
        "analytic",
    );
    let run = CheckRun::of(
        &options,
        task.steps,
        (config.device, config.dtype, config.seed),
    );
    let report = Report::new(
        (what, run),
        (analytic.loss, loss_autodiff),
        (comparisons, tolerances),
    );
    let dump = options.dump.then(|| {
        let one = task.generate(config.seed, Stream::Eval, 0, 1);
        let traced = reference(&one, true);
        let (_, one_autodiff) = autodiff(&model, &task, &one, &device);
        let one_fd = finite_differences(&params, &one);
        dump_single(
            producer(&report),
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
    Ok((report, dump))
}

pub(crate) fn producer(report: &Report) -> Producer {
    Producer {
        family: report.checked.family.clone(),
        task: report.checked.task.clone(),
        rule: report.checked.rule.clone(),
        plasticity: report.checked.plasticity.clone(),
        seed: report.run.seed,
        device: report.run.device.clone(),
        dtype: report.run.dtype.clone(),
        reference: report.checked.reference.clone(),
        recursion: report.run.recursion.clone(),
        engines: report.comparisons.iter().map(|c| c.name.clone()).collect(),
        tolerances: report.tolerances,
    }
}

impl Report {
    /// The report as a text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "gradient check: {} {} ({} episodes x {} steps), rule {}, plasticity {}\n\
             reference: {} ({} recursion, f64); autodiff on {} {}\n\
             loss: {} {:.12e}, autodiff {:.12e}\n\n",
            self.checked.family,
            self.checked.task,
            self.run.episodes,
            self.run.steps,
            self.checked.rule,
            self.checked.plasticity,
            self.checked.reference,
            self.run.recursion,
            self.run.device,
            self.run.dtype,
            self.checked.reference,
            self.loss_reference,
            self.loss_autodiff
        );
        for c in &self.comparisons {
            out += &format!(
                "{} (tolerance: max relative error <= {:e}; relative to max(|a|, |b|, {:.1e}, 1e-4 x the group's largest))\n",
                c.name, c.tolerance, c.floor
            );
            if let Some(note) = &c.note {
                out += &format!("  {note}\n");
            }
            let (left_out, count) = c.unresolved();
            if left_out > 0 {
                out += &format!(
                    "  {left_out} of {count} entries left out: their finite difference does not converge (the clip's kink within the step, or cancellation at its small steps); at most half may be\n"
                );
            }
            // The group column fits the longest name (the LSTM's module paths).
            let width = c
                .rows
                .iter()
                .map(|r| r.group.len())
                .max()
                .unwrap_or(0)
                .max(10);
            out += &format!(
                "  {:<width$} {:>6} {:>12} {:>12} {:>14}  {}\n",
                "group", "count", "max |diff|", "max rel", "cosine", "verdict"
            );
            for r in &c.rows {
                let verdict = match (r.max_rel <= c.tolerance, r.unresolved) {
                    (false, _) => "MISMATCH".to_string(),
                    (true, 0) => "ok".to_string(),
                    (true, n) if n == r.count => "unresolved".to_string(),
                    (true, n) => format!("ok ({n} left out)"),
                };
                out += &format!(
                    "  {:<width$} {:>6} {:>12.3e} {:>12.3e} {:>14.12}  {}\n",
                    r.group, r.count, r.max_abs, r.max_rel, r.cosine, verdict
                );
            }
            out += "\n";
        }
        out += if self.passed { "PASSED\n" } else { "FAILED\n" };
        out
    }

    /// The comparison named `name`, if it was made.
    pub fn comparison(&self, name: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.name == name)
    }
}
