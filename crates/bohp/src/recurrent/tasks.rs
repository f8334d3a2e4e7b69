//! The 2018 paper's memorisation tasks: binary patterns, and grey images.

use std::sync::Arc;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::images::{self, Image};
use crate::rng::{Stream, stream_rng};

/// Which recurrent task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecurrentTaskKind {
    /// Binary pattern memorisation and completion (2018 §4.1).
    Memorisation,
    /// Grey image memorisation and reconstruction (2018 §4.2).
    Images,
}

impl RecurrentTaskKind {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            RecurrentTaskKind::Memorisation => "memorisation",
            RecurrentTaskKind::Images => "images",
        }
    }
}

/// Where the images of the image task come from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// The built-in generator ([`images::generate`]), a fresh image per draw.
    Generated,
    /// Images read from CIFAR-10 binary files.
    Loaded(Arc<Vec<Image>>),
}

/// A recurrent task with its sizes and timings: `items` stimuli (patterns or images), each
/// shown for `present_steps` then `gap_steps` of silence, the whole list `cycles` times (order
/// shuffled per cycle); then one of them, half erased, for `probe_steps`. The loss is the
/// squared error of the last step against the whole stimulus.
#[derive(Debug, Clone)]
pub struct RecurrentTask {
    /// The task.
    pub kind: RecurrentTaskKind,
    /// Stimulus size: pattern bits or pixels.
    pub size: usize,
    /// Stimuli per episode.
    pub items: usize,
    /// Presentations of each stimulus.
    pub cycles: usize,
    /// Steps each presentation lasts.
    pub present_steps: usize,
    /// Silent steps after each presentation.
    pub gap_steps: usize,
    /// Steps the probe is shown.
    pub probe_steps: usize,
    /// Input multiplier (unclamped inputs; 20 in the 2018 code).
    pub input_gain: f32,
    /// Whether inputs clamp their neurons (`y = u` where an input is given).
    pub clamp: bool,
    /// The images, for the image task.
    pub source: ImageSource,
}

/// A batch of episodes, laid out for the network (`neurons ≥ size`: extra neurons get no input).
#[derive(Debug, Clone)]
pub struct RecurrentBatch {
    /// Steps per episode.
    pub steps: usize,
    /// Episodes.
    pub batch: usize,
    /// Neurons (input width).
    pub neurons: usize,
    /// `u(t)`, `[steps][batch][neurons]`.
    pub inputs: Vec<f32>,
    /// `c(t)`, `[steps][batch][neurons]`, when the task clamps.
    pub clamp: Option<Vec<f32>>,
    /// The whole probed stimulus, `[batch][size]`.
    pub targets: Vec<f32>,
    /// 1 where the probe erased the stimulus (what must be recalled), `[batch][size]`.
    pub erased: Vec<f32>,
    /// The stimuli shown, `[batch][items][size]` (for figures).
    pub stimuli: Vec<f32>,
}

/// A batch's arrays in a host engine's precision, owned; [`HostArrays::episodes`] lends them
/// as the engines' [`EpisodeBatch`](crate::engines::fused::EpisodeBatch).
#[derive(Debug, Clone, PartialEq)]
pub struct HostArrays<F> {
    steps: usize,
    batch: usize,
    inputs: Vec<F>,
    clamp: Option<Vec<F>>,
    targets: Vec<F>,
}

impl<F: crate::rules::Real> HostArrays<F> {
    /// The batch as the host engines take it.
    pub fn episodes(&self) -> crate::engines::fused::EpisodeBatch<'_, F> {
        crate::engines::fused::EpisodeBatch {
            steps: self.steps,
            batch: self.batch,
            inputs: &self.inputs,
            clamp: self.clamp.as_deref(),
            targets: &self.targets,
        }
    }
}

impl RecurrentBatch {
    /// Inputs, clamp mask and targets in precision `F`, for the host engines.
    pub fn to_host<F: crate::rules::Real>(&self) -> HostArrays<F> {
        let cast = |v: &[f32]| {
            v.iter()
                .map(|&x| F::from(x).expect("finite"))
                .collect::<Vec<F>>()
        };
        HostArrays {
            steps: self.steps,
            batch: self.batch,
            inputs: cast(&self.inputs),
            clamp: self.clamp.as_deref().map(cast),
            targets: cast(&self.targets),
        }
    }
}

impl RecurrentTask {
    /// Steps per episode.
    pub fn steps(&self) -> usize {
        self.cycles * self.items * (self.present_steps + self.gap_steps) + self.probe_steps
    }

