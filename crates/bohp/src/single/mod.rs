//! The 2016 single plastic layer (Miconi 2016) as a family: pattern completion, one-shot and
//! reversal learning. Its config is [`crate::config`], its model [`crate::layer`] and
//! [`crate::network`], its tasks [`crate::tasks`], its trainer [`crate::train`], its host
//! engines [`crate::engines`]; [`family`] registers it.

pub mod family;

pub use family::{FAMILY, SingleLayer};
