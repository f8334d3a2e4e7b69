//! Retroactive neuromodulation (Miconi, Rawal, Clune & Stanley 2019): two traces per
//! connection. An eligibility trace `E` follows the decaying Hebbian rule ([`Hebb`]) with a
//! learned rate `η`; the plastic trace `H` is moved by the network's modulation `M(t)` times
//! the *old* `E`, and clipped:
//!
//! ```text
//! S  = H + M·E                       H' = clip(S, -c, c)        (first, with the old E)
//! E' = (1-η)·E + η·pre·post                                     (then)
//! κ  = 1 where |S| < c, else 0
//! ∂H'/∂H = κ,  ∂H'/∂E = κ·M,  ∂H'/∂M = κ·E   (H' depends on pre, post, η only through E)
//! ∂E'/∂E = 1-η,  ∂E'/∂pre = η·post,  ∂E'/∂post = η·pre,  ∂E'/∂η = pre·post - E
//! ```
//!
//! `M` is one value per episode, or one per postsynaptic neuron when fanned out
//! ([`Rate::Modulated`], [`RowRate::PerPost`]). The new `H` serves the next step
//! (`../shared/reference/plasticity.md` §4).

use burn::tensor::Tensor;

use super::{Clipped, Hebb, Local, Rate, Real, RowRate, RuleKernel, real, sum_lanes};

/// The retroactive rule, `|H| ≤ bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retroactive {
    /// The clip `c` of `H` (> 0).
    pub bound: f64,
}

/// The new traces at one connection and the update's partial derivatives at the old values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Local2<F> {
    /// `H'`.
    pub h: F,
    /// `∂H'/∂H`.
    pub dh_h: F,
    /// `∂H'/∂E`.
    pub dh_e: F,
    /// `∂H'/∂M`.
    pub dh_m: F,
    /// `∂H'/∂pre` (0 for the right rule: `H'` reads the old `E`).
    pub dh_pre: F,
    /// `∂H'/∂post` (0 for the right rule).
    pub dh_post: F,
    /// `∂H'/∂η` (0 for the right rule).
    pub dh_eta: F,
    /// `E'` and its partials (`d_h` is `∂E'/∂E`, `d_rate` is `∂E'/∂η`).
    pub e: Local<F>,
}

/// A two-trace rule's value and local derivatives on the host: the right one
/// ([`Retroactive`]) or a known-wrong one ([`super::faults::FaultyRetroactive`]).
pub trait TwoTraceKernel: Copy + Send + Sync + std::fmt::Debug {
    /// The new traces and the partials at one connection, modulation `m`, eligibility rate
    /// `eta`.
    fn local2<F: Real>(&self, h: F, e: F, pre: F, post: F, m: F, eta: F) -> Local2<F>;
}

impl Retroactive {
    /// The update in plain text, as dumps record it.
    pub const EQUATION: &'static str =
        "H <- clip(H + M * E, -c, c) with the old E; then E <- (1 - eta) * E + eta * pre * post";

    /// The update on tensors: `(H', E')` from `(H, E)`.
    ///
    /// # Shapes
    /// - `h`, `e`: `[batch, n_pre, n_post]`
    /// - `pre`: `[batch, n_pre, 1]`; `post`: `[batch, 1, n_post]`
    /// - `modulation`: [`Rate::Modulated`] (`[batch, 1, 1]` or `[batch, 1, n_post]`)
    /// - `eta`: the eligibility trace's rate ([`Rate::Learned`])
    pub fn tensor(
        &self,
        h: Tensor<3>,
        e: Tensor<3>,
        pre: Tensor<3>,
        post: Tensor<3>,
        modulation: &Rate,
        eta: &Rate,
    ) -> (Tensor<3>, Tensor<3>) {
        let h = (h + modulation.times(e.clone())).clamp(-self.bound, self.bound);
        (h, Hebb.tensor(e, pre, post, eta))
    }

    /// Which branch the update of `H` takes (see [`RuleKernel::side`]): `H`'s move is the
    /// clipped rule's with `pre = E`, `post = 1` and rate `M`.
    #[inline(always)]
    pub fn side<F: Real>(&self, h: F, e: F, m: F) -> i8 {
        self.transfer().side(h, e, F::one(), m)
    }

    /// `H'` with its branch held at `side` (see [`RuleKernel::on_side`]).
    #[inline(always)]
    pub(crate) fn h_on_side<F: Real>(&self, h: F, e: F, m: F, side: i8) -> F {
        self.transfer().on_side(h, e, F::one(), m, side)
    }

