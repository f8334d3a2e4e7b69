//! A trained run's parameters for use outside Rust: `bohp export RUN_DIR --format
//! safetensors|npz|json`, for every model family.
//!
//! Every format holds the same tensors under the same names, their path in the burn module,
//! shaped as there; a tensor the model holds but does not use (the α of a non-plastic control,
//! a plastic agent's modulator) is left out:
//! - single layer: `plastic.w`, `plastic.alpha` (`[n_in, n_out]`), `plastic.b`, with a
//!   modulator `plastic.w_m` (`[n_out, 1]`), `plastic.b_m` (`[1]`), and for the labelled tasks
//!   `readout.v`, `readout.c`;
//! - recurrent network: `w`, `alpha` (`[N, N]` or `[1, 1]`), `eta` (`[1]`), with a modulator
//!   `w_m`, `b_m`; the LSTM baseline: burn's LSTM names and `readout`;
//! - actor-critic agents (I inputs, N neurons, A actions): `w_in` `[I, N]`, `w` `[N, N]`, `b`
//!   `[N]`, `alpha` `[N, N]`, `eta` `[1]` (plastic, retroactive), `w_pi` `[N, A]`, `b_pi`
//!   `[A]`, `w_v`, `b_v` (the value head), `w_m`, `b_m` (the modulator: simple, retroactive),
//!   `fan_w`, `fan_b` `[N]` (with `model.fanout`). The maze's actions are 0 up (row − 1),
//!   1 right, 2 down, 3 left; the bandit's and the cue task's 0 and 1 are the two arms / the
//!   answers "no" and "yes";
//! - few-shot network: `convs.K.weight` `[C, C_in, 3, 3]`, `convs.K.bias` `[C]` (K = 0…3),
//!   with batch normalization `norms.K.*`, then `w`, `alpha` `[C, outputs]`, `eta` `[1]`, with a
//!   modulator `w_m` `[C, 1]`, `b_m` `[1]`.
//!
//! - `safetensors`: in the run's precision, under the same names (written with the
//!   `safetensors` crate); numpy, PyTorch and the `safetensors` crate read it.
//! - `npz`: numpy's format, one `<name>.npy` per tensor (little-endian f64, C order), stored
//!   uncompressed; `numpy.load` reads it.
//! - `json`: `{"schema": "bohp-export/1", "family", "config" (the run's config.toml),
//!   "tensors": {name: {"shape", "values"}}}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleSnapshot;
use serde::Serialize;

use crate::error::{Error, Result};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ExportFormat {
    /// safetensors, by burn's store.
    Safetensors,
    /// numpy's `.npz`.
    Npz,
    /// JSON.
    Json,
}

impl ExportFormat {
    /// The name on the command line, and the file extension.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Safetensors => "safetensors",
            ExportFormat::Npz => "npz",
            ExportFormat::Json => "json",
        }
    }
}

/// A trained module of any family, for export.
pub struct Trained {
    /// The model's kind, as exports name it (`single-layer`, `recurrent`, `lstm`, ...).
    pub kind: &'static str,
    /// The module.
    pub module: Box<dyn TrainedModule>,
    /// Tensors the module holds but this model does not use (e.g. a non-plastic agent's `α`):
    /// left out of every format.
    pub unused: Vec<&'static str>,
}

/// What export needs of a trained burn module.
pub trait TrainedModule {
    /// The trained tensors, named by their module paths.
    fn tensors(&self) -> Result<Vec<NamedTensor>>;
}

impl<M: burn::module::Module> TrainedModule for M {
    fn tensors(&self) -> Result<Vec<NamedTensor>> {
        tensors_of(self)
    }
}

/// One exported tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedTensor {
    /// Its path in the module.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f64>,
    /// The module's precision (safetensors files keep it).
    #[serde(skip)]
    pub f64: bool,
}

/// The float tensors of `model`, named by their module paths, as f64 values.
pub(crate) fn tensors_of<M: Module>(model: &M) -> Result<Vec<NamedTensor>> {
    model
        .collect(None, None, true)
        .iter()
        .map(|t| {
            let data = burn::store::bridge::to_data(t)
                .map_err(|e| Error::Unsupported(format!("cannot read tensor {}: {e}", t.name)))?;
            let shape = data.shape().to_vec();
            let f64 = data.dtype() == burn::tensor::DType::F64;
            let values = data
                .convert::<f64>()
                .try_to_vec::<f64>()
                .map_err(|e| Error::Unsupported(format!("cannot read tensor {}: {e:?}", t.name)))?;
            Ok(NamedTensor {
                name: t.name.clone(),
                shape,
                values,
                f64,
            })
        })
        .collect()
}

