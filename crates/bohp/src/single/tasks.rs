//! The paper's three tasks: seeded, batched episode generators and their losses and error
//! measures.
//!
//! | task | network | episode | loss | `error` | `error_code` |
//! |---|---|---|---|---|---|
//! | completion | `n → n` plastic tanh layer | step 0: random ±1 pattern; step 1: cue keeping one bit | squared error at step 1, summed over bits | Manhattan distance at step 1 | squared error at step 1 |
//! | one-shot | `n+2 →` plastic tanh hidden `→ 2` softmax | step 0: A + label 01; step 1: B + label 10; then A, B alternating with label bits 00 | cross-entropy, mean over scored steps | mean `\|p − target\|` per output, over scored steps | original code's mean over steps 2.. |
//! | reversal | as one-shot | as one-shot, but at step T/2 A and B swap labels and each is shown once with its new label | as one-shot, labelled steps unscored | as one-shot | as one-shot (labelled steps count as 0) |
//!
//! Inputs of the labelled tasks are the pattern bits followed by the two label bits. Target
//! classes: the label bits `(0, 1)` are class 1 and `(1, 0)` class 0; at step `t` the target is
//! class 1 for even `t` and class 0 for odd `t`, and the pattern shown is the one bound to that
//! class at the time. See `docs/model.md` for the full definitions.

use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::rng::{Stream, Streams};

/// Which task an episode belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Pattern completion (§4.2).
    Completion,
    /// One-shot learning of two patterns' labels (§4.3).
    OneShot,
    /// Reversal learning: the labels swap halfway (§4.4).
    Reversal,
}

impl TaskKind {
    /// The name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Completion => "completion",
            TaskKind::OneShot => "one-shot",
            TaskKind::Reversal => "reversal",
        }
    }

    /// Whether the task uses the labelled (one-shot style) episode and a softmax readout.
    pub fn is_labelled(self) -> bool {
        !matches!(self, TaskKind::Completion)
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of steps at the start of a labelled episode (and after the reversal) whose inputs
/// carry the label bits: one presentation of each pattern.
pub(crate) const LABELLED_STEPS: usize = 2;

/// Number of label bits (and of output classes) of the labelled tasks.
pub(crate) const N_LABELS: usize = 2;

/// A task with its sizes: everything needed to generate episodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Task {
    /// Which task.
    pub kind: TaskKind,
    /// Pattern length `n` (8 in the paper).
    pub pattern_bits: usize,
    /// Steps per episode (always 2 for completion).
    pub steps: usize,
}

/// Per-episode scalar measures of a batch, averaged over its episodes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Measures {
    /// The training loss (squared error for completion, mean cross-entropy for the others).
    pub loss: f64,
    /// The paper's per-step mean absolute error (see the module documentation).
    pub error: f64,
    /// The original code's per-episode error measure.
    pub error_code: f64,
}

impl std::fmt::Display for Measures {
    /// `loss …, error …, error_code …`, five decimals each.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss {:.5}, error {:.5}, error_code {:.5}",
            self.loss, self.error, self.error_code
        )
    }
}

impl Measures {
    /// Whether all three values are finite.
    pub fn is_finite(&self) -> bool {
        self.loss.is_finite() && self.error.is_finite() && self.error_code.is_finite()
    }
}

/// A batch of episodes on the host.
#[derive(Debug, Clone)]
pub struct EpisodeBatch {
    /// Number of independent episodes.
    pub batch: usize,
    /// Steps per episode.
    pub steps: usize,
    /// Input size.
    pub n_in: usize,
    /// Inputs, `[steps, batch, n_in]` row-major.
    pub inputs: Vec<f64>,
    /// What the outputs are scored against.
    pub targets: Targets,
}

/// Targets of a batch.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Completion: the full pattern, scored at the last step.
    Pattern {
        /// `[batch, n]` row-major.
        values: Vec<f64>,
    },
    /// Labelled tasks: a class per step and episode, and which steps are scored.
    Labels {
        /// Target class of each step, `[steps]` (the same for every episode of the batch).
        classes: Vec<usize>,
        /// Whether each step is scored, `[steps]`.
        scored: Vec<bool>,
    },
}

