//! Grey 32×32 images for the image memorisation task: a built-in generator of natural-looking
//! images, and a reader for the CIFAR-10 binary format.

use std::path::{Path, PathBuf};

use rand::Rng;

use crate::error::{Error, Result};

/// Side of the square images.
pub const SIDE: usize = 32;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Bytes of one CIFAR-10 binary record: a label byte, then 1024 red, 1024 green, 1024 blue.
pub const CIFAR_RECORD: usize = 1 + 3 * PIXELS;

/// A grey image, pixels row-major in `[-1, 1]`.
pub type Image = Vec<f32>;

/// A random natural-looking grey image: a smooth background with a `1/f`-like spectrum
/// (random low-frequency gratings), and one to three occluding objects (ellipses and
/// rectangles) with soft edges and their own shading gradient; contrast and brightness vary.
/// Neighbouring pixels are strongly correlated, as in photographs, and no two draws are alike.
pub fn generate(rng: &mut impl Rng) -> Image {
    let mut img = vec![0.0f64; PIXELS];
    let tau = std::f64::consts::TAU;
    // Background: gratings with amplitude ~ 1/|k|^1.5.
    for _ in 0..10 {
        let kx = rng.random_range(-4i32..=4) as f64;
        let ky = rng.random_range(0i32..=4) as f64;
        let k = (kx * kx + ky * ky).sqrt();
        if k == 0.0 {
            continue;
        }
        let amp = rng.random_range(0.3..1.0) / k.powf(1.5);
        let phase = rng.random_range(0.0..tau);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let arg = tau * (kx * x as f64 + ky * y as f64) / SIDE as f64 + phase;
                img[y * SIDE + x] += amp * arg.cos();
            }
        }
    }
    // Objects: soft-edged shapes, shaded by a linear gradient.
    for _ in 0..rng.random_range(1..=3) {
        let (cx, cy) = (rng.random_range(4.0..28.0), rng.random_range(4.0..28.0));
        let (rx, ry) = (rng.random_range(3.0..12.0), rng.random_range(3.0..12.0));
        let ellipse = rng.random_bool(0.5);
        let level = rng.random_range(-1.2..1.2);
        let (gx, gy) = (rng.random_range(-0.05..0.05), rng.random_range(-0.05..0.05));
        for y in 0..SIDE {
            for x in 0..SIDE {
                let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                // Signed distance-like measure: < 0 inside.
                let d = if ellipse {
                    (dx * dx + dy * dy).sqrt() - 1.0
                } else {
                    dx.abs().max(dy.abs()) - 1.0
                };
                let inside = 1.0 / (1.0 + (d * 8.0).exp());
                let shade = level + gx * (x as f64 - cx) + gy * (y as f64 - cy);
                let p = &mut img[y * SIDE + x];
                *p = (1.0 - inside) * *p + inside * shade;
            }
        }
    }
    // Contrast and brightness: map [min, max] to a random sub-range of [-1, 1].
    let (lo, hi) = img
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1e-9);
    let contrast = rng.random_range(0.6..1.0);
    let centre = rng.random_range(-(1.0 - contrast)..=(1.0 - contrast));
    img.iter()
        .map(|&v| ((v - lo) / span * 2.0 - 1.0) * contrast + centre)
        .map(|v| v as f32)
        .collect()
}

/// Reads CIFAR-10 binary files (`data_batch_*.bin`, `test_batch.bin`): each record is a label
/// byte (0-9) and a 32×32 RGB image as three 1024-byte planes. Images are converted to grey
/// (`0.299 R + 0.587 G + 0.114 B`) and scaled to `[-1, 1]`. `path` is a file, or a directory
/// whose `*.bin` files are read in name order.
pub fn read_cifar10(path: &Path) -> Result<Vec<Image>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, "cannot list CIFAR-10 directory", e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::artifact(
                path,
                "no *.bin files: expected CIFAR-10 binary batches (data_batch_1.bin, ...)",
            ));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut images = Vec::new();
    for file in files {
        let bytes =
            std::fs::read(&file).map_err(|e| Error::io(&file, "cannot read CIFAR-10 file", e))?;
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            return Err(Error::artifact(
                &file,
                format!(
                    "{} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each: a label byte and 3x1024 pixel bytes)",
                    bytes.len()
                ),
            ));
        }
        for (k, record) in bytes.chunks(CIFAR_RECORD).enumerate() {
            if record[0] > 9 {
                return Err(Error::artifact(
                    &file,
                    format!(
                        "record {k}: label byte {} is not a CIFAR-10 class (expected 0-9)",
                        record[0]
                    ),
                ));
            }
            let (r, rest) = record[1..].split_at(PIXELS);
            let (g, b) = rest.split_at(PIXELS);
            images.push(
                (0..PIXELS)
                    .map(|p| {
                        let grey = 0.299 * r[p] as f32 + 0.587 * g[p] as f32 + 0.114 * b[p] as f32;
                        grey / 255.0 * 2.0 - 1.0
                    })
                    .collect(),
            );
        }
    }
    Ok(images)
}

