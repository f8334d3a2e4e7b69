//! Omniglot (Lake, Salakhutdinov and Tenenbaum 2015): a reader for the data set's own layouts,
//! the one-shot classification runs, the episode sampler of the 2018 paper's few-shot task, and
//! the modified-Hausdorff-distance baseline the data set's authors distribute with the runs.
//!
//! Layouts read, from a zip archive or an unpacked directory:
//! - image sets: `<set>/<alphabet>/<character>/<image>.png` (the set folder optional), e.g.
//!   `images_background_small1.zip`, `images_background.zip`, `images_evaluation.zip`;
//! - the runs: `runNN/class_labels.txt` (lines `runNN/test/itemMM.png runNN/training/classKK.png`),
//!   with `runNN/test/` and `runNN/training/` (`all_runs.zip`).
//!
//! Images are 105 × 105 PNG with 1 = background and 0 = ink; the network sees them resized to
//! [`SIDE`] × [`SIDE`] (31: four 3×3 stride-2 convolutions bring it to 1 × 1) with ink 1 and
//! background 0. A missing file, an archive that is not a zip, or an image that does not decode
//! is an error naming it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};

/// Side of the network's input images.
pub const SIDE: usize = 31;

/// A grey image of [`SIDE`] × [`SIDE`] pixels, row-major, ink 1 and background 0.
pub type Image = Vec<f32>;

/// One drawing of a character.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawing {
    /// Where it was read from (`archive.zip:path/in/archive.png`, or a file path).
    pub source: String,
    /// Resized to [`SIDE`] × [`SIDE`].
    pub pixels: Image,
}

/// A character: its drawings by different people.
#[derive(Debug, Clone, PartialEq)]
pub struct Character {
    /// The alphabet's folder name.
    pub alphabet: String,
    /// The character's folder name (`character01`, ...).
    pub name: String,
    /// Its drawings, in file-name order.
    pub drawings: Vec<Drawing>,
}

/// A set of characters, from one or more image sets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Omniglot {
    /// Characters sorted by alphabet, then name.
    pub characters: Vec<Character>,
}

/// A file inside a zip archive or a directory: its path relative to the root, and a way to read
/// it.
struct Entry {
    /// `/`-separated path relative to the root.
    name: String,
    /// Shown in errors.
    source: String,
    bytes: Vec<u8>,
}

/// Every file under `root` (a zip archive or a directory), sorted by name. macOS resource forks
/// (`__MACOSX/`, `._*`) are skipped.
fn entries(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<Entry>> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, "cannot read", e))?;
    let skip = |name: &str| {
        name.split('/')
            .any(|c| c == "__MACOSX" || c.starts_with("._"))
    };
    let mut out = Vec::new();
    if meta.is_dir() {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let listing = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, "cannot list", e))?;
            for item in listing {
                let item = item.map_err(|e| Error::io(&dir, "cannot list", e))?;
                let path = item.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = path
                    .strip_prefix(root)
                    .expect("under the root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if skip(&name) || !wanted(&name) {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
                out.push(Entry {
                    name,
                    source: path.display().to_string(),
                    bytes,
                });
            }
        }
    } else {
        let file = std::fs::File::open(root).map_err(|e| Error::io(root, "cannot open", e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| {
            Error::artifact(
                root,
                format!("not a readable zip archive ({e}); expected a zip or a directory"),
            )
        })?;
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).map_err(|e| {
                Error::artifact(root, format!("entry {i} of the archive is corrupt: {e}"))
            })?;
            let name = file.name().to_string();
            if file.is_dir() || skip(&name) || !wanted(&name) {
                continue;
            }
            let source = format!("{}:{name}", root.display());
            // (The size is the archive's word: reserve no more than a drawing's worth up front.)
            let mut bytes = Vec::with_capacity(file.size().min(1 << 20) as usize);
            file.read_to_end(&mut bytes).map_err(|e| {
                Error::artifact(&source, format!("cannot be read from the archive: {e}"))
            })?;
            out.push(Entry {
                name,
                source,
                bytes,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The ink mask of a PNG (`true` where the pixel is ink: darker than mid-grey), with its size.
fn decode(bytes: &[u8], source: &str) -> Result<(usize, usize, Vec<bool>)> {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| Error::artifact(source, format!("not a readable PNG image: {e}")))?
        .to_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::artifact(source, "an empty image"));
    }
    Ok((w, h, img.pixels().map(|p| p.0[0] < 128).collect()))
}

