//! Training and evaluation of the few-shot network on Omniglot, through the one training loop
//! ([`crate::learner::train`]).
//!
//! An update samples `train.batch` N-way K-shot episodes from the training alphabets (each
//! from the update's own seeded stream, so a resumed run sees the same episodes), runs the
//! network on each (support steps, then the query), and takes an Adam step on the queries' mean
//! cross-entropy. Each episode's classes take random output units of the plastic layer, so one
//! network serves any number of classes up to `model.outputs` (5-way and 20-way evaluation).

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::OmniglotConfig;
use super::data::Augment;
use super::data::{
    Omniglot, OneShotRun, SIDE, check_episodes, check_episodes_queries, sample_episode_queries,
};
use super::model::{EpisodeBatch, FewShotNet};
use crate::device::init_device;
use crate::error::{Error, Result};
use crate::learner::{
    Divergence, Learner, Progress, Session, non_finite_parameter, open_checkpoint,
};
use crate::rng::{Stream, stream_rng};
use crate::rules::Modulation;
use crate::run::{MetricsRecord, RunDir, Snapshot, model_bytes};
use crate::store::ModuleStore;

/// One update's measures (a row of `metrics.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OmniglotRow {
    /// Update index (0-based).
    pub episode: usize,
    /// Mean cross-entropy of the batch's queries.
    pub loss: f64,
    /// Fraction of the batch's queries classified right.
    pub accuracy: f64,
    /// Oja's η after the update.
    pub eta: f64,
    /// Seconds the update took.
    pub seconds: f64,
}

impl MetricsRecord for OmniglotRow {
    fn episode(&self) -> usize {
        self.episode
    }
}

/// An accuracy over independent episodes, with its 95% confidence interval (Wilson score).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Classes per episode.
    pub ways: usize,
    /// Episodes measured.
    pub episodes: usize,
    /// Fraction right.
    pub accuracy: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

impl Accuracy {
    /// `right` of `episodes` at `ways` classes.
    pub fn of(ways: usize, right: usize, episodes: usize) -> Accuracy {
        let n = episodes.max(1) as f64;
        let p = right as f64 / n;
        let z = 1.96f64;
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
        Accuracy {
            ways,
            episodes,
            accuracy: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }
}

/// A finished run's summary (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OmniglotSummary {
    /// `omniglot`.
    pub task: String,
    /// Whether the output layer is plastic (false: the α = 0 control).
    pub plastic: bool,
    /// Trained parameters.
    pub params: usize,
    /// Updates run.
    pub episodes: usize,
    /// Training accuracy over the last tenth of the updates.
    pub final_train_accuracy: f64,
    /// 5-way and 20-way 1-shot accuracy on the held-out alphabets (empty without them).
    pub held_out: Vec<Accuracy>,
    /// Oja's η.
    pub eta: f64,
    /// Seconds the run spent training, over all its sessions.
    pub wall_seconds: f64,
    /// Its peak resident memory (MiB).
    pub peak_rss_mib: Option<f64>,
}

/// Trains the few-shot network.
pub struct OmniglotTrainer {
    config: OmniglotConfig,
    device: Device,
    model: FewShotNet,
    optim: ModuleStore,
    train_set: Omniglot,
    /// What training episodes draw from: the training set, or each alphabet of it
    /// (`task.within_alphabet`).
    episode_sets: Vec<Omniglot>,
    held_out: Omniglot,
    next_episode: usize,
}