/// The batch's targets as device tensors, ready for [`Task::measure`].
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // made once per batch and passed by reference
pub enum DeviceTargets {
    /// Completion: `[batch, n]`.
    Pattern(Tensor<2>),
    /// Labelled tasks.
    Labels {
        /// One-hot targets at scored steps, zero elsewhere, `[steps, batch, 2]`.
        onehot: Tensor<3>,
        /// 1 at scored steps, 0 elsewhere, `[steps, batch, 1]`.
        mask: Tensor<3>,
        /// Number of scored steps.
        scored_steps: usize,
    },
}

/// A random ±1 pattern's entries, one draw each, in order.
fn random_signs(rng: &mut impl Rng) -> impl Iterator<Item = f64> + '_ {
    std::iter::repeat_with(|| if rng.random::<bool>() { 1.0 } else { -1.0 })
}

/// A random ±1 pattern written into `out`.
fn random_pattern(rng: &mut impl Rng, out: &mut [f64]) {
    for (v, s) in out.iter_mut().zip(random_signs(rng)) {
        *v = s;
    }
}

impl Task {
    /// Input size of the plastic layer.
    pub fn n_in(&self) -> usize {
        match self.kind {
            TaskKind::Completion => self.pattern_bits,
            _ => self.pattern_bits + N_LABELS,
        }
    }

    /// Step at which the reversal happens (labelled tasks), `steps / 2`.
    pub(crate) fn reversal_step(&self) -> usize {
        self.steps / 2
    }

    /// Whether the inputs at step `t` carry the label bits.
    pub(crate) fn is_labelled_step(&self, t: usize) -> bool {
        match self.kind {
            TaskKind::Completion => false,
            TaskKind::OneShot => t < LABELLED_STEPS,
            TaskKind::Reversal => {
                let r = self.reversal_step();
                t < LABELLED_STEPS || (r..r + LABELLED_STEPS).contains(&t)
            }
        }
    }

    /// Target class at step `t` of a labelled episode: 1 for even steps, 0 for odd ones.
    pub(crate) fn class_at(t: usize) -> usize {
        if t.is_multiple_of(2) { 1 } else { 0 }
    }

    /// Whether step `t` shows pattern A (else B): A is bound to the even-step class until the
    /// reversal, B after it.
    pub(crate) fn shows_a(&self, t: usize) -> bool {
        let reversed = self.kind == TaskKind::Reversal && t >= self.reversal_step();
        t.is_multiple_of(2) != reversed
    }

    /// Generates episodes `first, first + 1, …, first + batch - 1` of `stream` for a run seeded
    /// with `seed`. Episode `e` depends only on `(seed, stream, e)`.
    pub fn generate(&self, seed: u64, stream: Stream, first: u64, batch: usize) -> EpisodeBatch {
        let n = self.pattern_bits;
        let n_in = self.n_in();
        let steps = self.steps;
        let mut inputs = vec![0.0; steps * batch * n_in];
        let at = |t: usize, b: usize| (t * batch + b) * n_in;
        let streams = Streams::new(seed, stream);
        match self.kind {
            TaskKind::Completion => {
                let mut values = vec![0.0; batch * n];
                streams.for_items(first, batch, |b, rng| {
                    let pattern = &mut values[b * n..(b + 1) * n];
                    // The pattern written to the input as it is drawn (a copy afterwards is a
                    // `memcpy` call per episode).
                    let input = &mut inputs[at(0, b)..at(0, b) + n];
                    for ((v, x), s) in pattern.iter_mut().zip(input).zip(random_signs(rng)) {
                        (*v, *x) = (s, s);
                    }
                    let kept = rng.random_range(0..n);
                    inputs[at(1, b) + kept] = pattern[kept];
                });
                EpisodeBatch {
                    batch,
                    steps,
                    n_in,
                    inputs,
                    targets: Targets::Pattern { values },
                }
            }
            TaskKind::OneShot | TaskKind::Reversal => {
                let (mut a, mut bp) = (vec![0.0; n], vec![0.0; n]);
                streams.for_items(first, batch, |b, rng| {
                    random_pattern(rng, &mut a);
                    random_pattern(rng, &mut bp);
                    while bp == a {
                        random_pattern(rng, &mut bp);
                    }
                    for t in 0..steps {
                        let row = at(t, b);
                        let pattern = if self.shows_a(t) { &a } else { &bp };
                        inputs[row..row + n].copy_from_slice(pattern);
                        if self.is_labelled_step(t) {
                            inputs[row + n + Self::class_at(t)] = 1.0;
                        }
                    }
                });
                EpisodeBatch {
                    batch,
                    steps,
                    n_in,
                    inputs,
                    targets: Targets::Labels {
                        classes: (0..steps).map(Self::class_at).collect(),
                        scored: (0..steps).map(|t| !self.is_labelled_step(t)).collect(),
                    },
                }
            }
        }
    }