/// An ink mask resized to [`SIDE`] × [`SIDE`] (ink 1), by `image`'s triangle filter.
fn resize(w: usize, h: usize, ink: &[bool]) -> Image {
    let img = image::GrayImage::from_raw(
        w as u32,
        h as u32,
        ink.iter().map(|&i| if i { 255 } else { 0 }).collect(),
    )
    .expect("the mask has w·h pixels");
    let small = image::imageops::resize(
        &img,
        SIDE as u32,
        SIDE as u32,
        image::imageops::FilterType::Triangle,
    );
    small.pixels().map(|p| f32::from(p.0[0]) / 255.0).collect()
}

/// The ink pixels' coordinates (row, column), centred on their mean (the modified Hausdorff
/// baseline's representation, as in the data set's demo code).
fn ink_points(w: usize, ink: &[bool]) -> Vec<(f64, f64)> {
    let points: Vec<(f64, f64)> = ink
        .iter()
        .enumerate()
        .filter(|(_, i)| **i)
        .map(|(k, _)| ((k / w) as f64, (k % w) as f64))
        .collect();
    let n = points.len().max(1) as f64;
    let (mr, mc) = points
        .iter()
        .fold((0.0, 0.0), |(r, c), p| (r + p.0 / n, c + p.1 / n));
    points.into_iter().map(|(r, c)| (r - mr, c - mc)).collect()
}

impl Omniglot {
    /// Reads image sets (zip archives or directories, `<set>/<alphabet>/<character>/<image>.png`)
    /// into one set. A character found in several sources with identical drawings (Greek and
    /// Latin are in both minimal sets) is read once; different files under the same name are an
    /// error.
    pub fn open(sources: &[PathBuf]) -> Result<Omniglot> {
        // (alphabet, character) → file name → (its bytes, the drawing).
        type Drawings = BTreeMap<String, (Vec<u8>, Drawing)>;
        let mut map: BTreeMap<(String, String), Drawings> = BTreeMap::new();
        for root in sources {
            let found = entries(root, &|name| name.to_ascii_lowercase().ends_with(".png"))?;
            if found.is_empty() {
                return Err(Error::artifact(
                    root,
                    "holds no images in the layout <alphabet>/<character>/<image>.png",
                ));
            }
            for e in found {
                let parts: Vec<&str> = e.name.split('/').collect();
                if parts.len() < 3 {
                    return Err(Error::artifact(
                        &e.source,
                        "an image outside the layout <alphabet>/<character>/<image>.png",
                    ));
                }
                let n = parts.len();
                let key = (parts[n - 3].to_string(), parts[n - 2].to_string());
                let file = parts[n - 1].to_string();
                let drawings = map.entry(key).or_default();
                if let Some((bytes, first)) = drawings.get(&file) {
                    if *bytes != e.bytes {
                        return Err(Error::artifact(
                            &e.source,
                            format!("differs from {}, read under the same name", first.source),
                        ));
                    }
                    continue;
                }
                let (w, h, ink) = decode(&e.bytes, &e.source)?;
                let drawing = Drawing {
                    source: e.source.clone(),
                    pixels: resize(w, h, &ink),
                };
                drawings.insert(file, (e.bytes, drawing));
            }
        }
        Ok(Omniglot {
            characters: map
                .into_iter()
                .map(|((alphabet, name), drawings)| Character {
                    alphabet,
                    name,
                    drawings: drawings.into_values().map(|(_, d)| d).collect(),
                })
                .collect(),
        })
    }

    /// The alphabets, sorted.
    pub fn alphabets(&self) -> Vec<String> {
        let mut a: Vec<String> = self.characters.iter().map(|c| c.alphabet.clone()).collect();
        a.dedup();
        a
    }

    /// The characters of the alphabets in `held_out`, and the others.
    pub fn split(&self, held_out: &[String]) -> (Omniglot, Omniglot) {
        let (test, train): (Vec<Character>, Vec<Character>) = self
            .characters
            .iter()
            .cloned()
            .partition(|c| held_out.contains(&c.alphabet));
        (
            Omniglot { characters: train },
            Omniglot { characters: test },
        )
    }
}

