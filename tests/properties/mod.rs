//! Property-based tests (proptest) of every reader bohp has (issue 27): configs, data sets,
//! run directories and exports, each given random values, truncations, byte flips and missing
//! files. Each property is: the reader returns the right result, or an error that names the
//! file (and the field) — never a panic, never a silently wrong value. Case counts are sized
//! for CI (each `ProptestConfig` says how many).

mod configs;
mod exports;
mod readers;
mod runs;

use proptest::prelude::*;

/// A change to one file's bytes.
#[derive(Debug, Clone)]
pub(crate) enum Damage {
    /// XOR `mask` (non-zero) into the byte at `at` (a fraction of the length), `count` times at
    /// consecutive positions.
    Flip { at: f64, mask: u8, count: usize },
    /// Keep the first `at` (a fraction) of the bytes.
    Truncate { at: f64 },
    /// Remove the file.
    Remove,
    /// Replace the file by random bytes.
    Garbage(Vec<u8>),
}

impl Damage {
    /// `bytes` damaged; `None` for a removed file.
    pub(crate) fn apply(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = bytes.to_vec();
        match self {
            Damage::Flip { at, mask, count } => {
                if !out.is_empty() {
                    let start = ((out.len() as f64 * at) as usize).min(out.len() - 1);
                    for b in out.iter_mut().skip(start).take(*count) {
                        *b ^= mask;
                    }
                }
            }
            Damage::Truncate { at } => out.truncate((bytes.len() as f64 * at) as usize),
            Damage::Remove => return None,
            Damage::Garbage(g) => out = g.clone(),
        }
        Some(out)
    }

    /// Applies the damage to the file at `path`.
    pub(crate) fn to_file(&self, path: &std::path::Path) {
        let bytes = std::fs::read(path).unwrap();
        match self.apply(&bytes) {
            Some(b) => std::fs::write(path, b).unwrap(),
            None => std::fs::remove_file(path).unwrap(),
        }
    }
}

/// Flips (most cases), truncations, removals and random contents.
pub(crate) fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (0.0f64..1.0, 1u8..=255, 1usize..=4)
            .prop_map(|(at, mask, count)| Damage::Flip { at, mask, count }),
        2 => (0.0f64..1.0).prop_map(|at| Damage::Truncate { at }),
        1 => Just(Damage::Remove),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Damage::Garbage),
    ]
}
