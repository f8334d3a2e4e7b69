//! # bohp: backpropagation of Hebbian plasticity
//!
//! Networks whose connections keep learning within an episode through Hebbian plasticity,
//! trained by backpropagation through time: every connection has a baseline weight `w` and a
//! plasticity coefficient `α`, and both are learned (Miconi 2016).
//!
//! ## Crate map
//! - [`prelude`]: what a model of your own needs, in one `use bohp::prelude::*`.
//! - [`rules`]: the plasticity rules (decaying Hebb, Oja, clipped Hebb, a modulated rate,
//!   retroactive neuromodulation), each defined once: its update on tensors, and on the host
//!   its forward, reverse-mode and forward-mode steps.
//! - [`connection`]: one plastic connection (`w + α ⊙ H` and its trace), shared by both
//!   families.
//! - [`layer`]: [`layer::PlasticLayer`], the plastic layer (Eq. 1-2), with its trace as state.
//! - [`network`]: the paper's networks (plastic layer, optional softmax readout).
//! - [`tasks`]: pattern completion, one-shot and reversal learning: seeded batched episodes,
//!   losses and error measures.
//! - [`config`]: run configs (TOML), defaults and validation.
//! - [`device`]: backend and precision selection.
//! - [`memory`]: the least memory a config needs, checked before anything is allocated.
//! - [`train`]: training with autodiff and Adam, the frozen phase, evaluation.
//! - [`engines`]: the host gradient engines that train: the single layer's forward-mode
//!   recursion ([`engines::analytic`]) and the recurrent network's BPTT ([`engines::fused`]).
//! - [`run`]: run directories, checkpoints, metrics.
//! - [`family`]: what a model family is, and the registry every command goes through.
//! - [`single`]: the single layer registered as a family.
//! - [`export`]: a trained run's parameters as safetensors, npz or JSON, for every family.
//! - [`rng`]: seeded, position-addressable random streams.
//! - [`recurrent`]: fully recurrent plastic networks (2018), their tasks and baselines.
//!
//! ## Features
//! - `ndarray` (default): the burn-ndarray CPU backend.
//! - `flex` (default): the burn-flex CPU backend.
#![warn(missing_docs)]

pub mod config;
pub mod connection;
pub mod device;
pub mod engines;
pub mod error;
pub mod export;
pub mod family;
pub mod host_optim;
pub mod layer;
pub mod learner;
pub mod memory;
pub mod network;
pub mod omniglot;
pub mod recurrent;
pub mod rl;
pub mod rng;
pub mod rules;
pub mod run;
pub mod single;
pub mod tasks;
pub mod train;

pub use error::{Error, Result};

/// The types for building plastic networks of your own (see [`connection`] for an example):
/// the plastic connection, the rules and their rates, the library's plastic layer and
/// recurrent network, and device selection (`bohp::Result` and `bohp::Error` stay outside).
pub mod prelude {
    pub use crate::connection::PlasticConnection;
    pub use crate::device::{Backend, Precision, init_device};
    pub use crate::layer::{HebbTrace, PlasticLayer, PlasticLayerConfig};
    pub use crate::network::{PlasticNet, PlasticNetConfig};
    pub use crate::recurrent::model::{PlasticRnn, PlasticRnnConfig};
    pub use crate::rules::{Modulation, Rate, Retroactive, Rule, RuleKernel, RuleSpec};
    // Not `Result`: it would shadow the standard one in the user's module.
}