/// Normalises an image as the 2018 code does before an episode: subtracts its mean, then
/// scales it so its largest absolute pixel is 1. Zero-mean images keep the Hebbian traces of
/// different images from sharing one large common component (their mean), which otherwise
/// dominates recall.
pub(crate) fn normalise(img: &mut [f32]) {
    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len().max(1) as f64;
    let peak = img
        .iter()
        .map(|&v| (v as f64 - mean).abs())
        .fold(0.0f64, f64::max);
    let scale = 1.0 / (peak + 1e-8);
    for v in img.iter_mut() {
        *v = ((*v as f64 - mean) * scale) as f32;
    }
}

/// Correlation of horizontally adjacent pixels (a smoothness measure: near 0 for white noise,
/// near 1 for smooth images).
pub fn neighbour_correlation(img: &[f32]) -> f64 {
    let pairs: Vec<(f64, f64)> = (0..SIDE)
        .flat_map(|y| (0..SIDE - 1).map(move |x| (y * SIDE + x, y * SIDE + x + 1)))
        .map(|(a, b)| (img[a] as f64, img[b] as f64))
        .collect();
    let n = pairs.len() as f64;
    let (ma, mb) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (a, b) in pairs {
        sab += (a - ma) * (b - mb);
        saa += (a - ma) * (a - ma);
        sbb += (b - mb) * (b - mb);
    }
    sab / (saa * sbb).sqrt().max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, stream_rng};

    #[test]
    fn generated_images_are_smooth_varied_and_in_range() {
        let images: Vec<Image> = (0..20)
            .map(|k| generate(&mut stream_rng(1, Stream::Train, k)))
            .collect();
        for img in &images {
            assert_eq!(img.len(), PIXELS);
            assert!(
                img.iter().all(|v| (-1.0..=1.0).contains(v)),
                "pixels must lie in [-1, 1]"
            );
            let corr = neighbour_correlation(img);
            assert!(
                corr > 0.8,
                "natural-looking images are smooth: neighbour correlation {corr}"
            );
            let mean = img.iter().sum::<f32>() / PIXELS as f32;
            let var = img.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / PIXELS as f32;
            assert!(var > 0.01, "an image must not be flat (variance {var})");
        }
        // Varied: every pair differs clearly.
        for a in 0..images.len() {
            for b in a + 1..images.len() {
                let d: f32 = images[a]
                    .iter()
                    .zip(&images[b])
                    .map(|(x, y)| (x - y).powi(2))
                    .sum::<f32>()
                    / PIXELS as f32;
                assert!(d > 0.01, "images {a} and {b} are too alike ({d})");
            }
        }
        // White noise, for contrast, has no neighbour correlation.
        let mut rng = stream_rng(2, Stream::Train, 0);
        let noise: Vec<f32> = (0..PIXELS).map(|_| rng.random_range(-1.0..1.0)).collect();
        assert!(neighbour_correlation(&noise).abs() < 0.2);
    }

    #[test]
    fn normalise_centres_and_scales_to_a_unit_peak() {
        let mut img = vec![0.5f32, 0.7, 0.1, 0.3];
        normalise(&mut img);
        // mean 0.4: [0.1, 0.3, -0.3, -0.1] / 0.3
        for (v, want) in img.iter().zip([1.0 / 3.0, 1.0, -1.0, -1.0 / 3.0]) {
            assert!((v - want).abs() < 1e-6, "{img:?}");
        }
        // A flat image (a uniform CIFAR record) becomes zeros, not NaN.
        let mut flat = vec![0.25f32; PIXELS];
        normalise(&mut flat);
        assert!(flat.iter().all(|&v| v == 0.0));
    }
}
