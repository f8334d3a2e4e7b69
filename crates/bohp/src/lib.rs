//! # bohp: backpropagation of Hebbian plasticity
//!
//! Networks whose connections keep learning within an episode through Hebbian plasticity,
//! trained by backpropagation through time: every connection has a baseline weight `w` and a
//! plasticity coefficient `α`, and both are learned (Miconi 2016).
//!
//! ## Crate map
//! Shared by every family:
//! - [`prelude`]: what a model of your own needs, in one `use bohp::prelude::*`.
//! - [`rules`]: the plasticity rules (decaying Hebb, Oja, clipped Hebb, a modulated rate,
//!   retroactive neuromodulation), each defined once: its update on tensors, and on the host
//!   its forward, reverse-mode and forward-mode steps.
//! - [`connection`]: one plastic connection (`w + α ⊙ H` and its trace).
//! - [`layer`]: [`layer::PlasticLayer`], the plastic layer (Eq. 1-2), with its trace as state.
//! - [`schema`]: what every family's config shares (`[train]` keys, rule checks, TOML parsing).
//! - [`device`]: backend and precision selection.
//! - [`memory`]: the least memory a config needs, checked before anything is allocated.
//! - [`engines`]: the host gradient engines (the single layer's forward-mode recursion and
//!   BPTT, the recurrent network's BPTT) and [`engines::Engine`], `train.engine`.
//! - [`learner`]: the one training loop (checkpoints, Ctrl-C, divergence, metrics, summary).
//! - [`host_optim`]: Adam and the original optimizer on the host.
//! - [`run`]: run directories, checkpoints, metrics.
//! - [`family`]: what a model family is, and what `train` and `eval` do around any family.
//! - [`registry`]: the one list of families every command goes through.
//! - [`export`]: a trained run's parameters as safetensors, npz or JSON, for every family.
//! - [`rng`]: seeded, position-addressable random streams.
//!
//! The families, one folder each:
//! - [`single`]: the 2016 single plastic layer (completion, one-shot, reversal).
//! - [`recurrent`]: fully recurrent plastic networks (2018), their tasks and baselines.
//! - [`rl`]: actor-critic agents trained by reinforcement (2019).
//! - [`omniglot`]: few-shot classification of Omniglot characters (2018).
//!
//! ## Features
//! - `ndarray` (default): the burn-ndarray CPU backend.
//! - `flex` (default): the burn-flex CPU backend.
#![warn(missing_docs)]

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
pub mod omniglot;
pub mod recurrent;
pub mod registry;
pub mod rl;
pub mod rng;
pub mod rules;
pub mod run;
pub mod schema;
pub mod single;
pub mod store;

pub use error::{Error, Result};

/// The types for building plastic networks of your own (see [`connection`] for an example):
/// the plastic connection, the rules and their rates, the library's plastic layer and
/// recurrent network, and device selection (`bohp::Result` and `bohp::Error` stay outside).
pub mod prelude {
    pub use crate::connection::PlasticConnection;
    pub use crate::device::{Backend, Precision, init_device};
    pub use crate::layer::{HebbTrace, PlasticLayer, PlasticLayerConfig};
    pub use crate::recurrent::model::{PlasticRnn, PlasticRnnConfig, RnnState};
    pub use crate::rules::{Modulation, Rate, Retroactive, Rule, RuleKernel, RuleSpec};
    pub use crate::single::network::{PlasticNet, PlasticNetConfig};
    // Not `Result`: it would shadow the standard one in the user's module.
}
