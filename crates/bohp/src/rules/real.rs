//! The float types the host engines run in ([`Real`]: f32 and f64), and f32's fast `tanh`.

use num_traits::Float;

/// The float types the host engines run in.
pub trait Real: Float + Send + Sync + Default + std::fmt::Debug + std::iter::Sum + 'static {
    /// `tanh` of every value in place: the standard library's, except where a type overrides
    /// it with a faster one of the same accuracy.
    fn tanh_in_place(v: &mut [Self]) {
        v.iter_mut().for_each(|x| *x = x.tanh());
    }
}

/// f32's `tanh` computed in f64 by a branch-free formula that the compiler vectorises, then
/// rounded ([`tanh_f32`]): within one unit in the last place of the exact value, like the C
/// library's `tanhf` (which is a call per value). Test: `fast_f32_tanh_is_within_an_ulp`.
impl Real for f32 {
    #[inline(always)]
    fn tanh_in_place(v: &mut [f32]) {
        // Sixteen at a time where there are (four independent vectors per step, the same
        // arithmetic per value), then four, two and one.
        let (wide, rest) = v.as_chunks_mut::<16>();
        for c in wide {
            *c = tanh_f32_lanes(*c);
        }
        let (chunks, rest) = rest.as_chunks_mut::<4>();
        for c in chunks {
            *c = tanh_f32_lanes(*c);
        }
        let (pairs, rest) = rest.as_chunks_mut::<2>();
        for c in pairs {
            *c = tanh_f32_lanes(*c);
        }
        for x in rest {
            *x = tanh_f32_lanes([*x])[0];
        }
    }
}

impl Real for f64 {}

/// `tanh(x)` for f32 `x`, evaluated in f64 through `expm1`: with `a = |x|` (capped at 10, where
/// tanh rounds to 1 in f32), `e^{2a} - 1 = (2^k - 1) + 2^k·r·q(r)`, `2a = k·ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, `q(r) = (e^r - 1)/r` its Taylor polynomial of degree 8 (truncation below
/// 2⁻³⁵ relative), and `tanh a = (e^{2a} - 1)/(e^{2a} + 1)`. No cancellation near 0 (for
/// `k = 0` the numerator is `r·q(r)`), so one formula serves every `x`. Within half an ulp of
/// the exact value at every f32 in [0, 10.5] (checked exhaustively when written; the test
/// checks every 97th). Multiply-adds are fused (`mul_add`): the same bits on every target,
/// fast where the caller is compiled with FMA.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    tanh_f32_lanes([x])[0]
}

/// [`tanh_f32`] of `N` values at once, every step an array operation (SIMD lanes).
#[inline(always)]
fn tanh_f32_lanes<const N: usize>(x: [f32; N]) -> [f32; N] {
    // ln 2 = LN2_HI + LN2_LO, the high part with its last 21 bits zero (so k·LN2_HI is exact).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1.5·2⁵²: adding it rounds to an integer held in the low bits of the mantissa.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    // q's coefficients 1/(i+1)!, i = 0..=8.
    const C: [f64; 9] = [
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
    ];
    // A loop rather than `map`'s closure, which would not inherit the caller's FMA.
    let mut out = [0.0f32; N];
    for (o, &x) in out.iter_mut().zip(&x) {
        let v = f64::from(x).abs();
        // Not `min`, which would turn NaN into 10: NaN goes through (to the divergence check).
        let y = 2.0 * if v > 10.0 { 10.0 } else { v };
        let k = y.mul_add(std::f64::consts::LOG2_E, SHIFT) - SHIFT;
        let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, y));
        // 2^k from the bits of k + 1023 moved into the exponent field.
        let two_k = f64::from_bits((k + SHIFT + 1023.0).to_bits() << 52);
        // q by Estrin's scheme (a short dependency chain).
        let r2 = r * r;
        let r4 = r2 * r2;
        let lo = C[3].mul_add(r, C[2]).mul_add(r2, C[1].mul_add(r, C[0]));
        let hi = C[7].mul_add(r, C[6]).mul_add(r2, C[5].mul_add(r, C[4]));
        let q = C[8].mul_add(r4, hi).mul_add(r4, lo);
        let em = two_k.mul_add(r * q, two_k - 1.0);
        *o = (em / (em + 2.0)).copysign(f64::from(x)) as f32;
    }
    out
}

/// `v` in `F`.
#[inline(always)]
pub fn real<F: Real>(v: f64) -> F {
    F::from(v).expect("representable")
}