    /// One stimulus: a ±1 pattern, or an image normalised to zero mean and peak |pixel| 1.
    fn stimulus(&self, rng: &mut impl Rng) -> Vec<f32> {
        let mut img = match (&self.kind, &self.source) {
            (RecurrentTaskKind::Memorisation, _) => {
                return (0..self.size)
                    .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
                    .collect();
            }
            (RecurrentTaskKind::Images, ImageSource::Generated) => images::generate(rng),
            (RecurrentTaskKind::Images, ImageSource::Loaded(all)) => {
                all[rng.random_range(0..all.len())].clone()
            }
        };
        images::normalise(&mut img);
        img
    }

    /// Which stimulus elements the probe erases.
    fn erase_mask(&self, rng: &mut impl Rng) -> Vec<bool> {
        match self.kind {
            RecurrentTaskKind::Memorisation => {
                let mut idx: Vec<usize> = (0..self.size).collect();
                idx.shuffle(rng);
                let mut mask = vec![false; self.size];
                for &i in &idx[..self.size / 2] {
                    mask[i] = true;
                }
                mask
            }
            RecurrentTaskKind::Images => {
                // The top or the bottom half.
                let bottom = rng.random_bool(0.5);
                (0..self.size)
                    .map(|p| (p >= self.size / 2) == bottom)
                    .collect()
            }
        }
    }

    /// Episodes `first .. first + batch` of `stream` in a run seeded with `seed`, each drawn from
    /// its own generator (the same episode whatever the batch size).
    pub fn batch(
        &self,
        seed: u64,
        stream: Stream,
        first: u64,
        batch: usize,
        neurons: usize,
    ) -> RecurrentBatch {
        assert!(
            neurons >= self.size,
            "the network needs a neuron per stimulus element"
        );
        let steps = self.steps();
        let size = self.size;
        let at = |t: usize, b: usize| (t * batch + b) * neurons;
        let mut inputs = vec![0.0f32; steps * batch * neurons];
        let mut clamp = self.clamp.then(|| vec![0.0f32; steps * batch * neurons]);
        let mut targets = Vec::with_capacity(batch * size);
        let mut erased_all = Vec::with_capacity(batch * size);
        let mut stimuli_all = Vec::with_capacity(batch * self.items * size);
        let gain = if self.clamp { 1.0 } else { self.input_gain };
        for b in 0..batch {
            let mut rng = stream_rng(seed, stream, first + b as u64);
            let stimuli: Vec<Vec<f32>> = (0..self.items).map(|_| self.stimulus(&mut rng)).collect();
            let block = self.present_steps + self.gap_steps;
            for c in 0..self.cycles {
                let mut order: Vec<usize> = (0..self.items).collect();
                order.shuffle(&mut rng);
                for (k, &item) in order.iter().enumerate() {
                    let t0 = (c * self.items + k) * block;
                    for t in t0..t0 + self.present_steps {
                        for (dst, &v) in inputs[at(t, b)..at(t, b) + size]
                            .iter_mut()
                            .zip(&stimuli[item])
                        {
                            *dst = v * gain;
                        }
                        if let Some(cl) = clamp.as_mut() {
                            cl[at(t, b)..at(t, b) + size].fill(1.0);
                        }
                    }
                }
            }
            let probe = rng.random_range(0..self.items);
            let erased = self.erase_mask(&mut rng);
            for t in steps - self.probe_steps..steps {
                for p in 0..size {
                    if !erased[p] {
                        inputs[at(t, b) + p] = stimuli[probe][p] * gain;
                        if let Some(cl) = clamp.as_mut() {
                            cl[at(t, b) + p] = 1.0;
                        }
                    }
                }
            }
            targets.extend_from_slice(&stimuli[probe]);
            erased_all.extend(erased.iter().map(|&e| if e { 1.0 } else { 0.0 }));
            for s in &stimuli {
                stimuli_all.extend_from_slice(s);
            }
        }
        RecurrentBatch {
            steps,
            batch,
            neurons,
            inputs,
            clamp,
            targets,
            erased: erased_all,
            stimuli: stimuli_all,
        }
    }

    /// The error of outputs `y_last` (`[batch][neurons]`) on the erased part of the probe:
    /// the fraction of wrong signs (patterns), or the mean squared error per pixel (images).
    pub fn error(&self, batch: &RecurrentBatch, y_last: &[f32]) -> f64 {
        let (size, n) = (self.size, batch.neurons);
        let mut total = 0.0f64;
        let mut count = 0.0f64;
        for b in 0..batch.batch {
            for p in 0..size {
                if batch.erased[b * size + p] == 0.0 {
                    continue;
                }
                let (y, target) = (y_last[b * n + p] as f64, batch.targets[b * size + p] as f64);
                total += match self.kind {
                    RecurrentTaskKind::Memorisation => {
                        f64::from(u8::from(y.signum() != target.signum() || y == 0.0))
                    }
                    RecurrentTaskKind::Images => (y - target).powi(2),
                };
                count += 1.0;
            }
        }
        total / count.max(1.0)
    }

