//! Meta-reinforcement learning with plastic and neuromodulated recurrent networks
//! (backpropamine, Miconi et al. 2019): environments that react to the network's actions, the
//! actor-critic networks, their configs, and A2C training through the one training loop.

pub mod config;
pub mod env;
pub mod family;
pub mod fused;
pub mod host;
mod memory;
pub mod metatask;
pub mod model;
pub mod params;
pub mod replay;
pub mod train;
