//! The plasticity rules: how a connection's Hebbian trace `H` changes within an episode.
//!
//! Every rule is an element-wise update of one connection's trace from its presynaptic
//! activity `pre`, its postsynaptic activity `post` and a rate `η`:
//!
//! ```text
//! H_ij(t) = f(H_ij(t-1), pre_i, post_j, η)
//! ```
//!
//! (single layer: `pre = x(t)`, `post = y(t)`, `η = γ`; recurrent network: `pre = y(t-1)`,
//! `post = y(t)`). One file per rule defines `f` once for each kind of number it runs on:
//!
//! - [`RuleKernel::tensor`]: the update on burn tensors, for autodiff on any backend;
//! - [`RuleKernel::local`]: on the host, the new value and its four partial derivatives
//!   `∂f/∂H`, `∂f/∂pre`, `∂f/∂post`, `∂f/∂η` at one connection ([`Local`]).
//!
//! The host steps every engine uses are written once, here, from [`RuleKernel::local`]:
//! [`forward`] (the new trace), [`vjp`] (reverse mode: a trace gradient pulled back through
//! the update, for BPTT engines) and [`jvp`] (forward mode: a tangent pushed through the update,
//! for the analytic recursion and RTRL). A new rule is one new file implementing
//! [`RuleKernel`] and one variant of [`Rule`] (plus its arm in [`with_rule!`](crate::with_rule)
//! and [`RuleSpec::tensor`]); nothing else writes a trace update.
//!
//! The rules:
//! - [`hebb::Hebb`]: the decaying Hebbian trace, `H ← (1-η)·H + η·pre·post` (2016 Eq. 1 with
//!   `η = γ`; 2018 with a learned `η`).
//! - [`oja::Oja`]: Oja's rule, `H ← H + η·post·(pre - H·post)`.
//! - [`clipped::Clipped`]: the additive Hebbian rule of the neuromodulation paper,
//!   `H ← clip(H + η·pre·post, -c, c)` (its gradient is 0 where an entry is saturated).
//!
//! Neuromodulation (Miconi et al. 2019) enters in two ways:
//! - a *modulated rate*: any rule above with its rate `η` replaced by a signal `M(t)` that the
//!   network computes each step, one per episode or fanned out to one per postsynaptic neuron
//!   ([`Rate::Modulated`] on tensors, [`RowRate::PerPost`] on the host). Simple
//!   neuromodulation is the clipped rule with this rate.
//! - [`retroactive::Retroactive`]: two traces per connection, an eligibility trace `E` that
//!   follows the decaying Hebbian rule with a learned rate, and `H` moved by `M(t)·E`:
//!   `H ← clip(H + M(t)·E, ±c)` with the old `E`, then `E ← (1-η)·E + η·pre·post`.
//!
//! Besides the per-connection [`RuleKernel::local`], a rule has host kernels over one row of
//! the trace (one presynaptic neuron, every postsynaptic one): [`RuleKernel::forward_row`] and
//! [`RuleKernel::reverse_row`], derived from `local` by default, which a rule may override with
//! the same values computed in an order the compiler vectorises (the fused engines call them).
//! No file outside this folder writes a trace update: the test
//! `no_trace_update_outside_the_rule_library` (tests/rules/mod.rs) keeps it so.

pub mod clipped;
pub mod faults;
pub mod hebb;
pub mod oja;
mod real;
pub mod retroactive;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

pub use clipped::Clipped;
pub use hebb::Hebb;
pub use oja::Oja;
pub use real::{Real, real, tanh_f32};
pub use retroactive::Retroactive;

/// The trace's new value at one connection and the partial derivatives of the update
/// `f(H, pre, post, η)` at the old values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Local<F> {
    /// `f(H, pre, post, η)`: the new trace.
    pub value: F,
    /// `∂f/∂H`.
    pub d_h: F,
    /// `∂f/∂pre`.
    pub d_pre: F,
    /// `∂f/∂post`.
    pub d_post: F,
    /// `∂f/∂η`.
    pub d_rate: F,
}

