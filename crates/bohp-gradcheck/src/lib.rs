//! # bohp-gradcheck: proof that every gradient engine computes the true gradient
//!
//! This crate only checks; the engines that train live in the library (`bohp::engines`), built
//! on its rule library (`bohp::rules`).
//!
//! - [`compare`]: the single layer's gradients by burn autodiff and by central finite
//!   differences, and the agreement of two gradient sets per parameter group (max absolute and
//!   relative error, cosine).
//! - [`rtrl`]: real-time recurrent learning for the recurrent plastic network (every rule), the
//!   independent reference its autodiff and fused BPTT gradients are checked against.
//! - [`check`]: `bohp gradcheck` for both families: the single layer (autodiff vs the analytic
//!   recursion vs finite differences) and the recurrent network (autodiff vs RTRL vs the fused
//!   engine vs finite differences), with stated tolerances; known-wrong variants to show the
//!   checks have teeth.
//! - [`rl`]: the neuromodulated actor-critic (every kind and rule): burn autodiff, the fused
//!   engine, forward mode and finite differences against the host reverse pass, on a recorded
//!   replay of A2C episodes.
//! - [`fewshot`]: the Omniglot few-shot network: the plastic layer against a host reference and
//!   finite differences, the convolutional embedding against finite differences.
//! - [`dump`]: one episode of any family as JSON (what produced it, parameters, inputs,
//!   targets, per-step outputs and traces, loss, and the gradients of each method), schema
//!   `bohp-gradcheck-dump/5` in `docs/gradients.md`.
#![warn(missing_docs)]

pub mod check;
pub mod compare;
pub mod dump;
pub mod fewshot;
pub mod lstm;
pub mod rl;
pub mod rtrl;

pub use bohp::engines::analytic::{Grads, Params, Variant};
