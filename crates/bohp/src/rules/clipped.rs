//! The clipped additive Hebbian rule: the non-modulated baseline of the neuromodulation paper
//! (Miconi, Rawal, Clune & Stanley 2019), with a learned rate.
//!
//! ```text
//! v = H + η·pre·post
//! H ← clip(v, -c, c)
//! inside (|v| ≤ c): ∂/∂H = 1,  ∂/∂pre = η·post,  ∂/∂post = η·pre,  ∂/∂η = pre·post
//! saturated (|v| > c): every partial is 0
//! ```
//!
//! burn's `clamp` passes the gradient at `|v| = c` exactly and blocks it beyond; so does
//! [`Clipped::local`].

use burn::tensor::Tensor;

use super::{Local, Rate, Real, RuleKernel, real};

/// The clipped additive Hebbian rule, `|H| ≤ bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clipped {
    /// The clip `c` (> 0).
    pub bound: f64,
}

impl RuleKernel for Clipped {
    const EQUATION: &'static str = "H <- clip(H + eta * pre * post, -c, c)";

    fn tensor(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>, rate: &Rate) -> Tensor<3> {
        (h + rate.product(pre, post)).clamp(-self.bound, self.bound)
    }

    #[inline(always)]
    fn local<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> Local<F> {
        let c: F = real(self.bound);
        let v = h + (pre * rate) * post;
        let inside = v <= c && v >= -c;
        let on = if inside { F::one() } else { F::zero() };
        Local {
            value: v.min(c).max(-c),
            d_h: on,
            d_pre: on * rate * post,
            d_post: on * rate * pre,
            d_rate: on * pre * post,
        }
    }

    /// A new trace strictly inside the clip came from an unsaturated step; one on the clip
    /// from a saturated step (or, with probability 0, from landing on it exactly).
    const POST_PARTIAL_FROM_NEW: bool = true;

    #[inline(always)]
    fn post_partial_after<F: Real>(&self, h_new: F, pre: F, rate: F) -> F {
        if h_new.abs() < real(self.bound) {
            rate * pre
        } else {
            F::zero()
        }
    }
}
