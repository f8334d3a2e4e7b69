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

use super::{Local, Rate, Real, RowRate, RuleKernel, real, sum_lanes};

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

    #[inline(always)]
    fn side<F: Real>(&self, h: F, pre: F, post: F, rate: F) -> i8 {
        let (c, v): (F, F) = (real(self.bound), h + (pre * rate) * post);
        if v > c {
            1
        } else if v < -c {
            -1
        } else {
            0
        }
    }

    #[inline(always)]
    fn on_side<F: Real>(&self, h: F, pre: F, post: F, rate: F, side: i8) -> F {
        let c: F = real(self.bound);
        match side {
            0 => h + (pre * rate) * post,
            1 => c,
            _ => -c,
        }
    }

    /// [`RuleKernel::forward_row`] with `pre·rate` formed once for a uniform rate.
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
        let c: F = real(self.bound);
        let (h, post) = (&h[..n], &post[..n]);
        match rate {
            RowRate::Uniform(r) => {
                let pr = pre * r;
                for j in 0..n {
                    out[j] = (h[j] + pr * post[j]).max(-c).min(c);
                }
            }
            RowRate::PerPost(r) => {
                let r = &r[..n];
                for j in 0..n {
                    out[j] = (h[j] + r[j] * pre * post[j]).max(-c).min(c);
                }
            }
        }
    }

    /// [`RuleKernel::reverse_row`] as the fused engines vectorise it (a select instead of a
    /// branch at the clip; a uniform rate factored out of the row's sum). The gradient stops
    /// where the step's trace before clipping is not strictly inside the bound.
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
        let c: F = real(self.bound);
        let (h, post, d_post, d_rate, row) = (
            &h[..n],
            &post[..n],
            &mut d_post[..n],
            &mut d_rate[..n],
            &mut scratch[..n],
        );
        match rate {
            RowRate::Uniform(r) => {
                let pr = pre * r;
                for j in 0..n {
                    let s = h[j] + pr * post[j];
                    // The mask as a factor, stored whole: a select here compiles to AVX's
                    // masked store of the zeros, microcoded on AMD (rules::retroactive).
                    let on = if s.abs() < c { F::one() } else { F::zero() };
                    let ds = g[j] * on;
                    g[j] = ds;
                    let dsp = ds * pre;
                    d_rate[j] = d_rate[j] + dsp * post[j];
                    row[j] = ds * post[j];
                    d_post[j] = d_post[j] + r * dsp;
                }
                r * sum_lanes(row)
            }
            RowRate::PerPost(r) => {
                let r = &r[..n];
                for j in 0..n {
                    let s = h[j] + r[j] * pre * post[j];
                    let on = if s.abs() < c { F::one() } else { F::zero() };
                    let ds = g[j] * on;
                    g[j] = ds;
                    let dsp = ds * pre;
                    d_rate[j] = d_rate[j] + dsp * post[j];
                    row[j] = r[j] * ds * post[j];
                    d_post[j] = d_post[j] + r[j] * dsp;
                }
                sum_lanes(row)
            }
        }
    }
}
