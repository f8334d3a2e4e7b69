//! The library's error type: every user-facing failure names the file or field at fault and
//! what was expected.

use std::path::PathBuf;

/// Errors from configuration, devices, checkpoints and training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("cannot read", "cannot create directory", ...).
        action: &'static str,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A configuration file is not valid TOML, or does not match the schema (unknown key,
    /// wrong type, missing key).
    #[error("{}: {field}: {message}", path.display())]
    ConfigSyntax {
        /// The configuration file.
        path: PathBuf,
        /// The dotted path of the offending field (`train.learning_rate`), or `<file>` when the
        /// error is not tied to one field.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },

    /// A configuration value is of the right type but out of range or inconsistent.
    #[error("{source_name}: field `{field}` = {value}: {expected}")]
    ConfigValue {
        /// Where the value came from: the configuration file, or the command-line flag that set it.
        source_name: String,
        /// The dotted path of the field (`model.gamma`).
        field: String,
        /// The value as given.
        value: String,
        /// What was expected.
        expected: String,
    },

    /// A request this build or this model family does not support, with what to do instead.
    #[error("{0}")]
    Unsupported(String),

    /// A device or dtype could not be set up.
    #[error("device `{device}`: {message}")]
    Device {
        /// The device name as given.
        device: String,
        /// What went wrong and what to do about it.
        message: String,
    },

    /// A checkpoint, model record, metrics file or run directory is missing, unreadable or
    /// inconsistent.
    #[error("{}: {message}", path.display())]
    Artifact {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },

    /// The run directory exists and holds files; nothing was written to it.
    #[error(
        "run directory {} already exists and is not empty: nothing was written to it; \
         continue it with `bohp train --resume {}` or choose another --out",
        path.display(),
        path.display()
    )]
    RunDirExists {
        /// The run directory.
        path: PathBuf,
    },

    /// Training produced a non-finite loss or parameter.
    #[error(
        "training diverged at episode {episode}: {what} is not finite; \
         the last good checkpoint ({checkpoint}) is kept in {}",
        run_dir.display()
    )]
    Diverged {
        /// The episode (optimizer update, 0-based) whose loss or update was not finite.
        episode: usize,
        /// What was not finite (`loss`, `parameter alpha`, ...).
        what: String,
        /// A description of the last good checkpoint.
        checkpoint: String,
        /// The run directory.
        run_dir: PathBuf,
    },
}

/// Shorthand for results with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// An [`Error::Artifact`] for `path`.
    pub fn artifact(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Artifact {
            path: path.into(),
            message: message.into(),
        }
    }
}
