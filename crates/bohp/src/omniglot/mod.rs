//! Few-shot classification on Omniglot with a plastic convolutional network (the 2018 paper's
//! §4.2): the data set's reader and runs, the episode sampler, the modified-Hausdorff baseline
//! (`data`, re-exported here), the network ([`model`]), its config and its trainer.

pub mod config;
mod data;
pub mod family;
mod memory;
pub mod model;
pub mod train;

pub use data::*;