    /// `H ← clip(H + M·E)` as the clipped rule (`pre = E`, `post = 1`, rate `M`).
    fn transfer(&self) -> Clipped {
        Clipped { bound: self.bound }
    }

    /// Forward step of one row (presynaptic `pre`): `H'` and `E'` for every postsynaptic `j`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn forward_row<F: Real>(
        &self,
        h: &[F],
        e: &[F],
        pre: F,
        post: &[F],
        m: RowRate<'_, F>,
        eta: F,
        h_out: &mut [F],
        e_out: &mut [F],
    ) {
        let n = h_out.len();
        let c: F = real(self.bound);
        let (h, e, post, e_out) = (&h[..n], &e[..n], &post[..n], &mut e_out[..n]);
        let keep = F::one() - eta;
        let pe = pre * eta;
        match m {
            RowRate::PerPost(r) => {
                let r = &r[..n];
                for j in 0..n {
                    h_out[j] = (h[j] + r[j] * e[j]).max(-c).min(c);
                    e_out[j] = keep * e[j] + pe * post[j];
                }
            }
            RowRate::Uniform(r) => {
                for j in 0..n {
                    h_out[j] = (h[j] + r * e[j]).max(-c).min(c);
                    e_out[j] = keep * e[j] + pe * post[j];
                }
            }
        }
    }

    /// Reverse step of one row. On entry `gh_j = ∂L/∂H_j(t)`, `ge_j = ∂L/∂E_j(t)`; on exit
    /// both hold the gradients of the old traces. Adds the row's terms to `d_post[j]`,
    /// `d_m[j]` (`∂L/∂M_j`) and `d_eta[j]` (summed over `j` by the caller), and returns the
    /// row's `∂L/∂pre`. `h`, `e` are the old traces; `scratch` is room for `n` values.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn reverse_row<F: Real>(
        &self,
        gh: &mut [F],
        ge: &mut [F],
        h: &[F],
        e: &[F],
        pre: F,
        post: &[F],
        m: &[F],
        eta: F,
        d_post: &mut [F],
        d_m: &mut [F],
        d_eta: &mut [F],
        scratch: &mut [F],
    ) -> F {
        let n = gh.len();
        let c: F = real(self.bound);
        let keep = F::one() - eta;
        let (ge, h, e, post, m) = (&mut ge[..n], &h[..n], &e[..n], &post[..n], &m[..n]);
        let (d_post, d_m, d_eta, row) = (
            &mut d_post[..n],
            &mut d_m[..n],
            &mut d_eta[..n],
            &mut scratch[..n],
        );
        for j in 0..n {
            let s = h[j] + m[j] * e[j];
            // The clip's mask as a factor, the product written back whole. (Written as
            // `gh[j] = if .. { gh[j] } else { 0 }`, LLVM stores only the zeros, with AVX's
            // masked store `vmaskmovps`: microcoded on AMD's cores, where that one store took
            // about a fifth of the maze's time.) A clipped entry is then `gh·0`: −0 where `gh`
            // is negative, where the select gave +0, the same value in every sum (NaN where
            // `gh` is infinite: a run that has already diverged).
            let on = if s.abs() < c { F::one() } else { F::zero() };
            let ds = gh[j] * on;
            gh[j] = ds;
            d_m[j] = d_m[j] + ds * e[j];
            // ∂L/∂E' (from the future) through E' = (1−η)E + η·pre·post.
            let g_new = ge[j];
            d_eta[j] = d_eta[j] + g_new * (pre * post[j] - e[j]);
            row[j] = g_new * post[j];
            d_post[j] = d_post[j] + eta * g_new * pre;
            ge[j] = ds * m[j] + keep * g_new;
        }
        eta * sum_lanes(row)
    }
}