/// Rotates a [`SIDE`] × [`SIDE`] image by `quarter_turns` × 90° counterclockwise.
pub fn rotate(image: &[f32], quarter_turns: usize) -> Image {
    let mut out = image.to_vec();
    for _ in 0..quarter_turns % 4 {
        let prev = out.clone();
        for r in 0..SIDE {
            for c in 0..SIDE {
                // Counterclockwise: the new (r, c) is the old (c, SIDE − 1 − r).
                out[r * SIDE + c] = prev[c * SIDE + (SIDE - 1 - r)];
            }
        }
    }
    out
}

/// Random affine distortions of each drawing (`task.augment`): every training image, support
/// and query alike, is drawn through its own rotation, scale, shear and shift, each uniform in
/// its range. All zero (the default) leaves the images and the random stream untouched.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Largest rotation, in degrees (default 0).
    #[serde(default)]
    pub rotation: f64,
    /// Largest relative change of scale, along each axis on its own (default 0).
    #[serde(default)]
    pub scale: f64,
    /// Largest shear (the tangent of the shear angle) (default 0).
    #[serde(default)]
    pub shear: f64,
    /// Largest shift along each axis, in pixels of the [`SIDE`] × [`SIDE`] image (default 0).
    #[serde(default)]
    pub shift: f64,
}

impl Augment {
    /// Whether it distorts anything.
    pub(crate) fn is_off(&self) -> bool {
        self.rotation == 0.0 && self.scale == 0.0 && self.shear == 0.0 && self.shift == 0.0
    }