/// The rate of a trace update on tensors.
#[derive(Debug, Clone)]
pub enum Rate {
    /// A constant (the single layer's γ).
    Fixed(f64),
    /// A constant that the caller has already multiplied into `pre` (the single layer folds γ
    /// into its constant inputs once per episode, which records fewer operations per step):
    /// the rule must not multiply `pre` by it again.
    Folded(f64),
    /// A trained scalar, `[1, 1, 1]` (the recurrent network's η).
    Learned(Tensor<3>),
    /// A signal the network computes at this step (neuromodulation's `M(t)`): one per episode,
    /// `[batch, 1, 1]`, or one per episode and postsynaptic neuron, `[batch, 1, n_post]`.
    Modulated(Tensor<3>),
}

impl Rate {
    /// `rate · t`.
    pub fn times(&self, t: Tensor<3>) -> Tensor<3> {
        match self {
            Rate::Fixed(r) | Rate::Folded(r) => t.mul_scalar(*r),
            Rate::Learned(r) | Rate::Modulated(r) => t * r.clone(),
        }
    }

    /// `rate · pre · post`, where `pre` already carries a folded rate.
    pub fn product(&self, pre: Tensor<3>, post: Tensor<3>) -> Tensor<3> {
        match self {
            Rate::Fixed(r) => pre.mul_scalar(*r) * post,
            Rate::Folded(_) => pre * post,
            Rate::Learned(r) | Rate::Modulated(r) => pre * post * r.clone(),
        }
    }

    /// `1 - rate`, as a tensor for a trained or modulated rate (`None` for a constant).
    pub fn complement(&self) -> Option<Tensor<3>> {
        match self {
            Rate::Fixed(_) | Rate::Folded(_) => None,
            Rate::Learned(r) | Rate::Modulated(r) => Some(r.clone().neg().add_scalar(1.0)),
        }
    }
}

/// The rate of one row of a trace update on the host (one presynaptic neuron, every
/// postsynaptic one).
#[derive(Debug, Clone, Copy)]
pub enum RowRate<'a, F> {
    /// One rate for the whole row: a learned `η`, or an unfanned `M(t)`.
    Uniform(F),
    /// One rate per postsynaptic neuron: `M(t)` fanned out, `r_j = f_j·M(t) + g_j`.
    PerPost(&'a [F]),
}

impl<F: Real> RowRate<'_, F> {
    /// The rate at postsynaptic neuron `j`.
    #[inline(always)]
    pub fn at(&self, j: usize) -> F {
        match self {
            RowRate::Uniform(r) => *r,
            RowRate::PerPost(r) => r[j],
        }
    }
}

/// One plasticity rule: its update on tensors and its local derivatives on the host.
pub trait RuleKernel: Copy + Send + Sync + std::fmt::Debug {
    /// The update in plain text (`H`, `pre`, `post`, `eta`, and `c` for a bound), as dumps
    /// record it.
    const EQUATION: &'static str;

    /// The update on tensors: `f(H, pre, post, η)` broadcast over a batch of episodes.
    ///
    /// # Shapes
    /// - `h`: `[batch, n_pre, n_post]`
    /// - `pre`: `[batch, n_pre, 1]`
    /// - `post`: `[batch, 1, n_post]`
    /// - returned: `[batch, n_pre, n_post]`
    fn tensor(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>, rate: &Rate) -> Tensor<3>;

    /// The new trace and the update's partial derivatives at one connection.
    fn local<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> Local<F>;

    /// Whether [`RuleKernel::post_partial_after`] is exact for this rule: then the fused
    /// engine's single-pass backward applies (it sees only the new trace of a step when it
    /// needs that step's `∂f/∂post`).
    const POST_PARTIAL_FROM_NEW: bool;

