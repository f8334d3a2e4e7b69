//! Training recurrent networks: the fused host engine or burn autodiff, Adam, metrics, the
//! saved model, and a summary with the run's peak memory.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::config::{RecurrentConfig, RecurrentModelKind};
use super::model::{LstmNet, PlasticRnn, PlasticRnnConfig};
use super::tasks::{RecurrentBatch, RecurrentTask, RecurrentTaskKind};
use crate::device::{Precision, init_device};
use crate::engines::fused::Real;
use crate::error::{Error, Result};
use crate::learner::{
    Divergence, Learner, Progress, Session, non_finite_parameter, open_checkpoint,
};
use crate::rng::Stream;
use crate::run::{MetricsRecord, RunDir, Snapshot, model_bytes, record_from_bytes};
use crate::schema::Engine;
use crate::store::{HostParams, ModuleStore};

/// One training update's measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecurrentRow {
    /// Update index (0-based).
    pub episode: usize,
    /// Loss of the batch.
    pub loss: f64,
    /// Error on the erased part of the probe (wrong-sign fraction, or per-pixel MSE).
    pub error: f64,
    /// `η` after the update (0 without plasticity or for the LSTM).
    pub eta: f64,
    /// Seconds the update took (episode generation excluded).
    pub seconds: f64,
}

impl MetricsRecord for RecurrentRow {
    fn episode(&self) -> usize {
        self.episode
    }
}

/// A finished run's summary (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrentSummary {
    /// Task name.
    pub task: String,
    /// `plastic`, `non-plastic` or `lstm`.
    pub model: String,
    /// `fused` or `autodiff`.
    pub engine: String,
    /// Neurons (LSTM: hidden units).
    pub units: usize,
    /// Trained parameters.
    pub params: usize,
    /// Updates run.
    pub episodes: usize,
    /// Mean training error over the last tenth of the updates.
    pub final_train_error: f64,
    /// Mean loss on `eval_episodes` held-out episodes.
    pub eval_loss: f64,
    /// Mean error on the held-out episodes.
    pub eval_error: f64,
    /// Images: the held-out error of a blank (all-zero) reconstruction, i.e. the mean squared
    /// erased pixel, as a reference for `eval_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blank_error: Option<f64>,
    /// Median seconds per update divided by the batch size.
    pub seconds_per_episode: f64,
    /// The peak resident memory (MiB) of the session that finished the run, when the OS
    /// reports it.
    pub peak_rss_mib: Option<f64>,
    /// Seconds the run spent training, over all its sessions (the held-out evaluation
    /// excluded).
    #[serde(default)]
    pub wall_seconds: f64,
    /// Final `η`.
    pub eta: f64,
}

/// Held-out measures ([`RecurrentTrainer::evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Mean error.
    pub error: f64,
    /// Mean error of an all-zero output (a blank reconstruction).
    pub blank_error: f64,
}

/// The names of the fused engine's parameter groups, in order.
const HOST_GROUPS: [&str; 5] = ["W", "alpha", "eta", "w_M", "b_M"];

// One value per run: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Parameters `[W, α, η]` (and the modulator's) and their optimizer on the host (the fused
    /// engine).
    Host {
        params: HostParams,
        rnn: PlasticRnnConfig,
    },
    /// A burn module trained by autodiff.
    Plastic {
        model: PlasticRnn,
        optim: ModuleStore,
    },
    /// The LSTM baseline (autodiff).
    Lstm { model: LstmNet, optim: ModuleStore },
}

/// Trains one recurrent network on one task.
pub struct RecurrentTrainer {
    config: RecurrentConfig,
    task: RecurrentTask,
    device: Device,
    state: State,
    next_episode: usize,
}

