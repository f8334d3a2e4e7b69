//! The export round trip: random tensors (any shape, scalars and empty ones included, any f64
//! or f32 value, NaN and infinities included) encoded in every format and read back by other
//! readers (the `safetensors` crate, the npz reader of `tests/export.rs`, serde_json) hold the
//! same names, shapes and values bit for bit; JSON, which has no NaN, refuses a non-finite
//! value naming the tensor.

use std::collections::BTreeMap;

use bohp::export::{ExportFormat, NamedTensor, encode};
use proptest::prelude::*;

use crate::export::{read_npz, read_safetensors};

/// A tensor of random shape (at most 3 dimensions, at most 24 values) in f32 or f64.
fn tensor() -> impl Strategy<Value = (Vec<usize>, bool, Vec<u64>)> {
    (prop::collection::vec(0usize..4, 0..=3), any::<bool>()).prop_flat_map(|(shape, f64)| {
        let n: usize = shape.iter().product();
        let bits = if f64 {
            prop::collection::vec(any::<u64>(), n).boxed()
        } else {
            prop::collection::vec(
                any::<u32>().prop_map(|b| f32::from_bits(b).to_bits() as u64),
                n,
            )
            .boxed()
        };
        (Just(shape), Just(f64), bits)
    })
}

/// The same value, treating every NaN as one.
fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_format_reads_back_what_was_exported(
        tensors in prop::collection::btree_map("[a-z][a-z0-9_.]{0,10}", tensor(), 1..5),
        finite in any::<bool>(),
    ) {
        let tensors: Vec<NamedTensor> = tensors
            .into_iter()
            .map(|(name, (shape, f64, bits))| {
                let values = bits
                    .into_iter()
                    .map(|b| if f64 { f64::from_bits(b) } else { f32::from_bits(b as u32) as f64 })
                    // Half the cases finite only, so the JSON round trip is exercised.
                    .map(|v| if finite && !v.is_finite() { 0.5 } else { v })
                    .collect();
                NamedTensor { name, shape, values, f64 }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let write = |format: ExportFormat| {
            let path = dir.path().join(format!("model.{}", format.name()));
            encode(&tensors, format, "test", "seed = 1\n", &path)
                .map(|bytes| std::fs::write(&path, bytes).map(|_| path).unwrap())
        };
        let st = read_safetensors(&write(ExportFormat::Safetensors).unwrap());
        let npz = read_npz(&write(ExportFormat::Npz).unwrap());
        for t in &tensors {
            let (shape, values) = &st[&t.name];
            prop_assert_eq!(shape, &t.shape, "safetensors {}", t.name);
            prop_assert!(values.iter().zip(&t.values).all(|(a, b)| same(*a, *b)), "safetensors {}", t.name);
            prop_assert_eq!(values.len(), t.values.len());
            let (shape, values) = &npz[&t.name];
            prop_assert_eq!(shape, &t.shape, "npz {}", t.name);
            prop_assert!(values.iter().zip(&t.values).all(|(a, b)| same(*a, *b)), "npz {}", t.name);
        }
        prop_assert_eq!(st.len(), tensors.len());
        prop_assert_eq!(npz.len(), tensors.len());
        match write(ExportFormat::Json) {
            Ok(path) => {
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
                prop_assert_eq!(&v["config"], "seed = 1\n");
                let read: BTreeMap<String, serde_json::Value> =
                    v["tensors"].as_object().unwrap().clone().into_iter().collect();
                prop_assert_eq!(read.len(), tensors.len());
                for t in &tensors {
                    let shape: Vec<usize> = read[&t.name]["shape"]
                        .as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                    prop_assert_eq!(&shape, &t.shape);
                    let values: Vec<f64> = read[&t.name]["values"]
                        .as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                    prop_assert!(values.iter().zip(&t.values).all(|(a, b)| same(*a, *b)) && values.len() == t.values.len(),
                        "json {}: {:?} vs {:?}", t.name, values, t.values);
                }
            }
            Err(e) => {
                let bad = tensors.iter().find(|t| t.values.iter().any(|v| !v.is_finite()));
                prop_assert!(bad.is_some(), "finite tensors refused: {}", e);
                prop_assert!(e.to_string().contains(&bad.unwrap().name) && e.to_string().contains("model.json"), "{}", e);
            }
        }
    }
}