/// Episodes of `ways` classes and `shots` shots, each from one of `sets` (drawn at random
/// when there are several: the alphabets, for within-alphabet episodes), as one batch on
/// `device`, with each episode's classes on random output units of `outputs`.
#[allow(clippy::too_many_arguments)]
pub fn episode_batch(
    sets: &[Omniglot],
    ways: usize,
    shots: usize,
    outputs: usize,
    queries: usize,
    count: usize,
    augment: &Augment,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> EpisodeBatch {
    let s = ways * shots;
    let mut images = Vec::with_capacity(count * (s + queries) * SIDE * SIDE);
    let mut support = vec![0.0f32; count * s * outputs];
    let mut mask = vec![-1e4f32; count * outputs];
    let mut target = Vec::with_capacity(count * queries);
    for b in 0..count {
        let set = if sets.len() == 1 {
            &sets[0]
        } else {
            &sets[rng.random_range(0..sets.len())]
        };
        let mut episode = sample_episode_queries(set, ways, shots, queries, rng);
        if !augment.is_off() {
            for (img, _) in episode.support.iter_mut().chain(episode.queries.iter_mut()) {
                *img = augment.distort(img, rng);
            }
        }
        let mut units: Vec<usize> = (0..outputs).collect();
        units.shuffle(rng);
        for (k, (img, label)) in episode.support.iter().enumerate() {
            images.extend_from_slice(img);
            support[(b * s + k) * outputs + units[*label]] = 1.0;
        }
        for (img, label) in &episode.queries {
            images.extend_from_slice(img);
            target.push(units[*label] as i64);
        }
        for &u in &units[..ways] {
            mask[b * outputs + u] = 0.0;
        }
    }
    EpisodeBatch {
        images: Tensor::from_data(
            TensorData::new(images, [count * (s + queries), 1, SIDE, SIDE]),
            device,
        ),
        support: Tensor::from_data(TensorData::new(support, [count, s, outputs]), device),
        mask: Tensor::from_data(TensorData::new(mask, [count, outputs]), device),
        target: Tensor::<1, Int>::from_data(TensorData::new(target, [count * queries]), device),
        batch: count,
        shots_total: s,
        queries,
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64")[0]
}

fn ints(t: Tensor<1, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
}

impl OmniglotTrainer {
    /// A fresh trainer: the data read (every file checked), initial parameters from the seed.
    pub fn new(config: OmniglotConfig) -> Result<OmniglotTrainer> {
        let all = Omniglot::open(&config.task.data)?;
        let alphabets = all.alphabets();
        if let Some(a) = config.task.held_out.iter().find(|a| !alphabets.contains(a)) {
            return Err(Error::ConfigValue {
                source_name: "the config".into(),
                field: "task.held_out".into(),
                value: format!("\"{a}\""),
                expected: format!("an alphabet of the data: {}", alphabets.join(", ")),
            });
        }
        let (train_set, held_out) = all.split(&config.task.held_out);
        check_episodes_queries(
            &train_set,
            config.task.ways,
            config.task.shots,
            config.task.queries,
            "the training alphabets",
        )?;
        let episode_sets = if config.task.within_alphabet {
            let sets: Vec<Omniglot> = train_set
                .alphabets()
                .into_iter()
                .map(|a| {
                    let others: Vec<String> = train_set
                        .alphabets()
                        .into_iter()
                        .filter(|b| *b != a)
                        .collect();
                    train_set.split(&others).0
                })
                .filter(|s| s.characters.len() >= config.task.ways)
                .collect();
            if sets.is_empty() {
                return Err(Error::ConfigValue {
                    source_name: "the config".into(),
                    field: "task.within_alphabet".into(),
                    value: "true".into(),
                    expected: format!(
                        "a training alphabet with at least task.ways = {} characters",
                        config.task.ways
                    ),
                });
            }
            sets
        } else {
            vec![train_set.clone()]
        };
        let device = init_device(config.device, config.dtype)?.autodiff();
        let m = &config.model;
        let model = FewShotNet::new(m, config.seed, &device);
        Ok(OmniglotTrainer {
            optim: ModuleStore::new(&config.train, &model, config.dtype),
            config,
            device,
            model,
            train_set,
            episode_sets,
            held_out,
            next_episode: 0,
        })
    }

    /// The trainer of an interrupted (or finished) run, from its checkpoint.
    pub fn resume(run: &RunDir, config: OmniglotConfig) -> Result<OmniglotTrainer> {
        let mut trainer = OmniglotTrainer::new(config)?;
        let mut checkpoint = open_checkpoint::<OmniglotRow>(
            run,
            trainer.config.dtype,
            trainer.config.train.episodes,
        )?;
        trainer.model = checkpoint.restore_model(trainer.model.clone())?;
        let (train, dtype) = (&trainer.config.train, trainer.config.dtype);
        trainer.optim = ModuleStore::resumed(train, &trainer.model, dtype, &mut checkpoint)?;
        trainer.next_episode = checkpoint.state.next_episode;
        Ok(trainer)
    }

    /// Adds `updates` to a finished run.
    pub fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        self.config = crate::learner::extended(&self.config, self.next_episode, updates, source)?;
        Ok(())
    }

    /// Replaces the parameters with those of a saved model record (a run's `model.bpk`).
    pub fn load_model(&mut self, path: &Path) -> Result<()> {
        self.model = crate::run::load_record(self.model.clone(), path, None)?;
        Ok(())
    }

    /// The config.
    pub fn config(&self) -> &OmniglotConfig {
        &self.config
    }

    /// The network.
    pub fn model(&self) -> &FewShotNet {
        &self.model
    }

    /// `count` training episodes of the `Eval` stream (the config's ways, shots and queries,
    /// no augmentation), on the training device: the batch `bohp gradcheck` differentiates.
    pub fn check_batch(&self, count: usize) -> EpisodeBatch {
        let t = &self.config.task;
        let mut rng = stream_rng(self.config.seed, Stream::Eval, u64::MAX);
        episode_batch(
            &self.episode_sets,
            t.ways,
            t.shots,
            self.config.model.outputs,
            t.queries,
            count,
            &Augment::default(),
            &mut rng,
            &self.device,
        )
    }

    /// The held-out alphabets' characters.
    pub fn held_out(&self) -> &Omniglot {
        &self.held_out
    }

    /// The training alphabets' characters.
    pub fn train_set(&self) -> &Omniglot {
        &self.train_set
    }

    /// Trained parameters.
    pub fn num_params(&self) -> usize {
        let (c, o) = (self.config.model.channels, self.config.model.outputs);
        let convs = (9 + 1) * c + 3 * (9 * c + 1) * c;
        let norms = if self.config.model.batch_norm {
            4 * 2 * c
        } else {
            0
        };
        // α and η with plasticity (η unused under simple modulation), the modulator's w_M, b_M.
        let plastic = match self.config.model.modulation {
            _ if !self.config.model.plastic => 0,
            Modulation::None => c * o + 1,
            Modulation::Simple => c * o + c + 1,
            Modulation::Retroactive => c * o + 1 + c + 1,
        };
        convs + norms + c * o + plastic
    }

    /// Accuracy of the network and of nearest neighbour in its embedding on `episodes`
    /// `ways`-way `shots`-shot episodes of `set` (the `Eval` stream, in batches of
    /// `train.batch`).
    pub fn evaluate(
        &self,
        set: &Omniglot,
        ways: usize,
        shots: usize,
        episodes: usize,
    ) -> Result<(Accuracy, Accuracy)> {
        check_episodes(set, ways, shots, "the held-out alphabets")?;
        let plain = self.device.clone().without_autodiff();
        let model = self.model.valid();
        let outputs = self.config.model.outputs;
        let mut rng = stream_rng(self.config.seed, Stream::Eval, ways as u64);
        let (mut right, mut nn_right, mut done) = (0, 0, 0);
        while done < episodes {
            let count = self.config.train.batch.min(episodes - done);
            let batch = episode_batch(
                std::slice::from_ref(set),
                ways,
                shots,
                outputs,
                1,
                count,
                &Augment::default(),
                &mut rng,
                &plain,
            );
            let predicted = ints(model.logits(&batch).argmax(1).reshape([count]));
            let target = ints(batch.target.clone());
            right += predicted
                .iter()
                .zip(&target)
                .filter(|(p, t)| p == t)
                .count();
            nn_right += nearest_neighbour_right(&model, &batch, outputs);
            done += count;
        }
        Ok((
            Accuracy::of(ways, right, episodes),
            Accuracy::of(ways, nn_right, episodes),
        ))
    }

    /// The error of the network and of nearest neighbour in its embedding on Lake et al.'s
    /// one-shot runs: each test image is the query of a 20-way episode whose support is the
    /// run's training images (one per class, in file order; classes on units 0..20).
    pub(crate) fn runs_error(&self, runs: &[OneShotRun]) -> Result<(f64, f64)> {
        let plain = self.device.clone().without_autodiff();
        let model = self.model.valid();
        let outputs = self.config.model.outputs;
        let (mut wrong, mut nn_wrong, mut total) = (0usize, 0usize, 0usize);
        for run in runs {
            let ways = run.training.len();
            if ways > outputs {
                return Err(Error::Unsupported(format!(
                    "run {} has {ways} classes, more than the network's {outputs} output units",
                    run.name
                )));
            }
            let image = |p: &[f32]| -> Tensor<4> {
                Tensor::from_data(TensorData::new(p.to_vec(), [1, 1, SIDE, SIDE]), &plain)
            };
            let support_emb = model.embed(Tensor::cat(
                run.training.iter().map(|t| image(&t.pixels)).collect(),
                0,
            ));
            let c = support_emb.dims()[1];
            let mut onehot = vec![0.0f32; ways * outputs];
            for k in 0..ways {
                onehot[k * outputs + k] = 1.0;
            }
            let labels = Tensor::from_data(TensorData::new(onehot, [1, ways, outputs]), &plain);
            let weights = model.weights(support_emb.clone().reshape([1, ways, c]), labels);
            let queries = model.embed(Tensor::cat(
                run.test.iter().map(|(t, _)| image(&t.pixels)).collect(),
                0,
            ));
            let q = run.test.len();
            let logits = queries
                .clone()
                .matmul(weights.reshape([c, outputs]))
                .slice([0..q, 0..ways]);
            let predicted = ints(logits.argmax(1).reshape([q]));
            let nn = nearest(&queries, &support_emb);
            for (k, (_, label)) in run.test.iter().enumerate() {
                wrong += usize::from(predicted[k] as usize != *label);
                nn_wrong += usize::from(nn[k] != *label);
            }
            total += q;
        }
        let total = total.max(1) as f64;
        Ok((wrong as f64 / total, nn_wrong as f64 / total))
    }
}

/// Each row scaled to unit Euclidean norm (rows of zeros stay zero).
fn unit_rows(t: Tensor<2>) -> Tensor<2> {
    let norm = t
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    t / norm
}

/// For each row of `queries` `[Q, C]`, the row of `support` `[S, C]` with the largest cosine
/// similarity.
fn nearest(queries: &Tensor<2>, support: &Tensor<2>) -> Vec<usize> {
    let sim = unit_rows(queries.clone()).matmul(unit_rows(support.clone()).transpose());
    let q = sim.dims()[0];
    ints(sim.argmax(1).reshape([q]))
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// How many of a batch's queries nearest neighbour in the embedding classifies right (K-shot:
/// the nearest class mean).
fn nearest_neighbour_right(model: &FewShotNet, batch: &EpisodeBatch, outputs: usize) -> usize {
    let (b, s) = (batch.batch, batch.shots_total);
    debug_assert_eq!(batch.queries, 1, "evaluation episodes have one query");
    let emb = model.embed(batch.images.clone());
    let c = emb.dims()[1];
    let emb = emb.reshape([b, s + 1, c]);
    let labels: Vec<f32> = batch
        .support
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32");
    let target = ints(batch.target.clone());
    let mut right = 0;
    for e in 0..b {
        let episode = emb
            .clone()
            .slice([e..e + 1, 0..s + 1, 0..c])
            .reshape([s + 1, c]);
        let support = episode.clone().slice([0..s, 0..c]);
        let query = episode.slice([s..s + 1, 0..c]);
        // Class means over the support images of each unit.
        let onehot = Tensor::<2>::from_data(
            TensorData::new(
                labels[e * s * outputs..(e + 1) * s * outputs].to_vec(),
                [s, outputs],
            ),
            &support.device(),
        );
        let counts = onehot.clone().sum_dim(0).clamp_min(1.0);
        let means = (onehot.transpose().matmul(support)) / counts.transpose();
        let used = ints(
            batch
                .mask
                .clone()
                .slice([e..e + 1, 0..outputs])
                .reshape([outputs])
                .greater_equal_elem(0.0)
                .int(),
        );
        let sims = {
            unit_rows(query)
                .matmul(unit_rows(means).transpose())
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("f64")
        };
        let best = (0..outputs)
            .filter(|u| used[*u] == 1)
            .max_by(|a, b| sims[*a].total_cmp(&sims[*b]))
            .expect("an episode has classes");
        right += usize::from(best as i64 == target[e]);
    }
    right
}

impl Learner for OmniglotTrainer {
    fn compute_device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    type Row = OmniglotRow;
    type Summary = OmniglotSummary;

    fn progress(&self) -> Progress {
        Progress::of(self.next_episode, &self.config)
    }

    fn step(&mut self) -> std::result::Result<OmniglotRow, Divergence> {
        let episode = self.next_episode;
        let started = Instant::now();
        let t = &self.config.task;
        let mut rng = stream_rng(self.config.seed, Stream::Train, episode as u64);
        let batch = episode_batch(
            &self.episode_sets,
            t.ways,
            t.shots,
            self.config.model.outputs,
            t.queries,
            self.config.train.batch,
            &t.augment,
            &mut rng,
            &self.device,
        );
        let (loss, predicted) = self.model.loss(&batch);
        let value = scalar(loss.clone());
        if !value.is_finite() {
            return Err(Divergence {
                episode,
                what: format!("the loss ({value})"),
            });
        }
        let right = ints(predicted)
            .iter()
            .zip(ints(batch.target.clone()))
            .filter(|(p, t)| **p == *t)
            .count();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(
            self.config.learning_rate(episode),
            self.model.clone(),
            grads,
        );
        self.next_episode += 1;
        Ok(OmniglotRow {
            episode,
            loss: value,
            accuracy: right as f64 / (batch.batch * batch.queries) as f64,
            eta: scalar(self.model.eta.val()),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn check_parameters(&self) -> std::result::Result<(), Divergence> {
        Divergence::in_parameter(self.next_episode, non_finite_parameter(&self.model))
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let at = Path::new("checkpoint");
        let (optimizer, host_optimizer) = self.optim.snapshot(at)?;
        Ok(Snapshot {
            model: model_bytes(&self.model.valid(), at)?,
            optimizer,
            host_optimizer,
            next_episode: self.next_episode,
            dtype: self.config.dtype,
        })
    }

    fn model_record(&self) -> Result<Vec<u8>> {
        model_bytes(&self.model.valid(), Path::new("model.bpk"))
    }

    fn summarize(&mut self, rows: &[OmniglotRow], session: Session) -> Result<OmniglotSummary> {
        let tail = (rows.len() / 10).max(1).min(rows.len().max(1));
        let final_train_accuracy = rows
            .iter()
            .rev()
            .take(tail)
            .map(|r| r.accuracy)
            .sum::<f64>()
            / tail as f64;
        let mut held_out = Vec::new();
        if !self.held_out.characters.is_empty() {
            for ways in [5, 20] {
                if ways <= self.config.model.outputs && self.held_out.characters.len() >= ways {
                    let (net, _) =
                        self.evaluate(&self.held_out, ways, 1, self.config.train.eval_episodes)?;
                    held_out.push(net);
                }
            }
        }
        Ok(OmniglotSummary {
            task: "omniglot".into(),
            plastic: self.config.model.plastic,
            params: self.num_params(),
            episodes: rows.len(),
            final_train_accuracy,
            held_out,
            eta: scalar(self.model.eta.val()),
            wall_seconds: session.wall_seconds,
            peak_rss_mib: session.peak_rss_mib,
        })
    }
}