    /// `∂f/∂post` of the step that produced `h_new` from presynaptic `pre`, computed from the
    /// new trace alone (only meaningful when [`RuleKernel::POST_PARTIAL_FROM_NEW`]).
    fn post_partial_after<F: Real>(&self, h_new: F, pre: F, rate: F) -> F;

    /// Whether [`RuleKernel::inverse`] recovers the old trace: then the fused engine can walk
    /// the traces backwards from the last one instead of keeping them.
    const INVERTIBLE: bool = false;

    /// The old trace `H` from the new one `f(H, pre, post, η)`, where the rule is invertible
    /// (its rounding grows by `1/|∂f/∂H|` per step).
    fn inverse<F: Real>(&self, _h_new: F, _pre: F, _post: F, _rate: F) -> F {
        F::nan()
    }

    /// Which branch of a bounded rule the update takes at these values: 0 inside the bound (and
    /// always, for a rule without one), 1 clipped at the upper bound, -1 at the lower.
    #[inline(always)]
    fn side<F: Real>(&self, _h: F, _pre: F, _post: F, _rate: F) -> i8 {
        0
    }

    /// The update with its branch held at `side` (a value [`RuleKernel::side`] returned, perhaps
    /// at other values): the smooth piece of a bounded rule that holds at a point, which finite
    /// differences evaluate so that their steps do not cross a kink. A rule without a bound
    /// returns its value.
    #[inline(always)]
    fn on_side<F: Real>(&self, h: F, pre: F, post: F, rate: F, _side: i8) -> F {
        self.local(h, pre, post, rate).value
    }

    /// Forward step of one row: `out_j = f(h_j, pre, post_j, rate_j)` for every `j`.
    #[inline(always)]
    fn forward_row<F: Real>(
        &self,
        h: &[F],
        pre: F,
        post: &[F],
        rate: RowRate<'_, F>,
        out: &mut [F],
    ) {
        let n = out.len();
        let (h, post) = (&h[..n], &post[..n]);
        for j in 0..n {
            out[j] = self.local(h[j], pre, post[j], rate.at(j)).value;
        }
    }

    /// Reverse step of one row. On entry `g_j = ∂L/∂H_j(t)`; on exit `g_j = ∂L/∂H_j(t-1)`
    /// through this update (`g_j·∂f/∂H`). Adds `g_j·∂f/∂post` to `d_post[j]` and
    /// `g_j·∂f/∂rate` to `d_rate[j]` (summed over `j` by the caller for a uniform rate), and
    /// returns `Σ_j g_j·∂f/∂pre`. `h` is the old trace `H(t-1)`; `scratch` is room for `n`
    /// values.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn reverse_row<F: Real>(
        &self,
        g: &mut [F],
        h: &[F],
        pre: F,
        post: &[F],
        rate: RowRate<'_, F>,
        d_post: &mut [F],
        d_rate: &mut [F],
        scratch: &mut [F],
    ) -> F {
        let n = g.len();
        let (h, post, d_post, d_rate, scratch) = (
            &h[..n],
            &post[..n],
            &mut d_post[..n],
            &mut d_rate[..n],
            &mut scratch[..n],
        );
        for j in 0..n {
            let p = vjp(self, g[j], h[j], pre, post[j], rate.at(j));
            g[j] = p.h;
            d_post[j] = d_post[j] + p.post;
            d_rate[j] = d_rate[j] + p.rate;
            scratch[j] = p.pre;
        }
        sum_lanes(scratch)
    }
}

/// The sum of `v`, in eight independent lanes (which the compiler vectorises; a plain running
/// sum must keep its order and is not).
#[inline(always)]
pub fn sum_lanes<F: Real>(v: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            lanes[k] = lanes[k] + c[k];
        }
    }
    let mut total = F::zero();
    for l in lanes {
        total = total + l;
    }
    for &x in rest {
        total = total + x;
    }
    total
}

