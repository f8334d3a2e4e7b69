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
fn drawing(glyph: u64, drawer: u64) -> Vec<u8> {
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
fn zip_dir(dir: &Path, prefix: &str, zip_path: &Path) {
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

fn bump<const D: usize>(p: &Param<Tensor<D>>, index: usize, delta: f64) -> Param<Tensor<D>> {
    p.clone().map(|t| {
        let (shape, device, grad) = (t.shape(), t.device(), t.is_require_grad());
        let mut v: Vec<f64> = t.into_data().convert::<f64>().try_to_vec().unwrap();
        v[index] += delta;
        Tensor::from_data(TensorData::new(v, shape), &device).set_require_grad(grad)
    })
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec().unwrap()
}

/// The query loss's gradient through the plastic layer (every rule of the library: Oja's, the
/// paper's, Hebb's and the clipped rule) and the convolutional embedding: burn autodiff against
/// central finite differences in f64 (first and last convolution, `w`, `α`, `η`), on a batch of
/// 3-way 2-shot episodes with two queries each.
#[test]
fn few_shot_gradients_equal_finite_differences() {
    for rule in bohp::rules::Rule::ALL {
        few_shot_gradients_for(rule);
    }
}

fn few_shot_gradients_for(rule: bohp::rules::Rule) {
    let tmp = tempfile::tempdir().unwrap();
    let set = Omniglot::open(&[write_set(tmp.path(), "s", 1, 4, 3)]).unwrap();
    let device = init_device(Backend::Flex, Precision::F64)
        .unwrap()
        .autodiff();
    let config = OmniglotModelConfig {
        plastic: true,
        channels: 3,
        outputs: 4,
        init_eta: 0.3,
        init_alpha: 0.7,
        batch_norm: false,
        rule: Some(rule),
        clip: None,
        modulation: Default::default(),
    };
    let mut model = FewShotNet::new(&config, 5, &device);
    model.w = bump(&model.w, 1, 0.2);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let batch = episode_batch(
        std::slice::from_ref(&set),
        3,
        2,
        4,
        2,
        2,
        &Augment::default(),
        &mut rng,
        &device,
    );
    let (loss, _) = model.loss(&batch);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let plain = |m: &FewShotNet| values(m.loss(&batch).0)[0];
    let h = 1e-6;
    let mut checked = 0;
    let check = |name: &str, analytic: f64, plus: f64, minus: f64| {
        let fd = (plus - minus) / (2.0 * h);
        let err = (analytic - fd).abs() / fd.abs().max(1e-4);
        assert!(
            err < 1e-5,
            "{rule} {name}: autodiff {analytic} vs finite differences {fd}"
        );
    };
    for index in [0, 5, 7] {
        let g = values(grads.get::<2>(model.alpha.id).unwrap())[index];
        let (mut p, mut m) = (model.clone(), model.clone());
        p.alpha = bump(&model.alpha, index, h);
        m.alpha = bump(&model.alpha, index, -h);
        check(&format!("alpha[{index}]"), g, plain(&p), plain(&m));
        let g = values(grads.get::<2>(model.w.id).unwrap())[index];
        let (mut p, mut m) = (model.clone(), model.clone());
        p.w = bump(&model.w, index, h);
        m.w = bump(&model.w, index, -h);
        check(&format!("w[{index}]"), g, plain(&p), plain(&m));
        checked += 2;
    }
    let g = values(grads.get::<1>(model.eta.id).unwrap())[0];
    let (mut p, mut m) = (model.clone(), model.clone());
    p.eta = bump(&model.eta, 0, h);
    m.eta = bump(&model.eta, 0, -h);
    check("eta", g, plain(&p), plain(&m));
    for conv in [0, 3] {
        for index in [0, 4] {
            let weight = &model.convs[conv].weight;
            let g = values(grads.get::<4>(weight.id).unwrap())[index];
            let (mut p, mut m) = (model.clone(), model.clone());
            p.convs[conv].weight = bump(weight, index, h);
            m.convs[conv].weight = bump(weight, index, -h);
            check(
                &format!("conv {conv} weight[{index}]"),
                g,
                plain(&p),
                plain(&m),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
}

/// `bohp train` on a tiny Omniglot-layout set (zip) learns 5-way 1-shot episodes of held-out
/// alphabets well above chance (0.2) in 150 updates, the α = 0 control stays near chance, and
/// `bohp eval --omniglot-runs` reports the network, nearest-neighbour and Hausdorff errors.
#[test]
fn a_tiny_training_beats_chance_and_the_control_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "images_background", 4, 8, 4);
    let zip_path = tmp.path().join("background.zip");
    zip_dir(&dir, "images_background", &zip_path);
    let mut accuracy = Vec::new();
    for plastic in [true, false] {
        let config = tmp.path().join(format!("omniglot-{plastic}.toml"));
        std::fs::write(
            &config,
            format!(
                "seed = 1\n[task]\nkind = \"omniglot\"\ndata = [{:?}]\nheld_out = [\"Alphabet3\"]\n\
                 [model]\nplastic = {plastic}\nchannels = 16\noutputs = 8\n\
                 [train]\nepisodes = 150\nbatch = 8\nlearning_rate = 0.003\neval_episodes = 200\ncheckpoint_every = 50\n",
                zip_path
            ),
        )
        .unwrap();
        let run = tmp.path().join(format!("run-{plastic}"));
        assert_success(&run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "-q",
        ]));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        let five = summary["held_out"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["ways"] == 5)
            .unwrap()["accuracy"]
            .as_f64()
            .unwrap();
        accuracy.push(five);
        if plastic {
            // The runs format on the same drawings: the network's error is reported beside
            // nearest neighbour's and the Hausdorff baseline's.
            let runs = tmp.path().join("runs");
            let name = "run01";
            std::fs::create_dir_all(runs.join(name).join("training")).unwrap();
            std::fs::create_dir_all(runs.join(name).join("test")).unwrap();
            let mut labels = String::new();
            for k in 1..=5u64 {
                let glyph = 300 + k - 1;
                std::fs::write(
                    runs.join(format!("{name}/training/class{k:02}.png")),
                    drawing(glyph, 0),
                )
                .unwrap();
                std::fs::write(
                    runs.join(format!("{name}/test/item{k:02}.png")),
                    drawing(glyph, 1),
                )
                .unwrap();
                labels += &format!("{name}/test/item{k:02}.png {name}/training/class{k:02}.png\n");
            }
            std::fs::write(runs.join(name).join("class_labels.txt"), labels).unwrap();
            let out = run_bohp(&[
                "eval",
                run.to_str().unwrap(),
                "--episodes",
                "100",
                "--omniglot-runs",
                runs.to_str().unwrap(),
                "--json",
            ]);
            assert_success(&out);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            eprintln!("runs: {}", report["runs"]);
            for key in [
                "network_error",
                "nearest_neighbour_error",
                "hausdorff_error",
            ] {
                let e = report["runs"][key].as_f64().unwrap();
                assert!((0.0..=0.6).contains(&e), "{key} {e}: {report}");
            }
        }
    }
    let (plastic, control) = (accuracy[0], accuracy[1]);
    eprintln!("5-way held-out accuracy: plastic {plastic}, control {control}");
    assert!(plastic >= 0.6, "plastic 5-way accuracy {plastic}");
    assert!(
        (0.1..=0.32).contains(&control),
        "alpha = 0 control accuracy {control} (chance 0.2)"
    );
}

/// Bad data settings fail before the run directory exists, naming the field or file: an
/// unknown held-out alphabet, within-alphabet episodes no alphabet can fill, a missing set.
#[test]
fn bad_data_settings_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "s", 2, 3, 3);
    for (task, expected) in [
        (
            format!("data = [{dir:?}]\nheld_out = [\"Nope\"]"),
            "task.held_out",
        ),
        (
            format!("data = [{dir:?}]\nways = 4\nwithin_alphabet = true"),
            "task.within_alphabet",
        ),
        (
            format!("data = [{:?}]", tmp.path().join("missing.zip")),
            "missing.zip",
        ),
    ] {
        let config = tmp.path().join("bad.toml");
        std::fs::write(
            &config,
            format!(
                "[task]\nkind = \"omniglot\"\n{task}\n[model]\nchannels = 4\n[train]\nepisodes = 2\nlearning_rate = 0.001\n"
            ),
        )
        .unwrap();
        let run = tmp.path().join("run");
        let out = run_bohp(&[
            "train",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{task}: {stderr}"
        );
        assert!(!run.exists(), "{task}: nothing written");
    }
}

