//! Oja's rule (used by the 2018 paper's Omniglot network).
//!
//! ```text
//! H ← H + η·post·(pre - H·post)
//! ∂/∂H = 1 - η·post²,  ∂/∂pre = η·post,  ∂/∂post = η·(pre - 2·H·post),  ∂/∂η = post·(pre - H·post)
//! ```
//!
//! The decay term `-η·H·post²` keeps the trace bounded without a clip.

use burn::tensor::Tensor;

use super::{Local, Rate, Real, RuleKernel};

/// Oja's rule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Oja;

impl RuleKernel for Oja {
    const EQUATION: &'static str = "H <- H + eta * post * (pre - H * post)";

    fn tensor(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>, rate: &Rate) -> Tensor<3> {
        match rate {
            // H + post·(η·pre) - η·H·post², with η·pre given.
            Rate::Folded(r) => h.clone() + (pre - (h * post.clone()).mul_scalar(*r)) * post,
            _ => {
                let change = (pre - h.clone() * post.clone()) * post;
                h + rate.times(change)
            }
        }
    }

    #[inline(always)]
    fn local<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> Local<F> {
        let residual = pre - h * post;
        Local {
            value: h + rate * post * residual,
            d_h: F::one() - rate * post * post,
            d_pre: rate * post,
            d_post: rate * (residual - h * post),
            d_rate: post * residual,
        }
    }

    /// `∂f/∂post` needs the old trace: the fused engine uses its two-pass backward.
    const POST_PARTIAL_FROM_NEW: bool = false;

    fn post_partial_after<F: Real>(&self, _h_new: F, _pre: F, _rate: F) -> F {
        F::nan()
    }

    const INVERTIBLE: bool = true;

    /// `H = (H' - η·post·pre) / (1 - η·post²)`.
    #[inline(always)]
    fn inverse<F: Real>(&self, h_new: F, pre: F, post: F, rate: F) -> F {
        (h_new - rate * post * pre) / (F::one() - rate * post * post)
    }
}
