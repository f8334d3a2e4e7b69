//! The data readers: Omniglot image sets (directory and zip), Lake's one-shot runs, CIFAR-10.
//! A damaged file is either named in the error or, where the damage leaves a valid file (a
//! removed drawing, a truncated labels file that ends at a line), read to exactly what it now
//! holds: an image never decodes to other pixels than the undamaged file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bohp::omniglot::{Omniglot, read_runs};
use bohp::recurrent::images::{CIFAR_RECORD, PIXELS, read_cifar10};
use proptest::prelude::*;

use super::{Damage, damage};
use crate::omniglot::{drawing, write_set, zip_dir};

/// Every file under `dir`, by its `/`-separated path relative to `dir`.
fn files(dir: &Path) -> BTreeMap<String, PathBuf> {
    crate::common::snapshot(dir)
        .into_iter()
        .map(|(p, _)| {
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, p)
        })
        .collect()
}

/// The pixels of every drawing of `set`, by the drawing's path below `root` (`source` holds the
/// directory's path, or `archive.zip:` and the entry's name).
fn pixels_by_name(set: &Omniglot, root: &str) -> BTreeMap<String, Vec<f32>> {
    set.characters
        .iter()
        .flat_map(|c| &c.drawings)
        .map(|d| {
            let name = d
                .source
                .split_once(root)
                .map_or(&*d.source, |(_, rest)| rest);
            (
                name.trim_start_matches(['/', ':']).to_string(),
                d.pixels.clone(),
            )
        })
        .collect()
}

