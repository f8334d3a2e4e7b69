//! Meta-reinforcement learning with plastic and neuromodulated recurrent networks
//! (backpropamine, Miconi et al. 2019): environments that react to the network's actions.

pub mod env;
