//! # bohp: backpropagation of Hebbian plasticity
//!
//! Networks whose connections keep learning within an episode through Hebbian plasticity,
//! trained by backpropagation through time: every connection has a baseline weight `w` and a
//! plasticity coefficient `α`, and both are learned (Miconi 2016).
//!
//! ## Crate map
//! - [`layer`]: [`layer::PlasticLayer`], the plastic layer (Eq. 1-2), with its trace as state.
//! - [`network`]: the paper's networks (plastic layer, optional softmax readout).
//! - [`tasks`]: pattern completion, one-shot and reversal learning: seeded batched episodes,
//!   losses and error measures.
//! - [`config`]: run configs (TOML), defaults and validation.
//! - [`device`]: backend and precision selection.
//! - [`train`]: training with autodiff and Adam, the frozen phase, evaluation.
//! - [`run`]: run directories, checkpoints, metrics.
//! - [`rng`]: seeded, position-addressable random streams.
//! - [`recurrent`]: fully recurrent plastic networks (2018), their tasks and baselines.
//!
//! ## Features
//! - `ndarray` (default): the burn-ndarray CPU backend.
//! - `flex` (default): the burn-flex CPU backend.
#![warn(missing_docs)]

pub mod config;
pub mod device;
pub mod error;
pub mod host_adam;
pub mod layer;
pub mod network;
pub mod recurrent;
pub mod rng;
pub mod run;
pub mod tasks;
pub mod train;

pub use error::{Error, Result};