/// A set of 2 alphabets × 2 characters × 2 drawings in `dir/set`.
fn small_set(dir: &Path) -> PathBuf {
    write_set(dir, "set", 2, 2, 2)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// One file of an image-set directory damaged.
    #[test]
    fn a_damaged_image_directory_is_read_exactly_or_the_file_named(
        pick in any::<prop::sample::Index>(),
        damage in damage(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = small_set(tmp.path());
        let original = pixels_by_name(&Omniglot::open(std::slice::from_ref(&dir)).unwrap(), "set");
        let listing = files(&dir);
        let (name, path) = pick.get(&listing.iter().collect::<Vec<_>>()).to_owned();
        let (name, path) = (name.clone(), path.clone());
        damage.to_file(&path);
        match Omniglot::open(std::slice::from_ref(&dir)) {
            Ok(set) => {
                let read = pixels_by_name(&set, "set");
                for (drawing, pixels) in &read {
                    prop_assert_eq!(Some(pixels), original.get(drawing), "{} after {:?} of {}", drawing, damage, name);
                }
                // Only a removed file may be missing from what is read.
                let expected = original.len() - usize::from(matches!(damage, Damage::Remove));
                prop_assert_eq!(read.len(), expected, "{:?} of {}", damage, name);
            }
            Err(e) => {
                let file = name.rsplit('/').next().unwrap();
                prop_assert!(e.to_string().contains(file), "{:?} of {}: {}", damage, name, e);
            }
        }
    }

    /// The set's zip archive damaged: every drawing read is an undamaged one (zip's CRC-32
    /// covers the contents), or the archive is named.
    #[test]
    fn a_damaged_image_zip_is_read_exactly_or_named(damage in damage()) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = small_set(tmp.path());
        let zip = tmp.path().join("set.zip");
        zip_dir(&dir, "set", &zip);
        let original: Vec<Vec<f32>> =
            pixels_by_name(&Omniglot::open(std::slice::from_ref(&zip)).unwrap(), "set.zip")
                .into_values()
                .collect();
        damage.to_file(&zip);
        match Omniglot::open(std::slice::from_ref(&zip)) {
            // (A flip in an entry's name, which no checksum covers, may rename a drawing; its
            // pixels are still the file's own.)
            Ok(set) => {
                for d in set.characters.iter().flat_map(|c| &c.drawings) {
                    prop_assert!(original.contains(&d.pixels), "{} after {:?}", d.source, damage);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("set.zip"), "{:?}: {}", damage, e),
        }
    }

    /// One file of the one-shot runs damaged (the labels or an image): the runs read are what
    /// the labels now say, with the images' own pixels, or the file is named.
    #[test]
    fn damaged_one_shot_runs_are_read_as_written_or_the_file_named(
        pick in any::<prop::sample::Index>(),
        damage in damage(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("all_runs");
        let mut images = BTreeMap::new();
        for run in 1..=2u64 {
            let name = format!("run{run:02}");
            let mut labels = String::new();
            for k in 1..=3u64 {
                for (path, glyph) in [
                    (format!("{name}/training/class{k:02}.png"), run * 10 + k),
                    (format!("{name}/test/item{k:02}.png"), run * 10 + 4 - k),
                ] {
                    let file = root.join(&path);
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(&file, drawing(glyph, 0)).unwrap();
                    images.insert(path, glyph);
                }
                labels += &format!("{name}/test/item{k:02}.png {name}/training/class{:02}.png\n", 4 - k);
            }
            std::fs::write(root.join(&name).join("class_labels.txt"), labels).unwrap();
        }
        let original = read_runs(&root).unwrap();
        let pixels: BTreeMap<String, Vec<f32>> = original
            .iter()
            .flat_map(|r| r.training.iter().chain(r.test.iter().map(|(i, _)| i)))
            .map(|i| (i.name.clone(), i.pixels.clone()))
            .collect();
        let listing = files(&root);
        let (name, path) = pick.get(&listing.iter().collect::<Vec<_>>()).to_owned();
        let (name, path) = (name.clone(), path.clone());
        damage.to_file(&path);
        match read_runs(&root) {
            Ok(runs) => {
                for run in &runs {
                    // What the run's labels file now says, line by line.
                    let text = std::fs::read(root.join(&run.name).join("class_labels.txt")).unwrap();
                    let said: Vec<(String, String)> = String::from_utf8_lossy(&text)
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| {
                            let mut parts = l.split_whitespace();
                            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
                        })
                        .collect();
                    prop_assert_eq!(run.test.len(), said.len(), "{:?} of {}", damage, name);
                    for ((image, class), (test, train)) in run.test.iter().zip(&said) {
                        prop_assert_eq!(&image.name, test);
                        prop_assert_eq!(&run.training[*class].name, train, "{:?} of {}", damage, name);
                        prop_assert_eq!(Some(&image.pixels), pixels.get(test), "{:?} of {}", damage, name);
                        prop_assert_eq!(Some(&run.training[*class].pixels), pixels.get(train));
                    }
                }
            }
            Err(e) => {
                let file = name.rsplit('/').next().unwrap();
                prop_assert!(e.to_string().contains(file), "{:?} of {}: {}", damage, name, e);
            }
        }
    }

    /// CIFAR-10 batches of random records, whole or damaged: read exactly (grey from the
    /// record's own bytes) when every record is whole with a label of 0-9, else the file named.
    #[test]
    fn a_cifar_file_is_read_exactly_or_named(
        records in prop::collection::vec((0u8..12, any::<[u8; 3]>()), 1..4),
        damage in prop::option::of(damage()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data_batch_1.bin");
        let mut bytes = Vec::new();
        for (label, rgb) in &records {
            bytes.push(*label);
            for &c in rgb {
                bytes.extend(std::iter::repeat_n(c, PIXELS));
            }
        }
        let bytes = match &damage {
            Some(d) => d.apply(&bytes),
            None => Some(bytes),
        };
        if let Some(b) = &bytes {
            std::fs::write(&path, b).unwrap();
        }
        let result = read_cifar10(&path);
        let whole = bytes.as_ref().filter(|b| {
            !b.is_empty() && b.len() % CIFAR_RECORD == 0 && b.chunks(CIFAR_RECORD).all(|r| r[0] <= 9)
        });
        match (result, whole) {
            (Ok(images), Some(b)) => {
                prop_assert_eq!(images.len(), b.len() / CIFAR_RECORD);
                for (image, record) in images.iter().zip(b.chunks(CIFAR_RECORD)) {
                    for (p, &v) in image.iter().enumerate() {
                        let grey = 0.299 * record[1 + p] as f32
                            + 0.587 * record[1 + PIXELS + p] as f32
                            + 0.114 * record[1 + 2 * PIXELS + p] as f32;
                        prop_assert!((v - (grey / 255.0 * 2.0 - 1.0)).abs() < 1e-6);
                    }
                }
            }
            (Err(e), None) => prop_assert!(e.to_string().contains("data_batch_1.bin"), "{:?}: {}", damage, e),
            (Ok(_), None) => prop_assert!(false, "{:?}: a bad file was read", damage),
            (Err(e), Some(_)) => prop_assert!(false, "{:?}: a good file was refused: {}", damage, e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// A damaged task-set file (TOML or JSON) is refused naming the file, or read to tasks that
    /// all validate, and every one of them then runs (episodes, the planner) without a panic.
    #[test]
    fn a_damaged_task_set_is_refused_by_name_or_runs(damage in damage(), json in any::<bool>()) {
        use bohp::rl::metatask::runner::{Instance, Planner, Position, step};
        use bohp::rl::metatask::{NamedTask, TaskSet, generate};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if json { "set.json" } else { "set.toml" });
        let mut tasks = generate(4, 3);
        tasks.push(NamedTask::KeyDoor.task());
        TaskSet::new("property", tasks).save(&path).unwrap();
        damage.to_file(&path);
        match TaskSet::load(&path) {
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.contains("set."), "{}", text);
            }
            Ok(set) => {
                for task in &set.tasks {
                    prop_assert!(task.validate().is_ok());
                    let mut rng = bohp::rng::stream_rng(0, bohp::rng::Stream::Eval, 0);
                    let inst = Instance::draw(task, 4, &mut rng);
                    let plan = Planner::new(task, &inst, 10, 3);
                    prop_assert!(plan.optimal() >= plan.random() - 1e-9);
                    let mut at = Position::START;
                    for t in 0..10 {
                        let (next, reward) = step(task, &inst, at, plan.act(at, 10 - t), 3, &mut rng);
                        prop_assert!(reward.is_finite() && next.state < task.states());
                        at = next;
                    }
                }
            }
        }
    }
}