    /// The loss `(1/B) Σ_b Σ_p (y_p(T) - target_p)²`.
    pub fn loss(&self, batch: &RecurrentBatch, y_last: &[f32]) -> f64 {
        let (size, n) = (self.size, batch.neurons);
        let mut total = 0.0;
        for b in 0..batch.batch {
            for p in 0..size {
                total += (y_last[b * n + p] as f64 - batch.targets[b * size + p] as f64).powi(2);
            }
        }
        total / batch.batch as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memorisation(size: usize) -> RecurrentTask {
        RecurrentTask {
            kind: RecurrentTaskKind::Memorisation,
            size,
            items: 5,
            cycles: 2,
            present_steps: 6,
            gap_steps: 4,
            probe_steps: 6,
            input_gain: 20.0,
            clamp: false,
            source: ImageSource::Generated,
        }
    }

    #[test]
    fn memorisation_episodes_follow_the_reference_layout() {
        let task = memorisation(50);
        assert_eq!(task.steps(), 106);
        let b = task.batch(3, Stream::Train, 10, 2, 52);
        assert_eq!(b.inputs.len(), 106 * 2 * 52);
        let u = |t: usize, e: usize, p: usize| b.inputs[(t * 2 + e) * 52 + p];
        for e in 0..2 {
            // Presented: ±20 on the pattern neurons, nothing on the extra ones, silence in gaps.
            assert!((0..50).all(|p| u(0, e, p).abs() == 20.0));
            assert!((0..6).all(|t| u(t, e, 50) == 0.0 && u(t, e, 51) == 0.0));
            assert!((6..10).all(|t| (0..52).all(|p| u(t, e, p) == 0.0)));
            // Probe: exactly half the bits erased, the rest equal to the target ×20.
            let erased: f32 = b.erased[e * 50..(e + 1) * 50].iter().sum();
            assert_eq!(erased, 25.0);
            for p in 0..50 {
                let shown = u(105, e, p);
                if b.erased[e * 50 + p] == 1.0 {
                    assert_eq!(shown, 0.0);
                } else {
                    assert_eq!(shown, 20.0 * b.targets[e * 50 + p]);
                }
            }
        }
        // An episode does not depend on the batch it is drawn in.
        let single = task.batch(3, Stream::Train, 11, 1, 52);
        assert_eq!(single.targets, b.targets[50..]);
        // Error: all-correct outputs score 0, sign-flipped ones 1.
        let mut y = vec![0.0f32; 2 * 52];
        for e in 0..2 {
            for p in 0..50 {
                y[e * 52 + p] = b.targets[e * 50 + p];
            }
        }
        assert_eq!(task.error(&b, &y), 0.0);
        let flipped: Vec<f32> = y.iter().map(|v| -v).collect();
        assert_eq!(task.error(&b, &flipped), 1.0);
    }

    #[test]
    fn image_episodes_clamp_and_erase_half_an_image() {
        let task = RecurrentTask {
            kind: RecurrentTaskKind::Images,
            size: images::PIXELS,
            items: 3,
            cycles: 3,
            present_steps: 20,
            gap_steps: 2,
            probe_steps: 3,
            input_gain: 20.0,
            clamp: true,
            source: ImageSource::Generated,
        };
        assert_eq!(task.steps(), 201);
        let b = task.batch(1, Stream::Train, 0, 1, images::PIXELS);
        let clamp = b.clamp.as_ref().expect("the image task clamps");
        let n = images::PIXELS;
        assert!(clamp[..n].iter().all(|&c| c == 1.0));
        assert!(
            clamp[20 * n..21 * n].iter().all(|&c| c == 0.0),
            "gaps are not clamped"
        );
        let last = &clamp[200 * n..];
        let erased = &b.erased;
        let top_erased = erased[0] == 1.0;
        assert!(erased[..n / 2].iter().all(|&e| (e == 1.0) == top_erased));
        assert!(erased[n / 2..].iter().all(|&e| (e == 1.0) != top_erased));
        for p in 0..n {
            assert_eq!(
                last[p],
                1.0 - erased[p],
                "visible pixels are clamped, erased ones free"
            );
        }
        // Clamped inputs carry raw pixel values (no gain).
        assert!(b.inputs.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Each image is normalised as in the 2018 code: zero mean, largest |pixel| 1.
        for img in b.stimuli.chunks(n) {
            let mean = img.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let peak = img.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(mean.abs() < 1e-6, "image mean {mean}");
            assert!((peak - 1.0).abs() < 1e-6, "image peak {peak}");
        }
    }
}
