//! The 2016 single plastic layer (Miconi 2016): pattern completion, one-shot and reversal
//! learning. Its config ([`config`]), its network ([`network`]: the plastic layer of
//! [`crate::layer`] with an optional softmax readout), its tasks ([`tasks`]), its trainer
//! ([`train`]: burn autodiff or the host engines of [`crate::engines`], Adam or the original
//! optimizer, the frozen phase), and [`family`], which registers it.

pub mod config;
pub mod family;
pub mod network;
pub mod tasks;
pub mod train;

pub use family::{FAMILY, SingleLayer};