/// Which plasticity rule, as written in configs (`model.rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// [`Hebb`]: `H ← (1-η)·H + η·pre·post`.
    #[default]
    Hebb,
    /// [`Oja`]: `H ← H + η·post·(pre - H·post)`.
    Oja,
    /// [`Clipped`]: `H ← clip(H + η·pre·post, ±c)` with `c = model.clip`.
    Clipped,
}

impl Rule {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Hebb => "hebb",
            Rule::Oja => "oja",
            Rule::Clipped => "clipped",
        }
    }

    /// Every rule.
    pub const ALL: [Rule; 3] = [Rule::Hebb, Rule::Oja, Rule::Clipped];
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether and how a network's own signal `M(t)` gates its plastic update (the families that
/// build a modulator from their state: Omniglot's `model.modulation`; the actor-critic spells
/// it with `model.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Modulation {
    /// No modulator: the rule's rate is the learned η.
    #[default]
    None,
    /// Simple neuromodulation: `M(t)` is the rule's rate ([`Rate::Modulated`]).
    Simple,
    /// Retroactive neuromodulation ([`Retroactive`]): `M(t)` moves an eligibility trace into
    /// `H`.
    Retroactive,
}

impl Modulation {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            Modulation::None => "none",
            Modulation::Simple => "simple",
            Modulation::Retroactive => "retroactive",
        }
    }
}

impl std::fmt::Display for Modulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The default bound `c` of the clipped rule (the neuromodulation paper's ±1).
pub(crate) const DEFAULT_CLIP: f64 = 1.0;

/// A rule with its constants: what a plastic connection applies to its trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// The rule.
    pub rule: Rule,
    /// The bound `c` of [`Rule::Clipped`] (unused by the other rules).
    pub clip: f64,
}

impl Default for RuleSpec {
    fn default() -> Self {
        RuleSpec {
            rule: Rule::Hebb,
            clip: DEFAULT_CLIP,
        }
    }
}

impl RuleSpec {
    /// `rule` with the default constants.
    pub fn new(rule: Rule) -> Self {
        RuleSpec {
            rule,
            clip: DEFAULT_CLIP,
        }
    }

    /// The update on tensors (see [`RuleKernel::tensor`]).
    pub fn tensor(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>, rate: &Rate) -> Tensor<3> {
        crate::with_rule!(*self, |k| k.tensor(h, pre, post, rate))
    }

    /// Whether the update is smooth in all its arguments (the clipped rule is not: its
    /// derivative jumps where an entry reaches the clip, so finite differences of it take small
    /// steps).
    pub fn smooth(&self) -> bool {
        self.rule != Rule::Clipped
    }

    /// The update in plain text ([`RuleKernel::EQUATION`]).
    pub fn equation(&self) -> &'static str {
        crate::with_rule!(*self, |k| equation_of(&k))
    }

    /// [`RuleKernel::side`] of the rule.
    pub fn side<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> i8 {
        crate::with_rule!(*self, |k| k.side(h, pre, post, rate))
    }

    /// [`RuleKernel::on_side`] of the rule.
    pub fn on_side<F: Real>(&self, h: F, pre: F, post: F, rate: F, side: i8) -> F {
        crate::with_rule!(*self, |k| k.on_side(h, pre, post, rate, side))
    }

    /// The new trace and the local derivatives at one connection (see [`RuleKernel::local`]);
    /// dispatches on the rule at every call: engines monomorphize with
    /// [`with_rule!`](crate::with_rule) instead.
    pub fn local<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> Local<F> {
        crate::with_rule!(*self, |k| k.local(h, pre, post, rate))
    }
}

impl std::fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Rule::Clipped => write!(f, "clipped(±{})", self.clip),
            rule => f.write_str(rule.name()),
        }
    }
}

// A plain constant inside burn modules (no parameters, not saved in records).
use burn::empty;
empty!(RuleSpec);
empty!(Modulation);

