//! Host gradient engines: hand-derived gradients computed on the CPU, built on the rule
//! library ([`crate::rules`]), each checked against burn autodiff, an independent recursion and
//! finite differences by `bohp-gradcheck`.
//!
//! - [`analytic`]: the single layer's forward-mode recursion (exact gradients in f64), and
//!   [`analytic::Analytic`], the [`crate::train::GradientEngine`] that trains with it
//!   (`train.engine = "analytic"`).
//! - [`fused`]: backpropagation through time for the recurrent network, with checkpointed
//!   traces (`train.engine = "fused"`).

pub mod analytic;
pub mod fused;
