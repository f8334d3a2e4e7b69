//! The actor-critic's parameters on the host, row-major, group by group in the burn module's
//! visiting order: what the host engines, the host optimizers and `bohp gradcheck` exchange.

/// The parameters, row-major, laid out as the burn module's tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AcParams {
    /// `[I, N]`.
    pub w_in: Vec<f64>,
    /// `[N, N]`.
    pub w: Vec<f64>,
    /// `[N]`.
    pub b: Vec<f64>,
    /// `[N, N]`.
    pub alpha: Vec<f64>,
    /// `[N, A]`.
    pub w_pi: Vec<f64>,
    /// `[A]`.
    pub b_pi: Vec<f64>,
    /// `[N]`.
    pub w_v: Vec<f64>,
    /// `[1]`.
    pub b_v: Vec<f64>,
    /// `[N]`.
    pub w_m: Vec<f64>,
    /// `[1]`.
    pub b_m: Vec<f64>,
    /// `[N]`.
    pub fan_w: Vec<f64>,
    /// `[N]`.
    pub fan_b: Vec<f64>,
    /// `[1]`.
    pub eta: Vec<f64>,
}

impl AcParams {
    /// The groups' names, in [`AcParams::into_groups`]'s order.
    pub const GROUP_NAMES: [&'static str; 13] = [
        "w_in", "w", "b", "alpha", "w_pi", "b_pi", "w_v", "b_v", "w_m", "b_m", "fan_w", "fan_b",
        "eta",
    ];

    /// The groups, moved out, in the burn module's visiting order (for the host optimizers).
    pub fn into_groups(self) -> Vec<Vec<f64>> {
        vec![
            self.w_in, self.w, self.b, self.alpha, self.w_pi, self.b_pi, self.w_v, self.b_v,
            self.w_m, self.b_m, self.fan_w, self.fan_b, self.eta,
        ]
    }

    /// The inverse of [`AcParams::into_groups`].
    pub fn from_groups(groups: Vec<Vec<f64>>) -> AcParams {
        let [
            w_in,
            w,
            b,
            alpha,
            w_pi,
            b_pi,
            w_v,
            b_v,
            w_m,
            b_m,
            fan_w,
            fan_b,
            eta,
        ]: [Vec<f64>; 13] = groups.try_into().expect("13 groups");
        AcParams {
            w_in,
            w,
            b,
            alpha,
            w_pi,
            b_pi,
            w_v,
            b_v,
            w_m,
            b_m,
            fan_w,
            fan_b,
            eta,
        }
    }

    /// The groups, mutably, in the same order as [`AcParams::groups`].
    pub fn groups_mut(&mut self) -> Vec<(&'static str, &mut Vec<f64>)> {
        vec![
            ("w_in", &mut self.w_in),
            ("w", &mut self.w),
            ("b", &mut self.b),
            ("alpha", &mut self.alpha),
            ("w_pi", &mut self.w_pi),
            ("b_pi", &mut self.b_pi),
            ("w_v", &mut self.w_v),
            ("b_v", &mut self.b_v),
            ("w_m", &mut self.w_m),
            ("b_m", &mut self.b_m),
            ("fan_w", &mut self.fan_w),
            ("fan_b", &mut self.fan_b),
            ("eta", &mut self.eta),
        ]
    }

    /// The groups in the burn module's visiting order, for comparisons.
    pub fn groups(&self) -> Vec<(&'static str, &Vec<f64>)> {
        vec![
            ("w_in", &self.w_in),
            ("w", &self.w),
            ("b", &self.b),
            ("alpha", &self.alpha),
            ("w_pi", &self.w_pi),
            ("b_pi", &self.b_pi),
            ("w_v", &self.w_v),
            ("b_v", &self.b_v),
            ("w_m", &self.w_m),
            ("b_m", &self.b_m),
            ("fan_w", &self.fan_w),
            ("fan_b", &self.fan_b),
            ("eta", &self.eta),
        ]
    }
}
