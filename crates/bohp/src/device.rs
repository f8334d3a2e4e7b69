//! The one place where a backend name and a precision become a burn [`Device`].
//!
//! burn fixes a device's default float dtype on its first tensor, once per process: a process
//! trains in one precision per backend. [`init_device`] configures it before any tensor exists
//! and reports a clear error if the device was already set up with another precision.

use std::fmt;

use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A compute backend, chosen at run time with `--device` or the config's `device` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-flex on the CPU (upstream's successor to ndarray): the default, as in the shipped
    /// configs (1.3-1.6× ndarray at batch 16).
    #[default]
    Flex,
    /// burn's wgpu backend (Vulkan, Metal, DX12; Mesa's lavapipe without a GPU). Needs the
    /// `wgpu` cargo feature; f32 only.
    Wgpu,
    /// burn's CUDA backend on the first NVIDIA GPU. Needs the `cuda` cargo feature; f32 only.
    Cuda,
}

impl Backend {
    /// The backends compiled into this build.
    pub fn compiled() -> Vec<Backend> {
        [
            Backend::Ndarray,
            Backend::Flex,
            Backend::Wgpu,
            Backend::Cuda,
        ]
        .into_iter()
        .filter(|b| b.is_compiled())
        .collect()
    }

    /// Whether this build includes the backend (its cargo feature was enabled).
    pub(crate) fn is_compiled(self) -> bool {
        match self {
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Whether the backend runs on a GPU (f32 only, memory on the device).
    pub(crate) fn is_gpu(self) -> bool {
        matches!(self, Backend::Wgpu | Backend::Cuda)
    }

    /// The backend's name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Floating-point precision of parameters and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

/// Creates the (non-autodiff) device for `backend` with `precision` as its default float dtype.
///
/// Call [`Device::autodiff`] on the result to train. Calling this twice with the same arguments
/// is fine; asking for another precision on a device this process already uses is an error. A
/// backend not compiled into this build, a GPU backend in f64, or a GPU backend with no usable
/// adapter or driver is an error that says what to do.
pub fn init_device(backend: Backend, precision: Precision) -> Result<Device> {
    let device_error = |message: String| Error::Device {
        device: backend.to_string(),
        message,
    };
    if !backend.is_compiled() {
        return Err(device_error(format!(
            "this build does not include the {backend} backend: rebuild with `--features {backend}` \
             (e.g. `cargo build --release -p bohp-cli --features {backend}`); compiled in: {}",
            Backend::compiled()
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if backend.is_gpu() && precision != Precision::F32 {
        return Err(device_error(format!(
            "the {backend} backend runs in f32 only (dtype = \"{precision}\"); use dtype f32, or a CPU \
             backend (ndarray, flex) for f64"
        )));
    }
    let mut device = match backend {
        #[allow(deprecated)] // burn-ndarray is deprecated upstream, but our users ask for it.
        #[cfg(feature = "ndarray")]
        Backend::Ndarray => Device::ndarray(),
        #[cfg(feature = "flex")]
        Backend::Flex => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => gpu::wgpu().map_err(device_error)?,
        #[cfg(feature = "cuda")]
        Backend::Cuda => gpu::cuda().map_err(device_error)?,
        #[allow(unreachable_patterns)]
        _ => unreachable!("checked by is_compiled"),
    };
    let wanted = precision.dtype();
    if let Err(err) = device.configure(wanted) {
        let current = device.settings().float_dtype;
        if current != wanted {
            return Err(device_error(format!(
                "cannot use {precision}: this process already uses the device in {current:?} \
                 ({err}); run each precision in its own process"
            )));
        }
    }
    Ok(device)
}

/// GPU device set-up, done once per process, with burn's panics on a missing adapter or
/// driver turned into errors.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu {
    use std::sync::OnceLock;

    use burn::tensor::{Device, Tensor};

    /// Runs `probe`, turning a panic inside burn into its message.
    fn catch(probe: impl FnOnce() -> Device) -> Result<Device, String> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
        std::panic::set_hook(hook);
        result.map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into())
        })
    }

    /// A one-element round trip: fails (panics) if the device cannot run anything.
    fn smoke(device: &Device) {
        let x = Tensor::<1>::from_floats([1.0f32, 2.0], device);
        let sum: f32 = x.sum().into_scalar::<f32>();
        assert!(sum == 3.0, "the device computed 1 + 2 = {sum}");
    }

    /// The default wgpu adapter (a GPU if there is one; lavapipe on a machine without).
    #[cfg(feature = "wgpu")]
    pub fn wgpu() -> Result<Device, String> {
        static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
        DEVICE
            .get_or_init(|| {
                let device = Device::wgpu_options().init().map_err(|e| {
                    format!(
                        "no usable wgpu adapter ({e}); install a Vulkan driver, or on a machine \
                         without a GPU Mesa's lavapipe (`apt-get install mesa-vulkan-drivers`)"
                    )
                })?;
                catch(|| {
                    smoke(&device);
                    device
                })
                .map_err(|e| format!("the wgpu adapter failed a first computation: {e}"))
            })
            .clone()
    }

    /// The first CUDA GPU.
    #[cfg(feature = "cuda")]
    pub fn cuda() -> Result<Device, String> {
        static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
        DEVICE
            .get_or_init(|| {
                catch(|| {
                    let device = Device::cuda(0);
                    smoke(&device);
                    device
                })
                .map_err(|e| {
                    format!(
                        "no usable CUDA device ({e}); this needs an NVIDIA GPU with its driver \
                         (libcuda) and the CUDA runtime installed"
                    )
                })
            })
            .clone()
    }
}

/// Gives `Device::default()` the float dtype `precision`.
///
/// burn 0.22.1's `ModuleOptimizer::load_record` rebuilds optimizer state on `Device::default()`
/// in *that* device's default dtype, not the record's: without this, f64 Adam moments come back
/// as f32 and the next step fails deep inside the backend. Call it before restoring optimizer
/// state.
pub(crate) fn align_default_device(precision: Precision) -> Result<()> {
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
