//! Training by backpropagation through the unrolled episode (burn autodiff) with Adam,
//! checkpointing, resuming, the frozen phase, and evaluation on fresh episodes.

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::device::init_device;
use crate::error::{Error, Result};
use crate::learner::{Divergence, Learner, Progress, Session, open_checkpoint};
use crate::rng::{Stream, stream_rng};
use crate::run::{MetricsRow, RunDir, Snapshot, Summary, model_bytes, optimizer_bytes};
use crate::single::config::SingleLayerConfig;
use crate::single::network::PlasticNet;
use crate::single::tasks::{EpisodeBatch, Measures, Task, read_measures};
use crate::store::HostParams;

pub use crate::engines::GradientEngine;
pub use crate::host_optim::ADAM_EPSILON;

/// Parameters and the optimizer on the host ([`HostParams`]), for [`GradientEngine::on_host`]
/// engines and for runs whose optimizer runs there (the original procedure, global clipping).
#[derive(Debug, Clone)]
struct HostState {
    /// The groups' names, as [`PlasticNet::parameter_values`] names them.
    names: Vec<&'static str>,
    /// The values (always equal to the model's) and the optimizer.
    params: HostParams,
}

impl HostState {
    /// The model's parameters with a fresh optimizer.
    fn fresh(model: &PlasticNet, config: &SingleLayerConfig) -> HostState {
        let (names, values): (Vec<_>, Vec<_>) = model.parameter_values().into_iter().unzip();
        let trainable = names
            .iter()
            .map(|name| *name != "alpha" || model.plastic.plastic)
            .collect();
        let nonnegative = names
            .iter()
            .map(|name| *name == "alpha" && model.plastic.nonnegative_alpha)
            .collect();
        let params = HostParams::new(values, trainable, &config.train, config.dtype)
            .with_nonnegative(nonnegative);
        HostState { names, params }
    }

    /// The values named (borrowed, not copied), as the engines and
    /// [`PlasticNet::with_parameter_values`] take them.
    fn named(&self) -> Vec<(&'static str, &[f64])> {
        self.names
            .iter()
            .copied()
            .zip(self.params.values.iter().map(Vec::as_slice))
            .collect()
    }
}

/// Gradients by burn autodiff: backpropagation through the unrolled episode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Autodiff;

impl GradientEngine for Autodiff {
    fn name(&self) -> &'static str {
        "autodiff"
    }

    fn gradients(
        &mut self,
        model: &PlasticNet,
        task: &Task,
        batch: &EpisodeBatch,
        device: &Device,
    ) -> (Measures, GradientsParams) {
        let (measures, grads) = self.gradients_on_device(model, task, batch, device);
        (read_measures(measures), grads)
    }

    fn gradients_on_device(
        &mut self,
        model: &PlasticNet,
        task: &Task,
        batch: &EpisodeBatch,
        device: &Device,
    ) -> (Tensor<1>, GradientsParams) {
        let (outputs, _) = model.forward(batch.input_tensor(device));
        let (loss, measures) = task.measure(outputs, &batch.target_tensors(device));
        let grads = GradientsParams::from_grads(loss.backward(), model);
        (measures, grads)
    }
}

/// The model, its optimizer and the position in the run.
pub struct SingleLayerTrainer {
    config: SingleLayerConfig,
    task: Task,
    /// The autodiff device parameters live on.
    device: Device,
    model: PlasticNet,
    optim: ModuleOptimizer,
    next_episode: usize,
    /// The parameter-fixed copy used in the frozen phase, made on entering it.
    frozen: Option<PlasticNet>,
    /// Where gradients come from.
    engine: Box<dyn GradientEngine>,
    /// Parameters and optimizer on the host, for engines that compute there.
    host: Option<HostState>,
    /// Whether `model` lags behind the host's parameters: host engines update `host.values`
    /// alone, and the model is rebuilt from them only where it is read
    /// ([`SingleLayerTrainer::model`], checkpoints, the frozen phase).
    stale: bool,
}

