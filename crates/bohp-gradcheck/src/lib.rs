//! # bohp-gradcheck: the hand-derived BOHP gradients, and proof that autodiff matches them
//!
//! - [`analytic`]: the forward-mode recursion of the BOHP gradient in plain f64 (no burn in its
//!   arithmetic), for the plastic layer alone (completion) and with a softmax readout trained by
//!   cross-entropy (one-shot, reversal), with each task's loss; plus the paper's and the
//!   original code's known-wrong variants, so tests can show the check has teeth.
//! - [`compare`]: the same gradients by burn autodiff and by central finite differences, and
//!   their agreement per parameter group (max absolute and relative error, cosine).
//! - [`engine`]: a [`bohp::train::GradientEngine`] that trains with the analytic gradients.
//! - [`rtrl`]: real-time recurrent learning for the recurrent plastic network (Hebb and Oja),
//!   the reference its autodiff and fused BPTT gradients are checked against.
//! - [`dump`]: one episode as JSON (parameters, inputs, targets, per-step outputs and traces,
//!   loss, and the gradients of each method), schema in `docs/gradients.md`.
#![warn(missing_docs)]

pub mod analytic;
pub mod check;
pub mod compare;
pub mod dump;
pub mod engine;
pub mod rtrl;

pub use analytic::{Grads, Params, Variant};
pub use engine::Analytic;