fn tensor3(values: &[f32], shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn to_f32(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// A host pass over a batch in precision `F`: loss, `y(T)` and (with `grads`) the gradients.
fn host_pass<F: Real>(
    rnn: &PlasticRnnConfig,
    values: &[Vec<f64>],
    batch: &RecurrentBatch,
    interval: Option<usize>,
    grads: bool,
) -> (f64, Vec<f32>, Option<Vec<Vec<f64>>>) {
    let net = rnn.host::<F>(values);
    let arrays = batch.to_host::<F>();
    let ep = arrays.episodes();
    let back = |v: &[F]| {
        v.iter()
            .map(|x| x.to_f32().expect("finite"))
            .collect::<Vec<f32>>()
    };
    if grads {
        let pass = net.loss_and_grads(&ep, interval);
        let g = pass.grads;
        let mut grads = vec![g.w, g.alpha, vec![g.eta]];
        if rnn.modulated() {
            grads.push(g.modulator.0);
            grads.push(vec![g.modulator.1]);
        }
        (pass.loss, back(&pass.y_last), Some(grads))
    } else {
        let ys = net.forward(&ep);
        let bn = batch.batch * batch.neurons;
        let last = back(&ys[(batch.steps - 1) * bn..]);
        (f64::NAN, last, None)
    }
}

impl RecurrentTrainer {
    /// A fresh trainer: initial parameters from the config's seed.
    pub fn new(config: RecurrentConfig) -> Result<RecurrentTrainer> {
        let task = config.task()?;
        let device = init_device(config.device, config.dtype)?;
        let mut ad = device.clone().autodiff();
        if config.train.gradient_checkpointing {
            ad = ad.gradient_checkpointing();
        }
        let rnn = config.plastic_rnn();
        let state = match (config.model.kind, config.train.engine) {
            (RecurrentModelKind::Lstm, _) => {
                // burn's default initializers draw from the device's generator.
                device.seed(config.seed);
                let model = LstmNet::new(config.size(), config.lstm_hidden(), &ad);
                State::Lstm {
                    optim: ModuleStore::new(&config.train, &model, config.dtype),
                    model,
                }
            }
            (RecurrentModelKind::Plastic, Engine::Analytic) => {
                return Err(Error::Unsupported(
                    "train.engine = \"analytic\": recurrent networks train with `fused` or `autodiff`".into(),
                ));
            }
            (RecurrentModelKind::Plastic, Engine::Autodiff) => {
                let values = crate::store::round(rnn.init_values(config.seed), config.dtype);
                let model = rnn.from_values(&values, &ad);
                State::Plastic {
                    optim: ModuleStore::new(&config.train, &model, config.dtype),
                    model,
                }
            }
            (RecurrentModelKind::Plastic, Engine::Fused) => {
                // η is unused under simple modulation; the modulator is trained.
                let mut trainable = vec![true, rnn.plastic, rnn.eta_trained()];
                if rnn.modulated() {
                    trainable.extend([true, true]);
                }
                State::Host {
                    params: HostParams::new(
                        rnn.init_values(config.seed),
                        trainable,
                        &config.train,
                        config.dtype,
                    ),
                    rnn,
                }
            }
        };
        Ok(RecurrentTrainer {
            config,
            task,
            device: ad,
            state,
            next_episode: 0,
        })
    }

    /// The trainer of an interrupted (or finished) run, restored from its checkpoint: model,
    /// optimizer state (burn's, or the fused engine's host Adam) and progress. Checks the
    /// checkpoint, the config's identity and `metrics.csv` without writing anything.
    pub fn resume(run: &RunDir, config: RecurrentConfig) -> Result<RecurrentTrainer> {
        let mut trainer = RecurrentTrainer::new(config)?;
        let mut checkpoint = open_checkpoint::<RecurrentRow>(
            run,
            trainer.config.dtype,
            trainer.config.train.episodes,
        )?;
        let dir = checkpoint.dir.clone();
        trainer.load_record(
            std::mem::take(&mut checkpoint.model),
            &dir.join("model.bpk"),
        )?;
        let engine = trainer.config.train.engine;
        let missing = |file: &str| {
            Error::artifact(
                &dir,
                format!(
                    "no {file}: the run trains with the {} engine, whose checkpoints hold it (the \
                     checkpoint was written by another engine or an older bohp)",
                    engine.name()
                ),
            )
        };
        let config = trainer.config.clone();
        match &mut trainer.state {
            State::Host { params, .. } => {
                let Some(restored) = checkpoint.host_optimizer.take() else {
                    return Err(missing("host_optimizer.bin"));
                };
                params
                    .restore(restored)
                    .map_err(|why| Error::artifact(dir.join("host_optimizer.bin"), why))?;
            }
            State::Plastic { model, optim } => {
                *optim = ModuleStore::resumed(&config.train, model, config.dtype, &mut checkpoint)?;
            }
            State::Lstm { model, optim } => {
                *optim = ModuleStore::resumed(&config.train, model, config.dtype, &mut checkpoint)?;
            }
        }
        trainer.next_episode = checkpoint.state.next_episode;
        Ok(trainer)
    }

    /// Adds `updates` to a finished run (`bohp train --resume DIR --extend N`): the run goes on
    /// to `train.episodes + updates` (the learning-rate schedule stretched to the new end). The
    /// caller writes the new config and a checkpoint.
    pub fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        self.config = crate::learner::extended(&self.config, self.next_episode, updates, source)?;
        Ok(())
    }

    /// The config.
    pub fn config(&self) -> &RecurrentConfig {
        &self.config
    }

    /// The task.
    pub fn task(&self) -> &RecurrentTask {
        &self.task
    }

    /// The current `η` (0 without plasticity).
    pub fn eta(&self) -> f64 {
        match &self.state {
            State::Host { params, .. } => params.values[2][0],
            State::Plastic { model, .. } if model.plastic => model
                .eta
                .val()
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("f64")[0],
            _ => 0.0,
        }
    }

    /// Outputs of the last step, `[batch][neurons]` (LSTM: `[batch][size]`), without gradients.
    pub fn outputs(&self, batch: &RecurrentBatch) -> Vec<f32> {
        match &self.state {
            State::Host { params, rnn } => match self.config.dtype {
                Precision::F32 => host_pass::<f32>(rnn, &params.values, batch, None, false).1,
                Precision::F64 => host_pass::<f64>(rnn, &params.values, batch, None, false).1,
            },
            State::Plastic { model, .. } => {
                let device = self.device.clone().without_autodiff();
                to_f32(last_step(
                    plastic_forward(&model.valid(), batch, &device),
                    batch.neurons,
                ))
            }
            State::Lstm { model, .. } => {
                let device = self.device.clone().without_autodiff();
                to_f32(last_step(
                    model
                        .valid()
                        .forward(lstm_inputs(&self.task, batch, &device)),
                    batch.neurons,
                ))
            }
        }
    }

    /// One update on the next batch of training episodes, or what was not finite.
    fn update(&mut self) -> std::result::Result<RecurrentRow, String> {
        let episode = self.next_episode;
        let b = self.config.train.batch;
        let batch = self.task.batch(
            self.config.seed,
            Stream::Train,
            (episode * b) as u64,
            b,
            self.unit_width(),
        );
        let lr = self.config.learning_rate(episode);
        let started = Instant::now();
        let interval = match self.config.train.trace_checkpoint_every {
            0 => None,
            k => Some(k),
        };
        let dtype = self.config.dtype;
        let size = self.task.size;
        let (loss, y_last) = match &mut self.state {
            State::Host { params, rnn } => {
                let (loss, y, grads) = match dtype {
                    Precision::F32 => host_pass::<f32>(rnn, &params.values, &batch, interval, true),
                    Precision::F64 => host_pass::<f64>(rnn, &params.values, &batch, interval, true),
                };
                if !loss.is_finite() {
                    return Err(format!("the loss ({loss})"));
                }
                params.step(lr, &mut grads.expect("gradients"));
                if let Some(i) = params.non_finite() {
                    return Err(format!("parameter {}", HOST_GROUPS[i]));
                }
                (loss, y)
            }
            State::Plastic { model, optim } => {
                let ys = plastic_forward(model, &batch, &self.device);
                autodiff_update(model, optim, ys, &batch, size, lr, &self.device)?
            }
            State::Lstm { model, optim } => {
                let ys = model.forward(lstm_inputs(&self.task, &batch, &self.device));
                autodiff_update(model, optim, ys, &batch, size, lr, &self.device)?
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let error = self.task.error(&batch, &y_last);
        self.next_episode += 1;
        Ok(RecurrentRow {
            episode,
            loss,
            error,
            eta: self.eta(),
            seconds,
        })
    }

    /// Width of the network's input/output vectors.
    fn unit_width(&self) -> usize {
        match self.config.model.kind {
            RecurrentModelKind::Plastic => self.config.neurons(),
            RecurrentModelKind::Lstm => self.task.size,
        }
    }

    /// Mean loss, error, and the error of an all-zero output, on `episodes` held-out episodes
    /// (the `Eval` stream).
    pub fn evaluate(&self, episodes: usize) -> Evaluation {
        let chunk = self.config.train.batch.clamp(1, 16);
        let mut sum = Evaluation {
            loss: 0.0,
            error: 0.0,
            blank_error: 0.0,
        };
        let mut done = 0;
        while done < episodes {
            let b = chunk.min(episodes - done);
            let batch = self.task.batch(
                self.config.seed,
                Stream::Eval,
                done as u64,
                b,
                self.unit_width(),
            );
            let y = self.outputs(&batch);
            sum.loss += self.task.loss(&batch, &y) * b as f64;
            sum.error += self.task.error(&batch, &y) * b as f64;
            sum.blank_error += self.task.error(&batch, &vec![0.0; y.len()]) * b as f64;
            done += b;
        }
        let n = episodes.max(1) as f64;
        Evaluation {
            loss: sum.loss / n,
            error: sum.error / n,
            blank_error: sum.blank_error / n,
        }
    }

    /// The plastic network as a burn module (on the plain device), or `None` for the LSTM.
    pub(crate) fn plastic_module(&self) -> Option<PlasticRnn> {
        let device = self.device.clone().without_autodiff();
        match &self.state {
            State::Host { params, rnn } => Some(rnn.from_values(&params.values, &device)),
            State::Plastic { model, .. } => Some(model.valid()),
            State::Lstm { .. } => None,
        }
    }

    /// Replaces the parameters with those of a saved model record (a run's `model.bpk`), for
    /// evaluating a trained run.
    pub fn load_model(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::artifact(path, format!("cannot read model record: {e}")))?;
        self.load_record(bytes, path)
    }

    /// Replaces the parameters with those of model record bytes (read from `path`).
    fn load_record(&mut self, bytes: Vec<u8>, path: &Path) -> Result<()> {
        let device = self.device.clone().without_autodiff();
        match &mut self.state {
            State::Host { params, rnn } => {
                let values = &mut params.values;
                let model = record_from_bytes(rnn.from_values(values, &device), bytes, path)?;
                let host = |t: Tensor<2>| {
                    t.into_data()
                        .convert::<f64>()
                        .try_to_vec::<f64>()
                        .expect("f64")
                };
                *values = vec![
                    host(model.w.val()),
                    host(model.alpha.val()),
                    host(model.eta.val().unsqueeze::<2>()),
                ];
                if let (Some(w_m), Some(b_m)) = (&model.w_m, &model.b_m) {
                    values.push(host(w_m.val()));
                    values.push(host(b_m.val().unsqueeze::<2>()));
                }
            }
            State::Plastic { model, .. } => *model = record_from_bytes(model.clone(), bytes, path)?,
            State::Lstm { model, .. } => *model = record_from_bytes(model.clone(), bytes, path)?,
        }
        Ok(())
    }

    /// The model record (a run's `model.bpk`).
    fn record(&self, path: &Path) -> Result<Vec<u8>> {
        match &self.state {
            State::Lstm { model, .. } => model_bytes(&model.valid(), path),
            _ => model_bytes(&self.plastic_module().expect("plastic"), path),
        }
    }

    /// Every parameter's values, in the module's order (`W`, `α`, `η` for the plastic network).
    pub fn parameter_values(&self) -> Vec<Vec<f64>> {
        match &self.state {
            State::Lstm { model, .. } => crate::learner::parameter_values(&model.valid()),
            _ => crate::learner::parameter_values(&self.plastic_module().expect("plastic")),
        }
    }

    /// A short name of the model: `plastic`, `non-plastic` or `lstm`.
    pub fn model_name(&self) -> &'static str {
        match (self.config.model.kind, self.config.plastic_rnn().plastic) {
            (RecurrentModelKind::Lstm, _) => "lstm",
            (_, true) => "plastic",
            (_, false) => "non-plastic",
        }
    }
}

/// The plastic network's outputs for every step of `batch`.
fn plastic_forward(model: &PlasticRnn, batch: &RecurrentBatch, device: &Device) -> Tensor<3> {
    let shape = [batch.steps, batch.batch, batch.neurons];
    model.forward(
        tensor3(&batch.inputs, shape, device),
        batch.clamp.as_deref().map(|c| tensor3(c, shape, device)),
    )
}

/// The loss an LSTM update differentiates on `batch` (a batch of `task`'s episodes over
/// `task.size` units): the squared error of the last step, averaged over episodes.
pub fn lstm_loss(
    model: &LstmNet,
    task: &RecurrentTask,
    batch: &RecurrentBatch,
    device: &Device,
) -> Tensor<1> {
    let ys = model.forward(lstm_inputs(task, batch, device));
    loss_of(ys, batch, task.size, device).0
}

/// The LSTM's inputs: the task's inputs, unclamped ones divided by their gain (±1 values).
fn lstm_inputs(task: &RecurrentTask, batch: &RecurrentBatch, device: &Device) -> Tensor<3> {
    let scale = if task.clamp {
        1.0
    } else {
        1.0 / task.input_gain
    };
    tensor3(
        &batch.inputs,
        [batch.steps, batch.batch, batch.neurons],
        device,
    )
    .mul_scalar(scale)
}

/// One autodiff update of `model` from its outputs `ys`: the loss value and `y(T)` on the host,
/// or what was not finite.
fn autodiff_update<M: Module + Clone>(
    model: &mut M,
    optim: &mut ModuleStore,
    ys: Tensor<3>,
    batch: &RecurrentBatch,
    size: usize,
    lr: f64,
    device: &Device,
) -> std::result::Result<(f64, Vec<f32>), String> {
    let (loss, (y_last, value)) = loss_of(ys, batch, size, device);
    let grads = GradientsParams::from_grads(loss.backward(), &*model);
    let value = scalar(value);
    if !value.is_finite() {
        return Err(format!("the loss ({value})"));
    }
    *model = optim.step(lr, model.clone(), grads);
    Ok((value, y_last))
}

fn last_step(ys: Tensor<3>, width: usize) -> Tensor<2> {
    let [steps, batch, _] = ys.dims();
    ys.slice([steps - 1..steps, 0..batch, 0..width])
        .reshape([batch, width])
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("f64")[0]
}

/// The loss tensor, and (host `y(T)`, the loss value tensor detached).
fn loss_of(
    ys: Tensor<3>,
    batch: &RecurrentBatch,
    size: usize,
    device: &Device,
) -> (Tensor<1>, (Vec<f32>, Tensor<1>)) {
    let width = ys.dims()[2];
    let last = last_step(ys, width);
    let targets: Tensor<2> = Tensor::from_data(
        TensorData::new(batch.targets.clone(), [batch.batch, size]),
        device,
    );
    let diff = last.clone().slice([0..batch.batch, 0..size]) - targets;
    let loss = diff
        .clone()
        .mul(diff)
        .sum()
        .mul_scalar(1.0 / batch.batch as f64);
    let y = to_f32(last.detach());
    let value = loss.clone().detach();
    (loss, (y, value))
}

impl Learner for RecurrentTrainer {
    fn compute_device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    type Row = RecurrentRow;
    type Summary = RecurrentSummary;

    fn progress(&self) -> Progress {
        Progress::of(self.next_episode, &self.config)
    }

    fn step(&mut self) -> std::result::Result<RecurrentRow, Divergence> {
        let episode = self.next_episode;
        self.update().map_err(|what| Divergence { episode, what })
    }

    fn check_parameters(&self) -> std::result::Result<(), Divergence> {
        let bad = match &self.state {
            State::Host { params, .. } => params.non_finite().map(|i| HOST_GROUPS[i].to_string()),
            State::Plastic { model, .. } => non_finite_parameter(model),
            State::Lstm { model, .. } => non_finite_parameter(model),
        };
        Divergence::in_parameter(self.next_episode, bad)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let at = Path::new("checkpoint");
        let (optimizer, host_optimizer) = match &self.state {
            State::Host { params, .. } => (None, Some(params.optimizer().clone())),
            State::Plastic { optim, .. } | State::Lstm { optim, .. } => optim.snapshot(at)?,
        };
        Ok(Snapshot {
            model: self.record(at)?,
            optimizer,
            host_optimizer,
            next_episode: self.next_episode,
            dtype: self.config.dtype,
        })
    }

    fn model_record(&self) -> Result<Vec<u8>> {
        self.record(Path::new("model.bpk"))
    }

    fn summarize(&mut self, rows: &[RecurrentRow], session: Session) -> Result<RecurrentSummary> {
        let eval = self.evaluate(self.config.train.eval_episodes);
        let tail = (rows.len() / 10).max(1).min(rows.len().max(1));
        let final_train_error =
            rows.iter().rev().take(tail).map(|r| r.error).sum::<f64>() / tail as f64;
        let mut secs: Vec<f64> = rows.iter().map(|r| r.seconds).collect();
        secs.sort_by(f64::total_cmp);
        let median = secs.get(secs.len() / 2).copied().unwrap_or(f64::NAN);
        Ok(RecurrentSummary {
            task: self.task.kind.name().to_string(),
            model: self.model_name().to_string(),
            engine: self.config.train.engine.name().to_string(),
            units: match self.config.model.kind {
                RecurrentModelKind::Lstm => self.config.lstm_hidden(),
                RecurrentModelKind::Plastic => self.config.neurons(),
            },
            params: self.config.num_params(),
            episodes: rows.len(),
            final_train_error,
            eval_loss: eval.loss,
            eval_error: eval.error,
            blank_error: (self.task.kind == RecurrentTaskKind::Images).then_some(eval.blank_error),
            seconds_per_episode: median / self.config.train.batch as f64,
            peak_rss_mib: session.peak_rss_mib,
            wall_seconds: session.wall_seconds,
            eta: self.eta(),
        })
    }
}