/// The gradient engine `train.engine` names.
pub fn gradient_engine(engine: crate::single::config::Engine) -> Box<dyn GradientEngine> {
    use crate::single::config::Engine;
    match engine {
        Engine::Autodiff => Box::new(Autodiff),
        Engine::Analytic => Box::new(crate::engines::analytic::Analytic),
        Engine::Fused => Box::new(crate::engines::layer_fused::LayerFused),
    }
}

/// burn's Adam for a run ([`crate::store::burn_optimizer`]).
pub fn optimizer(config: &SingleLayerConfig) -> ModuleOptimizer {
    crate::store::burn_optimizer(&config.train)
}

/// A freshly initialized network for `config`, on `device`.
pub fn init_model(config: &SingleLayerConfig, device: &Device) -> PlasticNet {
    let mut rng = stream_rng(config.seed, Stream::Init, 0);
    config.network().init(&mut rng, device)
}

/// The name of the first parameter holding a NaN or infinity, if any.
pub fn non_finite_param(model: &PlasticNet) -> Option<&'static str> {
    fn finite<const D: usize>(p: &Param<Tensor<D>>) -> bool {
        // x · 0 is 0 for every finite x and NaN for NaN and ±∞; unlike a plain sum, this
        // cannot overflow on large finite values.
        let zeros: f64 = p.val().mul_scalar(0.0).sum().into_scalar::<f64>();
        zeros == 0.0
    }
    let layer = &model.plastic;
    if !finite(&layer.w) {
        return Some("w");
    }
    if !finite(&layer.alpha) {
        return Some("alpha");
    }
    if !finite(&layer.b) {
        return Some("b");
    }
    if layer.w_m.as_ref().is_some_and(|p| !finite(p)) {
        return Some("w_m");
    }
    if layer.b_m.as_ref().is_some_and(|p| !finite(p)) {
        return Some("b_m");
    }
    if let Some(readout) = &model.readout {
        if !finite(&readout.v) {
            return Some("readout v");
        }
        if !finite(&readout.c) {
            return Some("readout c");
        }
    }
    None
}

/// Runs a batch of episodes through `model` (no update) and returns its measures.
pub(crate) fn run_batch(
    model: &PlasticNet,
    task: &Task,
    seed: u64,
    stream: Stream,
    first: u64,
    batch: usize,
    device: &Device,
) -> Measures {
    let episodes = task.generate(seed, stream, first, batch);
    let (outputs, _) = model.forward(episodes.input_tensor(device));
    let (_, measures) = task.measure(outputs, &episodes.target_tensors(device));
    read_measures(measures)
}

/// Mean measures of `model` over `episodes` fresh episodes of the evaluation stream, in batches
/// of at most `batch`. `model` should be a [`Module::valid`] copy on a plain `device`.
pub fn evaluate(
    model: &PlasticNet,
    task: &Task,
    seed: u64,
    episodes: usize,
    batch: usize,
    device: &Device,
) -> Measures {
    let mut total = Measures::default();
    let mut done = 0;
    while done < episodes {
        let n = batch.min(episodes - done);
        let m = run_batch(model, task, seed, Stream::Eval, done as u64, n, device);
        total.loss += m.loss * n as f64;
        total.error += m.error * n as f64;
        total.error_code += m.error_code * n as f64;
        done += n;
    }
    let n = episodes as f64;
    Measures {
        loss: total.loss / n,
        error: total.error / n,
        error_code: total.error_code / n,
    }
}

impl SingleLayerTrainer {
    /// A new run's trainer on the config's device and dtype, with parameters initialized from
    /// the config's seed, taking gradients from `engine`.
    pub fn new(
        config: SingleLayerConfig,
        engine: Box<dyn GradientEngine>,
    ) -> Result<SingleLayerTrainer> {
        // burn's optimizer updates autodiff-tracked parameters, whatever the gradients' source.
        let device = init_device(config.device, config.dtype)?.autodiff();
        let model = init_model(&config, &device);
        let host = (engine.on_host() || config.train.needs_host_optimizer())
            .then(|| HostState::fresh(&model, &config));
        Ok(SingleLayerTrainer {
            task: config.task(),
            optim: optimizer(&config),
            config,
            device,
            model,
            next_episode: 0,
            frozen: None,
            engine,
            host,
            stale: false,
        })
    }

