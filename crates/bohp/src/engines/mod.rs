//! Host gradient engines: hand-derived gradients computed on the CPU, built on the rule
//! library ([`crate::rules`]), each checked against burn autodiff, an independent recursion and
//! finite differences by `bohp-gradcheck`.
//!
//! - [`analytic`]: the single layer's forward-mode recursion (exact gradients in f64), and
//!   [`analytic::Analytic`], the [`crate::train::GradientEngine`] that trains with it
//!   (`train.engine = "analytic"`).
//! - [`layer_fused`]: the single layer's backpropagation through time in the model's
//!   precision, split over the batch across threads (`train.engine = "fused"`), the fast path.
//! - [`fused`]: backpropagation through time for the recurrent network, with checkpointed
//!   traces (`train.engine = "fused"`).

pub mod analytic;
pub mod fused;
pub mod layer_fused;