    /// Computes the loss (with its autodiff graph, if `outputs` has one) and the measures of a
    /// batch from the network's outputs.
    ///
    /// Normalizations multiply by a reciprocal: burn-autodiff 0.22.1 differentiates
    /// `div_scalar` through an f32 reciprocal (`1.0 / rhs.elem::<f32>()`), which would put an
    /// error of 2⁻²⁷ on every f64 gradient.
    ///
    /// # Shapes
    /// - `outputs`: `[steps, batch, n_out]`: tanh outputs (completion) or logits (labelled)
    /// - returned loss: `[1]`; returned measures: `[3]` = (loss, error, error_code), detached
    pub fn measure(&self, outputs: Tensor<3>, targets: &DeviceTargets) -> (Tensor<1>, Tensor<1>) {
        let [steps, batch, n_out] = outputs.dims();
        match targets {
            DeviceTargets::Pattern(pattern) => {
                let y = outputs.narrow(0, steps - 1, 1).reshape([batch, n_out]);
                let diff = y - pattern.clone();
                let loss = diff.clone().square().sum().mul_scalar(1.0 / batch as f64);
                let diff = diff.detach();
                let manhattan = diff.abs().sum().mul_scalar(1.0 / batch as f64);
                let detached = loss.clone().detach();
                let measures = Tensor::cat(vec![detached.clone(), manhattan, detached], 0);
                (loss, measures)
            }
            DeviceTargets::Labels {
                onehot,
                mask,
                scored_steps,
            } => {
                let log_p = activation::log_softmax(outputs, 2); // [steps, batch, 2]
                let ce_sum = (log_p.clone() * onehot.clone()).sum().neg();
                let loss = ce_sum
                    .clone()
                    .mul_scalar(1.0 / (batch * scored_steps) as f64);
                let p = log_p.detach().exp();
                let abs_err = ((p - onehot.clone()).abs() * mask.clone())
                    .sum()
                    .mul_scalar(1.0 / (batch * scored_steps * N_LABELS) as f64);
                let code = ce_sum
                    .detach()
                    .mul_scalar(1.0 / (batch * (steps - LABELLED_STEPS)) as f64);
                let measures = Tensor::cat(vec![loss.clone().detach(), abs_err, code], 0);
                (loss, measures)
            }
        }
    }
}

impl EpisodeBatch {
    /// Steps whose loss counts: the unlabelled ones of the labelled tasks, the last step of
    /// completion.
    pub(crate) fn scored_steps(&self) -> usize {
        match &self.targets {
            Targets::Labels { scored, .. } => scored.iter().filter(|s| **s).count(),
            Targets::Pattern { .. } => 1,
        }
    }

    /// The measures of the batch from its loss and `error` (batch means, as
    /// [`Task::measure`] defines them): `error_code` is the original code's mean over steps 2..
    /// with the labelled steps counted as 0 (the loss itself for completion).
    pub fn measures(&self, loss: f64, error: f64) -> Measures {
        let error_code = match &self.targets {
            Targets::Pattern { .. } => loss,
            Targets::Labels { .. } => {
                loss * self.scored_steps() as f64 / (self.steps - LABELLED_STEPS) as f64
            }
        };
        Measures {
            loss,
            error,
            error_code,
        }
    }

    /// The inputs as a device tensor, `[steps, batch, n_in]`.
    pub fn input_tensor(&self, device: &Device) -> Tensor<3> {
        Tensor::from_data(
            TensorData::new(self.inputs.clone(), [self.steps, self.batch, self.n_in]),
            device,
        )
    }

    /// The targets as device tensors.
    pub fn target_tensors(&self, device: &Device) -> DeviceTargets {
        match &self.targets {
            Targets::Pattern { values } => {
                let n = values.len() / self.batch;
                DeviceTargets::Pattern(Tensor::from_data(
                    TensorData::new(values.clone(), [self.batch, n]),
                    device,
                ))
            }
            Targets::Labels { classes, scored } => {
                let (steps, batch) = (self.steps, self.batch);
                let mut onehot = vec![0.0; steps * batch * N_LABELS];
                let mut mask = vec![0.0; steps * batch];
                for t in 0..steps {
                    if !scored[t] {
                        continue;
                    }
                    for b in 0..batch {
                        onehot[(t * batch + b) * N_LABELS + classes[t]] = 1.0;
                        mask[t * batch + b] = 1.0;
                    }
                }
                DeviceTargets::Labels {
                    onehot: Tensor::from_data(
                        TensorData::new(onehot, [steps, batch, N_LABELS]),
                        device,
                    ),
                    mask: Tensor::from_data(TensorData::new(mask, [steps, batch, 1]), device),
                    scored_steps: scored.iter().filter(|s| **s).count(),
                }
            }
        }
    }
}

