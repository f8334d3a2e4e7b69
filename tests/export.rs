//! `bohp export`: a trained run's parameters in each format, read back by other readers (the
//! `safetensors` crate, a zip reader and an npy parser written here, serde_json), for a
//! single-layer, a recurrent and an LSTM run; and `bohp inspect` on the recurrent runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::common::{final_parameters, run_bohp, shipped_config_path};

/// name -> (shape, values)
pub(crate) type Tensors = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

fn export(run: &Path, format: &str) -> std::path::PathBuf {
    let out = run.join(format!("export.{format}"));
    let o = run_bohp(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{format}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tensors to"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    out
}

pub(crate) fn read_safetensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let values = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                safetensors::Dtype::F64 => data
                    .chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

pub(crate) fn read_npz(path: &Path) -> Tensors {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Tensors::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let name = file.name().strip_suffix(".npy").unwrap().to_string();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(
            header.contains("'descr': '<f8'") && header.contains("'fortran_order': False"),
            "{header}"
        );
        let dims = header
            .split("'shape': (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let shape: Vec<usize> = dims
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().unwrap())
            .collect();
        let values: Vec<f64> = bytes[10 + len..]
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        out.insert(name, (shape, values));
    }
    out
}

fn read_json(path: &Path) -> (Value, Tensors) {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(v["schema"], "bohp-export/1");
    let tensors = v["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let values = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (name.clone(), (shape, values))
        })
        .collect();
    (v, tensors)
}

/// Trains the shipped `config` for `episodes` updates into `run`, then [`check_run`]s it.
fn train_and_check(
    config: &str,
    episodes: usize,
    run: &Path,
    family: &str,
    expected: &[(&str, Vec<usize>)],
) -> Tensors {
    let o = run_bohp(&[
        "train",
        shipped_config_path(config).to_str().unwrap(),
        "--episodes",
        &episodes.to_string(),
        "--out",
        run.to_str().unwrap(),
        "-q",
    ]);
    crate::common::assert_success(&o);
    let expected: Vec<(&str, &[usize])> =
        expected.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    check_run(run, family, &expected)
}

