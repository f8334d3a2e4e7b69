//! One plastic connection, shared by the single layer (2016) and the recurrent network (2018).
//!
//! Presynaptic neurons `i` reach postsynaptic neurons `j` through `w_ij + α_ij · H_ij`, and the
//! trace follows a rule of [`crate::rules`]:
//!
//! ```text
//! drive_j = Σ_i pre_i · (w_ij + α_ij · H_ij(t-1))
//! H_ij(t) = f(H_ij(t-1), pre_i, post_j, η)
//! ```
//!
//! single layer: `pre = x(t)`, `post = y(t)`, `η = γ` fixed; recurrent network:
//! `pre = y(t-1)`, `post = y(t)`, `η` learned. `α` is one per connection or one shared value.
//! The fixed part `Σ_i pre_i · w_ij` is each family's own (the single layer computes it for
//! all steps at once); this type holds the plastic part.

use burn::tensor::Tensor;

use crate::rules::{Rate, RuleSpec};

/// The plastic part of a connection for one episode's unroll: `α`, the rate and the rule.
#[derive(Debug, Clone)]
pub struct PlasticConnection {
    /// `α`, `[1, n_pre, n_post]`, or `[1, 1, 1]` when shared.
    pub alpha: Tensor<3>,
    /// The trace's rate `η` (γ in the single layer).
    pub rate: Rate,
    /// The trace's rule.
    pub rule: RuleSpec,
}

impl PlasticConnection {
    /// `α` given as `[n_pre, n_post]` (or `[1, 1]` when shared).
    pub fn new(alpha: Tensor<2>, rate: Rate, rule: RuleSpec) -> Self {
        PlasticConnection {
            alpha: alpha.unsqueeze::<3>(),
            rate,
            rule,
        }
    }

    /// The plastic drive `pre · (α ⊙ H)`.
    ///
    /// # Shapes
    /// - `pre`: `[batch, 1, n_pre]`
    /// - `h`: `[batch, n_pre, n_post]`
    /// - returned: `[batch, n_post]`
    pub fn drive(&self, pre: Tensor<3>, h: Tensor<3>) -> Tensor<2> {
        let [batch, _, n_post] = h.dims();
        pre.matmul(self.alpha.clone() * h).reshape([batch, n_post])
    }

    /// The trace after this step: `H(t) = f(H(t-1), pre, post, η)`.
    ///
    /// # Shapes
    /// - `h`: `[batch, n_pre, n_post]`
    /// - `pre`: `[batch, n_pre, 1]`
    /// - `post`: `[batch, 1, n_post]`
    pub fn update(&self, h: Tensor<3>, pre: Tensor<3>, post: Tensor<3>) -> Tensor<3> {
        self.rule.tensor(h, pre, post, &self.rate)
    }
}
