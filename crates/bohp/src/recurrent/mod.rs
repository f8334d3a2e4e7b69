//! Fully recurrent plastic networks (differentiable plasticity, Miconi, Clune & Stanley 2018):
//! the [`model::PlasticRnn`] module with Hebbian or Oja traces and a learned plasticity rate,
//! the binary-pattern and image memorisation tasks, the non-plastic and LSTM baselines, the
//! fused host engine for large networks, and training.
//!
//! - [`model`]: [`model::PlasticRnn`] (burn module, autodiff reference) and [`model::LstmNet`].
//! - the fused host engine (hand-written BPTT with checkpointed traces) is
//!   [`crate::engines::fused`].
//! - [`tasks`]: episodes of the memorisation tasks, losses and errors.
//! - [`images`]: the built-in image generator and the CIFAR-10 reader.
//! - [`config`]: recurrent run configs (their memory estimate in `memory.rs`).
//! - [`train`]: the trainer, run files and the summary.

pub mod config;
pub mod family;
pub mod images;
mod memory;
pub mod model;
pub mod tasks;
pub mod train;