/// The default export file of a run: `<run>/model.<format>`.
pub fn default_path(dir: &Path, format: ExportFormat) -> PathBuf {
    dir.join(format!("model.{}", format.name()))
}

/// Writes `model`, trained in the run in `dir`, to `out` in `format`; the number of tensors.
pub(crate) fn write(model: Trained, dir: &Path, format: ExportFormat, out: &Path) -> Result<usize> {
    let tensors: Vec<NamedTensor> = model
        .module
        .tensors()?
        .into_iter()
        .filter(|t| !model.unused.contains(&t.name.as_str()))
        .collect();
    let config = if format == ExportFormat::Json {
        let config_path = dir.join("config.toml");
        std::fs::read_to_string(&config_path)
            .map_err(|e| Error::io(&config_path, "cannot read", e))?
    } else {
        String::new()
    };
    crate::run::write_atomic(out, &encode(&tensors, format, model.kind, &config, out)?)?;
    Ok(tensors.len())
}

/// The bytes of an export of `tensors` in `format` (`kind` and `config` go into the JSON
/// format's header); `path` is the file they are meant for, named in errors. JSON cannot hold
/// a NaN or an infinity: a tensor holding one is refused, naming it (the other formats keep
/// every value bit for bit).
pub fn encode(
    tensors: &[NamedTensor],
    format: ExportFormat,
    kind: &str,
    config: &str,
    path: &Path,
) -> Result<Vec<u8>> {
    match format {
        ExportFormat::Safetensors => safetensors(tensors, path),
        ExportFormat::Npz => npz(tensors, path),
        ExportFormat::Json => {
            let mut map = serde_json::Map::new();
            for t in tensors {
                if let Some(i) = t.values.iter().position(|v| !v.is_finite()) {
                    return Err(Error::artifact(
                        path,
                        format!(
                            "tensor {} holds {} at index {i}, which JSON cannot represent \
                             (export as npz or safetensors)",
                            t.name, t.values[i]
                        ),
                    ));
                }
                map.insert(
                    t.name.clone(),
                    serde_json::json!({"shape": t.shape, "values": t.values}),
                );
            }
            let json = serde_json::json!({
                "schema": "bohp-export/1",
                "family": kind,
                "config": config,
                "tensors": map,
            });
            Ok(serde_json::to_vec_pretty(&json).expect("JSON of finite numbers"))
        }
    }
}

/// The tensors as a safetensors file, each in its module's precision, under the names the
/// other formats use.
fn safetensors(tensors: &[NamedTensor], path: &Path) -> Result<Vec<u8>> {
    use safetensors::{Dtype, tensor::TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| {
            if t.f64 {
                t.values.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                t.values
                    .iter()
                    .flat_map(|&v| (v as f32).to_le_bytes())
                    .collect()
            }
        })
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let dtype = if t.f64 { Dtype::F64 } else { Dtype::F32 };
            TensorView::new(dtype, t.shape.clone(), b)
                .map(|view| (t.name.clone(), view))
                .map_err(|e| Error::artifact(path, format!("cannot write tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None)
        .map_err(|e| Error::artifact(path, format!("cannot write safetensors: {e}")))
}

/// One `.npy` (format 1.0): magic, header dict padded to 64 bytes, little-endian f64 values.
fn npy(t: &NamedTensor) -> Vec<u8> {
    let shape = match t.shape.len() {
        1 => format!("({},)", t.shape[0]),
        _ => format!(
            "({})",
            t.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &t.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn npz(tensors: &[NamedTensor], path: &Path) -> Result<Vec<u8>> {
    let fail = |e: &dyn std::fmt::Display| Error::artifact(path, format!("cannot write npz: {e}"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for t in tensors {
        zip.start_file(format!("{}.npy", t.name), options)
            .map_err(|e| fail(&e))?;
        zip.write_all(&npy(t)).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_are_aligned_and_say_the_shape() {
        let t = NamedTensor {
            name: "w".into(),
            shape: vec![2, 3],
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            f64: true,
        };
        let bytes = npy(&t);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(
            header.contains("'shape': (2, 3)") && header.ends_with('\n'),
            "{header}"
        );
        assert_eq!(bytes.len(), 10 + len + 6 * 8);
        assert_eq!(
            f64::from_le_bytes(bytes[10 + len + 8..10 + len + 16].try_into().unwrap()),
            2.0
        );
        let one = NamedTensor {
            name: "eta".into(),
            shape: vec![1],
            values: vec![0.5],
            f64: false,
        };
        assert!(String::from_utf8_lossy(&npy(&one)).contains("'shape': (1,)"));
    }
}
