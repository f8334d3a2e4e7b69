//! The one place where a backend name and a precision become a burn [`Device`].
//!
//! burn fixes a device's default float dtype on its first tensor, once per process: a process
//! trains in one precision per backend. [`init_device`] configures it before any tensor exists
//! and reports a clear error if the device was already set up with another precision.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A compute backend, chosen at run time with `--device` or the config's `device` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-ndarray on the CPU.
    #[default]
    Ndarray,
    /// burn-flex on the CPU (upstream's successor to ndarray).
    Flex,
}

impl Backend {
    /// Every backend name the parser accepts, for error messages and `--help`.
    pub const NAMES: &'static [&'static str] = &["ndarray", "flex"];

    /// The backend's name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "ndarray" => Ok(Backend::Ndarray),
            "flex" => Ok(Backend::Flex),
            other => Err(format!(
                "unknown device `{other}`: expected one of {}",
                Backend::NAMES.join(", ")
            )),
        }
    }
}

/// Floating-point precision of parameters and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

impl Precision {
    /// The burn dtype for this precision.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F64 => FloatDType::F64,
        }
    }

    /// The name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            other => Err(format!("unknown dtype `{other}`: expected f32 or f64")),
        }
    }
}

/// Creates the (non-autodiff) device for `backend` with `precision` as its default float dtype.
///
/// Call [`Device::autodiff`] on the result to train. Calling this twice with the same arguments
/// is fine; asking for another precision on a device this process already uses is an error.
pub fn init_device(backend: Backend, precision: Precision) -> Result<Device> {
    #[allow(deprecated)] // burn-ndarray is deprecated upstream, but our users ask for it.
    let mut device = match backend {
        Backend::Ndarray => Device::ndarray(),
        Backend::Flex => Device::flex(),
    };
    let wanted = precision.dtype();
    if let Err(err) = device.configure(wanted) {
        let current = device.settings().float_dtype;
        if current != wanted {
            return Err(Error::Device {
                device: backend.to_string(),
                message: format!(
                    "cannot use {precision}: this process already uses the device in {current:?} \
                     ({err}); run each precision in its own process"
                ),
            });
        }
    }
    Ok(device)
}

/// Gives `Device::default()` the float dtype `precision`.
///
/// burn 0.22.1's `ModuleOptimizer::load_record` rebuilds optimizer state on `Device::default()`
/// in *that* device's default dtype, not the record's: without this, f64 Adam moments come back
/// as f32 and the next step fails deep inside the backend. Call it before restoring optimizer
/// state.
pub fn align_default_device(precision: Precision) -> Result<()> {
    let mut device = Device::default();
    let wanted = precision.dtype();
    if device.configure(wanted).is_err() && device.settings().float_dtype != wanted {
        return Err(Error::Device {
            device: format!("{device:?}"),
            message: format!(
                "cannot restore {precision} optimizer state: burn loads it on its default device, \
                 which this process already uses in {:?}; resume in a fresh process",
                device.settings().float_dtype
            ),
        });
    }
    Ok(())
}