    /// The trainer of an interrupted run, restored from its checkpoint. Checks the checkpoint
    /// and `metrics.csv` without writing anything.
    pub fn resume(
        run: &RunDir,
        config: SingleLayerConfig,
        engine: Box<dyn GradientEngine>,
    ) -> Result<SingleLayerTrainer> {
        let mut trainer = SingleLayerTrainer::new(config, engine)?;
        let mut checkpoint = open_checkpoint::<MetricsRow>(
            run,
            trainer.config.dtype,
            trainer.config.train.episodes,
        )?;
        let model = checkpoint.restore_model(trainer.model.clone())?;
        let engine = trainer.engine.name();
        if let Some(host) = &mut trainer.host {
            let Some(optim) = checkpoint.host_optimizer.take() else {
                return Err(Error::artifact(
                    run.checkpoint_dir(),
                    format!(
                        "the run's optimizer runs on the host (the {} engine, or train.optimizer / \
                         train.clip_grad_norm), but the checkpoint has no host optimizer state \
                         (written by an older bohp or another engine)",
                        engine
                    ),
                ));
            };
            *host = HostState::fresh(&model, &trainer.config);
            host.params.restore(optim).map_err(|why| {
                Error::artifact(run.checkpoint_dir().join("host_optimizer.bin"), why)
            })?;
        }
        // The host optimizer's checkpoints carry no burn optimizer; a fresh one is never stepped.
        if checkpoint.optimizer.is_some() || trainer.host.is_none() {
            trainer.optim = checkpoint.restore_optimizer(trainer.optim)?;
        }
        trainer.model = model;
        trainer.next_episode = checkpoint.state.next_episode;
        Ok(trainer)
    }

    /// The gradient engine's name.
    pub fn engine(&self) -> &'static str {
        self.engine.name()
    }

    /// The run's config.
    pub fn config(&self) -> &SingleLayerConfig {
        &self.config
    }

    /// The autodiff device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The next update with burn's optimizer on the model's device; its measures (loss, error,
    /// error_code) stay there as a `[3]` tensor until read.
    fn device_update(&mut self) -> Tensor<1> {
        let episode = self.next_episode;
        let batch = self.config.train.batch;
        let first = (episode * batch) as u64;
        let episodes = self
            .task
            .generate(self.config.seed, Stream::Train, first, batch);
        let (measures, grads) =
            self.engine
                .gradients_on_device(&self.model, &self.task, &episodes, &self.device);
        let lr = self.config.learning_rate(episode);
        let mut model = self.optim.step(lr, self.model.clone(), grads);
        model.plastic = model.plastic.clip_alpha();
        self.model = model;
        measures
    }

    /// The current model (a cheap copy: burn tensors share their data).
    pub fn model(&self) -> PlasticNet {
        match &self.host {
            Some(host) if self.stale => self.model.clone().with_parameter_values(&host.named()),
            _ => self.model.clone(),
        }
    }

    /// Adds `updates` to a finished run (`bohp train --resume DIR --extend N`): the run goes on
    /// to `train.episodes + updates`, its last `train.freeze_last` frozen as before (so
    /// `updates - freeze_last` more training updates, then a fresh frozen phase). The caller
    /// writes the new config and a checkpoint.
    pub fn extend(&mut self, updates: usize, source: &str) -> Result<()> {
        self.config = crate::learner::extended(&self.config, self.next_episode, updates, source)?;
        Ok(())
    }
}

impl Learner for SingleLayerTrainer {
    fn compute_device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    type Row = MetricsRow;
    type Summary = Summary;

    fn progress(&self) -> Progress {
        Progress::of(self.next_episode, &self.config)
    }