    /// `image` drawn through one random distortion: each output pixel is read (bilinearly, zero
    /// outside) at the inverse image of its position under rotation · shear · scale about the
    /// centre, plus the shift.
    pub fn distort(&self, image: &[f32], rng: &mut impl Rng) -> Image {
        let mut draw = |range: f64| {
            if range > 0.0 {
                rng.random_range(-range..=range)
            } else {
                0.0
            }
        };
        let angle = draw(self.rotation).to_radians();
        let (sx, sy) = (1.0 + draw(self.scale), 1.0 + draw(self.scale));
        let shear = draw(self.shear);
        let (tx, ty) = (draw(self.shift), draw(self.shift));
        // Forward map A = R(angle) · [[1, shear], [0, 1]] · diag(sx, sy), on (x, y) = (column, row).
        let (c, s) = (angle.cos(), angle.sin());
        let a = [
            [c * sx, (c * shear - s) * sy],
            [s * sx, (s * shear + c) * sy],
        ];
        let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
        let inv = [
            [a[1][1] / det, -a[0][1] / det],
            [-a[1][0] / det, a[0][0] / det],
        ];
        let centre = (SIDE as f64 - 1.0) / 2.0;
        let at = |r: isize, c: isize| -> f64 {
            if r < 0 || c < 0 || r >= SIDE as isize || c >= SIDE as isize {
                0.0
            } else {
                f64::from(image[r as usize * SIDE + c as usize])
            }
        };
        let mut out = vec![0.0f32; SIDE * SIDE];
        for row in 0..SIDE {
            for col in 0..SIDE {
                let (x, y) = (col as f64 - centre - tx, row as f64 - centre - ty);
                let xs = inv[0][0] * x + inv[0][1] * y + centre;
                let ys = inv[1][0] * x + inv[1][1] * y + centre;
                let (x0, y0) = (xs.floor(), ys.floor());
                let (fx, fy) = (xs - x0, ys - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let v = (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                    + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
                out[row * SIDE + col] = v as f32;
            }
        }
        out
    }
}

/// An N-way K-shot episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The support images with their labels (0..N), in presentation order.
    pub support: Vec<(Image, usize)>,
    /// The query images with their labels (one in the 2018 setup; `task.queries`).
    pub queries: Vec<(Image, usize)>,
    /// For tests and figures: per label, the character index (into the sampled set), its
    /// rotation (quarter turns), and the drawings used (support first, then the class's
    /// queries in the order of `queries`).
    pub classes: Vec<(usize, usize, Vec<usize>)>,
}

/// Samples an N-way K-shot episode with one query from `set` (the 2018 setup):
/// [`sample_episode_queries`] with one query.
pub fn sample_episode(set: &Omniglot, ways: usize, shots: usize, rng: &mut impl Rng) -> Episode {
    sample_episode_queries(set, ways, shots, 1, rng)
}

/// The drawings each class needs for `shots`-shot episodes with `queries` queries.
pub(crate) fn drawings_needed(ways: usize, shots: usize, queries: usize) -> usize {
    shots + queries.div_ceil(ways)
}

/// Samples an N-way K-shot episode from `set`: `ways` distinct characters labelled in random
/// order, each rotated by its own random multiple of 90° (the 2018 setup), `shots` support
/// drawings each presented in random order, then `queries` queries: other drawings of the
/// classes, never one of the support drawings nor one another. One query takes a class at
/// random; more go round the classes in a random order, so that each class has at most
/// ⌈queries / ways⌉.
pub fn sample_episode_queries(
    set: &Omniglot,
    ways: usize,
    shots: usize,
    queries: usize,
    rng: &mut impl Rng,
) -> Episode {
    let mut picked: Vec<usize> = (0..set.characters.len()).collect();
    picked.shuffle(rng);
    picked.truncate(ways);
    // The label of each query (a single query draws one label, as the 2018 setup).
    let query_labels: Vec<usize> = if queries == 1 {
        vec![rng.random_range(0..ways)]
    } else {
        let mut order: Vec<usize> = (0..ways).collect();
        order.shuffle(rng);
        (0..queries).map(|q| order[q % ways]).collect()
    };
    let mut classes = Vec::with_capacity(ways);
    let mut support = Vec::with_capacity(ways * shots);
    for (label, &ch) in picked.iter().enumerate() {
        let character = &set.characters[ch];
        let turns = rng.random_range(0..4);
        let mut drawings: Vec<usize> = (0..character.drawings.len()).collect();
        drawings.shuffle(rng);
        let take = shots + query_labels.iter().filter(|&&l| l == label).count();
        drawings.truncate(take);
        for &d in &drawings[..shots] {
            support.push((rotate(&character.drawings[d].pixels, turns), label));
        }
        classes.push((ch, turns, drawings));
    }
    let mut next = vec![shots; ways];
    let queries = query_labels
        .iter()
        .map(|&label| {
            let (ch, turns, drawings) = &classes[label];
            let d = drawings[next[label]];
            next[label] += 1;
            (
                rotate(&set.characters[*ch].drawings[d].pixels, *turns),
                label,
            )
        })
        .collect();
    support.shuffle(rng);
    Episode {
        support,
        queries,
        classes,
    }
}

/// Checks that `set` can give `ways`-way `shots`-shot episodes with one query: enough
/// characters, and every character with `shots + 1` drawings.
pub(crate) fn check_episodes(set: &Omniglot, ways: usize, shots: usize, what: &str) -> Result<()> {
    check_episodes_queries(set, ways, shots, 1, what)
}

/// Checks that `set` can give `ways`-way `shots`-shot episodes with `queries` queries: enough
/// characters, and every character with [`drawings_needed`] drawings.
pub(crate) fn check_episodes_queries(
    set: &Omniglot,
    ways: usize,
    shots: usize,
    queries: usize,
    what: &str,
) -> Result<()> {
    let needed = drawings_needed(ways, shots, queries);
    if set.characters.len() < ways {
        return Err(Error::Unsupported(format!(
            "{what}: {} characters, fewer than the {ways} classes of an episode",
            set.characters.len()
        )));
    }
    if let Some(c) = set.characters.iter().find(|c| c.drawings.len() < needed) {
        return Err(Error::Unsupported(format!(
            "{what}: character {}/{} has {} drawings; {shots}-shot episodes with {queries} \
             queries need {needed}",
            c.alphabet,
            c.name,
            c.drawings.len(),
        )));
    }
    Ok(())
}

/// An image of a one-shot run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunImage {
    /// Its path in the runs (`run01/test/item01.png`).
    pub name: String,
    /// Resized to [`SIDE`] × [`SIDE`].
    pub pixels: Image,
    /// Ink pixel coordinates of the original image, centred on their mean.
    pub points: Vec<(f64, f64)>,
}

/// One of Lake et al.'s 20-way one-shot classification runs.
#[derive(Debug, Clone, PartialEq)]
pub struct OneShotRun {
    /// `run01`, ...
    pub name: String,
    /// The training images, one per class, in file-name order.
    pub training: Vec<RunImage>,
    /// The test images with the index of their class in `training`.
    pub test: Vec<(RunImage, usize)>,
}