fn equation_of<R: RuleKernel>(_: &R) -> &'static str {
    R::EQUATION
}

/// Runs `$body` with `$k` bound to the [`RuleKernel`] of a [`RuleSpec`], so that generic host
/// engines are compiled once per rule (no dispatch in their inner loops).
#[macro_export]
macro_rules! with_rule {
    ($spec:expr, |$k:ident| $body:expr) => {{
        let spec: $crate::rules::RuleSpec = $spec;
        match spec.rule {
            $crate::rules::Rule::Hebb => {
                let $k = $crate::rules::Hebb;
                $body
            }
            $crate::rules::Rule::Oja => {
                let $k = $crate::rules::Oja;
                $body
            }
            $crate::rules::Rule::Clipped => {
                let $k = $crate::rules::Clipped { bound: spec.clip };
                $body
            }
        }
    }};
}

/// Forward step on the host: `out_j = f(H_j, pre, post_j, η)` for one row `i` of the trace
/// (one presynaptic neuron, every postsynaptic one).
#[inline(always)]
pub fn forward<F: Real, R: RuleKernel>(
    rule: &R,
    h: &[F],
    pre: F,
    post: &[F],
    rate: F,
    out: &mut [F],
) {
    for ((o, &hv), &yj) in out.iter_mut().zip(h).zip(post) {
        *o = rule.local(hv, pre, yj, rate).value;
    }
}

/// The cotangents a trace gradient `g = ∂L/∂H(t)` sends back through one connection's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pullback<F> {
    /// `∂L/∂H(t-1) = g · ∂f/∂H`.
    pub h: F,
    /// Contribution to `∂L/∂pre`: `g · ∂f/∂pre`.
    pub pre: F,
    /// Contribution to `∂L/∂post`: `g · ∂f/∂post`.
    pub post: F,
    /// Contribution to `∂L/∂η`: `g · ∂f/∂η`.
    pub rate: F,
}

/// Reverse-mode step on the host (vector-Jacobian product) at one connection: where the
/// gradient `g` of the new trace goes.
#[inline(always)]
pub fn vjp<F: Real, R: RuleKernel>(rule: &R, g: F, h: F, pre: F, post: F, rate: F) -> Pullback<F> {
    let l = rule.local(h, pre, post, rate);
    Pullback {
        h: g * l.d_h,
        pre: g * l.d_pre,
        post: g * l.d_post,
        rate: g * l.d_rate,
    }
}

/// Forward-mode step on the host (Jacobian-vector product) at one connection: the tangent of
/// the new trace from the tangents of `H`, `pre`, `post` and `η`.
#[inline(always)]
pub fn jvp<F: Real>(local: &Local<F>, dh: F, dpre: F, dpost: F, drate: F) -> F {
    local.d_h * dh + local.d_pre * dpre + local.d_post * dpost + local.d_rate * drate
}

#[cfg(test)]
mod tests {
    use num_traits::Float;

    use super::*;