/// Reads a `[3]` measures tensor (from [`Task::measure`]) back to the host.
pub fn read_measures(measures: Tensor<1>) -> Measures {
    let v = measures
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("measures are a float tensor");
    Measures {
        loss: v[0],
        error: v[1],
        error_code: v[2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: TaskKind, steps: usize) -> Task {
        Task {
            kind,
            pattern_bits: 8,
            steps,
        }
    }

    fn row(batch: &EpisodeBatch, t: usize, b: usize) -> &[f64] {
        let at = (t * batch.batch + b) * batch.n_in;
        &batch.inputs[at..at + batch.n_in]
    }

    #[test]
    fn completion_cue_keeps_exactly_one_bit_of_the_pattern() {
        let t = task(TaskKind::Completion, 2);
        let batch = t.generate(3, Stream::Train, 0, 64);
        let Targets::Pattern { values } = &batch.targets else {
            panic!("completion has pattern targets")
        };
        for b in 0..64 {
            let pattern = row(&batch, 0, b);
            assert!(pattern.iter().all(|v| *v == 1.0 || *v == -1.0));
            assert_eq!(pattern, &values[b * 8..b * 8 + 8]);
            let cue = row(&batch, 1, b);
            let kept: Vec<usize> = (0..8).filter(|i| cue[*i] != 0.0).collect();
            assert_eq!(kept.len(), 1);
            assert_eq!(cue[kept[0]], pattern[kept[0]]);
        }
    }

    #[test]
    fn one_shot_shows_labels_only_on_the_first_two_steps() {
        let t = task(TaskKind::OneShot, 20);
        let batch = t.generate(5, Stream::Train, 10, 32);
        for b in 0..32 {
            let a = row(&batch, 0, b)[..8].to_vec();
            let bp = row(&batch, 1, b)[..8].to_vec();
            assert_ne!(a, bp, "the two patterns differ in at least one bit");
            assert_eq!(
                &row(&batch, 0, b)[8..],
                &[0.0, 1.0],
                "A carries label 01 (class 1)"
            );
            assert_eq!(
                &row(&batch, 1, b)[8..],
                &[1.0, 0.0],
                "B carries label 10 (class 0)"
            );
            for step in 2..20 {
                let r = row(&batch, step, b);
                assert_eq!(&r[8..], &[0.0, 0.0]);
                let expected = if step % 2 == 0 { &a } else { &bp };
                assert_eq!(&r[..8], expected.as_slice());
            }
        }
        let Targets::Labels { classes, scored } = &batch.targets else {
            panic!("one-shot has label targets")
        };
        assert_eq!(classes[0], 1);
        assert_eq!(classes[1], 0);
        assert_eq!(scored.iter().filter(|s| **s).count(), 18);
        assert!(!scored[0] && !scored[1] && scored[2]);
    }

    #[test]
    fn reversal_swaps_labels_at_half_and_relabels_once() {
        let t = task(TaskKind::Reversal, 20);
        let batch = t.generate(5, Stream::Train, 0, 8);
        for b in 0..8 {
            let a = row(&batch, 0, b)[..8].to_vec();
            let bp = row(&batch, 1, b)[..8].to_vec();
            // After step 10, even steps (class 1) show B and odd steps (class 0) show A.
            assert_eq!(&row(&batch, 10, b)[..8], bp.as_slice());
            assert_eq!(&row(&batch, 10, b)[8..], &[0.0, 1.0]);
            assert_eq!(&row(&batch, 11, b)[..8], a.as_slice());
            assert_eq!(&row(&batch, 11, b)[8..], &[1.0, 0.0]);
            assert_eq!(&row(&batch, 12, b)[..8], bp.as_slice());
            assert_eq!(&row(&batch, 12, b)[8..], &[0.0, 0.0]);
            assert_eq!(&row(&batch, 9, b)[..8], bp.as_slice());
        }
        let Targets::Labels { scored, .. } = &batch.targets else {
            panic!()
        };
        let unscored: Vec<usize> = (0..20).filter(|s| !scored[*s]).collect();
        assert_eq!(unscored, vec![0, 1, 10, 11]);
    }

    fn measures_of(
        task: &Task,
        outputs: Vec<f64>,
        shape: [usize; 3],
        batch: &EpisodeBatch,
    ) -> Measures {
        use crate::device::{Backend, Precision, init_device};
        let device = init_device(Backend::Ndarray, Precision::F64).unwrap();
        let outputs = Tensor::<3>::from_data(TensorData::new(outputs, shape), &device);
        let (loss, measures) = task.measure(outputs, &batch.target_tensors(&device));
        let m = read_measures(measures);
        assert_eq!(loss.into_scalar::<f64>(), m.loss);
        m
    }

    #[test]
    fn completion_measures_known_values() {
        let t = task(TaskKind::Completion, 2);
        let batch = t.generate(1, Stream::Train, 0, 1);
        let Targets::Pattern { values } = &batch.targets else {
            panic!()
        };
        // Output 0.5·pattern at step 1: every bit is off by 0.5.
        // loss = error_code = 8 · 0.25 = 2; Manhattan error = 8 · 0.5 = 4.
        let mut outputs = vec![0.0; 8];
        outputs.extend(values.iter().map(|v| 0.5 * v));
        let m = measures_of(&t, outputs, [2, 1, 8], &batch);
        assert!((m.loss - 2.0).abs() < 1e-12 && (m.error_code - 2.0).abs() < 1e-12);
        assert!((m.error - 4.0).abs() < 1e-12);
    }

    #[test]
    fn labelled_measures_known_values() {
        // Equal logits: p = (1/2, 1/2) everywhere, cross-entropy ln 2 per scored step, and
        // |p - target| = 1/2 per output.
        let ln2 = std::f64::consts::LN_2;
        let one_shot = task(TaskKind::OneShot, 20);
        let batch = one_shot.generate(1, Stream::Train, 0, 3);
        let m = measures_of(&one_shot, vec![0.0; 20 * 3 * 2], [20, 3, 2], &batch);
        assert!((m.loss - ln2).abs() < 1e-12 && (m.error_code - ln2).abs() < 1e-12);
        assert!((m.error - 0.5).abs() < 1e-12);
        // Reversal scores 16 of 20 steps; the original code averages over steps 2..20 (18)
        // with the labelled steps at 0: error_code = 16/18 · ln 2.
        let reversal = task(TaskKind::Reversal, 20);
        let batch = reversal.generate(1, Stream::Train, 0, 3);
        let m = measures_of(&reversal, vec![0.0; 20 * 3 * 2], [20, 3, 2], &batch);
        assert!((m.loss - ln2).abs() < 1e-12);
        assert!((m.error_code - 16.0 / 18.0 * ln2).abs() < 1e-12);
        // A confident right answer at every scored step: logits (0, 10) for class 1 at even
        // steps and (10, 0) for class 0 at odd ones. CE = ln(1 + e^-10).
        let mut logits = Vec::new();
        for t in 0..20 {
            for _ in 0..3 {
                logits.extend(if t % 2 == 0 { [0.0, 10.0] } else { [10.0, 0.0] });
            }
        }
        let m = measures_of(&reversal, logits, [20, 3, 2], &batch);
        let ce = (1.0 + (-10f64).exp()).ln();
        assert!((m.loss - ce).abs() < 1e-12, "{m:?}");
        assert!((m.error - (1.0 - 1.0 / (1.0 + (-10f64).exp()))).abs() < 1e-12);
    }

    #[test]
    fn an_episode_does_not_depend_on_how_episodes_are_batched() {
        let t = task(TaskKind::OneShot, 20);
        let big = t.generate(9, Stream::Train, 0, 16);
        let single = t.generate(9, Stream::Train, 5, 1);
        for step in 0..20 {
            assert_eq!(row(&big, step, 5), row(&single, step, 0));
        }
        let other_seed = t.generate(10, Stream::Train, 5, 1);
        let eval = t.generate(9, Stream::Eval, 5, 1);
        assert_ne!(row(&single, 0, 0), row(&other_seed, 0, 0));
        assert_ne!(row(&single, 0, 0), row(&eval, 0, 0));
    }
}