/// The three formats of one run agree with each other (safetensors in the run's f32, the
/// others in f64) and hold `expected` names and shapes.
fn check_run(run: &Path, family: &str, expected: &[(&str, &[usize])]) -> Tensors {
    let st = read_safetensors(&export(run, "safetensors"));
    let npz = read_npz(&export(run, "npz"));
    let (json, js) = read_json(&export(run, "json"));
    assert_eq!(json["family"], family);
    assert!(json["config"].as_str().unwrap().contains("[task]"));
    for (name, shape) in expected {
        for (what, t) in [("safetensors", &st), ("npz", &npz), ("json", &js)] {
            let (s, _) = t
                .get(*name)
                .unwrap_or_else(|| panic!("{what}: no tensor {name} in {:?}", t.keys()));
            assert_eq!(s, shape, "{what} {name}");
        }
    }
    assert_eq!(st.keys().collect::<Vec<_>>(), js.keys().collect::<Vec<_>>());
    for (name, (_, values)) in &js {
        // (serde_json's float parsing may be one unit in the last place off.)
        assert!(
            npz[name]
                .1
                .iter()
                .zip(values)
                .all(|(a, b)| (a - b).abs() <= 4.0 * f64::EPSILON * a.abs()),
            "npz {name}"
        );
        let f32_values = &st[name].1;
        assert!(
            values
                .iter()
                .zip(f32_values)
                .all(|(a, b)| (a - b).abs() <= 1e-6 * a.abs().max(1.0)),
            "safetensors {name}"
        );
    }
    // Nothing is overwritten.
    let o = run_bohp(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "json",
        "--out",
        run.join("export.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    js
}

#[test]
fn every_family_exports_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    // Single layer: the exported values are the run's final parameters.
    let layer = |n_out: usize| {
        vec![
            ("plastic.w", vec![10, n_out]),
            ("plastic.alpha", vec![10, n_out]),
            ("plastic.b", vec![n_out]),
        ]
    };
    let readout = |n_out: usize| vec![("readout.v", vec![n_out, 2]), ("readout.c", vec![2])];
    let modulated = [
        layer(4),
        vec![("plastic.w_m", vec![4, 1]), ("plastic.b_m", vec![1])],
        readout(4),
    ]
    .concat();
    for (config, expected) in [
        ("one-shot", [layer(2), readout(2)].concat()),
        ("reversal-nonnegative-modulated", modulated),
    ] {
        let run = dir.path().join(config);
        let js = train_and_check(config, 20, &run, "single-layer", &expected);
        if config != "one-shot" {
            // `bohp inspect` reports the modulator: the exported w_M, and M(t) at every step.
            let o = run_bohp(&["inspect", run.to_str().unwrap(), "--json"]);
            crate::common::assert_success(&o);
            let s: Value = serde_json::from_slice(&o.stdout).unwrap();
            let m = &s["modulator"];
            assert_eq!(m["kind"], "simple", "{s}");
            assert_eq!(m["mean_by_step"].as_array().unwrap().len(), 20, "{s}");
            let w_m: Vec<f64> = m["w_m"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(w_m, js["plastic.w_m"].1, "{s}");
            let negative = m["negative_fraction"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&negative), "{s}");
        }
        for (name, values) in final_parameters(&run) {
            let exported = &js[&format!(
                "{}{name}",
                if name.starts_with("readout") {
                    ""
                } else {
                    "plastic."
                }
            )]
                .1;
            assert!(
                exported.len() == values.len()
                    && exported
                        .iter()
                        .zip(&values)
                        .all(|(a, b)| (a - b).abs() < 1e-12),
                "{name}"
            );
        }
    }
    // Recurrent, plastic and LSTM.
    for (config, family, expected) in [
        (
            "memorisation-50",
            "recurrent",
            vec![
                ("w", vec![50, 50]),
                ("alpha", vec![50, 50]),
                ("eta", vec![1]),
            ],
        ),
        (
            "memorisation-50-retroactive",
            "recurrent",
            vec![
                ("w", vec![50, 50]),
                ("alpha", vec![50, 50]),
                ("eta", vec![1]),
                ("w_m", vec![50, 1]),
                ("b_m", vec![1]),
            ],
        ),
        (
            "memorisation-50-lstm",
            "lstm",
            vec![("readout.weight", vec![16, 50])],
        ),
    ] {
        let run = dir.path().join(config);
        let tensors = train_and_check(config, 3, &run, family, &expected);
        // `bohp inspect` reads the same trained parameters (recurrent), or says why not (LSTM).
        let o = run_bohp(&["inspect", run.to_str().unwrap(), "--json"]);
        if family == "lstm" {
            assert_eq!(o.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("LSTM"),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            continue;
        }
        crate::common::assert_success(&o);
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        let eta = tensors["eta"].1[0];
        assert!(
            (s["eta"].as_f64().unwrap() - eta).abs() < 1e-12 * eta.abs().max(1.0),
            "{s}"
        );
        let alpha = &tensors["alpha"].1;
        let negative = alpha.iter().filter(|a| **a < 0.0).count() as f64 / alpha.len() as f64;
        assert_eq!(s["alpha_negative_fraction"].as_f64().unwrap(), negative);
        let w = &tensors["w"].1;
        let w_mean = w.iter().map(|x| x.abs()).sum::<f64>() / w.len() as f64;
        assert!(
            (s["w_mean_abs"].as_f64().unwrap() - w_mean).abs() < 1e-9 * w_mean,
            "{s}"
        );
        assert!(
            s["plastic_mean_abs"].as_f64().unwrap() > 0.0,
            "the probe reads a non-zero trace: {s}"
        );
        let png = std::fs::read(run.join("inspect/weights.png")).unwrap();
        let info = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap()
            .info()
            .clone();
        assert_eq!(
            (info.width, info.height),
            (1280, 490),
            "three 400-pixel panels"
        );
    }
    // Actor-critic agents: one name per tensor in every format (check_run compares the three),
    // and no tensor the kind does not use.
    for (config, names) in [
        (
            "maze-small-hebb",
            &[
                "alpha", "b", "b_pi", "b_v", "eta", "w", "w_in", "w_pi", "w_v",
            ][..],
        ),
        (
            "bandit",
            &[
                "alpha", "b", "b_m", "b_pi", "b_v", "eta", "w", "w_in", "w_m", "w_pi", "w_v",
            ][..],
        ),
    ] {
        let run = dir.path().join(config);
        let tensors = train_and_check(config, 2, &run, "actor-critic", &[]);
        let mut got: Vec<&str> = tensors.keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, names, "{config}");
    }
    // Exports are ordinary files: the same permissions as any file written here (the umask's).
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    for format in ["safetensors", "npz", "json"] {
        let file = dir.path().join("bandit").join(format!("export.{format}"));
        assert_eq!(mode(&file), mode(&plain), "{format}");
    }
    // An unfinished or missing run is named.
    let o = run_bohp(&["export", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing"));
    let run = dir.path().join("one-shot");
    let o = run_bohp(&["export", run.to_str().unwrap(), "--format", "onnx"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("invalid value 'onnx' for '--format")
            && stderr.contains("possible values: safetensors, npz, json"),
        "{stderr}"
    );
}
