//! Omniglot: the reader (zips and directories, corrupt and missing files), the runs format, the
//! episode sampler, the modified Hausdorff distance, the plastic layer's gradients through the
//! convolutional embedding, and a tiny training that beats chance, all on small data the tests
//! write themselves into temporary directories (no data set is needed).

use std::io::Write;
use std::path::{Path, PathBuf};

use bohp::device::{Backend, Precision, init_device};
use bohp::omniglot::config::OmniglotModelConfig;
use bohp::omniglot::model::FewShotNet;
use bohp::omniglot::train::episode_batch;
use bohp::omniglot::{
    Augment, Omniglot, SIDE, hausdorff_error, modified_hausdorff, read_runs, rotate,
    sample_episode, sample_episode_queries,
};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{assert_success, run_bohp};

/// A 105×105 PNG (8-bit grey, white background, black ink) of character `glyph` drawn by
/// drawer `drawer`: the glyph's strokes (a few lines fixed by the glyph) shifted by a small
/// per-drawer jitter.
pub(crate) fn drawing(glyph: u64, drawer: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(glyph);
    let strokes: Vec<(f64, f64, f64, f64)> = (0..3)
        .map(|_| {
            (
                rng.random_range(20.0..85.0),
                rng.random_range(20.0..85.0),
                rng.random_range(20.0..85.0),
                rng.random_range(20.0..85.0),
            )
        })
        .collect();
    let mut jitter = ChaCha8Rng::seed_from_u64(1000 + glyph * 31 + drawer);
    let (dx, dy) = (
        jitter.random_range(-3.0..3.0),
        jitter.random_range(-3.0..3.0),
    );
    let mut pixels = vec![255u8; 105 * 105];
    for (x0, y0, x1, y1) in strokes {
        for k in 0..=200 {
            let t = k as f64 / 200.0;
            let (x, y) = (x0 + t * (x1 - x0) + dx, y0 + t * (y1 - y0) + dy);
            for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1), (-1, 0), (0, -1)] {
                let (px, py) = (x as i64 + ox, y as i64 + oy);
                if (0..105).contains(&px) && (0..105).contains(&py) {
                    pixels[(py * 105 + px) as usize] = 0;
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 105, 105);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    out
}

/// Writes `<root>/<set>/<alphabet>/characterNN/<id>_<drawer>.png` for `alphabets` alphabets of
/// `characters` characters and `drawers` drawings each; returns the set's directory.
pub(crate) fn write_set(
    root: &Path,
    set: &str,
    alphabets: usize,
    characters: usize,
    drawers: usize,
) -> PathBuf {
    let dir = root.join(set);
    for a in 0..alphabets {
        for c in 0..characters {
            let path = dir
                .join(format!("Alphabet{a}"))
                .join(format!("character{:02}", c + 1));
            std::fs::create_dir_all(&path).unwrap();
            for d in 0..drawers {
                let glyph = (a * 100 + c) as u64;
                std::fs::write(
                    path.join(format!("{:04}_{:02}.png", glyph, d + 1)),
                    drawing(glyph, d as u64),
                )
                .unwrap();
            }
        }
    }
    dir
}

/// Zips the directory `dir` (its entries under `prefix/`) into `zip_path`.
pub(crate) fn zip_dir(dir: &Path, prefix: &str, zip_path: &Path) {
    let file = std::fs::File::create(zip_path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let rel = p
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        zip.start_file(format!("{prefix}/{rel}"), options).unwrap();
        zip.write_all(&std::fs::read(&p).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

/// The reader takes a directory and a zip of the same set to the same characters; a union with
/// identical duplicates reads them once; corrupt and missing files, and a file that is not a
/// zip, are errors naming them.
#[test]
fn the_reader_reads_zips_and_directories_and_names_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "images_background", 2, 3, 4);
    let zip_path = tmp.path().join("images_background.zip");
    zip_dir(&dir, "images_background", &zip_path);
    let from_dir = Omniglot::open(std::slice::from_ref(&dir)).unwrap();
    let from_zip = Omniglot::open(std::slice::from_ref(&zip_path)).unwrap();
    assert_eq!(from_dir.characters.len(), 6);
    assert_eq!(from_dir.alphabets(), vec!["Alphabet0", "Alphabet1"]);
    assert!(from_dir.characters.iter().all(|c| c.drawings.len() == 4));
    for (a, b) in from_dir.characters.iter().zip(&from_zip.characters) {
        assert_eq!((&a.alphabet, &a.name), (&b.alphabet, &b.name));
        for (x, y) in a.drawings.iter().zip(&b.drawings) {
            assert_eq!(
                x.pixels, y.pixels,
                "the same pixels from the zip and the directory"
            );
        }
    }
    // Resized to SIDE × SIDE, ink 1: some ink, mostly background.
    let px = &from_dir.characters[0].drawings[0].pixels;
    assert_eq!(px.len(), SIDE * SIDE);
    let ink: f32 = px.iter().sum::<f32>() / px.len() as f32;
    assert!(ink > 0.02 && ink < 0.5, "ink fraction {ink}");
    // Both sources together: identical files are read once.
    let both = Omniglot::open(&[dir.clone(), zip_path.clone()]).unwrap();
    assert_eq!(both.characters.len(), 6);
    assert!(both.characters.iter().all(|c| c.drawings.len() == 4));

    // A corrupt image, in the directory and in a zip: named.
    let bad = dir.join("Alphabet1/character02/0101_03.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = Omniglot::open(std::slice::from_ref(&dir))
        .unwrap_err()
        .to_string();
    assert!(err.contains("0101_03.png") && err.contains("PNG"), "{err}");
    let bad_zip = tmp.path().join("bad.zip");
    zip_dir(&dir, "images_background", &bad_zip);
    let err = Omniglot::open(&[bad_zip]).unwrap_err().to_string();
    assert!(
        err.contains("bad.zip") && err.contains("0101_03.png"),
        "{err}"
    );
    // A missing source, a file that is not a zip, a directory without images.
    let err = Omniglot::open(&[tmp.path().join("nowhere.zip")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("nowhere.zip"), "{err}");
    let not_zip = tmp.path().join("not.zip");
    std::fs::write(&not_zip, b"plain text").unwrap();
    let err = Omniglot::open(&[not_zip]).unwrap_err().to_string();
    assert!(err.contains("not.zip") && err.contains("zip"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = Omniglot::open(&[empty]).unwrap_err().to_string();
    assert!(err.contains("empty") && err.contains("no images"), "{err}");
}

/// The runs format: `runNN/class_labels.txt` pairs test images with training images; the
/// reader finds every run in a zip, maps each test image to its class, and names a listed
/// image that is missing. The modified Hausdorff distance is 0 between identical point sets
/// and symmetric, and the baseline classifies undistorted copies perfectly.
#[test]
fn the_runs_format_is_read_and_the_hausdorff_baseline_works() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("all_runs");
    for run in 1..=2 {
        let name = format!("run{run:02}");
        std::fs::create_dir_all(root.join(&name).join("training")).unwrap();
        std::fs::create_dir_all(root.join(&name).join("test")).unwrap();
        let mut labels = String::new();
        for k in 1..=4u64 {
            std::fs::write(
                root.join(&name).join(format!("training/class{k:02}.png")),
                drawing(run * 10 + k, 0),
            )
            .unwrap();
            // Test item k shows class 5 − k, drawn by the same person: an exact copy.
            let class = 5 - k;
            std::fs::write(
                root.join(&name).join(format!("test/item{k:02}.png")),
                drawing(run * 10 + class, 0),
            )
            .unwrap();
            labels += &format!("{name}/test/item{k:02}.png {name}/training/class{class:02}.png\n");
        }
        std::fs::write(root.join(&name).join("class_labels.txt"), labels).unwrap();
    }
    let zip_path = tmp.path().join("all_runs.zip");
    zip_dir(&root, "all_runs", &zip_path);
    for source in [root.clone(), zip_path] {
        let runs = read_runs(&source).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].name, "run01");
        assert_eq!(runs[0].training.len(), 4);
        let labels: Vec<usize> = runs[0].test.iter().map(|(_, l)| *l).collect();
        assert_eq!(labels, vec![3, 2, 1, 0], "item k is class 5 − k");
        assert_eq!(hausdorff_error(&runs[0]), 0.0);
        let (a, b) = (&runs[0].training[0].points, &runs[0].training[1].points);
        assert_eq!(modified_hausdorff(a, a), 0.0);
        let d = modified_hausdorff(a, b);
        assert!(
            d > 1.0 && (d - modified_hausdorff(b, a)).abs() < 1e-12,
            "{d}"
        );
    }
    std::fs::remove_file(root.join("run02/test/item03.png")).unwrap();
    let err = read_runs(&root).unwrap_err().to_string();
    assert!(
        err.contains("class_labels.txt") && err.contains("run02/test/item03.png"),
        "{err}"
    );
    let err = read_runs(tmp.path().join("all_runs/run01/training").as_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("class_labels.txt"), "{err}");
}

/// Episodes: N distinct characters, labels 0..N each with K support images, one rotation per
/// class (the support and query images are the class's drawings rotated by it), and the query
/// never one of its class's support drawings.
#[test]
fn the_episode_sampler_draws_distinct_classes_rotations_and_no_leak() {
    let tmp = tempfile::tempdir().unwrap();
    let set = Omniglot::open(&[write_set(tmp.path(), "s", 2, 5, 4)]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut rotations = [0usize; 4];
    for i in 0..200 {
        let (ways, shots) = (5, 2);
        // One query (the 2018 setup), or several (`task.queries`): 7 go twice round 2 classes.
        let queries = [1, 7][i % 2];
        let e = if queries == 1 {
            sample_episode(&set, ways, shots, &mut rng)
        } else {
            sample_episode_queries(&set, ways, shots, queries, &mut rng)
        };
        assert_eq!(e.queries.len(), queries);
        assert_eq!(e.support.len(), ways * shots);
        let mut chars: Vec<usize> = e.classes.iter().map(|c| c.0).collect();
        chars.sort();
        chars.dedup();
        assert_eq!(chars.len(), ways, "distinct characters");
        for label in 0..ways {
            assert_eq!(e.support.iter().filter(|(_, l)| *l == label).count(), shots);
        }
        let mut per_class = vec![0usize; ways];
        for (image, label) in &e.queries {
            let (ch, turns, drawings) = &e.classes[*label];
            per_class[*label] += 1;
            let query_drawing = drawings[shots + per_class[*label] - 1];
            assert!(!drawings[..shots].contains(&query_drawing), "no leak");
            assert_eq!(
                *image,
                rotate(&set.characters[*ch].drawings[query_drawing].pixels, *turns)
            );
        }
        for (label, (_, _, drawings)) in e.classes.iter().enumerate() {
            assert_eq!(drawings.len(), shots + per_class[label]);
            let mut distinct = drawings.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                drawings.len(),
                "queries are distinct drawings"
            );
            assert!(per_class[label] <= queries.div_ceil(ways));
        }
        for (label, (ch, turns, drawings)) in e.classes.iter().enumerate() {
            rotations[*turns] += 1;
            for &d in &drawings[..shots] {
                let img = rotate(&set.characters[*ch].drawings[d].pixels, *turns);
                assert!(
                    e.support.iter().any(|(s, l)| *l == label && *s == img),
                    "support image of class {label}"
                );
            }
        }
    }
    assert!(rotations.iter().all(|&r| r > 150), "{rotations:?}");
    // Four quarter turns are the identity; one is not.
    let img = &set.characters[0].drawings[0].pixels;
    assert_eq!(&rotate(img, 4), img);
    assert_ne!(&rotate(img, 1), img);
}

/// The ink mass and centroid (row, column) of an image.
fn mass_centroid(img: &[f32]) -> (f64, f64, f64) {
    let (mut m, mut r, mut c) = (0.0, 0.0, 0.0);
    for (k, &v) in img.iter().enumerate() {
        let v = f64::from(v);
        m += v;
        r += v * (k / SIDE) as f64;
        c += v * (k % SIDE) as f64;
    }
    (m, r / m, c / m)
}

#[test]
fn augmentation_distorts_within_its_ranges() {
    // A 7 × 11 blob centred in the image: far from the border, so no ink leaves it.
    let mut img = vec![0.0f32; SIDE * SIDE];
    for r in 12..19 {
        for c in 10..21 {
            img[r * SIDE + c] = 1.0;
        }
    }
    let (m0, r0, c0) = mass_centroid(&img);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // Vanishing ranges: the identity (the sampling grid and the centre are right).
    let tiny = Augment {
        rotation: 1e-9,
        scale: 1e-9,
        shear: 1e-9,
        shift: 1e-9,
    };
    let same = tiny.distort(&img, &mut rng);
    let worst = same
        .iter()
        .zip(&img)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{worst}");
    // A shift moves the centroid by at most the shift along each axis, and keeps the ink.
    let shift = Augment {
        shift: 3.0,
        ..Augment::default()
    };
    let mut moved = 0;
    for _ in 0..50 {
        let (m, r, c) = mass_centroid(&shift.distort(&img, &mut rng));
        assert!((m - m0).abs() < 1e-3 * m0, "{m} vs {m0}");
        assert!((r - r0).abs() <= 3.0 + 1e-6 && (c - c0).abs() <= 3.0 + 1e-6);
        moved += usize::from((r - r0).abs() > 0.5 || (c - c0).abs() > 0.5);
    }
    assert!(
        moved > 25,
        "{moved} of 50 shifted by more than half a pixel"
    );
    // A rotation about the centre keeps a centred blob's centroid and, up to interpolation, its
    // ink; a 90-degree turn of this wide blob makes it tall.
    let turn = Augment {
        rotation: 90.0,
        ..Augment::default()
    };
    let mut tall = 0;
    for _ in 0..50 {
        let out = turn.distort(&img, &mut rng);
        let (m, r, c) = mass_centroid(&out);
        assert!((m - m0).abs() < 0.05 * m0, "{m} vs {m0}");
        assert!((r - 15.0).abs() < 0.5 && (c - 15.0).abs() < 0.5 && (r0, c0) == (15.0, 15.0));
        let rows = (0..SIDE)
            .filter(|r| (0..SIDE).any(|c| out[r * SIDE + c] > 0.5))
            .count();
        tall += usize::from(rows > 9);
    }
    assert!(
        (5..45).contains(&tall),
        "{tall} of 50 turned taller than wide"
    );
    // Scale: the ink mass follows the area (sx · sy within [0.8², 1.2²]).
    let scale = Augment {
        scale: 0.2,
        ..Augment::default()
    };
    for _ in 0..50 {
        let (m, _, _) = mass_centroid(&scale.distort(&img, &mut rng));
        assert!(m > 0.6 * m0 && m < 1.5 * m0, "{m} vs {m0}");
    }
}

mod training;