    /// Runs the next episode (a batch of independent episodes): forward, backward and an Adam
    /// step, or in the frozen phase the forward pass alone. Fails if the loss is not finite.
    fn step(&mut self) -> std::result::Result<MetricsRow, Divergence> {
        let episode = self.next_episode;
        let batch = self.config.train.batch;
        let first = (episode * batch) as u64;
        let seed = self.config.seed;
        let frozen = episode >= self.config.first_frozen();
        let measures = if frozen {
            let plain = self.device.clone().without_autodiff();
            if self.frozen.is_none() {
                self.frozen = Some(self.model().valid());
            }
            let model = self.frozen.as_ref().expect("made above");
            run_batch(model, &self.task, seed, Stream::Train, first, batch, &plain)
        } else if let Some(host) = &mut self.host {
            let episodes = self.task.generate(seed, Stream::Train, first, batch);
            let (measures, mut grads) = if self.engine.on_host() {
                self.engine
                    .host_gradients(&self.model, &host.named(), &episodes)
                    .expect("an on_host engine gives host gradients")
            } else {
                let (measures, grads) =
                    self.engine
                        .gradients(&self.model, &self.task, &episodes, &self.device);
                (measures, self.model.gradient_values(&grads))
            };
            host.params
                .step(self.config.learning_rate(episode), &mut grads);
            if self.engine.on_host() {
                // The engine reads the host values; the model is rebuilt when it is read.
                self.stale = true;
            } else {
                self.model = self.model.clone().with_parameter_values(&host.named());
            }
            measures
        } else {
            read_measures(self.device_update())
        };
        if !measures.is_finite() {
            return Err(Divergence {
                episode,
                what: format!("the loss ({})", measures.loss),
            });
        }
        self.next_episode += 1;
        Ok(MetricsRow {
            episode,
            loss: measures.loss,
            error: measures.error,
            error_code: measures.error_code,
            frozen: frozen as u8,
        })
    }

    fn readback_every(&self) -> usize {
        self.config.readback_every()
    }

    /// With burn's optimizer (the autodiff engine), the updates before the frozen phase keep
    /// their measures on the device and read them once for all of them; a GPU then
    /// synchronizes with the host once per `count` updates. The rows are those
    /// [`Learner::step`] gives one at a time (tested).
    fn steps(&mut self, count: usize) -> std::result::Result<Vec<MetricsRow>, Divergence> {
        let start = self.next_episode;
        let deferred_end = (start + count).min(self.config.first_frozen());
        let mut rows = Vec::with_capacity(count);
        if self.host.is_none() && deferred_end > start + 1 {
            let pending: Vec<Tensor<1>> = (start..deferred_end)
                .map(|_| {
                    let m = self.device_update();
                    self.next_episode += 1;
                    m
                })
                .collect();
            let values = Tensor::cat(pending, 0)
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("measures are a float tensor");
            for (k, m) in values.chunks_exact(3).enumerate() {
                let episode = start + k;
                if !m.iter().all(|v| v.is_finite()) {
                    return Err(Divergence {
                        episode,
                        what: format!("the loss ({})", m[0]),
                    });
                }
                rows.push(MetricsRow {
                    episode,
                    loss: m[0],
                    error: m[1],
                    error_code: m[2],
                    frozen: 0,
                });
            }
        }
        while rows.len() < count && !self.is_done() {
            rows.push(self.step()?);
        }
        Ok(rows)
    }

    fn check_parameters(&self) -> std::result::Result<(), Divergence> {
        Divergence::in_parameter(
            self.next_episode,
            non_finite_param(&self.model()).map(str::to_string),
        )
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let at = std::path::Path::new("checkpoint");
        Ok(Snapshot {
            model: model_bytes(&self.model(), at)?,
            // A host engine's Adam state is the optimizer; burn's is never stepped then.
            optimizer: match &self.host {
                Some(_) => None,
                None => Some(optimizer_bytes(&self.optim, at)?),
            },
            host_optimizer: self.host.as_ref().map(|h| h.params.optimizer().clone()),
            next_episode: self.next_episode,
            dtype: self.config.dtype,
        })
    }

    fn model_record(&self) -> Result<Vec<u8>> {
        model_bytes(&self.model(), std::path::Path::new("model.bpk"))
    }

    fn summarize(&mut self, rows: &[MetricsRow], session: Session) -> Result<Summary> {
        let mut summary = summary_of(rows, &self.config);
        summary.wall_seconds = Some(session.wall_seconds);
        summary.peak_rss_mib = session.peak_rss_mib;
        Ok(summary)
    }
}