    /// The vectorised f32 tanh of the host engines is as accurate as the C library's.
    #[test]
    fn fast_f32_tanh_is_within_an_ulp() {
        // Every 97th f32 from 0 up to 12 (about 11 million values), both signs, against the
        // exact value (f64's tanh, 2⁻²⁹ relative error at worst below f32's precision).
        let (mut worst, mut checked) = (0.0f64, 0usize);
        let mut bits = 0u32;
        while f32::from_bits(bits) <= 12.0 {
            let x = f32::from_bits(bits);
            for x in [x, -x] {
                let exact = f64::from(x).tanh();
                let got = f64::from(tanh_f32(x));
                let ulp = f64::from(f32::EPSILON) * exact.abs().max(f64::from(f32::MIN_POSITIVE));
                worst = worst.max((got - exact).abs() / ulp);
                checked += 1;
            }
            bits += 97;
        }
        // Measured exhaustively over [0, 10.5] when written: 0.4999 (that is, the rounding).
        assert!(worst <= 0.5 + 1.0 / 1024.0, "worst error {worst} ulp");
        assert!(checked > 10_000_000, "{checked}");
        for (x, t) in [
            (0.0f32, 0.0f32),
            (20.0, 1.0),
            (-20.0, -1.0),
            (f32::MAX, 1.0),
        ] {
            assert_eq!(tanh_f32(x), t, "{x}");
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        // Chunks of 4, then of 2, then one: every value gets the same result.
        let mut v = [0.5f32, -3.0, 1e-6, 2.0, 0.01, -0.7, 9.5];
        let each = v.map(tanh_f32);
        f32::tanh_in_place(&mut v);
        assert_eq!(v, each);
    }

    /// Every rule's partials equal central differences of its value, away from the clip.
    #[test]
    fn local_partials_are_the_derivatives_of_the_value() {
        let points = [
            (0.3, -0.7, 0.4, 0.2),
            (-0.5, 0.9, -0.8, 0.05),
            (0.1, 0.2, 0.95, 0.6),
        ];
        for rule in Rule::ALL {
            let spec = RuleSpec { rule, clip: 2.0 };
            for &(h, pre, post, rate) in &points {
                let l = spec.local(h, pre, post, rate);
                let eps = 1e-6;
                let num = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
                let d_h = num(&|e| spec.local(h + e, pre, post, rate).value);
                let d_pre = num(&|e| spec.local(h, pre + e, post, rate).value);
                let d_post = num(&|e| spec.local(h, pre, post + e, rate).value);
                let d_rate = num(&|e| spec.local(h, pre, post, rate + e).value);
                for (what, a, b) in [
                    ("h", l.d_h, d_h),
                    ("pre", l.d_pre, d_pre),
                    ("post", l.d_post, d_post),
                    ("rate", l.d_rate, d_rate),
                ] {
                    assert!((a - b).abs() < 1e-8, "{rule} d_{what}: {a} vs {b}");
                }
            }
        }
    }

    /// Where a rule is invertible, its inverse recovers the old trace.
    #[test]
    fn inverses_recover_the_old_trace() {
        fn check<R: RuleKernel>(rule: R) {
            assert!(R::INVERTIBLE);
            for &(h, pre, post, rate) in &[(0.3, -0.7, 0.4, 0.2), (-0.9, 0.9, -0.8, 0.05)] {
                let new = rule.local(h, pre, post, rate).value;
                let back = rule.inverse(new, pre, post, rate);
                assert!((back - h).abs() < 1e-15, "{rule:?}: {back} vs {h}");
            }
        }
        check(Hebb);
        check(Oja);
        const { assert!(!Clipped::INVERTIBLE, "a clip loses the old value") };
    }

    /// Where the merged fused backward applies, the post partial computed from the new trace
    /// equals the one computed from the old trace.
    #[test]
    fn post_partial_after_the_step_equals_the_local_one() {
        fn check<R: RuleKernel>(rule: R) {
            for &(h, pre, post, rate) in &[
                (0.3, -0.7, 0.4, 0.2),
                (0.95, 0.9, 0.8, 0.5),
                (-0.99, 0.9, -0.8, 0.5),
            ] {
                let l = rule.local(h, pre, post, rate);
                let after = rule.post_partial_after(l.value, pre, rate);
                assert!(
                    (after - l.d_post).abs() < 1e-15,
                    "{rule:?} at {h}: {after} vs {}",
                    l.d_post
                );
            }
        }
        check(Hebb);
        check(Clipped { bound: 1.0 });
        const {
            assert!(
                Hebb::POST_PARTIAL_FROM_NEW
                    && Clipped::POST_PARTIAL_FROM_NEW
                    && !Oja::POST_PARTIAL_FROM_NEW
            )
        };
    }
}
