//! The decaying Hebbian trace (Miconi 2016, Eq. 1; Miconi, Clune & Stanley 2018).
//!
//! ```text
//! H ← (1-η)·H + η·pre·post          (η on the new product: the 2016 γ, the 2018 η)
//! ∂/∂H = 1-η,  ∂/∂pre = η·post,  ∂/∂post = η·pre,  ∂/∂η = pre·post - H
//! ```
//!
//! The original 2016 code writes the rate on the old trace (`ALPHATRACE = 1 - γ`).

use burn::tensor::Tensor;

use super::{Local, Rate, Real, RuleKernel};

/// The decaying Hebbian trace.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hebb;

impl RuleKernel for Hebb {
    const EQUATION: &'static str = "H <- (1 - eta) * H + eta * pre * post";

    fn tensor(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>, rate: &Rate) -> Tensor<3> {
        match rate {
            // A constant rate scales the (constant) inputs, not the recorded product.
            Rate::Fixed(r) | Rate::Folded(r) => h.mul_scalar(1.0 - r) + rate.product(pre, post),
            Rate::Learned(r) | Rate::Modulated(r) => {
                h * r.clone().neg().add_scalar(1.0) + rate.product(pre, post)
            }
        }
    }

    #[inline(always)]
    fn local<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> Local<F> {
        let decay = F::one() - rate;
        Local {
            value: decay * h + (pre * rate) * post,
            d_h: decay,
            d_pre: rate * post,
            d_post: rate * pre,
            d_rate: pre * post - h,
        }
    }

    const POST_PARTIAL_FROM_NEW: bool = true;

    #[inline(always)]
    fn post_partial_after<F: Real>(&self, _h_new: F, pre: F, rate: F) -> F {
        rate * pre
    }

    const INVERTIBLE: bool = true;

    /// `H = (H' - η·pre·post) / (1 - η)`.
    #[inline(always)]
    fn inverse<F: Real>(&self, h_new: F, pre: F, post: F, rate: F) -> F {
        (h_new - (pre * rate) * post) / (F::one() - rate)
    }
}