fn mean(rows: &[MetricsRow]) -> Measures {
    let n = rows.len().max(1) as f64;
    Measures {
        loss: rows.iter().map(|r| r.loss).sum::<f64>() / n,
        error: rows.iter().map(|r| r.error).sum::<f64>() / n,
        error_code: rows.iter().map(|r| r.error_code).sum::<f64>() / n,
    }
}

/// The summary of a finished run, from its `metrics.csv`.
pub fn summarize(run: &RunDir, config: &SingleLayerConfig) -> Result<Summary> {
    Ok(summary_of(&run.read_metrics()?, config))
}

/// The summary of a run from its rows (wall time and memory not filled in).
fn summary_of(rows: &[MetricsRow], config: &SingleLayerConfig) -> Summary {
    let frozen: Vec<MetricsRow> = rows.iter().copied().filter(|r| r.frozen == 1).collect();
    let tail = &rows[rows.len().saturating_sub(100)..];
    Summary {
        task: config.task.kind.to_string(),
        episodes: rows.len(),
        batch: config.train.batch,
        frozen: (!frozen.is_empty()).then(|| mean(&frozen)),
        last_100: mean(tail),
        wall_seconds: None,
        peak_rss_mib: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Backend, Precision};
    use crate::run::RunDir;
    use crate::single::config::{OptimizerKind, Plasticity};

    fn config(kind: &str) -> SingleLayerConfig {
        let text = format!(
            "seed = 4\ndtype = \"f64\"\n[task]\nkind = \"{kind}\"\n[model]\ngamma = 0.1\n\
             [train]\nepisodes = 40\nbatch = 4\nlearning_rate = 0.01\nfreeze_last = 5\n"
        );
        let config = SingleLayerConfig::parse(&text, std::path::Path::new("test.toml")).unwrap();
        config.validate("test.toml").unwrap();
        config
    }

    fn params(model: &PlasticNet) -> Vec<Vec<f64>> {
        model
            .parameter_values()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// burn's Adam, and the host optimizers an autodiff run uses with `train.optimizer =
    /// "original"` or `train.clip_grad_norm`, all resume exactly from a checkpoint.
    #[test]
    fn checkpoint_round_trip_continues_identically() {
        let original = |c: &mut SingleLayerConfig| {
            c.train.optimizer = OptimizerKind::Original;
            c.train.max_change = Some(0.01);
            c.train.l1 = Some(1e-4);
        };
        let clipped = |c: &mut SingleLayerConfig| c.train.clip_grad_norm = Some(0.1);
        let adam = |_: &mut SingleLayerConfig| {};
        type Set<'a> = &'a dyn Fn(&mut SingleLayerConfig);
        let variants: [(&str, Set); 3] = [
            ("adam", &adam),
            ("original", &original),
            ("clipped", &clipped),
        ];
        for (name, set) in variants {
            let dir = tempfile::tempdir().unwrap();
            let run = RunDir::create(&dir.path().join("run")).unwrap();
            let mut c = config("one-shot");
            set(&mut c);
            c.validate(name).unwrap();
            let mut a = SingleLayerTrainer::new(c.clone(), Box::new(Autodiff)).unwrap();
            let fresh = params(&a.model());
            let mut metrics = run.metrics_writer(0).unwrap();
            for _ in 0..10 {
                metrics.write(&a.step().unwrap()).unwrap();
            }
            metrics.flush().unwrap();
            assert_ne!(fresh, params(&a.model()), "{name}: the parameters moved");
            a.checkpoint(&run).unwrap();
            let mut b = SingleLayerTrainer::resume(&run, c, Box::new(Autodiff)).unwrap();
            assert_eq!(b.next_episode(), 10);
            assert_eq!(params(&a.model()), params(&b.model()), "{name}");
            // The optimizer's state was restored too: the next updates agree exactly.
            for _ in 0..5 {
                assert_eq!(a.step().unwrap(), b.step().unwrap(), "{name}");
            }
            assert_eq!(params(&a.model()), params(&b.model()), "{name}");
        }
    }

    /// Clipping the gradient's norm far above its size changes nothing: the host path with
    /// autodiff gradients equals burn's optimizer (f64, to rounding).
    #[test]
    fn a_loose_gradient_clip_equals_the_unclipped_run() {
        let mut a = SingleLayerTrainer::new(config("one-shot"), Box::new(Autodiff)).unwrap();
        let mut c = config("one-shot");
        c.train.clip_grad_norm = Some(1e9);
        let mut b = SingleLayerTrainer::new(c, Box::new(Autodiff)).unwrap();
        for _ in 0..20 {
            let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
            assert!((ra.loss - rb.loss).abs() <= 1e-9 * ra.loss.abs().max(1.0));
        }
        for (x, y) in params(&a.model()).iter().zip(params(&b.model())) {
            for (p, q) in x.iter().zip(&y) {
                assert!((p - q).abs() < 1e-9, "{p} vs {q}");
            }
        }
    }

    #[test]
    fn corrupt_checkpoint_is_rejected_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run")).unwrap();
        let trainer = SingleLayerTrainer::new(config("completion"), Box::new(Autodiff)).unwrap();
        trainer.checkpoint(&run).unwrap();
        let path = run.checkpoint_dir().join("model.bpk");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&path, bytes).unwrap();
        let err = SingleLayerTrainer::resume(&run, config("completion"), Box::new(Autodiff))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("model.bpk") && err.contains("corrupt"),
            "{err}"
        );
    }

    #[test]
    fn without_plasticity_alpha_stays_zero() {
        let mut config = config("one-shot");
        config.model.plasticity = Plasticity::None;
        let mut trainer = SingleLayerTrainer::new(config, Box::new(Autodiff)).unwrap();
        let w0 = params(&trainer.model())[0].clone();
        for _ in 0..10 {
            trainer.step().unwrap();
        }
        let p = params(&trainer.model());
        assert!(
            p[1].iter().all(|a| *a == 0.0),
            "alpha must stay 0: {:?}",
            p[1]
        );
        assert_ne!(p[0], w0, "w is still trained");
    }

    #[test]
    fn nonnegative_plasticity_keeps_alpha_at_or_above_zero() {
        let mut config = config("reversal");
        config.model.plasticity = Plasticity::Nonnegative;
        config.model.init_std = 1.0;
        config.train.learning_rate = 0.1;
        let mut trainer = SingleLayerTrainer::new(config, Box::new(Autodiff)).unwrap();
        assert!(params(&trainer.model())[1].iter().all(|a| *a >= 0.0));
        let mut moved = false;
        let start = params(&trainer.model())[1].clone();
        for _ in 0..20 {
            trainer.step().unwrap();
            let alpha = &params(&trainer.model())[1];
            assert!(alpha.iter().all(|a| *a >= 0.0), "{alpha:?}");
            moved |= alpha != &start;
        }
        assert!(moved, "alpha is still trained");
        // Some entries sit on the constraint (reversal pushes α negative).
        assert!(params(&trainer.model())[1].contains(&0.0));
    }

    #[test]
    fn frozen_phase_does_not_change_parameters() {
        let mut trainer =
            SingleLayerTrainer::new(config("completion"), Box::new(Autodiff)).unwrap();
        while trainer.next_episode() < 35 {
            assert_eq!(trainer.step().unwrap().frozen, 0);
        }
        let before = params(&trainer.model());
        while !trainer.is_done() {
            assert_eq!(trainer.step().unwrap().frozen, 1);
        }
        assert_eq!(before, params(&trainer.model()));
    }

    #[test]
    fn non_finite_parameters_are_found() {
        let device = init_device(Backend::Ndarray, Precision::F64).unwrap();
        let mut model = init_model(&config("one-shot"), &device);
        assert_eq!(non_finite_param(&model), None);
        // Large but finite values are finite (a plain sum would overflow to infinity).
        model.plastic.w = model
            .plastic
            .w
            .map(|w| w.mul_scalar(0.0).add_scalar(f64::MAX / 2.0));
        assert_eq!(non_finite_param(&model), None);
        model.plastic.alpha = model.plastic.alpha.map(|a| a.mul_scalar(f64::NAN));
        assert_eq!(non_finite_param(&model), Some("alpha"));
    }
}
