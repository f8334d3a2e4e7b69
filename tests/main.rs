//! End-to-end and cross-backend tests of bohp.
//!
//! Run them with `cargo nextest run --release --workspace --features bohp-cli/wgpu` (or without
//! the feature, leaving out the wgpu tests): nextest gives every test its own
//! process, which burn needs to use one backend in both f32 and f64 (a process fixes each
//! device's float dtype on first use).

mod backends;
mod bench;
mod cli;
mod common;
mod controls;
mod export;
mod faults;
mod gradients;
mod layers;
mod omniglot;
mod properties;
mod recurrent;
mod registry;
mod reproduce;
mod resume;
mod rl;
mod rules;
mod toy;
mod train_schema;
mod verify;