impl TwoTraceKernel for Retroactive {
    #[inline(always)]
    fn local2<F: Real>(&self, h: F, e: F, pre: F, post: F, m: F, eta: F) -> Local2<F> {
        let c: F = real(self.bound);
        let s = h + m * e;
        let on = if s.abs() < c { F::one() } else { F::zero() };
        Local2 {
            h: s.max(-c).min(c),
            dh_h: on,
            dh_e: on * m,
            dh_m: on * e,
            dh_pre: F::zero(),
            dh_post: F::zero(),
            dh_eta: F::zero(),
            e: Hebb.local(e, pre, post, eta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partials equal central differences of the values, away from the clip.
    #[test]
    fn partials_are_the_derivatives_of_the_values() {
        let rule = Retroactive { bound: 2.0 };
        for &(h, e, pre, post, m, eta) in &[
            (0.3, -0.2, -0.7, 0.4, 0.6, 0.2),
            (-0.5, 0.8, 0.9, -0.8, -0.3, 0.05),
        ] {
            let l = rule.local2(h, e, pre, post, m, eta);
            let eps = 1e-6;
            let at = |k: usize, d: f64| {
                let mut v = [h, e, pre, post, m, eta];
                v[k] += d;
                let l = rule.local2(v[0], v[1], v[2], v[3], v[4], v[5]);
                (l.h, l.e.value)
            };
            let num = |k: usize| {
                let (a, b) = (at(k, eps), at(k, -eps));
                ((a.0 - b.0) / (2.0 * eps), (a.1 - b.1) / (2.0 * eps))
            };
            let expect = [
                (l.dh_h, l.e.d_h * 0.0),
                (l.dh_e, l.e.d_h),
                (l.dh_pre, l.e.d_pre),
                (l.dh_post, l.e.d_post),
                (l.dh_m, 0.0),
                (l.dh_eta, l.e.d_rate),
            ];
            for (k, (dh, de)) in expect.into_iter().enumerate() {
                let (nh, ne) = num(k);
                assert!((dh - nh).abs() < 1e-8, "dH'/d[{k}]: {dh} vs {nh}");
                assert!((de - ne).abs() < 1e-8, "dE'/d[{k}]: {de} vs {ne}");
            }
        }
    }

    /// The row kernels compute what `local2` computes, saturated entries included.
    #[test]
    fn row_kernels_agree_with_the_local_partials() {
        let rule = Retroactive { bound: 0.5 };
        let n = 11;
        let f = |k: usize, s: f64| ((k as f64 * 0.77 + s).sin()) * 0.6;
        let (h, e, post, m): (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) = (
            (0..n).map(|k| f(k, 0.1)).collect(),
            (0..n).map(|k| f(k, 1.3)).collect(),
            (0..n).map(|k| f(k, 2.9)).collect(),
            (0..n).map(|k| f(k, 4.2) + 0.3).collect(),
        );
        let (pre, eta) = (0.7, 0.2);
        let (mut ho, mut eo) = (vec![0.0; n], vec![0.0; n]);
        rule.forward_row(
            &h,
            &e,
            pre,
            &post,
            RowRate::PerPost(&m),
            eta,
            &mut ho,
            &mut eo,
        );
        let (gh0, ge0): (Vec<f64>, Vec<f64>) = (
            (0..n).map(|k| f(k, 5.0)).collect(),
            (0..n).map(|k| f(k, 6.0)).collect(),
        );
        let (mut gh, mut ge) = (gh0.clone(), ge0.clone());
        let (mut d_post, mut d_m, mut d_eta, mut scratch) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let d_pre = rule.reverse_row(
            &mut gh,
            &mut ge,
            &h,
            &e,
            pre,
            &post,
            &m,
            eta,
            &mut d_post,
            &mut d_m,
            &mut d_eta,
            &mut scratch,
        );
        let mut want_pre = 0.0;
        let mut saturated = 0;
        for j in 0..n {
            let l = rule.local2(h[j], e[j], pre, post[j], m[j], eta);
            saturated += (l.dh_h == 0.0) as usize;
            assert_eq!((ho[j], eo[j]), (l.h, l.e.value), "values at {j}");
            let close = |a: f64, b: f64, what: &str| {
                assert!((a - b).abs() < 1e-14, "{what} at {j}: {a} vs {b}")
            };
            close(gh[j], gh0[j] * l.dh_h, "dH");
            close(ge[j], gh0[j] * l.dh_e + ge0[j] * l.e.d_h, "dE");
            close(d_post[j], ge0[j] * l.e.d_post, "d_post");
            close(d_m[j], gh0[j] * l.dh_m, "d_m");
            close(d_eta[j], ge0[j] * l.e.d_rate, "d_eta");
            want_pre += ge0[j] * l.e.d_pre;
        }
        assert!((d_pre - want_pre).abs() < 1e-14, "{d_pre} vs {want_pre}");
        assert!(saturated > 0 && saturated < n, "{saturated} saturated");
    }
}
