//! Verification of what a command reads back from a run directory.
//!
//! A finished run's files carry checksums in `checksums.json` (written last, atomically, when
//! the run finishes): `config.toml`, `metrics.csv`, `model.bpk` and `summary.json`. Every
//! command that reads a finished run's final model checks them all first
//! ([`RunDir::verify_finished`]). A checkpoint records the checksum of the `metrics.csv` rows
//! before it (`metrics_crc32`), so a `state.json` whose `next_episode` was edited, or a
//! `metrics.csv` edited before the checkpoint, is refused on resume.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{RunDir, write_atomic};
use crate::error::{Error, Result};

/// The files of a finished run that `checksums.json` covers, in the order they are checked.
pub const FINAL_FILES: [&str; 4] = ["config.toml", "metrics.csv", "summary.json", "model.bpk"];

/// `checksums.json`: the CRC-32 of each of a finished run's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksums {
    /// The bohp version that wrote it.
    pub bohp_version: String,
    /// File name → CRC-32.
    pub crc32: BTreeMap<String, u32>,
}

impl RunDir {
    /// `checksums.json`.
    pub fn checksums_path(&self) -> std::path::PathBuf {
        self.path().join("checksums.json")
    }

    /// Records the checksums of the finished run's files ([`FINAL_FILES`]; a run trained
    /// through the library may have no `config.toml`); written last.
    pub(crate) fn write_checksums(&self) -> Result<()> {
        let mut crc32 = BTreeMap::new();
        for name in FINAL_FILES {
            let path = self.path().join(name);
            match fs::read(&path) {
                Ok(bytes) => {
                    crc32.insert(name.to_string(), crc32fast::hash(&bytes));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "config.toml" => {}
                Err(e) => return Err(Error::io(&path, "cannot read", e)),
            }
        }
        let sums = Checksums {
            bohp_version: env!("CARGO_PKG_VERSION").to_string(),
            crc32,
        };
        let json = serde_json::to_vec_pretty(&sums).expect("checksums serialize");
        write_atomic(&self.checksums_path(), &json)
    }

    /// Removes `checksums.json` (a finished run that is being extended is no longer finished).
    pub(crate) fn remove_checksums(&self) -> Result<()> {
        let path = self.checksums_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, "cannot remove", e)),
        }
    }

    /// Whether a run whose training is done also wrote its final files (the last is
    /// `checksums.json`; a run of a bohp older than the checksums has its `summary.json`).
    /// A run stopped while writing them is finished by `bohp train --resume`.
    pub fn final_files_written(&self) -> bool {
        self.checksums_path().is_file()
            || (self.summary_path().is_file()
                && self
                    .read_checkpoint_state()
                    .is_ok_and(|(_, state)| state.metrics_crc32.is_none()))
    }

    /// Checks every file of the finished run against `checksums.json`, naming the first that
    /// is missing or differs. A run finished by a bohp older than the checksums (no
    /// `checksums.json`, and a checkpoint without `metrics_crc32`) is read with a warning; a
    /// newer run without it is refused.
    pub fn verify_finished(&self) -> Result<()> {
        let model = self.model_path();
        if !model.is_file() {
            return Err(Error::artifact(
                &model,
                format!(
                    "no final model: the run has not finished (resume it with `bohp train --resume {}`)",
                    self.path().display()
                ),
            ));
        }
        let path = self.checksums_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (_, state) = self.read_checkpoint_state()?;
                if state.metrics_crc32.is_some() {
                    return Err(Error::artifact(
                        &path,
                        format!(
                            "missing: the run's model.bpk exists but the checksums of its files are gone \
                             (if the run was stopped while finishing, `bohp train --resume {}` finishes it)",
                            self.path().display()
                        ),
                    ));
                }
                tracing::warn!(
                    run = %self.path().display(),
                    "no checksums.json (a run finished by an older bohp): its files are not verified"
                );
                return Ok(());
            }
            Err(e) => return Err(Error::io(&path, "cannot read", e)),
        };
        let sums: Checksums = serde_json::from_slice(&bytes).map_err(|e| {
            Error::artifact(
                &path,
                format!("corrupt (expected JSON with bohp_version and crc32): {e}"),
            )
        })?;
        for name in FINAL_FILES {
            let file = self.path().join(name);
            let Some(&expected) = sums.crc32.get(name) else {
                if name == "config.toml" {
                    // A run trained through the library without one (`RunDir::open` requires
                    // one now).
                    continue;
                }
                return Err(Error::artifact(
                    &path,
                    format!("corrupt: it has no checksum for {name}"),
                ));
            };
            let bytes = fs::read(&file).map_err(|e| {
                Error::artifact(&file, format!("cannot read a finished run's file: {e}"))
            })?;
            if crc32fast::hash(&bytes) != expected {
                return Err(Error::artifact(
                    &file,
                    "corrupt or edited since the run finished: its checksum differs from the one in checksums.json",
                ));
            }
        }
        Ok(())
    }

    /// The CRC-32 of `metrics.csv`'s header and first `rows` rows as the file holds them (of
    /// nothing when `rows` is 0).
    pub(crate) fn metrics_prefix_crc(&self, rows: usize) -> Result<u32> {
        if rows == 0 {
            // No rows to protect (the header may or may not have been written yet).
            return Ok(crc32fast::hash(&[]));
        }
        let path = self.metrics_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => return Err(Error::io(&path, "cannot read", e)),
        };
        Ok(crc32fast::hash(prefix_lines(&bytes, rows + 1, &path)?))
    }
}

/// The first `lines` newline-terminated lines of `bytes`.
fn prefix_lines<'a>(bytes: &'a [u8], lines: usize, path: &Path) -> Result<&'a [u8]> {
    let mut seen = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == lines {
                return Ok(&bytes[..=i]);
            }
        }
    }
    Err(Error::artifact(
        path,
        format!(
            "holds {} rows, expected at least {}",
            seen.saturating_sub(1),
            lines - 1
        ),
    ))
}
