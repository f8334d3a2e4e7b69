//! Known-wrong derivatives of the rules, for the checks: a gradient engine run with one of
//! these must disagree with autodiff and with finite differences, far above tolerance. The
//! forward value stays right (so losses agree and only the gradients betray the fault).
//!
//! - [`Fault::RateOnOldTrace`]: the decaying trace differentiated as if the rate multiplied
//!   the old trace, `H ← η·H + (1-η)·pre·post` (the 2016 paper's Eq. 3-4 and the original
//!   code's convention, against Eq. 1).
//! - [`Fault::OjaDecayDropped`]: Oja's rule differentiated without its decay term
//!   `-η·H·post²`.
//! - [`Fault::GradientThroughClip`]: the clipped rule's gradient passed through the clip where
//!   an entry is saturated (the clipped rule with a learned or modulated rate, and `H` of the
//!   retroactive rule).
//! - [`Fault::EligibilityFirst`]: the retroactive rule differentiated as if `E` were updated
//!   before it moves `H` (`H ← clip(H + M·E_new)`).
//! - [`Fault::PreviousModulation`]: a modulated update's rate gradient sent to `M(t-1)`
//!   instead of `M(t)`, as if the previous step's modulation gated this step's update. Like
//!   `new-trace`, it is in how an engine uses the rule (which `M` it differentiates), so the
//!   rule's own partials stay right; the actor-critic's host engine applies it.
//!
//! The fourth injected mistake, `H(t)` read where `H(t-1)` is due, is in an engine's use of the
//! trace, not in a rule: [`crate::engines::analytic::Variant::NewTrace`] and RTRL's option in
//! `bohp-gradcheck`.

use burn::tensor::Tensor;

use super::retroactive::{Local2, Retroactive, TwoTraceKernel};
use super::{Local, Rate, Real, RuleKernel, RuleSpec, real};

/// A known-wrong derivative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Differentiates `H ← η·H + (1-η)·pre·post`: the rate on the old trace.
    RateOnOldTrace,
    /// Differentiates `H ← H + η·post·pre`: Oja's decay term dropped.
    OjaDecayDropped,
    /// Differentiates `H ← H + η·pre·post` everywhere: the clip's zero gradient ignored.
    GradientThroughClip,
    /// Retroactive: differentiates `H ← clip(H + M·E_new)`, `E` updated first.
    EligibilityFirst,
    /// Modulated: the rate's gradient sent to `M(t-1)` (applied by the engine).
    PreviousModulation,
}

impl Fault {
    /// The name as written on the command line (`bohp gradcheck --recursion`).
    pub fn name(self) -> &'static str {
        match self {
            Fault::RateOnOldTrace => "rate-on-old-trace",
            Fault::OjaDecayDropped => "oja-decay-dropped",
            Fault::GradientThroughClip => "gradient-through-clip",
            Fault::EligibilityFirst => "eligibility-first",
            Fault::PreviousModulation => "previous-modulation",
        }
    }
}

/// A rule whose value is `spec`'s and whose derivatives carry `fault`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faulty {
    /// The rule (its value is right).
    pub spec: RuleSpec,
    /// The mistake in its derivatives.
    pub fault: Fault,
}

impl RuleKernel for Faulty {
    const EQUATION: &'static str = "a known-wrong derivative of the rule (see bohp::rules::faults)";

    fn tensor(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>, rate: &Rate) -> Tensor<3> {
        self.spec.tensor(h, pre, post, rate)
    }

    fn local<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> Local<F> {
        let right = self.spec.local(h, pre, post, rate);
        let additive = Local {
            value: right.value,
            d_h: F::one(),
            d_pre: rate * post,
            d_post: rate * pre,
            d_rate: pre * post,
        };
        match self.fault {
            Fault::RateOnOldTrace => {
                let keep = F::one() - rate;
                Local {
                    value: right.value,
                    d_h: rate,
                    d_pre: keep * post,
                    d_post: keep * pre,
                    d_rate: h - pre * post,
                }
            }
            Fault::OjaDecayDropped | Fault::GradientThroughClip => additive,
            // Not faults of a single-trace rule's partials.
            Fault::EligibilityFirst | Fault::PreviousModulation => right,
        }
    }

    const POST_PARTIAL_FROM_NEW: bool = false;

    fn post_partial_after<F: Real>(&self, _h_new: F, _pre: F, _rate: F) -> F {
        real(f64::NAN)
    }
}

/// The retroactive rule with its right values and `fault` in its derivatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultyRetroactive {
    /// The rule (its values are right).
    pub kernel: Retroactive,
    /// The mistake in its derivatives.
    pub fault: Fault,
}

impl TwoTraceKernel for FaultyRetroactive {
    fn local2<F: Real>(&self, h: F, e: F, pre: F, post: F, m: F, eta: F) -> Local2<F> {
        let right = self.kernel.local2(h, e, pre, post, m, eta);
        let c: F = real(self.kernel.bound);
        match self.fault {
            Fault::GradientThroughClip => Local2 {
                dh_h: F::one(),
                dh_e: m,
                dh_m: e,
                ..right
            },
            Fault::EligibilityFirst => {
                // H' = clip(H + M·E'), E' = (1-η)E + η·pre·post, differentiated at the right S.
                let on = if (h + m * e).abs() < c {
                    F::one()
                } else {
                    F::zero()
                };
                let el = right.e;
                Local2 {
                    dh_h: on,
                    dh_e: on * m * el.d_h,
                    dh_m: on * el.value,
                    dh_pre: on * m * el.d_pre,
                    dh_post: on * m * el.d_post,
                    dh_eta: on * m * el.d_rate,
                    ..right
                }
            }
            Fault::RateOnOldTrace | Fault::OjaDecayDropped | Fault::PreviousModulation => right,
        }
    }
}