/// `bohp gradcheck` on an Omniglot config (a tiny set written here, f64): the plastic layer's
/// autodiff gradients equal the host reference's, both equal finite differences, the embedding's
/// autodiff gradients equal finite differences of the burn model's loss; a rule's known-wrong
/// derivative fails the check; the dump recomputes: the traces by Oja's rule from the dumped
/// embeddings and labels, the logits from the queries and `w + α ⊙ H`, the loss from the logits.
#[test]
fn gradcheck_checks_an_omniglot_config_and_its_dump_recomputes() {
    use serde_json::Value;
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_set(tmp.path(), "images_background", 2, 6, 4);
    let config = tmp.path().join("omniglot.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 3\n[task]\nkind = \"omniglot\"\ndata = [{:?}]\nways = 3\nshots = 2\nqueries = 2\n\
             [model]\nchannels = 4\noutputs = 5\ninit_eta = 0.3\ninit_alpha = 0.7\nbatch_norm = true\n\
             [train]\nepisodes = 1\nbatch = 2\nlearning_rate = 0.001\n",
            dir
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let file = tmp.path().join("dump.json");
    let stdout = crate::common::gradcheck_passes_with_dump(config, 2, &file);
    assert!(
        stdout.contains("conv3.weight") && stdout.contains("norm0.gamma"),
        "{stdout}"
    );
    crate::common::assert_gradcheck_catches(config, "oja-decay-dropped");
    let out = run_bohp(&["gradcheck", config, "--recursion", "eligibility-first"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("eligibility-first"));

    let d: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(d["schema"], "bohp-gradcheck-dump/5");
    assert_eq!(d["produced_by"]["family"], "few-shot");
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (s, c, o, q) = (6, 4, 5, 2);
    let x = nums(&d["inputs"]["values"]);
    let labels = nums(&d["few_shot"]["support_labels"]["values"]);
    let queries = nums(&d["few_shot"]["queries"]["values"]);
    let mask = nums(&d["few_shot"]["mask"]);
    let targets = nums(&d["few_shot"]["targets"]);
    let (w, alpha, eta) = (
        nums(&d["parameters"]["w"]["values"]),
        nums(&d["parameters"]["alpha"]["values"]),
        nums(&d["parameters"]["eta"]["values"])[0],
    );
    let mut h = vec![0.0; c * o];
    let traces = nums(&d["traces"]["values"]);
    for step in 0..s {
        for i in 0..c {
            for j in 0..o {
                let (pre, post) = (x[step * c + i], labels[step * o + j]);
                h[i * o + j] += eta * post * (pre - h[i * o + j] * post);
                assert!(
                    (h[i * o + j] - traces[(step * c + i) * o + j]).abs() < 1e-13,
                    "H({step})"
                );
            }
        }
    }
    let logits = nums(&d["outputs"]["values"]);
    let mut loss = 0.0;
    for k in 0..q {
        let z: Vec<f64> = (0..o)
            .map(|j| {
                mask[j]
                    + (0..c)
                        .map(|i| {
                            queries[k * c + i] * (w[i * o + j] + alpha[i * o + j] * h[i * o + j])
                        })
                        .sum::<f64>()
            })
            .collect();
        for j in 0..o {
            assert!((z[j] - logits[k * o + j]).abs() < 1e-12, "logit {k} {j}");
        }
        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        loss += (lse - z[targets[k] as usize]) / q as f64;
    }
    let dumped = d["loss"].as_f64().unwrap();
    assert!((loss - dumped).abs() < 1e-12, "{loss} vs {dumped}");
    for method in ["host", "autodiff"] {
        assert!(
            d["gradients"][method]["alpha"]["values"].is_array(),
            "{method}"
        );
    }

    // With a modulator: retroactive modulation passes, its injected fault fails, and the
    // modulator's groups are checked.
    let text = std::fs::read_to_string(config).unwrap().replace(
        "[model]\n",
        "[model]\nmodulation = \"retroactive\"\nclip = 0.05\n",
    );
    let modulated = tmp.path().join("modulated.toml");
    std::fs::write(&modulated, text).unwrap();
    let modulated = modulated.to_str().unwrap();
    let out = run_bohp(&["gradcheck", modulated, "--dtype", "f64"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("w_m") && stdout.contains("retroactive(±0.05)"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::common::assert_gradcheck_catches(modulated, "eligibility-first");
}