/// Reads the one-shot runs from `root` (`all_runs.zip` or its unpacked directory): every
/// `runNN/class_labels.txt` and the images its lines name.
pub fn read_runs(root: &Path) -> Result<Vec<OneShotRun>> {
    let found = entries(root, &|name| {
        name.ends_with("class_labels.txt") || name.to_ascii_lowercase().ends_with(".png")
    })?;
    // Paths relative to the folder holding the runs (an archive may nest them in one folder).
    let mut files: BTreeMap<String, &Entry> = BTreeMap::new();
    let mut labels = Vec::new();
    for e in &found {
        if e.name.ends_with("class_labels.txt") {
            labels.push(e);
        }
    }
    if labels.is_empty() {
        return Err(Error::artifact(
            root,
            "holds no runNN/class_labels.txt (expected the one-shot runs' layout)",
        ));
    }
    for e in &found {
        files.insert(e.name.clone(), e);
    }
    let mut runs = Vec::new();
    for label_file in labels {
        let dir = label_file
            .name
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("");
        let base = dir
            .rsplit_once('/')
            .map(|(b, _)| format!("{b}/"))
            .unwrap_or_default();
        let run_name = dir.rsplit('/').next().unwrap_or(dir).to_string();
        let text = String::from_utf8_lossy(&label_file.bytes);
        let mut images: BTreeMap<String, RunImage> = BTreeMap::new();
        let mut load = |name: &str| -> Result<()> {
            if images.contains_key(name) {
                return Ok(());
            }
            let full = format!("{base}{name}");
            let e = files.get(&full).ok_or_else(|| {
                Error::artifact(
                    &label_file.source,
                    format!("names {name}, which is not in {}", root.display()),
                )
            })?;
            let (w, h, ink) = decode(&e.bytes, &e.source)?;
            images.insert(
                name.to_string(),
                RunImage {
                    name: name.to_string(),
                    pixels: resize(w, h, &ink),
                    points: ink_points(w, &ink),
                },
            );
            Ok(())
        };
        let mut pairs = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [test, train] = parts[..] else {
                return Err(Error::artifact(
                    &label_file.source,
                    format!(
                        "line {}: `{line}`: expected `<test image> <training image>`",
                        k + 1
                    ),
                ));
            };
            load(test)?;
            load(train)?;
            pairs.push((test.to_string(), train.to_string()));
        }
        if pairs.is_empty() {
            return Err(Error::artifact(&label_file.source, "lists no images"));
        }
        let mut training: Vec<String> = pairs.iter().map(|(_, t)| t.clone()).collect();
        training.sort();
        training.dedup();
        let index = |t: &str| training.iter().position(|x| x == t).expect("listed");
        runs.push(OneShotRun {
            name: run_name,
            test: pairs
                .iter()
                .map(|(q, t)| (images[q].clone(), index(t)))
                .collect(),
            training: training.iter().map(|t| images[t].clone()).collect(),
        });
    }
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(runs)
}

/// The modified Hausdorff distance (Dubuisson and Jain 1994) between two point sets: the larger
/// of the two mean distances from a point of one set to the nearest point of the other.
pub fn modified_hausdorff(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    let mean_nearest = |x: &[(f64, f64)], y: &[(f64, f64)]| -> f64 {
        if x.is_empty() || y.is_empty() {
            return f64::INFINITY;
        }
        x.iter()
            .map(|p| {
                y.iter()
                    .map(|q| ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt())
                    .fold(f64::INFINITY, f64::min)
            })
            .sum::<f64>()
            / x.len() as f64
    };
    mean_nearest(a, b).max(mean_nearest(b, a))
}

/// The fraction of a run's test images whose nearest training image, by the modified Hausdorff
/// distance between their centred ink points, is of another class.
pub fn hausdorff_error(run: &OneShotRun) -> f64 {
    let wrong = run
        .test
        .iter()
        .filter(|(img, label)| {
            let best = run
                .training
                .iter()
                .enumerate()
                .map(|(k, t)| (k, modified_hausdorff(&img.points, &t.points)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| k);
            best != Some(*label)
        })
        .count();
    wrong as f64 / run.test.len().max(1) as f64
}
