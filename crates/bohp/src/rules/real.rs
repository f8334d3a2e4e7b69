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
/// rounded: within one unit in the last place of the exact value, like the C library's `tanhf`
/// (which is a call per value). Test: `fast_f32_tanh_is_within_an_ulp`.
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

/// `tanh(x)` for f32 `x`, evaluated in f64: `x·(1 - x²/3 + 2x⁴/15)` below 2⁻⁸ (where the
/// next term is about 2⁻⁵² of the value), else `1 - 2/(e^{2|x|} + 1)` with `e^y = 2^k·p(r)`,
/// `y = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, `p` the Taylor polynomial of degree 11 (relative error
/// below 10⁻¹⁴); `|x|` is capped at 10, where tanh rounds to 1 in f32.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    tanh_f32_lanes([x])[0]
}

/// [`tanh_f32`] of `N` values at once, every step an array operation (SIMD lanes; both
/// branches computed, then selected).
#[inline(always)]
fn tanh_f32_lanes<const N: usize>(x: [f32; N]) -> [f32; N] {
    // ln 2 = LN2_HI + LN2_LO, the high part with its last 21 bits zero (so k·LN2_HI is exact).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1.5·2⁵²: adding it rounds to an integer held in the low bits of the mantissa.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    const COEFFS: [f64; 11] = [
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let xd = x.map(f64::from);
    // Not `min`, which would turn NaN into 10: NaN goes through (to the divergence check).
    let a = xd.map(|v| if v.abs() > 10.0 { 10.0 } else { v.abs() });
    let mut out = [0.0f32; N];
    let mut big = [0.0f64; N];
    let mut kf = [0.0f64; N];
    let mut r = [0.0f64; N];
    for i in 0..N {
        let y = 2.0 * a[i];
        kf[i] = (y * std::f64::consts::LOG2_E + SHIFT) - SHIFT;
        r[i] = (y - kf[i] * LN2_HI) - kf[i] * LN2_LO;
    }
    let mut p = [1.0 / 39_916_800.0; N];
    for c in COEFFS {
        for i in 0..N {
            p[i] = p[i] * r[i] + c;
        }
    }
    for i in 0..N {
        // 2^k from the bits of k + 1023 moved into the exponent field.
        let two_k = f64::from_bits((kf[i] + SHIFT + 1023.0).to_bits() << 52);
        big[i] = (1.0 - 2.0 / (p[i] * two_k + 1.0)).copysign(xd[i]);
    }
    for i in 0..N {
        let x2 = xd[i] * xd[i];
        let small = xd[i] * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
        let t = if a[i] < 1.0 / 256.0 { small } else { big[i] };
        out[i] = t as f32;
    }
    out
}

/// `v` in `F`.
#[inline(always)]
pub fn real<F: Real>(v: f64) -> F {
    F::from(v).expect("representable")
}
